//! One step of the decision engine: (config, observation, previous state, now) → (next state,
//! actions).
//!
//! The order inside a step is fixed and matters: facts first (inventory, checks, load balancer),
//! then what people did (dry-run on or off, override, budget reset, budget thaw), then the
//! sustain windows, then the two policy machines (emergency, ingress), then the published set,
//! which depends on all of the above, and last the phase.

use crate::api::{OverrideMode, Phase};
use crate::health::CheckOutcome;

use super::actions::{Action, ActionKind, Affected};
use super::config::{EngineConfig, Millis, Now};
use super::facts::{DeploymentFact, Observation, Pool};
use super::publish::recompute_published;
use super::risefall::{Flip, RiseFall};
use super::state::{
    Budget, Drain, EmergencyPhase, EndpointEntry, Frozen, IngressPhase, LbTier, PolicyState, Tier,
};

/// Advances `state` to `now` given what was observed since the previous step, appending every
/// decision to `actions`. Deterministic and free of I/O: the same inputs give the same outputs.
pub fn step(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    obs: &Observation,
    now: impl Into<Now>,
    actions: &mut Vec<Action>,
) {
    let now = now.into();
    let first = actions.len();
    if !state.initialized {
        state.initialized = true;
        state.lb_clean_since = now.mono;
        state.lb.last_change = now.wall;
        state.traffic_home_since = Some(now.mono);
    }
    let mut membership_changed = sync_inventory(state, obs, now);
    membership_changed |= apply_checks(cfg, state, obs, now, actions);
    observe_load_balancer(cfg, state, obs, now, actions);
    if obs.emergency_ready_replicas.is_some() {
        state.emergency_ready_replicas = obs.emergency_ready_replicas;
    }
    count_health(state);

    let edited = state.edited.take();
    membership_changed |= edited.is_some();
    membership_changed |= apply_dry_run(cfg, state, now, actions);
    let override_before = state.override_seen;
    let freeze_override = apply_override(cfg, state, now, actions);
    apply_budget_reset(cfg, state, now, actions);
    thaw_budgets(cfg, state, now, actions);
    update_sustain_windows(cfg, state, now);
    if state.draining.is_some_and(|d| now.mono >= d.until) {
        state.draining = None;
    }
    let emergency_before = state.emergency;
    if !freeze_override {
        run_emergency(cfg, state, now, actions);
        run_ingress(cfg, state, now, actions);
    }
    // A Freeze that ends releases a held published set: recompute it now, not at the next flip.
    membership_changed |=
        state.emergency != emergency_before || state.override_seen != override_before;

    // A recompute wanted while the inventory is unknown (just after a restart) waits for it.
    state.republish |= membership_changed;
    if state.republish && state.inventory_known {
        state.republish = false;
        recompute_published(cfg, state, freeze_override, now.wall, actions);
    }
    if let Some(before) = edited {
        report_spec_edit(cfg, state, before, now, actions, first);
    }
    update_phase(state, freeze_override, now.wall, actions, first);
}

/// After a spec edit: what the edit changed on the managed objects by itself (no transition of
/// this step explains it) becomes one `SpecApplied` action naming each change.
fn report_spec_edit(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    before: (Option<i32>, Option<super::state::IngressDesired>),
    now: Now,
    actions: &mut Vec<Action>,
    first: usize,
) {
    let moved = |kinds: &[ActionKind]| actions[first..].iter().any(|a| kinds.contains(&a.kind));
    let mut changes = Vec::new();
    let replicas = state.in_effect_emergency_replicas(cfg);
    if replicas != before.0
        && !moved(&[
            ActionKind::EmergencyActivate,
            ActionKind::EmergencyScaleDown,
        ])
    {
        changes.push(format!(
            "emergency replicas {} → {}",
            before.0.map_or("none".into(), |r| r.to_string()),
            replicas.map_or("none".into(), |r| r.to_string())
        ));
    }
    let ingress = state.in_effect_ingress(cfg);
    if ingress != before.1
        && !moved(&[
            ActionKind::IngressFailover,
            ActionKind::IngressFailback,
            ActionKind::FailbackStep,
            ActionKind::FailbackComplete,
        ])
    {
        let show = |i: &Option<super::state::IngressDesired>| match i {
            Some(i) => format!(
                "{} at {}% primary",
                i.active_class, i.primary_weight_percent
            ),
            None => "unmanaged".to_string(),
        };
        changes.push(format!("ingress {} → {}", show(&before.1), show(&ingress)));
    }
    if changes.is_empty() {
        return;
    }
    let reason = format!("spec edit: {}", changes.join("; "));
    state.record(
        actions,
        now.wall,
        ActionKind::SpecApplied,
        reason,
        Affected::None,
    );
}

/// Holds every decision while the spec is invalid: the engine keeps its memory and the managed
/// objects stay as the last valid generation left them, until a valid spec arrives (the next
/// [`step`] then recomputes the phase). Reports the change of phase once.
pub fn hold_invalid(
    state: &mut PolicyState,
    message: &str,
    now: Millis,
    actions: &mut Vec<Action>,
) {
    if state.phase == Phase::Invalid {
        return;
    }
    let from = state.phase;
    state.phase = Phase::Invalid;
    actions.push(Action {
        at: now,
        kind: ActionKind::PhaseChanged,
        reason: format!("spec rejected ({message}); holding the last valid decisions"),
        affected: Affected::Phase {
            from,
            to: Phase::Invalid,
        },
    });
}

/// Merges a new inventory: known endpoints keep their rise/fall history; new primary endpoints
/// start Up but unconfirmed, as HAProxy starts a server (a restart or scale-out must not eject
/// healthy pods, and the first check alone decides); new emergency endpoints start Down (they
/// must pass `successThreshold` checks before taking traffic: scale first, then shift).
/// Returns whether membership, readiness or termination changed.
#[inline]
fn sync_inventory(state: &mut PolicyState, obs: &Observation, now: Now) -> bool {
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
                changed |= entry.ready != fact.ready || entry.terminating != fact.terminating;
                entry.ready = fact.ready;
                entry.terminating = fact.terminating;
                state.endpoints.push(entry);
            }
            None => {
                changed = true;
                let health = match fact.pool {
                    Pool::Primary => RiseFall::unconfirmed(now.wall),
                    Pool::Emergency => RiseFall::down(now.wall),
                };
                state.endpoints.push(EndpointEntry {
                    address: fact.address.clone(),
                    pool: fact.pool,
                    ready: fact.ready,
                    terminating: fact.terminating,
                    health,
                    published: false,
                });
            }
        }
    }
    changed
}

#[inline]
fn apply_checks(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    obs: &Observation,
    now: Now,
    actions: &mut Vec<Action>,
) -> bool {
    let mut changed = false;
    for check in &obs.checks {
        let Some(i) = state.find(check.pool, &check.address) else {
            continue;
        };
        let entry = &mut state.endpoints[i];
        let (healthy, error) = outcome_parts(&check.outcome);
        let first_check = entry.health.unconfirmed;
        let Some(flip) = entry
            .health
            .observe(healthy, error, cfg.rise, cfg.fall, now.wall)
        else {
            continue;
        };
        changed = true;
        let last = entry.health.last_error.as_deref().unwrap_or("unknown");
        let (kind, reason) = match flip {
            Flip::WentDown if first_check => (
                ActionKind::EndpointDown,
                format!(
                    "its first check failed ({last}); a new endpoint is Up only until its first check, as in HAProxy"
                ),
            ),
            Flip::WentDown => (
                ActionKind::EndpointDown,
                format!("{} consecutive failed checks (last: {last})", cfg.fall),
            ),
            Flip::WentUp => (
                ActionKind::EndpointUp,
                format!("{} consecutive good checks", cfg.rise),
            ),
        };
        actions.push(Action::endpoint(
            now.wall,
            kind,
            &entry.address,
            entry.pool,
            reason,
        ));
    }
    changed
}

/// A check outcome as rise/fall reads it: passed, and the failure's message.
pub(super) fn outcome_parts(outcome: &CheckOutcome) -> (bool, Option<&str>) {
    match outcome {
        CheckOutcome::Healthy => (true, None),
        CheckOutcome::Unhealthy { message, .. } => (false, Some(message.as_str())),
    }
}

/// What one tier's signals say after this step's facts.
struct Verdict {
    serving: bool,
    url_ok: bool,
    gateway_ok: bool,
    failure_seen: bool,
    missing: bool,
}

/// Rise/fall over a tier's health URL, combined with its controller Deployment's debounced
/// readiness: the tier serves only while every configured signal says so. An unknown signal
/// (cache not synced) holds the last verdict; a Deployment the synced cache does not have is a
/// down one. One copy for the primary and the backup tier.
#[allow(clippy::too_many_arguments)]
#[inline]
fn judge(
    cfg: &EngineConfig,
    url: &mut RiseFall,
    fact: &mut Option<DeploymentFact>,
    signal: &mut super::state::Debounce,
    (has_url, has_controller): (bool, bool),
    checks: &[CheckOutcome],
    observed: Option<DeploymentFact>,
    gateway: super::gateway::GatewayJudgement,
    now: Now,
) -> Verdict {
    let mut failure_seen = gateway.failure_seen;
    for outcome in checks {
        let (healthy, error) = outcome_parts(outcome);
        failure_seen |= !healthy;
        url.observe(healthy, error, cfg.rise, cfg.fall, now.wall);
    }
    if observed.is_some() {
        *fact = observed;
    }
    if has_controller && let Some(f) = *fact {
        let ok = f == DeploymentFact::Ready;
        failure_seen |= !ok;
        signal.update(ok, now.mono, cfg.fall_ms(), cfg.rise_ms());
    }
    let url_ok = !has_url || url.state.serving();
    let controller_ok = !has_controller || signal.serving;
    Verdict {
        serving: url_ok && controller_ok && gateway.ok,
        url_ok,
        gateway_ok: gateway.ok,
        failure_seen,
        missing: *fact == Some(DeploymentFact::Missing),
    }
}

fn down_reason(
    cfg: &EngineConfig,
    which: &str,
    v: &Verdict,
    url: &RiseFall,
    gateway: &super::gateway::GatewaySignal,
) -> String {
    if !v.gateway_ok {
        format!("{which}{}", gateway.why(cfg))
    } else if !v.url_ok {
        format!(
            "{which}health URL failed {} consecutive checks (last: {})",
            cfg.fall,
            url.last_error.as_deref().unwrap_or("unknown")
        )
    } else {
        format!(
            "{which}ingress controller Deployment {} for {}s (failureThreshold × intervalSeconds)",
            if v.missing {
                "does not exist"
            } else {
                "has no ready replica"
            },
            cfg.fall_ms() / 1000
        )
    }
}

/// Judges both load-balancer tiers. Any failed check of the primary, even one short of
/// `failureThreshold`, restarts the hold-down.
#[inline]
fn observe_load_balancer(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    obs: &Observation,
    now: Now,
    actions: &mut Vec<Action>,
) {
    let Some(ing) = &cfg.ingress else {
        return;
    };
    let gw = state
        .gateway
        .primary
        .judge(cfg, ing.has_gateway, obs.lb_gateway.as_ref(), now.mono);
    let primary = judge(
        cfg,
        &mut state.lb,
        &mut state.lb_controller,
        &mut state.controller_signal,
        (ing.has_health_url, ing.has_controller),
        &obs.lb_checks,
        obs.lb_controller,
        gw,
        now,
    );
    if primary.failure_seen {
        state.lb_clean_since = now.mono;
    }
    if primary.serving != state.lb_serving {
        state.lb_serving = primary.serving;
        let (kind, reason) = if primary.serving {
            state.lb_clean_since = now.mono;
            (
                ActionKind::LoadBalancerUp,
                "primary load balancer healthy again".to_string(),
            )
        } else {
            (
                ActionKind::LoadBalancerDown,
                down_reason(cfg, "", &primary, &state.lb, &state.gateway.primary),
            )
        };
        state.record(actions, now.wall, kind, reason, Affected::None);
    }
    let gw = state.gateway.backup.judge(
        cfg,
        ing.has_backup_gateway,
        obs.backup_gateway.as_ref(),
        now.mono,
    );
    let backup = judge(
        cfg,
        &mut state.backup_lb,
        &mut state.backup_controller,
        &mut state.backup_signal,
        (ing.has_backup_url, ing.has_backup_controller),
        &obs.backup_lb_checks,
        obs.backup_controller,
        gw,
        now,
    );
    if backup.serving != state.backup_serving {
        state.backup_serving = backup.serving;
        let (kind, reason) = if backup.serving {
            (
                ActionKind::BackupLoadBalancerUp,
                "backup load balancer healthy again".to_string(),
            )
        } else {
            (
                ActionKind::BackupLoadBalancerDown,
                down_reason(
                    cfg,
                    "backup ",
                    &backup,
                    &state.backup_lb,
                    &state.gateway.backup,
                ),
            )
        };
        state.record(actions, now.wall, kind, reason, Affected::None);
    }
}

/// Healthy/total of each pool. The primary total is the serving-eligible pool: endpoints
/// Kubernetes marks terminating are on their way out (a rollout, a scale-down) and count in
/// neither, so a planned change never reads as an outage.
#[inline]
fn count_health(state: &mut PolicyState) {
    let (mut ph, mut pt, mut eh, mut et) = (0, 0, 0, 0);
    for e in state.endpoints.iter().filter(|e| !e.terminating) {
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

/// Dry-run on: remember what is in effect. Dry-run off: go back to it and let this step decide
/// afresh from live health, so every change that follows is an action with its own reason.
/// Returns whether the published set must be recomputed.
#[inline]
fn apply_dry_run(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    now: Now,
    actions: &mut Vec<Action>,
) -> bool {
    match (cfg.dry_run, state.dry_run.is_some()) {
        (true, false) => {
            state.dry_run = Some(Box::new(state.capture_effective()));
            state.record(
                actions,
                now.wall,
                ActionKind::DryRunStarted,
                "dry-run on: decisions are reported, not carried out; managed objects stay as they are"
                    .to_string(),
                Affected::None,
            );
            false
        }
        (false, true) => {
            let fx = state.dry_run.take().expect("checked above");
            state.ingress = fx.ingress;
            state.emergency = fx.emergency;
            state.traffic_home_since = fx.traffic_home_since;
            // Rehearsed moves never moved the records: nothing drains.
            state.draining = None;
            state.budgets = fx.budgets;
            state.panic = fx.panic;
            for e in state.endpoints.iter_mut() {
                e.published = fx
                    .published
                    .iter()
                    .any(|(p, a)| *p == e.pool && *a == e.address);
            }
            state.published_snapshot = fx.published;
            state.record(
                actions,
                now.wall,
                ActionKind::DryRunEnded,
                "dry-run off: starting again from what is in effect and deciding afresh from live health"
                    .to_string(),
                Affected::None,
            );
            true
        }
        _ => false,
    }
}

/// Reports override changes and applies ForcePrimary/ForceBackup. Any override but Auto puts a
/// human in charge: flap budgets start afresh. Returns whether Freeze holds.
#[inline]
fn apply_override(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    now: Now,
    actions: &mut Vec<Action>,
) -> bool {
    let current = cfg.override_at(now.wall);
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
                    .is_some_and(|exp| now.wall >= exp);
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
        state.record(actions, now.wall, kind, reason, Affected::None);
        if current.is_some() {
            let was_frozen = state.frozen();
            state.budgets = Default::default();
            if was_frozen {
                state.record(
                    actions,
                    now.wall,
                    ActionKind::Unfrozen,
                    "an override is in charge: flap budgets start afresh".to_string(),
                    Affected::None,
                );
            }
        }
    }
    let Some(o) = current else {
        return false;
    };
    let target = match o.mode {
        OverrideMode::Freeze => return true,
        OverrideMode::Auto => return false,
        OverrideMode::ForcePrimary => IngressPhase::Primary,
        OverrideMode::ForceBackup => IngressPhase::FailedOver { since: now.mono },
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

/// A new value of the reset annotation clears every budget and freeze.
#[inline]
fn apply_budget_reset(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    now: Now,
    actions: &mut Vec<Action>,
) {
    if cfg.flap_budget_reset == state.budget_reset_seen {
        return;
    }
    state.budget_reset_seen = cfg.flap_budget_reset.clone();
    let Some(value) = &cfg.flap_budget_reset else {
        return;
    };
    state.budgets = Default::default();
    let reason = format!(
        "annotation {}={value}: every flap budget starts afresh",
        EngineConfig::RESET_ANNOTATION
    );
    state.record(
        actions,
        now.wall,
        ActionKind::FlapBudgetReset,
        reason,
        Affected::None,
    );
}

/// A frozen tier thaws once its held return move fits in the budget again: transitions left the
/// window, or a spec edit raised `maxTransitions`.
#[inline]
fn thaw_budgets(cfg: &EngineConfig, state: &mut PolicyState, now: Now, actions: &mut Vec<Action>) {
    for tier in Tier::ALL {
        let b = &mut state.budgets[tier as usize];
        b.prune(cfg.flap_window_ms, now.mono);
        let Some(frozen) = b.frozen else {
            continue;
        };
        if b.count() < cfg.flap_max_transitions {
            b.frozen = None;
            let reason = format!(
                "{} tier: {} of {} transitions in the last {}s, room for {} again; automatic decisions resume (frozen {}s)",
                tier.as_str(),
                b.count(),
                cfg.flap_max_transitions,
                cfg.flap_window_ms / 1000,
                frozen.held,
                (now.mono - frozen.since) / 1000
            );
            state.record(
                actions,
                now.wall,
                ActionKind::Unfrozen,
                reason,
                Affected::None,
            );
        }
    }
}

/// Asks a tier's budget for one counted transition.
///
/// A protective move (failing over away from a load balancer judged down, waking emergency
/// capacity) is never refused: the budget exists to stop oscillation, never to hold traffic on
/// a broken tier or to keep capacity asleep. It is still counted. A return move (failback,
/// release) is admitted only while the window has room for it; otherwise the tier freezes on
/// its safe side. So within any window a tier makes at most `maxTransitions` moves plus the
/// one protective move that is never refused.
fn admit(
    cfg: &EngineConfig,
    state: &mut PolicyState,
    tier: Tier,
    wanted: ActionKind,
    protective: bool,
    now: Now,
    actions: &mut Vec<Action>,
) -> bool {
    let b: &mut Budget = &mut state.budgets[tier as usize];
    b.prune(cfg.flap_window_ms, now.mono);
    if protective {
        b.transitions.push_back(now.mono);
        return true;
    }
    if b.frozen.is_some() {
        return false;
    }
    if b.count() < cfg.flap_max_transitions {
        b.transitions.push_back(now.mono);
        return true;
    }
    b.frozen = Some(Frozen {
        since: now.mono,
        held: wanted,
    });
    let reason = format!(
        "{} tier: {} transitions within {}s (budget {}); holding {} until the window has room",
        tier.as_str(),
        b.count(),
        cfg.flap_window_ms / 1000,
        cfg.flap_max_transitions,
        match tier {
            Tier::Emergency => "emergency capacity engaged instead of EmergencyRelease",
            Tier::Ingress => "traffic on the backup class instead of IngressFailback",
        }
    );
    state.record(
        actions,
        now.wall,
        ActionKind::FlapBudgetExhausted,
        reason,
        Affected::None,
    );
    false
}

/// The sustain windows follow the ratio at every step, whatever holds the machines (a Freeze
/// override, a frozen budget), so that no activation or release ever skips its window when the
/// hold ends.
#[inline]
fn update_sustain_windows(cfg: &EngineConfig, state: &mut PolicyState, now: Now) {
    if cfg.emergency.is_none() || !state.inventory_known {
        return;
    }
    let ratio = state.primary_ratio();
    if ratio < cfg.activate_below {
        state.below_since.get_or_insert(now.mono);
    } else {
        state.below_since = None;
    }
    if ratio >= cfg.deactivate_above {
        state.above_since.get_or_insert(now.mono);
    } else {
        state.above_since = None;
    }
}

#[inline]
fn run_emergency(cfg: &EngineConfig, state: &mut PolicyState, now: Now, actions: &mut Vec<Action>) {
    let Some(em) = cfg.emergency else {
        return;
    };
    if !state.inventory_known {
        return;
    }
    let ratio = state.primary_ratio();
    let sustained_low = state
        .below_since
        .is_some_and(|t| now.mono - t >= cfg.activate_for_ms);
    let sustained_high = state
        .above_since
        .is_some_and(|t| now.mono - t >= cfg.deactivate_for_ms);
    // Built only when an action needs it: this function runs every step.
    let ratio_text = |state: &PolicyState| {
        format!(
            "healthy ratio {:.2} ({}/{})",
            ratio, state.primary_healthy, state.primary_total
        )
    };

    match state.emergency {
        EmergencyPhase::Standby
        | EmergencyPhase::Releasing { .. }
        | EmergencyPhase::CoolingDown { .. }
            if sustained_low =>
        {
            admit(
                cfg,
                state,
                Tier::Emergency,
                ActionKind::EmergencyActivate,
                true,
                now,
                actions,
            );
            let from = state.desired_emergency_replicas(cfg).unwrap_or(0);
            state.emergency = EmergencyPhase::Active { since: now.mono };
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
                now.wall,
                ActionKind::EmergencyActivate,
                reason,
                affected,
            );
        }
        EmergencyPhase::Active { .. } if sustained_high => {
            if !admit(
                cfg,
                state,
                Tier::Emergency,
                ActionKind::EmergencyRelease,
                false,
                now,
                actions,
            ) {
                return;
            }
            let reason = format!(
                "{} at or above {} for {}s",
                ratio_text(state),
                cfg.deactivate_above,
                cfg.deactivate_for_ms / 1000
            );
            let (phase, reason) = match &cfg.emergency_ramp {
                Some(ramp) => (
                    EmergencyPhase::Releasing {
                        step: 0,
                        since: now.mono,
                    },
                    format!(
                        "{reason}; emergency weight ramps down {} ({}s a step), then the endpoints leave",
                        ramp_text(ramp),
                        ramp.step_ms / 1000
                    ),
                ),
                None => (after_release(em, now), reason),
            };
            state.emergency = phase;
            state.record(
                actions,
                now.wall,
                ActionKind::EmergencyRelease,
                reason,
                Affected::None,
            );
        }
        EmergencyPhase::Releasing { step, since } => {
            let Some(ramp) = &cfg.emergency_ramp else {
                // The ramp was removed from the spec mid-release: where it would have ended.
                state.emergency = after_release(em, now);
                return;
            };
            if now.mono - since < ramp.step_ms {
                return;
            }
            let (next, reason) = if step < ramp.last() {
                let to = ramp.percent(step + 1);
                (
                    EmergencyPhase::Releasing {
                        step: step + 1,
                        since: now.mono,
                    },
                    if step + 1 == ramp.last() {
                        format!(
                            "emergency weight {}% → 0% after {}s; the endpoints stay published one more step for requests in flight",
                            ramp.percent(step),
                            ramp.step_ms / 1000
                        )
                    } else {
                        format!(
                            "emergency weight {}% → {to}% after {}s",
                            ramp.percent(step),
                            ramp.step_ms / 1000
                        )
                    },
                )
            } else {
                (
                    after_release(em, now),
                    format!(
                        "emergency weight at 0% for {}s: the emergency endpoints leave the published set",
                        ramp.step_ms / 1000
                    ),
                )
            };
            state.emergency = next;
            state.record(
                actions,
                now.wall,
                ActionKind::EmergencyRampDown,
                reason,
                Affected::None,
            );
        }
        EmergencyPhase::CoolingDown { since } => {
            // Scale down last: only once traffic is fully back on the primary class, and a
            // whole cooldown after the later of the release and that return.
            let home = if cfg.ingress.is_some() {
                state.traffic_home_since
            } else {
                Some(since)
            };
            // Every tier back: traffic on the primary class and its load balancer judged up
            // (this step may be about to fail over).
            let Some(home) = home.filter(|_| state.lb_serving || cfg.ingress.is_none()) else {
                return;
            };
            if now.mono - since.max(home) < cfg.emergency_cooldown_ms {
                return;
            }
            state.emergency = EmergencyPhase::Standby;
            let reason = if cfg.ingress.is_some() && home > since {
                format!(
                    "primary pool healthy and all traffic back on the primary class for the {}s cooldown",
                    cfg.emergency_cooldown_ms / 1000
                )
            } else {
                format!(
                    "primary pool stayed healthy through the {}s cooldown",
                    cfg.emergency_cooldown_ms / 1000
                )
            };
            let affected = Affected::Replicas {
                from: em.active_replicas,
                to: em.standby_replicas,
            };
            state.record(
                actions,
                now.wall,
                ActionKind::EmergencyScaleDown,
                reason,
                affected,
            );
        }
        _ => {}
    }
}

/// Where emergency capacity goes once its endpoints leave: the cooldown when replicas are to
/// come down, else straight to standby.
fn after_release(em: super::config::EmergencyConfig, now: Now) -> EmergencyPhase {
    if em.has_deployment && em.active_replicas != em.standby_replicas {
        EmergencyPhase::CoolingDown { since: now.mono }
    } else {
        EmergencyPhase::Standby
    }
}

/// `to 50% now, then 25%, 0%`.
fn ramp_text(ramp: &super::config::EmergencyRamp) -> String {
    let mut parts: Vec<String> = ramp.steps.iter().map(|p| format!("{p}%")).collect();
    parts.push("0%".to_string());
    let first = parts.remove(0);
    if parts.is_empty() {
        format!("to {first} now")
    } else {
        format!("to {first} now, then {}", parts.join(", "))
    }
}

#[inline]
fn run_ingress(cfg: &EngineConfig, state: &mut PolicyState, now: Now, actions: &mut Vec<Action>) {
    if cfg.ingress.is_none() || cfg.override_at(now.wall).is_some() {
        return;
    }
    if let IngressPhase::FailingBack { step, .. } = state.ingress
        && step >= cfg.failback_steps.len()
    {
        // The steps were edited away mid-failback: finish it now rather than leave a weight
        // no step describes.
        let reason =
            "recovery.failbackSteps no longer has this step (spec edit); failback completes"
                .to_string();
        set_ingress(
            cfg,
            state,
            IngressPhase::Primary,
            ActionKind::FailbackComplete,
            reason,
            now,
            actions,
        );
        return;
    }
    let serving = state.lb_serving;
    let backup_serving = state.backup_serving;
    let held_for = now.mono - state.lb_clean_since;
    // Never move traffic to a tier judged down: with both down, traffic stays where it is.
    let hold = !serving && !backup_serving;
    if hold != state.failover_held {
        state.failover_held = hold;
        if hold && !matches!(state.ingress, IngressPhase::FailedOver { .. }) {
            state.record(
                actions,
                now.wall,
                ActionKind::FailoverHeld,
                "the primary load balancer is down and so is the backup: traffic stays where it is"
                    .to_string(),
                Affected::None,
            );
        }
    }
    // (target, action, reason, counted, protective)
    let wanted = match state.ingress {
        IngressPhase::Primary | IngressPhase::FailingBack { .. } if !serving && backup_serving => {
            Some((
                IngressPhase::FailedOver { since: now.mono },
                ActionKind::IngressFailover,
                "primary load balancer is down".to_string(),
                true,
                true,
            ))
        }
        // Away from a backup judged down, to a primary judged up: at once, no hold-down.
        IngressPhase::FailedOver { .. } | IngressPhase::FailingBack { .. }
            if serving && !backup_serving =>
        {
            Some((
                IngressPhase::Primary,
                ActionKind::IngressFailback,
                "backup load balancer is down and the primary is up: all traffic back on the primary class"
                    .to_string(),
                true,
                true,
            ))
        }
        IngressPhase::FailedOver { .. } if serving && held_for >= cfg.hold_down_ms => Some((
            if cfg.failback_steps.is_empty() {
                IngressPhase::Primary
            } else {
                IngressPhase::FailingBack {
                    step: 0,
                    since: now.mono,
                }
            },
            ActionKind::IngressFailback,
            format!(
                "primary load balancer healthy for {}s without a failed check (hold-down)",
                held_for / 1000
            ),
            true,
            false,
        )),
        IngressPhase::FailingBack { step, since } if serving && now.mono - since >= cfg.step_ms => {
            let next = if step + 1 < cfg.failback_steps.len() {
                (
                    IngressPhase::FailingBack {
                        step: step + 1,
                        since: now.mono,
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
                false,
            ))
        }
        _ => None,
    };
    let Some((target, kind, reason, counted, protective)) = wanted else {
        return;
    };
    if counted && !admit(cfg, state, Tier::Ingress, kind, protective, now, actions) {
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
    now: Now,
    actions: &mut Vec<Action>,
) {
    let from = state.desired_ingress(cfg);
    let dns_before = state.desired_dns_primary_percent(cfg);
    state.ingress = target;
    state.traffic_home_since = (target == IngressPhase::Primary).then_some(now.mono);
    let dns_after = state.desired_dns_primary_percent(cfg);
    if let (Some(dns), Some(before), Some(after)) = (cfg.dns, dns_before, dns_after) {
        // DNS answers left a tier entirely: resolvers keep handing it out for one TTL, so it
        // keeps serving that long, and traffic is not home before the backup's drain ends.
        let left = if before > 0 && after == 0 {
            Some(LbTier::Primary)
        } else if before < 100 && after == 100 {
            Some(LbTier::Backup)
        } else {
            None
        };
        if let Some(tier) = left {
            let until = now.mono + dns.ttl_ms;
            state.draining = Some(Drain { tier, until });
            if tier == LbTier::Backup {
                state.traffic_home_since = Some(until);
            }
        }
    }
    let to = state.desired_ingress(cfg);
    let affected = match (from, to) {
        (Some(from), Some(to)) => Affected::Ingress {
            from_class: from.active_class,
            to_class: to.active_class,
            primary_weight_percent: to.primary_weight_percent,
        },
        _ => Affected::None,
    };
    state.record(actions, now.wall, kind, reason, affected);
}

#[inline]
fn update_phase(
    state: &mut PolicyState,
    freeze_override: bool,
    now: Millis,
    actions: &mut Vec<Action>,
    first_action_of_step: usize,
) {
    let phase = if freeze_override || state.frozen() {
        Phase::Frozen
    } else if matches!(state.ingress, IngressPhase::FailedOver { .. }) {
        Phase::FailedOver
    } else if matches!(state.ingress, IngressPhase::FailingBack { .. })
        || matches!(
            state.emergency,
            EmergencyPhase::Releasing { .. } | EmergencyPhase::CoolingDown { .. }
        )
    {
        Phase::Recovering
    } else if matches!(state.emergency, EmergencyPhase::Active { .. }) {
        Phase::EmergencyActive
    } else if !state.inventory_known {
        Phase::Pending
    } else if state.panic
        || state.primary_healthy < state.primary_total
        || state.primary_total == 0
        || !state.lb_serving
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
        .find(|a| {
            !matches!(
                a.kind,
                ActionKind::PublishEndpoints
                    | ActionKind::EjectionLimited
                    | ActionKind::DryRunStarted
            )
        })
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
