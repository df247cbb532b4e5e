//! Scene geometry: where an object's ink lies, how much two objects may overlap, and how two
//! objects are arranged (left of, above, diagonal) by the centres of their ink.

use crate::data::fashion_mnist::IMAGE_SIDE;

/// Source pixels at least this bright count as an object's ink.
const INK: u8 = 40;
/// Two objects' ink boxes may share at most this share of the smaller box.
pub const MAX_OVERLAP: f32 = 0.15;
/// Ink centres of two related objects are at least this far apart, in pixels.
pub const MIN_DISTANCE: f32 = 10.0;
/// Directions closer than this to a boundary between "level", "diagonal" and "in line"
/// are not drawn, so no caption hangs on a pixel (degrees).
pub const ANGLE_MARGIN: f32 = 6.0;

/// An axis-aligned box on the canvas, in pixels; `x1`, `y1` exclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InkBox {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl InkBox {
    /// The box around a 28×28 source image's ink, drawn `side` pixels wide at `origin`.
    pub fn of(image: &[u8], origin: (usize, usize), side: usize) -> Self {
        let (mut x0, mut y0, mut x1, mut y1) = (IMAGE_SIDE, IMAGE_SIDE, 0, 0);
        for (at, &value) in image.iter().enumerate() {
            if value >= INK {
                let (x, y) = (at % IMAGE_SIDE, at / IMAGE_SIDE);
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
            }
        }
        if x1 == 0 {
            // No ink at all: the whole square.
            (x0, y0, x1, y1) = (0, 0, IMAGE_SIDE, IMAGE_SIDE);
        }
        let scale = side as f32 / IMAGE_SIDE as f32;
        let (ox, oy) = (origin.0 as f32, origin.1 as f32);
        Self {
            x0: ox + x0 as f32 * scale,
            y0: oy + y0 as f32 * scale,
            x1: ox + x1 as f32 * scale,
            y1: oy + y1 as f32 * scale,
        }
    }

    pub fn centre(&self) -> (f32, f32) {
        ((self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0)
    }

    fn area(&self) -> f32 {
        (self.x1 - self.x0).max(0.0) * (self.y1 - self.y0).max(0.0)
    }

    /// Whether the two boxes share more than [`MAX_OVERLAP`] of the smaller one.
    pub fn overlaps_too_much(&self, other: &Self) -> bool {
        let shared = InkBox {
            x0: self.x0.max(other.x0),
            y0: self.y0.max(other.y0),
            x1: self.x1.min(other.x1),
            y1: self.y1.min(other.y1),
        };
        shared.area() > MAX_OVERLAP * self.area().min(other.area())
    }
}

/// Where one object stands relative to another: `horizontal` −1 left of it, +1 right of
/// it, 0 level with it; `vertical` −1 above it, +1 below it, 0 level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Arrangement {
    pub horizontal: i8,
    pub vertical: i8,
}

/// How two objects line up, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alignment {
    /// Side by side.
    Row,
    /// One above the other.
    Column,
    Diagonal,
}

impl Arrangement {
    /// Where the object centred at `a` stands relative to the one at `b`; `None` when they
    /// are too close, or their direction too near a boundary, to say.
    pub fn between(a: (f32, f32), b: (f32, f32)) -> Option<Self> {
        let (dx, dy) = (a.0 - b.0, a.1 - b.1);
        let angle = dy.abs().atan2(dx.abs()).to_degrees();
        let near = |boundary: f32| (angle - boundary).abs() < ANGLE_MARGIN;
        if dx.hypot(dy) < MIN_DISTANCE || near(22.5) || near(67.5) {
            return None;
        }
        Some(Self::nearest(a, b))
    }

    /// [`Self::between`] without the margins: the arrangement the direction falls in.
    pub fn nearest(a: (f32, f32), b: (f32, f32)) -> Self {
        let (dx, dy) = (a.0 - b.0, a.1 - b.1);
        let angle = dy.abs().atan2(dx.abs()).to_degrees();
        let sign = |d: f32| if d < 0.0 { -1 } else { 1 };
        if angle < 22.5 {
            Self {
                horizontal: sign(dx),
                vertical: 0,
            }
        } else if angle > 67.5 {
            Self {
                horizontal: 0,
                vertical: sign(dy),
            }
        } else {
            Self {
                horizontal: sign(dx),
                vertical: sign(dy),
            }
        }
    }

    /// The same arrangement seen from the other object.
    pub fn reversed(self) -> Self {
        Self {
            horizontal: -self.horizontal,
            vertical: -self.vertical,
        }
    }

    pub fn alignment(self) -> Alignment {
        match (self.horizontal, self.vertical) {
            (_, 0) => Alignment::Row,
            (0, _) => Alignment::Column,
            _ => Alignment::Diagonal,
        }
    }

    /// Whether a caption puts the object this arrangement starts from first: the left one
    /// of a row, the upper one otherwise.
    pub fn reads_first(self) -> bool {
        match self.alignment() {
            Alignment::Row => self.horizontal < 0,
            _ => self.vertical < 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_are_level_diagonal_or_in_line_with_a_margin_between() {
        let at = |x, y| Arrangement::between((x, y), (32.0, 32.0));
        let left = Arrangement {
            horizontal: -1,
            vertical: 0,
        };
        assert_eq!(at(10.0, 33.0), Some(left));
        assert_eq!(at(54.0, 30.0), Some(left.reversed()));
        assert_eq!(at(33.0, 10.0).unwrap().alignment(), Alignment::Column);
        let up_right = at(50.0, 14.0).unwrap();
        assert_eq!((up_right.horizontal, up_right.vertical), (1, -1));
        assert!(up_right.reads_first());
        // 22.5° and a hair: too near the boundary to call.
        assert_eq!(at(52.0, 32.0 - 20.0 * 0.42), None);
        // Too close.
        assert_eq!(at(36.0, 36.0), None);
    }

    #[test]
    fn boxes_may_touch_but_not_cover_each_other() {
        let square = |x: f32, y: f32| InkBox {
            x0: x,
            y0: y,
            x1: x + 10.0,
            y1: y + 10.0,
        };
        assert!(!square(0.0, 0.0).overlaps_too_much(&square(9.0, 0.0)));
        assert!(square(0.0, 0.0).overlaps_too_much(&square(5.0, 5.0)));
    }

    #[test]
    fn an_ink_box_scales_with_the_drawn_side() {
        let mut image = vec![0u8; IMAGE_SIDE * IMAGE_SIDE];
        image[3 * IMAGE_SIDE + 7] = 200;
        image[20 * IMAGE_SIDE + 14] = 200;
        let drawn = InkBox::of(&image, (10, 5), 56);
        assert_eq!(
            (drawn.x0, drawn.y0, drawn.x1, drawn.y1),
            (24.0, 11.0, 40.0, 47.0)
        );
    }
}
