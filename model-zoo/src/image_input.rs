//! Turning user images into model input: decode PNG/JPEG/WebP, turn upright as the EXIF
//! orientation says, convert colour, resize (and centre-crop) and normalise, as a model's
//! input spec says. Output is `[channels, height, width]` f32 in row-major order.

use std::io::Cursor;

use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use serde::{Deserialize, Serialize};

use crate::error::{Result, ZooError};

/// Largest decoded image accepted by default (pixels); guards against decompression bombs.
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;

/// What a vision model expects as input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Per-channel mean subtracted after scaling pixels to 0..1.
    #[serde(default)]
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided after subtracting the mean.
    #[serde(default)]
    pub std: Vec<f32>,
    /// Largest image (width × height) accepted before decoding.
    #[serde(default = "default_max_pixels")]
    pub max_pixels: u64,
    /// Resize so the shorter side has this many pixels, keeping the aspect ratio, then crop
    /// the centre `height`×`width` (torchvision's `Resize` + `CenterCrop`). Without it the
    /// image is stretched to `height`×`width`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_shorter: Option<usize>,
}

fn default_max_pixels() -> u64 {
    DEFAULT_MAX_PIXELS
}

impl ImageSpec {
    /// Number of f32 values in one preprocessed image.
    pub fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Input tensor shape for one image.
    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// Check that the spec itself makes sense (used when a model config is loaded).
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(ZooError::InvalidInput(m));
        if self.channels != 1 && self.channels != 3 {
            return fail(format!(
                "input channels must be 1 or 3, not {}",
                self.channels
            ));
        }
        if self.height == 0 || self.width == 0 {
            return fail("input height and width must be positive".into());
        }
        for (name, values) in [("mean", &self.mean), ("std", &self.std)] {
            if !values.is_empty() && values.len() != 1 && values.len() != self.channels {
                return fail(format!("{name} needs 1 or {} values", self.channels));
            }
        }
        if self.std.contains(&0.0) {
            return fail("std must not contain zero".into());
        }
        if let Some(shorter) = self.resize_shorter
            && shorter < self.height.max(self.width)
        {
            return fail(format!(
                "resize_shorter {shorter} is smaller than the {}×{} crop",
                self.height, self.width
            ));
        }
        Ok(())
    }

    fn normalise(&self, channel: usize, value_0_255: f32) -> f32 {
        let pick = |v: &[f32], default: f32| match v.len() {
            0 => default,
            1 => v[0],
            _ => v[channel],
        };
        (value_0_255 / 255.0 - pick(&self.mean, 0.0)) / pick(&self.std, 1.0)
    }

    /// Decode an encoded image (PNG, JPEG or WebP, format sniffed from the bytes) into model
    /// input.
    pub fn decode(&self, bytes: &[u8]) -> Result<Vec<f32>> {
        if bytes.is_empty() {
            return Err(ZooError::InvalidImage("the image is empty".into()));
        }
        let reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ZooError::InvalidImage(e.to_string()))?;
        match reader.format() {
            None => {
                return Err(ZooError::InvalidImage(
                    "unrecognised image format (expected PNG, JPEG or WebP)".into(),
                ));
            }
            // The JPEG decoder fills a missing end with grey instead of failing.
            Some(ImageFormat::Jpeg) if !jpeg_is_complete(bytes) => {
                return Err(ZooError::InvalidImage(
                    "the JPEG data is truncated (no end-of-image marker after its last scan)"
                        .into(),
                ));
            }
            Some(_) => {}
        }
        // Read the header first so a decompression bomb is refused before any pixel is decoded.
        let (width, height) = reader
            .into_dimensions()
            .map_err(|e| ZooError::InvalidImage(e.to_string()))?;
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(ZooError::ImageTooLarge {
                width,
                height,
                limit: self.max_pixels,
            });
        }
        let mut reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ZooError::InvalidImage(e.to_string()))?;
        let mut limits = Limits::default();
        limits.max_image_width = Some(width);
        limits.max_image_height = Some(height);
        reader.limits(limits);
        let invalid = |e: image::ImageError| ZooError::InvalidImage(e.to_string());
        let mut decoder = reader.into_decoder().map_err(invalid)?;
        // A photo taken with the camera turned is stored sideways, with a tag saying so.
        let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
        let mut image = DynamicImage::from_decoder(decoder).map_err(invalid)?;
        image.apply_orientation(orientation);
        Ok(self.preprocess(image))
    }

    /// Resize (and crop) to the model's size, and normalise, a decoded image.
    pub fn preprocess(&self, image: DynamicImage) -> Vec<f32> {
        let (w, h) = (self.width as u32, self.height as u32);
        let image = match self.resize_shorter {
            _ if image.width() == w && image.height() == h => image,
            Some(shorter) => resize_and_centre_crop(image, shorter as u32, w, h),
            None => image.resize_exact(w, h, FilterType::Triangle),
        };
        let plane = self.height * self.width;
        let mut out = vec![0.0; self.input_len()];
        if self.channels == 1 {
            for (i, p) in image.to_luma8().pixels().enumerate() {
                out[i] = self.normalise(0, f32::from(p.0[0]));
            }
        } else {
            for (i, p) in image.to_rgb8().pixels().enumerate() {
                for c in 0..3 {
                    out[c * plane + i] = self.normalise(c, f32::from(p.0[c]));
                }
            }
        }
        out
    }

    /// Model input from raw pixel values (0–255) laid out height × width × channels, as
    /// sent in JSON. The size must match the model's input exactly.
    pub fn from_pixels(
        &self,
        height: usize,
        width: usize,
        channels: usize,
        hwc: &[f32],
    ) -> Result<Vec<f32>> {
        if height != self.height || width != self.width || channels != self.channels {
            return Err(ZooError::InvalidInput(format!(
                "pixels are {height}×{width}×{channels} but the model expects {}×{}×{}",
                self.height, self.width, self.channels
            )));
        }
        debug_assert_eq!(hwc.len(), height * width * channels);
        if let Some(bad) = hwc
            .iter()
            .find(|v| !v.is_finite() || **v < 0.0 || **v > 255.0)
        {
            return Err(ZooError::InvalidInput(format!(
                "pixel value {bad} is outside 0..=255"
            )));
        }
        let plane = height * width;
        let mut out = vec![0.0; self.input_len()];
        for (i, chunk) in hwc.chunks_exact(channels).enumerate() {
            for (c, &v) in chunk.iter().enumerate() {
                out[c * plane + i] = self.normalise(c, v);
            }
        }
        Ok(out)
    }
}

/// Whether a JPEG's last scan is followed by its end-of-image marker (`FF D9`). Inside scan
/// data a literal `FF` byte is always followed by `00` or a restart marker, so the marker
/// cannot appear there by chance; a file cut anywhere after its headers lacks it.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    const START_OF_SCAN: [u8; 2] = [0xFF, 0xDA];
    const END_OF_IMAGE: [u8; 2] = [0xFF, 0xD9];
    let last_scan = bytes
        .windows(2)
        .rposition(|w| w == START_OF_SCAN)
        .unwrap_or(0);
    bytes[last_scan..].windows(2).any(|w| w == END_OF_IMAGE)
}

/// What scaling the shorter side to `shorter` pixels and cropping the centre
/// `width`×`height` gives, up to sub-pixel offsets. The crop comes first, so only the part
/// that is kept gets resized and a very elongated image cannot blow up in memory.
fn resize_and_centre_crop(
    image: DynamicImage,
    shorter: u32,
    width: u32,
    height: u32,
) -> DynamicImage {
    let scale = f64::from(shorter) / f64::from(image.width().min(image.height()));
    let region = |side: u32, limit: u32| ((f64::from(side) / scale).round() as u32).clamp(1, limit);
    let (crop_w, crop_h) = (region(width, image.width()), region(height, image.height()));
    let left = (image.width() - crop_w) / 2;
    let top = (image.height() - crop_h) / 2;
    image
        .crop_imm(left, top, crop_w, crop_h)
        .resize_exact(width, height, FilterType::Triangle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray_spec() -> ImageSpec {
        ImageSpec {
            channels: 1,
            height: 4,
            width: 4,
            mean: vec![0.5],
            std: vec![0.5],
            max_pixels: 10_000,
            resize_shorter: None,
        }
    }

    fn png(width: u32, height: u32, value: u8) -> Vec<u8> {
        let img = image::GrayImage::from_pixel(width, height, image::Luma([value]));
        let mut bytes = Vec::new();
        DynamicImage::ImageLuma8(img)
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        bytes
    }

    #[test]
    fn decodes_and_normalises_a_png() {
        let input = gray_spec().decode(&png(4, 4, 255)).unwrap();
        assert_eq!(input, vec![1.0; 16]);
    }

    #[test]
    fn resizes_to_the_model_size() {
        let input = gray_spec().decode(&png(9, 7, 0)).unwrap();
        assert_eq!(input, vec![-1.0; 16]);
    }

    #[test]
    fn resize_shorter_keeps_the_centre() {
        // A 12×4 image, black with a white 4×4 middle: resizing the shorter side to 4 and
        // cropping 4×4 keeps only the white part.
        let mut img = image::GrayImage::from_pixel(12, 4, image::Luma([0]));
        for x in 4..8 {
            for y in 0..4 {
                img.put_pixel(x, y, image::Luma([255]));
            }
        }
        let spec = ImageSpec {
            resize_shorter: Some(4),
            ..gray_spec()
        };
        let input = spec.preprocess(DynamicImage::ImageLuma8(img));
        assert_eq!(input, vec![1.0; 16]);
    }

    #[test]
    fn resize_shorter_must_cover_the_crop() {
        let spec = ImageSpec {
            resize_shorter: Some(3),
            ..gray_spec()
        };
        assert!(spec.validate().is_err());
    }

    #[test]
    fn a_truncated_jpeg_is_refused() {
        let img = image::GrayImage::from_fn(16, 16, |x, y| image::Luma([(x * 16 + y) as u8]));
        let mut jpeg = Vec::new();
        DynamicImage::ImageLuma8(img)
            .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        assert!(gray_spec().decode(&jpeg).is_ok());
        let cut = &jpeg[..jpeg.len() / 2 + 20];
        let err = gray_spec().decode(cut).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn decodes_webp() {
        let img = image::RgbImage::from_pixel(4, 4, image::Rgb([255, 255, 255]));
        let mut bytes = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::WebP)
            .unwrap();
        assert_eq!(gray_spec().decode(&bytes).unwrap(), vec![1.0; 16]);
    }

    /// A JPEG with an EXIF APP1 segment holding only the orientation tag.
    fn jpeg_with_orientation(image: DynamicImage, orientation: u16) -> Vec<u8> {
        let mut jpeg = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        let mut tiff = b"II*\0\x08\0\0\0".to_vec(); // little-endian, first IFD at 8
        tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&u32::from(orientation).to_le_bytes());
        tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
        let payload = [b"Exif\0\0".as_slice(), &tiff].concat();
        let mut app1 = vec![0xFF, 0xE1];
        app1.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        app1.extend_from_slice(&payload);
        [&jpeg[..2], &app1, &jpeg[2..]].concat()
    }

    #[test]
    fn turns_photos_upright_by_their_exif_orientation() {
        // 4 wide, 2 tall, the left column white; orientation 6 means "rotate 90° clockwise
        // to view", which makes that column the top row of a 2×4 image.
        let mut img = image::GrayImage::from_pixel(4, 2, image::Luma([0]));
        img.put_pixel(0, 0, image::Luma([255]));
        img.put_pixel(0, 1, image::Luma([255]));
        let jpeg = jpeg_with_orientation(DynamicImage::ImageLuma8(img), 6);
        let spec = ImageSpec {
            height: 4,
            width: 2,
            ..gray_spec()
        };
        let input = spec.decode(&jpeg).unwrap();
        let white: Vec<bool> = input.iter().map(|&v| v > 0.5).collect();
        assert_eq!(
            white,
            [true, true, false, false, false, false, false, false]
        );
    }

    #[test]
    fn refuses_images_over_the_pixel_limit_before_decoding() {
        let err = gray_spec().decode(&png(200, 200, 0)).unwrap_err();
        assert!(matches!(err, ZooError::ImageTooLarge { .. }), "{err}");
    }

    #[test]
    fn rejects_garbage_and_truncated_images() {
        assert!(gray_spec().decode(b"hello").is_err());
        assert!(gray_spec().decode(b"").is_err());
        let bytes = png(4, 4, 1);
        assert!(gray_spec().decode(&bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn pixels_must_match_the_model_size_and_range() {
        let spec = gray_spec();
        assert!(spec.from_pixels(4, 4, 1, &[0.0; 16]).is_ok());
        assert!(spec.from_pixels(3, 4, 1, &[0.0; 12]).is_err());
        let mut bad = [0.0; 16];
        bad[3] = f32::NAN;
        assert!(spec.from_pixels(4, 4, 1, &bad).is_err());
    }
}
