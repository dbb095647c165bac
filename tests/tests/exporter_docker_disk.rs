//! `docker_disk` probes against the real Docker Engine, with objects of this test's own: an
//! image made by `docker import`, a volume a container uses and one no container uses (holding
//! 100 KiB), and build cache made by a BuildKit build of a `FROM scratch` Dockerfile. The Engine
//! is shared with other tests, so the totals are checked as lower bounds; the per-volume series
//! are checked exactly, because only this test's names match its `report_unused_volumes`.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use stackmedic_tests::docker::{busybox_image, docker, docker_ok, ensure_docker, run_busybox};
use stackmedic_tests::exporter::{value, Exporter, WAIT};
use stackmedic_tests::metrics::{find, find_all};
use stackmedic_tests::unique_name;

/// The Docker CLI of Debian's `docker.io`, which builds with BuildKit by `DOCKER_BUILDKIT=1`
/// (newer CLIs need the buildx plugin for that), so the build leaves build cache behind.
const BUILDKIT_CLI: &str = "/usr/bin/docker";

/// The build cache record ids the Engine holds now.
fn build_cache_ids() -> BTreeSet<String> {
    let out = Command::new(BUILDKIT_CLI)
        .args([
            "system",
            "df",
            "-v",
            "--format",
            "{{range .BuildCache}}{{.ID}} {{end}}",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BUILDKIT_CLI} (Debian package docker.io): {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Removes what the test made, also when it fails half-way.
struct Cleanup {
    images: Vec<String>,
    volumes: Vec<String>,
    cache: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Images first: a build cache record an image still refers to is not pruned.
        for i in &self.images {
            let _ = docker(&["rmi", "-f", i]);
        }
        for id in &self.cache {
            let _ = Command::new(BUILDKIT_CLI)
                .args(["builder", "prune", "-f", "--filter", &format!("id={id}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for v in &self.volumes {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
    }
}

#[test]
fn disk_usage_of_images_volumes_and_build_cache() {
    ensure_docker();
    let busybox = busybox_image();
    let prefix = unique_name("sm-df");
    let image = format!("{prefix}:imported");
    let built = format!("{prefix}:built");
    let used = format!("{prefix}-used");
    let unused = format!("{prefix}-unused");
    let mut cleanup = Cleanup {
        images: vec![image.clone(), built.clone()],
        volumes: vec![used.clone(), unused.clone()],
        cache: Vec::new(),
    };

    // An image of 300 KiB from a tarball.
    let work = tempfile::tempdir().expect("tempdir");
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir(&rootfs).expect("mkdir");
    std::fs::write(
        rootfs.join("blob"),
        stackmedic_tests::pseudo_random_bytes(300 * 1024, 3),
    )
    .expect("write");
    let tarball = work.path().join("rootfs.tar");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(tar.success());
    docker_ok(&["import", &tarball.display().to_string(), &image]);

    // Two volumes: one mounted by a running container, one holding 100 KiB and used by none.
    docker_ok(&["volume", "create", &used]);
    docker_ok(&["volume", "create", &unused]);
    docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{unused}:/data"),
        busybox,
        "sh",
        "-c",
        "head -c 102400 /dev/urandom > /data/blob",
    ]);
    let user = run_busybox(
        &format!("{prefix}-user"),
        &["-v", &format!("{used}:/data")],
        &["sleep", "300"],
    );

    // Build cache: a BuildKit build from scratch that copies 200 KiB.
    let before = build_cache_ids();
    let context = work.path().join("context");
    std::fs::create_dir(&context).expect("mkdir");
    std::fs::write(
        context.join("blob"),
        stackmedic_tests::pseudo_random_bytes(200 * 1024, 4),
    )
    .expect("write");
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY blob /blob\n",
    )
    .expect("write");
    let build = Command::new(BUILDKIT_CLI)
        .env("DOCKER_BUILDKIT", "1")
        .args(["build", "--quiet", "-t", &built])
        .arg(&context)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BUILDKIT_CLI} build: {e}"));
    cleanup.cache = build_cache_ids().difference(&before).cloned().collect();
    assert!(
        build.status.success(),
        "docker build failed: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    assert!(!cleanup.cache.is_empty(), "the build left no build cache");

    let config = format!(
        "probes:\n\
         - name: docker-disk\n  interval: 3s\n  timeout: 2900ms\n  docker_disk: {{report_unused_volumes: '^{prefix}-', max_reported_volumes: 5}}\n\
         - name: no-engine\n  interval: 3s\n  timeout: 2900ms\n  docker_disk: {{host: 'unix:///nonexistent/docker.sock'}}\n"
    );
    let mut exporter = Exporter::start(&config);
    // The Engine computes /system/df on demand, which takes seconds on a busy machine: a run
    // may time out before one answers. Wait for an answer, not for the first run.
    let s = exporter.wait_for(
        "the Engine's disk usage, and the missing engine's failure",
        WAIT * 3,
        |s| {
            find(s, "stackmedic_probe_success", &[("probe", "docker-disk")]) == Some(1.0)
                && find(s, "stackmedic_probe_success", &[("probe", "no-engine")]).is_some()
        },
    );
    let p = [("probe", "docker-disk")];
    let v = |name: &str, t: &str| value(&s, name, &[("probe", "docker-disk"), ("type", t)]);
    assert_eq!(value(&s, "stackmedic_probe_success", &p), 1.0);
    assert_eq!(value(&s, "stackmedic_docker_up", &p), 1.0);

    // Exactly this test's unused volume is named, with its 100 KiB; the used one is not.
    let named = find_all(&s, "stackmedic_docker_volume_unused_bytes", &p);
    assert_eq!(named.len(), 1, "{named:?}");
    assert_eq!(named[0].label("volume"), Some(unused.as_str()));
    assert_eq!(named[0].value, 102_400.0);
    assert!(value(&s, "stackmedic_docker_volumes_unused", &p) >= 1.0);
    assert!(value(&s, "stackmedic_docker_volumes_unused_bytes", &p) >= 102_400.0);
    assert!(v("stackmedic_docker_disk_reclaimable_bytes", "volumes") >= 102_400.0);
    assert!(v("stackmedic_docker_disk_objects", "volumes") >= 2.0);
    assert!(v("stackmedic_docker_disk_active_objects", "volumes") >= 1.0);

    // The images: the imported 300 KiB (no container: reclaimable) and the built one.
    assert!(v("stackmedic_docker_disk_bytes", "images") >= 500.0 * 1024.0);
    assert!(v("stackmedic_docker_disk_reclaimable_bytes", "images") >= 300.0 * 1024.0);
    assert!(v("stackmedic_docker_disk_objects", "images") >= 3.0);
    assert!(v("stackmedic_docker_disk_active_objects", "images") >= 1.0);
    assert!(v("stackmedic_docker_disk_active_objects", "containers") >= 1.0);

    // The build's cache: 200 KiB copied, not in use any more.
    assert!(v("stackmedic_docker_disk_bytes", "build_cache") >= 200.0 * 1024.0);
    assert!(v("stackmedic_docker_disk_reclaimable_bytes", "build_cache") >= 200.0 * 1024.0);
    for t in ["images", "containers", "volumes", "build_cache"] {
        assert!(
            v("stackmedic_docker_disk_reclaimable_bytes", t)
                <= v("stackmedic_docker_disk_bytes", t),
            "{t}: more reclaimable than used"
        );
    }

    // An Engine that is not there: docker_up 0, reason connect, no figures.
    let n = [("probe", "no-engine")];
    assert_eq!(value(&s, "stackmedic_docker_up", &n), 0.0);
    assert_eq!(
        value(
            &s,
            "stackmedic_probe_failure_reason",
            &[("probe", "no-engine"), ("reason", "connect")]
        ),
        1.0
    );
    assert!(find_all(&s, "stackmedic_docker_disk_bytes", &n).is_empty());

    // Removing the volume removes its series at the next run.
    docker_ok(&["volume", "rm", &unused]);
    exporter.wait_for("the removed volume is no longer reported", WAIT, |s| {
        find_all(s, "stackmedic_docker_volume_unused_bytes", &p).is_empty()
    });
    // The container goes before its volume can.
    drop(user);
    drop(cleanup);
}
