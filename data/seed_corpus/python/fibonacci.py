"""Fibonacci numbers, iterative and by fast doubling."""


def fib(n):
    if n < 0:
        raise ValueError("n must be non-negative")
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def fib_pair(n):
    """(F(n), F(n + 1)) by fast doubling."""
    if n == 0:
        return 0, 1
    a, b = fib_pair(n // 2)
    c = a * (2 * b - a)
    d = a * a + b * b
    if n % 2 == 0:
        return c, d
    return d, c + d


def fib_sequence(count):
    seq = []
    a, b = 0, 1
    while len(seq) < count:
        seq.append(a)
        a, b = b, a + b
    return seq
