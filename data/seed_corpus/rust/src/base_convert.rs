//! Integers to and from strings in bases 2..=36.

const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

pub fn to_base(number: i64, base: u32) -> Option<String> {
    if !(2..=36).contains(&base) {
        return None;
    }
    if number == 0 {
        return Some("0".to_string());
    }
    let negative = number < 0;
    let mut n = number.unsigned_abs();
    let mut digits = Vec::new();
    while n > 0 {
        digits.push(DIGITS[(n % base as u64) as usize]);
        n /= base as u64;
    }
    if negative {
        digits.push(b'-');
    }
    digits.reverse();
    Some(String::from_utf8(digits).unwrap())
}

pub fn from_base(text: &str, base: u32) -> Option<i64> {
    if !(2..=36).contains(&base) {
        return None;
    }
    let text = text.trim().to_ascii_lowercase();
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, text),
    };
    if body.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for c in body.chars() {
        let digit = c.to_digit(36)?;
        if digit >= base {
            return None;
        }
        value = value * base as i64 + digit as i64;
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to() {
        assert_eq!(to_base(0, 2).unwrap(), "0");
        assert_eq!(to_base(10, 2).unwrap(), "1010");
        assert_eq!(to_base(255, 16).unwrap(), "ff");
        assert_eq!(to_base(-255, 16).unwrap(), "-ff");
        assert_eq!(to_base(35, 36).unwrap(), "z");
        assert_eq!(to_base(36, 36).unwrap(), "10");
        assert_eq!(to_base(5, 1), None);
        assert_eq!(to_base(5, 37), None);
    }

    #[test]
    fn from() {
        assert_eq!(from_base("1010", 2), Some(10));
        assert_eq!(from_base("FF", 16), Some(255));
        assert_eq!(from_base("-z", 36), Some(-35));
        assert_eq!(from_base(" 777 ", 8), Some(511));
        assert_eq!(from_base("12", 2), None);
        assert_eq!(from_base("-", 10), None);
        assert_eq!(from_base("1!", 10), None);
        assert_eq!(from_base("1", 37), None);
    }

    #[test]
    fn round_trip() {
        for base in [2, 3, 7, 10, 16, 36] {
            for n in [-1000, -1, 0, 1, 2, 99, 12345] {
                assert_eq!(from_base(&to_base(n, base).unwrap(), base), Some(n));
            }
        }
    }
}
