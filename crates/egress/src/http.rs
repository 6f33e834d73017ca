//! HTTP/1.1 on the wire, as a forward proxy needs it: a buffered connection, request and
//! response heads (with limits), and body framing (`Content-Length`, chunked, until close).

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::splice::Dir;

/// The largest request or response head accepted (a larger request gets 431).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// The most header fields a request may have (more gets 431).
pub(crate) const MAX_HEADERS: usize = 100;
/// Buffer for bodies and tunnels, per connection and direction.
pub(crate) const CHUNK: usize = 32 * 1024;

/// A connection with a read buffer.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) io: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Why a head could not be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The peer closed before sending anything.
    Closed,
    /// The peer closed in the middle.
    Eof,
    /// Longer than the limit.
    TooLarge,
    /// A read failed.
    Io,
}

impl Conn {
    pub(crate) fn new(io: TcpStream) -> Self {
        Conn { io, buf: vec![0; 4096], start: 0, end: 0 }
    }

    /// The stream and the bytes read but not yet used.
    pub(crate) fn into_parts(self) -> (TcpStream, Vec<u8>) {
        let rest = self.buf[self.start..self.end].to_vec();
        (self.io, rest)
    }

    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more; `Ok(0)` at end of stream. The buffer grows to at most `max` bytes.
    pub(crate) async fn fill(&mut self, max: usize) -> io::Result<usize> {
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= max {
                return Err(io::Error::other("buffer limit"));
            }
            let size = (self.buf.len() * 2).min(max);
            self.buf.resize(size, 0);
        }
        let n = self.io.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Waits until `n` bytes are buffered.
    pub(crate) async fn need(&mut self, n: usize) -> io::Result<()> {
        while self.buffered().len() < n {
            if self.fill(n.max(4096)).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    /// Waits for a whole head; returns its length, terminator included.
    pub(crate) async fn head(&mut self, max: usize) -> Result<usize, HeadError> {
        let mut scanned: usize = 0;
        loop {
            let data = self.buffered();
            let from = scanned.saturating_sub(3);
            if let Some(pos) = find_head_end(&data[from..]) {
                return Ok(from + pos);
            }
            scanned = data.len();
            if scanned >= max {
                return Err(HeadError::TooLarge);
            }
            match self.fill(max).await {
                Ok(0) if scanned == 0 => return Err(HeadError::Closed),
                Ok(0) => return Err(HeadError::Eof),
                Ok(_) => {}
                Err(_) if self.buffered().len() >= max => return Err(HeadError::TooLarge),
                Err(_) => return Err(HeadError::Io),
            }
        }
    }

    /// Reads one line (up to CRLF or LF, at most `max` bytes); returns its length with the
    /// line end, leaving it buffered.
    pub(crate) async fn line(&mut self, max: usize) -> io::Result<usize> {
        let mut scanned: usize = 0;
        loop {
            if let Some(pos) = self.buffered()[scanned..].iter().position(|&b| b == b'\n') {
                return Ok(scanned + pos + 1);
            }
            scanned = self.buffered().len();
            if scanned >= max {
                return Err(io::Error::other("line too long"));
            }
            if self.fill(max).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// The end of a head: after `\r\n\r\n` (or a bare `\n\n`).
fn find_head_end(data: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == b'\n' {
            if data[i + 1] == b'\n' {
                return Some(i + 2);
            }
            if data[i + 1] == b'\r' && data.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// A request head, owned.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) method: String,
    pub(crate) target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) version: u8,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
}

/// A response head: the status and what decides its framing.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) status: u16,
    pub(crate) version: u8,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
}

/// A head that cannot be accepted, with the status to answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reject(pub(crate) u16, pub(crate) &'static str);

pub(crate) fn parse_request(head: &[u8]) -> Result<RequestHead, Reject> {
    // SECURITY: one reading of the head for the proxy and the destination alike. A bare CR or
    // LF, or a folded line, is read one way here and another way there: refused, not guessed.
    for (i, &b) in head.iter().enumerate() {
        let bare_cr = b == b'\r' && head.get(i + 1) != Some(&b'\n');
        let bare_lf = b == b'\n' && (i == 0 || head[i - 1] != b'\r');
        if bare_cr || bare_lf {
            return Err(Reject(400, "a bare CR or LF in the request head"));
        }
        let folded = b == b'\n' && matches!(head.get(i + 1), Some(b' ' | b'\t'));
        if folded {
            return Err(Reject(400, "a folded header line (obsolete line folding)"));
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Err(Reject(431, "too many header fields")),
        Ok(httparse::Status::Partial) | Err(_) => return Err(Reject(400, "malformed request head")),
    }
    Ok(RequestHead {
        method: req.method.unwrap_or_default().to_owned(),
        target: req.path.unwrap_or_default().to_owned(),
        version: req.version.unwrap_or(1),
        headers: req.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect(),
    })
}

pub(crate) fn parse_response(head: &[u8]) -> Option<ResponseHead> {
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut res = httparse::Response::new(&mut headers);
    match res.parse(head) {
        Ok(httparse::Status::Complete(_)) => Some(ResponseHead {
            status: res.code?,
            version: res.version.unwrap_or(1),
            headers: res.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect(),
        }),
        _ => None,
    }
}

/// A header's value (first of that name), trimmed.
pub(crate) fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.trim_ascii())
}

/// True when a comma-separated header lists `token` (case-insensitive).
pub(crate) fn lists(headers: &[(String, Vec<u8>)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// How a message body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    Close,
}

/// The fields that frame a request: never dropped, renamed or doubled on the way.
const FRAMING_FIELDS: &[&str] = &["content-length", "transfer-encoding", "host"];

/// A request's body framing. Anything two readers could frame differently is refused with
/// 400, never guessed (request smuggling):
///
/// - `Connection` naming a framing field (a proxy that drops what `Connection` names would
///   send the body without its length: `Connection: keep-alive, content-length`);
/// - `Transfer-Encoding` and `Content-Length` together (CL.TE, TE.CL);
/// - `Transfer-Encoding` other than one field of exactly `chunked` (TE.TE: `xchunked`,
///   `chunked, identity`, a second field), or on HTTP/1.0;
/// - `Content-Length` repeated, listed twice or not a plain number;
/// - a field name that some servers read as a framing field (`Content_Length`);
/// - a body on `GET`, `HEAD`, `OPTIONS` or `TRACE` (CL.0: a destination that ignores such a
///   body reads it as the next request).
pub(crate) fn request_framing(h: &RequestHead) -> Result<Framing, Reject> {
    for name in h.headers.iter().map(|(n, _)| n) {
        if name.contains('_') && FRAMING_FIELDS.contains(&name.replace('_', "-").as_str()) {
            return Err(Reject(400, "a header field name spelled like a framing field"));
        }
    }
    for field in FRAMING_FIELDS {
        if lists(&h.headers, "connection", field) || lists(&h.headers, "proxy-connection", field) {
            return Err(Reject(400, "Connection names a framing field"));
        }
    }
    let te: Vec<&(String, Vec<u8>)> = h.headers.iter().filter(|(n, _)| n == "transfer-encoding").collect();
    let cl: Vec<&(String, Vec<u8>)> = h.headers.iter().filter(|(n, _)| n == "content-length").collect();
    let framing = if !te.is_empty() {
        if !cl.is_empty() {
            return Err(Reject(400, "both Transfer-Encoding and Content-Length"));
        }
        if te.len() != 1 || !te[0].1.trim_ascii().eq_ignore_ascii_case(b"chunked") || h.version == 0 {
            return Err(Reject(400, "Transfer-Encoding must be one field of exactly `chunked` (HTTP/1.1)"));
        }
        Framing::Chunked
    } else {
        match cl.as_slice() {
            [] => Framing::None,
            [(_, v)] => match std::str::from_utf8(v.trim_ascii()) {
                Ok(t) if !t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit()) => {
                    Framing::Length(t.parse().map_err(|_| Reject(400, "bad Content-Length"))?)
                }
                _ => return Err(Reject(400, "bad Content-Length")),
            },
            _ => return Err(Reject(400, "Content-Length repeated")),
        }
    };
    let bodiless = ["GET", "HEAD", "OPTIONS", "TRACE"].iter().any(|m| h.method.eq_ignore_ascii_case(m));
    if bodiless && !matches!(framing, Framing::None | Framing::Length(0)) {
        return Err(Reject(400, "a body on a request whose method takes none"));
    }
    Ok(if framing == Framing::Length(0) { Framing::None } else { framing })
}

/// A response's body framing, given the request's method.
pub(crate) fn response_framing(method: &str, h: &ResponseHead) -> Option<Framing> {
    if method == "HEAD" || (100..200).contains(&h.status) || h.status == 204 || h.status == 304 {
        return Some(Framing::None);
    }
    let te: Vec<&(String, Vec<u8>)> = h.headers.iter().filter(|(n, _)| n == "transfer-encoding").collect();
    if !te.is_empty() {
        let last = te.iter().flat_map(|(_, v)| v.split(|&b| b == b',')).next_back().map(<[u8]>::trim_ascii);
        return Some(if last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")) {
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    let cl: Vec<&(String, Vec<u8>)> = h.headers.iter().filter(|(n, _)| n == "content-length").collect();
    content_length(&cl).map(|l| l.map_or(Framing::Close, Framing::Length))
}

/// The one Content-Length (equal repeats allowed); `Some(None)` when absent, `None` when bad.
fn content_length(values: &[&(String, Vec<u8>)]) -> Option<Option<u64>> {
    let mut found: Option<u64> = None;
    for (_, v) in values {
        for part in v.split(|&b| b == b',') {
            let text = std::str::from_utf8(part.trim_ascii()).ok()?;
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n: u64 = text.parse().ok()?;
            if found.is_some_and(|f| f != n) {
                return None;
            }
            found = Some(n);
        }
    }
    Some(found)
}

/// Headers that describe one hop and are not forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "host",
];

/// The head sent upstream: origin-form target, `Host` set to the URL's authority (a client's
/// own `Host` could name another site on the same server), hop-by-hop fields dropped, and
/// the framing written by the proxy from what it framed (`framing`), so the destination
/// frames exactly the bytes the proxy forwards.
pub(crate) fn upstream_head(h: &RequestHead, path: &str, authority: &str, framing: Framing) -> Vec<u8> {
    let listed: Vec<String> = h
        .headers
        .iter()
        .filter(|(n, _)| n == "connection" || n == "proxy-connection")
        .flat_map(|(_, v)| {
            v.split(|&b| b == b',').map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
        })
        .collect();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(h.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    match framing {
        Framing::Length(n) => out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes()),
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::None | Framing::Close => {}
    }
    for (name, value) in &h.headers {
        let framing_field = name == "content-length" || name == "transfer-encoding";
        if framing_field || HOP_BY_HOP.contains(&name.as_str()) || listed.iter().any(|l| l == name) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if h.version == 0 && !lists(&h.headers, "connection", "keep-alive") {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// True when the client wants the connection kept after this request.
pub(crate) fn client_keeps_alive(h: &RequestHead) -> bool {
    let close = lists(&h.headers, "connection", "close") || lists(&h.headers, "proxy-connection", "close");
    if h.version == 0 {
        !close && (lists(&h.headers, "connection", "keep-alive") || lists(&h.headers, "proxy-connection", "keep-alive"))
    } else {
        !close
    }
}

/// True when the server keeps the connection after this response.
pub(crate) fn server_keeps_alive(h: &ResponseHead) -> bool {
    if h.version == 0 {
        lists(&h.headers, "connection", "keep-alive")
    } else {
        !lists(&h.headers, "connection", "close")
    }
}

/// A small response of our own (errors and denials), with a JSON body.
pub(crate) fn simple_response(status: u16, reason: &str, extra: &[(&str, String)], body: &str, close: bool) -> Vec<u8> {
    let mut out =
        format!("HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in extra {
        // A value never carries a line break into the head.
        let value: String = value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(if close { "Connection: close\r\n\r\n" } else { "Connection: keep-alive\r\n\r\n" });
    out.push_str(body);
    out.into_bytes()
}

/// Where body bytes are counted: called with each chunk before it is written; an error stops
/// the copy without writing that chunk.
pub(crate) type Account<'a> = &'a mut (dyn FnMut(usize) -> io::Result<()> + Send);

/// Bodies at least this long go through [`crate::splice`] once the buffer is drained.
const SPLICE_FROM: u64 = 64 * 1024;

/// Copies exactly `n` bytes from `from` (buffer first) to `to`.
pub(crate) async fn copy_exact(
    from: &mut Conn,
    to: &mut TcpStream,
    mut n: u64,
    dir: Dir,
    account: Account<'_>,
) -> io::Result<()> {
    while n > 0 {
        if from.buffered().is_empty() {
            if n >= SPLICE_FROM {
                let pipe = crate::splice::Pipe::new(dir)?;
                let idle = std::time::Duration::from_secs(300);
                crate::splice::relay(&pipe, &from.io, to, Some(n), idle, account).await?;
                return Ok(());
            }
            if from.fill(CHUNK).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        let take = from.buffered().len().min(usize::try_from(n).unwrap_or(usize::MAX));
        account(take)?;
        to.write_all(&from.buffered()[..take]).await?;
        from.consume(take);
        n -= take as u64;
    }
    Ok(())
}

/// Copies a chunked body, framing included, to its last chunk and trailers.
pub(crate) async fn copy_chunked(
    from: &mut Conn,
    to: &mut TcpStream,
    dir: Dir,
    account: Account<'_>,
) -> io::Result<()> {
    loop {
        let len = from.line(4096).await?;
        let line = &from.buffered()[..len];
        let size_text = line.split(|&b| b == b';' || b == b'\r' || b == b'\n').next().unwrap_or_default();
        let size = std::str::from_utf8(size_text.trim_ascii())
            .ok()
            .filter(|t| !t.is_empty() && t.len() <= 16)
            .and_then(|t| u64::from_str_radix(t, 16).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        account(len)?;
        to.write_all(&from.buffered()[..len]).await?;
        from.consume(len);
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let len = from.line(4096).await?;
                let empty = from.buffered()[..len].trim_ascii().is_empty();
                account(len)?;
                to.write_all(&from.buffered()[..len]).await?;
                from.consume(len);
                if empty {
                    return Ok(());
                }
            }
        }
        copy_exact(from, to, size, dir, account).await?;
        let len = from.line(4096).await?;
        account(len)?;
        to.write_all(&from.buffered()[..len]).await?;
        from.consume(len);
    }
}

/// Copies until `from` closes.
pub(crate) async fn copy_to_eof(from: &mut Conn, to: &mut TcpStream, dir: Dir, account: Account<'_>) -> io::Result<()> {
    let take = from.buffered().len();
    if take > 0 {
        account(take)?;
        to.write_all(from.buffered()).await?;
        from.consume(take);
    }
    let pipe = crate::splice::Pipe::new(dir)?;
    crate::splice::relay(&pipe, &from.io, to, None, std::time::Duration::from_secs(300), account).await?;
    Ok(())
}

/// Copies a body framed as `framing`.
pub(crate) async fn copy_body(
    from: &mut Conn,
    to: &mut TcpStream,
    framing: Framing,
    dir: Dir,
    account: Account<'_>,
) -> io::Result<()> {
    match framing {
        Framing::None => Ok(()),
        Framing::Length(n) => copy_exact(from, to, n, dir, account).await,
        Framing::Chunked => copy_chunked(from, to, dir, account).await,
        Framing::Close => copy_to_eof(from, to, dir, account).await,
    }
}

/// What the proxy makes of a request head, for fuzzing and tests of the parser: the method,
/// the target and the framing, and the head it would send upstream, or the status it would
/// answer with.
pub fn inspect_request_head(head: &[u8]) -> Result<(String, String, String, Vec<u8>), u16> {
    let h = parse_request(head).map_err(|r| r.0)?;
    let framing = request_framing(&h).map_err(|r| r.0)?;
    let upstream = upstream_head(&h, "/", "example.test", framing);
    Ok((h.method, h.target, format!("{framing:?}"), upstream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> RequestHead {
        parse_request(text.as_bytes()).unwrap()
    }

    #[test]
    fn heads_and_framing() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"), Some(24));
        let h = req(
            "POST http://a.test/x HTTP/1.1\r\nContent-Length: 5\r\nConnection: close, X-Drop\r\nX-Drop: 1\r\nHost: evil.test\r\nProxy-Authorization: Basic eA==\r\n\r\n",
        );
        assert_eq!(request_framing(&h), Ok(Framing::Length(5)));
        assert!(!client_keeps_alive(&h));
        let up = String::from_utf8(upstream_head(&h, "/x", "a.test", Framing::Length(5))).unwrap();
        assert_eq!(up, "POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\n");
        let h = req("POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(request_framing(&h).unwrap_err().0, 400, "smuggling shapes are refused");
        let h = req("POST http://a.test/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
        assert_eq!(request_framing(&h).unwrap_err().0, 400);
        let many: String = (0..200).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(parse_request(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).unwrap_err().0, 431);
    }
}
