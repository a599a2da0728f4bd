use autocaption_tensor::{Epilogue, PanelMatrix, WeightFormat, PANEL};
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
/// (Keras' layout): `[kh, kw, cin, cout]`, which flattened is the product's `[kh·kw·cin, cout]`.
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
    /// A `kh × kw` convolution of `cin` to `cout` channels with HWIO weights
    /// (`[kh·kw·cin, cout]`) and a bias.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        (kh, kw): (usize, usize),
        (cin, cout): (usize, usize),
        stride: usize,
        pad: Padding,
        weight: Vec<f32>,
        bias: Vec<f32>,
        relu: bool,
    ) -> Self {
        assert_eq!(weight.len(), kh * kw * cin * cout, "weights are not HWIO");
        assert_eq!(bias.len(), cout, "a bias for every output channel");
        Self {
            kh,
            kw,
            cin,
            cout,
            stride,
            pad,
            weight,
            bias,
            relu,
            derived: Default::default(),
        }
    }

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
    /// Every product runs on the weights packed once into column panels
    /// ([`PanelMatrix::mul_rows`]), reading each patch row where it lies in the input (no
    /// patch matrix, except for the few input channels of the first layer), with the bias,
    /// residual and ReLU applied in registers: each output value is written once. With
    /// enough output pixels the threads split them into row tiles; with few (the last stage
    /// at batch 1), they split the output channels by panel, so each reads its share of the
    /// weights.
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
        let packed = self.packed();
        let panels = packed.panels();
        let threads = rayon::current_num_threads().max(1);
        let residual = residual.map(|m| &m.data[..]);
        let padded = self.reads_padded().then(|| self.padded(x));
        let x = padded.as_ref().unwrap_or(x);
        if splits_channels(rows, panels) {
            // Column bands of whole panels, one per thread, each over every row.
            let per = panels.div_ceil(threads);
            let bands: Vec<(usize, Vec<f32>)> = (0..panels)
                .step_by(per)
                .collect::<Vec<_>>()
                .into_par_iter()
                .map(|p0| {
                    let p1 = (p0 + per).min(panels);
                    let width = (p1 * PANEL).min(cout) - p0 * PANEL;
                    let mut band = buffers::take(rows * width); // written by the product
                    let res = residual.map(|r| (&r[p0 * PANEL..], cout));
                    let e = self.epilogue(res, false);
                    self.product(packed, x, oh, ow, 0, rows, p0..p1, &mut band, width, e);
                    (p0 * PANEL, band)
                })
                .collect();
            for (j0, band) in bands {
                let width = band.len() / rows;
                for (o, src) in out
                    .data
                    .chunks_exact_mut(cout)
                    .zip(band.chunks_exact(width))
                {
                    o[j0..j0 + width].copy_from_slice(src);
                }
                buffers::give(band);
            }
        } else {
            self.row_tiles(packed, x, oh, ow, &mut out.data, |r0, r| {
                self.epilogue(
                    residual.map(|m| (&m[r0 * cout..(r0 + r) * cout], cout)),
                    false,
                )
            });
        }
        if let Some(p) = padded {
            buffers::give(p.data);
        }
        out
    }

    /// Output rows split into tiles, a whole number per thread, each computed and finished
    /// on one thread, with the epilogue `epilogue(first row, rows)` gives.
    #[allow(clippy::too_many_arguments)]
    fn row_tiles<'a>(
        &self,
        packed: &PanelMatrix,
        x: &Maps,
        oh: usize,
        ow: usize,
        out: &mut [f32],
        epilogue: impl Fn(usize, usize) -> Epilogue<'a> + Sync,
    ) {
        let cout = self.cout;
        let rows = out.len() / cout;
        let tile = self.row_tile(rows);
        let panels = 0..packed.panels();
        out.par_chunks_mut(tile * cout)
            .enumerate()
            .for_each(|(t, o)| {
                let (r0, r) = (t * tile, o.len() / cout);
                let e = epilogue(r0, r);
                self.product(packed, x, oh, ow, r0, r, panels.clone(), o, cout, e);
            });
    }

    /// [`Conv::forward`] with a residual it may overwrite: with enough output pixels for row
    /// tiles, the sums are added onto the residual's values in place and that buffer is
    /// returned, so the output never takes a second trip through memory (writing a fresh
    /// buffer first reads it into the cache: the expanding 1×1 convolutions at the end of
    /// each block are bound by memory traffic at batch 8).
    pub fn forward_onto(&self, x: &Maps, mut residual: Maps) -> Maps {
        assert_eq!(
            x.c, self.cin,
            "conv expects {} input channels, got {}",
            self.cin, x.c
        );
        let (oh, ow) = self.out_size(x.h, x.w);
        let rows = x.n * oh * ow;
        assert_eq!(
            (residual.n, residual.h, residual.w, residual.c),
            (x.n, oh, ow, self.cout),
            "residual shape"
        );
        let packed = self.packed();
        if rows == 0
            || splits_channels(rows, packed.panels())
            || crate::winograd::applies(self, x.n, x.h, x.w)
        {
            let out = self.forward(x, Some(&residual));
            buffers::give(residual.data);
            return out;
        }
        let padded = self.reads_padded().then(|| self.padded(x));
        self.row_tiles(
            packed,
            padded.as_ref().unwrap_or(x),
            oh,
            ow,
            &mut residual.data,
            |_, _| self.epilogue(None, true),
        );
        if let Some(p) = padded {
            buffers::give(p.data);
        }
        residual
    }

    /// The last convolution of a bottleneck block: its sums added onto `residual`, the ReLU,
    /// then the pointwise convolution `next` (the next block's first), if given, on the
    /// result. Tile by tile: each output tile is made (a projection shortcut's sums first),
    /// finished and read by `next` while in cache, instead of each map taking trips through
    /// memory between separate passes. The same bits as [`Conv::forward`] of the shortcut,
    /// [`Conv::forward_onto`] and `next`'s [`Conv::forward`] run apart, which is what it
    /// does where row tiles do not apply.
    pub fn forward_block_end(
        &self,
        x: &Maps,
        residual: Residual<'_>,
        next: Option<&Conv>,
    ) -> (Maps, Option<Maps>) {
        assert_eq!(
            x.c, self.cin,
            "conv expects {} input channels, got {}",
            self.cin, x.c
        );
        if let Some(n) = next {
            assert_eq!(
                n.cin, self.cout,
                "the next convolution reads this one's output"
            );
        }
        let (oh, ow) = self.out_size(x.h, x.w);
        let rows = x.n * oh * ow;
        let shape = |m: &Maps| (m.n, m.h, m.w, m.c);
        match &residual {
            Residual::Map(m) => assert_eq!(shape(m), (x.n, oh, ow, self.cout), "residual shape"),
            Residual::Shortcut(s, input) => {
                assert_eq!(input.c, s.cin, "shortcut expects {} input channels", s.cin);
                assert_eq!(
                    (s.cout, input.n, s.out_size(input.h, input.w)),
                    (self.cout, x.n, (oh, ow)),
                    "shortcut shape"
                );
            }
        }
        let packed = self.packed();
        let tiles = rows > 0
            && !self.reads_padded()
            && !splits_channels(rows, packed.panels())
            && !crate::winograd::applies(self, x.n, x.h, x.w);
        // Which of the shortcut and the next convolution join the tiles: each tile then
        // reads every joined convolution's weights, so they must all stay in L2 together,
        // or each be too large to stay there anyway (the 28×28 stage's do neither: there a
        // pass of its own over the tiles reuses each convolution's weights from L2).
        let joins = |set: &[&Conv]| {
            let bytes = set.iter().map(|c| 4 * c.weight.len());
            bytes.clone().sum::<usize>() <= SHARED_WEIGHTS_BYTES
                || bytes.clone().all(|b| b > STREAMED_WEIGHTS_BYTES)
        };
        let mut joined = vec![self];
        let residual = match residual {
            Residual::Shortcut(s, input)
                if !tiles
                    || s.reads_padded()
                    || splits_channels(rows, s.packed().panels())
                    || !joins(&[self, s]) =>
            {
                Residual::Map(s.forward(input, None))
            }
            Residual::Shortcut(s, input) => {
                joined.push(s);
                Residual::Shortcut(s, input)
            }
            map => map,
        };
        let then = next.filter(|n| {
            joined.push(n);
            tiles && n.pointwise() && !splits_channels(rows, n.packed().panels()) && joins(&joined)
        });
        let next_apart = |y: &Maps| match then {
            Some(_) => None,
            None => next.map(|n| n.forward(y, None)),
        };
        let residual = match residual {
            Residual::Map(m) if then.is_none() || !tiles => {
                let y = self.forward_onto(x, m);
                let z = next_apart(&y);
                return (y, z);
            }
            r => r,
        };
        let next = then;
        let cout = self.cout;
        let (mut y, shortcut) = match residual {
            Residual::Map(m) => (m, None),
            Residual::Shortcut(s, input) => {
                let y = Maps {
                    n: x.n,
                    h: oh,
                    w: ow,
                    c: cout,
                    data: buffers::take(rows * cout), // every value written below
                };
                (y, Some((s, input)))
            }
        };
        let ncout = next.map_or(0, |n| n.cout);
        let mut z = next.map(|n| Maps {
            n: x.n,
            h: oh,
            w: ow,
            c: n.cout,
            data: buffers::take(rows * n.cout), // every value written below
        });
        let tile = self.row_tile(rows);
        let finish = |t: usize, o: &mut [f32], zo: Option<&mut [f32]>| {
            let (r0, r) = (t * tile, o.len() / cout);
            if let Some((s, input)) = shortcut {
                let (sp, e) = (s.packed(), s.epilogue(None, false));
                s.product(sp, input, oh, ow, r0, r, 0..sp.panels(), o, cout, e);
            }
            let e = self.epilogue(None, true);
            self.product(packed, x, oh, ow, r0, r, 0..packed.panels(), o, cout, e);
            if let (Some(n), Some(zo)) = (next, zo) {
                let row = |i: usize, k0: usize| &o[i * cout + k0..(i + 1) * cout];
                let after = n.packed();
                let e = n.epilogue(None, false);
                after.mul_rows(r, cout, row, 0..after.panels(), zo, ncout, e);
            }
        };
        match &mut z {
            Some(z) => y
                .data
                .par_chunks_mut(tile * cout)
                .zip(z.data.par_chunks_mut(tile * ncout))
                .enumerate()
                .for_each(|(t, (o, zo))| finish(t, o, Some(zo))),
            None => y
                .data
                .par_chunks_mut(tile * cout)
                .enumerate()
                .for_each(|(t, o)| finish(t, o, None)),
        }
        let z = z.or_else(|| next_apart(&y));
        (y, z)
    }

    /// A 1×1 convolution of stride 1 without padding: its input rows are its patch rows.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == Padding::same(0)
    }

    /// Whether the products read a zero-padded copy of the input (few input channels: see
    /// [`Conv::product`]).
    fn reads_padded(&self) -> bool {
        !self.pointwise() && self.cin < MIN_RUN_CHANNELS
    }

    /// `x` with this convolution's zero padding around every image.
    fn padded(&self, x: &Maps) -> Maps {
        let Padding {
            top,
            bottom,
            left,
            right,
        } = self.pad;
        let (h, w, c) = (x.h + top + bottom, x.w + left + right, x.c);
        let mut data = buffers::take(x.n * h * w * c); // every value written below
        for (n, image) in data.chunks_exact_mut(h * w * c).enumerate() {
            for (y, line) in image.chunks_exact_mut(w * c).enumerate() {
                if y < top || y >= top + x.h {
                    line.fill(0.0);
                    continue;
                }
                let src = (n * x.h + y - top) * x.w * c;
                line[..left * c].fill(0.0);
                line[left * c..(left + x.w) * c].copy_from_slice(&x.data[src..src + x.w * c]);
                line[(left + x.w) * c..].fill(0.0);
            }
        }
        Maps {
            n: x.n,
            h,
            w,
            c,
            data,
        }
    }

    /// Rows of each tile when `rows` output rows are split into row tiles, a whole number
    /// of tiles for each thread.
    fn row_tile(&self, rows: usize) -> usize {
        let threads = rayon::current_num_threads().max(1);
        let tiles = rows.div_ceil(self.tile_rows()).div_ceil(threads) * threads;
        rows.div_ceil(tiles)
    }

    /// Target rows of output per tile: the tile's patches, output and residual rows near
    /// 384 KB (well inside a core's L2), at least 128 rows so that each slice of the weights
    /// serves enough row groups.
    fn tile_rows(&self) -> usize {
        let per_row = 4 * (self.kh * self.kw * self.cin + 2 * self.cout);
        ((384 << 10) / per_row).clamp(128, 1024)
    }

    /// The weights packed into column panels, on first use.
    fn packed(&self) -> &PanelMatrix {
        self.derived.panels.get_or_init(|| {
            let k = self.kh * self.kw * self.cin;
            PanelMatrix::pack(&self.weight, k, self.cout, WeightFormat::F32)
                .expect("packing in f32 keeps every value")
        })
    }

    /// Bias, `residual` and ReLU; `accumulate` adds everything to the output's contents.
    fn epilogue<'a>(
        &'a self,
        residual: Option<(&'a [f32], usize)>,
        accumulate: bool,
    ) -> Epilogue<'a> {
        Epilogue {
            accumulate,
            bias: Some(&self.bias),
            residual,
            relu: self.relu,
        }
    }

    /// Output rows `r0 .. r0 + r`, the channels of `panels`, finished as `epilogue` says,
    /// into `c` (row stride `ldc`), on the calling thread. Pointwise convolutions
    /// read the input rows as they are; others read each patch row's `kh·kw` runs of
    /// `cin` channels where they lie in the input (zeros beyond the edges). With few input
    /// channels (a first layer's 3) those runs would be too short, so `x` is then the
    /// padded input ([`Conv::reads_padded`]) and each patch row is `kh` runs of `kw·cin`
    /// values, several summed in registers per slice of the product.
    #[allow(clippy::too_many_arguments)]
    fn product(
        &self,
        packed: &PanelMatrix,
        x: &Maps,
        oh: usize,
        ow: usize,
        r0: usize,
        r: usize,
        panels: std::ops::Range<usize>,
        c: &mut [f32],
        ldc: usize,
        epilogue: Epilogue<'_>,
    ) {
        let cin = self.cin;
        let k = self.kh * self.kw * cin;
        if self.pointwise() {
            let row = |i: usize, k0: usize| &x.data[(r0 + i) * cin + k0..(r0 + i + 1) * cin];
            packed.mul_rows(r, cin, row, panels, c, ldc, epilogue);
        } else if cin >= MIN_RUN_CHANNELS {
            let zeros = vec![0.0f32; cin];
            // Each row's image and top-left input position.
            let origin: Vec<(usize, isize, isize)> = (r0..r0 + r)
                .map(|row| {
                    let (n, rem) = (row / (oh * ow), row % (oh * ow));
                    let (oy, ox) = (rem / ow, rem % ow);
                    let iy = (oy * self.stride) as isize - self.pad.top as isize;
                    let ix = (ox * self.stride) as isize - self.pad.left as isize;
                    (n, iy, ix)
                })
                .collect();
            let row = |i: usize, k0: usize| -> &[f32] {
                let (run, c0) = (k0 / cin, k0 % cin);
                let (n, iy, ix) = origin[i];
                let (y, xx) = (iy + (run / self.kw) as isize, ix + (run % self.kw) as isize);
                if y < 0 || xx < 0 || y >= x.h as isize || xx >= x.w as isize {
                    &zeros[c0..]
                } else {
                    let at = ((n * x.h + y as usize) * x.w + xx as usize) * cin;
                    &x.data[at + c0..at + cin]
                }
            };
            packed.mul_rows(r, cin, row, panels, c, ldc, epilogue);
        } else {
            debug_assert!(self.reads_padded() && k == self.kh * self.kw * cin);
            let run = self.kw * cin;
            // Each row's first value (ky = kx = 0) in the padded input.
            let origin: Vec<usize> = (r0..r0 + r)
                .map(|row| {
                    let (n, rem) = (row / (oh * ow), row % (oh * ow));
                    let (oy, ox) = (rem / ow, rem % ow);
                    ((n * x.h + oy * self.stride) * x.w + ox * self.stride) * cin
                })
                .collect();
            let row = |i: usize, k0: usize| -> &[f32] {
                let (ky, c0) = (k0 / run, k0 % run);
                let at = origin[i] + ky * x.w * cin + c0;
                &x.data[at..at + run - c0]
            };
            packed.mul_rows(r, run, row, panels, c, ldc, epilogue);
        }
    }
}

/// What the last convolution of a block adds its sums onto ([`Conv::forward_block_end`]).
pub enum Residual<'a> {
    /// A map it may overwrite (the block's input, which nothing reads afterwards).
    Map(Maps),
    /// A projection shortcut: this convolution of this input, made tile by tile first.
    Shortcut(&'a Conv, &'a Maps),
}

/// Weights that stay in a core's L2 beside a row tile's maps, for every tile a thread makes
/// (all the convolutions joined in [`Conv::forward_block_end`] together).
const SHARED_WEIGHTS_BYTES: usize = 512 << 10;

/// Weights too large to stay in L2 beside a row tile's maps: each tile reads them again
/// anyway.
const STREAMED_WEIGHTS_BYTES: usize = 768 << 10;

/// Below this many output pixels per thread, the threads split the output channels (by
/// panel) rather than the pixels: the last stage at batch 1 (49 pixels), whose weights are
/// most of the network's bytes, so each thread reads half of them.
const MIN_TILE_ROWS: usize = 64;

/// Whether the threads split `rows` output pixels by panel (of `panels`) rather than by
/// rows: fewer than [`MIN_TILE_ROWS`] a thread, and a panel for each thread.
fn splits_channels(rows: usize, panels: usize) -> bool {
    let threads = rayon::current_num_threads().max(1);
    threads > 1 && rows < MIN_TILE_ROWS * threads && panels >= threads
}

/// Input channels from which patch rows are read where they lie, `cin` values a run: runs
/// that long keep the product's slices of k long enough. Below it (the first layer's 3
/// channels) the input is padded once and each kernel row is one run of `kw·cin`.
const MIN_RUN_CHANNELS: usize = 16;

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
            // Transformed weights too large for L3 (16 MB), and outweighing the transformed
            // input: one block of tile rows for each thread.
            (512, 512, 2, 8, 8, 2),
            // Few pixels and several panels: the threads split the channels (patch rows
            // read in place; from a padded copy, for 3 input channels).
            (16, 128, 1, 5, 6, 2),
            (3, 192, 1, 9, 9, 2),
            // One panel for three threads: row tiles, patch rows read in place.
            (24, 64, 2, 7, 7, 3),
            // Many row tiles with patch rows read in place.
            (32, 64, 1, 40, 40, 2),
        ];
        for (cin, cout, n, h, w, threads) in shapes {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for (k, stride, pad) in kernels {
                if cin == 512 && (k, stride) != (3, 1) {
                    continue; // the wide shape is there for Winograd's blocks only
                }
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
                if cin >= 96 && k == 3 && stride == 1 {
                    assert!(pool.install(|| crate::winograd::applies(&conv, n, h, w)));
                    let blocks = pool.install(|| crate::winograd::blocks(&conv, n, h, w));
                    assert_eq!(blocks == threads, cin == 512, "{blocks} blocks");
                }
                if cout >= 128 && cin < 96 {
                    // So few pixels that the threads split the channels.
                    assert!(n * oh * ow < MIN_TILE_ROWS * threads);
                }

                for res in [None, Some(&residual)] {
                    let got = pool.install(|| conv.forward(&x, res));
                    if let Some(r) = res {
                        // Added onto the residual in place (row tiles) or not: the same.
                        let onto = pool.install(|| conv.forward_onto(&x, r.clone()));
                        let worst = onto.data.iter().zip(&got.data).map(|(a, b)| (a - b).abs());
                        let scale = got.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                        // The residual joins the sum first here, last there: the same
                        // sums but for rounding, which grows like √k.
                        let worst = worst.fold(0.0f32, f32::max) / scale;
                        let tol = 1e-6 * ((k * k * cin) as f32 / 400.0).sqrt().max(1.0);
                        assert!(worst <= tol, "forward_onto k{k} {cin}→{cout}: {worst}");
                    }
                    let want = naive(&conv, &x, res);
                    assert_eq!((got.h, got.w), (want.h, want.w));
                    // Relative to the largest output: sums of up to 4,704 products in k
                    // order, whose rounding errors grow like √k.
                    let scale = want.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                    let worst = got
                        .data
                        .iter()
                        .zip(&want.data)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0f32, f32::max)
                        / scale;
                    eprintln!("k{k} s{stride} {cin}→{cout}: {worst:e}");
                    let tol = 1e-6 * ((k * k * cin) as f32 / 400.0).sqrt().max(1.0);
                    assert!(
                        worst < tol,
                        "k{k} s{stride} {pad:?} {cin}→{cout} n{n} {h}×{w} residual {}: {worst}",
                        res.is_some()
                    );
                }
            }
        }
    }

    #[test]
    fn a_block_end_gets_the_same_bits_as_its_convolutions_run_apart() {
        let mut rng = Rng::new(9);
        let mut random_conv = |cin: usize, cout: usize, stride: usize, relu: bool| Conv {
            kh: 1,
            kw: 1,
            cin,
            cout,
            stride,
            pad: Padding::same(0),
            weight: (0..cin * cout).map(|_| rng.uniform(-1.0, 1.0)).collect(),
            bias: (0..cout).map(|_| rng.uniform(-1.0, 1.0)).collect(),
            relu,
            derived: Default::default(),
        };
        let last = random_conv(24, 80, 1, true);
        let next = random_conv(80, 20, 1, true);
        // A strided projection shortcut from a map of 32 channels twice the size.
        let shortcut = random_conv(32, 80, 2, false);
        let mut rng = Rng::new(10);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        // (images, height, width): several row tiles; so few pixels that the threads split
        // the channels instead (run apart).
        for (n, h, w) in [(2, 23, 19), (1, 3, 4)] {
            let mut random_maps = |c: usize, h: usize, w: usize| Maps {
                n,
                h,
                w,
                c,
                data: (0..n * h * w * c).map(|_| rng.uniform(-1.0, 1.0)).collect(),
            };
            let (x, residual) = (random_maps(24, h, w), random_maps(80, h, w));
            let input = random_maps(32, 2 * h, 2 * w);
            for then in [Some(&next), None] {
                let place = format!("{n}×{h}×{w}, next {}", then.is_some());
                let end = Residual::Map(residual.clone());
                let (y, z) = pool.install(|| last.forward_block_end(&x, end, then));
                let y_apart = pool.install(|| last.forward_onto(&x, residual.clone()));
                let z_apart = then.map(|c| pool.install(|| c.forward(&y_apart, None)));
                assert_eq!(y, y_apart, "{place}");
                assert_eq!(z, z_apart, "{place}");
                let end = Residual::Shortcut(&shortcut, &input);
                let (y, z) = pool.install(|| last.forward_block_end(&x, end, then));
                let s = pool.install(|| shortcut.forward(&input, None));
                let y_apart = pool.install(|| last.forward_onto(&x, s));
                let z_apart = then.map(|c| pool.install(|| c.forward(&y_apart, None)));
                assert_eq!(y, y_apart, "shortcut, {place}");
                assert_eq!(z, z_apart, "shortcut, {place}");
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
