//! Reaching a target: confinement, resolution and the TCP connect shared by both check kinds.
//!
//! Confinement is enforced here, at the only place that opens sockets, so no check type can
//! forget it: a refused destination returns before any packet is sent.

use super::allowlist::Confinement;
use super::config::Host;
use super::outcome;
use crate::health::{CheckOutcome, FailureKind};
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// Resolves `host` (names via the system resolver) and picks an address the confinement
/// permits. Names are re-resolved only when a new connection is needed.
pub async fn permitted_addr(
    host: &Host,
    port: u16,
    conf: &Confinement,
) -> Result<SocketAddr, CheckOutcome> {
    match (host, conf.permits_host(host)) {
        (Host::Ip(ip), Some(true)) => Ok(SocketAddr::new(*ip, port)),
        (Host::Ip(ip), _) => Err(disallowed(&ip.to_string())),
        (Host::Name(name), verdict) => {
            let addrs = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|e| {
                    outcome::failure(FailureKind::Other, format!("cannot resolve {name}: {e}"))
                })?;
            let mut first_forbidden = None;
            for a in addrs {
                if verdict == Some(true) || conf.permits_resolved(a.ip()) {
                    return Ok(a);
                }
                first_forbidden.get_or_insert(a.ip());
            }
            Err(match first_forbidden {
                Some(ip) => disallowed(&format!("{name} ({ip})")),
                None => outcome::failure(FailureKind::Other, format!("{name} has no address")),
            })
        }
    }
}

pub fn disallowed(what: &str) -> CheckOutcome {
    outcome::failure(
        FailureKind::Disallowed,
        format!("{what} not in probe allowlist; not contacted"),
    )
}

/// Connects with Nagle off: probes write one small request and wait, which is exactly the
/// pattern Nagle + delayed ACK turns into a 40 ms stall.
pub async fn connect(addr: SocketAddr) -> Result<TcpStream, CheckOutcome> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| outcome::from_io(&e))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A TCP check: the port accepts a connection. Closed right away; nothing is sent.
pub async fn check(host: &Host, port: u16, conf: &Confinement) -> CheckOutcome {
    let addr = match permitted_addr(host, port, conf).await {
        Ok(a) => a,
        Err(o) => return o,
    };
    match connect(addr).await {
        Ok(_stream) => CheckOutcome::Healthy,
        Err(o) => o,
    }
}
