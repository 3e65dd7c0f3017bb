"""`mlplab study --quick` end to end, as a user runs it (the slowest test: a few minutes), and every claim in its
text recomputed from the store by code independent of mlplab.analysis (numpy and scipy on the stored records)."""

import datetime
import functools
import itertools
import json
import math
import re
import statistics
import subprocess
import sys
import warnings
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from mlplab import analysis, study
from mlplab.data import load_mnist, make_splits
from mlplab.store import Store, trial_key

SECTIONS = ["## 1. The data and the protocol", "## 2. An MLP in thirty lines", "## 3. The 784-256-10 MLP",
            "## 4. Why not initialize with zeros", "## 5. One hyperparameter at a time", "## 6. Failure modes",
            "## 7. Interactions", "## 8. Randomness", "## 9. Grid, random search and successive halving",
            "## 10. Inside the networks", "## 11. What the study cost", "## 12. Summary", "## 13. Reflection",
            "## 14. Appendix"]


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    cmd = [sys.executable, "-m", "mlplab", "study", "--quick", "--out", str(out), "--quiet"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, first.stderr[-3000:]
    between = datetime.datetime.now()  # naive local time, as Optuna stores a trial's start
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert second.returncode == 0, second.stderr[-3000:]
    return out, first, second, between


@pytest.fixture(scope="module")
def records(quick_study):
    out, *_ = quick_study
    with Store(out / "study.sqlite", create=False) as s:
        return s.records()


@functools.cache
def _splits():
    """MNIST's train / validation / test split, as the study uses it (loaded once for all the checks)."""
    return make_splits(load_mnist())


def _cells(out):
    return json.loads((out / "study.ipynb").read_text())["cells"]


def _claims(out):
    """(claim dict, the markdown it was shown in) for every claim the notebook displayed."""
    found = []
    for c in _cells(out):
        for o in c.get("outputs", []):
            for claim in o.get("metadata", {}).get("mlplab_claims", []):
                found.append((claim, "".join(o["data"]["text/markdown"])))
    return found


def test_second_run_reuses_every_trial(quick_study):
    out, first, second, _ = quick_study
    n = len(study.all_trials(study.experiments(quick=True)))
    assert f"{n} trials ({n} trained, 0 reused)" in first.stdout
    assert f"{n} trials (0 trained, {n} reused)" in second.stdout


def test_second_run_trains_no_search_trial_again(quick_study):
    out, _, _, between = quick_study
    for s in study.searches(quick=True).values():
        trials = _optuna_trials(out / s.storage, s.name)
        assert len(trials) == s.spec["tune"]["trials"], s.method
        assert all(t.datetime_start < between for t in trials), f"{s.method}: the rerun trained a trial again"


def test_a_rerun_says_what_it_reuses_and_predicts_only_the_rest():
    from mlplab import cost
    from mlplab.store import trial_key

    trials = study.all_trials(study.experiments(quick=True))
    keys = [trial_key(t) for t in trials]
    assert study.rerun_line(trials, set(keys)) is None  # nothing stored: the plan says it all
    n = len(trials)
    assert study.rerun_line(trials, set()) == (f"{n} of {n} trials are stored already and are reused: none of them "
                                               "is trained again (only searches not yet finished run)")
    rest = cost.estimate(trials[:3]).seconds / 60
    line = study.rerun_line(trials, set(keys[:3]))
    assert line.startswith(f"{n - 3} of {n} trials are stored already") and f"the other 3 take at most {rest:.1f} min" \
        in line and rest < cost.estimate(trials).seconds / 60


def test_plan_is_printed_before_training(tmp_path):
    lines = study.plan_lines(study.experiments(quick=True), quick=True)
    assert lines[0].split()[:2] == ["experiment", "precision"] and "predicted" in lines[-1]
    total = lines[-2].split()
    searches = study.searches(quick=True)
    n_search = sum(s.spec["tune"]["trials"] for s in searches.values())
    assert int(total[-4]) == len(study.all_trials(study.experiments(quick=True))) + n_search
    for s in searches.values():
        row = next(line.split() for line in lines if line.startswith(f"search-{s.method} "))
        assert (int(row[2]), int(row[3])) == (s.spec["tune"]["trials"], s.budget)


@pytest.mark.parametrize("quick", [True, False])
def test_searches_share_one_space_and_one_budget(quick):
    """The three searches: the grid's lattice spans the box the others sample, every method has the same budget of
    model-epochs per round, halving starts as many trials as fit it, and the noise experiment trains exactly what a
    search trial at its setting trains."""
    from mlplab import tune

    s = study.searches(quick)
    grid, random_, halving = s["grid"].spec, s["random"].spec, s["halving"].spec
    for key, kind in (("lr", "loguniform"), ("momentum", "uniform")):
        values = grid["search"][key]["choice"]
        assert random_["search"][key] == halving["search"][key] == {kind: [min(values), max(values)]}
    assert grid["base"] == random_["base"] == halving["base"]
    n_grid = math.prod(len(v["choice"]) for v in grid["search"].values())
    assert grid["tune"]["trials"] == random_["tune"]["trials"] == n_grid
    assert (random_["tune"]["sampler"], random_["tune"]["pruner"]) == ("random", "none")
    assert (halving["tune"]["sampler"], halving["tune"]["pruner"]) == ("random", "halving")
    t = halving["tune"]
    per_round = s["grid"].round_epochs
    assert per_round == grid["tune"]["per_round"] * grid["tune"]["max_epochs"]
    assert tune.halving_model_epochs(t["per_round"], t["max_epochs"], t["min_epochs"], t["eta"]) <= per_round
    assert tune.halving_model_epochs(t["per_round"] + 1, t["max_epochs"], t["min_epochs"], t["eta"]) > per_round
    assert t["trials"] == t["per_round"] * s["halving"].rounds and len({x.budget for x in s.values()}) == 1
    assert sum(c.epochs for c in study.search_round_configs(s["halving"])) == per_round
    assert len({x.name for x in s.values()} | {x.name for x in study.searches(not quick).values()}) == 6
    noise = study.experiments(quick)["search_noise"].trials()
    spec = tune.TuneSpec.from_dict(random_)
    assert noise == [spec.config(study.SEARCH_NOISE, seed=k) for k in range(len(noise))]


def test_notebook_is_executed_with_no_errors_or_warnings(quick_study):
    out, *_ = quick_study
    cells = _cells(out)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code and all(c["execution_count"] for c in code)
    for c in code:
        for o in c["outputs"]:
            assert o["output_type"] != "error", o
            assert not (o["output_type"] == "stream" and o["name"] == "stderr"), o["text"]
    headings = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    for s in SECTIONS:
        assert s in headings


def test_every_figure_section_has_images_and_files(quick_study):
    out, *_ = quick_study
    section, images = None, {}
    for c in _cells(out):
        m = re.search(r"^## (\d+)\.", "".join(c["source"]), re.M) if c["cell_type"] == "markdown" else None
        if m:
            section = int(m.group(1))
        for o in c.get("outputs", []):
            if "image/png" in o.get("data", {}):
                images[section] = images.get(section, 0) + 1
    for s in range(1, 12):
        assert images.get(s, 0) >= 1, f"section {s} has no figure"
    assert images[5] >= 8  # one per one-at-a-time sweep and the depth x learning rate grid
    pngs = sorted(p.stem for p in (out / "figures").glob("*.png"))
    svgs = sorted(p.stem for p in (out / "figures").glob("*.svg"))
    assert pngs == svgs and len(pngs) >= 25


def test_html_is_self_contained_linked_and_has_no_machine_paths(quick_study):
    out, *_ = quick_study
    html = (out / "study.html").read_text()
    assert "data:image/png;base64" in html
    for tag, attr in (("script", "src"), ("link", "href"), ("img", "src"), ("iframe", "src")):
        for m in re.finditer(rf"<{tag}\b[^>]*\b{attr}\s*=\s*[\"']?([^\"' >]+)", html, re.I):
            assert not re.match(r"(https?:)?//", m.group(1)), f"<{tag} {attr}={m.group(1)}> loads from the network"
    assert not re.search(r"import\s[^;]*from\s*[\"']https?://", html), "a script imports a module from the network"
    assert "<title>mlplab: a multilayer perceptron on MNIST" in html  # not nbconvert's default "Notebook"
    targets = set(re.findall(r'href="#(s\d+)"', html))
    assert len(targets) == 14 and all(f'id="{t}"' in html for t in targets)
    ipynb = (out / "study.ipynb").read_text()
    (params,) = [c for c in _cells(out) if "parameters" in c.get("metadata", {}).get("tags", [])]
    said = dict(line.split(" = ", 1) for line in "".join(params["source"]).splitlines())
    assert said["STORE"] == "'study.sqlite'" and said["FIGURES"] == "'figures'"  # where they are beside the hand-in
    for text in (html, ipynb):
        assert str(out) not in text and str(out.resolve()) not in text
        assert not re.search(r"/tmp/|/home/|/Users/", text)


# -- each claim recomputed independently ------------------------------------------------------------------------


def _outcome(r):
    """The stopping rule, written again: (kind, reported epoch)."""
    h = r["history"]
    if r["status"] == "diverged":
        return "diverged", 0
    best, best_e, bad, kind = float("inf"), len(h), 0, "budget"
    if r["patience"]:
        best_e = 0
        for x in h:
            if x["val_loss"] is not None and x["val_loss"] < best - r["min_delta"]:
                best, best_e, bad = x["val_loss"], x["epoch"], 0
            else:
                bad += 1
            if bad >= r["patience"]:
                kind = "converged"
                break
    if (h[best_e - 1]["val_accuracy"] if best_e else 0) < 0.2:
        kind = "collapsed"
    return kind, best_e


def _val(r):
    return 0.0 if r["status"] == "diverged" else r["val_accuracy"]


def _value(r, name):
    h = r["hidden"]
    return {"hidden": h[0] if len(h) == 1 else tuple(h), "depth": len(h),
            "init": f"{r['init']}:{r['init_scale']:g}" if r["init"] in ("uniform", "normal") else r["init"]}.get(
        name, r.get(name) if name != "data_seed" or r.get(name) is not None else r["seed"])


def _groups(recs, name):
    g = {}
    for r in recs:
        g.setdefault(_value(r, name), []).append(r)
    return g


def _welch(a, b):
    if np.var(a) == 0 and np.var(b) == 0:
        return 1.0 if np.mean(a) == np.mean(b) else 0.0
    with warnings.catch_warnings():  # nearly identical seeds: scipy warns of lost precision; the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        return stats.ttest_ind(a, b, equal_var=False).pvalue


def _experiment_of(records, name, quick=True):
    return study.experiment_records(records, study.experiments(quick)[name])


def _check_sweep(claim, records):
    f, kind = claim["facts"], claim["kind"]
    if f["experiment"] == "depth_retuned":
        return False
    name = study.experiments(True)[f["experiment"]].setting
    g = _groups(_experiment_of(records, f["experiment"]), name)
    med = {v: statistics.median(_val(r) for r in rs) for v, rs in g.items()}
    best = max(med, key=med.get)
    vals = {v: [_val(r) for r in rs] for v, rs in g.items()}
    if kind == "sweep_best":
        tied = [v for v in g if v != best and _welch(vals[v], vals[best]) >= 0.05]
        assert f["best_val"] == pytest.approx(med[best]) and f["n_tied"] == len(tied)
        assert f["tied_gaps"] == ([pytest.approx(med[best] - max(med[v] for v in tied)),
                                   pytest.approx(med[best] - min(med[v] for v in tied))] if tied else [])
        assert analysis.fmt_value(best) == analysis.fmt_value(f["best"])
    elif kind.startswith("sweep_edge"):
        order = sorted(g)
        assert best == (order[0] if f["edge"] == "smallest" else order[-1])
        inward = order[1:] if f["edge"] == "smallest" else order[-2::-1]
        plateau = list(itertools.takewhile(lambda v: _welch(vals[v], vals[best]) >= 0.05, inward))
        assert (kind != "sweep_edge") == bool(plateau)
        if plateau:
            assert f["n_plateau"] == len(plateau) and f["plateau_from"] == plateau[-1]
        if plateau and order[0] > 0:  # the trend across the plateau: numpy's least squares on log2(value)
            x = np.array([math.log2(v) for v in (best, *plateau) for _ in vals[v]])
            y = np.array([100 * a for v in (best, *plateau) for a in vals[v]])
            slope, icpt = np.polyfit(x, y, 1)
            resid = y - slope * x - icpt
            se = math.sqrt(float((resid ** 2).sum()) / (len(y) - 2) / float(((x - x.mean()) ** 2).sum()))
            p = float(2 * stats.t.sf(abs(slope / se), len(y) - 2))
            assert f["slope"] == pytest.approx(slope) and f["p"] == pytest.approx(p)
            toward = slope > 0 if f["edge"] == "largest" else slope < 0
            assert (kind == "sweep_edge_rising") == (toward and p < 0.05)
    elif kind.startswith(("sweep_low", "sweep_high")):
        end = "low" if "low" in kind else "high"
        v = sorted(g)[0 if end == "low" else -1]
        p = _welch(vals[v], vals[best])
        assert f[f"{end}_p"] == pytest.approx(p) and f[f"{end}_val"] == pytest.approx(med[v])
        bad = p < 0.05 and med[v] < med[best]
        stopped = sum(_outcome(r)[0] == "budget" and r["patience"] > 0 for r in g[v])  # stopped by the budget
        assert ("_bad" in kind) == bad and kind.endswith("_budget") == (bad and 2 * stopped > len(g[v]))
        if kind.endswith("_budget"):
            assert (f[f"{end}_budget"], f[f"{end}_n"]) == (stopped, len(g[v]))
        assert kind.endswith("ok") == (not bad and med[v] >= min(vals[best]))
    elif kind == "sweep_failures":  # per value, its collapsed and diverged runs, in the sweep's order
        failed = []
        for v in sorted(g):
            c = Counter(_outcome(r)[0] for r in g[v])
            if c["collapsed"] or c["diverged"]:
                failed.append([v, c["collapsed"], c["diverged"]])
        assert [[analysis.fmt_value(v), c, d] for v, c, d in f["failed"]] == \
            [[analysis.fmt_value(v), c, d] for v, c, d in failed] and failed
        assert f["n_runs"] == sum(len(rs) for rs in g.values())
    elif kind == "sweep_breakdown":  # converged runs whose last epoch is > 10 points below their reported one
        rows = []
        for v in sorted(g):
            drops = [(r["history"][e - 1]["val_accuracy"], r["history"][-1]["val_accuracy"])
                     for r in g[v] for k, e in [_outcome(r)] if k == "converged" and _peak(r) >= 0.5]
            drops = [(a, b) for a, b in drops if a - b > 0.10]
            if drops:
                rows.append([analysis.fmt_value(v), len(drops), statistics.median(a for a, _ in drops),
                             statistics.median(b for _, b in drops),
                             max(e["val_accuracy"] for r in g[v] for e in r["history"])])
        assert rows and [[analysis.fmt_value(x["value"]), x["k"], pytest.approx(x["reported"]),
                          pytest.approx(x["last"]), pytest.approx(x["peak"])] for x in f["rows"]] == rows
    elif kind == "sweep_little":  # not failed by the rule, yet no epoch at 50% or more
        rows = []
        for v in sorted(g):
            peaks = [_peak(r) for r in g[v] if _outcome(r)[0] in ("converged", "budget") and _peak(r) < 0.5]
            if peaks:
                rows.append([analysis.fmt_value(v), len(peaks), len(g[v]), min(peaks), max(peaks)])
        assert rows and [[analysis.fmt_value(x["value"]), x["k"], x["n"], x["low"], x["high"]]
                         for x in f["rows"]] == rows
        assert min(rows, key=lambda x: x[3])[3] > 0.2  # above the collapse line, or the rule would say collapsed
    else:
        return False
    return True


def _peak(r):
    return max(e["val_accuracy"] or 0.0 for e in r["history"])


def _check_anova(claim, records):
    f = claim["facts"]
    recs = _experiment_of(records, "seeds")
    rows, cols = sorted({r["seed"] for r in recs}), sorted({_value(r, "data_seed") for r in recs})
    y = np.zeros((len(rows), len(cols)))
    for r in recs:
        y[rows.index(r["seed"]), cols.index(_value(r, "data_seed"))] = _val(r)
    resid = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
    df_res = (len(rows) - 1) * (len(cols) - 1)
    ms_res = (resid ** 2).sum() / df_res
    f_rows = len(cols) * ((y.mean(1) - y.mean()) ** 2).sum() / (len(rows) - 1) / ms_res
    f_cols = len(rows) * ((y.mean(0) - y.mean()) ** 2).sum() / (len(cols) - 1) / ms_res
    assert f["f_rows"] == pytest.approx(f_rows) and f["f_cols"] == pytest.approx(f_cols)
    assert f["p_cols"] == pytest.approx(stats.f.sf(f_cols, len(cols) - 1, df_res))
    assert f["data_verdict"] == ("a detectable effect" if f["p_cols"] < 0.05 else "no detectable effect")
    assert f["n_runs"] == y.size and f["sd_points"] == pytest.approx(100 * y.std(ddof=1))
    t = stats.t.ppf(0.975, y.size - 1)  # the 5% bars for single runs and for means of 3
    assert (f["bar_1"], f["bar_3"]) == (pytest.approx(t * 100 * y.std(ddof=1) * 2 ** 0.5),
                                        pytest.approx(t * 100 * y.std(ddof=1) * (2 / 3) ** 0.5))
    return True


def _check_recipe(claim, records):
    f = claim["facts"]
    g = {}
    for r in _experiment_of(records, "recipe"):
        g.setdefault((r["optimizer"], r["lr"], r["momentum"], r["weight_decay"], r["init"], r["schedule"],
                      r["label_smoothing"]), []).append(r)
    med = {k: statistics.median(_val(r) for r in rs) for k, rs in g.items()}
    best = max(med, key=med.get)
    tests = [r["test_accuracy"] for r in g[best]]
    # the recipe's name says everything that sets it apart (a cosine schedule, label smoothing)
    assert (best[5] != "constant") == (best[5] in f["recipe"]) and bool(best[6]) == ("label smoothing" in f["recipe"])
    assert f["best_val"] == pytest.approx(med[best]) and f["test"] == pytest.approx(statistics.median(tests))
    assert f["verdict"] == ("above" if statistics.median(tests) >= 0.98 else "below")
    # a recipe worse than the chosen one whose runs mostly ended on their budget is named, with that count
    bound = {}
    for k, rs in g.items():
        vals, ref = [_val(r) for r in rs], [_val(r) for r in g[best]]
        n_budget = sum(_outcome(r)[0] == "budget" for r in rs)
        if k != best and med[k] < med[best] and _welch(vals, ref) < 0.05 and 2 * n_budget > len(rs):
            bound[n_budget] = bound.get(n_budget, 0) + 1
    stated = {}
    for x in f["bound"]:
        stated[x["n_budget"]] = stated.get(x["n_budget"], 0) + 1
        if claim["kind"] == "recipe":  # the summary's short form names the chosen recipe only
            assert x["recipe"] in claim["text"] and f"{x['budget']}-epoch budget" in claim["text"]
    assert stated == bound
    return True


def _check_grid(claim, records):
    f = claim["facts"]
    rows = {"lr_x_init_scale": "init_scale", "lr_x_init_scale_deep": "init_scale", "lr_x_hidden": "hidden",
            "batch_x_lr": "batch_size", "depth_x_lr": "depth"}[f["experiment"]]
    cells = {}
    for r in _experiment_of(records, f["experiment"]):
        cells.setdefault((_value(r, rows), r["lr"]), []).append(r)
    med = {k: statistics.median(_val(r) for r in rs) for k, rs in cells.items()}
    best = max(med, key=med.get)
    vals = {k: [_val(r) for r in rs] for k, rs in cells.items()}
    # a cell whose median run failed (most seeds collapsed or diverged) is never tied with one whose median run trained
    failed = {k: 2 * sum(_outcome(r)[0] in ("collapsed", "diverged") for r in rs) > len(rs) for k, rs in cells.items()}

    def tied(k, top):
        return k == top or (_welch(vals[k], vals[top]) >= 0.05 and not (failed[k] and not failed[top]))

    if claim["kind"] == "grid_best":
        assert f["best_val"] == pytest.approx(med[best]) and f["n_tied"] == sum(tied(k, best) for k in cells) - 1
        assert f["n_failed_cells"] == sum(any(_outcome(r)[0] in ("collapsed", "diverged") for r in rs)
                                          for rs in cells.values())
        fell = 0  # cells without a failed seed, with a converged one > 10 points below its reported epoch at the end
        for rs in cells.values():
            if not any(_outcome(r)[0] in ("collapsed", "diverged") for r in rs):
                fell += any(k == "converged" and r["history"][e - 1]["val_accuracy"] - r["history"][-1]["val_accuracy"]
                            > 0.10 for r in rs for k, e in [_outcome(r)])
        assert f["n_fell_cells"] == fell
    if claim["kind"] == "grid_trend":  # the best rate per row, and the rates tied with it, written again
        lrs, bests, spans, tied_sets, bound, dead, live = sorted({k[1] for k in cells}), [], [], [], [], [], []
        for row in sorted({k[0] for k in cells}):
            mine = {lr: [_val(r) for r in cells[(row, lr)]] for lr in lrs if (row, lr) in cells}
            if all(failed[(row, lr)] for lr in mine):  # no rate trains in this row
                dead.append(row)
                continue
            live.append(row)
            top = max(mine, key=lambda lr: statistics.median(mine[lr]))
            near = [lrs.index(lr) for lr in mine if tied((row, lr), (row, top))]
            bests.append(lrs.index(top))
            recs = cells[(row, top)]  # the best cell's runs: mostly stopped on the budget?
            if 2 * sum(_outcome(r)[0] == "budget" and r["patience"] > 0 for r in recs) > len(recs):
                bound.append(row)
            spans.append((min(near), max(near)))
            tied_sets.append({lrs[i] for i in near})
        assert f["common"] == (sorted(set.intersection(*tied_sets)) if tied_sets else [])  # tied in every row
        assert f["best_cols"] == [lrs[i] for i in bests]
        same = all(a == b for a, b in zip(bests, bests[1:]))  # monotone, ties between neighbours allowed
        up = not same and all(a <= b for a, b in zip(bests, bests[1:]))
        down = not same and not up and all(a >= b for a, b in zip(bests, bests[1:]))
        assert (f["direction"] == "rises") == up and (f["direction"] == "falls") == down
        apart = ([a[1] < b[0] for a, b in zip(spans, spans[1:])] if up else
                 [a[0] > b[1] for a, b in zip(spans, spans[1:])] if down else [])
        assert f["steps_apart"] == apart and f["separated"] == (bool(apart) and all(apart))
        assert f["dead_rows"] == dead and f["rows"] == live  # rows whose tied rates skip one:
        assert f["gapped"] == [r for r, (lo, hi), t in zip(live, spans, tied_sets) if len(t) != hi - lo + 1]
        assert f["bound_rows"] == bound
        assert bool(f["bound_note"]) == bool(bound)  # said for any trend, "stays" too
    return True


def _check_smoothing(claim, records):
    """The entropy of the smoothed targets, from its definition -sum_c q_c log q_c, and the recipe's stored rate."""
    f = claim["facts"]
    assert f["eps"] in {r["label_smoothing"] for r in _experiment_of(records, "recipe")} and f["classes"] == 10
    q = np.full(10, f["eps"] / 10)
    q[0] += 1 - f["eps"]
    assert f["floor"] == pytest.approx(float(-(q * np.log(q)).sum()))
    return True


def _check_depth(claim, records):
    """The activations' and weight gradients' std through 8 ReLU layers at init, computed again with torch's own
    ReLU and cross-entropy on the same 512 training images."""
    import torch
    import torch.nn.functional as F

    from mlplab.mlp import init_mlp

    f = claim["facts"]
    x = torch.from_numpy(_splits().train_x[:512]).float() / 255
    y = torch.from_numpy(_splits().train_y[:512]).long()
    inits = {"He uniform, gain 0.5": ("kaiming_uniform", 0.5), "He uniform, gain 1": ("kaiming_uniform", 1.0),
             "He uniform, gain 2": ("kaiming_uniform", 2.0), "uniform(-0.01, 0.01)": ("uniform", 0.01),
             "Glorot uniform": ("xavier_uniform", 1.0)}
    assert set(f["act_ratios"]) == set(inits)
    for label, (scheme, scale) in inits.items():
        net = init_mlp([784] + [128] * 8 + [10], scheme, [scale], [0])
        p = {k: v[0].clone().requires_grad_() for k, v in net.items()}
        h, acts = x, []
        for i in range(8):
            h = F.relu(h @ p[f"w{i}"] + p[f"b{i}"])
            acts.append(h.detach())
        grads = torch.autograd.grad(F.cross_entropy(h @ p["w8"] + p["b8"], y), [p[f"w{i}"] for i in range(8)])
        assert f["act_ratios"][label] == pytest.approx(float(acts[-1].std() / acts[0].std()), rel=1e-3)
        assert f["grad_ratios"][label] == pytest.approx(float(grads[-1].std() / grads[0].std()), rel=1e-3)
    assert f["grad_flat"] == all(0.1 < r < 10 for r in f["grad_ratios"].values())
    return True


def _check_live(out, claim, records):
    """The thirty-line MLP's epochs, read back from the lines the notebook printed for them."""
    printed = "".join("".join(o.get("text", "")) for c in _cells(out) for o in c.get("outputs", []))
    rows = re.findall(r"epoch (\d+): training accuracy ([\d.]+)%, validation accuracy ([\d.]+)%", printed)
    f = claim["facts"]
    assert rows and f["n"] == len(rows) and f["n_below"] == sum(float(v) > float(tr) for _, tr, v in rows)
    assert 100 * f["last_val"] == pytest.approx(float(rows[-1][2]), abs=0.006)
    gaps = [float(v) - float(tr) for _, tr, v in rows]
    assert int(rows[max(range(len(rows)), key=gaps.__getitem__)][0]) == f["widest_epoch"] or \
        max(gaps) - gaps[f["widest_epoch"] - 1] < 0.011  # printed to 2 decimals: a near tie may round either way
    ahead_at_end = float(rows[-1][2]) > float(rows[-1][1])
    assert f["reading"].startswith("That rules out") == ahead_at_end
    if not ahead_at_end:
        w = f["window"]
        rise = float(rows[-1][2]) - float(rows[-1 - w][2])
        assert f["reading"].startswith("Validation accuracy still rose") == (f["rise"] > 0)
        assert 100 * f["rise"] == pytest.approx(rise, abs=0.011)
        gap = float(rows[-1][1]) - float(rows[-1][2])
        gap_then = float(rows[-1 - w][1]) - float(rows[-1 - w][2])
        assert 100 * f["gap"] == pytest.approx(gap, abs=0.011) and 100 * f["gap_then"] == pytest.approx(gap_then,
                                                                                                        abs=0.011)
        if f["rise"] > 0 and abs(gap - gap_then) > 0.011:  # printed to 2 decimals: a near tie may round either way
            assert ("gap between training and validation accuracy grew" in f["reading"]) == (gap > gap_then)
    return True


def _predict(out, rec, pixels):
    """The predicted classes of a stored model (its weights in the store, in the precision it trained with) for uint8
    pixels (N, 784)."""
    import torch

    from mlplab.device import arithmetic
    from mlplab.mlp import forward

    with Store(out / "study.sqlite", create=False) as s:
        w = {k: v.float() for k, v in s.weights(rec["key"]).items()}
    with torch.no_grad(), arithmetic(torch.device("cpu"), rec["precision"]):
        return forward(w, torch.from_numpy(pixels).float() / 255, rec["activation"])[0].float().argmax(-1).numpy()


def _check_confusions(out, claim, records):
    """The three most frequent (true, predicted) pairs of the chosen recipe's seed, from its weights in the store."""
    f = claim["facts"]
    rec = next(r for r in records if r["key"] == f["key"])
    assert rec["seed"] == f["seed"]
    y, pred = _splits().test_y.tolist(), _predict(out, rec, _splits().test_x).tolist()
    wrong = Counter((t, p) for t, p in zip(y, pred) if t != p)
    top = sorted(wrong.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    assert f["pairs"] == [[t, p, n] for (t, p), n in top] and f["n_errors"] == sum(wrong.values())
    return True


def _check_misclassified(out, claim, records):
    """The test images that the chosen recipe's seeds misclassify, from their weights in the store: by any seed, by
    all of them, and each seed's errors."""
    import numpy as np

    f = claim["facts"]
    recs = [next(r for r in records if r["key"] == k) for k in f["keys"]]
    y = _splits().test_y
    wrong = np.stack([_predict(out, r, _splits().test_x) != y for r in recs])  # (S, N)
    per_seed = wrong.sum(1)
    assert (f["n_any"], f["n_all"], f["n_seeds"]) == (int(wrong.any(0).sum()), int(wrong.all(0).sum()), len(recs))
    assert (f["err_min"], f["err_max"]) == (per_seed.min(), per_seed.max())
    assert f["share_lo"] == pytest.approx(f["n_all"] / per_seed.max())
    assert f["n_expected"] == pytest.approx(len(y) * np.prod(per_seed / len(y)), rel=1e-5)
    return True


def _check_shared(out, claim, records):
    """Softmax regression's mistakes, from its weights in the store, overall and on the images every seed of the
    chosen recipe misclassifies."""
    import numpy as np

    f = claim["facts"]
    y, x = _splits().test_y, _splits().test_x
    lin_wrong = _predict(out, next(r for r in records if r["key"] == f["key"]), x) != y
    all_wrong = np.stack([_predict(out, next(r for r in records if r["key"] == k), x) != y
                          for k in f["recipe_keys"]]).all(0)
    assert f["stored"] and (f["n_lin"], f["n_all"], f["n_both"]) == (lin_wrong.sum(), all_wrong.sum(),
                                                                       (lin_wrong & all_wrong).sum())
    assert ("far above its overall rate" in f["reading"]) == (f["n_both"] / f["n_all"] > 2 * lin_wrong.mean())
    return True


def _check_neighbours(out, claim, records):
    """The nearest training image's label for the test images every seed of the chosen recipe misses (and for 500
    random test images), from the stored weights and the pixels, written again with numpy."""
    import torch

    f, sp = claim["facts"], _splits()
    preds = np.stack([_predict(out, next(r for r in records if r["key"] == k), sp.test_x) for k in f["keys"]])
    hard = np.nonzero((preds != sp.test_y).all(0))[0]
    train = sp.train_x.astype(np.float64)
    t2 = (train ** 2).sum(1)

    def nearest(idx):
        q = sp.test_x[idx].astype(np.float64)
        return sp.train_y[np.argmin(t2[None, :] - 2 * q @ train.T, axis=1)]  # |q - t|^2 less |q|^2, the same argmin

    votes = np.array([Counter(preds[:, i].tolist()).most_common(1)[0][0] for i in hard])
    nn, base = nearest(hard), torch.randperm(len(sp.test_y), generator=torch.Generator().manual_seed(0))[:500].numpy()
    assert f["n_hard"] == len(hard) and f["nn_true"] == (nn == sp.test_y[hard]).sum()
    assert f["nn_vote"] == (nn == votes).sum() and f["base_correct"] == (nearest(base) == sp.test_y[base]).sum()
    k = f["n_shown"]
    assert (f["shown_true"], f["shown_vote"]) == ((nn[:k] == sp.test_y[hard[:k]]).sum(), (nn[:k] == votes[:k]).sum())
    assert ("hard by pixel distance as well" in f["reading"]) == (f["nn_true"] / f["n_hard"] < f["base_share"] / 2)
    return True


SWEEP_EXPERIMENTS = ("hidden", "activation", "init", "init_scale", "lr", "batch_size", "depth")


def _check_noise(claim, records):
    """Every sweep value against its sweep's best, tested with each pair's own seeds (Welch) and with the seed
    experiment's one standard deviation: the verdicts that differ, written again from the stored records."""
    f = claim["facts"]
    y = [_val(r) for r in _experiment_of(records, "seeds")]
    assert f["sd"] == pytest.approx(statistics.stdev(y)) and f["n_runs"] == len(y)
    flips, n = [], 0
    for name in SWEEP_EXPERIMENTS:
        g = _groups(_experiment_of(records, name), study.experiments(True)[name].setting)
        vals = {v: [_val(r) for r in rs] for v, rs in g.items()}
        med = {v: statistics.median(x) for v, x in vals.items()}
        best = max(med, key=med.get)
        for v, x in vals.items():
            if v == best or len(x) < 2:
                continue
            n += 1
            direction = "worse beyond seed noise" if med[v] < med[best] else "better beyond seed noise"
            own = "tied" if _welch(x, vals[best]) >= 0.05 else direction
            t = (np.mean(vals[best]) - np.mean(x)) / (f["sd"] * math.sqrt(1 / len(x) + 1 / len(vals[best])))
            p = 2 * stats.t.sf(abs(t), len(y) - 1)
            shared = "tied" if p >= 0.05 else direction
            if own != shared:
                flips.append((own, shared, round(float(p), 9)))
    assert f["n"] == n and sorted(flips) == sorted((x["own"], x["shared"], round(x["p_shared"], 9))
                                                   for x in f["flips"])
    return True


def _check_retuned(claim, records):
    """A batch size at its own best rate in the grid, against the reference batch size at its own, written again."""
    f = claim["facts"]
    cells = {}
    for r in _experiment_of(records, "batch_x_lr"):
        cells.setdefault(r["batch_size"], {}).setdefault(r["lr"], []).append(_val(r))

    def top(batch):
        lr = max(cells[batch], key=lambda lr: statistics.median(cells[batch][lr]))
        return lr, cells[batch][lr]

    (lr_v, v), (lr_r, ref) = top(f["value"]), top(f["ref"])
    p = _welch(v, ref)
    assert (f["value_lr"], f["ref_lr"]) == (lr_v, lr_r) and f["p"] == pytest.approx(p)
    assert f["value_val"] == pytest.approx(statistics.median(v))
    assert f["ref_val"] == pytest.approx(statistics.median(ref))
    verdict = ("tied" if p >= 0.05 else "worse beyond seed noise" if statistics.median(v) < statistics.median(ref)
               else "better beyond seed noise")
    recs = [r for r in _experiment_of(records, "batch_x_lr") if (r["batch_size"], r["lr"]) == (f["value"], lr_v)]
    stopped = sum(_outcome(r)[0] == "budget" and r["patience"] > 0 for r in recs)
    if verdict.startswith("worse") and 2 * stopped > len(recs):
        verdict += " within the budget"
    assert f["verdict"] == verdict and f["n_budget"] == stopped
    ref = [r for r in _experiment_of(records, "batch_x_lr") if (r["batch_size"], r["lr"]) == (f["ref"], lr_r)]
    assert f["ref_budget"] == sum(_outcome(r)[0] == "budget" and r["patience"] > 0 for r in ref)
    return True


def _check_split(out, claim, records):
    """The learning-rate sweep's seed-0 models, from their weights in the store, scored on the 50,000 training images
    and the validation images; the one closest to the thirty-line model's training accuracy, and the reading."""
    f = claim["facts"]
    sp = _splits()
    fits = []
    for r in (r for r in _experiment_of(records, "lr") if r["seed"] == 0):
        train, val = [float((_predict(out, r, x) == y).mean()) for x, y in ((sp.train_x, sp.train_y),
                                                                             (sp.val_x, sp.val_y))]
        assert val == pytest.approx(r["val_accuracy"], abs=1e-6)  # the stored model itself
        fits.append((abs(train - f["live_train"]), r["key"], train, val))
    _, key, train, val = min(fits)
    assert (f["key"], f["train"], f["val"]) == (key, pytest.approx(train, abs=1e-6), pytest.approx(val, abs=1e-6))
    share = (val - train) / f["live_gap"]
    assert f["verdict"] == ("all" if share >= 1 else "most" if share >= 0.5 else "part" if share > 0 else "none")
    return True


def _check_bottleneck(out, claim, records):
    """A 1- or 2-unit network from its weights in the store (kept for this claim), recomputed with plain torch in
    float32: its hidden values on the validation images, the images where all of them are 0, the digits it predicts,
    and for 1 unit the order of its intervals along h, where every digit may appear once at most (the prediction is
    the top of 10 lines in h)."""
    import torch

    f = claim["facts"]
    rec = next(r for r in records if r["key"] == f["key"])
    assert (rec["seed"], len(rec["hidden"]), rec["hidden"][0]) == (f["seed"], 1, f["width"]) and f["stored"]
    with Store(out / "study.sqlite", create=False) as s:
        w = {k: v.float()[0] for k, v in s.weights(rec["key"]).items()}  # stored: the notebook did not retrain it
    sp = _splits()
    x, y = torch.from_numpy(sp.val_x).float() / 255, sp.val_y.tolist()
    h = torch.relu(x @ w["w0"] + w["b0"])  # (N, H)
    pred = (h @ w["w1"] + w["b1"]).argmax(-1).tolist()
    zero = (h == 0).all(1)
    zero_preds = sorted({pred[i] for i in zero.nonzero()[:, 0].tolist()})
    assert f["n_zero"] == int(zero.sum()) and f["zero_preds"] == zero_preds
    assert f["acc"] == pytest.approx(sum(p == t for p, t in zip(pred, y)) / len(y))
    assert f["never"] == sorted(set(range(10)) - set(pred)) and f["n_pred"] == len(set(pred))
    assert f["dead"] == [j + 1 for j in range(h.shape[1]) if not bool(h[:, j].any())]
    assert f["stored_acc"] == rec["val_accuracy"] and f["precision"] == rec["precision"]
    if f["width"] == 1:
        runs = [pred[j] for j in h[:, 0].argsort(stable=True).tolist()]  # the predictions in the order of h
        order = [d for i, d in enumerate(runs) if i == 0 or runs[i - 1] != d]
        assert f["order"] == order and len(order) == len(set(order))  # one interval per digit at most
    return True


def _check_recipe_parts(claim, records):
    """adam_cosine against each one-part change, from the stored records: medians, Welch p and verdicts."""
    f = claim["facts"]
    g = {}
    for r in _experiment_of(records, "recipe_parts"):
        g.setdefault((r["optimizer"], r["schedule"], r["label_smoothing"]), []).append(_val(r))
    full = g.pop(("adam", "cosine", study.RECIPES["adam_cosine"]["label_smoothing"]))
    want = sorted((statistics.median(v), _welch(v, full), "tied" if _welch(v, full) >= 0.05 else
                   "worse beyond seed noise" if statistics.median(v) < statistics.median(full) else
                   "better beyond seed noise") for v in g.values())
    got = sorted((r["val"], r["p"], r["verdict"]) for r in f["parts"])
    assert len(got) == len(want) == len(study.RECIPE_PARTS) and f["full_val"] == pytest.approx(statistics.median(full))
    for (gv, gp, gverdict), (wv, wp, wverdict) in zip(got, want):
        assert (gv, gp, gverdict) == (pytest.approx(wv), pytest.approx(wp), wverdict)
    return True


def _check_narrowest(claim, records):
    """The two narrowest widths of the width sweep and the narrowest whose median beats softmax regression."""
    f = claim["facts"]
    g = _groups(_experiment_of(records, "hidden"), "hidden")
    a, b = sorted(g)[:2]
    va, vb = [_val(r) for r in g[a]], [_val(r) for r in g[b]]
    lin = statistics.median(_val(r) for r in _experiment_of(records, "linear"))
    first = next((w for w in sorted(g) if statistics.median(_val(r) for r in g[w]) > lin), None)
    assert (f["a"], f["b"], f["first"]) == (a, b, first) and f["baseline"] == pytest.approx(lin)
    below = max((w for w in g if first is not None and w < first), default=None)  # the width tried just below it
    assert f["below"] == below and (below is None or f["below_val"] == pytest.approx(
        statistics.median(_val(r) for r in g[below])))
    assert f["p"] == pytest.approx(_welch(va, vb)) and f["verdict"] == ("tied" if _welch(va, vb) >= 0.05 else
                                                                         "apart beyond seed noise")
    assert f["a_failed"] == sum(_outcome(r)[0] in ("collapsed", "diverged") for r in g[a])
    return True


def _check_activations(claim, records):
    """Identity against softmax regression, and sigmoid's and ReLU's budget stops, from the stored records."""
    f = claim["facts"]
    g = _groups(_experiment_of(records, "activation"), "activation")
    ident, lin = [_val(r) for r in g["identity"]], [_val(r) for r in _experiment_of(records, "linear")]
    p = _welch(ident, lin)
    assert f["p"] == pytest.approx(p) and f["id_val"] == pytest.approx(statistics.median(ident))
    assert f["verdict"] == ("tied" if p >= 0.05 else "worse beyond seed noise"
                            if statistics.median(ident) < statistics.median(lin) else "better beyond seed noise")
    for name, key in (("sigmoid", "sig"), ("relu", "relu")):
        assert f[f"{key}_budget"] == sum(_outcome(r)[0] == "budget" for r in g[name]) and f[f"{key}_n"] == len(g[name])
        assert f[f"{key}_val"] == pytest.approx(statistics.median(_val(r) for r in g[name]))
    sig, relu = [_val(r) for r in g["sigmoid"]], [_val(r) for r in g["relu"]]
    p = _welch(sig, relu)
    verdict = ("tied" if p >= 0.05 else "worse beyond seed noise" if statistics.median(sig) < statistics.median(relu)
               else "better beyond seed noise")
    if verdict != "tied" and 2 * f["sig_budget"] > f["sig_n"]:
        verdict += " within the budget"
    assert f["sig_p"] == pytest.approx(p) and f["sig_verdict"] == verdict
    assert f["slow_said"].startswith("sigmoid learns more slowly") == (f["sig_budget"] > f["relu_budget"])
    assert f["id_said"].endswith("as expected") == (f["verdict"] != "better beyond seed noise")
    return True


def _check_overfit(claim, records):
    """The recipes' runs after their reported epoch (the history entry whose validation loss is the stored one),
    each against its recipe's seed-to-seed SD of the reported validation loss: which overfit, and by how much."""
    f = claim["facts"]
    g = {}
    for r in _experiment_of(records, "recipe"):
        g.setdefault((r["optimizer"], r["lr"], r["momentum"], r["weight_decay"], r["init"], r["schedule"],
                      r["label_smoothing"]), []).append(r)
    after = up = 0
    rises, changes = [], []
    for rs in g.values():
        sd = statistics.stdev(r["val_loss"] for r in rs) if len(rs) > 1 else 0.0
        for r in rs:
            h = r["history"]
            e = next(i for i, x in enumerate(h) if x["val_loss"] == r["val_loss"])  # 0-based reported epoch
            if e == len(h) - 1:
                continue
            after += 1
            gain = h[-1]["val_accuracy"] - h[e]["val_accuracy"]
            up += gain > 0
            if h[-1]["train_loss"] < h[e]["train_loss"] and h[-1]["val_loss"] > h[e]["val_loss"] + sd and gain <= 0:
                rises.append(h[-1]["val_loss"] - h[e]["val_loss"])
                changes.append(gain)
    assert (f["n_after"], f["n_acc_up"], f["n_over"]) == (after, up, len(rises))
    assert sorted(f["rises"]) == pytest.approx(sorted(rises)) and sorted(f["acc_changes"]) == pytest.approx(
        sorted(changes))
    assert ("the rises are slight" in claim["text"]) == bool(rises)
    return True


CHECKS = {"activations": _check_activations, "narrowest": _check_narrowest, "recipe_parts": _check_recipe_parts,
          "sweep": _check_sweep,
          "retuned": _check_retuned, "depth": _check_depth, "anova": _check_anova, "recipe": _check_recipe,
          "grid": _check_grid, "smoothing": _check_smoothing, "overfit": _check_overfit}


def test_every_claim_renders_to_its_sentence_and_its_facts_recompute_from_the_store(quick_study, records):
    out, *_ = quick_study
    claims = _claims(out)
    kinds = Counter(c["kind"] for c, _ in claims)
    for needed in ("sweep_best", "anova", "recipe", "grid_best", "zero_stored", "threads", "misclassified",
                   "compute", "ranking", "linear_vs_mlp", "search_compute", "search_noise", "search_best",
                   "grid_trend", "smoothing_floor", "depth_signal", "zero_one_class", "overfit", "retuned", "live_gap",
                   "confusions", "narrowest", "findings", "recipe_parts", "activations", "bottleneck_1",
                   "recipe_short", "shared_mistakes", "noise_model"):
        assert kinds[needed] >= 1, f"no {needed} claim in the notebook"
    recomputed = 0
    for claim, markdown in claims:
        assert analysis.render(claim["kind"], claim["facts"]) == claim["text"], claim
        assert claim["text"] in markdown
        check = {**CHECKS, "search": functools.partial(_check_search, out),
                 "live": functools.partial(_check_live, out),
                 "confusions": functools.partial(_check_confusions, out),
                 "split": functools.partial(_check_split, out),
                 "bottleneck": functools.partial(_check_bottleneck, out),
                 "misclassified": functools.partial(_check_misclassified, out),
                 "shared": functools.partial(_check_shared, out), "noise": _check_noise,
                 "neighbours": functools.partial(_check_neighbours, out)}.get(
            claim["kind"] if claim["kind"] == "recipe_parts" else claim["kind"].split("_")[0])
        if check is not None and check(claim, records):
            recomputed += 1
    assert recomputed >= 20
    (live,) = [c["facts"] for c, _ in claims if c["kind"] == "live_gap"]
    split = [c["facts"] for c, _ in claims if c["kind"] == "split"]
    assert len(split) == (live["n_below"] > 0)  # said only when validation was ahead after some epoch
    for f in split:
        assert f["live_train"] == live["widest_train"] and f["live_gap"] == live["widest_val"] - live["widest_train"]
        assert f["epoch"] == live["widest_epoch"]
    # a sweep says nothing about failures only when none of its runs collapsed or diverged
    said = {c["facts"]["experiment"] for c, _ in claims if c["kind"] == "sweep_failures"}
    for name in {c["facts"]["experiment"] for c, _ in claims if c["kind"] == "sweep_best"} - {"depth_retuned"} - said:
        assert not any(_outcome(r)[0] in ("collapsed", "diverged") for r in _experiment_of(records, name)), name


def test_summary_findings_repeat_the_claims_of_their_sections(quick_study):
    """The summary's findings restate claims made (and recomputed above) in sections 4, 7, 8 and 9: each fact must be
    the one its section's claim states."""
    out, *_ = quick_study
    claims = [c for c, _ in _claims(out)]
    (f,) = [c["facts"] for c in claims if c["kind"] == "findings"]
    trends = {c["facts"]["experiment"]: c["facts"] for c in claims if c["kind"] == "grid_trend"}
    named = {"init scale": "lr_x_init_scale", f"init scale at depth {study.DEEP_LAYERS}": "lr_x_init_scale_deep",
             "width": "lr_x_hidden", "batch size": "batch_x_lr", "depth": "depth_x_lr"}
    assert set(f["moves"]) == set(named)
    for name, moves in f["moves"].items():
        t = trends[named[name]]
        assert moves == {k: t[k] for k in ("direction", "separated", "steps_apart", "common", "rows", "bound_rows",
                                           "dead_rows", "row_name")}
    (anova,) = [c["facts"] for c in claims if c["kind"] == "anova"]
    assert (f["p_rows"], f["p_cols"], f["anova_min"], f["anova_max"], f["anova_sd"], f["bar_1"], f["bar_3"]) == \
        (anova["p_rows"], anova["p_cols"], anova["min"], anova["max"], anova["sd_points"], anova["bar_1"],
         anova["bar_3"])
    (zero,) = [c["facts"] for c in claims if c["kind"] == "zero_stored"]
    (one,) = [c["facts"] for c in claims if c["kind"] == "zero_one_class"]
    assert f["zero_val"] == zero["zero_val"] and (f["zero_one"], f["zero_n"]) == (one["n_one"], one["n"])
    (parts,) = [c["facts"] for c in claims if c["kind"] == "recipe_parts"]
    assert (f["parts_short"], f["n_parts"]) == (parts["short"], len(parts["parts"]))
    for r in parts["parts"]:  # the short verdict names every part with the verdict its section gives it
        k = len(parts["parts"])
        want = ("cannot be told" if r["verdict"] == "tied" else "matter" if r["p"] < 0.05 / k else "borderline")
        after = f["parts_short"].split(r["name"], 1)[1]  # the first verdict said after the part's name is its own
        said = min((after.find(w), w) for w in ("cannot be told", "matter", "borderline") if w in after)[1]
        assert said == want, (r, f["parts_short"])
    (best,) = [c["facts"] for c in claims if c["kind"] == "search_best"]
    assert f["search"].startswith(best["conclusion"])


def test_linear_vs_mlp_and_zero_init_claims_follow_the_store(quick_study, records):
    out, *_ = quick_study
    claims = {c["kind"]: c["facts"] for c, _ in _claims(out)}
    lin = [_val(r) for r in _experiment_of(records, "linear")]
    mlp = [_val(r) for r in _experiment_of(records, "depth") if len(r["hidden"]) == 1]
    f = claims["linear_vs_mlp"]
    assert [f["width"]] == study.BASE["hidden"] == list({r["hidden"][0] for r in _experiment_of(records, "depth")
                                                          if len(r["hidden"]) == 1})
    assert f["lin_val"] == pytest.approx(statistics.median(lin))
    assert f["mlp_val"] == pytest.approx(statistics.median(mlp))
    z = [r for r in _experiment_of(records, "init") if r["init"] == "zeros"]
    assert claims["zero_stored"]["zero_val"] == pytest.approx(statistics.median(_val(r) for r in z))
    val_y = _splits().val_y  # a run that predicts one digit scores exactly that digit's share
    shares = {c: float(np.mean(val_y == c)) for c in range(10)}
    one = [c for r in z for c, s in shares.items() if abs(_val(r) - s) < 0.5 / len(val_y)]
    assert claims["zero_one_class"]["n_one"] == len(one) and claims["zero_one_class"]["n"] == len(z)
    exact = "zero_exact" in claims
    assert exact != ("zero_rounding" in claims)
    if not exact:
        assert claims["zero_rounding"]["first"] > 0
    zf = claims["zero_exact" if exact else "zero_rounding"]  # 400 live steps: copies of one unit learn less
    assert 0.0 <= zf["zero_acc"] < zf["random_acc"] <= 1.0


def test_compute_claim_adds_up_the_stored_histories(quick_study, records):
    out, *_ = quick_study
    f = next(c["facts"] for c, _ in _claims(out) if c["kind"] == "compute")
    trials = study.all_trials(study.experiments(True))
    keys = {trial_key(t) for t in trials}
    mine = [r for r in records if r["key"] in keys]
    assert len(mine) == len(trials)
    assert f["model_epochs"] == sum(len(r["history"]) for r in mine)
    assert f["budget_epochs"] == sum(t.epochs for t in trials)
    assert f["model_epochs"] <= f["budget_epochs"]
    div = [r for r in mine if r["status"] == "diverged"]
    assert (f["n_div"], f["div_saved"]) == (len(div), sum(r["epochs"] - len(r["history"]) for r in div))
    assert (f"{f['div_saved']:,} model-epochs" in f["div_said"]) == bool(div)


# -- the search comparison, recomputed from the Optuna storages with Optuna's own API --------------------------------


def _optuna_trials(path, name):
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    try:
        return storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False)
    finally:
        storage.engine.dispose()


def _search_facts(out):
    """Per method its best value (max over complete trials), model-epochs (epochs summed), trials and pruned trials,
    read with Optuna's own API."""
    from optuna.trial import TrialState

    facts = {}
    for m, s in study.searches(quick=True).items():
        trials = _optuna_trials(out / s.storage, s.name)
        facts[m] = {"best": max(t.value for t in trials if t.state == TrialState.COMPLETE),
                    "epochs": sum(t.user_attrs["epochs"] for t in trials), "trials": len(trials),
                    "pruned": sum(t.state == TrialState.PRUNED for t in trials), "budget": s.budget}
    return facts


def _check_search(out, claim, records):
    f, kind, got = claim["facts"], claim["kind"], _search_facts(out)
    noise = [_val(r) for r in _experiment_of(records, "search_noise")]
    n, sd = len(noise), float(np.std(noise, ddof=1))
    if kind == "search_compute":
        assert f["budget"] == got["grid"]["budget"] and f["halving_pruned"] == got["halving"]["pruned"]
        for m, g in got.items():
            assert (f[f"{m}_trials"], f[f"{m}_epochs"]) == (g["trials"], g["epochs"]) and g["epochs"] <= g["budget"]
    elif kind == "search_noise":
        assert f["n"] == n and f["sd"] == pytest.approx(sd)
        assert f["threshold"] == pytest.approx(stats.t.ppf(0.975, n - 1) * math.sqrt(2) * sd)
        bests = [g["best"] for g in got.values()]
        assert f["noise_median"] == pytest.approx(statistics.median(noise))
        assert f["n_searches_below"] == sum(b < statistics.median(noise) for b in bests)
        assert f["margin"] == pytest.approx(statistics.median(noise) - max(bests))
    elif kind == "search_best":
        best = {m: g["best"] for m, g in got.items()}
        top = max(best.values())
        assert f["first_val"] == top and best[f["first_method"]] == top
        assert {f["first_method"], f["second_method"], f["third_method"]} == set(best)
        for place in ("second", "third"):
            gap = top - best[f[f"{place}_method"]]
            p = 2 * stats.t.sf(gap / (sd * math.sqrt(2)), n - 1) if sd > 0 else float(gap == 0)
            assert f[f"{place}_gap"] == pytest.approx(gap) and f[f"{place}_p"] == pytest.approx(p)
            assert f[f"{place}_verdict"] == ("beyond" if p < 0.05 else "within")
    else:
        return False
    return True


def test_search_claims_recompute_from_the_optuna_storages(quick_study, records):
    out, *_ = quick_study
    claims = [c for c, _ in _claims(out) if c["kind"].startswith("search")]
    assert sorted(c["kind"] for c in claims) == ["search_best", "search_compute", "search_noise"]
    assert all(_check_search(out, c, records) for c in claims)
