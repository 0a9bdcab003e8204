"""Phase 1.5 (merge a LoRA adapter into its base) and Phase 5 (export: HF safetensors + validated GGUF).

Merge:
    python3 scripts/19_merge_adapter.py --adapter_path checkpoints/tool_calling_sft/final \
        --base_model openai/gpt-oss-20b --output_dir checkpoints/gpt-oss-20b-coding-tui-merged
    -> <output_dir>/hf/ (bf16 safetensors, tokenizer, chat template, manifest.json, phase_metrics.json).
    Exit 1 when a check fails (a HARD gate).
Export:
    python3 scripts/19_merge_adapter.py --export --checkpoints_dir checkpoints --model openai/gpt-oss-20b \
        --merged_model checkpoints/gpt-oss-20b-coding-tui-merged/hf \
        --output_dir checkpoints/gpt-oss-20b-coding-tui-export [--llama-cpp-dir DIR] [--no-gguf]
    -> hf/, gguf_q4/ (Q4_K_M + MXFP4_MOE), manifest.json. Best adapter: GRPO > IPO > Agent SFT > Tool Calling.
    Exit 1 only when the HF export fails; a GGUF failure is a warning in the manifest (writeup Phase 5).
Defaults come from configs/merge.yaml, loaded even without --config (--config FILE picks another YAML);
CLI flags win.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.interpreter import require_modules  # noqa: E402

require_modules()  # before any import that needs them: names this interpreter and the fix

from pipeline_lib import phases  # noqa: E402
from pipeline_lib.config import default_config  # noqa: E402
from pipeline_lib.gguf_export import GgufSettings  # noqa: E402  (light: no torch at import)
from pipeline_lib.merge import MergeSettings  # noqa: E402

DEFAULT_CONFIG = default_config(phases.MERGE.name)


@dataclass
class MergeAdapterArguments:
    """Which job and on what: the paths. The thresholds are pipeline_lib.merge.MergeSettings (both jobs) and
    pipeline_lib.gguf_export.GgufSettings (export), parsed from the same command line and YAML."""

    adapter_path: str | None = field(default=None, metadata={"help": "Merge: PEFT adapter folder"})
    base_model: str | None = field(default=None, metadata={"help": "Merge: base model folder or hub id"})
    output_dir: str | None = field(default=None, metadata={"help": "Merge: writes <output_dir>/hf; export: hf/, "
                                                                   "gguf_q4/, manifest.json"})
    export: bool = field(default=False, metadata={"help": "Phase 5: pick the best adapter and export HF + GGUF"})
    checkpoints_dir: str = field(default="checkpoints", metadata={"help": "Export: where the phase outputs are"})
    model: str | None = field(default=None, metadata={"help": "Export: the raw base model (folder or hub id)"})
    merged_model: str | None = field(default=None, metadata={"help": "Export: merged tool-calling model (default: "
                                                                     "the merge phase's hf/ under --checkpoints_dir)"})
    gguf: bool = field(default=True, metadata={"help": "Export: also write GGUF (--no-gguf to skip)"})

    def __post_init__(self) -> None:
        if self.export:
            if not self.model:
                raise ValueError("--export needs --model (the raw base, e.g. openai/gpt-oss-20b)")
            if not Path(self.checkpoints_dir).is_dir():
                raise ValueError(f"--checkpoints_dir {self.checkpoints_dir}: no such folder")
            slug = phases.model_slug(self.model)
            checkpoints = Path(self.checkpoints_dir)
            self.merged_model = self.merged_model or str(checkpoints / phases.MERGE.folder_name(slug) / "hf")
            self.output_dir = self.output_dir or str(checkpoints / phases.EXPORT.folder_name(slug))
            return
        if not self.adapter_path or not (Path(self.adapter_path) / "adapter_config.json").is_file():
            raise ValueError(f"--adapter_path {self.adapter_path}: expected a PEFT adapter folder with "
                             f"adapter_config.json (or pass --export)")
        if not self.base_model:
            raise ValueError("--base_model is required (folder or hub id)")
        if Path(self.base_model).exists() and not (Path(self.base_model) / "config.json").is_file():
            raise ValueError(f"--base_model {self.base_model}: folder has no config.json")
        self.output_dir = self.output_dir or str(phases.MERGE.run_dir(Path("."), phases.model_slug(self.base_model)))


ARGUMENT_CLASSES = (MergeAdapterArguments, MergeSettings, GgufSettings)


def parse_args(argv: list[str] | None = None) -> tuple[MergeAdapterArguments, MergeSettings, GgufSettings]:
    """Dataclasses < configs/merge.yaml (or --config FILE) < CLI."""
    from pipeline_lib.config import parse_args_with_default_config

    return parse_args_with_default_config(ARGUMENT_CLASSES, DEFAULT_CONFIG, argv)


def main(argv: list[str] | None = None) -> int:
    from dataclasses import asdict

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from pipeline_lib.gguf_export import export_model
    from pipeline_lib.merge import merge_adapter

    args, merge_settings, gguf_settings = parse_args(argv)
    console = Console(stderr=True)
    config = {**asdict(args), **asdict(merge_settings), **(asdict(gguf_settings) if args.export else {})}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        label = phases.EXPORT.name if args.export else phases.MERGE.name
        task = bar.add_task(label, total=None)

        started = time.monotonic()

        def step(description: str) -> None:
            bar.update(task, description=description)
            # rich draws nothing live when stderr is a file (the orchestrator's phase log): one line per step there,
            # so a slow step (GGUF conversion, quantize) is visible in the log while it runs.
            if not console.is_terminal:
                print(f"[{label} +{time.monotonic() - started:.0f}s] {description}", file=sys.stderr, flush=True)

        if not args.export:
            manifest = merge_adapter(args.base_model, args.adapter_path, Path(args.output_dir) / "hf",
                                     settings=merge_settings, progress=step, extra={"config": config})
        else:
            manifest = export_model(args.checkpoints_dir, args.model, args.merged_model, args.output_dir,
                                    gguf=args.gguf, merge_settings=merge_settings, gguf_settings=gguf_settings,
                                    config=config, progress=step)

    checks = manifest["checks"] if not args.export else manifest["hf"]["checks"]
    for name, entry in checks.items():
        mark = "ok  " if entry["passed"] else ("warn" if entry.get("hard") is False else "FAIL")
        console.print(f"  {mark} {name}: {entry['value']} (threshold {entry['threshold']})")
    if not args.export:
        size = checks["size"]["size_gib"]
        print(f"merge {'PASSED' if manifest['passed'] else 'FAILED'}: {args.output_dir}/hf, {size} GiB "
              f"{merge_settings.save_dtype}, merged weights hold the delta (worst ratio "
              f"{checks['merged_weights_hold_delta']['value']}), merged==adapter rel "
              f"{checks['merged_equals_adapter']['value']:.2e}, "
              f"smoke unique_chars {checks['smoke_test']['value']}")
        return 0 if manifest["passed"] else 1
    gguf = manifest["gguf"]
    for quant, entry in gguf.get("files", {}).items():
        failed = [k for k, v in entry["checks"].items() if not v["passed"]]
        console.print(f"  GGUF {quant}: {'ok' if entry['passed'] else 'FAIL ' + ', '.join(failed)}")
    if manifest["gguf_warning"]:
        console.print(f"[yellow]WARNING: GGUF export did not pass ({gguf.get('status')}); the HF export stands. "
                      f"{gguf.get('error', 'See manifest.json')}[/yellow]")
    print(f"export {'PASSED' if manifest['passed'] else 'FAILED'}: {manifest['source_adapter']['phase']} adapter on "
          f"{manifest['base_model']} -> {args.output_dir}/hf; GGUF {gguf.get('status')}")
    return 0 if manifest["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
