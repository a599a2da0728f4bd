use autocaption_tensor::{gemm, glorot_uniform, orthogonal, sigmoid, tanh, Rng, Trans};

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
    // Forward caches for backward: gate activations [rows, 4u], cell [rows, u], tanh(cell).
    gates: Vec<f32>,
    cell: Vec<f32>,
    tanh_cell: Vec<f32>,
}

/// Turns pre-activations `z` (one row, `[4u]`) into gate activations in place and advances
/// the cell: writes the new `c`, `tanh(c)` and `h`.
#[inline]
fn cell_update(
    z: &mut [f32],
    c_prev: Option<&[f32]>,
    c: &mut [f32],
    tc: &mut [f32],
    h: &mut [f32],
) {
    let u = c.len();
    let (zi, rest) = z.split_at_mut(u);
    let (zf, rest) = rest.split_at_mut(u);
    let (zg, zo) = rest.split_at_mut(u);
    for j in 0..u {
        let i = sigmoid(zi[j]);
        let f = sigmoid(zf[j]);
        let g = tanh(zg[j]);
        let o = sigmoid(zo[j]);
        let cp = c_prev.map_or(0.0, |p| p[j]);
        let cn = f * cp + i * g;
        let t = tanh(cn);
        zi[j] = i;
        zf[j] = f;
        zg[j] = g;
        zo[j] = o;
        c[j] = cn;
        tc[j] = t;
        h[j] = o * t;
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
            gates: Vec::new(),
            cell: Vec::new(),
            tanh_cell: Vec::new(),
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
        gemm(
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
        self.cell.resize(n * u, 0.0);
        self.tanh_cell.resize(n * u, 0.0);
        h.clear();
        h.resize(n * u, 0.0);
        for t in 0..p.steps() {
            let (r0, a) = (p.offset(t), p.active(t));
            if t > 0 {
                // z_t += h_{t-1}·R for the sequences still running (a prefix of step t-1's rows).
                let rp = p.offset(t - 1);
                gemm(
                    a,
                    u,
                    g4,
                    1.0,
                    &h[rp * u..(rp + a) * u],
                    Trans::No,
                    &self.recurrent.value,
                    Trans::No,
                    1.0,
                    &mut self.gates[r0 * g4..(r0 + a) * g4],
                );
            }
            for b in 0..a {
                let r = r0 + b;
                let (c_done, c_now) = self.cell.split_at_mut(r * u);
                let c_prev = (t > 0).then(|| {
                    let rp = p.offset(t - 1) + b;
                    &c_done[rp * u..(rp + 1) * u]
                });
                cell_update(
                    &mut self.gates[r * g4..(r + 1) * g4],
                    c_prev,
                    &mut c_now[..u],
                    &mut self.tanh_cell[r * u..(r + 1) * u],
                    &mut h[r * u..(r + 1) * u],
                );
            }
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
        let mut dz = vec![0.0f32; n * g4];
        // Rᵀ stored once: the per-step product with a transposed operand runs at a fifth of
        // the speed in the AVX-512 GEMM kernels (benches/gemm.rs in autocaption-tensor).
        let mut rt = vec![0.0f32; g4 * u];
        for r in 0..u {
            for c in 0..g4 {
                rt[c * u + r] = self.recurrent.value[r * g4 + c];
            }
        }
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
            for b in 0..a {
                let r = r0 + b;
                let g = &self.gates[r * g4..(r + 1) * g4];
                let tc = &self.tanh_cell[r * u..(r + 1) * u];
                let cp = (t > 0).then(|| {
                    let rp = p.offset(t - 1) + b;
                    &self.cell[rp * u..(rp + 1) * u]
                });
                let dzr = &mut dz[r * g4..(r + 1) * g4];
                let carried = b < a_next;
                for j in 0..u {
                    let (gi, gf, gg, go) = (g[j], g[u + j], g[2 * u + j], g[3 * u + j]);
                    let mut dhj = dh[r * u + j];
                    let mut dc = 0.0;
                    if carried {
                        dhj += dh_next[b * u + j];
                        dc = dc_next[b * u + j];
                    }
                    dc += dhj * go * (1.0 - tc[j] * tc[j]);
                    let cpj = cp.map_or(0.0, |c| c[j]);
                    dzr[j] = dc * gg * gi * (1.0 - gi);
                    dzr[u + j] = dc * cpj * gf * (1.0 - gf);
                    dzr[2 * u + j] = dc * gi * (1.0 - gg * gg);
                    dzr[3 * u + j] = dhj * tc[j] * go * (1.0 - go);
                    dc_next[b * u + j] = dc * gf;
                }
            }
            if t > 0 {
                // dh_{t-1} = dz_t·Rᵀ for the running sequences.
                gemm(
                    a,
                    g4,
                    u,
                    1.0,
                    &dz[r0 * g4..(r0 + a) * g4],
                    Trans::No,
                    &rt,
                    Trans::No,
                    0.0,
                    &mut dh_next[..a * u],
                );
            }
        }
        // Weight gradients as single large products over all rows.
        gemm(
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
        let mut h_prev = vec![0.0f32; n * u];
        for t in 1..p.steps() {
            let (r0, a, rp) = (p.offset(t), p.active(t), p.offset(t - 1));
            h_prev[r0 * u..(r0 + a) * u].copy_from_slice(&h[rp * u..(rp + a) * u]);
        }
        gemm(
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
            gemm(
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
        gemm(
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
        gemm(
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
        let mut tc = vec![0.0f32; u];
        for b in 0..batch {
            cell_update(
                &mut z[b * g4..(b + 1) * g4],
                Some(&c_prev[b * u..(b + 1) * u]),
                &mut state.c[b * u..(b + 1) * u],
                &mut tc,
                &mut state.h[b * u..(b + 1) * u],
            );
        }
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
