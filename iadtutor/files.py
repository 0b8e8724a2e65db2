"""Writing files atomically: a reader sees the old file or the whole new one, never half of it; and a
file's sha256."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from tqdm.auto import tqdm


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is removed.
    (Plumbing, no notebook: ULSAD and DefectMaker checkpoints of notebooks 06-07 are written with it.)

    >>> with atomic_path("result.json") as tmp:   # doctest: +SKIP
    ...     tmp.write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (plumbing, no notebook)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (plumbing, no notebook)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj, default=None) -> Path:
    """Write ``obj`` as indented JSON, atomically; ``default`` converts what json cannot (see json.dumps).
    (Plumbing, no notebook: ulsad and defectmaker checkpoints of notebooks 06-07 are written with it.)"""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=default) + "\n")


def sha256_of(path: str | os.PathLike, progress: bool = False) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks, with a tqdm bar when ``progress`` (backbone checkpoints
    of notebook 01; archives and duplicate images of ``iadtutor data download|verify``, README "Datasets")."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as file, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                                        desc=f"sha256 {path.name}", disable=not progress) as bar:
        while block := file.read(1 << 20):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()
