//! Replays every committed fuzz corpus unit and every regression case (a crash the fuzzer once
//! found) through the same entry functions the `cargo fuzz` targets call, on the stable
//! toolchain, so CI checks on every run that none of them panics again. The fuzz targets
//! themselves (nightly) are described in `docs/fuzzing.md`.
//!
//! The corpus of each target is committed as one archive, `fuzz/corpus/<target>.tar.gz` (the
//! minimized corpus of the last campaign, which `scripts/fuzz-campaign.sh` unpacks, grows and
//! packs again), read here straight from the archive; units of a local campaign not packed yet
//! (`fuzz/corpus/<target>/`) are replayed too. Regression cases stay files, one per crash, in
//! `fuzz/regressions/<target>/`.

use std::io::Read;
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod entry;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir` (none when it does not exist), by name.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.display().to_string(), data)
        })
        .collect()
}

/// The units of a corpus archive: every regular file in it, named `<archive>:<path>`.
fn archive(path: &Path) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: every target's corpus must be committed as this archive",
            path.display()
        )
    });
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut units = Vec::new();
    for entry in tar
        .entries()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    {
        let mut entry = entry.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .unwrap_or_else(|e| panic!("{}: {name}: {e}", path.display()));
        units.push((format!("{}:{name}", path.display()), data));
    }
    units
}

#[test]
fn every_corpus_and_regression_file_replays_without_a_panic() {
    let mut failures = Vec::new();
    for (target, entry) in entry::TARGETS {
        let corpus_dir = fuzz_dir().join("corpus");
        let packed = archive(&corpus_dir.join(format!("{target}.tar.gz")));
        assert!(
            packed.len() >= 5,
            "fuzz/corpus/{target}.tar.gz has {} units: the corpus must be committed",
            packed.len()
        );
        let unpacked = files(&corpus_dir.join(target));
        let regressions = files(&fuzz_dir().join("regressions").join(target));
        for (name, data) in packed.iter().chain(&unpacked).chain(&regressions) {
            if let Err(panic) = std::panic::catch_unwind(|| entry(data)) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!("{target}: {name}: {message}"));
            }
        }
        eprintln!(
            "{target}: {} archived corpus units, {} unpacked, {} regression cases replayed",
            packed.len(),
            unpacked.len(),
            regressions.len()
        );
    }
    assert!(failures.is_empty(), "panics:\n{}", failures.join("\n"));
}

/// The tree stays readable: the corpora are archives, so the fuzz folder holds few files.
#[test]
fn fuzz_folder_tracks_under_a_thousand_files() {
    let out = std::process::Command::new("git")
        .args(["ls-files", "--", "."])
        .current_dir(fuzz_dir())
        .output()
        .expect("run git ls-files");
    assert!(
        out.status.success(),
        "git ls-files failed (the tests run in a git checkout): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tracked = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(
        tracked < 1000,
        "{tracked} files of fuzz/ are tracked: pack corpora with scripts/fuzz-campaign.sh --pack"
    );
}
