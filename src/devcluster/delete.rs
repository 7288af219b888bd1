//! DELETE and garbage collection: finalizers and deletionTimestamp, preconditions, background
//! and orphan propagation through ownerReferences, namespace contents.

use super::api::{Ctx, ListOptions, State, list, not_found, present};
use super::crd;
use super::meta::{self, finalizers, meta_mut, meta_str};
use super::status::{ApiError, ApiResult};
use super::store::ObjKey;
use serde_json::{Value, json};
use std::collections::HashSet;

/// `propagationPolicy` of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents are deleted after the owner (the default here, also for Foreground).
    Background,
    /// Dependents lose their ownerReference and stay.
    Orphan,
}

/// DELETE one object. With finalizers it only gets a deletionTimestamp.
pub fn delete(st: &mut State, ctx: &Ctx, name: &str, options: &Value) -> ApiResult<Value> {
    let key = ctx.key(name);
    let obj = st
        .store
        .get(&key)
        .cloned()
        .ok_or_else(|| not_found(ctx, name))?;
    let subject = (ctx.info.group.as_str(), ctx.info.plural.as_str(), name);
    if let Some(uid) = options
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        && Some(uid) != meta_str(&obj, "uid")
    {
        return Err(ApiError::conflict(
            subject,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(&obj, "uid").unwrap_or("")
            ),
        ));
    }
    if let Some(rv) = options
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        && Some(rv) != meta_str(&obj, "resourceVersion")
    {
        return Err(ApiError::stale(subject));
    }
    let propagation = match options.get("propagationPolicy").and_then(Value::as_str) {
        Some("Orphan") => Propagation::Orphan,
        _ => Propagation::Background,
    };
    if ctx.info.plural == "namespaces" && matches!(name, "default" | "kube-system" | "kube-public")
    {
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"),
        ));
    }
    if ctx.dry_run {
        return Ok(present(ctx, obj));
    }
    if !finalizers(&obj).is_empty() {
        if meta_str(&obj, "deletionTimestamp").is_some() {
            return Ok(present(ctx, obj));
        }
        let mut marked = obj.clone();
        let m = meta_mut(&mut marked);
        m.insert("deletionTimestamp".into(), json!(meta::now()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        return Ok(present(ctx, st.store.put(key, marked)));
    }
    let deleted = st.store.delete(&key).unwrap_or(obj);
    if ctx.info.plural == "namespaces" && ctx.info.group.is_empty() {
        delete_namespace_contents(st, name);
    }
    if ctx.info.plural == "customresourcedefinitions" {
        crd::removed(st, &deleted);
    }
    collect_garbage(st, &deleted, propagation);
    Ok(present(ctx, deleted))
}

/// DELETE on a collection: deletes every selected object.
pub fn delete_collection(
    st: &mut State,
    ctx: &Ctx,
    opts: &ListOptions,
    options: &Value,
) -> ApiResult<Value> {
    let (items, meta) = list(
        st,
        ctx,
        &ListOptions {
            limit: 0,
            continue_token: None,
            ..opts.clone()
        },
    )?;
    let mut deleted = Vec::new();
    for item in items {
        let name = meta_str(&item, "name").unwrap_or("").to_string();
        let mut c = ctx.clone();
        c.namespace = meta_str(&item, "namespace").map(String::from);
        deleted.push(delete(st, &c, &name, options)?);
    }
    Ok(
        json!({"kind": format!("{}List", ctx.info.kind), "apiVersion": ctx.api_version(), "metadata": meta, "items": deleted}),
    )
}

/// Namespace deletion removes everything in it at once (finalizers of contents are not waited for).
fn delete_namespace_contents(st: &mut State, ns: &str) {
    let keys: Vec<ObjKey> = st
        .store
        .iter()
        .filter(|(k, _)| k.namespace == ns)
        .map(|(k, _)| k.clone())
        .collect();
    for k in keys {
        st.store.delete(&k);
    }
}

/// Background garbage collection after `owner` is gone: dependents whose every owner is gone
/// are deleted (recursively, finalizers respected); with Orphan they just lose the reference.
pub fn collect_garbage(st: &mut State, owner: &Value, propagation: Propagation) {
    let Some(uid) = meta_str(owner, "uid").map(String::from) else {
        return;
    };
    let live_uids: HashSet<String> = st
        .store
        .iter()
        .filter_map(|(_, o)| meta_str(o, "uid").map(String::from))
        .collect();
    let dependents: Vec<(ObjKey, Value)> = st
        .store
        .iter()
        .filter(|(_, o)| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == json!(uid)))
        })
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    for (key, dep) in dependents {
        let refs = dep
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let remaining: Vec<Value> = refs
            .into_iter()
            .filter(|r| r["uid"] != json!(uid))
            .collect();
        let others_alive = remaining
            .iter()
            .any(|r| r["uid"].as_str().is_some_and(|u| live_uids.contains(u)));
        if propagation == Propagation::Orphan || others_alive {
            let mut updated = dep.clone();
            meta_mut(&mut updated).insert("ownerReferences".into(), Value::Array(remaining));
            st.store.put(key, updated);
            continue;
        }
        let Some(info) = st.registry.get(&key.group, &key.plural).cloned() else {
            continue;
        };
        let version = info.versions[0].clone();
        let ctx = Ctx::new(
            info,
            &version,
            Some(&key.namespace),
            "generic-garbage-collector",
        );
        let _ = delete(st, &ctx, &key.name, &json!({}));
    }
}
