"""Phase 0 end to end on data/samples: outputs, report, idempotence, failures, and the Harmony round-trip check."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline_lib import data_prep
from pipeline_lib.formatters import Conversation, PreferencePair, SkipRow

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "tui_data_prep.py"
FAKE_TOKEN = "hf_fakeTOKEN1234567890secret"


def load_script():
    spec = importlib.util.spec_from_file_location("tui_data_prep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One real CLI run (subprocess) on a copy of data/samples, quick-test mode."""
    samples = tmp_path_factory.mktemp("samples")
    for path in (REPO / "data" / "samples").glob("*.jsonl"):
        shutil.copy(path, samples / path.name)
    out = tmp_path_factory.mktemp("out") / "coding_tui"
    env = dict(os.environ, HF_TOKEN=FAKE_TOKEN)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--source", "local", "--local-dir", str(samples),
                           "--output-dir", str(out), "--quick-test"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return samples, out, proc


def test_cli_writes_three_datasets_and_report(built):
    from datasets import load_from_disk

    _, out, proc = built
    assert proc.stdout.strip().splitlines()[-1].startswith("data prep: tool_calling ")
    columns = {"tool_calling": {"text", "source"}, "agent_traj": {"text", "source"},
               "preference": {"text", "pref_prompt", "pref_chosen", "pref_rejected", "source"}}
    report = json.loads((out / "prep_report.json").read_text())
    for category, expected in columns.items():
        dataset = load_from_disk(str(out / category / "train"))
        assert set(dataset.column_names) == expected
        assert len(dataset) == report["categories"][category]["rows"] > 0
    heldout = load_from_disk(str(out / data_prep.HELDOUT_DIR))
    assert set(heldout.column_names) == {"text", "source", "eval_prompt", "eval_call"}
    assert len(heldout) == report["categories"]["tool_calling"]["heldout"]["rows"] > 0
    train_texts = set(load_from_disk(str(out / "tool_calling" / "train"))["text"])
    assert not train_texts & set(heldout["text"])  # never trained on
    assert set(report["datasets"]) == {s.key for s in data_prep.SPECS}
    for key, entry in report["datasets"].items():
        assert entry["status"] == "ok", key
        assert entry["read"] == entry["kept"] + sum(entry["skipped"].values()), key
        assert entry["kept"] > 0 and set(entry["tokens"]) == {"min", "mean", "p50", "p95", "max"}, key
        assert entry["tokens"]["min"] <= entry["tokens"]["p50"] <= entry["tokens"]["p95"] <= entry["tokens"]["max"]
    # The dirt in the samples lands in the counters it belongs to.
    assert report["datasets"]["glaive"]["skipped"]["undeclared_function"] == 1
    assert report["datasets"]["xlam"]["skipped"]["invalid_json_line"] == 1
    assert report["datasets"]["hh_rlhf"]["skipped"]["prefix_mismatch"] == 1
    assert report["datasets"]["commitpackft"]["skipped"]["diff_too_large"] == 1
    assert {"git_sha", "libraries", "command", "config"} <= set(report["provenance"])
    text = (out / "prep_report.json").read_text() + proc.stdout + proc.stderr
    assert FAKE_TOKEN not in text


def test_saved_texts_round_trip_and_preference_columns_fit(built, gpt_oss_tokenizer):
    from datasets import load_from_disk

    from pipeline_lib.harmony import parse_harmony_conversation

    _, out, _ = built
    for category in ("tool_calling", "agent_traj"):
        for row in load_from_disk(str(out / category / "train")):
            assert row["text"].startswith("<|start|>system<|message|>")
            assert row["text"].endswith(("<|return|>", "<|call|>"))
            ids = gpt_oss_tokenizer(row["text"], add_special_tokens=False)["input_ids"]
            assert parse_harmony_conversation(ids)[-1]["role"] == "assistant"
    for row in load_from_disk(str(out / "preference" / "train")):
        assert row["pref_prompt"] + row["pref_chosen"] == row["text"]
        assert row["pref_prompt"].endswith("<|start|>assistant")
        for answer in (row["pref_chosen"], row["pref_rejected"]):
            assert answer.startswith("<|channel|>final<|message|>") and answer.endswith("<|return|>")
        assert row["pref_chosen"] != row["pref_rejected"]


def test_second_run_keeps_output_and_force_rebuilds(built, capsys):
    samples, out, _ = built
    script = load_script()
    marker = out / "tool_calling" / "train" / "dataset_info.json"
    before = marker.stat().st_mtime_ns
    assert script.main(["--source", "local", "--local-dir", str(samples), "--output-dir", str(out),
                        "--quick-test"]) == 0
    assert "output exists, kept" in capsys.readouterr().out
    assert marker.stat().st_mtime_ns == before
    assert script.main(["--source", "local", "--local-dir", str(samples), "--output-dir", str(out),
                        "--quick-test", "--force"]) == 0
    assert marker.stat().st_mtime_ns != before


def test_all_datasets_missing_is_a_hard_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--source", "local", "--local-dir", str(empty),
                           "--output-dir", str(tmp_path / "out"), "--quick-test"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert "every dataset failed" in proc.stdout
    report = json.loads((tmp_path / "out" / "prep_report.json").read_text())
    assert all(d["status"] == "failed" for d in report["datasets"].values())
    assert not (tmp_path / "out" / "tool_calling").exists()


def test_one_missing_dataset_is_a_warning(built, tmp_path, gpt_oss_tokenizer):
    samples, _, _ = built
    partial = tmp_path / "partial"
    shutil.copytree(samples, partial)
    (partial / "Salesforce__xlam-function-calling-60k.jsonl").unlink()
    options = data_prep.Options(source="local", local_dir=partial, output_dir=tmp_path / "out", quick_test=True,
                                limits=data_prep.load_limits(yaml.safe_load(
                                    (REPO / "configs" / "data_prep.yaml").read_text())),
                                only=("glaive", "xlam", "code_act", "hh_rlhf"), max_tokens=200)
    report = data_prep.run(options, gpt_oss_tokenizer)
    assert report["datasets"]["xlam"]["status"] == "failed"
    assert any(w.startswith("xlam/default failed: FileNotFoundError") for w in report["warnings"])
    assert report["datasets"]["glaive"]["status"] == "ok"
    assert report["datasets"]["glaive"]["skipped"]["too_long"] >= 1  # --max-tokens drops are counted
    assert report["datasets"]["glaive"]["tokens"]["max"] <= 200


def test_roundtrip_check_catches_a_corrupted_text(gpt_oss_tokenizer):
    from pipeline_lib.harmony import encode_harmony_messages

    messages = [{"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "", "thinking": "add",
                 "tool_calls": [{"name": "calc", "arguments": {"expr": "2+2"}}]},
                {"role": "tool", "name": "calc", "content": "4"}, {"role": "assistant", "content": "4"}]
    tools = [{"name": "calc", "description": "Evaluate.", "parameters": {"type": "object", "properties": {
        "expr": {"type": "string"}}, "required": ["expr"]}}]
    text = encode_harmony_messages(messages, tools=tools)
    assert data_prep.roundtrip_ok(text, messages, gpt_oss_tokenizer)[0]
    # Negative controls: a changed tool result, a dropped message boundary, a renamed call.
    assert not data_prep.roundtrip_ok(text.replace("<|message|>4<|end|>", "<|message|>5<|end|>"), messages,
                                      gpt_oss_tokenizer)[0]
    assert not data_prep.roundtrip_ok(text.replace("<|end|><|start|>assistant<|channel|>final", "", 1), messages,
                                      gpt_oss_tokenizer)[0]
    assert not data_prep.roundtrip_ok(text.replace("to=functions.calc", "to=functions.calk"), messages,
                                      gpt_oss_tokenizer)[0]


def test_render_example_skips_text_with_control_tokens_and_renders_pairs(gpt_oss_tokenizer):
    bad = Conversation([{"role": "user", "content": "hi <|end|> there"}, {"role": "assistant", "content": "ok"}])
    with pytest.raises(SkipRow) as skipped:
        data_prep.render_example(bad, gpt_oss_tokenizer)
    assert skipped.value.reason == "special_token_in_text"
    pair = PreferencePair(Conversation([{"role": "user", "content": "Capital of France?"}]), "Paris.", "Rome.")
    example = data_prep.render_example(pair, gpt_oss_tokenizer)
    assert example.pref_chosen == "<|channel|>final<|message|>Paris.<|return|>"
    assert example.pref_rejected == "<|channel|>final<|message|>Rome.<|return|>"
    assert example.text == example.pref_prompt + example.pref_chosen


def test_local_filenames_and_limits():
    assert data_prep.local_filename("bigcode/commitpackft", "c++") == "bigcode__commitpackft__c++.jsonl"
    assert data_prep.local_filename("glaiveai/glaive-function-calling-v2", None) == \
        "glaiveai__glaive-function-calling-v2.jsonl"
    assert data_prep.Limits(None, 300).for_part(True, 5) == 60  # Hermes: 300 over 5 configs
    assert data_prep.Limits(5000, 50, per_part=True).for_part(False, 6) == 5000
    assert data_prep.Limits(None, 50).for_part(False, 2) is None
    names = {data_prep.local_filename(s.hub_id, p) for s in data_prep.SPECS for p in s.parts}
    assert names == {p.name for p in (REPO / "data" / "samples").glob("*.jsonl")}


def test_one_bad_row_is_skipped_not_the_whole_part(tmp_path, gpt_oss_tokenizer):
    """A row whose formatter raises something other than SkipRow costs that row, not the dataset part."""
    name = data_prep.local_filename("nuprl/EditPackFT", None)
    good = [json.loads(line) for line in (REPO / "data" / "samples" / name).read_text().splitlines() if line.strip()]
    bad = dict(good[0], subject=5)  # (5 or "").strip() -> AttributeError inside the formatter
    local = tmp_path / "local"
    local.mkdir()
    (local / name).write_text("".join(json.dumps(row) + "\n" for row in [*good, bad]))
    spec = next(s for s in data_prep.SPECS if s.key == "editpackft")
    options = data_prep.Options(source="local", local_dir=local, limits={"editpackft": data_prep.Limits(None, 50)})
    result = data_prep.prepare_dataset(spec, options, gpt_oss_tokenizer)
    report = result.report()
    assert report["status"] == "ok" and result.parts["default"]["status"] == "ok"  # the bad row did not fail it
    assert report["skipped"]["error_AttributeError"] == 1
    assert report["read"] == len(good) + 1 == report["kept"] + sum(report["skipped"].values())
    assert report["kept"] >= 1
    with pytest.raises(AttributeError):  # control: the row really does raise outside SkipRow
        data_prep.FORMATTERS["editpackft"](bad)


def test_outputs_exist_is_false_after_a_failed_run(tmp_path):
    """A failed run writes a report with "error" but leaves older train/ folders: the next run must rebuild."""
    for folder in [*(Path(c) / "train" for c in data_prep.CATEGORIES), data_prep.HELDOUT_DIR]:
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "dataset_info.json").write_text("{}")
    report = tmp_path / data_prep.REPORT_NAME
    report.write_text(json.dumps({"source": "local", "categories": {}}))
    assert data_prep.outputs_exist(tmp_path)  # control: a finished run's output is kept
    (tmp_path / data_prep.HELDOUT_DIR / "dataset_info.json").unlink()
    assert not data_prep.outputs_exist(tmp_path)  # output from before the held-out split: rebuilt, not reused
    (tmp_path / data_prep.HELDOUT_DIR / "dataset_info.json").write_text("{}")
    report.write_text(json.dumps({"source": "local", "error": "every dataset failed"}))
    assert not data_prep.outputs_exist(tmp_path)
    report.write_text("{not json")
    assert not data_prep.outputs_exist(tmp_path)
    report.unlink()
    assert not data_prep.outputs_exist(tmp_path)


def test_scrub_error_removes_the_hf_token(monkeypatch):
    """Hub errors can quote the request (headers, URLs with the token): the text that reaches the report is scrubbed.

    The CLI run in ``built`` reads local files only, so it never touches HF_TOKEN; this checks the scrubber itself.
    """
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    err = OSError(f"401 Client Error for https://huggingface.co/api (Authorization: Bearer {FAKE_TOKEN})")
    assert FAKE_TOKEN in str(err)  # control: the raw error text carries the token
    scrubbed = data_prep._scrub_error(err)
    assert FAKE_TOKEN not in scrubbed
    assert scrubbed.startswith("OSError: 401 Client Error") and "<HF_TOKEN>" in scrubbed


def _local_part(tmp_path: Path, key: str, extra: list[bytes]) -> tuple[data_prep.DatasetSpec, Path, int]:
    """A local folder holding dataset ``key``'s sample file plus ``extra`` raw lines; returns (spec, folder, good)."""
    spec = next(s for s in data_prep.SPECS if s.key == key)
    name = data_prep.local_filename(spec.hub_id, None)
    lines = (REPO / "data" / "samples" / name).read_bytes().splitlines()
    local = tmp_path / "local"
    local.mkdir()
    (local / name).write_bytes(b"\n".join([*lines, *extra]) + b"\n")
    return spec, local, len([line for line in lines if line.strip()])


def test_a_huge_row_is_too_long_before_rendering_and_a_panic_costs_one_row(tmp_path, gpt_oss_tokenizer):
    """1 MB of one character makes openai_harmony panic (a BaseException): bounded before rendering, and a panic
    that still happens (bound switched off) skips that row only; the rows after it still render."""
    prompt = "\n\nHuman: " + "x" * 1_000_000 + "\n\nAssistant: "
    huge = json.dumps({"chosen": prompt + "Yes.", "rejected": prompt + "No."}).encode()
    spec, local, good = _local_part(tmp_path, "hh_rlhf", [huge])
    limits = {"hh_rlhf": data_prep.Limits(None, 100)}
    bounded = data_prep.prepare_dataset(spec, data_prep.Options(source="local", local_dir=local, limits=limits),
                                        gpt_oss_tokenizer)
    unbounded = data_prep.prepare_dataset(spec, data_prep.Options(source="local", local_dir=local, limits=limits,
                                                                  max_row_chars=None), gpt_oss_tokenizer)
    for result, reason in ((bounded, "too_long"), (unbounded, "error_PanicException")):
        report = result.report()
        assert report["status"] == "ok" and report["read"] == good + 1, reason
        assert report["skipped"][reason] == 1, report["skipped"]
        assert report["kept"] == bounded.report()["kept"] >= 1
    # Control: the row really panics, and the panic is not an Exception (the old per-row catch missed it).
    with pytest.raises(BaseException) as raised:
        data_prep.render_example(data_prep.FORMATTERS["hh_rlhf"](json.loads(huge)), gpt_oss_tokenizer)
    assert data_prep.is_rust_panic(raised.value) and not isinstance(raised.value, Exception)


def test_max_row_chars_is_derived_from_the_longest_training_sequence():
    longest = max(yaml.safe_load((REPO / "configs" / name).read_text())[key] for name, key in (
        ("tool_calling_sft.yaml", "max_seq_length"), ("agent_sft.yaml", "max_seq_length"), ("ipo.yaml", "max_length")))
    config = yaml.safe_load((REPO / "configs" / "data_prep.yaml").read_text())
    assert config["max_row_chars"] == data_prep.MAX_ROW_CHARS == 4 * longest


def test_a_non_utf8_line_costs_that_line_and_is_named(tmp_path, gpt_oss_tokenizer):
    """One bad byte used to drop the whole file (good rows included) as a 'gated' failure, with no line number."""
    prompt = b"\\n\\nHuman: caf\xe9?\\n\\nAssistant: "  # cafe in latin-1
    bad = b'{"chosen": "' + prompt + b'Yes.", "rejected": "' + prompt + b'No."}'
    with pytest.raises(UnicodeDecodeError):  # control: the line really is not UTF-8
        bad.decode("utf-8")
    spec, local, good = _local_part(tmp_path, "hh_rlhf", [bad, b"not json"])
    limits = {"hh_rlhf": data_prep.Limits(None, 100)}
    result = data_prep.prepare_dataset(spec, data_prep.Options(source="local", local_dir=local, limits=limits),
                                       gpt_oss_tokenizer)
    report = result.report()
    assert report["status"] == "ok" and report["read"] == good + 2
    assert report["skipped"]["invalid_utf8_line"] == 1 and report["skipped"]["invalid_json_line"] == 1
    clean = data_prep.prepare_dataset(spec, data_prep.Options(source="local", local_dir=REPO / "data" / "samples",
                                                              limits=limits), gpt_oss_tokenizer)
    assert report["kept"] == clean.report()["kept"] > 0  # every good row of the file is kept
    name = data_prep.local_filename(spec.hub_id, None)
    warnings = data_prep.part_warnings(result)
    assert f"hh_rlhf/default: invalid_utf8_line skipped at {name}:{good + 1}" in warnings
    assert f"hh_rlhf/default: invalid_json_line skipped at {name}:{good + 2}" in warnings
    assert not any("(gated" in w for w in warnings)


def test_gated_is_blamed_only_on_the_hubs_own_answer(tmp_path, monkeypatch):
    from datasets.exceptions import DatasetNotFoundError

    spec = next(s for s in data_prep.SPECS if s.key == "xlam")
    answers = {"gated": DatasetNotFoundError(f"Dataset '{spec.hub_id}' is a gated dataset on the Hub. You must be "
                                             "authenticated to access it."),
               "offline": ConnectionError(f"Couldn't reach '{spec.hub_id}' on the Hub (ConnectError)")}
    for answer, error in answers.items():
        def refuse(*_args, error=error):
            raise error
        monkeypatch.setattr(data_prep, "_load_hub", refuse)
        result = data_prep.prepare_dataset(spec, data_prep.Options(source="hub", limits={
            "xlam": data_prep.Limits(None, 5)}), None)
        (warning,) = data_prep.part_warnings(result)
        assert ("(gated on the hub" in warning) == (answer == "gated"), warning
    # A local file that is missing or unreadable is never "gated".
    local = tmp_path / "empty"
    local.mkdir()
    result = data_prep.prepare_dataset(spec, data_prep.Options(source="local", local_dir=local, limits={
        "xlam": data_prep.Limits(None, 5)}), None)
    (warning,) = data_prep.part_warnings(result)
    assert warning.startswith("xlam/default failed: FileNotFoundError") and "(gated" not in warning


def test_an_empty_file_and_an_unknown_file_name_are_warned_about(built, tmp_path, gpt_oss_tokenizer):
    from io import StringIO

    from rich.console import Console

    samples, _, _ = built
    local = tmp_path / "local"
    shutil.copytree(samples, local)
    (local / data_prep.local_filename("Salesforce/xlam-function-calling-60k", None)).write_text("")
    (local / "foo__bar.jsonl").write_text('{"a": 1}\n')
    log = StringIO()
    limits = {key: data_prep.Limits(None, 3) for key in ("glaive", "xlam", "code_act", "hh_rlhf")}
    report = data_prep.run(data_prep.Options(source="local", local_dir=local, output_dir=tmp_path / "out",
                                             quick_test=True, limits=limits,
                                             only=("glaive", "xlam", "code_act", "hh_rlhf")),
                           gpt_oss_tokenizer, console=Console(file=log, width=300))
    expected = ["xlam/default: the local file has no rows",
                "unknown local file foo__bar.jsonl ignored: no dataset reads it"]
    for text in expected:
        assert any(w.startswith(text) for w in report["warnings"]), report["warnings"]
        assert text in log.getvalue()
    assert report["datasets"]["glaive"]["status"] == "ok"
    assert data_prep.unknown_local_files(samples) == []  # control: the bundled samples are all known names
