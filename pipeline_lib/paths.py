"""Where a pipeline run keeps its state: ``PipelinePaths`` (data, checkpoints, logs and the run records under the
workdir, or under ``<workdir>/quick-test`` for ``--quick-test``). Used by the orchestrator and by the evaluation, which
must find the same folders without importing the orchestrator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline_lib import phases

RUN_RECORD = ".run_phases.jsonl"
DECISIONS = ".run_decisions.jsonl"
RUN_ESTIMATE = ".run_estimate.json"
RECORD_FILE = "pipeline_inputs.json"
STALE_MARK = ".stale-"
QUICK_TEST_DIR = "quick-test"  # --quick-test keeps its data/, checkpoints/ and logs/ under <workdir>/quick-test/


@dataclass(frozen=True)
class PipelinePaths:
    workdir: Path
    slug: str
    grpo_language: str = "rust"
    quick_test: bool = False

    @property
    def base(self) -> Path:
        """Where this run's state lives: the workdir, or <workdir>/quick-test for --quick-test (never shared)."""
        return self.workdir / QUICK_TEST_DIR if self.quick_test else self.workdir

    @property
    def data(self) -> Path:
        return self.run_dir(phases.DATA_PREP.name)

    @property
    def checkpoints(self) -> Path:
        return self.base / phases.CHECKPOINTS_ROOT

    @property
    def logs(self) -> Path:
        return self.base / "logs"

    def run_dir(self, phase: str) -> Path:
        return phases.get(phase).run_dir(self.base, self.slug)

    @property
    def merged_hf(self) -> Path:
        return self.run_dir(phases.MERGE.name) / "hf"

    @property
    def grpo_tasks(self) -> Path:
        return self.workdir / phases.GRPO_TASKS_FILE.format(language=self.grpo_language)

    @property
    def gates_file(self) -> Path:
        return self.logs / "quality_gates.json"

    @property
    def lock_file(self) -> Path:
        """One pipeline per workdir, quick test or not (they share the GPU)."""
        return self.workdir / "logs" / ".pipeline.lock"

    def train_data(self, phase: phases.Phase) -> Path:
        return self.data / str(phase.dataset) / "train"

    def final_adapters(self) -> list[tuple[phases.Phase, Path]]:
        """Trained stages in order with their finished final/ folders (what an evaluation step compares)."""
        return phases.final_adapters(self.base, self.slug)

    def stale_folders(self) -> list[Path]:
        return sorted(p for root in (self.base / phases.DATA_ROOT, self.checkpoints) if root.is_dir()
                      for p in root.iterdir() if STALE_MARK in p.name and p.is_dir())

    def shell(self) -> dict[str, str]:
        return {"DATA_DIR": str(self.data), "CKPT_DIR": str(self.checkpoints), "LOG_DIR": str(self.logs),
                "EXPORT_DIR": str(self.run_dir(phases.EXPORT.name)), "GATES_FILE": str(self.gates_file),
                "LOCK_FILE": str(self.lock_file), "RUN_RECORD": str(self.logs / RUN_RECORD),
                "DECISIONS_FILE": str(self.logs / DECISIONS), "GRPO_TASKS": str(self.grpo_tasks),
                "RUN_ESTIMATE": str(self.logs / RUN_ESTIMATE),
                "PHASE_NAMES": " ".join(phases.NAMES)}
