//! Element types the compiler handles, their C spelling, and constant data in each.

use autocaption_onnx::TensorData;

/// An element type of a tensor in the compiled graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// `FLOAT`.
    F32,
    /// `DOUBLE`.
    F64,
    /// `INT8`.
    I8,
    /// `INT16`.
    I16,
    /// `INT32`.
    I32,
    /// `INT64`.
    I64,
    /// `UINT8`.
    U8,
    /// `UINT16`.
    U16,
    /// `UINT32`.
    U32,
    /// `UINT64`.
    U64,
    /// `BOOL`, stored as one byte holding 0 or 1.
    Bool,
}

impl DType {
    /// The type for an ONNX `TensorProto.DataType` code, if supported.
    pub fn from_onnx(code: i32) -> Option<DType> {
        Some(match code {
            1 => DType::F32,
            2 => DType::U8,
            3 => DType::I8,
            4 => DType::U16,
            5 => DType::I16,
            6 => DType::I32,
            7 => DType::I64,
            9 => DType::Bool,
            11 => DType::F64,
            12 => DType::U32,
            13 => DType::U64,
            _ => return None,
        })
    }

    /// The ONNX name of an ONNX data type code, for messages.
    pub fn onnx_name(code: i32) -> String {
        autocaption_onnx::proto::tensor_proto::DataType::try_from(code)
            .map(|t| t.as_str_name().to_string())
            .unwrap_or_else(|_| format!("type code {code}"))
    }

    /// The ONNX data type code.
    pub fn onnx_code(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::U8 => 2,
            DType::I8 => 3,
            DType::U16 => 4,
            DType::I16 => 5,
            DType::I32 => 6,
            DType::I64 => 7,
            DType::Bool => 9,
            DType::F64 => 11,
            DType::U32 => 12,
            DType::U64 => 13,
        }
    }

    /// The C99 type.
    pub fn c_type(self) -> &'static str {
        match self {
            DType::F32 => "float",
            DType::F64 => "double",
            DType::I8 => "int8_t",
            DType::I16 => "int16_t",
            DType::I32 => "int32_t",
            DType::I64 => "int64_t",
            DType::U8 | DType::Bool => "uint8_t",
            DType::U16 => "uint16_t",
            DType::U32 => "uint32_t",
            DType::U64 => "uint64_t",
        }
    }

    /// A short suffix naming the type in helper function names.
    pub fn suffix(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::Bool => "bool",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// The C math function `name` (`exp`, `sqrt`, …) for this float type.
    pub fn math(self, name: &str) -> String {
        match self {
            DType::F32 => format!("{name}f"),
            _ => name.to_string(),
        }
    }

    /// The C expression of this type's lowest value (identity of `max`).
    pub fn lowest(self) -> &'static str {
        match self {
            DType::F32 | DType::F64 => "(-INFINITY)",
            DType::I8 => "INT8_MIN",
            DType::I16 => "INT16_MIN",
            DType::I32 => "INT32_MIN",
            DType::I64 => "INT64_MIN",
            _ => "0",
        }
    }

    /// The C expression of this type's highest value (identity of `min`).
    pub fn highest(self) -> &'static str {
        match self {
            DType::F32 | DType::F64 => "INFINITY",
            DType::I8 => "INT8_MAX",
            DType::I16 => "INT16_MAX",
            DType::I32 => "INT32_MAX",
            DType::I64 => "INT64_MAX",
            DType::U8 => "UINT8_MAX",
            DType::U16 => "UINT16_MAX",
            DType::U32 => "UINT32_MAX",
            DType::U64 => "UINT64_MAX",
            DType::Bool => "1",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&DType::onnx_name(self.onnx_code()))
    }
}

/// Applies `$body` to the vector inside any `TensorData` (bound to `$v`), rebuilding the
/// same variant from the vector it gives.
macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::F32($v) => TensorData::F32($body),
            TensorData::F64($v) => TensorData::F64($body),
            TensorData::I8($v) => TensorData::I8($body),
            TensorData::I16($v) => TensorData::I16($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::I64($v) => TensorData::I64($body),
            TensorData::U8($v) => TensorData::U8($body),
            TensorData::U16($v) => TensorData::U16($body),
            TensorData::U32($v) => TensorData::U32($body),
            TensorData::U64($v) => TensorData::U64($body),
            TensorData::Bool($v) => TensorData::Bool($body),
        }
    };
}

/// The element type of constant data.
pub fn dtype_of(data: &TensorData) -> DType {
    DType::from_onnx(data.data_type() as i32).expect("every TensorData variant is a DType")
}

/// The elements picked by `index`, in that order.
pub fn gather(data: &TensorData, index: &[usize]) -> TensorData {
    map_data!(data, v => index.iter().map(|&i| v[i]).collect())
}

/// The elements of `parts` one after another (all of one type).
pub fn concat(parts: &[&TensorData]) -> Option<TensorData> {
    let first = parts.first()?;
    let mut out = map_data!(first, v => Vec::with_capacity(v.len()));
    for p in parts {
        match (&mut out, p) {
            (TensorData::F32(o), TensorData::F32(v)) => o.extend_from_slice(v),
            (TensorData::F64(o), TensorData::F64(v)) => o.extend_from_slice(v),
            (TensorData::I8(o), TensorData::I8(v)) => o.extend_from_slice(v),
            (TensorData::I16(o), TensorData::I16(v)) => o.extend_from_slice(v),
            (TensorData::I32(o), TensorData::I32(v)) => o.extend_from_slice(v),
            (TensorData::I64(o), TensorData::I64(v)) => o.extend_from_slice(v),
            (TensorData::U8(o), TensorData::U8(v)) => o.extend_from_slice(v),
            (TensorData::U16(o), TensorData::U16(v)) => o.extend_from_slice(v),
            (TensorData::U32(o), TensorData::U32(v)) => o.extend_from_slice(v),
            (TensorData::U64(o), TensorData::U64(v)) => o.extend_from_slice(v),
            (TensorData::Bool(o), TensorData::Bool(v)) => o.extend_from_slice(v),
            _ => return None,
        }
    }
    Some(out)
}

/// Integer data as `i64` (for shapes, axes and indices); `None` for float data.
pub fn to_i64(data: &TensorData) -> Option<Vec<i64>> {
    Some(match data {
        TensorData::I8(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::I16(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::I32(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::I64(v) => v.clone(),
        TensorData::U8(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::U16(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::U32(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::U64(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::F32(_) | TensorData::F64(_) => return None,
    })
}

/// Any data as `f64` (exact for floats and for integers below 2^53).
pub fn to_f64(data: &TensorData) -> Vec<f64> {
    match data {
        TensorData::F32(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::F64(v) => v.clone(),
        TensorData::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
        TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::U64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::I8(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::I16(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::I32(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::U8(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::U16(v) => v.iter().map(|&x| x.into()).collect(),
        TensorData::U32(v) => v.iter().map(|&x| x.into()).collect(),
    }
}

/// Integer values as data of integer or bool type `to` (C conversion semantics: wrap).
pub fn from_i64(v: &[i64], to: DType) -> Option<TensorData> {
    Some(match to {
        DType::I8 => TensorData::I8(v.iter().map(|&x| x as i8).collect()),
        DType::I16 => TensorData::I16(v.iter().map(|&x| x as i16).collect()),
        DType::I32 => TensorData::I32(v.iter().map(|&x| x as i32).collect()),
        DType::I64 => TensorData::I64(v.to_vec()),
        DType::U8 => TensorData::U8(v.iter().map(|&x| x as u8).collect()),
        DType::U16 => TensorData::U16(v.iter().map(|&x| x as u16).collect()),
        DType::U32 => TensorData::U32(v.iter().map(|&x| x as u32).collect()),
        DType::U64 => TensorData::U64(v.iter().map(|&x| x as u64).collect()),
        DType::Bool => TensorData::Bool(v.iter().map(|&x| x != 0).collect()),
        DType::F32 => TensorData::F32(v.iter().map(|&x| x as f32).collect()),
        DType::F64 => TensorData::F64(v.iter().map(|&x| x as f64).collect()),
    })
}
