//! The `ads` target: answers of a PLC as the exporter's `ads` probe reads them, end to end
//! through the probe's `run`. The first byte chooses the source of the answers:
//!
//! * even: a native AMS/ADS router on loopback (a stand-in written here: no real router can be
//!   made to answer arbitrary bytes) that answers each request of the probe (read state, then
//!   read device info) with the next reply described by the input, and closes the connection
//!   when the input is used up or no request follows within 10 ms;
//! * odd: the app's route-status endpoint, an HTTP stand-in on loopback serving the rest of
//!   the input as the JSON body.
//!
//! A reply description is `flags u8, error code u32 LE, length u8, payload`: flag bits make the
//! reply leave the request's invoke ID (1), command (2), addresses (4) or state flags (8)
//! instead of matching them. Every packet is framed consistently (its AMS/TCP length and AMS
//! data length match the payload): the `ads` crate's reader (0.4.4) panics on a packet shorter
//! than an AMS header and allocates whatever length a packet claims, which is outside this
//! project's code (see `docs/fuzzing.md`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use stackmedic_exporter::metrics::Samples;
use stackmedic_exporter::probe::ads::{AdsConfig, AdsProbe};
use stackmedic_exporter::probe::{RunContext, Shared};

/// The input the stand-ins answer with, set before each run.
static INPUT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// A PLC's answers to the `ads` probe (see the module documentation).
pub fn ads_replies(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    *INPUT.lock().unwrap_or_else(|p| p.into_inner()) = rest.to_vec();
    let rt = runtime();
    let mut out = Samples::default();
    if mode % 2 == 0 {
        let shared = Arc::new(Shared::default());
        let cfg: AdsConfig = serde_json::from_value(serde_json::json!({
            "host": "127.0.0.1",
            "port": router_port(),
            "ams_net_id": "5.1.2.3.1.1",
            "source_ams_net_id": "127.0.0.1.1.1",
        }))
        .expect("a valid native configuration");
        let probe = AdsProbe::new(cfg, &shared).expect("a native probe");
        let cx = RunContext::new(Duration::from_secs(2), shared);
        let _ = rt.block_on(probe.run(&cx, &mut out));
    } else {
        let (probe, shared) = route_status_probe();
        let cx = RunContext::new(Duration::from_secs(2), shared.clone());
        let _ = rt.block_on(probe.run(&cx, &mut out));
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fn input() -> Vec<u8> {
    INPUT.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The port of the AMS router stand-in, started on first use.
fn router_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the router stand-in");
        let port = listener.local_addr().expect("its address").port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let replies = input();
                std::thread::spawn(move || answer_ams(stream, &replies));
            }
        });
        port
    })
}

/// One reply described by the input.
struct Reply<'a> {
    flags: u8,
    error: u32,
    payload: &'a [u8],
}

fn replies(mut data: &[u8]) -> Vec<Reply<'_>> {
    let mut out = Vec::new();
    while data.len() >= 6 {
        let flags = data[0];
        let error = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
        let len = usize::from(data[5]).min(data.len() - 6);
        out.push(Reply {
            flags,
            error,
            payload: &data[6..6 + len],
        });
        data = &data[6 + len..];
    }
    out
}

fn answer_ams(mut stream: TcpStream, input: &[u8]) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(10)));
    for reply in replies(input) {
        // The request: the AMS/TCP header (2 reserved bytes, a length), then the AMS header
        // (target 0..8, source 8..16, command 16..18, …, invoke ID 28..32) and its data.
        let mut head = [0u8; 6];
        if stream.read_exact(&mut head).is_err() {
            return;
        }
        let len = u32::from_le_bytes([head[2], head[3], head[4], head[5]]) as usize;
        if !(32..=1 << 16).contains(&len) {
            return;
        }
        let mut request = vec![0u8; len];
        if stream.read_exact(&mut request).is_err() {
            return;
        }
        let (target, source) = (&request[0..8], &request[8..16]);
        let mut ams = Vec::with_capacity(32 + reply.payload.len());
        if reply.flags & 4 == 0 {
            ams.extend_from_slice(source);
            ams.extend_from_slice(target);
        } else {
            ams.extend_from_slice(target);
            ams.extend_from_slice(source);
        }
        let command = if reply.flags & 2 == 0 {
            [request[16], request[17]]
        } else {
            [request[16] ^ 0x01, request[17]]
        };
        ams.extend_from_slice(&command);
        let state_flags: u16 = if reply.flags & 8 == 0 { 5 } else { 4 };
        ams.extend_from_slice(&state_flags.to_le_bytes());
        ams.extend_from_slice(&(reply.payload.len() as u32).to_le_bytes());
        ams.extend_from_slice(&reply.error.to_le_bytes());
        let invoke = u32::from_le_bytes([request[28], request[29], request[30], request[31]]);
        let invoke = if reply.flags & 1 == 0 {
            invoke
        } else {
            invoke.wrapping_add(1)
        };
        ams.extend_from_slice(&invoke.to_le_bytes());
        ams.extend_from_slice(reply.payload);
        let mut packet = vec![0u8, 0u8];
        packet.extend_from_slice(&(ams.len() as u32).to_le_bytes());
        packet.extend_from_slice(&ams);
        if stream.write_all(&packet).is_err() {
            return;
        }
    }
}

/// The route-status probe and its shared resources, built once (its HTTP client is costly).
fn route_status_probe() -> &'static (AdsProbe, Arc<Shared>) {
    static PROBE: OnceLock<(AdsProbe, Arc<Shared>)> = OnceLock::new();
    PROBE.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the app stand-in");
        let port = listener.local_addr().expect("its address").port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                answer_http(stream, &input());
            }
        });
        let shared = Arc::new(Shared::default());
        let cfg: AdsConfig = serde_json::from_value(serde_json::json!({
            "route_status": {
                "url": format!("http://127.0.0.1:{port}/api/plc/ads/route/status"),
                "reachable": "/reachable",
                "route": "/route/present",
                "ads_state": "/ads/state",
                "device_state": "/ads/device_state",
                "error_code": "/ads/last_error",
            }
        }))
        .expect("a valid route-status configuration");
        let probe = AdsProbe::new(cfg, &shared).expect("a route-status probe");
        (probe, shared)
    })
}

fn answer_http(mut stream: TcpStream, body: &[u8]) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes());
    let _ = stream.write_all(body);
}
