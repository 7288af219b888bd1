//! Object metadata rules shared by every write: identity, timestamps, generation, names.

use k8s_rules::names;
use serde_json::{Map, Value, json};

/// Current time as a Kubernetes `Time` (RFC 3339, seconds, UTC).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A random RFC 4122-shaped UID.
pub fn new_uid(rng: &mut fastrand::Rng) -> String {
    let h = |n: usize, rng: &mut fastrand::Rng| -> String {
        (0..n)
            .map(|_| char::from_digit(rng.u32(0..16), 16).unwrap_or('0'))
            .collect()
    };
    format!(
        "{}-{}-4{}-a{}-{}",
        h(8, rng),
        h(4, rng),
        h(3, rng),
        h(3, rng),
        h(12, rng)
    )
}

/// Five random lowercase alphanumerics, the apiserver's `generateName` suffix.
pub fn name_suffix(rng: &mut fastrand::Rng) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rng.usize(0..ALPHABET.len())] as char)
        .collect()
}

/// Why `name` is not a valid object name for `plural`, if it is not. Most resources need a
/// DNS-1123 subdomain; Namespaces a DNS-1123 label; Services a DNS-1035 label (they become DNS
/// names), which is where a generated name most often goes wrong. The rules themselves are
/// [`k8s_rules::names`], the ones `ingress-failover check` applies.
pub fn invalid_name(plural: &str, name: &str) -> Option<String> {
    let rule = match plural {
        "services" => names::dns1035_label,
        "namespaces" => names::dns1123_label,
        _ => names::dns1123_subdomain,
    };
    rule(name).err().map(|why| format!("\"{name}\": {why}"))
}

/// Label keys (`[prefix/]name`) and values must be valid, as the apiserver checks on every write.
pub fn invalid_labels(obj: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) else {
        return out;
    };
    for (k, v) in labels {
        if let Err(why) = names::label_key(k) {
            out.push(("metadata.labels".to_string(), format!("\"{k}\": {why}")));
        }
        let value = v.as_str().unwrap_or("");
        if let Some(why) = names::label_value(value)
            .err()
            .or((!v.is_string()).then_some("a label value must be a string"))
        {
            out.push((
                format!("metadata.labels[{k}]"),
                format!("\"{value}\": {why}"),
            ));
        }
    }
    out
}

/// Mutable access to `metadata`, creating it if needed.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

/// A metadata string field.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// The object's finalizers.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything the apiserver treats as "spec" for `generation`: the object minus metadata,
/// and minus status when status is a separate subresource.
fn spec_part(obj: &Value, status_is_subresource: bool) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if status_is_subresource {
            m.remove("status");
        }
    }
    o
}

/// Did anything outside metadata (and status) change? Then `generation` is bumped.
pub fn spec_changed(old: &Value, new: &Value, status_is_subresource: bool) -> bool {
    spec_part(old, status_is_subresource) != spec_part(new, status_is_subresource)
}

/// Copies the fields clients may not change on update from `old` into `new`.
pub fn carry_over_identity(old: &Value, new: &mut Value) {
    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
    let meta = meta_mut(new);
    for field in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "name",
        "namespace",
        "resourceVersion",
    ] {
        match old_meta.get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
}

/// Equal apart from resourceVersion and managedFields: a no-op write that must not bump
/// the resourceVersion (clients rely on this to avoid write loops).
pub fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_ignores_metadata_and_status() {
        let a = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1}, "status": {"y": 1}});
        let mut b = a.clone();
        b["metadata"]["labels"]["a"] = json!("2");
        b["status"]["y"] = json!(2);
        assert!(!spec_changed(&a, &b, true));
        assert!(spec_changed(&a, &b, false));
        b["spec"]["x"] = json!(2);
        assert!(spec_changed(&a, &b, true));
    }

    #[test]
    fn names() {
        assert!(invalid_name("configmaps", "web-1.example").is_none());
        assert!(invalid_name("configmaps", "Web").is_some());
        assert!(invalid_name("configmaps", "-a").is_some());
        assert!(invalid_name("configmaps", "").is_some());
        assert!(invalid_name("services", "1web").is_some());
        assert!(invalid_name("services", "web.x").is_some());
        assert!(invalid_name("services", "web-1").is_none());
        assert!(invalid_name("namespaces", "a.b").is_some());
        let long = "x".repeat(64);
        let bad = json!({"metadata": {"labels": {"ok": "v", "example.com/ok": "", "bad key": "v", "k": long}}});
        let fields: Vec<String> = invalid_labels(&bad).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["metadata.labels", "metadata.labels[k]"]);
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(new_uid(&mut rng).len(), 36);
        assert_eq!(name_suffix(&mut rng).len(), 5);
    }
}
