//! Enough of PromQL to tell which labels an alerting rule's expression yields and, where the
//! expression or the exporter's configuration says so, which values they take: vector
//! selectors with their matchers, aggregations with `by`/`without`, vector matching with
//! `on`/`ignoring`/`group_left`/`group_right`, set operators, `label_replace` and the common
//! functions. Anything it does not understand makes the result open (more labels, any values),
//! so it can miss a finding but never invent one.

use std::collections::{BTreeMap, BTreeSet};

use super::domain::{Domain, Labels, Values};
use crate::matcher::{Matcher, Op};

/// What is known about the values of labels of a metric's series beyond its selector, by
/// metric name (for example, `probe` is the name of a probe of the kind that writes it).
pub trait Hints {
    /// Domains of labels of `metric`'s series.
    fn for_metric(&self, metric: &str) -> BTreeMap<String, Domain>;
}

/// No knowledge beyond the expression.
pub struct NoHints;

impl Hints for NoHints {
    fn for_metric(&self, _metric: &str) -> BTreeMap<String, Domain> {
        BTreeMap::new()
    }
}

/// The labels of the series `expr` yields.
///
/// # Errors
/// A message when the expression cannot be read (`promtool check rules` says more).
pub fn labels_of(expr: &str, hints: &dyn Hints) -> Result<Labels, String> {
    let tokens = lex(expr)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        hints,
    };
    let v = p.expr(0)?;
    if p.pos < p.tokens.len() {
        return Err(format!("unexpected {:?}", p.tokens[p.pos]));
    }
    Ok(match v {
        Val::Scalar => Labels::default(),
        Val::Vector(l) => l,
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num,
    Op(&'static str),
}

/// Operators and punctuation, longer ones first where they share a beginning.
const OPS: [&str; 22] = [
    "==", "!=", ">=", "<=", "=~", "!~", "<", ">", "(", ")", "{", "}", "[", "]", ",", "+", "-", "*",
    "/", "%", "^", "=",
];

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err("unterminated string".into());
                };
                i += 1;
                if d == c {
                    break;
                }
                if d == '\\' && c != '`' {
                    let e = chars.get(i).copied().unwrap_or('\\');
                    i += 1;
                    s.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                } else {
                    s.push(d);
                }
            }
            out.push(Tok::Str(s));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // Numbers, hex numbers and durations (5m, 1h30m) are one token each.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Num);
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if let Some(op) = OPS.iter().find(|op| {
            op.chars()
                .enumerate()
                .all(|(k, oc)| chars.get(i + k) == Some(&oc))
        }) {
            i += op.len();
            out.push(Tok::Op(op));
        } else if c == '@' {
            i += 1;
            out.push(Tok::Op("@"));
        } else {
            return Err(format!("unexpected character {c:?}"));
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum Val {
    Scalar,
    Vector(Labels),
}

const AGGREGATIONS: [&str; 14] = [
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

/// Aggregations whose result keeps the series (and so their labels) it selects.
const SELECTING: [&str; 4] = ["topk", "bottomk", "limitk", "limit_ratio"];

struct Parser<'a> {
    tokens: Vec<Tok>,
    pos: usize,
    hints: &'a dyn Hints,
}

/// Binary operators by precedence, lowest first.
fn precedence(op: &str) -> Option<u8> {
    Some(match op {
        "or" => 1,
        "and" | "unless" => 2,
        "==" | "!=" | "<=" | "<" | ">=" | ">" => 3,
        "+" | "-" => 4,
        "*" | "/" | "%" | "atan2" => 5,
        "^" => 6,
        _ => return None,
    })
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_ident(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(word)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, op: &str) -> Result<(), String> {
        if self.eat(op) {
            Ok(())
        } else {
            Err(format!("expected {op:?}, found {:?}", self.peek()))
        }
    }

    /// The binary operator at the cursor, as text.
    fn binary_op(&self) -> Option<String> {
        match self.peek()? {
            Tok::Op(o) => precedence(o).map(|_| (*o).to_string()),
            Tok::Ident(w) => {
                let w = w.to_ascii_lowercase();
                precedence(&w).map(|_| w)
            }
            _ => None,
        }
    }

    fn expr(&mut self, min_prec: u8) -> Result<Val, String> {
        let mut lhs = self.unary()?;
        while let Some(op) = self.binary_op() {
            let prec = precedence(&op).unwrap_or(0);
            if prec < min_prec.max(1) {
                break;
            }
            self.pos += 1;
            self.eat_ident("bool");
            let matching = self.matching()?;
            // `^` is right-associative, the others left-associative.
            let next = if op == "^" { prec } else { prec + 1 };
            let rhs = self.expr(next)?;
            lhs = combine(&op, lhs, rhs, &matching);
        }
        Ok(lhs)
    }

    fn label_list(&mut self) -> Result<Vec<String>, String> {
        self.expect("(")?;
        let mut names = Vec::new();
        while !self.eat(")") {
            match self.next() {
                Some(Tok::Ident(n) | Tok::Str(n)) => names.push(n),
                Some(Tok::Op(",")) => {}
                other => return Err(format!("unexpected {other:?} in a label list")),
            }
        }
        Ok(names)
    }

    fn matching(&mut self) -> Result<Matching, String> {
        let mut m = Matching::default();
        if self.eat_ident("on") {
            m.on = Some(self.label_list()?);
        } else if self.eat_ident("ignoring") {
            m.ignoring = self.label_list()?;
        }
        for (word, side) in [("group_left", Side::Left), ("group_right", Side::Right)] {
            if self.eat_ident(word) {
                let extra = if matches!(self.peek(), Some(Tok::Op("("))) {
                    self.label_list()?
                } else {
                    Vec::new()
                };
                m.group = Some((side, extra));
            }
        }
        Ok(m)
    }

    fn unary(&mut self) -> Result<Val, String> {
        if self.eat("-") || self.eat("+") {
            return self.unary();
        }
        let v = self.primary()?;
        self.postfix(v)
    }

    fn postfix(&mut self, v: Val) -> Result<Val, String> {
        loop {
            if self.eat("[") {
                // A range or subquery: the labels stay.
                while !self.eat("]") {
                    if self.next().is_none() {
                        return Err("unterminated range".into());
                    }
                }
            } else if self.eat_ident("offset") {
                self.eat("-");
                self.next();
            } else if self.eat("@") {
                self.next();
                if self.eat("(") {
                    self.eat(")");
                }
            } else {
                return Ok(v);
            }
        }
    }

    fn primary(&mut self) -> Result<Val, String> {
        match self.next() {
            Some(Tok::Num | Tok::Str(_)) => Ok(Val::Scalar),
            Some(Tok::Op("(")) => {
                let v = self.expr(0)?;
                self.expect(")")?;
                Ok(v)
            }
            Some(Tok::Op("{")) => {
                let matchers = self.selector_matchers()?;
                Ok(Val::Vector(self.selector(None, &matchers)))
            }
            Some(Tok::Ident(word)) => {
                let lower = word.to_ascii_lowercase();
                if (lower == "inf" || lower == "nan")
                    && !matches!(self.peek(), Some(Tok::Op("(" | "{")))
                {
                    return Ok(Val::Scalar);
                }
                if AGGREGATIONS.contains(&lower.as_str())
                    && matches!(self.peek(), Some(Tok::Op("(")) | Some(Tok::Ident(_)))
                {
                    return self.aggregation(&lower);
                }
                if self.eat("(") {
                    return self.function(&lower);
                }
                let matchers = if self.eat("{") {
                    self.selector_matchers()?
                } else {
                    Vec::new()
                };
                Ok(Val::Vector(self.selector(Some(&word), &matchers)))
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }

    fn selector_matchers(&mut self) -> Result<Vec<Matcher>, String> {
        let mut out = Vec::new();
        loop {
            match self.next() {
                Some(Tok::Op("}")) => return Ok(out),
                Some(Tok::Op(",")) => {}
                Some(Tok::Ident(name)) => {
                    let op = match self.next() {
                        Some(Tok::Op(o @ ("=" | "!=" | "=~" | "!~"))) => o,
                        other => {
                            return Err(format!("expected a matcher operator, found {other:?}"))
                        }
                    };
                    let Some(Tok::Str(value)) = self.next() else {
                        return Err("expected a quoted matcher value".into());
                    };
                    let text = format!("{name}{op}{}", serde_json::Value::String(value));
                    out.push(Matcher::parse(&text)?);
                }
                other => return Err(format!("unexpected {other:?} in a selector")),
            }
        }
    }

    fn selector(&self, metric: Option<&str>, matchers: &[Matcher]) -> Labels {
        let metric = metric.map(str::to_string).or_else(|| {
            matchers.iter().find_map(|m| match &m.op {
                Op::Equal(v) if m.name == "__name__" => Some(v.clone()),
                _ => None,
            })
        });
        let mut known: BTreeMap<String, Domain> = metric
            .as_deref()
            .map(|m| self.hints.for_metric(m))
            .unwrap_or_default();
        for m in matchers.iter().filter(|m| m.name != "__name__") {
            if let Some(values) = super::domain::literal_values(m) {
                known.insert(
                    m.name.clone(),
                    Domain::one_of(values, "the expression's selector"),
                );
            } else if let Op::Regex(r) = &m.op {
                known.insert(
                    m.name.clone(),
                    Domain {
                        values: Values::Matching {
                            regex: r.clone(),
                            also: BTreeSet::new(),
                        },
                        source: "the expression's selector".into(),
                    },
                );
            }
        }
        Labels { known, open: true }
    }

    fn aggregation(&mut self, op: &str) -> Result<Val, String> {
        let mut grouping = self.grouping()?;
        self.expect("(")?;
        let mut args = vec![self.expr(0)?];
        while self.eat(",") {
            args.push(self.expr(0)?);
        }
        self.expect(")")?;
        if grouping.is_none() {
            grouping = self.grouping()?;
        }
        let Some(Val::Vector(inner)) = args.last().cloned() else {
            return Ok(Val::Vector(Labels {
                known: BTreeMap::new(),
                open: true,
            }));
        };
        if SELECTING.contains(&op) {
            return Ok(Val::Vector(inner));
        }
        let mut out = match grouping {
            Some((true, by)) => Labels {
                known: by
                    .iter()
                    .filter_map(|l| inner.domain(l).map(|d| (l.clone(), d)))
                    .collect(),
                open: false,
            },
            Some((false, without)) => {
                let mut l = inner;
                for w in &without {
                    l.known.remove(w);
                }
                l
            }
            None => Labels {
                known: BTreeMap::new(),
                open: false,
            },
        };
        if op == "count_values" {
            // Adds the label named by its first argument.
            out.open = true;
        }
        Ok(Val::Vector(out))
    }

    /// `by (…)` (true) or `without (…)` (false).
    fn grouping(&mut self) -> Result<Option<(bool, Vec<String>)>, String> {
        if self.eat_ident("by") {
            return Ok(Some((true, self.label_list()?)));
        }
        if self.eat_ident("without") {
            return Ok(Some((false, self.label_list()?)));
        }
        Ok(None)
    }

    fn function(&mut self, name: &str) -> Result<Val, String> {
        let mut args: Vec<(Val, Option<String>)> = Vec::new();
        while !self.eat(")") {
            let literal = match self.peek() {
                Some(Tok::Str(s)) => Some(s.clone()),
                _ => None,
            };
            let v = self.expr(0)?;
            args.push((v, literal));
            if !self.eat(",") {
                self.expect(")")?;
                break;
            }
        }
        let first_vector = args.iter().find_map(|(v, _)| match v {
            Val::Vector(l) => Some(l.clone()),
            Val::Scalar => None,
        });
        Ok(match name {
            "time" | "scalar" | "pi" => Val::Scalar,
            "vector" => Val::Vector(Labels::default()),
            "absent" | "absent_over_time" => Val::Vector(Labels {
                known: first_vector
                    .map(|l| {
                        l.known
                            .into_iter()
                            .filter(|(_, d)| matches!(&d.values, Values::OneOf(s) if s.len() == 1))
                            .collect()
                    })
                    .unwrap_or_default(),
                open: false,
            }),
            "label_replace" => {
                let Some(mut l) = first_vector else {
                    return Ok(Val::Scalar);
                };
                let text = |i: usize| args.get(i).and_then(|(_, s)| s.clone());
                if let (Some(dst), Some(repl), Some(src), Some(re)) =
                    (text(1), text(2), text(3), text(4))
                {
                    let copied = (repl == "$1" && re == "(.*)")
                        .then(|| l.domain(&src))
                        .flatten();
                    let domain = match copied {
                        Some(d) => Domain {
                            values: d.values,
                            source: if d.source.is_empty() {
                                String::new()
                            } else {
                                format!("{} (copied from {src})", d.source)
                            },
                        },
                        None => Domain::any(),
                    };
                    l.known.insert(dst, domain);
                } else {
                    l.open = true;
                }
                Val::Vector(l)
            }
            "label_join" => {
                let Some(mut l) = first_vector else {
                    return Ok(Val::Scalar);
                };
                match args.get(1).and_then(|(_, s)| s.clone()) {
                    Some(dst) => {
                        l.known.insert(dst, Domain::any());
                    }
                    None => l.open = true,
                }
                Val::Vector(l)
            }
            "histogram_quantile" => {
                let Some(mut l) = first_vector else {
                    return Ok(Val::Scalar);
                };
                l.known.remove("le");
                Val::Vector(l)
            }
            _ => match first_vector {
                Some(l) => Val::Vector(l),
                None => Val::Scalar,
            },
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

#[derive(Debug, Clone, Default)]
struct Matching {
    on: Option<Vec<String>>,
    ignoring: Vec<String>,
    group: Option<(Side, Vec<String>)>,
}

fn combine(op: &str, lhs: Val, rhs: Val, m: &Matching) -> Val {
    let (l, r) = match (lhs, rhs) {
        (Val::Scalar, Val::Scalar) => return Val::Scalar,
        (Val::Vector(l), Val::Scalar) | (Val::Scalar, Val::Vector(l)) => return Val::Vector(l),
        (Val::Vector(l), Val::Vector(r)) => (l, r),
    };
    match op {
        "or" => {
            let mut known = BTreeMap::new();
            for (k, d) in &l.known {
                let merged = match r.known.get(k) {
                    Some(e) => d.union(e),
                    None if r.open => Domain::any(),
                    // Absent on the right: present only on some series.
                    None => d.clone(),
                };
                known.insert(k.clone(), merged);
            }
            for (k, d) in &r.known {
                if !l.known.contains_key(k) {
                    known.insert(k.clone(), if l.open { Domain::any() } else { d.clone() });
                }
            }
            // A label present on one side only may be absent from a series of the result.
            let partial = l.known.keys().any(|k| !r.known.contains_key(k))
                || r.known.keys().any(|k| !l.known.contains_key(k));
            Val::Vector(Labels {
                known,
                open: l.open || r.open || partial,
            })
        }
        "and" | "unless" => Val::Vector(l),
        _ => match &m.group {
            Some((side, extra)) => {
                let (mut one, other) = match side {
                    Side::Left => (l, r),
                    Side::Right => (r, l),
                };
                for e in extra {
                    match other.domain(e) {
                        Some(d) => {
                            one.known.insert(e.clone(), d);
                        }
                        None => {
                            one.known.remove(e);
                        }
                    }
                }
                Val::Vector(one)
            }
            None => match &m.on {
                Some(on) => Val::Vector(Labels {
                    known: on
                        .iter()
                        .filter_map(|k| l.domain(k).map(|d| (k.clone(), d)))
                        .collect(),
                    open: false,
                }),
                None => {
                    let mut one = l;
                    for i in &m.ignoring {
                        one.known.remove(i);
                    }
                    Val::Vector(one)
                }
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probes;

    impl Hints for Probes {
        fn for_metric(&self, metric: &str) -> BTreeMap<String, Domain> {
            let names = if metric.starts_with("stackmedic_hls_") {
                vec!["cam-a".to_string(), "cam-b".to_string()]
            } else {
                return BTreeMap::new();
            };
            BTreeMap::from([("probe".to_string(), Domain::one_of(names, "hls probes"))])
        }
    }

    fn labels(expr: &str) -> Labels {
        labels_of(expr, &Probes).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    fn shown(l: &Labels) -> String {
        let mut parts: Vec<String> = l.known.iter().map(|(k, d)| format!("{k}={d}")).collect();
        if l.open {
            parts.push("…".into());
        }
        parts.join(" ")
    }

    #[test]
    fn label_replace_over_an_aggregation_copies_the_probe_names() {
        let l = labels(
            r#"label_replace(
                max by (instance, job, probe) (stackmedic_hls_stale == 1 or stackmedic_hls_playlist_up == 0),
                "stream", "$1", "probe", "(.*)")"#,
        );
        assert!(!l.open, "{}", shown(&l));
        assert_eq!(
            l.known.keys().cloned().collect::<Vec<_>>(),
            ["instance", "job", "probe", "stream"]
        );
        assert_eq!(
            l.known["stream"].to_string(),
            r#""cam-a", "cam-b" (hls probes (copied from probe))"#
        );
    }

    #[test]
    fn selectors_set_operators_and_vector_matching() {
        let l = labels(
            "stackmedic_container_running{container=\"owui\"} == 0\n\
             unless on (instance, job, probe, container) (stackmedic_container_exists == 0)\n\
             unless on (instance, job, probe) (stackmedic_docker_up == 0)",
        );
        assert!(l.open);
        assert_eq!(
            l.known["container"].to_string(),
            "\"owui\" (the expression's selector)"
        );

        let l = labels("count by (instance, job) (max by (instance, job, probe) (stackmedic_hls_stale == 1)) >= on () group_left () stackmedic:threshold");
        assert_eq!(shown(&l), "instance=any value job=any value");

        let l = labels("time() - stackmedic_summary_warming_since_timestamp_seconds > on () group_left () stackmedic:warming_budget_seconds");
        assert!(l.open);
        let l = labels("sum by (instance, job, kind) (increase(stackmedic_remediator_actions_total{result=\"failed\"}[30m])) > 0");
        assert_eq!(shown(&l), "instance=any value job=any value kind=any value");
        let l = labels(
            "up{job=\"stackmedic-exporter\"} == 0 or absent(up{job=\"stackmedic-exporter\"})",
        );
        assert!(l.open);
        assert_eq!(
            l.known["job"].to_string(),
            "\"stackmedic-exporter\" (the expression's selector)"
        );
        let l = labels("(stackmedic_backup_count == 0) * 0 + Inf");
        assert!(l.open);
        let l = labels("max without (state) (stackmedic_ads_state{state=\"run\"}) == 0 and on (instance, job, probe) (stackmedic_ads_reachable == 1)");
        assert!(!l.known.contains_key("state"));
        let l = labels("vector(600)");
        assert_eq!(shown(&l), "");
    }

    #[test]
    fn what_cannot_be_read_is_an_error() {
        assert!(labels_of("sum(", &NoHints).is_err());
        assert!(labels_of("a{b=}", &NoHints).is_err());
    }
}
