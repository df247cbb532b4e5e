//! Networks Kiln serves from ONNX files: burn-onnx turns each into Burn code when this crate
//! is built, with the weights embedded in the binary.

/// PaddleOCR's text-direction classifier (`ch_ppocr_mobile_v2.0_cls`, from RapidOCR):
/// a 48×192 RGB crop of a text line → probabilities of upright (0°) and upside down (180°).
#[allow(clippy::all, unused)]
pub mod text_direction {
    include!(concat!(env!("OUT_DIR"), "/onnx/model.rs"));

    /// The ONNX file the code was generated from; a model folder that names another file
    /// for this network is refused.
    pub const SOURCE: &[u8] = include_bytes!("../../models/text-direction/model.onnx");
}
