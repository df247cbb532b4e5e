//! An image as any protocol delivers it — an encoded file, raw pixels, or a tensor already
//! in the model's layout — and its preparation into model input. Classification and
//! captioning both take images this way.

use kiln_zoo::image_input::ImageSpec;

use super::decode_off_thread_if_large;
use crate::error::KilnError;

/// One image of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageInput {
    /// PNG, JPEG or WebP bytes.
    Encoded(Vec<u8>),
    /// Pixel values 0–255, height × width × channels, row-major.
    Pixels {
        height: usize,
        width: usize,
        channels: usize,
        values: Vec<f32>,
    },
    /// Already the model's input: `[channels, height, width]`, normalised.
    Tensor(Vec<f32>),
}

impl ImageInput {
    /// Bytes the input takes, to tell whether preparing it may stall an async worker.
    pub fn byte_len(&self) -> usize {
        match self {
            ImageInput::Encoded(bytes) => bytes.len(),
            ImageInput::Pixels { values, .. } | ImageInput::Tensor(values) => values.len() * 4,
        }
    }

    /// The model input for `spec`: decoded, resized and normalised as the spec says.
    pub fn prepare(self, spec: &ImageSpec) -> Result<Vec<f32>, KilnError> {
        match self {
            ImageInput::Encoded(bytes) => Ok(spec.decode(&bytes)?),
            ImageInput::Pixels {
                height,
                width,
                channels,
                values,
            } => {
                if height
                    .checked_mul(width)
                    .and_then(|n| n.checked_mul(channels))
                    != Some(values.len())
                {
                    return Err(KilnError::unprocessable(format!(
                        "{} pixel values do not fill {height}×{width}×{channels}",
                        values.len()
                    )));
                }
                Ok(spec.from_pixels(height, width, channels, &values)?)
            }
            ImageInput::Tensor(values) => {
                if values.len() != spec.input_len() {
                    return Err(KilnError::unprocessable(format!(
                        "an image tensor has {} values; this model takes {}",
                        values.len(),
                        spec.input_len()
                    )));
                }
                if values.iter().any(|v| !v.is_finite()) {
                    return Err(KilnError::unprocessable("FP32 input holds NaN or infinity"));
                }
                Ok(values)
            }
        }
    }
}

/// Prepare every image for `spec`, off the async workers when they are large.
pub async fn prepare_all(
    spec: &ImageSpec,
    images: Vec<ImageInput>,
) -> Result<Vec<Vec<f32>>, KilnError> {
    let bytes = images.iter().map(ImageInput::byte_len).sum();
    let spec = spec.clone();
    decode_off_thread_if_large(bytes, move || {
        images
            .into_iter()
            .map(|image| image.prepare(&spec))
            .collect()
    })
    .await
}
