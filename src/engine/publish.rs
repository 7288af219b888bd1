//! Which endpoints the managed EndpointSlice lists.
//!
//! Three rules, applied in order: publish what passes both Kubernetes readiness and the health
//! checks; never let probe failures remove more than `maxEjectionPercent` of the ready primary
//! pool (a wrong probe must not empty the pool); and, fail-open, never publish nothing while
//! Kubernetes reports any endpoint ready (Envoy's panic mode, made explicit and reported).

use super::actions::{Action, ActionKind, Affected};
use super::config::{EngineConfig, Millis};
use super::facts::Pool;
use super::state::{EmergencyPhase, PolicyState};

pub(crate) fn recompute_published(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    freeze: bool,
    now: Millis,
    actions: &mut Vec<Action>,
) {
    let held = freeze && (state.published_count() > 0 || cfg.fail_closed);
    let mut held_back = 0usize;
    if !held {
        held_back = decide(cfg, state);
    }
    // Panic publishes what Kubernetes calls ready: a pod Kubernetes itself would not route to
    // (starting, terminating) is no better than nothing, so it is never forced in.
    let panic_now = !held
        && !cfg.fail_closed
        && state.published_count() == 0
        && state
            .endpoints
            .iter()
            .any(|e| e.pool == Pool::Primary && e.ready);
    if panic_now {
        for e in state
            .endpoints
            .iter_mut()
            .filter(|e| e.pool == Pool::Primary)
        {
            e.published = e.ready;
        }
    }
    if !held && panic_now != state.panic {
        state.panic = panic_now;
        let (kind, reason) = if panic_now {
            (
                ActionKind::PanicEntered,
                "no backend passes its checks; fail-open publishes all of them rather than none"
                    .to_string(),
            )
        } else {
            (
                ActionKind::PanicExited,
                "backends pass their checks again".to_string(),
            )
        };
        state.record(actions, now, kind, reason, Affected::None);
    }
    report_diff(state, held_back, now, actions);
}

/// Sets `published` on every entry from health, max-ejection and the emergency phase. Returns
/// how many failing primary endpoints were kept by `maxEjectionPercent`.
fn decide(cfg: &EngineConfig, state: &mut PolicyState) -> usize {
    let emergency_on = matches!(state.emergency, EmergencyPhase::Active { .. });
    let mut ready = 0usize;
    let mut ejected = 0usize;
    for e in state.endpoints.iter_mut() {
        e.published = match e.pool {
            Pool::Primary => {
                ready += e.ready as usize;
                ejected += (e.ready && !e.health.state.serving()) as usize;
                e.healthy()
            }
            Pool::Emergency => emergency_on && e.healthy(),
        };
    }
    let max_eject = ready * cfg.max_ejection_percent as usize / 100;
    if ejected <= max_eject {
        return 0;
    }
    // Keep the most recent failures: the earliest ones are the likeliest real outages, and a
    // probe misconfiguration shows up as a burst of late ones.
    let mut failing: Vec<usize> = (0..state.endpoints.len())
        .filter(|&i| {
            let e = &state.endpoints[i];
            e.pool == Pool::Primary && e.ready && !e.health.state.serving()
        })
        .collect();
    failing.sort_by(|&a, &b| {
        let (ea, eb) = (&state.endpoints[a], &state.endpoints[b]);
        eb.health
            .last_change
            .cmp(&ea.health.last_change)
            .then_with(|| ea.address.cmp(&eb.address))
    });
    let keep = ejected - max_eject;
    for &i in failing.iter().take(keep) {
        state.endpoints[i].published = true;
    }
    keep
}

fn report_diff(state: &mut PolicyState, held_back: usize, now: Millis, actions: &mut Vec<Action>) {
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
    if held_back > 0 {
        reason.push_str(&format!(", {held_back} failing kept by maxEjectionPercent"));
    }
    if state.panic {
        reason.push_str(", fail-open panic");
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
