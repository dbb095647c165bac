//! TLS certificate facts and `tcp` probes against real nginx servers with certificates made by
//! `openssl`: one from a CA the probe trusts through `ca_file` that expires in 3 days, one from
//! a CA nobody trusts. Each `https` and TLS `tcp` probe exports the leaf's `notAfter`, whether
//! the chain verified (or why not, as a bounded error) and the subject and issuer, also when the
//! chain is untrusted. The banner check runs against a listener of this test that greets like
//! an SSH server (no real peer sends a banner here).

use std::io::Write;
use std::net::TcpListener;
use std::time::{SystemTime, UNIX_EPOCH};

use stackmedic_tests::exporter::{config_check_yaml, value, Exporter};
use stackmedic_tests::metrics::{find, find_all};
use stackmedic_tests::nginx::Nginx;

fn tls_nginx(dir: &std::path::Path) -> Nginx {
    let d = dir.display();
    Nginx::start(&format!(
        "listen 127.0.0.1:{{port}} ssl;\n\
         ssl_certificate {d}/server.crt;\n\
         ssl_certificate_key {d}/server.key;\n\
         location = /health {{ return 200 'ok'; }}\n"
    ))
}

/// A listener that sends `banner` to every connection and closes it (our own fixture).
fn greeter(banner: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(banner.as_bytes());
        }
    });
    port
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

#[test]
fn certificate_facts_of_trusted_expiring_and_untrusted_servers() {
    let (trusted, unknown) = stackmedic_tests::tls::expiring_and_unknown();
    let a = tls_nginx(trusted.path());
    let b = tls_nginx(unknown.path());
    let ca = trusted.path().join("ca.crt");
    let ca = ca.display();
    let closed = stackmedic_tests::free_port();
    let ssh = greeter("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
    let smtp = greeter("220 mail ESMTP\r\n");
    let (pa, pb) = (a.port(), b.port());
    let config = format!(
        "global: {{interval: 400ms, timeout: 350ms}}\n\
         probes:\n\
         - name: https-trusted\n  http: {{url: 'https://127.0.0.1:{pa}/health', tls: {{ca_file: '{ca}'}}}}\n\
         - name: https-untrusted\n  http: {{url: 'https://127.0.0.1:{pb}/health'}}\n\
         - name: tcp-tls-trusted\n  tcp: {{address: '127.0.0.1:{pa}', tls: true, tls_config: {{ca_file: '{ca}'}}}}\n\
         - name: tcp-tls-untrusted\n  tcp: {{address: '127.0.0.1:{pb}', tls: true}}\n\
         - name: tcp-tls-insecure\n  tcp: {{address: '127.0.0.1:{pb}', tls: true, tls_config: {{insecure_skip_verify: true}}}}\n\
         - name: tcp-plain\n  tcp: {{address: '127.0.0.1:{pa}'}}\n\
         - name: tcp-closed\n  tcp: {{address: '127.0.0.1:{closed}'}}\n\
         - name: tcp-ssh\n  tcp: {{address: '127.0.0.1:{ssh}', expect_banner: '^SSH-2\\.0-'}}\n\
         - name: tcp-not-ssh\n  tcp: {{address: '127.0.0.1:{smtp}', expect_banner: '^SSH-2\\.0-'}}\n"
    );
    let mut exporter = Exporter::start(&config);
    let probes = [
        "https-trusted",
        "https-untrusted",
        "tcp-tls-trusted",
        "tcp-tls-untrusted",
        "tcp-tls-insecure",
        "tcp-plain",
        "tcp-closed",
        "tcp-ssh",
        "tcp-not-ssh",
    ];
    let s = exporter.wait_for(
        "every probe ran with its facts",
        stackmedic_tests::exporter::WAIT,
        |s| {
            probes
                .iter()
                .all(|p| find(s, "stackmedic_probe_success", &[("probe", p)]).is_some())
                && find(
                    s,
                    "stackmedic_tls_chain_verified",
                    &[("probe", "https-untrusted")],
                )
                .is_some()
                && find(
                    s,
                    "stackmedic_tls_chain_verified",
                    &[("probe", "https-trusted")],
                )
                .is_some()
        },
    );
    let success = |p: &str| value(&s, "stackmedic_probe_success", &[("probe", p)]);
    let reason = |p: &str, r: &str| {
        find(
            &s,
            "stackmedic_probe_failure_reason",
            &[("probe", p), ("reason", r)],
        )
    };

    // Trusted, expiring in 3 days: verified, notAfter to the second (openssl -days 3).
    for p in ["https-trusted", "tcp-tls-trusted"] {
        assert_eq!(success(p), 1.0, "{p}");
        assert_eq!(
            value(&s, "stackmedic_tls_chain_verified", &[("probe", p)]),
            1.0,
            "{p}"
        );
        let not_after = value(
            &s,
            "stackmedic_tls_not_after_timestamp_seconds",
            &[("probe", p)],
        );
        let left = not_after - now();
        assert!(
            (3.0 * 86400.0 - 600.0..=3.0 * 86400.0).contains(&left),
            "{p}: {left} s left, expected about 3 days"
        );
        assert!(find_all(&s, "stackmedic_tls_verify_error", &[("probe", p)]).is_empty());
        let info = find_all(&s, "stackmedic_tls_certificate_info", &[("probe", p)]);
        assert_eq!(info.len(), 1, "{p}: {info:?}");
        assert_eq!(info[0].label("subject"), Some("CN=127.0.0.1"));
        assert_eq!(info[0].label("issuer"), Some("CN=stackmedic test CA"));
    }
    assert_eq!(
        value(
            &s,
            "stackmedic_tcp_connected",
            &[("probe", "tcp-tls-trusted")]
        ),
        1.0
    );
    assert!(find(
        &s,
        "stackmedic_tcp_tls_handshake_seconds",
        &[("probe", "tcp-tls-trusted")]
    )
    .is_some());

    // Unknown CA: the probe fails with reason tls, and the facts are still there.
    for p in ["https-untrusted", "tcp-tls-untrusted"] {
        assert_eq!(success(p), 0.0, "{p}");
        assert_eq!(reason(p, "tls"), Some(1.0), "{p}");
        assert_eq!(
            value(&s, "stackmedic_tls_chain_verified", &[("probe", p)]),
            0.0,
            "{p}"
        );
        assert_eq!(
            value(
                &s,
                "stackmedic_tls_verify_error",
                &[("probe", p), ("error", "unknown_issuer")]
            ),
            1.0,
            "{p}"
        );
        let left = value(
            &s,
            "stackmedic_tls_not_after_timestamp_seconds",
            &[("probe", p)],
        ) - now();
        assert!(left > 29.0 * 86400.0, "{p}: {left}");
    }
    assert_eq!(
        value(
            &s,
            "stackmedic_http_status_code",
            &[("probe", "https-untrusted")]
        ),
        0.0
    );
    // insecure_skip_verify passes the probe but still tells the chain is not trusted.
    assert_eq!(success("tcp-tls-insecure"), 1.0);
    assert_eq!(
        value(
            &s,
            "stackmedic_tls_chain_verified",
            &[("probe", "tcp-tls-insecure")]
        ),
        0.0
    );

    // The status page tells on-call the same: the untrusted chain, and the expiry in 3 days.
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

    // Plain TCP: connected, no TLS facts; a closed port is `connect`.
    assert_eq!(success("tcp-plain"), 1.0);
    assert!(find(
        &s,
        "stackmedic_tcp_connect_seconds",
        &[("probe", "tcp-plain")]
    )
    .is_some());
    assert!(find_all(
        &s,
        "stackmedic_tls_chain_verified",
        &[("probe", "tcp-plain")]
    )
    .is_empty());
    assert_eq!(success("tcp-closed"), 0.0);
    assert_eq!(
        value(&s, "stackmedic_tcp_connected", &[("probe", "tcp-closed")]),
        0.0
    );
    assert_eq!(reason("tcp-closed", "connect"), Some(1.0));

    // Banners.
    assert_eq!(success("tcp-ssh"), 1.0);
    assert_eq!(
        value(&s, "stackmedic_tcp_banner_matched", &[("probe", "tcp-ssh")]),
        1.0
    );
    assert_eq!(success("tcp-not-ssh"), 0.0);
    assert_eq!(
        value(
            &s,
            "stackmedic_tcp_banner_matched",
            &[("probe", "tcp-not-ssh")]
        ),
        0.0
    );
    assert_eq!(reason("tcp-not-ssh", "mismatch"), Some(1.0));
}

#[test]
fn tcp_config_problems_are_reported_with_their_paths() {
    let (ok, stderr) = config_check_yaml(
        "probes:\n\
         - name: a\n  tcp: {address: 'no-port'}\n\
         - name: b\n  tcp: {address: '127.0.0.1:443', expect_banner: '('}\n\
         - name: c\n  tcp: {address: '127.0.0.1:443', server_name: 'x.example', max_banner_bytes: 0}\n",
    );
    assert!(!ok);
    for want in [
        "probes[0].tcp.address: \"no-port\" is not host:port",
        "probes[1].tcp.expect_banner: invalid regular expression",
        "probes[2].tcp: server_name and tls_config need `tls: true`",
        "probes[2].tcp.max_banner_bytes: must be 1 to 65536",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
}
