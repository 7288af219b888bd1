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

use super::context::Context;
use super::desired::{self, POLICY_LABEL, Published};
use super::observe::{MANAGED_BY, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use crate::api::{FailoverPolicySpec, IngressMode};
use crate::engine::IngressDesired;

/// The field manager of every write.
pub const MANAGER: &str = "ingress-failover";

fn apply_params() -> PatchParams {
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
    #[error("{0}")]
    Conflict(String),
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ActuateError {
    let what = what.into();
    move |source| ActuateError::Api { what, source }
}

/// Creates the selectorless managed Service when absent; refuses to take over a Service that
/// has a selector (Kubernetes would fight us over its EndpointSlices).
pub async fn ensure_service(
    ctx: &Context,
    ns: &str,
    spec: &FailoverPolicySpec,
    owner: &OwnerReference,
    policy: &str,
) -> Result<(), ActuateError> {
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let name = &spec.managed_service.name;
    let what = format!("Service {ns}/{name}");
    match api.get_opt(name).await.map_err(api_err(&what))? {
        Some(svc) => {
            let has_selector = svc
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|s| !s.is_empty());
            if has_selector {
                return Err(ActuateError::Conflict(format!(
                    "managed Service {ns}/{name} has a selector: the operator only publishes through a selectorless Service (spec.managedService.name)"
                )));
            }
            Ok(())
        }
        None => {
            let svc = desired::managed_service(ns, spec, owner, policy);
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
    let want = desired::endpoint_slices(ns, service, port_name, owner, policy, published);
    let have: Vec<std::sync::Arc<EndpointSlice>> = ctx.stores.slices.state_filter(|s| {
        s.metadata.namespace.as_deref() == Some(ns)
            && s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(service)
            && s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
    });
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let mut writes = 0;
    for slice in &want {
        let name = slice.metadata.name.as_deref().unwrap_or_default();
        let current = have.iter().find(|h| h.name_any() == name);
        if current.is_some_and(|c| desired::slice_matches(c, slice)) {
            continue;
        }
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
    for stale in have.iter().filter(|h| {
        !want
            .iter()
            .any(|w| w.metadata.name.as_deref() == Some(&h.name_any()))
    }) {
        let name = stale.name_any();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(api_err(format!("EndpointSlice {ns}/{name}"))(e)),
        }
        ctx.metrics.write("endpointslices");
        writes += 1;
    }
    Ok(writes)
}

/// Deletes every EndpointSlice the operator wrote for `service` (deletion with Restore).
pub async fn delete_slices(ctx: &Context, ns: &str, service: &str) -> Result<(), ActuateError> {
    sync_slices_to_nothing(ctx, ns, service).await
}

async fn sync_slices_to_nothing(
    ctx: &Context,
    ns: &str,
    service: &str,
) -> Result<(), ActuateError> {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let have = ctx.stores.slices.state_filter(|s| {
        s.metadata.namespace.as_deref() == Some(ns)
            && s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(service)
            && s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
    });
    for s in have {
        let name = s.name_any();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => ctx.metrics.write("endpointslices"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(api_err(format!("EndpointSlice {ns}/{name}"))(e)),
        }
    }
    Ok(())
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
    let selector = tier
        .selector
        .as_ref()
        .and_then(|s| kube::core::Selector::try_from(s.clone()).ok());
    let mut list = ctx.stores.ingresses.state_filter(|ing| {
        if ing.metadata.namespace.as_deref() != Some(ns) || ing.labels().contains_key(POLICY_LABEL)
        {
            return false;
        }
        let name = ing.name_any();
        tier.ingresses.contains(&name)
            || selector
                .as_ref()
                .is_some_and(|sel| sel.matches(ing.labels()))
    });
    list.sort_by_key(|i| i.name_any());
    list
}

/// Moves traffic as `want` says: SwitchClass rewrites `spec.ingressClassName` of each managed
/// Ingress; HotStandby keeps a mirror on the backup class in sync and marks which side is
/// authoritative and its weight. Returns the number of writes.
pub async fn sync_ingresses(
    ctx: &Context,
    ns: &str,
    spec: &FailoverPolicySpec,
    want: &IngressDesired,
    owner: &OwnerReference,
    policy: &str,
) -> Result<u32, ActuateError> {
    let Some(tier) = &spec.ingress else {
        return Ok(0);
    };
    let api: Api<Ingress> = Api::namespaced(ctx.client.clone(), ns);
    let mut writes = 0;
    for ing in managed_ingresses(ctx, ns, spec) {
        let name = ing.name_any();
        let what = format!("Ingress {ns}/{name}");
        match tier.mode {
            IngressMode::SwitchClass => {
                let current = ing
                    .spec
                    .as_ref()
                    .and_then(|s| s.ingress_class_name.as_deref());
                if current == Some(want.active_class.as_str()) {
                    continue;
                }
                let patch = json!({
                    "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"ingressClassName": want.active_class},
                });
                api.patch(&name, &apply_params(), &Patch::Apply(&patch))
                    .await
                    .map_err(api_err(&what))?;
                ctx.metrics.write("ingresses");
                writes += 1;
            }
            IngressMode::HotStandby => {
                let primary_weight = want.primary_weight_percent;
                let primary_auth = want.active_class == tier.primary_class;
                let annotations =
                    desired::role_annotations("primary", primary_auth, primary_weight);
                if !desired::has_annotations(&ing.metadata, &annotations) {
                    let patch = json!({
                        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
                    });
                    api.patch(&name, &apply_params(), &Patch::Apply(&patch))
                        .await
                        .map_err(api_err(&what))?;
                    ctx.metrics.write("ingresses");
                    writes += 1;
                }
                let mirror = desired::mirror_ingress(
                    &ing,
                    &tier.backup_class,
                    owner,
                    policy,
                    !primary_auth,
                    100 - primary_weight,
                );
                let mirror_name = mirror.metadata.name.clone().unwrap_or_default();
                let current = ctx.stores.ingresses.state_filter(|i| {
                    i.metadata.namespace.as_deref() == Some(ns) && i.name_any() == mirror_name
                });
                let in_sync = current.first().is_some_and(|c| {
                    c.spec == mirror.spec
                        && desired::has_annotations(
                            &c.metadata,
                            mirror
                                .metadata
                                .annotations
                                .as_ref()
                                .unwrap_or(&BTreeMap::new()),
                        )
                });
                if !in_sync {
                    api.patch(
                        &mirror_name,
                        &apply_params(),
                        &Patch::Apply(typed(&mirror, "networking.k8s.io/v1", "Ingress")),
                    )
                    .await
                    .map_err(api_err(format!("Ingress {ns}/{mirror_name}")))?;
                    ctx.metrics.write("ingresses");
                    writes += 1;
                }
            }
        }
    }
    Ok(writes)
}

/// Deletes HotStandby mirrors (deletion with Restore); garbage collection would too, but
/// explicitly is immediate and works where owner references are not honoured.
pub async fn delete_mirrors(ctx: &Context, ns: &str, policy: &str) -> Result<(), ActuateError> {
    let api: Api<Ingress> = Api::namespaced(ctx.client.clone(), ns);
    let mirrors = ctx.stores.ingresses.state_filter(|i| {
        i.metadata.namespace.as_deref() == Some(ns)
            && i.labels().get(POLICY_LABEL).map(String::as_str) == Some(policy)
    });
    for m in mirrors {
        let name = m.name_any();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => ctx.metrics.write("ingresses"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(api_err(format!("Ingress {ns}/{name}"))(e)),
        }
    }
    Ok(())
}
