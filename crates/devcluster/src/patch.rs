//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.
//!
//! Strategic merge knows the merge keys of the lists the operator and kubectl touch
//! (containers and env by name, ports by containerPort/port, conditions by type,
//! ownerReferences by uid, finalizers as a set); every other list is replaced atomically, which
//! is also what the apiserver does for lists without a `patchStrategy` (EndpointSlice
//! endpoints, Ingress rules). Server-side apply lives in `apply.rs`.

use super::status::ApiError;
use serde_json::{Map, Value};

/// The PATCH flavours, by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`
    Merge,
    /// `application/json-patch+json`
    Json,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply)
    Apply,
}

impl PatchKind {
    /// Parses a Content-Type header.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let ct = ct.split(';').next().unwrap_or("").trim();
        match ct {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Applies an RFC 7386 merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies an RFC 6902 JSON patch.
pub fn json(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let mut ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    // The apiserver's JSON patch treats a missing path as null in `test` operations (kube-rs's
    // finalizer helper relies on it: `test /metadata/finalizers == null` before the first add).
    ops.0.retain(|op| match op {
        json_patch::PatchOperation::Test(t) => {
            !(t.value.is_null() && target.pointer(t.path.as_str()).is_none())
        }
        _ => true,
    });
    json_patch::patch(target, &ops).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {e}"),
        )
    })
}

/// The merge key of a list field in built-in types, given an example item. `root` says the
/// field is at the top of the object: there, `ports` is EndpointSlice's atomic list.
pub fn merge_key(field: &str, sample: Option<&Value>, root: bool) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "ports" if root => return None,
        "ports" => {
            if sample.is_some_and(|s| s.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Lists of scalars that strategic merge treats as sets.
fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

/// Applies a strategic merge patch.
pub fn strategic(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => merge_maps(t, p, true),
        _ => *target = strip_directives(patch),
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn merge_maps(t: &mut Map<String, Value>, p: &Map<String, Value>, root: bool) {
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        *t = strip_directives(&Value::Object(p.clone()))
            .as_object()
            .cloned()
            .unwrap_or_default();
        return;
    }
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (t.get_mut(field), v.as_array()) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(pm) => match t.get_mut(k) {
                Some(Value::Object(tm)) => merge_maps(tm, pm, false),
                _ => {
                    t.insert(k.clone(), strip_directives(v));
                }
            },
            Value::Array(items) => {
                let sample = items.first().or_else(|| t.get(k).and_then(|l| l.get(0)));
                match (merge_key(k, sample, root), t.get_mut(k)) {
                    (Some(key), Some(Value::Array(list))) => merge_keyed_list(list, items, key),
                    (None, Some(Value::Array(list))) if is_set_list(k) => {
                        let mut patch_items: Vec<Value> = Vec::new();
                        for item in items {
                            if !patch_items.contains(item) {
                                patch_items.push(item.clone());
                            }
                        }
                        let original = std::mem::take(list);
                        let server_only: Vec<Value> = original
                            .iter()
                            .filter(|x| !patch_items.contains(x))
                            .cloned()
                            .collect();
                        *list = merge_sorted(server_only, patch_items, |v| {
                            original.iter().position(|x| x == v)
                        });
                    }
                    _ => {
                        let kept: Vec<Value> = items
                            .iter()
                            .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
                            .map(strip_directives)
                            .collect();
                        t.insert(k.clone(), Value::Array(kept));
                    }
                }
            }
            other => {
                t.insert(k.clone(), other.clone());
            }
        }
    }
}

fn merge_keyed_list(list: &mut Vec<Value>, items: &[Value], key: &str) {
    let original = std::mem::take(list);
    let find = |id: &Value| original.iter().position(|x| x.get(key) == Some(id));
    let mut patched_ids = Vec::new();
    let mut patch_items = Vec::new();
    for item in items {
        let id = item.get(key);
        if let Some(id) = id {
            patched_ids.push(id.clone());
        }
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            continue;
        }
        match id.and_then(find) {
            Some(i) => {
                let mut merged = original[i].clone();
                match (merged.as_object_mut(), item.as_object()) {
                    (Some(t), Some(p)) => merge_maps(t, p, false),
                    _ => merged = strip_directives(item),
                }
                patch_items.push(merged);
            }
            None => patch_items.push(strip_directives(item)),
        }
    }
    let server_only: Vec<Value> = original
        .iter()
        .filter(|x| x.get(key).is_none_or(|id| !patched_ids.contains(id)))
        .cloned()
        .collect();
    *list = merge_sorted(server_only, patch_items, |v| v.get(key).and_then(find));
}

/// The order kube-apiserver gives a merged list (strategicpatch's `normalizeElementOrder` and
/// `mergeSortedSlice`, without `$setElementOrder`): the patch's items in patch order, with the
/// items only on the server inserted before the first patch item that the original list had
/// after them; a patch item new to the list goes before the server-only items still pending.
fn merge_sorted(
    server_only: Vec<Value>,
    patch_items: Vec<Value>,
    original_index: impl Fn(&Value) -> Option<usize>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(server_only.len() + patch_items.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        patch_items.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                matches!((original_index(l), original_index(r)), (Some(li), Some(ri)) if li < ri)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name_and_replaces_other_lists() {
        let mut t = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "b:1"}
        ], "tolerations": [{"key": "x"}]}});
        strategic(
            &mut t,
            &json!({"spec": {"containers": [
            {"name": "a", "image": "a:2", "ports": [{"containerPort": 81}]},
            {"name": "b", "$patch": "delete"},
            {"name": "c", "image": "c:1"}
        ], "tolerations": [{"key": "y"}]}}),
        );
        let c = &t["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 2);
        assert_eq!(c[0]["image"], "a:2");
        assert_eq!(c[0]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(c[1]["name"], "c");
        assert_eq!(t["spec"]["tolerations"], json!([{"key": "y"}]));
    }

    #[test]
    fn strategic_conditions_by_type_finalizers_as_set_and_null_deletes() {
        let mut t = json!({"metadata": {"finalizers": ["a"], "labels": {"x": "1"}},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        strategic(
            &mut t,
            &json!({"metadata": {"finalizers": ["b"], "labels": {"x": null}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "True"}]}}),
        );
        // As kube-apiserver: an item new to the list goes before the server-only ones.
        assert_eq!(t["metadata"]["finalizers"], json!(["b", "a"]));
        assert_eq!(t["metadata"]["labels"], json!({}));
        assert_eq!(t["status"]["conditions"][0]["status"], "True");
        assert_eq!(t["status"]["conditions"].as_array().unwrap().len(), 2);
        strategic(
            &mut t,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(t["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn endpoint_slice_ports_are_atomic_service_ports_are_keyed() {
        let mut slice = json!({"ports": [{"port": 80}], "endpoints": [{"addresses": ["a"]}]});
        strategic(
            &mut slice,
            &json!({"ports": [{"port": 81}], "endpoints": [{"addresses": ["b"]}]}),
        );
        assert_eq!(slice["ports"], json!([{"port": 81}]));
        assert_eq!(slice["endpoints"], json!([{"addresses": ["b"]}]));
        let mut svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}]}});
        strategic(
            &mut svc,
            &json!({"spec": {"ports": [{"port": 443, "name": "https"}]}}),
        );
        assert_eq!(svc["spec"]["ports"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn merge_and_json_patch() {
        let mut t = json!({"spec": {"replicas": 1, "list": [1, 2]}});
        merge(&mut t, &json!({"spec": {"list": [3]}}));
        assert_eq!(t["spec"]["list"], json!([3]));
        json(
            &mut t,
            &json!([{"op": "replace", "path": "/spec/replicas", "value": 5}]),
        )
        .unwrap();
        assert_eq!(t["spec"]["replicas"], 5);
        let err = json(
            &mut t,
            &json!([{"op": "test", "path": "/spec/replicas", "value": 1}]),
        );
        assert_eq!(err.unwrap_err().code, 422);
    }
}
