//! Convolutions on 8-bit maps: patch rows against 8-bit weights (7-bit on a CPU without
//! VNNI) with exact `i32` sums, or there, for 3×3 convolutions, the same sums through an
//! integer Winograd transform.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use autocaption_tensor::{team, PairWeights, QuantWeights, Rows, QMR, QNR};

use super::epilogue::{finish_block, in_levels, Affine, Out, Residual, Shortcut, Sink};
use super::{level, Levels, QMaps, Quant, Shared};
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
    /// The bytes of a kernel row in a patch row: its `kw·cin` channels, rounded up to a
    /// whole quad (see [`QConv::patch_rows`]).
    pub(super) run: usize,
    /// `[kh·run, cout]`: each kernel row's weights, then zeros up to `run`.
    pub(super) weights: QuantWeights,
    pub(super) bias: Vec<f32>,
    /// The weights transformed for F(2×2, 3×3), where that pays.
    pub(super) winograd: Option<QWinograd>,
    /// The first affines [`QConv::folded_affines`] made, with what they were made for.
    folded: OnceLock<(FoldedFor, Vec<Affine>)>,
}

/// What a convolution's affines are made for: its input's quantization, the levels of its
/// output (none: values) and whether they add that output's zero point.
type FoldedFor = (Quant, Option<Levels>, bool);

/// Input channels from which a 3×3 convolution of stride 1 runs as F(2×2, 3×3): 2.25×
/// fewer multiplications, at 16 bits (the transformed values outgrow 8). Up to
/// [`WINOGRAD_MAX_CHANNELS`]: beyond, the transformed weights (16 positions of `cin × cout`
/// at 16 bits) no longer stay in cache while a tile block passes over them.
///
/// Only on a CPU without a four-way 8-bit dot product
/// ([`autocaption_tensor::has_int8_dot`]): with one (VNNI), the direct product runs at 2.6
/// times the 16-bit pair kernel's rate (234 against 90 GMAC/s a core), and ResNet-50 ran
/// at 12.4 ms an image with every 3×3 direct against 17.6 ms with Winograd (batch 1, AMD
/// Zen 4, 2 threads).
const WINOGRAD_MIN_CHANNELS: usize = 32;

/// See [`WINOGRAD_MIN_CHANNELS`].
const WINOGRAD_MAX_CHANNELS: usize = 256;

/// A 3×3 convolution's integer weights transformed for F(2×2, 3×3): with `G' = 2G` (rows
/// `[2,0,0]`, `[1,1,1]`, `[1,−1,1]`, `[0,0,2]`), `U' = G'·g·G'ᵀ = 4·U` is an integer
/// (at most `9 · 127 = 1143` in size), so `Aᵀ·(Σ U'⊙V)·A` is exactly 4 times the direct sums:
/// the same integers as [`QuantWeights::block_sums`], hence the same outputs, bit for bit.
#[derive(Debug, Clone)]
pub(super) struct QWinograd {
    /// Per position of the 4×4 transform, `[cin, cout]`.
    u: Vec<PairWeights>,
}

impl QWinograd {
    fn new(c: &QConv) -> Self {
        const G: [[i32; 3]; 4] = [[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]];
        let (w, cin, cout) = (&c.weights, c.cin, c.cout);
        let mut u = vec![vec![0i16; cin * cout]; 16];
        for ci in 0..cin {
            for o in 0..cout {
                let g = |ky: usize, kx: usize| i32::from(w.level(c.weight_row(ky, kx, ci), o));
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

/// Blocks of columns whose sums a tile makes at once ([`QuantWeights::sums_blocks`]): with
/// VNNI each 4 bytes of a row read then feed 4 blocks' sums. ResNet-50 with 2 threads (AMD
/// Zen 4; rounds alternating pass by pass in one process): against one block at a time,
/// 3.7% less time at batch 1 and 1.0% at batch 8 (faster in 12 and 10 of 12 rounds); two
/// blocks at a time gave 2.1% and 1.2–1.4%, and 4 took 1.4% less time than 2 at batch 1
/// and as much at batch 8, 1.0% less than 3 at batch 1 and 0.1% more at batch 8.
const SUM_BLOCKS: usize = autocaption_tensor::QBLOCKS;

/// Rows of output pixels a tile makes at once, at most. Larger tiles pass over each block of
/// weights fewer times and make fewer kernel and epilogue calls; too large, and a tile's
/// output and residual rows no longer stay in cache from one block of columns to the next.
/// ResNet-50 with 2 threads (AMD Zen 4, 1 MB of L2 a core; 10 rounds alternating pass by
/// pass in one process, the shares below unchanged): 96 rows took 1.1% less time than 48 at
/// batch 1 and 0.5% less at batch 8 (faster in 9 and 9 rounds of 10); 72 rows took 0.5% and
/// 0.9% more than 96, and 192 rows 1.6% and 0.6% more.
const TILE_ROWS: usize = 96;

/// Rows each thread's share must hold for the shares to be rows (see [`for_tiles`]). With
/// fewer, every tile of a thread would pass over all of a layer's weights, and where those
/// outgrow its L2 they come from L3 each time; a column share is a thread's own part of
/// them, which stays. Measured with 2 threads (AMD Zen 4, 1 MB of L2 a core): ResNet-50's
/// third stage at batch 1 (196 rows) with column shares ran 11.3–11.5 ms an image against
/// 11.9–13.2 with row shares (three interleaved rounds); at batch 8 the fourth stage (392
/// rows) took 5.8–6.1 ms against 6.4–6.5 for its first block's three convolutions and
/// 4.2–4.7 against 4.4–4.9 for each other block's (three interleaved rounds, per-layer
/// times; tiles of 48 rows then). With tiles of 96, 480 rows (batch 1's second stage, 392 a
/// thread, then in column shares) took 1.7% more time at batch 1 and 1.2% more at batch 8
/// than 240 (10 rounds alternating pass by pass).
const ROW_SHARE_ROWS: usize = 240;

// Tiles hold whole kernel calls.
const _: () = assert!(TILE_ROWS.is_multiple_of(autocaption_tensor::QMR));

/// Whether [`for_tiles`] shares `rows` among the threads as runs of rows, each tile then
/// holding every block of columns (else as column blocks).
pub(super) fn row_shares(rows: usize, blocks: usize) -> bool {
    let threads = rayon::current_num_threads().max(1);
    threads == 1 || rows >= threads * ROW_SHARE_ROWS || blocks < threads
}

/// Splits `rows` output rows and `blocks` column blocks among the pool's threads and runs
/// `job(first row, rows, blocks)` for each tile.
///
/// Each thread has a share it works through first: thread `i` of `n` takes the `i`-th of
/// `n` equal runs of rows (in whole kernel groups), so consecutive layers find most of their
/// input rows in the cache of the core that wrote them. (With plain work stealing each
/// layer's rows landed on either core and crossed between their caches: 2 threads ran about
/// 1.7× one thread's speed, against 2× in isolation.) A thread done with its share then
/// takes the tiles left in the others', so a core slowed by something else holds up no one
/// for long. Where the rows are too few for every thread to get [`ROW_SHARE_ROWS`] rows,
/// the shares are column blocks instead, each thread reading only its own part of the
/// weights (which then stays in its cache from tile to tile).
pub(super) fn for_tiles(
    rows: usize,
    blocks: usize,
    job: impl Fn(usize, usize, Range<usize>) + Sync,
) {
    let threads = rayon::current_num_threads().max(1);
    let part = |i: usize, n: usize, parts: usize| i * n / parts;
    // Tiles of about equal size, whole kernel groups but for the last.
    let tiles = |rows: Range<usize>, blocks: Range<usize>| -> Vec<(usize, usize, Range<usize>)> {
        let count = rows.len().div_ceil(TILE_ROWS);
        let size = rows.len().div_ceil(count.max(1)).next_multiple_of(QMR);
        let starts = (rows.start..rows.end).step_by(size.max(1));
        starts
            .map(|r0| (r0, size.min(rows.end - r0), blocks.clone()))
            .collect()
    };
    if threads == 1 {
        for (r0, r, b) in tiles(0..rows, 0..blocks) {
            job(r0, r, b);
        }
        return;
    }
    let groups = rows.div_ceil(QMR);
    let shares: Vec<Vec<(usize, usize, Range<usize>)>> = (0..threads)
        .map(|i| {
            if row_shares(rows, blocks) {
                let at = |i: usize| (part(i, groups, threads) * QMR).min(rows);
                tiles(at(i)..at(i + 1), 0..blocks)
            } else {
                tiles(
                    0..rows,
                    part(i, blocks, threads)..part(i + 1, blocks, threads),
                )
            }
        })
        .collect();
    // The next tile of each share, whoever takes it.
    let next: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
    team::each_thread(&|i, n| {
        let n = n.min(threads);
        for s in (0..n).map(|k| (i + k) % n) {
            loop {
                let t = next[s].fetch_add(1, Ordering::Relaxed);
                let Some((r0, r, b)) = shares[s].get(t) else {
                    break;
                };
                job(*r0, *r, b.clone());
            }
        }
    });
}

impl QConv {
    pub(super) fn new(c: &Conv) -> Self {
        // Each kernel row's weights, then zero rows up to a whole quad: they add nothing.
        let (row, run) = (c.kw * c.cin, (c.kw * c.cin).next_multiple_of(4));
        let mut padded = vec![0.0; c.kh * run * c.cout];
        for (src, dst) in c
            .weight
            .chunks_exact(row * c.cout)
            .zip(padded.chunks_exact_mut(run * c.cout))
        {
            dst[..src.len()].copy_from_slice(src);
        }
        let weights = QuantWeights::quantize(&padded, c.kh * run, c.cout)
            .expect("weights were checked finite when loaded");
        let winograd = !autocaption_tensor::has_int8_dot()
            && c.kh == 3
            && c.kw == 3
            && c.stride == 1
            && c.pad == Padding::same(1)
            && c.cin.is_multiple_of(2)
            && (WINOGRAD_MIN_CHANNELS..=WINOGRAD_MAX_CHANNELS).contains(&c.cin);
        let mut q = Self {
            kh: c.kh,
            kw: c.kw,
            cin: c.cin,
            cout: c.cout,
            stride: c.stride,
            pad: c.pad,
            relu: c.relu,
            run,
            weights,
            bias: c.bias.clone(),
            winograd: None,
            folded: OnceLock::new(),
        };
        if winograd {
            q.winograd = Some(QWinograd::new(&q));
        }
        q
    }

    /// The row of [`QConv::weights`] that weighs channel `ci` of kernel pixel `(ky, kx)`.
    pub(super) fn weight_row(&self, ky: usize, kx: usize, ci: usize) -> usize {
        ky * self.run + kx * self.cin + ci
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

    /// The patch rows of output rows `r0..r0 + r`, read in place where they can be: for a
    /// pointwise convolution, a pixel's channels; else each kernel row as one segment of
    /// the row, `run` bytes: its pixels' channels side by side where it lies inside the
    /// input (with, where `kw·cin` is not a whole number of quads, the next bytes, which
    /// meet zero weights), `zeros` (the zero point) where it lies wholly in the padding,
    /// and gathered into `patch` where it lies partly in it (at a place of its own, so
    /// nothing written there moves).
    fn patch_rows<'a>(
        &self,
        x: &'a QMaps,
        (oh, ow): (usize, usize),
        (r0, r): (usize, usize),
        patch: &'a mut Vec<u8>,
        zeros: &'a [u8],
    ) -> Rows<'a, u8> {
        let cin = self.cin;
        if self.reads_in_place() {
            return pixel_rows(&x.data, (r0, r), cin);
        }
        let (kh, run) = (self.kh, self.run);
        assert_eq!(zeros.len(), run, "a kernel row of zero points");
        patch.resize(r * kh * run, 0);
        let offsets: Vec<usize> = (0..kh).map(|ky| ky * x.w * cin).collect();
        let mut places = Places::from(r0, (x.n, oh, ow));
        // Each row's place in `patch`, for its kernel rows partly in the padding.
        let mut patches = patch.chunks_exact_mut(kh * run);
        Rows::in_place(&x.data, run, &offsets, r, |_, runs| {
            let place = places.next().expect("a place for every row");
            let patch = patches.next().expect("a patch for every row");
            if let Some(src) = self.inside(x, place) {
                return Some(src);
            }
            for (ky, (run_of, patch)) in
                runs.iter_mut().zip(patch.chunks_exact_mut(run)).enumerate()
            {
                *run_of = match self.kernel_row(x, place, ky) {
                    KernelRow::Inside(src) => &x.data[src..src + run],
                    KernelRow::Padding => zeros,
                    KernelRow::Partial => {
                        self.gather_kernel_row(x, place, ky, patch);
                        patch
                    }
                };
            }
            None
        })
    }

    /// Where the first kernel row of the output pixel at `(n, oy, ox)` begins in `x`, where
    /// every kernel row lies inside (each [`KernelRow::Inside`], one input row below the
    /// last).
    fn inside(&self, x: &QMaps, (n, oy, ox): (usize, usize, usize)) -> Option<usize> {
        let iy = (oy * self.stride).checked_sub(self.pad.top)?;
        let ix = (ox * self.stride).checked_sub(self.pad.left)?;
        if iy + self.kh > x.h || ix + self.kw > x.w {
            return None;
        }
        let src = ((n * x.h + iy) * x.w + ix) * self.cin;
        let last = src + (self.kh - 1) * x.w * self.cin;
        (last + self.run <= x.data.len()).then_some(src)
    }

    /// Where kernel row `ky` of the output pixel at `(n, oy, ox)` lies in `x`: inside only
    /// where its `run` bytes lie in the data.
    fn kernel_row(&self, x: &QMaps, (n, oy, ox): (usize, usize, usize), ky: usize) -> KernelRow {
        let iy = (oy * self.stride + ky) as isize - self.pad.top as isize;
        let ix0 = (ox * self.stride) as isize - self.pad.left as isize;
        if iy < 0 || iy >= x.h as isize {
            return KernelRow::Padding;
        }
        if ix0 >= 0 && ix0 as usize + self.kw <= x.w {
            let src = ((n * x.h + iy as usize) * x.w + ix0 as usize) * self.cin;
            if src + self.run <= x.data.len() {
                return KernelRow::Inside(src);
            }
        }
        KernelRow::Partial
    }

    /// Kernel row `ky` of the output pixel at `place` (its kw pixels' channels, then the
    /// zero point up to `run` bytes) into `dst`, the zero point where a pixel lies in the
    /// padding.
    fn gather_kernel_row(
        &self,
        x: &QMaps,
        (n, oy, ox): (usize, usize, usize),
        ky: usize,
        dst: &mut [u8],
    ) {
        let cin = self.cin;
        let (pixels, tail) = dst.split_at_mut(self.kw * cin);
        tail.fill(x.quant.zero);
        let iy = (oy * self.stride + ky) as isize - self.pad.top as isize;
        let ix0 = (ox * self.stride) as isize - self.pad.left as isize;
        for (kx, d) in pixels.chunks_exact_mut(cin).enumerate() {
            let ix = ix0 + kx as isize;
            if (0..x.h as isize).contains(&iy) && (0..x.w as isize).contains(&ix) {
                let src = ((n * x.h + iy as usize) * x.w + ix as usize) * cin;
                d.copy_from_slice(&x.data[src..src + cin]);
            } else {
                d.fill(x.quant.zero);
            }
        }
    }

    /// Per block of columns, for inputs quantized as `input`: each sum's scale, and the
    /// bias less what the input's zero point adds (zero past `cout`).
    fn affine(&self, input: Quant) -> Vec<Affine> {
        let (scales, sums) = (self.weights.scales(), self.weights.column_sums());
        let zero = i32::from(input.zero);
        (0..self.weights.blocks())
            .map(|b| {
                let mut a = [[0.0; QNR]; 2];
                for (jj, o) in (b * QNR..self.cout.min((b + 1) * QNR)).enumerate() {
                    let scale = input.scale * scales[o];
                    a[0][jj] = scale;
                    a[1][jj] = self.bias[o] - (zero * sums[o]) as f32 * scale;
                }
                a
            })
            .collect()
    }

    /// [`QConv::affine`] for inputs quantized as `input`, folded into `levels` where given
    /// ([`in_levels`], with its zero point if `zero`). The first made is kept and handed out
    /// again when asked for the same (a network asks each convolution for the same affines
    /// every pass): made afresh for every layer, they took 0.12 ms of a pass of ResNet-50 at
    /// batch 1 (0.018 ms kept), while the other threads waited. Kept, batch 1 took 1.2% and
    /// 2.7% less time (faster in 12 and 10 of 12 rounds alternating pass by pass, two runs;
    /// 2 threads, AMD Zen 4); batch 8 0.1–0.3% (noise).
    fn folded_affines(
        &self,
        input: Quant,
        levels: Option<Levels>,
        zero: bool,
    ) -> Cow<'_, [Affine]> {
        let key = (input, levels, zero);
        let make = || {
            let affine = self.affine(input);
            match levels {
                Some(l) => affine.iter().map(|a| in_levels(a, l, zero)).collect(),
                None => affine,
            }
        };
        let (made_for, affines) = self.folded.get_or_init(|| (key, make()));
        if *made_for == key {
            Cow::Borrowed(affines)
        } else {
            Cow::Owned(make())
        }
    }

    /// The convolution as a direct product of patch rows, `shortcut` added to its
    /// `scale · sum + bias` and each value then written by `sink`: tile by tile, and in a
    /// tile run by run of [`SUM_BLOCKS`] blocks of columns, the sums of a run made at once
    /// and then finished block by block while they are in the first-level cache.
    pub(super) fn run_direct(&self, x: &QMaps, shortcut: Shortcut<'_>, sink: Sink<'_>) {
        self.run_direct_then(x, shortcut, sink, None);
    }

    /// Whether `next` can run tile by tile after this convolution on inputs shaped as `x`
    /// (see [`QConv::run_direct_then`]): it reads each output pixel's channels in place,
    /// and each tile holds whole rows.
    pub(super) fn can_be_followed_by(&self, next: &QConv, x: &QMaps) -> bool {
        let (oh, ow) = self.out_size(x.h, x.w);
        next.reads_in_place()
            && next.cin == self.cout
            && row_shares(x.n * oh * ow, self.weights.blocks())
    }

    /// [`QConv::run_direct`], and then, where `then` is given, its pointwise convolution of
    /// each tile's output rows as soon as the tile has written them, while they are still
    /// in cache: the rows a block writes are then read back from there rather than from
    /// memory by the next block's first convolution. (ResNet-50 at batch 8: 1.2% less
    /// time, median of 20 rounds alternating pass by pass in one process, faster in all 20;
    /// batch 1, where the later stages' tiles are column blocks and cannot follow,
    /// unchanged: faster in 11 of 20, median 1.000.) The same bits as the two convolutions
    /// one after the other.
    pub(super) fn run_direct_then(
        &self,
        x: &QMaps,
        shortcut: Shortcut<'_>,
        sink: Sink<'_>,
        then: Option<Then<'_>>,
    ) {
        assert_eq!(x.c, self.cin, "conv expects {} input channels", self.cin);
        let (oh, ow) = self.out_size(x.h, x.w);
        let rows = x.n * oh * ow;
        let cout = self.cout;
        // Toward levels, the map's scale folded into every affine (see `epilogue`).
        let (out, to_levels) = sink.out();
        let affine = self.folded_affines(x.quant, to_levels, true);
        let shortcut_affine = match shortcut {
            Shortcut::Conv(s, sx) => {
                assert_eq!(
                    (s.out_size(sx.h, sx.w), s.cout),
                    ((oh, ow), cout),
                    "shortcut shape"
                );
                s.folded_affines(sx.quant, to_levels, false)
            }
            Shortcut::Identity(q) => {
                assert_eq!((q.n, q.h, q.w, q.c), (x.n, oh, ow, cout), "identity shape");
                Cow::Borrowed(&[][..])
            }
            Shortcut::None => Cow::Borrowed(&[][..]),
        };
        // The padding of each input, for rows read in place.
        let zeros = vec![x.quant.zero; self.run];
        let shortcut_zeros = match shortcut {
            Shortcut::Conv(s, sx) => vec![sx.quant.zero; s.run],
            _ => Vec::new(),
        };
        let then = then.map(|t| {
            assert!(
                self.can_be_followed_by(t.conv, x),
                "a pointwise convolution of whole rows follows"
            );
            let Sink::Levels(..) = sink else {
                panic!("a convolution follows levels");
            };
            let levels = t.quant.levels();
            let affine = t.conv.folded_affines(t.input, Some(levels), true);
            let out = Out::Levels(t.out, levels.unrounded(t.conv.floor()));
            (t.conv, out, affine)
        });
        for_tiles(rows, self.weights.blocks(), |r0, r, blocks| {
            let mut scratch = DIRECT_SCRATCH.take();
            let (patch, shortcut_patch, sums) = &mut scratch;
            // A run of blocks' sums of the convolution, and of its shortcut.
            sums.resize(2 * SUM_BLOCKS * r, [0; QNR]);
            let (acc, shortcut_acc) = sums.split_at_mut(SUM_BLOCKS * r);
            let patch_rows = self.patch_rows(x, (oh, ow), (r0, r), patch, &zeros);
            let shortcut_rows = match shortcut {
                Shortcut::Conv(s, sx) => {
                    s.patch_rows(sx, (oh, ow), (r0, r), shortcut_patch, &shortcut_zeros)
                }
                _ => Rows::new(&[]),
            };
            for (b, count) in runs(blocks) {
                let (acc, shortcut_acc) = (&mut acc[..count * r], &mut shortcut_acc[..count * r]);
                self.weights.sums_blocks(&patch_rows, b, count, acc);
                if let Shortcut::Conv(s, _) = shortcut {
                    s.weights
                        .sums_blocks(&shortcut_rows, b, count, shortcut_acc);
                }
                for (b, (acc, shortcut_acc)) in
                    (b..b + count).zip(acc.chunks_exact(r).zip(shortcut_acc.chunks_exact(r)))
                {
                    let (c0, width) = (b * QNR, QNR.min(cout - b * QNR));
                    let residual = match shortcut {
                        Shortcut::None => Residual::None,
                        Shortcut::Conv(..) => Residual::Sums(shortcut_acc, &shortcut_affine[b]),
                        Shortcut::Identity(q) => Residual::Levels {
                            q: &q.data[r0 * cout + c0..],
                            stride: cout,
                            width,
                            scale: q.quant.scale * to_levels.map_or(1.0, |l| l.inv),
                            zero: f32::from(q.quant.zero),
                        },
                    };
                    finish_block(
                        acc,
                        &affine[b],
                        residual,
                        out,
                        (r0 * cout + c0, cout, width),
                    );
                }
            }
            if let (Some((next, next_out, next_affine)), Out::Levels(ours, _)) = (&then, out) {
                // SAFETY: this tile's own rows, all of whose columns it has just written.
                let ours: &[u8] = unsafe { ours.part(r0 * cout, r * cout) };
                let rows = pixel_rows(ours, (0, r), cout);
                let next_cout = next.cout;
                for (b, count) in runs(0..next_affine.len()) {
                    let acc = &mut acc[..count * r];
                    next.weights.sums_blocks(&rows, b, count, acc);
                    for (b, acc) in (b..b + count).zip(acc.chunks_exact(r)) {
                        let (c0, width) = (b * QNR, QNR.min(next_cout - b * QNR));
                        let place = (r0 * next_cout + c0, next_cout, width);
                        finish_block(acc, &next_affine[b], Residual::None, *next_out, place);
                    }
                }
            }
            DIRECT_SCRATCH.set(scratch);
        });
    }

    /// The floor of this convolution's ReLU (none: no floor).
    fn floor(&self) -> f32 {
        if self.relu {
            0.0
        } else {
            f32::NEG_INFINITY
        }
    }

    /// The convolution with its ReLU, in f32.
    pub(super) fn forward_f32(&self, x: &QMaps) -> Maps {
        let (oh, ow) = self.out_size(x.h, x.w);
        let mut data = buffers::take(x.n * oh * ow * self.cout); // every value written below
        let out = Shared::new(&mut data);
        self.run_direct(x, Shortcut::None, Sink::Values(&out, self.floor()));
        Maps {
            n: x.n,
            h: oh,
            w: ow,
            c: self.cout,
            data,
        }
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
    fn forward_winograd(&self, wg: &QWinograd, x: &QMaps, out: Quant) -> QMaps {
        let (h, w, cin, cout) = (x.h, x.w, self.cin, self.cout);
        let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
        let tiles = x.n * th * tw;
        let mut data = buffers::take_bytes(x.n * h * w * cout); // every value written below
        let shared = Shared::new(&mut data);
        let levels = out.levels();
        // In levels (see `epilogue`): the affine and the floor.
        let floor = levels.unrounded(self.floor());
        let blocks = self.weights.blocks();
        // Each block's scales and offsets (the biases: the input's zero point is 0).
        let affine = self.folded_affines(x.quant, Some(levels), true);
        let zeros = vec![0u8; cin];
        for_tiles(tiles, blocks, |t0, tcount, blocks| {
            let mut scratch = WINOGRAD_SCRATCH.take();
            let (v, m, lv) = &mut scratch;
            // V: [16][tcount][cin]; M: [16][tcount] sums of a block; each tile's levels.
            v.resize(16 * tcount * cin, 0);
            m.resize(16 * tcount, [0; QNR]);
            lv.resize(tcount, [[0; QNR]; 4]);
            let geometry = Tiles { h, w, cin, th, tw };
            input_transforms(&x.data, geometry, t0, tcount, &zeros, v);
            let rows: Vec<&[i16]> = v.chunks_exact(cin).collect();
            let rows: Vec<Rows<'_, i16>> = rows.chunks(tcount).map(Rows::new).collect();
            for b in blocks {
                for (p, u) in wg.u.iter().enumerate() {
                    let at = p * tcount..(p + 1) * tcount;
                    u.sums(&rows[p], b, &mut m[at]);
                }
                winograd_out(m, &affine[b], floor, lv);
                let o0 = b * QNR;
                let width = QNR.min(cout - o0);
                for (t, lv) in lv.iter().enumerate() {
                    let tile = t0 + t;
                    let (n, rem) = (tile / (th * tw), tile % (th * tw));
                    let (ty, tx) = (rem / tw, rem % tw);
                    for (k, lv) in lv.iter().enumerate() {
                        let (oy, ox) = (2 * ty + k / 2, 2 * tx + k % 2);
                        if oy < h && ox < w {
                            let at = ((n * h + oy) * w + ox) * cout + o0;
                            // SAFETY: each task writes its own tiles' own blocks.
                            unsafe { shared.part(at, width) }.copy_from_slice(&lv[..width]);
                        }
                    }
                }
            }
            WINOGRAD_SCRATCH.set(scratch);
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
        let shared = Shared::new(&mut data);
        let sink = Sink::Levels(&shared, out.levels(), self.floor());
        self.run_direct(x, Shortcut::None, sink);
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

/// The blocks of `blocks` in runs of up to [`SUM_BLOCKS`]: each run's first and length.
fn runs(blocks: Range<usize>) -> impl Iterator<Item = (usize, usize)> {
    let end = blocks.end;
    blocks
        .step_by(SUM_BLOCKS)
        .map(move |b| (b, SUM_BLOCKS.min(end - b)))
}

/// Rows `r0..r0 + r` of a map of `c` channels, each row a pixel's channels where they lie.
fn pixel_rows(data: &[u8], (r0, r): (usize, usize), c: usize) -> Rows<'_, u8> {
    Rows::in_place(data, c, &[0], r, |i, _| Some((r0 + i) * c))
}

/// A pointwise convolution that follows another tile by tile (see
/// [`QConv::run_direct_then`]).
#[derive(Clone, Copy)]
pub(super) struct Then<'a> {
    pub(super) conv: &'a QConv,
    /// How the rows it reads, the first convolution's output, are quantized.
    pub(super) input: Quant,
    /// Its output, `[rows][conv.cout]`, in the levels of `quant`.
    pub(super) out: &'a Shared<u8>,
    pub(super) quant: Quant,
}

/// Where a kernel row of an output pixel lies in the input (see [`QConv::kernel_row`]).
enum KernelRow {
    /// Wholly inside: its first byte.
    Inside(usize),
    /// Wholly in the padding (above or below the input).
    Padding,
    /// Partly in the padding (left or right).
    Partial,
}

/// Output pixels `(n, oy, ox)` in order, from a row of the output on (see
/// [`QConv::patch_rows`]).
#[derive(Clone, Copy)]
struct Places {
    at: (usize, usize, usize),
    oh: usize,
    ow: usize,
}

impl Places {
    /// From output row `row` of `n` maps of `oh × ow`.
    fn from(row: usize, (n, oh, ow): (usize, usize, usize)) -> Self {
        let (image, rem) = (row / (oh * ow), row % (oh * ow));
        debug_assert!(image <= n);
        Self {
            at: (image, rem / ow, rem % ow),
            oh,
            ow,
        }
    }
}

impl Iterator for Places {
    type Item = (usize, usize, usize);

    fn next(&mut self) -> Option<Self::Item> {
        let here = self.at;
        let (n, oy, ox) = &mut self.at;
        *ox += 1;
        if *ox == self.ow {
            *ox = 0;
            *oy += 1;
            if *oy == self.oh {
                *oy = 0;
                *n += 1;
            }
        }
        Some(here)
    }
}

/// A direct product's scratch: patch rows of the convolution and of its shortcut, and their
/// sums of a run of blocks (see [`SUM_BLOCKS`]).
type DirectScratch = (Vec<u8>, Vec<u8>, Vec<[i32; QNR]>);

thread_local! {
    /// Kept per thread between tiles (taken, so a tile never shares it).
    static DIRECT_SCRATCH: std::cell::Cell<DirectScratch> = const {
        std::cell::Cell::new((Vec::new(), Vec::new(), Vec::new()))
    };
}

/// A Winograd task's scratch: transformed inputs, a block's sums, a block's output levels.
type WinogradScratch = (Vec<i16>, Vec<[i32; QNR]>, Vec<[[u8; QNR]; 4]>);

thread_local! {
    /// Kept per thread between tasks (taken, so a task never shares it).
    static WINOGRAD_SCRATCH: std::cell::Cell<WinogradScratch> = const {
        std::cell::Cell::new((Vec::new(), Vec::new(), Vec::new()))
    };
}

/// An input map's size and its 2×2 output tiles.
#[derive(Clone, Copy)]
struct Tiles {
    h: usize,
    w: usize,
    cin: usize,
    th: usize,
    tw: usize,
}

autocaption_tensor::simd_fn! {
    /// `V = Bᵀ·d·B` of tiles `t0..t0 + tcount`, each `d` the tile's 4×4 input patch (padding
    /// is `zeros`), into `v` (`[16][tcount][cin]`, position `4a + b`; two channels make a
    /// pair of [`PairWeights`]). `Bᵀ` has rows `[1,0,−1,0]`, `[0,1,1,0]`, `[0,−1,1,0]`,
    /// `[0,1,0,−1]`; from 8-bit inputs every value is within ±1020.
    fn input_transforms(x: &[u8], g: Tiles, t0: usize, tcount: usize, zeros: &[u8], v: &mut [i16]) {
        let cin = g.cin;
        for t in 0..tcount {
            let tile = t0 + t;
            let (n, rem) = (tile / (g.th * g.tw), tile % (g.th * g.tw));
            let (ty, tx) = (rem / g.tw, rem % g.tw);
            let px: [&[u8]; 16] = std::array::from_fn(|p| {
                let (iy, ix) = ((2 * ty + p / 4) as isize - 1, (2 * tx + p % 4) as isize - 1);
                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                    &zeros[..cin]
                } else {
                    let at = ((n * g.h + iy as usize) * g.w + ix as usize) * cin;
                    &x[at..at + cin]
                }
            });
            let mut c = 0;
            while c + 16 <= cin {
                transform_lanes::<16>(&px, c, v, (t, tcount, cin));
                c += 16;
            }
            while c < cin {
                transform_lanes::<1>(&px, c, v, (t, tcount, cin));
                c += 1;
            }
        }
    }
}

/// [`input_transforms`] of channels `c..c + L` of one tile, `t` of `tcount`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // the transform reads as its matrices
fn transform_lanes<const L: usize>(
    px: &[&[u8]; 16],
    c: usize,
    v: &mut [i16],
    (t, tcount, cin): (usize, usize, usize),
) {
    let mut d = [[0i16; L]; 16];
    for (d, px) in d.iter_mut().zip(px) {
        for (d, &x) in d.iter_mut().zip(&px[c..c + L]) {
            *d = i16::from(x);
        }
    }
    // tt = Bᵀ·d, tt[i][b].
    let mut tt = [[[0i16; L]; 4]; 4];
    for b in 0..4 {
        for l in 0..L {
            let (d0, d1, d2, d3) = (d[b][l], d[4 + b][l], d[8 + b][l], d[12 + b][l]);
            tt[0][b][l] = d0 - d2;
            tt[1][b][l] = d1 + d2;
            tt[2][b][l] = d2 - d1;
            tt[3][b][l] = d1 - d3;
        }
    }
    for (i, r) in tt.iter().enumerate() {
        let mut row = [[0i16; L]; 4];
        for l in 0..L {
            row[0][l] = r[0][l] - r[2][l];
            row[1][l] = r[1][l] + r[2][l];
            row[2][l] = r[2][l] - r[1][l];
            row[3][l] = r[1][l] - r[3][l];
        }
        for (j, row) in row.iter().enumerate() {
            let at = ((4 * i + j) * tcount + t) * cin + c;
            v[at..at + L].copy_from_slice(row);
        }
    }
}

autocaption_tensor::simd_fn! {
    /// Each tile's outputs for a block of columns from the block's sums `m` (`[16][tiles]`,
    /// position `4i + j`): `Y' = Aᵀ·M'·A` (`Aᵀ` rows `[1,1,1,0]`, `[0,1,−1,−1]`), exactly 4
    /// times the direct sums, then `sum · scale + offset` with the affine in levels, the
    /// ReLU's `floor` (in levels too) and the rounding, into `out` (a tile's outputs in the
    /// order (0,0), (0,1), (1,0), (1,1)): the arithmetic of [`QConv::forward_direct`], value
    /// for value. Wrapping, as the sums may, for a result that fits.
    #[allow(clippy::needless_range_loop)] // the transform reads as its matrices
    fn winograd_out(
        m: &[[i32; QNR]],
        affine: &Affine,
        floor: f32,
        out: &mut [[[u8; QNR]; 4]],
    ) {
        let tiles = out.len();
        for (t, out) in out.iter_mut().enumerate() {
            let mm = |i: usize, j: usize| &m[(4 * i + j) * tiles + t];
            let mut vals = [[0.0f32; QNR]; 4];
            for jj in 0..QNR {
                let z = |j: usize| {
                    let (a, b, c, d) = (mm(0, j)[jj], mm(1, j)[jj], mm(2, j)[jj], mm(3, j)[jj]);
                    [a.wrapping_add(b).wrapping_add(c), b.wrapping_sub(c).wrapping_sub(d)]
                };
                let (z0, z1, z2, z3) = (z(0), z(1), z(2), z(3));
                for r in 0..2 {
                    vals[2 * r][jj] = (z0[r].wrapping_add(z1[r]).wrapping_add(z2[r]) >> 2) as f32;
                    vals[2 * r + 1][jj] =
                        (z1[r].wrapping_sub(z2[r]).wrapping_sub(z3[r]) >> 2) as f32;
                }
            }
            for (o, v) in out.iter_mut().zip(&vals) {
                for jj in 0..QNR {
                    let v = v[jj] * affine[0][jj] + affine[1][jj];
                    o[jj] = level(v.max(floor));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::random_conv;
    use super::*;
    use autocaption_tensor::Rng;

    /// A convolution keeps the affines it made first; asked for other scales or for values
    /// it makes them afresh, and gives what a new one gives.
    #[test]
    fn a_convolution_asked_for_other_scales_gives_what_a_new_one_gives() {
        let mut rng = Rng::new(22);
        let conv = random_conv(&mut rng, 3, 8, 20, 1);
        let (n, h, w, cin) = (1, 6, 5, 8);
        let data: Vec<u8> = (0..n * h * w * cin)
            .map(|_| rng.uniform(0.0, 256.0) as u8)
            .collect();
        let maps = |scale: f32, zero: u8| QMaps {
            n,
            h,
            w,
            c: cin,
            data: data.clone(),
            quant: Quant { scale, zero },
        };
        let asks = [
            (maps(0.02, 0), Quant::over(0.0, 6.0)),
            (maps(0.03, 0), Quant::over(0.0, 6.0)),
            (maps(0.02, 7), Quant::over(0.0, 6.0)),
            (maps(0.02, 0), Quant::over(0.0, 4.0)),
        ];
        let kept = QConv::new(&conv);
        let first = kept.forward(&asks[0].0, asks[0].1);
        for (x, out) in &asks {
            let want = QConv::new(&conv).forward(x, *out);
            assert_eq!(kept.forward(x, *out).data, want.data);
            let want = QConv::new(&conv).forward_f32(x);
            assert_eq!(kept.forward_f32(x).data, want.data);
        }
        assert_eq!(kept.forward(&asks[0].0, asks[0].1).data, first.data);
        // The levels differ between the asks, so the test can fail.
        assert_ne!(kept.forward(&asks[1].0, asks[1].1).data, first.data);
    }

    #[test]
    fn a_convolution_is_its_dequantized_arithmetic_to_a_level() {
        let mut rng = Rng::new(21);
        // (kernel, stride, cin, cout, zero point): pointwise in place; strided; rows of
        // pixels read in place with padding, without and with a zero point (padding is that
        // level); kernel rows of a few channels, not whole quads, read in place with the
        // next bytes (the stem's, and a 3×3 whose last row inside ends the data).
        let shapes = [
            (1, 1, 16, 40, 0u8),
            (1, 2, 12, 17, 0),
            (3, 1, 8, 33, 0),
            (3, 2, 4, 9, 90),
            (7, 2, 3, 20, 117),
            (3, 1, 3, 12, 30),
            (5, 1, 2, 7, 0),
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
                                    let r = q.weight_row(ky, kx, c);
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
            let mut q = QConv::new(&conv);
            // Where this CPU would run it direct, as one without VNNI would.
            if q.winograd.is_none() {
                q.winograd = Some(QWinograd::new(&q));
            }
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
