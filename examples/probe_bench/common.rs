//! Addressing and child-process plumbing shared by the bench roles.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// Endpoint `i` lives at 127.0.(1 + a/250).(1 + a%250):(20000 + i%100) with a = i/100: at most
/// 100 ports per address, ports below the ephemeral range, all inside 127.0.0.0/8.
pub fn endpoint(i: usize) -> SocketAddr {
    let a = i / 100;
    let ip = Ipv4Addr::new(127, 0, 1 + (a / 250) as u8, 1 + (a % 250) as u8);
    SocketAddr::new(ip.into(), 20000 + (i % 100) as u16)
}

/// A child speaking a line protocol on stdin/stdout. Killed on drop, so an early error in the
/// orchestrator never leaves a backend or prober behind; the children also exit on stdin EOF.
pub struct LineChild {
    pub child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl LineChild {
    pub fn spawn(mut cmd: Command, pidfile: &Path) -> std::io::Result<Self> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        record_pid(pidfile, child.id());
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(LineChild {
            child,
            stdin,
            stdout,
        })
    }

    pub fn read_line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "child exited",
            ));
        }
        Ok(line.trim_end().to_string())
    }

    /// Sends one command line and returns the one-line answer.
    pub fn ask(&mut self, line: &str) -> std::io::Result<String> {
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()?;
        self.read_line()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bash wrapper kills every PID listed here on exit, whatever happened to us.
pub fn record_pid(pidfile: &Path, pid: u32) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(pidfile)
    {
        let _ = writeln!(f, "{pid}");
    }
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32, clk_tck: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / clk_tck
}

/// Resident set size in KiB.
pub fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
