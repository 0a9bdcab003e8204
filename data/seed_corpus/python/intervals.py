"""Merging and inserting closed integer intervals [start, end]."""


def merge_intervals(intervals):
    ordered = sorted(intervals)
    merged = []
    for start, end in ordered:
        if start > end:
            raise ValueError(f"bad interval {start, end}")
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [tuple(pair) for pair in merged]


def total_covered(intervals):
    return sum(end - start + 1 for start, end in merge_intervals(intervals))


def overlaps(a, b):
    return a[0] <= b[1] and b[0] <= a[1]
