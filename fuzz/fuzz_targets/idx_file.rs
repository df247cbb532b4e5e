//! Arbitrary bytes as an IDX dataset file: parsed consistently or refused.
#![no_main]

use kiln_zoo::data::idx::parse_idx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(array) = parse_idx(data) {
        assert_eq!(array.dims.iter().product::<usize>(), array.data.len());
    }
});
