//! The DNS tier (`spec.dns`): one ExternalDNS `DNSEndpoint` per policy, `<policy>-dns` in the
//! policy's namespace, whose records point the policy's host names at the active tier's load
//! balancer. ExternalDNS (crd source) publishes it to the DNS provider.
//!
//! Only the fields the operator owns are written (by server-side apply, field manager
//! `ingress-failover`), and only when the cached object differs: nothing is written in steady
//! state. The `DNSEndpoint` CRD is optional: the cache, the trigger and the writes exist only
//! with `--dns-endpoints`.

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use kube::{Api, CustomResource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::actuate::{ActuateError, MANAGER, managed_ingresses};
use super::context::Context;
use super::desired::{MIRROR_SUFFIX, POLICY_LABEL};
use super::observe::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::api::{DnsMode, DnsSpec, FailoverPolicySpec};

/// The part of ExternalDNS's `DNSEndpoint` (`externaldns.k8s.io/v1alpha1`) the operator reads
/// and writes. Fields it does not know are ignored when read and never written.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "externaldns.k8s.io",
    version = "v1alpha1",
    kind = "DNSEndpoint",
    plural = "dnsendpoints",
    namespaced,
    schema = "disabled"
)]
pub struct DnsEndpointSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
}

/// One record set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub dns_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub record_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub set_identifier: String,
    #[serde(default, rename = "recordTTL", skip_serializing_if = "Option::is_none")]
    pub record_ttl: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_specific: Vec<ProviderSpecific>,
}

/// A provider-specific property (`aws/weight`, `aws/failover`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ProviderSpecific {
    pub name: String,
    pub value: String,
}

/// The name of a policy's `DNSEndpoint`.
pub fn endpoint_name(policy: &str) -> String {
    format!("{policy}-dns")
}

/// Set identifiers of the two record sets (Weighted and Failover modes).
pub const PRIMARY_SET: &str = "primary";
pub const BACKUP_SET: &str = "backup";

/// Where each tier's load balancer is, as DNS targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierAddresses {
    pub primary: Vec<String>,
    pub backup: Vec<String>,
}

/// Where each tier's load balancer is: `primaryTargets` / `backupTargets` when given, else the
/// load-balancer status of the managed Ingresses (primary) and of their HotStandby mirrors
/// (backup). The one place addresses come from; another source (a Gateway's
/// `status.addresses`) is another arm here.
pub fn tier_addresses(ctx: &Context, ns: &str, spec: &FailoverPolicySpec) -> TierAddresses {
    let Some(dns) = &spec.dns else {
        return TierAddresses::default();
    };
    let explicit = |t: &[crate::api::DnsTarget]| -> Vec<String> {
        let mut v: Vec<String> = t.iter().map(|t| t.0.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    let mut out = TierAddresses {
        primary: explicit(&dns.primary_targets),
        backup: explicit(&dns.backup_targets),
    };
    if (out.primary.is_empty() || out.backup.is_empty()) && spec.ingress.is_some() {
        let sources = managed_ingresses(ctx, ns, spec);
        if out.primary.is_empty() {
            out.primary = ingress_addresses(sources.iter().map(|i| &**i));
        }
        if out.backup.is_empty() {
            let mirrors: Vec<String> = sources
                .iter()
                .map(|i| format!("{}{MIRROR_SUFFIX}", i.name_any()))
                .collect();
            let cached = ctx.stores.ingresses.state_filter(|i| {
                i.metadata.namespace.as_deref() == Some(ns) && mirrors.contains(&i.name_any())
            });
            out.backup = ingress_addresses(cached.iter().map(|i| &**i));
        }
    }
    // The Gateway tier: each side's Gateway says where its load balancer answers.
    if let (Some(tier), Some(stores)) = (&spec.gateway, &ctx.stores.gateway) {
        if out.primary.is_empty() {
            out.primary = super::gateway::gateway_addresses(stores, ns, &tier.primary_gateway);
        }
        if out.backup.is_empty() {
            out.backup = super::gateway::gateway_addresses(stores, ns, &tier.backup_gateway);
        }
    }
    out
}

/// The addresses in the Ingresses' `status.loadBalancer.ingress` (IPs and host names).
pub fn ingress_addresses<'a>(ingresses: impl Iterator<Item = &'a Ingress>) -> Vec<String> {
    let mut v: Vec<String> = ingresses
        .filter_map(|i| i.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref())
        .flatten()
        .filter_map(|lb| lb.ip.clone().or_else(|| lb.hostname.clone()))
        .filter(|a| !a.is_empty())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The record sets `dns` asks for, with `primary_percent` of answers for the primary tier.
/// Err names what is missing when the tier the records must point at has no known address.
pub fn desired_endpoints(
    dns: &DnsSpec,
    primary_percent: u32,
    addresses: &TierAddresses,
) -> Result<Vec<Endpoint>, String> {
    let ttl = Some(i64::from(dns.ttl_seconds));
    let missing = |tier: &str| {
        format!(
            "no address known for the {tier} tier's load balancer: set spec.dns.{tier}Targets, or wait for the {} status to list one",
            if tier == "primary" {
                "managed Ingress's or the primary Gateway's"
            } else {
                "HotStandby mirror's or the backup Gateway's"
            }
        )
    };
    let mut out = Vec::new();
    for host in &dns.hostnames {
        let host = host.0.trim_end_matches('.');
        match dns.mode {
            DnsMode::Atomic => {
                let (tier, targets) = if primary_percent > 0 {
                    ("primary", &addresses.primary)
                } else {
                    ("backup", &addresses.backup)
                };
                if targets.is_empty() {
                    return Err(missing(tier));
                }
                for (record_type, targets) in by_record_type(targets) {
                    out.push(Endpoint {
                        dns_name: host.to_string(),
                        targets,
                        record_type,
                        record_ttl: ttl,
                        ..Default::default()
                    });
                }
            }
            DnsMode::Weighted | DnsMode::Failover => {
                for (set, targets, weight, active) in [
                    (
                        PRIMARY_SET,
                        &addresses.primary,
                        primary_percent,
                        primary_percent > 0,
                    ),
                    (
                        BACKUP_SET,
                        &addresses.backup,
                        100 - primary_percent.min(100),
                        primary_percent == 0,
                    ),
                ] {
                    if targets.is_empty() {
                        // A set that carries answers must be there; one that carries none may
                        // wait for its address.
                        let carries = match dns.mode {
                            DnsMode::Weighted => weight > 0,
                            _ => active,
                        };
                        if carries {
                            return Err(missing(set));
                        }
                        continue;
                    }
                    let property = match dns.mode {
                        DnsMode::Weighted => ProviderSpecific {
                            name: "aws/weight".into(),
                            value: weight.to_string(),
                        },
                        _ => ProviderSpecific {
                            name: "aws/failover".into(),
                            value: if active { "PRIMARY" } else { "SECONDARY" }.into(),
                        },
                    };
                    for (record_type, targets) in by_record_type(targets) {
                        out.push(Endpoint {
                            dns_name: host.to_string(),
                            targets,
                            record_type,
                            set_identifier: set.to_string(),
                            record_ttl: ttl,
                            provider_specific: vec![property.clone()],
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Targets grouped by the record they need: IPv4 → A, IPv6 → AAAA; a host name → CNAME (one
/// target only: a CNAME has one; used only when the tier has no IP).
fn by_record_type(targets: &[String]) -> Vec<(String, Vec<String>)> {
    let (mut v4, mut v6, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for t in targets {
        match t.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => v4.push(t.clone()),
            Ok(IpAddr::V6(_)) => v6.push(t.clone()),
            Err(_) => names.push(t.trim_end_matches('.').to_string()),
        }
    }
    let mut out = Vec::new();
    if !v4.is_empty() {
        out.push(("A".to_string(), v4));
    }
    if !v6.is_empty() {
        out.push(("AAAA".to_string(), v6));
    }
    if out.is_empty()
        && let Some(first) = names.into_iter().next()
    {
        out.push(("CNAME".to_string(), vec![first]));
    }
    out
}

/// The cached `DNSEndpoint` of a policy.
fn cached(ctx: &Context, ns: &str, name: &str) -> Option<std::sync::Arc<DNSEndpoint>> {
    ctx.stores
        .dns_endpoints
        .as_ref()?
        .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns))
}

/// Makes the policy's `DNSEndpoint` list exactly `endpoints`; returns whether it wrote. A
/// `DNSEndpoint` of that name that this policy did not create is left alone (a conflict).
pub async fn sync(
    ctx: &Context,
    ns: &str,
    policy: &str,
    owner: Option<&OwnerReference>,
    endpoints: &[Endpoint],
) -> Result<bool, ActuateError> {
    let name = endpoint_name(policy);
    let what = format!("DNSEndpoint {ns}/{name}");
    let api: Api<DNSEndpoint> = Api::namespaced(ctx.client.clone(), ns);
    // The cache holds only DNSEndpoints labelled by a policy: one it does not show may still
    // exist (someone else's), and is never taken over by a blind apply. One GET before a
    // create; a refused object backs off like any failing write.
    let have = match cached(ctx, ns, &name) {
        Some(have) => Some(have),
        None => api
            .get_opt(&name)
            .await
            .map_err(|source| ActuateError::Api {
                what: what.clone(),
                source,
            })?
            .map(std::sync::Arc::new),
    };
    if let Some(have) = &have {
        if have.labels().get(POLICY_LABEL).map(String::as_str) != Some(policy) {
            return Err(ActuateError::Conflict {
                what: what.clone(),
                message: format!(
                    "{what} exists and was not created by FailoverPolicy {policy} (label {POLICY_LABEL}): the operator does not take it over; delete or rename it"
                ),
            });
        }
        let owned = have
            .metadata
            .owner_references
            .as_deref()
            .unwrap_or_default();
        let owner_ok = match owner {
            Some(o) => owned.iter().any(|r| r.uid == o.uid),
            None => owned.is_empty(),
        };
        if have.spec.endpoints == endpoints && owner_ok {
            return Ok(false);
        }
    }
    let mut body = json!({
        "apiVersion": "externaldns.k8s.io/v1alpha1",
        "kind": "DNSEndpoint",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {POLICY_LABEL: policy, MANAGED_BY_LABEL: MANAGED_BY},
        },
        "spec": {"endpoints": endpoints},
    });
    if let Some(o) = owner {
        body["metadata"]["ownerReferences"] = json!([o]);
    }
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| ActuateError::Api { what, source })?;
    ctx.metrics.write("dnsendpoints");
    Ok(true)
}

/// Whether the cache shows the policy's `DNSEndpoint` still owned by it (an ownerReference).
pub fn owned_by(ctx: &Context, ns: &str, policy: &str) -> bool {
    cached(ctx, ns, &endpoint_name(policy)).is_some_and(|e| {
        e.labels().get(POLICY_LABEL).map(String::as_str) == Some(policy)
            && !e.owner_references().is_empty()
    })
}

/// On deletion of the policy: the records are handed back pointing at the primary tier
/// (Restore) or as they are (Orphan), without the ownerReference, so that deleting the policy
/// never deletes the records clients resolve.
pub async fn hand_back(
    ctx: &Context,
    ns: &str,
    policy: &str,
    spec: &FailoverPolicySpec,
    restore: bool,
) -> Result<(), ActuateError> {
    let Some(have) = cached(ctx, ns, &endpoint_name(policy)) else {
        return Ok(());
    };
    if have.labels().get(POLICY_LABEL).map(String::as_str) != Some(policy) {
        return Ok(());
    }
    let endpoints = match (&spec.dns, restore) {
        (Some(dns), true) => desired_endpoints(dns, 100, &tier_addresses(ctx, ns, spec))
            .unwrap_or_else(|_| have.spec.endpoints.clone()),
        _ => have.spec.endpoints.clone(),
    };
    sync(ctx, ns, policy, None, &endpoints).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DnsName, DnsTarget};

    fn spec(mode: DnsMode) -> DnsSpec {
        DnsSpec {
            hostnames: vec![DnsName("shop.example.com".into())],
            ttl_seconds: 60,
            mode,
            primary_targets: vec![DnsTarget("192.0.2.10".into())],
            backup_targets: vec![DnsTarget("lb-backup.example.net".into())],
        }
    }

    fn addrs() -> TierAddresses {
        TierAddresses {
            primary: vec!["192.0.2.10".into(), "2001:db8::10".into()],
            backup: vec!["lb-backup.example.net".into()],
        }
    }

    #[test]
    fn atomic_points_at_the_active_tier_with_the_record_type_of_its_targets() {
        let on_primary = desired_endpoints(&spec(DnsMode::Atomic), 100, &addrs()).unwrap();
        let types: Vec<_> = on_primary
            .iter()
            .map(|e| (e.record_type.as_str(), e.targets.clone(), e.record_ttl))
            .collect();
        assert_eq!(
            types,
            vec![
                ("A", vec!["192.0.2.10".to_string()], Some(60)),
                ("AAAA", vec!["2001:db8::10".to_string()], Some(60)),
            ]
        );
        let on_backup = desired_endpoints(&spec(DnsMode::Atomic), 0, &addrs()).unwrap();
        assert_eq!(on_backup.len(), 1);
        assert_eq!(on_backup[0].record_type, "CNAME");
        assert_eq!(on_backup[0].targets, vec!["lb-backup.example.net"]);
    }

    #[test]
    fn weighted_writes_both_sets_with_complementary_weights() {
        let e = desired_endpoints(&spec(DnsMode::Weighted), 10, &addrs()).unwrap();
        let sets: Vec<_> = e
            .iter()
            .map(|e| {
                (
                    e.set_identifier.as_str(),
                    e.record_type.as_str(),
                    e.provider_specific[0].name.as_str(),
                    e.provider_specific[0].value.as_str(),
                )
            })
            .collect();
        assert_eq!(
            sets,
            vec![
                ("primary", "A", "aws/weight", "10"),
                ("primary", "AAAA", "aws/weight", "10"),
                ("backup", "CNAME", "aws/weight", "90"),
            ]
        );
    }

    #[test]
    fn failover_marks_the_active_set_primary() {
        let e = desired_endpoints(&spec(DnsMode::Failover), 0, &addrs()).unwrap();
        let roles: Vec<_> = e
            .iter()
            .map(|e| {
                (
                    e.set_identifier.as_str(),
                    e.provider_specific[0].value.as_str(),
                )
            })
            .collect();
        assert_eq!(
            roles,
            vec![
                ("primary", "SECONDARY"),
                ("primary", "SECONDARY"),
                ("backup", "PRIMARY")
            ]
        );
    }

    #[test]
    fn a_tier_without_an_address_is_named_only_when_it_must_answer() {
        let only_primary = TierAddresses {
            primary: vec!["192.0.2.10".into()],
            backup: vec![],
        };
        assert!(desired_endpoints(&spec(DnsMode::Weighted), 100, &only_primary).is_ok());
        let err = desired_endpoints(&spec(DnsMode::Atomic), 0, &only_primary).unwrap_err();
        assert!(err.contains("spec.dns.backupTargets"), "{err}");
    }
}
