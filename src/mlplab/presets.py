"""Presets: tuned starting points for the from-scratch MLP on MNIST (permutation-invariant: no convolutions, no
augmentation, no pre-training). Tuned on the validation split only; `benchmarks/frontier.py` measures them.

    >>> from mlplab import preset, train
    >>> result = train(preset("fast", seed=1))      # ~98% test accuracy in ~2 s of training on 2 CPU cores
    $ mlplab train --preset best --seed 1           # flags given beside --preset override its settings

- fast: the shortest training to >= 98.0% test accuracy on a laptop CPU. One hidden layer of 384, Adam with a
  cosine schedule, label smoothing, bf16 matmuls, 3 epochs of batch 128.
- best: the highest accuracy within 15 minutes of training on a 2-core CPU. Two hidden layers of 1024 with
  dropout on the inputs and hidden units, label smoothing, an exponential moving average of the weights for
  evaluation, bf16 matmuls; trained on all 60,000 training images (its settings were chosen on the validation
  split first).
"""

from __future__ import annotations

from mlplab.config import TrainConfig

PRESETS: dict[str, dict] = {
    "fast": dict(hidden=(384,), activation="relu", init="kaiming_uniform", optimizer="adam", lr=3e-3,
                 schedule="cosine", epochs=3, batch_size=128, label_smoothing=0.1, precision="bf16"),
    "best": dict(hidden=(1024, 1024), activation="relu", init="kaiming_uniform", optimizer="adam", lr=1e-3,
                 schedule="cosine", epochs=60, batch_size=128, dropout_input=0.2, dropout=0.5,
                 label_smoothing=0.1, ema=0.999, precision="bf16", val_size=0),
}


def preset(name: str, **overrides) -> TrainConfig:
    """The TrainConfig of preset `name` ("fast" or "best"), with `overrides` (any TrainConfig field) applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return TrainConfig.from_dict({**PRESETS[name], **overrides})
