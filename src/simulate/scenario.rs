//! The scenario file: what happens to the simulated world, and when.
//!
//! Parsing is two-pass on purpose. serde-saphyr reads the YAML into "raw" structs whose
//! time-like and enum-like fields are plain strings; a second pass resolves them against the
//! policy (its addresses, its probe, its ingress tier) and the scenario's own clock. That second
//! pass knows where it is (`events[3].at`), so every error names the field an author must fix —
//! a typed serde error could only say "invalid value" somewhere in the document.
//!
//! The format is documented for authors in `docs/scenarios.md`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};
use serde::Deserialize;

use crate::api::FailoverPolicySpec;
use crate::engine::{Millis, Pool};

use super::SimulateError;

/// Default delay between an emergency pod's creation and its readiness (the runbook's 2 min).
const DEFAULT_READY_AFTER_MS: Millis = 120_000;
/// Baseline latency of a healthy backend when the scenario does not say.
pub(crate) const DEFAULT_LATENCY_MS: u32 = 5;
/// A replay longer than this many steps is refused: it would be a typo (`resolution: 1ms` over
/// a week), not a scenario.
const MAX_STEPS: i64 = 20_000_000;

/// A parsed and resolved scenario. All times are engine milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Free text shown in the outputs' headers.
    pub description: Option<String>,
    pub start: Millis,
    pub end: Millis,
    pub resolution_ms: Millis,
    /// The UTC offset of `start`, used to print wall-clock times the way the author wrote them.
    pub offset: Offset,
    pub seed: u64,
    /// Primary backends with their initial behaviour, sorted by address.
    pub primary: Vec<BackendInit>,
    /// Static emergency addresses from the policy, with their initial behaviour.
    pub emergency_static: Vec<BackendInit>,
    pub emergency_pods: PodTemplate,
    /// Timed facts, in the order they happen (file order breaks ties).
    pub events: Vec<Event>,
}

/// One backend as the world starts.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendInit {
    pub address: String,
    pub behaviour: Behaviour,
    /// Kubernetes readiness (static addresses are always ready).
    pub ready: bool,
}

/// How the emergency Deployment's pods come to life.
#[derive(Debug, Clone, PartialEq)]
pub struct PodTemplate {
    pub ready_after_ms: Millis,
    /// Pod addresses, handed out in order as replicas are created.
    pub first_address: Ipv4Addr,
    pub capacity: u32,
    pub port: u16,
}

impl PodTemplate {
    /// Whether `address` is one the pod range could hand out.
    pub fn contains(&self, address: &str) -> bool {
        use crate::validation::address::{Host, parse_host_port};
        let Ok((Host::Ip(std::net::IpAddr::V4(ip)), port)) = parse_host_port(address) else {
            return false;
        };
        let (first, ip) = (u32::from(self.first_address), u32::from(ip));
        port == self.port && ip >= first && ip - first < self.capacity
    }

    /// The address of the pod with this ordinal.
    pub fn address(&self, ordinal: u32) -> String {
        let ip = Ipv4Addr::from(u32::from(self.first_address) + ordinal);
        format!("{ip}:{}", self.port)
    }
}

/// How a backend (or the load balancer's health URL) answers a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers 200 after `latency_ms` (a TooSlow or Timeout once that exceeds the probe's limits).
    Answers { latency_ms: u32 },
    /// Never answers: every probe times out.
    Down,
    /// Nothing listens: connections are refused at once.
    Refusing,
    /// Answers with this HTTP status.
    Status { code: u16 },
    /// Alternates between answering (for `up_ms`) and timing out (for `down_ms`), starting up at
    /// `since`.
    Flapping {
        up_ms: Millis,
        down_ms: Millis,
        since: Millis,
    },
}

impl Behaviour {
    pub const HEALTHY: Behaviour = Behaviour::Answers {
        latency_ms: DEFAULT_LATENCY_MS,
    };

    /// The behaviour in force at `now` once flapping is unfolded.
    pub fn at(self, now: Millis) -> Behaviour {
        match self {
            Behaviour::Flapping {
                up_ms,
                down_ms,
                since,
            } => {
                let phase = (now - since).rem_euclid(up_ms + down_ms);
                if phase < up_ms {
                    Behaviour::HEALTHY
                } else {
                    Behaviour::Down
                }
            }
            other => other,
        }
    }

    /// Short words for tables and the scenario rows of the timeline.
    pub fn describe(self) -> String {
        match self {
            Behaviour::Answers { latency_ms } if latency_ms == DEFAULT_LATENCY_MS => {
                "up: answers normally".to_string()
            }
            Behaviour::Answers { latency_ms } => format!("slow: answers in {latency_ms}ms"),
            Behaviour::Down => "down: probes time out".to_string(),
            Behaviour::Refusing => "refusing: connections refused".to_string(),
            Behaviour::Status { code } => format!("badStatus: answers HTTP {code}"),
            Behaviour::Flapping { up_ms, down_ms, .. } => format!(
                "flapping: up {}s / down {}s, repeating",
                up_ms as f64 / 1000.0,
                down_ms as f64 / 1000.0
            ),
        }
    }
}

/// What a timed fact changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A backend's probe behaviour.
    Backend {
        address: String,
        pool: Pool,
        behaviour: Behaviour,
    },
    /// A backend's Kubernetes readiness (EndpointSlice `conditions.ready`).
    Readiness {
        address: String,
        pool: Pool,
        ready: bool,
    },
    /// A pod of the primary Service starts terminating (EndpointSlice `terminating`): it is
    /// never published again and leaves the pool's ratio.
    Terminating { address: String },
    /// How the primary load balancer's health URL answers.
    LoadBalancer { behaviour: Behaviour },
    /// How the backup load balancer's health URL answers (`ingress.backupHealth.url`).
    BackupLoadBalancer { behaviour: Behaviour },
    /// Whether the backup ingress controller Deployment has a ready replica.
    BackupIngressController { ready: bool },
    /// Whether the primary ingress controller Deployment has a ready replica.
    IngressController { ready: bool },
    /// A watched Deployment is deleted (`deleteObject`) or created again (`recreate`).
    Object { object: WatchedObject, exists: bool },
    /// The operator restarts (a crash, a rollout, a leader change): the engine is rebuilt from
    /// the last status it wrote, and every fact is observed afresh.
    Restart,
    /// Someone edits the policy: a JSON merge patch applied to `spec` (validated with the same
    /// rules as `check` and the controller; an invalid result is held, not applied).
    Edit { patch: serde_json::Value },
    /// The wall clock steps by this many milliseconds (NTP, a VM resumed); monotonic time does
    /// not.
    ClockStep { ms: Millis },
    /// Someone sets the `ingressfailover.io/reset-flap-budget` annotation to a new value.
    ResetFlapBudget,
}

/// A Deployment the operator watches or scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchedObject {
    EmergencyDeployment,
    IngressController,
}

impl WatchedObject {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchedObject::EmergencyDeployment => "emergencyDeployment",
            WatchedObject::IngressController => "ingressController",
        }
    }
}

/// One timed fact.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: Millis,
    pub change: Change,
    /// The author's note, printed next to the fact.
    pub note: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Raw (serde) form.

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawScenario {
    description: Option<String>,
    start: String,
    duration: String,
    resolution: Option<String>,
    seed: Option<u64>,
    #[serde(default)]
    backends: Vec<RawBackend>,
    emergency: Option<RawEmergency>,
    #[serde(default)]
    events: Vec<RawEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawBackend {
    address: String,
    state: Option<String>,
    latency_ms: Option<u32>,
    status: Option<u16>,
    up_for: Option<String>,
    down_for: Option<String>,
    ready: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEmergency {
    ready_after: Option<String>,
    pod_range: Option<String>,
    pod_port: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEvent {
    at: String,
    backend: Option<String>,
    backends: Option<Vec<String>>,
    load_balancer: Option<String>,
    ingress_controller: Option<String>,
    backup_load_balancer: Option<String>,
    backup_ingress_controller: Option<String>,
    restart: Option<bool>,
    edit: Option<serde_json::Value>,
    delete_object: Option<String>,
    recreate: Option<String>,
    clock_step: Option<String>,
    reset_flap_budget: Option<bool>,
    state: Option<String>,
    latency_ms: Option<u32>,
    status: Option<u16>,
    up_for: Option<String>,
    down_for: Option<String>,
    note: Option<String>,
}

/// The behaviour fields shared by `backends[]` entries and backend events.
struct BehaviourFields<'a> {
    state: &'a str,
    latency_ms: Option<u32>,
    status: Option<u16>,
    up_for: Option<&'a str>,
    down_for: Option<&'a str>,
}

// ---------------------------------------------------------------------------------------------
// Resolution.

/// Parses and resolves `text` against the policy it will be replayed with.
pub fn parse(text: &str, spec: &FailoverPolicySpec) -> Result<Scenario, SimulateError> {
    let raw: RawScenario =
        serde_saphyr::from_str(text).map_err(|e| SimulateError::ScenarioSyntax {
            message: e.to_string(),
        })?;
    resolve(raw, spec)
}

fn field_err(field: impl Into<String>, message: impl Into<String>) -> SimulateError {
    SimulateError::ScenarioField {
        field: field.into(),
        message: message.into(),
    }
}

fn resolve(raw: RawScenario, spec: &FailoverPolicySpec) -> Result<Scenario, SimulateError> {
    let (clock, resolution_ms) = resolve_clock(&raw)?;
    let (primary, emergency_static) = resolve_backends(&raw, spec, clock.start)?;
    let emergency_pods = resolve_emergency(&raw, spec, &primary, &emergency_static)?;
    let events = resolve_events(&raw, spec, &clock, &primary, &emergency_static)?;
    Ok(Scenario {
        description: raw.description,
        start: clock.start,
        end: clock.end,
        resolution_ms,
        offset: clock.offset,
        seed: raw.seed.unwrap_or(1),
        primary,
        emergency_static,
        emergency_pods,
        events,
    })
}

/// `start`, `duration` and `resolution`: the scenario's clock and its step.
fn resolve_clock(raw: &RawScenario) -> Result<(Clock, Millis), SimulateError> {
    let (start, offset) = parse_start(&raw.start).map_err(|m| field_err("start", m))?;
    let duration = parse_duration(&raw.duration).map_err(|m| field_err("duration", m))?;
    if duration <= 0 {
        return Err(field_err("duration", "must be longer than zero"));
    }
    let resolution_ms = match &raw.resolution {
        Some(r) => parse_duration(r).map_err(|m| field_err("resolution", m))?,
        None => 1000,
    };
    if resolution_ms <= 0 {
        return Err(field_err("resolution", "must be longer than zero"));
    }
    if resolution_ms > duration {
        return Err(field_err(
            "resolution",
            format!(
                "{} is longer than the duration {}",
                raw.resolution.clone().unwrap_or_default(),
                raw.duration
            ),
        ));
    }
    if duration / resolution_ms > MAX_STEPS {
        return Err(field_err(
            "resolution",
            format!(
                "{} over {} is {} steps; at most {MAX_STEPS} are allowed",
                raw.resolution.clone().unwrap_or_default(),
                raw.duration,
                duration / resolution_ms
            ),
        ));
    }
    let end = start + duration;
    Ok((Clock { start, end, offset }, resolution_ms))
}

/// The primary pool and the static emergency addresses, with their initial behaviour.
fn resolve_backends(
    raw: &RawScenario,
    spec: &FailoverPolicySpec,
    start: Millis,
) -> Result<(Vec<BackendInit>, Vec<BackendInit>), SimulateError> {
    // Primary pool: the policy's static addresses, plus (for a Service-backed pool) the pods the
    // scenario lists. Initial behaviour from `backends[]`.
    let policy_primary: BTreeSet<&str> = spec
        .backends
        .primary
        .addresses
        .iter()
        .map(|a| a.0.as_str())
        .collect();
    let policy_emergency: BTreeSet<&str> = spec
        .backends
        .emergency
        .iter()
        .flat_map(|e| e.addresses.iter().map(|a| a.0.as_str()))
        .collect();
    let has_service = spec.backends.primary.service.is_some();
    let mut primary: Vec<BackendInit> = policy_primary
        .iter()
        .map(|a| BackendInit {
            address: (*a).to_string(),
            behaviour: Behaviour::HEALTHY,
            ready: true,
        })
        .collect();
    let mut emergency_static: Vec<BackendInit> = policy_emergency
        .iter()
        .map(|a| BackendInit {
            address: (*a).to_string(),
            behaviour: Behaviour::HEALTHY,
            ready: true,
        })
        .collect();
    for (i, b) in raw.backends.iter().enumerate() {
        let field = format!("backends[{i}]");
        check_address(&b.address).map_err(|m| field_err(format!("{field}.address"), m))?;
        let behaviour = match &b.state {
            Some(state) => {
                let fields = BehaviourFields {
                    state,
                    latency_ms: b.latency_ms,
                    status: b.status,
                    up_for: b.up_for.as_deref(),
                    down_for: b.down_for.as_deref(),
                };
                match behaviour(&field, &fields, start)? {
                    Some(bh) => bh,
                    None => {
                        return Err(field_err(
                            format!("{field}.state"),
                            "an initial state is a probe behaviour (up, down, refusing, slow, badStatus, flapping); set Kubernetes readiness with `ready: false`",
                        ));
                    }
                }
            }
            None => {
                if b.latency_ms.is_some() || b.status.is_some() {
                    return Err(field_err(
                        format!("{field}.state"),
                        "latencyMs and status need a state (slow or badStatus)",
                    ));
                }
                Behaviour::HEALTHY
            }
        };
        let ready = b.ready.unwrap_or(true);
        if let Some(e) = emergency_static.iter_mut().find(|e| e.address == b.address) {
            if !ready {
                return Err(field_err(
                    format!("{field}.ready"),
                    "static addresses have no Kubernetes readiness; they are always ready",
                ));
            }
            e.behaviour = behaviour;
            continue;
        }
        if let Some(p) = primary.iter_mut().find(|p| p.address == b.address) {
            if !ready && !has_service {
                return Err(field_err(
                    format!("{field}.ready"),
                    "static addresses have no Kubernetes readiness; they are always ready",
                ));
            }
            p.behaviour = behaviour;
            p.ready = ready;
            continue;
        }
        if !has_service {
            return Err(field_err(
                format!("{field}.address"),
                format!(
                    "{} is not in the policy's spec.backends.primary.addresses, and the policy has no Service whose pods it could be",
                    b.address
                ),
            ));
        }
        primary.push(BackendInit {
            address: b.address.clone(),
            behaviour,
            ready,
        });
    }
    primary.sort_by(|a, b| a.address.cmp(&b.address));
    if primary.is_empty() {
        return Err(field_err(
            "backends",
            "the primary pool is empty: the policy selects a Service, so list its pods here (address, optional state and ready)",
        ));
    }

    Ok((primary, emergency_static))
}

/// The emergency Deployment's pods, in a range that overlaps no static backend.
fn resolve_emergency(
    raw: &RawScenario,
    spec: &FailoverPolicySpec,
    primary: &[BackendInit],
    emergency_static: &[BackendInit],
) -> Result<PodTemplate, SimulateError> {
    let deployment = spec
        .backends
        .emergency
        .as_ref()
        .and_then(|e| e.deployment.as_ref());
    let emergency_pods = resolve_pods(raw.emergency.as_ref(), deployment.map(|d| d.max_replicas))?;

    for b in primary.iter().chain(emergency_static) {
        if deployment.is_some() && emergency_pods.contains(&b.address) {
            return Err(field_err(
                "emergency.podRange",
                format!(
                    "{} is a static backend but lies in the emergency pod range; pick a range that does not overlap",
                    b.address
                ),
            ));
        }
    }

    Ok(emergency_pods)
}

/// The scripted events, in time order (simultaneous ones in file order).
fn resolve_events(
    raw: &RawScenario,
    spec: &FailoverPolicySpec,
    clock: &Clock,
    primary: &[BackendInit],
    emergency_static: &[BackendInit],
) -> Result<Vec<Event>, SimulateError> {
    let mut events = Vec::with_capacity(raw.events.len());
    for (i, ev) in raw.events.iter().enumerate() {
        let field = format!("events[{i}]");
        let at = clock
            .parse_at(&ev.at)
            .map_err(|m| field_err(format!("{field}.at"), m))?;
        resolve_event(&field, ev, at, spec, primary, emergency_static, &mut events)?;
    }
    // Stable: simultaneous facts keep file order.
    events.sort_by_key(|e| e.at);

    Ok(events)
}

fn resolve_pods(
    raw: Option<&RawEmergency>,
    max_replicas: Option<i32>,
) -> Result<PodTemplate, SimulateError> {
    if raw.is_some() && max_replicas.is_none() {
        return Err(field_err(
            "emergency",
            "the policy has no spec.backends.emergency.deployment, so there are no emergency pods to describe",
        ));
    }
    let ready_after_ms = match raw.and_then(|r| r.ready_after.as_deref()) {
        Some(s) => parse_duration(s).map_err(|m| field_err("emergency.readyAfter", m))?,
        None => DEFAULT_READY_AFTER_MS,
    };
    if ready_after_ms < 0 {
        return Err(field_err("emergency.readyAfter", "must not be negative"));
    }
    let range = raw
        .and_then(|r| r.pod_range.as_deref())
        .unwrap_or("10.0.2.0/24");
    let (first_address, capacity) =
        parse_cidr(range).map_err(|m| field_err("emergency.podRange", m))?;
    let max = max_replicas.unwrap_or(0).max(0) as u32;
    if max > capacity {
        return Err(field_err(
            "emergency.podRange",
            format!("{range} holds {capacity} pod addresses but the policy's maxReplicas is {max}"),
        ));
    }
    let port = raw.and_then(|r| r.pod_port).unwrap_or(8080);
    if port == 0 {
        return Err(field_err(
            "emergency.podPort",
            "must be between 1 and 65535",
        ));
    }
    Ok(PodTemplate {
        ready_after_ms,
        first_address,
        capacity,
        port,
    })
}

fn resolve_event(
    field: &str,
    ev: &RawEvent,
    at: Millis,
    spec: &FailoverPolicySpec,
    primary: &[BackendInit],
    emergency_static: &[BackendInit],
    out: &mut Vec<Event>,
) -> Result<(), SimulateError> {
    let targets = [
        ev.backend.is_some() as u8,
        ev.backends.is_some() as u8,
        ev.load_balancer.is_some() as u8,
        ev.ingress_controller.is_some() as u8,
        ev.backup_load_balancer.is_some() as u8,
        ev.backup_ingress_controller.is_some() as u8,
        ev.restart.is_some() as u8,
        ev.edit.is_some() as u8,
        ev.delete_object.is_some() as u8,
        ev.recreate.is_some() as u8,
        ev.clock_step.is_some() as u8,
        ev.reset_flap_budget.is_some() as u8,
    ]
    .iter()
    .sum::<u8>();
    if targets != 1 {
        return Err(field_err(
            field,
            "set exactly one of backend, backends, loadBalancer, ingressController, backupLoadBalancer, backupIngressController, restart, edit, deleteObject, recreate, clockStep or resetFlapBudget",
        ));
    }
    let note = ev.note.clone();
    if let Some(change) = resolve_control(field, ev, spec)? {
        out.push(Event { at, change, note });
        return Ok(());
    }
    let backup_health = spec.ingress.as_ref().and_then(|i| i.backup_health.as_ref());
    if let Some(lb) = &ev.backup_load_balancer {
        if backup_health.is_none_or(|b| b.url.is_none()) {
            return Err(field_err(
                format!("{field}.backupLoadBalancer"),
                "the policy has no spec.ingress.backupHealth.url, so the backup's health URL is never probed",
            ));
        }
        let behaviour = lb_behaviour(&format!("{field}.backupLoadBalancer"), ev, lb, at)?;
        out.push(Event {
            at,
            change: Change::BackupLoadBalancer { behaviour },
            note,
        });
        return Ok(());
    }
    if let Some(ic) = &ev.backup_ingress_controller {
        if backup_health.is_none_or(|b| b.controller_deployment.is_none()) {
            return Err(field_err(
                format!("{field}.backupIngressController"),
                "the policy has no spec.ingress.backupHealth.controllerDeployment",
            ));
        }
        let ready = ready_word(&format!("{field}.backupIngressController"), ic)?;
        out.push(Event {
            at,
            change: Change::BackupIngressController { ready },
            note,
        });
        return Ok(());
    }
    if let Some(lb) = &ev.load_balancer {
        let has_url = spec
            .ingress
            .as_ref()
            .is_some_and(|i| i.health.url.is_some());
        if !has_url {
            return Err(field_err(
                format!("{field}.loadBalancer"),
                "the policy has no spec.ingress.health.url, so the load balancer's health URL is never probed",
            ));
        }
        let behaviour = lb_behaviour(&format!("{field}.loadBalancer"), ev, lb, at)?;
        out.push(Event {
            at,
            change: Change::LoadBalancer { behaviour },
            note,
        });
        return Ok(());
    }
    if let Some(ic) = &ev.ingress_controller {
        let has_controller = spec
            .ingress
            .as_ref()
            .is_some_and(|i| i.health.controller_deployment.is_some());
        if !has_controller {
            return Err(field_err(
                format!("{field}.ingressController"),
                "the policy has no spec.ingress.health.controllerDeployment, so the controller's readiness is not watched",
            ));
        }
        let ready = ready_word(&format!("{field}.ingressController"), ic)?;
        out.push(Event {
            at,
            change: Change::IngressController { ready },
            note,
        });
        return Ok(());
    }
    let addresses: Vec<(String, String)> = match (&ev.backend, &ev.backends) {
        (Some(a), None) if a == "*" => primary
            .iter()
            .map(|p| (format!("{field}.backend"), p.address.clone()))
            .collect(),
        (Some(a), None) => vec![(format!("{field}.backend"), a.clone())],
        (None, Some(list)) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(j, a)| (format!("{field}.backends[{j}]"), a.clone()))
            .collect(),
        _ => {
            return Err(field_err(
                format!("{field}.backends"),
                "list at least one address",
            ));
        }
    };
    let Some(state) = ev.state.as_deref() else {
        return Err(field_err(
            format!("{field}.state"),
            "missing: up, down, refusing, slow, badStatus, flapping, ready, notReady or terminating",
        ));
    };
    let fields = BehaviourFields {
        state,
        latency_ms: ev.latency_ms,
        status: ev.status,
        up_for: ev.up_for.as_deref(),
        down_for: ev.down_for.as_deref(),
    };
    let behaviour = behaviour(field, &fields, at)?;
    for (addr_field, address) in addresses {
        let is_primary = primary.iter().any(|p| p.address == address);
        let is_static_emergency = emergency_static.iter().any(|p| p.address == address);
        if !is_primary && !is_static_emergency {
            return Err(field_err(
                addr_field,
                format!(
                    "{address} is not a backend of this scenario (known: {})",
                    primary
                        .iter()
                        .chain(emergency_static)
                        .map(|p| p.address.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let pool = if is_primary {
            Pool::Primary
        } else {
            Pool::Emergency
        };
        if state == "terminating" {
            if !is_primary || spec.backends.primary.service.is_none() {
                return Err(field_err(
                    format!("{field}.state"),
                    format!("{address} is not a pod of the primary Service: only pods terminate"),
                ));
            }
            out.push(Event {
                at,
                change: Change::Terminating { address },
                note: note.clone(),
            });
            continue;
        }
        let change = match behaviour {
            Some(behaviour) => Change::Backend {
                address,
                pool,
                behaviour,
            },
            None => {
                let ready = state == "ready";
                if !ready && (is_static_emergency || spec.backends.primary.service.is_none()) {
                    return Err(field_err(
                        format!("{field}.state"),
                        format!(
                            "{address} is a static address: it has no Kubernetes readiness to lose"
                        ),
                    ));
                }
                Change::Readiness {
                    address,
                    pool,
                    ready,
                }
            }
        };
        out.push(Event {
            at,
            change,
            note: note.clone(),
        });
    }
    Ok(())
}

/// A load balancer's state word (`loadBalancer: down`) and its parameters.
fn lb_behaviour(
    field: &str,
    ev: &RawEvent,
    lb: &str,
    at: Millis,
) -> Result<Behaviour, SimulateError> {
    if ev.state.is_some() || ev.up_for.is_some() || ev.down_for.is_some() {
        return Err(field_err(
            format!("{field}.state"),
            "for the load balancer, write the state as the value: `loadBalancer: down`",
        ));
    }
    let fields = BehaviourFields {
        state: lb,
        latency_ms: ev.latency_ms,
        status: ev.status,
        up_for: None,
        down_for: None,
    };
    match behaviour(field, &fields, at)? {
        Some(Behaviour::Flapping { .. }) | None => Err(field_err(
            field,
            format!(
                "unknown load balancer state {lb:?}; expected up, down, refusing, slow or badStatus"
            ),
        )),
        Some(b) => Ok(b),
    }
}

fn ready_word(field: &str, word: &str) -> Result<bool, SimulateError> {
    match word {
        "ready" => Ok(true),
        "notReady" => Ok(false),
        other => Err(field_err(
            field,
            format!("unknown state {other:?}; expected ready or notReady"),
        )),
    }
}

/// Spec fields an `edit` may not touch: the simulated world (its backends and their probe
/// schedule) is built from them once.
const WORLD_FIELDS: [&str; 3] = ["backends", "probe", "managedService"];

/// The events that act on the operator rather than on a backend. `None` for a backend event.
fn resolve_control(
    field: &str,
    ev: &RawEvent,
    spec: &FailoverPolicySpec,
) -> Result<Option<Change>, SimulateError> {
    let no_state = |name: &str| -> Result<(), SimulateError> {
        if ev.state.is_some() || ev.latency_ms.is_some() || ev.status.is_some() {
            return Err(field_err(
                format!("{field}.state"),
                format!("{name} takes no state, latencyMs or status"),
            ));
        }
        Ok(())
    };
    if let Some(flag) = ev.restart {
        no_state("restart")?;
        if !flag {
            return Err(field_err(
                format!("{field}.restart"),
                "write `restart: true`",
            ));
        }
        return Ok(Some(Change::Restart));
    }
    if let Some(flag) = ev.reset_flap_budget {
        no_state("resetFlapBudget")?;
        if !flag {
            return Err(field_err(
                format!("{field}.resetFlapBudget"),
                "write `resetFlapBudget: true`",
            ));
        }
        return Ok(Some(Change::ResetFlapBudget));
    }
    if let Some(step) = &ev.clock_step {
        no_state("clockStep")?;
        let (sign, rest) = match step.trim().strip_prefix('-') {
            Some(rest) => (-1, rest),
            None => (1, step.trim().trim_start_matches('+')),
        };
        let ms = parse_duration(rest).map_err(|m| field_err(format!("{field}.clockStep"), m))?;
        return Ok(Some(Change::ClockStep { ms: sign * ms }));
    }
    if let Some(patch) = &ev.edit {
        no_state("edit")?;
        let Some(map) = patch.as_object() else {
            return Err(field_err(
                format!("{field}.edit"),
                "a mapping of spec fields to change (a JSON merge patch of spec)",
            ));
        };
        if let Some(k) = map.keys().find(|k| WORLD_FIELDS.contains(&k.as_str())) {
            return Err(field_err(
                format!("{field}.edit.{k}"),
                "the simulated world is built from backends, probe and managedService once; edit the other fields",
            ));
        }
        return Ok(Some(Change::Edit {
            patch: patch.clone(),
        }));
    }
    for (name, value, exists) in [
        ("deleteObject", &ev.delete_object, false),
        ("recreate", &ev.recreate, true),
    ] {
        let Some(value) = value else {
            continue;
        };
        no_state(name)?;
        let object = match value.as_str() {
            "emergencyDeployment" => {
                if spec
                    .backends
                    .emergency
                    .as_ref()
                    .is_none_or(|e| e.deployment.is_none())
                {
                    return Err(field_err(
                        format!("{field}.{name}"),
                        "the policy has no spec.backends.emergency.deployment",
                    ));
                }
                WatchedObject::EmergencyDeployment
            }
            "ingressController" => {
                if spec
                    .ingress
                    .as_ref()
                    .is_none_or(|i| i.health.controller_deployment.is_none())
                {
                    return Err(field_err(
                        format!("{field}.{name}"),
                        "the policy has no spec.ingress.health.controllerDeployment",
                    ));
                }
                WatchedObject::IngressController
            }
            other => {
                return Err(field_err(
                    format!("{field}.{name}"),
                    format!(
                        "unknown object {other:?}; expected emergencyDeployment or ingressController"
                    ),
                ));
            }
        };
        return Ok(Some(Change::Object { object, exists }));
    }
    Ok(None)
}

/// Resolves a state name and its parameters. `None` means a readiness change (`ready` or
/// `notReady`), which is not a probe behaviour.
fn behaviour(
    field: &str,
    f: &BehaviourFields<'_>,
    at: Millis,
) -> Result<Option<Behaviour>, SimulateError> {
    let forbid = |name: &str, set: bool| -> Result<(), SimulateError> {
        if set {
            Err(field_err(
                format!("{field}.{name}"),
                format!("does not apply to state {}", f.state),
            ))
        } else {
            Ok(())
        }
    };
    let flap_fields = f.up_for.is_some() || f.down_for.is_some();
    let b = match f.state {
        "up" => {
            forbid("status", f.status.is_some())?;
            forbid("upFor", flap_fields)?;
            Behaviour::Answers {
                latency_ms: f.latency_ms.unwrap_or(DEFAULT_LATENCY_MS),
            }
        }
        "slow" => {
            forbid("status", f.status.is_some())?;
            forbid("upFor", flap_fields)?;
            let Some(latency_ms) = f.latency_ms else {
                return Err(field_err(
                    format!("{field}.latencyMs"),
                    "state slow needs latencyMs (how long each answer takes)",
                ));
            };
            Behaviour::Answers { latency_ms }
        }
        "down" | "refusing" | "ready" | "notReady" | "terminating" => {
            forbid("latencyMs", f.latency_ms.is_some())?;
            forbid("status", f.status.is_some())?;
            forbid("upFor", flap_fields)?;
            match f.state {
                "down" => Behaviour::Down,
                "refusing" => Behaviour::Refusing,
                // Readiness and termination are Kubernetes facts, not probe behaviours.
                _ => return Ok(None),
            }
        }
        "badStatus" => {
            forbid("latencyMs", f.latency_ms.is_some())?;
            forbid("upFor", flap_fields)?;
            let Some(code) = f.status else {
                return Err(field_err(
                    format!("{field}.status"),
                    "state badStatus needs status (the HTTP code answered, e.g. 503)",
                ));
            };
            if !(100..=599).contains(&code) {
                return Err(field_err(
                    format!("{field}.status"),
                    format!("{code} is not an HTTP status code (100-599)"),
                ));
            }
            Behaviour::Status { code }
        }
        "flapping" => {
            forbid("latencyMs", f.latency_ms.is_some())?;
            forbid("status", f.status.is_some())?;
            let get = |name: &str, v: Option<&str>| -> Result<Millis, SimulateError> {
                let Some(v) = v else {
                    return Err(field_err(
                        format!("{field}.{name}"),
                        "state flapping needs upFor and downFor (e.g. 4s)",
                    ));
                };
                let ms = parse_duration(v).map_err(|m| field_err(format!("{field}.{name}"), m))?;
                if ms <= 0 {
                    return Err(field_err(
                        format!("{field}.{name}"),
                        "must be longer than zero",
                    ));
                }
                Ok(ms)
            };
            Behaviour::Flapping {
                up_ms: get("upFor", f.up_for)?,
                down_ms: get("downFor", f.down_for)?,
                since: at,
            }
        }
        other => {
            return Err(field_err(
                format!("{field}.state"),
                format!(
                    "unknown state {other:?}; expected up, down, refusing, slow, badStatus, flapping, ready, notReady or terminating"
                ),
            ));
        }
    };
    Ok(Some(b))
}

/// A backend address, by the one rule every static address of a policy obeys.
fn check_address(a: &str) -> Result<(), String> {
    crate::validation::address::parse_host_port(a)
        .map(|_| ())
        .map_err(|e| format!("{a:?}: {e}"))
}

/// The scenario's clock, for resolving `at`.
struct Clock {
    start: Millis,
    end: Millis,
    offset: Offset,
}

impl Clock {
    /// `+15m` (offset from start), `10:15` / `10:15:30` (wall clock in start's UTC offset, on
    /// or after start: a timeline crossing midnight wraps to the next day) or RFC 3339.
    fn parse_at(&self, s: &str) -> Result<Millis, String> {
        let s = s.trim();
        let at = if let Some(rest) = s.strip_prefix('+') {
            self.start + parse_duration(rest)?
        } else if s.len() <= 8 && s.contains(':') && !s.contains('T') {
            let time: jiff::civil::Time = s
                .parse()
                .map_err(|_| format!("{s:?} is not a wall-clock time like 10:15 or 10:15:30"))?;
            let tz = TimeZone::fixed(self.offset);
            let start = Timestamp::from_millisecond(self.start)
                .map_err(|e| e.to_string())?
                .to_zoned(tz.clone());
            let mut candidate = start
                .date()
                .to_datetime(time)
                .to_zoned(tz.clone())
                .map_err(|e| e.to_string())?;
            if candidate.timestamp().as_millisecond() < self.start {
                candidate = candidate
                    .checked_add(jiff::Span::new().days(1))
                    .map_err(|e| e.to_string())?;
            }
            candidate.timestamp().as_millisecond()
        } else {
            s.parse::<Timestamp>()
                .map_err(|_| {
                    format!(
                        "{s:?} is neither an offset (+15m), a wall-clock time (10:15) nor RFC 3339"
                    )
                })?
                .as_millisecond()
        };
        if at < self.start || at > self.end {
            return Err(format!(
                "{s} is outside the scenario (start {} + duration {}s)",
                Timestamp::from_millisecond(self.start).map_or(String::new(), |t| t.to_string()),
                (self.end - self.start) / 1000
            ));
        }
        Ok(at)
    }
}

/// Parses an RFC 3339 timestamp and keeps its UTC offset for wall-clock output.
fn parse_start(s: &str) -> Result<(Millis, Offset), String> {
    let ts: Timestamp = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an RFC 3339 time like 2026-11-29T10:00:00Z"))?;
    let s = s.trim();
    let offset = if s.ends_with('Z') || s.ends_with('z') {
        Offset::UTC
    } else {
        // The last 6 characters of an RFC 3339 time with a numeric offset are `±HH:MM`.
        let tail = s.get(s.len().saturating_sub(6)..).unwrap_or("");
        let sign = match tail.as_bytes().first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(format!("{s:?} has no UTC offset (end it with Z or ±HH:MM)")),
        };
        let h: i32 = tail[1..3]
            .parse()
            .map_err(|_| format!("{s:?}: bad UTC offset"))?;
        let m: i32 = tail[4..6]
            .parse()
            .map_err(|_| format!("{s:?}: bad UTC offset"))?;
        Offset::from_seconds(sign * (h * 3600 + m * 60)).map_err(|e| e.to_string())?
    };
    Ok((ts.as_millisecond(), offset))
}

/// A duration in the scenario's milliseconds, by the one duration rule ([`crate::duration`]).
fn parse_duration(s: &str) -> Result<Millis, String> {
    crate::duration::parse_millis(s).map_err(|e| e.to_string())
}

/// `10.0.2.0/24` → the first usable address (network + 1) and how many follow it.
fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u32), String> {
    let bad = || format!("{s:?} is not an IPv4 range like 10.0.2.0/24");
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let len: u32 = len.parse().map_err(|_| bad())?;
    if !(8..=30).contains(&len) {
        return Err(format!("{s:?}: prefix length must be between /8 and /30"));
    }
    let size = 1u32 << (32 - len);
    let network = u32::from(ip) & !(size - 1);
    // Skip the network and broadcast addresses.
    Ok((Ipv4Addr::from(network + 1), size - 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_keeps_the_start_offset_and_wraps_midnight() {
        let (start, offset) = parse_start("2026-11-29T23:30:00+02:00").unwrap();
        let clock = Clock {
            start,
            end: start + 3_600_000,
            offset,
        };
        assert_eq!(clock.parse_at("23:45"), Ok(start + 15 * 60_000));
        assert_eq!(clock.parse_at("00:10"), Ok(start + 40 * 60_000));
        assert_eq!(clock.parse_at("+1h"), Ok(start + 3_600_000));
        assert_eq!(
            clock.parse_at("2026-11-29T21:40:00Z"),
            Ok(start + 10 * 60_000)
        );
        assert!(clock.parse_at("+2h").unwrap_err().contains("outside"));
        assert!(clock.parse_at("25:00").is_err());
    }

    #[test]
    fn pod_range_skips_network_address() {
        let (first, cap) = parse_cidr("10.0.2.0/24").unwrap();
        assert_eq!(first, Ipv4Addr::new(10, 0, 2, 1));
        assert_eq!(cap, 254);
        assert!(parse_cidr("10.0.2.0").is_err());
        assert!(parse_cidr("10.0.2.0/31").is_err());
    }

    #[test]
    fn flapping_unfolds_over_time() {
        let f = Behaviour::Flapping {
            up_ms: 4000,
            down_ms: 2000,
            since: 10_000,
        };
        assert_eq!(f.at(10_000), Behaviour::HEALTHY);
        assert_eq!(f.at(13_999), Behaviour::HEALTHY);
        assert_eq!(f.at(14_000), Behaviour::Down);
        assert_eq!(f.at(16_000), Behaviour::HEALTHY);
    }
}
