//! The HTTP/1.1 check, with one keep-alive connection per target.
//!
//! Reusing the connection makes a steady-state check one write and one read instead of a TCP
//! handshake, a request and a teardown — most of the CPU a prober spends, and the reason the
//! prober can undercut HAProxy (which closes after every check). The request bytes are rendered
//! once per target and the read buffer is reused, so a steady-state check allocates nothing.
//! A connection the target closed while idle is not a failure: the check retries once on a
//! fresh connection before judging, as browsers do. See [`super::wire`] for why the response
//! is read by hand rather than through hyper.

use super::allowlist::Confinement;
use super::config::{Host, HttpCheck};
use super::outcome;
use super::tcp;
use super::wire::{BodyEnd, Wire, WireError};
use crate::health::{CheckOutcome, FailureKind};
use http::Method;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const AGENT: &str = "ingress-failover-probe/0.1";

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Held while the connection stays open between checks; none for a connection that
    /// carries one check only (the keep-alive budget was full when it was made).
    kept: Option<OwnedSemaphorePermit>,
}

/// What became of the connection after a check, for the budget's metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Still open for the next check (or no connection to speak of).
    Yes,
    /// Closed because every keep-alive slot was taken: the next check connects again.
    OverBudget,
}

/// Per-target HTTP state, kept across checks by the target's task.
pub struct HttpProber {
    conn: Option<Conn>,
    wire: Wire,
    /// Body prefix for substring matching; only filled when a match is configured.
    body: Vec<u8>,
    /// The complete request, rendered once: header values were validated when the spec was
    /// built, so no CR/LF can be smuggled in.
    request: Box<[u8]>,
    head_request: bool,
}

enum Attempt {
    Done(CheckOutcome),
    /// The connection died before any response byte: likely an idle close we raced with.
    Stale(CheckOutcome),
}

fn render_request(host: &Host, port: u16, check: &HttpCheck) -> Box<[u8]> {
    let mut r = Vec::with_capacity(128);
    r.extend_from_slice(check.method.as_str().as_bytes());
    r.push(b' ');
    r.extend_from_slice(check.path.as_str().as_bytes());
    r.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    match &check.host_header {
        Some(h) => r.extend_from_slice(h.as_bytes()),
        None if port == 80 => r.extend_from_slice(host.to_string().as_bytes()),
        None => r.extend_from_slice(format!("{host}:{port}").as_bytes()),
    }
    r.extend_from_slice(b"\r\nUser-Agent: ");
    r.extend_from_slice(AGENT.as_bytes());
    r.extend_from_slice(b"\r\nAccept: */*\r\n\r\n");
    r.into_boxed_slice()
}

impl HttpProber {
    pub fn new(host: &Host, port: u16, check: &HttpCheck) -> Self {
        HttpProber {
            conn: None,
            wire: Wire::default(),
            body: Vec::new(),
            request: render_request(host, port, check),
            head_request: check.method == Method::HEAD,
        }
    }

    /// Forgets the connection, e.g. after a timeout left it in an unknown state.
    pub fn reset(&mut self) {
        self.conn = None;
        self.wire.reset();
    }

    pub async fn check(
        &mut self,
        host: &Host,
        port: u16,
        check: &HttpCheck,
        conf: &Confinement,
        body_limit: usize,
        budget: &Arc<Semaphore>,
    ) -> (CheckOutcome, Kept) {
        let outcome = self.check_on(host, port, check, conf, body_limit).await;
        // A clean connection stays open only with a keep-alive slot: past the budget it is
        // closed now, so open sockets stay within the open-file limit whatever the target count.
        let kept = match self.conn.as_mut() {
            Some(c) if c.kept.is_none() => match budget.clone().try_acquire_owned() {
                Ok(permit) => {
                    c.kept = Some(permit);
                    Kept::Yes
                }
                Err(_) => {
                    self.conn = None;
                    Kept::OverBudget
                }
            },
            _ => Kept::Yes,
        };
        (outcome, kept)
    }

    async fn check_on(
        &mut self,
        host: &Host,
        port: u16,
        check: &HttpCheck,
        conf: &Confinement,
        body_limit: usize,
    ) -> CheckOutcome {
        if let Some(c) = &self.conn {
            // The allowlist may have changed since the connection was opened; and a target
            // that closed an idle connection is noticed here without a failed request.
            let permitted = match host {
                Host::Ip(ip) => conf.judge_ip(*ip).is_ok(),
                Host::Name(name) => {
                    conf.judge_name(name).is_ok() && conf.judge_resolved(c.peer.ip()).is_ok()
                }
            };
            let mut probe = [0u8; 1];
            let idle_ok = matches!(c.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            if !permitted || !idle_ok {
                self.conn = None;
            }
        }
        let reused = self.conn.is_some();
        match self.attempt(host, port, check, conf, body_limit).await {
            Attempt::Done(o) => o,
            Attempt::Stale(o) if !reused => o,
            Attempt::Stale(_) => match self.attempt(host, port, check, conf, body_limit).await {
                Attempt::Done(o) | Attempt::Stale(o) => o,
            },
        }
    }

    async fn attempt(
        &mut self,
        host: &Host,
        port: u16,
        check: &HttpCheck,
        conf: &Confinement,
        body_limit: usize,
    ) -> Attempt {
        if self.conn.is_none() {
            let peer = match tcp::permitted_addr(host, port, conf).await {
                Ok(p) => p,
                Err(o) => return Attempt::Done(o),
            };
            match tcp::connect(peer).await {
                Ok(stream) => {
                    self.conn = Some(Conn {
                        stream,
                        peer,
                        kept: None,
                    })
                }
                Err(o) => return Attempt::Done(o),
            }
        }
        self.wire.reset();
        let Some(conn) = self.conn.as_mut() else {
            return Attempt::Done(outcome::failure(FailureKind::Other, "no connection".into()));
        };
        let result = exchange(
            &mut conn.stream,
            &self.request,
            &mut self.wire,
            self.head_request,
            check.body_contains.is_some().then_some(&mut self.body),
            body_limit as u64,
        )
        .await;
        let (status, complete) = match result {
            Ok((status, keep)) => (status, keep),
            Err(e) => {
                self.conn = None;
                let stale = !self.wire.received_any()
                    && match &e {
                        WireError::Closed { .. } => true,
                        WireError::Io(io) => matches!(
                            io.kind(),
                            std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::BrokenPipe
                                | std::io::ErrorKind::ConnectionAborted
                        ),
                        _ => false,
                    };
                let o = outcome::from_wire(&e);
                return if stale {
                    Attempt::Stale(o)
                } else {
                    Attempt::Done(o)
                };
            }
        };
        if !complete {
            // Unread body or `Connection: close`: this connection cannot carry another check.
            self.conn = None;
        }
        Attempt::Done(self.judge(status, check, body_limit))
    }

    fn judge(&mut self, status: u16, check: &HttpCheck, body_limit: usize) -> CheckOutcome {
        if !check.expected_status.contains(status) {
            return outcome::failure(
                FailureKind::BadStatus,
                format!("status {status} not in {}", check.expected_status),
            );
        }
        if let Some(needle) = &check.body_contains {
            let found = self
                .body
                .windows(needle.len())
                .any(|w| w == needle.as_slice());
            let seen = self.body.len().min(body_limit);
            self.body.clear();
            // Keep a large prefix buffer from pinning memory between checks.
            if self.body.capacity() > 4 * 1024 {
                self.body = Vec::new();
            }
            if !found {
                return outcome::failure(
                    FailureKind::BadBody,
                    format!(
                        "body (first {seen} bytes) lacks {:?}",
                        String::from_utf8_lossy(needle)
                    ),
                );
            }
        }
        CheckOutcome::Healthy
    }
}

/// Writes the request and reads the answer. Returns the status and whether the connection is
/// left clean for reuse.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    wire: &mut Wire,
    head_request: bool,
    sink: Option<&mut Vec<u8>>,
    limit: u64,
) -> Result<(u16, bool), WireError> {
    stream.write_all(request).await?;
    let head = wire.read_head(stream, head_request).await?;
    let end = wire.read_body(stream, head.framing, limit, sink).await?;
    let clean = head.keep_alive && matches!(end, BodyEnd::Complete { .. });
    Ok((head.status, clean))
}
