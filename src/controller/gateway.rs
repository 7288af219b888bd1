//! The Gateway API tier (`spec.gateway`, issue 14): route copies attached where the tier
//! decision says, and the Gateways' own status as a health signal.
//!
//! Every list of an HTTPRoute's spec the operator would touch (`parentRefs`, `hostnames`,
//! `rules`, `backendRefs`) is an atomic list: applying any of them takes the whole list from
//! whoever owns it (a GitOps tool would take it back, and so on). So the operator never writes
//! the user's route. The user writes a *template*: an HTTPRoute without `parentRefs`, which no
//! Gateway serves. For each template the operator writes and wholly owns one copy,
//! [`copy_name`] (`<template>-failover`), with the template's `hostnames` and `rules` and the
//! `parentRefs` the tier decision chooses ([`attachment`]): the primary Gateway, the backup
//! Gateway while failed over, both during a gradual failback. The copy carries the policy's
//! label and an ownerReference to it; on deletion it is handed back attached to the primary
//! Gateway (never deleted: it is what serves the traffic).
//!
//! Types: the `gateway-api` crate pins another kube and k8s-openapi, so the few fields read and
//! written here are typed by hand ([`HttpRoute`], [`Gateway`]); `hostnames` and `rules` stay
//! JSON so that nothing in them is lost in the copy. Only the copy is ever sent, whole.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::{FailoverPolicySpec, GatewayRef, GatewayTierSpec};
use crate::engine::{GatewayFact, IngressDesired, LbTier};

use super::actuate::{ActuateError, HANDED_BACK_ANNOTATION, MANAGER};
use super::context::Context;
use super::desired::POLICY_LABEL;

/// The API group of the Gateway API.
pub const GROUP: &str = "gateway.networking.k8s.io";
/// Suffix of a template's copy.
pub const COPY_SUFFIX: &str = "-failover";
/// On a copy: the template it was made from.
pub const TEMPLATE_ANNOTATION: &str = "ingressfailover.io/template";
/// What `/readyz` names the two caches.
pub const CACHES: [&str; 2] = ["httproutes", "gateways"];

/// A condition as Gateway API objects carry them (only what the operator reads).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A Gateway as the operator reads it: its generation and status. Never written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Gateway {
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<GatewayStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct GatewayStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub listeners: Vec<ListenerStatus>,
    #[serde(default)]
    pub addresses: Vec<Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ListenerStatus {
    pub name: String,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// An HTTPRoute: templates are read, copies are read and written whole.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HttpRoute {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: HttpRouteSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<ParentRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostnames: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Value>,
}

/// An HTTPRoute `parentRef` (the fields the operator writes; group and kind are defaulted by
/// the CRD to the Gateway API's Gateway and written explicitly).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

macro_rules! gateway_api_resource {
    ($t:ty, $kind:literal, $plural:literal) => {
        impl Resource for $t {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;
            fn kind(_: &()) -> Cow<'_, str> {
                $kind.into()
            }
            fn group(_: &()) -> Cow<'_, str> {
                GROUP.into()
            }
            fn version(_: &()) -> Cow<'_, str> {
                "v1".into()
            }
            fn plural(_: &()) -> Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
gateway_api_resource!(HttpRoute, "HTTPRoute", "httproutes");
gateway_api_resource!(Gateway, "Gateway", "gateways");

/// The caches of `--gateway-api`.
#[derive(Clone)]
pub struct GatewayStores {
    pub routes: Store<HttpRoute>,
    pub gateways: Store<Gateway>,
    /// Set once the Gateway cache has listed: a Gateway absent from it then does not exist.
    pub listed: Arc<std::sync::atomic::AtomicBool>,
}

/// FNV-1a 32 of a name, for the shortened copy name.
fn fnv32(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The name of a template's copy: `<template>-failover`, or, when that would pass the 253
/// characters of an object name, the template's first 226 characters (trailing dots and dashes
/// dropped) with a hash of the whole name: `<prefix>-<8 hex>-failover`.
pub fn copy_name(template: &str) -> String {
    const MAX: usize = 253;
    if template.len() + COPY_SUFFIX.len() <= MAX {
        return format!("{template}{COPY_SUFFIX}");
    }
    let keep = MAX - COPY_SUFFIX.len() - 9;
    let mut cut = keep.min(template.len());
    while !template.is_char_boundary(cut) {
        cut -= 1;
    }
    let prefix = template[..cut].trim_end_matches(['-', '.']);
    format!("{prefix}-{:08x}{COPY_SUFFIX}", fnv32(template))
}

/// Where the copies attach for a tier decision: the primary Gateway while all traffic is on
/// the primary side, the backup while none is, both during a gradual failback (either Gateway
/// serves the routes; how traffic splits between them is the DNS tier's to decide). A side
/// the DNS records left stays attached while it drains (`spec.dns`: resolvers may still send
/// clients there for one TTL).
pub fn attachment<'a>(
    tier: &'a GatewayTierSpec,
    want: &IngressDesired,
    draining: Option<LbTier>,
) -> Vec<&'a GatewayRef> {
    let primary = want.primary_weight_percent > 0 || draining == Some(LbTier::Primary);
    let backup = want.primary_weight_percent < 100 || draining == Some(LbTier::Backup);
    let mut out = Vec::new();
    if primary {
        out.push(&tier.primary_gateway);
    }
    if backup {
        out.push(&tier.backup_gateway);
    }
    out
}

/// A Gateway as a parentRef, its namespace written out (the policy's when omitted).
pub fn parent_ref(g: &GatewayRef, ns: &str) -> ParentRef {
    ParentRef {
        group: Some(GROUP.to_string()),
        kind: Some("Gateway".to_string()),
        namespace: Some(g.namespace.clone().unwrap_or_else(|| ns.to_string())),
        name: g.name.clone(),
        section_name: g.section_name.clone(),
        port: None,
    }
}

/// Whether two parentRefs name the same listener (a missing namespace is the route's own,
/// missing group and kind the CRD's defaults).
fn same_parent(a: &ParentRef, b: &ParentRef, ns: &str) -> bool {
    let group = |p: &ParentRef| p.group.clone().unwrap_or_else(|| GROUP.to_string());
    let kind = |p: &ParentRef| p.kind.clone().unwrap_or_else(|| "Gateway".to_string());
    let pns = |p: &ParentRef| p.namespace.clone().unwrap_or_else(|| ns.to_string());
    group(a) == group(b)
        && kind(a) == kind(b)
        && pns(a) == pns(b)
        && a.name == b.name
        && a.section_name == b.section_name
        && a.port == b.port
}

/// The weights of the managed Service's backendRef and of its emergency sibling in the copies
/// (`spec.gateway.backendWeights`), multiplied out: per serving backend times the backends
/// each Service publishes, so every backend gets the share HAProxy gives a server of that
/// weight, and a Service with nothing published gets none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteWeights {
    /// The managed Service (the template's backendRef to it is weighted).
    pub service: String,
    /// `<managed>-emergency`, added beside it.
    pub emergency_service: String,
    pub primary: u32,
    pub emergency: u32,
}

/// Gateway API's ceiling for a backendRef weight.
const MAX_WEIGHT: u64 = 1_000_000;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl RouteWeights {
    /// From per-backend weights, published counts and the emergency ramp's percent. None when
    /// no emergency traffic is due (nothing published there, or weight 0): the copies then keep
    /// the template's own backendRefs and weights.
    pub fn of(
        service: String,
        emergency_service: String,
        (per_primary, primaries): (u32, usize),
        (per_emergency, emergencies, percent): (u32, usize, u32),
    ) -> Option<Self> {
        let emergency = u64::from(per_emergency) * emergencies as u64 * u64::from(percent.min(100));
        if emergency == 0 {
            return None;
        }
        let primary = u64::from(per_primary) * primaries as u64 * 100;
        // In hundredths so far: reduce by what both share of the 100, then fit the ceiling,
        // never rounding a non-zero share to nothing.
        let common = gcd(gcd(primary, emergency), 100).max(1);
        let (primary, emergency) = (primary / common, emergency / common);
        let scale = primary.max(emergency).div_ceil(MAX_WEIGHT).max(1);
        let fit = |w: u64| -> u32 {
            if w == 0 {
                0
            } else {
                u32::try_from((w / scale).max(1)).unwrap_or(u32::MAX)
            }
        };
        Some(RouteWeights {
            service,
            emergency_service,
            primary: fit(primary),
            emergency: fit(emergency),
        })
    }
}

/// Whether a backendRef names the Service `name` of the route's namespace `ns` (group and
/// kind omitted mean a core Service).
fn names_service(backend: &Value, ns: &str, name: &str) -> bool {
    let field = |k: &str| backend.get(k).and_then(Value::as_str);
    field("group").unwrap_or("").is_empty()
        && field("kind").unwrap_or("Service") == "Service"
        && field("namespace").unwrap_or(ns) == ns
        && field("name") == Some(name)
}

/// `rules` with every backendRef to the managed Service weighted and followed by the same ref
/// to the emergency Service; refs to the emergency Service already there are dropped (the
/// template's own: the operator decides that weight). Other refs are left as they are.
pub fn weigh_rules(rules: &Value, ns: &str, weights: &RouteWeights) -> Value {
    let mut rules = without_service(rules.clone(), ns, &weights.emergency_service);
    for rule in rules.as_array_mut().into_iter().flatten() {
        let Some(refs) = rule.get_mut("backendRefs").and_then(Value::as_array_mut) else {
            continue;
        };
        let mut out = Vec::with_capacity(refs.len() + 1);
        for r in refs.drain(..) {
            if names_service(&r, ns, &weights.service) {
                let mut primary = r.clone();
                primary["weight"] = json!(weights.primary);
                let mut emergency = r;
                emergency["name"] = json!(weights.emergency_service);
                emergency["weight"] = json!(weights.emergency);
                out.push(primary);
                out.push(emergency);
            } else {
                out.push(r);
            }
        }
        *refs = out;
    }
    rules
}

/// `rules` without backendRefs to the Service `name`.
fn without_service(mut rules: Value, ns: &str, name: &str) -> Value {
    for rule in rules.as_array_mut().into_iter().flatten() {
        if let Some(refs) = rule.get_mut("backendRefs").and_then(Value::as_array_mut) {
            refs.retain(|b| !names_service(b, ns, name));
        }
    }
    rules
}

/// Whether a copy's rules send anything to the Service `name` (for retiring it only once no
/// copy does).
pub fn routes_to(copy: &HttpRoute, ns: &str, name: &str) -> bool {
    copy.spec
        .rules
        .iter()
        .flat_map(|r| r.as_array())
        .flatten()
        .any(|rule| {
            rule.get("backendRefs")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|b| names_service(b, ns, name)))
        })
}

/// The copy of `template` the operator wants: metadata it owns (the policy label, the template
/// annotation, the ownerReference) and the whole spec, its backendRefs weighted when an
/// emergency is weighted in.
pub fn desired_copy(
    template: &HttpRoute,
    ns: &str,
    parents: &[&GatewayRef],
    weights: Option<&RouteWeights>,
    owner: Option<&OwnerReference>,
    policy: &str,
) -> HttpRoute {
    let tname = template.metadata.name.clone().unwrap_or_default();
    let mut annotations = BTreeMap::from([(TEMPLATE_ANNOTATION.to_string(), tname.clone())]);
    let mut labels = BTreeMap::new();
    match owner {
        Some(_) => {
            labels.insert(POLICY_LABEL.to_string(), policy.to_string());
        }
        None => {
            annotations.insert(HANDED_BACK_ANNOTATION.to_string(), policy.to_string());
        }
    }
    HttpRoute {
        metadata: ObjectMeta {
            name: Some(copy_name(&tname)),
            namespace: Some(ns.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: owner.map(|o| vec![o.clone()]),
            ..Default::default()
        },
        spec: HttpRouteSpec {
            parent_refs: parents.iter().map(|g| parent_ref(g, ns)).collect(),
            hostnames: template.spec.hostnames.clone(),
            rules: match (&template.spec.rules, weights) {
                (Some(rules), Some(w)) => Some(weigh_rules(rules, ns, w)),
                (rules, _) => rules.clone(),
            },
        },
    }
}

/// The body of the server-side apply of a copy.
pub fn apply_body(copy: &HttpRoute) -> Value {
    let mut v = serde_json::to_value(copy).expect("an HTTPRoute serializes");
    v["apiVersion"] = json!(format!("{GROUP}/v1"));
    v["kind"] = json!("HTTPRoute");
    v
}

/// Whether the cached copy already says what `desired` says (so nothing is written).
pub fn copy_matches(observed: &HttpRoute, desired: &HttpRoute, ns: &str) -> bool {
    let (o, d) = (&observed.spec, &desired.spec);
    let parents = o.parent_refs.len() == d.parent_refs.len()
        && o.parent_refs
            .iter()
            .zip(&d.parent_refs)
            .all(|(a, b)| same_parent(a, b, ns));
    let has_all = |have: &Option<BTreeMap<String, String>>,
                   want: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let owners = observed
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default();
    let want_owners = desired
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default();
    let owner_ok = if want_owners.is_empty() {
        owners.iter().all(|o| o.kind != "FailoverPolicy")
    } else {
        want_owners
            .iter()
            .all(|w| owners.iter().any(|o| o.uid == w.uid))
    };
    parents
        && o.hostnames == d.hostnames
        && o.rules == d.rules
        && has_all(&observed.metadata.labels, &desired.metadata.labels)
        && has_all(
            &observed.metadata.annotations,
            &desired.metadata.annotations,
        )
        && owner_ok
}

fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    use kube::core::SelectorExt;
    kube::core::Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels))
}

/// Whether `tier` names or selects the HTTPRoute `name` with `labels` as a template.
pub fn names_template(
    tier: &GatewayTierSpec,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    tier.routes.iter().any(|n| n == name)
        || tier.selector.as_ref().is_some_and(|s| selects(s, labels))
}

/// What a policy's templates are, as the cache shows them, and what is wrong with them.
#[derive(Debug, Default)]
pub struct Templates {
    /// Templates the copies are made of (those refused are not here).
    pub usable: Vec<Arc<HttpRoute>>,
    /// Every template named or selected, refused or not (their copies are the policy's).
    pub names: Vec<String>,
    /// The same templates, as cached (for claims).
    pub found: Vec<Arc<HttpRoute>>,
    /// Named templates not found, templates refused: for `Ready=False`.
    pub problems: Vec<String>,
}

/// The templates `tier` names or selects in `ns`. The operator's own copies are never
/// templates. A template with parentRefs is refused: it would serve the same hostnames on the
/// same listener as its copy, and a failover would leave it where it is.
pub fn templates(routes: &Store<HttpRoute>, ns: &str, tier: &GatewayTierSpec) -> Templates {
    let found = routes.state_filter(|r| {
        r.metadata.namespace.as_deref() == Some(ns)
            && !r.labels().contains_key(POLICY_LABEL)
            && !r.annotations().contains_key(TEMPLATE_ANNOTATION)
            && names_template(tier, &r.name_any(), r.labels())
    });
    let mut out = Templates::default();
    for name in &tier.routes {
        if !found
            .iter()
            .any(|r| r.metadata.name.as_deref() == Some(name))
        {
            out.problems
                .push(format!("HTTPRoute template {ns}/{name} not found"));
        }
    }
    let mut found = found;
    found.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out.found.clone_from(&found);
    for r in found {
        let name = r.name_any();
        out.names.push(name.clone());
        if r.spec.parent_refs.is_empty() {
            out.usable.push(r);
        } else {
            out.problems.push(format!(
                "HTTPRoute template {ns}/{name} has parentRefs: remove them (the operator attaches its copy {} to the Gateways; the template attached too would serve the same hostnames on the same listener and stay there on failover)",
                copy_name(&name)
            ));
        }
    }
    out
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn describe(c: Option<&Condition>, type_: &str) -> String {
    match c {
        None => format!("no {type_} condition"),
        Some(c) => format!(
            "condition {type_} is {}{}",
            c.status,
            c.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
    }
}

/// What a Gateway's status says (pure): serving when `Accepted` and `Programmed` are True for
/// its current generation and its listener (`section`, else every listener, at least one) is
/// `Programmed`. A Gateway absent from a cache that `listed` every Gateway in its namespace is
/// missing; absent otherwise, unknown.
pub fn gateway_fact(
    gw: Option<&Gateway>,
    section: Option<&str>,
    listed: bool,
) -> Option<GatewayFact> {
    let Some(gw) = gw else {
        return listed.then_some(GatewayFact::Missing);
    };
    let generation = gw.metadata.generation;
    let status = gw.status.clone().unwrap_or_default();
    for type_ in ["Accepted", "Programmed"] {
        let c = condition(&status.conditions, type_);
        let current = c.is_some_and(|c| {
            c.observed_generation.is_none()
                || generation.is_none()
                || c.observed_generation == generation
        });
        if c.is_some_and(|c| c.status == "True") && !current {
            return Some(GatewayFact::NotServing(format!(
                "condition {type_} is for generation {}, not the current {}",
                c.and_then(|c| c.observed_generation).unwrap_or_default(),
                generation.unwrap_or_default()
            )));
        }
        if c.is_none_or(|c| c.status != "True") {
            return Some(GatewayFact::NotServing(describe(c, type_)));
        }
    }
    let listeners: Vec<&ListenerStatus> = status
        .listeners
        .iter()
        .filter(|l| section.is_none_or(|s| l.name == s))
        .collect();
    if listeners.is_empty() {
        return Some(GatewayFact::NotServing(match section {
            Some(s) => format!("no status for listener {s}"),
            None => "no listener status".to_string(),
        }));
    }
    for l in listeners {
        let c = condition(&l.conditions, "Programmed");
        if c.is_none_or(|c| c.status != "True") {
            return Some(GatewayFact::NotServing(format!(
                "listener {}: {}",
                l.name,
                describe(c, "Programmed")
            )));
        }
    }
    Some(GatewayFact::Serving)
}

/// The cached Gateway `g` names, as a fact, and a problem when it cannot be seen.
pub fn observe_gateway(
    stores: &GatewayStores,
    namespaces: &[String],
    ns: &str,
    g: &GatewayRef,
    synced: bool,
    what: &str,
    problems: &mut Vec<String>,
) -> Option<GatewayFact> {
    let gns = g.namespace.as_deref().unwrap_or(ns);
    let in_scope = namespaces.is_empty() || namespaces.iter().any(|n| n == gns);
    if !in_scope {
        problems.push(format!(
            "{what} Gateway {gns}/{} is in a namespace the operator does not watch",
            g.name
        ));
        return None;
    }
    let gw = stores
        .gateways
        .get(&kube::runtime::reflector::ObjectRef::new(&g.name).within(gns));
    if gw.is_none() && synced {
        problems.push(format!("{what} Gateway {gns}/{} not found", g.name));
    }
    gateway_fact(gw.as_deref(), g.section_name.as_deref(), synced)
}

/// The addresses a Gateway's status lists (`status.addresses[].value`, IPs and host names):
/// where its load balancer answers, for the DNS tier.
pub fn gateway_addresses(stores: &GatewayStores, ns: &str, g: &GatewayRef) -> Vec<String> {
    let gns = g.namespace.as_deref().unwrap_or(ns);
    let Some(gw) = stores
        .gateways
        .get(&kube::runtime::reflector::ObjectRef::new(&g.name).within(gns))
    else {
        return Vec::new();
    };
    let mut v: Vec<String> = gw
        .status
        .iter()
        .flat_map(|s| s.addresses.iter())
        .filter_map(|a| a.get("value")?.as_str().map(str::to_string))
        .filter(|a| !a.is_empty())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Which copies to write: those whose cache differs from the wanted copy (pure).
pub fn plan_copies(
    templates: &[Arc<HttpRoute>],
    cached: &[Arc<HttpRoute>],
    ns: &str,
    parents: &[&GatewayRef],
    weights: Option<&RouteWeights>,
    owner: Option<&OwnerReference>,
    policy: &str,
) -> Vec<HttpRoute> {
    templates
        .iter()
        .map(|t| desired_copy(t, ns, parents, weights, owner, policy))
        .filter(|want| {
            !cached
                .iter()
                .any(|c| c.metadata.name == want.metadata.name && copy_matches(c, want, ns))
        })
        .collect()
}

/// The copies in `ns` this policy's label marks.
pub fn copies_of(routes: &Store<HttpRoute>, ns: &str, policy: &str) -> Vec<Arc<HttpRoute>> {
    routes.state_filter(|r| {
        r.metadata.namespace.as_deref() == Some(ns)
            && r.labels().get(POLICY_LABEL).map(String::as_str) == Some(policy)
    })
}

fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

async fn apply(ctx: &Context, ns: &str, copy: &HttpRoute) -> Result<(), ActuateError> {
    let api: Api<HttpRoute> = Api::namespaced(ctx.client.clone(), ns);
    let name = copy.metadata.name.clone().unwrap_or_default();
    api.patch(&name, &apply_params(), &Patch::Apply(apply_body(copy)))
        .await
        .map_err(|source| ActuateError::Api {
            what: format!("HTTPRoute {ns}/{name}"),
            source,
        })?;
    ctx.metrics.write("httproutes");
    Ok(())
}

/// What one sync of the copies did.
#[derive(Debug, Default)]
pub struct Sync {
    pub written: Vec<String>,
    pub errors: Vec<ActuateError>,
}

#[allow(clippy::too_many_arguments)]
/// Writes the copies the decision `want` needs where the cache differs, and retires copies of
/// templates no longer named: deleted when their template is gone, handed back (attached to
/// the primary Gateway, without the policy's label and ownerReference) when it still exists.
pub async fn sync_copies(
    ctx: &Context,
    stores: &GatewayStores,
    ns: &str,
    tier: &GatewayTierSpec,
    templates: &Templates,
    want: &IngressDesired,
    draining: Option<LbTier>,
    weights: Option<&RouteWeights>,
    owner: &OwnerReference,
    policy: &str,
) -> Sync {
    let mut sync = Sync::default();
    let cached = copies_of(&stores.routes, ns, policy);
    let parents = attachment(tier, want, draining);
    for copy in plan_copies(
        &templates.usable,
        &cached,
        ns,
        &parents,
        weights,
        Some(owner),
        policy,
    ) {
        match apply(ctx, ns, &copy).await {
            Ok(()) => sync
                .written
                .push(copy.metadata.name.clone().unwrap_or_default()),
            Err(e) => sync.errors.push(e),
        }
    }
    for stale in cached.iter().filter(|c| {
        let t = c.annotations().get(TEMPLATE_ANNOTATION);
        t.is_none_or(|t| !templates.names.iter().any(|n| n == t))
    }) {
        if let Err(e) = retire(ctx, stores, ns, tier, stale, policy).await {
            sync.errors.push(e);
        }
    }
    sync
}

/// Hands a copy back (its template still exists) or deletes it (its template is gone).
async fn retire(
    ctx: &Context,
    stores: &GatewayStores,
    ns: &str,
    tier: &GatewayTierSpec,
    copy: &HttpRoute,
    policy: &str,
) -> Result<(), ActuateError> {
    let name = copy.name_any();
    let template = copy.annotations().get(TEMPLATE_ANNOTATION).and_then(|t| {
        stores
            .routes
            .get(&kube::runtime::reflector::ObjectRef::new(t).within(ns))
    });
    match template {
        Some(t) => {
            let back = desired_copy(&t, ns, &[&tier.primary_gateway], None, None, policy);
            apply(ctx, ns, &back).await
        }
        None => {
            let api: Api<HttpRoute> = Api::namespaced(ctx.client.clone(), ns);
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    ctx.metrics.write("httproutes");
                    Ok(())
                }
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(source) => Err(ActuateError::Api {
                    what: format!("HTTPRoute {ns}/{name}"),
                    source,
                }),
            }
        }
    }
}

/// On deletion of the policy: every copy is handed back, never deleted (it serves the
/// traffic): without the policy's label and ownerReference (garbage collection would delete
/// it), attached to the primary Gateway with `restore`, else where it is. Its rules go back to
/// the template's (the weighted emergency Service goes with the policy; where the template is
/// gone, refs to `emergency_service` are dropped).
pub async fn hand_back(
    ctx: &Context,
    stores: &GatewayStores,
    ns: &str,
    tier: &GatewayTierSpec,
    policy: &str,
    emergency_service: Option<&str>,
    restore: bool,
) -> Result<usize, ActuateError> {
    let copies = copies_of(&stores.routes, ns, policy);
    for copy in &copies {
        let mut back = (**copy).clone();
        let template = copy.annotations().get(TEMPLATE_ANNOTATION).and_then(|t| {
            stores
                .routes
                .get(&kube::runtime::reflector::ObjectRef::new(t).within(ns))
        });
        back.spec.rules = match (template, emergency_service) {
            (Some(t), _) => t.spec.rules.clone(),
            (None, Some(e)) => back.spec.rules.map(|r| without_service(r, ns, e)),
            (None, None) => back.spec.rules,
        };
        back.metadata = ObjectMeta {
            name: copy.metadata.name.clone(),
            namespace: copy.metadata.namespace.clone(),
            annotations: Some(BTreeMap::from([
                (
                    TEMPLATE_ANNOTATION.to_string(),
                    copy.annotations()
                        .get(TEMPLATE_ANNOTATION)
                        .cloned()
                        .unwrap_or_default(),
                ),
                (HANDED_BACK_ANNOTATION.to_string(), policy.to_string()),
            ])),
            ..Default::default()
        };
        if restore {
            back.spec.parent_refs = vec![parent_ref(&tier.primary_gateway, ns)];
        }
        apply(ctx, ns, &back).await?;
    }
    Ok(copies.len())
}

/// The Gateway tier's controller Deployments (for triggers).
pub fn controller_deployments(spec: &FailoverPolicySpec) -> Vec<crate::api::NamespacedRef> {
    spec.gateway
        .iter()
        .flat_map(|g| [g.primary_health(), g.backup_health()])
        .filter_map(|h| h.controller_deployment)
        .collect()
}

/// Reads the Gateway tier into the engine's observation: each side's Gateway status (when it
/// is a signal) and what is wrong with the templates and Gateways, as `problems`.
pub fn gather(
    ctx: &Context,
    tier: &GatewayTierSpec,
    ns: &str,
    obs: &mut crate::engine::Observation,
    problems: &mut Vec<String>,
) {
    let Some(stores) = &ctx.stores.gateway else {
        problems.push(DISABLED.to_string());
        return;
    };
    let listed = stores.listed.load(std::sync::atomic::Ordering::SeqCst);
    let namespaces = &ctx.stores.namespaces;
    for (g, health, what, fact) in [
        (
            &tier.primary_gateway,
            tier.primary_health(),
            "primary",
            &mut obs.lb_gateway,
        ),
        (
            &tier.backup_gateway,
            tier.backup_health(),
            "backup",
            &mut obs.backup_gateway,
        ),
    ] {
        let seen = observe_gateway(stores, namespaces, ns, g, listed, what, problems);
        if health.gateway_status {
            *fact = seen;
        }
    }
    if listed {
        problems.extend(templates(&stores.routes, ns, tier).problems);
    }
}

/// The message of `Ready=False` for a policy with `spec.gateway` while the operator runs
/// without `--gateway-api`.
pub const DISABLED: &str = "spec.gateway needs the Gateway API caches: start the operator with --gateway-api (chart value gatewayAPI.enabled=true, which also grants access to httproutes and gateways); until then the Gateway tier is neither judged nor moved";

#[cfg(test)]
mod tests {
    use super::*;

    fn tier() -> GatewayTierSpec {
        serde_json::from_value(json!({
            "routes": ["web"],
            "primaryGateway": {"name": "gw-a"},
            "backupGateway": {"name": "gw-b", "namespace": "edge", "sectionName": "http"},
        }))
        .unwrap()
    }

    fn gw(generation: i64, conds: &[(&str, &str, i64)], listeners: &[(&str, &str)]) -> Gateway {
        Gateway {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..Default::default()
            },
            status: Some(GatewayStatus {
                conditions: conds
                    .iter()
                    .map(|(t, s, g)| Condition {
                        type_: t.to_string(),
                        status: s.to_string(),
                        observed_generation: Some(*g),
                        reason: Some("Why".into()),
                        message: None,
                    })
                    .collect(),
                listeners: listeners
                    .iter()
                    .map(|(n, s)| ListenerStatus {
                        name: n.to_string(),
                        conditions: vec![Condition {
                            type_: "Programmed".into(),
                            status: s.to_string(),
                            ..Default::default()
                        }],
                    })
                    .collect(),
                addresses: Vec::new(),
            }),
        }
    }

    type Row<'a> = (
        &'a str,
        Option<Gateway>,
        Option<&'a str>,
        bool,
        Option<GatewayFact>,
    );

    /// (Gateway, sectionName, listed) → fact.
    #[test]
    fn gateway_facts() {
        let ok = [("Accepted", "True", 2), ("Programmed", "True", 2)];
        let serving = Some(GatewayFact::Serving);
        let not = |s: &str| Some(GatewayFact::NotServing(s.to_string()));
        let rows: Vec<Row> = vec![
            (
                "all True",
                Some(gw(2, &ok, &[("http", "True")])),
                None,
                true,
                serving.clone(),
            ),
            (
                "absent, listed",
                None,
                None,
                true,
                Some(GatewayFact::Missing),
            ),
            ("absent, not listed", None, None, false, None),
            (
                "Programmed False",
                Some(gw(
                    2,
                    &[("Accepted", "True", 2), ("Programmed", "False", 2)],
                    &[("http", "True")],
                )),
                None,
                true,
                not("condition Programmed is False (Why)"),
            ),
            (
                "stale generation",
                Some(gw(3, &ok, &[("http", "True")])),
                None,
                true,
                not("condition Accepted is for generation 2, not the current 3"),
            ),
            (
                "no status",
                Some(Gateway::default()),
                None,
                true,
                not("no Accepted condition"),
            ),
            (
                "one listener down",
                Some(gw(2, &ok, &[("http", "True"), ("https", "False")])),
                None,
                true,
                not("listener https: condition Programmed is False"),
            ),
            (
                "only its section counts",
                Some(gw(2, &ok, &[("http", "True"), ("https", "False")])),
                Some("http"),
                true,
                serving.clone(),
            ),
            (
                "its section is missing",
                Some(gw(2, &ok, &[("https", "True")])),
                Some("http"),
                true,
                not("no status for listener http"),
            ),
            (
                "no listener",
                Some(gw(2, &ok, &[])),
                None,
                true,
                not("no listener status"),
            ),
        ];
        for (name, g, section, listed, want) in rows {
            assert_eq!(gateway_fact(g.as_ref(), section, listed), want, "{name}");
        }
    }

    #[test]
    fn copy_names_are_object_names() {
        assert_eq!(copy_name("web"), "web-failover");
        for len in [240, 244, 245, 253] {
            let t = format!("{}.b-c", "a".repeat(len - 4));
            let n = copy_name(&t);
            assert!(n.len() <= 253, "{len}: {}", n.len());
            assert!(n.ends_with(COPY_SUFFIX));
            k8s_rules::names::dns1123_subdomain(&n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
        assert_ne!(copy_name(&"a".repeat(250)), copy_name(&"a".repeat(251)));
    }

    fn want(weight: u32) -> IngressDesired {
        IngressDesired {
            active_class: String::new(),
            primary_weight_percent: weight,
        }
    }

    #[test]
    fn attachment_follows_the_decision() {
        let t = tier();
        let names = |w, draining| {
            attachment(&t, &want(w), draining)
                .iter()
                .map(|g| g.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(100, None), ["gw-a"]);
        assert_eq!(names(0, None), ["gw-b"]);
        assert_eq!(names(50, None), ["gw-a", "gw-b"]);
        // A side the DNS records left stays attached while it drains.
        assert_eq!(names(0, Some(LbTier::Primary)), ["gw-a", "gw-b"]);
        assert_eq!(names(100, Some(LbTier::Backup)), ["gw-a", "gw-b"]);
        assert_eq!(names(100, Some(LbTier::Primary)), ["gw-a"]);
    }

    fn template(parents: Value) -> Arc<HttpRoute> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
                "spec": {"parentRefs": parents, "hostnames": ["shop.example"],
                    "rules": [{"backendRefs": [{"name": "web-healthy", "port": 80}]}]},
            }))
            .unwrap(),
        )
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "ingressfailover.io/v1alpha1".into(),
            kind: "FailoverPolicy".into(),
            name: "web".into(),
            uid: "u1".into(),
            ..Default::default()
        }
    }

    /// (template, cached copy, decision) → copies written. Nothing is written while the cache
    /// says what is wanted; the CRD's defaulted group/kind and an omitted namespace match.
    #[test]
    fn plan_copies_writes_only_differences() {
        let t = tier();
        let tpl = template(json!([]));
        let o = owner();
        let want_a = desired_copy(&tpl, "shop", &[&t.primary_gateway], None, Some(&o), "web");
        assert_eq!(want_a.metadata.name.as_deref(), Some("web-failover"));
        assert_eq!(want_a.spec.rules, tpl.spec.rules);
        assert_eq!(want_a.spec.hostnames, tpl.spec.hostnames);
        let mut as_defaulted = want_a.clone();
        as_defaulted.spec.parent_refs[0].namespace = None;
        as_defaulted.metadata.resource_version = Some("7".into());
        let cached = vec![Arc::new(as_defaulted)];
        let plan = |w: u32, cached: &[Arc<HttpRoute>]| {
            plan_copies(
                std::slice::from_ref(&tpl),
                cached,
                "shop",
                &attachment(&t, &want(w), None),
                None,
                Some(&o),
                "web",
            )
        };
        assert!(plan(100, &cached).is_empty(), "steady state writes nothing");
        let moved = plan(0, &cached);
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].spec.parent_refs[0].name, "gw-b");
        assert_eq!(
            moved[0].spec.parent_refs[0].namespace.as_deref(),
            Some("edge")
        );
        assert_eq!(plan(50, &cached)[0].spec.parent_refs.len(), 2);
        assert_eq!(plan(100, &[]).len(), 1, "absent: written");
        // A template edit is copied.
        let mut edited = (*tpl).clone();
        edited.spec.hostnames = Some(json!(["shop.example", "www.shop.example"]));
        let p = plan_copies(
            &[Arc::new(edited)],
            &cached,
            "shop",
            &[&t.primary_gateway],
            None,
            Some(&o),
            "web",
        );
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].spec.hostnames,
            Some(json!(["shop.example", "www.shop.example"]))
        );
    }

    #[test]
    fn apply_body_is_the_whole_copy_and_nothing_else() {
        let t = tier();
        let copy = desired_copy(
            &template(json!([])),
            "shop",
            &[&t.backup_gateway],
            None,
            Some(&owner()),
            "web",
        );
        let body = apply_body(&copy);
        assert_eq!(body["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(body["kind"], "HTTPRoute");
        assert_eq!(
            body["spec"]["parentRefs"],
            json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "edge", "name": "gw-b", "sectionName": "http"}])
        );
        let keys: Vec<&String> = body["spec"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["hostnames", "parentRefs", "rules"]);
        assert!(body.get("status").is_none());
    }

    fn weights(primary: (u32, usize), emergency: (u32, usize, u32)) -> Option<RouteWeights> {
        RouteWeights::of("web".into(), "web-emergency".into(), primary, emergency)
    }

    /// Per-backend weights times published backends, as HAProxy shares traffic among servers.
    #[test]
    fn route_weights_are_per_backend_times_published() {
        let w = |p, e| weights(p, e).map(|w| (w.primary, w.emergency));
        // The runbook: 4 primaries at 100, 2 emergency servers at 50 → 400 : 100.
        assert_eq!(w((100, 4), (50, 2, 100)), Some((400, 100)));
        // Ramp steps scale the emergency side only.
        assert_eq!(w((100, 4), (50, 2, 50)), Some((400, 50)));
        assert_eq!(w((100, 4), (50, 2, 25)), Some((400, 25)));
        assert_eq!(
            w((100, 3), (50, 1, 33)),
            Some((600, 33)),
            "reduced only by what both share of the hundredths"
        );
        // No emergency traffic due: the template's weights stay.
        assert_eq!(w((100, 4), (50, 0, 100)), None);
        assert_eq!(w((100, 4), (50, 2, 0)), None);
        // Every primary out: all traffic to the emergency Service.
        assert_eq!(w((100, 0), (50, 3, 100)), Some((0, 150)));
        // Beyond Gateway API's ceiling: scaled, the emergency share never rounded to nothing.
        let big = weights((1000, 100_000), (1, 1, 1)).unwrap();
        assert!(big.primary <= 1_000_000, "{big:?}");
        assert_eq!(big.emergency, 1);
    }

    #[test]
    fn weigh_rules_adds_the_emergency_sibling_and_leaves_other_refs() {
        let rules = json!([
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
             "backendRefs": [
                {"group": "", "kind": "Service", "name": "web", "port": 80, "weight": 1},
                {"name": "static", "port": 8080, "weight": 3},
                {"name": "web", "namespace": "other", "port": 80},
                {"name": "web-emergency", "port": 80, "weight": 9}
             ]},
            {"backendRefs": [{"name": "web", "port": 80, "filters": [{"type": "RequestHeaderModifier"}]}]},
            {"filters": [{"type": "RequestRedirect"}]}
        ]);
        let w = weights((100, 4), (50, 2, 100)).unwrap();
        let out = weigh_rules(&rules, "shop", &w);
        assert_eq!(
            out[0]["backendRefs"],
            json!([
                {"group": "", "kind": "Service", "name": "web", "port": 80, "weight": 400},
                {"group": "", "kind": "Service", "name": "web-emergency", "port": 80, "weight": 100},
                {"name": "static", "port": 8080, "weight": 3},
                {"name": "web", "namespace": "other", "port": 80}
            ]),
            "the template's own ref to the emergency Service is dropped; another namespace's web is not ours"
        );
        assert_eq!(
            out[1]["backendRefs"][1],
            json!({"name": "web-emergency", "port": 80, "weight": 100, "filters": [{"type": "RequestHeaderModifier"}]})
        );
        assert_eq!(out[2], rules[2]);
        let copy = HttpRoute {
            spec: HttpRouteSpec {
                rules: Some(out.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(routes_to(&copy, "shop", "web-emergency"));
        let back = without_service(out, "shop", "web-emergency");
        assert_eq!(back[1]["backendRefs"].as_array().unwrap().len(), 1);
    }
}
