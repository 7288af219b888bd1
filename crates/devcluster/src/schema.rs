//! Custom resources against their CRD version's structural `openAPIV3Schema`: defaulting,
//! pruning of unknown fields, validation and the `x-kubernetes-validations` CEL rules, all with
//! the rules of [`k8s_rules`] (`openapi`, `cel`), the very ones `ingress-failover check` applies
//! offline. That covers the OpenAPI subset structural schemas allow, `pattern` and `format`
//! included (see `k8s_rules::openapi`). CEL rules kube's engine cannot evaluate are skipped
//! rather than rejected; transition rules (`oldSelf`) run on updates.

use super::status::FieldCause;
use k8s_rules::{cel, openapi, reason};
use serde_json::Value;

/// Reason of the pseudo-cause reporting a pruned unknown field: not an error by itself, but
/// `fieldValidation=Strict` turns it into one.
pub const UNKNOWN: &str = reason::UNKNOWN_FIELD;

/// Validates `obj` against a CRD version's `openAPIV3Schema`, applying defaults and pruning
/// unknown fields in place. Returns the failures (empty = valid), including one [`UNKNOWN`]
/// cause per pruned field. CEL rules run only on an object the schema accepts.
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
                let detail = reason::detail(c.reason, &c.error.message).to_string();
                FieldCause::new(c.reason, c.error.path, detail)
            }),
    );
    if out.iter().all(|c| c.reason == UNKNOWN) {
        let outcome = cel::cached(schema).validate_update(obj, old);
        out.extend(
            outcome
                .violations
                .into_iter()
                .map(|e| FieldCause::new(reason::INVALID, e.path, e.message)),
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
    fn cel_rules_are_evaluated() {
        let mut o = json!({"spec": {"target": "t", "replicas": 7}});
        let causes = validate_and_default(&schema(), &mut o, None);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert!(causes[0].detail.contains("seven is unlucky"));
    }
}
