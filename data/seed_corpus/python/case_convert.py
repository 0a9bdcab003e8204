"""Convert identifiers between snake_case, camelCase, kebab-case and Title Case."""

import re

BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|[_\-\s]+")


def split_words(name):
    return [w.lower() for w in BOUNDARY.split(name) if w]


def to_snake(name):
    return "_".join(split_words(name))


def to_camel(name):
    words = split_words(name)
    if not words:
        return ""
    return words[0] + "".join(w.capitalize() for w in words[1:])


def to_kebab(name):
    return "-".join(split_words(name))


def to_title(name, small_words=("a", "an", "of", "the")):
    words = split_words(name)
    titled = []
    for i, word in enumerate(words):
        if i > 0 and word in small_words:
            titled.append(word)
        else:
            titled.append(word.capitalize())
    return " ".join(titled)
