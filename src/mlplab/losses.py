"""Cross-entropy from logits via log-sum-exp, and accuracy; both per model along the leading axis M."""

from __future__ import annotations

import torch
from torch import Tensor


def log_softmax(z: Tensor) -> Tensor:
    """log softmax over the last axis: z - logsumexp(z), with the max subtracted first so e^z never overflows."""
    m = z.amax(dim=-1, keepdim=True).detach()  # (..., 1); a constant shift, so no gradient needed through it
    return z - m - torch.log(torch.exp(z - m).sum(dim=-1, keepdim=True))


def one_hot(y: Tensor, n_classes: int) -> Tensor:
    """y (...,) integer labels -> (..., C) bool, True at each label."""
    return y.unsqueeze(-1) == torch.arange(n_classes, device=y.device)


def cross_entropy(logits: Tensor, y: Tensor, smoothing: float | Tensor = 0.0, hot: Tensor | None = None) -> Tensor:
    """Mean negative log-likelihood of labels `y` per model, optionally against label-smoothed targets.

    logits: (M, B, C); y: (B,) shared by all models, or (M, B); smoothing: a float, or (M,) one per model; `hot`:
    one_hot(y) when the caller has it already (then y is not read). Per example the loss is
        -log p_y = -(z_y - log sum_c e^z_c) = logsumexp(z) - z_y,
    with logsumexp computed stably (the max subtracted first, as in `log_softmax` above). With smoothing e the
    target is (1 - e) * one_hot(y) + e / C, so the loss is
    (1 - e) * nll + e * mean_c(-log p_c), and mean_c(-log p_c) = logsumexp(z) - mean_c z_c.
    The label's logit is picked with a product by the one-hot, not `gather`, whose backward is a scatter (not
    deterministic on GPUs), nor `torch.where`, which is several times slower on the CPU. Written to be few
    operations: the training step calls it on every batch. Returns (M,).
    """
    M, B, C = logits.shape
    if hot is None:
        hot = one_hot(y, C)  # (B, C) or (M, B, C)
    z = logits - logits.detach().amax(dim=-1, keepdim=True)  # (M, B, C): shifted so the largest logit is 0: e^z
    # cannot overflow, and logsumexp(z) - z_y stays accurate in float32 when the logits are large (the loss is
    # unchanged by the shift)
    lse = z.exp().sum(dim=-1).log()  # (M, B): logsumexp(z), at least log 1 = 0
    picked = (z * hot).sum(dim=-1)  # (M, B): the label's (shifted) logit z_y; hot may be bool or float
    nll = (lse - picked).mean(dim=-1)  # (M,)
    if not isinstance(smoothing, Tensor) and smoothing == 0:
        return nll
    uniform = (lse - z.mean(dim=-1)).mean(dim=-1)  # (M,) cross-entropy against the uniform target
    return (1.0 - smoothing) * nll + smoothing * uniform


def correct(logits: Tensor, y: Tensor) -> Tensor:
    """Number of correct predictions per model. logits (M, B, C), y (B,) or (M, B) -> (M,) int64."""
    return (logits.argmax(dim=-1) == y).sum(dim=-1)


def accuracy(logits: Tensor, y: Tensor) -> Tensor:
    """Fraction of correct predictions per model, (M,) float."""
    return correct(logits, y).float() / logits.shape[1]
