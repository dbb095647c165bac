//! `dns` probes against a real dnsmasq on a loopback port (UDP and TCP): a name with its expected
//! address, a name whose addresses differ from the expected set, a name that does not exist
//! (NXDOMAIN), a name the server refuses, and a server that never answers; plus the system
//! resolver (`getaddrinfo`, as `getent hosts`) for `localhost`.

use std::net::UdpSocket;

use stackmedic_tests::dnsmasq::Dnsmasq;
use stackmedic_tests::exporter::{config_check_yaml, value, Exporter};
use stackmedic_tests::metrics::find;

#[test]
fn names_resolve_or_fail_with_their_reason() {
    let dns = Dnsmasq::start(&[
        "--address=/leitstand.home.arpa/127.0.0.10",
        "--address=/two.home.arpa/127.0.0.11",
        "--address=/two.home.arpa/127.0.0.12",
        "--address=/gone.home.arpa/",
    ]);
    let server = format!("127.0.0.1:{}", dns.port());
    // A UDP socket that is bound but never read: queries to it go unanswered.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let silent = silent.local_addr().expect("address");
    let config = format!(
        "global: {{interval: 500ms, timeout: 400ms}}\n\
         probes:\n\
         - name: leitstand\n  dns: {{name: leitstand.home.arpa, server: '{server}', expected: [127.0.0.10]}}\n\
         - name: leitstand-tcp\n  dns: {{name: leitstand.home.arpa., server: '{server}', transport: tcp, ip_version: ipv4}}\n\
         - name: two\n  dns: {{name: two.home.arpa, server: '{server}', expected: [127.0.0.11]}}\n\
         - name: gone\n  dns: {{name: gone.home.arpa, server: '{server}'}}\n\
         - name: refused\n  dns: {{name: other.example, server: '{server}'}}\n\
         - name: silent\n  dns: {{name: leitstand.home.arpa, server: '{silent}'}}\n\
         - name: system\n  dns: {{name: localhost, ip_version: ipv4, expected: [127.0.0.1]}}\n"
    );
    let mut exporter = Exporter::start(&config);
    let probes = [
        "leitstand",
        "leitstand-tcp",
        "two",
        "gone",
        "refused",
        "silent",
        "system",
    ];
    let s = exporter.wait_for(
        "every dns probe ran",
        stackmedic_tests::exporter::WAIT,
        |s| {
            probes
                .iter()
                .all(|p| find(s, "stackmedic_probe_success", &[("probe", p)]).is_some())
        },
    );
    let v = |name: &str, p: &str| value(&s, name, &[("probe", p)]);
    let reason = |p: &str, r: &str| {
        find(
            &s,
            "stackmedic_probe_failure_reason",
            &[("probe", p), ("reason", r)],
        )
    };

    for p in ["leitstand", "leitstand-tcp", "system"] {
        assert_eq!(v("stackmedic_probe_success", p), 1.0, "{p}");
        assert_eq!(v("stackmedic_dns_resolved", p), 1.0, "{p}");
        assert_eq!(v("stackmedic_dns_answers", p), 1.0, "{p}");
        assert!(v("stackmedic_dns_lookup_seconds", p) < 0.4, "{p}");
    }
    assert_eq!(v("stackmedic_dns_answers_match", "leitstand"), 1.0);
    assert_eq!(v("stackmedic_dns_answers_match", "system"), 1.0);
    assert!(find(
        &s,
        "stackmedic_dns_answers_match",
        &[("probe", "leitstand-tcp")]
    )
    .is_none());

    // Two addresses where one is expected: resolved, but not the expected set.
    assert_eq!(v("stackmedic_dns_answers", "two"), 2.0);
    assert_eq!(v("stackmedic_dns_answers_match", "two"), 0.0);
    assert_eq!(reason("two", "mismatch"), Some(1.0));

    // NXDOMAIN is `not_found`; REFUSED is `protocol`; silence is `timeout`.
    assert_eq!(v("stackmedic_dns_resolved", "gone"), 0.0);
    assert_eq!(reason("gone", "not_found"), Some(1.0));
    assert_eq!(reason("refused", "protocol"), Some(1.0));
    assert_eq!(v("stackmedic_dns_resolved", "silent"), 0.0);
    assert_eq!(reason("silent", "timeout"), Some(1.0));

    // The status page names what is wrong.
    let page = stackmedic_tests::http::get(&exporter.url("/"))
        .expect("status page")
        .text();
    assert!(
        page.contains("resolves to 127.0.0.11, 127.0.0.12"),
        "{page}"
    );
    assert!(page.contains("does not resolve"), "{page}");

    // The server was really asked, over both transports.
    let log = dns.log();
    assert!(
        log.contains("query[A] leitstand.home.arpa from 127.0.0.1"),
        "{log}"
    );
    assert!(log.contains("config gone.home.arpa is NXDOMAIN"), "{log}");
}

#[test]
fn dns_config_problems_are_reported_with_their_paths() {
    let (ok, stderr) = config_check_yaml(
        "probes:\n\
         - name: a\n  dns: {name: 'bad name!', transport: tcp}\n\
         - name: b\n  dns: {name: x.example, ip_version: ipv4, expected: ['::1']}\n\
         - name: c\n  dns: {name: x.example, server: 'not an address'}\n",
    );
    assert!(!ok);
    for want in [
        "probes[0].dns.name: \"bad name!\" is not a DNS name",
        "probes[0].dns.transport: needs `server`",
        "probes[1].dns.expected[0]: ::1 is not of ip_version ipv4",
        "probes[2].dns.server: invalid socket address syntax",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
}
