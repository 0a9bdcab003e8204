"""Compare dotted version strings like 1.10.2 and 1.9 (missing parts count as 0, pre-releases sort first)."""


def parse_version(text):
    main, _, pre = text.strip().partition("-")
    if not main:
        raise ValueError(f"empty version {text!r}")
    parts = []
    for piece in main.split("."):
        if not piece.isdigit():
            raise ValueError(f"bad version part {piece!r} in {text!r}")
        parts.append(int(piece))
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return parts, pre


def compare_versions(a, b):
    """-1, 0 or 1 as a is older than, equal to or newer than b."""
    parts_a, pre_a = parse_version(a)
    parts_b, pre_b = parse_version(b)
    if parts_a != parts_b:
        return -1 if parts_a < parts_b else 1
    if pre_a == pre_b:
        return 0
    if not pre_a:
        return 1
    if not pre_b:
        return -1
    return -1 if pre_a < pre_b else 1


def latest(versions):
    best = None
    for version in versions:
        if best is None or compare_versions(version, best) > 0:
            best = version
    return best
