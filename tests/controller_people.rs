//! What people do to a policy mid-incident, through the Kubernetes API against the real
//! controller (issue 9's defects as the controller lived them): an invalid edit and its fix,
//! dry-run switched off, the flap-budget reset annotation, and a deleted ingress controller.
//! Runs on the embedded plane, or on a real cluster with `INGRESS_FAILOVER_KUBECONFIG`.

#[path = "support/cluster.rs"]
mod cluster;

use std::time::Duration;

use cluster::*;
use ingress_failover::api::{Phase, condition_types as ct, reasons};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use testkit::farm::Behavior;

const T: Duration = Duration::from_secs(20);

/// A policy over two healthy backends whose primary tier is judged by `health` (with `{lb}`
/// replaced by a loopback health server's address), merged with `extra`.
async fn start(name: &str, health: Value, extra: Value) -> (Env, std::net::SocketAddr) {
    let mut env = Env::start(name).await;
    let b = env.backends(2).await;
    let lb = env.backend_addr();
    env.set(lb, Behavior::Healthy).await;
    for o in ingress_objects("nginx-primary") {
        env.apply_json(o).await;
    }
    let health =
        serde_json::from_str::<Value>(&health.to_string().replace("{lb}", &lb.to_string()))
            .unwrap();
    let mut spec = json!({"ingress": {"ingresses": ["web"], "primaryClass": "nginx-primary", "backupClass": "nginx-backup",
                           "health": health}});
    merge(&mut spec, extra);
    env.apply_json(policy("web", &b, spec)).await;
    env.start_controller().await;
    (env, lb)
}

async fn patch_spec(env: &Env, spec: Value) {
    env.policies()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": spec })),
        )
        .await
        .expect("policy patch");
}

fn history_has(s: &ingress_failover::api::FailoverPolicyStatus, action: &str) -> bool {
    s.history.iter().any(|h| h.action == action)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_holds_the_failover_and_its_fix_carries_on() {
    let (env, lb) = start("invalid", json!({"url": "http://{lb}/healthz"}), json!({})).await;
    env.wait_status("web", T, "Normal", |s| s.phase == Phase::Normal)
        .await;
    env.set(lb, Behavior::Status(503)).await;
    env.wait_status("web", T, "failed over", |s| {
        is_true(s, ct::FAILOVER_ACTIVE) && is_true(s, ct::IN_EFFECT)
    })
    .await;

    // A reference to another namespace passes admission but not the operator's own rules.
    patch_spec(
        &env,
        json!({"ingress": {"health": {"controllerDeployment": {"namespace": "kube-system", "name": "ingress-nginx"}}}}),
    )
    .await;
    let s = env
        .wait_status("web", T, "Invalid", |s| s.phase == Phase::Invalid)
        .await;
    let ready = condition(&s, ct::READY).unwrap();
    assert_eq!(ready.reason, reasons::INVALID_SPEC);
    assert!(
        ready.message.contains("controllerDeployment"),
        "{}",
        ready.message
    );
    assert_eq!(
        s.active_class.as_deref(),
        Some("nginx-backup"),
        "decisions kept"
    );
    assert!(
        history_has(&s, "IngressFailover"),
        "history kept: {:?}",
        s.history
    );
    assert_eq!(
        env.ingress_class("web").await.as_deref(),
        Some("nginx-backup")
    );

    // The fix: traffic stays off the dead primary, history goes on.
    patch_spec(
        &env,
        json!({"ingress": {"health": {"controllerDeployment": null}}}),
    )
    .await;
    let s = env
        .wait_status("web", T, "valid again", |s| {
            s.phase == Phase::FailedOver && is_true(s, ct::READY)
        })
        .await;
    assert!(history_has(&s, "IngressFailover"));
    assert!(!history_has(&s, "IngressFailback"), "{:?}", s.history);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.ingress_class("web").await.as_deref(),
        Some("nginx-backup"),
        "never back to the dead primary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_dry_run_off_decides_afresh_as_a_recorded_action() {
    let (env, lb) = start(
        "dryrun-off",
        json!({"url": "http://{lb}/healthz"}),
        json!({"dryRun": true}),
    )
    .await;
    env.wait_status("web", T, "Normal", |s| s.phase == Phase::Normal)
        .await;
    env.set(lb, Behavior::Status(503)).await;
    let s = env
        .wait_status("web", T, "rehearsed failover", |s| {
            s.decided_class.as_deref() == Some("nginx-backup")
        })
        .await;
    assert!(s.in_effect.is_some(), "dry-run shows what is in effect");
    assert_eq!(
        s.active_class.as_deref(),
        Some("nginx-primary"),
        "in effect"
    );
    assert_eq!(s.decided_class.as_deref(), Some("nginx-backup"), "decided");
    let rehearsed = s
        .history
        .iter()
        .find(|h| h.action == "IngressFailover")
        .unwrap();
    assert!(rehearsed.reason.starts_with("dry-run, not applied"));
    assert_eq!(
        env.ingress_class("web").await.as_deref(),
        Some("nginx-primary")
    );

    patch_spec(&env, json!({"dryRun": false})).await;
    let s = env
        .wait_status("web", T, "real failover", |s| {
            s.in_effect.is_none()
                && s.history.iter().any(|h| {
                    h.action == "IngressFailover" && h.reason == "primary load balancer is down"
                })
        })
        .await;
    let ended = s
        .history
        .iter()
        .position(|h| h.action == "DryRunEnded")
        .expect("the end of the rehearsal is recorded");
    let real = s
        .history
        .iter()
        .rposition(|h| h.action == "IngressFailover")
        .unwrap();
    assert!(real > ended, "{:?}", s.history);
    env.wait_status("web", T, "Ingress switched", |s| {
        s.active_class.as_deref() == Some("nginx-backup")
    })
    .await;
    eventually(T, || async {
        (env.ingress_class("web").await.as_deref() == Some("nginx-backup")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reset_annotation_thaws_a_frozen_tier() {
    let (env, lb) = start(
        "reset",
        json!({"url": "http://{lb}/healthz"}),
        json!({"recovery": {"holdDownSeconds": 0},
               "safety": {"flapBudget": {"maxTransitions": 1, "windowSeconds": 3600}},
               "probe": {"failureThreshold": 1, "successThreshold": 1}}),
    )
    .await;
    env.wait_status("web", T, "Normal", |s| s.phase == Phase::Normal)
        .await;
    env.set(lb, Behavior::Status(503)).await;
    env.wait_status("web", T, "failed over", |s| {
        is_true(s, ct::FAILOVER_ACTIVE) && is_true(s, ct::IN_EFFECT)
    })
    .await;
    env.set(lb, Behavior::Healthy).await;
    let s = env
        .wait_status("web", T, "frozen on the backup", |s| is_true(s, ct::FROZEN))
        .await;
    assert_eq!(s.phase, Phase::Frozen);
    assert_eq!(s.active_class.as_deref(), Some("nginx-backup"));

    env.policies()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"ingressfailover.io/reset-flap-budget": "inc-7"}}})),
        )
        .await
        .unwrap();
    let s = env
        .wait_status("web", T, "thawed and failed back", |s| {
            !is_true(s, ct::FROZEN) && s.active_class.as_deref() == Some("nginx-primary")
        })
        .await;
    assert!(history_has(&s, "FlapBudgetReset"), "{:?}", s.history);
    assert_eq!(s.flap_budget_reset.as_deref(), Some("inc-7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_ingress_controller_deployment_fails_over() {
    let (env, _lb) = start(
        "ctrl-deleted",
        json!({"controllerDeployment": {"name": "ingress-nginx-controller"}}),
        json!({}),
    )
    .await;
    env.apply_json(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ingress-nginx-controller"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "ingress-nginx"}},
                 "template": {"metadata": {"labels": {"app": "ingress-nginx"}},
                              "spec": {"containers": [{"name": "controller", "image": pod_image(), "args": ["netexec", "--http-port=8080"]}]}}}}))
        .await;
    env.wait_status("web", Duration::from_secs(60), "Normal", |s| {
        s.phase == Phase::Normal
    })
    .await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(env.client.clone(), &env.ns);
    // Ready before deletion, so the failover below is the deletion's doing.
    eventually(Duration::from_secs(60), || async {
        deployments
            .get("ingress-nginx-controller")
            .await
            .ok()
            .and_then(|d| d.status)
            .and_then(|s| s.ready_replicas)
            .filter(|&n| n > 0)
    })
    .await;
    deployments
        .delete("ingress-nginx-controller", &DeleteParams::default())
        .await
        .unwrap();
    let s = env
        .wait_status("web", T, "failed over", |s| {
            is_true(s, ct::FAILOVER_ACTIVE) && is_true(s, ct::IN_EFFECT)
        })
        .await;
    let down = s
        .history
        .iter()
        .find(|h| h.action == "LoadBalancerDown")
        .unwrap();
    assert!(down.reason.contains("does not exist"), "{}", down.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_never_moves_to_a_backup_judged_down() {
    // Issue 11 item 5: the backup tier has health of its own.
    let mut env = Env::start("backup-down").await;
    let b = env.backends(2).await;
    let (lb, backup) = (env.backend_addr(), env.backend_addr());
    env.set(lb, Behavior::Healthy).await;
    env.set(backup, Behavior::Status(503)).await;
    for o in ingress_objects("nginx-primary") {
        env.apply_json(o).await;
    }
    let spec = json!({"ingress": {"ingresses": ["web"], "primaryClass": "nginx-primary", "backupClass": "nginx-backup",
                       "health": {"url": format!("http://{lb}/healthz")},
                       "backupHealth": {"url": format!("http://{backup}/healthz")}}});
    env.apply_json(policy("web", &b, spec)).await;
    env.start_controller().await;
    env.wait_status("web", T, "backup judged down", |s| {
        s.backup_load_balancer
            .as_ref()
            .is_some_and(|l| l.state == ingress_failover::api::EndpointState::Down)
    })
    .await;

    // The primary dies too: traffic stays, and status says why.
    env.set(lb, Behavior::Status(503)).await;
    let s = env
        .wait_status("web", T, "both down", |s| {
            condition(s, ct::FAILOVER_ACTIVE).is_some_and(|c| c.reason == reasons::BOTH_TIERS_DOWN)
        })
        .await;
    assert!(history_has(&s, "FailoverHeld"), "{:?}", s.history);
    assert_eq!(s.active_class.as_deref(), Some("nginx-primary"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.ingress_class("web").await.as_deref(),
        Some("nginx-primary"),
        "never moved to a dead backup"
    );

    // The backup comes back: traffic moves to it at once.
    env.set(backup, Behavior::Healthy).await;
    env.wait_status("web", T, "failed over to the backup", |s| {
        s.active_class.as_deref() == Some("nginx-backup")
    })
    .await;
    // The backup dies while it serves; once the primary is back, traffic goes home at once,
    // without the hold-down.
    env.set(backup, Behavior::Status(503)).await;
    env.wait_status("web", T, "backup judged down again", |s| {
        s.backup_load_balancer
            .as_ref()
            .is_some_and(|l| l.state == ingress_failover::api::EndpointState::Down)
    })
    .await;
    env.set(lb, Behavior::Healthy).await;
    let s = env
        .wait_status("web", T, "home after the backup died", |s| {
            s.active_class.as_deref() == Some("nginx-primary")
        })
        .await;
    assert!(
        s.history
            .iter()
            .any(|h| h.action == "IngressFailback"
                && h.reason.contains("backup load balancer is down")),
        "{:?}",
        s.history
    );
}
