//! The container images `scripts/package.sh` built `FROM scratch` (nothing pulled): their
//! configuration (a non-root user, a health check on `/-/healthy`, the OCI labels), their
//! contents (the binary, the libraries it links with the loader, CA certificates, no shell),
//! and both running with `--network host`: the exporter with the Docker socket mounted sees a
//! container and reloads on SIGHUP, the remediator with a named volume accepts a webhook and
//! keeps its history in the volume for the next container; Docker reports both healthy, and
//! their processes run as the image's user.

use std::time::Duration;

use serde_json::Value;
use stackmedic_tests::docker::{
    busybox_image, docker, docker_ok, ensure_docker, run_busybox, Container,
};
use stackmedic_tests::metrics::{find, scrape};
use stackmedic_tests::packaging::{
    built_image, docker_socket_gid, run_ok, wait_healthy, BuiltImage, VERSION,
};
use stackmedic_tests::remediator::{alert, payload};
use stackmedic_tests::{free_port, http, unique_name, wait_until};

/// The image's user: not root, and the same as the uid that owns the store's directory.
const IMAGE_USER: &str = "10001:10001";

fn image_inspect(image: &BuiltImage) -> Value {
    let text = docker_ok(&["image", "inspect", &image.id]);
    let value: Value = serde_json::from_str(&text).unwrap();
    value[0].clone()
}

/// A Docker volume, removed when dropped (after the containers using it).
struct Volume(String);

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = docker(&["volume", "rm", "-f", &self.0]);
    }
}

/// `docker run -d --network host --name <name> <args…> <image>`, guarded.
fn run_image(name: &str, args: &[&str], image: &BuiltImage) -> Container {
    let _ = docker(&["rm", "-f", "-v", name]);
    let mut all = vec!["run", "-d", "--network", "host", "--name", name];
    all.extend_from_slice(args);
    all.push(&image.id);
    docker_ok(&all);
    Container::adopt(name)
}

/// The uids of the container's processes, as the host's `ps` sees them.
fn process_uids(container: &Container) -> Vec<String> {
    let top = docker_ok(&["top", container.name(), "-o", "pid,uid,comm"]);
    top.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

fn wait_metric(url: &str, name: &str, labels: &[(&str, &str)], value: f64, c: &Container) {
    let ok = wait_until(Duration::from_secs(40), Duration::from_millis(250), || {
        scrape(url)
            .ok()
            .and_then(|s| find(&s, name, labels))
            .is_some_and(|v| v == value)
    });
    assert!(
        ok,
        "{name}{labels:?} never became {value}; logs:\n{}",
        c.logs()
    );
}

#[test]
fn images_are_labelled_non_root_scratch_images() {
    ensure_docker();
    for binary in ["stackmedic-exporter", "stackmedic-remediator"] {
        let image = built_image(binary);
        let latest = docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &format!("{binary}:latest"),
        ]);
        assert_eq!(
            latest, image.id,
            "{binary}:latest is not the version's image"
        );
        let config = &image_inspect(&image)["Config"];
        assert_eq!(config["User"], IMAGE_USER, "{binary}");
        let health: Vec<&str> = config["Healthcheck"]["Test"]
            .as_array()
            .unwrap_or_else(|| panic!("{binary} has no health check: {config:#}"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            health,
            ["CMD", &format!("/usr/bin/{binary}"), "--healthcheck"]
        );
        assert_eq!(config["Entrypoint"][0], format!("/usr/bin/{binary}"));
        let labels = &config["Labels"];
        assert_eq!(labels["org.opencontainers.image.title"], binary);
        assert_eq!(labels["org.opencontainers.image.version"], VERSION);
        assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
        for key in ["revision", "source", "created", "description"] {
            let value = labels[format!("org.opencontainers.image.{key}")]
                .as_str()
                .unwrap_or_default();
            assert!(
                !value.is_empty(),
                "{binary}: label {key} is empty: {labels:#}"
            );
        }
        let source = labels["org.opencontainers.image.source"].as_str().unwrap();
        assert!(
            source.contains("://") || source.contains('@'),
            "source {source}"
        );

        // The filesystem: the binary, its loader and libraries, CA certificates; no shell.
        let name = unique_name("sm-pkg-export");
        docker_ok(&["create", "--name", &name, &image.id]);
        let created = Container::adopt(&name);
        let dir = tempfile::tempdir().unwrap();
        let tar = dir.path().join("rootfs.tar");
        docker_ok(&["export", "-o", &tar.display().to_string(), created.name()]);
        let listing = run_ok("tar", &["-tf", &tar.display().to_string()]);
        let files: Vec<&str> = listing.lines().collect();
        for wanted in [
            format!("usr/bin/{binary}"),
            "etc/ssl/certs/ca-certificates.crt".to_owned(),
            "etc/passwd".to_owned(),
            format!(
                "etc/stackmedic/{}.yml",
                binary.trim_start_matches("stackmedic-")
            ),
        ] {
            assert!(
                files.contains(&wanted.as_str()),
                "{binary}: no {wanted} in {files:#?}"
            );
        }
        assert!(
            files.iter().any(|f| f.contains("ld-linux")),
            "{binary}: no loader"
        );
        assert!(
            files.iter().any(|f| f.ends_with("/libc.so.6")),
            "{binary}: no libc"
        );
        for shell in ["bin/sh", "usr/bin/sh", "bin/busybox", "bin/bash"] {
            assert!(!files.contains(&shell), "{binary}: the image has {shell}");
        }
    }
}

#[test]
fn images_run_healthy_as_non_root_with_socket_and_volume() {
    ensure_docker();
    busybox_image();
    let gid = docker_socket_gid();
    let exporter_image = built_image("stackmedic-exporter");
    let remediator_image = built_image("stackmedic-remediator");

    // The exporter, with the Docker socket mounted read-only, sees a running container.
    let seen = run_busybox(&unique_name("sm-pkg-seen"), &[], &["sleep", "600"]);
    let port = free_port();
    let exporter = run_image(
        &unique_name("sm-pkg-exporter"),
        &[
            "--group-add",
            &gid,
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            "-e",
            &format!("STACKMEDIC_WEB_LISTEN_ADDRESS=127.0.0.1:{port}"),
        ],
        &exporter_image,
    );
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    wait_metric(
        &metrics,
        "stackmedic_container_running",
        &[("container", seen.name())],
        1.0,
        &exporter,
    );
    wait_metric(
        &metrics,
        "stackmedic_probe_success",
        &[("probe", "containers")],
        1.0,
        &exporter,
    );
    docker_ok(&["kill", "--signal", "HUP", exporter.name()]);
    let reloaded = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        exporter.logs().contains("configuration reloaded")
    });
    assert!(reloaded, "no reload after SIGHUP:\n{}", exporter.logs());

    // The remediator, with its store in a named volume, decides on a webhook (a dry run by
    // its default configuration) and still shows the decision from a new container.
    let volume = Volume(unique_name("sm-pkg-store"));
    docker_ok(&["volume", "create", &volume.0]);
    let opted = run_busybox(
        &unique_name("sm-pkg-opted"),
        &["--label", "stackmedic.restart=true"],
        &["sleep", "600"],
    );
    let started_before = opted.inspect()["State"]["StartedAt"].clone();
    let rport = free_port();
    let remediator_args = [
        "--group-add".to_owned(),
        gid.clone(),
        "-v".to_owned(),
        "/var/run/docker.sock:/var/run/docker.sock".to_owned(),
        "-v".to_owned(),
        format!("{}:/var/lib/stackmedic-remediator", volume.0),
        "-e".to_owned(),
        format!("STACKMEDIC_WEB_LISTEN_ADDRESS=127.0.0.1:{rport}"),
    ];
    let args: Vec<&str> = remediator_args.iter().map(String::as_str).collect();
    let base = format!("http://127.0.0.1:{rport}");
    let ready = |c: &Container| {
        let ok = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            http::get(&format!("{base}/-/ready")).is_ok_and(|r| r.status == 200)
        });
        assert!(ok, "the remediator did not become ready:\n{}", c.logs());
    };
    let history = || -> Vec<Value> {
        http::get(&format!("{base}/api/actions"))
            .ok()
            .and_then(|r| r.json().ok())
            .and_then(|h| h["actions"].as_array().cloned())
            .unwrap_or_default()
    };
    let mentions_opted =
        |actions: &[Value]| actions.iter().any(|a| a.to_string().contains(opted.name()));
    let first_name = unique_name("sm-pkg-remediator");
    let remediator = run_image(&first_name, &args, &remediator_image);
    ready(&remediator);
    let response = http::post_json(
        &format!("{base}/webhook"),
        &payload(vec![alert(
            "firing",
            &[("alertname", "ContainerDown"), ("container", opted.name())],
            "2026-11-22T10:00:00Z",
        )]),
    )
    .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let decided = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        mentions_opted(&history())
    });
    assert!(
        decided,
        "no decision on {}:\n{}",
        opted.name(),
        remediator.logs()
    );

    for container in [&exporter, &remediator] {
        wait_healthy(container, Duration::from_secs(90));
        assert_eq!(container.inspect()["Config"]["User"], IMAGE_USER);
        let uids = process_uids(container);
        assert!(
            !uids.is_empty() && uids.iter().all(|u| u == "10001"),
            "{} runs as {uids:?}",
            container.name()
        );
    }
    assert_eq!(
        opted.inspect()["State"]["StartedAt"],
        started_before,
        "the default configuration is a dry run: nothing may be restarted"
    );

    // The store's directory in the volume belongs to the image's user.
    let owner = docker_ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "-v",
        &format!("{}:/data", volume.0),
        busybox_image(),
        "stat",
        "-c",
        "%u %a",
        "/data",
    ]);
    assert_eq!(owner, "10001 750");

    drop(remediator);
    let second = run_image(&unique_name("sm-pkg-remediator"), &args, &remediator_image);
    ready(&second);
    assert!(
        mentions_opted(&history()),
        "the history did not survive a new container on the same volume:\n{}",
        second.logs()
    );
    drop(second);
    drop(volume);
}
