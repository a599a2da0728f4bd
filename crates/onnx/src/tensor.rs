//! ONNX tensors as typed arrays.

use crate::proto::{tensor_proto::DataType, TensorProto};

/// Start of the message for a data type this crate does not read (so that callers can tell
/// "unsupported" from "malformed").
pub(crate) const UNSUPPORTED: &str = "unsupported data type";

/// The elements of a tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// `FLOAT`.
    F32(Vec<f32>),
    /// `DOUBLE`.
    F64(Vec<f64>),
    /// `INT32`.
    I32(Vec<i32>),
    /// `INT64`.
    I64(Vec<i64>),
    /// `INT8`.
    I8(Vec<i8>),
    /// `UINT8`.
    U8(Vec<u8>),
    /// `BOOL`.
    Bool(Vec<bool>),
    /// `INT16`.
    I16(Vec<i16>),
    /// `UINT16`.
    U16(Vec<u16>),
    /// `UINT32`.
    U32(Vec<u32>),
    /// `UINT64`.
    U64(Vec<u64>),
}

impl TensorData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::Bool(v) => v.len(),
            TensorData::I16(v) => v.len(),
            TensorData::U16(v) => v.len(),
            TensorData::U32(v) => v.len(),
            TensorData::U64(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ONNX data type.
    pub fn data_type(&self) -> DataType {
        match self {
            TensorData::F32(_) => DataType::Float,
            TensorData::F64(_) => DataType::Double,
            TensorData::I32(_) => DataType::Int32,
            TensorData::I64(_) => DataType::Int64,
            TensorData::I8(_) => DataType::Int8,
            TensorData::U8(_) => DataType::Uint8,
            TensorData::Bool(_) => DataType::Bool,
            TensorData::I16(_) => DataType::Int16,
            TensorData::U16(_) => DataType::Uint16,
            TensorData::U32(_) => DataType::Uint32,
            TensorData::U64(_) => DataType::Uint64,
        }
    }
}

/// A tensor: dimensions and elements.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions (empty for a scalar).
    pub dims: Vec<usize>,
    /// Elements, `dims.iter().product()` of them.
    pub data: TensorData,
}

fn chunks<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunks_exact gives N bytes")))
        .collect()
}

fn narrow<T: TryFrom<i32>>(v: &[i32], what: &str) -> Result<Vec<T>, String> {
    v.iter()
        .map(|&x| T::try_from(x).map_err(|_| format!("{x} is out of range for {what}")))
        .collect()
}

impl Tensor {
    /// A tensor of `dims` and `data`; panics if the element count differs.
    pub fn new(dims: Vec<usize>, data: TensorData) -> Self {
        assert_eq!(
            dims.iter().product::<usize>(),
            data.len(),
            "dimensions and element count agree"
        );
        Self { dims, data }
    }

    /// Reads `t`'s elements from `raw_data` (little-endian) or from the typed field its data
    /// type uses, checking their number against the dimensions. External data must have been
    /// loaded already.
    pub fn from_proto(t: &TensorProto) -> Result<Self, String> {
        let dims = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
            .collect::<Result<Vec<_>, _>>()?;
        let count = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
        let dtype = t.data_type.unwrap_or(0);
        let ty = DataType::try_from(dtype)
            .map_err(|_| format!("{UNSUPPORTED}: unknown code {dtype}"))?;
        if t.data_location == Some(1) {
            return Err("its external data was not loaded".into());
        }
        let size = match ty {
            DataType::Float | DataType::Int32 | DataType::Uint32 => 4,
            DataType::Double | DataType::Int64 | DataType::Uint64 => 8,
            DataType::Int16 | DataType::Uint16 => 2,
            DataType::Int8 | DataType::Uint8 | DataType::Bool => 1,
            other => return Err(format!("{UNSUPPORTED} {}", other.as_str_name())),
        };
        let data = if let Some(raw) = &t.raw_data {
            if Some(raw.len()) != count.checked_mul(size) {
                return Err(format!(
                    "{} bytes of data for dimensions {dims:?} of {} ({} bytes expected)",
                    raw.len(),
                    ty.as_str_name(),
                    count.saturating_mul(size)
                ));
            }
            match ty {
                DataType::Float => TensorData::F32(chunks(raw, f32::from_le_bytes)),
                DataType::Double => TensorData::F64(chunks(raw, f64::from_le_bytes)),
                DataType::Int32 => TensorData::I32(chunks(raw, i32::from_le_bytes)),
                DataType::Int64 => TensorData::I64(chunks(raw, i64::from_le_bytes)),
                DataType::Int8 => TensorData::I8(raw.iter().map(|&b| b as i8).collect()),
                DataType::Uint8 => TensorData::U8(raw.clone()),
                DataType::Int16 => TensorData::I16(chunks(raw, i16::from_le_bytes)),
                DataType::Uint16 => TensorData::U16(chunks(raw, u16::from_le_bytes)),
                DataType::Uint32 => TensorData::U32(chunks(raw, u32::from_le_bytes)),
                DataType::Uint64 => TensorData::U64(chunks(raw, u64::from_le_bytes)),
                _ => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
            }
        } else {
            let data = match ty {
                DataType::Float => TensorData::F32(t.float_data.clone()),
                DataType::Double => TensorData::F64(t.double_data.clone()),
                DataType::Int32 => TensorData::I32(t.int32_data.clone()),
                DataType::Int64 => TensorData::I64(t.int64_data.clone()),
                DataType::Int8 => TensorData::I8(narrow(&t.int32_data, "INT8")?),
                DataType::Uint8 => TensorData::U8(narrow(&t.int32_data, "UINT8")?),
                DataType::Int16 => TensorData::I16(narrow(&t.int32_data, "INT16")?),
                DataType::Uint16 => TensorData::U16(narrow(&t.int32_data, "UINT16")?),
                DataType::Uint32 => TensorData::U32(
                    t.uint64_data
                        .iter()
                        .map(|&x| {
                            u32::try_from(x).map_err(|_| format!("{x} is out of range for UINT32"))
                        })
                        .collect::<Result<_, _>>()?,
                ),
                DataType::Uint64 => TensorData::U64(t.uint64_data.clone()),
                _ => TensorData::Bool(t.int32_data.iter().map(|&b| b != 0).collect()),
            };
            if data.len() != count {
                return Err(format!(
                    "{} elements for dimensions {dims:?} ({count} expected)",
                    data.len()
                ));
            }
            data
        };
        Ok(Self { dims, data })
    }

    /// The tensor as a `TensorProto` named `name`, its elements in `raw_data`.
    pub fn to_proto(&self, name: &str) -> TensorProto {
        let raw: Vec<u8> = match &self.data {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as u8).collect(),
            TensorData::U8(v) => v.clone(),
            TensorData::Bool(v) => v.iter().map(|&x| u8::from(x)).collect(),
            TensorData::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::U64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        TensorProto {
            dims: self.dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(self.data.data_type() as i32),
            name: Some(name.into()),
            raw_data: Some(raw),
            ..Default::default()
        }
    }
}
