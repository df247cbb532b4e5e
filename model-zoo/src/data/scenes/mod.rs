//! Captioned scenes composed from real Fashion-MNIST images: one to four objects anywhere on
//! a 64×64 canvas, each resized, tinted and painted over a plain, noisy or textured
//! background, and a caption derived from the objects' true labels and where their ink
//! lies ("a red sneaker to the left of a blue bag"). No caption dataset ships in a
//! package, so the captioners train and are evaluated on these.
//!
//! Splits are deterministic and draw from disjoint source images: training scenes from
//! Fashion-MNIST training images 0–49,999, validation scenes from 50,000–59,999, test
//! scenes from the test set. A [`SceneStyle`] says how scenes vary; the captioners train on
//! [`SceneStyle::training`] and are also measured on [`SceneStyle::shifted`] ones.

mod caption;
pub mod layout;
mod paint;
mod style;

use std::ops::Range;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use caption::{CaptionReading, Mention, TEMPLATES, caption, read_caption};
use layout::{Arrangement, InkBox};
pub use style::{Placement, SceneStyle};

use crate::data::fashion_mnist::{FashionMnist, IMAGE_SIDE, Split};
use crate::error::{Result, ZooError};

/// Side length of the square RGB canvas.
pub const CANVAS_SIDE: usize = 64;
/// Most objects in one scene.
pub const MAX_OBJECTS: usize = 4;

/// Colour names with the RGB an object's white is tinted to.
pub const COLOURS: [(&str, [u8; 3]); 5] = [
    ("red", [255, 60, 60]),
    ("green", [60, 220, 60]),
    ("blue", [70, 110, 255]),
    ("yellow", [255, 230, 40]),
    ("white", [255, 255, 255]),
];
/// The colour of an untinted object: the source image's own grey.
pub const UNTINTED: usize = 4;

/// What is behind the objects; every background is grey and darker than any object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Background {
    Black,
    /// One flat dark grey.
    Grey,
    /// Grey noise.
    Noisy,
    /// Dark stripes, vertical, horizontal or diagonal.
    Striped,
    /// A dark checkerboard.
    Checked,
}

impl Background {
    /// The word a caption describes it with ("on a striped background").
    pub fn word(self) -> &'static str {
        match self {
            Background::Black => "black",
            Background::Grey => "grey",
            Background::Noisy => "noisy",
            Background::Striped => "striped",
            Background::Checked => "checked",
        }
    }
}

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
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SceneObject {
    /// Index of the source image in its Fashion-MNIST split.
    pub source: usize,
    /// Fashion-MNIST class.
    pub label: usize,
    /// Index into [`COLOURS`].
    pub colour: usize,
    /// How bright the tint is painted, 0.75..=1.
    pub brightness: f32,
    /// Top-left corner of the drawn image on the canvas, as (x, y).
    pub origin: (usize, usize),
    /// Side of the drawn image in pixels (28 at the source size).
    pub side: usize,
    /// Where its ink lies on the canvas.
    pub ink: InkBox,
}

#[cfg(test)]
impl SceneObject {
    /// For tests: an object of `label` and `colour` whose 10-pixel ink is centred at `centre`.
    pub(crate) fn centred_at(label: usize, colour: usize, centre: (f32, f32)) -> Self {
        Self {
            source: 0,
            label,
            colour,
            brightness: 1.0,
            origin: (0, 0),
            side: IMAGE_SIDE,
            ink: InkBox {
                x0: centre.0 - 5.0,
                y0: centre.1 - 5.0,
                x1: centre.0 + 5.0,
                y1: centre.1 + 5.0,
            },
        }
    }
}

impl SceneObject {
    /// Centre of the object's ink, what relations are judged by.
    pub fn centre(&self) -> (f32, f32) {
        self.ink.centre()
    }
}

/// A composed image with the objects in it and its caption.
#[derive(Debug, Clone)]
pub struct Scene {
    /// Objects in the order they were painted (later ones over earlier ones).
    pub objects: Vec<SceneObject>,
    pub background: Background,
    /// RGB bytes, row-major, `CANVAS_SIDE × CANVAS_SIDE × 3`.
    pub pixels: Vec<u8>,
    pub caption: String,
}

impl Scene {
    /// Every phrasing of the scene's caption, the drawn one first: the references a
    /// predicted caption is scored against.
    pub fn references(&self) -> Vec<String> {
        let mut all = vec![self.caption.clone()];
        for template in 0..TEMPLATES {
            let phrasing = caption(&self.objects, self.background, template);
            if !all.contains(&phrasing) {
                all.push(phrasing);
            }
        }
        all
    }

    /// The model input: `[3, 64, 64]` floats, pixels scaled to 0..1, as [`image_spec`]
    /// makes of the scene saved as an image file.
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

    /// How the two objects of a pair stand, the first relative to the second.
    pub fn arrangement(&self) -> Option<Arrangement> {
        match &self.objects[..] {
            [a, b] => Arrangement::between(a.centre(), b.centre()),
            _ => None,
        }
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

/// Placements tried at the drawn scales before every scale shrinks a little.
const TRIES_PER_SCALE: usize = 40;
/// How much the scales shrink when no placement fits.
const SHRINK: f32 = 0.92;

/// Draws the scenes of one split and style, deterministically, from a loaded Fashion-MNIST
/// split.
pub struct SceneGenerator<'a> {
    images: &'a FashionMnist,
    sources: Range<usize>,
    style: SceneStyle,
    rng: StdRng,
    /// The quarters of the scene being placed, in the order objects take them.
    quarters: [(usize, usize); 4],
}

impl<'a> SceneGenerator<'a> {
    /// Scenes of the training distribution. `images` must be the Fashion-MNIST split
    /// `split` draws from ([`SceneSplit::source_split`]), whole.
    pub fn new(images: &'a FashionMnist, split: SceneSplit) -> Result<Self> {
        Self::with_style(images, split, SceneStyle::training())
    }

    /// Scenes of `style`, each style's different from every other's.
    pub fn with_style(
        images: &'a FashionMnist,
        split: SceneSplit,
        style: SceneStyle,
    ) -> Result<Self> {
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
        let seed = if style == SceneStyle::training() {
            split.seed()
        } else {
            split.seed() ^ style.seed()
        };
        Ok(Self {
            images,
            sources,
            style,
            rng: StdRng::seed_from_u64(seed),
            quarters: [(0, 0), (0, 1), (1, 0), (1, 1)],
        })
    }

    pub fn style(&self) -> &SceneStyle {
        &self.style
    }

    fn object_count(&mut self) -> usize {
        let weights = self.style.object_weights;
        let mut pick = self.rng.random_range(0..weights.iter().sum::<u32>());
        for (count, &weight) in weights.iter().enumerate() {
            if pick < weight {
                return count + 1;
            }
            pick -= weight;
        }
        1
    }

    /// The next scene.
    pub fn next_scene(&mut self) -> Scene {
        let count = self.object_count();
        let background =
            self.style.backgrounds[self.rng.random_range(0..self.style.backgrounds.len())];
        let mut objects: Vec<SceneObject> = (0..count)
            .map(|_| {
                let source = self.rng.random_range(self.sources.clone());
                let colour = if self.style.tinted {
                    self.rng.random_range(0..COLOURS.len())
                } else {
                    UNTINTED
                };
                let (low, high) = self.style.scale;
                let scale = if high > low {
                    self.rng.random_range(low..=high)
                } else {
                    low
                };
                SceneObject {
                    source,
                    label: self.images.label(source),
                    colour,
                    brightness: if self.style.tinted {
                        self.rng.random_range(0.75..=1.0)
                    } else {
                        1.0
                    },
                    origin: (0, 0),
                    side: (IMAGE_SIDE as f32 * scale).round() as usize,
                    ink: InkBox::of(&[], (0, 0), IMAGE_SIDE),
                }
            })
            .collect();
        self.place(&mut objects);
        let template = self.rng.random_range(0..TEMPLATES);
        let mut pixels = paint::background(background, &mut self.rng);
        paint::objects(&mut pixels, self.images, &objects);
        Scene {
            caption: caption(&objects, background, template),
            objects,
            background,
            pixels,
        }
    }

    /// Positions every object: the ink of no two overlapping more than a little, and a
    /// pair's arrangement clear; the objects shrink when no placement is found.
    fn place(&mut self, objects: &mut [SceneObject]) {
        let mut tries = 0;
        loop {
            for (i, object) in objects.iter_mut().enumerate() {
                object.origin = self.origin(object.side, i);
                object.ink =
                    InkBox::of(self.images.image(object.source), object.origin, object.side);
            }
            let apart = objects.iter().enumerate().all(|(i, a)| {
                objects[i + 1..]
                    .iter()
                    .all(|b| !a.ink.overlaps_too_much(&b.ink))
            });
            let clear = match objects {
                [a, b] => Arrangement::between(a.centre(), b.centre()).is_some(),
                _ => true,
            };
            if apart && clear {
                return;
            }
            tries += 1;
            if tries % TRIES_PER_SCALE == 0 && self.style.placement != Placement::Quarters {
                for object in objects.iter_mut() {
                    object.side = ((object.side as f32 * SHRINK).round() as usize).max(8);
                }
            }
        }
    }

    /// Top-left corner for an object `side` pixels wide, the `index`-th of its scene.
    fn origin(&mut self, side: usize, index: usize) -> (usize, usize) {
        let room = CANVAS_SIDE - side;
        let middle = CANVAS_SIDE / 2;
        match self.style.placement {
            Placement::Centred if index == 0 => (room / 2, room / 2),
            Placement::Anywhere | Placement::Centred => (
                self.rng.random_range(0..=room),
                self.rng.random_range(0..=room),
            ),
            Placement::OffGrid => {
                // The object's middle within 6 pixels of a middle line, on one axis.
                let straddling =
                    (middle - side / 2).saturating_sub(6)..=(middle - side / 2 + 6).min(room);
                let across = self.rng.random_range(straddling);
                let along = self.rng.random_range(0..=room);
                if self.rng.random_bool(0.5) {
                    (across, along)
                } else {
                    (along, across)
                }
            }
            Placement::Quarters => {
                // One object per quarter: the `index`-th of a shuffled order per scene.
                if index == 0 {
                    self.quarters = [(0, 0), (0, 1), (1, 0), (1, 1)];
                    rand::seq::SliceRandom::shuffle(&mut self.quarters[..], &mut self.rng);
                }
                let (row, column) = self.quarters[index % 4];
                let cell = CANVAS_SIDE / 2;
                let slack = cell.saturating_sub(side);
                (
                    column * cell + self.rng.random_range(0..=slack),
                    row * cell + self.rng.random_range(0..=slack),
                )
            }
        }
    }

    /// The next `count` scenes.
    pub fn scenes(&mut self, count: usize) -> Vec<Scene> {
        (0..count).map(|_| self.next_scene()).collect()
    }
}
