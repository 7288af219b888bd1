//! Checks on a typed [`FailoverPolicy`] that the CRD schema and CEL cannot express. The
//! controller runs [`validate_policy`] on every reconcile and manages nothing while it returns
//! any error; `ingress-failover check` runs the very same function offline.
//!
//! Decisions recorded here (the decision engine must follow them):
//!
//! - An override whose `expiresAt` is already past is a **warning**, not an error: an expired
//!   override simply no longer applies (the engine must treat it as `Auto`), and refusing the whole
//!   policy would stop failover for everyone over a stale incident note. Warnings need a clock, so
//!   they live in [`policy_warnings`], apart from the pure [`validate_policy`].
//! - `failbackSteps` that do not end at 100 are a **warning**: after the last step's dwell the
//!   engine must complete the failback at 100 %, which is what such a list can only mean.
//! - Static addresses and health URLs follow the confinement rules of [`super::confine`] (one
//!   copy for `check`, `simulate`, the controller and the prober): loopback, link-local,
//!   metadata, unspecified and multicast IPs are refused unless the operator's probe allowlist
//!   permits them, and so is every host name the allowlist does not name (a name is checked
//!   before it is ever resolved; what it resolves to is judged by the prober before it
//!   connects). The demo, whose backends listen on loopback, runs with
//!   `--probe-allowlist 127.0.0.0/8`.
//! - `spec.probe.http.path` must be a request target the prober can send as it is: the same
//!   rule ([`probe_path`]) builds the prober's request, so what `check` accepts the controller
//!   probes, and what the controller could not probe is Invalid everywhere.

use jiff::Timestamp;
use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use k8s_rules::names::{dns1035_label, dns1123_label, dns1123_subdomain, label_key, label_value};

use super::FieldError;
use super::address::{Host, parse_health_url, parse_host_header, parse_host_port};
use super::confine::{Allowlist, AllowlistError, Refusal};
use crate::api::{
    EmergencyDeployment, FailoverPolicy, FailoverPolicySpec, IngressMode, IngressTierSpec,
    OverrideMode, StaticAddress, StatusRange,
};

/// Operator-wide settings that decide what a namespaced policy may reference. Built from the
/// controller's flags (`--ingress-controller-namespace`, `--probe-allowlist`) and passed to
/// `check` the same way, so the offline answer matches the controller's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationContext {
    /// Namespaces, other than a policy's own, where `ingress.health.controllerDeployment` may
    /// point (typically `ingress-nginx`). Empty: only the policy's own namespace.
    pub allowed_ingress_controller_namespaces: Vec<String>,
    /// Where health URLs may point, and which special addresses static backends may use: CIDRs
    /// (`10.0.0.0/8`), single IPs, exact host names (`lb.example.internal`) and domain suffixes
    /// (`.example.com`, matching any name below it). Empty: no health URL is allowed at all.
    pub probe_allowlist: Vec<String>,
}

/// A malformed operator setting, reported at start-up rather than as a policy error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// A `--probe-allowlist` entry in none of the forms `validation::address` accepts.
    #[error(transparent)]
    AllowlistEntry(#[from] AllowlistError),
    /// A `--ingress-controller-namespace` value that is not a namespace name.
    #[error("--ingress-controller-namespace {namespace:?} is not a valid namespace name")]
    Namespace { namespace: String },
}

impl ValidationContext {
    /// Builds the context from the operator's flags as given on the command line: each value may
    /// hold several comma-separated entries (`--probe-allowlist 10.0.0.0/8,.example.internal`),
    /// blanks are ignored, and every entry is checked.
    pub fn from_flags<N, A>(namespaces: N, allowlist: A) -> Result<Self, ContextError>
    where
        N: IntoIterator,
        N::Item: AsRef<str>,
        A: IntoIterator,
        A::Item: AsRef<str>,
    {
        fn split<I>(values: I) -> Vec<String>
        where
            I: IntoIterator,
            I::Item: AsRef<str>,
        {
            values
                .into_iter()
                .flat_map(|v| {
                    v.as_ref()
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .collect()
        }
        let ctx = ValidationContext {
            allowed_ingress_controller_namespaces: split(namespaces),
            probe_allowlist: split(allowlist),
        };
        ctx.check()?;
        Ok(ctx)
    }

    /// Checks the settings themselves; the controller and `check` call this once at start-up.
    /// (An entry that fails here would simply never match anything.)
    pub fn check(&self) -> Result<(), ContextError> {
        Allowlist::parse(&self.probe_allowlist)?;
        for namespace in &self.allowed_ingress_controller_namespaces {
            if dns1123_label(namespace).is_err() {
                return Err(ContextError::Namespace {
                    namespace: namespace.clone(),
                });
            }
        }
        Ok(())
    }

    /// The allowlist these settings describe (entries that do not parse permit nothing; the
    /// controller and `check` refuse such settings at start-up through [`Self::check`]).
    pub fn allowlist(&self) -> Allowlist {
        Allowlist::parse(&self.probe_allowlist).unwrap_or_else(|_| {
            Allowlist::parse(
                self.probe_allowlist
                    .iter()
                    .filter(|e| Allowlist::parse([e.as_str()]).is_ok()),
            )
            .unwrap_or_default()
        })
    }
}

/// Checks what the CRD cannot. Pure and deterministic (no clock, no I/O): the controller calls it
/// on every reconcile. A policy without `metadata.namespace` is taken to be in `default`, as
/// kubectl would create it.
pub fn validate_policy(policy: &FailoverPolicy, ctx: &ValidationContext) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let own_namespace = policy.metadata.namespace.as_deref().unwrap_or("default");
    let spec = &policy.spec;
    check_metadata(&mut errors, policy);
    let emergency_service = check_backends(&mut errors, ctx, spec);
    let emergency_service_name = emergency_service
        .as_ref()
        .map(|(path, name)| (path.clone(), name.to_string()));
    check_managed_service(&mut errors, spec, emergency_service);
    check_probe(&mut errors, spec);
    if let Some(ingress) = &spec.ingress {
        check_ingress_tier(&mut errors, ctx, own_namespace, ingress);
    }
    if let Some(gateway) = &spec.gateway {
        check_gateway_tier(&mut errors, ctx, own_namespace, gateway);
    }
    check_failback(&mut errors, spec);
    check_backend_weights(&mut errors, spec, emergency_service_name.as_ref());
    errors
}

/// `spec.gateway.backendWeights`: emergency endpoints in a Service of their own, weighted in
/// the route copies. It needs emergency capacity, a Service name that fits, and no Ingress tier
/// (an Ingress routing to the managed Service would no longer see the emergency endpoints).
fn check_backend_weights(
    errors: &mut Vec<FieldError>,
    spec: &FailoverPolicySpec,
    emergency_source: Option<&(String, String)>,
) {
    let Some(weights) = spec
        .gateway
        .as_ref()
        .and_then(|g| g.backend_weights.as_ref())
    else {
        return;
    };
    const PATH: &str = "spec.gateway.backendWeights";
    if !weights.ramp_down_steps.windows(2).all(|w| w[0] > w[1]) {
        errors.push(FieldError::new(
            format!("{PATH}.rampDownSteps"),
            format!(
                "Invalid value: {:?}: must be strictly decreasing (the share of the emergency weight kept at each step of a release)",
                weights.ramp_down_steps
            ),
        ));
    }
    if spec.backends.emergency.is_none() {
        errors.push(FieldError::new(
            PATH,
            "Forbidden: weighs emergency capacity, but spec.backends.emergency is not set",
        ));
    }
    if spec.ingress.is_some() {
        errors.push(FieldError::new(
            PATH,
            "Forbidden: with spec.ingress: backendWeights publishes emergency endpoints in a Service of their own, which an Ingress routing to the managed Service would not see; use it with spec.gateway alone",
        ));
    }
    let managed = &spec.managed_service;
    let own = managed.emergency_service_name();
    if own.len() > 63 {
        errors.push(FieldError::new(
            "spec.managedService.name",
            format!(
                "Too long: with spec.gateway.backendWeights the emergency endpoints are published in Service \"{own}\", which must be at most 63 characters: shorten the managed Service's name to at most 53"
            ),
        ));
    }
    let read = spec
        .backends
        .primary
        .service
        .as_ref()
        .map(|s| {
            (
                "spec.backends.primary.service.name".to_string(),
                s.name.clone(),
            )
        })
        .into_iter()
        .chain(emergency_source.cloned());
    for (path, name) in read {
        if name == own {
            errors.push(FieldError::new(
                path,
                format!(
                    "Invalid value: \"{name}\": with spec.gateway.backendWeights the operator publishes emergency endpoints in Service \"{own}\", so it must not be a Service it reads"
                ),
            ));
        }
    }
}

/// The Gateway tier: template and Gateway names, the selector, and each side's health signals
/// (the same rules as the ingress tier's).
fn check_gateway_tier(
    errors: &mut Vec<FieldError>,
    ctx: &ValidationContext,
    own_namespace: &str,
    gateway: &crate::api::GatewayTierSpec,
) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, name) in gateway.routes.iter().enumerate() {
        let path = format!("spec.gateway.routes[{i}]");
        check_name(errors, &path, name, dns1123_subdomain);
        if let Some(first) = names.insert(name, i) {
            errors.push(FieldError::new(
                path,
                format!(
                    "Duplicate value: \"{name}\" is already listed at spec.gateway.routes[{first}]"
                ),
            ));
        }
    }
    if let Some(selector) = &gateway.selector {
        check_selector(errors, "spec.gateway.selector", selector);
    }
    for (side, g) in [
        ("primaryGateway", &gateway.primary_gateway),
        ("backupGateway", &gateway.backup_gateway),
    ] {
        check_name(
            errors,
            &format!("spec.gateway.{side}.name"),
            &g.name,
            dns1123_subdomain,
        );
        if let Some(ns) = &g.namespace {
            check_name(
                errors,
                &format!("spec.gateway.{side}.namespace"),
                ns,
                dns1123_label,
            );
        }
        if let Some(section) = &g.section_name {
            check_name(
                errors,
                &format!("spec.gateway.{side}.sectionName"),
                section,
                dns1123_subdomain,
            );
        }
    }
    let side = |g: &crate::api::GatewayRef| {
        (
            g.name.clone(),
            g.namespace
                .clone()
                .unwrap_or_else(|| own_namespace.to_string()),
            g.section_name.clone(),
        )
    };
    if side(&gateway.primary_gateway) == side(&gateway.backup_gateway) {
        errors.push(FieldError::new(
            "spec.gateway.backupGateway",
            "Invalid value: backupGateway must differ from primaryGateway (another Gateway, or another listener by sectionName)",
        ));
    }
    for (base, health) in [
        ("spec.gateway.health", &gateway.health),
        ("spec.gateway.backupHealth", &gateway.backup_health),
    ] {
        if let Some(h) = health {
            check_tier_health(errors, ctx, own_namespace, base, &h.as_tier_health());
        }
    }
}

/// The policy's own name and namespace.
fn check_metadata(errors: &mut Vec<FieldError>, policy: &FailoverPolicy) {
    match policy.metadata.name.as_deref() {
        None | Some("") => errors.push(FieldError::new("metadata.name", "Required value")),
        Some(name) => check_name(errors, "metadata.name", name, dns1123_subdomain),
    }
    if let Some(ns) = &policy.metadata.namespace {
        check_name(errors, "metadata.namespace", ns, dns1123_label);
    }
}

/// The emergency pool's Service, as the path that names it and the name: the Service named by
/// `serviceName`, else the Deployment's own name.
type EmergencyService<'a> = Option<(String, &'a str)>;

/// The primary and emergency pools: Service, Deployment and port names, static addresses (each
/// confined by the probe allowlist, none listed twice across pools), replicas that add capacity.
fn check_backends<'a>(
    errors: &mut Vec<FieldError>,
    ctx: &ValidationContext,
    spec: &'a FailoverPolicySpec,
) -> EmergencyService<'a> {
    let primary = &spec.backends.primary;
    if let Some(service) = &primary.service {
        check_name(
            errors,
            "spec.backends.primary.service.name",
            &service.name,
            dns1035_label,
        );
        if let Some(port) = &service.port_name {
            check_name(
                errors,
                "spec.backends.primary.service.portName",
                port,
                dns1123_label,
            );
        }
    }
    let mut seen: HashMap<(Host, u16), String> = HashMap::new();
    check_addresses(
        errors,
        ctx,
        "spec.backends.primary.addresses",
        &primary.addresses,
        &mut seen,
    );
    let emergency = spec.backends.emergency.as_ref()?;
    check_addresses(
        errors,
        ctx,
        "spec.backends.emergency.addresses",
        &emergency.addresses,
        &mut seen,
    );
    check_emergency_deployment(errors, emergency.deployment.as_ref()?)
}

/// The emergency Deployment: its names, and replicas that add capacity. Returns the emergency
/// pool's Service.
fn check_emergency_deployment<'a>(
    errors: &mut Vec<FieldError>,
    deployment: &'a EmergencyDeployment,
) -> EmergencyService<'a> {
    let base = "spec.backends.emergency.deployment";
    check_name(
        errors,
        &format!("{base}.name"),
        &deployment.name,
        dns1123_subdomain,
    );
    if let Some(service) = &deployment.service_name {
        check_name(
            errors,
            &format!("{base}.serviceName"),
            service,
            dns1035_label,
        );
    }
    if let Some(port) = &deployment.port_name {
        check_name(errors, &format!("{base}.portName"), port, dns1123_label);
    }
    if deployment.active_replicas <= 0 {
        errors.push(FieldError::new(
            format!("{base}.activeReplicas"),
            format!(
                "Invalid value: {}: must be greater than 0: an emergency that adds no replica adds no capacity",
                deployment.active_replicas
            ),
        ));
    }
    Some(match &deployment.service_name {
        Some(service) => (format!("{base}.serviceName"), service.as_str()),
        None => (format!("{base}.name"), deployment.name.as_str()),
    })
}

/// The managed Service: the operator owns its EndpointSlices, so it must not be a Service that
/// Kubernetes or someone else already fills (the primary's or the emergency pool's), and the
/// two pools must not be the same Service.
fn check_managed_service(
    errors: &mut Vec<FieldError>,
    spec: &FailoverPolicySpec,
    emergency_service: EmergencyService<'_>,
) {
    let primary = &spec.backends.primary;
    let managed = &spec.managed_service;
    check_name(
        errors,
        "spec.managedService.name",
        &managed.name,
        dns1035_label,
    );
    check_name(
        errors,
        "spec.managedService.portName",
        &managed.port_name,
        dns1123_label,
    );
    if let Some(service) = &primary.service
        && service.name == managed.name
    {
        errors.push(FieldError::new(
            "spec.managedService.name",
            format!(
                "Invalid value: \"{}\": must differ from spec.backends.primary.service.name: the operator would overwrite the endpoints of the Service it reads",
                managed.name
            ),
        ));
    }
    if let Some((path, service)) = &emergency_service
        && *service == managed.name
    {
        errors.push(FieldError::new(
            "spec.managedService.name",
            format!(
                "Invalid value: \"{}\": must differ from the emergency Service ({path}): the operator would overwrite the endpoints of the Service it reads",
                managed.name
            ),
        ));
    }
    if let (Some((path, service)), Some(primary_service)) = (&emergency_service, &primary.service)
        && *service == primary_service.name
    {
        errors.push(FieldError::new(
            path.as_str(),
            format!(
                "Invalid value: \"{service}\": the emergency pool's Service must differ from spec.backends.primary.service.name: the same pods would count as primary and as emergency capacity"
            ),
        ));
    }
}

/// The HTTP probe: a path the prober can send as it is, a Host header, expected statuses.
fn check_probe(errors: &mut Vec<FieldError>, spec: &FailoverPolicySpec) {
    if let Some(http) = &spec.probe.http {
        if let Err(why) = probe_path(&http.path) {
            errors.push(FieldError::new(
                "spec.probe.http.path",
                format!("Invalid value: {:?}: {why}", http.path),
            ));
        }
        if let Some(host) = &http.host
            && parse_host_header(host).is_none()
        {
            errors.push(FieldError::new(
                "spec.probe.http.host",
                format!("Invalid value: \"{host}\": must be a host name or IP address, optionally with :port"),
            ));
        }
        check_statuses(
            errors,
            "spec.probe.http.expectedStatuses",
            &http.expected_statuses,
        );
    }
}

/// The ingress tier: Ingress and class names, the selector, and where each tier's health is
/// read (controller Deployments, health URLs).
fn check_ingress_tier(
    errors: &mut Vec<FieldError>,
    ctx: &ValidationContext,
    own_namespace: &str,
    ingress: &IngressTierSpec,
) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, name) in ingress.ingresses.iter().enumerate() {
        let path = format!("spec.ingress.ingresses[{i}]");
        check_name(errors, &path, name, dns1123_subdomain);
        if let Some(first) = names.insert(name, i) {
            errors.push(FieldError::new(
                path,
                format!("Duplicate value: \"{name}\" is already listed at spec.ingress.ingresses[{first}]"),
            ));
        }
    }
    check_name(
        errors,
        "spec.ingress.primaryClass",
        &ingress.primary_class,
        dns1123_subdomain,
    );
    check_name(
        errors,
        "spec.ingress.backupClass",
        &ingress.backup_class,
        dns1123_subdomain,
    );
    if let Some(selector) = &ingress.selector {
        check_selector(errors, "spec.ingress.selector", selector);
    }
    check_tier_health(
        errors,
        ctx,
        own_namespace,
        "spec.ingress.health",
        &ingress.health,
    );
    if let Some(backup) = &ingress.backup_health {
        check_tier_health(
            errors,
            ctx,
            own_namespace,
            "spec.ingress.backupHealth",
            backup,
        );
    }
}

/// failbackSteps without HotStandby is a root CEL rule; repeated here for objects that reached
/// the controller past an older CRD.
fn check_failback(errors: &mut Vec<FieldError>, spec: &FailoverPolicySpec) {
    if !spec.recovery.failback_steps.is_empty()
        && spec.gateway.is_none()
        && spec.ingress.as_ref().map(|i| i.mode) != Some(IngressMode::HotStandby)
    {
        errors.push(FieldError::new(
            "spec.recovery.failbackSteps",
            "Forbidden: gradual failback needs spec.ingress.mode HotStandby or spec.gateway: only a mirrored backup Ingress can carry a traffic weight",
        ));
    }
}

/// Things worth saying that do not make the policy invalid. `now` is injected so that the
/// controller and tests decide with their own clock.
pub fn policy_warnings(policy: &FailoverPolicy, now: Timestamp) -> Vec<FieldError> {
    let mut warnings = Vec::new();
    let spec = &policy.spec;
    if let Some(ov) = &spec.r#override
        && ov.mode != OverrideMode::Auto
        && let Some(expires) = &ov.expires_at
        && expires.0 <= now
    {
        warnings.push(FieldError::new(
            "spec.override.expiresAt",
            format!(
                "already expired ({}): the {:?} override no longer applies and the operator decides automatically",
                expires.0, ov.mode
            ),
        ));
    }
    if let Some(last) = spec.recovery.failback_steps.last()
        && *last != 100
    {
        warnings.push(FieldError::new(
            "spec.recovery.failbackSteps",
            format!("ends at {last} %: after that step the remaining traffic returns to the primary at once (100 %)"),
        ));
    }
    if let Some(http) = &spec.probe.http
        && let Some(max) = http.max_latency_ms
        && u64::from(max) >= u64::from(spec.probe.timeout_seconds) * 1000
    {
        warnings.push(FieldError::new(
            "spec.probe.http.maxLatencyMs",
            format!(
                "{max} ms is not below timeoutSeconds ({} s): it never marks a backend slow",
                spec.probe.timeout_seconds
            ),
        ));
    }
    if spec.safety.max_ejection_percent == 0 {
        warnings.push(FieldError::new(
            "spec.safety.maxEjectionPercent",
            "is 0: failing probes can never remove a backend (only Kubernetes readiness does)",
        ));
    }
    if spec.backends.emergency.is_some() && spec.thresholds.activate_below <= 0.0 {
        warnings.push(FieldError::new(
            "spec.thresholds.activateBelow",
            "is 0: the healthy ratio can never fall below it, so emergency capacity is never engaged",
        ));
    }
    warnings
}

fn check_addresses(
    errors: &mut Vec<FieldError>,
    ctx: &ValidationContext,
    base: &str,
    addresses: &[StaticAddress],
    seen: &mut HashMap<(Host, u16), String>,
) {
    let allowlist = ctx.allowlist();
    for (i, address) in addresses.iter().enumerate() {
        let path = format!("{base}[{i}]");
        let (host, port) = match parse_host_port(&address.0) {
            Ok(parsed) => parsed,
            Err(why) => {
                errors.push(FieldError::new(
                    path,
                    format!("Invalid value: \"{}\": {why}", address.0),
                ));
                continue;
            }
        };
        if let Err(refusal) = judge_host(&allowlist, &host, false) {
            errors.push(FieldError::new(
                &path,
                format!("Forbidden: \"{}\": {refusal}", address.0),
            ));
        }
        if let Some(first) = seen.get(&(host.clone(), port)) {
            errors.push(FieldError::new(
                path,
                format!(
                    "Duplicate value: \"{}\" is already listed at {first}",
                    address.0
                ),
            ));
        } else {
            seen.insert((host, port), path);
        }
    }
}

/// The confinement verdict on a host as written in a policy. Names must be named by the
/// allowlist (`localhost` included); IPs of backends are
/// refused by the deny rules only, IPs of health URLs (`listed`) need an allowlist entry.
fn judge_host(allowlist: &Allowlist, host: &Host, listed: bool) -> Result<(), Refusal> {
    match host {
        Host::Name(name) => allowlist.judge_name(name),
        Host::Ip(ip) if listed => allowlist.judge_listed_ip(*ip),
        Host::Ip(ip) => allowlist.judge_backend_ip(*ip),
    }
}

/// The one rule for `spec.probe.http.path`: it must start with `/` and be a valid origin-form
/// request target (no spaces, no CR/LF, nothing that would let a policy write its own header
/// lines into the request). The prober builds its request from the value this returns.
pub fn probe_path(path: &str) -> Result<http::uri::PathAndQuery, String> {
    if !path.starts_with('/') {
        return Err("must start with '/'".into());
    }
    path.parse::<http::uri::PathAndQuery>()
        .map_err(|_| "is not a valid request target: spaces, control characters (CR, LF) and non-ASCII bytes must be percent-encoded".into())
}

/// The rules of one tier's health signals (`spec.ingress.health` or `spec.ingress.backupHealth`):
/// one copy for both.
fn check_tier_health(
    errors: &mut Vec<FieldError>,
    ctx: &ValidationContext,
    own_namespace: &str,
    base: &str,
    health: &crate::api::PrimaryTierHealth,
) {
    if let Some(url) = &health.url {
        check_health_url(errors, ctx, &format!("{base}.url"), url);
    }
    if let Some(deployment) = &health.controller_deployment {
        let base = format!("{base}.controllerDeployment");
        check_name(
            errors,
            &format!("{base}.name"),
            &deployment.name,
            dns1123_subdomain,
        );
        if let Some(ns) = &deployment.namespace {
            check_name(errors, &format!("{base}.namespace"), ns, dns1123_label);
            if ns != own_namespace
                && !ctx
                    .allowed_ingress_controller_namespaces
                    .iter()
                    .any(|a| a == ns)
            {
                errors.push(FieldError::new(
                    format!("{base}.namespace"),
                    format!(
                        "Forbidden: namespace \"{ns}\" is not the policy's own (\"{own_namespace}\") and is not allowed by the operator's --ingress-controller-namespace"
                    ),
                ));
            }
        }
    }
    check_statuses(
        errors,
        &format!("{base}.expectedStatuses"),
        &health.expected_statuses,
    );
}

fn check_health_url(errors: &mut Vec<FieldError>, ctx: &ValidationContext, path: &str, url: &str) {
    let host = match parse_health_url(url) {
        Ok(url) => url.host,
        Err(why) => {
            errors.push(FieldError::new(
                path,
                format!("Invalid value: \"{url}\": {why}"),
            ));
            return;
        }
    };
    if ctx.probe_allowlist.is_empty() {
        errors.push(FieldError::new(
            path,
            format!(
                "Forbidden: the operator probes no health URL unless its host is allowed with --probe-allowlist (none is configured); \"{host}\" is not allowed"
            ),
        ));
    } else if let Err(refusal) = judge_host(&ctx.allowlist(), &host, true) {
        let why = match refusal {
            Refusal::Denied { .. } => format!("host \"{host}\": {refusal}"),
            Refusal::NameNotAllowed { .. } | Refusal::NotAllowed { .. } => {
                format!("host \"{host}\" is not in the operator's --probe-allowlist")
            }
        };
        errors.push(FieldError::new(
            path,
            format!("Forbidden: {why} ({})", ctx.probe_allowlist.join(", ")),
        ));
    }
}

fn check_statuses(errors: &mut Vec<FieldError>, base: &str, statuses: &[StatusRange]) {
    for (i, status) in statuses.iter().enumerate() {
        if status.bounds().is_none() {
            errors.push(FieldError::new(
                format!("{base}[{i}]"),
                format!(
                    "Invalid value: \"{}\": must be a status code 100-599 or an increasing range such as \"200-399\"",
                    status.0
                ),
            ));
        }
    }
}

/// The apiserver's LabelSelector rules: known operators, values only (and always) for In/NotIn.
/// An empty selector would select every Ingress in the namespace, which is never what a failover
/// policy means.
fn check_selector(errors: &mut Vec<FieldError>, base: &str, selector: &LabelSelector) {
    let labels = selector.match_labels.as_ref().map_or(0, |m| m.len());
    let expressions = selector.match_expressions.as_deref().unwrap_or_default();
    if labels == 0 && expressions.is_empty() {
        errors.push(FieldError::new(
            base,
            "Invalid value: {}: an empty selector selects every Ingress in the namespace; name them in ingresses or give matchLabels",
        ));
    }
    for (key, value) in selector.match_labels.iter().flatten() {
        if label_key(key).is_err() {
            errors.push(FieldError::new(
                format!("{base}.matchLabels"),
                format!("Invalid value: \"{key}\": not a valid label key"),
            ));
        }
        if label_value(value).is_err() {
            errors.push(FieldError::new(
                format!("{base}.matchLabels[{key}]"),
                format!("Invalid value: \"{value}\": not a valid label value (at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric)"),
            ));
        }
    }
    for (i, req) in expressions.iter().enumerate() {
        let path = format!("{base}.matchExpressions[{i}]");
        if label_key(&req.key).is_err() {
            errors.push(FieldError::new(
                format!("{path}.key"),
                format!("Invalid value: \"{}\": not a valid label key", req.key),
            ));
        }
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errors.push(FieldError::new(
                format!("{path}.values"),
                "Required value: must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errors.push(FieldError::new(
                format!("{path}.values"),
                "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.push(FieldError::new(
                format!("{path}.operator"),
                format!("Unsupported value: \"{other}\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\""),
            )),
        }
    }
}

type NameCheck = fn(&str) -> Result<(), &'static str>;

fn check_name(errors: &mut Vec<FieldError>, path: &str, value: &str, check: NameCheck) {
    if let Err(why) = check(value) {
        errors.push(FieldError::new(
            path,
            format!("Invalid value: \"{value}\": {why}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy(spec: serde_json::Value) -> FailoverPolicy {
        let mut doc = json!({
            "apiVersion": "ingressfailover.io/v1alpha1",
            "kind": "FailoverPolicy",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "backends": {"primary": {"service": {"name": "web"}}},
                "managedService": {"name": "web-failover"}
            }
        });
        for (k, v) in spec.as_object().unwrap() {
            doc["spec"][k] = v.clone();
        }
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn the_backup_gateway_differs_from_the_primary() {
        let gw = |backup: serde_json::Value| {
            policy(json!({"gateway": {"routes": ["web"],
                "primaryGateway": {"name": "edge"}, "backupGateway": backup}}))
        };
        let refused = |p: &FailoverPolicy| {
            validate_policy(p, &ValidationContext::default())
                .iter()
                .any(|e| e.path == "spec.gateway.backupGateway")
        };
        // The policy's namespace written out is the same Gateway.
        assert!(refused(&gw(json!({"name": "edge"}))));
        assert!(refused(&gw(json!({"name": "edge", "namespace": "shop"}))));
        assert!(!refused(&gw(json!({"name": "edge", "sectionName": "b"}))));
        assert!(!refused(&gw(
            json!({"name": "edge", "namespace": "gateways"})
        )));
        assert!(!refused(&gw(json!({"name": "edge-backup"}))));
    }

    fn with_url(url: &str) -> FailoverPolicy {
        policy(json!({"ingress": {
            "ingresses": ["web"], "primaryClass": "a", "backupClass": "b",
            "health": {"url": url}
        }}))
    }

    fn ctx(allow: &[&str]) -> ValidationContext {
        ValidationContext {
            probe_allowlist: allow.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn paths(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn empty_allowlist_refuses_every_url_and_names_the_flag() {
        let errors = validate_policy(&with_url("http://lb.example.com/healthz"), &ctx(&[]));
        assert_eq!(paths(&errors), vec!["spec.ingress.health.url"]);
        assert!(
            errors[0].message.contains("--probe-allowlist"),
            "{errors:?}"
        );
    }

    #[test]
    fn allowlist_matches_cidrs_ips_names_and_suffixes() {
        let allow = ctx(&[
            "10.0.0.0/8",
            "192.168.1.5",
            "lb.example.com",
            ".example.internal",
            "fd00::/8",
        ]);
        for ok in [
            "http://10.1.2.3/healthz",
            "http://192.168.1.5:8443/",
            "http://LB.example.com/x",
            "http://a.b.example.internal/",
            "http://[fd00::1]:8080/",
        ] {
            assert!(
                validate_policy(&with_url(ok), &allow).is_empty(),
                "{ok} should pass"
            );
        }
        for bad in [
            "http://11.0.0.1/",
            "http://192.168.1.6/",
            "http://www.example.com/",
            "http://example.internal/",
            "http://evilexample.internal/",
            "http://[fe80::1]/",
        ] {
            let errors = validate_policy(&with_url(bad), &allow);
            assert_eq!(paths(&errors), vec!["spec.ingress.health.url"], "{bad}");
            assert!(
                errors[0].message.starts_with("Forbidden"),
                "{bad}: {errors:?}"
            );
        }
    }

    #[test]
    fn malformed_urls_are_invalid_not_forbidden() {
        let allow = ctx(&["0.0.0.0/0"]);
        for bad in [
            "ftp://10.0.0.1/",
            "http://user@10.0.0.1/",
            "http:///path",
            "http://10.0.0.1:0/",
            "http://bad_host/",
        ] {
            let errors = validate_policy(&with_url(bad), &allow);
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert!(
                errors[0].message.starts_with("Invalid value"),
                "{bad}: {errors:?}"
            );
        }
    }

    #[test]
    fn static_addresses_parse_and_special_ones_need_the_allowlist() {
        let p = policy(json!({"backends": {"primary": {"addresses": [
            "10.0.1.1:80", "[2001:db8::1]:443", "backend-1.example.com:8080",
            "127.0.0.1:8080", "[::1]:80", "localhost:80", "0.0.0.0:80", "[::ffff:169.254.169.254]:80"
        ]}}}));
        let errors = validate_policy(&p, &ctx(&["backend-1.example.com"]));
        assert_eq!(
            paths(&errors),
            vec![
                "spec.backends.primary.addresses[3]",
                "spec.backends.primary.addresses[4]",
                "spec.backends.primary.addresses[5]",
                "spec.backends.primary.addresses[6]",
                "spec.backends.primary.addresses[7]",
            ],
            "{errors:#?}"
        );
        // The demo's loopback backends, explicitly allowed.
        let p = policy(
            json!({"backends": {"primary": {"addresses": ["127.0.0.1:8080", "localhost:8081"]}}}),
        );
        assert!(validate_policy(&p, &ctx(&["127.0.0.0/8", "localhost"])).is_empty());
    }

    #[test]
    fn static_host_names_are_refused_unless_the_allowlist_names_them() {
        let p = policy(json!({"backends": {"primary": {"addresses": [
            "kubernetes.default.svc:443", "backend-1.example.com:8080"
        ]}}}));
        let errors = validate_policy(&p, &ctx(&["127.0.8.0/24", "*.example.com"]));
        assert_eq!(
            paths(&errors),
            vec!["spec.backends.primary.addresses[0]"],
            "{errors:#?}"
        );
        assert!(
            errors[0].message.starts_with("Forbidden")
                && errors[0]
                    .message
                    .contains("\"kubernetes.default.svc\" is not in --probe-allowlist"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_probe_path_that_would_inject_header_lines_is_invalid() {
        for bad in ["/healthz\r\nX-Injected: 1", "/a b", "healthz"] {
            let p = policy(json!({"probe": {"http": {"path": bad}}}));
            let errors = validate_policy(&p, &ctx(&[]));
            assert_eq!(paths(&errors), vec!["spec.probe.http.path"], "{bad:?}");
            assert!(errors[0].message.starts_with("Invalid value"), "{errors:?}");
        }
        let ok = policy(json!({"probe": {"http": {"path": "/healthz?full=1"}}}));
        assert!(validate_policy(&ok, &ctx(&[])).is_empty());
    }

    #[test]
    fn address_syntax_errors() {
        for (address, why) in [
            ("10.0.1.1:0", "outside 1-65535"),
            ("10.0.1.1:http", "is not a number"),
            ("2001:db8::1:80", "brackets"),
            ("[zz::1]:80", "not an IPv6 address"),
            ("-bad-.example.com:80", "not an IP address or host name"),
        ] {
            let p = policy(json!({"backends": {"primary": {"addresses": [address]}}}));
            let errors = validate_policy(&p, &ctx(&[]));
            assert_eq!(errors.len(), 1, "{address}");
            assert!(errors[0].message.contains(why), "{address}: {errors:?}");
        }
    }

    #[test]
    fn duplicates_are_found_across_pools_case_insensitively() {
        let p = policy(json!({"backends": {
            "primary": {"addresses": ["Backend.example.com:80", "10.0.0.1:80"]},
            "emergency": {"addresses": ["backend.example.com:80", "10.0.0.1:81"]}
        }}));
        let errors = validate_policy(&p, &ctx(&[".example.com"]));
        assert_eq!(paths(&errors), vec!["spec.backends.emergency.addresses[0]"]);
    }

    #[test]
    fn controller_namespace_defaults_to_the_policy_namespace() {
        let mut p = policy(json!({"ingress": {
            "ingresses": ["web"], "primaryClass": "a", "backupClass": "b",
            "health": {"controllerDeployment": {"namespace": "ingress-nginx", "name": "ctl"}}
        }}));
        let mut allow = ctx(&[]);
        assert_eq!(validate_policy(&p, &allow).len(), 1);
        allow.allowed_ingress_controller_namespaces = vec!["ingress-nginx".into()];
        assert!(validate_policy(&p, &allow).is_empty());
        // Own namespace is always fine; no namespace at all means "default".
        allow.allowed_ingress_controller_namespaces.clear();
        p.metadata.namespace = Some("ingress-nginx".into());
        assert!(validate_policy(&p, &allow).is_empty());
        p.metadata.namespace = None;
        assert_eq!(validate_policy(&p, &allow).len(), 1);
        if let Some(ingress) = p.spec.ingress.as_mut() {
            ingress
                .health
                .controller_deployment
                .as_mut()
                .unwrap()
                .namespace = Some("default".into());
        }
        assert!(validate_policy(&p, &allow).is_empty());
    }

    #[test]
    fn selector_rules() {
        let p = policy(json!({"ingress": {
            "selector": {"matchExpressions": [
                {"key": "app", "operator": "In"},
                {"key": "tier", "operator": "Exists", "values": ["x"]},
                {"key": "bad key", "operator": "NotIn", "values": ["x"]}
            ]},
            "primaryClass": "a", "backupClass": "b",
            "health": {"controllerDeployment": {"name": "ctl"}}
        }}));
        let errors = validate_policy(&p, &ctx(&[]));
        assert_eq!(
            paths(&errors),
            vec![
                "spec.ingress.selector.matchExpressions[0].values",
                "spec.ingress.selector.matchExpressions[1].values",
                "spec.ingress.selector.matchExpressions[2].key",
            ]
        );
        let empty = policy(json!({"ingress": {
            "selector": {}, "primaryClass": "a", "backupClass": "b",
            "health": {"controllerDeployment": {"name": "ctl"}}
        }}));
        assert_eq!(
            paths(&validate_policy(&empty, &ctx(&[]))),
            vec!["spec.ingress.selector"]
        );
    }

    #[test]
    fn warnings_need_a_clock_and_do_not_invalidate() {
        let now: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let p = policy(json!({
            "override": {"mode": "ForceBackup", "reason": "x", "expiresAt": "2026-05-31T00:00:00Z"},
            "ingress": {"ingresses": ["web"], "primaryClass": "a", "backupClass": "b", "mode": "HotStandby",
                        "health": {"controllerDeployment": {"name": "ctl"}}},
            "recovery": {"failbackSteps": [10, 50]},
            "probe": {"http": {"maxLatencyMs": 5000}, "timeoutSeconds": 5},
            "safety": {"maxEjectionPercent": 0}
        }));
        assert!(validate_policy(&p, &ctx(&[])).is_empty());
        let warnings = policy_warnings(&p, now);
        assert_eq!(
            paths(&warnings),
            vec![
                "spec.override.expiresAt",
                "spec.recovery.failbackSteps",
                "spec.probe.http.maxLatencyMs",
                "spec.safety.maxEjectionPercent",
            ]
        );
        let earlier: Timestamp = "2026-05-01T00:00:00Z".parse().unwrap();
        assert_eq!(policy_warnings(&p, earlier).len(), 3);
    }

    #[test]
    fn context_check_rejects_bad_flags() {
        assert!(
            ctx(&["10.0.0.0/8", "10.1.1.1", "a.example", ".example"])
                .check()
                .is_ok()
        );
        assert_eq!(
            ctx(&["10.0.0.0/33"]).check(),
            Err(ContextError::AllowlistEntry(AllowlistError(
                "10.0.0.0/33".into()
            )))
        );
        let bad_ns = ValidationContext {
            allowed_ingress_controller_namespaces: vec!["Ingress_Nginx".into()],
            ..Default::default()
        };
        assert!(bad_ns.check().is_err());
    }

    #[test]
    fn context_from_flags_splits_commas() {
        let ctx = ValidationContext::from_flags(
            ["ingress-nginx, other", ""],
            ["10.0.0.0/8,.example.internal"],
        )
        .unwrap();
        assert_eq!(
            ctx.allowed_ingress_controller_namespaces,
            vec!["ingress-nginx", "other"]
        );
        assert_eq!(ctx.probe_allowlist, vec!["10.0.0.0/8", ".example.internal"]);
        assert!(ValidationContext::from_flags(Vec::<String>::new(), ["not/a/cidr"]).is_err());
    }

    #[test]
    fn emergency_service_must_not_be_the_primary_service() {
        let p = policy(json!({"backends": {
            "primary": {"service": {"name": "web"}},
            "emergency": {"deployment": {"name": "web", "activeReplicas": 2, "maxReplicas": 2}}
        }}));
        assert_eq!(
            paths(&validate_policy(&p, &ctx(&[]))),
            vec!["spec.backends.emergency.deployment.name"]
        );
    }
}
