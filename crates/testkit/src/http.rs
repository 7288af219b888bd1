//! A minimal HTTP/1.1 client for loopback servers (metrics, health endpoints, the farm), so a
//! test reads a status code and a body without a client library.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` on `addr` with `Connection: close`: (status code, body); (0, "") when the
/// connection fails.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    response(&buf)
}

/// (status code, body) of a raw HTTP/1.1 response read to its end (0 when unparsable).
pub fn response(buf: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_to_code_and_body() {
        assert_eq!(
            response(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown"),
            (503, "down".to_string())
        );
        assert_eq!(response(b"garbage"), (0, String::new()));
    }
}
