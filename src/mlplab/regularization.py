"""Regularization written by hand, for a population of M models: inverted dropout, max-norm, weight averaging.

Every function takes per-model settings as tensors of shape (M, 1, 1) (one value per model, broadcasting over a
layer), so one population can hold models with different dropout rates, norm caps or EMA decays.

    >>> h = dropout(h, p, generators)          # training only; evaluation never calls it
    >>> clip_max_norm_(params, cap)            # after each optimizer step
    >>> ema_update_(ema, params, decay, step)  # evaluate with `ema` instead of `params`
    >>> x = x + gaussian_noise(x, sigma, generators)
"""

from __future__ import annotations

import torch
from torch import Tensor

from mlplab import seeds as seeds_mod

Params = dict[str, Tensor]


def dropout(h: Tensor, p: Tensor, generators: list[torch.Generator]) -> Tensor:
    """Inverted dropout: zero each entry of h (M, B, H) with probability p[m] and scale the rest by 1 / (1 - p[m]),
    so the expected value is unchanged and evaluation needs no rescaling. p: (M, 1, 1) in [0, 1).

    Model m's mask comes from generators[m] alone (on h's device), so it does not depend on which other models
    share the population. Returns a tensor of h's dtype.
    """
    u = _per_model(torch.rand, h, generators)  # (M, B, H) uniform in [0, 1)
    keep = 1.0 - p  # (M, 1, 1)
    scale = ((u < keep) / keep).to(h.dtype)  # (M, B, H): 0 or 1 / (1 - p)
    return h * scale


def gaussian_noise(h: Tensor, sigma: Tensor, generators: list[torch.Generator]) -> Tensor:
    """sigma[m] * N(0, 1) noise shaped like h (M, B, H), model m's from generators[m]; sigma (M, 1, 1)."""
    return _per_model(torch.randn, h, generators) * sigma


def _per_model(sample, h: Tensor, generators: list[torch.Generator]) -> Tensor:
    """float32 draws shaped like h (M, B, H), model m's slice from generators[m] alone (`sample` is torch.rand or
    torch.randn); one call, not M, when there is a single model."""
    M = h.shape[0]
    assert len(generators) == M, f"one generator per model: {len(generators)} for {M} models"
    if M == 1:
        return sample(h.shape, generator=generators[0], device=h.device)
    return torch.stack([sample(h.shape[1:], generator=g, device=h.device) for g in generators])


def stream_generators(seeds: list[int], device: torch.device, stream: str) -> list[torch.Generator]:
    """One generator per model for one random stream ("hidden_dropout", "input_dropout" or "noise") of each model's
    seed, on `device`: a model's draws depend only on its own seed, never on the other streams or models (see
    mlplab.seeds for why no two (seed, stream) pairs share a generator)."""
    return [seeds_mod.generator(int(s), stream, device) for s in seeds]


@torch.no_grad()
def clip_max_norm_(params: Params, cap: Tensor) -> None:
    """Max-norm constraint (Srivastava et al. 2014): rescale every unit's incoming weight vector, a column of w{i}
    (M, fan_in, fan_out), to L2 norm at most cap[m]. cap: (M, 1, 1); inf leaves a model unconstrained."""
    for k, w in params.items():
        if k.startswith("w"):
            norms = w.norm(dim=1, keepdim=True)  # (M, 1, fan_out)
            w.mul_((cap / norms.clamp_min(1e-12)).clamp(max=1.0))


@torch.no_grad()
def ema_update_(ema: Params, params: Params, decay: Tensor, step: int) -> None:
    """ema <- d * ema + (1 - d) * params, with d = min(decay, (1 + step) / (10 + step)) per model.

    The ramp (step counts from 0 at the first update) lets the average forget the random initialization quickly
    early in training; decay (M, 1, 1) = 0 makes ema a copy of params."""
    d = decay.clamp(max=(1.0 + step) / (10.0 + step))  # (M, 1, 1)
    for k, p in params.items():
        ema[k].lerp_(p, 1.0 - d)
