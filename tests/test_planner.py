from mlplab import TrainConfig
from mlplab.planner import bytes_per_model, fixed_bytes, plan, sequential, stream_bytes


def test_compatible_trials_share_a_population_and_others_do_not():
    trials = [TrainConfig(hidden=(8,), lr=lr, seed=s, init=init) for lr in (0.1, 0.2) for s in (0, 1)
              for init in ("uniform", "kaiming_normal")]
    trials += [TrainConfig(hidden=(16,)), TrainConfig(hidden=(8,), activation="tanh"), TrainConfig(hidden=(8,),
               batch_size=64)]
    pops = plan(trials, budget_bytes=1 << 34)
    assert sorted(p.size for p in pops) == [1, 1, 1, 8]
    assert sum(p.size for p in pops) == len(trials)
    assert len(sequential(trials)) == len(trials)


def test_the_budget_splits_a_large_group_into_equal_parts():
    trials = [TrainConfig(hidden=(1024,), lr=0.01 * (i + 1)) for i in range(10)]
    per = bytes_per_model(trials[0])
    pops = plan(trials, budget_bytes=fixed_bytes() + stream_bytes(trials[0]) + 4 * per)  # room for 4 models
    assert [p.size for p in pops] == [4, 3, 3]
    assert all(p.size * per <= 4 * per for p in pops)
    assert [c for p in pops for c in p.configs] == trials  # nothing lost, order kept
    assert [p.size for p in plan(trials, budget_bytes=0)] == [1] * 10  # never fewer than one model


def test_a_parameter_cap_cuts_a_group_into_chunks_of_whole_seed_sets():
    from mlplab.planner import n_params

    # 13 settings x 5 seeds (each seed its own data order), listed setting by setting as a sweep lists them
    trials = [TrainConfig(hidden=(64,), lr=0.01 * (i + 1), seed=s) for i in range(13) for s in range(5)]
    cap = 30 * n_params(trials[0])  # room for 30 models
    pops = plan(trials, budget_bytes=1 << 34, params_cap=cap)
    assert [p.size for p in pops] == [25, 20, 20]  # multiples of the 5 data orders, near-equal, none over 30
    assert [c for p in pops for c in p.configs] == trials
    for p in pops:  # every chunk reads each of its data orders for as many models
        counts = [sum(c.order_seed == s for c in p.configs) for s in range(5)]
        assert len(set(counts)) == 1
    assert n_params(trials[0]) == 784 * 64 + 64 + 64 * 10 + 10
    assert [p.size for p in plan(trials, budget_bytes=1 << 34)] == [65]  # no cap: one population


def test_a_population_with_a_stream_per_model_counts_its_batches_twice():
    """Every model on its own data order: each stream's gathered batch, and the (M, B, D) stack of them that the
    first layer's batched product reads (mlp.forward_streams), are both live at the peak. Counting one copy left
    the estimate 0.06% under a measured peak (64 x 784-32-10, batch 512, in test_planner_memory)."""
    from mlplab.planner import population_bytes

    M, B = 64, 512
    own = [TrainConfig(hidden=(32,), batch_size=B, seed=m) for m in range(M)]
    shared = [TrainConfig(hidden=(32,), batch_size=B, seed=m, data_seed=0) for m in range(M)]
    batch = 4 * B * 784
    assert population_bytes(own) - population_bytes(shared) >= (M - 1) * batch + M * batch
