"""IndexedDataset: items with their index, and no image once the features are cached."""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from cnnlab.data.bundle import NO_IMAGE, IndexedDataset


class Counted(Dataset):
    """Four 2x2 images whose `targets` attribute deliberately disagrees with the items."""

    def __init__(self) -> None:
        self.targets = [0, 0, 0, 0]
        self.reads = 0

    def __len__(self):
        return 4

    def __getitem__(self, i):
        self.reads += 1
        return torch.full((1, 2, 2), float(i)), i % 2


def test_items_carry_their_index_until_the_features_are_cached():
    data = Counted()
    indexed = IndexedDataset(data)
    x, y, i = indexed[3]
    assert torch.equal(x, torch.full((1, 2, 2), 3.0)) and (y, i) == (1, 3) and data.reads == 1


def test_once_cached_items_carry_no_image_and_the_labels_given_not_targets():
    data = Counted()
    indexed = IndexedDataset(data)
    indexed.features_cached(torch.tensor([0, 1, 0, 1]))  # what the items said, not `targets`
    items = [indexed[i] for i in range(4)]
    assert data.reads == 0  # nothing decoded
    assert [(y, i) for _, y, i in items] == [(0, 0), (1, 1), (0, 2), (1, 3)]
    assert all(x is NO_IMAGE for x, _, _ in items)
    x, y, idx = next(iter(DataLoader(indexed, batch_size=4)))
    assert x.shape == (4, 0) and y.tolist() == [0, 1, 0, 1] and idx.tolist() == [0, 1, 2, 3]


def test_labels_for_another_number_of_items_are_refused():
    with pytest.raises(ValueError, match="3 labels for 4 items"):
        IndexedDataset(Counted()).features_cached(torch.tensor([0, 1, 0]))


def test_a_worker_started_before_the_features_were_cached_sees_them():
    indexed = IndexedDataset(Counted())
    loader = DataLoader(indexed, batch_size=2, num_workers=1, persistent_workers=True)
    first = [y.tolist() for _, y, _ in loader]  # starts the worker, decodes
    indexed.features_cached(torch.tensor([1, 1, 0, 0]))
    x, y, _ = next(iter(loader))  # the same worker process: the flag is in shared memory
    assert first == [[0, 1], [0, 1]] and x.shape == (2, 0) and y.tolist() == [1, 1]


def test_a_batched_fetch_reads_the_flag_once_and_decode_images_turns_it_back():
    data = Counted()
    indexed = IndexedDataset(data)
    assert [y for _, y, _ in indexed.__getitems__([2, 3])] == [0, 1] and data.reads == 2
    indexed.features_cached(torch.tensor([1, 0, 1, 0]))
    batch = indexed.__getitems__([2, 3])
    assert [(x is NO_IMAGE, y) for x, y, _ in batch] == [(True, 1), (True, 0)]
    indexed.decode_images()  # the backbone trains again: images, and the items' own labels
    assert [y for _, y, _ in indexed.__getitems__([2, 3])] == [0, 1] and data.reads == 4


def test_a_batched_fetch_goes_through_the_wrapped_data_sets_own():
    class Batched(Counted):
        def __init__(self) -> None:
            super().__init__()
            self.batches = []

        def __getitems__(self, indices):
            self.batches.append(list(indices))
            return [(torch.full((1, 2, 2), float(i)), i % 2) for i in indices]

    data = Batched()
    x, y, idx = next(iter(DataLoader(IndexedDataset(data), batch_size=3)))
    assert data.batches == [[0, 1, 2]] and data.reads == 0  # one call, no item by item
    assert x[:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0] and y.tolist() == [0, 1, 0]
    assert idx.tolist() == [0, 1, 2]
