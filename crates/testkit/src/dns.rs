//! The DNS failover lab: BIND 9's `named` serving one zone on `127.0.0.1:<free port>` with
//! dynamic updates signed by a TSIG key ([`Named`]), the pinned ExternalDNS build
//! (`scripts/real-cluster/external-dns`) writing that zone from `DNSEndpoint` objects through
//! RFC 2136 ([`ExternalDns`]), and a minimal DNS client to read the answers back ([`query_a`],
//! plus [`dig`] for people reading test output).
//!
//! Both processes run in their own temporary directory and are killed when their handle is
//! dropped (and the directory removed), or when the thread that started them exits (Linux
//! `PR_SET_PDEATHSIG`: a test killed outright leaves nothing behind). Nothing here talks to anything but loopback: `named` runs
//! with recursion off, no notify, no rndc channel, and listens on 127.0.0.1 only.
//!
//! Finding the binaries: `named` on `PATH` or in `/usr/sbin` (Debian's `bind9`, installed by
//! `scripts/install-tools.sh`); ExternalDNS from `INGRESS_FAILOVER_EXTERNAL_DNS`, else in the
//! cache `scripts/real-cluster.sh build` fills ([`find_external_dns`]).

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A TSIG key `named` accepts updates and zone transfers with.
#[derive(Clone, Debug)]
pub struct TsigKey {
    /// The key's name (a DNS name, without the trailing dot).
    pub name: String,
    /// The algorithm as both BIND and ExternalDNS spell it.
    pub algorithm: &'static str,
    /// The shared secret, base64.
    pub secret: String,
}

/// `named` serving one zone on loopback, killed on drop.
pub struct Named {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
    zone: String,
    key: TsigKey,
}

/// `command`, set to be killed with SIGKILL when the thread that spawns it exits (Linux), so a
/// test killed outright leaves no `named` or ExternalDNS behind; dropping the handle stops it
/// before that. Spawn from a thread that outlives the handle (a test's own thread, a runtime
/// worker), not from a short-lived one.
fn dies_with_parent(command: &mut Command) -> &mut Command {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    command
}

/// A fresh directory under the system's temporary directory.
fn temp_dir(what: &str) -> io::Result<PathBuf> {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "{what}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A port free for both TCP and UDP on 127.0.0.1 (named listens on both).
fn free_port() -> io::Result<u16> {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::other("no port free for both TCP and UDP"))
}

fn random_bytes(n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; n];
    fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Where a program is: on `PATH`, else in one of `extra` directories.
pub fn which(program: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// BIND's `named` (Debian installs it in /usr/sbin, often not on a user's PATH).
pub fn find_named() -> Option<PathBuf> {
    which("named", &["/usr/sbin", "/usr/local/sbin"])
}

impl Named {
    /// Starts `named` for `zone` (e.g. `failover.test`) on 127.0.0.1 at a free port and waits
    /// until it answers. The zone holds its SOA, `ns.<zone>` (127.0.0.1) and nothing else;
    /// updates and transfers need [`Named::key`].
    pub fn start(zone: &str) -> io::Result<Named> {
        let program = find_named().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "named (BIND 9) not found: install Debian's bind9 (scripts/install-tools.sh)",
            )
        })?;
        let zone = zone.trim_end_matches('.').to_string();
        let key = TsigKey {
            name: "failover-lab".into(),
            algorithm: "hmac-sha256",
            secret: base64(&random_bytes(32)?),
        };
        let mut last = io::Error::other("not started");
        // A port found free can be taken before named binds it: try a few.
        for _ in 0..3 {
            let dir = temp_dir("named")?;
            let port = free_port()?;
            match Self::spawn(&program, &dir, port, &zone, &key) {
                Ok(named) => return Ok(named),
                Err(e) => {
                    let _ = fs::remove_dir_all(&dir);
                    last = e;
                }
            }
        }
        Err(last)
    }

    fn spawn(program: &Path, dir: &Path, port: u16, zone: &str, key: &TsigKey) -> io::Result<Self> {
        let d = dir.display();
        let conf = format!(
            r#"options {{
  directory "{d}";
  pid-file "{d}/named.pid";
  session-keyfile "{d}/session.key";
  managed-keys-directory "{d}";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  notify no;
  dnssec-validation no;
  allow-query {{ 127.0.0.0/8; }};
}};
controls {{ }};
key "{kname}" {{ algorithm {alg}; secret "{secret}"; }};
zone "{zone}." {{
  type primary;
  file "zone.db";
  allow-update {{ key "{kname}"; }};
  allow-transfer {{ key "{kname}"; }};
}};
"#,
            kname = key.name,
            alg = key.algorithm,
            secret = key.secret,
        );
        fs::write(dir.join("named.conf"), conf)?;
        fs::write(
            dir.join("zone.db"),
            format!(
                "$TTL 60\n@ IN SOA ns.{zone}. hostmaster.{zone}. ( 1 60 60 3600 60 )\n\
                 @ IN NS ns.{zone}.\nns IN A 127.0.0.1\n"
            ),
        )?;
        let log = fs::File::create(dir.join("named.log"))?;
        // -g: foreground, log to stderr, no daemon; -n 1: one worker (a shared 2-core machine).
        // As root, named stays root (no -u): the directory is ours.
        let child = dies_with_parent(&mut Command::new(program))
            .arg("-g")
            .args(["-n", "1", "-c"])
            .arg(dir.join("named.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut named = Named {
            child,
            dir: dir.to_path_buf(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            zone: zone.to_string(),
            key: key.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let probe = format!("ns.{zone}");
        loop {
            if let Some(status) = named.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "named exited ({status}):\n{}",
                    named.log()
                )));
            }
            if let Ok(a) = query_a(named.addr, &probe)
                && a.addresses().contains(&Ipv4Addr::LOCALHOST)
            {
                return Ok(named);
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "named did not answer on {} within 20 s:\n{}",
                    named.addr,
                    named.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The zone it serves, without the trailing dot.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The TSIG key updates and transfers are signed with.
    pub fn key(&self) -> &TsigKey {
        &self.key
    }

    /// Its log so far (startup, every update it applied or refused).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("named.log")).unwrap_or_default()
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// ExternalDNS (the lab build) syncing `DNSEndpoint`s into a [`Named`] zone, killed on drop.
pub struct ExternalDns {
    child: Child,
    dir: PathBuf,
}

/// How ExternalDNS is run against the lab.
#[derive(Clone, Debug)]
pub struct ExternalDnsOptions {
    /// The kubeconfig it reads DNSEndpoints with.
    pub kubeconfig: PathBuf,
    /// `--txt-owner-id`: which records it owns (TXT registry).
    pub owner_id: String,
    /// `--interval`: the periodic sync.
    pub interval: Duration,
    /// `--min-event-sync-interval`: with `--events`, how soon a change is synced at most.
    pub min_event_sync_interval: Duration,
    /// `--namespace`: only DNSEndpoints there (empty: all namespaces).
    pub namespace: String,
    /// More flags, appended as given.
    pub extra_args: Vec<String>,
}

impl ExternalDnsOptions {
    /// Defaults for a test: owner `ingress-failover-lab`, a 2 s interval, events on with a 1 s
    /// minimum, all namespaces.
    pub fn new(kubeconfig: impl Into<PathBuf>) -> Self {
        ExternalDnsOptions {
            kubeconfig: kubeconfig.into(),
            owner_id: "ingress-failover-lab".into(),
            interval: Duration::from_secs(2),
            min_event_sync_interval: Duration::from_secs(1),
            namespace: String::new(),
            extra_args: Vec::new(),
        }
    }
}

fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl ExternalDns {
    /// Starts `binary` with `--source=crd --provider=rfc2136 --registry=txt`, the zone's TSIG
    /// key, AXFR to read the zone back, and `--domain-filter` set to the zone.
    pub fn start(binary: &Path, named: &Named, opts: &ExternalDnsOptions) -> io::Result<Self> {
        let dir = temp_dir("external-dns")?;
        let log = fs::File::create(dir.join("external-dns.log"))?;
        let key = named.key();
        let mut args = vec![
            "--source=crd".to_string(),
            "--crd-source-apiversion=externaldns.k8s.io/v1alpha1".into(),
            "--crd-source-kind=DNSEndpoint".into(),
            "--provider=rfc2136".into(),
            "--registry=txt".into(),
            // ExternalDNS v0.23 wants the policy explicit; sync: updates and deletions too.
            "--policy=sync".into(),
            format!("--txt-owner-id={}", opts.owner_id),
            format!("--kubeconfig={}", opts.kubeconfig.display()),
            format!("--domain-filter={}", named.zone()),
            format!("--interval={}", go_duration(opts.interval)),
            "--events".into(),
            format!(
                "--min-event-sync-interval={}",
                go_duration(opts.min_event_sync_interval)
            ),
            "--rfc2136-host=127.0.0.1".into(),
            format!("--rfc2136-port={}", named.port()),
            format!("--rfc2136-zone={}", named.zone()),
            format!("--rfc2136-tsig-keyname={}", key.name),
            format!("--rfc2136-tsig-secret={}", key.secret),
            format!("--rfc2136-tsig-secret-alg={}", key.algorithm),
            "--rfc2136-axfr".into(),
            "--log-level=debug".into(),
        ];
        if !opts.namespace.is_empty() {
            args.push(format!("--namespace={}", opts.namespace));
        }
        args.extend(opts.extra_args.iter().cloned());
        let child = dies_with_parent(&mut Command::new(binary))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(ExternalDns { child, dir })
    }

    /// Whether it is still running (it exits on a bad flag or an unreachable API).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("external-dns.log")).unwrap_or_default()
    }
}

impl Drop for ExternalDns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The ExternalDNS lab binary: `INGRESS_FAILOVER_EXTERNAL_DNS` if set, else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/ingress-failover/real-cluster/external-dns-<version>/external-dns`
/// with the version `repo_root`'s `scripts/real-cluster/external-dns/go.mod` pins.
/// `Err` says what was looked for.
pub fn find_external_dns(repo_root: &Path) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("INGRESS_FAILOVER_EXTERNAL_DNS") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "INGRESS_FAILOVER_EXTERNAL_DNS={} is not a file",
                p.display()
            ))
        };
    }
    let go_mod = repo_root.join("scripts/real-cluster/external-dns/go.mod");
    let text = fs::read_to_string(&go_mod).map_err(|e| format!("{}: {e}", go_mod.display()))?;
    let version = text
        .lines()
        .map(str::split_whitespace)
        .find_map(|mut w| match (w.next(), w.next(), w.next()) {
            (Some("require"), Some("sigs.k8s.io/external-dns"), Some(v)) => Some(v.to_string()),
            (Some("sigs.k8s.io/external-dns"), Some(v), _) => Some(v.to_string()),
            _ => None,
        })
        .ok_or_else(|| format!("no sigs.k8s.io/external-dns in {}", go_mod.display()))?;
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
    let p = cache.join(format!(
        "ingress-failover/real-cluster/external-dns-{version}/external-dns"
    ));
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: build it with scripts/real-cluster.sh build (or set INGRESS_FAILOVER_EXTERNAL_DNS)",
            p.display()
        ))
    }
}

/// One DNS answer: its response code and the A records in its answer section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// RCODE (0 NOERROR, 3 NXDOMAIN, ...).
    pub rcode: u8,
    /// Whether the server answered authoritatively (AA).
    pub authoritative: bool,
    /// (address, TTL in seconds) of each A record, in answer order.
    pub records: Vec<(Ipv4Addr, u32)>,
}

impl Answer {
    /// The addresses, sorted.
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        let mut a: Vec<_> = self.records.iter().map(|r| r.0).collect();
        a.sort();
        a
    }
}

/// Asks `server` (over UDP, 2 s timeout) for the A records of `name`.
pub fn query_a(server: SocketAddr, name: &str) -> io::Result<Answer> {
    let id = u16::from_be_bytes(random_bytes(2)?.try_into().unwrap());
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // no RD; one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad name"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, QTYPE A, QCLASS IN
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    sock.connect(server)?;
    sock.send(&q)?;
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf)?;
        let r = &buf[..n];
        if n >= 12 && r[..2] == id.to_be_bytes() {
            return parse_answer(r).ok_or_else(|| io::Error::other("malformed DNS response"));
        }
    }
}

fn skip_name(r: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *r.get(i)?;
        match len {
            0 => return Some(i + 1),
            l if l & 0xC0 == 0xC0 => return Some(i + 2),
            l => i += 1 + l as usize,
        }
    }
}

fn parse_answer(r: &[u8]) -> Option<Answer> {
    let u16_at = |i: usize| Some(u16::from_be_bytes([*r.get(i)?, *r.get(i + 1)?]));
    let flags = u16_at(2)?;
    let (qd, an) = (u16_at(4)?, u16_at(6)?);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(r, i)? + 4;
    }
    let mut records = Vec::new();
    for _ in 0..an {
        i = skip_name(r, i)?;
        let (rtype, class) = (u16_at(i)?, u16_at(i + 2)?);
        let ttl = u32::from_be_bytes(r.get(i + 4..i + 8)?.try_into().ok()?);
        let len = u16_at(i + 8)? as usize;
        let data = r.get(i + 10..i + 10 + len)?;
        if rtype == 1 && class == 1 && len == 4 {
            records.push((Ipv4Addr::new(data[0], data[1], data[2], data[3]), ttl));
        }
        i += 10 + len;
    }
    Some(Answer {
        rcode: (flags & 0x000F) as u8,
        authoritative: flags & 0x0400 != 0,
        records,
    })
}

/// `dig @127.0.0.1 -p PORT NAME TYPE +noall +answer` as people would type it, with its output;
/// `None` when dig is not installed (Debian's dnsutils).
pub fn dig(server: SocketAddr, name: &str, rtype: &str) -> Option<String> {
    let dig = which("dig", &[])?;
    let out = Command::new(dig)
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), name, rtype])
        .args(["+noall", "+answer", "+time=2", "+tries=1"])
        .output()
        .ok()?;
    let mut s = format!(
        "$ dig @{} -p {} {name} {rtype} +noall +answer\n",
        server.ip(),
        server.port()
    );
    s.push_str(&String::from_utf8_lossy(&out.stdout));
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    Some(s)
}

/// Writes `text` to `path` (a kubeconfig for ExternalDNS, say), creating parent directories.
pub fn write_file(path: &Path, text: &str) -> io::Result<()> {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p)?;
    }
    fs::File::create(path)?.write_all(text.as_bytes())
}

/// The ExternalDNS build the lab runs, once both it and `named` are found; otherwise says what
/// is missing and how to install it — a panic when `INGRESS_FAILOVER_DNS_LAB` is set (CI: the
/// lab must run), else a loud notice and None (`what` names the test that did not run).
pub fn lab_binaries(repo_root: &Path, what: &str) -> Option<PathBuf> {
    let mut missing = Vec::new();
    if find_named().is_none() {
        missing.push(
            "named (BIND 9): apt-get install bind9 dnsutils (scripts/install-tools.sh)".to_string(),
        );
    }
    let external_dns = find_external_dns(repo_root)
        .map_err(|e| missing.push(e))
        .ok();
    if missing.is_empty() {
        return external_dns;
    }
    let why = missing.join("\n  ");
    if std::env::var_os("INGRESS_FAILOVER_DNS_LAB").is_some() {
        panic!("INGRESS_FAILOVER_DNS_LAB is set but {what} cannot run:\n  {why}");
    }
    eprintln!(
        "\n!!! {what} SKIPPED: it did NOT run.\n  {why}\n\
         !!! Run scripts/install-tools.sh; set INGRESS_FAILOVER_DNS_LAB=1 to make this a failure.\n"
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    #[test]
    fn parses_an_answer_with_a_compressed_name() {
        // id, flags (QR AA, NOERROR), 1 question, 2 answers
        let mut r = vec![0x12, 0x34, 0x84, 0x00, 0, 1, 0, 2, 0, 0, 0, 0];
        r.extend_from_slice(b"\x03app\x08failover\x04test\x00\x00\x01\x00\x01");
        for (ip, ttl) in [([127, 0, 2, 1], 60u32), ([127, 0, 2, 2], 30)] {
            r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
            r.extend_from_slice(&ttl.to_be_bytes());
            r.extend_from_slice(&[0, 4]);
            r.extend_from_slice(&ip);
        }
        let a = parse_answer(&r).unwrap();
        assert_eq!(a.rcode, 0);
        assert!(a.authoritative);
        assert_eq!(
            a.records,
            vec![
                (Ipv4Addr::new(127, 0, 2, 1), 60),
                (Ipv4Addr::new(127, 0, 2, 2), 30)
            ]
        );
    }
}
