"""Saving and loading trained parameters with their config: a `torch.save` of plain tensors, strings and numbers.

Loading uses `torch.load(weights_only=True)`, which refuses anything but tensors and plain containers. The same
format holds parameters alone as bytes (`params_to_bytes`, `params_from_bytes`: the result store keeps weights so).
"""

from __future__ import annotations

import io
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
        "params": _plain(params),
        "config": json.dumps(config.to_dict()),
        "metrics": json.dumps(metrics or {}),
    }
    with atomic_write(path) as f:
        torch.save(payload, f)
    return path


def params_to_bytes(params: Params) -> bytes:
    """Parameters alone, as the bytes of a `torch.save` (read back with `params_from_bytes`)."""
    buf = io.BytesIO()
    torch.save(_plain(params), buf)
    return buf.getvalue()


def params_from_bytes(blob: bytes) -> Params:
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


def _plain(params: Params) -> Params:
    """Detached, contiguous CPU copies: what is saved, whatever device and layout the parameters had."""
    return {k: v.detach().cpu().contiguous() for k, v in params.items()}


def load(path: str | os.PathLike) -> tuple[Params, TrainConfig, dict]:
    """Read a checkpoint written by `save`: (params, config, metrics)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an mlplab checkpoint (expected format {FORMAT})")
    config = TrainConfig.from_dict(json.loads(payload["config"]))
    return payload["params"], config, json.loads(payload["metrics"])
