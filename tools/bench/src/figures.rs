//! A measured figure, and how figures are printed: one JSON line each on
//! stdout (`{"name","value","unit","backend","scale"}`), a readable summary
//! on stderr.

use std::time::Duration;

use serde_json::json;

pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    /// How many events, movements or queries the figure was measured over.
    pub scale: usize,
}

impl Figure {
    pub fn new(name: impl Into<String>, value: f64, unit: &'static str, scale: usize) -> Self {
        Figure {
            name: name.into(),
            value,
            unit,
            scale,
        }
    }
}

pub fn print(command: &str, backend: &str, figures: &[Figure]) {
    for figure in figures {
        let line = json!({
            "name": figure.name,
            "value": (figure.value * 1000.0).round() / 1000.0,
            "unit": figure.unit,
            "backend": backend,
            "scale": figure.scale,
        });
        println!("{line}");
    }
    eprintln!("bondledger-bench {command} on {backend}:");
    for figure in figures {
        eprintln!(
            "  {:<34} {:>14.3} {:<10} (scale {})",
            figure.name, figure.value, figure.unit, figure.scale
        );
    }
}

pub fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

pub fn milliseconds(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

/// The nearest-rank percentile `p` (0–100) of `samples`; 0 when there are none.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// p50 and p99 of durations, in milliseconds, as two figures.
pub fn latency_figures(name: &str, samples: &[Duration], scale: usize) -> Vec<Figure> {
    let mut millis: Vec<f64> = samples.iter().copied().map(milliseconds).collect();
    vec![
        Figure::new(
            format!("{name}_p50"),
            percentile(&mut millis, 50.0),
            "ms",
            scale,
        ),
        Figure::new(
            format!("{name}_p99"),
            percentile(&mut millis, 99.0),
            "ms",
            scale,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let mut samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut samples, 50.0), 50.0);
        assert_eq!(percentile(&mut samples, 99.0), 99.0);
        assert_eq!(percentile(&mut [7.0], 99.0), 7.0);
        assert_eq!(percentile(&mut [], 50.0), 0.0);
    }
}
