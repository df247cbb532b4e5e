use std::fmt;

/// A layer that cannot be built or run as asked: wrong weight sizes, an input too small for
/// the kernel, a shape that does not match what the network was prepared for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelError(pub String);

impl KernelError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KernelError {}

pub(crate) fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), KernelError> {
    if condition {
        Ok(())
    } else {
        Err(KernelError(message()))
    }
}
