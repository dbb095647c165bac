//! A tiny blocking HTTP/1.1 client for loopback URLs, built on [`std::net::TcpStream`].
//!
//! Enough to talk to the peers and to the stackmedic binaries in tests: one request per
//! connection (`Connection: close`), bodies delimited by `Content-Length`, chunked transfer
//! encoding or the end of the connection. Only `http://` URLs whose host is a loopback address
//! (`127.0.0.0/8`, `::1` or `localhost`) are accepted, so a test can never reach another host.
//!
//! Also [`read_request`], the request reader of this crate's own fixture servers (the webhook
//! sink, the admin-API recorder) and of the tests' stand-ins.

use std::io::{BufRead, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// Connect, read and write timeout of [`get`] and [`request`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// An HTTP request as a fixture server reads it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method, such as `POST`.
    pub method: String,
    /// The request target, such as `/webhook?x=1`.
    pub path: String,
    /// Header fields in order of appearance, names as sent by the client.
    pub headers: Vec<(String, String)>,
    /// The body, as long as `Content-Length` says.
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request from a connection: the request line, the header fields and a body of
/// `Content-Length` bytes (none without it). `None` when the connection ends or fails first.
pub fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut field = String::new();
        if reader.read_line(&mut field).unwrap_or(0) == 0 {
            return None;
        }
        let field = field.trim_end();
        if field.is_empty() {
            break;
        }
        if let Some((name, value)) = field.split_once(':') {
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
    }
    let mut request = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let length = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    request.body = vec![0; length];
    reader.read_exact(&mut request.body).ok()?;
    Some(request)
}

/// An HTTP response with its whole body.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code, such as 200.
    pub status: u16,
    /// Header fields in order of appearance, names as sent by the server.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "response body is not JSON (status {}): {}",
                self.status,
                crate::process::tail(&self.text(), 2000)
            )
        })
    }

    /// Returns an error naming the status and body unless the status is 2xx.
    pub fn error_for_status(self) -> Result<Response> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            bail!(
                "HTTP status {}: {}",
                self.status,
                crate::process::tail(&self.text(), 2000)
            )
        }
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response> {
    request("GET", url, &[], None)
}

/// `POST url` with a JSON body (`Content-Type: application/json`).
pub fn post_json(url: &str, body: &serde_json::Value) -> Result<Response> {
    let body = serde_json::to_vec(body).context("serializing the JSON body")?;
    request(
        "POST",
        url,
        &[("Content-Type", "application/json")],
        Some(&body),
    )
}

/// Sends one request with [`DEFAULT_TIMEOUT`] and reads the whole response.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response> {
    request_with_timeout(method, url, headers, body, DEFAULT_TIMEOUT)
}

/// Sends one request and reads the whole response; `timeout` bounds the connect and each read
/// and write. A `Host` header is added unless given, and `Content-Length` when there is a body.
pub fn request_with_timeout(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response> {
    let target = parse_url(url)?;
    let mut stream = TcpStream::connect_timeout(&target.addr, timeout)
        .with_context(|| format!("connecting to {} for {method} {url}", target.addr))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;

    let mut head = format!("{method} {} HTTP/1.1\r\n", target.path_and_query);
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {}\r\n", target.host_header));
    }
    head.push_str("Connection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
    }
    head.push_str("\r\n");
    let mut message = head.into_bytes();
    message.extend_from_slice(body.unwrap_or_default());
    stream
        .write_all(&message)
        .with_context(|| format!("sending {method} {url}"))?;

    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        // A server may reset the connection after a complete response; keep what arrived.
        if raw.is_empty() {
            return Err(e).with_context(|| format!("reading the response to {method} {url}"));
        }
    }
    parse_response(&raw, method.eq_ignore_ascii_case("HEAD"))
        .with_context(|| format!("parsing the response to {method} {url}"))
}

struct Target {
    addr: SocketAddr,
    host_header: String,
    path_and_query: String,
}

fn parse_url(url: &str) -> Result<Target> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported, got {url:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| anyhow!("bad IPv6 authority in {url:?}"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port: u16 = match port {
        Some(p) => p.parse().with_context(|| format!("bad port in {url:?}"))?,
        None => 80,
    };
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse()
            .with_context(|| format!("host of {url:?} must be an IP address or localhost"))?
    };
    if !ip.is_loopback() {
        bail!("refusing {url:?}: tests only talk to loopback addresses");
    }
    Ok(Target {
        addr: SocketAddr::new(ip, port),
        host_header: authority.to_owned(),
        path_and_query: path.to_owned(),
    })
}

fn parse_response(raw: &[u8], head_request: bool) -> Result<Response> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no complete header in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..end]).context("response header is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/") {
        bail!("bad status line {status_line:?}");
    }
    let status: u16 = parts
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| anyhow!("bad header line {line:?}"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &raw[end + 4..];
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(response);
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    response.body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length
            .parse()
            .with_context(|| format!("bad Content-Length {length:?}"))?;
        if rest.len() < length {
            bail!(
                "body truncated: Content-Length {length}, got {}",
                rest.len()
            );
        }
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(response)
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunk size line"))?;
        let size_line = std::str::from_utf8(&data[..line_end]).context("bad chunk size line")?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size {size_line:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size {
            bail!("truncated chunk: want {size} bytes, got {}", data.len());
        }
        body.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

/// Percent-encodes `value` for use in a URL query component (everything but RFC 3986
/// unreserved characters is encoded).
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_requests_one_after_another() {
        let raw = b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nAuthorization: Bearer t\r\n\r\nbodyGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\nContent-Length: 9\r\n\r\nshort";
        let mut reader = std::io::Cursor::new(&raw[..]);
        let first = read_request(&mut reader).expect("first request");
        assert_eq!(
            (first.method.as_str(), first.path.as_str()),
            ("POST", "/webhook")
        );
        assert_eq!(first.header("authorization"), Some("Bearer t"));
        assert_eq!(first.body, b"body");
        let second = read_request(&mut reader).expect("second request");
        assert_eq!((second.path.as_str(), second.body.len()), ("/b", 0));
        // A body shorter than its Content-Length is no request.
        assert!(read_request(&mut reader).is_none());
    }

    #[test]
    fn parses_chunked_and_length_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let r = parse_response(raw, false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"abcde");
        let raw = b"HTTP/1.0 404 Not Found\r\ncontent-length: 2\r\nX-A: b\r\n\r\nnoEXTRA";
        let r = parse_response(raw, false).unwrap();
        assert_eq!(
            (r.status, r.header("x-a"), r.body.as_slice()),
            (404, Some("b"), &b"no"[..])
        );
    }

    #[test]
    fn only_loopback_urls() {
        assert!(parse_url("http://127.0.0.1:8080/a?b=c").is_ok());
        assert!(parse_url("http://localhost/").is_ok());
        assert!(parse_url("http://[::1]:9/").is_ok());
        assert!(parse_url("http://10.0.0.1/").is_err());
        assert!(parse_url("https://127.0.0.1/").is_err());
        assert_eq!(encode_component("up{a=\"b c\"}"), "up%7Ba%3D%22b%20c%22%7D");
    }
}
