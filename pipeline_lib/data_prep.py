"""Phase 0: load the eight datasets (hub or local JSON Lines), format, render to Harmony, check, save.

    python scripts/tui_data_prep.py --source local --local-dir data/samples --quick-test

Per dataset: one loader that yields raw rows (hub: datasets.load_dataset with the real id; local: one JSON Lines
file per dataset/config/split named ``<org>__<name>[__<part>].jsonl``), the row formatter from
pipeline_lib.formatters, the Harmony renderer from pipeline_lib.harmony, and a round-trip check: every kept text,
tokenized with the real GPT-OSS tokenizer and parsed by openai_harmony, must give back the conversation it came from
(after the drop rule). Rows that fail anywhere are skipped and counted by reason in prep_report.json.

Row size is bounded before rendering: a formatted row with more than ``max_row_chars`` characters of content
(default 131,072 = 4 chars/token x 32,768, the longest max_seq_length any phase trains on, configs/agent_sft.yaml;
data/samples averages 3.42 chars/token, so such a row would be ~38K tokens) is skipped as ``too_long`` without being
rendered. openai_harmony's tokenizer is quadratic in one unbroken run of characters (100,000 x "x": 5 s, 200 KB: 33
s) and panics (``pyo3_runtime.PanicException``, a BaseException) on 1 MB; a panic that still happens costs its row
only (``error_PanicException``).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import statistics
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_lib import phases
from pipeline_lib.formatters import FORMATTERS, Conversation, PreferencePair, SkipRow
from pipeline_lib.provenance import provenance, write_json_atomic

CATEGORIES = ("tool_calling", "agent_traj", "preference")
COMMITPACKFT_LANGS = ("python", "javascript", "java", "go", "c++", "rust")  # writeup §5: 6 languages
HERMES_CONFIGS = ("func_calling_singleturn", "func_calling", "glaive_func_calling", "json_mode_agentic",
                  "json_mode_singleturn")
REPORT_NAME = "prep_report.json"
MAX_ROW_CHARS = 131_072  # 4 chars/token x 32,768 tokens (agent_sft.yaml max_seq_length); see the module docstring
MAX_NAMED_LINES = 10  # bad local lines named per file in the report (file:line); the rest are only counted
# Tool-calling rows held out for evaluation (tool_calling/heldout, never in train): at most this fraction of the
# rows that make a call, so a small local source still trains on 80% of them.
MAX_HELDOUT_FRACTION = 0.2


class DataPrepError(RuntimeError):
    """A hard failure: every dataset failed, or a category ended up empty."""


@dataclass(frozen=True)
class DatasetSpec:
    key: str  # formatter key and report key
    hub_id: str
    category: str
    parts: tuple[str | None, ...] = (None,)  # configs / splits / languages, one local file each
    part_kind: str | None = None  # "config" | "split" | "commitpackft_lang": how a part is asked of the hub


SPECS: tuple[DatasetSpec, ...] = (
    DatasetSpec("glaive", "glaiveai/glaive-function-calling-v2", "tool_calling"),
    DatasetSpec("xlam", "Salesforce/xlam-function-calling-60k", "tool_calling"),  # gated on the hub
    DatasetSpec("hermes", "NousResearch/hermes-function-calling-v1", "tool_calling", HERMES_CONFIGS, "config"),
    DatasetSpec("code_act", "xingyaoww/code-act", "agent_traj", ("codeact", "general"), "split"),
    DatasetSpec("commitpackft", "bigcode/commitpackft", "agent_traj", COMMITPACKFT_LANGS, "commitpackft_lang"),
    DatasetSpec("editpackft", "nuprl/EditPackFT", "agent_traj"),
    DatasetSpec("hh_rlhf", "Anthropic/hh-rlhf", "preference"),
    DatasetSpec("code_feedback", "m-a-p/CodeFeedback-Filtered-Instruction", "preference"),
)


@dataclass
class Limits:
    """Kept rows wanted per dataset: ``full``/``quick`` (None = all), per part or for the whole dataset."""

    full: int | None
    quick: int
    per_part: bool = False

    def for_part(self, quick_test: bool, n_parts: int) -> int | None:
        total = self.quick if quick_test else self.full
        if total is None or self.per_part:
            return total
        return math.ceil(total / n_parts)


@dataclass
class Options:
    source: str = "local"  # hub | local
    local_dir: Path | None = None
    output_dir: Path = Path(phases.default_run_dir(phases.DATA_PREP))
    quick_test: bool = False
    force: bool = False
    max_tokens: int | None = None
    max_row_chars: int | None = MAX_ROW_CHARS  # None: no bound before rendering
    seed: int = 42
    limits: dict[str, Limits] = field(default_factory=dict)
    only: tuple[str, ...] = ()  # restrict to these dataset keys (tests, debugging)
    tool_calling_heldout: int = 0  # rows held out of tool_calling/train for tool-call accuracy (configs: heldout)


def local_filename(hub_id: str, part: str | None) -> str:
    """glaiveai/glaive-function-calling-v2 -> glaiveai__glaive-function-calling-v2.jsonl (+ __<part>)."""
    stem = hub_id.replace("/", "__")
    return f"{stem}__{part}.jsonl" if part else f"{stem}.jsonl"


def load_limits(config: dict[str, Any]) -> dict[str, Limits]:
    limits = {}
    raw = config.get("datasets") or {}
    for spec in SPECS:
        entry = raw.get(spec.key)
        if not isinstance(entry, dict) or "quick" not in entry:
            raise ValueError(f"config datasets.{spec.key} must give at least 'quick' (and 'full', null = all)")
        limits[spec.key] = Limits(entry.get("full"), int(entry["quick"]), bool(entry.get("per_part", False)))
    return limits


# ------------------------------------------------------------------------------------------------ loading


RawRow = tuple[str | None, dict[str, Any] | str]  # (where: "file.jsonl:LINE" for local rows, row or skip reason)


def iter_raw_rows(spec: DatasetSpec, part: str | None, options: Options) -> Iterator[RawRow]:
    """Raw rows of one dataset part in a seeded shuffled order, each with where it came from.

    A local line that is not UTF-8 or not a JSON object comes as its skip reason (``invalid_utf8_line``,
    ``invalid_json_line``) so it costs that line only. Raises FileNotFoundError (local file missing) or whatever
    datasets raises (hub); the caller turns either into a failed part.
    """
    if options.source == "hub":
        dataset = _load_hub(spec, part).shuffle(seed=options.seed)
        for row in dataset:
            yield None, row
        return
    if options.local_dir is None:
        raise ValueError("--source local needs --local-dir")
    path = Path(options.local_dir) / local_filename(spec.hub_id, part)
    if not path.is_file():
        raise FileNotFoundError(f"missing local file {path}")
    rows = read_local_rows(path)
    random.Random(options.seed).shuffle(rows)
    yield from rows


def read_local_rows(path: Path) -> list[RawRow]:
    """Every non-blank line of a JSON Lines file, decoded line by line (one bad byte costs one line, not the file)."""
    rows: list[RawRow] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path.name}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                rows.append((where, "invalid_utf8_line"))
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            rows.append((where, row if isinstance(row, dict) else "invalid_json_line"))
    return rows


def unknown_local_files(local_dir: Path, specs: tuple[DatasetSpec, ...] = SPECS) -> list[str]:
    """``*.jsonl`` files in ``local_dir`` that no dataset reads (a typo'd name would otherwise pass silently)."""
    expected = {local_filename(s.hub_id, p) for s in specs for p in s.parts}
    return sorted(p.name for p in Path(local_dir).glob("*.jsonl") if p.name not in expected)


def _load_hub(spec: DatasetSpec, part: str | None):
    from datasets import load_dataset

    token = os.environ.get("HF_TOKEN") or None  # xLAM is gated; never printed (errors are scrubbed)
    if spec.part_kind == "commitpackft_lang":
        # commitpackft's loading script does not run under datasets >= 4: read the per-language file.
        files = f"hf://datasets/{spec.hub_id}/data/{part}/data.jsonl"
        return load_dataset("json", data_files=files, split="train", token=token)
    if spec.part_kind == "config":
        return load_dataset(spec.hub_id, part, split="train", token=token)
    if spec.part_kind == "split":
        return load_dataset(spec.hub_id, split=part, token=token)
    return load_dataset(spec.hub_id, split="train", token=token)


def is_gated_error(error: BaseException) -> bool:
    """True only when the hub itself said the repo is gated: huggingface_hub's GatedRepoError anywhere in the
    exception chain, or the DatasetNotFoundError datasets raises from it ("... is a gated dataset on the Hub", its
    ``raise ... from None`` can drop the chain). A missing or corrupt local file is never "gated"."""
    from huggingface_hub.errors import GatedRepoError

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, GatedRepoError) or (
                type(current).__name__ == "DatasetNotFoundError" and "is a gated dataset on the Hub" in str(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


def is_rust_panic(error: BaseException) -> bool:
    """pyo3's PanicException (openai_harmony panics on e.g. 1 MB of one character). It derives from BaseException,
    so ``except Exception`` misses it, and its module ``pyo3_runtime`` cannot be imported to name the class."""
    return type(error).__name__ == "PanicException" and type(error).__module__ == "pyo3_runtime"


def _scrub_error(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    token = os.environ.get("HF_TOKEN")
    return text.replace(token, "<HF_TOKEN>") if token else text


# ------------------------------------------------------------------------------------- rendering + checking


@dataclass
class Example:
    text: str
    n_tokens: int
    pref_prompt: str | None = None
    pref_chosen: str | None = None
    pref_rejected: str | None = None
    conversation: Conversation | None = None  # kept for tool-calling rows: the held-out split is built from it


def _render_kwargs(conversation: Conversation) -> dict[str, Any]:
    return {"developer_instructions": conversation.developer_instructions, "tools": conversation.tools,
            "reasoning_effort": conversation.reasoning_effort}


def roundtrip_ok(text: str, messages: list[dict[str, Any]], tokenizer) -> tuple[bool, int]:
    """Tokenize with the real tokenizer, parse with openai_harmony, compare with the drop-rule view of ``messages``."""
    from pipeline_lib.harmony import parse_harmony_conversation, training_view_messages

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    try:
        parsed = parse_harmony_conversation(ids)
    except Exception:  # openai_harmony raises HarmonyError on malformed token streams
        return False, len(ids)
    return parsed == training_view_messages(messages), len(ids)


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(len(str(k)) + _chars(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(_chars(v) for v in value)
    return 0 if value is None else len(str(value))


def content_chars(formatted: Conversation | PreferencePair) -> int:
    """Characters of what will be rendered: messages, tools and developer text (a pair: prompt + longer answer)."""
    if isinstance(formatted, PreferencePair):
        return content_chars(formatted.prompt) + max(_chars(formatted.chosen), _chars(formatted.rejected))
    return _chars([formatted.messages, formatted.tools, formatted.developer_instructions])


def render_example(formatted: Conversation | PreferencePair, tokenizer) -> Example:
    """Harmony text (+ preference columns) for one formatted row; SkipRow if it cannot render or round-trip."""
    from pipeline_lib.harmony import encode_harmony_messages, render_training_prompt_and_completion

    try:
        if isinstance(formatted, Conversation):
            text = encode_harmony_messages(formatted.messages, **_render_kwargs(formatted))
            ok, n_tokens = roundtrip_ok(text, formatted.messages, tokenizer)
            example = Example(text, n_tokens)
        else:
            kwargs = _render_kwargs(formatted.prompt)
            completions = []
            ok, n_tokens = True, 0
            for answer in (formatted.chosen, formatted.rejected):
                turn = answer if isinstance(answer, list) else [{"role": "assistant", "content": answer}]
                messages = [*formatted.prompt.messages, *turn]
                completions.append(render_training_prompt_and_completion(messages, **kwargs))
                answer_ok, answer_tokens = roundtrip_ok("".join(completions[-1]), messages, tokenizer)
                ok, n_tokens = ok and answer_ok, max(n_tokens, answer_tokens)
            (prompt, chosen), (_, rejected) = completions  # same prompt messages, so the same prompt text
            example = Example(prompt + chosen, n_tokens, prompt, chosen, rejected)
    except ValueError as err:
        reason = "special_token_in_text" if "control token" in str(err) else "unrenderable"
        raise SkipRow(reason, str(err)) from None
    if not ok:
        raise SkipRow("roundtrip_mismatch")
    return example


# ------------------------------------------------------------------------------------------------ one dataset


@dataclass
class DatasetResult:
    spec: DatasetSpec
    examples: list[Example] = field(default_factory=list)
    read: int = 0
    skipped: Counter = field(default_factory=Counter)
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return all(p["status"] == "failed" for p in self.parts.values())

    def report(self) -> dict[str, Any]:
        lengths = sorted(e.n_tokens for e in self.examples)
        return {
            "hub_id": self.spec.hub_id,
            "category": self.spec.category,
            "status": "failed" if self.failed else "ok",
            "read": self.read,
            "kept": len(self.examples),
            "skipped": dict(sorted(self.skipped.items())),
            "tokens": token_stats(lengths),
            "parts": self.parts,
        }


def token_stats(lengths: list[int]) -> dict[str, float | int] | None:
    if not lengths:
        return None
    ordered = sorted(lengths)

    def pct(q: float) -> int:  # nearest-rank percentile
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"min": ordered[0], "mean": round(statistics.fmean(ordered), 1), "p50": pct(0.50), "p95": pct(0.95),
            "max": ordered[-1]}


def prepare_dataset(spec: DatasetSpec, options: Options, tokenizer,
                    advance: Callable[[int], None] = lambda n: None) -> DatasetResult:
    """Read, format, render and check one dataset until each part has its limit of kept rows (or runs out)."""
    result = DatasetResult(spec)
    formatter = FORMATTERS[spec.key]
    limit = options.limits[spec.key].for_part(options.quick_test, len(spec.parts))
    for part in spec.parts:
        name = part or "default"
        info: dict[str, Any] = {"status": "ok", "read": 0, "kept": 0, "error": None, "bad_lines": {}}
        result.parts[name] = info
        try:
            rows = iter_raw_rows(spec, part, options)
            for where, row in rows:
                if limit is not None and info["kept"] >= limit:
                    break
                info["read"] += 1
                result.read += 1
                advance(1)
                try:
                    if isinstance(row, str):  # a local line that is not UTF-8 / not a JSON object
                        bad = info["bad_lines"].setdefault(row, {"count": 0, "at": []})
                        bad["count"] += 1
                        if len(bad["at"]) < MAX_NAMED_LINES:
                            bad["at"].append(where)
                        raise SkipRow(row)
                    formatted = formatter(row)
                    chars = content_chars(formatted)
                    if options.max_row_chars is not None and chars > options.max_row_chars:
                        raise SkipRow("too_long", f"{chars} characters before rendering")
                    example = render_example(formatted, tokenizer)
                    if spec.category == "tool_calling":
                        example.conversation = formatted
                    if options.max_tokens is not None and example.n_tokens > options.max_tokens:
                        raise SkipRow("too_long", f"{example.n_tokens} tokens")
                except SkipRow as skip:
                    result.skipped[skip.reason] += 1
                    continue
                except Exception as err:  # one odd row (e.g. "subject": 5, a HarmonyError) skips that row only
                    result.skipped[f"error_{type(err).__name__}"] += 1
                    continue
                except BaseException as err:  # a Rust panic in openai_harmony also costs its row only
                    if not is_rust_panic(err):
                        raise  # KeyboardInterrupt, SystemExit
                    result.skipped["error_PanicException"] += 1
                    continue
                result.examples.append(example)
                info["kept"] += 1
            if options.source == "local" and info["read"] == 0:
                info["empty"] = True
        except Exception as err:  # loading (rows are caught above): a missing file, a gated repo, a network error
            gated = options.source == "hub" and is_gated_error(err)
            info.update(status="failed", error=_scrub_error(err), gated=gated)
    return result


def part_warnings(result: DatasetResult) -> list[str]:
    """What the report and the log say about one dataset's parts: failures (gated only on the hub's own answer),
    empty local files, and the local lines that were not UTF-8 or not JSON (file:line)."""
    warnings = []
    for part, info in result.parts.items():
        label = f"{result.spec.key}/{part}"
        if info["status"] == "failed":
            gated = " (gated on the hub: accept its terms and set HF_TOKEN)" if info.get("gated") else ""
            warnings.append(f"{label} failed{gated}: {info['error']}")
        if info.get("empty"):
            warnings.append(f"{label}: the local file has no rows")
        for reason, bad in info.get("bad_lines", {}).items():
            more = f" and {bad['count'] - len(bad['at'])} more" if bad["count"] > len(bad["at"]) else ""
            warnings.append(f"{label}: {reason} skipped at {', '.join(bad['at'])}{more}")
    return warnings


# ------------------------------------------------------------------------------------------------ whole run


def outputs_exist(output_dir: Path) -> bool:
    """A finished earlier run: its report has no "error" (a failed run leaves older train/ folders) and every
    category's train/ is saved."""
    report = output_dir / REPORT_NAME
    try:
        finished = "error" not in json.loads(report.read_text())
    except (OSError, ValueError):  # missing or half-written report: rebuild
        return False
    return finished and all((output_dir / category / "train" / "dataset_info.json").is_file()
                            for category in CATEGORIES) and (output_dir / HELDOUT_DIR / "dataset_info.json").is_file()


HELDOUT_DIR = Path("tool_calling") / "heldout"


def tool_call_probe(conversation: Conversation) -> tuple[str, dict[str, Any]] | None:
    """(prompt up to the first assistant turn that calls a tool, that turn's first call), or None without a call.

    The prompt is rendered with the row's own developer text and tools and ends with ``<|start|>assistant``;
    pipeline_lib.evaluation generates from it and compares the model's first call with this one.
    """
    from pipeline_lib.harmony import encode_harmony_prompt

    for index, message in enumerate(conversation.messages):
        if message["role"] == "assistant" and message.get("tool_calls"):
            prompt = encode_harmony_prompt(conversation.messages[:index], **_render_kwargs(conversation))
            call = message["tool_calls"][0]
            return prompt, {"name": call["name"], "arguments": call["arguments"]}
    return None


def split_tool_calling_heldout(pairs: list[tuple[str, Example]], n_heldout: int,
                               seed: int) -> tuple[list[tuple[str, Example]], list[tuple[str, Example, str, str]]]:
    """(train pairs, held-out rows with eval_prompt / eval_call JSON): a seeded sample of the rows that make a call,
    at most MAX_HELDOUT_FRACTION of them; held-out rows are removed from train, so no phase trains on them."""
    candidates = [i for i, (_, e) in enumerate(pairs) if e.conversation is not None
                  and any(m.get("tool_calls") for m in e.conversation.messages)]
    n = min(n_heldout, int(len(candidates) * MAX_HELDOUT_FRACTION))
    chosen = set(random.Random(seed).sample(candidates, n)) if n > 0 else set()
    heldout = []
    for i in sorted(chosen):
        source, example = pairs[i]
        probe = tool_call_probe(example.conversation)
        heldout.append((source, example, probe[0], json.dumps(probe[1], ensure_ascii=False)))
    return [p for i, p in enumerate(pairs) if i not in chosen], heldout


def save_category(examples: list[tuple[str, Example]], category: str, output_dir: Path, seed: int, *,
                  split: str = "train", extra_columns: dict[str, list[Any]] | None = None) -> Path:
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()  # the rich bar per dataset is the progress display
    columns: dict[str, list[Any]] = {"text": [e.text for _, e in examples], "source": [s for s, _ in examples]}
    if category == "preference":
        columns["pref_prompt"] = [e.pref_prompt for _, e in examples]
        columns["pref_chosen"] = [e.pref_chosen for _, e in examples]
        columns["pref_rejected"] = [e.pref_rejected for _, e in examples]
    columns.update(extra_columns or {})
    dataset = Dataset.from_dict(columns).shuffle(seed=seed).flatten_indices()  # mix the sources
    final = output_dir / category / split
    staging = output_dir / category / f".{split}.tmp{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    dataset.save_to_disk(str(staging))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)  # an interrupted run never leaves a half-written train/ behind
    return final


def run(options: Options, tokenizer=None, *, config: dict[str, Any] | None = None,
        console=None) -> dict[str, Any]:
    """Build the three datasets and prep_report.json; returns the report. Raises DataPrepError on a hard failure."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    output_dir = Path(options.output_dir)
    if outputs_exist(output_dir) and not options.force:
        existing = json.loads((output_dir / REPORT_NAME).read_text())
        if (existing.get("quick_test"), existing.get("source")) != (options.quick_test, options.source):
            built = f"quick_test={existing.get('quick_test')} source={existing.get('source')}"
            console.print(f"[yellow]WARNING: existing output was built with {built}; --force rebuilds it.[/yellow]")
        existing["skipped_existing"] = True
        return existing
    if tokenizer is None:
        from pipeline_lib.tokenizer import load_gpt_oss_tokenizer

        tokenizer = load_gpt_oss_tokenizer()

    specs = [s for s in SPECS if not options.only or s.key in options.only]
    results: list[DatasetResult] = []
    with Progress(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        for spec in specs:
            limit = options.limits[spec.key].for_part(options.quick_test, len(spec.parts))
            task = progress.add_task(spec.key, total=None if limit is None else limit * len(spec.parts))
            result = prepare_dataset(spec, options, tokenizer, lambda n, t=task: progress.advance(t, n))
            progress.update(task, total=result.read, completed=result.read)
            results.append(result)

    warnings = [w for result in results for w in part_warnings(result)]
    if options.source == "local" and options.local_dir is not None:
        warnings += [f"unknown local file {name} ignored: no dataset reads it (names: <org>__<name>[__<part>].jsonl, "
                     f"see data_prep.SPECS)" for name in unknown_local_files(Path(options.local_dir))]
    report: dict[str, Any] = {
        "source": options.source,
        "local_dir": str(options.local_dir) if options.local_dir else None,
        "quick_test": options.quick_test,
        "max_tokens": options.max_tokens,
        "max_row_chars": options.max_row_chars,
        "seed": options.seed,
        "datasets": {r.spec.key: r.report() for r in results},
        "categories": {},
        "warnings": warnings,
        "provenance": provenance(config),
    }
    for warning in warnings:
        console.print(f"[yellow]WARNING: {warning}[/yellow]", soft_wrap=True)
    if all(r.failed for r in results):
        write_json_atomic(output_dir / REPORT_NAME, report | {"error": "every dataset failed"})
        raise DataPrepError(f"every dataset failed to load; see the warnings above and {output_dir / REPORT_NAME}")
    empty = [c for c in CATEGORIES if not any(r.examples for r in results if r.spec.category == c)]
    if empty:
        write_json_atomic(output_dir / REPORT_NAME, report | {"error": f"no rows for {', '.join(empty)}"})
        raise DataPrepError(f"no rows kept for {', '.join(empty)}: the phase that trains on it would have no data")
    for category in CATEGORIES:
        pairs = [(r.spec.key, e) for r in results if r.spec.category == category for e in r.examples]
        heldout = None
        if category == "tool_calling":
            pairs, heldout = split_tool_calling_heldout(pairs, options.tool_calling_heldout, options.seed)
        path = save_category(pairs, category, output_dir, options.seed)
        report["categories"][category] = {"path": str(path), "rows": len(pairs),
                                          "by_source": dict(Counter(source for source, _ in pairs))}
        if heldout is not None:
            held = save_category([(s, e) for s, e, _, _ in heldout], category, output_dir, options.seed,
                                 split="heldout", extra_columns={"eval_prompt": [h[2] for h in heldout],
                                                                 "eval_call": [h[3] for h in heldout]})
            report["categories"][category]["heldout"] = {
                "path": str(held), "rows": len(heldout), "by_source": dict(Counter(h[0] for h in heldout)),
                "rule": f"seeded sample of rows that call a tool, at most {MAX_HELDOUT_FRACTION:.0%} of them; "
                        "removed from train (tool-call accuracy, pipeline_lib/evaluation.py)"}
    write_json_atomic(output_dir / REPORT_NAME, report)
    return report


def summary_line(report: dict[str, Any]) -> str:
    if report.get("skipped_existing"):
        counts = ", ".join(f"{c} {v['rows']}" for c, v in report.get("categories", {}).items())
        return f"data prep: output exists, kept ({counts}); --force rebuilds"
    counts = ", ".join(f"{c} {v['rows']}" for c, v in report["categories"].items())
    skipped = sum(sum(d["skipped"].values()) for d in report["datasets"].values())
    failed = [k for k, d in report["datasets"].items() if d["status"] == "failed"]
    tail = f"; failed: {', '.join(failed)}" if failed else ""
    return f"data prep: {counts} rows; {skipped} rows skipped{tail}"
