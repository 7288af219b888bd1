//! Every CEL rule of the committed CRD compiles, and each one rejects a policy that breaks it and
//! accepts the same policy fixed. A rule added without a case here fails
//! `every_rule_has_a_case`.

use ingress_failover::api::crd::openapi_schema;
use ingress_failover::validation::cel::{self, CelValidator};
use ingress_failover::validation::openapi;
use serde_json::{Value, json};

fn base() -> Value {
    json!({
        "apiVersion": "ingressfailover.io/v1alpha1",
        "kind": "FailoverPolicy",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "backends": {"primary": {"service": {"name": "web"}}},
            "managedService": {"name": "web-failover"}
        }
    })
}

/// RFC 7386 merge patch: objects merge, `null` deletes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn ingress(extra: Value) -> Value {
    let mut tier = json!({
        "ingresses": ["web"],
        "primaryClass": "nginx",
        "backupClass": "nginx-backup",
        "health": {"controllerDeployment": {"name": "ingress-nginx-controller"}}
    });
    merge(&mut tier, &extra);
    json!({"spec": {"ingress": tier}})
}

fn gateway(extra: Value) -> Value {
    let mut tier = json!({
        "routes": ["web"],
        "primaryGateway": {"name": "gw-primary"},
        "backupGateway": {"name": "gw-backup"}
    });
    merge(&mut tier, &extra);
    json!({"spec": {"gateway": tier}})
}

/// Both tiers: one decision moves the Ingresses and the routes.
fn both(gateway_extra: Value) -> Value {
    let mut p = ingress(json!({}));
    merge(&mut p, &gateway(gateway_extra));
    p
}

/// A HotStandby ingress tier with the given `recovery`, so failbackSteps are allowed.
fn hot_standby(recovery: Value) -> Value {
    let mut p = ingress(json!({"mode": "HotStandby"}));
    merge(&mut p, &json!({"spec": {"recovery": recovery}}));
    p
}

struct Case {
    /// The rule's message, as in the CRD.
    message: &'static str,
    /// Where the violation is reported.
    path: &'static str,
    bad: Value,
    good: Value,
}

fn cases() -> Vec<Case> {
    let emergency = |s: i32, a: i32, m: i32| {
        json!({"spec": {"backends": {"emergency": {"deployment": {
            "name": "web-emergency", "standbyReplicas": s, "activeReplicas": a, "maxReplicas": m
        }}}}})
    };
    vec![
        Case {
            message: "spec.recovery.failbackSteps needs spec.ingress.mode HotStandby",
            path: "spec.recovery.failbackSteps",
            bad: {
                let mut p = ingress(json!({}));
                merge(
                    &mut p,
                    &json!({"spec": {"recovery": {"failbackSteps": [10, 100]}}}),
                );
                p
            },
            good: hot_standby(json!({"failbackSteps": [10, 100]})),
        },
        Case {
            message: "set service and/or addresses: the primary pool cannot be empty",
            path: "spec.backends.primary",
            bad: json!({"spec": {"backends": {"primary": {"service": null}}}}),
            good: json!({"spec": {"backends": {"primary": {"service": null, "addresses": ["10.0.1.1:80"]}}}}),
        },
        Case {
            message: "set deployment and/or addresses, or omit the emergency pool",
            path: "spec.backends.emergency",
            bad: json!({"spec": {"backends": {"emergency": {"addresses": []}}}}),
            good: json!({"spec": {"backends": {"emergency": {"addresses": ["10.0.2.1:80"]}}}}),
        },
        Case {
            message: "standbyReplicas must not exceed activeReplicas",
            path: "spec.backends.emergency.deployment.standbyReplicas",
            bad: emergency(3, 2, 4),
            good: emergency(2, 2, 4),
        },
        Case {
            message: "activeReplicas must not exceed maxReplicas",
            path: "spec.backends.emergency.deployment.activeReplicas",
            bad: emergency(0, 5, 4),
            good: emergency(0, 4, 4),
        },
        Case {
            message: "set only one of http or tcp",
            path: "spec.probe",
            bad: json!({"spec": {"probe": {"http": {}, "tcp": {}}}}),
            good: json!({"spec": {"probe": {"tcp": {}}}}),
        },
        Case {
            message: "timeoutSeconds must not exceed intervalSeconds",
            path: "spec.probe.timeoutSeconds",
            bad: json!({"spec": {"probe": {"intervalSeconds": 5, "timeoutSeconds": 6}}}),
            good: json!({"spec": {"probe": {"intervalSeconds": 5, "timeoutSeconds": 5}}}),
        },
        Case {
            message: "backupClass must differ from primaryClass",
            path: "spec.ingress.backupClass",
            bad: ingress(json!({"backupClass": "nginx"})),
            good: ingress(json!({})),
        },
        Case {
            message: "name the Ingresses to manage in ingresses and/or select them with selector",
            path: "spec.ingress",
            bad: ingress(json!({"ingresses": null})),
            good: ingress(json!({"ingresses": null, "selector": {"matchLabels": {"app": "web"}}})),
        },
        Case {
            message: "judge the primary tier with health.url and/or health.controllerDeployment",
            path: "spec.ingress.health",
            bad: ingress(json!({"health": {"controllerDeployment": null}})),
            good: ingress(
                json!({"health": {"controllerDeployment": null, "url": "http://lb.example.internal/healthz"}}),
            ),
        },
        Case {
            message: "judge the backup tier with backupHealth.url and/or backupHealth.controllerDeployment, or omit backupHealth",
            path: "spec.ingress.backupHealth",
            bad: ingress(json!({"backupHealth": {"expectedStatuses": ["200"]}})),
            good: ingress(
                json!({"backupHealth": {"url": "http://lb-backup.example.internal/healthz"}}),
            ),
        },
        Case {
            message: "deactivateAbove must be greater than activateBelow (hysteresis)",
            path: "spec.thresholds.deactivateAbove",
            bad: json!({"spec": {"thresholds": {"activateBelow": 0.6, "deactivateAbove": 0.6}}}),
            // Integers where the schema says number: CEL must still compare them as doubles.
            good: json!({"spec": {"thresholds": {"activateBelow": 0, "deactivateAbove": 1}}}),
        },
        Case {
            message: "failbackSteps are percentages between 1 and 100",
            path: "spec.recovery.failbackSteps",
            bad: hot_standby(json!({"failbackSteps": [50, 101]})),
            good: hot_standby(json!({"failbackSteps": [50, 100]})),
        },
        Case {
            message: "rampDownSteps are percentages between 1 and 99",
            path: "spec.gateway.backendWeights.rampDownSteps",
            bad: gateway(json!({"backendWeights": {"rampDownSteps": [50, 100]}})),
            good: gateway(json!({"backendWeights": {"rampDownSteps": [50, 25]}})),
        },
        Case {
            message: "failbackSteps must be strictly increasing",
            path: "spec.recovery.failbackSteps",
            bad: hot_standby(json!({"failbackSteps": [10, 10, 100]})),
            good: hot_standby(json!({"failbackSteps": [10, 100]})),
        },
        Case {
            message: "spec.dns needs spec.ingress.mode HotStandby",
            path: "spec.dns",
            bad: {
                let mut p = ingress(json!({}));
                merge(
                    &mut p,
                    &json!({"spec": {"dns": {"hostnames": ["shop.example.com"]}}}),
                );
                p
            },
            good: {
                let mut p = ingress(json!({"mode": "HotStandby"}));
                merge(
                    &mut p,
                    &json!({"spec": {"dns": {"hostnames": ["shop.example.com"]}}}),
                );
                p
            },
        },
        Case {
            message: "spec.recovery.stepSeconds must be at least spec.dns.ttlSeconds",
            path: "spec.recovery.stepSeconds",
            bad: {
                let mut p = hot_standby(json!({"failbackSteps": [10, 100], "stepSeconds": 30}));
                merge(
                    &mut p,
                    &json!({"spec": {"dns": {"hostnames": ["shop.example.com"], "ttlSeconds": 60}}}),
                );
                p
            },
            good: {
                let mut p = hot_standby(json!({"failbackSteps": [10, 100], "stepSeconds": 60}));
                merge(
                    &mut p,
                    &json!({"spec": {"dns": {"hostnames": ["shop.example.com"], "ttlSeconds": 60}}}),
                );
                p
            },
        },
        Case {
            message: "name the HTTPRoute templates in routes and/or select them with selector",
            path: "spec.gateway",
            bad: gateway(json!({"routes": null})),
            good: gateway(json!({"routes": null, "selector": {"matchLabels": {"app": "web"}}})),
        },
        Case {
            message: "judge the primary Gateway tier with gatewayStatus, url and/or controllerDeployment",
            path: "spec.gateway.health.gatewayStatus",
            bad: gateway(json!({"health": {"gatewayStatus": false}})),
            good: gateway(
                json!({"health": {"gatewayStatus": false, "url": "http://gw.example.internal/healthz"}}),
            ),
        },
        Case {
            message: "with spec.ingress set, the tier's health URL and controller come from spec.ingress.health",
            path: "spec.gateway.health",
            bad: both(json!({"health": {"url": "http://gw.example.internal/healthz"}})),
            good: both(json!({"health": {"gatewayStatus": true}})),
        },
        Case {
            message: "with spec.ingress set, the backup tier's health URL and controller come from spec.ingress.backupHealth",
            path: "spec.gateway.backupHealth",
            bad: both(json!({"backupHealth": {"controllerDeployment": {"name": "envoy"}}})),
            good: both(json!({"backupHealth": {"gatewayStatus": false}})),
        },
        Case {
            message: "an override needs a reason",
            path: "spec.override.reason",
            bad: json!({"spec": {"override": {"mode": "Freeze"}}}),
            good: json!({"spec": {"override": {"mode": "Freeze", "reason": "INC-1: hands off"}}}),
        },
    ]
}

fn evaluate(patch: &Value) -> cel::CelOutcome {
    let schema = openapi_schema();
    let mut doc = base();
    merge(&mut doc, patch);
    let prepared = openapi::prepare(&schema, &doc);
    let schema_errors = openapi::validate_custom_resource(&schema, &prepared);
    assert!(
        schema_errors.is_empty(),
        "case must be schema-valid: {schema_errors:?}"
    );
    cel::validate(&schema, &prepared)
}

fn all_rules(schema: &Value, out: &mut Vec<(String, String)>) {
    if let Some(rules) = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for rule in rules {
            out.push((
                rule["rule"].as_str().unwrap_or_default().to_string(),
                rule["message"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    match schema {
        Value::Object(map) => map.values().for_each(|v| all_rules(v, out)),
        Value::Array(items) => items.iter().for_each(|v| all_rules(v, out)),
        _ => {}
    }
}

#[test]
fn every_rule_compiles() {
    let schema = openapi_schema();
    let errors = CelValidator::new(&schema).compile_errors();
    assert!(
        errors.is_empty(),
        "CEL rules that do not compile: {errors:?}"
    );
    let mut rules = Vec::new();
    all_rules(&schema, &mut rules);
    assert_eq!(rules.len(), 22, "rules in the CRD: {rules:#?}");
}

#[test]
fn every_rule_has_a_case() {
    let mut rules = Vec::new();
    all_rules(&openapi_schema(), &mut rules);
    let cases = cases();
    for (rule, message) in &rules {
        let matching = cases.iter().filter(|c| message.contains(c.message)).count();
        assert_eq!(
            matching, 1,
            "rule `{rule}` ({message}) needs exactly one case"
        );
    }
}

#[test]
fn the_base_policy_passes_every_rule() {
    assert_eq!(evaluate(&json!({})), cel::CelOutcome::default());
}

#[test]
fn each_rule_rejects_a_violation_and_accepts_the_fix() {
    for case in cases() {
        let bad = evaluate(&case.bad);
        assert!(
            bad.evaluation_errors.is_empty(),
            "{}: rule could not be evaluated: {:?}",
            case.message,
            bad.evaluation_errors
        );
        assert_eq!(
            bad.violations.len(),
            1,
            "{}: {:?}",
            case.message,
            bad.violations
        );
        assert_eq!(bad.violations[0].path, case.path, "{}", case.message);
        assert!(bad.violations[0].message.contains(case.message));

        let good = evaluate(&case.good);
        assert_eq!(
            good,
            cel::CelOutcome::default(),
            "{}: fixed policy refused",
            case.message
        );
    }
}
