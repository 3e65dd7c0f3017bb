"""The multilayer perceptron, from plain tensors. Softmax regression is the MLP with no hidden layer.

Every parameter carries a leading model axis M, so one model is M = 1 and a population of M models of the same
shape is the same code: weights w{i} are (M, fan_in, fan_out), biases b{i} are (M, 1, fan_out).

    >>> params = init_mlp([784, 256, 10], "uniform", scales=[0.01], seeds=[0])
    >>> logits = forward(params, x, "relu")           # x (B, 784) -> (1, B, 10)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mlplab.activations import ACTIVATIONS
from mlplab.initializers import INITS

Params = dict[str, Tensor]
Drop = Callable[[Tensor], Tensor]  # dropout applied to hidden activations (M, B, H) while training


def layer_sizes(in_dim: int, hidden: tuple[int, ...] | list[int], n_classes: int) -> list[int]:
    """[784] + hidden + [10]: the width of every layer, input first."""
    return [in_dim, *hidden, n_classes]


def n_layers(params: Params) -> int:
    return sum(1 for k in params if k.startswith("w"))


def init_mlp(
    sizes: list[int],
    init: str | list[str],
    scales: list[float],
    seeds: list[int],
    bias_init: str | list[str] = "zeros",
) -> Params:
    """Parameters of M = len(seeds) models, model m drawn from its own generator seeded with seeds[m].

    `init` and `bias_init` name one scheme for all models, or one per model. Drawing is on the CPU in float32,
    layer by layer (weight, then bias when its bias_init is "same"), so a model's parameters depend only on its
    own scheme, scale and seed, never on the other models or on the device.
    """
    M = len(seeds)
    assert len(scales) == M, "one scale per model"
    inits = [init] * M if isinstance(init, str) else list(init)
    bias_inits = [bias_init] * M if isinstance(bias_init, str) else list(bias_init)
    per_model = []
    for name, bias, scale, seed in zip(inits, bias_inits, scales, seeds):
        scheme = INITS[name]
        g = torch.Generator().manual_seed(int(seed))
        p = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            p[f"w{i}"] = scheme((fan_in, fan_out), fan_in, fan_out, scale, g)  # (fan_in, fan_out)
            if bias == "same":
                p[f"b{i}"] = scheme((1, fan_out), fan_in, fan_out, scale, g)  # (1, fan_out)
            else:
                p[f"b{i}"] = torch.zeros(1, fan_out)
        per_model.append(p)
    return {k: torch.stack([p[k] for p in per_model]) for k in per_model[0]}  # (M, ...)


def linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """x @ w + b for every model.

    x: (B, D) shared by all models, or (M, B, D); w: (M, D, H); b: (M, 1, H). Returns (M, B, H).
    A shared input to narrow layers (H < 16) is multiplied by all models' weights in ONE matmul, (B, D) @ (D, M*H),
    since M products of width H would each be too narrow to run fast. Wider layers take one batched product over a
    broadcast view of x instead: that skips copying w into the (D, M*H) layout and leaves its gradient contiguous,
    copies that cost more than the wide product gains from H = 16 on (2-core CPU, torch 2.13; see
    benchmarks/population.py and BENCHMARKS.md).
    """
    M, D, H = w.shape
    if x.dim() == 2 and (M == 1 or H < 16):
        B = x.shape[0]
        wide = w.permute(1, 0, 2).reshape(D, M * H)  # (D, M*H); a view when M == 1
        out = (x @ wide).view(B, M, H).transpose(0, 1)  # (M, B, H)
        return out + b.to(out.dtype)  # under bf16 autocast the product is bf16: keep the activations bf16 too
    if x.dim() == 2:
        x = x.expand(M, *x.shape)  # (M, B, D): a view, nothing is copied
    return torch.baddbmm(b, x, w)  # (M, B, H)


def forward(params: Params, x: Tensor, activation: str, drop: Drop | None = None) -> Tensor:
    """Logits of every model. x: (B, D) shared by all models, or (M, B, D) -> (M, B, C).

    `drop(h)`, when given, is applied to every hidden layer's activations (M, B, H) during training (dropout);
    input dropout is the caller's, since it turns a shared batch into one per model."""
    return _rest(params, linear(x, params["w0"], params["b0"]), activation, drop)


def forward_streams(params: Params, xs: list[Tensor], groups: list[slice], activation: str,
                    drop: Drop | None = None) -> Tensor:
    """Logits when each group of models (a slice of the model axis) reads its own shared batch.

    xs[g]: (B, D) for the models in groups[g]; the groups tile 0..M-1 in order. Each group's first layer is one
    `linear` on its shared batch, so a sweep over trials x data-order seeds costs one product per seed; when every
    model has its own batch (and H1 > 1), the batches are stacked into one batched product. Returns (M, B, C).
    """
    w, b = params["w0"], params["b0"]
    if len(xs) == 1:
        return forward(params, xs[0], activation, drop)
    sizes = [g.stop - g.start for g in groups]
    assert sum(sizes) == w.shape[0], f"groups must tile the {w.shape[0]} models, got sizes {sizes}"
    if len(xs) == w.shape[0] and w.shape[-1] > 1:  # at H1 = 1, M matrix-vector products beat copying the batches
        h = torch.baddbmm(b, torch.stack(xs), w)  # (M, B, D) @ (M, D, H1) -> (M, B, H1)
    else:
        # w.split, not w[g]: the backward of w[g] writes into a zeroed tensor the size of all of w, once per group.
        h = torch.cat([linear(x, wg, bg) for x, wg, bg in zip(xs, w.split(sizes), b.split(sizes))])  # (M, B, H1)
    return _rest(params, h, activation, drop)


def _rest(params: Params, h: Tensor, activation: str, drop: Drop | None = None) -> Tensor:
    """Layers 1..L-1 applied to the first layer's pre-activations h (M, B, H1)."""
    act = ACTIVATIONS[activation]
    for i in range(1, n_layers(params)):
        a = act(h) if drop is None else drop(act(h))
        h = linear(a, params[f"w{i}"], params[f"b{i}"])  # (M, B, sizes[i+1])
    return h


def hidden_features(params: Params, x: Tensor, activation: str, layer: int = 0) -> Tensor:
    """Activations of hidden layer `layer` (0 = first), (M, B, H): for looking inside a trained model."""
    act = ACTIVATIONS[activation]
    h = x
    for i in range(layer + 1):
        h = act(linear(h, params[f"w{i}"], params[f"b{i}"]))
    return h


def select(params: Params, m: int) -> Params:
    """Model m of a population, still with a model axis of size 1."""
    return {k: v[m : m + 1].clone() for k, v in params.items()}


def n_parameters(params: Params) -> int:
    """Number of trainable numbers per model."""
    return sum(v[0].numel() for v in params.values())
