//! The health prober: measures targets and reports facts; it never decides.
//!
//! The controller describes, per policy, which targets to check ([`Prober::set_targets`]);
//! the prober runs one long-lived task per target (the `scheduler` module says why) and delivers one
//! [`Fact`] per check on a bounded channel. The decision engine turns facts into rise/fall
//! transitions; keeping the prober free of state machines means the simulator can feed the
//! engine fabricated facts and nothing here needs a virtual clock.
//!
//! Confinement ([`allowlist`]) is checked before every connection: a target outside the
//! operator-wide allowlist and the policy's own endpoint addresses yields
//! `Unhealthy { kind: Disallowed }` and is never contacted.
//!
//! ```no_run
//! use ingress_failover::probe::*;
//! use std::sync::Arc;
//!
//! # async fn wire_up() -> Result<(), Box<dyn std::error::Error>> {
//! let allow = Allowlist::parse(["10.0.0.0/8", "lb.example.com"])?;
//! let (prober, mut facts) = Prober::new(ProberConfig::default(), allow);
//! let mut registry = prometheus_client::registry::Registry::default();
//! prober.metrics().register(&mut registry);
//!
//! let mut spec = CheckSpec::new(CheckKind::Http(HttpCheck::get("/healthz")?));
//! spec.max_latency = Some(std::time::Duration::from_millis(500));
//! let target = Target {
//!     tier: Tier::Primary,
//!     endpoint: Arc::from("10.0.1.5:8080"),
//!     host: "10.0.1.5".parse()?,
//!     port: 8080,
//!     spec: Arc::new(spec),
//! };
//! let policy = ingress_failover::api::PolicyId::new("shop", "web");
//! prober.set_targets(&policy, ["10.0.1.5".parse()?], vec![target])?;
//! while let Some(fact) = facts.recv().await {
//!     // hand the fact to the decision engine
//! #   drop(fact);
//! }
//! # Ok(())
//! # }
//! ```

pub mod allowlist;
pub mod config;
mod http;
pub mod metrics;
mod outcome;
mod scheduler;
mod tcp;
mod wire;

#[cfg(test)]
mod tests;

pub use allowlist::{Allowlist, AllowlistError, Confinement};
pub use config::{CheckKind, CheckSpec, ConfigError, Host, HttpCheck, StatusRanges};
pub use metrics::ProbeMetrics;
pub use outcome::MAX_MESSAGE;

use crate::api::PolicyId;
use crate::health::CheckOutcome;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

/// Which tier of a policy a target belongs to; a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    Primary,
    Emergency,
    LoadBalancer,
    /// The backup load balancer's health URL (`ingress.backupHealth.url`).
    BackupLoadBalancer,
}

impl Tier {
    pub const ALL: [Tier; 4] = [
        Tier::Primary,
        Tier::Emergency,
        Tier::LoadBalancer,
        Tier::BackupLoadBalancer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Primary => "primary",
            Tier::Emergency => "emergency",
            Tier::LoadBalancer => "loadbalancer",
            Tier::BackupLoadBalancer => "backuploadbalancer",
        }
    }
}

/// Identifies a target in facts. Shared strings so each fact costs reference-count bumps, not
/// string copies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetKey {
    pub policy: PolicyId,
    pub tier: Tier,
    /// Chosen by the controller (e.g. `10.0.1.5:8080` or a pod name); unique within a tier.
    pub endpoint: Arc<str>,
}

/// One thing to check.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub tier: Tier,
    pub endpoint: Arc<str>,
    pub host: Host,
    /// The serving port; `CheckSpec::port` overrides it for the check.
    pub port: u16,
    /// Shared between the targets of a policy: cloning a target does not copy the spec.
    pub spec: Arc<CheckSpec>,
}

/// What one check observed. Facts only: the engine decides what they mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub key: TargetKey,
    pub outcome: CheckOutcome,
    /// Wall-clock time the check finished (for status timestamps).
    pub observed_at: SystemTime,
    /// Connect plus whole exchange, as compared with `max_latency`.
    pub latency: Duration,
    /// How late the check started versus its schedule (timer slip, concurrency limit, or a
    /// slow consumer). Near zero when the prober keeps up.
    pub schedule_lag: Duration,
}

/// Process-wide prober limits.
#[derive(Debug, Clone)]
pub struct ProberConfig {
    /// Checks in flight at once, across all targets; bounds sockets and bursts.
    pub max_in_flight: usize,
    /// Capacity of the fact channel.
    pub channel_capacity: usize,
    /// Most body bytes read per HTTP check; the rest is never read (and the connection is
    /// dropped), so a multi-megabyte body costs at most this much memory.
    pub body_limit: usize,
    /// Keep-alive connections held open between checks, across all targets. A target beyond
    /// it closes its connection after each check, as HAProxy always does: slower per check,
    /// but the process never runs out of file descriptors (10,000 policies × 5 endpoints need
    /// 50,000 sockets; a container's limit is often 20,000 or less). Default:
    /// [`kept_connection_budget`] of the open-file limit.
    pub max_kept_connections: usize,
}

/// File descriptors left for everything but kept probe connections: API watches and
/// requests, listeners, files, and the checks in flight (each needs a socket while it runs).
pub const FD_RESERVE: usize = 1024;

/// How many keep-alive connections fit in the open-file limit: the soft `RLIMIT_NOFILE` less
/// the checks in flight and [`FD_RESERVE`]. `run` raises the soft limit to the hard one first.
pub fn kept_connection_budget(max_in_flight: usize) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    limit.saturating_sub(max_in_flight + FD_RESERVE)
}

/// Raises the soft open-file limit to the hard limit (a process may always do so) and returns
/// the new soft limit; the default soft limit (often 1,024) is far below what probing
/// thousands of endpoints over kept connections needs.
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        l.current = l.maximum;
        setrlimit(Resource::Nofile, l).ok()?;
    }
    l.current
}

impl Default for ProberConfig {
    fn default() -> Self {
        let max_in_flight = 1024;
        ProberConfig {
            max_in_flight,
            channel_capacity: 4096,
            body_limit: 64 * 1024,
            max_kept_connections: kept_connection_budget(max_in_flight),
        }
    }
}

/// State every target task shares.
pub(crate) struct Shared {
    in_flight: Semaphore,
    /// One permit per keep-alive connection held between checks ([`ProberConfig::max_kept_connections`]).
    kept: Arc<Semaphore>,
    facts: mpsc::Sender<Fact>,
    body_limit: usize,
}

struct RunningTarget {
    target: Target,
    task: JoinHandle<()>,
}

impl Drop for RunningTarget {
    fn drop(&mut self) {
        // Prompt stop: the task is dropped at its next await, closing its connection.
        self.task.abort();
    }
}

struct PolicyTargets {
    confinement: watch::Sender<Arc<Confinement>>,
    running: HashMap<(Tier, Arc<str>), RunningTarget>,
}

struct Registry {
    allowlist: Arc<Allowlist>,
    policies: HashMap<PolicyId, PolicyTargets>,
}

/// How a [`Prober::set_targets`] call changed the running set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetDiff {
    pub started: usize,
    pub kept: usize,
    /// Same key, different address or spec: restarted with a fresh schedule and connection.
    pub restarted: usize,
    pub stopped: usize,
}

/// Handle to the prober. Cheap to clone. Target tasks stop when removed, when the last clone
/// is dropped, or when the fact receiver is dropped.
///
/// Backpressure: facts go through a bounded channel and a target task *waits* for room before
/// scheduling its next check. Nothing is dropped (the engine counts consecutive results, so a
/// silently missing fact could hide a transition), memory stays bounded (channel capacity plus
/// at most one pending fact per target), and a stalled consumer pauses probing instead of
/// queueing stale measurements. Ticks missed during a stall are skipped, not replayed, so a
/// consumer that catches up does not trigger a burst of checks.
#[derive(Clone)]
pub struct Prober {
    shared: Arc<Shared>,
    registry: Arc<Mutex<Registry>>,
    metrics: ProbeMetrics,
    runtime: tokio::runtime::Handle,
}

impl Prober {
    /// Creates a prober and the receiver of its facts. Target tasks are spawned on the
    /// runtime this is called from, so the controller picks where probing runs.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(config: ProberConfig, allowlist: Allowlist) -> (Prober, mpsc::Receiver<Fact>) {
        let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
        let prober = Prober {
            shared: Arc::new(Shared {
                in_flight: Semaphore::new(config.max_in_flight.max(1)),
                kept: Arc::new(Semaphore::new(
                    config.max_kept_connections.min(Semaphore::MAX_PERMITS),
                )),
                facts: tx,
                body_limit: config.body_limit.max(1),
            }),
            registry: Arc::new(Mutex::new(Registry {
                allowlist: Arc::new(allowlist),
                policies: HashMap::new(),
            })),
            metrics: ProbeMetrics::new(),
            runtime: tokio::runtime::Handle::current(),
        };
        (prober, rx)
    }

    /// The metric families; register them once with [`ProbeMetrics::register`].
    pub fn metrics(&self) -> &ProbeMetrics {
        &self.metrics
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters (each step is a single insert/remove), so poisoning is ignored.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the operator-wide allowlist; applies to the very next check of every target,
    /// including those on open connections.
    pub fn set_allowlist(&self, allowlist: Allowlist) {
        let mut reg = self.lock();
        reg.allowlist = Arc::new(allowlist);
        let operator = reg.allowlist.clone();
        for p in reg.policies.values() {
            let own = p.confinement.borrow().own.clone();
            p.confinement.send_replace(Arc::new(Confinement {
                operator: operator.clone(),
                own,
            }));
        }
    }

    /// Declares the complete target list of one policy. Targets whose key, address and spec
    /// are unchanged keep running untouched (schedule phase and connection included); removed
    /// ones are stopped at once; new ones start at a random offset within their interval.
    /// `own_addresses` are the policy's endpoint addresses (from its Service), permitted in
    /// addition to the operator-wide allowlist. An empty list removes the policy.
    ///
    /// Validates everything first: on error nothing changes.
    pub fn set_targets(
        &self,
        policy: &PolicyId,
        own_addresses: impl IntoIterator<Item = IpAddr>,
        targets: Vec<Target>,
    ) -> Result<TargetDiff, ConfigError> {
        let mut seen = HashSet::with_capacity(targets.len());
        for t in &targets {
            t.spec.validate()?;
            if !seen.insert((t.tier, t.endpoint.clone())) {
                return Err(ConfigError::DuplicateTarget(format!(
                    "{}/{}",
                    t.tier.as_str(),
                    t.endpoint
                )));
            }
        }
        drop(seen);
        let own: HashSet<IpAddr> = own_addresses
            .into_iter()
            .map(|ip| ip.to_canonical())
            .collect();

        let mut reg = self.lock();
        if targets.is_empty() {
            if let Some((name, p)) = reg.policies.remove_entry(policy) {
                let diff = TargetDiff {
                    stopped: p.running.len(),
                    ..TargetDiff::default()
                };
                drop(p);
                self.metrics.forget_policy(&name);
                return Ok(diff);
            }
            return Ok(TargetDiff::default());
        }

        let operator = reg.allowlist.clone();
        let policy_key = policy.clone();
        let entry = reg
            .policies
            .entry(policy_key.clone())
            .or_insert_with(|| PolicyTargets {
                confinement: watch::Sender::new(Arc::new(Confinement::default())),
                running: HashMap::new(),
            });
        entry
            .confinement
            .send_replace(Arc::new(Confinement { operator, own }));

        let mut diff = TargetDiff::default();
        let mut previous = std::mem::take(&mut entry.running);
        for target in targets {
            let id = (target.tier, target.endpoint.clone());
            match previous.remove(&id) {
                Some(running) if running.target == target => {
                    diff.kept += 1;
                    entry.running.insert(id, running);
                    continue;
                }
                Some(_changed) => diff.restarted += 1,
                None => diff.started += 1,
            }
            let task = scheduler::TargetTask {
                key: TargetKey {
                    policy: policy_key.clone(),
                    tier: target.tier,
                    endpoint: target.endpoint.clone(),
                },
                host: target.host.clone(),
                port: target.port,
                spec: target.spec.clone(),
                shared: self.shared.clone(),
                confinement: entry.confinement.subscribe(),
                metrics: self.metrics.for_target(&policy_key, target.tier),
            };
            let handle = self.runtime.spawn(task.run());
            entry.running.insert(
                id,
                RunningTarget {
                    target,
                    task: handle,
                },
            );
        }
        diff.stopped = previous.len();
        drop(previous);
        Ok(diff)
    }

    /// Stops every target of a policy.
    pub fn remove_policy(&self, policy: &PolicyId) -> TargetDiff {
        self.set_targets(policy, [], Vec::new()).unwrap_or_default()
    }

    /// Targets currently running, across policies.
    pub fn target_count(&self) -> usize {
        self.lock().policies.values().map(|p| p.running.len()).sum()
    }
}
