//! `--metrics-secure`: `/metrics` over HTTPS, readable only by callers Kubernetes authenticates
//! and authorizes, as kubebuilder-generated operators serve it.
//!
//! Why: the metrics name every policy, backend address and failure; served in plain text to
//! anyone who can reach the pod, they map the cluster's failing backends for an attacker. The
//! caller presents a bearer token (a Prometheus ServiceAccount's); a TokenReview asks the API
//! server who it is, a SubjectAccessReview whether that user may `get` the non-resource URL
//! `/metrics` (the chart's `metrics-reader` ClusterRole grants exactly that). `/healthz` and
//! `/readyz` stay open on the same port: the kubelet probes them without a token, and they say
//! nothing but which caches have synced. The alternative without TLS — a NetworkPolicy that lets
//! only Prometheus reach the port — is described in docs/security.md.
//!
//! The certificate is `tls.crt`/`tls.key` from `--metrics-cert-dir` (a mounted TLS Secret, e.g.
//! cert-manager's), or a self-signed one generated at start (scrapers then skip verification,
//! as kubebuilder's default ServiceMonitor does).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// What `--metrics-secure` was given.
#[derive(Debug, Clone, Default)]
pub struct SecureMetrics {
    /// Directory holding `tls.crt` and `tls.key`; none: a self-signed certificate.
    pub cert_dir: Option<PathBuf>,
}

/// Why secure metrics could not start.
#[derive(Debug, thiserror::Error)]
pub enum SecureMetricsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("generating the self-signed metrics certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the metrics certificate and key do not make a TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// The server's TLS configuration: from `cert_dir`, or self-signed for `localhost`, this host's
/// name and the bound address.
pub fn tls_config(
    opts: &SecureMetrics,
    addr: SocketAddr,
) -> Result<Arc<rustls::ServerConfig>, SecureMetricsError> {
    let (chain, key) = match &opts.cert_dir {
        Some(dir) => read_pair(dir)?,
        None => {
            let mut names = vec!["localhost".to_string(), addr.ip().to_string()];
            if let Ok(host) = std::env::var("HOSTNAME") {
                names.push(host);
            }
            let certified = rcgen::generate_simple_self_signed(names)?;
            let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
            (vec![certified.cert.der().clone()], key)
        }
    };
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_pair(
    dir: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), SecureMetricsError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SecureMetricsError::Read { path, source }
    };
    let crt = dir.join("tls.crt");
    let chain = CertificateDer::pem_file_iter(&crt)
        .map_err(read_err(&crt))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err(&crt))?;
    let key_path = dir.join("tls.key");
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(read_err(&key_path))?;
    Ok((chain, key))
}

/// A TCP listener whose connections come out TLS-terminated. Handshakes run in their own tasks
/// (at most [`HANDSHAKE_TIMEOUT`] each), so a client that stalls mid-handshake delays nobody.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, accepted) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "metrics accept");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, sender) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics TLS handshake"),
                        Err(_) => tracing::debug!(%peer, "metrics TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { accepted, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(c) => c,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The non-resource URL and verb a caller must be allowed, as in kubebuilder's
/// `metrics-reader` ClusterRole.
pub const METRICS_PATH: &str = "/metrics";

/// How long a decision about one token is reused: a scrape every few seconds then costs two
/// API calls per interval at most, and a revoked permission takes effect within it.
const DECISION_TTL: Duration = Duration::from_secs(10);
/// Most decisions remembered; beyond that the cache starts over (bounded memory whatever
/// tokens callers invent).
const DECISION_CACHE: usize = 1024;

/// Checks bearer tokens with TokenReview and SubjectAccessReview.
pub struct Authorizer {
    client: Client,
    decisions: Mutex<HashMap<String, (Instant, StatusCode)>>,
}

impl Authorizer {
    pub fn new(client: Client) -> Self {
        Authorizer {
            client,
            decisions: Mutex::default(),
        }
    }

    /// `Ok` when the caller may read `/metrics`; otherwise the response to send: 401 without
    /// a valid token, 403 when authenticated but not authorized, 503 when the API server could
    /// not be asked (never an open door on error).
    pub async fn check(&self, headers: &HeaderMap) -> Result<(), Response> {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Err(deny(StatusCode::UNAUTHORIZED));
        };
        let cached = {
            let d = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
            d.get(token)
                .filter(|(at, _)| at.elapsed() < DECISION_TTL)
                .map(|(_, code)| *code)
        };
        let code = match cached {
            Some(code) => code,
            None => {
                let code = match self.decide(token).await {
                    Ok(code) => code,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics authentication or authorization failed");
                        return Err(deny(StatusCode::SERVICE_UNAVAILABLE));
                    }
                };
                let mut d = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
                if d.len() >= DECISION_CACHE {
                    d.clear();
                }
                d.insert(token.to_string(), (Instant::now(), code));
                code
            }
        };
        if code == StatusCode::OK {
            Ok(())
        } else {
            Err(deny(code))
        }
    }

    async fn decide(&self, token: &str) -> Result<StatusCode, kube::Error> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let status = reviewed.status.unwrap_or_default();
        let Some(user) = status.user.filter(|_| status.authenticated == Some(true)) else {
            return Ok(StatusCode::UNAUTHORIZED);
        };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                uid: user.uid,
                groups: user.groups,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(METRICS_PATH.into()),
                    verb: Some("get".into()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let decided = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access)
            .await?;
        Ok(if decided.status.is_some_and(|s| s.allowed) {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        })
    }
}

fn deny(code: StatusCode) -> Response {
    let message = match code {
        StatusCode::UNAUTHORIZED => {
            "Unauthorized: a bearer token Kubernetes authenticates is required\n"
        }
        StatusCode::FORBIDDEN => {
            "Forbidden: the caller may not get the non-resource URL /metrics\n"
        }
        _ => "the Kubernetes API could not authenticate or authorize the request; try again\n",
    };
    let mut r = (code, message).into_response();
    if code == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_come_from_the_directory_or_are_generated() {
        crate::install_crypto_provider();
        let addr: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        assert!(tls_config(&SecureMetrics::default(), addr).is_ok());

        let dir = std::env::temp_dir().join(format!("secure-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let opts = SecureMetrics {
            cert_dir: Some(dir.clone()),
        };
        // Missing files are an error naming the file, not a silent fallback.
        match tls_config(&opts, addr) {
            Err(SecureMetricsError::Read { path, .. }) => assert!(path.ends_with("tls.crt")),
            other => panic!("{other:?}"),
        }
        let pair = rcgen::generate_simple_self_signed(vec!["metrics.example".into()]).unwrap();
        std::fs::write(dir.join("tls.crt"), pair.cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), pair.signing_key.serialize_pem()).unwrap();
        assert!(tls_config(&opts, addr).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
