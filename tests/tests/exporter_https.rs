//! HTTPS readiness probes against a real nginx serving TLS with a certificate made by `openssl`:
//! trusted through `tls.ca_file`, refused (reason `tls`) without it, accepted with
//! `insecure_skip_verify`, and an `expect_headers` check through TLS.

use stackmedic_tests::exporter::{value, Exporter};
use stackmedic_tests::metrics::find;
use stackmedic_tests::nginx::Nginx;
use stackmedic_tests::tls::make_certificates;

#[test]
fn https_probes_trust_only_what_they_are_told_to() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certificates(certs.path());
    let dir = certs.path().display();
    let nginx = Nginx::start(&format!(
        "listen 127.0.0.1:{{port}} ssl;\n\
         ssl_certificate {dir}/server.crt;\n\
         ssl_certificate_key {dir}/server.key;\n\
         location = /api/ready {{ add_header cf-ray edge-1 always; return 200 'ok'; }}\n"
    ));
    let url = format!("https://127.0.0.1:{}/api/ready", nginx.port());
    let config = format!(
        "probes:\n\
         - name: trusted\n  interval: 300ms\n  timeout: 250ms\n  http:\n    url: {url}\n    expect_headers: [cf-ray]\n    tls: {{ca_file: {dir}/ca.crt}}\n\
         - name: untrusted\n  interval: 300ms\n  timeout: 250ms\n  http:\n    url: {url}\n\
         - name: insecure\n  interval: 300ms\n  timeout: 250ms\n  http:\n    url: {url}\n    tls: {{insecure_skip_verify: true}}\n"
    );
    let mut exporter = Exporter::start(&config);
    let s = exporter.wait_for(
        "all three https probes ran",
        stackmedic_tests::exporter::WAIT,
        |s| {
            ["trusted", "untrusted", "insecure"]
                .iter()
                .all(|p| find(s, "stackmedic_probe_success", &[("probe", p)]).is_some())
        },
    );
    assert_eq!(
        value(&s, "stackmedic_probe_success", &[("probe", "trusted")]),
        1.0
    );
    assert_eq!(
        value(&s, "stackmedic_http_status_code", &[("probe", "trusted")]),
        200.0
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_http_header_present",
            &[("probe", "trusted"), ("header", "cf-ray")]
        ),
        1.0
    );
    // The system trust store does not know our CA: the handshake fails, with reason `tls`.
    assert_eq!(
        value(&s, "stackmedic_probe_success", &[("probe", "untrusted")]),
        0.0
    );
    assert_eq!(
        value(
            &s,
            "stackmedic_probe_failure_reason",
            &[("probe", "untrusted"), ("reason", "tls")]
        ),
        1.0
    );
    assert_eq!(
        value(&s, "stackmedic_http_status_code", &[("probe", "untrusted")]),
        0.0
    );
    assert_eq!(
        value(&s, "stackmedic_probe_success", &[("probe", "insecure")]),
        1.0
    );
}
