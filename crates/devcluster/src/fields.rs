//! Field sets: which leaf fields of an object a write touches, in the `fieldsV1` notation
//! (`f:spec`, `k:{"name":"web"}`, `v:"finalizer"`), and which part of the object (main resource
//! or `/status`) a request may touch. Shared by server-side apply (`apply`) and the
//! `managedFields` bookkeeping of every write (`managed`).

use super::patch::merge_key;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// One field path in `fieldsV1` segments.
pub type FieldPath = Vec<String>;
/// A set of owned leaf paths.
pub type FieldSet = BTreeSet<FieldPath>;

/// Which part of the object a request may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource; `status` excluded when it is a separate subresource.
    Main {
        /// Status is a subresource (so not part of the main resource).
        exclude_status: bool,
    },
    /// The `/status` subresource: only `status`.
    Status,
}

impl Scope {
    /// The `subresource` recorded in managedFields.
    pub fn subresource(self) -> &'static str {
        match self {
            Scope::Main { .. } => "",
            Scope::Status => "status",
        }
    }

    /// Keeps only the fields this scope tracks (never identity metadata or type fields).
    pub fn filter(self, obj: &Value) -> Value {
        let mut out = Map::new();
        let Some(m) = obj.as_object() else {
            return Value::Object(out);
        };
        for (k, v) in m {
            let keep = match (self, k.as_str()) {
                (_, "apiVersion" | "kind") => false,
                (Scope::Status, key) => key == "status",
                (Scope::Main { exclude_status }, "status") => !exclude_status,
                (Scope::Main { .. }, "metadata") => {
                    let mut meta = Map::new();
                    for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
                        if let Some(x) = v.get(f) {
                            meta.insert(f.into(), x.clone());
                        }
                    }
                    if !meta.is_empty() {
                        out.insert(k.clone(), Value::Object(meta));
                    }
                    false
                }
                _ => true,
            };
            if keep {
                out.insert(k.clone(), v.clone());
            }
        }
        Value::Object(out)
    }
}

pub(crate) enum ListKind {
    Map(Vec<String>),
    Set,
    Atomic,
}

pub(crate) fn list_kind(
    field: &str,
    schema: Option<&Value>,
    sample: Option<&Value>,
    root: bool,
) -> ListKind {
    if let Some(s) = schema {
        return match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => ListKind::Map(
                s.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|k| k.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            Some("set") => ListKind::Set,
            _ => ListKind::Atomic,
        };
    }
    if field == "finalizers" {
        return ListKind::Set;
    }
    match merge_key(field, sample, root) {
        Some(k) => ListKind::Map(vec![k.to_string()]),
        None => ListKind::Atomic,
    }
}

pub(crate) fn child_schema<'a>(schema: Option<&'a Value>, field: &str) -> Option<&'a Value> {
    let s = schema?;
    s.get("properties")
        .and_then(|p| p.get(field))
        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
}

pub(crate) fn item_key(item: &Value, keys: &[String]) -> Option<String> {
    let mut m = Map::new();
    for k in keys {
        m.insert(k.clone(), item.get(k)?.clone());
    }
    Some(format!("k:{}", Value::Object(m)))
}

fn collect(v: &Value, schema: Option<&Value>, prefix: &mut FieldPath, out: &mut FieldSet) {
    let Some(m) = v.as_object() else {
        out.insert(prefix.clone());
        return;
    };
    if m.is_empty() && !prefix.is_empty() {
        out.insert(prefix.clone());
    }
    for (k, child) in m {
        let cs = child_schema(schema, k);
        prefix.push(format!("f:{k}"));
        match child {
            Value::Object(_) => collect(child, cs, prefix, out),
            Value::Array(items) => match list_kind(k, cs, items.first(), prefix.len() == 1) {
                ListKind::Map(keys) if items.iter().all(|i| item_key(i, &keys).is_some()) => {
                    let item_schema = cs.and_then(|s| s.get("items"));
                    for item in items {
                        prefix.push(item_key(item, &keys).unwrap_or_default());
                        collect(item, item_schema, prefix, out);
                        prefix.pop();
                    }
                }
                ListKind::Set => {
                    for item in items {
                        prefix.push(format!("v:{item}"));
                        out.insert(prefix.clone());
                        prefix.pop();
                    }
                }
                _ => {
                    out.insert(prefix.clone());
                }
            },
            _ => {
                out.insert(prefix.clone());
            }
        }
        prefix.pop();
    }
}

/// The leaf paths set in `v`.
pub fn leaves(v: &Value, schema: Option<&Value>) -> FieldSet {
    let mut out = FieldSet::new();
    collect(v, schema, &mut Vec::new(), &mut out);
    out
}

pub(crate) fn find_item(list: &[Value], seg: &str) -> Option<usize> {
    if let Some(k) = seg.strip_prefix("k:") {
        let want: Map<String, Value> = serde_json::from_str(k).ok()?;
        list.iter()
            .position(|i| want.iter().all(|(wk, wv)| i.get(wk) == Some(wv)))
    } else if let Some(v) = seg.strip_prefix("v:") {
        let want: Value = serde_json::from_str(v).ok()?;
        list.iter().position(|i| *i == want)
    } else {
        None
    }
}

/// The value at a field path.
pub fn get_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg.strip_prefix("f:") {
            Some(f) => cur.get(f)?,
            None => {
                let list = cur.as_array()?;
                &list[find_item(list, seg)?]
            }
        };
    }
    Some(cur)
}
