//! A fixture standing in for the camera/PLC application's admin API, because no real peer of
//! it exists here (the application is the runbooks' own): an HTTP/1.1 listener on
//! `127.0.0.1:0` that records every request, in order, with its arrival time — recorded when it
//! arrives, before any answer — and answers by the first rule whose pattern the path contains:
//! after that rule's delay, with its status (200 and no delay when none matches).
//!
//! ```text
//! let api = AdminApi::start(&[Rule::status("/garage/", 500), Rule::slow("/slow/", Duration::from_secs(2))]);
//! // … base_url: api.url("/")
//! assert_eq!(api.count("/api/streams/cam1/restart"), 1);
//! ```

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the fixture received it.
#[derive(Debug, Clone)]
pub struct Call {
    /// When it arrived.
    pub at: Instant,
    /// Its method.
    pub method: String,
    /// Its path (with query).
    pub path: String,
    /// Its `Authorization` header, or empty.
    pub authorization: String,
}

/// How requests whose path contains `pattern` are answered.
#[derive(Debug, Clone)]
pub struct Rule {
    /// A substring of the path.
    pub pattern: String,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Answer with this status.
    pub status: u16,
    /// Answer with this JSON body (by default `{}` for a success, `boom` otherwise).
    pub body: Option<String>,
}

impl Rule {
    /// Answer at once with `status`.
    pub fn status(pattern: &str, status: u16) -> Rule {
        Rule {
            pattern: pattern.into(),
            delay: Duration::ZERO,
            status,
            body: None,
        }
    }

    /// Answer at once with 200 and `body` (JSON), such as the app's route status.
    pub fn json(pattern: &str, body: &str) -> Rule {
        Rule {
            body: Some(body.into()),
            ..Rule::status(pattern, 200)
        }
    }

    /// Answer 200 after `delay`.
    pub fn slow(pattern: &str, delay: Duration) -> Rule {
        Rule {
            pattern: pattern.into(),
            delay,
            status: 200,
            body: None,
        }
    }

    /// Never answer in time: wait ten minutes.
    pub fn hang(pattern: &str) -> Rule {
        Rule::slow(pattern, Duration::from_secs(600))
    }
}

/// The running fixture; its threads end with the test process.
pub struct AdminApi {
    port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl AdminApi {
    /// Starts the fixture with `rules`.
    ///
    /// # Panics
    /// When it cannot listen on loopback.
    pub fn start(rules: &[Rule]) -> AdminApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the admin API fixture");
        let port = listener.local_addr().expect("local address").port();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let rec = calls.clone();
        let rules = rules.to_vec();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let rec = rec.clone();
                let rules = rules.clone();
                std::thread::spawn(move || serve(stream, &rec, &rules));
            }
        });
        AdminApi { port, calls }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far, in order of arrival.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many requests had exactly `path`.
    pub fn count(&self, path: &str) -> usize {
        self.calls().iter().filter(|c| c.path == path).count()
    }
}

fn serve(mut stream: std::net::TcpStream, rec: &Mutex<Vec<Call>>, rules: &[Rule]) {
    let Ok(read) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read);
    while let Some(request) = crate::http::read_request(&mut reader) {
        rec.lock().unwrap_or_else(|p| p.into_inner()).push(Call {
            at: Instant::now(),
            method: request.method.clone(),
            path: request.path.clone(),
            authorization: request
                .header("authorization")
                .unwrap_or_default()
                .to_owned(),
        });
        let rule = rules.iter().find(|r| request.path.contains(&r.pattern));
        let (delay, status) = rule.map_or((Duration::ZERO, 200), |r| (r.delay, r.status));
        std::thread::sleep(delay);
        let text = match rule.and_then(|r| r.body.as_deref()) {
            Some(body) => body,
            None if status < 300 => "{}",
            None => "boom",
        };
        let resp = format!(
            "HTTP/1.1 {status} Fixture\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n{text}",
            text.len()
        );
        if stream.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}
