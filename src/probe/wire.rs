//! Reading one HTTP/1.1 response off a socket, with a small reusable buffer.
//!
//! A probe uses a sliver of HTTP/1.1: it sends one bodiless request and reads one response
//! (status, framing, a bounded body prefix) on a connection it owns. A general client such as
//! hyper pays for the rest on every idle connection — an 8 KiB write buffer, a read buffer, a
//! driver task and channels — which measured at ~19 KiB per endpoint, 3× HAProxy. Here an idle
//! connection costs the socket plus a 1 KiB buffer, and the head is parsed by `httparse`, the
//! same parser hyper uses, so framing rules stay strict: conflicting lengths, bad chunk sizes
//! and oversized heads are protocol errors, never guesses.

use std::io;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Initial (and resting) buffer size: a typical health response fits in one read.
pub const INITIAL_BUFFER: usize = 1024;
/// Longest response head accepted; health endpoints have no business sending more.
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection; `received_any` tells an idle close from a cut answer.
    #[error("connection closed")]
    Closed { received_any: bool },
    #[error("{0}")]
    Parse(&'static str),
    #[error("response head exceeds {MAX_HEAD} bytes")]
    HeadTooLarge,
}

/// How the body of a response is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    /// Whether the connection may carry another request once the body is consumed.
    pub keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    Complete {
        read: u64,
    },
    /// The limit was reached first; the rest is left unread (connection unusable).
    Truncated {
        read: u64,
    },
}

/// A read buffer: bytes `start..end` of `buf` are received but not yet consumed.
#[derive(Debug, Default)]
pub struct Wire {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    received_any: bool,
}

impl Wire {
    /// Forgets buffered bytes (new connection) and gives back memory a big answer took.
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.received_any = false;
        if self.buf.len() > 4 * INITIAL_BUFFER {
            self.buf = vec![0; INITIAL_BUFFER];
            self.buf.shrink_to_fit();
        }
    }

    pub fn received_any(&self) -> bool {
        self.received_any
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads more bytes, compacting or growing (up to `MAX_HEAD`) when the buffer is full.
    async fn fill(&mut self, s: &mut TcpStream) -> Result<(), WireError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.is_empty() {
            self.buf = vec![0; INITIAL_BUFFER];
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_HEAD {
                let grown = (self.buf.len() * 2).min(MAX_HEAD);
                self.buf.resize(grown, 0);
            } else {
                return Err(WireError::HeadTooLarge);
            }
        }
        let n = s.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(WireError::Closed {
                received_any: self.received_any,
            });
        }
        self.received_any = true;
        self.end += n;
        Ok(())
    }

    /// Reads a response head, skipping interim 1xx answers.
    pub async fn read_head(
        &mut self,
        s: &mut TcpStream,
        head_request: bool,
    ) -> Result<Head, WireError> {
        loop {
            let parsed = {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut res = httparse::Response::new(&mut headers);
                match res.parse(self.buffered()) {
                    Ok(httparse::Status::Complete(len)) => {
                        Some((len, interpret(&res, head_request)?))
                    }
                    Ok(httparse::Status::Partial) => None,
                    Err(httparse::Error::TooManyHeaders) => {
                        return Err(WireError::Parse("too many headers"));
                    }
                    Err(_) => return Err(WireError::Parse(parse_error(self.buffered()))),
                }
            };
            match parsed {
                Some((len, head)) => {
                    self.start += len;
                    match head {
                        Some(h) => return Ok(h),
                        None => continue, // 1xx: the real answer follows.
                    }
                }
                None => self.fill(s).await?,
            }
        }
    }

    /// Consumes the body per `framing`, copying at most `limit` bytes into `sink` (when given)
    /// and reading at most about `limit` bytes off the socket.
    pub async fn read_body(
        &mut self,
        s: &mut TcpStream,
        framing: Framing,
        limit: u64,
        mut sink: Option<&mut Vec<u8>>,
    ) -> Result<BodyEnd, WireError> {
        let mut read = 0u64;
        match framing {
            Framing::Empty => Ok(BodyEnd::Complete { read }),
            Framing::Length(n) => self.take(s, n, limit, &mut read, &mut sink).await,
            Framing::UntilClose => {
                match self.take(s, u64::MAX, limit, &mut read, &mut sink).await {
                    Err(WireError::Closed { .. }) => Ok(BodyEnd::Complete { read }),
                    other => other,
                }
            }
            Framing::Chunked => loop {
                let (line, size) = loop {
                    match httparse::parse_chunk_size(self.buffered()) {
                        Ok(httparse::Status::Complete(c)) => break c,
                        Ok(httparse::Status::Partial) => self.fill(s).await?,
                        Err(_) => return Err(WireError::Parse("invalid chunk size")),
                    }
                };
                self.start += line;
                if size == 0 {
                    self.skip_trailers(s).await?;
                    return Ok(BodyEnd::Complete { read });
                }
                if let BodyEnd::Truncated { read } =
                    self.take(s, size, limit, &mut read, &mut sink).await?
                {
                    return Ok(BodyEnd::Truncated { read });
                }
                self.expect_crlf(s).await?;
            },
        }
    }

    /// Consumes `n` body bytes, stopping early once `read` reaches `limit`.
    async fn take(
        &mut self,
        s: &mut TcpStream,
        mut n: u64,
        limit: u64,
        read: &mut u64,
        sink: &mut Option<&mut Vec<u8>>,
    ) -> Result<BodyEnd, WireError> {
        while n > 0 {
            if *read >= limit {
                return Ok(BodyEnd::Truncated { read: *read });
            }
            if self.start == self.end {
                self.fill(s).await?;
            }
            let avail = (self.end - self.start) as u64;
            let k = avail.min(n).min(limit - *read) as usize;
            if let Some(sink) = sink.as_deref_mut() {
                let room = (limit as usize).saturating_sub(sink.len());
                sink.extend_from_slice(&self.buf[self.start..self.start + k.min(room)]);
            }
            self.start += k;
            n -= k as u64;
            *read += k as u64;
        }
        Ok(BodyEnd::Complete { read: *read })
    }

    async fn expect_crlf(&mut self, s: &mut TcpStream) -> Result<(), WireError> {
        while self.end - self.start < 2 {
            self.fill(s).await?;
        }
        if self.buffered().starts_with(b"\r\n") {
            self.start += 2;
            Ok(())
        } else {
            Err(WireError::Parse("chunk not followed by CRLF"))
        }
    }

    /// Trailer fields after the last chunk, up to the empty line.
    async fn skip_trailers(&mut self, s: &mut TcpStream) -> Result<(), WireError> {
        loop {
            match self.buffered().windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.start += 2;
                    return Ok(());
                }
                Some(i) => self.start += i + 2,
                None => self.fill(s).await?,
            }
        }
    }
}

/// Names the first thing wrong, for a message an SRE can act on ("not HTTP at all" vs "bad
/// header").
fn parse_error(buf: &[u8]) -> &'static str {
    if !buf.starts_with(b"HTTP/") && buf.len() >= 5 {
        "not an HTTP response"
    } else {
        "malformed status line or header"
    }
}

/// Framing and reuse from a parsed head; `None` for an interim 1xx answer.
fn interpret(
    res: &httparse::Response<'_, '_>,
    head_request: bool,
) -> Result<Option<Head>, WireError> {
    let status = res.code.unwrap_or(0);
    let minor = res.version.unwrap_or(0);
    if status == 101 {
        return Err(WireError::Parse("unexpected protocol switch (101)"));
    }
    if (100..200).contains(&status) {
        return Ok(None);
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = minor == 0;
    for h in res.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .map_err(|_| WireError::Parse("invalid content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(WireError::Parse("conflicting content-length"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            if !chunked {
                return Err(WireError::Parse("unsupported transfer-encoding"));
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && minor == 0 {
                    close = false;
                }
            }
        }
    }
    let framing = if head_request || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        framing,
        keep_alive: !close && framing != Framing::UntilClose,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// Feeds `bytes` through a real socket (in small pieces, to exercise refills) and reads
    /// one response.
    async fn read_one(
        bytes: &'static [u8],
        limit: u64,
    ) -> Result<(Head, BodyEnd, Vec<u8>), WireError> {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            for piece in bytes.chunks(7) {
                let _ = s.write_all(piece).await;
                tokio::task::yield_now().await;
            }
        });
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut w = Wire::default();
        let head = w.read_head(&mut s, false).await?;
        let mut body = Vec::new();
        let end = w
            .read_body(&mut s, head.framing, limit, Some(&mut body))
            .await?;
        Ok((head, end, body))
    }

    #[tokio::test]
    async fn content_length_body() {
        let (h, end, body) = read_one(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 100)
            .await
            .unwrap();
        assert_eq!(
            h,
            Head {
                status: 200,
                framing: Framing::Length(5),
                keep_alive: true
            }
        );
        assert_eq!(end, BodyEnd::Complete { read: 5 });
        assert_eq!(body, b"hello");
    }

    #[tokio::test]
    async fn chunked_body_with_trailers_and_interim_answer() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nnot \r\n5\r\nready\r\n0\r\nX-T: 1\r\n\r\n";
        let (h, end, body) = read_one(raw, 100).await.unwrap();
        assert_eq!(h.status, 503);
        assert_eq!(h.framing, Framing::Chunked);
        assert_eq!(end, BodyEnd::Complete { read: 9 });
        assert_eq!(body, b"not ready");
    }

    #[tokio::test]
    async fn limit_truncates() {
        let (_, end, body) = read_one(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
            4,
        )
        .await
        .unwrap();
        assert_eq!(end, BodyEnd::Truncated { read: 4 });
        assert_eq!(body, b"0123");
    }

    #[tokio::test]
    async fn close_delimited_and_http10() {
        let (h, end, body) = read_one(b"HTTP/1.0 200 OK\r\n\r\nbye", 100).await.unwrap();
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(!h.keep_alive);
        assert_eq!(end, BodyEnd::Complete { read: 3 });
        assert_eq!(body, b"bye");
        let (h, _, _) = read_one(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            1,
        )
        .await
        .unwrap();
        assert!(!h.keep_alive);
    }

    #[tokio::test]
    async fn malformed_answers_are_errors() {
        let e = read_one(b"SSH-2.0-OpenSSH\r\n\r\n", 10).await.unwrap_err();
        assert!(
            matches!(e, WireError::Parse("not an HTTP response")),
            "{e:?}"
        );
        let e = read_one(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
            10,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e, WireError::Parse("conflicting content-length")),
            "{e:?}"
        );
        let e = read_one(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            10,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, WireError::Parse("invalid chunk size")), "{e:?}");
        let e = read_one(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", 10)
            .await
            .unwrap_err();
        assert!(
            matches!(e, WireError::Closed { received_any: true }),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn oversized_head_is_refused() {
        static BIG: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
            let mut v = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
            v.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
            v.extend_from_slice(b"\r\n\r\n");
            v
        });
        let e = read_one(BIG.as_slice(), 10).await.unwrap_err();
        assert!(matches!(e, WireError::HeadTooLarge), "{e:?}");
    }
}
