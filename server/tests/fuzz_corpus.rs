//! The fuzzers' findings as ordinary tests: every input kept in `fuzz/corpus/<target>/` (the
//! coverage corpus, minimised) and `fuzz/regressions/<target>/` (inputs that once crashed a
//! target) goes through the same checks the fuzz target makes, so CI replays them on stable
//! Rust without building the instrumented fuzz binaries.

#[path = "../../fuzz/checks/mod.rs"]
mod checks;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn kept_inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut inputs = Vec::new();
    for folder in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(folder).join(target)) else {
            continue;
        };
        inputs.extend(entries.map(|entry| entry.expect("a readable folder entry").path()));
    }
    inputs.sort();
    inputs
}

fn replay(target: &str) {
    let (_, check) = checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a fuzz target of that name");
    let inputs = kept_inputs(target);
    assert!(
        !inputs.is_empty(),
        "no corpus for {target}: run scripts/fuzz.sh and commit fuzz/corpus/{target}"
    );
    let failures: Vec<String> = inputs
        .iter()
        .filter_map(|path| {
            let data = std::fs::read(path).expect("a readable corpus file");
            catch_unwind(AssertUnwindSafe(|| check(&data)))
                .err()
                .map(|_| path.display().to_string())
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{target} fails on {} of {} kept inputs: {failures:?}",
        failures.len(),
        inputs.len()
    );
}

#[test]
fn classify_json_corpus() {
    replay("classify_json");
}

#[test]
fn generate_json_corpus() {
    replay("generate_json");
}

#[test]
fn idx_file_corpus() {
    replay("idx_file");
}

#[test]
fn image_bytes_corpus() {
    replay("image_bytes");
}

#[test]
fn v2_infer_body_corpus() {
    replay("v2_infer_body");
}

#[test]
fn every_fuzz_target_is_replayed() {
    let targets =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets"))
            .expect("the fuzz targets folder")
            .map(|entry| {
                let path = entry.expect("a folder entry").path();
                path.file_stem()
                    .expect("a file name")
                    .to_string_lossy()
                    .into_owned()
            });
    for target in targets {
        assert!(
            checks::TARGETS.iter().any(|(name, _)| *name == target),
            "fuzz target {target} has no replay: add it to fuzz/checks/mod.rs TARGETS"
        );
    }
}
