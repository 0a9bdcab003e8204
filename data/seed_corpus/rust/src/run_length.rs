//! Run-length encoding: "aaab" <-> "3a1b".

pub fn encode(text: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let mut j = i + 1;
        while j < chars.len() && chars[j] == chars[i] {
            j += 1;
        }
        out.push_str(&format!("{}{}", j - i, chars[i]));
        i = j;
    }
    out
}

pub fn decode(encoded: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut count = 0usize;
    let mut has_digits = false;
    for c in encoded.chars() {
        if let Some(d) = c.to_digit(10) {
            count = count * 10 + d as usize;
            has_digits = true;
        } else {
            if !has_digits {
                return Err(format!("missing count before {:?}", c));
            }
            for _ in 0..count {
                out.push(c);
            }
            count = 0;
            has_digits = false;
        }
    }
    if has_digits {
        return Err("trailing count".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes() {
        assert_eq!(encode("aaabccdddd"), "3a1b2c4d");
        assert_eq!(encode("a"), "1a");
        assert_eq!(encode(""), "");
        assert_eq!(encode("abab"), "1a1b1a1b");
        assert_eq!(encode(&"z".repeat(12)), "12z");
    }

    #[test]
    fn decodes() {
        assert_eq!(decode("3a1b2c4d").unwrap(), "aaabccdddd");
        assert_eq!(decode("12z").unwrap(), "z".repeat(12));
        assert_eq!(decode("").unwrap(), "");
    }

    #[test]
    fn round_trip() {
        for text in ["hello", "mississippi", "    x", "aabbbcccc"] {
            assert_eq!(decode(&encode(text)).unwrap(), text);
        }
    }

    #[test]
    fn errors() {
        assert!(decode("a").is_err());
        assert!(decode("2a3").is_err());
    }
}
