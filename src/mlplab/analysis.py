"""Summaries of stored trials: group by a setting, mean ± std over seeds, best settings, and sentences built from
the numbers (so that every number the report writes comes from the results).

Records are the plain dicts of `Store.records()`: config keys, status, final metrics and the per-epoch history.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


@dataclass
class Point:
    """The trials that share one value of a setting (they differ only in seed)."""

    value: object
    accs: list[float] = field(default_factory=list)  # final test accuracies of the finished, non-diverged trials
    n_diverged: int = 0
    curves: list[list[float]] = field(default_factory=list)  # validation accuracy per epoch, one list per trial

    def add(self, record: dict) -> None:
        """Count one stored trial: a diverged one, or a finished one's accuracy and validation curve."""
        if record["status"] == "diverged":
            self.n_diverged += 1
        elif record["status"] == "done" and record.get("test_accuracy") is not None:
            self.accs.append(record["test_accuracy"])
            self.curves.append([h["val_accuracy"] for h in record.get("history", [])])

    @property
    def n(self) -> int:
        return len(self.accs) + self.n_diverged

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accs) if self.accs else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.accs) if len(self.accs) > 1 else 0.0

    @property
    def all_diverged(self) -> bool:
        return self.n_diverged > 0 and not self.accs


def setting(record: dict, name: str):
    """The value of a setting in a record; `depth` and `width` are read off `hidden`."""
    hidden = record.get("hidden") or []
    if name == "depth":
        return len(hidden)
    if name == "width":
        return hidden[0] if hidden else 0
    if name == "hidden":
        return hidden[0] if len(hidden) == 1 else tuple(hidden)
    value = record.get(name)
    if name == "data_seed" and value is None:
        return record.get("seed")
    return value


def by_setting(records: list[dict], name: str) -> list[Point]:
    """One Point per distinct value of `name`, in sorted order where values compare (else first-seen order)."""
    points: dict = {}
    for r in records:
        v = setting(r, name)
        points.setdefault(_hashable(v), Point(v)).add(r)
    out = list(points.values())
    if all(isinstance(p.value, (int, float)) and not isinstance(p.value, bool) for p in out):
        out.sort(key=lambda p: p.value)
    return out


def grid(records: list[dict], row: str, col: str) -> tuple[list, list, list[list[Point]]]:
    """Points on a 2-D grid: (row values, column values, cells[i][j])."""
    rows = sorted({_hashable(setting(r, row)) for r in records})
    cols = sorted({_hashable(setting(r, col)) for r in records})
    cells = [[Point((a, b)) for b in cols] for a in rows]
    for r in records:
        i, j = rows.index(_hashable(setting(r, row))), cols.index(_hashable(setting(r, col)))
        cells[i][j].add(r)
    return rows, cols, cells


def best(points: list[Point]) -> Point | None:
    """The point with the highest mean test accuracy (ignoring points where every trial diverged)."""
    ok = [p for p in points if p.accs]
    return max(ok, key=lambda p: p.mean) if ok else None


def pct(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}%"


def fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, tuple):
        return "-".join(str(x) for x in v) or "none"
    return str(v)


def mean_std(p: Point) -> str:
    return f"{pct(p.mean, 2)} ± {100 * p.std:.2f} (n={len(p.accs)})"


def describe_sweep(points: list[Point], name: str, unit: str = "") -> str:
    """A few sentences on a one-at-a-time sweep: the best value, the extremes, divergence, and the plateau."""
    if not points:
        return f"No finished trials for {name}."
    b = best(points)
    lo, hi = points[0], points[-1]
    s = [f"The best {name} is **{fmt_value(b.value)}{unit}** with {mean_std(b)} test accuracy."]
    if all(isinstance(p.value, (int, float)) for p in points):
        s.append(f"At the smallest value tried ({fmt_value(lo.value)}{unit}) the model reaches "
                 f"{_acc_or_diverged(lo)}; at the largest ({fmt_value(hi.value)}{unit}), {_acc_or_diverged(hi)}.")
    else:
        w = min((p for p in points if p.accs), key=lambda p: p.mean)
        s.append(f"The worst is {fmt_value(w.value)}{unit} at {pct(w.mean)}.")
    chance = [p for p in points if p.accs and p.mean < 0.15]
    if chance:
        s.append(f"At {name} = {', '.join(fmt_value(p.value) for p in chance)} the model ends at chance level "
                 f"(below 15%): the loss stayed finite, but training collapsed (e.g. every ReLU unit switched off) or "
                 f"never started.")
    div = [p for p in points if p.n_diverged]
    if div:
        vals = ", ".join(fmt_value(p.value) for p in div)
        s.append(f"Training diverged (a non-finite loss) for {sum(p.n_diverged for p in div)} trial(s), at "
                 f"{name} = {vals}; these are drawn as red crosses, not dropped.")
    near = [p for p in points if p.accs and p.mean >= b.mean - 0.005]
    if len(near) > 1:
        s.append(f"{len(near)} of the {len(points)} values come within half a point of the best "
                 f"({', '.join(fmt_value(p.value) for p in near)}): the optimum is broad there.")
    spread = [p.std for p in points if len(p.accs) > 1]
    if spread:
        s.append(f"Across seeds the test accuracy varies by {100 * statistics.fmean(spread):.2f} points "
                 f"(mean standard deviation), which is the noise floor for comparing neighbouring values.")
    return " ".join(s)


def _acc_or_diverged(p: Point) -> str:
    return "only diverged runs" if p.all_diverged else f"{pct(p.mean)}"


def variance_components(records: list[dict]) -> dict:
    """Spread of test accuracy due to the init seed vs the data-order seed, from a crossed seeds x data_seeds grid.

    Returns the std of the row means (init seed effect), of the column means (data-order effect), the residual
    std, and the total std, in accuracy units.
    """
    rows, cols, cells = grid(records, "seed", "data_seed")
    m = [[c.mean for c in row] for row in cells]
    flat = [v for row in m for v in row if not math.isnan(v)]
    grand = statistics.fmean(flat)
    row_means = [statistics.fmean(r) for r in m]
    col_means = [statistics.fmean(c) for c in zip(*m)]
    resid = [m[i][j] - row_means[i] - col_means[j] + grand for i in range(len(rows)) for j in range(len(cols))]
    return {
        "init_seed_std": statistics.stdev(row_means) if len(row_means) > 1 else 0.0,
        "data_seed_std": statistics.stdev(col_means) if len(col_means) > 1 else 0.0,
        "residual_std": statistics.pstdev(resid) if resid else 0.0,
        "total_std": statistics.stdev(flat) if len(flat) > 1 else 0.0,
        "n_init": len(rows),
        "n_data": len(cols),
        "mean": grand,
        "min": min(flat),
        "max": max(flat),
    }


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v
