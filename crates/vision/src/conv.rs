use autocaption_tensor::{gemm_serial_ld, gemm_serial_ld_add, PanelMatrix, WeightFormat, PANEL};
use rayon::prelude::*;

use crate::{buffers, Maps};

/// Zero padding around a feature map: (top, bottom, left, right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Padding {
    /// Rows added above.
    pub top: usize,
    /// Rows added below.
    pub bottom: usize,
    /// Columns added on the left.
    pub left: usize,
    /// Columns added on the right.
    pub right: usize,
}

impl Padding {
    /// The same padding on every side.
    pub fn same(p: usize) -> Self {
        Self {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }
}

/// A 2-D convolution with its batch norm folded in and an optional ReLU. Weights are HWIO
/// (Keras' layout): `[kh, kw, cin, cout]`, which flattened is the GEMM's `[kh·kw·cin, cout]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv {
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Stride (both directions).
    pub stride: usize,
    /// Zero padding.
    pub pad: Padding,
    /// `[kh·kw·cin, cout]`.
    pub weight: Vec<f32>,
    /// `[cout]`.
    pub bias: Vec<f32>,
    /// Apply ReLU to the output.
    pub relu: bool,
    /// The weights in the layouts of the fast paths, computed on first use; cleared by
    /// [`Conv::fold_batch_norm`] and [`crate::ResNet::convs_mut`], the ways weights change.
    pub(crate) derived: crate::derived::Derived,
}

impl Conv {
    /// Output height and width for an input of `h × w`.
    pub fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let oh = (h + self.pad.top + self.pad.bottom - self.kh) / self.stride + 1;
        let ow = (w + self.pad.left + self.pad.right - self.kw) / self.stride + 1;
        (oh, ow)
    }

    /// Folds batch norm `y = gamma·(x − mean)/√(var + eps) + beta` into the weights and bias.
    pub fn fold_batch_norm(
        &mut self,
        gamma: &[f32],
        beta: &[f32],
        mean: &[f32],
        var: &[f32],
        eps: f32,
    ) {
        for o in 0..self.cout {
            let s = gamma[o] / (var[o] + eps).sqrt();
            for r in 0..self.kh * self.kw * self.cin {
                self.weight[r * self.cout + o] *= s;
            }
            self.bias[o] = (self.bias[o] - mean[o]) * s + beta[o];
        }
        self.derived = Default::default();
    }

    /// Applies the convolution; `residual`, if given, is added before the ReLU.
    ///
    /// The output rows (pixels) are split into tiles, a whole number per thread: each task
    /// gathers its tile's patches into a per-thread buffer that stays in cache, multiplies
    /// on its own thread, and finishes the tile (bias, residual, ReLU) while it is still
    /// hot; no full-size patch matrix is ever written. When there are too few rows for
    /// that (the last stages at batch 1: 49 pixels), the threads split the output
    /// channels instead.
    pub fn forward(&self, x: &Maps, residual: Option<&Maps>) -> Maps {
        assert_eq!(
            x.c, self.cin,
            "conv expects {} input channels, got {}",
            self.cin, x.c
        );
        let (oh, ow) = self.out_size(x.h, x.w);
        let rows = x.n * oh * ow;
        let cout = self.cout;
        let mut out = Maps {
            n: x.n,
            h: oh,
            w: ow,
            c: cout,
            data: buffers::take(rows * cout), // every value written below
        };
        if let Some(r) = residual {
            assert_eq!(r.data.len(), out.data.len(), "residual shape");
        }
        if rows == 0 {
            return out;
        }
        if crate::winograd::applies(self, x.n, x.h, x.w) {
            crate::winograd::forward(self, x, residual, &mut out);
            return out;
        }
        let threads = rayon::current_num_threads().max(1);
        let tiles = rows.div_ceil(self.tile_rows()).div_ceil(threads) * threads;
        let tile = rows.div_ceil(tiles);
        if tile >= MIN_TILE_ROWS || threads == 1 || cout < 32 {
            out.data
                .par_chunks_mut(tile * cout)
                .enumerate()
                .for_each(|(t, o)| {
                    let (r0, r) = (t * tile, o.len() / cout);
                    self.product(x, oh, ow, r0, r, 0, cout, o, cout);
                    self.epilogue(
                        o,
                        0,
                        cout,
                        residual.map(|m| &m.data[r0 * cout..(r0 + r) * cout]),
                    );
                });
        } else if self.panels_apply(rows) {
            self.forward_panels(x, oh, ow, residual, &mut out);
        } else {
            // Column bands of the weights, a multiple of 16 wide, one per thread.
            let band = cout.div_ceil(threads).div_ceil(16) * 16;
            let parts: Vec<(usize, Vec<f32>)> = (0..cout)
                .step_by(band)
                .collect::<Vec<_>>()
                .into_par_iter()
                .map(|j0| {
                    let nb = band.min(cout - j0);
                    let mut c = buffers::take(rows * nb); // written by the product
                    self.product(x, oh, ow, 0, rows, j0, nb, &mut c, nb);
                    (j0, c)
                })
                .collect();
            for (j0, c) in parts {
                let nb = c.len() / rows;
                for (i, (o, src)) in out
                    .data
                    .chunks_exact_mut(cout)
                    .zip(c.chunks_exact(nb))
                    .enumerate()
                {
                    let dst = &mut o[j0..j0 + nb];
                    dst.copy_from_slice(src);
                    let res = residual.map(|m| &m.data[i * cout..(i + 1) * cout]);
                    self.epilogue(dst, j0, nb, res);
                }
                buffers::give(c);
            }
        }
        out
    }

    /// [`Conv::forward`] with a residual it may overwrite: a pointwise convolution with
    /// enough rows per thread accumulates its product straight onto the residual's values
    /// and returns that buffer, so the output never takes a second trip through memory
    /// (the expanding 1×1 convolutions at the end of each block are bound by memory
    /// traffic at batch 8). Anything else goes through [`Conv::forward`].
    pub fn forward_onto(&self, x: &Maps, mut residual: Maps) -> Maps {
        let (oh, ow) = self.out_size(x.h, x.w);
        let rows = x.n * oh * ow;
        let cout = self.cout;
        assert_eq!(
            (residual.n, residual.h, residual.w, residual.c),
            (x.n, oh, ow, cout),
            "residual shape"
        );
        let threads = rayon::current_num_threads().max(1);
        let tiles = rows.div_ceil(self.tile_rows()).div_ceil(threads) * threads;
        let tile = rows.div_ceil(tiles.max(1)).max(1);
        let pointwise =
            self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == Padding::same(0);
        if !pointwise || x.c != self.cin || !(tile >= MIN_TILE_ROWS || threads == 1) {
            let out = self.forward(x, Some(&residual));
            buffers::give(residual.data);
            return out;
        }
        residual
            .data
            .par_chunks_mut(tile * cout)
            .enumerate()
            .for_each(|(t, o)| {
                let (r0, r) = (t * tile, o.len() / cout);
                let a = &x.data[r0 * self.cin..(r0 + r) * self.cin];
                gemm_serial_ld_add(r, self.cin, cout, a, self.cin, &self.weight, cout, o, cout);
                self.epilogue(o, 0, cout, None);
            });
        residual
    }

    /// Whether the threads, with too few output pixels to split (the last stage at batch 1:
    /// 49), should split the output channels by panel: weights packed once, rather than
    /// re-packed by every product of a few dozen rows. Those weights stream from memory
    /// (most of ResNet-50's 94 MB sit in that stage); measured on the four 7×7 shapes,
    /// 14.9 → 11.7 ms. Needs whole panels of channels and patches that fit in cache.
    fn panels_apply(&self, rows: usize) -> bool {
        let k = self.kh * self.kw * self.cin;
        PANELS_ENABLED.load(std::sync::atomic::Ordering::Relaxed)
            && 4 * rows * k <= PANEL_MAX_PATCH_BYTES
            && self.cout.is_multiple_of(PANEL)
    }

    /// The panel path: the patches of all `rows` output pixels (the input itself for a
    /// pointwise convolution), times the weights in column panels, split by panel between
    /// the threads; each panel finishes (bias, residual, ReLU) while in cache.
    fn forward_panels(
        &self,
        x: &Maps,
        oh: usize,
        ow: usize,
        residual: Option<&Maps>,
        out: &mut Maps,
    ) {
        let k = self.kh * self.kw * self.cin;
        let rows = x.n * oh * ow;
        let cout = self.cout;
        let packed = self.derived.panels.get_or_init(|| {
            PanelMatrix::pack(&self.weight, k, cout, WeightFormat::F32)
                .expect("packing in f32 keeps every value")
        });
        let pointwise =
            self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == Padding::same(0);
        let mut patches = Vec::new();
        let a: &[f32] = if pointwise {
            &x.data[..rows * k]
        } else {
            patches = buffers::take(rows * k); // every row written by im2col
            let chunk = rows.div_ceil(rayon::current_num_threads().max(1));
            patches
                .par_chunks_mut(chunk * k)
                .enumerate()
                .for_each(|(i, dst)| self.im2col(x, oh, ow, i * chunk, dst));
            &patches
        };
        let mut blocks = buffers::take(packed.panels() * rows * PANEL);
        for (bias, block) in self
            .bias
            .chunks_exact(PANEL)
            .zip(blocks.chunks_exact_mut(rows * PANEL))
        {
            block
                .chunks_exact_mut(PANEL)
                .for_each(|z| z.copy_from_slice(bias));
        }
        packed.mul(a, rows, &mut blocks, |p, block| {
            for (r, z) in block.chunks_exact_mut(PANEL).enumerate() {
                if let Some(res) = residual {
                    let res = &res.data[r * cout + p * PANEL..r * cout + (p + 1) * PANEL];
                    z.iter_mut().zip(res).for_each(|(v, s)| *v += s);
                }
                if self.relu {
                    z.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            }
        });
        for (p, block) in blocks.chunks_exact(rows * PANEL).enumerate() {
            for (r, z) in block.chunks_exact(PANEL).enumerate() {
                out.data[r * cout + p * PANEL..r * cout + (p + 1) * PANEL].copy_from_slice(z);
            }
        }
        buffers::give(blocks);
        buffers::give(patches);
    }

    /// Output rows `r0 .. r0 + r`, channels `j0 .. j0 + nb`, before the epilogue, into `c`
    /// (row stride `ldc`), on the calling thread.
    #[allow(clippy::too_many_arguments)]
    fn product(
        &self,
        x: &Maps,
        oh: usize,
        ow: usize,
        r0: usize,
        r: usize,
        j0: usize,
        nb: usize,
        c: &mut [f32],
        ldc: usize,
    ) {
        let k = self.kh * self.kw * self.cin;
        let w = &self.weight[j0..];
        let pointwise =
            self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == Padding::same(0);
        if pointwise {
            let a = &x.data[r0 * k..(r0 + r) * k];
            gemm_serial_ld(r, k, nb, a, k, w, self.cout, c, ldc);
        } else {
            PATCHES.with(|p| {
                let mut p = p.borrow_mut();
                p.resize(r * k, 0.0);
                self.im2col(x, oh, ow, r0, &mut p[..r * k]);
                gemm_serial_ld(r, k, nb, &p, k, w, self.cout, c, ldc);
            });
        }
    }

    /// Target rows of output per tile: the tile's patches, output and residual rows near
    /// 384 KB (well inside a core's L2), at least 128 rows so the product stays efficient
    /// and the weights, packed again for every tile, are amortised.
    fn tile_rows(&self) -> usize {
        let per_row = 4 * (self.kh * self.kw * self.cin + 2 * self.cout);
        ((384 << 10) / per_row).clamp(128, 1024)
    }

    /// Adds the bias and the residual (if any) to output rows `o` holding channels
    /// `j0 .. j0 + nb`, then the ReLU; `residual` holds whole rows of all channels.
    fn epilogue(&self, o: &mut [f32], j0: usize, nb: usize, residual: Option<&[f32]>) {
        let bias = &self.bias[j0..j0 + nb];
        match residual {
            Some(r) => {
                for (row, rrow) in o.chunks_exact_mut(nb).zip(r.chunks_exact(self.cout)) {
                    for ((v, &b), &res) in row.iter_mut().zip(bias).zip(&rrow[j0..j0 + nb]) {
                        let y = *v + b + res;
                        *v = if self.relu { y.max(0.0) } else { y };
                    }
                }
            }
            None => {
                for row in o.chunks_exact_mut(nb) {
                    for (v, &b) in row.iter_mut().zip(bias) {
                        let y = *v + b;
                        *v = if self.relu { y.max(0.0) } else { y };
                    }
                }
            }
        }
    }

    /// Patches of output rows `r0 ..` (as many as fit `dst`) as rows of `kh·kw·cin`, in
    /// (ky, kx, c) order to match HWIO weights; padding positions are zero.
    fn im2col(&self, x: &Maps, oh: usize, ow: usize, r0: usize, dst: &mut [f32]) {
        let k = self.kh * self.kw * self.cin;
        let c = self.cin;
        for (i, row) in dst.chunks_exact_mut(k).enumerate() {
            let r = r0 + i;
            let (n, rem) = (r / (oh * ow), r % (oh * ow));
            let (oy, ox) = (rem / ow, rem % ow);
            // Input columns ix = ox·stride + kx − left for kx in 0..kw; those inside the
            // image form one contiguous run of pixels, so each kernel row is one copy.
            let x0 = (ox * self.stride) as isize - self.pad.left as isize;
            let kx_lo = (-x0).clamp(0, self.kw as isize) as usize;
            let kx_hi = (x.w as isize - x0).clamp(kx_lo as isize, self.kw as isize) as usize;
            for ky in 0..self.kh {
                let iy = (oy * self.stride + ky) as isize - self.pad.top as isize;
                let line = &mut row[ky * self.kw * c..(ky + 1) * self.kw * c];
                if iy < 0 || iy >= x.h as isize || kx_lo == kx_hi {
                    line.fill(0.0);
                    continue;
                }
                line[..kx_lo * c].fill(0.0);
                line[kx_hi * c..].fill(0.0);
                let src = ((n * x.h + iy as usize) * x.w + (x0 + kx_lo as isize) as usize) * c;
                line[kx_lo * c..kx_hi * c].copy_from_slice(&x.data[src..src + (kx_hi - kx_lo) * c]);
            }
        }
    }
}

/// Below this many rows per thread, threads split the output channels instead.
const MIN_TILE_ROWS: usize = 64;

/// Most bytes of patches for the panel path: each thread reads them all once per panel.
const PANEL_MAX_PATCH_BYTES: usize = 4 << 20;

static PANELS_ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns the panel path for convolutions with few output pixels on (the default) or off for
/// the whole process (for comparisons: `bench encode --no-panels`).
pub fn set_panels(enabled: bool) {
    PANELS_ENABLED.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

thread_local! {
    /// Each thread's patch-matrix buffer for row tiles, reused across convolutions.
    static PATCHES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use autocaption_tensor::Rng;

    fn naive(conv: &Conv, x: &Maps, residual: Option<&Maps>) -> Maps {
        let (oh, ow) = conv.out_size(x.h, x.w);
        let mut out = Maps::zeros(x.n, oh, ow, conv.cout);
        for n in 0..x.n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for o in 0..conv.cout {
                        let mut s = conv.bias[o] as f64;
                        for ky in 0..conv.kh {
                            for kx in 0..conv.kw {
                                let iy = (oy * conv.stride + ky) as isize - conv.pad.top as isize;
                                let ix = (ox * conv.stride + kx) as isize - conv.pad.left as isize;
                                if iy < 0 || ix < 0 || iy >= x.h as isize || ix >= x.w as isize {
                                    continue;
                                }
                                for ci in 0..conv.cin {
                                    let xv = x.data
                                        [((n * x.h + iy as usize) * x.w + ix as usize) * x.c + ci];
                                    let wv = conv.weight
                                        [((ky * conv.kw + kx) * conv.cin + ci) * conv.cout + o];
                                    s += xv as f64 * wv as f64;
                                }
                            }
                        }
                        let at = ((n * oh + oy) * ow + ox) * conv.cout + o;
                        let v = s as f32 + residual.map_or(0.0, |r| r.data[at]);
                        out.data[((n * oh + oy) * ow + ox) * conv.cout + o] =
                            if conv.relu { v.max(0.0) } else { v };
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_naive_convolution() {
        let mut rng = Rng::new(3);
        let kernels = [
            (1, 1, Padding::same(0)),
            (1, 2, Padding::same(0)),
            (3, 1, Padding::same(1)),
            (3, 2, Padding::same(1)),
            (7, 2, Padding::same(3)),
            (
                3,
                2,
                Padding {
                    top: 0,
                    bottom: 1,
                    left: 0,
                    right: 1,
                },
            ),
        ];
        // (cin, cout, n, h, w, threads): a few row tiles; so few rows that the threads split
        // the output channels (bands of 16, 16 and 8); many row tiles, with an uneven last.
        let shapes = [
            (5, 6, 2, 11, 9, 2),
            (5, 40, 1, 4, 3, 4),
            (8, 8, 2, 41, 39, 3),
            // Wide enough for Winograd (the 3×3 stride-1 case): odd sizes leave partial
            // tiles, and the two blocks of tile rows split an image between them.
            (96, 100, 3, 17, 15, 2),
            // Whole panels of output channels over few pixels: the panel path.
            (16, 128, 1, 5, 6, 2),
            (24, 64, 2, 7, 7, 3),
        ];
        for (cin, cout, n, h, w, threads) in shapes {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for (k, stride, pad) in kernels {
                let conv = Conv {
                    kh: k,
                    kw: k,
                    cin,
                    cout,
                    stride,
                    pad,
                    weight: (0..k * k * cin * cout)
                        .map(|_| rng.uniform(-1.0, 1.0))
                        .collect(),
                    bias: (0..cout).map(|_| rng.uniform(-1.0, 1.0)).collect(),
                    relu: true,
                    derived: Default::default(),
                };
                let x = Maps {
                    n,
                    h,
                    w,
                    c: cin,
                    data: (0..n * h * w * cin)
                        .map(|_| rng.uniform(-1.0, 1.0))
                        .collect(),
                };
                let (oh, ow) = conv.out_size(h, w);
                let residual = Maps {
                    n,
                    h: oh,
                    w: ow,
                    c: cout,
                    data: (0..n * oh * ow * cout)
                        .map(|_| rng.uniform(-1.0, 1.0))
                        .collect(),
                };
                if cin == 96 && k == 3 && stride == 1 {
                    assert!(pool.install(|| crate::winograd::applies(&conv, n, h, w)));
                }
                if cout.is_multiple_of(PANEL) {
                    // So few pixels that the threads split the channels: by panel.
                    assert!(n * oh * ow < MIN_TILE_ROWS * threads);
                    assert!(conv.panels_apply(n * oh * ow));
                }

                for res in [None, Some(&residual)] {
                    let got = pool.install(|| conv.forward(&x, res));
                    let want = naive(&conv, &x, res);
                    assert_eq!((got.h, got.w), (want.h, want.w));
                    // Relative to the largest output (sums of up to 864 products here).
                    let scale = want.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                    let worst = got
                        .data
                        .iter()
                        .zip(&want.data)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0f32, f32::max)
                        / scale;
                    eprintln!("k{k} s{stride} {cin}→{cout}: {worst:e}");
                    assert!(
                        worst < 1e-6,
                        "k{k} s{stride} {pad:?} {cin}→{cout} n{n} {h}×{w} residual {}: {worst}",
                        res.is_some()
                    );
                }
            }
        }
    }

    #[test]
    fn batch_norm_folding_is_exact() {
        let mut rng = Rng::new(4);
        let mut conv = Conv {
            kh: 1,
            kw: 1,
            cin: 3,
            cout: 2,
            stride: 1,
            pad: Padding::same(0),
            weight: (0..6).map(|_| rng.uniform(-1.0, 1.0)).collect(),
            bias: vec![0.1, -0.2],
            relu: false,
            derived: Default::default(),
        };
        let x = Maps {
            n: 1,
            h: 2,
            w: 2,
            c: 3,
            data: (0..12).map(|_| rng.uniform(-1.0, 1.0)).collect(),
        };
        let before = conv.forward(&x, None);
        let (g, b, m, v) = ([1.5f32, 0.5], [0.3f32, -0.1], [0.2f32, 0.4], [0.9f32, 2.0]);
        conv.fold_batch_norm(&g, &b, &m, &v, 1e-5);
        let after = conv.forward(&x, None);
        for (i, (y0, y1)) in before.data.iter().zip(&after.data).enumerate() {
            let o = i % 2;
            let want = g[o] * (y0 - m[o]) / (v[o] + 1e-5).sqrt() + b[o];
            assert!((want - y1).abs() < 1e-5);
        }
    }
}
