"""The files a store's index may make srlab touch: the store's own, nothing else.

Why: a store is often shared (a teammate's folder, a download) and its `index.json` is plain
text that anyone who can write the folder can edit. Taken on trust, an entry's `file`
("/home/me/thesis.tex", "../x.npy") would be read as training data, or deleted when
srlab-prepare re-makes that entry; a symlinked `images/` would carry the sweep of orphan files
into another folder; a declared size or dtype that disagrees with the file would cut garbage
patches or fail deep in a loader process with a traceback. So:

- reading: an entry's file must be a relative path without `..` that resolves (symlinks
  followed) inside the store, and its .npy header must agree with what the entry declares
  (shape, dtype, file length) before the file is mapped; object dtypes are never loaded;
- writing: only into a real (not symlinked) `<store>/images` (and the store's index), under a
  temporary name in the same folder renamed into place, so a symlink standing at the name is
  replaced, never written through; created with the user's umask so teammates can read it;
- deleting: only regular files directly inside that real `images/` folder, through a handle on
  the folder opened without following links; a symlink or a folder is never deleted.

Every refusal is one `SrlabError` line naming the store and the entry.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path, PurePosixPath

import numpy as np

from srlab.errors import SrlabError

IMAGES = "images"
DTYPES = ("uint8", "uint16", "float32")
REBUILD = "rebuild it with srlab-prepare input=<folder> output=<a new folder>"


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bad(store: Path, name, what: str) -> SrlabError:
    return SrlabError(f"store {store}: entry {name!r} {what}; the index is damaged or was edited: {REBUILD}")


def check_file_name(store: Path, name, file) -> PurePosixPath:
    """`file` as a relative path with no `..` (checked on the text alone, before any access)."""
    rel = PurePosixPath(file) if isinstance(file, str) else None
    if rel is None or not file or rel.is_absolute() or ".." in rel.parts or "\\" in file:
        raise _bad(store, name, f"names file {file!r}, not a relative path inside the store (srlab reads "
                                "and deletes only the store's own files)")
    return rel


def check_entry(store: Path, name, e) -> None:
    """What one entry (HR or its "lr" half) declares: plain values of the right kinds."""
    if not isinstance(e, dict):
        raise _bad(store, name, "is not a JSON object")
    check_file_name(store, name, e.get("file"))
    for key in ("height", "width"):
        if not _whole(e.get(key)) or e[key] < 1:
            raise _bad(store, name, f"has {key}={e.get(key)!r}, not a positive whole number")
    if e.get("dtype") not in DTYPES:
        raise _bad(store, name, f"has dtype={e.get('dtype')!r}, not one of {', '.join(DTYPES)}")
    if not isinstance(e.get("gray"), bool) or e.get("channels") != (1 if e["gray"] else 3):
        raise _bad(store, name, f"has gray={e.get('gray')!r} with channels={e.get('channels')!r} "
                                "(gray true: 1 channel, false: 3)")


def check_index(store: Path, index: dict) -> None:
    """The whole index, structurally (no file is touched): one line for the first bad value."""
    path = store / "index.json"
    if not _whole(index.get("next_file", 0)) or index.get("next_file", 0) < 0:
        raise SrlabError(f"{path}: next_file={index.get('next_file')!r} is not a whole number >= 0: {REBUILD}")
    scale = index.get("scale")
    if scale is not None and (not _whole(scale) or scale < 1):
        raise SrlabError(f"{path}: scale={scale!r} is not a positive whole number: {REBUILD}")
    images = index.get("images")
    if not isinstance(images, list):
        raise SrlabError(f"{path}: 'images' is not a list of entries: {REBUILD}")
    for i, e in enumerate(images):
        name = e.get("name") if isinstance(e, dict) else None
        if not isinstance(name, str) or not name:
            raise SrlabError(f"{path}: entry {i} has no image name: {REBUILD}")
        check_entry(store, name, e)
        if "lr" in e:
            check_entry(store, f"{name} (LR)", e["lr"])


def inside(store: Path, name, file) -> Path:
    """The real path of an entry's file, refused (one line) unless it lies inside the store."""
    check_file_name(store, name, file)
    real = (store / file).resolve()
    if not real.is_relative_to(store.resolve()):
        raise _bad(store, name, f"names file {file!r}, which is a symlink to {real}, outside the store "
                                "(srlab reads only the store's own files)")
    return real


def check_header(store: Path, name, e: dict, path: Path) -> None:
    """The .npy header of `path` agrees with entry `e` (shape, dtype, length): checked before
    the file is mapped, so a bad file costs one small read, never memory or a traceback."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f".npy format version {version}")
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read(f)
            length, offset = os.fstat(f.fileno()).st_size, f.tell()
    except OSError as err:
        raise SrlabError(f"store {store}: cannot read {e['file']} ({name}): {err.strerror or err}") from None
    except ValueError as err:  # not a .npy file, or a header numpy will not parse
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise _bad(store, name, f"has file {e['file']}, which is not a .npy array ({reason})") from None
    if dtype.hasobject:
        raise _bad(store, name, f"has file {e['file']} holding Python objects (dtype {dtype}), not pixels; "
                                "store files are never unpickled")
    want = (e["height"], e["width"], e["channels"])
    if tuple(shape) != want or dtype != np.dtype(e["dtype"]) or fortran:
        held = f"{'x'.join(map(str, shape))} {dtype.name if dtype.isnative else dtype.str}"
        raise _bad(store, name, f"declares {'x'.join(map(str, want))} {e['dtype']} but its file {e['file']} "
                                f"holds {held}{' (Fortran order)' if fortran else ''}")
    size = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if length != size:
        raise _bad(store, name, f"has file {e['file']} of {length} bytes; its header promises {size}")


def images_folder(store: Path, create: bool = False) -> Path:
    """`<store>/images`, refused if it is a symlink (writes and deletes stay in the store)."""
    images = store / IMAGES
    if images.is_symlink():
        raise SrlabError(f"{images} is a symlink: srlab-prepare writes and deletes only in a store's own "
                         "images/ folder; replace the link with a real folder or use a new output folder")
    if create:
        if images.exists() and not images.is_dir():
            raise SrlabError(f"{images} is not a folder: remove it or use a new output folder")
        images.mkdir(exist_ok=True)
    return images


def write_file(path: Path, write) -> None:
    """`write(f)` into a new temporary file beside `path`, then rename it onto `path`.

    Created with O_EXCL | O_NOFOLLOW and mode 0666 (the umask applies, unlike mkstemp's 0600):
    the temporary name is new, so nothing is written through a link; the rename replaces a
    symlink at `path` itself; an interrupted run (Ctrl-C included) leaves no half file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with os.fdopen(os.open(tmp, flags, 0o666), "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            if stat.S_ISREG(os.lstat(tmp).st_mode):
                os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def remove_image_file(store: Path, file: str) -> bool:
    """Delete `file` ("images/<name>") if it is a regular file in the store's real images/
    folder; anything else (elsewhere, a symlink, a folder, gone) is left alone. Deleted?"""
    rel = PurePosixPath(file)
    if rel.parent != PurePosixPath(IMAGES) or rel.name in ("", ".", ".."):
        return False
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(store / IMAGES, flags)  # fails on a symlinked images/: nothing deleted
    except OSError:
        images_folder(store)  # the one line for a symlink
        return False
    try:
        if not stat.S_ISREG(os.stat(rel.name, dir_fd=fd, follow_symlinks=False).st_mode):
            return False
        os.unlink(rel.name, dir_fd=fd)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)
