//! Controller measurements against the embedded control plane, with real loopback backends:
//!
//! 1. cold start: N policies (default 1,000) exist before the controller starts; seconds until
//!    every one reports a decided phase;
//! 2. writes to the API during a steady state (default 300 s) in which nothing changes;
//! 3. detection: a backend starts failing (503) at interval 1 s / fall 3; time until the managed
//!    EndpointSlice no longer lists it (median, p99), and the operator's share beyond the probe
//!    schedule — from the third failed check reaching the backend to the slice update.
//!
//! `cargo bench --bench controller` (env: BENCH_POLICIES, BENCH_STEADY_SECS, BENCH_KILLS).
//! Bounded in time and count; loopback only; stops everything it started.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use devcluster::{DevCluster, DevClusterOptions};
use ingress_failover::api::{FailoverPolicy, Phase};
use ingress_failover::controller::{self, Options};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use testkit::farm::{Behavior, Farm};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn policy(name: &str, backends: &[SocketAddr]) -> FailoverPolicy {
    serde_json::from_value(json!({
        "apiVersion": "ingressfailover.io/v1alpha1", "kind": "FailoverPolicy",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {
            "backends": {"primary": {"addresses": backends.iter().map(|a| a.to_string()).collect::<Vec<_>>()}},
            "managedService": {"name": format!("{name}-healthy")},
            "probe": {"http": {"path": "/healthz"}, "intervalSeconds": 1, "timeoutSeconds": 1,
                      "failureThreshold": 3, "successThreshold": 2, "jitterPercent": 0},
        }
    }))
    .expect("bench policy")
}

async fn published(client: &Client, service: &str) -> BTreeSet<String> {
    let selector = format!("kubernetes.io/service-name={service}");
    testkit::pods::slice_addresses(client, "bench", &selector)
        .await
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Reconciles finished so far, from the controller's own histogram.
fn reconciles_so_far(registry: &prometheus_client::registry::Registry) -> f64 {
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text.lines()
        .find(|l| l.starts_with("ingress_failover_reconcile_duration_seconds_count"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent: keep that instant.
    if !std::env::args().any(|a| a == "--bench") {
        println!("controller bench: run with `cargo bench --bench controller`");
        return;
    }
    ingress_failover::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench());
}

async fn bench() {
    let n_policies = env_num("BENCH_POLICIES", 1000) as usize;
    let steady = Duration::from_secs(env_num("BENCH_STEADY_SECS", 300));
    let kills = env_num("BENCH_KILLS", 20) as usize;

    let cluster = DevCluster::start(DevClusterOptions {
        controller_manager: false,
        ..Default::default()
    })
    .await
    .expect("devcluster");
    let client = cluster.client_with_user_agent("bench").expect("client");
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.patch(
        "failoverpolicies.ingressfailover.io",
        &PatchParams::apply("bench").force(),
        &Patch::Apply(ingress_failover::api::crd::crd()),
    )
    .await
    .expect("CRD");
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    ns.patch(
        "bench",
        &PatchParams::apply("bench"),
        &Patch::Apply(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
        ),
    )
    .await
    .expect("namespace");

    // Backends: two per policy on 127.60.x.y, plus four for the detection policy.
    let farm = Farm::new();
    let policies: Api<FailoverPolicy> = Api::namespaced(client.clone(), "bench");
    let mut next = 0u32;
    let mut addr = || {
        next += 1;
        format!("127.60.{}.{}:8080", next / 250, 1 + next % 250)
            .parse::<SocketAddr>()
            .expect("address")
    };
    for i in 0..n_policies {
        let b = [addr(), addr()];
        for a in b {
            farm.set(a, Behavior::Healthy).await.expect("backend");
        }
        policies
            .create(&PostParams::default(), &policy(&format!("p{i}"), &b))
            .await
            .expect("policy");
    }
    let detect: Vec<SocketAddr> = (0..4).map(|_| addr()).collect();
    for a in &detect {
        farm.set(*a, Behavior::Healthy).await.expect("backend");
    }
    policies
        .create(&PostParams::default(), &policy("detect", &detect))
        .await
        .expect("policy");

    let opts = Options {
        namespaces: vec!["bench".into()],
        policy_selector: None,
        deployment_selector: None,
        ingress_selector: None,
        rules: ingress_failover::validation::ValidationContext {
            allowed_ingress_controller_namespaces: vec![],
            probe_allowlist: vec!["127.0.0.0/8".into()],
        },
        metrics_addr: "127.0.0.1:0".parse().expect("address"),
        metrics_secure: None,
        leader_election: false,
        lease_name: "ingress-failover".into(),
        lease_namespace: "bench".into(),
        identity: "bench".into(),
        lease_seconds: 15,
        lease_renew_deadline: std::time::Duration::from_secs(10),
        lease_retry_period: std::time::Duration::from_secs(2),
        shards: 1,
        prober: Default::default(),
        trust_unmanaged_endpointslices: false,
        dns_endpoints: false,
        max_concurrent_reconciles: 32,
        gateway_api: false,
        resync: std::time::Duration::from_secs(300),
    };
    let controller_client = cluster
        .client_with_user_agent("ingress-failover")
        .expect("client");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let started = Instant::now();
    let task = tokio::spawn(controller::run(
        controller_client,
        opts,
        controller::system_clock(),
        async move {
            let _ = stop_rx.await;
        },
        Some(started_tx),
    ));
    let running = started_rx.await.expect("controller started");

    // 1. Cold start.
    let deadline = Instant::now() + Duration::from_secs(300);
    let converged = loop {
        let list = policies.list(&ListParams::default()).await.expect("list");
        let done = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().is_some_and(|s| s.phase == Phase::Normal))
            .count();
        if done == n_policies + 1 {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            panic!(
                "only {done} of {} policies converged in 300 s",
                n_policies + 1
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "cold start: {} policies converged in {:.2} s",
        n_policies + 1,
        converged.as_secs_f64()
    );

    // 2. Steady state.
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.audit_log().clear();
    let writes_before = running.ctx.metrics.total_writes();
    let reconciles_before = reconciles_so_far(&running.registry);
    let cpu_before = testkit::bulk::cpu_seconds(std::process::id(), 100.0);
    eprintln!("steady state: watching writes for {} s", steady.as_secs());
    tokio::time::sleep(steady).await;
    let steady_writes = running.ctx.metrics.total_writes() - writes_before;
    // The whole process: plane, backends and controller; compare runs, not absolute figures.
    let steady_cpu =
        (testkit::bulk::cpu_seconds(std::process::id(), 100.0) - cpu_before) / steady.as_secs_f64();
    let steady_reconciles = reconciles_so_far(&running.registry) - reconciles_before;
    for (e, n) in cluster.audit_log().counts() {
        if e.user_agent == "ingress-failover"
            && !matches!(e.verb.as_str(), "list" | "watch" | "get")
        {
            eprintln!(
                "steady state: {n} × {} {}{}",
                e.verb,
                e.resource,
                if e.subresource.is_empty() {
                    String::new()
                } else {
                    format!("/{}", e.subresource)
                }
            );
        }
    }

    // 3. Detection.
    let mut latency = Vec::new();
    let mut overhead = Vec::new();
    for k in 0..kills {
        let victim = detect[k % detect.len()];
        let victim_s = victim.to_string();
        let killed = Instant::now();
        farm.set(victim, Behavior::Status(503))
            .await
            .expect("break");
        let removed = loop {
            if !published(&client, "detect-healthy")
                .await
                .contains(&victim_s)
            {
                break Instant::now();
            }
            if killed.elapsed() > Duration::from_secs(20) {
                panic!("backend {victim} not removed within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let failed_checks: Vec<Instant> = farm
            .requests(victim)
            .into_iter()
            .filter(|t| *t >= killed)
            .collect();
        latency.push(removed - killed);
        if let Some(third) = failed_checks.get(2) {
            overhead.push(removed.saturating_duration_since(*third));
        }
        farm.set(victim, Behavior::Healthy).await.expect("heal");
        let healed = Instant::now();
        while !published(&client, "detect-healthy")
            .await
            .contains(&victim_s)
        {
            if healed.elapsed() > Duration::from_secs(20) {
                panic!("backend {victim} not restored");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // De-phase the next kill from the probe schedule.
        tokio::time::sleep(Duration::from_millis(300 + fastrand::u64(0..1000))).await;
    }
    latency.sort();
    overhead.sort();

    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, &running.registry);
    let metric = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let reconciles = metric("ingress_failover_reconcile_duration_seconds_count");
    let reconcile_secs = metric("ingress_failover_reconcile_duration_seconds_sum");
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    drop(cluster);

    println!("policies {}", n_policies + 1);
    println!("kills {}", latency.len());
    println!("detection_median_ms {:.1}", ms(percentile(&latency, 0.5)));
    println!("detection_p99_ms {:.1}", ms(percentile(&latency, 0.99)));
    println!(
        "operator_share_median_ms {:.1}",
        ms(percentile(&overhead, 0.5))
    );
    println!(
        "operator_share_p99_ms {:.1}",
        ms(percentile(&overhead, 0.99))
    );
    println!("steady_state_seconds {}", steady.as_secs());
    println!("steady_state_writes {steady_writes}");
    println!(
        "steady_state_reconciles_per_second {:.1}",
        steady_reconciles / steady.as_secs_f64()
    );
    println!("steady_state_process_cpu_share {steady_cpu:.3}");
    println!("cold_start_seconds {:.2}", converged.as_secs_f64());
    println!(
        "reconciles {reconciles} mean_reconcile_us {:.0} ({:.1} s in reconcile over {:.0} s)",
        reconcile_secs / reconciles.max(1.0) * 1e6,
        reconcile_secs,
        started.elapsed().as_secs_f64()
    );
}
