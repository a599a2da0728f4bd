//! Products of a few rows with a fixed matrix, for decoding: at batch 1 a caption step
//! multiplies one vector by every weight matrix of the model, so the time is the time to
//! stream the weights through the cores. The matrix is packed once into column panels of
//! [`PANEL`] columns stored one after the other, so each panel is one sequential read, in f32
//! or in half precision ([`WeightFormat::F16`], half the bytes), or as equalised int8
//! ([`WeightFormat::Int8`], a quarter, multiplied in integers: see `qpanel.rs`), and the
//! panels are split between the threads.
//!
//! Every output value is `init + Σ_k a[k]·w[k]`, summed in k order on one thread whatever the
//! number of rows or threads, so a row's result does not depend on the batch it is in.

use std::sync::Mutex;

use rayon::prelude::*;

use crate::aligned::Aligned;
use crate::qpanel::Int8Panels;
use crate::{from_f16, team, to_f16};

/// Columns in a panel: four AVX-512 vectors of f32.
pub const PANEL: usize = 64;

/// Rows multiplied together against one pass over a panel (24 accumulators).
const MR: usize = 6;

/// Panel rows in a slice: 32 KB of f32, inside the L1 cache.
const KC: usize = 128;

/// How a packed matrix stores its values. The products are f32 for f32 and f16; int8
/// matrices ([`PanelMatrix::mul`] only) round each input row to 16-bit integers and sum in
/// i32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    /// The values as they are.
    #[default]
    F32,
    /// Rounded to IEEE half precision (relative error ≤ 2⁻¹¹): half the bytes to read.
    F16,
    /// Equalised per-column symmetric int8 (each input row divided by its largest weight,
    /// then each column rounded to ±127 steps): a quarter of the bytes.
    Int8,
}

impl std::str::FromStr for WeightFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "int8" => Ok(Self::Int8),
            other => Err(format!(
                "unknown weight format {other:?} (expected f32, f16 or int8)"
            )),
        }
    }
}

impl std::fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Int8 => "int8",
        })
    }
}

/// A value too large for half precision (or, for int8, not finite), found while packing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutOfRange {
    /// Row of the source matrix.
    pub row: usize,
    /// Column of the source matrix.
    pub column: usize,
    /// The value.
    pub value: f32,
}

/// The packed values, each panel row (256 or 128 bytes) on cache lines of its own: the
/// kernel's loads never straddle two lines.
#[derive(Debug, Clone)]
enum Data {
    F32(Aligned<f32>),
    F16(Aligned<u16>),
    Int8(Int8Panels),
}

/// A `[k, n]` matrix packed into column panels for [`PanelMatrix::mul`].
#[derive(Debug, Clone)]
pub struct PanelMatrix {
    k: usize,
    /// Columns a product writes: `n` for [`PanelMatrix::pack`], every packed column for
    /// [`PanelMatrix::pack_columns`].
    width: usize,
    panels: usize,
    data: Data,
}

impl PanelMatrix {
    /// Packs `w` (`[k, n]`, row-major) so that column `j` of the packed matrix is column
    /// `columns[j]` of `w`, or zero for `None`; `columns.len()` must be a multiple of
    /// [`PANEL`]. Lets a caller reorder columns (an LSTM puts the four gates of a unit in one
    /// panel) and pad the last panel.
    pub fn pack_columns(
        w: &[f32],
        k: usize,
        n: usize,
        columns: &[Option<usize>],
        format: WeightFormat,
    ) -> Result<Self, OutOfRange> {
        assert_eq!(w.len(), k * n, "matrix is not {k}×{n}");
        assert_eq!(columns.len() % PANEL, 0, "columns must fill whole panels");
        assert!(
            columns.iter().flatten().all(|&c| c < n),
            "column index outside the matrix"
        );
        let panels = columns.len() / PANEL;
        if format == WeightFormat::Int8 {
            return Ok(Self {
                k,
                width: columns.len(),
                panels,
                data: Data::Int8(Int8Panels::pack(w, k, n, columns)?),
            });
        }
        let value =
            |p: usize, r: usize, j: usize| columns[p * PANEL + j].map(|c| (c, w[r * n + c]));
        let len = panels * k * PANEL;
        let mut data = match format {
            WeightFormat::F32 => Data::F32(Aligned::zeroed(len)),
            WeightFormat::F16 => Data::F16(Aligned::zeroed(len)),
            WeightFormat::Int8 => unreachable!("packed above"),
        };
        for p in 0..panels {
            for r in 0..k {
                for j in 0..PANEL {
                    let at = (p * k + r) * PANEL + j;
                    match (&mut data, value(p, r, j)) {
                        (_, None) => {} // stays zero
                        (Data::F32(d), Some((_, v))) => d[at] = v,
                        (Data::Int8(_), Some(_)) => unreachable!("packed above"),
                        (Data::F16(d), Some((column, v))) => {
                            d[at] = to_f16(v).ok_or(OutOfRange {
                                row: r,
                                column,
                                value: v,
                            })?
                        }
                    }
                }
            }
        }
        Ok(Self {
            k,
            width: columns.len(),
            panels,
            data,
        })
    }

    /// Packs `w` (`[k, n]`) with its columns in order, the last panel padded with zeros.
    pub fn pack(w: &[f32], k: usize, n: usize, format: WeightFormat) -> Result<Self, OutOfRange> {
        let columns: Vec<Option<usize>> = (0..n.div_ceil(PANEL) * PANEL)
            .map(|j| (j < n).then_some(j))
            .collect();
        let mut packed = Self::pack_columns(w, k, n, &columns, format)?;
        packed.width = n;
        Ok(packed)
    }

    /// Rows of the matrix (the length of an input row).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of the product: those of the source matrix for [`PanelMatrix::pack`], all
    /// the packed ones (padding included) for [`PanelMatrix::pack_columns`].
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of panels.
    pub fn panels(&self) -> usize {
        self.panels
    }

    /// How the values are stored.
    pub fn format(&self) -> WeightFormat {
        match self.data {
            Data::F32(_) => WeightFormat::F32,
            Data::F16(_) => WeightFormat::F16,
            Data::Int8(_) => WeightFormat::Int8,
        }
    }

    /// Bytes of packed values.
    pub fn bytes(&self) -> usize {
        match &self.data {
            Data::F32(v) => 4 * v.len(),
            Data::F16(v) => 2 * v.len(),
            Data::Int8(q) => q.bytes(),
        }
    }

    /// For `rows` rows of `a` (`[rows, k]`), accumulates the product onto `out`, which is
    /// panel-major: `[panels][rows][PANEL]`, holding the initial values (a bias, say). Then
    /// calls `finish(panel, block)` on each panel's `[rows][PANEL]` block while it is still
    /// in cache, on the thread that computed it. The panels are split between the threads.
    pub fn mul<F>(&self, a: &[f32], rows: usize, out: &mut [f32], finish: F)
    where
        F: Fn(usize, &mut [f32]) + Sync,
    {
        let block = rows * PANEL;
        assert_eq!(a.len(), rows * self.k, "input is not {rows}×{}", self.k);
        assert_eq!(
            out.len(),
            self.panels * block,
            "output is not panels×rows×{PANEL}"
        );
        if rows == 0 || self.panels == 0 {
            return;
        }
        if let Data::Int8(q) = &self.data {
            return q.mul(a, rows, out, finish);
        }
        by_panels(self.panels, block, out, |p0, chunk| {
            for (i, o) in chunk.chunks_exact_mut(block).enumerate() {
                self.panel(p0 + i, a, rows, o);
                finish(p0 + i, o);
            }
        });
    }

    /// Panel `p` for every row, `MR` rows at a time, in slices of `KC` panel rows that stay
    /// in the L1 cache while every row group passes over them (the sums still run in k
    /// order: each slice continues from the last).
    fn panel(&self, p: usize, a: &[f32], rows: usize, out: &mut [f32]) {
        let k = self.k;
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            for r0 in (0..rows).step_by(MR) {
                let m = MR.min(rows - r0);
                let mut lines = [&a[..0]; MR];
                for (i, line) in lines[..m].iter_mut().enumerate() {
                    *line = &a[(r0 + i) * k + k0..(r0 + i) * k + k0 + kc];
                }
                self.kernel(
                    p,
                    k0,
                    Group::lines(&lines[..m], kc),
                    &mut out[r0 * PANEL..],
                    PANEL,
                    Step::default(),
                );
            }
        }
    }

    /// On the calling thread, for `rows` rows of a matrix A given by `row` and for panels
    /// `panels`, computes `out = start + A·W (+ residual)`, then the ReLU if asked: `out` is
    /// row-major with row stride `ldo`, its column 0 the first column of panel
    /// `panels.start`. Only the columns of [`PanelMatrix::width`] are written (a partial
    /// last panel stays partial). `start` is the bias ([`Epilogue::bias`], or zeros), plus
    /// `out`'s contents if [`Epilogue::accumulate`] (otherwise `out` may hold anything, NaN
    /// included, and is only written).
    ///
    /// `row(r, k0)` gives row `r`'s values from column `k0` on, at least up to the next
    /// multiple of `segment` (or k): A need not exist as a matrix. A convolution's patch row
    /// is `kh·kw` runs of `cin` input values, each contiguous in the input; with `segment =
    /// cin` the product reads them where they lie, with no patch matrix written.
    ///
    /// Loops: panels, then slices of at most `KC` rows of W, then groups of `MR` rows: each
    /// slice of a panel (32 KB at most) stays in L1 while every row group passes over it,
    /// and a panel's outputs stay in cache until finished. A segment longer than `KC` is cut
    /// into equal slices; shorter ones are taken whole, as many to a slice as fit (balanced),
    /// and the kernel sums a slice's runs in registers: a 3×3 convolution of 64 channels
    /// makes 5 slices, not 9, and a first layer's 7 kernel rows of 21 values make 2. While a
    /// slice's row groups run, the next slice of weights is fetched into L2 a share at a time
    /// (the 7×7 stage at batch 1 streams its 60 MB of weights from memory). The bias, residual and ReLU are applied in registers, in the first
    /// and last slice. Each output is `start + Σ_k` in k order, then `+ residual`, as in
    /// [`PanelMatrix::mul`].
    #[allow(clippy::too_many_arguments)]
    pub fn mul_rows<'a>(
        &self,
        rows: usize,
        segment: usize,
        row: impl Fn(usize, usize) -> &'a [f32],
        panels: std::ops::Range<usize>,
        out: &mut [f32],
        ldo: usize,
        epilogue: Epilogue<'_>,
    ) {
        assert!(panels.end <= self.panels, "panels outside the matrix");
        assert!(segment > 0, "segments must hold values");
        assert!(
            !matches!(self.data, Data::Int8(_)),
            "int8 panels multiply through `mul` only"
        );
        let first = panels.start * PANEL;
        let cols = self.width.min(panels.end * PANEL).saturating_sub(first);
        if rows == 0 || cols == 0 {
            return;
        }
        assert!(ldo >= cols, "output rows shorter than the panels' columns");
        let need = (rows - 1) * ldo + cols;
        assert!(
            out.len() >= need,
            "output has {} values, needs {need}",
            out.len()
        );
        if let Some(bias) = epilogue.bias {
            assert!(
                bias.len() >= first + cols,
                "bias has {} values, needs {}",
                bias.len(),
                first + cols
            );
        }
        if let Some((res, ldr)) = epilogue.residual {
            assert!(
                ldr >= cols && res.len() >= (rows - 1) * ldr + cols,
                "residual smaller than the output"
            );
        }
        // Slices `(k0, kc, run)`: segments shorter than KC are taken whole, as many as fit
        // (balanced), each slice then made of runs of `run` values; longer ones are cut into
        // equal slices of at most KC, one run each.
        let mut slices = Vec::new();
        let mut k0 = 0;
        while k0 < self.k {
            let (kc, run) = if segment < KC {
                let segments = (self.k - k0).div_ceil(segment);
                let per = segments.div_ceil(segments.div_ceil(KC / segment));
                ((per * segment).min(self.k - k0), segment)
            } else {
                let left = (self.k - k0).min(segment - k0 % segment);
                let kc = left.div_ceil(left.div_ceil(KC));
                (kc, kc)
            };
            slices.push((k0, kc, run));
            k0 += kc;
        }
        // Every run's row starts, computed once: slice s's run j of row r is
        // `lines[run_lines[s] + j·rows + r]`.
        let mut lines: Vec<&[f32]> = Vec::new();
        let mut run_lines = Vec::with_capacity(slices.len());
        for &(k0, kc, run) in &slices {
            run_lines.push(lines.len());
            for j0 in (0..kc).step_by(run) {
                let len = run.min(kc - j0);
                lines.extend((0..rows).map(|r| {
                    let line = row(r, k0 + j0);
                    assert!(
                        line.len() >= len,
                        "a row has {} values, the slice {len}",
                        line.len()
                    );
                    &line[..len]
                }));
            }
        }
        let last = slices.len() - 1;
        let panels_end = panels.end;
        for p in panels {
            let col = p * PANEL - first;
            let width = PANEL.min(cols - col);
            let bias = epilogue.bias.map(|b| &b[p * PANEL..p * PANEL + width]);
            for (s, &(k0, kc, run)) in slices.iter().enumerate() {
                let step = |r0: usize| Step {
                    fresh: s == 0 && !epilogue.accumulate,
                    bias: if s == 0 { bias } else { None },
                    residual: if s == last {
                        epilogue
                            .residual
                            .map(|(res, ldr)| (&res[r0 * ldr + col..], ldr))
                    } else {
                        None
                    },
                    relu: s == last && epilogue.relu,
                };
                // The next slice's weights, asked for a share at a time while this slice's
                // row groups run: a slice is read from memory once, and its first row group
                // would otherwise wait for it.
                let ahead = if s < last {
                    Some((p, slices[s + 1]))
                } else if p + 1 < panels_end {
                    Some((p + 1, slices[0]))
                } else {
                    None
                }
                .map(|(q, (k0, kc, _))| self.slice_bytes(q, k0, kc));
                let table = &lines[run_lines[s]..];
                let o = &mut out[col..];
                if width == PANEL {
                    let slice = Slice {
                        table,
                        rows,
                        run,
                        k: kc,
                    };
                    self.kernel_slice(p, k0, slice, o, ldo, step(0), ahead);
                    continue;
                }
                for r0 in (0..rows).step_by(MR) {
                    let group = Group {
                        table: &table[r0..],
                        stride: rows,
                        rows: MR.min(rows - r0),
                        run,
                        k: kc,
                    };
                    let o = &mut o[r0 * ldo..];
                    self.partial(p, k0, group, o, ldo, width, step(r0));
                }
            }
        }
    }

    /// Where rows `k0 .. k0 + kc` of panel `p` lie in the packed data.
    fn span(&self, p: usize, k0: usize, kc: usize) -> std::ops::Range<usize> {
        (p * self.k + k0) * PANEL..(p * self.k + k0 + kc) * PANEL
    }

    /// The bytes of rows `k0 .. k0 + kc` of panel `p`.
    fn slice_bytes(&self, p: usize, k0: usize, kc: usize) -> &[u8] {
        let span = self.span(p, k0, kc);
        match &self.data {
            Data::F32(w) => bytes_of(&w[span]),
            Data::F16(w) => bytes_of(&w[span]),
            Data::Int8(_) => unreachable!("int8 panels multiply through `mul` only"),
        }
    }

    /// [`PanelMatrix::kernel`] for the first `width` columns of a panel, through full-width
    /// blocks on the stack.
    #[allow(clippy::too_many_arguments)]
    fn partial(
        &self,
        p: usize,
        k0: usize,
        group: Group<'_>,
        o: &mut [f32],
        ldo: usize,
        width: usize,
        step: Step<'_>,
    ) {
        let m = group.rows;
        let mut block = [0.0f32; MR * PANEL];
        let mut bias = [0.0f32; PANEL];
        let mut res = [0.0f32; MR * PANEL];
        if let Some(b) = step.bias {
            bias[..width].copy_from_slice(&b[..width]);
        }
        if !step.fresh {
            for i in 0..m {
                block[i * PANEL..i * PANEL + width].copy_from_slice(&o[i * ldo..i * ldo + width]);
            }
        }
        if let Some((r, ldr)) = step.residual {
            for i in 0..m {
                res[i * PANEL..i * PANEL + width].copy_from_slice(&r[i * ldr..i * ldr + width]);
            }
        }
        let step = Step {
            fresh: step.fresh,
            bias: step.bias.map(|_| &bias[..]),
            residual: step.residual.map(|_| (&res[..], PANEL)),
            relu: step.relu,
        };
        self.kernel(p, k0, group, &mut block, PANEL, step);
        for i in 0..m {
            o[i * ldo..i * ldo + width].copy_from_slice(&block[i * PANEL..i * PANEL + width]);
        }
    }

    /// Rows `k0 .. k0 + group.k` of panel `p` times the group's rows, onto `o` (row stride
    /// `ldo`, `PANEL` columns), started and finished as `step` says.
    fn kernel(
        &self,
        p: usize,
        k0: usize,
        group: Group<'_>,
        o: &mut [f32],
        ldo: usize,
        step: Step<'_>,
    ) {
        let span = self.span(p, k0, group.k);
        match &self.data {
            Data::F32(w) => kernel_f32(&w[span], group, o, ldo, step),
            Data::F16(w) => kernel_f16(&w[span], group, o, ldo, step),
            Data::Int8(_) => unreachable!("int8 panels multiply through `mul` only"),
        }
    }
}

impl PanelMatrix {
    /// Rows `k0 .. k0 + slice.k` of full panel `p` times every row of `slice`, `MR` rows at a
    /// time, onto `o` (row stride `ldo`), each row group started and finished as `step` says
    /// (its residual, if any, moving on `ldr` a row). While the groups run, `ahead` (the next
    /// slice's weights) is asked into L2 a share per group: a slice is read from memory once,
    /// and its first row group would otherwise wait for it. The same bits as each group through
    /// [`PanelMatrix::kernel`].
    #[allow(clippy::too_many_arguments)]
    fn kernel_slice(
        &self,
        p: usize,
        k0: usize,
        slice: Slice<'_>,
        o: &mut [f32],
        ldo: usize,
        step: Step<'_>,
        ahead: Option<&[u8]>,
    ) {
        let span = self.span(p, k0, slice.k);
        let done = match &self.data {
            Data::F32(w) => vectorised_slice::<false, f32>(&w[span], slice, o, ldo, step, ahead),
            Data::F16(w) => vectorised_slice::<true, u16>(&w[span], slice, o, ldo, step, ahead),
            Data::Int8(_) => unreachable!("int8 panels multiply through `mul` only"),
        };
        if done {
            return;
        }
        // Without AVX-512: group by group.
        let groups = slice.rows.div_ceil(MR);
        for r0 in (0..slice.rows).step_by(MR) {
            if let Some(bytes) = ahead {
                let share = bytes.len().div_ceil(64).div_ceil(groups) * 64;
                let from = (r0 / MR * share).min(bytes.len());
                prefetch(&bytes[from..(from + share).min(bytes.len())]);
            }
            let group = slice.group(r0);
            let step = step.at_row(r0);
            self.kernel(p, k0, group, &mut o[r0 * ldo..], ldo, step);
        }
    }
}

/// Every row of one slice of [`PanelMatrix::mul_rows`]: run `j` of row `r` is
/// `table[j·rows + r]`, `run` values (the last what is left of `k`), each checked to hold
/// them when the table was made.
#[derive(Clone, Copy)]
struct Slice<'a> {
    table: &'a [&'a [f32]],
    rows: usize,
    run: usize,
    k: usize,
}

impl<'a> Slice<'a> {
    /// The row group from row `r0`.
    fn group(&self, r0: usize) -> Group<'a> {
        Group {
            table: &self.table[r0..],
            stride: self.rows,
            rows: MR.min(self.rows - r0),
            run: self.run,
            k: self.k,
        }
    }
}

/// How [`PanelMatrix::mul_rows`] starts and finishes its sums.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// Add the sums to the output's contents (otherwise the output is only written).
    pub accumulate: bool,
    /// Added to every row: one value per column of the matrix.
    pub bias: Option<&'a [f32]>,
    /// Added to the sums: the output's shape, with this row stride.
    pub residual: Option<(&'a [f32], usize)>,
    /// `max(0, ·)` last.
    pub relu: bool,
}

/// One kernel call's start and finish, for its `PANEL` columns.
#[derive(Clone, Copy, Default)]
struct Step<'a> {
    /// Start from zero, not from the output's contents.
    fresh: bool,
    /// `PANEL` values added to every row's start.
    bias: Option<&'a [f32]>,
    /// Added after the sums, row stride given.
    residual: Option<(&'a [f32], usize)>,
    relu: bool,
}

impl<'a> Step<'a> {
    /// The step for the row group from row `r0`: its residual moves down `r0` rows.
    fn at_row(&self, r0: usize) -> Step<'a> {
        Step {
            residual: self.residual.map(|(r, ldr)| (&r[r0 * ldr..], ldr)),
            ..*self
        }
    }

    /// Checks the step's slices hold what a kernel of `m` rows reads.
    fn check(&self, m: usize) {
        if let Some(b) = self.bias {
            assert!(b.len() >= PANEL, "bias shorter than a panel");
        }
        if let Some((r, ldr)) = self.residual {
            assert!(
                ldr >= PANEL && r.len() >= (m - 1) * ldr + PANEL,
                "residual shorter than the rows"
            );
        }
    }
}

/// Splits `out`, `panels` blocks of `block` values, into one run of whole blocks a thread:
/// `run(first panel, its blocks)`. In a pass of [`team::run`] thread `i` of the team always
/// takes run `i`, so its share of the weights stays in its core's caches from product to
/// product; elsewhere the runs go to the pool's threads as they come free.
pub(crate) fn by_panels(
    panels: usize,
    block: usize,
    out: &mut [f32],
    run: impl Fn(usize, &mut [f32]) + Sync,
) {
    let threads = rayon::current_num_threads().clamp(1, panels.max(1));
    let per_task = panels.div_ceil(threads);
    if threads == 1 {
        run(0, out);
    } else if team::in_pass() {
        let runs: Vec<Mutex<&mut [f32]>> =
            out.chunks_mut(per_task * block).map(Mutex::new).collect();
        team::each_thread(&|i, _| {
            if let Some(chunk) = runs.get(i) {
                run(i * per_task, &mut chunk.lock().unwrap());
            }
        });
    } else {
        out.par_chunks_mut(per_task * block)
            .enumerate()
            .for_each(|(t, chunk)| run(t * per_task, chunk));
    }
}

/// `v`'s bytes.
fn bytes_of<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: the element types used (f32, u16) have no padding, and any byte is a u8.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

/// Asks for every cache line of `b` to be brought into L2.
#[inline]
fn prefetch(b: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for x in b.iter().step_by(64) {
        // SAFETY: a prefetch reads nothing architecturally, and `x` is a valid reference.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                (x as *const u8).cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = b;
}

/// The rows of one kernel call (1 ..= MR), `k` values each, in runs of `run` values (the
/// last run may be shorter) that may lie anywhere: run `j` of row `r` is
/// `table[j·stride + r]`. One run per row, or several short ones (the patch rows of a
/// convolution, read where they lie), all summed in registers.
#[derive(Clone, Copy)]
struct Group<'a> {
    table: &'a [&'a [f32]],
    stride: usize,
    rows: usize,
    run: usize,
    k: usize,
}

impl<'a> Group<'a> {
    /// `lines`, one per row, as one run of `k` values each.
    fn lines(lines: &'a [&'a [f32]], k: usize) -> Self {
        Group {
            table: lines,
            stride: lines.len(),
            rows: lines.len(),
            run: k.max(1),
            k,
        }
    }

    /// The runs: their lengths, and the row values of each.
    fn runs(&self) -> impl Iterator<Item = (usize, &'a [&'a [f32]])> + '_ {
        (0..self.k).step_by(self.run).enumerate().map(|(j, j0)| {
            let at = j * self.stride;
            (self.run.min(self.k - j0), &self.table[at..at + self.rows])
        })
    }

    /// Checks the group's shape and that every run holds the values the kernel reads.
    fn check(&self) {
        assert!((1..=MR).contains(&self.rows), "1 ..= {MR} rows at a time");
        assert!(
            self.run > 0 && self.stride >= self.rows,
            "runs must hold values"
        );
        for (len, lines) in self.runs() {
            for line in lines {
                assert!(
                    line.len() >= len,
                    "a row has {} values, the run {len}",
                    line.len()
                );
            }
        }
    }
}

/// `o[r·ldo + j] = start + Σ_kk row_r[kk]·w[kk][j] (+ residual, ReLU)` for the rows of
/// `group` (1 ..= MR) against one f32 panel of `group.k` rows.
fn kernel_f32(w: &[f32], group: Group<'_>, o: &mut [f32], ldo: usize, step: Step<'_>) {
    if !vectorised::<false, f32>(w, group, o, ldo, step) {
        generic_f32(group, o, ldo, step, w);
    }
}

/// [`kernel_f32`] on a half-precision panel.
fn kernel_f16(w: &[u16], group: Group<'_>, o: &mut [f32], ldo: usize, step: Step<'_>) {
    if !vectorised::<true, u16>(w, group, o, ldo, step) {
        generic_f16(group, o, ldo, step, w);
    }
}

/// The AVX-512 kernel on a panel of `T` (u16 halves when `HALF`, else f32), if the CPU has
/// AVX-512F; false, having done nothing, if not.
fn vectorised<const HALF: bool, T>(
    w: &[T],
    group: Group<'_>,
    o: &mut [f32],
    ldo: usize,
    step: Step<'_>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if crate::has_avx512() {
        let m = group.rows;
        group.check();
        step.check(m);
        assert_eq!(std::mem::size_of::<T>(), if HALF { 2 } else { 4 });
        let k = group.k;
        assert!(w.len() >= k * PANEL && ldo >= PANEL && o.len() >= (m - 1) * ldo + PANEL);
        let runs = avx512::Runs {
            table: group.table.as_ptr(),
            stride: group.stride,
            run: group.run,
            k,
        };
        // SAFETY: AVX-512F is present, `w` holds k·PANEL values of the width the kernel
        // reads, and the other slices hold what it reads and writes (asserted above and in
        // the two `check`s).
        unsafe {
            avx512::rows::<HALF>(
                w.as_ptr().cast(),
                &runs,
                m,
                o.as_mut_ptr(),
                ldo,
                &step.raw(),
            )
        };
        return true;
    }
    false
}

/// [`vectorised`] for every row group of a slice at once, with the prefetch of `ahead`
/// spread over the groups; false, having done nothing, without AVX-512F.
fn vectorised_slice<const HALF: bool, T>(
    w: &[T],
    slice: Slice<'_>,
    o: &mut [f32],
    ldo: usize,
    step: Step<'_>,
    ahead: Option<&[u8]>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if crate::has_avx512() {
        let (rows, k) = (slice.rows, slice.k);
        assert!(rows > 0 && slice.run > 0, "a slice needs rows and runs");
        let runs = k.div_ceil(slice.run);
        assert!(slice.table.len() >= runs * rows, "a slice's table is short");
        for (j, lines) in slice.table.chunks_exact(rows).take(runs).enumerate() {
            let len = slice.run.min(k - j * slice.run);
            assert!(lines.iter().all(|l| l.len() >= len), "a run is short");
        }
        step.check(rows);
        assert_eq!(std::mem::size_of::<T>(), if HALF { 2 } else { 4 });
        assert!(w.len() >= k * PANEL && ldo >= PANEL && o.len() >= (rows - 1) * ldo + PANEL);
        let table = avx512::Runs {
            table: slice.table.as_ptr(),
            stride: rows,
            run: slice.run,
            k,
        };
        let ahead = ahead.unwrap_or(&[]);
        // SAFETY: AVX-512F is present, `w` holds k·PANEL values of the width the kernel
        // reads, every run of every row holds its values, and `o`, the bias and the
        // residual hold what all `rows` rows read and write (asserted above).
        unsafe {
            avx512::slice::<HALF>(
                w.as_ptr().cast(),
                &table,
                rows,
                o.as_mut_ptr(),
                ldo,
                &step.raw(),
                ahead,
            )
        };
        return true;
    }
    let _ = (w, slice, o, ldo, step, ahead);
    false
}

crate::simd_fn! {
    /// The portable f32 kernel (compiled for AVX2 + FMA too, where `mul_add` is one instruction).
    fn generic_f32(group: Group<'_>, o: &mut [f32], ldo: usize, step: Step<'_>, w: &[f32]) {
        portable(group, o, ldo, step, |i| w[i]);
    }
}

crate::simd_fn! {
    /// The portable half-precision kernel.
    fn generic_f16(group: Group<'_>, o: &mut [f32], ldo: usize, step: Step<'_>, w: &[u16]) {
        portable(group, o, ldo, step, |i| from_f16(w[i]));
    }
}

/// The portable kernel: the same sums in the same order, one row at a time.
#[inline(always)]
fn portable(group: Group<'_>, o: &mut [f32], ldo: usize, step: Step<'_>, w: impl Fn(usize) -> f32) {
    for r in 0..group.rows {
        let acc = &mut o[r * ldo..r * ldo + PANEL];
        if step.fresh {
            acc.fill(0.0);
        }
        if let Some(b) = step.bias {
            acc.iter_mut().zip(&b[..PANEL]).for_each(|(v, b)| *v += b);
        }
        let values = group.runs().flat_map(|(len, lines)| &lines[r][..len]);
        for (kk, &x) in values.enumerate() {
            for (j, v) in acc.iter_mut().enumerate() {
                *v = x.mul_add(w(kk * PANEL + j), *v);
            }
        }
        if let Some((res, ldr)) = step.residual {
            acc.iter_mut()
                .zip(&res[r * ldr..r * ldr + PANEL])
                .for_each(|(v, s)| *v += s);
        }
        if step.relu {
            acc.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl Step<'_> {
    fn raw(&self) -> avx512::Step {
        avx512::Step {
            fresh: self.fresh,
            bias: self.bias.map_or(std::ptr::null(), <[f32]>::as_ptr),
            residual: self.residual.map_or(std::ptr::null(), |(r, _)| r.as_ptr()),
            ldr: self.residual.map_or(0, |(_, l)| l),
            relu: self.relu,
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::PANEL;

    /// [`super::Step`] as pointers: null for none.
    pub(super) struct Step {
        pub fresh: bool,
        pub bias: *const f32,
        pub residual: *const f32,
        pub ldr: usize,
        pub relu: bool,
    }

    /// [`super::Group`] as a pointer: run `j` of row `r` is `*table.add(j·stride + r)`,
    /// `run` values (the last run what is left of `k`).
    pub(super) struct Runs<'a> {
        pub table: *const &'a [f32],
        pub stride: usize,
        pub run: usize,
        pub k: usize,
    }

    /// [`rows`] for every group of `MR` rows of `n` (the last group what is left), run `j`
    /// of row `r` being `*a.table.add(j·a.stride + r)`; while they run, `ahead` is asked
    /// into L2 a share per group.
    ///
    /// # Safety
    /// As [`rows`] for each group: `a.table` holds every run of all `n` rows, `o` holds
    /// `(n − 1)·ldo + PANEL` f32 and a non-null `step.residual` `(n − 1)·ldr + PANEL`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn slice<const HALF: bool>(
        w: *const u8,
        a: &Runs<'_>,
        n: usize,
        o: *mut f32,
        ldo: usize,
        step: &Step,
        ahead: &[u8],
    ) {
        let groups = n.div_ceil(super::MR);
        let share = ahead.len().div_ceil(64).div_ceil(groups) * 64;
        for (g, r0) in (0..n).step_by(super::MR).enumerate() {
            let from = (g * share).min(ahead.len());
            for line in ahead[from..(from + share).min(ahead.len())]
                .iter()
                .step_by(64)
            {
                _mm_prefetch::<_MM_HINT_T1>((line as *const u8).cast());
            }
            let group = Runs {
                table: a.table.add(r0),
                stride: a.stride,
                run: a.run,
                k: a.k,
            };
            let at = Step {
                fresh: step.fresh,
                bias: step.bias,
                residual: if step.residual.is_null() {
                    step.residual
                } else {
                    step.residual.add(r0 * step.ldr)
                },
                ldr: step.ldr,
                relu: step.relu,
            };
            rows::<HALF>(w, &group, super::MR.min(n - r0), o.add(r0 * ldo), ldo, &at);
        }
    }

    /// [`panel`] for `m` (1 ..= 6) rows.
    ///
    /// # Safety
    /// As [`panel`], with `M = m`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows<const HALF: bool>(
        w: *const u8,
        a: &Runs<'_>,
        m: usize,
        o: *mut f32,
        ldo: usize,
        step: &Step,
    ) {
        match m {
            1 => panel::<1, HALF>(w, a, o, ldo, step),
            2 => panel::<2, HALF>(w, a, o, ldo, step),
            3 => panel::<3, HALF>(w, a, o, ldo, step),
            4 => panel::<4, HALF>(w, a, o, ldo, step),
            5 => panel::<5, HALF>(w, a, o, ldo, step),
            _ => panel::<6, HALF>(w, a, o, ldo, step),
        }
    }

    /// `M` rows against one panel: 4·M accumulators in registers, the panel's next row
    /// loaded (and widened from half precision when `HALF`) once for all rows.
    ///
    /// # Safety
    /// AVX-512F must be present; `w` must hold `a.k·PANEL` values (f32, or u16 when
    /// `HALF`), `a.table` each run's `M` rows, each holding the run's values, `o`
    /// `(M − 1)·ldo + PANEL` f32, a non-null `step.bias` `PANEL` f32 and a non-null
    /// `step.residual` `(M − 1)·ldr + PANEL`.
    #[target_feature(enable = "avx512f")]
    unsafe fn panel<const M: usize, const HALF: bool>(
        w: *const u8,
        runs: &Runs<'_>,
        o: *mut f32,
        ldo: usize,
        step: &Step,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 4]; M];
        for (r, row) in acc.iter_mut().enumerate() {
            for (q, v) in row.iter_mut().enumerate() {
                let b = if step.bias.is_null() {
                    _mm512_setzero_ps()
                } else {
                    _mm512_loadu_ps(step.bias.add(q * 16))
                };
                *v = if step.fresh {
                    b
                } else {
                    _mm512_add_ps(_mm512_loadu_ps(o.add(r * ldo + q * 16)), b)
                };
            }
        }
        let mut k0 = 0;
        while k0 < runs.k {
            let len = runs.run.min(runs.k - k0);
            let lines = runs.table.add((k0 / runs.run) * runs.stride);
            let a: [*const f32; M] = std::array::from_fn(|r| (*lines.add(r)).as_ptr());
            run::<M, HALF>(w, k0, len, &a, &mut acc);
            k0 += len;
        }
        if !step.residual.is_null() {
            for (r, row) in acc.iter_mut().enumerate() {
                for (q, v) in row.iter_mut().enumerate() {
                    *v = _mm512_add_ps(
                        *v,
                        _mm512_loadu_ps(step.residual.add(r * step.ldr + q * 16)),
                    );
                }
            }
        }
        if step.relu {
            for row in acc.iter_mut() {
                for v in row.iter_mut() {
                    *v = _mm512_max_ps(*v, _mm512_setzero_ps());
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (q, v) in row.iter().enumerate() {
                _mm512_storeu_ps(o.add(r * ldo + q * 16), *v);
            }
        }
    }

    /// Panel rows `k0 .. k0 + len` times `len` values from each of `a`, onto `acc`.
    ///
    /// # Safety
    /// AVX-512F must be present; `w` must hold `(k0 + len)·PANEL` values and each of `a`
    /// `len` f32.
    #[inline(always)]
    unsafe fn run<const M: usize, const HALF: bool>(
        w: *const u8,
        k0: usize,
        len: usize,
        a: &[*const f32; M],
        acc: &mut [[__m512; 4]; M],
    ) {
        for kk in 0..len {
            let wv: [__m512; 4] = if HALF {
                let p = w.cast::<u16>().add((k0 + kk) * PANEL);
                std::array::from_fn(|q| {
                    _mm512_cvtph_ps(_mm256_loadu_si256(p.add(q * 16).cast::<__m256i>()))
                })
            } else {
                let p = w.cast::<f32>().add((k0 + kk) * PANEL);
                std::array::from_fn(|q| _mm512_loadu_ps(p.add(q * 16)))
            };
            for (r, row) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*a[r].add(kk));
                for (v, &wq) in row.iter_mut().zip(&wv) {
                    *v = _mm512_fmadd_ps(x, wq, *v);
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn random(rng: &mut crate::Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect()
    }

    /// `init + a·W` in f64, row-major `[rows, n]`.
    fn reference(a: &[f32], w: &[f32], rows: usize, k: usize, n: usize, init: &[f32]) -> Vec<f64> {
        let mut out = vec![0.0f64; rows * n];
        for r in 0..rows {
            for j in 0..n {
                out[r * n + j] = f64::from(init[j])
                    + (0..k)
                        .map(|p| f64::from(a[r * k + p]) * f64::from(w[p * n + j]))
                        .sum::<f64>();
            }
        }
        out
    }

    /// Runs `m.mul` with `init` in every row and returns the result row-major `[rows, n]`.
    pub(crate) fn product(
        m: &PanelMatrix,
        a: &[f32],
        rows: usize,
        n: usize,
        init: &[f32],
    ) -> Vec<f32> {
        let mut out = vec![0.0f32; m.panels() * rows * PANEL];
        for p in 0..m.panels() {
            for r in 0..rows {
                for j in 0..PANEL {
                    out[(p * rows + r) * PANEL + j] =
                        init.get(p * PANEL + j).copied().unwrap_or(0.0);
                }
            }
        }
        m.mul(a, rows, &mut out, |_, _| {});
        let mut rowmajor = vec![0.0f32; rows * n];
        for r in 0..rows {
            for j in 0..n {
                rowmajor[r * n + j] = out[((j / PANEL) * rows + r) * PANEL + j % PANEL];
            }
        }
        rowmajor
    }

    #[test]
    fn products_match_f64_for_every_row_count_and_thread_count() {
        let mut rng = crate::Rng::new(3);
        for &(rows, k, n) in &[
            (1, 1, 1),
            (1, 37, 200),
            (3, 64, 64),
            (4, 20, 130),
            (9, 33, 257),
        ] {
            let a = random(&mut rng, rows * k);
            let w = random(&mut rng, k * n);
            let init = random(&mut rng, n);
            let want = reference(&a, &w, rows, k, n, &init);
            let packed = PanelMatrix::pack(&w, k, n, WeightFormat::F32).unwrap();
            let mut first: Option<Vec<f32>> = None;
            // In a pass of `team::run` each thread takes a fixed share of the panels.
            for (threads, in_pass) in [(1, false), (2, false), (3, false), (2, true), (3, true)] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let run = || product(&packed, &a, rows, n, &init);
                let got = pool.install(|| if in_pass { team::run(run) } else { run() });
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (f64::from(*g) - w).abs() < 1e-5 * (k as f64).sqrt(),
                        "{rows}×{k}×{n}: {g} vs {w}"
                    );
                }
                // The same bits whatever the thread count.
                match &first {
                    None => first = Some(got),
                    Some(f) => assert_eq!(f, &got),
                }
            }
        }
    }

    #[test]
    fn row_products_match_f64_and_the_panel_product_bit_for_bit() {
        let mut rng = crate::Rng::new(7);
        // (rows, k, n, segment, panels): several row groups and k slices; a partial last
        // panel; segments that split the k slices (a convolution's patch rows); a sub-range.
        for &(rows, k, n, segment, (p0, p1)) in &[
            (1, 5, 64, 5, (0, 1)),
            (13, 300, 200, 300, (0, 4)),
            (7, 192, 130, 64, (0, 3)),
            (20, 90, 256, 30, (1, 3)),
            (6, 129, 64, 43, (0, 1)),
            // Short segments, several whole ones a slice (a first layer's kernel rows, a
            // 3×3 convolution of 64 channels); one that does not divide k.
            (11, 147, 64, 21, (0, 1)),
            (8, 576, 70, 64, (0, 2)),
            (5, 100, 64, 30, (0, 1)),
        ] {
            let a = random(&mut rng, rows * k);
            let w = random(&mut rng, k * n);
            let init = random(&mut rng, n);
            let want = reference(&a, &w, rows, k, n, &init);
            let first = p0 * PANEL;
            let cols = n.min(p1 * PANEL) - first;
            let ldo = cols + 3;
            let residual = random(&mut rng, rows * ldo);
            for format in [WeightFormat::F32, WeightFormat::F16] {
                let packed = PanelMatrix::pack(&w, k, n, format).unwrap();
                let whole = product(&packed, &a, rows, n, &init);
                let row = |r: usize, k0: usize| &a[r * k + k0..(r + 1) * k];
                // Accumulating onto the output's contents.
                let mut out = vec![f32::NAN; rows * ldo];
                for r in 0..rows {
                    out[r * ldo..r * ldo + cols].copy_from_slice(&init[first..first + cols]);
                }
                let plain = Epilogue {
                    accumulate: true,
                    ..Default::default()
                };
                packed.mul_rows(rows, segment, row, p0..p1, &mut out, ldo, plain);
                // Starting from the bias instead (over NaNs), with a residual and the ReLU.
                let mut fused = vec![f32::NAN; rows * ldo];
                let epilogue = Epilogue {
                    accumulate: false,
                    bias: Some(&init),
                    residual: Some((&residual, ldo)),
                    relu: true,
                };
                packed.mul_rows(rows, segment, row, p0..p1, &mut fused, ldo, epilogue);
                for r in 0..rows {
                    for j in 0..cols {
                        let (got, at) = (out[r * ldo + j], r * ldo + j);
                        let place = format!("{format} {rows}×{k}×{n} ({r}, {j})");
                        assert_eq!(got, whole[r * n + first + j], "{place}");
                        assert_eq!(fused[at], (got + residual[at]).max(0.0), "{place}");
                        if format == WeightFormat::F32 {
                            let w = want[r * n + first + j];
                            let tol = 1e-5 * (k as f64).sqrt();
                            assert!((f64::from(got) - w).abs() < tol, "{got} vs {w}");
                        }
                    }
                    for o in [&out, &fused] {
                        let past = &o[r * ldo + cols..(r + 1) * ldo];
                        assert!(past.iter().all(|v| v.is_nan()), "wrote past the panels");
                    }
                }
            }
        }
    }

    #[test]
    fn the_portable_kernel_finishes_as_the_vector_kernel_does() {
        let mut rng = crate::Rng::new(8);
        let k = 17;
        let w = random(&mut rng, k * PANEL);
        let bias = random(&mut rng, PANEL);
        for m in 1..=MR {
            let a = random(&mut rng, m * k);
            let lines: Vec<&[f32]> = a.chunks_exact(k).collect();
            let res = random(&mut rng, m * 70);
            let step = Step {
                fresh: true,
                bias: Some(&bias),
                residual: Some((&res, 70)),
                relu: true,
            };
            let (mut fast, mut slow) = (vec![f32::NAN; m * PANEL], vec![f32::NAN; m * PANEL]);
            kernel_f32(&w, Group::lines(&lines, k), &mut fast, PANEL, step);
            portable(Group::lines(&lines, k), &mut slow, PANEL, step, |i| w[i]);
            assert_eq!(fast, slow, "{m} rows");
            assert!(fast.contains(&0.0) && fast.iter().all(|&v| v >= 0.0));
        }
    }

    #[test]
    #[should_panic(expected = "a row has 3 values")]
    fn a_short_row_is_refused() {
        let packed = PanelMatrix::pack(&[1.0; 4 * 64], 4, 64, WeightFormat::F32).unwrap();
        let short = [1.0f32; 3];
        let mut out = vec![0.0; 64];
        let plain = Epilogue::default();
        packed.mul_rows(1, 4, |_, _| &short[..], 0..1, &mut out, 64, plain);
    }

    #[test]
    fn a_row_gets_the_same_bits_in_any_batch() {
        let mut rng = crate::Rng::new(4);
        let (k, n) = (50, 100);
        let w = random(&mut rng, k * n);
        let a = random(&mut rng, 7 * k);
        let init = vec![0.25; n];
        for format in [WeightFormat::F32, WeightFormat::F16] {
            let packed = PanelMatrix::pack(&w, k, n, format).unwrap();
            let all = product(&packed, &a, 7, n, &init);
            for r in 0..7 {
                let one = product(&packed, &a[r * k..(r + 1) * k], 1, n, &init);
                assert_eq!(one, all[r * n..(r + 1) * n], "{format} row {r}");
            }
        }
    }

    #[test]
    fn the_portable_kernel_gives_the_vector_kernels_bits() {
        // Both fuse each multiply-add and sum in k order, so they agree exactly; this runs
        // the portable code on machines whose CPU would never choose it.
        let mut rng = crate::Rng::new(6);
        let k = 29;
        let w = random(&mut rng, k * PANEL);
        let halves: Vec<u16> = w.iter().map(|&v| to_f16(v).unwrap()).collect();
        for m in 1..=MR {
            let a = random(&mut rng, m * k);
            let init = random(&mut rng, m * PANEL);
            let lines: Vec<&[f32]> = a.chunks_exact(k).collect();
            // One run per row, and the same values as runs of 5 (the last 4) read from
            // elsewhere: the same sums.
            let copies: Vec<Vec<f32>> = a.chunks_exact(k).map(<[f32]>::to_vec).collect();
            let mut table: Vec<&[f32]> = Vec::new();
            for j0 in (0..k).step_by(5) {
                table.extend(copies.iter().map(|c| &c[j0..]));
            }
            let runs = Group {
                table: &table,
                stride: m,
                rows: m,
                run: 5,
                k,
            };
            for group in [Group::lines(&lines, k), runs] {
                let (mut fast, mut slow) = (init.clone(), init.clone());
                kernel_f32(&w, group, &mut fast, PANEL, Step::default());
                portable(group, &mut slow, PANEL, Step::default(), |i| w[i]);
                assert_eq!(fast, slow, "f32, {m} rows, runs of {}", group.run);
                let (mut fast16, mut slow) = (init.clone(), init.clone());
                kernel_f16(&halves, group, &mut fast16, PANEL, Step::default());
                portable(group, &mut slow, PANEL, Step::default(), |i| {
                    from_f16(halves[i])
                });
                assert_eq!(fast16, slow, "f16, {m} rows, runs of {}", group.run);
                if group.run == 5 {
                    let mut whole = init.clone();
                    kernel_f32(
                        &w,
                        Group::lines(&lines, k),
                        &mut whole,
                        PANEL,
                        Step::default(),
                    );
                    assert_eq!(fast, whole, "runs change nothing");
                }
            }
        }
    }

    #[test]
    fn a_slice_at_once_gives_the_bits_of_its_row_groups_one_by_one() {
        // 13 rows: two full groups and one of 1; runs of 7 from separate rows; a bias in,
        // a residual and the ReLU out; the next slice's weights asked for alongside.
        let mut rng = crate::Rng::new(8);
        let (rows, k, run, ldo) = (13, 31, 7, PANEL + 3);
        let w = random(&mut rng, k * PANEL);
        let a = random(&mut rng, rows * k);
        let bias = random(&mut rng, PANEL);
        let residual = random(&mut rng, rows * ldo);
        for format in [WeightFormat::F32, WeightFormat::F16] {
            let m = PanelMatrix::pack(&w, k, PANEL, format).unwrap();
            let mut table: Vec<&[f32]> = Vec::new();
            for j0 in (0..k).step_by(run) {
                table.extend(a.chunks_exact(k).map(|r| &r[j0..]));
            }
            let slice = Slice {
                table: &table,
                rows,
                run,
                k,
            };
            let step = Step {
                fresh: true,
                bias: Some(&bias),
                residual: Some((&residual, ldo)),
                relu: true,
            };
            let ahead = Some(m.slice_bytes(0, 0, k));
            let mut at_once = vec![f32::NAN; rows * ldo];
            let mut by_groups = at_once.clone();
            m.kernel_slice(0, 0, slice, &mut at_once, ldo, step, ahead);
            for r0 in (0..rows).step_by(MR) {
                let o = &mut by_groups[r0 * ldo..];
                m.kernel(0, 0, slice.group(r0), o, ldo, step.at_row(r0));
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&at_once), bits(&by_groups), "{format}");
            assert!(at_once
                .chunks(ldo)
                .all(|r| r[..PANEL].iter().all(|&x| x >= 0.0)));
        }
    }

    #[test]
    fn half_precision_is_the_product_of_the_rounded_weights() {
        let mut rng = crate::Rng::new(5);
        let (rows, k, n) = (2, 300, 70);
        let a = random(&mut rng, rows * k);
        let w: Vec<f32> = random(&mut rng, k * n).iter().map(|v| v * 3.0).collect();
        let rounded: Vec<f32> = w.iter().map(|&v| from_f16(to_f16(v).unwrap())).collect();
        let init = vec![0.0; n];
        let packed = PanelMatrix::pack(&w, k, n, WeightFormat::F16).unwrap();
        assert_eq!(packed.bytes(), 2 * k * 2 * PANEL);
        let got = product(&packed, &a, rows, n, &init);
        let want = reference(&a, &rounded, rows, k, n, &init);
        let exact = reference(&a, &w, rows, k, n, &init);
        let mut worst_vs_exact = 0.0f64;
        for ((g, w), e) in got.iter().zip(&want).zip(&exact) {
            assert!((f64::from(*g) - w).abs() < 1e-4, "{g} vs {w}");
            worst_vs_exact = worst_vs_exact.max((f64::from(*g) - e).abs());
        }
        // Rounding the weights moves a sum of 300 terms by ~2⁻¹¹·√300·|a·w|: small, not zero.
        assert!(
            worst_vs_exact > 1e-6 && worst_vs_exact < 0.05,
            "{worst_vs_exact}"
        );
    }

    #[test]
    fn reordered_columns_and_finish_see_each_panel() {
        let (k, n) = (2, 3);
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut columns = vec![None; PANEL];
        columns[0] = Some(2);
        columns[1] = Some(0);
        let packed = PanelMatrix::pack_columns(&w, k, n, &columns, WeightFormat::F32).unwrap();
        let mut out = vec![10.0; PANEL];
        let seen = std::sync::Mutex::new(Vec::new());
        packed.mul(&[1.0, 1.0], 1, &mut out, |p, block| {
            seen.lock().unwrap().push(p);
            block[2] = -1.0;
        });
        assert_eq!(&out[..3], &[19.0, 15.0, -1.0]);
        assert_eq!(out[3], 10.0);
        assert_eq!(*seen.lock().unwrap(), vec![0]);
    }

    #[test]
    fn every_panel_row_starts_on_a_cache_line() {
        let mut rng = crate::Rng::new(3);
        for (k, n) in [(1, 1), (3, 70), (37, 130), (147, 64)] {
            let w = random(&mut rng, k * n);
            for format in [WeightFormat::F32, WeightFormat::F16] {
                let m = PanelMatrix::pack(&w, k, n, format).unwrap();
                let start = match &m.data {
                    Data::F32(d) => d.as_ptr() as usize,
                    Data::F16(d) => d.as_ptr() as usize,
                    Data::Int8(_) => unreachable!("not packed here"),
                };
                let row_bytes = m.bytes() / (m.panels() * k);
                assert_eq!((start % 64, row_bytes % 64), (0, 0), "{k}×{n} {format}");
            }
        }
    }

    #[test]
    fn values_beyond_half_precision_are_refused_with_their_place() {
        let w = [0.5, 1e5, -2.0, 3.0];
        let err = PanelMatrix::pack(&w, 2, 2, WeightFormat::F16).unwrap_err();
        assert_eq!((err.row, err.column, err.value), (0, 1, 1e5));
        assert!(PanelMatrix::pack(&w, 2, 2, WeightFormat::F32).is_ok());
    }
}
