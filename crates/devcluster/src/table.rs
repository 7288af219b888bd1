//! `meta.k8s.io/v1 Table` responses, which is what `kubectl get` asks for.
//!
//! Columns are Name, then the resource's printer columns (a CRD's `additionalPrinterColumns`,
//! or a few built-in ones mirroring the real apiserver), evaluated with a small JSONPath subset:
//! `.a.b`, `[N]`, and `[?(@.key=="value")]` filters.

use super::resources::{PrinterColumn, ResourceInfo};
use serde_json::{Value, json};

/// How to render objects, from the Accept header (its first media type wins).
#[derive(Debug, Clone, PartialEq)]
pub enum Render {
    /// Plain objects.
    Object,
    /// `as=Table` with this `includeObject` mode (`kubectl get`).
    Table(String),
    /// `as=PartialObjectMetadata[List]` (metadata-only clients such as kube's metadata_watcher).
    Metadata,
}

impl Render {
    /// Negotiates from `Accept` and the `includeObject` query parameter.
    pub fn from_accept(accept: &str, include_object: &str) -> Self {
        let first = accept.split(',').next().unwrap_or("");
        if first.contains("as=Table") {
            Render::Table(include_object.to_string())
        } else if first.contains("as=PartialObjectMetadata") {
            Render::Metadata
        } else {
            Render::Object
        }
    }
}

/// The `PartialObjectMetadata` of an object.
pub fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

/// Human duration the way kubectl prints ages.
pub fn human_age(timestamp: &str) -> String {
    let Ok(t) = timestamp.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Evaluates a JSONPath subset; `None` when the path does not resolve.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    let mut rest = path
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            cur = cur.get(&r[..end])?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (key, want) = filter.split_once("==")?;
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                cur = cur.as_array()?.iter().find(|item| {
                    item.get(key.trim()).is_some_and(|v| {
                        v.as_str().map(String::from).unwrap_or(v.to_string()) == want
                    })
                })?;
            } else {
                cur = cur.get(inner.parse::<usize>().ok()?)?;
            }
        } else {
            return None;
        }
    }
    Some(cur)
}

fn join_strs(items: impl Iterator<Item = String>, empty: &str) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        empty.to_string()
    } else {
        v.join(",")
    }
}

fn computed(name: &str, obj: &Value) -> Value {
    let arr = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let int = |p: &str| obj.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let s = match name {
        "@service-ports" => join_strs(
            arr("/spec/ports")
                .iter()
                .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP"))),
            "<none>",
        ),
        "@service-selector" => join_strs(
            obj.pointer("/spec/selector")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))),
            "<none>",
        ),
        "@pod-ready" => {
            let cs = arr("/status/containerStatuses");
            let total = arr("/spec/containers").len().max(cs.len());
            format!(
                "{}/{total}",
                cs.iter().filter(|c| c["ready"] == json!(true)).count()
            )
        }
        "@deployment-ready" => {
            format!("{}/{}", int("/status/readyReplicas"), int("/spec/replicas"))
        }
        "@slice-ports" => join_strs(
            arr("/ports").iter().map(|p| p["port"].to_string()),
            "<unset>",
        ),
        "@slice-endpoints" => {
            let addrs: Vec<String> = arr("/endpoints")
                .iter()
                .flat_map(|e| arr_of(&e["addresses"]))
                .collect();
            match addrs.len() {
                0 => "<unset>".into(),
                n if n > 3 => format!("{} + {} more...", addrs[..3].join(","), n - 3),
                _ => addrs.join(","),
            }
        }
        "@event-object" => format!(
            "{}/{}",
            obj.pointer("/involvedObject/kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_lowercase(),
            obj.pointer("/involvedObject/name")
                .and_then(Value::as_str)
                .unwrap_or("")
        ),
        "@ingress-hosts" => join_strs(
            arr("/spec/rules")
                .iter()
                .map(|r| r["host"].as_str().unwrap_or("*").to_string()),
            "*",
        ),
        _ => String::new(),
    };
    json!(s)
}

fn arr_of(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(String::from))
        .collect()
}

fn cell(col: &PrinterColumn, obj: &Value) -> Value {
    if col.json_path.starts_with('@') {
        return computed(&col.json_path, obj);
    }
    match (json_path(obj, &col.json_path), col.type_.as_str()) {
        (Some(Value::String(t)), "date") => json!(human_age(t)),
        (Some(v), _) => v.clone(),
        (None, _) => Value::Null,
    }
}

/// Column definitions (Name first).
pub fn columns(info: &ResourceInfo) -> Vec<Value> {
    let mut cols = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    for c in &info.columns {
        let type_ = if c.type_ == "date" {
            "string"
        } else {
            c.type_.as_str()
        };
        cols.push(json!({"name": c.name, "type": type_, "format": "", "description": c.description, "priority": c.priority}));
    }
    cols
}

/// One row for `obj`. `include_object` is `None`, `Metadata` (default) or `Object`.
pub fn row(info: &ResourceInfo, obj: &Value, include_object: &str) -> Value {
    let mut cells = vec![
        obj.pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null),
    ];
    cells.extend(info.columns.iter().map(|c| match cell(c, obj) {
        // Built-in printers show omitted counters as 0; CRD columns stay empty.
        Value::Null if !info.from_crd && c.type_ == "integer" => json!(0),
        v => v,
    }));
    let object = match include_object {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => partial(obj),
    };
    json!({"cells": cells, "object": object})
}

/// A Table of `objects`.
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    list_meta: Value,
    include_object: &str,
    with_columns: bool,
) -> Value {
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "rows": objects.iter().map(|o| row(info, o, include_object)).collect::<Vec<_>>(),
    });
    if with_columns {
        t["columnDefinitions"] = json!(columns(info));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_subset() {
        let o = json!({"status": {"phase": "Up", "conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(json_path(&o, ".status.phase"), Some(&json!("Up")));
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(&json!("True"))
        );
        assert_eq!(
            json_path(&o, ".status.conditions[0].type"),
            Some(&json!("A"))
        );
        assert_eq!(json_path(&o, ".spec.x"), None);
    }

    #[test]
    fn accept_negotiation() {
        let r = |a| Render::from_accept(a, "Metadata");
        assert_eq!(
            r("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"),
            Render::Table("Metadata".into())
        );
        assert_eq!(
            r("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            Render::Metadata
        );
        assert_eq!(r("application/json"), Render::Object);
    }
}
