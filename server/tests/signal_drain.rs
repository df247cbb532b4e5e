//! The real `kiln` process drains on SIGTERM: requests in flight when the signal arrives
//! are all answered, and the process exits with status 0. Its threads carry names that
//! say what they are.

mod common;

use common::*;

#[tokio::test]
async fn sigterm_mid_load_answers_every_accepted_request() {
    // Requests wait 500 ms for their batch, so they are in flight when the signal lands.
    let repository = repository_with_lenet("lenet-fashion", |c| {
        set_batching(c, "max_queue_delay_us", 500_000);
        no_preferred_sizes(c);
    });
    let KilnProcess {
        mut child,
        base,
        log,
    } = spawn_kiln(repository.path(), &[]).await;

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
    let lines = log.await.unwrap();
    assert!(lines.iter().any(|l| l.contains("drained")), "{lines:#?}");
}

/// The names of a process's threads (`/proc/PID/task/*/comm`, at most 15 bytes each).
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .collect()
}

#[tokio::test]
async fn the_cpu_compute_threads_carry_kilns_name_not_the_loaders() {
    let repository = repository_with_lenet("lenet-fashion", |_| {});
    let KilnProcess { child, base, .. } = spawn_kiln(repository.path(), &[]).await;
    // A classification runs on the CPU kernels, whose pool then surely exists.
    let client = reqwest::Client::new();
    let response = post_png(&client, &base, png(&test_set(), 0))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The loader thread ends soon after the model is ready; no thread keeps its name.
    let pid = child.id().unwrap();
    let mut names = thread_names(pid);
    for _ in 0..50 {
        if !names.iter().any(|name| name.starts_with("kiln-load")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        names = thread_names(pid);
    }
    assert!(
        !names.iter().any(|name| name.starts_with("kiln-load")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|name| name.starts_with("kiln-cpu-")),
        "{names:?}"
    );
}
