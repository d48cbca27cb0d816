import pytest

from cnnlab import fsio


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a.json"
    fsio.write_json(path, {"x": 1})
    assert fsio.read_json(path) == {"x": 1}
    fsio.write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_crash_mid_write_keeps_previous_file(tmp_path):
    path = tmp_path / "ckpt.bin"
    fsio.write_bytes(path, b"good")
    with pytest.raises(RuntimeError), fsio.atomic_open(path) as fh:
        fh.write(b"half")
        raise RuntimeError("crash")
    assert path.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.bin"]


def test_write_with_library_writer(tmp_path):
    path = tmp_path / "x.txt"

    def writer(tmp):
        tmp.write_text("hello")

    fsio.write_with(path, writer)
    assert path.read_text() == "hello"

    def failing(tmp):
        tmp.write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        fsio.write_with(path, failing)
    assert path.read_text() == "hello"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]
