"""Batch normalization written by hand, per model of a population: statistics over the batch axis of (M, B, H).

A normalized hidden layer computes z = x @ w (no bias), then gamma * (z - mean) / sqrt(var + eps) + beta, where
gamma is the parameter g{i} and beta is the layer's bias b{i}. Training uses the batch's statistics and updates
running averages (mean{i}, var{i}: the unbiased batch variance, as torch does); evaluation uses the running
averages, so a model's prediction for one image never depends on the rest of the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-5
MOMENTUM = 0.1  # weight of the newest batch in the running averages


def batch_norm_train(z: Tensor, gamma: Tensor, beta: Tensor,
                     noise: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """z (M, B, H) -> normalized with each model's batch statistics, plus `noise` (M, B, H) if given, then scaled
    by gamma and shifted by beta (M, 1, H). Statistics are computed in float32 even when z is bf16; the output has
    z's dtype. Returns (output, batch mean, unbiased batch variance), the last two (M, 1, H) and detached, for
    `update_running_` once the step is known to be finite."""
    zf = z.float()
    mean = zf.mean(dim=1, keepdim=True)  # (M, 1, H)
    var = zf.var(dim=1, keepdim=True, unbiased=False)  # (M, 1, H)
    zhat = (zf - mean) * torch.rsqrt(var + EPS)  # (M, B, H)
    if noise is not None:
        zhat = zhat + noise
    n = z.shape[1]
    return (zhat * gamma + beta).to(z.dtype), mean.detach(), var.detach() * (n / max(n - 1, 1))


@torch.no_grad()
def update_running_(running_mean: Tensor, running_var: Tensor, mean: Tensor, var: Tensor,
                    keep: Tensor | None = None) -> None:
    """Move the running statistics (M, 1, H) toward a batch's by MOMENTUM; models where `keep` (M, 1, 1) is False
    (frozen after diverging) keep theirs."""
    new_mean, new_var = torch.lerp(running_mean, mean, MOMENTUM), torch.lerp(running_var, var, MOMENTUM)
    running_mean.copy_(new_mean if keep is None else torch.where(keep, new_mean, running_mean))
    running_var.copy_(new_var if keep is None else torch.where(keep, new_var, running_var))


def batch_norm_eval(z: Tensor, gamma: Tensor, beta: Tensor, running_mean: Tensor, running_var: Tensor) -> Tensor:
    """z (M, B, H) normalized with the running statistics (M, 1, H): the evaluation-time layer."""
    out = (z.float() - running_mean) * torch.rsqrt(running_var + EPS) * gamma + beta
    return out.to(z.dtype)


def init_stats(sizes: list[int], M: int, device=None) -> dict[str, Tensor]:
    """Running statistics of every hidden layer: mean{i} zeros and var{i} ones, (M, 1, H)."""
    stats = {}
    for i, h in enumerate(sizes[1:-1]):
        stats[f"mean{i}"] = torch.zeros(M, 1, h, device=device)
        stats[f"var{i}"] = torch.ones(M, 1, h, device=device)
    return stats
