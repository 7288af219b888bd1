//! The Gateway API tier end to end (issue 14), through the Kubernetes API only, with the
//! vendored Gateway API v1.6.3 standard-channel CRDs installed: the embedded plane by default
//! (which admits them as kube-apiserver does: tests/golden/gateway-api-admission.txt), the real
//! control plane when `INGRESS_FAILOVER_KUBECONFIG` is set (scripts/real-cluster-suites.sh).
//! The test writes the Gateways' status itself, as a Gateway controller would.

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::BTreeSet;
use std::time::Duration;

use cluster::*;
use ingress_failover::api::{Phase, condition_types as ct};
use ingress_failover::controller::dns::DNSEndpoint;
use ingress_failover::controller::gateway::HttpRoute;
use kube::api::{Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use testkit::farm::Behavior;

const T: Duration = Duration::from_secs(20);
/// The field manager of this test when it plays the user and the Gateway controller.
const USER: &str = "gitops-tool";

/// The Gateway API CRDs the tier reads and writes, vendored under tests/data/crds.
const CRDS: &[&str] = &[
    "gateway.networking.k8s.io_gatewayclasses.yaml",
    "gateway.networking.k8s.io_gateways.yaml",
    "gateway.networking.k8s.io_httproutes.yaml",
];

async fn install_gateway_api(client: &Client) {
    for file in CRDS {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/crds/gateway-api")
            .join(file);
        testkit::crds::install(client, &path, "controller-gateway-test").await;
    }
}

fn resource(kind: &str) -> ApiResource {
    ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: kind.into(),
        plural: format!("{}s", kind.to_lowercase()),
    }
}

fn routes(env: &Env) -> Api<HttpRoute> {
    Api::namespaced(env.client.clone(), &env.ns)
}

fn gateways(env: &Env) -> Api<DynamicObject> {
    Api::namespaced_with(env.client.clone(), &env.ns, &resource("Gateway"))
}

/// The chart's rules of the gatewayAPI feature, as (resource, verb).
fn gateway_rules() -> BTreeSet<(String, String)> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Rule {
        resource: String,
        verbs: Vec<String>,
        #[serde(default)]
        feature: Option<String>,
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/ingress-failover/rbac-rules.yaml"
    );
    let rules: Vec<Rule> = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    rules
        .into_iter()
        .filter(|r| r.feature.as_deref() == Some("gatewayAPI"))
        .flat_map(|r| r.verbs.into_iter().map(move |v| (r.resource.clone(), v)))
        .collect()
}

/// Applies an object as the user (their GitOps tool), not as the test harness.
async fn apply_as_user(env: &Env, api: &Api<DynamicObject>, obj: Value) {
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(
        &name,
        &PatchParams::apply(USER).force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {name} in {}: {e}", env.ns));
}

fn template(hostnames: Value, parent_refs: Option<Value>) -> Value {
    let mut t = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "hostnames": hostnames,
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [{"name": "web-healthy", "port": 80}]
            }]
        }
    });
    if let Some(p) = parent_refs {
        t["spec"]["parentRefs"] = p;
    }
    t
}

/// Writes a Gateway's status as its controller would: Accepted and Programmed for the current
/// generation, and its one listener Programmed (or not).
async fn set_gateway_status(env: &Env, name: &str, programmed: bool) {
    let api = gateways(env);
    let gw = api.get(name).await.expect("Gateway exists");
    let generation = gw.metadata.generation.unwrap_or(1);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let cond = |type_: &str, ok: bool, reason: &str| {
        json!({"type": type_, "status": if ok { "True" } else { "False" }, "reason": reason,
               "message": "", "observedGeneration": generation, "lastTransitionTime": now})
    };
    let status = json!({"status": {
        "conditions": [
            cond("Accepted", true, "Accepted"),
            cond("Programmed", programmed, if programmed { "Programmed" } else { "AddressNotAssigned" }),
        ],
        "listeners": [{
            "name": "http", "attachedRoutes": 0,
            "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
            "conditions": [cond("Programmed", programmed, if programmed { "Programmed" } else { "Invalid" })]
        }]
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("Gateway {name} status: {e}"));
}

/// A namespace with the Gateway API, two serving Gateways, the template `web` (as the user),
/// a load balancer health URL and the policy `web`; the controller runs with `--gateway-api`.
async fn gateway_env(
    name: &str,
    template_parents: Option<Value>,
    extra: Value,
) -> (Env, std::net::SocketAddr) {
    let (env, lb, _) = gateway_env_with(name, template_parents, extra, 2).await;
    (env, lb)
}

/// [`gateway_env`] with `primaries` primary backends, which it returns too.
async fn gateway_env_with(
    name: &str,
    template_parents: Option<Value>,
    extra: Value,
    primaries: usize,
) -> (Env, std::net::SocketAddr, Vec<std::net::SocketAddr>) {
    let mut env = Env::start(name).await;
    install_gateway_api(&env.client).await;
    let b = env.backends(primaries).await;
    let lb = env.backend_addr();
    env.set(lb, Behavior::Healthy).await;
    for gw in ["gw-primary", "gw-backup"] {
        apply_as_user(
            &env,
            &gateways(&env),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                   "metadata": {"name": gw},
                   "spec": {"gatewayClassName": gw, "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}}),
        )
        .await;
        set_gateway_status(&env, gw, true).await;
    }
    let route_api: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), &env.ns, &resource("HTTPRoute"));
    apply_as_user(
        &env,
        &route_api,
        template(json!(["shop.example"]), template_parents),
    )
    .await;
    let mut spec = json!({"gateway": {"routes": ["web"], "selector": {"matchLabels": {"failover": "shop"}},
        "primaryGateway": {"name": "gw-primary"},
        "backupGateway": {"name": "gw-backup"}}});
    // With spec.ingress the health URL is the ingress tier's (one tier, one decision).
    if extra.get("ingress").is_some() {
        for o in ingress_objects("nginx-primary") {
            env.apply_json(o).await;
        }
    } else {
        spec["gateway"]["health"] = json!({"url": format!("http://{lb}/healthz")});
    }
    // `LB_ADDR` in `extra` stands for the load balancer's health address.
    let extra: Value =
        serde_json::from_str(&extra.to_string().replace("LB_ADDR", &lb.to_string())).unwrap();
    merge(&mut spec, extra);
    if spec.get("dns").is_some() {
        install_dnsendpoint_crd(&env.client).await;
    }
    env.apply_json(policy("web", &b, spec.clone())).await;
    let mut opts = env.controller_options();
    opts.gateway_api = true;
    opts.dns_endpoints = spec.get("dns").is_some();
    env.controller = Some(env.spawn_controller(opts).await);
    (env, lb, b)
}

/// ExternalDNS's DNSEndpoint CRD, vendored from the pinned module.
async fn install_dnsendpoint_crd(client: &Client) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/crds/external-dns/dnsendpoints.externaldns.k8s.io.yaml");
    testkit::crds::install(client, &path, "controller-gateway-test").await;
}

/// The A record targets of the policy's DNSEndpoint (Atomic mode: one record set).
async fn dns_targets(env: &Env) -> Option<Vec<String>> {
    let e = Api::<DNSEndpoint>::namespaced(env.client.clone(), &env.ns)
        .get_opt("web-dns")
        .await
        .ok()
        .flatten()?;
    let set = e.spec.endpoints.first()?;
    Some(set.targets.clone())
}

/// The copy's parentRefs, as Gateway names.
async fn parents(env: &Env) -> Option<Vec<String>> {
    let copy = routes(env).get_opt("web-failover").await.ok().flatten()?;
    Some(
        copy.spec
            .parent_refs
            .iter()
            .map(|p| p.name.clone())
            .collect(),
    )
}

async fn wait_parents(env: &Env, want: &[&str]) {
    let got = eventually(T, || async {
        parents(env)
            .await
            .filter(|p| p.iter().map(String::as_str).eq(want.iter().copied()))
    })
    .await;
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_failover_gradual_failback_and_template_edits() {
    let (env, lb) = gateway_env(
        "gwroute",
        None,
        json!({"recovery": {"failbackSteps": [50], "stepSeconds": 2}}),
    )
    .await;
    env.wait_status("web", T, "Normal", |s| s.phase == Phase::Normal)
        .await;

    // The copy: the template's hostnames and rules, attached to the primary Gateway, owned by
    // the policy.
    wait_parents(&env, &["gw-primary"]).await;
    let copy = routes(&env).get("web-failover").await.unwrap();
    let tpl = routes(&env).get("web").await.unwrap();
    assert_eq!(copy.spec.rules, tpl.spec.rules);
    assert_eq!(copy.spec.hostnames, Some(json!(["shop.example"])));
    let owners = copy.metadata.owner_references.clone().unwrap_or_default();
    assert!(
        owners
            .iter()
            .any(|o| o.kind == "FailoverPolicy" && o.name == "web"),
        "{owners:?}"
    );
    let p = &copy.spec.parent_refs[0];
    assert_eq!(p.namespace.as_deref(), Some(env.ns.as_str()));

    // Steady state: nothing is written, even when the template changes in a way the copy
    // does not carry (a label: its policy is reconciled and compares).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = env.controller.as_ref().unwrap().writes();
    let route_api: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), &env.ns, &resource("HTTPRoute"));
    let mut relabelled = template(json!(["shop.example"]), None);
    relabelled["metadata"]["labels"]["team"] = json!("shop");
    apply_as_user(&env, &route_api, relabelled).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = env.controller.as_ref().unwrap().writes();
    assert_eq!(after, before, "writes in steady state");

    // The primary tier's health URL dies: the copy moves to the backup Gateway.
    env.set(lb, Behavior::Status(503)).await;
    env.wait_status("web", T, "failed over", |s| {
        s.phase == Phase::FailedOver && is_true(s, ct::FAILOVER_ACTIVE)
    })
    .await;
    wait_parents(&env, &["gw-backup"]).await;

    // It heals: the 50 % step attaches the copy to both Gateways, then to the primary alone.
    env.set(lb, Behavior::Healthy).await;
    env.wait_status("web", T, "50% step", |s| {
        s.primary_weight_percent == Some(50)
    })
    .await;
    wait_parents(&env, &["gw-primary", "gw-backup"]).await;
    env.wait_status("web", T, "failback complete", |s| {
        s.primary_weight_percent == Some(100) && s.phase == Phase::Normal
    })
    .await;
    wait_parents(&env, &["gw-primary"]).await;

    // The user edits the template: the copy follows.
    let route_api: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), &env.ns, &resource("HTTPRoute"));
    apply_as_user(
        &env,
        &route_api,
        template(json!(["shop.example", "www.shop.example"]), None),
    )
    .await;
    eventually(T, || async {
        let c = routes(&env).get("web-failover").await.ok()?;
        (c.spec.hostnames == Some(json!(["shop.example", "www.shop.example"]))).then_some(())
    })
    .await;

    // The operator never wrote the template: every field of it is the user's alone.
    let tpl = routes(&env).get("web").await.unwrap();
    let managers: Vec<String> = tpl
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, [USER], "template managers");
    assert!(tpl.spec.parent_refs.is_empty());
    // The copy is the operator's alone.
    let copy = routes(&env).get("web-failover").await.unwrap();
    let managers: Vec<String> = copy
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, ["ingress-failover"], "copy managers");

    // A second template, selected by label, is copied; deleted, its copy goes with it.
    let mut api_tpl = template(json!(["api.shop.example"]), None);
    api_tpl["metadata"]["name"] = json!("api");
    api_tpl["metadata"]["labels"] = json!({"failover": "shop"});
    apply_as_user(&env, &route_api, api_tpl).await;
    eventually(T, || async {
        routes(&env).get_opt("api-failover").await.ok().flatten()
    })
    .await;
    route_api.delete("api", &Default::default()).await.unwrap();
    eventually(T, || async {
        routes(&env)
            .get_opt("api-failover")
            .await
            .ok()
            .map(|r| r.is_none())
            .filter(|gone| *gone)
    })
    .await;

    // The chart grants exactly what the Gateway tier used (rbac-rules.yaml, feature
    // gatewayAPI; a server-side apply that creates is authorized as create too).
    if let Some(cluster) = &env.cluster {
        let used: BTreeSet<(String, String)> = cluster
            .audit()
            .into_iter()
            .filter(|e| {
                is_controller_agent(&e.user_agent) && e.group == "gateway.networking.k8s.io"
            })
            .flat_map(|e| {
                let implied =
                    (e.verb == "patch").then(|| (e.resource.clone(), "create".to_string()));
                std::iter::once((e.resource.clone(), e.verb.clone())).chain(implied)
            })
            .collect();
        assert_eq!(used, gateway_rules());
    }

    // Deletion (Restore): the copy is handed back on the primary Gateway, not deleted.
    env.delete_policy("web", T).await;
    let copy = routes(&env).get("web-failover").await.unwrap();
    assert!(
        copy.metadata
            .owner_references
            .iter()
            .flatten()
            .all(|o| o.kind != "FailoverPolicy"),
        "handed back without the ownerReference"
    );
    assert!(!copy.labels().contains_key("ingressfailover.io/policy"));
    assert_eq!(
        copy.spec
            .parent_refs
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["gw-primary"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_records_follow_the_gateway_tier_to_the_addresses_in_gateway_status() {
    let (env, lb) = gateway_env(
        "gw-dns",
        None,
        json!({"dns": {"hostnames": ["shop.example"], "ttlSeconds": 4}}),
    )
    .await;
    // The Gateway controllers publish where each data plane answers (TEST-NET addresses: data
    // only, never contacted).
    for (gw, addr) in [("gw-primary", "192.0.2.10"), ("gw-backup", "192.0.2.20")] {
        gateways(&env)
            .patch_status(
                gw,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"status": {"addresses": [{"type": "IPAddress", "value": addr}]}}),
                ),
            )
            .await
            .unwrap();
    }
    let on = |want: &'static str| {
        let env = &env;
        async move {
            eventually(T, || async {
                dns_targets(env)
                    .await
                    .filter(|t| t.iter().map(String::as_str).eq([want]))
            })
            .await
        }
    };
    on("192.0.2.10").await;
    env.set(lb, Behavior::Status(503)).await;
    // The records move to the backup; the primary side stays attached one TTL (the drain),
    // then the copy leaves it.
    on("192.0.2.20").await;
    assert_eq!(
        parents(&env).await.unwrap(),
        ["gw-primary", "gw-backup"],
        "the tier the records left keeps serving through the TTL"
    );
    wait_parents(&env, &["gw-backup"]).await;
    env.set(lb, Behavior::Healthy).await;
    on("192.0.2.10").await;
    assert_eq!(
        parents(&env).await.unwrap(),
        ["gw-primary", "gw-backup"],
        "the backup keeps serving through the TTL after the failback"
    );
    wait_parents(&env, &["gw-primary"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_not_programmed_fails_the_tier_over() {
    let (env, _lb) = gateway_env("gwstatus", None, json!({})).await;
    env.wait_status("web", T, "Normal", |s| s.phase == Phase::Normal)
        .await;
    wait_parents(&env, &["gw-primary"]).await;
    set_gateway_status(&env, "gw-primary", false).await;
    let s = env
        .wait_status("web", T, "failed over", |s| s.phase == Phase::FailedOver)
        .await;
    let down = s
        .history
        .iter()
        .find(|h| h.action == "LoadBalancerDown")
        .expect("LoadBalancerDown in history");
    assert!(
        down.reason.contains("Gateway is not serving") && down.reason.contains("Programmed"),
        "{}",
        down.reason
    );
    wait_parents(&env, &["gw-backup"]).await;
    // Programmed again: rise, then the hold-down, then back.
    set_gateway_status(&env, "gw-primary", true).await;
    env.wait_status("web", T, "back on the primary", |s| {
        s.phase == Phase::Normal
    })
    .await;
    wait_parents(&env, &["gw-primary"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_with_parent_refs_is_refused_and_not_copied() {
    let (env, _lb) =
        gateway_env("gwrefuse", Some(json!([{"name": "gw-primary"}])), json!({})).await;
    let s = env
        .wait_status("web", T, "Ready=False naming the template", |s| {
            condition(s, ct::READY).is_some_and(|c| {
                c.status == "False" && c.message.contains("has parentRefs: remove them")
            })
        })
        .await;
    assert!(
        condition(&s, ct::READY).unwrap().message.contains("web"),
        "{:?}",
        condition(&s, ct::READY)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        parents(&env).await.is_none(),
        "no copy of a refused template"
    );
    // Without its parentRefs, the template is copied.
    let route_api: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), &env.ns, &resource("HTTPRoute"));
    apply_as_user(&env, &route_api, template(json!(["shop.example"]), None)).await;
    wait_parents(&env, &["gw-primary"]).await;
    env.wait_status("web", T, "Ready", |s| is_true(s, ct::READY))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_gateway_api_a_gateway_policy_says_how_to_enable_it() {
    let mut env = Env::start("gwoff").await;
    let b = env.backends(1).await;
    env.apply_json(policy(
        "web",
        &b,
        json!({"gateway": {"routes": ["web"], "primaryGateway": {"name": "a"}, "backupGateway": {"name": "b"}}}),
    ))
    .await;
    env.start_controller().await;
    env.wait_status("web", T, "Ready=False saying --gateway-api", |s| {
        condition(s, ct::READY)
            .is_some_and(|c| c.status == "False" && c.message.contains("--gateway-api"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_policy_naming_the_same_template_is_a_conflict() {
    let (env, _lb) = gateway_env("gwclaim", None, json!({})).await;
    wait_parents(&env, &["gw-primary"]).await;
    let b = env.backends(1).await;
    env.apply_json(policy(
        "web2",
        &b,
        json!({"gateway": {"routes": ["web"],
            "primaryGateway": {"name": "gw-backup"}, "backupGateway": {"name": "gw-primary"}}}),
    ))
    .await;
    let s = env
        .wait_status("web2", T, "Ready=False Conflict", |s| {
            condition(s, ct::READY).is_some_and(|c| c.status == "False" && c.reason == "Conflict")
        })
        .await;
    let msg = &condition(&s, ct::READY).unwrap().message;
    assert!(msg.contains("HTTPRoute") && msg.contains("/web"), "{msg}");
    // The copy stays the first policy's, on its primary Gateway.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let copy = routes(&env).get("web-failover").await.unwrap();
    assert_eq!(
        copy.labels()
            .get("ingressfailover.io/policy")
            .map(String::as_str),
        Some("web")
    );
    assert_eq!(parents(&env).await.unwrap(), ["gw-primary"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tier_decision_moves_the_ingresses_and_the_routes() {
    let (env, lb) = gateway_env(
        "gwboth",
        None,
        json!({"ingress": {"ingresses": ["web"], "primaryClass": "nginx-primary",
            "backupClass": "nginx-backup", "health": {"url": "http://LB_ADDR/healthz"}}}),
    )
    .await;
    env.wait_status("web", T, "Normal", |s| s.phase == Phase::Normal)
        .await;
    wait_parents(&env, &["gw-primary"]).await;
    assert_eq!(
        env.ingress_class("web").await.as_deref(),
        Some("nginx-primary")
    );
    env.set(lb, Behavior::Status(503)).await;
    let s = env
        .wait_status("web", T, "failed over, in effect", |s| {
            s.phase == Phase::FailedOver && is_true(s, ct::IN_EFFECT)
        })
        .await;
    assert_eq!(s.active_class.as_deref(), Some("nginx-backup"));
    assert_eq!(
        env.ingress_class("web").await.as_deref(),
        Some("nginx-backup")
    );
    wait_parents(&env, &["gw-backup"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_with_orphan_leaves_the_copy_where_it_is_without_the_owner_reference() {
    let (env, lb) = gateway_env("gworphan", None, json!({"deletionPolicy": "Orphan"})).await;
    wait_parents(&env, &["gw-primary"]).await;
    env.set(lb, Behavior::Status(503)).await;
    wait_parents(&env, &["gw-backup"]).await;
    env.delete_policy("web", T).await;
    // Left on the backup Gateway, and not garbage-collected with the policy.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let copy = routes(&env)
        .get("web-failover")
        .await
        .expect("the copy survives");
    assert!(
        copy.metadata
            .owner_references
            .iter()
            .flatten()
            .all(|o| o.kind != "FailoverPolicy")
    );
    assert_eq!(parents(&env).await.unwrap(), ["gw-backup"]);
}

/// The copy's backendRefs of its first rule, as (Service, weight).
async fn copy_backends(env: &Env) -> Option<Vec<(String, i64)>> {
    copy_backends_in(&env.client, &env.ns).await
}

async fn copy_backends_in(client: &Client, ns: &str) -> Option<Vec<(String, i64)>> {
    let copy = Api::<HttpRoute>::namespaced(client.clone(), ns)
        .get_opt("web-failover")
        .await
        .ok()
        .flatten()?;
    let rules = copy.spec.rules?;
    Some(
        rules[0]["backendRefs"]
            .as_array()?
            .iter()
            .map(|b| {
                (
                    b["name"].as_str().unwrap_or_default().to_string(),
                    b["weight"].as_i64().unwrap_or(1),
                )
            })
            .collect(),
    )
}

/// One sample of what a Gateway would act on: the emergency backendRef's weight in the copy
/// (0 when absent) and how many endpoints the emergency Service publishes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at: Duration,
    weight: i64,
    published: usize,
    /// `status.emergency.weightPercent`: the engine's ramp.
    percent: Option<u32>,
}

/// A Gateway-tier policy with weighted emergency capacity (`backendWeights` merged from
/// `extra`), four primaries published, the emergency Deployment and its pods served; returns
/// the env, the primaries and the pod server's handle (keep it).
async fn weighted_env(
    name: &str,
    extra: Value,
) -> (Env, Vec<std::net::SocketAddr>, tokio::task::JoinHandle<()>) {
    let mut spec = json!({"backends": {"emergency": {"deployment": {"name": "web-emergency", "activeReplicas": 2, "maxReplicas": 2}}},
                          "gateway": {"backendWeights": {}}});
    merge(&mut spec, extra);
    let (env, _lb, b) = gateway_env_with(name, None, spec, 4).await;
    for o in emergency_objects() {
        env.apply_json(o).await;
    }
    let pods = env.serve_pods_of("web-emergency");
    env.wait_published("web-healthy", T, "primaries published", |p| p.len() == 4)
        .await;
    (env, b, pods)
}

/// Emergency capacity as a weighted backendRef (issue 14): while engaged, the copy routes to
/// `web-healthy` at 100 per published primary and to `web-healthy-emergency` at 50 per
/// published emergency pod; a release ramps that to 50 %, then 0 % (the ref leaves the copy)
/// while the pods stay published one more step; then they leave and the cooldown scales the
/// Deployment down. Sampled every 25 ms throughout: no moment routes a weight to an emergency
/// Service with nothing published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_capacity_joins_as_a_weighted_backend_and_ramps_down_on_release() {
    let (env, b, _pods) = weighted_env(
        "gwweights",
        json!({"gateway": {"backendWeights": {"primary": 100, "emergency": 50, "rampDownSteps": [50], "rampDownStepSeconds": 3}},
               "recovery": {"emergencyCooldownSeconds": 2}}),
    )
    .await;
    // Normal times: the copy is the template (one ref, its default weight).
    let got = eventually(T, || async {
        copy_backends(&env)
            .await
            .filter(|r| r == &[("web-healthy".to_string(), 1)])
    })
    .await;
    assert_eq!(got.len(), 1);

    let started = std::time::Instant::now();
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Sample>::new()));
    let sampler = {
        let (samples, client, ns) = (samples.clone(), env.client.clone(), env.ns.clone());
        let selector = "kubernetes.io/service-name=web-healthy-emergency,endpointslice.kubernetes.io/managed-by=ingress-failover.ingressfailover.io";
        tokio::spawn(async move {
            loop {
                let weight = copy_backends_in(&client, &ns)
                    .await
                    .unwrap_or_default()
                    .iter()
                    .find(|(n, _)| n == "web-healthy-emergency")
                    .map_or(0, |r| r.1);
                let published = testkit::pods::slice_addresses(&client, &ns, selector)
                    .await
                    .len();
                let percent =
                    Api::<ingress_failover::api::FailoverPolicy>::namespaced(client.clone(), &ns)
                        .get_opt("web")
                        .await
                        .ok()
                        .flatten()
                        .and_then(|p| p.status?.emergency?.weight_percent);
                samples.lock().unwrap().push(Sample {
                    at: started.elapsed(),
                    weight,
                    published,
                    percent,
                });
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };

    for a in &b[..3] {
        env.set(*a, Behavior::Status(500)).await;
    }
    // Engaged: the pods are published apart, and weighted in.
    let engaged = eventually(T, || async {
        copy_backends(&env).await.filter(|r| {
            r.iter()
                .any(|(n, w)| n == "web-healthy-emergency" && *w == 100)
        })
    })
    .await;
    let primary = engaged.iter().find(|(n, _)| n == "web-healthy").unwrap().1;
    let primaries = env.published("web-healthy").await;
    assert_eq!(primary, 100 * primaries.len() as i64, "{engaged:?}");
    let emergency = env.published("web-healthy-emergency").await;
    assert_eq!(emergency.len(), 2);
    assert!(
        emergency.is_disjoint(&primaries),
        "emergency pods only in their own Service"
    );
    let s = env.status("web").await.unwrap();
    assert_eq!(s.emergency.as_ref().unwrap().weight_percent, Some(100));

    // Release: 50 % for a step, then 0 % with the pods still published, then they leave.
    for a in &b[..3] {
        env.set(*a, Behavior::Healthy).await;
    }
    eventually(T, || async {
        copy_backends(&env).await.filter(|r| {
            r.iter()
                .any(|(n, w)| n == "web-healthy-emergency" && *w == 50)
        })
    })
    .await;
    eventually(Duration::from_secs(30), || async {
        (env.deployment_replicas("web-emergency").await == Some(0)).then_some(())
    })
    .await;
    sampler.abort();
    let samples = samples.lock().unwrap().clone();
    let unsafe_moment = samples.iter().find(|s| s.weight > 0 && s.published == 0);
    assert!(
        unsafe_moment.is_none(),
        "a weight routed to an emergency Service with nothing published: {unsafe_moment:?}"
    );
    // The ramp as status shows it: every fall is one step (100 → 50 → 0), never a cut (a load
    // spike may fail a primary check and engage again: a rise, allowed).
    let percents: Vec<u32> = samples
        .iter()
        .filter_map(|s| s.percent)
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] != w[1])
        .map(|w| w[1])
        .collect();
    assert!(percents.ends_with(&[100, 50, 0]), "{percents:?}");
    for w in percents.windows(2) {
        assert!(
            w[1] > w[0] || w == [100, 50] || w == [50, 0],
            "the weight fell from {}% to {}%: {percents:?}",
            w[0],
            w[1]
        );
    }
    // The last 0 % step: the pods stay published through it (3 s), with no weight, then leave.
    let out = samples
        .iter()
        .rposition(|s| s.weight > 0)
        .expect("weighted at some point");
    let zero: Vec<&Sample> = samples[out + 1..]
        .iter()
        .take_while(|s| s.published > 0)
        .collect();
    let held = zero.last().map(|l| l.at - zero[0].at).unwrap_or_default();
    assert!(
        held >= Duration::from_secs(2),
        "the pods stay published through the 0 % step (held {held:?})"
    );
    let s = env.status("web").await.unwrap();
    let history: Vec<&str> = s.history.iter().map(|h| h.action.as_str()).collect();
    assert!(
        history.ends_with(&[
            "EmergencyRelease",
            "EmergencyRampDown",
            "EmergencyRampDown",
            "EmergencyScaleDown"
        ]) || history
            .windows(2)
            .any(|w| w == ["EmergencyRampDown", "EmergencyRampDown"]),
        "{history:?}"
    );
}

/// Deleted mid-emergency (Restore): the copy is handed back with the template's rules, not
/// routing to the emergency Service, which goes with the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_mid_emergency_hands_the_copy_back_without_the_emergency_backend() {
    let (env, b, _pods) = weighted_env("gwweightsdel", json!({})).await;
    for a in &b[..3] {
        env.set(*a, Behavior::Status(500)).await;
    }
    eventually(T, || async {
        copy_backends(&env)
            .await
            .filter(|r| r.iter().any(|(n, _)| n == "web-healthy-emergency"))
    })
    .await;
    env.delete_policy("web", T).await;
    let back = copy_backends(&env).await.expect("the copy is handed back");
    assert_eq!(back, [("web-healthy".to_string(), 1)]);
}

/// `backendWeights` removed mid-emergency: the emergency endpoints return to the managed Service
/// first, the copies to the template's refs, and only then is the emergency Service emptied
/// (never a copy routing to a Service with its endpoints gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_backend_weights_mid_emergency_moves_the_pods_back_before_emptying_their_service()
{
    let (env, b, _pods) = weighted_env("gwweightsoff", json!({})).await;
    for a in &b[..3] {
        env.set(*a, Behavior::Status(500)).await;
    }
    let pods = env
        .wait_published("web-healthy-emergency", T, "emergency pods apart", |p| {
            p.len() == 2
        })
        .await;
    Api::<ingress_failover::api::FailoverPolicy>::namespaced(env.client.clone(), &env.ns)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"gateway": {"backendWeights": null}}})),
        )
        .await
        .expect("edit the policy");
    env.wait_published("web-healthy", T, "emergency pods back in", |p| {
        pods.is_subset(p)
    })
    .await;
    env.wait_published("web-healthy-emergency", T, "emptied", |p| p.is_empty())
        .await;
    assert_eq!(
        copy_backends(&env).await.unwrap(),
        [("web-healthy".to_string(), 1)]
    );
}
