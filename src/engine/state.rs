//! The engine's memory between steps, and the desired state read off it.
//!
//! Everything the controller must persist to survive a restart is reconstructible from the
//! policy's status (see [`PolicyState::resume`]), so a restarted operator converges to the same
//! decisions instead of re-deciding from a blank slate.

use std::collections::VecDeque;

use crate::api::{
    EmergencyState, EndpointState, FailoverPolicyStatus, MAX_HISTORY, OverrideMode, Phase,
};

use super::actions::ActionKind;
use super::config::{EngineConfig, Millis, Now};
use super::facts::{DeploymentFact, Pool};
use super::risefall::RiseFall;
use super::step::outcome_parts;
use crate::health::CheckOutcome;

/// One known endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointEntry {
    pub address: String,
    pub pool: Pool,
    /// Kubernetes readiness (true for static addresses).
    pub ready: bool,
    /// Kubernetes is removing it: never published, not counted in the pool's ratio.
    pub terminating: bool,
    pub health: RiseFall,
    /// Whether it is in the published set the engine last decided.
    pub published: bool,
}

impl EndpointEntry {
    /// Passing both Kubernetes readiness and the health checks, and not on its way out.
    pub fn healthy(&self) -> bool {
        self.ready && !self.terminating && self.health.state.serving()
    }
}

/// Emergency capacity's lifecycle. Times are monotonic (see [`super::config::Now`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmergencyPhase {
    /// At standby replicas; emergency endpoints unpublished.
    Standby,
    /// At active replicas; emergency endpoints published once ready and healthy.
    Active { since: Millis },
    /// Released with a weight ramp (`spec.gateway.backendWeights`): endpoints still published,
    /// their weight at ramp step `step` since `since`, replicas still up.
    Releasing { step: usize, since: Millis },
    /// Released: endpoints unpublished, replicas still up until the cooldown ends.
    CoolingDown { since: Millis },
}

impl EmergencyPhase {
    pub fn as_state(self) -> EmergencyState {
        match self {
            EmergencyPhase::Standby => EmergencyState::Standby,
            EmergencyPhase::Active { .. } => EmergencyState::Active,
            EmergencyPhase::Releasing { .. } => EmergencyState::Releasing,
            EmergencyPhase::CoolingDown { .. } => EmergencyState::CoolingDown,
        }
    }
}

/// Where ingress traffic goes. Times are monotonic.
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

/// A load-balancer tier, as DNS records point at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbTier {
    Primary,
    Backup,
}

impl LbTier {
    pub fn as_str(self) -> &'static str {
        match self {
            LbTier::Primary => "primary",
            LbTier::Backup => "backup",
        }
    }

    pub fn from_name(name: &str) -> Option<LbTier> {
        [LbTier::Primary, LbTier::Backup]
            .into_iter()
            .find(|t| t.as_str() == name)
    }
}

/// After DNS records moved away from a tier: resolvers may hand out the old answer for one
/// TTL, so that tier keeps serving until `until` (monotonic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    pub tier: LbTier,
    pub until: Millis,
}

/// The two tiers whose moves the flap budget limits, each with a budget of its own: flapping
/// of one never blocks the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Emergency = 0,
    Ingress = 1,
}

impl Tier {
    pub const ALL: [Tier; 2] = [Tier::Emergency, Tier::Ingress];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Emergency => "emergency",
            Tier::Ingress => "ingress",
        }
    }

    pub fn from_name(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// A tier held on its safe side because a return move found no room in the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frozen {
    /// Monotonic.
    pub since: Millis,
    /// The move held back.
    pub held: ActionKind,
}

/// One tier's flap budget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Budget {
    /// Monotonic times of the counted transitions still in the window, oldest first.
    pub(crate) transitions: VecDeque<Millis>,
    pub frozen: Option<Frozen>,
}

impl Budget {
    pub(crate) fn prune(&mut self, window_ms: Millis, now: Millis) {
        while self
            .transitions
            .front()
            .is_some_and(|&t| now - t >= window_ms)
        {
            self.transitions.pop_front();
        }
    }

    pub fn count(&self) -> u32 {
        self.transitions.len() as u32
    }
}

/// A signal without checks of its own (a Deployment's readiness), debounced in time with the
/// same fall/rise a probe gets: it flips only once the contrary fact has held that long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    pub serving: bool,
    /// Monotonic time since which the facts have contradicted `serving`.
    pub contrary_since: Option<Millis>,
}

impl Debounce {
    pub const SERVING: Debounce = Debounce {
        serving: true,
        contrary_since: None,
    };

    /// Feeds the current fact; returns whether the verdict flipped.
    pub(crate) fn update(
        &mut self,
        ok: bool,
        now: Millis,
        fall_ms: Millis,
        rise_ms: Millis,
    ) -> bool {
        if ok == self.serving {
            self.contrary_since = None;
            return false;
        }
        let since = *self.contrary_since.get_or_insert(now);
        let needed = if self.serving { fall_ms } else { rise_ms };
        if now - since >= needed {
            self.serving = ok;
            self.contrary_since = None;
            true
        } else {
            false
        }
    }
}

/// What is in effect on the managed objects while dry-run decides without acting: the machines
/// as they were when dry-run began. Leaving dry-run restores them, then decides afresh.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    pub ingress: IngressPhase,
    pub emergency: EmergencyPhase,
    pub(crate) traffic_home_since: Option<Millis>,
    pub(crate) budgets: [Budget; 2],
    pub published: Vec<(Pool, String)>,
    pub panic: bool,
}

/// One remembered transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Wall-clock time.
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
    /// The last known fact about the primary ingress controller Deployment.
    pub lb_controller: Option<DeploymentFact>,
    /// The debounced verdict on that Deployment.
    pub controller_signal: Debounce,
    /// Combined verdict on the primary load balancer.
    pub lb_serving: bool,
    /// Monotonic time since which the primary tier has served without a single failed check
    /// (the hold-down counts from here).
    pub(crate) lb_clean_since: Millis,
    /// The backup load balancer, judged like the primary (`ingress.backupHealth`).
    pub backup_lb: RiseFall,
    pub backup_controller: Option<DeploymentFact>,
    pub backup_signal: Debounce,
    pub backup_serving: bool,
    /// The Gateways' own status as signals of each side (`spec.gateway`).
    pub gateway: super::gateway::GatewaySignals,
    /// A failover is wanted but the backup is down too (reported once per episode).
    pub(crate) failover_held: bool,
    pub emergency: EmergencyPhase,
    pub(crate) below_since: Option<Millis>,
    pub(crate) above_since: Option<Millis>,
    pub emergency_ready_replicas: Option<i32>,
    pub ingress: IngressPhase,
    /// Monotonic time since which all traffic has been on the primary class; None while any
    /// is on the backup. Emergency capacity scales down only a cooldown after this.
    pub(crate) traffic_home_since: Option<Millis>,
    /// Fail-open is publishing every candidate (the healthy share is below the threshold).
    pub panic: bool,
    /// The tier DNS records last left, kept serving for one TTL (`spec.dns` only).
    pub draining: Option<Drain>,
    /// Failing primary endpoints kept published by `maxEjectionPercent`.
    pub kept_by_max_ejection: Vec<String>,
    /// Per tier, indexed by [`Tier`].
    pub budgets: [Budget; 2],
    /// The reset annotation value last acted upon.
    pub(crate) budget_reset_seen: Option<String>,
    /// The override last reported as applied.
    pub(crate) override_seen: Option<(OverrideMode, Option<Millis>)>,
    /// Some while dry-run is on: what is really in effect.
    pub dry_run: Option<Box<Effective>>,
    /// Set by [`PolicyState::config_changed`]: the replicas and ingress in effect under the
    /// previous config, so the next step can say what a spec edit changed.
    pub(crate) edited: Option<(Option<i32>, Option<IngressDesired>)>,
    /// The published set must be recomputed as soon as the inventory is known (set by a step
    /// that wanted to while it was not, and by `resume`).
    pub(crate) republish: bool,
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
            lb_controller: None,
            controller_signal: Debounce::SERVING,
            lb_serving: true,
            lb_clean_since: 0,
            backup_lb: RiseFall::up(0),
            backup_controller: None,
            backup_signal: Debounce::SERVING,
            backup_serving: true,
            gateway: Default::default(),
            failover_held: false,
            emergency: EmergencyPhase::Standby,
            below_since: None,
            above_since: None,
            emergency_ready_replicas: None,
            ingress: IngressPhase::Primary,
            traffic_home_since: None,
            panic: false,
            draining: None,
            kept_by_max_ejection: Vec::new(),
            budgets: Default::default(),
            budget_reset_seen: None,
            override_seen: None,
            dry_run: None,
            edited: None,
            republish: false,
            phase: Phase::Pending,
            history: VecDeque::new(),
            published_snapshot: Vec::new(),
            primary_healthy: 0,
            primary_total: 0,
            emergency_healthy: 0,
            emergency_total: 0,
        }
    }

    /// Rebuilds the engine's memory from a persisted status after an operator restart or a
    /// leadership change.
    ///
    /// Every machine is rebuilt from its own field, never from the phase (the phase shows only
    /// the most pressing of them): the ingress side from `activeClass`/`primaryWeightPercent`,
    /// emergency capacity from `emergency.state`, each flap budget from `flapBudgets`, panic
    /// from `primary.panic`, dry-run's in-effect state from `inEffect`. Conservative where
    /// status is silent: hold-down, cooldown, dwell and sustain windows restart from `now` (a
    /// restart never shortens a wait), endpoints not listed start as new ones, and an endpoint
    /// listed Down stays out until it earns `successThreshold` good checks.
    pub fn resume(cfg: &EngineConfig, status: &FailoverPolicyStatus, now: impl Into<Now>) -> Self {
        let now = now.into();
        let mut s = PolicyState::new();
        s.initialized = true;
        s.republish = true;
        s.lb_clean_since = now.mono;
        s.phase = status.phase;
        if let Some(lb) = &status.load_balancer {
            s.lb.state = lb.state;
            s.lb.last_change = lb
                .last_change
                .as_ref()
                .map_or(now.wall, |t| t.0.as_millisecond());
            s.lb.last_error = lb.last_error.as_deref().map(Into::into);
            s.lb_serving = lb.state.serving();
        }
        if let Some(lb) = &status.backup_load_balancer {
            s.backup_lb.state = lb.state;
            s.backup_lb.last_change = lb
                .last_change
                .as_ref()
                .map_or(now.wall, |t| t.0.as_millisecond());
            s.backup_lb.last_error = lb.last_error.as_deref().map(Into::into);
            s.backup_serving = lb.state.serving();
            s.backup_signal.serving = lb.state.serving();
        }
        s.gateway = super::gateway::GatewaySignals::resume(s.lb_serving, s.backup_serving);
        s.emergency = resume_emergency(cfg, status, now.mono);
        if let Some(ing) = &cfg.ingress {
            // The decision: `decidedClass` (statuses written before it existed carry the
            // decision in `activeClass`).
            s.ingress = resume_ingress(
                cfg,
                ing,
                status
                    .decided_class
                    .as_deref()
                    .or(status.active_class.as_deref()),
                status.primary_weight_percent,
                now.mono,
            );
        }
        if s.ingress == IngressPhase::Primary {
            s.traffic_home_since = Some(now.mono);
        }
        // A drain in progress resumes with its end as written (wall clock), never shorter than
        // it was; traffic is not home before a drain of the backup ends.
        if let Some(dns) = &status.dns
            && cfg.dns.is_some()
            && let (Some(tier), Some(until)) = (
                dns.draining_tier.as_deref().and_then(LbTier::from_name),
                dns.draining_until.as_ref(),
            )
        {
            let until = now.mono_of(until.0.as_millisecond());
            if until > now.mono {
                s.draining = Some(Drain { tier, until });
                if tier == LbTier::Backup && s.ingress == IngressPhase::Primary {
                    s.traffic_home_since = Some(until);
                }
            }
        }
        s.panic = status.primary.as_ref().is_some_and(|p| p.panic);
        for ep in &status.endpoints {
            let pool = if ep.pool == Pool::Emergency.as_str() {
                Pool::Emergency
            } else {
                Pool::Primary
            };
            let mut health = RiseFall::up(now.wall);
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
                terminating: false,
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
            if let Some(kind) = super::actions::ActionKind::from_name(&rec.action) {
                s.remember(rec.time.0.as_millisecond(), kind.as_str(), &rec.reason);
            }
        }
        resume_budgets(cfg, status, now, &mut s);
        s.budget_reset_seen = status.flap_budget_reset.clone();
        s.override_seen = cfg.override_at(now.wall).map(|o| (o.mode, o.expires_at));
        // A status written in dry-run says what is really in effect. Keep it even when the spec
        // has left dry-run since (an edit before the restart): the next step then leaves
        // dry-run from what is in effect, as it would have without the restart.
        if cfg.dry_run || status.in_effect.is_some() {
            let mut effective = s.capture_effective();
            if let Some(fx) = &status.in_effect {
                if let Some(ing) = &cfg.ingress {
                    effective.ingress = resume_ingress(
                        cfg,
                        ing,
                        status.active_class.as_deref(),
                        fx.primary_weight_percent,
                        now.mono,
                    );
                    effective.traffic_home_since =
                        (effective.ingress == IngressPhase::Primary).then_some(now.mono);
                }
                if let Some(em) = fx.emergency_state {
                    effective.emergency = emergency_from_state(cfg, em, None, now.mono);
                }
                effective.published = fx
                    .published
                    .iter()
                    .map(|p| {
                        let pool = if p.pool == Pool::Emergency.as_str() {
                            Pool::Emergency
                        } else {
                            Pool::Primary
                        };
                        (pool, p.address.clone())
                    })
                    .collect();
                effective.published.sort();
            }
            s.dry_run = Some(Box::new(effective));
        }
        s
    }

    /// The machines as they are now, as dry-run keeps them while it rehearses.
    pub(crate) fn capture_effective(&self) -> Effective {
        Effective {
            ingress: self.ingress,
            emergency: self.emergency,
            traffic_home_since: self.traffic_home_since,
            budgets: self.budgets.clone(),
            published: self.published_snapshot.clone(),
            panic: self.panic,
        }
    }

    /// Tells the engine its config is about to be replaced by a spec edit (call it with the old
    /// config, before the next step with the new one): that step re-decides the published set
    /// and reports, as a `SpecApplied` action, any change to the managed objects the edit made
    /// by itself.
    pub fn config_changed(&mut self, old: &EngineConfig) {
        if self.edited.is_none() {
            self.edited = Some((
                self.in_effect_emergency_replicas(old),
                self.in_effect_ingress(old),
            ));
        }
    }

    /// Whether any tier is frozen by its flap budget.
    pub fn frozen(&self) -> bool {
        self.budgets.iter().any(|b| b.frozen.is_some())
    }

    /// Endpoints the managed EndpointSlice should list.
    pub fn published(&self) -> impl Iterator<Item = &EndpointEntry> {
        self.endpoints.iter().filter(|e| e.published)
    }

    pub fn published_count(&self) -> usize {
        self.endpoints.iter().filter(|e| e.published).count()
    }

    /// Whether emergency endpoints may be published: engaged, or released but still ramping
    /// their weight down.
    pub fn emergency_serving(&self) -> bool {
        matches!(
            self.emergency,
            EmergencyPhase::Active { .. } | EmergencyPhase::Releasing { .. }
        )
    }

    /// The emergency backends' weight in percent of their full weight (None without
    /// `spec.gateway.backendWeights`): 100 while engaged, the ramp's step while released, else 0.
    pub fn desired_emergency_weight_percent(&self, cfg: &EngineConfig) -> Option<u32> {
        emergency_weight_percent(cfg, self.emergency)
    }

    /// What is in effect (differs from the decided weight only while dry-run rehearses).
    pub fn in_effect_emergency_weight_percent(&self, cfg: &EngineConfig) -> Option<u32> {
        match &self.dry_run {
            Some(fx) => emergency_weight_percent(cfg, fx.emergency),
            None => self.desired_emergency_weight_percent(cfg),
        }
    }

    /// Replicas the emergency Deployment should have; None when there is no Deployment.
    pub fn desired_emergency_replicas(&self, cfg: &EngineConfig) -> Option<i32> {
        emergency_replicas(cfg, self.emergency)
    }

    /// Where ingress traffic should go; None when the policy manages no ingress tier.
    pub fn desired_ingress(&self, cfg: &EngineConfig) -> Option<IngressDesired> {
        ingress_desired(cfg, self.ingress)
    }

    /// Percent of DNS answers for the primary tier, as the records should say now (None
    /// without `spec.dns`): Atomic and Failover point at the authoritative tier only; Weighted
    /// follows the ingress weight.
    pub fn desired_dns_primary_percent(&self, cfg: &EngineConfig) -> Option<u32> {
        dns_primary_percent(cfg, self.ingress)
    }

    /// The same, for what is in effect (dry-run rehearses without moving the records).
    pub fn in_effect_dns_primary_percent(&self, cfg: &EngineConfig) -> Option<u32> {
        match &self.dry_run {
            Some(fx) => dns_primary_percent(cfg, fx.ingress),
            None => self.desired_dns_primary_percent(cfg),
        }
    }

    /// What the managed objects should be now: the decisions, or, while dry-run rehearses,
    /// what was in effect when it began. The controller writes exactly this.
    pub fn in_effect_ingress(&self, cfg: &EngineConfig) -> Option<IngressDesired> {
        match &self.dry_run {
            Some(fx) => ingress_desired(cfg, fx.ingress),
            None => self.desired_ingress(cfg),
        }
    }

    pub fn in_effect_emergency_replicas(&self, cfg: &EngineConfig) -> Option<i32> {
        match &self.dry_run {
            Some(fx) => emergency_replicas(cfg, fx.emergency),
            None => self.desired_emergency_replicas(cfg),
        }
    }

    /// The published set in effect, as (pool, address).
    pub fn in_effect_published(&self) -> Vec<(Pool, String)> {
        match &self.dry_run {
            Some(fx) => fx.published.clone(),
            None => self
                .published()
                .map(|e| (e.pool, e.address.clone()))
                .collect(),
        }
    }
}

fn ingress_desired(cfg: &EngineConfig, phase: IngressPhase) -> Option<IngressDesired> {
    {
        let ing = cfg.ingress.as_ref()?;
        Some(match phase {
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
}

pub(crate) fn dns_primary_percent(cfg: &EngineConfig, phase: IngressPhase) -> Option<u32> {
    let dns = cfg.dns?;
    let ing = ingress_desired(cfg, phase)?;
    Some(match dns.mode {
        crate::api::DnsMode::Weighted => ing.primary_weight_percent.min(100),
        crate::api::DnsMode::Atomic | crate::api::DnsMode::Failover => {
            if phase == IngressPhase::Primary {
                100
            } else {
                0
            }
        }
    })
}

fn emergency_weight_percent(cfg: &EngineConfig, phase: EmergencyPhase) -> Option<u32> {
    let ramp = cfg.emergency_ramp.as_ref()?;
    Some(match phase {
        EmergencyPhase::Active { .. } => 100,
        EmergencyPhase::Releasing { step, .. } => ramp.percent(step),
        EmergencyPhase::Standby | EmergencyPhase::CoolingDown { .. } => 0,
    })
}

fn emergency_replicas(cfg: &EngineConfig, phase: EmergencyPhase) -> Option<i32> {
    let em = cfg.emergency.filter(|e| e.has_deployment)?;
    Some(
        match phase {
            EmergencyPhase::Standby => em.standby_replicas,
            EmergencyPhase::Active { .. }
            | EmergencyPhase::Releasing { .. }
            | EmergencyPhase::CoolingDown { .. } => em.active_replicas,
        }
        .clamp(0, em.max_replicas),
    )
}

impl PolicyState {
    /// healthy / total of the primary pool; 0 for an empty pool (no capacity is an outage).
    pub fn primary_ratio(&self) -> f64 {
        if self.primary_total == 0 {
            0.0
        } else {
            f64::from(self.primary_healthy) / f64::from(self.primary_total)
        }
    }

    /// Counted transitions of both tiers within the flap window ending at monotonic `now`.
    pub fn transitions_in_window(&self, cfg: &EngineConfig, now: Millis) -> u32 {
        self.budgets
            .iter()
            .flat_map(|b| b.transitions.iter())
            .filter(|&&t| now - t < cfg.flap_window_ms)
            .count() as u32
    }

    /// Records a decision: in the returned actions and in the bounded history.
    pub(crate) fn record(
        &mut self,
        actions: &mut Vec<super::actions::Action>,
        at: Millis,
        kind: super::actions::ActionKind,
        mut reason: String,
        affected: super::actions::Affected,
    ) {
        if self.dry_run.is_some() && kind.is_decision() {
            reason.insert_str(0, super::DRY_RUN_PREFIX);
        }
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

    /// Takes a check of this endpoint without a step when it changes no decision and nothing
    /// status shows: one that changes nothing at all ([`RiseFall::absorbs`]: a serving endpoint
    /// passing again, one out of service failing the same way), or one that only moves a
    /// counter ([`RiseFall::only_counts`]: a Falling endpoint failing again short of the
    /// failure threshold, a Rising one passing again short of the success threshold), which is
    /// fed to the machine here. Returns whether it was taken; the controller then neither
    /// steps nor reconciles for it. An endpoint the engine does not know yet is never taken.
    /// Only for a check with no earlier one still waiting for a step (order matters).
    pub fn absorb_check(
        &mut self,
        cfg: &EngineConfig,
        pool: Pool,
        address: &str,
        outcome: &CheckOutcome,
    ) -> bool {
        let (healthy, error) = outcome_parts(outcome);
        let Some(i) = self.find(pool, address) else {
            return false;
        };
        let health = &mut self.endpoints[i].health;
        if health.absorbs(healthy, error) {
            return true;
        }
        if !health.only_counts(healthy, error, cfg.rise, cfg.fall) {
            return false;
        }
        // `only_counts` guarantees no flip and no change of state, error or time, so the
        // timestamp passed is never recorded.
        let flip = health.observe(healthy, error, cfg.rise, cfg.fall, health.last_change);
        debug_assert!(flip.is_none());
        true
    }

    /// The same for a check of the primary (or, with `backup`, the backup) load balancer's
    /// health URL. Only a pass is ever absorbed: any failure restarts the failback hold-down.
    pub fn absorbs_lb_check(&self, backup: bool, outcome: &CheckOutcome) -> bool {
        let url = if backup { &self.backup_lb } else { &self.lb };
        matches!(outcome, CheckOutcome::Healthy) && url.absorbs(true, None)
    }

    pub(crate) fn find(&self, pool: Pool, address: &str) -> Option<usize> {
        self.endpoints
            .binary_search_by(|e| (e.pool, e.address.as_str()).cmp(&(pool, address)))
            .ok()
    }
}

/// A persisted emergency state as a phase, its timer restarting at `now`. A ramp resumes at the
/// step of the persisted weight (`weight`, percent), or its first step when that is unknown; a
/// ramp whose config is gone (spec edit) continues as the cooldown it would have reached.
fn emergency_from_state(
    cfg: &EngineConfig,
    state: EmergencyState,
    weight: Option<u32>,
    now: Millis,
) -> EmergencyPhase {
    match state {
        EmergencyState::Standby => EmergencyPhase::Standby,
        EmergencyState::Active => EmergencyPhase::Active { since: now },
        EmergencyState::Releasing => match &cfg.emergency_ramp {
            Some(ramp) => {
                let step = weight.map_or(0, |w| {
                    ramp.steps
                        .iter()
                        .position(|&p| p <= w)
                        .unwrap_or(ramp.last())
                });
                EmergencyPhase::Releasing { step, since: now }
            }
            None => EmergencyPhase::CoolingDown { since: now },
        },
        EmergencyState::CoolingDown => EmergencyPhase::CoolingDown { since: now },
    }
}

/// Emergency capacity from `status.emergency.state`; statuses written before that field
/// existed fall back to `active` and the desired replicas.
fn resume_emergency(
    cfg: &EngineConfig,
    status: &FailoverPolicyStatus,
    now: Millis,
) -> EmergencyPhase {
    let Some(em) = &status.emergency else {
        return EmergencyPhase::Standby;
    };
    if let Some(state) = em.state {
        return emergency_from_state(cfg, state, em.weight_percent, now);
    }
    if em.active {
        return EmergencyPhase::Active { since: now };
    }
    let scaled_up = cfg.emergency.is_some_and(|e| e.has_deployment)
        && em
            .desired_replicas
            .zip(cfg.emergency.map(|e| e.standby_replicas))
            .is_some_and(|(desired, standby)| desired > standby);
    if scaled_up {
        EmergencyPhase::CoolingDown { since: now }
    } else {
        EmergencyPhase::Standby
    }
}

fn resume_ingress(
    cfg: &EngineConfig,
    ing: &super::config::IngressConfig,
    active_class: Option<&str>,
    weight: Option<u32>,
    now: Millis,
) -> IngressPhase {
    let weight = weight.unwrap_or(100);
    let on_backup = active_class == Some(ing.backup_class.as_str());
    if weight >= 100 && !on_backup {
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
    }
}

/// Each tier's budget from `status.flapBudgets`. Statuses written before that field existed
/// fall back to counting the history's transitions, each to its own tier.
fn resume_budgets(
    cfg: &EngineConfig,
    status: &FailoverPolicyStatus,
    now: Now,
    s: &mut PolicyState,
) {
    if status.flap_budgets.is_empty() {
        for rec in &status.history {
            let Some(kind) = ActionKind::from_name(&rec.action) else {
                continue;
            };
            let at = now.mono_of(rec.time.0.as_millisecond());
            if let Some(tier) = kind.budget_tier()
                && now.mono - at < cfg.flap_window_ms
            {
                s.budgets[tier as usize].transitions.push_back(at);
            }
        }
        return;
    }
    for fb in &status.flap_budgets {
        let Some(tier) = Tier::from_name(&fb.tier) else {
            continue;
        };
        let b = &mut s.budgets[tier as usize];
        b.transitions = fb
            .transitions
            .iter()
            .map(|t| now.mono_of(t.0.as_millisecond()))
            .filter(|&t| now.mono - t < cfg.flap_window_ms)
            .collect();
        b.transitions.make_contiguous().sort_unstable();
        b.frozen = fb.frozen_since.as_ref().map(|t| Frozen {
            since: now.mono_of(t.0.as_millisecond()),
            held: fb
                .held
                .as_deref()
                .and_then(ActionKind::from_name)
                .unwrap_or(match tier {
                    Tier::Emergency => ActionKind::EmergencyRelease,
                    Tier::Ingress => ActionKind::IngressFailback,
                }),
        });
    }
}
