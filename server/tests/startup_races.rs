//! Loading the repository at start-up takes turns with load and unload requests: an unload
//! asked for during start-up stays done, and a load asked for then builds the model once.

mod common;

use std::sync::Arc;

use common::*;
use kiln_server::registry::ModelState;
use kiln_server::v2::repository;
use kiln_server::{RunningServer, ServeSettings};

fn two_lenets() -> tempfile::TempDir {
    let dir = repository_with_lenet("alpha", |_| {});
    add_lenet(dir.path(), "beta", |_| {});
    dir
}

fn ready_handle(server: &RunningServer, name: &str) -> Arc<kiln_server::registry::ModelHandle> {
    match server.state().registry.get(name) {
        Some(ModelState::Ready(handle)) => handle,
        _ => panic!("{name} is not ready"),
    }
}

#[tokio::test]
async fn an_unload_during_start_up_is_not_undone() {
    let dir = two_lenets();
    let mut server = RunningServer::start(ServeSettings::for_tests(dir.path()))
        .await
        .unwrap();
    // Before the start-up load has had a chance to run (one-threaded runtime).
    repository::unload(server.state(), "beta").await.unwrap();
    server.wait_ready().await;
    assert!(server.state().registry.get("beta").is_none());
    let index = repository::index(server.state(), false).unwrap();
    let beta = index.iter().find(|e| e.name == "beta").unwrap();
    assert_eq!(
        (beta.state, beta.reason.as_str()),
        ("UNAVAILABLE", "unloaded")
    );
    ready_handle(&server, "alpha");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_load_during_start_up_builds_the_model_once() {
    let dir = two_lenets();
    let mut server = RunningServer::start(ServeSettings::for_tests(dir.path()))
        .await
        .unwrap();
    repository::load(server.state(), "beta").await.unwrap();
    let loaded = ready_handle(&server, "beta");
    server.wait_ready().await;
    assert!(
        Arc::ptr_eq(&loaded, &ready_handle(&server, "beta")),
        "start-up built beta again"
    );
    ready_handle(&server, "alpha");
    // A load asked for after start-up still reloads.
    repository::load(server.state(), "beta").await.unwrap();
    assert!(!Arc::ptr_eq(&loaded, &ready_handle(&server, "beta")));
    server.shutdown().await.unwrap();
}
