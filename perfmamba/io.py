"""The one place that writes files whole: every result, page, checkpoint and cache lands complete or not at all
(a temporary file or folder beside the target, then a rename), so a killed run never leaves half a file behind
and readers see the old version or the new one."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, suffix: str = ".tmp"):
    """Yield a temporary path beside `path` to write to; it becomes `path` when the block ends, and is removed if
    the block raises. Created with the permissions of a plain new file (not mkstemp's private 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str, *, encoding: str = "utf-8") -> None:
    """Write `text` to `path` whole (flushed to disk before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding=encoding, newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_dir(directory):
    """Yield an empty temporary folder beside `directory` to fill; when the block ends it replaces `directory` as a
    whole (the old one is removed), and it is removed if the block raises."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    work = tmp / "new"
    work.mkdir()
    os.chmod(work, 0o777 & ~_umask())
    try:
        yield work
        if directory.exists():
            os.replace(directory, tmp / "old")
        os.replace(work, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
