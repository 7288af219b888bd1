//! What the engine is told each step. Facts only: nothing here says what to do.
//!
//! "Missing facts are not bad facts": every fact that can be unknown is an `Option` or a
//! `known` flag, and the engine holds its previous decision for anything it cannot see rather
//! than reading a cache miss as an outage.

use crate::health::CheckOutcome;

/// Which pool an endpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pool {
    Primary,
    Emergency,
}

impl Pool {
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Primary => "primary",
            Pool::Emergency => "emergency",
        }
    }
}

/// One endpoint the policy knows about, with Kubernetes' own readiness verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointFact {
    /// `host:port`; the identity of the endpoint across steps.
    pub address: String,
    pub pool: Pool,
    /// Kubernetes readiness (EndpointSlice `conditions.ready`); always true for static addresses.
    pub ready: bool,
    /// Kubernetes is removing it (EndpointSlice `conditions.terminating`): never published and
    /// left out of the pool's ratio, so a rollout is not an outage.
    pub terminating: bool,
}

impl EndpointFact {
    /// A ready, non-terminating endpoint (static addresses, healthy pods).
    pub fn ready(address: impl Into<String>, pool: Pool) -> Self {
        EndpointFact {
            address: address.into(),
            pool,
            ready: true,
            terminating: false,
        }
    }
}

/// What the cache says about a watched Deployment (the ingress controller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentFact {
    /// It has at least one ready replica.
    Ready,
    /// It exists with no ready replica.
    NotReady,
    /// The (synced) cache has no such Deployment: deleted, or never created.
    Missing,
}

/// One health-check result for an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFact {
    pub address: String,
    pub pool: Pool,
    pub outcome: CheckOutcome,
}

/// Everything observed since the previous step. The caller owns and reuses it: it replaces the
/// inventory (bumping `inventory_version`) only when endpoints come or go, and clears the check
/// lists after each step, so an idle step costs almost nothing.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// False until the caller has a complete view of the endpoints (caches synced).
    pub inventory_known: bool,
    /// Bumped by the caller whenever `endpoints` changes.
    pub inventory_version: u64,
    pub endpoints: Vec<EndpointFact>,
    /// Backend check results since the previous step, in the order they completed.
    pub checks: Vec<CheckFact>,
    /// Health-URL check results of the primary load balancer since the previous step.
    pub lb_checks: Vec<CheckOutcome>,
    /// The primary ingress controller Deployment; None = unknown (cache not synced).
    pub lb_controller: Option<DeploymentFact>,
    /// Health-URL check results of the backup load balancer since the previous step.
    pub backup_lb_checks: Vec<CheckOutcome>,
    /// The backup ingress controller Deployment; None = unknown.
    pub backup_controller: Option<DeploymentFact>,
    /// The primary Gateway's status (`spec.gateway`); None = unknown (cache not synced).
    pub lb_gateway: Option<super::gateway::GatewayFact>,
    /// The backup Gateway's status; None = unknown.
    pub backup_gateway: Option<super::gateway::GatewayFact>,
    /// Ready replicas of the emergency Deployment; None = unknown.
    pub emergency_ready_replicas: Option<i32>,
}

impl Observation {
    /// Replaces the endpoint inventory and marks it known.
    pub fn set_endpoints(&mut self, endpoints: Vec<EndpointFact>) {
        self.endpoints = endpoints;
        self.inventory_known = true;
        self.inventory_version += 1;
    }

    /// Forgets the per-step facts once a step has consumed them.
    pub fn clear_checks(&mut self) {
        self.checks.clear();
        self.lb_checks.clear();
        self.backup_lb_checks.clear();
    }
}
