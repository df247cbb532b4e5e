//! Reader for the IDX format (optionally gzip-compressed) used by MNIST and Fashion-MNIST.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use crate::error::{Result, ZooError};

/// An IDX array of unsigned bytes: its dimensions and its data in row-major order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Read an IDX file; a `.gz` name is decompressed on the fly.
pub fn read_idx_file(path: &Path) -> Result<IdxArray> {
    let file = std::fs::File::open(path).map_err(|e| ZooError::io(path, e))?;
    let mut bytes = Vec::new();
    let read = if path.extension().is_some_and(|ext| ext == "gz") {
        GzDecoder::new(file).read_to_end(&mut bytes)
    } else {
        std::io::BufReader::new(file).read_to_end(&mut bytes)
    };
    read.map_err(|e| ZooError::io(path, e))?;
    parse_idx(&bytes).map_err(|reason| ZooError::Format {
        path: path.to_path_buf(),
        format: "IDX",
        reason,
    })
}

/// Parse IDX bytes: magic `0x00 0x00 <type> <rank>`, then one big-endian u32 per dimension.
pub fn parse_idx(bytes: &[u8]) -> std::result::Result<IdxArray, String> {
    const UNSIGNED_BYTE: u8 = 0x08;
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err("missing IDX magic number".into());
    }
    if bytes[2] != UNSIGNED_BYTE {
        return Err(format!(
            "element type 0x{:02x} is not unsigned byte",
            bytes[2]
        ));
    }
    let rank = bytes[3] as usize;
    let header_len = 4 + 4 * rank;
    if bytes.len() < header_len {
        return Err("header is truncated".into());
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("dimensions overflow")?;
    let data = &bytes[header_len..];
    if data.len() != expected {
        return Err(format!(
            "dimensions {dims:?} need {expected} bytes but the file holds {}",
            data.len()
        ));
    }
    Ok(IdxArray {
        dims,
        data: data.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_small_array() {
        let bytes = [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6];
        let array = parse_idx(&bytes).unwrap();
        assert_eq!(array.dims, vec![2, 3]);
        assert_eq!(array.data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn rejects_truncated_and_foreign_data() {
        assert!(parse_idx(&[0, 0, 8]).is_err());
        assert!(parse_idx(&[0, 0, 8, 1, 0, 0, 0, 4, 1, 2]).is_err());
        assert!(parse_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]).is_err());
        assert!(parse_idx(b"\x89PNG....").is_err());
    }
}
