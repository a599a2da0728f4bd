//! Ops whose outputs are known at compile time: Shape, Constant, ConstantOfShape (always
//! folded to constants).

use autocaption_onnx::TensorData;

use super::{const_ints, req, unsupported, Fact, InferError, Inputs, NodeIo, Op, Registry, Shaped};
use crate::dtype::{self, dtype_of, DType};
use crate::emitter::Emitter;

pub(super) fn register(r: &mut Registry) {
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
