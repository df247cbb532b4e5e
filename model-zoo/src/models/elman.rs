//! The Elman recurrent layer, written out as the textbook recurrence
//! `h_t = φ(W_xh·x_t + W_hh·h_{t-1} + b)`, with φ = tanh, or φ = ReLU with `W_hh`
//! initialised to the identity and the bias to zero (Le et al.'s IRNN, which keeps
//! gradients from vanishing over long spans). The output map `y_t = W_hy·h_t` belongs to the
//! language model that stacks these layers.
//!
//! Shapes: input `[batch, time, d_input]`, state and outputs `[batch, d_hidden]` per step.

use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, tanh};
use serde::{Deserialize, Serialize};

/// The non-linearity of an Elman layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ElmanActivation {
    #[default]
    Tanh,
    /// ReLU with identity-initialised recurrent weights and zero bias.
    ReluIdentity,
}

#[derive(Config, Debug)]
pub struct ElmanConfig {
    pub d_input: usize,
    pub d_hidden: usize,
    #[config(default = "ElmanActivation::Tanh")]
    pub activation: ElmanActivation,
}

#[derive(Module, Debug)]
pub struct Elman {
    /// `W_xh` and the bias `b`.
    pub input_to_hidden: Linear,
    /// `W_hh`, without bias.
    pub hidden_to_hidden: Linear,
    pub d_hidden: usize,
    pub relu: bool,
}

impl ElmanConfig {
    pub fn init(&self, device: &Device) -> Elman {
        let relu = self.activation == ElmanActivation::ReluIdentity;
        let mut input_to_hidden = LinearConfig::new(self.d_input, self.d_hidden);
        if relu {
            input_to_hidden = input_to_hidden.with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.001,
            });
        }
        let mut input_to_hidden = input_to_hidden.init(device);
        let mut hidden_to_hidden = LinearConfig::new(self.d_hidden, self.d_hidden)
            .with_bias(false)
            .init(device);
        if relu {
            hidden_to_hidden.weight = Param::from_tensor(Tensor::eye(self.d_hidden, device));
            input_to_hidden.bias = Some(Param::from_tensor(Tensor::zeros([self.d_hidden], device)));
        }
        Elman {
            input_to_hidden,
            hidden_to_hidden,
            d_hidden: self.d_hidden,
            relu,
        }
    }
}

impl Elman {
    /// One step: `x [batch, d_input]`, `h [batch, d_hidden]` → the next `h`.
    pub fn step(&self, x: Tensor<2>, h: Tensor<2>) -> Tensor<2> {
        let pre = self.input_to_hidden.forward(x) + self.hidden_to_hidden.forward(h);
        if self.relu { relu(pre) } else { tanh(pre) }
    }

    /// Every step of `input [batch, time, d_input]` from `h0` (zeros when `None`): returns
    /// all hidden states `[batch, time, d_hidden]` and the last one.
    pub fn forward(&self, input: Tensor<3>, h0: Option<Tensor<2>>) -> (Tensor<3>, Tensor<2>) {
        let [batch, time, _] = input.dims();
        let device = input.device();
        // The input projection of every step at once; only W_hh·h is sequential.
        let projected = self.input_to_hidden.forward(input);
        let mut h = h0.unwrap_or_else(|| Tensor::zeros([batch, self.d_hidden], &device));
        let mut outputs = Vec::with_capacity(time);
        for t in 0..time {
            let x_t = projected
                .clone()
                .slice(s![.., t..t + 1, ..])
                .reshape([batch, self.d_hidden]);
            let pre = x_t + self.hidden_to_hidden.forward(h);
            h = if self.relu { relu(pre) } else { tanh(pre) };
            outputs.push(h.clone().unsqueeze_dim(1));
        }
        (Tensor::cat(outputs, 1), h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_identity_starts_as_identity_with_zero_bias() {
        let device = Device::flex();
        let layer = ElmanConfig::new(3, 4)
            .with_activation(ElmanActivation::ReluIdentity)
            .init(&device);
        let w: Vec<f32> = layer
            .hidden_to_hidden
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let eye: Vec<f32> = Tensor::<2>::eye(4, &device)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(w, eye);
        let b: Vec<f32> = layer
            .input_to_hidden
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(b.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn sequence_forward_matches_repeated_steps() {
        let device = Device::flex();
        let layer = ElmanConfig::new(3, 5).init(&device);
        let input = Tensor::<3>::random([2, 4, 3], burn::tensor::Distribution::Default, &device);
        let (all, last) = layer.forward(input.clone(), None);
        let mut h = Tensor::zeros([2, 5], &device);
        for t in 0..4 {
            h = layer.step(input.clone().slice(s![.., t..t + 1, ..]).reshape([2, 3]), h);
        }
        last.clone()
            .into_data()
            .assert_approx_eq::<f32>(&h.into_data(), Default::default());
        all.slice(s![.., 3..4, ..])
            .reshape([2, 5])
            .into_data()
            .assert_approx_eq::<f32>(&last.into_data(), Default::default());
    }
}
