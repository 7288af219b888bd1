//! `FailoverPolicy.status`: what the operator observed and decided, for `kubectl get fp -o yaml`.
//!
//! Every list here is bounded (see the `MAX_*` constants) so that a policy over a large pool or a
//! long incident never grows its object past what etcd and a terminal can hold.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::spec::OverrideMode;

/// Most per-endpoint entries kept in status; unhealthy endpoints are listed first.
pub const MAX_ENDPOINT_STATUSES: usize = 64;
/// Most transition records kept in `status.history` (newest last).
pub const MAX_HISTORY: usize = 20;

/// Condition types, following Kubernetes conventions.
pub mod condition_types {
    /// The policy is valid and being enforced.
    pub const READY: &str = "Ready";
    /// Some primary backends are out, or the pool runs in fail-open panic mode.
    pub const DEGRADED: &str = "Degraded";
    /// Traffic is (partly) on the backup ingress class.
    pub const FAILOVER_ACTIVE: &str = "FailoverActive";
    /// Emergency capacity is engaged.
    pub const EMERGENCY_ACTIVE: &str = "EmergencyActive";
    /// The policy is frozen in place (flap budget exhausted or override Freeze).
    pub const FROZEN: &str = "Frozen";

    pub const ALL: [&str; 5] = [READY, DEGRADED, FAILOVER_ACTIVE, EMERGENCY_ACTIVE, FROZEN];

    /// The decisions are in effect in the cluster (set by the controller, not the engine):
    /// False while a write fails or backs off, while another field manager keeps changing a
    /// field the operator owns, while a HorizontalPodAutoscaler owns the emergency replicas,
    /// or in dry-run when a decision is not applied. The message names each object.
    pub const IN_EFFECT: &str = "InEffect";
}

/// Condition reasons (CamelCase, stable: alerts and scripts match on them).
pub mod reasons {
    pub const RECONCILED: &str = "Reconciled";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Something the policy references could not be read (a Service without EndpointSlices,
    /// a missing Deployment, an ambiguous port).
    pub const REFERENCES_UNRESOLVED: &str = "ReferencesUnresolved";
    /// Every problem is an endpoint or EndpointSlice the confinement rules refuse to probe
    /// (named with its rule in the message); nothing else is unresolved.
    pub const PROBE_REFUSED: &str = "ProbeRefused";
    pub const DRY_RUN: &str = "DryRun";
    pub const ALL_HEALTHY: &str = "AllHealthy";
    pub const BACKENDS_DOWN: &str = "BackendsDown";
    pub const PANIC_FAIL_OPEN: &str = "FailOpenPanic";
    pub const PRIMARY_LB_DOWN: &str = "PrimaryLoadBalancerDown";
    pub const PRIMARY_LB_HEALTHY: &str = "PrimaryLoadBalancerHealthy";
    pub const GRADUAL_FAILBACK: &str = "GradualFailback";
    pub const HEALTHY_RATIO_LOW: &str = "HealthyRatioLow";
    pub const HEALTHY_RATIO_RECOVERED: &str = "HealthyRatioRecovered";
    /// The primary load balancer is down and so is the backup: traffic is held where it is.
    pub const BOTH_TIERS_DOWN: &str = "BothTiersDown";
    /// Traffic left the backup because the backup went down while the primary serves.
    pub const BACKUP_LB_DOWN: &str = "BackupLoadBalancerDown";
    pub const COOLING_DOWN: &str = "CoolingDown";
    pub const RELEASING: &str = "Releasing";
    pub const FLAP_BUDGET_EXHAUSTED: &str = "FlapBudgetExhausted";
    pub const OVERRIDE: &str = "Override";
    pub const NOT_FROZEN: &str = "NotFrozen";
    pub const INACTIVE: &str = "Inactive";
    /// `InEffect=True`: every decision is written.
    pub const APPLIED: &str = "Applied";
    /// `InEffect=False`: a write to a managed object failed (the message names the object and
    /// the error); the write is retried with backoff while the other writes go on.
    pub const WRITE_FAILED: &str = "WriteFailed";
    /// `InEffect=False`: another field manager keeps changing a field the operator owns; after
    /// a bounded number of corrections the operator stops correcting it.
    pub const OTHER_WRITER: &str = "OtherWriter";
    /// `InEffect=False`: a HorizontalPodAutoscaler targets the emergency Deployment; its
    /// replicas are left to the autoscaler.
    pub const AUTOSCALER: &str = "HorizontalPodAutoscaler";
    /// `InEffect=False`: a decision is recorded in status and its writes are under way (status
    /// is the write-ahead record of every decision that moves traffic or capacity).
    pub const APPLYING: &str = "Applying";
    /// `Ready=False`: an object this policy would write belongs to another policy (the message
    /// names it); nothing is written to it.
    pub const CONFLICT: &str = "Conflict";
    /// `Ready=False`: the policy has `spec.dns` but the operator was started without
    /// `--dns-endpoints` (chart value `externalDNS.enabled`); no DNS record is written.
    pub const DNS_ENDPOINTS_DISABLED: &str = "DNSEndpointsDisabled";
}

/// Summary phases shown in `kubectl get fp`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Phase {
    /// No decision yet (facts not yet gathered).
    #[default]
    Pending,
    /// Everything healthy, traffic on the primary class.
    Normal,
    /// Some primary backends are out, but above the emergency threshold.
    Degraded,
    /// Emergency capacity is engaged.
    EmergencyActive,
    /// Traffic is on the backup ingress class.
    FailedOver,
    /// Returning to normal: gradual failback in progress or emergency capacity cooling down.
    Recovering,
    /// Frozen in place by the flap budget or an override.
    Frozen,
    /// The spec is invalid; nothing is managed.
    Invalid,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Normal => "Normal",
            Phase::Degraded => "Degraded",
            Phase::EmergencyActive => "EmergencyActive",
            Phase::FailedOver => "FailedOver",
            Phase::Recovering => "Recovering",
            Phase::Frozen => "Frozen",
            Phase::Invalid => "Invalid",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The observed and decided state of a FailoverPolicy.
///
/// It is also the engine's memory across restarts and leader changes. A new process rebuilds
/// each machine from its own field, never from `phase` (which shows only the most pressing
/// one): the ingress side from `activeClass` and `primaryWeightPercent`, emergency capacity
/// from `emergency.state`, each flap budget from `flapBudgets`, fail-open panic from
/// `primary.panic`, endpoint health from `endpoints`, and, in dry-run, what is in effect from
/// `inEffect`. Waits restart from the resume (hold-down, cooldown, dwell and sustain windows
/// are never shortened by a restart). While a spec edit is invalid, `phase` is Invalid but every
/// decided field is kept, so a restart and then the fix carry on from the last valid decisions.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FailoverPolicyStatus {
    /// The spec generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// What the policy is doing, in one word.
    #[serde(default)]
    pub phase: Phase,

    /// Ingress class currently serving traffic, as the managed Ingresses say (the
    /// authoritative one in HotStandby mode): what is in effect, which differs from
    /// `decidedClass` in dry-run or while a write fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_class: Option<String>,

    /// Ingress class the policy decided on. Equal to `activeClass` once the decision is
    /// written; in dry-run it is only reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_class: Option<String>,

    /// Percent of traffic on the primary ingress class (0-100); below 100 during a gradual
    /// failback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_weight_percent: Option<u32>,

    /// Health of the primary pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<TierHealth>,

    /// The DNS records (`spec.dns`): which tier they point at and, after a switch, until when
    /// the tier traffic left keeps serving (one TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsStatus>,

    /// Emergency capacity: replicas and health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<EmergencyStatus>,

    /// Health of the primary load balancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerStatus>,
    /// Health of the backup load balancer, when `ingress.backupHealth` judges it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_load_balancer: Option<LoadBalancerStatus>,

    /// Per-endpoint health, unhealthy first, at most 64 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointStatus>,

    /// The manual override in force, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#override: Option<OverrideStatus>,

    /// Policy-level transitions in the current flap-budget window, both tiers together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transitions_in_window: Option<u32>,
    /// The flap budget of each tier (emergency, ingress): counted transitions and any freeze.
    /// A restarted operator resumes from it, so a restart neither forgets nor double-counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flap_budgets: Vec<FlapBudgetStatus>,
    /// While `spec.dryRun` is on: what is actually in effect on the managed objects (the
    /// decided state is in the fields above). Absent outside dry-run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_effect: Option<InEffectStatus>,
    /// The last value of the `ingressfailover.io/reset-flap-budget` annotation acted upon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flap_budget_reset: Option<String>,

    /// Conditions: Ready, Degraded, FailoverActive, EmergencyActive, Frozen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Recent transitions with their reasons, newest last, at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<TransitionRecord>,

    /// The shard the policy belongs to and the replica that wrote this status, when the
    /// operator runs with `--shards` above 1 (absent with one shard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardStatus>,
}

/// The DNS tier.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DnsStatus {
    /// Percent of DNS answers for the primary tier's load balancer (Atomic and Failover: 100 or
    /// 0; Weighted: the failback step's weight).
    pub primary_weight_percent: u32,
    /// After the records moved away from a tier: that tier (`primary` or `backup`), kept
    /// serving until `drainingUntil` because resolvers may still hand out the old answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_tier: Option<String>,
    /// When the drain ends: the switch plus one `spec.dns.ttlSeconds`. Until then the tier
    /// traffic left is not torn down and emergency capacity is not scaled down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_until: Option<Time>,
}

/// Which shard a policy belongs to and who holds it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// The policy's shard: FNV-1a 64 of its `metadata.uid`, modulo `count`.
    pub index: u32,
    /// Shards the operator runs with (`--shards`).
    pub count: u32,
    /// Identity of the replica holding the shard's Lease (`<lease-name>-shard-<index>`) that
    /// wrote this status.
    pub holder: String,
}

/// Healthy/total for one pool.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TierHealth {
    /// Backends passing both probe and Kubernetes readiness.
    pub healthy: u32,
    /// Serving-eligible backends known (those Kubernetes marks terminating are left out).
    pub total: u32,
    /// healthy / total (1 when the pool is empty).
    pub ratio: f64,
    /// Backends published in the managed EndpointSlice.
    pub published: u32,
    /// `healthy/total`, for the printer column.
    pub summary: String,
    /// True while fail-open publishes failing backends because none pass.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub panic: bool,
}

/// The flap budget of one tier.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FlapBudgetStatus {
    /// `emergency` or `ingress`.
    pub tier: String,
    /// When each counted transition happened (those still inside the window).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Time>,
    /// Since when a return move of this tier has been refused (the tier is Frozen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_since: Option<Time>,
    /// The move being held back while frozen (`IngressFailback`, `EmergencyRelease`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

/// What is in effect while dry-run decides without acting.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct InEffectStatus {
    /// Percent of traffic on the primary class as last written (the class in effect is
    /// `activeClass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_weight_percent: Option<u32>,
    /// Emergency capacity as last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_state: Option<EmergencyState>,
    /// Endpoints in the managed EndpointSlice as last written (at most 64 listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<PublishedEndpoint>,
}

/// One endpoint of the managed EndpointSlice.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PublishedEndpoint {
    /// `host:port`.
    pub address: String,
    /// `primary` or `emergency`.
    pub pool: String,
}

/// Where emergency capacity is in its lifecycle.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EmergencyState {
    /// At standby replicas; emergency endpoints unpublished.
    #[default]
    Standby,
    /// Engaged: at active replicas, endpoints published once ready and healthy.
    Active,
    /// Released with a weight ramp (`spec.gateway.backendWeights`): endpoints still published
    /// while their weight in the route copies steps down to 0.
    Releasing,
    /// Released: endpoints unpublished, replicas kept until the cooldown has passed with
    /// traffic back on the primary class.
    CoolingDown,
}

/// Emergency capacity.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EmergencyStatus {
    /// True while the emergency is engaged.
    pub active: bool,
    /// Standby, Active, Releasing or CoolingDown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<EmergencyState>,
    /// The emergency backends' weight in the route copies, in percent of
    /// `spec.gateway.backendWeights.emergency` (only with backendWeights): 100 while engaged,
    /// the ramp's step while releasing, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_percent: Option<u32>,
    /// While releasing: when the ramp's next step falls due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step_at: Option<Time>,
    /// Replicas the operator wants for the emergency Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// Replicas Kubernetes reports ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Emergency endpoints healthy/total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<TierHealth>,
    /// `Standby`, or `ready/desired` while engaged, for the printer column.
    pub summary: String,
}

/// The primary load balancer's health.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerStatus {
    /// Up, Down, Rising or Falling (HAProxy semantics over its health checks).
    pub state: EndpointState,
    /// When the state last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<Time>,
    /// The last failure seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Health state of one checked target.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum EndpointState {
    /// Healthy and published.
    #[default]
    Up,
    /// Still published, but failing (fewer than failureThreshold consecutive failures).
    Falling,
    /// Out: failureThreshold consecutive failures.
    Down,
    /// Still out, but passing (fewer than successThreshold consecutive successes).
    Rising,
}

impl EndpointState {
    /// Whether the probe verdict lets the target serve (Up or Falling).
    pub fn serving(self) -> bool {
        matches!(self, EndpointState::Up | EndpointState::Falling)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Up => "Up",
            EndpointState::Falling => "Falling",
            EndpointState::Down => "Down",
            EndpointState::Rising => "Rising",
        }
    }
}

impl std::fmt::Display for EndpointState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Health of one backend.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    /// `host:port` of the backend.
    pub address: String,
    /// `primary` or `emergency`.
    pub pool: String,
    /// Probe state.
    pub state: EndpointState,
    /// Whether Kubernetes reports it ready (always true for static addresses).
    pub ready: bool,
    /// Whether it is in the managed EndpointSlice.
    pub published: bool,
    /// When the probe state last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<Time>,
    /// The last probe failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The override in force.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OverrideStatus {
    /// The override mode in force (copied from `spec.override.mode`).
    pub mode: OverrideMode,
    /// Why the override was set, as written in `spec.override.reason`, for the next person on
    /// call.
    pub reason: String,
    /// When the override stops applying; absent when it has no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// False once it has expired.
    pub active: bool,
}

/// One policy-level transition.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TransitionRecord {
    pub time: Time,
    /// Machine-readable action name, such as `IngressFailover` or `EmergencyScaleUp`.
    pub action: String,
    /// Why, in words.
    pub reason: String,
}
