//! The operator at scale, as a separate process against a control plane (issue 16):
//!
//! - 10,000 policies (`SCALE_POLICIES`) × 5 static endpoints (`SCALE_ENDPOINTS`), probed every
//!   10 s (`SCALE_INTERVAL_SECS`), served by `testkit::bulk` child processes;
//! - **reference**: the prober alone (`ingress_failover::probe`, the same targets and check
//!   spec the controller builds from the same policies, in its own process) — its CPU is the
//!   cost of the checks themselves;
//! - **cold start**: every policy exists before `ingress-failover run` starts; seconds until
//!   every one reports phase Normal;
//! - **steady state** over `SCALE_STEADY_SECS` (default 300): the operator's CPU as a share of
//!   one core and per check as a ratio to the reference's (target ≤ 2), RSS per policy, API writes and
//!   requests per second (writes: target 0), reconciles per second;
//! - **detection** under that load: `SCALE_DETECT` policies (default 20) lose one backend each
//!   (503) at once, twice; latency from the failure to the EndpointSlice update, and the
//!   operator's share of it (from the third failed check reaching the backend; target p99
//!   < 50 ms);
//! - **mass incident**: `SCALE_INCIDENT_PERCENT` (default 20 %) of the policies lose a backend
//!   at the same moment; the write rate in 5 s windows against the client-side limit
//!   (`SCALE_QPS`, `SCALE_BURST`), and the time until every affected policy has acted.
//!
//! Plane: the embedded one (in this process, backends on 127.70.0.0/16) unless
//! `INGRESS_FAILOVER_KUBECONFIG` names a real one; run that inside `scripts/real-cluster.sh run
//! --` so the backends' network (`SCALE_NET`, default 198.19.0.0 there: the apiserver refuses
//! loopback addresses in EndpointSlices) is routed locally.
//!
//! `cargo bench --bench scale`. Loopback (or the cluster's private namespace) only; bounded in
//! time; every child process is killed when the bench ends.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use ingress_failover::api::{FailoverPolicy, Phase, PolicyId};
use ingress_failover::probe::{Allowlist, Host, Prober, ProberConfig, Target, Tier};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use serde_json::json;
use testkit::bulk::{LineChild, cpu_seconds, rss_kib};
use testkit::farm::{Behavior, Farm};

const NS: &str = "scale";
/// Endpoints per `serve` child: a listener and a connection each, well under 20,000 fds.
const PER_SERVER: usize = 2500;
/// Detection backends sit at this offset in the network, apart from the bulk endpoints.
const DETECT_OFFSET: u32 = 0xF000;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Config {
    policies: usize,
    endpoints: usize,
    interval: u64,
    steady: Duration,
    reference_window: Duration,
    detect: usize,
    incident_percent: usize,
    qps: u64,
    burst: u64,
    net: Ipv4Addr,
    kubeconfig: Option<PathBuf>,
}

impl Config {
    fn from_env() -> Self {
        let kubeconfig = std::env::var_os("INGRESS_FAILOVER_KUBECONFIG").map(PathBuf::from);
        let default_net = if kubeconfig.is_some() {
            "198.19.0.0"
        } else {
            "127.70.0.0"
        };
        Config {
            policies: env_num("SCALE_POLICIES", 10_000) as usize,
            endpoints: env_num("SCALE_ENDPOINTS", 5) as usize,
            interval: env_num("SCALE_INTERVAL_SECS", 10),
            steady: Duration::from_secs(env_num("SCALE_STEADY_SECS", 300)),
            reference_window: Duration::from_secs(env_num("SCALE_REFERENCE_SECS", 60)),
            detect: env_num("SCALE_DETECT", 20) as usize,
            incident_percent: env_num("SCALE_INCIDENT_PERCENT", 20) as usize,
            qps: env_num("SCALE_QPS", 200),
            burst: env_num("SCALE_BURST", 400),
            net: std::env::var("SCALE_NET")
                .unwrap_or_else(|_| default_net.into())
                .parse()
                .expect("SCALE_NET: an IPv4 network base like 198.19.0.0"),
            kubeconfig,
        }
    }

    /// Bulk endpoint `i`: one address each, port 8080.
    fn endpoint(&self, i: usize) -> SocketAddr {
        let ip = u32::from(self.net) + 1 + i as u32;
        SocketAddr::new(Ipv4Addr::from(ip).into(), 8080)
    }

    fn detect_endpoint(&self, i: usize) -> SocketAddr {
        let ip = u32::from(self.net) + DETECT_OFFSET + i as u32;
        SocketAddr::new(Ipv4Addr::from(ip).into(), 8080)
    }

    fn allowlist(&self) -> String {
        format!("{}/16", self.net)
    }

    fn policy(&self, name: &str, backends: &[SocketAddr]) -> FailoverPolicy {
        serde_json::from_value(json!({
            "apiVersion": "ingressfailover.io/v1alpha1", "kind": "FailoverPolicy",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "backends": {"primary": {"addresses": backends.iter().map(ToString::to_string).collect::<Vec<_>>()}},
                "managedService": {"name": format!("{name}-healthy")},
                "probe": {"http": {"path": "/healthz"}, "intervalSeconds": self.interval, "timeoutSeconds": 1,
                          "failureThreshold": 3, "successThreshold": 2, "jitterPercent": 10},
            }
        }))
        .expect("bench policy")
    }

    fn bulk_backends(&self, p: usize) -> Vec<SocketAddr> {
        (0..self.endpoints)
            .map(|k| self.endpoint(p * self.endpoints + k))
            .collect()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        // Children of the bench itself (see `spawn_role`).
        Some("serve") => {
            let cfg = Config::from_env();
            let (from, to): (usize, usize) = (args[2].parse().unwrap(), args[3].parse().unwrap());
            let eps: Vec<SocketAddr> = (from..to).map(|i| cfg.endpoint(i)).collect();
            testkit::bulk::serve_stdio(from, &eps).expect("serve");
        }
        Some("probe") => reference_prober(),
        _ if !args.iter().any(|a| a == "--bench") => {
            // `cargo test --benches` runs bench targets without --bench: keep that instant.
            println!("scale bench: run with `cargo bench --bench scale`");
        }
        _ => {
            ingress_failover::install_crypto_provider();
            ingress_failover::probe::raise_open_file_limit();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(bench(Config::from_env()));
        }
    }
}

fn spawn_role(args: &[String]) -> LineChild {
    let mut cmd = Command::new(std::env::current_exe().expect("bench executable"));
    cmd.args(args);
    let pidfile = std::env::temp_dir().join("ingress-failover-scale.pids");
    let mut child = LineChild::spawn(cmd, &pidfile).expect("child");
    let ready = child.read_line().expect("child ready");
    assert_eq!(ready, "ready", "child {args:?} said {ready:?}");
    child
}

/// The `probe` role: the prober alone with the targets the controller would build for every
/// bulk policy; answers `count` with the facts received so far.
fn reference_prober() {
    ingress_failover::probe::raise_open_file_limit();
    let cfg = Config::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let allow = Allowlist::parse([cfg.allowlist()]).expect("allowlist");
    let _prober = rt.block_on(async {
        let (prober, mut facts) = Prober::new(ProberConfig::default(), allow);
        for p in 0..cfg.policies {
            let policy = cfg.policy(&format!("p{p}"), &cfg.bulk_backends(p));
            let spec = Arc::new(
                ingress_failover::controller::targets::backend_check(&policy.spec).expect("check"),
            );
            let targets = cfg
                .bulk_backends(p)
                .into_iter()
                .map(|a| Target {
                    tier: Tier::Primary,
                    endpoint: Arc::from(a.to_string()),
                    host: Host::Ip(a.ip()),
                    port: a.port(),
                    spec: spec.clone(),
                })
                .collect();
            prober
                .set_targets(&PolicyId::new(NS, &format!("p{p}")), [], targets)
                .expect("targets");
        }
        let n = count.clone();
        tokio::spawn(async move {
            while facts.recv().await.is_some() {
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        prober
    });
    println!("ready");
    let rt_thread = std::thread::spawn(move || rt.block_on(std::future::pending::<()>()));
    use std::io::BufRead;
    for line in std::io::stdin().lock().lines() {
        match line.as_deref() {
            Ok("count") => println!("count {}", count.load(std::sync::atomic::Ordering::Relaxed)),
            _ => break,
        }
    }
    drop(rt_thread);
    std::process::exit(0);
}

fn clk_tck() -> f64 {
    // SC_CLK_TCK; 100 on every Linux this runs on.
    100.0
}

fn count_of(child: &mut LineChild) -> u64 {
    child
        .ask("count")
        .ok()
        .and_then(|l| l.strip_prefix("count ")?.parse().ok())
        .unwrap_or(0)
}

/// A scrape of the operator's /metrics, summed by metric name (labels dropped).
async fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (code, text) = testkit::http::get(addr, "/metrics").await;
    assert_eq!(code, 200, "scraping the operator's /metrics");
    let mut sums = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *sums.entry(name.to_string()).or_insert(0.0) += v;
        }
    }
    sums
}

fn delta(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>, name: &str) -> f64 {
    b.get(name).copied().unwrap_or(0.0) - a.get(name).copied().unwrap_or(0.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn bench(cfg: Config) {
    let total_endpoints = cfg.policies * cfg.endpoints;
    eprintln!(
        "scale: {} policies × {} endpoints, every {} s, on the {} plane",
        cfg.policies,
        cfg.endpoints,
        cfg.interval,
        if cfg.kubeconfig.is_some() {
            "real"
        } else {
            "embedded"
        }
    );

    // Backends.
    let started = Instant::now();
    let mut servers: Vec<LineChild> = (0..total_endpoints)
        .step_by(PER_SERVER)
        .map(|from| {
            let to = (from + PER_SERVER).min(total_endpoints);
            spawn_role(&["serve".into(), from.to_string(), to.to_string()])
        })
        .collect();
    eprintln!(
        "backends: {total_endpoints} endpoints in {} processes, bound in {:.1} s",
        servers.len(),
        started.elapsed().as_secs_f64()
    );

    // Reference: the prober alone.
    let warm = Duration::from_secs(cfg.interval + 5);
    let (ref_cpu, ref_checks, ref_rss) = {
        let mut prober = spawn_role(&["probe".into()]);
        tokio::time::sleep(warm).await;
        let (c0, n0) = (cpu_seconds(prober.pid(), clk_tck()), count_of(&mut prober));
        tokio::time::sleep(cfg.reference_window).await;
        let (c1, n1) = (cpu_seconds(prober.pid(), clk_tck()), count_of(&mut prober));
        let rss = rss_kib(prober.pid());
        let secs = cfg.reference_window.as_secs_f64();
        ((c1 - c0) / secs, (n1 - n0) as f64 / secs, rss)
    };
    eprintln!(
        "reference prober: {:.1} % of a core for {ref_checks:.0} checks/s, RSS {:.0} MiB",
        ref_cpu * 100.0,
        ref_rss / 1024.0
    );

    // The plane.
    let (cluster, kubeconfig) = match &cfg.kubeconfig {
        Some(path) => (None, path.clone()),
        None => {
            let cluster = devcluster::DevCluster::start(devcluster::DevClusterOptions {
                controller_manager: false,
                ..Default::default()
            })
            .await
            .expect("devcluster");
            let path =
                std::env::temp_dir().join(format!("scale-{}.kubeconfig", std::process::id()));
            std::fs::write(&path, cluster.kubeconfig_yaml()).expect("kubeconfig");
            (Some(cluster), path)
        }
    };
    let client = ingress_failover::kubeclient::client_as(Some(&kubeconfig), Some("scale-bench"))
        .await
        .expect("client");
    install(&client).await;

    // Policies: the bulk ones, and the detection ones on in-process backends whose request
    // arrivals are logged.
    let farm = Farm::new();
    let policies: Api<FailoverPolicy> = Api::namespaced(client.clone(), NS);
    let created = Instant::now();
    futures::stream::iter(0..cfg.policies)
        .map(|p| {
            let (policies, pol) = (
                policies.clone(),
                cfg.policy(&format!("p{p}"), &cfg.bulk_backends(p)),
            );
            async move {
                policies
                    .create(&PostParams::default(), &pol)
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .expect("creating policies");
    let detect_backends: Vec<Vec<SocketAddr>> = (0..cfg.detect)
        .map(|d| {
            (0..cfg.endpoints)
                .map(|k| cfg.detect_endpoint(d * cfg.endpoints + k))
                .collect()
        })
        .collect();
    for (d, backends) in detect_backends.iter().enumerate() {
        for a in backends {
            farm.set(*a, Behavior::Healthy)
                .await
                .expect("detection backend");
        }
        policies
            .create(
                &PostParams::default(),
                &cfg.policy(&format!("d{d}"), backends),
            )
            .await
            .expect("detection policy");
    }
    let all = cfg.policies + cfg.detect;
    eprintln!(
        "created {all} policies in {:.1} s",
        created.elapsed().as_secs_f64()
    );

    // Caches of the bench's own: policy phases and the managed slices.
    let (pstore, pw) = reflector::store::<FailoverPolicy>();
    tokio::spawn(
        reflector::reflector(pw, watcher(policies.clone(), watcher::Config::default()))
            .applied_objects()
            .for_each(|_| async {}),
    );
    // Every managed slice (the mass incident), and the detection policies' alone (polled every
    // few milliseconds, so kept small).
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NS);
    let all_slices = slice_cache(slices.clone(), "kubernetes.io/service-name".into());
    let detect_services: Vec<String> = (0..cfg.detect).map(|d| format!("d{d}-healthy")).collect();
    let detect_slices = slice_cache(
        slices,
        format!(
            "kubernetes.io/service-name in ({})",
            detect_services.join(",")
        ),
    );

    // The operator.
    let metrics_addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr")
    };
    let log = std::env::temp_dir().join(format!("scale-operator-{}.log", std::process::id()));
    let operator_log = std::fs::File::create(&log).expect("log");
    let mut operator = Command::new(env!("CARGO_BIN_EXE_ingress-failover"))
        .args(["run", "--kubeconfig"])
        .arg(&kubeconfig)
        .args([
            "--namespace",
            NS,
            "--leader-election",
            "false",
            "--identity",
            "scale",
        ])
        .args(["--probe-allowlist", &cfg.allowlist()])
        .args(["--metrics-addr", &metrics_addr.to_string()])
        .args([
            "--kube-api-qps",
            &cfg.qps.to_string(),
            "--kube-api-burst",
            &cfg.burst.to_string(),
        ])
        .env(
            "RUST_LOG",
            std::env::var("SCALE_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        // `run` logs to stdout; both streams go to the log.
        .stdout(operator_log.try_clone().expect("log"))
        .stderr(operator_log)
        .spawn()
        .expect("starting ingress-failover run");
    let pid = operator.id();
    testkit::bulk::record_pid(
        &std::env::temp_dir().join("ingress-failover-scale.pids"),
        pid,
    );
    let started = Instant::now();

    // 1. Cold start.
    let converged = loop {
        let normal = pstore
            .state()
            .iter()
            .filter(|p| p.status.as_ref().is_some_and(|s| s.phase == Phase::Normal))
            .count();
        if normal == all {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "only {normal} of {all} policies Normal after 30 min (log: {})",
            log.display()
        );
        if let Ok(Some(status)) = operator.try_wait() {
            panic!("the operator exited ({status}); log: {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let cold_cpu = cpu_seconds(pid, clk_tck());
    eprintln!(
        "cold start: {all} policies Normal in {:.1} s ({cold_cpu:.1} CPU-seconds)",
        converged.as_secs_f64()
    );

    // 2. Steady state.
    tokio::time::sleep(Duration::from_secs(cfg.interval * 2)).await;
    let m0 = scrape(metrics_addr).await;
    let c0 = cpu_seconds(pid, clk_tck());
    let t0 = Instant::now();
    eprintln!("steady state: {} s", cfg.steady.as_secs());
    tokio::time::sleep(cfg.steady).await;
    let c1 = cpu_seconds(pid, clk_tck());
    let secs = t0.elapsed().as_secs_f64();
    let rss = rss_kib(pid);
    let m1 = scrape(metrics_addr).await;
    let steady_cpu = (c1 - c0) / secs;
    let writes = delta(&m0, &m1, "ingress_failover_api_writes_total") / secs;
    let requests = delta(&m0, &m1, "ingress_failover_api_requests_total") / secs;
    let reconciles = delta(
        &m0,
        &m1,
        "ingress_failover_reconcile_duration_seconds_count",
    );
    let reconcile_secs = delta(&m0, &m1, "ingress_failover_reconcile_duration_seconds_sum");
    let checks = delta(&m0, &m1, "ingress_failover_probe_checks_total") / secs;
    let absorbed = delta(&m0, &m1, "ingress_failover_facts_absorbed_total") / secs;

    // Per check: on a loaded machine neither process may reach the nominal rate, and a
    // ratio of shares would credit the operator for checking less.
    let per_check_ratio = (steady_cpu / checks.max(1e-9)) / (ref_cpu / ref_checks.max(1e-9));
    eprintln!(
        "steady state measured: cpu share {steady_cpu:.4} at {checks:.0} checks/s (prober alone {ref_cpu:.4} at {ref_checks:.0} checks/s: ratio per check {per_check_ratio:.2}), {absorbed:.0} absorbed/s, {writes:.3} writes/s, {requests:.2} requests/s, {:.2} reconciles/s, RSS {:.0} MiB",
        reconciles / secs,
        rss / 1024.0
    );

    // 3. Detection under load: one backend of each detection policy answers 503, all at once.
    let mut latency = Vec::new();
    let mut share = Vec::new();
    for round in 0..2 {
        let victims: Vec<SocketAddr> = detect_backends.iter().map(|b| b[round % b.len()]).collect();
        let killed = Instant::now();
        for v in &victims {
            farm.set(*v, Behavior::Status(503)).await.expect("fail");
        }
        let mut pending: BTreeMap<usize, SocketAddr> =
            victims.iter().copied().enumerate().collect();
        while !pending.is_empty() {
            if killed.elapsed() >= Duration::from_secs(cfg.interval * 10) {
                let (_, text) = testkit::http::get(metrics_addr, "/metrics").await;
                let mut why = String::new();
                for (d, v) in &pending {
                    let checks = farm
                        .requests(*v)
                        .into_iter()
                        .filter(|t| *t >= killed)
                        .count();
                    let status = pstore
                        .state()
                        .iter()
                        .find(|p| p.metadata.name.as_deref() == Some(&format!("d{d}")))
                        .and_then(|p| p.status.clone());
                    why.push_str(&format!(
                        "  d{d}: {checks} checks of {v} since the failure; phase {:?}, primary {:?}\n",
                        status.as_ref().map(|s| s.phase),
                        status.as_ref().and_then(|s| s.primary.as_ref()).map(|p| &p.summary),
                    ));
                }
                for line in text.lines().filter(|l| {
                    !l.starts_with('#')
                        && (l.contains("over_budget")
                            || l.contains("reconcile_queue")
                            || l.contains("name=\"d0\""))
                }) {
                    why.push_str(&format!("  {line}\n"));
                }
                panic!(
                    "detection: {} policies never ejected their backend\n{why}",
                    pending.len()
                );
            }
            let now = Instant::now();
            pending.retain(|d, v| {
                if published(&detect_slices)
                    .get(&format!("d{d}-healthy"))
                    .is_some_and(|a| a.contains(&v.ip().to_string()))
                {
                    return true;
                }
                latency.push(now - killed);
                if let Some(third) = farm
                    .requests(*v)
                    .into_iter()
                    .filter(|t| *t >= killed)
                    .nth(2)
                {
                    share.push(now.saturating_duration_since(third));
                }
                false
            });
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Said as soon as measured: a later phase failing must not lose these.
        let mut round_latency = latency.clone();
        round_latency.sort();
        let mut round_share = share.clone();
        round_share.sort();
        eprintln!(
            "detection round {}: {} ejections so far, median {:.0} ms, operator share median {:.1} ms, max {:.1} ms",
            round + 1,
            round_latency.len(),
            ms(percentile(&round_latency, 0.5)),
            ms(percentile(&round_share, 0.5)),
            ms(percentile(&round_share, 1.0))
        );
        for v in &victims {
            farm.set(*v, Behavior::Healthy).await.expect("heal");
        }
        let healed = Instant::now();
        while victims.iter().enumerate().any(|(d, v)| {
            !published(&detect_slices)
                .get(&format!("d{d}-healthy"))
                .is_some_and(|a| a.contains(&v.ip().to_string()))
        }) {
            if healed.elapsed() >= Duration::from_secs(cfg.interval * 10) {
                // Reported, not fatal: the next round's victims are other backends.
                eprintln!(
                    "detection round {}: healed backends not all published again within {} s",
                    round + 1,
                    cfg.interval * 10
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    latency.sort();
    share.sort();

    // 4. Mass incident: one backend of every fifth policy (by default) is killed at once.
    let step = (100 / cfg.incident_percent.clamp(1, 100)).max(1);
    let affected: Vec<usize> = (0..cfg.policies).step_by(step).collect();
    let mut by_server: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for p in &affected {
        let i = p * cfg.endpoints;
        by_server
            .entry(i / PER_SERVER)
            .or_default()
            .push(i.to_string());
    }
    let mi0 = scrape(metrics_addr).await;
    let incident = Instant::now();
    for (server, idx) in &by_server {
        servers[*server]
            .ask(&format!("kill {}", idx.join(" ")))
            .expect("kill");
    }
    let mut acted: Vec<Duration> = Vec::with_capacity(affected.len());
    let mut waiting: BTreeSet<usize> = affected.iter().copied().collect();
    let mut windows: Vec<(f64, f64)> = Vec::new(); // (writes/s, requests/s) per 5 s window
    let mut last = (Instant::now(), mi0.clone());
    while !waiting.is_empty() {
        assert!(
            incident.elapsed() < Duration::from_secs(900),
            "mass incident: {} policies had not acted after 15 min",
            waiting.len()
        );
        let now = Instant::now();
        let current = published(&all_slices);
        waiting.retain(|p| {
            let victim = cfg.endpoint(p * cfg.endpoints).ip().to_string();
            if current
                .get(&format!("p{p}-healthy"))
                .is_none_or(|a| a.contains(&victim))
            {
                return true;
            }
            acted.push(now - incident);
            false
        });
        if last.0.elapsed() >= Duration::from_secs(5) {
            let m = scrape(metrics_addr).await;
            let dt = last.0.elapsed().as_secs_f64();
            windows.push((
                delta(&last.1, &m, "ingress_failover_api_writes_total") / dt,
                delta(&last.1, &m, "ingress_failover_api_requests_total") / dt,
            ));
            last = (Instant::now(), m);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_acted = incident.elapsed();
    let mi1 = scrape(metrics_addr).await;
    acted.sort();
    let throttled = delta(&mi0, &mi1, "ingress_failover_api_throttled_seconds_total");
    let incident_writes = delta(&mi0, &mi1, "ingress_failover_api_writes_total");
    let max_window = windows.iter().map(|w| w.0).fold(0.0, f64::max);
    let max_req_window = windows.iter().map(|w| w.1).fold(0.0, f64::max);

    let _ = operator.kill();
    let _ = operator.wait();
    drop(servers);
    if let Some(c) = cluster {
        c.shutdown().await;
    }

    let plane = if cfg.kubeconfig.is_some() {
        "real"
    } else {
        "embedded"
    };
    println!("plane {plane}");
    println!(
        "policies {all} endpoints_per_policy {} interval_seconds {}",
        cfg.endpoints, cfg.interval
    );
    println!("reference_prober_cpu_share {ref_cpu:.4} ({ref_checks:.0} checks/s)");
    println!("cold_start_seconds {:.1}", converged.as_secs_f64());
    println!("cold_start_cpu_seconds {cold_cpu:.1}");
    println!("steady_cpu_share {steady_cpu:.4} ({checks:.0} checks/s, {absorbed:.0} absorbed/s)");
    println!(
        "steady_cpu_ratio_to_prober {per_check_ratio:.2} per check (target <= 2; {:.0} checks/s here, {ref_checks:.0} in the reference, nominal {:.0})",
        checks,
        (cfg.policies * cfg.endpoints) as f64 / cfg.interval as f64
    );
    println!(
        "rss_mib {:.0} rss_kib_per_policy {:.1}",
        rss / 1024.0,
        rss / all as f64
    );
    println!("steady_writes_per_second {writes:.3} (target 0)");
    println!("steady_requests_per_second {requests:.2}");
    println!(
        "steady_reconciles_per_second {:.2} mean_reconcile_us {:.0}",
        reconciles / secs,
        reconcile_secs / reconciles.max(1.0) * 1e6
    );
    println!("detection_samples {}", latency.len());
    println!(
        "detection_median_ms {:.0} detection_p99_ms {:.0}",
        ms(percentile(&latency, 0.5)),
        ms(percentile(&latency, 0.99))
    );
    println!(
        "operator_share_median_ms {:.1} operator_share_p99_ms {:.1} (target p99 < 50)",
        ms(percentile(&share, 0.5)),
        ms(percentile(&share, 0.99))
    );
    println!("incident_policies {}", affected.len());
    println!(
        "incident_all_acted_seconds {:.1} (median {:.1}, p99 {:.1})",
        all_acted.as_secs_f64(),
        percentile(&acted, 0.5).as_secs_f64(),
        percentile(&acted, 0.99).as_secs_f64()
    );
    println!(
        "incident_writes {incident_writes:.0} max_writes_per_second_5s {max_window:.1} max_requests_per_second_5s {max_req_window:.1} (limit qps {} burst {}) throttled_seconds {throttled:.1}",
        cfg.qps, cfg.burst
    );
}

/// A cache of the EndpointSlices matching `labels`, kept by a reflector.
fn slice_cache(api: Api<EndpointSlice>, labels: String) -> reflector::Store<EndpointSlice> {
    let (store, writer) = reflector::store::<EndpointSlice>();
    tokio::spawn(
        reflector::reflector(
            writer,
            watcher(api, watcher::Config::default().labels(&labels)),
        )
        .applied_objects()
        .for_each(|_| async {}),
    );
    store
}

/// Published addresses by Service name.
fn published(store: &reflector::Store<EndpointSlice>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in store.state() {
        let Some(service) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
        else {
            continue;
        };
        out.entry(service.clone())
            .or_default()
            .extend(s.endpoints.iter().flat_map(|e| e.addresses.clone()));
    }
    out
}

async fn install(client: &Client) {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.patch(
        "failoverpolicies.ingressfailover.io",
        &PatchParams::apply("scale-bench").force(),
        &Patch::Apply(ingress_failover::api::crd::crd()),
    )
    .await
    .expect("CRD");
    // A real apiserver needs a moment before the new type is served.
    let policies: Api<FailoverPolicy> = Api::namespaced(client.clone(), NS);
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    ns.patch(
        NS,
        &PatchParams::apply("scale-bench"),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})),
    )
    .await
    .expect("namespace");
    for _ in 0..100 {
        if policies
            .list(&kube::api::ListParams::default().limit(1))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the FailoverPolicy type is not served");
}
