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


def batch_norm_train(z: Tensor, gamma: Tensor, beta: Tensor, running_mean: Tensor, running_var: Tensor,
                     noise: Tensor | None = None) -> Tensor:
    """z (M, B, H) -> normalized with each model's batch statistics, plus `noise` (M, B, H) if given, then scaled
    by gamma and shifted by beta (M, 1, H). Updates running_mean and running_var (M, 1, H) in place.
    Statistics are computed in float32 even when z is bf16; the result has z's dtype."""
    zf = z.float()
    mean = zf.mean(dim=1, keepdim=True)  # (M, 1, H)
    var = zf.var(dim=1, keepdim=True, unbiased=False)  # (M, 1, H)
    zhat = (zf - mean) * torch.rsqrt(var + EPS)  # (M, B, H)
    with torch.no_grad():
        n = z.shape[1]
        running_mean.lerp_(mean, MOMENTUM)
        running_var.lerp_(var * (n / max(n - 1, 1)), MOMENTUM)
    if noise is not None:
        zhat = zhat + noise
    return (zhat * gamma + beta).to(z.dtype)


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
