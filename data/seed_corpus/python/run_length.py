"""Run-length encoding of strings: 'aaab' <-> '3a1b'."""


def encode(text):
    if not text:
        return ""
    parts = []
    current, count = text[0], 1
    for char in text[1:]:
        if char == current:
            count += 1
        else:
            parts.append(f"{count}{current}")
            current, count = char, 1
    parts.append(f"{count}{current}")
    return "".join(parts)


def decode(encoded):
    result = []
    digits = ""
    for char in encoded:
        if char.isdigit():
            digits += char
        else:
            if not digits:
                raise ValueError("missing count")
            result.append(char * int(digits))
            digits = ""
    if digits:
        raise ValueError("trailing count")
    return "".join(result)
