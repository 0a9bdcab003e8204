//! Descriptive statistics over f64 slices.

pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        Some(sorted[middle])
    } else {
        Some((sorted[middle - 1] + sorted[middle]) / 2.0)
    }
}

pub fn variance(values: &[f64], sample: bool) -> Option<f64> {
    let m = mean(values)?;
    let squares: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    let n = if sample { values.len() - 1 } else { values.len() };
    if n == 0 {
        return None;
    }
    Some(squares / n as f64)
}

pub fn min_max(values: &[f64]) -> Option<(f64, f64)> {
    let first = *values.first()?;
    let mut lo = first;
    let mut hi = first;
    for &v in &values[1..] {
        if v < lo {
            lo = v;
        }
        if v > hi {
            hi = v;
        }
    }
    Some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_and_medians() {
        assert_eq!(mean(&[1.0, 2.0, 3.0, 4.0]), Some(2.5));
        assert_eq!(mean(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn variances() {
        let data = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(variance(&data, false), Some(4.0));
        assert!((variance(&data, true).unwrap() - 32.0 / 7.0).abs() < 1e-12);
        assert_eq!(variance(&[1.0], true), None);
        assert_eq!(variance(&[3.0, 3.0], false), Some(0.0));
    }

    #[test]
    fn extremes() {
        assert_eq!(min_max(&[3.0, -1.0, 8.0, 2.0]), Some((-1.0, 8.0)));
        assert_eq!(min_max(&[5.0]), Some((5.0, 5.0)));
        assert_eq!(min_max(&[]), None);
    }
}
