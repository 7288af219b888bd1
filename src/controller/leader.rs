//! Leader election on a coordination.k8s.io Lease: only the holder writes; standbys keep warm
//! caches and take over once the holder stops renewing.
//!
//! Our own election, following client-go's `leaderelection` semantics, because what the
//! operator needs is the part the maintained crates leave out. `kube_lease_manager` (used
//! before) has no renew deadline: a leader that could not renew during a 60 s API outage kept
//! acting for over 100 s, the standby took the Lease once it expired, and both wrote for
//! seconds (issue 12). `kube-leader-election` is "a very basic form of leader election without
//! fencing", compares timestamps written by other hosts (clock skew), and leaves the renew loop
//! to the caller. The rules kept here:
//!
//! - **Three durations.** `lease_duration` (how long a standby waits after it last saw the
//!   record change), `renew_deadline` (how long a leader keeps acting without a successful
//!   renewal; shorter than the lease) and `retry_period` (how often a leader renews and a
//!   standby tries). The gap between the renew deadline and the lease duration is the margin
//!   in which the old leader has already stopped and the new one may not start yet.
//! - **Leadership drops at the renew deadline**, whatever the API does: a renewal that hangs is
//!   abandoned at the deadline, and the flag turns false at once. Reconciles watch the flag and
//!   are cancelled mid-flight (`reconcile::reconcile`), so no write starts after it.
//! - **Quick retries.** A failed renewal is retried after 200 ms, doubling up to 500 ms, until
//!   the deadline: one failed GET at 50 % injected errors no longer waits a whole
//!   period (issue 12, item 2). A leader renews with one PATCH on the version it last wrote and
//!   reads the Lease only when that conflicts.
//! - **Expiry on the local clock.** A standby measures the lease from when *it* last saw the
//!   record change (client-go's `observedTime`), never from the timestamps in it.
//! - **Optimistic concurrency.** Every write carries the resourceVersion it was based on (a
//!   merge patch with `metadata.resourceVersion` is a precondition), so of two replicas racing
//!   for an expired Lease exactly one wins.
//! - **Release on shutdown.** A replica stopping gracefully stops writing first, then clears
//!   the holder, so a standby takes over in one retry period instead of a lease duration.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{OwnedMutexGuard, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use super::Options;

/// The first retry after a failed renewal; doubled on each failure up to [`MAX_RETRY`] (or the
/// retry period if shorter): about 17 tries within client-go's 10 s renew deadline, so even at
/// 50 % failing calls a lost renewal is a one-in-100 000 event.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_millis(500);

/// How long a graceful stop waits to hand the Lease back.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Timings and identity of one candidate.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    pub lease_name: String,
    pub namespace: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// Why an election cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error(
        "leader election: the renew deadline ({renew:?}) must be shorter than the lease duration ({lease:?}), or two replicas may act at once"
    )]
    RenewDeadline { renew: Duration, lease: Duration },
    #[error(
        "leader election: the retry period ({retry:?}) must be shorter than the renew deadline ({renew:?}) divided by 1.2 (jitter), or a leader gets no second chance to renew"
    )]
    RetryPeriod { retry: Duration, renew: Duration },
    #[error(
        "shards: the lease name {name:?} is longer than 63 characters, the limit of the label value that marks the membership Leases (--lease-name)"
    )]
    LeaseNameTooLong { name: String },
}

impl ElectionConfig {
    pub fn from_options(opts: &Options) -> Result<Self, ElectionError> {
        let c = ElectionConfig {
            lease_name: opts.lease_name.clone(),
            namespace: opts.lease_namespace.clone(),
            identity: opts.identity.clone(),
            lease_duration: Duration::from_secs(opts.lease_seconds),
            renew_deadline: opts.lease_renew_deadline,
            retry_period: opts.lease_retry_period,
        };
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), ElectionError> {
        if self.renew_deadline >= self.lease_duration || self.renew_deadline.is_zero() {
            return Err(ElectionError::RenewDeadline {
                renew: self.renew_deadline,
                lease: self.lease_duration,
            });
        }
        if self.retry_period.is_zero() || self.retry_period.mul_f64(1.2) >= self.renew_deadline {
            return Err(ElectionError::RetryPeriod {
                retry: self.retry_period,
                renew: self.renew_deadline,
            });
        }
        Ok(())
    }
}

/// A running election: its flag, and the task to stop (and release the Lease) on shutdown.
pub struct Election {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl Election {
    /// Stops competing: stops acting as leader at once, then releases the Lease if held
    /// (bounded by [`RELEASE_TIMEOUT`]).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(RELEASE_TIMEOUT + Duration::from_millis(500), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// Starts the election (or a constant "leader" when disabled) and returns the leadership flag.
/// Never waits on the API: the first attempt runs in the background.
pub fn start(
    client: &Client,
    opts: &Options,
) -> Result<(watch::Receiver<bool>, Option<Election>), ElectionError> {
    if !opts.leader_election {
        let (tx, rx) = watch::channel(true);
        // Keep the sender alive for the life of the process: a closed channel reads as "lost".
        std::mem::forget(tx);
        return Ok((rx, None));
    }
    let config = ElectionConfig::from_options(opts)?;
    let (flag, rx) = watch::channel(false);
    let (stop, stop_rx) = watch::channel(false);
    let span = tracing::info_span!("leader_election", lease = %format!("{}/{}", config.namespace, config.lease_name), identity = %config.identity);
    let candidate = Candidate {
        api: Api::namespaced(client.clone(), &config.namespace),
        config,
        observed: None,
        written: None,
        steering: None,
        permit: None,
    };
    let task = tokio::spawn(candidate.run(flag, stop_rx).instrument(span));
    Ok((rx, Some(Election { task, stop })))
}

/// How a shard set steers one of its candidates (`super::shards`); plain leader election has
/// none. The election rules stay those above: steering only decides *whether* a free or
/// expired Lease may be taken and *when* a held one is handed back.
#[derive(Clone)]
pub(crate) struct Steering {
    /// Taken around every acquisition of the set, so that two candidates of one replica never
    /// both pass `allow` for the last free place of its share.
    pub lock: Arc<tokio::sync::Mutex<()>>,
    /// Whether this replica may take one more Lease now (asked under `lock`).
    pub allow: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Set to true to make the holder hand the Lease back: it stops acting first (the flag
    /// turns false, cancelling its reconciles), then clears the holder, then stands by again.
    pub release: watch::Receiver<bool>,
    /// The live holder last observed (this replica's identity while it holds the Lease).
    pub holder: watch::Sender<Option<String>>,
}

/// Starts one steered candidate for `config` (a shard's Lease); `flag` tells whether it holds
/// the Lease.
pub(crate) fn start_steered(
    client: &Client,
    config: ElectionConfig,
    flag: watch::Sender<bool>,
    steering: Steering,
) -> Election {
    let (stop, stop_rx) = watch::channel(false);
    let span = tracing::info_span!("shard_election", lease = %format!("{}/{}", config.namespace, config.lease_name), identity = %config.identity);
    let candidate = Candidate {
        api: Api::namespaced(client.clone(), &config.namespace),
        config,
        observed: None,
        written: None,
        steering: Some(steering),
        permit: None,
    };
    let task = tokio::spawn(candidate.run(flag, stop_rx).instrument(span));
    Election { task, stop }
}

/// What one attempt found.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// This replica holds the Lease, renewed now.
    Held,
    /// Another replica holds an unexpired Lease, or won the race.
    Taken,
}

struct Candidate {
    api: Api<Lease>,
    config: ElectionConfig,
    /// The record last seen and when it was first seen (the local clock decides expiry).
    observed: Option<(LeaseSpec, Instant)>,
    /// resourceVersion and record of this replica's last successful write, for one-PATCH
    /// renewals.
    written: Option<(String, LeaseSpec)>,
    /// Set when the Lease belongs to a shard set.
    steering: Option<Steering>,
    /// The shard set's acquisition lock, held from the decision to take the Lease until the
    /// flag says it is held (so the set counts it before its next candidate decides).
    permit: Option<OwnedMutexGuard<()>>,
}

impl Candidate {
    async fn run(mut self, flag: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        let c = self.config.clone();
        loop {
            // Standby: try every retry period (jittered, as client-go) until the Lease is ours.
            let acquired_at = loop {
                let started = Instant::now();
                let attempt = tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => return,
                    r = tokio::time::timeout(c.retry_period, self.try_acquire_or_renew()) => r,
                };
                match attempt {
                    Ok(Ok(Attempt::Held)) => break started,
                    Ok(Ok(Attempt::Taken)) => {}
                    Ok(Err(e)) => debug!(error = %e, "could not read or take the Lease"),
                    Err(_) => debug!("a Lease request took longer than the retry period"),
                }
                self.permit = None;
                let pause = self.until_expiry(c.retry_period.mul_f64(1.0 + fastrand::f64() * 0.2));
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            };
            info!("acquired the leader lease");
            flag.send_replace(true);
            self.permit = None;
            let reason = self.lead(acquired_at, &mut stop).await;
            // Stop writing first: whatever follows may take time.
            flag.send_replace(false);
            match reason {
                Ended::Stopped => {
                    self.release().await;
                    return;
                }
                Ended::Released => {
                    // The flag is down: reconciles of the Lease's policies were cancelled at
                    // once. A moment for requests already on the wire to land, then the holder
                    // is cleared so the next holder takes over in one retry period.
                    tokio::time::sleep(HANDBACK_SETTLE).await;
                    self.release().await;
                    self.observed = None;
                }
                Ended::Deadline => warn!(
                    renew_deadline = ?c.renew_deadline,
                    "could not renew the leader lease within the renew deadline; stopped acting as leader"
                ),
                Ended::Taken => {
                    warn!("another replica holds the leader lease; stopped acting as leader")
                }
            }
        }
    }

    /// Renews until the renew deadline passes without a success, another replica takes the
    /// Lease, or the election is stopped.
    async fn lead(&mut self, acquired_at: Instant, stop: &mut watch::Receiver<bool>) -> Ended {
        let c = self.config.clone();
        let mut renewed = acquired_at;
        let mut retry = FIRST_RETRY;
        let mut next = acquired_at + c.retry_period;
        let mut release = self.steering.as_ref().map(|s| s.release.clone());
        loop {
            let deadline = renewed + c.renew_deadline;
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return Ended::Stopped,
                _ = tokio::time::sleep_until(deadline) => return Ended::Deadline,
                () = requested(&mut release) => return Ended::Released,
                _ = tokio::time::sleep_until(next) => {}
            }
            let started = Instant::now();
            let attempt = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return Ended::Stopped,
                // Never past the deadline: a renewal that hangs ends leadership on time.
                r = tokio::time::timeout_at(deadline, self.try_acquire_or_renew()) => r,
            };
            match attempt {
                Err(_) => return Ended::Deadline,
                Ok(Ok(Attempt::Held)) => {
                    renewed = started;
                    retry = FIRST_RETRY;
                    next = started + c.retry_period;
                }
                Ok(Ok(Attempt::Taken)) => return Ended::Taken,
                Ok(Err(e)) => {
                    debug!(error = %e, retry_in = ?retry, "renewing the leader lease failed; retrying");
                    next = Instant::now() + retry;
                    retry = (retry * 2).min(c.retry_period.min(MAX_RETRY));
                }
            }
        }
    }

    /// One step of client-go's `tryAcquireOrRenew`.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        // Fast path for the holder: one PATCH on the version it last wrote.
        if let Some((rv, spec)) = self.written.clone() {
            match self.write(&rv, renewed(spec, now.clone())).await {
                Ok(a) => return Ok(a),
                Err(kube::Error::Api(e)) if e.code == 409 => self.written = None,
                Err(e) => return Err(e),
            }
        }
        let Some(lease) = self.api.get_opt(&self.config.lease_name).await? else {
            if !self.may_acquire().await {
                return Ok(Attempt::Taken);
            }
            return self.create(now).await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let observed_at = match &self.observed {
            Some((seen, at)) if *seen == spec => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((spec.clone(), at));
                at
            }
        };
        let holder = spec
            .holder_identity
            .clone()
            .filter(|h| !h.is_empty() && spec.lease_duration_seconds.unwrap_or(0) > 0);
        let mine = holder.as_deref() == Some(self.config.identity.as_str());
        let duration = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
        );
        let live = holder.is_some() && observed_at + duration > Instant::now();
        if let Some(steering) = &self.steering {
            steering
                .holder
                .send_replace(holder.clone().filter(|_| live));
        }
        if live && !mine {
            return Ok(Attempt::Taken);
        }
        if !mine && !self.may_acquire().await {
            return Ok(Attempt::Taken);
        }
        let next = if mine {
            renewed(spec, now)
        } else {
            LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.lease_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + 1),
                ..spec
            }
        };
        let rv = lease.metadata.resource_version.unwrap_or_default();
        match self.write(&rv, next).await {
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Taken),
            other => other,
        }
    }

    /// The pause before the next standby attempt: `pause`, or with steering (shards) less if
    /// the observed holder's lease expires sooner (on the local clock), so that a dead
    /// replica's shard is taken within a lease duration of its last observed renewal rather
    /// than up to a retry period later.
    fn until_expiry(&self, pause: Duration) -> Duration {
        let Some((spec, at)) = self.observed.as_ref().filter(|_| self.steering.is_some()) else {
            return pause;
        };
        let held = spec
            .holder_identity
            .as_deref()
            .is_some_and(|h| !h.is_empty());
        let seconds = u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0);
        let expiry = *at + Duration::from_secs(seconds) + Duration::from_millis(10);
        match expiry.checked_duration_since(Instant::now()) {
            Some(left) if held => pause.min(left),
            _ => pause,
        }
    }

    /// Whether a free or expired Lease may be taken: always, unless a shard set steers this
    /// candidate and this replica holds its share (then the permit is kept until the flag is
    /// raised, see [`Candidate::permit`]).
    async fn may_acquire(&mut self) -> bool {
        let Some(steering) = &self.steering else {
            return true;
        };
        let permit = steering.lock.clone().lock_owned().await;
        if !(steering.allow)() {
            return false;
        }
        self.permit = Some(permit);
        true
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    async fn create(&mut self, now: MicroTime) -> Result<Attempt, kube::Error> {
        let spec = LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.lease_seconds()),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(0),
            ..Default::default()
        };
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.lease_name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(spec),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(created) => {
                self.remember(&created);
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Taken),
            Err(e) => Err(e),
        }
    }

    /// A merge patch that fails with 409 unless the Lease is still at `rv`.
    async fn write(&mut self, rv: &str, spec: LeaseSpec) -> Result<Attempt, kube::Error> {
        let body = json!({"metadata": {"resourceVersion": rv}, "spec": spec});
        let lease = self
            .api
            .patch(
                &self.config.lease_name,
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .await?;
        self.remember(&lease);
        Ok(Attempt::Held)
    }

    fn remember(&mut self, lease: &Lease) {
        let spec = lease.spec.clone().unwrap_or_default();
        self.observed = Some((spec.clone(), Instant::now()));
        self.written = lease.metadata.resource_version.clone().map(|rv| (rv, spec));
    }

    /// Hands the Lease back (client-go's ReleaseOnCancel): empty holder, so a standby takes it
    /// at its next try.
    async fn release(&mut self) {
        let Some((rv, spec)) = self.written.take() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        let now = MicroTime(jiff::Timestamp::now());
        let body = json!({
            "metadata": {"resourceVersion": rv},
            "spec": {"holderIdentity": null, "leaseDurationSeconds": 1,
                     "renewTime": now, "acquireTime": now},
        });
        let released = tokio::time::timeout(
            RELEASE_TIMEOUT,
            self.api.patch(
                &self.config.lease_name,
                &PatchParams::default(),
                &Patch::Merge(&body),
            ),
        )
        .await;
        match released {
            Ok(Ok(_)) => info!("released the leader lease"),
            Ok(Err(e)) => {
                warn!(error = %e, "could not release the leader lease; it expires on its own")
            }
            Err(_) => warn!("releasing the leader lease timed out; it expires on its own"),
        }
    }
}

fn renewed(spec: LeaseSpec, now: MicroTime) -> LeaseSpec {
    LeaseSpec {
        renew_time: Some(now),
        ..spec
    }
}

/// Resolves once a hand-back is requested (never without steering).
async fn requested(release: &mut Option<watch::Receiver<bool>>) {
    match release {
        Some(r) => {
            if r.wait_for(|x| *x).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// How long a handed-back Lease stays held after its holder stopped acting, so that requests
/// cancelled on the client side but already sent land before the next holder starts.
const HANDBACK_SETTLE: Duration = Duration::from_millis(200);

/// Why a term ended.
enum Ended {
    Stopped,
    Deadline,
    Taken,
    /// Handed back on request (a shard set rebalancing).
    Released,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(lease: u64, renew_ms: u64, retry_ms: u64) -> ElectionConfig {
        ElectionConfig {
            lease_name: "l".into(),
            namespace: "n".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_millis(renew_ms),
            retry_period: Duration::from_millis(retry_ms),
        }
    }

    #[test]
    fn timings_must_leave_a_margin_and_a_second_chance() {
        assert!(config(15, 10_000, 2_000).validate().is_ok());
        assert!(matches!(
            config(15, 15_000, 2_000).validate(),
            Err(ElectionError::RenewDeadline { .. })
        ));
        assert!(matches!(
            config(15, 10_000, 9_000).validate(),
            Err(ElectionError::RetryPeriod { .. })
        ));
    }
}
