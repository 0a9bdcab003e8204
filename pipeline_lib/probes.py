"""Fixed Harmony probe prompts and the one measure of how close two sets of logits are: shared by the merge's
merged == base+adapter check (pipeline_lib.merge), the adapter fingerprint (pipeline_lib.fingerprint) and the
GGUF validation (pipeline_lib.gguf_export)."""

from __future__ import annotations

import contextlib
from typing import Any

# Probe conversations for the logits checks: short (< 100 tokens, llama.cpp ignores YaRN
# truncate:false, longer prompts would differ for that reason alone) and in Harmony, the format every phase trains on.
PROBE_CONVERSATIONS: list[list[dict[str, str]]] = [
    [
        {"role": "system", "content": "You are a coding agent in a terminal."},
        {"role": "user", "content": "List the files in src/ and open main.rs."},
        {"role": "assistant", "content": "I will run ls src/ first, then read main.rs."},
    ],
    [
        {"role": "user", "content": "Why does `cargo build` fail with E0382?"},
        {"role": "assistant", "content": "E0382 means a value was used after it was moved; clone it or borrow."},
    ],
]


def harmony_probe_ids(conversations: list[list[dict[str, str]]] = PROBE_CONVERSATIONS) -> list[list[int]]:
    """Token ids of each probe conversation rendered by openai_harmony (the format's reference implementation)."""
    from pipeline_lib.vocab import configure_offline_harmony

    configure_offline_harmony()
    from openai_harmony import Conversation, HarmonyEncodingName, Message, Role, load_harmony_encoding

    encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    out = []
    for turns in conversations:
        messages = []
        for turn in turns:
            message = Message.from_role_and_content(Role(turn["role"]), turn["content"])
            if turn["role"] == "assistant":
                message = message.with_channel("final")
            messages.append(message)
        out.append(list(encoding.render_conversation(Conversation.from_messages(messages))))
    return out


def probe_logits(model, probes: list[list[int]], suffix: list[int] | None = None, float32: bool = False):
    """Logits of each probe as fp32 on the CPU, concatenated over positions: [sum(len), vocab]. With ``suffix``, the
    probe is run with those tokens appended and only its own positions kept: the same logits in exact arithmetic
    (causal model), so the difference is the model's numerical noise under a changed layout. ``float32``: compute
    the forward in fp32 whatever the weights' dtype (``float32_forward``)."""
    import torch

    device = next(model.parameters()).device
    rows = []
    with torch.no_grad(), (float32_forward(model) if float32 else contextlib.nullcontext()):
        for ids in probes:
            logits = model(input_ids=torch.tensor([ids + (suffix or [])], device=device)).logits[0, : len(ids)]
            rows.append(logits.float().cpu())
    return torch.cat(rows)


_LOW_PRECISION = ("bfloat16", "float16")


def _upcast(tensors, saved: list[tuple[Any, Any]] | None = None) -> list[tuple[Any, Any]]:
    """bf16/fp16 tensors -> fp32 in place (``.data``, so a Parameter stays the same object); returns what to undo,
    appended to ``saved`` one tensor at a time, so a cast that fails part way (out of memory) leaves a full record."""
    saved = [] if saved is None else saved
    for tensor in tensors:
        if str(tensor.dtype).removeprefix("torch.") in _LOW_PRECISION:
            saved.append((tensor, tensor.dtype))
            tensor.data = tensor.data.float()
    return saved


def _restore(saved: list[tuple[Any, Any]]) -> None:
    for tensor, dtype in saved:
        tensor.data = tensor.data.to(dtype)  # exact: every value came from this dtype


@contextlib.contextmanager
def float32_forward(model: Any):
    """Forwards of a bf16 model computed in fp32, one decoder layer upcast at a time, with eager attention and
    eager experts. Why: on CUDA the loaders keep bf16 weights (fp32 needs ~84 GB for the 20B, over an 80 GB H100),
    and a bf16 forward of a random-weight GPT-OSS is far from the same weights in fp32 -- its top-4 routing flips on
    many tokens. The real-shape smoke run measured it (H200, 2026-11-29; docs/BENCHMARKS.md): the BF16 GGUF, which
    holds exactly the saved bf16 weights, against a bf16-forward HF reference gave rel_p90 0.74 (median 0.08), so
    the tight GGUF check failed on a correct file. Here every weight keeps its bf16 value and only the arithmetic is
    fp32, as in llama.cpp (a BF16 GGUF of the same shape then measured 0.047 from it). The extra memory is the
    embedding, the LM head and one decoder layer in fp32: +4.6 GB measured on the 2-layer real shape (5.31 ->
    9.92 GB), which has the 20B's embedding, LM head and layer sizes, so the 20B's increment should be the same
    (not measured there). Parameters that are fp32 already (PEFT keeps LoRA weights in fp32) are not touched, and
    every cast is undone exactly on exit. No-op for a model that has no bf16/fp16 weights (the CPU path)."""
    import torch

    tensors = [*model.parameters(), *model.buffers()]
    if not any(str(t.dtype).removeprefix("torch.") in _LOW_PRECISION for t in tensors):
        yield
        return
    layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    if not layers:
        raise ValueError(f"float32_forward: no *DecoderLayer module in {type(model).__name__}")
    in_layers = {id(t) for layer in layers for t in [*layer.parameters(), *layer.buffers()]}
    pending: dict[int, list[tuple[Any, Any]]] = {}

    def pre_hook(module, args):
        _upcast([*module.parameters(), *module.buffers()], pending.setdefault(id(module), []))

    def post_hook(module, args, output):
        _restore(pending.pop(id(module), []))

    matmul_precision, cudnn_tf32 = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    handles: list[Any] = []
    outside: list[tuple[Any, Any]] = []
    try:
        with eager_attention(model, experts=True):
            handles = [h for layer in layers for h in (layer.register_forward_pre_hook(pre_hook),
                                                       layer.register_forward_hook(post_hook))]
            _upcast((t for t in tensors if id(t) not in in_layers), outside)  # embedding, final norm, LM head
            # fp32 means fp32: TF32 matmuls (10-bit mantissa) would bring back the rounding this removes.
            torch.set_float32_matmul_precision("highest")
            torch.backends.cudnn.allow_tf32 = False
            yield
    finally:  # also after a failed setup or a forward that raised inside a layer
        torch.set_float32_matmul_precision(matmul_precision)
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
        _restore(outside)
        for handle in handles:
            handle.remove()
        for layer_id in list(pending):
            _restore(pending.pop(layer_id))


def logits_agreement(reference, candidate) -> dict[str, float]:
    """How close two [positions, vocab] logit arrays are. rel = max over the vocab of |d| / std(reference), per
    position; the checks use its 90th percentile over positions, ``rel_p90``, because top-k
    expert routing is discontinuous: a router near-tie flips one expert for an isolated token under any rounding
    change (measured, BF16 GGUF of a tiny merged model: 1 of 87 positions at 2.06, the other 86 <= 0.024), while a
    real bug moves every position (attention sinks zeroed: median 0.21, p90 1.0; dropped expert deltas: ~1-3).
    The max, median, top-1 agreement and Pearson correlation are reported beside it."""
    import torch

    reference = torch.as_tensor(reference, dtype=torch.float64)
    candidate = torch.as_tensor(candidate, dtype=torch.float64)
    std = reference.std().clamp_min(1e-30)
    per_position = (candidate - reference).abs().amax(-1) / std
    ref_c = reference - reference.mean()
    cand_c = candidate - candidate.mean()
    corr = float((ref_c * cand_c).sum() / (ref_c.norm() * cand_c.norm()).clamp_min(1e-30))
    return {
        "rel_p90": float(per_position.quantile(0.9)),
        "rel_median": float(per_position.median()),
        "rel_max_abs_diff": float(per_position.max()),
        "max_abs_diff": float(per_position.max() * std),
        "argmax_agreement": float((reference.argmax(-1) == candidate.argmax(-1)).double().mean()),
        "correlation": corr,
    }


@contextlib.contextmanager
def eager_attention(model: Any, experts: bool = False):
    """flex_attention -> eager for no-grad forwards, restored after. A training model on CUDA uses flex, and
    inductor's no-grad flex kernel failed for them: the probes on the H100 (NoValidChoicesError, 2026-11-25) and IPO's
    reference precompute on the H200 (2026-11-28). Eager is also what the loaders (merge, export) use, so both sides
    of a fingerprint comparison run the same attention code. Used by pipeline_lib.fingerprint, .ipo and .grpo.
    ``experts=True`` also switches the experts to transformers' eager loop (``float32_forward``: the CUDA loaders'
    grouped_mm is a bf16 path). transformers reads both settings at call time."""
    configs = {id(m.config): m.config for m in model.modules() if hasattr(getattr(m, "config", None),
                                                                          "_attn_implementation")}
    switched = [c for c in configs.values() if c._attn_implementation == "flex_attention"]
    moe = [(c, c._experts_implementation) for c in configs.values()
           if experts and getattr(c, "_experts_implementation", None) not in (None, "eager")]
    try:
        for config in switched:
            config._attn_implementation = "eager"
        for config, _ in moe:
            config._experts_implementation = "eager"
        yield
    finally:
        for config in switched:
            config._attn_implementation = "flex_attention"
        for config, implementation in moe:
            config._experts_implementation = implementation
