//! The fuzz entry functions: one per target, each taking the fuzzer's bytes. The targets in
//! `fuzz_targets/` call them under `cargo fuzz`; the stable corpus replay test
//! (`tests/tests/hardening_fuzz_corpus.rs`) includes this file and calls the same functions on
//! every committed corpus and regression file. An entry function panics only on a bug: outside
//! input must give an error, never a panic.

// A path relative to this file, so the corpus replay test can include this file elsewhere.
#[path = "ads.rs"]
mod ads;

use std::collections::BTreeMap;

use stackmedic_common::config::parse_yaml;
use stackmedic_common::webconfig;
use stackmedic_exporter::probe::{hls, sri, status_path};
use stackmedic_remediator::matcher::Matcher;
use stackmedic_remediator::webhook;

pub use ads::ads_replies;

/// A fuzz entry function.
pub type Entry = fn(&[u8]);

/// Every target: its name (the folder under `corpus/` and `regressions/`) and entry function.
pub const TARGETS: &[(&str, Entry)] = &[
    ("web_config", web_config),
    ("webhook_payload", webhook_payload),
    ("matchers", matchers),
    ("exporter_config", exporter_config),
    ("remediator_config", remediator_config),
    ("hls", hls_playlist),
    ("sri_manifest", sri_manifest),
    ("sri_html", sri_html),
    ("access_log", access_log),
    ("ads", ads_replies),
];

/// The web configuration file's parser and checks (`--web.config.file`), without the files it
/// names.
pub fn web_config(data: &[u8]) {
    let _ = webconfig::parse(data);
}

/// Alertmanager's webhook payload as the remediator parses it, and the occurrence (fingerprint
/// and start) it derives from each alert.
pub fn webhook_payload(data: &[u8]) {
    if let Ok(payload) = webhook::parse(data) {
        for alert in &payload.alerts {
            let (fingerprint, _) = alert.occurrence();
            assert!(
                !fingerprint.is_empty(),
                "an occurrence without a fingerprint"
            );
        }
    }
}

/// A matcher (first line) against labels (`name=value`, one per further line). A matcher that
/// parses must parse again from its own text and decide the same.
pub fn matchers(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let labels: BTreeMap<String, String> = rest
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let Ok(matcher) = Matcher::parse(first) else {
        return;
    };
    let decision = matcher.matches(&labels);
    let again = Matcher::parse(&matcher.to_string())
        .unwrap_or_else(|e| panic!("{matcher} parsed, but its text does not: {e}"));
    assert_eq!(
        again.matches(&labels),
        decision,
        "{matcher} decides differently"
    );
}

/// The exporter's configuration file as `--config.file` loads it: YAML, then the typed and
/// validated configuration (files it names, such as CA files, are read as at load).
pub fn exporter_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(value) = parse_yaml(text) {
        let _ = stackmedic_exporter::config::from_value(&value);
    }
}

/// The remediator's configuration file as `--config.file` loads it (secret files and
/// variables it names are read as at load).
pub fn remediator_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(value) = parse_yaml(text) {
        let _ = stackmedic_remediator::config::from_value(&value);
    }
}

/// An HLS playlist as the `hls` probe handles it (see `hls::fuzz_playlist`).
pub fn hls_playlist(data: &[u8]) {
    hls::fuzz_playlist(data);
}

/// An `sri-manifest.json`: parsed; every entry's path is either refused or split into safe
/// segments, and its integrity metadata is usable or refused with a reason.
pub fn sri_manifest(data: &[u8]) {
    let Ok(manifest) = sri::parse_manifest(data) else {
        return;
    };
    for (key, integrity) in &manifest {
        if let Some(segments) = sri::safe_segments(key) {
            assert!(!segments.is_empty(), "{key:?}");
            for s in &segments {
                assert!(
                    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0']),
                    "{key:?} gave the segment {s:?}"
                );
            }
        }
        if let Ok(i) = integrity {
            let _ = i.strongest();
            assert!(
                i.shares_token(i),
                "{key:?}: usable metadata without a token"
            );
        }
    }
}

/// The HTML attribute scanner of the `sri` probe (see `sri::fuzz_html`).
pub fn sri_html(data: &[u8]) {
    sri::fuzz_html(&String::from_utf8_lossy(data));
}

/// Access-log lines as the `access_log` probe counts them (see
/// `status_path::access_log::fuzz_lines`).
pub fn access_log(data: &[u8]) {
    status_path::access_log::fuzz_lines(data);
}
