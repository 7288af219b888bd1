//! HTTP glue: request → audit → faults → route → verb handler → JSON (or Table, or a watch
//! stream). Everything stateful lives in [`Shared`].

use super::api;
use super::audit::{AuditEntry, AuditWrite};
use super::control;
use super::delete;
use super::discovery;
use super::faults::OutageMode;
use super::openapi;
use super::patch::PatchKind;
use super::read;
use super::response::{error_response, json_response};
use super::router::{self, ResourceRoute, Route};
use super::scale;
use super::selectors::{FieldSelector, LabelSelector};
use super::shared::Shared;
use super::state::{Ctx, ListOptions, Target};
use super::status::{ApiError, ApiResult};
use super::table::{self, Render};
use super::watch::{self, WatchParams};
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The axum router serving everything.
pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(shared)
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> &str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn handle(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(form_urlencoded_pairs)
        .unwrap_or_default();
    let route = router::parse(parts.uri.path());
    if let Route::Control(path) = &route {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return control::handle(&shared, &parts.method, path, &query, &bytes);
    }
    if let Some(mode) = shared.faults.outage_mode() {
        let mut r = error_response(&ApiError {
            retry_after: Some(1),
            ..ApiError::new(503, "ServiceUnavailable", "devcluster: injected API outage")
        });
        if mode == OutageMode::Refuse {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return r;
    }
    let result = match route {
        Route::Version => Ok(json_response(200, &discovery::version())),
        Route::Health => Ok(Response::new(Body::from("ok"))),
        Route::CoreVersions | Route::Groups
            if discovery::aggregated_version(header_str(&parts.headers, header::ACCEPT))
                .is_some() =>
        {
            let v = discovery::aggregated_version(header_str(&parts.headers, header::ACCEPT))
                .unwrap_or("v2");
            let doc =
                discovery::aggregated(&shared.lock().registry, route == Route::CoreVersions, v);
            let mut r = json_response(200, &doc);
            let ct =
                format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList");
            if let Ok(ct) = HeaderValue::from_str(&ct) {
                r.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            Ok(r)
        }
        Route::CoreVersions => Ok(json_response(200, &discovery::core_versions())),
        Route::Groups => Ok(json_response(
            200,
            &discovery::groups(&shared.lock().registry),
        )),
        Route::Group(g) => discovery::group(&shared.lock().registry, &g)
            .map(|d| json_response(200, &d))
            .ok_or_else(ApiError::no_route),
        Route::Resources(g, v) => discovery::resources(&shared.lock().registry, &g, &v)
            .map(|d| json_response(200, &d))
            .ok_or_else(ApiError::no_route),
        Route::OpenApiV3(p) if p.is_empty() => {
            Ok(json_response(200, &openapi::index(&shared.lock().registry)))
        }
        Route::OpenApiV3(p) => openapi::group_version(&shared.lock().registry, &p)
            .map(|d| json_response(200, &d))
            .ok_or_else(ApiError::no_route),
        Route::Resource(_) if is_protobuf(&parts.headers) => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "the embedded control plane speaks JSON only; protobuf request bodies are not supported",
        )),
        Route::Resource(rr) => {
            let verb = router::verb(&parts.method, &rr, false);
            let write = matches!(
                verb,
                "create" | "update" | "patch" | "delete" | "deletecollection"
            )
            .then(|| AuditWrite {
                at: std::time::Instant::now(),
                user_agent: header_str(&parts.headers, header::USER_AGENT).to_string(),
                resource: rr.resource.clone(),
                subresource: rr.subresource.clone().unwrap_or_default(),
                namespace: rr.namespace.clone().unwrap_or_default(),
                name: rr.name.clone().unwrap_or_default(),
                verb: verb.to_string(),
                code: 0,
            });
            let r = resource(
                shared.clone(),
                &parts.method,
                &parts.headers,
                &query,
                rr,
                body,
            )
            .await;
            if let Some(mut w) = write {
                w.at = std::time::Instant::now();
                w.code = match &r {
                    Ok(resp) => resp.status().as_u16(),
                    Err(e) => e.code,
                };
                shared.audit.record_write(w);
            }
            r
        }
        Route::OpenApi | Route::Unknown | Route::Control(_) => Err(ApiError::no_route()),
    };
    result.unwrap_or_else(|e| error_response(&e))
}

fn form_urlencoded_pairs(q: &str) -> HashMap<String, String> {
    axum::extract::Query::<HashMap<String, String>>::try_from_uri(
        &format!("/?{q}").parse().unwrap_or_default(),
    )
    .map(|x| x.0)
    .unwrap_or_default()
}

/// A protobuf request body (kubectl sends them for built-in kinds). Answering 415 makes
/// client-go retry the request as JSON, which is all this plane decodes.
fn is_protobuf(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("protobuf"))
}

fn parse_body(bytes: &[u8]) -> ApiResult<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).or_else(|_| {
        let text = std::str::from_utf8(bytes).map_err(|e| ApiError::bad_request(e.to_string()))?;
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("cannot decode body: {e}")))
    })
}

fn list_options(q: &HashMap<String, String>) -> ApiResult<ListOptions> {
    Ok(ListOptions {
        labels: LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?,
        fields: FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))?,
        limit: q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0),
        continue_token: q.get("continue").filter(|c| !c.is_empty()).cloned(),
    })
}

fn field_manager(q: &HashMap<String, String>, user_agent: &str) -> String {
    q.get("fieldManager")
        .filter(|m| !m.is_empty())
        .cloned()
        .unwrap_or_else(|| match user_agent.split('/').next() {
            Some(ua) if !ua.is_empty() => ua.to_string(),
            _ => "unknown".into(),
        })
}

async fn resource(
    shared: Arc<Shared>,
    method: &Method,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    rr: ResourceRoute,
    body: Body,
) -> ApiResult<Response> {
    let watching = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = router::verb(method, &rr, watching);
    let user_agent = header_str(headers, header::USER_AGENT).to_string();
    let sub = rr.subresource.clone().unwrap_or_default();
    shared.audit.record(AuditEntry {
        user_agent: user_agent.clone(),
        group: rr.group.clone(),
        resource: rr.resource.clone(),
        subresource: sub.clone(),
        verb: verb.into(),
    });
    let label = if sub.is_empty() {
        rr.resource.clone()
    } else {
        format!("{}/{sub}", rr.resource)
    };
    let decision = shared.faults.decide(verb, &label);
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    if let Some(e) = decision.error {
        return Err(e);
    }
    let bytes = body
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?
        .to_bytes();
    if let Some(answer) = super::authn::handle(&shared, method, &rr, &bytes) {
        return answer;
    }
    let info = shared
        .lock()
        .registry
        .lookup(&rr.group, &rr.version, &rr.resource)
        .cloned()
        .ok_or_else(ApiError::no_route)?;
    if (!info.namespaced && rr.namespace.is_some())
        || (info.namespaced && rr.namespace.is_none() && !matches!(verb, "list" | "watch"))
    {
        return Err(ApiError::no_route());
    }
    match sub.as_str() {
        "" => {}
        "status" if info.status => {}
        "scale" if info.scale.is_some() => {}
        _ => return Err(ApiError::no_route()),
    }
    let mut ctx = Ctx::new(
        info,
        &rr.version,
        rr.namespace.as_deref(),
        &field_manager(q, &user_agent),
    );
    ctx.dry_run = q.get("dryRun").is_some_and(|d| d == "All");
    ctx.force = q.get("force").is_some_and(|f| f == "true");
    ctx.strict = q.get("fieldValidation").is_some_and(|f| f == "Strict");
    let accept = header_str(headers, header::ACCEPT);
    let include = q
        .get("includeObject")
        .cloned()
        .unwrap_or_else(|| "Metadata".into());
    let render = Render::from_accept(accept, &include);
    let name = rr.name.clone().unwrap_or_default();
    let target = if sub == "status" {
        Target::Status
    } else {
        Target::Main
    };

    if verb == "watch" {
        let params = WatchParams {
            resource_version: match q.get("resourceVersion").filter(|rv| !rv.is_empty()) {
                None => None,
                Some(rv) => Some(rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {rv}"))
                })?),
            },
            bookmarks: q.get("allowWatchBookmarks").is_some_and(|b| b == "true"),
            send_initial_events: q.get("sendInitialEvents").is_some_and(|b| b == "true"),
            timeout: Duration::from_secs(
                q.get("timeoutSeconds")
                    .and_then(|t| t.parse().ok())
                    .filter(|t| *t > 0)
                    .unwrap_or(1800),
            ),
            opts: list_options(q)?,
            render: render.clone(),
        };
        let stream = watch::start(shared.clone(), ctx, params);
        let mut r = Response::new(Body::from_stream(stream));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(r);
    }

    let mut st = shared.lock();
    let (code, out) = match (verb, sub.as_str()) {
        ("get", "scale") => (200, scale::get(&st, &ctx, &name)?),
        ("get", _) => {
            let obj = read::get(&st, &ctx, &name)?;
            let out = match &render {
                Render::Table(include) => {
                    let rv = obj["metadata"]["resourceVersion"].clone();
                    table::table(
                        &ctx.info,
                        &[obj],
                        json!({"resourceVersion": rv}),
                        include,
                        true,
                    )
                }
                Render::Metadata => table::partial(&obj),
                Render::Object => obj,
            };
            (200, out)
        }
        ("list", _) => {
            let (items, meta) = read::list(&st, &ctx, &list_options(q)?)?;
            let out = match &render {
                Render::Table(include) => table::table(&ctx.info, &items, meta, include, true),
                Render::Metadata => {
                    let items: Vec<Value> = items.iter().map(table::partial).collect();
                    json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items})
                }
                Render::Object => {
                    let kind = format!("{}List", ctx.info.kind);
                    json!({"kind": kind, "apiVersion": ctx.info.api_version(&ctx.version), "metadata": meta, "items": items})
                }
            };
            (200, out)
        }
        ("create", "") => (201, api::create(&mut st, &ctx, parse_body(&bytes)?)?),
        ("update", "scale") => (
            200,
            scale::update(&mut st, &ctx, &name, &parse_body(&bytes)?)?,
        ),
        ("update", _) => (
            200,
            api::update(&mut st, &ctx, &name, parse_body(&bytes)?, target)?,
        ),
        ("patch", _) => {
            let ct = header_str(headers, header::CONTENT_TYPE);
            let kind = PatchKind::from_content_type(ct).ok_or_else(|| {
                ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct})"))
            })?;
            if kind == PatchKind::Apply && q.get("fieldManager").is_none_or(|m| m.is_empty()) {
                return Err(ApiError::bad_request("PATCH /apply requires fieldManager"));
            }
            let body = parse_body(&bytes)?;
            if sub == "scale" {
                (200, scale::patch(&mut st, &ctx, &name, kind, &body)?)
            } else {
                api::patch(&mut st, &ctx, &name, kind, &body, target)?
            }
        }
        ("delete", "") => (
            200,
            delete::delete(&mut st, &ctx, &name, &delete_options(&bytes, q)?)?,
        ),
        ("deletecollection", "") => (
            200,
            delete::delete_collection(
                &mut st,
                &ctx,
                &list_options(q)?,
                &delete_options(&bytes, q)?,
            )?,
        ),
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "{verb} is not supported on {}",
                label
            )));
        }
    };
    Ok(json_response(code, &out))
}

fn delete_options(bytes: &[u8], q: &HashMap<String, String>) -> ApiResult<Value> {
    let mut opts = match parse_body(bytes)? {
        Value::Null => json!({}),
        v @ Value::Object(_) => v,
        _ => return Err(ApiError::bad_request("DeleteOptions must be a JSON object")),
    };
    if let Some(p) = q.get("propagationPolicy") {
        opts["propagationPolicy"] = json!(p);
    }
    Ok(opts)
}
