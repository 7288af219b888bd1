//! The `prober` role: our prober alone in a process, so its CPU and memory can be read from
//! /proc without the orchestrator's own costs mixed in.
//!
//! Commands on stdin: `reset` → `ok` (start a measurement window), `stats` →
//! `stats facts=N overhead_p99_ms=X overhead_max_ms=Y`. EOF ends the process.

use crate::common::{endpoint, percentile};
use ingress_failover::probe::{
    Allowlist, CheckKind, CheckSpec, Host, HttpCheck, Prober, ProberConfig, Target, Tier,
};
use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Targets for endpoints `from..to`, probed like HAProxy's `inter 1s` + `option httpchk`.
pub fn targets(from: usize, to: usize, interval: Duration) -> Vec<Target> {
    let mut spec = CheckSpec::new(CheckKind::Http(
        HttpCheck::get("/healthz").expect("static path"),
    ));
    spec.interval = interval;
    spec.timeout = interval;
    let spec = Arc::new(spec);
    (from..to)
        .map(|i| {
            let addr = endpoint(i);
            Target {
                tier: Tier::Primary,
                endpoint: Arc::from(addr.to_string()),
                host: Host::Ip(addr.ip()),
                port: addr.port(),
                spec: spec.clone(),
            }
        })
        .collect()
}

/// What a fact cost beyond its schedule: start lag plus the time from check end to the
/// consumer holding it. Microseconds.
pub fn overhead_us(schedule_lag: Duration, observed_at: SystemTime) -> u32 {
    let delivery = SystemTime::now()
        .duration_since(observed_at)
        .unwrap_or_default();
    (schedule_lag + delivery).as_micros().min(u32::MAX as u128) as u32
}

pub fn run(count: usize) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let samples: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(Vec::with_capacity(1 << 20)));
    let _guard = rt.enter();
    let allow = Allowlist::parse(["127.0.0.0/8"]).expect("static allowlist");
    let (prober, mut facts) = Prober::new(ProberConfig::default(), allow);
    let sink = samples.clone();
    rt.spawn(async move {
        while let Some(f) = facts.recv().await {
            let o = overhead_us(f.schedule_lag, f.observed_at);
            if let Ok(mut s) = sink.lock() {
                s.push(o);
            }
        }
    });
    if count > 0 {
        prober
            .set_targets(
                &ingress_failover::api::PolicyId::new("bench", "probe"),
                [],
                targets(0, count, Duration::from_secs(1)),
            )
            .map_err(std::io::Error::other)?;
    }
    println!("ready");
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        match line.trim() {
            "reset" => {
                samples.lock().map(|mut s| s.clear()).ok();
                println!("ok");
            }
            "stats" => {
                let mut s: Vec<f64> = samples
                    .lock()
                    .map(|s| s.iter().map(|&u| f64::from(u) / 1000.0).collect())
                    .unwrap_or_default();
                s.sort_by(|a, b| a.total_cmp(b));
                println!(
                    "stats facts={} overhead_p99_ms={:.3} overhead_max_ms={:.3}",
                    s.len(),
                    percentile(&s, 0.99),
                    s.last().copied().unwrap_or(f64::NAN)
                );
            }
            _ => println!("error unknown command"),
        }
    }
    drop(prober);
    std::process::exit(0);
}
