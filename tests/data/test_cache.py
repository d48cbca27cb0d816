from __future__ import annotations

import os
import pickle
import time

import numpy as np
import pytest
import torch
from imagetree import write_image

from cnnlab.data import cache, imaging, scan
from cnnlab.data.cache import ImageDataset, PixelCacheBuilder
from cnnlab.data.scan import Candidate
from cnnlab.errors import DataChangedError, DataError

SHORT = 12


@pytest.fixture
def files(tmp_path):
    paths = [
        write_image(tmp_path / "imgs" / f"{i}.{ext}", size=(20 + 3 * i, 16 + i), seed=i)
        for i, ext in enumerate(["jpg", "png", "jpg", "webp", "bmp"])
    ]
    return paths


def build(files, folder, mode="auto", workers=0, budget=cache.DEFAULT_BUDGET, in_chans=3):
    """Scan `files` into a builder, as build_folder_data does; returns (builder, store)."""
    b = PixelCacheBuilder(
        mode=mode, folder=folder, short=SHORT, in_chans=in_chans, workers=workers, budget=budget
    )
    cands = [Candidate(p, p.name, "x") for p in files]
    scan_cache = folder.with_name(folder.name + "-scan.json")  # as in a real run: warm on rerun
    ok, _ = scan.scan(cands, in_chans=in_chans, pixels=b, cache_file=scan_cache)
    return b, b.finish([(r.cand.path, r.size, r.mtime_ns) for r in ok])


def assert_fresh(store, files, in_chans=3):
    """The cache returns exactly what a fresh decode + resize gives."""
    assert len(store) == len(files)
    for i, path in enumerate(files):
        np.testing.assert_array_equal(store.get(i), imaging.prepare(path, in_chans, SHORT))


@pytest.mark.parametrize("in_chans", [1, 3])
def test_memory_cache_equals_fresh_decode(files, cache_dir, in_chans):
    _, store = build(files, cache_dir / "p", mode="memory", in_chans=in_chans)
    assert store.mode == "memory" and not (cache_dir / "p").exists()
    assert_fresh(store, files, in_chans)
    assert store.get(0).shape[2] == in_chans and min(store.get(0).shape[:2]) == SHORT


def test_disk_cache_equals_fresh_decode_and_is_reused(files, cache_dir, monkeypatch):
    folder = cache_dir / "p"
    _, store = build(files, folder, mode="disk")
    assert store.mode == "disk"
    assert len(list(folder.glob("*.u8"))) == 1 and len(list(folder.glob("*.json"))) == 1
    assert_fresh(store, files)

    # Second run: every entry is in the pack, nothing is decoded, even in "auto" mode.
    monkeypatch.setattr(imaging, "decode", lambda *a: pytest.fail("decoded a cached image"))
    _, again = build(files, folder, mode="auto")
    assert again.mode == "disk"
    monkeypatch.undo()
    assert_fresh(again, files)


def test_a_pickled_disk_store_carries_paths_not_pixels(files, cache_dir):
    _, store = build(files, cache_dir / "p", mode="disk")
    store.get(0)  # maps the pack in this process
    blob = pickle.dumps(store)
    assert len(blob) < 2000
    assert_fresh(pickle.loads(blob), files)


def test_auto_uses_disk_with_workers_and_spills_past_the_budget(files, cache_dir):
    _, with_workers = build(files, cache_dir / "a", mode="auto", workers=2)
    assert with_workers.mode == "disk"
    _, small = build(files, cache_dir / "b", mode="auto", budget=1000)
    assert small.mode == "disk"
    assert_fresh(small, files)
    _, fits = build(files, cache_dir / "c", mode="auto")
    assert fits.mode == "memory" and not (cache_dir / "c").exists()


def test_a_changed_file_misses_and_only_it_is_decoded(files, cache_dir, monkeypatch):
    folder = cache_dir / "p"
    build(files, folder, mode="disk")
    write_image(files[2], size=(40, 30), seed=77)
    os.utime(files[2], ns=(5, 5))
    decoded = []
    real = imaging.decode
    monkeypatch.setattr(
        imaging, "decode", lambda p, c, draft: decoded.append(p) or real(p, c, draft)
    )
    _, store = build(files, folder, mode="disk")
    assert decoded == [files[2]]
    assert len(list(folder.glob("*.u8"))) == 2  # the old pack plus one with the new entry
    assert_fresh(store, files)


def test_memory_mode_copies_entries_found_on_disk(files, cache_dir):
    build(files, cache_dir / "p", mode="disk")
    _, store = build(files, cache_dir / "p", mode="memory")
    assert store.mode == "memory" and store.files == []
    assert_fresh(store, files)


def test_unused_old_packs_are_pruned_and_damaged_ones_ignored(files, cache_dir):
    folder = cache_dir / "p"
    build(files[:2], folder, mode="disk")
    old = next(folder.glob("*.json"))
    os.utime(old, (time.time() - 2 * cache.PRUNE_AGE_S,) * 2)
    build(files[2:], folder, mode="disk")  # uses nothing from the first pack
    assert not old.exists() and not old.with_suffix(".u8").exists()
    # A damaged index is ignored: entries are decoded again.
    for index in folder.glob("*.json"):
        index.write_text("{broken")
    _, store = build(files, folder, mode="disk")
    assert_fresh(store, files)


def test_a_pack_in_use_by_a_living_store_is_not_pruned(files, cache_dir):
    folder = cache_dir / "p"
    _, held = build(files[:2], folder, mode="disk")  # e.g. another run, still training
    old = next(folder.glob("*.json"))
    os.utime(old, (time.time() - 2 * cache.PRUNE_AGE_S,) * 2)
    build(files[2:], folder, mode="disk")
    assert old.exists()
    assert_fresh(held, files[:2])
    del held
    build(files[2:], folder, mode="disk")
    assert not old.exists()


def test_disk_full_is_one_clear_error(files, cache_dir, monkeypatch):
    def full(self, key, arr):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache._PackWriter, "add", full)
    with pytest.raises(DataError, match="No space left on device; free space"):
        build(files, cache_dir / "p", mode="disk")
    assert list((cache_dir / "p").iterdir()) == []  # no half-written pack left behind


def test_unwritable_cache_folder_falls_back_to_memory(files, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    logs = []
    b = PixelCacheBuilder(
        mode="disk", folder=blocker / "p", short=SHORT, in_chans=3, log=logs.append
    )
    ok, _ = scan.scan([Candidate(p, p.name, "x") for p in files], pixels=b)
    store = b.finish([(r.cand.path, r.size, r.mtime_ns) for r in ok])
    assert store.mode == "memory" and "using memory" in logs[0]
    assert_fresh(store, files)


def test_image_dataset_augmentation_depends_on_seed_epoch_index_only(files, cache_dir):
    _, store = build(files, cache_dir / "p", mode="memory")

    def noisy(x):  # stands for a random transform: draws from torch's global generator
        return x.float() + torch.rand(())

    ds = ImageDataset(files, [0] * 5, noisy, store=store, items=list(range(5)), random=True)
    a = ds[1][0]
    torch.rand(10)  # global RNG state must not matter ...
    assert torch.equal(ds[1][0], a)
    ds.set_epoch(1)  # ... but the epoch does
    assert not torch.equal(ds[1][0], a)
    state = torch.get_rng_state()
    ds[2]
    assert torch.equal(torch.get_rng_state(), state)  # and the caller's RNG is left alone


def test_dataset_without_cache_decodes_and_names_a_file_that_changed(files):
    decode = (3, SHORT, "bilinear")
    ds = ImageDataset(
        files, [0] * 5, lambda x: x, store=None, items=[], random=False, decode=decode
    )
    x, y = ds[3]
    assert torch.equal(x, torch.from_numpy(imaging.prepare(files[3], 3, SHORT)).permute(2, 0, 1))
    files[3].write_bytes(b"")
    with pytest.raises(DataChangedError, match=f"{files[3].name} changed or vanished after the"):
        ds[3]
