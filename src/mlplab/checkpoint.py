"""Saving and loading trained parameters with their config: a `torch.save` of plain tensors, strings and numbers.

Loading uses `torch.load(weights_only=True)`, which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from mlplab.config import TrainConfig
from mlplab.files import atomic_write
from mlplab.mlp import Params

FORMAT = "mlplab-checkpoint-1"


def save(path: str | os.PathLike, params: Params, config: TrainConfig, metrics: dict | None = None) -> Path:
    """Write params (model axis of size 1), the resolved config and metrics to `path`, atomically."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "params": {k: v.detach().cpu().contiguous() for k, v in params.items()},
        "config": json.dumps(config.to_dict()),
        "metrics": json.dumps(metrics or {}),
    }
    with atomic_write(path) as f:
        torch.save(payload, f)
    return path


def load(path: str | os.PathLike) -> tuple[Params, TrainConfig, dict]:
    """Read a checkpoint written by `save`: (params, config, metrics)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an mlplab checkpoint (expected format {FORMAT})")
    config = TrainConfig.from_dict(json.loads(payload["config"]))
    return payload["params"], config, json.loads(payload["metrics"])
