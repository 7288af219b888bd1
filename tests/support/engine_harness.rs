//! A small driver around the pure engine for table and property tests: builds a policy from
//! JSON, feeds facts, advances a virtual clock and collects the actions of each step.

#![allow(dead_code)]

use ingress_failover::api::FailoverPolicySpec;
use ingress_failover::engine::{
    Action, ActionKind, CheckFact, EndpointFact, EngineConfig, Observation, PolicyState, Pool, step,
};
use ingress_failover::health::{CheckOutcome, FailureKind};
use serde_json::{Value, json};

pub const T0: i64 = 1_768_471_200_000; // 2026-01-15T10:00:00Z

pub struct Harness {
    pub cfg: EngineConfig,
    pub state: PolicyState,
    pub obs: Observation,
    pub now: i64,
    pub log: Vec<Action>,
}

/// A policy with four static primary backends, defaults elsewhere, merged with `overrides`.
pub fn spec(overrides: Value) -> FailoverPolicySpec {
    let mut base = json!({
        "backends": {"primary": {"addresses": ["10.0.1.1:80", "10.0.1.2:80", "10.0.1.3:80", "10.0.1.4:80"]}},
        "managedService": {"name": "web-healthy"},
        "probe": {"intervalSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3, "successThreshold": 2},
        "thresholds": {"activateBelow": 0.5, "activateForSeconds": 10, "deactivateAbove": 0.75, "deactivateForSeconds": 20},
        "recovery": {"holdDownSeconds": 30, "emergencyCooldownSeconds": 60, "stepSeconds": 10},
    });
    merge(&mut base, overrides);
    serde_json::from_value(base).expect("test spec deserializes")
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p,
    }
}

pub fn primary(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("10.0.1.{i}:80")).collect()
}

impl Harness {
    pub fn new(spec: &FailoverPolicySpec) -> Self {
        let cfg = EngineConfig::from_spec(spec);
        let mut obs = Observation::default();
        let eps = spec
            .backends
            .primary
            .addresses
            .iter()
            .map(|a| EndpointFact::ready(a.0.clone(), Pool::Primary))
            .collect();
        obs.set_endpoints(eps);
        // New endpoints start Up but unconfirmed (HAProxy): one good check each, consumed by the
        // first step, so that tests start from confirmed backends with a normal fall count.
        for a in &spec.backends.primary.addresses {
            obs.checks.push(CheckFact {
                address: a.0.clone(),
                pool: Pool::Primary,
                outcome: outcome(true),
            });
        }
        Harness {
            cfg,
            state: PolicyState::new(),
            obs,
            now: T0,
            log: Vec::new(),
        }
    }

    /// Runs one step at the current time and returns its actions.
    pub fn step(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        step(
            &self.cfg,
            &mut self.state,
            &self.obs,
            self.now,
            &mut actions,
        );
        self.obs.clear_checks();
        self.log.extend(actions.iter().cloned());
        actions
    }

    /// Advances the clock by `secs` one second at a time, stepping each second.
    pub fn run(&mut self, secs: i64) -> Vec<Action> {
        let mut all = Vec::new();
        for _ in 0..secs {
            self.now += 1000;
            all.extend(self.step());
        }
        all
    }

    pub fn check(&mut self, addr: &str, pool: Pool, ok: bool) {
        self.obs.checks.push(CheckFact {
            address: addr.to_string(),
            pool,
            outcome: outcome(ok),
        });
    }

    /// Addresses of the known endpoints of `pool`.
    pub fn addresses(&self, pool: Pool) -> Vec<String> {
        self.obs
            .endpoints
            .iter()
            .filter(|e| e.pool == pool)
            .map(|e| e.address.clone())
            .collect()
    }

    /// One round of checks of every primary backend: those in `failing` fail.
    pub fn round(&mut self, failing: &[&str]) -> Vec<Action> {
        for a in self.addresses(Pool::Primary) {
            let ok = !failing.contains(&a.as_str());
            self.check(&a, Pool::Primary, ok);
        }
        self.now += 1000;
        self.step()
    }

    /// `n` rounds, one per second.
    pub fn rounds(&mut self, n: usize, failing: &[&str]) -> Vec<Action> {
        (0..n).flat_map(|_| self.round(failing)).collect()
    }

    pub fn lb(&mut self, ok: bool) {
        self.obs.lb_checks.push(outcome(ok));
    }

    pub fn set_emergency_pods(&mut self, pods: &[(&str, bool)]) {
        let mut eps: Vec<EndpointFact> = self
            .obs
            .endpoints
            .iter()
            .filter(|e| e.pool == Pool::Primary)
            .cloned()
            .collect();
        eps.extend(pods.iter().map(|(a, ready)| EndpointFact {
            ready: *ready,
            ..EndpointFact::ready(a.to_string(), Pool::Emergency)
        }));
        self.obs.emergency_ready_replicas = Some(pods.iter().filter(|p| p.1).count() as i32);
        self.obs.set_endpoints(eps);
    }

    pub fn published(&self) -> Vec<String> {
        self.state.published().map(|e| e.address.clone()).collect()
    }
}

pub fn outcome(ok: bool) -> CheckOutcome {
    if ok {
        CheckOutcome::Healthy
    } else {
        CheckOutcome::unhealthy(FailureKind::Refused, "connection refused")
    }
}

pub fn kinds(actions: &[Action]) -> Vec<ActionKind> {
    actions.iter().map(|a| a.kind).collect()
}

pub fn has(actions: &[Action], kind: ActionKind) -> bool {
    actions.iter().any(|a| a.kind == kind)
}
