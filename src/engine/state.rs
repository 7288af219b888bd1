//! The engine's memory between steps, and the desired state read off it.
//!
//! Everything the controller must persist to survive a restart is reconstructible from the
//! policy's status (see [`PolicyState::resume`]), so a restarted operator converges to the same
//! decisions instead of re-deciding from a blank slate.

use std::collections::VecDeque;

use crate::api::{EndpointState, FailoverPolicyStatus, MAX_HISTORY, OverrideMode, Phase};

use super::config::{EngineConfig, Millis};
use super::facts::Pool;
use super::risefall::RiseFall;

/// One known endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointEntry {
    pub address: String,
    pub pool: Pool,
    /// Kubernetes readiness (true for static addresses).
    pub ready: bool,
    pub health: RiseFall,
    /// Whether it is in the published set the engine last decided.
    pub published: bool,
}

impl EndpointEntry {
    /// Passing both Kubernetes readiness and the health checks.
    pub fn healthy(&self) -> bool {
        self.ready && self.health.state.serving()
    }
}

/// Emergency capacity's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmergencyPhase {
    /// At standby replicas; emergency endpoints unpublished.
    Standby,
    /// At active replicas; emergency endpoints published once ready and healthy.
    Active { since: Millis },
    /// Released: endpoints unpublished, replicas still up until the cooldown ends.
    CoolingDown { since: Millis },
}

/// Where ingress traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngressPhase {
    Primary,
    FailedOver {
        since: Millis,
    },
    /// Gradual failback at `failback_steps[step]` percent since `since`.
    FailingBack {
        step: usize,
        since: Millis,
    },
}

/// One remembered transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub at: Millis,
    pub action: &'static str,
    pub reason: String,
}

/// The desired state of the ingress tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressDesired {
    /// The class that is authoritative: the primary class only once the failback completed.
    pub active_class: String,
    /// Percent of traffic the primary class should carry.
    pub primary_weight_percent: u32,
}

/// Everything the engine remembers about one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyState {
    pub(crate) initialized: bool,
    /// Sorted by (pool, address) for binary search.
    pub endpoints: Vec<EndpointEntry>,
    pub(crate) seen_inventory: Option<u64>,
    pub inventory_known: bool,
    /// Rise/fall verdict over the primary load balancer's health URL.
    pub lb: RiseFall,
    pub lb_controller_ready: Option<bool>,
    /// Combined verdict on the primary load balancer.
    pub lb_serving: bool,
    pub(crate) lb_serving_since: Millis,
    pub emergency: EmergencyPhase,
    pub(crate) below_since: Option<Millis>,
    pub(crate) above_since: Option<Millis>,
    pub emergency_ready_replicas: Option<i32>,
    pub ingress: IngressPhase,
    /// Fail-open is publishing failing endpoints because none pass.
    pub panic: bool,
    pub frozen_since: Option<Millis>,
    /// Times of counted transitions within the flap window (oldest first).
    pub(crate) transitions: VecDeque<Millis>,
    /// The override last reported as applied.
    pub(crate) override_seen: Option<(OverrideMode, Option<Millis>)>,
    pub phase: Phase,
    pub history: VecDeque<HistoryEntry>,
    /// The published set as last reported, to detect changes (including vanished endpoints).
    pub(crate) published_snapshot: Vec<(Pool, String)>,
    pub primary_healthy: u32,
    pub primary_total: u32,
    pub emergency_healthy: u32,
    pub emergency_total: u32,
}

impl Default for PolicyState {
    fn default() -> Self {
        PolicyState::new()
    }
}

impl PolicyState {
    pub fn new() -> Self {
        PolicyState {
            initialized: false,
            endpoints: Vec::new(),
            seen_inventory: None,
            inventory_known: false,
            lb: RiseFall::up(0),
            lb_controller_ready: None,
            lb_serving: true,
            lb_serving_since: 0,
            emergency: EmergencyPhase::Standby,
            below_since: None,
            above_since: None,
            emergency_ready_replicas: None,
            ingress: IngressPhase::Primary,
            panic: false,
            frozen_since: None,
            transitions: VecDeque::new(),
            override_seen: None,
            phase: Phase::Pending,
            history: VecDeque::new(),
            published_snapshot: Vec::new(),
            primary_healthy: 0,
            primary_total: 0,
            emergency_healthy: 0,
            emergency_total: 0,
        }
    }

    /// Rebuilds the engine's memory from a persisted status after an operator restart.
    ///
    /// Conservative where status is silent: hold-down and cooldown timers restart from `now`
    /// (a restart never shortens a wait), endpoints not listed start Up, and an endpoint listed
    /// Down stays out until it earns `successThreshold` good checks.
    pub fn resume(cfg: &EngineConfig, status: &FailoverPolicyStatus, now: Millis) -> Self {
        let mut s = PolicyState::new();
        s.initialized = true;
        s.lb_serving_since = now;
        s.phase = status.phase;
        if let Some(lb) = &status.load_balancer {
            s.lb.state = lb.state;
            s.lb.last_change = lb
                .last_change
                .as_ref()
                .map_or(now, |t| t.0.as_millisecond());
            s.lb_serving = lb.state.serving();
        }
        if let Some(em) = &status.emergency
            && em.active
        {
            s.emergency = EmergencyPhase::Active { since: now };
        } else if status.phase == Phase::Recovering
            && cfg.emergency.is_some_and(|e| e.has_deployment)
            && status
                .emergency
                .as_ref()
                .and_then(|e| e.desired_replicas)
                .zip(cfg.emergency.map(|e| e.standby_replicas))
                .is_some_and(|(desired, standby)| desired > standby)
        {
            s.emergency = EmergencyPhase::CoolingDown { since: now };
        }
        if let Some(ing) = &cfg.ingress {
            let weight = status.primary_weight_percent.unwrap_or(100);
            let on_backup = status.active_class.as_deref() == Some(ing.backup_class.as_str());
            s.ingress = if weight >= 100 && !on_backup {
                IngressPhase::Primary
            } else if weight == 0 || cfg.failback_steps.is_empty() {
                IngressPhase::FailedOver { since: now }
            } else {
                let step = cfg
                    .failback_steps
                    .iter()
                    .position(|&p| p >= weight)
                    .unwrap_or(cfg.failback_steps.len() - 1);
                IngressPhase::FailingBack { step, since: now }
            };
        }
        for ep in &status.endpoints {
            let pool = if ep.pool == Pool::Emergency.as_str() {
                Pool::Emergency
            } else {
                Pool::Primary
            };
            let mut health = RiseFall::up(now);
            health.state = match ep.state {
                EndpointState::Rising => EndpointState::Down,
                EndpointState::Falling => EndpointState::Up,
                other => other,
            };
            if let Some(t) = &ep.last_change {
                health.last_change = t.0.as_millisecond();
            }
            health.last_error = ep.last_error.as_deref().map(Into::into);
            s.endpoints.push(EndpointEntry {
                address: ep.address.clone(),
                pool,
                ready: ep.ready,
                health,
                published: ep.published,
            });
        }
        s.endpoints
            .sort_by(|a, b| (a.pool, &a.address).cmp(&(b.pool, &b.address)));
        s.endpoints
            .dedup_by(|a, b| a.pool == b.pool && a.address == b.address);
        s.published_snapshot = s
            .endpoints
            .iter()
            .filter(|e| e.published)
            .map(|e| (e.pool, e.address.clone()))
            .collect();
        for rec in &status.history {
            let at = rec.time.0.as_millisecond();
            if counted_action_name(&rec.action) && now - at < cfg.flap_window_ms {
                s.transitions.push_back(at);
            }
            if let Some(kind) = super::actions::ActionKind::from_name(&rec.action) {
                s.remember(at, kind.as_str(), &rec.reason);
            }
        }
        s.override_seen = cfg.override_at(now).map(|o| (o.mode, o.expires_at));
        let frozen = status.conditions.iter().any(|c| {
            c.type_ == crate::api::condition_types::FROZEN
                && c.status == "True"
                && c.reason == crate::api::reasons::FLAP_BUDGET_EXHAUSTED
        });
        if frozen {
            s.frozen_since = Some(now);
        }
        s
    }

    /// Endpoints the managed EndpointSlice should list.
    pub fn published(&self) -> impl Iterator<Item = &EndpointEntry> {
        self.endpoints.iter().filter(|e| e.published)
    }

    pub fn published_count(&self) -> usize {
        self.endpoints.iter().filter(|e| e.published).count()
    }

    /// Replicas the emergency Deployment should have; None when there is no Deployment.
    pub fn desired_emergency_replicas(&self, cfg: &EngineConfig) -> Option<i32> {
        let em = cfg.emergency.filter(|e| e.has_deployment)?;
        Some(
            match self.emergency {
                EmergencyPhase::Standby => em.standby_replicas,
                EmergencyPhase::Active { .. } | EmergencyPhase::CoolingDown { .. } => {
                    em.active_replicas
                }
            }
            .clamp(0, em.max_replicas),
        )
    }

    /// Where ingress traffic should go; None when the policy manages no ingress tier.
    pub fn desired_ingress(&self, cfg: &EngineConfig) -> Option<IngressDesired> {
        let ing = cfg.ingress.as_ref()?;
        Some(match self.ingress {
            IngressPhase::Primary => IngressDesired {
                active_class: ing.primary_class.clone(),
                primary_weight_percent: 100,
            },
            IngressPhase::FailedOver { .. } => IngressDesired {
                active_class: ing.backup_class.clone(),
                primary_weight_percent: 0,
            },
            IngressPhase::FailingBack { step, .. } => IngressDesired {
                active_class: ing.backup_class.clone(),
                primary_weight_percent: cfg.failback_steps.get(step).copied().unwrap_or(100),
            },
        })
    }

    /// healthy / total of the primary pool; 0 for an empty pool (no capacity is an outage).
    pub fn primary_ratio(&self) -> f64 {
        if self.primary_total == 0 {
            0.0
        } else {
            f64::from(self.primary_healthy) / f64::from(self.primary_total)
        }
    }

    /// Counted transitions within the flap window ending at `now`.
    pub fn transitions_in_window(&self, cfg: &EngineConfig, now: Millis) -> u32 {
        self.transitions
            .iter()
            .filter(|&&t| now - t < cfg.flap_window_ms)
            .count() as u32
    }

    /// Records a decision: in the returned actions and in the bounded history.
    pub(crate) fn record(
        &mut self,
        actions: &mut Vec<super::actions::Action>,
        at: Millis,
        kind: super::actions::ActionKind,
        reason: String,
        affected: super::actions::Affected,
    ) {
        self.remember(at, kind.as_str(), &reason);
        actions.push(super::actions::Action {
            at,
            kind,
            reason,
            affected,
        });
    }

    pub(crate) fn remember(&mut self, at: Millis, action: &'static str, reason: &str) {
        if self.history.len() == MAX_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(HistoryEntry {
            at,
            action,
            reason: reason.to_string(),
        });
    }

    pub(crate) fn find(&self, pool: Pool, address: &str) -> Option<usize> {
        self.endpoints
            .binary_search_by(|e| (e.pool, e.address.as_str()).cmp(&(pool, address)))
            .ok()
    }
}

/// Whether a history record names a transition counted against the flap budget.
pub(crate) fn counted_action_name(name: &str) -> bool {
    super::actions::ActionKind::from_name(name).is_some_and(|k| k.counts_against_flap_budget())
}
