"""Atomic writes: the destination holds the old or the whole new content, never a part."""

import json
import os
import stat

import pytest

from iadtutor.files import atomic_path, write_bytes_atomic, write_json_atomic, write_text_atomic


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_writers_and_permissions(tmp_path):
    write_text_atomic(tmp_path / "sub" / "a.txt", "hello")
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    write_json_atomic(tmp_path / "c.json", {"x": object()}, default=lambda o: "converted")
    assert (tmp_path / "sub" / "a.txt").read_text() == "hello"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": "converted"}
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE((tmp_path / "b.bin").stat().st_mode)
    assert mode == 0o666 & ~umask  # not mkstemp's private 0600
