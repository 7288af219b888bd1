//! HAProxy as the peer: configuration with the same interval/fall, and its stats socket.

use crate::common::{endpoint, record_pid};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Haproxy {
    child: Child,
    pub socket: PathBuf,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `inter 1s fall 3 rise 2` with `option httpchk`: the settings the prober mirrors.
fn config(servers: std::ops::Range<usize>, socket: &Path) -> String {
    let mut c = format!(
        "global\n    maxconn 2000\n    stats socket {} mode 600 level admin\n\
         defaults\n    mode http\n    timeout connect 1s\n    timeout check 1s\n\
         \x20   timeout client 10s\n    timeout server 10s\n\
         backend probe\n    option httpchk GET /healthz\n    http-check expect status 200\n\
         \x20   default-server inter 1s fall 3 rise 2\n",
        socket.display()
    );
    for i in servers {
        c.push_str(&format!("    server s{i} {} check\n", endpoint(i)));
    }
    c
}

impl Haproxy {
    /// Starts HAProxy in the foreground and waits until its stats socket lists every server.
    pub fn start(
        bin: &str,
        dir: &Path,
        name: &str,
        servers: std::ops::Range<usize>,
        pidfile: &Path,
    ) -> std::io::Result<Haproxy> {
        let socket = dir.join(format!("{name}.sock"));
        let cfg = dir.join(format!("{name}.cfg"));
        let _ = std::fs::remove_file(&socket);
        let expected = servers.len();
        std::fs::write(&cfg, config(servers, &socket))?;
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        record_pid(pidfile, child.id());
        let h = Haproxy { child, socket };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(states) = h.view().server_states()
                && states.len() == expected
            {
                return Ok(h);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(std::io::Error::other(format!(
            "haproxy {name} not ready, see {}",
            dir.join(format!("{name}.log")).display()
        )))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn view(&self) -> StatsView {
        StatsView(self.socket.clone())
    }
}

/// A handle on the stats socket that can move to a polling thread.
pub struct StatsView(pub PathBuf);

impl StatsView {
    /// `show stat` → server name → status ("UP", "DOWN", "UP 1/3", ...).
    pub fn server_states(&self) -> std::io::Result<HashMap<String, String>> {
        let mut s = UnixStream::connect(&self.0)?;
        s.write_all(b"show stat\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let mut lines = out.lines();
        let header = lines
            .next()
            .ok_or_else(|| std::io::Error::other("empty stats"))?;
        let cols: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
        let col = |n: &str| cols.iter().position(|c| *c == n);
        let (Some(sv), Some(st)) = (col("svname"), col("status")) else {
            return Err(std::io::Error::other("unexpected stats header"));
        };
        Ok(lines
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                let (name, status) = (f.get(sv)?, f.get(st)?);
                (name.starts_with('s') && *name != "svname")
                    .then(|| (name.to_string(), status.to_string()))
            })
            .filter(|(n, _)| n[1..].parse::<usize>().is_ok())
            .collect())
    }
}
