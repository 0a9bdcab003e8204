//! Bracket matching: the position of the first error and the nesting depth.

fn opener(c: char) -> Option<char> {
    match c {
        ')' => Some('('),
        ']' => Some('['),
        '}' => Some('{'),
        _ => None,
    }
}

/// Index (in chars) of the first unmatched bracket, the length if one is left open, None if balanced.
pub fn first_error(text: &str) -> Option<usize> {
    let mut stack: Vec<char> = Vec::new();
    let mut count = 0;
    for (i, c) in text.chars().enumerate() {
        count = i + 1;
        if c == '(' || c == '[' || c == '{' {
            stack.push(c);
        } else if let Some(open) = opener(c) {
            if stack.pop() != Some(open) {
                return Some(i);
            }
        }
    }
    if !stack.is_empty() {
        return Some(count);
    }
    None
}

pub fn max_depth(text: &str) -> usize {
    let (mut depth, mut best) = (0usize, 0usize);
    for c in text.chars() {
        if c == '(' || c == '[' || c == '{' {
            depth += 1;
            best = best.max(depth);
        } else if opener(c).is_some() && depth > 0 {
            depth -= 1;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced() {
        for text in ["", "()", "([]{})", "a(b[c]{d}e)f", "((()))"] {
            assert_eq!(first_error(text), None, "{}", text);
        }
    }

    #[test]
    fn unbalanced() {
        assert_eq!(first_error("(]"), Some(1));
        assert_eq!(first_error("())"), Some(2));
        assert_eq!(first_error("(()"), Some(3));
        assert_eq!(first_error("x}"), Some(1));
        assert_eq!(first_error("{[(])}"), Some(3));
    }

    #[test]
    fn depth() {
        assert_eq!(max_depth(""), 0);
        assert_eq!(max_depth("()()"), 1);
        assert_eq!(max_depth("([{}])"), 3);
        assert_eq!(max_depth("(a)(b(c))"), 2);
    }
}
