"""Evaluation: tool-call accuracy on hand-made right/wrong calls, the held-out split, the stage table."""

from __future__ import annotations

import json

import pytest

from pipeline_lib import data_prep
from pipeline_lib.evaluation import regressions, score_tool_call, stage_table
from pipeline_lib.formatters import Conversation
from pipeline_lib.harmony import encode_harmony_messages

EXPECTED = {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}
# The header order this repo renders (recipient on the assistant header) and the order the brief's example uses
# (recipient after the channel): openai_harmony reads both.
RIGHT = (' to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>'
         '{"city": "Paris", "days": 3}<|call|>')
ANALYSIS_FIRST = "<|channel|>analysis<|message|>Paris, 3 days.<|end|><|start|>assistant" + RIGHT
RIGHT_CHANNEL_FIRST = ('<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>'
                       '{"days": 3.0, "city": "Paris"}<|call|>')


def call(name: str, arguments: str) -> str:
    return f" to=functions.{name}<|channel|>commentary <|constrain|>json<|message|>{arguments}<|call|>"


@pytest.mark.parametrize("completion", [RIGHT, RIGHT_CHANNEL_FIRST, ANALYSIS_FIRST])
def test_right_call_is_correct(completion):
    score = score_tool_call(completion, EXPECTED)
    assert score.correct and score.valid and score.right_function and score.arguments_equal, score


@pytest.mark.parametrize("completion, field, error", [
    (call("get_forecast", '{"city": "Paris", "days": 3}'), "right_function", "wrong function"),
    (call("get_weather", '{"city": "Lyon", "days": 3}'), "arguments_equal", "wrong arguments"),
    (call("get_weather", '{"city": "Paris"}'), "arguments_equal", "wrong arguments"),  # missing argument
    (call("get_weather", '{"city": "Paris", "days": true}'), "arguments_equal", "wrong arguments"),  # true is not 3
    (call("get_weather", '{"city": "Paris", "days": 3'), "arguments_json", "arguments are not a JSON object"),
    (call("get_weather", '["Paris", 3]'), "arguments_json", "arguments are not a JSON object"),
    ("<|channel|>final<|message|>It is sunny in Paris.<|return|>", "valid", "no tool call"),
])
def test_wrong_calls_are_wrong(completion, field, error):
    score = score_tool_call(completion, EXPECTED)
    assert not score.correct
    assert getattr(score, field) is False
    assert score.error == error


def test_malformed_harmony_is_invalid():
    score = score_tool_call("get_weather(city='Paris')", EXPECTED)
    assert not score.valid and not score.correct and score.error.startswith("not valid Harmony")
    unterminated = score_tool_call(' to=functions.get_weather<|channel|>commentary<|message|>{"city": ', EXPECTED)
    assert not unterminated.correct


def test_probe_of_a_rendered_row_scores_its_own_continuation(gpt_oss_tokenizer):
    """The held-out prompt + the row's real continuation is a correct call; a changed argument is not."""
    tools = [{"name": "get_weather", "description": "Weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}]
    messages = [{"role": "user", "content": "Weather in Paris for 3 days?"},
                {"role": "assistant", "content": "", "tool_calls": [EXPECTED]},
                {"role": "tool", "name": "get_weather", "content": "sunny"},
                {"role": "assistant", "content": "Sunny."}]
    conversation = Conversation(messages, tools=tools)
    prompt, expected = data_prep.tool_call_probe(conversation)
    assert prompt.endswith("<|start|>assistant") and expected == EXPECTED
    full = encode_harmony_messages(messages[:2], tools=tools)
    assert full.startswith(prompt)
    continuation = full[len(prompt):]
    assert score_tool_call(continuation, expected).correct
    assert not score_tool_call(continuation.replace("Paris", "Rome"), expected).correct


def test_heldout_split_never_overlaps_train():
    def example(i: int, calls: bool) -> data_prep.Example:
        message = {"role": "assistant", "content": "" if calls else "hi"}
        if calls:
            message["tool_calls"] = [{"name": "f", "arguments": {"i": i}}]
        conversation = Conversation([{"role": "user", "content": f"q{i}"}, message],
                                    tools=[{"name": "f", "description": "", "parameters": None}])
        return data_prep.Example(f"text{i}", 10, conversation=conversation)

    pairs = [("xlam", example(i, calls=i % 3 != 0)) for i in range(30)]  # 20 rows make a call
    train, heldout = data_prep.split_tool_calling_heldout(pairs, n_heldout=100, seed=1)
    assert len(heldout) == 4  # capped at 20% of the 20 calling rows
    held_texts = {e.text for _, e, _, _ in heldout}
    assert not held_texts & {e.text for _, e in train}
    assert len(train) + len(heldout) == 30
    for _, example_, prompt, call_json in heldout:
        i = int(example_.text.removeprefix("text"))
        assert json.loads(call_json) == {"name": "f", "arguments": {"i": i}} and prompt.endswith("assistant")
    again = data_prep.split_tool_calling_heldout(pairs, n_heldout=100, seed=1)[1]
    assert [h[0:2] for h in again] == [h[0:2] for h in heldout]  # seeded: the same rows every run


def test_stage_table_and_soft_regressions():
    results = {"base": {"pass_at_1": 0.25, "tool_call_accuracy": 0.5},
               "agent_sft": {"pass_at_1": 0.5, "tool_call_accuracy": 0.75},
               "ipo": {"pass_at_1": 0.25, "tool_call_accuracy": 0.75}}
    table = stage_table(results)
    assert "| agent_sft | 0.500 (+0.250) | 0.750 (+0.250) |" in table
    assert "| ipo | 0.250 (+0.000) | 0.750 (+0.250) |" in table
    assert regressions(results) == ["ipo pass_at_1 = 0.250 < agent_sft 0.500"]
    assert regressions({k: results[k] for k in ("base", "agent_sft")}) == []
