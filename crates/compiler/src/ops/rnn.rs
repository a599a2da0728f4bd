//! The recurrent ops, LSTM, GRU and RNN, to the full ONNX spec: forward, reverse and
//! bidirectional, both layouts, initial states, sequence lengths, peepholes, clipping,
//! custom activations.

use super::{req, unsupported, InferError, Inputs, NodeCx, NodeIo, Op, Registry};
use crate::dtype::DType;
use crate::emitter::Emitter;

const ACT: &str = include_str!("../../c/act.c");
const LSTM: &str = include_str!("../../c/lstm.c");
const GRU: &str = include_str!("../../c/gru.c");
const RNN: &str = include_str!("../../c/rnn.c");
const LSTM_FAST: &str = include_str!("../../c/lstm_fast.c");

pub(super) fn register(r: &mut Registry) {
    r.add("LSTM", |cx| Recurrent::read(cx, Kind::Lstm));
    r.add("GRU", |cx| Recurrent::read(cx, Kind::Gru));
    r.add("RNN", |cx| Recurrent::read(cx, Kind::Rnn));
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Lstm,
    Gru,
    Rnn,
}

impl Kind {
    fn gates(self) -> usize {
        match self {
            Kind::Lstm => 4,
            Kind::Gru => 3,
            Kind::Rnn => 1,
        }
    }

    fn default_acts(self) -> &'static [&'static str] {
        match self {
            Kind::Lstm => &["Sigmoid", "Tanh", "Tanh"],
            Kind::Gru => &["Sigmoid", "Tanh"],
            Kind::Rnn => &["Tanh"],
        }
    }
}

/// An activation: its code in `act.c`, alpha and beta.
type Act = (i32, f32, f32);

/// The code of an activation, its default alpha and beta, and whether it reads them.
fn activation(name: &str) -> Option<(i32, f32, f32, bool, bool)> {
    Some(match name.to_ascii_lowercase().as_str() {
        "sigmoid" => (0, 0.0, 0.0, false, false),
        "tanh" => (1, 0.0, 0.0, false, false),
        "relu" => (2, 0.0, 0.0, false, false),
        "leakyrelu" => (3, 0.01, 0.0, true, false),
        "thresholdedrelu" => (4, 1.0, 0.0, true, false),
        "scaledtanh" => (5, 1.0, 1.0, true, true),
        "hardsigmoid" => (6, 0.2, 0.5, true, true),
        "elu" => (7, 1.0, 0.0, true, false),
        "softsign" => (8, 0.0, 0.0, false, false),
        "softplus" => (9, 0.0, 0.0, false, false),
        "affine" => (10, 1.0, 0.0, true, true),
        _ => return None,
    })
}

#[derive(Debug)]
struct Recurrent {
    kind: Kind,
    hidden: Option<usize>,
    directions: usize,
    reverse_only: bool,
    batch_first: bool,
    /// Per direction, its activations.
    acts: Vec<Vec<Act>>,
    clip: f32,
    input_forget: bool,
    linear_before_reset: bool,
}

impl Recurrent {
    fn read(cx: &NodeCx, kind: Kind) -> Result<Box<dyn Op>, String> {
        let direction = cx.string("direction")?.unwrap_or_else(|| "forward".into());
        let directions = match direction.as_str() {
            "forward" | "reverse" => 1,
            "bidirectional" => 2,
            other => return Err(format!("invalid direction '{other}'")),
        };
        let per = kind.default_acts().len();
        let names = cx.strings("activations")?.unwrap_or_else(|| {
            kind.default_acts()
                .iter()
                .cycle()
                .take(per * directions)
                .map(|s| s.to_string())
                .collect()
        });
        if names.len() != per * directions {
            return Err(format!(
                "{} activations given, {} expected",
                names.len(),
                per * directions
            ));
        }
        let (alphas, betas) = (
            cx.floats("activation_alpha")?.unwrap_or_default(),
            cx.floats("activation_beta")?.unwrap_or_default(),
        );
        let (mut ai, mut bi) = (0, 0);
        let mut acts = vec![Vec::new(); directions];
        for (k, name) in names.iter().enumerate() {
            let Some((code, mut alpha, mut beta, uses_a, uses_b)) = activation(name) else {
                return unsupported(format!("activation '{name}'"));
            };
            if uses_a && ai < alphas.len() {
                alpha = alphas[ai];
                ai += 1;
            }
            if uses_b && bi < betas.len() {
                beta = betas[bi];
                bi += 1;
            }
            acts[k / per].push((code, alpha, beta));
        }
        Ok(Box::new(Recurrent {
            kind,
            hidden: cx.int("hidden_size")?.map(|h| h as usize),
            directions,
            reverse_only: direction == "reverse",
            batch_first: cx.int_or("layout", 0)? != 0,
            acts,
            clip: cx.float("clip")?.unwrap_or(0.0),
            input_forget: cx.int_or("input_forget", 0)? != 0,
            linear_before_reset: cx.int_or("linear_before_reset", 0)? != 0,
        }))
    }

    /// Sequence length, batch, input size, hidden size.
    fn dims(&self, inputs: &Inputs) -> Result<(usize, usize, usize, usize), InferError> {
        let (x, w, r) = (req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?);
        for (k, f) in [x, w, r].iter().enumerate() {
            if f.dtype != DType::F32 {
                return Err(format!(
                    "input {k} is {}; recurrent ops are compiled for FLOAT",
                    f.dtype
                )
                .into());
            }
        }
        if x.shape.len() != 3 || w.shape.len() != 3 || r.shape.len() != 3 {
            return Err("X, W and R must have rank 3".to_string().into());
        }
        let (t, b) = if self.batch_first {
            (x.shape[1], x.shape[0])
        } else {
            (x.shape[0], x.shape[1])
        };
        let g = self.kind.gates();
        let h = w.shape[1] / g;
        let d = self.directions;
        if w.shape != [d, g * h, x.shape[2]]
            || r.shape != [d, g * h, h]
            || self.hidden.is_some_and(|hs| hs != h)
        {
            return Err(format!(
                "W {:?} and R {:?} do not fit X {:?}, {d} direction(s), hidden size {h}",
                w.shape, r.shape, x.shape
            )
            .into());
        }
        let check = |slot: usize, want: Vec<usize>, dtype: DType| -> Result<(), InferError> {
            if let Some(f) = super::opt(inputs, slot) {
                if f.shape != want || f.dtype != dtype {
                    return Err(format!(
                        "input {slot} is {} {:?}, expected {dtype} {want:?}",
                        f.dtype, f.shape
                    )
                    .into());
                }
            }
            Ok(())
        };
        let bias = if self.kind == Kind::Gru || self.kind == Kind::Lstm {
            2 * g * h
        } else {
            2 * h
        };
        check(3, vec![d, bias], DType::F32)?;
        check(4, vec![b], DType::I32)?;
        let state = if self.batch_first {
            vec![b, d, h]
        } else {
            vec![d, b, h]
        };
        check(5, state.clone(), DType::F32)?;
        if self.kind == Kind::Lstm {
            check(6, state, DType::F32)?;
            check(7, vec![d, 3 * h], DType::F32)?;
        }
        Ok((t, b, x.shape[2], h))
    }
}

/// Element strides of X and Y by step and by batch entry, and of the states by batch entry.
struct Strides {
    xt: usize,
    xb: usize,
    yt: usize,
    yb: usize,
    hb: usize,
}

impl Recurrent {
    /// The strides of both layouts; zeroes Y first (positions past a sequence's length stay
    /// zero).
    fn strides(
        &self,
        e: &mut Emitter,
        io: &NodeIo,
        (t, b, i, h): (usize, usize, usize, usize),
    ) -> Strides {
        let d = self.directions;
        if let Some(y) = io.output_ptr(0) {
            if t * b * d * h > 0 {
                e.push(&format!("memset({y}, 0, {});", t * b * d * h * 4));
            }
        }
        if self.batch_first {
            Strides {
                xt: i,
                xb: t * i,
                yt: d * h,
                yb: t * d * h,
                hb: d * h,
            }
        } else {
            Strides {
                xt: b * i,
                xb: i,
                yt: d * b * h,
                yb: h,
                hb: h,
            }
        }
    }

    /// Whether the fused path applies: an LSTM with the default activations, no clip, no
    /// coupled gates, no peepholes, constant float weights.
    fn fast(&self, inputs: &Inputs) -> bool {
        let constant = |k: usize| super::opt(inputs, k).is_some_and(|f| f.value.is_some());
        let absent = |k: usize| super::opt(inputs, k).is_none_or(|f| f.is_empty());
        self.kind == Kind::Lstm
            && self
                .acts
                .iter()
                .all(|a| a.len() == 3 && a[0].0 == 0 && a[1].0 == 1 && a[2].0 == 1)
            && self.clip == 0.0
            && !self.input_forget
            && constant(1)
            && constant(2)
            && (absent(3) || constant(3))
            && absent(7)
    }

    /// The fused LSTM: weights packed gate-interleaved, one product a step.
    fn emit_fast(
        &self,
        e: &mut Emitter,
        io: &NodeIo,
        dims: (usize, usize, usize, usize),
    ) -> Result<(), String> {
        let (t, b, i, h) = dims;
        let hp = h.div_ceil(16) * 16;
        let x = io.input(0)?;
        let (w, r) = (io.input(1)?, io.input(2)?);
        let (Some(wv), Some(rv)) = (super::linalg::f32_values(w), super::linalg::f32_values(r))
        else {
            return Err("LSTM weights are not constant floats".into());
        };
        let bias = io
            .inputs
            .get(3)
            .and_then(Option::as_ref)
            .filter(|o| !o.is_empty());
        let bv = match bias {
            Some(o) => Some(super::linalg::f32_values(o).ok_or("LSTM bias is not constant")?),
            None => None,
        };
        super::linalg::mm(e);
        super::linalg::mmq(e);
        let f = e.helper("lstmf", LSTM_FAST, DType::F32);
        let scratch = io.scratch.clone().ok_or("no scratch memory")?;
        // Column 64u + 16g + l of the packed matrices is gate g of unit 16u + l.
        let unit = |col: usize| {
            let (u, g, l) = (col / 64, (col % 64) / 16, col % 16);
            (g, 16 * u + l)
        };
        let ptr = |k: usize| io.input_ptr(k);
        let out = |k: usize| io.output_ptr(k);
        let at =
            |p: Option<String>, off: usize| p.map_or("0".to_string(), |p| format!("{p} + {off}"));
        let d = self.directions;
        let Strides { xt, xb, yt, yb, hb } = self.strides(e, io, (t, b, i, h));
        let fail = e.fail("ERR_SEQUENCE_LENGTH");
        for dir in 0..d {
            let reverse = self.reverse_only || dir == 1;
            let (wd, rd) = (&wv[dir * 4 * h * i..], &rv[dir * 4 * h * h..]);
            let (_, wp, ws) = super::linalg::packed_operand(e, i, 4 * hp, |k, col| {
                let (g, j) = unit(col);
                if j < h {
                    wd[(g * h + j) * i + k]
                } else {
                    0.0
                }
            });
            let (_, rp, rs) = super::linalg::packed_operand(e, h, 4 * hp, |k, col| {
                let (g, j) = unit(col);
                if j < h {
                    rd[(g * h + j) * h + k]
                } else {
                    0.0
                }
            });
            // Float weights, or int8 weights with their column and row scales.
            let weights = if ws.is_empty() {
                format!("{wp}, {rp}, 0, 0, 0, 0, 0, 0")
            } else {
                format!("0, 0, {wp}, {ws}, {rp}, {rs}")
            };
            let bias = match bv {
                Some(bv) => {
                    let bd = &bv[dir * 8 * h..];
                    let mut bytes = Vec::with_capacity(4 * hp * 4);
                    for col in 0..4 * hp {
                        let (g, j) = unit(col);
                        let v = if j < h {
                            bd[g * h + j] + bd[4 * h + g * h + j]
                        } else {
                            0.0
                        };
                        bytes.extend_from_slice(&v.to_le_bytes());
                    }
                    e.constant("float", bytes)
                }
                None => "0".into(),
            };
            let state_off = if self.batch_first {
                dir * h
            } else {
                dir * b * h
            };
            let lens = ptr(4).unwrap_or_else(|| "0".into());
            e.push(&format!(
                "if ({f}({t}, {b}, {i}, {h}, {hp}, {}, {}, {xt}, {xb}, {weights}, {bias}, {}, {}, {hb}, {lens}, {}, {yt}, {yb}, {}, {}, (float *){scratch})) {fail}",
                i32::from(reverse),
                x.ptr,
                at(ptr(5), state_off),
                at(ptr(6), state_off),
                at(out(0), state_off),
                at(out(1), state_off),
                at(out(2), state_off),
            ));
        }
        Ok(())
    }
}

impl Op for Recurrent {
    fn infer(&self, inputs: &Inputs) -> Result<Vec<(DType, Vec<usize>)>, InferError> {
        let (t, b, _, h) = self.dims(inputs)?;
        let d = self.directions;
        let (y, state) = if self.batch_first {
            (vec![b, t, d, h], vec![b, d, h])
        } else {
            (vec![t, d, b, h], vec![d, b, h])
        };
        let mut out = vec![(DType::F32, y), (DType::F32, state.clone())];
        if self.kind == Kind::Lstm {
            out.push((DType::F32, state));
        }
        Ok(out)
    }

    fn scratch_bytes(&self, inputs: &Inputs) -> usize {
        match self.dims(inputs) {
            Ok((t, _, _, h)) if self.fast(inputs) => {
                let hp = h.div_ceil(16) * 16;
                ((t + 1) * 4 * hp + 3 * hp) * 4
            }
            Ok((_, _, _, h)) => 8 * h * 4,
            Err(_) => 0,
        }
    }

    fn emit(&self, e: &mut Emitter, io: &NodeIo) -> Result<(), String> {
        let facts = io.facts();
        let refs: Vec<_> = facts.iter().map(Option::as_ref).collect();
        let (t, b, i, h) = self.dims(&refs).map_err(|e| format!("{e:?}"))?;
        if self.fast(&refs) {
            return self.emit_fast(e, io, (t, b, i, h));
        }
        let d = self.directions;
        let g = self.kind.gates();
        let x = io.input(0)?;
        let ptr = |k: usize| io.input_ptr(k);
        let out = |k: usize| io.output_ptr(k);
        let scratch = io.scratch.clone().ok_or("no scratch memory")?;
        e.helper("act", ACT, DType::F32);
        let f = match self.kind {
            Kind::Lstm => e.helper("lstm", LSTM, DType::F32),
            Kind::Gru => e.helper("gru", GRU, DType::F32),
            Kind::Rnn => e.helper("rnn", RNN, DType::F32),
        };
        let Strides { xt, xb, yt, yb, hb } = self.strides(e, io, (t, b, i, h));
        let fail = e.fail("ERR_SEQUENCE_LENGTH");
        for dir in 0..d {
            let reverse = self.reverse_only || dir == 1;
            let acts = &self.acts[dir];
            let list =
                |f: &dyn Fn(&Act) -> String| acts.iter().map(f).collect::<Vec<_>>().join(", ");
            let at = |p: Option<String>, off: usize| {
                p.map_or("0".to_string(), |p| format!("{p} + {off}"))
            };
            let state_off = if self.batch_first {
                dir * h
            } else {
                dir * b * h
            };
            let y_off = if self.batch_first {
                dir * h
            } else {
                dir * b * h
            };
            let bias_len = if self.kind == Kind::Rnn {
                2 * h
            } else {
                2 * g * h
            };
            let wb = at(ptr(3), dir * bias_len);
            let rb = at(ptr(3), dir * bias_len + bias_len / 2);
            let common = format!(
                "{t}, {b}, {i}, {h}, {}, {}, {xt}, {xb}, {} + {}, {} + {}, {wb}, {rb}",
                i32::from(reverse),
                x.ptr,
                io.input(1)?.ptr,
                dir * g * h * i,
                io.input(2)?.ptr,
                dir * g * h * h,
            );
            let acts_c = format!(
                "(const int[]){{{}}}, (const float[]){{{}}}, (const float[]){{{}}}, {:e}f",
                list(&|a| a.0.to_string()),
                list(&|a| format!("{:e}f", a.1)),
                list(&|a| format!("{:e}f", a.2)),
                self.clip
            );
            let lens = ptr(4).unwrap_or_else(|| "0".into());
            let call = match self.kind {
                Kind::Lstm => format!(
                    "{f}({common}, {}, {}, {}, {hb}, {lens}, {}, {yt}, {yb}, {}, {}, {acts_c}, {}, (float *){scratch})",
                    at(ptr(7), dir * 3 * h),
                    at(ptr(5), state_off),
                    at(ptr(6), state_off),
                    at(out(0), y_off),
                    at(out(1), state_off),
                    at(out(2), state_off),
                    i32::from(self.input_forget),
                ),
                Kind::Gru => format!(
                    "{f}({common}, {}, {hb}, {lens}, {}, {yt}, {yb}, {}, {acts_c}, {}, (float *){scratch})",
                    at(ptr(5), state_off),
                    at(out(0), y_off),
                    at(out(1), state_off),
                    i32::from(self.linear_before_reset),
                ),
                Kind::Rnn => format!(
                    "{f}({common}, {}, {hb}, {lens}, {}, {yt}, {yb}, {}, {acts_c}, (float *){scratch})",
                    at(ptr(5), state_off),
                    at(out(0), y_off),
                    at(out(1), state_off),
                ),
            };
            e.push(&format!("if ({call}) {fail}"));
        }
        Ok(())
    }
}
