//! Binary search and lower bound over sorted slices.

/// Index of `target` in the sorted slice, or None.
pub fn binary_search(items: &[i32], target: i32) -> Option<usize> {
    let mut low = 0;
    let mut high = items.len();
    while low < high {
        let mid = low + (high - low) / 2;
        if items[mid] == target {
            return Some(mid);
        }
        if items[mid] < target {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    None
}

/// First index whose item is >= target (items.len() if none).
pub fn lower_bound(items: &[i32], target: i32) -> usize {
    let (mut low, mut high) = (0, items.len());
    while low < high {
        let mid = (low + high) / 2;
        if items[mid] < target {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    low
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_item() {
        let items = [1, 3, 5, 7, 9, 11];
        for (i, v) in items.iter().enumerate() {
            assert_eq!(binary_search(&items, *v), Some(i));
        }
    }

    #[test]
    fn missing_items() {
        let items = [1, 3, 5, 7, 9, 11];
        for v in [0, 2, 4, 6, 8, 10, 12] {
            assert_eq!(binary_search(&items, v), None);
        }
        assert_eq!(binary_search(&[], 3), None);
        assert_eq!(binary_search(&[3], 3), Some(0));
    }

    #[test]
    fn lower_bounds() {
        let items = [1, 2, 2, 2, 5, 8];
        assert_eq!(lower_bound(&items, 0), 0);
        assert_eq!(lower_bound(&items, 1), 0);
        assert_eq!(lower_bound(&items, 2), 1);
        assert_eq!(lower_bound(&items, 3), 4);
        assert_eq!(lower_bound(&items, 8), 5);
        assert_eq!(lower_bound(&items, 9), 6);
        assert_eq!(lower_bound(&[], 9), 0);
    }
}
