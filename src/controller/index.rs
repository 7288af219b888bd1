//! Secondary indexes over the reflectors' caches (issue 16). kube-runtime's `Store` answers
//! "the object named N" in O(1) and anything else by scanning every object under its lock. At
//! 10,000 policies a reconcile asked "the slices of Service S" several times and every touched
//! EndpointSlice asked "the policies naming S": each a pass over the fleet with string
//! comparisons, most of the operator's CPU.
//!
//! An [`Index`] groups object references by keys computed from each object (one key function,
//! the one copy of the rule) and follows the same watch events as the store, fed from the same
//! stream just before the store applies them, with the store's relist semantics: a relist is
//! buffered and replaces the index at once when it completes. [`Index::get`] resolves the
//! references through the store and keeps only objects that still carry the key, so an answer
//! is always a subset of the store's own — never an object the store no longer has, nor one
//! whose labels moved it elsewhere a moment ago.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::observe::SERVICE_NAME_LABEL;
use crate::api::FailoverPolicy;

/// Which keys an object is found under (none: not indexed).
pub type KeysOf<K, Key> = fn(&K) -> Vec<Key>;

/// Object references grouped by key, following a reflector's watch events.
pub struct Index<K: Resource, Key> {
    keys_of: KeysOf<K, Key>,
    state: RwLock<State<K, Key>>,
}

struct State<K: Resource, Key> {
    live: Groups<K, Key>,
    /// A relist in progress: built aside, swapped in when it is complete.
    relist: Option<Groups<K, Key>>,
}

struct Groups<K: Resource, Key> {
    by_key: HashMap<Key, HashSet<ObjectRef<K>>>,
    keys: HashMap<ObjectRef<K>, Vec<Key>>,
}

impl<K: Resource, Key> Default for Groups<K, Key> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
            keys: HashMap::new(),
        }
    }
}

impl<K, Key> Groups<K, Key>
where
    K: Resource,
    K::DynamicType: Default + Eq + Hash + Clone,
    Key: Eq + Hash + Clone,
{
    fn remove(&mut self, oref: &ObjectRef<K>) {
        for key in self.keys.remove(oref).unwrap_or_default() {
            if let Some(set) = self.by_key.get_mut(&key) {
                set.remove(oref);
                if set.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
    }

    fn put(&mut self, oref: ObjectRef<K>, keys: Vec<Key>) {
        self.remove(&oref);
        if keys.is_empty() {
            return;
        }
        for key in &keys {
            self.by_key
                .entry(key.clone())
                .or_default()
                .insert(oref.clone());
        }
        self.keys.insert(oref, keys);
    }
}

impl<K, Key> Index<K, Key>
where
    K: Resource + Clone,
    K::DynamicType: Default + Eq + Hash + Clone,
    Key: Eq + Hash + Clone,
{
    pub fn new(keys_of: KeysOf<K, Key>) -> Arc<Self> {
        Arc::new(Self {
            keys_of,
            state: RwLock::new(State {
                live: Groups::default(),
                relist: None,
            }),
        })
    }

    /// Follows one watch event, as the reflector's store does.
    pub fn apply(&self, event: &watcher::Event<K>) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Apply(o) => state.live.put(ObjectRef::from_obj(o), (self.keys_of)(o)),
            watcher::Event::Delete(o) => state.live.remove(&ObjectRef::from_obj(o)),
            watcher::Event::Init => state.relist = Some(Groups::default()),
            watcher::Event::InitApply(o) => {
                let keys = (self.keys_of)(o);
                state
                    .relist
                    .get_or_insert_with(Groups::default)
                    .put(ObjectRef::from_obj(o), keys);
            }
            watcher::Event::InitDone => {
                if let Some(done) = state.relist.take() {
                    state.live = done;
                }
            }
        }
    }

    /// The references filed under `key` (for triggers: no object is read).
    pub fn refs(&self, key: &Key) -> Vec<ObjectRef<K>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state
            .live
            .by_key
            .get(key)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The objects of `store` filed under `key` that still carry it.
    pub fn get(&self, store: &Store<K>, key: &Key) -> Vec<Arc<K>> {
        self.refs(key)
            .iter()
            .filter_map(|r| store.get(r))
            .filter(|o| (self.keys_of)(o).contains(key))
            .collect()
    }
}

/// What an EndpointSlice is looked up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SliceKey {
    /// The Service it belongs to (`kubernetes.io/service-name`), in its namespace.
    Service { namespace: String, name: String },
    /// An owner's UID: what a policy published carries the policy as its owner.
    Owner(String),
}

impl SliceKey {
    pub fn service(namespace: &str, name: &str) -> Self {
        Self::Service {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

pub fn slice_keys(s: &EndpointSlice) -> Vec<SliceKey> {
    let namespace = s.metadata.namespace.clone().unwrap_or_default();
    s.labels()
        .get(SERVICE_NAME_LABEL)
        .map(|name| SliceKey::Service {
            namespace,
            name: name.clone(),
        })
        .into_iter()
        .chain(
            s.owner_references()
                .iter()
                .map(|o| SliceKey::Owner(o.uid.clone())),
        )
        .collect()
}

/// What a change of another object concerns a policy by: the policies filed under the key a
/// touched object answers to are the ones reconciled for it. The one copy of "which objects a
/// policy reads".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKey {
    /// A Service whose EndpointSlices it reads or writes: the primary's, the emergency
    /// Deployment's, the managed one and the weighted emergency one.
    Service { namespace: String, name: String },
    /// A Deployment it scales (emergency) or judges (an ingress or Gateway controller), also
    /// what an autoscaler on that Deployment concerns.
    Deployment { namespace: String, name: String },
    /// Any Ingress of the namespace (a policy with `spec.ingress`: selectors claim by labels).
    Ingresses(String),
    /// Any HTTPRoute of the namespace (a policy with `spec.gateway`: templates by selector).
    Routes(String),
    /// A Gateway it attaches routes to and judges.
    Gateway { namespace: String, name: String },
}

impl PolicyKey {
    pub fn service(namespace: &str, name: &str) -> Self {
        Self::Service {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub fn deployment(namespace: &str, name: &str) -> Self {
        Self::Deployment {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub fn gateway(namespace: &str, name: &str) -> Self {
        Self::Gateway {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

pub fn policy_keys(p: &FailoverPolicy) -> Vec<PolicyKey> {
    let own = p.metadata.namespace.as_deref().unwrap_or_default();
    let spec = &p.spec;
    let mut keys = vec![PolicyKey::service(own, &spec.managed_service.name)];
    if let Some(svc) = &spec.backends.primary.service {
        keys.push(PolicyKey::service(own, &svc.name));
    }
    if let Some(d) = spec
        .backends
        .emergency
        .as_ref()
        .and_then(|e| e.deployment.as_ref())
    {
        keys.push(PolicyKey::service(
            own,
            d.service_name.as_deref().unwrap_or(&d.name),
        ));
        keys.push(PolicyKey::deployment(own, &d.name));
    }
    if let Some(svc) = spec.weighted_emergency_service() {
        keys.push(PolicyKey::service(own, &svc));
    }
    if let Some(i) = &spec.ingress {
        keys.push(PolicyKey::Ingresses(own.to_string()));
        keys.extend(
            std::iter::once(&i.health)
                .chain(i.backup_health.as_ref())
                .filter_map(|h| h.controller_deployment.as_ref())
                .map(|c| PolicyKey::deployment(c.namespace.as_deref().unwrap_or(own), &c.name)),
        );
    }
    if let Some(g) = &spec.gateway {
        keys.push(PolicyKey::Routes(own.to_string()));
        keys.extend(
            [&g.primary_gateway, &g.backup_gateway]
                .iter()
                .map(|r| PolicyKey::gateway(r.namespace.as_deref().unwrap_or(own), &r.name)),
        );
        keys.extend(
            super::gateway::controller_deployments(spec)
                .iter()
                .map(|c| PolicyKey::deployment(c.namespace.as_deref().unwrap_or(own), &c.name)),
        );
    }
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;

    fn cm(name: &str, group: Option<&str>) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("ns".into());
        if let Some(g) = group {
            c.metadata.labels = Some([("group".to_string(), g.to_string())].into());
        }
        c
    }

    fn group_of(c: &ConfigMap) -> Vec<String> {
        c.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("group").cloned())
            .into_iter()
            .collect()
    }

    /// Feeds the same events to a store and the index, in the reflector's order.
    struct Both {
        store: Store<ConfigMap>,
        writer: reflector::store::Writer<ConfigMap>,
        index: Arc<Index<ConfigMap, String>>,
    }

    impl Both {
        fn new() -> Self {
            let (store, writer) = reflector::store();
            Self {
                store,
                writer,
                index: Index::new(group_of),
            }
        }
        fn feed(&mut self, e: watcher::Event<ConfigMap>) {
            self.index.apply(&e);
            self.writer.apply_watcher_event(&e);
        }
        fn names(&self, key: &str) -> Vec<String> {
            let mut n: Vec<String> = self
                .index
                .get(&self.store, &key.to_string())
                .iter()
                .map(|c| c.metadata.name.clone().unwrap_or_default())
                .collect();
            n.sort();
            n
        }
        /// The scan the index replaces.
        fn scanned(&self, key: &str) -> Vec<String> {
            let mut n: Vec<String> = self
                .store
                .state_filter(|c| group_of(c).contains(&key.to_string()))
                .iter()
                .map(|c| c.metadata.name.clone().unwrap_or_default())
                .collect();
            n.sort();
            n
        }
    }

    #[test]
    fn applies_relabels_and_deletes_move_objects_between_keys() {
        let mut b = Both::new();
        b.feed(watcher::Event::Apply(cm("a", Some("x"))));
        b.feed(watcher::Event::Apply(cm("b", Some("x"))));
        b.feed(watcher::Event::Apply(cm("c", None)));
        assert_eq!(b.names("x"), ["a", "b"]);
        b.feed(watcher::Event::Apply(cm("b", Some("y"))));
        assert_eq!(b.names("x"), ["a"]);
        assert_eq!(b.names("y"), ["b"]);
        b.feed(watcher::Event::Delete(cm("a", Some("x"))));
        assert!(b.names("x").is_empty());
        assert!(
            b.index.refs(&"x".to_string()).is_empty(),
            "no empty group left"
        );
        b.feed(watcher::Event::Apply(cm("c", Some("x"))));
        assert_eq!(b.names("x"), ["c"]);
    }

    #[test]
    fn a_relist_replaces_the_index_only_when_complete() {
        let mut b = Both::new();
        b.feed(watcher::Event::Apply(cm("gone", Some("x"))));
        b.feed(watcher::Event::Apply(cm("kept", Some("x"))));
        b.feed(watcher::Event::Init);
        b.feed(watcher::Event::InitApply(cm("kept", Some("x"))));
        b.feed(watcher::Event::InitApply(cm("new", Some("x"))));
        // Until the relist is done the store still answers from the old list, and so do we.
        assert_eq!(b.names("x"), ["gone", "kept"]);
        b.feed(watcher::Event::InitDone);
        assert_eq!(b.names("x"), ["kept", "new"]);
    }

    #[test]
    fn an_object_relabelled_ahead_of_the_store_is_not_answered_under_its_new_key() {
        let mut b = Both::new();
        b.feed(watcher::Event::Apply(cm("a", Some("x"))));
        // The index has seen the relabel, the store not yet.
        b.index.apply(&watcher::Event::Apply(cm("a", Some("y"))));
        assert!(b.names("y").is_empty(), "the store's copy still says x");
        assert!(b.names("x").is_empty(), "the index has moved it");
    }

    /// Randomized: after any sequence of events, the index answers what a scan of the store
    /// answers.
    #[test]
    fn answers_what_a_scan_answers_after_random_events() {
        let mut rng = fastrand::Rng::with_seed(16);
        for _ in 0..50 {
            let mut b = Both::new();
            let mut relisting = false;
            for _ in 0..200 {
                let name = format!("o{}", rng.usize(0..12));
                let group = match rng.usize(0..4) {
                    0 => None,
                    g => Some(format!("g{g}")),
                };
                let obj = cm(&name, group.as_deref());
                let event = match (relisting, rng.usize(0..10)) {
                    (false, 0) => {
                        relisting = true;
                        watcher::Event::Init
                    }
                    (false, 1..=2) => watcher::Event::Delete(obj),
                    (false, _) => watcher::Event::Apply(obj),
                    (true, 0) => {
                        relisting = false;
                        watcher::Event::InitDone
                    }
                    (true, _) => watcher::Event::InitApply(obj),
                };
                b.feed(event);
                for g in ["g1", "g2", "g3"] {
                    assert_eq!(b.names(g), b.scanned(g), "group {g}");
                }
            }
        }
    }

    fn corpus_policy(file: &str) -> FailoverPolicy {
        let path = format!("{}/tests/corpus/valid/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("corpus file");
        serde_saphyr::from_str(&text).expect("a policy")
    }

    /// Each object a policy reads is a key it is filed under: what replaced the per-event
    /// predicates, field by field.
    #[test]
    fn a_policy_is_filed_under_every_object_it_reads() {
        let table = [
            (
                "full.yaml",
                vec![
                    PolicyKey::service("shop", "checkout"),
                    PolicyKey::service("shop", "checkout-emergency"),
                    PolicyKey::service("shop", "checkout-failover"),
                    PolicyKey::deployment("ingress-nginx", "ingress-nginx-controller"),
                    PolicyKey::deployment("shop", "checkout-emergency"),
                    PolicyKey::Ingresses("shop".into()),
                ],
            ),
            (
                "gateway-weighted-emergency.yaml",
                vec![
                    PolicyKey::service("shop", "shop"),
                    PolicyKey::service("shop", "shop-emergency"),
                    PolicyKey::service("shop", "shop-healthy"),
                    PolicyKey::service("shop", "shop-healthy-emergency"),
                    PolicyKey::deployment("shop", "shop-emergency"),
                    PolicyKey::Routes("shop".into()),
                    PolicyKey::gateway("gateways", "edge-backup"),
                    PolicyKey::gateway("gateways", "edge-primary"),
                ],
            ),
        ];
        for (file, want) in table {
            assert_eq!(policy_keys(&corpus_policy(file)), want, "{file}");
        }
        let minimal = policy_keys(&corpus_policy("minimal.yaml"));
        assert!(
            minimal
                .iter()
                .all(|k| matches!(k, PolicyKey::Service { .. })),
            "{minimal:?}"
        );
    }

    #[test]
    fn slices_are_filed_under_their_service_and_owners() {
        let mut s = EndpointSlice::default();
        s.metadata.namespace = Some("shop".into());
        s.metadata.labels = Some([(SERVICE_NAME_LABEL.to_string(), "web".to_string())].into());
        s.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                uid: "u-1".into(),
                ..Default::default()
            },
        ]);
        assert_eq!(
            slice_keys(&s),
            [
                SliceKey::service("shop", "web"),
                SliceKey::Owner("u-1".into())
            ]
        );
        s.metadata.labels = None;
        assert_eq!(slice_keys(&s), [SliceKey::Owner("u-1".into())]);
    }
}
