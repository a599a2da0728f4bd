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
        data: vec![f32::NEG_INFINITY; x.n * oh * ow * x.c],
    };
    for n in 0..x.n {
        for oy in 0..oh {
            for ox in 0..ow {
                let dst = ((n * oh + oy) * ow + ox) * x.c;
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
                        let src = ((n * x.h + iy as usize) * x.w + ix as usize) * x.c;
                        for c in 0..x.c {
                            let v = x.data[src + c];
                            let d = &mut out.data[dst + c];
                            if v > *d {
                                *d = v;
                            }
                        }
                    }
                }
            }
        }
    }
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
