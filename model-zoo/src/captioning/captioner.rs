//! A loaded captioner: images in, captions out, by greedy or beam search.
//!
//! All images of a call are searched together: every step runs one batched decoder pass
//! over the live hypotheses of every image (each image keeps up to `beam_size`), so a batch
//! of requests shares its forward passes as its images share the encoder's.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::captioning::vocabulary::{BOS, CaptionVocabulary, EOS};
use crate::error::{Result, ZooError};
use crate::models::captioner::{CaptionNet, CaptionerConfig, IMAGE_SIDE};
use crate::weights::{load_weights, save_burnpack};

/// Largest beam a request may ask for.
pub const MAX_BEAM_SIZE: usize = 16;

/// Which decoder, with its sizes.
#[derive(Debug, Clone)]
pub enum CaptionerArchitecture {
    Lstm(CaptionerConfig),
    Transformer(CaptionerConfig),
}

impl CaptionerArchitecture {
    pub fn name(&self) -> &'static str {
        match self {
            CaptionerArchitecture::Lstm(_) => "captioner-lstm",
            CaptionerArchitecture::Transformer(_) => "captioner-transformer",
        }
    }

    pub fn init(&self, device: &Device) -> CaptionNet {
        match self {
            CaptionerArchitecture::Lstm(config) => CaptionNet::Lstm(config.init_lstm(device)),
            CaptionerArchitecture::Transformer(config) => {
                CaptionNet::Transformer(config.init_transformer(device))
            }
        }
    }
}

/// How to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptionOptions {
    /// Hypotheses kept per image; 1 is greedy decoding.
    pub beam_size: usize,
    /// Most words in a caption (the end token not counted).
    pub max_tokens: usize,
}

impl Default for CaptionOptions {
    fn default() -> Self {
        Self {
            beam_size: 1,
            max_tokens: 24,
        }
    }
}

/// One image's caption.
#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    pub text: String,
    /// Word ids, without the start and end tokens.
    pub tokens: Vec<u32>,
    /// Sum of the log-probabilities of the words and the end token (when reached).
    pub score: f32,
}

pub struct Captioner {
    net: CaptionNet,
    device: Device,
    vocabulary: CaptionVocabulary,
}

/// A partial caption of one image.
#[derive(Debug, Clone)]
struct Hypothesis {
    image: usize,
    tokens: Vec<u32>,
    score: f32,
}

impl Captioner {
    pub fn load(
        architecture: &CaptionerArchitecture,
        weights: &Path,
        device: &Device,
    ) -> Result<Self> {
        let mut net = architecture.init(device);
        load_weights(&mut net, weights, &[])?;
        Ok(Self::from_net(net, device))
    }

    pub fn from_net(net: CaptionNet, device: &Device) -> Self {
        Self {
            net,
            device: device.clone(),
            vocabulary: CaptionVocabulary,
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        save_burnpack(&self.net, path)
    }

    pub fn vocabulary(&self) -> &CaptionVocabulary {
        &self.vocabulary
    }

    /// Most words a caption can have with this decoder.
    pub fn max_tokens_limit(&self) -> usize {
        // The decoder reads `<bos>` and every word before the last prediction.
        self.net.max_tokens().map_or(256, |positions| positions - 1)
    }

    pub fn check_options(&self, options: &CaptionOptions) -> Result<()> {
        if !(1..=MAX_BEAM_SIZE).contains(&options.beam_size) {
            return Err(ZooError::InvalidInput(format!(
                "beam_size must be between 1 and {MAX_BEAM_SIZE}, not {}",
                options.beam_size
            )));
        }
        let limit = self.max_tokens_limit();
        if !(1..=limit).contains(&options.max_tokens) {
            return Err(ZooError::InvalidInput(format!(
                "max_tokens must be between 1 and {limit}, not {}",
                options.max_tokens
            )));
        }
        Ok(())
    }

    /// Captions for images given as `[3, 64, 64]` floats each (pixels scaled to 0..1).
    pub fn caption(&self, images: &[Vec<f32>], options: &CaptionOptions) -> Result<Vec<Caption>> {
        self.check_options(options)?;
        let side = IMAGE_SIDE;
        if let Some(bad) = images.iter().find(|image| image.len() != 3 * side * side) {
            return Err(ZooError::InvalidInput(format!(
                "an image needs {} values (3×{side}×{side}), not {}",
                3 * side * side,
                bad.len()
            )));
        }
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let pixels: Vec<f32> = images.iter().flatten().copied().collect();
        let batch = Tensor::<4>::from_data(
            TensorData::new(pixels, [images.len(), 3, side, side]),
            &self.device,
        );
        let memory = self.net.encode(batch);
        let beam = options.beam_size;

        let mut live: Vec<Hypothesis> = (0..images.len())
            .map(|image| Hypothesis {
                image,
                tokens: vec![BOS],
                score: 0.0,
            })
            .collect();
        let mut finished: Vec<Vec<Hypothesis>> = vec![Vec::new(); images.len()];
        for step in 0..=options.max_tokens {
            if live.is_empty() {
                break;
            }
            let log_probs = self.next_log_probs(&memory, &live)?;
            if step == options.max_tokens {
                // Out of words: every caption still open ends here.
                for (row, mut hypothesis) in live.drain(..).enumerate() {
                    hypothesis.score += log_probs[row][EOS as usize];
                    hypothesis.tokens.push(EOS);
                    finished[hypothesis.image].push(hypothesis);
                }
                break;
            }
            let mut next = Vec::new();
            for (image, done) in finished.iter_mut().enumerate() {
                let mut candidates: Vec<(f32, usize, u32)> = Vec::new();
                for (row, hypothesis) in live.iter().enumerate().filter(|(_, h)| h.image == image) {
                    for (token, log_prob) in best(&log_probs[row], beam) {
                        candidates.push((hypothesis.score + log_prob, row, token));
                    }
                }
                candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
                for (score, row, token) in candidates.into_iter().take(beam) {
                    let mut tokens = live[row].tokens.clone();
                    tokens.push(token);
                    let hypothesis = Hypothesis {
                        image,
                        tokens,
                        score,
                    };
                    if token == EOS {
                        done.push(hypothesis);
                    } else {
                        next.push(hypothesis);
                    }
                }
                if done.len() >= beam {
                    next.retain(|h| h.image != image);
                }
            }
            live = next;
        }

        Ok(finished
            .into_iter()
            .map(|candidates| {
                let chosen = candidates
                    .into_iter()
                    .max_by(|a, b| normalised(a).total_cmp(&normalised(b)))
                    .expect("every image finishes at least one hypothesis");
                let tokens: Vec<u32> = chosen.tokens[1..]
                    .iter()
                    .copied()
                    .take_while(|&t| t != EOS)
                    .collect();
                Caption {
                    text: self.vocabulary.decode(&tokens),
                    tokens,
                    score: chosen.score,
                }
            })
            .collect())
    }

    /// Log-probabilities of the next token for every hypothesis (all the same length).
    fn next_log_probs(&self, memory: &Tensor<3>, live: &[Hypothesis]) -> Result<Vec<Vec<f32>>> {
        let rows = live.len();
        let time = live[0].tokens.len();
        let images: Vec<i64> = live.iter().map(|h| h.image as i64).collect();
        let images = Tensor::<1, Int>::from_data(TensorData::new(images, [rows]), &self.device);
        let ids: Vec<i64> = live
            .iter()
            .flat_map(|h| h.tokens.iter().map(|&t| i64::from(t)))
            .collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, time]), &self.device);
        let logits = self.net.decode(memory.clone().select(0, images), tokens);
        let vocab = logits.dims()[2];
        let last = logits
            .slice(s![.., time - 1..time, ..])
            .reshape([rows, vocab]);
        let values: Vec<f32> = log_softmax(last, 1)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| ZooError::InvalidInput(format!("{e:?}")))?;
        Ok(values.chunks(vocab).map(<[f32]>::to_vec).collect())
    }
}

/// The `count` most likely tokens of one distribution, best first.
fn best(log_probs: &[f32], count: usize) -> Vec<(u32, f32)> {
    let mut ranked: Vec<(u32, f32)> = log_probs
        .iter()
        .enumerate()
        .map(|(token, &p)| (token as u32, p))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(count);
    ranked
}

/// Score per predicted token, so longer captions are not penalised for their length.
fn normalised(hypothesis: &Hypothesis) -> f32 {
    hypothesis.score / (hypothesis.tokens.len() - 1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captioner() -> Captioner {
        let device = Device::flex();
        let config = CaptionerConfig::new(CaptionVocabulary.len())
            .with_d_model(16)
            .with_channels(4)
            .with_max_tokens(12);
        Captioner::from_net(
            CaptionNet::Transformer(config.init_transformer(&device)),
            &device,
        )
    }

    #[test]
    fn captions_respect_the_length_limit_with_any_beam() {
        let captioner = captioner();
        let images = vec![vec![0.5; 3 * IMAGE_SIDE * IMAGE_SIDE]; 3];
        for beam_size in [1, 3] {
            let options = CaptionOptions {
                beam_size,
                max_tokens: 5,
            };
            let captions = captioner.caption(&images, &options).unwrap();
            assert_eq!(captions.len(), 3);
            for caption in captions {
                assert!(caption.tokens.len() <= 5);
                assert!(caption.score <= 0.0);
            }
        }
    }

    #[test]
    fn a_beam_of_one_follows_the_most_likely_token_each_step() {
        let captioner = captioner();
        let pixels = vec![0.25; 3 * IMAGE_SIDE * IMAGE_SIDE];
        let options = CaptionOptions {
            beam_size: 1,
            max_tokens: 6,
        };
        let caption = captioner
            .caption(std::slice::from_ref(&pixels), &options)
            .unwrap()
            .remove(0);

        let device = &captioner.device;
        let image = Tensor::<4>::from_data(
            TensorData::new(pixels, [1, 3, IMAGE_SIDE, IMAGE_SIDE]),
            device,
        );
        let memory = captioner.net.encode(image);
        let mut tokens = vec![BOS];
        let mut score = 0.0;
        for step in 0..=options.max_tokens {
            let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
            let input =
                Tensor::<2, Int>::from_data(TensorData::new(ids, [1, tokens.len()]), device);
            let logits = captioner.net.decode(memory.clone(), input);
            let [_, time, vocab] = logits.dims();
            let last = logits.slice(s![.., time - 1..time, ..]).reshape([1, vocab]);
            let row: Vec<f32> = log_softmax(last, 1)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            if step == options.max_tokens {
                score += row[EOS as usize];
                break;
            }
            let (token, log_prob) = best(&row, 1)[0];
            score += log_prob;
            tokens.push(token);
            if token == EOS {
                break;
            }
        }
        let words: Vec<u32> = tokens[1..]
            .iter()
            .copied()
            .take_while(|&t| t != EOS)
            .collect();
        assert_eq!(caption.tokens, words);
        assert!((caption.score - score).abs() < 1e-4);
    }

    #[test]
    fn bad_options_and_images_are_refused() {
        let captioner = captioner();
        let image = vec![vec![0.0; 3 * IMAGE_SIDE * IMAGE_SIDE]];
        let refused = |beam_size, max_tokens| {
            captioner
                .caption(
                    &image,
                    &CaptionOptions {
                        beam_size,
                        max_tokens,
                    },
                )
                .is_err()
        };
        assert!(refused(0, 5) && refused(MAX_BEAM_SIZE + 1, 5));
        assert!(refused(1, 0) && refused(1, 12));
        assert!(
            captioner
                .caption(&[vec![0.0; 10]], &CaptionOptions::default())
                .is_err()
        );
    }
}
