//! The shipped alerting files checked with the real tools: `promtool check rules` and
//! `promtool test rules` on `alerts/`, `amtool check-config` and one `amtool config routes test`
//! per runbook scenario on `alerts/alertmanager.example.yml`; every dashboard parsed, every panel
//! query checked as PromQL by promtool (inside a generated rule file) and against the metrics
//! of `docs/metrics.md`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use stackmedic_tests::alerting::{self, PanelQuery};
use stackmedic_tests::alertmanager::amtool;
use stackmedic_tests::prometheus::promtool;

/// `up` is written by Prometheus itself for every scrape; the exporter-down and remediator-down
/// alerts need it. It is the only metric outside `docs/metrics.md` the rules may use.
const PROMETHEUS_METRICS: &[&str] = &["up"];

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(alerting::repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The core rule files (`alerts/*.rules.yml`) and the stacks' (`alerts/stacks/*.rules.yml`).
fn rule_files() -> Vec<String> {
    let files: Vec<String> = alerting::repo_files("alerts", ".rules.yml")
        .iter()
        .chain(&alerting::repo_files("alerts/stacks", ".rules.yml"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        files.iter().any(|f| f.contains("/stacks/")),
        "no alerts/stacks/*.rules.yml: {files:?}"
    );
    files
}

fn all_rules_text() -> String {
    rule_files()
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Metric names a query may use: the documented ones and our recording rules.
fn known_metrics() -> BTreeSet<String> {
    let mut known = alerting::documented_metrics();
    assert!(
        known.contains("stackmedic_probe_success"),
        "docs/metrics.md lists no metrics: {known:?}"
    );
    known.extend(alerting::recording_rule_names(&all_rules_text()));
    known
}

#[test]
fn promtool_checks_and_unit_tests_pass_for_every_alert() {
    let promtool = promtool();
    let files = rule_files();
    let mut args = vec!["check", "rules"];
    args.extend(files.iter().map(String::as_str));
    assert_success("promtool check rules", &run(&promtool, &args));

    let tests: Vec<String> = alerting::repo_files("alerts/tests", ".yml")
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert!(!tests.is_empty(), "no alerts/tests/*.yml");
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let output = run(&promtool, &args);
    assert_success("promtool test rules", &output);

    // Every alert has a unit test in which it fires (exp_labels naming it), a runbook, and a
    // severity of the documented mapping.
    let rules = all_rules_text();
    let tests_text: String = tests
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let alerts = alerting::alert_names(&rules);
    assert!(
        alerts.len() >= 30,
        "only {} alerts: {alerts:?}",
        alerts.len()
    );
    for alert in &alerts {
        assert!(
            tests_text.contains(&format!(
                "- exp_labels:\n              alertname: {alert}\n"
            )),
            "alert {alert} has no unit test in which it fires"
        );
        assert!(
            tests_text.contains(&format!("alertname: {alert}\n        exp_alerts: []"))
                || tests_text.contains(&format!("alertname: {alert}, exp_alerts: []")),
            "alert {alert} has no unit test in which it stays quiet"
        );
        assert!(
            rules.contains(&format!("runbook_url: docs/runbooks/{alert}.md")),
            "alert {alert} has no runbook_url docs/runbooks/{alert}.md"
        );
        let runbook = alerting::repo_root().join(format!("docs/runbooks/{alert}.md"));
        assert!(runbook.is_file(), "{} is missing", runbook.display());
    }
    // The remediator's own escalation alert has a runbook too.
    assert!(alerting::repo_root()
        .join("docs/runbooks/StackmedicRemediationFailed.md")
        .is_file());
    for line in rules.lines().filter(|l| l.trim().starts_with("severity:")) {
        let severity = line.trim().trim_start_matches("severity:").trim();
        assert!(
            ["page", "ticket", "warning", "info"].contains(&severity),
            "unknown severity {severity:?}"
        );
    }
}

#[test]
fn rules_use_only_documented_metrics() {
    let mut known = known_metrics();
    known.extend(PROMETHEUS_METRICS.iter().map(|s| (*s).to_owned()));
    let mut unknown = Vec::new();
    let mut exprs = 0;
    for file in rule_files() {
        let value: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&file).unwrap())
                .unwrap_or_else(|e| panic!("{file} is not YAML: {e}"));
        for group in value["groups"].as_array().expect("groups") {
            for rule in group["rules"].as_array().expect("rules") {
                let expr = rule["expr"].as_str().expect("expr");
                exprs += 1;
                for name in alerting::metric_names(expr) {
                    if !known.contains(&name) {
                        unknown.push(format!("{name} (in {expr:?})"));
                    }
                }
            }
        }
    }
    assert!(exprs > 30);
    assert!(
        unknown.is_empty(),
        "rules use metrics not listed in docs/metrics.md:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn alertmanager_example_is_valid_and_routes_every_runbook_scenario() {
    let amtool = amtool();
    let config = "alerts/alertmanager.example.yml";
    assert_success(
        "amtool check-config",
        &run(&amtool, &["check-config", config]),
    );

    let scenarios = alerting::read_repo_file("alerts/tests/routes.txt");
    let mut count = 0;
    for line in scenarios
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let mut words = line.split_whitespace();
        let receivers = words.next().unwrap();
        let labels: Vec<&str> = words.collect();
        let config_arg = format!("--config.file={config}");
        let verify = format!("--verify.receivers={receivers}");
        let mut args = vec!["config", "routes", "test", &config_arg, &verify];
        args.extend(labels.iter().copied());
        let output = run(&amtool, &args);
        assert!(
            output.status.success(),
            "route scenario `{line}`: expected {receivers}, amtool answered {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        count += 1;
    }
    assert!(count >= 15, "only {count} route scenarios");

    // The routes test must be able to fail: a wrong expectation is reported.
    let config_arg = format!("--config.file={config}");
    let output = run(
        &amtool,
        &[
            "config",
            "routes",
            "test",
            &config_arg,
            "--verify.receivers=stackmedic-remediator",
            "alertname=StackmedicRemediationFailed",
            "severity=page",
            "remediation=container_restart",
        ],
    );
    assert!(
        !output.status.success(),
        "an escalation must never route back to the remediator"
    );
}

fn all_queries() -> Vec<PanelQuery> {
    let dashboards = alerting::dashboards();
    assert!(
        dashboards.len() >= 2,
        "expected the overview and remediator dashboards"
    );
    let mut queries = Vec::new();
    for (name, d) in &dashboards {
        queries.extend(alerting::dashboard_queries(name, d).unwrap());
    }
    queries
}

#[test]
fn dashboards_are_import_ready() {
    for (name, d) in alerting::dashboards() {
        assert!(
            d["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{name}: no title"
        );
        assert!(
            d.get("uid").is_none_or(serde_json::Value::is_null),
            "{name}: a hard-coded dashboard uid"
        );
        let vars = d["templating"]["list"].as_array().expect("templating.list");
        assert!(
            vars.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "{name}: no datasource template variable of type datasource"
        );
        // Every datasource reference anywhere is the variable, never a fixed uid.
        fn check(name: &str, v: &serde_json::Value) {
            match v {
                serde_json::Value::Object(map) => {
                    if let Some(ds) = map.get("datasource") {
                        if !ds.is_string() || ds != "${datasource}" {
                            assert_eq!(
                                ds["uid"], "${datasource}",
                                "{name}: datasource {ds} is not the template variable"
                            );
                        }
                    }
                    map.values().for_each(|x| check(name, x));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| check(name, x)),
                _ => {}
            }
        }
        check(&name, &d["panels"]);
        check(&name, &d["templating"]);
        // Panels carry unique ids and sit inside the 24-column grid.
        let mut ids = BTreeSet::new();
        for p in d["panels"].as_array().expect("panels") {
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "{name}: duplicate id"
            );
            let x = p["gridPos"]["x"].as_u64().unwrap();
            let w = p["gridPos"]["w"].as_u64().unwrap();
            assert!(x + w <= 24, "{name}: panel {} leaves the grid", p["title"]);
        }
    }
}

#[test]
fn every_panel_query_is_valid_promql_over_documented_metrics() {
    let queries = all_queries();
    assert!(queries.len() >= 30, "only {} panel queries", queries.len());

    // promtool checks the syntax of each query as the expression of a recording rule.
    let mut file = String::from("groups:\n  - name: dashboard-queries\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        let expr = alerting::instantiate(&q.expr, "5m");
        file.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: |\n"
        ));
        for line in expr.lines() {
            file.push_str(&format!("          {line}\n"));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard-queries.rules.yml");
    std::fs::write(&path, &file).unwrap();
    let output = run(
        &promtool(),
        &["check", "rules", &path.display().to_string()],
    );
    assert_success(
        &format!("promtool check rules on the panel queries\n{file}"),
        &output,
    );

    let known = known_metrics();
    let mut unknown = Vec::new();
    for q in &queries {
        let names = alerting::metric_names(&q.expr);
        assert!(
            !names.is_empty(),
            "{}: no metric in {:?}",
            q.origin(),
            q.expr
        );
        for name in names {
            if !known.contains(&name) {
                unknown.push(format!("{name} in {}", q.origin()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "panel queries use metrics not listed in docs/metrics.md:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn metric_name_extraction_sees_through_promql() {
    let names = alerting::metric_names(
        r#"sum by (probe, value) (rate(stackmedic_status_path_hits_total{instance=~"a|b", value="legacy"}[5m] offset 1h)) > on (instance) group_left (x) stackmedic:warming_budget_seconds or vector(1) and bool 3e2 unless absent(up{job="x"})"#,
    );
    let expected: BTreeSet<String> = [
        "stackmedic_status_path_hits_total",
        "stackmedic:warming_budget_seconds",
        "up",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(names, expected);
}
