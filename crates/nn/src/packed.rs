//! Inference-only forms of [`Dense`] and [`Lstm`] for decoding a few rows at a time: the
//! weights packed once into column panels ([`PanelMatrix`]), in f32 or half precision, and
//! each LSTM step done in one pass over them. An LSTM packs its input and recurrent kernels
//! as one matrix over `[x, h]` and puts the four gates of 16 units in each panel, so the
//! thread that computes a panel's pre-activations finishes those units' cell update while
//! they are in cache.

use autocaption_tensor::{
    gemm, sigmoid, tanh, OutOfRange, PanelMatrix, Trans, WeightFormat, PANEL,
};

use crate::{Dense, Lstm, LstmState};

/// Units of an LSTM in one panel: the panel holds their four gates.
const UNITS: usize = PANEL / 4;

/// `out[p][r][..]` ← `init[p·PANEL ..]` for every panel `p` and row `r`.
fn fill_panels(init: &[f32], rows: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(init.len() * rows);
    for p in init.chunks_exact(PANEL) {
        for _ in 0..rows {
            out.extend_from_slice(p);
        }
    }
    out
}

/// A [`Dense`] layer packed for [`PackedDense::forward`].
#[derive(Debug, Clone)]
pub struct PackedDense {
    outputs: usize,
    weights: PanelMatrix,
    bias: Vec<f32>,
    relu: bool,
}

impl PackedDense {
    /// Packs `d`'s kernel in `format`; fails on a weight too large for half precision.
    pub fn new(d: &Dense, format: WeightFormat) -> Result<Self, OutOfRange> {
        let (i, o) = (d.inputs(), d.outputs());
        let weights = PanelMatrix::pack(&d.kernel.value, i, o, format)?;
        let mut bias = d.bias.value.clone();
        bias.resize(weights.panels() * PANEL, 0.0);
        Ok(Self {
            outputs: o,
            weights,
            bias,
            relu: d.relu,
        })
    }

    /// Bytes of packed weights.
    pub fn bytes(&self) -> usize {
        self.weights.bytes()
    }

    /// `x` is `[rows, in]`; `y` becomes `[rows, out]`, as [`Dense::forward`].
    pub fn forward(&self, x: &[f32], rows: usize, y: &mut Vec<f32>) {
        let mut out = fill_panels(&self.bias, rows);
        let relu = self.relu;
        self.weights.mul(x, rows, &mut out, |_, block| {
            if relu {
                block.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        });
        let o = self.outputs;
        y.clear();
        y.resize(rows * o, 0.0);
        for (p, panel) in out.chunks_exact(rows * PANEL).enumerate() {
            let j0 = p * PANEL;
            let width = PANEL.min(o - j0);
            for (r, src) in panel.chunks_exact(PANEL).enumerate() {
                y[r * o + j0..r * o + j0 + width].copy_from_slice(&src[..width]);
            }
        }
    }
}

/// An [`Lstm`] packed for [`PackedLstm::step`]. The first `projected` input rows of the
/// kernel can be left out of the packed matrix: their share of the pre-activations is then
/// the caller's, computed once with [`PackedLstm::project`] for inputs that do not change
/// from word to word (the image half of the merge LSTM's input) or that come from a small
/// set (a word embedding: one row of a table per vocabulary word).
#[derive(Debug, Clone)]
pub struct PackedLstm {
    inputs: usize,
    units: usize,
    weights: PanelMatrix,
    bias: Vec<f32>,
    /// Kernel rows `..projected`, f32, columns in panel order: `[projected, panels·PANEL]`.
    projection: Vec<f32>,
    projected: usize,
}

impl PackedLstm {
    /// Packs `l`'s kernels in `format`, all but the first `projected` input rows; fails on a
    /// weight too large for half precision (rows count the input rows first, then the
    /// recurrent ones).
    pub fn new(l: &Lstm, format: WeightFormat, projected: usize) -> Result<Self, OutOfRange> {
        let (i, u) = (l.inputs(), l.units());
        assert!(
            projected <= i,
            "cannot project {projected} of {i} input rows"
        );
        let g4 = 4 * u;
        let mut stacked = l.kernel.value[projected * g4..].to_vec();
        stacked.extend_from_slice(&l.recurrent.value);
        let blocks = u.div_ceil(UNITS);
        // Panel b: gates i, f, c, o (Keras' column order) of units 16b .. 16b + 16.
        let columns: Vec<Option<usize>> = (0..blocks * PANEL)
            .map(|j| {
                let (b, g, unit) = (j / PANEL, (j % PANEL) / UNITS, j % UNITS);
                let unit = b * UNITS + unit;
                (unit < u).then_some(g * u + unit)
            })
            .collect();
        let weights = PanelMatrix::pack_columns(&stacked, i - projected + u, g4, &columns, format)
            .map_err(|e| OutOfRange {
                row: e.row + projected,
                ..e
            })?;
        let reorder = |row: &[f32]| -> Vec<f32> {
            columns.iter().map(|c| c.map_or(0.0, |c| row[c])).collect()
        };
        let projection = l.kernel.value[..projected * g4]
            .chunks_exact(g4)
            .flat_map(reorder)
            .collect();
        Ok(Self {
            inputs: i,
            units: u,
            weights,
            bias: reorder(&l.bias.value),
            projection,
            projected,
        })
    }

    /// Bytes of packed weights a step reads.
    pub fn bytes(&self) -> usize {
        self.weights.bytes()
    }

    /// Width of a row of [`PackedLstm::project`]'s output.
    pub fn projection_width(&self) -> usize {
        self.bias.len()
    }

    /// The left-out rows' share of the pre-activations for `rows` rows of their inputs
    /// (`x` is `[rows, projected]`): `[rows, projection_width]`, in f32 whatever the format.
    pub fn project(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let n = self.projection_width();
        let mut out = vec![0.0; rows * n];
        gemm(
            rows,
            self.projected,
            n,
            1.0,
            x,
            Trans::No,
            &self.projection,
            Trans::No,
            0.0,
            &mut out,
        );
        out
    }

    /// One step for every row of `state`, as [`Lstm::step`]: `x` holds the inputs after the
    /// projected ones (`[rows, in − projected]`) and `xz` the projected rows' share from
    /// [`PackedLstm::project`] (`[rows, projection_width]`; empty when nothing is projected).
    pub fn step(&self, x: &[f32], xz: &[f32], state: &mut LstmState) {
        let (i, u) = (self.inputs - self.projected, self.units);
        let rows = state.h.len() / u;
        assert_eq!(x.len(), rows * i, "LSTM step input is not {rows}×{i}");
        let width = self.projection_width();
        assert_eq!(
            xz.len(),
            if self.projected == 0 { 0 } else { rows * width },
            "projected share"
        );
        let mut a = Vec::with_capacity(rows * (i + u));
        for r in 0..rows {
            a.extend_from_slice(&x[r * i..(r + 1) * i]);
            a.extend_from_slice(&state.h[r * u..(r + 1) * u]);
        }
        let mut out = fill_panels(&self.bias, rows);
        if !xz.is_empty() {
            for (p, panel) in out.chunks_exact_mut(rows * PANEL).enumerate() {
                for (r, z) in panel.chunks_exact_mut(PANEL).enumerate() {
                    let share = &xz[r * width + p * PANEL..r * width + (p + 1) * PANEL];
                    z.iter_mut().zip(share).for_each(|(z, s)| *z += s);
                }
            }
        }
        let c_prev = &state.c;
        self.weights.mul(&a, rows, &mut out, |p, block| {
            let u0 = p * UNITS;
            let n = UNITS.min(u - u0);
            for (r, z) in block.chunks_exact_mut(PANEL).enumerate() {
                cell(z, &c_prev[r * u + u0..r * u + u0 + n]);
            }
        });
        for (p, panel) in out.chunks_exact(rows * PANEL).enumerate() {
            let u0 = p * UNITS;
            let n = UNITS.min(u - u0);
            for (r, z) in panel.chunks_exact(PANEL).enumerate() {
                state.h[r * u + u0..r * u + u0 + n].copy_from_slice(&z[..n]);
                state.c[r * u + u0..r * u + u0 + n].copy_from_slice(&z[UNITS..UNITS + n]);
            }
        }
    }
}

autocaption_tensor::simd_fn! {
    /// The cell update of the `c_prev.len()` units of one panel row: `z` holds the
    /// pre-activations of gates i, f, c, o (16 each) and receives `h` in its first 16
    /// values and the new cell in the next 16.
    fn cell(z: &mut [f32], c_prev: &[f32]) {
        let z: &mut [f32; PANEL] = (&mut z[..PANEL]).try_into().expect("a panel row");
        // Whole panels of 16 (a part-empty last one padded), so the loop is one vector wide.
        let mut cp = [0.0f32; UNITS];
        cp[..c_prev.len()].copy_from_slice(c_prev);
        let mut h = [0.0f32; UNITS];
        let mut c = [0.0f32; UNITS];
        for j in 0..UNITS {
            let i = sigmoid(z[j]);
            let f = sigmoid(z[UNITS + j]);
            let g = tanh(z[2 * UNITS + j]);
            let o = sigmoid(z[3 * UNITS + j]);
            c[j] = f * cp[j] + i * g;
            h[j] = o * tanh(c[j]);
        }
        z[..UNITS].copy_from_slice(&h);
        z[UNITS..2 * UNITS].copy_from_slice(&c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autocaption_tensor::Rng;

    fn lstm(i: usize, u: usize, rng: &mut Rng) -> Lstm {
        let mut l = Lstm::new(i, u, rng);
        for v in &mut l.bias.value {
            *v += rng.uniform(-0.5, 0.5);
        }
        l
    }

    fn state(rows: usize, u: usize, rng: &mut Rng) -> LstmState {
        LstmState {
            h: (0..rows * u).map(|_| rng.uniform(-1.0, 1.0)).collect(),
            c: (0..rows * u).map(|_| rng.uniform(-2.0, 2.0)).collect(),
        }
    }

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn packed_lstm_step_equals_the_layer_step() {
        let mut rng = Rng::new(11);
        // Unit counts that fill panels, leave the last one part-empty, and fit in one.
        for &(i, u, rows) in &[(7, 32, 1), (5, 21, 3), (9, 3, 6), (40, 48, 5)] {
            let l = lstm(i, u, &mut rng);
            let x: Vec<f32> = (0..rows * i).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let s0 = state(rows, u, &mut rng);
            let mut want = s0.clone();
            l.step(&x, &mut want);
            // Every input packed, none, or some projected by the caller.
            for projected in [0, i, i / 2] {
                let p = PackedLstm::new(&l, WeightFormat::F32, projected).unwrap();
                let (first, rest): (Vec<f32>, Vec<f32>) = {
                    let mut f = Vec::new();
                    let mut r = Vec::new();
                    for row in x.chunks_exact(i) {
                        f.extend_from_slice(&row[..projected]);
                        r.extend_from_slice(&row[projected..]);
                    }
                    (f, r)
                };
                let xz = if projected == 0 {
                    Vec::new()
                } else {
                    p.project(&first, rows)
                };
                let mut got = s0.clone();
                p.step(&rest, &xz, &mut got);
                assert!(worst(&got.h, &want.h) < 1e-6, "{i}→{u} ({projected}): h");
                assert!(worst(&got.c, &want.c) < 1e-6, "{i}→{u} ({projected}): c");
            }
            // Half precision: the same step on weights rounded to 11 significant bits.
            let mut half = s0.clone();
            PackedLstm::new(&l, WeightFormat::F16, 0)
                .unwrap()
                .step(&x, &[], &mut half);
            let dh = worst(&half.h, &want.h);
            assert!(dh < 2e-3 && dh > 0.0, "{i}→{u}: f16 h off by {dh}");
        }
    }

    #[test]
    fn packed_dense_equals_the_layer() {
        let mut rng = Rng::new(12);
        for relu in [false, true] {
            let mut d = Dense::new(33, 70, relu, &mut rng);
            for v in &mut d.bias.value {
                *v = rng.uniform(-0.5, 0.5);
            }
            let x: Vec<f32> = (0..4 * 33).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let (mut want, mut got) = (Vec::new(), Vec::new());
            d.forward(&x, 4, &mut want);
            PackedDense::new(&d, WeightFormat::F32)
                .unwrap()
                .forward(&x, 4, &mut got);
            assert!(worst(&got, &want) < 1e-6);
        }
    }

    #[test]
    fn a_weight_beyond_half_precision_is_named() {
        let mut rng = Rng::new(13);
        let mut l = lstm(3, 4, &mut rng);
        l.recurrent.value[2 * 16 + 5] = 7e4; // recurrent row 2, column 5
        for projected in [0, 2] {
            let err = PackedLstm::new(&l, WeightFormat::F16, projected).unwrap_err();
            assert_eq!((err.row, err.column, err.value), (3 + 2, 5, 7e4));
        }
        assert!(PackedLstm::new(&l, WeightFormat::F32, 0).is_ok());
    }
}
