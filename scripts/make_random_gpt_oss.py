"""Build a random-weight GPT-OSS for smoke runs and save it in the released checkpoint's file layout.

    python scripts/make_random_gpt_oss.py --output_dir /workspace/smoke/gpt-oss-2l [--layers 2] [--layout mxfp4]
    python scripts/make_random_gpt_oss.py --output_dir /tmp/tiny-mxfp4 --tiny          # CPU: the tiny GPT-OSS

Real shape (default): configs/gpt-oss-20b/config.json with --layers layers (every layer at its real size: 2 layers
are 2.4B parameters, almost all of them the 201,088-row embedding and lm_head), bf16 random weights built directly
on the GPU when there is one. --tiny: the embedded tiny GPT-OSS's config (pipeline_lib/tiny_model.py).
--layout mxfp4 (default) writes the experts as MXFP4 *_blocks/*_scales with the released quantization_config
(pipeline_lib/mxfp4.py), so every phase loads it through the same code as openai/gpt-oss-20b; --layout bf16 writes
plain save_pretrained shards. Attention sinks are drawn from N(0, 1) (zeros by default) so a mapping that drops
them shows in the logits checks. Skipped when <output_dir>/random_model.json records the same settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.provenance import REPO_ROOT  # noqa: E402

REAL_CONFIG = REPO_ROOT / "configs" / "gpt-oss-20b"


def build_config(layers: int, tiny: bool):
    from transformers import AutoConfig

    from pipeline_lib.tiny_model import tiny_gpt_oss_config

    if tiny:
        return tiny_gpt_oss_config()
    config = AutoConfig.from_pretrained(str(REAL_CONFIG))
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.num_hidden_layers = layers
    config.layer_types = config.layer_types[:layers]
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--layers", type=int, default=2, help="layers at the real shape (ignored with --tiny)")
    parser.add_argument("--layout", choices=("mxfp4", "bf16"), default="mxfp4")
    parser.add_argument("--tiny", action="store_true", help="the tiny GPT-OSS config instead of the real shape")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.layers < 1:
        parser.error(f"--layers must be >= 1, got {args.layers}")

    import torch
    from transformers import GenerationConfig, GptOssForCausalLM

    from pipeline_lib.mxfp4 import save_released_layout
    from pipeline_lib.tokenizer import GENERATION_EOS_IDS, save_gpt_oss_tokenizer

    out = Path(args.output_dir)
    settings = {"layers": None if args.tiny else args.layers, "layout": args.layout, "tiny": args.tiny,
                "seed": args.seed}
    marker = out / "random_model.json"
    if marker.is_file() and json.loads(marker.read_text()).get("settings") == settings:
        print(f"random GPT-OSS already there: {out} ({json.loads(marker.read_text())['parameters']:,} parameters)")
        return
    t0 = time.perf_counter()
    config = build_config(args.layers, args.tiny)
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = GptOssForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.sinks.normal_(0.0, 1.0)
    model.generation_config = GenerationConfig(bos_token_id=199998, eos_token_id=GENERATION_EOS_IDS,
                                               pad_token_id=199999, do_sample=False)
    n_params = sum(p.numel() for p in model.parameters())
    if args.layout == "mxfp4":
        save_released_layout(model, out)
    else:
        model.save_pretrained(out, safe_serialization=True, max_shard_size="5GB")
    save_gpt_oss_tokenizer(out, model_max_length=config.max_position_embeddings)
    size = sum(p.stat().st_size for p in out.glob("*.safetensors"))
    marker.write_text(json.dumps({"settings": settings, "parameters": n_params, "safetensors_bytes": size,
                                  "made_by": "scripts/make_random_gpt_oss.py"}, indent=2) + "\n")
    print(f"random GPT-OSS ({'tiny' if args.tiny else f'{args.layers}-layer real shape'}, {args.layout}): "
          f"{n_params:,} parameters, {size / 1e9:.2f} GB on disk -> {out} in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
