//! When checks run: one long-lived task per target.
//!
//! Why a task per target rather than a hand-written timer wheel: tokio's timer already *is* a
//! hierarchical timer wheel, so 10,000 sleeping tasks cost one wheel slot each and no thread.
//! The task owns everything the target needs between checks (its keep-alive connection, its
//! buffers, its cached metric handles), so a check allocates almost nothing and needs no lock,
//! "at most one check in flight per target" holds by construction (the task runs its checks one
//! after another), and removing a target is aborting its task, which drops the connection at
//! once. The cost is one task per target: with its socket and read buffer, about 3.5 KiB per
//! endpoint at 10,000 endpoints, half of HAProxy's (benches/README.md, "Probing vs HAProxy").
//!
//! Schedule: the first check fires at a uniformly random offset within one interval, so a
//! cold start of 10,000 targets spreads evenly instead of firing in one burst. Later checks
//! keep that phase (`next = previous deadline + interval`, optionally jittered); when a check
//! or a slow consumer made the task miss ticks, missed ticks are skipped rather than bunched.
//! A global semaphore bounds checks in flight so a wave of hanging targets cannot exhaust
//! sockets; a hanging target only holds its own permit until its timeout.

use super::allowlist::Confinement;
use super::config::{CheckKind, CheckSpec, Host};
use super::http::{HttpProber, Kept};
use super::metrics::TargetMetrics;
use super::{Fact, Shared, TargetKey, outcome, tcp};
use crate::health::CheckOutcome;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};

/// What a target task needs; moved into the task when it starts.
pub(super) struct TargetTask {
    pub key: TargetKey,
    pub host: Host,
    pub port: u16,
    pub spec: Arc<CheckSpec>,
    pub shared: Arc<Shared>,
    pub confinement: watch::Receiver<Arc<Confinement>>,
    pub metrics: TargetMetrics,
}

/// The next deadline after `deadline`, at least one (jittered) interval later and in the
/// future. Pure, so the phase-keeping rule is tested without a clock.
pub(super) fn next_deadline(
    deadline: Instant,
    now: Instant,
    interval: Duration,
    jitter: f64,
    unit_random: f64,
) -> Instant {
    let factor = 1.0 + jitter * (2.0 * unit_random - 1.0);
    let mut next = deadline + interval.mul_f64(factor.max(0.0));
    if next <= now {
        // Skip whole missed intervals: keeps the phase, never fires a backlog in a burst.
        let behind = now.duration_since(next);
        let missed = (behind.as_nanos() / interval.as_nanos().max(1)) as u32 + 1;
        next += interval * missed;
    }
    next
}

/// The initial offset: uniform over one interval.
pub(super) fn first_offset(interval: Duration, unit_random: f64) -> Duration {
    interval.mul_f64(unit_random.clamp(0.0, 1.0))
}

enum Checker {
    Tcp,
    Http(Box<HttpProber>),
}

impl TargetTask {
    /// Runs until aborted (target removed) or until the fact consumer goes away.
    pub async fn run(self) {
        let spec = self.spec.clone();
        let mut checker = match &spec.kind {
            CheckKind::Tcp => Checker::Tcp,
            CheckKind::Http(check) => {
                let port = spec.port.unwrap_or(self.port);
                Checker::Http(Box::new(HttpProber::new(&self.host, port, check)))
            }
        };
        let sleep = sleep_until(Instant::now() + first_offset(spec.interval, fastrand::f64()));
        tokio::pin!(sleep);
        loop {
            sleep.as_mut().await;
            let scheduled = sleep.deadline();
            let Ok(permit) = self.shared.in_flight.acquire().await else {
                return;
            };
            let started = Instant::now();
            let lag = started.duration_since(scheduled);
            let conf = self.confinement.borrow().clone();
            let result = timeout(spec.timeout, self.check_once(&mut checker, &conf)).await;
            let latency = started.elapsed();
            drop(permit);

            let outcome = match result {
                Ok(CheckOutcome::Healthy) => match spec.max_latency {
                    Some(max) if latency > max => outcome::too_slow(latency, max),
                    _ => CheckOutcome::Healthy,
                },
                Ok(failed) => failed,
                Err(_elapsed) => {
                    if let Checker::Http(h) = &mut checker {
                        h.reset();
                    }
                    outcome::timeout(spec.timeout)
                }
            };
            self.metrics.record(&outcome, latency, lag);
            let fact = Fact {
                key: self.key.clone(),
                outcome,
                observed_at: SystemTime::now(),
                latency,
                schedule_lag: lag,
            };
            // Backpressure: wait for room rather than drop. See `Prober` docs.
            if self.shared.facts.send(fact).await.is_err() {
                return;
            }
            let next = next_deadline(
                scheduled,
                Instant::now(),
                spec.interval,
                spec.jitter,
                fastrand::f64(),
            );
            sleep.as_mut().reset(next);
        }
    }

    async fn check_once(&self, checker: &mut Checker, conf: &Confinement) -> CheckOutcome {
        let port = self.spec.port.unwrap_or(self.port);
        match (checker, &self.spec.kind) {
            (Checker::Http(h), CheckKind::Http(check)) => {
                let (outcome, kept) = h
                    .check(
                        &self.host,
                        port,
                        check,
                        conf,
                        self.shared.body_limit,
                        &self.shared.kept,
                    )
                    .await;
                if kept == Kept::OverBudget {
                    self.metrics.closed_over_budget();
                }
                outcome
            }
            _ => tcp::check(&self.host, port, conf).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_checks_spread_over_the_interval() {
        let i = Duration::from_secs(10);
        assert_eq!(first_offset(i, 0.0), Duration::ZERO);
        assert_eq!(first_offset(i, 0.5), Duration::from_secs(5));
        assert!(first_offset(i, 0.999) < i);
        // 10,000 offsets land in every tenth of the interval.
        let mut buckets = [0u32; 10];
        for _ in 0..10_000 {
            let o = first_offset(i, fastrand::f64());
            buckets[(o.as_secs_f64() / 1.0) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (800..1200).contains(&b)),
            "{buckets:?}"
        );
    }

    #[test]
    fn deadlines_keep_phase_and_skip_missed_ticks() {
        let t0 = Instant::now();
        let i = Duration::from_secs(1);
        // On time: exactly one interval later.
        assert_eq!(
            next_deadline(t0, t0 + Duration::from_millis(5), i, 0.0, 0.3),
            t0 + i
        );
        // 3.5 intervals behind: next tick on the original phase, in the future.
        let now = t0 + Duration::from_millis(3500);
        assert_eq!(
            next_deadline(t0, now, i, 0.0, 0.0),
            t0 + Duration::from_secs(4)
        );
        // Jitter stays within its fraction.
        let lo = next_deadline(t0, t0, i, 0.2, 0.0);
        let hi = next_deadline(t0, t0, i, 0.2, 1.0);
        assert_eq!(lo, t0 + Duration::from_millis(800));
        assert_eq!(hi, t0 + Duration::from_millis(1200));
    }
}
