//! A real live HLS stream: ffmpeg (`-f lavfi -i testsrc … -f hls`) writing a playlist and its
//! segments into a folder, in real time, until it is killed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Process;

/// Debian's ffmpeg.
pub const FFMPEG: &str = "/usr/bin/ffmpeg";

/// The first video encoder of ffmpeg's that exists here (libx264 is not in every build).
///
/// # Panics
/// When ffmpeg cannot run or has neither encoder.
pub fn encoder(ffmpeg: &Path) -> &'static str {
    let out = Command::new(ffmpeg)
        .args(["-hide_banner", "-encoders"])
        .output()
        .expect("run ffmpeg -encoders");
    let text = String::from_utf8_lossy(&out.stdout);
    ["libx264", "mpeg2video"]
        .into_iter()
        .find(|e| {
            text.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(*e))
        })
        .expect("ffmpeg has neither libx264 nor mpeg2video")
}

/// A live stream in `dir/<name>.m3u8`: 1 s segments of a small test picture, a window of 5, old
/// segments deleted. Returns the guard and the playlist's path once ffmpeg has written it.
///
/// # Panics
/// When ffmpeg is missing or writes no playlist within 30 s, with its log.
pub fn live_hls(dir: &Path, name: &str) -> (Process, PathBuf) {
    let ffmpeg = crate::require_program(&[FFMPEG], "ffmpeg");
    let codec = encoder(&ffmpeg);
    let playlist = dir.join(format!("{name}.m3u8"));
    let mut cmd = Command::new(&ffmpeg);
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "warning",
        "-nostdin",
        "-y",
        "-re",
    ])
    .args(["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10"])
    .args(["-c:v", codec, "-g", "10"]);
    if codec == "libx264" {
        cmd.args(["-preset", "ultrafast"]);
    }
    cmd.args(["-f", "hls", "-hls_time", "1", "-hls_list_size", "5"])
        .args(["-hls_flags", "delete_segments+temp_file"])
        .arg("-hls_segment_filename")
        .arg(dir.join(format!("{name}-%d.ts")))
        .arg(&playlist);
    let mut process = Process::spawn(&format!("ffmpeg-{name}"), cmd, dir);
    let written = crate::wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        playlist.exists() || !process.is_running()
    });
    assert!(
        written && playlist.exists(),
        "ffmpeg wrote no playlist {}:\n{}",
        playlist.display(),
        process.describe()
    );
    (process, playlist)
}
