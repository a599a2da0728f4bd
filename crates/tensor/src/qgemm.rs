//! Products of unsigned 8-bit inputs and signed 8- or 7-bit weights with exact `i32` sums:
//! the int8 image encoder's convolutions.
//!
//! Weights are stored per output column: symmetric, `|q| ≤` [`weight_levels`] with a scale of
//! the column's own, packed in blocks of [`QNR`] columns by quads of k (`[block][k/4][QNR][4]`,
//! the layout `vpmaddubsw` and `vpdpbusd` read). Inputs are rows of bytes (activations with a
//! per-tensor scale and zero point, read where they lie or from a patch buffer).
//!
//! Why the weights' width depends on the CPU: with VNNI, `vpdpbusd` adds four `u8 · i8`
//! products straight into `i32`, so full 8-bit weights (`|q| ≤ 127`) give exact sums. Without
//! it, `vpmaddubsw` first adds two products into a saturating `i16`; with 7-bit weights
//! (`|q| ≤ 63`) the pair is at most `2 · 255 · 63 = 32,130`, so it never saturates and the
//! sums are exact there too. Every sum is exact on every path, so on one CPU every thread
//! count gives the same bits; a CPU with VNNI rounds the weights twice as finely (its
//! features are closer to f32: README, "int8 encoder"), so its bits differ from another's.

use crate::aligned::Aligned;
use crate::panel::OutOfRange;

/// Columns in a block: one 512-bit vector, or two 256-bit ones, of `i32` sums.
pub const QNR: usize = 16;

/// Rows a kernel call carries at once: row counts that are a multiple waste nothing.
pub const QMR: usize = 6;

/// Blocks of columns [`QuantWeights::sums_blocks`] makes at once, at most: with VNNI 6 rows
/// of 4 blocks are 24 sums in registers, of the 32.
pub const QBLOCKS: usize = 4;

/// Largest magnitude of a 7-bit weight, which every kernel multiplies exactly.
const SEVEN_BIT_LEVELS: i32 = 63;

/// Largest magnitude of a quantized weight on this CPU: 127 where its kernel adds `u8 · i8`
/// products straight into `i32` (VNNI), else 63 (see the module notes).
pub fn weight_levels() -> i32 {
    if has_int8_dot() {
        127
    } else {
        SEVEN_BIT_LEVELS
    }
}

/// Bits of a quantized weight on this CPU, sign included: 8, or 7 (see [`weight_levels`]).
pub fn weight_bits() -> u32 {
    (weight_levels() + 1).ilog2() + 1
}

/// Whether this CPU's kernel has a four-way `u8 · i8` dot product into `i32` (VNNI): one
/// instruction per quad of k and block, where the others take two multiplies and an add.
pub fn has_int8_dot() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_vnni()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Bytes of one quad of k for a block: four weights for each of the [`QNR`] columns.
const QUAD: usize = 4 * QNR;

/// A `[k, n]` matrix as per-column symmetric integers in blocks of [`QNR`] columns.
#[derive(Debug, Clone)]
pub struct QuantWeights {
    /// Largest magnitude of an integer.
    levels: i32,
    k: usize,
    quads: usize,
    n: usize,
    blocks: usize,
    /// `[blocks][quads][QNR][4]`; zero past `k` and past `n`.
    q: Aligned<i8>,
    /// Each column's scale: weight ≈ `q · scale` (`n`).
    scale: Vec<f32>,
    /// Each column's `Σ_k q` (`n`): what an input zero point costs a sum.
    colsum: Vec<i32>,
}

impl QuantWeights {
    /// Quantizes `w` (`[k, n]`, row-major): each column rounded to `±`[`weight_levels`]
    /// steps of its largest magnitude. Fails on a weight that is not finite.
    pub fn quantize(w: &[f32], k: usize, n: usize) -> Result<Self, OutOfRange> {
        Self::quantize_to(w, k, n, weight_levels())
    }

    /// [`QuantWeights::quantize`] to `±levels` (1 to 127) on any CPU: beyond 63 without
    /// VNNI, the sums take the portable kernel (exact, and slow).
    pub fn quantize_to(w: &[f32], k: usize, n: usize, levels: i32) -> Result<Self, OutOfRange> {
        assert!((1..=127).contains(&levels), "{levels} levels");
        assert_eq!(w.len(), k * n, "matrix is not {k}×{n}");
        if let Some(i) = w.iter().position(|v| !v.is_finite()) {
            return Err(OutOfRange {
                row: i / n,
                column: i % n,
                value: w[i],
            });
        }
        let top = levels as f32;
        let scale: Vec<f32> = (0..n)
            .map(|j| {
                let m = (0..k).fold(0.0f32, |m, r| m.max(w[r * n + j].abs()));
                if m > 0.0 {
                    m / top
                } else {
                    1.0
                }
            })
            .collect();
        let (quads, blocks) = (k.div_ceil(4), n.div_ceil(QNR));
        let mut q = Aligned::zeroed(blocks * quads * QUAD);
        let mut colsum = vec![0i32; n];
        for (j, (&s, sum)) in scale.iter().zip(&mut colsum).enumerate() {
            let (b, jj) = (j / QNR, j % QNR);
            for r in 0..k {
                let v = (w[r * n + j] / s).round().clamp(-top, top) as i8;
                q[(b * quads + r / 4) * QUAD + 4 * jj + r % 4] = v;
                *sum += i32::from(v);
            }
        }
        Ok(Self {
            levels,
            k,
            quads,
            n,
            blocks,
            q,
            scale,
            colsum,
        })
    }

    /// Largest magnitude of an integer.
    pub fn levels(&self) -> i32 {
        self.levels
    }

    /// Rows of the matrix.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes an input row must hold: `k` rounded up to a multiple of 4 (the values past `k`
    /// meet zero weights).
    pub fn row_bytes(&self) -> usize {
        4 * self.quads
    }

    /// Columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Blocks of [`QNR`] columns.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// Each column's scale.
    pub fn scales(&self) -> &[f32] {
        &self.scale
    }

    /// Each column's sum of quantized weights.
    pub fn column_sums(&self) -> &[i32] {
        &self.colsum
    }

    /// The integer of row `r`, column `j`.
    pub fn level(&self, r: usize, j: usize) -> i8 {
        let (b, jj) = (j / QNR, j % QNR);
        self.q[(b * self.quads + r / 4) * QUAD + 4 * jj + r % 4]
    }

    /// The weight the integers stand for at row `r`, column `j`.
    pub fn dequantized(&self, r: usize, j: usize) -> f32 {
        let (b, jj) = (j / QNR, j % QNR);
        f32::from(self.q[(b * self.quads + r / 4) * QUAD + 4 * jj + r % 4]) * self.scale[j]
    }

    /// `acc[i][jj] = Σ_k rows[i][k] · q[k][b·QNR + jj]`, exactly, for block `b`. Each row
    /// must hold [`QuantWeights::row_bytes`] bytes.
    pub fn block_sums(&self, rows: &[&[u8]], b: usize, acc: &mut [[i32; QNR]]) {
        self.sums(&Rows::new(rows), b, acc);
    }

    /// [`QuantWeights::block_sums`] of rows grouped once for every block. Rows made of
    /// segments ([`Rows::segmented`]) split k evenly: each segment holds its share of the
    /// quads.
    pub fn sums(&self, rows: &Rows<'_, u8>, b: usize, acc: &mut [[i32; QNR]]) {
        assert!(b < self.blocks, "block {b} of {}", self.blocks);
        let (segments, quads) = (rows.segments, self.segment_quads(rows));
        let w = &self.q[b * self.quads * QUAD..(b + 1) * self.quads * QUAD];
        // SAFETY: every pointer reads a segment's `4·quads` bytes (asserted above), `w` holds
        // `segments·quads` quads, and the kernel's instruction sets were detected when it
        // was chosen.
        rows.by_groups(acc, |groups, sums, rows| unsafe {
            kernel_for(self.levels, rows)(groups, segments, w.as_ptr(), quads, sums)
        });
    }

    /// The quads of k in each segment of `rows`, which must split them evenly and be long
    /// enough to hold them.
    fn segment_quads(&self, rows: &Rows<'_, u8>) -> usize {
        let segments = rows.segments;
        assert!(
            self.quads.is_multiple_of(segments),
            "{} quads in {segments} segments",
            self.quads
        );
        let quads = self.quads / segments;
        assert!(rows.shortest >= 4 * quads, "rows shorter than k");
        quads
    }

    /// [`QuantWeights::sums`] for the `count` blocks from `b` at once (`count` from 1 to
    /// [`QBLOCKS`]), block `b + j`'s sums at `acc[j·n..(j + 1)·n]` for `n` rows: with
    /// VNNI one kernel makes them all, each row's bytes read once for every block (else
    /// one product a block).
    pub fn sums_blocks(&self, rows: &Rows<'_, u8>, b: usize, count: usize, acc: &mut [[i32; QNR]]) {
        let n = rows.len();
        assert!(
            (1..=QBLOCKS).contains(&count) && b + count <= self.blocks,
            "blocks {b}.. ({count}) of {}",
            self.blocks
        );
        assert_eq!(acc.len(), count * n, "a sum for every row of every block");
        #[cfg(target_arch = "x86_64")]
        if has_vnni() && count > 1 {
            let (segments, quads) = (rows.segments, self.segment_quads(rows));
            let w = &self.q[b * self.quads * QUAD..(b + count) * self.quads * QUAD];
            let (full, rest) = (n / QMR, n % QMR);
            let groups = &rows.groups;
            let out = acc.as_mut_ptr();
            // SAFETY: every pointer reads a segment's `4·quads` bytes (asserted above), `w`
            // holds the blocks' `segments·quads` quads each, `acc` holds `count` blocks of
            // `n` rows (asserted above), and VNNI is present.
            unsafe {
                let w = w.as_ptr();
                let kernel = |m: usize| match count {
                    2 => x86::blocks_kernel::<2>(m),
                    3 => x86::blocks_kernel::<3>(m),
                    _ => x86::blocks_kernel::<4>(m),
                };
                if full > 0 {
                    let groups = &groups[..full * segments];
                    kernel(QMR)(groups, segments, w, quads, out, n);
                }
                if rest > 0 {
                    let last = &groups[full * segments..(full + 1) * segments];
                    kernel(rest)(last, segments, w, quads, out.add(full * QMR), n);
                }
            }
            return;
        }
        for (j, acc) in acc.chunks_exact_mut(n.max(1)).enumerate().take(count) {
            self.sums(rows, b + j, acc);
        }
    }
}

/// Rows of a product's left side, in groups of [`QMR`] as the kernels take them: made once,
/// then multiplied by each block of columns. A row is one run of k values, or
/// [`Rows::segmented`] several runs wherever they lie (a convolution's input pixels, read in
/// place rather than copied into patch rows).
pub struct Rows<'a, T> {
    /// `[group][segment]`: each segment's pointer for the group's [`QMR`] rows. The spare
    /// slots of the last group repeat its first row (their sums are dropped).
    groups: Vec<[*const T; QMR]>,
    count: usize,
    /// Runs a row is made of.
    segments: usize,
    /// The length of the shortest run.
    shortest: usize,
    rows: std::marker::PhantomData<&'a [T]>,
}

impl<'a, T> Rows<'a, T> {
    /// Groups `rows`, each one run.
    pub fn new(rows: &[&'a [T]]) -> Self {
        Self::segmented(rows, 1)
    }

    /// Groups rows of `segments` runs each: `runs` holds row 0's runs in order, then row
    /// 1's, and so on.
    pub fn segmented(runs: &[&'a [T]], segments: usize) -> Self {
        assert!(
            segments > 0 && runs.len().is_multiple_of(segments),
            "{} runs are not rows of {segments}",
            runs.len()
        );
        Self::segmented_by(runs.len() / segments, segments, |i, row| {
            row.copy_from_slice(&runs[i * segments..(i + 1) * segments]);
        })
    }

    /// Groups `count` rows of `segments` runs each, `row(i, runs)` writing row `i`'s runs
    /// in order (called for each row in turn).
    pub fn segmented_by(
        count: usize,
        segments: usize,
        mut row: impl FnMut(usize, &mut [&'a [T]]),
    ) -> Self {
        // Every row's runs written by `row`: none read at a start in the (empty) data.
        Self::in_place(&[], 0, &vec![0; segments], count, |i, runs| {
            row(i, runs);
            None
        })
    }

    /// Groups `count` rows of `offsets.len()` runs of `run` values each, most of them read
    /// in `data` at the same offsets from a start of their own: `row(i, runs)` gives row
    /// `i`'s start, its runs then beginning at `start + offsets[s]`, or `None` once it has
    /// written the row's runs elsewhere into `runs` (called for each row in turn). The quick
    /// way to group a convolution's input pixels: one bound check a row, and no slice made.
    ///
    /// # Panics
    /// Where a row read at its start would run past `data`.
    pub fn in_place(
        data: &'a [T],
        run: usize,
        offsets: &[usize],
        count: usize,
        mut row: impl FnMut(usize, &mut [&'a [T]]) -> Option<usize>,
    ) -> Self {
        let segments = offsets.len();
        assert!(segments > 0, "rows of no runs");
        // How far past its start a row reads.
        let reach = offsets.iter().max().map_or(0, |o| o + run);
        let mut groups = vec![[std::ptr::null(); QMR]; count.div_ceil(QMR) * segments];
        let mut runs: Vec<&'a [T]> = vec![&[]; segments];
        let mut shortest = usize::MAX;
        for (g, group) in groups.chunks_exact_mut(segments).enumerate() {
            for slot in 0..QMR {
                let i = g * QMR + slot;
                if i >= count {
                    // The spare slots of a partial last group repeat its first row.
                    for pointers in group.iter_mut() {
                        pointers[slot] = pointers[0];
                    }
                    continue;
                }
                match row(i, &mut runs) {
                    Some(s) => {
                        assert!(
                            s.checked_add(reach).is_some_and(|end| end <= data.len()),
                            "row {i} reads {reach} values from {s}, past {}",
                            data.len()
                        );
                        let base = data[s..].as_ptr();
                        for (pointers, o) in group.iter_mut().zip(offsets) {
                            pointers[slot] = base.wrapping_add(*o);
                        }
                        shortest = shortest.min(run);
                    }
                    None => {
                        for (pointers, r) in group.iter_mut().zip(&runs) {
                            pointers[slot] = r.as_ptr();
                            shortest = shortest.min(r.len());
                        }
                    }
                }
            }
        }
        Self {
            groups,
            count,
            segments,
            shortest,
            rows: std::marker::PhantomData,
        }
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Runs `call` on the whole groups (their segments' pointers) with their rows of `acc`,
    /// then on the partial last group, whose sums beyond the rows are dropped; the last
    /// argument is how many of each group's rows are real.
    fn by_groups(
        &self,
        acc: &mut [[i32; QNR]],
        mut call: impl FnMut(&[[*const T; QMR]], &mut [[[i32; QNR]; QMR]], usize),
    ) {
        assert_eq!(self.count, acc.len(), "a sum for every row");
        let (full, rest) = acc.as_chunks_mut::<QMR>();
        let (n, s) = (full.len(), self.segments);
        if n > 0 {
            call(&self.groups[..n * s], full, QMR);
        }
        if !rest.is_empty() {
            let mut sums = [[[0i32; QNR]; QMR]];
            call(&self.groups[n * s..(n + 1) * s], &mut sums, rest.len());
            rest.copy_from_slice(&sums[0][..rest.len()]);
        }
    }
}

/// A `[k, n]` matrix of 16-bit integers in blocks of [`QNR`] columns, for products with
/// 16-bit inputs (`vpmaddwd`): the int8 encoder's Winograd convolutions, whose transformed
/// weights and inputs outgrow 8 bits. Sums wrap as `i32` arithmetic does (callers keep the
/// true results in range; wrapped intermediate sums then still give them exactly).
#[derive(Debug, Clone)]
pub struct PairWeights {
    pairs: usize,
    blocks: usize,
    /// `[blocks][pairs][QNR][2]`, zero past `k` and `n`.
    q: Aligned<u16>,
}

impl PairWeights {
    /// Packs `w` (`[k, n]`, row-major).
    pub fn pack(w: &[i16], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "matrix is not {k}×{n}");
        let (pairs, blocks) = (k.div_ceil(2), n.div_ceil(QNR));
        let mut q = Aligned::zeroed(blocks * pairs * 2 * QNR);
        for r in 0..k {
            for j in 0..n {
                let (b, jj) = (j / QNR, j % QNR);
                q[((b * pairs + r / 2) * QNR + jj) * 2 + r % 2] = w[r * n + j] as u16;
            }
        }
        Self { pairs, blocks, q }
    }

    /// Pairs of rows: an input row holds twice this many 16-bit values (the last zero
    /// where `k` is odd).
    pub fn pairs(&self) -> usize {
        self.pairs
    }

    /// Blocks of [`QNR`] columns.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// `acc[i][jj] = Σ_k rows[i][k] · w[k][b·QNR + jj]` (wrapping), for block `b`.
    pub fn block_sums(&self, rows: &[&[i16]], b: usize, acc: &mut [[i32; QNR]]) {
        self.sums(&Rows::new(rows), b, acc);
    }

    /// [`PairWeights::block_sums`] of rows grouped once for every block.
    pub fn sums(&self, rows: &Rows<'_, i16>, b: usize, acc: &mut [[i32; QNR]]) {
        assert!(b < self.blocks, "block {b} of {}", self.blocks);
        assert_eq!(rows.segments, 1, "pair rows are one run each");
        assert!(rows.shortest >= 2 * self.pairs, "rows shorter than k");
        let w = &self.q[b * self.pairs * 2 * QNR..(b + 1) * self.pairs * 2 * QNR];
        let kernel = pair_kernel();
        // SAFETY: every pointer reads `2·pairs` values (asserted above), `w` holds `pairs`
        // pair rows, and the kernel's instruction sets were detected when it was chosen.
        rows.by_groups(acc, |groups, sums, _| unsafe {
            kernel(groups, w.as_ptr(), self.pairs, sums)
        });
    }
}

/// A kernel of [`PairWeights`]: for each group, the sums of its [`QMR`] rows (pointers to
/// `2·pairs` values) against one block.
type PairKernel = unsafe fn(&[[*const i16; QMR]], *const u16, usize, &mut [[[i32; QNR]; QMR]]);

fn pair_kernel() -> PairKernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            return x86::pair_sums_avx2;
        }
    }
    pair_sums_portable
}

/// The pair kernel without vector instructions: the same integers.
///
/// # Safety
/// Each pointer must read `2·pairs` values; `w` must hold `pairs` pair rows.
unsafe fn pair_sums_portable(
    groups: &[[*const i16; QMR]],
    w: *const u16,
    pairs: usize,
    acc: &mut [[[i32; QNR]; QMR]],
) {
    // SAFETY: the caller's promise.
    let w = unsafe { std::slice::from_raw_parts(w, pairs * 2 * QNR) };
    for (a, acc) in groups.iter().zip(acc.iter_mut()) {
        for (p, acc) in a.iter().zip(acc.iter_mut()) {
            // SAFETY: the caller's promise.
            let x = unsafe { std::slice::from_raw_parts(*p, 2 * pairs) };
            *acc = [0; QNR];
            for (xt, wt) in x.chunks_exact(2).zip(w.chunks_exact(2 * QNR)) {
                let (lo, hi) = (i32::from(xt[0]), i32::from(xt[1]));
                for (s, wj) in acc.iter_mut().zip(wt.chunks_exact(2)) {
                    let t = lo * i32::from(wj[0] as i16) + hi * i32::from(wj[1] as i16);
                    *s = s.wrapping_add(t);
                }
            }
        }
    }
}

/// A kernel: for each group (its `segments` sets of [`QMR`] pointers, each to `4·quads`
/// bytes: the group's rows, segment by segment), the sums of its rows against one block
/// (`segments·quads` quads).
type Kernel = unsafe fn(&[[*const u8; QMR]], usize, *const i8, usize, &mut [[[i32; QNR]; QMR]]);

/// A kernel of several blocks at once (`x86::blocks_vnni`).
#[cfg(target_arch = "x86_64")]
type BlocksKernel = unsafe fn(&[[*const u8; QMR]], usize, *const i8, usize, *mut [i32; QNR], usize);

/// Which instruction set the kernels use here, for reports.
pub fn int8_kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if has_vnni() {
            return "AVX-512 VNNI";
        }
        if crate::has_avx512() {
            return "AVX-512BW";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "AVX2";
        }
    }
    "portable"
}

#[cfg(target_arch = "x86_64")]
fn has_vnni() -> bool {
    crate::has_avx512() && std::arch::is_x86_feature_detected!("avx512vnni")
}

/// The fastest kernel that multiplies weights of `±levels` exactly.
fn kernel(levels: i32) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if has_vnni() {
            return x86::sums_vnni::<QMR>;
        }
        if levels > SEVEN_BIT_LEVELS {
            return sums_portable;
        }
        if crate::has_avx512() {
            return x86::sums_avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return x86::sums_avx2;
        }
    }
    sums_portable
}

/// The kernel for groups of which the first `rows` rows are real: with VNNI one that makes
/// only those rows' sums (a partial last group costs its rows, not a whole group's: at
/// batch 1 ResNet-50's last stage has 49 rows, 8 groups and 1 row), else [`kernel`].
fn kernel_for(levels: i32, rows: usize) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if rows < QMR && has_vnni() {
            return match rows {
                1 => x86::sums_vnni::<1>,
                2 => x86::sums_vnni::<2>,
                3 => x86::sums_vnni::<3>,
                4 => x86::sums_vnni::<4>,
                _ => x86::sums_vnni::<5>,
            };
        }
    }
    let _ = rows;
    kernel(levels)
}

/// The kernel without vector instructions: the same integers.
///
/// # Safety
/// `groups` must hold `segments` sets for each group of `acc`; each pointer must read
/// `4·quads` bytes; `w` must hold `segments·quads` quads.
unsafe fn sums_portable(
    groups: &[[*const u8; QMR]],
    segments: usize,
    w: *const i8,
    quads: usize,
    acc: &mut [[[i32; QNR]; QMR]],
) {
    // SAFETY: the caller's promise.
    let w = unsafe { std::slice::from_raw_parts(w, segments * quads * QUAD) };
    for (g, acc) in groups.chunks_exact(segments).zip(acc.iter_mut()) {
        *acc = [[0; QNR]; QMR];
        for (a, w) in g.iter().zip(w.chunks_exact(quads * QUAD)) {
            for (p, acc) in a.iter().zip(acc.iter_mut()) {
                // SAFETY: the caller's promise.
                let x = unsafe { std::slice::from_raw_parts(*p, 4 * quads) };
                for (xq, wq) in x.chunks_exact(4).zip(w.chunks_exact(QUAD)) {
                    for (s, wj) in acc.iter_mut().zip(wq.chunks_exact(4)) {
                        *s += xq
                            .iter()
                            .zip(wj)
                            .map(|(&x, &w)| i32::from(x) * i32::from(w))
                            .sum::<i32>();
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlocksKernel, QMR, QNR, QUAD};

    /// Four input bytes of row `p` at quad `t`, in every 32-bit lane.
    ///
    /// # Safety
    /// `p` must read `4·(t + 1)` bytes.
    #[inline(always)]
    unsafe fn quad256(p: *const u8, t: usize) -> __m256i {
        _mm256_set1_epi32(p.add(4 * t).cast::<i32>().read_unaligned())
    }

    /// In 256-bit vectors: `vpmaddubsw` (pairs into i16, never saturating for 7-bit
    /// weights, the only ones it is given), then `vpmaddwd` by ones (pairs into i32), then added.
    ///
    /// # Safety
    /// AVX2 must be present; as [`super::sums_portable`].
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn sums_avx2(
        groups: &[[*const u8; QMR]],
        segments: usize,
        w: *const i8,
        quads: usize,
        acc: &mut [[[i32; QNR]; QMR]],
    ) {
        let ones = _mm256_set1_epi16(1);
        for (g, acc) in groups.chunks_exact(segments).zip(acc.iter_mut()) {
            let mut c = [[_mm256_setzero_si256(); 2]; QMR];
            for (s, a) in g.iter().enumerate() {
                let w = w.add(s * quads * QUAD);
                for t in 0..quads {
                    let p = w.add(t * QUAD);
                    let w0 = _mm256_loadu_si256(p.cast());
                    let w1 = _mm256_loadu_si256(p.add(32).cast());
                    for (r, c) in c.iter_mut().enumerate() {
                        let x = quad256(a[r], t);
                        let s0 = _mm256_madd_epi16(_mm256_maddubs_epi16(x, w0), ones);
                        let s1 = _mm256_madd_epi16(_mm256_maddubs_epi16(x, w1), ones);
                        c[0] = _mm256_add_epi32(c[0], s0);
                        c[1] = _mm256_add_epi32(c[1], s1);
                    }
                }
            }
            for (c, acc) in c.iter().zip(acc.iter_mut()) {
                let o = acc.as_mut_ptr().cast::<__m256i>();
                _mm256_storeu_si256(o, c[0]);
                _mm256_storeu_si256(o.add(1), c[1]);
            }
        }
    }

    /// [`sums_avx2`] in 512-bit vectors: one vector holds a block's quad.
    ///
    /// # Safety
    /// AVX-512F and BW must be present; as [`super::sums_portable`].
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn sums_avx512(
        groups: &[[*const u8; QMR]],
        segments: usize,
        w: *const i8,
        quads: usize,
        acc: &mut [[[i32; QNR]; QMR]],
    ) {
        let ones = _mm512_set1_epi16(1);
        for (g, acc) in groups.chunks_exact(segments).zip(acc.iter_mut()) {
            let mut c = [_mm512_setzero_si512(); QMR];
            for (s, a) in g.iter().enumerate() {
                let w = w.add(s * quads * QUAD);
                for t in 0..quads {
                    let wq = _mm512_loadu_si512(w.add(t * QUAD).cast());
                    for (r, c) in c.iter_mut().enumerate() {
                        let x = _mm512_set1_epi32(a[r].add(4 * t).cast::<i32>().read_unaligned());
                        let s = _mm512_madd_epi16(_mm512_maddubs_epi16(x, wq), ones);
                        *c = _mm512_add_epi32(*c, s);
                    }
                }
            }
            for (c, acc) in c.iter().zip(acc.iter_mut()) {
                _mm512_storeu_si512(acc.as_mut_ptr().cast(), *c);
            }
        }
    }

    /// [`super::PairWeights`] in 256-bit vectors: `vpmaddwd` of a broadcast pair of inputs
    /// with eight columns' pairs of weights.
    ///
    /// # Safety
    /// AVX2 must be present; as [`super::pair_sums_portable`].
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pair_sums_avx2(
        groups: &[[*const i16; QMR]],
        w: *const u16,
        pairs: usize,
        acc: &mut [[[i32; QNR]; QMR]],
    ) {
        for (a, acc) in groups.iter().zip(acc.iter_mut()) {
            let mut c = [[_mm256_setzero_si256(); 2]; QMR];
            for t in 0..pairs {
                let p = w.add(t * 2 * QNR);
                let w0 = _mm256_loadu_si256(p.cast());
                let w1 = _mm256_loadu_si256(p.add(16).cast());
                for (r, c) in c.iter_mut().enumerate() {
                    // The pair (2t, 2t + 1), the first in the low half.
                    let x = _mm256_set1_epi32(a[r].add(2 * t).cast::<i32>().read_unaligned());
                    c[0] = _mm256_add_epi32(c[0], _mm256_madd_epi16(x, w0));
                    c[1] = _mm256_add_epi32(c[1], _mm256_madd_epi16(x, w1));
                }
            }
            for (c, acc) in c.iter().zip(acc.iter_mut()) {
                let o = acc.as_mut_ptr().cast::<__m256i>();
                _mm256_storeu_si256(o, c[0]);
                _mm256_storeu_si256(o.add(1), c[1]);
            }
        }
    }

    /// With VNNI: `vpdpbusd` adds the four products of a quad into i32 at once. Only the
    /// first `M` rows of each group are summed (and their sums written).
    ///
    /// # Safety
    /// AVX-512F, BW and VNNI must be present; as [`super::sums_portable`], for the first
    /// `M ≤ QMR` pointers of each group.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn sums_vnni<const M: usize>(
        groups: &[[*const u8; QMR]],
        segments: usize,
        w: *const i8,
        quads: usize,
        acc: &mut [[[i32; QNR]; QMR]],
    ) {
        for (g, acc) in groups.chunks_exact(segments).zip(acc.iter_mut()) {
            let mut c = [_mm512_setzero_si512(); M];
            for (s, a) in g.iter().enumerate() {
                let w = w.add(s * quads * QUAD);
                for t in 0..quads {
                    let wq = _mm512_loadu_si512(w.add(t * QUAD).cast());
                    for (r, c) in c.iter_mut().enumerate() {
                        let x = _mm512_set1_epi32(a[r].add(4 * t).cast::<i32>().read_unaligned());
                        *c = _mm512_dpbusd_epi32(*c, x, wq);
                    }
                }
            }
            for (c, acc) in c.iter().zip(acc.iter_mut()) {
                _mm512_storeu_si512(acc.as_mut_ptr().cast(), *c);
            }
        }
    }

    /// [`blocks_vnni`] for `B` blocks, summing the first `rows` rows of each group.
    pub(super) fn blocks_kernel<const B: usize>(rows: usize) -> BlocksKernel {
        match rows {
            1 => blocks_vnni::<1, B>,
            2 => blocks_vnni::<2, B>,
            3 => blocks_vnni::<3, B>,
            4 => blocks_vnni::<4, B>,
            5 => blocks_vnni::<5, B>,
            _ => blocks_vnni::<QMR, B>,
        }
    }

    /// [`sums_vnni`] for `B` adjacent blocks at once (`w`: the first's quads, each next
    /// one's right after), the first `M` rows of each group: each broadcast of 4 input
    /// bytes feeds every block's sums, `M·B` sums in registers. Block `j`'s sums of group
    /// `g`'s rows go to `out[j·stride + g·QMR..][..M]`.
    ///
    /// # Safety
    /// As [`sums_vnni`], with `w` holding `B` blocks' `segments·quads` quads and `out`
    /// `B` runs of `stride` rows, each holding every group's rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn blocks_vnni<const M: usize, const B: usize>(
        groups: &[[*const u8; QMR]],
        segments: usize,
        w: *const i8,
        quads: usize,
        out: *mut [i32; QNR],
        stride: usize,
    ) {
        let block = segments * quads * QUAD;
        for (g, a) in groups.chunks_exact(segments).enumerate() {
            let mut c = [[_mm512_setzero_si512(); M]; B];
            for (s, a) in a.iter().enumerate() {
                let w = w.add(s * quads * QUAD);
                for t in 0..quads {
                    let wq: [__m512i; B] = std::array::from_fn(|j| {
                        _mm512_loadu_si512(w.add(j * block + t * QUAD).cast())
                    });
                    for r in 0..M {
                        let x = _mm512_set1_epi32(a[r].add(4 * t).cast::<i32>().read_unaligned());
                        for j in 0..B {
                            c[j][r] = _mm512_dpbusd_epi32(c[j][r], x, wq[j]);
                        }
                    }
                }
            }
            for (j, c) in c.iter().enumerate() {
                for (r, c) in c.iter().enumerate() {
                    _mm512_storeu_si512(out.add(j * stride + g * QMR + r).cast(), *c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
        (0..n).map(|_| rng.uniform(0.0, 256.0) as u8).collect()
    }

    #[test]
    #[allow(clippy::needless_range_loop)] // the reference sums read as their formula
    fn weights_round_to_half_a_step_and_sums_are_exact() {
        let mut rng = Rng::new(11);
        // k not a multiple of 4, n not a multiple of the block; columns of different sizes.
        let (k, n) = (37, 21);
        let w: Vec<f32> = (0..k * n)
            .map(|i| rng.uniform(-1.0, 1.0) * (1 + i % n) as f32)
            .collect();
        assert!(matches!(
            (weight_levels(), weight_bits()),
            (127, 8) | (63, 7)
        ));
        // 7 and 8 bits: the kernel chosen for each must be exact with every input 255.
        for levels in [63, 127] {
            let m = QuantWeights::quantize_to(&w, k, n, levels).unwrap();
            exact_sums(&m, &w, &mut rng);
        }
    }

    #[allow(clippy::needless_range_loop)] // the reference sums read as their formula
    fn exact_sums(m: &QuantWeights, w: &[f32], rng: &mut Rng) {
        let (k, n) = (m.k(), m.n());
        assert_eq!((m.row_bytes(), m.blocks()), (40, 2));
        for r in 0..k {
            for j in 0..n {
                let step = m.scales()[j];
                assert!((m.dequantized(r, j) - w[r * n + j]).abs() <= 0.5 * step * 1.0001);
            }
        }
        // Extreme inputs (all 255 against weights up to ±levels) and random ones; 1 to 9 rows.
        for rows in 1..=9 {
            let mut x: Vec<Vec<u8>> = (0..rows)
                .map(|_| random_bytes(rng, m.row_bytes()))
                .collect();
            x[0].fill(255);
            let refs: Vec<&[u8]> = x.iter().map(Vec::as_slice).collect();
            for b in 0..m.blocks() {
                let mut got = vec![[0i32; QNR]; rows];
                m.block_sums(&refs, b, &mut got);
                let mut want = vec![[0i32; QNR]; rows];
                for (i, row) in x.iter().enumerate() {
                    for jj in 0..QNR {
                        let j = b * QNR + jj;
                        want[i][jj] = (0..k)
                            .filter(|_| j < n)
                            .map(|r| {
                                let q = (m.dequantized(r, j) / m.scales()[j]).round() as i32;
                                i32::from(row[r]) * q
                            })
                            .sum();
                    }
                }
                assert_eq!(got, want, "±{} weights, {rows} rows, block {b}", m.levels());
            }
        }
        let sums: Vec<i32> = (0..n)
            .map(|j| {
                (0..k)
                    .map(|r| (m.dequantized(r, j) / m.scales()[j]).round() as i32)
                    .sum()
            })
            .collect();
        assert_eq!(m.column_sums(), &sums[..]);
    }

    /// Every kernel this CPU can run that multiplies weights of `±levels` exactly, by name.
    fn exact_kernels(levels: i32) -> Vec<(&'static str, Kernel)> {
        let mut kernels: Vec<(&'static str, Kernel)> = vec![("portable", sums_portable)];
        #[cfg(target_arch = "x86_64")]
        {
            if has_vnni() {
                kernels.push(("AVX-512 VNNI", x86::sums_vnni::<QMR>));
            }
            if levels <= SEVEN_BIT_LEVELS && crate::has_avx512() {
                kernels.push(("AVX-512BW", x86::sums_avx512));
            }
            if levels <= SEVEN_BIT_LEVELS && std::arch::is_x86_feature_detected!("avx2") {
                kernels.push(("AVX2", x86::sums_avx2));
            }
        }
        kernels
    }

    /// Every kernel this CPU has gives the portable integers, for 7-bit weights and for the
    /// weights of this CPU, with the largest products.
    #[test]
    fn every_vector_kernel_gives_the_portable_integers() {
        let mut rng = Rng::new(12);
        let (k, n) = (1155, 32);
        let w: Vec<f32> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        for levels in [SEVEN_BIT_LEVELS, weight_levels()] {
            let mut m = QuantWeights::quantize_to(&w, k, n, levels).unwrap();
            // The largest products: every weight at its largest magnitude, every input 255.
            let top = levels as i8;
            for (i, q) in m.q.iter_mut().enumerate().take(QUAD * 8) {
                *q = if i % 3 == 0 { -top } else { top };
            }
            let x: Vec<Vec<u8>> = (0..QMR)
                .map(|i| {
                    let mut r = random_bytes(&mut rng, m.row_bytes());
                    if i == 1 {
                        r.fill(255);
                    }
                    r
                })
                .collect();
            // Two groups, the second the rows in reverse; sums start as garbage.
            let groups: [[*const u8; QMR]; 2] = [
                std::array::from_fn(|i| x[i].as_ptr()),
                std::array::from_fn(|i| x[QMR - 1 - i].as_ptr()),
            ];
            for b in 0..m.blocks() {
                let w = m.q[b * m.quads * QUAD..].as_ptr();
                let mut slow = [[[-3i32; QNR]; QMR]; 2];
                // SAFETY: rows of `row_bytes` bytes; block `b` in range.
                unsafe { sums_portable(&groups, 1, w, m.quads, &mut slow) };
                for (name, kernel) in exact_kernels(levels) {
                    let mut fast = [[[7i32; QNR]; QMR]; 2];
                    // SAFETY: as above; the kernel's instruction sets were detected.
                    unsafe { kernel(&groups, 1, w, m.quads, &mut fast) };
                    assert_eq!(fast, slow, "{name} kernel, ±{levels}, block {b}");
                }
            }
        }
    }

    /// Sums of a run of blocks at once are each block's sums: every run of 1 to
    /// [`QBLOCKS`] blocks of 5 (the last partial), on segmented rows, 1 to 13 rows (so
    /// whole groups and partial ones of every size), 7- and 8-bit weights.
    #[test]
    fn sums_of_blocks_at_once_are_each_blocks_sums() {
        let mut rng = Rng::new(16);
        let (k, n) = (24, 70);
        let w: Vec<f32> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let pool = random_bytes(&mut rng, 13 * 2 * 12);
        for levels in [SEVEN_BIT_LEVELS, weight_levels()] {
            let m = QuantWeights::quantize_to(&w, k, n, levels).unwrap();
            assert_eq!(m.blocks(), 5);
            for rows in 1..=13 {
                let runs: Vec<&[u8]> = (0..rows * 2)
                    .map(|i| &pool[(i * 5 % 26) * 12..][..12])
                    .collect();
                let segmented = Rows::segmented(&runs, 2);
                for b in 0..5 {
                    for count in 1..=QBLOCKS.min(5 - b) {
                        let mut got = vec![[9; QNR]; count * rows];
                        m.sums_blocks(&segmented, b, count, &mut got);
                        for (j, got) in got.chunks_exact(rows).enumerate() {
                            let mut want = vec![[8; QNR]; rows];
                            m.sums(&segmented, b + j, &mut want);
                            assert_eq!(
                                got,
                                want,
                                "±{levels}, {rows} rows, block {} of {b}..+{count}",
                                b + j
                            );
                        }
                    }
                }
            }
        }
    }

    /// Rows grouped in place, some of them with runs elsewhere, are the rows grouped from
    /// their runs: the same pointers in every group (the spare slots of a partial last
    /// group too), and the same shortest run. 1 to 13 rows of 3 runs.
    #[test]
    fn rows_grouped_in_place_are_the_rows_of_their_runs() {
        let mut rng = Rng::new(15);
        let (run, offsets) = (20, [0, 50, 100]);
        let data = random_bytes(&mut rng, 400);
        let elsewhere = random_bytes(&mut rng, 24);
        for rows in 1..=13 {
            // Every third row elsewhere, the others at starts of their own.
            let start = |i: usize| (i % 3 != 1).then_some(i * 17 % 280);
            let runs: Vec<&[u8]> = (0..rows)
                .flat_map(|i| {
                    offsets.map(|o| match start(i) {
                        Some(s) => &data[s + o..s + o + run],
                        None => &elsewhere[o % 4..],
                    })
                })
                .collect();
            let want = Rows::segmented(&runs, 3);
            let got = Rows::in_place(&data, run, &offsets, rows, |i, r| {
                if start(i).is_none() {
                    r.copy_from_slice(&runs[3 * i..3 * i + 3]);
                }
                start(i)
            });
            assert_eq!(got.len(), rows);
            assert_eq!(got.groups, want.groups, "{rows} rows");
            // A kernel of whole groups reads every slot: the spare ones are the first row's.
            let last = &got.groups[got.groups.len() - 3..];
            for (pointers, first) in last.iter().zip(&runs[3 * ((rows - 1) / QMR * QMR)..]) {
                assert!(pointers[(rows - 1) % QMR + 1..]
                    .iter()
                    .all(|p| *p == first.as_ptr()));
            }
            assert_eq!(
                (got.segments, got.shortest),
                (3, want.shortest),
                "{rows} rows"
            );
        }
    }

    #[test]
    #[should_panic(expected = "row 1 reads 120 values from 281, past 400")]
    fn a_row_in_place_past_its_data_is_refused() {
        let data = [0u8; 400];
        Rows::in_place(&data, 20, &[0, 50, 100], 2, |i, _| Some(281 * i));
    }

    /// Rows of segments read wherever they lie give the sums of the rows they make, on
    /// every kernel this CPU has (3 segments of 5 quads; 1 to 13 rows, so whole groups and
    /// partial ones of every size, which VNNI sums with a kernel of their own), and those
    /// are the exact sums.
    #[test]
    fn segmented_rows_give_the_sums_of_their_rows() {
        let mut rng = Rng::new(14);
        let (k, n) = (60, 40);
        let w: Vec<f32> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        // Runs of 20 bytes and 3 spare, scattered through one buffer.
        let pool = random_bytes(&mut rng, 13 * 3 * 23);
        for (levels, rows) in [SEVEN_BIT_LEVELS, weight_levels()]
            .into_iter()
            .flat_map(|l| [1, 2, 3, 4, 5, 6, 11, 13].map(|rows| (l, rows)))
        {
            let m = QuantWeights::quantize_to(&w, k, n, levels).unwrap();
            let runs: Vec<&[u8]> = (0..rows * 3)
                .map(|i| &pool[(i * 7 % 39) * 23..][..20])
                .collect();
            let whole: Vec<Vec<u8>> = runs.chunks(3).map(|r| r.concat()).collect();
            let whole: Vec<&[u8]> = whole.iter().map(Vec::as_slice).collect();
            let segmented = Rows::segmented(&runs, 3);
            assert_eq!(segmented.len(), rows);
            for b in 0..m.blocks() {
                let (mut got, mut want) = (vec![[1; QNR]; rows], vec![[2; QNR]; rows]);
                m.sums(&segmented, b, &mut got);
                m.block_sums(&whole, b, &mut want);
                assert_eq!(got, want, "{rows} rows, block {b}");
                let exact: Vec<[i32; QNR]> = whole
                    .iter()
                    .map(|x| {
                        std::array::from_fn(|jj| {
                            let j = (b * QNR + jj).min(n - 1);
                            let dot = (0..k).map(|r| i32::from(x[r]) * i32::from(m.level(r, j)));
                            if b * QNR + jj < n {
                                dot.sum()
                            } else {
                                0
                            }
                        })
                    })
                    .collect();
                assert_eq!(want, exact, "{rows} rows, block {b}: the exact sums");
                let wb = m.q[b * m.quads * QUAD..].as_ptr();
                let full = rows / QMR;
                for (name, kernel) in exact_kernels(m.levels()).into_iter().filter(|_| full > 0) {
                    let mut sums = vec![[[3; QNR]; QMR]; full];
                    // SAFETY: runs of 20 bytes (5 quads); block `b` in range; the kernel's
                    // instruction sets were detected.
                    unsafe { kernel(&segmented.groups[..3 * full], 3, wb, 5, &mut sums) };
                    let sums: Vec<[i32; QNR]> = sums.concat();
                    assert_eq!(
                        sums,
                        want[..full * QMR],
                        "{name}, ±{levels}, {rows} rows, block {b}"
                    );
                }
            }
        }
    }

    #[test]
    #[allow(clippy::needless_range_loop)] // the reference sums read as their formula
    fn pair_products_are_exact_on_every_kernel() {
        let mut rng = Rng::new(13);
        let (k, n) = (37, 21);
        let w: Vec<i16> = (0..k * n)
            .map(|_| rng.uniform(-600.0, 600.0) as i16)
            .collect();
        let m = PairWeights::pack(&w, k, n);
        for rows in [1, 6, 7] {
            let x: Vec<Vec<i16>> = (0..rows)
                .map(|_| {
                    (0..k)
                        .map(|_| rng.uniform(-1100.0, 1100.0) as i16)
                        .collect()
                })
                .collect();
            // Rows padded to whole pairs.
            let padded: Vec<Vec<i16>> = x
                .iter()
                .map(|r| {
                    (0..2 * m.pairs())
                        .map(|i| r.get(i).copied().unwrap_or(0))
                        .collect()
                })
                .collect();
            let refs: Vec<&[i16]> = padded.iter().map(Vec::as_slice).collect();
            for b in 0..m.blocks() {
                let mut got = vec![[0i32; QNR]; rows];
                m.block_sums(&refs, b, &mut got);
                for (i, row) in x.iter().enumerate() {
                    for jj in 0..QNR {
                        let j = b * QNR + jj;
                        let want: i32 = (0..k)
                            .filter(|_| j < n)
                            .map(|r| i32::from(row[r]) * i32::from(w[r * n + j]))
                            .sum();
                        assert_eq!(got[i][jj], want, "{rows} rows, block {b}");
                    }
                }
                let groups: [[*const i16; QMR]; 2] = [
                    std::array::from_fn(|i| refs[i % rows].as_ptr()),
                    std::array::from_fn(|i| refs[(i + 1) % rows].as_ptr()),
                ];
                let (mut slow, mut fast) = ([[[5i32; QNR]; QMR]; 2], [[[-9i32; QNR]; QMR]; 2]);
                let wb = m.q[b * m.pairs * 2 * QNR..].as_ptr();
                // SAFETY: rows of `2·pairs` values; block `b` in range; the kernel was detected.
                unsafe {
                    pair_sums_portable(&groups, wb, m.pairs, &mut slow);
                    pair_kernel()(&groups, wb, m.pairs, &mut fast);
                }
                assert_eq!(slow, fast);
            }
        }
    }

    #[test]
    fn a_weight_that_is_not_finite_is_refused() {
        let mut w = vec![0.5f32; 12];
        w[7] = f32::INFINITY;
        let e = QuantWeights::quantize(&w, 3, 4).unwrap_err();
        assert_eq!((e.row, e.column), (1, 3));
    }
}
