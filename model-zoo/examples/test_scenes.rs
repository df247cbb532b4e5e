//! Write the first composed test scenes as PNG files with their captions, for trying the
//! captioners by hand and for load tests:
//! `cargo run -p kiln-zoo --example test_scenes -- examples/scenes 8 [distribution]`, the
//! distribution one of `kiln eval`'s (`anywhere`, the training one, by default).

use std::path::PathBuf;

use kiln_zoo::data::fashion_mnist::{self, FashionMnist, Split};
use kiln_zoo::data::scenes::{CANVAS_SIDE, SceneGenerator, SceneSplit, SceneStyle};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "examples/scenes".into()));
    let count: usize = args.next().map_or(Ok(8), |n| n.parse())?;
    let style = match args.next() {
        None => SceneStyle::training(),
        Some(name) => SceneStyle::all()
            .into_iter()
            .find(|style| style.name == name)
            .ok_or_else(|| format!("no scene distribution called {name:?}"))?,
    };
    let images = FashionMnist::load(
        std::path::Path::new(fashion_mnist::DEFAULT_DIR),
        Split::Test,
    )?;
    let scenes = SceneGenerator::with_style(&images, SceneSplit::Test, style)?.scenes(count);
    std::fs::create_dir_all(&out)?;
    let mut captions = String::new();
    for (index, scene) in scenes.iter().enumerate() {
        let name = format!("scene-{index}.png");
        let side = CANVAS_SIDE as u32;
        image::RgbImage::from_raw(side, side, scene.pixels.clone())
            .ok_or("a scene's pixels fill its canvas")?
            .save(out.join(&name))?;
        captions.push_str(&format!("{name}\t{}\n", scene.caption));
    }
    std::fs::write(out.join("captions.tsv"), captions)?;
    println!("wrote {count} scenes to {}", out.display());
    Ok(())
}
