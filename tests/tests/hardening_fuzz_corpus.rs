//! Replays every committed fuzz corpus file and every regression case (a crash the fuzzer
//! once found) through the same entry functions the `cargo fuzz` targets call, on the stable
//! toolchain, so CI checks on every run that none of them panics again. The fuzz targets
//! themselves (nightly) are described in `docs/fuzzing.md`.

use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod entry;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_file_replays_without_a_panic() {
    let mut failures = Vec::new();
    for (target, entry) in entry::TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(target));
        assert!(
            corpus.len() >= 5,
            "fuzz/corpus/{target} has {} files: the corpus must be committed",
            corpus.len()
        );
        let regressions = files(&fuzz_dir().join("regressions").join(target));
        for path in corpus.iter().chain(&regressions) {
            let data = std::fs::read(path).unwrap();
            if let Err(panic) = std::panic::catch_unwind(|| entry(&data)) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!("{target}: {}: {message}", path.display()));
            }
        }
        eprintln!(
            "{target}: {} corpus files, {} regression cases replayed",
            corpus.len(),
            regressions.len()
        );
    }
    assert!(failures.is_empty(), "panics:\n{}", failures.join("\n"));
}
