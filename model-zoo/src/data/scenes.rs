//! Captioned scenes composed from real Fashion-MNIST images: one to four tinted objects on
//! a 64×64 canvas, each in its own quarter, and a caption derived from the layout and the
//! objects' true labels ("a red sneaker to the left of a blue bag"). No caption dataset
//! ships in a package, so the captioners train and are evaluated on these.
//!
//! Splits are deterministic and draw from disjoint source images: training scenes from
//! Fashion-MNIST training images 0–49,999, validation scenes from 50,000–59,999, test
//! scenes from the test set.

use std::ops::Range;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::data::fashion_mnist::{FashionMnist, IMAGE_SIDE, Split};
use crate::error::{Result, ZooError};

/// Side length of the square RGB canvas.
pub const CANVAS_SIDE: usize = 64;
/// Each object sits in one cell of a 2×2 grid, moved by up to `CELL_SIDE - IMAGE_SIDE`
/// pixels inside it, so objects never overlap.
const CELL_SIDE: usize = CANVAS_SIDE / 2;
/// Most objects in one scene: one per cell.
pub const MAX_OBJECTS: usize = 4;

/// Colour names with the RGB an object's white is tinted to.
pub const COLOURS: [(&str, [u8; 3]); 5] = [
    ("red", [255, 60, 60]),
    ("green", [60, 220, 60]),
    ("blue", [70, 110, 255]),
    ("yellow", [255, 230, 40]),
    ("white", [255, 255, 255]),
];

/// Singular and plural nouns for Fashion-MNIST's classes, in label order.
const NOUNS: [(&str, &str); 10] = [
    ("t-shirt", "t-shirts"),
    ("pair of trousers", "pairs of trousers"),
    ("pullover", "pullovers"),
    ("dress", "dresses"),
    ("coat", "coats"),
    ("sandal", "sandals"),
    ("shirt", "shirts"),
    ("sneaker", "sneakers"),
    ("bag", "bags"),
    ("ankle boot", "ankle boots"),
];

const COUNT_WORDS: [&str; 5] = ["no", "a", "two", "three", "four"];

/// The three disjoint splits of composed scenes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SceneSplit {
    Train,
    Validation,
    Test,
}

impl SceneSplit {
    /// The Fashion-MNIST split whose images this split's scenes are made of.
    pub fn source_split(self) -> Split {
        match self {
            SceneSplit::Train | SceneSplit::Validation => Split::Train,
            SceneSplit::Test => Split::Test,
        }
    }

    /// The source images a split draws from, within its [`Self::source_split`].
    pub fn source_range(self) -> Range<usize> {
        match self {
            SceneSplit::Train => 0..50_000,
            SceneSplit::Validation => 50_000..60_000,
            SceneSplit::Test => 0..10_000,
        }
    }

    /// The seed every split's scenes are drawn with, so a split is the same on every run.
    fn seed(self) -> u64 {
        match self {
            SceneSplit::Train => 0x5CE7_0001,
            SceneSplit::Validation => 0x5CE7_0002,
            SceneSplit::Test => 0x5CE7_0003,
        }
    }
}

/// One object of a scene: which source image, its class and colour, and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SceneObject {
    /// Index of the source image in its Fashion-MNIST split.
    pub source: usize,
    /// Fashion-MNIST class.
    pub label: usize,
    /// Index into [`COLOURS`].
    pub colour: usize,
    /// Grid cell as (row, column), each 0 or 1.
    pub cell: (usize, usize),
    /// Top-left corner of the 28×28 image on the canvas, as (x, y).
    pub origin: (usize, usize),
}

/// A composed image with the objects in it and its caption.
#[derive(Debug, Clone)]
pub struct Scene {
    /// Objects in reading order (top row first, then left to right).
    pub objects: Vec<SceneObject>,
    /// RGB bytes, row-major, `CANVAS_SIDE × CANVAS_SIDE × 3`; black background.
    pub pixels: Vec<u8>,
    pub caption: String,
}

impl Scene {
    /// The model input: `[3, 64, 64]` floats, pixels scaled to 0..1, as [`image_spec`]
    /// makes of the scene saved as an image file.
    /// Every phrasing of the scene's caption, the drawn one first: the references a
    /// predicted caption is scored against.
    pub fn references(&self) -> Vec<String> {
        let mut all = vec![self.caption.clone()];
        for template in 0..TEMPLATES {
            let phrasing = caption(&self.objects, template);
            if !all.contains(&phrasing) {
                all.push(phrasing);
            }
        }
        all
    }

    pub fn input(&self) -> Vec<f32> {
        let plane = CANVAS_SIDE * CANVAS_SIDE;
        let mut values = vec![0.0; 3 * plane];
        for (at, pixel) in self.pixels.chunks_exact(3).enumerate() {
            for (channel, &value) in pixel.iter().enumerate() {
                values[channel * plane + at] = f32::from(value) / 255.0;
            }
        }
        values
    }
}

/// How captioners trained on scenes take an image: 64×64 RGB scaled to 0..1.
pub fn image_spec() -> crate::image_input::ImageSpec {
    crate::image_input::ImageSpec {
        channels: 3,
        height: CANVAS_SIDE,
        width: CANVAS_SIDE,
        mean: Vec::new(),
        std: Vec::new(),
        max_pixels: crate::image_input::DEFAULT_MAX_PIXELS,
        resize_shorter: None,
    }
}

/// Draws the scenes of one split, deterministically, from a loaded Fashion-MNIST split.
pub struct SceneGenerator<'a> {
    images: &'a FashionMnist,
    sources: Range<usize>,
    rng: StdRng,
}

impl<'a> SceneGenerator<'a> {
    /// `images` must be the Fashion-MNIST split `split` draws from
    /// ([`SceneSplit::source_split`]), whole.
    pub fn new(images: &'a FashionMnist, split: SceneSplit) -> Result<Self> {
        let sources = split.source_range();
        if images.split() != split.source_split() {
            return Err(ZooError::InvalidInput(format!(
                "{split:?} scenes are made of Fashion-MNIST {:?} images, not {:?} images",
                split.source_split(),
                images.split()
            )));
        }
        if images.len() < sources.end {
            return Err(ZooError::InvalidInput(format!(
                "{split:?} scenes draw from images {sources:?}, but the split has {}",
                images.len()
            )));
        }
        Ok(Self {
            images,
            sources,
            rng: StdRng::seed_from_u64(split.seed()),
        })
    }

    /// The next scene.
    pub fn next_scene(&mut self) -> Scene {
        let count = self.rng.random_range(1..=MAX_OBJECTS);
        let mut cells = [(0, 0), (0, 1), (1, 0), (1, 1)];
        cells.shuffle(&mut self.rng);
        let mut objects: Vec<SceneObject> = cells[..count]
            .iter()
            .map(|&cell| {
                let source = self.rng.random_range(self.sources.clone());
                let slack = CELL_SIDE - IMAGE_SIDE;
                SceneObject {
                    source,
                    label: self.images.label(source),
                    colour: self.rng.random_range(0..COLOURS.len()),
                    cell,
                    origin: (
                        cell.1 * CELL_SIDE + self.rng.random_range(0..=slack),
                        cell.0 * CELL_SIDE + self.rng.random_range(0..=slack),
                    ),
                }
            })
            .collect();
        objects.sort_by_key(|object| object.cell);
        let template = self.rng.random_range(0..TEMPLATES);
        Scene {
            pixels: paint(self.images, &objects),
            caption: caption(&objects, template),
            objects,
        }
    }

    /// The next `count` scenes.
    pub fn scenes(&mut self, count: usize) -> Vec<Scene> {
        (0..count).map(|_| self.next_scene()).collect()
    }
}

/// The canvas with every object's image tinted to its colour.
fn paint(images: &FashionMnist, objects: &[SceneObject]) -> Vec<u8> {
    let mut pixels = vec![0u8; CANVAS_SIDE * CANVAS_SIDE * 3];
    for object in objects {
        let image = images.image(object.source);
        let tint = COLOURS[object.colour].1;
        for y in 0..IMAGE_SIDE {
            for x in 0..IMAGE_SIDE {
                let value = u16::from(image[y * IMAGE_SIDE + x]);
                let at = ((object.origin.1 + y) * CANVAS_SIDE + object.origin.0 + x) * 3;
                for channel in 0..3 {
                    pixels[at + channel] = (value * u16::from(tint[channel]) / 255) as u8;
                }
            }
        }
    }
    pixels
}

/// How many phrasings each layout has; `caption` picks one with `template`.
const TEMPLATES: usize = 3;

/// "a red sneaker", "two blue bags", "a pair of white trousers".
fn noun_phrase(count: usize, colour: usize, label: usize) -> String {
    let (singular, plural) = NOUNS[label];
    let colour = COLOURS[colour].0;
    match (count, singular.strip_prefix("pair of ")) {
        (1, Some(rest)) => format!("a pair of {colour} {rest}"),
        (1, None) => format!("{} {colour} {singular}", article(colour)),
        (n, Some(rest)) => format!("{} pairs of {colour} {rest}", COUNT_WORDS[n]),
        (n, None) => format!("{} {colour} {plural}", COUNT_WORDS[n]),
    }
}

fn article(next: &str) -> &'static str {
    if next.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// The caption of objects in reading order, in one of `TEMPLATES` phrasings.
pub fn caption(objects: &[SceneObject], template: usize) -> String {
    let one = |object: &SceneObject| noun_phrase(1, object.colour, object.label);
    match objects {
        [only] => match template % TEMPLATES {
            0 => one(only),
            1 => format!("a picture of {}", one(only)),
            _ => format!("{} on a black background", one(only)),
        },
        [first, second] if (first.label, first.colour) == (second.label, second.colour) => {
            let both = noun_phrase(2, first.colour, first.label);
            let arrangement = if first.cell.0 == second.cell.0 {
                "side by side"
            } else if first.cell.1 == second.cell.1 {
                "one above the other"
            } else {
                "placed diagonally"
            };
            match template % TEMPLATES {
                0 => format!("{both} {arrangement}"),
                1 => format!("there are {both} {arrangement}"),
                _ => format!("a picture of {both} {arrangement}"),
            }
        }
        [first, second] => {
            // Reading order puts `first` above, or left of, `second`.
            let vertical = first.cell.0 != second.cell.0;
            let horizontal = match first.cell.1.cmp(&second.cell.1) {
                std::cmp::Ordering::Less => Some(("to the left of", "to the right of")),
                std::cmp::Ordering::Greater => Some(("to the right of", "to the left of")),
                std::cmp::Ordering::Equal => None,
            };
            let (forward, backward) = match (vertical, horizontal) {
                (true, None) => ("above".to_string(), "below".to_string()),
                (true, Some((f, b))) => (format!("above and {f}"), format!("below and {b}")),
                (false, Some((f, b))) => (f.to_string(), b.to_string()),
                (false, None) => unreachable!("two objects never share a cell"),
            };
            match template % TEMPLATES {
                0 => format!("{} {forward} {}", one(first), one(second)),
                1 => format!("{} {backward} {}", one(second), one(first)),
                _ => format!("a picture of {} {forward} {}", one(first), one(second)),
            }
        }
        many => {
            // Identical objects are counted together, in order of first appearance.
            let mut groups: Vec<((usize, usize), usize)> = Vec::new();
            for object in many {
                let key = (object.label, object.colour);
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, count)) => *count += 1,
                    None => groups.push((key, 1)),
                }
            }
            let phrases: Vec<String> = groups
                .iter()
                .map(|&((label, colour), count)| noun_phrase(count, colour, label))
                .collect();
            let list = match phrases.split_last() {
                Some((last, [])) => last.clone(),
                Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                None => String::new(),
            };
            match template % TEMPLATES {
                0 => list,
                1 => format!("a picture of {list}"),
                _ => format!("{list} on a black background"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(label: usize, colour: usize, cell: (usize, usize)) -> SceneObject {
        SceneObject {
            source: 0,
            label,
            colour,
            cell,
            origin: (cell.1 * CELL_SIDE, cell.0 * CELL_SIDE),
        }
    }

    // Labels: 7 sneaker, 8 bag, 1 trousers, 4 coat. Colours: 0 red, 2 blue, 4 white.
    #[test]
    fn one_object_is_named_with_its_colour() {
        let scene = [object(7, 0, (1, 0))];
        assert_eq!(caption(&scene, 0), "a red sneaker");
        assert_eq!(caption(&scene, 1), "a picture of a red sneaker");
        assert_eq!(
            caption(&[object(1, 4, (0, 0))], 0),
            "a pair of white trousers"
        );
    }

    #[test]
    fn two_objects_side_by_side_are_related_left_and_right() {
        let scene = [object(7, 0, (0, 0)), object(8, 2, (0, 1))];
        assert_eq!(
            caption(&scene, 0),
            "a red sneaker to the left of a blue bag"
        );
        assert_eq!(
            caption(&scene, 1),
            "a blue bag to the right of a red sneaker"
        );
    }

    #[test]
    fn two_objects_in_a_column_or_diagonal_are_related_above_and_below() {
        let column = [object(4, 4, (0, 1)), object(8, 0, (1, 1))];
        assert_eq!(caption(&column, 0), "a white coat above a red bag");
        assert_eq!(caption(&column, 1), "a red bag below a white coat");
        let diagonal = [object(4, 4, (0, 1)), object(8, 0, (1, 0))];
        assert_eq!(
            caption(&diagonal, 0),
            "a white coat above and to the right of a red bag"
        );
        assert_eq!(
            caption(&diagonal, 1),
            "a red bag below and to the left of a white coat"
        );
    }

    #[test]
    fn identical_objects_are_counted() {
        let pair = [object(7, 0, (0, 0)), object(7, 0, (1, 0))];
        assert_eq!(caption(&pair, 0), "two red sneakers one above the other");
        let many = [
            object(7, 0, (0, 0)),
            object(1, 2, (0, 1)),
            object(7, 0, (1, 0)),
            object(1, 2, (1, 1)),
        ];
        assert_eq!(
            caption(&many, 0),
            "two red sneakers and two pairs of blue trousers"
        );
        let three = [
            object(8, 4, (0, 0)),
            object(7, 0, (0, 1)),
            object(4, 2, (1, 1)),
        ];
        assert_eq!(
            caption(&three, 2),
            "a white bag, a red sneaker and a blue coat on a black background"
        );
    }

    #[test]
    fn colour_names_take_the_right_article() {
        assert_eq!(noun_phrase(1, 3, 8), "a yellow bag");
        assert_eq!(article("orange"), "an");
    }
}
