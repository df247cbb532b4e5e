//! Captioned scenes composed from the real Fashion-MNIST images: deterministic, drawn from
//! disjoint source images per split, painted where the layout says, varied as their
//! distribution says, and captioned with every object's true class, colour and place.

use std::collections::HashSet;
use std::path::Path;

use kiln_zoo::captioning::vocabulary::CaptionVocabulary;
use kiln_zoo::data::fashion_mnist::{self, FashionMnist, IMAGE_SIDE, Split};
use kiln_zoo::data::scenes::layout::Alignment;
use kiln_zoo::data::scenes::{
    Background, CANVAS_SIDE, COLOURS, MAX_OBJECTS, Placement, Scene, SceneGenerator, SceneSplit,
    SceneStyle, UNTINTED, read_caption,
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
fn objects_are_painted_where_they_are_tinted_and_apart() {
    let train = load(Split::Train);
    for scene in scenes(&train, SceneSplit::Train, 300) {
        assert_eq!(scene.pixels.len(), CANVAS_SIDE * CANVAS_SIDE * 3);
        let mut covered = vec![false; CANVAS_SIDE * CANVAS_SIDE];
        for (index, object) in scene.objects.iter().enumerate() {
            assert_eq!(object.label, train.label(object.source));
            let (x0, y0) = object.origin;
            assert!(x0 + object.side <= CANVAS_SIDE && y0 + object.side <= CANVAS_SIDE);
            for later in &scene.objects[index + 1..] {
                assert!(!object.ink.overlaps_too_much(&later.ink), "{scene:?}");
            }
            for y in y0..y0 + object.side {
                covered[y * CANVAS_SIDE + x0..][..object.side].fill(true);
            }
        }
        if scene.background != Background::Black {
            continue;
        }
        for (at, covered) in covered.iter().enumerate() {
            if !covered {
                assert_eq!(&scene.pixels[at * 3..at * 3 + 3], &[0, 0, 0]);
            }
        }
        // Alone on black, an object's brightest pixel is its tint, scaled.
        let [last] = &scene.objects[..] else {
            continue;
        };
        let tint = COLOURS[last.colour].1;
        let (x0, y0) = last.origin;
        let brightest = (y0..y0 + last.side)
            .flat_map(|y| (x0..x0 + last.side).map(move |x| (y * CANVAS_SIDE + x) * 3))
            .max_by_key(|&at| {
                scene.pixels[at..at + 3]
                    .iter()
                    .map(|&p| u32::from(p))
                    .sum::<u32>()
            })
            .unwrap();
        let pixel = &scene.pixels[brightest..brightest + 3];
        let scale = f32::from(pixel[0].max(pixel[1]).max(pixel[2]))
            / f32::from(tint[0].max(tint[1]).max(tint[2]));
        for (channel, &tint) in tint.iter().enumerate() {
            let expected = f32::from(tint) * scale;
            assert!(
                (f32::from(pixel[channel]) - expected).abs() <= 2.0,
                "{pixel:?} is not {tint:?} scaled by {scale}"
            );
        }
    }
}

#[test]
fn scenes_vary_in_place_size_and_background_and_read_back_as_drawn() {
    let test = load(Split::Test);
    let drawn = scenes(&test, SceneSplit::Test, 600);
    let backgrounds: HashSet<Background> = drawn.iter().map(|s| s.background).collect();
    assert_eq!(backgrounds.len(), 5, "{backgrounds:?}");
    let objects: Vec<_> = drawn.iter().flat_map(|s| s.objects.iter()).collect();
    let sides: Vec<usize> = objects.iter().map(|o| o.side).collect();
    assert!(sides.iter().any(|&s| s <= 18) && sides.iter().any(|&s| s >= 42));
    assert!(sides.iter().all(|&s| s <= 45));
    let centres: Vec<(f32, f32)> = objects.iter().map(|o| o.centre()).collect();
    // Objects straddle the middle lines, not only the quarters.
    assert!(centres.iter().filter(|c| (c.0 - 32.0).abs() < 4.0).count() > 20);
    assert!(centres.iter().filter(|c| (c.1 - 32.0).abs() < 4.0).count() > 20);
    for scene in &drawn {
        let mut truth: Vec<(usize, usize)> =
            scene.objects.iter().map(|o| (o.label, o.colour)).collect();
        truth.sort_unstable();
        assert_eq!(
            read_caption(&scene.caption).objects(),
            truth,
            "{}",
            scene.caption
        );
        if scene.objects.len() == 2 {
            assert!(scene.arrangement().is_some(), "{scene:?}");
        }
    }
}

#[test]
fn every_distribution_draws_what_it_says() {
    let test = load(Split::Test);
    for style in SceneStyle::shifted() {
        let drawn = SceneGenerator::with_style(&test, SceneSplit::Test, style.clone())
            .unwrap()
            .scenes(200);
        let again = SceneGenerator::with_style(&test, SceneSplit::Test, style.clone())
            .unwrap()
            .scenes(200);
        assert!(drawn.iter().zip(&again).all(|(a, b)| a.pixels == b.pixels));
        for scene in &drawn {
            let count = scene.objects.len();
            assert!(
                style.object_weights[count - 1] > 0,
                "{}: {count}",
                style.name
            );
            assert!(style.backgrounds.contains(&scene.background));
            for object in &scene.objects {
                if !style.tinted {
                    assert_eq!(object.colour, UNTINTED);
                }
                let (low, high) = style.scale;
                if count == 1 {
                    let side = object.side as f32 / IMAGE_SIDE as f32;
                    assert!(
                        side >= low - 0.02 && side <= high + 0.02,
                        "{}: {side}",
                        style.name
                    );
                }
                let (x, y) = (
                    object.origin.0 + object.side / 2,
                    object.origin.1 + object.side / 2,
                );
                match style.placement {
                    Placement::Centred => assert!(x.abs_diff(32) <= 1 && y.abs_diff(32) <= 1),
                    Placement::OffGrid => {
                        assert!(x.abs_diff(32) <= 6 || y.abs_diff(32) <= 6, "{x}, {y}")
                    }
                    Placement::Quarters => {
                        assert_eq!(object.side, IMAGE_SIDE);
                        assert!(object.origin.0 % 32 + IMAGE_SIDE <= 32);
                        assert!(object.origin.1 % 32 + IMAGE_SIDE <= 32);
                    }
                    Placement::Anywhere => {}
                }
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
            && scene.arrangement().unwrap().alignment() == Alignment::Row
            && (first.label, first.colour) != (second.label, second.colour)
        {
            assert!(
                scene.caption.contains("to the left of")
                    || scene.caption.contains("to the right of")
            );
        }
    }
    assert!(
        counts[1..].iter().all(|&n| n > 20),
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
        "on a noisy background",
        "above and to the left of",
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
