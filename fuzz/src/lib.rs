//! The fuzz entry functions: one per target, each taking the fuzzer's bytes. The targets in
//! `fuzz_targets/` call them under `cargo fuzz`; the stable corpus replay test
//! (`tests/tests/hardening_fuzz_corpus.rs`) includes this file and calls the same functions on
//! every committed corpus and regression file. An entry function panics only on a bug: outside
//! input must give an error, never a panic.

use std::collections::BTreeMap;

use stackmedic_common::webconfig;
use stackmedic_remediator::matcher::Matcher;
use stackmedic_remediator::webhook;

/// A fuzz entry function.
pub type Entry = fn(&[u8]);

/// Every target: its name (the folder under `corpus/` and `regressions/`) and entry function.
pub const TARGETS: &[(&str, Entry)] = &[
    ("web_config", web_config),
    ("webhook_payload", webhook_payload),
    ("matchers", matchers),
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
