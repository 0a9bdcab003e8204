"""Seeded generator of conversations and tool schemas for the Harmony equivalence tests.

It aims at the corners of openai/harmony's renderer: nested and oneOf schemas, enums, titles, examples, defaults of
every JSON type (floats that print differently in Rust and Python included), Rust-style line splitting, parallel
tool calls, str and dict arguments, non-ASCII and empty strings, leading system/developer messages.
"""

from __future__ import annotations

import random
from typing import Any

TEXTS = [
    "",
    " ",
    "hello",
    "What is 2 + 2?",
    "  leading and trailing  ",
    "line one\nline two\n",
    "windows\r\nline\r\n",
    "lone\rcarriage",
    "tabs\tand\vvertical\fform",
    "unicode line\u2028separator",
    "naïve café — “quotes”",
    "中文字符和日本語のテキスト",
    "emoji 🚀🔥👍🏽 and 👨‍👩‍👧",
    "def f(x):\n    return x ** 2  # square\n",
    'fn main() { println!("{}", 1 + 1); }',
    '{"json": [1, 2.5, null, true]}',
    "<html><body>&amp;</body></html>",
    "<|not a token|> and <| half",
    "digits 1234567890 3.14159 -42",
    "don't won't it's they'll we've I'd",
    "control \x00\x01\x1f\x7f chars",
    "trailing backslash \\",
    "\n\n\n",
    "$ ls -la && cat README.md | head -n 5",
]
NAMES = ["get_weather", "run_shell", "read_file", "write_file", "search", "f", "tool_2", "a-b", "x.y", "UPPER"]
KEYS = ["path", "query", "n", "opts", "mode", "ünïcode", "with space", "items", "x", "nested", "flag", "k-1"]
DEFAULTS: list[Any] = [
    "plain",
    "",
    "quote\"inside",
    "ünï\ncode",
    0,
    -7,
    2**70,
    1.5,
    2.0,
    -0.0,
    1e20,
    1e16,
    1e15,
    1e-7,
    0.00001,
    0.0001,
    123456.789,
    1 / 3,
    True,
    False,
    None,
    [1, "a", None],
    {"k": [1.0, {"z": "é\t"}], "b": False},
]


def _text(rng: random.Random) -> str:
    return rng.choice(TEXTS)


def _nonempty_text(rng: random.Random) -> str:
    return rng.choice([t for t in TEXTS if t.strip()])


def random_schema(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    """A JSON schema node; objects and arrays nest up to depth 3."""
    kinds = ["string", "number", "integer", "boolean", "enum", "null", "typelist", "oneOf", "bare"]
    if depth < 3:
        kinds += ["object", "object", "array", "array_noitems"]
    kind = rng.choice(kinds)
    node: dict[str, Any]
    if kind == "enum":
        values = rng.choice([["a", "b", "c"], ["celsius", "fahrenheit"], ["x", 1, None], [1, 2], []])
        node = {"type": "string", "enum": values}
    elif kind == "typelist":
        node = {"type": rng.choice([["number", "string"], ["integer", "null"], [1, "boolean"], [3]])}
    elif kind == "oneOf":
        node = {"oneOf": [random_schema(rng, depth + 1) for _ in range(rng.randint(0, 3))]}
    elif kind == "bare":
        node = rng.choice(
            [
                {},
                {"type": "weird"},
                {"type": 5},
                {"oneOf": "not a list"},
                {"oneOf": None},
                {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                {"$ref": "#/$defs/Thing"},
                {"type": "string", "format": "date", "minLength": 1, "const": "x"},
            ]
        )
    elif kind == "object":
        node = random_object_schema(rng, depth + 1)
    elif kind == "array":
        node = {"type": "array", "items": random_schema(rng, depth + 1)}
    elif kind == "array_noitems":
        node = {"type": "array"}
    else:
        node = {"type": kind}
    if rng.random() < 0.4:
        node["description"] = rng.choice(TEXTS + ["a oneof", "numbers can happen too"])
    if rng.random() < 0.25:
        node["default"] = rng.choice(DEFAULTS)
    if rng.random() < 0.15:
        node["nullable"] = rng.choice([True, False, "yes"])
    if rng.random() < 0.1:
        node["title"] = rng.choice(["STRING", "Title é", 3])
    if rng.random() < 0.1:
        node["examples"] = rng.choice([["hello", "world"], [], [1, "one"]])
    return node


def random_object_schema(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    keys = rng.sample(KEYS, rng.randint(0, 4))
    properties = {}
    for key in keys:
        prop = random_schema(rng, depth)
        if rng.random() < 0.15:
            # A oneOf property whose description repeats its first variant's (harmony dedupes that).
            desc = rng.choice(["a oneof", "shared"])
            prop = {
                "oneOf": [{"type": "string", "description": desc}, random_schema(rng, depth + 1)],
                "description": desc,
            }
            if rng.random() < 0.5:
                prop["default"] = rng.choice(DEFAULTS)
        properties[key] = prop
    node: dict[str, Any] = {"type": "object", "properties": properties}
    if keys and rng.random() < 0.7:
        node["required"] = rng.sample(keys, rng.randint(0, len(keys))) + rng.choice([[], ["missing"], [1]])
    if rng.random() < 0.3:
        node["description"] = rng.choice(["params object", "", "multi\nline"])
    return node


def random_tools(rng: random.Random) -> list[dict[str, Any]] | None:
    if rng.random() < 0.25:
        return None
    tools = []
    for name in rng.sample(NAMES, rng.randint(0, 4)):
        parameters: Any = rng.choice(
            [
                None,
                {},
                {"type": "object", "properties": {}},
                random_object_schema(rng),
                random_object_schema(rng),
                random_object_schema(rng),
                {"oneOf": [random_object_schema(rng), {"type": "string"}]},
            ]
        )
        tool: dict[str, Any] = {"name": name, "description": rng.choice(TEXTS + ["d", "a\r\nb\rc\n\nd\n"])}
        if parameters is not None or rng.random() < 0.5:
            tool["parameters"] = parameters
        if rng.random() < 0.2:
            tool = {"type": "function", "function": tool}
        tools.append(tool)
    return tools


def random_arguments(rng: random.Random) -> dict[str, Any] | str:
    if rng.random() < 0.35:
        return rng.choice(['{"path": "src/main.rs"}', '{"a":1,"b":[true,null]}', "not json", "", "[1, 2]", "{}"])
    return {key: rng.choice(DEFAULTS + TEXTS) for key in rng.sample(KEYS, rng.randint(0, 3))}


def _assistant(rng: random.Random, *, calls: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    if rng.random() < 0.6:
        message["thinking"] = rng.choice(TEXTS)
    if calls:
        message["tool_calls"] = [
            {"name": rng.choice(NAMES), "arguments": random_arguments(rng)} for _ in range(rng.randint(1, 3))
        ]
        if rng.random() < 0.3:
            message["content"] = _text(rng)
    else:
        message["content"] = _text(rng)
    return message


def random_conversation(rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(messages, keyword arguments for encode_harmony_messages); the last message is an assistant message."""
    messages: list[dict[str, Any]] = []
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        messages.append({"role": rng.choice(["system", "developer"]), "content": _text(rng)})
    for turn in range(rng.randint(1, 3)):
        messages.append({"role": "user", "content": _text(rng)})
        last_turn = turn == 2 or rng.random() < 0.4
        for _step in range(rng.randint(0, 2)):
            call = _assistant(rng, calls=True)
            messages.append(call)
            for tool_call in call["tool_calls"]:
                messages.append({"role": "tool", "name": tool_call["name"], "content": _text(rng)})
        messages.append(_assistant(rng, calls=last_turn and rng.random() < 0.4))
        if last_turn:
            break
    kwargs: dict[str, Any] = {
        "tools": random_tools(rng),
        "reasoning_effort": rng.choice(["low", "medium", "high"]),
    }
    if rng.random() < 0.5:
        kwargs["developer_instructions"] = rng.choice(TEXTS)
    if rng.random() < 0.4:
        kwargs["conversation_start_date"] = rng.choice(["2025-06-28", "2021-01-01", ""])
    if rng.random() < 0.3:
        kwargs["knowledge_cutoff"] = rng.choice(["2021-01", "2024-06", "unknown"])
    return messages, kwargs
