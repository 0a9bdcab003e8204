//! Coin change and 0/1 knapsack by dynamic programming.

/// Fewest coins summing to `amount`, or None when impossible.
pub fn min_coins(coins: &[usize], amount: usize) -> Option<usize> {
    let unreachable = usize::MAX;
    let mut fewest = vec![unreachable; amount + 1];
    fewest[0] = 0;
    for total in 1..=amount {
        for &coin in coins {
            if coin <= total && fewest[total - coin] != unreachable {
                fewest[total] = fewest[total].min(fewest[total - coin] + 1);
            }
        }
    }
    if fewest[amount] == unreachable {
        None
    } else {
        Some(fewest[amount])
    }
}

pub fn count_ways(coins: &[usize], amount: usize) -> u64 {
    let mut ways = vec![0u64; amount + 1];
    ways[0] = 1;
    for &coin in coins {
        for total in coin..=amount {
            ways[total] += ways[total - coin];
        }
    }
    ways[amount]
}

/// Best value of (weight, value) items within `capacity`, each used at most once.
pub fn knapsack(items: &[(usize, u64)], capacity: usize) -> u64 {
    let mut best = vec![0u64; capacity + 1];
    for &(weight, value) in items {
        if weight > capacity {
            continue;
        }
        for room in (weight..=capacity).rev() {
            best[room] = best[room].max(best[room - weight] + value);
        }
    }
    best[capacity]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewest() {
        assert_eq!(min_coins(&[1, 2, 5], 11), Some(3));
        assert_eq!(min_coins(&[2], 3), None);
        assert_eq!(min_coins(&[1], 0), Some(0));
        assert_eq!(min_coins(&[1, 3, 4], 6), Some(2));
        assert_eq!(min_coins(&[5, 10], 10), Some(1));
    }

    #[test]
    fn ways() {
        assert_eq!(count_ways(&[1, 2, 5], 5), 4);
        assert_eq!(count_ways(&[2], 3), 0);
        assert_eq!(count_ways(&[10], 10), 1);
        assert_eq!(count_ways(&[1, 2], 0), 1);
        assert_eq!(count_ways(&[2, 3], 7), 1);
    }

    #[test]
    fn knapsacks() {
        let items = [(1, 1), (3, 4), (4, 5), (5, 7)];
        assert_eq!(knapsack(&items, 7), 9);
        assert_eq!(knapsack(&items, 0), 0);
        assert_eq!(knapsack(&items, 13), 17);
        assert_eq!(knapsack(&[(5, 10)], 4), 0);
        assert_eq!(knapsack(&[(2, 3), (2, 3)], 4), 6);
        assert_eq!(knapsack(&[(3, 5)], 3), 5);
    }
}
