//! SRI drift probe against real peers: digests cross-checked with `openssl dgst`, a manifest
//! recomputed against a root folder by the exporter binary (drift, missing file, bad JSON,
//! unknown algorithm, a path escaping the root, a file changed in place), the deployed URL mode
//! served by a real nginx, and the HTML integrity-attribute scan.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use stackmedic_exporter::probe::sri::{self, Alg};
use stackmedic_tests::exporter::{value, Exporter, WAIT};
use stackmedic_tests::metrics::{find, Sample};
use stackmedic_tests::nginx::Nginx;
use stackmedic_tests::pseudo_random_bytes;
use stackmedic_tests::tls::openssl_sri;

const CHECKED: &str = "stackmedic_sri_entries_checked";
const DRIFTED: &str = "stackmedic_sri_entries_drifted";
const MISSING: &str = "stackmedic_sri_entries_missing";
const ENTRY: &str = "stackmedic_sri_entry_drift";
const HASHES: &str = "stackmedic_sri_hashes_total";
const REASON: &str = "stackmedic_probe_failure_reason";
const SUCCESS: &str = "stackmedic_probe_success";

fn write(path: &Path, data: &[u8]) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("create dirs");
    }
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Sets a file's modification time `secs` into the past. Digests of files (and `ETag`s of
/// responses) modified in the last seconds are not cached, so tests that count hashes deploy
/// files "a while ago".
fn backdate(path: &Path, secs: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(secs)))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

fn manifest(entries: &[(&str, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(k, v)| {
            let alg = v.split('-').next().unwrap_or("sha384").to_string();
            ((*k).to_string(), serde_json::json!({ alg: v }))
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

fn probe_yaml(name: &str, body: &str) -> String {
    let body: String = body.lines().map(|l| format!("      {l}\n")).collect();
    format!("  - name: {name}\n    interval: 300ms\n    timeout: 280ms\n    sri:\n{body}")
}

fn wait_checked(e: &mut Exporter, probe: &str, source: &str) -> Vec<Sample> {
    e.wait_for(&format!("{probe} checked via {source}"), WAIT, |s| {
        find(s, CHECKED, &[("probe", probe), ("source", source)]).is_some()
    })
}

#[test]
fn our_digests_equal_openssl() {
    let dir = tempfile::tempdir().unwrap();
    // Sizes around the hash buffer's edges, an empty file and a multi-buffer one.
    let sizes = [
        0,
        1,
        sri::HASH_BUFFER - 1,
        sri::HASH_BUFFER,
        sri::HASH_BUFFER + 1,
        3 * sri::HASH_BUFFER + 17,
    ];
    for (i, size) in sizes.iter().enumerate() {
        let path = dir.path().join(format!("f{i}"));
        write(&path, &pseudo_random_bytes(*size, i as u64 + 7));
        let algs = [Alg::Sha256, Alg::Sha384, Alg::Sha512];
        let (digests, n) = sri::hash_reader(
            &mut std::fs::File::open(&path).unwrap(),
            &algs,
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(n, *size as u64);
        for alg in algs {
            assert_eq!(
                sri::sri_token(alg, &digests[&alg]),
                openssl_sri(alg.name(), &path),
                "{} of a {size}-byte file",
                alg.name()
            );
        }
    }
}

#[test]
fn drift_missing_unsafe_and_change_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    let ok = root.join("js/app.js");
    let big = root.join("js/vendor.js");
    let drifted = root.join("css/site.css");
    write(&ok, b"console.log('ok');\n");
    write(&big, &pseudo_random_bytes(5 * sri::HASH_BUFFER + 3, 1));
    write(&drifted, b"body { color: red }\n");
    let mut entries = vec![
        ("js/app.js", openssl_sri("sha384", &ok)),
        ("js/vendor.js", openssl_sri("sha512", &big)),
        ("css/site.css", openssl_sri("sha256", &drifted)),
    ];
    let gone = root.join("img/gone.svg");
    write(&gone, b"<svg/>");
    entries.push(("img/gone.svg", openssl_sri("sha384", &gone)));
    std::fs::remove_file(&gone).unwrap();
    // Never read: it escapes the root.
    entries.push(("../secret.txt", openssl_sri("sha384", &ok)));
    write(&dir.path().join("secret.txt"), b"secret");
    // Never read either: a symlink inside the root that leads out of it.
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link.txt")).unwrap();
    entries.push((
        "link.txt",
        openssl_sri("sha384", &dir.path().join("secret.txt")),
    ));
    let manifest_path = dir.path().join("sri-manifest.json");
    write(&manifest_path, manifest(&entries).as_bytes());
    // The deployed stylesheet differs from the manifest's.
    write(&drifted, b"body { color: blue }\n");
    for f in [&ok, &big, &drifted] {
        backdate(f, 60);
    }

    let config = format!(
        "probes:\n{}",
        probe_yaml(
            "site",
            &format!(
                "manifest: {}\nroot: {}",
                manifest_path.display(),
                root.display()
            )
        )
    );
    let mut e = Exporter::start(&config);
    let p = ("probe", "site");
    let f = ("source", "file");
    let s = wait_checked(&mut e, "site", "file");
    assert_eq!(value(&s, "stackmedic_sri_manifest_entries", &[p]), 6.0);
    assert_eq!(value(&s, CHECKED, &[p, f]), 3.0);
    assert_eq!(value(&s, DRIFTED, &[p, f]), 1.0);
    assert_eq!(value(&s, MISSING, &[p, f]), 1.0);
    assert_eq!(
        value(
            &s,
            "stackmedic_sri_manifest_invalid_entries",
            &[p, ("problem", "unsafe_path")]
        ),
        2.0
    );
    assert_eq!(find(&s, ENTRY, &[p, ("path", "link.txt")]), None);
    assert_eq!(value(&s, ENTRY, &[p, f, ("path", "js/app.js")]), 0.0);
    assert_eq!(value(&s, ENTRY, &[p, f, ("path", "js/vendor.js")]), 0.0);
    assert_eq!(value(&s, ENTRY, &[p, f, ("path", "css/site.css")]), 1.0);
    assert_eq!(value(&s, ENTRY, &[p, f, ("path", "img/gone.svg")]), 1.0);
    assert_eq!(find(&s, ENTRY, &[p, ("path", "../secret.txt")]), None);
    assert_eq!(value(&s, SUCCESS, &[p]), 0.0);
    assert_eq!(value(&s, REASON, &[p, ("reason", "mismatch")]), 1.0);

    // Unchanged files are not hashed again on later runs.
    let hashed = value(&s, HASHES, &[p, f]);
    assert_eq!(hashed, 3.0, "first run hashes the three present files");
    let before = value(&s, "stackmedic_probe_runs_total", &[p]);
    let s = e.wait_for("three more runs", WAIT, |s| {
        find(s, "stackmedic_probe_runs_total", &[p]).unwrap_or(0.0) >= before + 3.0
    });
    assert_eq!(value(&s, HASHES, &[p, f]), hashed, "cache did not hold");

    // Changed in place: same size, new content, another modification time.
    let same_size = b"console.log('KO');\n";
    assert_eq!(
        same_size.len(),
        std::fs::metadata(&ok).unwrap().len() as usize
    );
    let file = std::fs::OpenOptions::new().write(true).open(&ok).unwrap();
    (&file).write_all(same_size).unwrap();
    drop(file);
    backdate(&ok, 30);
    let s = e.wait_value(ENTRY, &[p, f, ("path", "js/app.js")], 1.0);
    assert_eq!(value(&s, DRIFTED, &[p, f]), 2.0);
    assert_eq!(value(&s, HASHES, &[p, f]), hashed + 1.0);

    // Restoring the deployed files clears the drift; the probe still fails on the missing one.
    write(&ok, b"console.log('ok');\n");
    write(&drifted, b"body { color: red }\n");
    let s = e.wait_value(DRIFTED, &[p, f], 0.0);
    assert_eq!(value(&s, REASON, &[p, ("reason", "not_found")]), 1.0);
}

#[test]
fn bad_manifest_and_unknown_algorithm_fail_as_parse() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    let ok = root.join("a.js");
    write(&ok, b"a");
    let bad_json = dir.path().join("bad.json");
    write(&bad_json, b"{\"a.js\": {\"sha384\": ");
    let unknown = dir.path().join("unknown.json");
    write(
        &unknown,
        format!(
            "{{\"a.js\": {{\"sha384\": \"{}\"}}, \"b.js\": {{\"md5\": \"md5-DMF1ucDxtqgxw5niaXcmYQ==\"}}}}",
            openssl_sri("sha384", &ok)
        )
        .as_bytes(),
    );
    let config = format!(
        "probes:\n{}{}",
        probe_yaml(
            "bad-json",
            &format!("manifest: {}\nroot: {}", bad_json.display(), root.display())
        ),
        probe_yaml(
            "unknown-alg",
            &format!("manifest: {}\nroot: {}", unknown.display(), root.display())
        )
    );
    let mut e = Exporter::start(&config);
    let s = e.wait_value(REASON, &[("probe", "bad-json"), ("reason", "parse")], 1.0);
    assert_eq!(value(&s, SUCCESS, &[("probe", "bad-json")]), 0.0);
    assert_eq!(
        find(
            &s,
            "stackmedic_sri_manifest_entries",
            &[("probe", "bad-json")]
        ),
        None
    );
    let p = ("probe", "unknown-alg");
    let s = wait_checked(&mut e, "unknown-alg", "file");
    assert_eq!(value(&s, REASON, &[p, ("reason", "parse")]), 1.0);
    assert_eq!(value(&s, CHECKED, &[p, ("source", "file")]), 1.0);
    assert_eq!(
        value(
            &s,
            "stackmedic_sri_manifest_invalid_entries",
            &[p, ("problem", "bad_integrity")]
        ),
        1.0
    );
    // The exporter is still serving and the other probe's state is intact.
    assert_eq!(value(&s, DRIFTED, &[p, ("source", "file")]), 0.0);
}

#[test]
fn url_mode_against_nginx() {
    let nginx = Nginx::start("location / { root {www}; etag on; }");
    let www = nginx.www();
    let dir = tempfile::tempdir().unwrap();
    let ok = www.join("assets/app.js");
    let spaced = www.join("assets/a b.css");
    let drifted = www.join("assets/drift.js");
    write(&ok, &pseudo_random_bytes(3 * sri::HASH_BUFFER + 5, 3));
    write(&spaced, b"p { margin: 0 }\n");
    write(&drifted, b"let v = 1;\n");
    let mut entries = vec![
        ("assets/app.js", openssl_sri("sha384", &ok)),
        ("assets/a b.css", openssl_sri("sha256", &spaced)),
        ("assets/drift.js", openssl_sri("sha384", &drifted)),
    ];
    let gone = dir.path().join("gone.js");
    write(&gone, b"gone");
    entries.push(("assets/gone.js", openssl_sri("sha384", &gone)));
    write(&drifted, b"let v = 2;\n");
    for f in [&ok, &spaced, &drifted] {
        backdate(f, 60);
    }
    make_readable(&www);
    let manifest_path = dir.path().join("sri-manifest.json");
    write(&manifest_path, manifest(&entries).as_bytes());

    let config = format!(
        "probes:\n{}",
        probe_yaml(
            "deployed",
            &format!(
                "manifest: {}\nbase_url: {}",
                manifest_path.display(),
                nginx.url("/")
            )
        )
    );
    let mut e = Exporter::start(&config);
    let p = ("probe", "deployed");
    let u = ("source", "url");
    let s = wait_checked(&mut e, "deployed", "url");
    assert_eq!(value(&s, CHECKED, &[p, u]), 3.0, "{:?}", reason(&s));
    assert_eq!(value(&s, DRIFTED, &[p, u]), 1.0);
    assert_eq!(value(&s, MISSING, &[p, u]), 1.0);
    assert_eq!(value(&s, ENTRY, &[p, u, ("path", "assets/app.js")]), 0.0);
    assert_eq!(value(&s, ENTRY, &[p, u, ("path", "assets/a b.css")]), 0.0);
    assert_eq!(value(&s, ENTRY, &[p, u, ("path", "assets/drift.js")]), 1.0);
    assert_eq!(value(&s, ENTRY, &[p, u, ("path", "assets/gone.js")]), 1.0);
    assert_eq!(value(&s, REASON, &[p, ("reason", "mismatch")]), 1.0);
    assert!(
        value(&s, "stackmedic_sri_hashed_bytes_total", &[p, u]) >= (3 * sri::HASH_BUFFER) as f64
    );

    // nginx answers 304 to the cached ETags, so later runs hash nothing.
    let hashed = value(&s, HASHES, &[p, u]);
    let before = value(&s, "stackmedic_probe_runs_total", &[p]);
    let s = e.wait_for("three more runs", WAIT, |s| {
        find(s, "stackmedic_probe_runs_total", &[p]).unwrap_or(0.0) >= before + 3.0
    });
    assert_eq!(value(&s, HASHES, &[p, u]), hashed);
    assert_eq!(value(&s, DRIFTED, &[p, u]), 1.0);

    // Redeploying the right content clears the drift: same size, and nginx's ETag (modification
    // second and size) changes only through the modification time.
    write(&drifted, b"let v = 1;\n");
    make_readable(&www);
    e.wait_value(ENTRY, &[p, u, ("path", "assets/drift.js")], 0.0);
    let access = std::fs::read_to_string(nginx.access_log()).unwrap_or_default();
    assert!(
        access.contains("\" 304 "),
        "no conditional request seen:\n{access}"
    );
}

#[test]
fn html_integrity_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    let js = root.join("js/app.js");
    let css = root.join("css/site.css");
    write(&js, b"run();\n");
    write(&css, b"h1 { }\n");
    let js_sri = openssl_sri("sha384", &js);
    let css_sri = openssl_sri("sha384", &css);
    let manifest_path = dir.path().join("sri-manifest.json");
    write(
        &manifest_path,
        manifest(&[
            ("js/app.js", js_sri.clone()),
            ("css/site.css", css_sri.clone()),
        ])
        .as_bytes(),
    );
    // The page agrees for app.js; for the stylesheet it carries a stale digest that neither
    // the manifest nor the file has; the CDN script is external.
    let stale = openssl_sri("sha384", &manifest_path);
    write(
        &root.join("index.html"),
        format!(
            "<!doctype html><html><head>\n\
             <link rel=\"stylesheet\" href=\"/css/site.css\" integrity=\"{stale}\">\n\
             <script src=\"https://cdn.example.org/lib.js\" integrity=\"{js_sri}\"></script>\n\
             </head><body><script src=\"js/app.js\" integrity=\"{js_sri}\" crossorigin=\"anonymous\"></script></body></html>\n"
        )
        .as_bytes(),
    );
    let config = format!(
        "probes:\n{}",
        probe_yaml(
            "html",
            &format!(
                "manifest: {}\nroot: {}\nscan_html: true",
                manifest_path.display(),
                root.display()
            )
        )
    );
    let mut e = Exporter::start(&config);
    let p = ("probe", "html");
    let s = e.wait_for("html scan", WAIT, |s| {
        find(s, "stackmedic_sri_html_files_scanned", &[p]).is_some()
    });
    const ATTRS: &str = "stackmedic_sri_html_integrity_attributes";
    const DISAGREE: &str = "stackmedic_sri_html_integrity_disagreeing";
    assert_eq!(value(&s, "stackmedic_sri_html_files_scanned", &[p]), 1.0);
    assert_eq!(value(&s, ATTRS, &[p, ("scope", "local")]), 2.0);
    assert_eq!(value(&s, ATTRS, &[p, ("scope", "external")]), 1.0);
    assert_eq!(value(&s, DISAGREE, &[p, ("against", "manifest")]), 1.0);
    assert_eq!(value(&s, DISAGREE, &[p, ("against", "file")]), 1.0);
    assert_eq!(value(&s, DRIFTED, &[p, ("source", "file")]), 0.0);
    assert_eq!(value(&s, REASON, &[p, ("reason", "mismatch")]), 1.0);
    // Fixing the page makes the probe pass.
    let html = std::fs::read_to_string(root.join("index.html")).unwrap();
    write(
        &root.join("index.html"),
        html.replace(&stale, &css_sri).as_bytes(),
    );
    e.wait_value(SUCCESS, &[p], 1.0);
}

#[test]
fn example_loads() {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sri.yml");
    let config = stackmedic_exporter::config::load(Some(&path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(config.probes.iter().any(|p| p.kind.name() == "sri"));
}

fn reason(s: &[Sample]) -> Vec<String> {
    s.iter()
        .filter(|x| x.name == REASON)
        .map(|x| format!("{:?}", x.labels))
        .collect()
}

/// nginx workers may run as another user: files written by the test must be readable to them.
fn make_readable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        if p.is_dir() {
            make_readable(&p);
        }
    }
}

#[test]
fn url_mode_checks_exactly_the_entries_local_mode_would() {
    // The deployed root is served by nginx; an entry leads out of it through a symlink (nginx
    // follows it, the exporter's local mode does not read it). URL mode must leave it out too.
    let nginx = Nginx::start("location / { root {www}; etag on; }");
    let www = nginx.www();
    let dir = tempfile::tempdir().unwrap();
    let app = www.join("assets/app.js");
    write(&app, b"run();\n");
    let secret = dir.path().join("secret.js");
    write(&secret, b"let key = 'outside the root';\n");
    std::os::unix::fs::symlink(&secret, www.join("assets/leak.js")).expect("symlink");
    make_readable(&www);
    make_readable(dir.path());
    // nginx serves the secret through the link: a fetch would "match".
    assert_eq!(
        stackmedic_tests::http::get(&nginx.url("/assets/leak.js"))
            .expect("GET leak.js")
            .status,
        200
    );
    let manifest_path = dir.path().join("sri-manifest.json");
    write(
        &manifest_path,
        manifest(&[
            ("assets/app.js", openssl_sri("sha384", &app)),
            ("assets/leak.js", openssl_sri("sha384", &secret)),
        ])
        .as_bytes(),
    );
    let config = format!(
        "probes:\n{}",
        probe_yaml(
            "both",
            &format!(
                "manifest: {}\nroot: {}\nbase_url: {}",
                manifest_path.display(),
                www.display(),
                nginx.url("/")
            )
        )
    );
    let mut e = Exporter::start(&config);
    let p = ("probe", "both");
    let s = wait_checked(&mut e, "both", "url");
    for source in ["file", "url"] {
        let l = [p, ("source", source)];
        assert_eq!(value(&s, CHECKED, &l), 1.0, "{source}: {:?}", reason(&s));
        assert_eq!(
            find(
                &s,
                ENTRY,
                &[p, ("source", source), ("path", "assets/leak.js")]
            ),
            None,
            "{source} reports the entry outside the root"
        );
    }
    assert_eq!(
        value(
            &s,
            "stackmedic_sri_manifest_invalid_entries",
            &[p, ("problem", "unsafe_path")]
        ),
        1.0
    );
    assert_eq!(value(&s, REASON, &[p, ("reason", "parse")]), 1.0);
    let access = std::fs::read_to_string(nginx.access_log()).unwrap_or_default();
    let fetched: Vec<&str> = access
        .lines()
        .filter(|l| l.contains("leak.js") && l.contains("stackmedic-exporter/"))
        .collect();
    assert!(fetched.is_empty(), "the exporter fetched it: {fetched:?}");
}

#[test]
fn url_mode_revalidates_after_a_bounded_time() {
    // A rewrite that keeps size and modification time (`touch -r`) keeps nginx's ETag, so
    // nginx answers 304 to the exporter's conditional request. `revalidate_after` bounds how
    // long that is trusted: then a full fetch sees the drift.
    let nginx = Nginx::start("location / { root {www}; etag on; }");
    let www = nginx.www();
    let dir = tempfile::tempdir().unwrap();
    let asset = www.join("app.js");
    write(&asset, b"let v = 1;\n");
    backdate(&asset, 3600);
    make_readable(&www);
    let manifest_path = dir.path().join("sri-manifest.json");
    write(
        &manifest_path,
        manifest(&[("app.js", openssl_sri("sha384", &asset))]).as_bytes(),
    );
    let config = format!(
        "probes:\n{}{}",
        probe_yaml(
            "bounded",
            &format!(
                "manifest: {}\nbase_url: {}\nrevalidate_after: 2s",
                manifest_path.display(),
                nginx.url("/")
            )
        ),
        probe_yaml(
            "default",
            &format!(
                "manifest: {}\nbase_url: {}",
                manifest_path.display(),
                nginx.url("/")
            )
        ),
    );
    let mut e = Exporter::start(&config);
    let u = ("source", "url");
    let path = ("path", "app.js");
    for probe in ["bounded", "default"] {
        e.wait_value(ENTRY, &[("probe", probe), u, path], 0.0);
    }
    // Let both probes cache the ETag (a few runs with 304s), then rewrite in place with the
    // old modification time.
    let s = e.scrape();
    let runs = value(&s, "stackmedic_probe_runs_total", &[("probe", "default")]);
    e.wait_for("two more runs", WAIT, |s| {
        find(s, "stackmedic_probe_runs_total", &[("probe", "default")]).unwrap_or(0.0) >= runs + 2.0
    });
    let before = std::fs::metadata(&asset).unwrap().modified().unwrap();
    write(&asset, b"let v = 2;\n");
    std::fs::File::options()
        .write(true)
        .open(&asset)
        .and_then(|f| f.set_modified(before))
        .expect("touch -r");
    make_readable(&www);
    let s = e.wait_value(ENTRY, &[("probe", "bounded"), u, path], 1.0);
    assert_eq!(value(&s, DRIFTED, &[("probe", "bounded"), u]), 1.0);
    assert_eq!(
        value(&s, REASON, &[("probe", "bounded"), ("reason", "mismatch")]),
        1.0
    );
    // The default (15 minutes) still trusts the 304: that is the bound, documented.
    assert_eq!(value(&s, ENTRY, &[("probe", "default"), u, path]), 0.0);
    let access = std::fs::read_to_string(nginx.access_log()).unwrap_or_default();
    assert!(
        access.contains("\" 304 "),
        "no conditional request:\n{access}"
    );
}
