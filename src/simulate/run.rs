//! Drives the engine over a scenario on a virtual clock and records what happened.
//!
//! One loop iteration is one engine step: the world advances to `now` and reports its facts,
//! the engine decides, and the world obeys the desired state (replicas) before the next step —
//! the same order as the controller's observe → decide → apply. Nothing sleeps; a day of
//! timeline replays as fast as the engine steps.

use std::collections::BTreeMap;

use crate::api::{FailoverPolicySpec, Phase};
use crate::engine::{
    Action, ActionKind, Affected, EngineConfig, IngressPhase, Millis, Observation, PolicyState,
    Pool, step,
};

use super::scenario::{Change, Scenario};
use super::world::{World, WorldFact};

/// Where a timeline row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A fact the scenario scripted.
    Scenario,
    /// Something the simulated cluster did by itself (pods created, ready, deleted).
    World,
    /// A decision of the engine.
    Engine,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Scenario => "scenario",
            Source::World => "world",
            Source::Engine => "engine",
        }
    }
}

/// What a row is about when the engine's [`Affected`] has no words for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    LoadBalancer,
    IngressController,
}

impl Target {
    pub fn as_str(&self) -> &'static str {
        match self {
            Target::LoadBalancer => "loadBalancer",
            Target::IngressController => "ingressController",
        }
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub at: Millis,
    pub source: Source,
    /// An [`ActionKind`] name for engine rows; `Scenario`, `PodCreated`, `PodReady`,
    /// `PodDeleted` or `InvariantViolated` otherwise.
    pub action: &'static str,
    pub kind: Option<ActionKind>,
    pub reason: String,
    pub affected: Affected,
    pub target: Option<Target>,
}

/// The state of each tier after one step, recorded only when something changed (the SVG
/// draws steps between samples).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: Millis,
    pub primary_healthy: u32,
    pub primary_total: u32,
    /// Replicas the engine wants for the emergency Deployment (0 without one).
    pub emergency_desired: i32,
    pub emergency_ready: u32,
    /// Emergency endpoints passing checks and readiness.
    pub emergency_healthy: u32,
    pub emergency_published: u32,
    /// The world's truth about the primary load balancer.
    pub lb_up: bool,
    /// The engine's verdict about it.
    pub lb_serving: bool,
    /// Share of traffic the operator sends to the primary ingress class, percent.
    pub primary_share: u32,
    pub panic: bool,
    pub phase: Phase,
}

impl Sample {
    pub fn primary_ratio(&self) -> f64 {
        if self.primary_total == 0 {
            0.0
        } else {
            f64::from(self.primary_healthy) / f64::from(self.primary_total)
        }
    }

    fn same_values(&self, other: &Sample) -> bool {
        Sample { at: 0, ..*self } == Sample { at: 0, ..*other }
    }
}

/// The closing figures of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub final_phase: Phase,
    /// Engine actions by kind, in [`ActionKind::ALL`] order (kinds that never happened omitted).
    pub counts: Vec<(ActionKind, u32)>,
    pub max_emergency_replicas: i32,
    /// Time the backup ingress class was authoritative.
    pub backup_class_ms: Millis,
    /// Time in fail-open panic.
    pub panic_ms: Millis,
    /// Time with no endpoint published while endpoints existed (should stay 0 with FailOpen).
    pub empty_ms: Millis,
    pub checks: u64,
    pub steps: u64,
    /// Invariants the replay saw broken (empty when all held).
    pub violations: Vec<String>,
}

/// A complete replay.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub policy_name: String,
    pub description: Option<String>,
    pub start: Millis,
    pub end: Millis,
    pub offset: jiff::tz::Offset,
    pub cfg: EngineConfig,
    pub rows: Vec<Row>,
    pub samples: Vec<Sample>,
    pub summary: Summary,
    pub has_emergency_deployment: bool,
    pub max_replicas: i32,
    pub has_ingress: bool,
}

/// Replays `scenario` against the policy.
pub fn replay(policy_name: &str, spec: &FailoverPolicySpec, scenario: &Scenario) -> Timeline {
    let cfg = EngineConfig::from_spec(spec);
    let mut world = World::new(spec, scenario);
    let mut state = PolicyState::new();
    let mut obs = Observation::default();
    let mut actions: Vec<Action> = Vec::new();
    let mut facts: Vec<(Millis, WorldFact)> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut counts: BTreeMap<usize, u32> = BTreeMap::new();
    let mut summary = Summary {
        final_phase: Phase::Pending,
        counts: Vec::new(),
        max_emergency_replicas: 0,
        backup_class_ms: 0,
        panic_ms: 0,
        empty_ms: 0,
        checks: 0,
        steps: 0,
        violations: Vec::new(),
    };
    let em_deployment = cfg.emergency.filter(|e| e.has_deployment);
    let res = scenario.resolution_ms;
    let mut last_ingress: Option<IngressPhase> = None;
    let mut primary_share = 100;

    let mut now = scenario.start;
    let mut first = true;
    let mut empty_now = false;
    loop {
        world.advance(now, &mut obs, &mut facts);
        // Samples and invariants can only move when the world or the engine did something;
        // skipping them otherwise keeps the idle majority of a day cheap.
        let mut changed = first || !facts.is_empty();
        first = false;
        rows.extend(facts.drain(..).map(|(at, f)| world_row(at, f)));
        summary.checks += (obs.checks.len() + obs.lb_checks.len()) as u64;

        step(&cfg, &mut state, &obs, now, &mut actions);
        obs.clear_checks();
        summary.steps += 1;
        changed |= !actions.is_empty();
        for a in actions.drain(..) {
            if let Some(i) = ActionKind::ALL.iter().position(|k| *k == a.kind) {
                *counts.entry(i).or_default() += 1;
            }
            rows.push(Row {
                at: a.at,
                source: Source::Engine,
                action: a.kind.as_str(),
                kind: Some(a.kind),
                reason: a.reason,
                affected: a.affected,
                target: None,
            });
        }

        // Obey the desired state, as the controller's apply phase would.
        let desired = state.desired_emergency_replicas(&cfg);
        if let Some(d) = desired
            && (d as usize) != world.pods()
        {
            summary.max_emergency_replicas = summary.max_emergency_replicas.max(d);
            world.scale_emergency(d, now, &mut facts);
            rows.extend(facts.drain(..).map(|(at, f)| world_row(at, f)));
            changed = true;
        }

        if changed {
            let (mut published, mut emergency_published) = (0u32, 0u32);
            let mut unready: Option<&str> = None;
            for e in state.published() {
                published += 1;
                if e.pool == Pool::Emergency {
                    emergency_published += 1;
                    if !e.ready {
                        unready = Some(&e.address);
                    }
                }
            }
            // Invariants the product promises, checked whenever anything moved.
            empty_now = published == 0 && state.primary_total > 0 && state.inventory_known;
            if empty_now && !cfg.fail_closed {
                violation(
                    &mut rows,
                    &mut summary,
                    now,
                    "fail-open policy published an empty endpoint set while endpoints exist"
                        .to_string(),
                );
            }
            if let Some(address) = unready {
                let msg = format!("emergency endpoint {address} published before its pod is ready");
                violation(&mut rows, &mut summary, now, msg);
            }
            if let (Some(d), Some(em)) = (desired, em_deployment)
                && !(0..=em.max_replicas).contains(&d)
            {
                violation(
                    &mut rows,
                    &mut summary,
                    now,
                    format!("emergency replicas {d} outside 0..={}", em.max_replicas),
                );
            }

            // desired_ingress clones the class names; ask only when the ingress phase moved.
            if last_ingress != Some(state.ingress) {
                last_ingress = Some(state.ingress);
                primary_share = state
                    .desired_ingress(&cfg)
                    .map_or(100, |i| i.primary_weight_percent);
            }
            let sample = Sample {
                at: now,
                primary_healthy: state.primary_healthy,
                primary_total: state.primary_total,
                emergency_desired: desired.unwrap_or(0),
                emergency_ready: world.ready_pods() as u32,
                emergency_healthy: state.emergency_healthy,
                emergency_published,
                lb_up: world.lb_up(now),
                lb_serving: state.lb_serving,
                primary_share,
                panic: state.panic,
                phase: state.phase,
            };
            if samples.last().is_none_or(|s| !s.same_values(&sample)) {
                samples.push(sample);
            }
        }
        if empty_now {
            summary.empty_ms += res;
        }
        if !matches!(state.ingress, IngressPhase::Primary) {
            summary.backup_class_ms += res;
        }
        if state.panic {
            summary.panic_ms += res;
        }

        if now >= scenario.end {
            break;
        }
        now = (now + res).min(scenario.end);
    }
    summary.final_phase = state.phase;
    summary.counts = counts
        .into_iter()
        .map(|(i, n)| (ActionKind::ALL[i], n))
        .collect();
    // The closing sample carries the last values to the end of the chart.
    if let Some(last) = samples.last().copied()
        && last.at < scenario.end
    {
        samples.push(Sample {
            at: scenario.end,
            ..last
        });
    }

    let em = spec
        .backends
        .emergency
        .as_ref()
        .and_then(|e| e.deployment.as_ref());
    Timeline {
        policy_name: policy_name.to_string(),
        description: scenario.description.clone(),
        start: scenario.start,
        end: scenario.end,
        offset: scenario.offset,
        has_emergency_deployment: em.is_some(),
        max_replicas: em.map_or(0, |d| d.max_replicas),
        has_ingress: cfg.ingress.is_some(),
        cfg,
        rows,
        samples,
        summary,
    }
}

fn violation(rows: &mut Vec<Row>, summary: &mut Summary, now: Millis, message: String) {
    if summary.violations.contains(&message) {
        return;
    }
    summary.violations.push(message.clone());
    rows.push(Row {
        at: now,
        source: Source::World,
        action: "InvariantViolated",
        kind: None,
        reason: message,
        affected: Affected::None,
        target: None,
    });
}

fn world_row(at: Millis, fact: WorldFact) -> Row {
    let pod = |address: String| Affected::Endpoint {
        address,
        pool: "emergency",
    };
    match fact {
        WorldFact::Scripted(ev) => {
            let note = ev.note.map(|n| format!(" — {n}")).unwrap_or_default();
            let (reason, affected, target) = match ev.change {
                Change::Backend {
                    address,
                    pool,
                    behaviour,
                } => (
                    behaviour.describe(),
                    Affected::Endpoint {
                        address,
                        pool: pool.as_str(),
                    },
                    None,
                ),
                Change::Readiness {
                    address,
                    pool,
                    ready,
                } => (
                    if ready {
                        "ready: Kubernetes reports it ready".to_string()
                    } else {
                        "notReady: Kubernetes reports it not ready".to_string()
                    },
                    Affected::Endpoint {
                        address,
                        pool: pool.as_str(),
                    },
                    None,
                ),
                Change::LoadBalancer { behaviour } => (
                    format!("primary load balancer health URL {}", behaviour.describe()),
                    Affected::None,
                    Some(Target::LoadBalancer),
                ),
                Change::IngressController { ready } => (
                    if ready {
                        "ready: ingress controller Deployment has a ready replica again".to_string()
                    } else {
                        "notReady: ingress controller Deployment has no ready replica".to_string()
                    },
                    Affected::None,
                    Some(Target::IngressController),
                ),
            };
            Row {
                at,
                source: Source::Scenario,
                action: "Scenario",
                kind: None,
                reason: format!("{reason}{note}"),
                affected,
                target,
            }
        }
        WorldFact::PodCreated { address } => Row {
            at,
            source: Source::World,
            action: "PodCreated",
            kind: None,
            reason: "emergency Deployment scaled up; pod starting".to_string(),
            affected: pod(address),
            target: None,
        },
        WorldFact::PodReady { address } => Row {
            at,
            source: Source::World,
            action: "PodReady",
            kind: None,
            reason: "emergency pod passed its readiness delay".to_string(),
            affected: pod(address),
            target: None,
        },
        WorldFact::PodDeleted { address } => Row {
            at,
            source: Source::World,
            action: "PodDeleted",
            kind: None,
            reason: "emergency Deployment scaled down".to_string(),
            affected: pod(address),
            target: None,
        },
    }
}
