//! Painting a scene: the background, then each object resized and tinted, its brightness
//! taken as opacity so the background shows through the dark parts of the image.

use rand::Rng;
use rand::rngs::StdRng;

use super::{Background, CANVAS_SIDE, COLOURS, SceneObject};
use crate::data::fashion_mnist::{FashionMnist, IMAGE_SIDE};

/// A background's pixels, grey levels drawn from `rng`.
pub fn background(kind: Background, rng: &mut StdRng) -> Vec<u8> {
    let side = CANVAS_SIDE;
    let mut pixels = vec![0u8; side * side * 3];
    let mut fill = |level: &mut dyn FnMut(usize, usize) -> u8| {
        for y in 0..side {
            for x in 0..side {
                let value = level(x, y);
                pixels[(y * side + x) * 3..][..3].fill(value);
            }
        }
    };
    match kind {
        Background::Black => {}
        Background::Grey => {
            let level = rng.random_range(45..=95);
            fill(&mut |_, _| level);
        }
        Background::Noisy => {
            let amplitude = rng.random_range(50..=110);
            let mut noise = |_, _| rng.random_range(0..=amplitude);
            fill(&mut noise);
        }
        Background::Striped | Background::Checked => {
            let period = rng.random_range(4..=10usize);
            let (dark, light) = (rng.random_range(0..=25), rng.random_range(55..=95));
            let orientation = rng.random_range(0..3);
            let striped = kind == Background::Striped;
            fill(&mut |x, y| {
                let band = |v: usize| (v / period) % 2 == 1;
                let on = if striped {
                    match orientation {
                        0 => band(x),
                        1 => band(y),
                        _ => band(x + y),
                    }
                } else {
                    band(x) != band(y)
                };
                if on { light } else { dark }
            });
        }
    }
    pixels
}

/// Bilinear sample of a 28×28 source image drawn `side` pixels wide, at drawn pixel
/// (`x`, `y`), sampling pixel centres.
fn sample(image: &[u8], side: usize, x: usize, y: usize) -> f32 {
    let scale = IMAGE_SIDE as f32 / side as f32;
    let at = |v: usize| ((v as f32 + 0.5) * scale - 0.5).clamp(0.0, (IMAGE_SIDE - 1) as f32);
    let (sx, sy) = (at(x), at(y));
    let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(IMAGE_SIDE - 1), (y0 + 1).min(IMAGE_SIDE - 1));
    let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
    let pixel = |x: usize, y: usize| f32::from(image[y * IMAGE_SIDE + x]);
    let top = pixel(x0, y0) * (1.0 - fx) + pixel(x1, y0) * fx;
    let bottom = pixel(x0, y1) * (1.0 - fx) + pixel(x1, y1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// Paints `objects` over `pixels` in order, each resized to its side and tinted to its
/// colour at its brightness.
pub fn objects(pixels: &mut [u8], images: &FashionMnist, objects: &[SceneObject]) {
    for object in objects {
        let image = images.image(object.source);
        let tint = COLOURS[object.colour]
            .1
            .map(|c| f32::from(c) * object.brightness);
        for y in 0..object.side {
            for x in 0..object.side {
                let alpha = sample(image, object.side, x, y) / 255.0;
                if alpha <= 0.0 {
                    continue;
                }
                let at = ((object.origin.1 + y) * CANVAS_SIDE + object.origin.0 + x) * 3;
                for (channel, &tint) in tint.iter().enumerate() {
                    let under = f32::from(pixels[at + channel]);
                    pixels[at + channel] = (under + (tint - under) * alpha).round() as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_size_samples_every_pixel_as_it_is() {
        let image: Vec<u8> = (0..IMAGE_SIDE * IMAGE_SIDE)
            .map(|i| (i % 251) as u8)
            .collect();
        for y in 0..IMAGE_SIDE {
            for x in 0..IMAGE_SIDE {
                assert_eq!(
                    sample(&image, IMAGE_SIDE, x, y),
                    f32::from(image[y * IMAGE_SIDE + x])
                );
            }
        }
    }

    #[test]
    fn every_background_stays_dark_enough_for_the_objects() {
        let mut rng = <StdRng as rand::SeedableRng>::seed_from_u64(7);
        for kind in [
            Background::Black,
            Background::Grey,
            Background::Noisy,
            Background::Striped,
            Background::Checked,
        ] {
            let pixels = background(kind, &mut rng);
            assert_eq!(pixels.len(), CANVAS_SIDE * CANVAS_SIDE * 3);
            assert!(pixels.iter().all(|&p| p <= 110), "{kind:?}");
            let grey = pixels.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]);
            assert!(grey, "{kind:?}");
            assert_eq!(pixels.iter().all(|&p| p == 0), kind == Background::Black);
        }
    }
}
