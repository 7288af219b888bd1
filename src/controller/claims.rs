//! One owner per written object. Two policies naming the same Ingress, managed Service or
//! emergency Deployment would take turns overwriting it (thousands of writes a minute when
//! their decisions differ). Every object the operator writes belongs to exactly one policy:
//! the one its label names (`ingressfailover.io/claimed-by` on Ingresses and Deployments people
//! own, `ingressfailover.io/policy` on what the operator created) while that policy claims it,
//! otherwise the oldest claimant (creation time, then name), so every reconcile of every
//! policy reaches the same verdict without coordination. A policy that claims an object owned
//! by another writes nothing at all and says so (`Ready=False`, reason `Conflict`, an Event).

use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::api::{FailoverPolicy, FailoverPolicySpec};

use super::actuate::{IngressSelection, managed_ingresses};
use super::context::Context;
use super::desired::{CLAIM_LABEL, POLICY_LABEL};
use super::index::PolicyKey;

/// An object a policy writes, in the policy's namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Claim {
    /// The managed Service and its EndpointSlices.
    Service(String),
    /// The emergency Deployment (its replicas).
    Deployment(String),
    /// A source Ingress (its class, or the mirror made of it).
    Ingress(String),
    /// An HTTPRoute template (the copy made of it), with its labels for selectors.
    Route(String, std::collections::BTreeMap<String, String>),
}

impl Claim {
    fn kind(&self) -> &'static str {
        match self {
            Claim::Service(_) => "Service",
            Claim::Deployment(_) => "Deployment",
            Claim::Ingress(_) => "Ingress",
            Claim::Route(..) => "HTTPRoute",
        }
    }

    fn name(&self) -> &str {
        match self {
            Claim::Service(n) | Claim::Deployment(n) | Claim::Ingress(n) | Claim::Route(n, _) => n,
        }
    }

    /// Where every policy that may claim this object is filed in the policy index (a
    /// superset: reading a Service is filed there too, and [`claims_one`] decides).
    fn index_key(&self, ns: &str) -> PolicyKey {
        match self {
            Claim::Service(n) => PolicyKey::service(ns, n),
            Claim::Deployment(n) => PolicyKey::deployment(ns, n),
            Claim::Ingress(_) => PolicyKey::Ingresses(ns.to_string()),
            Claim::Route(..) => PolicyKey::Routes(ns.to_string()),
        }
    }
}

/// An object claimed by this policy and owned by another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub object: String,
    pub owner: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} belongs to FailoverPolicy {}",
            self.object, self.owner
        )
    }
}

/// The objects `spec` makes the operator write (selected Ingresses as the cache shows them).
pub fn claims(ctx: &Context, ns: &str, spec: &FailoverPolicySpec) -> Vec<Claim> {
    let mut out = vec![Claim::Service(spec.managed_service.name.clone())];
    out.extend(spec.weighted_emergency_service().map(Claim::Service));
    if let Some(d) = spec
        .backends
        .emergency
        .as_ref()
        .and_then(|e| e.deployment.as_ref())
    {
        out.push(Claim::Deployment(d.name.clone()));
    }
    out.extend(
        managed_ingresses(ctx, ns, spec)
            .iter()
            .map(|i| Claim::Ingress(i.name_any())),
    );
    if let (Some(tier), Some(stores)) = (&spec.gateway, &ctx.stores.gateway) {
        out.extend(
            super::gateway::templates(&stores.routes, ns, tier)
                .found
                .iter()
                .map(|r| Claim::Route(r.name_any(), r.labels().clone())),
        );
    }
    out.sort();
    out.dedup();
    out
}

/// Bumped whenever what any policy claims may have changed: a policy created, deleted or
/// given a new spec (generation), an Ingress or HTTPRoute template changed (selectors match
/// labels), a relist. A reconcile that found no rival at one epoch needs no new look while the
/// epoch stays: at 10,000 policies in one namespace that look was a scan of the whole fleet on
/// every reconcile (issue 16).
#[derive(Debug, Default)]
pub struct Epoch {
    value: std::sync::atomic::AtomicU64,
}

impl Epoch {
    pub fn current(&self) -> u64 {
        self.value.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Something any policy's claims read changed.
    pub fn bump(&self) {
        self.value.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// A policy watch event, seen before `store` applies it: bumps on a new policy (or one
    /// recreated under the same name), a new generation, a deletion or a relist. The store
    /// still holds the version before the event, so a status write (same generation) is told
    /// apart without a memory of its own.
    pub fn observe(
        &self,
        event: &kube::runtime::watcher::Event<FailoverPolicy>,
        store: &kube::runtime::reflector::Store<FailoverPolicy>,
    ) {
        use kube::runtime::watcher::Event;
        match event {
            Event::Apply(p) | Event::InitApply(p) => {
                let same = store.get(&ObjectRef::from_obj(p)).is_some_and(|before| {
                    before.metadata.uid == p.metadata.uid
                        && before.metadata.generation == p.metadata.generation
                });
                if !same {
                    self.bump();
                }
            }
            Event::Delete(_) | Event::Init | Event::InitDone => self.bump(),
        }
    }
}

/// A policy competing for an object: its name and creation time.
#[derive(Debug, Clone)]
pub struct Claimant<'a> {
    pub name: &'a str,
    pub created: Option<&'a Time>,
}

/// The owner among `claimants` (never empty): the recorded one while it still claims the object,
/// else the oldest (a policy without a creation time, not yet stored, counts as newest).
pub fn owner<'a>(claimants: &[Claimant<'a>], recorded: Option<&str>) -> &'a str {
    if let Some(r) = recorded
        && let Some(c) = claimants.iter().find(|c| c.name == r)
    {
        return c.name;
    }
    claimants
        .iter()
        .min_by_key(|c| (c.created.is_none(), c.created.map(|t| t.0), c.name))
        .map(|c| c.name)
        .expect("the policy itself claims the object")
}

/// The policy an object's label names, as the caches show it.
fn recorded(ctx: &Context, ns: &str, claim: &Claim) -> Option<String> {
    match claim {
        Claim::Ingress(name) => ctx
            .stores
            .ingresses
            .get(&ObjectRef::new(name).within(ns))
            .and_then(|i| i.labels().get(CLAIM_LABEL).cloned()),
        Claim::Deployment(name) => ctx
            .stores
            .deployment(ns, name)
            .and_then(|d| d.labels().get(CLAIM_LABEL).cloned()),
        Claim::Service(name) => super::actuate::managed_slices(ctx, ns, name)
            .first()
            .and_then(|s| s.labels().get(POLICY_LABEL).cloned()),
        Claim::Route(template, _) => ctx.stores.gateway.as_ref().and_then(|g| {
            g.routes
                .get(&ObjectRef::new(&super::gateway::copy_name(template)).within(ns))
                .and_then(|r| r.labels().get(POLICY_LABEL).cloned())
        }),
    }
}

/// Whether `spec` claims `claim`, the Ingress's own labels at hand: the same rule as
/// [`claims`], asked of one object so that finding the other claimants of a policy's few
/// objects costs a comparison per policy of the namespace, not every policy's whole claim list
/// (at 10,000 policies that list, rebuilt on every reconcile, was most of the operator's CPU).
fn claims_one(spec: &FailoverPolicySpec, claim: &Claim, ingress: Option<&Ingress>) -> bool {
    match claim {
        Claim::Service(name) => {
            spec.managed_service.name == *name
                || spec.weighted_emergency_service().as_ref() == Some(name)
        }
        Claim::Deployment(name) => spec
            .backends
            .emergency
            .as_ref()
            .and_then(|e| e.deployment.as_ref())
            .is_some_and(|d| d.name == *name),
        Claim::Ingress(_) => spec
            .ingress
            .as_ref()
            .zip(ingress)
            .is_some_and(|(tier, ing)| IngressSelection::of(tier).ingress(ing)),
        Claim::Route(name, labels) => spec
            .gateway
            .as_ref()
            .is_some_and(|tier| super::gateway::names_template(tier, name, labels)),
    }
}

/// The objects `policy` claims that belong to another policy of its namespace, or None when no
/// other policy claims any of them (then nothing but a new [`Epoch`] can change that).
pub fn conflicts(
    ctx: &Context,
    policy: &FailoverPolicy,
    spec: &FailoverPolicySpec,
) -> Option<Vec<Conflict>> {
    let ns = policy.namespace().unwrap_or_default();
    let me = policy.name_any();
    let ingresses = managed_ingresses(ctx, &ns, spec);
    let mine: Vec<(Claim, Option<&Ingress>)> = claims(ctx, &ns, spec)
        .into_iter()
        .map(|c| {
            let ing = match &c {
                Claim::Ingress(name) => ingresses
                    .iter()
                    .find(|i| i.metadata.name.as_deref() == Some(name.as_str()))
                    .map(|i| &**i),
                _ => None,
            };
            (c, ing)
        })
        .collect();
    let rival = |p: &FailoverPolicy| {
        p.metadata.namespace.as_deref() == Some(ns.as_str())
            && p.metadata.name.as_deref() != Some(me.as_str())
            && mine.iter().any(|(c, ing)| claims_one(&p.spec, c, *ing))
    };
    // The candidates are the policies filed under the claimed objects, not the namespace.
    let mut candidates: Vec<ObjectRef<FailoverPolicy>> = mine
        .iter()
        .flat_map(|(c, _)| ctx.policy_index.refs(&c.index_key(&ns)))
        .collect();
    candidates.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    candidates.dedup();
    let others: Vec<_> = candidates
        .iter()
        .filter_map(|r| ctx.policies.get(r))
        .filter(|p| rival(p))
        .collect();
    if others.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for (claim, ingress) in &mine {
        let mut claimants = vec![Claimant {
            name: &me,
            created: policy.metadata.creation_timestamp.as_ref(),
        }];
        for p in others
            .iter()
            .filter(|p| claims_one(&p.spec, claim, *ingress))
        {
            claimants.push(Claimant {
                name: p.metadata.name.as_deref().unwrap_or_default(),
                created: p.metadata.creation_timestamp.as_ref(),
            });
        }
        if claimants.len() == 1 {
            continue;
        }
        let label = recorded(ctx, &ns, claim);
        let winner = owner(&claimants, label.as_deref());
        if winner != me {
            out.push(Conflict {
                object: format!("{} {ns}/{}", claim.kind(), claim.name()),
                owner: crate::api::PolicyId::new(&ns, winner).to_string(),
            });
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    /// Only what can change a claim moves the epoch: a status write (same generation) does not.
    #[test]
    fn the_epoch_moves_on_new_policies_specs_deletions_and_relists_only() {
        use kube::runtime::watcher::Event;
        let policy = |uid: &str, generation: i64| {
            let mut p: FailoverPolicy = serde_json::from_value(serde_json::json!({
                "apiVersion": "ingressfailover.io/v1alpha1", "kind": "FailoverPolicy",
                "metadata": {"name": uid, "namespace": "shop", "uid": uid, "generation": generation},
                "spec": {"backends": {"primary": {"addresses": ["10.0.1.1:80"]}},
                         "managedService": {"name": "web-healthy"}}
            }))
            .unwrap();
            p.status = Some(Default::default());
            p
        };
        let e = Epoch::default();
        let mut store = Watched::new();
        let mut last = e.current();
        let mut moved = |event: Event<FailoverPolicy>| {
            store.observe(&e, event);
            let now = e.current();
            std::mem::replace(&mut last, now) != now
        };
        assert!(moved(Event::Apply(policy("a", 1))), "a new policy");
        assert!(!moved(Event::Apply(policy("a", 1))), "a status write");
        assert!(moved(Event::Apply(policy("a", 2))), "a spec edit");
        assert!(moved(Event::Apply(policy("b", 1))), "another policy");
        assert!(moved(Event::Delete(policy("b", 1))), "a deletion");
        assert!(moved(Event::Init), "a relist");
        assert!(
            !moved(Event::InitApply(policy("a", 2))),
            "relisted unchanged"
        );
        assert!(moved(Event::InitDone));
    }

    /// The policy cache as the epoch sees it: each event observed, then applied, in the
    /// reflector's order.
    struct Watched {
        store: kube::runtime::reflector::Store<FailoverPolicy>,
        writer: kube::runtime::reflector::store::Writer<FailoverPolicy>,
    }

    impl Watched {
        fn new() -> Self {
            let (store, writer) = kube::runtime::reflector::store();
            Self { store, writer }
        }
        fn observe(&mut self, e: &Epoch, event: kube::runtime::watcher::Event<FailoverPolicy>) {
            e.observe(&event, &self.store);
            self.writer.apply_watcher_event(&event);
        }
    }

    /// A policy deleted while the watch was down never gets its Delete event: after the relist
    /// that follows, it is not remembered, so seeing it again is a new claim.
    #[test]
    fn a_relist_forgets_policies_deleted_while_the_watch_was_down() {
        use kube::runtime::watcher::Event;
        let policy = |uid: &str| {
            let mut p: FailoverPolicy = serde_json::from_value(serde_json::json!({
                "apiVersion": "ingressfailover.io/v1alpha1", "kind": "FailoverPolicy",
                "metadata": {"name": uid, "namespace": "shop", "uid": uid, "generation": 1},
                "spec": {"backends": {"primary": {"addresses": ["10.0.1.1:80"]}},
                         "managedService": {"name": "web-healthy"}}
            }))
            .unwrap();
            p.status = Some(Default::default());
            p
        };
        let e = Epoch::default();
        let mut w = Watched::new();
        for uid in ["a", "b", "c"] {
            w.observe(&e, Event::Apply(policy(uid)));
        }
        let remembered = |w: &Watched| {
            let mut names: Vec<String> = w.store.state().iter().map(|p| p.name_any()).collect();
            names.sort();
            names
        };
        w.observe(&e, Event::Init);
        w.observe(&e, Event::InitApply(policy("a")));
        assert_eq!(
            remembered(&w),
            ["a", "b", "c"],
            "until the relist is complete"
        );
        w.observe(&e, Event::InitApply(policy("c")));
        w.observe(&e, Event::InitDone);
        assert_eq!(remembered(&w), ["a", "c"]);
        let at = e.current();
        w.observe(&e, Event::Apply(policy("c")));
        assert_eq!(
            e.current(),
            at,
            "a relisted policy's status write is still no new claim"
        );
        w.observe(&e, Event::Apply(policy("b")));
        assert_ne!(
            e.current(),
            at,
            "the forgotten policy, seen again, is a new claim"
        );
    }

    #[test]
    fn the_recorded_owner_keeps_the_object_while_it_claims_it() {
        let (old, new) = (t("2026-01-01T00:00:00Z"), t("2026-06-01T00:00:00Z"));
        let c = [
            Claimant {
                name: "a",
                created: Some(&old),
            },
            Claimant {
                name: "b",
                created: Some(&new),
            },
        ];
        assert_eq!(owner(&c, Some("b")), "b");
        assert_eq!(owner(&c, None), "a", "the oldest claimant");
        assert_eq!(
            owner(&c, Some("gone")),
            "a",
            "a label of a policy that no longer claims it"
        );
    }

    #[test]
    fn ties_and_unsaved_policies_are_decided_the_same_way_everywhere() {
        let same = t("2026-01-01T00:00:00Z");
        let c = [
            Claimant {
                name: "zeta",
                created: Some(&same),
            },
            Claimant {
                name: "alpha",
                created: Some(&same),
            },
            Claimant {
                name: "new",
                created: None,
            },
        ];
        assert_eq!(owner(&c, None), "alpha");
        let mut reversed = c.to_vec();
        reversed.reverse();
        assert_eq!(owner(&reversed, None), "alpha");
    }
}
