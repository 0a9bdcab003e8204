"""Pascal's triangle and binomial coefficients."""


def pascal_rows(count):
    rows = []
    for n in range(count):
        row = [1] * (n + 1)
        for k in range(1, n):
            row[k] = rows[n - 1][k - 1] + rows[n - 1][k]
        rows.append(row)
    return rows


def binomial(n, k):
    if k < 0 or k > n:
        return 0
    k = min(k, n - k)
    result = 1
    for i in range(1, k + 1):
        result = result * (n - k + i) // i
    return result
