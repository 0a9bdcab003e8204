"""Bracket matching: balanced check and the position of the first error."""

PAIRS = {")": "(", "]": "[", "}": "{"}


def first_error(text):
    """Index of the first unmatched bracket, len(text) if one is left open, or -1 if balanced."""
    stack = []
    for i, char in enumerate(text):
        if char in "([{":
            stack.append(i)
        elif char in PAIRS:
            if not stack or text[stack[-1]] != PAIRS[char]:
                return i
            stack.pop()
    if stack:
        return len(text)
    return -1


def is_balanced(text):
    return first_error(text) == -1


def max_depth(text):
    depth = best = 0
    for char in text:
        if char in "([{":
            depth += 1
            best = max(best, depth)
        elif char in PAIRS:
            depth -= 1
    return best
