//! The policy reference is generated from the CRD; this fails when the committed copy drifts.

#[test]
fn policy_reference_matches_the_crd() {
    let expected = ingress_failover::api::reference::policy_reference_markdown();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/policy-reference.md");
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(path, &expected).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == expected,
        "docs/policy-reference.md is stale: run `cargo run -- crd --reference > docs/policy-reference.md`"
    );
}

/// `docs/metrics.md` lists every registered metric family; this fails when it drifts.
#[test]
fn metrics_reference_matches_the_registry() {
    let expected = ingress_failover::controller::metrics::reference_markdown();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(path, &expected).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == expected,
        "docs/metrics.md is stale: run `UPDATE_GENERATED=1 cargo test --test reference_doc`"
    );
}

/// Every field of the spec appears in at least one shipped example (`manifests/examples`), so
/// a new field cannot land with only its reference entry: an SRE reads examples first.
#[test]
fn every_spec_field_appears_in_a_shipped_example() {
    use serde_json::Value;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let crd: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root.join("crds/failoverpolicies.ingressfailover.io.yaml"))
            .unwrap(),
    )
    .unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    fn paths(schema: &Value, at: String, out: &mut Vec<String>) {
        let schema = if schema.get("items").is_some() {
            &schema["items"]
        } else {
            schema
        };
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                let p = format!("{at}.{k}");
                out.push(p.clone());
                paths(v, p, out);
            }
        }
    }
    let mut wanted = Vec::new();
    paths(schema, "spec".into(), &mut wanted);
    let mut examples: Vec<Value> = Vec::new();
    for entry in std::fs::read_dir(root.join("manifests/examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            examples
                .push(serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap());
        }
    }
    fn has(v: &Value, path: &[&str]) -> bool {
        match (path.split_first(), v) {
            (None, _) => true,
            (Some(_), Value::Array(items)) => items.iter().any(|i| has(i, path)),
            (Some((k, rest)), Value::Object(m)) => m.get(*k).is_some_and(|v| has(v, rest)),
            _ => false,
        }
    }
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|p| {
            let parts: Vec<&str> = p.split('.').collect();
            !examples.iter().any(|e| has(e, &parts))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "fields no example in manifests/examples shows: {missing:#?}"
    );
}

/// Each shipped example's policy is its corpus file's (checked by `cargo test`; the comments
/// may differ): the two never drift apart.
#[test]
fn shipped_examples_are_their_corpus_files() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // The first document, without comments.
    let policy = |text: &str| -> String {
        text.lines()
            .take_while(|l| *l != "---")
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    for entry in std::fs::read_dir(root.join("manifests/examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let source = text
            .lines()
            .find_map(|l| l.strip_prefix("# Source: "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("{} names no '# Source: <corpus file>'", path.display()));
        let corpus = std::fs::read_to_string(root.join(source)).unwrap();
        assert_eq!(
            policy(&text),
            policy(&corpus),
            "{} differs from {source}",
            path.display()
        );
    }
}
