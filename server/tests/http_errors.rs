//! Bad requests get a clear 4xx with a JSON message; nothing panics.

mod common;

use common::*;
use kiln_server::ServeSettings;
use serde_json::{Value, json};

async fn expect_error(response: reqwest::Response, status: u16, needle: &str) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    let message = body["error"].as_str().unwrap_or_default().to_string();
    assert!(
        message.to_lowercase().contains(&needle.to_lowercase()),
        "{message:?} lacks {needle:?}"
    );
}

#[tokio::test]
async fn bad_inputs_get_clear_client_errors() {
    let (server, base) = start_bundled().await;
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/models/lenet-fashion/classify");
    let data = test_set();

    let empty = client
        .post(&url)
        .header("content-type", "image/png")
        .send()
        .await
        .unwrap();
    expect_error(empty, 400, "empty").await;

    let text = client
        .post(&url)
        .header("content-type", "image/png")
        .body("not an image")
        .send()
        .await
        .unwrap();
    expect_error(text, 400, "image").await;

    let mut truncated = png(&data, 0);
    truncated.truncate(truncated.len() / 2);
    let truncated = client
        .post(&url)
        .header("content-type", "image/png")
        .body(truncated)
        .send()
        .await
        .unwrap();
    expect_error(truncated, 400, "invalid image").await;

    // The JPEG decoder would fill the missing half with grey and answer 200.
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageLuma8(
        image::GrayImage::from_raw(28, 28, data.image(0).to_vec()).unwrap(),
    )
    .write_to(
        &mut std::io::Cursor::new(&mut jpeg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    jpeg.truncate(jpeg.len() / 2);
    let truncated_jpeg = client
        .post(&url)
        .header("content-type", "image/jpeg")
        .body(jpeg)
        .send()
        .await
        .unwrap();
    expect_error(truncated_jpeg, 400, "truncated").await;

    let wrong_size = client
        .post(&url)
        .json(&json!({ "pixels": [[0, 1, 2], [3, 4, 5]] }))
        .send()
        .await
        .unwrap();
    expect_error(wrong_size, 422, "28×28").await;

    let ragged = client
        .post(&url)
        .json(&json!({ "pixels": [[0, 1, 2], [3, 4]] }))
        .send()
        .await
        .unwrap();
    expect_error(ragged, 422, "same length").await;

    let out_of_range = client
        .post(&url)
        .json(&json!({ "pixels": vec![vec![300; 28]; 28] }))
        .send()
        .await
        .unwrap();
    expect_error(out_of_range, 422, "0..=255").await;

    let malformed = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"image\": ")
        .send()
        .await
        .unwrap();
    expect_error(malformed, 400, "invalid json").await;

    let unknown_field = client
        .post(&url)
        .json(&json!({ "image": "AAAA", "colour": "red" }))
        .send()
        .await
        .unwrap();
    expect_error(unknown_field, 400, "unknown field").await;

    let both = client.post(&url).json(&json!({})).send().await.unwrap();
    expect_error(both, 400, "exactly one").await;

    let bad_base64 = client
        .post(&url)
        .json(&json!({ "image": "***" }))
        .send()
        .await
        .unwrap();
    expect_error(bad_base64, 400, "base64").await;

    let wrong_type = client
        .post(&url)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    expect_error(wrong_type, 415, "content type").await;

    let zero_k = client
        .post(format!("{url}?top_k=0"))
        .header("content-type", "image/png")
        .body(png(&data, 0))
        .send()
        .await
        .unwrap();
    expect_error(zero_k, 400, "top_k").await;

    let bad_k = client
        .post(format!("{url}?top_k=many"))
        .header("content-type", "image/png")
        .body(png(&data, 0))
        .send()
        .await
        .unwrap();
    expect_error(bad_k, 400, "top_k").await;

    let unknown_model = client
        .post(format!("{base}/v1/models/nope/classify"))
        .header("content-type", "image/png")
        .body(png(&data, 0))
        .send()
        .await
        .unwrap();
    expect_error(unknown_model, 404, "nope").await;

    let no_route = client
        .get(format!("{base}/v3/everything"))
        .send()
        .await
        .unwrap();
    expect_error(no_route, 404, "no such route").await;

    // A huge k is clamped to the number of classes.
    let big_k: Value = client
        .post(format!("{url}?top_k=1000000"))
        .header("content-type", "image/png")
        .body(png(&data, 0))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(big_k["predictions"].as_array().unwrap().len(), 10);

    // The server still answers after all that.
    let ok = client
        .post(&url)
        .header("content-type", "image/png")
        .body(png(&data, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let metrics = metrics_text(&client, &base).await;
    let invalid = metric(&metrics, "kiln_request_failure_total{backend=\"flex\",model=\"lenet-fashion\",reason=\"invalid\",version=\"1\"}").unwrap();
    assert!(invalid >= 12.0, "{invalid}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn oversized_bodies_and_images_are_refused_with_413() {
    let mut settings = ServeSettings::for_tests(bundled_repository());
    settings.max_body_bytes = 4096;
    let (server, base) = start(settings).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/models/lenet-fashion/classify");

    let big = client
        .post(&url)
        .header("content-type", "image/png")
        .body(vec![0u8; 10_000])
        .send()
        .await
        .unwrap();
    expect_error(big, 413, "size limit").await;

    // A tiny PNG that claims to be 100000×100000 pixels: refused from its header alone.
    let mut bomb = Vec::new();
    let image = image::GrayImage::new(1, 1);
    image::DynamicImage::ImageLuma8(image)
        .write_to(
            &mut std::io::Cursor::new(&mut bomb),
            image::ImageFormat::Png,
        )
        .unwrap();
    patch_png_size(&mut bomb, 100_000, 100_000);
    let bomb = client
        .post(&url)
        .header("content-type", "image/png")
        .body(bomb)
        .send()
        .await
        .unwrap();
    expect_error(bomb, 413, "exceeds the limit").await;
    server.shutdown().await.unwrap();
}

/// Rewrite the width and height in a PNG's IHDR chunk (and its CRC).
fn patch_png_size(png: &mut [u8], width: u32, height: u32) {
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
