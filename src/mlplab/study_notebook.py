# The template of the notebook that `mlplab study` writes (percent format: each "# %%" starts a cell).
# Cells tagged hide-input are observations: code that writes text from the measured numbers. Every sentence about
# the results is an analysis.Claim, rendered from facts computed here and attached to the output's metadata, so
# that the tests can recompute the facts from the store and compare.

# %% [markdown]
# # A multilayer perceptron on MNIST, from raw tensors: a hyperparameter case study
#
# Written and executed by `mlplab study`. The networks are built from plain tensors: initialization, activations,
# cross-entropy and the optimizers are written by hand (autograd gives the gradients); nothing comes from
# `torch.nn` or `torch.optim`. The experiments were trained beforehand, many models at once, into a result store;
# the cells below read that store, and every result of those experiments in the text is computed from it (the
# settings, such as learning rates and budgets, are the study's own choices, written where they are described). A
# few small demonstrations run in the notebook itself as it executes, and say so where they appear: the
# thirty-line MLP (section 2), the zero-initialized sigmoid network (section 4), the thread-count runs (section
# 8.2) and the statistics at initialization (section 10.1). The store is the
# file that `STORE` names in the parameter cell below (`study.sqlite` beside this notebook, unless `mlplab study`
# was given `--store`): hand it in with the notebook, since without it the numbers can be neither checked nor
# recomputed.
#
# **Contents**
# 1. [The data and the protocol](#s1)
# 2. [An MLP in thirty lines of plain PyTorch](#s2)
# 3. [The 784-256-10 MLP, trained with early stopping](#s3)
# 4. [Why not initialize with zeros?](#s4)
# 5. [One hyperparameter at a time](#s5)
# 6. [Failure modes](#s6)
# 7. [Interactions](#s7)
# 8. [Randomness](#s8)
# 9. [Grid, random search and successive halving at equal compute](#s9)
# 10. [Inside the networks](#s10)
# 11. [What the study cost](#s11)
# 12. [Summary](#s12)
# 13. [Reflection on the low-level interface](#s13)
# 14. [Appendix: mlplab's model code](#s14)

# %% tags=["parameters", "hide-input"]
STORE = "study.sqlite"
QUICK = True
SEEDS = None
DEVICE = "cpu"
FIGURES = "figures"

# %% tags=["hide-input"]
import statistics
from collections import Counter

import numpy as np
import torch
from IPython.display import Markdown, display

import mlplab
from mlplab import analysis, cost, plots, study
from mlplab.analysis import Claim, fmt_value, pct
from mlplab.data import load_mnist, make_splits, to_tensors
from mlplab.device import arithmetic
from mlplab.store import Store, trial_key

plots.style()
with Store(STORE, create=False) as _s:
    RECORDS = _s.records()
EXPS = study.experiments(QUICK, SEEDS)
REC = {name: study.experiment_records(RECORDS, e) for name, e in EXPS.items()}
POINTS = {name: analysis.by_setting(REC[name], e.setting) for name, e in EXPS.items() if e.setting}
CLAIMS = []


def networks(configs):
    """The trained networks of `configs` ({name: tensor (1, ...)} each, at their reported epoch) and whether they are
    the stored ones: the store keeps the weights of the models this notebook looks inside (`study.kept_weights`);
    a store written before it did gets them trained again here."""
    with Store(STORE, create=False) as s:
        kept = [s.weights(trial_key(c)) for c in configs]
    if all(w is not None for w in kept):
        return kept, True
    return [r.params for r in mlplab.train_population(configs, splits=splits, device=DEVICE, progress=False)], False


def show(fig, name):
    """Save a figure as PNG and SVG into the figures folder, and show it here."""
    plots.save(fig, name, FIGURES)
    display(fig)
    plots.plt.close(fig)


def say(claims, lead="**Observations.** ", after="", bullets=False):
    """Show claims as one paragraph, or with `bullets` as a list, one item per claim (a claim's text may hold
    further items); their facts travel in the output's metadata (read by the tests)."""
    CLAIMS.extend(claims)
    text = "\n\n" + "\n".join("- " + c.text for c in claims) if bullets else " ".join(c.text for c in claims)
    display(Markdown(lead + text + after), metadata={"mlplab_claims": [c.as_dict() for c in claims]})


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    display(Markdown("\n".join(lines)))


def outcome_counts(points):
    """converged / budget / collapsed / diverged, and how many of the first two were never half right (section 5.4)."""
    c = Counter(o.kind for p in points for o in p.outcomes)
    little = sum(analysis.learned_little(r, o) for p in points for r, o in zip(p.records, p.outcomes))
    return " / ".join(str(c[k]) for k in analysis.OUTCOMES) + (f" ({little} never half right)" if little else "")


n_trials = len({r["key"] for recs in REC.values() for r in recs})
display(Markdown(
    f"mlplab {mlplab.__version__}, torch {torch.__version__}, device `{DEVICE}`, {torch.get_num_threads()} "
    f"thread{'' if torch.get_num_threads() == 1 else 's'}. "
    + ("**Quick study**: fewer values, seeds and epochs; its numbers are a smoke test, not results. " if QUICK else "")
    + f"The experiments below use {n_trials} stored trials."))

# %% [markdown]
# <a id="s1"></a>
# ## 1. The data and the protocol
#
# MNIST: 28x28 grey-scale handwritten digits, 60,000 for training and 10,000 for testing. The last 10,000 training
# images are held out as the **validation set**; models are trained on the other 50,000. Every choice in this study
# (the best setting of a sweep, the recipe, the best cell of a grid) is made on validation accuracy. The test set
# is only reported (the store keeps every epoch's test accuracy with its history), never used to choose.
#
# **Training until it stops improving.** Every model trains until its validation loss (cross-entropy on the
# validation set, measured after each epoch) has not improved by more than a minimum delta for a number of epochs in
# a row (the patience), or until its epoch budget runs out; it then reports the epoch with the lowest validation
# loss: that epoch's weights and metrics. The learning rate is constant everywhere except in section 3's cosine runs
# (`adam_cosine` and two of its one-part changes, whose rate decays to zero at the end of their budget), so elsewhere
# the budget does not change a model's training before it stops. Each run ends in one of four ways:
#
# - **converged**: stopped by the patience rule (this says how training ended, not how good the model is: a run can
#   converge to a poor one);
# - **not converged within the budget** ("budget" in the tables): the budget ran out before the patience rule
#   fired (the last epochs may or may not have improved);
# - **collapsed**: finite loss, but the reported validation accuracy is below twice chance (20%);
# - **diverged**: the loss or a gradient became infinite or NaN.
#
# The outcome is recomputed here from each run's stored per-epoch history and its patience, minimum delta and
# budget (`analysis.outcome`), and shown with its own marker in every figure and a count in every table.
#
# **Comparisons.** A sweep's value is summarized by the median over its seeds. Two settings are called different
# only when Welch's t-test on their seeds' validation accuracies gives p < 0.05 (a diverged seed counts as accuracy
# 0); otherwise they are called **tied**: they cannot be told apart, which is not the same as equal (a tied value's
# median may lie below the best's, and more seeds might separate them). "Worse beyond seed noise" means p < 0.05.
# This rule is behind every "tied" and "worse" below. The tests are pairwise, on 2 to 5 seeds each, and not
# corrected for how many are made: in a sweep of many values, one "worse" in twenty can be chance, and a value whose
# seeds spread widely (one collapsed seed) is easily "tied". With 3 seeds the spread itself is poorly known: three
# runs that happen to agree closely make a small gap "beyond noise". Section 8 measures the run-to-run spread of one
# setting on 25 runs; a "worse" whose gap is below that spread rests on the few seeds' luck as much as on the setting.
# A best value at the edge of its range is flagged.

# %% tags=["hide-input"]
ds = load_mnist()
splits = make_splits(ds)
b0 = EXPS["lr"].spec.base_config()
rows = []
for e in EXPS.values():
    t = e.trials()
    # seeds per setting: fewer for the widest widths of the width sweep, which would not fit the budget otherwise
    per = Counter(repr({k: v for k, v in vars(x).items() if k != "seed"}) for x in t).values()
    rows.append([e.title, len(t), "-".join(dict.fromkeys(str(n) for n in (min(per), max(per)))),
                 "/".join(sorted({str(x.epochs) for x in t})),
                 "/".join(sorted({str(x.patience) for x in t})), e.precision])
display(Markdown(
    f"Here: {len(splits.train_x):,} training, {len(splits.val_x):,} validation and {len(splits.test_x):,} test "
    f"images; patience **{b0.patience}** epochs, minimum delta **{b0.min_delta:g}** (in nats of mean validation "
    f"cross-entropy), epoch budget **{b0.epochs}** for the sweeps. Precision per experiment below: bf16 means the "
    "matrix products run in bfloat16 under autocast, with float32 weights, gradients and optimizer state."))
table(["experiment", "trials", "seeds per setting", "epoch budget", "patience", "precision"], rows)
show(plots.digits_grid(ds.train_images, ds.train_labels), "data_digits")

# %% [markdown]
# <a id="s2"></a>
# ## 2. An MLP in thirty lines of plain PyTorch
#
# The assignment's deep model, written the way a student writes it: one hidden layer, uniform(-0.01, 0.01) weights
# drawn with `torch.distributions.Uniform` as the assignment suggests, zero biases, cross-entropy and plain SGD. The
# width (256 ReLU units), the learning rate (0.1) and the batch size (128) are the assignment's to choose; these are
# common first choices. No `torch.nn`, no `torch.optim`. (The rest of the study uses mlplab, which is the
# same mathematics with a leading model axis, so that many models train at once; its code is in the appendix.)

# %%
import torch


def init(n_in, n_out, a=0.01):
    w = torch.distributions.Uniform(-a, a).sample((n_in, n_out)).requires_grad_()
    return w, torch.zeros(n_out, requires_grad=True)

def forward(params, x):
    (w1, b1), (w2, b2) = params
    return torch.relu(x @ w1 + b1) @ w2 + b2              # (B, 10) logits

def loss_fn(logits, y):                                    # mean cross-entropy via log-softmax
    return -(logits - logits.logsumexp(1, keepdim=True))[torch.arange(len(y)), y].mean()

def accuracy(params, x, y):
    with torch.no_grad():
        return (forward(params, x).argmax(1) == y).float().mean().item()

def fit(x, y, xv, yv, epochs, lr=0.1, batch=128, seed=0):
    torch.manual_seed(seed)                                # a script, not a library: global seed is fine
    params = [init(784, 256), init(256, 10)]
    flat = [t for layer in params for t in layer]
    log = []
    for epoch in range(1, epochs + 1):
        for idx in torch.randperm(len(x)).split(batch):
            loss = loss_fn(forward(params, x[idx]), y[idx])
            grads = torch.autograd.grad(loss, flat)
            with torch.no_grad():
                for p, g in zip(flat, grads):
                    p -= lr * g
        log.append({"epoch": epoch, "train_accuracy": accuracy(params, x, y),
                    "val_accuracy": accuracy(params, xv, yv)})
    return params, log

# %%
X, Y = to_tensors(splits.train_x, splits.train_y, "cpu")
XV, YV = to_tensors(splits.val_x, splits.val_y, "cpu")
LIVE_EPOCHS = 2 if QUICK else 20
with torch.random.fork_rng():
    live_params, live_log = fit(X, Y, XV, YV, LIVE_EPOCHS)
for h in live_log:
    print(f"epoch {h['epoch']}: training accuracy {pct(h['train_accuracy'], 2)}, "
          f"validation accuracy {pct(h['val_accuracy'], 2)}")
TX, TY = to_tensors(splits.test_x, splits.test_y, "cpu")
print(f"test accuracy after epoch {LIVE_EPOCHS} (read once, nothing is chosen on it): "
      f"{pct(accuracy(live_params, TX, TY), 2)}")
show(plots.train_vs_val(live_log, "The thirty-line MLP: training vs validation error"), "plain_torch_curves")
live_claim = analysis.live_gap_claim(live_log)

# Is the validation split simply easier? The learning-rate sweep's seed-0 models (weights kept by the store), each
# evaluated on the images it trained on and on the validation images; the one whose training accuracy is closest to
# the thirty-line model's where its validation accuracy is furthest ahead shows how much of that gap the split gives
# at the same fit.
from mlplab.mlp import forward as mlp_forward  # the student's `forward` above keeps its name

lr_cfgs = [t for t in EXPS["lr"].trials() if t.seed == 0]  # also section 6's dead units
lr_params, lr_stored = networks(lr_cfgs)
fits = []
for c, w in zip(lr_cfgs, lr_params):
    with torch.no_grad(), arithmetic(torch.device("cpu"), c.precision):
        w = {k: v.float() for k, v in w.items()}
        fits.append([trial_key(c), c.lr] + [float((mlp_forward(w, x, c.activation)[0].argmax(-1) == y)
                                                  .float().mean()) for x, y in ((X, Y), (XV, YV))])
lf = live_claim.facts
key, lr_m, train_m, val_m = min(fits, key=lambda f: abs(f[2] - lf["widest_train"]))
say([live_claim] + ([analysis.split_claim(key, lr_m, train_m, val_m, lf["widest_train"], lf["widest_val"], len(X),
                                          lf["widest_epoch"])] if lf["n_below"] else []))

# %% [markdown]
# How far this network gets when trained until it stops improving, and with which recipe, is the next section's
# question.
#
# <a id="s3"></a>
# ## 3. The 784-256-10 MLP, trained with early stopping
#
# Section 2's network (784-256-10, ReLU, batch 128) with four recipes: section 2's own (uniform(-0.01, 0.01)
# weights, plain SGD at 0.1), SGD with momentum 0.9 at 0.05 with He-uniform weights, Adam at 1e-3 with He-uniform
# weights, and `adam_cosine`, mlplab's `fast` preset's recipe: Adam at 3e-3 whose rate decays to 0 along a cosine
# over a 10-epoch budget, with label smoothing 0.1 (the training targets put 0.9 on the true class and spread 0.1
# over all ten, which keeps the logits from growing without bound). The first three run at a constant rate, which
# sets no horizon, so the patience rule ends them or, failing that, a longer budget (the table of section 1). The
# recipe is chosen on validation accuracy; only the chosen one's test accuracy is read. This study's goal for this
# network is a test accuracy of 98%, at the upper end of the mid-to-high 90s the assignment expects.

# %% tags=["hide-input"]
RP = POINTS["recipe"]
table(["recipe", "median val. accuracy", "seeds", "stopped at epoch (median)", "reported epoch (median)",
       "converged / budget / collapsed / diverged"],
      [[p.value, pct(p.median, 2), p.n, f"{statistics.median(o.stopped_epoch for o in p.outcomes):g}",
        f"{statistics.median(o.best_epoch for o in p.outcomes):g}", outcome_counts([p])] for p in RP])
show(plots.curves({p.value: {"history": p.records[0]["history"], "best_epoch": p.outcomes[0].best_epoch,
                              "outcome": p.outcomes[0].kind}
                   for p in RP}, "The 784-256-10 MLP, four recipes (seed 0 of each)"), "recipe_curves")
chosen_recipe = analysis.best(RP)
shown = [(p.records[0]["history"], p.outcomes[0].best_epoch) for p in RP]
# every run of every recipe, each against its recipe's seed-to-seed spread of the reported validation loss
loss_sd = {p.value: statistics.stdev(r["val_loss"] for r in p.records) if p.n > 1 else 0.0 for p in RP}
overfit = analysis.overfit_claim([(r["history"], o.best_epoch, loss_sd[p.value])
                                  for p in RP for r, o in zip(p.records, p.outcomes)])
say([analysis.recipe_claim(RP, "recipe"), overfit],
    after=" Where the validation loss rises beyond that noise while the training loss falls, the network has begun "
          "to fit the training images more closely than it generalizes; the reported epoch is the one before that."
    if overfit.facts["n_over"] else "")
smoothed = sorted({r["label_smoothing"] for p in RP for r in p.records if r["label_smoothing"]})
if smoothed:
    n_classes = int(splits.train_y.max()) + 1
    say([Claim("smoothing_floor", {"eps": smoothed[0], "classes": n_classes,
                                   "floor": analysis.smoothing_floor(smoothed[0], n_classes)})])

# %% [markdown]
# `adam_cosine` differs from the other recipes in three ways at once: Adam, a cosine schedule and label smoothing.
# To tell which of them its accuracy comes from, each is changed on its own (the other two kept): no label
# smoothing; a constant rate instead of the cosine (to the sweeps' 15-epoch budget, since a constant rate has no
# horizon); SGD with momentum 0.9 at 0.05 instead of Adam (the sweeps' base rate, not re-tuned for this recipe, so
# this arm asks about that SGD setting, not about every one). Every cosine arm keeps the recipe's 10-epoch horizon;
# a cosine run's rate reaches zero there, so one that stops at its budget ("budget" in the table) has finished its
# schedule rather than run out of time.

# %% tags=["hide-input"]
parts_pts = POINTS["recipe_parts"]
full_desc = analysis.setting(next(r for r in REC["recipe_parts"] if r["schedule"] == "cosine"
                                  and r["optimizer"] == "adam" and r["label_smoothing"]), "recipe")
full_pt = next(p for p in parts_pts if p.value == full_desc)
table(["recipe", "median val. accuracy", "seeds", "stopped at epoch (median)", "converged / budget / collapsed / "
       "diverged"], [[p.value, pct(p.median, 2), p.n, f"{statistics.median(o.stopped_epoch for o in p.outcomes):g}",
                      outcome_counts([p])] for p in parts_pts])
parts_claim = analysis.recipe_parts_claim(full_pt, [p for p in parts_pts if p is not full_pt], "recipe_parts")
say([parts_claim])

# %% [markdown]
# ### 3.1 Does the hidden layer help? Softmax regression against the sweeps' base MLP
#
# Section 5 varies one setting at a time around a smaller base, 784-64-10 (SGD with momentum, a constant rate), and
# measures every value against softmax regression trained with that base's recipe and stopping rule. Here the two
# side by side, at the base (the depth sweep of section 5.6 repeats this as its depth 0 against 1).

# %% tags=["hide-input"]
lin = analysis.by_setting(REC["linear"], "depth")[0]


def mlp_width(records):
    """The width of the one-hidden-layer MLPs among `records` (the study's base width)."""
    (width,) = {r["hidden"][0] for r in records if len(r["hidden"]) == 1}
    return width


mlp = next(p for p in POINTS["depth"] if p.value == 1)
say([Claim("linear_vs_mlp", {"width": mlp_width(REC["depth"]), "lin_val": lin.median, "mlp_val": mlp.median,
                             "gap": mlp.median - lin.median,
                             "p": analysis.welch_p(mlp.vals, lin.vals)})],
    after=" Softmax regression separates the classes by hyperplanes in pixel space, so digits that no hyperplane "
          "separates stay out of its reach; the hidden layer lets the MLP draw curved boundaries.")

# %% [markdown]
# <a id="s4"></a>
# ## 4. Why not initialize with zeros?
#
# With every weight equal (zero), every hidden unit computes the same function of the input, receives the same
# gradient and takes the same step: in exact arithmetic the units stay copies of each other forever, and the layer
# is worth one unit. With ReLU it is worse: the hidden activity is relu(0) = 0, so the gradients of both weight
# matrices vanish and only the output biases learn; the network predicts the same class for every image. Below, a
# 784-32-10 MLP with *sigmoid* units (which do pass gradients at zero) is trained from zero weights and from
# uniform(-0.01, 0.01) for 400 steps in float32, recording how far apart the hidden units' incoming weights are.
# Whether float rounding ever tells the copies apart depends on the matrix kernels of the machine: identical
# columns give identical results unless a kernel treats some columns differently (e.g. a vectorized main loop and
# a scalar remainder), and any difference that appears is then amplified by training.

# %% tags=["hide-input"]
from mlplab.losses import cross_entropy
from mlplab.mlp import forward as mlp_forward
from mlplab.mlp import init_mlp
from mlplab.optim import init_state, sgd_step

steps, spreads, accs = [], {}, {}
for label, scheme, scale in (("zeros", "zeros", 0.0), ("uniform(-0.01, 0.01)", "uniform", 0.01)):
    params = {k: v.requires_grad_() for k, v in init_mlp([784, 32, 10], scheme, [scale], [0]).items()}
    state = init_state(params, "sgd")
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    ys = []
    for step in range(1, 401):
        idx = order[(step * 128) % (len(X) - 128):][:128]
        loss = cross_entropy(mlp_forward(params, X[idx], "sigmoid"), Y[idx]).sum()
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        sgd_step(params, grads, state, lr=0.5)
        if step % 10 == 0:
            w0 = params["w0"].detach()[0]  # (784, 32): column j = unit j's incoming weights
            ys.append(float((w0 - w0[:, :1]).abs().max() / w0.abs().max().clamp_min(1e-30)))
            if label == "zeros":
                steps.append(step)
    spreads[label] = ys
    with torch.no_grad():  # what the network computes after its 400 steps: its validation accuracy
        accs[label] = float((mlp_forward(params, XV, "sigmoid")[0].argmax(-1) == YV).float().mean())
show(plots.unit_spread(steps, spreads, "Hidden units after a zero init vs a random init"), "zero_spread")
z = spreads["zeros"]
facts = {"n_checks": len(z), "last_step": steps[-1], "random_last": spreads["uniform(-0.01, 0.01)"][-1],
         "zero_acc": accs["zeros"], "random_acc": accs["uniform(-0.01, 0.01)"]}
first = next((i for i, v in enumerate(z) if v > 0), None)
zero_claims = [Claim("zero_exact", facts) if first is None else
               Claim("zero_rounding", {**facts, "first": z[first], "first_step": steps[first], "last": z[-1]})]
ip = {p.value: p for p in POINTS["init"]}
zp = ip["zeros"]
rb = analysis.best([p for p in POINTS["init"] if p.value != "zeros"])
zero_claims.append(Claim("zero_stored", {"zero_val": zp.median, "zero_outcomes": ", ".join(
    f"{n} {k}" for k, n in Counter(o.kind for o in zp.outcomes).items()), "random_val": rb.median,
    "random_name": rb.value}))
share = np.bincount(splits.val_y, minlength=10) / len(splits.val_y)  # each class's share of the validation set
one_class = [int(np.argmin(abs(share - v))) for v in zp.vals if np.min(abs(share - v)) < 0.5 / len(splits.val_y)]
one_class_claim = Claim("zero_one_class", {"n_one": len(one_class), "n": zp.n, "classes": ", ".join(
    f"{c} ({pct(share[c], 2)})" for c in one_class) or "none"})
all_collapsed = all(o.kind == "collapsed" for o in zp.outcomes)
say(zero_claims[:1], after=(
    " So this machine's float32 kernels treated the identical columns identically, and the sigmoid network computes "
    "what one hidden unit copied 32 times computes." if first is None else
    " Rounding broke the symmetry, by accident of the kernels: until the difference grows, the network computes what "
    "one hidden unit copied 32 times computes."))
say(zero_claims[1:] + [one_class_claim], lead="**The stored ReLU runs.** ",
    after=" Every stored zero-initialized ReLU run collapsed, as the mechanism above predicts: with zero hidden "
          "activity only the output biases learn." if all_collapsed else "")

# %% [markdown]
# <a id="s5"></a>
# ## 5. One hyperparameter at a time
#
# Each experiment varies one setting around the same base: 784-64-10, ReLU, He-uniform weights, SGD with momentum
# 0.9 at learning rate 0.05, batch 128, every model trained until the patience rule or its budget stopped it
# (section 1; how many of each, in every table). The width is a quarter of section 2's 256 so that the whole study
# fits its time budget; the learning-rate grids use this base too. The figures show validation error on a log axis
# (accuracies crowd near 100%), each seed marked by its outcome, the median over seeds as a line and the best value
# on validation circled; softmax regression is the dashed reference.

# %% tags=["hide-input"]
REFERENCE = {f"softmax regression ({pct(1 - lin.median, 2)} error)": lin.median}  # the plots' axes read error
CLAIM_NAMES = {"hidden": "width", "depth": "depth"}  # "the best width is 512 units", "the best depth is 1 hidden layer"
SWEEPS = {"hidden": ("hidden units", " units"), "activation": ("activation", ""), "init": ("init scheme", ""),
          "init_scale": ("init scale a", ""), "lr": ("learning rate", ""), "batch_size": ("batch size", " examples"),
          "depth": ("hidden layers", " hidden layers")}


def sweep_section(name, curve_values=None):
    label, unit = SWEEPS[name]
    pts = POINTS[name]
    show(plots.sweep(pts, label, f"{EXPS[name].title}: validation error", REFERENCE, unit), f"sweep_{name}")
    table([label, "median val. accuracy", "seeds", "converged / budget / collapsed / diverged",
           "median stop epoch"],
          [[fmt_value(p.value), pct(p.median, 2), p.n, outcome_counts([p]),
            f"{statistics.median(o.stopped_epoch for o in p.outcomes):g}"] for p in pts])
    if curve_values:
        runs = {f"{label} {fmt_value(p.value)}": {"history": p.records[0]["history"],
                                                    "best_epoch": p.outcomes[0].best_epoch,
                                                    "outcome": p.outcomes[0].kind}
                for p in pts if p.value in curve_values}
        show(plots.curves(runs, f"{EXPS[name].title}: seed 0 of a few values"), f"curves_{name}")
    claims = analysis.sweep_claims(pts, CLAIM_NAMES.get(name, label), unit, name)
    say(claims)
    return claims


# %% [markdown]
# ### 5.1 Hidden layer width
#
# One unit is a bottleneck: everything the network knows about an image has to pass through one number.

# %% tags=["hide-input"]
hp = POINTS["hidden"]
width_claims = sweep_section("hidden", [p.value for p in hp[:: max(1, len(hp) // 4)]])
if len(hp) >= 2:
    say([analysis.narrowest_claim(hp, lin.median, "softmax regression", " units", "hidden")],
        lead="**The narrow end.** ")

# %% [markdown]
# What can one or two hidden numbers do? Each validation image goes through the seed-0 network of 1 unit (and of 2
# units in the full study) to its hidden value(s); the output layer then picks a digit from those alone.

# %% tags=["hide-input"]
narrow_cfgs = study.narrow_trials(EXPS)
narrow_got = [networks([c]) for c in narrow_cfgs]  # one shape each: they train apart if not stored
narrow_models, narrow_claims = [], []
for c, ((w,), stored) in zip(narrow_cfgs, narrow_got):
    w = {k: v.float() for k, v in w.items()}  # evaluated in float32: the output layer is exactly linear in h
    with torch.no_grad():
        codes = mlplab.mlp.hidden_features(w, XV, c.activation)[0]  # (N, H)
        pred = (codes @ w["w1"][0] + w["b1"][0]).argmax(-1)  # (N,)
    rec = next(r for r in RECORDS if r["key"] == trial_key(c))
    narrow_claims.append(analysis.bottleneck_claim(trial_key(c), c.seed, codes.tolist(), pred.tolist(), YV.tolist(),
                                                   stored, analysis.val_accuracy(rec), c.precision))
    narrow_models.append({"codes": codes.numpy(), "y": YV.numpy(), "pred": pred.numpy(), "w": w["w1"][0].numpy(),
                          "b": w["b1"][0].numpy(),
                          "label": f"{c.hidden[0]} hidden unit{'s' if c.hidden[0] > 1 else ''}: "
                                   f"{pct(narrow_claims[-1].facts['acc'], 1)} on validation"})
if narrow_models:
    show(plots.bottleneck(narrow_models, "What one or two hidden numbers separate (validation images, seed 0)"),
         "narrow_codes")
    say(narrow_claims, lead="**One or two numbers.** ")

# %% [markdown]
# ### 5.2 Activation function
#
# The identity "activation" makes the whole MLP one linear map again; sigmoid's gradient is at most 1/4 and its
# output is not centred on zero, both of which slow learning down.

# %% tags=["hide-input"]
act_claims = sweep_section("activation", ["relu", "tanh", "sigmoid", "identity"])
expected = analysis.activations_claim(POINTS["activation"], lin, "activation")
if expected is not None:
    say([expected], lead="**Checked against those expectations.** ")

# %% [markdown]
# ### 5.3 Initialization: scheme and scale
#
# What to expect: in a deep network too small a scale shrinks the signal layer by layer, and with it the gradients of
# every layer at once (section 10.1 measures both at initialization of an 8-layer network); too large a scale starts
# with large logits, far from where training ends. With one hidden layer, as here, there is only one layer to shrink
# through: the sweep below says what actually happened, within its epoch budget. In the full study the scale sweep
# also reaches far down (to 1e-12): a random init that small is still random, so it breaks the symmetry between
# units that an exact zero (section 4) cannot; whether the tiny scale itself does harm is what those values test.

# %% tags=["hide-input"]
init_claims = sweep_section("init")

# %% tags=["hide-input"]
scale_claims = sweep_section("init_scale")
tiny = analysis.tiny_pooled_claim(POINTS["init_scale"], study.TINY_SCALES, "init_scale")
if tiny is not None:
    say([tiny], lead="**The tiny scales, pooled (exploratory).** ")

# %% [markdown]
# ### 5.4 Learning rate
#
# Three values per decade. Below the optimum, training is slow and may run out of budget; above it, the updates
# overshoot. Section 6 looks at how the runs at the high end fail.

# %% tags=["hide-input"]
lp = POINTS["lr"]
lr_claims = sweep_section("lr", [lp[0].value, analysis.best(lp).value, lp[-1].value, lp[len(lp) // 4].value])

# %% [markdown]
# ### 5.5 Batch size
#
# At a fixed learning rate and epoch budget, a large batch takes few steps per epoch (50,000 / batch size). The
# sweep runs at the base learning rate, 0.05; whether its verdicts hold once each batch size gets its own rate is
# checked against the batch size x learning rate grid of section 7.

# %% tags=["hide-input"]
bs_claims = sweep_section("batch_size")
rows_b, cols_b, cells_b = analysis.grid(REC["batch_x_lr"], "batch_size", "lr")
retuned_bs = analysis.retuned_claims(rows_b, cells_b, analysis.best(POINTS["batch_size"]).value, "a batch of",
                                    " examples", "batch_x_lr")


def lattice_said(cols):
    """What 're-tuned' means here: the best of the grid's few rates, which need not include the sweeps' own."""
    missing = "" if study.BASE["lr"] in cols else (
        f"; they leave out the sweeps' rate {fmt_value(study.BASE['lr'])}, so a setting's re-tuned median can lie "
        "below its median in the sweep")
    return (f"each setting's own best rate is the best of the grid's {len(cols)} rates, "
            f"{', '.join(fmt_value(c) for c in cols)}{missing}")


if retuned_bs:
    say(retuned_bs, lead=f"**With the rate re-tuned** (the grid of section 7: {lattice_said(cols_b)}). ")

# %% [markdown]
# ### 5.6 Depth, at the base learning rate and with the rate re-tuned
#
# Hidden layers of 64 units (depth 0 is softmax regression, here with this sweep's 3 seeds; section 3's figure for it
# is the median of 5). A fixed learning rate may suit one depth and not
# another, so the second figure re-tunes it: for each depth, the best rate on validation from a grid.

# %% tags=["hide-input"]
depth_claims = sweep_section("depth")
rows_d, cols_d, cells_d = analysis.grid(REC["depth_x_lr"], "depth", "lr")
show(plots.heatmap(rows_d, cols_d, cells_d, "hidden layers", "learning rate", "Depth x learning rate"),
     "grid_depth_lr")
retuned = [analysis.best(r) for r in cells_d]
table(["hidden layers", "best learning rate", "median val. accuracy", "seeds"],
      [[fmt_value(rows_d[i]), fmt_value(b.value[1]), pct(b.median, 2), b.n] for i, b in enumerate(retuned)])
retuned_pts = [analysis.Point(b.value[0], b.records) for b in retuned]
depth_grid = analysis.grid_claims(rows_d, cols_d, cells_d, "depth", "depth_x_lr")
say(depth_grid + analysis.sweep_claims(retuned_pts, "depth with the rate re-tuned per depth", " hidden layers",
                                       "depth_retuned")[:1],
    after=f" Re-tuned here means that {lattice_said(cols_d)}.")

# %% [markdown]
# <a id="s6"></a>
# ## 6. Failure modes
#
# Three different ways a run can fail, told apart by the rule of section 1: it **diverges** (the loss overflows
# to infinity or NaN), it **collapses** (a finite loss, but validation accuracy below twice chance, 20%), or it is
# **still learning** when the budget runs out. A ReLU network collapses when a large update pushes every hidden unit's
# pre-activation below zero for every image: a dead unit outputs 0 and gets zero gradient, so it never recovers.
# To measure that, the fraction of hidden units that output 0 on all of 2,000 training images is counted in the
# learning-rate sweep's seed-0 models, with the weights the store kept for them (their reported epoch's).

# %% tags=["hide-input"]
def outcome_row(recs):  # a run without early stopping (patience 0) trains to a fixed budget by design
    outs = [analysis.outcome(r) for r in recs]
    counts = [sum(o.kind == k for o in outs) for k in analysis.OUTCOMES]
    fixed = recs and not any(r["patience"] for r in recs)
    little = sum(analysis.learned_little(r, o) for r, o in zip(recs, outs))
    return (counts[:1] + [f"{counts[1]} (fixed budget, no early stopping)" if fixed else counts[1]] + counts[2:]
            + [little or ""])


table(["experiment", "runs", "converged", "not converged in budget", "collapsed", "diverged",
       "of the first two: never half right"], [[e.title, len(REC[n])] + outcome_row(REC[n]) for n, e in EXPS.items()])

# %% tags=["hide-input"]
if not lr_stored:  # lr_cfgs and lr_params: the learning-rate sweep's seed-0 models, loaded in section 2
    print("This store kept no weights for these models (an older mlplab wrote it): they were trained again here.")
by_key = {r["key"]: r for r in REC["lr"]}
xs = torch.from_numpy(splits.train_x[:2000]).float() / 255
dead, kinds = [], []
for c, w in zip(lr_cfgs, lr_params):
    with torch.no_grad():
        h = torch.relu(xs @ w["w0"][0].float() + w["b0"][0].float())  # (2000, H)
    dead.append(float((h.max(0).values <= 0).float().mean()))
    kinds.append(analysis.outcome(by_key[trial_key(c)]).kind)
show(plots.dead_units([c.lr for c in lr_cfgs], dead, kinds,
                     "Dead ReLU units after training, by learning rate (seed 0 of each)"), "dead_units")
ok = [(d, c) for d, c, k in zip(dead, lr_cfgs, kinds) if k in ("converged", "budget")]
col = [(c.lr, d) for c, d, k in zip(lr_cfgs, dead, kinds) if k == "collapsed"]
most, most_cfg = max(ok, key=lambda x: x[0], default=(0.0, lr_cfgs[0]))
ladder = [(c.lr, d) for c, d in sorted(zip(lr_cfgs, dead), key=lambda x: x[0].lr) if d >= 0.01]  # rates with dead units
say([Claim("dead_units", {"ok_dead": most, "ok_dead_lr": most_cfg.lr,
                          "ok_dead_val": analysis.val_accuracy(by_key[trial_key(most_cfg)]),
                          "ladder": ", ".join(f"{fmt_value(lr)}: {pct(d, 1)}" for lr, d in ladder),
                          "n_collapsed": len(col), "collapsed_lrs": ", ".join(fmt_value(lr) for lr, _ in col),
                          "col_min": min(d for _, d in col), "col_max": max(d for _, d in col),
                          "col_range": " to ".join(dict.fromkeys(pct(f(d for _, d in col), 1) for f in (min, max)))})
     if col else Claim("dead_units_none", {"ok_dead": max(dead)})])
ex = {}
for p in POINTS["lr"]:
    for rec, o in zip(p.records, p.outcomes):
        kind = "converged, then broke down" if analysis.broke_down(rec, o) else o.kind  # section 5.4's rule
        ex.setdefault(kind, (f"lr {fmt_value(p.value)}" + (": converged" if kind == "converged" else ""), rec, kind))
title = "One run of each outcome in the learning-rate sweep"
if "diverged" not in ex:  # none diverged there: show the deepest, fastest one of section 7's depth grid
    div = [r for r in REC.get("depth_x_lr", []) if r["status"] == "diverged" and r.get("history")]
    if div:
        r = max(div, key=lambda r: (len(r["hidden"]), r["lr"], -r["seed"]))
        ex["diverged"] = (f"{len(r['hidden'])} hidden layers, lr {fmt_value(r['lr'])} (section 7)", r,
                          f"diverged in epoch {len(r['history'])}, weights frozen at the last finite step")
        title += ", and a diverged one from section 7's depth grid"
show(plots.curves({lab: {"history": rec["history"], "best_epoch": analysis.outcome(rec).best_epoch, "outcome": kind}
                   for lab, rec, kind in ex.values()}, title), "outcome_curves")

# %% [markdown]
# <a id="s7"></a>
# ## 7. Interactions
#
# A good learning rate for one initialization, width or batch size need not be good for another. Each grid is
# fully crossed; a cell shows the median validation accuracy over its seeds ("div." when most seeds diverged) and,
# below it, how many seeds stopped on their budget (b), collapsed (c) or diverged (d), or converged but broke down
# afterwards (x: lost more than 10 points of validation accuracy after their reported epoch, as in section 5.4). The
# colour is the median validation error on a log scale fitted to the grid's range; the dashed box is the best cell on
# validation. "Tied" is the Welch test of section 1, with one more rule in the grids: a cell most of whose seeds failed
# (its median run collapsed or diverged) is never tied with a cell whose median run trained, since seeds split
# between chance and a trained model spread so widely that Welch would tie them with anything.
#
# The learning rate x init scale grid runs twice: with one hidden layer, and with four, where a small init scale's
# signal shrinks from layer to layer (section 10.1), so the scale has more to say about which rate can train.
#
# What to look for: where the best learning rate moves with the other setting, tuning one at a time would miss the
# best combination. For the batch size the usual rule of thumb (not a finding of this study) is that the best rate
# grows with the batch, since a larger batch averages out more of the gradient noise and can take larger steps. With
# a budget in epochs a larger batch also takes fewer steps, so where a row's runs stopped on their budget (b), a
# larger rate partly makes up for the missing steps: a shift there is not only the noise argument.

# %% tags=["hide-input"]
GRIDS = {"lr_x_init_scale": ("init_scale", "init scale a (uniform)", "init scale"),  # (row, axis label, in text)
         "lr_x_init_scale_deep": ("init_scale", f"init scale a (uniform), {study.DEEP_LAYERS} hidden layers",
                                  "init scale"),
         "lr_x_hidden": ("hidden", "hidden units", "width"), "batch_x_lr": ("batch_size", "batch size", "batch size")}
IN_SUMMARY = {"lr_x_init_scale_deep": f"init scale at depth {study.DEEP_LAYERS}"}  # where the row name repeats
grid_claims = {}
for name, (row, row_label, row_name) in GRIDS.items():
    rws, cls, cs = analysis.grid(REC[name], row, "lr")
    show(plots.heatmap(rws, cls, cs, row_label, "learning rate", EXPS[name].title), f"grid_{name}")
    grid_claims[name] = analysis.grid_claims(rws, cls, cs, row_name, name)
    say(grid_claims[name], lead=f"**{EXPS[name].title}.** ")

# %% [markdown]
# <a id="s8"></a>
# ## 8. Randomness
#
# ### 8.1 Initialization seed vs data order
#
# One configuration trained with every pair of an initialization seed and a data-order (shuffling) seed. A two-way
# analysis of variance splits the spread of validation accuracy into the part explained by the init seed (rows),
# by the data order (columns), and the rest (their interaction, which with one run per cell is the residual).

# %% tags=["hide-input"]
rows3, cols3, cells3 = analysis.grid(REC["seeds"], "seed", "data_seed")
anova = analysis.anova_claim(REC["seeds"], "seeds")
effect = min(anova.facts["p_rows"], anova.facts["p_cols"]) < analysis.ALPHA  # said in the title
show(plots.heatmap(rows3, cols3, cells3, "initialization seed", "data-order seed",
                   "Validation accuracy for each pair of seeds\n"
                   f"the colours span {100 * (anova.facts['max'] - anova.facts['min']):.2f} points; "
                   + ("an effect is detected (ANOVA below)" if effect else "no effect is detected (ANOVA below)"),
                   box_best=False,  # a best pair of seeds is luck: the ANOVA below tests rows and columns
                   what="validation error (%), one run per cell", numbers="validation accuracy (%)"), "grid_seeds")
say([anova])
# The sweeps' verdicts rest on each setting's few seeds; this SD gives a second, shared noise estimate to test against
say([analysis.noise_model_claim({label: POINTS[n] for n, (label, _) in SWEEPS.items()},
                                anova.facts["sd_points"] / 100, anova.facts["n_runs"], "seeds")],
    lead="**How much the verdicts rest on the noise estimate.** ")

# %% [markdown]
# ### 8.2 Nondeterminism on the CPU
#
# On a GPU, parallel reductions with atomic additions make runs differ from one execution to the next. On a CPU
# the kernels are deterministic for a fixed setup, but the number of threads decides how sums are split, and
# float addition is not associative. Below, the same small model (784-64-10, one epoch on 5,000 images, float32) is
# trained twice with one thread and once with two, and the weights are compared bit for bit.

# %% tags=["hide-input"]
from mlplab import TrainConfig
from mlplab.data import Splits

small = Splits("mnist-5k", splits.train_x[:5000], splits.train_y[:5000], splits.val_x[:1000],
               splits.val_y[:1000], splits.test_x[:1000], splits.test_y[:1000])
tiny = TrainConfig(hidden=(64,), init="kaiming_uniform", lr=0.05, momentum=0.9, epochs=1, val_size=1000)
saved_threads = torch.get_num_threads()
runs = {}
try:
    for key, n in (("a1", 1), ("a2", 1), ("b", 2)):
        torch.set_num_threads(n)
        runs[key] = mlplab.train(tiny, splits=small, device="cpu", progress=False).params
finally:
    torch.set_num_threads(saved_threads)
same = all(torch.equal(runs["a1"][k], runs["a2"][k]) for k in runs["a1"])
n_diff = sum(int((runs["a1"][k] != runs["b"][k]).sum()) for k in runs["a1"])
max_diff = max(float((runs["a1"][k] - runs["b"][k]).abs().max()) for k in runs["a1"])
say([Claim("threads", {"t_a": 1, "t_b": 2, "repeat": "bit-identical" if same else "NOT bit-identical",
                       "n_diff": n_diff, "n_total": sum(v.numel() for v in runs["a1"].values()),
                       "max_diff": max_diff})],
    after=(" So the effect described above did not show here: with this model's sizes, this machine's kernels "
           "computed the same bits with one thread and with two. It can happen, not must: whether a sum is split "
           "between threads depends on the sizes, the kernels and the CPU." if n_diff == 0 else "")
    + (" This study ran on a GPU, where atomic additions add a run-to-run component on top; "
       "`mlplab study --deterministic` removes it at some cost in speed." if DEVICE.startswith("cuda") else
       " No GPU was used for this study, so the GPU's run-to-run nondeterminism was not measured."))

# %% [markdown]
# <a id="s9"></a>
# ## 9. Grid, random search and successive halving at equal compute
#
# Sections 5 and 7 searched by brute force: every value, or every cell of a grid, trained with several seeds until
# early stopping or the budget ended it. Here three ways of searching one space are compared at the same compute,
# each run through `mlplab tune` (Optuna) on a narrow MLP (784-32-10, ReLU, He-uniform weights, SGD, batch 128)
# trained for a fixed few epochs, with one seed per trial and fixed sampler seeds. The space is the learning rate
# (log scale) x momentum:
#
# - **Grid**: a lattice of the box, every point trained once, in a seeded random order.
# - **Random search**: settings drawn from the same box (the learning rate log-uniformly, momentum uniformly). When
#   only some dimensions matter, random search tries more distinct values of them than a grid of the same size
#   (Bergstra & Bengio, 2012).
# - **Successive halving**: random settings too, but many more of them, each trained for one epoch; after epochs 1,
#   2, 4, ... only the best half on validation train on (synchronously: the whole round trains as one population and
#   the others leave it; Jamieson & Talwalkar, 2016). It spends its compute on the settings that look good early.
#
# **Equal compute** is counted in model-epochs (one model trained for one epoch). Every method trains in the same number
# of rounds, each with the same budget: a grid round trains its trials for every epoch, a random-search round as many
# trials, and a halving round starts the most trials whose schedule fits the same budget (`tune.halving_trials`). A
# model that diverges stops early and spends less. Each method is judged by the best **validation** accuracy it found (a
# trial's value: its accuracy after the last epoch); the test accuracy of each method's best trial is read once, for the
# table, and never used to choose. This is one run of each search (one sampler seed, one training seed per trial): a gap
# between methods is compared with the noise of a single run, measured on several seeds of one setting of the same
# model, which assumes that the best settings are as noisy as that one. The best of many noisy trials is also biased
# upward, the more so the more settings a method tries; how much the ranking itself would change with other seeds is
# not measured here.

# %% tags=["hide-input"]
SEARCHES = study.searches(QUICK)
S_TRIALS = {m: study.search_trials(s.storage, s.name) for m, s in SEARCHES.items()}
S_SUM = {m: analysis.search_summary(S_TRIALS[m]) for m in SEARCHES}
s0, halving = SEARCHES["grid"], SEARCHES["halving"].spec["tune"]
lattice = s0.spec["search"]
display(Markdown(
    f"Here: a {' x '.join(str(len(v['choice'])) for v in lattice.values())} grid (learning rates "
    f"{', '.join(fmt_value(v) for v in lattice['lr']['choice'])}; momentum "
    f"{', '.join(fmt_value(v) for v in lattice['momentum']['choice'])}), {s0.spec['tune']['max_epochs']} epochs per "
    f"trial, {s0.rounds} rounds of {s0.round_epochs} model-epochs per method; a halving round starts "
    f"{halving['per_round']} trials and keeps the best 1/{halving['eta']} at each rung. Seconds are each "
    "population's training wall time (including evaluation), summed. They are not a measure of the methods: they "
    "depend on how many populations a method's trials were grouped into (a population of many models costs less "
    "per model than several small ones), and on whatever else the machine was doing. The methods are compared at "
    "equal model-epochs."))


def setting_text(params):
    return ", ".join(f"{'learning rate' if k == 'lr' else k} {fmt_value(v)}" for k, v in sorted(params.items()))


table(["method", "trials (complete / pruned / failed)", "model-epochs", "seconds (populations)", "best val. accuracy",
       "its test accuracy", "best setting"],
      [[s.title, f"{v['trials']} ({v['complete']} / {v['pruned']} / {v['failed']})", v["model_epochs"],
        f"{v['seconds']:.0f} ({v['populations']})", pct(v["best_val"], 2), pct(v["best_test"], 2),
        setting_text(v["best_params"])]
       for s, v in ((SEARCHES[m], S_SUM[m]) for m in SEARCHES)])
noise_recs = REC["search_noise"]
noise_vals = [analysis.val_accuracy(r) for r in noise_recs]
show(plots.search_progress({s.title: analysis.search_curve(S_TRIALS[m]) for m, s in SEARCHES.items()}, s0.budget,
                           "Best validation accuracy so far (as error), at equal compute",
                           statistics.stdev(noise_vals) if len(noise_vals) > 1 else None), "search_progress")
search_said = analysis.search_claims(
    S_SUM, {m: s.title for m, s in SEARCHES.items()}, s0.rounds, s0.round_epochs,
    noise_vals, study.SEARCH_NOISE,
    analysis.shared_settings(S_TRIALS["random"], S_TRIALS["halving"]))
say(search_said)

# %% [markdown]
# <a id="s10"></a>
# ## 10. Inside the networks
#
# ### 10.1 Signal and gradient through depth, at initialization
#
# For an 8-hidden-layer ReLU network of width 128, the standard deviation of each layer's activations and of the
# gradient of the loss with respect to each layer's weights, on 512 training images, before any training. He
# initialization (gain 1) is designed to keep the activations' scale constant through ReLU layers; a smaller gain
# makes the signal vanish geometrically with depth, a larger one makes it explode.

# %% tags=["hide-input"]
xb, yb = X[:512], Y[:512]
act_std, grad_std = {}, {}
INITS_AT_DEPTH = (("He uniform, gain 0.5", "kaiming_uniform", 0.5), ("He uniform, gain 1", "kaiming_uniform", 1.0),
                  ("He uniform, gain 2", "kaiming_uniform", 2.0), ("uniform(-0.01, 0.01)", "uniform", 0.01),
                  ("Glorot uniform", "xavier_uniform", 1.0))
for label, scheme, scale in INITS_AT_DEPTH:
    params = {k: v.requires_grad_() for k, v in init_mlp([784] + [128] * 8 + [10], scheme, [scale], [0]).items()}
    h, acts = xb, []
    for i in range(8):
        h = torch.relu(h @ params[f"w{i}"][0] + params[f"b{i}"][0])
        acts.append(h)
    logits = h @ params["w8"][0] + params["b8"][0]
    loss = -(logits.log_softmax(1)[torch.arange(len(yb)), yb]).mean()
    grads = torch.autograd.grad(loss, [params[f"w{i}"] for i in range(8)])
    act_std[label] = [float(a.detach().std()) for a in acts]
    grad_std[label] = [float(g.std()) for g in grads]
show(plots.layer_stats(act_std, "std of activations (log)", "Activations through 8 ReLU layers at init"),
     "layer_activations")
show(plots.layer_stats(grad_std, "std of weight gradient (log)", "Weight gradients through 8 ReLU layers at init"),
     "layer_gradients")
ratio = {k: v[-1] / v[0] for k, v in act_std.items()}
table(["init", "activation std, layer 1", "layer 8", "ratio 8/1", "gradient std, layer 1", "layer 8"],
      [[k, f"{act_std[k][0]:.2e}", f"{act_std[k][-1]:.2e}", f"{ratio[k]:.2e}", f"{grad_std[k][0]:.2e}",
        f"{grad_std[k][-1]:.2e}"] for k in act_std])
say([analysis.depth_signal_claim(act_std, grad_std, course="uniform(-0.01, 0.01)")])

# %% [markdown]
# ### 10.2 Which test images are hard for every seed?
#
# The chosen recipe's seeds (section 3), with the weights the store kept for them, have their mistakes on the test
# set compared: are the same images misclassified by every seed? For a few that every seed gets wrong, the three
# nearest training images (Euclidean distance in pixel space) are shown with their labels.

# %% tags=["hide-input"]
recipe_keys = {r["key"] for r in chosen_recipe.records}
recipe_cfgs = [t for t in EXPS["recipe"].trials() if trial_key(t) in recipe_keys]
recipe_params, recipe_stored = networks(recipe_cfgs)
with torch.no_grad():  # in the precision the study evaluated them in
    preds = []
    for c, w in zip(recipe_cfgs, recipe_params):
        with arithmetic(torch.device("cpu"), c.precision):
            preds.append(mlp_forward({k: v.float() for k, v in w.items()}, TX, c.activation)[0].float().argmax(-1))
    preds = torch.stack(preds)  # (S, 10000)
wrong = preds != TY  # (S, N)
n_all, n_any = int(wrong.all(0).sum()), int(wrong.any(0).sum())
err = wrong.float().mean(1)
per_seed = wrong.sum(1).tolist()  # (S,) each seed's errors
say([Claim("misclassified", {"n_test": len(TY), "n_any": n_any, "n_all": n_all, "n_seeds": len(recipe_cfgs),
                             "n_expected": float(len(TY) * err.prod()), "keys": [trial_key(c) for c in recipe_cfgs],
                             "err_min": min(per_seed), "err_max": max(per_seed),
                             "share_lo": n_all / max(per_seed), "share_hi": n_all / max(1, min(per_seed))})],
    after=" More images are wrong for every seed than independent errors would give: for this recipe a core of "
          "images is hard whatever the seed, while the rest of each seed's errors change with it (each seed sets both "
          "the initialization and the data order). Independence is a weak baseline, though: it treats every image "
          "as equally hard, which no one expects; a different model's mistakes, next, are the stronger comparison."
    if n_all > 2 * float(len(TY) * err.prod())
    else "")
lin_cfg = study.linear_trial(EXPS)
(lin_w,), lin_stored = networks([lin_cfg])
with torch.no_grad(), arithmetic(torch.device("cpu"), lin_cfg.precision):
    lin_logits = mlp_forward({k: v.float() for k, v in lin_w.items()}, TX, lin_cfg.activation)[0]  # (N, 10)
    lin_wrong = lin_logits.float().argmax(-1) != TY
say([analysis.shared_mistakes_claim(int(lin_wrong.sum()), int((lin_wrong & wrong.all(0)).sum()), n_all, len(TY),
                                    trial_key(lin_cfg), lin_stored, [trial_key(c) for c in recipe_cfgs])], lead="")
all_hard = torch.nonzero(wrong.all(0)).flatten()
hard = all_hard[:6].numpy()
train_f = torch.from_numpy(splits.train_x).float()
train_lab = torch.from_numpy(splits.train_y.astype(np.int64))


def nearest_labels(idx):  # the label of each test image's nearest training image (Euclidean, 0-255 pixels)
    q = torch.from_numpy(splits.test_x[idx]).float()
    return train_lab[torch.cat([torch.cdist(q[k:k + 100], train_f).argmin(1) for k in range(0, len(q), 100)])]


def vote_of(i):  # the digit most seeds predicted for test image i (a tie: the first seed's among them), and how many
    return Counter(int(p) for p in preds[:, i]).most_common(1)[0]


imgs, caps = [], []
for i in hard:
    q = torch.from_numpy(splits.test_x[i]).float()
    d = ((train_f - q) ** 2).sum(1).sqrt()
    nn_idx = d.argsort()[:3].numpy()
    imgs.append(splits.test_x[i])
    top_vote, n_vote = vote_of(i)
    caps.append(f"test: true {int(TY[i])}\nvote {top_vote} ({n_vote}/{len(recipe_cfgs)})")
    for j in nn_idx:
        imgs.append(splits.train_x[j])
        caps.append(f"train: {int(splits.train_y[j])}\nd={float(d[j]):.0f}")
if len(imgs):
    show(plots.image_grid(np.array(imgs), caps, "Misclassified by every seed (left column;\nvote: the digit most "
                          "seeds predicted, and by how many),\nits three nearest training images (rest of the row;\n"
                          "d: Euclidean distance over the 784 pixel values, 0-255)",
                          cols=4), "hard_neighbours")
    nn_hard = nearest_labels(all_hard.numpy()).tolist()
    votes_hard = [vote_of(int(i))[0] for i in all_hard]
    true_hard = TY[all_hard].tolist()
    base_idx = torch.randperm(len(TY), generator=torch.Generator().manual_seed(0))[:500].numpy()  # random test images
    k = len(hard)
    say([analysis.neighbours_claim(
        sum(map(int.__eq__, nn_hard, true_hard)), sum(map(int.__eq__, nn_hard, votes_hard)), len(all_hard),
        int((nearest_labels(base_idx) == TY[base_idx]).sum()), len(base_idx),
        sum(map(int.__eq__, nn_hard[:k], true_hard[:k])), sum(map(int.__eq__, nn_hard[:k], votes_hard[:k])), k,
        [trial_key(c) for c in recipe_cfgs])])
cm = np.zeros((10, 10), dtype=int)
np.add.at(cm, (TY.numpy(), preds[0].numpy()), 1)
show(plots.confusion(cm, "Confusion matrix of seed 0 (test set)"), "confusion")
off = [(int(cm[i, j]), i, j) for i in range(10) for j in range(10) if i != j]  # (count, true, predicted)
top = sorted(off, key=lambda x: (-x[0], x[1], x[2]))[:3]  # the most frequent; ties: by true, then predicted digit
say([Claim("confusions", {"key": trial_key(recipe_cfgs[0]), "seed": recipe_cfgs[0].seed,
                          "pairs": [[i, j, n] for n, i, j in top], "n_top": sum(n for n, _, _ in top),
                          "n_errors": int(cm.sum() - np.trace(cm)),
                          "listed": ", ".join(f"a {i} read as {j} ({n})" for n, i, j in top)})])
stored_test = {r["key"]: r["test_accuracy"] for r in chosen_recipe.records}
gap = max(abs(float((p == TY).float().mean()) - stored_test[trial_key(c)]) for c, p in zip(recipe_cfgs, preds))
display(Markdown(
    f"These are the stored models themselves: their test accuracies here differ from the stored ones by at most "
    f"{100 * gap:.2f} points." if recipe_stored else
    f"This store kept no weights for these models (an older mlplab wrote it), so they were trained again here; "
    f"their test accuracies differ from the stored ones by at most {100 * gap:.2f} points (the stored runs may "
    "have trained in a different population and with a different thread count; section 8.2 shows that such "
    "changes alter the bits, and training can amplify them)."))

# %% [markdown]
# <a id="s11"></a>
# ## 11. What the study cost
#
# Before training, `mlplab study` prints its plan: model-epochs at the budget, matmul FLOPs (`mlplab.cost`) and a
# predicted time from an assumed throughput and per-step overhead. Below, per experiment, what that plan predicted
# against what was trained: model-epochs actually run (early stopping ends most models before their budget) and
# seconds of training (each trial's share of its population's wall time). Trials shared by several experiments are
# counted in each of them, in every column, so the columns add up to more than the totals below, which count each
# trial once. The three searches of section 9 are not in this table (they live in their own Optuna storages);
# their model-epochs and seconds are in section 9's table.

# %% tags=["hide-input"]
all_t = study.all_trials(EXPS)
by_key = {r["key"]: r for r in RECORDS}
rows_c, names, trained, budgets, secs, predicted = [], [], [], [], [], []
for n, e in EXPS.items():
    recs = REC[n]
    est = cost.shares(all_t, e.trials())
    me = sum(len(r["history"]) for r in recs)
    sec = sum((r["seconds"] or 0) / (r["population"] or 1) for r in recs)
    names.append(e.title.split(" (")[0]), trained.append(me), budgets.append(est.model_epochs), secs.append(sec)
    predicted.append(est.seconds)
    rows_c.append([e.title, e.precision, len(recs), me, est.model_epochs, f"{est.flops / 1e12:.1f}",
                   f"{est.seconds:.0f}", f"{sec:.0f}"])
table(["experiment", "precision", "trials", "model-epochs trained", "at the budget", "TFLOP at the budget",
       "predicted s (budget)", "stored s"], rows_c)
show(plots.compute_bars(names, trained, budgets, secs, "Compute per experiment", predicted), "compute")
total = cost.estimate(all_t)
mine = [by_key[k] for k in {trial_key(t) for t in all_t} if k in by_key]
div = [r for r in mine if r["status"] == "diverged"]  # they stop where they diverge: not early stopping's saving
div_saved = sum(r["epochs"] - len(r["history"]) for r in div)
say([Claim("compute", {"model_epochs": sum(len(r["history"]) for r in mine), "budget_epochs": total.model_epochs,
                       "share": sum(len(r["history"]) for r in mine) / total.model_epochs, "n_div": len(div),
                       "div_saved": div_saved,
                       "div_said": (f", apart from {div_saved:,} model-epochs that the {len(div)} diverged "
                                    f"run{'s' if len(div) != 1 else ''} did not train (a run stops where it diverges)")
                       if div else "",
                       "seconds": sum((r["seconds"] or 0) / (r["population"] or 1) for r in mine),
                       "predicted": total.seconds})],
    lead="", after=" Stored seconds are wall time on whatever else the machine was doing meanwhile; they are not a "
                   "benchmark.")

# %% [markdown]
# <a id="s12"></a>
# ## 12. Summary

# %% tags=["hide-input"]
sweep_pts = {EXPS[n].title: POINTS[n] for n in SWEEPS}
CONTROLS = {"init": ["zeros"], "activation": ["identity"], "depth": [0]}  # kept to show a failure or a baseline
ranking = analysis.ranking_claim(sweep_pts, {EXPS[n].title: [p.value for p in POINTS[n] if p.value in vs]
                                             for n, vs in CONTROLS.items()}, lin.median, "softmax regression")
rows_s = []
for n in SWEEPS:
    pts = POINTS[n]
    b = analysis.best(pts)
    s, measurable = analysis.spread(pts)
    edge = any(c.kind.startswith("sweep_edge") for c in analysis.sweep_claims(pts, n))
    rows_s.append([EXPS[n].title, fmt_value(b.value) + (" (edge)" if edge else ""), pct(b.median, 2),
                   f"{100 * s:.1f}" + ("" if measurable else " (within noise)"), outcome_counts(pts)])
table(["sweep", "best on validation", "its median val. accuracy", "spread of medians (points)",
       "converged / budget / collapsed / diverged"], rows_s)
say([analysis.recipe_claim(RP, "recipe", short=True), ranking], lead="**Summary.**", bullets=True)
trends = {IN_SUMMARY.get(n, GRIDS[n][2]): next(c for c in grid_claims[n] if c.kind == "grid_trend") for n in GRIDS}
trends["depth"] = next(c for c in depth_grid if c.kind == "grid_trend")
say([analysis.findings_claim(trends, anova, zero_claims[1], one_class_claim, search_said, parts_claim)],
    lead="**Beyond the ranking.**", bullets=True)

# %% [markdown]
# <a id="s13"></a>
# ## 13. Reflection on the low-level interface
#
# Writing the MLP from plain tensors shows what a framework takes off one's hands:
#
# - **Parameter bookkeeping.** The thirty-line model keeps its weights in a list whose order every function must
#   agree on, and each hidden size must be written twice and kept consistent (256 as the output of one `init` and
#   the input of the next). A module object that owns its parameters, knows its shapes and lists them removes that
#   duplication; this is the first thing to wrap.
# - **Initialization** needs each layer's fan-in and fan-out, which the layer already knows; passing them by hand is
#   redundant information the caller can get wrong.
# - **The update loop** must be told about every parameter, and momentum or Adam state has to live in structures
#   that mirror the parameters. An optimizer object bound to the parameters, with learning-rate schedules beside it,
#   is the natural wrapper.
# - **Batching, evaluation and early stopping** (shuffling, slicing, evaluating without gradients, keeping the
#   best weights) are the same in every project and belong in a library.
# - **What is missing from the low-level style**: a plain way to train many models at once. This study trains
#   hundreds of models as populations stacked along a model axis. PyTorch can do this (`torch.func`'s
#   `stack_module_state` with `vmap` and `functional_call`), but only by leaving the layer objects behind for a
#   functional form, and stopping one model early is left to the user; mlplab's population is that form, written out.
#
# What the low-level form gives in return: every shape and every operation is visible, which made it
# straightforward to stack a whole sweep into one batched computation.

# %% [markdown]
# <a id="s14"></a>
# ## 14. Appendix: mlplab's model code
#
# The functions that trained every stored model (from mlplab's source): initialization, the forward pass with a
# leading model axis M (`forward` applies `linear` to the first layer and `_rest` to the others), the activation
# functions, log-softmax and cross-entropy, and the SGD and Adam steps (each dispatches to its `_all` form, which
# updates every tensor at once, when no model is frozen); then the training loop that drives them: the loop over
# epochs (`_train_population`), one epoch and one step of a population (`Population.train_epoch`, `_step`) and the
# early-stopping rule (`Population.record`).

# %%
import inspect

from mlplab.population import Population
from mlplab.train import _train_population

for fn in (mlplab.mlp.init_mlp, mlplab.mlp.forward, mlplab.mlp.linear, mlplab.mlp._rest, mlplab.activations.step,
           mlplab.activations.relu, mlplab.losses.log_softmax, mlplab.losses.cross_entropy, mlplab.optim.sgd_step,
           mlplab.optim._sgd_all, mlplab.optim.adam_step, mlplab.optim._adam_all, _train_population,
           Population.train_epoch, Population._step, Population.record):
    print(inspect.getsource(fn))
