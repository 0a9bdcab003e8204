//! Merging closed integer intervals.

pub fn merge_intervals(intervals: &[(i64, i64)]) -> Result<Vec<(i64, i64)>, String> {
    let mut ordered = intervals.to_vec();
    ordered.sort();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (start, end) in ordered {
        if start > end {
            return Err(format!("bad interval ({}, {})", start, end));
        }
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    Ok(merged)
}

pub fn total_covered(intervals: &[(i64, i64)]) -> i64 {
    merge_intervals(intervals)
        .unwrap_or_default()
        .iter()
        .map(|(s, e)| e - s + 1)
        .sum()
}

pub fn overlaps(a: (i64, i64), b: (i64, i64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges() {
        assert_eq!(
            merge_intervals(&[(1, 3), (2, 6), (8, 10), (15, 18)]).unwrap(),
            vec![(1, 6), (8, 10), (15, 18)]
        );
        assert_eq!(merge_intervals(&[(1, 4), (4, 5)]).unwrap(), vec![(1, 5)]);
        assert_eq!(merge_intervals(&[(5, 7), (1, 2)]).unwrap(), vec![(1, 2), (5, 7)]);
        assert_eq!(merge_intervals(&[(1, 10), (2, 3)]).unwrap(), vec![(1, 10)]);
        assert!(merge_intervals(&[]).unwrap().is_empty());
        assert!(merge_intervals(&[(5, 1)]).is_err());
    }

    #[test]
    fn covered() {
        assert_eq!(total_covered(&[(1, 3), (2, 4), (10, 10)]), 5);
        assert_eq!(total_covered(&[]), 0);
    }

    #[test]
    fn overlap() {
        assert!(overlaps((1, 5), (5, 9)));
        assert!(overlaps((3, 4), (1, 10)));
        assert!(!overlaps((1, 2), (3, 4)));
        assert!(!overlaps((7, 9), (1, 6)));
    }
}
