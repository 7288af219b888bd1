//! Resources stored under another resource, with field conversion.
//!
//! events.k8s.io/v1 Events are the same objects as core/v1 Events in the apiserver, with some
//! fields renamed. Storing them once (in core form) lets `kubectl describe`, which reads core
//! Events, show what kube-runtime's `Recorder` (which writes events.k8s.io Events) recorded.

use super::resources::ResourceInfo;
use serde_json::Value;

/// (core/v1 name, events.k8s.io/v1 name)
const EVENT_FIELDS: [(&str, &str); 7] = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(mut obj: Value, pairs: impl Iterator<Item = (&'static str, &'static str)>) -> Value {
    if let Some(m) = obj.as_object_mut() {
        for (from, to) in pairs {
            if let Some(v) = m.remove(from) {
                m.insert(to.into(), v);
            }
        }
    }
    obj
}

fn is_events_v1(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io" && info.plural == "events"
}

/// The client's form → the stored form.
pub fn to_storage(info: &ResourceInfo, obj: Value) -> Value {
    if is_events_v1(info) {
        rename(obj, EVENT_FIELDS.iter().map(|(core, v1)| (*v1, *core)))
    } else {
        obj
    }
}

/// The stored form → the client's form.
pub fn from_storage(info: &ResourceInfo, obj: Value) -> Value {
    if is_events_v1(info) {
        rename(obj, EVENT_FIELDS.iter().copied())
    } else {
        obj
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;
    use serde_json::json;

    #[test]
    fn events_round_trip() {
        let reg = Registry::default();
        let info = reg.get("events.k8s.io", "events").unwrap();
        let v1 = json!({"regarding": {"name": "x"}, "note": "hi", "reason": "R"});
        let core = to_storage(info, v1.clone());
        assert_eq!(
            core,
            json!({"involvedObject": {"name": "x"}, "message": "hi", "reason": "R"})
        );
        assert_eq!(from_storage(info, core), v1);
    }
}
