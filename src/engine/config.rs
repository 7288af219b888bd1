//! The engine's view of a policy: the spec reduced to plain numbers, resolved once per spec
//! generation so the hot path never re-reads optional fields or converts units.

use crate::api::{DnsMode, FailMode, FailoverPolicySpec, IngressMode, OverrideMode};

/// Milliseconds: the engine's only notion of time, injected by the caller.
pub type Millis = i64;

/// The instant of one step, on two clocks.
///
/// `mono` measures every window (sustain, hold-down, cooldown, dwell, flap budget): it never
/// jumps, so a wall-clock step cannot satisfy a wait. `wall` (milliseconds since the Unix
/// epoch) only stamps what people read: history, status times, override expiry. Callers that
/// have one clock (tests, the simulator without clock steps) pass a plain `Millis`, used for
/// both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: Millis,
    pub wall: Millis,
}

impl From<Millis> for Now {
    fn from(t: Millis) -> Self {
        Now { mono: t, wall: t }
    }
}

impl Now {
    /// The wall-clock time of a monotonic instant, as seen from this step.
    pub fn wall_of(self, mono: Millis) -> Millis {
        self.wall - (self.mono - mono)
    }

    /// The monotonic instant of a wall-clock time, as seen from this step (for times read
    /// back from status after a restart).
    pub fn mono_of(self, wall: Millis) -> Millis {
        self.mono - (self.wall - wall)
    }
}

/// Override as the engine applies it.
#[derive(Debug, Clone, PartialEq)]
pub struct OverrideConfig {
    pub mode: OverrideMode,
    pub expires_at: Option<Millis>,
    pub reason: String,
}

/// Emergency capacity as the engine applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmergencyConfig {
    /// Whether a Deployment is scaled (otherwise only standby addresses are used).
    pub has_deployment: bool,
    pub standby_replicas: i32,
    /// Already clamped to `max_replicas`.
    pub active_replicas: i32,
    pub max_replicas: i32,
}

/// The load-balancer tier as the engine applies it.
#[derive(Debug, Clone, PartialEq)]
pub struct IngressConfig {
    pub primary_class: String,
    pub backup_class: String,
    pub mode: IngressMode,
    /// Whether a health URL is probed (its results arrive as load-balancer checks).
    pub has_health_url: bool,
    /// Whether the ingress controller Deployment's readiness is watched.
    pub has_controller: bool,
    /// The same two signals for the backup tier (both false: the backup is assumed to serve).
    pub has_backup_url: bool,
    pub has_backup_controller: bool,
    /// Whether the primary Gateway's own status is a signal (`spec.gateway`, `gatewayStatus`):
    /// its facts arrive as [`crate::engine::Observation::lb_gateway`].
    pub has_gateway: bool,
    /// The same for the backup Gateway.
    pub has_backup_gateway: bool,
}

/// The DNS tier as the engine applies it (`spec.dns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsConfig {
    /// The records' TTL: how long the tier traffic left keeps serving after a switch.
    pub ttl_ms: Millis,
    pub mode: DnsMode,
}

/// Releasing weighted emergency capacity (`spec.gateway.backendWeights`): the emergency
/// backends' weight falls through `steps` (percent of their full weight, strictly decreasing),
/// then to 0 for one more step with the endpoints still published, one `step_ms` each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencyRamp {
    pub steps: Vec<u32>,
    pub step_ms: Millis,
}

impl EmergencyRamp {
    /// The weight, in percent, at ramp step `step` (the step after the last is 0).
    pub fn percent(&self, step: usize) -> u32 {
        self.steps.get(step).copied().unwrap_or(0)
    }

    /// The index of the final step, at 0 %.
    pub fn last(&self) -> usize {
        self.steps.len()
    }
}

/// Everything the engine needs from the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub rise: u32,
    pub fall: u32,
    pub interval_ms: i64,
    pub activate_below: f64,
    pub activate_for_ms: i64,
    pub deactivate_above: f64,
    pub deactivate_for_ms: i64,
    pub fail_closed: bool,
    pub max_ejection_percent: u32,
    pub panic_threshold_percent: u32,
    pub flap_max_transitions: u32,
    pub flap_window_ms: i64,
    pub hold_down_ms: i64,
    /// Strictly increasing percentages below 100; reaching the end means 100.
    pub failback_steps: Vec<u32>,
    pub step_ms: i64,
    pub emergency_cooldown_ms: i64,
    pub emergency: Option<EmergencyConfig>,
    /// Set when emergency capacity is a weighted backend of its own (only with `emergency`).
    pub emergency_ramp: Option<EmergencyRamp>,
    pub ingress: Option<IngressConfig>,
    /// DNS records follow the ingress tier (only with an ingress tier).
    pub dns: Option<DnsConfig>,
    pub override_: Option<OverrideConfig>,
    pub dry_run: bool,
    /// The value of the `ingressfailover.io/reset-flap-budget` annotation (metadata, not spec:
    /// set by the caller). A value the engine has not acted on yet clears every freeze.
    pub flap_budget_reset: Option<String>,
}

const SECOND: i64 = 1000;

/// The one load-balancer tier machine's config, from `spec.ingress`, `spec.gateway` or both
/// (one decision moves both). With both, the classes name the Ingress classes and the URL and
/// controller signals are the ingress tier's (validation refuses them in `spec.gateway`); the
/// Gateways' status adds a signal to each side. With the Gateway tier alone, the sides are
/// named by [`crate::api::GatewayRef::display`].
fn tier_config(spec: &FailoverPolicySpec) -> Option<IngressConfig> {
    let gw = spec.gateway.as_ref();
    let (gw_primary, gw_backup) = (
        gw.map(|g| g.primary_health()),
        gw.map(|g| g.backup_health()),
    );
    let has_gateway = gw_primary.as_ref().is_some_and(|h| h.gateway_status);
    let has_backup_gateway = gw_backup.as_ref().is_some_and(|h| h.gateway_status);
    match (&spec.ingress, gw) {
        (Some(i), _) => Some(IngressConfig {
            primary_class: i.primary_class.clone(),
            backup_class: i.backup_class.clone(),
            mode: i.mode,
            has_health_url: i.health.url.is_some(),
            has_controller: i.health.controller_deployment.is_some(),
            has_backup_url: i.backup_health.as_ref().is_some_and(|b| b.url.is_some()),
            has_backup_controller: i
                .backup_health
                .as_ref()
                .is_some_and(|b| b.controller_deployment.is_some()),
            has_gateway,
            has_backup_gateway,
        }),
        (None, Some(g)) => {
            let (p, b) = (
                gw_primary.unwrap_or_default(),
                gw_backup.unwrap_or_default(),
            );
            Some(IngressConfig {
                primary_class: g.primary_gateway.display(),
                backup_class: g.backup_gateway.display(),
                mode: IngressMode::HotStandby,
                has_health_url: p.url.is_some(),
                has_controller: p.controller_deployment.is_some(),
                has_backup_url: b.url.is_some(),
                has_backup_controller: b.controller_deployment.is_some(),
                has_gateway,
                has_backup_gateway,
            })
        }
        (None, None) => None,
    }
}

impl EngineConfig {
    /// Resolves a spec. The spec is assumed to have passed validation; where it has not, values
    /// are clamped into range rather than trusted, so the engine's invariants hold regardless.
    pub fn from_spec(spec: &FailoverPolicySpec) -> Self {
        let emergency = spec
            .backends
            .emergency
            .as_ref()
            .map(|pool| match &pool.deployment {
                Some(d) => {
                    let max = d.max_replicas.max(0);
                    let active = d.active_replicas.clamp(0, max);
                    EmergencyConfig {
                        has_deployment: true,
                        standby_replicas: d.standby_replicas.clamp(0, active),
                        active_replicas: active,
                        max_replicas: max,
                    }
                }
                None => EmergencyConfig {
                    has_deployment: false,
                    standby_replicas: 0,
                    active_replicas: 0,
                    max_replicas: 0,
                },
            });
        let ingress = tier_config(spec);
        let mut steps: Vec<u32> = spec
            .recovery
            .failback_steps
            .iter()
            .copied()
            .filter(|s| (1..100).contains(s))
            .collect();
        steps.sort_unstable();
        steps.dedup();
        if spec.gateway.is_none()
            && spec.ingress.as_ref().map(|i| i.mode) != Some(IngressMode::HotStandby)
        {
            steps.clear();
        }
        let t = &spec.thresholds;
        let dns = spec
            .dns
            .as_ref()
            .filter(|_| ingress.is_some())
            .map(|d| DnsConfig {
                ttl_ms: i64::from(d.ttl_seconds.max(1)) * SECOND,
                mode: d.mode,
            });
        // A failback step shorter than the TTL would not move the traffic it claims (validation
        // refuses it; clamped here so the engine's promise holds regardless).
        let step_ms = (i64::from(spec.recovery.step_seconds.max(1)) * SECOND)
            .max(dns.map_or(0, |d| d.ttl_ms));
        let emergency_ramp = spec
            .gateway
            .as_ref()
            .and_then(|g| g.backend_weights.as_ref())
            .filter(|_| emergency.is_some())
            .map(|w| {
                let mut steps: Vec<u32> = w
                    .ramp_down_steps
                    .iter()
                    .copied()
                    .filter(|s| (1..100).contains(s))
                    .collect();
                steps.sort_unstable_by(|a, b| b.cmp(a));
                steps.dedup();
                EmergencyRamp {
                    steps,
                    step_ms: i64::from(w.ramp_down_step_seconds.max(1)) * SECOND,
                }
            });
        EngineConfig {
            rise: spec.probe.success_threshold.max(1),
            fall: spec.probe.failure_threshold.max(1),
            interval_ms: i64::from(spec.probe.interval_seconds.max(1)) * SECOND,
            activate_below: t.activate_below.clamp(0.0, 1.0),
            activate_for_ms: i64::from(t.activate_for_seconds) * SECOND,
            deactivate_above: t.deactivate_above.clamp(0.0, 1.0),
            deactivate_for_ms: i64::from(t.deactivate_for_seconds) * SECOND,
            fail_closed: spec.safety.fail_mode == FailMode::FailClosed,
            max_ejection_percent: spec.safety.max_ejection_percent.min(100),
            panic_threshold_percent: spec.safety.panic_threshold_percent.min(100),
            flap_max_transitions: spec.safety.flap_budget.max_transitions.max(1),
            flap_window_ms: i64::from(spec.safety.flap_budget.window_seconds.max(1)) * SECOND,
            hold_down_ms: i64::from(spec.recovery.hold_down_seconds) * SECOND,
            failback_steps: steps,
            step_ms,
            emergency_cooldown_ms: i64::from(spec.recovery.emergency_cooldown_seconds) * SECOND,
            emergency,
            emergency_ramp,
            ingress,
            dns,
            override_: spec.r#override.as_ref().map(|o| OverrideConfig {
                mode: o.mode,
                expires_at: o.expires_at.as_ref().map(|t| t.0.as_millisecond()),
                reason: o.reason.clone(),
            }),
            dry_run: spec.dry_run,
            flap_budget_reset: None,
        }
    }

    /// The annotation that asks for a flap-budget reset.
    pub const RESET_ANNOTATION: &'static str = "ingressfailover.io/reset-flap-budget";

    /// How long a signal without rise/fall counts of its own (the ingress controller's
    /// readiness) must hold before it flips the verdict: the time a probe would take.
    pub fn fall_ms(&self) -> Millis {
        i64::from(self.fall) * self.interval_ms
    }

    pub fn rise_ms(&self) -> Millis {
        i64::from(self.rise) * self.interval_ms
    }

    /// The override in force at wall-clock time `now`, if any (Auto counts as none).
    pub fn override_at(&self, now: Millis) -> Option<&OverrideConfig> {
        self.override_
            .as_ref()
            .filter(|o| o.mode != OverrideMode::Auto && o.expires_at.is_none_or(|exp| now < exp))
    }
}
