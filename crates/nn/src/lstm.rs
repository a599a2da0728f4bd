use autocaption_tensor::{
    gemm, gemm_bf16_packed, glorot_uniform, matmul, orthogonal, sigmoid, tanh, PackedB, Precision,
    Rng, Trans,
};

use crate::{Packing, Param};

/// The state an LSTM carries from one step to the next, for `batch` sequences.
#[derive(Debug, Clone, PartialEq)]
pub struct LstmState {
    /// Hidden state `[batch, units]`.
    pub h: Vec<f32>,
    /// Cell state `[batch, units]`.
    pub c: Vec<f32>,
}

impl LstmState {
    /// The zero state Keras starts from.
    pub fn zeros(batch: usize, units: usize) -> Self {
        Self {
            h: vec![0.0; batch * units],
            c: vec![0.0; batch * units],
        }
    }
}

/// R or Rᵀ made ready for the per-step products, once per pass: in bf16 it is packed once
/// rather than at every step.
enum StepMatrix<'a> {
    F32(std::borrow::Cow<'a, [f32]>, usize, usize),
    Bf16(PackedB),
}

impl StepMatrix<'_> {
    /// `c = a·M + beta·c` for `rows` rows.
    fn mul(&self, rows: usize, a: &[f32], beta: f32, c: &mut [f32]) {
        match self {
            StepMatrix::F32(m, k, n) => {
                gemm(rows, *k, *n, 1.0, a, Trans::No, m, Trans::No, beta, c)
            }
            StepMatrix::Bf16(p) => gemm_bf16_packed(rows, 1.0, a, Trans::No, p, beta, c),
        }
    }
}

/// Keras `LSTM` (TF 2 defaults): gates i, f, c, o in that column order; sigmoid recurrent
/// activation, tanh activation; one bias; `c = f·c' + i·tanh(z_c)`, `h = o·tanh(c)`.
/// `forward` runs whole packed sequences (Keras with a mask on post-padded input, i.e.
/// outputs at real positions only); `step` runs one step for incremental decoding.
#[derive(Debug, Clone)]
pub struct Lstm {
    /// `[in, 4·units]`, Keras `kernel`.
    pub kernel: Param,
    /// `[units, 4·units]`, Keras `recurrent_kernel`.
    pub recurrent: Param,
    /// `[4·units]`, Keras `bias`.
    pub bias: Param,
    /// Arithmetic of the matrix products.
    pub precision: Precision,
    // Forward caches for backward: gate activations [rows, 4u], cell [rows, u], tanh(cell).
    gates: Vec<f32>,
    cell: Vec<f32>,
    tanh_cell: Vec<f32>,
    // Backward scratch, kept between batches so that megabytes are not reallocated (and
    // zeroed) every time: gate gradients [rows, 4u] and the shifted hidden states [rows, u].
    dz: Vec<f32>,
    h_prev: Vec<f32>,
}

autocaption_tensor::simd_fn! {
    /// One step for `rows` sequences: turns the pre-activations `z` (`[rows, 4u]`) into gate
    /// activations in place and writes the new cell `c`, `tanh(c)` and hidden `h`
    /// (`[rows, u]` each). `c_prev` is `[rows, u]`, or empty for the zero state.
    fn cell_forward(z: &mut [f32], c_prev: &[f32], c: &mut [f32], tc: &mut [f32], h: &mut [f32], u: usize) {
        let rows = c.len() / u;
        for b in 0..rows {
            let zr = &mut z[b * 4 * u..(b + 1) * 4 * u];
            let (zi, rest) = zr.split_at_mut(u);
            let (zf, rest) = rest.split_at_mut(u);
            let (zg, zo) = rest.split_at_mut(u);
            let cr = &mut c[b * u..(b + 1) * u];
            let tr = &mut tc[b * u..(b + 1) * u];
            let hr = &mut h[b * u..(b + 1) * u];
            let cp: &[f32] = if c_prev.is_empty() { &[] } else { &c_prev[b * u..(b + 1) * u] };
            row_forward(zi, zf, zg, zo, cp, cr, tr, hr);
        }
    }
}

/// One row of [`cell_forward`]. Separate `&mut` arguments tell the compiler the gate rows do
/// not alias, which it needs to vectorise the loop (slices from `split_at_mut` are not enough).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row_forward(
    zi: &mut [f32],
    zf: &mut [f32],
    zg: &mut [f32],
    zo: &mut [f32],
    cp: &[f32],
    cr: &mut [f32],
    tr: &mut [f32],
    hr: &mut [f32],
) {
    let u = cr.len();
    let (zi, zf, zg, zo, tr, hr) = (
        &mut zi[..u],
        &mut zf[..u],
        &mut zg[..u],
        &mut zo[..u],
        &mut tr[..u],
        &mut hr[..u],
    );
    if cp.is_empty() {
        for j in 0..u {
            let i = sigmoid(zi[j]);
            let g = tanh(zg[j]);
            let o = sigmoid(zo[j]);
            let cn = i * g;
            let t = tanh(cn);
            zi[j] = i;
            zf[j] = sigmoid(zf[j]);
            zg[j] = g;
            zo[j] = o;
            cr[j] = cn;
            tr[j] = t;
            hr[j] = o * t;
        }
    } else {
        let cp = &cp[..u];
        for j in 0..u {
            let i = sigmoid(zi[j]);
            let f = sigmoid(zf[j]);
            let g = tanh(zg[j]);
            let o = sigmoid(zo[j]);
            let cn = f * cp[j] + i * g;
            let t = tanh(cn);
            zi[j] = i;
            zf[j] = f;
            zg[j] = g;
            zo[j] = o;
            cr[j] = cn;
            tr[j] = t;
            hr[j] = o * t;
        }
    }
}

autocaption_tensor::simd_fn! {
    /// Backward of [`cell_forward`] for one step of `rows` sequences. `dh` is the gradient
    /// arriving at this step's outputs; `dh_next`/`dc_next` (`[rows, u]`) hold what flows
    /// back from the next step for its first `carried` rows, and `dc_next` is overwritten
    /// with the gradient for the previous cell state. Writes the pre-activation gradients.
    #[allow(clippy::too_many_arguments)]
    fn cell_backward(g: &[f32], tc: &[f32], c_prev: &[f32], dh: &[f32], dh_next: &[f32], dc_next: &mut [f32], carried: usize, dz: &mut [f32], u: usize) {
        let rows = tc.len() / u;
        for b in 0..rows {
            let gr = &g[b * 4 * u..(b + 1) * 4 * u];
            let (gi, rest) = gr.split_at(u);
            let (gf, rest) = rest.split_at(u);
            let (gg, go) = rest.split_at(u);
            let dzr = &mut dz[b * 4 * u..(b + 1) * 4 * u];
            let (dzi, rest) = dzr.split_at_mut(u);
            let (dzf, rest) = rest.split_at_mut(u);
            let (dzg, dzo) = rest.split_at_mut(u);
            let tr = &tc[b * u..(b + 1) * u];
            let dhr = &dh[b * u..(b + 1) * u];
            let cp: &[f32] = if c_prev.is_empty() { &[] } else { &c_prev[b * u..(b + 1) * u] };
            let (dhn, dcn): (&[f32], &mut [f32]) = (&dh_next[b * u..(b + 1) * u], &mut dc_next[b * u..(b + 1) * u]);
            let carry = if b < carried { 1.0f32 } else { 0.0 };
            assert!(gf.len() == u && gg.len() == u && go.len() == u && dzf.len() == u && dzg.len() == u && dzo.len() == u);
            assert!(tr.len() == u && dhr.len() == u && dhn.len() == u && dcn.len() == u);
            for j in 0..u {
                let (i, f, gv, o) = (gi[j], gf[j], gg[j], go[j]);
                let dhj = dhr[j] + carry * dhn[j];
                let dc = carry * dcn[j] + dhj * o * (1.0 - tr[j] * tr[j]);
                let cpj = if cp.is_empty() { 0.0 } else { cp[j] };
                dzi[j] = dc * gv * i * (1.0 - i);
                dzf[j] = dc * cpj * f * (1.0 - f);
                dzg[j] = dc * i * (1.0 - gv * gv);
                dzo[j] = dhj * tr[j] * o * (1.0 - o);
                dcn[j] = dc * f;
            }
        }
    }
}

impl Lstm {
    /// Keras' initialisation: glorot-uniform kernel, orthogonal recurrent kernel, zero bias
    /// with the forget gate's part set to one (`unit_forget_bias`).
    pub fn new(inputs: usize, units: usize, rng: &mut Rng) -> Self {
        let mut bias = vec![0.0; 4 * units];
        bias[units..2 * units].fill(1.0);
        Self {
            kernel: Param::new(&[inputs, 4 * units], glorot_uniform(rng, inputs, 4 * units)),
            recurrent: Param::new(&[units, 4 * units], orthogonal(rng, units, 4 * units)),
            bias: Param::new(&[4 * units], bias),
            precision: Precision::F32,
            gates: Vec::new(),
            cell: Vec::new(),
            tanh_cell: Vec::new(),
            dz: Vec::new(),
            h_prev: Vec::new(),
        }
    }

    /// Input width.
    pub fn inputs(&self) -> usize {
        self.kernel.shape[0]
    }

    /// Hidden width.
    pub fn units(&self) -> usize {
        self.recurrent.shape[0]
    }

    /// Runs packed sequences `x` (`[rows, in]`) from the zero state, writing every step's
    /// hidden state into `h` (`[rows, units]`, same packing). Keeps what backward needs.
    pub fn forward(&mut self, x: &[f32], p: &Packing, h: &mut Vec<f32>) {
        let (n, i, u) = (p.rows(), self.inputs(), self.units());
        let g4 = 4 * u;
        // Input projections of every step at once, plus the bias.
        self.gates.clear();
        self.gates.reserve(n * g4);
        for _ in 0..n {
            self.gates.extend_from_slice(&self.bias.value);
        }
        matmul(
            self.precision,
            n,
            i,
            g4,
            1.0,
            x,
            Trans::No,
            &self.kernel.value,
            Trans::No,
            1.0,
            &mut self.gates,
        );
        let rmat = match self.precision {
            Precision::F32 => {
                StepMatrix::F32(std::borrow::Cow::Borrowed(&self.recurrent.value), u, g4)
            }
            Precision::Bf16 => {
                StepMatrix::Bf16(PackedB::new(&self.recurrent.value, Trans::No, u, g4))
            }
        };
        self.cell.resize(n * u, 0.0);
        self.tanh_cell.resize(n * u, 0.0);
        h.clear();
        h.resize(n * u, 0.0);
        for t in 0..p.steps() {
            let (r0, a) = (p.offset(t), p.active(t));
            if t > 0 {
                // z_t += h_{t-1}·R for the sequences still running (a prefix of step t-1's rows).
                let rp = p.offset(t - 1);
                rmat.mul(
                    a,
                    &h[rp * u..(rp + a) * u],
                    1.0,
                    &mut self.gates[r0 * g4..(r0 + a) * g4],
                );
            }
            let (c_done, c_now) = self.cell.split_at_mut(r0 * u);
            let c_prev: &[f32] = if t > 0 {
                let rp = p.offset(t - 1);
                &c_done[rp * u..(rp + a) * u]
            } else {
                &[]
            };
            cell_forward(
                &mut self.gates[r0 * g4..(r0 + a) * g4],
                c_prev,
                &mut c_now[..a * u],
                &mut self.tanh_cell[r0 * u..(r0 + a) * u],
                &mut h[r0 * u..(r0 + a) * u],
                u,
            );
        }
    }

    /// Backward through the last `forward`: `x` and `h` are its input and output, `dh` the
    /// gradient of the loss with respect to `h`. Accumulates the parameter gradients and, if
    /// asked, writes the input gradient `[rows, in]` into `dx`.
    pub fn backward(
        &mut self,
        x: &[f32],
        h: &[f32],
        dh: &[f32],
        p: &Packing,
        dx: Option<&mut Vec<f32>>,
    ) {
        let (n, i, u) = (p.rows(), self.inputs(), self.units());
        let g4 = 4 * u;
        // Every element is written by the step loop below, so old contents do not matter.
        let mut dz = std::mem::take(&mut self.dz);
        dz.resize(n * g4, 0.0);
        // Rᵀ made once: stored transposed in f32 (the per-step product with a transposed
        // operand runs at a fifth of the speed in the AVX-512 kernels, benches/gemm.rs in
        // autocaption-tensor), or packed in bf16.
        let rt = match self.precision {
            Precision::F32 => {
                let mut rt = vec![0.0f32; g4 * u];
                for r in 0..u {
                    for c in 0..g4 {
                        rt[c * u + r] = self.recurrent.value[r * g4 + c];
                    }
                }
                StepMatrix::F32(std::borrow::Cow::Owned(rt), g4, u)
            }
            Precision::Bf16 => {
                StepMatrix::Bf16(PackedB::new(&self.recurrent.value, Trans::Yes, g4, u))
            }
        };
        // Carried from step t+1: gradients of h and c for its running sequences.
        let mut dh_next = vec![0.0f32; p.batch() * u];
        let mut dc_next = vec![0.0f32; p.batch() * u];
        for t in (0..p.steps()).rev() {
            let (r0, a) = (p.offset(t), p.active(t));
            let a_next = if t + 1 < p.steps() {
                p.active(t + 1)
            } else {
                0
            };
            let c_prev: &[f32] = if t > 0 {
                let rp = p.offset(t - 1);
                &self.cell[rp * u..(rp + a) * u]
            } else {
                &[]
            };
            cell_backward(
                &self.gates[r0 * g4..(r0 + a) * g4],
                &self.tanh_cell[r0 * u..(r0 + a) * u],
                c_prev,
                &dh[r0 * u..(r0 + a) * u],
                &dh_next[..a * u],
                &mut dc_next[..a * u],
                a_next,
                &mut dz[r0 * g4..(r0 + a) * g4],
                u,
            );
            if t > 0 {
                // dh_{t-1} = dz_t·Rᵀ for the running sequences.
                rt.mul(a, &dz[r0 * g4..(r0 + a) * g4], 0.0, &mut dh_next[..a * u]);
            }
        }
        // Weight gradients as single large products over all rows.
        matmul(
            self.precision,
            i,
            n,
            g4,
            1.0,
            x,
            Trans::Yes,
            &dz,
            Trans::No,
            1.0,
            &mut self.kernel.grad,
        );
        let mut h_prev = std::mem::take(&mut self.h_prev);
        h_prev.resize(n * u, 0.0);
        // Step 0 starts from the zero state; later steps' rows are copied below.
        h_prev[..p.active(0) * u].fill(0.0);
        for t in 1..p.steps() {
            let (r0, a, rp) = (p.offset(t), p.active(t), p.offset(t - 1));
            h_prev[r0 * u..(r0 + a) * u].copy_from_slice(&h[rp * u..(rp + a) * u]);
        }
        matmul(
            self.precision,
            u,
            n,
            g4,
            1.0,
            &h_prev,
            Trans::Yes,
            &dz,
            Trans::No,
            1.0,
            &mut self.recurrent.grad,
        );
        for r in 0..n {
            for (b, g) in self.bias.grad.iter_mut().zip(&dz[r * g4..(r + 1) * g4]) {
                *b += g;
            }
        }
        if let Some(dx) = dx {
            dx.clear();
            dx.resize(n * i, 0.0);
            matmul(
                self.precision,
                n,
                g4,
                i,
                1.0,
                &dz,
                Trans::No,
                &self.kernel.value,
                Trans::Yes,
                0.0,
                dx,
            );
        }
        self.dz = dz;
        self.h_prev = h_prev;
    }

    /// One step for `batch` sequences: `x` is `[batch, in]`; `state` advances in place.
    pub fn step(&self, x: &[f32], state: &mut LstmState) {
        let (i, u) = (self.inputs(), self.units());
        let g4 = 4 * u;
        let batch = state.h.len() / u;
        let mut z = Vec::with_capacity(batch * g4);
        for _ in 0..batch {
            z.extend_from_slice(&self.bias.value);
        }
        matmul(
            self.precision,
            batch,
            i,
            g4,
            1.0,
            x,
            Trans::No,
            &self.kernel.value,
            Trans::No,
            1.0,
            &mut z,
        );
        matmul(
            self.precision,
            batch,
            u,
            g4,
            1.0,
            &state.h,
            Trans::No,
            &self.recurrent.value,
            Trans::No,
            1.0,
            &mut z,
        );
        let c_prev = state.c.clone();
        let mut tc = vec![0.0f32; batch * u];
        cell_forward(&mut z, &c_prev, &mut state.c, &mut tc, &mut state.h, u);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check;

    fn setup() -> (Lstm, Vec<f32>, Packing, Vec<f32>) {
        let mut rng = Rng::new(5);
        let (i, u) = (3, 4);
        let mut l = Lstm::new(i, u, &mut rng);
        l.bias
            .value
            .iter_mut()
            .for_each(|b| *b += rng.uniform(-0.3, 0.3));
        let p = Packing::new(&[4, 3, 3, 1]);
        let x: Vec<f32> = (0..p.rows() * i).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let probe: Vec<f32> = (0..p.rows() * u).map(|_| rng.uniform(-1.0, 1.0)).collect();
        (l, x, p, probe)
    }

    fn loss(l: &Lstm, x: &[f32], p: &Packing, probe: &[f32]) -> f64 {
        let mut l = l.clone();
        let mut h = Vec::new();
        l.forward(x, p, &mut h);
        h.iter()
            .zip(probe)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (mut l, x, p, probe) = setup();
        let mut h = Vec::new();
        l.forward(&x, &p, &mut h);
        let mut dx = Vec::new();
        l.backward(&x, &h, &probe, &p, Some(&mut dx));
        let base = l.clone();
        check("lstm x", &mut x.clone(), &dx, |xv| {
            loss(&base, xv, &p, &probe)
        });
        let grads = [
            base.kernel.grad.clone(),
            base.recurrent.grad.clone(),
            base.bias.grad.clone(),
        ];
        for (k, name) in ["kernel", "recurrent", "bias"].iter().enumerate() {
            let mut values = [&base.kernel, &base.recurrent, &base.bias][k].value.clone();
            check(&format!("lstm {name}"), &mut values, &grads[k], |v| {
                let mut e = base.clone();
                [&mut e.kernel, &mut e.recurrent, &mut e.bias][k].value = v.to_vec();
                loss(&e, &x, &p, &probe)
            });
        }
    }

    #[test]
    fn packed_forward_equals_one_sequence_at_a_time_and_step() {
        let (mut l, x, p, _) = setup();
        let (i, u) = (l.inputs(), l.units());
        let mut h = Vec::new();
        l.forward(&x, &p, &mut h);
        for b in 0..p.batch() {
            let mut state = LstmState::zeros(1, u);
            for t in 0..p.lengths()[b] {
                let r = p.row(t, b);
                l.step(&x[r * i..(r + 1) * i], &mut state);
                for j in 0..u {
                    assert!((state.h[j] - h[r * u + j]).abs() < 1e-6, "seq {b} step {t}");
                }
            }
        }
    }
}
