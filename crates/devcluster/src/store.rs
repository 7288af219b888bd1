//! The object store: every object as JSON, one global resourceVersion counter, and a bounded
//! log of change events that watches replay from.
//!
//! A single counter across all resources is what etcd gives the real apiserver; clients compare
//! resourceVersions only for equality, but a single counter makes "events after version N" a
//! simple slice of the log. The log keeps the last `window` events; a watch that asks for a
//! version older than what was dropped gets 410 Gone, exactly like a compacted etcd.

use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use tokio::sync::watch;

/// Identity of one stored object. `namespace` is empty for cluster-scoped objects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    /// API group (empty for core).
    pub group: String,
    /// Plural resource name.
    pub plural: String,
    /// Namespace, or empty.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

impl ObjKey {
    /// Builds a key.
    pub fn new(group: &str, plural: &str, namespace: &str, name: &str) -> Self {
        Self {
            group: group.into(),
            plural: plural.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// Watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

/// One logged change.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// resourceVersion of this change.
    pub rv: u64,
    /// Which object.
    pub key: ObjKey,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (for deletes: the last state, stamped with the delete's rv).
    pub object: Value,
    /// The object before the change, so selector-filtered watches can turn "stopped matching"
    /// into DELETED and "started matching" into ADDED, as the apiserver does.
    pub old: Option<Value>,
}

/// The watch window was compacted past the requested version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone {
    /// Oldest version a watch may still start from.
    pub oldest: u64,
}

/// All objects plus the event log.
#[derive(Debug)]
pub struct Store {
    rv: u64,
    objects: BTreeMap<ObjKey, Value>,
    log: VecDeque<StoredEvent>,
    window: usize,
    compacted: u64,
    notify: watch::Sender<u64>,
}

fn stamp(obj: &mut Value, rv: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

impl Store {
    /// An empty store retaining the last `window` events for watches.
    pub fn new(window: usize) -> Self {
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            window: window.max(1),
            compacted: 0,
            notify: watch::channel(1).0,
        }
    }

    /// Current (latest) resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// Receives the latest resourceVersion after every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// One object.
    pub fn get(&self, key: &ObjKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// All objects of a resource, optionally in one namespace, sorted by namespace and name.
    pub fn list(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
    ) -> Vec<(&ObjKey, &Value)> {
        let start = ObjKey::new(group, plural, namespace.unwrap_or(""), "");
        self.objects
            .range(start..)
            .take_while(|(k, _)| {
                k.group == group
                    && k.plural == plural
                    && namespace.is_none_or(|ns| k.namespace == ns)
            })
            .collect()
    }

    /// Every object, in key order (for garbage collection and namespace deletion).
    pub fn iter(&self) -> impl Iterator<Item = (&ObjKey, &Value)> {
        self.objects.iter()
    }

    /// Creates or replaces an object, stamping a new resourceVersion; returns the stored object.
    pub fn put(&mut self, key: ObjKey, mut obj: Value) -> Value {
        self.rv += 1;
        stamp(&mut obj, self.rv);
        let old = self.objects.insert(key.clone(), obj.clone());
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.log_event(key, kind, obj.clone(), old);
        obj
    }

    /// Removes an object; returns its last state stamped with the deletion's resourceVersion.
    pub fn delete(&mut self, key: &ObjKey) -> Option<Value> {
        let old = self.objects.remove(key)?;
        self.rv += 1;
        let mut obj = old.clone();
        stamp(&mut obj, self.rv);
        self.log_event(key.clone(), EventType::Deleted, obj.clone(), Some(old));
        Some(obj)
    }

    fn log_event(&mut self, key: ObjKey, kind: EventType, object: Value, old: Option<Value>) {
        self.log.push_back(StoredEvent {
            rv: self.rv,
            key,
            kind,
            object,
            old,
        });
        while self.log.len() > self.window {
            if let Some(dropped) = self.log.pop_front() {
                self.compacted = dropped.rv;
            }
        }
        self.notify.send_replace(self.rv);
    }

    /// Events strictly after `rv` that pass `filter`, plus the version the caller has now seen.
    pub fn events_since(
        &self,
        rv: u64,
        filter: impl Fn(&StoredEvent) -> bool,
    ) -> Result<(Vec<StoredEvent>, u64), Gone> {
        if rv < self.compacted {
            return Err(Gone {
                oldest: self.compacted,
            });
        }
        let start = self.log.partition_point(|e| e.rv <= rv);
        let events = self
            .log
            .range(start..)
            .filter(|e| filter(e))
            .cloned()
            .collect();
        Ok((events, self.rv))
    }

    /// Drops every retained event and moves the counter past them, so a watch from any
    /// version handed out so far gets 410 Gone (tests use this to force a re-list).
    pub fn compact(&mut self) {
        self.rv += 1;
        self.log.clear();
        self.compacted = self.rv;
        self.notify.send_replace(self.rv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(name: &str) -> Value {
        json!({"metadata": {"name": name}})
    }

    #[test]
    fn resource_version_increases_and_log_is_bounded() {
        let mut s = Store::new(2);
        let a = s.put(ObjKey::new("", "pods", "ns", "a"), obj("a"));
        let b = s.put(ObjKey::new("", "pods", "ns", "b"), obj("b"));
        assert_eq!(a["metadata"]["resourceVersion"], "2");
        assert_eq!(b["metadata"]["resourceVersion"], "3");
        s.delete(&ObjKey::new("", "pods", "ns", "a"));
        // window 2: the event at rv 2 was dropped, so watching from 1 is Gone, from 2 is fine.
        assert!(s.events_since(1, |_| true).is_err());
        let (events, now) = s.events_since(2, |_| true).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].kind, EventType::Deleted);
        assert_eq!(now, 4);
    }

    #[test]
    fn list_is_scoped_by_resource_and_namespace() {
        let mut s = Store::new(10);
        s.put(ObjKey::new("", "pods", "a", "x"), obj("x"));
        s.put(ObjKey::new("", "pods", "b", "y"), obj("y"));
        s.put(ObjKey::new("", "services", "a", "z"), obj("z"));
        assert_eq!(s.list("", "pods", None).len(), 2);
        assert_eq!(s.list("", "pods", Some("a")).len(), 1);
        assert_eq!(s.list("", "services", Some("b")).len(), 0);
    }
}
