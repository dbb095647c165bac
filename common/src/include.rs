//! `include: [<glob>, …]`: a configuration file that takes the list entries of other files.
//!
//! A host runs some stacks and not others, so a configuration is one file with the settings of
//! the process (`global` and the like) and an `include` list of glob patterns, relative to the
//! including file's folder as Prometheus reads `rule_files`, each matching files that hold list
//! entries only (`probes:`, or `targets:` and `rules:`): one file per stack, enabled by copying
//! it into the folder and removed by deleting it.
//!
//! ```yaml
//! global:
//!   interval: 30s
//! include:
//!   - exporter.d/*.yml
//! ```
//!
//! The entries of each included file are appended to the including file's lists, files in the
//! order of the patterns and, within a pattern, by name; a file matched twice is read once. A
//! pattern that matches nothing is no problem (an empty folder is a host without those
//! stacks), but a path without wildcards must exist. Included files cannot include further
//! files or set anything but the lists. Every problem found in an included entry is reported
//! with the included file and the entry's path there ([`Included::locate`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::{kind_of, parse_yaml, quoted, read_yaml_file, ConfigErrors};

/// The key that lists the patterns of included files.
pub const KEY: &str = "include";

/// Where an entry of a merged list was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The included file, or `None` for the including file itself.
    pub file: Option<PathBuf>,
    /// The entry's index in its file's list.
    pub index: usize,
}

/// A configuration document with the entries of its included files merged in.
#[derive(Debug, Clone, Default)]
pub struct Included {
    /// The document: the including file's keys, without `include`, its lists extended by the
    /// entries of the included files.
    pub value: Value,
    /// The included files, in the order they were read.
    pub files: Vec<PathBuf>,
    /// Per list key, the origin of each entry of the merged list.
    origins: BTreeMap<String, Vec<Origin>>,
}

impl Included {
    /// A document of one file, which includes nothing.
    #[must_use]
    pub fn single(value: Value) -> Included {
        Included {
            value,
            ..Included::default()
        }
    }

    /// Where entry `index` of the merged list `list` was written; an entry nothing is known
    /// of is the including file's own.
    #[must_use]
    pub fn origin(&self, list: &str, index: usize) -> Origin {
        self.origins
            .get(list)
            .and_then(|o| o.get(index))
            .cloned()
            .unwrap_or(Origin { file: None, index })
    }

    /// `path` of the merged document (`probes[7].http.url`) as the place it was written: the
    /// same path for the including file's own keys and entries, and `<file>: probes[1].http.url`
    /// for an entry of an included file.
    #[must_use]
    pub fn locate_path(&self, path: &str) -> String {
        for list in self.origins.keys() {
            let Some(rest) = path
                .strip_prefix(list.as_str())
                .and_then(|r| r.strip_prefix('['))
            else {
                continue;
            };
            let Some((index, tail)) = rest.split_once(']') else {
                continue;
            };
            let Ok(index) = index.parse::<usize>() else {
                continue;
            };
            let origin = self.origin(list, index);
            let local = format!("{list}[{}]{tail}", origin.index);
            return match origin.file {
                Some(file) => format!("{}: {local}", file.display()),
                None => local,
            };
        }
        path.to_string()
    }

    /// The problems of the merged document with their paths as written ([`Self::locate_path`]).
    #[must_use]
    pub fn locate(&self, errs: ConfigErrors) -> ConfigErrors {
        let mut out = ConfigErrors::default();
        for p in errs.problems {
            out.push(self.locate_path(&p.path), p.message);
        }
        out
    }
}

/// Reads the configuration file at `path` and the files its `include` patterns match, whose
/// keys may only be the lists named by `lists`.
///
/// # Errors
/// Every problem of the `include` list and of the included files' shapes (a file that cannot
/// be read, is not YAML, sets other keys or includes again), each with its file and path. The
/// entries themselves are checked by the caller, on the merged document.
pub fn read(path: &Path, lists: &[&str]) -> Result<Included, ConfigErrors> {
    let value = read_yaml_file(path)?;
    resolve(value, path, lists)
}

/// [`read`] for a document already parsed from the file at `path` (the base of relative
/// patterns).
///
/// # Errors
/// As [`read`].
pub fn resolve(mut value: Value, path: &Path, lists: &[&str]) -> Result<Included, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let patterns = match value.as_object_mut().and_then(|m| m.remove(KEY)) {
        None | Some(Value::Null) => return Ok(Included::single(value)),
        Some(Value::Array(items)) => items,
        Some(other) => {
            errs.push(
                KEY,
                format!(
                    "expected a list of file patterns, found {}",
                    kind_of(&other)
                ),
            );
            return Err(errs);
        }
    };
    let base = path.parent().unwrap_or_else(|| Path::new(""));
    let mut files: Vec<PathBuf> = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let at = format!("{KEY}[{i}]");
        let Some(pattern) = pattern.as_str().filter(|p| !p.trim().is_empty()) else {
            errs.push(
                at,
                format!("expected a file pattern, found {}", kind_of(pattern)),
            );
            continue;
        };
        for file in expand(base, pattern, &at, &mut errs) {
            // The including file is never its own include (`*.yml` beside it).
            if same_file(&file, path) || files.contains(&file) {
                continue;
            }
            files.push(file);
        }
    }

    let mut origins: BTreeMap<String, Vec<Origin>> = BTreeMap::new();
    for list in lists {
        let own = match value.get(*list) {
            Some(Value::Array(items)) => items.len(),
            _ => 0,
        };
        origins.insert(
            (*list).to_string(),
            (0..own).map(|index| Origin { file: None, index }).collect(),
        );
    }
    for file in &files {
        let shown = file.display().to_string();
        let included = match std::fs::read_to_string(file) {
            Ok(text) => match parse_yaml(&text) {
                Ok(v) => v,
                Err(e) => {
                    errs.push(&shown, e);
                    continue;
                }
            },
            Err(e) => {
                errs.push(&shown, format!("cannot read the included file: {e}"));
                continue;
            }
        };
        let Value::Object(map) = included else {
            errs.push(
                &shown,
                format!("expected a mapping, found {}", kind_of(&included)),
            );
            continue;
        };
        for (key, entries) in map {
            if key == KEY {
                errs.push(
                    format!("{shown}: {key}"),
                    format!(
                        "an included file cannot include others: list its patterns in {}",
                        path.display()
                    ),
                );
                continue;
            }
            if !lists.contains(&key.as_str()) {
                errs.push(
                    format!("{shown}: {key}"),
                    format!(
                        "an included file holds only {}; set `{key}` in {}",
                        quoted(lists),
                        path.display()
                    ),
                );
                continue;
            }
            let entries = match entries {
                Value::Null => continue,
                Value::Array(entries) => entries,
                other => {
                    errs.push(
                        format!("{shown}: {key}"),
                        format!("expected a list, found {}", kind_of(&other)),
                    );
                    continue;
                }
            };
            let merged = value
                .as_object_mut()
                .map(|m| m.entry(key.clone()).or_insert(Value::Array(Vec::new())));
            let Some(Value::Array(target)) = merged else {
                // The including file's own value is not a list: its own check reports it.
                continue;
            };
            let origin = origins.entry(key.clone()).or_default();
            for (index, entry) in entries.into_iter().enumerate() {
                target.push(entry);
                origin.push(Origin {
                    file: Some(file.clone()),
                    index,
                });
            }
        }
    }
    errs.into_result(Included {
        value,
        files,
        origins,
    })
}

/// The files `pattern` matches, relative to `base` unless absolute, sorted by name.
fn expand(base: &Path, pattern: &str, at: &str, errs: &mut ConfigErrors) -> Vec<PathBuf> {
    let relative = Path::new(pattern);
    let full = if relative.is_absolute() {
        pattern.to_string()
    } else {
        // The folder is taken literally, whatever characters its name has.
        let folder = glob::Pattern::escape(&base.display().to_string());
        if folder.is_empty() {
            pattern.to_string()
        } else {
            format!("{}/{pattern}", folder.trim_end_matches('/'))
        }
    };
    let wildcard = pattern.contains(['*', '?', '[']);
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        // `*.yml` does not take an editor's hidden `.stack.yml.swp` or the like.
        require_literal_leading_dot: true,
    };
    let paths = match glob::glob_with(&full, options) {
        Ok(paths) => paths,
        Err(e) => {
            errs.push(at, format!("invalid pattern {pattern:?}: {e}"));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for entry in paths {
        match entry {
            Ok(p) if p.is_dir() => {}
            Ok(p) => out.push(p),
            Err(e) => errs.push(at, format!("{pattern:?}: {e}")),
        }
    }
    out.sort();
    if out.is_empty() && !wildcard {
        errs.push(at, format!("{full}: no such file"));
    }
    out
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn entries_of_included_files_are_appended_in_order_and_located() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(
            dir.path(),
            "main.yml",
            "global: {a: 1}\nprobes: [{name: own}]\ninclude: ['stacks.d/*.yml', stacks.d/b.yml, other.yml]\n",
        );
        write(
            dir.path(),
            "stacks.d/b.yml",
            "probes: [{name: b0}, {name: b1}]\n",
        );
        write(dir.path(), "stacks.d/a.yml", "probes: [{name: a0}]\n");
        write(
            dir.path(),
            "stacks.d/.hidden.yml",
            "probes: [{name: hidden}]\n",
        );
        write(dir.path(), "stacks.d/notes.txt", "not yaml: [\n");
        write(dir.path(), "other.yml", "probes:\n");
        let inc = read(&main, &["probes"]).unwrap();
        let names: Vec<&str> = inc.value["probes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["own", "a0", "b0", "b1"]);
        assert!(inc.value.get(KEY).is_none());
        assert_eq!(inc.files.len(), 3, "{:?}", inc.files);
        assert_eq!(inc.locate_path("probes[0].http.url"), "probes[0].http.url");
        let b1 = dir.path().join("stacks.d/b.yml");
        assert_eq!(
            inc.locate_path("probes[3].http.url"),
            format!("{}: probes[1].http.url", b1.display())
        );
        assert_eq!(inc.locate_path("global.a"), "global.a");
        assert_eq!(
            inc.origin("probes", 2),
            Origin {
                file: Some(b1),
                index: 0
            }
        );
    }

    #[test]
    fn every_problem_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(
            dir.path(),
            "main.yml",
            "include: ['d/*.yml', 3, missing.yml, 'empty.d/*.yml', '[']\n",
        );
        write(
            dir.path(),
            "d/a.yml",
            "global: {}\ninclude: [x.yml]\nprobes: {}\n",
        );
        write(dir.path(), "d/b.yml", "probes: [\n");
        write(dir.path(), "d/c.yml", "- just a list\n");
        let errs = read(&main, &["probes"]).unwrap_err();
        let text = errs.to_string();
        let a = dir.path().join("d/a.yml").display().to_string();
        for want in [
            format!("{a}: global: an included file holds only `probes`; set `global` in"),
            format!("{a}: include: an included file cannot include others"),
            format!("{a}: probes: expected a list, found a mapping"),
            format!("{}: invalid YAML", dir.path().join("d/b.yml").display()),
            format!(
                "{}: expected a mapping, found a list",
                dir.path().join("d/c.yml").display()
            ),
            "include[1]: expected a file pattern, found a number".to_string(),
            "include[2]: ".to_string()
                + &dir.path().join("missing.yml").display().to_string()
                + ": no such file",
            "include[4]: invalid pattern \"[\"".to_string(),
        ] {
            assert!(text.contains(&want), "missing {want:?} in:\n{text}");
        }
        assert_eq!(errs.problems.len(), 8, "{text}");
    }

    #[test]
    fn without_include_the_document_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(dir.path(), "main.yml", "probes: [{name: a}]\n");
        let inc = read(&main, &["probes"]).unwrap();
        assert_eq!(inc.value, parse_yaml("probes: [{name: a}]\n").unwrap());
        assert!(inc.files.is_empty());
        assert_eq!(inc.locate_path("probes[0].name"), "probes[0].name");
        let errs = read(&write(dir.path(), "bad.yml", "include: yes\n"), &["probes"]).unwrap_err();
        assert_eq!(
            errs.to_string(),
            "include: expected a list of file patterns, found a boolean"
        );
    }
}
