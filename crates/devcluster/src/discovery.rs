//! Discovery documents: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`.
//!
//! Both the legacy documents and aggregated discovery (`as=APIGroupDiscoveryList`, v2 and
//! v2beta1, which kubectl and kube's `Discovery::run_aggregated` ask for) are served.

use super::resources::{Registry, ResourceInfo};
use serde_json::{Value, json};

/// `/version`
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-devcluster", "gitCommit": "devcluster",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "n/a",
        "compiler": "rustc", "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

/// `/api`
pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

/// `/apis`
pub fn groups(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .iter()
        .map(|(g, vs)| group_doc(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`
pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    let groups = reg.groups();
    let vs = groups.get(name)?;
    let mut doc = group_doc(name, vs);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn resource_docs(r: &ResourceInfo) -> Vec<Value> {
    let mut docs = vec![json!({
        "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
        "verbs": VERBS, "shortNames": r.short_names, "categories": r.categories,
    })];
    if r.status {
        docs.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
    }
    if r.scale.is_some() {
        docs.push(json!({"name": format!("{}/scale", r.plural), "singularName": "", "namespaced": r.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
    }
    docs
}

/// `/api/v1`, `/apis/{group}/{version}`
pub fn resources(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let list: Vec<Value> = reg
        .all()
        .filter(|r| r.group == group && r.serves(version))
        .flat_map(resource_docs)
        .collect();
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

/// Which aggregated-discovery version the Accept header asks for, if any.
pub fn aggregated_version(accept: &str) -> Option<&'static str> {
    let wanted = accept
        .split(',')
        .find(|m| m.contains("as=APIGroupDiscoveryList"))?;
    if wanted.contains("v=v2beta1") {
        Some("v2beta1")
    } else {
        Some("v2")
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn resource_discovery(r: &ResourceInfo, version: &str) -> Value {
    let mut subresources = Vec::new();
    if r.status {
        subresources.push(json!({"subresource": "status", "responseKind": gvk(&r.group, version, &r.kind), "verbs": ["get", "patch", "update"]}));
    }
    if r.scale.is_some() {
        subresources.push(json!({"subresource": "scale", "responseKind": gvk("autoscaling", "v1", "Scale"), "verbs": ["get", "patch", "update"]}));
    }
    json!({
        "resource": r.plural,
        "responseKind": gvk(&r.group, version, &r.kind),
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": VERBS,
        "shortNames": r.short_names,
        "categories": r.categories,
        "subresources": subresources,
    })
}

/// Aggregated discovery (`apidiscovery.k8s.io` `APIGroupDiscoveryList`): of the core group for
/// `/api`, of all other groups for `/apis` — one request instead of one per group-version.
pub fn aggregated(reg: &Registry, core: bool, api_version: &str) -> Value {
    let mut groups: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".to_string()])]
    } else {
        reg.groups().into_iter().collect()
    };
    groups.retain(|(g, _)| core == g.is_empty());
    let items: Vec<Value> = groups
        .iter()
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = reg
                        .all()
                        .filter(|r| &r.group == g && r.serves(v))
                        .map(|r| resource_discovery(r, v))
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{api_version}"), "metadata": {}, "items": items})
}
