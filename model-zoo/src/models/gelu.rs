//! GELU for the Transformers' feed-forward layers. Where Kiln's CPU kernels apply (the flex
//! backend, see [`kernels_apply`]) the values go through kiln-kernels' vectorised GELU:
//! Burn's flex op computes one scalar `erff` per value, a tenth of a Transformer language
//! model's CPU time while it decodes 64 sequences. Other devices, other precisions and
//! autodiff devices (training) keep Burn's op.

use burn::prelude::*;
use burn::tensor::DType;

use super::cpu::kernels_apply;

/// `½ · x · (1 + erf(x / √2))`, element-wise.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if x.dtype() == DType::F32 && kernels_apply(&device) {
        let mut data = x.into_data();
        if let Ok(values) = data.as_mut_slice::<f32>() {
            kiln_kernels::gelu::gelu_in_place(values);
            return Tensor::from_data(data, &device);
        }
        // An f32 tensor gives f32 data; should it not, Burn's op still answers.
        return burn::tensor::activation::gelu(Tensor::from_data(data, &device));
    }
    burn::tensor::activation::gelu(x)
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_path_agrees_with_burns_gelu() {
        let device = Device::flex();
        let values: Vec<f32> = (0..600).map(|i| (i as f32 - 300.0) / 37.0).collect();
        let x = Tensor::<2>::from_data(TensorData::new(values, [20, 30]), &device);
        let ours = gelu(x.clone());
        assert_eq!(ours.dims(), [20, 30]);
        let ours: Vec<f32> = ours.into_data().try_into_vec().unwrap();
        let burns: Vec<f32> = burn::tensor::activation::gelu(x)
            .into_data()
            .try_into_vec()
            .unwrap();
        for (a, b) in ours.iter().zip(&burns) {
            assert!((a - b).abs() <= 1e-5, "{a} against {b}");
        }
    }
}
