//! Fashion-MNIST (Zalando, 2017) as shipped by Debian's `dataset-fashion-mnist` package.

use std::path::{Path, PathBuf};

use crate::data::idx::read_idx_file;
use crate::error::{Result, ZooError};

/// Where Debian installs the dataset.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Class names in label order.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// How many classes there are.
pub const CLASSES: usize = CLASS_NAMES.len();

/// Side length of every image.
pub const IMAGE_SIDE: usize = 28;

/// The two published splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// Images (28×28 grayscale bytes, white object on black) with their class labels.
#[derive(Debug, Clone)]
pub struct FashionMnist {
    split: Split,
    images: Vec<u8>,
    labels: Vec<u8>,
}

impl FashionMnist {
    /// Load one split from `dir` (files `train-*-ubyte.gz` / `t10k-*-ubyte.gz`).
    pub fn load(dir: &Path, split: Split) -> Result<Self> {
        let file = |kind: &str| -> PathBuf {
            dir.join(format!(
                "{}-{kind}-idx{}-ubyte.gz",
                split.prefix(),
                if kind == "images" { 3 } else { 1 }
            ))
        };
        let images_path = file("images");
        let labels_path = file("labels");
        let images = read_idx_file(&images_path)?;
        let labels = read_idx_file(&labels_path)?;
        let count = labels.dims.first().copied().unwrap_or(0);
        if images.dims != [count, IMAGE_SIDE, IMAGE_SIDE] {
            return Err(ZooError::Format {
                path: images_path,
                format: "Fashion-MNIST images",
                reason: format!(
                    "dimensions {:?} do not match {count} labels of 28×28",
                    images.dims
                ),
            });
        }
        if let Some(&bad) = labels
            .data
            .iter()
            .find(|&&l| l as usize >= CLASS_NAMES.len())
        {
            return Err(ZooError::Format {
                path: labels_path,
                format: "Fashion-MNIST labels",
                reason: format!("label {bad} is out of range"),
            });
        }
        Ok(Self {
            split,
            images: images.data,
            labels: labels.data,
        })
    }

    /// Which published split this is.
    pub fn split(&self) -> Split {
        self.split
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The raw pixels of image `index` (row-major, 784 bytes).
    pub fn image(&self, index: usize) -> &[u8] {
        let size = IMAGE_SIDE * IMAGE_SIDE;
        &self.images[index * size..(index + 1) * size]
    }

    pub fn label(&self, index: usize) -> usize {
        self.labels[index] as usize
    }
}

/// How LeNet models trained here expect their input: 28×28 grayscale, normalised with the
/// training set's pixel mean and standard deviation.
pub fn image_spec() -> crate::image_input::ImageSpec {
    crate::image_input::ImageSpec {
        channels: 1,
        height: IMAGE_SIDE,
        width: IMAGE_SIDE,
        mean: vec![0.2860],
        std: vec![0.3530],
        max_pixels: crate::image_input::DEFAULT_MAX_PIXELS,
        resize_shorter: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_debian_test_split() {
        let data = FashionMnist::load(Path::new(DEFAULT_DIR), Split::Test)
            .expect("install Debian's dataset-fashion-mnist package");
        assert_eq!(data.len(), 10_000);
        assert_eq!(data.image(0).len(), 784);
        // The first test image of Fashion-MNIST is an ankle boot.
        assert_eq!(CLASS_NAMES[data.label(0)], "Ankle boot");
    }

    #[test]
    fn a_missing_directory_names_the_file() {
        let err = FashionMnist::load(Path::new("/nonexistent"), Split::Test).unwrap_err();
        assert!(
            err.to_string().contains("t10k-images-idx3-ubyte.gz"),
            "{err}"
        );
    }
}
