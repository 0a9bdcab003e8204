"""The pipeline's phases, in one table: every phase list, run folder, gate key, config file and the export's adapter
priority derive from ``PHASES`` (orchestrate, gates, profiles, gguf_export; run_tui_pipeline.sh through
``python -m pipeline_lib.orchestrate paths`` (PHASE_NAMES) and ``step``). Nothing else in pipeline_lib/ or
scripts/ spells a phase name or run folder (tests/test_phases.py fails if one does). A new step (e.g. an evaluation
after the trained stages) is a row here plus its command in orchestrate.phase_command; final_adapters() lists the
trained stages it compares.

    python -m pipeline_lib.phases          # the table, one phase a line

``consumes`` lists what a phase is made from: the base model (``MODEL``), upstream phases (their outputs) and, for
GRPO, its task file (``GRPO_TASKS``). A phase whose recorded inputs differ from the current ones is redone, and with
it every phase that consumes it (pipeline_lib.orchestrate.decide).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

MODEL = "model"  # the base model (--model)
GRPO_TASKS = "grpo_tasks"  # GRPO_TASKS_FILE under the workdir
TASKS_DIR = "data/{language}/grpo"  # the shared task-row contract: tasks.jsonl (train) and heldout.jsonl (eval)
GRPO_TASKS_FILE = TASKS_DIR + "/tasks.jsonl"
GRPO_HELDOUT_FILE = TASKS_DIR + "/heldout.jsonl"
DATA_ROOT = "data"
# How the orchestrator runs a phase and decides skip/resume/redo (pipeline_lib.orchestrate.disk_state).
KIND_DATA, KIND_TRAIN, KIND_MERGE, KIND_EXPORT = "data", "train", "merged_model", "export_bundle"
CHECKPOINTS_ROOT = "checkpoints"


@dataclass(frozen=True)
class Phase:
    name: str  # CLI, logs, run record, batch profile and gates.yaml key
    kind: str  # KIND_*: how the orchestrator runs it and decides skip/resume/redo
    script: str  # under scripts/
    root: str  # DATA_ROOT or CHECKPOINTS_ROOT, under the workdir
    folder: str  # run folder under root; "{slug}" is the model's slug
    gate_key: str | None  # key in logs/quality_gates.json (the writeup's names); None: no gate
    config: str  # under configs/: the single source of the phase's settings
    consumes: tuple[str, ...]  # MODEL, GRPO_TASKS, upstream phase names
    produces: str  # what downstream phases read
    dataset: str | None = None  # the data prep category a training phase reads (<data>/<dataset>/train)

    def folder_name(self, slug: str) -> str:
        return self.folder.format(slug=slug)

    def run_dir(self, workdir: Path, slug: str) -> Path:
        return Path(workdir) / self.root / self.folder_name(slug)

    @property
    def trains(self) -> bool:
        return self.kind == KIND_TRAIN

    @property
    def on_merged_model(self) -> bool:
        """Trained on the merged tool-calling model (Phase 2+) rather than on the raw base."""
        return MERGE.name in self.consumes


DATA_PREP = Phase("data_prep", KIND_DATA, "tui_data_prep.py", DATA_ROOT, "coding_tui", None, "data_prep.yaml",
                  (), "tool_calling/, agent_traj/, preference/ datasets + prep_report.json")
TOOL_CALLING = Phase("tool_calling_sft", KIND_TRAIN, "13_train_lang_adapter.py", CHECKPOINTS_ROOT, "tool_calling_sft",
                     "tool_calling", "tool_calling_sft.yaml", (MODEL, DATA_PREP.name), "LoRA adapter (final/)",
                     dataset="tool_calling")
MERGE = Phase("merge", KIND_MERGE, "19_merge_adapter.py", CHECKPOINTS_ROOT, "{slug}-coding-tui-merged", "merge",
              "merge.yaml", (MODEL, TOOL_CALLING.name), "merged model (hf/)")
AGENT_SFT = Phase("agent_sft", KIND_TRAIN, "14_train_core_agent.py", CHECKPOINTS_ROOT, "agent_sft", "agent_sft",
                  "agent_sft.yaml", (MERGE.name, DATA_PREP.name), "LoRA adapter (final/)", dataset="agent_traj")
IPO = Phase("ipo", KIND_TRAIN, "17_ipo_preference.py", CHECKPOINTS_ROOT, "agent_sft_ipo", "ipo", "ipo.yaml",
            (MERGE.name, AGENT_SFT.name, DATA_PREP.name), "LoRA adapter (final/)", dataset="preference")
GRPO = Phase("grpo", KIND_TRAIN, "18_grpo_rl.py", CHECKPOINTS_ROOT, "agent_sft_grpo", "grpo", "grpo.yaml",
             (MERGE.name, AGENT_SFT.name, IPO.name, GRPO_TASKS), "LoRA adapter (final/)")
EXPORT = Phase("export", KIND_EXPORT, "19_merge_adapter.py", CHECKPOINTS_ROOT, "{slug}-coding-tui-export", "export",
               "merge.yaml", (MODEL, MERGE.name, TOOL_CALLING.name, AGENT_SFT.name, IPO.name, GRPO.name),
               "hf/ + gguf_q4/ + manifest.json")

PHASES: tuple[Phase, ...] = (DATA_PREP, TOOL_CALLING, MERGE, AGENT_SFT, IPO, GRPO, EXPORT)
BY_NAME: dict[str, Phase] = {p.name: p for p in PHASES}
NAMES: tuple[str, ...] = tuple(BY_NAME)
TRAINED: tuple[Phase, ...] = tuple(p for p in PHASES if p.trains)  # in training order
GATED: tuple[Phase, ...] = tuple(p for p in PHASES if p.gate_key)
GATE_KEYS: dict[str, str] = {p.name: p.gate_key for p in GATED if p.gate_key}
DATASETS: tuple[str, ...] = tuple(p.dataset for p in TRAINED if p.dataset)
# Export (writeup Phase 5): the latest trained phase that finished wins.
ADAPTER_PRIORITY: tuple[Phase, ...] = tuple(reversed(TRAINED))


def model_slug(model: str) -> str:
    """Last path component lowercased: openai/gpt-oss-20b -> gpt-oss-20b, checkpoints/tiny-gpt-oss -> tiny-gpt-oss."""
    return Path(str(model).rstrip("/")).name.lower()


# What a phase script uses when run by hand without path flags: the writeup's layout for the default model, relative
# to the current directory (the orchestrator always passes absolute paths).
DEFAULT_SLUG = "gpt-oss-20b"


def default_run_dir(phase: Phase) -> str:
    return str(phase.run_dir(Path("."), DEFAULT_SLUG))


def default_final(phase: Phase) -> str:
    return str(Path(default_run_dir(phase)) / "final")


def default_train_data(phase: Phase) -> str:
    return str(Path(default_run_dir(DATA_PREP)) / str(phase.dataset) / "train")


def default_merged_model() -> str:
    return str(Path(default_run_dir(MERGE)) / "hf")


def get(name: str) -> Phase:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown phase {name!r}; phases: {', '.join(NAMES)}") from None


def downstream(name: str) -> list[str]:
    """Phases that consume ``name``, directly or through another phase, in pipeline order."""
    out: list[str] = []
    for phase in PHASES:
        if any(c == name or c in out for c in phase.consumes):
            out.append(phase.name)
    return out


def final_adapters(workdir: Path, slug: str) -> list[tuple[Phase, Path]]:
    """(phase, final/ folder) of every trained stage in training order whose final/adapter_config.json exists: the
    stages an evaluation compares (the base model first, then each of these)."""
    out = []
    for phase in TRAINED:
        final = phase.run_dir(workdir, slug) / "final"
        if (final / "adapter_config.json").is_file():
            out.append((phase, final))
    return out


def table() -> str:
    lines = [f"{'phase':<17} {'kind':<13} {'script':<26} {'run folder':<36} {'gate':<13} {'config':<22} consumes"]
    for p in PHASES:
        lines.append(f"{p.name:<17} {p.kind:<13} {p.script:<26} {p.root + '/' + p.folder:<36} {p.gate_key or '-':<13} "
                     f"{p.config:<22} {', '.join(p.consumes) or '-'}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
    sys.exit(0)
