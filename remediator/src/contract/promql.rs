//! What an alerting rule's expression says about the labels it yields and, where the expression
//! or the exporter's configuration says so, which values they take. The expression is read by
//! the `promql-parser` crate; this module only walks its syntax tree: vector selectors with their
//! matchers, aggregations with `by`/`without`, vector matching with `on`/`ignoring`/
//! `group_left`/`group_right`, set operators, `label_replace` and the common functions.
//! Anything it does not understand makes the result open (more labels, any values), so it can
//! miss a finding but never invent one.

use std::collections::{BTreeMap, BTreeSet};

use promql_parser::label::MatchOp;
use promql_parser::parser::{
    self as ast, AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, VectorMatchCardinality,
    VectorSelector,
};

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
    let tree = ast::parse(expr).map_err(|e| e.trim_end_matches('.').to_string())?;
    Ok(match value(&tree, hints) {
        Val::Scalar => Labels::default(),
        Val::Vector(l) => l,
    })
}

/// What an expression yields: a scalar (or a string), or a vector with what is known of its
/// labels.
#[derive(Debug, Clone)]
enum Val {
    Scalar,
    Vector(Labels),
}

/// A vector about whose labels nothing is known.
fn unknown() -> Val {
    Val::Vector(Labels {
        known: BTreeMap::new(),
        open: true,
    })
}

fn value(expr: &Expr, hints: &dyn Hints) -> Val {
    match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Val::Scalar,
        Expr::Paren(p) => value(&p.expr, hints),
        Expr::Unary(u) => value(&u.expr, hints),
        // A range or a subquery keeps the labels of what it selects.
        Expr::Subquery(s) => value(&s.expr, hints),
        Expr::MatrixSelector(m) => selector(&m.vs, hints),
        Expr::VectorSelector(v) => selector(v, hints),
        Expr::Aggregate(a) => aggregation(a, hints),
        Expr::Binary(b) => binary(b, hints),
        Expr::Call(c) => function(c, hints),
        Expr::Extension(_) => unknown(),
    }
}

fn selector(vs: &VectorSelector, hints: &dyn Hints) -> Val {
    let metric = vs.name.clone().or_else(|| {
        vs.matchers.matchers.iter().find_map(|m| {
            (m.name == "__name__" && matches!(m.op, MatchOp::Equal)).then(|| m.value.clone())
        })
    });
    let mut known: BTreeMap<String, Domain> = metric
        .as_deref()
        .map(|m| hints.for_metric(m))
        .unwrap_or_default();
    // Alternatives (`{a="x" or b="y"}`) constrain no label for every series: only what the
    // hints know is kept.
    if vs.matchers.or_matchers.is_empty() {
        for m in vs.matchers.matchers.iter().filter(|m| m.name != "__name__") {
            let Some(m) = matcher(m) else {
                known.remove(&m.name);
                continue;
            };
            if let Some(values) = super::domain::literal_values(&m) {
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
    }
    Val::Vector(Labels { known, open: true })
}

/// The selector's matcher as the remediator's matchers read it, so that both agree on what a
/// value matches.
fn matcher(m: &promql_parser::label::Matcher) -> Option<Matcher> {
    let op = match &m.op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::Re(_) => "=~",
        MatchOp::NotRe(_) => "!~",
    };
    let text = format!(
        "{}{op}{}",
        m.name,
        serde_json::Value::String(m.value.clone())
    );
    Matcher::parse(&text).ok()
}

fn aggregation(a: &AggregateExpr, hints: &dyn Hints) -> Val {
    let op = a.op.to_string();
    let Val::Vector(inner) = value(&a.expr, hints) else {
        return unknown();
    };
    // topk, bottomk, limitk and limit_ratio keep the series (and so the labels) they select.
    if matches!(op.as_str(), "topk" | "bottomk" | "limitk" | "limit_ratio") {
        return Val::Vector(inner);
    }
    let mut out = match &a.modifier {
        Some(LabelModifier::Include(by)) => Labels {
            known: by
                .labels
                .iter()
                .filter_map(|l| inner.domain(l).map(|d| (l.clone(), d)))
                .collect(),
            open: false,
        },
        Some(LabelModifier::Exclude(without)) => {
            let mut l = inner;
            for w in &without.labels {
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
        // Adds the label named by its parameter.
        out.open = true;
    }
    Val::Vector(out)
}

/// The text of a string literal argument.
fn literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::StringLiteral(s) => Some(s.val.clone()),
        Expr::Paren(p) => literal(&p.expr),
        _ => None,
    }
}

fn function(call: &Call, hints: &dyn Hints) -> Val {
    let args: Vec<&Expr> = call.args.args.iter().map(AsRef::as_ref).collect();
    let first_vector = args.iter().find_map(|a| match value(a, hints) {
        Val::Vector(l) => Some(l),
        Val::Scalar => None,
    });
    match call.func.name {
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
                return Val::Scalar;
            };
            let text = |i: usize| args.get(i).and_then(|a| literal(a));
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
                return Val::Scalar;
            };
            match args.get(1).and_then(|a| literal(a)) {
                Some(dst) => {
                    l.known.insert(dst, Domain::any());
                }
                None => l.open = true,
            }
            Val::Vector(l)
        }
        "histogram_quantile" => {
            let Some(mut l) = first_vector else {
                return Val::Scalar;
            };
            l.known.remove("le");
            Val::Vector(l)
        }
        _ => match first_vector {
            Some(l) => Val::Vector(l),
            None => Val::Scalar,
        },
    }
}

fn binary(b: &BinaryExpr, hints: &dyn Hints) -> Val {
    let (l, r) = match (value(&b.lhs, hints), value(&b.rhs, hints)) {
        (Val::Scalar, Val::Scalar) => return Val::Scalar,
        (Val::Vector(l), Val::Scalar) | (Val::Scalar, Val::Vector(l)) => return Val::Vector(l),
        (Val::Vector(l), Val::Vector(r)) => (l, r),
    };
    let op = b.op.to_string();
    match op.as_str() {
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
        _ => {
            let modifier = b.modifier.as_ref();
            let group = modifier.and_then(|m| match &m.card {
                VectorMatchCardinality::ManyToOne(extra) => Some((true, &extra.labels)),
                VectorMatchCardinality::OneToMany(extra) => Some((false, &extra.labels)),
                _ => None,
            });
            if let Some((left, extra)) = group {
                // The "many" side keeps its labels and takes the listed ones from the other.
                let (mut one, other) = if left { (l, r) } else { (r, l) };
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
                return Val::Vector(one);
            }
            match modifier.and_then(|m| m.matching.as_ref()) {
                Some(LabelModifier::Include(on)) => Val::Vector(Labels {
                    known: on
                        .labels
                        .iter()
                        .filter_map(|k| l.domain(k).map(|d| (k.clone(), d)))
                        .collect(),
                    open: false,
                }),
                Some(LabelModifier::Exclude(ignoring)) => {
                    let mut one = l;
                    for i in &ignoring.labels {
                        one.known.remove(i);
                    }
                    Val::Vector(one)
                }
                None => Val::Vector(l),
            }
        }
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
