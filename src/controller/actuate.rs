//! Writes the desired state to the cluster, by server-side apply with field manager
//! `ingress-failover`, and only where the cluster differs: every function here first compares
//! with what the caches (or one GET) show, so a policy whose world matches writes nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::SelectorExt;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::context::{Context, PolicyRuntime, lock};
use super::desired::{self, POLICY_LABEL, Published, SourceFields};
use super::ledger::Correction;
use super::observe::{self, ClassForm, MANAGED_BY, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use crate::api::{FailoverPolicySpec, IngressMode};
use crate::engine::IngressDesired;

/// The field manager of every write.
pub const MANAGER: &str = "ingress-failover";

pub(super) fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

/// Why a write could not be made; carries the object so the status message can name it.
#[derive(Debug, thiserror::Error)]
pub enum ActuateError {
    #[error("writing {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{message}")]
    Conflict { what: String, message: String },
}

impl ActuateError {
    /// The object the write was for, e.g. `Deployment shop/web/scale`.
    pub fn object(&self) -> &str {
        match self {
            ActuateError::Api { what, .. } | ActuateError::Conflict { what, .. } => what,
        }
    }

    /// The error alone, without the object.
    pub fn cause(&self) -> String {
        match self {
            ActuateError::Api { source, .. } => source.to_string(),
            ActuateError::Conflict { message, .. } => message.clone(),
        }
    }
}

pub(super) fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ActuateError {
    let what = what.into();
    move |source| ActuateError::Api { what, source }
}

/// Creates the selectorless managed Service when absent; refuses to take over a Service that
/// has a selector (Kubernetes would fight us over its EndpointSlices).
pub async fn ensure_service(
    ctx: &Context,
    ns: &str,
    name: &str,
    spec: &FailoverPolicySpec,
    owner: &OwnerReference,
    policy: &str,
) -> Result<(), ActuateError> {
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let what = format!("Service {ns}/{name}");
    match api.get_opt(name).await.map_err(api_err(&what))? {
        Some(svc) => {
            let has_selector = svc
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|s| !s.is_empty());
            if has_selector {
                return Err(ActuateError::Conflict {
                    what,
                    message: format!(
                        "managed Service {ns}/{name} has a selector: the operator only publishes through a selectorless Service (spec.managedService.name)"
                    ),
                });
            }
            Ok(())
        }
        None => {
            let svc = desired::managed_service(ns, name, spec, owner, policy);
            api.patch(
                name,
                &apply_params(),
                &Patch::Apply(typed(&svc, "v1", "Service")),
            )
            .await
            .map_err(api_err(&what))?;
            ctx.metrics.write("services");
            Ok(())
        }
    }
}

fn typed<T: serde::Serialize>(obj: &T, api_version: &str, kind: &str) -> serde_json::Value {
    let mut v = serde_json::to_value(obj).expect("object serializes");
    v["apiVersion"] = json!(api_version);
    v["kind"] = json!(kind);
    v
}

/// The EndpointSlices of the Service `ns/service` this operator wrote.
pub fn managed_slices(
    ctx: &Context,
    ns: &str,
    service: &str,
) -> Vec<std::sync::Arc<EndpointSlice>> {
    let mut slices = ctx.stores.service_slices(ns, service);
    slices.retain(|s| s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY));
    slices
}

/// Makes the managed Service's EndpointSlices list exactly `published`. Returns the number of
/// writes made.
pub async fn sync_slices(
    ctx: &Context,
    ns: &str,
    service: &str,
    port_name: &str,
    owner: &OwnerReference,
    policy: &str,
    published: &[Published],
) -> Result<u32, ActuateError> {
    let want = desired::endpoint_slices(ns, service, port_name, Some(owner), policy, published);
    let have = managed_slices(ctx, ns, service);
    let plan = desired::plan_slices(want, &have);
    if !plan.apply.is_empty() || !plan.delete.is_empty() {
        // Why a write: at scale, a write that changes nothing is a sign the cache lags.
        tracing::debug!(
            service,
            cached = ?have.iter().map(|s| s.name_any()).collect::<Vec<_>>(),
            apply = ?plan.apply.iter().map(|s| s.name_any()).collect::<Vec<_>>(),
            delete = ?plan.delete,
            "EndpointSlices differ from the cache"
        );
    }
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let mut writes = 0;
    for slice in &plan.apply {
        let name = slice.metadata.name.as_deref().unwrap_or_default();
        let what = format!("EndpointSlice {ns}/{name}");
        api.patch(
            name,
            &apply_params(),
            &Patch::Apply(typed(slice, "discovery.k8s.io/v1", "EndpointSlice")),
        )
        .await
        .map_err(api_err(&what))?;
        ctx.metrics.write("endpointslices");
        writes += 1;
    }
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(api_err(format!("EndpointSlice {ns}/{name}"))(e)),
        }
        ctx.metrics.write("endpointslices");
        writes += 1;
    }
    Ok(writes)
}

/// Sets the emergency Deployment's replicas through its `/scale` subresource.
pub async fn scale(ctx: &Context, ns: &str, name: &str, replicas: i32) -> Result<(), ActuateError> {
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas},
    });
    api.patch_scale(name, &apply_params(), &Patch::Apply(&patch))
        .await
        .map_err(api_err(format!("Deployment {ns}/{name}/scale")))?;
    ctx.metrics.write("deployments/scale");
    Ok(())
}

/// The Ingresses a policy manages: named ones plus those its selector matches (never our own
/// mirrors).
pub fn managed_ingresses(
    ctx: &Context,
    ns: &str,
    spec: &FailoverPolicySpec,
) -> Vec<std::sync::Arc<Ingress>> {
    let Some(tier) = &spec.ingress else {
        return Vec::new();
    };
    let selects = IngressSelection::of(tier);
    let mut list = ctx
        .stores
        .ingresses
        .state_filter(|ing| ing.metadata.namespace.as_deref() == Some(ns) && selects.ingress(ing));
    list.sort_by_key(|i| i.name_any());
    list
}

/// Which source Ingresses an ingress tier names, by name or label selector (one copy of the
/// rule, for the Ingresses a policy manages and for the claims of others on one of them).
/// Mirrors the operator made are never sources.
pub struct IngressSelection<'a> {
    tier: &'a crate::api::IngressTierSpec,
    selector: Option<kube::core::Selector>,
}

impl<'a> IngressSelection<'a> {
    pub fn of(tier: &'a crate::api::IngressTierSpec) -> Self {
        IngressSelection {
            tier,
            selector: tier
                .selector
                .as_ref()
                .and_then(|s| kube::core::Selector::try_from(s.clone()).ok()),
        }
    }

    /// Whether `ing` (in the tier's namespace) is one of the tier's sources.
    pub fn ingress(&self, ing: &Ingress) -> bool {
        if ing.labels().contains_key(POLICY_LABEL) {
            return false;
        }
        ing.metadata
            .name
            .as_ref()
            .is_some_and(|name| self.tier.ingresses.contains(name))
            || self
                .selector
                .as_ref()
                .is_some_and(|sel| sel.matches(ing.labels()))
    }
}

/// What the operator owns on a source Ingress in `mode`, in full (see [`SourceFields`]).
pub fn source_fields(
    ing: &Ingress,
    mode: IngressMode,
    tier: &crate::api::IngressTierSpec,
    want: &IngressDesired,
    owner: Option<&str>,
) -> SourceFields {
    let owner = owner.map(str::to_string);
    match mode {
        IngressMode::SwitchClass => SourceFields {
            form: observe::class_form(ing),
            class: want.active_class.clone(),
            annotations: BTreeMap::new(),
            owner,
        },
        IngressMode::HotStandby => {
            let primary_auth = want.active_class == tier.primary_class;
            let mut annotations: BTreeMap<String, String> = tier
                .mirror
                .as_ref()
                .map(|m| m.primary_annotations.clone())
                .unwrap_or_default();
            annotations.extend(desired::role_annotations(
                "primary",
                primary_auth,
                want.primary_weight_percent,
            ));
            // The source stays on the primary class in HotStandby: listing the class keeps it
            // there after a switch from SwitchClass, instead of dropping a field once owned.
            SourceFields {
                form: observe::class_form(ing),
                class: tier.primary_class.clone(),
                annotations,
                owner,
            }
        }
    }
}

/// Moves traffic as `want` says, in `mode`: SwitchClass rewrites the class of each managed
/// Ingress in the form it uses (the legacy annotation or `spec.ingressClassName`, never both);
/// HotStandby keeps each source on the primary class, marks which side is authoritative and
/// its weight, and keeps a mirror on the backup class in sync; mirrors of other modes are
/// removed. Each Ingress is written on its own: the errors of those that failed are returned,
/// the others are written regardless. With the policy's runtime (an enforcing policy), each
/// source carries the policy's claim label ([`super::claims`]) and a change another field
/// manager made to what the operator wrote is corrected at most
/// [`super::ledger::MAX_CORRECTIONS`] times per decision; without it (the hand-back on
/// deletion) the claim label is removed.
#[allow(clippy::too_many_arguments)]
pub async fn sync_ingresses(
    ctx: &Context,
    ns: &str,
    spec: &FailoverPolicySpec,
    mode: IngressMode,
    want: &IngressDesired,
    owner: &OwnerReference,
    policy: &str,
    rt: Option<&std::sync::Mutex<PolicyRuntime>>,
) -> IngressSync {
    let mut out = IngressSync::default();
    let Some(tier) = &spec.ingress else {
        return out;
    };
    let api: Api<Ingress> = Api::namespaced(ctx.client.clone(), ns);
    let errors = &mut out.errors;
    let sources = managed_ingresses(ctx, ns, spec);
    let cached_mirror = |name: &str| {
        ctx.stores
            .ingresses
            .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns))
    };
    let claim = rt.map(|_| policy);
    let steps = plan_ingresses(
        &sources,
        cached_mirror,
        mode,
        tier,
        want,
        owner,
        policy,
        claim,
    );
    for step in steps {
        let ing = &step.source;
        let name = ing.name_any();
        let what = format!("Ingress {ns}/{name}");
        if let Some(fields) = &step.fields {
            // Written by us before and changed since (not mere cache lag): another writer.
            let value = format!("{fields:?}");
            let cached_rv = ing.metadata.resource_version.clone();
            let field = format!("the class of Ingress {ns}/{name}");
            if let Some(rt) = rt {
                let mut r = lock(rt);
                r.ledger.expect(&field, &value);
                match r.ingress_written.get(&name) {
                    Some((v, rv)) if *v == value && *rv == cached_rv => continue,
                    Some((v, _)) if *v == value => {
                        let manager = fields.managers_besides(ing, MANAGER);
                        match r.ledger.correction(&field, &value, &manager) {
                            Correction::Correct(n) => out.notes.push(WriterNote {
                                field: field.clone(),
                                manager,
                                correction: Some(n),
                                first: false,
                            }),
                            Correction::GiveUp { first } => {
                                out.given_up = true;
                                out.notes.push(WriterNote {
                                    field,
                                    manager,
                                    correction: None,
                                    first,
                                });
                                continue;
                            }
                        }
                    }
                    _ => {}
                }
            }
            if let Err(e) = write_source(ctx, &api, ing, fields, &name, ns).await {
                errors.push(api_err(&what)(e));
                continue;
            }
            if let Some(rt) = rt {
                lock(rt)
                    .ingress_written
                    .insert(name.clone(), (value, cached_rv));
            }
        }
        if let Some(mirror) = &step.mirror {
            let mirror_name = mirror.metadata.name.clone().unwrap_or_default();
            match api
                .patch(
                    &mirror_name,
                    &apply_params(),
                    &Patch::Apply(typed(mirror, "networking.k8s.io/v1", "Ingress")),
                )
                .await
            {
                Ok(_) => ctx.metrics.write("ingresses"),
                Err(e) => errors.push(api_err(format!("Ingress {ns}/{mirror_name}"))(e)),
            }
        }
    }
    if mode == IngressMode::SwitchClass
        && let Err(e) = delete_mirrors(ctx, ns, policy).await
    {
        errors.push(e);
    }
    out
}

/// One managed Ingress's writes, as [`plan_ingresses`] decides them from the cache.
#[derive(Debug)]
pub struct IngressStep {
    pub source: std::sync::Arc<Ingress>,
    /// The operator's fields of the source, when the source does not carry them yet.
    pub fields: Option<SourceFields>,
    /// HotStandby: the mirror on the backup class, when missing or out of sync.
    pub mirror: Option<Ingress>,
}

/// The pure part of [`sync_ingresses`]: for each managed source Ingress (in order), the fields
/// to write on it and the mirror to apply, given the mirrors the cache holds (`cached_mirror`
/// by name). Nothing while the cluster already says what `want` says. `claim` is the policy
/// whose claim label a source carries (None: the hand-back, which removes it).
#[allow(clippy::too_many_arguments)]
pub fn plan_ingresses(
    sources: &[std::sync::Arc<Ingress>],
    cached_mirror: impl Fn(&str) -> Option<std::sync::Arc<Ingress>>,
    mode: IngressMode,
    tier: &crate::api::IngressTierSpec,
    want: &IngressDesired,
    owner: &OwnerReference,
    policy: &str,
    claim: Option<&str>,
) -> Vec<IngressStep> {
    sources
        .iter()
        .map(|ing| {
            let fields = source_fields(ing, mode, tier, want, claim);
            let mirror = (mode == IngressMode::HotStandby)
                .then(|| {
                    let primary_auth = want.active_class == tier.primary_class;
                    let overrides = tier
                        .mirror
                        .as_ref()
                        .map(|m| m.backup_annotations.clone())
                        .unwrap_or_default();
                    desired::mirror_ingress(
                        ing,
                        &tier.backup_class,
                        owner,
                        policy,
                        !primary_auth,
                        100 - want.primary_weight_percent,
                        &overrides,
                    )
                })
                .filter(|mirror| {
                    let name = mirror.metadata.name.as_deref().unwrap_or_default();
                    !cached_mirror(name).is_some_and(|c| desired::mirror_matches(&c, mirror))
                });
            IngressStep {
                source: ing.clone(),
                fields: (!fields.matches(ing)).then_some(fields),
                mirror,
            }
        })
        .filter(|step| step.fields.is_some() || step.mirror.is_some())
        .collect()
}

/// What [`sync_ingresses`] did besides writing.
#[derive(Debug, Default)]
pub struct IngressSync {
    /// Writes that failed (the others were made).
    pub errors: Vec<ActuateError>,
    /// Corrections of another writer's change, and the point where the operator stopped.
    pub notes: Vec<WriterNote>,
    /// Some Ingress is left as another writer set it.
    pub given_up: bool,
}

/// A field the operator owns was changed by another field manager.
#[derive(Debug, Clone)]
pub struct WriterNote {
    pub field: String,
    pub manager: String,
    /// `Some(n)`: written back (correction n); `None`: no longer corrected.
    pub correction: Option<u32>,
    /// With `None`: the first time the operator leaves it (worth an Event).
    pub first: bool,
}

/// Writes the operator's fields of a source Ingress. An Ingress naming its class both ways
/// first loses `spec.ingressClassName` (a merge patch: the field may belong to another
/// manager, which an apply could not take away).
async fn write_source(
    ctx: &Context,
    api: &Api<Ingress>,
    ing: &Ingress,
    fields: &SourceFields,
    name: &str,
    ns: &str,
) -> Result<(), kube::Error> {
    if observe::class_form(ing) == ClassForm::Both {
        let patch = json!({"spec": {"ingressClassName": null}});
        api.patch(
            name,
            &PatchParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            },
            &Patch::Merge(&patch),
        )
        .await?;
        ctx.metrics.write("ingresses");
    }
    api.patch(
        name,
        &apply_params(),
        &Patch::Apply(fields.apply_body(name, ns)),
    )
    .await?;
    ctx.metrics.write("ingresses");
    Ok(())
}

/// The class in effect for the managed Ingresses, as the cache shows them: in SwitchClass the
/// class they carry (the annotation first, as ingress controllers read it); in HotStandby the
/// authoritative side's class. `None` when none is managed or they disagree.
pub fn class_in_effect(ctx: &Context, ns: &str, spec: &FailoverPolicySpec) -> Option<String> {
    let tier = spec.ingress.as_ref()?;
    let mut classes = managed_ingresses(ctx, ns, spec)
        .into_iter()
        .map(|ing| match tier.mode {
            IngressMode::SwitchClass => observe::effective_class(&ing).map(str::to_string),
            IngressMode::HotStandby => {
                let primary_auth = ing
                    .annotations()
                    .get(desired::AUTHORITATIVE_ANNOTATION)
                    .is_none_or(|v| v == "true");
                Some(if primary_auth {
                    tier.primary_class.clone()
                } else {
                    tier.backup_class.clone()
                })
            }
        });
    let first = classes.next()??;
    classes
        .all(|c| c.as_deref() == Some(first.as_str()))
        .then_some(first)
}

/// Deletion with Restore: the managed Service is handed back instead of being left to route
/// to nothing. It keeps its name (so the Ingress keeps working), loses the policy's owner
/// reference (so garbage collection leaves it) and publishes the whole primary pool: a primary
/// Service's selector is copied (Kubernetes then keeps its EndpointSlices) and static primary
/// addresses stay in an EndpointSlice no longer owned by the policy.
pub async fn hand_back_service(
    ctx: &Context,
    ns: &str,
    spec: &FailoverPolicySpec,
    policy: &str,
) -> Result<(), ActuateError> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let ms = &spec.managed_service;
    let what = format!("Service {ns}/{}", ms.name);
    let mut port = json!({"name": ms.port_name, "port": ms.port, "protocol": "TCP"});
    let mut selector = None;
    if let Some(primary) = &spec.backends.primary.service {
        let svc = services
            .get_opt(&primary.name)
            .await
            .map_err(api_err(format!("Service {ns}/{}", primary.name)))?;
        if let Some(s) = svc.and_then(|s| s.spec) {
            let ports = s.ports.unwrap_or_default();
            let chosen = match &primary.port_name {
                Some(n) => ports.iter().find(|p| p.name.as_deref() == Some(n)),
                None if ports.len() == 1 => ports.first(),
                None => None,
            };
            if let Some(p) = chosen {
                port["targetPort"] = match &p.target_port {
                    Some(t) => json!(t),
                    None => json!(p.port),
                };
            }
            selector = s.selector.filter(|s| !s.is_empty());
        }
    }
    let mut body = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": ms.name, "namespace": ns,
                     "labels": {POLICY_LABEL: policy},
                     "annotations": {HANDED_BACK_ANNOTATION: format!(
                        "FailoverPolicy {policy} was deleted with deletionPolicy Restore; this Service publishes the whole primary pool and is no longer managed")}},
        "spec": {"ports": [port]},
    });
    if let Some(sel) = &selector {
        body["spec"]["selector"] = json!(sel);
    }
    services
        .patch(&ms.name, &apply_params(), &Patch::Apply(&body))
        .await
        .map_err(api_err(&what))?;
    ctx.metrics.write("services");
    // Static primary addresses: Kubernetes cannot publish them, so a slice stays behind.
    let statics: Vec<Published> = spec
        .backends
        .primary
        .addresses
        .iter()
        .filter_map(|a| Published::parse(&a.0))
        .collect();
    // Under names of their own: the slices the policy wrote go (after these exist, so the
    // Service never has fewer endpoints), and a later policy for the same Service replaces
    // these like any stale slice of its own.
    let mut keep = desired::endpoint_slices(ns, &ms.name, &ms.port_name, None, policy, &statics);
    for k in &mut keep {
        k.metadata.name = k.metadata.name.take().map(|n| format!("{n}-handed-back"));
    }
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    for slice in &keep {
        let name = slice.metadata.name.as_deref().unwrap_or_default();
        api.patch(
            name,
            &apply_params(),
            &Patch::Apply(typed(slice, "discovery.k8s.io/v1", "EndpointSlice")),
        )
        .await
        .map_err(api_err(format!("EndpointSlice {ns}/{name}")))?;
        ctx.metrics.write("endpointslices");
    }
    let have = managed_slices(ctx, ns, &ms.name);
    for s in have.iter().filter(|h| {
        !keep
            .iter()
            .any(|k| k.metadata.name.as_deref() == Some(&h.name_any()))
    }) {
        let name = s.name_any();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => ctx.metrics.write("endpointslices"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(api_err(format!("EndpointSlice {ns}/{name}"))(e)),
        }
    }
    if ms.legacy_endpoints {
        // With a selector, Kubernetes' Endpoints controller writes the legacy object from now
        // on; without one, the static addresses are what the handed-back slice says. Either way
        // nothing the policy published stays behind, and the object no longer points at it.
        let want = (selector.is_none() && !statics.is_empty()).then(|| {
            super::legacy_endpoints::desired(ns, &ms.name, &ms.port_name, None, policy, &statics)
        });
        super::legacy_endpoints::sync(ctx, ns, &ms.name, want).await?;
    }
    Ok(())
}

/// Empties a Service the operator created for `policy` and no longer publishes through (the
/// weighted emergency Service once `backendWeights` is removed): deletes its slices. The
/// Service itself stays, empty and selectorless, owned by the policy and garbage-collected
/// with it: the chart grants no Service deletion.
pub async fn empty_service(
    ctx: &Context,
    ns: &str,
    name: &str,
    policy: &str,
) -> Result<(), ActuateError> {
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let mut owned = managed_slices(ctx, ns, name);
    owned.retain(|s| s.labels().get(POLICY_LABEL).map(String::as_str) == Some(policy));
    delete_each(ctx, &slices, ns, "EndpointSlice", "endpointslices", owned).await
}

/// Deletes `objects` (one already gone is fine), counting each write under `resource`; stops
/// at the first failure.
async fn delete_each<K>(
    ctx: &Context,
    api: &Api<K>,
    ns: &str,
    kind: &str,
    resource: &'static str,
    objects: Vec<std::sync::Arc<K>>,
) -> Result<(), ActuateError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for o in objects {
        let name = o.name_any();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => ctx.metrics.write(resource),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(api_err(format!("{kind} {ns}/{name}"))(e)),
        }
    }
    Ok(())
}

/// Managed Services the policy published before `spec.managedService.name` was renamed: its
/// slices (still owned by it, so not yet handed back) under another Service's name, with their
/// port name. Read from the objects, so a restart between the rename and the hand-back loses
/// nothing.
pub fn retired_services(
    ctx: &Context,
    ns: &str,
    policy_uid: &str,
    current: &[String],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = ctx
        .stores
        .owned_slices(policy_uid)
        .iter()
        .filter(|s| {
            s.metadata.namespace.as_deref() == Some(ns)
                && s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
                && s.labels()
                    .get(SERVICE_NAME_LABEL)
                    .is_some_and(|svc| !current.contains(svc))
        })
        .filter_map(|s| {
            let svc = s.labels().get(SERVICE_NAME_LABEL)?.clone();
            let port = s
                .ports
                .iter()
                .flatten()
                .find_map(|p| p.name.clone())
                .unwrap_or_default();
            Some((svc, port))
        })
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// Source Ingresses this policy claimed and no longer names (removed from `ingresses`, no
/// longer matched by the selector, or the whole ingress tier removed): handed back as on
/// deletion. Each goes back to the primary class (or keeps its class when the tier is gone and
/// with it the name of the primary class), loses the operator's annotations and claim label,
/// and its mirror is deleted. Read from the claim labels, so a restart loses nothing. Returns
/// the names handed back, or the first error (the others are still tried).
pub async fn release_ingresses(
    ctx: &Context,
    ns: &str,
    spec: &FailoverPolicySpec,
    policy: &str,
    already: &std::collections::BTreeSet<String>,
) -> (Vec<String>, Option<ActuateError>) {
    let named: Vec<String> = managed_ingresses(ctx, ns, spec)
        .iter()
        .map(|i| i.name_any())
        .collect();
    let released = ctx.stores.ingresses.state_filter(|i| {
        i.metadata.namespace.as_deref() == Some(ns)
            && i.labels().get(desired::CLAIM_LABEL).map(String::as_str) == Some(policy)
            && !named.contains(&i.name_any())
            && !already.contains(&format!("Ingress {}", i.name_any()))
    });
    let api: Api<Ingress> = Api::namespaced(ctx.client.clone(), ns);
    let (mut done, mut error) = (Vec::new(), None);
    for ing in released {
        let name = ing.name_any();
        let class = match &spec.ingress {
            Some(tier) => tier.primary_class.clone(),
            None => observe::effective_class(&ing)
                .unwrap_or_default()
                .to_string(),
        };
        let fields = SourceFields {
            form: observe::class_form(&ing),
            class,
            annotations: BTreeMap::new(),
            owner: None,
        };
        if let Err(e) = write_source(ctx, &api, &ing, &fields, &name, ns).await {
            error.get_or_insert(api_err(format!("Ingress {ns}/{name}"))(e));
            continue;
        }
        let mirror = format!("{name}{}", desired::MIRROR_SUFFIX);
        let ours = ctx.stores.ingresses.state_filter(|i| {
            i.metadata.namespace.as_deref() == Some(ns)
                && i.name_any() == mirror
                && i.labels().get(POLICY_LABEL).map(String::as_str) == Some(policy)
        });
        if !ours.is_empty() {
            match api.delete(&mirror, &DeleteParams::default()).await {
                Ok(_) => ctx.metrics.write("ingresses"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    error.get_or_insert(api_err(format!("Ingress {ns}/{mirror}"))(e));
                    continue;
                }
            }
        }
        done.push(name);
    }
    (done, error)
}

/// Annotation on a managed Service handed back when its policy was deleted.
pub const HANDED_BACK_ANNOTATION: &str = "ingressfailover.io/handed-back";

/// Deletes HotStandby mirrors (deletion with Restore); garbage collection would too, but
/// explicitly is immediate and works where owner references are not honoured.
pub async fn delete_mirrors(ctx: &Context, ns: &str, policy: &str) -> Result<(), ActuateError> {
    let api: Api<Ingress> = Api::namespaced(ctx.client.clone(), ns);
    let mirrors = ctx.stores.ingresses.state_filter(|i| {
        i.metadata.namespace.as_deref() == Some(ns)
            && i.labels().get(POLICY_LABEL).map(String::as_str) == Some(policy)
    });
    delete_each(ctx, &api, ns, "Ingress", "ingresses", mirrors).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tier(mode: &str) -> crate::api::IngressTierSpec {
        serde_json::from_value(json!({
            "ingresses": ["web"],
            "primaryClass": "nginx",
            "backupClass": "nginx-backup",
            "mode": mode,
            "health": {"url": "http://lb.shop.internal/healthz"},
        }))
        .unwrap()
    }

    fn ingress(name: &str, class: &str) -> Arc<Ingress> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {
                    "name": name,
                    "namespace": "shop",
                    "resourceVersion": "1",
                    "labels": {"ingressfailover.io/claimed-by": "web"},
                },
                "spec": {"ingressClassName": class, "rules": [{"host": "shop.example"}]},
            }))
            .unwrap(),
        )
    }

    use crate::controller::desired::tests::owner;

    fn want(class: &str, weight: u32) -> IngressDesired {
        IngressDesired {
            active_class: class.into(),
            primary_weight_percent: weight,
        }
    }

    /// (mode, source's class, wanted class, a matching mirror cached) → (source written?,
    /// mirror applied?). Nothing is written while the cluster says what is wanted. (In
    /// HotStandby the fixture's source lacks the role annotations, so it is always written.)
    #[test]
    fn ingress_plans() {
        let cases = [
            ("SwitchClass", "nginx", "nginx-backup", false, true, false),
            (
                "SwitchClass",
                "nginx-backup",
                "nginx-backup",
                false,
                false,
                false,
            ),
            ("SwitchClass", "nginx", "nginx", false, false, false),
            ("HotStandby", "nginx", "nginx-backup", false, true, true),
            ("HotStandby", "nginx", "nginx-backup", true, true, false),
        ];
        for (i, (mode, class, wanted, mirrored, source_written, mirror_applied)) in
            cases.into_iter().enumerate()
        {
            let tier = tier(mode);
            let want = want(wanted, 100);
            let sources = [ingress("web", class)];
            let mirror = desired::mirror_ingress(
                &sources[0],
                "nginx-backup",
                &owner(),
                "web",
                wanted != "nginx",
                0,
                &BTreeMap::new(),
            );
            let cached = |name: &str| {
                (mirrored && mirror.metadata.name.as_deref() == Some(name))
                    .then(|| Arc::new(mirror.clone()))
            };
            let steps = plan_ingresses(
                &sources,
                cached,
                tier.mode,
                &tier,
                &want,
                &owner(),
                "web",
                Some("web"),
            );
            let source = steps.iter().any(|s| s.fields.is_some());
            let applied = steps.iter().any(|s| s.mirror.is_some());
            assert_eq!(
                (source, applied),
                (source_written, mirror_applied),
                "case {i}: {mode} {class} → {wanted}"
            );
        }
    }
}
