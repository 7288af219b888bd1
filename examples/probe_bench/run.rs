//! The `run` role: orchestrates backends, our prober and HAProxy, and prints the figures.

use crate::common::{LineChild, cpu_seconds, now_unix, percentile, rss_kib};
use crate::haproxy::Haproxy;
use crate::prober::{overhead_us, targets};
use ingress_failover::health::CheckOutcome;
use ingress_failover::probe::{Allowlist, Prober, ProberConfig};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Args {
    pub haproxy: String,
    pub dir: PathBuf,
    pub clk_tck: f64,
    pub scales: Vec<usize>,
    pub window: Duration,
    pub warm: Duration,
    pub kills: usize,
    pub kills_per_round: usize,
}

/// Endpoints used for detection sit apart from the cost set, so a kill never touches it.
const DETECT_FROM: usize = 20_000;
/// Consecutive failures to declare DOWN: HAProxy's `fall 3`, counted here because the
/// decision engine is not part of the prober.
const FALL: u32 = 3;
/// Endpoints per backend process: a listener and a connection each stay under the fd limit.
const PER_BACKEND: usize = 2500;

fn exe() -> PathBuf {
    std::env::current_exe().expect("own executable path")
}

fn pidfile(a: &Args) -> PathBuf {
    a.dir.join("pids")
}

fn backends(a: &Args, from: usize, to: usize) -> std::io::Result<Vec<LineChild>> {
    let mut children = Vec::new();
    let mut start = from;
    while start < to {
        let end = (start + PER_BACKEND).min(to);
        let mut cmd = Command::new(exe());
        cmd.args([
            "serve",
            "--from",
            &start.to_string(),
            "--to",
            &end.to_string(),
        ]);
        children.push(LineChild::spawn(cmd, &pidfile(a))?);
        start = end;
    }
    for c in &mut children {
        let ready = c.read_line()?;
        if ready != "ready" {
            return Err(std::io::Error::other(format!("backend said {ready:?}")));
        }
    }
    Ok(children)
}

fn served(children: &mut [LineChild]) -> std::io::Result<u64> {
    let mut total = 0;
    for c in children {
        let answer = c.ask("count")?;
        total += answer
            .strip_prefix("count ")
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad count answer {answer:?}")))?;
    }
    Ok(total)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    percentile(&v, 0.5)
}

struct Detection {
    ours: Vec<f64>,
    haproxy: Vec<f64>,
    overhead_p99_ms: f64,
}

/// Kills backends while our prober and HAProxy watch the same ones, and times both.
fn detection(a: &Args) -> std::io::Result<Detection> {
    let (from, to) = (DETECT_FROM, DETECT_FROM + a.kills);
    let mut be = backends(a, from, to)?;
    let hap = Haproxy::start(&a.haproxy, &a.dir, "detect", from..to, &pidfile(a))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let _guard = rt.enter();
    let (prober, mut facts) = Prober::new(
        ProberConfig::default(),
        Allowlist::parse(["127.0.0.0/8"]).expect("static allowlist"),
    );
    let ours_down: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
    let overhead: Arc<Mutex<Vec<f64>>> = Arc::default();
    let (down, over) = (ours_down.clone(), overhead.clone());
    rt.spawn(async move {
        let mut failures: HashMap<Arc<str>, u32> = HashMap::new();
        while let Some(f) = facts.recv().await {
            let at = now_unix();
            over.lock()
                .unwrap()
                .push(f64::from(overhead_us(f.schedule_lag, f.observed_at)) / 1e3);
            let n = failures.entry(f.key.endpoint.clone()).or_default();
            *n = if f.outcome == CheckOutcome::Healthy {
                0
            } else {
                *n + 1
            };
            if *n == FALL {
                down.lock()
                    .unwrap()
                    .entry(f.key.endpoint.to_string())
                    .or_insert(at);
            }
        }
    });
    prober
        .set_targets(
            &ingress_failover::api::PolicyId::new("bench", "detect"),
            [],
            targets(from, to, Duration::from_secs(1)),
        )
        .map_err(std::io::Error::other)?;

    // HAProxy's view, polled every 10 ms on its stats socket.
    let hap_down: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (hap_down, stop, socket) = (hap_down.clone(), stop.clone(), hap.socket.clone());
        std::thread::spawn(move || {
            let view = crate::haproxy::StatsView(socket);
            while !stop.load(Ordering::Relaxed) {
                if let Ok(states) = view.server_states() {
                    let at = now_unix();
                    let mut d = hap_down.lock().unwrap();
                    for (name, st) in states {
                        if st.starts_with("DOWN") {
                            d.entry(name).or_insert(at);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    std::thread::sleep(a.warm.max(Duration::from_secs(3)));
    if !ours_down.lock().unwrap().is_empty() || !hap_down.lock().unwrap().is_empty() {
        return Err(std::io::Error::other("a backend was DOWN before any kill"));
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    // Each round kills a stride across the whole set, not a contiguous run: HAProxy staggers
    // its servers' first checks by index, so neighbours share a phase and a contiguous batch
    // would be one sample repeated rather than many.
    let rounds = a.kills.div_ceil(a.kills_per_round);
    for round in 0..rounds {
        let batch: Vec<usize> = (from..to)
            .filter(|i| (i - from) % rounds == round)
            .collect();
        let line = batch
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        let answer = be[0].ask(&format!("kill {line}"))?;
        let killed_at: f64 = answer
            .strip_prefix("killed ")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad kill answer {answer:?}")))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let o = ours_down.lock().unwrap();
            let h = hap_down.lock().unwrap();
            let done = batch.iter().all(|&i| {
                o.contains_key(&crate::common::endpoint(i).to_string())
                    && h.contains_key(&format!("s{i}"))
            });
            if done || Instant::now() > deadline {
                for &i in &batch {
                    match o.get(&crate::common::endpoint(i).to_string()) {
                        Some(t) => ours.push(t - killed_at),
                        None => eprintln!("ours never saw endpoint {i} DOWN"),
                    }
                    match h.get(&format!("s{i}")) {
                        Some(t) => theirs.push(t - killed_at),
                        None => eprintln!("haproxy never saw s{i} DOWN"),
                    }
                }
                break;
            }
            drop((o, h));
            std::thread::sleep(Duration::from_millis(20));
        }
        // A random pause so kills land at varied phases of both check schedules.
        std::thread::sleep(Duration::from_millis(300 + fastrand::u64(0..1000)));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    drop(prober);
    let mut o = overhead.lock().unwrap().clone();
    o.sort_by(|a, b| a.total_cmp(b));
    Ok(Detection {
        ours,
        haproxy: theirs,
        overhead_p99_ms: percentile(&o, 0.99),
    })
}

struct Cost {
    cpu_s: f64,
    checks: u64,
    rss_kib: f64,
}

impl Cost {
    fn cpu_per_1000(&self) -> f64 {
        self.cpu_s / self.checks.max(1) as f64 * 1000.0
    }
}

/// Samples CPU and served checks over the window after a warm-up; RSS at the end.
fn measure(
    a: &Args,
    pid: u32,
    be: &mut [LineChild],
    mut at_start: impl FnMut() -> std::io::Result<()>,
) -> std::io::Result<Cost> {
    std::thread::sleep(a.warm);
    at_start()?;
    let (cpu0, n0) = (cpu_seconds(pid, a.clk_tck), served(be)?);
    std::thread::sleep(a.window);
    let (cpu1, n1) = (cpu_seconds(pid, a.clk_tck), served(be)?);
    Ok(Cost {
        cpu_s: cpu1 - cpu0,
        checks: n1 - n0,
        rss_kib: rss_kib(pid),
    })
}

fn prober_child(a: &Args, count: usize) -> std::io::Result<LineChild> {
    let mut cmd = Command::new(exe());
    cmd.args(["prober", "--count", &count.to_string()]);
    let mut c = LineChild::spawn(cmd, &pidfile(a))?;
    let ready = c.read_line()?;
    if ready != "ready" {
        return Err(std::io::Error::other(format!("prober said {ready:?}")));
    }
    Ok(c)
}

fn stat_field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

pub fn run(a: Args) -> std::io::Result<()> {
    std::fs::create_dir_all(&a.dir)?;

    // Idle baselines, subtracted from RSS to get memory per endpoint.
    let idle_ours = {
        let c = prober_child(&a, 0)?;
        std::thread::sleep(Duration::from_secs(2));
        rss_kib(c.pid())
    };
    let idle_hap = {
        let h = Haproxy::start(&a.haproxy, &a.dir, "idle", 0..0, &pidfile(&a))?;
        std::thread::sleep(Duration::from_secs(2));
        rss_kib(h.pid())
    };
    println!("baseline_rss_kib ours={idle_ours:.0} haproxy={idle_hap:.0}");

    let d = detection(&a)?;
    let (mo, mh) = (median(d.ours.clone()), median(d.haproxy.clone()));
    println!(
        "detection kills={} ours_median_s={mo:.3} haproxy_median_s={mh:.3} ours_min_s={:.3} ours_max_s={:.3} haproxy_min_s={:.3} haproxy_max_s={:.3} ours_overhead_p99_ms={:.3}",
        d.ours.len(),
        d.ours.iter().copied().fold(f64::INFINITY, f64::min),
        d.ours.iter().copied().fold(0.0, f64::max),
        d.haproxy.iter().copied().fold(f64::INFINITY, f64::min),
        d.haproxy.iter().copied().fold(0.0, f64::max),
        d.overhead_p99_ms,
    );
    if d.ours.len() != a.kills || d.haproxy.len() != a.kills {
        return Err(std::io::Error::other("some kills were never detected"));
    }

    let mut overhead_p99 = d.overhead_p99_ms;
    let mut last = None;
    for &n in &a.scales {
        let mut be = backends(&a, 0, n)?;
        let mut ours_child = prober_child(&a, n)?;
        let pid = ours_child.pid();
        let ours = {
            let child = &mut ours_child;
            measure(&a, pid, &mut be, || child.ask("reset").map(|_| ()))?
        };
        let stats = ours_child.ask("stats")?;
        drop(ours_child);
        let p99 = stat_field(&stats, "overhead_p99_ms");
        overhead_p99 = overhead_p99.max(p99);
        std::thread::sleep(Duration::from_secs(2));
        let hap = Haproxy::start(&a.haproxy, &a.dir, &format!("cost{n}"), 0..n, &pidfile(&a))?;
        let theirs = measure(&a, hap.pid(), &mut be, || Ok(()))?;
        drop(hap);
        drop(be);

        let mem = |c: &Cost, idle: f64| (c.rss_kib - idle).max(0.0) / n as f64;
        let (cpu_ratio, mem_ratio) = (
            ours.cpu_per_1000() / theirs.cpu_per_1000(),
            mem(&ours, idle_ours) / mem(&theirs, idle_hap),
        );
        for (who, c, idle) in [("ours", &ours, idle_ours), ("haproxy", &theirs, idle_hap)] {
            println!(
                "cost endpoints={n} who={who} window_s={} checks={} cpu_s={:.3} cpu_s_per_1000_checks={:.4} rss_kib={:.0} kib_per_endpoint={:.2}",
                a.window.as_secs(),
                c.checks,
                c.cpu_s,
                c.cpu_per_1000(),
                c.rss_kib,
                mem(c, idle),
            );
        }
        println!(
            "ours_stats endpoints={n} {}",
            stats.trim_start_matches("stats ")
        );
        println!("cpu_per_check_ratio_{n} {cpu_ratio:.3}");
        println!("mem_per_endpoint_ratio_{n} {mem_ratio:.3}");
        last = Some((cpu_ratio, mem_ratio));
        std::thread::sleep(Duration::from_secs(2));
    }
    let (cpu_ratio, mem_ratio) = last.unwrap_or((f64::NAN, f64::NAN));
    println!("detection_latency_ratio {:.3}", mo / mh);
    println!("overhead_p99_ms {overhead_p99:.3}");
    println!("cpu_per_check_ratio {cpu_ratio:.3}");
    println!("mem_per_endpoint_ratio {mem_ratio:.3}");
    Ok(())
}
