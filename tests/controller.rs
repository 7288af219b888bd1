//! The controller end to end, through the Kubernetes API only: the embedded control plane by
//! default, a real cluster when `INGRESS_FAILOVER_KUBECONFIG` is set.

#[path = "support/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use cluster::*;
use ingress_failover::api::{condition_types as ct, reasons, Phase};
use ingress_failover::demo::farm::Behavior;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_removed_after_fall_and_restored_after_rise() {
    let mut env = Env::start("removal").await;
    let b = env.backends(4).await;
    env.apply_json(policy("web", &b, json!({}))).await;
    env.start_controller().await;
    env.wait_published("web-healthy", T, "all four published", |p| *p == set_of(&b)).await;
    env.wait_status("web", T, "Normal", |s| s.phase == Phase::Normal).await;

    let broke = Instant::now();
    env.set(b[0], Behavior::Status(503)).await;
    env.wait_published("web-healthy", T, "b0 removed", |p| !p.contains(&b[0].to_string()) && p.len() == 3).await;
    let removal = broke.elapsed();
    // fall = 3 at a 1 s interval: never before the second failed check, within a few intervals.
    assert!(removal >= Duration::from_millis(1900), "removed after only {removal:?}");
    assert!(removal <= Duration::from_secs(6), "removed after {removal:?}");
    let s = env.wait_status("web", T, "Degraded", |s| s.phase == Phase::Degraded).await;
    let ep = s.endpoints.iter().find(|e| e.address == b[0].to_string()).unwrap();
    assert!(ep.last_error.as_deref().unwrap_or("").contains("503"), "{ep:?}");
    assert_eq!(s.primary.as_ref().unwrap().summary, "3/4");

    let healed = Instant::now();
    env.set(b[0], Behavior::Healthy).await;
    env.wait_published("web-healthy", T, "b0 back", |p| *p == set_of(&b)).await;
    let back = healed.elapsed();
    assert!(back >= Duration::from_millis(900), "restored after only {back:?}");
    env.wait_status("web", T, "Normal again", |s| s.phase == Phase::Normal).await;

    // Steady state: nothing changes, so nothing is written.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = env.controller.as_ref().unwrap().writes();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = env.controller.as_ref().unwrap().writes();
    assert_eq!(after, before, "writes while nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_keeps_every_backend_when_all_fail() {
    let mut env = Env::start("failopen").await;
    let b = env.backends(3).await;
    env.apply_json(policy("web", &b, json!({}))).await;
    env.start_controller().await;
    env.wait_published("web-healthy", T, "published", |p| p.len() == 3).await;
    for a in &b {
        env.set(*a, Behavior::Refuse).await;
    }
    let s = env
        .wait_status("web", T, "panic", |s| s.primary.as_ref().is_some_and(|p| p.panic))
        .await;
    let deg = condition(&s, ct::DEGRADED).unwrap();
    assert_eq!(deg.reason, reasons::PANIC_FAIL_OPEN);
    assert_eq!(env.published("web-healthy").await, set_of(&b), "never an empty Service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_spec_is_refused_with_the_field_and_writes_nothing() {
    let mut env = Env::start("invalid").await;
    let b = env.backends(2).await;
    env.apply_json(policy(
        "web",
        &b,
        json!({"ingress": {"ingresses": ["web"], "primaryClass": "a", "backupClass": "b",
                "health": {"controllerDeployment": {"namespace": "kube-system", "name": "ingress-nginx"}}}}),
    ))
    .await;
    env.start_controller().await;
    let s = env
        .wait_status("web", T, "InvalidSpec", |s| {
            condition(s, ct::READY).is_some_and(|c| c.reason == reasons::INVALID_SPEC)
        })
        .await;
    let ready = condition(&s, ct::READY).unwrap();
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains("spec.ingress.health.controllerDeployment.namespace"), "{}", ready.message);
    assert_eq!(s.phase, Phase::Invalid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(env.published("web-healthy").await.is_empty(), "no managed write");
}
