"""Anagram checks and grouping."""


def letter_counts(word):
    counts = {}
    for char in word.lower():
        if char.isalpha():
            counts[char] = counts.get(char, 0) + 1
    return counts


def is_anagram(a, b):
    return letter_counts(a) == letter_counts(b)


def group_anagrams(words):
    """Groups in order of first appearance, words in input order."""
    groups = {}
    for word in words:
        key = "".join(sorted(word.lower()))
        groups.setdefault(key, []).append(word)
    return list(groups.values())
