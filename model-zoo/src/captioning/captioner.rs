//! A loaded captioner: images in, captions out, by greedy or beam search.
//!
//! All images of a call are encoded together, then searched together: every step runs one
//! batched decoder pass over the live hypotheses of every image (each image keeps up to
//! `beam_size`), each hypothesis carrying its decoder state from step to step.

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::decoding::{self, DecoderState};
use super::search::CaptionSearch;
use crate::captioning::vocabulary::CaptionVocabulary;
use crate::error::{Result, ZooError};
use crate::models::captioner::{CaptionNet, CaptionerConfig};
use crate::weights::{load_weights, save_burnpack};

/// Largest beam a request may ask for.
pub const MAX_BEAM_SIZE: usize = 16;

/// Which decoder, with its sizes; in `model.toml`, `kind = "lstm"` or `"transformer"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
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
            // The longest scene caption has 27 words (four pairs of trousers, listed).
            max_tokens: 30,
        }
    }
}

impl CaptionOptions {
    /// Refuse a beam outside 1..=`MAX_BEAM_SIZE` or a length outside 1..=`max_tokens_limit`.
    pub fn check(&self, max_tokens_limit: usize) -> Result<()> {
        if !(1..=MAX_BEAM_SIZE).contains(&self.beam_size) {
            return Err(ZooError::InvalidInput(format!(
                "beam_size must be between 1 and {MAX_BEAM_SIZE}, not {}",
                self.beam_size
            )));
        }
        if !(1..=max_tokens_limit).contains(&self.max_tokens) {
            return Err(ZooError::InvalidInput(format!(
                "max_tokens must be between 1 and {max_tokens_limit}, not {}",
                self.max_tokens
            )));
        }
        Ok(())
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
        options.check(self.max_tokens_limit())
    }

    /// Encode images given as `[3, 64, 64]` floats each (pixels scaled to 0..1), in one
    /// batch, into the decoder state each caption starts from.
    pub fn start(&self, images: &[Vec<f32>]) -> Result<Vec<DecoderState>> {
        decoding::start(&self.net, images, &self.device)
    }

    /// One decoding step for many hypotheses at once (see [`decoding::step`]).
    pub fn step(
        &self,
        tokens: &[u32],
        states: Vec<DecoderState>,
    ) -> Result<(Vec<Vec<f32>>, Vec<DecoderState>)> {
        decoding::step(&self.net, tokens, states, &self.device)
    }

    /// One decoding step for every live hypothesis of `searches`, in one batch; returns how
    /// many hypotheses it ran (0 once every search is done).
    pub fn step_searches<'a>(
        &self,
        searches: impl IntoIterator<Item = &'a mut CaptionSearch>,
    ) -> Result<usize> {
        let mut searches: Vec<&mut CaptionSearch> = searches.into_iter().collect();
        let mut counts = Vec::with_capacity(searches.len());
        let (mut tokens, mut states) = (Vec::new(), Vec::new());
        for search in &mut searches {
            let inputs = search.take_inputs();
            counts.push(inputs.len());
            for (token, state) in inputs {
                tokens.push(token);
                states.push(state);
            }
        }
        if tokens.is_empty() {
            return Ok(0);
        }
        let (log_probs, states) = self.step(&tokens, states)?;
        let mut outputs = log_probs.into_iter().zip(states);
        for (search, count) in searches.into_iter().zip(counts) {
            if count > 0 {
                search.advance(outputs.by_ref().take(count).collect());
            }
        }
        Ok(tokens.len())
    }

    /// Captions for images given as `[3, 64, 64]` floats each (pixels scaled to 0..1).
    pub fn caption(&self, images: &[Vec<f32>], options: &CaptionOptions) -> Result<Vec<Caption>> {
        self.check_options(options)?;
        let mut searches: Vec<CaptionSearch> = self
            .start(images)?
            .into_iter()
            .map(|state| CaptionSearch::new(state, *options))
            .collect();
        while self.step_searches(&mut searches)? > 0 {}
        Ok(searches
            .into_iter()
            .map(|search| search.caption(&self.vocabulary))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::log_softmax;

    use super::*;
    use crate::captioning::search::best;
    use crate::captioning::vocabulary::{BOS, EOS};
    use crate::models::captioner::IMAGE_SIDE;

    fn config() -> CaptionerConfig {
        CaptionerConfig::new(CaptionVocabulary.len())
            .with_d_model(16)
            .with_channels(4)
            .with_max_tokens(12)
    }

    fn captioner() -> Captioner {
        let device = Device::flex();
        Captioner::from_net(
            CaptionNet::Transformer(config().init_transformer(&device)),
            &device,
        )
    }

    fn both_captioners() -> [Captioner; 2] {
        let device = Device::flex();
        [
            Captioner::from_net(CaptionNet::Lstm(config().init_lstm(&device)), &device),
            captioner(),
        ]
    }

    fn noise(seed: u32) -> Vec<f32> {
        (0..3 * IMAGE_SIDE * IMAGE_SIDE)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32)
            .collect()
    }

    #[test]
    fn hypotheses_of_different_lengths_step_together_as_they_would_alone() {
        for captioner in both_captioners() {
            let mut states = captioner.start(&[noise(1), noise(2)]).unwrap().into_iter();
            let (mut long, short) = (states.next().unwrap(), states.next().unwrap());
            for token in [BOS, 7] {
                long = captioner.step(&[token], vec![long]).unwrap().1.remove(0);
            }
            let (alone_long, _) = captioner.step(&[9], vec![long.clone()]).unwrap();
            let (alone_short, _) = captioner.step(&[BOS], vec![short.clone()]).unwrap();
            let (together, states) = captioner.step(&[9, BOS], vec![long, short]).unwrap();
            for (a, b) in [&alone_long[0], &alone_short[0]].into_iter().zip(&together) {
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() < 1e-4, "{x} vs {y}");
                }
            }
            assert_eq!(states.len(), 2);
            if let CaptionNet::Transformer(_) = captioner.net {
                assert_eq!(states[0].tokens_read(), Some(3));
                assert_eq!(states[1].tokens_read(), Some(1));
            }
        }
    }

    #[test]
    fn the_default_length_fits_the_longest_scene_caption() {
        use crate::captioning::vocabulary::words;
        use crate::data::scenes::{Background, SceneObject, caption};
        let trousers = |colour, centre| SceneObject::centred_at(1, colour, centre);
        let objects = [
            trousers(0, (5.0, 5.0)),
            trousers(1, (45.0, 5.0)),
            trousers(2, (5.0, 45.0)),
            trousers(3, (45.0, 45.0)),
        ];
        let longest = (0..3)
            .map(|template| words(&caption(&objects, Background::Checked, template)).len())
            .max()
            .unwrap();
        assert_eq!(longest, 27);
        assert!(CaptionOptions::default().max_tokens >= longest);
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
        for captioner in both_captioners() {
            greedy_matches_whole_sequence_decoding(&captioner);
        }
    }

    /// Step-by-step greedy search against the whole-sequence decoder used in training.
    fn greedy_matches_whole_sequence_decoding(captioner: &Captioner) {
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
