"""Decoded, resized uint8 pixels, so that no JPEG is decoded twice.

What is stored: each image after `imaging.prepare`, i.e. EXIF-rotated, converted to RGB or L,
shorter side resized to `short` (= the eval resize, size / crop_pct; big JPEGs decoded at a
reduced scale first), aspect ratio kept, as an (H, W, C) uint8 array. Evaluation then only center-crops; training random-resized-crops the
cached array. Keeping the aspect ratio (not a fixed square) makes a cached eval sample identical
to `predict` on the file, because the eval transform's Resize is a no-op on it.

Where it lives (`mode`):
  memory  a list of arrays in this process. With DataLoader workers under fork they are shared
          copy-on-write; under spawn/forkserver every worker gets a pickled copy.
  disk    immutable "packs" under cache_dir/pixels/<params>/<root hash>/: <id>.u8 holds raw
          arrays back to back, <id>.json maps entry keys to (offset, h, w, c). An entry key is a
          hash of (absolute path, size, mtime_ns), and the folder name carries the target size,
          channels and interpolation, so a changed file or a new size is simply a miss. Each
          process memory-maps the packs itself (a pickled store carries paths, not pixels), so
          workers share the OS page cache whatever the start method.
  auto    disk when DataLoader workers are used; otherwise memory, spilling to disk past
          `budget` bytes. Entries already in a pack from an earlier run are read from the pack.

`ImageDataset` is the read side: a torch Dataset over a PixelStore (or over the files, with the
cache off); `BalancedSampler` draws its classes equally often.

When it is filled: up front, in the main process, by the same threaded decode that validates each
file (scan.py), not lazily in epoch 1: a cache filled inside worker processes would be lost with
them, and a file is decoded once per run instead of twice (scan, then epoch 1). After that the
store is read-only. A run only ever adds a new pack for the files it had to decode; packs that
no current file uses are deleted once they are an hour old and no living store holds their
shared lock (flock, POSIX only).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, WeightedRandomSampler

from cnnlab import fsio
from cnnlab.data import imaging
from cnnlab.data.transforms import sample_seed
from cnnlab.errors import DataChangedError, DataError

try:
    import fcntl
except ImportError:  # Windows: no pack locking, pruning relies on the age rule alone
    fcntl = None

PACK_VERSION = 1  # bump when imaging.prepare changes its pixels
MODES = ("auto", "memory", "disk", "off")
DEFAULT_BUDGET = 2 << 30  # bytes of decoded pixels kept in memory by "auto"
PRUNE_AGE_S = 3600  # an unused pack younger than this may still be read by another run


def default_cache_dir() -> Path:
    if "CNNLAB_CACHE_DIR" in os.environ:
        return Path(os.environ["CNNLAB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnlab"


def pack_dir(cache_dir: Path, root: Path, short: int, in_chans: int, interpolation: str) -> Path:
    root_id = hashlib.sha1(str(Path(root).absolute()).encode()).hexdigest()[:16]
    params = f"v{PACK_VERSION}-s{short}-c{in_chans}-{interpolation}"
    return cache_dir / "pixels" / params / root_id


def entry_key(path: Path, size: int, mtime_ns: int) -> str:
    return hashlib.sha1(f"{Path(path).absolute()}\0{size}\0{mtime_ns}".encode()).hexdigest()[:24]


class PixelStore:
    """Item i -> (H, W, C) uint8 array, from memory or from a memory-mapped pack."""

    def __init__(
        self, arrays: list[np.ndarray | None], files: list[str], where: np.ndarray
    ) -> None:
        self.arrays = arrays  # None where the item lives in a pack
        self.files = files
        self.where = where  # (N, 5) int64: file index, offset, h, w, c (file index -1: memory)
        self._maps: dict[int, np.memmap] = {}
        # A shared flock on each pack while this store lives: another run's pruning skips
        # locked packs (a worker started later by spawn must still find the file).
        self._locks = [_lock_shared(f) for f in files]

    def __len__(self) -> int:
        return len(self.arrays)

    def get(self, i: int) -> np.ndarray:
        a = self.arrays[i]
        if a is not None:
            return a
        f, off, h, w, c = (int(v) for v in self.where[i])
        mm = self._maps.get(f)
        if mm is None:
            # "c" (copy-on-write): writable views, so torch.from_numpy does not warn; the file
            # is never written.
            mm = self._maps[f] = np.memmap(self.files[f], dtype=np.uint8, mode="c")
        return mm[off : off + h * w * c].reshape(h, w, c)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.where[:, 2:], axis=1).sum())

    @property
    def mode(self) -> str:
        in_memory = sum(a is not None for a in self.arrays)
        if in_memory == len(self.arrays):
            return "memory"
        return "disk" if in_memory == 0 else "memory+disk"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = {}  # each process maps the packs itself; never pickle the pixels
        state["_locks"] = []  # held by the process that built the store
        return state


def _lock_shared(path: str) -> Any:
    if fcntl is None:
        return None
    fh = open(path, "rb")  # noqa: SIM115 - held open for the store's lifetime, on purpose
    with contextlib.suppress(OSError):  # no flock (some network file systems): no protection
        fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
    return fh


def _in_use(path: Path) -> bool:
    """True if some living store holds a shared lock on the pack."""
    if fcntl is None:
        return False
    try:
        with open(path, "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
    except BlockingIOError:
        return True
    except OSError:
        return False


class _PackWriter:
    """Appends arrays to a new pack; visible to other runs only once `close` has renamed it."""

    def __init__(self, folder: Path) -> None:
        self.name = uuid.uuid4().hex[:16]
        self.path = folder / f"{self.name}.u8"
        self._cm = fsio.atomic_open(self.path, "wb")
        self._fh = self._cm.__enter__()
        self.entries: dict[str, list[int]] = {}
        self.offset = 0

    def add(self, key: str, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr)
        self._fh.write(memoryview(arr).cast("B"))
        self.entries[key] = [self.offset, *arr.shape]
        self.offset += arr.nbytes

    def close(self) -> None:
        self._cm.__exit__(None, None, None)
        index = {"version": PACK_VERSION, "data": self.path.name, "entries": self.entries}
        fsio.write_json(self.path.with_suffix(".json"), index)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._cm.__exit__(RuntimeError, RuntimeError("aborted"), None)


class PixelCacheBuilder:
    """Collects resized arrays during the scan (scan.PixelSink), then hands out a PixelStore."""

    def __init__(
        self,
        *,
        mode: str,
        folder: Path | None,
        short: int,
        in_chans: int,
        interpolation: str = "bilinear",
        workers: int = 0,
        budget: int = DEFAULT_BUDGET,
        log: Callable[[str], None] = print,
    ) -> None:
        if mode not in MODES or mode == "off":
            raise ValueError(f"cache mode must be auto, memory or disk, got {mode!r}")
        self.short, self.in_chans, self.interpolation = short, in_chans, interpolation
        self.folder, self.budget, self.log = folder, budget, log
        self.requested = mode
        self.spill = mode == "auto" and workers == 0  # memory first, disk past the budget
        self.to_disk = mode == "disk" or (mode == "auto" and workers > 0)
        self.packs: dict[str, tuple[str, list[int]]] = self._read_packs() if folder else {}
        self.mem: dict[str, np.ndarray] = {}
        self.mem_bytes = 0
        self.writer: _PackWriter | None = None

    def _read_packs(self) -> dict[str, tuple[str, list[int]]]:
        found: dict[str, tuple[str, list[int]]] = {}
        with contextlib.suppress(OSError):
            for index in sorted(self.folder.glob("*.json")):
                try:
                    data = json.loads(index.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue  # a damaged index only costs a re-decode
                data_file = index.with_name(data.get("data", ""))
                if data.get("version") != PACK_VERSION or not data_file.is_file():
                    continue
                size = data_file.stat().st_size
                for key, (off, h, w, c) in data["entries"].items():
                    if off + h * w * c <= size:  # never trust an index beyond its data
                        found.setdefault(key, (str(data_file), [off, h, w, c]))
        return found

    # --- scan.PixelSink -----------------------------------------------------------------------

    def wants(self, path: Path, size: int, mtime_ns: int) -> bool:
        key = entry_key(path, size, mtime_ns)
        return key not in self.packs and key not in self.mem

    def prepare(self, im: Image.Image) -> np.ndarray:
        """Same pixels as imaging.prepare: `im` was decoded with draft=self.short."""
        return imaging.resize_short(imaging.to_array(im), self.short, self.interpolation)

    def put(self, path: Path, size: int, mtime_ns: int, arr: np.ndarray) -> None:
        key = entry_key(path, size, mtime_ns)
        if self.writer is None and self.to_disk:
            self._start_writer()
        if self.writer is not None:
            self._add(key, arr)
            return
        self.mem[key] = arr
        self.mem_bytes += arr.nbytes
        if self.spill and self.mem_bytes > self.budget and self.folder is not None:
            self.log(f"pixel cache: over {self.budget / 2**30:.1f} GiB, moving it to disk")
            self._start_writer()
            if self.writer is not None:
                for k, a in self.mem.items():
                    self._add(k, a)
                self.mem.clear()

    def _add(self, key: str, arr: np.ndarray) -> None:
        try:
            self.writer.add(key, arr)
        except OSError as e:  # disk full, most likely: one clear error, no half pack left
            self.writer.abort()
            raise DataError(
                f"cannot write the pixel cache in {self.folder}: {e.strerror or e}; free space, "
                "pass another cache folder, or use the memory cache"
            ) from e

    def _start_writer(self) -> None:
        self.to_disk = False  # one attempt: an unwritable cache folder falls back to memory
        if self.folder is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.writer = _PackWriter(self.folder)
        except OSError as e:
            self.log(f"warning: cannot write the pixel cache in {self.folder} ({e}); using memory")

    # --- the result ---------------------------------------------------------------------------

    def finish(self, items: Sequence[tuple[Path, int, int]]) -> PixelStore:
        """The store for `items` (path, size, mtime_ns), in that order."""
        if self.writer is not None:
            try:
                self.writer.close()
            except OSError as e:
                self.writer.abort()
                raise DataError(
                    f"cannot write the pixel cache in {self.folder}: {e.strerror or e}; free "
                    "space, pass another cache folder, or use the memory cache"
                ) from e
            for key, entry in self.writer.entries.items():
                self.packs[key] = (str(self.writer.path), entry)
            self.writer = None
        files: list[str] = []
        file_ids: dict[str, int] = {}
        arrays: list[np.ndarray | None] = []
        where = np.full((len(items), 5), -1, dtype=np.int64)
        for i, (path, size, mtime) in enumerate(items):
            key = entry_key(path, size, mtime)
            if key in self.mem:
                arrays.append(self.mem[key])
                where[i, 2:] = self.mem[key].shape
                continue
            file, (off, h, w, c) = self.packs[key]
            where[i] = (file_ids.setdefault(file, len(file_ids)), off, h, w, c)
            arrays.append(None)
            if file_ids[file] == len(files):
                files.append(file)
        store = PixelStore(arrays, files, where)
        if self.requested == "memory":  # asked for memory: copy entries found in packs
            store.arrays = [np.array(store.get(i)) for i in range(len(store))]
            store.where[:, :2] = -1
            store.files, store._locks = [], []
        self._prune({os.path.basename(f) for f in files})
        return store

    def _prune(self, used: set[str]) -> None:
        """Delete packs nothing current uses, once they are old enough to be nobody's."""
        if self.folder is None or not self.folder.is_dir():
            return
        now = time.time()
        for index in self.folder.glob("*.json"):
            data_file = index.with_suffix(".u8")
            with contextlib.suppress(OSError):
                old = now - index.stat().st_mtime > PRUNE_AGE_S
                if data_file.name not in used and old and not _in_use(data_file):
                    data_file.unlink(missing_ok=True)
                    index.unlink()


class ImageDataset(Dataset):
    """Items (x float32 (C, H, W) normalised, y int), from a PixelStore or decoded per access.

    Augmentation randomness is a function of (seed, epoch, index): `set_epoch` writes the epoch
    into shared memory, so DataLoader workers see it even when they persist across epochs.
    """

    def __init__(
        self,
        paths: list[Path],
        targets: list[int],
        transform: Callable[[torch.Tensor], torch.Tensor] | None,
        *,
        store: PixelStore | None,
        items: list[int],
        random: bool,
        seed: int = 0,
        decode: tuple[int, int, str] = (3, 224, "bilinear"),  # in_chans, short side, interp
    ) -> None:
        self.paths = paths  # for reports: which files a batch came from
        self.targets = targets
        self.transform = transform
        self.store, self.items = store, items
        self.random, self.seed, self.decode = random, seed, decode
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self.targets)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def raw(self, i: int) -> np.ndarray:
        """(H, W, C) uint8: the image with its shorter side at the cached size."""
        if self.store is not None:
            return self.store.get(self.items[i])
        try:
            return imaging.prepare(self.paths[i], *self.decode)
        except imaging.ImageError as e:  # it passed the scan, so it changed on disk since
            raise DataChangedError(
                f"{self.paths[i]} changed or vanished after the data was checked ({e.reason}: "
                f"{e.detail})"
            ) from e

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.raw(i)).permute(2, 0, 1)  # (C, H, W) view, channels-last
        if not self.random:
            return self.transform(x), self.targets[i]
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(sample_seed(self.seed, int(self._epoch), i))
            return self.transform(x), self.targets[i]


class BalancedSampler(WeightedRandomSampler):
    """Draws every class equally often (with replacement), seeded by (seed, epoch)."""

    def __init__(self, targets: list[int], seed: int = 0) -> None:
        counts = Counter(targets)
        weights = [1.0 / counts[t] for t in targets]
        super().__init__(weights, num_samples=len(targets), replacement=True)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch, -1))
