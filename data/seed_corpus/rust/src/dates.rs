//! Calendar arithmetic (proleptic Gregorian).

const DAYS_IN_MONTH: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

pub fn is_leap_year(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub fn days_in_month(year: i32, month: u32) -> Option<u32> {
    if !(1..=12).contains(&month) {
        return None;
    }
    if month == 2 && is_leap_year(year) {
        return Some(29);
    }
    Some(DAYS_IN_MONTH[(month - 1) as usize])
}

pub fn day_of_year(year: i32, month: u32, day: u32) -> Option<u32> {
    if day < 1 || day > days_in_month(year, month)? {
        return None;
    }
    let mut total = day;
    for m in 1..month {
        total += days_in_month(year, m)?;
    }
    Some(total)
}

/// Days since 1970-01-01 (negative before).
pub fn days_since_epoch(year: i32, month: u32, day: u32) -> Option<i64> {
    let mut days = day_of_year(year, month, day)? as i64 - 1;
    if year >= 1970 {
        for y in 1970..year {
            days += if is_leap_year(y) { 366 } else { 365 };
        }
    } else {
        for y in year..1970 {
            days -= if is_leap_year(y) { 366 } else { 365 };
        }
    }
    Some(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leap_years() {
        assert!(is_leap_year(2024));
        assert!(is_leap_year(2000));
        assert!(!is_leap_year(1900));
        assert!(!is_leap_year(2023));
    }

    #[test]
    fn months() {
        assert_eq!(days_in_month(2023, 2), Some(28));
        assert_eq!(days_in_month(2024, 2), Some(29));
        assert_eq!(days_in_month(2024, 1), Some(31));
        assert_eq!(days_in_month(2024, 12), Some(31));
        assert_eq!(days_in_month(2024, 4), Some(30));
        assert_eq!(days_in_month(2024, 0), None);
        assert_eq!(days_in_month(2024, 13), None);
    }

    #[test]
    fn ordinal_days() {
        assert_eq!(day_of_year(2023, 1, 1), Some(1));
        assert_eq!(day_of_year(2023, 12, 31), Some(365));
        assert_eq!(day_of_year(2024, 12, 31), Some(366));
        assert_eq!(day_of_year(2024, 3, 1), Some(61));
        assert_eq!(day_of_year(2023, 2, 29), None);
        assert_eq!(day_of_year(2023, 5, 0), None);
    }

    #[test]
    fn epoch() {
        assert_eq!(days_since_epoch(1970, 1, 1), Some(0));
        assert_eq!(days_since_epoch(1970, 1, 2), Some(1));
        assert_eq!(days_since_epoch(2000, 1, 1), Some(10957));
        assert_eq!(days_since_epoch(2024, 3, 1), Some(19783));
        assert_eq!(days_since_epoch(1969, 12, 31), Some(-1));
        assert_eq!(days_since_epoch(1900, 1, 1), Some(-25567));
    }
}
