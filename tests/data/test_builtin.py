import numpy as np
import pytest

from cnnlab.data.builtin import ArrayImageDataset, stratified_split
from cnnlab.models.spec import PreprocessSpec


def test_stratified_split_keeps_class_proportions_and_is_deterministic():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    keep, held = stratified_split(labels, 0.1, seed=7)
    assert np.bincount(labels[held]).tolist() == [5, 3, 2]
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(100))
    again = stratified_split(labels, 0.1, seed=7)
    assert np.array_equal(keep, again[0]) and np.array_equal(held, again[1])
    assert not np.array_equal(held, stratified_split(labels, 0.1, seed=8)[1])


def test_every_class_keeps_a_training_image():
    keep, held = stratified_split(np.array([0, 0, 1]), 0.9, seed=0)
    assert set(np.array([0, 0, 1])[keep]) == {0, 1}


def test_augmentation_is_a_function_of_seed_epoch_and_index():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 28, 28), dtype=np.uint8)
    spec = PreprocessSpec(input_size=(1, 28, 28), mean=(0.5,), std=(0.5,))
    a = ArrayImageDataset(images, np.zeros(8), spec, shift=2, seed=1)
    b = ArrayImageDataset(images, np.zeros(8), spec, shift=2, seed=1)
    a.set_epoch(3)
    b.set_epoch(3)
    assert all(np.array_equal(a[i][0], b[i][0]) for i in range(8))
    b.set_epoch(4)
    assert not all(np.array_equal(a[i][0], b[i][0]) for i in range(8))
    plain = ArrayImageDataset(images, np.zeros(8), spec, shift=None)
    assert np.allclose(plain[0][0].numpy(), (images[0] / 255.0 - 0.5) / 0.5, atol=1e-6)


def test_grayscale_to_rgb_and_resize_follow_the_spec():
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    spec = PreprocessSpec(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    x, y = ArrayImageDataset(images, np.array([1, 0]), spec)[0]
    assert tuple(x.shape) == (3, 32, 32) and y == 1


def test_persistent_workers_see_each_new_epoch():
    from torch.utils.data import DataLoader

    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (16, 28, 28), dtype=np.uint8)
    spec = PreprocessSpec(input_size=(1, 28, 28), mean=(0.5,), std=(0.5,))

    def batches(workers: int) -> list:
        ds = ArrayImageDataset(images, np.zeros(16), spec, shift=2, seed=3)
        loader = DataLoader(ds, batch_size=8, num_workers=workers, persistent_workers=workers > 0)
        out = []
        for epoch in range(2):
            ds.set_epoch(epoch)
            out += [x for x, _ in loader]
        return out

    main, workers = batches(0), batches(2)
    assert all(np.array_equal(a, b) for a, b in zip(main, workers, strict=True))
    assert not np.array_equal(main[0], main[2])  # epoch 1 differs from epoch 0


@pytest.mark.parametrize("shift", [None, 0, 2])
@pytest.mark.parametrize("input_size", [(1, 28, 28), (3, 28, 28), (3, 32, 32)])
def test_a_batch_is_bitwise_the_items_one_by_one(shift, input_size):
    import torch
    from torch.utils.data import DataLoader

    rng = np.random.default_rng(2)
    images = rng.integers(0, 255, (40, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 40)
    c = input_size[0]
    spec = PreprocessSpec(input_size=input_size, mean=(0.3,) * c, std=(0.2,) * c)
    ds = ArrayImageDataset(images, labels, spec, shift=shift, seed=5)
    ds.set_epoch(2)
    idx = [7, 0, 39, 7, 12, 3]
    batch = ds.__getitems__(idx)
    for i, (x, y) in zip(idx, batch, strict=True):
        ref_x, ref_y = ds[i]
        assert torch.equal(x, ref_x) and y == ref_y
    # and the DataLoader takes the batched path with the same result
    loader = DataLoader(ds, batch_size=16)
    one_by_one = torch.stack([ds[i][0] for i in range(16)])
    assert torch.equal(next(iter(loader))[0], one_by_one)
