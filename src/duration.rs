//! The one parser of durations people write: scenario files (`duration: 90m`, `at: +1h30m`,
//! `readyAfter: 2m`, `clockStep: -10m`) and `kubectl failover override --for 30m`. Built on
//! jiff's span parser, so every form jiff reads is accepted: the compact `45s`, `90m`, `2h`,
//! `1h30m`, `500ms`, `1d` (24 hours), the spelled-out `1 hour 30 minutes` or `1h 30m`, and ISO 8601
//! `PT1H30M`. A duration is never negative (a sign, where one is meaningful, is read by the
//! caller), and months and years are refused: their length depends on the date.

use jiff::{SignedDuration, Span, SpanRelativeTo};

/// A duration that does not parse, or is negative, or is in months or years.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a duration like 45s, 90m, 2h or 1h30m{why}")]
pub struct DurationError {
    input: String,
    /// What is wrong beyond the form (": must not be negative"), or nothing.
    why: String,
}

impl DurationError {
    fn new(input: &str, why: impl Into<String>) -> Self {
        DurationError {
            input: input.to_string(),
            why: why.into(),
        }
    }
}

/// Parses a non-negative duration (forms in the module documentation).
pub fn parse(text: &str) -> Result<SignedDuration, DurationError> {
    let trimmed = text.trim();
    let span: Span = trimmed
        .parse()
        .map_err(|_| DurationError::new(trimmed, ""))?;
    if span.is_negative() {
        return Err(DurationError::new(trimmed, ": must not be negative"));
    }
    if span.get_years() != 0 || span.get_months() != 0 {
        return Err(DurationError::new(
            trimmed,
            ": months and years have no fixed length; use days",
        ));
    }
    span.to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| DurationError::new(trimmed, ": too long"))
}

/// [`parse`], in whole milliseconds (the simulator's clock).
pub fn parse_millis(text: &str) -> Result<i64, DurationError> {
    let d = parse(text)?;
    i64::try_from(d.as_millis()).map_err(|_| DurationError::new(text.trim(), ": too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_people_write() {
        for (text, ms) in [
            ("45s", 45_000),
            ("90m", 5_400_000),
            ("2h", 7_200_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("1 hour 30 minutes", 5_400_000),
            ("PT1H30M", 5_400_000),
            ("250ms", 250),
            ("1d", 86_400_000),
            ("1m30s", 90_000),
            ("0s", 0),
            (" 10m ", 600_000),
        ] {
            assert_eq!(parse_millis(text), Ok(ms), "{text}");
        }
    }

    #[test]
    fn refusals_say_what_a_duration_looks_like() {
        for text in [
            "10",
            "m",
            "",
            "5x",
            "1mo",
            "1y",
            "-5s",
            "5s ago",
            "99999999999999999999h",
        ] {
            let err = parse_millis(text).expect_err(text).to_string();
            assert!(err.contains("is not a duration like 45s"), "{text}: {err}");
        }
        assert!(
            parse("-5s")
                .unwrap_err()
                .to_string()
                .ends_with("must not be negative")
        );
        assert!(parse("1mo").unwrap_err().to_string().contains("use days"));
    }
}
