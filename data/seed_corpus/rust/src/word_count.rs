//! Word frequencies and the most common words.

use std::collections::HashMap;

pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

pub fn frequencies(text: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for word in tokenize(text) {
        *counts.entry(word).or_insert(0) += 1;
    }
    counts
}

/// The k most frequent words, ties broken alphabetically.
pub fn top_words(text: &str, k: usize) -> Vec<(String, usize)> {
    let mut ranked: Vec<(String, usize)> = frequencies(text).into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(k);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "The cat and the hat. The cat sat! A hat, a cat; don't 'quote' me.";

    #[test]
    fn tokens() {
        assert_eq!(tokenize("Hello, World! It's 'quoted'."), vec!["hello", "world", "it's", "quoted"]);
        assert!(tokenize(" ... '' ").is_empty());
    }

    #[test]
    fn counts() {
        let counts = frequencies(TEXT);
        assert_eq!(counts["the"], 3);
        assert_eq!(counts["cat"], 3);
        assert_eq!(counts["don't"], 1);
        assert_eq!(counts["a"], 2);
        assert_eq!(counts.len(), 9);
    }

    #[test]
    fn top() {
        let expected = vec![("cat".to_string(), 3), ("the".to_string(), 3), ("a".to_string(), 2)];
        assert_eq!(top_words(TEXT, 3), expected);
        assert!(top_words("", 5).is_empty());
        assert_eq!(top_words(TEXT, 100).len(), 9);
    }
}
