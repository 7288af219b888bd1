//! `metadata.managedFields`: reading and writing the per-manager field sets, and recording
//! ordinary (non-apply) writes, which take ownership of the fields they change.

use super::fields::{FieldPath, FieldSet, Scope, get_at, leaves};
use serde_json::{Value, json};

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedEntry {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `""` or `status`.
    pub subresource: String,
    /// apiVersion the fields were set through.
    pub api_version: String,
    /// Time of the last change.
    pub time: String,
    /// Owned leaf paths.
    pub fields: FieldSet,
}

fn fields_from_v1(v: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
    let Some(m) = v.as_object() else { return };
    let children: Vec<_> = m.iter().filter(|(k, _)| k.as_str() != ".").collect();
    if children.is_empty() && !prefix.is_empty() {
        out.insert(prefix.clone());
    }
    for (k, child) in children {
        prefix.push(k.clone());
        fields_from_v1(child, prefix, out);
        prefix.pop();
    }
}

fn fields_to_v1(fields: &FieldSet) -> Value {
    let mut root = json!({});
    for path in fields {
        let mut cur = &mut root;
        for seg in path {
            cur = cur
                .as_object_mut()
                .expect("fieldsV1 nodes are objects")
                .entry(seg.clone())
                .or_insert_with(|| json!({}));
        }
    }
    root
}

/// Reads `metadata.managedFields`.
pub fn read_managed(obj: &Value) -> Vec<ManagedEntry> {
    let Some(list) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let mut fields = FieldSet::new();
            if let Some(f) = e.get("fieldsV1") {
                fields_from_v1(f, &mut Vec::new(), &mut fields);
            }
            ManagedEntry {
                manager: s("manager"),
                operation: s("operation"),
                subresource: s("subresource"),
                api_version: s("apiVersion"),
                time: s("time"),
                fields,
            }
        })
        .collect()
}

/// Writes `metadata.managedFields` (entries with no fields are dropped).
pub fn write_managed(obj: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_to_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Records an ordinary write (create/update/patch) by `manager`: the fields it changed move to
/// its `Update` entry and away from every other manager.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    scope: Scope,
    api_version: &str,
    now: &str,
) {
    let mut entries = old.map(read_managed).unwrap_or_default();
    let new_scoped = scope.filter(new);
    let new_leaves = leaves(&new_scoped, None);
    let changed: FieldSet = match old {
        None => new_leaves.clone(),
        Some(o) => {
            let old_scoped = scope.filter(o);
            new_leaves
                .iter()
                .filter(|p| get_at(&old_scoped, p) != get_at(&new_scoped, p))
                .cloned()
                .collect()
        }
    };
    let sub = scope.subresource();
    for e in entries.iter_mut() {
        // Fields that no longer exist are owned by nobody.
        if e.subresource == sub {
            e.fields
                .retain(|p| new_leaves.contains(p) && !changed.contains(p));
        }
    }
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == sub)
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now.into();
            }
            None => entries.push(ManagedEntry {
                manager: manager.into(),
                operation: "Update".into(),
                subresource: sub.into(),
                api_version: api_version.into(),
                time: now.into(),
                fields: changed,
            }),
        }
    }
    write_managed(new, &entries);
}
