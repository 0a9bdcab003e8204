"""Row formatters: one upstream dataset row -> our conversation (message dicts + tools), or a counted skip.

Every formatter takes one raw row exactly as the dataset publishes it and returns a
``Conversation`` (tool calling, agent trajectories) or a ``PreferencePair`` (preferences). A row that cannot be
formatted raises ``SkipRow(reason)``; data prep counts the reasons. Rendering to Harmony text happens elsewhere
(pipeline_lib.harmony), so everything here is plain-Python and testable without a tokenizer.

Message dicts follow the project contract: {"role": user|assistant|tool, "content": str, "thinking": str (optional),
"tool_calls": [{"name": str, "arguments": dict}] (optional), "name": str (tool results)}.
"""

from __future__ import annotations

import ast
import difflib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

# Writeup §5, word for word: the developer instructions of every agent trajectory.
CODING_AGENT_DEV_PROMPT = (
    "You are a coding agent. Use tools to read files, write code, run tests, and "
    "complete programming tasks. Do not just analyze - always take action and produce "
    "working code. After making changes, verify they work by running the relevant tests. "
    "If a tool call fails, diagnose and retry with corrected parameters."
)
# Writeup §5: CodeFeedback's synthetic rejected answer = first 30% of the good answer + this stalling phrase.
STALLING_PHRASE = "I would need to analyze this further before proceeding."
REJECTED_FRACTION = 0.30
MAX_DIFF_CHARS = 8000  # writeup §5: commitpackft / EditPackFT diffs larger than this are dropped
MIN_CODEFEEDBACK_ANSWER_CHARS = 40  # 30% of less than this leaves a rejected answer of a few characters
# Harmony addresses a tool as "functions.NAME" in a header; a name with spaces, quotes or "<|" would break it.
TOOL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class SkipRow(Exception):  # noqa: N818 - a control-flow signal carrying the counted reason, not an error
    """Raised by a formatter for a row it cannot format; ``reason`` is the counter key in prep_report.json."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Conversation:
    messages: list[dict[str, Any]]
    developer_instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    reasoning_effort: str = "medium"


@dataclass
class PreferencePair:
    """A shared prompt conversation and two final answers for the assistant turn that follows it."""

    prompt: Conversation
    chosen: str
    rejected: str


# ----------------------------------------------------------------------------------------------- shared helpers


def _require_str(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise SkipRow("missing_field", key)
    return value


def _strict_json(text: str) -> Any:
    """json.loads that refuses NaN/Infinity (Python reads them, JSON does not; Glaive row 26684 has Infinity)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"non-JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _check_tool_names(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop exact duplicates; a name declared twice with two definitions is ambiguous (Glaive: 338 rows)."""
    unique: dict[str, dict[str, Any]] = {}
    for tool in tools:
        name = tool.get("name")
        if not isinstance(name, str) or not TOOL_NAME_RE.match(name):
            raise SkipRow("bad_tool_name", repr(name))
        if name in unique and unique[name] != tool:
            raise SkipRow("duplicate_tool_name", name)
        unique[name] = tool
    return list(unique.values())


def _tool(name: str, description: str, parameters: dict[str, Any] | None) -> dict[str, Any]:
    return {"name": name, "description": description or "", "parameters": parameters or {"type": "object",
                                                                                         "properties": {}}}


def _finish(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Checks every formatter shares: known roles, calls to declared tools, results after calls, ends on assistant.

    Trailing user/tool turns are trimmed (Glaive: 1,599 rows end on a USER turn) so the text ends with the model's
    own <|return|> or <|call|>.
    """
    declared = {t["name"] for t in tools or []}
    pending_calls: list[str] = []
    for message in messages:
        role = message["role"]
        if role not in ("user", "assistant", "tool"):
            raise SkipRow("unknown_role", role)
        if role == "assistant":
            calls = message.get("tool_calls") or []
            if not calls and not message.get("content", "").strip():
                raise SkipRow("empty_turn", "assistant")
            for call in calls:
                if call["name"] not in declared:
                    raise SkipRow("undeclared_function", call["name"])
                if isinstance(call["arguments"], str):  # a JSON-encoded object is the same call
                    try:
                        call["arguments"] = _strict_json(call["arguments"])
                    except ValueError:
                        raise SkipRow("arguments_not_json", call["name"]) from None
                if not isinstance(call["arguments"], dict):
                    raise SkipRow("arguments_not_object", call["name"])
            pending_calls = [c["name"] for c in calls]
        elif role == "tool":
            if message.get("name") not in pending_calls:
                raise SkipRow("response_without_call", str(message.get("name")))
        else:
            if not message["content"].strip():
                raise SkipRow("empty_turn", "user")
            pending_calls = []
    while messages and messages[-1]["role"] != "assistant":
        messages = messages[:-1]
    if not messages:
        raise SkipRow("no_assistant_turn")
    if not any(m["role"] == "user" for m in messages):
        raise SkipRow("no_user_turn")
    return messages


# ------------------------------------------------------------------------------------------------- Glaive v2

GLAIVE_TURN_RE = re.compile(r"(?:^|\n\n+)(USER|ASSISTANT|FUNCTION RESPONSE):[ ]?")
GLAIVE_END = "<|endoftext|>"
GLAIVE_CALL_RE = re.compile(r'^\{\s*"name"\s*:\s*"([^"]*)"\s*,\s*"arguments"\s*:\s*\'(.*)\'\s*\}$', re.DOTALL)


def _glaive_system(system: str) -> tuple[str | None, list[dict[str, Any]]]:
    """Split Glaive's system field into instructions and the JSON functions that follow the lead-in sentence."""
    text = system.removeprefix("SYSTEM:").strip()
    start = text.find("{")
    if start < 0:
        return (text or None), []
    lead, rest = text[:start].strip(), text[start:]
    decoder = json.JSONDecoder()
    tools, leftovers, pos = [], [], 0
    while pos < len(rest):
        if rest[pos].isspace():
            pos += 1
            continue
        if rest[pos] != "{":
            leftovers.append(rest[pos:].strip())
            break
        try:
            obj, pos = decoder.raw_decode(rest, pos)
        except json.JSONDecodeError as err:
            raise SkipRow("bad_tools_json", str(err)) from None
        if not isinstance(obj, dict) or "name" not in obj:
            raise SkipRow("bad_tools_json", "function without a name")
        tools.append(_tool(obj["name"], obj.get("description", ""), obj.get("parameters")))
    # The lead-in ends "Use them if required -" and points at the JSON that follows; Harmony lists the tools itself.
    instructions = "\n\n".join(p for p in [lead.rstrip(" -").rstrip(), *leftovers] if p)
    if instructions and not instructions.endswith((".", "!", "?")):
        instructions += "."
    return instructions or None, _check_tool_names(tools)


def _glaive_call(body: str) -> tuple[str, dict[str, Any]]:
    """Parse `{"name": "f", "arguments": '{...}'}` (single-quoted JSON text) or `{"name": "f", "arguments": {}}`."""
    body = body.strip()
    try:
        call = json.loads(body)
        if not isinstance(call, dict) or "name" not in call or "arguments" not in call:
            raise SkipRow("bad_call_syntax", body[:80])
        name, raw_args = call["name"], call["arguments"]
    except json.JSONDecodeError:
        match = GLAIVE_CALL_RE.match(body)
        if not match:
            raise SkipRow("bad_call_syntax", body[:80]) from None
        name, raw_args = match.group(1), match.group(2).replace("\\'", "'")  # row 71039: \' is not JSON
    if isinstance(raw_args, str):
        try:
            raw_args = _strict_json(raw_args)
        except ValueError:
            raise SkipRow("arguments_not_json", raw_args[:80]) from None
    if not isinstance(raw_args, dict):
        raise SkipRow("arguments_not_object", name)
    return name, raw_args


def format_glaive(row: dict[str, Any]) -> Conversation:
    instructions, tools = _glaive_system(_require_str(row, "system"))
    chat = _require_str(row, "chat")
    parts = GLAIVE_TURN_RE.split(chat)
    if parts[0].strip():
        raise SkipRow("bad_turn_marker", parts[0][:60])
    messages: list[dict[str, Any]] = []
    last_call: str | None = None
    for marker, raw in zip(parts[1::2], parts[2::2], strict=True):
        text = raw.rstrip()
        if marker == "ASSISTANT":
            text = text.removesuffix(GLAIVE_END).rstrip()
        if GLAIVE_END in text:
            raise SkipRow("stray_end_marker", marker)  # rows 9046, 44369: "<|endoftext|>" inside a turn
        if marker == "USER":
            messages.append({"role": "user", "content": text.strip()})
        elif marker == "FUNCTION RESPONSE":
            if last_call is None:
                raise SkipRow("response_without_call")  # e.g. row 17357's "AI to= name:" call syntax
            messages.append({"role": "tool", "name": last_call, "content": text.strip()})
            last_call = None
        else:
            if messages and messages[-1]["role"] == "assistant":
                raise SkipRow("consecutive_assistant_turns")  # rows 2289, 111754
            before, sep, call_text = text.partition("<functioncall>")
            message: dict[str, Any] = {"role": "assistant", "content": before.strip()}
            last_call = None
            if sep:
                name, arguments = _glaive_call(call_text)
                message["tool_calls"] = [{"name": name, "arguments": arguments}]
                last_call = name
            messages.append(message)
    return Conversation(_finish(messages, tools), developer_instructions=instructions, tools=tools or None)


# ---------------------------------------------------------------------------------------------------- xLAM

XLAM_TYPES = {"str": "string", "string": "string", "int": "integer", "integer": "integer", "float": "number",
              "number": "number", "bool": "boolean", "boolean": "boolean", "list": "array", "tuple": "array",
              "set": "array", "dict": "object", "object": "object"}


def python_type_to_schema(type_text: str) -> tuple[dict[str, Any], bool]:
    """xLAM's Python-style type string -> (JSON-schema fragment, optional?).

    "str, optional" / "Optional[int]" are optional; "List[int]" -> array of integer; types JSON-schema cannot name
    (Any, Union[...], Callable) get no "type" key, which Harmony renders as `any`.
    """
    text = type_text.strip()
    optional = False
    if text.lower().endswith(", optional"):
        text, optional = text[: -len(", optional")].strip(), True
    match = re.fullmatch(r"Optional\[(.*)\]", text)
    if match:
        text, optional = match.group(1).strip(), True
    match = re.fullmatch(r"(?i)(list|tuple|set|sequence)\[(.*)\]", text)
    if match:
        inner = match.group(2).split(",")[0] if match.group(1).lower() == "tuple" else match.group(2)
        items, _ = python_type_to_schema(inner)
        return ({"type": "array", "items": items} if items else {"type": "array"}), optional
    if re.fullmatch(r"(?i)(dict|mapping)\[.*\]", text):
        return {"type": "object"}, optional
    json_type = XLAM_TYPES.get(text.lower())
    return ({"type": json_type} if json_type else {}), optional


def _xlam_tool(raw: dict[str, Any]) -> dict[str, Any]:
    params = raw.get("parameters") or {}
    if not isinstance(params, dict):
        raise SkipRow("bad_tools_json", "parameters is not an object")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for pname, spec in params.items():
        if not isinstance(spec, dict):
            raise SkipRow("bad_tools_json", f"parameter {pname}")
        schema, optional = python_type_to_schema(str(spec.get("type", "")))
        if spec.get("description"):
            schema["description"] = spec["description"]
        if optional and spec.get("default") not in (None, ""):
            schema["default"] = spec["default"]
        properties[pname] = schema
        if not optional:
            required.append(pname)
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    return _tool(raw.get("name"), raw.get("description", ""), parameters)


def format_xlam(row: dict[str, Any]) -> Conversation:
    query = _require_str(row, "query").strip()
    try:
        raw_tools, answers = _strict_json(_require_str(row, "tools")), _strict_json(_require_str(row, "answers"))
    except ValueError:
        raise SkipRow("bad_tools_json", "tools/answers are not JSON") from None
    if not isinstance(raw_tools, list) or not all(isinstance(t, dict) for t in raw_tools):
        raise SkipRow("bad_tools_json", "tools is not a list of objects")
    if not isinstance(answers, list) or not answers:
        raise SkipRow("empty_answer")
    tools = _check_tool_names([_xlam_tool(t) for t in raw_tools])
    calls = []
    for answer in answers:
        if not isinstance(answer, dict) or not isinstance(answer.get("name"), str):
            raise SkipRow("bad_call_syntax", str(answer)[:80])
        calls.append({"name": answer["name"], "arguments": answer.get("arguments", {})})
    messages = [{"role": "user", "content": query}, {"role": "assistant", "content": "", "tool_calls": calls}]
    return Conversation(_finish(messages, tools), tools=tools)


# -------------------------------------------------------------------------------------------------- Hermes

HERMES_ROLES = {"system": "system", "human": "user", "gpt": "assistant", "tool": "tool"}
# The list itself, not the prompt's own mention "within <tools> </tools> XML tags" (card row 753d8365).
HERMES_TOOLS_RE = re.compile(r"<tools>\s*(\[.*?\])\s*</tools>", re.DOTALL)
HERMES_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
HERMES_RESPONSE_RE = re.compile(r"<tool_response>(.*?)</tool_response>", re.DOTALL)
# The XML-format sentences of Hermes' system prompt describe <tools>/<tool_call> tags that Harmony replaces.
HERMES_TAG_PHRASE_RE = re.compile(r"\s*(?:within|in)\s+(?:XML tags\s+)?<tools>\s*</tools>(?:\s+XML tags)?")
HERMES_FORMAT_TAIL_RE = re.compile(r"\n(?:For each|Use the following|Each function call).*\Z", re.DOTALL)


def _python_or_json(text: str) -> Any:
    """Hermes writes calls and tool lists as Python reprs (single quotes, True/False) as often as JSON."""
    text = text.strip()
    if text.startswith("\\n"):  # card row afba1f0c: a literal backslash-n after the tag
        text = text[2:]
    if text.endswith("\\n"):
        text = text[:-2]
    try:
        return _strict_json(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise SkipRow("arguments_not_json", text[:80]) from None


def _hermes_system(system: str) -> tuple[str | None, list[dict[str, Any]]]:
    match = HERMES_TOOLS_RE.search(system)
    if not match:
        return system.strip() or None, []  # json_mode rows: the schema instructions stay as they are
    raw = _python_or_json(match.group(1))
    if not isinstance(raw, list):
        raise SkipRow("bad_tools_json", "<tools> is not a list")
    tools = []
    for item in raw:
        fn = item.get("function", item) if isinstance(item, dict) else None
        if not isinstance(fn, dict):
            raise SkipRow("bad_tools_json", "tool is not an object")
        tools.append(_tool(fn.get("name"), fn.get("description", ""), fn.get("parameters")))
    lead = HERMES_TAG_PHRASE_RE.sub("", system[: match.start()]).strip()
    tail = HERMES_FORMAT_TAIL_RE.sub("", system[match.end():]).strip()
    instructions = "\n\n".join(p for p in (lead, tail) if p)
    return instructions or None, _check_tool_names(tools)


def _hermes_assistant(value: str) -> dict[str, Any]:
    calls = []
    for block in HERMES_CALL_RE.findall(value):
        call = _python_or_json(block)
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise SkipRow("bad_call_syntax", "tool call without a name")  # card row afba1f0c
        calls.append({"name": call["name"], "arguments": call.get("arguments", {})})
    text = HERMES_CALL_RE.sub("", value).strip()
    if "<tool_call>" in text:
        raise SkipRow("bad_call_syntax", "unclosed <tool_call>")
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = calls
    return message


def _hermes_tool_results(value: str) -> list[dict[str, Any]]:
    blocks = HERMES_RESPONSE_RE.findall(value)
    if not blocks:
        raise SkipRow("bad_tool_response", value[:80])
    results = []
    for block in blocks:
        response = _python_or_json(block)
        if not isinstance(response, dict) or not isinstance(response.get("name"), str):
            raise SkipRow("bad_tool_response", block[:80])
        content = response.get("content")
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        results.append({"role": "tool", "name": response["name"], "content": text})
    return results


def format_hermes(row: dict[str, Any]) -> Conversation:
    """func_calling* rows -> tool calls; json_mode* rows -> a plain chat whose instructions carry the schema."""
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise SkipRow("missing_field", "conversations")
    instructions, tools = None, []
    messages: list[dict[str, Any]] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise SkipRow("missing_field", f"conversations[{i}].value")
        role = HERMES_ROLES.get(turn.get("from"))
        if role is None:
            raise SkipRow("unknown_role", str(turn.get("from")))
        if role == "system":
            if i != 0:
                raise SkipRow("bad_turn_order", "system turn after the first")
            instructions, tools = _hermes_system(turn["value"])
        elif role == "user":
            messages.append({"role": "user", "content": turn["value"].strip()})
        elif role == "assistant":
            messages.append(_hermes_assistant(turn["value"]))
        else:
            messages.extend(_hermes_tool_results(turn["value"]))
    return Conversation(_finish(messages, tools), developer_instructions=instructions, tools=tools or None)


# ------------------------------------------------------------------------------------------------ code-act

EXECUTE_RE = re.compile(r"<execute>(.*?)<\\?/execute>", re.DOTALL)  # <\/execute>: JSON-escaped copies exist
SOLUTION_RE = re.compile(r"<solution>(.*?)<\\?/solution>", re.DOTALL)
CODEACT_TOOL = _tool(
    "execute_ipython",
    "Run Python code in a persistent IPython session and return its output (stdout, the last value, or the error).",
    {"type": "object", "properties": {"code": {"type": "string", "description": "Python code to execute."}},
     "required": ["code"]},
)
MINT_TOOL_SECTION_RE = re.compile(r"\n\s*Tool function available.*\Z", re.DOTALL)


def format_code_act(row: dict[str, Any]) -> Conversation:
    """<execute> blocks become execute_ipython calls; the user turn after one (MINT observation) is its result."""
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise SkipRow("missing_field", "conversations")
    instructions = [CODING_AGENT_DEV_PROMPT]
    uses_tool = False
    messages: list[dict[str, Any]] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            raise SkipRow("missing_field", f"conversations[{i}].content")
        role, content = turn.get("role"), turn["content"]
        if role == "system":
            if i != 0:
                raise SkipRow("bad_turn_order", "system turn after the first")
            if "<execute>" in content:
                # MINT's prompt describes the <execute>/<solution> protocol that real tool calls replace; its
                # "Tool function available" list (helpers importable inside the session) is still true.
                extra = MINT_TOOL_SECTION_RE.search(content)
                if extra:
                    instructions.append(extra.group(0).strip())
            elif content.strip():
                instructions.append(content.strip())
        elif role == "user":
            if messages and messages[-1].get("tool_calls"):
                messages.append({"role": "tool", "name": CODEACT_TOOL["name"], "content": content.strip()})
                uses_tool = True
            else:
                messages.append({"role": "user", "content": content.strip()})
        elif role == "assistant":
            messages.append(_code_act_assistant(content))
        else:
            raise SkipRow("unknown_role", str(role))
    tools = [CODEACT_TOOL] if uses_tool or any(m.get("tool_calls") for m in messages) else None
    return Conversation(_finish(messages, tools), developer_instructions="\n\n".join(instructions), tools=tools,
                        reasoning_effort="high")


def _code_act_assistant(content: str) -> dict[str, Any]:
    blocks = EXECUTE_RE.findall(content)
    if len(blocks) > 1:
        raise SkipRow("multiple_execute_blocks")  # one observation follows; which block produced it is unknown
    if "<execute>" in content and not blocks:
        raise SkipRow("unclosed_execute")
    text = SOLUTION_RE.sub(lambda m: m.group(1).strip(), content)
    if blocks:
        before = EXECUTE_RE.split(text)[0].strip()
        message: dict[str, Any] = {"role": "assistant", "content": "",
                                   "tool_calls": [{"name": CODEACT_TOOL["name"],
                                                   "arguments": {"code": blocks[0].strip("\n")}}]}
        if before:
            message["thinking"] = before
        if not blocks[0].strip():
            raise SkipRow("empty_turn", "empty <execute> block")
        return message
    return {"role": "assistant", "content": text.strip()}


# ------------------------------------------------------------------------------ commitpackft / EditPackFT

EDIT_TOOLS = [
    _tool("read_file", "Read a file of the repository and return its full contents.",
          {"type": "object", "properties": {"path": {"type": "string", "description": "Path from the repo root."}},
           "required": ["path"]}),
    _tool("apply_patch", "Apply a unified diff to the repository.",
          {"type": "object", "properties": {"patch": {"type": "string", "description": "A unified diff."}},
           "required": ["patch"]}),
    _tool("run_command", "Run a shell command in the repository root and return its output.",
          {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}),
]


def unified_diff(old: str, new: str, old_path: str, new_path: str) -> str:
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"a/{old_path}", tofile=f"b/{new_path}")
    # A last line without "\n" would glue itself to the next hunk line; git prints this marker instead.
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def diff_stat(diff: str, path: str) -> str:
    """What `git diff --stat` prints for a one-file diff (computed here, so the trajectory's check step is true)."""
    lines = diff.splitlines()
    added = sum(1 for ln in lines if ln.startswith("+") and not ln.startswith("+++"))
    removed = sum(1 for ln in lines if ln.startswith("-") and not ln.startswith("---"))
    summary = [" 1 file changed"]
    if added:
        summary.append(f"{added} insertion{'s' if added != 1 else ''}(+)")
    if removed:
        summary.append(f"{removed} deletion{'s' if removed != 1 else ''}(-)")
    # git scales the +/- bar to the terminal width; 40 columns keeps long diffs readable
    return f" {path} | {added + removed} {'+' * min(added, 40)}{'-' * min(removed, 40)}\n" + ", ".join(summary)


def edit_trajectory(old_path: str, new_path: str, old: str, new: str, task: str, summary: str) -> Conversation:
    """read_file -> apply_patch (unified diff) -> run_command `git diff --stat` -> final summary."""
    if old == new:
        raise SkipRow("no_change")
    if "\x00" in old or "\x00" in new:
        raise SkipRow("binary_content")
    diff = unified_diff(old, new, old_path, new_path)
    if len(diff) > MAX_DIFF_CHARS:
        raise SkipRow("diff_too_large", f"{len(diff)} chars")
    messages: list[dict[str, Any]] = [{"role": "user", "content": task}]
    if old:
        messages += [
            {"role": "assistant", "content": "",
             "tool_calls": [{"name": "read_file", "arguments": {"path": old_path}}]},
            {"role": "tool", "name": "read_file", "content": old},
        ]
    messages += [
        {"role": "assistant", "content": "", "tool_calls": [{"name": "apply_patch", "arguments": {"patch": diff}}]},
        {"role": "tool", "name": "apply_patch", "content": f"Patch applied to {new_path}."},
        {"role": "assistant", "content": "",
         "tool_calls": [{"name": "run_command", "arguments": {"command": "git diff --stat"}}]},
        {"role": "tool", "name": "run_command", "content": diff_stat(diff, new_path)},
        {"role": "assistant", "content": summary},
    ]
    return Conversation(_finish(messages, EDIT_TOOLS), developer_instructions=CODING_AGENT_DEV_PROMPT,
                        tools=EDIT_TOOLS, reasoning_effort="medium")


def _commit_fields(row: dict[str, Any]) -> tuple[str, str, str, str, str, str]:
    old_path, new_path = _require_str(row, "old_file"), _require_str(row, "new_file")
    old, new = _require_str(row, "old_contents"), _require_str(row, "new_contents")
    subject = (row.get("subject") or "").strip()
    message = (row.get("message") or "").strip()
    if not subject and message:
        subject = message.splitlines()[0].strip()
    if not subject:
        raise SkipRow("empty_message")
    if not new_path.strip():
        raise SkipRow("missing_field", "new_file")
    return old_path, new_path, old, new, subject, message


def _summary(path: str, subject: str, message: str) -> str:
    body = message[len(subject):].strip() if message.startswith(subject) else message.strip()
    summary = f"Updated `{path}`: {subject.rstrip('.')}."
    return f"{summary}\n\n{body}" if body and body != subject else summary


def format_commitpackft(row: dict[str, Any]) -> Conversation:
    old_path, new_path, old, new, subject, message = _commit_fields(row)
    task = f"Make this change in `{new_path}`:\n\n{message or subject}"
    return edit_trajectory(old_path, new_path, old, new, task, _summary(new_path, subject, message))


def format_editpackft(row: dict[str, Any]) -> Conversation:
    old_path, new_path, old, new, subject, message = _commit_fields(row)
    instruction = (row.get("instruction") or "").strip() or message or subject
    task = f"{instruction}\n\nThe file to edit is `{new_path}`."
    return edit_trajectory(old_path, new_path, old, new, task, _summary(new_path, subject, message))


# ---------------------------------------------------------------------------------------------- preferences

HH_TURN_RE = re.compile(r"\n\n(Human|Assistant):")


def _hh_turns(transcript: str) -> list[tuple[str, str]]:
    """Split on "\\n\\nHuman:" / "\\n\\nAssistant:" only; a bare "Human:" inside a turn stays text (rows 29, 1254)."""
    parts = HH_TURN_RE.split(transcript)
    if parts[0].strip():
        raise SkipRow("bad_turn_marker", parts[0][:60])
    pairs = zip(parts[1::2], parts[2::2], strict=True)
    turns = [("user" if who == "Human" else "assistant", text.strip()) for who, text in pairs]
    for i, (role, _) in enumerate(turns):
        if role != ("user" if i % 2 == 0 else "assistant"):
            raise SkipRow("bad_turn_order")
    if not turns or turns[-1][0] != "assistant":
        raise SkipRow("no_assistant_turn")
    return turns


def format_hh_rlhf(row: dict[str, Any]) -> PreferencePair:
    chosen, rejected = _hh_turns(_require_str(row, "chosen")), _hh_turns(_require_str(row, "rejected"))
    if chosen[:-1] != rejected[:-1]:
        raise SkipRow("prefix_mismatch")  # rows 1254, 1688, ...: the transcripts diverge before the last turn
    if not chosen[-1][1]:
        raise SkipRow("empty_chosen")  # row 86
    if not rejected[-1][1]:
        raise SkipRow("empty_rejected")
    if chosen[-1][1] == rejected[-1][1]:
        raise SkipRow("identical_pair")
    prompt = [{"role": role, "content": text} for role, text in chosen[:-1]]
    if any(not m["content"] for m in prompt):
        raise SkipRow("empty_turn", "prompt")
    return PreferencePair(Conversation(prompt), chosen=chosen[-1][1], rejected=rejected[-1][1])


def stalling_rejection(answer: str) -> str:
    """First 30% of the answer (cut back to a word boundary) + the writeup's stalling phrase."""
    cut = answer[: math.ceil(len(answer) * REJECTED_FRACTION)]
    if " " in cut.strip():
        cut = cut[: cut.rstrip().rfind(" ")]
    return f"{cut.rstrip()} {STALLING_PHRASE}"


def format_code_feedback(row: dict[str, Any]) -> PreferencePair:
    query, answer = _require_str(row, "query").strip(), _require_str(row, "answer").strip()
    if not query:
        raise SkipRow("empty_turn", "query")
    if not answer:
        raise SkipRow("empty_answer")
    if len(answer) < MIN_CODEFEEDBACK_ANSWER_CHARS:
        raise SkipRow("answer_too_short")
    return PreferencePair(Conversation([{"role": "user", "content": query}]), chosen=answer,
                          rejected=stalling_rejection(answer))


FORMATTERS = {
    "glaive": format_glaive,
    "xlam": format_xlam,
    "hermes": format_hermes,
    "code_act": format_code_act,
    "commitpackft": format_commitpackft,
    "editpackft": format_editpackft,
    "hh_rlhf": format_hh_rlhf,
    "code_feedback": format_code_feedback,
}
