//! Real HTTP backends on loopback addresses whose behaviour can be changed while they run:
//! healthy, answering an error status, slow, or refusing connections altogether. The demo and
//! the integration tests break them on cue; the prober measures them like any other server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How a backend answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// 200 "ok".
    Healthy,
    /// This status code (e.g. 503).
    Status(u16),
    /// 200, but only after this delay.
    Slow(Duration),
    /// Not listening: connections are refused.
    Refuse,
}

struct Backend {
    behavior: watch::Sender<Behavior>,
    task: Option<JoinHandle<()>>,
    /// Arrival times of the most recent requests, for latency measurements from outside.
    requests: Arc<Mutex<std::collections::VecDeque<std::time::Instant>>>,
}

/// Request arrivals remembered per backend.
const REQUEST_LOG: usize = 64;

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A set of loopback backends, keyed by address.
#[derive(Default, Clone)]
pub struct Farm {
    backends: Arc<Mutex<HashMap<SocketAddr, Backend>>>,
}

impl Farm {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts (or reconfigures) the backend at `addr` with `behavior`.
    pub async fn set(&self, addr: SocketAddr, behavior: Behavior) -> std::io::Result<()> {
        let needs_listener = {
            let mut map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
            let b = map.entry(addr).or_insert_with(|| Backend {
                behavior: watch::channel(behavior).0,
                task: None,
                requests: Arc::default(),
            });
            b.behavior.send_replace(behavior);
            if behavior == Behavior::Refuse {
                if let Some(t) = b.task.take() {
                    t.abort();
                }
                false
            } else {
                b.task.as_ref().is_none_or(|t| t.is_finished())
            }
        };
        if needs_listener {
            let listener = bind_retrying(addr).await?;
            let rx = {
                let map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
                map.get(&addr)
                    .map(|b| (b.behavior.subscribe(), b.requests.clone()))
            };
            let Some((rx, log)) = rx else {
                return Ok(());
            };
            let task = tokio::spawn(serve(listener, rx, log));
            let mut map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(b) = map.get_mut(&addr) {
                b.task = Some(task);
            }
        }
        Ok(())
    }

    /// Stops and forgets the backend at `addr`.
    pub fn remove(&self, addr: SocketAddr) {
        self.backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&addr);
    }

    /// When the most recent requests (up to 64) reached the backend at `addr`, oldest first.
    pub fn requests(&self, addr: SocketAddr) -> Vec<std::time::Instant> {
        let map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&addr).map_or_else(Vec::new, |b| {
            b.requests
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .copied()
                .collect()
        })
    }

    /// Addresses currently known.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self
            .backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        v.sort();
        v
    }
}

/// A just-closed listener's port can take a moment to be reusable.
async fn bind_retrying(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("bind failed")))
}

async fn serve(
    listener: TcpListener,
    behavior: watch::Receiver<Behavior>,
    log: Arc<Mutex<std::collections::VecDeque<std::time::Instant>>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let refuse_watch = behavior.clone();
        let behavior = behavior.clone();
        let log = log.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let b = *behavior.borrow();
                {
                    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                    if l.len() == REQUEST_LOG {
                        l.pop_front();
                    }
                    l.push_back(std::time::Instant::now());
                }
                async move {
                    let (status, body) = match b {
                        Behavior::Healthy | Behavior::Refuse => (200, "ok\n"),
                        Behavior::Status(code) => (code, "failing on purpose\n"),
                        Behavior::Slow(d) => {
                            tokio::time::sleep(d).await;
                            (200, "ok, slowly\n")
                        }
                    };
                    let resp = Response::builder()
                        .status(status)
                        .body(Full::new(Bytes::from_static(body.as_bytes())))
                        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            // Refusing must also cut kept-alive connections, as a dead process would.
            let mut watch = refuse_watch;
            tokio::select! {
                _ = conn => {}
                _ = watch.wait_for(|b| *b == Behavior::Refuse) => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr) -> std::io::Result<String> {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn behaviours_change_while_running() {
        let farm = Farm::new();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        // Find a free port first, then use a fixed address so it can be re-bound.
        let probe = TcpListener::bind(addr).await.unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        farm.set(addr, Behavior::Healthy).await.unwrap();
        assert!(get(addr).await.unwrap().starts_with("HTTP/1.1 200"));
        farm.set(addr, Behavior::Status(503)).await.unwrap();
        assert!(get(addr).await.unwrap().starts_with("HTTP/1.1 503"));
        farm.set(addr, Behavior::Refuse).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(get(addr).await.is_err(), "refused while Refuse");
        farm.set(addr, Behavior::Healthy).await.unwrap();
        assert!(get(addr).await.unwrap().starts_with("HTTP/1.1 200"));
        farm.remove(addr);
    }
}
