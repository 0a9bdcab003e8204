//! Fibonacci numbers: iterative, fast doubling, and a checked sequence.

pub fn fib(n: u32) -> u128 {
    let (mut a, mut b) = (0u128, 1u128);
    for _ in 0..n {
        let next = a + b;
        a = b;
        b = next;
    }
    a
}

/// (F(n), F(n + 1)) by fast doubling.
pub fn fib_pair(n: u32) -> (u128, u128) {
    if n == 0 {
        return (0, 1);
    }
    let (a, b) = fib_pair(n / 2);
    let c = a * (2 * b - a);
    let d = a * a + b * b;
    if n % 2 == 0 {
        (c, d)
    } else {
        (d, c + d)
    }
}

/// The Fibonacci numbers not above `limit`.
pub fn fib_up_to(limit: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let (mut a, mut b) = (0u64, 1u64);
    while a <= limit {
        out.push(a);
        let next = a + b;
        a = b;
        b = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values() {
        let got: Vec<u128> = (0..10).map(fib).collect();
        assert_eq!(got, vec![0, 1, 1, 2, 3, 5, 8, 13, 21, 34]);
        assert_eq!(fib(50), 12586269025);
    }

    #[test]
    fn doubling_matches() {
        for n in 0..60 {
            assert_eq!(fib_pair(n), (fib(n), fib(n + 1)));
        }
        assert_eq!(fib_pair(100).0, 354224848179261915075);
    }

    #[test]
    fn up_to() {
        assert_eq!(fib_up_to(0), vec![0]);
        assert_eq!(fib_up_to(1), vec![0, 1, 1]);
        assert_eq!(fib_up_to(20), vec![0, 1, 1, 2, 3, 5, 8, 13]);
        assert_eq!(fib_up_to(21), vec![0, 1, 1, 2, 3, 5, 8, 13, 21]);
    }
}
