//! Turning what the network did into a short, bounded fact.
//!
//! Error types from std and hyper are rich but unbounded (nested sources, OS text); the engine
//! and the status only need one [`FailureKind`] and a sentence an SRE can read at 3 AM. The
//! mapping lives in one place so every check type speaks the same language.

use super::wire::WireError;
use crate::health::{CheckOutcome, FailureKind};
use std::fmt::Write as _;
use std::io;
use std::time::Duration;

/// Longest `message` we emit; it is copied into status objects, which must stay small.
pub const MAX_MESSAGE: usize = 120;

/// Builds an `Unhealthy` outcome, cutting the message at a char boundary if needed.
pub fn failure(kind: FailureKind, mut message: String) -> CheckOutcome {
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE - 3;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    CheckOutcome::unhealthy(kind, message)
}

/// "5s", "1.5s", "812ms": compact and unambiguous.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    let mut s = String::new();
    if ms >= 1000 && ms.is_multiple_of(1000) {
        let _ = write!(s, "{}s", ms / 1000);
    } else if ms >= 1000 {
        let _ = write!(s, "{:.1}s", d.as_secs_f64());
    } else {
        let _ = write!(s, "{ms}ms");
    }
    s
}

pub fn timeout(limit: Duration) -> CheckOutcome {
    failure(
        FailureKind::Timeout,
        format!("no response within {}", human(limit)),
    )
}

pub fn too_slow(took: Duration, max: Duration) -> CheckOutcome {
    failure(
        FailureKind::TooSlow,
        format!("took {} > max {}", human(took), human(max)),
    )
}

/// Maps a socket-level error (connect, read, write).
pub fn from_io(e: &io::Error) -> CheckOutcome {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => failure(FailureKind::Refused, "connection refused".into()),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            failure(FailureKind::Reset, "connection reset by peer".into())
        }
        K::TimedOut => failure(FailureKind::Timeout, "connect timed out".into()),
        _ => failure(FailureKind::Other, format!("network error: {e}")),
    }
}

/// Maps a failure while reading the answer.
pub fn from_wire(e: &WireError) -> CheckOutcome {
    match e {
        WireError::Io(io) => from_io(io),
        WireError::Closed {
            received_any: false,
        } => failure(
            FailureKind::Reset,
            "connection closed before response".into(),
        ),
        WireError::Closed { received_any: true } => {
            failure(FailureKind::Reset, "connection closed mid-response".into())
        }
        WireError::Parse(what) => failure(
            FailureKind::Protocol,
            format!("invalid HTTP response: {what}"),
        ),
        WireError::HeadTooLarge => {
            failure(FailureKind::Protocol, format!("invalid HTTP response: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_short_and_readable() {
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_millis(812)), "812ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        let o = too_slow(Duration::from_millis(812), Duration::from_millis(500));
        assert_eq!(
            o,
            CheckOutcome::unhealthy(FailureKind::TooSlow, "took 812ms > max 500ms")
        );
        let long = failure(FailureKind::Other, "é".repeat(200));
        match long {
            CheckOutcome::Unhealthy { message, .. } => {
                assert!(message.len() <= MAX_MESSAGE);
                assert!(message.ends_with("..."));
            }
            CheckOutcome::Healthy => panic!("expected failure"),
        }
    }

    #[test]
    fn io_errors_map_to_kinds() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            from_io(&refused),
            CheckOutcome::Unhealthy {
                kind: FailureKind::Refused,
                ..
            }
        ));
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(matches!(
            from_io(&reset),
            CheckOutcome::Unhealthy {
                kind: FailureKind::Reset,
                ..
            }
        ));
    }
}
