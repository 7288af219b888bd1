//! Addressing and child-process plumbing shared by the bench roles.

use std::net::{Ipv4Addr, SocketAddr};

pub use testkit::bulk::{LineChild, cpu_seconds, now_unix, record_pid, rss_kib};

/// Endpoint `i` lives at 127.0.(1 + a/250).(1 + a%250):(20000 + i%100) with a = i/100: at most
/// 100 ports per address, ports below the ephemeral range, all inside 127.0.0.0/8.
pub fn endpoint(i: usize) -> SocketAddr {
    let a = i / 100;
    let ip = Ipv4Addr::new(127, 0, 1 + (a / 250) as u8, 1 + (a % 250) as u8);
    SocketAddr::new(ip.into(), 20000 + (i % 100) as u16)
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}
