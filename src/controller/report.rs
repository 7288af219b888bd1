//! What a reconcile tells the outside world besides status: Events (only for what was decided
//! and, when not dry-run, written), log lines and the per-policy gauges.

use kube::Resource;
use tracing::{info, warn};

use super::context::{Context, PolicyRuntime, lock};
use super::effect::InEffect;
use super::events::Severity;
use super::metrics::{PolicyId, PolicyLabels, PolicyTierLabels};
use crate::api::FailoverPolicy;
use crate::engine::{Action, ActionKind, Affected, DRY_RUN_PREFIX};

pub(crate) fn log_action(a: &Action, dry_run: bool) {
    match &a.affected {
        Affected::None => info!(action = %a.kind, reason = %a.reason, dry_run, "decision"),
        other => {
            info!(action = %a.kind, reason = %a.reason, affected = ?other, dry_run, "decision")
        }
    }
}

/// The actuation that puts an action into effect, if it writes a managed object.
fn actuation_of(kind: ActionKind) -> Option<&'static str> {
    match kind {
        ActionKind::EmergencyActivate | ActionKind::EmergencyScaleDown => Some("Deployment"),
        ActionKind::IngressFailover
        | ActionKind::IngressFailback
        | ActionKind::FailbackStep
        | ActionKind::FailbackComplete => Some("Ingress"),
        _ => None,
    }
}

/// One Event per action, each with its own message (see `events.rs` for why not the
/// kube-runtime Recorder). PublishEndpoints is left out: the EndpointDown/EndpointUp that
/// caused it already tell the story. An action whose write is not in effect says so: in
/// dry-run, or naming the failing write.
pub(crate) async fn publish_events(
    ctx: &Context,
    policy: &FailoverPolicy,
    rt: &std::sync::Mutex<PolicyRuntime>,
    dry_run: bool,
    fx: &InEffect,
) {
    let pending = std::mem::take(&mut lock(rt).pending_events);
    let reference = policy.object_ref(&());
    for a in pending
        .iter()
        .filter(|a| a.kind != ActionKind::PublishEndpoints)
    {
        // The engine marks a dry-run decision at the start of its reason; the Event puts the
        // mark first, before the objects it names.
        let mut note = match a.reason.strip_prefix(DRY_RUN_PREFIX) {
            Some(reason) => {
                let plain = Action {
                    reason: reason.to_string(),
                    ..a.clone()
                };
                format!("{DRY_RUN_PREFIX}{}", describe(&plain))
            }
            None => describe(a),
        };
        if let Some(kind) = actuation_of(a.kind) {
            if dry_run && !note.starts_with(DRY_RUN_PREFIX) {
                note = format!("{DRY_RUN_PREFIX}{note}");
            } else if let Some(f) = fx
                .failures
                .iter()
                .find(|f| f.starts_with(&format!("writing {kind} ")))
            {
                note = format!("{note} — not in effect: {f}");
            }
        }
        let severity = if warning(a.kind) {
            Severity::Warning
        } else {
            Severity::Normal
        };
        if let Err(e) = ctx
            .events
            .publish(
                &reference,
                severity,
                a.kind.as_str(),
                a.kind.as_str(),
                &note,
            )
            .await
        {
            warn!(error = %e, "could not publish event");
        }
    }
}

fn warning(kind: ActionKind) -> bool {
    matches!(
        kind,
        ActionKind::EndpointDown
            | ActionKind::PanicEntered
            | ActionKind::LoadBalancerDown
            | ActionKind::IngressFailover
            | ActionKind::EmergencyActivate
            | ActionKind::FlapBudgetExhausted
    )
}

fn describe(a: &Action) -> String {
    match &a.affected {
        Affected::None => a.reason.clone(),
        Affected::Endpoint { address, pool } => format!("{pool} backend {address}: {}", a.reason),
        Affected::Endpoints { published, .. } => {
            format!("{published} endpoints published: {}", a.reason)
        }
        Affected::Replicas { from, to } => format!("replicas {from} → {to}: {}", a.reason),
        Affected::Ingress {
            from_class,
            to_class,
            primary_weight_percent,
        } if from_class == to_class => format!(
            "{primary_weight_percent}% of traffic on the primary class ({to_class} stays authoritative): {}",
            a.reason
        ),
        Affected::Ingress {
            from_class,
            to_class,
            primary_weight_percent,
        } => format!(
            "{from_class} → {to_class} (primary weight {primary_weight_percent}%): {}",
            a.reason
        ),
        Affected::Phase { from, to } => format!("{from} → {to}: {}", a.reason),
    }
}

pub(crate) fn export_gauges(ctx: &Context, key: &PolicyId, rt: &std::sync::Mutex<PolicyRuntime>) {
    let r = lock(rt);
    let m = &ctx.metrics;
    let id = key.clone();
    m.set_phase(key, r.state.phase);
    // Error counters exist from the first reconcile, at zero: a rate() over them works before
    // the first failure, and an alert can tell "no failures" from "no data".
    m.touch_write_failures(key);
    for (tier, healthy, total) in [
        ("primary", r.state.primary_healthy, r.state.primary_total),
        (
            "emergency",
            r.state.emergency_healthy,
            r.state.emergency_total,
        ),
    ] {
        let l = PolicyTierLabels {
            policy: id.clone(),
            tier,
        };
        m.healthy_endpoints
            .get_or_create(&l)
            .set(i64::from(healthy));
        m.total_endpoints.get_or_create(&l).set(i64::from(total));
        let ratio = if total == 0 {
            0.0
        } else {
            f64::from(healthy) / f64::from(total)
        };
        m.healthy_ratio.get_or_create(&l).set(ratio);
    }
    let l = PolicyLabels { policy: id };
    m.dry_run.get_or_create(&l).set(i64::from(r.cfg.dry_run));
    m.override_active.get_or_create(&l).set(i64::from(
        r.cfg
            .override_
            .as_ref()
            .is_some_and(|o| o.mode != crate::api::OverrideMode::Auto),
    ));
    if let Some(ing) = &r.cfg.ingress {
        m.load_balancer_up
            .get_or_create(&l)
            .set(i64::from(r.state.lb_serving));
        if ing.has_backup_url || ing.has_backup_controller {
            m.backup_load_balancer_up
                .get_or_create(&l)
                .set(i64::from(r.state.backup_serving));
        }
    }
    if let Some(d) = r.state.desired_emergency_replicas(&r.cfg) {
        m.emergency_desired_replicas
            .get_or_create(&l)
            .set(i64::from(d));
        m.emergency_ready_replicas
            .get_or_create(&l)
            .set(i64::from(r.state.emergency_ready_replicas.unwrap_or(0)));
    }
    if let Some(i) = r.state.desired_ingress(&r.cfg) {
        m.primary_weight_percent
            .get_or_create(&l)
            .set(i64::from(i.primary_weight_percent));
    }
}
