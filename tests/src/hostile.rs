//! Clients that misbehave on purpose, for the hardening tests of both binaries: connections
//! that send nothing, trickle a request head byte by byte, stop after the HTTP/2 preface, or
//! promise a body that never comes; plus what the tests measure on the server process (open
//! file descriptors, peak resident memory).
//!
//! Everything connects to `127.0.0.1` only. A [`Flood`] keeps its connections open until it
//! is dropped; its trickle thread stops with it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The HTTP/2 connection preface a client sends first (RFC 9113, section 3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
pub const H2_EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Requests a [`Kind::H2ZeroWindow`] connection opens.
pub const H2_ZERO_WINDOW_STREAMS: u32 = 3;

/// An HTTP/2 frame: 24-bit length, type, flags, stream id, payload (RFC 9113, section 4.1).
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .expect("small frame")
        .to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The HPACK block of `GET <path>` on `http://127.0.0.1` (RFC 7541): `:method GET` and
/// `:scheme http` from the static table, `:path` and `:authority` as literals without indexing.
fn h2_get_block(path: &str, headers: &[(String, String)]) -> Vec<u8> {
    fn literal(block: &mut Vec<u8>, value: &str) {
        let len = u8::try_from(value.len()).expect("short header value");
        assert!(len < 127, "header value too long for this encoder");
        block.push(len);
        block.extend_from_slice(value.as_bytes());
    }
    let mut block = vec![0x82, 0x86, 0x04];
    literal(&mut block, path);
    block.push(0x01);
    literal(&mut block, "127.0.0.1");
    for (name, value) in headers {
        // A literal without indexing with a new name (lower case, as HTTP/2 requires).
        block.push(0x00);
        literal(&mut block, &name.to_ascii_lowercase());
        literal(&mut block, value);
    }
    block
}

/// How a flood's connections misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Connect and send nothing.
    Idle,
    /// Send the start of a request head, then one more byte every trickle interval, never
    /// finishing the head.
    Trickle,
    /// Send the HTTP/2 preface and an empty SETTINGS frame, then nothing.
    H2Preface,
    /// Send the HTTP/2 preface, SETTINGS with an initial stream window of zero, and
    /// [`H2_ZERO_WINDOW_STREAMS`] complete `GET` requests of the path; never read a byte nor
    /// open the window, so every response stalls after its headers.
    H2ZeroWindow,
    /// Send a complete `POST` head with `Content-Length: 1000000` and ten bytes of body.
    BodyContentLength,
    /// Send a complete chunked `POST` head and one chunk, never the last chunk.
    BodyChunked,
}

/// Connections held open against a server; closed when dropped.
pub struct Flood {
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    trickle: Option<JoinHandle<()>>,
    /// Connections that could not be opened at all (refused or timed out).
    pub failed_connects: usize,
}

impl Flood {
    /// Opens `n` connections of `kind` to `127.0.0.1:port`. `path` and `headers` (full lines
    /// without CRLF) go into the request heads of the body kinds and the trickled head.
    pub fn open(port: u16, n: usize, kind: Kind, path: &str, headers: &[String]) -> Flood {
        Self::open_from(None, port, n, kind, path, headers)
    }

    /// Like [`Flood::open`], from the local address `from` (another loopback address such as
    /// `127.0.0.2`, so that the server sees a second client address), or the system's choice.
    ///
    /// # Panics
    /// When `from` is not a loopback address.
    pub fn open_from(
        from: Option<Ipv4Addr>,
        port: u16,
        n: usize,
        kind: Kind,
        path: &str,
        headers: &[String],
    ) -> Flood {
        assert!(
            from.is_none_or(|a| a.is_loopback()),
            "floods come from loopback addresses only"
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let runtime = from.map(|_| {
            tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .expect("a runtime to connect from a chosen address")
        });
        let connect = || -> std::io::Result<TcpStream> {
            match (from, &runtime) {
                (Some(local), Some(rt)) => rt.block_on(async {
                    let socket = tokio::net::TcpSocket::new_v4()?;
                    socket.bind(SocketAddr::from((local, 0)))?;
                    let stream = tokio::time::timeout(Duration::from_secs(2), socket.connect(addr))
                        .await
                        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
                    let stream = stream.into_std()?;
                    stream.set_nonblocking(false)?;
                    Ok(stream)
                }),
                _ => TcpStream::connect_timeout(&addr, Duration::from_secs(2)),
            }
        };
        let mut conns = Vec::with_capacity(n);
        let mut failed_connects = 0;
        let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
        let opening: Vec<u8> = match kind {
            Kind::Idle => Vec::new(),
            Kind::Trickle => format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").into(),
            Kind::H2Preface => [H2_PREFACE, &H2_EMPTY_SETTINGS[..]].concat(),
            Kind::H2ZeroWindow => {
                let pairs: Vec<(String, String)> = headers
                    .iter()
                    .filter_map(|h| h.split_once(':'))
                    .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                    .collect();
                // SETTINGS_INITIAL_WINDOW_SIZE (0x4) = 0.
                let mut bytes = [H2_PREFACE, &h2_frame(4, 0, 0, &[0, 4, 0, 0, 0, 0])].concat();
                let block = h2_get_block(path, &pairs);
                for i in 0..H2_ZERO_WINDOW_STREAMS {
                    // END_STREAM | END_HEADERS on client streams 1, 3, 5, …
                    bytes.extend(h2_frame(1, 0x5, 2 * i + 1, &block));
                }
                bytes
            }
            Kind::BodyContentLength => format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}Content-Length: 1000000\r\n\r\n{{\"version\""
            )
            .into(),
            Kind::BodyChunked => format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}Transfer-Encoding: chunked\r\n\r\na\r\n{{\"version\"\r\n"
            )
            .into(),
        };
        for _ in 0..n {
            match connect() {
                Ok(mut s) => {
                    if !opening.is_empty() {
                        let _ = s.write_all(&opening);
                    }
                    conns.push(s);
                }
                Err(_) => failed_connects += 1,
            }
        }
        let conns = Arc::new(Mutex::new(conns));
        let stop = Arc::new(AtomicBool::new(false));
        let trickle = (kind == Kind::Trickle).then(|| {
            let conns = conns.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(mut conns) = conns.lock() {
                        for c in conns.iter_mut() {
                            // A write to a connection the server closed fails; that is fine.
                            let _ = c.write(b"x");
                        }
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            })
        });
        Flood {
            conns,
            stop,
            trickle,
            failed_connects,
        }
    }

    /// Connections opened.
    pub fn len(&self) -> usize {
        self.conns.lock().map_or(0, |c| c.len())
    }

    /// Whether no connection could be opened.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many connections the server has closed: a read sees the end of the stream or a
    /// reset (after whatever the server sent before, such as an HTTP/2 GOAWAY or a 408).
    pub fn closed_by_server(&self) -> usize {
        let Ok(mut conns) = self.conns.lock() else {
            return 0;
        };
        conns
            .iter_mut()
            .map(is_closed)
            .filter(|closed| *closed)
            .count()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.trickle.take() {
            let _ = t.join();
        }
        if let Ok(conns) = self.conns.lock() {
            for c in conns.iter() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Whether the peer has closed `stream`: reads (without blocking for long) until the end of
/// the stream or an error other than "would block".
fn is_closed(stream: &mut TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut buf = [0u8; 4096];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    let _ = stream.set_nonblocking(false);
    closed
}

/// Open file descriptors of process `pid` (entries of `/proc/<pid>/fd`).
///
/// # Panics
/// When the directory cannot be read.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/fd: {e}"))
        .count()
}

/// A `kB` field of `/proc/<pid>/status` (`VmHWM`, `VmRSS`), in bytes.
///
/// # Panics
/// When the file cannot be read or has no such field.
pub fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Runs `request` and returns its result with the time it took.
pub fn timed<T>(request: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let r = request();
    (r, started.elapsed())
}
