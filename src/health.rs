//! The vocabulary shared by the prober (which measures) and the decision engine (which decides).
//!
//! A probe result is a *fact*: it says what one check observed and nothing about what should be
//! done. Keeping this type tiny and I/O-free lets the engine stay pure and lets the simulator
//! fabricate facts without a network.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a health check failed. Bounded on purpose: it becomes a metric label and a status field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FailureKind {
    /// The TCP connection was refused (nothing listening).
    Refused,
    /// No complete answer within the probe timeout.
    Timeout,
    /// An HTTP status outside the expected set.
    BadStatus,
    /// An answer arrived but slower than the configured maximum latency.
    TooSlow,
    /// The body did not contain the expected substring.
    BadBody,
    /// The peer reset or closed the connection mid-exchange.
    Reset,
    /// The peer answered with something that is not valid HTTP.
    Protocol,
    /// The target is outside the probe allowlist; it was never contacted.
    Disallowed,
    /// Any other local error (address resolution, socket exhaustion, ...).
    Other,
}

impl FailureKind {
    /// Every kind, in a stable order (for metrics pre-registration and tables).
    pub const ALL: [FailureKind; 9] = [
        FailureKind::Refused,
        FailureKind::Timeout,
        FailureKind::BadStatus,
        FailureKind::TooSlow,
        FailureKind::BadBody,
        FailureKind::Reset,
        FailureKind::Protocol,
        FailureKind::Disallowed,
        FailureKind::Other,
    ];

    /// Stable lower-case name used in metric labels and status messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::Timeout => "timeout",
            FailureKind::BadStatus => "bad_status",
            FailureKind::TooSlow => "too_slow",
            FailureKind::BadBody => "bad_body",
            FailureKind::Reset => "reset",
            FailureKind::Protocol => "protocol",
            FailureKind::Disallowed => "disallowed",
            FailureKind::Other => "other",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one health check against one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckOutcome {
    /// The check passed.
    Healthy,
    /// The check failed; `message` is short and ends up in the policy's status.
    Unhealthy { kind: FailureKind, message: String },
}

impl CheckOutcome {
    pub fn is_healthy(&self) -> bool {
        matches!(self, CheckOutcome::Healthy)
    }

    pub fn unhealthy(kind: FailureKind, message: impl Into<String>) -> Self {
        CheckOutcome::Unhealthy {
            kind,
            message: message.into(),
        }
    }
}
