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

/// One line per decision, with flat fields (never a debug dump of the engine's types), so that
/// a log query can filter on `to_class` or `replicas_to` in text and JSON alike.
pub(crate) fn log_action(a: &Action, dry_run: bool) {
    let (action, reason) = (
        tracing::field::display(a.kind.as_str()),
        tracing::field::display(&a.reason),
    );
    match &a.affected {
        Affected::None => info!(action, reason, dry_run, "decision"),
        Affected::Endpoint { address, pool } => {
            info!(action, reason, endpoint = %address, pool, dry_run, "decision")
        }
        Affected::Endpoints {
            added,
            removed,
            published,
        } => info!(
            action,
            reason,
            added = %added.join(","),
            removed = %removed.join(","),
            published,
            dry_run,
            "decision"
        ),
        Affected::Replicas { from, to } => {
            info!(
                action,
                reason,
                replicas_from = from,
                replicas_to = to,
                dry_run,
                "decision"
            )
        }
        Affected::Ingress {
            from_class,
            to_class,
            primary_weight_percent,
        } => info!(
            action,
            reason,
            from_class = %from_class,
            to_class = %to_class,
            primary_weight_percent,
            dry_run,
            "decision"
        ),
        Affected::Phase { from, to } => {
            info!(
                action,
                reason,
                phase_from = from.as_str(),
                phase_to = to.as_str(),
                dry_run,
                "decision"
            )
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
    m.published_endpoints
        .get_or_create(&l)
        .set(i64::try_from(r.state.published_count()).unwrap_or(i64::MAX));
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
        if ing.has_backup_url || ing.has_backup_controller || ing.has_backup_gateway {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc as StdArc, Mutex};

    /// Captures what one `log_action` writes with the text format the operator uses.
    fn logged(action: &Action) -> String {
        let buf = StdArc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Writer(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || log_action(action, false));
        let out = buf.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    struct Writer(StdArc<Mutex<Vec<u8>>>);
    impl std::io::Write for Writer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn decisions_log_flat_fields_not_debug_dumps() {
        let cases = [
            (
                Affected::Ingress {
                    from_class: "nginx-primary".into(),
                    to_class: "nginx-backup".into(),
                    primary_weight_percent: 0,
                },
                "from_class=nginx-primary to_class=nginx-backup primary_weight_percent=0",
            ),
            (
                Affected::Replicas { from: 0, to: 3 },
                "replicas_from=0 replicas_to=3",
            ),
            (
                Affected::Endpoints {
                    added: vec!["10.0.1.1:80".into(), "10.0.1.2:80".into()],
                    removed: vec![],
                    published: 2,
                },
                "added=10.0.1.1:80,10.0.1.2:80 removed= published=2",
            ),
        ];
        for (affected, want) in cases {
            let action = Action {
                at: 0,
                kind: ActionKind::IngressFailover,
                reason: "primary load balancer down".into(),
                affected,
            };
            let line = logged(&action);
            assert!(line.contains(want), "{line}");
            assert!(line.contains("action=IngressFailover"), "{line}");
            assert!(
                !line.contains('{') && !line.contains("Some(") && !line.contains("[\""),
                "debug formatting in a log line: {line}"
            );
        }
    }
}
