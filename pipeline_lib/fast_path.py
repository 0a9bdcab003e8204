"""Our fast LoRA training path for GPT-OSS (``--backend fast``): same PEFT parameters, faster arithmetic.

Why stock is slow (docs/BENCHMARKS.md): PEFT's ``target_parameters`` LoRA on the 3-D experts
(``ParamWrapper``) re-parametrises each expert stack as W + s·(A·B) on every forward — a 1 GB bf16 rebuild per layer
at the real shape — and autograd then takes a full [32, 2880, 5760] weight gradient of that sum. Here the computation
of the PEFT-wrapped experts is replaced, not their parametrisation:

    y_e = x·W_e + b_e + s·(x·A_e)·B_e          for the tokens routed to expert e

as grouped GEMMs over the tokens sorted by expert (``torch.nn.functional.grouped_mm`` / ``torch._grouped_mm`` on
CUDA; a per-expert loop elsewhere). No W + BA is built and the frozen W gets no gradient; routing and permutation
use sort / scatter_add / cumsum only (no host sync). The LoRA tensors are PEFT's own (``lora_A``/``lora_B`` of the
two nested ParamWrappers), read through PEFT's ``get_delta_factors`` so the layout is PEFT's by construction: a
fast-trained adapter is a plain PEFT adapter (merge, IPO and export load it with ``PeftModel.from_pretrained``).

The rest of the path:
- Loss: ``chunked_lm_loss`` / ``chunked_token_logprobs`` never build the [tokens, 201088] fp32 logits: rows of
  ``CE_CHUNK_TOKENS`` tokens at a time, the gradient w.r.t. the hidden states computed in the same pass (so backward
  is one multiply). Inside TRL's trainers the phases already get TRL's chunked fused LM head (``fused_lm_head=True``),
  so the phases only swap the experts; the bench (no TRL) uses these functions.
- Attention: transformers' flex_attention on CUDA (sinks via its LSE path, the sliding window from the config) and
  eager on CPU; packed rows get block-diagonal masks from position_ids through ``pack_sft.enable_packed_attention``.
"""

from __future__ import annotations

import contextlib
import types
from typing import Any

# 2,048 tokens x 201,088 vocab in fp32 = 1.6 GB per chunk of logits (plus its softmax in place): a few percent of
# the card instead of 26 GB for a whole 32K row.
CE_CHUNK_TOKENS = 2048


class FastPathUnavailable(RuntimeError):
    """The model has no PEFT-wrapped GPT-OSS experts the fast path knows how to compute."""


# --------------------------------------------------------------------------------------------------- grouped GEMM
def grouped_mm(x: Any, w: Any, offs: Any) -> Any:
    """(x sorted by group) [N, K] @ per-group w [G, K, M] -> [N, M]; ``offs`` = int32 cumulative group ends.

    CUDA bf16: torch's grouped GEMM (one launch for all experts, no host sync). Elsewhere (CPU tests, fp32): a loop
    over groups with plain matmuls; torch 2.13's CPU grouped_mm backward rejects the zero-stride gradients that
    autograd hands it (measured), and the loop is exact.
    """
    import torch

    if x.is_cuda and w.dtype == torch.bfloat16:
        fn = getattr(torch.nn.functional, "grouped_mm", None) or getattr(torch, "_grouped_mm", None)
        if fn is not None:
            return fn(x.to(w.dtype), w, offs=offs)
    ends = offs.tolist()
    outs, start = [], 0
    for g, end in enumerate(ends):
        outs.append(x[start:end] @ w[g])
        start = end
    return torch.cat(outs, dim=0)


# ------------------------------------------------------------------------------------------------ fused SwiGLU
# GPT-OSS's clamped SwiGLU (GptOssExperts._apply_gate) on the interleaved gate_up rows [S, 2I]: gate = even columns
# clamped above at ``limit``, up = odd columns clamped to [-limit, limit], out = (up + 1) * gate * sigmoid(alpha*gate).
# Stock autograd runs it as ~10 element-wise kernels forward (twice with gradient checkpointing) and ~15 backward,
# most on strided (::2) views that do not vectorise, and keeps ~5 [S, I] intermediates per layer. The H200 profile of
# 2026-11-28 (docs/BENCHMARKS.md, fast path, phase1_r64_4k, 24 layers) puts those kernels at ~90 ms of the 497 ms step
# (strided bf16 binary ops 27 ms, strided copies 22, clamp 12, compare 8, where 6, muls ~15). Here it is one
# autograd Function whose forward and backward are one fused kernel each (torch.compile -> Triton on CUDA): reads
# [S, 2I] (+ [S, I] grad) and writes [S, I] (or [S, 2I]) once, in fp32 registers, and saves only its input.
# Predicted: -75 ms/step at phase1_r64_4k (3 kernels x 24 layers x ~0.1 ms instead of ~90 ms), and at a 32K row
# ~3 GB less transient memory per recomputed layer (the saved intermediates, 4 x 131K x 2880 x 2 bytes each).
# Unsloth does the same with hand-written Triton (_swiglu_fwd_kernel / _swiglu_bwd_kernel: 4.7 + 12.6 ms measured).
def swiglu_forward_math(gate_up: Any, bias: Any, ids: Any, alpha: float, limit: float) -> Any:
    """out [S, I] of the clamped SwiGLU of ``gate_up + bias[ids]`` (bias None: none), computed in fp32 (or wider),
    returned in gate_up's dtype. The expert bias rides in the same kernel: no [S, 2I] gather + add beforehand."""
    import torch

    acc = torch.promote_types(gate_up.dtype, torch.float32)
    h = gate_up.to(acc) if bias is None else gate_up.to(acc) + bias[ids].to(acc)
    gate = h[..., ::2].clamp(max=limit)
    up = h[..., 1::2].clamp(min=-limit, max=limit)
    return ((up + 1) * gate * torch.sigmoid(gate * alpha)).to(gate_up.dtype)


def swiglu_backward_math(gate_up: Any, bias: Any, ids: Any, grad_out: Any, alpha: float, limit: float) -> Any:
    """d loss / d gate_up [S, 2I] (interleaved like gate_up; the bias is frozen) from d loss / d out [S, I].

    d out/d up = glu (0 where |up| > limit), d out/d gate = (up+1)·s·(1 + alpha·gate·(1-s)) (0 where gate > limit),
    s = sigmoid(alpha·gate): torch's clamp passes the gradient where min <= x <= max, so the masks are inclusive."""
    import torch

    acc = torch.promote_types(gate_up.dtype, torch.float32)
    h = gate_up.to(acc) if bias is None else gate_up.to(acc) + bias[ids].to(acc)
    g_raw, u_raw = h[..., ::2], h[..., 1::2]
    gate = g_raw.clamp(max=limit)
    up = u_raw.clamp(min=-limit, max=limit)
    s = torch.sigmoid(gate * alpha)
    dy = grad_out.to(acc)
    d_up = torch.where(u_raw.abs() <= limit, dy * gate * s, 0.0)
    d_gate = torch.where(g_raw <= limit, dy * (up + 1) * s * (1 + alpha * gate * (1 - s)), 0.0)
    return torch.stack((d_gate, d_up), dim=-1).reshape(gate_up.shape).to(gate_up.dtype)


# ------------------------------------------------------------------------------------------- fused expert combine
# After the down projection, stock (and our first version) ran: a gather of the down bias per row ([S, H]), an add,
# a multiply by the routing weight (a new [S, H]), an index_copy back to (token, k) order and a sum over k — and
# their backward: ~9 element-wise/gather kernels per layer and pass over [S, H] bf16 (S = tokens x 4; 94 MB at 4K).
# Here one gather-reduce kernel forward (out[t] = sum_j (y[inv[t,j]] + b[e]) * w[t,j], fp32 accumulation) and one
# backward (grad_y[s] = grad[token(s)] * w[s]; grad_w[s] = <grad[token(s)], y[s] + b[e]>): gathers only, so
# deterministic like the index_copy it replaces. Predicted: -15 ms/step at phase1_r64_4k (~9 kernels x 24 layers x
# 3 passes x ~0.03 ms -> 2 kernels), and one [S, H] tensor less saved per layer.
def combine_forward_math(y: Any, bias: Any, expert_sorted: Any, weights_sorted: Any, inv: Any, top_k: int) -> Any:
    """[N, H] = per token, the sum over its top_k sorted rows of (y + bias[expert]) * routing weight."""
    import torch

    acc = torch.promote_types(y.dtype, torch.float32)
    rows = y[inv].to(acc) + bias[expert_sorted[inv]].to(acc)
    out = (rows * weights_sorted[inv].to(acc)[:, None]).view(-1, top_k, y.shape[-1]).sum(dim=1)
    return out.to(y.dtype)


def combine_backward_math(grad_out: Any, y: Any, bias: Any, expert_sorted: Any, weights_sorted: Any, perm: Any,
                          top_k: int) -> tuple[Any, Any]:
    """(d loss/d y [S, H], d loss/d weights_sorted [S]) from d loss/d out [N, H]."""
    import torch

    acc = torch.promote_types(y.dtype, torch.float32)
    g = grad_out[perm // top_k].to(acc)
    grad_y = (g * weights_sorted.to(acc)[:, None]).to(y.dtype)
    grad_w = (g * (y.to(acc) + bias[expert_sorted].to(acc))).sum(dim=-1).to(weights_sorted.dtype)
    return grad_y, grad_w


class _Kernels:
    """Eager maths and, for bf16/fp16 CUDA tensors, their torch.compile'd twins (one fused Triton kernel each; fp32
    — the CUDA numerics check — runs the eager maths: half the compile time, and the bf16 check covers the kernels).
    ``compiled``: None = not tried, False = eager (compiling failed: ``error`` says why; the eager maths are still
    correct)."""

    def __init__(self, name: str, *fns: Any) -> None:
        self.name, self.eager, self.compiled, self.error = name, fns, None, None

    def fns(self, tensor: Any) -> tuple[Any, ...]:
        import torch

        if not tensor.is_cuda or tensor.dtype not in (torch.bfloat16, torch.float16):
            return self.eager
        if self.compiled is None:
            try:
                import torch

                self.compiled = tuple(torch.compile(f, dynamic=True) for f in self.eager)
            except Exception as err:  # no Triton / inductor here
                self.compiled, self.error = False, f"{type(err).__name__}: {err}"[:300]
        return self.compiled or self.eager

    def call(self, index: int, tensor: Any, *args: Any) -> Any:
        """fns(tensor)[index](*args): ``tensor`` (one of the args) decides compiled or eager."""
        fn = self.fns(tensor)[index]
        if fn is self.eager[index]:
            return fn(*args)
        try:
            return fn(*args)
        except Exception as err:  # a compile error surfaces at the first call: eager from now on, said once
            import torch

            if isinstance(err, torch.cuda.OutOfMemoryError):
                raise
            self.compiled, self.error = False, f"{type(err).__name__}: {err}"[:300]
            return self.eager[index](*args)

    def report(self) -> str:
        if self.compiled is False:
            return f"{self.name}: eager maths (compile failed: {self.error})"
        if self.compiled:
            return f"{self.name}: torch.compile'd (one fused kernel forward, one backward)"
        return f"{self.name}: eager maths (no bf16 CUDA call yet)"


SWIGLU = _Kernels("fused SwiGLU", swiglu_forward_math, swiglu_backward_math)
COMBINE = _Kernels("fused combine", combine_forward_math, combine_backward_math)


class _Functions:
    """The autograd Functions, built lazily (importing this module needs no torch)."""

    swiglu = None
    combine = None

    @classmethod
    def build(cls) -> None:
        if cls.swiglu is not None:
            return
        import torch

        class FusedSwiGLU(torch.autograd.Function):
            @staticmethod
            def forward(ctx, gate_up, bias, ids, alpha, limit):
                ctx.save_for_backward(gate_up, bias, ids)
                ctx.alpha, ctx.limit = alpha, limit
                return SWIGLU.call(0, gate_up, gate_up, bias, ids, alpha, limit)

            @staticmethod
            def backward(ctx, grad_out):
                gate_up, bias, ids = ctx.saved_tensors
                grad = SWIGLU.call(1, gate_up, gate_up, bias, ids, grad_out.contiguous(), ctx.alpha,
                                   ctx.limit)
                return grad, None, None, None, None

        class FusedCombine(torch.autograd.Function):
            @staticmethod
            def forward(ctx, y, bias, expert_sorted, weights_sorted, perm, inv, top_k):
                ctx.save_for_backward(y, bias, expert_sorted, weights_sorted, perm)
                ctx.top_k = top_k
                return COMBINE.call(0, y, y, bias, expert_sorted, weights_sorted, inv, top_k)

            @staticmethod
            def backward(ctx, grad_out):
                y, bias, expert_sorted, weights_sorted, perm = ctx.saved_tensors
                grad_y, grad_w = COMBINE.call(1, y, grad_out.contiguous(), y, bias, expert_sorted,
                                              weights_sorted, perm, ctx.top_k)
                return grad_y, None, None, grad_w, None, None, None

        cls.swiglu, cls.combine = FusedSwiGLU, FusedCombine


def fused_swiglu(gate_up: Any, alpha: float, limit: float, bias: Any = None, ids: Any = None) -> Any:
    """GptOssExperts._apply_gate(gate_up + bias[ids]) as one fused forward and one fused backward kernel (above).
    ``bias`` must be frozen (LoRA does not train the expert biases)."""
    if bias is not None and bias.requires_grad:
        raise FastPathUnavailable("fused_swiglu: the expert bias must be frozen")
    _Functions.build()
    return _Functions.swiglu.apply(gate_up, bias, ids, float(alpha), float(limit))


def fused_combine(y: Any, bias: Any, expert_sorted: Any, weights_sorted: Any, perm: Any, top_k: int) -> Any:
    """[N, H] token outputs from the expert-sorted down projections y [S, H] (bias frozen), see above."""
    import torch

    if bias.requires_grad:
        raise FastPathUnavailable("fused_combine: the expert bias must be frozen")
    inv = torch.empty_like(perm).index_copy_(0, perm, torch.arange(perm.numel(), device=perm.device))
    _Functions.build()
    return _Functions.combine.apply(y, bias, expert_sorted, weights_sorted, perm, inv, int(top_k))


def swiglu_kernel_report() -> str:
    """Which fused kernels ran: for the fast path's report and the bench's JSON."""
    return f"{SWIGLU.report()}; {COMBINE.report()}"


# ------------------------------------------------------------------------------------------------- expert wrapping
def _expert_chain(module: Any) -> tuple[dict[str, Any], Any] | None:
    """For the outermost PEFT ParamWrapper over GPT-OSS experts: ({parameter_name: wrapper}, experts module)."""
    from peft.tuners.lora.layer import ParamWrapper

    if not isinstance(module, ParamWrapper):
        return None
    wrappers: dict[str, Any] = {}
    node = module
    while isinstance(node, ParamWrapper):
        wrappers[node.parameter_name] = node
        node = node.base_layer
    needed = ("gate_up_proj", "down_proj", "gate_up_proj_bias", "down_proj_bias")
    if not all(hasattr(node, n) for n in (*needed, "_apply_gate", "alpha", "limit")):
        return None
    if getattr(node.gate_up_proj, "ndim", 0) != 3 or not getattr(node, "is_transposed", False):
        return None  # the fast forward assumes GPT-OSS's [experts, in, out] layout
    if set(wrappers) - {"gate_up_proj", "down_proj"}:
        return None
    return wrappers, node


def _lora_terms(wrapper: Any | None, dtype: Any) -> list[tuple[Any, Any]]:
    """(scaling·A [E, in, r], B [E, r, out]) per active, unmerged adapter of one ParamWrapper (PEFT's layout)."""
    if wrapper is None or wrapper.disable_adapters or wrapper.merged:
        return []
    terms = []
    for name in wrapper.active_adapters:
        if name not in wrapper.lora_A:
            continue
        if wrapper._did_swap_in_out_features:  # guarded in enable_fast_experts; never reached for GPT-OSS
            raise FastPathUnavailable("expert parameter stored as [experts, out, in]: not the GPT-OSS layout")
        lhs, rhs, scaling = wrapper.get_delta_factors(name)  # delta = scaling * lhs @ rhs, [E, in, out]
        # scaling folded into the [E, in, r] factor: one small multiply instead of a pass over [tokens, out]
        terms.append(((lhs * scaling).to(dtype).contiguous(), rhs.to(dtype).contiguous()))
    return terms


def _expert_projection(x: Any, weight: Any, bias_rows: Any, offs: Any, terms: list, drop_expert: int | None) -> Any:
    # In-place adds on the fresh GEMM output (grouped_mm's backward keeps its inputs, not its output; transformers'
    # grouped_mm experts add their bias the same way): no extra [tokens, out] tensors per term.
    out = grouped_mm(x, weight, offs)
    if bias_rows is not None:  # None: the fused kernels add the bias
        out.add_(bias_rows)
    for lhs, rhs in terms:
        if drop_expert is not None:  # negative control for the numerics checks: expert e's LoRA B removed
            keep = (rhs.new_ones(rhs.shape[0]).index_fill(0, rhs.new_tensor([drop_expert]).long(), 0))
            rhs = rhs * keep[:, None, None]
        out.add_(grouped_mm(grouped_mm(x, lhs, offs), rhs, offs))
    return out


def fast_experts_forward(self: Any, hidden_states: Any, router_indices: Any = None, routing_weights: Any = None,
                         *args: Any, **kwargs: Any) -> Any:
    """Forward of the outermost expert ParamWrapper (installed by ``enable_fast_experts``); same maths as
    GptOssExperts.forward with PEFT's LoRA applied as split products."""
    import torch

    state = self._fast_experts
    if not state["enabled"]:
        return state["original_forward"](hidden_states, router_indices, routing_weights, *args, **kwargs)
    wrappers, experts = _expert_chain(self)
    n_tokens, hidden = hidden_states.shape
    top_k = router_indices.shape[-1]
    n_experts = experts.gate_up_proj.shape[0]
    dtype = hidden_states.dtype

    expert_ids = router_indices.reshape(-1)
    expert_sorted, perm = torch.sort(expert_ids, stable=True)
    counts = torch.zeros(n_experts, dtype=torch.long, device=expert_ids.device)
    counts.scatter_add_(0, expert_ids, torch.ones_like(expert_ids))
    offs = torch.cumsum(counts, 0).to(torch.int32)
    x = hidden_states[perm // top_k]

    drop = state.get("drop_expert_lora_b")
    fused = state.get("fused_swiglu", True) and not (experts.gate_up_proj_bias.requires_grad
                                                      or experts.down_proj_bias.requires_grad)
    if fused:
        gate_up = _expert_projection(x, experts.gate_up_proj, None, offs,
                                     _lora_terms(wrappers.get("gate_up_proj"), dtype), drop)
        act = fused_swiglu(gate_up, experts.alpha, experts.limit, experts.gate_up_proj_bias, expert_sorted)
        out = _expert_projection(act, experts.down_proj, None, offs, _lora_terms(wrappers.get("down_proj"), dtype),
                                 drop)
        weights_sorted = routing_weights.reshape(-1)[perm]
        return fused_combine(out, experts.down_proj_bias, expert_sorted, weights_sorted, perm, top_k).to(dtype)
    gate_up = _expert_projection(x, experts.gate_up_proj, experts.gate_up_proj_bias[expert_sorted], offs,
                                 _lora_terms(wrappers.get("gate_up_proj"), dtype), drop)
    act = experts._apply_gate(gate_up)
    out = _expert_projection(act, experts.down_proj, experts.down_proj_bias[expert_sorted], offs,
                             _lora_terms(wrappers.get("down_proj"), dtype), drop)
    out = out * routing_weights.reshape(-1)[perm].unsqueeze(-1).to(out.dtype)
    # Back to (token, k) order and a sum over k: deterministic (no atomics), like transformers' grouped_mm path.
    unsorted = torch.empty_like(out).index_copy_(0, perm, out)
    return unsorted.view(n_tokens, top_k, hidden).sum(dim=1).to(dtype)


# ------------------------------------------------------------------------------------------ attention LoRA (q/k/v/o)
# PEFT's lora.Linear forward is result + lora_B(lora_A(dropout(x.to(fp32)))) * scaling: with PEFT's fp32 adapters it
# copies x to fp32 for each of q, k, v and o (and autocast copies it back to bf16 for the GEMM), then multiplies the
# [tokens, out] product by the scaling and adds it to the base output: ~4 element-wise kernels per projection and
# pass, plus their backward (the 2026-11-28 profile: bf16 scalar multiplies 12.8 ms in 216 calls, copies ~40 ms).
# Here: xa = x·Aᵀ, then result = addmm(result, xa, Bᵀ, alpha=scaling) — the scaling and the add ride in the GEMM's
# epilogue, and under autocast x is never copied. Predicted: -25 ms/step at phase1_r64_4k. Without autocast (the fp32
# numerics checks, CPU) the LoRA product runs in the adapter's dtype exactly like PEFT's.
def fast_lora_linear_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    import torch

    state = self._fast_lora
    names = [n for n in self.active_adapters if n in self.lora_A]
    if (not state["enabled"] or self.disable_adapters or self.merged or kwargs.get("adapter_names") is not None
            or len(names) != 1 or names[0] in getattr(self, "lora_variant", {}) or args):
        return state["original_forward"](x, *args, **kwargs)
    name = names[0]
    a, b = self.lora_A[name].weight, self.lora_B[name].weight  # [r, in], [out, r]
    result = self.base_layer(x)
    lead, out_features = result.shape[:-1], result.shape[-1]
    h = self.lora_dropout[name](x)
    if torch.is_autocast_enabled(x.device.type):
        xa = torch.nn.functional.linear(h, a)
        fused = torch.addmm(result.reshape(-1, out_features), xa.reshape(-1, a.shape[0]), b.t(),
                            alpha=self.scaling[name])
    else:  # PEFT's precision: the LoRA product in the adapter dtype, added in the result's
        xa = torch.nn.functional.linear(h.to(a.dtype), a)
        lora = torch.mm(xa.reshape(-1, a.shape[0]), b.t())
        fused = torch.add(result.reshape(-1, out_features), lora.to(result.dtype), alpha=self.scaling[name])
    return fused.view(*lead, out_features)


def enable_fast_lora_linear(model: Any) -> int:
    """Swap the forward of every PEFT lora.Linear (q/k/v/o) for ``fast_lora_linear_forward``; returns how many."""
    from peft.tuners.lora.layer import Linear

    n = 0
    for module in model.modules():
        if not isinstance(module, Linear):
            continue
        if hasattr(module, "_fast_lora"):
            module._fast_lora["enabled"] = True
        else:
            module._fast_lora = {"enabled": True, "original_forward": module.forward}
            module.forward = types.MethodType(fast_lora_linear_forward, module)
        n += 1
    return n


def enable_fast_experts(model: Any) -> dict[str, Any]:
    """Swap the computation of every PEFT-wrapped GPT-OSS expert block for ``fast_experts_forward``.

    Returns ``fast_path_report``: {"layers": n, "reason": ...} ("layers" 0 when the experts are not LoRA targets);
    raises FastPathUnavailable for expert LoRA stored in a layout other than GPT-OSS's [experts, in, out].
    """
    from peft.tuners.lora.layer import ParamWrapper

    inner = set()
    for module in model.modules():
        if isinstance(module, ParamWrapper) and isinstance(module.base_layer, ParamWrapper):
            inner.add(id(module.base_layer))
    for module in model.modules():
        if id(module) in inner:
            continue
        chain = _expert_chain(module)
        if chain is None:
            continue
        wrappers, _ = chain
        if any(w._did_swap_in_out_features for w in wrappers.values()):
            raise FastPathUnavailable("expert LoRA stored with swapped in/out features: not GPT-OSS's layout")
        if hasattr(module, "_fast_experts"):
            module._fast_experts["enabled"] = True
        else:
            module._fast_experts = {"enabled": True, "original_forward": module.forward, "drop_expert_lora_b": None,
                                    "fused_swiglu": True}
            module.forward = types.MethodType(fast_experts_forward, module)
    enable_fast_lora_linear(model)
    return fast_path_report(model)


def fast_path_report(model: Any) -> dict[str, Any]:
    """{"layers": expert blocks computed by the fast path (enabled), "reason": why / why not}."""
    modules = [m for m in _fast_modules(model) if m._fast_experts["enabled"]]
    reason = ("expert LoRA as split grouped GEMMs (no W+BA rebuild, no expert weight gradient)" if modules
              else "no PEFT-wrapped experts swapped: experts run as stock PEFT (or are not LoRA targets)")
    fused = [m for m in modules if m._fast_experts.get("fused_swiglu", True)]
    swiglu = swiglu_kernel_report() if fused else "stock _apply_gate + bias/weight/unsort ops (autograd)"
    linear = [m for m in model.modules() if getattr(m, "_fast_lora", {}).get("enabled")]
    return {"layers": len(modules), "reason": reason, "swiglu": swiglu,
            "attention_lora": f"{len(linear)} lora.Linear as x·Aᵀ then addmm(result, ·, Bᵀ, alpha=scaling)"}


def _fast_modules(model: Any) -> list[Any]:
    return [m for m in model.modules() if hasattr(m, "_fast_experts")]


def set_fast_experts(model: Any, enabled: bool) -> int:
    """Turn the swapped forwards on/off (off = PEFT's own forward, the stock reference: experts and q/k/v/o LoRA);
    returns the expert modules touched."""
    modules = _fast_modules(model)
    for m in modules:
        m._fast_experts["enabled"] = enabled
    for m in model.modules():
        if hasattr(m, "_fast_lora"):
            m._fast_lora["enabled"] = enabled
    return len(modules)


@contextlib.contextmanager
def stock_forward(model: Any):
    """PEFT's own forwards (experts and q/k/v/o LoRA) inside the block, each swapped forward restored to its state
    after; yields how many were switched off (0: the fast path was not on)."""
    experts = [m for m in _fast_modules(model) if m._fast_experts["enabled"]]
    linear = [m for m in model.modules() if getattr(m, "_fast_lora", {}).get("enabled")]
    for m in experts:
        m._fast_experts["enabled"] = False
    for m in linear:
        m._fast_lora["enabled"] = False
    try:
        yield len(experts) + len(linear)
    finally:
        for m in experts:
            m._fast_experts["enabled"] = True
        for m in linear:
            m._fast_lora["enabled"] = True


def set_fused_swiglu(model: Any, enabled: bool) -> int:
    """Fused SwiGLU on/off in the swapped forwards (off = GptOssExperts._apply_gate through autograd)."""
    modules = _fast_modules(model)
    for m in modules:
        m._fast_experts["fused_swiglu"] = enabled
    return len(modules)


def set_drop_expert_lora_b(model: Any, expert: int | None, layer: int = 0) -> None:
    """Negative control: the fast path ignores expert ``expert``'s LoRA B in layer ``layer`` (None: restore)."""
    modules = _fast_modules(model)
    if not modules:
        raise FastPathUnavailable("enable_fast_experts(model) first")
    for m in modules:
        m._fast_experts["drop_expert_lora_b"] = None
    if expert is not None:
        modules[layer]._fast_experts["drop_expert_lora_b"] = expert


# ------------------------------------------------------------------------------------------------ chunked LM loss
def _chunked_nll_impl(hidden: Any, weight: Any, targets: Any, chunk: int, need_grad: bool = True
                      ) -> tuple[Any, Any]:
    """Per-row NLL [N] (fp32 or wider) and d(nll_i)/d(hidden_i) [N, H] (None unless need_grad), building at most
    ``chunk`` rows of logits at a time."""
    import torch

    acc = torch.promote_types(hidden.dtype, torch.float32)  # fp32 for bf16 models, fp64 stays fp64 (tests)
    nll = torch.empty(hidden.shape[0], dtype=acc, device=hidden.device)
    grad = torch.empty_like(hidden) if need_grad else None
    for start in range(0, hidden.shape[0], chunk):
        h = hidden[start:start + chunk]
        t = targets[start:start + chunk]
        logits = (h @ weight.t()).to(acc)
        lse = torch.logsumexp(logits, dim=-1)
        nll[start:start + chunk] = lse - logits.gather(1, t[:, None]).squeeze(1)
        if not need_grad:
            continue
        probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
        probs.scatter_add_(1, t[:, None], probs.new_full((t.shape[0], 1), -1.0))
        grad[start:start + chunk] = (probs.to(weight.dtype) @ weight).to(hidden.dtype)
    return nll, grad


class _ChunkedNLL:
    """autograd Function (built lazily so importing this module needs no torch)."""

    fn = None

    @classmethod
    def get(cls):
        if cls.fn is None:
            import torch

            class ChunkedNLL(torch.autograd.Function):
                @staticmethod
                def forward(ctx, hidden, weight, targets, chunk, need_grad):
                    nll, grad = _chunked_nll_impl(hidden, weight, targets, chunk, need_grad)
                    if need_grad:
                        ctx.save_for_backward(grad)
                    return nll

                @staticmethod
                def backward(ctx, grad_nll):
                    (grad,) = ctx.saved_tensors
                    return grad * grad_nll[:, None].to(grad.dtype), None, None, None, None

            cls.fn = ChunkedNLL
        return cls.fn


def chunked_token_nll(hidden: Any, weight: Any, targets: Any, chunk: int = CE_CHUNK_TOKENS) -> Any:
    """-log softmax(hidden @ weight.T)[target] per row, differentiable w.r.t. hidden (``weight`` must be frozen)."""
    import torch

    if weight.requires_grad:
        raise ValueError("chunked_token_nll: the LM head must be frozen (LoRA does not target lm_head)")
    need_grad = torch.is_grad_enabled() and hidden.requires_grad
    return _ChunkedNLL.get().apply(hidden, weight, targets, chunk, need_grad)


def shifted_targets(labels: Any, ignore_index: int = -100) -> Any:
    """Next-token targets as transformers' ForCausalLMLoss builds them: labels shifted left, -100 at the end."""
    import torch

    pad = labels.new_full((labels.shape[0], 1), ignore_index)
    return torch.cat([labels[:, 1:], pad], dim=1)


def causal_lm_core(model: Any) -> Any:
    """The GptOssForCausalLM inside a PeftModel (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def hidden_states(model: Any, input_ids: Any, position_ids: Any = None, attention_mask: Any = None) -> Any:
    core = causal_lm_core(model)
    out = core.model(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask, use_cache=False)
    return out.last_hidden_state


def chunked_lm_loss(model: Any, input_ids: Any, labels: Any, *, position_ids: Any = None,
                    attention_mask: Any = None, chunk: int = CE_CHUNK_TOKENS) -> Any:
    """Mean next-token cross-entropy over labels != -100: the same value as ``model(..., labels=labels).loss``."""
    core = causal_lm_core(model)
    hidden = hidden_states(model, input_ids, position_ids, attention_mask)
    targets = shifted_targets(labels).reshape(-1)
    rows = (targets != -100).nonzero().squeeze(1)  # one host sync per step: only trained rows reach the LM head
    nll = chunked_token_nll(hidden.reshape(-1, hidden.shape[-1])[rows], core.lm_head.weight, targets[rows], chunk)
    return nll.sum() / rows.numel()


def chunked_sequence_logps(model: Any, input_ids: Any, labels: Any, *, position_ids: Any = None,
                           attention_mask: Any = None, chunk: int = CE_CHUNK_TOKENS) -> Any:
    """Summed log-probs of the labelled next tokens per row [B] (what DPO/IPO compare), chunked."""
    import torch

    core = causal_lm_core(model)
    hidden = hidden_states(model, input_ids, position_ids, attention_mask)
    targets = shifted_targets(labels)
    flat = targets.reshape(-1)
    rows = (flat != -100).nonzero().squeeze(1)
    nll = chunked_token_nll(hidden.reshape(-1, hidden.shape[-1])[rows], core.lm_head.weight, flat[rows], chunk)
    per_row = torch.zeros(targets.numel(), dtype=nll.dtype, device=nll.device).index_copy(0, rows, -nll)
    return per_row.view(targets.shape).sum(dim=1)
