//! `managedService.legacyEndpoints` (issue 14): consumers of the legacy Endpoints API see the
//! published set, EndpointSlices stay authoritative, Kubernetes does not mirror the object back
//! into slices, and a policy that does not opt in never touches the API. Through the Kubernetes
//! API, on the embedded plane and (scripts/real-cluster-suites.sh) on the real control plane,
//! whose kube-controller-manager runs the EndpointSlice mirroring controller.

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::BTreeSet;
use std::time::Duration;

use cluster::*;
use ingress_failover::api::Phase;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use testkit::farm::Behavior;

/// `ip:port` of every ready address of the Endpoints object, or None when it does not exist.
async fn legacy(env: &Env, name: &str) -> Option<BTreeSet<String>> {
    let api: Api<Endpoints> = Api::namespaced(env.client.clone(), &env.ns);
    let e = api.get_opt(name).await.expect("GET endpoints")?;
    let mut out = BTreeSet::new();
    for s in e.subsets.iter().flatten() {
        for p in s.ports.iter().flatten() {
            for a in s.addresses.iter().flatten() {
                out.insert(format!("{}:{}", a.ip, p.port));
            }
        }
    }
    Some(out)
}

async fn wait_legacy(
    env: &Env,
    name: &str,
    what: &str,
    pred: impl Fn(&Option<BTreeSet<String>>) -> bool,
) -> Option<BTreeSet<String>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = legacy(env, name).await;
        if pred(&got) {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; Endpoints: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn set_legacy(env: &Env, policy: &str, on: bool) {
    env.policies()
        .patch(
            policy,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"managedService": {"legacyEndpoints": on}}})),
        )
        .await
        .expect("patch policy");
}

/// Requests the controller made on `endpoints`, per the embedded plane's audit log (None on a
/// real cluster).
fn endpoints_requests(env: &Env) -> Option<Vec<String>> {
    let cluster = env.cluster.as_ref()?;
    Some(
        cluster
            .audit()
            .into_iter()
            .filter(|e| is_controller_agent(&e.user_agent) && e.resource == "endpoints")
            .map(|e| e.verb)
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_endpoints_mirror_the_published_set_and_go_when_turned_off() {
    let mut env = Env::start("legacy").await;
    let b = env.backends(3).await;
    env.apply_json(policy(
        "web",
        &b,
        json!({"managedService": {"legacyEndpoints": true}}),
    ))
    .await;
    env.start_controller().await;
    let t = Duration::from_secs(30);
    env.wait_status("web", t, "Normal", |s| s.phase == Phase::Normal)
        .await;
    let all = set_of(&b);
    let got = wait_legacy(&env, "web-healthy", "all three", |e| {
        e.as_ref() == Some(&all)
    })
    .await;
    assert_eq!(got.as_ref(), Some(&env.published("web-healthy").await));

    let api: Api<Endpoints> = Api::namespaced(env.client.clone(), &env.ns);
    let obj = api.get("web-healthy").await.unwrap();
    let labels = obj.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("endpointslice.kubernetes.io/skip-mirror")
            .map(String::as_str),
        Some("true"),
        "without skip-mirror Kubernetes copies the object back into a second set of slices"
    );
    assert!(
        obj.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "FailoverPolicy" && o.name == "web"),
        "owned by the policy: {:?}",
        obj.metadata.owner_references
    );

    // A backend failing leaves the legacy object with the slices.
    env.set(b[0], Behavior::Status(503)).await;
    let two: BTreeSet<String> = set_of(&b[1..]);
    env.wait_published("web-healthy", t, "b0 ejected", |p| p == &two)
        .await;
    wait_legacy(&env, "web-healthy", "b0 gone from Endpoints", |e| {
        e.as_ref() == Some(&two)
    })
    .await;

    // Nothing is written while nothing changes (the recheck period is minutes).
    if let Some(before) = endpoints_requests(&env) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = endpoints_requests(&env).unwrap();
        assert_eq!(
            after.len(),
            before.len(),
            "requests on endpoints in steady state: {:?}",
            &after[before.len()..]
        );
    }

    // The real control plane's EndpointSlice mirroring controller honours skip-mirror: no
    // slice of the Service is written by it (it acts within a second or two; give it 5).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let slices: Api<EndpointSlice> = Api::namespaced(env.client.clone(), &env.ns);
    let mirrored = slices
        .list(&ListParams::default().labels(
            "kubernetes.io/service-name=web-healthy,endpointslice.kubernetes.io/managed-by=endpointslicemirroring-controller.k8s.io",
        ))
        .await
        .unwrap();
    assert!(
        mirrored.items.is_empty(),
        "mirrored slices: {:?}",
        mirrored.items
    );

    set_legacy(&env, "web", false).await;
    wait_legacy(&env, "web-healthy", "Endpoints removed on opt-out", |e| {
        e.is_none()
    })
    .await;
    assert_eq!(
        env.published("web-healthy").await,
        two,
        "the slices stay authoritative"
    );
    env.controller.take().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_removes_a_mirror_turned_off_while_it_was_away() {
    let mut env = Env::start("legacy-away").await;
    let b = env.backends(2).await;
    env.apply_json(policy(
        "web",
        &b,
        json!({"managedService": {"legacyEndpoints": true}}),
    ))
    .await;
    env.start_controller().await;
    let all = set_of(&b);
    wait_legacy(&env, "web-healthy", "mirror", |e| e.as_ref() == Some(&all)).await;
    env.controller.take().unwrap().stop().await;

    set_legacy(&env, "web", false).await;
    env.start_controller().await;
    wait_legacy(
        &env,
        "web-healthy",
        "the mirror of an opt-out nobody observed removed",
        |e| e.is_none(),
    )
    .await;
    env.controller.take().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_does_not_opt_in_never_touches_the_endpoints_api() {
    let mut env = Env::start("legacy-off").await;
    if env.cluster.is_none() {
        // The proof is the embedded plane's audit log.
        return;
    }
    let b = env.backends(3).await;
    env.apply_json(policy("web", &b, json!({}))).await;
    env.start_controller().await;
    let t = Duration::from_secs(30);
    env.wait_status("web", t, "Normal", |s| s.phase == Phase::Normal)
        .await;
    // An edit, a failure and a recovery: every path through the reconcile.
    env.policies()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"recovery": {"holdDownSeconds": 4}}})),
        )
        .await
        .unwrap();
    env.set(b[0], Behavior::Status(503)).await;
    env.wait_published("web-healthy", t, "b0 ejected", |p| p.len() == 2)
        .await;
    env.set(b[0], Behavior::Healthy).await;
    env.wait_published("web-healthy", t, "b0 back", |p| p.len() == 3)
        .await;
    env.controller.take().unwrap().stop().await;
    assert_eq!(endpoints_requests(&env).unwrap(), Vec::<String>::new());
}
