"""Find candidate image files, then validate every one with a full decode, in parallel, once.

Listing (`walk`) never reads image bytes: hidden entries, non-image extensions and symlink loops
are reported here. Validation (`scan`) stats and fully decodes each candidate in a thread pool
(Pillow releases the GIL while decoding). Results are cached in one JSON file per data root,
keyed by (relpath, size, mtime_ns), so a second scan of an unchanged folder only stats files.

When a pixel cache is being filled (cache.py), the same decode also produces the resized array,
so a file is decoded once per run at most, never once for the scan and again for the cache.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
from PIL import Image

from cnnlab import fsio
from cnnlab.data import imaging

SCAN_CACHE_VERSION = 2  # bump when a rule in imaging.decode changes what is accepted


class Skipped(NamedTuple):
    path: str  # absolute path, so the user can act on it directly
    reason: str  # one of imaging.REASONS
    detail: str


@dataclass(frozen=True)
class Candidate:
    path: Path  # absolute
    rel: str  # posix path relative to the data root: the key in manifests and the scan cache
    label: str
    split: str | None = None  # fixed by the layout, or None when split.assign_splits decides


@dataclass(frozen=True)
class Record:
    """A candidate that decoded cleanly."""

    cand: Candidate
    size: int
    mtime_ns: int


class PixelSink(Protocol):
    """What the scan needs from a pixel-cache builder (cache.PixelCacheBuilder)."""

    short: int  # the shorter side it stores: JPEGs may be decoded at a reduced scale for it

    def wants(self, path: Path, size: int, mtime_ns: int) -> bool: ...

    def prepare(self, im: Image.Image) -> np.ndarray: ...

    def put(self, path: Path, size: int, mtime_ns: int, arr: np.ndarray) -> None: ...


def walk(folder: Path, root: Path | None = None) -> tuple[list[Path], list[Skipped]]:
    """Image files under `folder` (recursive, sorted), and what was passed over and why.

    `root` is the data folder `folder` belongs to: a symlink that leads back into it from
    elsewhere (a class folder linking to a sibling class, or to the root itself) would count
    the same images again under this folder's label, so it is skipped; links that lead outside
    the data folder are followed."""
    files: list[Path] = []
    skipped: list[Skipped] = []
    st = os.stat(folder)
    fence = _Fence(os.path.realpath(root or folder), os.path.realpath(folder))
    _walk(folder, {(st.st_dev, st.st_ino)}, files, skipped, fence)
    files.sort()
    return files, skipped


class _Fence:
    """Where a symlink may lead: outside the data root, or inside this class folder."""

    def __init__(self, root: str, own: str) -> None:
        self.root, self.own = root, own

    def crosses(self, path: Path) -> bool:
        real = os.path.realpath(path)
        inside_root = _within(real, self.root) or _within(self.root, real)  # incl. ancestors
        return inside_root and not _within(real, self.own)


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk(
    folder: Path, ancestors: set, files: list[Path], skipped: list[Skipped], fence: _Fence
) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        skipped.append(Skipped(str(folder), "unreadable", e.strerror or str(e)))
        return
    for entry in entries:
        path = Path(entry.path)
        if imaging.is_hidden(entry.name):
            skipped.append(Skipped(str(path), "hidden", "hidden or system entry"))
            continue
        ext_reason = imaging.extension_reason(entry.name)
        try:
            st = os.stat(path)  # follows symlinks
        except OSError as e:  # ELOOP: a symlink to itself
            if e.errno == errno.ELOOP:
                skipped.append(Skipped(str(path), "symlink_loop", "symlink points to itself"))
            elif ext_reason is None:  # broken symlink: check_file words it precisely later
                files.append(path)
            else:
                skipped.append(Skipped(str(path), ext_reason, "broken symlink"))
            continue
        if entry.is_symlink() and fence.crosses(path):
            where = os.path.realpath(path)
            skipped.append(Skipped(str(path), "symlink_into_data", f"links to {where}"))
            continue
        if os.path.isdir(path):
            ident = (st.st_dev, st.st_ino)
            if ident in ancestors:  # a symlink back to a parent: following it never ends
                target = os.readlink(path) if entry.is_symlink() else "a parent folder"
                skipped.append(Skipped(str(path), "symlink_loop", f"links back to {target}"))
                continue
            _walk(path, ancestors | {ident}, files, skipped, fence)
        elif ext_reason is not None:
            ext = os.path.splitext(entry.name)[1] or "no extension"
            skipped.append(Skipped(str(path), ext_reason, f"extension {ext}"))
        else:
            files.append(path)


def load_cache(cache_file: Path | None) -> dict[str, list[Any]]:
    if cache_file is None or not cache_file.exists():
        return {}
    try:
        data = fsio.read_json(cache_file)
    except (OSError, ValueError):
        return {}  # a damaged cache only costs a rescan
    if data.get("version") != SCAN_CACHE_VERSION:
        return {}
    return data.get("entries", {})


def scan(
    cands: list[Candidate],
    *,
    in_chans: int = 3,
    threads: int | None = None,
    cache_file: Path | None = None,
    pixels: PixelSink | None = None,
    log: Callable[[str], None] = print,
) -> tuple[list[Record], list[Skipped]]:
    """Validate every candidate (full decode); return the good ones in input order, and the rest.

    `pixels`, when given, receives the resized array of each good file it `wants`.
    """
    cached = load_cache(cache_file)
    threads = threads or min(16, os.cpu_count() or 1)
    results: list[Record | Skipped | None] = [None] * len(cands)
    entries: dict[str, list[Any]] = {}
    started = last_log = time.monotonic()
    work = ((c, cached.get(c.rel), pixels, in_chans) for c in cands)
    for done, (i, (res, entry, arr)) in enumerate(_parallel(_check, work, threads), 1):
        results[i] = res
        if entry is not None:
            entries[cands[i].rel] = entry
        if arr is not None and isinstance(res, Record):
            pixels.put(res.cand.path, res.size, res.mtime_ns, arr)  # main thread: no locking
        if time.monotonic() - last_log > 10:
            last_log = time.monotonic()
            log(f"scanned {done}/{len(cands)} files ({last_log - started:.0f} s)")
    if cache_file is not None:
        _save_cache(cache_file, entries, log)
    ok = [r for r in results if isinstance(r, Record)]
    return ok, [r for r in results if isinstance(r, Skipped)]


def _save_cache(cache_file: Path, entries: dict[str, list[Any]], log: Callable) -> None:
    try:
        fsio.write_json(cache_file, {"version": SCAN_CACHE_VERSION, "entries": entries})
    except OSError as e:  # an unwritable cache folder costs speed next time, not this run
        log(f"warning: cannot write the scan cache {cache_file}: {e.strerror or e}")


def _check(
    c: Candidate, hit: list[Any] | None, pixels: PixelSink | None, in_chans: int
) -> tuple[Record | Skipped, list[Any] | None, np.ndarray | None]:
    """One file -> (result, scan-cache entry, resized pixels or None). Runs in a worker thread."""
    try:
        st = imaging.check_file(c.path)
    except imaging.ImageError as e:
        return Skipped(str(c.path), e.reason, e.detail), None, None
    size, mtime = st.st_size, st.st_mtime_ns
    want = pixels is not None and pixels.wants(c.path, size, mtime)
    if hit is not None and hit[0] == size and hit[1] == mtime and (hit[2] or not want):
        reason, detail = hit[2:4]
        if reason:
            return Skipped(str(c.path), reason, detail), hit, None
        return Record(c, size, mtime), hit, None
    try:
        im = imaging.decode(c.path, in_chans, draft=pixels.short if want else None)
    except imaging.ImageError as e:
        return Skipped(str(c.path), e.reason, e.detail), [size, mtime, e.reason, e.detail], None
    arr = pixels.prepare(im) if want else None
    return Record(c, size, mtime), [size, mtime, "", ""], arr


def _parallel(fn: Callable, args: Iterable[tuple], threads: int) -> Iterator[tuple[int, Any]]:
    """(index, fn(*a)) in completion order, with a bounded number of tasks in flight.

    Bounded so that decoded arrays waiting for the main thread never pile up in memory.
    """
    it = enumerate(args)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cnnlab-scan") as ex:
        pending = {}
        for i, a in it:
            pending[ex.submit(fn, *a)] = i
            if len(pending) >= 4 * threads:
                break
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield pending.pop(fut), fut.result()
                nxt = next(it, None)
                if nxt is not None:
                    pending[ex.submit(fn, *nxt[1])] = nxt[0]
