"""Writing files only where the user asked: a temporary name in the destination folder,
renamed into place.

Why: an output name may already exist as a symlink (planted in a shared folder, or left by
another tool); `open(path, "wb")` would follow it and overwrite whatever it points to. A
rename replaces the link itself. Writing under a temporary name also means a run killed
mid-write never leaves a half file under the real name: the result appears whole or not at
all (a rename within one folder is atomic on POSIX).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from srlab.errors import SrlabError


def temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def refuse_symlinked_folders(path: Path, root: Path | None = None) -> None:
    """One line if a folder below `root` on the way to `path` is a symlink (a planted link
    there would carry the write outside the folder the user named). `root` itself, named by
    the user, may be a link; without a root nothing is checked but the file."""
    if root is None:
        return
    parent = path.parent
    while parent != root and root in parent.parents:
        if parent.is_symlink():
            raise SrlabError(f"{parent} is a symlink: srlab writes no output through a symlink; "
                             "remove it or choose another output folder")
        parent = parent.parent


def create_file(path: Path):
    """A new regular file at `path` (which must not exist) opened for binary writing, created
    with the user's umask; never follows a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags, 0o666), "wb")


@contextmanager
def atomic_path(path: str | Path, root: str | Path | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success it is renamed onto `path`
    (replacing a symlink there, never writing through it), on any failure it is removed.

    `root`: the folder the user named; no folder from there down to `path` may be a symlink."""
    path = Path(path)
    refuse_symlinked_folders(path, Path(root) if root is not None else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        raise SrlabError(f"output {path} is a folder: name a file")
    tmp = temporary_name(path)
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()


@contextmanager
def atomic_file(path: str | Path, root: str | Path | None = None):
    """`atomic_path`, opened: yields a binary file object."""
    with atomic_path(path, root) as tmp:
        with create_file(tmp) as f:
            yield f
