//! A minimal OpenAPI v3 so `kubectl apply` works without `--validate=false`.
//!
//! kubectl first asks whether the server validates fields itself: it looks in
//! `/openapi/v3/{group-version}` for the PATCH operation of the kind and checks that it accepts
//! the `fieldValidation` query parameter. If so, it leaves validation to the server and never
//! needs schemas. So the documents here list, for every served kind, just that operation, plus
//! the schemas of custom resources (from their CRDs) so `kubectl explain` can describe them.
//! Built-in kinds have no schema here (`kubectl explain deployment` prints no fields), and
//! kubectl computes client-side-apply patches from its compiled-in types (or as JSON merge
//! patches for CRs).
//! The server accepts `fieldValidation` and ignores it (unknown fields are kept for built-ins
//! and pruned for custom resources).

use super::resources::Registry;
use serde_json::{Map, Value, json};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: the index of group-version documents.
pub fn index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for r in reg.all() {
        for v in &r.versions {
            let p = gv_path(&r.group, v);
            // Like the apiserver, the URL carries a hash of the document, so clients that
            // cache by URL notice when a CRD changes.
            let doc = group_version(reg, &p).unwrap_or_default().to_string();
            let hash = doc.bytes().fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
            });
            let url = format!("/openapi/v3/{p}?hash={hash:016X}");
            paths.insert(p, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/{api/v1 | apis/group/version}`: PATCH operations with `fieldValidation`.
pub fn group_version(reg: &Registry, path: &str) -> Option<Value> {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in reg.all() {
        for v in r.versions.iter().filter(|v| gv_path(&r.group, v) == path) {
            if let Some(schema) = r.schemas.get(v) {
                // A CRD's own schema, so `kubectl explain` can describe custom resources.
                let mut schema = schema.clone();
                schema["x-kubernetes-group-version-kind"] =
                    json!([{"group": r.group, "version": v, "kind": r.kind}]);
                let reversed: Vec<&str> = r.group.split('.').rev().collect();
                schemas.insert(format!("{}.{v}.{}", reversed.join("."), r.kind), schema);
            }
            let scope = if r.namespaced {
                "namespaces/{namespace}/"
            } else {
                ""
            };
            let url = format!("/{path}/{scope}{}/{{name}}", r.plural);
            let op = json!({
                "x-kubernetes-group-version-kind": {"group": r.group, "version": v, "kind": r.kind},
                "x-kubernetes-action": "patch",
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                ],
                "responses": {"200": {"description": "OK"}},
            });
            paths.insert(url, json!({"patch": op}));
        }
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (devcluster)", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
