//! Convolution, pooling and batch normalisation over 1 to 3 spatial dimensions.

use super::{opt, req, unsupported, Fact, InferError, Inputs, NodeCx, NodeIo, Op, Registry};
use crate::dtype::DType;
use crate::emitter::Emitter;

const CONV: &str = include_str!("../../c/conv.c");
const POOL: &str = include_str!("../../c/pool.c");
const IM2COL: &str = include_str!("../../c/im2col.c");
/// Floats of the block of B `mmw.c` packs.
const PACK_FLOATS: usize = 256 * 256;

pub(super) fn register(r: &mut Registry) {
    r.add("Conv", |cx| {
        Ok(Box::new(Conv {
            window: Window::read(cx)?,
            group: cx.int_or("group", 1)?.max(1) as usize,
            residual: false,
            relu: false,
        }))
    });
    r.add("MaxPool", |cx| {
        Ok(Box::new(Pool {
            window: Window::read(cx)?,
            avg: false,
            count_include_pad: false,
            col_major: cx.int_or("storage_order", 0)? != 0,
        }))
    });
    r.add("AveragePool", |cx| {
        Ok(Box::new(Pool {
            window: Window::read(cx)?,
            avg: true,
            count_include_pad: cx.int_or("count_include_pad", 0)? != 0,
            col_major: false,
        }))
    });
    r.add("BatchNormalization", |cx| {
        if cx.opset < 9 && cx.int_or("spatial", 1)? == 0 {
            return unsupported("BatchNormalization with spatial=0");
        }
        Ok(Box::new(BatchNorm {
            epsilon: cx.float("epsilon")?.unwrap_or(1e-5),
            momentum: cx.float("momentum")?.unwrap_or(0.9),
            training: cx.int_or("training_mode", 0)? != 0,
        }))
    });
}

/// The sliding-window attributes shared by Conv and the pools.
#[derive(Debug, Clone)]
struct Window {
    kernel: Option<Vec<i64>>,
    strides: Option<Vec<i64>>,
    pads: Option<Vec<i64>>,
    dilations: Option<Vec<i64>>,
    auto_pad: String,
    ceil: bool,
}

/// A window resolved for one input: per spatial axis (always 3, leading 1s).
struct Geometry {
    input: [usize; 3],
    output: [usize; 3],
    kernel: [usize; 3],
    stride: [usize; 3],
    pad: [usize; 3],
    pad_end: [usize; 3],
    dil: [usize; 3],
    spatial: usize,
}

impl Window {
    fn read(cx: &NodeCx) -> Result<Self, String> {
        let auto_pad = cx.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        if !matches!(
            auto_pad.as_str(),
            "NOTSET" | "SAME_UPPER" | "SAME_LOWER" | "VALID"
        ) {
            return Err(format!("invalid auto_pad '{auto_pad}'"));
        }
        Ok(Self {
            kernel: cx.ints("kernel_shape")?,
            strides: cx.ints("strides")?,
            pads: cx.ints("pads")?,
            dilations: cx.ints("dilations")?,
            auto_pad,
            ceil: cx.int_or("ceil_mode", 0)? != 0,
        })
    }

    fn geometry(
        &self,
        x: &[usize],
        kernel_from_weights: Option<&[usize]>,
    ) -> Result<Geometry, String> {
        if x.len() < 3 || x.len() > 5 {
            return unsupported(format!(
                "input of rank {} (1 to 3 spatial dimensions)",
                x.len()
            ));
        }
        let s = x.len() - 2;
        let kernel: Vec<i64> = match (&self.kernel, kernel_from_weights) {
            (Some(k), _) => k.clone(),
            (None, Some(w)) => w.iter().map(|&d| d as i64).collect(),
            (None, None) => return Err("attribute 'kernel_shape' is missing".into()),
        };
        let get = |v: &Option<Vec<i64>>,
                   n: usize,
                   default: i64,
                   what: &str|
         -> Result<Vec<i64>, String> {
            let v = v.clone().unwrap_or_else(|| vec![default; n]);
            if v.len() != n || v.iter().any(|&x| x < 0) {
                return Err(format!("{what} {v:?} do not fit {s} spatial dimensions"));
            }
            Ok(v)
        };
        let kernel = get(&Some(kernel), s, 1, "kernel_shape")?;
        let strides = get(&self.strides, s, 1, "strides")?;
        let dil = get(&self.dilations, s, 1, "dilations")?;
        let pads = get(&self.pads, 2 * s, 0, "pads")?;
        let mut g = Geometry {
            input: [1; 3],
            output: [1; 3],
            kernel: [1; 3],
            stride: [1; 3],
            pad: [0; 3],
            pad_end: [0; 3],
            dil: [1; 3],
            spatial: s,
        };
        for i in 0..s {
            let a = 3 - s + i;
            let (inp, k, st, d) = (x[2 + i] as i64, kernel[i], strides[i].max(1), dil[i].max(1));
            let span = (k - 1) * d + 1;
            let (pb, pe, out) = match self.auto_pad.as_str() {
                "SAME_UPPER" | "SAME_LOWER" => {
                    let out = (inp + st - 1) / st;
                    let total = ((out - 1) * st + span - inp).max(0);
                    let small = total / 2;
                    if self.auto_pad == "SAME_UPPER" {
                        (small, total - small, out)
                    } else {
                        (total - small, small, out)
                    }
                }
                "VALID" => (
                    0,
                    0,
                    if inp >= span {
                        (inp - span) / st + 1
                    } else {
                        0
                    },
                ),
                _ => {
                    let (pb, pe) = (pads[i], pads[i + s]);
                    let room = inp + pb + pe - span;
                    if room < 0 {
                        return Err(format!(
                            "window of {span} is larger than the padded input {}",
                            inp + pb + pe
                        ));
                    }
                    let mut out = if self.ceil {
                        (room + st - 1) / st + 1
                    } else {
                        room / st + 1
                    };
                    // A last window that would start in the end padding is dropped.
                    if self.ceil && (out - 1) * st >= inp + pb {
                        out -= 1;
                    }
                    (pb, pe, out)
                }
            };
            g.input[a] = inp as usize;
            g.output[a] = out as usize;
            g.kernel[a] = k as usize;
            g.stride[a] = st as usize;
            g.pad[a] = pb as usize;
            g.pad_end[a] = pe as usize;
            g.dil[a] = d as usize;
        }
        Ok(g)
    }
}

fn arr(v: &[usize; 3]) -> String {
    format!("(const ptrdiff_t[]){{{}, {}, {}}}", v[0], v[1], v[2])
}

fn out_shape(x: &[usize], channels: usize, g: &Geometry) -> Vec<usize> {
    let mut s = vec![x[0], channels];
    s.extend(&g.output[3 - g.spatial..]);
    s
}

/// Convolution with groups, strides, dilations and padding; optionally with the residual
/// Add (input 3) and the Relu that follow it fused in.
#[derive(Debug)]
struct Conv {
    window: Window,
    group: usize,
    /// Input 3 (the output's shape) is added to the result.
    residual: bool,
    /// The result is clamped at 0, last.
    relu: bool,
}

impl Conv {
    /// The product path: a 2-D float32 convolution with constant weights and one group, as
    /// one register-tiled product an image (an unfolded copy of the input unless the
    /// kernel is 1×1 with stride 1 and no padding). Returns K (C·kh·kw), N (OH·OW) and
    /// whether the input needs unfolding.
    fn as_product(&self, x: &Fact, w: &Fact) -> Option<(usize, usize, bool)> {
        if x.shape.len() != 4 || x.dtype != DType::F32 || w.value.is_none() || self.group != 1 {
            return None;
        }
        let g = self.window.geometry(&x.shape, Some(&w.shape[2..])).ok()?;
        let k = w.shape[1] * g.kernel[1] * g.kernel[2];
        let n = g.output[1] * g.output[2];
        let direct = g.kernel[1..] == [1, 1]
            && g.stride[1..] == [1, 1]
            && g.pad[1..] == [0, 0]
            && g.pad_end[1..] == [0, 0];
        Some((k, n, !direct))
    }
}

impl Op for Conv {
    fn infer(&self, inputs: &Inputs) -> Result<Vec<(DType, Vec<usize>)>, InferError> {
        let (x, w) = (req(inputs, 0)?, req(inputs, 1)?);
        if !x.dtype.is_float() || w.dtype != x.dtype {
            return Err(format!(
                "needs float inputs of one type, got {} and {}",
                x.dtype, w.dtype
            )
            .into());
        }
        if w.shape.len() != x.shape.len()
            || x.shape[1] != w.shape[1] * self.group
            || w.shape[0] % self.group != 0
        {
            return Err(format!(
                "weights {:?} do not fit input {:?} with {} group(s)",
                w.shape, x.shape, self.group
            )
            .into());
        }
        let g = self.window.geometry(&x.shape, Some(&w.shape[2..]))?;
        if g.kernel[3 - g.spatial..] != w.shape[2..] {
            return Err(format!("kernel_shape does not match weights {:?}", w.shape).into());
        }
        Ok(vec![(x.dtype, out_shape(&x.shape, w.shape[0], &g))])
    }

    fn scratch_bytes(&self, inputs: &Inputs) -> usize {
        match (super::opt(inputs, 0), super::opt(inputs, 1)) {
            (Some(x), Some(w)) => match self.as_product(x, w) {
                Some((k, n, unfold)) => (PACK_FLOATS + if unfold { k * n } else { 0 }) * 4,
                None => 0,
            },
            _ => 0,
        }
    }

    fn fuse(&self, next: &super::Consumer) -> Option<super::Fused> {
        let fused = |residual, relu| Conv {
            window: self.window.clone(),
            group: self.group,
            residual,
            relu,
        };
        match next.op_type {
            "Relu" if !self.relu => Some(super::Fused::new(fused(self.residual, true))),
            "Add" if !self.relu && !self.residual => {
                let other = next.other?;
                (other.shape == next.product.shape
                    && other.dtype == next.product.dtype
                    && next.out.shape == next.product.shape)
                    .then(|| super::Fused::with_input(fused(true, false), 3))
            }
            _ => None,
        }
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let (x, w) = (io.input(0)?, io.input(1)?);
        let Some(y) = &io.outputs[0] else {
            return Ok(());
        };
        if y.is_empty() {
            return Ok(());
        }
        let g = self.window.geometry(&x.shape, Some(&w.shape[2..]))?;
        let b = opt_ptr(io, 2);
        let z = if self.residual {
            Some(io.input(3)?.ptr.clone())
        } else {
            None
        };
        if let Some((k, n, unfold)) = self.as_product(&x.fact(), &w.fact()) {
            let mm = super::linalg::mmw(e);
            let (batch, c, m) = (x.shape[0], x.shape[1], w.shape[0]);
            let (ih, iw) = (g.input[1], g.input[2]);
            let wv = super::linalg::f32_values(w).ok_or("Conv weights are not constant")?;
            // Weights in panels of 6 rows (output channels), k-major within a panel: the
            // transpose's column panels of width 6. Float, or per-channel int8 with the scales.
            let ap = match e.quantize() {
                Some(crate::quant::Quantize::Int8) => {
                    let (q, scales) = crate::quant::int8_channels(m, k, |row, kk| wv[row * k + kk]);
                    let packed =
                        super::linalg::panels(k, m, 6, 0u8, |kk, row| q[row * k + kk] as u8);
                    let aq = e.constant("int8_t", packed);
                    let rs = e.constant("float", crate::quant::f32_bytes(&scales));
                    format!("0, {aq}, {rs}")
                }
                None => {
                    let packed = super::linalg::panels(k, m, 6, 0.0, |kk, row| wv[row * k + kk]);
                    format!(
                        "{}, 0, 0",
                        e.constant("float", crate::quant::f32_bytes(&packed))
                    )
                }
            };
            let scratch = io.scratch.clone().ok_or("no scratch memory")?;
            let pack = format!("(float *){scratch}");
            let col = if unfold {
                let f = e.helper("im2col", IM2COL, DType::F32);
                Some((f, format!("((float *){scratch} + {PACK_FLOATS})")))
            } else {
                None
            };
            for img in 0..batch {
                let xn = format!("{} + {}", x.ptr, img * c * ih * iw);
                let bsrc = match &col {
                    Some((f, buf)) => {
                        e.push(&format!(
                            "{f}({c}, {ih}, {iw}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {xn}, {buf});",
                            g.kernel[1], g.kernel[2], g.stride[1], g.stride[2], g.pad[1], g.pad[2],
                            g.dil[1], g.dil[2], g.output[1], g.output[2]
                        ));
                        buf.clone()
                    }
                    None => xn,
                };
                let zn = z
                    .as_ref()
                    .map_or("0".to_string(), |z| format!("{z} + {}", img * m * n));
                e.push(&format!(
                    "{mm}({m}, {n}, {k}, {ap}, {bsrc}, {n}, {b}, {zn}, {n}, {}, {} + {}, {n}, {pack});",
                    i32::from(self.relu),
                    y.ptr,
                    img * m * n
                ));
            }
            return Ok(());
        }
        let f = e.helper("conv", CONV, x.dtype);
        e.push(&format!(
            "{f}({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {b}, {});",
            x.shape[0],
            x.shape[1],
            w.shape[0],
            self.group,
            arr(&g.input),
            arr(&g.output),
            arr(&g.kernel),
            arr(&g.stride),
            arr(&g.pad),
            arr(&g.dil),
            x.ptr,
            w.ptr,
            y.ptr
        ));
        if z.is_some() || self.relu {
            let t = x.dtype.c_type();
            let add = z.map_or(String::new(), |z| format!(" + {z}[i]"));
            let clamp = if self.relu { "v < 0 ? 0 : v" } else { "v" };
            e.push(&format!(
                "for (ptrdiff_t i = 0; i < {}; ++i) {{ const {t} v = {}[i]{add}; {}[i] = {clamp}; }}",
                y.len(),
                y.ptr,
                y.ptr
            ));
        }
        Ok(())
    }
}

fn opt_ptr(io: &NodeIo, i: usize) -> String {
    match io.inputs.get(i).and_then(Option::as_ref) {
        Some(o) if !o.is_empty() => o.ptr.clone(),
        _ => "0".into(),
    }
}

/// MaxPool (with optional indices) and AveragePool.
#[derive(Debug)]
struct Pool {
    window: Window,
    avg: bool,
    count_include_pad: bool,
    col_major: bool,
}

impl Op for Pool {
    fn infer(&self, inputs: &Inputs) -> Result<Vec<(DType, Vec<usize>)>, InferError> {
        let x = req(inputs, 0)?;
        if self.avg {
            super::require_float(x)?;
        }
        let g = self.window.geometry(&x.shape, None)?;
        let s = out_shape(&x.shape, x.shape[1], &g);
        Ok(vec![(x.dtype, s.clone()), (DType::I64, s)])
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let x = io.input(0)?;
        let Some(y) = &io.outputs[0] else {
            return Ok(());
        };
        if y.is_empty() {
            return Ok(());
        }
        let g = self.window.geometry(&x.shape, None)?;
        let idx = match io.outputs.get(1) {
            Some(Some(i)) => i.ptr.clone(),
            _ => "0".into(),
        };
        let f = e.helper("pool", POOL, x.dtype);
        e.push(&format!(
            "{f}({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {idx}, {});",
            i32::from(self.avg),
            x.shape[0] * x.shape[1],
            arr(&g.input),
            arr(&g.output),
            arr(&g.kernel),
            arr(&g.stride),
            arr(&g.pad),
            arr(&g.pad_end),
            arr(&g.dil),
            i32::from(self.count_include_pad),
            x.ptr,
            y.ptr,
            i32::from(self.col_major)
        ));
        Ok(())
    }
}

/// Batch normalisation: with running statistics, or (training mode) with the batch's,
/// updating the running ones.
#[derive(Debug)]
struct BatchNorm {
    epsilon: f32,
    momentum: f32,
    training: bool,
}

impl Op for BatchNorm {
    fn infer(&self, inputs: &Inputs) -> Result<Vec<(DType, Vec<usize>)>, InferError> {
        let x = req(inputs, 0)?;
        if !x.dtype.is_float() || x.shape.len() < 2 {
            return Err(format!(
                "needs a float input of rank ≥ 2, got {} {:?}",
                x.dtype, x.shape
            )
            .into());
        }
        let c = x.shape[1];
        for k in 1..5 {
            let p = req(inputs, k)?;
            if p.len() != c || p.dtype != x.dtype {
                return Err(format!(
                    "input {k} is {} {:?}, expected {} [{c}]",
                    p.dtype, p.shape, x.dtype
                )
                .into());
            }
        }
        let _ = opt(inputs, 5);
        Ok(vec![
            (x.dtype, x.shape.clone()),
            (x.dtype, vec![c]),
            (x.dtype, vec![c]),
        ])
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let x = io.input(0)?;
        let Some(y) = &io.outputs[0] else {
            return Ok(());
        };
        let (scale, bias, mean, var) = (io.input(1)?, io.input(2)?, io.input(3)?, io.input(4)?);
        let t = x.dtype;
        let ty = t.c_type();
        let n = x.shape[0];
        let c = x.shape[1];
        let inner: usize = x.shape[2..].iter().product();
        let sqrt = t.math("sqrt");
        let eps = format!("({ty}){:e}", self.epsilon);
        if !self.training {
            e.push(&format!(
                "for (ptrdiff_t n = 0; n < {n}; ++n)\nfor (ptrdiff_t c = 0; c < {c}; ++c) {{\n    \
                 const {ty} a = {s}[c] / {sqrt}({v}[c] + {eps}), b = {b}[c] - {m}[c] * a;\n    \
                 const {ty} *xp = {x} + (n * {c} + c) * {inner};\n    {ty} *yp = {y} + (n * {c} + c) * {inner};\n    \
                 for (ptrdiff_t i = 0; i < {inner}; ++i) yp[i] = xp[i] * a + b;\n}}",
                s = scale.ptr,
                v = var.ptr,
                b = bias.ptr,
                m = mean.ptr,
                x = x.ptr,
                y = y.ptr,
            ));
            return Ok(());
        }
        let count = n * inner;
        let mom = format!("({ty}){:e}", self.momentum);
        let rm = match io.outputs.get(1) {
            Some(Some(o)) => format!("{}[c] = {}[c] * {mom} + mu * (1 - {mom});", o.ptr, mean.ptr),
            _ => String::new(),
        };
        let rv = match io.outputs.get(2) {
            Some(Some(o)) => format!("{}[c] = {}[c] * {mom} + var * (1 - {mom});", o.ptr, var.ptr),
            _ => String::new(),
        };
        e.push(&format!(
            "for (ptrdiff_t c = 0; c < {c}; ++c) {{\n    double sum = 0, sq = 0;\n    \
             for (ptrdiff_t n = 0; n < {n}; ++n) for (ptrdiff_t i = 0; i < {inner}; ++i) {{ double v = {x}[(n * {c} + c) * {inner} + i]; sum += v; }}\n    \
             const double mean = sum / {count};\n    \
             for (ptrdiff_t n = 0; n < {n}; ++n) for (ptrdiff_t i = 0; i < {inner}; ++i) {{ double d = {x}[(n * {c} + c) * {inner} + i] - mean; sq += d * d; }}\n    \
             const {ty} mu = ({ty})mean, var = ({ty})(sq / {count});\n    \
             const {ty} a = {s}[c] / {sqrt}(var + {eps}), b = {b}[c] - mu * a;\n    \
             for (ptrdiff_t n = 0; n < {n}; ++n) for (ptrdiff_t i = 0; i < {inner}; ++i) {y}[(n * {c} + c) * {inner} + i] = {x}[(n * {c} + c) * {inner} + i] * a + b;\n    \
             {rm}\n    {rv}\n}}",
            x = x.ptr,
            y = y.ptr,
            s = scale.ptr,
            b = bias.ptr,
        ));
        Ok(())
    }
}
