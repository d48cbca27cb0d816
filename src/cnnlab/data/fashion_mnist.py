"""Fashion-MNIST (Zalando, MIT licence) from its four official IDX .gz files.

    >>> images, labels = load_fashion_mnist("train")   # (60000, 28, 28) uint8, (60000,) int64
    >>> CLASSES[labels[0]]
    'Ankle boot'

Where the files are looked for, first match wins (see `search_dirs`):
  1. the `data_dir` argument, else $CNNLAB_DATA_DIR
  2. $XDG_CACHE_HOME/cnnlab/fashion-mnist (default ~/.cache/cnnlab/fashion-mnist), where
     `download_fashion_mnist()` / `cnnlab data download fashion-mnist` put them
  3. /usr/share/datasets/fashion-mnist (Debian/Ubuntu package `dataset-fashion-mnist`)

Checksums: downloads are verified against the sha256 of the official .gz files (`SHA256`; the
md5 that the zalandoresearch/fashion-mnist README publishes is kept in `MD5` for reference).
The Debian package recompresses the files, so its .gz hashes differ while the decompressed IDX
bytes are identical; `RAW_SHA256` pins those decompressed bytes, which no gzip setting changes.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cnnlab.data.idx import read_idx
from cnnlab.errors import DataError, unknown
from cnnlab.fsio import atomic_open

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# split -> (images file, labels file, number of examples). The counts are checked strictly;
# tests swap this dict (monkeypatch) to use tiny fake datasets.
FILES: dict[str, tuple[str, str, int]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}

# sha256 of the official .gz files as served by DEFAULT_MIRROR (they match the README's md5).
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# sha256 of the decompressed IDX bytes; verified on the Debian package's files.
RAW_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

DEFAULT_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
ENV_VAR = "CNNLAB_DATA_DIR"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_CMD = "cnnlab data download fashion-mnist"
BACKOFF_S = 1.0  # sleep before retry k is k * BACKOFF_S: rides out a brief outage, not a long one
_CHUNK = 1 << 20


def cache_dir() -> Path:
    # The XDG spec says to ignore a relative XDG_CACHE_HOME.
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "cnnlab" / "fashion-mnist"


def search_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Folders to look in, in order: data_dir (else $CNNLAB_DATA_DIR), the cache, the system."""
    first = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or None
    dirs = [Path(first).expanduser()] if first else []
    dirs += [cache_dir(), SYSTEM_DIR]
    return list(dict.fromkeys(dirs))  # drop duplicates, keep order


def _names() -> list[str]:
    return [name for images, labels, _ in FILES.values() for name in (images, labels)]


def _locate(folder: Path, name: str) -> Path | None:
    # Many people gunzip the files; read_idx handles both, so accept both.
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def find_fashion_mnist(data_dir: str | Path | None = None) -> Path:
    """The first folder from `search_dirs` that holds all four files."""
    dirs = search_dirs(data_dir)
    user_chose = data_dir is not None or bool(os.environ.get(ENV_VAR))
    for i, folder in enumerate(dirs):
        missing = [name for name in _names() if _locate(folder, name) is None]
        if not missing:
            return folder
        # A folder the user named that holds some files is a half-copied dataset: say so
        # instead of silently loading another copy from further down the list.
        if i == 0 and user_chose and len(missing) < len(_names()):
            raise DataError(
                f"{folder} holds only part of Fashion-MNIST (missing {', '.join(missing)}); "
                f"add the missing files or point data_dir / {ENV_VAR} at a complete folder"
            )
    raise DataError(
        f"Fashion-MNIST not found in {', '.join(map(str, dirs))}; run `{DOWNLOAD_CMD}` "
        f"(or `sudo apt-get install dataset-fashion-mnist`, or set {ENV_VAR})"
    )


def load_fashion_mnist(
    split: str, data_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of `split` ("train" or "test").

    The arrays are cached per process and shared between callers, so they are read-only:
    copy before modifying in place.
    """
    if split not in FILES:
        raise unknown("split", split, FILES)
    images_name, labels_name, count = FILES[split]
    folder = find_fashion_mnist(data_dir)
    images_path, labels_path = _locate(folder, images_name), _locate(folder, labels_name)
    assert images_path is not None and labels_path is not None  # find_* checked both
    return _decode(_stamp(images_path), _stamp(labels_path), count)


def _stamp(path: Path) -> tuple[str, int, int]:
    # Cache key: a file replaced on disk (new mtime or size) is decoded again.
    st = path.stat()
    return str(path.resolve()), st.st_mtime_ns, st.st_size


def _fix(path: Path) -> str:
    if path.parent.resolve() == SYSTEM_DIR.resolve():
        return "reinstall it with `sudo apt-get install --reinstall dataset-fashion-mnist`"
    return f"delete it and run `{DOWNLOAD_CMD}`"


@functools.lru_cache(maxsize=8)
def _decode(
    images_key: tuple[str, int, int], labels_key: tuple[str, int, int], count: int
) -> tuple[np.ndarray, np.ndarray]:
    # Decoding the 60000 training images costs ~0.3 s; tests and notebooks load repeatedly.
    images_path, labels_path = Path(images_key[0]), Path(labels_key[0])
    images = read_idx(images_path, expect_ndim=3, expect_count=count, fix=_fix(images_path))
    if images.shape[1:] != (28, 28):
        h, w = images.shape[1:]
        raise DataError(
            f"{images_path} is corrupt: images are {h}×{w}, expected 28×28; {_fix(images_path)}"
        )
    # Both files were checked against `count`, so images and labels pair up one to one.
    raw = read_idx(labels_path, expect_ndim=1, expect_count=count, fix=_fix(labels_path))
    bad = np.flatnonzero(raw >= len(CLASSES))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{labels_path} is corrupt: label {raw[i]} at index {i:,} is outside "
            f"0..{len(CLASSES) - 1}; {_fix(labels_path)}"
        )
    labels = raw.astype(np.int64)
    labels.setflags(write=False)  # `images` is read-only already (np.frombuffer)
    return images, labels


def _sha256(path: Path, decompress: bool = False) -> str:
    digest = hashlib.sha256()
    opener = gzip.open if decompress else open
    with opener(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _is_verified(path: Path, name: str, checksums: Mapping[str, str], raw_ok: bool) -> bool:
    if not path.is_file():
        return False
    if _sha256(path) == checksums[name]:
        return True
    # A recompressed copy (e.g. taken from the Debian package) holds the same bytes.
    try:
        return raw_ok and _sha256(path, decompress=True) == RAW_SHA256[name]
    except (OSError, EOFError):
        return False


def download_fashion_mnist(
    dest: str | Path | None = None,
    base_url: str = DEFAULT_MIRROR,
    timeout: float = 60,
    progress: bool = True,
    *,
    checksums: Mapping[str, str] | None = None,
    retries: int = 3,
) -> Path:
    """Fetch the four files into `dest` (default: the cache), verify their sha256, return `dest`.

    Files already there with the right hash are kept. Each file is streamed to a temporary
    sibling and renamed only after its hash matches, so a failed or interrupted download never
    leaves a file under a final name. `checksums` (file name -> sha256) replaces `SHA256`.
    """
    dest = Path(dest).expanduser() if dest is not None else cache_dir()
    raw_ok = checksums is None  # RAW_SHA256 only describes the official files
    checksums = SHA256 if checksums is None else checksums
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create {dest}: {exc.strerror or exc}; choose another dest"
        ) from exc
    for name in _names():
        target = dest / name
        if _is_verified(target, name, checksums, raw_ok):
            _say(progress, f"{name}: present, checksum ok\n")
            continue
        if target.exists():
            # Known bad: drop it now so nothing unverified stays under the final name.
            _say(progress, f"{name}: checksum mismatch, downloading again\n")
            target.unlink()
        url = base_url.rstrip("/") + "/" + name
        _fetch(url, target, checksums[name], timeout, retries, progress)
    return dest


def _fetch(
    url: str, target: Path, sha256: str, timeout: float, retries: int, progress: bool
) -> None:
    reason = "no attempt made"
    for attempt in range(1, max(retries, 1) + 1):
        try:
            _stream(url, target, sha256, timeout, progress)
            return
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code} {exc.reason}"
            if exc.code < 500:  # 404 and friends will not fix themselves
                break
        except urllib.error.URLError as exc:
            reason = str(exc.reason)
        except (OSError, http.client.HTTPException) as exc:
            # Timeouts, resets and short reads mid-transfer.
            reason = str(exc) or type(exc).__name__
        if attempt < retries:
            _say(progress, f"{target.name}: attempt {attempt} failed ({reason}), retrying\n")
            time.sleep(BACKOFF_S * attempt)
    raise DataError(
        f"could not download {target.name} from {url}: {reason}; "
        f"check the connection or place the files in {target.parent} by hand"
    )


def _stream(url: str, target: Path, sha256: str, timeout: float, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_open(target) as fh:
        total = int(resp.headers.get("Content-Length") or 0)
        digest, done, shown = hashlib.sha256(), 0, 0.0
        while chunk := resp.read(_CHUNK):
            fh.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            # Live updates only on a terminal; a log file gets the one final line.
            if progress and sys.stderr.isatty() and time.monotonic() - shown > 0.2:
                shown = time.monotonic()
                _say(progress, f"\r{target.name}: {_progress(done, total)}")
        if total and done != total:
            raise http.client.IncompleteRead(b"", total - done)
        actual = digest.hexdigest()
        if actual != sha256:
            # Raised inside atomic_open: the temporary file is deleted, `target` never appears.
            raise DataError(
                f"downloaded {target.name} from {url} has the wrong checksum: expected sha256 "
                f"{sha256}, got {actual}; retry later or place the verified file in "
                f"{target.parent} by hand"
            )
        _say(progress, f"\r{target.name}: {_progress(done, total)}, checksum ok\n")


def _progress(done: int, total: int) -> str:
    if not total:
        return f"{done / 1e6:.1f} MB"
    return f"{done / 1e6:.1f}/{total / 1e6:.1f} MB ({100 * done // total}%)"


def _say(enabled: bool, text: str) -> None:
    if enabled:
        sys.stderr.write(text)
        sys.stderr.flush()
