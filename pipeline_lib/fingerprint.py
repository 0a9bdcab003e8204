"""Adapter logits fingerprint: what the training process saw, re-checked wherever the adapter is loaded again.

    record_fingerprint(trainer.model, "checkpoints/tool_calling_sft/final")   # end of every training phase
    check = verify_fingerprint(peft_model, "checkpoints/tool_calling_sft/final")   # merge, IPO, export

A training phase may run on another stack than the phases that load its adapter: Unsloth (its own expert LoRA
kernels, an adapter config with ``lora_B_layout`` / ``unsloth_fused_expert_lora`` keys that PEFT ignores) trains,
plain PEFT merges, trains IPO and exports. If the saved adapter does not mean the same thing to PEFT, everything
after it silently works on another model. So the training process records, in ``final/``, the logits its own model
gives on fixed Harmony probes (pipeline_lib.probes.PROBE_CONVERSATIONS, < 100 tokens) — a fixed sample of 512
vocabulary columns at every position (a full row is 201,088 floats), the argmax over the whole vocabulary, the same
columns with the adapter disabled (the adapter's own effect, to say whether the check can see a lost tensor) and the
layout noise of the model (the probe re-run with a suffix: the same logits in exact arithmetic). The loader
recomputes them and fails loudly when they differ.

Measure (as pipeline_lib.probes.logits_agreement): rel = max over the sampled columns |d| / std(recorded), per
position. Same stack (the training process ran transformers + PEFT on the same device type, as every loader does):
the 90th percentile over positions, ``rel_p90``, against 0.02 in bf16 (measured 0.0 on the H200) and 1e-4 in fp32.
Across stacks (Unsloth's kernels trained, PEFT loads) the **median** over positions, ``rel_median``: a random-weight
model's top-4 routing flips under different bf16 kernels at a tenth or more of the positions, so the p90 of a
correct adapter swung from 0.07 to 0.64 between runs (H200, 2-layer real shape, 2026-11-29), while its median stayed
0.05-0.06, as did the base's (adapter disabled); a misread adapter (expert lora_B in the other layout, a wrong scale)
moves every position that reaches the experts. Cross-stack tolerance = max(rel_tol 0.1, noise_factor x the layout
noise, stack_factor x the base logits' disagreement). docs/BENCHMARKS.md "Fingerprint across stacks" has the runs.

The check says what it can see: ``discriminative`` (the adapter's effect, in the same statistic, >= 3 x the
tolerance) and ``discriminative_experts`` (the same for the experts' part alone, measured here by switching the
expert LoRA off). On the random-weight smoke model after 8 steps neither holds across stacks: with every expert
lora_B zeroed the median measured 0.072-0.090, against 0.052-0.058 for the adapter as saved (same runs). Such an
adapter is passed, and the check says it could not tell; ``saved_adapter_problems`` (the saved tensors against the
trained ones) still runs.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FINGERPRINT_FILE = "logits_fingerprint.safetensors"
FINGERPRINT_JSON = "logits_fingerprint.json"
VOCAB_SAMPLE = 512
VOCAB_SEED = 20261128


class FingerprintMismatch(RuntimeError):
    """The adapter loaded here does not give the logits the training process recorded."""


# The stack every loader uses (merge, IPO, GRPO, export load through plain transformers + PEFT). A fingerprint
# recorded by a process on this stack, on the same device type, is the same computation: the H200 smoke run
# (2026-11-28, docs/BENCHMARKS.md) measured rel_p90 0.0 exactly in bf16, while zeroing one expert lora_B tensor (layer
# 0 gate_up, all experts) of a lightly trained adapter (effect 1.04) moved it by only 0.047 -- inside the cross-stack
# tolerance (0.1) but far outside a same-stack one.
LOADER_BACKEND = "hf"


@dataclass(frozen=True)
class FingerprintSettings:
    # Cross-stack (Unsloth or our fast path recorded it, or another device type), judged on rel_median: 0.1 in bf16,
    # ~2x the medians a correct Unsloth-trained adapter measured through PEFT (0.052, 0.058; H200 2026-11-29), and
    # noise_factor x the measured layout noise (the probes re-run with a suffix: median 0.029 there).
    rel_tol: dict[str, float] = field(default_factory=lambda: {"float32": 1e-4, "bfloat16": 0.1})
    noise_factor: float = 2.0
    # Same stack and device type, judged on rel_p90: no layout-noise term (same kernels, same probe batches); the
    # bf16 floor leaves room for non-deterministic GPU reductions, which the H200 runs did not show (0.0).
    same_stack_rel_tol: dict[str, float] = field(default_factory=lambda: {"float32": 1e-4, "bfloat16": 0.02})
    # Cross-stack only: tolerance >= stack_factor x the two stacks' disagreement on the BASE logits (adapter disabled,
    # recorded by the training process, recomputed here; the adapter cannot cause it), in the judged statistic. H200
    # 2026-11-29: base median 0.053, the correct adapters' medians 0.98x and 1.09x of it.
    stack_factor: float = 2.0
    # the adapter's effect must be this many tolerances for the check to see its loss
    discriminative_factor: float = 3.0


def same_stack(summary: dict[str, Any], device_here: str) -> bool:
    """True when the recording process ran the loaders' own stack on the same device type as here."""
    recorded_device = str(summary.get("device", "")).split(":")[0]
    return summary.get("backend") == LOADER_BACKEND and recorded_device == device_here.split(":")[0]


def compute_dtype(model: Any) -> str:
    """'bfloat16' when any floating parameter is bf16 (the base on CUDA; LoRA tensors may stay fp32), else fp32."""
    import torch

    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return "bfloat16" if torch.bfloat16 in dtypes or torch.float16 in dtypes else "float32"


def vocab_columns(vocab_size: int, n: int = VOCAB_SAMPLE) -> Any:
    import torch

    generator = torch.Generator().manual_seed(VOCAB_SEED)
    return torch.randperm(vocab_size, generator=generator)[: min(n, vocab_size)].sort().values


@contextlib.contextmanager
def _eval_mode(model: Any):
    """eval() and no_grad for the probes, train mode restored after; Unsloth returns logits only when asked."""
    import torch

    was_training = model.training
    previous = os.environ.get("UNSLOTH_RETURN_LOGITS")
    os.environ["UNSLOTH_RETURN_LOGITS"] = "1"
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
        if previous is None:
            os.environ.pop("UNSLOTH_RETURN_LOGITS", None)
        else:
            os.environ["UNSLOTH_RETURN_LOGITS"] = previous


def _logits(model: Any, probes: list[list[int]], suffix: list[int] | None = None) -> Any:
    """fp32 CPU logits [positions, vocab] of every probe (``suffix`` appended, its positions dropped)."""
    import torch

    device = next(model.parameters()).device
    rows = []
    for ids in probes:
        out = model(input_ids=torch.tensor([ids + (suffix or [])], device=device), use_cache=False)
        logits = out.logits
        if logits is None or logits.ndim != 3 or logits.shape[1] < len(ids):
            raise RuntimeError(f"fingerprint: the model returned no per-position logits (got "
                               f"{None if logits is None else tuple(logits.shape)})")
        rows.append(logits[0, : len(ids)].float().cpu())
    return torch.cat(rows)


@contextlib.contextmanager
def _without_autocast_wrapper(model: Any):
    """Run ``model`` through its own forward, not the one accelerate installs for bf16/fp16 mixed precision.

    ``Accelerator.prepare_model`` (so every Trainer with bf16=True on a model holding fp32 LoRA) replaces
    ``model.forward`` with an autocast-wrapped copy and keeps the original as ``model._original_forward``. The
    training process would then fingerprint its adapter under bf16 autocast (the fp32 LoRA matmuls rounded to
    bf16) while merge, IPO and export re-check it without: the H200 smoke run (2026-11-28, stock PEFT on both sides)
    read 0.184 against a tolerance of 0.1 for an adapter that was never changed."""
    original = model.__dict__.get("_original_forward")
    patched = model.__dict__.get("forward")
    if original is None or patched is None:
        yield
        return
    model.forward = original
    try:
        yield
    finally:
        model.forward = patched


def _adapter_disabled(model: Any):
    return model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()


def measure(model: Any, probes: list[list[int]] | None = None) -> dict[str, Any]:
    """The fingerprint tensors of ``model`` (a PeftModel with its adapter active) and its layout noise."""
    import torch

    from pipeline_lib.probes import eager_attention, harmony_probe_ids, logits_agreement

    probes = probes or harmony_probe_ids()
    with _eval_mode(model), eager_attention(model), _without_autocast_wrapper(model):
        full = _logits(model, probes)
        shifted = _logits(model, probes, suffix=probes[0])
        with _adapter_disabled(model):
            base = _logits(model, probes)
    columns = vocab_columns(full.shape[-1])
    noise = logits_agreement(full, shifted)
    return {
        "tensors": {"adapter": full[:, columns].contiguous(), "argmax": full.argmax(-1),
                    "base": base[:, columns].contiguous(), "columns": columns,
                    "probe_ids": torch.tensor([t for ids in probes for t in ids]),
                    "probe_lengths": torch.tensor([len(ids) for ids in probes])},
        "noise_rel": noise["rel_p90"],
        "noise_rel_median": noise["rel_median"],
        "adapter_effect_rel": logits_agreement(full, base)["rel_p90"],
        "compute_dtype": compute_dtype(model),
        "positions": int(full.shape[0]),
        "vocab": int(full.shape[-1]),
    }


def record_fingerprint(model: Any, out_dir: str | os.PathLike, *, write: bool = True, **info: Any) -> dict[str, Any]:
    """Write FINGERPRINT_FILE (+ FINGERPRINT_JSON) into ``out_dir``; returns the JSON summary.

    ``write=False``: measure only. Under FSDP2 every rank must run the forward (each layer's weights are
    all-gathered from all ranks), and rank 0 alone writes."""
    from safetensors.torch import save_file

    from pipeline_lib.fast_path import stock_forward

    out = Path(out_dir)
    # The fast path (pipeline_lib/fast_path.py) is PEFT's own model and adapter with the expert and q/k/v/o LoRA
    # computed another way (equal to PEFT's within bf16 rounding: its numerics checks). Switched off for the probe
    # forwards, the training process computes exactly what the loaders (plain PEFT) will, so the saved adapter is
    # judged by the tight same-stack rule (p90 <= 0.02, exact 0 when it is read back right) instead of the median
    # across stacks, which cannot see one expert tensor zeroed.
    with stock_forward(model) as switched:
        m = measure(model)
    if switched and info.get("backend") == "fast":
        info = {**info, "backend": LOADER_BACKEND, "trained_by": "fast", "recorded_with": "fast path off (PEFT)"}
    tensors = m.pop("tensors")
    summary = {**m, "device": str(next(model.parameters()).device), **info}
    if write:
        save_file(tensors, str(out / FINGERPRINT_FILE))
        (out / FINGERPRINT_JSON).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def has_fingerprint(adapter_dir: str | os.PathLike) -> bool:
    return (Path(adapter_dir) / FINGERPRINT_FILE).is_file() and (Path(adapter_dir) / FINGERPRINT_JSON).is_file()


@contextlib.contextmanager
def _expert_lora_off(model: Any):
    """The experts' LoRA switched off (PEFT ParamWrapper scaling 0; attention LoRA stays on), restored after.
    Yields how many expert wrappers were switched (0: the adapter has no expert LoRA)."""
    switched = []
    for module in model.modules():
        scaling = getattr(module, "scaling", None)
        if getattr(module, "num_experts", 1) > 1 and isinstance(scaling, dict):
            switched.append((module, dict(scaling)))
            for name in scaling:
                scaling[name] = 0.0
    try:
        yield len(switched)
    finally:
        for module, scaling in switched:
            module.scaling.update(scaling)


def _expert_effect(model: Any, probes: list[list[int]], full: Any, columns: Any, statistic: str) -> float | None:
    """How far the experts' LoRA alone moves this model's probe logits (``statistic`` of rel), None without one."""
    from pipeline_lib.probes import eager_attention, logits_agreement

    with _eval_mode(model), eager_attention(model), _without_autocast_wrapper(model), _expert_lora_off(model) as n:
        if not n:
            return None
        off = _logits(model, probes)
    return logits_agreement(full, off[:, columns])[statistic]


def verify_fingerprint(model: Any, adapter_dir: str | os.PathLike, *, settings: FingerprintSettings | None = None,
                       strict: bool = True) -> dict[str, Any]:
    """Recompute the fingerprint with ``model`` (the adapter loaded from ``adapter_dir``) and compare.

    Returns a manifest-style check (value, threshold, passed, statistic, what the tolerance is made of, whether it
    can see the adapter and its experts' part); with ``strict`` a failure raises FingerprintMismatch. An adapter saved
    without a fingerprint returns ``{"status": "not recorded"}`` (no ``passed`` key: nothing was checked)."""
    import torch
    from safetensors.torch import load_file

    from pipeline_lib.probes import logits_agreement

    settings = settings or FingerprintSettings()
    folder = Path(adapter_dir)
    if not has_fingerprint(folder):
        return {"status": "not recorded", "adapter": str(folder)}
    recorded = load_file(str(folder / FINGERPRINT_FILE))
    summary = json.loads((folder / FINGERPRINT_JSON).read_text())
    ids = recorded["probe_ids"].tolist()
    lengths = recorded["probe_lengths"].tolist()
    probes, start = [], 0
    for n in lengths:
        probes.append(ids[start:start + n])
        start += n
    now = measure(model, probes)
    columns = recorded["columns"]
    same = same_stack(summary, str(next(model.parameters()).device))
    # same stack: every position must agree (p90); across stacks: the typical position (median), see the docstring
    statistic = "rel_p90" if same else "rel_median"
    agreement = logits_agreement(recorded["adapter"], now["tensors"]["adapter"])
    argmax_agreement = float((recorded["argmax"] == now["tensors"]["argmax"]).double().mean())
    dtype = "bfloat16" if "bfloat16" in (summary["compute_dtype"], now["compute_dtype"]) else "float32"
    base = (logits_agreement(recorded["base"], now["tensors"]["base"])
            if "base" in recorded and "base" in now["tensors"] else None)
    if same:
        parts = {"same_stack_rel_tol": settings.same_stack_rel_tol[dtype]}
    else:
        # fingerprints recorded before the median was kept carry the p90 only: an upper bound of the median
        noise = max(summary.get("noise_rel_median", summary["noise_rel"]), now["noise_rel_median"])
        parts = {"rel_tol": settings.rel_tol[dtype], "noise_term": settings.noise_factor * noise,
                 "stack_term": settings.stack_factor * (base[statistic] if base else 0.0)}
    tol = max(parts.values())
    # the adapter's effect in the judged statistic, over the same sampled columns, as the training process saw it
    effect = (logits_agreement(recorded["adapter"], recorded["base"])[statistic] if "base" in recorded
              else summary["adapter_effect_rel"])
    full_here = now["tensors"]["adapter"]
    expert_effect = _expert_effect(model, probes, full_here, columns, statistic)
    value = agreement[statistic]
    passed = value <= tol and bool(torch.equal(columns, now["tensors"]["columns"]))
    check = {
        "value": value, "threshold": tol, "passed": passed, "statistic": statistic,
        "rel_p90": agreement["rel_p90"], "rel_median": agreement["rel_median"],
        "rel_max": agreement["rel_max_abs_diff"], "argmax_agreement": argmax_agreement,
        "adapter_effect_rel": summary["adapter_effect_rel"], "adapter_effect": effect,
        "expert_effect": expert_effect,
        "noise_rel_recorded": summary["noise_rel"], "noise_rel_here": now["noise_rel"],
        "compute_dtype": dtype, "tolerance_parts": parts, "same_stack": same,
        "base_rel_p90": None if base is None else base["rel_p90"],
        "base_rel_median": None if base is None else base["rel_median"],
        "discriminative": effect >= settings.discriminative_factor * tol,
        "discriminative_experts": (None if expert_effect is None
                                   else expert_effect >= settings.discriminative_factor * tol),
        "recorded_by": summary.get("backend"), "recorded_device": summary.get("device"), "adapter": str(folder),
        "note": f"rel = max over 512 sampled vocab columns |here - training process| / std(recorded) per probe "
                f"position; judged: its {'90th percentile' if same else 'median'} over positions; effects in the same "
                "statistic (expert_effect: this model with its expert LoRA switched off); settings: "
                + json.dumps(asdict(settings)),
    }
    if strict and not passed:
        raise FingerprintMismatch(
            f"{folder}: the adapter loaded here gives other logits than the training process recorded "
            f"({statistic} {value:.4g} > tolerance {tol:.4g}; adapter effect {effect:.4g}, argmax "
            f"agreement {argmax_agreement:.3f}). The saved adapter does not mean the same thing to this loader: "
            f"do not merge/train on it. Details: {json.dumps(check, default=str)[:1500]}")
    return check


def describe(check: dict[str, Any]) -> str:
    """One line for logs: 'ok rel_median 0.052 <= 0.106 (bfloat16; adapter effect 0.31, NOT discriminative, ...)'."""
    if "passed" not in check:
        return f"{check.get('status', 'unknown')} ({check.get('adapter', '')})"
    effect = check.get("adapter_effect", check["adapter_effect_rel"])
    line = (f"{'ok' if check['passed'] else 'FAILED'} {check.get('statistic', 'rel_p90')} {check['value']:.3g} "
            f"{'<=' if check['passed'] else '>'} {check['threshold']:.3g} ({check['compute_dtype']}; adapter effect "
            f"{effect:.3g}, {'' if check['discriminative'] else 'NOT '}discriminative")
    if check.get("expert_effect") is not None:
        line += (f"; experts' part {check['expert_effect']:.3g}, "
                 f"{'' if check['discriminative_experts'] else 'NOT '}discriminative")
    if check.get("base_rel_p90") is not None:
        line += f"; base logits differ {check[check.get('statistic', 'rel_p90').replace('rel_', 'base_rel_')]:.3g}"
    return line + ")"


ADAPTER_FILE = "adapter_model.safetensors"


class AdapterSaveMismatch(RuntimeError):
    """The adapter written to disk does not hold the LoRA tensors the training process trained."""


def saved_adapter_problems(adapter_dir: str | os.PathLike, model: Any) -> list[str]:
    """What the saved adapter lacks against the model that trained it; [] when it holds every trained LoRA value.

    Counts elements from the safetensors header (no tensor is read): the trained LoRA parameters of ``model``
    (requires_grad, ``lora_`` in the name) against the tensors in ``adapter_model.safetensors``, and the expert
    part of each (``experts`` in the name). A stack that trains LoRA it does not save (seen on the H200: Unsloth
    on a model loaded with packed MXFP4 experts saved attention LoRA only) fails here, in the phase that trained,
    instead of one phase later in the fingerprint re-check.
    """
    from safetensors import safe_open

    path = Path(adapter_dir) / ADAPTER_FILE
    if not path.is_file():
        return [f"{path} was not written"]
    saved = {"all": 0, "experts": 0}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            n = 1
            for dim in f.get_slice(key).get_shape():
                n *= int(dim)
            saved["all"] += n
            saved["experts"] += n if "experts" in key else 0
    trained = {"all": 0, "experts": 0}
    for name, param in model.named_parameters():
        if param.requires_grad and "lora_" in name:
            trained["all"] += param.numel()
            trained["experts"] += param.numel() if "experts" in name else 0
    problems = []
    if trained["experts"] and not saved["experts"]:
        problems.append(f"{path} holds no expert LoRA tensor, but {trained['experts']:,} expert LoRA values were "
                        "trained: the experts' adapter was not saved")
    if saved["all"] != trained["all"]:
        problems.append(f"{path} holds {saved['all']:,} LoRA values, the trained model {trained['all']:,} "
                        f"(experts: saved {saved['experts']:,}, trained {trained['experts']:,})")
    return problems


def require_saved_adapter(adapter_dir: str | os.PathLike, model: Any, who: str) -> None:
    """Raise AdapterSaveMismatch (naming ``who``) when saved_adapter_problems finds anything."""
    problems = saved_adapter_problems(adapter_dir, model)
    if problems:
        raise AdapterSaveMismatch(f"{who}: the saved adapter is not what was trained: " + "; ".join(problems)
                                  + ". Rerun with --backend hf or fast.")
