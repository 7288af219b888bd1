//! The policy reference (`docs/policy-reference.md`), generated from the CRD schema so that the
//! documentation and `kubectl explain` can never disagree. A test fails when the committed file
//! drifts.

use serde_json::Value;
use std::fmt::Write;

/// Markdown reference of every `spec` field: path, type, default, bounds and description.
pub fn policy_reference_markdown() -> String {
    let schema = super::crd::openapi_schema();
    let mut out = String::from(
        "<!-- Generated from the CRD by `ingress-failover crd --reference`; do not edit. -->\n\
         # FailoverPolicy reference (`ingressfailover.io/v1alpha1`)\n\n\
         Every field of `spec`, as `kubectl explain failoverpolicy.spec --recursive` shows it. \
         Cross-field rules (CEL) are listed under the object they apply to.\n\n",
    );
    walk(
        &mut out,
        "spec",
        &schema["properties"]["spec"],
        &schema["required"],
    );
    out.push_str(
        "# Status\n\n\
         What the operator observed and decided, as `kubectl get fp -o yaml` shows it, and what \
         a restarted operator (or a new leader) resumes from.\n\n",
    );
    walk(
        &mut out,
        "status",
        &schema["properties"]["status"],
        &Value::Null,
    );
    out
}

fn walk(out: &mut String, path: &str, node: &Value, _parent_required: &Value) {
    let Some(props) = node.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = node
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let _ = writeln!(out, "## `{path}`\n");
    if let Some(d) = node.get("description").and_then(Value::as_str) {
        let _ = writeln!(out, "{}\n", one_line(d));
    }
    if let Some(rules) = node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for r in rules {
            let _ = writeln!(
                out,
                "- Rule: {} (`{}`)",
                r["message"].as_str().unwrap_or(""),
                r["rule"].as_str().unwrap_or("")
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "| field | type | required | default | constraints | description |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let mut children = Vec::new();
    for (name, prop) in props {
        let ty = type_of(prop);
        let req = if required.contains(&name.as_str()) {
            "yes"
        } else {
            ""
        };
        let default = prop
            .get("default")
            .map(|d| format!("`{d}`"))
            .unwrap_or_default();
        let desc = prop
            .get("description")
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| `{name}` | {ty} | {req} | {default} | {} | {} |",
            constraints(prop),
            desc.replace('|', "\\|")
        );
        let child = if prop.get("type").and_then(Value::as_str) == Some("array") {
            &prop["items"]
        } else {
            prop
        };
        if child.get("properties").is_some() && !is_label_selector(name) {
            children.push((format!("{path}.{name}"), child));
        }
    }
    out.push('\n');
    for (p, c) in children {
        walk(out, &p, c, &Value::Null);
    }
}

fn is_label_selector(name: &str) -> bool {
    // A standard Kubernetes type, documented upstream; listing its internals adds only noise.
    name == "selector"
}

fn type_of(prop: &Value) -> String {
    match prop.get("type").and_then(Value::as_str) {
        Some("array") => format!("[]{}", type_of(&prop["items"])),
        Some(t) => match prop.get("enum").and_then(Value::as_array) {
            Some(values) => values
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" \\| "),
            None => t.to_string(),
        },
        None => "object".to_string(),
    }
}

fn constraints(prop: &Value) -> String {
    let mut c = Vec::new();
    for (key, label) in [
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
    ] {
        if let Some(v) = prop.get(key) {
            c.push(format!("{label} {v}"));
        }
    }
    if let Some(p) = prop.get("pattern").and_then(Value::as_str) {
        c.push(format!("pattern `{}`", p.replace('|', "\\|")));
    }
    c.join(", ")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
