//! Convolutions on 8-bit maps: patch rows against 7-bit weights with exact `i32` sums, or
//! for 3×3 convolutions the same sums through an integer Winograd transform.

use std::ops::Range;

use autocaption_tensor::{PairWeights, QuantWeights, QNR};
use rayon::prelude::*;

use super::{affine, requantize, QMaps, Quant, Shared};
use crate::{buffers, Conv, Maps, Padding};

/// A convolution on 8-bit inputs.
#[derive(Debug, Clone)]
pub(super) struct QConv {
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) cin: usize,
    pub(super) cout: usize,
    pub(super) stride: usize,
    pub(super) pad: Padding,
    pub(super) relu: bool,
    pub(super) weights: QuantWeights,
    pub(super) bias: Vec<f32>,
    /// The weights transformed for F(2×2, 3×3), where that pays.
    pub(super) winograd: Option<QWinograd>,
}

/// Input channels from which a 3×3 convolution of stride 1 runs as F(2×2, 3×3): 2.25×
/// fewer multiplications, at 16 bits (the transformed values outgrow 8). Up to
/// [`WINOGRAD_MAX_CHANNELS`]: beyond, the transformed weights (16 positions of `cin × cout`
/// at 16 bits) no longer stay in cache while a tile block passes over them.
const WINOGRAD_MIN_CHANNELS: usize = 32;

/// See [`WINOGRAD_MIN_CHANNELS`].
const WINOGRAD_MAX_CHANNELS: usize = 256;

/// A 3×3 convolution's integer weights transformed for F(2×2, 3×3): with `G' = 2G` (rows
/// `[2,0,0]`, `[1,1,1]`, `[1,−1,1]`, `[0,0,2]`), `U' = G'·g·G'ᵀ = 4·U` is an integer
/// (at most `9 · 63 = 567` in size), so `Aᵀ·(Σ U'⊙V)·A` is exactly 4 times the direct sums:
/// the same integers as [`QuantWeights::block_sums`], hence the same outputs, bit for bit.
#[derive(Debug, Clone)]
pub(super) struct QWinograd {
    /// Per position of the 4×4 transform, `[cin, cout]`.
    u: Vec<PairWeights>,
}

impl QWinograd {
    fn new(w: &QuantWeights, cin: usize, cout: usize) -> Self {
        const G: [[i32; 3]; 4] = [[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]];
        let mut u = vec![vec![0i16; cin * cout]; 16];
        for ci in 0..cin {
            for o in 0..cout {
                let g = |ky: usize, kx: usize| i32::from(w.level((ky * 3 + kx) * cin + ci, o));
                for (i, gi) in G.iter().enumerate() {
                    // t = G'·g, row i.
                    let t: [i32; 3] =
                        std::array::from_fn(|kx| (0..3).map(|ky| gi[ky] * g(ky, kx)).sum());
                    for (j, gj) in G.iter().enumerate() {
                        let v: i32 = (0..3).map(|kx| t[kx] * gj[kx]).sum();
                        u[4 * i + j][ci * cout + o] = v as i16;
                    }
                }
            }
        }
        Self {
            u: u.iter().map(|w| PairWeights::pack(w, cin, cout)).collect(),
        }
    }
}

/// Rows of output pixels a task makes at once (its patch rows stay in L2), about.
const TILE_ROWS: usize = 48;

// Tiles hold whole kernel calls.
const _: () = assert!(TILE_ROWS.is_multiple_of(autocaption_tensor::QMR));

/// Splits `rows` output rows and `blocks` column blocks into tasks and runs
/// `job(first row, rows, blocks)` for each on the thread pool: row tiles, and where they are
/// too few to keep every thread busy, each tile's blocks split among several tasks too.
pub(super) fn for_tiles(
    rows: usize,
    blocks: usize,
    job: impl Fn(usize, usize, Range<usize>) + Sync,
) {
    let threads = rayon::current_num_threads().max(1);
    let tiles = rows.div_ceil(TILE_ROWS);
    let groups = if tiles >= 2 * threads {
        1
    } else {
        (2 * threads).div_ceil(tiles.max(1)).min(blocks).max(1)
    };
    (0..tiles * groups).into_par_iter().for_each(|t| {
        let (tile, g) = (t / groups, t % groups);
        let r0 = tile * TILE_ROWS;
        let b = |g: usize| g * blocks / groups;
        job(r0, TILE_ROWS.min(rows - r0), b(g)..b(g + 1));
    });
}

impl QConv {
    pub(super) fn new(c: &Conv) -> Self {
        let k = c.kh * c.kw * c.cin;
        let weights = QuantWeights::quantize(&c.weight, k, c.cout)
            .expect("weights were checked finite when loaded");
        let winograd = (c.kh == 3
            && c.kw == 3
            && c.stride == 1
            && c.pad == Padding::same(1)
            && c.cin.is_multiple_of(2)
            && (WINOGRAD_MIN_CHANNELS..=WINOGRAD_MAX_CHANNELS).contains(&c.cin))
        .then(|| QWinograd::new(&weights, c.cin, c.cout));
        Self {
            kh: c.kh,
            kw: c.kw,
            cin: c.cin,
            cout: c.cout,
            stride: c.stride,
            pad: c.pad,
            relu: c.relu,
            weights,
            bias: c.bias.clone(),
            winograd,
        }
    }

    pub(super) fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let oh = (h + self.pad.top + self.pad.bottom - self.kh) / self.stride + 1;
        let ow = (w + self.pad.left + self.pad.right - self.kw) / self.stride + 1;
        (oh, ow)
    }

    /// Whether an output row's patch is an input pixel's channels, read where they lie.
    fn reads_in_place(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == 1
            && self.pad == Padding::same(0)
            && self.cin.is_multiple_of(4)
    }

    /// Output rows `r0..r0 + r`, column blocks `blocks`: `scale · sum + bias` before any
    /// residual and ReLU into `out`, `[r][width of the blocks]`. `patch` is scratch for
    /// patch rows.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tile(
        &self,
        x: &QMaps,
        (oh, ow): (usize, usize),
        r0: usize,
        r: usize,
        blocks: Range<usize>,
        patch: &mut Vec<u8>,
        out: &mut [f32],
    ) {
        let bytes = self.weights.row_bytes();
        let rows: Vec<&[u8]> = if self.reads_in_place() {
            (r0..r0 + r)
                .map(|i| &x.data[i * self.cin..(i + 1) * self.cin])
                .collect()
        } else {
            patch.clear();
            patch.resize(r * bytes, 0);
            let zero = x.quant.zero;
            for (i, p) in patch.chunks_exact_mut(bytes).enumerate() {
                let row = r0 + i;
                let (n, rem) = (row / (oh * ow), row % (oh * ow));
                let (oy, ox) = (rem / ow, rem % ow);
                let ix0 = (ox * self.stride) as isize - self.pad.left as isize;
                let run = self.kw * self.cin;
                for ky in 0..self.kh {
                    let iy = (oy * self.stride + ky) as isize - self.pad.top as isize;
                    if iy >= 0 && iy < x.h as isize && ix0 >= 0 && ix0 as usize + self.kw <= x.w {
                        // The kernel row lies inside: one run of kw·cin bytes.
                        let src = ((n * x.h + iy as usize) * x.w + ix0 as usize) * self.cin;
                        let at = ky * run;
                        p[at..at + run].copy_from_slice(&x.data[src..src + run]);
                        continue;
                    }
                    for kx in 0..self.kw {
                        let ix = (ox * self.stride + kx) as isize - self.pad.left as isize;
                        let at = (ky * self.kw + kx) * self.cin;
                        let dst = &mut p[at..at + self.cin];
                        if iy < 0 || ix < 0 || iy >= x.h as isize || ix >= x.w as isize {
                            dst.fill(zero);
                        } else {
                            let src = ((n * x.h + iy as usize) * x.w + ix as usize) * self.cin;
                            dst.copy_from_slice(&x.data[src..src + self.cin]);
                        }
                    }
                }
            }
            patch.chunks_exact(bytes).collect()
        };
        let c0 = blocks.start * QNR;
        let width = (blocks.end * QNR).min(self.cout) - c0;
        assert_eq!(out.len(), r * width, "tile output");
        let (scales, sums) = (self.weights.scales(), self.weights.column_sums());
        let zero = i32::from(x.quant.zero);
        // Per column: the sum's scale, and what the input zero point and bias add.
        let scale: Vec<f32> = scales[c0..c0 + width]
            .iter()
            .map(|s| x.quant.scale * s)
            .collect();
        let offset: Vec<f32> = (c0..c0 + width)
            .map(|o| self.bias[o] - (zero * sums[o]) as f32 * scale[o - c0])
            .collect();
        let mut acc = vec![[0i32; QNR]; r];
        for b in blocks {
            self.weights.block_sums(&rows, b, &mut acc);
            let j0 = b * QNR - c0;
            let w = QNR.min(width - j0);
            affine(
                &acc,
                &scale[j0..j0 + w],
                &offset[j0..j0 + w],
                &mut out[j0..],
                width,
            );
        }
    }

    /// The convolution with its ReLU, in f32.
    pub(super) fn forward_f32(&self, x: &QMaps) -> Maps {
        let (oh, ow) = self.out_size(x.h, x.w);
        let mut data = buffers::take(x.n * oh * ow * self.cout); // every value written below
        let relu = self.relu;
        self.rows_into(x, &mut data, |v, dst| {
            for (d, &v) in dst.iter_mut().zip(v) {
                *d = if relu { v.max(0.0) } else { v };
            }
        });
        Maps {
            n: x.n,
            h: oh,
            w: ow,
            c: self.cout,
            data,
        }
    }

    /// The direct product over every output row, tile by tile: `write(values, dst)` turns
    /// each row's `scale · sum + bias` for a task's columns into that row's part of `out`
    /// (`[rows][cout]`).
    fn rows_into<T: Send>(
        &self,
        x: &QMaps,
        out: &mut [T],
        write: impl Fn(&[f32], &mut [T]) + Sync,
    ) {
        assert_eq!(x.c, self.cin, "conv expects {} input channels", self.cin);
        let (oh, ow) = self.out_size(x.h, x.w);
        let rows = x.n * oh * ow;
        assert_eq!(out.len(), rows * self.cout, "output size");
        let shared = Shared::new(out);
        let cout = self.cout;
        for_tiles(rows, self.weights.blocks(), |r0, r, blocks| {
            let c0 = blocks.start * QNR;
            let width = (blocks.end * QNR).min(cout) - c0;
            let mut vals = vec![0.0f32; r * width];
            self.tile(x, (oh, ow), r0, r, blocks, &mut Vec::new(), &mut vals);
            for (i, v) in vals.chunks_exact(width).enumerate() {
                // SAFETY: each task writes its own rows' own blocks.
                write(v, unsafe { shared.part((r0 + i) * cout + c0, width) });
            }
        });
    }

    /// The convolution with its ReLU, requantized to `out`.
    pub(super) fn forward(&self, x: &QMaps, out: Quant) -> QMaps {
        assert_eq!(x.c, self.cin, "conv expects {} input channels", self.cin);
        if let (Some(wg), 0) = (&self.winograd, x.quant.zero) {
            return self.forward_winograd(wg, x, out);
        }
        self.forward_direct(x, out)
    }

    /// [`QConv::forward`] as F(2×2, 3×3) (stride 1, padding 1, input zero point 0): each
    /// task transforms a block of 2×2 output tiles' 4×4 input patches, multiplies them by
    /// the transformed weights position by position, and transforms the sums back.
    #[allow(clippy::needless_range_loop)] // tiles are counted, their sums indexed
    fn forward_winograd(&self, wg: &QWinograd, x: &QMaps, out: Quant) -> QMaps {
        let (h, w, cin, cout) = (x.h, x.w, self.cin, self.cout);
        let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
        let tiles = x.n * th * tw;
        let pairs = cin / 2;
        let mut data = buffers::take_bytes(x.n * h * w * cout); // every value written below
        let shared = Shared::new(&mut data);
        let floor = if self.relu { 0.0 } else { f32::NEG_INFINITY };
        let levels = out.levels();
        let scale: Vec<f32> = self
            .weights
            .scales()
            .iter()
            .map(|s| x.quant.scale * s)
            .collect();
        for_tiles(tiles, self.weights.blocks(), |t0, tcount, blocks| {
            // V: [16][tcount][pairs], two channels to an i32.
            let mut v = vec![0i32; 16 * tcount * pairs];
            let mut d = vec![0i16; 16 * cin];
            for t in 0..tcount {
                let tile = t0 + t;
                let (n, rem) = (tile / (th * tw), tile % (th * tw));
                let (ty, tx) = (rem / tw, rem % tw);
                for a in 0..4 {
                    for b in 0..4 {
                        let (iy, ix) = ((2 * ty + a) as isize - 1, (2 * tx + b) as isize - 1);
                        let dst = &mut d[(4 * a + b) * cin..(4 * a + b + 1) * cin];
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            dst.fill(0);
                        } else {
                            let at = ((n * h + iy as usize) * w + ix as usize) * cin;
                            for (d, &q) in dst.iter_mut().zip(&x.data[at..at + cin]) {
                                *d = i16::from(q);
                            }
                        }
                    }
                }
                input_transform(&d, cin, &mut v, t, tcount, pairs);
            }
            let rows: Vec<Vec<&[i32]>> = (0..16)
                .map(|p| {
                    (0..tcount)
                        .map(|t| &v[(p * tcount + t) * pairs..(p * tcount + t + 1) * pairs])
                        .collect()
                })
                .collect();
            let mut m = vec![vec![[0i32; QNR]; tcount]; 16];
            let mut vals = [[0.0f32; QNR]; 4];
            for b in blocks {
                for (p, m) in m.iter_mut().enumerate() {
                    wg.u[p].block_sums(&rows[p], b, m);
                }
                let o0 = b * QNR;
                let width = QNR.min(cout - o0);
                let (scale, bias) = (&scale[o0..o0 + width], &self.bias[o0..o0 + width]);
                for t in 0..tcount {
                    let tile = t0 + t;
                    let (n, rem) = (tile / (th * tw), tile % (th * tw));
                    let (ty, tx) = (rem / tw, rem % tw);
                    let mt: [[i32; QNR]; 16] = std::array::from_fn(|p| m[p][t]);
                    winograd_out(&mt, scale, bias, &mut vals);
                    for (k, vals) in vals.iter().enumerate() {
                        let (oy, ox) = (2 * ty + k / 2, 2 * tx + k % 2);
                        if oy >= h || ox >= w {
                            continue;
                        }
                        let at = ((n * h + oy) * w + ox) * cout + o0;
                        // SAFETY: each task writes its own tiles' own blocks.
                        let dst = unsafe { shared.part(at, width) };
                        requantize(&vals[..width], floor, levels.inv, levels.zero, dst);
                    }
                }
            }
        });
        QMaps {
            n: x.n,
            h,
            w,
            c: cout,
            data,
            quant: out,
        }
    }

    /// The convolution as a direct product of patch rows.
    pub(super) fn forward_direct(&self, x: &QMaps, out: Quant) -> QMaps {
        let (oh, ow) = self.out_size(x.h, x.w);
        let mut data = buffers::take_bytes(x.n * oh * ow * self.cout); // every value written below
        let floor = if self.relu { 0.0 } else { f32::NEG_INFINITY };
        let levels = out.levels();
        self.rows_into(x, &mut data, |v, dst| {
            requantize(v, floor, levels.inv, levels.zero, dst)
        });
        QMaps {
            n: x.n,
            h: oh,
            w: ow,
            c: self.cout,
            data,
            quant: out,
        }
    }
}

autocaption_tensor::simd_fn! {
    /// `V = Bᵀ·d·B` of one tile's 4×4 patch `d` (`[16][cin]`, position `4a + b`), into
    /// `v[p][t]` as pairs of channels (`[16][tiles][pairs]`). `Bᵀ` has rows `[1,0,−1,0]`,
    /// `[0,1,1,0]`, `[0,−1,1,0]`, `[0,1,0,−1]`; from 8-bit inputs every value is within
    /// ±1020.
    #[allow(clippy::needless_range_loop)] // the transform reads as its matrices
    fn input_transform(d: &[i16], cin: usize, v: &mut [i32], t: usize, tiles: usize, pairs: usize) {
        let at = |a: usize, b: usize, c: usize| d[(4 * a + b) * cin + c];
        for c2 in 0..pairs {
            let mut out = [[0i32; 2]; 16];
            for half in 0..2 {
                let c = 2 * c2 + half;
                // t = Bᵀ·d, by rows.
                let mut tt = [[0i16; 4]; 4];
                for b in 0..4 {
                    let (d0, d1, d2, d3) = (at(0, b, c), at(1, b, c), at(2, b, c), at(3, b, c));
                    tt[0][b] = d0 - d2;
                    tt[1][b] = d1 + d2;
                    tt[2][b] = d2 - d1;
                    tt[3][b] = d1 - d3;
                }
                for (i, r) in tt.iter().enumerate() {
                    let row = [r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3]];
                    for (j, &x) in row.iter().enumerate() {
                        out[4 * i + j][half] = i32::from(x as u16);
                    }
                }
            }
            for (p, pair) in out.iter().enumerate() {
                v[(p * tiles + t) * pairs + c2] = pair[0] | (pair[1] << 16);
            }
        }
    }
}

autocaption_tensor::simd_fn! {
    /// One tile's outputs for a block of columns from its sums `m` (`[16][QNR]`, position
    /// `4i + j`): `Y' = Aᵀ·M'·A` (`Aᵀ` rows `[1,1,1,0]`, `[0,1,−1,−1]`), exactly 4 times the
    /// direct sums, then `sum · scale + bias`, into `vals` in the order (0,0), (0,1), (1,0),
    /// (1,1). Wrapping, as the sums may, for a result that fits.
    fn winograd_out(m: &[[i32; QNR]; 16], scale: &[f32], bias: &[f32], vals: &mut [[f32; QNR]; 4]) {
        let w = scale.len();
        for jj in 0..QNR {
            let mm = |i: usize, j: usize| m[4 * i + j][jj];
            let z = |j: usize| {
                [
                    mm(0, j).wrapping_add(mm(1, j)).wrapping_add(mm(2, j)),
                    mm(1, j).wrapping_sub(mm(2, j)).wrapping_sub(mm(3, j)),
                ]
            };
            let (z0, z1, z2, z3) = (z(0), z(1), z(2), z(3));
            for r in 0..2 {
                vals[2 * r][jj] = (z0[r].wrapping_add(z1[r]).wrapping_add(z2[r]) >> 2) as f32;
                vals[2 * r + 1][jj] = (z1[r].wrapping_sub(z2[r]).wrapping_sub(z3[r]) >> 2) as f32;
            }
        }
        for v in vals.iter_mut() {
            for ((v, &s), &b) in v[..w].iter_mut().zip(scale).zip(bias) {
                *v = *v * s + b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::random_conv;
    use super::*;
    use autocaption_tensor::Rng;

    #[test]
    fn a_convolution_is_its_dequantized_arithmetic_to_a_level() {
        let mut rng = Rng::new(21);
        // (kernel, stride, cin, cout, zero point): pointwise in place; strided; patch rows
        // with padding; the stem's few channels with a zero point (padding is that level).
        let shapes = [
            (1, 1, 16, 40, 0u8),
            (1, 2, 12, 17, 0),
            (3, 1, 8, 33, 0),
            (7, 2, 3, 20, 117),
        ];
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for (k, stride, cin, cout, zero) in shapes {
                let conv = random_conv(&mut rng, k, cin, cout, stride);
                let q = QConv::new(&conv);
                let (n, h, w) = (2, 13, 11);
                let x = QMaps {
                    n,
                    h,
                    w,
                    c: cin,
                    data: (0..n * h * w * cin)
                        .map(|_| rng.uniform(0.0, 256.0) as u8)
                        .collect(),
                    quant: Quant { scale: 0.02, zero },
                };
                let out = Quant::over(0.0, 6.0);
                let got = pool.install(|| q.forward(&x, out));
                let (oh, ow) = q.out_size(h, w);
                assert_eq!((got.h, got.w, got.c), (oh, ow, cout));
                let mut worst = 0i32;
                for (row, levels) in got.data.chunks_exact(cout).enumerate() {
                    let (b, rem) = (row / (oh * ow), row % (oh * ow));
                    let (oy, ox) = (rem / ow, rem % ow);
                    for (o, &level) in levels.iter().enumerate() {
                        let mut s = f64::from(conv.bias[o]);
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * stride + ky) as isize - (k / 2) as isize;
                                let ix = (ox * stride + kx) as isize - (k / 2) as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue; // a padded input is the zero point: 0
                                }
                                for c in 0..cin {
                                    let at = ((b * h + iy as usize) * w + ix as usize) * cin + c;
                                    let xv = 0.02 * (f64::from(x.data[at]) - f64::from(zero));
                                    let r = (ky * k + kx) * cin + c;
                                    s += xv * f64::from(q.weights.dequantized(r, o));
                                }
                            }
                        }
                        let want = (s.max(0.0) / f64::from(out.scale)).round().min(255.0) as i32;
                        worst = worst.max((want - i32::from(level)).abs());
                    }
                }
                // Only a value within f32 rounding of a half level can round the other way.
                assert!(
                    worst <= 1,
                    "k{k} s{stride} {cin}→{cout}: off by {worst} levels"
                );
            }
        }
    }

    #[test]
    fn winograd_gives_the_direct_convolutions_bits() {
        let mut rng = Rng::new(41);
        // Odd sizes leave partial tiles; the last case has the largest inputs and weights.
        for (cin, cout, n, h, w, extreme) in [
            (32, 40, 2, 7, 9, false),
            (64, 16, 1, 6, 6, false),
            (48, 33, 3, 5, 3, false),
            (256, 32, 1, 4, 5, true),
        ] {
            let mut conv = random_conv(&mut rng, 3, cin, cout, 1);
            if extreme {
                conv.weight.iter_mut().for_each(|v| *v = v.signum());
            }
            let q = QConv::new(&conv);
            assert!(q.winograd.is_some(), "{cin} channels");
            let x = QMaps {
                n,
                h,
                w,
                c: cin,
                data: (0..n * h * w * cin)
                    .map(|_| {
                        if extreme {
                            255
                        } else {
                            rng.uniform(0.0, 256.0) as u8
                        }
                    })
                    .collect(),
                quant: Quant {
                    scale: 0.01,
                    zero: 0,
                },
            };
            let out = Quant::over(0.0, 40.0);
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let direct = pool.install(|| q.forward_direct(&x, out));
                let fast = pool.install(|| q.forward(&x, out));
                assert_eq!(fast, direct, "{cin}→{cout} {n}×{h}×{w}, {threads} threads");
            }
        }
    }
}
