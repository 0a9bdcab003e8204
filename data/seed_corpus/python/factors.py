"""Prime factorisation and divisor functions."""


def prime_factors(n):
    """Prime factors of n >= 2 in ascending order, with multiplicity."""
    if n < 2:
        raise ValueError("n must be >= 2")
    factors = []
    divisor = 2
    while divisor * divisor <= n:
        while n % divisor == 0:
            factors.append(divisor)
            n //= divisor
        divisor += 1 if divisor == 2 else 2
    if n > 1:
        factors.append(n)
    return factors


def divisors(n):
    small, large = [], []
    i = 1
    while i * i <= n:
        if n % i == 0:
            small.append(i)
            if i != n // i:
                large.append(n // i)
        i += 1
    return small + large[::-1]


def is_perfect(n):
    return n > 1 and sum(divisors(n)) - n == n
