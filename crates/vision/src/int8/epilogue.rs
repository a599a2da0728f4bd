//! The last step of a direct int8 convolution: a block of sums to values (the sums' scale,
//! the bias and the residual) and on to the next map's levels or to f32 values, a row of
//! [`QNR`] columns at a time in registers. In AVX2 where the CPU has it, else portably; both
//! do the same f32 operations in the same order, so they give the same bits.
//!
//! Toward levels, the map's scale is folded into the affine and the residual beforehand
//! ([`in_levels`]): a row is then `sum · scale' + offset'` (+ the residual's), floored and
//! rounded, with no separate pass from values to levels.

use autocaption_tensor::QNR;

use super::conv::QConv;
use super::{level, Levels, QMaps, Shared};

/// A block's `scale` and `offset` per column: a sum's value is `sum · scale + offset`.
pub(super) type Affine = [[f32; QNR]; 2];

/// `affine` in the levels of a map: its scale and offset over the map's step, plus the
/// map's zero point if `zero` (once per value: not for a residual's affine).
pub(super) fn in_levels(affine: &Affine, levels: Levels, zero: bool) -> Affine {
    let z = if zero { levels.zero } else { 0.0 };
    [
        affine[0].map(|s| s * levels.inv),
        affine[1].map(|o| o * levels.inv + z),
    ]
}

/// What [`QConv::run_direct`] adds to the convolution's values before the ReLU.
#[derive(Clone, Copy)]
pub(super) enum Shortcut<'a> {
    None,
    /// A projection: this convolution of this input, at the same output rows.
    Conv(&'a QConv, &'a QMaps),
    /// The block's input itself, shaped as the output.
    Identity(&'a QMaps),
}

/// Where [`QConv::run_direct`] writes each value, `[rows][cout]`, after `max(v, floor)`.
#[derive(Clone, Copy)]
pub(super) enum Sink<'a> {
    /// As levels of a map.
    Levels(&'a Shared<u8>, Levels, f32),
    /// As values.
    Values(&'a Shared<f32>, f32),
}

/// Where [`finish_block`] writes a row.
#[derive(Clone, Copy)]
pub(super) enum Out<'a> {
    /// Values already in levels ([`in_levels`]): `max(v, floor)` rounded to 0–255.
    Levels(&'a Shared<u8>, f32),
    /// `max(v, floor)`.
    Values(&'a Shared<f32>, f32),
}

impl<'a> Sink<'a> {
    /// The output [`finish_block`] writes, and the levels to fold into the affines (none
    /// for values).
    pub(super) fn out(self) -> (Out<'a>, Option<Levels>) {
        match self {
            Sink::Levels(out, levels, floor) => {
                (Out::Levels(out, levels.unrounded(floor)), Some(levels))
            }
            Sink::Values(out, floor) => (Out::Values(out, floor), None),
        }
    }
}

/// A block's residual, as [`finish_block`] reads it (in the output's units).
#[derive(Clone, Copy)]
pub(super) enum Residual<'a> {
    None,
    /// Another product's sums and affine.
    Sums(&'a [[i32; QNR]], &'a Affine),
    /// Levels: row `i`'s `width` columns at `q[i · stride..]`.
    Levels {
        q: &'a [u8],
        stride: usize,
        width: usize,
        scale: f32,
        zero: f32,
    },
}

/// A block's values from its sums: row `i` is `acc[i] · scale + offset` plus row `i` of the
/// residual (`scale · (q − zero)` for levels), written to `out` at `at + i · stride`
/// (`width` columns, at most [`QNR`]).
pub(super) fn finish_block(
    acc: &[[i32; QNR]],
    affine: &Affine,
    residual: Residual<'_>,
    out: Out<'_>,
    place: (usize, usize, usize),
) {
    assert!(place.2 <= QNR, "a block is at most {QNR} columns");
    FORMS[0].1(acc, affine, residual, out, place)
}

/// A form of [`finish_block`].
type Form = fn(&[[i32; QNR]], &Affine, Residual<'_>, Out<'_>, (usize, usize, usize));

/// The forms this CPU can run, the fastest first (the portable one last).
static FORMS: std::sync::LazyLock<Vec<(&'static str, Form)>> = std::sync::LazyLock::new(|| {
    let mut forms: Vec<(&'static str, Form)> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if autocaption_tensor::has_avx512() {
            // SAFETY: the CPU has AVX-512F, BW and VL.
            forms.push(("AVX-512", |a, f, r, o, p| unsafe {
                x86::finish_block_avx512(a, f, r, o, p)
            }));
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            forms.push(("AVX2", |a, f, r, o, p| unsafe {
                x86::finish_block_avx2(a, f, r, o, p)
            }));
        }
    }
    forms.push(("portable", finish_block_portable));
    forms
});

/// [`finish_block`] one value at a time.
fn finish_block_portable(
    acc: &[[i32; QNR]],
    affine: &Affine,
    residual: Residual<'_>,
    out: Out<'_>,
    place: (usize, usize, usize),
) {
    let (at, stride, width) = place;
    let value = |a: &[i32; QNR], affine: &Affine| -> [f32; QNR] {
        let mut v = [0.0; QNR];
        for jj in 0..QNR {
            v[jj] = a[jj] as f32 * affine[0][jj] + affine[1][jj];
        }
        v
    };
    for (i, a) in acc.iter().enumerate() {
        let mut v = value(a, affine);
        match residual {
            Residual::None => {}
            Residual::Sums(acc, affine) => {
                let s = value(&acc[i], affine);
                for (v, s) in v.iter_mut().zip(s) {
                    *v += s;
                }
            }
            Residual::Levels {
                q,
                stride,
                width,
                scale,
                zero,
            } => {
                let q = &q[i * stride..i * stride + width];
                for (v, &q) in v.iter_mut().zip(q) {
                    *v += scale * (f32::from(q) - zero);
                }
            }
        }
        let at = at + i * stride;
        match out {
            Out::Levels(out, floor) => {
                let mut l = [0u8; QNR];
                for (l, &v) in l.iter_mut().zip(&v) {
                    *l = level(v.max(floor));
                }
                // SAFETY: each task writes its own rows' own blocks.
                unsafe { out.part(at, width) }.copy_from_slice(&l[..width]);
            }
            Out::Values(out, floor) => {
                // SAFETY: each task writes its own rows' own blocks.
                let dst = unsafe { out.part(at, width) };
                for (d, &v) in dst.iter_mut().zip(&v) {
                    *d = v.max(floor);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Affine, Out, Residual, QNR};

    /// `a · s + o` for the two halves of a row of sums.
    ///
    /// # Safety
    /// AVX2 must be present.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn affine_row(
        a: &[i32; QNR],
        (s0, s1, o0, o1): (__m256, __m256, __m256, __m256),
    ) -> (__m256, __m256) {
        let p = a.as_ptr().cast::<__m256i>();
        let v0 = _mm256_cvtepi32_ps(_mm256_loadu_si256(p));
        let v1 = _mm256_cvtepi32_ps(_mm256_loadu_si256(p.add(1)));
        (
            _mm256_add_ps(_mm256_mul_ps(v0, s0), o0),
            _mm256_add_ps(_mm256_mul_ps(v1, s1), o1),
        )
    }

    /// An affine's scales and offsets, two halves each.
    ///
    /// # Safety
    /// AVX2 must be present.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn halves(a: &Affine) -> (__m256, __m256, __m256, __m256) {
        (
            _mm256_loadu_ps(a[0].as_ptr()),
            _mm256_loadu_ps(a[0].as_ptr().add(8)),
            _mm256_loadu_ps(a[1].as_ptr()),
            _mm256_loadu_ps(a[1].as_ptr().add(8)),
        )
    }

    /// [`super::finish_block`] in 256-bit vectors: `cvtdq2ps`, then multiplies and adds
    /// (never fused, as the portable form); levels floored, clamped from above (a NaN
    /// stays NaN), rounded to the nearest, halves to even (`cvtps2dq`, as adding 1.5·2²³
    /// does) and packed to bytes with unsigned saturation (negatives and NaN to 0, as the
    /// portable clamp).
    ///
    /// # Safety
    /// AVX2 must be present.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn finish_block_avx2(
        acc: &[[i32; QNR]],
        affine: &Affine,
        residual: Residual<'_>,
        out: Out<'_>,
        (at, stride, width): (usize, usize, usize),
    ) {
        let main = halves(affine);
        let second = match residual {
            Residual::Sums(_, a) => halves(a),
            _ => main,
        };
        for (i, a) in acc.iter().enumerate() {
            let (mut v0, mut v1) = affine_row(a, main);
            match residual {
                Residual::None => {}
                Residual::Sums(acc, _) => {
                    let (t0, t1) = affine_row(&acc[i], second);
                    v0 = _mm256_add_ps(v0, t0);
                    v1 = _mm256_add_ps(v1, t1);
                }
                Residual::Levels {
                    q,
                    stride,
                    width,
                    scale,
                    zero,
                } => {
                    let row = &q[i * stride..i * stride + width];
                    let mut padded = [0u8; QNR];
                    let x = if width == QNR {
                        _mm_loadu_si128(row.as_ptr().cast())
                    } else {
                        padded[..width].copy_from_slice(row);
                        _mm_loadu_si128(padded.as_ptr().cast())
                    };
                    let q0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(x));
                    let q1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128::<8>(x)));
                    let (scale, zero) = (_mm256_set1_ps(scale), _mm256_set1_ps(zero));
                    v0 = _mm256_add_ps(v0, _mm256_mul_ps(scale, _mm256_sub_ps(q0, zero)));
                    v1 = _mm256_add_ps(v1, _mm256_mul_ps(scale, _mm256_sub_ps(q1, zero)));
                }
            }
            let at = at + i * stride;
            match out {
                Out::Levels(out, floor) => {
                    let (floor, top) = (_mm256_set1_ps(floor), _mm256_set1_ps(255.0));
                    // `min(top, l)` returns `l` when it is NaN.
                    let lv =
                        |v: __m256| _mm256_cvtps_epi32(_mm256_min_ps(top, _mm256_max_ps(v, floor)));
                    let words = _mm256_packus_epi32(lv(v0), lv(v1));
                    let words = _mm256_permute4x64_epi64::<0b11_01_10_00>(words);
                    let bytes = _mm_packus_epi16(
                        _mm256_castsi256_si128(words),
                        _mm256_extracti128_si256::<1>(words),
                    );
                    // SAFETY: each task writes its own rows' own blocks.
                    let dst = unsafe { out.part(at, width) };
                    if width == QNR {
                        _mm_storeu_si128(dst.as_mut_ptr().cast(), bytes);
                    } else {
                        let mut b = [0u8; QNR];
                        _mm_storeu_si128(b.as_mut_ptr().cast(), bytes);
                        dst.copy_from_slice(&b[..width]);
                    }
                }
                Out::Values(out, floor) => {
                    let floor = _mm256_set1_ps(floor);
                    let (v0, v1) = (_mm256_max_ps(v0, floor), _mm256_max_ps(v1, floor));
                    // SAFETY: each task writes its own rows' own blocks.
                    let dst = unsafe { out.part(at, width) };
                    if width == QNR {
                        _mm256_storeu_ps(dst.as_mut_ptr(), v0);
                        _mm256_storeu_ps(dst.as_mut_ptr().add(8), v1);
                    } else {
                        let mut b = [0.0f32; QNR];
                        _mm256_storeu_ps(b.as_mut_ptr(), v0);
                        _mm256_storeu_ps(b.as_mut_ptr().add(8), v1);
                        dst.copy_from_slice(&b[..width]);
                    }
                }
            }
        }
    }

    /// [`super::finish_block`] in 512-bit vectors, a row of sums in one: the operations of
    /// [`finish_block_avx2`], but toward levels the floor is raised to 0 (below it every
    /// value becomes level 0 either way), so the unsigned conversion (`cvtps2udq`: halves
    /// to even; too large, infinite and negative to `2³² − 1`) and its saturation to bytes
    /// (`vpmovusdb`) give the clamp: a NaN takes the floor in `max`, as in the portable form.
    ///
    /// # Safety
    /// AVX-512F, BW and VL must be present.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn finish_block_avx512(
        acc: &[[i32; QNR]],
        affine: &Affine,
        residual: Residual<'_>,
        out: Out<'_>,
        (at, stride, width): (usize, usize, usize),
    ) {
        let lanes = |width: usize| -> __mmask16 { (u32::MAX >> (32 - width)) as __mmask16 };
        let load = |a: &Affine| {
            (
                _mm512_loadu_ps(a[0].as_ptr()),
                _mm512_loadu_ps(a[1].as_ptr()),
            )
        };
        let row = |a: &[i32; QNR], (s, o): (__m512, __m512)| {
            let v = _mm512_cvtepi32_ps(_mm512_loadu_si512(a.as_ptr().cast()));
            _mm512_add_ps(_mm512_mul_ps(v, s), o)
        };
        let main = load(affine);
        let second = match residual {
            Residual::Sums(_, a) => load(a),
            _ => main,
        };
        let whole =
            width == QNR && !matches!(residual, Residual::Levels { width: w, .. } if w != QNR);
        if let (Out::Levels(out, floor), true) = (out, whole) {
            // Whole rows to levels, the common case: one loop for each residual, with no
            // test and no bound check a row (the bounds checked here once). ResNet-50 with
            // 2 threads (AMD Zen 4): 0.3–3.7% less time at batch 1 and 0.8–1.9% at batch
            // 8 (medians of two runs of 10 and 12 rounds alternating pass by pass).
            let floor = _mm512_set1_ps(floor.max(0.0));
            let span = acc.len().saturating_sub(1) * stride + QNR;
            let dst = out.ptr(at, if acc.is_empty() { 0 } else { span });
            let put = |i: usize, v: __m512| {
                let bytes = _mm512_cvtusepi32_epi8(_mm512_cvtps_epu32(_mm512_max_ps(v, floor)));
                // SAFETY: inside the output (checked above); each task writes its own rows'
                // own blocks.
                unsafe { _mm_storeu_si128(dst.add(i * stride).cast(), bytes) };
            };
            match residual {
                Residual::None => {
                    for (i, a) in acc.iter().enumerate() {
                        put(i, row(a, main));
                    }
                }
                Residual::Sums(acc2, _) => {
                    assert!(acc2.len() >= acc.len(), "a residual sum for every row");
                    for (i, (a, a2)) in acc.iter().zip(acc2).enumerate() {
                        put(i, _mm512_add_ps(row(a, main), row(a2, second)));
                    }
                }
                Residual::Levels {
                    q,
                    stride: q_stride,
                    scale,
                    zero,
                    ..
                } => {
                    let span = acc.len().saturating_sub(1) * q_stride + QNR;
                    assert!(
                        acc.is_empty() || span <= q.len(),
                        "residual rows out of bounds"
                    );
                    let residual = |i: usize| {
                        // SAFETY: inside `q` (asserted above).
                        let x = unsafe { _mm_loadu_si128(q.as_ptr().add(i * q_stride).cast()) };
                        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(x))
                    };
                    let scale_v = _mm512_set1_ps(scale);
                    if zero == 0.0 {
                        // A map after a ReLU (every block's input): `q − 0` is `q`, one
                        // operation less (ResNet-50: 0.4% less time at batches 1 and 8, faster
                        // in 9 and 8 of 12 rounds alternating pass by pass).
                        for (i, a) in acc.iter().enumerate() {
                            let r = _mm512_mul_ps(scale_v, residual(i));
                            put(i, _mm512_add_ps(row(a, main), r));
                        }
                    } else {
                        let zero = _mm512_set1_ps(zero);
                        for (i, a) in acc.iter().enumerate() {
                            let r = _mm512_mul_ps(scale_v, _mm512_sub_ps(residual(i), zero));
                            put(i, _mm512_add_ps(row(a, main), r));
                        }
                    }
                }
            }
            return;
        }
        for (i, a) in acc.iter().enumerate() {
            let mut v = row(a, main);
            match residual {
                Residual::None => {}
                Residual::Sums(acc, _) => v = _mm512_add_ps(v, row(&acc[i], second)),
                Residual::Levels {
                    q,
                    stride,
                    width,
                    scale,
                    zero,
                } => {
                    let row = &q[i * stride..i * stride + width];
                    let x = if width == QNR {
                        _mm_loadu_si128(row.as_ptr().cast())
                    } else {
                        _mm_maskz_loadu_epi8(lanes(width), row.as_ptr().cast())
                    };
                    let q = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(x));
                    let (scale, zero) = (_mm512_set1_ps(scale), _mm512_set1_ps(zero));
                    v = _mm512_add_ps(v, _mm512_mul_ps(scale, _mm512_sub_ps(q, zero)));
                }
            }
            let at = at + i * stride;
            match out {
                Out::Levels(out, floor) => {
                    let l = _mm512_max_ps(v, _mm512_set1_ps(floor.max(0.0)));
                    let bytes = _mm512_cvtusepi32_epi8(_mm512_cvtps_epu32(l));
                    // SAFETY: each task writes its own rows' own blocks.
                    let dst = unsafe { out.part(at, width) };
                    if width == QNR {
                        _mm_storeu_si128(dst.as_mut_ptr().cast(), bytes);
                    } else {
                        _mm_mask_storeu_epi8(dst.as_mut_ptr().cast(), lanes(width), bytes);
                    }
                }
                Out::Values(out, floor) => {
                    let v = _mm512_max_ps(v, _mm512_set1_ps(floor));
                    // SAFETY: each task writes its own rows' own blocks.
                    let dst = unsafe { out.part(at, width) };
                    if width == QNR {
                        _mm512_storeu_ps(dst.as_mut_ptr(), v);
                    } else {
                        _mm512_mask_storeu_ps(dst.as_mut_ptr(), lanes(width), v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autocaption_tensor::Rng;

    /// Every residual and sink, full and partial blocks, large and negative sums, infinite
    /// values and NaN (column 0: huge scales of both signs): the vector form (where this CPU
    /// has it) writes the portable form's bits.
    #[test]
    fn the_vector_epilogue_gives_the_portable_bits() {
        let mut rng = Rng::new(5);
        let rows = 7;
        let sums = |rng: &mut Rng| -> Vec<[i32; QNR]> {
            (0..rows)
                .map(|_| std::array::from_fn(|_| rng.uniform(-3.0e6, 3.0e6) as i32))
                .collect()
        };
        let affine = |rng: &mut Rng| -> Affine {
            [
                std::array::from_fn(|_| rng.uniform(1e-6, 1e-4)),
                std::array::from_fn(|_| rng.uniform(-30.0, 30.0)),
            ]
        };
        let (acc, acc2) = (sums(&mut rng), sums(&mut rng));
        let (mut a, mut a2) = (affine(&mut rng), affine(&mut rng));
        (a[0][0], a2[0][0]) = (1e35, 1e35);
        let stride = 40;
        let q: Vec<u8> = (0..rows * stride)
            .map(|_| rng.uniform(0.0, 256.0) as u8)
            .collect();
        for width in [QNR, 5] {
            let residuals = [
                Residual::None,
                Residual::Sums(&acc2, &a2),
                Residual::Levels {
                    q: &q,
                    stride,
                    width,
                    scale: 0.07,
                    zero: 3.0,
                },
                // A map after a ReLU, as every block's input.
                Residual::Levels {
                    q: &q,
                    stride,
                    width,
                    scale: 0.07,
                    zero: 0.0,
                },
            ];
            for residual in residuals {
                for floor in [0.0, f32::NEG_INFINITY] {
                    let levels = Levels {
                        inv: 1.0 / 0.11,
                        zero: 9.0,
                    };
                    let run = |form: Form, bytes: &mut Vec<u8>, values: &mut Vec<f32>| {
                        let (b, v) = (Shared::new(bytes), Shared::new(values));
                        let place = (3, stride, width);
                        for sink in [Sink::Levels(&b, levels, floor), Sink::Values(&v, floor)] {
                            // As `run_direct` folds them.
                            let (out, to) = sink.out();
                            let fold = |a: &Affine, zero| to.map_or(*a, |l| in_levels(a, l, zero));
                            let (fa, fa2) = (fold(&a, true), fold(&a2, false));
                            let residual = match residual {
                                Residual::Sums(acc2, _) => Residual::Sums(acc2, &fa2),
                                Residual::Levels {
                                    q,
                                    stride,
                                    width,
                                    scale,
                                    zero,
                                } => {
                                    let scale = scale * to.map_or(1.0, |l| l.inv);
                                    Residual::Levels {
                                        q,
                                        stride,
                                        width,
                                        scale,
                                        zero,
                                    }
                                }
                                Residual::None => Residual::None,
                            };
                            form(&acc, &fa, residual, out, place);
                        }
                    };
                    let (mut b1, mut v1) = (vec![7u8; rows * stride], vec![7.0f32; rows * stride]);
                    run(finish_block_portable, &mut b1, &mut v1);
                    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    for (name, form) in FORMS.iter() {
                        let (mut b2, mut v2) = (vec![7u8; rows * stride], vec![7.0; rows * stride]);
                        run(*form, &mut b2, &mut v2);
                        assert_eq!(b1, b2, "{name}: levels, width {width}");
                        assert_eq!(bits(&v1), bits(&v2), "{name}: values, width {width}");
                    }
                    // The top level and the floor (the zero point, or level 0 without a
                    // ReLU) are reached: the clamping is tested.
                    let written: Vec<u8> = (0..rows)
                        .flat_map(|i| b1[3 + i * stride..3 + i * stride + width].to_vec())
                        .collect();
                    let bottom = if floor == 0.0 { 9 } else { 0 };
                    assert!(written.contains(&bottom) && written.contains(&255));
                }
            }
        }
    }
}
