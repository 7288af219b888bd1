//! The writing verbs: create, update, patch (server-side apply included) — as functions over
//! the locked [`State`], independent of HTTP so the controller-manager can use the very same
//! semantics (resourceVersion, generation, finalizers, admission) for its own writes. Reads
//! (get, list) are in `read`, delete and deletecollection (finalizers, cascade) in `delete`;
//! what they all work on (`State`, `Ctx`) in `state`.

use super::apply::{self, ApplyRequest};
use super::crd;
use super::defaults;
use super::delete::{self, Propagation};
use super::managed;
use super::meta::{
    self, carry_over_identity, finalizers, meta_mut, meta_str, same_content, spec_changed,
};
use super::patch::{self, PatchKind};
use super::read::{get, not_found, present, storage_form};
use super::resources::Registry;
use super::schema;
use super::state::{CONTROLLER_MANAGER, Ctx, Managed, State, Target};
use super::status::{ApiError, ApiResult, FieldCause};
use super::store::{ObjKey, Store};
use serde_json::{Value, json};

impl State {
    /// A fresh cluster with the namespaces every cluster has.
    pub fn new(window: usize, seed: u64) -> Self {
        let mut st = Self {
            store: Store::new(window),
            registry: Registry::default(),
            rng: fastrand::Rng::with_seed(seed),
            next_cluster_ip: 1,
            tokens: Default::default(),
        };
        let info = st
            .registry
            .get("", "namespaces")
            .cloned()
            .expect("namespaces are built in");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let ctx = Ctx::new(info.clone(), "v1", None, "devcluster");
            let _ = create(&mut st, &ctx, json!({"metadata": {"name": ns}}));
        }
        st
    }
}

/// metadata, spec and status of built-in objects must be objects: everything downstream
/// (defaults, the controller-manager) relies on it.
fn check_shape(ctx: &Ctx, obj: &Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request was not a JSON object",
        ));
    }
    for field in ["metadata", "spec", "status"] {
        let bad = obj
            .get(field)
            .is_some_and(|v| !v.is_object() && !v.is_null());
        if bad && (field == "metadata" || !ctx.info.from_crd) {
            let name = meta_str(obj, "name").unwrap_or("");
            return Err(ApiError::invalid(
                &ctx.info.kind,
                (&ctx.info.group, &ctx.info.plural, name),
                vec![FieldCause::new(
                    "FieldValueTypeInvalid",
                    field,
                    "must be an object",
                )],
            ));
        }
    }
    Ok(())
}

/// Admission of a write: name and labels ([`k8s_rules::names`]), a custom resource's schema and
/// CEL rules (defaults and pruning applied to `obj`; a pruned field refuses the write under
/// `fieldValidation=Strict`), CustomResourceDefinitions themselves, and the Ingress and
/// IngressClass rules of kube-apiserver.
fn validate(ctx: &Ctx, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    let name = meta_str(obj, "name").unwrap_or("").to_string();
    let subject = (
        ctx.info.group.as_str(),
        ctx.info.plural.as_str(),
        name.as_str(),
    );
    let mut causes = Vec::new();
    if let Some(msg) = meta::invalid_name(&ctx.info.plural, &name) {
        causes.push(FieldCause::new("FieldValueInvalid", "metadata.name", msg));
    }
    for (field, msg) in meta::invalid_labels(obj) {
        causes.push(FieldCause::new("FieldValueInvalid", field, msg));
    }
    if ctx.info.from_crd
        && let Some(s) = ctx.info.schemas.get(&ctx.version)
    {
        causes.extend(schema::validate_and_default(s, obj, old));
    }
    if ctx.info.plural == "customresourcedefinitions" {
        causes.extend(crd::validate(obj));
    }
    if ctx.info.group == "networking.k8s.io"
        && ctx.info.plural == "ingressclasses"
        && let Some(old) = old
        && old["spec"]["controller"] != obj["spec"]["controller"]
    {
        // As kube-apiserver's ValidateIngressClassUpdate.
        causes.push(FieldCause::new(
            "FieldValueInvalid",
            "spec.controller",
            format!("{}: field is immutable", obj["spec"]["controller"]),
        ));
    }
    if ctx.info.group == "networking.k8s.io" && ctx.info.plural == "ingresses" {
        causes.extend(ingress_spec(obj));
        if old.is_none() {
            causes.extend(ingress_class_on_create(obj));
        }
    }
    let unknown: Vec<String> = causes
        .iter()
        .filter(|c| c.reason == schema::UNKNOWN)
        .map(|c| format!("unknown field \"{}\"", c.field))
        .collect();
    causes.retain(|c| c.reason != schema::UNKNOWN);
    if ctx.strict && !unknown.is_empty() && causes.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            ctx.info.kind,
            ctx.version,
            ctx.info.kind,
            unknown.join(", ")
        )));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&ctx.info.kind, subject, causes))
    }
}

/// As kube-apiserver's `ValidateIngressSpec` (create and update): an Ingress routes something.
fn ingress_spec(obj: &Value) -> Option<FieldCause> {
    let spec = &obj["spec"];
    let no_rules = spec["rules"].as_array().is_none_or(Vec::is_empty);
    (no_rules && spec["defaultBackend"].is_null()).then(|| {
        FieldCause::new(
            "FieldValueInvalid",
            "spec",
            "null: either `defaultBackend` or `rules` must be specified",
        )
    })
}

/// As kube-apiserver's `ValidateIngressCreate`: on create (not on update), the legacy
/// `kubernetes.io/ingress.class` annotation must equal `spec.ingressClassName` when both are set.
fn ingress_class_on_create(obj: &Value) -> Option<FieldCause> {
    const ANNOTATION: &str = "kubernetes.io/ingress.class";
    let annotation = obj["metadata"]["annotations"][ANNOTATION].as_str()?;
    let class = obj["spec"]["ingressClassName"].as_str()?;
    (annotation != class).then(|| {
        FieldCause::new(
            "FieldValueInvalid",
            format!("annotations.{ANNOTATION}"),
            format!("\"{annotation}\": must match `ingressClassName` when both are specified"),
        )
    })
}

/// POST: creates an object (namespace from the URL, generateName, uid, timestamps, generation 1).
pub fn create(st: &mut State, ctx: &Ctx, obj: Value) -> ApiResult<Value> {
    create_with(st, ctx, obj, Managed::Update)
}

fn create_with(st: &mut State, ctx: &Ctx, mut obj: Value, managed: Managed) -> ApiResult<Value> {
    check_shape(ctx, &obj)?;
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && kind != ctx.info.kind
        && !ctx.info.plural.is_empty()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            kind, ctx.info.kind
        )));
    }
    let ns = ctx.ns().to_string();
    if ctx.info.namespaced {
        match meta_str(&obj, "namespace") {
            Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {}
        }
        if st
            .store
            .get(&ObjKey::new("", "namespaces", "", &ns))
            .is_none()
        {
            return Err(ApiError::not_found(("", "namespaces", &ns)));
        }
    }
    let mut name = meta_str(&obj, "name").unwrap_or("").to_string();
    if name.is_empty() {
        let Some(prefix) = meta_str(&obj, "generateName").map(String::from) else {
            return Err(ApiError::invalid(
                &ctx.info.kind,
                (&ctx.info.group, &ctx.info.plural, ""),
                vec![FieldCause::new(
                    "FieldValueRequired",
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        };
        loop {
            name = format!("{prefix}{}", meta::name_suffix(&mut st.rng));
            if st.store.get(&ctx.key(&name)).is_none() {
                break;
            }
        }
    }
    let key = ctx.key(&name);
    if st.store.get(&key).is_some() {
        return Err(ApiError::already_exists((
            &ctx.info.group,
            &ctx.info.plural,
            &name,
        )));
    }
    let uid = meta::new_uid(&mut st.rng);
    {
        let m = meta_mut(&mut obj);
        m.insert("name".into(), json!(name));
        if ctx.info.namespaced {
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        m.insert("uid".into(), json!(uid));
        m.insert("creationTimestamp".into(), json!(meta::now()));
        m.insert("generation".into(), json!(1));
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(f);
        }
    }
    if ctx.info.status
        && ctx.manager != CONTROLLER_MANAGER
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    defaults::builtin_defaults(st, ctx, &mut obj);
    validate(ctx, &mut obj, None)?;
    if managed == Managed::Update {
        meta_mut(&mut obj).remove("managedFields");
        managed::record_update(
            None,
            &mut obj,
            &ctx.manager,
            ctx.scope(false),
            &ctx.api_version(),
            &meta::now(),
        );
    }
    let obj = storage_form(ctx, obj);
    if ctx.dry_run {
        return Ok(present(ctx, obj));
    }
    let stored = st.store.put(key, obj);
    if ctx.info.plural == "customresourcedefinitions" {
        crd::established(st, &stored);
        return get(st, ctx, &name);
    }
    Ok(present(ctx, stored))
}

/// The shared tail of update, patch and apply: isolation of status, identity, optimistic
/// concurrency, validation, generation, no-op detection, finalizer completion.
pub fn commit(
    st: &mut State,
    ctx: &Ctx,
    old: &Value,
    mut new: Value,
    target: Target,
    managed: Managed,
) -> ApiResult<Value> {
    let name = meta_str(old, "name").unwrap_or("").to_string();
    let subject = (
        ctx.info.group.as_str(),
        ctx.info.plural.as_str(),
        name.as_str(),
    );
    if let Some(body_name) = meta_str(&new, "name")
        && body_name != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(rv) = meta_str(&new, "resourceVersion")
        && !rv.is_empty()
        && Some(rv) != meta_str(old, "resourceVersion")
    {
        return Err(ApiError::stale(subject));
    }
    check_shape(ctx, &new)?;
    new = match (target, ctx.info.status) {
        (Target::Status, _) => {
            let mut merged = old.clone();
            match new.get("status") {
                Some(s) => merged["status"] = s.clone(),
                None => {
                    if let Some(m) = merged.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            if managed == Managed::Preserve
                && let Some(mf) = new.pointer("/metadata/managedFields")
            {
                meta_mut(&mut merged).insert("managedFields".into(), mf.clone());
            }
            merged
        }
        (Target::Main, true) => {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            new
        }
        (Target::Main, false) => new,
    };
    carry_over_identity(old, &mut new);
    let client_set_managed = new
        .pointer("/metadata/managedFields")
        .is_some_and(|mf| Some(mf) != old.pointer("/metadata/managedFields"));
    if managed == Managed::Update && !client_set_managed {
        let mf = old.pointer("/metadata/managedFields").cloned();
        match mf {
            Some(mf) => meta_mut(&mut new).insert("managedFields".into(), mf),
            None => meta_mut(&mut new).remove("managedFields"),
        };
        managed::record_update(
            Some(old),
            &mut new,
            &ctx.manager,
            ctx.scope(target == Target::Status),
            &ctx.api_version(),
            &meta::now(),
        );
    }
    let mut new = storage_form(ctx, new);
    validate(ctx, &mut new, Some(old))?;
    let finalizing = meta_str(&new, "deletionTimestamp").is_some() && finalizers(&new).is_empty();
    if same_content(old, &new) && !finalizing {
        return Ok(present(ctx, old.clone()));
    }
    if spec_changed(old, &new, ctx.info.status) {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        meta_mut(&mut new).insert("generation".into(), json!(g + 1));
    }
    if ctx.dry_run {
        return Ok(present(ctx, new));
    }
    let key = ctx.key(&name);
    if finalizing {
        let deleted = st.store.delete(&key).unwrap_or(new);
        delete::finish_deletion(st, &key, &deleted, Propagation::Background);
        return Ok(present(ctx, deleted));
    }
    let stored = st.store.put(key, new);
    if ctx.info.plural == "customresourcedefinitions" {
        crd::established(st, &stored);
        return get(st, ctx, &name);
    }
    Ok(present(ctx, stored))
}

/// PUT.
pub fn update(
    st: &mut State,
    ctx: &Ctx,
    name: &str,
    body: Value,
    target: Target,
) -> ApiResult<Value> {
    let old = st
        .store
        .get(&ctx.key(name))
        .cloned()
        .ok_or_else(|| not_found(ctx, name))?;
    commit(st, ctx, &old, body, target, Managed::Update)
}

/// PATCH in any of the four flavours; apply creates the object when it is absent.
pub fn patch(
    st: &mut State,
    ctx: &Ctx,
    name: &str,
    kind: PatchKind,
    body: &Value,
    target: Target,
) -> ApiResult<(u16, Value)> {
    let existing = st.store.get(&ctx.key(name)).cloned();
    if kind == PatchKind::Apply {
        return server_side_apply(st, ctx, name, existing, body, target);
    }
    let old = existing.ok_or_else(|| not_found(ctx, name))?;
    // A patch is a precondition on resourceVersion only if it changes the one it starts from.
    let mut new = present(ctx, old.clone());
    match kind {
        PatchKind::Merge => patch::merge(&mut new, body),
        PatchKind::Json => patch::json(&mut new, body)?,
        PatchKind::Strategic if ctx.info.from_crd => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        PatchKind::Strategic => patch::strategic(&mut new, body),
        PatchKind::Apply => unreachable!("handled above"),
    }
    let patched = ctx.strict.then(|| new.to_string());
    commit(st, ctx, &old, new, target, Managed::Update)
        .map(|v| (200, v))
        .map_err(
            |e| match (patched, e.message.split_once("strict decoding error: ")) {
                // As kube-apiserver: an unknown field in a patch under fieldValidation=Strict is a 422
                // about the field "patch" (a create's is a 400).
                (Some(obj), Some((_, unknown))) if e.code == 400 => ApiError::invalid(
                    "",
                    ("", "", ""),
                    vec![FieldCause::new(
                        "FieldValueInvalid",
                        "patch",
                        format!("{obj:?}: strict decoding error: {unknown}"),
                    )],
                ),
                _ => e,
            },
        )
}

fn server_side_apply(
    st: &mut State,
    ctx: &Ctx,
    name: &str,
    existing: Option<Value>,
    config: &Value,
    target: Target,
) -> ApiResult<(u16, Value)> {
    if let Some(n) = meta_str(config, "name")
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    let api_version = ctx.api_version();
    let now = meta::now();
    let req = ApplyRequest {
        config,
        manager: &ctx.manager,
        force: ctx.force,
        scope: ctx.scope(target == Target::Status),
        schema: ctx.info.schemas.get(&ctx.version),
        api_version: &api_version,
        now: &now,
    };
    let conflict = |conflicts: Vec<apply::Conflict>| {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\"", c.manager), "field": c.field}))
            .collect();
        let mut by_manager: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for c in &conflicts {
            by_manager.entry(&c.manager).or_default().push(&c.field);
        }
        let text: Vec<String> = by_manager
            .iter()
            .map(|(m, fields)| match fields.as_slice() {
                [one] => format!("conflict with \"{m}\": {one}"),
                many => format!("conflicts with \"{m}\":\n- {}", many.join("\n- ")),
            })
            .collect();
        let n = conflicts.len();
        ApiError {
            details: Some(
                json!({"name": name, "group": ctx.info.group, "kind": ctx.info.plural, "causes": causes}),
            ),
            ..ApiError::new(
                409,
                "Conflict",
                format!(
                    "Apply failed with {n} conflict{}: {}",
                    if n == 1 { "" } else { "s" },
                    text.join("\n")
                ),
            )
        }
    };
    match existing {
        Some(old) => {
            let merged = apply::apply(&present(ctx, old.clone()), &req).map_err(conflict)?;
            commit(st, ctx, &old, merged, target, Managed::Preserve).map(|v| (200, v))
        }
        None => {
            if target == Target::Status {
                return Err(not_found(ctx, name));
            }
            let mut skeleton = json!({"metadata": {"name": name}});
            if let Some(ns) = ctx.namespace.as_deref().filter(|_| ctx.info.namespaced) {
                skeleton["metadata"]["namespace"] = json!(ns);
            }
            let mut merged = apply::apply(&skeleton, &req).map_err(conflict)?;
            if let Some(ns) = meta_str(config, "namespace") {
                meta_mut(&mut merged).insert("namespace".into(), json!(ns));
            }
            create_with(st, ctx, merged, Managed::Preserve).map(|v| (201, v))
        }
    }
}
