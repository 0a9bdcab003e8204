"""GPU diagnostic: does packed attention on GPT-OSS (flex_attention + our block-diagonal masks) stay inside each
conversation, and how large is bf16 numerical noise on a random model?

    python scripts/diag_packed_attention.py [--layers 24] [--dtype bfloat16] [--tokens 128]

Builds a random GPT-OSS from configs/gpt-oss-20b (optionally fewer layers) in memory on the GPU and prints, as
p50/p90/max over positions of max|delta logits| / std(logits):
  noise   second conversation alone vs alone followed by extra tokens (causal: identical in exact arithmetic)
  packed  second packed behind the first, with pipeline_lib.pack_sft.enable_packed_attention
  leak    the same packed input without the hook (conversations attend to each other: the negative control)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rel_stats(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    per_pos = (a - b).abs().amax(-1) / b.std().clamp(min=1e-6)
    q = torch.quantile(per_pos, torch.tensor([0.5, 0.9], device=per_pos.device))
    agree = (a.argmax(-1) == b.argmax(-1)).float().mean()
    return {"p50": round(q[0].item(), 4), "p90": round(q[1].item(), 4), "max": round(per_pos.max().item(), 4),
            "argmax_agree": round(agree.item(), 3)}


def main() -> None:
    from transformers import AutoConfig, GptOssForCausalLM

    from pipeline_lib.pack_sft import enable_packed_attention

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--attn", default="flex_attention")
    args = parser.parse_args()

    config = AutoConfig.from_pretrained(str(Path(__file__).resolve().parents[1] / "configs" / "gpt-oss-20b"))
    delattr(config, "quantization_config")
    config.num_hidden_layers = args.layers
    config.layer_types = config.layer_types[: args.layers]
    config._attn_implementation = args.attn
    config._experts_implementation = "grouped_mm"
    torch.manual_seed(0)
    torch.set_default_dtype(getattr(torch, args.dtype))
    with torch.device("cuda"):
        model = GptOssForCausalLM(config).eval()
    torch.set_default_dtype(torch.float32)
    g = torch.Generator().manual_seed(1)
    first = torch.randint(0, 199_000, (args.tokens,), generator=g).tolist()
    second = torch.randint(0, 199_000, (args.tokens,), generator=g).tolist()
    extra = torch.randint(0, 199_000, (args.tokens,), generator=g).tolist()
    dev = "cuda"

    def logits(ids: list[int], positions: list[int] | None = None) -> torch.Tensor:
        kw = {"position_ids": torch.tensor([positions], device=dev)} if positions is not None else {}
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids], device=dev), **kw).logits[0].float()

    packed_pos = list(range(len(first))) + list(range(len(second)))
    alone = logits(second)
    noise = rel_stats(logits(second + extra)[: len(second)], alone)
    leak = rel_stats(logits(first + second, packed_pos)[len(first):], alone)
    enable_packed_attention(model)
    packed = rel_stats(logits(first + second, packed_pos)[len(first):], alone)
    print(f"layers={args.layers} dtype={args.dtype} attn={args.attn} tokens={args.tokens}")
    for name, stats in (("noise", noise), ("packed", packed), ("leak", leak)):
        print(f"  {name:7} {stats}")


if __name__ == "__main__":
    main()
