//! What a reconcile tells the outside world besides status: Events (only for what was decided
//! and, when not dry-run, written), log lines and the per-policy gauges.

use std::sync::Arc;

use kube::Resource;
use kube::runtime::events::{Event, EventType};
use tracing::{info, warn};

use super::context::{Context, PolicyRuntime, lock};
use super::metrics::{PolicyLabels, PolicyTierLabels};
use crate::api::FailoverPolicy;
use crate::engine::{Action, ActionKind, Affected};

pub(crate) fn log_action(a: &Action) {
    match &a.affected {
        Affected::None => info!(action = %a.kind, reason = %a.reason, "decision"),
        other => info!(action = %a.kind, reason = %a.reason, affected = ?other, "decision"),
    }
}

/// Events for what was decided and (when not dry-run) written. PublishEndpoints is left out:
/// the EndpointDown/EndpointUp that caused it already tell the story.
pub(crate) async fn publish_events(
    ctx: &Context,
    policy: &FailoverPolicy,
    rt: &std::sync::Mutex<PolicyRuntime>,
) {
    let pending = std::mem::take(&mut lock(rt).pending_events);
    let reference = policy.object_ref(&());
    for a in pending
        .iter()
        .filter(|a| a.kind != ActionKind::PublishEndpoints)
    {
        let ev = Event {
            type_: if warning(a.kind) {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: a.kind.as_str().into(),
            note: Some(truncate(&describe(a), 1000)),
            action: a.kind.as_str().into(),
            secondary: None,
        };
        match ctx.recorder.publish(&ev, &reference).await {
            Ok(()) => ctx.metrics.write("events"),
            Err(e) => warn!(error = %e, "could not publish event"),
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
        } => format!(
            "{from_class} → {to_class} (primary weight {primary_weight_percent}%): {}",
            a.reason
        ),
        Affected::Phase { from, to } => format!("{from} → {to}: {}", a.reason),
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

pub(crate) fn export_gauges(ctx: &Context, key: &str, rt: &std::sync::Mutex<PolicyRuntime>) {
    let r = lock(rt);
    let policy: Arc<str> = Arc::from(key);
    let m = &ctx.metrics;
    m.set_phase(&policy, r.state.phase);
    for (tier, healthy, total) in [
        ("primary", r.state.primary_healthy, r.state.primary_total),
        (
            "emergency",
            r.state.emergency_healthy,
            r.state.emergency_total,
        ),
    ] {
        let l = PolicyTierLabels {
            policy: policy.clone(),
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
    let l = PolicyLabels { policy };
    if r.cfg.ingress.is_some() {
        m.load_balancer_up
            .get_or_create(&l)
            .set(i64::from(r.state.lb_serving));
    }
    if let Some(d) = r.state.desired_emergency_replicas(&r.cfg) {
        m.emergency_desired_replicas
            .get_or_create(&l)
            .set(i64::from(d));
    }
    if let Some(i) = r.state.desired_ingress(&r.cfg) {
        m.primary_weight_percent
            .get_or_create(&l)
            .set(i64::from(i.primary_weight_percent));
    }
}
