//! A stack that reports its minimum in O(1).

#[derive(Default)]
pub struct MinStack {
    items: Vec<i64>,
    minimums: Vec<i64>,
}

impl MinStack {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, value: i64) {
        self.items.push(value);
        if self.minimums.is_empty() || value <= *self.minimums.last().unwrap() {
            self.minimums.push(value);
        }
    }

    pub fn pop(&mut self) -> Option<i64> {
        let value = self.items.pop()?;
        if Some(&value) == self.minimums.last() {
            self.minimums.pop();
        }
        Some(value)
    }

    pub fn min(&self) -> Option<i64> {
        self.minimums.last().copied()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_minimum() {
        let mut s = MinStack::new();
        for (value, expected) in [(5, 5), (3, 3), (7, 3), (3, 3), (1, 1)] {
            s.push(value);
            assert_eq!(s.min(), Some(expected));
        }
        assert_eq!(s.len(), 5);
        assert_eq!(s.pop(), Some(1));
        assert_eq!(s.min(), Some(3));
        assert_eq!(s.pop(), Some(3));
        assert_eq!(s.min(), Some(3));
        assert_eq!(s.pop(), Some(7));
        assert_eq!(s.pop(), Some(3));
        assert_eq!(s.min(), Some(5));
        assert!(!s.is_empty());
    }

    #[test]
    fn empty() {
        let mut s = MinStack::new();
        assert!(s.is_empty());
        assert_eq!(s.pop(), None);
        assert_eq!(s.min(), None);
    }
}
