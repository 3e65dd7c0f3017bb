"""Figures for the study: one function per kind of plot, each returning a matplotlib Figure.

Colours are the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies), maps are viridis;
line k gets colour k % 8 AND line style k // 8 and marker k, so that more than eight lines stay distinct. Accuracies
near 100% are drawn as error rates on a log axis. A run's outcome has one marker everywhere: converged (filled
circle), not converged within the budget (hollow square), collapsed to chance (orange triangle), diverged (red x, at
the top edge, since it has no accuracy).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import FuncFormatter, LogFormatter, MaxNLocator

from mlplab.analysis import LEARNED, Point, best, broke_down, fmt_value, pct, with_unit

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p"]
LINESTYLES = ["-", "--", ":", "-."]
OUTCOME_STYLE = {  # marker, face colour, edge colour, label
    "converged": ("o", OKABE_ITO[4], OKABE_ITO[0], "converged"),
    "budget": ("s", "none", OKABE_ITO[0], "not converged within the budget"),
    "collapsed": ("v", OKABE_ITO[1], "#7a4f00", "collapsed (finite, < 2x chance)"),
    "diverged": ("X", "#D55E00", "#D55E00", "diverged (non-finite)"),
    "broke_down": ("P", "none", "#7a4f00", "converged, then broke down (> 10 points lost)"),
}
FLOOR = 0.01  # error-rate axes start at 0.01% (no run reaches it)


def style() -> None:
    plt.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": 110, "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11,
        "legend.fontsize": 9, "axes.grid": True, "grid.alpha": 0.3, "axes.prop_cycle": plt.cycler(color=OKABE_ITO),
        "image.cmap": "viridis", "svg.fonttype": "none", "figure.constrained_layout.use": True,
    })


def line_style(k: int) -> dict:
    """Colour, line style and marker of the k-th line: distinct for up to 32 lines."""
    return {"color": OKABE_ITO[k % 8], "ls": LINESTYLES[(k // 8) % 4], "marker": MARKERS[k % len(MARKERS)]}


def save(fig, name: str, folder: str | Path) -> Path:
    """Write `name`.png and `name`.svg into `folder`; return the PNG path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png")
    fig.savefig(folder / f"{name}.svg")
    return folder / f"{name}.png"


class _PlainLog(LogFormatter):
    """Log-axis tick labels as plain numbers (2, 0.5, not 2 x 10^0), on the ticks matplotlib would label: the minor
    ticks too when the axis spans under two decades."""

    def __init__(self):
        super().__init__(labelOnlyBase=False, minor_thresholds=(2, 0.5))

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def _plain_log(axis) -> None:
    """Label a log axis (ax.xaxis, ax.yaxis, a colour bar's) in plain numbers, minor ticks included."""
    axis.set_major_formatter(_PlainLog())
    axis.set_minor_formatter(_PlainLog())


def _error_axis(ax, values_pct: list[float], label: str) -> None:
    """A log y axis of error rates (%), its range fitted to the values (and never above 100%), labelled in plain
    numbers."""
    finite = [v for v in values_pct if v > 0 and math.isfinite(v)]
    lo = max(FLOOR, min(finite) / 1.5) if finite else 1.0
    decade = 10 ** math.floor(math.log10(lo * 1.25))  # down to a power of ten when it is near, so that a labelled
    if lo / 2.5 <= decade:  # tick lies below the lowest value
        lo = max(FLOOR, decade * 0.95)
    hi = min(100.0, max(finite) * 1.5) if finite else 100.0
    ax.set_yscale("log")
    ax.set_ylim(lo, max(hi, lo * 3))
    _plain_log(ax.yaxis)
    ax.set_ylabel(label)


def digits_grid(images: np.ndarray, labels: np.ndarray, per_class: int = 8):
    """The first `per_class` training images of each digit, one row per class."""
    fig, axes = plt.subplots(10, per_class, figsize=(per_class * 0.8, 10 * 0.8))
    for d in range(10):
        idx = np.flatnonzero(labels == d)[:per_class]
        for j, i in enumerate(idx):
            ax = axes[d, j]
            ax.imshow(images[i].reshape(28, 28), cmap="gray_r", vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
            ax.grid(False)
        axes[d, 0].set_ylabel(str(d), rotation=0, labelpad=10, fontsize=12)
    fig.suptitle("MNIST training images, one row per class")
    return fig


def sweep(points: list[Point], name: str, title: str, reference: dict | None = None, unit: str = ""):
    """Validation error (log axis) against one setting: every seed marked by its outcome, the median over seeds
    (line), the best value on validation (circled); reference lines for comparison."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    numeric = all(isinstance(p.value, (int, float)) and not isinstance(p.value, bool) for p in points)
    xs = [p.value for p in points] if numeric else list(range(len(points)))
    errs = [100 * (1 - v) for p in points for v, o in zip(p.vals, p.outcomes) if o.kind != "diverged"]
    refs = [100 * (1 - a) for a in (reference or {}).values()]
    _error_axis(ax, errs + refs, "validation error (%, log scale)")
    top = ax.get_ylim()[1]
    seen = set()
    log_x = numeric and min(xs) > 0 and max(xs) / min(xs) >= 100
    gaps = [b - a for a, b in zip(xs, xs[1:])] if numeric else []
    step = min(gaps) if gaps and min(gaps) > 0 else 1.0
    for x, p in zip(xs, points):
        for j, (v, o, r) in enumerate(zip(p.vals, p.outcomes, p.records)):
            kind = "broke_down" if broke_down(r, o) else o.kind
            m, face, edge, label = OUTCOME_STYLE[kind]
            y = top / 1.15 if o.kind == "diverged" else 100 * (1 - v)
            off = j - (p.n - 1) / 2  # seeds side by side, so that equal values do not hide each other
            sx = x * 1.06 ** off if log_x else x + 0.06 * step * off
            ax.scatter([sx], [y], marker=m, s=36, facecolors=face, edgecolors=edge, zorder=3,
                       label=None if kind in seen else label, clip_on=False)
            seen.add(kind)
    med = [(x, 100 * (1 - p.median)) for x, p in zip(xs, points) if p.records]
    ax.plot([x for x, _ in med], [y for _, y in med], color=OKABE_ITO[0], lw=1.5,
            ls="-" if numeric else "none", marker="_", ms=14, label="median over seeds", zorder=4)
    b = best(points)
    if b is not None:
        bx = b.value if numeric else points.index(b)
        ax.scatter([bx], [100 * (1 - b.median)], s=200, facecolors="none", edgecolors="black", lw=1.5, zorder=5,
                   label=f"best on validation: {with_unit(b.value, unit)}")
    for k, (label, acc) in enumerate((reference or {}).items()):
        ax.axhline(100 * (1 - acc), color=OKABE_ITO[[1, 2, 3][k % 3]], ls=["--", ":", "-."][k % 3], lw=1.2,
                   label=label)
    if log_x:
        ax.set_xscale("log", base=2 if all(float(x).is_integer() for x in xs) else 10)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1, 4, 16, not 2^0, 2^2, 2^4
        if len(xs) <= 12:  # few enough to label every value tried (a log axis labels only some)
            most = max(p.n for p in points)  # a value with fewer seeds than the others says so under its tick
            ax.set_xticks(xs, [fmt_value(x) + (f"\n({p.n} seeds)" if 0 < p.n < most else "")
                               for x, p in zip(xs, points)], rotation=45 if len(xs) > 8 else 0)
            ax.xaxis.set_minor_locator(plt.NullLocator())
    if not numeric:
        ax.set_xticks(xs, [fmt_value(p.value) for p in points], rotation=30, ha="right")
    shown_unit = "" if name.endswith(unit.strip()) else unit.strip()  # "hidden units", not "hidden units (units)"
    ax.set_xlabel(f"{name}{f' ({shown_unit})' if shown_unit else ''}")
    ax.set_title(title)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8,
               frameon=False)  # below the axes: inside, it could cover seeds
    return fig


def heatmap(rows: list, cols: list, cells: list[list[Point]], row_name: str, col_name: str, title: str,
            box_best: bool = True, what: str = "median validation error (%)",
            numbers: str = "median validation accuracy (%)"):
    """Median validation error per cell (colour, log scale fitted to the data), annotated with the median accuracy
    (to 2 decimals when all cells lie within 1 point; "div." where most seeds diverged) and, below it, the number of
    seeds that stopped on their budget (b), collapsed (c) or diverged (d), or converged and then broke down (x: lost
    more than analysis.BREAKDOWN of validation accuracy after the reported epoch); the best cell on validation is boxed
    unless `box_best` is False (e.g. when the grid's factors have no detectable effect)."""
    m = np.array([[100 * (1 - c.median) if c.records else np.nan for c in row] for row in cells])
    fig, ax = plt.subplots(figsize=(1.05 * len(cols) + 2.8, 0.62 * len(rows) + 2.2))
    finite = m[np.isfinite(m)]
    # The colours span the cells that learned (a median of at least LEARNED accuracy, most seeds neither collapsed
    # nor diverged): failed cells, near 90% error, would otherwise stretch the scale until every working cell had
    # the same colour. They take the top colour (the colour bar's arrow); their numbers and marks say how they ended.
    learned = np.array([[bool(c.records) and c.median >= LEARNED and 2 * sum(
        o.kind in ("collapsed", "diverged") for o in c.outcomes) <= len(c.outcomes) for c in row] for row in cells])
    span = m[np.isfinite(m) & learned] if learned.any() else finite
    lo, hi = (max(FLOOR, span.min()), max(span.max(), span.min() * 1.01)) if span.size else (1, 100)
    im = ax.imshow(m, cmap="viridis_r", norm=LogNorm(vmin=lo, vmax=hi, clip=True), aspect="auto")
    digits = 2 if finite.size and finite.max() - finite.min() < 1 else 1
    for i, row in enumerate(cells):
        for j, c in enumerate(row):
            if not c.records:
                continue
            k = [o.kind for o in c.outcomes]
            fell = sum(broke_down(r, o) for r, o in zip(c.records, c.outcomes))  # converged, then broke down
            marks = " ".join([f"{k.count(kind)}{kind[0]}" for kind in ("budget", "collapsed", "diverged") if kind in k]
                             + ([f"{fell}x"] if fell else []))
            # a median that is a diverged seed (accuracy 0 by convention) reads "div.", not "0.0"
            label = "div." if 2 * k.count("diverged") > len(k) else f"{100 * c.median:.{digits}f}"
            shade = (math.log(min(max(m[i, j], lo), hi)) - math.log(lo)) / max(math.log(hi) - math.log(lo), 1e-9)
            ax.text(j, i, label + (f"\n{marks}" if marks else ""), ha="center",
                    va="center", fontsize=8, color="white" if shade > 0.55 else "black")
    flat = [c for row in cells for c in row if c.records]
    b = best(flat) if box_best else None
    if b is not None:
        bi = next(i for i, row in enumerate(cells) if b in row)
        bj = cells[bi].index(b)
        ax.add_patch(plt.Rectangle((bj - 0.5, bi - 0.5), 1, 1, fill=False, ec="white", lw=3))
        ax.add_patch(plt.Rectangle((bj - 0.5, bi - 0.5), 1, 1, fill=False, ec="black", lw=1.2, ls="--"))
    ax.set_xticks(range(len(cols)), [fmt_value(v) for v in cols], rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), [fmt_value(v) for v in rows])
    ax.set_xlabel(col_name)
    ax.set_ylabel(row_name)
    ax.grid(False)
    ax.set_title(f"{title}\n(numbers in the cells: {numbers}; colour: error, log scale)", fontsize=10)
    beyond = bool(finite.size) and finite.max() > hi
    cb = fig.colorbar(im, ax=ax, extend="max" if beyond else "neither")
    _plain_log(cb.ax.yaxis)
    cb.set_label(f"colour: {what}" + (f"\n(above {hi:.3g}%: the top colour)" if beyond else ""))
    return fig


def curves(runs: dict[str, list[dict]], title: str):
    """Per-epoch curves of a few runs: training and validation loss (left), validation error on a log axis
    (right); the reported (best) epoch of each run is ringed. A run whose "outcome" is not "converged" says it in
    its label; a diverged run's training loss (a mean over batches that blew up) is not drawn."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4 + 0.2 * math.ceil((len(runs) + 1) / 2)))
    errs = []
    for k, (label, run) in enumerate(runs.items()):
        h, best_epoch = run["history"], run.get("best_epoch")
        if run.get("outcome", "converged") != "converged":
            label = f"{label}: {'not converged within the budget' if run['outcome'] == 'budget' else run['outcome']}"
        ep = [x["epoch"] for x in h]
        st = line_style(k)
        tl = [x["train_loss"] if x["train_loss"] is not None else np.nan for x in h]
        vl = [x["val_loss"] if x["val_loss"] is not None else np.nan for x in h]
        ve = [100 * (1 - x["val_accuracy"]) if x["val_accuracy"] is not None else np.nan for x in h]
        errs += [e for e in ve if np.isfinite(e)]
        diverged = str(run.get("outcome", "")).startswith("diverged")
        if not diverged:  # a diverged run's mean over the batches can be ~1e7: skip it
            a1.plot(ep, tl, color=st["color"], ls=":", lw=1.3)
        a1.plot(ep, vl, color=st["color"], ls="-", marker=st["marker"], ms=4, label=label)
        a2.plot(ep, ve, color=st["color"], ls=st["ls"], marker=st["marker"], ms=4, label=label)
        if diverged and ve and np.isfinite(ve[-1]):  # often one point, on top of a collapsed run's: point at it
            a2.annotate("diverged", xy=(ep[-1], ve[-1]), xytext=(25, -30), textcoords="offset points", fontsize=8,
                        color=st["color"], arrowprops={"arrowstyle": "->", "color": st["color"]}, zorder=6)
        if best_epoch:
            a1.scatter([best_epoch], [vl[best_epoch - 1]], s=90, facecolors="none", edgecolors="black", zorder=5)
            a2.scatter([best_epoch], [ve[best_epoch - 1]], s=90, facecolors="none", edgecolors="black", zorder=5)
    a1.plot([], [], color="gray", ls=":", label="(dotted: training loss, the mean over each epoch's batches)")
    a1.set_yscale("log")
    _plain_log(a1.yaxis)
    a1.set_xlabel("epoch")
    for a in (a1, a2):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    a1.set_ylabel("cross-entropy (log scale)")
    a1.set_title("loss: validation (solid, at each epoch's end)\nvs training (dotted, mean over the epoch's batches)",
                 fontsize=10)
    handles, labels = a1.get_legend_handles_labels()  # below both panels: inside, it hid the curves' ends
    fig.legend(handles, labels, loc="outside lower center", ncol=2 if len(labels) > 3 else len(labels), fontsize=8,
               frameon=False)
    _error_axis(a2, errs, "validation error (%, log scale)")
    a2.set_xlabel("epoch")
    a2.set_title("validation error; ringed: the reported epoch")
    fig.suptitle(title)
    return fig


def train_vs_val(history: list[dict], title: str):
    """Training and validation error per epoch of one run that recorded both (log axis)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ep = [h["epoch"] for h in history]
    for k, key in enumerate(("train_accuracy", "val_accuracy")):
        ax.plot(ep, [100 * (1 - h[key]) for h in history], **line_style(k), label=key.replace("_", " ")
                .replace("accuracy", "error"))
    _error_axis(ax, [100 * (1 - h[k]) for h in history for k in ("train_accuracy", "val_accuracy")],
                "error (%, log scale)")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.legend()
    return fig


def dead_units(lrs: list[float], dead: list[float], kinds: list[str], title: str):
    """Fraction of dead ReLU units against the learning rate, each run marked by its outcome."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    order = sorted(range(len(lrs)), key=lambda i: lrs[i])  # the line runs along the axis, whatever the input order
    ax.plot([lrs[i] for i in order], [100 * dead[i] for i in order], color=OKABE_ITO[0], lw=1, zorder=2)
    seen = set()
    for x, d, k in zip(lrs, dead, kinds):
        m, face, edge, label = OUTCOME_STYLE[k]
        ax.scatter([x], [100 * d], marker=m, s=50, facecolors=face, edgecolors=edge, zorder=3,
                   label=None if k in seen else label)
        seen.add(k)
    ax.set_xscale("log")
    ax.set_ylim(-3, 103)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("dead hidden units (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def layer_stats(stats: dict[str, list[float]], ylabel: str, title: str):
    """One line per setting: a per-layer statistic (log axis) against the layer index."""
    fig, ax = plt.subplots(figsize=(8.5, 4))
    for k, (label, ys) in enumerate(stats.items()):
        ax.plot(range(1, len(ys) + 1), [max(y, 1e-30) for y in ys], **line_style(k), label=label)
    ax.set_yscale("log")
    ax.set_xlabel("hidden layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.legend(loc="outside right center", fontsize=7, frameon=False)  # inside, it covered the lines' ends
    return fig


def unit_spread(steps: list[int], spreads: dict[str, list[float]], title: str):
    """Spread between hidden units' weights over training. Where the non-zero spreads span more than two decades,
    on a symmetric-log axis (logarithmic above the smallest non-zero spread, linear below it); else on a linear one.
    Either way an exact 0 is drawn at a real 0 (labelled), not at a made-up floor."""
    fig, ax = plt.subplots(figsize=(7, 4))
    positive = [y for ys in spreads.values() for y in ys if y > 0]
    for k, (label, ys) in enumerate(spreads.items()):
        zero = all(y == 0 for y in ys)
        ax.plot(steps, ys, **line_style(k), markevery=max(1, len(steps) // 10),
                label=label + (" (exactly 0 at every step)" if zero else ""))
    if positive and max(positive) > 100 * min(positive):
        # linear below the power of ten under the smallest spread: 0 and that power's tick lie a decade apart (a
        # threshold between two powers put the power's tick inside the linear band, on top of the 0)
        linthresh = 10.0 ** math.floor(math.log10(min(positive)))
        ax.set_yscale("symlog", linthresh=linthresh)
        top = math.floor(math.log10(max(positive)))
        ax.set_yticks([0.0] + [10.0 ** k for k in range(round(math.log10(linthresh)), top + 1)])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("spread between hidden units\n(max |w_j - w_0| / max |w|)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def image_grid(images: np.ndarray, captions: list[str], title: str, cols: int = 8):
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.6), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([]), ax.set_yticks([])
        ax.grid(False)
        if k < len(images):
            ax.imshow(images[k].reshape(28, 28), cmap="gray_r", vmin=0, vmax=255)
            ax.set_title(captions[k], fontsize=8)
        else:
            ax.axis("off")
    fig.suptitle(title, fontsize=9 if cols <= 4 else None)  # a narrow grid: a long title would run off the figure
    return fig


def confusion(cm: np.ndarray, title: str):
    fig, ax = plt.subplots(figsize=(6.2, 5.4))
    off = cm.astype(float).copy()
    np.fill_diagonal(off, np.nan)
    im = ax.imshow(off, cmap="viridis")
    for i in range(10):  # the diagonal (correct predictions) on light grey, apart from the colour scale
        ax.add_patch(plt.Rectangle((i - 0.5, i - 0.5), 1, 1, color="0.88", zorder=2))
        for j in range(10):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, zorder=3,
                    fontweight="bold" if i == j else "normal",
                    color="black" if i == j or off[i, j] > np.nanmax(off) / 2 else "white")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.grid(False)
    ax.set_title(title)
    cb = fig.colorbar(im, ax=ax)
    cb.set_label("test images (off the diagonal)")
    return fig


def compute_bars(names: list[str], model_epochs: list[int], budget_epochs: list[int], seconds: list[float],
                 title: str, predicted: list[float] | None = None):
    """Per experiment: model-epochs trained against the budget's (left), and seconds of training (right), next to
    the cost model's prediction for the whole budget when `predicted` is given."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 0.32 * len(names) + 1.6), sharey=True)
    y = np.arange(len(names))
    a1.barh(y - 0.2, budget_epochs, height=0.4, color="none", edgecolor=OKABE_ITO[0], label="at the budget")
    a1.barh(y + 0.2, model_epochs, height=0.4, color=OKABE_ITO[0], label="trained (early stopping)")
    a1.set_yticks(y, names)
    a1.invert_yaxis()
    a1.set_xlabel("model-epochs")
    a1.legend(fontsize=8)
    if predicted is None:
        a2.barh(y, seconds, color=OKABE_ITO[2])
    else:
        a2.barh(y - 0.2, predicted, height=0.4, color="none", edgecolor=OKABE_ITO[2],
                label="predicted at the budget (cost model)")
        a2.barh(y + 0.2, seconds, height=0.4, color=OKABE_ITO[2], label="measured")
        a2.legend(fontsize=8)
    a2.set_xlabel("seconds of training\n(its share of each population)")
    fig.suptitle(title)
    return fig


def search_progress(curves: dict[str, list[tuple[int, float]]], budget: int, title: str, noise_sd: float | None = None):
    """Best validation error so far (log axis) against model-epochs spent: one step line per search, a marker at the
    end of each of its rounds (each its own colour, line style and marker), and the common budget as a vertical
    line. `curves`: label -> [(model-epochs, best validation accuracy so far; nan before any)]. `noise_sd`: one
    run's standard deviation of validation accuracy, shaded on either side of the best final value: ends inside the
    band cannot be told apart by one run each."""
    fig, ax = plt.subplots(figsize=(7.5, 4.9))
    errs, finals = [], []
    for k, (label, points) in enumerate(curves.items()):
        pts = [(x, y) for x, y in points if y is not None and math.isfinite(y)]
        if not pts:
            continue
        xs, ys = [x for x, _ in pts], [100 * (1 - y) for _, y in pts]
        errs += ys
        finals.append(ys[-1])
        ax.plot(xs, ys, drawstyle="steps-post", color=OKABE_ITO[k % 8], ls=LINESTYLES[k % 4],
                marker=MARKERS[k % len(MARKERS)], ms=7, mfc="none" if k % 2 else OKABE_ITO[k % 8], lw=1.6,
                label=f"{label}: best {pct(pts[-1][1], 2)}")
    if noise_sd and finals:
        lo_band, hi_band = min(finals) - 100 * noise_sd, min(finals) + 100 * noise_sd
        ax.axhspan(max(lo_band, FLOOR), hi_band, color="gray", alpha=0.15, lw=0,
                   label=f"best end \u00b1 one run's SD ({100 * noise_sd:.2f} points)")
        errs += [max(lo_band, FLOOR), hi_band]
    ax.axvline(budget, color="gray", ls=":", lw=1, label=f"budget: {budget} model-epochs")
    _error_axis(ax, errs, "best validation error so far (%, log scale)")
    if errs:
        ax.set_ylim(max(FLOOR, min(errs) / 1.1), max(errs) * 1.1)  # the steps are small: fit them closely
    ax.set_xlim(0, budget * 1.05)
    ax.set_xlabel("model-epochs spent")
    ax.set_title(title)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return fig


def bottleneck(models: list[dict], title: str):
    """Networks with one or two hidden units, one panel each: every image at its hidden value(s), against the regions
    where the output layer predicts each digit. models: {"codes" (N, H), "y" (N,), "pred" (N,), "w" (H, 10), "b" (10,),
    "label"}
    with H = 1 (a strip per true digit along h) or H = 2 (the plane, coloured by true digit)."""
    fig, axes = plt.subplots(1, len(models), figsize=(6.2 * len(models), 5.2), squeeze=False)
    tab = plt.get_cmap("tab10")
    rng = np.random.default_rng(0)  # jitter only
    for ax, m in zip(axes[0], models):
        codes, y, pred = np.asarray(m["codes"]), np.asarray(m["y"]), np.asarray(m["pred"])
        w, b = np.asarray(m["w"]), np.asarray(m["b"])
        live = np.flatnonzero(codes.max(0) > 0)
        xlabel = "the hidden unit's value h (the digit on top: what the model predicts there)"
        if codes.shape[1] == 2 and len(live) == 1:  # one dead unit: the model reads a line, drawn as one
            codes, w = codes[:, live], w[live]
            xlabel = f"hidden unit {live[0] + 1}'s value (unit {2 - live[0]} is 0 for every image)"
        top = max(float(codes.max()) * 1.05, 1e-6)
        if codes.shape[1] == 1:
            grid = np.linspace(0, top, 2001)
            region = (grid[:, None] * w[0] + b).argmax(1)  # the predicted digit along h
            cuts = [0, *np.flatnonzero(np.diff(region)) + 1, len(grid)]
            for k, (a, z) in enumerate(zip(cuts[:-1], cuts[1:])):
                ax.axvspan(grid[a], grid[min(z, len(grid) - 1)], color=tab(region[a]), alpha=0.15, lw=0)
                ax.text((grid[a] + grid[z - 1]) / 2, 10.0 + 0.55 * (k % 2), str(region[a]), ha="center",
                        va="bottom", fontsize=10, color=tab(region[a]), fontweight="bold")  # staggered: narrow ones
            ok = pred == y
            jit = y + rng.uniform(-0.3, 0.3, len(y))
            ax.scatter(codes[ok, 0], jit[ok], s=3, color=OKABE_ITO[0], alpha=0.35, lw=0, rasterized=True,
                       label="predicted right")
            ax.scatter(codes[~ok, 0], jit[~ok], s=3, color=OKABE_ITO[5], alpha=0.35, lw=0, rasterized=True,
                       label="predicted wrong")
            ax.set_yticks(range(10))
            ax.set_ylim(-0.6, 11.2)
            ax.set_xlim(-0.02 * top, top)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("true digit")
            ax.legend(loc="lower right", markerscale=4, framealpha=0.9)
        else:
            tx, ty = (max(float(c) * 1.05, 1e-6) for c in codes.max(0))  # each unit's own range
            gx, gy = np.linspace(0, tx, 301), np.linspace(0, ty, 301)
            hx, hy = np.meshgrid(gx, gy)
            region = (np.stack([hx.ravel(), hy.ravel()], 1) @ w + b).argmax(1).reshape(hx.shape)
            ax.imshow(region, origin="lower", extent=(0, tx, 0, ty), cmap="tab10", vmin=-0.5, vmax=9.5,
                      alpha=0.18, aspect="auto", interpolation="nearest")
            for d in np.unique(region):
                yy, xx = np.nonzero(region == d)
                ax.text(gx[int(np.median(xx))], gy[int(np.median(yy))], str(d), ha="center", va="center",
                        fontsize=13, fontweight="bold", color=tab(d))
            pick = rng.permutation(len(y))[:5000]
            ax.scatter(codes[pick, 0], codes[pick, 1], s=3, c=y[pick], cmap="tab10", vmin=-0.5, vmax=9.5, lw=0,
                       alpha=0.5, rasterized=True)
            for d in range(10):
                ax.scatter([], [], s=12, color=tab(d), label=str(d))
            ax.legend(title="true digit", loc="upper left", bbox_to_anchor=(1.0, 1.0), markerscale=1.5)
            ax.set_xlim(0, tx)
            ax.set_ylim(0, ty)
            ax.set_xlabel("hidden unit 1")
            ax.set_ylabel("hidden unit 2")
        ax.grid(False)
        ax.set_title(m["label"])
    fig.suptitle(title)
    return fig
