use rayon::prelude::*;

use crate::{Maps, Padding};

/// Max pooling with a `k×k` window; padded positions never win (they are −∞).
pub fn max_pool(x: &Maps, k: usize, stride: usize, pad: Padding) -> Maps {
    let oh = (x.h + pad.top + pad.bottom - k) / stride + 1;
    let ow = (x.w + pad.left + pad.right - k) / stride + 1;
    let mut out = Maps {
        n: x.n,
        h: oh,
        w: ow,
        c: x.c,
        data: crate::buffers::take(x.n * oh * ow * x.c),
    };
    // One task per output row; each output pixel takes the max over its window's pixels.
    let c = x.c;
    out.data
        .par_chunks_mut((ow * c).max(1))
        .enumerate()
        .for_each(|(row, dst_row)| {
            dst_row.fill(f32::NEG_INFINITY);
            let (n, oy) = (row / oh, row % oh);
            for (ox, dst) in dst_row.chunks_exact_mut(c).enumerate() {
                for ky in 0..k {
                    let iy = (oy * stride + ky) as isize - pad.top as isize;
                    if iy < 0 || iy >= x.h as isize {
                        continue;
                    }
                    for kx in 0..k {
                        let ix = (ox * stride + kx) as isize - pad.left as isize;
                        if ix < 0 || ix >= x.w as isize {
                            continue;
                        }
                        let src = ((n * x.h + iy as usize) * x.w + ix as usize) * c;
                        for (d, &v) in dst.iter_mut().zip(&x.data[src..src + c]) {
                            *d = d.max(v);
                        }
                    }
                }
            }
        });
    out
}

/// Mean over height and width: `[n, c]`.
pub fn global_average_pool(x: &Maps) -> Vec<f32> {
    let mut out = vec![0.0f32; x.n * x.c];
    let hw = x.h * x.w;
    for n in 0..x.n {
        let o = &mut out[n * x.c..(n + 1) * x.c];
        for p in 0..hw {
            let src = &x.data[(n * hw + p) * x.c..(n * hw + p + 1) * x.c];
            for (a, b) in o.iter_mut().zip(src) {
                *a += b;
            }
        }
        for a in o.iter_mut() {
            *a /= hw as f32;
        }
    }
    out
}
