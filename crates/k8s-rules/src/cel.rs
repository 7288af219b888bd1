//! The CRD's `x-kubernetes-validations` (CEL rules), run locally with kube-cel — the same rules
//! the apiserver runs at admission, so `check` refuses what `kubectl apply` would.
//!
//! Generic like [`super::openapi`]: any structural schema with CEL rules works.

use kube::core::cel::{CompiledSchema, ErrorKind, ValidationError, Validator, compile_schema};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::FieldError;

/// What the CEL rules said about one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CelOutcome {
    /// Rules that evaluated to `false`: the object breaks them.
    pub violations: Vec<FieldError>,
    /// Rules that could not be evaluated (a missing field, a type mismatch, an unsupported
    /// function). The apiserver rejects the object in that case too, but when the schema already
    /// reported errors these are usually just echoes of them.
    pub evaluation_errors: Vec<FieldError>,
}

impl CelOutcome {
    /// Every problem, violations first.
    pub fn all(self) -> Vec<FieldError> {
        let mut all = self.violations;
        all.extend(self.evaluation_errors);
        all
    }
}

/// The rules of one schema, compiled once (CEL parsing is the expensive part) and evaluated for
/// many objects.
pub struct CelValidator {
    compiled: CompiledSchema,
    validator: Validator,
}

impl std::fmt::Debug for CelValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelValidator").finish_non_exhaustive()
    }
}

impl CelValidator {
    /// Compiles every rule of `schema`. Rules that do not compile are reported by
    /// [`CelValidator::compile_errors`] and, per object, as evaluation errors.
    pub fn new(schema: &Value) -> Self {
        CelValidator {
            compiled: compile_schema(schema),
            validator: Validator::new(),
        }
    }

    /// Rules that do not compile, with the schema path they sit at.
    pub fn compile_errors(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        collect_compile_errors(&self.compiled, "", &mut out);
        out
    }

    /// Evaluates every rule against `object` (prepared with [`super::openapi::prepare`]; kube-cel
    /// applies schema defaults again, which is harmless). Transition rules (`oldSelf`) are
    /// skipped: this is creation-time validation.
    pub fn validate(&self, object: &Value) -> CelOutcome {
        self.validate_update(object, None)
    }

    /// Like [`CelValidator::validate`]; with `old`, the object before an update, transition
    /// rules (`oldSelf`) are evaluated too, as the apiserver does on updates.
    pub fn validate_update(&self, object: &Value, old: Option<&Value>) -> CelOutcome {
        let mut outcome = CelOutcome::default();
        if let Err(errors) = self
            .validator
            .validate_compiled(&self.compiled, object, old)
        {
            for error in errors {
                let violated = error.kind == ErrorKind::ValidationFailure;
                let field_error = to_field_error(&error);
                if violated {
                    outcome.violations.push(field_error);
                } else {
                    outcome.evaluation_errors.push(field_error);
                }
            }
        }
        outcome
    }
}

/// The validator of `schema`'s rules, compiled once per process and schema: compiling takes
/// milliseconds, evaluating microseconds, and a server validates every write (status patches
/// included) against the same few schemas.
pub fn cached(schema: &Value) -> Arc<CelValidator> {
    /// More distinct schemas than this and the cache starts over.
    const MAX_SCHEMAS: usize = 64;
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<CelValidator>>>> = OnceLock::new();
    let key = schema.to_string();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return v.clone();
    }
    let v = Arc::new(CelValidator::new(schema));
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= MAX_SCHEMAS {
        map.clear();
    }
    map.insert(key, v.clone());
    v
}

/// One-shot convenience: compile `schema`'s rules and evaluate them against `object`.
pub fn validate(schema: &Value, object: &Value) -> CelOutcome {
    CelValidator::new(schema).validate(object)
}

fn to_field_error(error: &ValidationError) -> FieldError {
    // kube-cel joins a rule's `fieldPath` (".spec.x") onto the node path, which leaves a leading
    // dot for rules on the root.
    let path = error.field_path.trim_start_matches('.');
    let message = match error.kind {
        ErrorKind::ValidationFailure => error.message.clone(),
        _ => format!(
            "Invalid value: rule `{}` could not be evaluated: {}",
            error.rule, error.message
        ),
    };
    FieldError::new(path, message)
}

fn collect_compile_errors(node: &CompiledSchema, path: &str, out: &mut Vec<FieldError>) {
    for error in node.compilation_errors() {
        out.push(FieldError::new(path, error.to_string()));
    }
    let join = |seg: &str| {
        if path.is_empty() {
            seg.to_string()
        } else {
            format!("{path}.{seg}")
        }
    };
    let mut props: Vec<_> = node.properties.iter().collect();
    props.sort_by(|a, b| a.0.cmp(b.0));
    for (name, child) in props {
        collect_compile_errors(child, &join(name), out);
    }
    if let Some(items) = &node.items {
        collect_compile_errors(items, &format!("{path}[*]"), out);
    }
    if let Some(additional) = &node.additional_properties {
        collect_compile_errors(additional, &format!("{path}[*]"), out);
    }
    for branch in node.all_of.iter().chain(&node.one_of).chain(&node.any_of) {
        collect_compile_errors(branch, path, out);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn maps_violations_and_evaluation_errors_to_paths() {
        let schema = json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "a": {"type": "integer"}, "b": {"type": "integer"}, "list": {"type": "array", "items": {"type": "integer"}}
            },
            "x-kubernetes-validations": [
                {"rule": "self.a < self.b", "message": "a must be below b", "fieldPath": ".a"},
                {"rule": "self.list.all(x, x > 0)", "message": "positive"}
            ]}},
            "x-kubernetes-validations": [{"rule": "has(self.spec)", "message": "spec needed", "fieldPath": ".spec"}]
        });
        let outcome = validate(&schema, &json!({"spec": {"a": 2, "b": 1}}));
        assert_eq!(
            outcome.violations,
            vec![FieldError::new("spec.a", "a must be below b")]
        );
        assert_eq!(outcome.evaluation_errors.len(), 1, "{outcome:?}");
        assert_eq!(outcome.evaluation_errors[0].path, "spec");
        assert!(
            outcome.evaluation_errors[0]
                .message
                .contains("self.list.all")
        );

        let root = validate(&schema, &json!({}));
        assert_eq!(
            root.violations,
            vec![FieldError::new("spec", "spec needed")]
        );
        assert!(
            validate(&schema, &json!({"spec": {"a": 1, "b": 2, "list": [1]}}))
                .all()
                .is_empty()
        );
    }

    #[test]
    fn reports_rules_that_do_not_compile() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [{"rule": "self.a <<< 1"}]}}});
        let errors = CelValidator::new(&schema).compile_errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "spec");
    }
}
