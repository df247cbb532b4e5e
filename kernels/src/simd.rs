//! Run-time choice of instruction set for the hand-vectorised loops.
//!
//! The loops are written once, generic over whether multiply-add is fused, and compiled
//! again inside functions that enable AVX-512 or AVX2+FMA, where the compiler vectorises
//! them across channels with those instructions. The CPU is asked once which it has.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Avx512,
    Avx2,
    Baseline,
}

pub(crate) fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Level {
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        Level::Avx512
    } else if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        Level::Avx2
    } else {
        Level::Baseline
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Level {
    Level::Baseline
}

/// `a * b + c`, as one fused instruction where the caller enabled FMA (a libm call
/// otherwise, hence the flag).
#[inline(always)]
pub(crate) fn madd<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED { a.mul_add(b, c) } else { a * b + c }
}

/// Defines `$name` with the given arguments, running the `#[inline(always)]` generic body
/// `$body::<FUSED>` compiled for the best instruction set the CPU has.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) => $body:ident) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) {
                    $body::<true>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $body::<true>($($arg),*)
                }
                match $crate::simd::level() {
                    $crate::simd::Level::Avx512 => {
                        // SAFETY: `level()` found AVX-512F, AVX2 and FMA on this CPU.
                        return unsafe { avx512($($arg),*) };
                    }
                    $crate::simd::Level::Avx2 => {
                        // SAFETY: `level()` found AVX2 and FMA on this CPU.
                        return unsafe { avx2($($arg),*) };
                    }
                    $crate::simd::Level::Baseline => {}
                }
            }
            $body::<false>($($arg),*)
        }
    };
}

pub(crate) use simd_dispatch;
