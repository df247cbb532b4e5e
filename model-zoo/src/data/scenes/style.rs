//! How scenes vary: the distribution the captioners train on, and the shifted ones they
//! are evaluated on besides it.

use super::Background;

/// Where a scene's objects go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Anywhere the whole object fits on the canvas.
    Anywhere,
    /// One object in the middle of the canvas.
    Centred,
    /// Each object straddles one of the canvas's middle lines, where the old 2×2 grid had
    /// its cell boundaries.
    OffGrid,
    /// One object per quarter of the canvas, jittered inside it, at its source size: how
    /// the first scenes were drawn.
    Quarters,
}

/// One distribution of scenes.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneStyle {
    /// A short name for tables and seeds.
    pub name: &'static str,
    /// Relative frequency of scenes with 1, 2, 3 and 4 objects.
    pub object_weights: [u32; 4],
    /// Range of an object's side relative to its 28-pixel source image.
    pub scale: (f32, f32),
    pub placement: Placement,
    /// Whether objects take one of the colours; otherwise every object is grey-white.
    pub tinted: bool,
    /// The backgrounds drawn from, equally often.
    pub backgrounds: &'static [Background],
}

const EVERY_BACKGROUND: &[Background] = &[
    Background::Black,
    Background::Black,
    Background::Grey,
    Background::Noisy,
    Background::Striped,
    Background::Checked,
];

impl SceneStyle {
    /// What the captioners train on: one to four objects anywhere, at 0.6–1.6× their
    /// source size, tinted, on plain, noisy or textured backgrounds (black twice as often).
    pub fn training() -> Self {
        Self {
            name: "anywhere",
            object_weights: [3, 4, 2, 1],
            scale: (0.6, 1.6),
            placement: Placement::Anywhere,
            tinted: true,
            backgrounds: EVERY_BACKGROUND,
        }
    }

    /// The held-out distributions `kiln eval` reports besides [`Self::training`].
    pub fn shifted() -> Vec<Self> {
        let single_or_pair = [1, 1, 0, 0];
        let black: &[Background] = &[Background::Black];
        vec![
            Self {
                name: "centred",
                object_weights: [1, 0, 0, 0],
                scale: (1.0, 1.0),
                placement: Placement::Centred,
                tinted: true,
                backgrounds: black,
            },
            Self {
                name: "off-grid",
                object_weights: single_or_pair,
                scale: (0.8, 1.2),
                placement: Placement::OffGrid,
                tinted: true,
                backgrounds: black,
            },
            Self {
                name: "small",
                object_weights: single_or_pair,
                scale: (0.6, 0.75),
                placement: Placement::Anywhere,
                tinted: true,
                backgrounds: EVERY_BACKGROUND,
            },
            Self {
                name: "large",
                object_weights: single_or_pair,
                scale: (1.35, 1.6),
                placement: Placement::Anywhere,
                tinted: true,
                backgrounds: EVERY_BACKGROUND,
            },
            Self {
                name: "grey on black",
                object_weights: single_or_pair,
                scale: (0.6, 1.6),
                placement: Placement::Anywhere,
                tinted: false,
                backgrounds: black,
            },
            Self::quarters(),
        ]
    }

    /// The training distribution, then the shifted ones: what `kiln eval` reports.
    pub fn all() -> Vec<Self> {
        std::iter::once(Self::training())
            .chain(Self::shifted())
            .collect()
    }

    /// The first scenes' distribution: objects in their own quarter, source size, black.
    pub fn quarters() -> Self {
        Self {
            name: "quarters",
            object_weights: [1, 1, 1, 1],
            scale: (1.0, 1.0),
            placement: Placement::Quarters,
            tinted: true,
            backgrounds: &[Background::Black],
        }
    }

    /// A seed offset that keeps each style's scenes apart from every other style's.
    pub(super) fn seed(&self) -> u64 {
        self.name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
    }
}
