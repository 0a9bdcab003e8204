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


# --------------------------------------------------------------------------------------------- pass@1 plumbing


def clamp_tasks() -> list[dict]:
    from test_trajectories import MUTANTS, task

    return [task(op) | {"split": "heldout"} for op in MUTANTS]


def test_pass_at_1_is_one_for_the_reference_fix_and_zero_for_garbage():
    from pipeline_lib.agent_tasks import task_prompt
    from pipeline_lib.evaluation import evaluate_tasks
    from pipeline_lib.formatters import unified_diff
    from pipeline_lib.trajectories import patch_call_completion

    tasks = clamp_tasks()
    by_prompt = {task_prompt(t): t for t in tasks}
    seen = []

    def reference_model(prompts, max_new_tokens):  # answers the prompt it is given, with that task's real fix
        seen.extend(prompts)
        out = []
        for prompt in prompts:
            t = by_prompt[prompt]
            diff = unified_diff(t["files"]["clamp.py"], t["reference_fix"], "clamp.py", "clamp.py")
            out.append(patch_call_completion(t, t["failure"], diff))
        return out

    good = evaluate_tasks(tasks, reference_model, 64, batch_size=2)
    assert good["pass_at_1"] == 1.0 and good["mean_reward"] == 1.0 and good["n"] == 3
    assert seen == [task_prompt(t) for t in tasks]  # every task, the GRPO prompt, in order
    garbage = evaluate_tasks(tasks, lambda prompts, n: ["<|channel|>final<|message|>no idea<|return|>"] * len(prompts),
                             64)
    assert garbage["pass_at_1"] == 0.0 and all(not r["tests_passed"] for r in garbage["tasks"])
    swapped = evaluate_tasks(tasks, lambda prompts, n: reference_model(prompts[::-1], n)[::-1][::-1], 64,
                             batch_size=3)  # each task answered with another task's fix: fails
    assert swapped["pass_at_1"] < 1.0


def write_heldout(tmp_path):
    from pipeline_lib.data_prep import Example, save_category, split_tool_calling_heldout

    tools = [{"name": "get_weather", "description": "Weather", "parameters": None}]
    pairs = [("xlam", Example(f"text{i}", 5, conversation=Conversation(
        [{"role": "user", "content": f"Weather {i}?"},
         {"role": "assistant", "content": "", "tool_calls": [{"name": "get_weather", "arguments": {"i": i}}]}],
        tools=tools))) for i in range(10)]
    _, heldout = split_tool_calling_heldout(pairs, 2, seed=0)
    return save_category([(s, e) for s, e, _, _ in heldout], "tool_calling", tmp_path, 0, split="heldout",
                         extra_columns={"eval_prompt": [h[2] for h in heldout], "eval_call": [h[3] for h in heldout]})


def test_run_evaluation_writes_json_and_markdown(tmp_path):
    from pipeline_lib.evaluation import EvalConfig, load_stage_results, run_evaluation, write_report

    heldout = write_heldout(tmp_path)
    tasks = tmp_path / "heldout.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in clamp_tasks()))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    config = EvalConfig(model=str(model), task_file=str(tasks), tool_calling_data=str(heldout), stage="base",
                        output_dir=str(tmp_path / "eval"), max_tasks=2)

    def echo_call(prompts, n):  # calls get_weather with the number in the user's question: right for every row
        return [' to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{"i": '
                + p.split("Weather ")[1].split("?")[0] + "}<|call|>" if "Weather " in p else "no fix"
                for p in prompts]

    result = run_evaluation(config, echo_call)
    assert result["tasks"]["n"] == 2 and result["tasks"]["pass_at_1"] == 0.0  # tool calls are no fix
    assert result["tool_calls"]["n"] == 2 and result["tool_calls"]["tool_call_accuracy"] == 1.0
    json_path, md_path = write_report(result, config.output_dir, config.stage)
    assert load_stage_results(tmp_path / "eval", ["base", "ipo"]) == {"base": json.loads(
        json_path.read_text())["metrics"]}
    assert "| tool_call_accuracy | 1.000 | 2 |" in md_path.read_text()
    with pytest.raises(FileNotFoundError, match="--task_file"):
        EvalConfig(model=str(model), task_file=str(tmp_path / "missing.jsonl"), tool_calling_data=str(heldout))
    with pytest.raises(ValueError, match="--model"):
        EvalConfig(task_file=str(tasks), tool_calling_data=str(heldout))


@pytest.mark.slow
def test_cli_on_the_tiny_model(tmp_path, tiny_model_dir, repo_root):
    import subprocess
    import sys

    heldout = write_heldout(tmp_path)
    tasks = tmp_path / "heldout.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in clamp_tasks()))
    proc = subprocess.run([sys.executable, str(repo_root / "scripts" / "eval_coding_agent.py"), "--config",
                           str(repo_root / "configs" / "python_eval.yaml"), "--model", str(tiny_model_dir),
                           "--adapter", "", "--task-file", str(tasks), "--tool-calling-data", str(heldout),
                           "--stage", "base", "--output-dir", str(tmp_path / "eval"), "--max-tasks", "2",
                           "--max-new-tokens", "16", "--tool-call-max-new-tokens", "16"],
                          capture_output=True, text=True, timeout=600, cwd=repo_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "base.json").read_text())
    assert report["tasks"]["n"] == 2 and report["tool_calls"]["n"] == 2
    assert 0.0 <= report["metrics"]["pass_at_1"] <= 1.0 and report["provenance"]["git_sha"]
    assert proc.stdout.strip().splitlines()[-1].startswith("eval base: pass_at_1 ")


def test_cli_missing_tool_calling_data_is_one_clear_line(tmp_path, repo_root, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_cli", repo_root / "scripts" / "eval_coding_agent.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    tasks = tmp_path / "heldout.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in clamp_tasks()))
    argv = ["--config", str(repo_root / "configs" / "rust_eval.yaml"), "--task-file", str(tasks),
            "--tool-calling-data", str(tmp_path / "nothing"), "--adapter", str(tmp_path / "adapter")]
    with pytest.raises(SystemExit) as exit_info:  # each bad flag is named in turn: first the adapter
        cli.main(argv)
    assert exit_info.value.code == 2 and "error: --adapter " in capsys.readouterr().err
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    argv[-2:] = ["--adapter", "", "--model", str(model)]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("eval_coding_agent.py: error: --tool_calling_data ") and "--skip_tool_calls" in err
    assert "Traceback" not in err


def test_evaluate_stages_runs_each_stage_once_and_records_a_soft_gate(tmp_path):
    import os
    import time

    from pipeline_lib.evaluation import StageRun, evaluate_stages, record_eval_gate, summary_section
    from pipeline_lib.gates import read_gates

    heldout = write_heldout(tmp_path)
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    adapter = tmp_path / "agent_sft" / "final"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    loads = []

    def load(model, adapter_dir):  # the base answers every row right, the adapter every row wrong
        loads.append(model or adapter_dir)
        name = "get_weather" if adapter_dir is None else "get_forecast"
        return lambda prompts, n: [f' to=functions.{name}<|channel|>commentary <|constrain|>json<|message|>{{"i": '
                                   + p.split("Weather ")[1].split("?")[0] + "}<|call|>" for p in prompts]

    runs = [StageRun("base", str(base), None), StageRun("agent_sft", None, str(adapter))]
    settings = {"skip_tasks": True, "tool_calling_data": str(heldout)}
    results = evaluate_stages(runs, settings, tmp_path / "eval", load=load, log=lambda s: None)
    assert results == {"base": {"pass_at_1": None, "mean_reward": None, "tool_call_accuracy": 1.0,
                                "tool_call_valid": 1.0, "tool_call_right_function": 1.0},
                       "agent_sft": {"pass_at_1": None, "mean_reward": None, "tool_call_accuracy": 0.0,
                                     "tool_call_valid": 1.0, "tool_call_right_function": 0.0}}
    assert loads == [str(base), str(adapter)]
    evaluate_stages(runs, settings, tmp_path / "eval", load=load, log=lambda s: None)
    assert len(loads) == 2  # both reports current: nothing evaluated again
    later = time.time() + 5
    os.utime(adapter / "adapter_config.json", (later, later))  # the adapter was retrained
    evaluate_stages(runs, settings, tmp_path / "eval", load=load, log=lambda s: None)
    assert loads[2:] == [str(adapter)]

    gates = tmp_path / "quality_gates.json"
    warnings = record_eval_gate(gates, results)
    assert warnings == ["agent_sft tool_call_accuracy = 0.000 < base 1.000",
                        "agent_sft tool_call_right_function = 0.000 < base 1.000"]
    entry = read_gates(gates)["evaluation"]
    assert entry["type"] == "SOFT" and entry["passed"] == "false" and "agent_sft" in entry["warnings"]
    section = "\n".join(summary_section(tmp_path / "eval", ["base", "agent_sft", "ipo"]))
    assert "| agent_sft | 0.000 (-1.000) | 1.000 (+0.000) | 0.000 (-1.000) |" in section
    assert "WARN (soft): agent_sft tool_call_accuracy" in section
    assert summary_section(tmp_path / "nothing", ["base"]) == []


def test_pipeline_runs_and_settings_follow_the_workdir(tmp_path, repo_root):
    from pipeline_lib.evaluation import QUICK_SETTINGS, StageRun, pipeline_runs, pipeline_settings

    for folder in ("agent_sft", "agent_sft_ipo"):
        (tmp_path / "checkpoints" / folder / "final").mkdir(parents=True)
    (tmp_path / "checkpoints" / "agent_sft" / "final" / "adapter_config.json").write_text("{}")
    assert pipeline_runs(tmp_path, "checkpoints/tiny-gpt-oss") == [  # ipo has no adapter yet: not a stage
        StageRun("base", "checkpoints/tiny-gpt-oss", None),
        StageRun("agent_sft", None, str(tmp_path / "checkpoints" / "agent_sft" / "final"))]
    config = repo_root / "configs" / "python_eval.yaml"
    settings, notes = pipeline_settings(config, tmp_path, "python", quick=True)
    assert settings["skip_tasks"] and settings["skip_tool_calls"] and len(notes) == 2
    assert settings["task_file"] == str(tmp_path / "data" / "python" / "grpo" / "heldout.jsonl")
    assert QUICK_SETTINGS.items() <= settings.items() and "adapter" not in settings
    (tmp_path / "data" / "python" / "grpo").mkdir(parents=True)
    (tmp_path / "data" / "python" / "grpo" / "heldout.jsonl").write_text("{}\n")
    settings, notes = pipeline_settings(config, tmp_path, "python", quick=False)
    assert "skip_tasks" not in settings and settings["max_new_tokens"] == 1024 and len(notes) == 1


def _fake_pipeline_workdir(root, quick_test: bool):
    """A workdir whose run state (tool-calling held-out rows, an agent_sft adapter, a passed export with its
    first model card) is where run_tui_pipeline.sh puts it: <root>/quick-test/ for --quick-test, else <root>."""
    base_model = root / "tiny-gpt-oss"
    base_model.mkdir(parents=True)
    (base_model / "config.json").write_text("{}")
    state = root / "quick-test" if quick_test else root
    write_heldout(state / "data" / "coding_tui")
    adapter = state / "checkpoints" / "agent_sft" / "final"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    export = state / "checkpoints" / "tiny-gpt-oss-coding-tui-export"
    (export / "hf").mkdir(parents=True)
    manifest = {"passed": True, "base_model": str(base_model), "hf": {"path": str(export / "hf"), "passed": True},
                "source_adapter": {"phase": "agent_sft", "path": str(adapter)},
                "gguf": {"status": "disabled (--no-gguf)", "passed": None}}
    (export / "manifest.json").write_text(json.dumps(manifest))
    return base_model, state, export


def _right_caller(model, adapter_dir):  # every held-out row answered with its own expected call
    return lambda prompts, n: [' to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{"i": '
                               + p.split("Weather ")[1].split("?")[0] + "}<|call|>" for p in prompts]


def test_pipeline_step_under_quick_test_uses_the_quick_test_state(tmp_path):
    """run_tui_pipeline.sh --quick-test trains into <workdir>/quick-test/; its evaluation step reads the adapters and
    held-out rows there and writes its reports and gate there, never into the production logs/."""
    from pipeline_lib.evaluation import main
    from pipeline_lib.gates import read_gates

    base_model, state, _ = _fake_pipeline_workdir(tmp_path, quick_test=True)
    argv = ["pipeline", "--workdir", str(tmp_path), "--model", str(base_model), "--language", "python"]
    # control: without --quick-test the step looks at the production state, where nothing was trained
    assert main(argv, load=_right_caller) == 0
    assert not (state / "logs").exists() and read_gates(tmp_path / "logs" / "quality_gates.json")["evaluation"][
        "status"] == "skipped_no_data"
    assert main([*argv, "--quick-test"], load=_right_caller) == 0
    reports = sorted(p.name for p in (state / "logs" / "eval").glob("*.json"))
    assert reports == ["agent_sft.json", "base.json"]
    assert json.loads((state / "logs" / "eval" / "agent_sft.json").read_text())["metrics"]["tool_call_accuracy"] == 1
    assert read_gates(state / "logs" / "quality_gates.json")["evaluation"]["stages"] == "base, agent_sft"
    assert not (tmp_path / "logs" / "eval").exists()


def test_pipeline_step_rewrites_the_export_card_with_the_evaluation_table(tmp_path):
    """The export writes hf/README.md before the evaluation step runs; the step rewrites it with the table."""
    from pipeline_lib.evaluation import main
    from pipeline_lib.gguf_export import write_ready_to_use_files

    base_model, state, export = _fake_pipeline_workdir(tmp_path, quick_test=False)
    manifest = json.loads((export / "manifest.json").read_text())
    write_ready_to_use_files(manifest, state / "checkpoints", export)  # what Phase 5 wrote on a first run
    card = export / "hf" / "README.md"
    assert "No evaluation results" in card.read_text() and "| agent_sft |" not in card.read_text()
    argv = ["pipeline", "--workdir", str(tmp_path), "--model", str(base_model), "--language", "python"]
    assert main(argv, load=_right_caller) == 0
    text = card.read_text()
    evaluation = text.split("## Evaluation", 1)[1].split("\n## ", 1)[0]
    assert "No evaluation results" not in evaluation
    assert "| base | " in evaluation and "| agent_sft | " in evaluation and "tool_call_accuracy" in evaluation
    # an export that failed its checks keeps its card as it is (nothing to advertise)
    manifest["passed"] = False
    (export / "manifest.json").write_text(json.dumps(manifest))
    card.write_text("old card\n")
    (tmp_path / "logs" / "eval" / "agent_sft.json").unlink()
    assert main(argv, load=_right_caller) == 0
    assert card.read_text() == "old card\n"


def test_generator_loads_eager_attention(tiny_model_dir, monkeypatch):
    """Evaluation only generates: it loads eager attention even where the machine's default is flex (CUDA), as the
    merge and the export do. (A loader that asked for the machine's default would pass None here, and fail.)"""
    from pipeline_lib import evaluation, modeling

    cuda = modeling.Precision("cuda", True, "bfloat16", "flex_attention", "grouped_mm")
    monkeypatch.setattr(modeling, "detect_precision", lambda attn_implementation=None: (
        cuda if attn_implementation is None else modeling.Precision("cuda", True, "bfloat16", attn_implementation,
                                                                    "grouped_mm")))
    asked = []

    def fake_load(path, precision=None, **kwargs):
        asked.append(precision)
        raise RuntimeError("stop after the precision is known")

    monkeypatch.setattr(modeling, "load_causal_lm", fake_load)
    with pytest.raises(RuntimeError, match="stop after"):
        evaluation.HFGenerator.load(str(tiny_model_dir), None)
    assert [getattr(p, "attn_implementation", None) for p in asked] == ["eager"]
