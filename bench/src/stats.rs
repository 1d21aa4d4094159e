//! Order statistics over latency samples.

use std::time::Duration;

/// Median, 99th percentile, minimum and count of a sample set, in
/// microseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub count: usize,
    pub median_us: f64,
    pub p99_us: f64,
    pub min_us: f64,
}

impl Summary {
    /// Panics on an empty sample set: every benchmark takes at least one.
    pub fn of(samples: &[Duration]) -> Summary {
        assert!(!samples.is_empty(), "no samples");
        let mut sorted = samples.to_vec();
        sorted.sort();
        let at = |q: f64| {
            let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
            sorted[index].as_secs_f64() * 1e6
        };
        Summary {
            count: sorted.len(),
            median_us: at(0.5),
            p99_us: at(0.99),
            min_us: at(0.0),
        }
    }
}
