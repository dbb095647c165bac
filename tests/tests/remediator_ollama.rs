//! The assistant backend's Ollama measures as `http_sequence` rules, exactly as
//! `examples/remediator-host.yml` ships them: "model missing → pull model" (`POST /api/pull`, verified
//! by the model being listed in `GET /api/tags`) and "RAM reclamation → unload"
//! (`POST /api/generate` with `keep_alive: 0`, verified by the model no longer being listed in
//! `GET /api/ps`).
//!
//! No Ollama server can be installed here, so the peer is a small stand-in written for this
//! test: it keeps the pulled and loaded models in memory, answers the four endpoints in the
//! shape Ollama documents, and records each request. It is not Ollama; what is tested is the
//! remediator's side (requests, bodies, statuses, verification), and that the shipped example
//! loads and fires.

use std::collections::BTreeSet;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use stackmedic_tests::http::read_request;
use stackmedic_tests::remediator::{alert, payload, Remediator};

/// What the stand-in holds and saw.
#[derive(Default)]
struct State {
    /// Models on disk (`/api/tags`).
    pulled: BTreeSet<String>,
    /// Models in memory (`/api/ps`).
    loaded: BTreeSet<String>,
    /// `(method, path, body)` of every request.
    requests: Vec<(String, String, Value)>,
    /// Answer `/api/pull` with this status instead of pulling.
    pull_fails: Option<u16>,
}

/// The stand-in of Ollama's API on `127.0.0.1`.
struct OllamaStandIn {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl OllamaStandIn {
    fn start() -> OllamaStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        OllamaStandIn { port, state }
    }

    fn requests(&self, path: &str) -> Vec<Value> {
        let s = self.state.lock().unwrap();
        s.requests
            .iter()
            .filter(|(_, p, _)| p == path)
            .map(|(_, _, b)| b.clone())
            .collect()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    while let Some(request) = read_request(&mut reader) {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let (status, answer) = answer(state, &request.method, &request.path, body);
        let text = answer.to_string();
        let mut out = stream.try_clone().unwrap();
        let _ = write!(
            out,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
    }
}

fn model_list(names: &BTreeSet<String>) -> Value {
    let models: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "model": n, "size": 1_300_000_000u64, "digest": "0123456789ab"}))
        .collect();
    json!({ "models": models })
}

fn answer(state: &Mutex<State>, method: &str, path: &str, body: Value) -> (u16, Value) {
    let mut s = state.lock().unwrap();
    s.requests
        .push((method.to_string(), path.to_string(), body.clone()));
    let model = body["model"].as_str().unwrap_or_default().to_string();
    match (method, path) {
        ("GET", "/api/tags") => (200, model_list(&s.pulled)),
        ("GET", "/api/ps") => (200, model_list(&s.loaded)),
        ("POST", "/api/pull") => {
            if let Some(status) = s.pull_fails {
                return (
                    status,
                    json!({"error": "pull model manifest: file does not exist"}),
                );
            }
            // As Ollama without streaming: one answer once the model is there.
            s.pulled.insert(model);
            (200, json!({"status": "success"}))
        }
        ("POST", "/api/generate") if body["keep_alive"] == json!(0) => {
            s.loaded.remove(&model);
            (
                200,
                json!({"model": model, "response": "", "done": true, "done_reason": "unload"}),
            )
        }
        _ => (404, json!({"error": "not found"})),
    }
}

/// The Ollama targets and rules of `examples/remediator-host.yml`, with the stand-in's address
/// instead of Ollama's.
fn shipped_config(port: u16) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/remediator-host.yml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains("http://127.0.0.1:11434"),
        "the example's address changed"
    );
    let text = text.replace(
        "http://127.0.0.1:11434",
        &format!("http://127.0.0.1:{port}"),
    );
    let example: Value = serde_saphyr::from_str(&text).unwrap();
    let ours = |v: &Value, key: &str| v[key].as_str().is_some_and(|n| n.starts_with("ollama-"));
    let targets: Vec<Value> = example["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| ours(t, "name"))
        .cloned()
        .collect();
    let rules: Vec<Value> = example["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| ours(r, "target"))
        .cloned()
        .collect();
    assert_eq!((targets.len(), rules.len()), (2, 2), "{rules:?}");
    // JSON is YAML.
    json!({"targets": targets, "rules": rules}).to_string()
}

#[test]
fn remediator_pulls_a_missing_model_and_unloads_one_as_the_example_ships_them() {
    let ollama = OllamaStandIn::start();
    ollama
        .state
        .lock()
        .unwrap()
        .loaded
        .insert("gpt-oss:20b".into());
    let mut rem = Remediator::start(&shipped_config(ollama.port));

    rem.fire(
        &[
            ("alertname", "OllamaModelMissing"),
            ("probe", "backend-summary"),
            ("remediation", "ollama_pull"),
            ("severity", "info"),
        ],
        "2026-11-22T10:00:00Z",
    );
    let ok = rem.wait_for("succeeded", 1, Duration::from_secs(60));
    let d = ok[0]["detail"].as_str().unwrap();
    assert_eq!(ok[0]["rule"], "ollama-pull-missing-model");
    assert!(d.contains("POST /api/pull -> 200"), "{d}");
    assert!(d.contains("/api/tags"), "{d}");
    let pulls = ollama.requests("/api/pull");
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(pulls[0]["model"], "llama3.2:1b");
    assert_eq!(pulls[0]["stream"], false);
    assert!(ollama.state.lock().unwrap().pulled.contains("llama3.2:1b"));
    assert!(!ollama.requests("/api/tags").is_empty());

    rem.fire(
        &[
            ("alertname", "OllamaMemoryHigh"),
            ("probe", "ollama-ps"),
            ("remediation", "ollama_unload"),
            ("severity", "info"),
        ],
        "2026-11-22T10:01:00Z",
    );
    let ok = rem.wait_for("succeeded", 2, Duration::from_secs(60));
    let unload = ok
        .iter()
        .find(|r| r["rule"] == "ollama-unload-model")
        .unwrap();
    let d = unload["detail"].as_str().unwrap();
    assert!(d.contains("POST /api/generate -> 200"), "{d}");
    let gens = ollama.requests("/api/generate");
    assert_eq!(gens.len(), 1);
    assert_eq!(gens[0]["model"], "gpt-oss:20b");
    assert_eq!(gens[0]["keep_alive"], 0);
    assert!(ollama.state.lock().unwrap().loaded.is_empty());
}

#[test]
fn remediator_model_pull_that_does_not_list_the_model_fails_its_verification() {
    let ollama = OllamaStandIn::start();
    ollama.state.lock().unwrap().pull_fails = Some(500);
    // One attempt, and a short verification deadline instead of the example's minute.
    let mut config: Value = serde_json::from_str(&shipped_config(ollama.port)).unwrap();
    for t in config["targets"].as_array_mut().unwrap() {
        t["max_attempts"] = json!(1);
        t["verify"]["deadline"] = json!("3s");
    }
    let config = config.to_string();
    let mut rem = Remediator::start(&config);
    rem.fire(
        &[
            ("alertname", "OllamaModelMissing"),
            ("probe", "backend-summary"),
            ("remediation", "ollama_pull"),
        ],
        "2026-11-22T10:00:00Z",
    );
    let failed = rem.wait_for("failed", 1, Duration::from_secs(60));
    let d = failed[0]["detail"].as_str().unwrap();
    assert!(d.contains("unexpected status 500"), "{d}");

    // A pull that answers 200 but leaves the model unlisted fails verification of /api/tags.
    // The first outage (escalated after its one attempt) ends when its alert resolves.
    let resolved = rem
        .webhook(
            &payload(vec![alert(
                "resolved",
                &[
                    ("alertname", "OllamaModelMissing"),
                    ("probe", "backend-summary"),
                    ("remediation", "ollama_pull"),
                ],
                "2026-11-22T10:00:00Z",
            )]),
            None,
        )
        .unwrap();
    assert_eq!(resolved.status, 200);
    ollama.state.lock().unwrap().pull_fails = Some(200);
    rem.fire(
        &[
            ("alertname", "OllamaModelMissing"),
            ("probe", "backend-summary"),
            ("remediation", "ollama_pull"),
        ],
        "2026-11-22T11:00:00Z",
    );
    let failed = rem.wait_for("failed", 2, Duration::from_secs(60));
    let d = failed[0]["detail"].as_str().unwrap();
    assert!(d.contains("/api/tags: the body does not match"), "{d}");
}
