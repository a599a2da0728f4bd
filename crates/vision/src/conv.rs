use autocaption_tensor::{gemm, Trans};
use rayon::prelude::*;

use crate::Maps;

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
    }

    /// Applies the convolution; `residual`, if given, is added before the ReLU.
    pub fn forward(&self, x: &Maps, residual: Option<&Maps>) -> Maps {
        assert_eq!(
            x.c, self.cin,
            "conv expects {} input channels, got {}",
            self.cin, x.c
        );
        let (oh, ow) = self.out_size(x.h, x.w);
        let rows = x.n * oh * ow;
        let mut out = Maps {
            n: x.n,
            h: oh,
            w: ow,
            c: self.cout,
            data: vec![0.0; rows * self.cout],
        };
        let k = self.kh * self.kw * self.cin;
        let direct =
            self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == Padding::same(0);
        if direct {
            // A 1×1 convolution is one product over all pixels: no im2col.
            gemm(
                rows,
                k,
                self.cout,
                1.0,
                &x.data,
                Trans::No,
                &self.weight,
                Trans::No,
                0.0,
                &mut out.data,
            );
        } else {
            let cols = self.im2col(x, oh, ow);
            gemm(
                rows,
                k,
                self.cout,
                1.0,
                &cols,
                Trans::No,
                &self.weight,
                Trans::No,
                0.0,
                &mut out.data,
            );
        }
        // Bias, residual and ReLU in one parallel pass over the output.
        let (bias, relu, cout) = (&self.bias, self.relu, self.cout);
        let epilogue = |o: &mut [f32], r: Option<&[f32]>| {
            for (row_i, row) in o.chunks_mut(cout).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    let mut y = *v + bias[j];
                    if let Some(r) = r {
                        y += r[row_i * cout + j];
                    }
                    *v = if relu { y.max(0.0) } else { y };
                }
            }
        };
        const CHUNK_ROWS: usize = 64;
        match residual {
            Some(r) => {
                assert_eq!(r.data.len(), out.data.len(), "residual shape");
                out.data
                    .par_chunks_mut(CHUNK_ROWS * cout)
                    .zip(r.data.par_chunks(CHUNK_ROWS * cout))
                    .for_each(|(o, r)| epilogue(o, Some(r)));
            }
            None => out
                .data
                .par_chunks_mut(CHUNK_ROWS * cout)
                .for_each(|o| epilogue(o, None)),
        }
        out
    }

    /// Patches as rows `[n·oh·ow, kh·kw·cin]`, in (ky, kx, c) order to match HWIO weights.
    fn im2col(&self, x: &Maps, oh: usize, ow: usize) -> Vec<f32> {
        let k = self.kh * self.kw * self.cin;
        let mut cols = vec![0.0f32; x.n * oh * ow * k];
        let c = self.cin;
        cols.par_chunks_mut(k).enumerate().for_each(|(r, row)| {
            let (n, rem) = (r / (oh * ow), r % (oh * ow));
            let (oy, ox) = (rem / ow, rem % ow);
            for ky in 0..self.kh {
                let iy = (oy * self.stride + ky) as isize - self.pad.top as isize;
                if iy < 0 || iy >= x.h as isize {
                    continue;
                }
                for kx in 0..self.kw {
                    let ix = (ox * self.stride + kx) as isize - self.pad.left as isize;
                    if ix < 0 || ix >= x.w as isize {
                        continue;
                    }
                    let src = ((n * x.h + iy as usize) * x.w + ix as usize) * c;
                    let dst = (ky * self.kw + kx) * c;
                    row[dst..dst + c].copy_from_slice(&x.data[src..src + c]);
                }
            }
        });
        cols
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autocaption_tensor::Rng;

    fn naive(conv: &Conv, x: &Maps) -> Maps {
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
                        let v = s as f32;
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
        for (k, stride, pad) in [
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
        ] {
            let (cin, cout) = (5, 6);
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
            };
            let x = Maps {
                n: 2,
                h: 11,
                w: 9,
                c: cin,
                data: (0..2 * 11 * 9 * cin)
                    .map(|_| rng.uniform(-1.0, 1.0))
                    .collect(),
            };
            let (got, want) = (conv.forward(&x, None), naive(&conv, &x));
            assert_eq!((got.h, got.w), (want.h, want.w));
            let worst = got
                .data
                .iter()
                .zip(&want.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-4, "k{k} s{stride} {pad:?}: {worst}");
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
