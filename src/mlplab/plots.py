"""Figures for the study: one function per kind of plot, each returning a matplotlib Figure.

Colours are the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies), maps are viridis,
markers differ as well as colours, and every axis says what it shows and in which unit.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from mlplab.analysis import Point, best, fmt_value

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
DIVERGED = "#D55E00"


def style() -> None:
    plt.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": 110, "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11,
        "legend.fontsize": 9, "axes.grid": True, "grid.alpha": 0.3, "axes.prop_cycle": plt.cycler(color=OKABE_ITO),
        "image.cmap": "viridis", "svg.fonttype": "none", "figure.constrained_layout.use": True,
    })


def save(fig, name: str, folder: str | Path) -> Path:
    """Write `name`.png and `name`.svg into `folder`; return the PNG path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png")
    fig.savefig(folder / f"{name}.svg")
    return folder / f"{name}.png"


def digits_grid(images: np.ndarray, labels: np.ndarray, per_class: int = 8):
    """The first `per_class` training images of each digit, one row per class."""
    fig, axes = plt.subplots(10, per_class, figsize=(per_class * 0.9, 10 * 0.9))
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


def class_balance(train_labels: np.ndarray, test_labels: np.ndarray):
    fig, ax = plt.subplots(figsize=(7, 3.2))
    x = np.arange(10)
    for k, (name, y) in enumerate((("training (60,000)", train_labels), ("test (10,000)", test_labels))):
        share = np.bincount(y, minlength=10) / len(y) * 100
        ax.bar(x + (k - 0.5) * 0.4, share, width=0.4, label=name, color=OKABE_ITO[k], hatch=["", "//"][k])
    ax.axhline(10, color="gray", lw=1, ls="--", label="perfect balance (10%)")
    ax.set_xticks(x)
    ax.set_xlabel("digit class")
    ax.set_ylabel("share of images (%)")
    ax.set_title("Class balance")
    ax.legend(loc="lower right")
    return fig


def learning_curves(curves: dict[str, list[list[float]]], title: str, ylabel: str = "validation accuracy (%)"):
    """Mean (line) and min-max band over seeds of per-epoch curves, one colour and marker per label."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (label, runs) in enumerate(curves.items()):
        runs = [r for r in runs if r]
        if not runs:
            continue
        n = min(len(r) for r in runs)
        a = np.array([r[:n] for r in runs]) * 100
        ep = np.arange(1, n + 1)
        ax.plot(ep, a.mean(0), marker=MARKERS[k % len(MARKERS)], color=OKABE_ITO[k % 8], label=label)
        if len(runs) > 1:
            ax.fill_between(ep, a.min(0), a.max(0), color=OKABE_ITO[k % 8], alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=2)
    return fig


def sweep(points: list[Point], name: str, title: str, log: bool | None = None, reference: dict | None = None,
          unit: str = ""):
    """Final test accuracy against one setting: mean ± std (bars), every seed (dots), diverged runs (red x)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    numeric = all(isinstance(p.value, (int, float)) and not isinstance(p.value, bool) for p in points)
    xs = [p.value for p in points] if numeric else list(range(len(points)))
    log = numeric and (log if log is not None else (min(xs) > 0 and max(xs) / max(min(xs), 1e-30) >= 100))
    finite = [p.mean * 100 for p in points if p.accs]
    floor = min(finite + [10.0]) - 3 if finite else 0
    for x, p in zip(xs, points):
        ax.scatter([x] * len(p.accs), [a * 100 for a in p.accs], s=12, color=OKABE_ITO[4], alpha=0.7, zorder=2)
        if p.n_diverged:
            ax.scatter([x], [floor], marker="x", s=70, color=DIVERGED, zorder=3)
    ok = [(x, p) for x, p in zip(xs, points) if p.accs]
    if ok:
        ax.errorbar([x for x, _ in ok], [p.mean * 100 for _, p in ok], yerr=[p.std * 100 for _, p in ok],
                    color=OKABE_ITO[0], marker="o", capsize=3, lw=1.5, ls="-" if numeric else "none",
                    label="mean ± std over seeds", zorder=4)
    ax.scatter([], [], s=12, color=OKABE_ITO[4], label="one seed")
    if any(p.n_diverged for p in points):
        ax.scatter([], [], marker="x", s=70, color=DIVERGED, label="diverged (non-finite loss)")
    b = best(points)
    if b is not None:
        bx = b.value if numeric else points.index(b)
        ax.scatter([bx], [b.mean * 100], s=180, facecolors="none", edgecolors="black", lw=1.5, zorder=5,
                   label=f"best: {fmt_value(b.value)}{unit} ({b.mean * 100:.2f}%)")
    for k, (label, acc) in enumerate((reference or {}).items()):
        ax.axhline(acc * 100, color=OKABE_ITO[[1, 2, 3][k % 3]], ls=["--", ":", "-."][k % 3], lw=1.2, label=label)
    if log:
        ax.set_xscale("log", base=2 if all(float(x).is_integer() for x in xs) else 10)
    if not numeric:
        ax.set_xticks(xs, [fmt_value(p.value) for p in points], rotation=30, ha="right")
    ax.set_xlabel(f"{name}{f' ({unit.strip()})' if unit.strip() else ''}")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower center" if not ok or ok[-1][1].mean > 0.5 else "best")
    return fig


def heatmap(rows: list, cols: list, cells: list[list[Point]], row_name: str, col_name: str, title: str):
    """Mean test accuracy over a grid, each cell annotated; the best cell boxed, diverged cells marked 'div'."""
    m = np.array([[c.mean * 100 if c.accs else np.nan for c in row] for row in cells])
    fig, ax = plt.subplots(figsize=(1.0 * len(cols) + 2.6, 0.6 * len(rows) + 1.8))
    im = ax.imshow(m, cmap="viridis", vmin=np.nanmin(m) if np.isfinite(m).any() else 0, vmax=100, aspect="auto")
    for i, row in enumerate(cells):
        for j, c in enumerate(row):
            if c.all_diverged:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=True, color="#dddddd", hatch="xx",
                                           ec=DIVERGED))
                ax.text(j, i, "div", ha="center", va="center", fontsize=8, color=DIVERGED)
            elif c.accs:
                v = m[i, j]
                color = "black" if v > np.nanmean(m) else "white"
                star = "*" if c.n_diverged else ""
                ax.text(j, i, f"{v:.1f}{star}", ha="center", va="center", fontsize=8, color=color)
    flat = [(c.mean, i, j) for i, row in enumerate(cells) for j, c in enumerate(row) if c.accs]
    if flat:
        _, bi, bj = max(flat)
        ax.add_patch(plt.Rectangle((bj - 0.5, bi - 0.5), 1, 1, fill=False, ec="white", lw=3))
        ax.add_patch(plt.Rectangle((bj - 0.5, bi - 0.5), 1, 1, fill=False, ec="black", lw=1.2, ls="--"))
    ax.set_xticks(range(len(cols)), [fmt_value(v) for v in cols], rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), [fmt_value(v) for v in rows])
    ax.set_xlabel(col_name)
    ax.set_ylabel(row_name)
    ax.grid(False)
    ax.set_title(title)
    cb = fig.colorbar(im, ax=ax)
    cb.set_label("test accuracy (%)")
    return fig


def unit_spread(steps: list[int], spreads: dict[str, list[float]], title: str):
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (label, ys) in enumerate(spreads.items()):
        ax.plot(steps, [max(y, 1e-12) for y in ys], marker=MARKERS[k], markevery=max(1, len(steps) // 10),
                color=OKABE_ITO[k], label=label)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("spread between hidden units\n(max |w_j - w_0| / max |w|)")
    ax.set_title(title)
    ax.legend()
    return fig


def image_grid(images: np.ndarray, captions: list[str], title: str, cols: int = 8):
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.55), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([]), ax.set_yticks([])
        ax.grid(False)
        if k < len(images):
            ax.imshow(images[k].reshape(28, 28), cmap="gray_r", vmin=0, vmax=255)
            ax.set_title(captions[k], fontsize=8)
        else:
            ax.axis("off")
    fig.suptitle(title)
    return fig


def confusion(cm: np.ndarray, title: str):
    fig, ax = plt.subplots(figsize=(6.2, 5.4))
    off = cm.astype(float).copy()
    np.fill_diagonal(off, np.nan)
    im = ax.imshow(off, cmap="viridis")
    for i in range(10):
        for j in range(10):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="gray" if i == j else ("black" if off[i, j] > np.nanmax(off) / 2 else "white"))
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.grid(False)
    ax.set_title(title)
    cb = fig.colorbar(im, ax=ax)
    cb.set_label("test images (off the diagonal)")
    return fig


def weight_images(w0: np.ndarray, title: str, n: int = 16, cols: int = 8):
    """Incoming weights of the first n hidden units as 28x28 images (blue-white-orange: negative to positive)."""
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.3), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([]), ax.set_yticks([])
        ax.grid(False)
        if k < min(n, w0.shape[1]):
            w = w0[:, k].reshape(28, 28)
            lim = float(np.abs(w).max()) or 1.0
            ax.imshow(w, cmap="PuOr_r", vmin=-lim, vmax=lim)
            ax.set_title(f"unit {k}", fontsize=8)
        else:
            ax.axis("off")
    fig.suptitle(title)
    return fig
