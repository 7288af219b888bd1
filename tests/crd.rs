//! The committed CRD must be exactly what the code generates, and it must read well in
//! `kubectl get` and `kubectl explain`.
//!
//! After changing the API types, regenerate the file with
//! `UPDATE_CRD=1 cargo test --test crd` (or `cargo run -- crd > crds/...`).

use std::path::PathBuf;

use ingress_failover::api::crd::{crd, crd_yaml, openapi_schema};
use serde_json::Value;

/// Every committed copy of the generated CRD: the repository's and the Helm chart's.
const CRD_FILES: [&str; 2] = [
    "crds/failoverpolicies.ingressfailover.io.yaml",
    "charts/ingress-failover/crds/failoverpolicies.ingressfailover.io.yaml",
];

fn crd_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(file)
}

#[test]
fn committed_crds_match_generated() {
    for file in CRD_FILES {
        committed_crd_matches_generated(file);
    }
}

fn committed_crd_matches_generated(file: &str) {
    let generated = crd_yaml();
    if std::env::var_os("UPDATE_CRD").is_some_and(|v| v == "1") {
        std::fs::write(crd_path(file), &generated).expect("write the CRD file");
    }
    let committed = std::fs::read_to_string(crd_path(file)).unwrap_or_default();
    if committed != generated {
        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}:\n  committed: {a}\n  generated: {b}", i + 1))
            .unwrap_or_else(|| "one file is a prefix of the other".into());
        panic!(
            "{file} is out of date with the API types ({first_difference}).\n\
             Regenerate it: cargo run -- crd > {file}\n\
             (or: UPDATE_CRD=1 cargo test --test crd)"
        );
    }
}

#[test]
fn crd_names_subresources_and_columns() {
    let crd = crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("failoverpolicies.ingressfailover.io")
    );
    assert_eq!(crd.spec.names.short_names, Some(vec!["fp".to_string()]));
    assert_eq!(
        crd.spec.names.categories,
        Some(vec!["failover".to_string()])
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.versions.len(), 1);
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.served && version.storage);
    let subresources = version.subresources.as_ref().expect("subresources");
    assert!(
        subresources.status.is_some(),
        "the status subresource must be on"
    );
    let columns: Vec<(&str, &str)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    // `-o wide` adds LB, Override, Dry-Run and Decided-Class (priority 1).
    let wide: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .filter(|c| c.priority == Some(1))
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(wide, ["LB", "Override", "Dry-Run", "Decided-Class"]);
    assert_eq!(
        columns,
        vec![
            ("Phase", ".status.phase"),
            ("Active", ".status.activeClass"),
            ("Weight", ".status.primaryWeightPercent"),
            ("Healthy", ".status.primary.summary"),
            ("Emergency", ".status.emergency.summary"),
            ("LB", ".status.loadBalancer.state"),
            ("Override", ".spec.override.mode"),
            ("Dry-Run", ".spec.dryRun"),
            ("Decided-Class", ".status.decidedClass"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
}

/// Collects the paths of properties without a description, the way `kubectl explain` walks them.
fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            let child_path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            let described = child
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            if !described {
                out.push(child_path.clone());
            }
            undocumented(child, &child_path, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        undocumented(values, &format!("{path}[*]"), out);
    }
}

#[test]
fn every_property_is_documented() {
    let mut missing = Vec::new();
    undocumented(&openapi_schema(), "", &mut missing);
    assert!(
        missing.is_empty(),
        "these fields have no description (kubectl explain would show nothing); add doc comments:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn undocumented_detector_finds_gaps() {
    let schema = serde_json::json!({"properties": {
        "a": {"description": "ok", "properties": {"b": {"type": "string"}}},
        "l": {"description": "ok", "items": {"properties": {"c": {"description": " "}}}}
    }});
    let mut missing = Vec::new();
    undocumented(&schema, "", &mut missing);
    assert_eq!(missing, vec!["a.b", "l[].c"]);
}
