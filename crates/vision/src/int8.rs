//! The int8 encoder: ResNet with 7-bit per-output-channel weights and 8-bit activations,
//! static per-tensor activation scales from calibration images, exact `i32` sums
//! ([`QuantWeights`]) and each convolution's bias, residual, ReLU and requantization applied
//! in one pass over its sums. Batch norm is folded into the weights before they are
//! quantized (the f32 network already holds it folded).
//!
//! Every activation a convolution reads is unsigned: the image with a zero point (the
//! preprocessed pixels are signed), every later map with zero point 0 (each follows a
//! ReLU). The last block's output stays f32 and is pooled as such.
//!
//! Ranges come from [`Calibration`]: the f32 network's maps on sample images, each map's
//! upper end taken as a high percentile of its values (or its largest value), see
//! [`RangeMethod`].

use std::ops::Range;

use autocaption_tensor::{PairWeights, QuantWeights, QNR};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{buffers, global_average_pool, max_pool, Conv, Maps, Padding, ResNet, ResNetConfig};

/// How a map's range is chosen from its values on the calibration images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RangeMethod {
    /// The largest value seen: no value is ever clipped, but one outlier coarsens every
    /// step of the map.
    MinMax,
    /// The given percentile of the map's values (`99.99`): the few values above are
    /// clipped, and every other value gets finer steps.
    Percentile {
        /// Percent of values at or below the range's upper end.
        percent: f64,
    },
}

impl RangeMethod {
    /// For people: `min-max` or `percentile 99.99`.
    pub fn describe(&self) -> String {
        match self {
            Self::MinMax => "min-max".into(),
            Self::Percentile { percent } => format!("percentile {percent}"),
        }
    }

    fn upper(&self, values: &[f32]) -> f32 {
        let max = values.iter().fold(0.0f32, |m, &v| m.max(v));
        match *self {
            Self::MinMax => max,
            Self::Percentile { percent } => {
                if values.is_empty() {
                    return 0.0;
                }
                let mut v = values.to_vec();
                let at = ((percent / 100.0 * v.len() as f64) as usize).min(v.len() - 1);
                *v.select_nth_unstable_by(at, f32::total_cmp).1
            }
        }
    }
}

/// Activation ranges of a ResNet, measured on calibration images: what
/// [`QuantizedResNet::new`] turns into scales.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// How each range was chosen.
    pub method: RangeMethod,
    /// Images it was measured on.
    pub images: usize,
    /// The preprocessed input's smallest and largest value.
    pub input: [f32; 2],
    /// The upper end of each map after a ReLU (all start at 0), in order: the stem's
    /// output, then each block's first and second convolutions' outputs and its output.
    pub ranges: Vec<f32>,
}

/// What a forward pass shows each map to: `(index, values)`.
type Observer<'a> = &'a mut dyn FnMut(usize, &[f32]);

/// Accumulates [`Calibration`] ranges batch by batch.
#[derive(Debug, Clone)]
pub struct Calibrator {
    method: RangeMethod,
    images: usize,
    input: [f32; 2],
    /// Per map: the largest value, and the images-weighted sum of per-batch ranges.
    maps: Vec<(f32, f64)>,
}

impl Calibrator {
    /// An empty calibration with the given method.
    pub fn new(method: RangeMethod) -> Self {
        Self {
            method,
            images: 0,
            input: [f32::INFINITY, f32::NEG_INFINITY],
            maps: Vec::new(),
        }
    }

    /// Runs `net` (f32) on a batch of preprocessed images and takes in its maps' values.
    /// A batch's range of a map is its percentile over the batch; the calibration's is the
    /// mean over batches, weighted by images (min-max: the largest value over all).
    pub fn observe(&mut self, net: &ResNet, images: &Maps) {
        self.take(images, &mut |f| net.observe(images, f));
    }

    /// [`Calibrator::observe`] for a [`Chain`]: each convolution's output, after its ReLU
    /// and before its pooling.
    pub fn observe_chain(&mut self, chain: &Chain, images: &Maps) {
        self.take(images, &mut |f| {
            chain.observe(images, f);
        });
    }

    /// Takes in the input and the maps `run` shows.
    fn take(&mut self, images: &Maps, run: &mut dyn FnMut(Observer<'_>)) {
        if images.n == 0 {
            return;
        }
        for &v in &images.data {
            self.input[0] = self.input[0].min(v);
            self.input[1] = self.input[1].max(v);
        }
        let n = images.n as f64;
        let method = self.method;
        let maps = &mut self.maps;
        run(&mut |i, values| {
            if maps.len() <= i {
                maps.resize(i + 1, (0.0, 0.0));
            }
            let max = values.iter().fold(0.0f32, |m, &v| m.max(v));
            maps[i].0 = maps[i].0.max(max);
            maps[i].1 += n * f64::from(method.upper(values));
        });
        self.images += images.n;
    }

    /// The ranges measured; `None` before any image.
    pub fn finish(&self) -> Option<Calibration> {
        (self.images > 0).then(|| Calibration {
            method: self.method,
            images: self.images,
            input: self.input,
            ranges: self
                .maps
                .iter()
                .map(|&(max, sum)| match self.method {
                    RangeMethod::MinMax => max,
                    RangeMethod::Percentile { .. } => (sum / self.images as f64) as f32,
                })
                .collect(),
        })
    }
}

impl ResNet {
    /// The f32 forward pass, showing `observe` each map after a ReLU as it is made:
    /// `(0, stem output)`, then for block `b` `(1 + 3b, first convolution's output)`,
    /// `(2 + 3b, second's)` and `(3 + 3b, the block's output)`.
    pub fn observe(&self, images: &Maps, observe: &mut dyn FnMut(usize, &[f32])) {
        let stem = self.stem.forward(images, None);
        observe(0, &stem.data);
        let mut x = max_pool(&stem, 3, 2, Padding::same(1));
        for (i, b) in self.blocks.iter().enumerate() {
            let y1 = b.conv1.forward(&x, None);
            observe(1 + 3 * i, &y1.data);
            let y2 = b.conv2.forward(&y1, None);
            observe(2 + 3 * i, &y2.data);
            let res = match &b.shortcut {
                Some(s) => s.forward(&x, None),
                None => x,
            };
            x = b.conv3.forward(&y2, Some(&res));
            observe(3 + 3 * i, &x.data);
        }
    }
}

/// An 8-bit map's quantization: value = `scale · (q − zero)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quant {
    /// Size of one step.
    pub scale: f32,
    /// The level that stands for 0.
    pub zero: u8,
}

impl Quant {
    /// Levels 0–255 over `[min, max]` (widened to hold 0).
    pub fn over(min: f32, max: f32) -> Self {
        let (min, max) = (min.min(0.0), max.max(0.0));
        let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
        let zero = (-min / scale).round().clamp(0.0, 255.0) as u8;
        Self { scale, zero }
    }

    fn levels(&self) -> Levels {
        Levels {
            inv: 1.0 / self.scale,
            zero: f32::from(self.zero),
        }
    }
}

/// [`Quant`] ready for many values: the nearest level (halves to even).
#[derive(Clone, Copy)]
struct Levels {
    inv: f32,
    zero: f32,
}

/// 1.5·2²³: added to a value in [0, 2²²), it leaves the value rounded to an integer in the
/// low bits of the sum's representation (a rounding that vectorises, unlike `as`).
const ROUNDER: f32 = 12_582_912.0;

impl Levels {
    #[inline(always)]
    fn of(self, v: f32) -> u8 {
        level(v * self.inv + self.zero)
    }
}

/// The nearest of 0–255 to `l` (NaN gives 0).
#[inline(always)]
fn level(l: f32) -> u8 {
    (l.clamp(0.0, 255.0) + ROUNDER).to_bits() as u8
}

autocaption_tensor::simd_fn! {
    /// `out[i][j] = acc[i][j] · scale[j] + offset[j]` for each row `i` (rows of `out` are
    /// `width` apart; `scale.len()` columns each).
    fn affine(acc: &[[i32; QNR]], scale: &[f32], offset: &[f32], out: &mut [f32], width: usize) {
        let w = scale.len();
        for (i, a) in acc.iter().enumerate() {
            let o = &mut out[i * width..i * width + w];
            for (((o, &a), &s), &b) in o.iter_mut().zip(a).zip(scale).zip(offset) {
                *o = a as f32 * s + b;
            }
        }
    }
}

autocaption_tensor::simd_fn! {
    /// The level of each `max(v, floor)`: the nearest of 0–255 to `v · inv + zero`.
    fn requantize(v: &[f32], floor: f32, inv: f32, zero: f32, out: &mut [u8]) {
        for (d, &v) in out.iter_mut().zip(v) {
            *d = level(v.max(floor) * inv + zero);
        }
    }
}

autocaption_tensor::simd_fn! {
    /// `v += r`.
    fn add(v: &mut [f32], r: &[f32]) {
        for (v, &r) in v.iter_mut().zip(r) {
            *v += r;
        }
    }
}

autocaption_tensor::simd_fn! {
    /// `v += scale · (q − zero)`: a residual read from its levels.
    fn add_levels(v: &mut [f32], q: &[u8], scale: f32, zero: f32) {
        for (v, &q) in v.iter_mut().zip(q) {
            *v += scale * (f32::from(q) - zero);
        }
    }
}

/// A batch of 8-bit maps, NHWC.
#[derive(Debug, Clone, PartialEq)]
struct QMaps {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    data: Vec<u8>,
    quant: Quant,
}

/// A convolution on 8-bit inputs.
#[derive(Debug, Clone)]
struct QConv {
    kh: usize,
    kw: usize,
    cin: usize,
    cout: usize,
    stride: usize,
    pad: Padding,
    relu: bool,
    weights: QuantWeights,
    bias: Vec<f32>,
    /// The weights transformed for F(2×2, 3×3), where that pays.
    winograd: Option<QWinograd>,
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
struct QWinograd {
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

/// A shared output written by tasks in disjoint parts.
struct Shared<T>(*mut T, usize);

// SAFETY: tasks write disjoint parts only (see `Shared::part`).
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    fn new(v: &mut [T]) -> Self {
        Self(v.as_mut_ptr(), v.len())
    }

    /// `len` values from `at`.
    ///
    /// # Safety
    /// No two live parts may overlap.
    #[allow(clippy::mut_from_ref)]
    unsafe fn part(&self, at: usize, len: usize) -> &mut [T] {
        assert!(at + len <= self.1, "part out of bounds");
        // SAFETY: in bounds (asserted); disjointness is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), len) }
    }
}

/// Splits `rows` output rows and `blocks` column blocks into tasks and runs
/// `job(first row, rows, blocks)` for each on the thread pool: row tiles, and where they are
/// too few to keep every thread busy, each tile's blocks split among several tasks too.
fn for_tiles(rows: usize, blocks: usize, job: impl Fn(usize, usize, Range<usize>) + Sync) {
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
    fn new(c: &Conv) -> Self {
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

    fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
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
    fn tile(
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
    fn forward_f32(&self, x: &QMaps) -> Maps {
        assert_eq!(x.c, self.cin, "conv expects {} input channels", self.cin);
        let (oh, ow) = self.out_size(x.h, x.w);
        let rows = x.n * oh * ow;
        let mut data = buffers::take(rows * self.cout); // every value written below
        let shared = Shared::new(&mut data);
        let (cout, relu) = (self.cout, self.relu);
        for_tiles(rows, self.weights.blocks(), |r0, r, blocks| {
            let c0 = blocks.start * QNR;
            let width = (blocks.end * QNR).min(cout) - c0;
            let mut vals = vec![0.0f32; r * width];
            self.tile(x, (oh, ow), r0, r, blocks, &mut Vec::new(), &mut vals);
            for (i, v) in vals.chunks_exact(width).enumerate() {
                // SAFETY: each task writes its own rows' own blocks.
                let dst = unsafe { shared.part((r0 + i) * cout + c0, width) };
                for (d, &v) in dst.iter_mut().zip(v) {
                    *d = if relu { v.max(0.0) } else { v };
                }
            }
        });
        Maps {
            n: x.n,
            h: oh,
            w: ow,
            c: cout,
            data,
        }
    }

    /// The convolution with its ReLU, requantized to `out`.
    fn forward(&self, x: &QMaps, out: Quant) -> QMaps {
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
    fn forward_direct(&self, x: &QMaps, out: Quant) -> QMaps {
        let (oh, ow) = self.out_size(x.h, x.w);
        let rows = x.n * oh * ow;
        let mut data = buffers::take_bytes(rows * self.cout); // every value written below
        let shared = Shared::new(&mut data);
        let cout = self.cout;
        let floor = if self.relu { 0.0 } else { f32::NEG_INFINITY };
        for_tiles(rows, self.weights.blocks(), |r0, r, blocks| {
            let c0 = blocks.start * QNR;
            let width = (blocks.end * QNR).min(cout) - c0;
            let mut vals = vec![0.0f32; r * width];
            self.tile(x, (oh, ow), r0, r, blocks, &mut Vec::new(), &mut vals);
            let levels = out.levels();
            for (i, v) in vals.chunks_exact(width).enumerate() {
                // SAFETY: each task writes its own rows' own blocks.
                let dst = unsafe { shared.part((r0 + i) * cout + c0, width) };
                requantize(v, floor, levels.inv, levels.zero, dst);
            }
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

/// One bottleneck block on 8-bit maps.
#[derive(Debug, Clone)]
struct QBlock {
    conv1: QConv,
    conv2: QConv,
    conv3: QConv,
    shortcut: Option<QConv>,
    /// Scales of the first two convolutions' outputs and of the block's (`None`: the last
    /// block, whose output stays f32).
    q1: Quant,
    q2: Quant,
    out: Option<Quant>,
}

/// A block's output: 8-bit, or f32 for the last.
enum BlockOut {
    Q(QMaps),
    F(Maps),
}

impl QBlock {
    /// `ReLU(conv3(conv2(conv1(x))) + shortcut(x) or x)`: tile by tile, the shortcut's
    /// values made first and added to the last convolution's in registers' reach.
    fn forward(&self, x: &QMaps) -> BlockOut {
        let y1 = self.conv1.forward(x, self.q1);
        let y2 = self.conv2.forward(&y1, self.q2);
        buffers::give_bytes(y1.data);
        let c3 = &self.conv3;
        let (oh, ow) = c3.out_size(y2.h, y2.w);
        let rows = y2.n * oh * ow;
        let cout = c3.cout;
        // Every value written below.
        let mut q = buffers::take_bytes(if self.out.is_some() { rows * cout } else { 0 });
        let mut f = buffers::take(if self.out.is_some() { 0 } else { rows * cout });
        let (qs, fs) = (Shared::new(&mut q), Shared::new(&mut f));
        if self.shortcut.is_none() {
            assert_eq!((x.n, x.h, x.w, x.c), (y2.n, oh, ow, cout), "identity shape");
        }
        for_tiles(rows, c3.weights.blocks(), |r0, r, blocks| {
            let mut patch = Vec::new();
            let c0 = blocks.start * QNR;
            let width = (blocks.end * QNR).min(cout) - c0;
            let mut vals = vec![0.0f32; r * width];
            c3.tile(&y2, (oh, ow), r0, r, blocks.clone(), &mut patch, &mut vals);
            match &self.shortcut {
                Some(s) => {
                    let mut sc = vec![0.0f32; r * width];
                    s.tile(x, (oh, ow), r0, r, blocks, &mut patch, &mut sc);
                    add(&mut vals, &sc);
                }
                None => {
                    let (scale, zero) = (x.quant.scale, f32::from(x.quant.zero));
                    for (i, v) in vals.chunks_exact_mut(width).enumerate() {
                        let at = (r0 + i) * cout + c0;
                        add_levels(v, &x.data[at..at + width], scale, zero);
                    }
                }
            }
            for (i, v) in vals.chunks_exact(width).enumerate() {
                let at = (r0 + i) * cout + c0;
                // SAFETY: each task writes its own rows' own blocks.
                match self.out {
                    Some(quant) => {
                        let levels = quant.levels();
                        let dst = unsafe { qs.part(at, width) };
                        requantize(v, 0.0, levels.inv, levels.zero, dst);
                    }
                    None => {
                        let dst = unsafe { fs.part(at, width) };
                        for (d, &v) in dst.iter_mut().zip(v) {
                            *d = v.max(0.0);
                        }
                    }
                }
            }
        });
        let (n, h, w, c) = (y2.n, oh, ow, cout);
        buffers::give_bytes(y2.data);
        match self.out {
            Some(quant) => BlockOut::Q(QMaps {
                n,
                h,
                w,
                c,
                data: q,
                quant,
            }),
            None => BlockOut::F(Maps {
                n,
                h,
                w,
                c,
                data: f,
            }),
        }
    }
}

/// Checks that `calibration` holds `want` usable ranges.
fn check_calibration(calibration: &Calibration, want: usize) -> Result<(), CalibrationMismatch> {
    if calibration.ranges.len() != want {
        return Err(CalibrationMismatch(format!(
            "the calibration holds {} ranges, but this network has {want} maps to quantize \
             (calibrated on another network?)",
            calibration.ranges.len()
        )));
    }
    let bad = |v: f32| !v.is_finite() || v < 0.0;
    if let Some(i) = calibration.ranges.iter().position(|&v| bad(v)) {
        return Err(CalibrationMismatch(format!(
            "range {i} of the calibration is {}, not a finite value ≥ 0",
            calibration.ranges[i]
        )));
    }
    let [lo, hi] = calibration.input;
    if !lo.is_finite() || !hi.is_finite() || lo > hi {
        return Err(CalibrationMismatch(format!(
            "the calibration's input range [{lo}, {hi}] is not a range"
        )));
    }
    Ok(())
}

/// Preprocessed images in 8 bits.
fn quantize_input(images: &Maps, quant: Quant) -> QMaps {
    let levels = quant.levels();
    let mut data = buffers::take_bytes(images.data.len()); // every value written below
    data.par_chunks_mut(1 << 16)
        .zip(images.data.par_chunks(1 << 16))
        .for_each(|(q, v)| {
            for (q, &v) in q.iter_mut().zip(v) {
                *q = levels.of(v);
            }
        });
    QMaps {
        n: images.n,
        h: images.h,
        w: images.w,
        c: images.c,
        data,
        quant,
    }
}

/// A ResNet run in int8 (see the module notes).
#[derive(Debug, Clone)]
pub struct QuantizedResNet {
    /// Its shape.
    pub config: ResNetConfig,
    input: Quant,
    stem: QConv,
    stem_out: Quant,
    blocks: Vec<QBlock>,
}

/// Why a calibration does not fit a network.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CalibrationMismatch(String);

impl QuantizedResNet {
    /// `net` quantized with the ranges of `calibration` (measured on `net`).
    pub fn new(net: &ResNet, calibration: &Calibration) -> Result<Self, CalibrationMismatch> {
        check_calibration(calibration, 1 + 3 * net.blocks.len())?;
        let [lo, hi] = calibration.input;
        let relu = |i: usize| Quant::over(0.0, calibration.ranges[i]);
        let last = net.blocks.len() - 1;
        Ok(Self {
            config: net.config,
            input: Quant::over(lo, hi),
            stem: QConv::new(&net.stem),
            stem_out: relu(0),
            blocks: net
                .blocks
                .iter()
                .enumerate()
                .map(|(i, b)| QBlock {
                    conv1: QConv::new(&b.conv1),
                    conv2: QConv::new(&b.conv2),
                    conv3: QConv::new(&b.conv3),
                    shortcut: b.shortcut.as_ref().map(QConv::new),
                    q1: relu(1 + 3 * i),
                    q2: relu(2 + 3 * i),
                    out: (i < last).then(|| relu(3 + 3 * i)),
                })
                .collect(),
        })
    }

    /// Pooled features `[n, features]` of preprocessed images `[n, h, w, 3]`.
    pub fn forward(&self, images: &Maps) -> Vec<f32> {
        let x = quantize_input(images, self.input);
        let stem = self.stem.forward(&x, self.stem_out);
        buffers::give_bytes(x.data);
        let mut x = max_pool_u8(&stem);
        buffers::give_bytes(stem.data);
        for b in &self.blocks {
            match b.forward(&x) {
                BlockOut::Q(y) => buffers::give_bytes(std::mem::replace(&mut x, y).data),
                BlockOut::F(y) => {
                    buffers::give_bytes(x.data);
                    let features = global_average_pool(&y);
                    buffers::give(y.data);
                    return features;
                }
            }
        }
        unreachable!("the last block's output is f32")
    }
}

/// 3×3 max pooling of stride 2 with padding 1 on 8-bit maps: the same as pooling the values
/// (the levels rise with them); padded positions never win.
fn max_pool_u8(x: &QMaps) -> QMaps {
    let (k, stride, pad) = (3, 2, 1);
    let oh = (x.h + 2 * pad - k) / stride + 1;
    let ow = (x.w + 2 * pad - k) / stride + 1;
    let c = x.c;
    let mut data = buffers::take_bytes(x.n * oh * ow * c);
    data.fill(0);
    data.par_chunks_mut((ow * c).max(1))
        .enumerate()
        .for_each(|(row, dst_row)| {
            let (n, oy) = (row / oh, row % oh);
            for (ox, dst) in dst_row.chunks_exact_mut(c).enumerate() {
                for ky in 0..k {
                    let iy = (oy * stride + ky) as isize - pad as isize;
                    if iy < 0 || iy >= x.h as isize {
                        continue;
                    }
                    for kx in 0..k {
                        let ix = (ox * stride + kx) as isize - pad as isize;
                        if ix < 0 || ix >= x.w as isize {
                            continue;
                        }
                        let src = ((n * x.h + iy as usize) * x.w + ix as usize) * c;
                        for (d, &v) in dst.iter_mut().zip(&x.data[src..src + c]) {
                            *d = (*d).max(v);
                        }
                    }
                }
            }
        });
    QMaps {
        n: x.n,
        h: oh,
        w: ow,
        c,
        data,
        quant: x.quant,
    }
}

/// What follows a convolution of a [`Chain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// 2×2 max pooling, stride 2.
    Max2,
    /// 2×2 average pooling, stride 2.
    Avg2,
}

/// A plain CNN: convolutions (each with its ReLU) each followed by a 2×2 pooling, the last
/// one's output flattened (NHWC) as the features. The concept CNN has this shape.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The layers in order.
    pub layers: Vec<(Conv, Pool)>,
}

impl Chain {
    /// The f32 forward pass, showing `observe` each convolution's output `(i, values)`.
    pub fn observe(&self, images: &Maps, observe: &mut dyn FnMut(usize, &[f32])) -> Vec<f32> {
        let mut x = images.clone();
        for (i, (conv, pool)) in self.layers.iter().enumerate() {
            let y = conv.forward(&x, None);
            observe(i, &y.data);
            x = pool_f32(&y, *pool);
            buffers::give(y.data);
        }
        x.data
    }

    /// Features `[n, h·w·c of the last map]` in f32.
    pub fn forward(&self, images: &Maps) -> Vec<f32> {
        self.observe(images, &mut |_, _| {})
    }
}

/// 2×2 pooling of stride 2 (odd edges dropped).
fn pool_f32(x: &Maps, pool: Pool) -> Maps {
    match pool {
        Pool::Max2 => max_pool(x, 2, 2, Padding::same(0)),
        Pool::Avg2 => {
            let (oh, ow, c) = (x.h / 2, x.w / 2, x.c);
            let mut y = Maps::zeros(x.n, oh, ow, c);
            for n in 0..x.n {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let o = &mut y.data[((n * oh + oy) * ow + ox) * c..][..c];
                        for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                            let i = ((n * x.h + 2 * oy + dy) * x.w + 2 * ox + dx) * c;
                            for (o, v) in o.iter_mut().zip(&x.data[i..i + c]) {
                                *o += 0.25 * v;
                            }
                        }
                    }
                }
            }
            y
        }
    }
}

/// A [`Chain`] run in int8: every convolution's input in 8 bits, max pooling on the
/// levels; the last convolution's output stays f32 for its pooling.
#[derive(Debug, Clone)]
pub struct QuantizedChain {
    input: Quant,
    layers: Vec<(QConv, Pool, Quant)>,
}

impl QuantizedChain {
    /// `chain` quantized with the ranges of `calibration` (measured on `chain`).
    pub fn new(chain: &Chain, calibration: &Calibration) -> Result<Self, CalibrationMismatch> {
        check_calibration(calibration, chain.layers.len())?;
        let last = chain.layers.len().saturating_sub(1);
        if let Some(i) = (0..last).find(|&i| chain.layers[i].1 != Pool::Max2) {
            return Err(CalibrationMismatch(format!(
                "layer {i} is followed by average pooling: only the last layer's may be"
            )));
        }
        if let Some(i) = chain.layers.iter().position(|(c, _)| !c.relu) {
            return Err(CalibrationMismatch(format!(
                "layer {i} has no ReLU: every map an int8 chain stores must be ≥ 0"
            )));
        }
        Ok(Self {
            input: Quant::over(calibration.input[0], calibration.input[1]),
            layers: chain
                .layers
                .iter()
                .zip(&calibration.ranges)
                .map(|((c, p), &r)| (QConv::new(c), *p, Quant::over(0.0, r)))
                .collect(),
        })
    }

    /// Features of preprocessed images, as [`Chain::forward`].
    pub fn forward(&self, images: &Maps) -> Vec<f32> {
        let mut x = quantize_input(images, self.input);
        let last = self.layers.len() - 1;
        for (i, (conv, pool, quant)) in self.layers.iter().enumerate() {
            if i == last {
                let y = conv.forward_f32(&x);
                buffers::give_bytes(x.data);
                let out = pool_f32(&y, *pool);
                buffers::give(y.data);
                return out.data;
            }
            let y = conv.forward(&x, *quant);
            buffers::give_bytes(
                std::mem::replace(
                    &mut x,
                    match pool {
                        Pool::Max2 => max_pool2_u8(&y),
                        Pool::Avg2 => unreachable!("average pooling ends a chain (checked)"),
                    },
                )
                .data,
            );
            buffers::give_bytes(y.data);
        }
        unreachable!("the last layer returns")
    }
}

/// 2×2 max pooling of stride 2 on 8-bit maps.
fn max_pool2_u8(x: &QMaps) -> QMaps {
    let (oh, ow, c) = (x.h / 2, x.w / 2, x.c);
    let mut data = buffers::take_bytes(x.n * oh * ow * c);
    data.fill(0);
    for n in 0..x.n {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = &mut data[((n * oh + oy) * ow + ox) * c..][..c];
                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let i = ((n * x.h + 2 * oy + dy) * x.w + 2 * ox + dx) * c;
                    for (o, &v) in o.iter_mut().zip(&x.data[i..i + c]) {
                        *o = (*o).max(v);
                    }
                }
            }
        }
    }
    QMaps {
        n: x.n,
        h: oh,
        w: ow,
        c,
        data,
        quant: x.quant,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Layout, ResNetConfig};
    use autocaption_tensor::Rng;

    fn random_conv(rng: &mut Rng, k: usize, cin: usize, cout: usize, stride: usize) -> Conv {
        Conv {
            kh: k,
            kw: k,
            cin,
            cout,
            stride,
            pad: Padding::same(k / 2),
            weight: (0..k * k * cin * cout)
                .map(|_| rng.uniform(-1.0, 1.0))
                .collect(),
            bias: (0..cout).map(|_| rng.uniform(-2.0, 2.0)).collect(),
            relu: true,
            derived: Default::default(),
        }
    }

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

    fn images(rng: &mut Rng, n: usize, size: usize) -> Maps {
        Maps {
            n,
            h: size,
            w: size,
            c: 3,
            data: (0..n * size * size * 3)
                .map(|_| rng.uniform(-120.0, 150.0))
                .collect(),
        }
    }

    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    }

    #[test]
    fn the_int8_network_follows_the_f32_one_and_a_row_does_not_depend_on_its_batch() {
        let config = ResNetConfig {
            layout: Layout::Keras,
            width: 8,
            blocks: [1, 2, 1, 1],
        };
        let net = ResNet::random(config, 3);
        let mut rng = Rng::new(4);
        for method in [
            RangeMethod::MinMax,
            RangeMethod::Percentile { percent: 99.99 },
        ] {
            let mut cal = Calibrator::new(method);
            cal.observe(&net, &images(&mut rng, 3, 48));
            cal.observe(&net, &images(&mut rng, 2, 48));
            let cal = cal.finish().unwrap();
            assert_eq!((cal.images, cal.ranges.len()), (5, 16));
            assert!(cal.input[0] >= -120.0 && cal.input[1] <= 150.0);
            let q = QuantizedResNet::new(&net, &cal).unwrap();
            let x = images(&mut rng, 4, 48);
            let (want, got) = (net.forward(&x), q.forward(&x));
            let f = config.features();
            for i in 0..4 {
                let c = cosine(&want[i * f..(i + 1) * f], &got[i * f..(i + 1) * f]);
                assert!(c > 0.995, "{method:?} image {i}: cosine {c}");
            }
            let one = Maps {
                n: 1,
                data: x.data[..48 * 48 * 3].to_vec(),
                ..x.clone()
            };
            assert_eq!(q.forward(&one), got[..f].to_vec(), "batch of one");
        }
    }

    #[test]
    fn calibration_ranges_clip_outliers_only_when_asked() {
        let mut values: Vec<f32> = (0..10_000).map(|i| (i % 100) as f32 / 10.0).collect();
        values[5] = 1000.0;
        assert_eq!(RangeMethod::MinMax.upper(&values), 1000.0);
        let p = RangeMethod::Percentile { percent: 99.0 }.upper(&values);
        assert!((9.8..=9.9).contains(&p), "{p}");
        let net = ResNet::random(
            ResNetConfig {
                layout: Layout::Keras,
                width: 4,
                blocks: [1, 1, 1, 1],
            },
            1,
        );
        let mut cal = Calibrator::new(RangeMethod::MinMax).finish();
        assert!(cal.is_none());
        let mut c = Calibrator::new(RangeMethod::MinMax);
        c.observe(&net, &images(&mut Rng::new(1), 1, 32));
        cal = c.finish();
        let mut cal = cal.unwrap();
        cal.ranges.pop();
        let e = QuantizedResNet::new(&net, &cal).unwrap_err();
        assert!(e.to_string().contains("12 ranges"), "{e}");
    }

    #[test]
    fn an_int8_chain_follows_the_f32_one() {
        let mut rng = Rng::new(31);
        let mut layers = Vec::new();
        let channels = [3, 8, 16, 16];
        for i in 0..3 {
            let mut c = random_conv(&mut rng, 3, channels[i], channels[i + 1], 1);
            c.bias.iter_mut().for_each(|b| *b *= 0.1);
            let scale = (2.0 / (9 * channels[i]) as f32).sqrt();
            c.weight.iter_mut().for_each(|w| *w *= scale);
            layers.push((c, if i < 2 { Pool::Max2 } else { Pool::Avg2 }));
        }
        let chain = Chain { layers };
        let pixels = |rng: &mut Rng, n: usize| Maps {
            n,
            h: 32,
            w: 32,
            c: 3,
            data: (0..n * 32 * 32 * 3)
                .map(|_| rng.uniform(-0.5, 0.5))
                .collect(),
        };
        let mut cal = Calibrator::new(RangeMethod::Percentile { percent: 99.99 });
        cal.observe_chain(&chain, &pixels(&mut rng, 4));
        let cal = cal.finish().unwrap();
        assert_eq!(cal.ranges.len(), 3);
        let q = QuantizedChain::new(&chain, &cal).unwrap();
        let x = pixels(&mut rng, 3);
        let (want, got) = (chain.forward(&x), q.forward(&x));
        let f = 4 * 4 * 16;
        assert_eq!((want.len(), got.len()), (3 * f, 3 * f));
        for i in 0..3 {
            let c = cosine(&want[i * f..(i + 1) * f], &got[i * f..(i + 1) * f]);
            assert!(c > 0.995, "image {i}: cosine {c}");
        }
        let mut bad = chain.clone();
        bad.layers[0].1 = Pool::Avg2;
        assert!(QuantizedChain::new(&bad, &cal).is_err());
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
