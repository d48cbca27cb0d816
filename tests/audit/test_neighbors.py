import itertools

import numpy as np

from cnnlab.audit import neighbors


def brute_best(h, m, i, j):
    def d(a, b):
        return bin(int(a) ^ int(b)).count("1")

    return min(
        d(h[i, 0], h[j, 0]),
        d(h[i, 0], m[j]),
        d(h[i, 1], h[j, 0]),
        d(h[i, 2], h[j, 0]),
        d(h[i, 0], h[j, 1]),
        d(h[i, 0], h[j, 2]),
    )


def random_hashes(n, seed):
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**63, (n, 3), dtype=np.uint64)
    m = rng.integers(0, 2**63, n, dtype=np.uint64)
    # plant close pairs through each comparison
    h[1, 0] = h[0, 0] ^ np.uint64(0b111)  # 3 bits apart as is
    m[3] = h[2, 0] ^ np.uint64(0b1)  # mirrored
    h[5, 0] = h[4, 1]  # 4's 90% crop is 5's whole image
    h[6, 2] = h[7, 0] ^ np.uint64(0b11)  # 6's 80% crop, against 7 (j > i side)
    return h, m


def test_hash_candidates_equal_brute_force_in_any_block_size():
    h, m = random_hashes(40, 0)
    expected = {
        (i, j) for i, j in itertools.combinations(range(40), 2) if brute_best(h, m, i, j) <= 4
    }
    assert {(0, 1), (2, 3), (4, 5), (6, 7)} <= expected
    for block in (1, 7, 1024):
        got = {tuple(p) for p in neighbors.hash_candidates(h, m, 4, block=block).tolist()}
        assert got == expected


def test_combo_distances_match_brute_force():
    h, m = random_hashes(12, 1)
    i, j = np.array([0, 2, 4, 6]), np.array([1, 3, 5, 7])
    d = neighbors.combo_distances(h, m, i, j)
    assert d.shape == (4, len(neighbors.COMBOS))
    assert d.min(axis=1).tolist() == [brute_best(h, m, a, b) for a, b in zip(i, j, strict=True)]


def test_normalize_centres_and_scales():
    e = np.random.default_rng(0).normal(size=(30, 8)) + 5.0
    n = neighbors.normalize(e)
    assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    centred = e - e.mean(axis=0)
    cos = centred[0] @ centred[1] / np.linalg.norm(centred[0]) / np.linalg.norm(centred[1])
    assert np.isclose(n[0] @ n[1], cos, atol=1e-5)


def test_similar_pairs_equal_brute_force():
    e = neighbors.normalize(np.random.default_rng(2).normal(size=(50, 6)))
    sim = e @ e.T
    expected = {(i, j) for i, j in itertools.combinations(range(50), 2) if sim[i, j] >= 0.8}
    assert expected  # 6 dimensions: some pairs are close
    for block in (3, 2048):
        got = {tuple(p) for p in neighbors.similar_pairs(e, 0.8, block=block).tolist()}
        assert got == expected


def test_class_neighbors_equal_brute_force():
    rng = np.random.default_rng(3)
    e = neighbors.normalize(rng.normal(size=(25, 5)))
    labels = rng.integers(0, 3, 25)
    labels[24] = 7  # a class of one: no neighbours at all
    sims, idx = neighbors.class_neighbors(e, labels, 3, block=4)
    for i in range(24):
        same = [j for j in range(25) if j != i and labels[j] == labels[i]]
        best = sorted(same, key=lambda j: -(e[i] @ e[j]))[:3]
        assert idx[i, : len(best)].tolist() == best
        assert np.allclose(sims[i, : len(best)], [e[i] @ e[j] for j in best], atol=1e-6)
    assert np.isnan(sims[24]).all() and (idx[24] == -1).all()
