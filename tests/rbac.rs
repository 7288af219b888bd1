//! The chart's RBAC is exactly what the controller uses: a full policy lifecycle runs against
//! the embedded control plane, which records every (resource, verb) the controller's client
//! calls; the recorded set must equal the rules in `charts/ingress-failover/rbac-rules.yaml`.
//! On a real cluster (scripts/real-cluster-suites.sh) the same lifecycle runs with the controller
//! authenticated as the chart's ServiceAccount, and the apiserver's audit log is compared instead.

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::BTreeSet;
use std::time::Duration;

use cluster::*;
use ingress_failover::api::{Phase, condition_types as ct};
use serde::Deserialize;
use serde_json::json;
use testkit::farm::Behavior;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    api_group: String,
    resource: String,
    verbs: Vec<String>,
    /// Granted only with this feature on (`gatewayAPI`): not part of this lifecycle, checked
    /// by tests/controller_gateway.rs.
    #[serde(default)]
    feature: Option<String>,
}

fn chart_rules() -> BTreeSet<(String, String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/ingress-failover/rbac-rules.yaml"
    );
    let text = std::fs::read_to_string(path).expect("rbac-rules.yaml");
    let rules: Vec<Rule> = serde_saphyr::from_str(&text).expect("rbac-rules.yaml parses");
    rules
        .into_iter()
        .filter(|r| r.feature.is_none())
        .flat_map(|r| {
            r.verbs
                .into_iter()
                .map(move |v| (r.api_group.clone(), r.resource.clone(), v))
        })
        .collect()
}

/// Verbs the apiserver checks that a client never sends as such: a server-side apply that
/// creates an object is authorized as `create` as well as `patch`.
fn implied(observed: &BTreeSet<(String, String, String)>) -> BTreeSet<(String, String, String)> {
    observed
        .iter()
        .filter(|(_, _, v)| v == "patch")
        .map(|(g, r, _)| (g.clone(), r.clone(), "create".to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_rbac_equals_the_verbs_the_controller_uses() {
    let mut env = Env::start("rbac").await;
    let b = env.backends(4).await;
    let lb = env.backend_addr();
    env.set(lb, Behavior::Healthy).await;
    for o in [
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx-primary"}, "spec": {"controller": "k8s.io/ingress-nginx-primary"}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx-backup"}, "spec": {"controller": "k8s.io/ingress-nginx-backup"}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
               "spec": {"ingressClassName": "nginx-primary", "rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "web-healthy", "port": {"number": 80}}}}]}}]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web-emergency"},
               "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "e"}},
                        "template": {"metadata": {"labels": {"app": "e"}}, "spec": {"containers": [{"name": "w", "image": pod_image(), "ports": [{"containerPort": 8080}]}]}}}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-emergency"},
               "spec": {"selector": {"app": "e"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
    ] {
        env.apply_json(o).await;
    }
    let _pods = env.serve_pods_of("web-emergency");
    env.apply_json(policy(
        "web",
        &b,
        json!({
            "backends": {"emergency": {"deployment": {"name": "web-emergency", "activeReplicas": 1, "maxReplicas": 2}}},
            "ingress": {"ingresses": ["web"], "primaryClass": "nginx-primary", "backupClass": "nginx-backup", "mode": "HotStandby",
                        "health": {"url": format!("http://{lb}/healthz")}},
        }),
    ))
    .await;
    let mut opts = env.controller_options();
    opts.leader_election = true;
    // Two shards: the shard and membership Leases' calls (a superset of one Lease's: `list`
    // counts the live replicas) are recorded too.
    opts.shards = 2;
    env.controller = Some(env.spawn_controller(opts).await);
    let t = Duration::from_secs(30);
    env.wait_status("web", t, "Normal", |s| s.phase == Phase::Normal)
        .await;

    // A backend fails twice (each action is an Event of its own: creates), the pool drops below
    // the threshold (scale), the LB fails (failover), everything recovers, then deletion.
    for _ in 0..2 {
        env.set(b[0], Behavior::Status(503)).await;
        env.wait_status("web", t, "b0 down", |s| {
            s.primary.as_ref().is_some_and(|p| p.healthy == 3)
        })
        .await;
        env.set(b[0], Behavior::Healthy).await;
        env.wait_status("web", t, "b0 up", |s| {
            s.primary.as_ref().is_some_and(|p| p.healthy == 4)
        })
        .await;
    }
    for a in &b[..3] {
        env.set(*a, Behavior::Refuse).await;
    }
    env.wait_status("web", t, "emergency", |s| is_true(s, ct::EMERGENCY_ACTIVE))
        .await;
    env.set(lb, Behavior::Status(503)).await;
    env.wait_status("web", t, "failover", |s| s.phase == Phase::FailedOver)
        .await;
    for a in &b[..3] {
        env.set(*a, Behavior::Healthy).await;
    }
    env.set(lb, Behavior::Healthy).await;
    env.wait_status("web", t, "normal again", |s| s.phase == Phase::Normal)
        .await;
    env.delete_policy("web", t).await;
    env.controller.take().unwrap().stop().await;

    let Some(cluster) = env.cluster.as_ref() else {
        // A real cluster: the lifecycle above ran with the controller authenticated as the
        // chart's ServiceAccount (scripts/real-cluster-suites.sh); the comparison is made from
        // the apiserver's audit log by real_authorizer_allowed_exactly_the_chart_rules, next.
        return;
    };
    let observed: BTreeSet<(String, String, String)> = cluster
        .audit()
        .into_iter()
        .filter(|e| is_controller_agent(&e.user_agent))
        .map(|e| {
            let resource = if e.subresource.is_empty() {
                e.resource
            } else {
                format!("{}/{}", e.resource, e.subresource)
            };
            (e.group, resource, e.verb)
        })
        .collect();
    let rules = chart_rules();
    let granted_unused: Vec<_> = rules
        .iter()
        .filter(|r| !observed.contains(*r) && !implied(&observed).contains(*r))
        .collect();
    let used_not_granted: Vec<_> = observed.iter().filter(|o| !rules.contains(*o)).collect();
    assert!(
        used_not_granted.is_empty() && granted_unused.is_empty(),
        "chart RBAC differs from what the controller does\n  used but not granted: {used_not_granted:?}\n  granted but unused: {granted_unused:?}\n  observed: {observed:#?}"
    );
}

/// On a real cluster (scripts/real-cluster-suites.sh, after the controller suite ran with the
/// chart's ServiceAccount): per the apiserver's audit log (`REAL_CLUSTER_AUDIT_LOG`), the real
/// authorizer never refused the ServiceAccount (`INGRESS_FAILOVER_RBAC_USER`) anything, and the
/// (group, resource, verb) it allowed are exactly the chart's rules.
#[test]
#[ignore = "needs a real cluster's audit log: run by scripts/real-cluster-suites.sh (.ci/run)"]
fn real_authorizer_allowed_exactly_the_chart_rules() {
    let log = std::env::var("REAL_CLUSTER_AUDIT_LOG").expect("REAL_CLUSTER_AUDIT_LOG");
    let user = std::env::var("INGRESS_FAILOVER_RBAC_USER").expect("INGRESS_FAILOVER_RBAC_USER");
    let text = std::fs::read_to_string(&log).expect("audit log");
    let mut allowed = BTreeSet::new();
    let mut forbidden = BTreeSet::new();
    for line in text.lines() {
        let e: serde_json::Value = serde_json::from_str(line).expect("audit event");
        if e["user"]["username"] != user.as_str() || e["stage"] != "ResponseComplete" {
            continue;
        }
        if e["userAgent"]
            .as_str()
            .is_some_and(|a| a.starts_with("kubectl"))
        {
            continue; // the suite's own check of the token (`kubectl auth whoami`)
        }
        let Some(obj) = e.get("objectRef") else {
            continue; // non-resource URLs (discovery)
        };
        let resource = match obj["subresource"].as_str() {
            Some(sub) => format!("{}/{sub}", obj["resource"].as_str().unwrap_or_default()),
            None => obj["resource"].as_str().unwrap_or_default().to_string(),
        };
        let key = (
            obj["apiGroup"].as_str().unwrap_or_default().to_string(),
            resource,
            e["verb"].as_str().unwrap_or_default().to_string(),
        );
        match e["annotations"]["authorization.k8s.io/decision"].as_str() {
            Some("allow") => allowed.insert(key),
            _ => forbidden.insert(key),
        };
    }
    assert!(
        !allowed.is_empty(),
        "no request of {user} in {log}: did the controller suite run with its token?"
    );
    let rules = chart_rules();
    let granted_unused: Vec<_> = rules
        .iter()
        .filter(|r| !allowed.contains(*r) && !implied(&allowed).contains(*r))
        .collect();
    assert!(
        forbidden.is_empty() && granted_unused.is_empty(),
        "the real authorizer and the chart disagree\n  forbidden: {forbidden:?}\n  granted but unused: {granted_unused:?}\n  allowed: {allowed:#?}"
    );
}
