"""The policy objective of AZR's update, token by token (azr-reference.md section 5).

All tensors are flat over the response tokens of one micro-batch. The loss is a *weighted sum*:
the caller gives each token its weight in the whole batch (`azr.core.trrpp.loss_token_weights`:
1/N for the batch's token mean, veRL's ``token-mean``), so gradient accumulation over
micro-batches gives the batch's loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LossConfig:
    clip_ratio: float = 0.2  # PPO epsilon
    entropy_coef: float = 0.001
    kl_coef: float = 0.0
    tis_cap: float = 2.0  # truncation of the train/inference importance weight


def policy_loss(
    logp: Tensor,  # log pi_theta(token), with gradient
    old_logp: Tensor,  # log pi_old(token), recomputed by the trainer
    sampling_logp: Tensor,  # log-prob the inference engine reported (nan where unknown)
    advantages: Tensor,  # TRR++ advantage of the token's sequence
    entropy: Tensor | None,  # entropy of pi_theta at the token, with gradient
    ref_logp: Tensor | None,  # frozen reference model, only when kl_coef > 0
    cfg: LossConfig,
    token_weight: Tensor | None = None,  # the token's weight in the batch loss (None: 1)
) -> tuple[Tensor, dict[str, float]]:
    # PPO-clip surrogate. With one optimizer step per batch pi_theta == pi_old, the ratio is 1
    # and this is REINFORCE with whitened returns, exactly as the reference runs.
    ratio = torch.exp(logp - old_logp)
    clipped = torch.clamp(ratio, 1.0 - cfg.clip_ratio, 1.0 + cfg.clip_ratio)
    surrogate = torch.maximum(-advantages * ratio, -advantages * clipped)

    # Truncated importance weight for the train/inference mismatch: min(pi_old / pi_sampler, C).
    known = ~torch.isnan(sampling_logp)
    log_w = torch.where(known, old_logp - sampling_logp, torch.zeros_like(old_logp)).detach()
    weight = torch.clamp(torch.exp(log_w), max=cfg.tis_cap)
    per_token = weight * surrogate

    if entropy is not None and cfg.entropy_coef:
        per_token = per_token - cfg.entropy_coef * entropy  # entropy bonus
    if ref_logp is not None and cfg.kl_coef:
        # k3 estimator of KL(pi_theta || pi_ref): unbiased, always >= 0.
        delta = ref_logp - logp
        per_token = per_token + cfg.kl_coef * (torch.exp(delta) - delta - 1.0)
    loss = (per_token * token_weight).sum() if token_weight is not None else per_token.sum()

    with torch.no_grad():
        stats = {
            "surrogate_sum": float(surrogate.sum()),
            "clipped_tokens": float(((ratio - clipped).abs() > 0).sum()),
            "entropy_sum": float(entropy.sum()) if entropy is not None else 0.0,
            "mismatch_abs_sum": float((old_logp - sampling_logp)[known].abs().sum()),
            "mismatch_kl_sum": float((sampling_logp - old_logp)[known].sum()),
            "truncated_tokens": float((torch.exp(log_w) > cfg.tis_cap).sum()),
            "known_tokens": float(known.sum()),
        }
    return loss, stats
