//! Clamp a value into a closed interval.

pub fn clamp(value: i64, low: i64, high: i64) -> Option<i64> {
    if low > high {
        return None;
    }
    if value < low {
        Some(low)
    } else if value > high {
        Some(high)
    } else {
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_and_outside() {
        assert_eq!(clamp(5, 0, 10), Some(5));
        assert_eq!(clamp(-3, 0, 10), Some(0));
        assert_eq!(clamp(42, 0, 10), Some(10));
    }

    #[test]
    fn bounds() {
        assert_eq!(clamp(0, 0, 10), Some(0));
        assert_eq!(clamp(10, 0, 10), Some(10));
        assert_eq!(clamp(7, 3, 3), Some(3));
    }

    #[test]
    fn bad_interval() {
        assert_eq!(clamp(1, 5, 2), None);
    }
}
