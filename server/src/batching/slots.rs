//! The places of a model loop's queue: requests waiting or running, against a limit, so
//! a request beyond it is refused at once instead of waiting without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::InferError;

/// Shared between the handle requests go through and the loop that answers them.
#[derive(Debug, Clone)]
pub struct QueueSlots {
    taken: Arc<AtomicUsize>,
    limit: usize,
}

impl QueueSlots {
    pub fn new(limit: usize) -> Self {
        Self {
            taken: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// Take a place, or refuse when all are taken.
    pub fn take(&self) -> Result<(), InferError> {
        if self.taken.fetch_add(1, Ordering::AcqRel) >= self.limit {
            self.taken.fetch_sub(1, Ordering::AcqRel);
            return Err(InferError::Overloaded(self.limit));
        }
        Ok(())
    }

    /// Give back `count` places: their requests were answered or dropped.
    pub fn release(&self, count: usize) {
        self.taken.fetch_sub(count, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_beyond_the_limit_until_a_place_is_given_back() {
        let slots = QueueSlots::new(2);
        let handle = slots.clone();
        assert!(slots.take().is_ok() && handle.take().is_ok());
        assert_eq!(slots.take(), Err(InferError::Overloaded(2)));
        handle.release(1);
        assert!(slots.take().is_ok());
    }
}
