//! The status page at `/`: every probe and every thing it watches, with its state in words and
//! colour, problems first, the failure reason and message, and the last run — for the person on
//! call who has no PromQL at hand.
//!
//! The page is built from what the runner keeps of each probe's latest run: its result and the
//! [`Item`]s its family reported. A probe whose family reports no items is shown by its own
//! result, so every probe kind appears without code here.
//!
//! Server-rendered, no scripts, no external assets; it reloads itself every
//! [`REFRESH_SECONDS`]. Every text from the configuration or a target is HTML-escaped.
//!
//! **Invariant:** the page is bounded: at most [`MAX_PROBLEM_ROWS`] problems,
//! [`MAX_PROBES`] probes and [`MAX_ITEM_ROWS`] item rows, each text cut by the runner and the
//! item report, whatever the configuration or the targets hold.

use std::fmt::Write as _;
use std::time::Duration;

use http::StatusCode;
use stackmedic_common::reload::unix_now;
use stackmedic_common::server::{self, escape_html, Response};

use crate::probe::report::{duration_words, Moment};
use crate::probe::{Health, Item};
use crate::runner::{RunView, Runner};

/// Seconds after which the browser loads the page again.
pub const REFRESH_SECONDS: u32 = 10;
/// Most rows of the problem list.
pub const MAX_PROBLEM_ROWS: usize = 500;
/// Most probes shown, worst first.
pub const MAX_PROBES: usize = 1000;
/// Most item rows over all probes.
pub const MAX_ITEM_ROWS: usize = 2000;

/// One probe as the page sees it.
#[derive(Debug, Clone)]
pub struct ProbeStatus {
    /// The probe's name.
    pub name: String,
    /// The probe's kind name (`docker`, `hls`).
    pub kind: &'static str,
    /// Its interval.
    pub interval: Duration,
    /// Its last run; `None` before the first.
    pub last: Option<RunView>,
}

/// The response for `GET /`.
pub(crate) fn response(runner: &Runner) -> Response {
    let probes: Vec<ProbeStatus> = runner
        .slots()
        .iter()
        .map(|s| ProbeStatus {
            name: s.name().to_string(),
            kind: s.kind(),
            interval: s.interval(),
            last: s.last_run(),
        })
        .collect();
    server::html(
        StatusCode::OK,
        render(&probes, unix_now(), env!("CARGO_PKG_VERSION")),
    )
}

/// What the page shows for a probe or a problem: an item's health, or a probe that has not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Badge {
    Failing,
    Warning,
    Unknown,
    Pending,
    Ok,
}

impl Badge {
    fn class(self) -> &'static str {
        match self {
            Badge::Failing => "failing",
            Badge::Warning => "warning",
            Badge::Unknown => "unknown",
            Badge::Pending => "pending",
            Badge::Ok => "ok",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Badge::Failing => "FAILING",
            Badge::Warning => "WARNING",
            Badge::Unknown => "UNKNOWN",
            Badge::Pending => "PENDING",
            Badge::Ok => "OK",
        }
    }

    fn html(self) -> String {
        format!(
            "<span class=\"badge {}\">{}</span>",
            self.class(),
            self.word()
        )
    }
}

impl From<Health> for Badge {
    fn from(h: Health) -> Self {
        match h {
            Health::Failing => Badge::Failing,
            Health::Warning => Badge::Warning,
            Health::Unknown => Badge::Unknown,
            Health::Ok => Badge::Ok,
        }
    }
}

/// A probe with its overall state.
struct Card<'a> {
    probe: &'a ProbeStatus,
    badge: Badge,
}

impl<'a> Card<'a> {
    fn of(probe: &'a ProbeStatus) -> Self {
        let badge = match &probe.last {
            None => Badge::Pending,
            Some(r) if !r.success => Badge::Failing,
            Some(r) => r.items.tally.worst().map_or(Badge::Ok, Badge::from),
        };
        Self { probe, badge }
    }

    /// The problems of this probe for the list at the top: its failing or warning items, and
    /// its own failure when no failing item tells it already.
    fn problems(&self) -> Vec<Problem<'a>> {
        let Some(run) = &self.probe.last else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if !run.success && !run.items.list.iter().any(|i| i.health == Health::Failing) {
            out.push(Problem::Run(self.probe, run));
        }
        out.extend(
            run.items
                .list
                .iter()
                .filter(|i| i.health.is_problem())
                .map(|i| Problem::Item(self.probe, i)),
        );
        out
    }
}

/// One row of the problem list.
enum Problem<'a> {
    /// The probe's run failed.
    Run(&'a ProbeStatus, &'a RunView),
    /// A watched thing is failing or has a warning.
    Item(&'a ProbeStatus, &'a Item),
}

impl Problem<'_> {
    fn badge(&self) -> Badge {
        match self {
            Problem::Run(..) => Badge::Failing,
            Problem::Item(_, i) => i.health.into(),
        }
    }
}

/// The page.
#[must_use]
pub fn render(probes: &[ProbeStatus], now: f64, version: &str) -> String {
    let mut cards: Vec<Card<'_>> = probes.iter().map(Card::of).collect();
    // Stable: within one state the configuration's order stays.
    cards.sort_by_key(|c| c.badge);
    let mut problems: Vec<Problem<'_>> = cards.iter().flat_map(Card::problems).collect();
    problems.sort_by_key(Problem::badge);

    let count = |b: Badge| cards.iter().filter(|c| c.badge == b).count();
    let failing = problems
        .iter()
        .filter(|p| p.badge() == Badge::Failing)
        .count();
    let warnings = problems.len() - failing;
    let (banner_class, headline) = if failing > 0 {
        (
            Badge::Failing,
            format!(
                "{} · {}",
                plural(failing, "problem", "problems"),
                plural(warnings, "warning", "warnings")
            ),
        )
    } else if warnings > 0 {
        (Badge::Warning, plural(warnings, "warning", "warnings"))
    } else if cards.is_empty() {
        (Badge::Unknown, "no probes configured".to_string())
    } else if count(Badge::Unknown) > 0 {
        (
            Badge::Unknown,
            format!(
                "{} with unknown state",
                plural(count(Badge::Unknown), "probe", "probes")
            ),
        )
    } else if count(Badge::Pending) == cards.len() {
        (Badge::Pending, "waiting for the first runs".to_string())
    } else {
        (Badge::Ok, "all OK".to_string())
    };

    let mut out = String::with_capacity(32 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · stackmedic exporter</title><style>{STYLE}</style></head><body>\
         <h1>stackmedic exporter</h1>\
         <p class=\"meta\">Status at {} · reloads every {REFRESH_SECONDS} s · version {} · \
         <a href=\"metrics\">Metrics</a> · <a href=\"-/healthy\">Health</a> · \
         <a href=\"-/ready\">Readiness</a></p>",
        escape_html(&headline),
        clock(now, now),
        escape_html(version),
    );
    let by_state: Vec<String> = [
        Badge::Failing,
        Badge::Warning,
        Badge::Unknown,
        Badge::Pending,
        Badge::Ok,
    ]
    .into_iter()
    .filter(|b| count(*b) > 0)
    .map(|b| format!("{} {}", count(b), b.word().to_lowercase()))
    .collect();
    let _ = write!(
        out,
        "<div class=\"banner {}\"><strong>{}</strong><span class=\"counts\">{}{}</span></div>",
        banner_class.class(),
        escape_html(&capitalize(&headline)),
        plural(cards.len(), "probe", "probes"),
        if by_state.is_empty() {
            String::new()
        } else {
            format!(": {}", by_state.join(", "))
        },
    );

    if !problems.is_empty() {
        out.push_str(
            "<h2>Problems</h2><table class=\"list\"><thead><tr><th>State</th><th>What</th>\
             <th>Why</th><th>When</th></tr></thead><tbody>",
        );
        for p in problems.iter().take(MAX_PROBLEM_ROWS) {
            problem_row(&mut out, p, now);
        }
        out.push_str("</tbody></table>");
        if problems.len() > MAX_PROBLEM_ROWS {
            let _ = write!(
                out,
                "<p class=\"more\">{} more problems are not listed here.</p>",
                problems.len() - MAX_PROBLEM_ROWS
            );
        }
    }

    out.push_str("<h2>Probes</h2>");
    if cards.is_empty() {
        out.push_str("<p class=\"more\">The configuration has no probes: nothing is watched.</p>");
    }
    let mut item_rows = 0usize;
    for card in cards.iter().take(MAX_PROBES) {
        probe_section(&mut out, card, now, &mut item_rows);
    }
    if cards.len() > MAX_PROBES {
        let _ = write!(
            out,
            "<p class=\"more\">{} more probes are not shown here; /metrics has them all.</p>",
            cards.len() - MAX_PROBES
        );
    }
    out.push_str("</body></html>\n");
    out
}

fn problem_row(out: &mut String, p: &Problem<'_>, now: f64) {
    let badge = p.badge();
    match p {
        Problem::Run(probe, run) => {
            let _ = write!(
                out,
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                badge.class(),
                badge.html(),
                probe_name(probe),
                run_failure(run),
                moment_html(
                    Some(Moment {
                        label: "last run",
                        at: run.finished_at
                    }),
                    now
                ),
            );
        }
        Problem::Item(probe, item) => {
            let _ = write!(
                out,
                "<tr class=\"{}\"><td>{}</td><td>{}<div class=\"via\">probe {}</div></td>\
                 <td>{}</td><td>{}</td></tr>",
                badge.class(),
                badge.html(),
                item_name(item, probe),
                escape_html(&probe.name),
                item_status(item),
                moment_html(item.moment, now),
            );
        }
    }
}

fn probe_section(out: &mut String, card: &Card<'_>, now: f64, item_rows: &mut usize) {
    let probe = card.probe;
    let _ = write!(
        out,
        "<section class=\"probe {}\"><h3>{} {}</h3>",
        card.badge.class(),
        card.badge.html(),
        probe_name(probe),
    );
    let every = duration_words(probe.interval.as_secs_f64());
    let Some(run) = &probe.last else {
        let _ = write!(
            out,
            "<p class=\"run\">Not run yet; it runs every {every}.</p></section>"
        );
        return;
    };
    let _ = write!(
        out,
        "<p class=\"run\">Last run {} ({}), took {:.3} s; runs every {every}. {}</p>",
        clock(run.finished_at, now),
        ago(run.finished_at, now),
        run.duration,
        summary(run),
    );
    if !run.success {
        let _ = write!(out, "<div class=\"why\">{}</div>", run_failure(run));
    }
    let items = &run.items;
    let room = MAX_ITEM_ROWS.saturating_sub(*item_rows);
    let shown = items.list.len().min(room);
    if shown > 0 {
        out.push_str(
            "<table class=\"list\"><thead><tr><th>State</th><th>What</th><th>Status</th>\
             <th>When</th></tr></thead><tbody>",
        );
        for item in &items.list[..shown] {
            let badge = Badge::from(item.health);
            let _ = write!(
                out,
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                badge.class(),
                badge.html(),
                item_name(item, probe),
                item_status(item),
                moment_html(item.moment, now),
            );
        }
        out.push_str("</tbody></table>");
        *item_rows += shown;
    }
    let hidden = items.tally.total() - shown;
    if hidden > 0 {
        let _ = write!(
            out,
            "<p class=\"more\">{hidden} more not shown (the fine ones last); /metrics has them \
             all.</p>"
        );
    }
    out.push_str("</section>");
}

/// The counts of a successful run's items, or what its result says.
fn summary(run: &RunView) -> String {
    let t = &run.items.tally;
    if t.total() == 0 {
        return if run.success {
            "The run succeeded.".to_string()
        } else {
            String::new()
        };
    }
    let parts: Vec<String> = Health::ALL
        .iter()
        .filter(|h| t.get(**h) > 0)
        .map(|h| format!("{} {}", t.get(*h), h.as_str()))
        .collect();
    format!("Watches {}: {}.", t.total(), parts.join(", "))
}

/// The probe's name with its kind in words.
fn probe_name(p: &ProbeStatus) -> String {
    format!(
        "<strong>{}</strong> <span class=\"kind\">{}</span>",
        escape_html(&p.name),
        escape_html(kind_words(p.kind))
    )
}

/// A failed run: the reason in words, its label value, and the message.
fn run_failure(run: &RunView) -> String {
    let (words, label) = run
        .reason
        .map_or(("failed", "other"), |r| (r.words(), r.as_str()));
    // The label value is what alerts and dashboards show; it is left out where it says the
    // same as the words.
    let code = if words == label {
        String::new()
    } else {
        format!(" <code>{}</code>", escape_html(label))
    };
    format!(
        "<strong>{}</strong>{code}<div class=\"detail\">{}</div>",
        escape_html(words),
        escape_html(run.message.as_deref().unwrap_or_default()),
    )
}

fn item_name(item: &Item, probe: &ProbeStatus) -> String {
    let name = if item.name.is_empty() {
        &probe.name
    } else {
        &item.name
    };
    format!(
        "<span class=\"noun\">{}</span> <strong>{}</strong>",
        escape_html(item.what),
        escape_html(name)
    )
}

fn item_status(item: &Item) -> String {
    let mut s = format!("<strong>{}</strong>", escape_html(&item.state));
    if !item.detail.is_empty() {
        let _ = write!(
            s,
            "<div class=\"detail\">{}</div>",
            escape_html(&item.detail)
        );
    }
    s
}

fn moment_html(moment: Option<Moment>, now: f64) -> String {
    match moment {
        None => String::new(),
        Some(m) => format!(
            "<span class=\"nowrap\">{} {}</span><div class=\"detail\">{}</div>",
            escape_html(m.label),
            clock(m.at, now),
            ago(m.at, now)
        ),
    }
}

/// A time as a person on call reads it: the time of day in UTC when it is today, the date too
/// when not.
fn clock(t: f64, now: f64) -> String {
    let to_utc = |x: f64| chrono::DateTime::from_timestamp_millis((x * 1000.0) as i64);
    match (to_utc(t), to_utc(now)) {
        (Some(at), Some(today)) if at.date_naive() == today.date_naive() => {
            at.format("%H:%M:%S UTC").to_string()
        }
        (Some(at), _) => at.format("%Y-%m-%d %H:%M UTC").to_string(),
        (None, _) => "an unknown time".to_string(),
    }
}

/// How long ago `t` was.
fn ago(t: f64, now: f64) -> String {
    let d = now - t;
    if d < 1.0 {
        // Up to a second ahead is clock jitter between the probe and the page.
        "just now".to_string()
    } else if d < 60.0 {
        format!("{} s ago", d.floor())
    } else {
        format!("{} ago", duration_words(d))
    }
}

/// A probe kind in words. Unknown kinds show their configuration name, so a new family needs
/// no change here to appear.
fn kind_words(kind: &str) -> &str {
    match kind {
        "http" => "HTTP check",
        "cors" => "CORS preflight",
        "status_path" => "status path sampling",
        "access_log" => "access log",
        "docker" => "Docker containers",
        "docker_disk" => "Docker disk usage",
        "hls" => "HLS stream",
        "ads" => "PLC over ADS",
        "sri" => "SRI manifest",
        "backup" => "backups",
        "dns" => "DNS",
        "tcp" => "TCP",
        "filesystem" => "disk space",
        "json" => "JSON API",
        other => other,
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Colours carry the state for a quick look; the badge's word carries it for everyone else.
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.2rem 1.5rem;color:#1d232a;background:#f7f8fa}\
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.15rem;margin:1.4rem 0 .5rem}\
h3{font-size:1rem;margin:0 0 .3rem;display:flex;gap:.5rem;align-items:baseline;flex-wrap:wrap}\
.meta{color:#5a6270;margin:.2rem 0 .8rem;font-size:.9rem}\
.banner{padding:.7rem 1rem;border-radius:6px;font-size:1.25rem;display:flex;gap:1.2rem;align-items:baseline;flex-wrap:wrap}\
.banner .counts{font-size:.9rem}\
.banner.failing{background:#b3261e;color:#fff}.banner.warning{background:#fff0c2;color:#5c3b00;border:1px solid #b26a00}\
.banner.ok{background:#17692f;color:#fff}.banner.unknown,.banner.pending{background:#e4e7ec;color:#1d232a}\
table.list{border-collapse:collapse;width:100%;background:#fff;font-size:.9rem;margin:.3rem 0}\
.list th,.list td{border:1px solid #d5d9df;padding:.35rem .5rem;text-align:left;vertical-align:top}\
.list th{background:#e9edf2}.list td:first-child{width:6.5rem}.list td:last-child{width:12rem}\
tr.failing td{background:#fdecea}tr.warning td{background:#fff7e0}\
.badge{display:inline-block;min-width:5.5rem;text-align:center;padding:.1rem .4rem;border-radius:4px;\
font-weight:700;font-size:.8rem;letter-spacing:.03em;color:#fff}\
.badge.failing{background:#b3261e}.badge.warning{background:#b26a00}.badge.unknown,.badge.pending{background:#6b7280}\
.badge.ok{background:#17692f}\
.probe{background:#fff;border:1px solid #d5d9df;border-left:6px solid #6b7280;border-radius:4px;padding:.6rem .8rem;margin:.6rem 0}\
.probe.failing{border-left-color:#b3261e}.probe.warning{border-left-color:#b26a00}.probe.ok{border-left-color:#17692f}\
.kind,.noun,.via{color:#5a6270;font-size:.85rem;font-weight:400}.run{margin:.2rem 0;font-size:.9rem}\
.why{margin:.3rem 0 .5rem;padding:.4rem .6rem;background:#fdecea;border-radius:4px}\
.detail{color:#3d4450;font-size:.85rem;overflow-wrap:anywhere}.nowrap{white-space:nowrap}\
.more{color:#5a6270;font-size:.9rem}code{font-size:.85rem}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::report::{Items, Tally, MAX_ITEMS};
    use crate::probe::Reason;

    const NOW: f64 = 1_795_316_400.0; // 2026-11-22T03:00:00Z

    fn items(list: Vec<Item>) -> Items {
        let mut tally = Tally::default();
        for i in &list {
            tally.add(i.health);
        }
        Items { list, tally }
    }

    fn probe(name: &str, kind: &'static str, last: Option<RunView>) -> ProbeStatus {
        ProbeStatus {
            name: name.into(),
            kind,
            interval: Duration::from_secs(5),
            last,
        }
    }

    fn run(success: bool, reason: Option<Reason>, message: &str, list: Vec<Item>) -> RunView {
        RunView {
            success,
            reason,
            message: (!message.is_empty()).then(|| message.to_string()),
            duration: 0.012,
            finished_at: NOW - 3.0,
            items: items(list),
        }
    }

    /// The page's text in document order, tags removed.
    fn text(html: &str) -> String {
        let mut out = String::new();
        let mut tag = false;
        for c in html.chars() {
            match c {
                '<' => tag = true,
                '>' => {
                    tag = false;
                    out.push(' ');
                }
                c if !tag => out.push(c),
                _ => {}
            }
        }
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn position(haystack: &str, needle: &str) -> usize {
        haystack
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in {haystack}"))
    }

    #[test]
    fn problems_come_first_with_their_reasons() {
        let containers = vec![
            Item::new("container", "web", Health::Ok, "running"),
            Item::new("container", "crash", Health::Failing, "exited with code 3")
                .at("since", Some(NOW - 120.0)),
            Item::new(
                "container",
                "slow",
                Health::Warning,
                "running, health check starting",
            ),
        ];
        let probes = vec![
            probe("fine", "http", Some(run(true, None, "", vec![]))),
            probe("boxes", "docker", Some(run(true, None, "", containers))),
            probe(
                "refused",
                "http",
                Some(run(
                    false,
                    Some(Reason::Connect),
                    "http://127.0.0.1:9/: connection refused",
                    vec![],
                )),
            ),
            probe("later", "backup", None),
        ];
        let html = render(&probes, NOW, "1.2.3");
        let t = text(&html);
        let order = [
            "2 problems · 1 warning",
            "Problems",
            "FAILING container crash probe boxes exited with code 3 since 02:58:00 UTC 2 min ago",
            "FAILING refused HTTP check cannot connect connect http://127.0.0.1:9/: connection refused",
            "WARNING container slow",
            "Probes",
            "FAILING boxes Docker containers",
            "Watches 3: 1 failing, 1 warning, 1 ok.",
            "FAILING refused",
            "PENDING later backups Not run yet",
            "OK fine HTTP check Last run 02:59:57 UTC (3 s ago)",
        ];
        let mut at = 0;
        for needle in order {
            let p = position(&t[at..], needle) + at;
            at = p + needle.len();
        }
        assert!(html.contains("<meta http-equiv=\"refresh\""));
        assert!(!html.contains("<script"));
        assert!(!html.contains("http-equiv=\"refresh\" content=\"0"));
    }

    #[test]
    fn a_failed_run_with_a_failing_item_is_listed_once() {
        let plc = vec![Item::new(
            "PLC",
            "",
            Health::Failing,
            "ADS state stop, expected run",
        )];
        let probes = vec![probe(
            "plc-line1",
            "ads",
            Some(run(
                false,
                Some(Reason::Mismatch),
                "ADS state is stop, expected run",
                plc,
            )),
        )];
        let t = text(&render(&probes, NOW, "x"));
        assert!(t.contains("1 problem · 0 warnings"), "{t}");
        assert!(
            t.contains("FAILING PLC plc-line1 probe plc-line1 ADS state stop, expected run"),
            "{t}"
        );
        // In the probe's own section the failure is told once more, with its label value.
        assert!(
            t.contains("not as expected mismatch ADS state is stop"),
            "{t}"
        );
    }

    #[test]
    fn everything_from_outside_is_escaped() {
        let evil = "<script>alert(1)</script>";
        let probes = vec![probe(
            evil,
            "docker",
            Some(run(
                false,
                Some(Reason::Docker),
                evil,
                vec![Item::new("container", evil, Health::Failing, evil).detail(evil)],
            )),
        )];
        let html = render(&probes, NOW, evil);
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    #[test]
    fn the_page_is_bounded() {
        let many: Vec<Item> = (0..MAX_ITEMS)
            .map(|i| {
                Item::new(
                    "container",
                    "n".repeat(200),
                    Health::Failing,
                    "s".repeat(200),
                )
                .detail(format!("{i}{}", "d".repeat(500)))
            })
            .collect();
        let probes: Vec<ProbeStatus> = (0..MAX_PROBES + 200)
            .map(|i| {
                probe(
                    &format!("p{i}"),
                    "docker",
                    Some(run(
                        false,
                        Some(Reason::Docker),
                        &"m".repeat(300),
                        many.clone(),
                    )),
                )
            })
            .collect();
        let html = render(&probes, NOW, "x");
        let rows = html.matches("<tr class=").count();
        assert_eq!(rows, MAX_PROBLEM_ROWS + MAX_ITEM_ROWS);
        assert!(html.len() < 6 << 20, "{} bytes", html.len());
        assert!(html.contains("more problems are not listed here"));
        assert!(html.contains("200 more probes are not shown here"));
    }

    #[test]
    fn nothing_configured_and_nothing_run_yet() {
        let t = text(&render(&[], NOW, "x"));
        assert!(t.contains("No probes configured"), "{t}");
        let t = text(&render(&[probe("a", "smtp", None)], NOW, "x"));
        assert!(t.contains("Waiting for the first runs"), "{t}");
        // A kind without words of its own shows its configuration name.
        assert!(t.contains("PENDING a smtp"), "{t}");
        let fine = vec![probe("a", "sri", Some(run(true, None, "", vec![])))];
        assert!(text(&render(&fine, NOW, "x")).contains("All OK"));
    }

    #[test]
    fn times_read_as_on_call_needs_them() {
        assert_eq!(clock(NOW - 60.0, NOW), "02:59:00 UTC");
        assert_eq!(clock(NOW - 86_400.0, NOW), "2026-11-21 03:00 UTC");
        assert_eq!(ago(NOW + 0.5, NOW), "just now");
        assert_eq!(ago(NOW - 42.7, NOW), "42 s ago");
        assert_eq!(ago(NOW - 7500.0, NOW), "2 h 5 min ago");
    }
}
