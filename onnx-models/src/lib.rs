//! Networks Kiln serves from ONNX files, as Burn code: `scripts/onnx-codegen.sh` turns each
//! ONNX file into a Burn module with burn-onnx and commits it here, with the weights embedded
//! in the binary, so building Kiln needs no ONNX tooling.

/// PaddleOCR's text-direction classifier (`ch_ppocr_mobile_v2.0_cls`, from RapidOCR):
/// a 48×192 RGB crop of a text line → probabilities of upright (0°) and upside down (180°).
pub mod text_direction {
    #[allow(clippy::all, unused)]
    #[path = "model.rs"]
    mod generated;

    pub use generated::Model;

    /// The ONNX file the code was generated from; a model folder that names another file
    /// for this network is refused.
    pub const SOURCE: &[u8] = include_bytes!("../../models/text-direction/model.onnx");

    #[cfg(test)]
    mod tests {
        #[test]
        fn generated_from_the_bundled_onnx_file() {
            let mut crc = flate2::Crc::new();
            crc.update(super::SOURCE);
            assert_eq!(
                crc.sum(),
                super::generated::GENERATED_FROM_CRC32,
                "models/text-direction/model.onnx changed: run scripts/onnx-codegen.sh"
            );
        }
    }
}
