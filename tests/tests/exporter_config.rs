//! The exporter's configuration: a table of invalid files (one fixture per case under
//! `tests/fixtures/config/invalid/`), each with every message it must produce, checked through
//! the library and through `stackmedic-exporter --config.check`; a valid file; and the
//! examples shipped in `examples/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use stackmedic_exporter::config;
use stackmedic_tests::bin_path;
use stackmedic_tests::exporter::config_check;

/// Each invalid fixture and the problems it must produce, in order. Each entry is a substring
/// of one problem as printed (`path: message`); the number of problems must match exactly.
const INVALID: &[(&str, &[&str])] = &[
    (
        "01-unknown-top-level-key.yml",
        &["probe: unknown field `probe`, expected one of `global`, `probes`"],
    ),
    (
        "02-unknown-probe-key.yml",
        &["probes[0].intervall: unknown field `intervall`, expected one of `name`, `interval`, `timeout`, `http`, `cors`, `status_path`, `access_log`, `docker`"],
    ),
    (
        "03-unknown-kind-key.yml",
        &["probes[0].http.expect_status: unknown field `expect_status`, expected one of `url`, "],
    ),
    (
        "04-no-kind.yml",
        &["probes[0]: no probe kind given; add one of `http`, `cors`, `status_path`, `access_log`, `docker`"],
    ),
    (
        "05-two-kinds.yml",
        &["probes[0]: more than one probe kind given (`cors`, `http`); a probe has exactly one"],
    ),
    (
        "06-bad-url.yml",
        &["probes[0].http.url: relative URL without a base: \"not a url\""],
    ),
    (
        "07-bad-scheme.yml",
        &["probes[0].http.url: scheme must be http or https, found \"ftp\""],
    ),
    (
        "08-bad-duration.yml",
        &["probes[0].interval: invalid duration \"5 parsecs\": unknown time unit \"parsecs\""],
    ),
    (
        "09-timeout-longer-than-interval.yml",
        &["probes[0].timeout: must not be longer than the interval (2s)"],
    ),
    (
        "10-duplicate-name.yml",
        &["probes[1].name: duplicate probe name \"ready\""],
    ),
    (
        "11-bad-regex.yml",
        &["probes[0].docker.name_pattern: invalid regular expression: regex parse error:"],
    ),
    (
        "12-json-pointer-without-slash.yml",
        &["probes[0].http.json.llm_path: \"llm.path\" is not a JSON pointer (it must start with `/`)"],
    ),
    (
        "13-invalid-header-name.yml",
        &["probes[0].http.expect_headers[0]: invalid header name \"cf ray\""],
    ),
    (
        "14-invalid-yaml.yml",
        &["14-invalid-yaml.yml: invalid YAML: error: line 5 column 9:"],
    ),
    ("15-several-problems.yml", SEVERAL),
    (
        "16-every-global-problem.yml",
        &[
            "global.interval: invalid duration \"10x\"",
            "global.max_concurrency: invalid type: string \"lots\", expected usize",
            "global.timeout: invalid duration \"-5s\"",
        ],
    ),
    (
        "17-unknown-keys-in-one-section.yml",
        &[
            "probes[0].http.colour: unknown field `colour`, expected one of `url`, ",
            "probes[0].http.flavour: unknown field `flavour`, expected one of `url`, ",
            "probes[1].http.max_body_bytes: invalid type: string \"many\", expected u64",
            "probes[1].http.method: unknown variant `POST`, expected `GET` or `HEAD`",
        ],
    ),
    (
        "18-missing-ca-file.yml",
        &["probes[0].http.tls.ca_file: cannot read /nonexistent/stackmedic-test-ca.pem: No such file or directory"],
    ),
    (
        "19-json-problems.yml",
        &[
            "probes[0].json.bearer_token_file: cannot read secret file /nonexistent/stackmedic-test-token: No such file or directory",
            "probes[0].json.values[0].field: must be 1 to 64 characters of letters, digits, `_`, `-`, `.` or `:`",
            "probes[0].json.elements.pointer: \"streams\" is not a JSON pointer (it must start with `/`)",
            "probes[0].json.elements.max_elements: must be 1 to 1000",
            "probes[0].json.elements.label: element values need a label pointer to tell the elements apart",
            "probes[0].json.elements.values[0]: `equals` and `timestamp` exclude each other",
            "probes[0].json.elements.counts[0].where[0]: needs exactly one of `equals`, `not_equals`, `within`, `older_than`",
        ],
    ),
    (
        "20-network-problems.yml",
        &[
            "probes[0].dns.name: \"leitstand..home.arpa\" is not a DNS name",
            "probes[0].dns.transport: needs `server`",
            "probes[0].dns.expected[0]: 127.0.0.1 is not of ip_version ipv6",
            "probes[1].tcp.address: \"gateway.home.arpa\" is not host:port",
            "probes[1].tcp: server_name and tls_config need `tls: true`",
        ],
    ),
    (
        "21-disk-problems.yml",
        &[
            "probes[0].filesystem.path: must be an absolute path",
            "probes[0].filesystem.folders[1]: duplicate folder \"hls\"",
            "probes[0].filesystem.max_entries: must be 1 to 10000000",
            "probes[1].docker_disk.host: only unix:// sockets are supported",
            "probes[1].docker_disk.max_reported_volumes: must be at most 1000",
        ],
    ),
    ("22-forty-problems.yml", FORTY),
    (
        "23-duplicate-keys.yml",
        &[
            "global.interval: duplicate key at line 4, first at line 2; a key may appear once in a mapping",
            "probes[0].http.url: duplicate key at line 10, first at line 9; a key may appear once in a mapping",
            "probes[1].interval: duplicate key at line 13, first at line 12; a key may appear once in a mapping",
        ],
    ),
];

/// Every problem of `22-forty-problems.yml`, also expected from `--config.check`: type errors
/// beside other problems of their sections, and no problem that only follows from another.
const FORTY: &[&str] = &[
    "global.colour: unknown field `colour`, expected one of `interval`, `timeout`, `max_concurrency`",
    "global.interval: invalid duration \"10x\"",
    "global.max_concurrency: invalid type: string \"lots\", expected usize",
    "probes[0].interval: invalid duration \"soon\"",
    "probes[0].http.max_body_bytes: invalid type: string \"lots\", expected u64",
    "probes[0].http.url: scheme must be http or https, found \"ftp\"",
    "probes[0].http.valid_status_codes[1]: 99 is not an HTTP status code",
    "probes[0].http.expect_headers[0]: invalid header name \"cf ray\"",
    "probes[0].http.json: names no field; set at least one pointer",
    "probes[1].name: duplicate probe name \"ready\"",
    "probes[1].dns.transport: unknown variant `quic`, expected `udp` or `tcp`",
    "probes[1].dns.name: \"leitstand..home.arpa\" is not a DNS name",
    "probes[1].dns.expected[0]: 127.0.0.1 is not of ip_version ipv6",
    "probes[2].sri.base_url: relative URL without a base: \"not a url\"",
    "probes[2].sri.allowed_hosts[0]: \"http://cdn\" is not a host name or IP address",
    "probes[2].sri.scan_html: needs `root`",
    "probes[2].sri.max_entries_reported: must be at most 10000",
    "probes[3].hls.max_variants: invalid type: string \"all\", expected usize",
    "probes[3].hls.segment_method: unknown variant `POST`, expected `HEAD` or `GET`",
    "probes[3].hls.url: invalid type: sequence, expected a string representing an URL",
    "probes[3].hls.stale_multiplier: must be between 0.5 and 100",
    "probes[4].access_log.format: unknown variant `apache`, expected `regex` or `caddy`",
    "probes[4].access_log.rotated_idle_timeout: invalid duration \"forever\"",
    "probes[4].access_log.max_read_bytes: must be at least 1",
    "probes[4].access_log.max_rotated_files: must be 1 to 1000",
    "probes[5].tcp.tls: invalid type: string \"maybe\", expected a boolean",
    "probes[5].tcp.address: \"gateway\" is not host:port",
    "probes[5].tcp.max_banner_bytes: must be 1 to 65536",
    "probes[6].ads.host: invalid type: integer `42`, expected a string",
    "probes[6].ads.expected_state: unknown ADS state \"Sleeping\"",
    "probes[7].backup.folders[1].pattern: invalid regular expression: regex parse error:",
    "probes[7].backup.folders[0].path: must be an absolute path",
    "probes[7].backup.verify_timeout: must be positive",
    "probes[8].filesystem.path: must be an absolute path",
    "probes[8].filesystem.folders[0].name: must not be empty",
    "probes[8].filesystem.max_entries: must be 1 to 10000000",
    "probes[9].json.elements.counts[0].where[0].within: invalid duration \"sometime\"",
    "probes[9].json.values[0].field: must be 1 to 64 characters",
    "probes[9].json.values[0].pointer: \"streams\" is not a JSON pointer (it must start with `/`)",
    "probes[9].json.elements.max_elements: must be 1 to 1000",
];

/// Every problem of `15-several-problems.yml`, also expected from `--config.check`.
const SEVERAL: &[&str] = &[
    "global.interval: invalid duration \"often\"",
    "probes[0].http.url: scheme must be http or https, found \"gopher\"",
    "probes[1].name: duplicate probe name \"ready\"",
    "probes[1].cors.origin: \"app.example\" is not an origin such as https://app.example",
    "probes[1].timeout: must not be longer than the interval (1s)",
    "probes[2]: no probe kind given; add one of `http`, `cors`, `status_path`, `access_log`, `docker`",
    "probes[3].http.json.build_sha: \"build/sha\" is not a JSON pointer (it must start with `/`)",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/config")
}

fn files_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

#[test]
fn every_invalid_fixture_produces_its_messages() {
    let dir = fixtures().join("invalid");
    // The table and the folder must agree: a fixture without expectations tests nothing.
    let on_disk: Vec<String> = files_in(&dir, "yml")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let in_table: Vec<String> = INVALID.iter().map(|(f, _)| (*f).to_owned()).collect();
    assert_eq!(on_disk, in_table, "fixtures on disk and the table differ");

    let mut failures = Vec::new();
    for (file, expected) in INVALID {
        let errs = match config::load(Some(&dir.join(file))) {
            Ok(_) => {
                failures.push(format!("{file}: accepted, expected {expected:?}"));
                continue;
            }
            Err(errs) => errs,
        };
        let lines: Vec<String> = errs.problems.iter().map(ToString::to_string).collect();
        if lines.len() != expected.len() {
            failures.push(format!(
                "{file}: {} problem(s), expected {}:\n  {}",
                lines.len(),
                expected.len(),
                lines.join("\n  ")
            ));
            continue;
        }
        for (line, want) in lines.iter().zip(expected.iter()) {
            if !line.contains(want) {
                failures.push(format!(
                    "{file}: got {line:?}\n  expected it to contain {want:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_yaml_points_at_the_line() {
    let errs = config::load(Some(&fixtures().join("invalid/14-invalid-yaml.yml")))
        .expect_err("invalid YAML must be rejected");
    let text = errs.to_string();
    // The parser's excerpt shows the offending line so the user need not count.
    assert!(text.contains("5 |   - name: other"), "{text}");
}

#[test]
fn config_check_prints_every_problem_and_fails() {
    let file = fixtures().join("invalid/15-several-problems.yml");
    let out = config_check(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "exit status {} for an invalid file",
        out.status
    );
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    for want in SEVERAL {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
    assert_eq!(
        stderr.lines().count(),
        SEVERAL.len(),
        "one line per problem:\n{stderr}"
    );
}

#[test]
fn config_check_prints_all_forty_problems_once() {
    let file = fixtures().join("invalid/22-forty-problems.yml");
    let out = config_check(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    // A problem is a line starting with its path; the regular expression parser's message
    // continues on further lines.
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("global.") || l.starts_with("probes["))
        .collect();
    assert_eq!(problems.len(), FORTY.len(), "{stderr}");
    for (line, want) in problems.iter().zip(FORTY) {
        assert!(line.starts_with(want), "got {line:?}, expected {want:?}");
    }
}

#[test]
fn config_check_accepts_a_valid_file() {
    let file = fixtures().join("valid.yml");
    let out = config_check(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {}: {}{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok (7 probes)"), "{stdout}");
    let kinds: Vec<&str> = config::load(Some(&file))
        .expect("valid")
        .probes
        .iter()
        .map(|p| p.kind.name())
        .collect();
    assert_eq!(
        kinds,
        [
            "http",
            "http",
            "http",
            "cors",
            "status_path",
            "access_log",
            "docker"
        ]
    );
}

#[test]
fn config_check_warns_about_a_file_without_probes() {
    let file = fixtures().join("empty.yml");
    let out = config_check(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {}: {stderr}{stdout}",
        out.status
    );
    assert!(stdout.contains("ok (0 probes)"), "{stdout}");
    assert!(
        stderr.contains("warning: ") && stderr.contains("no probes"),
        "an empty file must be called out: {stderr:?}"
    );
}

#[test]
fn config_check_accepts_the_embedded_default() {
    let out = Command::new(bin_path("stackmedic-exporter"))
        .arg("--config.check")
        .output()
        .expect("run stackmedic-exporter --config.check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("embedded default: ok (1 probes)"));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "no warning for a valid file"
    );
}

#[test]
fn every_example_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    // The remediator's and Prometheus' examples share the folder; everything else is an
    // exporter config.
    let files: Vec<PathBuf> = files_in(&dir, "yml")
        .into_iter()
        .filter(|p| {
            !p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("remediator") || n.starts_with("prometheus")
            })
        })
        .collect();
    assert!(
        !files.is_empty(),
        "no exporter example in {}",
        dir.display()
    );
    // Secrets named by the examples are read at load, as they are in production. nextest runs
    // each test in a process of its own, so setting the variable here touches no other test.
    std::env::set_var("STACKMEDIC_CAMERA_APP_TOKEN", "example-admin-token");
    let mut failures = Vec::new();
    for file in files {
        if let Err(errs) = config::load(Some(&file)) {
            failures.push(format!("{}:\n{errs}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
