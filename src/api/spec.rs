//! `FailoverPolicy.spec`: what the user declares.
//!
//! Doc comments on these types become the CRD descriptions that `kubectl explain` prints, so they
//! are written for the on-call SRE reading them, not for Rust readers. Defaults live in serde
//! `default = "..."` functions so that the CRD schema, the offline `check` command and the
//! controller all agree on them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::FailoverPolicyStatus;

/// The desired behaviour: which backends to watch, how to probe them, when to wake emergency
/// capacity and move traffic to the backup ingress class, and how to come back.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ingressfailover.io",
    version = "v1alpha1",
    kind = "FailoverPolicy",
    plural = "failoverpolicies",
    shortname = "fp",
    category = "failover",
    namespaced,
    doc = "FailoverPolicy automates the load-balancer failover runbook for one service: it probes backends and the primary load balancer, publishes only healthy backends, wakes emergency capacity, moves Ingress traffic to a backup class and recovers gradually.",
    status = "FailoverPolicyStatus",
    derive = "PartialEq",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Summary of what the policy is doing"),
    printcolumn(name = "Active", type_ = "string", json_path = ".status.activeClass", description = "Where traffic is in effect: the class the managed Ingresses say"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".status.primaryWeightPercent", description = "Percent of traffic on the primary tier (a gradual failback's step)"),
    printcolumn(name = "Healthy", type_ = "string", json_path = ".status.primary.summary", description = "Healthy/total primary backends"),
    printcolumn(name = "Emergency", type_ = "string", json_path = ".status.emergency.summary", description = "Emergency capacity: ready/desired replicas, or Standby"),
    printcolumn(name = "LB", type_ = "string", json_path = ".status.loadBalancer.state", priority = 1, description = "The primary load balancer's health (Up, Falling, Down, Rising)"),
    printcolumn(name = "Override", type_ = "string", json_path = ".spec.override.mode", priority = 1, description = "A person's override (ForcePrimary, ForceBackup, Freeze), if any"),
    printcolumn(name = "Dry-Run", type_ = "boolean", json_path = ".spec.dryRun", priority = 1, description = "True when the policy only decides and reports; nothing is applied"),
    printcolumn(name = "Decided-Class", type_ = "string", json_path = ".status.decidedClass", priority = 1, description = "Ingress class the policy decided on (differs from Active in dry-run or while a write is under way or fails)"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("!has(self.spec.recovery) || !has(self.spec.recovery.failbackSteps) || size(self.spec.recovery.failbackSteps) == 0 || has(self.spec.gateway) || (has(self.spec.ingress) && self.spec.ingress.mode == 'HotStandby')").message("spec.recovery.failbackSteps needs spec.ingress.mode HotStandby or spec.gateway: only a mirrored backup Ingress or routes attached to both Gateways can carry a traffic weight").field_path(".spec.recovery.failbackSteps"),
    validation = Rule::new("!has(self.spec.dns) || (has(self.spec.ingress) ? self.spec.ingress.mode == 'HotStandby' : has(self.spec.gateway))").message("spec.dns needs spec.ingress.mode HotStandby or spec.gateway: after a DNS switch the tier traffic left must keep serving for the record's TTL, and SwitchClass moves the Ingress away from it at once").field_path(".spec.dns"),
    validation = Rule::new("!has(self.spec.dns) || !has(self.spec.recovery) || !has(self.spec.recovery.failbackSteps) || size(self.spec.recovery.failbackSteps) == 0 || self.spec.recovery.stepSeconds >= self.spec.dns.ttlSeconds").message("spec.recovery.stepSeconds must be at least spec.dns.ttlSeconds: resolvers keep the previous weights for a TTL, so a shorter failback step would not move the traffic it claims").field_path(".spec.recovery.stepSeconds"),
    validation = Rule::new("!has(self.spec.gateway) || !has(self.spec.ingress) || !has(self.spec.gateway.health) || (!has(self.spec.gateway.health.url) && !has(self.spec.gateway.health.controllerDeployment))").message("with spec.ingress set, the tier's health URL and controller come from spec.ingress.health (one tier decision moves both): set only gatewayStatus in spec.gateway.health").field_path(".spec.gateway.health"),
    validation = Rule::new("!has(self.spec.gateway) || !has(self.spec.ingress) || !has(self.spec.gateway.backupHealth) || (!has(self.spec.gateway.backupHealth.url) && !has(self.spec.gateway.backupHealth.controllerDeployment))").message("with spec.ingress set, the backup tier's health URL and controller come from spec.ingress.backupHealth: set only gatewayStatus in spec.gateway.backupHealth").field_path(".spec.gateway.backupHealth"),
    validation = Rule::new("!has(self.spec.gateway) || has(self.spec.ingress) || !has(self.spec.gateway.health) || self.spec.gateway.health.gatewayStatus || has(self.spec.gateway.health.url) || has(self.spec.gateway.health.controllerDeployment)").message("judge the primary Gateway tier with gatewayStatus, url and/or controllerDeployment").field_path(".spec.gateway.health.gatewayStatus")
)]
#[serde(rename_all = "camelCase")]
pub struct FailoverPolicySpec {
    /// Where traffic normally goes (the primary pool) and the emergency capacity woken when too
    /// few primary backends are healthy.
    pub backends: BackendsSpec,

    /// The selectorless Service whose EndpointSlice the operator writes with the healthy set.
    /// Point your Ingress (or anything else) at this Service instead of the primary Service.
    pub managed_service: ManagedServiceSpec,

    /// How each backend is health-checked. Probe health AND Kubernetes readiness must both hold
    /// for a backend to be published.
    #[serde(default)]
    pub probe: ProbeSpec,

    /// The load-balancer tier: which Ingress objects to move from the primary to the backup
    /// ingress class, and how the primary load balancer's health is judged. Omit to manage
    /// backends and emergency capacity only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressTierSpec>,

    /// DNS failover: DNS records (an ExternalDNS `DNSEndpoint`) that point the given host names
    /// at the active tier's load balancer. Needs `ingress.mode: HotStandby` and the operator
    /// started with `--dns-endpoints` (chart value `externalDNS.enabled`). After each DNS
    /// switch the tier traffic left keeps serving for at least `ttlSeconds` (status shows
    /// `dns.drainingUntil`). Omit when clients do not reach the load balancers through DNS
    /// records the operator should manage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsSpec>,

    /// The Gateway API tier: HTTPRoutes attached to a primary Gateway, moved to a backup
    /// Gateway on failover. The operator never writes your HTTPRoutes (their lists are atomic:
    /// writing one would take it from whoever else owns it); it writes and owns a copy of each
    /// named route template and attaches the copy where the tier decision says. With
    /// `spec.ingress` too, one decision moves both. Needs the operator's `--gateway-api` flag
    /// (chart value `gatewayAPI.enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayTierSpec>,

    /// When emergency capacity is engaged and released, with hysteresis.
    #[serde(default)]
    pub thresholds: ThresholdsSpec,

    /// Guard rails that keep a bad probe or a flapping backend from making things worse.
    #[serde(default)]
    pub safety: SafetySpec,

    /// How traffic and capacity return to normal once the primary recovers.
    #[serde(default)]
    pub recovery: RecoverySpec,

    /// Manual control for incidents: force a side or freeze everything, with an expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#override: Option<OverrideSpec>,

    /// Decide and report (status, Events, metrics) without changing any managed object.
    /// Use it to rehearse a policy against production traffic. Decisions taken in dry-run are
    /// marked as such and never count against the flap budget. When dry-run is switched off,
    /// the operator starts again from what is in effect (the objects as they were when dry-run
    /// began) and decides afresh from live health: every change it then makes is an action with
    /// its own reason, never a silent replay of the rehearsal.
    #[serde(default)]
    pub dry_run: bool,

    /// What happens to managed objects when this policy is deleted. Restore (default) puts the
    /// primary ingress class back, scales emergency capacity to its standby replicas and removes
    /// the managed EndpointSlices; Orphan leaves everything as it is.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// The primary pool and the emergency pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackendsSpec {
    /// The backends that normally serve traffic.
    pub primary: PrimaryPool,

    /// Capacity to wake when the primary pool's healthy ratio drops below
    /// `thresholds.activateBelow`. Omit when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<EmergencyPool>,
}

/// The primary pool: pods behind a Service and/or plain addresses outside the cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.service) || (has(self.addresses) && size(self.addresses) > 0)").message("set service and/or addresses: the primary pool cannot be empty"))]
pub struct PrimaryPool {
    /// A Service in the policy's namespace; its EndpointSlices give the pod addresses and their
    /// Kubernetes readiness. Only slices Kubernetes' EndpointSlice controller manages are read
    /// (unless the operator trusts others), and loopback, link-local, metadata and API server
    /// addresses in them are never probed unless the operator's probe allowlist permits them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceBackendRef>,

    /// Static `host:port` backends outside the cluster (for example `10.0.1.10:8080`).
    /// Kubernetes never health-checks these; the operator does. A host name must be in the
    /// operator's probe allowlist (it is checked before it is resolved); loopback, link-local,
    /// metadata and API server addresses are refused unless the allowlist permits them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub addresses: Vec<StaticAddress>,
}

/// A Service in the policy's own namespace, and which of its ports carries the traffic.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBackendRef {
    /// Name of the Service (same namespace as the policy).
    #[schemars(length(min = 1, max = 63))]
    pub name: String,

    /// Name of the EndpointSlice port to use. Defaults to the only port when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
}

/// A backend outside the cluster, written `host:port` (IPv6 as `[addr]:port`).
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(transparent)]
pub struct StaticAddress(
    #[schemars(
        length(min = 3, max = 261),
        regex(pattern = r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
    )]
    pub String,
);

/// Capacity to wake in an emergency: a Deployment to scale and/or standby addresses.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.deployment) || (has(self.addresses) && size(self.addresses) > 0)").message("set deployment and/or addresses, or omit the emergency pool"))]
pub struct EmergencyPool {
    /// A Deployment in the policy's namespace, scaled from `standbyReplicas` to
    /// `activeReplicas` while the emergency lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<EmergencyDeployment>,

    /// Standby `host:port` backends published (once healthy) only during an emergency. The same
    /// rules as `backends.primary.addresses` apply to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub addresses: Vec<StaticAddress>,
}

/// The emergency Deployment and its replica counts ("scale first, then shift": its pods join the
/// published set only once Kubernetes reports them ready and they pass the probe).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.standbyReplicas <= self.activeReplicas").message("standbyReplicas must not exceed activeReplicas").field_path(".standbyReplicas"))]
#[x_kube(validation = Rule::new("self.activeReplicas <= self.maxReplicas").message("activeReplicas must not exceed maxReplicas").field_path(".activeReplicas"))]
pub struct EmergencyDeployment {
    /// Name of the Deployment (same namespace as the policy).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// The Service selecting the Deployment's pods, whose EndpointSlices list them. Defaults to
    /// the Deployment's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,

    /// Name of the EndpointSlice port to use. Defaults to the only port when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,

    /// Replicas outside an emergency (usually 0).
    #[serde(default)]
    #[schemars(range(min = 0, max = 10000))]
    pub standby_replicas: i32,

    /// Replicas during an emergency.
    #[schemars(range(min = 0, max = 10000))]
    pub active_replicas: i32,

    /// Hard ceiling the operator never scales above, whatever else the spec says.
    #[schemars(range(min = 0, max = 10000))]
    pub max_replicas: i32,
}

/// The selectorless Service the operator publishes healthy endpoints through.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedServiceSpec {
    /// Name of the Service (same namespace as the policy). The operator creates it when absent
    /// (owned by this policy) and writes its EndpointSlices. Another policy naming the same
    /// Service is refused (Ready=False, reason Conflict). Renaming it hands the old Service back
    /// as deletion with Restore does.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,

    /// Port the Service exposes.
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Name of that port, also used for the EndpointSlice port.
    #[serde(default = "default_port_name")]
    #[schemars(length(min = 1, max = 15))]
    pub port_name: String,

    /// Also write a v1 `Endpoints` object (named as the Service) mirroring the published set,
    /// for consumers that still read the legacy Endpoints API (older ingress controllers, some
    /// meshes) and otherwise see no endpoint of this selectorless Service. The EndpointSlices
    /// stay authoritative; the object carries `endpointslice.kubernetes.io/skip-mirror` so
    /// Kubernetes does not mirror it back into slices, holds IP endpoints only (at most 1000, as
    /// Kubernetes' own controller), and is removed when this is turned off. Kubernetes 1.33+
    /// reports the Endpoints API as deprecated: leave this off unless a consumer needs it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub legacy_endpoints: bool,
}

impl FailoverPolicySpec {
    /// The Service emergency endpoints are published in apart from the primaries, when they
    /// are a weighted backend of their own (`spec.gateway.backendWeights` with an emergency
    /// pool); None when they join the managed Service.
    pub fn weighted_emergency_service(&self) -> Option<String> {
        self.gateway
            .as_ref()
            .and_then(|g| g.backend_weights.as_ref())
            .filter(|_| self.backends.emergency.is_some())
            .map(|_| self.managed_service.emergency_service_name())
    }
}

impl ManagedServiceSpec {
    /// The Service emergency endpoints are published in when `spec.gateway.backendWeights` is
    /// set: `<name>-emergency` (the one copy of this name).
    pub fn emergency_service_name(&self) -> String {
        format!("{}-emergency", self.name)
    }
}

fn default_service_port() -> i32 {
    80
}
fn default_port_name() -> String {
    "http".into()
}

/// How backends are health-checked: exactly one of `http` or `tcp`, with HAProxy's
/// `inter`/`fall`/`rise` semantics.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.http) && has(self.tcp))").message("set only one of http or tcp"))]
#[x_kube(validation = Rule::new("self.timeoutSeconds <= self.intervalSeconds").message("timeoutSeconds must not exceed intervalSeconds: at most one check is in flight per backend").field_path(".timeoutSeconds"))]
pub struct ProbeSpec {
    /// An HTTP check. When neither `http` nor `tcp` is set, an HTTP GET of `/` is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,

    /// A TCP connect check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,

    /// Seconds between two checks of the same backend (HAProxy `inter`).
    #[serde(default = "default_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: u32,

    /// Seconds a check may take before it counts as failed.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: u32,

    /// Consecutive failed checks that take a backend out (HAProxy `fall`).
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: u32,

    /// Consecutive good checks that put a backend back (HAProxy `rise`).
    #[serde(default = "default_success_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub success_threshold: u32,

    /// Random spread added to each interval, in percent of it, so that many backends are never
    /// checked in one burst.
    #[serde(default = "default_jitter")]
    #[schemars(range(min = 0, max = 50))]
    pub jitter_percent: u32,
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            http: None,
            tcp: None,
            interval_seconds: default_interval(),
            timeout_seconds: default_timeout(),
            failure_threshold: default_failure_threshold(),
            success_threshold: default_success_threshold(),
            jitter_percent: default_jitter(),
        }
    }
}

fn default_interval() -> u32 {
    10
}
fn default_timeout() -> u32 {
    5
}
fn default_failure_threshold() -> u32 {
    3
}
fn default_success_threshold() -> u32 {
    2
}
fn default_jitter() -> u32 {
    10
}

/// An HTTP health check.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpProbe {
    /// Request path, starting with `/`.
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^/"))]
    pub path: String,

    /// Port to check. Defaults to the backend's traffic port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,

    /// HTTP method.
    #[serde(default)]
    pub method: HttpMethod,

    /// Host header to send. Defaults to the backend's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub host: Option<String>,

    /// Status codes that count as healthy: single codes (`"200"`) or inclusive ranges
    /// (`"200-399"`).
    #[serde(default = "default_expected_statuses")]
    #[schemars(length(min = 1, max = 16))]
    pub expected_statuses: Vec<StatusRange>,

    /// A check answered slower than this many milliseconds counts as failed (latency-based
    /// ejection). Omit to accept any answer within `timeoutSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600000))]
    pub max_latency_ms: Option<u32>,

    /// When set, the response body (first 64 KiB) must contain this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub body_contains: Option<String>,
}

fn default_path() -> String {
    "/".into()
}
fn default_expected_statuses() -> Vec<StatusRange> {
    vec![StatusRange("200-399".into())]
}

/// An HTTP status code or an inclusive range of them, such as `"200"` or `"200-399"`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
pub struct StatusRange(
    #[schemars(
        length(min = 3, max = 7),
        regex(pattern = r"^[1-5][0-9]{2}(-[1-5][0-9]{2})?$")
    )]
    pub String,
);

impl StatusRange {
    /// The inclusive bounds, or `None` when the text is malformed or the range is reversed.
    pub fn bounds(&self) -> Option<(u16, u16)> {
        let (lo, hi) = match self.0.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let v = self.0.parse().ok()?;
                (v, v)
            }
        };
        ((100..=599).contains(&lo) && (100..=599).contains(&hi) && lo <= hi).then_some((lo, hi))
    }
}

/// HTTP methods a health check may use.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HttpMethod {
    #[default]
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "HEAD")]
    Head,
    #[serde(rename = "OPTIONS")]
    Options,
}

/// A TCP connect check: healthy when the connection is accepted within the timeout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TcpProbe {
    /// Port to check. Defaults to the backend's traffic port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// The load-balancer tier: the Ingress objects to move and how the primary tier is judged.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.primaryClass != self.backupClass").message("backupClass must differ from primaryClass").field_path(".backupClass"))]
#[x_kube(validation = Rule::new("(has(self.ingresses) && size(self.ingresses) > 0) || has(self.selector)").message("name the Ingresses to manage in ingresses and/or select them with selector"))]
#[x_kube(validation = Rule::new("has(self.health.url) || has(self.health.controllerDeployment)").message("judge the primary tier with health.url and/or health.controllerDeployment").field_path(".health"))]
#[x_kube(validation = Rule::new("!has(self.backupHealth) || has(self.backupHealth.url) || has(self.backupHealth.controllerDeployment)").message("judge the backup tier with backupHealth.url and/or backupHealth.controllerDeployment, or omit backupHealth").field_path(".backupHealth"))]
pub struct IngressTierSpec {
    /// Names of Ingress objects in the policy's namespace to manage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub ingresses: Vec<String>,

    /// Manage every Ingress in the policy's namespace matching this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,

    /// Ingress class that serves traffic normally.
    #[schemars(length(min = 1, max = 253))]
    pub primary_class: String,

    /// Ingress class that takes over when the primary load balancer fails.
    #[schemars(length(min = 1, max = 253))]
    pub backup_class: String,

    /// SwitchClass rewrites the class of the managed Ingresses on failover and failback, in the
    /// form each uses: the legacy `kubernetes.io/ingress.class` annotation when present (ingress
    /// controllers honour it first), else `spec.ingressClassName`; never both. HotStandby keeps a mirrored copy of each Ingress on the backup class always in
    /// sync (configuration sync) and flips which one is authoritative, which also allows gradual
    /// failback by weight.
    #[serde(default)]
    pub mode: IngressMode,

    /// How the primary load balancer's health is judged.
    pub health: PrimaryTierHealth,

    /// How the backup load balancer's health is judged, with the same signals and the same
    /// fall/rise. Traffic never moves to a backup judged down: with both tiers down it stays
    /// on the primary class, and the FailoverActive condition, an Event and the alert
    /// `IngressFailoverBothTiersDown` say so. While traffic is on the backup and the backup goes
    /// down with the primary up, traffic returns to the primary at once (no hold-down). Omit to
    /// assume the backup serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_health: Option<PrimaryTierHealth>,

    /// HotStandby only: per-side annotations on top of what the mirror copies. The mirror on
    /// the backup class copies the source Ingress's annotations and labels (all but the
    /// ingress class and the operator's own `ingressfailover.io/` keys), so an `auth-url` or
    /// `rewrite-target` protects and shapes the backup side too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorSpec>,
}

/// DNS records for the load-balancer tier, written as one ExternalDNS `DNSEndpoint` named
/// `<policy>-dns` in the policy's namespace (owned by the policy; ExternalDNS with the `crd`
/// source publishes it to the DNS provider).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DnsSpec {
    /// The DNS names whose records point at the active tier (for example `shop.example.com`).
    #[schemars(length(min = 1, max = 16))]
    pub hostnames: Vec<DnsName>,

    /// TTL of the records, in seconds (the runbook's 60 by default). After a switch the tier
    /// traffic left keeps serving at least this long (resolvers may still hand out the old
    /// answer), and emergency capacity is not scaled down before that; each gradual failback
    /// step must last at least this long (`recovery.stepSeconds`).
    #[serde(default = "default_dns_ttl")]
    #[schemars(range(min = 1, max = 86400))]
    pub ttl_seconds: u32,

    /// Atomic (default): one record set per name, pointing at the active tier's load balancer.
    /// Weighted: two record sets per name (set identifiers `primary` and `backup`) with
    /// `aws/weight` equal to each tier's share of traffic, so each gradual failback step moves
    /// real traffic on Route 53-style providers. Failover: two record sets with Route 53
    /// failover routing (`aws/failover`), the active tier's set PRIMARY and the other
    /// SECONDARY.
    #[serde(default)]
    pub mode: DnsMode,

    /// Addresses of the primary tier's load balancer (IPs, or one host name), for load
    /// balancers whose address is in no status. When omitted, they are read from
    /// `status.loadBalancer.ingress` of the managed (primary-class) Ingresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub primary_targets: Vec<DnsTarget>,

    /// Addresses of the backup tier's load balancer. When omitted, they are read from the
    /// status of the HotStandby mirror Ingresses on the backup class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub backup_targets: Vec<DnsTarget>,
}

fn default_dns_ttl() -> u32 {
    60
}

/// A DNS name (letters, digits, hyphens and dots; a leading `*.` for a wildcard).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct DnsName(
    #[schemars(
        length(min = 1, max = 253),
        regex(
            pattern = r"^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$"
        )
    )]
    pub String,
);

/// A load balancer's address: an IPv4 or IPv6 address (an A or AAAA record) or a host name (a
/// CNAME).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct DnsTarget(
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[A-Za-z0-9.:-]+$"))] pub String,
);

/// How DNS records express the active tier.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DnsMode {
    #[default]
    Atomic,
    Weighted,
    Failover,
}

/// The Gateway API tier: which HTTPRoute templates to copy and the two Gateways the copies
/// attach to. (That the two differ is checked by the operator's own validation, not CEL:
/// kube-apiserver's cost estimate of comparing the two refs field by field is over budget.)
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.routes) && size(self.routes) > 0) || has(self.selector)").message("name the HTTPRoute templates in routes and/or select them with selector"))]
pub struct GatewayTierSpec {
    /// Names of HTTPRoute templates in the policy's namespace. A template is an HTTPRoute you
    /// write without `parentRefs` (so no Gateway serves it); for each, the operator writes and
    /// owns the route `<template>-failover` with the template's hostnames and rules and the
    /// parentRefs the tier decision chooses. Edits to the template are copied. A template with
    /// parentRefs of its own is refused (Ready=False): it would serve the same hostnames on the
    /// same listener as the copy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub routes: Vec<String>,

    /// Use every HTTPRoute in the policy's namespace matching this selector as a template
    /// (the operator's own copies are never selected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,

    /// The Gateway that serves traffic normally: the copies' parentRef outside a failover.
    pub primary_gateway: GatewayRef,

    /// The Gateway that takes over when the primary tier fails: the copies' parentRef while
    /// failed over (both during a gradual failback, so either Gateway serves them).
    pub backup_gateway: GatewayRef,

    /// How the primary tier is judged: the Gateway's own status by default, plus a health URL
    /// and/or the controller's Deployment if set. Omit to judge by the Gateway's status alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<GatewayTierHealth>,

    /// How the backup tier is judged, with the same signals. Traffic never moves to a backup
    /// judged down. Omit to judge the backup Gateway by its status alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_health: Option<GatewayTierHealth>,

    /// Emergency capacity as a weighted backend of the route copies (HAProxy's `weight 100`
    /// primaries beside `weight 50 backup` servers). When set, emergency endpoints are
    /// published in a Service of their own, `<managedService.name>-emergency`, and each copy's
    /// backendRef to the managed Service gets a sibling to it. Releasing the emergency ramps its
    /// weight down step by step instead of cutting it. Omit to publish emergency endpoints in
    /// the managed Service beside the primaries, as without the Gateway tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_weights: Option<BackendWeights>,
}

/// The weights of the primary and emergency backends in the route copies, per serving
/// backend: a backendRef's weight is its per-backend weight times the backends it publishes,
/// so each backend gets the share HAProxy would give a server of that weight, and a Service
/// with nothing published gets no traffic. (That `rampDownSteps` decrease is checked by the
/// operator's own validation: CEL has no portable way to say it on every supported version.)
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.rampDownSteps.all(s, s >= 1 && s <= 99)").message("rampDownSteps are percentages between 1 and 99").field_path(".rampDownSteps"))]
pub struct BackendWeights {
    /// Weight of each serving primary backend.
    #[serde(default = "default_primary_backend_weight")]
    #[schemars(range(min = 1, max = 1000))]
    pub primary: u32,

    /// Weight of each serving emergency backend, usually lower than the primaries'.
    #[serde(default = "default_emergency_backend_weight")]
    #[schemars(range(min = 1, max = 1000))]
    pub emergency: u32,

    /// Releasing the emergency: the percentages of `emergency` kept at each step, strictly
    /// decreasing, for example `[50, 25]`. After the last step the weight is 0 for one more
    /// step while the emergency endpoints stay published (requests in flight finish), then
    /// they leave and the emergency cooldown begins. Empty: 0 at once, still for one step.
    #[serde(default = "default_ramp_down_steps")]
    #[schemars(length(max = 10))]
    pub ramp_down_steps: Vec<u32>,

    /// Dwell of each ramp-down step, in seconds. A primary pool that falls below
    /// `thresholds.activateBelow` again during the ramp engages the emergency at full weight.
    #[serde(default = "default_ramp_down_step_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub ramp_down_step_seconds: u32,
}

fn default_primary_backend_weight() -> u32 {
    100
}
fn default_emergency_backend_weight() -> u32 {
    50
}
fn default_ramp_down_steps() -> Vec<u32> {
    vec![50, 25]
}
fn default_ramp_down_step_seconds() -> u32 {
    30
}

/// A Gateway a route copy attaches to (an HTTPRoute `parentRef`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRef {
    /// Name of the Gateway.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Namespace of the Gateway. Defaults to the policy's namespace. Another namespace needs
    /// the Gateway's listener to admit routes from the policy's namespace (`allowedRoutes`);
    /// the operator passes it through and the Gateway controller decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,

    /// The listener to attach to. Omit to attach to every listener that admits the route;
    /// when set, only that listener's status judges the tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub section_name: Option<String>,
}

/// Signals that judge a Gateway tier. Every signal set must hold for the tier to serve. A
/// backup with none (gatewayStatus false, no url, no controllerDeployment) is assumed to serve,
/// as an omitted `ingress.backupHealth` is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTierHealth {
    /// Judge the Gateway by its own status (default true): it serves while its `Accepted` and
    /// `Programmed` conditions are True for its current generation and its listener
    /// (`sectionName`, else every listener) is `Programmed`. The Gateway controller knows
    /// when its data plane cannot serve before any probe does. Debounced with the probe's
    /// fall/rise in intervals, like a controller Deployment. Turn it off for a Gateway
    /// controller that does not report these conditions.
    #[serde(default = "default_true")]
    pub gateway_status: bool,

    /// Plain-HTTP health URL of the tier's data plane, probed with `spec.probe`'s timing and
    /// thresholds (see `ingress.health.url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048), regex(pattern = r"^http://"))]
    pub url: Option<String>,

    /// The Gateway controller's Deployment, judged as `ingress.health.controllerDeployment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_deployment: Option<NamespacedRef>,

    /// Status codes of the health URL that count as healthy.
    #[serde(default = "default_expected_statuses")]
    #[schemars(length(min = 1, max = 16))]
    pub expected_statuses: Vec<StatusRange>,
}

impl Default for GatewayTierHealth {
    fn default() -> Self {
        GatewayTierHealth {
            gateway_status: true,
            url: None,
            controller_deployment: None,
            expected_statuses: default_expected_statuses(),
        }
    }
}

impl GatewayTierHealth {
    /// The URL and controller signals in the ingress tier's shape (one probe and judge path).
    pub fn as_tier_health(&self) -> PrimaryTierHealth {
        PrimaryTierHealth {
            url: self.url.clone(),
            controller_deployment: self.controller_deployment.clone(),
            expected_statuses: self.expected_statuses.clone(),
        }
    }
}

fn default_true() -> bool {
    true
}

impl GatewayTierSpec {
    /// The primary tier's signals (defaults when `health` is omitted).
    pub fn primary_health(&self) -> GatewayTierHealth {
        self.health.clone().unwrap_or_default()
    }

    /// The backup tier's signals (defaults when `backupHealth` is omitted).
    pub fn backup_health(&self) -> GatewayTierHealth {
        self.backup_health.clone().unwrap_or_default()
    }
}

impl GatewayRef {
    /// How the engine, status and Events name this Gateway as a side of the tier:
    /// `gateway/<name>`, `gateway/<namespace>/<name>`, with `#<sectionName>` when set.
    pub fn display(&self) -> String {
        let mut s = match &self.namespace {
            Some(ns) => format!("gateway/{ns}/{}", self.name),
            None => format!("gateway/{}", self.name),
        };
        if let Some(section) = &self.section_name {
            s.push('#');
            s.push_str(section);
        }
        s
    }
}

/// Per-side annotation overrides of a HotStandby pair.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MirrorSpec {
    /// Annotations the operator sets on each source (primary-class) Ingress, for settings that
    /// only the primary ingress controller understands.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub primary_annotations: std::collections::BTreeMap<String, String>,

    /// Annotations set on each backup-class mirror, replacing the copied value of the same key
    /// (for example different upstream-fail settings on the backup controller). An empty value
    /// leaves the copied annotation out of the mirror.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub backup_annotations: std::collections::BTreeMap<String, String>,
}

/// How ingress failover is carried out.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IngressMode {
    #[default]
    SwitchClass,
    HotStandby,
}

/// Signals that judge a load-balancer tier (the primary's in `health`, the backup's in
/// `backupHealth`). When both are set, both must hold.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrimaryTierHealth {
    /// Plain-HTTP health URL of the load balancer (for example
    /// `http://lb.example.internal/healthz`). Probed with `spec.probe`'s timing and thresholds;
    /// the host must be permitted by the operator's probe allowlist. (HTTPS health URLs are not
    /// probed in v1alpha1: load balancers expose their health check in plain HTTP.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048), regex(pattern = r"^http://"))]
    pub url: Option<String>,

    /// The ingress controller's Deployment: the tier is down once it has had no ready
    /// replica (or has not existed) for `failureThreshold × intervalSeconds`, and up again after
    /// `successThreshold × intervalSeconds` with one, the same fall/rise a probe gets. Must be
    /// in the policy's namespace unless the operator is started with that namespace in
    /// `--ingress-controller-namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_deployment: Option<NamespacedRef>,

    /// Status codes of the health URL that count as healthy.
    #[serde(default = "default_expected_statuses")]
    #[schemars(length(min = 1, max = 16))]
    pub expected_statuses: Vec<StatusRange>,
}

/// A reference to an object by namespace and name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedRef {
    /// Namespace of the object. Defaults to the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,

    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// When emergency capacity is engaged and released. Two thresholds with sustained windows give
/// hysteresis: a pool hovering around one value never toggles the emergency.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.deactivateAbove > self.activateBelow").message("deactivateAbove must be greater than activateBelow (hysteresis)").field_path(".deactivateAbove"))]
pub struct ThresholdsSpec {
    /// Engage emergency capacity when the primary pool's healthy ratio falls below this
    /// value... The ratio is healthy/total over the serving-eligible primary pool: backends
    /// Kubernetes marks terminating (a rollout, a planned scale-down) count in neither, so a
    /// rolling update never wakes emergency capacity by itself.
    #[serde(default = "default_activate_below")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub activate_below: f64,

    /// ...and stays below it for this many seconds.
    #[serde(default = "default_activate_for")]
    #[schemars(range(min = 0, max = 86400))]
    pub activate_for_seconds: u32,

    /// Release the emergency only once the healthy ratio is at or above this value...
    #[serde(default = "default_deactivate_above")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub deactivate_above: f64,

    /// ...and has stayed there for this many seconds. Emergency endpoints then leave the
    /// published set; the Deployment scales down after `recovery.emergencyCooldownSeconds`.
    #[serde(default = "default_deactivate_for")]
    #[schemars(range(min = 0, max = 86400))]
    pub deactivate_for_seconds: u32,
}

impl Default for ThresholdsSpec {
    fn default() -> Self {
        ThresholdsSpec {
            activate_below: default_activate_below(),
            activate_for_seconds: default_activate_for(),
            deactivate_above: default_deactivate_above(),
            deactivate_for_seconds: default_deactivate_for(),
        }
    }
}

fn default_activate_below() -> f64 {
    0.5
}
fn default_activate_for() -> u32 {
    30
}
fn default_deactivate_above() -> f64 {
    0.75
}
fn default_deactivate_for() -> u32 {
    120
}

/// Guard rails.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SafetySpec {
    /// FailOpen (default): when every backend fails its probe, publish all those Kubernetes
    /// reports ready rather than none — an empty Service is a certain outage, a degraded one may
    /// still serve (Envoy's panic threshold, made explicit). FailClosed: publish only what
    /// passes, even if that is nothing.
    #[serde(default)]
    pub fail_mode: FailMode,

    /// At most this share (percent) of the Kubernetes-ready primary pool is ever removed for
    /// failing probes, so a wrong probe configuration cannot empty the pool. At least one
    /// backend may always be ejected (as in Envoy), however small the pool; 0 means probes
    /// never eject anything (observe only). Backends Kubernetes itself reports not ready are
    /// not counted. Failing backends kept published by this limit are named in an
    /// `EjectionLimited` Event and counted in the `PublishEndpoints` reason.
    #[serde(default = "default_max_ejection")]
    #[schemars(range(min = 0, max = 100))]
    pub max_ejection_percent: u32,

    /// FailOpen only (Envoy's `healthy_panic_threshold`): while the healthy share of the primary
    /// pool (healthy primary backends plus serving emergency backends, over the primary
    /// backends that are not terminating) is below this percentage, the pool is in panic and
    /// every candidate is published: every non-terminating primary backend, ready or not, plus
    /// the serving emergency backends. Concentrating all traffic on the few backends still
    /// passing would overload them and turn a partial outage into a total one. Panic always
    /// applies when nothing passes, whatever this value; 0 means only then. Default 50, Envoy's
    /// default and the runbook's emergency line.
    #[serde(default = "default_panic_threshold")]
    #[schemars(range(min = 0, max = 100))]
    pub panic_threshold_percent: u32,

    /// Limits policy-level transitions (emergency on/off, failover/failback).
    #[serde(default)]
    pub flap_budget: FlapBudget,
}

impl Default for SafetySpec {
    fn default() -> Self {
        SafetySpec {
            fail_mode: FailMode::default(),
            max_ejection_percent: default_max_ejection(),
            panic_threshold_percent: default_panic_threshold(),
            flap_budget: FlapBudget::default(),
        }
    }
}

fn default_max_ejection() -> u32 {
    100
}
fn default_panic_threshold() -> u32 {
    50
}

/// What to publish when no backend passes its probe.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FailMode {
    #[default]
    FailOpen,
    FailClosed,
}

/// Per tier (emergency capacity, ingress), at most `maxTransitions` policy-level transitions
/// within a sliding `windowSeconds`. The budget only ever holds a tier on its safe side: a
/// protective move (failing over away from a load balancer judged down, waking emergency
/// capacity) is never refused; a return (failback, emergency release) that would leave no
/// room in the window for the protective move after it is refused, and that tier is Frozen
/// there. A tier thaws by itself once enough transitions have left the window, at once when a
/// spec edit raises the budget, when an override other than Auto starts (a human is in charge;
/// the budget starts afresh), or when the annotation
/// `ingressfailover.io/reset-flap-budget` is set to a new value (`kubectl annotate fp NAME
/// ingressfailover.io/reset-flap-budget="$(date +%s)" --overwrite`). Override-forced moves and
/// dry-run decisions never count.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FlapBudget {
    /// Transitions allowed within the window.
    #[serde(default = "default_max_transitions")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_transitions: u32,

    /// Length of the sliding window, in seconds.
    #[serde(default = "default_flap_window")]
    #[schemars(range(min = 1, max = 86400))]
    pub window_seconds: u32,
}

impl Default for FlapBudget {
    fn default() -> Self {
        FlapBudget {
            max_transitions: default_max_transitions(),
            window_seconds: default_flap_window(),
        }
    }
}

fn default_max_transitions() -> u32 {
    6
}
fn default_flap_window() -> u32 {
    3600
}

/// How things return to normal.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.failbackSteps) || self.failbackSteps.all(s, s >= 1 && s <= 100)").message("failbackSteps are percentages between 1 and 100").field_path(".failbackSteps"))]
#[x_kube(validation = Rule::new("!has(self.failbackSteps) || (self.failbackSteps.isSorted() && self.failbackSteps.all(s, self.failbackSteps.exists_one(t, t == s)))").message("failbackSteps must be strictly increasing").field_path(".failbackSteps"))]
pub struct RecoverySpec {
    /// Fail back to the primary ingress class only after the primary load balancer has been
    /// healthy this many seconds without interruption: any failed check of its health URL, even
    /// one short of `failureThreshold`, and any moment its controller Deployment is not ready
    /// restart the count. Measured on a monotonic clock, so a wall-clock step never shortens it.
    #[serde(default = "default_hold_down")]
    #[schemars(range(min = 0, max = 86400))]
    pub hold_down_seconds: u32,

    /// Gradual failback: percentages of traffic returned to the primary, one step per
    /// `stepSeconds`, for example `[10, 50, 100]`. Empty means an atomic switch after hold-down.
    /// Needs `ingress.mode: HotStandby`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub failback_steps: Vec<u32>,

    /// Dwell time of each failback step, in seconds. If the primary fails during a step, traffic
    /// returns to the backup at once.
    #[serde(default = "default_step_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub step_seconds: u32,

    /// After the emergency is released, keep the emergency Deployment at its active size this
    /// many seconds more before scaling it back to standby ("scale down last"). The cooldown
    /// counts from the later of the release and the moment traffic is fully back on the
    /// primary ingress class: capacity never shrinks while the backup tier still serves.
    #[serde(default = "default_emergency_cooldown")]
    #[schemars(range(min = 0, max = 86400))]
    pub emergency_cooldown_seconds: u32,
}

impl Default for RecoverySpec {
    fn default() -> Self {
        RecoverySpec {
            hold_down_seconds: default_hold_down(),
            failback_steps: Vec::new(),
            step_seconds: default_step_seconds(),
            emergency_cooldown_seconds: default_emergency_cooldown(),
        }
    }
}

fn default_hold_down() -> u32 {
    300
}
fn default_step_seconds() -> u32 {
    60
}
fn default_emergency_cooldown() -> u32 {
    300
}

/// A manual override, kept until it expires or is removed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode == 'Auto' || size(self.reason) > 0").message("an override needs a reason: it is kept in status for the next person on call").field_path(".reason"))]
pub struct OverrideSpec {
    /// Auto: the operator decides. ForcePrimary / ForceBackup: traffic stays on that ingress
    /// class whatever the health checks say. Freeze: nothing changes at all (no transition, no
    /// endpoint change, no scaling) until the override ends. Any mode but Auto clears a
    /// flap-budget freeze (a human is in charge); when the override ends, automatic decisions
    /// resume with a fresh budget and with sustain windows measured through the override.
    pub mode: OverrideMode,

    /// When the override stops applying (RFC 3339). Omit for no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// Why, in words; shown in status and Events.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub reason: String,
}

/// Manual override modes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OverrideMode {
    #[default]
    Auto,
    ForcePrimary,
    ForceBackup,
    Freeze,
}

/// What deletion of the policy does to the objects it manages.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    #[default]
    Restore,
    Orphan,
}
