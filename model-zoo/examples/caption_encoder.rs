//! What encoding costs per image at each batch size, for a captioner's scene encoder on
//! Kiln's CPU kernels: the kernels alone (with each layer's share) and the whole start of
//! a caption (the kernels, the image embedding or region keys and values, and the decoder's
//! first state). Random weights; the arithmetic does not depend on them.
//!
//! ```sh
//! cargo run --release -p kiln-zoo --features flex-parallel --example caption_encoder -- \
//!     lstm|transformer [IMAGES]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use burn::prelude::Device;
use kiln_zoo::captioning::captioner::Captioner;
use kiln_zoo::captioning::decoding::HypothesisBatch;
use kiln_zoo::captioning::vocabulary::CaptionVocabulary;
use kiln_zoo::models::captioner::{CaptionNet, CaptionerConfig, IMAGE_SIDE};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind = args.first().map_or("lstm", String::as_str);
    let images: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(640);
    let device = Device::flex();
    // The bundled captioners' sizes (models/captioner-*/model.toml).
    let config = CaptionerConfig::new(CaptionVocabulary.len())
        .with_d_model(128)
        .with_channels(64);
    let net = match kind {
        "lstm" => CaptionNet::Lstm(config.init_lstm(&device)),
        "transformer" => CaptionNet::Transformer(config.init_transformer(&device)),
        other => {
            eprintln!("unknown captioner {other:?}: lstm or transformer");
            return ExitCode::FAILURE;
        }
    };
    let encoder = match net.cpu_encoder() {
        Ok(encoder) => encoder,
        Err(e) => {
            eprintln!("the CPU kernels refused the encoder: {e}");
            return ExitCode::FAILURE;
        }
    };
    let captioner = Captioner::from_net(net, &device);
    println!("batch  start ms/img  kernels ms/img  (per layer)");
    for batch in [1usize, 2, 4, 8, 16, 32] {
        let pixels = vec![0.5f32; batch * 3 * IMAGE_SIDE * IMAGE_SIDE];
        let split: Vec<Vec<f32>> = pixels
            .chunks(3 * IMAGE_SIDE * IMAGE_SIDE)
            .map(<[f32]>::to_vec)
            .collect();
        let rounds = images.div_ceil(batch);
        let per_image = |run: &dyn Fn()| {
            run(); // warm-up: buffers and caches
            let started = Instant::now();
            (0..rounds).for_each(|_| run());
            started.elapsed().as_secs_f64() * 1e3 / (rounds * batch) as f64
        };
        let start = per_image(&|| {
            captioner
                .start(&mut HypothesisBatch::new(), &split)
                .expect("the encoder runs");
        });
        let kernels = per_image(&|| {
            encoder.run(&pixels, batch).expect("the kernels run");
        });
        let (_, layers) = encoder
            .run_profiled(&pixels, batch)
            .expect("the kernels run");
        let layers: Vec<String> = layers
            .iter()
            .map(|(name, time)| format!("{name} {:.3}", time.as_secs_f64() * 1e3 / batch as f64))
            .collect();
        println!(
            "{batch:5}  {start:12.3}  {kernels:14.3}  ({})",
            layers.join(", ")
        );
    }
    ExitCode::SUCCESS
}
