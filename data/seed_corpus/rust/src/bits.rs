//! Bit tricks on unsigned integers.

pub fn popcount(mut n: u64) -> u32 {
    let mut count = 0;
    while n != 0 {
        n &= n - 1;
        count += 1;
    }
    count
}

pub fn is_power_of_two(n: u64) -> bool {
    n != 0 && n & (n - 1) == 0
}

pub fn reverse_bits(mut n: u32, width: u32) -> u32 {
    let mut result = 0;
    for _ in 0..width {
        result = (result << 1) | (n & 1);
        n >>= 1;
    }
    result
}

pub fn next_power_of_two(n: u64) -> u64 {
    let mut power = 1;
    while power < n {
        power <<= 1;
    }
    power
}

pub fn gray_code(n: u32) -> u32 {
    n ^ (n >> 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        for n in 0..300u64 {
            assert_eq!(popcount(n), n.count_ones());
        }
    }

    #[test]
    fn powers() {
        let got: Vec<u64> = (0..70).filter(|&n| is_power_of_two(n)).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 32, 64]);
        let next: Vec<u64> = [0, 1, 2, 3, 5, 8, 9, 1000].iter().map(|&n| next_power_of_two(n)).collect();
        assert_eq!(next, vec![1, 1, 2, 4, 8, 8, 16, 1024]);
    }

    #[test]
    fn reverses() {
        assert_eq!(reverse_bits(0b0000_0001, 8), 0b1000_0000);
        assert_eq!(reverse_bits(0b1011_0000, 8), 0b0000_1101);
        assert_eq!(reverse_bits(0b0011, 4), 0b1100);
        assert_eq!(reverse_bits(0b110, 3), 0b011);
    }

    #[test]
    fn gray() {
        let codes: Vec<u32> = (0..16).map(gray_code).collect();
        assert_eq!(&codes[..5], &[0, 1, 3, 2, 6]);
        for w in codes.windows(2) {
            assert_eq!((w[0] ^ w[1]).count_ones(), 1);
        }
    }
}
