"""Bit tricks on non-negative integers."""


def popcount(n):
    count = 0
    while n:
        n &= n - 1
        count += 1
    return count


def is_power_of_two(n):
    return n > 0 and n & (n - 1) == 0


def reverse_bits(n, width=8):
    result = 0
    for _ in range(width):
        result = (result << 1) | (n & 1)
        n >>= 1
    return result


def next_power_of_two(n):
    power = 1
    while power < n:
        power <<= 1
    return power


def gray_code(n):
    return n ^ (n >> 1)
