"""Weight initialization schemes, drawn with an explicit generator.

Each scheme maps (shape, fan_in, fan_out, scale, generator) to a float32 tensor. `scale` is the scheme's own knob:
the bound a of uniform(-a, a), the standard deviation of normal(0, sigma), and a multiplier on the standard gain
for Glorot/Xavier and He/Kaiming (1.0 = the textbook scheme).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Uniform


def _unit_uniform(shape, a: float, generator: torch.Generator) -> Tensor:
    """uniform(-a, a) through torch.distributions.Uniform, fed by our own generator (its sampler has none)."""
    u = torch.rand(shape, generator=generator)  # uniform [0, 1)
    return Uniform(-a, a, validate_args=False).icdf(u)


def _normal(shape, std: float, generator: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=generator) * std


def zeros(shape, fan_in, fan_out, scale, generator):
    return torch.zeros(shape)


def uniform(shape, fan_in, fan_out, scale, generator):
    return _unit_uniform(shape, scale, generator)


def normal(shape, fan_in, fan_out, scale, generator):
    return _normal(shape, scale, generator)


def xavier_uniform(shape, fan_in, fan_out, scale, generator):
    return _unit_uniform(shape, scale * math.sqrt(6.0 / (fan_in + fan_out)), generator)


def xavier_normal(shape, fan_in, fan_out, scale, generator):
    return _normal(shape, scale * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def kaiming_uniform(shape, fan_in, fan_out, scale, generator):
    return _unit_uniform(shape, scale * math.sqrt(6.0 / fan_in), generator)  # gain sqrt(2) for ReLU


def kaiming_normal(shape, fan_in, fan_out, scale, generator):
    return _normal(shape, scale * math.sqrt(2.0 / fan_in), generator)


INITS = {
    "zeros": zeros,
    "uniform": uniform,
    "normal": normal,
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "kaiming_uniform": kaiming_uniform,
    "kaiming_normal": kaiming_normal,
}
ALIASES = {
    "zero": "zeros",
    "glorot_uniform": "xavier_uniform",
    "glorot_normal": "xavier_normal",
    "he_uniform": "kaiming_uniform",
    "he_normal": "kaiming_normal",
    "xavier": "xavier_uniform",
    "glorot": "xavier_uniform",
    "kaiming": "kaiming_normal",
    "he": "kaiming_normal",
}
# The scale used when none is given: the course's uniform(-0.01, 0.01); the textbook gain elsewhere.
DEFAULT_SCALE = {"zeros": 0.0, "uniform": 0.01, "normal": 0.01}


def default_scale(name: str) -> float:
    return DEFAULT_SCALE.get(name, 1.0)
