//! Dense matrices as Vec<Vec<i64>>.

pub fn identity(n: usize) -> Vec<Vec<i64>> {
    (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1 } else { 0 }).collect())
        .collect()
}

pub fn transpose(m: &[Vec<i64>]) -> Vec<Vec<i64>> {
    if m.is_empty() {
        return Vec::new();
    }
    let (rows, cols) = (m.len(), m[0].len());
    let mut out = vec![vec![0; rows]; cols];
    for i in 0..rows {
        for j in 0..cols {
            out[j][i] = m[i][j];
        }
    }
    out
}

pub fn multiply(a: &[Vec<i64>], b: &[Vec<i64>]) -> Option<Vec<Vec<i64>>> {
    if a.is_empty() || b.is_empty() || a[0].len() != b.len() {
        return None;
    }
    let (rows, inner, cols) = (a.len(), b.len(), b[0].len());
    let mut out = vec![vec![0; cols]; rows];
    for i in 0..rows {
        for j in 0..cols {
            let mut total = 0;
            for k in 0..inner {
                total += a[i][k] * b[k][j];
            }
            out[i][j] = total;
        }
    }
    Some(out)
}

pub fn trace(m: &[Vec<i64>]) -> i64 {
    (0..m.len()).map(|i| m[i][i]).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_trace() {
        assert_eq!(identity(2), vec![vec![1, 0], vec![0, 1]]);
        assert!(identity(0).is_empty());
        assert_eq!(trace(&identity(4)), 4);
        assert_eq!(trace(&[vec![2, 9], vec![9, 3]]), 5);
    }

    #[test]
    fn transposes() {
        let m = vec![vec![1, 2, 3], vec![4, 5, 6]];
        assert_eq!(transpose(&m), vec![vec![1, 4], vec![2, 5], vec![3, 6]]);
        assert!(transpose(&[]).is_empty());
    }

    #[test]
    fn multiplies() {
        let a = vec![vec![1, 2], vec![3, 4], vec![5, 6]];
        let b = vec![vec![7, 8, 9], vec![10, 11, 12]];
        let expected = vec![vec![27, 30, 33], vec![61, 68, 75], vec![95, 106, 117]];
        assert_eq!(multiply(&a, &b), Some(expected));
        assert_eq!(multiply(&identity(2), &[vec![2, 3], vec![4, 5]]), Some(vec![vec![2, 3], vec![4, 5]]));
        assert_eq!(multiply(&a, &a), None);
        assert_eq!(multiply(&[], &b), None);
    }
}
