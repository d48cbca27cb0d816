import functools
import gzip
import hashlib
import http.server
import os
import socket
import struct
import threading
import time

import numpy as np
import pytest

from cnnlab.data import fashion_mnist as fm
from cnnlab.errors import ConfigError, DataError

NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]
FAKE_COUNTS = {"train": 20, "test": 10}


def idx_gz(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def make_dataset(folder, seed: int = 0, names=NAMES) -> dict[str, np.ndarray]:
    """A tiny Fashion-MNIST lookalike (20 train / 10 test) with valid IDX headers."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for images_name, labels_name, count in fm.FILES.values():
        arrays[images_name] = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        arrays[labels_name] = np.arange(count, dtype=np.uint8) % 10
    for name in names:
        (folder / name).write_bytes(idx_gz(arrays[name]))
    return arrays


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Tiny official-looking files; no real cache, system dir or env var can leak in."""
    files = {s: (i, lbl, FAKE_COUNTS[s]) for s, (i, lbl, _) in fm.FILES.items()}
    monkeypatch.setattr(fm, "FILES", files)
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    return tmp_path


# --- lookup -------------------------------------------------------------------------------------


def test_search_order_explicit_then_env_then_cache_then_system(fake, monkeypatch):
    cache, system = fake / "xdg/cnnlab/fashion-mnist", fake / "system"
    assert fm.search_dirs() == [cache, system]
    monkeypatch.setenv(fm.ENV_VAR, str(fake / "env"))
    assert fm.search_dirs() == [fake / "env", cache, system]
    assert fm.search_dirs(fake / "mine") == [fake / "mine", cache, system]
    assert fm.search_dirs(str(cache)) == [cache, system]  # no duplicates


def test_cache_falls_back_to_home_when_xdg_unset_or_relative(fake, monkeypatch):
    monkeypatch.setenv("HOME", str(fake / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert fm.cache_dir() == fake / "home/.cache/cnnlab/fashion-mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # the XDG spec says: ignore
    assert fm.cache_dir() == fake / "home/.cache/cnnlab/fashion-mnist"


def test_first_complete_folder_wins(fake, monkeypatch):
    for name in ("mine", "env", "xdg/cnnlab/fashion-mnist", "system"):
        make_dataset(fake / name)
    monkeypatch.setenv(fm.ENV_VAR, str(fake / "env"))
    assert fm.find_fashion_mnist(fake / "mine") == fake / "mine"
    assert fm.find_fashion_mnist() == fake / "env"
    monkeypatch.delenv(fm.ENV_VAR)
    assert fm.find_fashion_mnist() == fake / "xdg/cnnlab/fashion-mnist"
    assert fm.find_fashion_mnist(fake / "absent") == fake / "xdg/cnnlab/fashion-mnist"


def test_partial_folder_the_user_named_is_an_error_naming_missing_files(fake):
    make_dataset(fake / "system")
    make_dataset(fake / "mine", names=NAMES[:2])
    with pytest.raises(DataError, match="holds only part") as err:
        fm.find_fashion_mnist(fake / "mine")
    assert "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz" in str(err.value)
    assert "train-images" not in str(err.value)


def test_partial_cache_falls_through_to_system(fake):
    make_dataset(fake / "xdg/cnnlab/fashion-mnist", names=NAMES[:1])  # interrupted download
    make_dataset(fake / "system")
    assert fm.find_fashion_mnist() == fake / "system"


def test_not_found_names_every_folder_and_the_fixes(fake):
    with pytest.raises(DataError) as err:
        fm.find_fashion_mnist(fake / "mine")
    message = str(err.value)
    assert message.startswith(f"Fashion-MNIST not found in {fake / 'mine'}, {fake / 'xdg'}")
    assert str(fake / "system") in message and "\n" not in message
    assert "`cnnlab data download fashion-mnist`" in message and "CNNLAB_DATA_DIR" in message


def test_gunzipped_files_are_accepted(fake):
    arrays = make_dataset(fake / "mine")
    for name in NAMES:
        gz = fake / "mine" / name
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    images, _ = fm.load_fashion_mnist("test", fake / "mine")
    np.testing.assert_array_equal(images, arrays["t10k-images-idx3-ubyte.gz"])


# --- loading ------------------------------------------------------------------------------------


def test_load_fake_split_shapes_dtypes_and_cache(fake):
    arrays = make_dataset(fake / "mine")
    images, labels = fm.load_fashion_mnist("train", fake / "mine")
    assert images.shape == (20, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (20,) and labels.dtype == np.int64
    np.testing.assert_array_equal(images, arrays["train-images-idx3-ubyte.gz"])
    assert not images.flags.writeable and not labels.flags.writeable  # shared cache
    again = fm.load_fashion_mnist("train", fake / "mine")
    assert again[0] is images and again[1] is labels


def test_cache_notices_a_replaced_file(fake):
    make_dataset(fake / "mine")
    images, _ = fm.load_fashion_mnist("test", fake / "mine")
    new = make_dataset(fake / "mine", seed=1)
    st = (fake / "mine" / NAMES[2]).stat()
    os.utime(fake / "mine" / NAMES[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    reloaded, _ = fm.load_fashion_mnist("test", fake / "mine")
    np.testing.assert_array_equal(reloaded, new["t10k-images-idx3-ubyte.gz"])


def test_label_out_of_range_is_a_data_error(fake):
    make_dataset(fake / "mine")
    labels = np.zeros(10, dtype=np.uint8)
    labels[7] = 12
    (fake / "mine" / NAMES[3]).write_bytes(idx_gz(labels))
    with pytest.raises(
        DataError, match=r"t10k-labels-idx1-ubyte.gz is corrupt: label 12 at index 7"
    ):
        fm.load_fashion_mnist("test", fake / "mine")


def test_wrong_count_and_image_size_are_data_errors(fake):
    make_dataset(fake / "mine")
    (fake / "mine" / NAMES[1]).write_bytes(idx_gz(np.zeros(19, dtype=np.uint8)))
    with pytest.raises(DataError, match="header says 19 items, expected 20.*cnnlab data download"):
        fm.load_fashion_mnist("train", fake / "mine")
    (fake / "mine" / NAMES[2]).write_bytes(idx_gz(np.zeros((10, 32, 32), dtype=np.uint8)))
    with pytest.raises(DataError, match="images are 32×32, expected 28×28"):
        fm.load_fashion_mnist("test", fake / "mine")


def test_unknown_split_suggests_the_right_one(fake):
    with pytest.raises(ConfigError, match="did you mean: test"):
        fm.load_fashion_mnist("tset")


def test_real_fashion_mnist():
    folder = fm.SYSTEM_DIR
    if not all((folder / name).is_file() for name in NAMES):
        pytest.skip(f"real Fashion-MNIST not installed in {folder} (apt: dataset-fashion-mnist)")
    images, labels = fm.load_fashion_mnist("train", folder)
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert np.bincount(labels).tolist() == [6000] * 10
    assert fm.CLASSES[labels[0]] == "Ankle boot"  # the first training image, per the README
    images, labels = fm.load_fashion_mnist("test", folder)
    assert images.shape == (10000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10
    # The Debian package recompresses the .gz files; the IDX bytes inside must be the official ones.
    for name in NAMES[1:]:  # the train images (0.3 s more) are covered by the counts above
        assert fm._sha256(folder / name, decompress=True) == fm.RAW_SHA256[name], name


# --- download -----------------------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """(root folder served on 127.0.0.1, base URL, list of request paths)."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setattr(fm, "BACKOFF_S", 0.0)
    root = tmp_path / "served"
    root.mkdir()
    handler = type("Handler", (QuietHandler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/", handler.requests
    httpd.shutdown()
    httpd.server_close()


def sha256s(folder) -> dict[str, str]:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in NAMES}


def test_download_verifies_and_renames_atomically(fake, server, capsys):
    root, url, requests = server
    arrays = make_dataset(root)
    sums = sha256s(root)
    dest = fake / "dl"
    assert fm.download_fashion_mnist(dest, url, timeout=5, checksums=sums) == dest
    assert sorted(os.listdir(dest)) == sorted(NAMES)  # no temporary files left behind
    assert sha256s(dest) == sums and len(requests) == 4
    assert "checksum ok" in capsys.readouterr().err
    images, labels = fm.load_fashion_mnist("train", dest)
    np.testing.assert_array_equal(labels, arrays["train-labels-idx1-ubyte.gz"])

    # Second run: everything verified in place, nothing fetched.
    fm.download_fashion_mnist(dest, url, timeout=5, progress=False, checksums=sums)
    assert len(requests) == 4

    # A damaged local copy is replaced.
    (dest / NAMES[3]).write_bytes(b"junk")
    fm.download_fashion_mnist(dest, url, timeout=5, progress=False, checksums=sums)
    assert sha256s(dest) == sums and requests[4:] == ["/" + NAMES[3]]


def test_download_with_wrong_checksum_leaves_nothing(fake, server):
    root, url, _ = server
    make_dataset(root)
    sums = sha256s(root)
    (root / NAMES[2]).write_bytes(b"not what the checksum promised")
    dest = fake / "dl"
    with pytest.raises(DataError) as err:
        fm.download_fashion_mnist(dest, url, timeout=5, progress=False, checksums=sums)
    message = str(err.value)
    actual = hashlib.sha256(b"not what the checksum promised").hexdigest()
    assert NAMES[2] in message and sums[NAMES[2]] in message and actual in message
    assert sorted(os.listdir(dest)) == sorted(NAMES[:2])  # earlier files kept, no temp files


def test_download_404_is_not_retried(fake, server):
    root, url, requests = server
    with pytest.raises(DataError, match=r"could not download train-images.*HTTP 404"):
        fm.download_fashion_mnist(fake / "dl", url, timeout=5, progress=False, checksums=fm.SHA256)
    assert len(requests) == 1


def test_download_from_unreachable_host_fails_fast(fake, monkeypatch):
    monkeypatch.setattr(fm, "BACKOFF_S", 0.0)
    monkeypatch.setenv("no_proxy", "*")
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        fm.download_fashion_mnist(
            fake / "dl", f"http://127.0.0.1:{port}", timeout=1, progress=False, retries=2
        )
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert message.startswith(
        f"could not download train-images-idx3-ubyte.gz from http://127.0.0.1:{port}/"
    )
    assert "check the connection or place the files in" in message
    assert os.listdir(fake / "dl") == []


def test_official_checksums_are_complete():
    assert set(fm.SHA256) == set(fm.MD5) == set(fm.RAW_SHA256) == set(NAMES)
    assert all(len(h) == 64 for h in fm.SHA256.values())
