//! Admission: a bounded number of places, each held by an RAII [`Permit`]. A permit travels
//! inside its request's job and gives its place back when the job is dropped — answered,
//! failed, expired or skipped — so no exit path has to remember to release it. The same type
//! bounds every queue of a model and the server's requests in flight.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// A request found every place taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("all {limit} places are taken")]
pub struct Refused {
    pub limit: usize,
}

/// Places shared by a queue's handle and the permits it handed out. Cheap to clone.
#[derive(Clone)]
pub struct Admission {
    places: Arc<Places>,
}

struct Places {
    taken: AtomicUsize,
    limit: usize,
    /// Counts the places taken, for a gauge such as `kiln_pending_requests`.
    gauge: Option<metrics::Gauge>,
    /// Woken when the last place is given back.
    emptied: Notify,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("taken", &self.taken())
            .field("limit", &self.places.limit)
            .finish()
    }
}

impl Admission {
    /// `limit` places, uncounted.
    pub fn new(limit: usize) -> Self {
        Self::build(limit, None)
    }

    /// `limit` places, each taken one counted up in `gauge` while it is held.
    pub fn counted(limit: usize, gauge: metrics::Gauge) -> Self {
        Self::build(limit, Some(gauge))
    }

    fn build(limit: usize, gauge: Option<metrics::Gauge>) -> Self {
        Self {
            places: Arc::new(Places {
                taken: AtomicUsize::new(0),
                limit,
                gauge,
                emptied: Notify::new(),
            }),
        }
    }

    /// Take a place, or be refused at once when all are taken.
    pub fn try_admit(&self) -> Result<Permit, Refused> {
        let places = &self.places;
        places
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < places.limit).then_some(taken + 1)
            })
            .map_err(|_| Refused {
                limit: places.limit,
            })?;
        if let Some(gauge) = &places.gauge {
            gauge.increment(1);
        }
        Ok(Permit {
            places: places.clone(),
        })
    }

    /// Places taken now.
    pub fn taken(&self) -> usize {
        self.places.taken.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.places.limit
    }

    /// Wait until every place has been given back.
    pub async fn emptied(&self) {
        loop {
            let mut notified = pin!(self.places.emptied.notified());
            // Registered before the check, so a release in between is not missed.
            notified.as_mut().enable();
            if self.taken() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One place, held until dropped.
pub struct Permit {
    places: Arc<Places>,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(gauge) = &self.places.gauge {
            gauge.decrement(1);
        }
        if self.places.taken.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.places.emptied.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_beyond_the_limit_until_a_permit_is_dropped() {
        let admission = Admission::new(2);
        let first = admission.try_admit().unwrap();
        let _second = admission.clone().try_admit().unwrap();
        assert_eq!(admission.try_admit().unwrap_err(), Refused { limit: 2 });
        assert_eq!(admission.taken(), 2);
        drop(first);
        assert_eq!(admission.taken(), 1);
        assert!(admission.try_admit().is_ok());
    }

    #[tokio::test]
    async fn emptied_waits_for_the_last_permit() {
        let admission = Admission::new(4);
        admission.emptied().await;
        let permit = admission.try_admit().unwrap();
        let waiter = tokio::spawn({
            let admission = admission.clone();
            async move { admission.emptied().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(permit);
        waiter.await.unwrap();
    }
}
