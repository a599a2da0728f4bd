//! Ops that re-label elements without moving them: views (Reshape, Flatten, Squeeze,
//! Unsqueeze: the input's bytes under another shape, no code), and Identity and Dropout at
//! inference (removed by the passes, or a copy into a graph output).

use autocaption_onnx::TensorData;

use super::{
    const_ints, norm_axis, opt, req, unsupported, InferError, Inputs, NodeIo, Op, Registry, Shaped,
};
use crate::dtype::{self, DType};
use crate::emitter::Emitter;

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
}

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
