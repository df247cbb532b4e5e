//! Network definitions. Each is a Burn `Module` with a `Config` that builds it.

pub mod lenet;
