//! The few defaults the plane applies to built-in types on create (the apiserver applies many
//! more; these are the ones clients visibly rely on).

use super::state::{Ctx, State};
use serde_json::{Value, json};

/// Defaults for Namespaces (phase), Services (clusterIP, type, protocol, targetPort) and
/// Deployments (replicas, strategy, history, deadline, container port protocol).
pub fn builtin_defaults(st: &mut State, ctx: &Ctx, obj: &mut Value) {
    match (ctx.info.group.as_str(), ctx.info.plural.as_str()) {
        ("", "namespaces") => {
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "services") => {
            if obj.pointer("/spec/clusterIP").is_none()
                && obj.pointer("/spec/type").and_then(Value::as_str) != Some("ExternalName")
            {
                let n = st.next_cluster_ip;
                st.next_cluster_ip += 1;
                obj["spec"]["clusterIP"] = json!(format!("10.96.{}.{}", (n >> 8) & 255, n & 255));
            }
            if obj.pointer("/spec/type").is_none() {
                obj["spec"]["type"] = json!("ClusterIP");
            }
            for port in obj
                .pointer_mut("/spec/ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object_mut)
            {
                port.entry("protocol").or_insert_with(|| json!("TCP"));
                let number = port.get("port").cloned().unwrap_or(Value::Null);
                port.entry("targetPort").or_insert(number);
            }
        }
        ("apps", "deployments") if obj.get("spec").is_some_and(Value::is_object) => {
            let spec = &mut obj["spec"];
            for (k, v) in [
                ("replicas", json!(1)),
                ("revisionHistoryLimit", json!(10)),
                ("progressDeadlineSeconds", json!(600)),
                (
                    "strategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
                ),
            ] {
                if spec.get(k).is_none() {
                    spec[k] = v;
                }
            }
            let containers = spec
                .pointer_mut("/template/spec/containers")
                .and_then(Value::as_array_mut);
            for port in containers
                .into_iter()
                .flatten()
                .filter_map(|c| c.get_mut("ports"))
                .filter_map(Value::as_array_mut)
                .flatten()
                .filter_map(Value::as_object_mut)
            {
                port.entry("protocol").or_insert_with(|| json!("TCP"));
            }
        }
        _ => {}
    }
}
