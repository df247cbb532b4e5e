//! Softmax over rows of logits, with an `exp` the compiler vectorises: a language model's
//! next-token probabilities are thousands of exponentials per sequence and step, which the
//! C library computes one at a time.

use crate::simd::simd_dispatch;

/// Values handled together: one AVX-512 vector, two AVX2 ones. Separate running maxima and
/// sums per lane let the loops vectorise without reordering a single accumulator.
const LANES: usize = 16;

/// `out[i] = exp(logits[i] - max) / Σ exp(logits[j] - max)`, the largest subtracted first so
/// no exponent overflows. A NaN anywhere makes the whole row NaN, as Burn's `softmax` does.
/// `out` must be as long as `logits`.
pub fn softmax_into(logits: &[f32], out: &mut [f32]) {
    assert_eq!(logits.len(), out.len(), "softmax output of another length");
    softmax_row(logits, out);
}

/// [`softmax_into`] in place, for short rows (a classifier's classes): the logits are
/// copied once so that one kernel serves both.
pub fn softmax_in_place(row: &mut [f32]) {
    let logits = row.to_vec();
    softmax_row(&logits, row);
}

/// `row[i] = logits[i] - max - ln Σ exp(logits[j] - max)`, in place: the log-probabilities a
/// beam search adds up. A NaN anywhere makes the whole row NaN, as Burn's `log_softmax` does.
pub fn log_softmax_in_place(row: &mut [f32]) {
    let logits = row.to_vec();
    log_softmax_row(&logits, row);
}

simd_dispatch! {
    fn log_softmax_row(logits: &[f32], out: &mut [f32]) => log_softmax_row_body
}

// `FUSED` is unused: the dispatch compiles the same loops per instruction set.
#[inline(always)]
fn log_softmax_row_body<const FUSED: bool>(logits: &[f32], out: &mut [f32]) {
    let max = row_max(logits);
    let log_sum = exp_shifted(logits, out, max).ln();
    // `v − max` first, exact near the top, so the likeliest words keep their precision
    // (`max + log_sum` would round to the logits' own scale).
    out.iter_mut()
        .zip(logits)
        .for_each(|(o, &v)| *o = (v - max) - log_sum);
}

simd_dispatch! {
    fn softmax_row(logits: &[f32], out: &mut [f32]) => softmax_row_body
}

// `FUSED` is unused: the dispatch compiles the same loops per instruction set.
#[inline(always)]
fn softmax_row_body<const FUSED: bool>(logits: &[f32], out: &mut [f32]) {
    let max = row_max(logits);
    let sum = exp_shifted(logits, out, max);
    scale(out, 1.0 / sum);
}

/// The largest value; NaN when any value is NaN (so the row comes out NaN).
#[inline(always)]
fn row_max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut nan = false;
    let mut blocks = values.chunks_exact(LANES);
    for block in &mut blocks {
        for (m, &v) in lanes.iter_mut().zip(block) {
            *m = if v > *m { v } else { *m };
            nan |= v.is_nan();
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &v in lanes.iter().chain(blocks.remainder()) {
        max = if v > max { v } else { max };
        nan |= v.is_nan();
    }
    if nan { f32::NAN } else { max }
}

/// Writes `exp(v - max)` for every value into `out`; returns their sum.
#[inline(always)]
fn exp_shifted(values: &[f32], out: &mut [f32], max: f32) -> f32 {
    let mut sum = [0.0f32; LANES];
    let mut sources = values.chunks_exact(LANES);
    let mut targets = out.chunks_exact_mut(LANES);
    for (src, dst) in (&mut sources).zip(&mut targets) {
        for ((d, &v), s) in dst.iter_mut().zip(src).zip(&mut sum) {
            *d = exp(v - max);
            *s += *d;
        }
    }
    let mut total: f32 = sum.iter().sum();
    for (d, &v) in targets.into_remainder().iter_mut().zip(sources.remainder()) {
        *d = exp(v - max);
        total += *d;
    }
    total
}

#[inline(always)]
fn scale(values: &mut [f32], factor: f32) {
    values.iter_mut().for_each(|v| *v *= factor);
}

/// `e^x` to within a few units in the last place, in plain arithmetic the compiler
/// vectorises: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, `e^r` from a degree-7 polynomial
/// (Cephes' `expf` coefficients), and `2^n` written straight into the exponent bits.
/// Below −87.3 it gives 0 rather than a subnormal; NaN stays NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two, so that n·LN2_HI is exact for the n that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a branch.
    const ROUND: f32 = 12_582_912.0;
    const LOWEST: f32 = -87.3;
    let underflows = x < LOWEST;
    let x = x.clamp(LOWEST, 88.7);
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // `n` as an integer is in the low bits of `shifted`: read it there rather than convert
    // (a saturating conversion does not vectorise as well). NaN stays in `e_r`.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let two_n = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if underflows { 0.0 } else { e_r * two_n }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_the_library_exp() {
        let mut worst = 0.0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 4.0 * f32::EPSILON, "worst relative error {worst}");
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn rows_sum_to_one_and_keep_their_order() {
        for len in [1, 5, 16, 17, 100, 5000] {
            let logits: Vec<f32> = (0..len).map(|i| ((i * 37) % 101) as f32 / 7.0).collect();
            let mut out = vec![0.0; len];
            softmax_into(&logits, &mut out);
            let sum: f32 = out.iter().sum();
            assert!((sum - 1.0).abs() < 1e-4, "sum {sum} for {len}");
            for i in 1..len {
                assert_eq!(
                    logits[i - 1] < logits[i],
                    out[i - 1] < out[i],
                    "at {i} of {len}"
                );
            }
            let mut in_place = logits.clone();
            softmax_in_place(&mut in_place);
            assert_eq!(in_place, out);
        }
    }

    #[test]
    fn log_probabilities_are_the_logs_of_the_probabilities() {
        for len in [1, 7, 16, 60, 5000] {
            let logits: Vec<f32> = (0..len)
                .map(|i| ((i * 53) % 97) as f32 / 5.0 - 9.0)
                .collect();
            let mut probabilities = vec![0.0; len];
            softmax_into(&logits, &mut probabilities);
            let mut logs = logits.clone();
            log_softmax_in_place(&mut logs);
            for (l, p) in logs.iter().zip(&probabilities) {
                assert!(
                    (l - p.ln()).abs() < 1e-4 * (1.0 + l.abs()),
                    "{l} against ln {p}"
                );
            }
        }
        let mut row = vec![1e30, 1e30, f32::NAN];
        log_softmax_in_place(&mut row);
        assert!(row.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn a_nan_spreads_over_its_row_and_huge_logits_do_not_overflow() {
        let mut row = vec![1.0; 40];
        row[33] = f32::NAN;
        softmax_in_place(&mut row);
        assert!(row.iter().all(|v| v.is_nan()));
        let mut row = vec![1e30, 1e30, -1e30];
        softmax_in_place(&mut row);
        assert_eq!(row, vec![0.5, 0.5, 0.0]);
    }
}
