"""Word frequencies: tokenise text and report the most common words."""

import re

WORD = re.compile(r"[a-z']+")
STOP_WORDS = frozenset({"the", "a", "an", "and", "of", "to"})


def tokenize(text):
    return [w.strip("'") for w in WORD.findall(text.lower()) if w.strip("'")]


def frequencies(text, skip_stop_words=False):
    counts = {}
    for word in tokenize(text):
        if skip_stop_words and word in STOP_WORDS:
            continue
        counts[word] = counts.get(word, 0) + 1
    return counts


def top_words(text, k, skip_stop_words=False):
    """The k most frequent words, ties broken alphabetically."""
    counts = frequencies(text, skip_stop_words)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ranked[:k]
