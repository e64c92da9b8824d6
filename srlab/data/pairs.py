"""LR/HR pairs given as files: which LR file belongs to which HR file, and do their sizes fit.

Real-world SR data is shot, not made: RealSR and DRealSR photograph a scene at two focal
lengths, DIV2K ships its LR tracks beside the HR images, a restorer has old scans and clean
masters. Their folders name a pair's two files by one of a few conventions:

    DIV2K, Flickr2K     HR/0001.png            LR/X4/0001x4.png
    RealSR (V3)         Canon_001_HR.png       Canon_001_LR4.png
    DRealSR             DSC_1454_x1.png        DSC_1454_x4.png
    your own            frame_0001.png         frame_0001.png  (identical names)

`PAIR_PATTERN` reduces a file's relative path (without its extension) to the key both files
share: it strips one trailing `x<n>`, `_x<n>`, `_LR`, `_HR`, `_LR<n>` or `_HR<n>` (any case;
`-` for `_` too), the tag. When the HR and LR folders are one folder (RealSR keeps both halves
side by side), an `_HR<n>`/`x1` tag marks the HR file and any other tag the LR file.
`data.pair_pattern` replaces it with any regex whose group `key` (or first group) is that key
(and group `tag` the suffix, for a folder holding both halves). A pair is kept only when its sizes fit the scale exactly: HR = scale x LR
in both directions, or, with `modcrop`, HR at most scale - 1 px larger (the top-left crop to a
multiple of the scale that RealSR and the benchmark scripts do). Everything else is skipped
with one warning naming the file(s), as folders skip unreadable images.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from srlab.data.sources import folder_items
from srlab.errors import SrlabError

log = logging.getLogger(__name__)

PAIR_PATTERN = r"^(?P<key>.+?)(?P<tag>[_-]?(?:[LlHh][Rr])\d*|[_-]?[xX]\d+)?$"
# In one folder holding both halves (RealSR), these tags mark the HR file; other tags the LR.
HR_TAG = re.compile(r"^[_-]?(?:[Hh][Rr]\d*|[xX]1)$")


def _compile(pattern: str | None) -> re.Pattern:
    try:
        rx = re.compile(pattern or PAIR_PATTERN)
    except re.error as e:
        raise SrlabError(f"data.pair_pattern={pattern!r} is not a regular expression ({e})") from None
    if rx.groups < 1:
        raise SrlabError(f"data.pair_pattern={pattern!r} needs a group for the shared name, "
                         r"e.g. '^(?P<key>.+?)_lr$'")
    return rx


def pair_key(name: str, rx: re.Pattern) -> tuple[str, str] | None:
    """(shared key, tag) of a relative name ('sub/0001x4' -> ('sub/0001', 'x4')); None if no match."""
    parent, _, stem = name.rpartition("/")
    m = rx.match(stem)
    if m is None:
        return None
    key = m.group("key") if "key" in rx.groupindex else m.group(1)
    tag = (m.group("tag") or "") if "tag" in rx.groupindex else ""
    return (f"{parent}/{key}" if parent else key), tag


def _keyed(items: list[tuple[str, Path]], rx: re.Pattern, what: str, side: str | None = None) -> dict[str, Path]:
    """key -> file; `side` ("HR"/"LR") keeps only that half of a folder holding both."""
    keyed: dict[str, Path] = {}
    for name, path in items:
        found = pair_key(name.replace("\\", "/"), rx)
        if found is None:
            log.warning("skipped %s image %s: its name does not match data.pair_pattern", what, path)
            continue
        key, tag = found
        if side is not None and (not tag or bool(HR_TAG.match(tag)) != (side == "HR")):
            continue
        if key in keyed:
            raise SrlabError(f"{what}: {keyed[key]} and {path} both pair as '{key}'; keep one scale's files "
                             "per folder (e.g. DIV2K's LR_bicubic/X4) or set data.pair_pattern")
        keyed[key] = path
    return keyed


def match_pairs(hr_dir: str | Path, lr_dir: str | Path, pattern: str | None = None,
                what: str = "data.train_dir") -> list[tuple[str, Path, Path]]:
    """(name, hr path, lr path) for every HR file with an LR partner, sorted by name; one
    warning per file without a partner, one line if no pair at all."""
    rx = _compile(pattern)
    lr_what = what.replace("_dir", "_lr_dir") if what.endswith("_dir") else f"{what} LR"
    one_folder = Path(hr_dir).expanduser().resolve() == Path(lr_dir).expanduser().resolve()
    if one_folder and "tag" not in rx.groupindex:
        raise SrlabError(f"{what} and {lr_what} are one folder: data.pair_pattern needs a group `tag` (the suffix "
                         "telling HR from LR, e.g. _HR / _LR4) to split it")
    hr = _keyed(folder_items(hr_dir, what), rx, "HR", "HR" if one_folder else None)
    lr = _keyed(folder_items(lr_dir, lr_what), rx, "LR", "LR" if one_folder else None)
    for key in sorted(hr.keys() - lr.keys()):
        log.warning("skipped HR image %s: no LR partner in %s", hr[key], lr_dir)
    for key in sorted(lr.keys() - hr.keys()):
        log.warning("skipped LR image %s: no HR partner in %s", lr[key], hr_dir)
    pairs = [(key, hr[key], lr[key]) for key in sorted(hr.keys() & lr.keys())]
    if not pairs:
        raise SrlabError(f"{what}={hr_dir} and {lr_what}={lr_dir}: no file pairs up by name (e.g. 0001.png with "
                         f"0001x4.png, or a_HR.png with a_LR4.png); check the folders or set data.pair_pattern")
    return pairs


def fitted_hr_size(hr_size: tuple[int, int], lr_size: tuple[int, int], scale: int,
                   modcrop: bool) -> tuple[int, int] | None:
    """The HR size a pair is used at (scale x LR), or None when the two sizes do not fit."""
    want = (lr_size[0] * scale, lr_size[1] * scale)
    if tuple(hr_size) == want:
        return want
    if modcrop and all(w <= h < w + scale for h, w in zip(hr_size, want)):
        return want
    return None


def misfit(name: str, hr_size, lr_size, scale: int, modcrop: bool, option: str = "data.modcrop") -> str:
    """Why a pair is skipped, in one line; `option` names the switch that would crop it."""
    hint = "" if modcrop else f" ({option}=true crops an HR up to scale-1 px larger)"
    return (f"pair {name}: HR {hr_size[1]}x{hr_size[0]} is not {scale} x LR {lr_size[1]}x{lr_size[0]}"
            f"{hint}")
