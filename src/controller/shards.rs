//! Shards: policies split among replicas on coordination.k8s.io Leases (issue 16).
//!
//! `run --shards N` (default 1). With one shard nothing changes: one Lease named
//! `--lease-name`, the leader writes for every policy ([`super::leader`]). With N > 1:
//!
//! - **Which shard.** A policy's shard is [`shard_of`] its `metadata.uid`: FNV-1a 64 over the
//!   UID's bytes, modulo N. This function is part of the contract: changing it (or N) moves
//!   policies between shards, so every replica of one installation must run the same one.
//! - **Shard Leases.** Shard `i` is the Lease `<lease-name>-shard-<i>`, elected with exactly
//!   the rules of [`super::leader`] (renew deadline, quick retries, expiry on the local clock,
//!   resourceVersion preconditions, release on shutdown): one candidate per shard, each only
//!   steered on *whether* it may take a free or expired Lease and *when* it hands one back. Its
//!   holder alone reconciles, probes and exports metrics for the shard's policies.
//! - **Membership.** Each replica renews `<lease-name>-member-<identity>` (labelled
//!   [`MEMBER_LABEL`]`=<lease-name>`; owned by the replica's Pod when the chart says which, so
//!   it goes with the Pod) every retry period and lists the member Leases. A member is live
//!   while its record keeps changing: seen to change within the *renew deadline*, on the local
//!   clock. The renew deadline rather than the lease duration: a replica that could
//!   not renew for that long has already stopped acting on its shards, and counting it dead by
//!   then raises the survivors' share before its shard Leases expire, so a crash costs one
//!   lease duration and not a lease duration plus a membership timeout. Counting a slow member
//!   dead early is harmless: shares only steer who competes; the Leases still decide who holds.
//! - **Fair share** = ceil(N / live members). A replica takes a free or expired shard only
//!   while it holds fewer than its share (acquisitions of one replica are serialised, so its
//!   candidates never overshoot together), and hands back shards above its share one at a
//!   time: that shard's flag drops first (its reconciles are cancelled), then its holder is
//!   cleared. Capacity (members × share) is never below N, so a free shard always has a
//!   replica below its share to take it; a scale-up rebalances, a crash is absorbed.
//! - **Handover without a probing gap.** A shard handed back for rebalance keeps its policies'
//!   runtimes and probes (writing nothing) until the new holder is seen holding it plus one
//!   retry period (time for its first reconcile to start probing), or a lease duration at
//!   most; only then are they forgotten. A shard lost any other way is forgotten at once.
//! - **Gain and loss.** On gaining a shard its policies are reconciled (resuming from status,
//!   as a leadership gain); on losing one their runtimes, probes and metric series are
//!   forgotten. Events queued in a shard's term are dropped once that term ends
//!   (`events::Term`, one per shard).
//! - **Reporting.** Status carries `shard: {index, count, holder}` (with N > 1), metrics
//!   `ingress_failover_shard_held{shard="i"}` (1/0, N series) and `ingress_failover_leader`
//!   (holds at least one shard).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::select_all;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use super::Options;
use super::context::Context;
use super::leader::{self, Election, ElectionConfig, ElectionError, Steering};
use crate::api::{FailoverPolicy, PolicyId, ShardStatus};

/// Label on member Leases, valued with `--lease-name`: what a replica lists to count members.
pub const MEMBER_LABEL: &str = "ingressfailover.io/member-of";

/// A policy's shard among `count`: FNV-1a 64 over the bytes of `key` (its `metadata.uid`),
/// modulo `count`. Part of the operator's contract: changing it moves every policy.
pub fn shard_of(key: &str, count: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = key
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    (hash % u64::from(count.max(1))) as u32
}

/// What a policy is hashed by: its UID, or `namespace/name` for an object without one (never
/// the case on an API server; kept total for tests and tools).
pub fn shard_key(uid: Option<&str>, namespace: Option<&str>, name: Option<&str>) -> String {
    match uid {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => format!(
            "{}/{}",
            namespace.unwrap_or_default(),
            name.unwrap_or_default()
        ),
    }
}

/// The Lease of shard `index`.
pub fn shard_lease_name(lease_name: &str, index: u32) -> String {
    format!("{lease_name}-shard-{index}")
}

/// The membership Lease of replica `identity`.
pub fn member_lease_name(lease_name: &str, identity: &str) -> String {
    format!("{lease_name}-member-{identity}")
}

/// Which shards this replica holds, shared by reconciles, Events and the followers.
pub struct ShardSet {
    count: u32,
    identity: String,
    /// One flag per shard: true while this replica holds it (N = 1: the leader flag).
    flags: Vec<watch::Receiver<bool>>,
    /// The shard being handed back for rebalance, if any (its runtimes are kept meanwhile).
    handing_over: Mutex<Option<u32>>,
    /// Handovers finished (the new holder seen): their runtimes may be forgotten.
    handed: Mutex<Option<mpsc::UnboundedReceiver<u32>>>,
}

impl ShardSet {
    fn new(
        count: u32,
        identity: &str,
        flags: Vec<watch::Receiver<bool>>,
        handed: Option<mpsc::UnboundedReceiver<u32>>,
    ) -> Self {
        ShardSet {
            count,
            identity: identity.to_string(),
            flags,
            handing_over: Mutex::new(None),
            handed: Mutex::new(handed),
        }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// This replica's identity (the holder it writes in Leases and status).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The shard of `policy`.
    pub fn of(&self, policy: &FailoverPolicy) -> u32 {
        let m = &policy.metadata;
        shard_of(
            &shard_key(m.uid.as_deref(), m.namespace.as_deref(), m.name.as_deref()),
            self.count,
        )
    }

    /// The shard of the object an Event is about (always a policy).
    pub fn of_reference(&self, r: &k8s_openapi::api::core::v1::ObjectReference) -> u32 {
        shard_of(
            &shard_key(r.uid.as_deref(), r.namespace.as_deref(), r.name.as_deref()),
            self.count,
        )
    }

    /// The flag of shard `index`.
    pub fn flag(&self, index: u32) -> watch::Receiver<bool> {
        self.flags[index as usize % self.flags.len()].clone()
    }

    pub fn holds(&self, index: u32) -> bool {
        *self.flags[index as usize % self.flags.len()].borrow()
    }

    /// Shards held now.
    pub fn held(&self) -> Vec<u32> {
        (0..self.count).filter(|i| self.holds(*i)).collect()
    }

    /// What status says about the policy's shard: only with more than one shard.
    pub fn status_of(&self, policy: &FailoverPolicy) -> Option<ShardStatus> {
        (self.count > 1).then(|| ShardStatus {
            index: self.of(policy),
            count: self.count,
            holder: self.identity.clone(),
        })
    }

    fn handing_over(&self) -> Option<u32> {
        *self.handing_over.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_handing_over(&self, shard: Option<u32>) {
        *self.handing_over.lock().unwrap_or_else(|p| p.into_inner()) = shard;
    }
}

/// The running elections: one Lease, or every shard's plus the membership.
pub enum Elections {
    One(Election),
    Shards {
        candidates: Vec<Election>,
        steward: JoinHandle<()>,
        stop: watch::Sender<bool>,
    },
}

impl Elections {
    /// Stops competing: every shard stops acting at once and its Lease is handed back; the
    /// membership Lease is marked left. Bounded like [`Election::stop`].
    pub async fn stop(self) {
        match self {
            Elections::One(e) => e.stop().await,
            Elections::Shards {
                candidates,
                steward,
                stop,
            } => {
                let _ = stop.send(true);
                let mut steward = steward;
                let steward_done = async {
                    if tokio::time::timeout(Duration::from_secs(2), &mut steward)
                        .await
                        .is_err()
                    {
                        steward.abort();
                    }
                };
                futures::join!(
                    futures::future::join_all(candidates.into_iter().map(Election::stop)),
                    steward_done
                );
            }
        }
    }
}

/// What [`start`] returns: the "holds at least one shard" flag (the leader flag with one
/// shard), the shard set, and what to stop on shutdown.
pub type Started = (watch::Receiver<bool>, Arc<ShardSet>, Option<Elections>);

/// Starts the election(s). Never waits on the API.
pub fn start(client: &Client, opts: &Options) -> Result<Started, ElectionError> {
    let count = opts.shards.max(1);
    if count == 1 {
        let (rx, election) = leader::start(client, opts)?;
        let set = ShardSet::new(1, &opts.identity, vec![rx.clone()], None);
        return Ok((rx, Arc::new(set), election.map(Elections::One)));
    }
    if !opts.leader_election {
        // One replica by choice: it holds every shard.
        let (tx, rx) = watch::channel(true);
        std::mem::forget(tx);
        let set = ShardSet::new(
            count,
            &opts.identity,
            vec![rx.clone(); count as usize],
            None,
        );
        return Ok((rx, Arc::new(set), None));
    }
    let config = ElectionConfig::from_options(opts)?;
    if config.lease_name.len() > 63 {
        return Err(ElectionError::LeaseNameTooLong {
            name: config.lease_name,
        });
    }
    let (senders, flags): (Vec<_>, Vec<_>) = (0..count).map(|_| watch::channel(false)).unzip();
    let (handed_tx, handed_rx) = mpsc::unbounded_channel();
    let set = Arc::new(ShardSet::new(
        count,
        &opts.identity,
        flags.clone(),
        Some(handed_rx),
    ));
    // No share before the first look at the members: a replica starting beside others must
    // not grab every shard first and hand them back after.
    let share = Arc::new(AtomicU32::new(0));
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    let allow = {
        let (set, share) = (set.clone(), share.clone());
        Arc::new(move || (set.held().len() as u32) < share.load(Ordering::SeqCst))
            as Arc<dyn Fn() -> bool + Send + Sync>
    };
    let mut candidates = Vec::new();
    let mut releases = Vec::new();
    let mut holders = Vec::new();
    for (i, flag) in senders.into_iter().enumerate() {
        let (release_tx, release_rx) = watch::channel(false);
        let (holder_tx, holder_rx) = watch::channel(None);
        let steering = Steering {
            lock: lock.clone(),
            allow: allow.clone(),
            release: release_rx,
            holder: holder_tx,
        };
        let shard_config = ElectionConfig {
            lease_name: shard_lease_name(&config.lease_name, i as u32),
            ..config.clone()
        };
        candidates.push(leader::start_steered(client, shard_config, flag, steering));
        releases.push(release_tx);
        holders.push(holder_rx);
    }
    let (any_tx, any_rx) = watch::channel(false);
    tokio::spawn(any_of(flags, any_tx));
    let (stop, stop_rx) = watch::channel(false);
    let steward = Steward {
        api: Api::namespaced(client.clone(), &config.namespace),
        config: config.clone(),
        count,
        set: set.clone(),
        share,
        releases,
        holders,
        handed: handed_tx,
        seen: HashMap::new(),
    };
    let span = tracing::info_span!("shards", lease = %format!("{}/{}", config.namespace, config.lease_name), identity = %config.identity);
    let steward = tokio::spawn(steward.run(stop_rx).instrument(span));
    Ok((
        any_rx,
        set,
        Some(Elections::Shards {
            candidates,
            steward,
            stop,
        }),
    ))
}

/// Keeps `any` true while at least one flag is.
async fn any_of(mut flags: Vec<watch::Receiver<bool>>, any: watch::Sender<bool>) {
    loop {
        let now = flags.iter().any(|f| *f.borrow());
        any.send_if_modified(|v| std::mem::replace(v, now) != now);
        let (changed, _, rest) = select_all(flags.iter_mut().map(|f| Box::pin(f.changed()))).await;
        drop(rest);
        if changed.is_err() {
            any.send_replace(false);
            return;
        }
    }
}

/// Keeps the membership Lease, counts the live members, sets the share and hands back shards
/// above it, one at a time.
struct Steward {
    api: Api<Lease>,
    config: ElectionConfig,
    count: u32,
    set: Arc<ShardSet>,
    share: Arc<AtomicU32>,
    releases: Vec<watch::Sender<bool>>,
    holders: Vec<watch::Receiver<Option<String>>>,
    handed: mpsc::UnboundedSender<u32>,
    /// Per member Lease: its record last seen and when it was first seen (local clock).
    seen: HashMap<String, (Option<MicroTime>, Instant)>,
}

/// A handback in progress.
struct Handover {
    shard: u32,
    started: Instant,
    /// When another holder was first seen holding the shard.
    taken: Option<Instant>,
}

impl Steward {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let c = self.config.clone();
        let mut handover: Option<Handover> = None;
        loop {
            if let Err(e) = self.renew_membership().await {
                debug!(error = %e, "could not renew the membership Lease");
            }
            match self.live_members().await {
                Ok(live) => {
                    let share = self.count.div_ceil(live.max(1));
                    if self.share.swap(share, Ordering::SeqCst) != share {
                        info!(members = live, share, "shard share changed");
                    }
                }
                Err(e) => debug!(error = %e, "could not list the member Leases"),
            }
            handover = self.rebalance(handover);
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                _ = tokio::time::sleep(c.retry_period) => {}
            }
        }
        self.leave().await;
    }

    /// One step of rebalancing: finish the handover in progress, or start the next one.
    fn rebalance(&mut self, handover: Option<Handover>) -> Option<Handover> {
        let c = &self.config;
        if let Some(mut h) = handover {
            let i = h.shard as usize;
            if self.set.holds(h.shard) {
                // Not handed back yet (or taken again): keep asking.
                if h.started.elapsed() < c.lease_duration {
                    return Some(h);
                }
            } else {
                self.releases[i].send_replace(false);
                let other = self.holders[i]
                    .borrow()
                    .clone()
                    .is_some_and(|holder| holder != c.identity);
                if other && h.taken.is_none() {
                    h.taken = Some(Instant::now());
                }
                // Keep probing one retry period past the new holder's arrival (its first
                // reconcile starts its probes), or at most a lease duration in all.
                let settled = h.taken.is_some_and(|t| t.elapsed() >= c.retry_period);
                if !settled && h.started.elapsed() < c.lease_duration + c.retry_period {
                    return Some(h);
                }
            }
            self.releases[i].send_replace(false);
            self.set.set_handing_over(None);
            let _ = self.handed.send(h.shard);
            return None;
        }
        let held = self.set.held();
        let share = self.share.load(Ordering::SeqCst);
        if share == 0 || held.len() as u32 <= share {
            return None;
        }
        let shard = *held.last().expect("held is longer than the share");
        info!(
            shard,
            held = held.len(),
            share,
            "holding more shards than the share; handing one back"
        );
        self.set.set_handing_over(Some(shard));
        self.releases[shard as usize].send_replace(true);
        Some(Handover {
            shard,
            started: Instant::now(),
            taken: None,
        })
    }

    fn member_name(&self) -> String {
        member_lease_name(&self.config.lease_name, &self.config.identity)
    }

    /// Renews (or creates) this replica's membership Lease.
    async fn renew_membership(&self) -> Result<(), kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let seconds =
            i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let spec = LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(seconds),
            renew_time: Some(now),
            ..Default::default()
        };
        let body = json!({"spec": spec});
        match self
            .api
            .patch(
                &self.member_name(),
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 404 => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.member_name()),
                        namespace: Some(self.config.namespace.clone()),
                        labels: Some(
                            [(MEMBER_LABEL.to_string(), self.config.lease_name.clone())].into(),
                        ),
                        owner_references: pod_owner(&self.config).map(|o| vec![o]),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await?;
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    /// Live members, this replica included: member Leases with a holder whose record was seen
    /// to change within the renew deadline (local clock; see the module documentation).
    async fn live_members(&mut self) -> Result<u32, kube::Error> {
        let selector = format!("{MEMBER_LABEL}={}", self.config.lease_name);
        let list = self
            .api
            .list(&ListParams::default().labels(&selector))
            .await?;
        let now = Instant::now();
        let mine = self.member_name();
        let mut live = 1;
        let mut names = Vec::new();
        for lease in list.items {
            let Some(name) = lease.metadata.name.clone() else {
                continue;
            };
            let spec = lease.spec.unwrap_or_default();
            let held = spec
                .holder_identity
                .as_deref()
                .is_some_and(|h| !h.is_empty());
            let record = spec.renew_time;
            let at = match self.seen.get(&name) {
                Some((r, at)) if *r == record => *at,
                _ => now,
            };
            self.seen.insert(name.clone(), (record, at));
            names.push(name.clone());
            if name != mine && held && now.duration_since(at) < self.config.renew_deadline {
                live += 1;
            }
        }
        self.seen.retain(|n, _| names.contains(n));
        Ok(live)
    }

    /// Marks the membership Lease left (no holder), so the others raise their share at once.
    async fn leave(&self) {
        let body = json!({"spec": {"holderIdentity": null}});
        let left = tokio::time::timeout(
            Duration::from_secs(1),
            self.api.patch(
                &self.member_name(),
                &PatchParams::default(),
                &Patch::Merge(&body),
            ),
        )
        .await;
        if !matches!(left, Ok(Ok(_))) {
            warn!("could not mark the membership Lease left; it lapses on its own");
        }
    }
}

/// The Pod this replica runs in, as the owner of its membership Lease, so that the garbage
/// collector deletes the Lease with the Pod (each rollout would otherwise leave one Lease per
/// replaced Pod behind; the operator has no `delete` on Leases). From the chart's downward-API
/// variables `POD_UID`, `POD_NAME` and `POD_NAMESPACE`, and only when the Pod is this replica
/// (`--identity`) in the Lease's namespace: an owner missing from the dependent's namespace
/// would have the collector delete the Lease at once.
fn pod_owner(config: &ElectionConfig) -> Option<OwnerReference> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (uid, name, ns) = (var("POD_UID")?, var("POD_NAME")?, var("POD_NAMESPACE")?);
    (name == config.identity && ns == config.namespace).then(|| OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name,
        uid,
        ..Default::default()
    })
}

/// Follows the shards' flags (spawned with the other followers): exports
/// `ingress_failover_shard_held`, and with more than one shard reconciles every policy when a
/// shard is gained and forgets a lost shard's policies (runtimes, probes, metric series) —
/// at once, or after the handover for a shard handed back to rebalance.
pub(crate) async fn follow(ctx: Arc<Context>, all: mpsc::UnboundedSender<()>) {
    let set = ctx.shards.clone();
    let mut flags: Vec<_> = (0..set.count()).map(|i| set.flag(i)).collect();
    let mut handed = set.handed.lock().unwrap_or_else(|p| p.into_inner()).take();
    let mut was = vec![false; flags.len()];
    let mut lingering = vec![false; flags.len()];
    loop {
        for (i, flag) in flags.iter_mut().enumerate() {
            let is = *flag.borrow_and_update();
            ctx.metrics.set_shard_held(i as u32, is);
            if set.count() == 1 || is == was[i] {
                continue;
            }
            let shard = i as u32;
            if is {
                info!(shard, "acquired the shard; reconciling its policies");
                if std::mem::take(&mut lingering[i]) {
                    forget_shard(&ctx, shard);
                }
                let _ = all.send(());
            } else if set.handing_over() == Some(shard) {
                info!(
                    shard,
                    "handed the shard back; probing its policies until the new holder does"
                );
                lingering[i] = true;
            } else {
                warn!(
                    shard,
                    "lost the shard; forgetting its policies and stopping their probes"
                );
                forget_shard(&ctx, shard);
            }
            was[i] = is;
        }
        let handed_over = async {
            match handed.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            (changed, _, _) = select_all(flags.iter_mut().map(|f| Box::pin(f.changed()))) => {
                if changed.is_err() {
                    return;
                }
            }
            shard = handed_over => match shard {
                Some(shard) => {
                    let i = shard as usize;
                    if lingering[i] && !set.holds(shard) {
                        info!(shard, "the new holder has the shard; forgetting its policies");
                        lingering[i] = false;
                        forget_shard(&ctx, shard);
                    }
                }
                None => handed = None,
            },
        }
    }
}

/// Forgets the runtimes, probe targets and metric series of the policies of `shard` (and of
/// policies no longer in the cache, whose shard cannot be told).
fn forget_shard(ctx: &Context, shard: u32) {
    let set = &ctx.shards;
    let forget = |key: &PolicyId| {
        let obj = ObjectRef::<FailoverPolicy>::new(&key.name).within(&key.namespace);
        ctx.policies.get(&obj).is_none_or(|p| set.of(&p) == shard)
    };
    for key in ctx.remove_runtimes_where(forget) {
        ctx.prober.remove_policy(&key);
        ctx.metrics.forget(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_64_is_the_contract() {
        // Reference values of FNV-1a 64 (the published test vectors).
        assert_eq!(
            shard_of("", u32::MAX),
            (0xcbf2_9ce4_8422_2325u64 % u64::from(u32::MAX)) as u32
        );
        assert_eq!(
            shard_of("a", u32::MAX),
            (0xaf63_dc4c_8601_ec8cu64 % u64::from(u32::MAX)) as u32
        );
        assert_eq!(
            shard_of("foobar", u32::MAX),
            (0x8594_4171_f739_67e8u64 % u64::from(u32::MAX)) as u32
        );
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(shard_of("anything", 0), 0);
    }

    #[test]
    fn uids_spread_over_the_shards() {
        let mut counts = [0u32; 6];
        for i in 0..600 {
            let uid = format!("6f1c2b7e-0000-4000-8000-{i:012x}");
            counts[shard_of(&uid, 6) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (60..=140).contains(c)), "{counts:?}");
    }

    #[test]
    fn lease_names() {
        assert_eq!(
            shard_lease_name("ingress-failover", 3),
            "ingress-failover-shard-3"
        );
        assert_eq!(
            member_lease_name("ingress-failover", "pod-a"),
            "ingress-failover-member-pod-a"
        );
    }
}
