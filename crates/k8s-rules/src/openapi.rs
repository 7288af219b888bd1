//! Validation of a JSON value against a Kubernetes *structural* `openAPIV3Schema`, as a CRD
//! carries it, with the apiserver's error wording.
//!
//! This module knows nothing about FailoverPolicy: `ingress-failover check` and the controller
//! use it with the FailoverPolicy CRD, and the embedded control plane (`crates/devcluster`,
//! `schema.rs`) with any CRD it serves, so both admit the same objects. It covers the
//! subset of OpenAPI v3 that structural schemas allow (type, nullable, properties, required,
//! additionalProperties, items, length/item/property bounds, pattern, enum, numeric bounds,
//! formats `int32`/`int64`/`date-time`, and the `x-kubernetes-*` extensions that change
//! validation). Patterns are ECMA-262 in Kubernetes and run here with the `regex` crate, which
//! accepts the same syntax except look-around and back-references; a pattern it cannot compile is
//! reported on the field rather than silently ignored.
//!
//! Order matters and mirrors the apiserver: [`prepare`] first (drop `null`s the schema does not
//! allow, normalise numbers, apply `default`s), then, for a server that prunes,
//! [`prune_custom_resource`], then [`validate`] (or [`custom_resource_causes`], with each
//! error's `StatusCause` reason) on the prepared value.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde_json::{Map, Number, Value};

use crate::{Cause, FieldError, reason};

/// Keys every Kubernetes object has at its root; the apiserver validates them itself, so a CRD's
/// schema does not have to declare them.
const ROOT_OBJECT_KEYS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Validates `value` (a whole object or any sub-tree) against `schema`. Paths in the errors are
/// relative to `value`; pass the result of [`prepare`] so that defaults are in place.
pub fn validate(schema: &Value, value: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    walk(schema, value, "", false, &mut errors);
    errors.into_iter().map(|c| c.error).collect()
}

/// Validates a whole custom resource: like [`validate`], except that `apiVersion`, `kind` and
/// `metadata` at the root are accepted even when the schema does not declare them (the apiserver
/// handles those itself, and generated CRD schemas usually leave them out).
pub fn validate_custom_resource(schema: &Value, object: &Value) -> Vec<FieldError> {
    custom_resource_causes(schema, object)
        .into_iter()
        .map(|c| c.error)
        .collect()
}

/// Like [`validate_custom_resource`], each error with the reason of the `StatusCause` an API
/// server answers it with.
pub fn custom_resource_causes(schema: &Value, object: &Value) -> Vec<Cause> {
    let mut errors = Vec::new();
    walk(schema, object, "", true, &mut errors);
    errors
}

/// The value as the apiserver would validate it: `null`s of non-nullable fields removed (so their
/// default, if any, applies — Kubernetes' "null is pruned before defaulting" rule), integral
/// floats under `type: integer` turned into integers and integers under `type: number` into
/// floats (so typed deserialization and CEL see the declared type), then schema `default`s
/// applied with kube-cel's `apply_defaults`, the same routine its CEL validator uses.
pub fn prepare(schema: &Value, value: &Value) -> Value {
    let mut value = value.clone();
    normalize(schema, &mut value);
    let mut defaulted = kube::core::cel::apply_defaults(schema, &value);
    // Defaults are written by people too (`default: 1` under `type: number`).
    normalize(schema, &mut defaulted);
    defaulted
}

fn normalize(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            map.retain(|key, child| {
                let child_schema = props.and_then(|p| p.get(key)).or(additional);
                !(child.is_null() && child_schema.is_some_and(|s| !is_nullable(s)))
            });
            for (key, child) in map.iter_mut() {
                if let Some(child_schema) = props.and_then(|p| p.get(key)).or(additional) {
                    normalize(child_schema, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                items
                    .iter_mut()
                    .for_each(|item| normalize(item_schema, item));
            }
        }
        Value::Number(n) => match type_of(schema) {
            Some("integer") => {
                if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0)
                    && f.abs() < 9.0e15
                {
                    *value = Value::from(f as i64);
                }
            }
            Some("number") if !n.is_f64() => {
                if let Some(f) = n.as_f64().and_then(Number::from_f64) {
                    *value = Value::Number(f);
                }
            }
            _ => {}
        },
        _ => {}
    }
}

fn type_of(schema: &Value) -> Option<&str> {
    schema.get("type").and_then(Value::as_str)
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

fn is_nullable(schema: &Value) -> bool {
    flag(schema, "nullable")
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A value as the apiserver prints it after `Invalid value:`.
fn show(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

fn push(errors: &mut Vec<Cause>, reason: &'static str, path: &str, message: String) {
    errors.push(Cause {
        reason,
        error: FieldError::new(path, message),
    });
}

fn walk(schema: &Value, value: &Value, path: &str, is_root: bool, errors: &mut Vec<Cause>) {
    let int_or_string = flag(schema, "x-kubernetes-int-or-string");
    if value.is_null() {
        if !is_nullable(schema) {
            let expected = if int_or_string {
                "integer or string"
            } else {
                type_of(schema).unwrap_or("a value")
            };
            push(
                errors,
                reason::TYPE_INVALID,
                path,
                format!("Invalid value: null: must be of type {expected}"),
            );
        }
        return;
    }

    let type_ok = if int_or_string {
        match value {
            Value::String(s) => {
                check_string(schema, s, value, path, errors);
                true
            }
            Value::Number(n) if is_integer(n) => {
                check_number(schema, n, value, path, errors);
                true
            }
            _ => {
                push(
                    errors,
                    reason::TYPE_INVALID,
                    path,
                    format!(
                        "Invalid value: {}: must be of type integer or string",
                        show(value)
                    ),
                );
                false
            }
        }
    } else {
        match (type_of(schema), value) {
            (Some("object") | None, Value::Object(map)) => {
                check_object(schema, map, path, is_root, errors);
                true
            }
            (Some("array") | None, Value::Array(items)) => {
                check_array(schema, items, path, errors);
                true
            }
            (Some("string") | None, Value::String(s)) => {
                check_string(schema, s, value, path, errors);
                true
            }
            (Some("integer"), Value::Number(n)) if is_integer(n) => {
                check_number(schema, n, value, path, errors);
                true
            }
            (Some("number") | None, Value::Number(n)) => {
                check_number(schema, n, value, path, errors);
                true
            }
            (Some("boolean") | None, Value::Bool(_)) => true,
            (Some(expected), _) => {
                push(
                    errors,
                    reason::TYPE_INVALID,
                    path,
                    format!("Invalid value: {}: must be of type {expected}", show(value)),
                );
                false
            }
            (None, _) => true,
        }
    };

    // A value of the wrong type is reported once, not also as "unsupported".
    if type_ok
        && let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        push(
            errors,
            reason::NOT_SUPPORTED,
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                show(value),
                list.join(", ")
            ),
        );
    }
}

fn is_integer(n: &Number) -> bool {
    n.is_i64() || n.is_u64()
}

fn check_object(
    schema: &Value,
    map: &Map<String, Value>,
    path: &str,
    is_root: bool,
    errors: &mut Vec<Cause>,
) {
    let empty = Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let embedded = flag(schema, "x-kubernetes-embedded-resource");

    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(name) {
                push(
                    errors,
                    reason::REQUIRED,
                    &join(path, name),
                    "Required value".into(),
                );
            }
        }
    }
    if embedded {
        // An embedded object must say what it is, like any object sent to the apiserver.
        for name in ["apiVersion", "kind"] {
            if !props.contains_key(name)
                && map
                    .get(name)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                push(
                    errors,
                    reason::REQUIRED,
                    &join(path, name),
                    "Required value: must not be empty".into(),
                );
            }
        }
    }
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
        && (map.len() as u64) < min
    {
        push(
            errors,
            reason::INVALID,
            path,
            format!(
                "Invalid value: {}: should have at least {min} properties",
                map.len()
            ),
        );
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && (map.len() as u64) > max
    {
        push(
            errors,
            reason::TOO_MANY,
            path,
            format!(
                "Too many: {}: must have at most {max} properties",
                map.len()
            ),
        );
    }

    for (key, child) in map {
        match field(schema, path, key, is_root || embedded) {
            Field::Declared(child_schema, child_path) => {
                walk(child_schema, child, &child_path, false, errors)
            }
            Field::Kept => {}
            Field::Undeclared => push(
                errors,
                reason::UNKNOWN_FIELD,
                &join(path, key),
                format!("unknown field \"{key}\""),
            ),
        }
    }
}

/// What an object's schema says about one of its fields.
enum Field<'s> {
    /// Declared, by a property or `additionalProperties`: its schema and its path.
    Declared(&'s Value, String),
    /// Not declared, but kept as it is: `additionalProperties: true`,
    /// `x-kubernetes-preserve-unknown-fields`, or `apiVersion`/`kind`/`metadata` of an object.
    Kept,
    /// Not declared: unknown to validation, pruned from a custom resource.
    Undeclared,
}

/// The one rule deciding whether a field is declared, for validation and for pruning.
/// `root_like`: the object is a whole resource (the root or an embedded resource).
fn field<'s>(schema: &'s Value, path: &str, key: &str, root_like: bool) -> Field<'s> {
    if let Some(child) = schema.get("properties").and_then(|p| p.get(key)) {
        return Field::Declared(child, join(path, key));
    }
    match schema.get("additionalProperties") {
        Some(add @ Value::Object(_)) => Field::Declared(add, format!("{path}[{key}]")),
        Some(Value::Bool(true)) => Field::Kept,
        _ if flag(schema, "x-kubernetes-preserve-unknown-fields") => Field::Kept,
        _ if root_like && ROOT_OBJECT_KEYS.contains(&key) => Field::Kept,
        _ => Field::Undeclared,
    }
}

/// Removes every field `schema` does not declare from a custom resource, as the apiserver prunes
/// it before validating, and returns the path of each removed field. What is undeclared is
/// decided by the rule that makes [`validate`] report `unknown field`. The root's `apiVersion`,
/// `kind` and `metadata` are the server's business and are left alone.
pub fn prune_custom_resource(schema: &Value, object: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    if let Value::Object(map) = object {
        for (key, child) in map.iter_mut() {
            if ROOT_OBJECT_KEYS.contains(&key.as_str()) {
                continue;
            }
            if let Field::Declared(child_schema, child_path) = field(schema, "", key, true) {
                prune(child_schema, child, &child_path, &mut pruned);
            }
        }
        map.retain(|key, _| {
            ROOT_OBJECT_KEYS.contains(&key.as_str())
                || !matches!(field(schema, "", key, true), Field::Undeclared)
                || {
                    pruned.push(key.clone());
                    false
                }
        });
    }
    pruned
}

fn prune(schema: &Value, value: &mut Value, path: &str, pruned: &mut Vec<String>) {
    match value {
        Value::Object(map) if matches!(type_of(schema), Some("object") | None) => {
            let root_like = flag(schema, "x-kubernetes-embedded-resource");
            map.retain(|key, child| match field(schema, path, key, root_like) {
                Field::Declared(child_schema, child_path) => {
                    prune(child_schema, child, &child_path, pruned);
                    true
                }
                Field::Kept => true,
                Field::Undeclared => {
                    pruned.push(join(path, key));
                    false
                }
            });
        }
        Value::Array(items) if matches!(type_of(schema), Some("array") | None) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item_schema, item, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

fn check_array(schema: &Value, items: &[Value], path: &str, errors: &mut Vec<Cause>) {
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && (items.len() as u64) < min
    {
        push(
            errors,
            reason::INVALID,
            path,
            format!(
                "Invalid value: {}: should have at least {min} items",
                items.len()
            ),
        );
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && (items.len() as u64) > max
    {
        push(
            errors,
            reason::TOO_MANY,
            path,
            format!("Too many: {}: must have at most {max} items", items.len()),
        );
    }
    let is_set = schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set")
        || flag(schema, "uniqueItems");
    if is_set {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                push(
                    errors,
                    reason::DUPLICATE,
                    &format!("{path}[{i}]"),
                    format!("Duplicate value: {}", show(item)),
                );
            }
        }
    }
    // `x-kubernetes-list-type: map`: no two items with the same values of the
    // `x-kubernetes-list-map-keys` (Gateway API's listeners, header matches and modifiers). As
    // the apiserver (apiextensions' listtype validation): an item's key is the key fields it has
    // (none is a key too), and each later duplicate is reported with its key as JSON.
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
        let keys: Vec<&str> = schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|k| k.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !keys.is_empty() {
            let seen: Vec<serde_json::Map<String, Value>> = items
                .iter()
                .map(|item| {
                    keys.iter()
                        .filter_map(|k| item.get(*k).map(|v| (k.to_string(), v.clone())))
                        .collect()
                })
                .collect();
            for (i, key) in seen.iter().enumerate() {
                if seen[..i].contains(key) {
                    push(
                        errors,
                        reason::DUPLICATE,
                        &format!("{path}[{i}]"),
                        format!("Duplicate value: {}", Value::Object(key.clone())),
                    );
                }
            }
        }
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            walk(item_schema, item, &format!("{path}[{i}]"), false, errors);
        }
    }
}

fn check_string(schema: &Value, s: &str, value: &Value, path: &str, errors: &mut Vec<Cause>) {
    // OpenAPI lengths count characters, not bytes.
    let len = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        push(
            errors,
            reason::INVALID,
            path,
            format!(
                "Invalid value: {}: should be at least {min} chars long",
                show(value)
            ),
        );
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        push(
            errors,
            reason::TOO_LONG,
            path,
            format!("Too long: may not be longer than {max}"),
        );
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match compiled(pattern) {
            Ok(re) if !re.is_match(s) => push(
                errors,
                reason::INVALID,
                path,
                format!("Invalid value: {}: should match '{pattern}'", show(value)),
            ),
            Ok(_) => {}
            Err(e) => push(
                errors,
                reason::INVALID,
                path,
                format!("schema pattern '{pattern}' cannot be evaluated: {e}"),
            ),
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && s.parse::<jiff::Timestamp>().is_err()
    {
        push(
            errors,
            reason::INVALID,
            path,
            format!(
                "Invalid value: {}: must be an RFC 3339 date-time such as 2026-01-02T15:04:05Z",
                show(value)
            ),
        );
    }
}

fn check_number(schema: &Value, n: &Number, value: &Value, path: &str, errors: &mut Vec<Cause>) {
    let Some(x) = n.as_f64() else { return };
    let exclusive_min = flag(schema, "exclusiveMinimum");
    let exclusive_max = flag(schema, "exclusiveMaximum");
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        if exclusive_min && x <= min {
            push(
                errors,
                reason::INVALID,
                path,
                format!(
                    "Invalid value: {}: should be greater than {}",
                    show(value),
                    bound(schema, "minimum")
                ),
            );
        } else if x < min {
            push(
                errors,
                reason::INVALID,
                path,
                format!(
                    "Invalid value: {}: should be greater than or equal to {}",
                    show(value),
                    bound(schema, "minimum")
                ),
            );
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        if exclusive_max && x >= max {
            push(
                errors,
                reason::INVALID,
                path,
                format!(
                    "Invalid value: {}: should be less than {}",
                    show(value),
                    bound(schema, "maximum")
                ),
            );
        } else if x > max {
            push(
                errors,
                reason::INVALID,
                path,
                format!(
                    "Invalid value: {}: should be less than or equal to {}",
                    show(value),
                    bound(schema, "maximum")
                ),
            );
        }
    }
    let range = match schema.get("format").and_then(Value::as_str) {
        Some("int32") => Some((i64::from(i32::MIN), i64::from(i32::MAX), "int32")),
        Some("int64") => Some((i64::MIN, i64::MAX, "int64")),
        _ => None,
    };
    if let Some((lo, hi, name)) = range {
        let fits = n.as_i64().is_some_and(|i| (lo..=hi).contains(&i));
        if !fits {
            push(
                errors,
                reason::INVALID,
                path,
                format!("Invalid value: {}: does not fit in {name}", show(value)),
            );
        }
    }
}

/// A bound as the apiserver prints it: `1`, not `1.0`.
fn bound(schema: &Value, key: &str) -> String {
    match schema.get(key) {
        Some(Value::Number(n)) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                format!("{}", f as i64)
            } else {
                n.to_string()
            }
        }
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Compiled patterns, shared: a server validates every write against the same few.
fn compiled(pattern: &str) -> Result<Regex, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Result<Regex, String>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    cache
        .entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).map_err(|e| e.to_string()))
        .clone()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn messages(schema: Value, value: Value) -> Vec<String> {
        let prepared = prepare(&schema, &value);
        let mut got: Vec<String> = validate(&schema, &prepared)
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        // Sibling order follows the map's key order; compare as sets.
        got.sort();
        got
    }

    #[test]
    fn reports_required_unknown_and_type_errors_with_paths() {
        let schema = json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "probe": {"type": "object", "properties": {"intervalSeconds": {"type": "integer", "minimum": 1}}}
            }
        });
        let got = messages(
            schema,
            json!({"probe": {"intervalSeconds": 0, "extra": 1}, "other": "x"}),
        );
        assert_eq!(
            got,
            vec![
                "name: Required value",
                "other: unknown field \"other\"",
                "probe.extra: unknown field \"extra\"",
                "probe.intervalSeconds: Invalid value: 0: should be greater than or equal to 1",
            ]
        );
    }

    #[test]
    fn wrong_types_stop_further_checks_on_that_field() {
        let schema = json!({"type": "object", "properties": {
            "n": {"type": "integer", "minimum": 5},
            "s": {"type": "string", "minLength": 3},
            "b": {"type": "boolean"},
            "a": {"type": "array", "items": {"type": "string"}}
        }});
        let got = messages(schema, json!({"n": "ten", "s": 7, "b": "yes", "a": [1]}));
        assert_eq!(
            got,
            vec![
                "a[0]: Invalid value: 1: must be of type string",
                "b: Invalid value: \"yes\": must be of type boolean",
                "n: Invalid value: \"ten\": must be of type integer",
                "s: Invalid value: 7: must be of type string",
            ]
        );
    }

    #[test]
    fn list_type_map_keys_are_unique() {
        let schema = json!({"type": "object", "properties": {
            "one": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "v": {"type": "integer"}}}},
            "two": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["port", "protocol"],
                    "items": {"type": "object", "properties": {
                        "port": {"type": "integer"}, "protocol": {"type": "string"}}}}
        }});
        let got = messages(
            schema.clone(),
            json!({
                "one": [{"name": "a", "v": 1}, {"name": "b"}, {"name": "a", "v": 2}, {"v": 3}, {"v": 4}],
                "two": [{"port": 80, "protocol": "TCP"}, {"port": 80, "protocol": "UDP"},
                        {"protocol": "TCP", "port": 80}]
            }),
        );
        assert_eq!(
            got,
            vec![
                "one[2]: Duplicate value: {\"name\":\"a\"}",
                "one[4]: Duplicate value: {}",
                "two[2]: Duplicate value: {\"port\":80,\"protocol\":\"TCP\"}",
            ]
        );
        assert!(messages(schema, json!({"one": [{"name": "a"}, {"name": "b"}]})).is_empty());
    }

    #[test]
    fn nullable_and_null_pruning_with_defaults() {
        let schema = json!({"type": "object", "properties": {
            "opt": {"type": "string", "nullable": true},
            "port": {"type": "integer", "default": 80},
            "req": {"type": "string"}
        }, "required": ["req"]});
        let prepared = prepare(&schema, &json!({"opt": null, "port": null, "req": null}));
        assert_eq!(prepared, json!({"opt": null, "port": 80}));
        let got: Vec<String> = validate(&schema, &prepared)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, vec!["req: Required value"]);
        // Unprepared nulls are still reported.
        let raw = validate(&schema, &json!({"req": null}));
        assert_eq!(
            raw[0].message,
            "Invalid value: null: must be of type string"
        );
    }

    #[test]
    fn bounds_lengths_items_pattern_enum_and_formats() {
        let schema = json!({"type": "object", "properties": {
            "excl": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "exclusiveMaximum": true},
            "big": {"type": "integer", "format": "int32"},
            "max": {"type": "integer", "maximum": 65535},
            "name": {"type": "string", "maxLength": 3, "pattern": "^[a-z]+$"},
            "list": {"type": "array", "minItems": 1, "maxItems": 2},
            "mode": {"type": "string", "enum": ["A", "B"]},
            "when": {"type": "string", "format": "date-time"},
            "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}
        }});
        let got = messages(
            schema.clone(),
            json!({"excl": 1, "big": 3000000000u64, "max": 70000, "name": "ABCD", "list": [],
                   "mode": "C", "when": "yesterday", "set": ["a", "a"]}),
        );
        assert_eq!(
            got,
            vec![
                "big: Invalid value: 3000000000: does not fit in int32",
                "excl: Invalid value: 1.0: should be less than 1",
                "list: Invalid value: 0: should have at least 1 items",
                "max: Invalid value: 70000: should be less than or equal to 65535",
                "mode: Unsupported value: \"C\": supported values: \"A\", \"B\"",
                "name: Invalid value: \"ABCD\": should match '^[a-z]+$'",
                "name: Too long: may not be longer than 3",
                "set[1]: Duplicate value: \"a\"",
                "when: Invalid value: \"yesterday\": must be an RFC 3339 date-time such as 2026-01-02T15:04:05Z",
            ]
        );
        let ok = messages(
            schema,
            json!({"excl": 0.5, "big": 5, "max": 1, "name": "ab", "list": [1, 2], "mode": "A",
                   "when": "2026-01-02T15:04:05Z", "set": ["a", "b"]}),
        );
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn extensions_int_or_string_preserve_unknown_embedded_and_maps() {
        let schema = json!({"type": "object", "properties": {
            "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "obj": {"type": "object", "x-kubernetes-embedded-resource": true,
                    "x-kubernetes-preserve-unknown-fields": true},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}}
        }});
        assert!(
            messages(
                schema.clone(),
                json!({"port": "http", "free": {"anything": [1]},
                       "obj": {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {}},
                       "labels": {"a": "b"}})
            )
            .is_empty()
        );
        assert_eq!(
            messages(
                schema,
                json!({"port": true, "obj": {"spec": {}}, "labels": {"a": 1}})
            ),
            vec![
                "labels[a]: Invalid value: 1: must be of type string",
                "obj.apiVersion: Required value: must not be empty",
                "obj.kind: Required value: must not be empty",
                "port: Invalid value: true: must be of type integer or string",
            ]
        );
    }

    #[test]
    fn wrong_type_is_not_also_reported_as_unsupported() {
        let schema = json!({"type": "object", "properties": {
            "mode": {"type": "string", "enum": ["A", "B"]}
        }});
        assert_eq!(
            messages(schema, json!({"mode": 5})),
            vec!["mode: Invalid value: 5: must be of type string"]
        );
    }

    #[test]
    fn custom_resource_root_accepts_object_keys() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object"}}});
        let obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "spec": {}});
        assert!(validate_custom_resource(&schema, &obj).is_empty());
        assert_eq!(validate(&schema, &obj).len(), 3);
    }

    #[test]
    fn numbers_are_normalised_to_the_declared_type() {
        let schema = json!({"type": "object", "properties": {
            "i": {"type": "integer"}, "f": {"type": "number", "default": 1}
        }});
        let prepared = prepare(&schema, &json!({"i": 3.0}));
        assert!(prepared["i"].is_i64());
        assert!(prepared["f"].is_f64());
        assert!(validate(&schema, &prepared).is_empty());
        assert_eq!(validate(&schema, &json!({"i": 3.5})).len(), 1);
    }

    #[test]
    fn pruning_removes_what_validation_calls_unknown() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "n": {"type": "integer"},
                "items": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "obj": {"type": "object", "x-kubernetes-embedded-resource": true,
                        "properties": {"spec": {"type": "object"}}}
            }}
        }});
        let object = json!({"apiVersion": "x/v1", "kind": "T", "metadata": {"name": "a", "any": 1},
            "extra": 1,
            "spec": {"n": 1, "bad": true, "items": [{"a": "x", "b": 2}], "labels": {"k": "v"},
                     "free": {"whatever": [1]},
                     "obj": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}, "y": 2}}});
        let unknown: Vec<String> = validate_custom_resource(&schema, &object)
            .into_iter()
            .filter(|e| e.message.starts_with("unknown field"))
            .map(|e| e.path)
            .collect();
        let mut pruned_object = object.clone();
        let mut pruned = prune_custom_resource(&schema, &mut pruned_object);
        pruned.sort();
        let mut unknown_sorted = unknown.clone();
        unknown_sorted.sort();
        assert_eq!(pruned, unknown_sorted);
        assert_eq!(
            pruned,
            [
                "extra",
                "spec.bad",
                "spec.items[0].b",
                "spec.obj.spec.x",
                "spec.obj.y"
            ]
        );
        assert!(validate_custom_resource(&schema, &pruned_object).is_empty());
        assert_eq!(pruned_object["metadata"]["any"], 1);
        assert_eq!(pruned_object["spec"]["free"]["whatever"], json!([1]));
    }

    #[test]
    fn causes_carry_the_status_reason() {
        let schema = json!({"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object", "properties": {
            "n": {"type": "integer", "maximum": 3},
            "s": {"type": "string", "maxLength": 1},
            "e": {"type": "string", "enum": ["A"]},
            "t": {"type": "integer"}
        }}}});
        let reasons = |object: Value| -> Vec<(&'static str, String)> {
            let mut got: Vec<_> = custom_resource_causes(&schema, &object)
                .into_iter()
                .map(|c| (c.reason, c.error.path))
                .collect();
            got.sort();
            got
        };
        assert_eq!(reasons(json!({})), [(reason::REQUIRED, "spec".to_string())]);
        assert_eq!(
            reasons(json!({"spec": {"n": 4, "s": "ab", "e": "B", "t": "x"}})),
            [
                (reason::INVALID, "spec.n".to_string()),
                (reason::NOT_SUPPORTED, "spec.e".to_string()),
                (reason::TOO_LONG, "spec.s".to_string()),
                (reason::TYPE_INVALID, "spec.t".to_string()),
            ]
        );
    }
}
