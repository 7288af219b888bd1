//! Just enough authentication and authorization for the operator's `--metrics-secure` to be
//! tested through the API, as against a real cluster:
//!
//! - `POST .../serviceaccounts/{name}/token` (TokenRequest) issues an opaque token for an existing
//!   ServiceAccount;
//! - `POST authentication.k8s.io/v1 tokenreviews` authenticates such a token as
//!   `system:serviceaccount:{ns}:{name}` (groups `system:serviceaccounts`,
//!   `system:serviceaccounts:{ns}`, `system:authenticated`); any other token is not authenticated;
//! - `POST authorization.k8s.io/v1 subjectaccessreviews` allows a non-resource URL and verb when a
//!   ClusterRoleBinding binds the user (User, Group or ServiceAccount subject) to a ClusterRole
//!   whose rules list the URL (exact, `*`, or a `prefix/*`) and the verb (or `*`).
//!
//! The plane's own requests are still never authenticated or authorized, and a SubjectAccessReview
//! of a resource (not a non-resource URL) is answered "not allowed" with a reason saying so: see
//! docs/devcluster.md.

use axum::http::Method;
use axum::response::Response;
use serde_json::{Value, json};

use super::response::json_response;
use super::router::ResourceRoute;
use super::shared::Shared;
use super::status::{ApiError, ApiResult};
use super::store::ObjKey;

const RBAC: &str = "rbac.authorization.k8s.io";

/// Answers the requests above; `None` for every other request.
pub fn handle(
    shared: &Shared,
    method: &Method,
    rr: &ResourceRoute,
    body: &[u8],
) -> Option<ApiResult<Response>> {
    if method != Method::POST {
        return None;
    }
    let parse = || -> ApiResult<Value> {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))
    };
    match (
        rr.group.as_str(),
        rr.resource.as_str(),
        rr.subresource.as_deref(),
    ) {
        ("", "serviceaccounts", Some("token")) => Some(parse().and_then(|req| {
            token_request(
                shared,
                rr.namespace.as_deref().unwrap_or_default(),
                rr.name.as_deref().unwrap_or_default(),
                req,
            )
        })),
        ("authentication.k8s.io", "tokenreviews", None) if rr.name.is_none() => {
            Some(parse().map(|req| token_review(shared, req)))
        }
        ("authorization.k8s.io", "subjectaccessreviews", None) if rr.name.is_none() => {
            Some(parse().map(|req| access_review(shared, req)))
        }
        _ => None,
    }
}

fn token_request(shared: &Shared, ns: &str, name: &str, mut req: Value) -> ApiResult<Response> {
    let mut st = shared.lock();
    let sa = st
        .store
        .get(&ObjKey::new("", "serviceaccounts", ns, name))
        .ok_or_else(|| ApiError::not_found(("", "serviceaccounts", name)))?;
    let uid = sa["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let token = format!("devcluster-sa.{:032x}", st.rng.u128(..));
    st.tokens
        .insert(token.clone(), (ns.to_string(), name.to_string(), uid));
    let expires = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(1))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    req["metadata"] = json!({"name": name, "namespace": ns});
    req["status"] = json!({"token": token, "expirationTimestamp": expires.to_string()});
    Ok(json_response(201, &req))
}

fn token_review(shared: &Shared, mut req: Value) -> Response {
    let token = req["spec"]["token"].as_str().unwrap_or_default();
    let status = match shared.lock().tokens.get(token) {
        Some((ns, name, uid)) => json!({
            "authenticated": true,
            "user": {
                "username": format!("system:serviceaccount:{ns}:{name}"),
                "uid": uid,
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
            }
        }),
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    req["status"] = status;
    json_response(201, &req)
}

fn access_review(shared: &Shared, mut req: Value) -> Response {
    let spec = &req["spec"];
    let user = spec["user"].as_str().unwrap_or_default();
    let groups: Vec<&str> = spec["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let status = match spec.get("nonResourceAttributes") {
        Some(attrs) => {
            let path = attrs["path"].as_str().unwrap_or_default();
            let verb = attrs["verb"].as_str().unwrap_or_default();
            match binding_allowing(shared, user, &groups, path, verb) {
                Some(binding) => json!({
                    "allowed": true,
                    "reason": format!("RBAC: allowed by ClusterRoleBinding \"{binding}\"")
                }),
                None => json!({"allowed": false}),
            }
        }
        None => json!({
            "allowed": false,
            "reason": "the embedded control plane evaluates SubjectAccessReviews of non-resource URLs only"
        }),
    };
    req["status"] = status;
    json_response(201, &req)
}

/// The name of a ClusterRoleBinding granting `verb` on the non-resource URL `path` to the user.
fn binding_allowing(
    shared: &Shared,
    user: &str,
    groups: &[&str],
    path: &str,
    verb: &str,
) -> Option<String> {
    let st = shared.lock();
    let bindings: Vec<Value> = st
        .store
        .iter()
        .filter(|(k, _)| k.group == RBAC && k.plural == "clusterrolebindings")
        .map(|(_, v)| v.clone())
        .collect();
    bindings.into_iter().find_map(|b| {
        let subject_matches = b["subjects"].as_array().into_iter().flatten().any(|s| {
            let name = s["name"].as_str().unwrap_or_default();
            match s["kind"].as_str() {
                Some("User") => name == user,
                Some("Group") => groups.contains(&name),
                Some("ServiceAccount") => {
                    let ns = s["namespace"].as_str().unwrap_or_default();
                    user == format!("system:serviceaccount:{ns}:{name}")
                }
                _ => false,
            }
        });
        let role_ref = &b["roleRef"];
        if !subject_matches || role_ref["kind"] != "ClusterRole" {
            return None;
        }
        let role = st.store.get(&ObjKey::new(
            RBAC,
            "clusterroles",
            "",
            role_ref["name"].as_str().unwrap_or_default(),
        ))?;
        let allows = role["rules"].as_array().into_iter().flatten().any(|r| {
            let listed = |field: &str, want: &str, prefix_ok: bool| {
                r[field].as_array().into_iter().flatten().any(|v| {
                    let v = v.as_str().unwrap_or_default();
                    v == "*"
                        || v == want
                        || (prefix_ok && v.strip_suffix('*').is_some_and(|p| want.starts_with(p)))
                })
            };
            listed("nonResourceURLs", path, true) && listed("verbs", verb, false)
        });
        allows.then(|| {
            b["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
    })
}
