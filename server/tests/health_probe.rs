//! `kiln health`, the container health check, against a real server: ready, guarded, gone.

mod common;

use std::time::Duration;

use common::*;
use kiln_server::ServeSettings;
use kiln_server::commands::health::probe;

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread")]
async fn probe_passes_on_a_ready_server_and_fails_once_it_is_gone() {
    let (server, _) = start_bundled().await;
    let addr = server.http_addr();
    let answer = tokio::task::spawn_blocking(move || probe(addr, TIMEOUT, None))
        .await
        .unwrap();
    assert!(answer.is_ok(), "{answer:?}");

    server.shutdown().await.unwrap();
    let answer = tokio::task::spawn_blocking(move || probe(addr, TIMEOUT, None))
        .await
        .unwrap();
    let error = answer.unwrap_err().to_string();
    assert!(error.contains("cannot connect"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_sends_the_key_a_guarded_health_route_asks_for() {
    let mut settings = ServeSettings::for_tests(bundled_repository());
    settings.api_keys = vec!["health-secret".into()];
    settings.auth_health = true;
    let (server, _) = start(settings).await;
    let addr = server.http_addr();

    let without_key = tokio::task::spawn_blocking(move || probe(addr, TIMEOUT, None))
        .await
        .unwrap();
    assert_eq!(
        without_key.unwrap_err().to_string(),
        format!("{addr} is not ready: HTTP 401")
    );
    let with_key = tokio::task::spawn_blocking(move || probe(addr, TIMEOUT, Some("health-secret")))
        .await
        .unwrap();
    assert!(with_key.is_ok(), "{with_key:?}");
    server.shutdown().await.unwrap();
}
