//! `http_sequence` and `ads_route_add` against fixtures, because no real peer exists here: the
//! camera/PLC app's admin API is the runbooks' own application (the test library's recorder,
//! [`AdminApi`], stands in for it and records every call, in order, with its time), and no
//! real TwinCAT router runs here (a UDP responder below answers the route-add request on
//! loopback as a router does, and records what it was sent).

use std::net::UdpSocket;
use std::time::Duration;

use stackmedic_tests::admin_api::{AdminApi, Rule};
use stackmedic_tests::remediator::{alert, payload, Remediator};

/// What the route-add responder was sent: tag → bytes.
type Tags = Vec<(u16, Vec<u8>)>;

/// The UDP route-add responder: parses one request of the TwinCAT UDP discovery protocol
/// (service 6, add route), records its tags and answers with status 0.
fn route_responder() -> (u16, std::sync::mpsc::Receiver<(u32, Tags)>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            return;
        };
        let d = &buf[..n];
        let u32_at = |i: usize| u32::from_le_bytes(d[i..i + 4].try_into().unwrap());
        let u16_at = |i: usize| u16::from_le_bytes(d[i..i + 2].try_into().unwrap());
        assert_eq!(u32_at(0), 0x7114_6603, "magic");
        let service = u32_at(8);
        let count = u32_at(20) as usize;
        let mut tags = Vec::new();
        let mut i = 24;
        for _ in 0..count {
            let (tag, len) = (u16_at(i), u16_at(i + 2) as usize);
            tags.push((tag, d[i + 4..i + 4 + len].to_vec()));
            i += 4 + len;
        }
        let mut reply = Vec::new();
        reply.extend_from_slice(&0x7114_6603u32.to_le_bytes());
        reply.extend_from_slice(&0u32.to_le_bytes());
        reply.extend_from_slice(&(service | 0x8000_0000).to_le_bytes());
        reply.extend_from_slice(&[127, 0, 0, 1, 1, 1]);
        reply.extend_from_slice(&10000u16.to_le_bytes());
        reply.extend_from_slice(&1u32.to_le_bytes());
        reply.extend_from_slice(&1u16.to_le_bytes());
        reply.extend_from_slice(&4u16.to_le_bytes());
        reply.extend_from_slice(&0u32.to_le_bytes());
        sock.send_to(&reply, from).unwrap();
        let _ = tx.send((service, tags));
    });
    (port, rx)
}

fn text(tags: &Tags, tag: u16) -> String {
    let v = &tags
        .iter()
        .find(|(t, _)| *t == tag)
        .unwrap_or_else(|| panic!("no tag {tag}"))
        .1;
    String::from_utf8_lossy(v.strip_suffix(&[0]).unwrap_or(v)).into_owned()
}

#[test]
fn remediator_fixtures_http_sequence_and_ads_route_add() {
    // Answers 500 to the garage camera's start, 200 otherwise.
    let api = AdminApi::start(&[Rule::status("/garage/webrtc/start", 500)]);
    let admin = api.url("/");
    let (udp, routes) = route_responder();
    let dir = tempfile::Builder::new()
        .prefix("stackmedic-remediator-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("admin-token"), "admin-secret\n").unwrap();
    std::fs::write(dir.path().join("plc-password"), "plc-pw\n").unwrap();
    let config = format!(
        "targets:\n\
         - name: camera-app\n  http: {{base_url: '{admin}', bearer_token_file: '{{dir}}/admin-token'}}\n  verify: {{url: '{admin}api/monitor/streams', deadline: 5s}}\n\
         - name: plc-router\n  ads: {{router: 127.0.0.1, port: {udp}, net_id: 127.0.0.1.1.1, route_host: 127.0.0.1, route_name: stackmedic, username: Administrator, password_file: '{{dir}}/plc-password'}}\n\
         rules:\n\
         - name: ring-webrtc-stuck\n  matchers: ['alertname=\"RingWebrtcStuck\"']\n  action: http_sequence\n  target: camera-app\n  params: {{camera: {{label: camera, allowed: [front-door, garage]}}}}\n  steps:\n\
         \x20 - {{method: POST, path: '/api/ring/{{camera}}/webrtc/stop', delay_after: 700ms}}\n\
         \x20 - {{method: POST, path: '/api/ring/{{camera}}/webrtc/start', expect_status: [200, 202]}}\n\
         - name: plc-route\n  matchers: ['alertname=\"PlcRouteMissing\"']\n  action: ads_route_add\n  target: plc-router\n"
    );
    let mut rem = Remediator::start_in(dir, &config);

    let p = payload(vec![alert(
        "firing",
        &[("alertname", "RingWebrtcStuck"), ("camera", "front-door")],
        "2026-11-22T10:00:00Z",
    )]);
    assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    let ok = rem.wait_for("succeeded", 1, Duration::from_secs(30));
    assert_eq!(ok[0]["action"], "http_sequence");
    let c = api.calls();
    assert!(c.len() >= 3, "{c:?}");
    assert_eq!(
        (c[0].method.as_str(), c[0].path.as_str()),
        ("POST", "/api/ring/front-door/webrtc/stop")
    );
    assert_eq!(
        (c[1].method.as_str(), c[1].path.as_str()),
        ("POST", "/api/ring/front-door/webrtc/start")
    );
    assert_eq!(
        (c[2].method.as_str(), c[2].path.as_str()),
        ("GET", "/api/monitor/streams")
    );
    let gap = c[1].at - c[0].at;
    assert!(
        gap >= Duration::from_millis(700),
        "delay between stop and start was {gap:?}"
    );
    assert!(
        gap < Duration::from_secs(5),
        "delay between stop and start was {gap:?}"
    );
    assert_eq!(c[0].authorization, "Bearer admin-secret");
    assert_eq!(c[1].authorization, "Bearer admin-secret");

    // A failing step stops the sequence and counts as a failed attempt.
    let p = payload(vec![alert(
        "firing",
        &[("alertname", "RingWebrtcStuck"), ("camera", "garage")],
        "2026-11-22T10:00:00Z",
    )]);
    assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    let failed = rem.wait_for("failed", 1, Duration::from_secs(30));
    assert!(
        failed[0]["detail"]
            .as_str()
            .unwrap()
            .contains("unexpected status 500"),
        "{failed:?}"
    );

    let p = payload(vec![alert(
        "firing",
        &[("alertname", "PlcRouteMissing")],
        "2026-11-22T10:00:00Z",
    )]);
    assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    let (service, tags) = routes
        .recv_timeout(Duration::from_secs(30))
        .expect("no route-add request arrived");
    assert_eq!(service, 6, "service add route");
    assert_eq!(text(&tags, 13), "Administrator");
    assert_eq!(text(&tags, 2), "plc-pw");
    assert_eq!(text(&tags, 12), "stackmedic");
    assert_eq!(text(&tags, 5), "127.0.0.1");
    assert_eq!(
        tags.iter().find(|(t, _)| *t == 7).unwrap().1,
        vec![127, 0, 0, 1, 1, 1]
    );
    let ok = rem.wait_for("succeeded", 2, Duration::from_secs(30));
    assert_eq!(ok[0]["action"], "ads_route_add");
}

/// A step whose target does not listen fails with the cause, not only the HTTP client's
/// "error sending request": the attempt's detail (shown on the page and in the page's
/// escalation) says the connection was refused.
#[test]
fn remediator_http_sequence_failure_names_its_cause() {
    let closed = stackmedic_tests::free_port();
    let config = format!(
        "targets:\n\
         - name: camera-app\n  max_attempts: 1\n  http: {{base_url: 'http://127.0.0.1:{closed}/'}}\n\
         rules:\n\
         - name: daemon-restart\n  matchers: ['alertname=\"CameraDaemonUnhealthy\"']\n  action: http_sequence\n  target: camera-app\n  steps:\n\
         \x20 - {{method: POST, path: /api/admin/service/restart}}\n"
    );
    let dir = tempfile::Builder::new()
        .prefix("stackmedic-remediator-")
        .tempdir()
        .unwrap();
    let mut rem = Remediator::start_in(dir, &config);
    let p = payload(vec![alert(
        "firing",
        &[("alertname", "CameraDaemonUnhealthy")],
        "2026-11-22T10:00:00Z",
    )]);
    assert_eq!(rem.webhook(&p, None).unwrap().status, 200);
    let failed = rem.wait_for("failed", 1, Duration::from_secs(30));
    let detail = failed[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("step 0 POST /api/admin/service/restart: error sending request")
            && detail.contains("Connection refused"),
        "{failed:#?}"
    );
}
