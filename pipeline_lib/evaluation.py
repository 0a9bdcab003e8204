"""Evaluation of a coding agent: pass@1 by execution on held-out tasks, tool-call accuracy on held-out Phase 0 rows.

    python scripts/eval_coding_agent.py --config configs/python_eval.yaml --model checkpoints/tiny-gpt-oss

- pass@1: for every held-out task (data/<language>/grpo/heldout.jsonl, never trained on) one greedy completion
  from the prompt GRPO uses (``agent_tasks.task_prompt``), scored by ``rewards.score_completion`` in the sandbox;
  pass@1 = the fraction whose tests pass. Greedy decoding makes this the single-sample pass@k estimate at k=1.
- tool-call accuracy: for every held-out tool-calling row (data/coding_tui/tool_calling/heldout, written by Phase 0
  and never trained on), one greedy completion from the conversation up to the assistant turn that makes the row's
  first call. Correct = the completion parses as Harmony (openai_harmony, strict), its first call names the right
  function, and its arguments are a JSON object equal to the expected one. Generation stops at the first ``<|call|>``
  or ``<|return|>``, so only the first call of a turn is compared (xLAM rows with parallel calls included).
- The stage table: every evaluated stage x metric with the delta to the base model, and a SOFT check that warns
  when a stage scores below the stage before it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline_lib import phases
from pipeline_lib.provenance import provenance, write_json_atomic

STOP_TOKENS = ("<|return|>", "<|call|>")  # the two ends of an assistant turn a client acts on
METRICS = ("pass_at_1", "mean_reward", "tool_call_accuracy", "tool_call_valid", "tool_call_right_function")
# A metric that dropped by more than this from the previous stage warns (SOFT). Greedy pass@1 on n tasks moves in
# steps of 1/n, so any real drop is at least 1/n; 1e-9 only absorbs float noise.
REGRESSION_TOLERANCE = 1e-9

Generate = Callable[[Sequence[str], int], list[str]]  # (prompts, max_new_tokens) -> completions after the prompt


# ------------------------------------------------------------------------------------------------------ config


@dataclass
class EvalConfig:
    """scripts/eval_coding_agent.py settings: configs/<language>_eval.yaml, CLI flags win."""

    language: str = field(default="python", metadata={"help": "python | rust | go | typescript"})
    task_file: str | None = field(default=None, metadata={
        "help": "Held-out tasks (JSON Lines); default data/<language>/grpo/heldout.jsonl."})
    tool_calling_data: str = field(default=str(Path(phases.default_run_dir(phases.DATA_PREP)) / "tool_calling"
                                               / "heldout"), metadata={
        "help": "Phase 0's held-out tool-calling split (datasets.save_to_disk folder)."})
    model: str | None = field(default=None, metadata={
        "help": "HF model folder to evaluate; with --adapter, the adapter's base (default: the adapter's own)."})
    adapter: str | None = field(default=None, metadata={"help": "LoRA adapter folder evaluated on its base."})
    stage: str | None = field(default=None, metadata={
        "help": "Report name: <output_dir>/<stage>.json/.md (default: the adapter's phase folder, else 'model')."})
    output_dir: str = field(default="logs/eval", metadata={"help": "Where the JSON and markdown reports go."})
    max_tasks: int | None = field(default=None, metadata={"help": "Evaluate the first N held-out tasks."})
    max_tool_examples: int | None = field(default=None, metadata={
        "help": "Evaluate the first N held-out tool-calling rows."})
    max_new_tokens: int = field(default=1024, metadata={"help": "Generation budget per task."})
    tool_call_max_new_tokens: int = field(default=256, metadata={"help": "Generation budget per tool-call row."})
    batch_size: int = field(default=1, metadata={"help": "Prompts generated together (left-padded)."})
    skip_tasks: bool = field(default=False, metadata={"help": "Do not run pass@1."})
    skip_tool_calls: bool = field(default=False, metadata={"help": "Do not run tool-call accuracy."})

    def __post_init__(self) -> None:
        from pipeline_lib.agent_tasks import LANGUAGES

        if self.language not in LANGUAGES:
            raise ValueError(f"--language {self.language!r}: expected one of {LANGUAGES}")
        self.task_file = self.task_file or f"data/{self.language}/grpo/heldout.jsonl"
        if not self.model and not self.adapter:
            raise ValueError("give --model (an HF model folder) or --adapter (a LoRA folder on its base)")
        if self.adapter and not (Path(self.adapter) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"--adapter {self.adapter}: no adapter_config.json")
        if not self.adapter and not (Path(self.model) / "config.json").is_file() and not _is_hub_id(self.model):
            raise FileNotFoundError(f"--model {self.model}: no config.json (an HF model folder or hub id is expected)")
        if self.skip_tasks and self.skip_tool_calls:
            raise ValueError("--skip_tasks and --skip_tool_calls together leave nothing to evaluate")
        if not self.skip_tasks and not Path(self.task_file).is_file():
            raise FileNotFoundError(f"--task_file {self.task_file}: no such file (scripts/16_generate_mutations.py "
                                    f"--language {self.language} writes it; --skip_tasks evaluates tool calls only)")
        if not self.skip_tool_calls and not (Path(self.tool_calling_data) / "dataset_info.json").is_file():
            raise FileNotFoundError(f"--tool_calling_data {self.tool_calling_data}: no held-out split (Phase 0 "
                                    "writes it; --skip_tool_calls evaluates tasks only)")
        for name in ("max_tasks", "max_tool_examples", "max_new_tokens", "tool_call_max_new_tokens", "batch_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name} must be positive, got {value}")
        if self.stage is None:
            self.stage = Path(self.adapter).parent.name if self.adapter else "model"


def _is_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def run_evaluation(config: EvalConfig, generate: Generate) -> dict[str, Any]:
    """Both evaluations the config asks for, with ``generate``; the result write_report takes."""
    from pipeline_lib.agent_tasks import load_tasks

    result: dict[str, Any] = {"model": config.model, "adapter": config.adapter, "language": config.language}
    if not config.skip_tasks:
        tasks = load_tasks(config.task_file, limit=config.max_tasks)
        result["tasks"] = evaluate_tasks(tasks, generate, config.max_new_tokens, batch_size=config.batch_size)
        result["tasks"]["task_file"] = config.task_file
    if not config.skip_tool_calls:
        examples = load_tool_call_examples(config.tool_calling_data, limit=config.max_tool_examples)
        result["tool_calls"] = evaluate_tool_calls(examples, generate, config.tool_call_max_new_tokens,
                                                   batch_size=config.batch_size)
        result["tool_calls"]["data"] = config.tool_calling_data
    return result


# ------------------------------------------------------------------------------------------- tool-call accuracy


@dataclass(frozen=True)
class ToolCallExample:
    id: str
    prompt: str  # Harmony text ending "<|start|>assistant"
    expected: dict[str, Any]  # {"name": str, "arguments": dict}


@dataclass
class ToolCallScore:
    valid: bool  # strict openai_harmony parse, and the completion makes a call
    right_function: bool
    arguments_json: bool  # the call's arguments are a JSON object
    arguments_equal: bool
    called: str | None = None
    error: str | None = None

    @property
    def correct(self) -> bool:
        return self.valid and self.right_function and self.arguments_json and self.arguments_equal


def score_tool_call(completion: str, expected: dict[str, Any]) -> ToolCallScore:
    """Compare the first tool call in ``completion`` (text after ``<|start|>assistant``) with ``expected``."""
    from pipeline_lib.harmony import parse_harmony_completion

    try:
        messages = parse_harmony_completion(completion, strict=True)
    except Exception as err:  # openai_harmony raises HarmonyError (a plain Exception) on a malformed stream
        return ToolCallScore(False, False, False, False, error=f"not valid Harmony: {err}"[:300])
    calls = [call for message in messages for call in message.get("tool_calls") or []]
    if not calls:
        return ToolCallScore(False, False, False, False, error="no tool call")
    call = calls[0]
    arguments = call["arguments"]  # a dict when the text is a JSON object, else the raw string
    is_object = isinstance(arguments, dict)
    right = call["name"] == expected["name"]
    equal = is_object and _json_equal(arguments, expected["arguments"])
    error = None if right and equal else ("wrong function" if not right else
                                          "arguments are not a JSON object" if not is_object else "wrong arguments")
    return ToolCallScore(True, right, is_object, equal, called=call["name"], error=error)


def _json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values: key order never matters; 1 == 1.0 as in JSON; True is not 1 (JSON tells them apart)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def load_tool_call_examples(path: str | os.PathLike, limit: int | None = None) -> list[ToolCallExample]:
    """The held-out split Phase 0 writes (columns eval_prompt, eval_call); errors name the folder and row."""
    from datasets import load_from_disk

    folder = Path(path)
    if not (folder / "dataset_info.json").is_file():
        raise FileNotFoundError(f"{folder}: no held-out tool-calling split (Phase 0 writes it: run "
                                "scripts/tui_data_prep.py, with --force if its output predates the split)")
    dataset = load_from_disk(str(folder))
    for column in ("eval_prompt", "eval_call"):
        if column not in dataset.column_names:
            raise ValueError(f"{folder}: no '{column}' column (has {dataset.column_names})")
    examples = []
    for index, row in enumerate(dataset):
        if limit is not None and index >= limit:
            break
        expected = json.loads(row["eval_call"])
        if not isinstance(expected, dict) or not isinstance(expected.get("arguments"), dict):
            raise ValueError(f"{folder} row {index}: eval_call must be {{'name', 'arguments': object}}")
        if not row["eval_prompt"].endswith("<|start|>assistant"):
            raise ValueError(f"{folder} row {index}: eval_prompt must end with <|start|>assistant")
        examples.append(ToolCallExample(f"{row.get('source', 'row')}-{index}", row["eval_prompt"], expected))
    if not examples:
        raise ValueError(f"{folder}: the held-out tool-calling split is empty")
    return examples


def evaluate_tool_calls(examples: Sequence[ToolCallExample], generate: Generate, max_new_tokens: int,
                        batch_size: int = 1) -> dict[str, Any]:
    """Generate for every example, score each; rates over all examples (an empty list is an error)."""
    if not examples:
        raise ValueError("no tool-calling examples to evaluate")
    rows = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        for example, completion in zip(batch, generate([e.prompt for e in batch], max_new_tokens), strict=True):
            score = score_tool_call(completion, example.expected)
            rows.append({"id": example.id, "expected": example.expected["name"], **asdict(score),
                         "correct": score.correct, "completion": completion[:500]})
    n = len(rows)
    return {"n": n, "tool_call_accuracy": sum(r["correct"] for r in rows) / n,
            "tool_call_valid": sum(r["valid"] for r in rows) / n,
            "tool_call_right_function": sum(r["right_function"] for r in rows) / n, "examples": rows}


# ---------------------------------------------------------------------------------------------------- pass@1


def evaluate_tasks(tasks: Sequence[dict[str, Any]], generate: Generate, max_new_tokens: int, *,
                   prompts: Sequence[str] | None = None, score: Callable[..., Any] | None = None,
                   batch_size: int = 1) -> dict[str, Any]:
    """One greedy completion per task, scored by execution; pass@1 = fraction with tests_passed."""
    from pipeline_lib.agent_tasks import task_prompt

    if not tasks:
        raise ValueError("no held-out tasks to evaluate")
    if score is None:
        from pipeline_lib.rewards import score_completion as score
    prompts = list(prompts) if prompts is not None else [task_prompt(task) for task in tasks]
    rows = []
    for start in range(0, len(tasks), batch_size):
        batch = list(range(start, min(start + batch_size, len(tasks))))
        completions = generate([prompts[i] for i in batch], max_new_tokens)
        for i, completion in zip(batch, completions, strict=True):
            result = score(tasks[i], completion)
            rows.append({"id": tasks[i]["id"], "operator": tasks[i].get("operator"),
                         "tests_passed": bool(result.tests_passed), "reward": float(result.reward),
                         "form": result.form, "applied": bool(result.applied), "error": result.error,
                         "completion": completion[:500]})
    n = len(rows)
    return {"n": n, "pass_at_1": sum(r["tests_passed"] for r in rows) / n,
            "mean_reward": sum(r["reward"] for r in rows) / n, "tasks": rows}


# ------------------------------------------------------------------------------------------------- generation


@dataclass
class HFGenerator:
    """Greedy generation with a transformers model; a completion is the decoded new tokens, specials kept."""

    model: Any
    tokenizer: Any
    stop_token_ids: list[int] = field(default_factory=list)

    @classmethod
    def load(cls, model_path: str | None, adapter: str | None) -> HFGenerator:
        """A model folder, or an adapter folder on its base (``model_path`` overrides the adapter's base)."""
        from pipeline_lib.modeling import inference_precision, load_causal_lm
        from pipeline_lib.unsloth_utils import load_training_tokenizer

        # Generation only: eager attention, as the merge and the export load (inductor's no-grad flex kernel failed
        # on the H100 and the H200: docs/BENCHMARKS.md).
        precision = inference_precision()
        if adapter:
            from peft import PeftModel

            from pipeline_lib.ipo import resolve_base_model

            base = resolve_base_model(adapter, model_path)
            model = PeftModel.from_pretrained(load_causal_lm(base, precision), adapter, is_trainable=False)
            tokenizer = load_training_tokenizer(base)
        else:
            if not model_path or not (Path(model_path).is_dir() or _is_hub_id(model_path)):
                raise FileNotFoundError(f"--model {model_path}: no such model folder")
            model, tokenizer = load_causal_lm(model_path, precision), load_training_tokenizer(model_path)
        model.eval()
        stops = [tokenizer.convert_tokens_to_ids(t) for t in STOP_TOKENS]
        return cls(model, tokenizer, stops)

    def __call__(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        import torch

        self.tokenizer.padding_side = "left"  # generation continues every row from its last real token
        batch = self.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        batch = {k: v.to(self.model.device) for k, v in batch.items()}
        with torch.inference_mode():
            output = self.model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens,
                                         eos_token_id=self.stop_token_ids,
                                         pad_token_id=self.tokenizer.pad_token_id, top_p=None, top_k=None,
                                         temperature=None)
        new = output[:, batch["input_ids"].shape[1]:]
        texts = []
        for row in new.tolist():
            cut = next((i + 1 for i, t in enumerate(row) if t in self.stop_token_ids), len(row))
            texts.append(self.tokenizer.decode(row[:cut], skip_special_tokens=False))
        return texts


# ------------------------------------------------------------------------------------------- reports + table


def metrics_of(result: dict[str, Any]) -> dict[str, float | None]:
    """The headline numbers of one evaluation (None where that part was not run)."""
    tasks, tools = result.get("tasks") or {}, result.get("tool_calls") or {}
    return {"pass_at_1": tasks.get("pass_at_1"), "mean_reward": tasks.get("mean_reward"),
            "tool_call_accuracy": tools.get("tool_call_accuracy"), "tool_call_valid": tools.get("tool_call_valid"),
            "tool_call_right_function": tools.get("tool_call_right_function")}


def write_report(result: dict[str, Any], output_dir: str | os.PathLike, stage: str,
                 config: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """``<output_dir>/<stage>.json`` (every row, metrics, provenance) and ``<stage>.md`` (headline + failures)."""
    out = Path(output_dir)
    data = {"stage": stage, "metrics": metrics_of(result), **result, "provenance": provenance(config)}
    json_path = write_json_atomic(out / f"{stage}.json", data)
    lines = [f"# Evaluation: {stage}", "", f"model: `{result.get('model')}`" +
             (f", adapter: `{result['adapter']}`" if result.get("adapter") else ""), "",
             "| metric | value | n |", "|---|---|---|"]
    tasks, tools = result.get("tasks") or {}, result.get("tool_calls") or {}
    for name, value in data["metrics"].items():
        n = tasks.get("n") if name in ("pass_at_1", "mean_reward") else tools.get("n")
        lines.append(f"| {name} | {_fmt(value)} | {n if value is not None else ''} |")
    if tasks:
        lines += ["", "## Held-out tasks", "", "| task | tests passed | reward | form | error |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['tests_passed']} | {r['reward']:.3f} | {r['form']} | "
                  f"{_cell(r['error'])} |" for r in tasks["tasks"]]
    if tools:
        lines += ["", "## Held-out tool calls", "", "| example | expected | called | correct | error |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['expected']} | {r['called']} | {r['correct']} | {_cell(r['error'])} |"
                  for r in tools["examples"]]
    md_path = out / f"{stage}.md"
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _cell(text: str | None) -> str:
    return "" if not text else text.replace("|", "\\|").replace("\n", " ")[:120]


def load_stage_results(eval_dir: str | os.PathLike, stages: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """Metrics of every stage in ``stages`` that has ``<eval_dir>/<stage>.json``, in that order."""
    found = {}
    for stage in stages:
        path = Path(eval_dir) / f"{stage}.json"
        if path.is_file():
            found[stage] = json.loads(path.read_text())["metrics"]
    return found


def stage_table(results: dict[str, dict[str, float | None]], base: str = "base") -> str:
    """Markdown: one row per stage, one column per metric, each cell ``value (+delta to base)``."""
    metrics = [m for m in METRICS if any(r.get(m) is not None for r in results.values())]
    reference = results.get(base, {})
    lines = ["| stage | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for stage, values in results.items():
        cells = []
        for metric in metrics:
            value, start = values.get(metric), reference.get(metric)
            delta = "" if stage == base or value is None or start is None else f" ({value - start:+.3f})"
            cells.append(_fmt(value) + delta)
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def regressions(results: dict[str, dict[str, float | None]]) -> list[str]:
    """SOFT gate: one warning per (stage, metric) that scored below the stage evaluated before it."""
    warnings, previous = [], None
    for stage, values in results.items():
        if previous is not None:
            before_stage, before = previous
            for metric in METRICS:
                now, then = values.get(metric), before.get(metric)
                if now is not None and then is not None and now < then - REGRESSION_TOLERANCE:
                    warnings.append(f"{stage} {metric} = {now:.3f} < {before_stage} {then:.3f}")
        previous = (stage, values)
    return warnings


# ------------------------------------------------------------------------------------- the orchestrator's step

EVAL_GATE_KEY = "evaluation"  # logs/quality_gates.json entry of the SOFT stage-vs-previous check
BASE_STAGE = "base"
# --quick (make demo, the tiny model): 4 tasks x 48 new tokens + 4 tool-calling rows x 24 tokens per stage keeps
# one stage near 10 s on the 2-core box; the tiny model's random weights score ~0 either way.
QUICK_SETTINGS = {"max_tasks": 4, "max_tool_examples": 4, "max_new_tokens": 48, "tool_call_max_new_tokens": 24}


@dataclass(frozen=True)
class StageRun:
    stage: str
    model: str | None  # a full model folder (the base), or None: the adapter's own base
    adapter: str | None


def report_is_current(report: Path, run: StageRun) -> bool:
    """An earlier report of this stage for the same model/adapter, newer than every file of the adapter."""
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return False
    if (data.get("model"), data.get("adapter")) != (run.model, run.adapter):
        return False
    if run.adapter is None:
        return True
    newest = max((p.stat().st_mtime for p in Path(run.adapter).iterdir() if p.is_file()), default=0.0)
    return report.stat().st_mtime > newest


def evaluate_stages(runs: Sequence[StageRun], settings: dict[str, Any], output_dir: str | os.PathLike,
                    load: Callable[[str | None, str | None], Generate] | None = None,
                    log: Callable[[str], None] = print) -> dict[str, dict[str, float | None]]:
    """Evaluate every stage whose report is missing or stale (the base once), then return every stage's metrics.

    ``settings``: EvalConfig fields shared by all stages (language, task_file, tool_calling_data, limits).
    """
    import gc

    load = load or HFGenerator.load
    out = Path(output_dir)
    for run in runs:
        report = out / f"{run.stage}.json"
        if report_is_current(report, run):
            log(f"eval {run.stage}: up to date ({report})")
            continue
        config = EvalConfig(**{**settings, "model": run.model, "adapter": run.adapter, "stage": run.stage,
                               "output_dir": str(out)})
        start = time.monotonic()
        generate = load(run.model, run.adapter)
        result = run_evaluation(config, generate)
        result["seconds"] = round(time.monotonic() - start, 1)  # model load + generation + scoring
        write_report(result, out, run.stage, asdict(config))
        log(f"eval {run.stage}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics_of(result).items()
                                              if v is not None) + f" ({result['seconds']} s)")
        del generate
        gc.collect()
    return load_stage_results(out, [run.stage for run in runs])


def record_eval_gate(gates_file: str | os.PathLike, results: dict[str, dict[str, float | None]]) -> list[str]:
    """SOFT gate: passed unless a stage scored below the stage before it; the warnings are recorded and returned."""
    from pipeline_lib.gates import record_gate

    warnings = regressions(results)
    record_gate(gates_file, EVAL_GATE_KEY, {
        "metric": "each stage >= the previous on " + ", ".join(METRICS), "type": "SOFT",
        "passed": "false" if warnings else "true", "stages": ", ".join(results), "warnings": "; ".join(warnings)})
    return warnings


def summary_section(eval_dir: str | os.PathLike, stages: Sequence[str]) -> list[str]:
    """Markdown lines for logs/summary.md: the stage table and the SOFT warnings ([] when nothing was evaluated)."""
    results = load_stage_results(eval_dir, stages)
    if not results:
        return []
    warnings = regressions(results)
    lines = ["## Evaluation (held-out; delta to the base model)", "", stage_table(results, BASE_STAGE), ""]
    lines += [f"WARN (soft): {w}" for w in warnings] or ["no stage scored below the one before it"]
    return lines


def pipeline_paths(workdir: str | os.PathLike, model: str, language: str = "python", *, quick_test: bool = False):
    """The orchestrator's ``PipelinePaths`` for this run: with ``quick_test`` its data, checkpoints and logs are
    under ``<workdir>/quick-test/`` (what ``run_tui_pipeline.sh --quick-test`` trains into), else the workdir's."""
    from pipeline_lib.paths import PipelinePaths

    return PipelinePaths(Path(workdir), phases.model_slug(model), language, quick_test)


def pipeline_runs(workdir: str | os.PathLike, model: str, *, quick_test: bool = False) -> list[StageRun]:
    """The base model, then every trained stage of the pipeline in ``workdir`` (``<workdir>/quick-test`` with
    ``quick_test``) whose final/ adapter exists."""
    paths = pipeline_paths(workdir, model, quick_test=quick_test)
    runs = [StageRun(BASE_STAGE, model, None)]
    for phase, final in paths.final_adapters():
        runs.append(StageRun(phase.name, None, str(final)))
    return runs


def pipeline_settings(config_file: str | os.PathLike, workdir: str | os.PathLike, language: str, *,
                      quick: bool, quick_test: bool = False) -> tuple[dict[str, Any], list[str]]:
    """EvalConfig fields for the orchestrator: the language's YAML limits, the run's held-out data, QUICK_SETTINGS
    with ``quick``; a part whose data is missing is skipped (the notes say which).

    The held-out tasks are the workdir's ``data/<language>/grpo/heldout.jsonl`` (the task files are shared by a
    quick test and a production run, as GRPO's are); the tool-calling rows are the run's own data prep output
    (``<workdir>/quick-test/data/...`` with ``quick_test``)."""
    import yaml

    settings = {k: v for k, v in (yaml.safe_load(Path(config_file).read_text()) or {}).items()
                if k not in ("model", "adapter", "stage", "output_dir")}
    paths = pipeline_paths(workdir, "", language, quick_test=quick_test)
    task_file = Path(workdir) / phases.GRPO_HELDOUT_FILE.format(language=language)
    settings.update(language=language, task_file=str(task_file),
                    tool_calling_data=str(paths.data / "tool_calling" / "heldout"))
    if quick:
        settings.update(QUICK_SETTINGS)
    notes = []
    if not Path(settings["task_file"]).is_file():
        settings["skip_tasks"] = True
        notes.append(f"pass@1 skipped: no held-out tasks {settings['task_file']} (scripts/16_generate_mutations.py)")
    if not (Path(settings["tool_calling_data"]) / "dataset_info.json").is_file():
        settings["skip_tool_calls"] = True
        notes.append(f"tool-call accuracy skipped: no {settings['tool_calling_data']}")
    return settings, notes


def refresh_export_card(paths: Any, log: Callable[[str], None] = print) -> Path | None:
    """Rewrite the export's model card now that the evaluation reports exist; None when there is no passed export.

    The export (Phase 5) writes ``<export>/hf/README.md`` before this step runs, so on a first run its evaluation
    section said "No evaluation results yet". This rewrites the card (and the Modelfile) through the export's own
    writer, from its manifest and what is on disk now: the gates and ``logs/eval/*.json`` of the same run."""
    from pipeline_lib.gguf_export import write_ready_to_use_files

    export_dir = paths.run_dir(phases.EXPORT.name)
    try:
        manifest = json.loads((export_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("passed") is not True or not (export_dir / "hf").is_dir():
        return None
    written = write_ready_to_use_files(manifest, paths.checkpoints, export_dir)
    log(f"eval: model card rewritten with the evaluation table: {written['model_card']}")
    return Path(written["model_card"])


def main(argv: Sequence[str] | None = None,
         load: Callable[[str | None, str | None], Generate] | None = None) -> int:
    """``python -m pipeline_lib.evaluation pipeline --workdir W --model M --language L [--quick] [--quick-test]``:
    the orchestrator's evaluation step (base once + every trained stage, SOFT gate in quality_gates.json, the
    export's model card rewritten with the table). ``load`` replaces HFGenerator.load (tests)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    pipe = sub.add_parser("pipeline", help="evaluate the base model and every trained stage of a workdir")
    pipe.add_argument("--workdir", type=Path, required=True)
    pipe.add_argument("--model", required=True, help="the pipeline's --model (the base that is evaluated)")
    pipe.add_argument("--language", default="python")
    pipe.add_argument("--config", type=Path, help="default configs/<language>_eval.yaml")
    pipe.add_argument("--quick", action="store_true", help=f"tiny demo limits {QUICK_SETTINGS}")
    pipe.add_argument("--quick-test", action="store_true",
                      help="the run's state is under <workdir>/quick-test/ (run_tui_pipeline.sh --quick-test)")
    args = parser.parse_args(argv)
    config_file = args.config or Path(__file__).resolve().parents[1] / "configs" / f"{args.language}_eval.yaml"
    if not config_file.is_file():
        parser.error(f"--config {config_file}: no such file")
    paths = pipeline_paths(args.workdir, args.model, args.language, quick_test=args.quick_test)
    settings, notes = pipeline_settings(config_file, args.workdir, args.language, quick=args.quick,
                                        quick_test=args.quick_test)
    for note in notes:
        print(f"eval: {note}")
    if settings.get("skip_tasks") and settings.get("skip_tool_calls"):
        from pipeline_lib.gates import record_gate

        record_gate(paths.gates_file, EVAL_GATE_KEY, {"status": "skipped_no_data", "type": "SOFT"})
        print("eval: nothing to evaluate (no held-out data); recorded as skipped")
        return 0
    results = evaluate_stages(pipeline_runs(args.workdir, args.model, quick_test=args.quick_test), settings,
                              paths.logs / "eval", load=load)
    warnings = record_eval_gate(paths.gates_file, results)
    print(stage_table(results, BASE_STAGE))
    for warning in warnings:
        print(f"WARN (soft gate evaluation): {warning}")
    refresh_export_card(paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
