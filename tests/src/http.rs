//! A raw HTTP/1.1 client for tests: one request per connection (`Connection: close`), the
//! response read to its end under a deadline, nothing interpreted beyond framing.
//!
//! Raw on purpose: a test sees the exact status code, header and body bytes the server sent,
//! with no client library following redirects or normalising anything.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a whole request may take, unless the caller gives its own bound.
pub const REQUEST_WAIT: Duration = Duration::from_secs(15);

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names as sent; look them up with [`Response::header`].
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method path` to `addr` and reads the response, all within [`REQUEST_WAIT`].
pub fn request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<Response> {
    request_within(addr, method, path, REQUEST_WAIT)
}

/// [`request`] with its own bound on the whole exchange.
pub fn request_within(
    addr: SocketAddr,
    method: &str,
    path: &str,
    within: Duration,
) -> std::io::Result<Response> {
    let deadline = Instant::now() + within;
    let mut stream = TcpStream::connect_timeout(&addr, within)?;
    stream.set_write_timeout(Some(within))?;
    stream.set_nodelay(true)?;
    // A body-less request: `Content-Length: 0` so POST/PUT are not left waiting for one.
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(head.as_bytes())?;
    stream.flush()?;
    let raw = read_response(&mut stream, deadline, method == "HEAD")?;
    parse(&raw, method == "HEAD")
}

/// Reads until EOF or until the `Content-Length` body is complete; an error at the deadline.
fn read_response(
    stream: &mut TcpStream,
    deadline: Instant,
    head_only: bool,
) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = complete_length(&raw, head_only) {
            raw.truncate(end);
            return Ok(raw);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                ErrorKind::TimedOut,
                format!(
                    "no complete response in time; got {:?}",
                    String::from_utf8_lossy(&raw)
                ),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(raw),
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // A reset after the response is the server closing hard: keep what arrived.
            Err(_) if !raw.is_empty() => return Ok(raw),
            Err(e) => return Err(e),
        }
    }
}

/// The length of the whole response when its head is in and it has a `Content-Length` body
/// that has fully arrived. Never for HEAD: that is read to EOF, so that a body the server
/// should not have sent shows up in [`Response::body`].
fn complete_length(raw: &[u8], head_only: bool) -> Option<usize> {
    if head_only {
        return None;
    }
    let head_end = find(raw, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let length: usize = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })?;
    (raw.len() >= head_end + length).then_some(head_end + length)
}

fn parse(raw: &[u8], head_only: bool) -> std::io::Result<Response> {
    let bad = |what: &str| {
        std::io::Error::new(
            ErrorKind::InvalidData,
            format!("{what}: {:?}", String::from_utf8_lossy(raw)),
        )
    };
    let head_end = find(raw, b"\r\n\r\n").ok_or_else(|| bad("no end of head"))?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| bad("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(bad("not an HTTP/1.x status line"));
    }
    let status = parts
        .next()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| bad("header line"))?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: raw[head_end + 4..].to_vec(),
    };
    if !head_only
        && response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        response.body = unchunk(&response.body).ok_or_else(|| bad("chunked body"))?;
    }
    Ok(response)
}

/// Decodes a chunked body (no trailers expected).
fn unchunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(body, b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
