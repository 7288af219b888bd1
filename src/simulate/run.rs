//! Drives the engine over a scenario on a virtual clock and records what happened.
//!
//! One loop iteration is one engine step: the world advances to `now` and reports its facts,
//! the engine decides, and the world obeys the desired state (replicas) before the next step —
//! the same order as the controller's observe → decide → apply. Nothing sleeps; a day of
//! timeline replays as fast as the engine steps.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::api::Phase;
use crate::engine::invariants::{Snapshot, check_step};
use crate::engine::report::render_status;
use crate::engine::{
    Action, ActionKind, Affected, EngineConfig, IngressPhase, LbTier, Millis, Now, Observation,
    PolicyState, Pool, hold_invalid, step,
};
use crate::validation::{ValidationContext, validate_document};

use super::Policy;
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
    BackupLoadBalancer,
}

impl Target {
    pub fn as_str(&self) -> &'static str {
        match self {
            Target::LoadBalancer => "loadBalancer",
            Target::IngressController => "ingressController",
            Target::BackupLoadBalancer => "backupLoadBalancer",
        }
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub at: Millis,
    pub source: Source,
    /// An [`ActionKind`] name for engine rows, or `DnsDrain` / `DnsDrainEnded` for the DNS
    /// drain (engine state crossing time, `kind` None); `Scenario`, `PodCreated`, `PodReady`,
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
    /// Share of DNS answers for the primary tier's load balancer, percent (None without
    /// `spec.dns`): what the records say, which resolvers follow within one TTL.
    pub dns_primary_share: Option<u32>,
    /// The tier DNS records left and that keeps serving for one TTL, while it does.
    pub draining: Option<LbTier>,
    /// The emergency backends' weight in the route copies, percent of theirs (None without
    /// `spec.gateway.backendWeights`): 100 engaged, the ramp's steps on release.
    pub emergency_weight: Option<u32>,
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
pub fn replay(policy: &Policy, scenario: &Scenario, rules: &ValidationContext) -> Timeline {
    let spec = &policy.spec;
    let mut operator = Operator::new(policy, rules);
    let mut world = World::new(spec, scenario);
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
    let res = scenario.resolution_ms;
    let mut last_ingress: Option<(IngressPhase, bool)> = None;
    let mut primary_share = 100;
    // The DNS drain as last shown on the timeline: (tier, end on the scenario's clock).
    let mut shown_drain: Option<(LbTier, Millis)> = None;

    let mut now = scenario.start;
    let mut first = true;
    let mut empty_now = false;
    // What the invariants compare against: the state after the last step that moved anything.
    let mut before = Snapshot::of(&operator.cfg, &operator.state);
    loop {
        world.advance(now, &mut obs, &mut facts);
        // Samples and invariants can only move when the world or the engine did something;
        // skipping them otherwise keeps the idle majority of a day cheap.
        let mut changed = first || !facts.is_empty();
        first = false;
        for (at, fact) in facts.drain(..) {
            if let WorldFact::Scripted(ev) = &fact {
                let problems = operator.act(&ev.change, now, &mut world, &mut obs, &mut actions);
                for p in problems {
                    violation(&mut rows, &mut summary, now, p);
                }
            }
            rows.push(world_row(at, fact));
        }
        summary.checks += (obs.checks.len() + obs.lb_checks.len()) as u64;

        let held = operator.invalid.is_some();
        if held {
            // An invalid spec holds every decision: checks of the last valid targets wait for
            // no step, as in the controller.
            obs.clear_checks();
        } else {
            let at = operator.now(now);
            step(&operator.cfg, &mut operator.state, &obs, at, &mut actions);
            obs.clear_checks();
        }
        summary.steps += 1;
        changed |= !actions.is_empty();
        if changed && !held {
            let after = Snapshot::of(&operator.cfg, &operator.state);
            let problems = check_step(
                &operator.cfg,
                &operator.state,
                &before,
                &after,
                &actions,
                operator.now(now).wall,
            );
            for p in problems {
                violation(&mut rows, &mut summary, now, p);
            }
            before = after;
        }
        for a in actions.drain(..) {
            if let Some(i) = ActionKind::ALL.iter().position(|k| *k == a.kind) {
                *counts.entry(i).or_default() += 1;
            }
            rows.push(Row {
                // Engine actions carry wall-clock time; the timeline runs on the scenario's.
                at: a.at - operator.wall_offset,
                source: Source::Engine,
                action: a.kind.as_str(),
                kind: Some(a.kind),
                reason: a.reason,
                affected: a.affected,
                target: None,
            });
        }

        // The DNS drain as rows: when the records leave a tier it keeps serving one TTL; the
        // timeline says when that starts and when it ends (on the step it is seen over).
        let mono = operator.now(now).mono;
        let drain = operator
            .state
            .draining
            .filter(|d| d.until > mono)
            .map(|d| (d.tier, now + (d.until - mono)));
        if drain != shown_drain {
            if let Some((tier, _)) = shown_drain
                && drain.is_none_or(|(t, _)| t != tier)
            {
                rows.push(drain_row(now, "DnsDrainEnded", format!(
                    "the {} tier no longer receives DNS answers from resolver caches (one TTL passed): it may be torn down",
                    tier.as_str()
                )));
            }
            if let Some((tier, until)) = drain {
                let ttl = operator.cfg.dns.map_or(0, |d| d.ttl_ms / 1000);
                rows.push(drain_row(now, "DnsDrain", format!(
                    "DNS records left the {} tier: it keeps serving until +{}s (ttlSeconds {ttl}), resolvers may still answer with it",
                    tier.as_str(),
                    (until - now) / 1000
                )));
            }
            shown_drain = drain;
            changed = true;
        }

        // Obey what is in effect, as the controller's apply phase would (nothing while dry-run
        // rehearses). A deleted Deployment takes its pods with it.
        let cfg = &operator.cfg;
        let state = &operator.state;
        let desired = state.desired_emergency_replicas(cfg);
        let in_effect = state.in_effect_emergency_replicas(cfg);
        let want = match in_effect {
            Some(d) if world.deployment_exists() => Some(d),
            Some(_) => Some(0),
            None => None,
        };
        if let Some(d) = want
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
            empty_now = published == 0 && state.primary_total > 0 && state.inventory_known;
            if let Some(address) = unready {
                let msg = format!("emergency endpoint {address} published before its pod is ready");
                violation(&mut rows, &mut summary, now, msg);
            }

            // desired_ingress clones the class names; ask only when the ingress phase moved.
            let ingress_key = (state.ingress, state.dry_run.is_some());
            if last_ingress != Some(ingress_key) {
                last_ingress = Some(ingress_key);
                primary_share = state
                    .in_effect_ingress(cfg)
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
                dns_primary_share: state.in_effect_dns_primary_percent(cfg),
                draining: shown_drain.map(|(t, _)| t),
                emergency_weight: state.in_effect_emergency_weight_percent(cfg),
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
        if primary_share < 100 {
            summary.backup_class_ms += res;
        }
        if operator.state.panic {
            summary.panic_ms += res;
        }

        if now >= scenario.end {
            break;
        }
        now = (now + res).min(scenario.end);
    }
    summary.final_phase = operator.state.phase;
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
        policy_name: policy.name.clone(),
        description: scenario.description.clone(),
        start: scenario.start,
        end: scenario.end,
        offset: scenario.offset,
        has_emergency_deployment: em.is_some(),
        max_replicas: em.map_or(0, |d| d.max_replicas),
        has_ingress: operator.cfg.ingress.is_some(),
        cfg: operator.cfg,
        rows,
        samples,
        summary,
    }
}

/// The simulated operator: the engine's config and memory, and what people and the platform do
/// to it (restarts, spec edits, clock steps, the reset annotation).
struct Operator {
    /// The policy as `kubectl get -o json` would show it; edits patch its spec.
    document: Value,
    cfg: EngineConfig,
    state: PolicyState,
    /// Why the current spec is refused, while the last valid decisions are held.
    invalid: Option<String>,
    /// What validates edits: the operator's flags `simulate` was given, as for the start.
    rules: ValidationContext,
    generation: i64,
    /// Wall clock minus the scenario's (monotonic) clock.
    wall_offset: Millis,
    resets: u32,
    last_status: Option<crate::api::FailoverPolicyStatus>,
}

impl Operator {
    fn new(policy: &Policy, rules: &ValidationContext) -> Self {
        let document = json!({
            "apiVersion": "ingressfailover.io/v1alpha1",
            "kind": "FailoverPolicy",
            "metadata": {"name": policy.name, "namespace": policy.namespace},
            "spec": serde_json::to_value(&policy.spec).expect("a spec serializes"),
        });
        Operator {
            document,
            cfg: EngineConfig::from_spec(&policy.spec),
            state: PolicyState::new(),
            invalid: None,
            rules: rules.clone(),
            generation: 1,
            wall_offset: 0,
            resets: 0,
            last_status: None,
        }
    }

    fn now(&self, mono: Millis) -> Now {
        Now {
            mono,
            wall: mono + self.wall_offset,
        }
    }

    /// Applies a scripted event that acts on the operator. Returns broken promises (a restart
    /// that changed what is in effect).
    fn act(
        &mut self,
        change: &Change,
        mono: Millis,
        world: &mut World,
        obs: &mut Observation,
        actions: &mut Vec<Action>,
    ) -> Vec<String> {
        let now = self.now(mono);
        match change {
            Change::ClockStep { ms } => self.wall_offset += ms,
            Change::ResetFlapBudget => {
                self.resets += 1;
                self.cfg.flap_budget_reset = Some(format!("reset-{}", self.resets));
            }
            Change::Edit { patch } => self.edit(patch, now, actions),
            Change::Restart => return self.restart(now, world, obs),
            _ => {}
        }
        Vec::new()
    }

    fn edit(&mut self, patch: &Value, now: Now, actions: &mut Vec<Action>) {
        merge_patch(&mut self.document["spec"], patch);
        self.generation += 1;
        match validate_document(&self.document, &self.rules) {
            Ok(policy) => {
                let mut cfg = EngineConfig::from_spec(&policy.spec);
                cfg.flap_budget_reset = self.cfg.flap_budget_reset.clone();
                let old = std::mem::replace(&mut self.cfg, cfg);
                self.state.config_changed(&old);
                self.invalid = None;
            }
            Err(errors) => {
                let message = errors
                    .iter()
                    .take(3)
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                hold_invalid(&mut self.state, &message, now.wall, actions);
                self.invalid = Some(message);
            }
        }
    }

    /// The engine is rebuilt from the status it last wrote, exactly as the controller does
    /// after a crash or a leadership change, and observes everything afresh. What is in effect
    /// must not move by the restart alone: no transition lost, none repeated.
    fn restart(&mut self, now: Now, world: &mut World, obs: &mut Observation) -> Vec<String> {
        let before = Snapshot::of(&self.cfg, &self.state);
        let mut status = render_status(
            &self.cfg,
            &self.state,
            Some(self.generation),
            now,
            self.last_status.as_ref(),
        );
        if let Some(message) = &self.invalid {
            crate::engine::report::mark_invalid(
                &mut status,
                Some(self.generation),
                message,
                now.wall,
                self.last_status.as_ref(),
            );
        }
        // Status goes through the API server as JSON: resume from what a reader would get.
        let status: crate::api::FailoverPolicyStatus =
            serde_json::from_value(serde_json::to_value(&status).expect("status serializes"))
                .expect("status deserializes");
        self.state = PolicyState::resume(&self.cfg, &status, now);
        self.last_status = Some(status);
        *obs = Observation::default();
        world.resend();
        let after = Snapshot::of(&self.cfg, &self.state);
        let mut problems = Vec::new();
        if before.published != after.published {
            problems.push("a restart changed the published endpoint set".to_string());
        }
        if before.replicas != after.replicas {
            problems.push("a restart changed the emergency replicas".to_string());
        }
        if before.ingress != after.ingress {
            problems.push("a restart changed the ingress class or weight".to_string());
        }
        if before.decided != after.decided || before.effective != after.effective {
            problems.push(format!(
                "a restart changed where the machines stand ({:?} → {:?})",
                before.decided, after.decided
            ));
        }
        problems
    }
}

/// RFC 7386 JSON merge patch (what `kubectl patch --type merge` sends).
fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let t = target.as_object_mut().expect("made an object above");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
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

/// A row about the DNS drain: the engine's state, shown as the timeline crosses it (no
/// [`ActionKind`]: the drain starts with the action that moved the records and ends by time).
fn drain_row(at: Millis, action: &'static str, reason: String) -> Row {
    Row {
        at,
        source: Source::Engine,
        action,
        kind: None,
        reason,
        affected: Affected::None,
        target: None,
    }
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
                Change::BackupLoadBalancer { behaviour } => (
                    format!("backup load balancer health URL {}", behaviour.describe()),
                    Affected::None,
                    Some(Target::BackupLoadBalancer),
                ),
                Change::BackupIngressController { ready } => (
                    if ready {
                        "ready: backup ingress controller Deployment has a ready replica again"
                            .to_string()
                    } else {
                        "notReady: backup ingress controller Deployment has no ready replica"
                            .to_string()
                    },
                    Affected::None,
                    Some(Target::BackupLoadBalancer),
                ),
                Change::Terminating { address } => (
                    "terminating: Kubernetes is removing the pod".to_string(),
                    Affected::Endpoint {
                        address,
                        pool: Pool::Primary.as_str(),
                    },
                    None,
                ),
                Change::Object { object, exists } => (
                    format!(
                        "{} {}",
                        object.as_str(),
                        if exists { "created again" } else { "deleted" }
                    ),
                    Affected::None,
                    match object {
                        super::scenario::WatchedObject::IngressController => {
                            Some(Target::IngressController)
                        }
                        super::scenario::WatchedObject::EmergencyDeployment => None,
                    },
                ),
                Change::Restart => (
                    "operator restarted: the engine resumes from its last status".to_string(),
                    Affected::None,
                    None,
                ),
                Change::Edit { patch } => (format!("spec edited: {patch}"), Affected::None, None),
                Change::ClockStep { ms } => (
                    format!("wall clock stepped by {}s", ms / 1000),
                    Affected::None,
                    None,
                ),
                Change::ResetFlapBudget => (
                    "annotation ingressfailover.io/reset-flap-budget set".to_string(),
                    Affected::None,
                    None,
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
