//! Insertion sort and merge sort (stable), both on slices of i32.

pub fn insertion_sort(items: &mut [i32]) {
    for i in 1..items.len() {
        let current = items[i];
        let mut j = i;
        while j > 0 && items[j - 1] > current {
            items[j] = items[j - 1];
            j -= 1;
        }
        items[j] = current;
    }
}

fn merge(left: &[i32], right: &[i32]) -> Vec<i32> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        if right[j] < left[i] {
            out.push(right[j]);
            j += 1;
        } else {
            out.push(left[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&left[i..]);
    out.extend_from_slice(&right[j..]);
    out
}

pub fn merge_sort(items: &[i32]) -> Vec<i32> {
    if items.len() <= 1 {
        return items.to_vec();
    }
    let middle = items.len() / 2;
    merge(&merge_sort(&items[..middle]), &merge_sort(&items[middle..]))
}

pub fn is_sorted(items: &[i32]) -> bool {
    items.windows(2).all(|w| w[0] <= w[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cases() -> Vec<Vec<i32>> {
        let mut seed = 7u32;
        let mut random = Vec::new();
        for _ in 0..40 {
            seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
            random.push((seed >> 16) as i32 % 100 - 50);
        }
        vec![vec![], vec![1], vec![3, 1, 2], vec![5, 4, 3, 2, 1], vec![2, 2, 1, 1], random]
    }

    #[test]
    fn insertion() {
        for case in cases() {
            let mut got = case.clone();
            insertion_sort(&mut got);
            let mut expected = case.clone();
            expected.sort();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn merging() {
        for case in cases() {
            let mut expected = case.clone();
            expected.sort();
            assert_eq!(merge_sort(&case), expected);
        }
    }

    #[test]
    fn sorted_check() {
        assert!(is_sorted(&[]));
        assert!(is_sorted(&[1, 1, 2]));
        assert!(!is_sorted(&[2, 1]));
    }
}
