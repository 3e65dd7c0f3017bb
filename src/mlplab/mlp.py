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
from mlplab.batchnorm import batch_norm_eval
from mlplab.initializers import INITS
from mlplab.seeds import generator

Params = dict[str, Tensor]
Drop = Callable[[Tensor], Tensor]  # dropout applied to hidden activations (M, B, H) while training
Norm = Callable[[int, Tensor], Tensor]  # training-time batch norm of hidden layer i's pre-activations (M, B, H)


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
    batch_norm: bool = False,
) -> Params:
    """Parameters of M = len(seeds) models, model m drawn from its own generator seeded with seeds[m].

    `init` and `bias_init` name one scheme for all models, or one per model. Drawing is on the CPU in float32,
    layer by layer (weight, then bias when its bias_init is "same"), so a model's parameters depend only on its
    own scheme, scale and seed, never on the other models or on the device. With `batch_norm`, every hidden layer
    also gets a scale g{i} (M, 1, H) of ones (its bias b{i} is then the shift after normalization).
    """
    M = len(seeds)
    assert len(scales) == M, "one scale per model"
    inits = [init] * M if isinstance(init, str) else list(init)
    bias_inits = [bias_init] * M if isinstance(bias_init, str) else list(bias_init)
    per_model = []
    for name, bias, scale, seed in zip(inits, bias_inits, scales, seeds):
        scheme = INITS[name]
        g = generator(int(seed), "init")  # the init stream of the model's seed
        p = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            p[f"w{i}"] = scheme((fan_in, fan_out), fan_in, fan_out, scale, g)  # (fan_in, fan_out)
            if bias == "same":
                p[f"b{i}"] = scheme((1, fan_out), fan_in, fan_out, scale, g)  # (1, fan_out)
            else:
                p[f"b{i}"] = torch.zeros(1, fan_out)
            if batch_norm and i < len(sizes) - 2:
                p[f"g{i}"] = torch.ones(1, fan_out)
        per_model.append(p)
    return {k: torch.stack([p[k] for p in per_model]) for k in per_model[0]}  # (M, ...)


def linear(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """x @ w + b for every model (x @ w when b is None).

    x: (B, D) shared by all models, or (M, B, D); w: (M, D, H); b: (M, 1, H). Returns (M, B, H).
    A shared input to narrow layers (H < 16) of several models is multiplied by all models' weights in ONE matmul,
    (B, D) @ (D, M*H), since M products of width H would each be too narrow to run fast. Wider layers (and a single
    model) take one batched product over a broadcast view of x instead: that skips copying w into the (D, M*H)
    layout and leaves its gradient contiguous, copies that cost more than the wide product gains from H = 16 on
    (2-core CPU, torch 2.13; see benchmarks/population.py and BENCHMARKS.md); for one model it is also the fewest
    operations (a view and one fused product-plus-bias), which is what a single small model's step time is made of.
    """
    M, D, H = w.shape
    low = _autocast_dtype(x.device)  # bf16 under mlplab's bf16 precision, else None
    if x.dim() == 2 and M > 1 and (H < 16 or (low is not None and H <= WIDE_LOW_PRECISION_MAX_H)):
        B = x.shape[0]
        # (D, M*H) in one pass that also casts (under autocast the cast is a copy anyway, so the layout is free)
        wide = w.permute(1, 0, 2).to(low or w.dtype, memory_format=torch.contiguous_format).reshape(D, M * H)
        out = (x.to(wide.dtype) @ wide).view(B, M, H).transpose(0, 1)  # (M, B, H)
        return out if b is None else out + b.to(out.dtype)  # under bf16 autocast keep the activations bf16 too
    if x.dim() == 2:
        x = x.expand(M, *x.shape)  # (M, B, D): a view, nothing is copied
    return torch.bmm(x, w) if b is None else torch.baddbmm(b, x, w)  # (M, B, H)


# Shared-input layers of several models up to this width take the one wide product in bf16 (see linear): 15% faster
# than the batched product for 40 x 784-128-10 (5 streams of 8), the same at 64 units, no better at 256 (2-core CPU)
WIDE_LOW_PRECISION_MAX_H = 128


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The lower precision autocast is running matmuls in on `device` now, or None when it is off."""
    if not torch.is_autocast_enabled(device.type):
        return None
    return torch.get_autocast_dtype(device.type)


def forward(params: Params, x: Tensor, activation: str, drop: Drop | None = None, norm: Norm | None = None) -> Tensor:
    """Logits of every model. x: (B, D) shared by all models, or (M, B, D) -> (M, B, C).

    `drop(h)`, when given, is applied to every hidden layer's activations (M, B, H) during training (dropout);
    input dropout is the caller's, since it turns a shared batch into one per model. Layers with batch norm (a
    g{i} in params) use `norm(i, z)` while training, and the running statistics mean{i}, var{i} in params
    otherwise."""
    return _rest(params, linear(x, params["w0"], _bias(params, 0)), activation, drop, norm)


def forward_streams(params: Params, xs: list[Tensor], groups: list[slice], activation: str,
                    drop: Drop | None = None, norm: Norm | None = None) -> Tensor:
    """Logits when each group of models (a slice of the model axis) reads its own shared batch.

    xs[g]: (B, D) for the models in groups[g]; the groups tile 0..M-1 in order. Each group's first layer is one
    `linear` on its shared batch, so a sweep over trials x data-order seeds costs one product per seed; when every
    model has its own batch (and H1 > 1), the batches are stacked into one batched product. Returns (M, B, C).
    """
    if len(xs) == 1:
        return forward(params, xs[0], activation, drop, norm)
    w, b = params["w0"], _bias(params, 0)
    sizes = [g.stop - g.start for g in groups]
    assert sum(sizes) == w.shape[0], f"groups must tile the {w.shape[0]} models, got sizes {sizes}"
    if len(xs) == w.shape[0] and w.shape[-1] > 1:  # at H1 = 1, M matrix-vector products beat copying the batches
        h = linear(torch.stack(xs), w, b)  # (M, B, D) @ (M, D, H1) -> (M, B, H1)
    else:
        # w.split, not w[g]: the backward of w[g] writes into a zeroed tensor the size of all of w, once per group.
        bs = [None] * len(sizes) if b is None else b.split(sizes)
        h = torch.cat([linear(x, wg, bg) for x, wg, bg in zip(xs, w.split(sizes), bs)])  # (M, B, H1)
    return _rest(params, h, activation, drop, norm)


def _bias(params: Params, i: int) -> Tensor | None:
    """The bias added by layer i's product: none for a batch-normalized layer, whose b{i} is the shift after."""
    return None if f"g{i}" in params else params[f"b{i}"]


def _normalize(params: Params, i: int, z: Tensor, norm: Norm | None) -> Tensor:
    """Hidden layer i's pre-activations after batch norm (training: `norm`; else running statistics), if it has it."""
    if f"g{i}" not in params:
        return z
    if norm is not None:
        return norm(i, z)
    return batch_norm_eval(z, params[f"g{i}"], params[f"b{i}"], params[f"mean{i}"], params[f"var{i}"])


def _rest(params: Params, h: Tensor, activation: str, drop: Drop | None = None, norm: Norm | None = None) -> Tensor:
    """Layers 1..L-1 applied to the first layer's pre-activations h (M, B, H1)."""
    act = ACTIVATIONS[activation]
    for i in range(1, n_layers(params)):
        a = act(_normalize(params, i - 1, h, norm))
        if drop is not None:
            a = drop(a)
        h = linear(a, params[f"w{i}"], _bias(params, i))  # (M, B, sizes[i+1])
    return h


def hidden_features(params: Params, x: Tensor, activation: str, layer: int = 0) -> Tensor:
    """Activations of hidden layer `layer` (0 = first), (M, B, H): for looking inside a trained model."""
    act = ACTIVATIONS[activation]
    h = x
    for i in range(layer + 1):
        h = act(_normalize(params, i, linear(h, params[f"w{i}"], _bias(params, i)), None))
    return h


def select(params: Params, m: int) -> Params:
    """Model m of a population, still with a model axis of size 1."""
    return {k: v[m : m + 1].clone() for k, v in params.items()}


def n_parameters(params: Params) -> int:
    """Number of trainable numbers per model (batch norm's running statistics are not trained)."""
    return sum(v[0].numel() for k, v in params.items() if not k.startswith(("mean", "var")))
