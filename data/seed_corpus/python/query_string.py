"""Parse and build URL query strings (percent-decoding, + as space, repeated keys)."""

SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")


def unquote(text):
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char == "+":
            out.append(32)
        elif char == "%" and i + 2 < len(text) and all(c in "0123456789abcdefABCDEF" for c in text[i + 1:i + 3]):
            out.append(int(text[i + 1:i + 3], 16))
            i += 2
        else:
            out.extend(char.encode("utf-8"))
        i += 1
    return out.decode("utf-8")


def quote(text):
    return "".join(c if c in SAFE else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in text)


def parse_query(query):
    """{key: [values]} in order of appearance; a leading '?' is ignored."""
    result = {}
    for pair in query.lstrip("?").split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        result.setdefault(unquote(key), []).append(unquote(value))
    return result


def build_query(params):
    return "&".join(f"{quote(k)}={quote(v)}" for k, values in params.items() for v in values)
