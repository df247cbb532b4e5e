//! The real `kiln` process drains on SIGTERM: requests in flight when the signal arrives
//! are all answered, and the process exits with status 0.

mod common;

use std::process::Stdio;

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn sigterm_mid_load_answers_every_accepted_request() {
    // Requests wait 500 ms for their batch, so they are in flight when the signal lands.
    let repository = repository_with_lenet("lenet-fashion", |c| {
        set_batching(c, "max_queue_delay_us", 500_000);
        no_preferred_sizes(c);
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["serve", "--http-addr", "127.0.0.1:0", "--model-repository"])
        .arg(repository.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = None;
    while let Some(line) = log.next_line().await.unwrap() {
        if let Some(rest) = line.split("http=").nth(1) {
            addr = rest.split_whitespace().next().map(str::to_string);
        }
        if line.contains("model ready") {
            break;
        }
    }
    let base = format!("http://{}", addr.expect("the server logs its address"));
    // Keep draining the log so the child never blocks on a full pipe.
    let log_task = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Ok(Some(line)) = log.next_line().await {
            lines.push(line);
        }
        lines
    });

    let client = reqwest::Client::new();
    let data = test_set();
    let in_flight: Vec<_> = (0..8)
        .map(|i| {
            let request = post_png(&client, &base, png(&data, i));
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    // Wait until the server holds all eight.
    loop {
        let text = metrics_text(&client, &base).await;
        let pending =
            "kiln_pending_requests{backend=\"flex\",model=\"lenet-fashion\",version=\"1\"}";
        if metric(&text, pending) == Some(8.0) {
            break;
        }
        tokio::task::yield_now().await;
    }

    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());

    for request in in_flight {
        assert_eq!(
            request.await.unwrap().unwrap(),
            200,
            "an accepted request went unanswered"
        );
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "exit status {status}");
    let lines = log_task.await.unwrap();
    assert!(lines.iter().any(|l| l.contains("drained")), "{lines:#?}");
}
