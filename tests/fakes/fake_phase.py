"""Stand-in for every phase script in the orchestrator's fast tests (copied under each real script's name).

It accepts the real CLIs' flags, writes the files the orchestrator and gates read (datasets markers, checkpoint-N/
with trainer_state.json + adapter safetensors, final/, manifests), and records its argv and whether HF_TOKEN
reached it in <workdir>/fake_calls.jsonl. FAKE_LOSS sets the logged loss (FAKE_REWARD: GRPO's reward);
FAKE_STEP_SLEEP slows each step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

NAME = Path(sys.argv[0]).name


def record(extra: dict | None = None) -> None:
    """One line per call; ``config`` is the YAML the orchestrator passed (--config), read as the real scripts do."""
    config = None
    if "--config" in sys.argv:
        import yaml

        config = yaml.safe_load(Path(sys.argv[sys.argv.index("--config") + 1]).read_text())
    with open(Path.cwd() / "fake_calls.jsonl", "a") as fh:
        fh.write(json.dumps({"script": NAME, "argv": sys.argv[1:], "hf_token": os.environ.get("HF_TOKEN"),
                             "lora_r": (config or {}).get("lora_r"), **(extra or {})}) + "\n")


def adapter(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "adapter_config.json").write_text(json.dumps({"r": 8, "base_model_name_or_path": "fake"}))
    save_file({"w": np.zeros((4, 4), dtype=np.float32)}, str(out / "adapter_model.safetensors"))


def train(args: argparse.Namespace) -> None:
    out = Path(args.output_dir)
    steps = args.max_steps if args.max_steps > 0 else 20
    start = 0
    history = []
    if args.resume_from_checkpoint:
        state = json.loads((Path(args.resume_from_checkpoint) / "trainer_state.json").read_text())
        start, history = state["global_step"], state["log_history"]
    loss = float(os.environ.get("FAKE_LOSS", "1.0"))
    for step in range(start + 1, steps + 1):
        time.sleep(float(os.environ.get("FAKE_STEP_SLEEP", "0")))
        history.append({"step": step, "loss": loss})
        if NAME == "18_grpo_rl.py":  # what the GRPO gate reads (a mean of the logged rewards); FAKE_REWARD sets it
            history[-1]["reward"] = float(os.environ.get("FAKE_REWARD", "0.75"))
        if step % args.save_steps == 0 or step == steps:
            ckpt = out / f"checkpoint-{step}"
            adapter(ckpt)
            # a real Trainer checkpoint holds its optimizer state (a torch.save zip; no torch import here)
            with zipfile.ZipFile(ckpt / "optimizer.pt", "w") as z:
                z.writestr("optimizer/data.pkl", b"")
            (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": history}))
    adapter(out / "final")
    (out / "final" / "trainer_state.json").write_text(json.dumps({"global_step": steps, "log_history": history}))
    record({"resumed_from": args.resume_from_checkpoint, "start": start})


def merge(args: argparse.Namespace) -> None:
    if args.export:
        out = Path(args.output_dir)
        (out / "hf").mkdir(parents=True, exist_ok=True)
        (out / "hf" / "config.json").write_text("{}")
        save_file({"w": np.ones((10,), dtype=np.float32)}, str(out / "hf" / "model.safetensors"))
        (out / "gguf_q4").mkdir(exist_ok=True)
        manifest = {"passed": True, "hf": {"passed": True, "checks": {"merged_equals_adapter": {"passed": True}}},
                    "gguf": {"status": "ok", "passed": True}}
        (out / "manifest.json").write_text(json.dumps(manifest))
    else:
        hf = Path(args.output_dir) / "hf"
        hf.mkdir(parents=True, exist_ok=True)
        (hf / "config.json").write_text(json.dumps({"dtype": "float32"}))
        save_file({"w": np.ones((10,), dtype=np.float32)}, str(hf / "model.safetensors"))
        checks = {"merged_equals_adapter": {"passed": True}, "merged_weights_hold_delta": {"passed": True},
                  "smoke_test": {"passed": True},
                  "size": {"passed": True, "parameters": 10}}
        (hf / "manifest.json").write_text(json.dumps({"passed": True, "saved_dtype": "float32", "checks": checks}))
    record()


def data(args: argparse.Namespace) -> None:
    out = Path(args.output_dir)
    for split in ("tool_calling/train", "agent_traj/train", "preference/train", "tool_calling/heldout"):
        (out / split).mkdir(parents=True, exist_ok=True)
        (out / split / "dataset_info.json").write_text("{}")
        (out / split / "state.json").write_text(json.dumps({"_fingerprint": f"{time.time_ns()}"}))
    (out / "prep_report.json").write_text(json.dumps({"source": args.source, "quick_test": args.quick_test}))
    record()


def main() -> None:
    p = argparse.ArgumentParser()
    for flag in ("--output_dir", "--output-dir", "--resume_from_checkpoint", "--source", "--local-dir"):
        p.add_argument(flag)
    p.add_argument("--max_steps", type=int, default=-1)
    p.add_argument("--save_steps", type=int, default=5)
    p.add_argument("--export", action="store_true")
    p.add_argument("--quick-test", action="store_true")
    args, _ = p.parse_known_args()
    if NAME == "tui_data_prep.py":
        data(args)
    elif NAME == "19_merge_adapter.py":
        merge(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
