//! The shipped alerting and dashboard files (`alerts/`, `dashboards/`, `docs/metrics.md`) as
//! seen by tests: the panel queries of every dashboard, the metric names a PromQL expression
//! uses, the metrics `docs/metrics.md` lists, and a copy of the rules with shorter `for:`
//! durations for tests that run the loop in seconds.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The repository root (the parent of the `tests/` crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the repository")
        .to_path_buf()
}

/// Reads a file below the repository root.
///
/// # Panics
/// When it cannot be read.
pub fn read_repo_file(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Files in a repository folder whose names end in `suffix`, sorted.
///
/// # Panics
/// When the folder cannot be read.
pub fn repo_files(folder: &str, suffix: &str) -> Vec<PathBuf> {
    let dir = repo_root().join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix))
        })
        .collect();
    files.sort();
    files
}

/// One query of one dashboard panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    /// The dashboard's file name.
    pub dashboard: String,
    /// The panel's title.
    pub panel: String,
    /// The query as written, with Grafana variables.
    pub expr: String,
}

impl PanelQuery {
    /// Where the query comes from, for failure messages.
    pub fn origin(&self) -> String {
        format!("{} / {:?}", self.dashboard, self.panel)
    }
}

/// Every panel query of a dashboard JSON document (rows' nested panels included).
///
/// # Errors
/// When a panel has a target without a string `expr`.
pub fn dashboard_queries(name: &str, dashboard: &serde_json::Value) -> Result<Vec<PanelQuery>> {
    fn walk(name: &str, panels: &serde_json::Value, out: &mut Vec<PanelQuery>) -> Result<()> {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().with_context(|| {
                    format!("{name}: panel {title:?} has a target without expr")
                })?;
                out.push(PanelQuery {
                    dashboard: name.to_owned(),
                    panel: title.clone(),
                    expr: expr.to_owned(),
                });
            }
            walk(name, &panel["panels"], out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(name, &dashboard["panels"], &mut out)?;
    Ok(out)
}

/// Every dashboard in `dashboards/`, parsed, with its file name.
///
/// # Panics
/// When a file is not JSON.
pub fn dashboards() -> Vec<(String, serde_json::Value)> {
    repo_files("dashboards", ".json")
        .into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            (name, value)
        })
        .collect()
}

/// A panel query with its Grafana variables replaced so that Prometheus can run it:
/// `$__rate_interval` (and the other interval variables) by `rate_interval`, `$instance` by
/// `.*` (the "All" value of the dashboards' instance variable).
pub fn instantiate(expr: &str, rate_interval: &str) -> String {
    expr.replace("${__rate_interval}", rate_interval)
        .replace("$__rate_interval", rate_interval)
        .replace("$__interval", rate_interval)
        .replace("${instance}", ".*")
        .replace("$instance", ".*")
}

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a parenthesised list of label names, not an expression.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression selects (identifiers that are neither functions,
/// keywords, label names in `{…}` or `by (…)` lists, strings, numbers nor durations).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_until = |i: &mut usize, open: char, close: char| {
        let mut depth = 0usize;
        while *i < chars.len() {
            let c = chars[*i];
            if c == '"' || c == '\'' || c == '`' {
                *i += 1;
                while *i < chars.len() && chars[*i] != c {
                    if chars[*i] == '\\' {
                        *i += 1;
                    }
                    *i += 1;
                }
            } else if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    *i += 1;
                    return;
                }
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            skip_until(&mut i, '{', '}');
        } else if c == '[' {
            skip_until(&mut i, '[', ']');
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_digit() || c == '.' {
            // Numbers, including 1e3 and 0x1f, and durations such as 5m.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let lower = word.to_ascii_lowercase();
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                if j < chars.len() && chars[j] == '(' {
                    i = j;
                    skip_until(&mut i, '(', ')');
                }
            } else if j < chars.len() && chars[j] == '(' {
                // A function call.
            } else if !KEYWORDS.contains(&lower.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The metrics listed in `docs/metrics.md` (the first column of its tables), plus the
/// `_bucket`, `_sum` and `_count` series of its histograms.
pub fn documented_metrics() -> BTreeSet<String> {
    let text = read_repo_file("docs/metrics.md");
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 3 {
            continue;
        }
        let Some(name) = cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`')) else {
            continue;
        };
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            continue;
        }
        if cells[2] == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
        names.insert(name.to_owned());
    }
    names
}

/// The names of the recording rules in a rule file (`- record: NAME` lines).
pub fn recording_rule_names(rules: &str) -> BTreeSet<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

/// The names of the alerting rules in a rule file (`- alert: NAME` lines), in file order.
pub fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

/// A copy of a rule file for tests that run in seconds: every `for:` becomes `for_all`.
///
/// The shipped rules wait minutes before firing, which a closed-loop test cannot afford; the
/// expressions, labels and annotations stay exactly as shipped.
pub fn with_for(rules: &str, for_all: &str) -> String {
    rules
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("for:") {
                let indent = &line[..line.len() - trimmed.len()];
                format!("{indent}for: {for_all}")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
