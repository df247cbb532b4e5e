//! Compute time per batch size (or per step width), as the latency-target controllers
//! learn it from their own measurements.

/// Weight of a new compute-time measurement against what was known of its batch size.
const COMPUTE_SMOOTHING: f64 = 0.2;
/// A batch size's measurement counts for this many batches; after that the size is
/// predicted from the sizes measured since.
pub(super) const FRESH_BATCHES: u64 = 200;

/// Compute time per batch size: a smoothed measurement for each size measured lately, and
/// for the others a least-squares line through those. A size not measured for a while is
/// predicted from the line again, so a model that slows down is seen to slow at every size
/// as soon as the sizes it runs show it, and old measurements never linger.
#[derive(Debug, Clone)]
pub(super) struct ComputeTimes {
    /// Seconds and the batch count when last measured, indexed by batch size − 1.
    by_size: Vec<Option<(f64, u64)>>,
    /// Batches measured so far.
    batches: u64,
}

impl ComputeTimes {
    pub(super) fn new(max_batch_size: usize) -> Self {
        Self {
            by_size: vec![None; max_batch_size],
            batches: 0,
        }
    }

    pub(super) fn record(&mut self, size: usize, seconds: f64) {
        if size == 0 || size > self.by_size.len() || !(seconds.is_finite() && seconds >= 0.0) {
            return;
        }
        self.batches += 1;
        let fresh = self.fresh(size);
        let slot = &mut self.by_size[size - 1];
        let smoothed = match fresh {
            Some(old) => old + COMPUTE_SMOOTHING * (seconds - old),
            None => seconds,
        };
        *slot = Some((smoothed, self.batches));
    }

    /// The smoothed time of `size`, if it was measured within the last [`FRESH_BATCHES`].
    fn fresh(&self, size: usize) -> Option<f64> {
        let (seconds, at) = (*self.by_size.get(size.checked_sub(1)?)?)?;
        (self.batches - at < FRESH_BATCHES).then_some(seconds)
    }

    /// The smallest size measured lately.
    pub(super) fn narrowest_fresh(&self) -> Option<usize> {
        (1..=self.by_size.len()).find(|&size| self.fresh(size).is_some())
    }

    pub(super) fn estimate(&self, size: usize) -> Option<f64> {
        self.estimates()?.get(size.checked_sub(1)?).copied()
    }

    /// The estimate of every size, 1 to the largest, in one pass (the choice weighs them
    /// all before each batch).
    pub(super) fn estimates(&self) -> Option<Vec<f64>> {
        let fresh: Vec<Option<f64>> = (1..=self.by_size.len()).map(|s| self.fresh(s)).collect();
        let seen: Vec<(f64, f64)> = fresh
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| ((i + 1) as f64, t)))
            .collect();
        let (first_size, first_time) = *seen.first()?;
        let line: Box<dyn Fn(f64) -> f64> = if seen.len() == 1 {
            // One size seen: assume time grows in proportion beyond it (pessimistic, as a
            // batch has a fixed cost) and stays the same below it.
            Box::new(move |size| first_time * (size / first_size).max(1.0))
        } else {
            let n = seen.len() as f64;
            let mean_size = seen.iter().map(|p| p.0).sum::<f64>() / n;
            let mean_time = seen.iter().map(|p| p.1).sum::<f64>() / n;
            let covariance: f64 = seen
                .iter()
                .map(|(s, t)| (s - mean_size) * (t - mean_time))
                .sum();
            let variance: f64 = seen.iter().map(|(s, _)| (s - mean_size).powi(2)).sum();
            let slope = (covariance / variance).max(0.0);
            Box::new(move |size| (mean_time + slope * (size - mean_size)).max(0.0))
        };
        // A size not measured lately takes never less than a smaller one was measured to.
        let mut floor = 0.0f64;
        Some(
            fresh
                .iter()
                .enumerate()
                .map(|(i, measured)| match measured {
                    Some(t) => {
                        floor = floor.max(*t);
                        *t
                    }
                    None => line((i + 1) as f64).max(floor),
                })
                .collect(),
        )
    }
}
