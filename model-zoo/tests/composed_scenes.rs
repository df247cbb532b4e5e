//! Captioned scenes composed from the real Fashion-MNIST images: deterministic, drawn from
//! disjoint source images per split, painted where the layout says, and captioned with
//! every object's true class and colour.

use std::collections::HashSet;
use std::path::Path;

use kiln_zoo::captioning::vocabulary::CaptionVocabulary;
use kiln_zoo::data::fashion_mnist::{self, FashionMnist, IMAGE_SIDE, Split};
use kiln_zoo::data::scenes::{
    CANVAS_SIDE, COLOURS, MAX_OBJECTS, Scene, SceneGenerator, SceneSplit,
};

fn load(split: Split) -> FashionMnist {
    FashionMnist::load(Path::new(fashion_mnist::DEFAULT_DIR), split).unwrap()
}

fn scenes(images: &FashionMnist, split: SceneSplit, count: usize) -> Vec<Scene> {
    SceneGenerator::new(images, split).unwrap().scenes(count)
}

/// The noun a caption uses for a Fashion-MNIST class, without its plural ending.
fn noun_stem(label: usize) -> &'static str {
    [
        "t-shirt",
        "trousers",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle boot",
    ][label]
}

#[test]
fn every_split_is_the_same_on_every_run() {
    let train = load(Split::Train);
    let first = scenes(&train, SceneSplit::Train, 50);
    let again = scenes(&train, SceneSplit::Train, 50);
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(
            (&a.caption, &a.objects, &a.pixels),
            (&b.caption, &b.objects, &b.pixels)
        );
    }
    let validation = scenes(&train, SceneSplit::Validation, 50);
    assert_ne!(
        first.iter().map(|s| &s.caption).collect::<Vec<_>>(),
        validation.iter().map(|s| &s.caption).collect::<Vec<_>>()
    );
}

#[test]
fn splits_draw_from_disjoint_source_images() {
    let train = load(Split::Train);
    let test = load(Split::Test);
    let sources = |scenes: &[Scene]| -> HashSet<usize> {
        scenes
            .iter()
            .flat_map(|s| s.objects.iter().map(|o| o.source))
            .collect()
    };
    let training = sources(&scenes(&train, SceneSplit::Train, 500));
    let validation = sources(&scenes(&train, SceneSplit::Validation, 500));
    assert!(training.iter().all(|&i| i < 50_000));
    assert!(validation.iter().all(|&i| (50_000..60_000).contains(&i)));
    assert!(
        sources(&scenes(&test, SceneSplit::Test, 500))
            .iter()
            .all(|&i| i < test.len())
    );
    // Test scenes never come from training images, nor training scenes from test images.
    assert!(SceneGenerator::new(&train, SceneSplit::Test).is_err());
    assert!(SceneGenerator::new(&test, SceneSplit::Train).is_err());
}

#[test]
fn objects_are_painted_in_their_cells_tinted_and_nothing_else_is() {
    let train = load(Split::Train);
    for scene in scenes(&train, SceneSplit::Train, 100) {
        assert_eq!(scene.pixels.len(), CANVAS_SIDE * CANVAS_SIDE * 3);
        let mut covered = vec![false; CANVAS_SIDE * CANVAS_SIDE];
        for object in &scene.objects {
            assert_eq!(object.label, train.label(object.source));
            let (x0, y0) = object.origin;
            assert_eq!((y0 / 32, x0 / 32), object.cell, "{object:?}");
            assert!(x0 % 32 + IMAGE_SIDE <= 32 && y0 % 32 + IMAGE_SIDE <= 32);
            let tint = COLOURS[object.colour].1;
            let image = train.image(object.source);
            for y in 0..IMAGE_SIDE {
                for x in 0..IMAGE_SIDE {
                    let at = (y0 + y) * CANVAS_SIDE + x0 + x;
                    covered[at] = true;
                    let value = u32::from(image[y * IMAGE_SIDE + x]);
                    for (c, &tint) in tint.iter().enumerate() {
                        let expected = (value * u32::from(tint) / 255) as u8;
                        assert_eq!(scene.pixels[at * 3 + c], expected);
                    }
                }
            }
        }
        for (at, covered) in covered.iter().enumerate() {
            if !covered {
                assert_eq!(&scene.pixels[at * 3..at * 3 + 3], &[0, 0, 0]);
            }
        }
    }
}

#[test]
fn captions_name_every_object_and_vary() {
    let test = load(Split::Test);
    let drawn = scenes(&test, SceneSplit::Test, 400);
    let mut counts = [0usize; MAX_OBJECTS + 1];
    for scene in &drawn {
        counts[scene.objects.len()] += 1;
        let ids = CaptionVocabulary.encode(&scene.caption).unwrap();
        assert_eq!(CaptionVocabulary.decode(&ids), scene.caption);
        // The Transformer captioner reads at most 32 positions: `<bos>` and the words.
        assert!(ids.len() <= 32, "{} tokens: {:?}", ids.len(), scene.caption);
        for object in &scene.objects {
            let named = format!("{} {}", COLOURS[object.colour].0, noun_stem(object.label));
            assert!(
                scene.caption.contains(&named),
                "{:?} lacks {named}",
                scene.caption
            );
        }
        if let [first, second] = scene.objects[..]
            && first.cell.0 == second.cell.0
            && (first.label, first.colour) != (second.label, second.colour)
        {
            assert!(
                scene.caption.contains("to the left of")
                    || scene.caption.contains("to the right of")
            );
        }
    }
    assert!(
        counts[1..].iter().all(|&n| n > 50),
        "objects per scene: {counts:?}"
    );
    let distinct: HashSet<&str> = drawn.iter().map(|s| s.caption.as_str()).collect();
    assert!(
        distinct.len() > 350,
        "{} distinct captions of 400",
        distinct.len()
    );
    let phrasings = [
        "a picture of",
        "on a black background",
        "below",
        "to the right of",
    ];
    for phrasing in phrasings {
        assert!(
            drawn.iter().any(|s| s.caption.contains(phrasing)),
            "never: {phrasing}"
        );
    }
}
