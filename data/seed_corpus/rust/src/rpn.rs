//! Evaluate reverse Polish notation expressions over i64.

#[derive(Debug, PartialEq)]
pub enum RpnError {
    StackUnderflow,
    DivisionByZero,
    BadToken(String),
    LeftOver(usize),
}

pub fn evaluate(expression: &str) -> Result<i64, RpnError> {
    let mut stack: Vec<i64> = Vec::new();
    for token in expression.split_whitespace() {
        if let Ok(value) = token.parse::<i64>() {
            stack.push(value);
            continue;
        }
        let b = stack.pop().ok_or(RpnError::StackUnderflow)?;
        let a = stack.pop().ok_or(RpnError::StackUnderflow)?;
        let result = match token {
            "+" => a + b,
            "-" => a - b,
            "*" => a * b,
            "/" => {
                if b == 0 {
                    return Err(RpnError::DivisionByZero);
                }
                a / b
            }
            "%" => {
                if b == 0 {
                    return Err(RpnError::DivisionByZero);
                }
                a % b
            }
            _ => return Err(RpnError::BadToken(token.to_string())),
        };
        stack.push(result);
    }
    match stack.len() {
        0 => Err(RpnError::StackUnderflow),
        1 => Ok(stack[0]),
        n => Err(RpnError::LeftOver(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic() {
        assert_eq!(evaluate("3 4 +"), Ok(7));
        assert_eq!(evaluate("5 1 2 + 4 * + 3 -"), Ok(14));
        assert_eq!(evaluate("10 3 /"), Ok(3));
        assert_eq!(evaluate("10 3 %"), Ok(1));
        assert_eq!(evaluate("2 3 4 * -"), Ok(-10));
        assert_eq!(evaluate("-7"), Ok(-7));
    }

    #[test]
    fn errors() {
        assert_eq!(evaluate(""), Err(RpnError::StackUnderflow));
        assert_eq!(evaluate("1 +"), Err(RpnError::StackUnderflow));
        assert_eq!(evaluate("1 0 /"), Err(RpnError::DivisionByZero));
        assert_eq!(evaluate("1 0 %"), Err(RpnError::DivisionByZero));
        assert_eq!(evaluate("1 2 ^"), Err(RpnError::BadToken("^".to_string())));
        assert_eq!(evaluate("1 2 3 +"), Err(RpnError::LeftOver(2)));
    }
}
