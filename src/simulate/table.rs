//! The terminal view: one aligned row per fact and decision, then a summary an SRE can paste
//! into an incident channel.

use std::io::{self, Write};

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};

use crate::engine::{Affected, Millis};

use super::run::{Row, Source, Timeline};

/// Widest AFFECTED column before long values simply push the reason to the right.
const MAX_AFFECTED: usize = 52;

pub fn write(t: &Timeline, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "Policy {}: {}",
        t.policy_name,
        t.description.as_deref().unwrap_or("(no description)")
    )?;
    writeln!(
        out,
        "Start {}, duration {}, {} engine steps, {} checks",
        wall_clock_full(t.start, t.offset),
        duration(t.end - t.start),
        t.summary.steps,
        t.summary.checks
    )?;
    writeln!(out)?;

    let cells: Vec<[String; 5]> = t
        .rows
        .iter()
        .map(|r| {
            [
                wall_clock(r.at, t.offset),
                offset(r.at - t.start),
                action(r),
                affected(r),
                r.reason.clone(),
            ]
        })
        .collect();
    let header = ["TIME", "OFFSET", "ACTION", "AFFECTED", "REASON"];
    let mut widths = header.map(str::len);
    for c in &cells {
        for (w, v) in widths.iter_mut().zip(c).take(4) {
            *w = (*w).max(v.chars().count());
        }
    }
    widths[3] = widths[3].min(MAX_AFFECTED);
    let line = |out: &mut dyn Write, c: [&str; 5]| -> io::Result<()> {
        let mut s = String::new();
        for (i, v) in c.iter().enumerate().take(4) {
            s.push_str(v);
            let pad = widths[i].saturating_sub(v.chars().count()) + 2;
            s.extend(std::iter::repeat_n(' ', pad));
        }
        s.push_str(c[4]);
        writeln!(out, "{}", s.trim_end())
    };
    line(out, header)?;
    for c in &cells {
        line(out, [&c[0], &c[1], &c[2], &c[3], &c[4]])?;
    }

    let s = &t.summary;
    writeln!(out)?;
    writeln!(out, "Summary")?;
    let total: u32 = s.counts.iter().map(|(_, n)| n).sum();
    let kv = |out: &mut dyn Write, k: &str, v: &str| writeln!(out, "  {k:<26}{v}");
    kv(out, "final phase", s.final_phase.as_str())?;
    kv(out, "operator actions", &total.to_string())?;
    for (kind, n) in &s.counts {
        writeln!(out, "    {:<24}{n}", kind.as_str())?;
    }
    if t.has_emergency_deployment {
        kv(
            out,
            "max emergency replicas",
            &format!(
                "{} (maxReplicas {})",
                s.max_emergency_replicas, t.max_replicas
            ),
        )?;
    }
    if t.has_ingress {
        kv(out, "time on backup class", &duration(s.backup_class_ms))?;
    }
    kv(out, "time in fail-open panic", &duration(s.panic_ms))?;
    kv(
        out,
        "empty endpoint set",
        &if s.empty_ms == 0 {
            "never".to_string()
        } else {
            duration(s.empty_ms)
        },
    )?;
    if s.violations.is_empty() {
        kv(out, "invariants", "all held")?;
    } else {
        kv(
            out,
            "invariants",
            &format!("{} VIOLATED", s.violations.len()),
        )?;
        for v in &s.violations {
            writeln!(out, "    {v}")?;
        }
    }
    Ok(())
}

fn action(r: &Row) -> String {
    match r.source {
        // Marked so the eye separates what happened from what the operator did.
        Source::Scenario => "» scenario".to_string(),
        Source::World => format!("· {}", r.action),
        Source::Engine => r.action.to_string(),
    }
}

/// The objects a row is about, in a few words.
pub fn affected(r: &Row) -> String {
    if let Some(t) = &r.target {
        return t.as_str().to_string();
    }
    match &r.affected {
        Affected::None => "-".to_string(),
        Affected::Endpoint { address, pool } => {
            if *pool == "primary" {
                address.clone()
            } else {
                format!("{address} ({pool})")
            }
        }
        Affected::Endpoints {
            added,
            removed,
            published,
        } => {
            // Name as many addresses as fit; count the rest.
            let tail = format!("= {published} published");
            let all: Vec<String> = added
                .iter()
                .map(|a| format!("+{a}"))
                .chain(removed.iter().map(|a| format!("-{a}")))
                .collect();
            let mut shown: Vec<&str> = Vec::new();
            let mut len = tail.len();
            for (i, p) in all.iter().enumerate() {
                let more = all.len() - i - 1;
                let reserve = if more > 0 { 10 } else { 0 };
                if len + p.len() + 1 + reserve > MAX_AFFECTED {
                    break;
                }
                len += p.len() + 1;
                shown.push(p);
            }
            let hidden_added = added.len().saturating_sub(shown.len());
            let hidden_removed = all.len() - shown.len() - hidden_added;
            let mut s = shown.join(" ");
            for (sign, n) in [('+', hidden_added), ('-', hidden_removed)] {
                if n > 0 {
                    s.push_str(&format!(" {sign}{n} more"));
                }
            }
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&tail);
            s
        }
        Affected::Replicas { from, to } => format!("replicas {from} → {to}"),
        Affected::Ingress {
            from_class,
            to_class,
            primary_weight_percent,
        } => {
            if from_class == to_class {
                format!("{to_class}, primary weight {primary_weight_percent}%")
            } else {
                format!("{from_class} → {to_class} (primary {primary_weight_percent}%)")
            }
        }
        Affected::Phase { from, to } => format!("{from} → {to}"),
    }
}

fn zoned(ms: Millis, offset: Offset) -> jiff::Zoned {
    Timestamp::from_millisecond(ms)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(TimeZone::fixed(offset))
}

/// `10:15:30` (or `10:15:30.250` off whole seconds) in the scenario's UTC offset.
pub fn wall_clock(ms: Millis, offset: Offset) -> String {
    let z = zoned(ms, offset);
    if ms % 1000 == 0 {
        z.strftime("%H:%M:%S").to_string()
    } else {
        format!("{}.{:03}", z.strftime("%H:%M:%S"), ms.rem_euclid(1000))
    }
}

/// `2026-11-29 10:00:00 +00:00`.
pub fn wall_clock_full(ms: Millis, offset: Offset) -> String {
    zoned(ms, offset)
        .strftime("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// `+0:15:00` since the scenario start.
pub fn offset(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let base = format!("+{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac == 0 {
        base
    } else {
        format!("{base}.{frac:03}")
    }
}

/// `1h05m`, `12m30s`, `45s`, `0s`.
pub fn duration(ms: Millis) -> String {
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, 0) => format!("{h}h{m:02}m"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(45_000), "45s");
        assert_eq!(duration(750_000), "12m30s");
        assert_eq!(duration(3_600_000), "1h00m");
        assert_eq!(duration(3_905_000), "1h05m05s");
        assert_eq!(offset(905_250), "+0:15:05.250");
    }
}
