//! CustomResourceDefinitions: validating them, and turning an accepted CRD into a served
//! resource (discovery, schema, status/scale subresources, printer columns).
//!
//! Establishment is immediate: the CRD's status gets `NamesAccepted` and `Established` in the
//! same request, so `await_condition(crd_established)` returns at once.

use super::meta::{meta_str, now};
use super::resources::{PrinterColumn, ResourceInfo, ScalePaths};
use super::state::State;
use super::status::FieldCause;
use super::store::ObjKey;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Structural checks on a CRD object.
pub fn validate(crd: &Value) -> Vec<FieldCause> {
    let mut out = Vec::new();
    let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or("");
    let (group, plural) = (s("/spec/group"), s("/spec/names/plural"));
    for (p, field) in [
        ("/spec/group", "spec.group"),
        ("/spec/names/plural", "spec.names.plural"),
        ("/spec/names/kind", "spec.names.kind"),
    ] {
        if s(p).is_empty() {
            out.push(FieldCause::new("FieldValueRequired", field, ""));
        }
    }
    if !matches!(s("/spec/scope"), "Namespaced" | "Cluster") {
        out.push(FieldCause::new(
            "FieldValueNotSupported",
            "spec.scope",
            format!(
                "\"{}\": supported values: \"Cluster\", \"Namespaced\"",
                s("/spec/scope")
            ),
        ));
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        out.push(FieldCause::new(
            "FieldValueRequired",
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    } else if versions
        .iter()
        .filter(|v| v["storage"] == json!(true))
        .count()
        != 1
    {
        out.push(FieldCause::new(
            "FieldValueInvalid",
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    }
    let expected = format!("{plural}.{group}");
    if meta_str(crd, "name") != Some(expected.as_str()) {
        out.push(FieldCause::new(
            "FieldValueInvalid",
            "metadata.name",
            format!(
                "\"{}\": must be spec.names.plural+\".\"+spec.group",
                meta_str(crd, "name").unwrap_or("")
            ),
        ));
    }
    out
}

/// The served resource a CRD defines.
pub fn resource_info(crd: &Value) -> Option<ResourceInfo> {
    let spec = crd.get("spec")?;
    let names = spec.get("names")?;
    let strs = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut versions: Vec<&Value> = spec
        .get("versions")?
        .as_array()?
        .iter()
        .filter(|v| v["served"] != json!(false))
        .collect();
    versions.sort_by_key(|v| v["storage"] != json!(true));
    let storage = *versions.first()?;
    let mut columns: Vec<PrinterColumn> = storage
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| PrinterColumn {
            name: c["name"].as_str().unwrap_or("").into(),
            type_: c["type"].as_str().unwrap_or("string").into(),
            json_path: c["jsonPath"].as_str().unwrap_or("").into(),
            description: c["description"].as_str().unwrap_or("").into(),
            priority: c["priority"].as_i64().unwrap_or(0),
        })
        .collect();
    if !columns
        .iter()
        .any(|c| c.json_path == ".metadata.creationTimestamp")
    {
        columns.push(PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            json_path: ".metadata.creationTimestamp".into(),
            description: String::new(),
            priority: 0,
        });
    }
    let subresources = storage.get("subresources");
    let scale = subresources
        .and_then(|s| s.get("scale"))
        .map(|s| ScalePaths {
            spec_replicas: s["specReplicasPath"]
                .as_str()
                .unwrap_or(".spec.replicas")
                .into(),
            status_replicas: s["statusReplicasPath"]
                .as_str()
                .unwrap_or(".status.replicas")
                .into(),
            label_selector: s["labelSelectorPath"].as_str().map(String::from),
        });
    let schemas: BTreeMap<String, Value> = versions
        .iter()
        .filter_map(|v| {
            Some((
                v["name"].as_str()?.to_string(),
                v.pointer("/schema/openAPIV3Schema")?.clone(),
            ))
        })
        .collect();
    let kind = names["kind"].as_str()?.to_string();
    Some(ResourceInfo {
        group: spec["group"].as_str()?.into(),
        versions: versions
            .iter()
            .filter_map(|v| v["name"].as_str().map(String::from))
            .collect(),
        plural: names["plural"].as_str()?.into(),
        singular: names["singular"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| kind.to_lowercase()),
        kind,
        namespaced: spec["scope"] != json!("Cluster"),
        short_names: strs(names.get("shortNames")),
        categories: strs(names.get("categories")),
        status: subresources.and_then(|s| s.get("status")).is_some(),
        scale,
        columns,
        schemas,
        from_crd: true,
        storage: None,
    })
}

/// Registers the CRD's resource and marks the CRD Established (a status write by the plane).
pub fn established(st: &mut State, crd: &Value) {
    let Some(info) = resource_info(crd) else {
        return;
    };
    let key = ObjKey::new(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "",
        meta_str(crd, "name").unwrap_or(""),
    );
    st.registry.insert(info.clone());
    let t = crd
        .pointer("/status/conditions/0/lastTransitionTime")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(now);
    let cond = |type_: &str, reason: &str, message: &str| json!({"type": type_, "status": "True", "lastTransitionTime": t, "reason": reason, "message": message});
    let status = json!({
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(json!({})),
        "storedVersions": [info.versions[0]],
    });
    if crd.get("status") != Some(&status) {
        let mut updated = crd.clone();
        updated["status"] = status;
        st.store.put(key, updated);
    }
}

/// Unregisters a deleted CRD's resource and deletes all its objects.
pub fn removed(st: &mut State, crd: &Value) {
    let Some(info) = resource_info(crd) else {
        return;
    };
    st.registry.remove(&info.group, &info.plural);
    let keys: Vec<ObjKey> = st
        .store
        .list(&info.group, &info.plural, None)
        .into_iter()
        .map(|(k, _)| k.clone())
        .collect();
    for k in keys {
        st.store.delete(&k);
    }
}
