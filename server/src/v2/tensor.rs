//! Tensors of the Open Inference Protocol, independent of the wire: the datatypes Kiln's
//! models take and give, element data, and the two encodings every protocol shares — raw
//! little-endian bytes (gRPC raw contents, the HTTP binary extension) and JSON values.

use serde_json::Value;

use crate::error::KilnError;

/// The protocol's datatypes that Kiln's models use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Uint8,
    Int32,
    Int64,
    Fp32,
    Bytes,
}

impl DataType {
    pub fn parse(name: &str) -> Result<Self, KilnError> {
        Ok(match name {
            "UINT8" => DataType::Uint8,
            "INT32" => DataType::Int32,
            "INT64" => DataType::Int64,
            "FP32" => DataType::Fp32,
            "BYTES" => DataType::Bytes,
            other => {
                return Err(KilnError::bad_input(format!(
                    "datatype '{other}' is not supported; Kiln takes UINT8, INT32, INT64, FP32 and BYTES"
                )));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            DataType::Uint8 => "UINT8",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp32 => "FP32",
            DataType::Bytes => "BYTES",
        }
    }

    /// The model-configuration spelling (`TYPE_FP32`, and `TYPE_STRING` for BYTES).
    pub fn config_name(self) -> &'static str {
        match self {
            DataType::Uint8 => "TYPE_UINT8",
            DataType::Int32 => "TYPE_INT32",
            DataType::Int64 => "TYPE_INT64",
            DataType::Fp32 => "TYPE_FP32",
            DataType::Bytes => "TYPE_STRING",
        }
    }
}

/// The elements of a tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Uint8(Vec<u8>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp32(Vec<f32>),
    Bytes(Vec<Vec<u8>>),
}

/// Length prefix of each BYTES element in raw form.
const BYTES_PREFIX: usize = 4;

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Uint8(_) => DataType::Uint8,
            TensorData::Int32(_) => DataType::Int32,
            TensorData::Int64(_) => DataType::Int64,
            TensorData::Fp32(_) => DataType::Fp32,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::Uint8(v) => v.len(),
            TensorData::Int32(v) => v.len(),
            TensorData::Int64(v) => v.len(),
            TensorData::Fp32(v) => v.len(),
            TensorData::Bytes(v) => v.len(),
        }
    }

    /// Bytes the elements take (BYTES: their contents).
    pub fn byte_len(&self) -> usize {
        match self {
            TensorData::Uint8(v) => v.len(),
            TensorData::Int32(v) => v.len() * 4,
            TensorData::Int64(v) => v.len() * 8,
            TensorData::Fp32(v) => v.len() * 4,
            TensorData::Bytes(v) => v.iter().map(Vec::len).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decode raw little-endian bytes; BYTES elements are each a 4-byte little-endian length
    /// and the bytes.
    pub fn from_raw(datatype: DataType, raw: &[u8]) -> Result<Self, KilnError> {
        fn fixed<const N: usize, T>(
            raw: &[u8],
            datatype: DataType,
            convert: fn([u8; N]) -> T,
        ) -> Result<Vec<T>, KilnError> {
            if !raw.len().is_multiple_of(N) {
                return Err(KilnError::bad_input(format!(
                    "{} raw data must be a multiple of {N} bytes, got {}",
                    datatype.name(),
                    raw.len()
                )));
            }
            Ok(raw
                .chunks_exact(N)
                .map(|c| convert(c.try_into().expect("chunk of N bytes")))
                .collect())
        }
        Ok(match datatype {
            DataType::Uint8 => TensorData::Uint8(raw.to_vec()),
            DataType::Int32 => TensorData::Int32(fixed(raw, datatype, i32::from_le_bytes)?),
            DataType::Int64 => TensorData::Int64(fixed(raw, datatype, i64::from_le_bytes)?),
            DataType::Fp32 => TensorData::Fp32(fixed(raw, datatype, f32::from_le_bytes)?),
            DataType::Bytes => TensorData::Bytes(split_bytes_elements(raw)?),
        })
    }

    pub fn to_raw(&self) -> Vec<u8> {
        match self {
            TensorData::Uint8(v) => v.clone(),
            TensorData::Int32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::Int64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::Fp32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::Bytes(v) => {
                let mut out = Vec::with_capacity(v.iter().map(|e| e.len() + BYTES_PREFIX).sum());
                for element in v {
                    out.extend_from_slice(&(element.len() as u32).to_le_bytes());
                    out.extend_from_slice(element);
                }
                out
            }
        }
    }

    /// Decode the JSON `data` of a tensor: a flat or nested array of numbers (strings for
    /// BYTES).
    pub fn from_json(datatype: DataType, data: &Value) -> Result<Self, KilnError> {
        let mut flat = Vec::new();
        flatten(data, &mut flat)?;
        let wrong = |v: &Value| {
            KilnError::bad_input(format!(
                "{} tensor data holds {v}, which is not a {} value",
                datatype.name(),
                datatype.name()
            ))
        };
        Ok(match datatype {
            DataType::Uint8 => TensorData::Uint8(collect(&flat, |v| {
                v.as_u64()
                    .and_then(|x| u8::try_from(x).ok())
                    .ok_or_else(|| wrong(v))
            })?),
            DataType::Int32 => TensorData::Int32(collect(&flat, |v| {
                v.as_i64()
                    .and_then(|x| i32::try_from(x).ok())
                    .ok_or_else(|| wrong(v))
            })?),
            DataType::Int64 => {
                TensorData::Int64(collect(&flat, |v| v.as_i64().ok_or_else(|| wrong(v)))?)
            }
            DataType::Fp32 => TensorData::Fp32(collect(&flat, |v| {
                v.as_f64().map(|x| x as f32).ok_or_else(|| wrong(v))
            })?),
            DataType::Bytes => TensorData::Bytes(collect(&flat, |v| {
                v.as_str()
                    .map(|s| s.as_bytes().to_vec())
                    .ok_or_else(|| wrong(v))
            })?),
        })
    }

    /// The elements as a flat JSON array (BYTES as strings).
    pub fn to_json(&self) -> Value {
        match self {
            TensorData::Uint8(v) => Value::from(v.clone()),
            TensorData::Int32(v) => Value::from(v.clone()),
            TensorData::Int64(v) => Value::from(v.clone()),
            TensorData::Fp32(v) => Value::Array(
                v.iter()
                    .map(|&x| {
                        serde_json::Number::from_f64(f64::from(x))
                            .map_or(Value::Null, Value::Number)
                    })
                    .collect(),
            ),
            TensorData::Bytes(v) => Value::Array(
                v.iter()
                    .map(|e| Value::String(String::from_utf8_lossy(e).into_owned()))
                    .collect(),
            ),
        }
    }
}

fn split_bytes_elements(mut raw: &[u8]) -> Result<Vec<Vec<u8>>, KilnError> {
    let mut elements = Vec::new();
    while !raw.is_empty() {
        let malformed = || {
            KilnError::bad_input(
                "BYTES raw data must be elements of a 4-byte little-endian length and that many bytes",
            )
        };
        let (prefix, rest) = raw.split_at_checked(BYTES_PREFIX).ok_or_else(malformed)?;
        let len = u32::from_le_bytes(prefix.try_into().expect("4 bytes")) as usize;
        let (element, rest) = rest.split_at_checked(len).ok_or_else(malformed)?;
        elements.push(element.to_vec());
        raw = rest;
    }
    Ok(elements)
}

/// Nesting depth beyond which JSON tensor data is refused (shapes have a few dimensions).
const MAX_JSON_DEPTH: usize = 8;

fn flatten<'a>(data: &'a Value, out: &mut Vec<&'a Value>) -> Result<(), KilnError> {
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>, depth: usize) -> Result<(), KilnError> {
        match v {
            Value::Array(items) if depth < MAX_JSON_DEPTH => {
                items.iter().try_for_each(|i| walk(i, out, depth + 1))
            }
            Value::Array(_) => Err(KilnError::bad_input(format!(
                "tensor data is nested deeper than {MAX_JSON_DEPTH} levels"
            ))),
            other => {
                out.push(other);
                Ok(())
            }
        }
    }
    match data {
        Value::Array(_) => walk(data, out, 0),
        _ => Err(KilnError::bad_input("tensor \"data\" must be an array")),
    }
}

fn collect<T>(
    values: &[&Value],
    convert: impl Fn(&Value) -> Result<T, KilnError>,
) -> Result<Vec<T>, KilnError> {
    values.iter().map(|v| convert(v)).collect()
}

/// Elements a shape holds, or an error for negative or overflowing dimensions.
pub fn element_count(shape: &[i64]) -> Result<usize, KilnError> {
    shape.iter().try_fold(1usize, |n, &d| {
        let d = usize::try_from(d).map_err(|_| {
            KilnError::bad_input(format!("shape {shape:?} has a negative dimension"))
        })?;
        n.checked_mul(d)
            .ok_or_else(|| KilnError::bad_input(format!("shape {shape:?} is too large")))
    })
}

/// An input tensor whose data matches its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct InputTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl InputTensor {
    /// Check that `data` fills `shape` exactly.
    pub fn new(name: String, shape: &[i64], data: TensorData) -> Result<Self, KilnError> {
        let expected = element_count(shape)?;
        if data.len() != expected {
            return Err(KilnError::bad_input(format!(
                "input '{name}' has shape {shape:?} ({expected} elements) but {} elements of data",
                data.len()
            )));
        }
        Ok(Self {
            name,
            shape: shape.iter().map(|&d| d as usize).collect(),
            data,
        })
    }
}

/// An output tensor of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn raw_round_trips_every_datatype() {
        for data in [
            TensorData::Uint8(vec![0, 7, 255]),
            TensorData::Int32(vec![-1, 0, i32::MAX]),
            TensorData::Int64(vec![i64::MIN, 3]),
            TensorData::Fp32(vec![0.5, -1.25, f32::MAX]),
            TensorData::Bytes(vec![b"".to_vec(), b"cat".to_vec(), vec![0, 255]]),
        ] {
            let raw = data.to_raw();
            assert_eq!(TensorData::from_raw(data.datatype(), &raw).unwrap(), data);
        }
    }

    #[test]
    fn truncated_raw_data_is_refused() {
        assert!(TensorData::from_raw(DataType::Fp32, &[0, 0, 0]).is_err());
        assert!(TensorData::from_raw(DataType::Bytes, &[5, 0, 0, 0, b'a']).is_err());
        assert!(TensorData::from_raw(DataType::Bytes, &[1, 0]).is_err());
    }

    #[test]
    fn json_data_may_be_nested_and_must_fit_the_type() {
        let data = TensorData::from_json(DataType::Fp32, &json!([[1, 2.5], [3, 4]])).unwrap();
        assert_eq!(data, TensorData::Fp32(vec![1.0, 2.5, 3.0, 4.0]));
        assert!(TensorData::from_json(DataType::Uint8, &json!([256])).is_err());
        assert!(TensorData::from_json(DataType::Int64, &json!([1.5])).is_err());
        assert!(TensorData::from_json(DataType::Bytes, &json!([1])).is_err());
        assert!(TensorData::from_json(DataType::Fp32, &json!(1)).is_err());
        let deep = (0..20).fold(json!(1), |v, _| json!([v]));
        assert!(TensorData::from_json(DataType::Fp32, &deep).is_err());
    }

    #[test]
    fn inputs_must_fill_their_shape() {
        let ok = InputTensor::new("x".into(), &[2, 2], TensorData::Fp32(vec![0.0; 4]));
        assert_eq!(ok.unwrap().shape, vec![2, 2]);
        assert!(InputTensor::new("x".into(), &[2, 3], TensorData::Fp32(vec![0.0; 4])).is_err());
        assert!(InputTensor::new("x".into(), &[-1, 4], TensorData::Fp32(vec![0.0; 4])).is_err());
        assert!(element_count(&[i64::MAX, i64::MAX]).is_err());
    }
}
