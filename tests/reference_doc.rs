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
