//! The DNS failover lab, end to end (groundwork for issue 14, the DNS tier): ExternalDNS (the
//! pinned build of `scripts/real-cluster/external-dns`: CRD source, rfc2136 provider, TXT
//! registry) syncs `DNSEndpoint` objects into a zone that BIND 9 serves on loopback, and a DNS
//! query to `named` shows a record move.
//!
//! Runs against the real control plane when `INGRESS_FAILOVER_KUBECONFIG` is set
//! (`scripts/real-cluster.sh run -- ...`, as `scripts/real-cluster-suites.sh` does), else against
//! the embedded plane, which ExternalDNS reaches over plain HTTP on loopback through a kubeconfig
//! written here.
//!
//! Needs `named` (Debian's bind9) and the ExternalDNS build (`scripts/real-cluster.sh
//! build-external-dns`, which `scripts/install-tools.sh` runs). Without them the test says so on
//! stderr and passes, unless `INGRESS_FAILOVER_DNS_LAB=1`, in which case it fails: CI sets it.

use devcluster::{DevCluster, DevClusterOptions};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use serde_json::json;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::dns::{self, ExternalDns, ExternalDnsOptions, Named};
use testkit::wait::eventually;

const ZONE: &str = "failover.test";

/// The binaries the lab needs, or why it cannot run.
fn lab_binaries() -> Option<PathBuf> {
    dns::lab_binaries(Path::new(env!("CARGO_MANIFEST_DIR")), "the DNS lab")
}

/// The cluster the lab talks to: a real one, or an embedded plane with a kubeconfig on disk.
struct LabCluster {
    client: Client,
    kubeconfig: PathBuf,
    ns: String,
    _embedded: Option<(DevCluster, PathBuf)>,
}

impl LabCluster {
    async fn new() -> LabCluster {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (client, kubeconfig, embedded) = match std::env::var("INGRESS_FAILOVER_KUBECONFIG") {
            Ok(path) => {
                let kc = kube::config::Kubeconfig::read_from(&path).expect("read kubeconfig");
                let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .expect("kubeconfig");
                (
                    Client::try_from(cfg).expect("client"),
                    PathBuf::from(path),
                    None,
                )
            }
            Err(_) => {
                let dc = DevCluster::start(DevClusterOptions::default())
                    .await
                    .expect("start devcluster");
                let dir = std::env::temp_dir().join(format!(
                    "dns-lab-kubeconfig-{}-{}",
                    std::process::id(),
                    fastrand::u32(..)
                ));
                let path = dir.join("kubeconfig");
                dns::write_file(&path, &dc.kubeconfig_yaml()).expect("write kubeconfig");
                (dc.client().expect("client"), path, Some((dc, dir)))
            }
        };
        let ns = format!("dns-lab-{}", fastrand::u32(..) % 100_000);
        Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .expect("create namespace");
        LabCluster {
            client,
            kubeconfig,
            ns,
            _embedded: embedded,
        }
    }

    fn real(&self) -> bool {
        self._embedded.is_none()
    }

    async fn cleanup(self) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.ns, &DeleteParams::default())
            .await;
        if let Some((dc, dir)) = self._embedded {
            dc.shutdown().await;
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Installs ExternalDNS's DNSEndpoint CRD (vendored from the pinned module,
/// `tests/data/crds/external-dns`; `scripts/vendored-crds.sh check` guards drift).
async fn install_dnsendpoint_crd(client: &Client) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/crds/external-dns/dnsendpoints.externaldns.k8s.io.yaml");
    testkit::crds::install(client, &path, "dns-lab").await;
}

fn dns_endpoint(name: &str, endpoints: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint",
        "metadata": {"name": name}, "spec": {"endpoints": endpoints},
    }))
    .unwrap()
}

/// Polls `named` every 50 ms until the A records of `name` are `want` (each with `ttl` when
/// given); returns how long that took. Panics with both logs after `limit`.
async fn until_answer(
    named: &Named,
    edns: &mut ExternalDns,
    name: &str,
    want: &[Ipv4Addr],
    ttl: Option<u32>,
    limit: Duration,
) -> Duration {
    let t0 = Instant::now();
    let mut last = None;
    loop {
        if let Ok(a) = dns::query_a(named.addr(), name) {
            let ttl_ok = ttl.is_none_or(|t| a.records.iter().all(|r| r.1 == t));
            if a.addresses() == want && ttl_ok {
                return t0.elapsed();
            }
            last = Some(a);
        }
        if !edns.is_running() || t0.elapsed() > limit {
            panic!(
                "{name}: wanted {want:?} (TTL {ttl:?}), last answer {last:?} after {:?}; \
                 external-dns running: {}\n--- external-dns log\n{}\n--- named log\n{}",
                t0.elapsed(),
                edns.is_running(),
                edns.log(),
                named.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn show_dig(named: &Named, name: &str, rtype: &str) {
    match dns::dig(named.addr(), name, rtype) {
        Some(out) => eprint!("{out}"),
        None => eprintln!("(dig not installed: apt-get install dnsutils)"),
    }
}

/// A DNSEndpoint `app.failover.test A 127.0.2.1 TTL 60` appears in BIND; moved to 127.0.2.2 the
/// answer follows (the time it takes is printed); a weighted pair (setIdentifier +
/// aws/weight) is admitted; deleting the object removes the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dnsendpoint_moves_a_record_in_bind() {
    let Some(external_dns) = lab_binaries() else {
        return;
    };
    let c = LabCluster::new().await;
    let plane = if c.real() { "real" } else { "embedded" };
    install_dnsendpoint_crd(&c.client).await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        c.client.clone(),
        &c.ns,
        &ApiResource {
            group: "externaldns.k8s.io".into(),
            version: "v1alpha1".into(),
            api_version: "externaldns.k8s.io/v1alpha1".into(),
            kind: "DNSEndpoint".into(),
            plural: "dnsendpoints".into(),
        },
    );

    let named = Named::start(ZONE).expect("named starts");
    let opts = ExternalDnsOptions {
        namespace: c.ns.clone(),
        owner_id: format!("lab-{}", c.ns),
        ..ExternalDnsOptions::new(&c.kubeconfig)
    };
    let mut edns = ExternalDns::start(&external_dns, &named, &opts).expect("external-dns starts");
    eprintln!(
        "dns lab ({plane} plane): named on {}, external-dns {} (interval {:?}, events, min sync {:?})",
        named.addr(),
        external_dns.display(),
        opts.interval,
        opts.min_event_sync_interval
    );

    let app = format!("app.{ZONE}");
    let first = Ipv4Addr::new(127, 0, 2, 1);
    let second = Ipv4Addr::new(127, 0, 2, 2);
    let created = api
        .create(
            &PostParams::default(),
            &dns_endpoint(
                "app",
                json!([{"dnsName": app, "recordType": "A", "recordTTL": 60, "targets": [first.to_string()]}]),
            ),
        )
        .await
        .expect("DNSEndpoint app");
    let appeared = until_answer(
        &named,
        &mut edns,
        &app,
        &[first],
        Some(60),
        Duration::from_secs(60),
    )
    .await;
    eprintln!("dns lab ({plane}): created -> answered {first} TTL 60 in {appeared:?}");
    show_dig(&named, &app, "A");
    // The TXT registry's ownership record (prefix "a-" for an A record).
    show_dig(&named, &format!("a-{app}"), "TXT");

    // ExternalDNS records what it has seen through the status subresource.
    let generation = created.metadata.generation;
    eventually(Duration::from_secs(30), || async {
        let o = api.get("app").await.ok()?;
        (o.data["status"]["observedGeneration"].as_i64() == generation).then_some(())
    })
    .await;

    // The move: the measured propagation is from the API write to named answering the new
    // address (ExternalDNS's event-triggered sync; its periodic --interval is the fallback).
    let t0 = Instant::now();
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"endpoints": [
            {"dnsName": app, "recordType": "A", "recordTTL": 60, "targets": [second.to_string()]}
        ]}})),
    )
    .await
    .expect("move the record");
    until_answer(
        &named,
        &mut edns,
        &app,
        &[second],
        Some(60),
        Duration::from_secs(60),
    )
    .await;
    let moved = t0.elapsed();
    eprintln!(
        "dns lab ({plane}): PROPAGATION {first} -> {second}: {:.2} s from the API write to named's answer",
        moved.as_secs_f64()
    );
    show_dig(&named, &app, "A");

    // A weighted pair (the runbook's gradual DNS failback) is admitted by the CRD schema. The
    // rfc2136 provider has no weights: what BIND ends up serving for it is printed, not judged.
    let w = format!("w.{ZONE}");
    api.create(
        &PostParams::default(),
        &dns_endpoint(
            "weighted",
            json!([
                {"dnsName": w, "recordType": "A", "recordTTL": 60, "targets": ["127.0.2.1"],
                 "setIdentifier": "primary", "providerSpecific": [{"name": "aws/weight", "value": "90"}]},
                {"dnsName": w, "recordType": "A", "recordTTL": 60, "targets": ["127.0.2.2"],
                 "setIdentifier": "backup", "providerSpecific": [{"name": "aws/weight", "value": "10"}]}
            ]),
        ),
    )
    .await
    .expect("a weighted pair is admitted");

    // Deleting the object removes the record.
    api.delete("app", &DeleteParams::default())
        .await
        .expect("delete app");
    until_answer(&named, &mut edns, &app, &[], None, Duration::from_secs(60)).await;
    eprintln!("dns lab ({plane}): deleted -> no A record for {app}");
    show_dig(&named, &w, "A");
    assert!(
        edns.is_running(),
        "external-dns still running:\n{}",
        edns.log()
    );
    drop(edns);
    drop(named);
    c.cleanup().await;
}
