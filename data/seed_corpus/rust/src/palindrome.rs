//! Palindrome checks and the longest palindromic substring.

pub fn is_palindrome(text: &str) -> bool {
    let cleaned: Vec<char> = text
        .chars()
        .filter(|c| c.is_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if cleaned.is_empty() {
        return true;
    }
    let (mut left, mut right) = (0, cleaned.len() - 1);
    while left < right {
        if cleaned[left] != cleaned[right] {
            return false;
        }
        left += 1;
        right -= 1;
    }
    true
}

pub fn longest_palindrome(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len() as i64;
    let (mut best_start, mut best_len) = (0i64, 0i64);
    for center in 0..n {
        for (l, r) in [(center, center), (center, center + 1)] {
            let (mut left, mut right) = (l, r);
            while left >= 0 && right < n && chars[left as usize] == chars[right as usize] {
                left -= 1;
                right += 1;
            }
            let length = right - left - 1;
            if length > best_len {
                best_start = left + 1;
                best_len = length;
            }
        }
    }
    chars[best_start as usize..(best_start + best_len) as usize].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palindromes() {
        assert!(is_palindrome("A man, a plan, a canal: Panama"));
        assert!(is_palindrome(""));
        assert!(is_palindrome("x"));
        assert!(is_palindrome("abba"));
        assert!(!is_palindrome("abca"));
        assert!(!is_palindrome("ab"));
        assert!(!is_palindrome("race a car"));
    }

    #[test]
    fn longest() {
        assert_eq!(longest_palindrome("babad"), "bab");
        assert_eq!(longest_palindrome("cbbd"), "bb");
        assert_eq!(longest_palindrome("a"), "a");
        assert_eq!(longest_palindrome(""), "");
        assert_eq!(longest_palindrome("forgeeksskeegfor"), "geeksskeeg");
        assert_eq!(longest_palindrome("abcde"), "a");
        assert_eq!(longest_palindrome("xyzracecar"), "racecar");
    }
}
