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


def test_write_with_follows_the_umask_whatever_the_writer_does(tmp_path):
    import os
    import stat

    from cnnlab.fsio import write_with

    def private_writer(tmp):  # like safetensors' save_file: a 0600 file
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, b"x")
        os.close(fd)

    old = os.umask(0o022)
    try:
        write_with(tmp_path / "model.safetensors", private_writer)
        (tmp_path / "other.json").write_text("{}")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "model.safetensors").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "other.json").stat().st_mode) == 0o644


def test_before_replace_runs_only_once_the_new_file_is_complete(tmp_path):
    path = tmp_path / "last.ckpt"
    path.write_text("old")
    seen = []

    def keep_previous():  # what the checkpoint rotation does: the old file moves aside
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        path.rename(tmp_path / "last.prev.ckpt")

    fsio.write_with(path, lambda tmp: tmp.write_text("new"), before_replace=keep_previous)
    assert seen == [[f".last.tmp-{__import__('os').getpid()}.ckpt", "last.ckpt"]]
    assert path.read_text() == "new" and (tmp_path / "last.prev.ckpt").read_text() == "old"

    def full_disk(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        fsio.write_with(path, full_disk, before_replace=keep_previous)
    assert len(seen) == 1  # never ran: last.ckpt is still the complete previous file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.prev.ckpt"]
