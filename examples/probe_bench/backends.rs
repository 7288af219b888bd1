//! The `serve` role: tiny HTTP backends on many loopback endpoints, killable on command.
//!
//! One single-threaded process serves a slice of endpoints (fd limits: a listener plus a
//! keep-alive connection per endpoint). Commands on stdin, one answer line each:
//! `count` → `count N` (requests served so far, the shared check counter for both probers);
//! `kill I J ...` → `killed T` (listeners and connections of those endpoints closed, unix time).
//! EOF on stdin ends the process.

use crate::common::{endpoint, now_unix};
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub fn serve(from: usize, to: usize) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let served = Arc::new(AtomicU64::new(0));
    let mut kills = Vec::with_capacity(to - from);
    rt.block_on(async {
        for i in from..to {
            let listener = TcpListener::bind(endpoint(i)).await?;
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
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        match words.next() {
            Some("count") => println!("count {}", served.load(Ordering::Relaxed)),
            Some("kill") => {
                for w in words {
                    if let Some(tx) = w.parse::<usize>().ok().and_then(|i| kills.get(i - from)) {
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
