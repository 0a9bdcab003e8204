"""Caesar and Vigenere ciphers over ASCII letters (other characters pass through)."""


def shift_letter(char, shift):
    if "a" <= char <= "z":
        base = ord("a")
    elif "A" <= char <= "Z":
        base = ord("A")
    else:
        return char
    return chr((ord(char) - base + shift) % 26 + base)


def caesar(text, shift):
    return "".join(shift_letter(c, shift) for c in text)


def vigenere(text, key, decrypt=False):
    if not key.isalpha():
        raise ValueError("key must be letters")
    out = []
    i = 0
    for char in text:
        if char.isalpha():
            shift = ord(key[i % len(key)].lower()) - ord("a")
            out.append(shift_letter(char, -shift if decrypt else shift))
            i += 1
        else:
            out.append(char)
    return "".join(out)
