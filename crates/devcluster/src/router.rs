//! URL → what is being asked for.
//!
//! Kubernetes paths are regular enough to parse by hand:
//! `/api/v1[/namespaces/{ns}]/{resource}[/{name}[/{subresource}]]` and the same under
//! `/apis/{group}/{version}`. Whether a resource is namespaced is checked later against the
//! registry, because the path alone is ambiguous (`/api/v1/namespaces/x` is a Namespace).

/// A parsed request path.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// `/version`
    Version,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1`, `/apis/{group}/{version}`
    Resources(String, String),
    /// `/openapi/v3` and `/openapi/v3/{gv path}` (a minimal document, see `openapi.rs`).
    OpenApiV3(String),
    /// `/openapi/v2`, `/swagger...`: deliberately 404 so kubectl falls back.
    OpenApi,
    /// `/healthz`, `/readyz`, `/livez`
    Health,
    /// `/_devcluster/...`: the fault-injection and audit control API.
    Control(String),
    /// A resource request.
    Resource(ResourceRoute),
    /// Anything else.
    Unknown,
}

/// A request for a resource collection, object or subresource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceRoute {
    /// API group (empty for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Namespace from the URL.
    pub namespace: Option<String>,
    /// Plural resource name.
    pub resource: String,
    /// Object name.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`).
    pub subresource: Option<String>,
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let mut rr = ResourceRoute {
        group: group.into(),
        version: version.into(),
        namespace: None,
        resource: String::new(),
        name: None,
        subresource: None,
    };
    let rest = match rest {
        ["namespaces", ns, r, tail @ ..] if !matches!(*r, "status" | "finalize") => {
            rr.namespace = Some(ns.to_string());
            let mut v = vec![*r];
            v.extend_from_slice(tail);
            v
        }
        _ => rest.to_vec(),
    };
    match rest.as_slice() {
        [r] => rr.resource = r.to_string(),
        [r, n] => {
            rr.resource = r.to_string();
            rr.name = Some(n.to_string());
        }
        [r, n, s] => {
            rr.resource = r.to_string();
            rr.name = Some(n.to_string());
            rr.subresource = Some(s.to_string());
        }
        _ => return Route::Unknown,
    }
    Route::Resource(rr)
}

/// Parses a request path (without the query string).
pub fn parse(path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "readyz" | "livez", ..] => Route::Health,
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3(rest.join("/")),
        ["openapi", ..] | ["swagger.json"] | ["swaggerapi", ..] => Route::OpenApi,
        ["_devcluster", rest @ ..] => Route::Control(rest.join("/")),
        ["api"] => Route::CoreVersions,
        ["api", v] => Route::Resources(String::new(), v.to_string()),
        ["api", v, rest @ ..] => resource_route("", v, rest),
        ["apis"] => Route::Groups,
        ["apis", g] => Route::Group(g.to_string()),
        ["apis", g, v] => Route::Resources(g.to_string(), v.to_string()),
        ["apis", g, v, rest @ ..] => resource_route(g, v, rest),
        _ => Route::Unknown,
    }
}

/// The Kubernetes verb of a resource request (what RBAC calls it).
pub fn verb(method: &http::Method, route: &ResourceRoute, watch: bool) -> &'static str {
    let named = route.name.is_some();
    match method.as_str() {
        "GET" if named => "get",
        "GET" if watch => "watch",
        "GET" => "list",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" if named => "delete",
        "DELETE" => "deletecollection",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rr(path: &str) -> ResourceRoute {
        match parse(path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn parses_paths() {
        let r = rr("/apis/apps/v1/namespaces/ns/deployments/web/scale");
        assert_eq!(
            (
                r.group.as_str(),
                r.namespace.as_deref(),
                r.resource.as_str()
            ),
            ("apps", Some("ns"), "deployments")
        );
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref()),
            (Some("web"), Some("scale"))
        );
        let ns = rr("/api/v1/namespaces/ns");
        assert_eq!(
            (ns.resource.as_str(), ns.name.as_deref(), ns.namespace),
            ("namespaces", Some("ns"), None)
        );
        let st = rr("/api/v1/namespaces/ns/status");
        assert_eq!(st.subresource.as_deref(), Some("status"));
        let pods = rr("/api/v1/namespaces/ns/pods");
        assert_eq!((pods.resource.as_str(), pods.name), ("pods", None));
        assert_eq!(rr("/api/v1/pods").namespace, None);
        assert_eq!(
            parse("/apis/apps/v1"),
            Route::Resources("apps".into(), "v1".into())
        );
        assert_eq!(parse("/openapi/v2"), Route::OpenApi);
        assert_eq!(
            parse("/openapi/v3/apis/apps/v1"),
            Route::OpenApiV3("apis/apps/v1".into())
        );
    }
}
