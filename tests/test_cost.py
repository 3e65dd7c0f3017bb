"""The study's cost model: FLOPs counted by hand for one network, and per-experiment shares that add up."""

import pytest

from mlplab import cost, study
from mlplab.config import TrainConfig


def test_epoch_flops_of_the_course_mlp_by_hand():
    c = TrainConfig(hidden=(256,), val_size=10_000)
    macs = 784 * 256 + 256 * 10
    train = 2 * 50_000 * (3 * macs - 784 * 256)  # forward, weight grads, input grads except the first layer's
    evaluate = 2 * 20_000 * macs  # validation and test, forward only
    assert cost.epoch_flops(c) == train + evaluate


def test_bf16_is_predicted_faster_and_shares_add_up_to_the_estimate():
    fp32 = [TrainConfig(hidden=(128,), epochs=3, seed=s) for s in range(3)]
    bf16 = [c.replace(precision="bf16") for c in fp32]
    assert cost.estimate(bf16).seconds < cost.estimate(fp32).seconds
    assert cost.estimate(bf16).flops == cost.estimate(fp32).flops
    trials = study.all_trials(study.experiments(quick=True))
    half = len(trials) // 2
    parts = cost.shares(trials, trials[:half]) + cost.shares(trials, trials[half:])
    whole = cost.estimate(trials)
    assert parts.model_epochs == whole.model_epochs == sum(t.epochs for t in trials)
    assert parts.seconds == pytest.approx(whole.seconds) and parts.flops == pytest.approx(whole.flops)


def test_full_study_is_predicted_within_its_budget():
    est = cost.estimate(study.all_trials(study.experiments()))
    assert est.seconds <= 20 * 60, f"the full study is predicted to take {est.seconds / 60:.1f} min at its budget"
