"""mlplab against what a user would write instead, side by side in one process.

    python benchmarks/peers.py                 # both comparisons, best of 3 repeats (~3 min on 2 cores)
    python benchmarks/peers.py --quick         # tiny settings (a smoke run; its timings mean nothing)

1. One model: `mlplab.train` (784-256-10, ReLU, uniform(-0.01, 0.01), SGD 0.1, batch 128) against the plain PyTorch
   tutorial loop (torch.nn.Sequential, torch.optim.SGD, F.cross_entropy, a shuffled index per epoch), seconds per
   epoch. mlplab's figure includes its evaluation of the validation and test splits after every epoch; the tutorial
   loop's is training only, and with the same evaluation added.
2. Populations: M models trained as one mlplab population against torch.func (`stack_module_state` + `vmap` over
   `grad` of `functional_call`, per-model learning rates), the peer a user would pick for ensembles; shared data
   order, 1 epoch, cases (M, H) = (64, 8), (32, 32), (16, 128); training seconds only.

Benchmarks may use torch.nn (the package may not). Each case runs both sides in alternation per repeat; the ratio
range is over the per-repeat ratios. Run it on a quiet machine: other processes on the cores make timings
meaningless (the script reports the cores others kept busy).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from _common import busy_cpu_seconds
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

import mlplab
from mlplab import TrainConfig, train, train_population
from mlplab.data import load_mnist, make_splits, to_tensors

POP_CASES = [(64, 8), (32, 32), (16, 128)]
QUICK_POP_CASES = [(8, 8)]


def tutorial_mlp(hidden: int, seed: int) -> nn.Module:
    """The course MLP as torch.nn, initialized uniform(-0.01, 0.01) with zero biases like mlplab's default."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.copy_(torch.rand(layer.weight.shape, generator=g) * 0.02 - 0.01)
            layer.bias.zero_()
    return model


def tutorial_epochs(X, Y, evals, hidden: int, epochs: int, lr: float, batch_size: int, evaluate: bool) -> float:
    """Seconds per epoch of the plain tutorial loop (optionally evaluating val and test after each epoch)."""
    model = tutorial_mlp(hidden, 0)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(model(X[idx]), Y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if evaluate:
            with torch.no_grad():
                for x, y in evals:
                    logits = model(x)
                    F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).sum().item()
    return (time.perf_counter() - t) / epochs


def one_model(splits, epochs: int, repeats: int) -> dict:
    X, Y = to_tensors(splits.train_x, splits.train_y, "cpu")
    evals = [to_tensors(splits.val_x, splits.val_y, "cpu"), to_tensors(splits.test_x, splits.test_y, "cpu")]
    cfg = TrainConfig(hidden=(256,), epochs=epochs, batch_size=128, lr=0.1)
    train(cfg.replace(epochs=1), splits=splits, progress=False, device="cpu")  # warm-ups
    tutorial_epochs(X, Y, evals, 256, 1, 0.1, 128, False)
    rows = []
    for _ in range(repeats):
        r = train(cfg, splits=splits, progress=False, device="cpu")
        rows.append({"mlplab_train": r.history[-1]["seconds"] / epochs, "mlplab_wall": r.seconds / epochs,
                     "tutorial_train": tutorial_epochs(X, Y, evals, 256, epochs, 0.1, 128, False),
                     "tutorial_with_eval": tutorial_epochs(X, Y, evals, 256, epochs, 0.1, 128, True),
                     "mlplab_test_accuracy": r.test_accuracy})
    return {"repeats": rows, **{k: min(x[k] for x in rows) for k in rows[0] if k != "mlplab_test_accuracy"},
            "ratio_wall_vs_tutorial_train": [x["tutorial_train"] / x["mlplab_wall"] for x in rows],
            "ratio_wall_vs_tutorial_with_eval": [x["tutorial_with_eval"] / x["mlplab_wall"] for x in rows]}


def torchfunc_epoch(X, Y, M: int, H: int, lrs: torch.Tensor, batch_size: int) -> float:
    """Training seconds of one epoch of M models with torch.func, every model reading the same batch."""
    models = [tutorial_mlp(H, m) for m in range(M)]
    params, buffers = stack_module_state(models)  # {name: (M, ...)}
    base = copy.deepcopy(models[0]).to("meta")

    def loss_fn(p, b, x, y):
        return F.cross_entropy(functional_call(base, (p, b), (x,)), y)

    grads_of = vmap(grad(loss_fn), in_dims=(0, 0, None, None))
    g = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    perm = torch.randperm(len(X), generator=g)
    for i in range(0, len(X), batch_size):
        idx = perm[i:i + batch_size]
        grads = grads_of(params, buffers, X[idx], Y[idx])
        with torch.no_grad():
            for k, p in params.items():
                p.sub_(lrs.view(M, *[1] * (p.dim() - 1)) * grads[k])
    return time.perf_counter() - t


def populations(splits, cases, repeats: int) -> list[dict]:
    X, Y = to_tensors(splits.train_x, splits.train_y, "cpu")
    out = []
    for M, H in cases:
        lrs = torch.logspace(-2, -0.3, M)
        configs = [TrainConfig(hidden=(H,), lr=float(lr), seed=m, data_seed=0, epochs=1) for m, lr in enumerate(lrs)]
        train_population(configs[:2], splits=splits, progress=False, device="cpu")  # warm-ups
        torchfunc_epoch(X[:1024], Y[:1024], 2, H, lrs[:2], 128)
        runs = []
        for _ in range(repeats):
            rs = train_population(configs, splits=splits, progress=False, device="cpu")
            runs.append({"mlplab": rs[0].history[-1]["seconds"], "torchfunc": torchfunc_epoch(X, Y, M, H, lrs, 128)})
        ratios = [r["torchfunc"] / r["mlplab"] for r in runs]
        out.append({"M": M, "H": H, "mlplab_s": min(r["mlplab"] for r in runs),
                    "torchfunc_s": min(r["torchfunc"] for r in runs), "ratio_min": min(ratios),
                    "ratio_max": max(ratios), "ratio_best": min(r["torchfunc"] for r in runs) / min(
                        r["mlplab"] for r in runs), "runs": runs})
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny settings: 1 epoch, 1 repeat, one small population")
    p.add_argument("--repeats", type=int, default=None, help="repeats per comparison (default 3, --quick 1)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the one-model comparison (default 3)")
    p.add_argument("--json", metavar="PATH", help="also write the figures and what produced them as JSON")
    args = p.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    epochs = args.epochs or (1 if args.quick else 3)
    splits = make_splits(load_mnist())
    if args.quick:  # a smoke run: a tenth of the data
        from mlplab.data import Splits
        splits = Splits(splits.name, splits.train_x[:5000], splits.train_y[:5000], splits.val_x[:1000],
                        splits.val_y[:1000], splits.test_x[:1000], splits.test_y[:1000])
    busy0, own0, t0 = busy_cpu_seconds(), sum(os.times()[:2]), time.perf_counter()
    single = one_model(splits, epochs, repeats)
    pops = populations(splits, QUICK_POP_CASES if args.quick else POP_CASES, repeats)
    busy1, own1, t1 = busy_cpu_seconds(), sum(os.times()[:2]), time.perf_counter()
    other = None if busy0 is None else max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, mlplab {mlplab.__version__}, "
          f"{len(splits.train_x)} training images, best of {repeats}; other processes kept "
          f"{other if other is not None else float('nan'):.2f} cores busy on average")
    print("one model, 784-256-10 SGD batch 128, seconds per epoch:")
    print(f"  mlplab.train  training {single['mlplab_train']:.3f}  with its evaluation {single['mlplab_wall']:.3f}")
    print(f"  tutorial loop training {single['tutorial_train']:.3f}  with the same evaluation "
          f"{single['tutorial_with_eval']:.3f}")
    r1, r2 = single["ratio_wall_vs_tutorial_train"], single["ratio_wall_vs_tutorial_with_eval"]
    print(f"  mlplab (with evaluation) is {min(r1):.2f}-{max(r1):.2f}x as fast as the tutorial's training alone, "
          f"{min(r2):.2f}-{max(r2):.2f}x as fast as the tutorial with evaluation")
    print("populations vs torch.func (shared data order, 1 epoch, training seconds):")
    for r in pops:
        print(f"  M={r['M']:>3} H={r['H']:>4}  mlplab {r['mlplab_s']:.3f}  torch.func {r['torchfunc_s']:.3f}  "
              f"mlplab {r['ratio_best']:.2f}x faster (per-repeat {r['ratio_min']:.2f}-{r['ratio_max']:.2f}x)")
    if other is not None and other > 0.2:
        print("WARNING: other processes used the CPU during the run; timings are not trustworthy")
    if args.json:
        meta = {"command": " ".join([os.path.basename(sys.executable), *sys.argv]), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "mlplab": mlplab.__version__, "other_cores": other}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "one_model": single, "populations": pops}, f, indent=1)


if __name__ == "__main__":
    main()
