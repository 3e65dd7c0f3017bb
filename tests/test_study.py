"""`mlplab study --quick` end to end, as a user runs it (the slowest test: a few minutes), and every claim in its
text recomputed from the store by code independent of mlplab.analysis (numpy and scipy on the stored records)."""

import json
import re
import statistics
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from mlplab import analysis, study
from mlplab.store import Store, trial_key

SECTIONS = ["## 1. The data and the protocol", "## 2. An MLP in thirty lines", "## 3. The course MLP",
            "## 4. Why not initialize with zeros", "## 5. One hyperparameter at a time", "## 6. Failure modes",
            "## 7. Interactions", "## 8. Randomness", "## 9. Inside the networks", "## 10. What the study cost",
            "## 11. Summary", "## 12. Reflection", "## 13. Appendix"]


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    cmd = [sys.executable, "-m", "mlplab", "study", "--quick", "--out", str(out), "--quiet"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, first.stderr[-3000:]
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert second.returncode == 0, second.stderr[-3000:]
    return out, first, second


@pytest.fixture(scope="module")
def records(quick_study):
    out, *_ = quick_study
    with Store(out / "study.sqlite", create=False) as s:
        return s.records()


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
    out, first, second = quick_study
    n = len(study.all_trials(study.experiments(quick=True)))
    assert f"{n} trials ({n} trained, 0 reused)" in first.stdout
    assert f"{n} trials (0 trained, {n} reused)" in second.stdout


def test_plan_is_printed_before_training(tmp_path):
    lines = study.plan_lines(study.experiments(quick=True))
    assert lines[0].split()[:2] == ["experiment", "precision"] and "predicted" in lines[-1]
    total = lines[-2].split()
    assert int(total[-4]) == len(study.all_trials(study.experiments(quick=True)))


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
    for s in range(1, 11):
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
    targets = set(re.findall(r'href="#(s\d+)"', html))
    assert len(targets) == 13 and all(f'id="{t}"' in html for t in targets)
    ipynb = (out / "study.ipynb").read_text()
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
        assert analysis.fmt_value(best) == analysis.fmt_value(f["best"])
    elif kind == "sweep_edge":
        order = sorted(g)
        assert best == (order[0] if f["edge"] == "smallest" else order[-1])
    elif kind.startswith(("sweep_low", "sweep_high")):
        end = "low" if "low" in kind else "high"
        v = sorted(g)[0 if end == "low" else -1]
        p = _welch(vals[v], vals[best])
        assert f[f"{end}_p"] == pytest.approx(p) and f[f"{end}_val"] == pytest.approx(med[v])
        bad = p < 0.05 and med[v] < med[best]
        assert kind.endswith("bad") == bad
        assert kind.endswith("ok") == (not bad and med[v] >= min(vals[best]))
    elif kind in ("sweep_failures", "sweep_no_failures"):
        c = Counter(_outcome(r)[0] for rs in g.values() for r in rs)
        assert (f["n_collapsed"], f["n_diverged"], f["n_budget"]) == (c["collapsed"], c["diverged"], c["budget"])
    else:
        return False
    return True


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
    return True


def _check_recipe(claim, records):
    f = claim["facts"]
    g = {}
    for r in _experiment_of(records, "recipe"):
        g.setdefault((r["optimizer"], r["lr"], r["momentum"], r["weight_decay"], r["init"]), []).append(r)
    med = {k: statistics.median(_val(r) for r in rs) for k, rs in g.items()}
    best = max(med, key=med.get)
    tests = [r["test_accuracy"] for r in g[best]]
    assert f["best_val"] == pytest.approx(med[best]) and f["test"] == pytest.approx(statistics.median(tests))
    assert f["verdict"] == ("above" if statistics.median(tests) >= 0.98 else "below")
    return True


def _check_grid(claim, records):
    f = claim["facts"]
    rows = {"lr_x_init_scale": "init_scale", "lr_x_hidden": "hidden", "batch_x_lr": "batch_size",
            "depth_x_lr": "depth"}[f["experiment"]]
    cells = {}
    for r in _experiment_of(records, f["experiment"]):
        cells.setdefault((_value(r, rows), r["lr"]), []).append(r)
    med = {k: statistics.median(_val(r) for r in rs) for k, rs in cells.items()}
    best = max(med, key=med.get)
    if claim["kind"] == "grid_best":
        assert f["best_val"] == pytest.approx(med[best])
        assert f["n_failed_cells"] == sum(any(_outcome(r)[0] in ("collapsed", "diverged") for r in rs)
                                          for rs in cells.values())
    return True


CHECKS = {"sweep": _check_sweep, "anova": _check_anova, "recipe": _check_recipe, "grid": _check_grid}


def test_every_claim_renders_to_its_sentence_and_its_facts_recompute_from_the_store(quick_study, records):
    out, *_ = quick_study
    claims = _claims(out)
    kinds = Counter(c["kind"] for c, _ in claims)
    for needed in ("sweep_best", "anova", "recipe", "grid_best", "zero_stored", "threads", "misclassified",
                   "compute", "ranking", "linear_vs_mlp"):
        assert kinds[needed] >= 1, f"no {needed} claim in the notebook"
    recomputed = 0
    for claim, markdown in claims:
        assert analysis.render(claim["kind"], claim["facts"]) == claim["text"], claim
        assert claim["text"] in markdown
        check = CHECKS.get(claim["kind"].split("_")[0])
        if check is not None and check(claim, records):
            recomputed += 1
    assert recomputed >= 20


def test_linear_vs_mlp_and_zero_init_claims_follow_the_store(quick_study, records):
    out, *_ = quick_study
    claims = {c["kind"]: c["facts"] for c, _ in _claims(out)}
    lin = [_val(r) for r in _experiment_of(records, "linear")]
    mlp = [_val(r) for r in _experiment_of(records, "depth") if len(r["hidden"]) == 1]
    f = claims["linear_vs_mlp"]
    assert f["lin_val"] == pytest.approx(statistics.median(lin))
    assert f["mlp_val"] == pytest.approx(statistics.median(mlp))
    z = [r for r in _experiment_of(records, "init") if r["init"] == "zeros"]
    assert claims["zero_stored"]["zero_val"] == pytest.approx(statistics.median(_val(r) for r in z))
    exact = "zero_exact" in claims
    assert exact != ("zero_rounding" in claims)
    if not exact:
        assert claims["zero_rounding"]["first"] > 0


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
