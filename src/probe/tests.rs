//! End-to-end checks against real loopback servers written for the purpose.
//!
//! Timing bounds are generous (about 1 s of margin) because these run on a noisy shared
//! 2-core machine; what they guard against is a fact arriving *late by a timeout* or never.

use super::*;
use crate::health::FailureKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

const MARGIN: Duration = Duration::from_secs(1);

#[derive(Clone, Copy)]
enum Behaviour {
    Status(u16),
    /// Answer 200 after a delay.
    Slow(Duration),
    /// Accept and read, never answer.
    Hang,
    /// Headers promising 100 bytes, 7 sent, then close.
    CloseMidResponse,
    /// Not HTTP at all.
    Garbage,
    /// 200 with a body of this many bytes; the last bytes are "needle".
    Huge(usize),
    Body(&'static str),
    /// 200 and close the socket without announcing it: the idle-close race.
    CloseAfterResponse,
    /// 200 only when the Host header equals this, else 421.
    RequireHost(&'static str),
}

struct Server {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

async fn serve(b: Behaviour) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (a, r) = (accepts.clone(), requests.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(connection(sock, b, r.clone()));
        }
    });
    Server {
        addr,
        accepts,
        requests,
        _task: task,
    }
}

/// Reads one request head; returns it, or None at EOF.
async fn read_head(sock: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&byte[..n]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

async fn connection(mut sock: TcpStream, b: Behaviour, requests: Arc<AtomicUsize>) {
    while let Some(head) = read_head(&mut sock).await {
        requests.fetch_add(1, Ordering::SeqCst);
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let res = match b {
            Behaviour::Status(code) => {
                let r = format!("HTTP/1.1 {code} X\r\nContent-Length: 2\r\n\r\nno");
                sock.write_all(r.as_bytes()).await
            }
            Behaviour::Slow(d) => {
                tokio::time::sleep(d).await;
                sock.write_all(ok).await
            }
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            Behaviour::CloseMidResponse => {
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                    .await;
                return;
            }
            Behaviour::Garbage => {
                let _ = sock
                    .write_all(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02\xff\r\n\r\n")
                    .await;
                return;
            }
            Behaviour::Huge(n) => {
                let r = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
                if sock.write_all(r.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = n - 6;
                while left > 0 {
                    let k = left.min(chunk.len());
                    if sock.write_all(&chunk[..k]).await.is_err() {
                        return;
                    }
                    left -= k;
                }
                sock.write_all(b"needle").await
            }
            Behaviour::Body(body) => {
                let r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                sock.write_all(r.as_bytes()).await
            }
            Behaviour::CloseAfterResponse => {
                let _ = sock.write_all(ok).await;
                return;
            }
            Behaviour::RequireHost(h) => {
                let good = head
                    .lines()
                    .any(|l| l.eq_ignore_ascii_case(&format!("host: {h}")));
                let r: &[u8] = if good {
                    ok
                } else {
                    b"HTTP/1.1 421 Misdirected\r\nContent-Length: 0\r\n\r\n"
                };
                sock.write_all(r).await
            }
        };
        if res.is_err() {
            return;
        }
    }
}

fn spec(kind: CheckKind, interval_ms: u64, timeout_ms: u64) -> Arc<CheckSpec> {
    let mut s = CheckSpec::new(kind);
    s.interval = Duration::from_millis(interval_ms);
    s.timeout = Duration::from_millis(timeout_ms);
    Arc::new(s)
}

fn http_get() -> CheckKind {
    CheckKind::Http(HttpCheck::get("/healthz").unwrap())
}

fn target(name: &str, addr: SocketAddr, spec: Arc<CheckSpec>) -> Target {
    Target {
        tier: Tier::Primary,
        endpoint: Arc::from(name),
        host: Host::Ip(addr.ip()),
        port: addr.port(),
        spec,
    }
}

/// A prober whose allowlist permits loopback, as every test but the confinement ones needs.
fn prober() -> (Prober, mpsc::Receiver<Fact>) {
    Prober::new(
        ProberConfig::default(),
        Allowlist::parse(["127.0.0.0/8"]).unwrap(),
    )
}

async fn next_fact(rx: &mut mpsc::Receiver<Fact>, within: Duration) -> Fact {
    timeout(within, rx.recv())
        .await
        .expect("no fact in time")
        .expect("channel closed")
}

fn kind_of(f: &Fact) -> Option<FailureKind> {
    match &f.outcome {
        CheckOutcome::Healthy => None,
        CheckOutcome::Unhealthy { kind, message } => {
            assert!(message.len() <= MAX_MESSAGE, "{message}");
            Some(*kind)
        }
    }
}

fn message_of(f: &Fact) -> &str {
    match &f.outcome {
        CheckOutcome::Healthy => "",
        CheckOutcome::Unhealthy { message, .. } => message,
    }
}

/// Runs one target and returns its first fact, asserting it came within `bound`.
async fn first_fact(spec: Arc<CheckSpec>, addr: SocketAddr, bound: Duration) -> Fact {
    let (p, mut rx) = prober();
    let started = Instant::now();
    p.set_targets(&PolicyId::new("ns", "p"), [], vec![target("t", addr, spec)])
        .unwrap();
    let f = next_fact(&mut rx, bound + MARGIN).await;
    assert!(
        started.elapsed() <= bound + MARGIN,
        "{:?}",
        started.elapsed()
    );
    f
}

#[tokio::test]
async fn healthy_target_reports_healthy() {
    let s = serve(Behaviour::Status(200)).await;
    let f = first_fact(
        spec(http_get(), 200, 1000),
        s.addr,
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(f.outcome, CheckOutcome::Healthy);
    assert_eq!(f.key.policy.to_string(), "ns/p");
    assert_eq!(f.key.tier, Tier::Primary);
    assert_eq!(&*f.key.endpoint, "t");
    assert!(f.latency < Duration::from_millis(500));
}

#[tokio::test]
async fn bad_status_names_code_and_ranges() {
    let s = serve(Behaviour::Status(503)).await;
    let f = first_fact(
        spec(http_get(), 200, 1000),
        s.addr,
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(
        f.outcome,
        CheckOutcome::unhealthy(FailureKind::BadStatus, "status 503 not in 200-399")
    );
}

#[tokio::test]
async fn slower_than_max_latency_is_too_slow() {
    let s = serve(Behaviour::Slow(Duration::from_millis(300))).await;
    let mut sp = (*spec(http_get(), 200, 2000)).clone();
    sp.max_latency = Some(Duration::from_millis(100));
    let f = first_fact(Arc::new(sp), s.addr, Duration::from_millis(500)).await;
    assert_eq!(kind_of(&f), Some(FailureKind::TooSlow));
    assert!(
        message_of(&f).ends_with("> max 100ms"),
        "{}",
        message_of(&f)
    );
    assert!(f.latency >= Duration::from_millis(300));
}

#[tokio::test]
async fn slower_than_timeout_times_out_on_time() {
    let s = serve(Behaviour::Slow(Duration::from_secs(5))).await;
    let f = first_fact(
        spec(http_get(), 200, 500),
        s.addr,
        Duration::from_millis(700),
    )
    .await;
    assert_eq!(
        f.outcome,
        CheckOutcome::unhealthy(FailureKind::Timeout, "no response within 500ms")
    );
    assert!(f.latency >= Duration::from_millis(500) && f.latency < Duration::from_millis(1500));
}

#[tokio::test]
async fn refused_port_is_refused() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let f = first_fact(
        spec(http_get(), 200, 1000),
        addr,
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(
        f.outcome,
        CheckOutcome::unhealthy(FailureKind::Refused, "connection refused")
    );
    let f = first_fact(
        spec(CheckKind::Tcp, 200, 1000),
        addr,
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(kind_of(&f), Some(FailureKind::Refused));
}

#[tokio::test]
async fn accepting_then_hanging_times_out() {
    let s = serve(Behaviour::Hang).await;
    let f = first_fact(
        spec(http_get(), 200, 400),
        s.addr,
        Duration::from_millis(600),
    )
    .await;
    assert_eq!(kind_of(&f), Some(FailureKind::Timeout));
    assert_eq!(s.accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn closing_mid_response_is_reset() {
    let s = serve(Behaviour::CloseMidResponse).await;
    let f = first_fact(
        spec(http_get(), 200, 1000),
        s.addr,
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(kind_of(&f), Some(FailureKind::Reset), "{f:?}");
}

#[tokio::test]
async fn garbage_is_protocol_error() {
    let s = serve(Behaviour::Garbage).await;
    let f = first_fact(
        spec(http_get(), 200, 1000),
        s.addr,
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(kind_of(&f), Some(FailureKind::Protocol), "{f:?}");
    assert!(message_of(&f).starts_with("invalid HTTP response"));
}

#[tokio::test]
async fn huge_body_is_read_only_up_to_the_limit() {
    // 8 MB body whose only "needle" is at the very end, beyond the 64 KiB limit.
    let s = serve(Behaviour::Huge(8 << 20)).await;
    let kind = CheckKind::Http(HttpCheck::get("/").unwrap().with_body_contains("needle"));
    let f = first_fact(spec(kind, 200, 2000), s.addr, Duration::from_millis(200)).await;
    assert_eq!(kind_of(&f), Some(FailureKind::BadBody), "{f:?}");
    assert_eq!(message_of(&f), "body (first 65536 bytes) lacks \"needle\"");
    // Without a body match it is healthy, fast, and the unread rest is abandoned with the
    // connection rather than drained.
    let (p, mut rx) = prober();
    p.set_targets(
        &PolicyId::new("ns", "p"),
        [],
        vec![target("t", s.addr, spec(http_get(), 100, 2000))],
    )
    .unwrap();
    for _ in 0..3 {
        let f = next_fact(&mut rx, Duration::from_millis(100) + MARGIN).await;
        assert_eq!(f.outcome, CheckOutcome::Healthy);
        assert!(f.latency < Duration::from_millis(500), "{:?}", f.latency);
    }
    assert!(s.accepts.load(Ordering::SeqCst) >= 4);
}

#[tokio::test]
async fn body_substring_and_host_header() {
    let s = serve(Behaviour::Body("status: ready")).await;
    let kind = CheckKind::Http(HttpCheck::get("/").unwrap().with_body_contains("ready"));
    let f = first_fact(spec(kind, 200, 1000), s.addr, Duration::from_millis(200)).await;
    assert_eq!(f.outcome, CheckOutcome::Healthy);

    let s = serve(Behaviour::RequireHost("shop.example.com")).await;
    let plain = first_fact(
        spec(http_get(), 200, 1000),
        s.addr,
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(kind_of(&plain), Some(FailureKind::BadStatus));
    let kind = CheckKind::Http(
        HttpCheck::get("/")
            .unwrap()
            .with_host_header("shop.example.com")
            .unwrap(),
    );
    let f = first_fact(spec(kind, 200, 1000), s.addr, Duration::from_millis(200)).await;
    assert_eq!(f.outcome, CheckOutcome::Healthy);
}

#[tokio::test]
async fn keep_alive_connection_is_reused() {
    let s = serve(Behaviour::Status(200)).await;
    let (p, mut rx) = prober();
    p.set_targets(
        &PolicyId::new("ns", "p"),
        [],
        vec![target("t", s.addr, spec(http_get(), 100, 1000))],
    )
    .unwrap();
    for _ in 0..5 {
        let f = next_fact(&mut rx, Duration::from_millis(100) + MARGIN).await;
        assert_eq!(f.outcome, CheckOutcome::Healthy);
    }
    assert_eq!(s.accepts.load(Ordering::SeqCst), 1);
    assert!(s.requests.load(Ordering::SeqCst) >= 5);
}

#[tokio::test]
async fn kept_connections_stay_within_their_budget() {
    // Budget 1, two targets: one keeps its connection, the other connects for every check
    // (and says so in the metric), and every check still succeeds.
    let a = serve(Behaviour::Status(200)).await;
    let b = serve(Behaviour::Status(200)).await;
    let (p, mut rx) = Prober::new(
        ProberConfig {
            max_kept_connections: 1,
            ..ProberConfig::default()
        },
        Allowlist::parse(["127.0.0.1"]).unwrap(),
    );
    let mut reg = prometheus_client::registry::Registry::default();
    p.metrics().register(&mut reg);
    p.set_targets(
        &PolicyId::new("ns", "p"),
        [],
        vec![
            target("a", a.addr, spec(http_get(), 100, 1000)),
            target("b", b.addr, spec(http_get(), 100, 1000)),
        ],
    )
    .unwrap();
    for _ in 0..10 {
        let f = next_fact(&mut rx, Duration::from_millis(100) + MARGIN).await;
        assert_eq!(f.outcome, CheckOutcome::Healthy);
    }
    let accepts = [
        a.accepts.load(Ordering::SeqCst),
        b.accepts.load(Ordering::SeqCst),
    ];
    let requests = [
        a.requests.load(Ordering::SeqCst),
        b.requests.load(Ordering::SeqCst),
    ];
    // One target kept its first connection; the other's accepts follow its checks.
    let (kept, fresh) = if accepts[0] == 1 { (0, 1) } else { (1, 0) };
    assert_eq!(
        accepts[kept], 1,
        "accepts {accepts:?}, requests {requests:?}"
    );
    assert!(
        accepts[fresh] >= requests[fresh].max(1) - 1 && accepts[fresh] >= 3,
        "the target over budget should connect per check: accepts {accepts:?}, requests {requests:?}"
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
    let over: u64 = out
        .lines()
        .find(|l| l.starts_with("ingress_failover_probe_connections_over_budget_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(over >= 3, "{out}");
}

#[tokio::test]
async fn idle_close_by_target_is_not_a_failure() {
    let s = serve(Behaviour::CloseAfterResponse).await;
    let (p, mut rx) = prober();
    p.set_targets(
        &PolicyId::new("ns", "p"),
        [],
        vec![target("t", s.addr, spec(http_get(), 100, 1000))],
    )
    .unwrap();
    for _ in 0..5 {
        let f = next_fact(&mut rx, Duration::from_millis(100) + MARGIN).await;
        assert_eq!(f.outcome, CheckOutcome::Healthy);
    }
    assert!(s.accepts.load(Ordering::SeqCst) >= 5);
}

#[tokio::test]
async fn local_socket_error_is_other() {
    // The kernel refuses TCP to a multicast address before sending anything (ENETUNREACH),
    // which gives a deterministic local error without leaving loopback.
    let addr: SocketAddr = "224.0.0.1:80".parse().unwrap();
    let (p, mut rx) = Prober::new(
        ProberConfig::default(),
        Allowlist::parse(["224.0.0.0/4"]).unwrap(),
    );
    p.set_targets(
        &PolicyId::new("ns", "p"),
        [],
        vec![target("m", addr, spec(http_get(), 200, 1000))],
    )
    .unwrap();
    let f = next_fact(&mut rx, Duration::from_millis(200) + MARGIN).await;
    assert_eq!(kind_of(&f), Some(FailureKind::Other), "{f:?}");
    assert!(message_of(&f).starts_with("network error"), "{f:?}");
}

#[tokio::test]
async fn tcp_check_connects() {
    let s = serve(Behaviour::Hang).await;
    let f = first_fact(
        spec(CheckKind::Tcp, 200, 1000),
        s.addr,
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(f.outcome, CheckOutcome::Healthy);
    assert_eq!(s.accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn disallowed_target_is_never_contacted() {
    let s = serve(Behaviour::Status(200)).await;
    let (p, mut rx) = Prober::new(
        ProberConfig::default(),
        Allowlist::parse(["10.0.0.0/8", "lb.example.com"]).unwrap(),
    );
    let targets = vec![
        target("http", s.addr, spec(http_get(), 100, 1000)),
        target("tcp", s.addr, spec(CheckKind::Tcp, 100, 1000)),
    ];
    p.set_targets(&PolicyId::new("ns", "p"), [], targets.clone())
        .unwrap();
    for _ in 0..6 {
        let f = next_fact(&mut rx, Duration::from_millis(100) + MARGIN).await;
        assert_eq!(kind_of(&f), Some(FailureKind::Disallowed), "{f:?}");
        assert_eq!(
            message_of(&f),
            "refused: 127.0.0.1 is a loopback address not permitted by --probe-allowlist; not contacted"
        );
    }
    assert_eq!(s.accepts.load(Ordering::SeqCst), 0);

    // A policy's own endpoint address (an EndpointSlice's, a static one) obeys the deny rules
    // too: being listed in a slice does not make loopback probe-able...
    p.set_targets(&PolicyId::new("ns", "p"), [s.addr.ip()], targets.clone())
        .unwrap();
    for _ in 0..4 {
        let f = next_fact(&mut rx, Duration::from_millis(100) + MARGIN).await;
        assert_eq!(kind_of(&f), Some(FailureKind::Disallowed), "{f:?}");
    }
    assert_eq!(s.accepts.load(Ordering::SeqCst), 0);

    // ...unless the allowlist names it.
    p.set_allowlist(Allowlist::parse(["127.0.0.1"]).unwrap());
    p.set_targets(&PolicyId::new("ns", "p"), [s.addr.ip()], targets)
        .unwrap();
    let mut healthy = 0;
    while healthy < 2 {
        let f = next_fact(&mut rx, Duration::from_millis(100) + MARGIN).await;
        if f.outcome.is_healthy() {
            healthy += 1;
        }
    }
    assert!(s.accepts.load(Ordering::SeqCst) >= 1);

    // ...and a name must be listed: an unlisted one resolving to loopback is refused.
    p.set_targets(&PolicyId::new("ns", "p"), [], Vec::new())
        .unwrap();
    while rx.try_recv().is_ok() {}
    let before = s.accepts.load(Ordering::SeqCst);
    let mut t = target("name", s.addr, spec(http_get(), 100, 1000));
    t.host = Host::Name("localhost".into());
    p.set_targets(&PolicyId::new("ns", "q"), [], vec![t])
        .unwrap();
    let f = loop {
        let f = next_fact(&mut rx, Duration::from_millis(100) + MARGIN).await;
        if f.key.policy == PolicyId::new("ns", "q") {
            break f;
        }
    };
    assert_eq!(kind_of(&f), Some(FailureKind::Disallowed), "{f:?}");
    assert_eq!(s.accepts.load(Ordering::SeqCst), before);
}

/// A resolver that records every name it is asked for and answers with `answer`: tests of what
/// is refused before resolution never reach the system resolver.
fn recording_resolver(
    asked: Arc<std::sync::Mutex<Vec<String>>>,
    answer: Vec<SocketAddr>,
) -> impl FnOnce(String, u16) -> std::future::Ready<std::io::Result<Vec<SocketAddr>>> {
    move |name, _port| {
        asked.lock().unwrap().push(name);
        std::future::ready(Ok(answer))
    }
}

#[tokio::test]
async fn unlisted_names_are_refused_before_any_lookup() {
    let conf = crate::probe::Confinement {
        operator: Arc::new(Allowlist::parse(["127.0.8.0/24"]).unwrap()),
        own: Default::default(),
    };
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let answer = vec!["10.96.0.1:443".parse().unwrap()];
    let got = super::tcp::permitted_addr_with(
        &Host::Name("kubernetes.default.svc".into()),
        443,
        &conf,
        recording_resolver(asked.clone(), answer),
    )
    .await;
    let outcome = got.expect_err("an unlisted name is refused");
    assert!(
        matches!(&outcome, CheckOutcome::Unhealthy { kind: FailureKind::Disallowed, message } if message.contains("kubernetes.default.svc") && message.contains("before they are resolved")),
        "{outcome:?}"
    );
    assert!(asked.lock().unwrap().is_empty(), "looked up: {asked:?}");
}

#[tokio::test]
async fn every_resolved_address_obeys_the_deny_rules() {
    let conf = crate::probe::Confinement {
        operator: Arc::new(
            Allowlist::parse(["lb.example.com"])
                .unwrap()
                .with_api_server(["10.96.0.1".parse().unwrap()]),
        ),
        own: Default::default(),
    };
    for forbidden in [
        "169.254.169.254:80",
        "127.0.0.1:80",
        "10.96.0.1:80",
        "[fd00:ec2::254]:80",
    ] {
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let got = super::tcp::permitted_addr_with(
            &Host::Name("lb.example.com".into()),
            80,
            &conf,
            recording_resolver(asked.clone(), vec![forbidden.parse().unwrap()]),
        )
        .await;
        assert!(
            matches!(
                &got,
                Err(CheckOutcome::Unhealthy {
                    kind: FailureKind::Disallowed,
                    ..
                })
            ),
            "{forbidden}: {got:?}"
        );
        assert_eq!(*asked.lock().unwrap(), vec!["lb.example.com".to_string()]);
    }
    // The first permitted answer is used.
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let got = super::tcp::permitted_addr_with(
        &Host::Name("lb.example.com".into()),
        80,
        &conf,
        recording_resolver(
            asked,
            vec![
                "127.0.0.1:80".parse().unwrap(),
                "10.0.0.7:80".parse().unwrap(),
            ],
        ),
    )
    .await;
    assert_eq!(got, Ok("10.0.0.7:80".parse().unwrap()));
}

#[tokio::test]
async fn allowlist_change_applies_to_open_connections() {
    let s = serve(Behaviour::Status(200)).await;
    let (p, mut rx) = prober();
    p.set_targets(
        &PolicyId::new("ns", "p"),
        [],
        vec![target("t", s.addr, spec(http_get(), 100, 1000))],
    )
    .unwrap();
    let f = next_fact(&mut rx, Duration::from_millis(100) + MARGIN).await;
    assert!(f.outcome.is_healthy());
    p.set_allowlist(Allowlist::empty());
    let requests = s.requests.load(Ordering::SeqCst);
    // At most one check may already have been in flight when the allowlist changed.
    let mut disallowed = 0;
    for _ in 0..4 {
        let f = next_fact(&mut rx, Duration::from_millis(100) + MARGIN).await;
        if kind_of(&f) == Some(FailureKind::Disallowed) {
            disallowed += 1;
        }
    }
    assert!(disallowed >= 3);
    assert!(s.requests.load(Ordering::SeqCst) <= requests + 1);
}

#[tokio::test]
async fn hanging_target_does_not_delay_others() {
    let hang = serve(Behaviour::Hang).await;
    let ok = serve(Behaviour::Status(200)).await;
    let (p, mut rx) = prober();
    let mut targets = vec![target("hang", hang.addr, spec(http_get(), 100, 3000))];
    for i in 0..3 {
        targets.push(target(
            &format!("ok{i}"),
            ok.addr,
            spec(http_get(), 100, 3000),
        ));
    }
    p.set_targets(&PolicyId::new("ns", "p"), [], targets)
        .unwrap();
    let started = Instant::now();
    let mut healthy = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        if let Ok(Some(f)) = timeout(Duration::from_millis(100), rx.recv()).await {
            assert_ne!(&*f.key.endpoint, "hang", "hanging target answered early");
            assert!(f.outcome.is_healthy());
            assert!(f.schedule_lag < MARGIN, "{:?}", f.schedule_lag);
            healthy += 1;
        }
    }
    // 3 targets at 10 checks/s for 1.5 s would be 45; demand a third of that.
    assert!(
        healthy >= 15,
        "only {healthy} healthy facts while one target hung"
    );
    let f = next_fact(&mut rx, Duration::from_secs(3) + MARGIN).await;
    let f = if &*f.key.endpoint == "hang" {
        f
    } else {
        loop {
            let f = next_fact(&mut rx, Duration::from_secs(2) + MARGIN).await;
            if &*f.key.endpoint == "hang" {
                break f;
            }
        }
    };
    assert_eq!(kind_of(&f), Some(FailureKind::Timeout));
}

#[tokio::test]
async fn set_targets_keeps_unchanged_and_stops_removed() {
    let a = serve(Behaviour::Status(200)).await;
    let b = serve(Behaviour::Status(200)).await;
    let c = serve(Behaviour::Status(200)).await;
    let (p, mut rx) = prober();
    let sp = spec(http_get(), 100, 1000);
    let ta = target("a", a.addr, sp.clone());
    let tb = target("b", b.addr, sp.clone());
    let tc = target("c", c.addr, sp.clone());
    let d = p
        .set_targets(&PolicyId::new("ns", "p"), [], vec![ta.clone(), tb.clone()])
        .unwrap();
    assert_eq!(
        d,
        TargetDiff {
            started: 2,
            ..TargetDiff::default()
        }
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(a.accepts.load(Ordering::SeqCst), 1);

    let d = p
        .set_targets(&PolicyId::new("ns", "p"), [], vec![ta.clone(), tc.clone()])
        .unwrap();
    assert_eq!(
        d,
        TargetDiff {
            started: 1,
            kept: 1,
            stopped: 1,
            restarted: 0
        }
    );
    let b_requests = b.requests.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Kept: same connection. Removed: no check after removal. New: running.
    assert_eq!(a.accepts.load(Ordering::SeqCst), 1);
    assert!(b.requests.load(Ordering::SeqCst) <= b_requests + 1);
    assert!(c.requests.load(Ordering::SeqCst) >= 2);
    while let Ok(f) = rx.try_recv() {
        assert!(f.outcome.is_healthy());
    }

    // A changed spec restarts that target only; duplicates are refused without changes.
    let mut ta2 = ta.clone();
    ta2.spec = spec(http_get(), 200, 1000);
    let d = p
        .set_targets(&PolicyId::new("ns", "p"), [], vec![ta2, tc.clone()])
        .unwrap();
    assert_eq!(
        d,
        TargetDiff {
            started: 0,
            kept: 1,
            stopped: 0,
            restarted: 1
        }
    );
    assert!(matches!(
        p.set_targets(&PolicyId::new("ns", "p"), [], vec![tc.clone(), tc.clone()]),
        Err(ConfigError::DuplicateTarget(_))
    ));
    assert_eq!(p.target_count(), 2);
    assert_eq!(p.remove_policy(&PolicyId::new("ns", "p")).stopped, 2);
    assert_eq!(p.target_count(), 0);
}

#[tokio::test]
async fn slow_consumer_pauses_probing_without_losing_facts() {
    let s = serve(Behaviour::Status(200)).await;
    let (p, mut rx) = Prober::new(
        ProberConfig {
            channel_capacity: 1,
            ..ProberConfig::default()
        },
        Allowlist::parse(["127.0.0.1"]).unwrap(),
    );
    p.set_targets(
        &PolicyId::new("ns", "p"),
        [],
        vec![target("t", s.addr, spec(http_get(), 100, 1000))],
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // One fact in the channel, one waiting in the task: probing paused at about two checks.
    let done = s.requests.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&done),
        "{done} checks while nobody listened"
    );
    let mut got = 0;
    while timeout(Duration::from_millis(300), rx.recv()).await.is_ok() && got < 5 {
        got += 1;
    }
    assert!(got >= 3, "probing did not resume ({got})");
}

#[tokio::test]
async fn metrics_count_by_policy_tier_and_result() {
    let s = serve(Behaviour::Status(503)).await;
    let (p, mut rx) = prober();
    let mut reg = prometheus_client::registry::Registry::default();
    p.metrics().register(&mut reg);
    let mut t = target("lb", s.addr, spec(http_get(), 100, 1000));
    t.tier = Tier::LoadBalancer;
    p.set_targets(&PolicyId::new("ns", "p"), [], vec![t])
        .unwrap();
    next_fact(&mut rx, Duration::from_millis(100) + MARGIN).await;
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
    assert!(
        out.contains(
            r#"checks_total{namespace="ns",name="p",tier="loadbalancer",result="bad_status"}"#
        ),
        "{out}"
    );
}
