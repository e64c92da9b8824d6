"""A prepared image store: decoded images as uncompressed .npy files, read by memory mapping.

Cutting a 192 px patch from a DIV2K PNG means decoding the whole 2040x1356 file, which starves
the GPU. `srlab-prepare` decodes every image once (with `read_image`, so pixel values are the
same as training from the folder) and writes it uncompressed; loader workers then memory-map
the files, so a crop reads only the pages it touches, and the OS page cache is shared by every
process on the node (DDP ranks, loader workers) instead of each holding its own RAM cache.

Layout:
    <store>/index.json       {"format": "srlab-store", "version": 1, "next_file": k,
                              "images": [{"name", "file", "height", "width", "channels",
                                          "dtype", "gray", "source", "source_size",
                                          "source_mtime_ns", "lr": {...}}, ...],
                              "scale": s}      ("lr" and "scale" only in a paired store)
    <store>/images/<k>.npy   HWC, C = 1 (gray) or 3; uint8 when every value is exactly v/255,
                             else uint16 when exactly v/65535, else float32 (e.g. alpha
                             composited over white), so storing never changes a value.
`file` is relative to the store. File numbers are never reused: a reader still holding an old
index never opens a different image under an old name.

A store may come from someone else: what its index may make srlab read, write or delete is
checked in `store_files` (only the store's own files; a bad entry is one line, not a traceback).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from srlab.data.images import read_image
from srlab.data.sources import _named, list_images
from srlab.data.store_files import (
    check_header,
    check_index,
    images_folder,
    inside,
    remove_image_file,
    write_file,
)
from srlab.errors import SrlabError

FORMAT, VERSION = "srlab-store", 1
INDEX = "index.json"
_SCALE = {"uint8": 255, "uint16": 65535}
log = logging.getLogger(__name__)


def _hint(path) -> str:
    return f"run srlab-prepare input=<folder> output={path}"


def is_store(path: str | Path) -> bool:
    """Does `path` hold a store index of this format (any version)?"""
    try:
        return json.loads((Path(path) / INDEX).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _read_index(store: Path) -> dict:
    path = store / INDEX
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        raise SrlabError(f"{store} is not a prepared image store (no {INDEX}): {_hint(store)}") from None
    except (OSError, ValueError) as e:
        raise SrlabError(f"cannot read {path} ({type(e).__name__}): {_hint(store)}") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise SrlabError(f"{path} is not a prepared image store index: {_hint(store)}")
    if index.get("version") != VERSION:
        raise SrlabError(f"{path} has store version {index.get('version')}, this srlab reads "
                         f"version {VERSION}: {_hint(store)} into a new folder")
    check_index(store, index)
    return index


def store_scale(store_dir: str | Path) -> int | None:
    """The scale of a paired store's LR images (`lr_input=`), None for an HR-only store."""
    scale = _read_index(Path(store_dir).expanduser()).get("scale")
    return int(scale) if scale is not None else None


def open_store(store_dir: str | Path) -> list[dict]:
    """The index entries of a store; `SrlabError` (one line) if it is not usable, or if an
    entry names a file outside the store (absolute, `..`, a symlink out)."""
    store = Path(store_dir).expanduser()
    entries = _read_index(store)["images"]
    for e in entries:
        for part, name in ((e, e["name"]), *(((e["lr"], f"{e['name']} (LR)"),) if "lr" in e else ())):
            if not inside(store, name, part["file"]).is_file():
                raise SrlabError(f"{store}: image file {part['file']} ({name}) is missing: {_hint(store)} again")
    return entries


def load_image(store_dir: str | Path, entry: dict) -> tuple[torch.Tensor, bool]:
    """(uint8/uint16/float32 [C,H,W] view of the memory-mapped file, gray); C is 1 or 3.

    Nothing is read yet: `t[:, y:y+p, x:x+p].contiguous()` reads only the touched pages.
    mmap_mode="c" (copy-on-write) gives a writable array, so torch.from_numpy does not warn,
    and nothing can ever be written back to the file. The file must lie inside the store and
    its header must match the entry (`store_files.check_header`) before it is mapped; a bad
    file is one `SrlabError` line, which training treats as an unreadable image (skipped).
    """
    store = Path(store_dir).expanduser()
    name = entry.get("name", entry.get("file"))
    path = inside(store, name, entry.get("file"))
    check_header(store, name, entry, path)
    try:
        arr = np.load(path, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise SrlabError(f"store {store}: cannot map {entry['file']} ({name}): {str(e).splitlines()[0]}") from None
    if arr.shape != (entry["height"], entry["width"], entry["channels"]) or arr.dtype != np.dtype(entry["dtype"]):
        raise SrlabError(f"store {store}: {entry['file']} ({name}) changed while it was opened")
    assert isinstance(arr, np.memmap), "store images must be memory-mapped, not loaded"
    return torch.from_numpy(arr).permute(2, 0, 1), bool(entry["gray"])


def to_float(t: torch.Tensor) -> torch.Tensor:
    """Stored dtype -> float32 contiguous [3,h,w] in [0,1], bit-identical to `read_image`."""
    scale = _SCALE.get(str(t.dtype).removeprefix("torch."))
    # int -> float32 then true division by the same constant as read_image: same IEEE result.
    x = t.to(torch.float32) / scale if scale else t.to(torch.float32)
    return x.expand(3, -1, -1).contiguous()


def _encode(x: torch.Tensor, gray: bool) -> np.ndarray:
    """read_image's float [3,H,W] -> the smallest exact HWC array (1 channel when gray)."""
    x = x[:1] if gray else x
    for dtype, scale in _SCALE.items():
        q = (x * scale).round()
        if torch.equal(q / scale, x):  # lossless: decoding gives back exactly x
            return q.permute(1, 2, 0).numpy().astype(dtype)
    return x.permute(1, 2, 0).numpy().astype(np.float32)


def _write_index(store: Path, index: dict) -> None:
    write_file(store / INDEX, lambda f: f.write(json.dumps(index, indent=1).encode()))


def _start(store: Path) -> dict:
    """The existing index, or a new empty store; refuses a folder that holds other things."""
    if store.exists() and not store.is_dir():
        raise SrlabError(f"output={store} is a file; give a folder for the store")
    if (store / INDEX).exists():
        return _read_index(store)
    if store.is_dir() and any(store.iterdir()):
        raise SrlabError(f"output={store} is a non-empty folder without {INDEX} (not a store); "
                         "give a new or empty folder")
    store.mkdir(parents=True, exist_ok=True)
    images_folder(store, create=True)
    index = {"format": FORMAT, "version": VERSION, "next_file": 0, "images": []}
    _write_index(store, index)
    return index


def _sweep(store: Path, index: dict) -> int:
    """Delete .npy/temp files no index entry names (left by an interrupted run); next number.
    Only regular files in the store's real images/ folder are ever deleted."""
    used = {e["file"] for e in index["images"]} | {e["lr"]["file"] for e in index["images"] if "lr" in e}
    top = index.get("next_file", 0)
    for p in images_folder(store, create=True).iterdir():
        if p.suffix == ".npy" and p.stem.isdigit():
            top = max(top, int(p.stem) + 1)  # even an orphan's number is never handed out again
        if f"images/{p.name}" not in used and (p.suffix in (".npy", ".tmp")):
            remove_image_file(store, f"images/{p.name}")
    return top


def _present(store: Path, e: dict) -> bool:
    """Are the entry's files there? (A deleted one is re-made from its source on a re-run.)"""
    return all((store / part["file"]).is_file() for part in (e, *([e["lr"]] if "lr" in e else [])))


def _size(store: Path, file: str) -> int:
    try:
        return (store / file).lstat().st_size
    except OSError:
        return 0


def _stat(path: Path) -> dict:
    st = path.stat()
    return {"source": str(path.resolve()), "source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def _write_array(store: Path, index: dict, x: torch.Tensor, gray: bool) -> dict:
    """Encode one decoded image into the next numbered file; its entry fields."""
    arr = _encode(x, gray)
    file = f"images/{index['next_file']:06d}.npy"
    write_file(images_folder(store) / Path(file).name, lambda f: np.save(f, arr, allow_pickle=False))
    index["next_file"] += 1
    return {"file": file, "height": arr.shape[0], "width": arr.shape[1], "channels": arr.shape[2],
            "dtype": str(arr.dtype), "gray": gray}


def _sources(root: Path, lr_input, scale, pair_pattern) -> list[tuple[str, Path, Path | None]]:
    """(name, HR file, LR file or None) for every image (pair) to store; unique names."""
    if lr_input is None:
        named = [(n, p, None) for n, p in _named(root, list_images(root, "input"))]
    else:
        from srlab.data.pairs import match_pairs

        if scale is None:
            raise SrlabError("lr_input= needs the scale of its LR files: add scale=<2|3|4|...>")
        named = match_pairs(root, Path(lr_input).expanduser(), pair_pattern, "input")
    seen: dict[str, Path] = {}
    for name, path, _ in named:  # the store is looked up by name: two files must not share one
        if name in seen:
            raise SrlabError(f"input: {seen[name]} and {path} both give the image name '{name}'; "
                             "rename or remove one")
        seen[name] = path
    return named


def _decode_pair(name: str, hr_path: Path, lr_path: Path, scale: int, modcrop: bool):
    """(hr cropped to scale x LR, lr, gray) or None (one warning) when the sizes do not fit."""
    from srlab.data.pairs import fitted_hr_size, misfit

    (hr, hr_gray), (lr, lr_gray) = read_image(hr_path), read_image(lr_path)
    fit = fitted_hr_size(tuple(hr.shape[-2:]), tuple(lr.shape[-2:]), scale, modcrop)
    if fit is None:
        log.warning("skipped %s", misfit(f"{hr_path} with {lr_path}", hr.shape[-2:], lr.shape[-2:], scale, modcrop,
                                         option="modcrop"))
        return None
    return hr[:, :fit[0], :fit[1]].contiguous(), lr, hr_gray and lr_gray


def prepare_store(input_dir: str | Path, output_dir: str | Path, progress: bool = True, lr_input=None,
                  scale: int | None = None, modcrop: bool = False, pair_pattern: str | None = None) -> dict:
    """Convert a folder of images into a store (or bring an existing store up to date).

    New images are added, images whose source size or mtime changed are re-converted (under a
    new file number; the old file is deleted), unchanged ones are skipped without decoding.
    Images removed from the input stay in the store. The index is rewritten atomically after
    every image, so an interrupted run (Ctrl-C, an unreadable file) keeps everything converted
    so far and a re-run continues. Returns {"added", "updated", "unchanged"} counts (and
"skipped" for pairs).

    With `lr_input` (a folder of LR files at 1/`scale`), the store holds pairs matched by name
    (`srlab.data.pairs`): each entry also has "lr" (file, size, dtype, source), the HR is
    stored cropped to scale x LR (`modcrop` allows an HR up to scale-1 px larger, cropped
    top-left), and a pair whose sizes do not fit is skipped with one warning.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    root, store = Path(input_dir).expanduser(), Path(output_dir).expanduser()
    named = _sources(root, lr_input, scale, pair_pattern)
    index = _start(store)
    paired = lr_input is not None
    if index["images"] and (index.get("scale") is not None) != paired:
        raise SrlabError(f"output={store} is {'an HR-only' if not paired else 'a paired'} store; "
                         f"{'paired' if paired else 'HR-only'} images go into a new folder")
    if paired and index.get("scale") not in (None, int(scale)):
        raise SrlabError(f"output={store} holds x{index['scale']} pairs, not scale={scale}: use a new folder")
    if paired:
        index["scale"] = int(scale)
    index["next_file"] = _sweep(store, index)
    by_name = {e["name"]: i for i, e in enumerate(index["images"])}
    counts = {"added": 0, "updated": 0, "unchanged": 0, **({"skipped": 0} if paired else {})}
    columns = (TextColumn("preparing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        for name, path, lr_path in bar.track(named):
            stat = _stat(path)
            lr_stat = _stat(lr_path) if lr_path is not None else None
            old = index["images"][by_name[name]] if name in by_name else None
            if old and _present(store, old) and {k: old.get(k) for k in stat} == stat and (
                    lr_stat is None or {k: old["lr"].get(k) for k in lr_stat} == lr_stat):
                counts["unchanged"] += 1
                continue
            if lr_path is None:
                x, gray = read_image(path)  # SrlabError naming the file; the index so far is kept
                lr = None
            else:
                decoded = _decode_pair(name, path, lr_path, int(scale), modcrop)
                if decoded is None:
                    counts["skipped"] += 1
                    continue
                x, lr, gray = decoded
            entry = {"name": name, **_write_array(store, index, x, gray), **stat}
            if lr is not None:
                entry["lr"] = {**_write_array(store, index, lr, gray), **lr_stat}
            if old:
                index["images"][by_name[name]] = entry
            else:
                by_name[name] = len(index["images"])
                index["images"].append(entry)
            _write_index(store, index)
            if old:  # only after the index stops naming them; only a regular file in images/
                for file in (old["file"], *([old["lr"]["file"]] if "lr" in old else [])):
                    remove_image_file(store, file)
            counts["updated" if old else "added"] += 1
    files = [e["file"] for e in index["images"]] + [e["lr"]["file"] for e in index["images"] if "lr" in e]
    gb = sum(_size(store, f) for f in files) / 1e9
    what = f"x{index['scale']} pairs" if paired else "images"
    skipped = f", {counts['skipped']} skipped (see the warnings)" if counts.get("skipped") else ""
    print(f"{store}: {counts['added']} added, {counts['updated']} updated, {counts['unchanged']} unchanged"
          f"{skipped}; {len(index['images'])} {what}, "
          f"{gb:.2f} GB")
    return counts
