"""LoRA on GPT-OSS: attention AND experts, through Unsloth on CUDA or transformers + PEFT anywhere.

    from pipeline_lib.unsloth_utils import load_model_for_training, apply_lora_config
    model, tokenizer = load_model_for_training("openai/gpt-oss-20b", backend="auto", max_seq_length=8192)
    model = apply_lora_config(model, 64)                      # q/k/v/o + experts' gate_up/down, 739,639,296 params

Why experts need care: in transformers 5.x the 32 experts of a GPT-OSS layer are two 3-D parameters
(``mlp.experts.gate_up_proj`` [32, 2880, 5760], ``mlp.experts.down_proj`` [32, 2880, 2880]), not ``nn.Linear``s.
``target_modules=["gate_proj", "up_proj", ...]`` silently matches nothing there (Unsloth #3405/#4193: expert LoRA was
off while logs claimed MoE LoRA). Two backends, one call:
- ``unsloth`` (CUDA + ``import unsloth`` works): ``FastLanguageModel.get_peft_model(target_modules=[q,k,v,o,
  gate_up_proj, down_proj], use_gradient_checkpointing="unsloth")``; Unsloth maps the singular fused names onto its
  split-LoRA expert kernels (8,923 tok/s vs 4,440 stock at r64/seq 4096 on an H100).
- ``hf`` (everywhere): PEFT ``LoraConfig(target_modules=[q,k,v,o], target_parameters=[experts' 3-D params])``.
Both give the same count on gpt-oss-20b: r64 -> 739,639,296, r128 -> 1,479,278,592 (attention only: 31,850,496).

The router (``mlp.router``, Linear 2880 -> 32) is never a target: a rank-64/128 "low-rank" update of a 32-output
matrix is a full-rank rewrite of the routing, which reshuffles which experts see which tokens and so invalidates
what the frozen experts (and their adapters) learned; it also stays out of Unsloth's fused MoE kernels.

``verify_lora_updates`` is the silent-failure detector every training phase runs after training:
every LoRA tensor, the experts' included, must have changed and no base weight may have.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, Literal

ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]
EXPERT_PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
# Unsloth's names for the fused expert projections (singular): it maps them onto the 3-D experts.
UNSLOTH_TARGET_MODULES = [*ATTENTION_MODULES, "gate_up_proj", "down_proj"]
Backend = Literal["auto", "unsloth", "hf", "fast"]
# Base tensors up to this many elements are snapshotted exactly; above it (the 20B model: 20.9e9) an integer
# fingerprint per tensor (_fingerprint) keeps the check from doubling GPU memory.
EXACT_SNAPSHOT_LIMIT = 200_000_000


class LoraUpdateError(RuntimeError):
    """Training finished but the adapter did not learn what it claims (e.g. experts frozen)."""


def unsloth_available() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# Hub ids of the released checkpoints, whose experts are MXFP4 (a local folder is judged by its config.json).
RELEASED_MXFP4 = ("openai/gpt-oss-20b", "openai/gpt-oss-120b")
UNSLOTH_MXFP4_REFUSED = (
    "Unsloth does not train a released MXFP4 checkpoint into an adapter that plain PEFT reproduces: on the H200 "
    "(2026-11-28, docs/BENCHMARKS.md 'GPU smoke run') its experts were left out of LoRA when kept packed, and "
    "with them dequantized the saved adapter's logits through PEFT differed from the training process's by 0.82 "
    "logit-std (tolerance 0.1), so merge, IPO and export would work on another model. ")


# What 'auto' trains on, from one H200 run of scripts/bench_train_step.py (docs/BENCHMARKS.md "Our fast path vs
# Unsloth vs stock", run 4: 24 layers of the 20B shape, random bf16, same card, code and 80 GB cap for all three):
#   Phase 1 (r64, batch 1 x 4,096, unpacked): unsloth 11,327 tok/s, fast 8,940, hf 5,391;
#   Phase 2 (r128, 32,768): fast packed 11,845, unsloth 7,228 (trains one conversation per row, sft.effective_packing).
# The fast path's bf16 kernels passed their numerics check against stock PEFT in that run (bf16_kernel, every
# workload); on CPU it only runs a per-expert loop, so there 'auto' stays on stock transformers + PEFT.
AUTO_WHY = {
    "cpu": "no CUDA GPU: stock transformers + PEFT (the fast path's expert kernels are CUDA bf16 grouped GEMMs)",
    "4bit": "--load_in_4bit: only Unsloth trains a 4-bit base (QLoRA)",
    "mxfp4": ("released MXFP4 checkpoint, which Unsloth does not train into a PEFT-reproducible adapter; the fast "
              "path trains it dequantized at 1.66x stock hf's tok/s (Phase 1, H200, docs/BENCHMARKS.md run 4)"),
    "packed": ("packed rows: Unsloth's gpt_oss collator would train them unpacked, one conversation per row; the fast "
               "path trains them packed at 1.64x Unsloth's tok/s (Phase 2, H200, docs/BENCHMARKS.md run 4)"),
    "unsloth": ("unpacked rows: Unsloth runs 1.27x the fast path's tok/s there (Phase 1, H200, docs/BENCHMARKS.md "
                "run 4)"),
    "no_unsloth": ("unsloth is not installed: the fast path runs 1.66x stock hf's tok/s (Phase 1, H200, "
                   "docs/BENCHMARKS.md run 4)"),
}


def auto_backend(*, cuda: bool, unsloth: bool, mxfp4: bool = False, packing: bool = False,
                 load_in_4bit: bool = False) -> tuple[str, str]:
    """(backend, why) that 'auto' picks on a machine (``cuda``, ``unsloth`` importable) for a phase's model and rows.

    A pure rule, so the phases, ``import_unsloth_first`` and the cost estimate (pipeline_lib/estimate.py) agree.
    """
    if not cuda:
        return "hf", AUTO_WHY["cpu"]
    if load_in_4bit:
        return "unsloth", AUTO_WHY["4bit"]  # resolve_backend says so when unsloth is missing
    if mxfp4:
        return "fast", AUTO_WHY["mxfp4"]
    if packing:
        return "fast", AUTO_WHY["packed"]
    return ("unsloth", AUTO_WHY["unsloth"]) if unsloth else ("fast", AUTO_WHY["no_unsloth"])


def choose_backend(backend: str = "auto", model: str | os.PathLike | None = None, *, packing: bool = False,
                   load_in_4bit: bool = False) -> tuple[str, str]:
    """(backend, why) for ``--backend``: 'auto' follows ``auto_backend`` on this machine; an explicit choice is
    checked (unsloth needs CUDA and the package, and is refused on a released MXFP4 checkpoint)."""
    if backend not in ("auto", "unsloth", "hf", "fast"):
        raise ValueError(f"--backend must be auto, unsloth, hf or fast, got {backend!r}")
    if backend in ("hf", "fast"):
        return backend, f"--backend {backend}"
    # QLoRA quantizes the base itself, so a 4-bit load of an MXFP4 checkpoint is not the refused 16-bit one
    mxfp4 = model is not None and not load_in_4bit and is_mxfp4_checkpoint(model)
    have_cuda, have_unsloth = cuda_available(), unsloth_available()
    if backend == "unsloth" or (backend == "auto" and load_in_4bit and have_cuda):
        if mxfp4:
            raise RuntimeError(UNSLOTH_MXFP4_REFUSED + f"{model} is MXFP4: pass --backend hf or fast, or a bf16 "
                               "copy of it (e.g. unsloth/gpt-oss-20b-BF16)")
        if not (have_cuda and have_unsloth):
            missing = " and ".join(m for m, ok in (("a CUDA GPU", have_cuda), ("the unsloth package", have_unsloth))
                                   if not ok)
            raise RuntimeError(f"--backend unsloth{' (--load_in_4bit)' if load_in_4bit else ''} needs {missing}; "
                               "install the gpt_oss extra (pip install -e '.[gpt_oss]') on a CUDA machine, or pass "
                               "--backend hf")
        if backend == "unsloth":
            return "unsloth", "--backend unsloth"
    return auto_backend(cuda=have_cuda, unsloth=have_unsloth, mxfp4=mxfp4, packing=packing,
                        load_in_4bit=load_in_4bit)


def resolve_backend(backend: str = "auto", model: str | os.PathLike | None = None, *, packing: bool = False,
                    load_in_4bit: bool = False) -> str:
    """The backend ``choose_backend`` picks (without its reason).

    'fast' (pipeline_lib/fast_path.py): the hf model and PEFT adapter, expert LoRA computed as split grouped GEMMs,
    the same adapter format. 'auto' on CUDA: fast for a released MXFP4 checkpoint and for packed rows, unsloth for
    unpacked rows when it is installed (AUTO_WHY gives the measured reasons); hf without CUDA.
    """
    return choose_backend(backend, model, packing=packing, load_in_4bit=load_in_4bit)[0]


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def phase_choice(argv: list[str], default_config: str | os.PathLike | None = None) -> dict[str, Any]:
    """backend, model, packing and load_in_4bit as a phase script will parse them (its YAML, ``--config FILE`` or
    ``default_config``, under the command line), read without importing transformers or trl.

    Booleans follow HfArgumentParser: ``--packing``, ``--packing false``, ``--packing=false``, ``--no-packing``.
    """
    from pathlib import Path

    import yaml

    def value(flag: str) -> str | None:
        found = None
        for i, arg in enumerate(argv):
            if arg.startswith(flag + "="):
                found = arg.split("=", 1)[1]
            elif arg == flag and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                found = argv[i + 1]
        return found

    def boolean(name: str, default: bool) -> bool:
        result = default
        for i, arg in enumerate(argv):
            if arg in (f"--no-{name}", f"--no_{name}", f"--no-{name.replace('_', '-')}"):
                result = False
            elif arg == f"--{name}" or arg.startswith(f"--{name}="):
                given = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
                result = given.lower() not in _FALSE if given.lower() in _TRUE + _FALSE else True
        return result

    config = value("--config") or default_config
    settings: dict[str, Any] = {}
    if config is not None and Path(config).is_file():
        settings = yaml.safe_load(Path(config).read_text()) or {}
    return {
        "backend": value("--backend") or str(settings.get("backend", "auto")),
        "model": (value("--model_name_or_path") or value("--base_model") or settings.get("model_name_or_path")
                  or settings.get("base_model")),
        "packing": boolean("packing", bool(settings.get("packing", False))),
        "load_in_4bit": boolean("load_in_4bit", bool(settings.get("load_in_4bit", False))),
    }


def import_unsloth_first(argv: list[str], default_config: str | os.PathLike | None = None) -> bool:
    """Import unsloth before trl/transformers/peft (it patches them on import) when the phase will train on it:
    ``--backend unsloth``, or 'auto' resolving to it (``auto_backend``). Never otherwise: its import-time patches
    would change the hf and fast paths.

    Call at the top of a phase script, before anything imports trl, with the phase's default config (its backend,
    model and packing decide 'auto'). Returns True when unsloth was imported.
    """
    choice = phase_choice(argv, default_config)
    try:  # the phase's own choice, made early (choose_backend imports neither transformers nor trl)
        backend, _ = choose_backend(choice["backend"], choice["model"], packing=choice["packing"],
                                    load_in_4bit=choice["load_in_4bit"])
    except (RuntimeError, ValueError):
        return False  # the phase's choose_backend raises the same error, with its reason, once it parses its flags
    if backend != "unsloth":
        return False
    import unsloth  # noqa: F401

    return True


def is_moe(model: Any) -> bool:
    """True when the model has GPT-OSS-style experts, whatever their storage.

    Decided by the config (``num_local_experts``) or an ``mlp.experts`` module, never by the parameters' shape:
    Unsloth keeps a released checkpoint's experts packed as 4-D uint8 MXFP4 blocks, and a shape test ("3-D
    gate_up_proj") then said "not MoE", so LoRA went on attention only and the experts-required LoRA update check
    was switched off with it (H200 smoke run, 2026-11-28: trainable 2,654,208, experts 0, phase "OK").
    """
    if getattr(getattr(model, "config", None), "num_local_experts", 0):
        return True
    return any(name.endswith("mlp.experts") for name, _ in model.named_modules())


def hf_lora_config(r: int, *, lora_alpha: int | None = None, lora_dropout: float = 0.0, experts: bool = True):
    """PEFT LoraConfig for the hf backend: q/k/v/o modules plus (experts=True) the experts' 3-D parameters."""
    from peft import LoraConfig

    if experts and lora_dropout:
        # PEFT's ParamWrapper can't factor dropout out of lora_B(lora_A(dropout(x))) for 3-D parameters.
        raise ValueError(f"--lora_dropout must be 0 when experts are LoRA targets (got {lora_dropout})")
    return LoraConfig(
        r=r,
        lora_alpha=lora_alpha if lora_alpha is not None else 2 * r,
        lora_dropout=lora_dropout,
        bias="none",
        task_type="CAUSAL_LM",
        target_modules=list(ATTENTION_MODULES),
        target_parameters=list(EXPERT_PARAMETERS) if experts else None,
    )


def apply_lora_config(model: Any, r: int, *, lora_alpha: int | None = None, lora_dropout: float = 0.0,
                      include_experts: bool = True, backend: str = "auto", max_seq_length: int | None = None,
                      seed: int = 3407) -> Any:
    """Wrap ``model`` with LoRA on attention and, for MoE models (include_experts=True), on the experts.

    lora_alpha defaults to 2*r. The unsloth backend also turns on Unsloth's offloaded gradient checkpointing; the
    fast backend is the hf one with pipeline_lib.fast_path computing the expert LoRA (``training_path`` says which).
    """
    backend = resolve_backend(backend)
    experts = include_experts and is_moe(model)
    if backend == "unsloth":
        from unsloth import FastLanguageModel

        targets = UNSLOTH_TARGET_MODULES if experts else ATTENTION_MODULES
        kwargs: dict[str, Any] = {}
        if max_seq_length is not None:
            kwargs["max_seq_length"] = max_seq_length
        return FastLanguageModel.get_peft_model(
            model,
            r=r,
            target_modules=list(targets),
            lora_alpha=lora_alpha if lora_alpha is not None else 2 * r,
            lora_dropout=lora_dropout,
            bias="none",
            use_gradient_checkpointing="unsloth",
            random_state=seed,
            **kwargs,
        )
    import torch
    from peft import get_peft_model

    # PEFT draws lora_A from the global RNG: without this, two runs with the same --seed start from different
    # adapters (and a DDP run could not be compared with a one-process run of the same global batch).
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, hf_lora_config(r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                                      experts=experts))
    if backend == "fast":
        from pipeline_lib.fast_path import enable_fast_experts

        enable_fast_experts(peft_model)
    return peft_model


def training_path(model: Any, backend: str) -> str:
    """One line for the phase logs: which training path runs and why."""
    if backend == "unsloth":
        return "unsloth: FastLanguageModel split-LoRA expert kernels, offloaded gradient checkpointing"
    from pipeline_lib.fast_path import fast_path_report

    report = fast_path_report(model)
    if backend == "fast":
        return f"fast: {report['reason']} in {report['layers']} layers"
    return "hf: stock transformers + PEFT target_parameters (experts re-parametrised as W + BA each forward)"


def load_training_tokenizer(name_or_path: str | os.PathLike | None) -> Any:
    """The model folder's tokenizer when it has one, else the offline-built gpt-oss tokenizer (same ids)."""
    from pathlib import Path

    from pipeline_lib.tokenizer import load_gpt_oss_tokenizer

    local = name_or_path is not None and (Path(name_or_path) / "tokenizer_config.json").is_file()
    return load_gpt_oss_tokenizer(Path(name_or_path) if local else None)


def is_mxfp4_checkpoint(name_or_path: str | os.PathLike) -> bool:
    """True when a local folder's config.json declares MXFP4 quantization, or for the released hub ids.

    Reads the JSON itself: phase scripts ask before anything imports transformers (import_unsloth_first)."""
    import json
    from pathlib import Path

    config = Path(name_or_path) / "config.json"
    if config.is_file():
        quant = json.loads(config.read_text()).get("quantization_config") or {}
        return str(quant.get("quant_method", "")).lower() == "mxfp4"
    return str(name_or_path).rstrip("/").lower() in RELEASED_MXFP4


def load_model_for_training(name_or_path: str | os.PathLike, *, backend: str = "auto", max_seq_length: int = 4096,
                            load_in_4bit: bool = False, precision: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) ready for ``apply_lora_config``.

    unsloth: ``FastLanguageModel.from_pretrained`` (16-bit LoRA, or QLoRA with load_in_4bit).
    hf and fast: ``pipeline_lib.modeling.load_causal_lm`` (bf16 + flex attention on CUDA, fp32 + eager on CPU; never
    FA2/FA3, they lack the attention-sink backward), gradient checkpointing on CUDA.
    The tokenizer comes from the model folder when it has one, else the offline-built gpt-oss tokenizer (identical
    to the released one), so no hub access is needed for it.
    """
    from pipeline_lib.modeling import detect_precision, load_causal_lm

    # QLoRA quantizes the base itself; a 16-bit Unsloth load of an MXFP4 checkpoint is refused (UNSLOTH_MXFP4_REFUSED).
    backend = resolve_backend(backend, model=None if load_in_4bit else name_or_path)
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    tokenizer = load_training_tokenizer(name_or_path)
    if backend == "unsloth":
        from unsloth import FastLanguageModel

        model, _ = FastLanguageModel.from_pretrained(
            model_name=str(name_or_path),
            max_seq_length=max_seq_length,
            dtype=None,
            load_in_4bit=load_in_4bit,
            full_finetuning=False,
        )
        return model, tokenizer
    if load_in_4bit:
        raise ValueError("--load_in_4bit needs --backend unsloth (bitsandbytes QLoRA); the hf backend trains 16-bit")
    precision = precision or detect_precision()
    model = load_causal_lm(name_or_path, precision)
    if precision.device == "cuda":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    return model, tokenizer


def count_lora_trainable(config_or_path: Any, r: int, *, include_experts: bool = True) -> int:
    """Trainable LoRA parameters for a model config, on a meta-device model (no weights, seconds for 20B)."""
    from peft import get_peft_model

    from pipeline_lib.modeling import build_meta_model

    model = build_meta_model(config_or_path)
    peft_model = get_peft_model(model, hf_lora_config(r, experts=include_experts and is_moe(model)))
    return sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


def _group(name: str) -> str:
    if "lora_" not in name:
        return "base"
    return "experts" if "experts" in name else "attention"


def trainable_report(model: Any) -> dict[str, int]:
    """Parameter counts: total, trainable, LoRA on attention / experts, and trainable non-LoRA (must be 0)."""
    report = {"total": 0, "trainable": 0, "lora_attention": 0, "lora_experts": 0, "trainable_non_lora": 0}
    for name, param in model.named_parameters():
        n = param.numel()
        report["total"] += n
        if not param.requires_grad:
            continue
        report["trainable"] += n
        group = _group(name)
        key = {"attention": "lora_attention", "experts": "lora_experts", "base": "trainable_non_lora"}[group]
        report[key] += n
    return report


@dataclass
class ParameterSnapshot:
    """LoRA tensors copied exactly (on CPU); base tensors exactly when small, else an integer fingerprint
    (_fingerprint)."""

    lora: dict[str, Any] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)
    base_exact: bool = True


_FINGERPRINT_MODULUS = 65521  # position weights 1..65521: a moved or swapped element changes the weighted sum
# 16.8M words per chunk (an int64 copy of a whole 20B expert tensor, 531M elements, would take 4.2 GB), a multiple of
# the modulus so that every chunk starts at weight 1 and one weight vector serves them all.
_FINGERPRINT_CHUNK = _FINGERPRINT_MODULUS * 256


def _fingerprint(tensor: Any, chunk: int = _FINGERPRINT_CHUNK) -> Any:
    """Two int64 sums over the tensor's raw 16-bit words: plain, and weighted by position. Integer sums are exact,
    so the result does not depend on the device or on the reduction order. A float64 sum/sum-of-squares did: on the
    H200 (FSDP2 via accelerate, 2026-11-28) the snapshot taken before sharding and the gathered tensor after
    training differed in the last bits for 8 of 71 untouched base tensors, router and lm_head included, and the
    LoRA-update check failed a correct run. A changed element changes at least one of the two sums (an fp32 whose
    two words move by +d and -d keeps the plain sum but not the weighted one). Bounds: a word is at most 2^15 and a
    weight 2^16, so a 2^31-word tensor (a 1e9-element fp32 tensor) stays below 2^63. ``chunk`` (a multiple of the
    modulus) only changes how the sums are split, never their value."""
    import torch

    if chunk % _FINGERPRINT_MODULUS:
        raise ValueError(f"chunk {chunk} is not a multiple of {_FINGERPRINT_MODULUS}")
    flat = tensor.detach().reshape(-1)
    if flat.is_floating_point() and flat.element_size() >= 2 and flat.numel() > 0:
        words = flat.contiguous().view(torch.int16)
    else:  # integer and 8-bit tensors: their values as they are
        words = flat
    # Exact integer sums give the same answer on any device, so a CPU tensor (a model loaded on the CPU before FSDP
    # shards it) is summed on the GPU when there is one (on the 2-core CPU box: 1.9 s per 1e8 words).
    device = words.device
    if device.type == "cpu" and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    total = torch.zeros(2, dtype=torch.int64, device=device)
    weights = torch.arange(min(chunk, words.numel()), device=device, dtype=torch.int64) % _FINGERPRINT_MODULUS + 1
    for start in range(0, words.numel(), chunk):
        c = words[start:start + chunk].to(device).to(torch.int64)
        total += torch.stack([c.sum(), (c * weights[:c.numel()]).sum()])
    return total.cpu()


def snapshot_parameters(model: Any, *, exact_limit: int = EXACT_SNAPSHOT_LIMIT) -> ParameterSnapshot:
    """Take before ``trainer.train()``; compare after with ``verify_lora_updates``."""
    params = list(model.named_parameters())
    base_size = sum(p.numel() for n, p in params if "lora_" not in n)
    snap = ParameterSnapshot(base_exact=base_size <= exact_limit)
    for name, param in params:
        if "lora_" in name:
            snap.lora[name] = param.detach().to("cpu", copy=True)
        elif snap.base_exact:
            snap.base[name] = param.detach().to("cpu", copy=True)
        else:
            snap.base[name] = _fingerprint(param)
    return snap


def _whole(param: Any) -> Any:
    """The whole tensor behind a parameter. FSDP2 (configs/accelerate/fsdp2.yaml) leaves each rank a DTensor
    shard; ``full_tensor()`` all-gathers it, so every rank must call this for the same parameters in the same
    order (verify_lora_updates runs on every rank)."""
    gather = getattr(param, "full_tensor", None)
    return (gather() if gather is not None else param).detach()


def verify_lora_updates(before: ParameterSnapshot, after_model: Any, *,
                        require_experts: bool = True) -> dict[str, Any]:
    """Did training change every LoRA tensor (experts included) and no base weight? Returns a JSON-able report.

    Needs >= 2 optimizer steps with a non-zero learning rate: lora_B starts at 0, so lora_A gets its first
    gradient only after B has moved. ``passed`` is False when: there are no LoRA tensors; any LoRA tensor is
    unchanged; require_experts and the model has no expert LoRA tensors or any of them is unchanged; or any base
    tensor changed.
    """
    import torch

    lora_unchanged: list[str] = []
    base_changed: list[str] = []
    counts = {"attention": [0, 0], "experts": [0, 0]}  # [tensors, changed]
    for name, param in after_model.named_parameters():
        if name in before.lora:
            group = _group(name)
            changed = not torch.equal(before.lora[name], _whole(param).to("cpu"))
            counts[group][0] += 1
            counts[group][1] += int(changed)
            if not changed:
                lora_unchanged.append(name)
        elif name in before.base:
            whole = _whole(param)
            now = whole.to("cpu") if before.base_exact else _fingerprint(whole)
            if not torch.equal(before.base[name], now):
                base_changed.append(name)
    n_lora = counts["attention"][0] + counts["experts"][0]
    problems = []
    if n_lora == 0:
        problems.append("no LoRA tensors found")
    if lora_unchanged:
        problems.append(f"{len(lora_unchanged)} LoRA tensors unchanged")
    if require_experts and counts["experts"][0] == 0:
        problems.append("no expert LoRA tensors: experts were not adapted")
    elif require_experts and counts["experts"][1] < counts["experts"][0]:
        problems.append("expert LoRA did not change: experts were not trained")
    if base_changed:
        problems.append(f"{len(base_changed)} base weights changed")
    report = {
        "passed": not problems,
        "problems": problems,
        "lora_tensors": n_lora,
        "lora_changed": counts["attention"][1] + counts["experts"][1],
        "attention_lora_tensors": counts["attention"][0],
        "attention_lora_changed": counts["attention"][1],
        "expert_lora_tensors": counts["experts"][0],
        "expert_lora_changed": counts["experts"][1],
        "experts_trained": counts["experts"][0] > 0 and counts["experts"][1] == counts["experts"][0],
        "base_tensors_checked": len(before.base),
        "base_check": "exact" if before.base_exact else "int64 sums of raw 16-bit words",
        "base_changed": base_changed[:20],
        "lora_unchanged": lora_unchanged[:20],
    }
    return report
