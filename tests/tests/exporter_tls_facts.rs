//! TLS certificate facts of every probe kind that talks HTTPS (`cors`, `status_path`, `hls`,
//! `sri` with `base_url`, `ads` with `route_status`), against two real nginx servers with
//! certificates made by `openssl`: one from a CA the probes trust through `ca_file` that expires
//! in 3 days, one from a CA nobody trusts. Each probe exports one set of facts for its
//! configured endpoint: the leaf's `notAfter`, whether the chain verified (or why not) and the
//! subject and issuer, also when the chain is untrusted and the probe itself fails.

use std::time::{SystemTime, UNIX_EPOCH};

use stackmedic_tests::exporter::{value, Exporter, WAIT};
use stackmedic_tests::metrics::{find, find_all, Sample};
use stackmedic_tests::nginx::Nginx;

/// The app's endpoints, each kind's target, served over TLS with the certificate in `certs`.
fn app_nginx(certs: &std::path::Path) -> Nginx {
    let d = certs.display();
    let nginx = Nginx::start(&format!(
        "listen 127.0.0.1:{{port}} ssl;\n\
         ssl_certificate {d}/server.crt;\n\
         ssl_certificate_key {d}/server.key;\n\
         root {{www}};\n\
         location = /chat {{\n\
             add_header Access-Control-Allow-Origin $http_origin always;\n\
             add_header Access-Control-Allow-Methods POST always;\n\
             add_header Access-Control-Allow-Headers Content-Type always;\n\
             return 204;\n\
         }}\n\
         location = /api/ready {{ add_header X-Status-Path api always; return 200 'ok'; }}\n"
    ));
    nginx.write(
        "www/live/index.m3u8",
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXTINF:2.0,\nseg0.ts\n#EXT-X-ENDLIST\n",
    );
    nginx.write("www/live/seg0.ts", [0x47u8; 188]);
    nginx.write("www/assets/app.js", "console.log('ok');\n");
    nginx.write(
        "www/api/plc/ads/route/status",
        r#"{"status": "connected", "route": {"present": true}, "ads": {"state": "Run", "device_state": 0, "last_error": null}}"#,
    );
    nginx
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// The probes of one server, named `<kind>-<suffix>`, with `tls` as each one's TLS settings.
fn probes(nginx: &Nginx, suffix: &str, tls: &str, manifest: &std::path::Path) -> String {
    let base = format!("https://127.0.0.1:{}", nginx.port());
    let m = manifest.display();
    format!(
        "  - name: cors-{suffix}\n    cors: {{url: '{base}/chat', origin: 'https://app.example', tls: {tls}}}\n\
         \x20 - name: status_path-{suffix}\n    status_path: {{url: '{base}/api/ready', tls: {tls}}}\n\
         \x20 - name: hls-{suffix}\n    hls: {{url: '{base}/live/index.m3u8', check_newest_segment: true, tls: {tls}}}\n\
         \x20 - name: sri-{suffix}\n    sri: {{manifest: '{m}', base_url: '{base}/', tls: {tls}}}\n\
         \x20 - name: ads-{suffix}\n    ads:\n      route_status:\n        url: '{base}/api/plc/ads/route/status'\n        reachable: /status\n        route: /route/present\n        ads_state: /ads/state\n        tls: {tls}\n"
    )
}

const KINDS: [&str; 5] = ["cors", "status_path", "hls", "sri", "ads"];

/// The one sample of `name` for `probe`; more than one would be duplicate label sets.
fn only<'a>(s: &'a [Sample], name: &str, probe: &str) -> &'a Sample {
    let all = find_all(s, name, &[("probe", probe)]);
    assert_eq!(all.len(), 1, "{probe}: {name}: {all:?}");
    all[0]
}

#[test]
fn every_https_probe_kind_reports_its_certificate() {
    let (trusted, unknown) = stackmedic_tests::tls::expiring_and_unknown();
    let a = app_nginx(trusted.path());
    let b = app_nginx(unknown.path());
    // The manifest's digest is of the file both servers deploy; only trust decides the result.
    let manifest = trusted.path().join("sri-manifest.json");
    let asset = a.www().join("assets/app.js");
    let digest = stackmedic_tests::tls::openssl_sri("sha384", &asset);
    std::fs::write(
        &manifest,
        serde_json::json!({ "assets/app.js": { "sha384": digest } }).to_string(),
    )
    .expect("write manifest");
    let ca = format!("{{ca_file: '{}'}}", trusted.path().join("ca.crt").display());
    let config = format!(
        "global: {{interval: 500ms, timeout: 450ms}}\nprobes:\n{}{}",
        probes(&a, "trusted", &ca, &manifest),
        probes(&b, "untrusted", "{}", &manifest),
    );
    let mut exporter = Exporter::start(&config);
    let names: Vec<String> = KINDS
        .iter()
        .flat_map(|k| [format!("{k}-trusted"), format!("{k}-untrusted")])
        .collect();
    let s = exporter.wait_for("every probe reported its certificate", WAIT, |s| {
        names.iter().all(|p| {
            find(s, "stackmedic_tls_chain_verified", &[("probe", p)]).is_some()
                && find(s, "stackmedic_probe_success", &[("probe", p)]).is_some()
        })
    });
    let success = |p: &str| value(&s, "stackmedic_probe_success", &[("probe", p)]);

    for kind in KINDS {
        // Trusted through ca_file, expiring in 3 days: the probe works, the chain verified,
        // notAfter to the second (openssl -days 3).
        let p = format!("{kind}-trusted");
        let p = p.as_str();
        assert_eq!(success(p), 1.0, "{p}: {s:?}");
        assert_eq!(
            only(&s, "stackmedic_tls_chain_verified", p).value,
            1.0,
            "{p}"
        );
        let left = only(&s, "stackmedic_tls_not_after_timestamp_seconds", p).value - now();
        assert!(
            (3.0 * 86400.0 - 600.0..=3.0 * 86400.0).contains(&left),
            "{p}: {left} s left, expected about 3 days"
        );
        only(&s, "stackmedic_tls_not_before_timestamp_seconds", p);
        assert!(find_all(&s, "stackmedic_tls_verify_error", &[("probe", p)]).is_empty());
        let info = only(&s, "stackmedic_tls_certificate_info", p);
        assert_eq!(info.label("subject"), Some("CN=127.0.0.1"), "{p}");
        assert_eq!(info.label("issuer"), Some("CN=stackmedic test CA"), "{p}");

        // Unknown CA: the probe fails with reason tls, and the certificate is still dated.
        let p = format!("{kind}-untrusted");
        let p = p.as_str();
        assert_eq!(success(p), 0.0, "{p}");
        assert_eq!(
            find(
                &s,
                "stackmedic_probe_failure_reason",
                &[("probe", p), ("reason", "tls")]
            ),
            Some(1.0),
            "{p}"
        );
        assert_eq!(
            only(&s, "stackmedic_tls_chain_verified", p).value,
            0.0,
            "{p}"
        );
        let error = only(&s, "stackmedic_tls_verify_error", p);
        assert_eq!(error.label("error"), Some("unknown_issuer"), "{p}");
        assert_eq!(error.value, 1.0);
        let left = only(&s, "stackmedic_tls_not_after_timestamp_seconds", p).value - now();
        assert!(left > 29.0 * 86400.0, "{p}: {left}");
        only(&s, "stackmedic_tls_certificate_info", p);
    }

    // The status page tells on-call the same for these kinds.
    let page = stackmedic_tests::http::get(&exporter.url("/"))
        .expect("status page")
        .text();
    assert!(page.contains("not trusted: unknown_issuer"), "{page}");
    // Three days from the certificate's creation, less the seconds since: "3 d" when they round
    // away (the probe ran within half a second of the creation's whole second).
    assert!(
        page.contains("expires in 2 d 23 h") || page.contains("expires in 3 d"),
        "{page}"
    );
}

#[test]
fn plain_http_and_local_sources_export_no_certificate() {
    let nginx = Nginx::start(
        "root {www};\nlocation = /chat { add_header Access-Control-Allow-Origin $http_origin always; return 204; }\n",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let playlist = dir.path().join("index.m3u8");
    std::fs::write(
        &playlist,
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg0.ts\n#EXT-X-ENDLIST\n",
    )
    .expect("write playlist");
    let config = format!(
        "global: {{interval: 300ms, timeout: 250ms}}\nprobes:\n\
         \x20 - name: cors-plain\n    cors: {{url: '{}', origin: 'https://app.example'}}\n\
         \x20 - name: hls-file\n    hls: {{path: '{}'}}\n",
        nginx.url("/chat"),
        playlist.display()
    );
    let mut exporter = Exporter::start(&config);
    let s = exporter.wait_runs("cors-plain", 2);
    let s2 = exporter.wait_runs("hls-file", 2);
    assert_eq!(
        value(&s, "stackmedic_probe_success", &[("probe", "cors-plain")]),
        1.0
    );
    for (s, p) in [(&s, "cors-plain"), (&s2, "hls-file")] {
        assert!(
            find_all(s, "stackmedic_tls_chain_verified", &[("probe", p)]).is_empty(),
            "{p}"
        );
        assert!(find_all(
            s,
            "stackmedic_tls_not_after_timestamp_seconds",
            &[("probe", p)]
        )
        .is_empty());
    }
}

/// nginx's `accepts` count (connections accepted so far), read from its stub_status page; the
/// request that reads it is one of them.
fn accepts(status_url: &str) -> u64 {
    let text = stackmedic_tests::http::get(status_url)
        .expect("stub_status")
        .text();
    // "Active connections: 1 \nserver accepts handled requests\n 7 7 12 \n…"
    let numbers = text.lines().nth(2).expect("the counts line");
    numbers
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no accepts count in {text:?}"))
}

#[test]
fn a_kept_alive_probe_makes_no_second_handshake_per_run() {
    let (trusted, _unknown) = stackmedic_tests::tls::expiring_and_unknown();
    let d = trusted.path().display();
    let status_port = stackmedic_tests::free_port();
    let nginx = Nginx::start_with_http(
        &format!(
            "listen 127.0.0.1:{{port}} ssl;\n\
             ssl_certificate {d}/server.crt;\n\
             ssl_certificate_key {d}/server.key;\n\
             location = /ready {{ return 200 'ok'; }}\n"
        ),
        &format!(
            "server {{ listen 127.0.0.1:{status_port}; location = /status {{ stub_status; }} }}"
        ),
    );
    let status = format!("http://127.0.0.1:{status_port}/status");
    let mut exporter = Exporter::start(&format!(
        "probes:\n  - name: ready\n    interval: 200ms\n    timeout: 150ms\n    http:\n      url: https://127.0.0.1:{}/ready\n      tls: {{ca_file: '{d}/ca.crt'}}\n",
        nginx.port()
    ));
    let s = exporter.wait_runs("ready", 2);
    assert_eq!(
        value(&s, "stackmedic_tls_chain_verified", &[("probe", "ready")]),
        1.0
    );
    let before = accepts(&status);
    let runs = value(&s, "stackmedic_probe_runs_total", &[("probe", "ready")]) as u64;
    let s = exporter.wait_runs("ready", runs + 15);
    let after = accepts(&status);
    // Fifteen runs over the kept-alive connection, and the facts read once: no connection of
    // their own per run (the second count is one more for its own request).
    assert!(
        after - before <= 2,
        "{} connections for 15 runs",
        after - before - 1
    );
    // The facts are still exported every run.
    assert_eq!(
        value(&s, "stackmedic_tls_chain_verified", &[("probe", "ready")]),
        1.0
    );
    let left = value(
        &s,
        "stackmedic_tls_not_after_timestamp_seconds",
        &[("probe", "ready")],
    ) - now();
    assert!(left > 2.0 * 86400.0, "{left}");
}
