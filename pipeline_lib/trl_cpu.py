"""TRL on machines without Triton (the CPU box, CI).

TRL 1.15 computes every trained log-prob (SFT loss, DPO/IPO, GRPO) through one Triton kernel,
``trl.kernels.ChunkedLogProbFunction``, reached as ``trl.trainer.utils._ChunkedLogProbFunction``. The CPU torch build
has no Triton, so TRL leaves that slot None and the first forward fails (``'NoneType' object has no attribute
'apply'``). ``install_cpu_logprob_head`` fills the slot with the same maths in plain torch; where Triton exists
(CUDA), TRL's kernel is kept. Everything else (labels, loss normalisation, metrics) stays TRL's own code.
"""

from __future__ import annotations


class TorchLogProbHead:
    """``trl.kernels.ChunkedLogProbFunction`` in plain torch (same arguments and outputs), for machines without
    Triton. Logits are built whole for the completion tokens only (a few hundred rows on CPU runs); autograd gives
    the backward."""

    @staticmethod
    def apply(hidden, weight, bias, targets, temperature: float, chunk_size: int,
              final_logit_softcapping: float | None = None, logit_scale: float = 1.0,
              outputs: tuple[str, ...] = ("log_probs",)):
        import torch
        import torch.nn.functional as F

        logits = F.linear(hidden, weight, bias).float() * logit_scale
        if final_logit_softcapping is not None:
            logits = final_logit_softcapping * torch.tanh(logits / final_logit_softcapping)
        logits = logits / temperature
        log_z = torch.logsumexp(logits, dim=-1)
        log_probs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z
        entropy = log_z - (torch.softmax(logits, dim=-1) * logits).sum(-1) if "entropy" in outputs else None
        with torch.no_grad():
            log_sum_sq = torch.logsumexp(2 * (logits - log_z.unsqueeze(-1)), -1) if "log_sum_sq_probs" in outputs \
                else None
            mean_logits = logits.mean(-1) if "mean_logits" in outputs else None
            is_top1 = logits.argmax(-1) == targets if "is_top1" in outputs else None  # first maximum, as TRL's
        return log_probs, entropy, log_sum_sq, mean_logits, is_top1


def install_cpu_logprob_head() -> bool:
    """Give TRL's fused LM head a torch implementation when its Triton kernel is unavailable; True if installed."""
    import trl.trainer.utils as trl_utils

    if trl_utils._ChunkedLogProbFunction is None or trl_utils._ChunkedLogProbFunction is TorchLogProbHead:
        trl_utils._ChunkedLogProbFunction = TorchLogProbHead
        return True
    return False
