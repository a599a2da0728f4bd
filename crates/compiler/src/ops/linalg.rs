//! Matrix products: MatMul (numpy semantics, batched and broadcast, optionally with a
//! fused row bias) and Gemm.

use super::{
    broadcast, broadcast_strides, req, unsupported, InferError, Inputs, NodeIo, Op, Operand,
    Registry,
};
use crate::dtype::DType;
use crate::emitter::Emitter;
use crate::loops::{nest, Access};

const GEMM: &str = include_str!("../../c/gemm.c");
/// The kernels' instruction-set paths (AVX2, vector extensions, portable C).
const SIMD: &str = include_str!("../../c/simd.c");
/// The register-tiled float32 product (`$P_mm_f32`), shared by MatMul, Gemm and LSTM.
const MM: &str = include_str!("../../c/mm.c");

/// Instantiates the path selection, which every tiled kernel needs first.
fn simd(e: &mut Emitter) {
    e.helper("simd", SIMD, DType::F32);
}

/// The register tiles every product uses, a copy per instruction-set path.
const TILES: &str = include_str!("../../c/tiles.c");

/// Each tile's parameters and the arguments passing them on (for the dispatchers).
const TILE_SIGNATURES: [(&str, &str, &str); 4] = [
    (
        "tile4",
        "ptrdiff_t K, const float *a, ptrdiff_t lda, const float *b, ptrdiff_t bk, float *t",
        "K, a, lda, b, bk, t",
    ),
    (
        "tile1",
        "ptrdiff_t K, const float *a, const float *b, ptrdiff_t bk, float *t",
        "K, a, b, bk, t",
    ),
    (
        "k6x16",
        "ptrdiff_t kc, const float *a, const float *b, float *t",
        "kc, a, b, t",
    ),
    (
        "tile1q",
        "ptrdiff_t K, const float *a, const int8_t *q, float *t",
        "K, a, q, t",
    ),
];

/// Instantiates the path selection and the tiles: one copy whose path the C compiler's
/// flags choose, or (GCC/Clang on x86 without AVX2 enabled) an AVX2 copy, a vector copy and
/// dispatchers choosing by the CPU at run time.
fn tiles(e: &mut Emitter) {
    simd(e);
    let copy = |v: &str, avx: &str, vec: &str, tgt: &str| {
        TILES
            .replace("$V", v)
            .replace("$AVX", avx)
            .replace("$VEC", vec)
            .replace("$TGT", tgt)
    };
    let mut text = String::from("#if defined($P_MM_DISPATCH)\n");
    text.push_str(&copy(
        "_avx2",
        "1",
        "0",
        "__attribute__((target(\"avx2,fma\")))",
    ));
    text.push_str(&copy("_vec", "0", "defined($P_MM_VEC)", ""));
    for (name, params, args) in TILE_SIGNATURES {
        text.push_str(&format!(
            "static $P_UNUSED void $P_{name}({params})\n{{\n    if ($P_avx2())\n        $P_{name}_avx2({args});\n    else\n        $P_{name}_vec({args});\n}}\n\n"
        ));
    }
    text.push_str("#else\n");
    text.push_str(&copy(
        "",
        "defined($P_MM_STATIC_AVX2)",
        "defined($P_MM_VEC)",
        "",
    ));
    text.push_str("#endif\n");
    e.helper("tiles", &text, DType::F32);
}

/// Instantiates `$P_mm_f32` and returns its name.
pub(crate) fn mm(e: &mut Emitter) -> String {
    tiles(e);
    e.helper("mm", MM, DType::F32)
}

/// Instantiates `$P_mmq_f32` (int8 weights) and returns its name.
pub(crate) fn mmq(e: &mut Emitter) -> String {
    tiles(e);
    e.helper("mmq", MMQ, DType::F32)
}

/// Instantiates `$P_mmw_f32` (constant weights on the left, for Conv) and returns its name.
pub(crate) fn mmw(e: &mut Emitter) -> String {
    tiles(e);
    e.helper("mmw", MMW, DType::F32)
}

const MMW: &str = include_str!("../../c/mmw.c");

const MMQ: &str = include_str!("../../c/mmq.c");

/// A constant right operand K×N (element (k, j) given by `at`) as the product reads it:
/// float panels, or with int8 quantisation int8 panels and the scales (see
/// [`crate::quant`]). Returns the function to call, the weights and, for int8, the scale
/// arguments (`column scales, row scales`).
pub(crate) fn packed_operand(
    e: &mut Emitter,
    k: usize,
    n: usize,
    at: impl Fn(usize, usize) -> f32,
) -> (String, String, String) {
    match e.quantize() {
        Some(crate::quant::Quantize::Int8) => {
            let (q, cols, rows) = crate::quant::int8_equalized(k, n, at);
            let bytes = panels(k, n, 16, 0u8, |kk, j| q[j * k + kk] as u8);
            let f = mmq(e);
            let bq = e.constant("int8_t", bytes);
            let cs = e.constant("float", crate::quant::f32_bytes(&cols));
            let ks = e.constant("float", crate::quant::f32_bytes(&rows));
            (f, bq, format!("{cs}, {ks}"))
        }
        None => {
            let f = mm(e);
            let b = e.constant("float", crate::quant::f32_bytes(&panels(k, n, 16, 0.0, at)));
            (f, b, String::new())
        }
    }
}

/// The call of a packed product: `Y[rows×n] = A[rows×k]·B + cb`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn packed_call(
    f: &str,
    b: &str,
    scales: &str,
    (rows, n, k): (usize, usize, usize),
    a: &str,
    cb: &str,
    y: &str,
) -> String {
    if scales.is_empty() {
        format!("{f}({rows}, {n}, {k}, {a}, {k}, {b}, 0, 0, {cb}, 0, 0, 0, {y}, {n});")
    } else {
        format!("{f}({rows}, {n}, {k}, {a}, {k}, {b}, {scales}, {cb}, 0, 0, 0, {y}, {n});")
    }
}

/// Lays out a K×N matrix (element (k, j) given by `at`) in panels of `width` columns: row k
/// of panel p at `(p*K + k)*width`, the last panel padded with `zero`. With width 16 it is
/// the constant right operand of `mm.c`; Conv's weights are their transpose in panels of 6.
pub(crate) fn panels<T: Copy>(
    k: usize,
    n: usize,
    width: usize,
    zero: T,
    at: impl Fn(usize, usize) -> T,
) -> Vec<T> {
    let count = n.div_ceil(width);
    let mut out = Vec::with_capacity(count * k * width);
    for p in 0..count {
        for kk in 0..k {
            for l in 0..width {
                let j = p * width + l;
                out.push(if j < n { at(kk, j) } else { zero });
            }
        }
    }
    out
}

/// The elements of a constant float32 operand.
pub(crate) fn f32_values(o: &Operand) -> Option<&[f32]> {
    match o.value.as_deref() {
        Some(autocaption_onnx::TensorData::F32(v)) => Some(v),
        _ => None,
    }
}

pub(super) fn register(r: &mut Registry) {
    r.add("MatMul", |_| Ok(Box::new(MatMul { bias: false })));
    r.add("Gemm", |cx| {
        Ok(Box::new(Gemm {
            alpha: cx.float("alpha")?.unwrap_or(1.0),
            beta: cx.float("beta")?.unwrap_or(1.0),
            trans_a: cx.int_or("transA", 0)? != 0,
            trans_b: cx.int_or("transB", 0)? != 0,
        }))
    });
}

/// `A @ B` with numpy semantics; with `bias`, input 2 (length N) is added to every row
/// (the MatMul + Add fusion).
#[derive(Debug)]
pub(crate) struct MatMul {
    /// Whether input 2 is a fused row bias.
    pub bias: bool,
}

struct MatMulPlan {
    batch: Vec<usize>,
    m: usize,
    k: usize,
    n: usize,
    out: Vec<usize>,
}

fn plan(a: &[usize], b: &[usize]) -> Result<MatMulPlan, String> {
    if a.is_empty() || b.is_empty() {
        return Err("MatMul of a scalar".into());
    }
    let (m, ka) = if a.len() == 1 {
        (1, a[0])
    } else {
        (a[a.len() - 2], a[a.len() - 1])
    };
    let (kb, n) = if b.len() == 1 {
        (b[0], 1)
    } else {
        (b[b.len() - 2], b[b.len() - 1])
    };
    if ka != kb {
        return Err(format!("inner dimensions differ: {a:?} @ {b:?}"));
    }
    let ab = if a.len() > 2 {
        &a[..a.len() - 2]
    } else {
        &[][..]
    };
    let bb = if b.len() > 2 {
        &b[..b.len() - 2]
    } else {
        &[][..]
    };
    let batch = broadcast(ab, bb)?;
    let mut out = batch.clone();
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Ok(MatMulPlan {
        batch,
        m,
        k: ka,
        n,
        out,
    })
}

fn float_or_int(t: DType) -> Result<(), InferError> {
    if t == DType::Bool {
        return Err("a product of booleans".to_string().into());
    }
    Ok(())
}

impl Op for MatMul {
    fn fuse(&self, next: &super::Consumer) -> Option<super::Fused> {
        // A bias over the last dimension only, of the product's type, not widening it.
        let (p, b) = (next.product, next.other?);
        let n = p.shape.last().copied().unwrap_or(1);
        (next.op_type == "Add"
            && !self.bias
            && b.dtype == p.dtype
            && b.len() == n
            && b.shape.len() <= p.shape.len()
            && b.shape.last().copied().unwrap_or(1) == n
            && next.out.shape == p.shape)
            .then(|| super::Fused::with_input(MatMul { bias: true }, 2))
    }

    fn infer(&self, inputs: &Inputs) -> Result<Vec<(DType, Vec<usize>)>, InferError> {
        let (a, b) = (req(inputs, 0)?, req(inputs, 1)?);
        if a.dtype != b.dtype {
            return Err(format!("input types differ: {} and {}", a.dtype, b.dtype).into());
        }
        float_or_int(a.dtype)?;
        Ok(vec![(a.dtype, plan(&a.shape, &b.shape)?.out)])
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let (a, b) = (io.input(0)?, io.input(1)?);
        let Some(y) = &io.outputs[0] else {
            return Ok(());
        };
        let p = plan(&a.shape, &b.shape)?;
        if y.is_empty() {
            return Ok(());
        }
        // A constant 2-D float B: packed at compile time, every row of A in one product.
        if let (Some(bv), 2, DType::F32) = (f32_values(b), b.shape.len(), y.dtype) {
            let rows = a.len() / p.k.max(1);
            if p.k > 0 {
                let n = p.n;
                let (f, packed, scales) = packed_operand(e, p.k, n, |k, j| bv[k * n + j]);
                let cb = if self.bias {
                    io.input(2)?.ptr.clone()
                } else {
                    "0".into()
                };
                e.push(&packed_call(
                    &f,
                    &packed,
                    &scales,
                    (rows, n, p.k),
                    &a.ptr,
                    &cb,
                    &y.ptr,
                ));
                return Ok(());
            }
        }
        let f = e.helper("gemm", GEMM, y.dtype);
        let ty = y.dtype.c_type();
        // Batch strides of each operand in units of elements.
        let batch_strides = |shape: &[usize], mat: usize| -> Vec<isize> {
            let bshape = if shape.len() > 2 {
                &shape[..shape.len() - 2]
            } else {
                &[][..]
            };
            broadcast_strides(bshape, &p.batch)
                .into_iter()
                .map(|s| s * mat as isize)
                .collect()
        };
        let acc = [
            Access::new(&a.ptr, batch_strides(&a.shape, p.m * p.k)),
            Access::new(&b.ptr, batch_strides(&b.shape, p.k * p.n)),
            Access::new(
                &y.ptr,
                super::contiguous_strides(&p.batch)
                    .into_iter()
                    .map(|s| s * (p.m * p.n) as isize)
                    .collect(),
            ),
        ];
        let (m, k, n) = (p.m, p.k, p.n);
        let bias = if self.bias {
            io.input(2)?.ptr.clone()
        } else {
            "0".into()
        };
        let call = |ix: &[String]| {
            format!(
                "{f}({m}, {n}, {k}, ({ty})1, &{}, {k}, 1, &{}, {n}, 1, ({ty})1, {bias}, 0, 1, &{});",
                ix[0], ix[1], ix[2]
            )
        };
        if p.batch.is_empty() {
            e.push(&call(&[
                format!("{}[0]", a.ptr),
                format!("{}[0]", b.ptr),
                format!("{}[0]", y.ptr),
            ]));
        } else {
            e.push(&nest(&p.batch, &acc, call));
        }
        Ok(())
    }
}

/// `alpha·op(A)·op(B) + beta·C`, C broadcast to M×N.
#[derive(Debug)]
struct Gemm {
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
}

impl Gemm {
    fn mkn(&self, a: &[usize], b: &[usize]) -> Result<(usize, usize, usize), String> {
        if a.len() != 2 || b.len() != 2 {
            return unsupported(format!("Gemm of shapes {a:?} and {b:?} (2-D only)"));
        }
        let (m, k) = if self.trans_a {
            (a[1], a[0])
        } else {
            (a[0], a[1])
        };
        let (kb, n) = if self.trans_b {
            (b[1], b[0])
        } else {
            (b[0], b[1])
        };
        if k != kb {
            return Err(format!("inner dimensions differ: {a:?} and {b:?}"));
        }
        Ok((m, k, n))
    }
}

impl Op for Gemm {
    fn infer(&self, inputs: &Inputs) -> Result<Vec<(DType, Vec<usize>)>, InferError> {
        let (a, b) = (req(inputs, 0)?, req(inputs, 1)?);
        float_or_int(a.dtype)?;
        let (m, _, n) = self.mkn(&a.shape, &b.shape)?;
        if let Some(c) = super::opt(inputs, 2) {
            if broadcast(&c.shape, &[m, n])? != [m, n] {
                return Err(
                    format!("C of shape {:?} does not broadcast to [{m}, {n}]", c.shape).into(),
                );
            }
        }
        Ok(vec![(a.dtype, vec![m, n])])
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let (a, b) = (io.input(0)?, io.input(1)?);
        let Some(y) = &io.outputs[0] else {
            return Ok(());
        };
        let (m, k, n) = self.mkn(&a.shape, &b.shape)?;
        if y.is_empty() {
            return Ok(());
        }
        // A constant float B, unscaled, with no C or a row bias C: the packed product.
        let c = io.inputs.get(2).and_then(Option::as_ref);
        let row_bias = c.is_none_or(|c| c.len() == n && c.shape.last() == Some(&n) || c.is_empty());
        if let (Some(bv), DType::F32, true, 1.0, 1.0, false, true) = (
            f32_values(b),
            y.dtype,
            k > 0,
            self.alpha,
            self.beta,
            self.trans_a,
            row_bias,
        ) {
            let trans = self.trans_b;
            let (f, packed, scales) = packed_operand(e, k, n, |kk, j| {
                if trans {
                    bv[j * k + kk]
                } else {
                    bv[kk * n + j]
                }
            });
            let cb = match c {
                Some(c) if !c.is_empty() => c.ptr.clone(),
                _ => "0".into(),
            };
            e.push(&packed_call(
                &f,
                &packed,
                &scales,
                (m, n, k),
                &a.ptr,
                &cb,
                &y.ptr,
            ));
            return Ok(());
        }
        let f = e.helper("gemm", GEMM, y.dtype);
        let ty = y.dtype.c_type();
        let (ars, acs) = if self.trans_a { (1, m) } else { (k, 1) };
        let (brs, bcs) = if self.trans_b { (1, k) } else { (n, 1) };
        let (c, crs, ccs) = match io.inputs.get(2).and_then(Option::as_ref) {
            Some(c) if !c.is_empty() => {
                let s = broadcast_strides(&c.shape, &[m, n]);
                (c.ptr.clone(), s[0], s[1])
            }
            _ => ("0".into(), 0, 0),
        };
        e.push(&format!(
            "{f}({m}, {n}, {k}, ({ty}){:e}, {}, {ars}, {acs}, {}, {brs}, {bcs}, ({ty}){:e}, {c}, {crs}, {ccs}, {});",
            self.alpha, a.ptr, b.ptr, self.beta, y.ptr
        ));
        Ok(())
    }
}
