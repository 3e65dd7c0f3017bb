"""Presets: tuned starting points for the from-scratch MLP on MNIST (permutation-invariant: no convolutions, no
augmentation, no pre-training). Tuned on the validation split only; `benchmarks/frontier.py` measures them.

    >>> from mlplab import preset, train
    >>> result = train(preset("fast", seed=1))      # ~98% test accuracy in ~2 s of training on 2 CPU cores
    $ mlplab train --preset best --seed 1           # flags given beside --preset override its settings

- fast: the shortest training to >= 98.0% test accuracy on a laptop CPU. One hidden layer of 384, Adam with a
  cosine schedule, label smoothing, bf16 matmuls, 3 epochs of batch 128.
- best: the highest accuracy within 15 minutes of training on a 2-core CPU. Five hidden layers (1000-500-250-250-250,
  the supervised baseline of Rasmus et al. 2015) with batch normalization and Gaussian noise (std 0.3) on the
  inputs and every normalized hidden layer, label smoothing 0.1, Adam with a cosine schedule, bf16 matmuls, 60
  epochs of batch 100, trained on all 60,000 training images. Its settings were chosen on the validation split
  (99.14% there after 60 epochs on the other 50,000); dropout 0.2/0.5 on 2x1024 with Adam reached only 98.5%.
"""

from __future__ import annotations

from mlplab.config import TrainConfig

PRESETS: dict[str, dict] = {
    "fast": dict(hidden=(384,), activation="relu", init="kaiming_uniform", optimizer="adam", lr=3e-3,
                 schedule="cosine", epochs=3, batch_size=128, label_smoothing=0.1, precision="bf16"),
    "best": dict(hidden=(1000, 500, 250, 250, 250), activation="relu", init="kaiming_uniform", batch_norm=True,
                 noise=0.3, label_smoothing=0.1, optimizer="adam", lr=2e-3, schedule="cosine", epochs=60,
                 batch_size=100, precision="bf16", val_size=0),
}


def settings(name: str) -> dict:
    """The TrainConfig fields preset `name` sets; a ValueError naming the presets for an unknown name."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def preset(name: str, **overrides) -> TrainConfig:
    """The TrainConfig of preset `name` ("fast" or "best"), with `overrides` (any TrainConfig field) applied."""
    return TrainConfig.from_dict({**settings(name), **overrides})
