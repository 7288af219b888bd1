//! Which endpoints the managed EndpointSlice lists.
//!
//! Three rules, applied in order:
//! 1. publish what passes both Kubernetes readiness and the health checks (emergency endpoints
//!    only while the emergency is engaged), never what Kubernetes marks terminating;
//! 2. never let probe failures remove more than `maxEjectionPercent` of the ready primary pool
//!    (at least one may always go, as in Envoy), so a wrong probe cannot empty the pool;
//! 3. fail-open panic (Envoy's `healthy_panic_threshold`): while the healthy share of the pool
//!    is below `panicThresholdPercent`, or nothing passes at all, publish every candidate — each
//!    non-terminating primary endpoint, ready or not, plus the serving emergency endpoints —
//!    rather than pile all traffic on the few that pass.

use super::actions::{Action, ActionKind, Affected};
use super::config::{EngineConfig, Millis};
use super::facts::Pool;
use super::state::PolicyState;

pub(crate) fn recompute_published(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    freeze: bool,
    now: Millis,
    actions: &mut Vec<Action>,
) {
    let held = freeze && (state.published_count() > 0 || cfg.fail_closed);
    if !held {
        let kept = decide(cfg, state);
        report_ejection_limit(cfg, state, kept, now, actions);
        apply_panic(cfg, state, now, actions);
    }
    report_diff(state, now, actions);
}

/// Sets `published` from health, the emergency phase and max-ejection. Returns the failing
/// primary endpoints kept by `maxEjectionPercent`.
fn decide(cfg: &EngineConfig, state: &mut PolicyState) -> Vec<String> {
    let emergency_on = state.emergency_serving();
    let mut ready = 0usize;
    let mut ejected = 0usize;
    for e in state.endpoints.iter_mut() {
        e.published = match e.pool {
            Pool::Primary => {
                let eligible = e.ready && !e.terminating;
                ready += eligible as usize;
                ejected += (eligible && !e.health.state.serving()) as usize;
                e.healthy()
            }
            Pool::Emergency => emergency_on && e.healthy(),
        };
    }
    let max_eject = max_ejections(cfg, ready);
    if ejected <= max_eject {
        return Vec::new();
    }
    // Keep the most recent failures: the earliest ones are the likeliest real outages, and a
    // probe misconfiguration shows up as a burst of late ones.
    let mut failing: Vec<usize> = (0..state.endpoints.len())
        .filter(|&i| {
            let e = &state.endpoints[i];
            e.pool == Pool::Primary && e.ready && !e.terminating && !e.health.state.serving()
        })
        .collect();
    failing.sort_by(|&a, &b| {
        let (ea, eb) = (&state.endpoints[a], &state.endpoints[b]);
        eb.health
            .last_change
            .cmp(&ea.health.last_change)
            .then_with(|| ea.address.cmp(&eb.address))
    });
    let mut kept = Vec::new();
    for &i in failing.iter().take(ejected - max_eject) {
        state.endpoints[i].published = true;
        kept.push(state.endpoints[i].address.clone());
    }
    kept.sort();
    kept
}

/// How many of `ready` primary endpoints probes may remove: the percentage rounded down, but at
/// least one whenever the percentage is above zero (Envoy's rule), so small pools still eject.
pub(crate) fn max_ejections(cfg: &EngineConfig, ready: usize) -> usize {
    if cfg.max_ejection_percent == 0 || ready == 0 {
        return 0;
    }
    (ready * cfg.max_ejection_percent as usize / 100).max(1)
}

fn report_ejection_limit(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    kept: Vec<String>,
    now: Millis,
    actions: &mut Vec<Action>,
) {
    if kept == state.kept_by_max_ejection {
        return;
    }
    if !kept.is_empty() {
        let ready = state
            .endpoints
            .iter()
            .filter(|e| e.pool == Pool::Primary && e.ready && !e.terminating)
            .count();
        let reason = format!(
            "{} failing kept published by maxEjectionPercent {}% (at most {} of {} ready primary backends may be ejected): {}",
            kept.len(),
            cfg.max_ejection_percent,
            max_ejections(cfg, ready),
            ready,
            kept.join(", ")
        );
        actions.push(Action {
            at: now,
            kind: ActionKind::EjectionLimited,
            reason,
            affected: Affected::None,
        });
    }
    state.kept_by_max_ejection = kept;
}

fn apply_panic(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    now: Millis,
    actions: &mut Vec<Action>,
) {
    let candidates = state
        .endpoints
        .iter()
        .filter(|e| e.pool == Pool::Primary && !e.terminating)
        .count();
    let serving = state
        .endpoints
        .iter()
        .filter(|e| e.published && e.healthy())
        .count();
    let threshold = cfg.panic_threshold_percent as usize;
    let share = (serving * 100).checked_div(candidates).unwrap_or(100);
    let panic_now = !cfg.fail_closed
        && candidates > 0
        && (state.published_count() == 0 || serving * 100 < threshold * candidates);
    if panic_now {
        for e in state
            .endpoints
            .iter_mut()
            .filter(|e| e.pool == Pool::Primary && !e.terminating)
        {
            e.published = true;
        }
    }
    if panic_now == state.panic {
        return;
    }
    state.panic = panic_now;
    let not_ready = state
        .endpoints
        .iter()
        .filter(|e| e.pool == Pool::Primary && !e.terminating && !e.ready)
        .count();
    let (kind, reason) = if panic_now {
        let why = if serving == 0 {
            "no backend passes its checks and Kubernetes readiness".to_string()
        } else {
            format!(
                "{serving} of {candidates} backends healthy ({share}%), below panicThresholdPercent {threshold}"
            )
        };
        (
            ActionKind::PanicEntered,
            format!(
                "{why}: fail-open publishes all {candidates} non-terminating primary backends ({not_ready} not ready) rather than overload the few that pass"
            ),
        )
    } else if cfg.fail_closed {
        (
            ActionKind::PanicExited,
            "failMode is FailClosed: only passing backends are published".to_string(),
        )
    } else if candidates == 0 {
        (
            ActionKind::PanicExited,
            "no primary backend is left outside termination".to_string(),
        )
    } else {
        (
            ActionKind::PanicExited,
            format!(
                "{serving} of {candidates} backends healthy ({share}%), at or above panicThresholdPercent {threshold}"
            ),
        )
    };
    state.record(actions, now, kind, reason, Affected::None);
}

fn report_diff(state: &mut PolicyState, now: Millis, actions: &mut Vec<Action>) {
    let current: Vec<(Pool, &str)> = state
        .endpoints
        .iter()
        .filter(|e| e.published)
        .map(|e| (e.pool, e.address.as_str()))
        .collect();
    let previous = &state.published_snapshot;
    let same = previous.len() == current.len()
        && previous
            .iter()
            .zip(&current)
            .all(|((pa, aa), (pb, ab))| pa == pb && aa == ab);
    if same {
        return;
    }
    let added: Vec<String> = current
        .iter()
        .filter(|c| !previous.iter().any(|(p, a)| p == &c.0 && a == c.1))
        .map(|c| c.1.to_string())
        .collect();
    let removed: Vec<String> = previous
        .iter()
        .filter(|(p, a)| !current.iter().any(|c| &c.0 == p && c.1 == a))
        .map(|(_, a)| a.clone())
        .collect();
    let published = current.len();
    let emergency = current.iter().filter(|c| c.0 == Pool::Emergency).count();
    let mut reason = format!(
        "{}/{} primary backends healthy",
        state.primary_healthy, state.primary_total
    );
    if emergency > 0 {
        reason.push_str(&format!(", {emergency} emergency backends serving"));
    }
    if !state.kept_by_max_ejection.is_empty() {
        reason.push_str(&format!(
            ", {} failing kept by maxEjectionPercent",
            state.kept_by_max_ejection.len()
        ));
    }
    if state.panic {
        reason.push_str(", fail-open panic");
    }
    if state.dry_run.is_some() {
        reason.insert_str(0, super::DRY_RUN_PREFIX);
    }
    state.published_snapshot = current.iter().map(|(p, a)| (*p, a.to_string())).collect();
    actions.push(Action {
        at: now,
        kind: ActionKind::PublishEndpoints,
        reason,
        affected: Affected::Endpoints {
            added,
            removed,
            published,
        },
    });
}
