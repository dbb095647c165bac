//! HLS probe against a real live stream: ffmpeg (`-f lavfi -i testsrc … -f hls`) writes into a
//! folder served by a real nginx; the stream is read over HTTP (with the newest segment fetched)
//! and from the file. Killing ffmpeg turns the stream stale within 1.5 × target duration plus
//! one interval; starting it again turns it fresh and counts a media-sequence regression. Also a
//! VOD playlist with `#EXT-X-ENDLIST` (never stale, however old), a live playlist last written an
//! hour ago (stale at the first observation), a malformed playlist, a missing one, and a master
//! playlist followed to its variants (and capped by `max_variants`). Redirects are followed only
//! within the playlist's origin or to an `allowed_hosts` host.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use stackmedic_tests::exporter::{value, Exporter, WAIT};
use stackmedic_tests::ffmpeg::live_hls;
use stackmedic_tests::metrics::{find, Sample};
use stackmedic_tests::nginx::Nginx;

const SUCCESS: &str = "stackmedic_probe_success";
const REASON: &str = "stackmedic_probe_failure_reason";
const STALE: &str = "stackmedic_hls_stale";
const STALE_AFTER: &str = "stackmedic_hls_stale_after_seconds";
const SEGMENTS: &str = "stackmedic_hls_segments";
const SEQUENCE: &str = "stackmedic_hls_media_sequence";
const TARGET: &str = "stackmedic_hls_target_duration_seconds";
const END_LIST: &str = "stackmedic_hls_end_list";
const REGRESSIONS: &str = "stackmedic_hls_sequence_regressions_total";
const FETCHABLE: &str = "stackmedic_hls_newest_segment_fetchable";
const UP: &str = "stackmedic_hls_playlist_up";
const LAST_ADDED: &str = "stackmedic_hls_last_segment_added_timestamp_seconds";

/// The probe interval of the live stream probes.
const INTERVAL: Duration = Duration::from_millis(500);

fn set_mtime(path: &Path, ago: Duration) {
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open for mtime");
    f.set_modified(SystemTime::now() - ago).expect("set mtime");
}

fn reason(s: &[Sample], probe: &str) -> Option<String> {
    s.iter()
        .find(|x| x.matches(REASON, &[("probe", probe)]) && x.value == 1.0)
        .and_then(|x| x.label("reason").map(str::to_string))
}

#[test]
fn live_stream_turns_stale_and_fresh_again() {
    let nginx = Nginx::start("location / { root {www}; }");
    let live_dir: PathBuf = nginx.www().join("live");
    std::fs::create_dir_all(&live_dir).expect("live dir");
    let (mut ffmpeg, playlist) = live_hls(&live_dir, "live");

    let vod = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:4.0,\nv0.ts\n#EXTINF:4.0,\nv1.ts\n#EXT-X-ENDLIST\n";
    set_mtime(&nginx.write("www/vod.m3u8", vod), Duration::from_secs(3600));
    let dead = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:40\n#EXTINF:2.0,\nd40.ts\n#EXTINF:2.0,\nd41.ts\n";
    set_mtime(
        &nginx.write("www/dead.m3u8", dead),
        Duration::from_secs(3600),
    );
    nginx.write(
        "www/malformed.m3u8",
        "#EXTM3U\n#EXT-X-TARGETDURATION:soon\n#EXTINF:x,\n",
    );
    nginx.write(
        "www/master.m3u8",
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=200000,RESOLUTION=160x120\nlive/live.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nvod.m3u8\n",
    );

    let config = format!(
        "probes:
  - name: live
    interval: 500ms
    hls:
      url: {live_url}
      check_newest_segment: true
  - name: live-file
    interval: 500ms
    hls:
      path: {live_path}
      check_newest_segment: true
  - name: vod
    interval: 500ms
    hls: {{url: {vod_url}}}
  - name: dead
    interval: 500ms
    hls: {{url: {dead_url}}}
  - name: malformed
    interval: 500ms
    hls: {{url: {malformed_url}}}
  - name: missing
    interval: 500ms
    hls: {{url: {missing_url}}}
  - name: master
    interval: 500ms
    hls: {{url: {master_url}}}
  - name: master-capped
    interval: 500ms
    hls: {{url: {master_url}, max_variants: 1}}
",
        live_url = nginx.url("/live/live.m3u8"),
        live_path = playlist.display(),
        vod_url = nginx.url("/vod.m3u8"),
        dead_url = nginx.url("/dead.m3u8"),
        malformed_url = nginx.url("/malformed.m3u8"),
        missing_url = nginx.url("/nothing-here.m3u8"),
        master_url = nginx.url("/master.m3u8"),
    );
    let mut exporter = Exporter::start(&config);

    // Live: fresh, with segments, the newest one fetchable, over HTTP and from the file. The
    // stream has to run past its window of 5 segments, so its restart is a regression.
    // Every probe in its state: on a busy machine a run may time out first, and a later run
    // shows what the playlist says.
    let s = exporter.wait_for(
        "the live stream fresh and past its first window, the others in their states",
        WAIT,
        |s| {
            ["live", "live-file"].iter().all(|p| {
                find(s, SUCCESS, &[("probe", p)]) == Some(1.0)
                    && find(s, SEQUENCE, &[("probe", p)]).is_some_and(|v| v >= 2.0)
            }) && find(s, SUCCESS, &[("probe", "vod")]) == Some(1.0)
                && reason(s, "dead").as_deref() == Some("stale")
                && reason(s, "malformed").as_deref() == Some("parse")
                && reason(s, "missing").as_deref() == Some("not_found")
        },
    );
    for p in ["live", "live-file"] {
        let l = [("probe", p)];
        assert_eq!(value(&s, STALE, &l), 0.0, "{p}");
        assert_eq!(value(&s, END_LIST, &l), 0.0, "{p}");
        assert_eq!(value(&s, FETCHABLE, &l), 1.0, "{p}");
        assert!(value(&s, SEGMENTS, &l) >= 1.0, "{p}");
        let td = value(&s, TARGET, &l);
        assert!((1.0..=2.0).contains(&td), "{p}: target duration {td}");
        assert_eq!(value(&s, STALE_AFTER, &l), 1.5 * td, "{p}");
    }

    // VOD: an hour old, never stale. Dead live playlist: stale at the first observation.
    assert_eq!(value(&s, SUCCESS, &[("probe", "vod")]), 1.0);
    assert_eq!(value(&s, END_LIST, &[("probe", "vod")]), 1.0);
    assert_eq!(value(&s, STALE, &[("probe", "vod")]), 0.0);
    assert_eq!(value(&s, SEGMENTS, &[("probe", "vod")]), 2.0);
    assert_eq!(value(&s, STALE, &[("probe", "dead")]), 1.0);
    assert_eq!(reason(&s, "dead").as_deref(), Some("stale"));
    assert_eq!(value(&s, SEQUENCE, &[("probe", "dead")]), 40.0);
    let age = stackmedic_common::reload::unix_now() - value(&s, LAST_ADDED, &[("probe", "dead")]);
    assert!(
        age > 3000.0,
        "the mtime stands in for the first observation: {age}"
    );
    assert_eq!(reason(&s, "malformed").as_deref(), Some("parse"));
    assert_eq!(value(&s, UP, &[("probe", "malformed")]), 0.0);
    assert_eq!(reason(&s, "missing").as_deref(), Some("not_found"));

    // Master: both variants followed and labelled by their URI; the cap reads only the first.
    let s = exporter.wait_for("the master playlist's variants", WAIT, |s| {
        find(s, SUCCESS, &[("probe", "master")]) == Some(1.0)
    });
    assert_eq!(
        value(&s, "stackmedic_hls_variants", &[("probe", "master")]),
        2.0
    );
    let live_variant = [("probe", "master"), ("variant", "live/live.m3u8")];
    let vod_variant = [("probe", "master"), ("variant", "vod.m3u8")];
    assert_eq!(value(&s, STALE, &live_variant), 0.0);
    assert_eq!(value(&s, END_LIST, &vod_variant), 1.0);
    assert!(value(&s, SEGMENTS, &live_variant) >= 1.0);
    let capped = [("probe", "master-capped")];
    assert_eq!(value(&s, "stackmedic_hls_variants", &capped), 2.0);
    assert!(find(
        &s,
        SEGMENTS,
        &[("probe", "master-capped"), ("variant", "live/live.m3u8")]
    )
    .is_some());
    assert_eq!(
        find(
            &s,
            SEGMENTS,
            &[("probe", "master-capped"), ("variant", "vod.m3u8")]
        ),
        None
    );

    // Kill ffmpeg. From the file, whose mtime dates the last segment, the stream is stale within
    // 1.5 × target duration plus one interval; over HTTP, where a segment is dated when the
    // probe first sees it, within one more interval. Both get 500 ms for a run and a scrape on
    // a busy machine.
    let td = value(&s, TARGET, &[("probe", "live")]);
    let sequence_before = value(&s, SEQUENCE, &[("probe", "live")]);
    let threshold = Duration::from_secs_f64(1.5 * td);
    let slack = Duration::from_millis(500);
    ffmpeg.kill();
    let killed = Instant::now();
    let watched = [
        ("live-file", None, threshold + INTERVAL + slack),
        ("live", None, threshold + 2 * INTERVAL + slack),
        (
            "master",
            Some("live/live.m3u8"),
            threshold + 2 * INTERVAL + slack,
        ),
    ];
    let mut first_stale: Vec<Option<Duration>> = vec![None; watched.len()];
    let s = exporter.wait_for("the live stream stale after killing ffmpeg", WAIT, |s| {
        for (i, (probe, variant, _)) in watched.iter().enumerate() {
            let mut labels = vec![("probe", *probe)];
            if let Some(v) = variant {
                labels.push(("variant", v));
            }
            if first_stale[i].is_none() && find(s, STALE, &labels) == Some(1.0) {
                first_stale[i] = Some(killed.elapsed());
            }
        }
        first_stale.iter().all(Option::is_some)
    });
    // How soon a stale stream shows depends on when runs and scrapes happen on a busy machine
    // (printed, not asserted: figures belong in benchmarks). What a run decides does not: a
    // playlist is stale only once its newest segment is older than 1.5 × target duration at
    // the run, by the exporter's own clock.
    for ((probe, variant, bound), took) in watched.iter().zip(&first_stale) {
        let took = took.expect("seen stale");
        eprintln!("{probe}: stale {took:?} after the kill (on an idle machine within {bound:?})");
        if variant.is_none() {
            let l = [("probe", *probe)];
            let ran = value(&s, "stackmedic_probe_last_run_timestamp_seconds", &l);
            let added = value(&s, LAST_ADDED, &l);
            assert!(
                ran - added >= threshold.as_secs_f64(),
                "{probe}: stale at a run {:.2} s after its newest segment, under 1.5 × target duration ({threshold:?})",
                ran - added
            );
        }
    }
    for p in ["live", "live-file"] {
        assert_eq!(reason(&s, p).as_deref(), Some("stale"), "{p}");
        assert_eq!(value(&s, SUCCESS, &[("probe", p)]), 0.0, "{p}");
    }

    // Start it again: fresh, and the media sequence that went back to 0 is a regression.
    let (_ffmpeg, _) = live_hls(&live_dir, "live");
    let s = exporter.wait_for("the live stream fresh again", WAIT, |s| {
        ["live", "live-file"].iter().all(|p| {
            find(s, STALE, &[("probe", p)]) == Some(0.0)
                && find(s, SUCCESS, &[("probe", p)]) == Some(1.0)
        })
    });
    for p in ["live", "live-file"] {
        let l = [("probe", p)];
        assert!(value(&s, SEQUENCE, &l) < sequence_before, "{p}");
        assert_eq!(value(&s, REGRESSIONS, &l), 1.0, "{p}");
    }
}

/// A finished playlist (never stale) whose last segment is `last`.
fn playlist_ending_in(last: &str) -> String {
    format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXTINF:2.0,\nseg0.ts\n#EXTINF:2.0,\n{last}\n#EXT-X-ENDLIST\n"
    )
}

#[test]
fn playlist_uris_stay_on_the_playlists_host_or_in_its_folder() {
    // One nginx answering on two loopback addresses: 127.0.0.2 stands in for another host.
    let nginx = Nginx::start(
        "listen 127.0.0.1:{port};\nlisten 127.0.0.2:{port};\nlocation / { root {www}; }\n",
    );
    let port = nginx.port();
    nginx.write("www/seg0.ts", "segment");
    nginx.write("www/seg1.ts", "segment");
    nginx.write("www/passwd.m3u8", playlist_ending_in("file:///etc/passwd"));
    nginx.write(
        "www/nothing.m3u8",
        playlist_ending_in("file:///nonexistent/stackmedic-test.ts"),
    );
    let other = format!("http://127.0.0.2:{port}/seg1.ts");
    nginx.write("www/other.m3u8", playlist_ending_in(&other));
    nginx.write(
        "www/master.m3u8",
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nfile:///etc/hostname\n",
    );
    nginx.write("www/good.m3u8", playlist_ending_in("seg1.ts"));

    // A local folder: a segment next to the playlist, one above it, one behind a symlink.
    let local = tempfile::tempdir().expect("tempdir");
    let folder = local.path().join("cam");
    std::fs::create_dir(&folder).expect("mkdir");
    for f in ["seg0.ts", "seg1.ts"] {
        std::fs::write(folder.join(f), "segment").expect("write");
    }
    std::fs::write(local.path().join("outside.ts"), "secret").expect("write");
    std::os::unix::fs::symlink("/etc/passwd", folder.join("link.ts")).expect("symlink");
    let write_local = |name: &str, last: &str| {
        std::fs::write(folder.join(name), playlist_ending_in(last)).expect("write");
    };
    write_local("good.m3u8", "seg1.ts");
    write_local("up.m3u8", "../outside.ts");
    write_local("abs.m3u8", "/etc/passwd");
    write_local("link.m3u8", "link.ts");

    let url = |p: &str| format!("http://127.0.0.1:{port}/{p}");
    let probe = |name: &str, source: &str, extra: &str| {
        format!(
            "  - name: {name}\n    interval: 1s\n    timeout: 900ms\n    hls:\n      {source}\n      check_newest_segment: true\n{extra}"
        )
    };
    let file = |p: &str| format!("path: {}", folder.join(p).display());
    let config = [
        "probes:\n".to_string(),
        probe("passwd", &format!("url: {}", url("passwd.m3u8")), ""),
        probe("nothing", &format!("url: {}", url("nothing.m3u8")), ""),
        probe("other-host", &format!("url: {}", url("other.m3u8")), ""),
        probe(
            "allowed-host",
            &format!("url: {}", url("other.m3u8")),
            "      allowed_hosts: [127.0.0.2]\n",
        ),
        probe("master", &format!("url: {}", url("master.m3u8")), ""),
        probe("good", &format!("url: {}", url("good.m3u8")), ""),
        probe("local-good", &file("good.m3u8"), ""),
        probe("local-up", &file("up.m3u8"), ""),
        probe("local-abs", &file("abs.m3u8"), ""),
        probe("local-link", &file("link.m3u8"), ""),
    ]
    .concat();
    let mut exporter = Exporter::start(&config);
    let all = [
        "passwd",
        "nothing",
        "other-host",
        "allowed-host",
        "master",
        "good",
        "local-good",
        "local-up",
        "local-abs",
        "local-link",
    ];
    // Every probe in its state (a run that timed out on a busy machine is followed by one
    // that did not).
    let s = exporter.wait_for("every probe in its state", WAIT, |s| {
        all.iter()
            .all(|p| find(s, SUCCESS, &[("probe", p)]).is_some())
            && ["good", "allowed-host", "local-good"]
                .iter()
                .all(|p| find(s, SUCCESS, &[("probe", p)]) == Some(1.0))
            && [
                "passwd",
                "nothing",
                "other-host",
                "local-up",
                "local-abs",
                "local-link",
                "master",
            ]
            .iter()
            .all(|p| reason(s, p).as_deref() == Some("parse"))
    });
    for p in ["good", "allowed-host", "local-good"] {
        assert_eq!(value(&s, FETCHABLE, &[("probe", p)]), 1.0, "{p}");
        assert_eq!(value(&s, SUCCESS, &[("probe", p)]), 1.0, "{p}");
    }
    // Not followed: the segment is not fetchable, and the run fails as a bad playlist.
    for p in [
        "passwd",
        "nothing",
        "other-host",
        "local-up",
        "local-abs",
        "local-link",
    ] {
        assert_eq!(value(&s, FETCHABLE, &[("probe", p)]), 0.0, "{p}");
        assert_eq!(value(&s, SUCCESS, &[("probe", p)]), 0.0, "{p}");
        assert_eq!(reason(&s, p).as_deref(), Some("parse"), "{p}");
    }
    // A variant that is a local file is not read.
    assert_eq!(
        value(
            &s,
            UP,
            &[("probe", "master"), ("variant", "file:///etc/hostname")]
        ),
        0.0
    );
    assert_eq!(reason(&s, "master").as_deref(), Some("parse"));
    // The landing page tells why, and is no oracle for local files: whether the file exists
    // makes no difference to what it shows.
    let page = stackmedic_tests::http::get(&exporter.url("/"))
        .expect("landing page")
        .text();
    assert!(page.contains("leaves http(s)"), "{page}");
    assert!(
        page.contains("not the playlist&#39;s") || page.contains("not the playlist's"),
        "{page}"
    );
    assert!(
        page.contains("out of the playlist&#39;s folder")
            || page.contains("out of the playlist's folder"),
        "{page}"
    );
    assert!(!page.contains("No such file"), "{page}");
}

#[test]
fn redirects_stay_within_the_playlists_origin() {
    // The other server listens on a second loopback address too, which stands in for a host
    // listed in allowed_hosts.
    let other = Nginx::start(
        "listen 127.0.0.1:{port};\nlisten 127.0.0.2:{port};\nlocation / { root {www}; }\n",
    );
    let op = other.port();
    other.write("www/live.m3u8", playlist_ending_in("seg1.ts"));
    other.write("www/cdn-live.m3u8", playlist_ending_in("seg1.ts"));
    other.write("www/seg1.ts", "segment");
    let nginx = Nginx::start(&format!(
        "location / {{ root {{www}}; }}\n\
         location = /moved.m3u8 {{ return 302 http://127.0.0.1:{op}/live.m3u8; }}\n\
         location = /cdn.m3u8 {{ return 302 http://127.0.0.2:{op}/cdn-live.m3u8; }}\n\
         location = /same.m3u8 {{ return 302 /good.m3u8; }}\n\
         location = /moved-seg.ts {{ return 302 http://127.0.0.1:{op}/seg1.ts; }}\n"
    ));
    nginx.write("www/good.m3u8", playlist_ending_in("seg1.ts"));
    nginx.write("www/seg0.ts", "segment");
    nginx.write("www/seg1.ts", "segment");
    nginx.write("www/seg-moved.m3u8", playlist_ending_in("moved-seg.ts"));
    let probe = |name: &str, path: &str, extra: &str| {
        format!(
            "  - name: {name}\n    interval: 1s\n    timeout: 900ms\n    hls:\n      url: {}\n      check_newest_segment: true\n{extra}",
            nginx.url(path)
        )
    };
    let config = [
        "probes:\n".to_string(),
        probe("moved", "/moved.m3u8", ""),
        probe("same-origin", "/same.m3u8", ""),
        probe("segment-moved", "/seg-moved.m3u8", ""),
        probe("cdn-not-listed", "/cdn.m3u8", ""),
        probe(
            "cdn-listed",
            "/cdn.m3u8",
            "      allowed_hosts: [127.0.0.2]\n",
        ),
    ]
    .concat();
    let mut exporter = Exporter::start(&config);
    let all = [
        "moved",
        "same-origin",
        "segment-moved",
        "cdn-not-listed",
        "cdn-listed",
    ];
    // Every probe in its state (a run that timed out on a busy machine is followed by one
    // that did not).
    let s = exporter.wait_for("every probe in its state", WAIT, |s| {
        all.iter()
            .all(|p| find(s, SUCCESS, &[("probe", p)]).is_some())
            && ["same-origin", "cdn-listed"]
                .iter()
                .all(|p| find(s, SUCCESS, &[("probe", p)]) == Some(1.0))
            && ["moved", "cdn-not-listed", "segment-moved"]
                .iter()
                .all(|p| reason(s, p).as_deref() == Some("http_status"))
    });
    // Within the origin, or to a listed host: followed.
    for p in ["same-origin", "cdn-listed"] {
        assert_eq!(value(&s, SUCCESS, &[("probe", p)]), 1.0, "{p}");
        assert_eq!(value(&s, UP, &[("probe", p)]), 1.0, "{p}");
        assert_eq!(value(&s, FETCHABLE, &[("probe", p)]), 1.0, "{p}");
    }
    // To another port of the same host, or to a host not listed: not followed.
    for p in ["moved", "cdn-not-listed"] {
        assert_eq!(value(&s, SUCCESS, &[("probe", p)]), 0.0, "{p}");
        assert_eq!(value(&s, UP, &[("probe", p)]), 0.0, "{p}");
        assert_eq!(reason(&s, p).as_deref(), Some("http_status"), "{p}");
    }
    // A segment redirected off the origin is not fetched.
    assert_eq!(value(&s, UP, &[("probe", "segment-moved")]), 1.0);
    assert_eq!(value(&s, FETCHABLE, &[("probe", "segment-moved")]), 0.0);
    assert_eq!(reason(&s, "segment-moved").as_deref(), Some("http_status"));
    let page = stackmedic_tests::http::get(&exporter.url("/"))
        .expect("landing page")
        .text();
    assert!(
        page.contains(&format!(
            "to http://127.0.0.1:{op}/live.m3u8 leaves the playlist"
        )),
        "{page}"
    );
    // The other server saw only the requests of the probe whose redirect was to a listed host:
    // its playlist, and its newest segment, whose relative URI is resolved against the URL
    // the playlist came from in the end (the listed host), not the configured one.
    let log = std::fs::read_to_string(other.access_log()).expect("access log");
    assert!(log.contains("GET /cdn-live.m3u8"), "{log}");
    assert!(log.contains("HEAD /seg1.ts"), "{log}");
    assert!(!log.contains("GET /live.m3u8"), "{log}");
    assert!(!log.contains("GET /seg1.ts"), "{log}");
}
