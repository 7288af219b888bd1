//! DELETE and garbage collection: finalizers and deletionTimestamp, preconditions, background
//! and orphan propagation through ownerReferences, namespace contents.

use super::crd;
use super::meta::{self, finalizers, meta_mut, meta_str};
use super::read::{list, not_found, present};
use super::state::{Ctx, ListOptions, State};
use super::status::{ApiError, ApiResult};
use super::store::ObjKey;
use serde_json::{Value, json};
use std::collections::HashSet;

/// `propagationPolicy` of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// The owner goes first, then its dependents (the default).
    Background,
    /// The owner stays, with a `foregroundDeletion` finalizer, until its dependents are gone.
    Foreground,
    /// Dependents lose their ownerReference and stay.
    Orphan,
}

const FOREGROUND: &str = "foregroundDeletion";

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
        Some("Foreground") => Propagation::Foreground,
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
    let uid = meta_str(&obj, "uid").unwrap_or("").to_string();
    let foreground = propagation == Propagation::Foreground && !dependents(st, &uid).is_empty();
    if !finalizers(&obj).is_empty() || foreground {
        if meta_str(&obj, "deletionTimestamp").is_some() {
            return Ok(present(ctx, obj));
        }
        let mut marked = obj.clone();
        let m = meta_mut(&mut marked);
        m.insert("deletionTimestamp".into(), json!(meta::now()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        if foreground {
            let mut f = finalizers(&marked);
            f.push(FOREGROUND.into());
            meta_mut(&mut marked).insert("finalizers".into(), json!(f));
        }
        let marked = st.store.put(key.clone(), marked);
        if foreground {
            for (dep_key, _) in dependents(st, &uid) {
                delete_key(st, &dep_key, Propagation::Foreground);
            }
            release_foreground(st, &uid);
            if let Some(still) = st.store.get(&key) {
                return Ok(present(ctx, still.clone()));
            }
        }
        return Ok(present(ctx, marked));
    }
    let deleted = st.store.delete(&key).unwrap_or(obj);
    finish_deletion(st, &key, &deleted, propagation);
    Ok(present(ctx, deleted))
}

/// Everything that follows an object's removal from the store: namespace contents, a CRD's
/// resource, dependents (garbage collection) and owners waiting in foreground deletion.
pub fn finish_deletion(st: &mut State, key: &ObjKey, deleted: &Value, propagation: Propagation) {
    if key.plural == "namespaces" && key.group.is_empty() {
        delete_namespace_contents(st, &key.name);
    }
    if key.plural == "customresourcedefinitions" {
        crd::removed(st, deleted);
    }
    collect_garbage(st, deleted, propagation);
    let owners: Vec<String> = deleted
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str().map(String::from))
        .collect();
    for owner in owners {
        release_foreground(st, &owner);
    }
}

/// Objects with an ownerReference to `uid`.
fn dependents(st: &State, uid: &str) -> Vec<(ObjKey, Value)> {
    if uid.is_empty() {
        return Vec::new();
    }
    st.store
        .iter()
        .filter(|(_, o)| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == json!(uid)))
        })
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect()
}

/// Deletes by key with the resource's own context (used for dependents).
fn delete_key(st: &mut State, key: &ObjKey, propagation: Propagation) {
    let Some(info) = st.registry.get(&key.group, &key.plural).cloned() else {
        return;
    };
    let version = info.versions[0].clone();
    let ctx = Ctx::new(
        info,
        &version,
        Some(&key.namespace),
        "generic-garbage-collector",
    );
    let policy = match propagation {
        Propagation::Foreground => "Foreground",
        Propagation::Orphan => "Orphan",
        Propagation::Background => "Background",
    };
    let _ = delete(st, &ctx, &key.name, &json!({"propagationPolicy": policy}));
}

/// An owner in foreground deletion whose dependents are all gone loses its
/// `foregroundDeletion` finalizer, and goes if that was the last one.
fn release_foreground(st: &mut State, owner_uid: &str) {
    let Some((key, owner)) = st
        .store
        .iter()
        .find(|(_, o)| meta_str(o, "uid") == Some(owner_uid))
        .map(|(k, o)| (k.clone(), o.clone()))
    else {
        return;
    };
    if !finalizers(&owner).iter().any(|f| f == FOREGROUND) || !dependents(st, owner_uid).is_empty()
    {
        return;
    }
    let rest: Vec<String> = finalizers(&owner)
        .into_iter()
        .filter(|f| f != FOREGROUND)
        .collect();
    if rest.is_empty() {
        if let Some(deleted) = st.store.delete(&key) {
            finish_deletion(st, &key, &deleted, Propagation::Background);
        }
    } else {
        let mut updated = owner;
        meta_mut(&mut updated).insert("finalizers".into(), json!(rest));
        st.store.put(key, updated);
    }
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
        delete_key(st, &key, propagation);
    }
}
