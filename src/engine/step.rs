//! One step of the decision engine: (config, observation, previous state, now) → (next state,
//! actions).
//!
//! The order inside a step is fixed and matters: facts first (inventory, checks, load balancer),
//! then manual control (override, flap-budget thaw), then the two policy machines (emergency,
//! ingress), then the published set, which depends on all of the above, and last the phase.

use crate::api::{OverrideMode, Phase};
use crate::health::CheckOutcome;

use super::actions::{Action, ActionKind, Affected};
use super::config::{EngineConfig, Millis};
use super::facts::{Observation, Pool};
use super::publish::recompute_published;
use super::risefall::{Flip, RiseFall};
use super::state::{EmergencyPhase, EndpointEntry, IngressPhase, PolicyState};

/// Advances `state` to `now` given what was observed since the previous step, appending every
/// decision to `actions`. Deterministic and free of I/O: the same inputs give the same outputs.
pub fn step(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    obs: &Observation,
    now: Millis,
    actions: &mut Vec<Action>,
) {
    let first = actions.len();
    if !state.initialized {
        state.initialized = true;
        state.lb_serving_since = now;
        state.lb.last_change = now;
    }
    let mut membership_changed = sync_inventory(state, obs, now);
    membership_changed |= apply_checks(cfg, state, obs, now, actions);
    observe_load_balancer(cfg, state, obs, now, actions);
    if obs.emergency_ready_replicas.is_some() {
        state.emergency_ready_replicas = obs.emergency_ready_replicas;
    }
    count_health(state);

    let override_before = state.override_seen;
    let freeze_override = apply_override(cfg, state, now, actions);
    thaw_flap_budget(cfg, state, now, actions);
    let emergency_before = state.emergency;
    if !freeze_override {
        run_emergency(cfg, state, now, actions);
        run_ingress(cfg, state, now, actions);
    }
    // A Freeze that ends releases a held published set: recompute it now, not at the next flip.
    membership_changed |=
        state.emergency != emergency_before || state.override_seen != override_before;

    if membership_changed && state.inventory_known {
        recompute_published(cfg, state, freeze_override, now, actions);
    }
    update_phase(state, freeze_override, now, actions, first);
}

/// Merges a new inventory: known endpoints keep their rise/fall history, new primary endpoints
/// start Up (a restart or scale-out must not eject healthy pods), new emergency endpoints start
/// Down (they must pass `successThreshold` checks before taking traffic: scale first, then
/// shift). Returns whether membership or readiness changed.
fn sync_inventory(state: &mut PolicyState, obs: &Observation, now: Millis) -> bool {
    if !obs.inventory_known || state.seen_inventory == Some(obs.inventory_version) {
        return false;
    }
    state.seen_inventory = Some(obs.inventory_version);
    state.inventory_known = true;
    let mut incoming: Vec<&super::facts::EndpointFact> = obs.endpoints.iter().collect();
    incoming.sort_by(|a, b| (a.pool, &a.address).cmp(&(b.pool, &b.address)));
    incoming.dedup_by(|a, b| a.pool == b.pool && a.address == b.address);

    let old = std::mem::take(&mut state.endpoints);
    let mut changed = old.len() != incoming.len();
    let mut old_iter = old.into_iter().peekable();
    for fact in incoming {
        let key = (fact.pool, fact.address.as_str());
        while old_iter
            .peek()
            .is_some_and(|o| (o.pool, o.address.as_str()) < key)
        {
            old_iter.next();
            changed = true;
        }
        match old_iter.next_if(|o| (o.pool, o.address.as_str()) == key) {
            Some(mut entry) => {
                changed |= entry.ready != fact.ready;
                entry.ready = fact.ready;
                state.endpoints.push(entry);
            }
            None => {
                changed = true;
                let health = match fact.pool {
                    Pool::Primary => RiseFall::up(now),
                    Pool::Emergency => RiseFall::down(now),
                };
                state.endpoints.push(EndpointEntry {
                    address: fact.address.clone(),
                    pool: fact.pool,
                    ready: fact.ready,
                    health,
                    published: false,
                });
            }
        }
    }
    changed
}

fn apply_checks(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    obs: &Observation,
    now: Millis,
    actions: &mut Vec<Action>,
) -> bool {
    let mut changed = false;
    for check in &obs.checks {
        let Some(i) = state.find(check.pool, &check.address) else {
            continue;
        };
        let entry = &mut state.endpoints[i];
        let (healthy, error) = split(&check.outcome);
        let Some(flip) = entry
            .health
            .observe(healthy, error, cfg.rise, cfg.fall, now)
        else {
            continue;
        };
        changed = true;
        let (kind, reason) = match flip {
            Flip::WentDown => (
                ActionKind::EndpointDown,
                format!(
                    "{} consecutive failed checks (last: {})",
                    cfg.fall,
                    entry.health.last_error.as_deref().unwrap_or("unknown")
                ),
            ),
            Flip::WentUp => (
                ActionKind::EndpointUp,
                format!("{} consecutive good checks", cfg.rise),
            ),
        };
        actions.push(Action::endpoint(
            now,
            kind,
            &entry.address,
            entry.pool,
            reason,
        ));
    }
    changed
}

fn split(outcome: &CheckOutcome) -> (bool, Option<&str>) {
    match outcome {
        CheckOutcome::Healthy => (true, None),
        CheckOutcome::Unhealthy { message, .. } => (false, Some(message.as_str())),
    }
}

/// Rise/fall over the health URL, combined with the controller Deployment's readiness: the
/// primary tier serves only while every configured signal says so. Unknown signals count as
/// serving — a missing fact never triggers a failover.
fn observe_load_balancer(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    obs: &Observation,
    now: Millis,
    actions: &mut Vec<Action>,
) {
    let Some(ing) = &cfg.ingress else {
        return;
    };
    for outcome in &obs.lb_checks {
        let (healthy, error) = split(outcome);
        state.lb.observe(healthy, error, cfg.rise, cfg.fall, now);
    }
    if obs.lb_controller_ready.is_some() {
        state.lb_controller_ready = obs.lb_controller_ready;
    }
    let url_ok = !ing.has_health_url || state.lb.state.serving();
    let controller_ok = !ing.has_controller || state.lb_controller_ready != Some(false);
    let serving = url_ok && controller_ok;
    if serving == state.lb_serving {
        return;
    }
    state.lb_serving = serving;
    let (kind, reason) = if serving {
        state.lb_serving_since = now;
        (
            ActionKind::LoadBalancerUp,
            "primary load balancer healthy again".to_string(),
        )
    } else if !url_ok {
        (
            ActionKind::LoadBalancerDown,
            format!(
                "health URL failed {} consecutive checks (last: {})",
                cfg.fall,
                state.lb.last_error.as_deref().unwrap_or("unknown")
            ),
        )
    } else {
        (
            ActionKind::LoadBalancerDown,
            "ingress controller Deployment has no ready replica".to_string(),
        )
    };
    state.record(actions, now, kind, reason, Affected::None);
}

fn count_health(state: &mut PolicyState) {
    let (mut ph, mut pt, mut eh, mut et) = (0, 0, 0, 0);
    for e in &state.endpoints {
        let healthy = e.healthy() as u32;
        match e.pool {
            Pool::Primary => {
                pt += 1;
                ph += healthy;
            }
            Pool::Emergency => {
                et += 1;
                eh += healthy;
            }
        }
    }
    state.primary_healthy = ph;
    state.primary_total = pt;
    state.emergency_healthy = eh;
    state.emergency_total = et;
}

/// Reports override changes and applies ForcePrimary/ForceBackup. Returns whether Freeze holds.
fn apply_override(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    now: Millis,
    actions: &mut Vec<Action>,
) -> bool {
    let current = cfg.override_at(now);
    let key = current.map(|o| (o.mode, o.expires_at));
    if key != state.override_seen {
        let (kind, reason) = match current {
            Some(o) => (
                ActionKind::OverrideApplied,
                format!("override {:?}: {}", o.mode, o.reason),
            ),
            None => {
                let expired = cfg
                    .override_
                    .as_ref()
                    .and_then(|o| o.expires_at)
                    .is_some_and(|exp| now >= exp);
                (
                    ActionKind::OverrideExpired,
                    if expired {
                        "override expired; automatic decisions resume".to_string()
                    } else {
                        "override removed; automatic decisions resume".to_string()
                    },
                )
            }
        };
        state.override_seen = key;
        state.record(actions, now, kind, reason, Affected::None);
    }
    let Some(o) = current else {
        return false;
    };
    let target = match o.mode {
        OverrideMode::Freeze => return true,
        OverrideMode::Auto => return false,
        OverrideMode::ForcePrimary => IngressPhase::Primary,
        OverrideMode::ForceBackup => IngressPhase::FailedOver { since: now },
    };
    if cfg.ingress.is_some() && !same_side(state.ingress, target) {
        let reason = format!("override {:?}: {}", o.mode, o.reason);
        let kind = match target {
            IngressPhase::Primary => ActionKind::IngressFailback,
            _ => ActionKind::IngressFailover,
        };
        set_ingress(cfg, state, target, kind, reason, now, actions);
    }
    false
}

fn same_side(a: IngressPhase, b: IngressPhase) -> bool {
    matches!(
        (a, b),
        (IngressPhase::Primary, IngressPhase::Primary)
            | (
                IngressPhase::FailedOver { .. },
                IngressPhase::FailedOver { .. }
            )
    )
}

fn thaw_flap_budget(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    now: Millis,
    actions: &mut Vec<Action>,
) {
    let Some(since) = state.frozen_since else {
        return;
    };
    prune(cfg, state, now);
    if now - since >= cfg.flap_window_ms
        && (state.transitions.len() as u32) < cfg.flap_max_transitions
    {
        state.frozen_since = None;
        let reason = format!(
            "flap-budget window of {}s passed; automatic decisions resume",
            cfg.flap_window_ms / 1000
        );
        state.record(actions, now, ActionKind::Unfrozen, reason, Affected::None);
    }
}

fn prune(cfg: &EngineConfig, state: &mut PolicyState, now: Millis) {
    while state
        .transitions
        .front()
        .is_some_and(|&t| now - t >= cfg.flap_window_ms)
    {
        state.transitions.pop_front();
    }
}

/// Asks the flap budget for one counted transition. Refusal freezes the policy in place.
fn admit_transition(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    wanted: &str,
    now: Millis,
    actions: &mut Vec<Action>,
) -> bool {
    if state.frozen_since.is_some() {
        return false;
    }
    prune(cfg, state, now);
    if (state.transitions.len() as u32) < cfg.flap_max_transitions {
        state.transitions.push_back(now);
        return true;
    }
    state.frozen_since = Some(now);
    let reason = format!(
        "{} transitions within {}s; holding in place instead of {wanted}",
        state.transitions.len(),
        cfg.flap_window_ms / 1000
    );
    state.record(
        actions,
        now,
        ActionKind::FlapBudgetExhausted,
        reason,
        Affected::None,
    );
    false
}

fn run_emergency(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    now: Millis,
    actions: &mut Vec<Action>,
) {
    let Some(em) = cfg.emergency else {
        return;
    };
    if !state.inventory_known {
        return;
    }
    let ratio = state.primary_ratio();
    if ratio < cfg.activate_below {
        state.below_since.get_or_insert(now);
    } else {
        state.below_since = None;
    }
    if ratio >= cfg.deactivate_above {
        state.above_since.get_or_insert(now);
    } else {
        state.above_since = None;
    }
    let sustained_low = state
        .below_since
        .is_some_and(|t| now - t >= cfg.activate_for_ms);
    let sustained_high = state
        .above_since
        .is_some_and(|t| now - t >= cfg.deactivate_for_ms);
    // Built only when an action needs it: this function runs every step.
    let ratio_text = |state: &PolicyState| {
        format!(
            "healthy ratio {:.2} ({}/{})",
            ratio, state.primary_healthy, state.primary_total
        )
    };

    match state.emergency {
        EmergencyPhase::Standby | EmergencyPhase::CoolingDown { .. } if sustained_low => {
            if !admit_transition(cfg, state, "EmergencyActivate", now, actions) {
                return;
            }
            let from = state.desired_emergency_replicas(cfg).unwrap_or(0);
            state.emergency = EmergencyPhase::Active { since: now };
            let reason = format!(
                "{} below {} for {}s",
                ratio_text(state),
                cfg.activate_below,
                cfg.activate_for_ms / 1000
            );
            let affected = if em.has_deployment {
                Affected::Replicas {
                    from,
                    to: em.active_replicas,
                }
            } else {
                Affected::None
            };
            state.record(
                actions,
                now,
                ActionKind::EmergencyActivate,
                reason,
                affected,
            );
        }
        EmergencyPhase::Active { .. } if sustained_high => {
            if !admit_transition(cfg, state, "EmergencyRelease", now, actions) {
                return;
            }
            let reason = format!(
                "{} at or above {} for {}s",
                ratio_text(state),
                cfg.deactivate_above,
                cfg.deactivate_for_ms / 1000
            );
            state.emergency = if em.has_deployment && em.active_replicas != em.standby_replicas {
                EmergencyPhase::CoolingDown { since: now }
            } else {
                EmergencyPhase::Standby
            };
            state.record(
                actions,
                now,
                ActionKind::EmergencyRelease,
                reason,
                Affected::None,
            );
        }
        EmergencyPhase::CoolingDown { since } if now - since >= cfg.emergency_cooldown_ms => {
            state.emergency = EmergencyPhase::Standby;
            let reason = format!(
                "primary pool stayed healthy through the {}s cooldown",
                cfg.emergency_cooldown_ms / 1000
            );
            let affected = Affected::Replicas {
                from: em.active_replicas,
                to: em.standby_replicas,
            };
            state.record(
                actions,
                now,
                ActionKind::EmergencyScaleDown,
                reason,
                affected,
            );
        }
        _ => {}
    }
}

fn run_ingress(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    now: Millis,
    actions: &mut Vec<Action>,
) {
    if cfg.ingress.is_none() || cfg.override_at(now).is_some() || state.frozen_since.is_some() {
        return;
    }
    let serving = state.lb_serving;
    let held_for = now - state.lb_serving_since;
    // (target, action, reason, whether it is a counted direction change)
    let wanted = match state.ingress {
        IngressPhase::Primary | IngressPhase::FailingBack { .. } if !serving => Some((
            IngressPhase::FailedOver { since: now },
            ActionKind::IngressFailover,
            "primary load balancer is down".to_string(),
            true,
        )),
        IngressPhase::FailedOver { .. } if serving && held_for >= cfg.hold_down_ms => Some((
            if cfg.failback_steps.is_empty() {
                IngressPhase::Primary
            } else {
                IngressPhase::FailingBack {
                    step: 0,
                    since: now,
                }
            },
            ActionKind::IngressFailback,
            format!(
                "primary load balancer healthy for {}s (hold-down)",
                held_for / 1000
            ),
            true,
        )),
        IngressPhase::FailingBack { step, since } if serving && now - since >= cfg.step_ms => {
            let next = if step + 1 < cfg.failback_steps.len() {
                (
                    IngressPhase::FailingBack {
                        step: step + 1,
                        since: now,
                    },
                    ActionKind::FailbackStep,
                )
            } else {
                (IngressPhase::Primary, ActionKind::FailbackComplete)
            };
            Some((
                next.0,
                next.1,
                format!(
                    "step dwell of {}s passed with the primary healthy",
                    cfg.step_ms / 1000
                ),
                false,
            ))
        }
        _ => None,
    };
    let Some((target, kind, reason, counted)) = wanted else {
        return;
    };
    if counted && !admit_transition(cfg, state, kind.as_str(), now, actions) {
        return;
    }
    set_ingress(cfg, state, target, kind, reason, now, actions);
}

fn set_ingress(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    target: IngressPhase,
    kind: ActionKind,
    reason: String,
    now: Millis,
    actions: &mut Vec<Action>,
) {
    let from = state.desired_ingress(cfg);
    state.ingress = target;
    let to = state.desired_ingress(cfg);
    let affected = match (from, to) {
        (Some(from), Some(to)) => Affected::Ingress {
            from_class: from.active_class,
            to_class: to.active_class,
            primary_weight_percent: to.primary_weight_percent,
        },
        _ => Affected::None,
    };
    state.record(actions, now, kind, reason, affected);
}

fn update_phase(
    state: &mut PolicyState,
    freeze_override: bool,
    now: Millis,
    actions: &mut Vec<Action>,
    first_action_of_step: usize,
) {
    let phase = if freeze_override || state.frozen_since.is_some() {
        Phase::Frozen
    } else if matches!(state.ingress, IngressPhase::FailedOver { .. }) {
        Phase::FailedOver
    } else if matches!(state.ingress, IngressPhase::FailingBack { .. })
        || matches!(state.emergency, EmergencyPhase::CoolingDown { .. })
    {
        Phase::Recovering
    } else if matches!(state.emergency, EmergencyPhase::Active { .. }) {
        Phase::EmergencyActive
    } else if !state.inventory_known {
        Phase::Pending
    } else if state.panic || state.primary_healthy < state.primary_total || state.primary_total == 0
    {
        Phase::Degraded
    } else {
        Phase::Normal
    };
    if phase == state.phase {
        return;
    }
    let from = state.phase;
    state.phase = phase;
    let cause = actions[first_action_of_step..]
        .iter()
        .rev()
        .find(|a| a.kind != ActionKind::PublishEndpoints)
        .map(|a| format!("{}: {}", a.kind, a.reason));
    let reason = cause.unwrap_or_else(|| match phase {
        Phase::Degraded => format!(
            "{}/{} primary backends healthy",
            state.primary_healthy, state.primary_total
        ),
        Phase::Normal => "all primary backends healthy".to_string(),
        _ => format!("now {phase}"),
    });
    actions.push(Action {
        at: now,
        kind: ActionKind::PhaseChanged,
        reason,
        affected: Affected::Phase { from, to: phase },
    });
}
