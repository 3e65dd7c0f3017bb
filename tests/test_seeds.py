"""Every (seed, stream) pair gets its own generator, by construction (mlplab.seeds)."""

import pytest
import torch

from mlplab import TrainConfig, seeds


def test_torch_cpu_generators_keep_only_32_bits_of_a_seed():
    """Why the construction stays below 2**32: seeds s and s + 2**32 draw the same numbers."""
    a = torch.rand(4, generator=torch.Generator().manual_seed(5))
    b = torch.rand(4, generator=torch.Generator().manual_seed(5 + 2**32))
    assert torch.equal(a, b)


def test_the_stream_map_is_injective_over_its_whole_domain():
    """stream_seed(s, k) = k * 2**SEED_BITS + s: each stream k maps [0, MAX_SEED) onto its own interval
    [k * MAX_SEED, (k + 1) * MAX_SEED), one after another below 2**32, and within a stream s -> s + base is a
    translation. Checking the endpoints and the translation on both ends of every interval covers every pair."""
    assert seeds.MAX_SEED == 2**seeds.SEED_BITS and len(seeds.STREAMS) <= 2 ** (32 - seeds.SEED_BITS)
    assert len(set(seeds.STREAMS)) == len(seeds.STREAMS)
    last = -1
    for k, stream in enumerate(seeds.STREAMS):
        lo, hi = seeds.stream_seed(0, stream), seeds.stream_seed(seeds.MAX_SEED - 1, stream)
        assert lo == k * seeds.MAX_SEED and hi - lo == seeds.MAX_SEED - 1  # a translation of [0, MAX_SEED)
        assert lo > last and hi < 2**32  # the intervals are disjoint, in order, and within 32 bits
        last = hi
        for s in (1, 2, 12345, seeds.MAX_SEED - 2):
            assert seeds.stream_seed(s, stream) == lo + s
    assert seeds.stream_seed(0, "init") == 0 and seeds.stream_seed(7, "init") == 7  # init draws as before


def test_seeds_outside_the_range_are_refused_with_the_range():
    for bad in (-1, seeds.MAX_SEED, 2**32 + 3, 2**64):
        with pytest.raises(ValueError, match=r"\[0, 2\*\*28\)"):
            TrainConfig(seed=bad)
        with pytest.raises(ValueError, match="data_seed"):
            TrainConfig(data_seed=bad)
    with pytest.raises(TypeError, match="integer"):
        TrainConfig(seed=1.5)
    with pytest.raises(ValueError, match="unknown random stream"):
        seeds.stream_seed(0, "dropout")


def test_seed_and_data_seed_draw_different_numbers():
    """Before, init and data order both seeded a generator with s; now they are different streams."""
    init = torch.rand(8, generator=seeds.generator(4, "init"))
    order = torch.rand(8, generator=seeds.generator(4, "order"))
    assert not torch.equal(init, order)
    hidden_of_4 = torch.rand(8, generator=seeds.generator(4, "hidden_dropout"))
    init_of_8 = torch.rand(8, generator=seeds.generator(8, "init"))  # collided before (base + 2s)
    assert not torch.equal(hidden_of_4, init_of_8)


def test_replacing_the_init_scheme_takes_its_default_scale():
    c = TrainConfig()
    assert c.init_scale == 0.01
    assert c.replace(init="kaiming_normal").init_scale == 1.0
    assert c.replace(init="kaiming_normal", init_scale=0.5).init_scale == 0.5
    assert c.replace(lr=0.2).init_scale == 0.01  # other changes keep the scale
