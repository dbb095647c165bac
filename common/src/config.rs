//! Strict configuration loading that reports every problem with its path.
//!
//! A file is parsed from YAML into a generic tree first. Each part of it (the global section,
//! each list entry) is then deserialized into its typed form on its own, so one bad entry does
//! not hide the problems of the next, and every problem carries a path such as
//! `probes[3].http.url`. Types that can be checked while deserializing (durations, regular
//! expressions, URLs) are parsed there; cross-field checks run afterwards and push onto the same
//! [`ConfigErrors`].

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One configuration problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path inside the document, such as `probes[3].url`; empty for the document itself.
    pub path: String,
    /// What is wrong, lower case, without a trailing period.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one configuration document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The problems in document order.
    pub problems: Vec<Problem>,
}

impl ConfigErrors {
    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Whether a problem was recorded at `path` or inside it (`path.key`, `path[3]`).
    ///
    /// A check that relates several keys asks this first: when one of them already has a
    /// problem, the value in hand is its default (see [`typed`]), and a complaint about it
    /// would be a consequence of the first problem, not a problem of the document.
    #[must_use]
    pub fn has(&self, path: &str) -> bool {
        self.problems.iter().any(|p| {
            p.path
                .strip_prefix(path)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }

    /// Whether any of `paths` has a problem; see [`ConfigErrors::has`].
    #[must_use]
    pub fn has_any(&self, paths: &[&str]) -> bool {
        paths.iter().any(|p| self.has(p))
    }

    /// True when no problem was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// `Ok(value)` when no problem was recorded, otherwise the problems.
    ///
    /// # Errors
    /// Returns `self` when it holds at least one problem.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and parses a YAML file into a generic tree.
///
/// # Errors
/// A file that cannot be read or is not valid YAML gives one problem naming the file; a
/// mapping that has a key twice gives one problem per repeated key, each at its path with its
/// line, and nothing else is checked until they are gone (which of the values was meant is not
/// the loader's guess).
pub fn read_yaml_file(path: &Path) -> Result<Value, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    match std::fs::read_to_string(path) {
        Ok(text) => match parse_tree(&text) {
            Ok((value, duplicates)) if duplicates.is_empty() => Ok(value),
            Ok((_, duplicates)) => {
                errs.problems = duplicates;
                Err(errs)
            }
            Err(e) => {
                errs.push("", format!("{}: {e}", path.display()));
                Err(errs)
            }
        },
        Err(e) => {
            errs.push("", format!("cannot read {}: {e}", path.display()));
            Err(errs)
        }
    }
}

/// Parses YAML text into a generic tree; an empty document is an empty mapping.
///
/// # Errors
/// Returns the parser's message, which includes the line and column, or one line per key that
/// a mapping has twice.
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    let (value, duplicates) = parse_tree(text)?;
    if duplicates.is_empty() {
        Ok(value)
    } else {
        Err(duplicates
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

/// Parses YAML text into a generic tree and the keys that a mapping has more than once (the
/// first value of such a key is kept). The parser is told to pass repeated keys on, so that
/// every one of them is found, not only the first.
fn parse_tree(text: &str) -> Result<(Value, Vec<Problem>), String> {
    if text.trim().is_empty() {
        return Ok((Value::Object(Default::default()), Vec::new()));
    }
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
    };
    DUPLICATES.with(|d| d.borrow_mut().clear());
    let parsed = serde_saphyr::from_str_with_options::<Tree>(text, options);
    let duplicates = DUPLICATES.with(|d| std::mem::take(&mut *d.borrow_mut()));
    let Tree(value) = parsed.map_err(|e| format!("invalid YAML: {e}"))?;
    let value = match value {
        Value::Null => Value::Object(Default::default()),
        v => v,
    };
    Ok((value, duplicates))
}

thread_local! {
    /// The repeated keys [`Tree`] found in the document being parsed on this thread: the
    /// parser's entry point takes a type, not a stateful deserializer that could carry them.
    static DUPLICATES: std::cell::RefCell<Vec<Problem>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A document as a generic tree; its repeated keys go to [`DUPLICATES`].
struct Tree(Value);

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::DeserializeSeed as _;
        DUPLICATES.with(|duplicates| {
            TreeSeed {
                path: String::new(),
                duplicates,
            }
            .deserialize(d)
            .map(Tree)
        })
    }
}

/// Builds a generic tree, recording each repeated mapping key with its path.
struct TreeSeed<'a> {
    path: String,
    duplicates: &'a std::cell::RefCell<Vec<Problem>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for TreeSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TreeSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or_else(|_| float(v as f64), Value::from))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(u64::try_from(v).map_or_else(|_| float(v as f64), Value::from))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let element = TreeSeed {
                path: format!("{}[{}]", self.path, items.len()),
                duplicates: self.duplicates,
            };
            match seq.next_element_seed(element)? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        // The line of each key's first appearance, for the message about a repeat.
        let mut lines: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        while let Some(key) = map.next_key::<serde_saphyr::Spanned<String>>()? {
            let line = key.referenced.line();
            let key = key.value;
            let path = join(&self.path, &key);
            let value = map.next_value_seed(TreeSeed {
                path: path.clone(),
                duplicates: self.duplicates,
            })?;
            match lines.get(&key) {
                Some(first) => self.duplicates.borrow_mut().push(Problem {
                    path,
                    message: format!(
                        "duplicate key at line {line}, first at line {first}; a key may appear once in a mapping"
                    ),
                }),
                None => {
                    lines.insert(key.clone(), line);
                    out.insert(key, value);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// A YAML float as JSON has it: the special values have no JSON form.
fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// Joins a base path and a child path as `base.child` or `base[3]`.
#[must_use]
pub fn join(base: &str, child: &str) -> String {
    if base.is_empty() {
        child.to_string()
    } else if child.is_empty() {
        base.to_string()
    } else if child.starts_with('[') {
        format!("{base}{child}")
    } else {
        format!("{base}.{child}")
    }
}

/// Most problems [`typed`] reports for one value before it gives up on finding more.
const MAX_PROBLEMS_PER_VALUE: usize = 64;

/// Deserializes `value` into `T`, recording every problem with its full path.
///
/// Serde stops at the first problem, so the value is deserialized again with each offending
/// part taken out (an unknown key, a value of the wrong type or form), until it passes or no
/// part can be taken out any more. A required key that had to be taken out makes its whole
/// mapping unusable, which is then taken out in turn; the "missing field" that its removal
/// causes is not reported, since the key is there and its real problem already was. Other
/// required keys missing from that mapping are reported once its bad value is fixed.
///
/// What is left is returned even when problems were recorded, with the defaults of the parts
/// taken out in their place, so that the caller's own checks of the other keys still run: a
/// type error does not hide the other problems of its section. A list that lost an item is
/// cut before that item, so that every index the caller reports is the document's (the items
/// after it are checked by the caller once it is fixed). `None` when nothing usable is left: a
/// required key had a problem. A check
/// that relates several keys must skip a key that already has a problem
/// ([`ConfigErrors::has`]): its value in hand is the default, not the document's.
pub fn typed<T: DeserializeOwned>(value: &Value, path: &str, errs: &mut ConfigErrors) -> Option<T> {
    let mut current = value.clone();
    // Parts taken out so far, each as the path of the removed part in the coordinates of the
    // tree at the time, to map later paths back onto the document as written.
    let mut removals: Vec<Vec<Step>> = Vec::new();
    // The same parts in the document's coordinates, to recognise the "missing field" a
    // removal causes.
    let mut removed: Vec<Vec<Step>> = Vec::new();
    let mut reported = 0;
    loop {
        let e = match serde_path_to_error::deserialize::<_, T>(&current) {
            Ok(v)
                if !removed
                    .iter()
                    .any(|r| matches!(r.last(), Some(Step::Index(_)))) =>
            {
                return Some(v)
            }
            Ok(_) => return without_shortened_lists(value, &removed),
            Err(e) => e,
        };
        let Some(steps) = steps_of(e.path()) else {
            push_problem(
                errs,
                path,
                &e.path().to_string(),
                &e.into_inner().to_string(),
            );
            return None;
        };
        let message = clean_serde_message(&e.into_inner().to_string());
        let original = to_original(&steps, &removals);
        // A problem caused by taking a part out is not the document's: the "missing field"
        // of a removed key, or a mapping that no longer has the shape it needs (an enum
        // mapping whose only key went).
        let caused_by_removal = match missing_field(&message) {
            Some(field) => {
                let mut p = original.clone();
                p.push(Step::Key(field.to_string()));
                removed.contains(&p)
            }
            None => removed
                .iter()
                .any(|r| r.len() > original.len() && r.starts_with(&original)),
        };
        if !caused_by_removal {
            errs.push(join(path, &render(&original)), message);
            reported += 1;
        }
        if steps.is_empty() || reported >= MAX_PROBLEMS_PER_VALUE || !remove(&mut current, &steps) {
            return None;
        }
        removals.push(steps);
        removed.push(original);
    }
}

/// `value` as [`typed`] returns it once a list item had to be taken out: each part with a
/// problem taken out, and each list that lost an item cut before that item, so that no later
/// item of it moves to another index. `None` when that leaves no usable value.
fn without_shortened_lists<T: DeserializeOwned>(value: &Value, removed: &[Vec<Step>]) -> Option<T> {
    let mut tree = value.clone();
    // The length each list is cut to: the index of its first item that had to go.
    let mut cuts: Vec<(&[Step], usize)> = Vec::new();
    for part in removed {
        match part.split_last() {
            Some((Step::Index(i), list)) => match cuts.iter_mut().find(|(l, _)| *l == list) {
                Some((_, at)) => *at = (*at).min(*i),
                None => cuts.push((list, *i)),
            },
            // A mapping key: taking it out moves nothing. One inside an item that a cut
            // removes is no longer there to take out.
            _ => {
                remove(&mut tree, part);
            }
        }
    }
    for (list, at) in cuts {
        if let Some(Value::Array(items)) = find_mut(&mut tree, list) {
            items.truncate(at);
        }
    }
    serde_path_to_error::deserialize::<_, T>(&tree).ok()
}

/// The part of the tree at `steps`.
fn find_mut<'a>(tree: &'a mut Value, steps: &[Step]) -> Option<&'a mut Value> {
    let mut node = tree;
    for step in steps {
        node = match (step, node) {
            (Step::Key(k), Value::Object(m)) => m.get_mut(k)?,
            (Step::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

/// One step of a path into a YAML tree: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The steps of a serde path, or `None` where a step is not known.
fn steps_of(path: &serde_path_to_error::Path) -> Option<Vec<Step>> {
    use serde_path_to_error::Segment;
    path.iter()
        .map(|seg| match seg {
            Segment::Map { key } => Some(Step::Key(key.clone())),
            // An externally tagged enum is a mapping with the variant as its only key.
            Segment::Enum { variant } => Some(Step::Key(variant.clone())),
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Unknown => None,
        })
        .collect()
}

/// Takes the part at `steps` out of the tree; false when there is no such part.
fn remove(tree: &mut Value, steps: &[Step]) -> bool {
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut node = tree;
    for step in parents {
        node = match (step, node) {
            (Step::Key(k), Value::Object(m)) => match m.get_mut(k) {
                Some(n) => n,
                None => return false,
            },
            (Step::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(n) => n,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Step::Key(k), Value::Object(m)) => m.remove(k).is_some(),
        (Step::Index(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

/// Maps a path in the tree after `removals` back onto the tree before them: an index behind
/// a removed list item moves up by one for each such removal.
fn to_original(steps: &[Step], removals: &[Vec<Step>]) -> Vec<Step> {
    let mut path = steps.to_vec();
    for removal in removals.iter().rev() {
        let Some((Step::Index(gone), list)) = removal.split_last() else {
            continue;
        };
        if path.len() > list.len() && path[..list.len()] == *list {
            if let Step::Index(i) = &mut path[list.len()] {
                if *i >= *gone {
                    *i += 1;
                }
            }
        }
    }
    path
}

/// Renders steps as `a.b[3].c`.
fn render(steps: &[Step]) -> String {
    steps.iter().fold(String::new(), |acc, step| match step {
        Step::Key(k) => join(&acc, k),
        Step::Index(i) => format!("{acc}[{i}]"),
    })
}

/// The field of serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

fn push_problem(errs: &mut ConfigErrors, base: &str, inner: &str, message: &str) {
    let inner = if inner == "." { "" } else { inner };
    errs.push(join(base, inner), clean_serde_message(message));
}

/// Takes serde's messages as they are, less trailing location noise from the generic tree.
fn clean_serde_message(m: &str) -> String {
    m.trim_end_matches('.').to_string()
}

/// Splits a list at `path` (absent is empty) into its entries, with their paths.
pub fn list_entries<'a>(
    value: Option<&'a Value>,
    path: &str,
    errs: &mut ConfigErrors,
) -> Vec<(String, &'a Value)> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{path}[{i}]"), v))
            .collect(),
        Some(other) => {
            errs.push(path, format!("expected a list, found {}", kind_of(other)));
            Vec::new()
        }
    }
}

/// Checks that a mapping holds only the given keys, recording each unknown key.
pub fn check_keys(value: &Value, path: &str, known: &[&str], errs: &mut ConfigErrors) -> bool {
    let Some(map) = value.as_object() else {
        errs.push(
            path,
            format!("expected a mapping, found {}", kind_of(value)),
        );
        return false;
    };
    let mut ok = true;
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            errs.push(
                join(path, key),
                format!("unknown field `{key}`, expected one of {}", quoted(known)),
            );
            ok = false;
        }
    }
    ok
}

/// The keys of a struct that derives `Deserialize`, in declaration order, as serde's own
/// messages name them; empty for a type that is not such a struct. For a message about a key
/// that one of several structs of a mapping takes (the keys every rule has, and those of its
/// action kind).
#[must_use]
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

/// A deserializer that only notes the fields a struct asks for, then stops.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

/// How [`FieldNames`] stops.
#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names noted")
    }
}

impl std::error::Error for Stop {}

impl serde::de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Describes a YAML value's kind for messages.
#[must_use]
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Formats names as `` `a`, `b` ``.
#[must_use]
pub fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a duration such as `15s`, `1m30s`, `500ms` or `2h`.
///
/// # Errors
/// Returns a message when the text is not a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?}: {e} (use forms like 15s, 1m30s, 500ms)"))
}

/// Serde support for durations written as `15s`, `1m30s`, `500ms`.
pub mod duration {
    use super::*;

    /// Deserializes a duration string.
    ///
    /// # Errors
    /// Fails on anything but a duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }

    /// Serde support for an optional duration.
    pub mod option {
        use super::*;

        /// Deserializes an optional duration string.
        ///
        /// # Errors
        /// Fails on anything but a duration string or null.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(s) => parse_duration(&s)
                    .map(Some)
                    .map_err(serde::de::Error::custom),
            }
        }
    }
}

/// A regular expression compiled while the configuration is loaded.
#[derive(Debug, Clone)]
pub struct Regex(pub regex::Regex);

impl Regex {
    /// The compiled expression.
    #[must_use]
    pub fn get(&self) -> &regex::Regex {
        &self.0
    }
}

impl PartialEq for Regex {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl<'de> Deserialize<'de> for Regex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::Regex::new(&s)
            .map(Regex)
            .map_err(|e| serde::de::Error::custom(format!("invalid regular expression: {e}")))
    }
}

/// Reads a secret from a file (trailing newline removed) or an environment variable.
///
/// # Errors
/// Fails when the file cannot be read, the variable is unset, or the secret is empty.
pub fn read_secret(file: Option<&Path>, env: Option<&str>) -> Result<String, String> {
    let value = match (file, env) {
        (Some(f), _) => std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read secret file {}: {e}", f.display()))?,
        (None, Some(var)) => {
            std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?
        }
        (None, None) => return Err("no secret file or environment variable given".into()),
    };
    let value = value.trim_end_matches(['\r', '\n']).to_string();
    if value.is_empty() {
        return Err("secret is empty".into());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(with = "duration")]
        every: Duration,
        pattern: Regex,
    }

    #[test]
    fn typed_reports_nested_path() {
        let v = parse_yaml("every: 15s\npattern: '(unclosed'\n").unwrap();
        let mut errs = ConfigErrors::default();
        assert!(typed::<Inner>(&v, "probes[2].docker", &mut errs).is_none());
        assert_eq!(errs.problems.len(), 1);
        assert_eq!(errs.problems[0].path, "probes[2].docker.pattern");
        assert!(errs.problems[0]
            .message
            .contains("invalid regular expression"));
    }

    #[test]
    fn unknown_key_and_bad_duration() {
        let v = parse_yaml("every: soon\npattern: x\n").unwrap();
        let mut errs = ConfigErrors::default();
        assert!(typed::<Inner>(&v, "a", &mut errs).is_none());
        assert_eq!(errs.problems[0].path, "a.every");
        assert!(errs.problems[0].message.contains("invalid duration"));
        // An unknown key is reported, and the rest is still of use.
        let v = parse_yaml("every: 1s\npattern: x\nextra: 1\n").unwrap();
        let inner = typed::<Inner>(&v, "a", &mut errs).expect("the rest is usable");
        assert_eq!(inner.every, Duration::from_secs(1));
        assert!(errs.problems[1].message.contains("unknown field `extra`"));
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Global {
        #[serde(default, with = "duration::option")]
        interval: Option<Duration>,
        #[serde(default, with = "duration::option")]
        timeout: Option<Duration>,
        #[serde(default)]
        max_concurrency: usize,
        #[serde(default)]
        codes: Vec<u16>,
        section: Option<Inner>,
    }

    fn problems<T: DeserializeOwned + std::fmt::Debug>(yaml: &str) -> Vec<String> {
        let v = parse_yaml(yaml).unwrap();
        let mut errs = ConfigErrors::default();
        typed::<T>(&v, "global", &mut errs);
        assert!(!errs.is_empty(), "{yaml}");
        errs.problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_problem_of_a_mapping_is_reported() {
        let p = problems::<Global>(
            "{interval: 10x, timeout: -5s, max_concurrency: lots, colour: red, flavour: mint}",
        );
        let paths: Vec<&str> = p.iter().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "global.colour",
                "global.flavour",
                "global.interval",
                "global.max_concurrency",
                "global.timeout"
            ],
            "{p:#?}"
        );
        assert!(p[2].contains("invalid duration \"10x\""), "{p:#?}");
        assert!(p[3].contains("expected usize"), "{p:#?}");
    }

    #[test]
    fn list_items_and_required_keys_keep_their_paths() {
        // Two bad list items: the second keeps its index although the first was taken out.
        let p = problems::<Global>("{codes: [1, x, 3, y]}");
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(p[0].starts_with("global.codes[1]: "), "{p:#?}");
        assert!(p[1].starts_with("global.codes[3]: "), "{p:#?}");
        // A required key with a bad value: reported once, without a made-up "missing field",
        // and the problems after it are still found.
        let p = problems::<Global>("{section: {every: soon, pattern: '(', extra: 1}, zz: 1}");
        assert_eq!(p.len(), 4, "{p:#?}");
        assert!(
            p[0].starts_with("global.section.every: invalid duration"),
            "{p:#?}"
        );
        assert!(
            p[1].starts_with("global.section.extra: unknown field"),
            "{p:#?}"
        );
        assert!(
            p[2].starts_with("global.section.pattern: invalid regular expression"),
            "{p:#?}"
        );
        assert!(p[3].starts_with("global.zz: unknown field"), "{p:#?}");
        // A missing required key is still reported.
        let p = problems::<Global>("{section: {every: 1s}}");
        assert_eq!(p, ["global.section: missing field `pattern`"]);
    }

    #[test]
    fn what_is_left_of_a_bad_section_is_returned_with_defaults() {
        let v =
            parse_yaml("{interval: 10x, timeout: 5s, max_concurrency: lots, colour: red}").unwrap();
        let mut errs = ConfigErrors::default();
        let g = typed::<Global>(&v, "global", &mut errs).expect("usable without its bad keys");
        assert_eq!(errs.problems.len(), 3, "{errs}");
        // The good key keeps its value, the bad ones are at their defaults.
        assert_eq!(g.timeout, Some(Duration::from_secs(5)));
        assert_eq!(g.interval, None);
        assert_eq!(g.max_concurrency, 0);
        assert!(errs.has("global.interval") && errs.has("global.max_concurrency"));
        assert!(!errs.has("global.timeout") && !errs.has("global.inter"));
        assert!(errs.has("global"));
        // A required key with a problem leaves nothing usable of its mapping.
        let v = parse_yaml("{section: {every: soon, pattern: x}, timeout: 1s}").unwrap();
        let mut errs = ConfigErrors::default();
        let g = typed::<Global>(&v, "global", &mut errs).expect("the section is optional");
        assert!(g.section.is_none());
        assert_eq!(g.timeout, Some(Duration::from_secs(1)));
        let v = parse_yaml("{every: soon, pattern: x}").unwrap();
        assert!(typed::<Inner>(&v, "a", &mut ConfigErrors::default()).is_none());
    }

    #[test]
    fn a_list_that_lost_an_item_is_cut_before_it() {
        // Were `x` only taken out, 3 would move to index 1 and a caller's check of it would
        // name the wrong item.
        let v = parse_yaml("{codes: [1, x, 3, y], timeout: 2s}").unwrap();
        let mut errs = ConfigErrors::default();
        let g = typed::<Global>(&v, "global", &mut errs).expect("usable");
        assert_eq!(g.codes, [1]);
        assert_eq!(errs.problems.len(), 2, "{errs}");
        assert_eq!(g.timeout, Some(Duration::from_secs(2)));
        assert!(errs.has("global.codes"));
        // Not a list item but a key inside one: the list keeps its items.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Folders {
            folders: Vec<Folder>,
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Folder {
            path: String,
            #[serde(default)]
            depth: u32,
        }
        let v = parse_yaml("folders: [{path: /a, depth: deep}, {path: /b}]").unwrap();
        let mut errs = ConfigErrors::default();
        let f = typed::<Folders>(&v, "p", &mut errs).expect("usable");
        assert_eq!(f.folders.len(), 2);
        assert_eq!(errs.to_string().lines().count(), 1, "{errs}");
        // An unusable item: the items before it are kept.
        let v = parse_yaml("folders: [{path: /a}, {path: [x]}, {path: /c}]").unwrap();
        let mut errs = ConfigErrors::default();
        let f = typed::<Folders>(&v, "p", &mut errs).expect("usable");
        assert_eq!(f.folders.len(), 1);
        assert_eq!(errs.problems.len(), 1, "{errs}");
        assert_eq!(errs.problems[0].path, "p.folders[1].path");
    }

    #[test]
    fn every_repeated_key_is_named_with_its_lines() {
        let text = "a: 1\nb:\n  c: 1\n  c: 2\n  d: [ {e: 1, e: 2} ]\na: 3\nb: {}\n";
        let (value, dups) = parse_tree(text).unwrap();
        let lines: Vec<String> = dups.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "b.c: duplicate key at line 4, first at line 3; a key may appear once in a mapping",
                "b.d[0].e: duplicate key at line 5, first at line 5; a key may appear once in a mapping",
                "a: duplicate key at line 6, first at line 1; a key may appear once in a mapping",
                "b: duplicate key at line 7, first at line 2; a key may appear once in a mapping",
            ]
        );
        // The first value is kept.
        assert_eq!(value["a"], 1);
        assert_eq!(value["b"]["c"], 1);
        assert!(parse_yaml(text).unwrap_err().lines().count() == 4);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yml");
        std::fs::write(&file, text).unwrap();
        let errs = read_yaml_file(&file).unwrap_err();
        assert_eq!(errs.problems, dups);
    }

    #[test]
    fn yaml_values_keep_their_types() {
        let v = parse_yaml(
            "{a: 1, b: -2, c: 1.5, d: true, e: ~, f: 'x', g: [1], h: 18446744073709551615}",
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": 1, "b": -2, "c": 1.5, "d": true, "e": null, "f": "x", "g": [1], "h": 18_446_744_073_709_551_615_u64})
        );
    }

    #[test]
    fn yaml_syntax_error_is_reported() {
        assert!(parse_yaml("a: [1, 2\n").is_err());
        assert_eq!(parse_yaml("").unwrap(), Value::Object(Default::default()));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("10").is_err());
    }
}
