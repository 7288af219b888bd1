//! Behaviour specific to the embedded control plane: watch mechanics the conformance suite
//! cannot force on a real cluster (410 Gone, bookmarks on cue, dropped streams), fault
//! injection, the audit log, Table output, kubectl, and the controller-manager's timing.

use devcluster::{DevCluster, DevClusterOptions, ErrorRule, FaultConfig, LatencyRule, OutageMode};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use kube::{Client, CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::{Duration, Instant};

async fn start(opts: DevClusterOptions) -> (DevCluster, Client) {
    let dc = DevCluster::start(opts).await.expect("start");
    let client = dc.client().expect("client");
    (dc, client)
}

/// kube's client retries 429/503/504 by itself (honouring Retry-After); tests that want to
/// see injected errors use a client without that layer.
fn no_retry(dc: &DevCluster) -> Client {
    let mut cfg = dc.config();
    cfg.default_retry = false;
    Client::try_from(cfg).unwrap()
}

fn fast() -> DevClusterOptions {
    DevClusterOptions {
        pod_ready_delay: Duration::from_millis(50),
        bookmark_interval: Duration::from_millis(200),
        ..Default::default()
    }
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

fn status_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn watcher_follows_changes_without_relisting() {
    let (dc, _) = start(fast()).await;
    let client = dc.client_with_user_agent("watcher-test/1").unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut stream = watcher(cms.clone(), watcher::Config::default()).boxed();
    let writer: Api<ConfigMap> = Api::namespaced(dc.client().unwrap(), "default");
    let mut applied = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut i = 0;
    while Instant::now() < deadline {
        if i < 10 {
            writer
                .create(&PostParams::default(), &cm(&format!("c{i}")))
                .await
                .unwrap();
            if i == 5 {
                dc.faults().drop_watches();
            }
            i += 1;
        }
        if let Ok(ev) = tokio::time::timeout(Duration::from_millis(100), stream.try_next()).await
            && let watcher::Event::Apply(_) | watcher::Event::InitApply(_) = ev.unwrap().unwrap()
        {
            applied += 1;
        }
    }
    assert!(applied >= 10, "saw {applied} objects");
    let lists: u64 = dc
        .audit_log()
        .counts()
        .iter()
        .filter(|(e, _)| e.user_agent == "watcher-test/1" && e.verb == "list")
        .map(|(_, n)| n)
        .sum();
    let watches: u64 = dc
        .audit_log()
        .counts()
        .iter()
        .filter(|(e, _)| e.user_agent == "watcher-test/1" && e.verb == "watch")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(lists, 1, "the watcher must not re-list");
    assert!(
        watches >= 2,
        "the dropped watch was resumed ({watches} watches)"
    );
}

#[tokio::test]
async fn old_resource_versions_get_410_gone_and_the_watcher_relists() {
    let (dc, client) = start(DevClusterOptions {
        watch_window: 5,
        ..fast()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first = cms
        .create(&PostParams::default(), &cm("first"))
        .await
        .unwrap();
    for i in 0..10 {
        cms.create(&PostParams::default(), &cm(&format!("n{i}")))
            .await
            .unwrap();
    }
    let mut stream = cms
        .watch(&WatchParams::default(), &first.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // A recent version still works.
    let latest = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut ok = cms
        .watch(&WatchParams::default().timeout(1), &latest)
        .await
        .unwrap()
        .boxed();
    cms.create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();
    assert!(matches!(
        ok.try_next().await.unwrap(),
        Some(WatchEvent::Added(_))
    ));
    // The watcher re-lists after compaction.
    let wclient = dc.client_with_user_agent("relister").unwrap();
    let mut w = watcher(
        Api::<ConfigMap>::namespaced(wclient, "default"),
        watcher::Config::default(),
    )
    .boxed();
    while !matches!(w.try_next().await.unwrap(), Some(watcher::Event::InitDone)) {}
    cms.create(&PostParams::default(), &cm("late"))
        .await
        .unwrap();
    dc.compact();
    dc.faults().drop_watches();
    while !matches!(w.try_next().await, Ok(Some(watcher::Event::InitDone))) {}
    let lists: u64 = dc
        .audit_log()
        .counts()
        .iter()
        .filter(|(e, _)| e.user_agent == "relister" && e.verb == "list")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(lists, 2);
}

#[tokio::test]
async fn streaming_list_watchers_work() {
    let (_dc, client) = start(fast()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    let mut w = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = Vec::new();
    loop {
        match w.try_next().await.unwrap() {
            Some(watcher::Event::InitApply(o)) => initial.push(o.name_any()),
            Some(watcher::Event::InitDone) => break,
            _ => {}
        }
    }
    assert_eq!(initial, ["before"]);
    cms.create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();
    loop {
        if let Some(watcher::Event::Apply(o)) = w.try_next().await.unwrap() {
            assert_eq!(o.name_any(), "after");
            break;
        }
    }
}

#[tokio::test]
async fn bookmarks_and_timeouts() {
    let (_dc, client) = start(fast()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let started = Instant::now();
    let mut s = cms
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .boxed();
    let mut bookmarks = 0;
    while let Some(ev) = s.try_next().await.unwrap() {
        if let WatchEvent::Bookmark(b) = ev {
            assert!(
                b.metadata.resource_version.parse::<u64>().unwrap() >= rv.parse::<u64>().unwrap()
            );
            bookmarks += 1;
        }
    }
    assert!(bookmarks >= 2, "{bookmarks} bookmarks");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "timeoutSeconds honoured: {took:?}"
    );
}

#[tokio::test]
async fn injected_errors_are_scoped_seeded_and_typed() {
    let (dc, _) = start(fast()).await;
    let client = no_retry(&dc);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("x")).await.unwrap();
    let rule = |code, verb: &str| ErrorRule {
        verb: Some(verb.into()),
        resource: Some("configmaps".into()),
        code,
        rate: 1.0,
        retry_after_seconds: Some(3),
    };
    dc.faults().set(FaultConfig {
        seed: 7,
        errors: vec![rule(500, "get")],
        latency: vec![],
    });
    assert_eq!(status_code(cms.get("x").await.unwrap_err()), 500);
    assert!(
        cms.list(&ListParams::default()).await.is_ok(),
        "other verbs unaffected"
    );
    dc.faults().set(FaultConfig {
        seed: 7,
        errors: vec![rule(409, "update")],
        latency: vec![],
    });
    let cur = cms.get("x").await.unwrap();
    assert_eq!(
        status_code(
            cms.replace("x", &PostParams::default(), &cur)
                .await
                .unwrap_err()
        ),
        409
    );
    // 429 carries Retry-After.
    dc.faults().set(FaultConfig {
        seed: 7,
        errors: vec![rule(429, "get")],
        latency: vec![],
    });
    let req = http::Request::get("/api/v1/namespaces/default/configmaps/x")
        .body(Vec::new())
        .unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    // Seeded: the same seed fails the same requests.
    let run = |seed| {
        let cms = cms.clone();
        let faults = dc.faults();
        faults.set(FaultConfig {
            seed,
            errors: vec![ErrorRule {
                rate: 0.5,
                ..rule(500, "get")
            }],
            latency: vec![],
        });
        async move {
            let mut v = Vec::new();
            for _ in 0..16 {
                v.push(cms.get("x").await.is_ok());
            }
            v
        }
    };
    let a = run(11).await;
    let b = run(11).await;
    assert_eq!(a, b);
    assert!(a.contains(&true) && a.contains(&false));
    // Latency.
    dc.faults().set(FaultConfig {
        seed: 0,
        errors: vec![],
        latency: vec![LatencyRule {
            verb: Some("get".into()),
            resource: None,
            millis: 300,
        }],
    });
    let t = Instant::now();
    cms.get("x").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    dc.faults().clear();
    assert!(dc.faults().injected() >= 4);
}

#[tokio::test]
async fn dropped_watches_and_outages() {
    let (dc, _) = start(fast()).await;
    let client = no_retry(&dc);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut s = cms
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();
    dc.faults().drop_watches();
    let end = tokio::time::timeout(Duration::from_secs(2), s.try_next())
        .await
        .expect("stream ends promptly");
    assert!(matches!(end, Ok(None)), "{end:?}");
    // Outage: 503 for everything, then back.
    dc.faults()
        .outage(Duration::from_millis(400), OutageMode::Unavailable);
    assert_eq!(
        status_code(cms.list(&ListParams::default()).await.unwrap_err()),
        503
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(cms.list(&ListParams::default()).await.is_ok());
    // Refuse: connections are closed (a transport error, not an API status).
    dc.faults()
        .outage(Duration::from_millis(400), OutageMode::Refuse);
    let fresh = no_retry(&dc);
    let err = Api::<ConfigMap>::namespaced(fresh.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(!matches!(err, kube::Error::Api(_)), "{err:?}");
    let refused = std::net::TcpStream::connect(dc.addr()).map_err(|e| e.kind());
    assert_eq!(refused.err(), Some(std::io::ErrorKind::ConnectionRefused));
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(
        Api::<ConfigMap>::namespaced(fresh, "default")
            .list(&ListParams::default())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn control_endpoint_sets_faults_and_reports_audit() {
    let (dc, _) = start(fast()).await;
    let client = no_retry(&dc);
    let body = json!({"seed": 1, "errors": [{"verb": "list", "resource": "pods", "code": 500, "rate": 1.0}]});
    let req = http::Request::post("/_devcluster/faults")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    client.request_text(req).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    assert_eq!(
        status_code(pods.list(&ListParams::default()).await.unwrap_err()),
        500
    );
    client
        .request_text(
            http::Request::delete("/_devcluster/faults")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(pods.list(&ListParams::default()).await.is_ok());
    client
        .request_text(
            http::Request::post("/_devcluster/outage?seconds=0.3")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        status_code(pods.list(&ListParams::default()).await.unwrap_err()),
        503
    );
    // Requests refused by an outage never reach the apiserver, so they are not audited.
    client
        .request_text(
            http::Request::delete("/_devcluster/outage")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let audit = client
        .request_text(
            http::Request::get("/_devcluster/audit")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&audit).unwrap();
    assert!(
        rows.iter().any(|r| r["resource"] == "pods"
            && r["verb"] == "list"
            && r["count"].as_u64() == Some(2)),
        "{rows:?}"
    );
    let _ = dc;
}

#[tokio::test]
async fn audit_records_verbs_per_user_agent_and_subresource() {
    let (dc, _) = start(fast()).await;
    let client = dc.client_with_user_agent("ingress-failover/0.1.0").unwrap();
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "e"}, "spec": {"replicas": 0,
        "selector": {"matchLabels": {"app": "e"}}, "template": {"metadata": {"labels": {"app": "e"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}))
    .unwrap();
    deps.patch(
        "e",
        &PatchParams::apply("ingress-failover"),
        &Patch::Apply(&d),
    )
    .await
    .unwrap();
    deps.patch_scale(
        "e",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    deps.get_status("e").await.unwrap();
    let mine: Vec<(String, String, String)> = dc
        .audit()
        .into_iter()
        .filter(|e| e.user_agent == "ingress-failover/0.1.0")
        .map(|e| (e.resource, e.subresource, e.verb))
        .collect();
    let want = |r: &str, s: &str, v: &str| (r.to_string(), s.to_string(), v.to_string());
    assert_eq!(
        mine,
        vec![
            want("deployments", "", "patch"),
            want("deployments", "scale", "patch"),
            want("deployments", "status", "get")
        ]
    );
    assert!(
        dc.audit()
            .iter()
            .all(|e| e.group == "apps" || e.user_agent != "ingress-failover/0.1.0")
    );
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "test.devcluster.io",
    version = "v1",
    kind = "Gadget",
    namespaced,
    status = "GadgetStatus",
    scale(
        spec_replicas_path = ".spec.size",
        status_replicas_path = ".status.replicas"
    ),
    printcolumn(name = "Size", type_ = "integer", json_path = ".spec.size"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase")
)]
pub struct GadgetSpec {
    /// Size.
    pub size: i32,
}

/// Status.
#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, Default)]
pub struct GadgetStatus {
    /// Phase.
    pub phase: Option<String>,
    /// Observed size.
    pub replicas: Option<i32>,
}

async fn install_gadgets(client: &Client) -> Api<CustomResourceDefinition> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Gadget::crd())
        .await
        .unwrap();
    crds
}

#[tokio::test]
async fn crds_come_and_go_in_discovery_and_print_their_columns() {
    let (_dc, client) = start(fast()).await;
    let crds = install_gadgets(&client).await;
    let d = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(d.get("test.devcluster.io").is_some());
    let gadgets: Api<Gadget> = Api::namespaced(client.clone(), "default");
    let g: Gadget = serde_json::from_value(json!({"apiVersion": "test.devcluster.io/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"size": 9}})).unwrap();
    gadgets.create(&PostParams::default(), &g).await.unwrap();
    gadgets
        .patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Shiny"}})),
        )
        .await
        .unwrap();
    let req = http::Request::get("/apis/test.devcluster.io/v1/namespaces/default/gadgets")
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let table: serde_json::Value =
        serde_json::from_str(&client.request_text(req).await.unwrap()).unwrap();
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Name", "Size", "Phase", "Age"]);
    assert_eq!(
        table["rows"][0]["cells"].as_array().unwrap()[..3],
        [json!("g"), json!(9), json!("Shiny")]
    );
    // The CRD's scale subresource maps onto .spec.size.
    assert_eq!(
        gadgets.get_scale("g").await.unwrap().spec.unwrap().replicas,
        Some(9)
    );
    gadgets
        .patch_scale(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(gadgets.get("g").await.unwrap().spec.size, 4);
    // Strategic merge is not defined for custom resources.
    let e = gadgets
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"size": 1}})),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(e), 415);
    crds.delete("gadgets.test.devcluster.io", &DeleteParams::default())
        .await
        .unwrap();
    let d = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(d.get("test.devcluster.io").is_none());
    assert_eq!(status_code(gadgets.get("g").await.unwrap_err()), 404);
}

#[tokio::test]
async fn pods_become_ready_after_the_configured_delay() {
    let (_dc, client) = start(DevClusterOptions {
        pod_ready_delay: Duration::from_millis(600),
        ..fast()
    })
    .await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "slow"}, "spec": {"replicas": 2,
        "selector": {"matchLabels": {"app": "slow"}}, "template": {"metadata": {"labels": {"app": "slow"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}))
    .unwrap();
    deps.create(&PostParams::default(), &d).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let listed = pods
        .list(&ListParams::default().labels("app=slow"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 2);
    for p in &listed.items {
        let ip = p.status.as_ref().unwrap().pod_ip.clone().unwrap();
        assert!(ip.starts_with("127.10."), "{ip}");
    }
    assert_eq!(
        deps.get("slow")
            .await
            .unwrap()
            .status
            .unwrap()
            .ready_replicas,
        None
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        deps.get("slow")
            .await
            .unwrap()
            .status
            .unwrap()
            .ready_replicas,
        Some(2)
    );
    // Deleting the Deployment cascades to its Pods.
    deps.delete("slow", &DeleteParams::default()).await.unwrap();
    assert!(
        pods.list(&ListParams::default().labels("app=slow"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn malformed_bodies_get_errors_not_panics() {
    let (dc, client) = start(fast()).await;
    let raw = |method: &str, path: &str, ct: &str, body: &str| {
        http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", ct)
            .body(body.as_bytes().to_vec())
            .unwrap()
    };
    for (method, path, ct, body) in [
        (
            "POST",
            "/api/v1/namespaces/default/services",
            "application/json",
            r#"{"metadata":{"name":"s"},"spec":"oops"}"#,
        ),
        (
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            "application/json",
            r#"{"metadata":"x"}"#,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            "[1,2]",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            "{not json",
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/x",
            "text/plain",
            "{}",
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            "[]",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=abc",
            "application/json",
            "",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20b",
            "application/json",
            "",
        ),
    ] {
        let err = client
            .request_text(raw(method, path, ct, body))
            .await
            .unwrap_err();
        let code = status_code(err);
        assert!((400..500).contains(&code), "{method} {path} {body}: {code}");
    }
    // The plane still works, controller-manager included.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    assert!(pods.list(&ListParams::default()).await.is_ok());
    let _ = dc;
}

#[tokio::test]
async fn namespaces_delete_their_contents_and_system_ones_are_protected() {
    let (dc, client) = start(fast()).await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "tmp"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "tmp");
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    nss.delete("tmp", &DeleteParams::default()).await.unwrap();
    assert_eq!(status_code(cms.get("a").await.unwrap_err()), 404);
    assert_eq!(
        status_code(
            cms.create(&PostParams::default(), &cm("b"))
                .await
                .unwrap_err()
        ),
        404,
        "no namespace, no create"
    );
    assert_eq!(
        status_code(
            nss.delete("default", &DeleteParams::default())
                .await
                .unwrap_err()
        ),
        403
    );
    // The kubeconfig works for other clients.
    let kc = kube::config::Kubeconfig::from_yaml(&dc.kubeconfig_yaml()).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let other: Api<Namespace> = Api::all(Client::try_from(cfg).unwrap());
    assert!(other.get("default").await.is_ok());
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut cmd = std::process::Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_works_against_it() {
    if std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("kubectl not installed; skipping");
        return;
    }
    let (dc, client) = start(fast()).await;
    install_gadgets(&client).await;
    let kc = std::env::temp_dir().join(format!("devcluster-kubeconfig-{}", dc.addr().port()));
    std::fs::write(&kc, dc.kubeconfig_yaml()).unwrap();
    let manifest = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
---
apiVersion: test.devcluster.io/v1
kind: Gadget
metadata: {name: g1}
spec: {size: 5}
"#;
    let kc = kc.as_path();
    let run = |args: &[&str], stdin: Option<&str>| {
        let (ok, out) = kubectl(kc, args, stdin);
        assert!(ok, "kubectl {args:?} failed: {out}");
        out
    };
    let out = tokio::task::block_in_place(|| run(&["apply", "-f", "-"], Some(manifest)));
    assert!(
        out.contains("deployment.apps/web created")
            && out.contains("gadget.test.devcluster.io/g1 created"),
        "{out}"
    );
    let out =
        tokio::task::block_in_place(|| run(&["apply", "--server-side", "-f", "-"], Some(manifest)));
    assert!(out.contains("serverside-applied"), "{out}");
    tokio::task::block_in_place(|| run(&["scale", "deployment/web", "--replicas=2"], None));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = tokio::task::block_in_place(|| run(&["get", "deployments"], None));
    assert!(out.contains("READY") && out.contains("2/2"), "{out}");
    let out = tokio::task::block_in_place(|| run(&["get", "gadgets"], None));
    assert!(
        out.contains("SIZE") && out.lines().any(|l| l.starts_with("g1") && l.contains('5')),
        "{out}"
    );
    tokio::task::block_in_place(|| {
        run(
            &[
                "patch",
                "gadget",
                "g1",
                "--type=merge",
                "-p",
                r#"{"spec":{"size":6}}"#,
            ],
            None,
        )
    });
    let (ok, out) = tokio::task::block_in_place(|| {
        kubectl(
            kc,
            &["apply", "-f", "-"],
            Some(
                "{apiVersion: test.devcluster.io/v1, kind: Gadget, metadata: {name: g2}, spec: {size: 1, colour: red}}",
            ),
        )
    });
    assert!(
        !ok && out.contains("unknown field"),
        "kubectl validates through the server: {out}"
    );
    let out = tokio::task::block_in_place(|| run(&["explain", "gadget.spec"], None));
    assert!(out.contains("size") && out.contains("<integer>"), "{out}");
    let out = tokio::task::block_in_place(|| run(&["describe", "deployment", "web"], None));
    assert!(
        out.contains("Replicas:") && out.contains("2 desired"),
        "{out}"
    );
    let out = tokio::task::block_in_place(|| run(&["delete", "deployment", "web"], None));
    assert!(out.contains("deleted"), "{out}");
    let _ = std::fs::remove_file(kc);
}

#[tokio::test]
async fn hundreds_of_deployments_converge_quickly() {
    let (_dc, client) = start(fast()).await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
    let n = 300;
    let started = Instant::now();
    for i in 0..n {
        let name = format!("app{i}");
        let d: Deployment = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"replicas": 1,
            "selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}))
        .unwrap();
        deps.create(&PostParams::default(), &d).await.unwrap();
        let s = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}})).unwrap();
        svcs.create(&PostParams::default(), &s).await.unwrap();
    }
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
        Api::namespaced(client.clone(), "default");
    loop {
        let ready = slices
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|s| {
                s.endpoints
                    .iter()
                    .any(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            })
            .count();
        if ready == n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {ready}/{n} slices ready after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{n} deployments + services ready in {:?}",
        started.elapsed()
    );
}

/// `ingress-failover devcluster` with a `--listen` address.
fn devcluster_command(listen: &str, extra: &[&str]) -> std::process::Command {
    let kubeconfig = std::env::temp_dir().join(format!(
        "devcluster-listen-{}-{}.kubeconfig",
        std::process::id(),
        extra.len()
    ));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ingress-failover"));
    cmd.arg("devcluster")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--listen")
        .arg(listen)
        .args(extra);
    cmd
}

#[test]
fn the_command_refuses_a_non_loopback_address_unless_told() {
    // Every address but loopback is refused before anything is bound or written.
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:6443"] {
        let mut child = devcluster_command(listen, &[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("devcluster --listen {listen} served instead of refusing");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{listen}: {stderr}");
        assert!(
            stderr.contains(&format!("refusing to listen on {listen}"))
                && stderr.contains("no authentication and no TLS")
                && stderr.contains("--allow-non-loopback"),
            "{listen}: {stderr}"
        );
    }

    // With the flag (and on loopback without it) the plane serves until it is stopped.
    for (listen, extra) in [
        ("0.0.0.0:0", &["--allow-non-loopback"][..]),
        ("127.0.0.1:0", &[][..]),
    ] {
        let mut child = devcluster_command(listen, extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("read");
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            line.starts_with("devcluster listening on http://"),
            "{listen} {extra:?}: {line:?}"
        );
    }
}
