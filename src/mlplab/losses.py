"""Cross-entropy from logits via log-sum-exp, and accuracy; both per model along the leading axis M."""

from __future__ import annotations

import torch
from torch import Tensor


def log_softmax(z: Tensor) -> Tensor:
    """log softmax over the last axis: z - logsumexp(z), with the max subtracted first so e^z never overflows."""
    m = z.amax(dim=-1, keepdim=True).detach()  # (..., 1); a constant shift, so no gradient needed through it
    return z - m - torch.log(torch.exp(z - m).sum(dim=-1, keepdim=True))


def cross_entropy(logits: Tensor, y: Tensor, smoothing: float | Tensor = 0.0) -> Tensor:
    """Mean negative log-likelihood of labels `y` per model, optionally against label-smoothed targets.

    logits: (M, B, C); y: (B,) shared by all models, or (M, B); smoothing: a float, or (M,) one per model.
    With smoothing e the target is (1 - e) * one_hot(y) + e / C, so the loss is (1 - e) * nll + e * mean_c(-log p).
    The label's log-probability is picked with a comparison, not `gather`, whose backward is a scatter (not
    deterministic on GPUs). Returns (M,).
    """
    M, B, C = logits.shape
    logp = log_softmax(logits)  # (M, B, C)
    hit = y.expand(M, B).unsqueeze(-1) == torch.arange(C, device=logits.device)  # (M, B, C) one-hot, bool
    nll = -torch.where(hit, logp, 0.0).sum(dim=-1).mean(dim=-1)  # (M,)
    if not isinstance(smoothing, Tensor) and smoothing == 0:
        return nll
    uniform = -logp.mean(dim=-1).mean(dim=-1)  # (M,) cross-entropy against the uniform target
    return (1.0 - smoothing) * nll + smoothing * uniform


def correct(logits: Tensor, y: Tensor) -> Tensor:
    """Number of correct predictions per model. logits (M, B, C), y (B,) or (M, B) -> (M,) int64."""
    return (logits.argmax(dim=-1) == y).sum(dim=-1)


def accuracy(logits: Tensor, y: Tensor) -> Tensor:
    """Fraction of correct predictions per model, (M,) float."""
    return correct(logits, y).float() / logits.shape[1]
