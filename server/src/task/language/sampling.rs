//! Choosing the next token from a distribution: greedy at temperature 0, else sampling
//! after temperature scaling, top-k and nucleus (top-p) truncation, from a seeded RNG so a
//! request with a `seed` is reproducible.

use rand::Rng;
use rand::rngs::StdRng;

/// How one request wants its tokens chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 picks the most likely token; higher values flatten the distribution.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p`.
    pub top_p: Option<f32>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: None,
            top_p: None,
        }
    }
}

/// The chosen token id and its log-probability under the model (before any truncation),
/// from the model's next-token probabilities.
pub fn sample(
    probs: &[f32],
    params: &SamplingParams,
    banned: &[u32],
    rng: &mut StdRng,
) -> (u32, f32) {
    // `p > 0` also turns NaN away.
    let allowed = |i: &usize| !banned.contains(&(*i as u32)) && probs[*i] > 0.0;
    let chosen = |i: usize| (i as u32, probs[i].ln());
    if params.temperature <= 0.0 {
        let best = (0..probs.len())
            .filter(allowed)
            .max_by(|&a, &b| probs[a].total_cmp(&probs[b]).then(b.cmp(&a)))
            .unwrap_or(0);
        return chosen(best);
    }
    if params.top_k.is_none() && params.top_p.is_none() {
        return chosen(sample_whole_vocabulary(
            probs,
            params.temperature,
            banned,
            rng,
        ));
    }
    let mut candidates: Vec<usize> = (0..probs.len()).filter(allowed).collect();
    if candidates.is_empty() {
        return chosen(0);
    }
    // Ordering the whole vocabulary for every token would dominate a decoding step: select
    // the top k in linear time, and sort only when the nucleus needs the order.
    let ranked = |a: &usize, b: &usize| probs[*b].total_cmp(&probs[*a]).then(a.cmp(b));
    if let Some(k) = params.top_k.map(|k| k.max(1))
        && k < candidates.len()
    {
        candidates.select_nth_unstable_by(k, ranked);
        candidates.truncate(k);
    }
    if params.top_p.is_some() {
        candidates.sort_by(ranked);
    }
    let top = candidates.iter().map(|&i| probs[i]).fold(0.0, f32::max);
    let exponent = 1.0 / f64::from(params.temperature);
    let mut weights: Vec<f64> = candidates
        .iter()
        .map(|&i| f64::from(probs[i] / top).powf(exponent))
        .collect();
    if let Some(p) = params.top_p {
        let total: f64 = weights.iter().sum();
        let mut cumulative = 0.0;
        let mut keep = weights.len();
        for (n, w) in weights.iter().enumerate() {
            cumulative += w / total;
            if cumulative >= f64::from(p) {
                keep = n + 1;
                break;
            }
        }
        weights.truncate(keep);
    }
    let total: f64 = weights.iter().sum();
    let mut target = rng.random::<f64>() * total;
    for (n, w) in weights.iter().enumerate() {
        target -= w;
        if target <= 0.0 {
            return chosen(candidates[n]);
        }
    }
    chosen(candidates[weights.len() - 1])
}

/// Sampling from every allowed token, the common case, without allocating: one pass for the
/// total weight, and one (half the vocabulary on average) to walk to the drawn point. At
/// temperature 1, the default, the weights are the probabilities themselves, so neither pass
/// computes more than a sum. This runs for every token of every sequence, once per decoding
/// step, so both passes sum [`LANES`] tokens at a time, which the compiler vectorises, and
/// the walk goes [`BLOCK`] tokens at a time: only the block holding the drawn point is
/// walked token by token. Returns the chosen token's index.
fn sample_whole_vocabulary(
    probs: &[f32],
    temperature: f32,
    banned: &[u32],
    rng: &mut StdRng,
) -> usize {
    let exponent = 1.0 / temperature;
    if exponent == 1.0 {
        // `p > 0` also turns NaN away.
        return draw(probs, banned, rng, |p| if p > 0.0 { p } else { 0.0 });
    }
    // `f32::max` passes NaN over, so `top` is never NaN.
    let top = probs.iter().copied().fold(0.0, f32::max);
    if top == 0.0 || top.is_infinite() {
        return 0;
    }
    draw(probs, banned, rng, |p| {
        if p > 0.0 {
            (p / top).powf(exponent)
        } else {
            0.0
        }
    })
}

/// Draws an index in proportion to `weight` of each probability, banned ones left out;
/// 0 when nothing has weight.
fn draw(probs: &[f32], banned: &[u32], rng: &mut StdRng, weight: impl Fn(f32) -> f32) -> usize {
    let banned_in = |first: usize, len: usize| {
        banned
            .iter()
            .filter(|&&b| (first..first + len).contains(&(b as usize)))
            .map(|&b| weight(probs[b as usize]))
            .sum::<f32>()
    };
    let total = blocks_weight(probs, &weight) - banned_in(0, probs.len());
    if !total.is_finite() || total <= 0.0 {
        return 0;
    }
    let mut target = rng.random::<f32>() * total;
    for (b, block) in probs.chunks(BLOCK).enumerate() {
        let first = b * BLOCK;
        let block_total = blocks_weight(block, &weight) - banned_in(first, block.len());
        if target > block_total {
            target -= block_total;
            continue;
        }
        // The drawn point is in this block (or, by rounding, just past it: then the walk
        // goes on into the next).
        for (i, &p) in block.iter().enumerate() {
            let w = weight(p);
            if w == 0.0 || banned.contains(&((first + i) as u32)) {
                continue;
            }
            target -= w;
            if target <= 0.0 {
                return first + i;
            }
        }
    }
    // Rounding left the point past the end: the last token that may be drawn.
    (0..probs.len())
        .rev()
        .find(|&i| weight(probs[i]) > 0.0 && !banned.contains(&(i as u32)))
        .unwrap_or(0)
}

/// Tokens weighed together on the walk to the drawn point: only the block holding it is
/// walked token by token.
const BLOCK: usize = 64;
/// Running sums kept apart, so that the sums vectorise: one AVX-512 vector, two AVX2 ones.
const LANES: usize = 16;

/// The sum of `weight` over `values`, kept per lane and added up as a tree.
#[inline(always)]
fn blocks_weight(values: &[f32], weight: &impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &p) in lanes.iter_mut().zip(chunk) {
            *lane += weight(p);
        }
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    lanes[0] + chunks.remainder().iter().map(|&p| weight(p)).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn greedy_takes_the_most_likely_allowed_token() {
        let probs = [0.5, 0.3, 0.2];
        let mut rng = StdRng::seed_from_u64(1);
        let greedy = SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        };
        assert_eq!(sample(&probs, &greedy, &[], &mut rng).0, 0);
        assert_eq!(sample(&probs, &greedy, &[0], &mut rng).0, 1);
    }

    #[test]
    fn top_k_and_top_p_limit_the_choices() {
        let probs = [0.4, 0.3, 0.2, 0.1];
        let mut rng = StdRng::seed_from_u64(7);
        let top2 = SamplingParams {
            top_k: Some(2),
            ..SamplingParams::default()
        };
        let nucleus = SamplingParams {
            top_p: Some(0.65),
            ..SamplingParams::default()
        };
        for _ in 0..200 {
            assert!(sample(&probs, &top2, &[], &mut rng).0 < 2);
            assert!(sample(&probs, &nucleus, &[], &mut rng).0 < 2);
        }
    }

    #[test]
    fn sampling_follows_the_distribution_and_the_seed() {
        let probs = [0.7, 0.2, 0.1];
        let params = SamplingParams::default();
        let mut rng = StdRng::seed_from_u64(3);
        let mut counts = [0usize; 3];
        for _ in 0..5_000 {
            counts[sample(&probs, &params, &[], &mut rng).0 as usize] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[2], "{counts:?}");
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..20)
                .map(|_| sample(&probs, &params, &[], &mut rng).0)
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(9), draw(9));
    }

    #[test]
    fn a_long_vocabulary_is_drawn_in_proportion_across_its_blocks() {
        // 1,000 tokens over 16 blocks (the last one partial): weights that vary within each
        // block, every 7th token banned, a zero and a NaN.
        let mut probs: Vec<f32> = (0..1_000).map(|i| ((i * 37) % 50) as f32 + 1.0).collect();
        probs[3] = 0.0;
        probs[130] = f32::NAN;
        let banned: Vec<u32> = (0..1_000).step_by(7).collect();
        let allowed = |i: usize| i != 3 && i != 130 && !i.is_multiple_of(7);
        let total: f32 = (0..1_000).filter(|&i| allowed(i)).map(|i| probs[i]).sum();
        for p in &mut probs {
            *p /= total;
        }
        let mut rng = StdRng::seed_from_u64(21);
        let draws = 50_000;
        let mut per_tenth = [0usize; 10];
        for _ in 0..draws {
            let (token, _) = sample(&probs, &SamplingParams::default(), &banned, &mut rng);
            assert!(allowed(token as usize), "drew {token}");
            per_tenth[token as usize / 100] += 1;
        }
        for (tenth, &count) in per_tenth.iter().enumerate() {
            let want: f32 = (tenth * 100..(tenth + 1) * 100)
                .filter(|&i| allowed(i))
                .map(|i| probs[i])
                .sum();
            let got = count as f32 / draws as f32;
            assert!(
                (got - want).abs() < 0.01,
                "tokens {}00s: {got} vs {want}",
                tenth
            );
        }
        // The one token that may be drawn is the last, in the partial block.
        let mut last_only = vec![0.0f32; 1_000];
        last_only[999] = 1.0;
        for _ in 0..100 {
            let (token, _) = sample(&last_only, &SamplingParams::default(), &[], &mut rng);
            assert_eq!(token, 999);
        }
    }

    #[test]
    fn sampling_the_whole_vocabulary_agrees_with_truncated_sampling_and_skips_banned_tokens() {
        let probs = [0.1, 0.4, 0.3, 0.2];
        let whole = SamplingParams {
            temperature: 0.7,
            ..SamplingParams::default()
        };
        // A top-k as large as the vocabulary truncates nothing, by the general path.
        let general = SamplingParams {
            top_k: Some(4),
            ..whole.clone()
        };
        let shares = |params: &SamplingParams| {
            let mut rng = StdRng::seed_from_u64(5);
            let mut counts = [0usize; 4];
            for _ in 0..20_000 {
                counts[sample(&probs, params, &[0], &mut rng).0 as usize] += 1;
            }
            counts.map(|c| c as f64 / 20_000.0)
        };
        let (a, b) = (shares(&whole), shares(&general));
        assert_eq!(a[0], 0.0, "a banned token is never drawn");
        // Temperature 0.7 over 0.4, 0.3, 0.2: p^(1/0.7), normalised.
        let expected = [0.4f64, 0.3, 0.2].map(|p| p.powf(1.0 / 0.7));
        let total: f64 = expected.iter().sum();
        for i in 1..4 {
            let want = expected[i - 1] / total;
            assert!((a[i] - want).abs() < 0.015, "{a:?} vs {want}");
            assert!((a[i] - b[i]).abs() < 0.02, "{a:?} vs {b:?}");
        }
        let mut rng = StdRng::seed_from_u64(1);
        let nothing_allowed = [0.0, f32::NAN, 0.0];
        assert_eq!(sample(&nothing_allowed, &whole, &[], &mut rng).0, 0);
    }
}
