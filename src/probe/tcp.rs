//! Reaching a target: confinement, resolution and the TCP connect shared by both check kinds.
//!
//! Confinement is enforced here, at the only place that opens sockets, so no check type can
//! forget it: a refused destination returns before any packet is sent.

use super::allowlist::Confinement;
use super::config::Host;
use super::outcome;
use crate::health::{CheckOutcome, FailureKind};
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// Judges `host` and picks an address the confinement permits. A name is judged before it is
/// resolved (an unlisted name is never looked up) and each address it resolves to before it is
/// used. Names are re-resolved only when a new connection is needed.
pub async fn permitted_addr(
    host: &Host,
    port: u16,
    conf: &Confinement,
) -> Result<SocketAddr, CheckOutcome> {
    permitted_addr_with(host, port, conf, |name, port| async move {
        tokio::net::lookup_host((name.as_str(), port))
            .await
            .map(|addrs| addrs.collect())
    })
    .await
}

/// [`permitted_addr`] with the resolver passed in, so tests can prove what is never resolved.
pub(super) async fn permitted_addr_with<R, F>(
    host: &Host,
    port: u16,
    conf: &Confinement,
    resolve: R,
) -> Result<SocketAddr, CheckOutcome>
where
    R: FnOnce(String, u16) -> F,
    F: Future<Output = std::io::Result<Vec<SocketAddr>>>,
{
    match host {
        Host::Ip(ip) => match conf.judge_ip(*ip) {
            Ok(()) => Ok(SocketAddr::new(*ip, port)),
            Err(refusal) => Err(disallowed(&refusal)),
        },
        Host::Name(name) => {
            conf.judge_name(name).map_err(|r| disallowed(&r))?;
            let addrs = resolve(name.clone(), port).await.map_err(|e| {
                outcome::failure(FailureKind::Other, format!("cannot resolve {name}: {e}"))
            })?;
            let mut first_refusal = None;
            for a in addrs {
                match conf.judge_resolved(a.ip()) {
                    Ok(()) => return Ok(a),
                    Err(r) => {
                        first_refusal.get_or_insert(r);
                    }
                }
            }
            Err(match first_refusal {
                Some(r) => disallowed(&format!("{name}: {r}")),
                None => outcome::failure(FailureKind::Other, format!("{name} has no address")),
            })
        }
    }
}

/// A refused destination: the message names it and the rule, and nothing else (there was no
/// contact, so there is nothing else to say).
pub fn disallowed(refusal: &dyn std::fmt::Display) -> CheckOutcome {
    outcome::failure(
        FailureKind::Disallowed,
        format!("refused: {refusal}; not contacted"),
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
