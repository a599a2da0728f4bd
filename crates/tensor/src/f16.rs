//! IEEE 754 half precision (binary16) for weights stored in half the bytes: 11 significant
//! bits (relative rounding error at most 2⁻¹¹ ≈ 4.9e-4) over ±65504, against bfloat16's 8
//! bits. Decoding at batch 1 reads every weight once a word, so halving the bytes halves the
//! time; the arithmetic stays f32.

/// Rounds an f32 to the nearest binary16 (ties to even), returned as its 16 bits, or `None`
/// when a finite `x` is too large for binary16 (|x| ≥ 65520 rounds to infinity). Infinities
/// and NaNs map to themselves.
pub fn to_f16(x: f32) -> Option<u16> {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let abs = bits & 0x7fff_ffff;
    if abs > 0x7f80_0000 {
        return Some(sign | 0x7e00); // NaN
    }
    if abs == 0x7f80_0000 {
        return Some(sign | 0x7c00); // infinity
    }
    if abs >= 0x477f_f000 {
        return None; // 65520 and above round past the largest finite half, 65504
    }
    if abs >= 0x3880_0000 {
        // Normal: rebias the exponent (127 → 15) and drop 13 mantissa bits, rounding to
        // nearest even; a carry out of the mantissa correctly bumps the exponent.
        let v = abs - (112 << 23);
        let (h, rest) = (v >> 13, v & 0x1fff);
        let up = rest > 0x1000 || (rest == 0x1000 && h & 1 == 1);
        return Some(sign | (h + u32::from(up)) as u16);
    }
    // Subnormal (or zero): a multiple of 2⁻²⁴. Scaling by 2²⁴ is exact, so rounding the
    // scaled value to an integer rounds the half.
    let m = (f32::from_bits(abs) * 16_777_216.0).round_ties_even();
    Some(sign | m as u16)
}

/// The f32 value of binary16 bits (exact: every half is an f32).
#[inline(always)]
pub fn from_f16(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match exp {
        0 => (mant as f32 * (1.0 / 16_777_216.0)).to_bits(),
        31 => 0x7f80_0000 | (mant << 13),
        _ => ((exp + 112) << 23) | (mant << 13),
    };
    f32::from_bits(sign | bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_half_round_trips() {
        for h in 0..=u16::MAX {
            let x = from_f16(h);
            if x.is_nan() {
                assert!(to_f16(x).is_some_and(|b| from_f16(b).is_nan()));
            } else {
                assert_eq!(to_f16(x), Some(h), "{h:#06x} = {x}");
            }
        }
    }

    #[test]
    fn rounds_to_nearest_even_and_refuses_overflow() {
        assert_eq!(to_f16(65504.0), Some(0x7bff));
        assert_eq!(to_f16(65519.0), Some(0x7bff));
        assert_eq!(to_f16(65520.0), None);
        assert_eq!(to_f16(-1e6), None);
        // 1 + 2⁻¹¹ is halfway between 1 and the next half: ties to the even one, 1.
        assert_eq!(to_f16(1.0 + 1.0 / 2048.0), Some(0x3c00));
        assert_eq!(to_f16(1.0 + 3.0 / 2048.0), Some(0x3c02));
        // Smallest subnormal 2⁻²⁴; half of it ties to zero, a little more rounds up.
        assert_eq!(to_f16(5.960_464_5e-8), Some(1));
        assert_eq!(to_f16(2.980_232_2e-8), Some(0));
        assert_eq!(to_f16(3.0e-8), Some(1));
        assert_eq!(to_f16(-0.0), Some(0x8000));
    }

    /// The CPU's own conversions (F16C) are the reference: every half to f32, and a spread
    /// of f32 values (normal, subnormal-range, near every rounding boundary) to half.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn agrees_with_the_hardware_conversions() {
        use std::arch::x86_64::*;
        if !std::arch::is_x86_feature_detected!("f16c") {
            eprintln!("no F16C on this CPU: skipped");
            return;
        }
        #[target_feature(enable = "f16c")]
        unsafe fn hw_from(h: u16) -> f32 {
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(h as i16)))
        }
        #[target_feature(enable = "f16c")]
        unsafe fn hw_to(x: f32) -> u16 {
            _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set1_ps(x))) as u16
        }
        for h in 0..=u16::MAX {
            // SAFETY: F16C is present (checked above).
            let want = unsafe { hw_from(h) };
            let got = from_f16(h);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{h:#06x}"
            );
        }
        let mut rng = crate::Rng::new(9);
        let mut checked = 0;
        for i in 0..400_000u32 {
            let x = match i % 4 {
                0 => rng.uniform(-70000.0, 70000.0),
                1 => rng.uniform(-1.0, 1.0) * 1e-4,
                2 => rng.uniform(-1.0, 1.0),
                // Bit patterns around the rounding boundary of each half.
                _ => f32::from_bits((i.wrapping_mul(2_654_435_761) & 0x47ff_ffff) | 0x0fff),
            };
            // SAFETY: F16C is present.
            let want = unsafe { hw_to(x) };
            match to_f16(x) {
                Some(h) => assert_eq!(h, want, "{x:e}"),
                None => assert_eq!(want & 0x7fff, 0x7c00, "{x:e} overflows in hardware too"),
            }
            checked += 1;
        }
        assert_eq!(checked, 400_000);
    }
}
