"""Read the fix a completion proposes, and whether the completion is well-formed Harmony.

    check = check_harmony_format(text)            # (ok, reason)
    fix = extract_fix(text)                       # ProposedFix(form="patch" | "file", content=...)

``text`` is what the model generated after ``<|start|>assistant``: zero or more finished messages
(``<|channel|>analysis<|message|>...<|end|><|start|>assistant``), then either a final answer
``<|channel|>final<|message|>...<|return|>`` or a call
``<|channel|>commentary to=functions.apply_patch <|constrain|>json<|message|>{"patch": "..."}<|call|>``.
Parsing goes through openai_harmony (``pipeline_lib.harmony.harmony_encoding``); when it refuses the text, the fix
is still looked for with a lenient regex so that format and correctness stay separate reward terms.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

from pipeline_lib.harmony import VALID_CHANNELS, harmony_encoding

PATCH_TOOL = "apply_patch"
PATCH_KEYS = ("patch", "diff")
TERMINALS = ("<|return|>", "<|call|>")
_FENCE = re.compile(r"^```[ \t]*([\w+#.-]*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_LENIENT_CALL = re.compile(r"to=functions\.(\w+)[^<]*(?:<\|constrain\|>\w+)?\s*<\|message\|>(.*?)(?:<\|call\|>|"
                           r"<\|end\|>|$)", re.S)
_LENIENT_FINAL = re.compile(r"<\|channel\|>final<\|message\|>(.*?)(?:<\|return\|>|<\|end\|>|$)", re.S)


class FixNotFound(ValueError):
    """The completion proposes no fix we can read (the message says why)."""


@dataclass(frozen=True)
class ProposedFix:
    form: str  # "patch": a unified diff; "file": the complete new content of the buggy file
    content: str


@dataclass(frozen=True)
class _Message:
    channel: str | None
    recipient: str | None
    content_type: str | None
    text: str


_SPECIAL = re.compile(r"(<\|[a-z_]+\|>)")
# Text between special tokens is encoded in pieces of this many characters. One long run without spaces (a
# degenerate "aaaa..." completion) is one pre-token for o200k's BPE, which is quadratic in it (10,000 chars: 3 s)
# and overflows tiktoken's stack near 1 MB (a pyo3 PanicException, a BaseException). Pieces decode to the same text,
# and the Harmony parser only needs the special tokens and the decoded text.
_PIECE_CHARS = 256


def harmony_tokens(text: str) -> list[int]:
    encoding = harmony_encoding()
    tokens: list[int] = []
    for i, part in enumerate(_SPECIAL.split(text)):
        pieces = [part] if i % 2 else [part[k:k + _PIECE_CHARS] for k in range(0, len(part), _PIECE_CHARS)]
        for piece in pieces:
            tokens += encoding.encode(piece, allowed_special="all")
    return tokens


class HarmonyParseError(ValueError):
    pass


# openai_harmony re-decodes the pending header at every token until <|message|> (quadratic: 1 MB without one took
# 26 s), so a header longer than this is refused before parsing; a real one is ~60 chars.
MAX_HEADER_CHARS = 512


@functools.lru_cache(maxsize=16)  # check_harmony_format and extract_fix parse the same text
def _parse(text: str) -> tuple[_Message, ...]:
    from openai_harmony import Role

    for start in [0] + [m.end() for m in re.finditer(re.escape("<|start|>"), text)]:
        end = text.find("<|message|>", start, start + MAX_HEADER_CHARS + len("<|message|>"))
        if end < 0:
            raise HarmonyParseError(f"no <|message|> within {MAX_HEADER_CHARS} chars of a message start ({start})")
    try:
        parsed = harmony_encoding().parse_messages_from_completion_tokens(harmony_tokens(text), Role.ASSISTANT,
                                                                          strict=True)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # HarmonyError, or a pyo3 PanicException (a BaseException) from the Rust side
        raise HarmonyParseError(f"{type(exc).__name__}: {exc}") from None
    out = []
    for message in parsed:
        if message.author.role != Role.ASSISTANT:
            raise HarmonyParseError(f"a {message.author.role.value} message inside the completion")
        body = "".join(getattr(part, "text", "") for part in message.content)
        out.append(_Message(message.channel, message.recipient, message.content_type, body))
    return tuple(out)


def check_harmony_format(text: str) -> tuple[bool, str | None]:
    """Well-formed: parses strictly, every message has a valid channel, exactly one terminal token, at the end:
    ``<|return|>`` after a final-channel answer or ``<|call|>`` after a JSON call to ``functions.*`` on commentary."""
    stripped = text.rstrip()
    terminal = next((t for t in TERMINALS if stripped.endswith(t)), None)
    if terminal is None:
        return False, "does not end with <|return|> or <|call|>"
    if sum(stripped.count(t) for t in TERMINALS) != 1:
        return False, "more than one <|return|>/<|call|>"
    try:
        messages = _parse(stripped)
    except HarmonyParseError as exc:
        return False, f"openai_harmony cannot parse it: {exc}"
    if not messages:
        return False, "no message"
    for message in messages:
        if message.channel not in VALID_CHANNELS:
            return False, f"invalid channel {message.channel!r}"
    last = messages[-1]
    if terminal == "<|return|>" and (last.channel != "final" or last.recipient not in (None, "all")):
        return False, "<|return|> must end a final-channel answer"
    if terminal == "<|call|>":
        if not (last.recipient or "").startswith("functions.") or last.channel != "commentary":
            return False, "<|call|> must end a commentary-channel call to functions.*"
        if "json" not in (last.content_type or ""):
            return False, "a call must declare <|constrain|>json"
    return True, None


def extract_fix(text: str) -> ProposedFix:
    """The fix in the last message: an apply_patch call (JSON ``patch``/``diff``) or one fenced block in a final."""
    try:
        messages = _parse(text.rstrip())
    except HarmonyParseError:  # malformed Harmony: the format term already says so; read the fix leniently
        messages = ()
    if messages:
        last = messages[-1]
        call = last.recipient.removeprefix("functions.") if last.recipient not in (None, "all") else None
        call_body, final_body = (last.text, None) if call else (None, last.text if last.channel == "final" else None)
    else:
        call, call_body, final_body = _lenient(text)
    if call is not None:
        if call != PATCH_TOOL:
            raise FixNotFound(f"the completion calls {call}, not {PATCH_TOOL}")
        return ProposedFix("patch", _patch_argument(call_body or ""))
    if final_body is None:
        raise FixNotFound("no final answer and no apply_patch call")
    return _fenced_fix(final_body)


def _lenient(text: str) -> tuple[str | None, str | None, str | None]:
    calls = list(_LENIENT_CALL.finditer(text))
    finals = list(_LENIENT_FINAL.finditer(text))
    if calls and (not finals or calls[-1].start() > finals[-1].start()):
        return calls[-1].group(1), calls[-1].group(2), None
    if finals:
        return None, None, finals[-1].group(1)
    return None, None, None


def _patch_argument(body: str) -> str:
    try:
        arguments = json.loads(body)
    except json.JSONDecodeError as exc:
        raise FixNotFound(f"apply_patch arguments are not JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise FixNotFound("apply_patch arguments are not a JSON object")
    for key in PATCH_KEYS:
        if isinstance(arguments.get(key), str):
            return arguments[key]
    raise FixNotFound(f"apply_patch arguments have no string 'patch' or 'diff' (keys: {sorted(arguments)})")


def _fenced_fix(body: str) -> ProposedFix:
    blocks = _FENCE.findall(body)
    if len(blocks) != 1:
        raise FixNotFound(f"the final answer has {len(blocks)} fenced code blocks, expected exactly 1")
    language, content = blocks[0]
    if language.lower() in ("diff", "patch", "udiff"):
        return ProposedFix("patch", content)
    return ProposedFix("file", content)
