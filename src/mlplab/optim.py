"""Optimizers written by hand: SGD (heavy-ball or Nesterov momentum, weight decay), Adam and AdamW.

Each step updates the parameters in place under `torch.no_grad()`. Hyperparameters are tensors of shape (M, 1, 1)
(one value per model of a population, broadcasting over every weight and bias) or plain floats. `keep`, a bool
tensor (M, 1, 1), freezes the models where it is False: their parameters and optimizer state stay as they were.

The update rules follow the usual definitions (and torch.optim's, which the tests compare against):
    SGD:   g = grad + wd * p;  buf = mu * buf + g;  p -= lr * (g + mu * buf if nesterov else buf)
    Adam:  g = grad + wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
           p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    AdamW: as Adam without the wd term in g, and p *= 1 - lr * wd before the update.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

Params = dict[str, Tensor]
OPTIMIZERS = ("sgd", "adam", "adamw")


def init_state(params: Params, kind: str) -> dict:
    """Zeroed optimizer state for `params`: momentum buffers for SGD, moments and a step count for Adam(W)."""
    if kind == "sgd":
        return {"buf": {k: torch.zeros_like(p) for k, p in params.items()}}
    return {"t": 0, "m": {k: torch.zeros_like(p) for k, p in params.items()},
            "v": {k: torch.zeros_like(p) for k, p in params.items()}}


def _put(dst: Tensor, new: Tensor, keep: Tensor | None) -> None:
    dst.copy_(new if keep is None else torch.where(keep, new, dst))


def _descend(p: Tensor, lr, d: Tensor, keep: Tensor | None) -> None:
    """p -= lr * d. Frozen or not, each model's new value comes from the same single fused operation, so a model's
    numbers never depend on whether a neighbour froze: the masked form computes it out of place, then selects."""
    if isinstance(lr, Tensor):
        new = p.addcmul_(lr, d, value=-1.0) if keep is None else torch.addcmul(p, lr, d, value=-1.0)
    else:
        new = p.add_(d, alpha=-lr) if keep is None else torch.add(p, d, alpha=-lr)
    if keep is not None:
        p.copy_(torch.where(keep, new, p))


@torch.no_grad()
def sgd_step(params: Params, grads: Params, state: dict, lr, momentum=0.0, weight_decay=0.0,
             nesterov: bool = False, keep: Tensor | None = None) -> None:
    """One SGD step. `momentum` and `weight_decay` may be 0.0 to skip that part entirely."""
    for k, p in params.items():
        g = grads[k]
        if not _is_zero(weight_decay):
            g = g + weight_decay * p
        if not _is_zero(momentum):
            buf = state["buf"][k]
            if keep is None:
                new_buf = buf.mul_(momentum).add_(g)
            else:
                new_buf = momentum * buf + g
                _put(buf, new_buf, keep)
            g = g + momentum * new_buf if nesterov else new_buf
        _descend(p, lr, g, keep)


@torch.no_grad()
def adam_step(params: Params, grads: Params, state: dict, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
              decoupled: bool = False, keep: Tensor | None = None) -> None:
    """One Adam step (AdamW when `decoupled`). The step count t is shared by the population: a model frozen by
    `keep` is frozen for good (the trainer never unfreezes one), so its bias correction never matters again."""
    b1, b2 = betas
    state["t"] += 1
    t = state["t"]
    c1 = 1.0 - b1**t
    c2_sqrt = (1.0 - b2**t) ** 0.5 if isinstance(b2, Tensor) else math.sqrt(1.0 - b2**t)
    for k, p in params.items():
        g = grads[k]
        if not _is_zero(weight_decay) and not decoupled:
            g = g + weight_decay * p
        m = state["m"][k]
        v = state["v"][k]
        # The same operations in both branches, so a model's numbers do not depend on whether a neighbour froze.
        if keep is None:  # every model steps: update in place, a few passes over memory instead of a dozen
            m.lerp_(g, 1.0 - b1)
            v.lerp_(g * g, 1.0 - b2)
            if decoupled and not _is_zero(weight_decay):
                p.mul_(1.0 - lr * weight_decay)
            denom = v.sqrt().div_(c2_sqrt).add_(eps).mul_(c1 / lr)  # p -= (lr / c1) * m / (sqrt(v) / c2 + eps)
            p.addcdiv_(m, denom, value=-1.0)
            continue
        new_m = torch.lerp(m, g, 1.0 - b1)
        new_v = torch.lerp(v, g * g, 1.0 - b2)
        base = p.mul(1.0 - lr * weight_decay) if decoupled and not _is_zero(weight_decay) else p
        denom = new_v.sqrt().div_(c2_sqrt).add_(eps).mul_(c1 / lr)
        _put(p, torch.addcdiv(base, new_m, denom, value=-1.0), keep)
        _put(m, new_m, keep)
        _put(v, new_v, keep)


def _is_zero(x) -> bool:
    """True for a plain 0. Callers pass 0.0 (not a tensor of zeros) to skip a term, so this never syncs a device."""
    return not isinstance(x, Tensor) and x == 0
