//! `kiln train`, run as a user runs it: it writes a model folder that `kiln serve` answers
//! from, and it trains with glibc keeping freed memory for reuse.

#![cfg(feature = "train")]

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use kiln_server::ServeSettings;

/// `kiln train lenet` for one epoch of 256 images, writing `out`.
fn train_lenet(out: &Path, tunables: Option<&str>) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(["train", "lenet", "--epochs", "1", "--limit", "256", "--out"])
        .arg(out)
        .env_remove("GLIBC_TUNABLES");
    if let Some(tunables) = tunables {
        command.env("GLIBC_TUNABLES", tunables);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    output
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// The allocator settings the training run said it ran with, one line per start.
fn tunables_lines(output: &Output) -> Vec<String> {
    text(output)
        .lines()
        .filter_map(|line| line.split("training with GLIBC_TUNABLES=").nth(1))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trained_lenet_is_served_from_the_folder_kiln_train_wrote() {
    let repository = tempfile::tempdir().unwrap();
    let folder = repository.path().join("lenet-trained");
    let output = train_lenet(&folder, None);

    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        // Restarted once with the thresholds set, and said so once.
        let lines = tunables_lines(&output);
        assert_eq!(lines.len(), 1, "{}", text(&output));
        assert!(lines[0].contains("glibc.malloc.mmap_max=0"), "{lines:?}");
        assert!(
            lines[0].contains("glibc.malloc.trim_threshold="),
            "{lines:?}"
        );
    }
    for file in ["weights.bpk", "labels.txt", "model.toml"] {
        assert!(folder.join(file).is_file(), "{file} missing");
    }

    let (server, base) = start(ServeSettings::for_tests(repository.path().to_path_buf())).await;
    let data = test_set();
    let client = reqwest::Client::new();
    let answer: serde_json::Value = post_png_to(&client, &base, "lenet-trained", png(&data, 0))
        .query(&[("top_k", 10)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let labels: Vec<&str> = answer["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    let mut sorted = labels.clone();
    sorted.sort_unstable();
    let mut expected = kiln_zoo::data::fashion_mnist::CLASS_NAMES.to_vec();
    expected.sort_unstable();
    assert_eq!(sorted, expected, "every class ranked once: {answer}");
    server.shutdown().await.unwrap();
}

#[test]
fn an_operators_allocator_thresholds_stand() {
    let repository = tempfile::tempdir().unwrap();
    let operators = "glibc.malloc.trim_threshold=0";
    let output = train_lenet(&repository.path().join("lenet"), Some(operators));
    assert_eq!(
        tunables_lines(&output),
        [operators],
        "no restart, the operator's setting kept"
    );
}
