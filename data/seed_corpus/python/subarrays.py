"""Array problems: maximum subarray, two-sum, prefix sums."""


def max_subarray(values):
    """(best sum, start, end exclusive) of a non-empty contiguous run (Kadane)."""
    if not values:
        raise ValueError("empty input")
    best, best_start, best_end = values[0], 0, 1
    current, start = 0, 0
    for i, value in enumerate(values):
        if current <= 0:
            current, start = value, i
        else:
            current += value
        if current > best:
            best, best_start, best_end = current, start, i + 1
    return best, best_start, best_end


def two_sum(values, target):
    """Indices (i, j), i < j, of the first pair summing to target, or None."""
    seen = {}
    for j, value in enumerate(values):
        if target - value in seen:
            return seen[target - value], j
        seen.setdefault(value, j)
    return None


def prefix_sums(values):
    sums = [0]
    for value in values:
        sums.append(sums[-1] + value)
    return sums


def range_sum(sums, start, end):
    return sums[end] - sums[start]
