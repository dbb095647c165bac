//! The samples probes produce and their rendering in the Prometheus text format.
//!
//! Each probe family declares its metric families as `static` [`Family`] values; a run writes
//! [`Sample`]s into a [`Samples`] buffer, and the runner keeps the buffer of the latest run. A
//! scrape only reads those buffers, so it never waits on a target.

use std::collections::BTreeMap;

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// Whether a family is a gauge or a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A value that only goes up (reset on restart).
    Counter,
}

/// A metric family: name, help and type. Every family is listed in `docs/metrics.md`.
#[derive(Debug)]
pub struct Family {
    /// Full metric name.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Type.
    pub kind: Kind,
}

impl Family {
    /// A gauge family.
    #[must_use]
    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: Kind::Gauge,
        }
    }

    /// A counter family.
    #[must_use]
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: Kind::Counter,
        }
    }
}

/// One value with its labels (the `probe` label is added by the runner).
#[derive(Debug, Clone)]
pub struct Sample {
    /// The family it belongs to.
    pub family: &'static Family,
    /// Labels other than `probe`.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// The samples of one probe run.
#[derive(Debug, Default, Clone)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    /// Adds a sample.
    pub fn push(&mut self, family: &'static Family, labels: &[(&'static str, &str)], value: f64) {
        self.0.push(Sample {
            family,
            labels: labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
            value,
        });
    }

    /// Adds a 0/1 sample.
    pub fn flag(&mut self, family: &'static Family, labels: &[(&'static str, &str)], on: bool) {
        self.push(family, labels, if on { 1.0 } else { 0.0 });
    }

    /// Adds a state set: one sample per state, 1 for `current`, 0 for the others.
    pub fn state_set(
        &mut self,
        family: &'static Family,
        labels: &[(&'static str, &str)],
        state_label: &'static str,
        states: &[&str],
        current: &str,
    ) {
        for s in states {
            let mut l: Vec<(&'static str, &str)> = labels.to_vec();
            l.push((state_label, s));
            self.flag(family, &l, *s == current);
        }
    }
}

/// Collects samples of many probes into metric families.
#[derive(Default)]
pub struct FamilySet {
    families: BTreeMap<&'static str, (&'static Family, Vec<Metric>)>,
}

impl FamilySet {
    /// Adds a sample for `probe`.
    pub fn add(&mut self, probe: &str, sample: &Sample) {
        let entry = self
            .families
            .entry(sample.family.name)
            .or_insert_with(|| (sample.family, Vec::new()));
        let mut labels = Vec::with_capacity(sample.labels.len() + 1);
        labels.push(pair("probe", probe));
        for (k, v) in &sample.labels {
            labels.push(pair(k, v));
        }
        let mut m = Metric::default();
        m.set_label(labels);
        match sample.family.kind {
            Kind::Gauge => {
                let mut g = Gauge::default();
                g.set_value(sample.value);
                m.set_gauge(g);
            }
            Kind::Counter => {
                let mut c = Counter::default();
                c.set_value(sample.value);
                m.set_counter(c);
            }
        }
        entry.1.push(m);
    }

    /// The families, sorted by name.
    #[must_use]
    pub fn into_families(self) -> Vec<MetricFamily> {
        self.families
            .into_values()
            .map(|(f, metrics)| {
                let mut mf = MetricFamily::default();
                mf.set_name(f.name.to_string());
                mf.set_help(f.help.to_string());
                mf.set_field_type(match f.kind {
                    Kind::Gauge => MetricType::GAUGE,
                    Kind::Counter => MetricType::COUNTER,
                });
                mf.set_metric(metrics);
                mf
            })
            .collect()
    }
}

fn pair(name: &str, value: &str) -> LabelPair {
    let mut p = LabelPair::default();
    p.set_name(name.to_string());
    p.set_value(value.to_string());
    p
}
