"""Reading stored trials: why each one ended, summaries over seeds, the statistics the study's sentences rest on,
and the sentences themselves as structured claims.

Records are the plain dicts of `Store.records()`: config keys, status, the reported (best-epoch) metrics and the
per-epoch history. Every sentence the study writes about its numbers is a `Claim`: a kind, the facts (plain numbers,
strings, booleans) and a template; its text is `render(kind, facts)`, so a test that recomputes the facts from the
store and renders them must get the same sentence back.

Statistics, stated once: settings are compared on VALIDATION accuracy (the test set is only reported, never used
to choose). Two settings differ only if Welch's t-test on their seeds' validation accuracies gives p < ALPHA (a
diverged seed counts as accuracy 0). Randomness is split by a two-way ANOVA without replication (init seed, data
order, residual = their interaction and everything else).
"""

from __future__ import annotations

import itertools
import math
import statistics
import string
import warnings
from dataclasses import dataclass, field

from mlplab.outcomes import COLLAPSE_FACTOR, OUTCOMES

ALPHA = 0.05  # significance level of every comparison
N_CLASSES = 10
FAILURES = ("collapsed", "diverged")


# -- why a trial ended, recomputed from its history and config ---------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    kind: str  # converged | budget | collapsed | diverged
    best_epoch: int  # the epoch whose metrics are reported (1-based; 0 when there is none)
    stopped_epoch: int  # the last epoch trained


def ending(record: dict) -> dict:
    """How a stored trial ended, for tables and exports: outcome (converged, budget, collapsed or diverged), the epoch
    it reports (best_epoch; None for a diverged one) and the last epoch it trained; all None for a trial that did not
    finish."""
    from mlplab.store import FINISHED

    if record["status"] not in FINISHED:
        return {"outcome": None, "best_epoch": None, "stopped_epoch": None}
    o = outcome(record)
    return {"outcome": o.kind, "best_epoch": o.best_epoch or None, "stopped_epoch": o.stopped_epoch}


def outcome(record: dict) -> Outcome:
    """Why a trial ended, from its config (patience, min_delta, epochs) and per-epoch history alone: the same rule
    the trainer applies (an epoch improves when its val loss is below the best so far minus min_delta; training stops
    after `patience` epochs without improvement), so it also checks the trainer."""
    history = record.get("history") or []
    stopped = len(history)
    if record["status"] == "diverged":
        return Outcome("diverged", 0, stopped)
    patience, min_delta = record.get("patience") or 0, record.get("min_delta") or 0.0
    best_loss, best_epoch, bad, kind = math.inf, stopped, 0, "budget"
    if patience:
        best_epoch = 0
        for h in history:
            loss = h.get("val_loss")
            if loss is not None and loss < best_loss - min_delta:
                best_loss, best_epoch, bad = loss, h["epoch"], 0
            else:
                bad += 1
            if bad >= patience:
                kind = "converged"
                break
    reported = history[best_epoch - 1] if best_epoch else {}
    if (reported.get("val_accuracy") or 0.0) < COLLAPSE_FACTOR / N_CLASSES:
        kind = "collapsed"
    return Outcome(kind, best_epoch, stopped)


def val_accuracy(record: dict) -> float:
    """The reported validation accuracy; 0 for a diverged trial (it ranks below every finite one)."""
    if record["status"] == "diverged" or record.get("val_accuracy") is None:
        return 0.0
    return record["val_accuracy"]


# -- grouping -----------------------------------------------------------------------------------------------------


@dataclass
class Point:
    """The trials that share one value of a setting (they differ only in seed)."""

    value: object
    records: list[dict] = field(default_factory=list)

    def add(self, record: dict) -> None:
        self.records.append(record)

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def vals(self) -> list[float]:
        """Validation accuracy per seed (diverged: 0)."""
        return [val_accuracy(r) for r in self.records]

    @property
    def tests(self) -> list[float]:
        """Test accuracy of the finite seeds (read only for a chosen setting)."""
        return [r["test_accuracy"] for r in self.records
                if r["status"] != "diverged" and r.get("test_accuracy") is not None]

    @property
    def outcomes(self) -> list[Outcome]:
        return [outcome(r) for r in self.records]

    def count(self, *kinds: str) -> int:
        return sum(o.kind in kinds for o in self.outcomes)

    @property
    def failed(self) -> int:
        return self.count(*FAILURES)

    @property
    def median(self) -> float:
        """Median validation accuracy over seeds."""
        return statistics.median(self.vals) if self.records else math.nan

    @property
    def median_test(self) -> float:
        return statistics.median(self.tests) if self.tests else math.nan

    @property
    def curves(self) -> list[list[dict]]:
        return [r.get("history") or [] for r in self.records]


OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}


def setting(record: dict, name: str):
    """The value of a setting in a record; `depth` and `width` are read off `hidden`."""
    hidden = record.get("hidden") or []
    if name == "depth":
        return len(hidden)
    if name == "width":
        return hidden[0] if hidden else 0
    if name == "hidden":
        return hidden[0] if len(hidden) == 1 else tuple(hidden)
    if name == "init":
        init = record.get("init")
        return f"{init}:{record['init_scale']:g}" if init in ("uniform", "normal") else init
    if name == "recipe":
        opt = record["optimizer"]
        kind = (OPTIMIZER_NAMES.get(opt, opt) if opt != "sgd" else
                f"SGD, momentum {record['momentum']:g}" if record.get("momentum") else "plain SGD")
        wd = f", weight decay {record['weight_decay']:g}" if record.get("weight_decay") else ""
        schedule = record.get("schedule", "constant")
        sched = "" if schedule == "constant" else f" ({schedule} over {record['epochs']} epochs)"
        ls = f", label smoothing {record['label_smoothing']:g}" if record.get("label_smoothing") else ""
        return f"{kind}, lr {record['lr']:g}{sched}{wd}{ls}, init {setting(record, 'init')}"
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
        cells[rows.index(_hashable(setting(r, row)))][cols.index(_hashable(setting(r, col)))].add(r)
    return rows, cols, cells


def best(points: list[Point]) -> Point | None:
    """The point with the highest median validation accuracy (the first one on ties)."""
    ok = [p for p in points if p.records]
    return max(ok, key=lambda p: p.median) if ok else None


# -- statistics -----------------------------------------------------------------------------------------------------


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of Welch's t-test for equal means. With no spread in either group the test is undefined:
    equal values give 1, different values 0 (nothing varies from seed to seed, so any gap is real)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return math.nan
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    with warnings.catch_warnings():  # nearly identical seeds: scipy warns of lost precision, the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def differs(a: Point, b: Point) -> bool:
    """Whether two settings' validation accuracies differ beyond their seed noise (Welch p < ALPHA)."""
    p = welch_p(a.vals, b.vals)
    return not math.isnan(p) and p < ALPHA


def trend_per_doubling(points: list[Point]) -> dict | None:
    """The least-squares line through every run's validation accuracy against log2 of its setting's value (values
    > 0): its slope in points per doubling, the two-sided p-value of the slope's t-test, and the number of runs.
    None when it cannot be fitted (fewer than 3 runs, or one value only)."""
    from scipy import stats

    xs = [math.log2(p.value) for p in points for _ in p.vals]
    ys = [100 * v for p in points for v in p.vals]
    if len(ys) < 3 or len(set(xs)) < 2:
        return None
    fit = stats.linregress(xs, ys)
    p = float(fit.pvalue)
    return {"slope": float(fit.slope), "p": 1.0 if math.isnan(p) else p, "n_runs": len(ys)}


def anova_two_way(y: list[list[float]]) -> dict:
    """Two-way ANOVA without replication of y[i][j] (row factor i, column factor j): for rows and columns, the sum of
    squares, degrees of freedom, F against the residual (the interaction) and its p-value."""
    from scipy import stats

    a, b = len(y), len(y[0])
    grand = statistics.fmean(v for row in y for v in row)
    row_means = [statistics.fmean(row) for row in y]
    col_means = [statistics.fmean(col) for col in zip(*y)]
    ss_rows = b * sum((m - grand) ** 2 for m in row_means)
    ss_cols = a * sum((m - grand) ** 2 for m in col_means)
    ss_res = sum((y[i][j] - row_means[i] - col_means[j] + grand) ** 2 for i in range(a) for j in range(b))
    df_rows, df_cols, df_res = a - 1, b - 1, (a - 1) * (b - 1)
    ms_res = ss_res / df_res

    def f_test(ss, df):
        if ms_res == 0:
            return (math.inf, 0.0) if ss > 0 else (math.nan, 1.0)
        f = (ss / df) / ms_res
        return f, float(stats.f.sf(f, df, df_res))

    f_rows, p_rows = f_test(ss_rows, df_rows)
    f_cols, p_cols = f_test(ss_cols, df_cols)
    return {"ss_rows": ss_rows, "ss_cols": ss_cols, "ss_res": ss_res, "df_rows": df_rows, "df_cols": df_cols,
            "df_res": df_res, "f_rows": f_rows, "p_rows": p_rows, "f_cols": f_cols, "p_cols": p_cols,
            "mean": grand, "min": min(min(r) for r in y), "max": max(max(r) for r in y)}


# -- claims -------------------------------------------------------------------------------------------------------


class _Formatter(string.Formatter):
    """Format specs for facts: pct (accuracy as %, 2 decimals), pct1, pp (a difference in percentage points), p (a
    p-value), f (an F statistic), v (a setting's value), vu (a setting's value with the claim's `unit` fact: "1 unit",
    "4 units"), n/NOUN (a count and its noun: "1 value", "3 values"; "no value" for 0), of=KEY,OWNER (a part of the
    fact KEY: "1 of its 3", or "all 3 of its" when it is all of them; Of=KEY,OWNER starts a sentence;
    each=KEY,OWNER says "each of the 5" for all of them), tied/NOUNS
    (the count of the claim's `n_others` tied with the best, as a phrase), count (an expected count: "about 3.2", or
    "fewer than 0.1"), "," (thousands separators); anything else is Python's own."""

    def vformat(self, format_string, args, kwargs):
        self._facts = kwargs
        return super().vformat(format_string, args, kwargs)

    def format_field(self, value, spec):
        if spec == "vu":
            return with_unit(value, self._facts.get("unit", ""))
        if spec.startswith("n/"):  # {k:n/value}: "no value", "1 value", "3 values"
            return f"{value if value else 'no'} {spec[2:]}{'' if value in (0, 1) else 's'}"
        if spec.startswith(("of=", "Of=", "each=")):  # {k:of=n,its}: "1 of its 3", "all 3 of its"
            how, rest = spec.split("=", 1)
            key, owner = rest.split(",", 1)
            total = self._facts[key]
            every = f"each of {owner} {total}" if how == "each" else f"all {total} of {owner}"
            text = every if value == total and total > 1 else f"{value} of {owner} {total}"
            return text[0].upper() + text[1:] if how == "Of" else text
        if spec.startswith("tied/"):  # {n_tied:tied/values}: how many of the n_others others tie with the best
            return tied_phrase(value, self._facts["n_others"], spec[len("tied/"):])
        if spec in ("pct", "pct1"):
            return pct(value, 2 if spec == "pct" else 1)
        if spec == "pp":
            return f"{100 * value:.2f}"
        if spec == "p":
            return fmt_p(value)
        if spec == "f":
            return "inf" if value == math.inf else f"{value:.2f}"
        if spec == "v":
            return fmt_value(value)
        if spec == "count":
            return "fewer than 0.1" if value < 0.05 else f"about {value:.1f}"
        return super().format_field(value, spec)


_FMT = _Formatter()

TEMPLATES = {
    "sweep_best": "On validation accuracy the best {name} is **{best:vu}** (median {best_val:pct} over {n} "
                  "seeds); {n_tied:tied/values}{tied}{tied_gap_said}.",
    "sweep_edge": "The best value is the {edge} value tried, so the optimum may lie beyond the range.",
    "sweep_edge_plateau": "The best value is the {edge} value tried, but it sits on a plateau: the {n_plateau:n/value} "
                          "next to it, back to {plateau_from:vu}, are tied with it{trend_said}. Whether accuracy rises "
                          "beyond the range is not measured.",
    "sweep_edge_rising": "The best value is the {edge} value tried. The {n_plateau:n/value} next to it, back to "
                         "{plateau_from:vu}, are each tied with it, but across them accuracy still rises toward the "
                         "edge: {slope:+.2f} points per doubling of the {name} (least squares over {n_runs} runs, p "
                         "{p:p}). So this is no plateau: the optimum may lie beyond the range, by a little.",
    "sweep_low_bad": "The low end is worse beyond seed noise: {low:vu} reaches a median of {low_val:pct} (Welch p "
                     "{low_p:p} against the best).",
    "sweep_low_ok": "The low end, {low:vu}, is tied with the best ({low_val:pct}, Welch p {low_p:p}): down to it, "
                    "no harm that these seeds can tell from noise.",
    "sweep_high_bad": "The high end is worse beyond seed noise: {high:vu} reaches a median of {high_val:pct} "
                      "(Welch p {high_p:p} against the best).",
    "sweep_low_bad_budget": "Within the {budget}-epoch budget the low end is worse: {low:vu} reaches a median of "
                            "{low_val:pct} (Welch p {low_p:p} against the best); {low_budget:of=low_n,its} runs "
                            "ended on the budget, not converged.",
    "sweep_high_bad_budget": "Within the {budget}-epoch budget the high end is worse: {high:vu} reaches a median of "
                             "{high_val:pct} (Welch p {high_p:p} against the best); {high_budget:of=high_n,its} runs "
                             "ended on the budget, not converged.",
    "sweep_low_unclear": "The low end, {low:vu}, reaches a median of {low_val:pct}, but its seeds spread too "
                         "widely to call it worse than the best (Welch p {low_p:p}).",
    "sweep_high_unclear": "The high end, {high:vu}, reaches a median of {high_val:pct}, but its seeds spread too "
                          "widely to call it worse than the best (Welch p {high_p:p}).",
    "sweep_high_ok": "A plateau, not an optimum: {high:vu} is tied with the best ({high_val:pct}, Welch p "
                     "{high_p:p}): up to {high:vu}, no harm that these seeds can tell from noise.",
    "sweep_failures": "{n_failed} of the {n_runs} runs failed: {where}.",
    "sweep_breakdown": "Converged, but broken down: {where}. These runs lost more than {points:g} points of "
                       "validation accuracy after the epoch they report, until the patience rule stopped them; they "
                       "count as converged with the earlier, better weights, not as finished models.",
    "sweep_little": "Never half right: {where}. {these} stayed finite and above the collapse line ({collapse:pct}), "
                    "so the stopping rule counts {them} as {kinds}, but at no epoch did {they} classify half of the "
                    "validation images correctly.",
    "chosen_test": "Its test accuracy: median {test:pct} over {n} seeds.",
    "anova": "A two-way ANOVA over {n_init} init seeds x {n_data} data orders: init seed F({df_rows}, {df_res}) = "
             "{f_rows:f}, p {p_rows:p} ({init_verdict}); data order F({df_cols}, {df_res}) = {f_cols:f}, p "
             "{p_cols:p} ({data_verdict}). Validation accuracy ranges from {min:pct} to {max:pct}, a standard "
             "deviation of {sd_points:.2f} points over the {n_runs} runs: {sd_said}.",
    "grid_best": "The best cell on validation is {row_name} {row:v} at learning rate {col:v} (median "
                 "{best_val:pct}); {n_tied:tied/cells}. Cells with at least one collapsed or diverged seed: "
                 "{n_failed_cells}{fell_said}.",
    "grid_best_lr": "The best learning rate per {row_name}: {per_row}.",
    "grid_trend": "{dead_said}From the smallest {row_name} to the largest, the best learning rate {trend}. The "
                  "rates tied with each row's best are {ranges}. {verdict}.{gap_note}{bound_note}",
    "live_gap": "Both errors are measured on the whole split after each epoch. The validation error is below the "
                "training error {below_said} (last epoch: {last_val:pct} validation against {last_train:pct} training "
                "accuracy). {reading}",
    "split": "A stored model at about the same fit (seed 0 of the learning-rate sweep at lr {lr:v}: {train:pct} on "
             "the {n_train:,} images it trained on) scores {val:pct} on validation, {gap:pp} points above that, "
             "against {live_gap:pp} for the thirty-line model after epoch {epoch}, where its gap is widest: {reading}.",
    "retuned": "At its own best learning rate, {name} {value:vu} reaches {value_val:pct} (learning rate "
               "{value_lr:v}{budget_note}) against {ref_val:pct} for {ref:vu} (learning rate {ref_lr:v}{ref_note}), "
               "Welch p {p:p}: {verdict}.",
    "recipe": "Chosen on validation: **{recipe}**, median validation accuracy {best_val:pct} over {n} seeds; "
              "{n_tied:tied/recipes}{bound_note}. Its test accuracy: median {test:pct} (range {test_min:pct} to "
              "{test_max:pct}), {verdict} this study's 98% goal (the assignment expects the mid-to-high 90s).",
    "recipe_short": "Chosen on validation (section 3): **{recipe}**, median test accuracy {test:pct}, {verdict} "
                    "this study's 98% goal.",
    "recipe_parts": "**{recipe}**, one part changed at a time ({n} seeds each), against its median "
                    "{full_val:pct}: {listed}. {verdict}.",
    "activations": "The identity activation (the MLP as one linear map) reaches {id_val:pct} against softmax "
                   "regression's {lin_val:pct}: {verdict} (Welch p {p:p}), so {id_said}. Sigmoid reaches {sig_val:pct} "
                   "against ReLU's {relu_val:pct}: {sig_verdict} (Welch p {sig_p:p}); {sig_budget:of=sig_n,sigmoid's} "
                   "runs ended on the budget, not converged, against {relu_budget} of ReLU's {relu_n}: {slow_said}.",
    "tiny_pooled": "Pooled, the {n_tiny} runs at the tiny scales ({tiny_said}) reach a mean of {tiny_mean:pct} "
                   "against {ref_mean:pct} for the {n_ref} runs at the other scales tied with the best ({ref_said}): "
                   "{gap:pp} points apart, Welch p {p:p}: {reading}. After the first epoch the tiny scales stand at "
                   "{tiny_e1:pct} against {ref_e1:pct}{start_said}; {tiny_budget} of their {n_tiny} runs ended on the "
                   "budget, not converged, against {ref_budget} of the {n_ref} others.",
    "linear_vs_mlp": "Trained with the same recipe and stopping rule, softmax regression reaches a median "
                     "validation accuracy of {lin_val:pct} and the 784-{width}-10 MLP {mlp_val:pct}: {gap:pp} points "
                     "apart (Welch p {p:p}).",
    "zero_exact": "In this run the zero-initialized units stayed exact copies of each other: their spread was exactly "
                  "0.0 at all {n_checks} checks up to step {last_step}, while the random init's spread was "
                  "{random_last:.2f}. After the {last_step} steps the zero-initialized network classifies "
                  "{zero_acc:pct} of the validation images correctly, the random init {random_acc:pct}.",
    "zero_rounding": "In this run rounding told the zero-initialized units apart: their spread was {first:.1e} at step "
                     "{first_step} and {last:.1e} at step {last_step}, against {random_last:.2f} for the random init. "
                     "After the {last_step} steps the zero-initialized network classifies {zero_acc:pct} of the "
                     "validation images correctly, the random init {random_acc:pct}.",
    "zero_stored": "In the stored init experiment, zero init ends with a median validation accuracy of {zero_val:pct} "
                   "(outcomes: {zero_outcomes}), against {random_val:pct} for the best random scheme, {random_name}.",
    "zero_one_class": "{n_one:Of=n,the} zero-initialized runs score exactly the share of one digit among the "
                      "validation images (digit and share: {classes}): they predict that one digit for every image.",
    "depth_signal": "From the first to the last of the {n_layers} layers, the activations' standard deviation is "
                    "multiplied by {act}. With the assignment's suggested {course} the signal after {n_layers} "
                    "layers is {course_ratio:.1e} of the first layer's. The weight gradients' standard deviation "
                    "(last layer over first: {grad}) {grad_verdict}; at the first layer it is {grad_first}.",
    "dead_units": "Dead hidden units rise with the learning rate (each rate's seed-0 model with at least 1% dead: "
                  "{ladder}). The converged or budget-stopped run with the most has {ok_dead:pct1} dead (learning "
                  "rate {ok_dead_lr:v}, validation accuracy {ok_dead_val:pct}), and the {n_collapsed} collapsed "
                  "seed-0 runs (learning rates {collapsed_lrs}) have {col_range}.",
    "dead_units_none": "No run collapsed; the largest fraction of dead hidden units is {ok_dead:pct1}.",
    "threads": "Trained twice with {t_a:n/thread}, the weights were {repeat}. Trained with {t_b:n/thread} instead, "
               "{n_diff:,} of {n_total:,} weights differed from the {t_a}-thread run (largest difference "
               "{max_diff:.1e}).",
    "misclassified": "Of the {n_test:,} test images, {n_any} are misclassified by at least one of the {n_seeds} seeds "
                     "and {n_all} by all of them: between {share_lo:pct1} and {share_hi:pct1} of each seed's "
                     "errors ({err_min} to {err_max} per seed). If the seeds erred independently, "
                     "{n_expected:count} would be misclassified by all.",
    "shared_mistakes": "Softmax regression (seed 0{retrained}), a different model, misclassifies {n_lin:,} test "
                       "images ({lin_rate:pct1}); of the {n_all} that every seed of the recipe misses, it "
                       "misclassifies {n_both} ({both_share:pct1}): {reading}.",
    "noise_model": "Tested with this one standard deviation ({sd:pp} points, from {n_runs} runs) for every setting "
                   "instead of each setting's own few seeds, each sweep value against its sweep's best: {said}.",
    "compute": "Counting each trial once, the study trained {model_epochs:,} model-epochs of the {budget_epochs:,} "
               "its budgets allowed ({share:pct1}); early stopping saved the rest{div_said}. The stored training time "
               "adds up to {seconds:,.0f} s against {predicted:,.0f} s predicted at the budget.",
    "smoothing_floor": "The label-smoothed recipe's dotted training loss is measured against its smoothed targets, so "
                       "it can never fall below their entropy, {floor:.2f} nats (smoothing {eps:g} over {classes} "
                       "classes); its validation loss is the plain cross-entropy. Its training curve lying above its "
                       "validation curve therefore says nothing about under- or overfitting.",
    "overfit": "Of the {n_runs} runs of the recipes, {n_after} trained on after their reported epoch. In {n_over} "
               "of those the training loss kept falling while the validation loss rose by more than its recipe's "
               "seed-to-seed spread (one standard deviation of the reported validation loss) and the validation "
               "accuracy at the last epoch was no higher than at the reported one{sizes_said}. In {n_acc_up}, the "
               "validation accuracy at the last epoch was higher than at the reported one: stopping on validation "
               "loss is not stopping on accuracy.",
    "confusions": "Seed {seed}'s most frequent confusions on the test set: {listed}; these three account for "
                  "{n_top} of its {n_errors} errors.",
    "neighbours": "By pixel distance, the nearest training image of each of the {n_hard} images that every seed "
                  "misses carries the true label for {nn_true} ({nn_true_share:pct1}) and the seeds' vote for "
                  "{nn_vote}, against {base_share:pct1} true labels for {n_base:,} test images drawn at random: "
                  "{reading}. Of the {n_shown} shown, {shown_true} have a nearest training image with the true "
                  "label and {shown_vote} one with the voted label.",
    "narrowest": "The two narrowest widths, {a:vu} and {b:vu}, reach medians of {a_val:pct} and {b_val:pct} (Welch "
                 "p {p:p}: {verdict}); {a_failed} of {a_n} runs failed at {a:vu}, {b_failed} of {b_n} at {b:vu}. The "
                 "narrowest width tried whose median beats {baseline_name} ({baseline:pct}) is {first_said}.",
    "bottleneck_1": "Seed {seed} of {width:vu} ({source_said}; scored in float32: {acc:pct} of the {n:,} "
                    "validation images{stored_said}): {zero_said}The 10 logits are straight lines in h, so the "
                    "prediction at each h is the top line there, and each digit gets at most one interval of h. From "
                    "h = 0 upward this model predicts {order_said}: {n_pred} of the 10 digits{never_said}.",
    "bottleneck_2": "Seed {seed} of {width:vu} ({source_said}; {acc:pct} of the validation images{stored_said}): "
                    "{zero_said}{rule_said}: it predicts {n_pred} of the 10 digits{never_said}.",
    "findings": "Of the chosen recipe's {n_parts} parts, changed one at a time (section 3): {parts_short}.\n- How "
                "the best learning rate moves across each grid's rows: {interactions}.\n- Randomness: {randomness}; "
                "the {n_anova} runs of one setting span {anova_min:pct} to {anova_max:pct} (standard deviation "
                "{anova_sd:.2f} points: single runs must differ by {bar_1:.2f} points, means of 3 seeds by "
                "{bar_3:.2f}, to be told apart).\n- Zero initialization ends at a "
                "median of {zero_val:pct}; {zero_one:of=zero_n,its} runs predict a single digit for every image."
                "\n- Searching at equal compute: {search}.",
    "ranking": "Over the whole range each sweep tried, ranked by the spread of median validation accuracy they "
               "cause (only sweeps with at least one value worse than the best beyond seed noise): {ranking}. "
               "{share_said}\n- "
               "Leaving out the controls ({controls}) and every value whose median does not beat {baseline_name} "
               "({baseline:pct}), the ranking is {ranking_working}.{fragile_said}{bound_said}",
    "search_compute": "Each method could spend {budget} model-epochs ({rounds} rounds of {round_epochs}). The grid "
                      "spent {grid_epochs} on {grid_trials} trials, random search {random_epochs} on {random_trials}, "
                      "and successive halving {halving_epochs} on {halving_trials}, {halving_pruned} of which it "
                      "stopped early; {n_failed:n/trial} diverged or failed. Random search and halving draw "
                      "from the same seeded stream: halving tried {n_shared:of=random_trials,random search's} "
                      "settings too, with the same training seed: on those the two trained the same model, until "
                      "halving stopped it, so there they differ only in where halving stopped.",
    "search_noise": "The noise of one run, measured on {n} seeds of one setting of this model and budget (learning "
                    "rate {lr:v}, momentum {momentum:v}): a standard deviation of {sd:pp} points of validation "
                    "accuracy, so two single runs of one setting differ by more than {threshold:pp} points in only 5% "
                    "of cases (a t distribution, df = {df}). That setting itself, the study's base, reached a median "
                    "of {noise_median:pct}: {noise_vs_best}.",
    "search_noise_none": "The noise of one run was not measured ({n} seed of the noise setting), so no difference "
                         "between the methods is called.",
    "search_best": "On validation, **{first}** found the best setting, {first_val:pct}, against {second_val:pct} for "
                   "{second} ({second_gap:pp} points lower: {second_verdict} seed noise, p {second_p:p}) and "
                   "{third_val:pct} for {third} ({third_gap:pp} points lower: {third_verdict} seed noise, p "
                   "{third_p:p}); {conclusion}.",
    "search_best_unmeasured": "On validation, **{first}** found the best setting, {first_val:pct}, against "
                              "{second_val:pct} for {second} and {third_val:pct} for {third}; without a measured "
                              "noise (or a completed trial in every search) these differences are not called.",
}


@dataclass(frozen=True)
class Claim:
    kind: str
    facts: dict

    @property
    def text(self) -> str:
        return render(self.kind, self.facts)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "facts": self.facts, "text": self.text}


def render(kind: str, facts: dict) -> str:
    return _FMT.format(TEMPLATES[kind], **facts)


def _tied_gap_said(gaps: list[float]) -> str:
    """How far below the best the values tied with it lie (gaps: [nearest, farthest], fractions; [] for none):
    tied means "not told apart", not "equal"."""
    if not gaps:
        return ""
    return f" (their medians {_range([100 * g for g in gaps], '.2f')} points lower, not told apart)"


def sweep_claims(points: list[Point], name: str, unit: str = "", experiment: str = "") -> list[Claim]:
    """What a one-at-a-time sweep shows, as claims: the best value on validation and the values tied with it, an
    edge optimum, both ends (clearly worse, or not: a plateau), and its failures."""
    pts = [p for p in points if p.records]
    b = best(pts)
    tied = [p for p in pts if p is not b and not differs(p, b)]
    base = {"experiment": experiment, "name": name, "unit": unit}
    gaps = [b.median - max(p.median for p in tied), b.median - min(p.median for p in tied)] if tied else []
    out = [Claim("sweep_best", {**base, "best": b.value, "best_val": b.median, "n": b.n, "n_tied": len(tied),
                                "n_others": len(pts) - 1,
                                "tied": "".join(f"{', ' if k else ': '}{with_unit(p.value, unit)}"
                                                for k, p in enumerate(tied)),
                                "tied_gaps": gaps, "tied_gap_said": _tied_gap_said(gaps)})]
    ordered = all(isinstance(p.value, (int, float)) and not isinstance(p.value, bool) for p in pts)
    if ordered and len(pts) > 2:
        if b is pts[0] or b is pts[-1]:
            edge = {**base, "edge": "smallest" if b is pts[0] else "largest"}
            inward = pts[1:] if b is pts[0] else pts[-2::-1]  # the other values, nearest to the edge first
            plateau = list(itertools.takewhile(lambda p: not differs(p, b), inward))
            if not plateau:
                out.append(Claim("sweep_edge", edge))
            else:  # tied pairwise; but does accuracy still climb toward the edge across the plateau?
                trend = trend_per_doubling([b, *plateau]) if pts[0].value > 0 else None
                facts = {**edge, "n_plateau": len(plateau), "plateau_from": plateau[-1].value}
                toward = trend is not None and (trend["slope"] > 0 if b is pts[-1] else trend["slope"] < 0)
                if toward and trend["p"] < ALPHA:
                    out.append(Claim("sweep_edge_rising", {**facts, **trend}))
                else:
                    said = "" if trend is None else (
                        f", and across them accuracy shows no trend toward the edge beyond seed noise "
                        f"({trend['slope']:+.2f} points per doubling of the {name}, least squares over "
                        f"{trend['n_runs']} runs, p {fmt_p(trend['p'])})")
                    out.append(Claim("sweep_edge_plateau", {**facts, **(trend or {}), "trend_said": said}))
        for end, p in (("low", pts[0]), ("high", pts[-1])):
            if p is b:
                continue
            # worse beyond seed noise; else a plateau if its median lies within the best's seeds; else unclear
            verdict = ("bad" if differs(p, b) and p.median < b.median else
                       "ok" if p.median >= min(b.vals) else "unclear")
            facts = {**base, end: p.value, f"{end}_val": p.median, f"{end}_p": welch_p(p.vals, b.vals)}
            if verdict == "bad" and budget_bound(p):  # say so
                verdict = "bad_budget"
                facts.update({f"{end}_budget": stopped_by_budget(p), f"{end}_n": p.n,
                              "budget": max(r["epochs"] for r in p.records)})
            out.append(Claim(f"sweep_{end}_{verdict}", facts))
    failed, broke, little = failure_claim(pts, base), breakdown_claim(pts, base), little_claim(pts, base)
    return out + [c for c in (failed, broke, little) if c]


BREAKDOWN = 0.10  # a converged run that lost more than this much validation accuracy after its reported epoch


def broke_down(record: dict, o: Outcome) -> bool:
    """A converged run whose last epoch's validation accuracy is more than BREAKDOWN below its reported epoch's:
    training broke down after the reported epoch, and the patience rule stopped it with the earlier weights."""
    h = record.get("history") or []
    if o.kind != "converged" or not o.best_epoch or not h:
        return False
    return (h[o.best_epoch - 1].get("val_accuracy") or 0.0) - (h[-1].get("val_accuracy") or 0.0) > BREAKDOWN


LEARNED = 0.5  # a finite run that never classified this share of the validation images correctly learned little


def peak_accuracy(record: dict) -> float:
    """The best validation accuracy of any epoch of a run (0 without a history)."""
    return max([e.get("val_accuracy") or 0.0 for e in record.get("history") or []], default=0.0)


def learned_little(record: dict, o: Outcome) -> bool:
    """A run that did not fail by the rule (converged or stopped by the budget) yet was never half right."""
    return o.kind in ("converged", "budget") and peak_accuracy(record) < LEARNED


def little_claim(points: list[Point], base: dict) -> Claim | None:
    """The values of a sweep with runs that count as converged or budget-stopped but never classified half of the
    validation images correctly (None when none): above the collapse line, yet failed to learn by any reading."""
    rows = []
    for p in points:
        runs = [(r, o) for r, o in zip(p.records, p.outcomes) if learned_little(r, o)]
        if runs:
            peaks = [peak_accuracy(r) for r, _ in runs]
            rows.append({"value": p.value, "k": len(runs), "n": p.n, "low": min(peaks), "high": max(peaks),
                         "kinds": sorted({o.kind for _, o in runs})})
    if not rows:
        return None
    where = "; ".join(_FMT.format("at {value:vu}, {k:of=n,its} runs (at best {low:pct} to {high:pct})" if r["k"] > 1
                                  else "at {value:vu}, {k:of=n,its} runs (at best {low:pct})",
                                  **r, unit=base.get("unit", "")) for r in rows)
    kinds = [k for k in OUTCOMES if any(k in r["kinds"] for r in rows)]
    said = " or ".join({"converged": "converged", "budget": "stopped by the budget"}[k] for k in kinds)
    one = sum(r["k"] for r in rows) == 1
    return Claim("sweep_little", {**base, "rows": rows, "where": where, "kinds": said,
                                  "these": "This run" if one else "These runs", "them": "it" if one else "them",
                                  "they": "it" if one else "they",
                                  "collapse": COLLAPSE_FACTOR / N_CLASSES, "learned": LEARNED})


def breakdown_claim(points: list[Point], base: dict) -> Claim | None:
    """The values of a sweep with converged runs that broke down after their reported epoch (None when none did):
    'converged' is the stopping rule, and these runs would otherwise read as finished models. A run that was never
    half right is told by `little_claim` instead (once, not twice)."""
    rows = []
    for p in points:
        runs = [(r, o) for r, o in zip(p.records, p.outcomes) if broke_down(r, o) and not learned_little(r, o)]
        if runs:
            rows.append({"value": p.value, "k": len(runs), "n": p.n,
                         "reported": statistics.median(r["history"][o.best_epoch - 1]["val_accuracy"] for r, o in runs),
                         "last": statistics.median(r["history"][-1]["val_accuracy"] for r, _ in runs),
                         "epoch": statistics.median(o.best_epoch for _, o in runs),
                         "peak": max((e.get("val_accuracy") or 0.0) for r in p.records
                                     for e in r.get("history") or [])})  # the best epoch of any run of the value
    if not rows:
        return None
    where = "; ".join(_FMT.format("at {value:vu}, {k:of=n,its} runs (median {reported:pct} at the reported epoch, "
                                  "{last:pct} at the last; the best any of its {n} runs reached at any epoch: "
                                  "{peak:pct})", **r, unit=base.get("unit", "")) for r in rows)
    return Claim("sweep_breakdown", {**base, "rows": rows, "points": 100 * BREAKDOWN, "where": where})


def stopped_by_budget(p: Point) -> int:
    """How many of a point's runs had early stopping on (patience > 0) yet ran out of budget before it fired."""
    return sum(o.kind == "budget" and bool(r.get("patience")) for r, o in zip(p.records, p.outcomes))


def budget_bound(p: Point) -> bool:
    """Whether most of a point's runs stopped on the budget, so that its median is a budget-stopped run's: a verdict
    on it holds within the budget only."""
    return 2 * stopped_by_budget(p) > p.n


def versus(p: Point, ref: Point) -> str:
    """p against ref on validation accuracy: tied, or worse or better beyond seed noise (Welch p < ALPHA)."""
    return ("tied" if not differs(p, ref) else "worse beyond seed noise" if p.median < ref.median
            else "better beyond seed noise")


def failure_claim(points: list[Point], base: dict) -> Claim | None:
    """Which values of a sweep had runs that collapsed or diverged, and how many (None when none did: the tables
    count every outcome, so a sentence saying nothing failed would only repeat them)."""
    failed = [[p.value, p.count("collapsed"), p.count("diverged")] for p in points if p.failed]
    if not failed:
        return None

    def what(c, d):
        return " and ".join(f"{k} {word}" for k, word in ((c, "collapsed"), (d, "diverged")) if k)

    return Claim("sweep_failures", {**base, "n_runs": sum(p.n for p in points), "failed": failed,
                                    "n_failed": sum(c + d for _, c, d in failed),
                                    "where": ", ".join(f"{with_unit(v, base.get('unit', ''))} ({what(c, d)})"
                                                       for v, c, d in failed)})


def chosen_test_claim(p: Point, experiment: str = "") -> Claim:
    return Claim("chosen_test", {"experiment": experiment, "value": p.value, "test": p.median_test,
                                 "n": len(p.tests)})


def mostly_failed(c: Point) -> bool:
    """Most of a setting's seeds collapsed or diverged: its median run failed."""
    return 2 * c.failed > c.n


def grid_tied(c: Point, b: Point) -> bool:
    """A grid cell tied with the best of its row or grid: Welch cannot tell them apart, and it is not a cell whose
    median run failed beside a best whose median run did not (seeds split between chance and a trained model spread
    so widely that Welch ties them with anything)."""
    return not differs(c, b) and not (mostly_failed(c) and not mostly_failed(b))


def dead_row(row: list[Point]) -> bool:
    """A grid row in which no column trains: most seeds of every cell collapsed or diverged."""
    return all(mostly_failed(c) for c in row if c.records)


def grid_claims(rows: list, cols: list, cells: list[list[Point]], row_name: str, experiment: str = "") -> list[Claim]:
    """The best cell on validation, the cells tied with it, cells with failed seeds, and the best column per row."""
    flat = [c for r in cells for c in r if c.records]
    b = best(flat)
    tied = [c for c in flat if c is not b and grid_tied(c, b)]
    fell = [c for c in flat if not c.failed and any(broke_down(r, o) for r, o in zip(c.records, c.outcomes))]
    per_row = []
    for i, r in enumerate(cells):
        rb = best(r)
        if rb is not None:
            per_row.append(f"{fmt_value(rows[i])} → " + ("none trains" if dead_row(r) else
                                                          fmt_value(cols[r.index(rb)])))
    base = {"experiment": experiment, "row_name": row_name}
    return [Claim("grid_best", {**base, "row": b.value[0], "col": b.value[1], "best_val": b.median,
                                "n_tied": len(tied), "n_others": len(flat) - 1,
                                "n_failed_cells": sum(c.failed > 0 for c in flat), "n_fell_cells": len(fell),
                                "fell_said": f"; and {len(fell)} more with a converged seed that broke down afterwards "
                                f"(x)" if fell else ""}),
            Claim("grid_best_lr", {**base, "per_row": ", ".join(per_row)}),
            trend_claim(cols, cells, base)]


def retuned_claims(rows: list, cells: list[list[Point]], ref, name: str, unit: str = "",
                   experiment: str = "") -> list[Claim]:
    """Each row of a setting x learning-rate grid at its own best rate, against row `ref` at its best rate (the row of
    the grid's best cell when the grid has no row `ref`): does the difference a one-at-a-time sweep saw at one fixed
    rate survive re-tuning the rate?"""
    if ref not in rows:
        top = best([c for row in cells for c in row if c.records])
        if top is None:
            return []
        ref = top.value[0]
    r = best(cells[rows.index(ref)])
    ref_stopped = stopped_by_budget(r) if r is not None else 0

    def budget_note(k, n):
        return f"; {_FMT.format('{k:of=n,its}', k=k, n=n)} runs stopped on the budget" if k else ""

    out = []
    for value, row in zip(rows, cells):
        b = best(row)
        if value == ref or b is None or r is None:
            continue
        stopped = stopped_by_budget(b)
        verdict = versus(b, r)
        if verdict.startswith("worse") and budget_bound(b):
            verdict += " within the budget"
        out.append(Claim("retuned", {"experiment": experiment, "name": name, "unit": unit, "value": value,
                                     "value_val": b.median, "value_lr": b.value[1], "ref": ref, "ref_val": r.median,
                                     "ref_lr": r.value[1], "p": welch_p(b.vals, r.vals), "verdict": verdict,
                                     "n_budget": stopped, "n": b.n,
                                     "budget_note": budget_note(stopped, b.n), "ref_budget": ref_stopped,
                                     "ref_note": budget_note(ref_stopped, r.n)}))
    return out


def best_everywhere(rates: list) -> str:
    """The rates that are the best or tied with it in every row of a grid, as the text says it."""
    return f"{' and '.join(fmt_value(c) for c in rates)} {'is' if len(rates) == 1 else 'are'} the best rate or tied " \
           "with it in every row"


def trend_claim(cols: list, cells: list[list[Point]], base: dict) -> Claim:
    """Does the best column (learning rate) move with the row setting, beyond seed noise? Per row, the columns tied
    with that row's best (Welch p >= ALPHA) form a range; a rising (falling) best is called beyond noise only when
    each row's range lies wholly above (below) the previous row's."""
    bests, ranges, tied_sets, bound_rows, budget, dead = [], [], [], [], None, []
    for r in cells:
        rb = best(r)
        if rb is None:
            continue
        if dead_row(r):  # no rate trains here: such a row has no best rate to follow
            dead.append(rb.value[0])
            continue
        if budget_bound(rb):  # this row's best rate is the best within the epoch budget
            bound_rows.append(rb.value[0])
            budget = rb.records[0].get("epochs")
        tied = sorted(cols.index(c.value[1]) for c in r if c.records and (c is rb or grid_tied(c, rb)))
        bests.append(cols.index(rb.value[1]))
        ranges.append((min(tied), max(tied), rb.value[0]))
        tied_sets.append(tied)
    moves = list(zip(bests, bests[1:]))
    # monotone allowing ties between neighbouring rows ("rises" needs at least one strict step)
    trend = ("stays" if all(a == b for a, b in moves) else "rises" if all(a <= b for a, b in moves)
             else "falls" if all(a >= b for a, b in moves) else "moves without a monotone trend")
    weak = trend in ("rises", "falls") and any(a == b for a, b in moves)
    pairs = list(zip(ranges, ranges[1:]))
    apart = [a[1] < b[0] if trend == "rises" else a[0] > b[1] for a, b in pairs] if trend in ("rises", "falls") else []
    separated = bool(apart) and all(apart)

    def steps(keep):
        return ", ".join(f"{fmt_value(a[2])} and {fmt_value(b[2])}" for (a, b), x in zip(pairs, apart) if x == keep)

    common = sorted(set.intersection(*map(set, tied_sets))) if tied_sets else []
    verdict = (f"No shift is claimed: {best_everywhere([cols[i] for i in common])}"
               if not apart and common and trend != "stays" else "No shift is claimed" if not apart else
               "Each row's range lies wholly beyond the previous row's, so the shift is beyond seed noise" if separated
               else "Neighbouring rows' ranges overlap, so the shift is not established beyond seed noise"
               if not any(apart) else
               f"The ranges do not overlap between {steps(True)}, a shift beyond seed noise there, but they do "
               f"between {steps(False)}")
    def tied_text(lo, hi, tied):  # a contiguous run of rates as a range, anything else listed
        if hi == lo:
            return f"{fmt_value(cols[lo])} only"
        if len(tied) == hi - lo + 1:
            return f"{fmt_value(cols[lo])} to {fmt_value(cols[hi])}"
        return _listed([fmt_value(cols[i]) for i in tied])

    shown = "; ".join(f"{fmt_value(row)}: {tied_text(lo, hi, tied)}" for (lo, hi, row), tied in zip(ranges, tied_sets))
    said = ("stays the same" if trend == "stays" else
            f"{trend}, with some neighbouring rows sharing a best rate" if weak else trend)
    # a row whose tied rates skip one that is worse: its spread of seeds is wide enough to tie a far rate with the best
    gapped = [row for (lo, hi, row), tied in zip(ranges, tied_sets) if len(tied) != hi - lo + 1]
    gap_note = (f" At {_plural(base['row_name'], len(gapped))} {_listed([fmt_value(r) for r in gapped])} the tied "
                "rates skip a rate "
                "that is worse: there the seeds spread so widely that a distant rate ties with the best, so that "
                "row's range locates its best rate only loosely." if gapped else "")
    one = len(bound_rows) == 1
    whose, what = ("the", "that row's best rate is") if one else ("each row's", "those rows' best rates are")
    bound_note = (f" At {_plural(base['row_name'], len(bound_rows))} {_listed([fmt_value(r) for r in bound_rows])} "
                  f"most runs of {whose} "
                  f"best cell stopped on the {budget}-epoch budget, so {what} the best within the budget."
                  if bound_rows else "")  # any trend: a best rate stopped by the budget may move with more epochs
    dead_said = (f"At {_plural(base['row_name'], len(dead))} {_listed([fmt_value(r) for r in dead])} no learning "
                 "rate trains: most seeds of every cell collapsed or diverged, so what follows leaves "
                 f"{'that row' if len(dead) == 1 else 'those rows'} out. " if dead else "")
    return Claim("grid_trend", {**base, "trend": said, "direction": trend, "gapped": gapped, "gap_note": gap_note,
                                "dead_rows": dead, "dead_said": dead_said,
                                "bound_rows": bound_rows, "bound_note": bound_note,
                                "separated": separated, "steps_apart": apart, "best_cols": [cols[i] for i in bests],
                                "common": [cols[i] for i in common], "rows": [r[2] for r in ranges],
                                "ranges": shown, "verdict": verdict})


def anova_claim(records: list[dict], experiment: str = "") -> Claim:
    """Init seed vs data order, from a crossed grid of one configuration (validation accuracy)."""
    rows, cols, cells = grid(records, "seed", "data_seed")
    y = [[statistics.fmean(c.vals) for c in r] for r in cells]
    a = anova_two_way(y)

    def verdict(p):
        return "a detectable effect" if p < ALPHA else "no detectable effect"

    from scipy import stats

    flat = [v for r in y for v in r]
    sd = 100 * statistics.stdev(flat)
    # the smallest difference a t-test at ALPHA tells apart, with this SD (len(flat) - 1 degrees of freedom), between
    # two single runs and between the means of two groups of 3 seeds (the sweeps' count)
    t = float(stats.t.ppf(1 - ALPHA / 2, len(flat) - 1))
    bar_1, bar_3 = t * sd * math.sqrt(2), t * sd * math.sqrt(2 / 3)
    neither = a["p_rows"] >= ALPHA and a["p_cols"] >= ALPHA
    sd_said = (("neither seed alone explains that spread; it is " if neither else "this is ")
               + f"the run-to-run noise of one setting. With it, two single runs must differ by more than "
                 f"{bar_1:.2f} points to be told apart at the {ALPHA:.0%} level, and the means of 3 seeds each by "
                 f"more than {bar_3:.2f}")
    return Claim("anova", {"experiment": experiment, "n_init": len(rows), "n_data": len(cols),
                           **{k: a[k] for k in ("df_rows", "df_cols", "df_res", "f_rows", "p_rows", "f_cols",
                                                "p_cols", "min", "max")},
                           "init_verdict": verdict(a["p_rows"]), "data_verdict": verdict(a["p_cols"]),
                           "sd_points": sd, "n_runs": len(flat), "sd_said": sd_said, "bar_1": bar_1,
                           "bar_3": bar_3})


_SPLIT_ALONE = ("so the split alone can account for {} of that gap (the held-out images are easier to classify at "
                "this fit); this one comparison, with another network and one seed, suggests it rather than proves it")
SPLIT_READINGS = {"all": _SPLIT_ALONE.format("all"), "most": _SPLIT_ALONE.format("most"),
                  "part": "by this one comparison, part of that gap comes from the split, the rest from the network",
                  "none": "by this one comparison, the gap does not come from the split"}


def live_gap_claim(log: list[dict], window: int = 5) -> Claim:
    """Training against validation accuracy of a model trained live, per epoch (log: [{"epoch", "train_accuracy",
    "val_accuracy"}]): after which epochs validation is ahead, and, once training is ahead at the end, whether
    validation accuracy still rose over the last `window` epochs and whether the train-validation gap grew over
    them (a growing gap while validation still rises is not yet the fall in validation that marks overfitting).
    Also the epoch where validation is furthest ahead (the split's share of that gap is the split claim's)."""
    n = len(log)
    ahead = [h["val_accuracy"] > h["train_accuracy"] for h in log]
    k = sum(ahead)
    below_said = (f"after each of the {n} epochs" if k == n and n > 1 else "after the epoch" if k == n else
                  "after none of the epochs" if k == 0 else
                  f"after each of epochs 1 to {k}, not after epochs {k + 1} to {n}"
                  if ahead == [True] * k + [False] * (n - k)
                  else f"after {k} of the {n} epochs")
    last, w = log[-1], min(window, n - 1)
    rise = last["val_accuracy"] - log[-1 - w]["val_accuracy"] if w > 0 else 0.0
    span = "the last epoch" if w == 1 else f"the last {w} epochs"
    gap, gap_then = last["train_accuracy"] - last["val_accuracy"], (
        log[-1 - w]["train_accuracy"] - log[-1 - w]["val_accuracy"] if w > 0 else None)
    gap_said = (f"The gap between training and validation accuracy {'grew' if gap > gap_then else 'did not grow'} "
                f"over those epochs ({100 * gap_then:.2f} to {100 * gap:.2f} points)" if w > 0 else "")
    reading = ("That rules out overfitting so far." if ahead[-1] else
               f"Validation accuracy still rose by {100 * rise:.2f} points over {span}. {gap_said}, but validation "
               "accuracy has not started to fall." if rise > 0 else
               f"Validation accuracy did not rise over {span} ({100 * rise:+.2f} points): more epochs "
               "would fit the training images further without helping on new ones.")
    widest = max(log, key=lambda h: h["val_accuracy"] - h["train_accuracy"])
    return Claim("live_gap", {"n_below": k, "n": n, "below_said": below_said, "last_train": last["train_accuracy"],
                              "last_val": last["val_accuracy"], "window": w, "rise": rise, "reading": reading,
                              "widest_epoch": widest["epoch"], "widest_train": widest["train_accuracy"],
                              "widest_val": widest["val_accuracy"], "gap": gap, "gap_then": gap_then})


def split_claim(key: str, lr: float, train: float, val: float, live_train: float, live_val: float,
                n_train: int, epoch: int) -> Claim:
    """How much of a model's validation-over-training gap the split itself gives: a stored model at about the same
    training accuracy (key, lr, its train and val accuracy) against the live one's gap. Most when the stored gap is
    at least half the live one."""
    gap, live_gap = val - train, live_val - live_train
    share = gap / live_gap if live_gap > 0 else math.nan
    verdict = "all" if share >= 1 else "most" if share >= 0.5 else "part" if share > 0 else "none"
    return Claim("split", {"key": key, "lr": lr, "train": train, "val": val, "gap": gap, "live_gap": live_gap,
                           "live_train": live_train, "n_train": n_train, "verdict": verdict, "epoch": epoch,
                           "reading": SPLIT_READINGS[verdict]})


def narrowest_claim(points: list[Point], baseline: float, baseline_name: str, unit: str = "",
                    experiment: str = "") -> Claim:
    """The bottom of a width sweep: whether its two narrowest widths can be told apart, how many of their runs failed,
    and the narrowest width whose median beats the baseline (softmax regression)."""
    a, b = [p for p in points if p.records][:2]
    p = welch_p(a.vals, b.vals)
    tried = [q for q in points if q.records]
    first = next((q for q in tried if q.median > baseline), None)
    below = tried[tried.index(first) - 1] if first is not None and tried.index(first) > 0 else None
    return Claim("narrowest", {"experiment": experiment, "unit": unit, "a": a.value, "b": b.value,
                               "a_val": a.median, "b_val": b.median, "a_n": a.n, "b_n": b.n, "a_failed": a.failed,
                               "b_failed": b.failed, "p": p,
                               "verdict": "tied" if not differs(a, b) else "apart beyond seed noise",
                               "baseline": baseline, "baseline_name": baseline_name,
                               "first": first.value if first else None, "first_val": first.median if first else None,
                               "below": below.value if below else None,
                               "below_val": below.median if below else None,
                               "first_said": (f"{with_unit(first.value, unit)} ({pct(first.median, 2)})" if first
                                              else "none of the widths tried")
                               + (f"; the next narrower, {with_unit(below.value, unit)}, reaches "
                                  f"{pct(below.median, 2)}" if below else "")})


def bottleneck_claim(key: str, seed: int, codes: list[list[float]], pred: list[int], y: list[int],
                     stored: bool = True, stored_acc: float | None = None, precision: str = "fp32") -> Claim:
    """What a network with one or two hidden units does with them: codes (N, H) are each image's hidden values, pred
    and y (N,) its predicted and true digits. Facts: the accuracy, the images whose every hidden value is 0 (they all
    get one prediction), the digits it predicts at all, and for one unit the order of its intervals along h.
    stored_acc: the validation accuracy stored with the run, measured in its `precision` (said beside the float32
    one when the two differ, so that the two numbers a reader finds are reconciled)."""
    width, n = len(codes[0]), len(y)
    assert width in (1, 2), f"one or two hidden units, got {width}"
    zero = [i for i, c in enumerate(codes) if not any(c)]
    zero_preds = sorted({pred[i] for i in zero})
    dead = [j for j in range(width) if not any(c[j] for c in codes)]  # hidden units that are 0 for every image
    said = ""
    if width == 2 and len(dead) == 1:
        said = (f"its hidden unit {dead[0] + 1} is 0 for every image (a dead unit, as in section 6), so it has one "
                "number to work with; ")
    which = ("its hidden number h is" if width == 1 else f"hidden unit {2 - dead[0]} is" if said else
             "its two hidden numbers are both")
    if not zero:
        said += ("its two hidden numbers are never both 0. " if which.endswith("both") else f"{which} never 0. ")
    else:
        images = f"{len(zero):,} image{'' if len(zero) == 1 else 's'}"
        same = (f"all get the same prediction, {zero_preds[0]}" if len(zero_preds) == 1 else
                f"get the predictions {_listed(zero_preds)}")
        said += f"{which} 0 for {images} ({pct(len(zero) / n, 1)}), and those {same}. "
    predicted = sorted(set(pred))
    never = [d for d in range(N_CLASSES) if d not in predicted]
    facts = {"key": key, "seed": seed, "width": width, "unit": " units", "n": n, "stored": stored,
             "source_said": "its stored weights" if stored else "trained again here, as this store predates keeping "
             "its weights", "stored_acc": stored_acc, "precision": precision,
             "acc": sum(p == t for p, t in zip(pred, y)) / n, "n_zero": len(zero), "zero_preds": zero_preds,
             "dead": [j + 1 for j in dead], "zero_said": said, "n_pred": len(predicted), "never": never,
             "never_said": f", never {_listed(never, 'or')}" if never else ""}
    acc = facts["acc"]
    facts["stored_said"] = (f"; the run stored {pct(stored_acc, 2)}, measured under {precision} autocast"
                            if stored_acc is not None and round(stored_acc, 4) != round(acc, 4) else "")
    facts["rule_said"] = ("The output layer then predicts by intervals of that one number, as for 1 unit" if dead
                          else "With two numbers the output layer cuts the plane into at most one convex region per "
                          "digit (the top of 10 planes)")
    if width == 1:
        order = []
        for i in sorted(range(n), key=lambda i: (codes[i][0], i)):
            if not order or order[-1] != pred[i]:
                order.append(pred[i])
        facts |= {"order": order, "order_said": ", ".join(map(str, order))}
    return Claim(f"bottleneck_{min(width, 2)}", facts)


def _plural(noun: str, n: int) -> str:
    """'width' for one, 'widths' for more ('batch size' -> 'batch sizes')."""
    return noun if n == 1 else noun + "s"


def _listed(xs: list, conjunction: str = "and") -> str:
    """'3', '3 and 5', '0, 3 and 5' (or 'or')."""
    xs = [str(x) for x in xs]
    return xs[0] if len(xs) == 1 else f"{', '.join(xs[:-1])} {conjunction} {xs[-1]}"


def tiny_pooled_claim(points: list[Point], tiny: list, experiment: str = "") -> Claim | None:
    """The tiny init scales pooled against the sweep's other scales tied with the best: a few seeds per value cannot
    see a small cost, their pooled runs can (None without tiny values, or without others tied with the best)."""
    top = best([p for p in points if p.value not in tiny])
    if top is None:
        return None
    small = [p for p in points if p.value in tiny and p.records]
    ref = [p for p in points if p.value not in tiny and p.records and (p is top or versus(p, top) == "tied")]
    if not small or len(ref) < 2:
        return None

    def pooled(ps):
        return [v for p in ps for v in p.vals]

    def first_epoch(ps):
        return statistics.fmean((r["history"][0].get("val_accuracy") or 0.0) for p in ps for r in p.records
                                if r.get("history"))

    a, b = pooled(small), pooled(ref)
    p = welch_p(a, b)
    gap = statistics.fmean(b) - statistics.fmean(a)
    reading = ("the tiny scales tie with them, pooled as well" if not p < ALPHA else
               "a small cost of the tiny scales, beyond seed noise pooled. No single tiny scale can be told from the "
               "best with its few seeds, so the sweep's \"tied\" holds scale by scale, not for the tiny "
               "scales together. The comparison group was chosen after seeing the sweep (the scales tied with its "
               "best), so read this p-value as exploratory, not as a test planned in advance" if gap > 0 else
               "the tiny scales do better, pooled")
    e1_small, e1_ref = first_epoch(small), first_epoch(ref)
    rest = [q for q in points if q.value not in tiny and q.records]
    at = [rest.index(q) for q in ref]
    contiguous = at == list(range(at[0], at[0] + len(at)))  # "a to b" only when every value between is in the group
    return Claim("tiny_pooled", {
        "experiment": experiment, "tiny": [q.value for q in small], "ref": [q.value for q in ref],
        "tiny_said": ", ".join(fmt_value(q.value) for q in small),
        "ref_said": f"{fmt_value(ref[0].value)} to {fmt_value(ref[-1].value)}" if len(ref) > 2 and contiguous
        else _listed([fmt_value(q.value) for q in ref]),
        "n_tiny": len(a), "n_ref": len(b), "tiny_mean": statistics.fmean(a), "ref_mean": statistics.fmean(b),
        "gap": abs(gap), "p": p, "reading": reading, "tiny_e1": e1_small, "ref_e1": e1_ref,
        "tiny_budget": sum(stopped_by_budget(q) for q in small), "ref_budget": sum(stopped_by_budget(q) for q in ref),
        "start_said": ": they start slower, and still learn (unlike the exact zero of section 4)" if e1_small < e1_ref
        else ""})


def activations_claim(points: list[Point], linear: Point, experiment: str = "") -> Claim | None:
    """The activation sweep against what its introduction expects: the identity activation (the MLP collapsed to one
    linear map) against softmax regression, and sigmoid's budget stops against ReLU's (None without all three)."""
    by = {p.value: p for p in points if p.records}
    if not {"identity", "sigmoid", "relu"} <= by.keys():
        return None
    ident, sig, relu = by["identity"], by["sigmoid"], by["relu"]
    verdict, sig_verdict = versus(ident, linear), versus(sig, relu)
    if sig_verdict != "tied" and budget_bound(sig):
        sig_verdict += " within the budget"
    slower = stopped_by_budget(sig) > stopped_by_budget(relu)
    return Claim("activations", {"experiment": experiment, "id_val": ident.median, "lin_val": linear.median,
                                 "p": welch_p(ident.vals, linear.vals), "verdict": verdict,
                                 "id_said": "no gain from the hidden layer is seen (a linear one cannot add "
                                 "any), as expected" if verdict != "better beyond seed noise" else
                                 "the hidden layer helps, against the expectation",
                                 "sig_p": welch_p(sig.vals, relu.vals), "sig_verdict": sig_verdict,
                                 "slow_said": "sigmoid learns more slowly, as expected" if slower else
                                 "no sign here that sigmoid learns more slowly",
                                 "sig_val": sig.median, "sig_budget": stopped_by_budget(sig), "sig_n": sig.n,
                                 "relu_val": relu.median, "relu_budget": stopped_by_budget(relu), "relu_n": relu.n})


def findings_claim(trends: dict[str, Claim], anova: Claim, zero: Claim, zero_classes: Claim,
                   search: list[Claim], parts: Claim) -> Claim:
    """What the summary says beyond the ranking, each fact copied from the claim that states it in its own section
    (so it is recomputed wherever that claim is): which parts of the recipe matter, how the best learning rate moves
    in each grid ({row name: its grid_trend claim}), the randomness ANOVA, zero initialization, and the search
    comparison."""
    def status(f):
        if f["direction"] not in ("rises", "falls"):
            said = ([best_everywhere(f["common"])] if f["common"] and f["direction"] != "stays" else []) + (
                ["within the epoch budget"] if f["bound_rows"] else [])
            return f" ({'; '.join(said)})" if said else ""
        steps = [f"from {fmt_value(a)} to {fmt_value(b)}" for a, b, x in zip(f["rows"], f["rows"][1:],
                                                                               f["steps_apart"]) if x]
        within = ", within the epoch budget" if steps and f["bound_rows"] else ""
        return (f" (beyond seed noise{within})" if f["separated"] else ", but not beyond seed noise" if not steps
                else f" (beyond seed noise {' and '.join(steps)} only{within})")

    def dead(f):  # rows where no rate trains: there the row setting decides whether anything trains at all
        rows = f["dead_rows"]
        return (f", and at {_plural(f['row_name'], len(rows))} {_listed([fmt_value(r) for r in rows])} no learning "
                "rate trains at all" if rows else "")

    moves = {name: {"direction": c.facts["direction"], "separated": c.facts["separated"],
                    "steps_apart": c.facts["steps_apart"], "common": c.facts["common"], "rows": c.facts["rows"],
                    "bound_rows": c.facts["bound_rows"], "dead_rows": c.facts["dead_rows"],
                    "row_name": c.facts["row_name"]}
             for name, c in trends.items()}
    a = anova.facts
    best = next((c for c in search if c.kind == "search_best"), None)
    noise = next((c for c in search if c.kind == "search_noise"), None)
    return Claim("findings", {
        "parts_short": parts.facts["short"], "n_parts": parts.facts["k"], "moves": moves,
        "interactions": "; ".join(f"with the {name} it "
                                  f"{'stays the same' if m['direction'] == 'stays' else m['direction']}{status(m)}"
                                  f"{dead(m)}" for name, m in moves.items()),
        "randomness": (f"neither the init seed (ANOVA p {fmt_p(a['p_rows'])}) nor the data order (p "
                       f"{fmt_p(a['p_cols'])}) has a detectable effect"
                       if a["p_rows"] >= ALPHA and a["p_cols"] >= ALPHA else
                       f"the init seed shows {a['init_verdict']} (ANOVA p {fmt_p(a['p_rows'])}) and the data order "
                       f"{a['data_verdict']} (p {fmt_p(a['p_cols'])})"),
        "p_rows": a["p_rows"], "p_cols": a["p_cols"], "init_verdict": a["init_verdict"],
        "data_verdict": a["data_verdict"], "anova_min": a["min"], "anova_max": a["max"], "anova_sd": a["sd_points"],
        "bar_1": a["bar_1"], "bar_3": a["bar_3"],
        "n_anova": a["n_init"] * a["n_data"], "zero_val": zero.facts["zero_val"], "zero_n": zero_classes.facts["n"],
        "zero_one": zero_classes.facts["n_one"],
        "search": (f"{best.facts['conclusion']}" if best else "the searches' gaps were not measured against noise")
        + (f"; the study's base setting reached a median of {pct(noise.facts['noise_median'], 2)} over its seeds, "
           f"{noise.facts['noise_vs_best']}" if noise else "")})


def smoothing_floor(eps: float, classes: int) -> float:
    """The entropy (nats) of label-smoothed targets, (1 - eps + eps/C) on the label and eps/C on each other class:
    the lowest value their cross-entropy can take."""
    top, rest = 1.0 - eps + eps / classes, eps / classes
    return -(top * math.log(top) + (classes - 1) * rest * math.log(rest)) if 0 < eps < 1 else 0.0


def recipe_claim(points: list[Point], experiment: str = "", short: bool = False) -> Claim:
    """The recipe chosen on validation, the others tied with it, its test accuracy against the 98% goal, and the
    worse recipes that are worse only within their budget; `short`: the same facts, said in one line (the summary)."""
    b = best(points)
    tied = [p for p in points if p is not b and not differs(p, b)]
    t = b.median_test
    # a worse recipe whose runs mostly ran out of epochs is worse within its budget only
    bound = [{"recipe": str(p.value), "n_budget": stopped_by_budget(p), "n": p.n, "budget": p.records[0]["epochs"]}
             for p in points if p is not b and p not in tied and budget_bound(p)]
    note = "".join(_FMT.format("; for {recipe}, only within its {budget}-epoch budget, on which {n_budget:of=n,its} "
                               "runs ended, not converged", **x) for x in bound)
    return Claim("recipe_short" if short else "recipe", {
                            "experiment": experiment, "recipe": str(b.value), "best_val": b.median, "n": b.n,
                            "n_tied": len(tied), "n_others": len(points) - 1, "test": t, "test_min": min(b.tests),
                            "test_max": max(b.tests), "verdict": "above" if t >= 0.98 else "below",
                            "bound": bound, "bound_note": note})


def recipe_parts_claim(full: Point, parts: list[Point], experiment: str = "") -> Claim:
    """A recipe against itself with one part changed at a time (each Point's records differ from `full`'s in their
    optimizer, schedule or label smoothing): which change costs validation accuracy beyond seed noise? A loss beyond
    noise whose p-value would not survive a Bonferroni correction for the number of changes is called borderline; a
    loss within noise is reported with its size, since a few seeds cannot tell a small effect from none."""
    ref = full.records[0]

    def change(r):  # (the arm, as "with ...", what it does to the recipe, and the part it changes)
        if r["optimizer"] != ref["optimizer"]:
            mine = OPTIMIZER_NAMES.get(r["optimizer"], r["optimizer"])
            momentum = f"momentum {r['momentum']:g}, " if r.get("momentum") else ""
            theirs = OPTIMIZER_NAMES.get(ref["optimizer"], ref["optimizer"])
            return (f"{mine} ({momentum}learning rate {r['lr']:g}) instead of {theirs}",
                    f"replacing {theirs} by {mine} at {momentum}learning rate {r['lr']:g} (not re-tuned)",
                    f"{theirs} (against {mine} at a learning rate not re-tuned)")
        if r.get("schedule", "constant") != ref.get("schedule", "constant"):
            return (f"a {r.get('schedule', 'constant')} rate" + (f" (budget {r['epochs']} epochs)"
                                                                 if r["epochs"] != ref["epochs"] else ""),
                    f"dropping the {ref.get('schedule', 'constant')} schedule",
                    f"the {ref.get('schedule', 'constant')} schedule")
        if r.get("label_smoothing", 0.0) != ref.get("label_smoothing", 0.0):
            return ("no label smoothing" if not r["label_smoothing"] else
                    f"label smoothing {r['label_smoothing']:g}", "dropping label smoothing", "label smoothing")
        return "no change", "changing nothing", "nothing"

    rows = []
    for p in parts:
        said, part, name = change(p.records[0])
        rows.append({"change": said, "part": part, "name": name, "val": p.median, "gap": full.median - p.median,
                     "n": p.n,
                     "p": welch_p(p.vals, full.vals),
                     "verdict": versus(p, full)})
    k = len(rows)
    costly = [r for r in rows if r["verdict"] == "worse beyond seed noise"]
    weak = [r for r in costly if r["p"] >= ALPHA / k]
    within = [r for r in rows if r["verdict"] == "tied"]

    said = []
    firm = [r for r in costly if r not in weak]
    if firm:
        said.append(f"{_listed([r['part'] for r in firm])} cost{'s' if len(firm) == 1 else ''} accuracy beyond seed "
                    f"noise, also after a correction for the {k} comparisons (p < {ALPHA / k:.3g})")
    if weak:
        said.append(f"{_listed([r['part'] for r in weak])} {'is' if len(weak) == 1 else 'are'} borderline (p "
                    f"{_listed([fmt_p(r['p']) for r in weak])}: below {ALPHA:g}, but not below {ALPHA / k:.3g}, the "
                    f"bar after a correction for the {k} comparisons)")
    if within:
        gaps = _listed([f"{100 * r['gap']:.2f}" for r in within])
        said.append(f"{_listed([r['part'] for r in within])} cost{'s' if len(within) == 1 else ''} {gaps} points, "
                    f"within seed noise ({full.n} seeds per arm cannot tell effects this small from none)")
    verdict = "; ".join(said) or "no change costs accuracy"
    # the same verdict in a few words, for the summary to point back to
    short = [f"{_listed([r['name'] for r in group])} {one if len(group) == 1 else more}" for group, one, more in
             ((firm, "matters beyond seed noise", "matter beyond seed noise"),
              (weak, "is borderline", "are borderline"),
              (within, "cannot be told from seed noise", "cannot be told from seed noise")) if group]
    return Claim("recipe_parts", {
        "short": (", ".join(short[:-1]) + " and " + short[-1] if len(short) > 1 else short[0] if short else
                  "no part matters beyond seed noise"), "k": k,
        "experiment": experiment, "recipe": str(full.value), "full_val": full.median, "n": full.n, "parts": rows,
        "listed": "; ".join(f"with {r['change']}, {pct(r['val'], 2)} ({100 * abs(r['gap']):.2f} points "
                            f"{'lower' if r['gap'] >= 0 else 'higher'}, Welch p {fmt_p(r['p'])}: {r['verdict']})"
                            for r in rows),
        "verdict": verdict[0].upper() + verdict[1:]})


def neighbours_claim(nn_true: int, nn_vote: int, n_hard: int, base_correct: int, n_base: int, shown_true: int,
                     shown_vote: int, n_shown: int, keys: list[str]) -> Claim:
    """A nearest-neighbour reading of the images every seed misses (n_hard; keys: the seeds' trials): how often the
    nearest training image (Euclidean, pixels) has the true label (nn_true) or the seeds' vote (nn_vote), against the
    same rule on n_base random test images (base_correct right); and the same two counts for the n_shown shown. Hard
    by pixel distance too when the true-label share is below half of the random images' share."""
    share, base = nn_true / n_hard if n_hard else 0.0, base_correct / n_base
    reading = ("most of these images sit nearer to training images of another digit than ordinary test images do, so "
               "they are hard by pixel distance as well" if share < base / 2 else
               "by pixel distance these images are not unusually hard, so the network's mistakes there are its own")
    return Claim("neighbours", {"nn_true": nn_true, "nn_vote": nn_vote, "n_hard": n_hard, "nn_true_share": share,
                                "base_correct": base_correct, "n_base": n_base, "base_share": base,
                                "shown_true": shown_true, "shown_vote": shown_vote, "n_shown": n_shown,
                                "keys": keys, "reading": reading})


def shared_mistakes_claim(n_lin: int, n_both: int, n_all: int, n_test: int, key: str, stored: bool,
                          recipe_keys: list[str]) -> Claim:
    """A different model's mistakes on the images every seed of the recipe misses: n_lin of n_test wrong for softmax
    regression overall, n_both of the recipe's n_all. Shared beyond chance when its rate on them is more than twice
    its overall rate (the same rule as the independence check before it)."""
    rate, share = n_lin / n_test, n_both / n_all if n_all else 0.0
    reading = ("there are no such images" if not n_all else
               "far above its overall rate, so many of these images are hard for a linear model too: the difficulty "
               "lies largely in the images, not only in this network" if share > 2 * rate else
               "no more than twice its overall rate, so these images are hard mostly for this network")
    return Claim("shared_mistakes", {"n_lin": n_lin, "n_both": n_both, "n_all": n_all, "n_test": n_test,
                                     "lin_rate": rate, "both_share": share, "key": key,
                                     "recipe_keys": recipe_keys,
                                     "reading": reading, "stored": stored,
                                     "retrained": "" if stored else ", trained again here"})


def noise_model_claim(sweeps: dict[str, list[Point]], sd: float, n_runs: int, experiment: str = "") -> Claim:
    """How much the sweeps' verdicts rest on their noise estimate. Each value against its sweep's best is tested
    twice: as everywhere else (Welch, each setting's own few seeds), and with one shared standard deviation `sd`
    (a fraction) measured on n_runs runs of one setting (a t-test on the two means with n_runs - 1 degrees of
    freedom). Lists the verdicts that differ, with each setting's own spread: the shared estimate fits settings as
    noisy as the one it was measured on, a setting whose own seeds spread more is fairer judged by them."""
    from scipy import stats

    flips, n = [], 0
    for name, points in sweeps.items():
        pts = [p for p in points if p.records]
        b = best(pts)
        for p in pts:
            if p is b or p.n < 2 or b.n < 2:
                continue
            n += 1
            own = versus(p, b)
            t = (statistics.fmean(b.vals) - statistics.fmean(p.vals)) / (sd * math.sqrt(1 / p.n + 1 / b.n))
            p_shared = float(2 * stats.t.sf(abs(t), n_runs - 1))
            shared = ("tied" if p_shared >= ALPHA else "worse beyond seed noise" if p.median < b.median
                      else "better beyond seed noise")
            if shared != own:
                flips.append({"sweep": name, "value": p.value, "own": own, "p_own": welch_p(p.vals, b.vals),
                              "shared": shared, "p_shared": p_shared, "own_sd": statistics.stdev(p.vals),
                              "said": f"{name} {fmt_value(p.value)}"})
    noisier = [f for f in flips if f["own_sd"] > sd]
    listed = "; ".join(f"{f['said']}: {f['own'].replace(' beyond seed noise', '')} (Welch p {fmt_p(f['p_own'])}) "
                       f"becomes {f['shared'].replace(' beyond seed noise', '')} (p {fmt_p(f['p_shared'])})"
                       for f in flips)
    k = len(flips)
    said = (f"{k} of the {n} verdicts change{'s' if k == 1 else ''}: {listed}. The other {n - k} stand"
            f"{'s' if n - k == 1 else ''} either way" if flips else
            "the verdict does not change" if n == 1 else f"none of the {n} verdicts changes")
    if noisier:
        said += (f". The shared estimate fits settings as noisy as the one it was measured on; "
                 f"{_FMT.format('{k:of=n,these}', k=len(noisier), n=len(flips))} changes concern settings whose own "
                 f"seeds spread more than that ({_listed([f['said'] for f in noisier])}), which their own test "
                 "judges more fairly")
    return Claim("noise_model", {"experiment": experiment, "sd": sd, "n_runs": n_runs, "n": n, "flips": flips,
                                 "n_noisier": len(noisier), "said": said})


def overfit_claim(runs: list[tuple[list[dict], int, float]]) -> Claim:
    """After the reported epoch, did the run overfit? runs = [(history, reported epoch, noise)], noise: how much its
    validation loss can move by chance (the study passes the seed-to-seed standard deviation of its recipe's reported
    validation loss). Overfitting is called only where the training loss kept falling while the validation loss rose
    by more than that noise and the validation accuracy did not improve; runs whose validation accuracy ended higher
    than at the reported epoch are counted too."""
    over = acc_up = ended = 0
    rises, changes = [], []  # of the runs called overfit: the validation loss's rise (nats), accuracy's change
    for h, e, noise in runs:
        if not e or len(h) <= e:
            continue  # nothing trained after the reported epoch
        ended += 1
        rep, last = h[e - 1], h[-1]
        up = last["val_accuracy"] > rep["val_accuracy"]
        acc_up += up
        if last["train_loss"] < rep["train_loss"] and last["val_loss"] > rep["val_loss"] + noise and not up:
            over += 1
            rises.append(last["val_loss"] - rep["val_loss"])
            changes.append(last["val_accuracy"] - rep["val_accuracy"])
    # The sizes, so that a reader sees how slight the rises are (a few thousandths of a nat can be one here)
    sizes_said = (f" (the rises are slight: {_range(rises, '.4f')} nats of validation loss, with changes of "
                  f"{_range([100 * c for c in changes], '.2f')} points in validation accuracy)" if over else "")
    return Claim("overfit", {"n_over": over, "n_acc_up": acc_up, "n_after": ended, "n_runs": len(runs),
                             "rises": rises, "acc_changes": changes, "sizes_said": sizes_said})


def _range(xs: list[float], spec: str) -> str:
    """'a to b' over xs in the format spec (one value: just it)."""
    lo, hi = (format(x, spec).replace("-0.00", "0.00") for x in (min(xs), max(xs)))  # no "-0.00"
    return lo if lo == hi else f"{lo} to {hi}"


def depth_signal_claim(act_std: dict[str, list[float]], grad_std: dict[str, list[float]], course: str) -> Claim:
    """Through a deep network at initialization, per init: how the activations' and the weight gradients' standard
    deviations change from the first hidden layer to the last ({init: [std per layer]}); `course` names the init the
    course recommends."""
    act = {k: v[-1] / v[0] for k, v in act_std.items()}
    grad = {k: v[-1] / v[0] for k, v in grad_std.items()}
    flat = all(0.1 < r < 10 for r in grad.values())

    def listing(d):
        return "; ".join(f"{k}: {r:.2g}" for k, r in d.items())

    return Claim("depth_signal", {"n_layers": len(next(iter(act_std.values()))), "act": listing(act),
                                  "act_ratios": act, "grad_ratios": grad,
                                  "grad": listing(grad), "grad_first": "; ".join(f"{k}: {v[0]:.2g}"
                                                                                for k, v in grad_std.items()),
                                  "grad_flat": flat, "course": course, "course_ratio": act[course],
                                  "grad_verdict": "stays within a factor of 10 between the first layer and the last "
                                  "for every init, so a badly scaled init shrinks or grows the gradients of all layers "
                                  "together rather than layer by layer" if flat else "also changes from the first "
                                  "layer to the last"})


def spread(points: list[Point]) -> tuple[float, bool]:
    """(best median - worst median of validation accuracy, whether some value is worse than the best beyond seed
    noise; the lowest median need not be that value when its seeds spread widely)."""
    pts = [p for p in points if p.records]
    hi, lo = best(pts), min(pts, key=lambda p: p.median)
    return hi.median - lo.median, any(differs(p, hi) for p in pts if p is not hi)


CUTOFF_MARGIN = 0.005  # values this close below the ranking's baseline are checked for changing its order


def ranking_claim(sweeps: dict[str, list[Point]], controls: dict[str, list] | None = None,
                  baseline: float = 0.0, baseline_name: str = "") -> Claim:
    """Hyperparameters ranked by the spread of median validation accuracy they cause, measurable ones only: over
    every value tried, and again over the working values only: no control value (e.g. a zero init kept to show a
    failure) and only values whose median beats `baseline` (e.g. softmax regression's: a hidden layer that does worse
    than none has failed, whatever its outcome label)."""
    controls = controls or {}

    def working(name, pts, line=baseline):
        return [p for p in pts if p.records and p.value not in controls.get(name, []) and p.median > line]

    def rank(groups):
        return sorted(((s, name) for name, pts in groups.items() if len(pts) > 1 for s, ok in [spread(pts)] if ok),
                      reverse=True)

    def worst_bound(pts):  # the worst value's median is a budget-stopped run's: a spread within the budget
        return budget_bound(min((p for p in pts if p.records), key=lambda p: p.median))

    def text(measured, groups):
        return ", ".join(f"{name} ({100 * s:.1f} points)" + ("†" if worst_bound(groups[name]) else "")
                         for s, name in measured) or "empty (no spread beyond noise)"

    kept = {n: working(n, pts) for n, pts in sweeps.items()}
    full, work = rank(sweeps), rank(kept)
    shown = "; ".join(f"{name}: {', '.join(fmt_value(v) for v in vs)}" for name, vs in controls.items() if vs)
    share = sum(s for s, _ in work) / sum(s for s, _ in full) if full else 1.0  # of the summed spreads
    bound = [name for _, name in work if worst_bound(kept[name])]
    # A value just below the cut-off can decide the order: say so, with the order it would give
    wider = {n: working(n, pts, baseline - CUTOFF_MARGIN) for n, pts in sweeps.items()}
    near = [(name, p) for name, pts in wider.items() for p in pts if p.median <= baseline]
    alt = rank(wider)
    fragile = bool(near) and [name for _, name in alt] != [name for _, name in work]
    fragile_said = (" That order rests on the cut-off: "
                    + _listed([f"{name}'s {fmt_value(p.value)} misses it by {100 * (baseline - p.median):.2f} points"
                               for name, p in near])
                    + f"; with the values up to {100 * CUTOFF_MARGIN:g} points below it, the ranking would be "
                    + text(alt, wider) + "." if fragile else "")
    said_full, said_work = text(full, sweeps), text(work, kept)
    return Claim("ranking", {"ranking": said_full, "order": [name for _, name in full],
                             "ranking_working": said_work, "order_working": [name for _, name in work],
                             "near": [[name, p.value, p.median] for name, p in near],
                             "order_wider": [name for _, name in alt], "fragile_said": fragile_said,
                             "budget_bound": bound,
                             "bound_said": (" †: the sweep's worst value stopped on the budget, not converged."
                                            if "†" in said_full + said_work + fragile_said else "") + (_FMT.format(
                                                " Each spread is measured over the range its sweep tried; in "
                                                "{k:of=n,the} sweeps of this ranking the worst value stopped on the "
                                                "budget, so a longer budget or another range could reorder them.",
                                                k=len(bound), n=len(work)) if bound else ""),
                             "controls": shown or "none", "working_share": share, "baseline": baseline,
                             "baseline_name": baseline_name or "none",
                             "share_said": f"Most of that spread ({1 - share:.0%} of its sum) comes from the "
                             "controls and from values that do no better than the baseline below. " if share < 0.5
                             else ""})


# -- searches at equal compute (a search's trials as plain dicts: study.search_trials) --------------------------------


def search_summary(trials: list[dict], seeds: int = 1) -> dict:
    """One search: trials that ended (complete, pruned, failed), model-epochs spent (epochs trained x seeds), seconds
    (each population's wall time once: the longest of its trials') and the number of populations, and its best
    trial on validation (ties: the earliest, as tune.py picks it) with that trial's test accuracy and setting (None
    without a complete trial)."""
    ended = [t for t in trials if t["state"] in ("complete", "pruned", "fail")]
    done = [t for t in ended if t["state"] == "complete" and t["value"] is not None]
    b = max(done, key=lambda t: (t["value"], -t["number"])) if done else None
    pops: dict = {}
    for t in ended:
        if t["population"] is not None:
            pops[t["population"]] = max(pops.get(t["population"], 0.0), t["seconds"] or 0.0)
    return {"trials": len(ended), "complete": len(done), "pruned": sum(t["state"] == "pruned" for t in ended),
            "failed": sum(t["state"] == "fail" for t in ended),
            "model_epochs": sum(t["epochs"] for t in ended) * seeds, "seconds": sum(pops.values()),
            "populations": len(pops),
            "best_val": b["value"] if b else None, "best_test": b["test_accuracy"] if b else None,
            "best_params": dict(b["params"]) if b else {}, "best_number": b["number"] if b else None}


def search_curve(trials: list[dict], seeds: int = 1) -> list[tuple[int, float]]:
    """Best validation accuracy so far against model-epochs spent, at the end of each round of a search (rounds in
    the order they were asked: by their first trial's number): [(model-epochs, best value, nan before any)]."""
    rounds: dict = {}
    for t in sorted(trials, key=lambda t: t["number"]):
        if t["round"] is not None and t["state"] in ("complete", "pruned", "fail"):
            rounds.setdefault(t["round"], []).append(t)
    spent, top, out = 0, -math.inf, []
    for ts in rounds.values():
        spent += sum(t["epochs"] for t in ts) * seeds
        top = max([top] + [t["value"] for t in ts if t["state"] == "complete" and t["value"] is not None])
        out.append((spent, top if top > -math.inf else math.nan))
    return out


def shared_settings(a: list[dict], b: list[dict]) -> int:
    """How many of search a's trials have exactly the parameters of one of search b's trials."""
    seen = {tuple(sorted(t["params"].items())) for t in b}
    return sum(tuple(sorted(t["params"].items())) in seen for t in a)


def noise_p(gap: float, sd: float, n: int) -> float:
    """Two-sided p-value of a gap between two single runs of one setting whose seeds have standard deviation sd
    (measured on n seeds): gap / (sd sqrt 2) follows a t distribution with n - 1 degrees of freedom. nan for n < 2;
    with sd = 0, any gap is real (0) and none is not (1)."""
    from scipy import stats

    if n < 2 or math.isnan(gap):
        return math.nan
    if sd == 0:
        return 0.0 if gap != 0 else 1.0
    return float(2 * stats.t.sf(abs(gap) / (sd * math.sqrt(2)), n - 1))


def search_claims(summaries: dict[str, dict], titles: dict[str, str], rounds: int, round_epochs: int,
                  noise: list[float], noise_setting: dict, shared: int) -> list[Claim]:
    """The search comparison (methods grid, random, halving, as search_summary gives them): what each spent, the
    noise of one run (validation accuracies of `noise`'s seeds at `noise_setting`) and which method found the best
    validation accuracy, each gap called beyond or within that noise (noise_p < ALPHA). `shared`: how many of random
    search's settings halving tried too."""
    from scipy import stats

    assert list(summaries) == ["grid", "random", "halving"], f"expected grid, random, halving, got {list(summaries)}"
    s = summaries
    compute = {"budget": rounds * round_epochs, "rounds": rounds, "round_epochs": round_epochs,
               **{f"{m}_epochs": v["model_epochs"] for m, v in s.items()},
               **{f"{m}_trials": v["trials"] for m, v in s.items()},
               "halving_pruned": s["halving"]["pruned"], "n_failed": sum(v["failed"] for v in s.values()),
               "n_shared": shared}
    out = [Claim("search_compute", compute)]
    n = len(noise)
    sd = statistics.stdev(noise) if n >= 2 else math.nan
    base = {k: noise_setting[k] for k in ("lr", "momentum")}
    if n >= 2:
        med = statistics.median(noise)
        bests = [v["best_val"] for v in s.values() if v["best_val"] is not None]
        above = sum(med > b for b in bests)
        margin = med - max(bests) if bests else math.nan
        out.append(Claim("search_noise", {**base, "n": n, "sd": sd, "df": n - 1,
                                          "threshold": float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * math.sqrt(2) * sd,
                                          "noise_median": med, "n_searches_below": above, "n_searches": len(bests),
                                          "margin": margin,
                                          "noise_vs_best": (f"above every search's best, by {100 * margin:.2f} points "
                                                            f"({'less' if margin < sd else 'more'} than one run's "
                                                            "standard deviation)") if bests and
                                          above == len(bests) else f"above the best of {above} of the "
                                          f"{len(bests)} searches" if above else "no search's best was below it"}))
    else:
        out.append(Claim("search_noise_none", {**base, "n": n}))
    ranked = sorted(s, key=lambda m: -(s[m]["best_val"] if s[m]["best_val"] is not None else -math.inf))
    facts = {}
    for place, m in zip(("first", "second", "third"), ranked):
        facts[place], facts[f"{place}_method"], facts[f"{place}_val"] = titles[m], m, s[m]["best_val"]
    if n < 2 or any(s[m]["best_val"] is None for m in s):
        out.append(Claim("search_best_unmeasured", facts))
        return out
    beyond = []
    for place in ("second", "third"):
        gap = facts["first_val"] - facts[f"{place}_val"]
        p = noise_p(gap, sd, n)
        facts.update({f"{place}_gap": gap, f"{place}_p": p, f"{place}_verdict": "beyond" if p < ALPHA else "within"})
        beyond.append(p < ALPHA)
    first, second, third = facts["first"], facts["second"], facts["third"]
    facts["conclusion"] = (f"{first} is ahead of both beyond seed noise" if all(beyond) else
                           f"{first} is ahead of {third} beyond seed noise, but tied with {second}"
                           if beyond[1] else
                           "no gap exceeds seed noise, so this comparison does not rank the three methods")
    out.append(Claim("search_best", facts))
    return out


# -- formatting -----------------------------------------------------------------------------------------------------


def pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}%"


def fmt_p(p: float) -> str:
    """A p-value as the text writes it after "p": "< 0.0001", "= 0.0043", "= 0.045", "= 0.79". Between 0.01 and
    0.1 it keeps three decimals, and more when those would round it onto ALPHA, so the printed value is always on
    the same side of ALPHA as the verdict next to it (0.0454 was printed "0.05" beside "worse", 0.0526 "0.05" beside
    "tied")."""
    if p < 1e-4:
        return "< 0.0001"
    if p < 0.01:
        return f"= {p:.2g}"
    digits = 2 if p >= 0.1 else 3
    while round(p, digits) == ALPHA and p != ALPHA and digits < 8:
        digits += 1
    return f"= {p:.{digits}f}"


def tied_phrase(n_tied: int, n_others: int, nouns: str) -> str:
    """How many of the other settings are tied with the best: not different beyond seed noise (Welch's test at
    ALPHA; the notebook states the rule once, in its section 1)."""
    if n_others == 1:
        noun = nouns[:-1] if nouns.endswith("s") else nouns
        return f"the other {noun} is tied with it" if n_tied else f"the other {noun} is worse beyond seed noise"
    if n_tied == 0:
        return f"each of the other {n_others} {nouns} is worse beyond seed noise"
    return f"of the other {n_others} {nouns}, {n_tied} {'is' if n_tied == 1 else 'are'} tied with it"


def with_unit(v, unit: str) -> str:
    """A setting's value and its unit, the unit singular for exactly 1: "1 unit", "64 units", "0.1"."""
    if unit.endswith("s") and v == 1 and not isinstance(v, bool):
        unit = unit[:-1]
    return f"{fmt_value(v)}{unit}"


def fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, tuple):
        return "-".join(str(x) for x in v) or "none"
    return str(v)


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v
