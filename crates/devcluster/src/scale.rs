//! The `/scale` subresource: an `autoscaling/v1 Scale` view of the replica fields.
//!
//! Reads and writes go through the main object, so the resourceVersion of a Scale is the
//! object's and a stale Scale update gets the same 409 as a stale object update.

use super::api;
use super::meta::meta_str;
use super::patch::{self, PatchKind};
use super::read;
use super::resources::ScalePaths;
use super::selectors::LabelSelector;
use super::state::{Ctx, Managed, State, Target};
use super::status::{ApiError, ApiResult};
use super::table::json_path;
use serde_json::{Value, json};

fn paths(ctx: &Ctx) -> ApiResult<&ScalePaths> {
    ctx.info.scale.as_ref().ok_or_else(ApiError::no_route)
}

/// Sets a `.a.b.c` path, creating objects on the way (replacing non-objects).
fn set_path(obj: &mut Value, path: &str, value: Value) {
    let mut cur = obj;
    let segments: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    for seg in parents {
        if !cur.get(*seg).is_some_and(Value::is_object) {
            cur[*seg] = json!({});
        }
        cur = &mut cur[*seg];
    }
    cur[*last] = value;
}

/// Builds the Scale of `obj`.
pub fn scale_of(paths: &ScalePaths, obj: &Value) -> Value {
    let selector = match &paths.label_selector {
        Some(p) => json_path(obj, p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        None => obj
            .pointer("/spec/selector")
            .map(|s| LabelSelector::from_label_selector(s).to_query())
            .unwrap_or_default(),
    };
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    // autoscaling/v1 ScaleSpec.replicas is `omitempty` in kube-apiserver: 0 is not sent.
    let spec = match json_path(obj, &paths.spec_replicas).and_then(Value::as_i64) {
        None | Some(0) => json!({}),
        Some(n) => json!({ "replicas": n }),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
        },
        "spec": spec,
        "status": {"replicas": json_path(obj, &paths.status_replicas).cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

/// GET .../scale
pub fn get(st: &State, ctx: &Ctx, name: &str) -> ApiResult<Value> {
    let obj = read::get(st, ctx, name)?;
    Ok(scale_of(paths(ctx)?, &obj))
}

/// PUT .../scale
pub fn update(st: &mut State, ctx: &Ctx, name: &str, scale: &Value) -> ApiResult<Value> {
    let p = paths(ctx)?.clone();
    let old = read::get(st, ctx, name)?;
    // A missing spec.replicas is 0, as Go's int32 in kube-apiserver decodes it.
    let replicas = scale.pointer("/spec/replicas").unwrap_or(&json!(0)).clone();
    let Some(replicas) = replicas.as_i64() else {
        return Err(ApiError::invalid(
            "Scale",
            ("autoscaling", "scale", name),
            vec![super::status::FieldCause::new(
                "FieldValueRequired",
                "spec.replicas",
                "",
            )],
        ));
    };
    if replicas < 0 {
        return Err(ApiError::invalid(
            "Scale",
            ("autoscaling", "scale", name),
            vec![super::status::FieldCause::new(
                "FieldValueInvalid",
                "spec.replicas",
                format!("{replicas}: must be greater than or equal to 0"),
            )],
        ));
    }
    let mut new = old.clone();
    set_path(&mut new, &p.spec_replicas, json!(replicas));
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        match meta_str(scale, "resourceVersion") {
            Some(rv) if !rv.is_empty() => m.insert("resourceVersion".into(), json!(rv)),
            _ => m.remove("resourceVersion"),
        };
    }
    // kube-apiserver (v1.35) records no managedFields entry for a write through /scale: the
    // writer stays anonymous (`kubectl scale` cannot be named from managedFields).
    let stored = api::commit(st, ctx, &old, new, Target::Main, Managed::Preserve)?;
    Ok(scale_of(&p, &stored))
}

/// PATCH .../scale (merge, JSON or strategic; apply is treated as merge).
pub fn patch(
    st: &mut State,
    ctx: &Ctx,
    name: &str,
    kind: PatchKind,
    body: &Value,
) -> ApiResult<Value> {
    let mut scale = get(st, ctx, name)?;
    if let Some(m) = scale.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    match kind {
        PatchKind::Json => patch::json(&mut scale, body)?,
        PatchKind::Strategic => patch::strategic(&mut scale, body),
        PatchKind::Merge | PatchKind::Apply => patch::merge(&mut scale, body),
    }
    update(st, ctx, name, &scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_path_creates_nested_objects() {
        let mut o = json!({"spec": {"a": 1}});
        set_path(&mut o, ".spec.scaling.replicas", json!(3));
        set_path(&mut o, ".spec.a", json!(2));
        assert_eq!(o, json!({"spec": {"a": 2, "scaling": {"replicas": 3}}}));
    }
}
