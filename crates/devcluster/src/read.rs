//! Reading objects as the client asked for them: conversion from storage, selectors, 404s,
//! GET and LIST with pagination. Used by the verbs, deletion and the watch.

use super::convert;
use super::meta::meta_str;
use super::state::{Ctx, ListOptions, State};
use super::status::{ApiError, ApiResult};
use serde_json::{Value, json};

/// The stored object in the form the client asked for (apiVersion, kind, field names).
pub fn present(ctx: &Ctx, obj: Value) -> Value {
    let mut obj = convert::from_storage(&ctx.info, obj);
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(ctx.api_version()));
        m.insert("kind".into(), json!(ctx.info.kind));
    }
    obj
}

/// The client's object in the form it is stored in.
pub(crate) fn storage_form(ctx: &Ctx, obj: Value) -> Value {
    let mut obj = convert::to_storage(&ctx.info, obj);
    let api_version = match &ctx.info.storage {
        Some((_, _, v)) => v.clone(),
        None => ctx.api_version(),
    };
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(ctx.info.kind));
    }
    obj
}

/// Do selectors pass on the object as the client sees it?
fn selected_as_presented(ctx: &Ctx, opts: &ListOptions, stored: &Value) -> bool {
    if ctx.info.storage.is_some() {
        selected(opts, &present(ctx, stored.clone()))
    } else {
        selected(opts, stored)
    }
}

/// 404 for `name` in this context.
pub fn not_found(ctx: &Ctx, name: &str) -> ApiError {
    ApiError::not_found((&ctx.info.group, &ctx.info.plural, name))
}

/// GET one object.
pub fn get(st: &State, ctx: &Ctx, name: &str) -> ApiResult<Value> {
    st.store
        .get(&ctx.key(name))
        .map(|o| present(ctx, o.clone()))
        .ok_or_else(|| not_found(ctx, name))
}

/// Does `obj` pass the selectors?
pub fn selected(opts: &ListOptions, obj: &Value) -> bool {
    opts.labels.matches_object(obj) && opts.fields.matches(obj)
}

/// LIST, with selectors and limit/continue pagination. Returns (items, list metadata).
pub fn list(st: &State, ctx: &Ctx, opts: &ListOptions) -> ApiResult<(Vec<Value>, Value)> {
    let ns = ctx
        .info
        .namespaced
        .then_some(ctx.namespace.as_deref())
        .flatten();
    let (rv, after) = match &opts.continue_token {
        Some(tok) => {
            let mut parts = tok.splitn(3, ':');
            let rv = parts.next().and_then(|r| r.parse::<u64>().ok());
            match (rv, parts.next(), parts.next()) {
                (Some(rv), Some(ns), Some(name)) => (rv, Some((ns.to_string(), name.to_string()))),
                _ => return Err(ApiError::bad_request("invalid continue token")),
            }
        }
        None => (st.store.rv(), None),
    };
    let mut matching = st
        .store
        .list(ctx.storage().0, ctx.storage().1, ns)
        .into_iter()
        .filter(|(k, _)| {
            after.as_ref().is_none_or(|(ans, an)| {
                (k.namespace.as_str(), k.name.as_str()) > (ans.as_str(), an.as_str())
            })
        })
        .filter(|(_, o)| selected_as_presented(ctx, opts, o));
    let mut items = Vec::new();
    let mut last = None;
    for (k, o) in matching.by_ref() {
        if opts.limit > 0 && items.len() == opts.limit {
            last = Some(k);
            break;
        }
        items.push(present(ctx, o.clone()));
    }
    let mut list_meta = json!({"resourceVersion": rv.to_string()});
    if last.is_some() {
        let remaining = 1 + matching.count();
        let final_item = items.last().cloned().unwrap_or_default();
        let tok = format!(
            "{rv}:{}:{}",
            meta_str(&final_item, "namespace").unwrap_or(""),
            meta_str(&final_item, "name").unwrap_or("")
        );
        list_meta["continue"] = json!(tok);
        list_meta["remainingItemCount"] = json!(remaining);
    }
    Ok((items, list_meta))
}
