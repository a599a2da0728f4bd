//! Reductions along axes: Softmax and LogSoftmax, ReduceMax/Min/Sum/Mean, ArgMax/ArgMin,
//! and the global pools.

use super::{
    const_ints, contiguous_strides, norm_axis, req, InferError, Inputs, NodeCx, NodeIo, Op,
    Registry,
};
use crate::dtype::DType;
use crate::emitter::Emitter;
use crate::loops::{nest, Access};

pub(super) fn register(r: &mut Registry) {
    r.add("Softmax", |cx| softmax(cx, false));
    r.add("LogSoftmax", |cx| softmax(cx, true));
    for name in ["ReduceMax", "ReduceMin", "ReduceSum", "ReduceMean"] {
        r.add(name, |cx| {
            let op = cx.node.op_type.clone().unwrap_or_default();
            // Axes became an input in opset 13 for ReduceSum and 18 for the others.
            let axes_input = cx.opset >= if op == "ReduceSum" { 13 } else { 18 };
            Ok(Box::new(Reduce {
                kind: op,
                axes: if axes_input { None } else { cx.ints("axes")? },
                keep_dims: cx.int_or("keepdims", 1)? != 0,
                noop_empty: cx.int_or("noop_with_empty_axes", 0)? != 0,
            }))
        });
    }
    r.add("GlobalAveragePool", |_| Ok(Box::new(Global("ReduceMean"))));
    r.add("GlobalMaxPool", |_| Ok(Box::new(Global("ReduceMax"))));
    for name in ["ArgMax", "ArgMin"] {
        r.add(name, |cx| {
            Ok(Box::new(Arg {
                max: cx.node.op_type.as_deref() == Some("ArgMax"),
                axis: cx.int_or("axis", 0)?,
                keep_dims: cx.int_or("keepdims", 1)? != 0,
                last: cx.int_or("select_last_index", 0)? != 0,
            }))
        });
    }
}

fn softmax(cx: &NodeCx, log: bool) -> Result<Box<dyn Op>, String> {
    Ok(Box::new(Softmax {
        log,
        axis: cx.int_or("axis", if cx.opset < 13 { 1 } else { -1 })?,
        coerce_2d: cx.opset < 13,
    }))
}

/// Softmax or LogSoftmax along one axis (opset ≥ 13), or over the axes from `axis` on
/// (before 13, the input read as 2-D).
#[derive(Debug)]
struct Softmax {
    log: bool,
    axis: i64,
    coerce_2d: bool,
}

impl Op for Softmax {
    fn infer(&self, inputs: &Inputs) -> Result<Vec<(DType, Vec<usize>)>, InferError> {
        let x = req(inputs, 0)?;
        super::require_float(x)?;
        norm_axis(self.axis, x.shape.len())?;
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let x = io.input(0)?;
        let Some(y) = &io.outputs[0] else {
            return Ok(());
        };
        if x.is_empty() {
            return Ok(());
        }
        let a = norm_axis(self.axis, x.shape.len())?;
        let outer: usize = x.shape[..a].iter().product();
        let (n, inner) = if self.coerce_2d {
            (x.shape[a..].iter().product(), 1)
        } else {
            (x.shape[a], x.shape[a + 1..].iter().product())
        };
        let t = x.dtype;
        let ty = t.c_type();
        let (exp, log) = (t.math("exp"), t.math("log"));
        let finish = if self.log {
            format!("{ty} ls = {log}(s);\n        for (ptrdiff_t k = 0; k < {n}; ++k) yp[k * {inner}] = xp[k * {inner}] - m - ls;")
        } else {
            format!("for (ptrdiff_t k = 0; k < {n}; ++k) yp[k * {inner}] /= s;")
        };
        let store =
            if self.log { "" } else { "yp[k * INNER] = v; " }.replace("INNER", &inner.to_string());
        e.push(&format!(
            "for (ptrdiff_t o = 0; o < {outer}; ++o) {{\n    for (ptrdiff_t i = 0; i < {inner}; ++i) {{\n        \
             const {ty} *xp = {x} + o * {ni} + i;\n        {ty} *yp = {y} + o * {ni} + i;\n        \
             {ty} m = xp[0];\n        for (ptrdiff_t k = 1; k < {n}; ++k) if (xp[k * {inner}] > m) m = xp[k * {inner}];\n        \
             {ty} s = 0;\n        for (ptrdiff_t k = 0; k < {n}; ++k) {{ {ty} v = {exp}(xp[k * {inner}] - m); {store}s += v; }}\n        \
             {finish}\n    }}\n}}",
            x = x.ptr,
            y = y.ptr,
            ni = n * inner,
        ));
        Ok(())
    }
}

/// The axes a reduction runs over, and its output shape.
fn reduced(
    shape: &[usize],
    axes: Option<Vec<i64>>,
    keep: bool,
    noop_empty: bool,
) -> Result<(Vec<bool>, Vec<usize>), String> {
    let r = shape.len();
    let mut on = vec![false; r];
    match axes {
        Some(a) if !a.is_empty() => {
            for x in a {
                on[norm_axis(x, r)?] = true;
            }
        }
        _ if noop_empty => {}
        _ => on = vec![true; r],
    }
    let out = (0..r)
        .filter_map(|i| match (on[i], keep) {
            (true, true) => Some(1),
            (true, false) => None,
            (false, _) => Some(shape[i]),
        })
        .collect();
    Ok((on, out))
}

/// Emits `y = reduce(x)` over the axes marked in `on`.
fn emit_reduce(e: &mut Emitter, kind: &str, x: &super::Operand, y: &super::Operand, on: &[bool]) {
    let t = x.dtype;
    let init = match kind {
        "ReduceMax" => t.lowest(),
        "ReduceMin" => t.highest(),
        _ => "0",
    };
    if y.is_empty() {
        return;
    }
    e.push(&format!(
        "for (ptrdiff_t i = 0; i < {}; ++i) {}[i] = {init};",
        y.len(),
        y.ptr
    ));
    // The output read with the input's rank: stride 0 along reduced axes.
    let mut kept = Vec::new();
    for (i, &d) in x.shape.iter().enumerate() {
        kept.push(if on[i] { 1 } else { d });
    }
    let ks = contiguous_strides(&kept);
    let ys: Vec<isize> = (0..x.shape.len())
        .map(|i| if on[i] { 0 } else { ks[i] })
        .collect();
    let acc = [
        Access::new(&x.ptr, contiguous_strides(&x.shape)),
        Access::new(&y.ptr, ys),
    ];
    e.push(&nest(&x.shape, &acc, |ix| match kind {
        "ReduceMax" => format!("if ({0} > {1}) {1} = {0};", ix[0], ix[1]),
        "ReduceMin" => format!("if ({0} < {1}) {1} = {0};", ix[0], ix[1]),
        _ => format!("{1} += {0};", ix[0], ix[1]),
    }));
    if kind == "ReduceMean" {
        let count: usize = (0..x.shape.len())
            .filter(|&i| on[i])
            .map(|i| x.shape[i])
            .product();
        e.push(&format!(
            "for (ptrdiff_t i = 0; i < {}; ++i) {}[i] /= {count};",
            y.len(),
            y.ptr
        ));
    }
}

/// ReduceMax, ReduceMin, ReduceSum, ReduceMean.
#[derive(Debug)]
struct Reduce {
    kind: String,
    /// Attribute axes (older opsets); otherwise input 1.
    axes: Option<Vec<i64>>,
    keep_dims: bool,
    noop_empty: bool,
}

impl Reduce {
    fn plan(&self, inputs: &Inputs) -> Result<(Vec<bool>, Vec<usize>), InferError> {
        let x = req(inputs, 0)?;
        let axes = match &self.axes {
            Some(a) => Some(a.clone()),
            None => const_ints(inputs, 1)?,
        };
        Ok(reduced(&x.shape, axes, self.keep_dims, self.noop_empty)?)
    }
}

impl Op for Reduce {
    fn infer(&self, inputs: &Inputs) -> Result<Vec<(DType, Vec<usize>)>, InferError> {
        let x = req(inputs, 0)?;
        if self.kind == "ReduceMean" && !x.dtype.is_float() {
            return Err("ReduceMean needs a float input".to_string().into());
        }
        Ok(vec![(x.dtype, self.plan(inputs)?.1)])
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let facts = io.facts();
        let refs: Vec<_> = facts.iter().map(Option::as_ref).collect();
        let (on, _) = self.plan(&refs).map_err(|e| format!("{e:?}"))?;
        let x = io.input(0)?;
        if let Some(y) = &io.outputs[0] {
            emit_reduce(e, &self.kind, x, y, &on);
        }
        Ok(())
    }
}

/// GlobalAveragePool / GlobalMaxPool: a reduction over every axis after the channels.
#[derive(Debug)]
struct Global(&'static str);

impl Op for Global {
    fn infer(&self, inputs: &Inputs) -> Result<Vec<(DType, Vec<usize>)>, InferError> {
        let x = req(inputs, 0)?;
        if x.shape.len() < 2 || !x.dtype.is_float() {
            return Err(format!(
                "needs a float input of rank ≥ 2, got {} {:?}",
                x.dtype, x.shape
            )
            .into());
        }
        let mut s = x.shape.clone();
        s[2..].iter_mut().for_each(|d| *d = 1);
        Ok(vec![(x.dtype, s)])
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let x = io.input(0)?;
        let on: Vec<bool> = (0..x.shape.len()).map(|i| i >= 2).collect();
        if let Some(y) = &io.outputs[0] {
            emit_reduce(e, self.0, x, y, &on);
        }
        Ok(())
    }
}

/// ArgMax / ArgMin along an axis, first or last index of ties.
#[derive(Debug)]
struct Arg {
    max: bool,
    axis: i64,
    keep_dims: bool,
    last: bool,
}

impl Op for Arg {
    fn infer(&self, inputs: &Inputs) -> Result<Vec<(DType, Vec<usize>)>, InferError> {
        let x = req(inputs, 0)?;
        let a = norm_axis(self.axis, x.shape.len())?;
        let mut s = x.shape.clone();
        if self.keep_dims {
            s[a] = 1;
        } else {
            s.remove(a);
        }
        Ok(vec![(DType::I64, s)])
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let x = io.input(0)?;
        let Some(y) = &io.outputs[0] else {
            return Ok(());
        };
        if y.is_empty() {
            return Ok(());
        }
        let a = norm_axis(self.axis, x.shape.len())?;
        let outer: usize = x.shape[..a].iter().product();
        let inner: usize = x.shape[a + 1..].iter().product();
        let n = x.shape[a];
        let cmp = match (self.max, self.last) {
            (true, false) => ">",
            (true, true) => ">=",
            (false, false) => "<",
            (false, true) => "<=",
        };
        e.push(&format!(
            "for (ptrdiff_t o = 0; o < {outer}; ++o) {{\n    for (ptrdiff_t i = 0; i < {inner}; ++i) {{\n        \
             const {ty} *xp = {x} + o * {ni} + i;\n        ptrdiff_t best = 0;\n        \
             for (ptrdiff_t k = 1; k < {n}; ++k) if (xp[k * {inner}] {cmp} xp[best * {inner}]) best = k;\n        \
             {y}[o * {inner} + i] = (int64_t)best;\n    }}\n}}",
            ty = x.dtype.c_type(),
            x = x.ptr,
            y = y.ptr,
            ni = n * inner,
        ));
        Ok(())
    }
}
