//! **Our own fixture**, not a real peer: the assistant backend (a FastAPI-style app behind nginx)
//! is not public, so this module stands in for the few endpoints the exporter probes, on a
//! plain `std::net::TcpListener`:
//!
//! * `GET /api/ready`: 200 `{"ready":true}`, or 503 `{"ready":false}` while warming;
//! * `GET /status/summary`: the summary JSON of the assistant backend with `X-Status-Path: api`, e.g.
//!   `{"ready":false,"llm":{"path":"warming","primary_model_present":false},
//!   "status":{"fallback":false},"build":{"sha":"abc123"}}`; the path is switched at run time
//!   with [`Backend::set_path`];
//! * `OPTIONS /chat`: a CORS preflight that allows only [`ALLOWED_ORIGIN`] (a disallowed origin
//!   gets 200 without `Access-Control-Allow-Origin`, as many CORS middlewares answer);
//! * `GET /malformed`: 200 with a truncated JSON body;
//! * `GET /huge` (2 MiB with `Content-Length`) and `GET /huge-chunked` (2 MiB, chunked);
//! * `GET /odd-header`: 200 with `X-Status-Path: v3-beta`, a value of neither known class.
//!
//! [`Silent`] is a listener that accepts connections and never answers.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The only origin the fixture's `/chat` preflight allows.
pub const ALLOWED_ORIGIN: &str = "https://app.example";

/// Size of the `/huge` bodies: twice the exporter's default body limit.
pub const HUGE_BYTES: usize = 2 << 20;

/// The summary's `llm.path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmPath {
    /// The primary model is still being pulled; not ready.
    Warming,
    /// The primary model serves.
    Primary,
    /// A fallback provider serves.
    Fallback,
}

#[derive(Debug)]
struct State {
    path: LlmPath,
    sha: String,
    /// Summaries still to be sent without `llm.path`.
    omit_path: u32,
}

/// The running fixture; stopped when dropped.
#[derive(Debug)]
pub struct Backend {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// Starts on a free port, warming, with build sha `abc123`.
    pub fn start() -> Backend {
        let state = Arc::new(Mutex::new(State {
            path: LlmPath::Warming,
            sha: "abc123".into(),
            omit_path: 0,
        }));
        Self::start_on(crate::free_port(), state)
    }

    fn start_on(port: u16, state: Arc<Mutex<State>>) -> Backend {
        // std sets SO_REUSEADDR on Unix, so a restart can take the same port at once.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .unwrap_or_else(|e| panic!("backend fixture cannot bind 127.0.0.1:{port}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let state = state.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let state = state.clone();
                            std::thread::spawn(move || serve(stream, &state));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                // The listener is dropped here: new connections are refused from now on.
            })
        };
        Backend {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Switches the summary's `llm.path` (and with it readiness and the model/fallback flags).
    pub fn set_path(&self, path: LlmPath) {
        self.state.lock().expect("state").path = path;
    }

    /// The next `n` summaries lack the `llm.path` field, as a backend answers while its LLM
    /// section is being rebuilt.
    pub fn omit_path(&self, n: u32) {
        self.state.lock().expect("state").omit_path = n;
    }

    /// How many of the summaries asked for by [`Backend::omit_path`] are still to be sent.
    pub fn omitted_paths_pending(&self) -> u32 {
        self.state.lock().expect("state").omit_path
    }

    /// Changes the build sha the summary reports.
    pub fn set_sha(&self, sha: &str) {
        self.state.lock().expect("state").sha = sha.to_owned();
    }

    /// Stops listening: connections are refused until [`Backend::restart`].
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Listens again on the same port, with the same state.
    pub fn restart(&mut self) {
        self.stop();
        *self = Self::start_on(self.port, self.state.clone());
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let header = |name: &str| {
        text.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let (path_now, sha, omit_path) = {
        let mut s = state.lock().expect("state");
        let omit = path == "/status/summary" && s.omit_path > 0;
        if omit {
            s.omit_path -= 1;
        }
        (s.path, s.sha.clone(), omit)
    };
    let json = ("Content-Type", "application/json".to_owned());
    let (status, headers, body): (u16, Vec<(&str, String)>, Vec<u8>) =
        match (method.as_str(), path.as_str()) {
            ("GET", "/api/ready") => {
                let ready = path_now != LlmPath::Warming;
                let body = format!("{{\"ready\":{ready}}}").into_bytes();
                (if ready { 200 } else { 503 }, vec![json], body)
            }
            ("GET", "/status/summary") => {
                let (name, present, fallback) = match path_now {
                    LlmPath::Warming => ("warming", false, false),
                    LlmPath::Primary => ("primary", true, false),
                    LlmPath::Fallback => ("fallback", false, true),
                };
                let llm = if omit_path {
                    serde_json::json!({"primary_model_present": present})
                } else {
                    serde_json::json!({"path": name, "primary_model_present": present})
                };
                let body = serde_json::json!({
                    "ready": path_now != LlmPath::Warming,
                    "llm": llm,
                    "status": {"fallback": fallback},
                    "build": {"sha": sha},
                });
                (
                    200,
                    vec![json, ("X-Status-Path", "api".to_owned())],
                    body.to_string().into_bytes(),
                )
            }
            ("OPTIONS", "/chat") => {
                let origin = header("origin").unwrap_or_default();
                let mut h = vec![("Vary", "Origin".to_owned())];
                if origin == ALLOWED_ORIGIN {
                    h.push(("Access-Control-Allow-Origin", origin));
                    h.push(("Access-Control-Allow-Methods", "GET, POST, OPTIONS".into()));
                    h.push(("Access-Control-Allow-Headers", "content-type".into()));
                }
                (200, h, Vec::new())
            }
            ("GET", "/malformed") => (200, vec![json], b"{\"ready\": tru".to_vec()),
            ("GET", "/huge") => (200, vec![json], vec![b' '; HUGE_BYTES]),
            ("GET", "/huge-chunked") => {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                      Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                );
                let chunk = vec![b' '; 64 * 1024];
                for _ in 0..HUGE_BYTES / chunk.len() {
                    let mut c = format!("{:x}\r\n", chunk.len()).into_bytes();
                    c.extend_from_slice(&chunk);
                    c.extend_from_slice(b"\r\n");
                    if stream.write_all(&c).is_err() {
                        return;
                    }
                }
                let _ = stream.write_all(b"0\r\n\r\n");
                return;
            }
            ("GET", "/odd-header") => (
                200,
                vec![("X-Status-Path", "v3-beta".to_owned())],
                b"ok\n".to_vec(),
            ),
            _ => (404, Vec::new(), b"not found\n".to_vec()),
        };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Other",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    let _ = stream.write_all(&bytes);
    let _ = stream.flush();
}

/// A listener that accepts connections and never answers (nor closes them) while it lives.
#[derive(Debug)]
pub struct Silent {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Silent {
    /// Starts on a free port.
    pub fn start() -> Silent {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => held.push(s),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Silent {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
