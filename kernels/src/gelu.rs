//! GELU, `x · Φ(x) = ½ · x · (1 + erf(x / √2))`, with an error function the compiler
//! vectorises: a Transformer's feed-forward layer applies it to every hidden value of every
//! step, and the C library's `erff` computes them one at a time.

use crate::simd::simd_dispatch;
use crate::softmax::exp;

simd_dispatch! {
    /// Replaces every value `x` with `½ · x · (1 + erf(x / √2))`, within `1e-6 · (1 + |x|)`
    /// of the exact form. NaN stays NaN; −∞ gives NaN as the exact form's `−∞ · 0` does.
    pub fn gelu_in_place(values: &mut [f32]) => gelu_body
}

// `FUSED` is unused: the dispatch compiles the same loop per instruction set.
#[inline(always)]
fn gelu_body<const FUSED: bool>(values: &mut [f32]) {
    values.iter_mut().for_each(|x| *x = gelu(*x));
}

/// One value. `erfc(z)` for `z = |x| / √2 ≥ 0` comes from Abramowitz and Stegun's 7.1.26
/// (absolute error below 1.5·10⁻⁷); `1 + erf(x / √2)` is then `2 − erfc(z)` for `x ≥ 0`
/// and `erfc(z)` itself for `x < 0`, not `1 − (1 − erfc)`, which would round the small
/// values of the negative side to multiples of 2⁻²⁴.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_7;
    const A4: f32 = -1.453_152;
    const A5: f32 = 1.061_405_4;
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = ((((A5 * t + A4) * t + A3) * t + A2) * t + A1) * t;
    let erfc = poly * exp(-z * z);
    let one_plus_erf = if x >= 0.0 { 2.0 - erfc } else { erfc };
    0.5 * x * one_plus_erf
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact form in f64, from a series and a continued fraction accurate to ~1e-12.
    fn exact(x: f64) -> f64 {
        0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
    }

    fn erf(x: f64) -> f64 {
        if x < 0.0 {
            return -erf(-x);
        }
        if x < 2.5 {
            // Maclaurin series: 2/√π · Σ (−1)ⁿ x^(2n+1) / (n! (2n+1)).
            let (mut term, mut sum) = (x, x);
            for n in 1..80 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc by its continued fraction, evaluated from the tail.
            let mut fraction = 0.0;
            for k in (1..120).rev() {
                fraction = (k as f64 / 2.0) / (x + fraction);
            }
            1.0 - (-x * x).exp() / std::f64::consts::PI.sqrt() / (x + fraction)
        }
    }

    #[test]
    fn gelu_is_within_its_bound_of_the_exact_form() {
        let mut x = -12.0f32;
        while x < 12.0 {
            let got = gelu(x) as f64;
            let want = exact(x as f64);
            let bound = 1e-6 * (1.0 + x.abs() as f64);
            assert!(
                (got - want).abs() <= bound,
                "gelu({x}) = {got}, exact {want}"
            );
            x += 0.001_37;
        }
    }

    #[test]
    fn the_tails_and_special_values() {
        assert_eq!(gelu(0.0), 0.0);
        assert_eq!(gelu(100.0), 100.0);
        assert_eq!(gelu(-100.0), 0.0);
        assert_eq!(gelu(f32::INFINITY), f32::INFINITY);
        assert!(gelu(f32::NAN).is_nan());
        assert!(gelu(f32::NEG_INFINITY).is_nan());
        // Far in the negative tail the value is tiny (−1.4·10⁻⁶ at −5) but keeps its sign
        // and size, within 1 %.
        let tail = gelu(-5.0) as f64;
        let want = exact(-5.0);
        assert!(((tail - want) / want).abs() < 1e-2, "{tail} vs {want}");
    }

    #[test]
    fn every_length_is_covered_by_the_dispatched_loop() {
        for len in [0, 1, 7, 16, 17, 1000] {
            let mut values: Vec<f32> = (0..len).map(|i| (i as f32 - 500.0) / 97.0).collect();
            let want: Vec<f32> = values.iter().map(|&x| gelu(x)).collect();
            gelu_in_place(&mut values);
            assert_eq!(values, want);
        }
    }
}
