//! What the contract needs of stackmedic-exporter's configuration files: each probe's name and
//! kind, and which containers a `docker` probe reports. Only these keys are read;
//! `stackmedic-exporter --config.check` validates the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use stackmedic_common::include;

use super::domain::{Domain, Values};
use super::promql::Hints;

/// Keys of a probe entry that are not its kind.
const COMMON_KEYS: [&str; 3] = ["name", "interval", "timeout"];

/// Metric name prefixes and the probe kinds whose runs write them (longest prefix first).
const METRIC_KINDS: [(&str, &[&str]); 15] = [
    ("stackmedic_docker_disk_", &["docker_disk"]),
    ("stackmedic_docker_", &["docker"]),
    ("stackmedic_container_", &["docker"]),
    ("stackmedic_hls_", &["hls"]),
    ("stackmedic_ads_", &["ads"]),
    ("stackmedic_backup_", &["backup"]),
    ("stackmedic_sri_", &["sri"]),
    ("stackmedic_summary_", &["http"]),
    ("stackmedic_http_", &["http"]),
    ("stackmedic_cors_", &["cors"]),
    ("stackmedic_status_path_", &["status_path", "access_log"]),
    ("stackmedic_dns_", &["dns"]),
    ("stackmedic_tcp_", &["tcp"]),
    ("stackmedic_filesystem_", &["filesystem"]),
    ("stackmedic_json_", &["json"]),
];

/// One probe as the contract sees it.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Its name: the `probe` label of its series.
    pub name: String,
    /// Its kind key (`docker`, `hls`, …).
    pub kind: String,
    /// For `docker` probes: the `name_pattern` (unanchored), if any.
    pub name_pattern: Option<String>,
    /// For `docker` probes: the `expected` containers.
    pub expected: Vec<String>,
}

/// The probes of the exporter configuration files given.
#[derive(Debug, Clone, Default)]
pub struct Exporters {
    /// The files, as given.
    pub files: Vec<String>,
    /// Their probes.
    pub probes: Vec<Probe>,
}

impl Exporters {
    /// Reads the files.
    ///
    /// # Errors
    /// A message per file that cannot be read or has no `probes` list.
    pub fn read(files: &[&Path]) -> Result<Exporters, Vec<String>> {
        let mut out = Exporters::default();
        let mut errors = Vec::new();
        for file in files {
            let shown = file.display().to_string();
            // The probes of the files it includes too (`include: [exporter.d/*.yml]`).
            match include::read(file, &["probes"]) {
                Ok(doc) => match doc.value.get("probes").and_then(Value::as_array) {
                    Some(list) => out.probes.extend(list.iter().filter_map(probe)),
                    None if !doc.files.is_empty() => {}
                    None => errors.push(format!("{shown}: no `probes` list")),
                },
                Err(e) => errors.extend(e.problems.iter().map(|p| format!("{shown}: {p}"))),
            }
            out.files.push(shown);
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    fn files_text(&self) -> String {
        self.files.join(", ")
    }

    fn names_of(&self, kinds: &[&str]) -> BTreeSet<String> {
        self.probes
            .iter()
            .filter(|p| kinds.contains(&p.kind.as_str()))
            .map(|p| p.name.clone())
            .collect()
    }

    /// The containers `docker` probes report, or `None` when one reports every container.
    fn containers(&self) -> Option<Values> {
        let docker: Vec<&Probe> = self.probes.iter().filter(|p| p.kind == "docker").collect();
        let mut patterns = Vec::new();
        let mut also = BTreeSet::new();
        for p in &docker {
            patterns.push(format!("(?:{})", p.name_pattern.as_deref()?));
            also.extend(p.expected.iter().cloned());
        }
        if patterns.is_empty() {
            return Some(Values::OneOf(BTreeSet::new()));
        }
        let regex = regex::Regex::new(&patterns.join("|")).ok()?;
        Some(Values::Matching { regex, also })
    }
}

impl Hints for Exporters {
    fn for_metric(&self, metric: &str) -> BTreeMap<String, Domain> {
        let mut out = BTreeMap::new();
        let Some((_, kinds)) = METRIC_KINDS.iter().find(|(p, _)| metric.starts_with(p)) else {
            return out;
        };
        out.insert(
            "probe".to_string(),
            Domain::one_of(
                self.names_of(kinds),
                format!(
                    "the names of the {} probes of {}",
                    kinds.join("/"),
                    self.files_text()
                ),
            ),
        );
        if metric.starts_with("stackmedic_container_") {
            if let Some(values) = self.containers() {
                out.insert(
                    "container".to_string(),
                    Domain {
                        values,
                        source: format!(
                            "the containers the docker probes of {} report",
                            self.files_text()
                        ),
                    },
                );
            }
        }
        out
    }
}

fn probe(v: &Value) -> Option<Probe> {
    let map = v.as_object()?;
    let name = map.get("name")?.as_str()?.to_string();
    let (kind, section) = map
        .iter()
        .find(|(k, _)| !COMMON_KEYS.contains(&k.as_str()))?;
    let strings = |key: &str| -> Vec<String> {
        section
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    Some(Probe {
        name,
        kind: kind.clone(),
        name_pattern: section
            .get("name_pattern")
            .and_then(Value::as_str)
            .map(str::to_string),
        expected: strings("expected"),
    })
}
