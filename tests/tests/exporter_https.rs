//! HTTPS readiness probes against a real nginx serving TLS with a certificate made by `openssl`:
//! trusted through `tls.ca_file`, refused (reason `tls`) without it, accepted with
//! `insecure_skip_verify`, and an `expect_headers` check through TLS. CA files are read and
//! checked when the configuration is loaded: a missing or unusable one is a configuration error
//! with its path, and a replaced one is used after a reload.

use stackmedic_tests::exporter::{config_check, value, Exporter, WAIT};
use stackmedic_tests::http;
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
         - name: trusted\n  interval: 1s\n  timeout: 900ms\n  http:\n    url: {url}\n    expect_headers: [cf-ray]\n    tls: {{ca_file: {dir}/ca.crt}}\n\
         - name: untrusted\n  interval: 1s\n  timeout: 900ms\n  http:\n    url: {url}\n\
         - name: insecure\n  interval: 1s\n  timeout: 900ms\n  http:\n    url: {url}\n    tls: {{insecure_skip_verify: true}}\n"
    );
    let mut exporter = Exporter::start(&config);
    // The state each probe settles in: on a busy machine a run may time out first (reason
    // `timeout`), and a later run shows what the probe's TLS settings decide.
    let s = exporter.wait_for(
        "the three https probes in their states",
        stackmedic_tests::exporter::WAIT,
        |s| {
            find(s, "stackmedic_probe_success", &[("probe", "trusted")]) == Some(1.0)
                && find(s, "stackmedic_probe_success", &[("probe", "insecure")]) == Some(1.0)
                && find(
                    s,
                    "stackmedic_probe_failure_reason",
                    &[("probe", "untrusted"), ("reason", "tls")],
                ) == Some(1.0)
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

#[test]
fn ca_files_are_checked_at_load_and_a_replaced_one_is_used_after_reload() {
    // Two CAs: the server's, and one that has nothing to do with it.
    let server = tempfile::tempdir().expect("tempdir");
    make_certificates(server.path());
    let other = tempfile::tempdir().expect("tempdir");
    make_certificates(other.path());
    let dir = server.path().display();
    let nginx = Nginx::start(&format!(
        "listen 127.0.0.1:{{port}} ssl;\n\
         ssl_certificate {dir}/server.crt;\n\
         ssl_certificate_key {dir}/server.key;\n\
         location = /api/ready {{ return 200 'ok'; }}\n"
    ));
    let url = format!("https://127.0.0.1:{}/api/ready", nginx.port());
    let config = format!(
        "probes:\n- name: internal\n  interval: 1s\n  timeout: 900ms\n  http:\n    url: {url}\n    tls: {{ca_file: '{{dir}}/ca.pem'}}\n"
    );

    // --config.check reads the file: missing, and not a certificate, are both problems with
    // the key's path.
    let check_dir = tempfile::tempdir().expect("tempdir");
    let check_config = check_dir.path().join("config.yml");
    std::fs::write(
        &check_config,
        config.replace("{dir}", &check_dir.path().display().to_string()),
    )
    .expect("write config");
    let check = || {
        let out = config_check(&check_config);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = check();
    assert!(!ok, "a missing CA file passed --config.check");
    assert!(
        stderr.contains("probes[0].http.tls.ca_file: cannot read ")
            && stderr.contains("ca.pem: No such file or directory"),
        "{stderr}"
    );
    std::fs::write(check_dir.path().join("ca.pem"), "not a certificate\n").expect("write");
    let (ok, stderr) = check();
    assert!(!ok, "a CA file without a certificate passed --config.check");
    assert!(
        stderr.contains("probes[0].http.tls.ca_file: ") && stderr.contains("no PEM certificate"),
        "{stderr}"
    );
    std::fs::copy(
        server.path().join("ca.crt"),
        check_dir.path().join("ca.pem"),
    )
    .expect("copy");
    let (ok, stderr) = check();
    assert!(ok, "{stderr}");

    // Running with the wrong CA: the handshake fails.
    let mut exporter = Exporter::start_with(stackmedic_tests::exporter::Options {
        config: Some(&config),
        files: vec![(
            "ca.pem",
            std::fs::read(other.path().join("ca.crt")).expect("read CA"),
        )],
        ..Default::default()
    });
    exporter.wait_value(
        "stackmedic_probe_failure_reason",
        &[("probe", "internal"), ("reason", "tls")],
        1.0,
    );

    // The right CA under the same name, and a reload with the configuration file unchanged:
    // the probe is built again with the new file.
    let ca = exporter.dir().join("ca.pem");
    std::fs::copy(server.path().join("ca.crt"), &ca).expect("replace the CA file");
    let r = http::request("POST", &exporter.url("/-/reload"), &[], Some(b"")).expect("reload");
    assert_eq!(r.status, 200, "{}", r.text());
    let s = exporter.wait_value("stackmedic_probe_success", &[("probe", "internal")], 1.0);
    assert_eq!(
        value(&s, "stackmedic_http_status_code", &[("probe", "internal")]),
        200.0
    );

    // A CA file gone at reload: the reload fails with the path, the running probe stays.
    std::fs::remove_file(&ca).expect("remove the CA file");
    let r = http::request("POST", &exporter.url("/-/reload"), &[], Some(b"")).expect("reload");
    assert_eq!(r.status, 500);
    assert!(
        r.text().contains("probes[0].http.tls.ca_file: cannot read"),
        "{}",
        r.text()
    );
    let runs = stackmedic_tests::exporter::runs(&exporter.scrape(), "internal");
    let s = exporter.wait_for("the old probe keeps running", WAIT, |s| {
        stackmedic_tests::exporter::runs(s, "internal") >= runs + 2
            && find(s, "stackmedic_probe_success", &[("probe", "internal")]) == Some(1.0)
    });
    assert_eq!(
        value(&s, "stackmedic_probe_success", &[("probe", "internal")]),
        1.0
    );
    assert_eq!(
        value(&s, "stackmedic_exporter_config_last_reload_successful", &[]),
        0.0
    );
}
