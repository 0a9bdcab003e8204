"""Harmony (gpt-oss) rendering and parsing for the pipeline's message dicts.

    from pipeline_lib.harmony import encode_harmony_messages, parse_harmony_completion
    text = encode_harmony_messages(messages, tools=tools, developer_instructions="Be terse.")

Message dicts (the project-wide contract):
    {"role": "user", "content": str}
    {"role": "assistant", "content": str, "thinking": str (optional analysis),
     "tool_calls": [{"name": str, "arguments": dict | str}] (optional)}
    {"role": "tool", "name": str (the function called), "content": str}
    {"role": "system" | "developer", "content": str}  (only before the first user/assistant/tool message)
Tools: [{"name", "description", "parameters" (JSON schema)}]; OpenAI's {"type": "function", "function": {...}}
wrapper is unwrapped.

Normalisation, applied identically before both backends:
- Leading system/developer messages are joined (in order, after ``developer_instructions``, blank line between)
  into the developer message's "# Instructions", the way gpt-oss's chat template treats a system prompt. The
  Harmony system message is always generated (model identity, knowledge cutoff, optional current date, reasoning
  effort). A system/developer message after the conversation started raises ValueError.
- A tool whose parameters are missing or an object schema without properties renders as ``() => any`` (what
  gpt-oss's chat template does; openai_harmony would write ``(_: {\\n})`` or ``(_: any)``). ``tools=[]`` == None.
- "arguments" given as a dict is serialised with ``json.dumps(arguments, ensure_ascii=False)`` (the separators
  ``", "``/``": "`` that openai_harmony's own examples and gpt-oss's chat template use); a str is used verbatim.
- Empty ``thinking`` or empty instructions count as absent.
- Text that contains a Harmony special-token literal (e.g. "<|end|>") raises ValueError: the HF tokenizer would
  read it as the control token and corrupt the structure of the rendered conversation.

Training render rule (``encode_harmony_messages``): the trained turn is every message after the last user message.
Assistant ``thinking`` before it (earlier, finished turns) is dropped; the trained turn keeps all of its analysis,
including analysis between tool calls. The last message must be an assistant message; the text ends with
``<|return|>`` (final answer) or ``<|call|>`` (tool call). openai_harmony's own default drops every analysis message
before the first final when the conversation ends in a final, so the openai_harmony backend removes earlier-turn
analysis itself and renders with ``RenderConversationConfig(auto_drop_analysis=False)``.

Token layout of one rendered conversation (each ``<|x|>`` is one special token, the rest is ordinary BPE text):
    <|start|>system<|message|>{identity}\\nKnowledge cutoff: {cutoff}[\\nCurrent date: {date}]\\n\\n
        Reasoning: {effort}\\n\\n# Valid channels: analysis, commentary, final. Channel must be included for every
        message.[\\nCalls to these tools must go to the commentary channel: 'functions'.]<|end|>
    [<|start|>developer<|message|>[# Instructions\\n\\n{instructions}][\\n\\n]
        [# Tools\\n\\n## functions\\n\\nnamespace functions {\\n\\n// {description}\\ntype NAME = (_: {...}) => any;
        \\n\\n} // namespace functions]<|end|>]
    user:            <|start|>user<|message|>{content}<|end|>
    tool result:     <|start|>functions.NAME to=assistant<|channel|>commentary<|message|>{content}<|end|>
    assistant, per message dict, in this order:
      thinking       <|start|>assistant<|channel|>analysis<|message|>{thinking}<|end|>
      content        <|start|>assistant<|channel|>final<|message|>{content}<|end|>   (no tool_calls)
                     <|start|>assistant<|channel|>commentary<|message|>{content}<|end|> (preamble, with tool_calls,
                     only if non-empty)
      each call      <|start|>assistant to=functions.NAME<|channel|>commentary <|constrain|>json<|message|>{args}
                     <|call|>
    The last message's <|end|> becomes <|return|> when it is a final answer; a call already ends with <|call|>.
Assistant-generated tokens (what a loss mask trains on) are, in the trained turn, everything after each
``<|start|>`` that opens an assistant message (``assistant...<|message|>...`` up to and including its
``<|end|>``/``<|call|>``/``<|return|>``). ``render_training_prompt_and_completion`` splits the text right after
the trained turn's first ``<|start|>assistant``, which is where generation starts at inference.

Parsing (``parse_harmony_completion``, ``parse_harmony_conversation``) goes through openai_harmony's
``parse_messages_from_completion_tokens`` and groups consecutive assistant messages back into one dict
(analysis -> preamble -> calls, or analysis -> final). ``training_view_messages`` gives the source conversation the
way the parser will return it (the round-trip reference for data prep).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Backend = Literal["auto", "openai_harmony", "manual"]
REASONING_EFFORTS = ("low", "medium", "high")
# openai_harmony 0.0.8 SystemContent defaults (and gpt-oss's chat template's).
DEFAULT_MODEL_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
DEFAULT_KNOWLEDGE_CUTOFF = "2024-06"
VALID_CHANNELS = ("analysis", "commentary", "final")
FUNCTIONS_NAMESPACE = "functions"
CONSTRAIN_JSON = "<|constrain|>json"
# Control-token literals the GPT-OSS tokenizer would read as one special token (ids 199998-200018 and Harmony's
# names for the reserved range).
_SPECIAL_LITERAL = re.compile(
    r"<\|(?:start|end|message|channel|constrain|return|call|startoftext|endoftext|endofprompt|reserved_\d+)\|>"
)
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")

Message = dict[str, Any]


@dataclass(frozen=True)
class _Part:
    """One Harmony message (header + text) of the plan both backends render."""

    role: str  # user | assistant | tool
    text: str
    name: str | None = None  # tool author, "functions.NAME"
    recipient: str | None = None
    channel: str | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class _Plan:
    reasoning_effort: str
    knowledge_cutoff: str
    conversation_start_date: str | None
    instructions: str | None
    tools: list[dict[str, Any]]
    parts: list[_Part]


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------


def encode_harmony_messages(
    messages: Sequence[Message],
    *,
    developer_instructions: str | None = None,
    tools: Sequence[dict[str, Any]] | None = None,
    reasoning_effort: str = "medium",
    backend: Backend = "auto",
    conversation_start_date: str | None = None,
    knowledge_cutoff: str = DEFAULT_KNOWLEDGE_CUTOFF,
) -> str:
    """Render a training conversation (last message: assistant) as Harmony text ending in <|return|> or <|call|>."""
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("the last message of a training conversation must be an assistant message")
    plan = _plan(messages, developer_instructions, tools, reasoning_effort, conversation_start_date, knowledge_cutoff)
    if _resolve_backend(backend) == "manual":
        text = _render_manual(plan)
        if plan.parts[-1].channel == "final":
            text = text[: -len("<|end|>")] + "<|return|>"
        return text
    return _render_openai_harmony(plan, for_completion=False)


def encode_harmony_prompt(
    messages: Sequence[Message],
    *,
    developer_instructions: str | None = None,
    tools: Sequence[dict[str, Any]] | None = None,
    reasoning_effort: str = "medium",
    backend: Backend = "auto",
    conversation_start_date: str | None = None,
    knowledge_cutoff: str = DEFAULT_KNOWLEDGE_CUTOFF,
) -> str:
    """Render a conversation for generation: the same rule, ending with ``<|start|>assistant``."""
    plan = _plan(messages, developer_instructions, tools, reasoning_effort, conversation_start_date, knowledge_cutoff)
    if _resolve_backend(backend) == "manual":
        return _render_manual(plan) + "<|start|>assistant"
    return _render_openai_harmony(plan, for_completion=True)


def render_training_prompt_and_completion(
    messages: Sequence[Message],
    *,
    developer_instructions: str | None = None,
    tools: Sequence[dict[str, Any]] | None = None,
    reasoning_effort: str = "medium",
    backend: Backend = "auto",
    conversation_start_date: str | None = None,
    knowledge_cutoff: str = DEFAULT_KNOWLEDGE_CUTOFF,
) -> tuple[str, str]:
    """Split the training text into (prompt ending ``<|start|>assistant``, completion of the trained turn).

    prompt + completion == encode_harmony_messages(...); the completion starts with ``<|channel|>`` (or `` to=``
    when the turn opens with a tool call) and holds the whole trained turn (analysis, tool calls and results).
    """
    kwargs: dict[str, Any] = dict(
        developer_instructions=developer_instructions,
        tools=tools,
        reasoning_effort=reasoning_effort,
        backend=backend,
        conversation_start_date=conversation_start_date,
        knowledge_cutoff=knowledge_cutoff,
    )
    full = encode_harmony_messages(messages, **kwargs)
    first = _trained_turn_start(messages)
    while first < len(messages) and messages[first].get("role") != "assistant":
        first += 1
    prompt = encode_harmony_prompt(messages[:first], **kwargs)
    if not full.startswith(prompt):
        raise RuntimeError("prompt render is not a prefix of the training render (drop rule mismatch)")
    return prompt, full[len(prompt) :]


def training_view_messages(messages: Sequence[Message]) -> list[Message]:
    """The conversation as the parsers return it after a render: the round-trip reference.

    Leading system/developer messages removed (they live in the developer message), earlier-turn thinking
    dropped, empty thinking removed, assistant content defaulted to "", arguments canonicalised like the parser
    does (a JSON object becomes a dict, anything else stays the exact string rendered).
    """
    body = messages[_leading_header_count(messages) :]
    trained_from = _trained_turn_start(body)
    out: list[Message] = []
    for index, message in enumerate(body):
        role = message.get("role")
        if role == "user":
            out.append({"role": "user", "content": message["content"]})
        elif role == "tool":
            out.append({"role": "tool", "name": message["name"], "content": message["content"]})
        else:
            view: Message = {"role": "assistant", "content": message.get("content") or ""}
            if message.get("thinking") and index >= trained_from:
                view["thinking"] = message["thinking"]
            if message.get("tool_calls"):
                view["tool_calls"] = [
                    {"name": call["name"], "arguments": _parse_arguments(_serialize_arguments(call["arguments"]))}
                    for call in message["tool_calls"]
                ]
            out.append(view)
    return out


def parse_harmony_completion(
    text_or_tokens: str | Sequence[int], role: str | None = "assistant", *, strict: bool = True
) -> list[Message]:
    """Parse model output (what follows ``<|start|>assistant``) into message dicts via openai_harmony.

    ``role`` is the role whose header was already emitted (openai_harmony's ``Role.ASSISTANT`` works too); None
    parses text that starts with ``<|start|>``. Tool-call arguments come back as a dict when they are a JSON object,
    otherwise as the raw string the model wrote.
    """
    from openai_harmony import Role

    encoding = harmony_encoding()
    tokens = _tokens(text_or_tokens)
    parsed_role = None if role is None else Role(str(getattr(role, "value", role)))
    harmony_messages = encoding.parse_messages_from_completion_tokens(tokens, parsed_role, strict=strict)
    return _to_message_dicts(harmony_messages)


def parse_harmony_conversation(text_or_tokens: str | Sequence[int], *, strict: bool = True) -> list[Message]:
    """Parse a whole rendered conversation (starting ``<|start|>system``) back into message dicts.

    The system and developer messages are skipped (their content is generated, see the module docstring); the
    result compares equal to ``training_view_messages(source)``.
    """
    return parse_harmony_completion(text_or_tokens, role=None, strict=strict)


@functools.lru_cache(maxsize=1)
def harmony_encoding():
    """openai_harmony's HARMONY_GPT_OSS encoding, loaded from the verified offline o200k vocab."""
    from pipeline_lib.vocab import configure_offline_harmony

    configure_offline_harmony()
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)


# --------------------------------------------------------------------------------------------------------------
# Plan: validation, normalisation and the drop rule, shared by both backends
# --------------------------------------------------------------------------------------------------------------


def _resolve_backend(backend: str) -> str:
    if backend not in ("auto", "openai_harmony", "manual"):
        raise ValueError(f"backend must be auto, openai_harmony or manual, got {backend!r}")
    if backend == "auto":
        try:
            import openai_harmony  # noqa: F401
        except ImportError:
            return "manual"
        return "openai_harmony"
    return backend


def _leading_header_count(messages: Sequence[Message]) -> int:
    count = 0
    while count < len(messages) and messages[count].get("role") in ("system", "developer"):
        count += 1
    return count


def _trained_turn_start(messages: Sequence[Message]) -> int:
    """Index of the first message after the last user message (0 when there is no user message)."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index + 1
    return 0


def _check_text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a str, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{where} is not valid Unicode text (lone surrogate at {exc.start})") from exc
    match = _SPECIAL_LITERAL.search(value)
    if match:
        raise ValueError(f"{where} contains the Harmony control token {match.group()!r}")
    return value


def _check_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _TOOL_NAME.match(value):
        raise ValueError(f"{where} must be a tool name matching {_TOOL_NAME.pattern}, got {value!r}")
    return value


def _serialize_arguments(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    if isinstance(arguments, dict):
        return json.dumps(arguments, ensure_ascii=False)
    raise ValueError(f"tool call arguments must be a dict or a str, got {type(arguments).__name__}")


def _parse_arguments(text: str) -> dict[str, Any] | str:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


def _normalize_tools(tools: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
    normalized = []
    for index, tool in enumerate(tools or []):
        if tool.get("type") == "function" and isinstance(tool.get("function"), dict):
            tool = tool["function"]
        where = f"tools[{index}]"
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise ValueError(f"{where}.parameters must be a JSON-schema dict, got {type(parameters).__name__}")
        # No properties -> `() => any`, as gpt-oss's chat template renders a parameterless tool.
        if not parameters or (parameters.get("type") == "object" and not parameters.get("properties")):
            parameters = None
        if parameters is not None:
            _check_text(json.dumps(parameters, ensure_ascii=False), f"{where}.parameters")
        normalized.append(
            {
                "name": _check_name(tool.get("name"), f"{where}.name"),
                "description": _check_text(tool.get("description") or "", f"{where}.description"),
                "parameters": parameters,
            }
        )
    return normalized


def _plan(
    messages: Sequence[Message],
    developer_instructions: str | None,
    tools: Sequence[dict[str, Any]] | None,
    reasoning_effort: str,
    conversation_start_date: str | None,
    knowledge_cutoff: str,
) -> _Plan:
    if reasoning_effort not in REASONING_EFFORTS:
        raise ValueError(f"reasoning_effort must be one of {REASONING_EFFORTS}, got {reasoning_effort!r}")
    _check_text(knowledge_cutoff, "knowledge_cutoff")
    if conversation_start_date is not None:
        _check_text(conversation_start_date, "conversation_start_date")
    header_count = _leading_header_count(messages)
    instructions = [developer_instructions] if developer_instructions else []
    for index in range(header_count):
        content = _check_text(messages[index].get("content"), f"messages[{index}].content")
        if content:
            instructions.append(content)
    if developer_instructions:
        _check_text(developer_instructions, "developer_instructions")

    body = messages[header_count:]
    trained_from = _trained_turn_start(body)
    parts: list[_Part] = []
    for offset, message in enumerate(body):
        index = header_count + offset
        where = f"messages[{index}]"
        role = message.get("role")
        if role == "user":
            parts.append(_Part("user", _check_text(message.get("content"), f"{where}.content")))
        elif role == "tool":
            name = _check_name(message.get("name"), f"{where}.name")
            parts.append(
                _Part(
                    "tool",
                    _check_text(message.get("content"), f"{where}.content"),
                    name=f"{FUNCTIONS_NAMESPACE}.{name}",
                    recipient="assistant",
                    channel="commentary",
                )
            )
        elif role == "assistant":
            parts.extend(_assistant_parts(message, where, keep_thinking=offset >= trained_from))
        elif role in ("system", "developer"):
            raise ValueError(f"{where}: a {role} message is only allowed before the first user/assistant/tool message")
        else:
            raise ValueError(f"{where}.role must be system, developer, user, assistant or tool, got {role!r}")
    return _Plan(
        reasoning_effort=reasoning_effort,
        knowledge_cutoff=knowledge_cutoff,
        conversation_start_date=conversation_start_date,
        instructions="\n\n".join(instructions) or None,
        tools=_normalize_tools(tools),
        parts=parts,
    )


def _assistant_parts(message: Message, where: str, *, keep_thinking: bool) -> list[_Part]:
    parts: list[_Part] = []
    thinking = message.get("thinking")
    if thinking is not None:
        _check_text(thinking, f"{where}.thinking")
    if thinking and keep_thinking:
        parts.append(_Part("assistant", thinking, channel="analysis"))
    content = message.get("content")
    content = "" if content is None else _check_text(content, f"{where}.content")
    tool_calls = message.get("tool_calls") or []
    if not tool_calls:
        parts.append(_Part("assistant", content, channel="final"))
        return parts
    if content:
        parts.append(_Part("assistant", content, channel="commentary"))
    for number, call in enumerate(tool_calls):
        call_where = f"{where}.tool_calls[{number}]"
        name = _check_name(call.get("name"), f"{call_where}.name")
        arguments = _check_text(_serialize_arguments(call.get("arguments", {})), f"{call_where}.arguments")
        parts.append(
            _Part(
                "assistant",
                arguments,
                recipient=f"{FUNCTIONS_NAMESPACE}.{name}",
                channel="commentary",
                content_type=CONSTRAIN_JSON,
            )
        )
    return parts


# --------------------------------------------------------------------------------------------------------------
# Backend 1: openai_harmony
# --------------------------------------------------------------------------------------------------------------


def _render_openai_harmony(plan: _Plan, *, for_completion: bool) -> str:
    return harmony_encoding().decode_utf8(_render_openai_harmony_tokens(plan, for_completion=for_completion))


def _render_openai_harmony_tokens(plan: _Plan, *, for_completion: bool) -> list[int]:
    from openai_harmony import (
        Author,
        Conversation,
        DeveloperContent,
        ReasoningEffort,
        RenderConversationConfig,
        Role,
        SystemContent,
        ToolDescription,
    )
    from openai_harmony import Message as HarmonyMessage

    system = SystemContent.new().with_reasoning_effort(ReasoningEffort(plan.reasoning_effort.capitalize()))
    system = system.with_knowledge_cutoff(plan.knowledge_cutoff)
    if plan.conversation_start_date is not None:
        system = system.with_conversation_start_date(plan.conversation_start_date)
    harmony_messages = [HarmonyMessage.from_role_and_content(Role.SYSTEM, system)]
    if plan.instructions or plan.tools:
        developer = DeveloperContent.new()
        if plan.instructions:
            developer = developer.with_instructions(plan.instructions)
        if plan.tools:
            developer = developer.with_function_tools([ToolDescription.new(**tool) for tool in plan.tools])
        harmony_messages.append(HarmonyMessage.from_role_and_content(Role.DEVELOPER, developer))
    for part in plan.parts:
        message = HarmonyMessage.from_author_and_content(Author(role=Role(part.role), name=part.name), part.text)
        if part.channel is not None:
            message = message.with_channel(part.channel)
        if part.recipient is not None:
            message = message.with_recipient(part.recipient)
        if part.content_type is not None:
            message = message.with_content_type(part.content_type)
        harmony_messages.append(message)

    encoding = harmony_encoding()
    conversation = Conversation.from_messages(harmony_messages)
    # Earlier-turn analysis is already gone (_plan); harmony's own auto-drop would remove the trained turn's too.
    config = RenderConversationConfig(auto_drop_analysis=False)
    if for_completion:
        return encoding.render_conversation_for_completion(conversation, Role.ASSISTANT, config)
    return encoding.render_conversation_for_training(conversation, config)


def _tokens(text_or_tokens: str | Sequence[int]) -> list[int]:
    if isinstance(text_or_tokens, str):
        return harmony_encoding().encode(text_or_tokens, allowed_special="all")
    return list(text_or_tokens)


def _strip_namespace(name: str) -> str:
    prefix = f"{FUNCTIONS_NAMESPACE}."
    return name[len(prefix) :] if name.startswith(prefix) else name


# Order of an assistant dict's Harmony messages: analysis, preamble, calls | analysis, final.
_ANALYSIS, _PREAMBLE, _CALL, _FINAL = 1, 2, 3, 4


def _opens_new_assistant(stage: int, kind: int) -> bool:
    """Whether a Harmony assistant message of ``kind`` cannot continue a dict that reached ``stage``."""
    if stage == _FINAL:
        return True
    if kind in (_ANALYSIS, _PREAMBLE):
        return stage >= kind
    return kind == _FINAL and stage >= _PREAMBLE


def _to_message_dicts(harmony_messages: Sequence[Any]) -> list[Message]:
    """Group openai_harmony messages into our dicts (see the module docstring for the grouping)."""
    out: list[Message] = []
    stage = _FINAL  # no open assistant dict
    for harmony_message in harmony_messages:
        role = harmony_message.author.role.value
        text = "".join(getattr(content, "text", "") for content in harmony_message.content)
        if role != "assistant":
            if role == "user":
                out.append({"role": "user", "content": text})
            elif role == "tool":
                out.append({"role": "tool", "name": _strip_namespace(harmony_message.author.name or ""),
                            "content": text})
            stage = _FINAL  # system and developer messages are generated, not returned
            continue
        recipient = harmony_message.recipient
        if recipient and recipient != "all":
            kind = _CALL
        elif harmony_message.channel == "analysis":
            kind = _ANALYSIS
        elif harmony_message.channel == "commentary":
            kind = _PREAMBLE
        else:
            kind = _FINAL
        if _opens_new_assistant(stage, kind):
            out.append({"role": "assistant", "content": ""})
        current = out[-1]
        if kind == _ANALYSIS:
            current["thinking"] = text
        elif kind == _CALL:
            call = {"name": _strip_namespace(recipient), "arguments": _parse_arguments(text)}
            current.setdefault("tool_calls", []).append(call)
        else:
            current["content"] = text
        stage = kind
    return out


# --------------------------------------------------------------------------------------------------------------
# Backend 2: manual, a port of openai/harmony's Rust renderer (src/encoding.rs) for when openai_harmony is absent.
# Byte-identical to backend 1 on openai/harmony's vectors and 1,000 generated conversations (tests/test_harmony.py).
# --------------------------------------------------------------------------------------------------------------


def _render_manual(plan: _Plan) -> str:
    top = [DEFAULT_MODEL_IDENTITY, f"Knowledge cutoff: {plan.knowledge_cutoff}"]
    if plan.conversation_start_date is not None:
        top.append(f"Current date: {plan.conversation_start_date}")
    channels = f"# Valid channels: {', '.join(VALID_CHANNELS)}. Channel must be included for every message."
    if plan.tools:
        channels += f"\nCalls to these tools must go to the commentary channel: '{FUNCTIONS_NAMESPACE}'."
    system = "\n\n".join(["\n".join(top), f"Reasoning: {plan.reasoning_effort}", channels])
    pieces = [f"<|start|>system<|message|>{system}<|end|>"]
    if plan.instructions or plan.tools:
        sections = ["# Instructions", plan.instructions] if plan.instructions else []
        if plan.tools:
            sections.append(_tools_section(plan.tools))
        developer = "\n\n".join(sections)
        pieces.append(f"<|start|>developer<|message|>{developer}<|end|>")
    for part in plan.parts:
        header = part.name if part.role == "tool" else part.role
        if part.recipient is not None and part.recipient != "all":
            header += f" to={part.recipient}"
        if part.channel is not None:
            header += f"<|channel|>{part.channel}"
        if part.content_type is not None:
            header += f" {part.content_type}"
        end = "<|call|>" if part.role == "assistant" and part.recipient is not None else "<|end|>"
        pieces.append(f"<|start|>{header}<|message|>{part.text}{end}")
    return "".join(pieces)


def _rust_lines(text: str) -> list[str]:
    """Rust's str::lines(): split on \\n, drop one \\r before each \\n, no empty line after a final \\n."""
    pieces = text.split("\n")
    lines = [piece[:-1] if piece.endswith("\r") else piece for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    return lines


def _tools_section(tools: list[dict[str, Any]]) -> str:
    lines = [f"## {FUNCTIONS_NAMESPACE}\n", f"namespace {FUNCTIONS_NAMESPACE} {{\n"]
    for tool in tools:
        lines.extend(f"// {line}" for line in _rust_lines(tool["description"]))
        if tool["parameters"] is not None:
            lines.append(f"type {tool['name']} = (_: {_schema_to_typescript(tool['parameters'], '')}) => any;\n")
        else:
            lines.append(f"type {tool['name']} = () => any;\n")
    lines.append(f"}} // namespace {FUNCTIONS_NAMESPACE}")
    return "# Tools\n\n" + "\n".join(lines)


def _serde_float(value: float) -> str:
    """serde_json's f64 Display (the ryu crate's shortest form): 1e20, 1.5e-7, 0.00001, 2.0."""
    if not math.isfinite(value):
        raise ValueError(f"JSON schema default {value!r} is not a finite number")
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    fraction = fraction.rstrip("0") if fraction != "0" else ""
    digits = (whole + fraction).lstrip("0")
    # value == int(digits) * 10**k
    k = int(exponent or 0) - len(fraction)
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    kk = length + k  # position of the decimal point relative to the first digit
    if 0 <= k and kk <= 16:
        text = digits + "0" * k + ".0"
    elif 0 < kk <= 16:
        text = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        text = "0." + "0" * (-kk) + digits
    elif length == 1:
        text = f"{digits}e{kk - 1}"
    else:
        text = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + text


def _serde_json(value: Any) -> str:
    """serde_json::Value's compact Display with preserve_order, as harmony writes non-string defaults."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        # serde_json reads integers outside i64/u64 as f64.
        return str(value) if -(2**63) <= value < 2**64 else _serde_float(float(value))
    if isinstance(value, float):
        return _serde_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        items = (f"{json.dumps(str(key), ensure_ascii=False)}:{_serde_json(item)}" for key, item in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_serde_json(item) for item in value) + "]"
    raise ValueError(f"JSON schema holds a {type(value).__name__}, which JSON cannot represent")


def _get(schema: Any, key: str) -> Any:
    return schema.get(key) if isinstance(schema, dict) else None


def _is_enum(schema: Any) -> bool:
    values = _get(schema, "enum")
    return isinstance(values, list) and len(values) > 0


def _default_comment(schema: dict[str, Any], *, raw_enum_string: bool = True) -> str:
    """`default: ...` text. A string default is quoted verbatim unless the schema is an enum; an enum's string
    default is written bare, except in a top-level oneOf variant, where harmony writes it as JSON."""
    default = schema["default"]
    if isinstance(default, str) and not _is_enum(schema):
        return f'default: "{default}"'
    if isinstance(default, str) and raw_enum_string:
        return f"default: {default}"
    return f"default: {_serde_json(default)}"


def _with_nullable(type_str: str, schema: Any) -> str:
    if _get(schema, "nullable") is True and "null" not in type_str:
        return f"{type_str} | null"
    return type_str


def _variant_comments(
    variant: Any, skip_description: bool, property_desc: str | None, raw_enum_string: bool
) -> list[str]:
    comments = []
    desc = _get(variant, "description")
    if not skip_description and isinstance(desc, str) and desc != property_desc:
        comments.append(desc)
    if isinstance(variant, dict) and "default" in variant:
        comments.append(_default_comment(variant, raw_enum_string=raw_enum_string))
    return comments


def _schema_to_typescript(schema: Any, indent: str) -> str:
    """Port of HarmonyEncoding::json_schema_to_typescript (openai/harmony src/encoding.rs)."""
    one_of = _get(schema, "oneOf")
    if isinstance(one_of, list):
        out = ""
        for variant in one_of:
            out += f"\n{indent} | "
            out += _with_nullable(_schema_to_typescript(variant, f"{indent}   "), variant)
            comments = _variant_comments(variant, False, None, raw_enum_string=False)
            if comments:
                out += f" // {' '.join(comments)}"
        return out
    types = _get(schema, "type")
    if isinstance(types, list):
        names = [{"integer": "number"}.get(t, t) for t in types if isinstance(t, str)]
        if names:
            return " | ".join(names)
    if not isinstance(types, str):
        return "any"
    if types == "object":
        return _object_to_typescript(schema, indent)
    if types == "string":
        values = _get(schema, "enum")
        if isinstance(values, list):
            enums = [f'"{v}"' for v in values if isinstance(v, str)]
            if enums:
                return " | ".join(enums)
        return "string"
    if types in ("number", "integer"):
        return "number"
    if types == "boolean":
        return "boolean"
    if types == "array":
        if isinstance(schema, dict) and "items" in schema:
            return f"{_schema_to_typescript(schema['items'], indent)}[]"
        return "Array<any>"
    return "any"


def _object_to_typescript(schema: dict[str, Any], indent: str) -> str:
    out = ""
    desc = schema.get("description")
    if isinstance(desc, str):
        out += f"{indent}// {desc}\n"
    out += "{\n"
    props = schema.get("properties")
    if isinstance(props, dict):
        required_list = schema.get("required")
        required = {r for r in required_list if isinstance(r, str)} if isinstance(required_list, list) else set()
        for key, val in props.items():
            optional = "" if key in required else "?"
            title = _get(val, "title")
            if isinstance(title, str):
                out += f"{indent}// {title}\n{indent}//\n"
            has_one_of = isinstance(val, dict) and "oneOf" in val
            val_one_of = _get(val, "oneOf")
            val_desc = _get(val, "description")
            if not has_one_of and isinstance(val_desc, str):
                out += f"{indent}// {val_desc}\n"
            examples = _get(val, "examples")
            if isinstance(examples, list) and examples:
                out += f"{indent}// Examples:\n"
                out += "".join(f'{indent}// - "{ex}"\n' for ex in examples if isinstance(ex, str))
            if isinstance(val_one_of, list):
                out += _one_of_property(key, optional, val, val_one_of, indent)
                continue
            out += f"{indent}{key}{optional}: "
            out += _with_nullable(_schema_to_typescript(val, f"{indent}    "), val) + ","
            if not has_one_of and isinstance(val, dict) and "default" in val:
                out += f" // {_default_comment(val)}"
            out += "\n"
    return out + f"{indent}}}"


def _one_of_property(key: str, optional: str, val: dict[str, Any], variants: list[Any], indent: str) -> str:
    out = ""
    property_desc = val.get("description") if isinstance(val.get("description"), str) else None
    first_desc = _get(variants[0], "description") if variants else None
    skip_property_desc = property_desc is not None and isinstance(first_desc, str) and first_desc == property_desc
    desc_above = False
    if not skip_property_desc and property_desc is not None:
        out += f"{indent}// {property_desc}\n"
        desc_above = True
    if "default" in val:
        out += f"{indent}// {_default_comment(val)}\n"
    out += f"{indent}{key}{optional}:\n"
    for number, variant in enumerate(variants):
        out += f"{indent} | "
        out += _with_nullable(_schema_to_typescript(variant, f"{indent}   "), variant)
        comments = _variant_comments(variant, number == 0 and desc_above, property_desc, raw_enum_string=True)
        if comments:
            out += f" // {' '.join(comments)}"
        out += "\n"
    return out + f"{indent},\n"
