"""Formatters against real upstream rows (tests/fixtures/real_rows, see SOURCE.md) and hand-written dirty rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_lib.formatters import (
    CODING_AGENT_DEV_PROMPT,
    STALLING_PHRASE,
    SkipRow,
    format_code_act,
    format_code_feedback,
    format_commitpackft,
    format_editpackft,
    format_glaive,
    format_hermes,
    format_hh_rlhf,
    format_xlam,
    python_type_to_schema,
)

REAL = Path(__file__).parent / "fixtures" / "real_rows"


def real(name: str) -> list[dict]:
    return [json.loads(line) for line in (REAL / name).read_text().splitlines() if line.strip()]


def skip_reason(formatter, row) -> str:
    with pytest.raises(SkipRow) as skipped:
        formatter(row)
    return skipped.value.reason


# ---------------------------------------------------------------------------------------------------- Glaive

def test_glaive_real_row_with_two_call_rounds():
    conv = format_glaive(real("glaiveai_glaive-function-calling-v2.jsonl")[1])
    assert conv.developer_instructions == ("You are a helpful assistant with access to the following functions. "
                                           "Use them if required.")
    assert [t["name"] for t in conv.tools] == ["get_news_headlines"]
    assert conv.tools[0]["parameters"]["required"] == ["country"]
    assert [m["role"] for m in conv.messages] == ["user", "assistant", "tool", "assistant"] * 2
    assert conv.messages[0] == {"role": "user", "content": "Can you tell me the latest news headlines for the "
                                                           "United States?"}
    call = {"name": "get_news_headlines", "arguments": {"country": "United States"}}
    assert conv.messages[1] == {"role": "assistant", "content": "", "tool_calls": [call]}
    assert conv.messages[2]["name"] == "get_news_headlines"
    assert json.loads(conv.messages[2]["content"])["headlines"][0] == "Biden announces new vaccine mandates"
    assert conv.messages[3]["content"].startswith("Here are the latest news headlines for the United States:\n1.")
    assert not conv.messages[3]["content"].endswith("<|endoftext|>")
    assert conv.messages[5]["tool_calls"][0]["arguments"] == {"country": "France"}


def test_glaive_real_row_without_call():
    conv = format_glaive(real("glaiveai_glaive-function-calling-v2.jsonl")[0])
    assert conv.messages == [
        {"role": "user", "content": "Can you book a flight for me from New York to London?"},
        {"role": "assistant", "content": "I'm sorry, but I don't have the capability to book flights. My current "
         "function allows me to get the exchange rate between two currencies. If you need help with that, feel free "
         "to ask!"},
    ]


def test_glaive_every_real_row_formats():
    for row in real("glaiveai_glaive-function-calling-v2.jsonl"):
        assert format_glaive(row).messages[-1]["role"] == "assistant"


GLAIVE_SYS = ('SYSTEM: You are a helpful assistant with access to the following functions. Use them if required -\n'
              '{\n    "name": "get_weather",\n    "description": "Weather",\n    "parameters": {}\n}\n')


def glaive(chat: str, system: str = GLAIVE_SYS) -> dict:
    return {"system": system, "chat": chat}


def test_glaive_text_before_call_and_escaped_quote_and_trailing_user_turn():
    conv = format_glaive(glaive(
        "USER: Rome?\n\n\nASSISTANT: Let me check.\n<functioncall> {\"name\": \"get_weather\", \"arguments\": "
        "'{\"city\": \"Rome\\'s centre\"}'} <|endoftext|>\n\n\nFUNCTION RESPONSE: {\"t\": 25}\n\n\n"
        "ASSISTANT: 25 degrees. <|endoftext|>\n\n\nUSER: thanks\n\n\n"))
    assert conv.messages == [
        {"role": "user", "content": "Rome?"},
        {"role": "assistant", "content": "Let me check.",
         "tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome's centre"}}]},
        {"role": "tool", "name": "get_weather", "content": '{"t": 25}'},
        {"role": "assistant", "content": "25 degrees."},
    ]


def test_glaive_no_function_system_and_double_newline_turns():
    conv = format_glaive(glaive("USER: Nurse?\n\nASSISTANT: Healthcare <|endoftext|>",
                                "SYSTEM: You are a helpful assistant, with no access to external functions.\n\n"))
    assert conv.tools is None
    assert conv.developer_instructions == "You are a helpful assistant, with no access to external functions."
    assert conv.messages == [{"role": "user", "content": "Nurse?"}, {"role": "assistant", "content": "Healthcare"}]


CALL = "ASSISTANT: <functioncall> {body} <|endoftext|>\n\n\nFUNCTION RESPONSE: {{}}\n\n\nASSISTANT: ok <|endoftext|>"


@pytest.mark.parametrize("body, reason", [
    ('{"name": "get_weather", "arguments": \'{"city": [user city]}\'}', "arguments_not_json"),
    ('{"name": "get_weather", "arguments": \'{"range": [1, Infinity]}\'}', "arguments_not_json"),
    ('{"name": "get_weather", "arguments": \'[1, 2]\'}', "arguments_not_object"),
    ('{"name": "get_weather", "arguments": null}', "arguments_not_object"),
    ('{"name": "get_weather", "parameters": {}}', "bad_call_syntax"),
    ('{"name": "get_weather", "arguments": \'{"city": "Oslo"}\'}}', "bad_call_syntax"),
    ('{"name": "get_time", "arguments": \'{}\'}', "undeclared_function"),
])
def test_glaive_bad_calls(body, reason):
    assert skip_reason(format_glaive, glaive("USER: hi\n\n\n" + CALL.format(body=body))) == reason


@pytest.mark.parametrize("chat, reason", [
    ('USER: hi\n\n\nASSISTANT: Sure.\nAI to= get_weather: {"city": "X"} <|endoftext|>\n\n\nFUNCTION RESPONSE: {}',
     "response_without_call"),
    ('USER: a "\nASSISTANT: b" <|endoftext|>\n\n\nASSISTANT: Sure. <|endoftext|>', "stray_end_marker"),
    ("USER: hi\n\n\nASSISTANT: part <|endoftext|>\n\n\nASSISTANT:\n1. more <|endoftext|>",
     "consecutive_assistant_turns"),
    ("USER: hi\n\n\nASSISTANT:  <|endoftext|>", "empty_turn"),
    ("hello\n\n\nUSER: hi\n\n\nASSISTANT: x <|endoftext|>", "bad_turn_marker"),
    ("USER: hi", "no_assistant_turn"),
])
def test_glaive_bad_chats(chat, reason):
    assert skip_reason(format_glaive, glaive(chat)) == reason


def test_glaive_name_declared_twice():
    other = GLAIVE_SYS.replace('"Weather"', '"Other"').removeprefix(GLAIVE_SYS.split("\n")[0] + "\n")
    assert skip_reason(format_glaive, glaive("USER: hi\n\n\nASSISTANT: x <|endoftext|>",
                                             GLAIVE_SYS + "\n" + other)) == "duplicate_tool_name"


# ------------------------------------------------------------------------------------------------------ xLAM

def test_xlam_real_row_types_and_parallel_calls():
    rows = real("Salesforce_xlam-function-calling-60k.jsonl")
    conv = format_xlam(rows[0])
    assert conv.messages == [
        {"role": "user", "content": "Where can I find live giveaways for beta access and games?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"name": "live_giveaways_by_type", "arguments": {"type": "beta"}},
            {"name": "live_giveaways_by_type", "arguments": {"type": "game"}}]},
    ]
    t3ma = next(t for t in format_xlam(rows[2]).tools if t["name"] == "t3ma")
    assert t3ma["parameters"]["required"] == ["symbol", "interval"]
    assert t3ma["parameters"]["properties"]["outputsize"] == {
        "type": "integer", "description": "Number of data points to return. Default is 30.", "default": 30}
    assert t3ma["parameters"]["properties"]["symbol"]["type"] == "string"
    for row in rows:
        assert format_xlam(row).messages[-1]["tool_calls"]


@pytest.mark.parametrize("text, schema, optional", [
    ("str", {"type": "string"}, False), ("int, optional", {"type": "integer"}, True),
    ("List[int]", {"type": "array", "items": {"type": "integer"}}, False),
    ("bool, optional", {"type": "boolean"}, True),
    ("Optional[float]", {"type": "number"}, True), ("Dict[str, Any]", {"type": "object"}, False),
    ("Callable", {}, False), ("list", {"type": "array"}, False),
])
def test_python_type_to_schema(text, schema, optional):
    assert python_type_to_schema(text) == (schema, optional)


def test_xlam_dirt():
    tools = json.dumps([{"name": "f", "description": "d", "parameters": {"x": {"type": "str"}}}])
    assert skip_reason(format_xlam, {"id": 1, "query": "q", "answers": "[{", "tools": tools}) == "bad_tools_json"
    assert skip_reason(format_xlam, {"id": 1, "query": "q", "answers": "[]", "tools": tools}) == "empty_answer"
    answers = json.dumps([{"name": "g", "arguments": {}}])
    row = {"id": 1, "query": "q", "answers": answers, "tools": tools}
    assert skip_reason(format_xlam, row) == "undeclared_function"
    assert skip_reason(format_xlam, {"id": 1, "query": "q", "tools": tools}) == "missing_field"


# ---------------------------------------------------------------------------------------------------- Hermes

def test_hermes_real_python_dict_call_and_tool_response():
    conv = format_hermes(real("NousResearch_hermes-function-calling-v1.jsonl")[0])
    assert conv.developer_instructions == (
        "You are a function calling AI model. You are provided with function signatures. You may call one or more "
        "functions to assist with the user query. Don't make assumptions about what values to plug into functions.")
    assert [t["name"] for t in conv.tools] == ["search_flights"]
    assert [m["role"] for m in conv.messages] == ["user", "assistant", "tool", "assistant"]
    assert conv.messages[1] == {"role": "assistant", "content": "", "tool_calls": [{"name": "search_flights",
        "arguments": {"departure_city": "Los Angeles", "destination_city": "Auckland", "departure_date": "2023-07-10",
                      "return_date": "2023-07-24", "class": "economy", "flexible_cancellation": True}}]}
    assert conv.messages[2]["name"] == "search_flights"
    assert json.loads(conv.messages[2]["content"])["flights"][0]["flight_number"] == "AA118"


def test_hermes_real_rows_name_inside_arguments_and_json_mode():
    rows = real("NousResearch_hermes-function-calling-v1.jsonl")
    assert skip_reason(format_hermes, rows[1]) == "bad_call_syntax"  # card row afba1f0c
    conv = format_hermes(rows[2])
    assert conv.tools is None
    assert conv.developer_instructions.startswith("You are a helpful assistant that answers in JSON.")
    assert conv.developer_instructions.endswith("</schema>")
    assert conv.messages[1]["role"] == "assistant"
    assert json.loads(conv.messages[1]["content"])["movieId"] == "INTSTL_2014"


def test_hermes_dirt():
    rows = real("NousResearch_hermes-function-calling-v1.jsonl")
    row = json.loads(json.dumps(rows[0]))
    row["conversations"][1]["from"] = "observer"
    assert skip_reason(format_hermes, row) == "unknown_role"
    row = json.loads(json.dumps(rows[0]))
    row["conversations"][2]["value"] = "<tool_call>\n{'arguments': {'x': 1}, 'name': 'book_hotel'}\n</tool_call>"
    assert skip_reason(format_hermes, row) == "undeclared_function"
    row["conversations"][2]["value"] = "<tool_call>\n{'arguments': {'x': , 'name': 'search_flights'}\n</tool_call>"
    assert skip_reason(format_hermes, row) == "arguments_not_json"
    row = json.loads(json.dumps(rows[0]))
    row["conversations"][3]["value"] = "no response block"
    assert skip_reason(format_hermes, row) == "bad_tool_response"


# -------------------------------------------------------------------------------------------------- code-act

MINT = ("You are a helpful assistant. Your code should be enclosed using \"<execute>\" tag, for example: <execute> "
        "print(\"Hello World!\") </execute>.\n\nTool function available (already imported in <execute> environment):"
        "\n[1] wikipedia_search(query: str) -> str")


def test_code_act_execute_becomes_tool_call_and_observation_tool_result():
    conv = format_code_act({"id": "x", "conversations": [
        {"role": "system", "content": MINT}, {"role": "user", "content": "Task:\n2**10?"},
        {"role": "assistant", "content": "Compute it.\n<execute>\nprint(2 ** 10)\n</execute>"},
        {"role": "user", "content": "Observation:\n1024\nYou have 4 steps left."},
        {"role": "assistant", "content": "The answer is <solution> 1024 </solution>."}]})
    assert conv.reasoning_effort == "high"
    assert conv.developer_instructions == (CODING_AGENT_DEV_PROMPT + "\n\nTool function available (already imported "
                                           "in <execute> environment):\n[1] wikipedia_search(query: str) -> str")
    assert [t["name"] for t in conv.tools] == ["execute_ipython"]
    assert conv.messages == [
        {"role": "user", "content": "Task:\n2**10?"},
        {"role": "assistant", "content": "", "thinking": "Compute it.",
         "tool_calls": [{"name": "execute_ipython", "arguments": {"code": "print(2 ** 10)"}}]},
        {"role": "tool", "name": "execute_ipython", "content": "Observation:\n1024\nYou have 4 steps left."},
        {"role": "assistant", "content": "The answer is 1024."},
    ]


def test_code_act_general_chat_and_dirt():
    conv = format_code_act({"id": "g", "conversations": [{"role": "system", "content": "Be brief."},
                                                         {"role": "user", "content": "Hi"},
                                                         {"role": "assistant", "content": "Hello!"}]})
    assert conv.tools is None and conv.developer_instructions == CODING_AGENT_DEV_PROMPT + "\n\nBe brief."
    two = {"role": "assistant", "content": "<execute>a</execute><execute>b</execute>"}
    assert skip_reason(format_code_act, {"conversations": [{"role": "user", "content": "t"}, two]}) == \
        "multiple_execute_blocks"
    open_block = {"role": "assistant", "content": "<execute>print(1)"}
    assert skip_reason(format_code_act, {"conversations": [{"role": "user", "content": "t"}, open_block]}) == \
        "unclosed_execute"
    assert skip_reason(format_code_act, {"conversations": [{"role": "critic", "content": "t"}]}) == "unknown_role"


# --------------------------------------------------------------------------------------- commitpackft/EditPackFT

def test_commitpackft_real_row_trajectory():
    conv = format_commitpackft(real("bigcode_commitpackft.jsonl")[0])
    assert conv.developer_instructions == CODING_AGENT_DEV_PROMPT and conv.reasoning_effort == "medium"
    assert [t["name"] for t in conv.tools] == ["read_file", "apply_patch", "run_command"]
    m = conv.messages
    assert m[0] == {"role": "user", "content": "Make this change in `main.py`:\n\nChange to sin() function with noise"}
    assert m[1]["tool_calls"] == [{"name": "read_file", "arguments": {"path": "main.py"}}]
    old = real("bigcode_commitpackft.jsonl")[0]["old_contents"]
    assert m[2] == {"role": "tool", "name": "read_file", "content": old}
    patch = m[3]["tool_calls"][0]["arguments"]["patch"]
    assert patch.startswith("--- a/main.py\n+++ b/main.py\n@@ -1,9 +1,11 @@\n+import math\n")
    assert ("-x_data = np.linspace(-5, 5, 20)\n-y_data = np.random.normal(0.0, 1.0, x_data.size)\n"
            "+x_data = np.linspace(-math.pi, math.pi, 30)\n") in patch
    assert m[4] == {"role": "tool", "name": "apply_patch", "content": "Patch applied to main.py."}
    assert m[5]["tool_calls"] == [{"name": "run_command", "arguments": {"command": "git diff --stat"}}]
    assert m[6]["content"] == " main.py | 6 ++++--\n 1 file changed, 4 insertions(+), 2 deletions(-)"
    assert m[7] == {"role": "assistant", "content": "Updated `main.py`: Change to sin() function with noise."}


def commit(**kw) -> dict:
    row = {"commit": "0" * 40, "old_file": "a.py", "new_file": "a.py", "old_contents": "x = 1\n",
           "new_contents": "x = 2\n", "subject": "Bump x", "message": "Bump x\n", "lang": "Python", "license": "mit",
           "repos": "r/r"}
    return row | kw


def test_commit_dirt():
    assert skip_reason(format_commitpackft, commit(new_contents="x = 1\n")) == "no_change"
    big = "".join(f"v{i} = {i}\n" for i in range(600))
    assert skip_reason(format_commitpackft, commit(old_contents=big, new_contents=big.replace(" = ", "="))) == \
        "diff_too_large"
    assert skip_reason(format_commitpackft, commit(subject="", message="")) == "empty_message"
    assert skip_reason(format_commitpackft, commit(old_contents=None)) == "missing_field"


def test_editpackft_uses_instruction_and_new_file_has_no_read_step():
    conv = format_editpackft(commit(instruction="Change x to 2.", old_contents="", new_contents="x = 2\n"))
    assert conv.messages[0]["content"] == "Change x to 2.\n\nThe file to edit is `a.py`."
    assert [c["name"] for m in conv.messages for c in m.get("tool_calls", [])] == ["apply_patch", "run_command"]


# ---------------------------------------------------------------------------------------------- preferences

def test_hh_rlhf_real_rows():
    rows = real("Anthropic_hh-rlhf.jsonl")
    pair = format_hh_rlhf(rows[3])  # line 9: a one-turn pair
    assert pair.prompt.messages == [{"role": "user", "content": "Is it possible to download a car?"}]
    assert (pair.chosen, pair.rejected) == ("I’m not sure what you mean. Can you clarify?",
                                            "I’m sorry, I don’t understand.")
    assert format_hh_rlhf(rows[4]).prompt.messages[-2]["content"].startswith("Human: So she")  # embedded "Human:"
    assert skip_reason(format_hh_rlhf, rows[5]) == "empty_chosen"  # line 86
    assert skip_reason(format_hh_rlhf, rows[6]) == "bad_turn_order"  # line 1254: two Assistant turns in a row
    assert skip_reason(format_hh_rlhf, rows[7]) == "bad_turn_order"  # line 1560


def test_hh_rlhf_prefix_mismatch_and_identical():
    row = {"chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d",
           "rejected": "\n\nHuman: a\n\nAssistant: B\n\nHuman: c\n\nAssistant: e"}
    assert skip_reason(format_hh_rlhf, row) == "prefix_mismatch"
    same = {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: b"}
    assert skip_reason(format_hh_rlhf, same) == "identical_pair"


def test_code_feedback_real_row():
    row = real("m-a-p_CodeFeedback-Filtered-Instruction.jsonl")[0]
    pair = format_code_feedback(row)
    assert pair.prompt.messages == [{"role": "user", "content": row["query"]}]
    assert pair.chosen == row["answer"]
    assert pair.rejected == ("To convert the statement in SQL to equivalent PostgreSQL syntax, you can use the "
                             "following query:\n\n```sql\nSELECT *\nFROM " + STALLING_PHRASE)
    assert skip_reason(format_code_feedback, row | {"answer": " "}) == "empty_answer"
    assert skip_reason(format_code_feedback, row | {"answer": "print(1)"}) == "answer_too_short"
