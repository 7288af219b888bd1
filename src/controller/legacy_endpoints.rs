//! `managedService.legacyEndpoints`: a v1 `Endpoints` object mirroring the published set, for
//! consumers that still read the legacy API (older ingress controllers, some meshes) and see
//! nothing of a selectorless Service whose endpoints live only in EndpointSlices.
//!
//! The EndpointSlices stay authoritative: this object is derived from the same published set in
//! the same actuation, after the slices. It carries `endpointslice.kubernetes.io/skip-mirror`,
//! or kube-controller-manager's EndpointSlice mirroring controller would copy it back into a
//! second set of slices for the Service (every endpoint published twice). It is only read and
//! written for policies that opt in, so an operator nobody asked for it never shows up among the
//! users of an API that Kubernetes 1.33+ reports as deprecated.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{DeleteParams, Patch};

use super::actuate::{ActuateError, api_err, apply_params};
use super::context::Context;
use super::desired::{POLICY_LABEL, Published};
use super::observe::{MANAGED_BY, MANAGED_BY_LABEL};

/// Tells kube-controller-manager's mirroring controller to leave this object alone.
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
/// The legacy object holds at most this many addresses, as Kubernetes' own Endpoints controller
/// does; beyond it the object says so with the same annotation.
pub const MAX_ADDRESSES: usize = 1000;
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";

/// The Endpoints object mirroring `published` (named as the Service, as the API requires).
/// Addresses that are not IPs (FQDN endpoints) cannot be expressed in the legacy API and are
/// left out; past [`MAX_ADDRESSES`] the rest are left out and the object is annotated
/// `over-capacity: truncated`.
pub fn desired(
    namespace: &str,
    service: &str,
    port_name: &str,
    owner: Option<&OwnerReference>,
    policy: &str,
    published: &[Published],
) -> Endpoints {
    let mut ips: Vec<&Published> = published
        .iter()
        .filter(|p| p.host.parse::<std::net::IpAddr>().is_ok())
        .collect();
    ips.sort();
    let truncated = ips.len() > MAX_ADDRESSES;
    ips.truncate(MAX_ADDRESSES);
    let mut ports: Vec<i32> = ips.iter().map(|p| p.port).collect();
    ports.sort_unstable();
    ports.dedup();
    let subsets = ports
        .into_iter()
        .map(|port| EndpointSubset {
            addresses: Some(
                ips.iter()
                    .filter(|p| p.port == port)
                    .map(|p| EndpointAddress {
                        ip: p.host.clone(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![EndpointPort {
                name: Some(port_name.to_string()),
                port,
                protocol: Some("TCP".to_string()),
                app_protocol: None,
            }]),
            not_ready_addresses: None,
        })
        .collect::<Vec<_>>();
    Endpoints {
        metadata: ObjectMeta {
            name: Some(service.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(
                [
                    (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                    (POLICY_LABEL.to_string(), policy.to_string()),
                    (SKIP_MIRROR_LABEL.to_string(), "true".to_string()),
                ]
                .into(),
            ),
            annotations: truncated.then(|| {
                [(
                    OVER_CAPACITY_ANNOTATION.to_string(),
                    "truncated".to_string(),
                )]
                .into()
            }),
            owner_references: owner.map(|o| vec![o.clone()]),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    }
}

/// What an Endpoints object says, in a form the API server's repacking of subsets (merging
/// subsets with the same ports, sorting addresses) does not change.
fn meaning(e: &Endpoints) -> BTreeSet<(String, Option<String>, i32, bool)> {
    let mut out = BTreeSet::new();
    for subset in e.subsets.iter().flatten() {
        for port in subset.ports.iter().flatten() {
            for a in subset.addresses.iter().flatten() {
                out.insert((a.ip.clone(), port.name.clone(), port.port, true));
            }
            for a in subset.not_ready_addresses.iter().flatten() {
                out.insert((a.ip.clone(), port.name.clone(), port.port, false));
            }
        }
    }
    out
}

/// What to do about the legacy object.
#[derive(Debug, PartialEq)]
pub enum Plan {
    Nothing,
    Apply(Box<Endpoints>),
    /// Delete the operator's object (it carries our managed-by label; one of someone else is
    /// never deleted).
    Delete,
}

/// Plans the write from the desired object (`None`: the policy does not opt in) and the one the
/// API returned (`None`: absent). Nothing while they say the same thing.
/// Whether the object carries the operator's managed-by label (one of someone else is never
/// deleted or counted as the policy's).
fn ours(e: &Endpoints) -> bool {
    e.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .map(String::as_str)
        == Some(MANAGED_BY)
}

pub fn plan(want: Option<Endpoints>, have: Option<&Endpoints>) -> Plan {
    match (want, have) {
        (None, Some(h)) if ours(h) => Plan::Delete,
        (None, _) => Plan::Nothing,
        (Some(w), Some(h))
            if ours(h)
                && meaning(&w) == meaning(h)
                && h.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SKIP_MIRROR_LABEL))
                    == Some(&"true".to_string())
                && h.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(OVER_CAPACITY_ANNOTATION))
                    == w.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(OVER_CAPACITY_ANNOTATION)) =>
        {
            Plan::Nothing
        }
        (Some(w), _) => Plan::Apply(Box::new(w)),
    }
}

/// How often an opted-in policy's object is read back even though the published set did not
/// change (another writer may have changed it): one GET per policy per period.
pub const RECHECK_MS: i64 = 300_000;

/// Whether a reconcile reads (and maybe writes) the legacy object:
/// - opted in: when the published set changed since the last sync, or [`RECHECK_MS`] passed;
/// - not opted in: once after this process wrote one or saw one (to remove it), or once when the
///   policy's spec changed while no replica observed it (the opt-out may have been that edit);
///   never otherwise.
pub fn must_look(
    opted: bool,
    exists: Option<bool>,
    unobserved_edit: bool,
    synced: Option<&(Vec<Published>, i64)>,
    published: &[Published],
    now: i64,
) -> bool {
    if opted {
        return match synced {
            Some((set, at)) => set.as_slice() != published || now - at >= RECHECK_MS,
            None => true,
        };
    }
    match exists {
        Some(exists) => exists,
        None => unobserved_edit,
    }
}

/// Makes the legacy object say what `want` says (or removes the operator's when `want` is
/// `None`). One GET, then a write only where it differs. Returns whether an object of ours
/// exists afterwards.
pub async fn sync(
    ctx: &Context,
    ns: &str,
    service: &str,
    want: Option<Endpoints>,
) -> Result<bool, ActuateError> {
    let what = format!("Endpoints {ns}/{service}");
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
    let have = api.get_opt(service).await.map_err(api_err(&what))?;
    match plan(want, have.as_ref()) {
        Plan::Nothing => Ok(have.as_ref().is_some_and(ours)),
        Plan::Apply(e) => {
            let mut v = serde_json::to_value(&*e).expect("Endpoints serializes");
            v["apiVersion"] = "v1".into();
            v["kind"] = "Endpoints".into();
            api.patch(service, &apply_params(), &Patch::Apply(v))
                .await
                .map_err(api_err(&what))?;
            ctx.metrics.write("endpoints");
            Ok(true)
        }
        Plan::Delete => {
            match api.delete(service, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(api_err(&what)(e)),
            }
            ctx.metrics.write("endpoints");
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "ingressfailover.io/v1alpha1".into(),
            kind: "FailoverPolicy".into(),
            name: "p".into(),
            uid: "u".into(),
            ..Default::default()
        }
    }

    fn published(list: &[&str]) -> Vec<Published> {
        list.iter().map(|a| Published::parse(a).unwrap()).collect()
    }

    fn want(list: &[&str]) -> Endpoints {
        desired("ns", "web", "http", Some(&owner()), "p", &published(list))
    }

    #[test]
    fn mirrors_ip_endpoints_by_port_and_leaves_names_out() {
        let e = want(&[
            "10.0.0.2:80",
            "10.0.0.1:80",
            "10.0.0.3:8080",
            "db.example:80",
        ]);
        let subsets = e.subsets.unwrap();
        assert_eq!(subsets.len(), 2);
        let ips = |s: &EndpointSubset| {
            s.addresses
                .iter()
                .flatten()
                .map(|a| a.ip.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ips(&subsets[0]), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(subsets[0].ports.as_ref().unwrap()[0].port, 80);
        assert_eq!(ips(&subsets[1]), ["10.0.0.3"]);
        let labels = e.metadata.labels.unwrap();
        assert_eq!(labels[SKIP_MIRROR_LABEL], "true");
        assert_eq!(labels[POLICY_LABEL], "p");
        assert!(e.metadata.annotations.is_none());
    }

    #[test]
    fn an_empty_set_is_an_object_without_subsets() {
        assert_eq!(want(&[]).subsets, None);
    }

    #[test]
    fn past_the_cap_the_object_says_it_is_truncated() {
        let many: Vec<String> = (0..1200)
            .map(|i| format!("10.1.{}.{}:80", i / 250, i % 250))
            .collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let e = want(&refs);
        let n: usize = e
            .subsets
            .iter()
            .flatten()
            .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
            .sum();
        assert_eq!(n, MAX_ADDRESSES);
        assert_eq!(
            e.metadata.annotations.unwrap()[OVER_CAPACITY_ANNOTATION],
            "truncated"
        );
    }

    #[test]
    fn looks_only_when_it_may_matter() {
        let set = published(&["10.0.0.1:80"]);
        let other = published(&["10.0.0.2:80"]);
        let synced = (set.clone(), 1_000);
        // (opted, exists, unobserved edit, synced, published, now, look)
        let cases = [
            (true, None, false, None, &set, 0, true),
            (true, Some(true), false, Some(&synced), &set, 2_000, false),
            (true, Some(true), false, Some(&synced), &other, 2_000, true),
            (
                true,
                Some(true),
                false,
                Some(&synced),
                &set,
                1_000 + RECHECK_MS,
                true,
            ),
            (false, Some(true), false, None, &set, 0, true),
            (false, Some(false), true, None, &set, 0, false),
            (false, None, false, None, &set, 0, false),
            (false, None, true, None, &set, 0, true),
        ];
        for (i, (opted, exists, edit, synced, published, now, look)) in cases.iter().enumerate() {
            assert_eq!(
                must_look(*opted, *exists, *edit, *synced, published, *now),
                *look,
                "case {i}"
            );
        }
    }

    #[test]
    fn plans_only_what_differs() {
        let w = want(&["10.0.0.1:80", "10.0.0.2:80"]);
        // The API server repacks subsets: the same meaning in another shape is no write.
        let mut repacked = w.clone();
        repacked.subsets.as_mut().unwrap()[0]
            .addresses
            .as_mut()
            .unwrap()
            .reverse();
        let cases: Vec<(&str, Option<Endpoints>, Option<Endpoints>, &str)> = vec![
            ("absent, wanted", Some(w.clone()), None, "apply"),
            ("same", Some(w.clone()), Some(w.clone()), "nothing"),
            ("repacked", Some(w.clone()), Some(repacked), "nothing"),
            (
                "an address gone",
                Some(want(&["10.0.0.1:80"])),
                Some(w.clone()),
                "apply",
            ),
            (
                "skip-mirror label removed by someone",
                Some(w.clone()),
                Some({
                    let mut h = w.clone();
                    h.metadata
                        .labels
                        .as_mut()
                        .unwrap()
                        .remove(SKIP_MIRROR_LABEL);
                    h
                }),
                "apply",
            ),
            ("opted out, ours exists", None, Some(w.clone()), "delete"),
            (
                "opted out, someone else's exists",
                None,
                Some({
                    let mut h = w.clone();
                    h.metadata.labels = None;
                    h
                }),
                "nothing",
            ),
            ("opted out, absent", None, None, "nothing"),
        ];
        for (name, want, have, expect) in cases {
            let got = match plan(want, have.as_ref()) {
                Plan::Nothing => "nothing",
                Plan::Apply(_) => "apply",
                Plan::Delete => "delete",
            };
            assert_eq!(got, expect, "{name}");
        }
    }
}
