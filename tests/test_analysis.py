"""The study's statistics and claims on made-up stores whose answers are known (planted effects), and the outcome
rule recomputed against the trainer itself."""

import math
import random
import statistics

import numpy as np
import pytest
from scipy import stats

from mlplab import analysis
from mlplab.config import TrainConfig
from mlplab.store import Store
from mlplab.train import TrainResult, train


def _history(val_accs, val_losses=None):
    val_losses = val_losses or [1 - a for a in val_accs]
    return [{"epoch": e + 1, "train_loss": 0.1, "val_loss": loss, "val_accuracy": a, "test_loss": loss,
             "test_accuracy": a - 0.001, "seconds": e + 1.0} for e, (a, loss) in enumerate(zip(val_accs, val_losses))]


def _store(tmp_path, runs):
    """A real result store holding made-up results: runs = [(TrainConfig, reported val accuracy)]."""
    path = tmp_path / "made-up.sqlite"
    results = [TrainResult(config=c, history=_history([acc]), params={}, best_epoch=None, outcome="budget")
               for c, acc in runs]
    with Store(path) as s:
        s.claim([c for c, _ in runs])
        s.finish(results)
        return s.records()


def _store_histories(tmp_path, runs):
    """A real result store of made-up histories: runs = [(TrainConfig, val accuracies, val losses)], one per epoch
    (the outcome is recomputed from them, so the stored one is a placeholder)."""
    results = [TrainResult(config=c, history=_history(a, losses), params={}, best_epoch=None, outcome="budget")
               for c, a, losses in runs]
    with Store(tmp_path / "histories.sqlite") as s:
        s.claim([c for c, *_ in runs])
        s.finish(results)
        return s.records()


def _seed_grid(effect_init, effect_data, noise=0.0005, n=5, rng_seed=0):
    rng = random.Random(rng_seed)
    return [(TrainConfig(hidden=(8,), epochs=1, seed=i, data_seed=j),
             0.95 + effect_init * i + effect_data * j + rng.gauss(0, noise)) for i in range(n) for j in range(n)]


def test_planted_data_order_effect_is_found_and_init_effect_is_not(tmp_path):
    claim = analysis.anova_claim(_store(tmp_path, _seed_grid(0.0, 0.003)))
    f = claim.facts
    assert f["p_cols"] < 0.001 and f["p_rows"] > 0.05
    assert (f["df_rows"], f["df_cols"], f["df_res"]) == (4, 4, 16)
    assert "data order F(4, 16)" in claim.text and "(a detectable effect)." in claim.text
    assert "(no detectable effect); data order" in claim.text


def test_planted_init_effect_is_found(tmp_path):
    f = analysis.anova_claim(_store(tmp_path, _seed_grid(0.003, 0.0, rng_seed=1))).facts
    assert f["p_rows"] < 0.001 and f["p_cols"] > 0.05


def test_without_a_seed_effect_the_spread_of_the_runs_is_still_said(tmp_path):
    """Pure noise (SD 0.15 points): neither seed is detectable, and the claim says the runs still differ by their
    standard deviation, the noise any comparison of single runs must beat."""
    grid = _seed_grid(0.0, 0.0, noise=0.0015, rng_seed=4)
    claim = analysis.anova_claim(_store(tmp_path, grid))
    f = claim.facts
    assert f["p_rows"] >= 0.05 and f["p_cols"] >= 0.05 and f["n_runs"] == 25
    assert f["sd_points"] == pytest.approx(100 * statistics.stdev(v for _, v in grid), rel=1e-6)
    assert f"a standard deviation of {f['sd_points']:.2f} points over the 25 runs: neither seed alone explains" \
        in claim.text
    t = stats.t.ppf(0.975, 24)  # a t-test's 5% bar with this SD: single runs, and means of 3
    assert f["bar_1"] == pytest.approx(t * f["sd_points"] * 2 ** 0.5) and f"differ by more than {f['bar_1']:.2f} " \
        "points to be told apart at the 5% level" in claim.text and f["bar_3"] < f["bar_1"]


def test_anova_matches_a_regression_on_dummies():
    rng = np.random.default_rng(3)
    y = rng.normal(size=(4, 6)) + np.arange(6) * 0.5
    a = analysis.anova_two_way(y.tolist())
    # independent: residual sum of squares of the additive model fitted by least squares
    rows, cols = np.indices(y.shape)
    design = np.column_stack([np.ones(y.size)] + [(rows.ravel() == i) for i in range(1, 4)]
                             + [(cols.ravel() == j) for j in range(1, 6)]).astype(float)
    coef, *_ = np.linalg.lstsq(design, y.ravel(), rcond=None)
    ss_res = float(((y.ravel() - design @ coef) ** 2).sum())
    assert a["ss_res"] == pytest.approx(ss_res)
    f_cols = (a["ss_cols"] / 5) / (ss_res / 15)
    assert a["f_cols"] == pytest.approx(f_cols) and a["p_cols"] == pytest.approx(stats.f.sf(f_cols, 5, 15))


def _sweep(tmp_path, means, n=5, noise=0.001, name="lr"):
    rng = random.Random(0)
    runs = [(TrainConfig(hidden=(8,), epochs=1, lr=v, seed=s), m + rng.gauss(0, noise))
            for v, m in means.items() for s in range(n)]
    return analysis.by_setting(_store(tmp_path, runs), name)


def _kinds(claims):
    return [c.kind for c in claims]


def test_edge_optimum_is_flagged_and_the_low_end_is_bad(tmp_path):
    claims = analysis.sweep_claims(_sweep(tmp_path, {0.01: 0.90, 0.1: 0.95, 1.0: 0.97}), "learning rate")
    assert _kinds(claims) == ["sweep_best", "sweep_edge", "sweep_low_bad"]  # nothing failed: no failure sentence
    assert claims[0].facts["best"] == 1.0 and claims[1].facts["edge"] == "largest"


def test_a_plateau_is_stated_as_such(tmp_path):
    claims = analysis.sweep_claims(_sweep(tmp_path, {0.01: 0.80, 0.1: 0.97, 1.0: 0.9698}), "learning rate")
    assert _kinds(claims)[:3] == ["sweep_best", "sweep_low_bad", "sweep_high_ok"]
    assert "A plateau, not an optimum: 1 is tied with the best" in claims[2].text
    gap = claims[0].facts["tied_gaps"]  # tied is "not told apart", and the sentence says how far below it lies
    assert len(gap) == 2 and gap[0] == gap[1] > 0 and f"(their medians {100 * gap[0]:.2f} points lower, not told " \
        "apart)" in claims[0].text


def test_a_far_lower_end_with_wild_seeds_is_unclear_not_a_plateau(tmp_path):
    runs = [(TrainConfig(hidden=(8,), epochs=1, lr=lr, seed=s), acc) for lr, accs in
            {0.01: [0.90, 0.901], 0.1: [0.97, 0.971], 1.0: [0.3, 0.93]}.items() for s, acc in enumerate(accs)]
    claims = analysis.sweep_claims(analysis.by_setting(_store(tmp_path, runs), "lr"), "learning rate")
    assert _kinds(claims)[2] == "sweep_high_unclear" and "spread too widely" in claims[2].text


def test_an_interior_optimum_has_two_bad_ends(tmp_path):
    claims = analysis.sweep_claims(_sweep(tmp_path, {0.01: 0.90, 0.1: 0.97, 1.0: 0.91}), "learning rate")
    assert _kinds(claims)[:3] == ["sweep_best", "sweep_low_bad", "sweep_high_bad"]
    assert claims[0].facts["n_tied"] == 0
    assert "each of the other 2 values is worse beyond seed noise" in claims[0].text


def test_an_edge_optimum_with_tied_neighbours_is_a_plateau(tmp_path):
    """The best at the edge, its two neighbours within noise, the third clearly worse: a plateau back to 0.1."""
    accs = {0.01: [0.90, 0.901, 0.899], 0.1: [0.969, 0.972, 0.970], 0.3: [0.970, 0.968, 0.973],
            1.0: [0.971, 0.973, 0.970]}
    runs = [(TrainConfig(hidden=(8,), epochs=1, lr=lr, seed=s), a) for lr, xs in accs.items() for s, a in enumerate(xs)]
    claims = analysis.sweep_claims(analysis.by_setting(_store(tmp_path, runs), "lr"), "learning rate")
    assert _kinds(claims)[:2] == ["sweep_best", "sweep_edge_plateau"]
    assert claims[1].facts["n_plateau"] == 2 and claims[1].facts["plateau_from"] == 0.1
    assert "the 2 values next to it, back to 0.1, are tied with it" in claims[1].text
    assert "of the other 3 values, 2 are tied with it: 0.1, 0.3" in claims[0].text


def test_units_are_singular_for_one():
    facts = {"name": "width", "unit": " units", "best": 1, "best_val": 0.5, "n": 3, "n_tied": 1, "n_others": 1,
             "tied": ": 2 units", "tied_gap_said": ""}
    text = analysis.render("sweep_best", facts)
    assert "**1 unit**" in text and "the other value is tied with it" in text
    assert analysis.with_unit(4, " units") == "4 units" and analysis.with_unit(0.5, "") == "0.5"


def test_welch_matches_scipy_and_handles_no_spread():
    a, b = [0.9, 0.91, 0.92], [0.95, 0.97, 0.96, 0.955]
    assert analysis.welch_p(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert analysis.welch_p([0.5, 0.5], [0.5, 0.5]) == 1.0
    assert analysis.welch_p([0.5, 0.5], [0.6, 0.6]) == 0.0
    assert math.isnan(analysis.welch_p([0.5], [0.6, 0.7]))


def test_outcome_rule_on_made_up_histories():
    base = {"status": "done", "patience": 2, "min_delta": 0.01, "epochs": 10}
    conv = analysis.outcome({**base, "history": _history([0.9, 0.95, 0.951, 0.952], [0.5, 0.3, 0.295, 0.31])})
    assert conv == analysis.Outcome("converged", 2, 4)  # 0.295 is not 0.01 better than 0.3
    budget = analysis.outcome({**base, "epochs": 3, "history": _history([0.5, 0.6, 0.7], [2.0, 1.5, 1.0])})
    assert budget == analysis.Outcome("budget", 3, 3)
    collapsed = analysis.outcome({**base, "history": _history([0.11, 0.11, 0.11], [2.3, 2.3, 2.3])})
    assert collapsed.kind == "collapsed"
    assert analysis.outcome({**base, "status": "diverged", "history": []}).kind == "diverged"


@pytest.mark.parametrize("lr, patience", [(0.05, 1), (3.0, 1), (0.05, 0)])
def test_outcome_recomputed_from_history_matches_the_trainer(small_splits, lr, patience):
    cfg = TrainConfig(hidden=(16,), init="kaiming_uniform", lr=lr, momentum=0.9, epochs=4, batch_size=100,
                      val_size=10_000, patience=patience, min_delta=1e-3, seed=2)
    r = train(cfg, splits=small_splits, device="cpu", progress=False)
    o = analysis.outcome({"status": "diverged" if r.diverged else "done", "history": r.history, **cfg.to_dict()})
    assert o.kind == r.outcome
    assert o.stopped_epoch == r.stopped_epoch
    if patience and not r.diverged:
        assert o.best_epoch == r.best_epoch


def test_grid_counts_failed_seeds_and_best_is_on_validation(tmp_path):
    runs = []
    for lr in (0.01, 0.1):
        for scale in (0.01, 1.0):
            for s in range(3):
                acc = 0.11 if (lr, scale, s) == (0.1, 1.0, 2) else 0.9 + (0.05 if lr == 0.1 else 0) + 0.001 * s
                runs.append((TrainConfig(hidden=(8,), epochs=1, lr=lr, init="uniform", init_scale=scale, seed=s), acc))
    rows, cols, cells = analysis.grid(_store(tmp_path, runs), "init_scale", "lr")
    assert [[c.failed for c in r] for r in cells] == [[0, 0], [0, 1]]
    assert cells[1][1].median == pytest.approx(statistics.median([0.951, 0.950, 0.11]))
    claims = analysis.grid_claims(rows, cols, cells, "init scale")
    assert claims[0].facts["n_failed_cells"] == 1 and claims[0].facts["col"] == 0.1


def test_a_sentence_that_disagrees_with_its_facts_is_caught():
    claim = analysis.Claim("misclassified", {"n_test": 100, "n_any": 10, "n_all": 3, "n_seeds": 5,
                                             "n_expected": 0.01, "err_min": 4, "err_max": 6, "share_lo": 0.5,
                                             "share_hi": 0.75})
    assert "3 by all of them" in claim.text and "fewer than 0.1 would be" in claim.text
    assert "about 2.5 would be" in analysis.render("misclassified", {**claim.facts, "n_expected": 2.5})
    tampered = {**claim.as_dict(), "text": claim.text.replace("3 by all", "2 by all")}
    assert analysis.render(tampered["kind"], tampered["facts"]) != tampered["text"]


def test_ranking_orders_by_measurable_spread(tmp_path):
    (tmp_path / "wide").mkdir(), (tmp_path / "flat").mkdir()
    wide = _sweep(tmp_path / "wide", {0.01: 0.5, 0.1: 0.97})
    flat = _sweep(tmp_path / "flat", {0.01: 0.97, 0.1: 0.9701})
    claim = analysis.ranking_claim({"wide": wide, "flat": flat})
    assert claim.facts["order"] == ["wide"]


def test_ranking_over_working_values_leaves_out_controls_and_values_below_the_baseline(tmp_path):
    """A sweep whose spread comes from a control value (kept to show a failure) and one whose spread comes from a
    value below the baseline (a collapsed one) rank first over everything tried, and not at all over the working
    values; a value above the baseline stays in."""
    for d in ("ctl", "col", "real"):
        (tmp_path / d).mkdir()
    control = _sweep(tmp_path / "ctl", {0.01: 0.11, 0.1: 0.970, 0.3: 0.9702})  # 0.01 plays the control
    collapsed = _sweep(tmp_path / "col", {0.01: 0.15, 0.1: 0.970, 0.3: 0.9701})  # 15%: below 2x chance
    real = _sweep(tmp_path / "real", {0.01: 0.93, 0.1: 0.970})
    claim = analysis.ranking_claim({"init": control, "lr": collapsed, "width": real}, {"init": [0.01]}, 0.5,
                                   "a made-up baseline")
    f = claim.facts
    assert f["order"][-1] == "width" and set(f["order"]) == {"init", "lr", "width"}
    assert f["order_working"] == ["width"] and f["controls"] == "init: 0.01"
    assert claim.text.endswith(f"the ranking is width ({100 * analysis.spread(real)[0]:.1f} points).")
    spreads = {n: analysis.spread(pts)[0] for n, pts in (("init", control), ("lr", collapsed), ("width", real))}
    assert f["working_share"] == pytest.approx(spreads["width"] / sum(spreads.values()))
    assert "Most of that spread (" in claim.text  # the working values keep well under half of it
    assert "does not beat a made-up baseline (50.00%)" in claim.text
    low = analysis.ranking_claim({"width": real}, baseline=0.95).facts  # 0.93 does not beat 0.95: width drops out
    assert low["order"] == ["width"] and low["order_working"] == []


def test_a_ranking_that_a_value_just_below_the_cut_off_would_reorder_says_so(tmp_path):
    """Baseline 95%: sweep a spans 95.5-97% (1.5 points); sweep b 96-97% over its working values (1.0), but its
    value 0.01 sits at 94.8%, 0.2 points under the cut-off: with it b spans 2.2 points and ranks first. The claim
    names that value and the order it would give; a margin that reorders nothing is not mentioned."""
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "c").mkdir()
    a = _sweep(tmp_path / "a", {0.1: 0.955, 0.3: 0.97})
    b = _sweep(tmp_path / "b", {0.01: 0.948, 0.1: 0.96, 0.3: 0.97})
    claim = analysis.ranking_claim({"a": a, "b": b}, baseline=0.95, baseline_name="a line")
    f = claim.facts
    assert f["order_working"] == ["a", "b"] and f["order_wider"] == ["b", "a"]
    assert [n for n, _, _ in f["near"]] == ["b"] and f["near"][0][1] == 0.01
    gap = 100 * (0.95 - next(p.median for p in b if p.value == 0.01))
    assert f"That order rests on the cut-off: b's 0.01 misses it by {gap:.2f} points; with the values up to 0.5 " \
           "points below it, the ranking would be b (" in claim.text
    c = _sweep(tmp_path / "c", {0.01: 0.948, 0.1: 0.952, 0.3: 0.96})  # with 0.01 still narrower than a: same order
    assert analysis.ranking_claim({"a": a, "c": c}, baseline=0.95).facts["fragile_said"] == ""


def test_an_end_worse_only_within_the_budget_says_so(tmp_path):
    """The low end is worse beyond noise, but its runs were still going when the budget ran out (no patience rule
    fired): the claim is the budget-qualified one, with the count of such runs."""
    rng = random.Random(0)
    runs = []
    for lr, acc, patience in ((0.01, 0.90, 2), (0.1, 0.97, 2), (0.3, 0.9695, 2)):
        for s in range(3):
            # 0.01: val loss falls at every epoch of 3 (the budget stops it); others: improve once, then 2 flat epochs
            losses = [0.5, 0.4, 0.3] if lr == 0.01 else [0.2, 0.2, 0.2]
            accs = [acc + rng.gauss(0, 0.001)] * 3
            runs.append((TrainConfig(hidden=(8,), epochs=3, lr=lr, seed=s, patience=patience), accs, losses))
    pts = analysis.by_setting(_store_histories(tmp_path, runs), "lr")
    assert [[o.kind for o in p.outcomes] for p in pts] == [["budget"] * 3] + [["converged"] * 3] * 2
    claims = analysis.sweep_claims(pts, "learning rate")
    low = next(c for c in claims if c.kind.startswith("sweep_low"))
    assert low.kind == "sweep_low_bad_budget" and (low.facts["low_budget"], low.facts["low_n"]) == (3, 3)
    assert low.text.startswith("Within the 3-epoch budget") and "all 3 of its runs ended on the budget" in low.text
    ranking = analysis.ranking_claim({"lr": pts}, baseline=0.5)  # the spread rests on the budget-stopped 0.01
    assert ranking.facts["budget_bound"] == ["lr"]
    assert f"lr ({100 * analysis.spread(pts)[0]:.1f} points)†" in ranking.text  # the mark, and what it means
    assert "†: the sweep's worst value stopped on the budget, not converged." in ranking.text
    assert "a longer budget or another range could reorder them" in ranking.text


def test_a_converged_run_that_broke_down_after_its_reported_epoch_is_named(tmp_path):
    """At lr 1 every run reports epoch 1 (70%) and then falls to chance until the patience rule stops it: converged by
    the rule, and named as broken down; at lr 0.1 a drop of 5 points after the reported epoch is not a breakdown."""
    runs = []
    for lr, accs, losses in ((0.1, [0.95, 0.90, 0.90, 0.90], [0.2, 0.3, 0.3, 0.3]),
                             (1.0, [0.70, 0.11, 0.10, 0.10], [1.5, 2.3, 2.3, 2.3])):
        runs += [(TrainConfig(hidden=(8,), epochs=10, lr=lr, seed=s, patience=3), accs, losses) for s in range(3)]
    pts = analysis.by_setting(_store_histories(tmp_path, runs), "lr")
    assert [[o.kind for o in p.outcomes] for p in pts] == [["converged"] * 3] * 2  # neither is "collapsed"
    c = next(c for c in analysis.sweep_claims(pts, "learning rate") if c.kind == "sweep_breakdown")
    assert [(r["value"], r["k"], r["n"]) for r in c.facts["rows"]] == [(1.0, 3, 3)]
    assert "at 1, all 3 of its runs (median 70.00% at the reported epoch, 10.00% at the last; the best any of its 3 " \
           "runs reached at any epoch: 70.00%)" in c.text
    assert "lost more than 10 points" in c.text
    assert not any(c.kind == "sweep_little" for c in analysis.sweep_claims(pts, "learning rate"))


def test_runs_above_the_collapse_line_that_were_never_half_right_are_named_once(tmp_path):
    """lr 1: finite runs at 25-40% (above the collapse line, 20%), two converged (one of them broke down after its
    reported epoch) and one stopped by the budget. They are named as never half right, each once: the breakdown
    sentence leaves them out. lr 0.1 (95%) and lr 10 (collapsed, 10%) are not named."""
    runs = [(TrainConfig(hidden=(8,), epochs=4, lr=0.1, seed=s, patience=2), [0.95] * 4, [0.2, 0.3, 0.3, 0.3])
            for s in range(3)]
    runs += [(TrainConfig(hidden=(8,), epochs=4, lr=1.0, seed=0, patience=2), [0.40, 0.25, 0.25], [1.5, 2.3, 2.3]),
             (TrainConfig(hidden=(8,), epochs=4, lr=1.0, seed=1, patience=2), [0.30, 0.30, 0.30], [1.5, 2.3, 2.3]),
             (TrainConfig(hidden=(8,), epochs=4, lr=1.0, seed=2, patience=2), [0.20, 0.25, 0.30, 0.35],
              [2.0, 1.9, 1.8, 1.7])]
    runs += [(TrainConfig(hidden=(8,), epochs=4, lr=10.0, seed=s, patience=2), [0.10] * 3, [2.3] * 3)
             for s in range(3)]
    pts = analysis.by_setting(_store_histories(tmp_path, runs), "lr")
    assert [[o.kind for o in p.outcomes] for p in pts] == [["converged"] * 3, ["converged", "converged", "budget"],
                                                           ["collapsed"] * 3]
    claims = analysis.sweep_claims(pts, "learning rate")
    little = next(c for c in claims if c.kind == "sweep_little")
    assert [(r["value"], r["k"], r["n"]) for r in little.facts["rows"]] == [(1.0, 3, 3)]
    assert "Never half right: at 1, all 3 of its runs (at best 30.00% to 40.00%)" in little.text
    assert "above the collapse line (20.00%)" in little.text
    assert "counts them as converged or stopped by the budget" in little.text
    assert not any(c.kind == "sweep_breakdown" for c in claims)  # seed 0 fell 15 points: told once, above
    one = analysis.little_claim([analysis.Point(pts[1].value, pts[1].records[:1])], {"name": "lr"})  # seed 0 alone
    assert "This run stayed finite" in one.text and "counts it as converged" in one.text


def test_overfitting_is_called_only_beyond_the_noise_and_without_an_accuracy_gain():
    def h(train, val_loss, val_acc):
        return [{"epoch": e + 1, "train_loss": a, "val_loss": b, "val_accuracy": c}
                for e, (a, b, c) in enumerate(zip(train, val_loss, val_acc))]

    clear = h([0.3, 0.2, 0.1], [0.10, 0.12, 0.15], [0.97, 0.96, 0.95])  # loss up by 0.05, accuracy down
    tiny = h([0.3, 0.2, 0.1], [0.10, 0.1005, 0.1008], [0.97, 0.969, 0.969])  # up by 0.0008 < the noise, 0.001
    better = h([0.3, 0.2, 0.1], [0.10, 0.12, 0.15], [0.97, 0.975, 0.98])  # loss up, but accuracy up too
    claim = analysis.overfit_claim([(clear, 1, 0.001), (tiny, 1, 0.001), (better, 1, 0.001), (clear, 3, 0.001),
                                    (clear, 1, 0.1)])  # the last: a rise of 0.05 is within a noise of 0.1
    f = claim.facts
    assert (f["n_over"], f["n_acc_up"], f["n_after"], f["n_runs"]) == (1, 1, 4, 5)
    assert claim.text.startswith("Of the 5 runs of the recipes, 4 trained on") and "In 1 of those" in claim.text
    assert f["rises"] == [pytest.approx(0.05)] and f["acc_changes"] == [pytest.approx(-0.02)]
    assert " (the rises are slight: 0.0500 nats of validation loss, with changes of -2.00 points" in claim.text
    assert "slight" not in analysis.overfit_claim([(better, 1, 0.001)]).text  # none overfit: no sizes


# -- the search comparison: made-up trials whose answers are known ----------------------------------------------------


def _trial(number, state, value, epochs, population, seconds, params=None, test=None):
    return {"number": number, "state": state, "value": value, "params": params or {"lr": 0.1 * (number + 1)},
            "epochs": epochs, "seconds": seconds, "population": population,
            "round": population.rsplit("-", 1)[0], "test_accuracy": test, "outcome": state}


def _halving_like():
    """Two rounds (the second asked later, its trials numbered after the first's), one population each; trial 4 ties
    trial 1's value but comes later, trial 2 diverged after one epoch."""
    return [_trial(0, "pruned", None, 1, "ab-0-0", 1.0), _trial(1, "complete", 0.95, 3, "ab-0-0", 4.0, test=0.94),
            _trial(2, "fail", None, 1, "ab-0-0", 1.0), _trial(3, "pruned", None, 1, "cd-0-0", 2.0),
            _trial(4, "complete", 0.95, 3, "cd-0-0", 5.0, test=0.90), _trial(5, "complete", 0.97, 3, "cd-0-0", 5.5)]


def test_search_summary_counts_compute_once_per_population_and_picks_the_earliest_best():
    s = analysis.search_summary(_halving_like())
    assert (s["trials"], s["complete"], s["pruned"], s["failed"]) == (6, 3, 2, 1)
    assert s["model_epochs"] == 1 + 3 + 1 + 1 + 3 + 3
    assert s["seconds"] == pytest.approx(4.0 + 5.5)  # each population's longest trial: its wall time
    assert s["populations"] == 2
    assert s["best_val"] == 0.97 and s["best_number"] == 5 and s["best_test"] is None
    tie = analysis.search_summary(_halving_like()[:5])
    assert tie["best_number"] == 1 and tie["best_test"] == 0.94  # a tie goes to the earlier trial, as tune.py does
    assert analysis.search_summary(_halving_like(), seeds=2)["model_epochs"] == 2 * 12
    nothing = analysis.search_summary([_trial(0, "pruned", None, 1, "x-0-0", 1.0)])
    assert nothing["best_val"] is None and nothing["best_params"] == {}


def test_search_curve_steps_at_each_round_in_the_order_asked():
    trials = _halving_like()
    assert analysis.search_curve(trials[::-1]) == [(5, 0.95), (12, 0.97)]  # input order does not matter
    first = analysis.search_curve([trials[0], trials[3], trials[4]])
    assert first[0][0] == 1 and math.isnan(first[0][1]) and first[1] == (5, 0.95)


def test_shared_settings_counts_exact_parameter_matches():
    a = [{"params": {"lr": 0.1, "momentum": 0.5}}, {"params": {"lr": 0.2, "momentum": 0.5}}]
    b = [{"params": {"momentum": 0.5, "lr": 0.1}}, {"params": {"lr": 0.3, "momentum": 0.5}}]
    assert analysis.shared_settings(a, b) == 1 and analysis.shared_settings(a, a) == 2


def _summaries(grid, random_, halving):
    return {m: {"trials": n, "complete": n, "pruned": pruned, "failed": 0, "model_epochs": 80, "seconds": 1.0,
                "best_val": v, "best_test": v, "best_params": {}, "best_number": 0}
            for m, v, n, pruned in (("grid", grid, 20, 0), ("random", random_, 20, 0), ("halving", halving, 44, 36))}


TITLES = {"grid": "grid search", "random": "random search", "halving": "successive halving"}
NOISE = [0.950, 0.951, 0.952, 0.953, 0.954]  # sd 0.00158 over 5 seeds


def test_search_claims_call_a_gap_beyond_noise_and_one_within():
    claims = analysis.search_claims(_summaries(0.950, 0.9595, 0.960), TITLES, 4, 20, NOISE,
                                    {"lr": 0.05, "momentum": 0.9}, 20)
    assert _kinds(claims) == ["search_compute", "search_noise", "search_best"]
    compute, noise, best = (c.facts for c in claims)
    assert compute["budget"] == 80 and compute["halving_pruned"] == 36 and compute["n_shared"] == 20
    sd = float(np.std(NOISE, ddof=1))
    assert noise["sd"] == pytest.approx(sd) and noise["df"] == 4
    assert noise["threshold"] == pytest.approx(stats.t.ppf(0.975, 4) * math.sqrt(2) * sd)
    assert (best["first_method"], best["second_method"], best["third_method"]) == ("halving", "random", "grid")
    # independent: the difference of two single runs has sd * sqrt(2); over its estimate it is t with n - 1 dof
    for place, gap in (("second", 0.0005), ("third", 0.010)):
        assert best[f"{place}_gap"] == pytest.approx(gap)
        assert best[f"{place}_p"] == pytest.approx(2 * stats.t.sf(gap / (sd * math.sqrt(2)), 4))
    assert (best["second_verdict"], best["third_verdict"]) == ("within", "beyond")
    assert best["conclusion"] == ("successive halving is ahead of grid search beyond seed noise, but tied with "
                                  "random search")
    assert "**successive halving** found the best setting, 96.00%" in claims[2].text
    assert "(1.00 points lower: beyond seed noise, p = " in claims[2].text


def test_search_claims_do_not_rank_methods_within_noise_or_without_a_noise_measure():
    claims = analysis.search_claims(_summaries(0.9579, 0.9582, 0.9586), TITLES, 4, 20, NOISE,
                                    {"lr": 0.05, "momentum": 0.9}, 20)
    best = claims[2].facts
    assert (best["second_verdict"], best["third_verdict"]) == ("within", "within")
    assert "does not rank the three methods" in claims[2].text
    clear = analysis.search_claims(_summaries(0.90, 0.91, 0.96), TITLES, 4, 20, NOISE, {"lr": 0.05, "momentum": 0.9},
                                   0)[2]
    assert clear.facts["conclusion"] == "successive halving is ahead of both beyond seed noise"
    one_seed = analysis.search_claims(_summaries(0.90, 0.91, 0.96), TITLES, 4, 20, NOISE[:1],
                                      {"lr": 0.05, "momentum": 0.9}, 0)
    assert _kinds(one_seed) == ["search_compute", "search_noise_none", "search_best_unmeasured"]
    assert "not called" in one_seed[2].text


def test_search_trials_read_back_what_tune_reported(tmp_path, small_splits):
    """A real (tiny) halving search through tune.run: the study's reader of its storage agrees with tune's summary."""
    import torch

    from mlplab import study, tune

    spec = {"base": {"hidden": [16], "batch_size": 200}, "search": {"lr": {"loguniform": [0.01, 0.5]}},
            "tune": {"trials": 8, "per_round": 4, "sampler": "random", "pruner": "halving", "eta": 2, "max_epochs": 2,
                     "name": "made-up"}}
    saved = torch.get_num_threads()
    try:
        ran = tune.run(spec, storage=tmp_path / "s.sqlite3", splits=small_splits, device="cpu", threads=1)
    finally:
        torch.set_num_threads(saved)
    trials = study.search_trials(tmp_path / "s.sqlite3", "made-up")
    s = analysis.search_summary(trials)
    assert (s["trials"], s["complete"], s["pruned"]) == (ran.trials, ran.complete, ran.pruned) == (8, 4, 4)
    assert s["model_epochs"] == ran.model_epochs == 2 * tune.halving_model_epochs(4, 2, 1, 2)
    assert s["best_val"] == ran.best_value and s["best_test"] == ran.best_test_accuracy
    assert s["best_params"] == ran.best_params
    curve = analysis.search_curve(trials)
    assert [x for x, _ in curve] == [6, 12] and curve[-1][1] == ran.best_value


def _batch_lr_grid(tmp_path, best_lr, spread):
    """A made-up batch size x learning rate grid: per batch size, accuracy peaks at best_lr[batch] and falls by
    `spread` per grid step away from it; 3 seeds with a little noise."""
    lrs, rng = [0.001, 0.01, 0.1, 1.0], random.Random(1)
    runs = [(TrainConfig(hidden=(8,), epochs=1, batch_size=b, lr=lr, seed=s),
             0.95 - spread * abs(lrs.index(lr) - lrs.index(top)) + rng.gauss(0, 0.0005))
            for b, top in best_lr.items() for lr in lrs for s in range(3)]
    return analysis.grid(_store(tmp_path, runs), "batch_size", "lr")


def _trend(tmp_path, medians, spread):
    """The trend claim of a made-up batch size x learning rate (0.001, 0.01, 0.1, 1) grid: medians[batch] per rate,
    3 seeds at median - spread, median, median + spread."""
    runs = [(TrainConfig(hidden=(8,), epochs=1, batch_size=b, lr=lr, seed=s), m + d)
            for b, ms in medians.items() for lr, m in zip([0.001, 0.01, 0.1, 1.0], ms)
            for s, d in enumerate([-spread, 0.0, spread])]
    return analysis.grid_claims(*analysis.grid(_store(tmp_path, runs), "batch_size", "lr"), "batch size")[-1]


def test_a_best_rate_that_rises_with_the_batch_beyond_noise_is_called_so(tmp_path):
    rows, cols, cells = _batch_lr_grid(tmp_path, {32: 0.001, 256: 0.01, 2048: 1.0}, spread=0.02)
    trend = analysis.grid_claims(rows, cols, cells, "batch size")[-1]
    assert trend.kind == "grid_trend" and trend.facts["direction"] == "rises" and trend.facts["separated"]
    assert trend.facts["best_cols"] == [0.001, 0.01, 1.0]
    assert "the best learning rate rises" in trend.text and "the shift is beyond seed noise" in trend.text


def test_a_row_whose_tied_rates_skip_a_worse_one_is_named(tmp_path):
    """Batch 32: the best rate 0.01 (tight seeds), 0.1 worse (tight), 1 with one wild seed, hence tied with the
    best; batch 256: a clean row. Only batch 32's tied rates skip one."""
    seeds = {32: {0.001: [0.90, 0.90, 0.90], 0.01: [0.969, 0.970, 0.971], 0.1: [0.93, 0.93, 0.93],
                  1.0: [0.969, 0.968, 0.60]},
             256: {0.001: [0.90, 0.90, 0.90], 0.01: [0.969, 0.970, 0.971], 0.1: [0.93, 0.93, 0.93],
                   1.0: [0.90, 0.90, 0.90]}}
    runs = [(TrainConfig(hidden=(8,), epochs=1, batch_size=b, lr=lr, seed=k), v)
            for b, row in seeds.items() for lr, vs in row.items() for k, v in enumerate(vs)]
    trend = analysis.grid_claims(*analysis.grid(_store(tmp_path, runs), "batch_size", "lr"), "batch size")[-1]
    assert trend.facts["gapped"] == [32]
    assert "32: 0.01 and 1;" in trend.text and "At batch size 32 the tied rates skip a rate that is worse" in trend.text


def test_a_rising_best_rate_within_noise_is_not_called_a_shift(tmp_path):
    """The best rate rises one step per row, but its neighbours sit within the seeds' noise: ranges overlap."""
    medians = {32: [0.950, 0.949, 0.948, 0.90], 256: [0.949, 0.950, 0.949, 0.90], 2048: [0.948, 0.949, 0.950, 0.90]}
    trend = _trend(tmp_path, medians, 0.003)
    assert trend.facts["direction"] == "rises" and not trend.facts["separated"]
    assert "not established beyond seed noise" in trend.text
    assert "32: 0.001 to 0.1" in trend.text  # every rate but 1 ties with the best of batch 32


def test_a_shift_beyond_noise_in_one_step_only_is_called_for_that_step(tmp_path):
    medians = {32: [0.950, 0.949, 0.90, 0.90], 256: [0.949, 0.950, 0.90, 0.90], 2048: [0.90, 0.90, 0.90, 0.95]}
    trend = _trend(tmp_path, medians, 0.002)
    assert trend.facts["steps_apart"] == [False, True] and not trend.facts["separated"]
    assert "do not overlap between 256 and 2048, a shift beyond seed noise there, but they do between 32 and 256" \
        in trend.text and "2048: 1 only" in trend.text


def test_a_best_rate_that_rises_with_a_tie_is_weakly_rising_and_lists_scattered_ties(tmp_path):
    """Best rates 0.001, 0.01, 0.01 rise with a tie (not "without a monotone trend"); a row whose tied rates are not
    contiguous lists them instead of spanning the worse rate between them."""
    medians = {32: [0.950, 0.90, 0.948, 0.80], 256: [0.90, 0.950, 0.90, 0.80], 2048: [0.90, 0.950, 0.90, 0.80]}
    trend = _trend(tmp_path, medians, 0.002)
    assert trend.facts["direction"] == "rises" and trend.facts["best_cols"] == [0.001, 0.01, 0.01]
    assert "rises, with some neighbouring rows sharing a best rate" in trend.text
    assert "32: 0.001 and 0.1;" in trend.text and "0.001 to 0.1" not in trend.text


def test_a_best_rate_shared_by_every_row_stays(tmp_path):
    rows, cols, cells = _batch_lr_grid(tmp_path, {32: 0.01, 256: 0.01, 2048: 0.01}, spread=0.02)
    trend = analysis.grid_claims(rows, cols, cells, "batch size")[-1]
    assert trend.facts["direction"] == "stays" and "stays" in trend.text and not trend.facts["separated"]
    assert "No shift is claimed" in trend.text


def test_depth_signal_claim_states_each_init_and_whether_gradients_stay_flat():
    act = {"small": [1.0, 0.1, 0.001], "course": [1e-3, 1e-8, 1e-12], "he": [1.0, 1.1, 0.9]}
    flat = {"small": [1e-5, 1e-5, 2e-5], "course": [1e-9, 1e-9, 1e-9], "he": [1e-2, 1e-2, 1e-2]}
    c = analysis.depth_signal_claim(act, flat, course="course")
    assert c.facts["act_ratios"] == {"small": 0.001, "course": 1e-9, "he": 0.9} and c.facts["grad_flat"]
    assert "small: 0.001; course: 1e-09; he: 0.9" in c.text and "signal after 3 layers is 1.0e-09" in c.text
    steep = {**flat, "small": [1e-5, 1e-7, 1e-9]}
    c = analysis.depth_signal_claim(act, steep, course="course")
    assert not c.facts["grad_flat"] and "also changes from the first layer to the last" in c.text


def test_failures_name_the_values_where_runs_collapsed_or_diverged(tmp_path):
    """Made-up store: at lr 1 one seed collapses (finite, below 2x chance), at lr 3 two diverge; lr 0.1 is fine."""
    path = tmp_path / "fail.sqlite"
    runs = [(0.1, s, 0.95, "budget") for s in range(3)] + [(1.0, 0, 0.11, "budget"), (1.0, 1, 0.9, "budget"),
                                                            (1.0, 2, 0.91, "budget"), (3.0, 0, 0.5, "budget"),
                                                            (3.0, 1, 0.0, "diverged"), (3.0, 2, 0.0, "diverged")]
    configs = [TrainConfig(hidden=(8,), epochs=1, lr=lr, seed=s) for lr, s, _, _ in runs]
    results = [TrainResult(config=c, history=_history([acc]), params={}, best_epoch=None, outcome=how,
                           diverged=how == "diverged") for c, (_, _, acc, how) in zip(configs, runs)]
    with Store(path) as s:
        s.claim(configs)
        s.finish(results)
        records = s.records()
    pts = analysis.by_setting(records, "lr")
    failed = [c for c in analysis.sweep_claims(pts, "learning rate") if c.kind == "sweep_failures"]
    assert len(failed) == 1 and failed[0].facts["failed"] == [[1.0, 1, 0], [3.0, 0, 2]]
    assert "3 of the 9 runs failed" in failed[0].text and ": 1 (1 collapsed), 3 (2 diverged)." in failed[0].text


def test_counts_read_as_english():
    assert analysis.render("zero_one_class", {"n_one": 3, "n": 3, "classes": "1"}).startswith("All 3 of the ")
    assert analysis.render("zero_one_class", {"n_one": 2, "n": 3, "classes": "1"}).startswith("2 of the 3 ")
    facts = {"low": 0.1, "low_val": 0.9, "low_p": 0.001, "low_budget": 1, "low_n": 3, "budget": 15, "unit": ""}
    assert "; 1 of its 3 runs ended on the budget" in analysis.render("sweep_low_bad_budget", facts)
    assert "; all 3 of its runs ended" in analysis.render("sweep_low_bad_budget", {**facts, "low_budget": 3})
    threads = {"t_a": 1, "t_b": 2, "repeat": "bit-identical", "n_diff": 14911, "n_total": 50890, "max_diff": 1e-7}
    text = analysis.render("threads", threads)
    assert "with 1 thread, the" in text and "with 2 threads instead" in text and "14,911 of 50,890" in text


def test_narrowest_widths_tied_and_the_first_width_to_beat_the_baseline(tmp_path):
    means = {1: 0.37, 2: 0.36, 4: 0.80, 16: 0.95, 64: 0.975}
    runs = [(TrainConfig(hidden=(w,), epochs=1, seed=s), m + d) for w, m in means.items()
            for s, d in enumerate([-0.02, 0.0, 0.02])]
    pts = analysis.by_setting(_store(tmp_path, runs), "hidden")
    c = analysis.narrowest_claim(pts, 0.92, "softmax regression", " units")
    assert (c.facts["a"], c.facts["b"], c.facts["verdict"], c.facts["first"]) == (1, 2, "tied", 16)
    assert c.facts["p"] == pytest.approx(stats.ttest_ind([0.35, 0.37, 0.39], [0.34, 0.36, 0.38],
                                                         equal_var=False).pvalue)
    assert "1 unit and 2 units" in c.text and "beats softmax regression (92.00%) is 16 units (95.00%); the next " \
        "narrower, 4 units, reaches 80.00%." in c.text and (c.facts["below"], c.facts["below_val"]) == (4, 0.80)
    c = analysis.narrowest_claim(pts, 0.99, "softmax regression", " units")
    assert c.facts["first"] is None and c.facts["below"] is None and "is none of the widths tried." in c.text
    c = analysis.narrowest_claim(pts, 0.10, "softmax regression", " units")
    assert c.facts["first"] == 1 and c.facts["below"] is None and "is 1 unit (37.00%)." in c.text


def test_a_best_rate_tied_in_every_row_is_named_when_the_best_moves(tmp_path):
    """Best rates 0.01, 0.001, 0.01 (no monotone trend), but 0.01 is tied with the best in every row."""
    medians = {32: [0.90, 0.950, 0.90, 0.80], 256: [0.951, 0.950, 0.90, 0.80], 2048: [0.90, 0.950, 0.90, 0.80]}
    trend = _trend(tmp_path, medians, 0.002)
    assert trend.facts["direction"] == "moves without a monotone trend" and trend.facts["common"] == [0.01]
    assert "No shift is claimed: 0.01 is the best rate or tied with it in every row" in trend.text


def _findings_parts(tmp_path):
    """The claims besides the grids' that the summary's findings copy from: made up, except the ANOVA's store."""
    (tmp_path / "seeds").mkdir()
    anova = analysis.anova_claim(_store(tmp_path / "seeds", _seed_grid(0.003, 0.0, rng_seed=1)))
    zero = analysis.Claim("zero_stored", {"zero_val": 0.1064, "zero_outcomes": "3 collapsed", "random_val": 0.97,
                                          "random_name": "kaiming_uniform"})
    one = analysis.Claim("zero_one_class", {"n_one": 3, "n": 3, "classes": "1, 3, 7"})
    search = analysis.search_claims(
        {m: {"model_epochs": 80, "trials": 20, "complete": 20, "pruned": 0, "failed": 0, "best_val": v}
         for m, v in (("grid", 0.95), ("random", 0.951), ("halving", 0.952))},
        {"grid": "grid search", "random": "random search", "halving": "successive halving"}, 4, 20,
        [0.955, 0.96, 0.958], {"lr": 0.05, "momentum": 0.9}, 20)
    parts = analysis.Claim("recipe_parts", {"short": "Adam matters beyond seed noise", "k": 3})
    return anova, zero, one, search, parts


def test_findings_copy_their_facts_from_the_claims_that_state_them(tmp_path):
    medians = {32: [0.950, 0.949, 0.90, 0.90], 256: [0.949, 0.950, 0.90, 0.90], 2048: [0.90, 0.90, 0.90, 0.95]}
    trend = _trend(tmp_path, medians, 0.002)
    anova, zero, one, search, parts = _findings_parts(tmp_path)
    c = analysis.findings_claim({"batch size": trend}, anova, zero, one, search, parts)
    assert "recipe's 3 parts, changed one at a time (section 3): Adam matters beyond seed noise." in c.text
    assert c.facts["moves"]["batch size"]["steps_apart"] == trend.facts["steps_apart"] == [False, True]
    assert c.facts["p_rows"] == anova.facts["p_rows"] < 0.05 and c.facts["zero_one"] == 3
    assert "with the batch size it rises (beyond seed noise from 256 to 2048 only)" in c.text
    assert "the init seed shows a detectable effect" in c.text and "all 3 of its runs predict a single digit" in c.text
    assert "above every search's best" in c.text and "does not rank the three methods" in c.text


def test_recipe_parts_name_the_part_whose_removal_costs_accuracy(tmp_path):
    """Made-up store: the full recipe at 0.98; without label smoothing 0.97 (worse), a constant rate 0.9798 (tied),
    SGD instead of Adam 0.95 (worse)."""
    full = dict(optimizer="adam", lr=3e-3, schedule="cosine", label_smoothing=0.1, momentum=0.0)
    arms = {"full": (full, 0.98), "no_ls": ({**full, "label_smoothing": 0.0}, 0.97),
            "constant": ({**full, "schedule": "constant", "epochs": 30}, 0.9798),
            "sgd": ({**full, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9}, 0.95)}
    runs = [(TrainConfig(hidden=(8,), **{"epochs": 10, **cfg}, seed=s), m + d) for cfg, m in arms.values()
            for s, d in enumerate([-0.001, 0.0, 0.001])]
    pts = analysis.by_setting(_store(tmp_path, runs), "recipe")
    c = analysis.recipe_parts_claim(pts[0], pts[1:])
    assert [r["verdict"] for r in c.facts["parts"]] == ["worse beyond seed noise", "tied", "worse beyond seed noise"]
    assert [r["part"] for r in c.facts["parts"]] == ["dropping label smoothing", "dropping the cosine schedule",
                                                     "replacing Adam by SGD at momentum 0.9, learning rate 0.05 "
                                                     "(not re-tuned)"]
    assert c.facts["parts"][0]["p"] == pytest.approx(stats.ttest_ind([0.969, 0.97, 0.971], [0.979, 0.98, 0.981],
                                                                     equal_var=False).pvalue)
    assert "with no label smoothing, 97.00% (1.00 points lower" in c.text
    assert "with a constant rate (budget 30 epochs)" in c.text
    assert "with SGD (momentum 0.9, learning rate 0.05) instead of Adam" in c.text
    assert "Dropping label smoothing and replacing Adam by SGD at momentum 0.9, learning rate 0.05 (not re-tuned) " \
           "cost accuracy beyond seed noise, also after a " \
           "correction for the 3 comparisons (p < 0.0167); dropping the cosine " \
           "schedule costs 0.02 points, within seed noise (3 seeds per arm" in c.text
    assert c.facts["short"] == "label smoothing and Adam (against SGD at a learning rate not re-tuned) matter " \
                               "beyond seed noise and the cosine schedule cannot be told from seed noise"


def test_recipe_parts_call_a_loss_beyond_noise_borderline_when_it_would_not_survive_a_correction(tmp_path):
    """Two arms each lose 0.2 points: one with tight seeds (p far below 0.05 / 2), one with looser seeds whose p lies
    between 0.05 / 2 and 0.05."""
    full = dict(optimizer="adam", lr=3e-3, schedule="cosine", label_smoothing=0.1, momentum=0.0)
    spreads = {"full": (full, 0.98, 0.0005), "no_ls": ({**full, "label_smoothing": 0.0}, 0.978, 0.0005),
               "constant": ({**full, "schedule": "constant"}, 0.978, 0.0009)}
    runs = [(TrainConfig(hidden=(8,), epochs=10, **cfg, seed=s), m + d * sd) for cfg, m, sd in spreads.values()
            for s, d in enumerate([-1.0, 0.0, 1.0])]
    pts = analysis.by_setting(_store(tmp_path, runs), "recipe")
    c = analysis.recipe_parts_claim(pts[0], pts[1:])
    ps = [r["p"] for r in c.facts["parts"]]
    assert ps[0] < 0.025 < ps[1] < 0.05, ps
    assert "Dropping label smoothing costs accuracy beyond seed noise, also after a correction for the 2" in c.text
    assert "dropping the cosine schedule is borderline (p = 0.0" in c.text
    assert "but not below 0.025, the bar after a correction for the 2 comparisons" in c.text
    assert c.facts["short"] == "label smoothing matters beyond seed noise and the cosine schedule is borderline"


def test_bottleneck_claim_reads_intervals_zeros_and_dead_units():
    # one unit: h = 0 for two images (both predicted 6), then intervals 0, 2, 7 along h; digits 1, 3-5, 8, 9 never
    codes, pred, y = [[0.0], [2.0], [0.0], [1.0], [3.0], [1.5]], [6, 2, 6, 0, 7, 2], [6, 2, 5, 0, 7, 3]
    c = analysis.bottleneck_claim("k", 0, codes, pred, y)
    f = c.facts
    assert c.kind == "bottleneck_1" and f["order"] == [6, 0, 2, 7] and f["n_zero"] == 2 and f["zero_preds"] == [6]
    assert f["acc"] == pytest.approx(4 / 6) and f["never"] == [1, 3, 4, 5, 8, 9] and f["n_pred"] == 4
    assert "0 for 2 images (33.3%), and those all get the same prediction, 6." in c.text
    assert "predicts 6, 0, 2, 7: 4 of the 10 digits, never 1, 3, 4, 5, 8 or 9." in c.text
    # two units, the second dead: it reads one number
    c = analysis.bottleneck_claim("k", 0, [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]], [1, 3, 4], [1, 3, 3])
    assert c.kind == "bottleneck_2" and c.facts["dead"] == [2] and "order" not in c.facts
    assert "its hidden unit 2 is 0 for every image" in c.text and "hidden unit 1 is 0 for 1 image (33.3%)" in c.text
    assert "intervals of that one number" in c.text
    # two live units, never both 0
    c = analysis.bottleneck_claim("k", 0, [[0.0, 1.0], [1.0, 0.0]], list(range(2)), [0, 1])
    assert c.facts["dead"] == [] and c.facts["n_zero"] == 0 and "never both 0" in c.text and "convex region" in c.text
    with pytest.raises(AssertionError):
        analysis.bottleneck_claim("k", 0, [[0.0, 1.0, 2.0]], [0], [0])
    # the accuracy stored with the run (another precision) is said beside the float32 one, only when it differs
    c = analysis.bottleneck_claim("k", 0, codes, pred, y, stored_acc=0.65, precision="bf16")
    assert "scored in float32: 66.67% of the 6 validation images; the run stored 65.00%, measured under bf16" in c.text
    assert "the run stored" not in analysis.bottleneck_claim("k", 0, codes, pred, y, stored_acc=4 / 6).text


def test_a_shift_carried_by_budget_stopped_rows_is_said_to_hold_within_the_budget(tmp_path):
    """Batch 128's best rate 0.01 converges (its loss stops falling); batch 2048's best rate 1 still improves at the
    3-epoch budget: the rise is beyond noise, but only within the budget, in the grid and in the summary."""
    runs = []
    for b, top in ((128, 0.01), (2048, 1.0)):
        for lr in (0.001, 0.01, 0.1, 1.0):
            m = 0.95 - 0.05 * abs([0.001, 0.01, 0.1, 1.0].index(lr) - [0.001, 0.01, 0.1, 1.0].index(top))
            losses = [0.5, 0.4, 0.3] if b == 2048 else [0.5, 0.5, 0.5, 0.5]
            for s, d in enumerate([-0.001, 0.0, 0.001]):
                runs.append((TrainConfig(hidden=(8,), epochs=len(losses), patience=3 if b == 128 else 2,
                                         batch_size=b, lr=lr, seed=s), [m + d] * len(losses), losses))
    trend = analysis.grid_claims(*analysis.grid(_store_histories(tmp_path, runs), "batch_size", "lr"),
                                 "batch size")[-1]
    assert trend.facts["direction"] == "rises" and trend.facts["separated"] and trend.facts["bound_rows"] == [2048]
    assert "At batch size 2048 most runs of the best cell stopped on the 3-epoch budget" in trend.text
    f = analysis.findings_claim({"batch size": trend}, *_findings_parts(tmp_path)).facts
    assert "with the batch size it rises (beyond seed noise, within the epoch budget)" in f["interactions"]


def test_tiny_init_scales_pooled_show_a_cost_no_single_scale_can(tmp_path):
    """Three tiny scales each 0.4 points below four regular ones, 3 seeds each with a 0.3-point spread: no single
    pair differs beyond noise, the pooled 9 against 12 runs do; they also start lower after epoch 1."""
    runs = []
    for a, m in ((1e-12, 0.971), (1e-9, 0.971), (1e-6, 0.971), (1e-4, 0.975), (1e-3, 0.975), (1e-2, 0.975),
                 (1e-1, 0.975)):
        first = 0.90 if a < 1e-5 else 0.94
        for s, d in enumerate([-0.003, 0.0, 0.003]):
            runs.append((TrainConfig(hidden=(8,), epochs=2, init="uniform", init_scale=a, seed=s),
                         [first, m + d], [0.3, 0.1]))
    pts = analysis.by_setting(_store_histories(tmp_path, runs), "init_scale")
    assert all(analysis.versus(p, pts[3]) == "tied" for p in pts[:3])  # pairwise: nothing to see
    c = analysis.tiny_pooled_claim(pts, [1e-12, 1e-9, 1e-6])
    f = c.facts
    assert (f["n_tiny"], f["n_ref"]) == (9, 12) and f["gap"] == pytest.approx(0.004)
    assert f["p"] == pytest.approx(stats.ttest_ind([v for p in pts[:3] for v in p.vals],
                                                   [v for p in pts[3:] for v in p.vals], equal_var=False).pvalue)
    assert f["p"] < 0.05 and "a small cost of the tiny scales" in c.text and "0.0001 to 0.1" in c.text
    assert f["tiny_e1"] == pytest.approx(0.90) and f["ref_e1"] == pytest.approx(0.94) and "start slower" in c.text
    assert analysis.tiny_pooled_claim(pts[3:], [1e-12, 1e-9, 1e-6]) is None  # no tiny values, no claim


def test_live_gap_reads_a_crossing_and_whether_validation_still_rises():
    def log(pairs):
        return [{"epoch": e + 1, "train_accuracy": t, "val_accuracy": v} for e, (t, v) in enumerate(pairs)]

    ahead = analysis.live_gap_claim(log([(0.90, 0.91), (0.92, 0.93)]))
    assert ahead.facts["n_below"] == 2 and "after each of the 2 epochs" in ahead.text
    assert ahead.text.endswith("That rules out overfitting so far.") and ahead.facts["widest_epoch"] == 1
    crossed = analysis.live_gap_claim(log([(0.90, 0.92), (0.93, 0.94), (0.95, 0.945), (0.96, 0.95), (0.97, 0.955)]),
                                      window=2)
    f = crossed.facts
    assert (f["n_below"], f["widest_epoch"], f["window"]) == (2, 1, 2) and f["rise"] == pytest.approx(0.01)
    assert "after each of epochs 1 to 2, not after epochs 3 to 5" in crossed.text
    assert "still rose by 1.00 points over the last 2 epochs" in crossed.text
    assert "gap between training and validation accuracy grew over those epochs (0.50 to 1.50 points)" in crossed.text
    assert (f["gap"], f["gap_then"]) == (pytest.approx(0.015), pytest.approx(0.005))
    narrowing = analysis.live_gap_claim(log([(0.90, 0.92), (0.95, 0.93), (0.96, 0.955)]), window=1)
    assert "did not grow over those epochs (2.00 to 0.50 points)" in narrowing.text
    flat = analysis.live_gap_claim(log([(0.90, 0.92), (0.95, 0.94), (0.97, 0.94)]), window=1)
    assert flat.facts["rise"] == 0 and "did not rise over the last epoch (+0.00 points)" in flat.text


def test_shared_mistakes_tell_images_hard_for_both_models_from_ones_hard_for_the_network():
    # softmax regression: 8% wrong overall; on the 50 images every seed misses, 40 wrong (80%) or 5 wrong (10%)
    both = analysis.shared_mistakes_claim(800, 40, 50, 10000, "lin", True, ["a", "b"])
    assert both.facts["both_share"] == pytest.approx(0.8) and both.facts["lin_rate"] == pytest.approx(0.08)
    assert "far above its overall rate" in both.text and "trained again" not in both.text
    network = analysis.shared_mistakes_claim(800, 5, 50, 10000, "lin", False, ["a", "b"])
    assert "hard mostly for this network" in network.text and "seed 0, trained again here" in network.text


def test_noise_model_lists_the_verdicts_a_shared_noise_estimate_changes(tmp_path):
    """lr 0.1 is best (0.970); 0.2 lies 0.2 points below with tight seeds (Welch: worse), 0.05 lies 0.2 points below
    with wide seeds (Welch: tied), 0.01 far below (worse either way). With one shared SD of 0.5 points, 0.2 is tied;
    with 0.05 points, 0.05 is worse."""
    runs = [(TrainConfig(hidden=(8,), epochs=1, lr=lr, seed=s), m + d * sd) for lr, m, sd in
            ((0.01, 0.90, 0.001), (0.05, 0.968, 0.004), (0.1, 0.970, 0.0005), (0.2, 0.968, 0.0005))
            for s, d in enumerate([-1.0, 0.0, 1.0])]
    pts = analysis.by_setting(_store(tmp_path, runs), "lr")
    wide = analysis.noise_model_claim({"learning rate": pts}, 0.005, 25)
    (flip,) = wide.facts["flips"]
    t = 0.002 / (0.005 * (2 / 3) ** 0.5)
    assert (flip["value"], flip["own"], flip["shared"]) == (0.2, "worse beyond seed noise", "tied")
    assert flip["p_shared"] == pytest.approx(2 * stats.t.sf(t, 24)) and wide.facts["n"] == 3
    assert "1 of the 3 verdicts changes: learning rate 0.2: worse (Welch p" in wide.text
    assert wide.facts["n_noisier"] == 0
    narrow = analysis.noise_model_claim({"learning rate": pts}, 0.0005, 25)
    (flip,) = narrow.facts["flips"]
    assert (flip["value"], flip["own"], flip["shared"]) == (0.05, "tied", "worse beyond seed noise")
    assert narrow.facts["n_noisier"] == 1 and "settings whose own seeds spread more than that (learning rate 0.05)" \
        in narrow.text
    assert "none of the 2 verdicts changes" in analysis.noise_model_claim({"learning rate": pts[:3]}, 0.005, 25).text


def test_findings_keep_the_budget_caveat_of_a_trend_that_stays(tmp_path):
    anova, zero, one, search, parts = _findings_parts(tmp_path)
    trend = {"direction": "stays", "separated": False, "steps_apart": [False], "common": [0.01], "rows": [1, 2],
             "dead_rows": [], "row_name": "row"}
    bound = analysis.Claim("grid_trend", {**trend, "bound_rows": [1, 2]})
    free = analysis.Claim("grid_trend", {**trend, "bound_rows": []})
    c = analysis.findings_claim({"init scale": bound, "width": free}, anova, zero, one, search, parts)
    assert "with the init scale it stays the same (within the epoch budget); with the width it stays the same." \
        in c.text


def test_neighbours_read_hard_images_against_random_ones():
    hard = analysis.neighbours_claim(22, 40, 79, 490, 500, 3, 2, 6, ["a"])  # 28% against 98%: hard by pixels too
    assert hard.facts["nn_true_share"] == pytest.approx(22 / 79) and "hard by pixel distance as well" in hard.text
    assert "Of the 6 shown, 3 have a nearest training image with the true label and 2 one with the voted" in hard.text
    own = analysis.neighbours_claim(70, 5, 79, 490, 500, 6, 0, 6, ["a"])  # 89% against 98%: the network's own
    assert "the network's mistakes there are its own" in own.text


@pytest.mark.parametrize("p", [0.0454, 0.0483, 0.04996, 0.0500, 0.05004, 0.0526, 0.0537, 0.0467, 0.012, 0.099,
                               0.1, 0.79, 0.0043, 0.00002])
def test_a_printed_p_value_stays_on_its_side_of_alpha(p):
    """The text prints a p-value beside a verdict made at ALPHA; the printed number must not round across it
    (0.0454 was printed '0.05' beside 'worse', 0.0526 '0.05' beside 'tied')."""
    text = analysis.fmt_p(p)
    if text.startswith("<"):
        assert p < 1e-4
        return
    shown = float(text.removeprefix("= "))
    assert (shown < analysis.ALPHA) == (p < analysis.ALPHA), (p, text)
    assert shown == pytest.approx(p, rel=0.1)


def test_p_values_read_as_before_away_from_alpha():
    assert [analysis.fmt_p(p) for p in (0.00002, 0.0043, 0.0454, 0.79, 0.35)] == \
        ["< 0.0001", "= 0.0043", "= 0.045", "= 0.79", "= 0.35"]


def _width_sweep(tmp_path, accs):
    runs = [(TrainConfig(hidden=(w,), epochs=1, seed=s), a) for w, xs in accs.items() for s, a in enumerate(xs)]
    return analysis.by_setting(_store(tmp_path, runs), "width")


def _slope_and_p(accs):
    """Independent of analysis: the slope of accuracy (points) on log2(width) by numpy's least squares, and the
    two-sided p of its t statistic with n - 2 degrees of freedom."""
    x = np.array([math.log2(w) for w, xs in accs.items() for _ in xs])
    y = np.array([100 * a for xs in accs.values() for a in xs])
    slope, icpt = np.polyfit(x, y, 1)
    resid = y - (slope * x + icpt)
    se = math.sqrt(float((resid ** 2).sum()) / (len(y) - 2) / float(((x - x.mean()) ** 2).sum()))
    return float(slope), float(2 * stats.t.sf(abs(slope / se), len(y) - 2))


def test_an_edge_best_whose_tied_neighbours_still_climb_toward_it_is_not_a_plateau(tmp_path):
    """Widths 256 to 2048 rising by about 0.05 points per doubling with 2-3 seeds each: every neighbour is tied
    with the best pairwise, but the trend across them is beyond seed noise, so no plateau is claimed."""
    accs = {64: [0.960, 0.962, 0.961], 256: [0.9805, 0.9812, 0.9809], 512: [0.9807, 0.9815, 0.9811],
            1024: [0.9813, 0.9819], 2048: [0.9818, 0.9824]}
    claims = analysis.sweep_claims(_width_sweep(tmp_path, accs), "width", " units")
    assert _kinds(claims)[:2] == ["sweep_best", "sweep_edge_rising"]
    f = claims[1].facts
    slope, p = _slope_and_p({w: accs[w] for w in (256, 512, 1024, 2048)})
    assert (f["n_plateau"], f["plateau_from"], f["n_runs"]) == (3, 256, 10)
    assert f["slope"] == pytest.approx(slope) and f["p"] == pytest.approx(p) and p < 0.05
    assert "accuracy still rises toward the edge" in claims[1].text and "no plateau" in claims[1].text


def test_a_flat_plateau_at_the_edge_says_its_trend_and_stays_a_plateau(tmp_path):
    accs = {64: [0.960, 0.962, 0.961], 256: [0.9812, 0.9805, 0.9818], 512: [0.9815, 0.9808, 0.9811],
            1024: [0.9807, 0.9817, 0.9812], 2048: [0.9813, 0.9809, 0.9816]}
    claims = analysis.sweep_claims(_width_sweep(tmp_path, accs), "width", " units")
    assert _kinds(claims)[:2] == ["sweep_best", "sweep_edge_plateau"]
    f = claims[1].facts
    slope, p = _slope_and_p({w: accs[w] for w in (256, 512, 1024, 2048)})
    assert f["slope"] == pytest.approx(slope) and f["p"] == pytest.approx(p) and p >= 0.05
    assert f"shows no trend toward the edge beyond seed noise ({slope:+.2f} points per doubling" in claims[1].text


def test_heatmap_colours_span_the_cells_that_learned_and_failed_ones_take_the_top_colour(tmp_path):
    """A grid whose lr = 1 column collapsed (chance accuracy): the colour scale spans the working cells' errors
    (2.5-3.5%), not up to the failed cells' 90%, which are clipped to the top colour (the colour bar's arrow); so
    does a cell never half right although most of its seeds did not collapse."""
    import matplotlib

    matplotlib.use("Agg")
    from mlplab import plots

    accs = {(0.01, 64): 0.965, (0.01, 128): 0.970, (0.1, 64): 0.975, (0.1, 128): 0.972, (1.0, 64): 0.10,
            (1.0, 128): 0.098}
    runs = [(TrainConfig(hidden=(8,), epochs=1, lr=lr, batch_size=bs, seed=s), a + 0.0005 * s)
            for (lr, bs), a in accs.items() for s in range(3)]
    rows, cols, cells = analysis.grid(_store(tmp_path, runs), "batch_size", "lr")
    assert all(o.kind == "collapsed" for row in cells for c in row if c.median < 0.5 for o in c.outcomes)
    fig = plots.heatmap(rows, cols, cells, "batch size", "learning rate", "test grid")
    norm = fig.axes[0].images[0].norm
    working = [100 * (1 - c.median) for row in cells for c in row if c.median > 0.5]
    assert norm.vmin == pytest.approx(min(working)) and norm.vmax == pytest.approx(max(working))
    assert norm(90.0) == 1.0  # a failed cell: the top colour
    assert f"above {norm.vmax:.3g}%: the top colour" in fig.axes[1].get_ylabel()
    runs = [(TrainConfig(hidden=(8,), epochs=1, lr=lr, batch_size=bs, seed=s), a)  # one seed collapsed, the
            for (lr, bs), accs in {**{k: [v] * 3 for k, v in accs.items()},  # others never half right
                                   (1.0, 128): [0.10, 0.21, 0.45]}.items() for s, a in enumerate(accs)]
    rows, cols, cells = analysis.grid(_store(tmp_path / "b", runs), "batch_size", "lr")
    norm = plots.heatmap(rows, cols, cells, "batch size", "learning rate", "test grid").axes[0].images[0].norm
    assert norm.vmax == pytest.approx(100 * (1 - 0.965)) and norm(79.0) == 1.0


def test_findings_say_where_a_row_setting_lets_no_learning_rate_train(tmp_path):
    """A grid whose largest batch trains at no rate (every cell at chance): the summary's interaction bullet names
    that row, as the grid's own trend claim does, instead of only how the best rate moves across the others."""
    medians = {32: [0.950, 0.949, 0.90, 0.90], 256: [0.949, 0.950, 0.90, 0.90], 4096: [0.10, 0.099, 0.101, 0.10]}
    trend = _trend(tmp_path, medians, 0.002)
    assert trend.facts["dead_rows"] == [4096]
    anova, zero, one, search, parts = _findings_parts(tmp_path)
    c = analysis.findings_claim({"batch size": trend}, anova, zero, one, search, parts)
    assert c.facts["moves"]["batch size"]["dead_rows"] == [4096]
    assert "and at batch size 4096 no learning rate trains at all" in c.text


def test_the_unit_spread_axis_keeps_its_zero_apart_from_the_smallest_power_of_ten():
    """Symmetric-log axis for spreads from 6.4e-7 to 1.6: linear below 1e-7, with no tick between 0 and 1e-7 (a
    threshold at 6.4e-7 drew the 1e-7 tick on top of the 0)."""
    import matplotlib

    matplotlib.use("Agg")
    from mlplab import plots

    steps = list(range(10, 401, 10))
    fig = plots.unit_spread(steps, {"zeros": [6.4e-7 * 1.25 ** i for i in range(40)], "random": [1.6] * 40}, "t")
    ax = fig.axes[0]
    assert ax.get_yscale() == "symlog" and ax.yaxis.get_transform().linthresh == pytest.approx(1e-7)
    ticks = list(ax.get_yticks())
    assert ticks[0] == 0.0 and ticks[1] == pytest.approx(1e-7) and not [t for t in ticks if 0 < t < 1e-7]
    assert ax.get_ylim()[1] < 10  # no decade added above the data
