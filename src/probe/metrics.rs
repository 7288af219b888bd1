//! Prometheus metrics of the prober, with bounded label sets only.
//!
//! Labels are the policy (`namespace` and `name`, two labels so that dashboards and alerts can
//! filter by namespace), tier and result kind — never the endpoint: endpoints come
//! and go with pods and would grow the series count without bound. Per-endpoint detail lives in
//! the policy status instead. Each target task caches its own metric handles, so the hot path is
//! an atomic add, not a hash-map lookup under a lock.

use super::Tier;
use crate::health::{CheckOutcome, FailureKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

pub use crate::api::PolicyId;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    #[prometheus(flatten)]
    policy: PolicyId,
    tier: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabels {
    #[prometheus(flatten)]
    policy: PolicyId,
    tier: &'static str,
}

/// Latency buckets from 1 ms (loopback, same node) to 10 s (beyond any sane timeout).
const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The prober's metric families. Cloning shares the underlying series.
#[derive(Debug, Clone)]
pub struct ProbeMetrics {
    checks: Family<ResultLabels, Counter>,
    latency: Family<TierLabels, Histogram, fn() -> Histogram>,
    /// How late checks start versus their schedule: the prober's own saturation signal.
    lag: Histogram,
    /// Connections closed after their check because the keep-alive budget was full.
    over_budget: Counter,
}

impl Default for ProbeMetrics {
    fn default() -> Self {
        ProbeMetrics {
            checks: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            lag: Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0]),
            over_budget: Counter::default(),
        }
    }
}

fn result_index(o: &CheckOutcome) -> usize {
    match o {
        CheckOutcome::Healthy => 0,
        CheckOutcome::Unhealthy { kind, .. } => {
            1 + FailureKind::ALL.iter().position(|k| k == kind).unwrap_or(0)
        }
    }
}

impl ProbeMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the families under the `ingress_failover_probe` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("ingress_failover_probe");
        sub.register(
            "checks",
            "Health checks performed, by policy, tier and result (healthy or failure kind)",
            self.checks.clone(),
        );
        sub.register(
            "check_latency_seconds",
            "Duration of health checks (connect and whole exchange), by policy and tier",
            self.latency.clone(),
        );
        sub.register(
            "schedule_lag_seconds",
            "How late checks started versus their schedule (timer slip plus concurrency limit)",
            self.lag.clone(),
        );
        sub.register(
            "connections_over_budget",
            "Checks whose connection was closed afterwards because every keep-alive slot was taken (the open-file limit): those targets connect again for each check",
            self.over_budget.clone(),
        );
    }

    /// Handles for one target's series, created once when the target starts. All result kinds
    /// are created up front so dashboards see zeros rather than missing series.
    pub(crate) fn for_target(&self, policy: &PolicyId, tier: Tier) -> TargetMetrics {
        let counter = |result: &'static str| {
            self.checks.get_or_create_owned(&ResultLabels {
                policy: policy.clone(),
                tier: tier.as_str(),
                result,
            })
        };
        let mut by_result: Vec<Counter> = vec![counter("healthy")];
        by_result.extend(FailureKind::ALL.iter().map(|k| counter(k.as_str())));
        TargetMetrics {
            by_result: by_result.into_boxed_slice(),
            latency: self.latency.get_or_create_owned(&TierLabels {
                policy: policy.clone(),
                tier: tier.as_str(),
            }),
            lag: self.lag.clone(),
            over_budget: self.over_budget.clone(),
        }
    }

    /// Gives every family a series of `policy` (for the generated metrics reference).
    pub fn sample(&self, policy: &PolicyId) {
        let _ = self.for_target(policy, Tier::Primary);
        let _ = self.checks.get_or_create(&ResultLabels {
            policy: policy.clone(),
            tier: Tier::Primary.as_str(),
            result: "healthy",
        });
    }

    /// Drops a removed policy's series so a deleted policy does not linger in /metrics.
    pub(crate) fn forget_policy(&self, policy: &PolicyId) {
        for tier in Tier::ALL {
            self.latency.remove(&TierLabels {
                policy: policy.clone(),
                tier: tier.as_str(),
            });
            let results =
                std::iter::once("healthy").chain(FailureKind::ALL.iter().map(|k| k.as_str()));
            for result in results {
                self.checks.remove(&ResultLabels {
                    policy: policy.clone(),
                    tier: tier.as_str(),
                    result,
                });
            }
        }
    }
}

/// One target's cached series.
pub(crate) struct TargetMetrics {
    by_result: Box<[Counter]>,
    latency: Histogram,
    lag: Histogram,
    over_budget: Counter,
}

impl TargetMetrics {
    pub fn closed_over_budget(&self) {
        self.over_budget.inc();
    }

    pub fn record(&self, outcome: &CheckOutcome, latency: Duration, lag: Duration) {
        if let Some(c) = self.by_result.get(result_index(outcome)) {
            c.inc();
        }
        // A check that was never attempted has no latency worth recording.
        if !matches!(
            outcome,
            CheckOutcome::Unhealthy {
                kind: FailureKind::Disallowed,
                ..
            }
        ) {
            self.latency.observe(latency.as_secs_f64());
        }
        self.lag.observe(lag.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn records_and_forgets_with_bounded_labels() {
        let m = ProbeMetrics::new();
        let mut reg = Registry::default();
        m.register(&mut reg);
        let policy = PolicyId::new("shop", "web");
        let t = m.for_target(&policy, Tier::Primary);
        t.record(
            &CheckOutcome::Healthy,
            Duration::from_millis(3),
            Duration::ZERO,
        );
        t.record(
            &CheckOutcome::unhealthy(FailureKind::BadStatus, "status 503 not in 200-399"),
            Duration::from_millis(4),
            Duration::ZERO,
        );
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        assert!(out.contains(
            r#"ingress_failover_probe_checks_total{namespace="shop",name="web",tier="primary",result="healthy"} 1"#
        ), "{out}");
        assert!(out.contains(r#"result="bad_status"} 1"#), "{out}");
        assert!(out.contains(r#"ingress_failover_probe_check_latency_seconds_count{namespace="shop",name="web",tier="primary"} 2"#), "{out}");
        assert!(!out.contains("endpoint"));

        m.forget_policy(&policy);
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        assert!(!out.contains("shop/web"), "{out}");
    }
}
