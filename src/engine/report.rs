//! Renders the engine's state as the policy's status: phase, tiers, endpoints, conditions and
//! history. Pure, like the rest of the engine, so the controller, the simulator and the tests
//! show the same thing.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{
    EmergencyStatus, EndpointStatus, FailoverPolicyStatus, FlapBudgetStatus, InEffectStatus,
    LoadBalancerStatus, MAX_ENDPOINT_STATUSES, OverrideStatus, Phase, PublishedEndpoint,
    TierHealth, TransitionRecord, condition_types as ct, reasons,
};

use super::config::{EngineConfig, Millis, Now};
use super::facts::Pool;
use super::state::{EmergencyPhase, IngressPhase, PolicyState, Tier};

/// Converts engine time to a Kubernetes timestamp (second precision, as the API stores it).
pub fn time(ms: Millis) -> Time {
    let secs = ms.div_euclid(1000);
    Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The status for `state`. Conditions keep their `lastTransitionTime` from `previous` while
/// their status is unchanged, as Kubernetes conventions require.
pub fn render_status(
    cfg: &EngineConfig,
    state: &PolicyState,
    generation: Option<i64>,
    now: impl Into<Now>,
    previous: Option<&FailoverPolicyStatus>,
) -> FailoverPolicyStatus {
    let clock = now.into();
    let now = clock.wall;
    let ingress = state.desired_ingress(cfg);
    let mut status = FailoverPolicyStatus {
        observed_generation: generation,
        phase: state.phase,
        // What the engine knows to be in effect (the controller corrects it with what the
        // Ingresses carry); differs from the decision only in dry-run.
        active_class: state.in_effect_ingress(cfg).map(|i| i.active_class),
        decided_class: ingress.as_ref().map(|i| i.active_class.clone()),
        primary_weight_percent: ingress.as_ref().map(|i| i.primary_weight_percent),
        primary: Some(tier(state, Pool::Primary)),
        dns: state
            .desired_dns_primary_percent(cfg)
            .map(|primary_weight_percent| crate::api::DnsStatus {
                primary_weight_percent,
                draining_tier: state.draining.map(|d| d.tier.as_str().to_string()),
                // Rounded up to the second: a resume from it never shortens the drain.
                draining_until: state.draining.map(|d| time(clock.wall_of(d.until) + 999)),
            }),
        emergency: cfg.emergency.map(|_| emergency(cfg, state, clock)),
        load_balancer: cfg.ingress.as_ref().map(|_| {
            let shown = if state.lb_serving {
                state.lb.state
            } else {
                crate::api::EndpointState::Down
            };
            LoadBalancerStatus {
                state: shown,
                last_change: Some(time(state.lb.last_change)),
                // A failure is news only while the verdict is not Up: once the rise threshold
                // is met it is history (kept in status.history), not a current error.
                last_error: state
                    .lb
                    .last_error
                    .as_deref()
                    .filter(|_| shown != crate::api::EndpointState::Up)
                    .map(str::to_string),
            }
        }),
        backup_load_balancer: cfg
            .ingress
            .as_ref()
            .filter(|i| i.has_backup_url || i.has_backup_controller || i.has_backup_gateway)
            .map(|_| LoadBalancerStatus {
                state: if state.backup_serving {
                    state.backup_lb.state
                } else {
                    crate::api::EndpointState::Down
                },
                last_change: Some(time(state.backup_lb.last_change)),
                last_error: state.backup_lb.last_error.as_deref().map(str::to_string),
            }),
        endpoints: endpoints(state),
        r#override: cfg.override_.as_ref().map(|o| OverrideStatus {
            mode: o.mode,
            reason: o.reason.clone(),
            expires_at: o.expires_at.map(time),
            active: cfg.override_at(now).is_some(),
        }),
        transitions_in_window: Some(state.transitions_in_window(cfg, clock.mono)),
        flap_budgets: flap_budgets(cfg, state, clock),
        in_effect: state.dry_run.as_ref().map(|fx| {
            let ingress = state.in_effect_ingress(cfg);
            InEffectStatus {
                primary_weight_percent: ingress.as_ref().map(|i| i.primary_weight_percent),
                emergency_state: cfg.emergency.map(|_| fx.emergency.as_state()),
                published: fx
                    .published
                    .iter()
                    .take(MAX_ENDPOINT_STATUSES)
                    .map(|(pool, address)| PublishedEndpoint {
                        address: address.clone(),
                        pool: pool.as_str().to_string(),
                    })
                    .collect(),
            }
        }),
        flap_budget_reset: state.budget_reset_seen.clone(),
        conditions: Vec::new(),
        history: state
            .history
            .iter()
            .map(|h| TransitionRecord {
                time: time(h.at),
                action: h.action.to_string(),
                reason: h.reason.clone(),
            })
            .collect(),
        // Stamped by the controller as it writes (`controller::shards`).
        shard: None,
    };
    status.conditions = conditions(cfg, state, generation, clock, previous);
    status
}

/// Each tier's budget, for status (and for `resume`). Omitted while nothing is counted.
fn flap_budgets(cfg: &EngineConfig, state: &PolicyState, now: Now) -> Vec<FlapBudgetStatus> {
    Tier::ALL
        .into_iter()
        .filter_map(|tier| {
            let b = &state.budgets[tier as usize];
            let transitions: Vec<Time> = b
                .transitions
                .iter()
                .filter(|&&t| now.mono - t < cfg.flap_window_ms)
                .map(|&t| time(now.wall_of(t)))
                .collect();
            (!transitions.is_empty() || b.frozen.is_some()).then(|| FlapBudgetStatus {
                tier: tier.as_str().to_string(),
                transitions,
                frozen_since: b.frozen.map(|f| time(now.wall_of(f.since))),
                held: b.frozen.map(|f| f.held.as_str().to_string()),
            })
        })
        .collect()
}

fn tier(state: &PolicyState, pool: Pool) -> TierHealth {
    let (healthy, total) = match pool {
        Pool::Primary => (state.primary_healthy, state.primary_total),
        Pool::Emergency => (state.emergency_healthy, state.emergency_total),
    };
    let published = state
        .endpoints
        .iter()
        .filter(|e| e.pool == pool && e.published)
        .count() as u32;
    TierHealth {
        healthy,
        total,
        ratio: if total == 0 {
            0.0
        } else {
            (f64::from(healthy) / f64::from(total) * 1000.0).round() / 1000.0
        },
        published,
        summary: format!("{healthy}/{total}"),
        panic: pool == Pool::Primary && state.panic,
    }
}

fn emergency(cfg: &EngineConfig, state: &PolicyState, clock: Now) -> EmergencyStatus {
    let desired = state.desired_emergency_replicas(cfg);
    let active = !matches!(state.emergency, EmergencyPhase::Standby);
    let weight = state.desired_emergency_weight_percent(cfg);
    let summary = match state.emergency {
        EmergencyPhase::Standby => "Standby".to_string(),
        EmergencyPhase::Active { .. }
        | EmergencyPhase::Releasing { .. }
        | EmergencyPhase::CoolingDown { .. } => {
            let label = match (state.emergency, weight) {
                (EmergencyPhase::Active { .. }, _) => "Active".to_string(),
                (EmergencyPhase::Releasing { .. }, Some(w)) => format!("Releasing {w}%"),
                (EmergencyPhase::Releasing { .. }, None) => "Releasing".to_string(),
                _ => "CoolingDown".to_string(),
            };
            match desired {
                Some(d) => format!(
                    "{label} {}/{d}",
                    state.emergency_ready_replicas.unwrap_or(0)
                ),
                None => format!(
                    "{label} {}/{}",
                    state.emergency_healthy, state.emergency_total
                ),
            }
        }
    };
    EmergencyStatus {
        active: matches!(state.emergency, EmergencyPhase::Active { .. }),
        state: Some(state.emergency.as_state()),
        weight_percent: weight,
        // Rounded up to the second, like drainingUntil.
        next_step_at: match (state.emergency, &cfg.emergency_ramp) {
            (EmergencyPhase::Releasing { since, .. }, Some(ramp)) => {
                Some(time(clock.wall_of(since + ramp.step_ms) + 999))
            }
            _ => None,
        },
        desired_replicas: desired,
        ready_replicas: state.emergency_ready_replicas,
        health: (state.emergency_total > 0 || active).then(|| tier(state, Pool::Emergency)),
        summary,
    }
}

/// Unhealthy first, then by pool and address; at most `MAX_ENDPOINT_STATUSES`.
fn endpoints(state: &PolicyState) -> Vec<EndpointStatus> {
    let mut list: Vec<&super::state::EndpointEntry> = state.endpoints.iter().collect();
    list.sort_by_key(|e| (e.healthy(), e.pool, e.address.as_str()));
    list.truncate(MAX_ENDPOINT_STATUSES);
    list.into_iter()
        .map(|e| EndpointStatus {
            address: e.address.clone(),
            pool: e.pool.as_str().to_string(),
            state: e.health.state,
            ready: e.ready,
            published: e.published,
            last_change: Some(time(e.health.last_change)),
            last_error: e.health.last_error.as_deref().map(str::to_string),
        })
        .collect()
}

fn conditions(
    cfg: &EngineConfig,
    state: &PolicyState,
    generation: Option<i64>,
    clock: Now,
    previous: Option<&FailoverPolicyStatus>,
) -> Vec<Condition> {
    let now = clock.wall;
    let make = |type_: &str, on: bool, reason: &str, message: String| {
        let status = if on { "True" } else { "False" };
        let last = previous
            .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| time(now));
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: last,
        }
    };
    [
        (ct::READY, ready_verdict(cfg)),
        (ct::DEGRADED, degraded_verdict(state)),
        (ct::FAILOVER_ACTIVE, failover_verdict(cfg, state, now)),
        (ct::EMERGENCY_ACTIVE, emergency_verdict(cfg, state)),
        (ct::FROZEN, frozen_verdict(cfg, state, now)),
    ]
    .into_iter()
    .map(|(type_, v)| make(type_, v.on, v.reason, v.message))
    .collect()
}

/// What one condition says: whether it holds, why (a constant of [`reasons`]) and in words.
struct Verdict {
    on: bool,
    reason: &'static str,
    message: String,
}

/// `Ready`: the policy is enforced (or rehearsed in dry-run).
fn ready_verdict(cfg: &EngineConfig) -> Verdict {
    let (reason, message) = if cfg.dry_run {
        (
            reasons::DRY_RUN,
            "deciding and reporting only; no managed object is changed".to_string(),
        )
    } else {
        (reasons::RECONCILED, "policy is enforced".to_string())
    };
    Verdict {
        on: true,
        reason,
        message,
    }
}

/// `Degraded`: some primary backend fails its checks, or fail-open panics.
fn degraded_verdict(state: &PolicyState) -> Verdict {
    let degraded = state.panic || state.primary_healthy < state.primary_total;
    let (reason, message) = if state.panic {
        (
            reasons::PANIC_FAIL_OPEN,
            "no backend passes its checks; fail-open publishes all of them".to_string(),
        )
    } else if degraded {
        (
            reasons::BACKENDS_DOWN,
            format!(
                "{}/{} primary backends healthy",
                state.primary_healthy, state.primary_total
            ),
        )
    } else {
        (
            reasons::ALL_HEALTHY,
            "all primary backends healthy".to_string(),
        )
    };
    Verdict {
        on: degraded,
        reason,
        message,
    }
}

/// `FailoverActive`: traffic is not (all) on the primary ingress class.
fn failover_verdict(cfg: &EngineConfig, state: &PolicyState, now: Millis) -> Verdict {
    let failover = !matches!(state.ingress, IngressPhase::Primary);
    let (reason, message) = match state.ingress {
        IngressPhase::Primary if !state.lb_serving && !state.backup_serving => (
            reasons::BOTH_TIERS_DOWN,
            "primary and backup load balancers are both judged down: traffic stays on the primary class"
                .to_string(),
        ),
        IngressPhase::Primary if state.lb_serving => (
            reasons::PRIMARY_LB_HEALTHY,
            "traffic on the primary ingress class".to_string(),
        ),
        IngressPhase::Primary => (
            reasons::OVERRIDE,
            "primary load balancer down but traffic held on the primary class".to_string(),
        ),
        IngressPhase::FailedOver { .. } if !state.lb_serving && !state.backup_serving => (
            reasons::BOTH_TIERS_DOWN,
            "primary and backup load balancers are both judged down: traffic stays on the backup class"
                .to_string(),
        ),
        IngressPhase::FailedOver { .. } => (
            if cfg.override_at(now).is_some() {
                reasons::OVERRIDE
            } else {
                reasons::PRIMARY_LB_DOWN
            },
            "traffic on the backup ingress class".to_string(),
        ),
        IngressPhase::FailingBack { .. } => (
            reasons::GRADUAL_FAILBACK,
            format!(
                "{}% of traffic back on the primary class",
                state
                    .desired_ingress(cfg)
                    .map_or(100, |i| i.primary_weight_percent)
            ),
        ),
    };
    Verdict {
        on: failover,
        reason,
        message,
    }
}

/// `EmergencyActive`: emergency capacity is awake (or cooling down).
fn emergency_verdict(cfg: &EngineConfig, state: &PolicyState) -> Verdict {
    let em_active = !matches!(state.emergency, EmergencyPhase::Standby);
    let (reason, message) = match state.emergency {
        EmergencyPhase::Standby => (
            reasons::INACTIVE,
            "emergency capacity at standby".to_string(),
        ),
        EmergencyPhase::Active { .. } => (
            reasons::HEALTHY_RATIO_LOW,
            format!(
                "primary healthy ratio {:.2} below {}",
                state.primary_ratio(),
                cfg.activate_below
            ),
        ),
        EmergencyPhase::Releasing { step, .. } => (
            reasons::RELEASING,
            format!(
                "primary recovered; emergency weight ramping down ({}% of its weight), then the endpoints leave and the cooldown begins",
                cfg.emergency_ramp.as_ref().map_or(0, |r| r.percent(step))
            ),
        ),
        EmergencyPhase::CoolingDown { .. } => (
            reasons::COOLING_DOWN,
            "primary recovered; emergency capacity scales down after the cooldown".to_string(),
        ),
    };
    Verdict {
        on: em_active,
        reason,
        message,
    }
}

/// `Frozen`: a flap budget is exhausted, or an override freezes the policy.
fn frozen_verdict(cfg: &EngineConfig, state: &PolicyState, now: Millis) -> Verdict {
    let freeze_override = cfg
        .override_at(now)
        .is_some_and(|o| o.mode == crate::api::OverrideMode::Freeze);
    let frozen = state.frozen() || freeze_override;
    let (reason, message) = if state.frozen() {
        let tiers: Vec<String> = Tier::ALL
            .into_iter()
            .filter_map(|tier| {
                let b = &state.budgets[tier as usize];
                b.frozen.map(|f| {
                    format!(
                        "{} tier holds back {} ({} of {} transitions in the last {}s)",
                        tier.as_str(),
                        f.held,
                        b.count(),
                        cfg.flap_max_transitions,
                        cfg.flap_window_ms / 1000
                    )
                })
            })
            .collect();
        (
            reasons::FLAP_BUDGET_EXHAUSTED,
            format!(
                "{}; it thaws when the window has room, when maxTransitions is raised, on an override, or with the annotation {}",
                tiers.join("; "),
                EngineConfig::RESET_ANNOTATION
            ),
        )
    } else if freeze_override {
        (reasons::OVERRIDE, "override Freeze in force".to_string())
    } else {
        (
            reasons::NOT_FROZEN,
            "automatic decisions active".to_string(),
        )
    };
    Verdict {
        on: frozen,
        reason,
        message,
    }
}

/// A policy that was valid before and whose new generation is not: the status keeps every
/// decided field (the engine holds its last valid decisions) and says why with
/// Ready=False/InvalidSpec naming the field. `observedGeneration` is the rejected generation.
pub fn mark_invalid(
    status: &mut FailoverPolicyStatus,
    generation: Option<i64>,
    message: &str,
    now: Millis,
    previous: Option<&FailoverPolicyStatus>,
) {
    let fresh = invalid_status(generation, message, now, previous);
    status.observed_generation = generation;
    status.phase = Phase::Invalid;
    let ready = fresh
        .conditions
        .into_iter()
        .next()
        .expect("invalid_status sets Ready");
    match status.conditions.iter_mut().find(|c| c.type_ == ct::READY) {
        Some(c) => *c = ready,
        None => status.conditions.insert(0, ready),
    }
    for c in &mut status.conditions {
        c.observed_generation = generation;
    }
}

/// The status of a policy whose spec failed validation before any valid generation was seen:
/// Ready=False/InvalidSpec naming the field, nothing else decided.
pub fn invalid_status(
    generation: Option<i64>,
    message: &str,
    now: Millis,
    previous: Option<&FailoverPolicyStatus>,
) -> FailoverPolicyStatus {
    let last = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == ct::READY))
        .filter(|c| c.status == "False" && c.reason == reasons::INVALID_SPEC)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| time(now));
    FailoverPolicyStatus {
        observed_generation: generation,
        phase: Phase::Invalid,
        conditions: vec![Condition {
            type_: ct::READY.to_string(),
            status: "False".to_string(),
            reason: reasons::INVALID_SPEC.to_string(),
            message: message.to_string(),
            observed_generation: generation,
            last_transition_time: last,
        }],
        ..Default::default()
    }
}
