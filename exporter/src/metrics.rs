//! The samples probes produce and their rendering in the Prometheus text format.
//!
//! Each probe family declares its metric families as `static` [`Family`] values; a run writes
//! [`Sample`]s into a [`Samples`] buffer.
//!
//! A probe's series change only when it runs, so they are rendered into text once, when the
//! run ends ([`Rendered`]), and kept family by family on the [`crate::board::Board`]; a scrape
//! never waits on a target and only copies those lines under one `# HELP`/`# TYPE` header per
//! family ([`Exposition`]). The series lines are the same in
//! the Prometheus text format and in OpenMetrics ([`Format`]); only the headers differ (and
//! OpenMetrics ends with `# EOF`).

use std::ops::Range;

/// An exposition format `/metrics` answers in, chosen by the scraper's `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4.
    Text,
    /// OpenMetrics text, version 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header prefers: OpenMetrics when it is asked for with at least
    /// the weight of the text format (as Prometheus asks by default), the text format
    /// otherwise.
    #[must_use]
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut open_metrics, mut text) = (None::<f32>, None::<f32>);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let mut q = 1.0_f32;
            let mut version_ok = true;
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.trim().parse().unwrap_or(0.0),
                    "version" if media == "application/openmetrics-text" => {
                        version_ok = matches!(v.trim(), "1.0.0" | "0.0.1");
                    }
                    _ => {}
                }
            }
            let slot = match media.as_str() {
                "application/openmetrics-text" if version_ok => &mut open_metrics,
                "text/plain" | "text/*" | "*/*" => &mut text,
                _ => continue,
            };
            *slot = Some(slot.map_or(q, |old: f32| old.max(q)));
        }
        match open_metrics {
            Some(om) if om > 0.0 && om >= text.unwrap_or(0.0) => Format::OpenMetrics,
            _ => Format::Text,
        }
    }
}

/// Whether an `Accept-Encoding` header accepts gzip (with a weight above zero).
#[must_use]
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|header| {
        header.split(',').any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(1.0, |(_, v)| v.trim().parse::<f32>().unwrap_or(0.0));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && q > 0.0
        })
    })
}

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

/// The series of one probe in the text format (version 0.0.4), as a run ends; the board keeps
/// them family by family ([`crate::board::Lines`]) and [`Exposition`] puts each family's lines
/// under its header.
///
/// Each line is written without its metric name, which is the family's and the same for every
/// probe: the exposition writes it before the line. Ten thousand probes keep about half the
/// bytes of text that way.
#[derive(Debug, Default)]
pub struct Rendered {
    /// The lines, each without its metric name (from the `{` of its labels on).
    pub(crate) text: String,
    /// The lines in `text`, one part each with its family, in the order the samples came.
    pub(crate) parts: Vec<(&'static Family, Range<u32>)>,
}

impl Rendered {
    /// Starts the series of `probe` again in the memory of `self` (its previous series): a
    /// probe renders once per run, and reusing its text keeps the allocator from churning.
    #[must_use]
    pub fn rebuild(mut self, probe: &str) -> RenderedBuilder {
        self.text.clear();
        self.parts.clear();
        let mut escaped = String::with_capacity(probe.len());
        escape_label(&mut escaped, probe);
        RenderedBuilder {
            probe: escaped,
            rendered: self,
        }
    }

    /// Starts the series of `probe`, each with the label `probe="<probe>"` first.
    #[must_use]
    pub fn builder(probe: &str) -> RenderedBuilder {
        let mut escaped = String::with_capacity(probe.len());
        escape_label(&mut escaped, probe);
        RenderedBuilder {
            probe: escaped,
            rendered: Rendered {
                text: String::with_capacity(1024),
                parts: Vec::with_capacity(16),
            },
        }
    }

    /// Renders `samples`; see [`Rendered::builder`].
    #[must_use]
    pub fn new<'a>(probe: &str, samples: impl IntoIterator<Item = &'a Sample>) -> Self {
        let mut b = Self::builder(probe);
        for s in samples {
            b.sample(s);
        }
        b.finish()
    }
}

/// Renders a probe's series one by one, straight into text.
pub struct RenderedBuilder {
    /// The probe's name, escaped once for all its series.
    probe: String,
    rendered: Rendered,
}

impl RenderedBuilder {
    /// Adds a series of `family` with `labels` after `probe`.
    pub fn series(&mut self, family: &'static Family, labels: &[(&str, &str)], value: f64) {
        let start = self.rendered.text.len();
        write_series(
            &mut self.rendered.text,
            "",
            &self.probe,
            labels.iter().map(|(k, v)| (*k, *v)),
            value,
        );
        self.extend_part(family, start);
    }

    /// Adds a sample.
    pub fn sample(&mut self, s: &Sample) {
        let start = self.rendered.text.len();
        write_series(
            &mut self.rendered.text,
            "",
            &self.probe,
            s.labels.iter().map(|(k, v)| (*k, v.as_str())),
            s.value,
        );
        self.extend_part(s.family, start);
    }

    fn extend_part(&mut self, family: &'static Family, start: usize) {
        let end = self.rendered.text.len();
        // A probe's text is far below 4 GiB: offsets fit in 32 bits.
        self.rendered
            .parts
            .push((family, offset(start)..offset(end)));
    }

    /// The rendered series.
    #[must_use]
    pub fn finish(self) -> Rendered {
        self.rendered
    }
}

/// A text offset as kept in a part.
fn offset(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}

/// A part's range of the text.
pub(crate) fn span(range: &Range<u32>) -> Range<usize> {
    range.start as usize..range.end as usize
}

pub(crate) fn write_header(out: &mut Vec<u8>, family: &Family, format: Format) {
    // OpenMetrics names a counter family without the `_total` its samples carry.
    let name = match (format, family.kind) {
        (Format::OpenMetrics, Kind::Counter) => {
            family.name.strip_suffix("_total").unwrap_or(family.name)
        }
        _ => family.name,
    };
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    escape_help(out, family.help, format);
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(match family.kind {
        Kind::Gauge => b" gauge\n",
        Kind::Counter => b" counter\n",
    });
}

/// The registry's own families in OpenMetrics, for a scrape that asked for it. The registry
/// holds gauges and counters only; a family of another type would be left out.
pub fn write_registry_open_metrics(
    families: &[prometheus::proto::MetricFamily],
    out: &mut Vec<u8>,
) {
    use prometheus::proto::MetricType;
    for mf in families {
        let counter = match mf.get_field_type() {
            MetricType::COUNTER => true,
            MetricType::GAUGE => false,
            _ => continue,
        };
        let full = mf.name();
        let name = if counter {
            full.strip_suffix("_total").unwrap_or(full)
        } else {
            full
        };
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        escape_help(out, mf.help(), Format::OpenMetrics);
        let kind = if counter { "counter" } else { "gauge" };
        out.extend_from_slice(format!("\n# TYPE {name} {kind}\n").as_bytes());
        for m in mf.get_metric() {
            let value = if counter {
                m.get_counter().get_value()
            } else {
                m.get_gauge().get_value()
            };
            let mut line = String::new();
            line.push_str(name);
            if counter {
                line.push_str("_total");
            }
            if !m.get_label().is_empty() {
                line.push('{');
                for (i, l) in m.get_label().iter().enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    line.push_str(l.name());
                    line.push_str("=\"");
                    escape_label(&mut line, l.value());
                    line.push('"');
                }
                line.push('}');
            }
            line.push(' ');
            write_value(&mut line, value);
            line.push('\n');
            out.extend_from_slice(line.as_bytes());
        }
    }
}

/// One line; `probe` is escaped already.
fn write_series<'a>(
    text: &mut String,
    name: &str,
    probe: &str,
    labels: impl Iterator<Item = (&'a str, &'a str)>,
    value: f64,
) {
    text.push_str(name);
    text.push_str("{probe=\"");
    text.push_str(probe);
    for (k, v) in labels {
        text.push_str("\",");
        text.push_str(k);
        text.push_str("=\"");
        escape_label(text, v);
    }
    text.push_str("\"} ");
    write_value(text, value);
    text.push('\n');
}

/// A value as Go's `strconv.ParseFloat`, which Prometheus parses with, reads it: whole numbers
/// (status codes, counts, flags) without a fraction, others in their shortest round-trip
/// form, and the text format's spellings of the special values.
fn write_value(text: &mut String, value: f64) {
    // Below 2^53 every whole number is exact.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if value.is_nan() {
        text.push_str("NaN");
    } else if value.is_infinite() {
        text.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < EXACT {
        // Exact by the check above.
        #[allow(clippy::cast_possible_truncation)]
        text.push_str(itoa::Buffer::new().format(value as i64));
    } else {
        text.push_str(ryu::Buffer::new().format_finite(value));
    }
}

/// A label value with `\\`, `"` and line feeds escaped.
fn escape_label(text: &mut String, value: &str) {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        text.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => text.push_str("\\\\"),
            '"' => text.push_str("\\\""),
            '\n' => text.push_str("\\n"),
            c => text.push(c),
        }
    }
}

/// Help text with `\\` and line feeds escaped; in OpenMetrics also `"` (the text format
/// leaves quotes as they are).
fn escape_help(out: &mut Vec<u8>, help: &str, format: Format) {
    for b in help.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'"' if format == Format::OpenMetrics => out.extend_from_slice(b"\\\""),
            b => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::Exposition;
    use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
    use prometheus::Encoder as _;

    static UP: Family = Family::gauge("t_up", "Whether it is \\ up\nor not.");
    static RUNS: Family = Family::counter("t_runs_total", "Runs.");
    static INFO: Family = Family::gauge("t_info", "Info.");

    /// The same samples encoded by the `prometheus` crate, the reference for the format.
    fn reference(probes: &[(&str, &[Sample])]) -> String {
        let mut families: Vec<MetricFamily> = Vec::new();
        for family in [&INFO, &RUNS, &UP] {
            let mut mf = MetricFamily::default();
            mf.set_name(family.name.to_string());
            mf.set_help(family.help.to_string());
            mf.set_field_type(match family.kind {
                Kind::Gauge => MetricType::GAUGE,
                Kind::Counter => MetricType::COUNTER,
            });
            let mut metrics = Vec::new();
            for (probe, samples) in probes {
                for s in samples.iter().filter(|s| std::ptr::eq(s.family, family)) {
                    let mut labels = Vec::new();
                    for (k, v) in std::iter::once(&("probe", probe.to_string())).chain(&s.labels) {
                        let mut p = LabelPair::default();
                        p.set_name(k.to_string());
                        p.set_value(v.clone());
                        labels.push(p);
                    }
                    let mut m = Metric::default();
                    m.set_label(labels);
                    if family.kind == Kind::Gauge {
                        let mut g = Gauge::default();
                        g.set_value(s.value);
                        m.set_gauge(g);
                    } else {
                        let mut c = Counter::default();
                        c.set_value(s.value);
                        m.set_counter(c);
                    }
                    metrics.push(m);
                }
            }
            mf.set_metric(metrics);
            families.push(mf);
        }
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&families, &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn sample(family: &'static Family, labels: &[(&'static str, &str)], value: f64) -> Sample {
        Sample {
            family,
            labels: labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
            value,
        }
    }

    #[test]
    fn renders_as_the_prometheus_encoder_does() {
        let a = [
            sample(&UP, &[("kind", "http")], 1.0),
            sample(&RUNS, &[], 12.0),
            sample(&INFO, &[("sha", "a \"quoted\" \\ back\nslash")], 1.0),
            sample(&UP, &[("kind", "other")], 0.0),
        ];
        let b = [
            sample(&RUNS, &[], 3.0),
            sample(&UP, &[("kind", "http")], 0.25),
            sample(&INFO, &[("sha", "x")], 1_764_000_000.123_456),
        ];
        // Probes of the same families in the same order (the usual case), and others.
        let c = [
            sample(&RUNS, &[], 4.0),
            sample(&UP, &[("kind", "http")], 1.0),
            sample(&INFO, &[("sha", "y")], 1.0),
        ];
        let exposition = Exposition::of_rendered(&[
            Rendered::new("a", &a),
            Rendered::new("b", &b),
            Rendered::new("c", &c),
            Rendered::new("a2", &a),
        ]);
        let mut out = b"# kept\n".to_vec();
        exposition.write(&mut out, Format::Text);
        let text = String::from_utf8(out).unwrap();
        let text = text
            .strip_prefix("# kept\n")
            .expect("what was there is kept");
        assert_eq!(
            text,
            reference(&[("a", &a), ("b", &b), ("c", &c), ("a2", &a)])
        );
        // Each family's header appears once, before all of its series.
        assert_eq!(text.matches("# TYPE t_up gauge").count(), 1);
        assert!(text.contains("# HELP t_up Whether it is \\\\ up\\nor not.\n"));
    }

    #[test]
    fn open_metrics_headers_and_negotiation() {
        let s = [
            sample(&RUNS, &[], 3.0),
            sample(&UP, &[("kind", "a\"b")], 1.0),
        ];
        let exposition = Exposition::of_rendered(&[Rendered::new("p", &s)]);
        let mut out = Vec::new();
        exposition.write(&mut out, Format::OpenMetrics);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "# HELP t_runs Runs.\n# TYPE t_runs counter\nt_runs_total{probe=\"p\"} 3\n\
             # HELP t_up Whether it is \\\\ up\\nor not.\n# TYPE t_up gauge\nt_up{probe=\"p\",kind=\"a\\\"b\"} 1\n"
        );
        // What Prometheus sends by default, and other clients.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        for (accept, want) in [
            (None, Format::Text),
            (Some("*/*"), Format::Text),
            (Some("text/plain;version=0.0.4;q=1,*/*;q=0.1"), Format::Text),
            (
                Some("application/openmetrics-text; version=1.0.0"),
                Format::OpenMetrics,
            ),
            (
                Some("application/openmetrics-text;version=2.0.0"),
                Format::Text,
            ),
            (Some("application/openmetrics-text;q=0"), Format::Text),
            (
                Some("text/plain;q=0.9,application/openmetrics-text;q=0.5"),
                Format::Text,
            ),
        ] {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("identity;q=0.5, GZIP;q=0.8")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("br, deflate")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn special_values_use_the_format_spelling() {
        let s = [
            sample(&UP, &[("kind", "a")], f64::INFINITY),
            sample(&UP, &[("kind", "b")], f64::NEG_INFINITY),
            sample(&UP, &[("kind", "c")], f64::NAN),
        ];
        let r = Rendered::new("p", &s);
        assert_eq!(
            r.text,
            "{probe=\"p\",kind=\"a\"} +Inf\n{probe=\"p\",kind=\"b\"} -Inf\n{probe=\"p\",kind=\"c\"} NaN\n"
        );
    }

    #[test]
    fn values_round_trip() {
        for v in [
            0.0,
            1.0,
            -3.0,
            200.0,
            0.25,
            3.4e-7,
            1e21,
            -1e-300,
            1_795_862_611.510_324_7,
            9_007_199_254_740_993.0,
            f64::MAX,
        ] {
            let mut text = String::new();
            write_value(&mut text, v);
            assert_eq!(text.parse::<f64>().unwrap(), v, "{v} written as {text}");
        }
        let mut text = String::new();
        write_value(&mut text, 200.0);
        assert_eq!(text, "200");
    }
}
