//! Int8 panels for [`crate::PanelMatrix::mul`] ([`crate::WeightFormat::Int8`]): a quarter of
//! the f32 bytes a decoding step streams, multiplied in integers.
//!
//! The weights are stored as in `compile --quantize int8`: each input row is divided by its
//! largest magnitude (the row scales, "equalised" inputs), then each column is rounded to
//! symmetric int8 with a scale of its own. A product first multiplies each input row by the
//! row scales, then rounds it to 16-bit integers with one scale per row (`amax` levels each
//! side, chosen from k so that no i32 sum can overflow: about 15 bits for the decoder's
//! layers, far finer than the weights' 8), sums `Σ_k a_k·q_kj` exactly in i32 (pairs of k at
//! a time: `vpmaddwd`), and adds `sum · (column scale · row scale)` to the output.
//!
//! The sums are exact integers, so every kernel (AVX-512BW, AVX2, portable) and every
//! thread count gives the same bits, and a row's result does not depend on its batch.

use crate::aligned::Aligned;
use crate::panel::{by_panels, OutOfRange, PANEL};

/// Pairs of panel rows in a slice (16 KB of weights, inside L1) that every row of a batch
/// passes over before the next slice.
const KP: usize = 128;

/// Bytes of one pair of panel rows: two int8 values for each of the `PANEL` columns.
const PAIR: usize = 2 * PANEL;

/// A `[k, n]` matrix as equalised per-column int8 panels.
#[derive(Debug, Clone)]
pub(crate) struct Int8Panels {
    k: usize,
    /// `k` rounded up to pairs, halved.
    pairs: usize,
    panels: usize,
    /// `[panels][pairs][PANEL][2]`: for each pair of rows, column j's two values side by side.
    q: Aligned<i8>,
    /// The scale of each input row (`k`).
    rows: Vec<f32>,
    /// The scale of each packed column (`panels · PANEL`; 1 for padding).
    cols: Vec<f32>,
    /// Largest magnitude of a rounded input.
    amax: i32,
}

impl Int8Panels {
    /// Packs `w` (`[k, n]`, row-major) with packed column `j` being column `columns[j]` of
    /// `w` (zero for `None`); fails on a weight that is not finite.
    pub(crate) fn pack(
        w: &[f32],
        k: usize,
        n: usize,
        columns: &[Option<usize>],
    ) -> Result<Self, OutOfRange> {
        if let Some(i) = w.iter().position(|v| !v.is_finite()) {
            return Err(OutOfRange {
                row: i / n,
                column: i % n,
                value: w[i],
            });
        }
        let scale = |m: f32| if m > 0.0 { m } else { 1.0 };
        let rows: Vec<f32> = (0..k)
            .map(|r| {
                scale(
                    w[r * n..(r + 1) * n]
                        .iter()
                        .fold(0.0f32, |m, v| m.max(v.abs())),
                )
            })
            .collect();
        let cols: Vec<f32> = columns
            .iter()
            .map(|c| match *c {
                None => 1.0,
                Some(c) => {
                    scale((0..k).fold(0.0f32, |m, r| m.max((w[r * n + c] / rows[r]).abs()))) / 127.0
                }
            })
            .collect();
        let panels = columns.len() / PANEL;
        let pairs = k.div_ceil(2);
        let mut q = Aligned::zeroed(panels * pairs * PAIR);
        for (j, c) in columns.iter().enumerate() {
            let Some(c) = *c else { continue };
            let (p, jj) = (j / PANEL, j % PANEL);
            for r in 0..k {
                let v = (w[r * n + c] / rows[r] / cols[j])
                    .round()
                    .clamp(-127.0, 127.0);
                q[(p * pairs + r / 2) * PAIR + 2 * jj + r % 2] = v as i8;
            }
        }
        // |Σ| ≤ 2·pairs · 127 · amax must fit an i32.
        let amax = (i32::MAX as usize / (127 * 2 * pairs.max(1))).min(32767) as i32;
        Ok(Self {
            k,
            pairs,
            panels,
            q,
            rows,
            cols,
            amax,
        })
    }

    /// Bytes of packed values.
    pub(crate) fn bytes(&self) -> usize {
        self.q.len()
    }

    /// [`crate::PanelMatrix::mul`] on these panels, its arguments checked there: `out`
    /// (`[panels][rows][PANEL]`) holds the initial values and gets the products added;
    /// `finish` sees each panel's block on the thread that computed it.
    pub(crate) fn mul<F>(&self, a: &[f32], rows: usize, out: &mut [f32], finish: F)
    where
        F: Fn(usize, &mut [f32]) + Sync,
    {
        let (x, scales) = self.quantize(a, rows);
        by_panels(self.panels, rows * PANEL, out, |p0, chunk| {
            let mut acc = vec![[0i32; PANEL]; rows];
            for (i, o) in chunk.chunks_exact_mut(rows * PANEL).enumerate() {
                let p = p0 + i;
                self.panel(p, &x, &mut acc);
                let cols = &self.cols[p * PANEL..(p + 1) * PANEL];
                for ((o, sums), &s) in o.chunks_exact_mut(PANEL).zip(&acc).zip(&scales) {
                    for ((o, &sum), &c) in o.iter_mut().zip(sums).zip(cols) {
                        *o += sum as f32 * (c * s);
                    }
                }
                finish(p, o);
            }
        });
    }

    /// Each row of `a` times the row scales, rounded to `±amax` with a scale per row: the
    /// rounded values as pairs (`[rows][pairs]`, the first of a pair in the low half) and
    /// the row scales. A row holding a NaN or an infinity gets a NaN scale, so its products
    /// are NaN as in f32.
    fn quantize(&self, a: &[f32], rows: usize) -> (Vec<i32>, Vec<f32>) {
        let mut x = Vec::with_capacity(rows * self.pairs);
        let mut scales = Vec::with_capacity(rows);
        let mut scaled = vec![0.0f32; 2 * self.pairs];
        for row in a.chunks_exact(self.k) {
            for ((s, &v), &r) in scaled.iter_mut().zip(row).zip(&self.rows) {
                *s = v * r;
            }
            let m = scaled.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let finite = scaled.iter().all(|v| v.is_finite());
            let (scale, inv) = if !finite {
                (f32::NAN, 0.0)
            } else if m > 0.0 {
                (m / self.amax as f32, self.amax as f32 / m)
            } else {
                (0.0, 0.0)
            };
            let level = |v: f32| (v * inv).round().clamp(-32767.0, 32767.0) as i16 as u16 as u32;
            x.extend(
                scaled
                    .chunks_exact(2)
                    .map(|p| (level(p[0]) | level(p[1]) << 16) as i32),
            );
            scales.push(scale);
        }
        (x, scales)
    }

    /// The exact sums of panel `p` for every row of `x` into `acc`, slice by slice so that a
    /// slice's weights stay in L1 while every row passes over them.
    fn panel(&self, p: usize, x: &[i32], acc: &mut [[i32; PANEL]]) {
        acc.iter_mut().for_each(|a| *a = [0; PANEL]);
        let w = &self.q[p * self.pairs * PAIR..(p + 1) * self.pairs * PAIR];
        for t0 in (0..self.pairs).step_by(KP) {
            let tc = KP.min(self.pairs - t0);
            let w = &w[t0 * PAIR..(t0 + tc) * PAIR];
            for (xr, a) in x.chunks_exact(self.pairs).zip(acc.iter_mut()) {
                dot_pairs(w, &xr[t0..t0 + tc], a);
            }
        }
    }
}

/// `acc[j] += Σ_t lo(x[t])·w[t][j][0] + hi(x[t])·w[t][j][1]`, exactly, for one row.
fn dot_pairs(w: &[i8], x: &[i32], acc: &mut [i32; PANEL]) {
    assert_eq!(w.len(), x.len() * PAIR, "weights and inputs disagree");
    #[cfg(target_arch = "x86_64")]
    {
        if crate::has_avx512() {
            // SAFETY: AVX-512F and BW are present; `w` holds `x.len()` pair rows (asserted).
            unsafe { x86::dot_pairs_avx512(w.as_ptr(), x, acc) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present; `w` holds `x.len()` pair rows (asserted).
            unsafe { x86::dot_pairs_avx2(w.as_ptr(), x, acc) };
            return;
        }
    }
    dot_pairs_portable(w, x, acc);
}

/// [`dot_pairs`] without vector instructions: the same integers.
fn dot_pairs_portable(w: &[i8], x: &[i32], acc: &mut [i32; PANEL]) {
    for (&xt, wt) in x.iter().zip(w.chunks_exact(PAIR)) {
        let (lo, hi) = (i32::from(xt as i16), xt >> 16);
        for (a, wj) in acc.iter_mut().zip(wt.chunks_exact(2)) {
            *a += lo * i32::from(wj[0]) + hi * i32::from(wj[1]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{PAIR, PANEL};

    /// [`super::dot_pairs`] in 256-bit vectors: 16 weights widened to 16-bit at a time,
    /// multiplied by the pair of inputs and summed in pairs (`vpmaddwd`).
    ///
    /// # Safety
    /// AVX2 must be present; `w` must hold `x.len()·PAIR` values.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot_pairs_avx2(w: *const i8, x: &[i32], acc: &mut [i32; PANEL]) {
        let a = acc.as_mut_ptr().cast::<__m256i>();
        let mut v: [__m256i; 8] = std::array::from_fn(|q| _mm256_loadu_si256(a.add(q)));
        for (t, &xt) in x.iter().enumerate() {
            let b = _mm256_set1_epi32(xt);
            let p = w.add(t * PAIR);
            for (q, v) in v.iter_mut().enumerate() {
                let wq = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(16 * q).cast()));
                *v = _mm256_add_epi32(*v, _mm256_madd_epi16(wq, b));
            }
        }
        for (q, v) in v.iter().enumerate() {
            _mm256_storeu_si256(a.add(q), *v);
        }
    }

    /// [`dot_pairs_avx2`] in 512-bit vectors.
    ///
    /// # Safety
    /// AVX-512F and AVX-512BW must be present; `w` must hold `x.len()·PAIR` values.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn dot_pairs_avx512(w: *const i8, x: &[i32], acc: &mut [i32; PANEL]) {
        let a = acc.as_mut_ptr().cast::<__m512i>();
        let mut v: [__m512i; 4] = std::array::from_fn(|q| _mm512_loadu_si512(a.add(q).cast()));
        for (t, &xt) in x.iter().enumerate() {
            let b = _mm512_set1_epi32(xt);
            let p = w.add(t * PAIR);
            for (q, v) in v.iter_mut().enumerate() {
                let wq = _mm512_cvtepi8_epi16(_mm256_loadu_si256(p.add(32 * q).cast()));
                *v = _mm512_add_epi32(*v, _mm512_madd_epi16(wq, b));
            }
        }
        for (q, v) in v.iter().enumerate() {
            _mm512_storeu_si512(a.add(q).cast(), *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::panel::{self, tests::random};
    use crate::{PanelMatrix, Rng, WeightFormat};

    fn in_order(n: usize) -> Vec<Option<usize>> {
        (0..n.div_ceil(PANEL) * PANEL)
            .map(|j| (j < n).then_some(j))
            .collect()
    }

    /// `init + a·W'` in f64, W' being the weights the panels stand for, `[rows, n]`.
    fn dequantized_product(m: &Int8Panels, a: &[f32], rows: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0.0f64; rows * n];
        for r in 0..rows {
            for j in 0..n {
                let (p, jj) = (j / PANEL, j % PANEL);
                out[r * n + j] = (0..m.k)
                    .map(|kk| {
                        let q = m.q[(p * m.pairs + kk / 2) * PAIR + 2 * jj + kk % 2];
                        let w = f64::from(q) * f64::from(m.cols[j]) * f64::from(m.rows[kk]);
                        f64::from(a[r * m.k + kk]) * w
                    })
                    .sum::<f64>();
            }
        }
        out
    }

    /// `a·W` through [`crate::PanelMatrix::mul`] on int8 panels, row-major `[rows, n]`.
    fn product(w: &[f32], k: usize, a: &[f32], rows: usize, n: usize) -> Vec<f32> {
        let m = PanelMatrix::pack(w, k, n, WeightFormat::Int8).unwrap();
        assert_eq!(m.format(), WeightFormat::Int8);
        panel::tests::product(&m, a, rows, n, &[])
    }

    #[test]
    fn weights_round_to_half_a_step_of_their_row_and_column() {
        let mut rng = Rng::new(5);
        let (k, n) = (37, 70);
        let mut w = random(&mut rng, k * n);
        // Rows of very different sizes: equalisation keeps the small ones.
        for v in &mut w[3 * n..4 * n] {
            *v *= 1e-3;
        }
        let m = Int8Panels::pack(&w, k, n, &in_order(n)).unwrap();
        for kk in 0..k {
            for j in 0..n {
                let (p, jj) = (j / PANEL, j % PANEL);
                let q = m.q[(p * m.pairs + kk / 2) * PAIR + 2 * jj + kk % 2];
                let back = f32::from(q) * m.cols[j] * m.rows[kk];
                let step = m.cols[j] * m.rows[kk];
                assert!(
                    (back - w[kk * n + j]).abs() <= 0.5 * step * 1.0001,
                    "({kk}, {j}): {} → {back}",
                    w[kk * n + j]
                );
            }
        }
    }

    #[test]
    fn products_are_the_dequantized_product_to_the_input_rounding() {
        let mut rng = Rng::new(9);
        for &(rows, k, n) in &[
            (1, 1, 1),
            (1, 37, 200),
            (3, 64, 64),
            (4, 300, 130),
            (9, 513, 257),
        ] {
            let a = random(&mut rng, rows * k);
            let w = random(&mut rng, k * n);
            let m = Int8Panels::pack(&w, k, n, &in_order(n)).unwrap();
            let want = dequantized_product(&m, &a, rows, n);
            let mut first = None;
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = pool.install(|| product(&w, k, &a, rows, n));
                for r in 0..rows {
                    // Each input moves by at most half a level of its row's largest scaled value.
                    let top = (0..k)
                        .map(|kk| f64::from(a[r * k + kk] * m.rows[kk]).abs())
                        .fold(0.0, f64::max);
                    for j in 0..n {
                        let col: f64 = (0..k)
                            .map(|kk| {
                                let (p, jj) = (j / PANEL, j % PANEL);
                                let q = m.q[(p * m.pairs + kk / 2) * PAIR + 2 * jj + kk % 2];
                                f64::from(q).abs() * f64::from(m.cols[j])
                            })
                            .sum();
                        let (g, e) = (f64::from(got[r * n + j]), want[r * n + j]);
                        let bound =
                            0.5 * top / f64::from(m.amax) * col * 1.001 + 1e-6 * (1.0 + e.abs());
                        assert!(
                            (g - e).abs() <= bound,
                            "{rows}×{k}×{n} ({r}, {j}): {g} vs {e}"
                        );
                    }
                }
                match &first {
                    None => first = Some(got),
                    Some(f) => assert_eq!(f, &got, "the same bits on {threads} threads"),
                }
            }
        }
    }

    #[test]
    fn the_vector_kernels_give_the_portable_integers() {
        let mut rng = Rng::new(2);
        let pairs = 77;
        let w: Vec<i8> = (0..pairs * PAIR)
            .map(|_| rng.uniform(-127.5, 127.5) as i8)
            .collect();
        let x: Vec<i32> = (0..pairs)
            .map(|_| {
                let (lo, hi) = (rng.uniform(-3e4, 3e4) as i16, rng.uniform(-3e4, 3e4) as i16);
                (lo as u16 as u32 | (hi as u16 as u32) << 16) as i32
            })
            .collect();
        let mut want = [7i32; PANEL];
        dot_pairs_portable(&w, &x, &mut want);
        let mut got = [7i32; PANEL];
        dot_pairs(&w, &x, &mut got);
        assert_eq!(got, want);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let mut got = [7i32; PANEL];
            // SAFETY: AVX2 is present and `w` holds `pairs` pair rows.
            unsafe { x86::dot_pairs_avx2(w.as_ptr(), &x, &mut got) };
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_row_gets_the_same_bits_in_any_batch_and_nan_stays_nan() {
        let mut rng = Rng::new(4);
        let (k, n) = (200, 130);
        let w = random(&mut rng, k * n);
        let mut a = random(&mut rng, 5 * k);
        let alone = product(&w, k, &a[2 * k..3 * k], 1, n);
        let all = product(&w, k, &a, 5, n);
        assert_eq!(alone, all[2 * n..3 * n]);
        a[k + 7] = f32::NAN;
        let all = product(&w, k, &a, 5, n);
        assert!(all[n..2 * n].iter().all(|v| v.is_nan()));
        assert_eq!(alone, all[2 * n..3 * n]);
        let zero = product(&w, k, &vec![0.0; k], 1, n);
        assert!(zero.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn a_weight_that_is_not_finite_is_refused_with_its_place() {
        let mut w = vec![0.5f32; 6 * 10];
        w[2 * 10 + 7] = f32::INFINITY;
        let e = Int8Panels::pack(&w, 6, 10, &in_order(10)).unwrap_err();
        assert_eq!((e.row, e.column), (2, 7));
    }
}
