//! Strided copies: Transpose, Slice, Expand and Tile read their input through one strided
//! access (an offset and a stride per loop axis).

use autocaption_onnx::TensorData;

use super::{
    broadcast, broadcast_strides, const_ints, contiguous_strides, norm_axis, req, Fact, InferError,
    Inputs, NodeIo, Op, Registry, Shaped,
};
use crate::dtype::{self, DType};
use crate::emitter::Emitter;
use crate::loops::{nest, offsets, Access};

pub(super) fn register(r: &mut Registry) {
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
