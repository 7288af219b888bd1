//! Probing stays confined (issue 12, items 11–14), through the interfaces users have: the
//! Kubernetes API for the controller, the `check` command line, an HTTP request for /metrics.
//! The embedded control plane by default, a real cluster when `INGRESS_FAILOVER_KUBECONFIG` is
//! set (tests that need loopback addresses in EndpointSlices say so and return early there).
//!
//! No test here sends anything to a non-loopback address or asks DNS for anything: refusals are
//! asserted on names and addresses the operator must refuse before resolving or connecting.

#[path = "support/cluster.rs"]
mod cluster;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cluster::*;
use ingress_failover::api::{FailoverPolicyStatus, Phase, condition_types as ct, reasons};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const T: Duration = Duration::from_secs(20);

/// A loopback (or, on a real cluster, backend-IP) listener that answers every connection with
/// `200 OK` and counts connections: the test's witness that nobody probed it.
struct Witness {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Witness {
    async fn bind(addr: SocketAddr) -> Witness {
        let listener = TcpListener::bind(addr).await.expect("witness binds");
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                });
            }
        });
        Witness { addr, connections }
    }

    fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn real_cluster() -> bool {
    std::env::var_os("INGRESS_FAILOVER_KUBECONFIG").is_some()
}

/// The host address a real cluster can route to (`INGRESS_FAILOVER_TEST_BACKEND_IP`).
fn backend_ip() -> Option<IpAddr> {
    std::env::var("INGRESS_FAILOVER_TEST_BACKEND_IP")
        .ok()
        .and_then(|v| v.parse().ok())
}

/// Controller options with the narrow allowlist (127.0.8.0/24) on the embedded plane;
/// a real cluster keeps the harness's allowlist (its backend addresses).
fn narrow_options(env: &Env) -> ingress_failover::controller::Options {
    let mut opts = env.controller_options();
    if !real_cluster() {
        opts.rules.probe_allowlist = vec!["127.0.8.0/24".into()];
    }
    opts
}

/// A selectorless Service `name` and an EndpointSlice for it written by hand (as anyone allowed
/// to write EndpointSlices in the namespace may), listing `ips` on `port`.
async fn hand_written_slice(
    env: &Env,
    name: &str,
    ips: &[IpAddr],
    port: u16,
    managed_by: Option<&str>,
) {
    env.apply_json(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "http", "port": port, "targetPort": port}]}
    }))
    .await;
    let mut labels = json!({"kubernetes.io/service-name": name});
    if let Some(m) = managed_by {
        labels["endpointslice.kubernetes.io/managed-by"] = json!(m);
    }
    env.apply_json(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{name}-by-hand"), "labels": labels},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": ips.iter().map(|ip| json!({
            "addresses": [ip.to_string()], "conditions": {"ready": true}
        })).collect::<Vec<_>>()
    }))
    .await;
}

/// A policy whose primary pool is the Service `service` (no static address).
fn service_policy(name: &str, service: &str) -> Value {
    let mut p = policy(name, &[], json!({}));
    p["spec"]["backends"]["primary"] = json!({"service": {"name": service, "portName": "http"}});
    p
}

fn ready_message(s: &FailoverPolicyStatus) -> String {
    condition(s, ct::READY)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Asserts that, over a few probe intervals, no witness saw a connection and status reports
/// no endpoint at any of their addresses.
async fn assert_never_probed(env: &Env, name: &str, witnesses: &[&Witness]) {
    // Interval 1 s, first check within one interval: three intervals are plenty.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for w in witnesses {
        assert_eq!(w.count(), 0, "{} was probed", w.addr);
    }
    let s = env.status(name).await.expect("status");
    let port = witnesses[0].addr.port().to_string();
    assert!(
        s.endpoints.iter().all(|e| !e.address.ends_with(&port)),
        "refused endpoints must not be reported Up/Down: {:#?}",
        s.endpoints
    );
    assert!(
        env.published(&format!("{name}-healthy")).await.is_empty(),
        "nothing refused is published"
    );
}

/// Item 11: a selectorless Service plus a hand-written EndpointSlice is not a way to make the
/// operator probe (and report on) addresses of one's choosing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_written_endpointslice_is_not_probed() {
    let env = Env::start("confine-slice").await;
    let (first, second) = match backend_ip() {
        Some(ip) => (SocketAddr::new(ip, 0), None),
        None => ("127.0.0.1:0".parse().unwrap(), Some("127.0.9.9")),
    };
    let a = Witness::bind(first).await;
    let b = match second {
        Some(ip) => Some(Witness::bind(SocketAddr::new(ip.parse().unwrap(), a.addr.port())).await),
        None => None,
    };
    let ips: Vec<IpAddr> = std::iter::once(a.addr.ip())
        .chain(b.as_ref().map(|b| b.addr.ip()))
        .collect();
    hand_written_slice(&env, "evil", &ips, a.addr.port(), None).await;
    env.apply_json(service_policy("web", "evil")).await;
    let _controller = env.spawn_controller(narrow_options(&env)).await;

    env.wait_status("web", T, "reconciled", |s| s.observed_generation.is_some())
        .await;
    let witnesses: Vec<&Witness> = std::iter::once(&a).chain(b.as_ref()).collect();
    assert_never_probed(&env, "web", &witnesses).await;
    let s = env
        .wait_status("web", T, "the slice refused", |s| {
            ready_message(s).contains("evil-by-hand")
        })
        .await;
    let message = ready_message(&s);
    assert!(
        message.contains("refused") && message.contains("not by endpointslice-controller.k8s.io"),
        "{message}"
    );
    assert_eq!(
        condition(&s, ct::READY).map(|c| c.reason.as_str()),
        Some(reasons::PROBE_REFUSED)
    );
}

/// Item 11, second half: a slice that claims to be the EndpointSlice controller's (the label is
/// only a label) still obeys the deny rules: loopback outside the allowlist is refused, named
/// with its rule, never probed. Embedded plane only: a real apiserver refuses loopback addresses
/// in EndpointSlices itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_managed_slice_obeys_the_deny_rules() {
    if real_cluster() {
        return; // a real apiserver refuses loopback EndpointSlice addresses at admission
    }
    let env = Env::start("confine-forged").await;
    let a = Witness::bind("127.0.0.1:0".parse().unwrap()).await;
    let b = Witness::bind(SocketAddr::new([127, 0, 9, 10].into(), a.addr.port())).await;
    hand_written_slice(
        &env,
        "evil",
        &[a.addr.ip(), b.addr.ip()],
        a.addr.port(),
        Some("endpointslice-controller.k8s.io"),
    )
    .await;
    env.apply_json(service_policy("web", "evil")).await;
    let _controller = env.spawn_controller(narrow_options(&env)).await;

    env.wait_status("web", T, "reconciled", |s| s.observed_generation.is_some())
        .await;
    assert_never_probed(&env, "web", &[&a, &b]).await;
    let s = env
        .wait_status("web", T, "both addresses refused", |s| {
            let m = ready_message(s);
            m.contains(&a.addr.to_string()) && m.contains(&b.addr.to_string())
        })
        .await;
    let message = ready_message(&s);
    assert!(
        message.contains("loopback address not permitted by --probe-allowlist"),
        "{message}"
    );
    assert_eq!(
        condition(&s, ct::READY).map(|c| c.reason.as_str()),
        Some(reasons::PROBE_REFUSED)
    );
    assert!(
        !message.contains("connection") && !message.contains("refused (os error"),
        "no connect error leaks: {message}"
    );
}

/// Item 12: a static host name the allowlist does not name is refused as written, before the
/// operator ever resolves it (so `kubernetes.default.svc` cannot be probed or published).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_host_name_is_refused_before_resolution() {
    let env = Env::start("confine-name").await;
    let mut p = policy("web", &[], json!({}));
    p["spec"]["backends"]["primary"]["addresses"] = json!(["kubernetes.default.svc:443"]);
    env.apply_json(p).await;
    let _controller = env.spawn_controller(narrow_options(&env)).await;
    let s = env
        .wait_status("web", T, "InvalidSpec", |s| {
            condition(s, ct::READY).is_some_and(|c| c.reason == reasons::INVALID_SPEC)
        })
        .await;
    let message = ready_message(&s);
    assert!(
        message.contains("spec.backends.primary.addresses[0]")
            && message.contains("\"kubernetes.default.svc\" is not in --probe-allowlist"),
        "{message}"
    );
    assert_eq!(s.phase, Phase::Invalid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        env.published("web-healthy").await.is_empty(),
        "nothing published"
    );
    assert!(s.endpoints.is_empty(), "{:#?}", s.endpoints);
}

const CRLF_PATH: &str = "/healthz\r\nX-Injected: 1";

/// Item 13, the controller: a probe path that would inject a header line is Invalid (phase
/// Invalid, Ready=False/InvalidSpec naming the field, nothing published), as `check` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crlf_probe_path_is_invalid_for_the_controller() {
    let env = Env::start("confine-path").await;
    // Healthy backends inside the allowlist, on ports of their own (no clash with other suites).
    let host = backend_ip().unwrap_or([127, 0, 8, 1].into());
    let b = [
        Witness::bind(SocketAddr::new(host, 0)).await.addr,
        Witness::bind(SocketAddr::new(host, 0)).await.addr,
    ];
    env.apply_json(policy(
        "web",
        &b,
        json!({"probe": {"http": {"path": CRLF_PATH}}}),
    ))
    .await;
    let _controller = env.spawn_controller(narrow_options(&env)).await;
    let s = env
        .wait_status("web", T, "InvalidSpec", |s| {
            condition(s, ct::READY).is_some_and(|c| c.reason == reasons::INVALID_SPEC)
        })
        .await;
    assert!(
        ready_message(&s).contains("spec.probe.http.path"),
        "{}",
        ready_message(&s)
    );
    assert_eq!(s.phase, Phase::Invalid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.status("web").await.unwrap().phase, Phase::Invalid);
    assert!(
        env.published("web-healthy").await.is_empty(),
        "nothing published"
    );
}

/// Item 13, `check`: the same policy is refused on the command line, naming the same field.
#[test]
fn crlf_probe_path_is_invalid_for_check() {
    let dir = std::env::temp_dir().join(format!("confinement-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("crlf.yaml");
    let doc = json!({
        "apiVersion": "ingressfailover.io/v1alpha1", "kind": "FailoverPolicy",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "backends": {"primary": {"addresses": ["10.0.1.1:80"]}},
            "managedService": {"name": "web-failover"},
            "probe": {"http": {"path": CRLF_PATH}}
        }
    });
    // JSON is YAML: the CR/LF travel as escapes, exactly as a user would write them.
    std::fs::write(&file, doc.to_string()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ingress-failover"))
        .arg("check")
        .arg(&file)
        .output()
        .expect("run ingress-failover check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_ne!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("spec.probe.http.path"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- Item 14: secure metrics. ----

/// Accepts any server certificate (the controller's is self-signed and generated at start):
/// these tests are about who may read /metrics, not about certificate distribution.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An HTTPS GET on loopback with an optional bearer token: (status code, body).
async fn https_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.expect("request");
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf).await;
    http_response(&buf)
}

/// A ServiceAccount in the test's namespace and a token for it (TokenRequest).
async fn service_account_token(env: &Env, name: &str) -> String {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let api: kube::Api<ServiceAccount> = kube::Api::namespaced(env.client.clone(), &env.ns);
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&Default::default(), &sa)
        .await
        .expect("ServiceAccount created");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create_token_request(name, &Default::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .expect("token issued")
        .token
}

/// Grants `sa` the chart's `metrics-reader` rule (get on the non-resource URL /metrics) through a
/// ClusterRole and ClusterRoleBinding named after the test's namespace.
async fn grant_metrics_reader(env: &Env, sa: &str) {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let name = format!("{}-metrics-reader", env.ns);
    let roles: kube::Api<ClusterRole> = kube::Api::all(env.client.clone());
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    }))
    .unwrap();
    roles
        .create(&Default::default(), &role)
        .await
        .expect("ClusterRole created");
    let bindings: kube::Api<ClusterRoleBinding> = kube::Api::all(env.client.clone());
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": env.ns}]
    }))
    .unwrap();
    bindings
        .create(&Default::default(), &binding)
        .await
        .expect("ClusterRoleBinding created");
}

async fn revoke_metrics_reader(env: &Env) {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let name = format!("{}-metrics-reader", env.ns);
    let _ = kube::Api::<ClusterRoleBinding>::all(env.client.clone())
        .delete(&name, &Default::default())
        .await;
    let _ = kube::Api::<ClusterRole>::all(env.client.clone())
        .delete(&name, &Default::default())
        .await;
}

/// Item 14: with `--metrics-secure`, /metrics answers over HTTPS only, and only to a bearer
/// token the API server authenticates (TokenReview) for a user allowed `get /metrics`
/// (SubjectAccessReview); /healthz stays open for the kubelet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_metrics_need_an_authorized_token() {
    let env = Env::start("confine-metrics").await;
    let mut opts = env.controller_options();
    opts.metrics_secure =
        Some(ingress_failover::controller::secure_metrics::SecureMetrics::default());
    let controller = env.spawn_controller(opts).await;
    let addr = controller.running.metrics_addr;

    // Plain HTTP gets no metrics.
    let (code, body) = http_get(addr, "/metrics").await;
    assert_ne!(code, 200, "plain HTTP served metrics: {body}");
    assert!(!body.contains("ingress_failover"), "{body}");

    let (code, body) = https_get(addr, "/metrics", None).await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = https_get(addr, "/metrics", Some("not-a-token")).await;
    assert_eq!(code, 401, "{body}");

    let scraper = service_account_token(&env, "scraper").await;
    let stranger = service_account_token(&env, "stranger").await;
    grant_metrics_reader(&env, "scraper").await;
    let (code, body) = https_get(addr, "/metrics", Some(&stranger)).await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = https_get(addr, "/metrics", Some(&scraper)).await;
    revoke_metrics_reader(&env).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("ingress_failover"), "{body}");

    let (code, _) = https_get(addr, "/healthz", None).await;
    assert_eq!(code, 200, "the kubelet probes without a token");
}
