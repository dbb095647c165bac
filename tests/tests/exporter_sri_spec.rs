//! The SRI probe as the specification says, against a real nginx: the cases of
//! web-platform-tests' `subresource-integrity/subresource-integrity.html` (the metadata written
//! as there, digests of our own file made by `openssl dgst`) as manifest entries, judged alike
//! in file mode and in URL mode; manifest keys with a query string in both modes and in the HTML
//! scan; and redirects, followed only within the base URL's origin or to `allowed_hosts`.

use std::path::Path;

use stackmedic_tests::exporter::{value, Exporter, WAIT};
use stackmedic_tests::metrics::{find, Sample};
use stackmedic_tests::nginx::Nginx;
use stackmedic_tests::tls::openssl_sri;

const CHECKED: &str = "stackmedic_sri_entries_checked";
const DRIFTED: &str = "stackmedic_sri_entries_drifted";
const FAILED: &str = "stackmedic_sri_entries_failed";
const ENTRY: &str = "stackmedic_sri_entry_drift";
const INVALID: &str = "stackmedic_sri_manifest_invalid_entries";
const REASON: &str = "stackmedic_probe_failure_reason";

/// What the probe must say of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The browser loads the content: it matches.
    Match,
    /// The browser refuses it: drift.
    Drift,
    /// The metadata cannot tell a good content from a bad one (no known algorithm: the
    /// browser loads anything; no well-formed digest of the strongest: it loads nothing):
    /// not checked, `bad_integrity`.
    Unusable,
}

fn probe_yaml(name: &str, body: &str) -> String {
    let body: String = body.lines().map(|l| format!("      {l}\n")).collect();
    format!("  - name: {name}\n    interval: 300ms\n    timeout: 280ms\n    sri:\n{body}")
}

fn make_readable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).expect("list").flatten() {
        let p = entry.path();
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        if p.is_dir() {
            make_readable(&p);
        }
    }
}

fn wait_checked(e: &mut Exporter, probe: &str, source: &str) -> Vec<Sample> {
    e.wait_for(&format!("{probe} checked via {source}"), WAIT, |s| {
        find(s, CHECKED, &[("probe", probe), ("source", source)]).is_some()
    })
}

#[test]
fn web_platform_tests_cases_in_file_and_url_mode() {
    let nginx = Nginx::start("location / { root {www}; }");
    let www = nginx.www();
    let file = nginx.write("www/vector.js", "window.stackmedic_sri_vector = true;\n");
    make_readable(&www);
    let sha256 = openssl_sri("sha256", &file);
    let sha384 = openssl_sri("sha384", &file);
    let sha512 = openssl_sri("sha512", &file);
    let deadbeef = "sha256-deadbeefdeadbeefdeadbeefdeadbeefdeadbeefdead";
    let other = nginx.write("www/other.js", "window.other = true;\n");
    let other256 = openssl_sri("sha256", &other);
    let cases: Vec<(&str, String, Expect)> = vec![
        ("correct sha256", sha256.clone(), Expect::Match),
        ("correct sha384", sha384.clone(), Expect::Match),
        ("correct sha512", sha512.clone(), Expect::Match),
        ("empty integrity", String::new(), Expect::Unusable),
        // Not the base64 of 32 bytes: no sha256 digest is well formed.
        ("incorrect hash", deadbeef.into(), Expect::Unusable),
        ("incorrect hash, well formed", other256.clone(), Expect::Drift),
        (
            "multiple sha256 hashes, including correct",
            format!("{sha256} {deadbeef}"),
            Expect::Match,
        ),
        (
            "multiple sha256 hashes, including unknown algorithm",
            format!("{sha256} foo666-deadbeefdeadbeefdeadbeefdeadbeefdeadbeefdead"),
            Expect::Match,
        ),
        (
            "sha256 mismatch, sha512 match",
            format!("{sha512} {deadbeef}"),
            Expect::Match,
        ),
        (
            "sha256 match, sha512 mismatch",
            format!("sha512-deadbeefspbnUnwooKGNNCb39nvg+EW0O9hDScTXeo/9pVZztLSUYU3LNV6H0lZapo8bCJUpyPPLAzE9fDzpxg== {sha256}"),
            Expect::Drift,
        ),
        (
            "correct hash, options",
            format!("{sha256}?foo=bar?spam=eggs"),
            Expect::Match,
        ),
        (
            "unknown algorithm only",
            "foo666-U9WYDtBWkcHx13+9UKk/3Q5eoqDc4YGxYb07EPWzb9E=".into(),
            Expect::Unusable,
        ),
        (
            "sha256 digest not base64 encoded",
            "sha256-%".into(),
            Expect::Unusable,
        ),
        (
            "unknown algorithm, digest not base64 encoded",
            "foo666-%".into(),
            Expect::Unusable,
        ),
        (
            "multiple sha256 digests, including not base64 encoded",
            format!("{sha256} sha256-%"),
            Expect::Match,
        ),
        (
            "sha256 digest not base64 encoded, correct sha512 digest",
            format!("{sha512} sha256-%"),
            Expect::Match,
        ),
        (
            "correct sha256 digest, sha512 digest not base64 encoded",
            format!("sha512-% {sha256}"),
            Expect::Unusable,
        ),
        (
            "incorrect sha256 and sha512 hash",
            "sha256-fail83bWhnLig+d2VPKrRrTRyhqoDRo1ruGqZLZ0= sha512-failB7ktnzcb6h+kB9CUIuc8qvKIyLpygRJdQSEEycRy74dUsB+Yu9rSjpOPjRUblle8WWX9Gn7v39LK2Oceig==".into(),
            Expect::Drift,
        ),
    ];
    // Every case is an entry of its own for the same file: the key's query tells them apart
    // (on disk it is ignored, in URL mode nginx ignores it).
    let key = |i: usize| format!("vector.js?case={i}");
    let entries: serde_json::Map<String, serde_json::Value> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, metadata, _))| (key(i), serde_json::Value::String(metadata.clone())))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("sri-manifest.json");
    std::fs::write(&manifest, serde_json::Value::Object(entries).to_string())
        .expect("write the manifest");
    let mut e = Exporter::start(&format!(
        "probes:\n{}{}",
        probe_yaml(
            "files",
            &format!("manifest: {}\nroot: {}", manifest.display(), www.display())
        ),
        probe_yaml(
            "deployed",
            &format!(
                "manifest: {}\nbase_url: {}",
                manifest.display(),
                nginx.url("/")
            )
        ),
    ));
    let unusable = cases.iter().filter(|c| c.2 == Expect::Unusable).count() as f64;
    let drift = cases.iter().filter(|c| c.2 == Expect::Drift).count() as f64;
    for (probe, source) in [("files", "file"), ("deployed", "url")] {
        let s = wait_checked(&mut e, probe, source);
        let p = ("probe", probe);
        let mut wrong = Vec::new();
        for (i, (name, metadata, expect)) in cases.iter().enumerate() {
            let k = key(i);
            let got = find(&s, ENTRY, &[p, ("source", source), ("path", &k)]);
            let want = match expect {
                Expect::Match => Some(0.0),
                Expect::Drift => Some(1.0),
                Expect::Unusable => None,
            };
            if got != want {
                wrong.push(format!("{name} ({metadata:?}): {got:?}, expected {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{source} mode:\n{}", wrong.join("\n"));
        assert_eq!(
            value(&s, INVALID, &[p, ("problem", "bad_integrity")]),
            unusable
        );
        assert_eq!(value(&s, DRIFTED, &[p, ("source", source)]), drift);
        assert_eq!(
            value(&s, CHECKED, &[p, ("source", source)]),
            cases.len() as f64 - unusable
        );
    }
    // URL mode asked for the path with its query, not for a file named after the whole key.
    let log = std::fs::read_to_string(nginx.access_log()).expect("access log");
    assert!(log.contains("GET /vector.js?case=0 "), "{log}");
    assert!(!log.contains("%3F"), "{log}");
}

#[test]
fn a_key_with_a_query_agrees_in_both_modes_and_in_the_html_scan() {
    let nginx = Nginx::start("location / { root {www}; }");
    let www = nginx.www();
    let js = nginx.write("www/assets/app.js", "start(3);\n");
    let sri = openssl_sri("sha384", &js);
    nginx.write(
        "www/index.html",
        format!(
            "<!doctype html><script src=\"/assets/app.js?v=3\" integrity=\"{sri}\"></script>\n"
        ),
    );
    make_readable(&www);
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("sri-manifest.json");
    std::fs::write(
        &manifest,
        serde_json::json!({ "assets/app.js?v=3": { "sha384": sri } }).to_string(),
    )
    .expect("write the manifest");
    let mut e = Exporter::start(&format!(
        "probes:\n{}",
        probe_yaml(
            "site",
            &format!(
                "manifest: {}\nroot: {}\nbase_url: {}\nscan_html: true",
                manifest.display(),
                www.display(),
                nginx.url("/")
            )
        ),
    ));
    let s = wait_checked(&mut e, "site", "url");
    let p = ("probe", "site");
    for source in ["file", "url"] {
        assert_eq!(
            value(
                &s,
                ENTRY,
                &[p, ("source", source), ("path", "assets/app.js?v=3")]
            ),
            0.0,
            "{source}"
        );
        assert_eq!(
            value(&s, CHECKED, &[p, ("source", source)]),
            1.0,
            "{source}"
        );
    }
    for against in ["manifest", "file"] {
        assert_eq!(
            value(
                &s,
                "stackmedic_sri_html_integrity_disagreeing",
                &[p, ("against", against)]
            ),
            0.0,
            "{against}"
        );
    }
    assert_eq!(value(&s, "stackmedic_probe_success", &[p]), 1.0);
    let log = std::fs::read_to_string(nginx.access_log()).expect("access log");
    assert!(log.contains("GET /assets/app.js?v=3 "), "{log}");
}

#[test]
fn redirects_are_followed_only_within_the_origin_or_to_allowed_hosts() {
    // The other server listens on a second loopback address too, which stands in for a CDN
    // listed in allowed_hosts. It serves other content under the redirect targets: an entry
    // judged there would drift.
    let other = Nginx::start(
        "listen 127.0.0.1:{port};\nlisten 127.0.0.2:{port};\nlocation / { root {www}; }\n",
    );
    let op = other.port();
    for f in ["moved-target.js", "cdn-target.js"] {
        other.write(&format!("www/{f}"), "someone else's script\n");
    }
    make_readable(&other.www());
    let nginx = Nginx::start(&format!(
        "location / {{ root {{www}}; }}\n\
         location = /moved.js {{ return 302 http://127.0.0.1:{op}/moved-target.js; }}\n\
         location = /cdn.js {{ return 302 http://127.0.0.2:{op}/cdn-target.js; }}\n\
         location = /same.js {{ return 302 /real.js; }}\n"
    ));
    let real = nginx.write("www/real.js", "our script\n");
    make_readable(&nginx.www());
    let ours = openssl_sri("sha384", &real);
    let theirs = openssl_sri("sha384", &other.www().join("cdn-target.js"));
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("sri-manifest.json");
    std::fs::write(
        &manifest,
        serde_json::json!({
            "moved.js": { "sha384": ours },
            "same.js": { "sha384": ours },
            "cdn.js": { "sha384": theirs },
        })
        .to_string(),
    )
    .expect("write the manifest");
    let body = |extra: &str| {
        format!(
            "manifest: {}\nbase_url: {}\n{extra}",
            manifest.display(),
            nginx.url("/")
        )
    };
    let mut e = Exporter::start(&format!(
        "probes:\n{}{}",
        probe_yaml("strict", &body("")),
        probe_yaml("with-cdn", &body("allowed_hosts: [127.0.0.2]")),
    ));
    let strict = wait_checked(&mut e, "strict", "url");
    let s = wait_checked(&mut e, "with-cdn", "url");
    let u = ("source", "url");
    // Within the origin: followed, and judged on the origin's content.
    for probe in ["strict", "with-cdn"] {
        let scrape = if probe == "strict" { &strict } else { &s };
        assert_eq!(
            value(scrape, ENTRY, &[("probe", probe), u, ("path", "same.js")]),
            0.0,
            "{probe}"
        );
        // To another port of the same host: not followed, not judged.
        assert_eq!(
            find(scrape, ENTRY, &[("probe", probe), u, ("path", "moved.js")]),
            None,
            "{probe}"
        );
    }
    // To a host that is not listed: not followed; to a listed one: followed.
    assert_eq!(value(&strict, FAILED, &[("probe", "strict"), u]), 2.0);
    assert_eq!(
        value(
            &strict,
            REASON,
            &[("probe", "strict"), ("reason", "http_status")]
        ),
        1.0
    );
    assert_eq!(value(&s, FAILED, &[("probe", "with-cdn"), u]), 1.0);
    assert_eq!(
        value(&s, ENTRY, &[("probe", "with-cdn"), u, ("path", "cdn.js")]),
        0.0
    );
    let log = std::fs::read_to_string(other.access_log()).expect("access log");
    assert!(log.contains("GET /cdn-target.js"), "{log}");
    assert!(!log.contains("moved-target.js"), "{log}");
    let page = stackmedic_tests::http::get(&e.url("/"))
        .expect("status page")
        .text();
    assert!(page.contains("leaves the base URL"), "{page}");
}
