//! The control API under `/_devcluster/` (for the `devcluster` command, where tests in another
//! process cannot call [`super::DevCluster::faults`]):
//!
//! | method | path | effect |
//! |---|---|---|
//! | GET | `/_devcluster/faults` | current [`FaultConfig`] |
//! | POST/PUT | `/_devcluster/faults` | replace it (JSON body) |
//! | DELETE | `/_devcluster/faults` | clear rules and any outage |
//! | POST | `/_devcluster/outage?seconds=N[&mode=refuse]` | outage window (503, or refused connections) |
//! | DELETE | `/_devcluster/outage` | end the outage |
//! | POST | `/_devcluster/drop-watches` | close every open watch stream |
//! | POST | `/_devcluster/compact` | drop the watch event log (older versions get 410) |
//! | GET | `/_devcluster/audit` | `[{userAgent, group, resource, subresource, verb, count}]` |

use super::faults::{FaultConfig, OutageMode};
use super::response::{error_response, json_response};
use super::shared::Shared;
use super::status::ApiError;
use axum::response::Response;
use http::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// Serves one control request.
pub fn handle(
    shared: &Shared,
    method: &Method,
    path: &str,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Response {
    let ok = || json_response(200, &json!({"ok": true}));
    match (method.as_str(), path) {
        ("GET", "faults") => json_response(
            200,
            &serde_json::to_value(shared.faults.get()).unwrap_or_default(),
        ),
        ("POST" | "PUT", "faults") => match serde_json::from_slice::<FaultConfig>(body) {
            Ok(cfg) => {
                shared.faults.set(cfg);
                ok()
            }
            Err(e) => error_response(&ApiError::bad_request(format!("invalid fault config: {e}"))),
        },
        ("DELETE", "faults") => {
            shared.faults.clear();
            ok()
        }
        ("POST", "outage") => {
            let secs: f64 = q
                .get("seconds")
                .and_then(|s| s.parse().ok())
                .unwrap_or(10.0);
            let mode = if q.get("mode").is_some_and(|m| m == "refuse") {
                OutageMode::Refuse
            } else {
                OutageMode::Unavailable
            };
            shared
                .faults
                .outage(Duration::from_secs_f64(secs.max(0.0)), mode);
            ok()
        }
        ("DELETE", "outage") => {
            shared.faults.end_outage();
            ok()
        }
        ("POST", "drop-watches") => {
            shared.faults.drop_watches();
            ok()
        }
        ("POST", "compact") => {
            shared.lock().store.compact();
            ok()
        }
        ("GET", "audit") => {
            let rows: Vec<Value> = shared
                .audit
                .counts()
                .into_iter()
                .map(|(e, n)| {
                    let mut v = serde_json::to_value(e).unwrap_or_default();
                    v["count"] = json!(n);
                    v
                })
                .collect();
            json_response(200, &Value::Array(rows))
        }
        _ => error_response(&ApiError::no_route()),
    }
}
