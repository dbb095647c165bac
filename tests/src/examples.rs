//! The shipped example set (`examples/README.md`) as tests run it: a copy of `examples/` and
//! `alerts/` (with the per-stack files of `examples/exporter.d/`, `examples/remediator.d/` and
//! `alerts/stacks/`, of which a test may keep only some stacks) in which only the values the
//! README's "The values to change" tables list are replaced, and the whole loop started from
//! that copy — stackmedic-exporter, stackmedic-remediator
//! (with the secrets of `examples/stackmedic.env`), Prometheus and Alertmanager, each with its
//! file of the copy and otherwise its defaults, on the ports the copy names.
//!
//! ```text
//! let ports = Ports::pick();
//! let set = ExampleSet::copy(&ports.replacements().into_iter().chain([("owui", name)]).collect::<Vec<_>>());
//! let stack = Stack::start(&set, &ports);
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::alerting::{read_repo_file, repo_root};
use crate::docker::{run_busybox, Container};
use crate::process::Process;

/// The folders of the set, below the repository root; copied whole, with their subfolders
/// (`examples/exporter.d/`, `examples/remediator.d/`, `alerts/stacks/`).
const FOLDERS: [&str; 2] = ["examples", "alerts"];

/// The stacks of the set, each with its files (`examples/exporter.d/<stack>.yml`, and where
/// the stack has them `examples/remediator.d/<stack>.yml` and `alerts/stacks/<stack>.rules.yml`).
pub const STACKS: [&str; 5] = [
    "open-webui",
    "assistant-backend",
    "gateway",
    "backups",
    "camera-plc",
];

/// The files of `folder` (relative to the repository root) and its subfolders, relative to
/// the root, by name.
fn files_below(folder: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![folder.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(repo_root().join(&dir))
            .unwrap_or_else(|e| panic!("cannot read {dir}: {e}"));
        for entry in entries.filter_map(Result::ok) {
            let name = format!("{dir}/{}", entry.file_name().to_string_lossy());
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(name),
                Ok(t) if t.is_file() => out.push(name),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// The values `examples/README.md` lists under "The values to change" (the first column, each
/// backticked value of it).
///
/// # Panics
/// When the README has no such table.
pub fn documented_values() -> BTreeSet<String> {
    let readme = read_repo_file("examples/README.md");
    let start = readme
        .find("## The values to change")
        .expect("examples/README.md has a section \"The values to change\"");
    let section = &readme[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    let mut values = BTreeSet::new();
    for line in section[..end].lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap_or_default();
        for part in first.split('`').skip(1).step_by(2) {
            values.insert(part.to_owned());
        }
    }
    assert!(values.len() > 10, "too few documented values: {values:?}");
    values
}

/// A copy of the set with documented values replaced; deleted when dropped.
#[derive(Debug)]
pub struct ExampleSet {
    dir: TempDir,
}

impl ExampleSet {
    /// Copies the set, replacing each `(documented value, replacement)` wherever the value stands
    /// as a whole word (not inside a longer name such as `owui-data`), longest values first.
    ///
    /// # Panics
    /// When a value is not in the README's table, or does not occur in the set at all.
    pub fn copy(replacements: &[(&str, String)]) -> ExampleSet {
        let documented = documented_values();
        for (value, _) in replacements {
            assert!(
                documented.contains(*value),
                "{value:?} is not among the values examples/README.md lists as the ones to change"
            );
        }
        let mut ordered: Vec<&(&str, String)> = replacements.iter().collect();
        ordered.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        let dir = tempfile::Builder::new()
            .prefix("stackmedic-examples-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let mut used = BTreeSet::new();
        for file in FOLDERS.iter().flat_map(|f| files_below(f)) {
            let file = file.as_str();
            let mut text = read_repo_file(file);
            for (value, with) in &ordered {
                let (replaced, n) = replace_word(&text, value, with);
                if n > 0 {
                    used.insert(*value);
                }
                text = replaced;
            }
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().expect("a folder"))
                .unwrap_or_else(|e| panic!("cannot create the folder of {file}: {e}"));
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        for (value, _) in replacements {
            assert!(
                used.contains(value),
                "{value:?} occurs in no file of the set"
            );
        }
        ExampleSet { dir }
    }

    /// Deletes the files of every stack but `keep` from the copy, as a user removes a stack
    /// from a host: its exporter, remediator and rule files.
    ///
    /// # Panics
    /// When `keep` names no stack of [`STACKS`], or a file cannot be deleted.
    pub fn keep_stacks(&self, keep: &[&str]) {
        for stack in keep {
            assert!(
                STACKS.contains(stack),
                "{stack:?} is not a stack of the set"
            );
        }
        for stack in STACKS.iter().filter(|s| !keep.contains(s)) {
            for file in [
                format!("examples/exporter.d/{stack}.yml"),
                format!("examples/remediator.d/{stack}.yml"),
                format!("alerts/stacks/{stack}.rules.yml"),
            ] {
                let path = self.path(&file);
                if path.exists() {
                    std::fs::remove_file(&path)
                        .unwrap_or_else(|e| panic!("cannot delete {}: {e}", path.display()));
                }
            }
        }
    }

    /// The copy of `relative` (such as `examples/remediator.yml`).
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// The text of the copy of `relative`.
    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path(relative))
            .unwrap_or_else(|e| panic!("cannot read the copy of {relative}: {e}"))
    }

    /// The copy's root folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The variables of the copy's `examples/stackmedic.env`.
    pub fn env(&self) -> Vec<(String, String)> {
        self.read("examples/stackmedic.env")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// `text` with every whole-word occurrence of `value` replaced, and how many there were. A word
/// boundary is any character but a letter, digit, `_` or `-`.
pub fn replace_word(text: &str, value: &str, with: &str) -> (String, usize) {
    let word =
        |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let mut out = String::with_capacity(text.len());
    let mut n = 0;
    let mut rest = text;
    while let Some(i) = rest.find(value) {
        let before = if i > 0 {
            rest[..i].chars().last()
        } else {
            out.chars().last()
        };
        let after = rest[i + value.len()..].chars().next();
        // Values that start or end in a word character need a boundary there; others (paths,
        // lists) stand as they are.
        let needs_front = value.chars().next().is_some_and(|c| word(Some(c)));
        let needs_back = value.chars().last().is_some_and(|c| word(Some(c)));
        if (needs_front && word(before)) || (needs_back && word(after)) {
            out.push_str(&rest[..i + value.len()]);
        } else {
            out.push_str(&rest[..i]);
            out.push_str(with);
            n += 1;
        }
        rest = &rest[i + value.len()..];
    }
    out.push_str(rest);
    (out, n)
}

/// The listen addresses of the loop, chosen free on 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// stackmedic-exporter.
    pub exporter: u16,
    /// stackmedic-remediator.
    pub remediator: u16,
    /// Prometheus.
    pub prometheus: u16,
    /// Alertmanager.
    pub alertmanager: u16,
}

impl Ports {
    /// Four free ports.
    pub fn pick() -> Ports {
        let mut seen = BTreeSet::new();
        let mut next = || loop {
            let p = crate::free_port();
            if seen.insert(p) {
                return p;
            }
        };
        Ports {
            exporter: next(),
            remediator: next(),
            prometheus: next(),
            alertmanager: next(),
        }
    }

    /// The documented listen addresses, replaced by these ports.
    pub fn replacements(&self) -> Vec<(&'static str, String)> {
        vec![
            ("127.0.0.1:8790", format!("127.0.0.1:{}", self.exporter)),
            ("127.0.0.1:8791", format!("127.0.0.1:{}", self.remediator)),
            ("127.0.0.1:9093", format!("127.0.0.1:{}", self.alertmanager)),
        ]
    }
}

/// Where the documented values of the set point when the loop runs on this machine: the
/// places every loop test replaces (a test adds its own on top).
#[derive(Debug, Clone, Copy)]
pub struct LoopValues<'a> {
    /// The watched container's name (the set's `owui`).
    pub container: &'a str,
    /// The port the watched container serves on (the set's `127.0.0.1:3000`).
    pub web_port: u16,
    /// A loopback address where nothing listens, for the gateway's and the public names.
    pub closed: &'a str,
    /// The access log the status-path probe reads.
    pub access_log: &'a Path,
    /// The compose file the remediator's `compose-up` uses.
    pub compose_file: &'a Path,
    /// `host:port` of the camera/PLC app's admin API.
    pub camera_app: &'a str,
    /// The port of the on-call and ticket receivers.
    pub sink_port: u16,
    /// Where Alertmanager reads the webhook token.
    pub token_file: &'a Path,
}

impl LoopValues<'_> {
    /// The replacements for [`ExampleSet::copy`]: the ports' and these, each for its
    /// documented value.
    pub fn replacements(&self, ports: &Ports) -> Vec<(&'static str, String)> {
        let mut values = ports.replacements();
        values.extend([
            ("127.0.0.1:3000", format!("127.0.0.1:{}", self.web_port)),
            ("owui", self.container.to_owned()),
            ("owui.example.ts.net", self.closed.to_owned()),
            // The gateway's name: this host's, so its DNS, port and health probes ask
            // nothing beyond loopback.
            ("leitstand.heimgewebe.home.arpa", "localhost".to_owned()),
            ("127.0.0.1:8080", self.closed.to_owned()),
            ("assistant.example.org", self.closed.to_owned()),
            ("app.example.org", self.closed.to_owned()),
            (
                "/var/log/nginx/access.log",
                self.access_log.display().to_string(),
            ),
            (
                "/home/ops/ai_stack/open-webui/docker-compose.yml",
                self.compose_file.display().to_string(),
            ),
            ("127.0.0.1:8000", self.camera_app.to_owned()),
            ("192.0.2.10", "127.0.0.1".to_owned()),
            ("192.0.2.50", "127.0.0.1".to_owned()),
            ("127.0.0.1:9095", format!("127.0.0.1:{}", self.sink_port)),
            (
                "/etc/prometheus/stackmedic-remediator.token",
                self.token_file.display().to_string(),
            ),
        ]);
        values
    }
}

/// A loop test's folder, deleted when dropped: `www/index.html`, the page the watched
/// container serves (see [`run_watched`]), and an empty `access.log` for the status-path probe.
///
/// # Panics
/// When the folder or its files cannot be written.
pub fn loop_dir(prefix: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap_or_else(|e| panic!("cannot create {}: {e}", www.display()));
    std::fs::write(www.join("index.html"), "<html>owui</html>\n")
        .unwrap_or_else(|e| panic!("cannot write the page: {e}"));
    std::fs::write(dir.path().join("access.log"), "")
        .unwrap_or_else(|e| panic!("cannot write the access log: {e}"));
    dir
}

/// The command of the watched container that plays Open WebUI: busybox `httpd` serving `/www`
/// on `127.0.0.1:<port>`.
pub fn watched_command(port: u16) -> Vec<String> {
    [
        "httpd".to_owned(),
        "-f".to_owned(),
        "-p".to_owned(),
        format!("127.0.0.1:{port}"),
        "-h".to_owned(),
        "/www".to_owned(),
    ]
    .into()
}

/// Runs the watched container `name`: busybox with `www` mounted read-only at `/www`, running
/// [`watched_command`].
///
/// # Panics
/// When Docker cannot run it.
pub fn run_watched(name: &str, www: &Path, port: u16) -> Container {
    let volume = format!("{}:/www:ro", www.display());
    let command = watched_command(port);
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    run_busybox(name, &["-v", &volume], &command)
}

/// The loop's four processes, started from an [`ExampleSet`]; stopped when dropped.
#[derive(Debug)]
pub struct Stack {
    /// stackmedic-exporter.
    pub exporter: Process,
    /// stackmedic-remediator.
    pub remediator: Process,
    /// Alertmanager.
    pub alertmanager: Process,
    /// Prometheus.
    pub prometheus: Process,
    /// The ports.
    pub ports: Ports,
    // Last: the processes stop before their folders go.
    dir: TempDir,
}

impl Stack {
    /// Starts the exporter and the remediator (both with the set's secrets in their environment),
    /// Alertmanager and Prometheus, each on its file of `set`, and waits until each is ready.
    /// `token_file` is where the set's Alertmanager reads the webhook token; the token of
    /// `stackmedic.env` is written there first, as `examples/stackmedic.env` says.
    ///
    /// # Panics
    /// When a program is missing or one of them is not ready within a minute.
    pub fn start(set: &ExampleSet, ports: Ports, token_file: &Path) -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("stackmedic-loop-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let env = set.env();
        let token = env
            .iter()
            .find(|(k, _)| k == "STACKMEDIC_WEBHOOK_TOKEN")
            .map(|(_, v)| v.clone())
            .expect("stackmedic.env sets STACKMEDIC_WEBHOOK_TOKEN");
        std::fs::write(token_file, format!("{token}\n"))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", token_file.display()));

        let ready = |mut p: Process, port: u16| -> Process {
            if !p.wait_ready(port, Duration::from_secs(60)) {
                let name = p.name().to_owned();
                panic!("{name} did not get ready on port {port}:\n{}", p.describe());
            }
            p
        };
        let mut cmd = Command::new(crate::bin_path("stackmedic-exporter"));
        cmd.arg(format!(
            "--config.file={}",
            set.path("examples/exporter.yml").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{}", ports.exporter))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let exporter = ready(Process::spawn("exporter", cmd, dir.path()), ports.exporter);

        let mut cmd = Command::new(crate::bin_path("stackmedic-remediator"));
        cmd.arg(format!(
            "--config.file={}",
            set.path("examples/remediator.yml").display()
        ))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("store").display()
        ))
        .arg(format!(
            "--web.listen-address=127.0.0.1:{}",
            ports.remediator
        ))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let remediator = ready(
            Process::spawn("remediator", cmd, dir.path()),
            ports.remediator,
        );

        let am = crate::require_program(
            &[crate::alertmanager::ALERTMANAGER],
            "prometheus-alertmanager",
        );
        let mut cmd = Command::new(am);
        cmd.arg(format!(
            "--config.file={}",
            set.path("alerts/alertmanager.example.yml").display()
        ))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("am").display()
        ))
        .arg(format!(
            "--web.listen-address=127.0.0.1:{}",
            ports.alertmanager
        ))
        .arg("--cluster.listen-address=");
        let alertmanager = ready(
            Process::spawn("alertmanager", cmd, dir.path()),
            ports.alertmanager,
        );

        let prom = crate::require_program(&[crate::prometheus::PROMETHEUS], "prometheus");
        let mut cmd = Command::new(prom);
        cmd.arg(format!(
            "--config.file={}",
            set.path("examples/prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!(
            "--web.listen-address=127.0.0.1:{}",
            ports.prometheus
        ));
        let prometheus = ready(
            Process::spawn("prometheus", cmd, dir.path()),
            ports.prometheus,
        );
        Stack {
            exporter,
            remediator,
            alertmanager,
            prometheus,
            ports,
            dir,
        }
    }

    /// `http://127.0.0.1:<remediator port><path>`.
    pub fn remediator_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.remediator)
    }

    /// `http://127.0.0.1:<Alertmanager port><path>`.
    pub fn alertmanager_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.alertmanager)
    }

    /// `http://127.0.0.1:<Prometheus port><path>`.
    pub fn prometheus_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.prometheus)
    }

    /// The alerts Prometheus holds (`GET /api/v1/alerts`), each with `labels` and `state`.
    pub fn prometheus_alerts(&self) -> Vec<serde_json::Value> {
        crate::http::get(&self.prometheus_url("/api/v1/alerts"))
            .ok()
            .and_then(|r| r.json().ok())
            .and_then(|v| v["data"]["alerts"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Whether Prometheus evaluated every rule group whose name matches `group` (all with
    /// `""`) at or after `unix` seconds (`GET /api/v1/rules`, each group's `lastEvaluation`).
    pub fn rule_groups_evaluated_after(&self, group: &str, unix: f64) -> bool {
        let Some(groups) = crate::http::get(&self.prometheus_url("/api/v1/rules"))
            .ok()
            .and_then(|r| r.json().ok())
            .and_then(|v| v["data"]["groups"].as_array().cloned())
        else {
            return false;
        };
        let chosen: Vec<&serde_json::Value> = groups
            .iter()
            .filter(|g| g["name"].as_str().is_some_and(|n| n.contains(group)))
            .collect();
        !chosen.is_empty()
            && chosen.iter().all(|g| {
                g["lastEvaluation"]
                    .as_str()
                    .and_then(|t| {
                        humantime::parse_rfc3339_weak(t.split('.').next().unwrap_or(t)).ok()
                    })
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .is_some_and(|t| t.as_secs_f64() >= unix)
            })
    }

    /// Whether Prometheus has `alertname` firing with `label` = `value`.
    pub fn firing(&self, alertname: &str, label: &str, value: &str) -> bool {
        self.prometheus_alerts().iter().any(|a| {
            a["labels"]["alertname"] == alertname
                && a["labels"][label] == value
                && a["state"] == "firing"
        })
    }

    /// The value of an instant query's first sample, if any.
    pub fn query(&self, expr: &str) -> Option<f64> {
        let url = format!(
            "{}?query={}",
            self.prometheus_url("/api/v1/query"),
            crate::http::encode_component(expr)
        );
        let v = crate::http::get(&url).ok()?.json().ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// The remediator's `GET /api/actions`.
    pub fn history(&self) -> serde_json::Value {
        crate::http::get(&self.remediator_url("/api/actions?limit=1000"))
            .and_then(|r| r.json())
            .unwrap_or_default()
    }

    /// Logs of all four, for failure messages.
    pub fn describe(&mut self) -> String {
        format!(
            "{}\n{}\n{}\n{}",
            self.exporter.describe(),
            self.remediator.describe(),
            self.alertmanager.describe(),
            self.prometheus.describe()
        )
    }

    /// The folder of the processes' logs and data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The repository's `examples/` folder.
pub fn examples_dir() -> PathBuf {
    repo_root().join("examples")
}

/// The shipped loop, set up as its tests use it: the example set copied with only its documented
/// values changed, the watched container serving its page, the on-call sink and the camera app's
/// recorder, and the four processes started, with Prometheus having seen the container run.
pub struct ShippedLoop {
    /// The watched container's name (a documented value).
    pub name: String,
    /// Its page, `http://127.0.0.1:<port>/`.
    pub web: String,
    /// The folder the container serves.
    pub www: PathBuf,
    /// Its port.
    pub web_port: u16,
    /// The receivers of the Alertmanager example (`/page`, `/ticket`, …).
    pub sink: crate::webhook_sink::WebhookSink,
    /// The camera app's admin API (the recorder fixture: the app has no real peer).
    pub camera_app: crate::admin_api::AdminApi,
    /// The four processes; `stack.dir()` has their files.
    pub stack: Stack,
    /// The watched container.
    pub container: Option<Container>,
    /// The copied example set.
    pub set: ExampleSet,
    // Last: the folder goes after everything that uses it.
    dir: TempDir,
}

impl ShippedLoop {
    /// Sets up and starts the shipped loop; `prefix` names its folder and container.
    ///
    /// # Panics
    /// When a peer cannot start, the container does not serve, or Prometheus never sees it.
    pub fn start(prefix: &str) -> ShippedLoop {
        crate::docker::ensure_docker();
        let dir = loop_dir(&format!("{prefix}-"));
        let d = dir.path();
        let name = crate::unique_name(&format!("{prefix}-owui"));
        let www = d.join("www");
        std::fs::create_dir(d.join("stack")).unwrap();
        let web_port = crate::free_port();
        let web = format!("http://127.0.0.1:{web_port}/");
        let sink = crate::webhook_sink::WebhookSink::start();
        let camera_app = crate::admin_api::AdminApi::start(&[]);
        let closed = format!("127.0.0.1:{}", crate::free_port());
        let ports = Ports::pick();
        let token_file = d.join("stackmedic-remediator.token");
        let mut values = LoopValues {
            container: &name,
            web_port,
            closed: &closed,
            access_log: &d.join("access.log"),
            compose_file: &d.join("stack/docker-compose.yml"),
            camera_app: &camera_app.url("").replace("http://", ""),
            sink_port: sink.port(),
            token_file: &token_file,
        }
        .replacements(&ports);
        values.push((
            "replace-with-a-long-random-token",
            crate::unique_name("loop-token"),
        ));
        let set = ExampleSet::copy(&values);
        let container = run_watched(&name, &www, web_port);
        let serves = || crate::http::get(&web).is_ok_and(|r| r.status == 200);
        assert!(
            crate::wait_until(Duration::from_secs(10), Duration::from_millis(100), serves),
            "the watched container does not serve {web}: {}",
            container.logs()
        );
        let mut stack = Stack::start(&set, ports, &token_file);
        let seen = format!("stackmedic_container_running{{container=\"{name}\"}} == 1");
        assert!(
            crate::wait_until(Duration::from_secs(60), Duration::from_millis(500), || {
                stack.query(&seen).is_some()
            }),
            "Prometheus never saw the container running:\n{}",
            stack.describe()
        );
        ShippedLoop {
            name,
            web,
            www,
            web_port,
            sink,
            camera_app,
            stack,
            container: Some(container),
            set,
            dir,
        }
    }

    /// The loop's folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

#[cfg(test)]
mod tests {
    use super::replace_word;

    #[test]
    fn whole_words_only() {
        let (t, n) = replace_word(
            "name_pattern: '^(owui|backend)$'\nexpected: [owui]\nowui-data owui.example.ts.net x-owui",
            "owui",
            "c1",
        );
        assert_eq!(
            t,
            "name_pattern: '^(c1|backend)$'\nexpected: [c1]\nowui-data c1.example.ts.net x-owui"
        );
        assert_eq!(n, 3);
        let (t, n) = replace_word("a: http://127.0.0.1:3000/", "127.0.0.1:3000", "127.0.0.1:9");
        assert_eq!((t.as_str(), n), ("a: http://127.0.0.1:9/", 1));
    }
}
