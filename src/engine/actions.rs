//! What the engine decided, each with the reason that caused it. Adapters turn these into
//! Kubernetes writes, Events and metrics; the simulator prints them.

use serde::Serialize;

use super::config::Millis;
use super::facts::Pool;
use crate::api::Phase;

/// The kind of a decision. Names are stable: they appear in Events, metrics and JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ActionKind {
    /// An endpoint reached `failureThreshold` consecutive failed checks.
    EndpointDown,
    /// An endpoint reached `successThreshold` consecutive good checks.
    EndpointUp,
    /// The set of endpoints written to the managed EndpointSlice changed.
    PublishEndpoints,
    /// No endpoint passes; fail-open publishes failing ones rather than none.
    PanicEntered,
    PanicExited,
    /// Emergency capacity engaged: the Deployment scales to its active replicas.
    EmergencyActivate,
    /// The primary pool recovered: emergency endpoints leave the published set (with
    /// `spec.gateway.backendWeights`, their weight starts ramping down first).
    EmergencyRelease,
    /// A further step of that ramp: the emergency backends' weight falls, or (after the 0 %
    /// step) their endpoints leave the published set.
    EmergencyRampDown,
    /// The cooldown passed: the emergency Deployment returns to standby replicas.
    EmergencyScaleDown,
    /// The primary load balancer's health verdict changed.
    LoadBalancerDown,
    LoadBalancerUp,
    /// The backup load balancer's health verdict changed (`ingress.backupHealth`).
    BackupLoadBalancerDown,
    BackupLoadBalancerUp,
    /// The primary load balancer is down but so is the backup: traffic stays where it is.
    FailoverHeld,
    /// Traffic moved to the backup ingress class.
    IngressFailover,
    /// Failback begins: atomically (all traffic back on the primary class) or with the first
    /// gradual step.
    IngressFailback,
    /// A further gradual failback step: more traffic returns to the primary class.
    FailbackStep,
    /// The gradual failback reached 100 %: the primary class is authoritative again.
    FailbackComplete,
    /// A tier's return move found no room in its flap budget: that tier is held on its safe
    /// side.
    FlapBudgetExhausted,
    /// A frozen tier has room in its budget again (the window slid, the budget was raised or
    /// an override took charge): automatic decisions resume.
    Unfrozen,
    /// The `ingressfailover.io/reset-flap-budget` annotation changed: every budget starts afresh.
    FlapBudgetReset,
    OverrideApplied,
    OverrideExpired,
    PhaseChanged,
    /// Failing primary endpoints stay published because ejecting them would exceed
    /// `maxEjectionPercent`.
    EjectionLimited,
    /// `spec.dryRun` turned on: decisions are reported, not carried out.
    DryRunStarted,
    /// `spec.dryRun` turned off: the engine starts again from what is in effect and decides
    /// afresh from live health.
    DryRunEnded,
    /// A spec edit changed what a managed object must be without any transition (a renamed
    /// ingress class, new replica counts, failback steps removed mid-failback).
    SpecApplied,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::EndpointDown => "EndpointDown",
            ActionKind::EndpointUp => "EndpointUp",
            ActionKind::PublishEndpoints => "PublishEndpoints",
            ActionKind::PanicEntered => "PanicEntered",
            ActionKind::PanicExited => "PanicExited",
            ActionKind::EmergencyActivate => "EmergencyActivate",
            ActionKind::EmergencyRelease => "EmergencyRelease",
            ActionKind::EmergencyRampDown => "EmergencyRampDown",
            ActionKind::EmergencyScaleDown => "EmergencyScaleDown",
            ActionKind::LoadBalancerDown => "LoadBalancerDown",
            ActionKind::LoadBalancerUp => "LoadBalancerUp",
            ActionKind::BackupLoadBalancerDown => "BackupLoadBalancerDown",
            ActionKind::BackupLoadBalancerUp => "BackupLoadBalancerUp",
            ActionKind::FailoverHeld => "FailoverHeld",
            ActionKind::IngressFailover => "IngressFailover",
            ActionKind::IngressFailback => "IngressFailback",
            ActionKind::FailbackStep => "FailbackStep",
            ActionKind::FailbackComplete => "FailbackComplete",
            ActionKind::FlapBudgetExhausted => "FlapBudgetExhausted",
            ActionKind::Unfrozen => "Unfrozen",
            ActionKind::FlapBudgetReset => "FlapBudgetReset",
            ActionKind::OverrideApplied => "OverrideApplied",
            ActionKind::OverrideExpired => "OverrideExpired",
            ActionKind::PhaseChanged => "PhaseChanged",
            ActionKind::EjectionLimited => "EjectionLimited",
            ActionKind::DryRunStarted => "DryRunStarted",
            ActionKind::DryRunEnded => "DryRunEnded",
            ActionKind::SpecApplied => "SpecApplied",
        }
    }

    /// The tier whose flap budget this transition counts against, if any.
    pub fn budget_tier(self) -> Option<super::state::Tier> {
        use super::state::Tier;
        match self {
            ActionKind::EmergencyActivate | ActionKind::EmergencyRelease => Some(Tier::Emergency),
            ActionKind::IngressFailover | ActionKind::IngressFailback => Some(Tier::Ingress),
            _ => None,
        }
    }

    /// A decision about a managed object or a counted transition (as opposed to an observed
    /// fact such as EndpointDown): marked as not carried out while dry-run is on.
    pub fn is_decision(self) -> bool {
        self.writes_managed_object() || self.counts_against_flap_budget()
    }

    /// Whether this is a policy-level transition counted against the flap budget.
    pub fn counts_against_flap_budget(self) -> bool {
        matches!(
            self,
            ActionKind::EmergencyActivate
                | ActionKind::EmergencyRelease
                | ActionKind::IngressFailover
                | ActionKind::IngressFailback
        )
    }

    /// Parses a name written by [`ActionKind::as_str`] (status history round trip).
    pub fn from_name(name: &str) -> Option<Self> {
        ActionKind::ALL.iter().copied().find(|k| k.as_str() == name)
    }

    pub const ALL: [ActionKind; 28] = [
        ActionKind::EndpointDown,
        ActionKind::EndpointUp,
        ActionKind::PublishEndpoints,
        ActionKind::PanicEntered,
        ActionKind::PanicExited,
        ActionKind::EmergencyActivate,
        ActionKind::EmergencyRelease,
        ActionKind::EmergencyRampDown,
        ActionKind::EmergencyScaleDown,
        ActionKind::LoadBalancerDown,
        ActionKind::LoadBalancerUp,
        ActionKind::BackupLoadBalancerDown,
        ActionKind::BackupLoadBalancerUp,
        ActionKind::FailoverHeld,
        ActionKind::IngressFailover,
        ActionKind::IngressFailback,
        ActionKind::FailbackStep,
        ActionKind::FailbackComplete,
        ActionKind::FlapBudgetExhausted,
        ActionKind::Unfrozen,
        ActionKind::FlapBudgetReset,
        ActionKind::OverrideApplied,
        ActionKind::OverrideExpired,
        ActionKind::PhaseChanged,
        ActionKind::EjectionLimited,
        ActionKind::DryRunStarted,
        ActionKind::DryRunEnded,
        ActionKind::SpecApplied,
    ];

    /// Whether this action changes a managed Kubernetes object (as opposed to only status).
    pub fn writes_managed_object(self) -> bool {
        matches!(
            self,
            ActionKind::PublishEndpoints
                | ActionKind::EmergencyActivate
                | ActionKind::EmergencyRampDown
                | ActionKind::EmergencyScaleDown
                | ActionKind::IngressFailover
                | ActionKind::IngressFailback
                | ActionKind::FailbackStep
                | ActionKind::FailbackComplete
                | ActionKind::SpecApplied
        )
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The objects an action affects.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum Affected {
    None,
    Endpoint {
        address: String,
        pool: &'static str,
    },
    Endpoints {
        added: Vec<String>,
        removed: Vec<String>,
        published: usize,
    },
    Replicas {
        from: i32,
        to: i32,
    },
    Ingress {
        from_class: String,
        to_class: String,
        primary_weight_percent: u32,
    },
    Phase {
        from: Phase,
        to: Phase,
    },
}

/// One decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    /// When it was decided (engine clock).
    pub at: Millis,
    pub kind: ActionKind,
    /// Why, in words an SRE can act on.
    pub reason: String,
    pub affected: Affected,
}

impl Action {
    pub(crate) fn endpoint(
        at: Millis,
        kind: ActionKind,
        address: &str,
        pool: Pool,
        reason: String,
    ) -> Self {
        Action {
            at,
            kind,
            reason,
            affected: Affected::Endpoint {
                address: address.to_string(),
                pool: pool.as_str(),
            },
        }
    }
}
