//! Custom resources against their CRD version's structural `openAPIV3Schema`: defaulting,
//! pruning of unknown fields, validation and the `x-kubernetes-validations` CEL rules, all with
//! the rules of [`k8s_rules`] (`openapi`, `cel`), the very ones `ingress-failover check` applies
//! offline. That covers the OpenAPI subset structural schemas allow, `pattern` and `format`
//! included (see `k8s_rules::openapi`). CEL rules kube's engine cannot evaluate are skipped
//! rather than rejected; transition rules (`oldSelf`) run on updates, and on objects whose
//! schema failures do not block them (as the apiserver decides).

use super::status::FieldCause;
use k8s_rules::{cel, openapi, reason};
use serde_json::Value;

/// Reason of the pseudo-cause reporting a pruned unknown field: not an error by itself, but
/// `fieldValidation=Strict` turns it into one.
pub const UNKNOWN: &str = reason::UNKNOWN_FIELD;

/// Failures that keep the CEL rules from running.
const BLOCKING: [&str; 5] = [
    reason::NOT_SUPPORTED,
    reason::REQUIRED,
    reason::TOO_LONG,
    reason::TOO_MANY,
    reason::TYPE_INVALID,
];

/// The apiserver's cause (at field `<nil>`) when a blocking failure kept the CEL rules from running.
const NOT_CHECKED: &str = "null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

/// The apiserver's OpenAPI messages name the field again: `1001: spec.size in body should be
/// less than or equal to 100` (kube-openapi's "%s in %s should ..."), where `k8s_rules` (whose
/// wording `ingress-failover check` prints) says `1001: should be ...`.
fn in_body(detail: &str, path: &str) -> String {
    if path.is_empty() {
        return detail.to_string();
    }
    if let Some(rest) = detail.strip_prefix("should ") {
        return format!("{path} in body should {rest}");
    }
    match detail.find(": should ") {
        Some(i) => format!(
            "{}: {path} in body should {}",
            &detail[..i],
            &detail[i + 9..]
        ),
        None => detail.to_string(),
    }
}

/// The apiserver's cause for a rule that read a missing key: `Invalid value: "object": no such
/// key: certificateRefs evaluating rule: <the rule's message, else the rule>`, at the rule's
/// node. `message` is `k8s_rules::cel`'s "rule `...` could not be evaluated: <error>".
fn missing_key(schema: &Value, obj: &Value, path: &str, message: &str) -> Option<FieldCause> {
    let rest = message.strip_prefix("Invalid value: rule `")?;
    let (rule, error) = rest.split_once("` could not be evaluated: ")?;
    let node = value_at(obj, path);
    let key = match error.strip_prefix("No such key: ") {
        Some(key) => key.to_string(),
        // kube's engine says this of `size(self.x)` with no `x`: name the first field the rule
        // reads from `self` that the node lacks, or skip the error when there is none.
        None if error.ends_with("Missing argument or target") => {
            let node = node?.as_object()?;
            rule.match_indices("self.").find_map(|(i, _)| {
                let ident: String = rule[i + 5..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                (!ident.is_empty() && !node.contains_key(&ident)).then_some(ident)
            })?
        }
        None => return None,
    };
    let shown = rule_message(schema, rule).unwrap_or(rule).trim();
    let node_type = match node {
        Some(Value::Object(_)) | None => "object",
        Some(Value::Array(_)) => "array",
        Some(Value::String(_)) => "string",
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Number(n)) if n.is_f64() => "number",
        Some(Value::Number(_)) => "integer",
        Some(Value::Null) => "null",
    };
    Some(FieldCause::new(
        reason::INVALID,
        path,
        format!("\"{node_type}\": no such key: {key} evaluating rule: {shown}"),
    ))
}

/// The `message` of the `x-kubernetes-validations` entry whose rule is `rule`.
fn rule_message<'s>(schema: &'s Value, rule: &str) -> Option<&'s str> {
    match schema {
        Value::Object(map) => {
            if let Some(rules) = map
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
            {
                for r in rules {
                    if r.get("rule").and_then(Value::as_str) == Some(rule) {
                        return r.get("message").and_then(Value::as_str);
                    }
                }
            }
            map.values().find_map(|v| rule_message(v, rule))
        }
        Value::Array(items) => items.iter().find_map(|v| rule_message(v, rule)),
        _ => None,
    }
}

/// The value at a cause path such as `spec.listeners[0].tls`.
fn value_at<'v>(obj: &'v Value, path: &str) -> Option<&'v Value> {
    let mut v = obj;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, indices) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            v = v.get(name)?;
        }
        for index in indices.split('[').filter(|i| !i.is_empty()) {
            v = v.get(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(v)
}

/// Validates `obj` against a CRD version's `openAPIV3Schema`, applying defaults and pruning
/// unknown fields in place. Returns the failures (empty = valid), including one [`UNKNOWN`]
/// cause per pruned field. CEL rules run unless a blocking failure (see [`BLOCKING`]) was found.
pub fn validate_and_default(
    schema: &Value,
    obj: &mut Value,
    old: Option<&Value>,
) -> Vec<FieldCause> {
    if !obj.is_object() {
        return vec![FieldCause::new(
            reason::TYPE_INVALID,
            "",
            "must be an object",
        )];
    }
    *obj = openapi::prepare(schema, obj);
    let mut out: Vec<FieldCause> = openapi::prune_custom_resource(schema, obj)
        .into_iter()
        .map(|field| FieldCause::new(UNKNOWN, field, "field not declared in schema"))
        .collect();
    out.extend(
        openapi::custom_resource_causes(schema, obj)
            .into_iter()
            // The apiserver reports a missing root field as a decoding error, not a cause.
            .filter(|c| !(c.error.path.is_empty() && c.reason == reason::REQUIRED))
            .map(|c| {
                let detail = in_body(reason::detail(c.reason, &c.error.message), &c.error.path);
                FieldCause::new(c.reason, c.error.path, detail)
            }),
    );
    // As the apiserver (apiextensions' `hasBlockingErr`): a wrong type, a value not in the enum,
    // a missing required field, a string or list over its maximum blocks the CEL rules, and one
    // more cause says so; other failures (a pattern, a bound, a duplicate) do not.
    if out.iter().any(|c| BLOCKING.contains(&c.reason)) {
        out.push(FieldCause::new(reason::INVALID, "<nil>", NOT_CHECKED));
    } else {
        let outcome = cel::cached(schema).validate_update(obj, old);
        out.extend(
            outcome
                .violations
                .into_iter()
                .map(|e| FieldCause::new(reason::INVALID, e.path, e.message)),
        );
        // A rule reading a field the object lacks fails to evaluate, and the apiserver refuses
        // the object for it. Other evaluation errors (a function kube's engine lacks) are
        // skipped: they are the engine's, not the object's.
        out.extend(
            outcome
                .evaluation_errors
                .into_iter()
                .filter_map(|e| missing_key(schema, obj, &e.path, &e.message)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["target"], "properties": {
                "target": {"type": "string", "minLength": 1},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                "mode": {"type": "string", "enum": ["A", "B"]},
                "port": {"x-kubernetes-int-or-string": true},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }, "x-kubernetes-validations": [{"rule": "self.replicas != 7", "message": "seven is unlucky"}]},
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
        }})
    }

    #[test]
    fn defaults_prunes_and_accepts() {
        let mut o = json!({"apiVersion": "x/v1", "kind": "T", "metadata": {"name": "a"},
            "spec": {"target": "t", "unknown": 1, "port": "http", "extra": {"free": true}}});
        let causes = validate_and_default(&schema(), &mut o, None);
        assert_eq!(
            causes,
            vec![FieldCause::new(
                UNKNOWN,
                "spec.unknown",
                "field not declared in schema"
            )]
        );
        assert_eq!(o["spec"]["replicas"], 1);
        assert!(o["spec"].get("unknown").is_none());
        assert_eq!(o["spec"]["extra"]["free"], true);
    }

    #[test]
    fn reports_field_paths() {
        let mut o = json!({"spec": {"replicas": "x", "mode": "C"}});
        let causes = validate_and_default(&schema(), &mut o, None);
        let fields: Vec<(&str, &str)> = causes
            .iter()
            .map(|c| (c.reason, c.field.as_str()))
            .collect();
        assert!(
            fields.contains(&("FieldValueTypeInvalid", "spec.replicas")),
            "{fields:?}"
        );
        assert!(fields.contains(&("FieldValueNotSupported", "spec.mode")));
        assert!(fields.contains(&("FieldValueRequired", "spec.target")));
        let mut big = json!({"spec": {"target": "t", "replicas": 11}});
        let causes = validate_and_default(&schema(), &mut big, None);
        assert_eq!(causes[0].field, "spec.replicas");
    }

    #[test]
    fn cel_rules_run_beside_non_blocking_failures_only() {
        // Over the maximum (not blocking) and rule-breaking: both reported.
        let mut o = json!({"spec": {"target": "t", "replicas": 11}});
        let mut schema = schema();
        schema["properties"]["spec"]["x-kubernetes-validations"] =
            json!([{"rule": "self.replicas < 10", "message": "below ten"}]);
        let causes = validate_and_default(&schema, &mut o, None);
        let details: Vec<&str> = causes.iter().map(|c| c.detail.as_str()).collect();
        assert_eq!(causes.len(), 2, "{causes:?}");
        assert!(
            details.iter().any(|d| d.contains("below ten")),
            "{details:?}"
        );
        // A value not in the enum blocks the rules: the apiserver's <nil> cause says so.
        let mut o = json!({"spec": {"target": "t", "replicas": 11, "mode": "C"}});
        let causes = validate_and_default(&schema, &mut o, None);
        let last = causes.last().unwrap();
        assert_eq!(
            (last.reason, last.field.as_str()),
            (reason::INVALID, "<nil>")
        );
        assert!(
            last.detail
                .contains("some validation rules were not checked")
        );
        assert!(!causes.iter().any(|c| c.detail.contains("below ten")));
    }

    #[test]
    fn openapi_messages_name_the_field_in_body() {
        assert_eq!(
            in_body("1001: should be less than or equal to 100", "spec.size"),
            "1001: spec.size in body should be less than or equal to 100"
        );
        assert_eq!(
            in_body("\"a:b\": should match '^[a-z]+$'", "spec.n"),
            "\"a:b\": spec.n in body should match '^[a-z]+$'"
        );
        assert_eq!(
            in_body("\"x\": must be of type integer", "spec.n"),
            "\"x\": must be of type integer"
        );
    }

    #[test]
    fn a_rule_reading_a_missing_key_refuses_the_object() {
        let mut schema = schema();
        schema["properties"]["spec"]["properties"]["tls"] = json!({"type": "object",
        "properties": {"mode": {"type": "string"}, "refs": {"type": "array", "items": {"type": "string"}}},
        "x-kubernetes-validations": [
            {"rule": "self.mode == 'T' ? size(self.refs) > 0 : true", "message": "refs needed for T"}
        ]});
        let mut o = json!({"spec": {"target": "t", "tls": {"mode": "T"}}});
        let causes = validate_and_default(&schema, &mut o, None);
        assert_eq!(
            causes,
            vec![FieldCause::new(
                reason::INVALID,
                "spec.tls",
                "\"object\": no such key: refs evaluating rule: refs needed for T"
            )]
        );
        let mut ok = json!({"spec": {"target": "t", "tls": {"mode": "P"}}});
        assert!(validate_and_default(&schema, &mut ok, None).is_empty());
        assert_eq!(
            value_at(&json!({"a": [{"b": [1, {"c": 2}]}]}), "a[0].b[1].c"),
            Some(&json!(2))
        );
    }

    #[test]
    fn cel_rules_are_evaluated() {
        let mut o = json!({"spec": {"target": "t", "replicas": 7}});
        let causes = validate_and_default(&schema(), &mut o, None);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert!(causes[0].detail.contains("seven is unlucky"));
    }
}
