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

import functools
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
    """One SGD step. `momentum` and `weight_decay` may be 0.0 to skip that part entirely. The gradients are
    consumed: they may be overwritten, or become the new momentum buffers."""
    if keep is None:  # every model steps: the same operations, each applied to all tensors at once
        _sgd_all(params, grads, state, lr, momentum, weight_decay, nesterov)
        return
    for k, p in params.items():
        g = grads[k]
        if not _is_zero(weight_decay):
            g = _plus_scaled(g, p, weight_decay)  # one fused operation, as _plus_scaled_all
        if not _is_zero(momentum):
            buf = state["buf"][k]
            new_buf = _plus_scaled(g, buf, momentum)  # g + mu * buf
            _put(buf, new_buf, keep)
            g = _plus_scaled(g, new_buf, momentum) if nesterov else new_buf
        _descend(p, lr, g, keep)


def _plus_scaled(a: Tensor, b: Tensor, scale) -> Tensor:
    """a + scale * b in one fused operation (scale: a float, or a per-model (M, 1, 1) tensor)."""
    return torch.addcmul(a, b, scale) if isinstance(scale, Tensor) else torch.add(a, b, alpha=scale)


@torch.no_grad()
def _sgd_all(params: Params, grads: Params, state: dict, lr, momentum, weight_decay, nesterov) -> None:
    """sgd_step's unmasked update with torch's multi-tensor (`_foreach_`) kernels: per tensor they compute the very
    operations of the per-tensor loop (so a model's bits are the same as in the masked update), in one dispatch per
    operation instead of one per tensor, which is most of a small model's step time. Without Nesterov the gradient
    tensors are updated in place to mu * buf + g and become the new buffers: one pass over memory instead of three
    (a population's step is mostly memory traffic over its parameters)."""
    keys = list(params)
    ps, gs = [params[k] for k in keys], [grads[k] for k in keys]
    if not _is_zero(weight_decay):
        _plus_scaled_all(gs, ps, weight_decay)  # g + wd * p, in the gradient's memory
    if not _is_zero(momentum):
        bufs = [state["buf"][k] for k in keys]
        if nesterov:
            new = [g.clone() for g in gs]
            _plus_scaled_all(new, bufs, momentum)  # buf' = g + mu * buf
            torch._foreach_copy_(bufs, new)
            _plus_scaled_all(gs, new, momentum)  # d = g + mu * buf'
        else:
            _plus_scaled_all(gs, bufs, momentum)  # g + mu * buf, in the gradient's memory ...
            state["buf"].update(zip(keys, gs))  # ... which becomes the buffer
    if isinstance(lr, Tensor):
        torch._foreach_addcmul_(ps, _each(lr, len(ps)), gs, value=-1.0)  # p -= lr * d
    else:
        torch._foreach_add_(ps, gs, alpha=-lr)


def _plus_scaled_all(a: list[Tensor], b: list[Tensor], scale) -> None:
    """a += scale * b for each pair, in place and with `_plus_scaled`'s single fused operation per tensor."""
    if isinstance(scale, Tensor):
        torch._foreach_addcmul_(a, b, _each(scale, len(a)))
    else:
        torch._foreach_add_(a, b, alpha=scale)


@torch.no_grad()
def adam_step(params: Params, grads: Params, state: dict, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
              decoupled: bool = False, keep: Tensor | None = None) -> None:
    """One Adam step (AdamW when `decoupled`). The step count t is shared by the population: a model frozen by
    `keep` is frozen for good (the trainer never unfreezes one), so its bias correction never matters again. The
    gradients are consumed: with weight decay they may be overwritten."""
    b1, b2 = betas
    state["t"] += 1
    t = state["t"]
    c1 = 1.0 - b1**t
    c2_sqrt = (1.0 - b2**t) ** 0.5 if isinstance(b2, Tensor) else math.sqrt(1.0 - b2**t)
    if keep is None:  # every model steps: update in place, a few passes over memory instead of a dozen
        _adam_all(params, grads, state, lr, b1, b2, eps, weight_decay, decoupled, c1, c2_sqrt)
        return
    for k, p in params.items():
        g = grads[k]
        if not _is_zero(weight_decay) and not decoupled:
            g = _plus_scaled(g, p, weight_decay)  # one fused operation, as _plus_scaled_all
        m = state["m"][k]
        v = state["v"][k]
        # The same operations as _adam_all's, so a model's numbers do not depend on whether a neighbour froze.
        new_m = torch.lerp(m, g, 1.0 - b1)
        new_v = torch.lerp(v, g * g, 1.0 - b2)
        base = p.mul(1.0 - lr * weight_decay) if decoupled and not _is_zero(weight_decay) else p
        denom = new_v.sqrt().div_(c2_sqrt).add_(eps).mul_(c1 / lr)
        _put(p, torch.addcdiv(base, new_m, denom, value=-1.0), keep)
        _put(m, new_m, keep)
        _put(v, new_v, keep)


def _adam_all(params: Params, grads: Params, state: dict, lr, b1, b2, eps, weight_decay, decoupled, c1,
              c2_sqrt) -> None:
    """adam_step's unmasked update with torch's multi-tensor (`_foreach_`) kernels: per tensor the very operations of
    the masked loop, in one dispatch per operation instead of one per tensor."""
    ps, ms, vs = list(params.values()), [state["m"][k] for k in params], [state["v"][k] for k in params]
    gs = [grads[k] for k in params]
    each = functools.partial(_each, n=len(ps))

    if not _is_zero(weight_decay) and not decoupled:
        _plus_scaled_all(gs, ps, weight_decay)  # g + wd * p, in the gradient's memory
    torch._foreach_lerp_(ms, gs, each(1.0 - b1))
    torch._foreach_lerp_(vs, torch._foreach_mul(gs, gs), each(1.0 - b2))
    if decoupled and not _is_zero(weight_decay):
        torch._foreach_mul_(ps, each(1.0 - lr * weight_decay))
    denom = torch._foreach_sqrt(vs)  # p -= (lr / c1) * m / (sqrt(v) / c2 + eps)
    torch._foreach_div_(denom, each(c2_sqrt))
    torch._foreach_add_(denom, each(eps))
    torch._foreach_mul_(denom, each(c1 / lr))
    torch._foreach_addcdiv_(ps, ms, denom, value=-1.0)


def _each(x, n: int):
    """A `_foreach_` operand for n tensors: a per-model tensor once per tensor; a scalar as it is."""
    return [x] * n if isinstance(x, Tensor) else x


def _is_zero(x) -> bool:
    """True for a plain 0. Callers pass 0.0 (not a tensor of zeros) to skip a term, so this never syncs a device."""
    return not isinstance(x, Tensor) and x == 0
