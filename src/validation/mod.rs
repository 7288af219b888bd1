//! Validation of FailoverPolicy documents: the rules `ingress-failover check` applies offline and
//! the controller applies on every reconcile.
//!
//! Four layers, in the order the apiserver and then the operator apply them:
//!
//! 1. [`openapi`]: the CRD's structural schema (types, bounds, unknown fields), after defaults;
//! 2. [`cel`]: the CRD's `x-kubernetes-validations` rules;
//! 3. typed deserialization into [`FailoverPolicy`];
//! 4. [`semantic`]: what neither schema nor CEL can say (address syntax, duplicates across pools,
//!    cross-namespace references, the probe allowlist, ...).
//!
//! Layers 1–2 also run inside a real apiserver at admission; layer 4 only in the operator, which
//! is why the controller must call [`semantic::validate_policy`] itself and refuse the policy with
//! `Ready=False, reason=InvalidSpec` when it returns anything.

pub mod address;
pub mod confine;
pub mod semantic;

use std::sync::OnceLock;

use serde_json::Value;

use crate::api::FailoverPolicy;
use crate::api::crd::openapi_schema;

pub use k8s_rules::{FieldError, cel, openapi};

pub use confine::{Allowlist, AllowlistError, DenyRule, Refusal};
pub use semantic::{ContextError, ValidationContext, policy_warnings, validate_policy};

/// API version the operator serves.
pub const API_VERSION: &str = "ingressfailover.io/v1alpha1";
/// Kind the operator manages.
pub const KIND: &str = "FailoverPolicy";

/// Validates one parsed document (YAML or JSON, already turned into a JSON value) as a
/// FailoverPolicy, with every layer the apiserver and the operator apply, and returns the typed
/// policy with defaults filled in.
///
/// Schema errors do not stop the CEL rules (both are reported, as `kubectl apply` would), but CEL
/// rules that merely could not be evaluated are dropped when the schema already failed, since
/// they echo the same mistake. Typed deserialization and the semantic checks need a
/// schema-valid object, so they run only then.
pub fn validate_document(
    value: &Value,
    ctx: &ValidationContext,
) -> Result<FailoverPolicy, Vec<FieldError>> {
    let mut errors = check_type_meta(value);
    if !errors.is_empty() {
        return Err(errors);
    }

    let schema = policy_schema();
    let prepared = openapi::prepare(schema, value);
    let schema_errors = openapi::validate_custom_resource(schema, &prepared);
    let cel_outcome = cel::cached(schema).validate(&prepared);
    let schema_ok = schema_errors.is_empty();
    errors.extend(schema_errors);
    errors.extend(cel_outcome.violations);
    if !schema_ok {
        return Err(errors);
    }
    errors.extend(cel_outcome.evaluation_errors);

    let policy: FailoverPolicy = match serde_path_to_error::deserialize(&prepared) {
        Ok(policy) => policy,
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            errors.push(FieldError::new(path, e.into_inner().to_string()));
            return Err(errors);
        }
    };
    // Semantic checks repeat a few CEL rules for objects admitted under an older CRD; report a
    // path once, with the admission-time message.
    let reported: Vec<String> = errors.iter().map(|e| e.path.clone()).collect();
    errors.extend(
        validate_policy(&policy, ctx)
            .into_iter()
            .filter(|e| !reported.contains(&e.path)),
    );
    if errors.is_empty() {
        Ok(policy)
    } else {
        Err(errors)
    }
}

/// The served version's schema, generated once per process.
fn policy_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(openapi_schema)
}

/// `apiVersion` and `kind`, checked first so that a wrong one gives one clear line instead of a
/// schema dump.
fn check_type_meta(value: &Value) -> Vec<FieldError> {
    let Some(map) = value.as_object() else {
        return vec![FieldError::new(
            "",
            format!(
                "expected a {KIND} object, found {}",
                describe_json_type(value)
            ),
        )];
    };
    let mut errors = Vec::new();
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        Some(other) => errors.push(FieldError::new(
            "apiVersion",
            format!("Unsupported value: \"{other}\": supported values: \"{API_VERSION}\""),
        )),
        None => errors.push(FieldError::new(
            "apiVersion",
            format!("Required value: must be \"{API_VERSION}\""),
        )),
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(KIND) => {}
        Some(other) => errors.push(FieldError::new(
            "kind",
            format!("Unsupported value: \"{other}\": supported values: \"{KIND}\""),
        )),
        None => errors.push(FieldError::new(
            "kind",
            format!("Required value: must be \"{KIND}\""),
        )),
    }
    errors
}

fn describe_json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "an empty document",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn minimal() -> Value {
        json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": "web"},
            "spec": {
                "backends": {"primary": {"service": {"name": "web"}}},
                "managedService": {"name": "web-failover"}
            }
        })
    }

    #[test]
    fn minimal_policy_is_valid_and_defaulted() {
        let policy = validate_document(&minimal(), &ValidationContext::default()).unwrap();
        assert_eq!(policy.spec.probe.interval_seconds, 10);
        assert_eq!(policy.spec.managed_service.port, 80);
        assert_eq!(policy.spec.thresholds.activate_below, 0.5);
    }

    #[test]
    fn layers_report_with_paths() {
        let mut doc = minimal();
        doc["apiVersion"] = json!("ingressfailover.io/v1");
        let errors = validate_document(&doc, &ValidationContext::default()).unwrap_err();
        assert_eq!(errors[0].path, "apiVersion");

        let mut doc = minimal();
        doc["spec"]["probe"] = json!({"intervalSeconds": 0, "timeoutSeconds": 5});
        let errors = validate_document(&doc, &ValidationContext::default()).unwrap_err();
        assert!(
            errors.iter().any(|e| e.to_string()
                == "spec.probe.intervalSeconds: Invalid value: 0: should be greater than or equal to 1"),
            "{errors:?}"
        );

        let mut doc = minimal();
        doc["spec"]["thresholds"] = json!({"activateBelow": 0.8, "deactivateAbove": 0.6});
        let errors = validate_document(&doc, &ValidationContext::default()).unwrap_err();
        assert_eq!(
            errors[0].path, "spec.thresholds.deactivateAbove",
            "{errors:?}"
        );

        let mut doc = minimal();
        doc["spec"]["managedService"]["name"] = json!("web");
        let errors = validate_document(&doc, &ValidationContext::default()).unwrap_err();
        assert_eq!(errors[0].path, "spec.managedService.name", "{errors:?}");
    }

    #[test]
    fn non_objects_are_refused() {
        let errors = validate_document(&json!("text"), &ValidationContext::default()).unwrap_err();
        assert_eq!(
            errors[0].message,
            "expected a FailoverPolicy object, found a string"
        );
    }
}
