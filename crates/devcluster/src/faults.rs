//! Fault injection: what a real cluster cannot do on cue.
//!
//! Error rates per verb/resource (500, 429 with Retry-After, 409, 503), added latency, dropping
//! every open watch stream, and a full outage window (503 for everything, or refused
//! connections). Draws come from a seeded RNG, so a sequential client sees the same faults on
//! every run with the same seed.

use super::status::ApiError;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Injects an HTTP error on a share of matching requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorRule {
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, ...);
    /// `None` matches every verb.
    #[serde(default)]
    pub verb: Option<String>,
    /// Resource (`deployments`) or resource/subresource (`deployments/scale`); `None` = any.
    #[serde(default)]
    pub resource: Option<String>,
    /// 500, 429, 409 or 503.
    pub code: u16,
    /// Probability in [0, 1].
    pub rate: f64,
    /// Retry-After seconds for 429/503 (default 1).
    #[serde(default)]
    pub retry_after_seconds: Option<u64>,
}

/// Adds latency to matching requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyRule {
    /// Verb to match; `None` = any.
    #[serde(default)]
    pub verb: Option<String>,
    /// Resource to match; `None` = any.
    #[serde(default)]
    pub resource: Option<String>,
    /// Added delay.
    pub millis: u64,
}

/// The whole programmable fault configuration (also the JSON body of `POST /_devcluster/faults`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultConfig {
    /// Seed of the RNG that decides which requests fail.
    pub seed: u64,
    /// Error rules; the first matching rule that fires wins.
    pub errors: Vec<ErrorRule>,
    /// Latency rules; all matching delays add up.
    pub latency: Vec<LatencyRule>,
}

/// How an outage looks to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OutageMode {
    /// Every API request gets 503 ServiceUnavailable.
    Unavailable,
    /// The listening socket is closed, so new connections are refused; requests on
    /// connections that were already open get 503 and `Connection: close`.
    Refuse,
}

#[derive(Debug)]
struct Inner {
    config: FaultConfig,
    rng: fastrand::Rng,
    outage: Option<(Instant, OutageMode)>,
    injected: u64,
}

/// The fault switchboard of one DevCluster.
#[derive(Debug)]
pub struct Faults {
    inner: Mutex<Inner>,
    drops: watch::Sender<u64>,
    outages: watch::Sender<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                config: FaultConfig::default(),
                rng: fastrand::Rng::with_seed(0),
                outage: None,
                injected: 0,
            }),
            drops: watch::channel(0).0,
            outages: watch::channel(0).0,
        }
    }
}

fn matches(verb: &Option<String>, resource: &Option<String>, v: &str, r: &str) -> bool {
    let resource_ok = resource
        .as_deref()
        .is_none_or(|want| want == r || r.split('/').next() == Some(want) && !want.contains('/'));
    verb.as_deref().is_none_or(|want| want == v) && resource_ok
}

/// What the server must do with one request.
#[derive(Debug, Default)]
pub struct Decision {
    /// Sleep this long first.
    pub delay: Duration,
    /// Then fail with this error.
    pub error: Option<ApiError>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the configuration and reseeds the RNG.
    pub fn set(&self, config: FaultConfig) {
        let mut g = self.lock();
        g.rng = fastrand::Rng::with_seed(config.seed);
        g.config = config;
    }

    /// The current configuration.
    pub fn get(&self) -> FaultConfig {
        self.lock().config.clone()
    }

    /// Removes all error/latency rules and ends any outage.
    pub fn clear(&self) {
        {
            let mut g = self.lock();
            g.config = FaultConfig::default();
            g.outage = None;
        }
        self.outages.send_modify(|n| *n += 1);
    }

    /// Starts an outage of `duration`; open watches are dropped.
    pub fn outage(&self, duration: Duration, mode: OutageMode) {
        self.lock().outage = Some((Instant::now() + duration, mode));
        self.outages.send_modify(|n| *n += 1);
        self.drop_watches();
    }

    /// Ends an outage early.
    pub fn end_outage(&self) {
        self.lock().outage = None;
        self.outages.send_modify(|n| *n += 1);
    }

    /// Fires whenever an outage starts or ends early.
    pub fn outage_signal(&self) -> watch::Receiver<u64> {
        self.outages.subscribe()
    }

    /// When the current `Refuse` outage ends, if one is on.
    pub fn refusing_until(&self) -> Option<Instant> {
        match self.lock().outage {
            Some((until, OutageMode::Refuse)) if Instant::now() < until => Some(until),
            _ => None,
        }
    }

    /// The outage mode, while an outage lasts.
    pub fn outage_mode(&self) -> Option<OutageMode> {
        let mut g = self.lock();
        match g.outage {
            Some((until, mode)) if Instant::now() < until => Some(mode),
            Some(_) => {
                g.outage = None;
                None
            }
            None => None,
        }
    }

    /// Ends every open watch stream (clients see the stream close and must re-watch).
    pub fn drop_watches(&self) {
        self.drops.send_modify(|n| *n += 1);
    }

    /// Fires whenever watches must be dropped.
    pub fn drop_signal(&self) -> watch::Receiver<u64> {
        self.drops.subscribe()
    }

    /// How many errors were injected so far (outages not counted).
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// Decides the fate of one API request.
    pub fn decide(&self, verb: &str, resource: &str) -> Decision {
        if self.outage_mode().is_some() {
            return Decision {
                delay: Duration::ZERO,
                error: Some(ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(503, "ServiceUnavailable", "devcluster: injected API outage")
                }),
            };
        }
        let mut g = self.lock();
        let delay = g
            .config
            .latency
            .iter()
            .filter(|l| matches(&l.verb, &l.resource, verb, resource))
            .map(|l| Duration::from_millis(l.millis))
            .sum();
        let rules: Vec<ErrorRule> = g
            .config
            .errors
            .iter()
            .filter(|r| matches(&r.verb, &r.resource, verb, resource))
            .cloned()
            .collect();
        for rule in rules {
            if g.rng.f64() < rule.rate {
                g.injected += 1;
                let retry = rule.retry_after_seconds.unwrap_or(1);
                let error = match rule.code {
                    429 => ApiError {
                        retry_after: Some(retry),
                        ..ApiError::new(429, "TooManyRequests", "devcluster: injected rate limit")
                    },
                    409 => ApiError::new(
                        409,
                        "Conflict",
                        "Operation cannot be fulfilled: devcluster: injected conflict; please apply your changes to the latest version and try again",
                    ),
                    503 => ApiError {
                        retry_after: Some(retry),
                        ..ApiError::new(
                            503,
                            "ServiceUnavailable",
                            "devcluster: injected unavailability",
                        )
                    },
                    code => {
                        ApiError::new(code, "InternalError", "devcluster: injected internal error")
                    }
                };
                return Decision {
                    delay,
                    error: Some(error),
                };
            }
        }
        Decision { delay, error: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(code: u16, rate: f64) -> ErrorRule {
        ErrorRule {
            verb: Some("get".into()),
            resource: Some("pods".into()),
            code,
            rate,
            retry_after_seconds: Some(7),
        }
    }

    #[test]
    fn seeded_rates_are_deterministic_and_scoped() {
        let run = || {
            let f = Faults::default();
            f.set(FaultConfig {
                seed: 42,
                errors: vec![rule(500, 0.5)],
                latency: vec![],
            });
            (0..64)
                .map(|_| f.decide("get", "pods").error.is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let hits = a.iter().filter(|x| **x).count();
        assert!((16..48).contains(&hits), "{hits}");
        let f = Faults::default();
        f.set(FaultConfig {
            seed: 1,
            errors: vec![rule(500, 1.0)],
            latency: vec![],
        });
        assert!(f.decide("list", "pods").error.is_none());
        assert!(f.decide("get", "services").error.is_none());
        assert!(f.decide("get", "pods/status").error.is_some());
    }

    #[test]
    fn throttling_carries_retry_after_and_outage_expires() {
        let f = Faults::default();
        f.set(FaultConfig {
            seed: 1,
            errors: vec![rule(429, 1.0)],
            latency: vec![LatencyRule {
                verb: None,
                resource: None,
                millis: 5,
            }],
        });
        let d = f.decide("get", "pods");
        assert_eq!(d.delay, Duration::from_millis(5));
        let e = d.error.unwrap();
        assert_eq!((e.code, e.retry_after), (429, Some(7)));
        f.outage(Duration::from_millis(30), OutageMode::Unavailable);
        assert_eq!(f.decide("list", "services").error.unwrap().code, 503);
        std::thread::sleep(Duration::from_millis(40));
        assert!(f.outage_mode().is_none());
    }
}
