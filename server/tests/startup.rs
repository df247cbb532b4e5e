//! `kiln serve` refuses to start, with one message, when its backend or device cannot be
//! opened, instead of starting and failing every model.

mod common;

use common::{bundled_repository, kiln_serve};

async fn serve_with(args: &[&str]) -> (bool, String) {
    let output = kiln_serve(&bundled_repository(), args)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.success(), stderr)
}

#[tokio::test]
async fn a_device_that_does_not_exist_stops_kiln_serve() {
    let (ok, stderr) = serve_with(&["--device", "3"]).await;
    assert!(!ok);
    assert!(stderr.contains("cannot start the flex backend"), "{stderr}");
    assert!(stderr.contains("there is no device 3"), "{stderr}");
}

#[cfg(not(feature = "ndarray"))]
#[tokio::test]
async fn a_backend_not_compiled_in_stops_kiln_serve() {
    let (ok, stderr) = serve_with(&["--backend", "ndarray"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("rebuild with `--features ndarray`"),
        "{stderr}"
    );
}
