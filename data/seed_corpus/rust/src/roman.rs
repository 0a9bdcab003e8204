//! Roman numerals: integer <-> string.

const VALUES: [(u32, &str); 13] = [
    (1000, "M"),
    (900, "CM"),
    (500, "D"),
    (400, "CD"),
    (100, "C"),
    (90, "XC"),
    (50, "L"),
    (40, "XL"),
    (10, "X"),
    (9, "IX"),
    (5, "V"),
    (4, "IV"),
    (1, "I"),
];

pub fn to_roman(mut number: u32) -> Option<String> {
    if number == 0 || number >= 4000 {
        return None;
    }
    let mut out = String::new();
    for (value, letters) in VALUES.iter() {
        while number >= *value {
            out.push_str(letters);
            number -= value;
        }
    }
    Some(out)
}

fn digit(c: char) -> Option<u32> {
    match c {
        'I' => Some(1),
        'V' => Some(5),
        'X' => Some(10),
        'L' => Some(50),
        'C' => Some(100),
        'D' => Some(500),
        'M' => Some(1000),
        _ => None,
    }
}

pub fn from_roman(text: &str) -> Option<u32> {
    let values: Vec<u32> = text.chars().map(digit).collect::<Option<Vec<_>>>()?;
    let mut total = 0;
    for i in 0..values.len() {
        if i + 1 < values.len() && values[i + 1] > values[i] {
            total -= values[i] as i64;
        } else {
            total += values[i] as i64;
        }
    }
    if total <= 0 {
        return None;
    }
    Some(total as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CASES: [(u32, &str); 10] = [
        (1, "I"),
        (4, "IV"),
        (9, "IX"),
        (14, "XIV"),
        (40, "XL"),
        (90, "XC"),
        (400, "CD"),
        (1994, "MCMXCIV"),
        (2024, "MMXXIV"),
        (3999, "MMMCMXCIX"),
    ];

    #[test]
    fn to_and_from() {
        for (n, s) in CASES {
            assert_eq!(to_roman(n).as_deref(), Some(s));
            assert_eq!(from_roman(s), Some(n));
        }
    }

    #[test]
    fn round_trip() {
        for n in 1..400 {
            assert_eq!(from_roman(&to_roman(n).unwrap()), Some(n));
        }
    }

    #[test]
    fn invalid() {
        assert_eq!(to_roman(0), None);
        assert_eq!(to_roman(4000), None);
        assert_eq!(from_roman("ABC"), None);
        assert_eq!(from_roman(""), None);
    }
}
