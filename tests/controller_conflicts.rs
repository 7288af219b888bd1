//! Conflicts between policies (issue 12 items 8–10), through the Kubernetes API: every object
//! the operator writes has exactly one owning policy; a second claimant is `Ready=False`,
//! reason `Conflict`, names the owner, gets an Event and writes nothing; a renamed reference is
//! cleaned up like a deletion. Runs on the embedded plane and on the real control plane.

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster::*;
use ingress_failover::api::{Phase, condition_types as ct, reasons};
use serde_json::json;
use testkit::farm::Behavior;

const T: Duration = Duration::from_secs(30);

/// Waits until policy `name` is `Ready=False` with reason Conflict naming `owner`.
async fn wait_conflict(env: &Env, name: &str, owner: &str) -> String {
    let owner = format!("FailoverPolicy {}/{owner}", env.ns);
    let s = env
        .wait_status(name, T, "Ready=False, reason Conflict", |s| {
            condition(s, ct::READY).is_some_and(|c| {
                c.status == "False" && c.reason == reasons::CONFLICT && c.message.contains(&owner)
            })
        })
        .await;
    condition(&s, ct::READY).unwrap().message.clone()
}

/// How often `read` changes value over `window`, sampled every 50 ms.
async fn changes<F, Fut, T2>(window: Duration, mut read: F) -> usize
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T2>,
    T2: PartialEq,
{
    let until = Instant::now() + window;
    let mut last = read().await;
    let mut n = 0;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = read().await;
        if now != last {
            n += 1;
            last = now;
        }
    }
    n
}

/// Item 8: two policies name the same Ingress; one judges its load balancer down, the other
/// up. Before, the Ingress class flipped thousands of times in 30 s and both were Ready. Now
/// the older policy owns it, the newer one is refused, and the class does not move until the
/// owner is deleted and the other policy takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_policies_naming_one_ingress_never_fight_over_it() {
    let mut env = Env::start("claim-ingress").await;
    let (b1, b2) = (env.backends(2).await, env.backends(2).await);
    let (up, down) = (env.backend_addr(), env.backend_addr());
    env.set(up, Behavior::Healthy).await;
    env.set(down, Behavior::Status(503)).await;
    for o in ingress_objects("nginx-primary") {
        env.apply_json(o).await;
    }
    let tier = |lb: std::net::SocketAddr| {
        json!({"ingress": {"ingresses": ["web"], "primaryClass": "nginx-primary", "backupClass": "nginx-backup",
                           "health": {"url": format!("http://{lb}/healthz")}}})
    };
    let mut a = policy("a", &b1, tier(up));
    a["spec"]["managedService"]["name"] = json!("a-healthy");
    env.apply_json(a).await;
    env.start_controller().await;
    env.wait_status("a", T, "a Normal", |s| s.phase == Phase::Normal)
        .await;
    // The owner is recorded on the Ingress.
    eventually(T, || async {
        let ing = env.ingress("web").await?;
        (ing.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("ingressfailover.io/claimed-by"))
            .map(String::as_str)
            == Some("a"))
        .then_some(())
    })
    .await;

    let mut b = policy("b", &b2, tier(down));
    b["spec"]["managedService"]["name"] = json!("b-healthy");
    env.apply_json(b).await;
    let message = wait_conflict(&env, "b", "a").await;
    assert!(
        message.contains(&format!("Ingress {}/web", env.ns)),
        "{message}"
    );
    env.wait_event("b", T, "a Conflict Event", |r, n| {
        r == reasons::CONFLICT && n.contains("Ingress")
    })
    .await;
    // b judges its load balancer down, yet the class never moves and barely any write lands.
    let flips = changes(Duration::from_secs(6), || async {
        env.ingress("web")
            .await
            .and_then(|i| i.metadata.resource_version)
    })
    .await;
    assert_eq!(
        env.ingress_class("web").await.as_deref(),
        Some("nginx-primary")
    );
    assert!(flips <= 1, "the Ingress changed {flips} times in 6 s");
    let s = env.status("a").await.unwrap();
    assert!(is_true(&s, ct::READY), "the owner stays Ready: {s:?}");
    // b writes nothing at all: not even its own managed Service.
    assert!(env.published("b-healthy").await.is_empty());

    // The owner goes: the other policy takes over and acts on its own judgement.
    env.delete_policy("a", T).await;
    env.wait_status("b", T, "b takes over and fails over", |s| {
        is_true(s, ct::READY) && is_true(s, ct::FAILOVER_ACTIVE) && is_true(s, ct::IN_EFFECT)
    })
    .await;
    assert_eq!(
        env.ingress_class("web").await.as_deref(),
        Some("nginx-backup")
    );
}

/// Item 9: two policies sharing one managed Service took turns overwriting its EndpointSlice.
/// Now the first owns it; the second is refused and never writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_policies_sharing_a_managed_service_never_take_turns() {
    let mut env = Env::start("claim-service").await;
    let (b1, b2) = (env.backends(2).await, env.backends(2).await);
    env.apply_json(policy("a", &b1, json!({}))).await;
    env.start_controller().await;
    env.wait_published("a-healthy", T, "a publishes", |p| *p == set_of(&b1))
        .await;
    let mut b = policy("b", &b2, json!({}));
    b["spec"]["managedService"]["name"] = json!("a-healthy");
    env.apply_json(b).await;
    let message = wait_conflict(&env, "b", "a").await;
    assert!(
        message.contains(&format!("Service {}/a-healthy", env.ns)),
        "{message}"
    );
    let seen: std::sync::Mutex<BTreeSet<BTreeSet<String>>> = Default::default();
    changes(Duration::from_secs(6), || async {
        let p = env.published("a-healthy").await;
        seen.lock().unwrap().insert(p.clone());
        p
    })
    .await;
    assert_eq!(
        seen.into_inner().unwrap(),
        BTreeSet::from([set_of(&b1)]),
        "only the owner's backends are ever published"
    );
}

/// Item 10: renaming `managedService.name` used to leave the old Service and its slice
/// publishing a frozen set. The old Service is now handed back as on deletion (it publishes
/// the whole primary pool and is no longer managed) and the new one is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_managed_service_is_handed_back() {
    let mut env = Env::start("rename").await;
    // Five, so that two down stays above the panic threshold (fail-open would publish all).
    let b = env.backends(5).await;
    env.apply_json(policy("web", &b, json!({}))).await;
    env.start_controller().await;
    // New backends are unconfirmed until their first check: let each pass one.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    env.set(b[0], Behavior::Status(503)).await;
    env.wait_published("web-healthy", T, "b0 ejected", |p| p.len() == 4)
        .await;
    let mut renamed = policy("web", &b, json!({}));
    renamed["spec"]["managedService"]["name"] = json!("web-live");
    env.apply_json(renamed).await;
    env.wait_published("web-live", T, "the new Service publishes", |p| p.len() == 4)
        .await;
    // The old one is no longer frozen on the policy's last decision: handed back, it lists the
    // whole primary pool (the ejected backend included) and is not owned by the policy.
    env.wait_published("web-healthy", T, "the old Service handed back", |p| {
        *p == set_of(&b)
    })
    .await;
    let services: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(env.client.clone(), &env.ns);
    let old = services.get("web-healthy").await.unwrap();
    assert!(
        old.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("ingressfailover.io/handed-back")),
        "{:?}",
        old.metadata
    );
    assert!(
        old.metadata.owner_references.unwrap_or_default().is_empty(),
        "no longer owned by the policy"
    );
    // And it stays so: the policy does not write it again.
    env.set(b[1], Behavior::Status(503)).await;
    env.wait_published("web-live", T, "b1 ejected from the new Service", |p| {
        p.len() == 3
    })
    .await;
    assert_eq!(env.published("web-healthy").await, set_of(&b));
}

/// Item 10, the other references: an Ingress removed from `ingresses` mid-incident used to stay
/// on the backup class for good. It is handed back like on deletion: primary class, claim gone;
/// the Ingress still named stays where the incident put it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_no_longer_named_is_handed_back() {
    let mut env = Env::start("release").await;
    let b = env.backends(2).await;
    let lb = env.backend_addr();
    env.set(lb, Behavior::Healthy).await;
    for o in ingress_objects("nginx-primary") {
        env.apply_json(o).await;
    }
    let mut api_ing = ingress_objects("nginx-primary").pop().unwrap();
    api_ing["metadata"]["name"] = json!("api");
    env.apply_json(api_ing).await;
    let spec = |names: &[&str]| {
        json!({"ingress": {"ingresses": names, "primaryClass": "nginx-primary", "backupClass": "nginx-backup",
                           "health": {"url": format!("http://{lb}/healthz")}}})
    };
    env.apply_json(policy("web", &b, spec(&["web", "api"])))
        .await;
    env.start_controller().await;
    env.set(lb, Behavior::Status(503)).await;
    env.wait_status("web", T, "failed over", |s| {
        is_true(s, ct::FAILOVER_ACTIVE) && is_true(s, ct::IN_EFFECT)
    })
    .await;
    assert_eq!(
        env.ingress_class("api").await.as_deref(),
        Some("nginx-backup")
    );

    env.apply_json(policy("web", &b, spec(&["web"]))).await;
    eventually(T, || async {
        (env.ingress_class("api").await.as_deref() == Some("nginx-primary")).then_some(())
    })
    .await;
    let api = env.ingress("api").await.unwrap();
    assert!(
        !api.metadata
            .labels
            .unwrap_or_default()
            .contains_key("ingressfailover.io/claimed-by"),
        "the claim goes with the hand-back"
    );
    env.wait_event("web", T, "a hand-back Event", |r, n| {
        r == "HandedBack" && n.contains("api")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.ingress_class("web").await.as_deref(),
        Some("nginx-backup")
    );
    assert_eq!(
        env.ingress_class("api").await.as_deref(),
        Some("nginx-primary")
    );
}
