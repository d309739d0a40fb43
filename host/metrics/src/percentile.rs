//! The project's one percentile: nearest rank over all samples, for the replay's metrics,
//! `bench load`'s latencies, the shared tier's propagation lag and (re-exported by
//! `mcp-bridge-test-support`) the benches.

/// The nearest-rank percentile of `samples` (reordered in place), zero (the type's default)
/// when empty: the smallest sample with at least `quantile` of all samples at or below it.
pub fn percentile<T: Copy + Ord + Default>(samples: &mut [T], quantile: f64) -> T {
    if samples.is_empty() {
        return T::default();
    }
    let rank = ((quantile * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    *samples.select_nth_unstable(rank - 1).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&mut samples, 0.99), 99);
        assert_eq!(percentile(&mut samples, 0.5), 50);
        assert_eq!(percentile::<u64>(&mut [], 0.5), 0);
    }

    #[test]
    fn extreme_quantiles_are_the_minimum_and_maximum() {
        let mut samples: Vec<u32> = vec![7, 3, 9, 1, 5];
        assert_eq!(percentile(&mut samples, 0.0), 1);
        assert_eq!(percentile(&mut samples, 1.0), 9);
        assert_eq!(percentile(&mut samples, 0.999), 9);
    }
}
