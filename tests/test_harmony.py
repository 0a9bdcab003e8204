"""Harmony rendering/parsing: openai/harmony's vectors, manual == openai_harmony on 1,000 generated conversations,
the training drop rule, and the parser round trip. Each equivalence has a negative control that must fail.

    .venv/bin/python -m pytest -q tests/test_harmony.py
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from harmony_cases import random_conversation

from pipeline_lib import harmony
from pipeline_lib.harmony import (
    encode_harmony_messages,
    encode_harmony_prompt,
    parse_harmony_completion,
    parse_harmony_conversation,
    render_training_prompt_and_completion,
    training_view_messages,
)

VECTORS = Path(__file__).parent / "fixtures" / "harmony_vectors"
BACKENDS = ("manual", "openai_harmony")
N_GENERATED = 1000


def vector(name: str) -> str:
    # openai/harmony's tests read these with .rstrip() too (the files end with a newline).
    return (VECTORS / name).read_text(encoding="utf-8").rstrip()


def vector_tokens(name: str) -> list[int]:
    return [int(x) for x in (VECTORS / name).read_text().split()]


def system_block(reasoning: str = "medium") -> str:
    """The default system message, cut out of openai/harmony's own test_simple_convo vector."""
    text = vector("test_simple_convo.txt")
    return text[: text.index("<|start|>user")].replace("Reasoning: medium", f"Reasoning: {reasoning}")


# ---------------------------------------------------------------------------------------------------------------
# (a) openai/harmony's vectors, both backends byte for byte
# ---------------------------------------------------------------------------------------------------------------

USED_VECTORS = {
    "test_simple_convo.txt",
    "test_simple_convo_low_effort.txt",
    "test_simple_convo_medium_effort.txt",
    "test_simple_convo_high_effort.txt",
    "test_simple_convo_low_effort_no_instruction.txt",
    "test_simple_convo_medium_effort_no_instruction.txt",
    "test_simple_convo_high_effort_no_instruction.txt",
    "test_no_tools.txt",
    "test_render_functions_with_parameters.txt",
    "test_dropping_cot_by_default.txt",
    "test_keep_analysis_between_finals.txt",
    "test_does_not_drop_if_ongoing_analysis.txt",
    "test_preserve_cot.txt",  # as the drop rule's negative control
    "test_simple_reasoning_response.txt",
    "test_simple_tool_call.txt",
    "test_streamable_parser.txt",
    "test_tool_response_parsing.txt",
}
OUTSIDE_OUR_MODEL = {
    # SystemContent.with_required_channels(["analysis", "final"]): we always declare analysis, commentary, final.
    "test_reasoning_system_message.txt": "channel config without commentary",
    "test_reasoning_system_message_no_instruction.txt": "channel config without commentary",
    "test_reasoning_system_message_with_dates.txt": "channel config without commentary",
    # Built-in browser/python tool namespaces in the system message; we render function tools only.
    "test_browser_tool_only.txt": "built-in browser tool",
    "test_browser_and_python_tool.txt": "built-in browser and python tools",
    "test_browser_and_function_tool.txt": "built-in browser tool",
}


def test_every_vector_is_used_or_explained():
    on_disk = {path.name for path in VECTORS.glob("*.txt")}
    assert len(on_disk) == 23
    assert on_disk == USED_VECTORS | set(OUTSIDE_OUR_MODEL)
    assert not USED_VECTORS & set(OUTSIDE_OUR_MODEL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_vector_simple_convo(backend):
    text = encode_harmony_prompt([{"role": "user", "content": "What is 2 + 2?"}], backend=backend)
    assert text == vector("test_simple_convo.txt")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("effort", ["low", "medium", "high"])
@pytest.mark.parametrize("with_instruction", [True, False])
def test_vector_simple_convo_efforts(backend, effort, with_instruction):
    name = f"test_simple_convo_{effort}_effort{'' if with_instruction else '_no_instruction'}.txt"
    text = encode_harmony_prompt(
        [{"role": "user", "content": "What is the capital of the largest country in the world?"}],
        developer_instructions="Answer the user's questions like a robot." if with_instruction else None,
        reasoning_effort=effort,
        backend=backend,
    )
    assert text == vector(name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_vector_no_tools(backend):
    assert encode_harmony_prompt([], conversation_start_date="2025-06-28", backend=backend) == vector(
        "test_no_tools.txt"
    )


KITCHENSINK_TOOLS = [
    {"name": "get_location", "description": "Gets the location of the user."},
    {
        "name": "get_current_weather",
        "description": "Gets the current weather in the provided location.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
            },
            "required": ["location"],
        },
    },
    {
        "name": "get_multiple_weathers",
        "description": "Gets the current weather in the provided list of locations.",
        "parameters": {
            "type": "object",
            "properties": {
                "locations": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": 'List of city and state, e.g. ["San Francisco, CA", "New York, NY"]',
                },
                "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
            },
            "required": ["locations"],
        },
    },
    {
        "name": "kitchensink",
        "description": "A function with various complex schemas.",
        "parameters": {
            "description": "params object",
            "type": "object",
            "properties": {
                "string": {
                    "type": "string",
                    "title": "STRING",
                    "description": "A string",
                    "examples": ["hello", "world"],
                },
                "string_nullable": {
                    "type": "string",
                    "nullable": True,
                    "description": "A nullable string",
                    "default": "the default",
                },
                "string_enum": {"type": "string", "enum": ["a", "b", "c"]},
                "oneof_string_or_number": {
                    "oneOf": [
                        {"type": "string", "default": "default_string_in_oneof"},
                        {"type": "number", "description": "numbers can happen too"},
                    ],
                    "description": "a oneof",
                    "default": 20,
                },
            },
        },
    },
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_vector_render_functions_with_parameters(backend):
    text = encode_harmony_prompt(
        [{"role": "user", "content": "What is the weather like in SF?"}],
        developer_instructions="Always respond in riddles",
        tools=KITCHENSINK_TOOLS,
        reasoning_effort="high",
        conversation_start_date="2025-06-28",
        backend=backend,
    )
    assert text == vector("test_render_functions_with_parameters.txt")


TWO_PLUS_TWO = [
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "thinking": 'User asks a simple question: "What is 2 + 2?" The answer: 4.',
     "content": "2 + 2 equals 4."},
    {"role": "user", "content": "What about 9 / 2?"},
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_vector_dropping_cot(backend):
    # openai/harmony's vectors have no system message; ours always opens with the default one.
    text = encode_harmony_prompt(TWO_PLUS_TWO, backend=backend)
    assert text == system_block() + vector("test_dropping_cot_by_default.txt")
    # Negative control: the vector that keeps the earlier turn's analysis must not match.
    assert text != system_block() + vector("test_preserve_cot.txt")
    assert "The answer: 4." in vector("test_preserve_cot.txt")


@pytest.mark.parametrize("backend", BACKENDS)
def test_vector_keep_analysis_between_finals(backend):
    messages = [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "thinking": "thinking 2+2", "content": "4"},
        {"role": "user", "content": "What is 3 + 5?"},
        {"role": "assistant", "thinking": "thinking 3+5", "content": "8"},
    ]
    expected = vector("test_keep_analysis_between_finals.txt")
    assert expected.endswith("<|end|>")
    text = encode_harmony_messages(messages, backend=backend)
    assert text == system_block() + expected[: -len("<|end|>")] + "<|return|>"


@pytest.mark.parametrize("backend", BACKENDS)
def test_vector_ongoing_analysis_and_tool_call(backend):
    messages = [
        {"role": "user", "content": "What is the weather in SF?"},
        {
            "role": "assistant",
            "thinking": "User asks: “What is the weather in SF?” We need to use lookup_weather tool.",
            "tool_calls": [{"name": "lookup_weather", "arguments": {"location": "San Francisco"}}],
        },
    ]
    expected = vector("test_does_not_drop_if_ongoing_analysis.txt")
    # The vector's tool result header is `functions.lookup_weather` alone; ours adds ` to=assistant<|channel|>
    # commentary` (the header gpt-oss emits for tool output), so compare up to the end of the call.
    through_call = expected[: expected.index("<|call|>") + len("<|call|>")]
    assert encode_harmony_messages(messages, backend=backend) == system_block() + through_call


def test_vector_parse_reasoning_response_tokens():
    from openai_harmony import Role

    tokens = vector_tokens("test_simple_reasoning_response.txt")
    parsed = parse_harmony_completion(tokens)
    assert parse_harmony_completion(tokens, role=Role.ASSISTANT) == parsed
    assert parsed == [
        {
            "role": "assistant",
            "thinking": 'User asks: "What is 2 + 2?" Simple arithmetic. Provide answer.',
            "content": "2 + 2 = 4.",
        }
    ]


def test_vector_parse_tool_call_tokens():
    parsed = parse_harmony_completion(vector_tokens("test_simple_tool_call.txt"))
    assert parsed == [
        {
            "role": "assistant",
            "content": "",
            "thinking": 'User asks: "What is the weather in Tokyo?" We need to use lookup_weather tool.',
            "tool_calls": [{"name": "lookup_weather", "arguments": {"location": "Tokyo"}}],
        }
    ]


def test_vector_streamable_parser_text():
    parsed = parse_harmony_completion(vector("test_streamable_parser.txt"))
    assert [m["role"] for m in parsed] == ["assistant", "tool"]
    assert parsed[0]["thinking"].startswith('User asks "Who is the current US president?"')
    assert parsed[0]["tool_calls"] == [
        {"name": "browser.search", "arguments": {"query": "current US president July 2025", "topn": 10,
                                                 "source": "news"}}
    ]
    assert parsed[1] == {"role": "tool", "name": "browser.search", "content": '{"result": "https://openai.com/"}'}


def test_vector_tool_response_parsing():
    parsed = parse_harmony_completion(vector("test_tool_response_parsing.txt"), role=None)
    assert parsed == [{"role": "tool", "name": "browser.search", "content": '{"result": "https://openai.com/"}'}]


# ---------------------------------------------------------------------------------------------------------------
# (b) manual == openai_harmony on generated conversations, with negative controls
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated():
    rng = random.Random(20260704)
    return [random_conversation(rng) for _ in range(N_GENERATED)]


@pytest.fixture(scope="module")
def harmony_renders(generated):
    return [encode_harmony_messages(m, backend="openai_harmony", **kw) for m, kw in generated]


def manual_mismatches(generated, harmony_renders) -> int:
    return sum(
        encode_harmony_messages(m, backend="manual", **kw) != expected
        for (m, kw), expected in zip(generated, harmony_renders, strict=True)
    )


def test_generated_cases_cover_the_corners(harmony_renders):
    joined = "\n".join(harmony_renders)
    for feature in ["\n | ", "// Examples:", "Array<any>", "| null", "?: ", "() => any", "default: 1e20",
                    "default: 0.00001", "default: -0.0", "# Instructions", "Current date", "中文", "🚀"]:
        assert feature in joined, feature
    assert sum(text.endswith("<|call|>") for text in harmony_renders) > 100
    assert sum(text.endswith("<|return|>") for text in harmony_renders) > 100
    assert sum(text.count("<|constrain|>") >= 2 for text in harmony_renders) > 100  # parallel / repeated calls


def test_manual_equals_openai_harmony_on_generated(generated, harmony_renders):
    assert manual_mismatches(generated, harmony_renders) == 0
    prompts_differ = [
        i for i, (m, kw) in enumerate(generated[:200])
        if encode_harmony_prompt(m[:-1], backend="manual", **kw)
        != encode_harmony_prompt(m[:-1], backend="openai_harmony", **kw)
    ]
    assert prompts_differ == []


def _python_float(value: float) -> str:
    return repr(value)


@pytest.mark.parametrize(
    "target, broken",
    [
        ("_serde_float", _python_float),  # Python's 1e+20 / 1e-05 instead of serde_json's 1e20 / 0.00001
        ("_rust_lines", str.splitlines),  # Python line splitting (\r, \v, \u2028 ...) instead of Rust's
        ("_is_enum", lambda schema: False),  # enum string defaults quoted
        ("_with_nullable", lambda type_str, schema: type_str),  # `| null` forgotten
    ],
)
def test_negative_control_perturbed_manual_differs(generated, harmony_renders, monkeypatch, target, broken):
    monkeypatch.setattr(harmony, target, broken)
    assert manual_mismatches(generated, harmony_renders) > 0


def test_backend_auto_falls_back_to_manual_without_openai_harmony(monkeypatch, generated, harmony_renders):
    assert harmony._resolve_backend("auto") == "openai_harmony"
    monkeypatch.setitem(sys.modules, "openai_harmony", None)  # makes `import openai_harmony` raise ImportError
    assert harmony._resolve_backend("auto") == "manual"
    messages, kwargs = generated[0]
    assert encode_harmony_messages(messages, **kwargs) == harmony_renders[0]
    with pytest.raises(ValueError, match="backend"):
        encode_harmony_messages(messages, backend="jinja")


# ---------------------------------------------------------------------------------------------------------------
# (c) the training drop rule on a hand-written agent conversation
# ---------------------------------------------------------------------------------------------------------------

AGENT_TOOLS = [
    {"name": "read_file", "description": "Read a file.",
     "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}},
    {"name": "run_shell", "description": "Run a shell command.",
     "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
]
AGENT_CONVERSATION = [
    {"role": "system", "content": "You are a coding agent."},
    {"role": "user", "content": "Fix the bug in main.rs"},
    {"role": "assistant", "thinking": "EARLY-1 read it first",
     "tool_calls": [{"name": "read_file", "arguments": {"path": "src/main.rs"}}]},
    {"role": "tool", "name": "read_file", "content": "fn main() {}"},
    {"role": "assistant", "thinking": "EARLY-2 looks fine", "content": "Done."},
    {"role": "user", "content": "Now run the tests"},
    {"role": "assistant", "thinking": "LATE-1 run cargo",
     "tool_calls": [{"name": "run_shell", "arguments": {"cmd": "cargo test"}}]},
    {"role": "tool", "name": "run_shell", "content": "1 failed"},
    {"role": "assistant", "thinking": "LATE-2 look at both",
     "tool_calls": [{"name": "read_file", "arguments": {"path": "a.rs"}},
                    {"name": "read_file", "arguments": '{"path":"b.rs"}'}]},
    {"role": "tool", "name": "read_file", "content": "a"},
    {"role": "tool", "name": "read_file", "content": "b"},
    {"role": "assistant", "thinking": "LATE-3 fixed", "content": "All green."},
]
EXPECTED_TRAINED_TURN = (
    "<|start|>user<|message|>Now run the tests<|end|>"
    "<|start|>assistant<|channel|>analysis<|message|>LATE-1 run cargo<|end|>"
    "<|start|>assistant to=functions.run_shell<|channel|>commentary <|constrain|>json<|message|>"
    '{"cmd": "cargo test"}<|call|>'
    "<|start|>functions.run_shell to=assistant<|channel|>commentary<|message|>1 failed<|end|>"
    "<|start|>assistant<|channel|>analysis<|message|>LATE-2 look at both<|end|>"
    "<|start|>assistant to=functions.read_file<|channel|>commentary <|constrain|>json<|message|>"
    '{"path": "a.rs"}<|call|>'
    "<|start|>assistant to=functions.read_file<|channel|>commentary <|constrain|>json<|message|>"
    '{"path":"b.rs"}<|call|>'
    "<|start|>functions.read_file to=assistant<|channel|>commentary<|message|>a<|end|>"
    "<|start|>functions.read_file to=assistant<|channel|>commentary<|message|>b<|end|>"
    "<|start|>assistant<|channel|>analysis<|message|>LATE-3 fixed<|end|>"
    "<|start|>assistant<|channel|>final<|message|>All green.<|return|>"
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_drop_rule_final(backend):
    text = encode_harmony_messages(AGENT_CONVERSATION, tools=AGENT_TOOLS, backend=backend)
    assert "EARLY-1" not in text and "EARLY-2" not in text
    assert text.endswith(EXPECTED_TRAINED_TURN)
    assert text.count("<|return|>") == 1
    # The earlier turn keeps its call and final answer, ended by <|end|>, without analysis.
    assert (
        '<|start|>user<|message|>Fix the bug in main.rs<|end|><|start|>assistant to=functions.read_file<|channel|>'
        'commentary <|constrain|>json<|message|>{"path": "src/main.rs"}<|call|>'
        "<|start|>functions.read_file to=assistant<|channel|>commentary<|message|>fn main() {}<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Done.<|end|><|start|>user"
    ) in text
    assert "# Instructions\n\nYou are a coding agent.\n\n# Tools" in text


@pytest.mark.parametrize("backend", BACKENDS)
def test_drop_rule_ending_in_tool_call(backend):
    text = encode_harmony_messages(AGENT_CONVERSATION[:9], tools=AGENT_TOOLS, backend=backend)
    assert "EARLY-" not in text
    assert "LATE-1 run cargo" in text and "LATE-2 look at both" in text
    assert text.endswith('<|message|>{"path":"b.rs"}<|call|>')
    assert "<|return|>" not in text


def test_openai_harmony_default_drop_is_not_our_rule():
    """Why the openai_harmony backend renders with auto_drop_analysis=False (measured on 0.0.8)."""
    from openai_harmony import Conversation, Message, RenderConversationConfig, Role

    def assistant(text: str, channel: str) -> Message:
        return Message.from_role_and_content(Role.ASSISTANT, text).with_channel(channel)

    convo = Conversation.from_messages([Message.from_role_and_content(Role.USER, "q"),
                                        assistant("LATE-1", "analysis"), assistant("answer", "final")])
    encoding = harmony.harmony_encoding()
    default = encoding.decode_utf8(encoding.render_conversation_for_training(convo))
    kept = encoding.decode_utf8(
        encoding.render_conversation_for_training(convo, RenderConversationConfig(auto_drop_analysis=False))
    )
    assert "LATE-1" not in default  # the trained turn's own analysis is gone by default
    ours = encode_harmony_messages([{"role": "user", "content": "q"},
                                    {"role": "assistant", "thinking": "LATE-1", "content": "answer"}])
    assert ours.endswith(kept)
    assert not ours.endswith(default)


@pytest.mark.parametrize("backend", BACKENDS)
def test_prompt_and_completion_split(backend):
    prompt, completion = render_training_prompt_and_completion(AGENT_CONVERSATION, tools=AGENT_TOOLS, backend=backend)
    assert prompt + completion == encode_harmony_messages(AGENT_CONVERSATION, tools=AGENT_TOOLS, backend=backend)
    last_user = "<|start|>user<|message|>Now run the tests<|end|><|start|>assistant"
    assert prompt.endswith(last_user)
    assert completion == EXPECTED_TRAINED_TURN[len(last_user) :]
    # Preference shape: a final-only trained turn gives `<|channel|>final<|message|>...<|return|>`.
    _, chosen = render_training_prompt_and_completion(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], backend=backend
    )
    assert chosen == "<|channel|>final<|message|>hello<|return|>"


def test_normalisation_rules():
    base = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
    plain = encode_harmony_messages(base)
    assert encode_harmony_messages(base, tools=[]) == plain
    assert encode_harmony_messages(base, developer_instructions="") == plain
    assert "<|start|>developer" not in plain
    merged = encode_harmony_messages(
        [{"role": "developer", "content": "second"}, {"role": "system", "content": "third"}, *base],
        developer_instructions="first",
    )
    assert "<|start|>developer<|message|># Instructions\n\nfirst\n\nsecond\n\nthird<|end|>" in merged
    wrapped = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}]
    assert encode_harmony_messages(base, tools=wrapped) == encode_harmony_messages(
        base, tools=[{"name": "f", "description": "d"}]
    )
    assert "type f = () => any;" in encode_harmony_messages(base, tools=wrapped)


@pytest.mark.parametrize(
    "messages, kwargs, match",
    [
        ([{"role": "user", "content": "u"}], {}, "last message"),
        ([{"role": "user", "content": "a <|end|> b"}, {"role": "assistant", "content": "x"}], {}, r"messages\[0\]"),
        ([{"role": "assistant", "content": "x", "thinking": "<|return|>"}], {}, "control token"),
        ([{"role": "user", "content": "u"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "x"}],
         {}, r"messages\[1\]: a system message"),
        ([{"role": "tool", "content": "r"}, {"role": "assistant", "content": "x"}], {}, r"messages\[0\]\.name"),
        ([{"role": "assistant", "tool_calls": [{"name": "f", "arguments": [1]}]}], {}, "dict or a str"),
        ([{"role": "assistant", "content": "x"}], {"reasoning_effort": "max"}, "reasoning_effort"),
        ([{"role": "bot", "content": "x"}, {"role": "assistant", "content": "x"}], {}, r"messages\[0\]\.role"),
        ([{"role": "user", "content": "\ud800"}, {"role": "assistant", "content": "x"}], {}, "surrogate"),
    ],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_fails_early(messages, kwargs, match, backend):
    with pytest.raises(ValueError, match=match):
        encode_harmony_messages(messages, backend=backend, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# (d) parser round trip
# ---------------------------------------------------------------------------------------------------------------


def test_parser_round_trip_on_generated(generated, harmony_renders):
    for (messages, _), text in zip(generated, harmony_renders, strict=True):
        assert parse_harmony_conversation(text) == training_view_messages(messages)
    for messages, kwargs in generated[:100]:
        prompt, completion = render_training_prompt_and_completion(messages, **kwargs)
        view = training_view_messages(messages)
        trained = view[harmony._trained_turn_start(view) :]
        assert parse_harmony_completion(completion) == trained


def test_parser_round_trip_hand_written():
    text = encode_harmony_messages(AGENT_CONVERSATION, tools=AGENT_TOOLS)
    parsed = parse_harmony_conversation(text)
    assert parsed == training_view_messages(AGENT_CONVERSATION)
    assert parsed[1] == {"role": "assistant", "content": "",
                         "tool_calls": [{"name": "read_file", "arguments": {"path": "src/main.rs"}}]}
    assert parsed[-4]["tool_calls"][1] == {"name": "read_file", "arguments": {"path": "b.rs"}}
    assert parsed[-1] == {"role": "assistant", "content": "All green.", "thinking": "LATE-3 fixed"}
    # The same through token ids, and a model completion in the order gpt-oss emits it (channel before recipient).
    assert parse_harmony_conversation(harmony.harmony_encoding().encode(text, allowed_special="all")) == parsed
    emitted = '<|channel|>commentary to=functions.run_shell <|constrain|>json<|message|>{"cmd": "ls"}<|call|>'
    assert parse_harmony_completion(emitted) == [
        {"role": "assistant", "content": "", "tool_calls": [{"name": "run_shell", "arguments": {"cmd": "ls"}}]}
    ]
    assert parse_harmony_completion('<|channel|>commentary to=functions.f<|message|>not json<|call|>')[0][
        "tool_calls"
    ] == [{"name": "f", "arguments": "not json"}]


def test_negative_control_round_trip_catches_lost_analysis():
    """openai_harmony's default render (which drops the trained turn's analysis) fails the round trip."""
    from openai_harmony import Conversation, Message, Role

    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "thinking": "plan", "content": "answer"}]
    encoding = harmony.harmony_encoding()
    convo = Conversation.from_messages([
        Message.from_role_and_content(Role.USER, "q"),
        Message.from_role_and_content(Role.ASSISTANT, "plan").with_channel("analysis"),
        Message.from_role_and_content(Role.ASSISTANT, "answer").with_channel("final"),
    ])
    lossy = encoding.decode_utf8(encoding.render_conversation_for_training(convo))
    assert parse_harmony_conversation(lossy) != training_view_messages(messages)
    assert parse_harmony_conversation(encode_harmony_messages(messages)) == training_view_messages(messages)
