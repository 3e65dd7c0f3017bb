"""Seeds: every random stream of every model gets its own generator, distinct by construction.

A trial's `seed` (and `data_seed`) names a model; each thing that draws for that model is a *stream* with its own
generator, seeded with

    generator seed = stream index * 2**SEED_BITS + seed          (seed in [0, 2**SEED_BITS))

so two different (seed, stream) pairs never share a generator. The map stays below 2**32 on purpose: PyTorch's CPU
generator (mt19937) keeps only the low 32 bits of its seed (seeds s and s + 2**32 draw the same numbers), so any
construction that needs more bits would collide there.

    >>> g = generator(seed=3, stream="order")          # the data-order stream of seed 3
"""

from __future__ import annotations

import torch

SEED_BITS = 28
MAX_SEED = 1 << SEED_BITS  # seeds are integers in [0, MAX_SEED)
# The streams a model draws from. "init" is index 0, so a model's initial weights are drawn exactly as before this
# module existed (generator seed = seed). Append new streams at the end; at most 2**(32 - SEED_BITS) = 16.
STREAMS = ("init", "order", "hidden_dropout", "input_dropout", "noise")


def stream_seed(seed: int, stream: str) -> int:
    """The generator seed of `stream` for model seed `seed`: STREAMS.index(stream) * 2**SEED_BITS + seed."""
    check_seed(seed)
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; known: {', '.join(STREAMS)}")
    return (STREAMS.index(stream) << SEED_BITS) | int(seed)


def generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator for one (seed, stream) pair on `device`."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream))


def check_seed(seed, name: str = "seed") -> None:
    """A TypeError or ValueError unless `seed` is an integer in [0, MAX_SEED)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{name} must be an integer, got {seed!r}")
    if not 0 <= seed < MAX_SEED:
        raise ValueError(f"{name} must be in [0, 2**{SEED_BITS}) = [0, {MAX_SEED}), got {seed}")
