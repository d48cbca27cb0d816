import numpy as np

from cnnlab.engine.samplers import EpochSampler, ShardSampler


def test_same_seed_epoch_same_order_and_epochs_differ():
    a, b = EpochSampler(50, seed=1), EpochSampler(50, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    assert sorted(a) == list(range(50))


def test_ranks_interleave_into_the_single_process_order():
    single = list(EpochSampler(10, seed=3))
    r0 = list(EpochSampler(10, seed=3, rank=0, world=2))
    r1 = list(EpochSampler(10, seed=3, rank=1, world=2))
    merged = [x for pair in zip(r0, r1, strict=True) for x in pair]
    assert merged == single


def test_padding_to_equal_shards():
    r = [list(EpochSampler(7, seed=0, rank=k, world=2)) for k in range(2)]
    assert len(r[0]) == len(r[1]) == 4
    assert set(r[0]) | set(r[1]) == set(range(7))


def test_skip_resumes_mid_epoch_once():
    s = EpochSampler(20, seed=5)
    full = list(s)
    s.skip = 8
    assert list(s) == full[8:]
    assert list(s) == full


def test_shard_sampler_counts_each_sample_once():
    shards = [list(ShardSampler(11, rank=k, world=3)) for k in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))


def test_balanced_sampling_prefers_rare_class():
    targets = np.array([0] * 90 + [1] * 10)
    counts = np.bincount(targets)
    weights = 1.0 / counts[targets]
    drawn = targets[list(EpochSampler(100, seed=0, weights=weights))]
    assert 30 < (drawn == 1).sum() < 70
