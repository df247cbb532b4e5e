//! Helpers shared by the integration tests: model repositories, real images, a real server.

#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use kiln_server::{RunningServer, ServeSettings};
use kiln_zoo::data::fashion_mnist::{DEFAULT_DIR, FashionMnist, Split};

/// The model repository committed with the project.
pub fn bundled_repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// A temporary repository holding a copy of the bundled LeNet whose `model.toml` has been
/// edited by `edit`, under the name `name`.
pub fn repository_with_lenet(name: &str, edit: impl FnOnce(&mut toml::Table)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    add_lenet(dir.path(), name, edit);
    dir
}

pub fn add_lenet(repository: &Path, name: &str, edit: impl FnOnce(&mut toml::Table)) {
    add_model(repository, "lenet-fashion", name, edit);
}

/// Copy the bundled model `source` into `repository` as `name`, its `model.toml` edited.
pub fn add_model(repository: &Path, source: &str, name: &str, edit: impl FnOnce(&mut toml::Table)) {
    let source = bundled_repository().join(source);
    let target = repository.join(name);
    std::fs::create_dir_all(&target).unwrap();
    for file in std::fs::read_dir(&source).unwrap() {
        let file = file.unwrap().path();
        if file.file_name().unwrap() != "model.toml" {
            std::fs::copy(&file, target.join(file.file_name().unwrap())).unwrap();
        }
    }
    let mut config: toml::Table = std::fs::read_to_string(source.join("model.toml"))
        .unwrap()
        .parse()
        .unwrap();
    edit(&mut config);
    std::fs::write(target.join("model.toml"), toml::to_string(&config).unwrap()).unwrap();
}

/// Set `[batching] key = value` in a model config.
pub fn set_batching(config: &mut toml::Table, key: &str, value: i64) {
    set_in(config, "batching", key, toml::Value::Integer(value));
}

/// Set `[table] key = value` in a model config, creating the table if needed.
pub fn set_in(config: &mut toml::Table, table: &str, key: &str, value: toml::Value) {
    config
        .entry(table)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .unwrap()
        .insert(key.into(), value);
}

/// Drop the preferred batch sizes, so only the size limit and the delay dispatch a batch.
pub fn no_preferred_sizes(config: &mut toml::Table) {
    config
        .get_mut("batching")
        .and_then(|b| b.as_table_mut())
        .unwrap()
        .insert("preferred_batch_sizes".into(), toml::Value::Array(vec![]));
}

/// The server's `/metrics` text.
pub async fn metrics_text(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `GET url`, its body as JSON.
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// A real `kiln serve` process, its HTTP base URL, and its log from readiness on (stdout,
/// read to the end so the process never blocks on a full pipe).
pub struct KilnProcess {
    pub child: tokio::process::Child,
    pub base: String,
    pub log: tokio::task::JoinHandle<Vec<String>>,
}

/// The real `kiln serve` on `repository` and free loopback ports, with `args`.
pub fn kiln_serve(repository: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .arg("--model-repository")
        .arg(repository)
        .args(args);
    command
}

/// Start the real `kiln serve` on `repository` and free ports, with `args`; returns once
/// one model is ready.
pub async fn spawn_kiln(repository: &Path, args: &[&str]) -> KilnProcess {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = kiln_serve(repository, args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = None;
    while let Some(line) = log.next_line().await.unwrap() {
        if let Some(rest) = line.split("http=").nth(1) {
            addr = rest.split_whitespace().next().map(str::to_string);
        }
        assert!(!line.contains("model failed to load"), "{line}");
        if line.contains("model ready") {
            break;
        }
    }
    let base = format!("http://{}", addr.expect("the server logs its address"));
    let log = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Ok(Some(line)) = log.next_line().await {
            lines.push(line);
        }
        lines
    });
    KilnProcess { child, base, log }
}

/// Start a real server on a free loopback port and wait until its models are loaded.
pub async fn start(settings: ServeSettings) -> (RunningServer, String) {
    let mut server = RunningServer::start(settings).await.unwrap();
    server.wait_ready().await;
    let base = format!("http://{}", server.http_addr());
    (server, base)
}

pub async fn start_bundled() -> (RunningServer, String) {
    start(ServeSettings::for_tests(bundled_repository())).await
}

pub fn test_set() -> FashionMnist {
    FashionMnist::load(Path::new(DEFAULT_DIR), Split::Test)
        .expect("install Debian's dataset-fashion-mnist")
}

/// Test image `index` as PNG bytes.
pub fn png(data: &FashionMnist, index: usize) -> Vec<u8> {
    let image = image::GrayImage::from_raw(28, 28, data.image(index).to_vec()).unwrap();
    let mut bytes = Vec::new();
    image::DynamicImage::ImageLuma8(image)
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

/// Test image `index` as rows of pixel values.
pub fn pixel_rows(data: &FashionMnist, index: usize) -> Vec<Vec<u8>> {
    data.image(index).chunks(28).map(<[u8]>::to_vec).collect()
}

/// `POST /v1/models/lenet-fashion/classify` with PNG bytes, ready to send.
pub fn post_png(client: &reqwest::Client, base: &str, png: Vec<u8>) -> reqwest::RequestBuilder {
    post_png_to(client, base, "lenet-fashion", png)
}

/// `POST /v1/models/{model}/classify` with a PNG body.
pub fn post_png_to(
    client: &reqwest::Client,
    base: &str,
    model: &str,
    png: Vec<u8>,
) -> reqwest::RequestBuilder {
    client
        .post(format!("{base}/v1/models/{model}/classify"))
        .header("content-type", "image/png")
        .body(png)
}

/// The value of a Prometheus sample whose line starts with `prefix` (name and labels).
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The `probability` of each of an answer's `predictions`, checked to number `n` and to be
/// ranked from most to least likely.
pub fn ranked_probabilities(answer: &serde_json::Value, n: usize) -> Vec<f64> {
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), n, "{answer}");
    let probabilities: Vec<f64> = predictions
        .iter()
        .map(|p| p["probability"].as_f64().unwrap())
        .collect();
    assert!(
        probabilities.windows(2).all(|w| w[0] >= w[1]),
        "not ranked: {probabilities:?}"
    );
    probabilities
}
