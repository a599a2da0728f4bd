//! The layers of the concept network with their backward passes, on NHWC batches: 3×3
//! convolution (stride 1, zero padding 1) as im2col and the shared GEMM, ReLU, 2×2 max
//! pooling and 2×2 average pooling.

use autocaption_tensor::{gemm, Trans};
use rayon::prelude::*;

/// Patches of a `[n, h, w, c]` map for a 3×3 convolution with padding 1: `[n·h·w, 9·c]`,
/// each row in (ky, kx, c) order; outside the map is zero. Written into `col`, whose memory
/// is reused from batch to batch (fresh buffers of megabytes each cost page faults).
pub fn im2col(x: &[f32], n: usize, h: usize, w: usize, c: usize, col: &mut Vec<f32>) {
    let k = 9 * c;
    col.clear();
    col.resize(n * h * w * k, 0.0);
    col.par_chunks_mut(w * k)
        .enumerate()
        .for_each(|(row, dst)| {
            let (img, y) = (row / h, row % h);
            for ky in 0..3 {
                let iy = y as isize + ky as isize - 1;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let line = &x[(img * h + iy as usize) * w * c..][..w * c];
                for xo in 0..w {
                    for kx in 0..3 {
                        let ix = xo as isize + kx as isize - 1;
                        if ix < 0 || ix >= w as isize {
                            continue;
                        }
                        let at = xo * k + (ky * 3 + kx) * c;
                        dst[at..at + c].copy_from_slice(&line[ix as usize * c..][..c]);
                    }
                }
            }
        });
}

/// The adjoint of [`im2col`]: sums each patch gradient back onto the map it came from.
pub fn col2im(col: &[f32], n: usize, h: usize, w: usize, c: usize) -> Vec<f32> {
    let k = 9 * c;
    let mut x = vec![0.0f32; n * h * w * c];
    // One image per task: patches only reach pixels of their own image.
    x.par_chunks_mut(h * w * c)
        .enumerate()
        .for_each(|(img, dst)| {
            for y in 0..h {
                for xo in 0..w {
                    let src = &col[((img * h + y) * w + xo) * k..][..k];
                    for ky in 0..3 {
                        let iy = y as isize + ky as isize - 1;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..3 {
                            let ix = xo as isize + kx as isize - 1;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            let d = &mut dst[(iy as usize * w + ix as usize) * c..][..c];
                            let s = &src[(ky * 3 + kx) * c..][..c];
                            d.iter_mut().zip(s).for_each(|(d, s)| *d += s);
                        }
                    }
                }
            }
        });
    x
}

/// `y = relu(col·W + b)`: `col` is `[rows, k]`, `weight` `[k, cout]`; `y` is overwritten.
pub fn conv_forward(col: &[f32], rows: usize, weight: &[f32], bias: &[f32], y: &mut Vec<f32>) {
    let cout = bias.len();
    let k = weight.len() / cout;
    y.clear();
    y.extend(bias.iter().copied().cycle().take(rows * cout));
    gemm(
        rows,
        k,
        cout,
        1.0,
        col,
        Trans::No,
        weight,
        Trans::No,
        1.0,
        y,
    );
    y.iter_mut().for_each(|v| *v = v.max(0.0));
}

/// Backward of [`conv_forward`] given its output `y` and `dy` (ReLU's gate applied here):
/// adds the weight and bias gradients and writes the patch gradient `[rows, k]` into `dcol`
/// when given.
#[allow(clippy::too_many_arguments)]
pub fn conv_backward(
    col: &[f32],
    rows: usize,
    weight: &[f32],
    y: &[f32],
    dy: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dcol: Option<&mut Vec<f32>>,
) {
    let cout = dbias.len();
    let k = weight.len() / cout;
    dy.iter_mut().zip(y).for_each(|(g, &v)| {
        if v <= 0.0 {
            *g = 0.0;
        }
    });
    gemm(
        k,
        rows,
        cout,
        1.0,
        col,
        Trans::Yes,
        dy,
        Trans::No,
        1.0,
        dweight,
    );
    for row in dy.chunks_exact(cout) {
        dbias.iter_mut().zip(row).for_each(|(b, g)| *b += g);
    }
    if let Some(dcol) = dcol {
        dcol.resize(rows * k, 0.0); // overwritten: beta is 0
        gemm(
            rows,
            cout,
            k,
            1.0,
            dy,
            Trans::No,
            weight,
            Trans::Yes,
            0.0,
            dcol,
        );
    }
}

/// 2×2 max pooling, stride 2 (`h`, `w` even): the output and, per output value, the index
/// of the input value it took.
pub fn max_pool(x: &[f32], n: usize, h: usize, w: usize, c: usize) -> (Vec<f32>, Vec<u32>) {
    let (oh, ow) = (h / 2, w / 2);
    let mut y = vec![0.0f32; n * oh * ow * c];
    let mut arg = vec![0u32; y.len()];
    for img in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let o = ((img * oh + oy) * ow + ox) * c + ch;
                    let mut best = (f32::NEG_INFINITY, 0usize);
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let i = ((img * h + 2 * oy + dy) * w + 2 * ox + dx) * c + ch;
                        if x[i] > best.0 {
                            best = (x[i], i);
                        }
                    }
                    (y[o], arg[o]) = (best.0, best.1 as u32);
                }
            }
        }
    }
    (y, arg)
}

/// Backward of [`max_pool`]: each output gradient goes to the input it took.
pub fn max_pool_backward(dy: &[f32], arg: &[u32], input_len: usize) -> Vec<f32> {
    let mut dx = vec![0.0f32; input_len];
    for (&g, &i) in dy.iter().zip(arg) {
        dx[i as usize] += g;
    }
    dx
}

/// 2×2 average pooling, stride 2 (`h`, `w` even).
pub fn avg_pool(x: &[f32], n: usize, h: usize, w: usize, c: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut y = vec![0.0f32; n * oh * ow * c];
    for img in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = &mut y[((img * oh + oy) * ow + ox) * c..][..c];
                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let i = ((img * h + 2 * oy + dy) * w + 2 * ox + dx) * c;
                    o.iter_mut()
                        .zip(&x[i..i + c])
                        .for_each(|(o, v)| *o += 0.25 * v);
                }
            }
        }
    }
    y
}

/// Backward of [`avg_pool`].
pub fn avg_pool_backward(dy: &[f32], n: usize, h: usize, w: usize, c: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut dx = vec![0.0f32; n * h * w * c];
    for img in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let g = &dy[((img * oh + oy) * ow + ox) * c..][..c];
                for (ddy, ddx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let i = ((img * h + 2 * oy + ddy) * w + 2 * ox + ddx) * c;
                    dx[i..i + c]
                        .iter_mut()
                        .zip(g)
                        .for_each(|(d, g)| *d += 0.25 * g);
                }
            }
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use autocaption_tensor::Rng;

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), g> = <x, col2im(g)> for any x and g.
        let mut rng = Rng::new(1);
        let (n, h, w, c) = (2, 5, 4, 3);
        let x: Vec<f32> = (0..n * h * w * c).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let g: Vec<f32> = (0..n * h * w * 9 * c)
            .map(|_| rng.uniform(-1.0, 1.0))
            .collect();
        let mut col = Vec::new();
        im2col(&x, n, h, w, c, &mut col);
        let lhs: f64 = col.iter().zip(&g).map(|(a, b)| f64::from(a * b)).sum();
        let rhs: f64 = x
            .iter()
            .zip(&col2im(&g, n, h, w, c))
            .map(|(a, b)| f64::from(a * b))
            .sum();
        assert!((lhs - rhs).abs() < 1e-4, "{lhs} vs {rhs}");
    }

    #[test]
    fn im2col_convolution_matches_a_direct_one() {
        let mut rng = Rng::new(2);
        let (n, h, w, c, cout) = (1, 4, 3, 2, 3);
        let x: Vec<f32> = (0..n * h * w * c).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let wt: Vec<f32> = (0..9 * c * cout).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let b = vec![0.1, -0.2, 0.3];
        let (mut col, mut y) = (Vec::new(), Vec::new());
        im2col(&x, n, h, w, c, &mut col);
        conv_forward(&col, h * w, &wt, &b, &mut y);
        for yy in 0..h {
            for xx in 0..w {
                for o in 0..cout {
                    let mut s = b[o];
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = (yy as isize + ky - 1, xx as isize + kx - 1);
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            for ci in 0..c {
                                let xv = x[(iy as usize * w + ix as usize) * c + ci];
                                s += xv * wt[(((ky * 3 + kx) as usize) * c + ci) * cout + o];
                            }
                        }
                    }
                    let got = y[(yy * w + xx) * cout + o];
                    assert!((got - s.max(0.0)).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn pools_route_gradients() {
        let x = [1.0, 5.0, 2.0, 3.0]; // one 2×2 image, one channel
        let (y, arg) = max_pool(&x, 1, 2, 2, 1);
        assert_eq!((y[0], arg[0]), (5.0, 1));
        assert_eq!(max_pool_backward(&[2.0], &arg, 4), vec![0.0, 2.0, 0.0, 0.0]);
        assert_eq!(avg_pool(&x, 1, 2, 2, 1), vec![2.75]);
        assert_eq!(avg_pool_backward(&[4.0], 1, 2, 2, 1), vec![1.0; 4]);
    }
}
