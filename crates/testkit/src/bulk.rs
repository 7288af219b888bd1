//! Many tiny HTTP backends in one process, killable on command: the load of the benchmarks
//! (`benches/scale.rs`, `examples/probe_bench`).
//!
//! A [`crate::farm::Farm`] switches behaviours and logs every request, which costs memory and a
//! lock per request; at tens of thousands of endpoints the benchmarks need the opposite: one
//! listener and one connection task per endpoint, a shared request counter and nothing else.
//! Each endpoint answers `200 ok` to any request; HTTP/1.0 (HAProxy's `option httpchk`) gets a
//! close, HTTP/1.1 keeps the connection. A killed endpoint closes its listener and every
//! connection, as a crashed backend would (the next check is refused).
//!
//! [`serve_stdio`] runs the line protocol a parent benchmark drives through stdin/stdout:
//! `ready` once every listener is bound, then one answer per command: `count` → `count N`
//! (requests served so far), `kill I J ...` → `killed T` (endpoints by index, unix time after
//! their sockets are closed). EOF on stdin ends the process.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Serves `endpoints` (endpoint `first + k` is `endpoints[k]`) on a single-threaded runtime
/// and answers commands on stdin until EOF, then exits the process.
pub fn serve_stdio(first: usize, endpoints: &[SocketAddr]) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let served = Arc::new(AtomicU64::new(0));
    let mut kills = Vec::with_capacity(endpoints.len());
    rt.block_on(async {
        for addr in endpoints {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("binding {addr}: {e}")))?;
            let (tx, rx) = watch::channel(false);
            kills.push(tx);
            tokio::spawn(accept_loop(listener, rx, served.clone()));
        }
        Ok::<(), std::io::Error>(())
    })?;
    println!("ready");

    // Commands are read on this thread while the runtime serves on another.
    let rt_thread = std::thread::spawn(move || {
        rt.block_on(std::future::pending::<()>());
    });
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        match words.next() {
            Some("count") => println!("count {}", served.load(Ordering::Relaxed)),
            Some("kill") => {
                for w in words {
                    let k = w.parse::<usize>().ok().and_then(|i| i.checked_sub(first));
                    if let Some(tx) = k.and_then(|k| kills.get(k)) {
                        let _ = tx.send(true);
                    }
                }
                // Let the runtime thread drop the sockets before stamping the time.
                std::thread::sleep(std::time::Duration::from_millis(1));
                println!("killed {:.6}", now_unix());
            }
            _ => println!("error unknown command"),
        }
    }
    drop(rt_thread);
    std::process::exit(0);
}

/// Seconds since the Unix epoch, for timestamps compared across processes.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

async fn accept_loop(
    listener: TcpListener,
    mut killed: watch::Receiver<bool>,
    served: Arc<AtomicU64>,
) {
    loop {
        tokio::select! {
            _ = killed.changed() => return,
            accepted = listener.accept() => {
                if let Ok((sock, _)) = accepted {
                    let _ = sock.set_nodelay(true);
                    tokio::spawn(connection(sock, killed.clone(), served.clone()));
                }
            }
        }
    }
}

async fn connection(
    mut sock: TcpStream,
    mut killed: watch::Receiver<bool>,
    served: Arc<AtomicU64>,
) {
    let mut buf = [0u8; 2048];
    let mut filled = 0;
    loop {
        let n = tokio::select! {
            _ = killed.changed() => return,
            r = sock.read(&mut buf[filled..]) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
        };
        filled += n;
        let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
            if filled == buf.len() {
                return;
            }
            continue;
        };
        let head = &buf[..end];
        // HTTP/1.0 (HAProxy's httpchk) gets one answer and a close; 1.1 keeps the connection.
        let close = head.windows(8).any(|w| w == b"HTTP/1.0");
        served.fetch_add(1, Ordering::Relaxed);
        let answer: &[u8] = if close {
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        };
        if sock.write_all(answer).await.is_err() || close {
            return;
        }
        buf.copy_within(end + 4..filled, 0);
        filled -= end + 4;
    }
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
