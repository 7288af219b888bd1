//! What to check and how often: the prober's own configuration vocabulary.
//!
//! These types are deliberately independent of the CRD: the controller maps a `FailoverPolicy`
//! onto them, which keeps the prober testable without Kubernetes types and lets the CRD evolve
//! without touching the measuring code. Everything here is validated once, when built, so the
//! hot path never re-parses strings.

use http::Method;
use http::uri::PathAndQuery;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

/// Why a probe configuration was refused. Messages name the offending field so the controller
/// can copy them into `Ready=False, reason=InvalidSpec` unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("status ranges: {0:?} is not a status code or range like 200-399")]
    BadStatusRange(String),
    #[error("status ranges: at least one range is required")]
    NoStatusRange,
    #[error("path: {0:?} must start with '/' and be a valid request target")]
    BadPath(String),
    #[error("host header: {0:?} is not a valid header value")]
    BadHostHeader(String),
    #[error("interval must be at least 100ms, got {0:?}")]
    IntervalTooShort(Duration),
    #[error("timeout must be greater than zero")]
    ZeroTimeout,
    #[error("jitter must be within 0.0..=0.5, got {0}")]
    BadJitter(f64),
    #[error("targets: {0} appears more than once")]
    DuplicateTarget(String),
}

/// A set of acceptable HTTP status codes, written like `200-399,404`.
///
/// Ranges rather than a list because health endpoints disagree on 2xx vs 3xx and operators think
/// in ranges; the message of a failing check prints the set back in the same notation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRanges(Vec<RangeInclusive<u16>>);

impl StatusRanges {
    pub fn new(ranges: Vec<RangeInclusive<u16>>) -> Result<Self, ConfigError> {
        if ranges.is_empty() {
            return Err(ConfigError::NoStatusRange);
        }
        for r in &ranges {
            if r.start() > r.end() || *r.start() < 100 || *r.end() > 999 {
                return Err(ConfigError::BadStatusRange(format!(
                    "{}-{}",
                    r.start(),
                    r.end()
                )));
            }
        }
        Ok(StatusRanges(ranges))
    }

    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|r| r.contains(&status))
    }
}

impl Default for StatusRanges {
    /// 200-399, the same default as Kubernetes HTTP probes.
    fn default() -> Self {
        StatusRanges(vec![200..=399])
    }
}

impl FromStr for StatusRanges {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let mut ranges = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || ConfigError::BadStatusRange(part.to_string());
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim(), hi.trim()),
                None => (part, part),
            };
            let lo: u16 = lo.parse().map_err(|_| bad())?;
            let hi: u16 = hi.parse().map_err(|_| bad())?;
            ranges.push(lo..=hi);
        }
        StatusRanges::new(ranges)
    }
}

impl fmt::Display for StatusRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

/// An HTTP check. Plain HTTP/1.1 only: health URLs of backends and of the primary LB are
/// plain-text on the data-plane network; TLS probing would add a crypto provider to the hot
/// path for no observed need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub method: Method,
    /// Request target (origin-form), kept pre-parsed so building a request copies nothing.
    pub path: PathAndQuery,
    /// `Host` header; `None` sends the target's `host[:port]` as a browser would.
    pub host_header: Option<http::HeaderValue>,
    pub expected_status: StatusRanges,
    /// Optional substring that must appear in the first `ProberConfig::body_limit` bytes.
    pub body_contains: Option<Vec<u8>>,
}

impl HttpCheck {
    /// A GET of `path` expecting 200-399. The path rule is validation's
    /// ([`crate::validation::semantic::probe_path`]), so a path `check` accepts is one the
    /// prober sends.
    pub fn get(path: &str) -> Result<Self, ConfigError> {
        let path = crate::validation::semantic::probe_path(path)
            .map_err(|_| ConfigError::BadPath(path.into()))?;
        Ok(HttpCheck {
            method: Method::GET,
            path,
            host_header: None,
            expected_status: StatusRanges::default(),
            body_contains: None,
        })
    }

    pub fn with_host_header(mut self, host: &str) -> Result<Self, ConfigError> {
        let v = http::HeaderValue::from_str(host)
            .map_err(|_| ConfigError::BadHostHeader(host.to_string()))?;
        self.host_header = Some(v);
        Ok(self)
    }

    pub fn with_status(mut self, ranges: StatusRanges) -> Self {
        self.expected_status = ranges;
        self
    }

    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    pub fn with_body_contains(mut self, needle: impl Into<Vec<u8>>) -> Self {
        let needle = needle.into();
        self.body_contains = (!needle.is_empty()).then_some(needle);
        self
    }
}

/// The protocol of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// Connect, then close: "something accepts on that port".
    Tcp,
    Http(HttpCheck),
}

/// How and how often one target is checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    pub kind: CheckKind,
    /// Overrides the target's port, like a Kubernetes probe's `port` (health on a side port).
    pub port: Option<u16>,
    pub interval: Duration,
    /// Covers connect and the whole exchange: one number an SRE can reason about.
    pub timeout: Duration,
    /// A slower but otherwise good answer counts as `TooSlow`: a backend answering in 4 s is
    /// as useless to users as a dead one.
    pub max_latency: Option<Duration>,
    /// Each interval is stretched or shrunk by up to this fraction (0.0..=0.5) so targets that
    /// started together drift apart instead of beating in phase.
    pub jitter: f64,
}

impl CheckSpec {
    pub fn new(kind: CheckKind) -> Self {
        CheckSpec {
            kind,
            port: None,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            max_latency: None,
            jitter: 0.0,
        }
    }

    /// Rejects values that would make the scheduler misbehave (busy loops, zero timeouts).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < Duration::from_millis(100) {
            return Err(ConfigError::IntervalTooShort(self.interval));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return Err(ConfigError::BadJitter(self.jitter));
        }
        Ok(())
    }
}

/// Where a target lives: an IP (endpoints, static addresses) or a DNS name (an LB health URL),
/// parsed by the one address rule of [`crate::validation::address`].
pub use crate::validation::address::Host;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges_parse_and_print() {
        let r: StatusRanges = "200-399, 404".parse().unwrap();
        assert!(r.contains(200) && r.contains(399) && r.contains(404));
        assert!(!r.contains(400) && !r.contains(503));
        assert_eq!(r.to_string(), "200-399,404");
        assert!("".parse::<StatusRanges>().is_err());
        assert!("399-200".parse::<StatusRanges>().is_err());
        assert!("abc".parse::<StatusRanges>().is_err());
        assert!("42".parse::<StatusRanges>().is_err());
    }

    #[test]
    fn spec_validation() {
        let mut s = CheckSpec::new(CheckKind::Tcp);
        assert!(s.validate().is_ok());
        s.interval = Duration::from_millis(10);
        assert!(matches!(
            s.validate(),
            Err(ConfigError::IntervalTooShort(_))
        ));
        s.interval = Duration::from_secs(1);
        s.jitter = 0.9;
        assert!(matches!(s.validate(), Err(ConfigError::BadJitter(_))));
        assert!(HttpCheck::get("healthz").is_err());
        assert!(HttpCheck::get("/healthz\r\nX-Injected: 1").is_err());
        assert!(HttpCheck::get("/healthz?x=1").is_ok());
    }
}
