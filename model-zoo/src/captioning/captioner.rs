//! A loaded captioner: images in, captions out, by greedy or beam search.
//!
//! All images of a call are encoded together, then searched together: every step runs one
//! batched decoder pass over the live hypotheses of every image (each image keeps up to
//! `beam_size`), their decoder states kept in slots from step to step.

use std::collections::HashMap;
use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::decoding::HypothesisBatch;
use super::search::CaptionSearch;
use crate::captioning::vocabulary::CaptionVocabulary;
use crate::error::{Result, ZooError};
use crate::models::captioner::{CaptionNet, CaptionerConfig, CpuLstmStep, GRID_SIDE, IMAGE_SIDE};
use crate::models::cpu::{self, Network};
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

    /// The sizes, whichever the decoder.
    pub fn config(&self) -> &CaptionerConfig {
        match self {
            CaptionerArchitecture::Lstm(config) | CaptionerArchitecture::Transformer(config) => {
                config
            }
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
    /// The encoder on Kiln's CPU kernels, which run it instead of Burn's ops on the CPU.
    cpu_encoder: Option<Network>,
    /// The LSTM decoder's step on Kiln's CPU kernels, likewise.
    cpu_lstm: Option<CpuLstmStep>,
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
        // A network the kernels reject keeps Burn's ops, which compute the same grid.
        let kernels = cpu::kernels_apply(device);
        let cpu_encoder = kernels.then(|| net.cpu_encoder().ok()).flatten();
        let cpu_lstm = match &net {
            CaptionNet::Lstm(lstm) if kernels => lstm.cpu_step().ok(),
            _ => None,
        };
        Self {
            net,
            device: device.clone(),
            vocabulary: CaptionVocabulary,
            cpu_encoder,
            cpu_lstm,
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
    /// batch, into new rows of `batch`: the ids of their searches (see
    /// [`CaptionSearch::new`]), in order.
    pub fn start(&self, batch: &mut HypothesisBatch, images: &[Vec<f32>]) -> Result<Vec<u64>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        batch.join(&self.net, self.cpu_lstm.as_ref(), self.encode(images)?)
    }

    /// What the decoder reads of each image (see [`CaptionNet::encode`]), the encoder run on
    /// Kiln's CPU kernels where they apply.
    fn encode(&self, images: &[Vec<f32>]) -> Result<Tensor<3>> {
        let side = IMAGE_SIDE;
        if let Some(bad) = images.iter().find(|image| image.len() != 3 * side * side) {
            return Err(ZooError::InvalidInput(format!(
                "an image needs {} values (3×{side}×{side}), not {}",
                3 * side * side,
                bad.len()
            )));
        }
        let count = images.len();
        let pixels: Vec<f32> = images.iter().flatten().copied().collect();
        let grid = match &self.cpu_encoder {
            Some(encoder) => {
                let nhwc = encoder.run(&pixels, count)?;
                let shape = [count, GRID_SIDE, GRID_SIDE, self.net.grid_channels()];
                Tensor::<4>::from_data(TensorData::new(nhwc, shape), &self.device)
                    .permute([0, 3, 1, 2])
            }
            None => self.net.grid(Tensor::<4>::from_data(
                TensorData::new(pixels, [count, 3, side, side]),
                &self.device,
            )),
        };
        Ok(self.net.encode_grid(grid))
    }

    /// Whether images are encoded on Kiln's CPU kernels rather than Burn's ops.
    pub fn uses_cpu_kernels(&self) -> bool {
        self.cpu_encoder.is_some()
    }

    /// Encode and decode on Burn's ops even where the CPU kernels apply (for comparisons).
    pub fn without_cpu_kernels(mut self) -> Self {
        self.cpu_encoder = None;
        self.cpu_lstm = None;
        self
    }

    /// Feed `tokens[i]` to live hypothesis `i` of `batch` (see [`HypothesisBatch::step`]),
    /// on Kiln's CPU kernels where they apply: each hypothesis's log-probabilities of the
    /// next token.
    pub fn step_rows(&self, batch: &mut HypothesisBatch, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        batch.step(&self.net, self.cpu_lstm.as_ref(), tokens, &self.device)
    }

    /// One decoding step for every live hypothesis in `batch`, in one pass. `searches` holds
    /// (through `search`) every search of the batch that is still wanted, in any order;
    /// rows of the others are dropped first. Returns how many hypotheses it ran (0 once
    /// every search is done).
    pub fn step_searches<T>(
        &self,
        batch: &mut HypothesisBatch,
        searches: &mut [T],
        search: impl Fn(&mut T) -> &mut CaptionSearch,
    ) -> Result<usize> {
        let mut index = HashMap::with_capacity(searches.len());
        for (i, owner) in searches.iter_mut().enumerate() {
            let search = search(owner);
            if !search.is_done() {
                index.insert(search.id(), i);
            }
        }
        batch.retain(|id| index.contains_key(&id));
        let order: Vec<usize> = batch.ids().map(|id| index[&id]).collect();
        let sizes: Vec<usize> = batch.group_sizes().collect();
        if order.len() != index.len() {
            return Err(ZooError::InvalidInput(format!(
                "{} searches are live but {} are in the decoding batch",
                index.len(),
                order.len()
            )));
        }
        let mut tokens = Vec::with_capacity(batch.rows());
        for (&i, &rows) in order.iter().zip(&sizes) {
            let search = search(&mut searches[i]);
            if search.live_count() != rows {
                return Err(ZooError::InvalidInput(format!(
                    "search {} has {} hypotheses but {rows} rows",
                    search.id(),
                    search.live_count()
                )));
            }
            tokens.extend(search.last_tokens());
        }
        if tokens.is_empty() {
            return Ok(0);
        }
        let log_probs = self.step_rows(batch, &tokens)?;
        let mut offset = 0;
        let parents: Vec<Vec<usize>> = order
            .iter()
            .zip(&sizes)
            .map(|(&i, &rows)| {
                let parents = search(&mut searches[i]).advance(&log_probs[offset..offset + rows]);
                offset += rows;
                parents
            })
            .collect();
        batch.advance(&parents)?;
        Ok(tokens.len())
    }

    /// Captions for images given as `[3, 64, 64]` floats each (pixels scaled to 0..1).
    pub fn caption(&self, images: &[Vec<f32>], options: &CaptionOptions) -> Result<Vec<Caption>> {
        self.check_options(options)?;
        let mut batch = HypothesisBatch::new();
        let mut searches: Vec<CaptionSearch> = self
            .start(&mut batch, images)?
            .into_iter()
            .map(|id| CaptionSearch::new(id, *options))
            .collect();
        while self.step_searches(&mut batch, &mut searches, |s| s)? > 0 {}
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

    /// Pixels in 0..1, a different picture for each seed.
    fn noise(seed: u32) -> Vec<f32> {
        (0..3 * IMAGE_SIDE * IMAGE_SIDE)
            .map(|i| {
                let hash = (i as u32)
                    .wrapping_add(seed.wrapping_mul(0x9E37_79B9))
                    .wrapping_mul(2_654_435_761);
                (hash >> 8) as f32 / (1u32 << 24) as f32
            })
            .collect()
    }

    fn assert_close(a: &[Vec<f32>], b: &[Vec<f32>]) {
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(b) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 1e-4, "{x} vs {y}");
            }
        }
    }

    #[test]
    fn hypotheses_of_different_lengths_step_together_as_they_would_alone() {
        for captioner in both_captioners() {
            let mut long = HypothesisBatch::new();
            captioner.start(&mut long, &[noise(1)]).unwrap();
            for token in [BOS, 7] {
                captioner.step_rows(&mut long, &[token]).unwrap();
            }
            let alone_long = captioner.step_rows(&mut long, &[9]).unwrap();
            let mut short = HypothesisBatch::new();
            captioner.start(&mut short, &[noise(2)]).unwrap();
            let alone_short = captioner.step_rows(&mut short, &[BOS]).unwrap();

            // The short one joins after two steps, once a third search has left.
            let mut batch = HypothesisBatch::new();
            let first = captioner.start(&mut batch, &[noise(1), noise(3)]).unwrap();
            for token in [BOS, 7] {
                captioner.step_rows(&mut batch, &[token, token]).unwrap();
            }
            batch.retain(|id| id == first[0]);
            captioner.start(&mut batch, &[noise(2)]).unwrap();
            assert_eq!(batch.rows(), 2);
            let together = captioner.step_rows(&mut batch, &[9, BOS]).unwrap();
            assert_close(&alone_long, &together[..1]);
            assert_close(&alone_short, &together[1..]);
        }
    }

    #[test]
    fn searches_that_join_late_with_other_beams_find_what_they_find_alone() {
        // (image, beam, step it joins at, most words): short searches leave early, so later
        // ones take their slots, widen their beams into them, and the slots are compacted.
        let plan = [
            (1, 3, 0, 2),
            (2, 1, 0, 8),
            (3, 2, 1, 3),
            (4, 4, 3, 6),
            (5, 1, 4, 5),
            (6, 2, 5, 4),
            (7, 3, 6, 3),
            (8, 1, 6, 2),
            (9, 4, 9, 3),
        ];
        let last_join = plan.iter().map(|p| p.2).max().unwrap();
        for captioner in both_captioners() {
            let options = |beam_size, max_tokens| CaptionOptions {
                beam_size,
                max_tokens,
            };
            let alone: Vec<Caption> = plan
                .iter()
                .map(|&(seed, beam, _, words)| {
                    captioner
                        .caption(&[noise(seed)], &options(beam, words))
                        .unwrap()
                        .remove(0)
                })
                .collect();
            let mut batch = HypothesisBatch::new();
            let mut searches: Vec<CaptionSearch> = Vec::new();
            let mut compacted = false;
            for step in 0.. {
                for &(seed, beam, _, words) in plan.iter().filter(|p| p.2 == step) {
                    let ids = captioner.start(&mut batch, &[noise(seed)]).unwrap();
                    searches.push(CaptionSearch::new(ids[0], options(beam, words)));
                }
                let slots = batch.slots();
                let ran = captioner
                    .step_searches(&mut batch, &mut searches, |s| s)
                    .unwrap();
                compacted |= !batch.is_empty() && batch.slots() < slots;
                if ran == 0 && step > last_join {
                    break;
                }
            }
            assert!(compacted, "the slots were never compacted");
            assert!(batch.is_empty());
            assert_eq!(searches.len(), plan.len());
            for (search, alone) in searches.into_iter().zip(alone) {
                let together = search.caption(captioner.vocabulary());
                assert_eq!(together.tokens, alone.tokens);
                assert!((together.score - alone.score).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn a_dropped_search_leaves_the_others_as_they_were() {
        let captioner = captioner();
        let options = CaptionOptions {
            beam_size: 2,
            max_tokens: 6,
        };
        let images = [noise(5), noise(6), noise(7)];
        let alone = captioner.caption(&images[2..], &options).unwrap().remove(0);
        let mut batch = HypothesisBatch::new();
        let mut searches: Vec<CaptionSearch> = (captioner.start(&mut batch, &images).unwrap())
            .into_iter()
            .map(|id| CaptionSearch::new(id, options))
            .collect();
        captioner
            .step_searches(&mut batch, &mut searches, |s| s)
            .unwrap();
        searches.drain(..2);
        while captioner
            .step_searches(&mut batch, &mut searches, |s| s)
            .unwrap()
            > 0
        {}
        let together = searches.remove(0).caption(captioner.vocabulary());
        assert_eq!(together.tokens, alone.tokens);
    }

    #[test]
    fn the_cpu_kernels_encode_images_as_burns_ops_do() {
        let device = Device::flex();
        let config = config().with_channels(8);
        let nets = [
            CaptionNet::Lstm(config.init_lstm(&device)),
            CaptionNet::Transformer(config.init_transformer(&device)),
        ];
        let images: Vec<Vec<f32>> = (1..=3).map(noise).collect();
        for net in nets {
            let kernels = Captioner::from_net(net.clone(), &device);
            assert!(kernels.uses_cpu_kernels());
            let burn = Captioner::from_net(net, &device).without_cpu_kernels();
            let got = kernels.encode(&images).unwrap();
            let expected = burn.encode(&images).unwrap();
            assert_eq!(got.dims(), expected.dims());
            let [got, expected] =
                [got, expected].map(|t| t.into_data().try_to_vec::<f32>().unwrap());
            for (a, b) in got.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn the_cpu_kernels_step_the_lstm_as_burns_ops_do() {
        let device = Device::flex();
        let net = CaptionNet::Lstm(config().init_lstm(&device));
        let kernels = Captioner::from_net(net.clone(), &device);
        assert!(kernels.cpu_lstm.is_some());
        let burn = Captioner::from_net(net, &device).without_cpu_kernels();
        let images: Vec<Vec<f32>> = (1..=3).map(noise).collect();
        let [mut ours, mut theirs] = [HypothesisBatch::new(), HypothesisBatch::new()];
        kernels.start(&mut ours, &images).unwrap();
        burn.start(&mut theirs, &images).unwrap();
        for tokens in [[BOS, BOS, BOS], [7, 9, 11], [EOS, 3, 7]] {
            let got = kernels.step_rows(&mut ours, &tokens).unwrap();
            let expected = burn.step_rows(&mut theirs, &tokens).unwrap();
            assert_close(&got, &expected);
        }
        let vocab = CaptionVocabulary.len() as u32;
        let refused = kernels.step_rows(&mut ours, &[BOS, vocab, BOS]);
        assert!(
            matches!(refused, Err(ZooError::InvalidInput(_))),
            "{refused:?}"
        );
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
