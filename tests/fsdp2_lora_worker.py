"""FSDP2 as configs/accelerate/fsdp2.yaml asks for it (fully_shard per decoder layer, then the root), applied with
torch directly: accelerate 1.15 has no FSDP on CPU. Used by tests/test_multiprocess.py.

    torchrun --nproc_per_node 2 tests/fsdp2_lora_worker.py MODEL OUT.safetensors      # each rank: its row
    python tests/fsdp2_lora_worker.py MODEL OUT.safetensors [--rows 0]                 # one process: rows 0,1 (or 0)

LoRA r8 on q/k/v/o + experts (the pipeline's hf_lora_config), 2 AdamW steps on fixed 32-token rows; writes the
adapter's LoRA tensors (gathered to full tensors under FSDP2) from rank 0.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import yaml
from peft import get_peft_model
from safetensors.torch import save_file

from pipeline_lib.modeling import load_causal_lm
from pipeline_lib.unsloth_utils import hf_lora_config

REPO = Path(__file__).resolve().parents[1]
ROWS = 2  # the global batch
# gloo's default is 30 min, far past the test's 300 s subprocess timeout (which kills torchrun and keeps no rank's
# log): a rank stuck in a collective fails here with gloo's own timeout error instead. The whole 2-rank run takes
# 9-25 s on the 2-core CPU box (alone, beside 2 busy loops, or 3 runs at once): 120 s per collective stays far
# above a slow but healthy run.
COLLECTIVE_TIMEOUT = timedelta(seconds=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--rows", type=int, nargs="+", default=list(range(ROWS)))
    args = parser.parse_args()
    # A rank that dies on SIGABRT/SIGSEGV prints every Python thread's stack to stderr (which the test shows): the
    # two CI failures (2026-11-29) left only "terminate called without an active exception" and no location.
    faulthandler.enable(all_threads=True)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.manual_seed(0)  # the LoRA A init: the same on every rank and in the one-process run
    model = get_peft_model(load_causal_lm(args.model), hf_lora_config(8))
    rows = args.rows
    if world > 1:
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
        rows = [dist.get_rank()]  # each rank its own row of the global batch
        config = yaml.safe_load((REPO / "configs" / "accelerate" / "fsdp2.yaml").read_text())["fsdp_config"]
        assert config["fsdp_version"] == 2, config
        mesh = init_device_mesh("cpu", (world,))
        for module in model.modules():
            if type(module).__name__ == config["fsdp_transformer_layer_cls_to_wrap"]:
                fully_shard(module, mesh=mesh, reshard_after_forward=config["fsdp_reshard_after_forward"])
        fully_shard(model, mesh=mesh)
    ids = torch.randint(0, 1000, (ROWS, 32), generator=torch.Generator().manual_seed(7))[rows]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(2):
        model(input_ids=ids, labels=ids).loss.backward()  # equal-length rows: mean of row means == batch mean
        optimizer.step()
        optimizer.zero_grad()
    lora = {name: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().contiguous()
            for name, p in model.named_parameters() if "lora_" in name}
    sharded = sum(hasattr(p, "full_tensor") for p in model.parameters())
    if int(os.environ.get("RANK", "0")) == 0:
        save_file(lora, args.out, metadata={"sharded_params": str(sharded)})
    if world > 1:
        # Both ranks reach teardown together: in a fresh-clone CI run (2026-11-29) rank 1 once aborted in gloo
        # ("terminate called without an active exception") while rank 0 was still writing the file.
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        # destroy_process_group() does not end gloo here: FSDP2's FSDPMeshInfo objects still hold the group, and
        # they outlive del of the model, optimizer and mesh plus gc.collect() (measured: its 3 threads, gloo_tcp_loop
        # and 2 pt_gloo_runloop, still run then and in atexit; strace shows them killed by exit_group, never joined).
        # A normal exit so runs the interpreter's finalization and the C++ static destructors beside live gloo
        # threads: the one teardown path left where "terminate called without an active exception" (std::terminate
        # with no C++ exception in flight) can arise after the barrier. Not reproduced here: 0 of 38 two-rank launches.
        # Both ranks are past the barrier and rank 0's file is written and closed: leave at once, exit status 0.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
