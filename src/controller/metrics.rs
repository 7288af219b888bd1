//! The controller's Prometheus metrics. Labels are bounded: the policy (`namespace` and `name`),
//! tier, action kind, resource and phase — never an endpoint address.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::Phase;
use crate::engine::ActionKind;
pub use crate::probe::metrics::PolicyId;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    #[prometheus(flatten)]
    pub policy: PolicyId,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyResourceLabels {
    #[prometheus(flatten)]
    pub policy: PolicyId,
    pub resource: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyTierLabels {
    #[prometheus(flatten)]
    pub policy: PolicyId,
    pub tier: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyPhaseLabels {
    #[prometheus(flatten)]
    pub policy: PolicyId,
    pub phase: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    pub shard: String,
}

const PHASES: [Phase; 8] = [
    Phase::Pending,
    Phase::Normal,
    Phase::Degraded,
    Phase::EmergencyActive,
    Phase::FailedOver,
    Phase::Recovering,
    Phase::Frozen,
    Phase::Invalid,
];

/// The resources a policy writes, as the `resource` label of its write failures.
const WRITTEN: [&str; 6] = [
    "services",
    "endpointslices",
    "deployments/scale",
    "ingresses",
    "dnsendpoints",
    "failoverpolicies/status",
];

/// The `kind` label of `reconcile_errors` (see `ReconcileError::kind`).
pub struct ReconcileErrorKind;

impl ReconcileErrorKind {
    pub const API: &'static str = "api";
    pub const CONFLICT: &'static str = "conflict";
    pub const STATUS: &'static str = "status";
    pub const FINALIZER: &'static str = "finalizer";
    pub const ALL: [&'static str; 4] = [Self::API, Self::CONFLICT, Self::STATUS, Self::FINALIZER];
}

/// Every family the controller exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Family<KindLabels, Counter>,
    pub transitions: Family<KindLabels, Counter>,
    pub facts_absorbed: Counter,
    pub api_writes: Family<ResourceLabels, Counter>,
    pub write_failures: Family<PolicyResourceLabels, Counter>,
    pub leader: Gauge,
    /// Per shard (`--shards` series): 1 while this replica holds its Lease.
    pub shard_held: Family<ShardLabels, Gauge>,
    /// 1 while the FailoverPolicy CRD is not installed (the policy list answers 404).
    pub crd_missing: Gauge,
    /// Events given up on after their bounded retries, or dropped with the term that queued them.
    pub events_dropped: Counter,
    /// Event creations retried after an API error.
    pub events_retried: Counter,
    pub policy_phase: Family<PolicyPhaseLabels, Gauge>,
    pub healthy_ratio: Family<PolicyTierLabels, Gauge<f64, AtomicU64>>,
    pub healthy_endpoints: Family<PolicyTierLabels, Gauge>,
    pub published_endpoints: Family<PolicyLabels, Gauge>,
    pub total_endpoints: Family<PolicyTierLabels, Gauge>,
    pub load_balancer_up: Family<PolicyLabels, Gauge>,
    pub backup_load_balancer_up: Family<PolicyLabels, Gauge>,
    pub emergency_desired_replicas: Family<PolicyLabels, Gauge>,
    /// Ready replicas of the emergency Deployment, beside the desired ones: capacity asked for
    /// but not arriving is what an on-call engineer must see.
    pub emergency_ready_replicas: Family<PolicyLabels, Gauge>,
    pub primary_weight_percent: Family<PolicyLabels, Gauge>,
    /// 1 while a person's override (anything but Auto) is in the spec.
    pub override_active: Family<PolicyLabels, Gauge>,
    /// 1 while the policy is in dry-run.
    pub dry_run: Family<PolicyLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reconcile_duration: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
            reconcile_errors: Family::default(),
            transitions: Family::default(),
            facts_absorbed: Counter::default(),
            api_writes: Family::default(),
            write_failures: Family::default(),
            leader: Gauge::default(),
            shard_held: Family::default(),
            crd_missing: Gauge::default(),
            events_dropped: Counter::default(),
            events_retried: Counter::default(),
            policy_phase: Family::default(),
            healthy_ratio: Family::default(),
            healthy_endpoints: Family::default(),
            published_endpoints: Family::default(),
            total_endpoints: Family::default(),
            load_balancer_up: Family::default(),
            backup_load_balancer_up: Family::default(),
            emergency_desired_replicas: Family::default(),
            emergency_ready_replicas: Family::default(),
            primary_weight_percent: Family::default(),
            override_active: Family::default(),
            dry_run: Family::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("ingress_failover");
        r.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile of a FailoverPolicy",
            self.reconcile_duration.clone(),
        );
        r.register(
            "reconcile_errors",
            "Failed reconciles, by kind of error",
            self.reconcile_errors.clone(),
        );
        r.register(
            "transitions",
            "Decisions taken by the engine, by action kind",
            self.transitions.clone(),
        );
        r.register(
            "facts_absorbed",
            "Health-check results that changed nothing (a serving endpoint passing again, one out of service failing the same way) and so needed no engine step and no reconcile",
            self.facts_absorbed.clone(),
        );
        r.register(
            "api_writes",
            "Writes to the Kubernetes API, by resource",
            self.api_writes.clone(),
        );
        r.register(
            "api_requests",
            "Requests this process sent to the Kubernetes API (reads, watches and writes), by HTTP method",
            crate::kubeclient::REQUESTS.requests.clone(),
        );
        r.register(
            "api_throttled_seconds",
            "Time API requests waited for the client-side rate limit (--kube-api-qps, --kube-api-burst)",
            crate::kubeclient::REQUESTS.throttled.clone(),
        );
        r.register(
            "write_failures",
            "Failed writes to managed objects, by policy and resource",
            self.write_failures.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader lease (with --shards above 1: at least one shard's lease)",
            self.leader.clone(),
        );
        r.register(
            "shard_held",
            "1 while this replica holds the shard's lease and so reconciles, probes and reports its policies (one series per shard)",
            self.shard_held.clone(),
        );
        r.register(
            "crd_missing",
            "1 while the FailoverPolicy CustomResourceDefinition is not installed",
            self.crd_missing.clone(),
        );
        r.register(
            "events_dropped",
            "Events given up on after their bounded retries, or dropped when the leadership term that queued them ended",
            self.events_dropped.clone(),
        );
        r.register(
            "events_retried",
            "Event creations retried after an API error",
            self.events_retried.clone(),
        );
        r.register(
            "policy_phase",
            "1 for the phase each policy is in, 0 for the others",
            self.policy_phase.clone(),
        );
        r.register(
            "healthy_ratio",
            "Healthy/total endpoints of a policy's tier",
            self.healthy_ratio.clone(),
        );
        r.register(
            "healthy_endpoints",
            "Healthy endpoints of a policy's tier",
            self.healthy_endpoints.clone(),
        );
        r.register(
            "published_endpoints",
            "Endpoints the policy publishes into its managed Service's EndpointSlices (with spec.dryRun: would publish)",
            self.published_endpoints.clone(),
        );
        r.register(
            "endpoints",
            "Known endpoints of a policy's tier",
            self.total_endpoints.clone(),
        );
        r.register(
            "load_balancer_up",
            "1 while the policy's primary load balancer is judged healthy",
            self.load_balancer_up.clone(),
        );
        r.register(
            "backup_load_balancer_up",
            "1 while the policy's backup load balancer is judged healthy (policies with ingress.backupHealth)",
            self.backup_load_balancer_up.clone(),
        );
        r.register(
            "emergency_desired_replicas",
            "Replicas the policy wants for its emergency Deployment",
            self.emergency_desired_replicas.clone(),
        );
        r.register(
            "emergency_ready_replicas",
            "Ready replicas of the policy's emergency Deployment",
            self.emergency_ready_replicas.clone(),
        );
        r.register(
            "primary_weight_percent",
            "Share of traffic the policy sends to the primary ingress class",
            self.primary_weight_percent.clone(),
        );
        r.register(
            "override_active",
            "1 while a person's override (ForcePrimary, ForceBackup, Freeze) is set on the policy",
            self.override_active.clone(),
        );
        r.register(
            "dry_run",
            "1 while the policy only decides and reports (spec.dryRun)",
            self.dry_run.clone(),
        );
        // Present from the start at zero, so that rate() and absent() behave before the first
        // error.
        for kind in ReconcileErrorKind::ALL {
            let _ = self.reconcile_errors.get_or_create(&KindLabels { kind });
        }
        for k in ActionKind::ALL {
            let _ = self
                .transitions
                .get_or_create(&KindLabels { kind: k.as_str() });
        }
    }

    pub fn write(&self, resource: &'static str) {
        self.api_writes
            .get_or_create(&ResourceLabels { resource })
            .inc();
    }

    pub fn write_failed(&self, policy: &PolicyId, resource: &'static str) {
        self.write_failures
            .get_or_create(&PolicyResourceLabels {
                policy: policy.clone(),
                resource,
            })
            .inc();
    }

    /// Creates a policy's write-failure counters at zero (see [`Self::write_failures_of`]).
    pub fn touch_write_failures(&self, policy: &PolicyId) {
        for resource in WRITTEN {
            let _ = self.write_failures.get_or_create(&PolicyResourceLabels {
                policy: policy.clone(),
                resource,
            });
        }
    }

    /// Failed writes of one policy so far (all resources).
    pub fn write_failures_of(&self, policy: &PolicyId) -> u64 {
        WRITTEN
            .iter()
            .map(|&resource| {
                self.write_failures
                    .get_or_create(&PolicyResourceLabels {
                        policy: policy.clone(),
                        resource,
                    })
                    .get()
            })
            .sum()
    }

    /// Total writes so far (all resources), for the steady-state benchmark and tests.
    pub fn total_writes(&self) -> u64 {
        [
            "endpointslices",
            "services",
            "deployments/scale",
            "ingresses",
            "dnsendpoints",
            "httproutes",
            "failoverpolicies/status",
            "events",
        ]
        .iter()
        .map(|&resource| {
            self.api_writes
                .get_or_create(&ResourceLabels { resource })
                .get()
        })
        .sum()
    }

    pub fn set_phase(&self, policy: &PolicyId, phase: Phase) {
        for p in PHASES {
            self.policy_phase
                .get_or_create(&PolicyPhaseLabels {
                    policy: policy.clone(),
                    phase: p.as_str(),
                })
                .set(i64::from(p == phase));
        }
    }

    /// Whether this replica holds shard `index`.
    pub fn set_shard_held(&self, index: u32, held: bool) {
        self.shard_held
            .get_or_create(&ShardLabels {
                shard: index.to_string(),
            })
            .set(i64::from(held));
    }

    /// Drops a deleted policy's series.
    pub fn forget(&self, policy: &PolicyId) {
        for p in PHASES {
            self.policy_phase.remove(&PolicyPhaseLabels {
                policy: policy.clone(),
                phase: p.as_str(),
            });
        }
        for tier in ["primary", "emergency"] {
            let l = PolicyTierLabels {
                policy: policy.clone(),
                tier,
            };
            self.healthy_ratio.remove(&l);
            self.healthy_endpoints.remove(&l);
            self.total_endpoints.remove(&l);
        }
        let l = PolicyLabels {
            policy: policy.clone(),
        };
        self.load_balancer_up.remove(&l);
        self.backup_load_balancer_up.remove(&l);
        self.published_endpoints.remove(&l);
        self.emergency_desired_replicas.remove(&l);
        self.emergency_ready_replicas.remove(&l);
        self.primary_weight_percent.remove(&l);
        self.override_active.remove(&l);
        self.dry_run.remove(&l);
        for resource in WRITTEN {
            self.write_failures.remove(&PolicyResourceLabels {
                policy: policy.clone(),
                resource,
            });
        }
    }
}

/// `docs/metrics.md`, generated from the registered families (drift-checked by
/// `tests/reference_doc.rs`): every metric the operator exports, with its type and help text.
pub fn reference_markdown() -> String {
    let mut registry = Registry::default();
    let m = Metrics::default();
    m.register(&mut registry);
    // A family is listed once it has a series: one sample policy gives each of them one.
    m.write("endpointslices");
    m.set_shard_held(0, true);
    let policy = PolicyId::new("ns", "policy");
    m.touch_write_failures(&policy);
    m.set_phase(&policy, Phase::Normal);
    let tier = PolicyTierLabels {
        policy: policy.clone(),
        tier: "primary",
    };
    m.healthy_ratio.get_or_create(&tier).set(1.0);
    m.healthy_endpoints.get_or_create(&tier).set(1);
    m.total_endpoints.get_or_create(&tier).set(1);
    let l = PolicyLabels { policy };
    for family in [
        &m.load_balancer_up,
        &m.backup_load_balancer_up,
        &m.published_endpoints,
        &m.emergency_desired_replicas,
        &m.emergency_ready_replicas,
        &m.primary_weight_percent,
        &m.override_active,
        &m.dry_run,
    ] {
        family.get_or_create(&l).set(0);
    }
    let _ = crate::kubeclient::REQUESTS
        .requests
        .get_or_create(&crate::kubeclient::MethodLabel { method: "GET" });
    let probes = crate::probe::ProbeMetrics::default();
    probes.register(&mut registry);
    probes.sample(&l.policy);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("metrics encode");
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            rows.push((name.to_string(), String::new(), help.replace('|', "\\|")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
            && let Some(row) = rows.iter_mut().find(|r| r.0 == name)
        {
            row.1 = kind.to_string();
        }
    }
    let mut out = String::from(METRICS_PREAMBLE);
    out.push_str("| metric | type | what it says |\n|---|---|---|\n");
    for (name, kind, help) in rows {
        let shown = if kind == "counter" {
            format!("{name}_total")
        } else {
            name
        };
        out.push_str(&format!("| `{shown}` | {kind} | {help} |\n"));
    }
    out
}

const METRICS_PREAMBLE: &str = "# Metrics

<!-- Generated from the registered families by `UPDATE_GENERATED=1 cargo test --test reference_doc`; do not edit. -->

The controller serves these on `/metrics` (`--metrics-addr`; HTTPS with a TokenReview and a
SubjectAccessReview under `--metrics-secure`, see `docs/security.md`). Policy series are labelled
`namespace` and `name` (the chart's ServiceMonitor sets `honorLabels: true` so that they win over
the scrape target's namespace); other labels are `tier` (`primary`, `emergency`,
`loadbalancer`, `backuploadbalancer`), `result` (healthy or a failure kind), `phase`, `kind`
(an action or error kind) and `resource`. No label ever carries an endpoint address: endpoints come
and go with pods, and per-endpoint detail is in the policy's status instead. Counters, and the
per-policy error counters, exist at zero from the start.

Next to the tools on-call engineers already read: Flagger exports `flagger_canary_status` (0
running, 1 succeeded, 2 failed) and `flagger_canary_weight` per canary; Argo Rollouts exports
`rollout_info` with a `phase` label and `rollout_reconcile_error`. Here the same questions are
`ingress_failover_policy_phase{phase=...}` (1 for the current phase), the failback weight
`ingress_failover_primary_weight_percent`, and `ingress_failover_reconcile_errors_total`, plus
what neither has: health of each tier, emergency capacity desired and ready, and the prober's own
cost and saturation.

";
