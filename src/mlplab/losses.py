"""Cross-entropy from logits via log-sum-exp, and accuracy; both per model along the leading axis M."""

from __future__ import annotations

import torch
from torch import Tensor


def log_softmax(z: Tensor) -> Tensor:
    """log softmax over the last axis: z - logsumexp(z), with the max subtracted first so e^z never overflows."""
    m = z.amax(dim=-1, keepdim=True).detach()  # (..., 1); a constant shift, so no gradient needed through it
    return z - m - torch.log(torch.exp(z - m).sum(dim=-1, keepdim=True))


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Mean negative log-likelihood of labels `y` per model.

    logits: (M, B, C); y: (B,) shared by all models, or (M, B). Returns (M,).
    """
    M, B, C = logits.shape
    logp = log_softmax(logits)  # (M, B, C)
    idx = y.expand(M, B).unsqueeze(-1)  # (M, B, 1)
    return -logp.gather(-1, idx).squeeze(-1).mean(dim=-1)  # (M,)


def correct(logits: Tensor, y: Tensor) -> Tensor:
    """Number of correct predictions per model. logits (M, B, C), y (B,) or (M, B) -> (M,) int64."""
    return (logits.argmax(dim=-1) == y).sum(dim=-1)


def accuracy(logits: Tensor, y: Tensor) -> Tensor:
    """Fraction of correct predictions per model, (M,) float."""
    return correct(logits, y).float() / logits.shape[1]
