//! The Grafana dashboard the chart ships (charts/ingress-failover/dashboards) reads only metrics
//! the operator exports, under their exported names, through the dashboard's own data-source and
//! policy variables: a renamed metric or a typo shows up here, not as an empty panel at 3 AM.

use std::collections::BTreeSet;

use regex::Regex;
use serde_json::Value;

const DASHBOARD: &str = include_str!("../charts/ingress-failover/dashboards/ingress-failover.json");

/// Exported metric names: the generated metrics reference lists each family once (counters with
/// `_total`); histograms are read as `_bucket`, `_sum` and `_count`.
fn exported() -> BTreeSet<String> {
    let doc = ingress_failover::controller::metrics::reference_markdown();
    let row = Regex::new(r"(?m)^\| `(ingress_failover_[a-z_]+)` \| (\w+) \|").unwrap();
    let mut names = BTreeSet::new();
    for c in row.captures_iter(&doc) {
        let (name, kind) = (c[1].to_string(), &c[2]);
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
        names.insert(name);
    }
    assert!(names.len() > 20, "metrics reference parsed: {names:?}");
    names
}

fn panels() -> Vec<Value> {
    let d: Value = serde_json::from_str(DASHBOARD).expect("dashboard JSON");
    d["panels"].as_array().expect("panels").clone()
}

#[test]
fn every_query_reads_an_exported_metric() {
    let exported = exported();
    let used = Regex::new(r"ingress_failover_[a-z_]+").unwrap();
    let mut seen = BTreeSet::new();
    for p in panels().iter().filter(|p| p["type"] != "row") {
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let names: Vec<&str> = used.find_iter(expr).map(|m| m.as_str()).collect();
            assert!(
                !names.is_empty(),
                "{}: no operator metric in {expr}",
                p["title"]
            );
            for n in names {
                assert!(
                    exported.contains(n),
                    "{}: {n} is not exported (docs/metrics.md)",
                    p["title"]
                );
                seen.insert(n.to_string());
            }
        }
    }
    // The issue's list: tier ratios, published endpoints, emergency replicas, failback weight,
    // transitions.
    for must in [
        "ingress_failover_healthy_ratio",
        "ingress_failover_published_endpoints",
        "ingress_failover_emergency_ready_replicas",
        "ingress_failover_emergency_desired_replicas",
        "ingress_failover_primary_weight_percent",
        "ingress_failover_transitions_total",
    ] {
        assert!(seen.contains(must), "no panel shows {must}");
    }
}

#[test]
fn panels_use_the_dashboard_variables_and_a_tidy_grid() {
    let policy_metric = Regex::new(
        r"ingress_failover_(healthy_ratio|healthy_endpoints|published_endpoints|load_balancer_up|backup_load_balancer_up|emergency_\w+_replicas|primary_weight_percent|override_active|dry_run|policy_phase|probe_\w+)\b",
    )
    .unwrap();
    let mut ids = BTreeSet::new();
    for p in panels() {
        assert!(
            ids.insert(p["id"].as_i64().expect("id")),
            "duplicate id {p}"
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_i64().unwrap(), g["w"].as_i64().unwrap());
        assert!(
            x >= 0 && w > 0 && x + w <= 24,
            "{} is off the grid",
            p["title"]
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            // Per-policy series are filtered by the namespace and policy pickers.
            if policy_metric.is_match(expr) {
                assert!(
                    expr.contains(r#"namespace=~"$namespace""#)
                        && expr.contains(r#"name=~"$policy""#),
                    "{}: {expr} ignores the namespace/policy variables",
                    p["title"]
                );
            }
        }
    }
}
