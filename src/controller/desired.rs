//! The managed objects the engine's desired state calls for, built as plain values so that
//! "does the cluster already match?" is a pure comparison — the basis of zero writes while
//! nothing changes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::actuate::MANAGER;
use super::observe::{
    ClassForm, LEGACY_CLASS_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, SERVICE_NAME_LABEL,
    applied_keys, effective_class, other_managers,
};
use crate::api::FailoverPolicySpec;

/// Label put on every object the operator creates, naming the owning policy.
pub const POLICY_LABEL: &str = "ingressfailover.io/policy";
/// Label on an object people own and the operator writes fields of (a source Ingress, the
/// emergency Deployment): the policy that owns those writes (see `controller::claims`). Not
/// [`POLICY_LABEL`], which marks objects the operator created (slices, Service, mirrors).
pub const CLAIM_LABEL: &str = "ingressfailover.io/claimed-by";
/// Annotations on managed Ingresses (HotStandby): which side is authoritative and its weight,
/// for DNS / global load-balancer integrations that key on them.
pub const ROLE_ANNOTATION: &str = "ingressfailover.io/role";
pub const AUTHORITATIVE_ANNOTATION: &str = "ingressfailover.io/authoritative";
pub const WEIGHT_ANNOTATION: &str = "ingressfailover.io/weight";
/// Suffix of the mirrored Ingress kept on the backup class in HotStandby mode.
pub const MIRROR_SUFFIX: &str = "-failover-backup";
/// Kubernetes caps an EndpointSlice at 1000 endpoints.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 1000;

/// One published endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Published {
    pub host: String,
    pub port: i32,
}

impl Published {
    /// Splits `host:port` / `[v6]:port`.
    pub fn parse(address: &str) -> Option<Self> {
        let (host, port) = crate::validation::address::parse_host_port(address).ok()?;
        Some(Published {
            host: host.allowlist_entry(),
            port: port.into(),
        })
    }

    fn address_type(&self) -> &'static str {
        match self.host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) => "IPv4",
            Ok(std::net::IpAddr::V6(_)) => "IPv6",
            Err(_) => "FQDN",
        }
    }
}

/// The EndpointSlices of the managed Service: one per (address type, port), since a slice has a
/// single address type and one port list for all its endpoints, split at 1000 endpoints.
pub fn endpoint_slices(
    namespace: &str,
    service: &str,
    port_name: &str,
    owner: Option<&OwnerReference>,
    policy: &str,
    published: &[Published],
) -> Vec<EndpointSlice> {
    let mut groups: BTreeMap<(&'static str, i32), Vec<&Published>> = BTreeMap::new();
    for p in published {
        groups
            .entry((p.address_type(), p.port))
            .or_default()
            .push(p);
    }
    let mut out = Vec::new();
    for ((kind, port), mut members) in groups {
        members.sort();
        for (chunk_no, chunk) in members.chunks(MAX_ENDPOINTS_PER_SLICE).enumerate() {
            let suffix = if chunk_no == 0 {
                String::new()
            } else {
                format!("-{chunk_no}")
            };
            out.push(EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!(
                        "{service}-{}-{port}{suffix}",
                        kind.to_ascii_lowercase()
                    )),
                    namespace: Some(namespace.to_string()),
                    labels: Some(
                        [
                            (SERVICE_NAME_LABEL.to_string(), service.to_string()),
                            (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                            (POLICY_LABEL.to_string(), policy.to_string()),
                        ]
                        .into(),
                    ),
                    owner_references: owner.map(|o| vec![o.clone()]),
                    ..Default::default()
                },
                address_type: kind.to_string(),
                ports: Some(vec![EndpointPort {
                    name: Some(port_name.to_string()),
                    port: Some(port),
                    protocol: Some("TCP".to_string()),
                    app_protocol: None,
                }]),
                endpoints: chunk
                    .iter()
                    .map(|p| Endpoint {
                        addresses: vec![p.host.clone()],
                        conditions: Some(EndpointConditions {
                            ready: Some(true),
                            serving: Some(true),
                            terminating: Some(false),
                        }),
                        ..Default::default()
                    })
                    .collect(),
            });
        }
    }
    out
}

/// Whether an observed slice already says what a desired one says (ignoring server-set fields).
pub fn slice_matches(observed: &EndpointSlice, desired: &EndpointSlice) -> bool {
    let addrs = |s: &EndpointSlice| {
        let mut v: Vec<(String, Option<bool>)> = s
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.addresses.first().cloned().unwrap_or_default(),
                    e.conditions.as_ref().and_then(|c| c.ready),
                )
            })
            .collect();
        v.sort();
        v
    };
    let ports = |s: &EndpointSlice| {
        s.ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|p| (p.name.clone(), p.port))
            .collect::<Vec<_>>()
    };
    observed.address_type == desired.address_type
        && ports(observed) == ports(desired)
        && addrs(observed) == addrs(desired)
        && observed
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            == desired
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
}

/// What makes the managed Service's slices list exactly the desired ones: the desired slices
/// that are missing or differ from what is observed (applied), and the observed slices no
/// desired one names (deleted). Nothing while the cluster matches.
#[derive(Debug, Default, PartialEq)]
pub struct SlicePlan {
    pub apply: Vec<EndpointSlice>,
    pub delete: Vec<String>,
}

impl SlicePlan {
    pub fn is_empty(&self) -> bool {
        self.apply.is_empty() && self.delete.is_empty()
    }
}

/// Plans the slice writes from the desired slices and the observed ones (the operator's own
/// slices of the managed Service, as the cache shows them).
pub fn plan_slices<O: std::ops::Deref<Target = EndpointSlice>>(
    want: Vec<EndpointSlice>,
    have: &[O],
) -> SlicePlan {
    let name = |s: &EndpointSlice| s.metadata.name.clone().unwrap_or_default();
    let delete = have
        .iter()
        .map(|h| name(h))
        .filter(|h| !want.iter().any(|w| &name(w) == h))
        .collect();
    let apply = want
        .into_iter()
        .filter(|w| {
            !have
                .iter()
                .any(|h| name(h) == name(w) && slice_matches(h, w))
        })
        .collect();
    SlicePlan { apply, delete }
}

/// The selectorless managed Service, created when absent.
pub fn managed_service(
    namespace: &str,
    name: &str,
    spec: &FailoverPolicySpec,
    owner: &OwnerReference,
    policy: &str,
) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some([(POLICY_LABEL.to_string(), policy.to_string())].into()),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some(spec.managed_service.port_name.clone()),
                port: spec.managed_service.port,
                protocol: Some("TCP".to_string()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Whether an annotation or label key is the operator's own (never copied to a mirror).
fn operators_own(key: &str) -> bool {
    key.starts_with("ingressfailover.io/")
}

/// Annotations of the source that a mirror must not copy: the class (the mirror has its own),
/// the operator's own, and client bookkeeping.
fn copied(key: &str) -> bool {
    key != LEGACY_CLASS_ANNOTATION
        && !operators_own(key)
        && key != "kubectl.kubernetes.io/last-applied-configuration"
}

/// The mirror of `source` on the backup class (HotStandby): same rules, same annotations and
/// labels (but the class and the operator's own keys), the backup-side overrides on top, the
/// other class, owned by the policy so it disappears with it.
pub fn mirror_ingress(
    source: &Ingress,
    backup_class: &str,
    owner: &OwnerReference,
    policy: &str,
    authoritative: bool,
    weight: u32,
    overrides: &BTreeMap<String, String>,
) -> Ingress {
    let name = format!(
        "{}{MIRROR_SUFFIX}",
        source.metadata.name.as_deref().unwrap_or_default()
    );
    let mut spec = source.spec.clone().unwrap_or_default();
    spec.ingress_class_name = Some(backup_class.to_string());
    let mut annotations: BTreeMap<String, String> = source
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| copied(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in overrides {
        if v.is_empty() {
            annotations.remove(k);
        } else {
            annotations.insert(k.clone(), v.clone());
        }
    }
    annotations.extend(role_annotations("backup", authoritative, weight));
    let mut labels: BTreeMap<String, String> = source
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !operators_own(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(POLICY_LABEL.to_string(), policy.to_string());
    Ingress {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: source.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Whether the cached mirror says what `desired` says: same spec, every desired annotation and
/// label, and no annotation or label the operator applied earlier but no longer wants.
pub fn mirror_matches(observed: &Ingress, desired: &Ingress) -> bool {
    let empty = BTreeMap::new();
    let want_a = desired.metadata.annotations.as_ref().unwrap_or(&empty);
    let want_l = desired.metadata.labels.as_ref().unwrap_or(&empty);
    observed.spec == desired.spec
        && has_annotations(&observed.metadata, want_a)
        && want_l
            .iter()
            .all(|(k, v)| observed.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v))
        && applied_keys(&observed.metadata, MANAGER, "f:annotations")
            .iter()
            .all(|k| want_a.contains_key(k))
        && applied_keys(&observed.metadata, MANAGER, "f:labels")
            .iter()
            .all(|k| want_l.contains_key(k))
}

/// What the operator owns on a managed (source) Ingress, in full: every server-side apply
/// lists all of it, so a field it means to keep is never dropped (a mode change included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFields {
    /// The class, in the form the Ingress uses.
    pub form: ClassForm,
    pub class: String,
    /// Annotations the operator sets (HotStandby role and the primary-side overrides; none in
    /// SwitchClass mode).
    pub annotations: BTreeMap<String, String>,
    /// The policy that owns the Ingress, recorded as its [`CLAIM_LABEL`]
    /// (`None` when handing it back: the label goes).
    pub owner: Option<String>,
}

impl SourceFields {
    /// The server-side-apply body.
    pub fn apply_body(&self, name: &str, namespace: &str) -> serde_json::Value {
        let mut annotations = self.annotations.clone();
        let mut spec = serde_json::Map::new();
        match self.form {
            ClassForm::Field => {
                spec.insert("ingressClassName".into(), self.class.clone().into());
            }
            ClassForm::Annotation | ClassForm::Both => {
                annotations.insert(LEGACY_CLASS_ANNOTATION.to_string(), self.class.clone());
            }
        }
        let mut metadata = serde_json::json!({"name": name, "namespace": namespace});
        if !annotations.is_empty() {
            metadata["annotations"] = serde_json::json!(annotations);
        }
        if let Some(owner) = &self.owner {
            metadata["labels"] = serde_json::json!({ CLAIM_LABEL: owner });
        }
        let mut body = serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata,
        });
        if !spec.is_empty() {
            body["spec"] = serde_json::Value::Object(spec);
        }
        body
    }

    /// Field managers other than `ours` owning any of these fields on `ing`, joined (or
    /// `unknown`).
    pub fn managers_besides(&self, ing: &Ingress, ours: &str) -> String {
        let mut paths: Vec<Vec<String>> = vec![
            vec!["f:spec".into(), "f:ingressClassName".into()],
            vec![
                "f:metadata".into(),
                "f:annotations".into(),
                format!("f:{LEGACY_CLASS_ANNOTATION}"),
            ],
        ];
        paths.extend(self.annotations.keys().map(|k| {
            vec![
                "f:metadata".to_string(),
                "f:annotations".to_string(),
                format!("f:{k}"),
            ]
        }));
        let mut all: Vec<String> = paths
            .iter()
            .flat_map(|p| {
                let p: Vec<&str> = p.iter().map(String::as_str).collect();
                other_managers(&ing.metadata, &p, ours)
            })
            .collect();
        all.sort();
        all.dedup();
        if all.is_empty() {
            "unknown".to_string()
        } else {
            all.join(", ")
        }
    }

    /// Whether `ing` already says all of it, and carries nothing the operator applied earlier
    /// but no longer means (role annotations after a switch to SwitchClass, a class field on an
    /// Ingress that names its class by annotation).
    pub fn matches(&self, ing: &Ingress) -> bool {
        let class_ok = match self.form {
            ClassForm::Field => {
                ing.spec
                    .as_ref()
                    .and_then(|s| s.ingress_class_name.as_deref())
                    == Some(self.class.as_str())
            }
            ClassForm::Annotation => {
                effective_class(ing) == Some(self.class.as_str())
                    && ing
                        .spec
                        .as_ref()
                        .is_none_or(|s| s.ingress_class_name.is_none())
            }
            ClassForm::Both => false,
        };
        let mut wanted_keys: Vec<&str> = self.annotations.keys().map(String::as_str).collect();
        if self.form != ClassForm::Field {
            wanted_keys.push(LEGACY_CLASS_ANNOTATION);
        }
        let owner_ok = match &self.owner {
            Some(o) => {
                ing.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(CLAIM_LABEL))
                    == Some(o)
            }
            None => !applied_keys(&ing.metadata, MANAGER, "f:labels")
                .iter()
                .any(|k| k == CLAIM_LABEL),
        };
        class_ok
            && owner_ok
            && has_annotations(&ing.metadata, &self.annotations)
            && applied_keys(&ing.metadata, MANAGER, "f:annotations")
                .iter()
                .all(|k| wanted_keys.contains(&k.as_str()))
    }
}

/// The annotations that say which side of a HotStandby pair is authoritative.
pub fn role_annotations(role: &str, authoritative: bool, weight: u32) -> BTreeMap<String, String> {
    [
        (ROLE_ANNOTATION.to_string(), role.to_string()),
        (
            AUTHORITATIVE_ANNOTATION.to_string(),
            authoritative.to_string(),
        ),
        (WEIGHT_ANNOTATION.to_string(), weight.to_string()),
    ]
    .into()
}

/// Whether `observed` carries every annotation in `wanted` with the same value.
pub fn has_annotations(observed: &ObjectMeta, wanted: &BTreeMap<String, String>) -> bool {
    let have = observed.annotations.as_ref();
    wanted
        .iter()
        .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The owner reference of the test policy shop/web, for this module's and `actuate`'s tests.
    pub(crate) fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "ingressfailover.io/v1alpha1".into(),
            kind: "FailoverPolicy".into(),
            name: "web".into(),
            uid: "u1".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }
    }

    fn slices_of(addresses: &[&str]) -> Vec<EndpointSlice> {
        let published: Vec<Published> = addresses
            .iter()
            .map(|a| Published::parse(a).unwrap())
            .collect();
        endpoint_slices(
            "shop",
            "web-healthy",
            "http",
            Some(&owner()),
            "web",
            &published,
        )
    }

    fn names(slices: &[EndpointSlice]) -> Vec<String> {
        slices
            .iter()
            .map(|s| s.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    /// The slice writes as a table: (observed addresses, desired addresses) → what is applied
    /// and what is deleted. No write while the cluster matches.
    #[test]
    fn slice_plans() {
        let v4 = slices_of(&["10.0.1.1:80"]);
        let v4_name = names(&v4);
        let v6_name = names(&slices_of(&["[fd00::1]:80"]));
        /// Observed addresses, desired addresses, slices applied, slices deleted.
        type Case<'a> = (&'a [&'a str], &'a [&'a str], Vec<String>, Vec<String>);
        let cases: [Case; 6] = [
            (
                &["10.0.1.1:80", "10.0.1.2:80"],
                &["10.0.1.2:80", "10.0.1.1:80"],
                vec![],
                vec![],
            ),
            (&[], &["10.0.1.1:80"], v4_name.clone(), vec![]),
            (
                &["10.0.1.1:80", "10.0.1.2:80"],
                &["10.0.1.1:80"],
                v4_name.clone(),
                vec![],
            ),
            (
                &["10.0.1.1:80", "[fd00::1]:80"],
                &["10.0.1.1:80"],
                vec![],
                v6_name.clone(),
            ),
            (
                &["10.0.1.1:80"],
                &["[fd00::1]:80"],
                v6_name.clone(),
                v4_name.clone(),
            ),
            (&["10.0.1.1:80"], &[], vec![], v4_name.clone()),
        ];
        for (i, (have, want, apply, delete)) in cases.into_iter().enumerate() {
            let have = slices_of(have);
            let plan = plan_slices(slices_of(want), &have.iter().collect::<Vec<_>>());
            assert_eq!(names(&plan.apply), apply, "case {i}: applied");
            assert_eq!(plan.delete, delete, "case {i}: deleted");
        }
        // A slice whose readiness changed is written again; the same slice is not.
        let mut not_ready = v4.clone();
        not_ready[0].endpoints[0].conditions = Some(EndpointConditions {
            ready: Some(false),
            ..Default::default()
        });
        let have: Vec<&EndpointSlice> = not_ready.iter().collect();
        assert_eq!(names(&plan_slices(v4.clone(), &have).apply), v4_name);
        let have: Vec<&EndpointSlice> = v4.iter().collect();
        assert!(plan_slices(v4.clone(), &have).is_empty());
    }

    #[test]
    fn slices_group_by_address_type_and_port() {
        let slices = slices_of(&[
            "10.0.1.1:80",
            "10.0.1.2:80",
            "10.0.1.3:8080",
            "[fd00::1]:80",
            "backend.example:80",
        ]);
        let names: Vec<_> = slices
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            vec![
                "web-healthy-fqdn-80",
                "web-healthy-ipv4-80",
                "web-healthy-ipv4-8080",
                "web-healthy-ipv6-80"
            ]
        );
        assert_eq!(slices[1].endpoints.len(), 2);
        assert!(slice_matches(&slices[1], &slices[1].clone()));
        assert!(!slice_matches(&slices[1], &slices[2]));
    }

    #[test]
    fn large_pools_split_into_slices_of_1000() {
        let published: Vec<Published> = (0..2500)
            .map(|i| Published {
                host: format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                port: 80,
            })
            .collect();
        let slices = endpoint_slices("shop", "web", "http", Some(&owner()), "web", &published);
        let sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
    }
}
