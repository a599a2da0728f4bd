//! Ops that assemble an output from pieces of their inputs: Concat, Gather (indices
//! checked at run time) and Pad (constant, reflect, edge, wrap).

use std::fmt::Write;

use autocaption_onnx::TensorData;

use super::{
    const_ints, contiguous_strides, norm_axis, req, unsupported, Fact, InferError, Inputs, NodeIo,
    Op, Registry, Shaped,
};
use crate::dtype::{self, DType};
use crate::emitter::Emitter;
use crate::loops::{nest, Access};

pub(super) fn register(r: &mut Registry) {
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
        // A constant float table gathered by rows, quantised: int8 rows with a scale each.
        let table = match x.value.as_deref() {
            Some(TensorData::F32(v)) if outer == 1 => Some(v),
            _ => None,
        };
        if let (Some(v), Some(crate::quant::Quantize::Int8)) = (table, e.quantize()) {
            let (q, scales) = crate::quant::int8_channels(d, inner, |r, c| v[r * inner + c]);
            let q = e.constant("int8_t", q.iter().map(|&b| b as u8).collect());
            let s = e.constant("float", crate::quant::f32_bytes(&scales));
            e.push(&format!(
                "for (ptrdiff_t j = 0; j < {n}; ++j) {{\n    int64_t k = (int64_t){}[j];\n    if (k < 0) k += {d};\n    \
                 if (k < 0 || k >= {d}) {fail}\n    for (ptrdiff_t c = 0; c < {inner}; ++c)\n        \
                 {}[j * {inner} + c] = (float){q}[k * {inner} + c] * {s}[k];\n}}",
                i.ptr, y.ptr
            ));
            return Ok(());
        }
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
