//! Ops that move, select or re-label elements without arithmetic: views (Reshape,
//! Flatten, Squeeze, Unsqueeze), strided copies (Transpose, Slice, Expand, Tile),
//! Concat, Gather, Pad, and the ops that produce constants (Shape, Constant,
//! ConstantOfShape, Identity and Dropout at inference).

use std::fmt::Write;

use autocaption_onnx::TensorData;

use super::{
    broadcast, broadcast_strides, const_ints, contiguous_strides, norm_axis, opt, req, unsupported,
    Fact, InferError, Inputs, NodeIo, Op, Registry,
};
use crate::dtype::{self, dtype_of, DType};
use crate::emit::Emitter;
use crate::loops::{nest, offsets, Access};

pub(super) fn register(r: &mut Registry) {
    r.add("Identity", |_| Ok(Box::new(Identity)));
    r.add("Dropout", |cx| {
        if cx.opset < 7 && cx.int_or("is_test", 0)? == 0 {
            return unsupported("Dropout in training mode (is_test=0) draws random numbers");
        }
        Ok(Box::new(Dropout))
    });
    r.add("Reshape", |cx| {
        Ok(Box::new(View::Reshape {
            attr: if cx.opset < 5 {
                cx.ints("shape")?
            } else {
                None
            },
            allow_zero: cx.int_or("allowzero", 0)? != 0,
        }))
    });
    r.add("Flatten", |cx| {
        Ok(Box::new(View::Flatten(cx.int_or("axis", 1)?)))
    });
    r.add("Squeeze", |cx| {
        Ok(Box::new(View::Squeeze(if cx.opset < 13 {
            cx.ints("axes")?
        } else {
            None
        })))
    });
    r.add("Unsqueeze", |cx| {
        Ok(Box::new(View::Unsqueeze(if cx.opset < 13 {
            cx.ints("axes")?
        } else {
            None
        })))
    });
    r.add("Transpose", |cx| {
        Ok(Box::new(Strided::Transpose(cx.ints("perm")?)))
    });
    r.add("Slice", |cx| {
        let attrs = if cx.opset < 10 {
            Some((
                cx.ints("starts")?.ok_or("attribute 'starts' is missing")?,
                cx.ints("ends")?.ok_or("attribute 'ends' is missing")?,
                cx.ints("axes")?,
            ))
        } else {
            None
        };
        Ok(Box::new(Strided::Slice(attrs)))
    });
    r.add("Expand", |_| Ok(Box::new(Strided::Expand)));
    r.add("Tile", |_| Ok(Box::new(Strided::Tile)));
    r.add("Concat", |cx| {
        Ok(Box::new(Concat(
            cx.int("axis")?.ok_or("attribute 'axis' is missing")?,
        )))
    });
    r.add("Gather", |cx| Ok(Box::new(Gather(cx.int_or("axis", 0)?))));
    r.add("Pad", |cx| {
        let mode = cx.string("mode")?.unwrap_or_else(|| "constant".into());
        if !matches!(mode.as_str(), "constant" | "reflect" | "edge" | "wrap") {
            return unsupported(format!("Pad mode '{mode}'"));
        }
        let attrs = if cx.opset < 11 {
            Some((
                cx.ints("pads")?.ok_or("attribute 'pads' is missing")?,
                cx.float("value")?.unwrap_or(0.0),
            ))
        } else {
            None
        };
        Ok(Box::new(Pad { mode, attrs }))
    });
    r.add("Shape", |cx| {
        Ok(Box::new(Shape(cx.int("start")?, cx.int("end")?)))
    });
    r.add("Constant", |cx| {
        let t = if let Some(t) = cx.tensor("value")? {
            (t.dims, t.data)
        } else if let Some(f) = cx.float("value_float")? {
            (vec![], TensorData::F32(vec![f]))
        } else if let Some(f) = cx.floats("value_floats")? {
            (vec![f.len()], TensorData::F32(f))
        } else if let Some(i) = cx.int("value_int")? {
            (vec![], TensorData::I64(vec![i]))
        } else if let Some(i) = cx.ints("value_ints")? {
            (vec![i.len()], TensorData::I64(i))
        } else {
            return unsupported("a Constant without a numeric value (sparse or string)");
        };
        Ok(Box::new(Constant(t.0, t.1)))
    });
    r.add("ConstantOfShape", |cx| {
        let v = match cx.tensor("value")? {
            Some(t) if t.data.len() == 1 => t.data,
            Some(_) => return Err("attribute 'value' must hold one element".into()),
            None => TensorData::F32(vec![0.0]),
        };
        Ok(Box::new(ConstantOfShape(v)))
    });
}

type Shaped = Vec<(DType, Vec<usize>)>;

/// Output = input.
#[derive(Debug)]
struct Identity;

impl Op for Identity {
    fn infer(&self, inputs: &Inputs) -> Result<Shaped, InferError> {
        let x = req(inputs, 0)?;
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn eval(&self, inputs: &Inputs, _: &[(DType, Vec<usize>)]) -> Option<Vec<TensorData>> {
        Some(vec![req(inputs, 0).ok()?.value.as_deref()?.clone()])
    }

    fn is_identity(&self) -> bool {
        true
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        copy(e, io)
    }
}

fn copy(e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
    let x = io.input(0)?;
    if let Some(y) = &io.outputs[0] {
        if !y.is_empty() {
            e.push(&format!(
                "memcpy({}, {}, {});",
                y.ptr,
                x.ptr,
                x.len() * x.dtype.size()
            ));
        }
    }
    Ok(())
}

/// Dropout at inference: output = input, mask all true. Training mode is refused unless
/// its ratio is 0 (then it is the same thing).
#[derive(Debug)]
struct Dropout;

impl Op for Dropout {
    fn infer(&self, inputs: &Inputs) -> Result<Shaped, InferError> {
        let x = req(inputs, 0)?;
        if let Some(t) = opt(inputs, 2) {
            let training = t.value.as_deref().ok_or(InferError::NeedsConstant(2))?;
            if dtype::to_i64(training).is_some_and(|v| v.iter().any(|&b| b != 0)) {
                let ratio = match opt(inputs, 1) {
                    None => 0.5,
                    Some(r) => {
                        dtype::to_f64(r.value.as_deref().ok_or(InferError::NeedsConstant(1))?)
                            .first()
                            .copied()
                            .unwrap_or(0.5)
                    }
                };
                if ratio != 0.0 {
                    return Err("unsupported: Dropout in training mode draws random numbers"
                        .to_string()
                        .into());
                }
            }
        }
        Ok(vec![
            (x.dtype, x.shape.clone()),
            (DType::Bool, x.shape.clone()),
        ])
    }

    fn is_identity(&self) -> bool {
        true
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        copy(e, io)?;
        if let Some(Some(mask)) = io.outputs.get(1) {
            if !mask.is_empty() {
                e.push(&format!("memset({}, 1, {});", mask.ptr, mask.len()));
            }
        }
        Ok(())
    }
}

/// Ops whose output is the input's bytes under another shape.
#[derive(Debug)]
enum View {
    Reshape {
        attr: Option<Vec<i64>>,
        allow_zero: bool,
    },
    Flatten(i64),
    Squeeze(Option<Vec<i64>>),
    Unsqueeze(Option<Vec<i64>>),
}

impl View {
    fn shape(&self, inputs: &Inputs) -> Result<Vec<usize>, InferError> {
        let x = req(inputs, 0)?;
        let r = x.shape.len();
        match self {
            View::Reshape { attr, allow_zero } => {
                let spec = match attr {
                    Some(a) => a.clone(),
                    None => const_ints(inputs, 1)?.ok_or("input 'shape' is missing".to_string())?,
                };
                let mut out = Vec::new();
                let mut infer = None;
                for (i, &d) in spec.iter().enumerate() {
                    match d {
                        0 if !allow_zero => {
                            out.push(*x.shape.get(i).ok_or(format!(
                                "shape {spec:?}: 0 at {i} beyond the input's rank"
                            ))?)
                        }
                        -1 if infer.is_none() => {
                            infer = Some(i);
                            out.push(1);
                        }
                        d if d >= 0 => out.push(d as usize),
                        _ => return Err(format!("invalid shape {spec:?}").into()),
                    }
                }
                if let Some(i) = infer {
                    let known: usize = out.iter().product();
                    if known == 0 || x.len() % known != 0 {
                        return Err(format!("cannot reshape {:?} to {spec:?}", x.shape).into());
                    }
                    out[i] = x.len() / known;
                }
                if out.iter().product::<usize>() != x.len() {
                    return Err(format!(
                        "cannot reshape {:?} ({} elements) to {spec:?}",
                        x.shape,
                        x.len()
                    )
                    .into());
                }
                Ok(out)
            }
            View::Flatten(axis) => {
                let a = if *axis < 0 { *axis + r as i64 } else { *axis };
                if a < 0 || a > r as i64 {
                    return Err(format!("axis {axis} is out of range for rank {r}").into());
                }
                let a = a as usize;
                Ok(vec![
                    x.shape[..a].iter().product(),
                    x.shape[a..].iter().product(),
                ])
            }
            View::Squeeze(attr) => {
                let axes = match attr {
                    Some(a) => Some(a.clone()),
                    None => const_ints(inputs, 1)?,
                };
                match axes {
                    None => Ok(x.shape.iter().copied().filter(|&d| d != 1).collect()),
                    Some(axes) => {
                        let axes = axes
                            .iter()
                            .map(|&a| norm_axis(a, r))
                            .collect::<Result<Vec<_>, _>>()?;
                        for &a in &axes {
                            if x.shape[a] != 1 {
                                return Err(format!(
                                    "cannot squeeze axis {a} of size {}",
                                    x.shape[a]
                                )
                                .into());
                            }
                        }
                        Ok((0..r)
                            .filter(|i| !axes.contains(i))
                            .map(|i| x.shape[i])
                            .collect())
                    }
                }
            }
            View::Unsqueeze(attr) => {
                let axes = match attr {
                    Some(a) => a.clone(),
                    None => const_ints(inputs, 1)?.ok_or("input 'axes' is missing".to_string())?,
                };
                let n = r + axes.len();
                let mut axes = axes
                    .iter()
                    .map(|&a| norm_axis(a, n))
                    .collect::<Result<Vec<_>, _>>()?;
                axes.sort_unstable();
                axes.dedup();
                if axes.len() + r != n {
                    return Err("repeated axes".to_string().into());
                }
                let mut src = x.shape.iter();
                Ok((0..n)
                    .map(|i| {
                        if axes.contains(&i) {
                            1
                        } else {
                            *src.next().expect("rank adds up")
                        }
                    })
                    .collect())
            }
        }
    }
}

impl Op for View {
    fn infer(&self, inputs: &Inputs) -> Result<Shaped, InferError> {
        Ok(vec![(req(inputs, 0)?.dtype, self.shape(inputs)?)])
    }

    fn eval(&self, inputs: &Inputs, _: &[(DType, Vec<usize>)]) -> Option<Vec<TensorData>> {
        Some(vec![req(inputs, 0).ok()?.value.as_deref()?.clone()])
    }

    fn is_view(&self) -> bool {
        true
    }

    fn emit(&self, _: &mut Emitter, _: &NodeIo) -> Result<(), String> {
        unreachable!("views are emitted by the emitter")
    }
}

/// Ops that read their input through a strided access: output element `i` in row-major
/// order comes from `offset + Σ idx·stride` over a loop shape.
#[derive(Debug)]
enum Strided {
    Transpose(Option<Vec<i64>>),
    /// Attribute form (opset < 10): starts, ends, axes.
    Slice(Option<SliceAttrs>),
    Expand,
    Tile,
}

/// Slice's attribute form: starts, ends, axes.
type SliceAttrs = (Vec<i64>, Vec<i64>, Option<Vec<i64>>);

/// A strided read: loop shape, offset, strides, and the output's shape.
struct Plan {
    loop_shape: Vec<usize>,
    offset: isize,
    strides: Vec<isize>,
    out_shape: Vec<usize>,
}

impl Strided {
    fn plan(&self, inputs: &Inputs) -> Result<Plan, InferError> {
        let x = req(inputs, 0)?;
        let r = x.shape.len();
        let xs = contiguous_strides(&x.shape);
        match self {
            Strided::Transpose(perm) => {
                let perm: Vec<usize> = match perm {
                    Some(p) => p
                        .iter()
                        .map(|&a| norm_axis(a, r))
                        .collect::<Result<_, _>>()?,
                    None => (0..r).rev().collect(),
                };
                let mut seen = perm.clone();
                seen.sort_unstable();
                if seen != (0..r).collect::<Vec<_>>() {
                    return Err(format!("perm {perm:?} is not a permutation of 0..{r}").into());
                }
                let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
                Ok(Plan {
                    strides: perm.iter().map(|&p| xs[p]).collect(),
                    loop_shape: shape.clone(),
                    out_shape: shape,
                    offset: 0,
                })
            }
            Strided::Slice(attrs) => {
                let (starts, ends, axes, steps) = match attrs {
                    Some((s, e, a)) => (s.clone(), e.clone(), a.clone(), None),
                    None => (
                        const_ints(inputs, 1)?.ok_or("input 'starts' is missing".to_string())?,
                        const_ints(inputs, 2)?.ok_or("input 'ends' is missing".to_string())?,
                        const_ints(inputs, 3)?,
                        const_ints(inputs, 4)?,
                    ),
                };
                let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
                let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
                if ends.len() != starts.len()
                    || axes.len() != starts.len()
                    || steps.len() != starts.len()
                {
                    return Err("starts, ends, axes and steps differ in length"
                        .to_string()
                        .into());
                }
                let mut shape = x.shape.clone();
                let mut strides = xs.clone();
                let mut offset = 0isize;
                for k in 0..starts.len() {
                    let a = norm_axis(axes[k], r)?;
                    let d = x.shape[a] as i64;
                    let step = steps[k];
                    if step == 0 {
                        return Err("a step of 0".to_string().into());
                    }
                    let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
                    let (s, e) = (fix(starts[k]), fix(ends[k]));
                    let (s, e, n) = if step > 0 {
                        let (s, e) = (s.clamp(0, d), e.clamp(0, d));
                        (s, e, if e > s { (e - s + step - 1) / step } else { 0 })
                    } else {
                        let (s, e) = (s.clamp(0, d - 1), e.clamp(-1, d - 1));
                        (
                            s,
                            e,
                            if s > e {
                                (s - e + (-step) - 1) / (-step)
                            } else {
                                0
                            },
                        )
                    };
                    let _ = e;
                    shape[a] = n.max(0) as usize;
                    if n > 0 {
                        offset += s as isize * xs[a];
                    }
                    strides[a] = xs[a] * step as isize;
                }
                Ok(Plan {
                    loop_shape: shape.clone(),
                    out_shape: shape,
                    offset,
                    strides,
                })
            }
            Strided::Expand => {
                let spec = const_ints(inputs, 1)?.ok_or("input 'shape' is missing".to_string())?;
                if spec.iter().any(|&d| d < 0) {
                    return Err(format!("invalid shape {spec:?}").into());
                }
                let spec: Vec<usize> = spec.iter().map(|&d| d as usize).collect();
                let out = broadcast(&x.shape, &spec)?;
                Ok(Plan {
                    strides: broadcast_strides(&x.shape, &out),
                    loop_shape: out.clone(),
                    out_shape: out,
                    offset: 0,
                })
            }
            Strided::Tile => {
                let reps =
                    const_ints(inputs, 1)?.ok_or("input 'repeats' is missing".to_string())?;
                if reps.len() != r || reps.iter().any(|&v| v < 0) {
                    return Err(format!("repeats {reps:?} do not fit rank {r}").into());
                }
                let mut loop_shape = Vec::new();
                let mut strides = Vec::new();
                for a in 0..r {
                    loop_shape.extend([reps[a] as usize, x.shape[a]]);
                    strides.extend([0, xs[a]]);
                }
                Ok(Plan {
                    out_shape: (0..r).map(|a| reps[a] as usize * x.shape[a]).collect(),
                    loop_shape,
                    strides,
                    offset: 0,
                })
            }
        }
    }
}

impl Op for Strided {
    fn infer(&self, inputs: &Inputs) -> Result<Shaped, InferError> {
        Ok(vec![(req(inputs, 0)?.dtype, self.plan(inputs)?.out_shape)])
    }

    fn eval(&self, inputs: &Inputs, _: &[(DType, Vec<usize>)]) -> Option<Vec<TensorData>> {
        let v = req(inputs, 0).ok()?.value.as_deref()?;
        let p = self.plan(inputs).ok()?;
        Some(vec![dtype::gather(
            v,
            &offsets(&p.loop_shape, p.offset, &p.strides),
        )])
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let facts = io.facts();
        let refs: Vec<Option<&Fact>> = facts.iter().map(Option::as_ref).collect();
        let p = self.plan(&refs).map_err(|e| format!("{e:?}"))?;
        let x = io.input(0)?;
        let Some(y) = &io.outputs[0] else {
            return Ok(());
        };
        let src = Access {
            ptr: x.ptr.clone(),
            offset: p.offset,
            strides: p.strides,
        };
        let dst = Access::new(&y.ptr, contiguous_strides(&p.loop_shape));
        e.push(&nest(&p.loop_shape, &[src, dst], |ix| {
            format!("{} = {};", ix[1], ix[0])
        }));
        Ok(())
    }
}

/// Concatenation along an axis.
#[derive(Debug)]
struct Concat(i64);

impl Op for Concat {
    fn infer(&self, inputs: &Inputs) -> Result<Shaped, InferError> {
        let first = req(inputs, 0)?;
        let a = norm_axis(self.0, first.shape.len())?;
        let mut shape = first.shape.clone();
        shape[a] = 0;
        for k in 0..inputs.len() {
            let x = req(inputs, k)?;
            let same = x.dtype == first.dtype
                && x.shape.len() == shape.len()
                && (0..shape.len()).all(|i| i == a || x.shape[i] == shape[i]);
            if !same {
                return Err(format!(
                    "input {k} ({} {:?}) does not match input 0 ({} {:?})",
                    x.dtype, x.shape, first.dtype, first.shape
                )
                .into());
            }
            shape[a] += x.shape[a];
        }
        Ok(vec![(first.dtype, shape)])
    }

    fn eval(&self, inputs: &Inputs, out: &[(DType, Vec<usize>)]) -> Option<Vec<TensorData>> {
        let shape = &out[0].1;
        let a = norm_axis(self.0, shape.len()).ok()?;
        let outer: usize = shape[..a].iter().product();
        let mut parts = Vec::new();
        let chunks: Vec<(&TensorData, usize)> = (0..inputs.len())
            .map(|k| {
                let x = req(inputs, k).ok()?;
                Some((x.value.as_deref()?, x.shape[a..].iter().product::<usize>()))
            })
            .collect::<Option<_>>()?;
        for o in 0..outer {
            for (v, inner) in &chunks {
                parts.push(dtype::gather(
                    v,
                    &(o * inner..(o + 1) * inner).collect::<Vec<_>>(),
                ));
            }
        }
        if parts.is_empty() {
            return Some(vec![dtype::gather(chunks[0].0, &[])]);
        }
        Some(vec![dtype::concat(&parts.iter().collect::<Vec<_>>())?])
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let Some(y) = &io.outputs[0] else {
            return Ok(());
        };
        let a = norm_axis(self.0, y.shape.len())?;
        let ys = contiguous_strides(&y.shape);
        let mut at = 0usize;
        for k in 0..io.inputs.len() {
            let x = io.input(k)?;
            let dst = Access {
                ptr: y.ptr.clone(),
                offset: at as isize * ys[a],
                strides: ys.clone(),
            };
            e.push(&nest(
                &x.shape,
                &[Access::new(&x.ptr, contiguous_strides(&x.shape)), dst],
                |ix| format!("{} = {};", ix[1], ix[0]),
            ));
            at += x.shape[a];
        }
        Ok(())
    }
}

/// Gather along an axis with (possibly negative) indices, checked at run time.
#[derive(Debug)]
struct Gather(i64);

impl Op for Gather {
    fn infer(&self, inputs: &Inputs) -> Result<Shaped, InferError> {
        let (x, i) = (req(inputs, 0)?, req(inputs, 1)?);
        if !matches!(i.dtype, DType::I32 | DType::I64) {
            return Err(format!("indices must be int32 or int64, got {}", i.dtype).into());
        }
        let a = norm_axis(self.0, x.shape.len())?;
        let mut shape = x.shape[..a].to_vec();
        shape.extend(&i.shape);
        shape.extend(&x.shape[a + 1..]);
        Ok(vec![(x.dtype, shape)])
    }

    fn eval(&self, inputs: &Inputs, _: &[(DType, Vec<usize>)]) -> Option<Vec<TensorData>> {
        let (x, i) = (req(inputs, 0).ok()?, req(inputs, 1).ok()?);
        let (v, idx) = (x.value.as_deref()?, dtype::to_i64(i.value.as_deref()?)?);
        let a = norm_axis(self.0, x.shape.len()).ok()?;
        let d = x.shape[a] as i64;
        let outer: usize = x.shape[..a].iter().product();
        let inner: usize = x.shape[a + 1..].iter().product();
        let mut at = Vec::new();
        for o in 0..outer {
            for &k in &idx {
                let k = if k < 0 { k + d } else { k };
                if !(0..d).contains(&k) {
                    return None; // left to run, where it fails with an error code
                }
                at.extend((0..inner).map(|j| (o * d as usize + k as usize) * inner + j));
            }
        }
        Some(vec![dtype::gather(v, &at)])
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let (x, i) = (io.input(0)?, io.input(1)?);
        let Some(y) = &io.outputs[0] else {
            return Ok(());
        };
        if y.is_empty() {
            return Ok(());
        }
        let a = norm_axis(self.0, x.shape.len())?;
        let d = x.shape[a];
        let outer: usize = x.shape[..a].iter().product();
        let inner: usize = x.shape[a + 1..].iter().product();
        let n = i.len();
        let size = x.dtype.size();
        let fail = e.fail("ERR_INDEX");
        e.push(&format!(
            "for (ptrdiff_t o = 0; o < {outer}; ++o) {{\n    for (ptrdiff_t j = 0; j < {n}; ++j) {{\n        \
             int64_t k = (int64_t){}[j];\n        if (k < 0) k += {d};\n        if (k < 0 || k >= {d}) {fail}\n        \
             memcpy({} + (o * {n} + j) * {inner}, {} + (o * {d} + k) * {inner}, {});\n    }}\n}}",
            i.ptr,
            y.ptr,
            x.ptr,
            inner * size
        ));
        Ok(())
    }
}

/// Padding: constant, reflect, edge or wrap.
#[derive(Debug)]
struct Pad {
    mode: String,
    /// Attribute form (opset < 11): pads and value.
    attrs: Option<(Vec<i64>, f32)>,
}

impl Pad {
    /// Begin and end padding per axis.
    fn pads(&self, inputs: &Inputs) -> Result<Vec<(i64, i64)>, InferError> {
        let x = req(inputs, 0)?;
        let r = x.shape.len();
        let (pads, axes) = match &self.attrs {
            Some((p, _)) => (p.clone(), None),
            None => (
                const_ints(inputs, 1)?.ok_or("input 'pads' is missing".to_string())?,
                const_ints(inputs, 3)?,
            ),
        };
        let axes: Vec<usize> = match axes {
            Some(a) => a
                .iter()
                .map(|&a| norm_axis(a, r))
                .collect::<Result<_, _>>()?,
            None => (0..r).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(format!("{} pads for {} axes", pads.len(), axes.len()).into());
        }
        let mut out = vec![(0, 0); r];
        for (k, &a) in axes.iter().enumerate() {
            out[a] = (pads[k], pads[k + axes.len()]);
        }
        for (a, &(b, e)) in out.iter().enumerate() {
            if x.shape[a] as i64 + b + e < 0 {
                return Err(format!("pads {b}, {e} remove more than axis {a} holds").into());
            }
        }
        Ok(out)
    }
}

impl Op for Pad {
    fn infer(&self, inputs: &Inputs) -> Result<Shaped, InferError> {
        let x = req(inputs, 0)?;
        let pads = self.pads(inputs)?;
        if self.mode != "constant" && x.shape.contains(&0) {
            return Err(format!("mode {} on an empty axis", self.mode).into());
        }
        let shape = x
            .shape
            .iter()
            .zip(&pads)
            .map(|(&d, &(b, e))| (d as i64 + b + e) as usize)
            .collect();
        Ok(vec![(x.dtype, shape)])
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let facts = io.facts();
        let refs: Vec<Option<&Fact>> = facts.iter().map(Option::as_ref).collect();
        let pads = self.pads(&refs).map_err(|e| format!("{e:?}"))?;
        let x = io.input(0)?;
        let Some(y) = &io.outputs[0] else {
            return Ok(());
        };
        if y.is_empty() {
            return Ok(());
        }
        let ty = x.dtype.c_type();
        let value = match (&self.attrs, io.inputs.get(2).and_then(Option::as_ref)) {
            (Some((_, v)), _) => format!("({ty}){v:e}"),
            (None, Some(c)) => format!("{}[0]", c.ptr),
            (None, None) => format!("({ty})0"),
        };
        let xs = contiguous_strides(&x.shape);
        let mut code = format!("ptrdiff_t o = 0;\n{ty} c = {value};\n");
        let r = x.shape.len();
        for (a, &(b, _)) in pads.iter().enumerate() {
            let d = x.shape[a] as i64;
            let _ = writeln!(
                code,
                "for (ptrdiff_t i{a} = 0; i{a} < {}; ++i{a}) {{",
                y.shape[a]
            );
            let _ = writeln!(code, "ptrdiff_t s{a} = i{a} - ({b});");
            match self.mode.as_str() {
                "edge" => {
                    let _ = writeln!(
                        code,
                        "if (s{a} < 0) s{a} = 0;\nif (s{a} >= {d}) s{a} = {d} - 1;"
                    );
                }
                "wrap" => {
                    let _ = writeln!(code, "s{a} = ((s{a} % {d}) + {d}) % {d};");
                }
                "reflect" => {
                    let _ = writeln!(
                        code,
                        "while ({d} > 1 && (s{a} < 0 || s{a} >= {d})) s{a} = s{a} < 0 ? -s{a} : 2 * ({d} - 1) - s{a};\nif ({d} == 1) s{a} = 0;"
                    );
                }
                _ => {}
            }
        }
        let inside: Vec<String> = (0..r)
            .map(|a| format!("s{a} >= 0 && s{a} < {}", x.shape[a]))
            .collect();
        let at: Vec<String> = (0..r).map(|a| format!("s{a} * {}", xs[a])).collect();
        let at = if at.is_empty() {
            "0".to_string()
        } else {
            at.join(" + ")
        };
        if self.mode == "constant" && r > 0 {
            let _ = writeln!(
                code,
                "{}[o++] = ({}) ? {}[{at}] : c;",
                y.ptr,
                inside.join(" && "),
                x.ptr
            );
        } else {
            let _ = writeln!(code, "{}[o++] = {}[{at}];\n(void)c;", y.ptr, x.ptr);
        }
        for _ in 0..r {
            code.push_str("}\n");
        }
        e.push(&code);
        Ok(())
    }
}

/// The input's shape, optionally a slice of it (always folded to a constant).
#[derive(Debug)]
struct Shape(Option<i64>, Option<i64>);

impl Shape {
    fn dims(&self, x: &Fact) -> Vec<i64> {
        let r = x.shape.len() as i64;
        let clip = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let (s, e) = (clip(self.0.unwrap_or(0)), clip(self.1.unwrap_or(r)));
        x.shape[s..e.max(s)].iter().map(|&d| d as i64).collect()
    }
}

impl Op for Shape {
    fn infer(&self, inputs: &Inputs) -> Result<Shaped, InferError> {
        Ok(vec![(DType::I64, vec![self.dims(req(inputs, 0)?).len()])])
    }

    fn eval(&self, inputs: &Inputs, _: &[(DType, Vec<usize>)]) -> Option<Vec<TensorData>> {
        Some(vec![TensorData::I64(self.dims(req(inputs, 0).ok()?))])
    }

    fn emit(&self, _: &mut Emitter, _: &NodeIo) -> Result<(), String> {
        unreachable!("Shape is always folded")
    }
}

/// A constant.
#[derive(Debug)]
struct Constant(Vec<usize>, TensorData);

impl Op for Constant {
    fn infer(&self, _: &Inputs) -> Result<Shaped, InferError> {
        Ok(vec![(dtype_of(&self.1), self.0.clone())])
    }

    fn eval(&self, _: &Inputs, _: &[(DType, Vec<usize>)]) -> Option<Vec<TensorData>> {
        Some(vec![self.1.clone()])
    }

    fn emit(&self, _: &mut Emitter, _: &NodeIo) -> Result<(), String> {
        unreachable!("Constant is always folded")
    }
}

/// A tensor of one repeated value, of a shape known at compile time.
#[derive(Debug)]
struct ConstantOfShape(TensorData);

impl Op for ConstantOfShape {
    fn infer(&self, inputs: &Inputs) -> Result<Shaped, InferError> {
        let s = const_ints(inputs, 0)?.ok_or("input 'shape' is missing".to_string())?;
        if s.iter().any(|&d| d < 0) {
            return Err(format!("invalid shape {s:?}").into());
        }
        Ok(vec![(
            dtype_of(&self.0),
            s.iter().map(|&d| d as usize).collect(),
        )])
    }

    fn eval(&self, _: &Inputs, out: &[(DType, Vec<usize>)]) -> Option<Vec<TensorData>> {
        let n: usize = out[0].1.iter().product();
        Some(vec![dtype::gather(&self.0, &vec![0; n])])
    }

    fn emit(&self, _: &mut Emitter, _: &NodeIo) -> Result<(), String> {
        unreachable!("ConstantOfShape is always folded")
    }
}
