//! A recording webhook receiver, this crate's own fixture standing in for the on-call pager and
//! the ticket system that Alertmanager notifies (there is no real pager to run here). It
//! records every POST as its path, JSON body and arrival, and answers 200; the routing and
//! inhibiting the tests look at are Alertmanager's own.

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One POST the sink received.
#[derive(Debug, Clone)]
struct Post {
    path: String,
    body: Value,
    at: Instant,
}

/// The receiver, listening on `127.0.0.1:<port>` for as long as the test runs.
#[derive(Debug)]
pub struct WebhookSink {
    port: u16,
    received: Arc<Mutex<Vec<Post>>>,
}

impl WebhookSink {
    /// Starts the receiver on a free port.
    ///
    /// # Panics
    /// When no port can be bound.
    pub fn start() -> WebhookSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook sink");
        let port = listener
            .local_addr()
            .expect("local address of a bound listener")
            .port();
        let received: Arc<Mutex<Vec<Post>>> = Arc::default();
        let record = Arc::clone(&received);
        std::thread::spawn(move || {
            // A thread per connection: a slow or idle sender never holds up the next one (as a
            // real receiver would not), so a page's arrival is the moment Alertmanager sent it.
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let record = Arc::clone(&record);
                std::thread::spawn(move || {
                    if let Some(post) = read_post(&stream) {
                        record.lock().expect("the sink's lock").push(post);
                    }
                    let _ = (&stream).write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                });
            }
        });
        WebhookSink { port, received }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bodies of the POSTs received on `path` (such as Alertmanager's API
    /// `/api/v2/alerts`, whose body is an array of alerts), with when each arrived; oldest
    /// first.
    pub fn bodies(&self, path: &str) -> Vec<(Value, Instant)> {
        self.received
            .lock()
            .expect("the sink's lock")
            .iter()
            .filter(|post| post.path == path)
            .map(|post| (post.body.clone(), post.at))
            .collect()
    }

    /// The alerts of the notifications received on `path`, each with the notification's
    /// `receiver` added, and when it arrived; oldest first.
    pub fn alerts(&self, path: &str) -> Vec<(Value, Instant)> {
        self.received
            .lock()
            .expect("the sink's lock")
            .iter()
            .filter(|post| post.path == path)
            .flat_map(|post| {
                post.body["alerts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|mut alert| {
                        alert["receiver"] = post.body["receiver"].clone();
                        (alert, post.at)
                    })
            })
            .collect()
    }
}

/// Reads one request and keeps its path and body (a body that is not JSON is kept as null).
/// `None` when the request cannot be read.
fn read_post(stream: &TcpStream) -> Option<Post> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = crate::http::read_request(&mut BufReader::new(stream))?;
    Some(Post {
        path: request.path,
        body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
        at: Instant::now(),
    })
}
