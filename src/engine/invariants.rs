//! The product's promises, as checks over one engine step. The simulator runs them at every
//! step of every replay (scripted scenarios and the randomized incident generator alike), so a
//! promise broken anywhere in a timeline is an `InvariantViolated` row, not a silent outcome.
//!
//! They read only the engine's own state and actions: what the managed objects are made to be
//! (in effect), what the engine judged, and which actions it recorded. Promises about the
//! simulated world (an emergency pod published before it is ready) live in the simulator.

use super::actions::{Action, ActionKind};
use super::config::{EngineConfig, Millis};
use super::facts::Pool;
use super::state::{EmergencyPhase, IngressDesired, IngressPhase, LbTier, PolicyState};

/// What the managed objects are made to be, and where each machine stands, at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The managed EndpointSlice's addresses.
    pub published: Vec<(Pool, String)>,
    /// The emergency Deployment's replicas.
    pub replicas: Option<i32>,
    /// The Ingress class and primary weight.
    pub ingress: Option<IngressDesired>,
    /// Percent of DNS answers for the primary tier (`spec.dns`).
    pub dns_primary_percent: Option<u32>,
    /// The emergency backends' weight in percent (`spec.gateway.backendWeights`).
    pub emergency_weight_percent: Option<u32>,
    /// The decided machines.
    pub decided: Machines,
    /// The machines in effect (equal to `decided` outside dry-run).
    pub effective: Machines,
}

/// Where the two policy machines stand, without their timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machines {
    /// 0 primary, 1 failed over, 2 failing back (step in `failback_step`).
    pub ingress: u8,
    pub failback_step: usize,
    /// 0 standby, 1 active, 2 cooling down, 3 releasing (weight ramp).
    pub emergency: u8,
}

impl Machines {
    fn of(ingress: IngressPhase, emergency: EmergencyPhase) -> Self {
        let (ingress, failback_step) = match ingress {
            IngressPhase::Primary => (0, 0),
            IngressPhase::FailedOver { .. } => (1, 0),
            IngressPhase::FailingBack { step, .. } => (2, step),
        };
        let emergency = match emergency {
            EmergencyPhase::Standby => 0,
            EmergencyPhase::Active { .. } => 1,
            EmergencyPhase::CoolingDown { .. } => 2,
            EmergencyPhase::Releasing { .. } => 3,
        };
        Machines {
            ingress,
            failback_step,
            emergency,
        }
    }
}

impl Snapshot {
    pub fn of(cfg: &EngineConfig, state: &PolicyState) -> Self {
        let decided = Machines::of(state.ingress, state.emergency);
        let effective = match &state.dry_run {
            Some(fx) => Machines::of(fx.ingress, fx.emergency),
            None => decided,
        };
        Snapshot {
            published: state.in_effect_published(),
            replicas: state.in_effect_emergency_replicas(cfg),
            ingress: state.in_effect_ingress(cfg),
            dns_primary_percent: state.in_effect_dns_primary_percent(cfg),
            emergency_weight_percent: state.in_effect_emergency_weight_percent(cfg),
            decided,
            effective,
        }
    }
}

/// Checks one step: `before` was taken before it, `after` ([`Snapshot::of`]), `state` and
/// `actions` are its result, `now` its wall-clock time. Returns a message per broken promise.
/// A step with neither new facts nor actions changes nothing these promises read, so a caller
/// may skip it and keep `after` as the next step's `before`.
pub fn check_step(
    cfg: &EngineConfig,
    state: &PolicyState,
    before: &Snapshot,
    after: &Snapshot,
    actions: &[Action],
    now: Millis,
) -> Vec<String> {
    let mut out = Vec::new();
    let did = |kinds: &[ActionKind]| actions.iter().any(|a| kinds.contains(&a.kind));

    // Never an empty Service while a candidate exists (FailOpen).
    let candidates = state
        .endpoints
        .iter()
        .filter(|e| e.pool == Pool::Primary && !e.terminating)
        .count();
    if !cfg.fail_closed && state.inventory_known && candidates > 0 && state.published_count() == 0 {
        out.push(format!(
            "fail-open policy published an empty endpoint set while {candidates} candidate endpoints exist"
        ));
    }

    // Emergency replicas within [standby, max].
    if let (Some(d), Some(em)) = (
        state.desired_emergency_replicas(cfg),
        cfg.emergency.filter(|e| e.has_deployment),
    ) && !(em.standby_replicas..=em.max_replicas).contains(&d)
    {
        out.push(format!(
            "emergency replicas {d} outside {}..={}",
            em.standby_replicas, em.max_replicas
        ));
    }

    // Traffic goes to a tier judged up whenever one is: only a human (override) or a rehearsal
    // (dry-run) may keep traffic on a load balancer the engine judges down.
    let human = cfg.override_at(now).is_some() || state.dry_run.is_some();
    if let Some(ing) = &after.ingress
        && ing.primary_weight_percent > 0
        && !state.lb_serving
        && state.backup_serving
        && !human
    {
        out.push(format!(
            "{}% of traffic on the primary class while its load balancer is judged down",
            ing.primary_weight_percent
        ));
    }

    if let Some(ing) = &after.ingress
        && ing.primary_weight_percent < 100
        && !state.backup_serving
        && state.lb_serving
        && !human
    {
        out.push(format!(
            "{}% of traffic on the backup class while it is judged down and the primary is up",
            100 - ing.primary_weight_percent
        ));
    }

    // Scale down last: after every tier is back (as decided: a rehearsal rehearses this too).
    let home = state
        .desired_ingress(cfg)
        .is_none_or(|i| i.primary_weight_percent == 100);
    if did(&[ActionKind::EmergencyScaleDown]) && !home {
        out.push(
            "emergency capacity scaled down while traffic is still on the backup class".into(),
        );
    }

    // DNS: the tier the records leave keeps serving one TTL, and capacity waits for it.
    let moved = did(&[
        ActionKind::IngressFailover,
        ActionKind::IngressFailback,
        ActionKind::FailbackStep,
        ActionKind::FailbackComplete,
    ]);
    if let (Some(b), Some(a)) = (before.dns_primary_percent, after.dns_primary_percent)
        && moved
        && state.dry_run.is_none()
    {
        let left = if b > 0 && a == 0 {
            Some(LbTier::Primary)
        } else if b < 100 && a == 100 {
            Some(LbTier::Backup)
        } else {
            None
        };
        if let Some(tier) = left
            && state.draining.is_none_or(|d| d.tier != tier)
        {
            out.push(format!(
                "DNS records left the {} tier with no drain of it",
                tier.as_str()
            ));
        }
    }
    if did(&[ActionKind::EmergencyScaleDown])
        && state.draining.is_some_and(|d| d.tier == LbTier::Backup)
    {
        out.push(
            "emergency capacity scaled down while the backup tier still drains DNS traffic".into(),
        );
    }

    // Weighted emergency capacity is released by steps, never cut: its weight falls one ramp
    // step at a time, and its endpoints leave only after a step at 0 %.
    let edited = did(&[ActionKind::SpecApplied, ActionKind::DryRunEnded]);
    if let (Some(ramp), Some(b), Some(a)) = (
        &cfg.emergency_ramp,
        before.emergency_weight_percent,
        after.emergency_weight_percent,
    ) && a < b
        && !edited
    {
        let next = if b == 100 {
            ramp.percent(0)
        } else {
            ramp.steps
                .iter()
                .position(|&p| p == b)
                .map_or(0, |i| ramp.percent(i + 1))
        };
        if a != next {
            out.push(format!(
                "emergency weight cut from {b}% to {a}% (the ramp's next step is {next}%)"
            ));
        }
    }
    if cfg.emergency_ramp.is_some()
        && matches!(before.effective.emergency, 1 | 3)
        && matches!(after.effective.emergency, 0 | 2)
        && before.emergency_weight_percent.is_some_and(|w| w > 0)
        && !edited
    {
        out.push(format!(
            "emergency endpoints left the published set at {}% weight, before a step at 0%",
            before.emergency_weight_percent.unwrap_or(0)
        ));
    }

    // Every change to a managed object is an action with a reason; a dry-run makes none.
    let changes = [
        (
            "the published endpoint set",
            before.published != after.published,
            &[ActionKind::PublishEndpoints][..],
        ),
        (
            "the emergency replicas",
            before.replicas != after.replicas,
            &[
                ActionKind::EmergencyActivate,
                ActionKind::EmergencyScaleDown,
                ActionKind::EmergencyRelease,
                ActionKind::SpecApplied,
            ][..],
        ),
        (
            "the emergency weight",
            before.emergency_weight_percent != after.emergency_weight_percent,
            &[
                ActionKind::EmergencyActivate,
                ActionKind::EmergencyRelease,
                ActionKind::EmergencyRampDown,
                ActionKind::SpecApplied,
            ][..],
        ),
        (
            "the ingress class or weight",
            before.ingress != after.ingress,
            &[
                ActionKind::IngressFailover,
                ActionKind::IngressFailback,
                ActionKind::FailbackStep,
                ActionKind::FailbackComplete,
                ActionKind::SpecApplied,
            ][..],
        ),
    ];
    for (what, changed, kinds) in changes {
        if !changed {
            continue;
        }
        if state.dry_run.is_some() {
            out.push(format!("dry-run changed {what}"));
        } else if !did(kinds) {
            out.push(format!("{what} changed with no action recorded"));
        }
    }

    // No transition repeats: each counted move starts where it claims to.
    let from = if did(&[ActionKind::DryRunEnded]) {
        before.effective
    } else {
        before.decided
    };
    for a in actions {
        let repeat = match a.kind {
            ActionKind::EmergencyActivate => from.emergency == 1,
            ActionKind::EmergencyRelease => from.emergency != 1,
            ActionKind::EmergencyRampDown => from.emergency != 3,
            ActionKind::EmergencyScaleDown => from.emergency != 2,
            ActionKind::IngressFailover => from.ingress == 1,
            ActionKind::IngressFailback => from.ingress == 0,
            _ => false,
        };
        if repeat {
            out.push(format!("{} repeated a transition already made", a.kind));
        }
        if a.reason.is_empty() {
            out.push(format!("{} recorded without a reason", a.kind));
        }
    }
    out
}
