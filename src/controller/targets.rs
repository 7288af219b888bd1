//! What the prober checks for a policy: every known endpoint with the policy's probe, plus the
//! primary load balancer's health URL.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{FailoverPolicySpec, HttpMethod, StatusRange};
use crate::engine::{EndpointFact, Pool};
use crate::probe::{CheckKind, CheckSpec, ConfigError, HttpCheck, StatusRanges, Target, Tier};
use crate::validation::address::{HealthUrl, Host, parse_health_url, parse_host_port};

/// Endpoint key the prober reports for the load balancer's health URL.
pub const LB_ENDPOINT: &str = "health-url";
/// Endpoint key of the backup load balancer's health URL.
pub const BACKUP_LB_ENDPOINT: &str = "backup-health-url";

fn ranges(statuses: &[StatusRange]) -> Result<StatusRanges, ConfigError> {
    StatusRanges::new(
        statuses
            .iter()
            .filter_map(StatusRange::bounds)
            .map(|(lo, hi)| lo..=hi)
            .collect(),
    )
}

fn method(m: HttpMethod) -> http::Method {
    match m {
        HttpMethod::Get => http::Method::GET,
        HttpMethod::Head => http::Method::HEAD,
        HttpMethod::Options => http::Method::OPTIONS,
    }
}

/// The check every backend of the policy gets.
pub fn backend_check(spec: &FailoverPolicySpec) -> Result<CheckSpec, ConfigError> {
    let p = &spec.probe;
    let (kind, port) = match (&p.http, &p.tcp) {
        (_, Some(tcp)) => (CheckKind::Tcp, tcp.port),
        (Some(h), None) => {
            let mut c = HttpCheck::get(&h.path)?
                .with_method(method(h.method))
                .with_status(ranges(&h.expected_statuses)?);
            if let Some(host) = &h.host {
                c = c.with_host_header(host)?;
            }
            if let Some(body) = &h.body_contains {
                c = c.with_body_contains(body.as_bytes().to_vec());
            }
            (CheckKind::Http(c), h.port)
        }
        (None, None) => (CheckKind::Http(HttpCheck::get("/")?), None),
    };
    let mut check = CheckSpec::new(kind);
    check.port = port.and_then(|p| u16::try_from(p).ok());
    check.interval = Duration::from_secs(u64::from(p.interval_seconds.max(1)));
    check.timeout = Duration::from_secs(u64::from(p.timeout_seconds.max(1)));
    check.max_latency = p
        .http
        .as_ref()
        .and_then(|h| h.max_latency_ms)
        .map(|ms| Duration::from_millis(u64::from(ms)));
    check.jitter = f64::from(p.jitter_percent.min(50)) / 100.0;
    Ok(check)
}

/// Targets for every endpoint plus the health URL. Endpoints whose address does not parse are
/// skipped (validation already refused malformed static addresses).
pub fn targets(
    spec: &FailoverPolicySpec,
    endpoints: &[EndpointFact],
) -> Result<(Vec<Target>, Vec<IpAddr>), ConfigError> {
    let check = Arc::new(backend_check(spec)?);
    let mut out = Vec::with_capacity(endpoints.len() + 1);
    let mut own = Vec::with_capacity(endpoints.len());
    for ep in endpoints {
        let Ok((host, port)) = parse_host_port(&ep.address) else {
            continue;
        };
        if let Host::Ip(ip) = host {
            own.push(ip);
        }
        out.push(Target {
            tier: match ep.pool {
                Pool::Primary => Tier::Primary,
                Pool::Emergency => Tier::Emergency,
            },
            endpoint: Arc::from(ep.address.as_str()),
            host,
            port,
            spec: check.clone(),
        });
    }
    // The Gateway tier alone brings its own health URLs (with spec.ingress, the tier's URLs
    // are the ingress tier's: validation refuses them in spec.gateway).
    let gateway_health = spec
        .gateway
        .as_ref()
        .filter(|_| spec.ingress.is_none())
        .map(|g| {
            (
                g.primary_health().as_tier_health(),
                g.backup_health().as_tier_health(),
            )
        });
    if let Some((primary, backup)) = &gateway_health {
        for (health, tier, endpoint) in [
            (primary, Tier::LoadBalancer, LB_ENDPOINT),
            (backup, Tier::BackupLoadBalancer, BACKUP_LB_ENDPOINT),
        ] {
            if let Some(url) = health.url.as_deref() {
                out.push(lb_target(spec, health, tier, endpoint, url)?);
            }
        }
    }
    if let Some(ingress) = &spec.ingress {
        if let Some(url) = ingress.health.url.as_deref() {
            out.push(lb_target(
                spec,
                &ingress.health,
                Tier::LoadBalancer,
                LB_ENDPOINT,
                url,
            )?);
        }
        if let Some(backup) = &ingress.backup_health
            && let Some(url) = backup.url.as_deref()
        {
            out.push(lb_target(
                spec,
                backup,
                Tier::BackupLoadBalancer,
                BACKUP_LB_ENDPOINT,
                url,
            )?);
        }
    }
    Ok((out, own))
}

/// A load balancer's health URL, checked with the policy's probe timing and the tier's own
/// expected statuses (one copy for the primary and the backup tier).
fn lb_target(
    spec: &FailoverPolicySpec,
    health: &crate::api::PrimaryTierHealth,
    tier: Tier,
    endpoint: &str,
    url: &str,
) -> Result<Target, ConfigError> {
    let HealthUrl { host, port, path } =
        parse_health_url(url).map_err(|_| ConfigError::BadPath(url.to_string()))?;
    let mut check = CheckSpec::new(CheckKind::Http(
        HttpCheck::get(&path)?.with_status(ranges(&health.expected_statuses)?),
    ));
    let p = &spec.probe;
    check.interval = Duration::from_secs(u64::from(p.interval_seconds.max(1)));
    check.timeout = Duration::from_secs(u64::from(p.timeout_seconds.max(1)));
    check.jitter = f64::from(p.jitter_percent.min(50)) / 100.0;
    Ok(Target {
        tier,
        endpoint: Arc::from(endpoint),
        host,
        port,
        spec: Arc::new(check),
    })
}
