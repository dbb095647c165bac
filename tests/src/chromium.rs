//! Headless Debian Chromium (`/usr/bin/chromium`, package `chromium`) taking a screenshot of a
//! loopback page, or dumping the DOM it built, for tests that check what a person would see.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Process;

/// Path of Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Screenshots `url` (which must be on loopback) at 1200×900 into `<dir>/screenshot.png` and
/// returns the path. Chromium runs headless with its own profile in `<dir>/profile` and with
/// every background network feature off.
///
/// # Panics
/// When Chromium is missing, fails, or takes longer than 90 s; or the URL is not loopback.
pub fn screenshot(url: &str, dir: &Path) -> PathBuf {
    assert!(
        url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:"),
        "screenshots are only taken of loopback pages, not {url}"
    );
    let out = dir.join("screenshot.png");
    let profile = dir.join("profile");
    std::fs::create_dir_all(&profile)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", profile.display()));
    let mut command = headless(&profile);
    command
        .arg("--hide-scrollbars")
        .arg(format!("--screenshot={}", out.display()))
        .arg("--window-size=1200,900")
        .arg(url);
    let mut process = Process::spawn("chromium", command, dir);
    let status = process.wait_timeout(Duration::from_secs(90));
    if status.is_none() {
        process.kill();
        panic!(
            "chromium did not finish within 90 s:\n{}",
            process.describe()
        );
    }
    if !out.is_file() {
        panic!("chromium wrote no screenshot:\n{}", process.describe());
    }
    out
}

/// The text Chromium shows for `url` (which must be on loopback): the DOM it built
/// (`--dump-dom`), without the `<head>`, with tags as spaces, entities decoded and whitespace
/// collapsed.
///
/// # Panics
/// When Chromium is missing, fails, or takes longer than 90 s; or the URL is not loopback.
pub fn rendered_text(url: &str, dir: &Path) -> String {
    assert!(
        url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:"),
        "only loopback pages are rendered, not {url}"
    );
    // A fresh profile each time, so no page comes from an earlier call's cache.
    let profile = tempfile::Builder::new()
        .prefix("profile-dom-")
        .tempdir_in(dir)
        .unwrap_or_else(|e| panic!("cannot create a profile in {}: {e}", dir.display()));
    let mut command = headless(profile.path());
    command.arg("--dump-dom").arg(url);
    let mut process = Process::spawn("chromium-dom", command, profile.path());
    let status = process.wait_timeout(Duration::from_secs(90));
    if !status.is_some_and(|s| s.success()) {
        process.kill();
        panic!("chromium did not dump the DOM:\n{}", process.describe());
    }
    let dom = process.stdout();
    let body = dom.split_once("</head>").map_or(dom.as_str(), |(_, b)| b);
    text_of(body)
}

/// Chromium, headless, with its profile in `profile` and every background network feature off.
///
/// # Panics
/// When Chromium is missing.
fn headless(profile: &Path) -> Command {
    let mut command = Command::new(crate::require_program(&[CHROMIUM], "chromium"));
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
    command
}

/// Text of HTML: tags become spaces, the five entities are decoded, whitespace collapses.
fn text_of(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Width and height from a PNG's IHDR chunk, or `None` when the bytes are not a PNG.
pub fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
    Some((w, h))
}
