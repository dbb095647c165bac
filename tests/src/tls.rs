//! Certificates for TLS tests, made by the real `openssl` command line tool.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `openssl` with `args` in `dir`, panicking with its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (Debian package openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two certificate folders for the expiry and trust cases: `expiring` holds a chain valid for
/// 3 days (a probe trusts it through its `ca.crt` as `ca_file`), `unknown` one valid for 30 days
/// from a CA of its own that nothing trusts.
///
/// # Panics
/// When a temporary folder cannot be made or `openssl` fails.
pub fn expiring_and_unknown() -> (tempfile::TempDir, tempfile::TempDir) {
    let expiring = tempfile::tempdir().expect("tempdir");
    make_certificates_valid_for(expiring.path(), 3);
    let unknown = tempfile::tempdir().expect("tempdir");
    make_certificates_valid_for(unknown.path(), 30);
    (expiring, unknown)
}

/// Makes, in `dir`, a CA (`ca.crt`, `ca.key`) and a server certificate for `127.0.0.1`
/// (`server.crt`, `server.key`) signed by it, with `openssl` (EC P-256, valid two days).
///
/// # Panics
/// When `openssl` is missing or fails.
pub fn make_certificates(dir: &Path) {
    make_certificates_valid_for(dir, 2);
}

/// As [`make_certificates`], with the CA and the server certificate valid for `days` days from
/// now (`notAfter` = now + `days` × 86400 s, to the second).
///
/// # Panics
/// When `openssl` is missing or fails.
pub fn make_certificates_valid_for(dir: &Path, days: u32) {
    let days = days.to_string();
    let days = days.as_str();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        days,
        "-subj",
        "/CN=stackmedic test CA",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            days,
            "-extfile",
            "server.ext",
        ],
    );
}

/// Makes, in `dir` (which [`make_certificates`] filled), a client certificate `client.crt` with
/// its key `client.key`, signed by the CA there, for TLS client authentication (EC P-256,
/// `extendedKeyUsage=clientAuth`, valid two days).
///
/// # Panics
/// When `openssl` is missing or fails.
pub fn make_client_certificate(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=stackmedic test client",
        ],
    );
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .expect("write client.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.crt",
            "-days",
            "2",
            "-extfile",
            "client.ext",
        ],
    );
}

/// The SRI digest of a file, `<alg>-<base64>`, by `openssl dgst -<alg> -binary FILE | openssl base64 -A`, as two processes joined by us.
///
/// # Panics
/// When `openssl` is missing or fails.
pub fn openssl_sri(alg: &str, file: &Path) -> String {
    let openssl = crate::require_program(&["/usr/bin/openssl"], "openssl");
    let dgst = Command::new(&openssl)
        .arg("dgst")
        .arg(format!("-{alg}"))
        .arg("-binary")
        .arg(file)
        .output()
        .expect("run openssl dgst");
    assert!(
        dgst.status.success(),
        "{}",
        String::from_utf8_lossy(&dgst.stderr)
    );
    let mut b64 = Command::new(&openssl)
        .args(["base64", "-A"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl base64");
    b64.stdin
        .take()
        .expect("stdin")
        .write_all(&dgst.stdout)
        .expect("write digest");
    let out = b64.wait_with_output().expect("openssl base64");
    assert!(out.status.success());
    format!("{alg}-{}", String::from_utf8_lossy(&out.stdout).trim())
}
