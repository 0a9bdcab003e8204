//! Caesar and Vigenere ciphers over ASCII letters.

pub fn shift_letter(c: char, shift: i32) -> char {
    let base = if c.is_ascii_lowercase() {
        b'a'
    } else if c.is_ascii_uppercase() {
        b'A'
    } else {
        return c;
    };
    let offset = (c as u8 - base) as i32;
    let shifted = (offset + shift).rem_euclid(26);
    (base + shifted as u8) as char
}

pub fn caesar(text: &str, shift: i32) -> String {
    text.chars().map(|c| shift_letter(c, shift)).collect()
}

pub fn vigenere(text: &str, key: &str, decrypt: bool) -> Option<String> {
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let shifts: Vec<i32> = key.chars().map(|c| (c.to_ascii_lowercase() as u8 - b'a') as i32).collect();
    let mut i = 0;
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphabetic() {
            let shift = shifts[i % shifts.len()];
            out.push(shift_letter(c, if decrypt { -shift } else { shift }));
            i += 1;
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters() {
        assert_eq!(shift_letter('a', 1), 'b');
        assert_eq!(shift_letter('z', 1), 'a');
        assert_eq!(shift_letter('A', 25), 'Z');
        assert_eq!(shift_letter('Z', 2), 'B');
        assert_eq!(shift_letter('!', 5), '!');
        assert_eq!(shift_letter('b', -3), 'y');
    }

    #[test]
    fn caesar_round_trip() {
        assert_eq!(caesar("Hello, World!", 3), "Khoor, Zruog!");
        assert_eq!(caesar(&caesar("Round Trip", 11), -11), "Round Trip");
        assert_eq!(caesar("abc", 26), "abc");
    }

    #[test]
    fn vigenere_cipher() {
        assert_eq!(vigenere("ATTACK AT DAWN", "LEMON", false).unwrap(), "LXFOPV EF RNHR");
        assert_eq!(vigenere("LXFOPV EF RNHR", "lemon", true).unwrap(), "ATTACK AT DAWN");
        assert_eq!(vigenere("abc", "b", false).unwrap(), "bcd");
        assert_eq!(vigenere("abc", "k3y", false), None);
        assert_eq!(vigenere("abc", "", false), None);
    }
}
