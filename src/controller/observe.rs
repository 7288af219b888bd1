//! Turns Kubernetes objects into engine facts. Pure functions over objects, so the mapping from
//! EndpointSlices and Deployments to "what is there and is it ready" is tested without a cluster.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::{FailoverPolicySpec, StaticAddress};
use crate::engine::{EndpointFact, Pool};

/// The label every EndpointSlice carries with the name of its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming the controller that manages an EndpointSlice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Our value of [`MANAGED_BY_LABEL`] (a domain-qualified name, as Kubernetes recommends).
pub const MANAGED_BY: &str = "ingress-failover.ingressfailover.io";
/// The value of [`MANAGED_BY_LABEL`] on slices Kubernetes' EndpointSlice controller derives
/// from a Service's selector and its pods: the only slices trusted by default.
pub const KUBERNETES_MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// How every refusal in `problems` begins, so that status can tell refusals (reason
/// `ProbeRefused`) from references it could not resolve.
pub const REFUSED: &str = "refused: ";

/// What the controller believes about endpoints before it probes or publishes them.
///
/// Anyone who may write EndpointSlices in a namespace can hand-write one for a selectorless
/// Service and list any address in it; probing those addresses and reporting Up/Down would give
/// them a port scanner with the operator's network reach (the class of CVE-2021-25740). So only
/// slices the EndpointSlice controller manages are read (unless the operator trusts others with
/// `--trust-unmanaged-endpointslices`), and every address, whatever its source, passes the
/// confinement rules. A refused endpoint is left out of the inventory (never probed, published
/// or reported Up/Down) and named, with its rule, in `problems`.
#[derive(Debug, Clone, Copy)]
pub struct EndpointTrust<'a> {
    pub allowlist: &'a crate::validation::Allowlist,
    /// Read slices whatever manages them (`--trust-unmanaged-endpointslices`).
    pub unmanaged_slices: bool,
}

impl EndpointTrust<'_> {
    /// The confinement verdict on an endpoint's host (an IP, or a name from a static address or
    /// an FQDN slice): names must be allow-listed, IPs obey the deny rules.
    fn judge(&self, host: &str) -> Result<(), crate::validation::Refusal> {
        use crate::validation::address::Host;
        match Host::parse(host) {
            Some(Host::Ip(ip)) => self.allowlist.judge_backend_ip(ip),
            Some(Host::Name(name)) => self.allowlist.judge_name(&name),
            // Not an address at all: no allowlist entry can name it.
            None => self.allowlist.judge_name(host),
        }
    }
}

/// `host:port`, bracketing IPv6 hosts, as endpoints are identified everywhere.
pub fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The endpoints of one Service, from its trusted EndpointSlices (excluding any this operator
/// writes), less the addresses the confinement rules refuse (see [`EndpointTrust`]).
///
/// The port is the slice port named `port_name`, or the only port when unnamed and alone. A
/// slice without a usable port contributes nothing (reported through `problems`). Kubernetes'
/// `ready` condition is honoured, and a terminating endpoint is never ready.
pub fn service_endpoints(
    slices: &[std::sync::Arc<EndpointSlice>],
    namespace: &str,
    service: &str,
    port_name: Option<&str>,
    pool: Pool,
    trust: EndpointTrust<'_>,
    problems: &mut Vec<String>,
) -> Vec<EndpointFact> {
    let mut out = Vec::new();
    for slice in slices {
        let labels = slice.metadata.labels.as_ref();
        let manager = labels.and_then(|l| l.get(MANAGED_BY_LABEL));
        let ours = manager.is_some_and(|v| v == MANAGED_BY);
        let belongs = slice.metadata.namespace.as_deref() == Some(namespace)
            && labels
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .is_some_and(|v| v == service);
        if ours || !belongs {
            continue;
        }
        if !trust.unmanaged_slices && manager.map(String::as_str) != Some(KUBERNETES_MANAGED_BY) {
            problems.push(format!(
                "{REFUSED}EndpointSlice {} of Service {service} is managed by {}, not by {KUBERNETES_MANAGED_BY}: its endpoints are not probed or published (an operator may trust such slices with --trust-unmanaged-endpointslices)",
                slice.metadata.name.as_deref().unwrap_or("?"),
                manager.map_or("nobody (no managed-by label)", |m| m.as_str()),
            ));
            continue;
        }
        let ports = slice.ports.as_deref().unwrap_or_default();
        let port = match port_name {
            Some(name) => ports.iter().find(|p| p.name.as_deref() == Some(name)),
            None if ports.len() == 1 => ports.first(),
            None => None,
        }
        .and_then(|p| p.port);
        let Some(port) = port else {
            problems.push(format!(
                "EndpointSlice {} of Service {service} has no port {}",
                slice.metadata.name.as_deref().unwrap_or("?"),
                match port_name {
                    Some(n) => format!("named {n:?}"),
                    None => "that can be chosen without portName (several ports)".to_string(),
                }
            ));
            continue;
        };
        for ep in &slice.endpoints {
            let Some(addr) = ep.addresses.first() else {
                continue;
            };
            if let Err(refusal) = trust.judge(addr) {
                problems.push(format!(
                    "{REFUSED}endpoint {} of Service {service} (EndpointSlice {}) is not probed or published: {refusal}",
                    join_host_port(addr, port),
                    slice.metadata.name.as_deref().unwrap_or("?"),
                ));
                continue;
            }
            let cond = ep.conditions.as_ref();
            let terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
            let ready = cond.and_then(|c| c.ready).unwrap_or(true) && !terminating;
            out.push(EndpointFact {
                address: join_host_port(addr, port),
                pool,
                ready,
                terminating,
            });
        }
    }
    out
}

/// Static addresses are always "ready": Kubernetes knows nothing about them. Validation refused
/// the ones the allowlist does not permit; the API server's addresses are only known here, so
/// the rules are applied again.
pub fn static_endpoints(
    addresses: &[StaticAddress],
    pool: Pool,
    trust: EndpointTrust<'_>,
    problems: &mut Vec<String>,
) -> Vec<EndpointFact> {
    addresses
        .iter()
        .filter(|a| {
            let verdict = match crate::validation::address::parse_host_port(&a.0) {
                Ok((host, _)) => trust.judge(&host.to_string()),
                Err(_) => trust.judge(&a.0),
            };
            match verdict {
                Ok(()) => true,
                Err(refusal) => {
                    problems.push(format!(
                        "{REFUSED}static address {} is not probed or published: {refusal}",
                        a.0
                    ));
                    false
                }
            }
        })
        .map(|a| EndpointFact::ready(a.0.clone(), pool))
        .collect()
}

/// Ready replicas of a Deployment; `None` when it is not (yet) in the cache.
pub fn ready_replicas(deployment: Option<&Deployment>) -> Option<i32> {
    deployment.map(|d| {
        d.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    })
}

/// Replicas a Deployment's spec asks for.
pub fn spec_replicas(deployment: Option<&Deployment>) -> Option<i32> {
    deployment.map(|d| d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
}

/// The complete endpoint inventory of a policy: primary Service + static, emergency Service +
/// static. Sorted, so that comparing two inventories is a plain equality.
pub fn inventory(
    spec: &FailoverPolicySpec,
    namespace: &str,
    slices: &[std::sync::Arc<EndpointSlice>],
    trust: EndpointTrust<'_>,
    problems: &mut Vec<String>,
) -> Vec<EndpointFact> {
    let mut all = Vec::new();
    let primary = &spec.backends.primary;
    if let Some(svc) = &primary.service {
        all.extend(service_endpoints(
            slices,
            namespace,
            &svc.name,
            svc.port_name.as_deref(),
            Pool::Primary,
            trust,
            problems,
        ));
    }
    all.extend(static_endpoints(
        &primary.addresses,
        Pool::Primary,
        trust,
        problems,
    ));
    if let Some(em) = &spec.backends.emergency {
        if let Some(d) = &em.deployment {
            let svc = d.service_name.as_deref().unwrap_or(&d.name);
            all.extend(service_endpoints(
                slices,
                namespace,
                svc,
                d.port_name.as_deref(),
                Pool::Emergency,
                trust,
                problems,
            ));
        }
        all.extend(static_endpoints(
            &em.addresses,
            Pool::Emergency,
            trust,
            problems,
        ));
    }
    all.sort_by(|a, b| (a.pool, &a.address).cmp(&(b.pool, &b.address)));
    all.dedup_by(|a, b| a.pool == b.pool && a.address == b.address);
    all
}

/// The legacy class annotation. Ingress controllers honour it before `spec.ingressClassName`.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// How an Ingress names its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassForm {
    /// `spec.ingressClassName` (or nothing yet: the field is the modern form).
    Field,
    /// The legacy `kubernetes.io/ingress.class` annotation.
    Annotation,
    /// Both (a real apiserver refuses to create this; ingress controllers act on the
    /// annotation). The operator keeps the annotation and removes the field.
    Both,
}

/// The form `ing` uses for its class.
pub fn class_form(ing: &Ingress) -> ClassForm {
    let annotated = ing
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(LEGACY_CLASS_ANNOTATION));
    let field = ing
        .spec
        .as_ref()
        .is_some_and(|s| s.ingress_class_name.is_some());
    match (annotated, field) {
        (true, true) => ClassForm::Both,
        (true, false) => ClassForm::Annotation,
        _ => ClassForm::Field,
    }
}

/// The class an ingress controller acts on: the legacy annotation when present, else the field.
pub fn effective_class(ing: &Ingress) -> Option<&str> {
    ing.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
        .or_else(|| {
            ing.spec
                .as_ref()
                .and_then(|s| s.ingress_class_name.as_ref())
        })
        .map(String::as_str)
}

/// The entries of `meta.managedFields` owning the field at `path` (e.g. `["f:spec",
/// "f:replicas"]`), as field-manager names other than `ours`, sorted and deduplicated.
pub fn other_managers(meta: &ObjectMeta, path: &[&str], ours: &str) -> Vec<String> {
    let mut out: Vec<String> = entries(meta)
        .filter(|e| e.manager.as_deref() != Some(ours))
        .filter(|e| fields_at(e, path).is_some())
        .filter_map(|e| e.manager.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Keys under `f:metadata` → `section` (`f:annotations` or `f:labels`) that `manager` owns
/// through server-side apply.
pub fn applied_keys(meta: &ObjectMeta, manager: &str, section: &str) -> Vec<String> {
    applied_by(meta, manager)
        .filter_map(|e| fields_at(e, &["f:metadata", section]).and_then(|a| a.as_object()))
        .flat_map(|m| {
            m.keys()
                .filter_map(|k| k.strip_prefix("f:"))
                .map(str::to_string)
        })
        .collect()
}

/// Whether `manager` owns `path` through server-side apply.
pub fn applies(meta: &ObjectMeta, manager: &str, path: &[&str]) -> bool {
    applied_by(meta, manager).any(|e| fields_at(e, path).is_some())
}

fn entries(
    meta: &ObjectMeta,
) -> impl Iterator<Item = &k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry> {
    meta.managed_fields.as_deref().unwrap_or_default().iter()
}

/// The managedFields entries `manager` holds through server-side apply.
fn applied_by<'a>(
    meta: &'a ObjectMeta,
    manager: &'a str,
) -> impl Iterator<Item = &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry> {
    entries(meta).filter(move |e| {
        e.manager.as_deref() == Some(manager) && e.operation.as_deref() == Some("Apply")
    })
}

/// The fieldsV1 node of an entry at `path` (`["f:spec", "f:replicas"]`), if it owns it.
fn fields_at<'a>(
    e: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry,
    path: &[&str],
) -> Option<&'a serde_json::Value> {
    let mut node = e.fields_v1.as_ref().map(|f| &f.0);
    for p in path {
        node = node.and_then(|n| n.get(*p));
    }
    node
}

/// The HorizontalPodAutoscaler in `namespace` scaling Deployment `name`, if any.
pub fn autoscaler_of(
    hpas: &[std::sync::Arc<HorizontalPodAutoscaler>],
    namespace: &str,
    name: &str,
) -> Option<String> {
    hpas.iter()
        .filter(|h| h.metadata.namespace.as_deref() == Some(namespace))
        .find(|h| {
            h.spec.as_ref().is_some_and(|s| {
                s.scale_target_ref.kind == "Deployment" && s.scale_target_ref.name == name
            })
        })
        .and_then(|h| h.metadata.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::sync::Arc;

    fn slice(
        name: &str,
        svc: &str,
        ports: &[(&str, i32)],
        eps: &[(&str, Option<bool>, bool)],
    ) -> Arc<EndpointSlice> {
        Arc::new(EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                labels: Some(
                    [
                        (SERVICE_NAME_LABEL.to_string(), svc.to_string()),
                        (
                            MANAGED_BY_LABEL.to_string(),
                            KUBERNETES_MANAGED_BY.to_string(),
                        ),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p)| EndpointPort {
                        name: Some(n.to_string()),
                        port: Some(*p),
                        ..Default::default()
                    })
                    .collect(),
            ),
            endpoints: eps
                .iter()
                .map(|(a, ready, terminating)| Endpoint {
                    addresses: vec![a.to_string()],
                    conditions: Some(EndpointConditions {
                        ready: *ready,
                        terminating: Some(*terminating),
                        serving: None,
                    }),
                    ..Default::default()
                })
                .collect(),
        })
    }

    static OPEN: std::sync::LazyLock<crate::validation::Allowlist> =
        std::sync::LazyLock::new(crate::validation::Allowlist::empty);

    fn trust(allowlist: &crate::validation::Allowlist) -> EndpointTrust<'_> {
        EndpointTrust {
            allowlist,
            unmanaged_slices: false,
        }
    }

    #[test]
    fn hand_written_slices_are_not_trusted_by_default() {
        let mut forged = (*slice(
            "evil-1",
            "evil",
            &[("http", 9999)],
            &[("10.1.0.1", Some(true), false)],
        ))
        .clone();
        forged
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(MANAGED_BY_LABEL);
        let slices = vec![Arc::new(forged)];
        let mut problems = Vec::new();
        let eps = service_endpoints(
            &slices,
            "shop",
            "evil",
            None,
            Pool::Primary,
            trust(&OPEN),
            &mut problems,
        );
        assert!(eps.is_empty(), "{eps:?}");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("EndpointSlice evil-1")
                && problems[0].contains("--trust-unmanaged-endpointslices"),
            "{problems:?}"
        );
        // Trusted on the operator's say-so, its ordinary addresses are read.
        let mut t = trust(&OPEN);
        t.unmanaged_slices = true;
        let eps = service_endpoints(
            &slices,
            "shop",
            "evil",
            None,
            Pool::Primary,
            t,
            &mut problems,
        );
        assert_eq!(eps.len(), 1);
    }

    #[test]
    fn denied_addresses_leave_the_inventory_whatever_their_source() {
        let slices = vec![slice(
            "web-1",
            "web",
            &[("http", 80)],
            &[
                ("10.1.0.1", Some(true), false),
                ("127.0.0.1", Some(true), false),
                ("169.254.169.254", Some(true), false),
                ("10.96.0.1", Some(true), false),
            ],
        )];
        let allow =
            crate::validation::Allowlist::empty().with_api_server(["10.96.0.1".parse().unwrap()]);
        let mut problems = Vec::new();
        let eps = service_endpoints(
            &slices,
            "shop",
            "web",
            None,
            Pool::Primary,
            trust(&allow),
            &mut problems,
        );
        let got: Vec<&str> = eps.iter().map(|e| e.address.as_str()).collect();
        assert_eq!(got, vec!["10.1.0.1:80"]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("127.0.0.1:80") && problems[0].contains("loopback"));
        assert!(problems[1].contains("cloud metadata"));
        assert!(problems[2].contains("API server"));
        let statics = [
            StaticAddress("10.0.0.1:80".into()),
            StaticAddress("10.96.0.1:443".into()),
            StaticAddress("kubernetes.default.svc:443".into()),
            StaticAddress("[::1]:80".into()),
        ];
        let mut problems = Vec::new();
        let eps = static_endpoints(&statics, Pool::Primary, trust(&allow), &mut problems);
        assert_eq!(eps.len(), 1);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[1].contains("kubernetes.default.svc"),
            "{problems:?}"
        );
    }

    #[test]
    fn readiness_and_ports_come_from_the_slice() {
        let slices = vec![
            slice(
                "web-1",
                "web",
                &[("http", 8080)],
                &[
                    ("10.1.0.1", Some(true), false),
                    ("10.1.0.2", None, false),
                    ("10.1.0.3", Some(false), false),
                    ("10.1.0.4", Some(true), true),
                ],
            ),
            slice(
                "other",
                "db",
                &[("pg", 5432)],
                &[("10.1.9.9", Some(true), false)],
            ),
        ];
        let mut problems = Vec::new();
        let eps = service_endpoints(
            &slices,
            "shop",
            "web",
            None,
            Pool::Primary,
            trust(&OPEN),
            &mut problems,
        );
        let got: Vec<(&str, bool)> = eps.iter().map(|e| (e.address.as_str(), e.ready)).collect();
        assert_eq!(
            got,
            vec![
                ("10.1.0.1:8080", true),
                ("10.1.0.2:8080", true),
                ("10.1.0.3:8080", false),
                ("10.1.0.4:8080", false)
            ]
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn ambiguous_ports_are_reported_not_guessed() {
        let slices = vec![slice(
            "web-1",
            "web",
            &[("http", 80), ("metrics", 9090)],
            &[("10.1.0.1", Some(true), false)],
        )];
        let mut problems = Vec::new();
        assert!(
            service_endpoints(
                &slices,
                "shop",
                "web",
                None,
                Pool::Primary,
                trust(&OPEN),
                &mut problems
            )
            .is_empty()
        );
        assert_eq!(problems.len(), 1);
        let eps = service_endpoints(
            &slices,
            "shop",
            "web",
            Some("metrics"),
            Pool::Primary,
            trust(&OPEN),
            &mut problems,
        );
        assert_eq!(eps[0].address, "10.1.0.1:9090");
    }

    #[test]
    fn slices_written_by_this_operator_are_not_read_back_as_backends() {
        let mut s = (*slice(
            "web-healthy-ipv4-80",
            "web",
            &[("http", 80)],
            &[("10.1.0.1", Some(true), false)],
        ))
        .clone();
        s.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        let mut problems = Vec::new();
        assert!(
            service_endpoints(
                &[Arc::new(s)],
                "shop",
                "web",
                None,
                Pool::Primary,
                trust(&OPEN),
                &mut problems
            )
            .is_empty()
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(join_host_port("fd00::1", 80), "[fd00::1]:80");
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
    }
}
