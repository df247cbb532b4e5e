//! Readers for the datasets Kiln trains and evaluates on.

pub mod fashion_mnist;
pub mod idx;
pub mod scenes;
