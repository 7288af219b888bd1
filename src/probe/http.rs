//! The HTTP/1.1 check, with one keep-alive connection per target.
//!
//! Reusing the connection makes a steady-state check one write and one read instead of a TCP
//! handshake, a request and a teardown — most of the CPU a prober spends, and the reason the
//! prober can undercut HAProxy (which closes after every check). hyper's low-level
//! `client::conn::http1` gives exactly one connection we own, no pool to tune or to leak.
//! A connection the target closed while idle is not a failure: the check retries once on a
//! fresh connection before judging, as browsers do.

use super::allowlist::Confinement;
use super::config::{Host, HttpCheck};
use super::outcome;
use super::tcp;
use crate::health::{CheckOutcome, FailureKind};
use bytes::Bytes;
use http::header::{HOST, USER_AGENT};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{Builder, SendRequest};
use std::net::SocketAddr;
use tokio::task::JoinHandle;

const AGENT: HeaderValue = HeaderValue::from_static("ingress-failover-probe/0.1");

/// hyper's read buffer is sized exactly: it never grows, so a target sending a huge body or
/// huge headers cannot inflate the memory an idle connection keeps. Headers beyond this are a
/// protocol failure, which is fair for a health endpoint.
const READ_BUFFER: usize = 8 * 1024;

/// An open connection and the task driving it; dropping it closes the socket.
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    driver: JoinHandle<()>,
    peer: SocketAddr,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Per-target HTTP state, kept across checks by the target's task.
pub struct HttpProber {
    conn: Option<Conn>,
    /// Body prefix for substring matching; reused across checks, only filled when a match is
    /// configured, and never beyond the body limit.
    body: Vec<u8>,
    host_header: HeaderValue,
}

/// What went wrong on a reused connection decides whether a retry on a fresh one is fair.
enum Attempt {
    Done(CheckOutcome),
    /// The connection died before any response byte: likely an idle close we raced with.
    StaleConnection(CheckOutcome),
}

impl HttpProber {
    pub fn new(host: &Host, port: u16) -> Self {
        let authority = if port == 80 {
            host.to_string()
        } else {
            format!("{host}:{port}")
        };
        HttpProber {
            conn: None,
            body: Vec::new(),
            host_header: HeaderValue::from_str(&authority)
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
        }
    }

    /// Forgets the connection, e.g. after a timeout left it in an unknown state.
    pub fn reset(&mut self) {
        self.conn = None;
    }

    pub async fn check(
        &mut self,
        host: &Host,
        port: u16,
        check: &HttpCheck,
        conf: &Confinement,
        body_limit: usize,
    ) -> CheckOutcome {
        // The allowlist may have changed since the connection was opened.
        if let Some(c) = &self.conn {
            let still_permitted = match conf.permits_host(host) {
                Some(v) => v,
                None => conf.permits_resolved(c.peer.ip()),
            };
            if !still_permitted || c.sender.is_closed() {
                self.conn = None;
            }
        }
        let reused = self.conn.is_some();
        match self.attempt(host, port, check, conf, body_limit).await {
            Attempt::Done(o) => o,
            Attempt::StaleConnection(o) if !reused => o,
            Attempt::StaleConnection(_) => {
                self.conn = None;
                match self.attempt(host, port, check, conf, body_limit).await {
                    Attempt::Done(o) | Attempt::StaleConnection(o) => o,
                }
            }
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
            match open(host, port, conf).await {
                Ok(c) => self.conn = Some(c),
                Err(o) => return Attempt::Done(o),
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return Attempt::Done(outcome::failure(FailureKind::Other, "no connection".into()));
        };
        if conn.sender.ready().await.is_err() {
            self.conn = None;
            return Attempt::StaleConnection(outcome::failure(
                FailureKind::Reset,
                "connection closed by peer".into(),
            ));
        }

        let mut req = Request::new(Empty::<Bytes>::new());
        *req.method_mut() = check.method.clone();
        *req.uri_mut() = Uri::from(check.path.clone());
        let host_value = check.host_header.as_ref().unwrap_or(&self.host_header);
        req.headers_mut().insert(HOST, host_value.clone());
        req.headers_mut().insert(USER_AGENT, AGENT);

        let response = match conn.sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.conn = None;
                let o = outcome::from_hyper(&e);
                let before_response = e.is_incomplete_message() || e.is_closed() || e.is_canceled();
                return if before_response {
                    Attempt::StaleConnection(o)
                } else {
                    Attempt::Done(o)
                };
            }
        };

        let status = response.status().as_u16();
        let mut body = response.into_body();
        let want_body = check.body_contains.is_some();
        self.body.clear();
        let mut seen = 0usize;
        let mut truncated = false;
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    self.conn = None;
                    return Attempt::Done(outcome::from_hyper(&e));
                }
            };
            if let Ok(data) = frame.into_data() {
                let room = body_limit.saturating_sub(seen);
                if want_body {
                    self.body.extend_from_slice(&data[..data.len().min(room)]);
                }
                seen += data.len();
                if seen >= body_limit {
                    truncated = true;
                    break;
                }
            }
        }
        if truncated {
            // The rest of a huge body is never read: the connection cannot carry another
            // request, so it goes, and memory stays bounded by the limit.
            self.conn = None;
        }

        if !check.expected_status.contains(status) {
            return Attempt::Done(outcome::failure(
                FailureKind::BadStatus,
                format!("status {status} not in {}", check.expected_status),
            ));
        }
        if let Some(needle) = &check.body_contains {
            let found = self
                .body
                .windows(needle.len())
                .any(|w| w == needle.as_slice());
            // Keep a big prefix buffer from pinning memory between checks.
            if self.body.capacity() > 4 * 1024 {
                self.body = Vec::new();
            }
            if !found {
                return Attempt::Done(outcome::failure(
                    FailureKind::BadBody,
                    format!(
                        "body (first {} bytes) lacks {:?}",
                        seen.min(body_limit),
                        String::from_utf8_lossy(needle)
                    ),
                ));
            }
        }
        Attempt::Done(CheckOutcome::Healthy)
    }
}

async fn open(host: &Host, port: u16, conf: &Confinement) -> Result<Conn, CheckOutcome> {
    let peer = tcp::permitted_addr(host, port, conf).await?;
    let stream = tcp::connect(peer).await?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, connection) = Builder::new()
        .read_buf_exact_size(Some(READ_BUFFER))
        .handshake::<_, Empty<Bytes>>(io)
        .await
        .map_err(|e| outcome::from_hyper(&e))?;
    let driver = tokio::spawn(async move {
        // Errors surface through the request/response futures; nothing to report here.
        let _ = connection.await;
    });
    Ok(Conn {
        sender,
        driver,
        peer,
    })
}
