//! `deploy/compose.yml` with the images `scripts/package.sh` built, brought up with
//! `docker-compose` (v1, the Compose installed here) under a project name of its own and free
//! ports: both services start, the exporter reads the Docker socket it gets mounted and the
//! remediator answers a webhook, and Docker reports both healthy. The least-privilege
//! alternative, `deploy/compose.socket-proxy.yml`, needs an image that cannot be pulled here: its
//! file is checked by `docker-compose config`, and its allow-lists against the Engine API paths
//! the binaries call and the ones they must not.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use stackmedic_tests::alerting::{read_repo_file, repo_root};
use stackmedic_tests::docker::{docker_ok, ensure_docker, run_busybox, Container};
use stackmedic_tests::metrics::{find, scrape};
use stackmedic_tests::packaging::{built_image, docker_socket_gid, wait_healthy, VERSION};
use stackmedic_tests::remediator::{alert, payload};
use stackmedic_tests::{free_port, http, require_program, unique_name, wait_until};

/// `docker-compose <args>` in the repository root with `env`, whatever the exit status.
fn compose(args: &[&str], env: &[(&str, String)]) -> Output {
    let program = require_program(&["/usr/bin/docker-compose"], "docker-compose");
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .env_remove("DOCKER_GID");
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker-compose {args:?}: {e}"))
}

fn compose_ok(args: &[&str], env: &[(&str, String)]) -> String {
    let output = compose(args, env);
    assert!(
        output.status.success(),
        "docker-compose {args:?} failed: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A Compose project, taken down with its volumes when dropped.
struct Project {
    name: String,
    env: Vec<(&'static str, String)>,
}

impl Project {
    fn args<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["-p", self.name.as_str(), "-f", "deploy/compose.yml"];
        args.extend_from_slice(rest);
        args
    }

    /// The container of `service`, guarded.
    fn container(&self, service: &str) -> Container {
        let id = compose_ok(&self.args(&["ps", "-q", service]), &self.env);
        let id = id.trim();
        assert!(!id.is_empty(), "no container for {service}");
        let name = docker_ok(&["inspect", "--format", "{{.Name}}", id]);
        Container::adopt(name.trim_start_matches('/'))
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = compose(
            &self.args(&["down", "--volumes", "--remove-orphans"]),
            &self.env,
        );
    }
}

#[test]
fn compose_file_starts_both_services_from_the_built_images() {
    ensure_docker();
    built_image("stackmedic-exporter");
    built_image("stackmedic-remediator");
    let seen = run_busybox(&unique_name("sm-pkg-compose-seen"), &[], &["sleep", "600"]);
    let (eport, rport) = (free_port(), free_port());
    // Compose v1 keeps letters and digits of a project name.
    let name = unique_name("smpkg").replace('-', "");
    let project = Project {
        name,
        env: vec![
            ("DOCKER_GID", docker_socket_gid()),
            ("STACKMEDIC_TAG", VERSION.to_owned()),
            (
                "STACKMEDIC_EXPORTER_LISTEN_ADDRESS",
                format!("127.0.0.1:{eport}"),
            ),
            (
                "STACKMEDIC_REMEDIATOR_LISTEN_ADDRESS",
                format!("127.0.0.1:{rport}"),
            ),
        ],
    };
    compose_ok(&project.args(&["up", "-d"]), &project.env);
    let exporter = project.container("stackmedic-exporter");
    let remediator = project.container("stackmedic-remediator");

    let metrics = format!("http://127.0.0.1:{eport}/metrics");
    let sees = wait_until(Duration::from_secs(40), Duration::from_millis(250), || {
        scrape(&metrics).ok().is_some_and(|s| {
            find(
                &s,
                "stackmedic_container_running",
                &[("container", seen.name())],
            ) == Some(1.0)
        })
    });
    assert!(
        sees,
        "the exporter does not see {}:\n{}",
        seen.name(),
        exporter.logs()
    );

    let base = format!("http://127.0.0.1:{rport}");
    let ready = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        http::get(&format!("{base}/-/ready")).is_ok_and(|r| r.status == 200)
    });
    assert!(ready, "the remediator is not ready:\n{}", remediator.logs());
    let response = http::post_json(
        &format!("{base}/webhook"),
        &payload(vec![alert(
            "firing",
            &[("alertname", "ContainerDown"), ("container", seen.name())],
            "2026-11-22T10:00:00Z",
        )]),
    )
    .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let metrics = http::get(&format!("{base}/metrics")).unwrap();
    assert_eq!(metrics.status, 200);

    for container in [&exporter, &remediator] {
        wait_healthy(container, Duration::from_secs(90));
        let inspect = container.inspect();
        assert_eq!(inspect["Config"]["User"], "10001:10001");
        assert_eq!(inspect["HostConfig"]["ReadonlyRootfs"], true);
        assert_eq!(inspect["HostConfig"]["NetworkMode"], "host");
    }
    let mounts = exporter.inspect()["Mounts"].clone();
    let socket = mounts
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/var/run/docker.sock")
        .unwrap_or_else(|| panic!("no socket mount: {mounts:#}"));
    assert_eq!(
        socket["RW"], false,
        "the exporter's socket is mounted read-only"
    );
}

#[test]
fn compose_file_requires_the_socket_group() {
    let output = compose(&["-f", "deploy/compose.yml", "config"], &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("set DOCKER_GID to the group id of /var/run/docker.sock"),
        "{stderr}"
    );
}

#[test]
fn socket_proxy_alternative_is_valid_and_allows_only_what_is_needed() {
    let gid = ("DOCKER_GID", "4242".to_owned());
    let proxy = compose_ok(
        &["-f", "deploy/compose.socket-proxy.yml", "config"],
        std::slice::from_ref(&gid),
    );
    // Both sockets the proxies create are the ones compose.yml is then pointed at.
    let with_proxy = compose_ok(
        &["-f", "deploy/compose.yml", "config"],
        &[
            gid,
            (
                "STACKMEDIC_EXPORTER_DOCKER_SOCKET",
                "/run/stackmedic-docker-proxy/exporter.sock".to_owned(),
            ),
            (
                "STACKMEDIC_REMEDIATOR_DOCKER_SOCKET",
                "/run/stackmedic-docker-proxy/remediator.sock".to_owned(),
            ),
        ],
    );
    for short in ["exporter", "remediator"] {
        let socket = format!("/run/stackmedic-docker-proxy/{short}.sock");
        assert!(
            proxy.contains(&format!("-proxysocketendpoint={socket}")),
            "{proxy}"
        );
        assert!(
            with_proxy.contains(&format!("{socket}:/var/run/docker.sock")),
            "{with_proxy}"
        );
    }
    assert!(read_repo_file("deploy/compose.yml").contains("compose.socket-proxy.yml"));

    // The allow-lists, anchored as the proxy anchors them, against the paths of the Engine API.
    let file = read_repo_file("deploy/compose.socket-proxy.yml");
    let rules = |service: &str| -> Vec<(String, regex::Regex)> {
        let start = file
            .find(&format!("  {service}:"))
            .unwrap_or_else(|| panic!("no service {service}"));
        let section = &file[start..];
        let end = section[3..]
            .find("\n  stackmedic-")
            .map_or(section.len(), |e| e + 3);
        section[..end]
            .lines()
            .filter_map(|line| {
                let item = line.trim().trim_start_matches("- ").trim_matches('\'');
                let (method, pattern) = item.strip_prefix("-allow")?.split_once('=')?;
                let anchored = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
                Some((method.to_owned(), anchored))
            })
            .collect()
    };
    let allowed = |rules: &[(String, regex::Regex)], method: &str, path: &str| {
        rules.iter().any(|(m, r)| m == method && r.is_match(path))
    };
    let exporter = rules("stackmedic-docker-proxy-exporter");
    let remediator = rules("stackmedic-docker-proxy-remediator");
    for path in [
        "/v1.41/containers/json",
        "/v1.44/containers/owui/json",
        "/containers/json",
        "/version",
        "/v1.41/_ping",
    ] {
        assert!(allowed(&exporter, "GET", path), "exporter GET {path}");
        assert!(allowed(&remediator, "GET", path), "remediator GET {path}");
    }
    for path in ["/v1.41/containers/owui/restart", "/containers/owui/start"] {
        assert!(allowed(&remediator, "POST", path), "remediator POST {path}");
        assert!(!allowed(&exporter, "POST", path), "exporter POST {path}");
    }
    for (method, path) in [
        ("POST", "/v1.41/containers/create"),
        ("POST", "/v1.41/containers/owui/exec"),
        ("POST", "/v1.41/containers/owui/stop"),
        ("POST", "/v1.41/containers/owui/restart/../exec"),
        ("DELETE", "/v1.41/containers/owui"),
        ("GET", "/v1.41/images/json"),
        ("GET", "/v1.41/containers/owui/logs"),
        ("GET", "/v1.41/containers/owui/archive"),
        ("POST", "/v1.41/volumes/create"),
    ] {
        assert!(
            !allowed(&exporter, method, path),
            "exporter {method} {path}"
        );
        assert!(
            !allowed(&remediator, method, path),
            "remediator {method} {path}"
        );
    }
}
