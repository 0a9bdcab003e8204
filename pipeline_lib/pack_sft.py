"""Sequence packing for SFT: many tokenized conversations per row, no attention across them.

    python -m pipeline_lib.pack_sft --train_data_path data/coding_tui/agent_traj/train --max_seq_length 32768 \
        [--tokenizer checkpoints/<slug>-coding-tui-merged/hf]

writes ``<train_data_path>_packed_<max_seq_length>/`` (e.g. ``data/coding_tui/agent_traj/train_packed_32768/``),
which Phase 2 picks up automatically (writeup §4); a phase that finds no such folder packs on the fly and saves it.

How it works — TRL already does each piece, so this module only runs them once and saves the result:
- Packing is TRL's ``pack_dataset(strategy="bfd")``: Best-Fit-Decreasing bin packing (longest first, each into the
  fullest row it still fits) of the pre-tokenized ``input_ids`` + ``assistant_masks``, whole conversations only
  (rows are already truncated to max_seq_length by pipeline_lib.sft_data, so "bfd" never cuts one). It adds
  ``seq_lengths`` (the conversation lengths of each row).
- At train time TRL's ``DataCollatorForLanguageModeling(padding_free=True)`` turns ``seq_lengths`` into
  ``position_ids`` that restart at 0 for every conversation, sends no ``attention_mask``, and sets the label of each
  conversation's first token to -100 (so no token is trained to predict the next conversation).
- transformers 5.x (``masking_utils.find_packed_sequence_indices``) can build a block-diagonal causal mask from those
  position_ids when attention_mask is absent, on eager/sdpa/flex — but ``GptOssModel.forward`` (5.17) does not pass
  position_ids to ``create_causal_mask``/``create_sliding_window_causal_mask``, so on GPT-OSS packed conversations
  silently attend to each other (measured on the tiny model: logits of the 2nd conversation off by up to 0.5).
  ``enable_packed_attention`` adds a forward pre-hook on the GptOssModel that builds both masks from position_ids
  (what the model would do if it passed them) and hands them in as the per-layer-type mask mapping it accepts;
  ``verify_packed_attention`` proves on the real model, before training, that a conversation's logits are the same
  packed behind another one as alone (tests/test_packing.py: packed == unpacked loss, and the unhooked model and
  non-reset positions differ).

So packed training is SFTTrainer with ``packing=False, padding_free=True, max_length=None`` on this dataset: the same
TRL code path as ``packing=True``, minus re-tokenizing and re-packing the whole set on every launch or resume.
``check_packed_collation`` verifies the collator really produced packed batches — Unsloth is known to ignore
packing for gpt_oss — and fails loudly rather than train across conversations.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

PACK_INFO_FILE = "pack_info.json"
PACK_FORMAT_VERSION = 1


class PackingError(RuntimeError):
    """Packed batches are not what the loss needs (no position_ids reset, attention across conversations...)."""


def packed_dataset_dir(train_data_path: str | os.PathLike, max_seq_length: int) -> Path:
    """``data/coding_tui/agent_traj/train`` + 32768 -> ``data/coding_tui/agent_traj/train_packed_32768``."""
    path = Path(train_data_path)
    return path.with_name(f"{path.name}_packed_{max_seq_length}")


def pack_key(**parts: Any) -> str:
    """Identity of a packed dataset: what it was made from (source fingerprint, length, tokenizer, split)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def pack_tokenized(dataset: Any, max_seq_length: int) -> Any:
    """BFD-pack a tokenized dataset (input_ids + assistant_masks) into rows of <= max_seq_length tokens."""
    from trl import pack_dataset

    too_long = [i for i, n in enumerate(dataset["input_ids"]) if len(n) > max_seq_length][:5]
    if too_long:
        raise PackingError(f"rows {too_long} are longer than max_seq_length={max_seq_length}; truncate them first "
                           "(pipeline_lib.sft_data.tokenize_sft_dataset) so packing never cuts a conversation")
    columns = [c for c in ("input_ids", "assistant_masks", "labels") if c in dataset.column_names]
    return pack_dataset(dataset.select_columns(columns), max_seq_length, strategy="bfd")


def packing_stats(packed: Any, max_seq_length: int) -> dict[str, Any]:
    import pyarrow.compute as pc

    table = packed.data.table if hasattr(packed.data, "table") else packed.data
    rows = len(packed)
    docs = int(pc.sum(pc.list_value_length(table.column("seq_lengths"))).as_py() or 0)
    tokens = int(pc.sum(pc.list_value_length(table.column("input_ids"))).as_py() or 0)
    return {
        "packed": True,
        "strategy": "bfd",
        "max_seq_length": max_seq_length,
        "rows": rows,
        "conversations": docs,
        "tokens": tokens,
        "conversations_per_row": round(docs / rows, 3) if rows else 0.0,
        "fill_ratio": round(tokens / (rows * max_seq_length), 4) if rows else 0.0,
    }


def load_packed(folder: str | os.PathLike, key: str | None = None) -> tuple[Any, dict[str, Any]] | None:
    """The pre-packed dataset in ``folder`` and its info, or None when absent or made from other inputs."""
    from datasets import load_from_disk

    folder = Path(folder)
    if not (folder / "dataset_info.json").is_file() and not (folder / "state.json").is_file():
        return None
    info_path = folder / PACK_INFO_FILE
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    if key is not None and info.get("key") not in (None, key):
        print(f"[pack_sft] {folder} was packed from other inputs (key {info.get('key')} != {key}); repacking",
              file=sys.stderr)
        return None
    dataset = load_from_disk(str(folder))
    missing = {"input_ids", "seq_lengths"} - set(dataset.column_names)
    if missing or not ({"assistant_masks", "labels"} & set(dataset.column_names)):
        raise PackingError(f"{folder} is not a packed SFT dataset: needs input_ids, seq_lengths and assistant_masks "
                           f"(or labels), has {dataset.column_names}")
    if not info:
        print(f"[pack_sft] {folder} has no {PACK_INFO_FILE}: using it as found (provenance unknown)", file=sys.stderr)
    return dataset, info


def save_packed(packed: Any, folder: str | os.PathLike, info: dict[str, Any]) -> Path:
    """save_to_disk into a temp folder, then rename: a crash never leaves a half-written packed dataset behind."""
    from pipeline_lib.provenance import write_json_atomic

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    packed.save_to_disk(str(tmp))
    write_json_atomic(tmp / PACK_INFO_FILE, {"format_version": PACK_FORMAT_VERSION, **info})
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def load_or_pack(tokenized_fn: Any, folder: str | os.PathLike, max_seq_length: int, key: str,
                 extra_info: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Use the pre-packed folder when it matches ``key``; else call ``tokenized_fn()``, pack, save and return it.

    tokenized_fn is a callable so the (long) tokenization is skipped entirely when the packed data is reused.
    Returns (packed dataset, info) where info holds packing stats plus whatever was saved with it.
    """
    found = load_packed(folder, key)
    if found is not None:
        dataset, info = found
        stats = packing_stats(dataset, max_seq_length)
        return dataset, {**info, **stats, "source": "pre-packed", "folder": str(folder)}
    tokenized, tokenize_info = tokenized_fn()
    packed = pack_tokenized(tokenized, max_seq_length)
    stats = packing_stats(packed, max_seq_length)
    info = {"key": key, **(extra_info or {}), "tokenization": tokenize_info, **stats}
    save_packed(packed, folder, info)
    from datasets import load_from_disk

    return load_from_disk(str(folder)), {**info, "source": "packed now", "folder": str(folder)}


def _packed_mask_hook(module: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]] | None:
    from transformers.masking_utils import (
        create_causal_mask,
        create_sliding_window_causal_mask,
        find_packed_sequence_indices,
    )

    position_ids = kwargs.get("position_ids")
    if position_ids is None or kwargs.get("attention_mask") is not None or kwargs.get("past_key_values") is not None:
        return None
    if find_packed_sequence_indices(position_ids) is None:  # one sequence per row: the model's own mask is right
        return None
    embeds = kwargs.get("inputs_embeds")
    if embeds is None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        weight = module.get_input_embeddings().weight
        # Only batch, length, dtype and device are read from it: a zero-width stand-in avoids a second embedding.
        embeds = weight.new_empty((*input_ids.shape, 0))
    mask_kwargs = {"config": module.config, "inputs_embeds": embeds, "attention_mask": None,
                   "past_key_values": None, "position_ids": position_ids}
    kwargs["attention_mask"] = {"full_attention": create_causal_mask(**mask_kwargs),
                                "sliding_attention": create_sliding_window_causal_mask(**mask_kwargs)}
    return args, kwargs


def enable_packed_attention(model: Any) -> int:
    """Make GPT-OSS honour packed position_ids (see module docstring). Returns how many modules were hooked."""
    hooked = 0
    for module in model.modules():
        if type(module).__name__ == "GptOssModel" and not getattr(module, "_packed_mask_hooked", False):
            module.register_forward_pre_hook(_packed_mask_hook, with_kwargs=True)
            module._packed_mask_hooked = True
            hooked += 1
    return hooked


def _per_position_rel(a: Any, ref: Any) -> dict[str, float]:
    """max |a - ref| over the vocab at each position, over std(ref): its median, 90th percentile and max."""
    import torch

    per_pos = (a - ref).abs().amax(-1) / ref.std().clamp(min=1e-6)
    p50, p90 = torch.quantile(per_pos, torch.tensor([0.5, 0.9], device=per_pos.device)).tolist()
    return {"p50": p50, "p90": p90, "max": float(per_pos.max())}


def verify_packed_attention(model: Any, first: list[int], second: list[int], *, tolerance: float = 0.05,
                            noise_factor: float = 1.5) -> dict[str, Any]:
    """Logits of ``second`` packed behind ``first`` (position_ids reset, no attention_mask) vs ``second`` alone.

    The comparison is made against the model's own numerical noise, measured in the same call: ``second`` followed
    by ``first`` (a causal model gives its first positions the same logits in exact arithmetic; the layout is the
    packed one's). Passes when the packed difference's median and 90th percentile over positions stay within
    ``noise_factor`` x the noise's + ``tolerance`` (all as |delta logits| / std). Measured on the H100
    (scripts/diag_packed_attention.py, 2026-11-25): fp32 -> noise 0, packed 0, leaking attention p50 6.1; a
    random-weight bf16 20B -> noise p50 1.28 / p90 1.80 (chaotic expert routing), packed identical to the noise,
    leaking p50 6.7 / p90 7.3. The tiny fp32 model: ~1e-7. Raises PackingError otherwise.
    """
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()

    def logits(ids: list[int], positions: list[int] | None = None) -> Any:
        kwargs = {"position_ids": torch.tensor([positions], device=device)} if positions is not None else {}
        return model(input_ids=torch.tensor([ids], device=device), **kwargs).logits[0].float()

    try:
        with torch.no_grad():
            alone = logits(second)
            noise = _per_position_rel(logits(second + first)[: len(second)], alone)
            positions = list(range(len(first))) + list(range(len(second)))
            diff = _per_position_rel(logits(first + second, positions)[len(first):], alone)
    finally:
        model.train(was_training)
    passed = all(diff[k] <= noise_factor * noise[k] + tolerance for k in ("p50", "p90"))
    report = {"passed": passed, "max_rel_logit_diff": diff["max"], "packed_vs_alone": diff,
              "noise_floor": noise, "tolerance": tolerance, "noise_factor": noise_factor,
              "tokens": [len(first), len(second)]}
    if not passed:
        raise PackingError(f"packed conversations attend to each other (logits differ from the unpacked ones by "
                           f"p50 {diff['p50']:.3g} / p90 {diff['p90']:.3g} x std; numerical noise p50 "
                           f"{noise['p50']:.3g} / p90 {noise['p90']:.3g}): train with --no-packing or use a "
                           f"backend that honours position_ids")
    return report


def check_packed_collation(collator: Any, dataset: Any, n_rows: int = 4) -> dict[str, Any]:
    """Run the trainer's collator on a few packed rows and prove the batch is packed the way the loss needs.

    Passes when: no attention_mask (it would override the per-conversation mask), position_ids restart at 0 once
    per conversation (sum of len(seq_lengths) over the rows), and every restart position has label -100.
    """
    # BFD puts the longest conversations first, alone in their rows: check the rows holding the most conversations.
    counts = [len(x) for x in dataset["seq_lengths"]]
    picked = sorted(range(len(counts)), key=lambda i: -counts[i])[:n_rows]
    rows = [dataset[i] for i in picked]
    batch = collator(rows)
    expected_starts = sum(len(r["seq_lengths"]) for r in rows)
    problems = []
    if "attention_mask" in batch:
        problems.append("batch has an attention_mask: conversations would attend to each other")
    if "position_ids" not in batch:
        problems.append("batch has no position_ids: positions run on across conversations")
    else:
        pos = batch["position_ids"]
        n_tokens = sum(len(r["input_ids"]) for r in rows)
        starts = int((pos[:, :n_tokens] == 0).sum())
        if starts != expected_starts:
            problems.append(f"position_ids restart {starts} times, expected {expected_starts} (one per conversation)")
        if "labels" in batch and bool((batch["labels"][pos == 0] != -100).any()):
            problems.append("a conversation's first token is trained (it would be predicted from the previous one)")
    report = {"passed": not problems, "problems": problems, "rows_checked": len(rows),
              "conversations_checked": expected_starts}
    if problems:
        raise PackingError("packed batches are not packed correctly: " + "; ".join(problems)
                           + ". Train with --no-packing (or fix the backend's collator).")
    return report


def packed_train_key(dataset: Any, max_seq_length: int, tokenizer: Any, *, eval_rows: int,
                     max_train_samples: int | None, seed: int = 0) -> str:
    """What a packed train split is made from; a pre-packed folder with another key is rebuilt."""
    from pipeline_lib.sft_data import HarmonyMasker

    return pack_key(source=dataset._fingerprint, rows=len(dataset), max_seq_length=max_seq_length,
                    vocab=len(tokenizer), role_ids=HarmonyMasker(tokenizer).role_ids, eval_rows=eval_rows,
                    max_train_samples=max_train_samples, seed=seed if eval_rows else None, mask_rule=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pre-pack a Harmony SFT dataset into <path>_packed_<len>/.")
    parser.add_argument("--train_data_path", required=True, help="datasets save_to_disk folder with a text column")
    parser.add_argument("--max_seq_length", type=int, required=True)
    parser.add_argument("--tokenizer", default=None, help="model folder with tokenizer files (default: built-in)")
    parser.add_argument("--text_field", default="text")
    parser.add_argument("--force", action="store_true", help="repack even if a matching packed folder exists")
    args = parser.parse_args(argv)

    from pipeline_lib.sft_data import load_text_dataset, tokenize_sft_dataset
    from pipeline_lib.unsloth_utils import load_training_tokenizer

    tokenizer = load_training_tokenizer(args.tokenizer)
    dataset = load_text_dataset(args.train_data_path, args.text_field)
    folder = packed_dataset_dir(args.train_data_path, args.max_seq_length)
    if args.force:
        shutil.rmtree(folder, ignore_errors=True)
    key = packed_train_key(dataset, args.max_seq_length, tokenizer, eval_rows=0, max_train_samples=None)
    _, info = load_or_pack(lambda: tokenize_sft_dataset(dataset, tokenizer, args.max_seq_length, args.text_field),
                           folder, args.max_seq_length, key)
    print(f"[pack_sft] {info['source']}: {folder} rows={info['rows']} conversations={info['conversations']} "
          f"fill={info['fill_ratio']:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
