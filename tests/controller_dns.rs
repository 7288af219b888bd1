//! The DNS tier (issue 14) through the Kubernetes API: the controller writes one ExternalDNS
//! `DNSEndpoint` per policy and moves it with the ingress tier. The embedded plane by default, a
//! real cluster when `INGRESS_FAILOVER_KUBECONFIG` is set; both admit `DNSEndpoint`s against the
//! vendored upstream CRD schema (`tests/data/crds/external-dns`), so every successful write here
//! (the weighted pair included) is a `DNSEndpoint` the upstream schema accepts.
//!
//! The last test is the end-to-end proof with real components: ExternalDNS (the pinned lab
//! build, rfc2136 provider) publishing what the operator writes into BIND 9 on loopback, queried
//! while the primary load balancer dies and heals. It needs `named` and the ExternalDNS build
//! (as `tests/dns_lab.rs`): without them it says so and passes, unless
//! `INGRESS_FAILOVER_DNS_LAB=1` (CI), in which case it fails.

#[path = "support/cluster.rs"]
mod cluster;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster::*;
use ingress_failover::api::{FailoverPolicyStatus, Phase, condition_types as ct, reasons};
use ingress_failover::controller::dns::DNSEndpoint;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use testkit::dns::{self, ExternalDns, ExternalDnsOptions, Named};
use testkit::farm::Behavior;

const T: Duration = Duration::from_secs(30);

/// ExternalDNS's DNSEndpoint CRD, vendored from the pinned module.
async fn install_dnsendpoint_crd(env: &Env) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/crds/external-dns/dnsendpoints.externaldns.k8s.io.yaml");
    testkit::crds::install(&env.client, &path, TEST_AGENT).await;
}

/// An Ingress tier in HotStandby with `spec.dns`, the DNSEndpoint CRD installed and the
/// controller started with `--dns-endpoints` (unless `flag` is false).
async fn dns_env(
    name: &str,
    dns: serde_json::Value,
    extra: serde_json::Value,
    flag: bool,
) -> (Env, SocketAddr) {
    dns_env_with(name, dns, extra, flag, Vec::new()).await
}

/// The same, with `objects` applied before the controller starts.
async fn dns_env_with(
    name: &str,
    dns: serde_json::Value,
    extra: serde_json::Value,
    flag: bool,
    objects: Vec<serde_json::Value>,
) -> (Env, SocketAddr) {
    let mut env = Env::start(name).await;
    install_dnsendpoint_crd(&env).await;
    for o in objects {
        env.apply_json(o).await;
    }
    let b = env.backends(2).await;
    let lb = env.backend_addr();
    env.set(lb, Behavior::Healthy).await;
    for o in ingress_objects("nginx-primary") {
        env.apply_json(o).await;
    }
    let mut spec = json!({"ingress": {"ingresses": ["web"], "primaryClass": "nginx-primary", "backupClass": "nginx-backup",
                           "mode": "HotStandby", "health": {"url": format!("http://{lb}/healthz")}},
                          "dns": dns});
    merge(&mut spec, extra);
    env.apply_json(policy("web", &b, spec)).await;
    let mut opts = env.controller_options();
    opts.dns_endpoints = flag;
    env.controller = Some(env.spawn_controller(opts).await);
    (env, lb)
}

async fn endpoint(env: &Env, policy: &str) -> Option<DNSEndpoint> {
    Api::<DNSEndpoint>::namespaced(env.client.clone(), &env.ns)
        .get_opt(&format!("{policy}-dns"))
        .await
        .ok()
        .flatten()
}

/// (setIdentifier, recordType, targets, TTL, provider-specific name=value) per record set.
type Sets = Vec<(String, String, Vec<String>, Option<i64>, Vec<String>)>;

fn sets(e: &DNSEndpoint) -> Sets {
    e.spec
        .endpoints
        .iter()
        .map(|r| {
            (
                r.set_identifier.clone(),
                r.record_type.clone(),
                r.targets.clone(),
                r.record_ttl,
                r.provider_specific
                    .iter()
                    .map(|p| format!("{}={}", p.name, p.value))
                    .collect(),
            )
        })
        .collect()
}

async fn wait_endpoint(env: &Env, what: &str, pred: impl Fn(&Sets) -> bool) -> DNSEndpoint {
    let deadline = Instant::now() + T;
    loop {
        let e = endpoint(env, "web").await;
        if let Some(e) = &e
            && pred(&sets(e))
        {
            return e.clone();
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for the DNSEndpoint: {what}; last: {:?}",
                e.as_ref().map(sets)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn atomic(target: &str, ttl: i64) -> impl Fn(&Sets) -> bool {
    let target = target.to_string();
    move |s: &Sets| {
        s.len() == 1
            && s[0].1 == "A"
            && s[0].2 == vec![target.clone()]
            && s[0].3 == Some(ttl)
            && s[0].0.is_empty()
    }
}

/// The controller's writes to DNSEndpoints so far, each one, from the embedded plane's log.
fn dns_writes(env: &Env) -> usize {
    env.cluster
        .as_ref()
        .expect("the write log is the embedded plane's")
        .audit_log()
        .writes()
        .iter()
        .filter(|w| w.resource == "dnsendpoints" && is_controller_agent(&w.user_agent))
        .count()
}

fn draining(s: &FailoverPolicyStatus) -> Option<(String, jiff::Timestamp)> {
    let d = s.dns.as_ref()?;
    Some((d.draining_tier.clone()?, d.draining_until.as_ref()?.0))
}

/// Atomic mode with the load balancers' addresses read from Ingress status: the source
/// Ingress's for the primary, the HotStandby mirror's for the backup. The record set follows
/// failover and failback, status says which tier drains until when, and nothing is written
/// while nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_endpoint_follows_the_active_tier_from_ingress_status() {
    let (env, lb) = dns_env(
        "dns-atomic",
        json!({"hostnames": ["shop.example.com"], "ttlSeconds": 3}),
        json!({}),
        true,
    )
    .await;
    // The load balancers publish their addresses in Ingress status (as ingress controllers do).
    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> =
        Api::namespaced(env.client.clone(), &env.ns);
    let set_lb = |name: &'static str, ip: &'static str| {
        let ingresses = ingresses.clone();
        async move {
            ingresses
                .patch_status(
                    name,
                    &PatchParams::apply("lb-controller").force(),
                    &Patch::Apply(
                        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                        "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}),
                    ),
                )
                .await
                .unwrap_or_else(|e| panic!("status of {name}: {e}"));
        }
    };
    set_lb("web", "192.0.2.10").await;
    eventually(T, || async {
        ingresses
            .get_opt("web-failover-backup")
            .await
            .ok()
            .flatten()
    })
    .await;
    set_lb("web-failover-backup", "192.0.2.20").await;

    let e = wait_endpoint(&env, "A 192.0.2.10 TTL 3", atomic("192.0.2.10", 3)).await;
    assert_eq!(e.spec.endpoints[0].dns_name, "shop.example.com");
    assert_eq!(
        e.labels()
            .get("ingressfailover.io/policy")
            .map(String::as_str),
        Some("web")
    );
    let owner = e.owner_references();
    assert_eq!(owner.len(), 1);
    assert_eq!(
        (owner[0].kind.as_str(), owner[0].name.as_str()),
        ("FailoverPolicy", "web")
    );
    env.wait_status("web", T, "Normal", |s| s.phase == Phase::Normal)
        .await;

    // Steady state: not one DNSEndpoint write (counted in the embedded plane's audit log).
    if env.cluster.is_some() {
        let before = dns_writes(&env);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(dns_writes(&env), before, "writes in steady state");
    }

    let before_failover = env.cluster.as_ref().map(|_| dns_writes(&env));
    env.set(lb, Behavior::Refuse).await;
    wait_endpoint(&env, "A 192.0.2.20 (backup)", atomic("192.0.2.20", 3)).await;
    if let Some(before) = before_failover {
        // One move, one write: the reconciles that follow (status, the cache catching up with
        // the write) write nothing more.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(dns_writes(&env) - before, 1, "writes for one failover");
    }
    let s = env
        .wait_status("web", T, "draining the primary", |s| draining(s).is_some())
        .await;
    let (tier, until) = draining(&s).unwrap();
    assert_eq!(tier, "primary");
    let failover = s
        .history
        .iter()
        .rev()
        .find(|h| h.action == "IngressFailover")
        .expect("failover in history")
        .time
        .0;
    let ttl = until.duration_since(failover).as_secs_f64();
    assert!(
        (3.0..=4.0).contains(&ttl),
        "drains one TTL (3 s) after the failover, rounded up to the second: {ttl}"
    );
    assert_eq!(s.dns.as_ref().unwrap().primary_weight_percent, 0);
    // `kubectl failover status` says it (the plugin's own rendering of the policy).
    let p = env.policies().get("web").await.expect("policy");
    if draining(p.status.as_ref().unwrap()).is_some() {
        let text = ingress_failover::plugin::status_text(&p, jiff::Timestamp::now());
        assert!(text.contains("primary tier draining until"), "{text}");
    }
    // The drain ends by itself (a deadline, not a poll).
    env.wait_status("web", T, "drain over", |s| {
        s.dns.as_ref().is_some_and(|d| d.draining_until.is_none())
    })
    .await;

    env.set(lb, Behavior::Healthy).await;
    wait_endpoint(&env, "A 192.0.2.10 again", atomic("192.0.2.10", 3)).await;
    // The write-ahead status says the decision first (InEffect=False, Applying), then that its
    // writes are done: wait for the second, not the first.
    env.wait_status("web", T, "draining the backup, in effect", |s| {
        draining(s).is_some_and(|(t, _)| t == "backup") && is_true(s, ct::IN_EFFECT)
    })
    .await;

    // Removing spec.dns hands the records back as they are, no longer owned; putting it back
    // takes them over again (they carry the policy's label).
    let policies = env.policies();
    policies
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{"op": "remove", "path": "/spec/dns"}])).unwrap(),
            ),
        )
        .await
        .expect("remove spec.dns");
    eventually(T, || async {
        endpoint(&env, "web")
            .await
            .filter(|e| e.owner_references().is_empty())
    })
    .await;
    policies
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"dns": {"hostnames": ["shop.example.com"], "ttlSeconds": 3}}}),
            ),
        )
        .await
        .expect("spec.dns back");
    eventually(T, || async {
        endpoint(&env, "web")
            .await
            .filter(|e| !e.owner_references().is_empty())
    })
    .await;

    // Deleting the policy hands the records back on the primary tier, no longer owned: the
    // garbage collector must not take away what clients resolve.
    env.delete_policy("web", T).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let e = endpoint(&env, "web")
        .await
        .expect("the DNSEndpoint outlives the policy");
    assert!(
        e.owner_references().is_empty(),
        "{:?}",
        e.owner_references()
    );
    assert!(atomic("192.0.2.10", 3)(&sets(&e)), "{:?}", sets(&e));
}

/// Weighted mode: two record sets with `aws/weight`, one per tier, following each failback
/// step. Each write was admitted by the DNSEndpoint CRD's schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_records_follow_each_failback_step() {
    let (env, lb) = dns_env(
        "dns-weighted",
        json!({"hostnames": ["shop.example.com"], "ttlSeconds": 2, "mode": "Weighted",
               "primaryTargets": ["192.0.2.10"], "backupTargets": ["lb-backup.example.net"]}),
        json!({"recovery": {"failbackSteps": [50], "stepSeconds": 2}}),
        true,
    )
    .await;
    let weights = |p: &'static str, b: &'static str| {
        move |s: &Sets| {
            s.len() == 2
                && s[0].0 == "primary"
                && s[0].1 == "A"
                && s[0].4 == vec![format!("aws/weight={p}")]
                && s[1].0 == "backup"
                && s[1].1 == "CNAME"
                && s[1].2 == vec!["lb-backup.example.net".to_string()]
                && s[1].4 == vec![format!("aws/weight={b}")]
        }
    };
    wait_endpoint(&env, "100/0", weights("100", "0")).await;
    env.set(lb, Behavior::Refuse).await;
    wait_endpoint(&env, "0/100", weights("0", "100")).await;
    env.set(lb, Behavior::Healthy).await;
    wait_endpoint(&env, "50/50", weights("50", "50")).await;
    let s = env
        .wait_status("web", T, "DNS weight 50 in status", |s| {
            s.dns
                .as_ref()
                .is_some_and(|d| d.primary_weight_percent == 50)
        })
        .await;
    assert_eq!(s.primary_weight_percent, Some(50));
    wait_endpoint(&env, "100/0 again", weights("100", "0")).await;
}

/// Without `--dns-endpoints` a policy with `spec.dns` says how to enable it and no DNSEndpoint
/// is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_a_dns_policy_is_not_ready_and_says_how_to_enable_it() {
    let (env, _lb) = dns_env(
        "dns-off",
        json!({"hostnames": ["shop.example.com"], "primaryTargets": ["192.0.2.10"], "backupTargets": ["192.0.2.20"]}),
        json!({}),
        false,
    )
    .await;
    let s = env
        .wait_status("web", T, "Ready=False", |s| {
            condition(s, ct::READY).is_some_and(|c| c.status == "False")
        })
        .await;
    let ready = condition(&s, ct::READY).unwrap();
    assert_eq!(ready.reason, reasons::DNS_ENDPOINTS_DISABLED);
    assert!(
        ready.message.contains("--dns-endpoints") && ready.message.contains("externalDNS.enabled"),
        "{}",
        ready.message
    );
    assert!(endpoint(&env, "web").await.is_none());
}

/// A DNSEndpoint of the same name that the policy did not create is not taken over: nothing is
/// written to it and `InEffect=False` names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_dnsendpoint_of_the_same_name_is_left_alone_and_named() {
    let foreign = json!({"apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint",
        "metadata": {"name": "web-dns"},
        "spec": {"endpoints": [{"dnsName": "other.example.com", "recordType": "A", "targets": ["198.51.100.7"]}]}});
    let (env, _lb) = dns_env_with(
        "dns-foreign",
        json!({"hostnames": ["shop.example.com"], "primaryTargets": ["192.0.2.10"], "backupTargets": ["192.0.2.20"]}),
        json!({}),
        true,
        vec![foreign],
    )
    .await;
    let s = env
        .wait_status("web", T, "InEffect=False naming the DNSEndpoint", |s| {
            condition(s, ct::IN_EFFECT)
                .is_some_and(|c| c.status == "False" && c.message.contains("web-dns"))
        })
        .await;
    let c = condition(&s, ct::IN_EFFECT).unwrap();
    assert!(
        c.message.contains("was not created by FailoverPolicy web"),
        "{}",
        c.message
    );
    let e = endpoint(&env, "web").await.expect("still there");
    assert_eq!(e.spec.endpoints[0].dns_name, "other.example.com");
    assert!(e.owner_references().is_empty());
    if env.cluster.is_some() {
        assert_eq!(dns_writes(&env), 0, "nothing written to it");
    }
}

/// The binaries the end-to-end needs, or why it cannot run (as `tests/dns_lab.rs`).
fn lab_binaries() -> Option<PathBuf> {
    dns::lab_binaries(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        "the DNS end-to-end (tests/controller_dns.rs)",
    )
}

/// Polls `named` every 50 ms until the A records of `name` are `want`, each with `ttl`.
async fn until_answer(
    named: &Named,
    edns: &mut ExternalDns,
    name: &str,
    want: &[Ipv4Addr],
    ttl: u32,
) {
    let t0 = Instant::now();
    let mut last = None;
    loop {
        if let Ok(a) = dns::query_a(named.addr(), name) {
            if a.addresses() == want && a.records.iter().all(|r| r.1 == ttl) {
                return;
            }
            last = Some(a);
        }
        if !edns.is_running() || t0.elapsed() > Duration::from_secs(60) {
            panic!(
                "{name}: wanted {want:?} TTL {ttl}, last answer {last:?}; external-dns running: {}\n--- external-dns log\n{}\n--- named log\n{}",
                edns.is_running(),
                edns.log(),
                named.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `dig @named name A +noall +answer`, or the same lines from the kit's client when dig is
/// missing.
fn dig(named: &Named, name: &str) -> String {
    if let Some(out) = dns::dig(named.addr(), name, "A") {
        return out;
    }
    match dns::query_a(named.addr(), name) {
        Ok(a) => a
            .records
            .iter()
            .map(|(ip, ttl)| format!("{name}.\t{ttl}\tIN\tA\t{ip}\n"))
            .collect(),
        Err(e) => format!(";; query failed: {e}\n"),
    }
}

/// The end-to-end: the real controller writes the DNSEndpoint, ExternalDNS publishes it into
/// BIND 9, and a DNS query follows the primary load balancer's death (the measured time from
/// its death to the changed answer is printed with `dig` before, during and after), then the
/// failback once it heals and the hold-down passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answer_moves_to_the_backup_when_the_primary_lb_dies_and_back_after_failback() {
    let Some(external_dns) = lab_binaries() else {
        return;
    };
    const ZONE: &str = "failover.test";
    let name = format!("app.{ZONE}");
    let (primary_ip, backup_ip) = (Ipv4Addr::new(127, 0, 2, 1), Ipv4Addr::new(127, 0, 2, 2));
    let ttl = 5;
    let (env, lb) = dns_env(
        "dns-e2e",
        json!({"hostnames": [name], "ttlSeconds": ttl,
               "primaryTargets": [primary_ip.to_string()], "backupTargets": [backup_ip.to_string()]}),
        json!({"recovery": {"holdDownSeconds": 3}}),
        true,
    )
    .await;
    let plane = if env.cluster.is_some() {
        "embedded"
    } else {
        "real"
    };
    // ExternalDNS reads the same API: the real cluster's kubeconfig, or the embedded plane's
    // written to disk.
    let dir = std::env::temp_dir().join(format!(
        "dns-e2e-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let kubeconfig = match (&env.cluster, std::env::var("INGRESS_FAILOVER_KUBECONFIG")) {
        (Some(dc), _) => {
            let path = dir.join("kubeconfig");
            dns::write_file(&path, &dc.kubeconfig_yaml()).expect("write kubeconfig");
            path
        }
        (None, Ok(path)) => PathBuf::from(path),
        (None, Err(_)) => unreachable!("a real cluster comes with INGRESS_FAILOVER_KUBECONFIG"),
    };
    let named = Named::start(ZONE).expect("named starts");
    let opts = ExternalDnsOptions {
        namespace: env.ns.clone(),
        owner_id: format!("e2e-{}", env.ns),
        ..ExternalDnsOptions::new(&kubeconfig)
    };
    let mut edns = ExternalDns::start(&external_dns, &named, &opts).expect("external-dns starts");
    eprintln!(
        "dns e2e ({plane} plane): named on {}, external-dns {} (interval {:?}, min event sync {:?}); policy TTL {ttl}s, hold-down 3 s, probe 1 s x fall 3",
        named.addr(),
        external_dns.display(),
        opts.interval,
        opts.min_event_sync_interval
    );

    until_answer(&named, &mut edns, &name, &[primary_ip], ttl).await;
    eprintln!("--- BEFORE:\n{}", dig(&named, &name));

    let died = Instant::now();
    env.set(lb, Behavior::Refuse).await;
    wait_endpoint(
        &env,
        "the backup's address",
        atomic(&backup_ip.to_string(), ttl.into()),
    )
    .await;
    let written = died.elapsed();
    until_answer(&named, &mut edns, &name, &[backup_ip], ttl).await;
    let moved = died.elapsed();
    eprintln!(
        "dns e2e ({plane}): FAILOVER primary LB died -> DNS answer {backup_ip} in {:.2} s \
         (DNSEndpoint written at {:.2} s: detection fall 3 x 1 s; then ExternalDNS -> BIND {:.2} s)",
        moved.as_secs_f64(),
        written.as_secs_f64(),
        (moved - written).as_secs_f64()
    );
    eprintln!("--- DURING:\n{}", dig(&named, &name));
    let s = env.status("web").await.expect("status");
    let d = s.dns.as_ref().expect("status.dns");
    eprintln!(
        "status.dns: primaryWeightPercent={} drainingTier={:?} drainingUntil={:?}",
        d.primary_weight_percent,
        d.draining_tier,
        d.draining_until.as_ref().map(|t| t.0.to_string())
    );

    let healed = Instant::now();
    env.set(lb, Behavior::Healthy).await;
    until_answer(&named, &mut edns, &name, &[primary_ip], ttl).await;
    let back = healed.elapsed();
    eprintln!(
        "dns e2e ({plane}): FAILBACK primary LB healed -> DNS answer {primary_ip} in {:.2} s (rise 2 checks at 1 s, hold-down 3 s, propagation)",
        back.as_secs_f64()
    );
    eprintln!("--- AFTER:\n{}", dig(&named, &name));
    assert!(
        back >= Duration::from_secs(3),
        "the failback waited for the hold-down: {back:?}"
    );
    assert!(
        edns.is_running(),
        "external-dns still running:\n{}",
        edns.log()
    );
    drop(edns);
    drop(named);
    let _ = std::fs::remove_dir_all(dir);
}

/// Deleted (Restore) while the records send clients to the backup: the records go back to the
/// primary at once, and the backup's HotStandby mirror keeps serving one TTL before it is
/// removed and the policy goes; status says the backup drains until when.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_while_failed_over_moves_the_records_first_and_keeps_the_backup_one_ttl() {
    let (env, lb) = dns_env(
        "dns-delete-drain",
        json!({"hostnames": ["shop.example.com"], "ttlSeconds": 4,
               "primaryTargets": ["192.0.2.10"], "backupTargets": ["192.0.2.20"]}),
        json!({}),
        true,
    )
    .await;
    wait_endpoint(&env, "on the primary", atomic("192.0.2.10", 4)).await;
    env.set(lb, Behavior::Refuse).await;
    wait_endpoint(&env, "on the backup", atomic("192.0.2.20", 4)).await;
    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> =
        Api::namespaced(env.client.clone(), &env.ns);
    let mirror = || async {
        ingresses
            .get_opt("web-failover-backup")
            .await
            .ok()
            .flatten()
            .is_some()
    };
    assert!(mirror().await, "the backup serves through its mirror");

    env.policies()
        .delete("web", &Default::default())
        .await
        .expect("delete the policy");
    wait_endpoint(&env, "records back on the primary", atomic("192.0.2.10", 4)).await;
    let moved = Instant::now();
    let s = env
        .wait_status("web", T, "the backup drains", |s| {
            draining(s).is_some_and(|(tier, _)| tier == "backup")
        })
        .await;
    assert_eq!(s.dns.unwrap().primary_weight_percent, 100);
    assert!(
        mirror().await,
        "the mirror still serves while resolvers may send clients there"
    );
    eventually(T, || async { (!mirror().await).then_some(()) }).await;
    let kept = moved.elapsed();
    assert!(
        kept >= Duration::from_millis(3_500),
        "the backup was kept {kept:?}, less than the 4 s TTL"
    );
    env.wait_policy_gone("web", T).await;
}
