//! Element-wise ops: unary math, broadcasting binary arithmetic, variadic max/min/sum,
//! and casts.

use autocaption_onnx::TensorData;

use super::{
    broadcast, broadcast_strides, contiguous_strides, req, InferError, Inputs, NodeCx, NodeIo, Op,
    Registry,
};
use crate::dtype::{self, DType};
use crate::emitter::Emitter;
use crate::loops::{nest, Access};

pub(super) fn register(r: &mut Registry) {
    for name in [
        "Relu",
        "Sigmoid",
        "Tanh",
        "Exp",
        "Log",
        "Neg",
        "Abs",
        "Sqrt",
        "Reciprocal",
        "Floor",
        "Ceil",
        "Softplus",
        "Softsign",
    ] {
        r.add(name, |cx| Ok(Box::new(Unary(unary_kind(cx)?))));
    }
    r.add("LeakyRelu", |cx| {
        Ok(Box::new(Unary(UnaryKind::LeakyRelu(
            cx.float("alpha")?.unwrap_or(0.01),
        ))))
    });
    for name in ["Add", "Sub", "Mul", "Div"] {
        r.add(name, |cx| {
            Ok(Box::new(Binary(match cx.node.op_type.as_deref() {
                Some("Add") => '+',
                Some("Sub") => '-',
                Some("Mul") => '*',
                _ => '/',
            })))
        });
    }
    for name in ["Max", "Min", "Sum"] {
        r.add(name, |cx| {
            Ok(Box::new(Variadic(
                cx.node.op_type.clone().unwrap_or_default(),
            )))
        });
    }
    r.add("Cast", |cx| {
        let to = cx.int("to")?.ok_or("attribute 'to' is missing")? as i32;
        DType::from_onnx(to)
            .map(|t| Box::new(Cast(Some(t))) as Box<dyn Op>)
            .ok_or_else(|| format!("unsupported: cast to {}", DType::onnx_name(to)))
    });
    r.add("CastLike", |_| Ok(Box::new(Cast(None))));
}

#[derive(Debug, Clone, Copy)]
enum UnaryKind {
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Log,
    Neg,
    Abs,
    Sqrt,
    Reciprocal,
    Floor,
    Ceil,
    Softplus,
    Softsign,
    LeakyRelu(f32),
}

fn unary_kind(cx: &NodeCx) -> Result<UnaryKind, String> {
    Ok(match cx.node.op_type.as_deref().unwrap_or("") {
        "Relu" => UnaryKind::Relu,
        "Sigmoid" => UnaryKind::Sigmoid,
        "Tanh" => UnaryKind::Tanh,
        "Exp" => UnaryKind::Exp,
        "Log" => UnaryKind::Log,
        "Neg" => UnaryKind::Neg,
        "Abs" => UnaryKind::Abs,
        "Sqrt" => UnaryKind::Sqrt,
        "Reciprocal" => UnaryKind::Reciprocal,
        "Floor" => UnaryKind::Floor,
        "Ceil" => UnaryKind::Ceil,
        "Softplus" => UnaryKind::Softplus,
        "Softsign" => UnaryKind::Softsign,
        other => return Err(format!("not a unary op: {other}")),
    })
}

/// A unary element-wise op.
#[derive(Debug)]
struct Unary(UnaryKind);

impl Op for Unary {
    fn infer(&self, inputs: &Inputs) -> Result<Vec<(DType, Vec<usize>)>, InferError> {
        let x = req(inputs, 0)?;
        let float_only = !matches!(self.0, UnaryKind::Relu | UnaryKind::Neg | UnaryKind::Abs);
        if float_only && !x.dtype.is_float() {
            return Err(format!("needs a float input, got {}", x.dtype).into());
        }
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let x = io.input(0)?;
        let Some(y) = &io.outputs[0] else {
            return Ok(());
        };
        let t = x.dtype;
        let ty = t.c_type();
        let f = |name: &str| t.math(name);
        let one = if t == DType::F32 { "1.0f" } else { "1.0" };
        let expr = |v: &str| -> String {
            match self.0 {
                UnaryKind::Relu => format!("({v} > 0 ? {v} : ({ty})0)"),
                UnaryKind::Sigmoid => format!("{one} / ({one} + {}(-{v}))", f("exp")),
                UnaryKind::Tanh => format!("{}({v})", f("tanh")),
                UnaryKind::Exp => format!("{}({v})", f("exp")),
                UnaryKind::Log => format!("{}({v})", f("log")),
                UnaryKind::Neg => format!("({ty})(-{v})"),
                UnaryKind::Abs if t.is_float() => format!("{}({v})", f("fabs")),
                UnaryKind::Abs => format!("({ty})({v} < 0 ? -{v} : {v})"),
                UnaryKind::Sqrt => format!("{}({v})", f("sqrt")),
                UnaryKind::Reciprocal => format!("{one} / {v}"),
                UnaryKind::Floor => format!("{}({v})", f("floor")),
                UnaryKind::Ceil => format!("{}({v})", f("ceil")),
                UnaryKind::Softplus => format!("{}({one} + {}({v}))", f("log"), f("exp")),
                UnaryKind::Softsign => format!("{v} / ({one} + {}({v}))", f("fabs")),
                UnaryKind::LeakyRelu(a) => format!("({v} >= 0 ? {v} : ({ty}){a:e} * {v})"),
            }
        };
        let s = contiguous_strides(&x.shape);
        e.push(&nest(
            &x.shape,
            &[Access::new(&x.ptr, s.clone()), Access::new(&y.ptr, s)],
            |ix| format!("{{ {ty} v = {}; {} = {}; }}", ix[0], ix[1], expr("v")),
        ));
        Ok(())
    }
}

/// `+ - * /` with numpy broadcasting.
#[derive(Debug)]
struct Binary(char);

impl Op for Binary {
    fn infer(&self, inputs: &Inputs) -> Result<Vec<(DType, Vec<usize>)>, InferError> {
        let (a, b) = (req(inputs, 0)?, req(inputs, 1)?);
        if a.dtype != b.dtype {
            return Err(format!("input types differ: {} and {}", a.dtype, b.dtype).into());
        }
        Ok(vec![(a.dtype, broadcast(&a.shape, &b.shape)?)])
    }

    fn eval(&self, inputs: &Inputs, outputs: &[(DType, Vec<usize>)]) -> Option<Vec<TensorData>> {
        // Integer shape arithmetic only: floats run in C so that rounding matches it.
        let (a, b) = (req(inputs, 0).ok()?, req(inputs, 1).ok()?);
        let (TensorData::I64(x), TensorData::I64(y)) = (a.value.as_deref()?, b.value.as_deref()?)
        else {
            return None;
        };
        let out = &outputs[0].1;
        let xi = crate::loops::offsets(out, 0, &broadcast_strides(&a.shape, out));
        let yi = crate::loops::offsets(out, 0, &broadcast_strides(&b.shape, out));
        let mut v = Vec::with_capacity(xi.len());
        for (i, j) in xi.into_iter().zip(yi) {
            let (p, q) = (x[i], y[j]);
            v.push(match self.0 {
                '+' => p.wrapping_add(q),
                '-' => p.wrapping_sub(q),
                '*' => p.wrapping_mul(q),
                _ => p.checked_div(q)?,
            });
        }
        Some(vec![TensorData::I64(v)])
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let (a, b) = (io.input(0)?, io.input(1)?);
        let Some(y) = &io.outputs[0] else {
            return Ok(());
        };
        let acc = [
            Access::new(&a.ptr, broadcast_strides(&a.shape, &y.shape)),
            Access::new(&b.ptr, broadcast_strides(&b.shape, &y.shape)),
            Access::new(&y.ptr, contiguous_strides(&y.shape)),
        ];
        let ty = y.dtype.c_type();
        let op = self.0;
        e.push(&nest(&y.shape, &acc, |ix| {
            format!("{} = ({ty})({} {op} {});", ix[2], ix[0], ix[1])
        }));
        Ok(())
    }
}

/// `Max`, `Min`, `Sum` over any number of broadcast inputs.
#[derive(Debug)]
struct Variadic(String);

impl Op for Variadic {
    fn infer(&self, inputs: &Inputs) -> Result<Vec<(DType, Vec<usize>)>, InferError> {
        let first = req(inputs, 0)?;
        let mut shape = first.shape.clone();
        for k in 1..inputs.len() {
            let x = req(inputs, k)?;
            if x.dtype != first.dtype {
                return Err(format!("input types differ: {} and {}", first.dtype, x.dtype).into());
            }
            shape = broadcast(&shape, &x.shape)?;
        }
        Ok(vec![(first.dtype, shape)])
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let Some(y) = &io.outputs[0] else {
            return Ok(());
        };
        let ys = contiguous_strides(&y.shape);
        for k in 0..io.inputs.len() {
            let x = io.input(k)?;
            let acc = [
                Access::new(&x.ptr, broadcast_strides(&x.shape, &y.shape)),
                Access::new(&y.ptr, ys.clone()),
            ];
            let op = self.0.as_str();
            e.push(&nest(&y.shape, &acc, |ix| match (k, op) {
                (0, _) => format!("{} = {};", ix[1], ix[0]),
                (_, "Max") => format!("if ({0} > {1} || {0} != {0}) {1} = {0};", ix[0], ix[1]),
                (_, "Min") => format!("if ({0} < {1} || {0} != {0}) {1} = {0};", ix[0], ix[1]),
                _ => format!("{} += {};", ix[1], ix[0]),
            }));
        }
        Ok(())
    }
}

/// `Cast` to a type, or `CastLike` (to input 1's type) when `None`.
#[derive(Debug)]
struct Cast(Option<DType>);

impl Cast {
    fn target(&self, inputs: &Inputs) -> Result<DType, InferError> {
        match self.0 {
            Some(t) => Ok(t),
            None => Ok(req(inputs, 1)?.dtype),
        }
    }
}

impl Op for Cast {
    fn infer(&self, inputs: &Inputs) -> Result<Vec<(DType, Vec<usize>)>, InferError> {
        Ok(vec![(self.target(inputs)?, req(inputs, 0)?.shape.clone())])
    }

    fn eval(&self, inputs: &Inputs, outputs: &[(DType, Vec<usize>)]) -> Option<Vec<TensorData>> {
        let x = req(inputs, 0).ok()?;
        let v = x.value.as_deref()?;
        let to = outputs[0].0;
        if !x.dtype.is_float() && !to.is_float() {
            return Some(vec![dtype::from_i64(&dtype::to_i64(v)?, to)?]);
        }
        if x.dtype.is_float() && to.is_float() {
            let f = dtype::to_f64(v);
            return Some(vec![match to {
                DType::F32 => TensorData::F32(f.iter().map(|&x| x as f32).collect()),
                _ => TensorData::F64(f),
            }]);
        }
        None
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let x = io.input(0)?;
        let Some(y) = &io.outputs[0] else {
            return Ok(());
        };
        let s = contiguous_strides(&x.shape);
        let ty = y.dtype.c_type();
        let to_bool = y.dtype == DType::Bool;
        e.push(&nest(
            &x.shape,
            &[Access::new(&x.ptr, s.clone()), Access::new(&y.ptr, s)],
            |ix| {
                if to_bool {
                    format!("{} = ({} != 0);", ix[1], ix[0])
                } else {
                    format!("{} = ({ty}){};", ix[1], ix[0])
                }
            },
        ));
        Ok(())
    }
}
