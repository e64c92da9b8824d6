"""Read any common image file into srlab's tensor convention, and write one back.

Training, eval and the upscale CLI all read images through `read_image`, so this is the one
place that knows about file modes. Every source becomes float32 RGB [3,H,W] in [0,1] plus a
`gray` flag (was the file single-channel?), because metrics treat gray images differently
(measured on their own values, not on Y) and upscaled gray images should be saved gray.

Mode handling (Pillow decodes; a few cases need care):
- 1, L, P with an all-gray palette: gray, /255. I;16* (16-bit PNG/TIFF) and I: gray, /65535.
  F (float TIFF): gray, taken as already in [0,1] and clipped.
- LA, RGBA, PA, P with transparency: alpha is composited over white (what viewers show on a
  page) rather than dropped, because the colour under fully transparent pixels is arbitrary.
- CMYK, YCbCr, LAB, HSV, RGBX...: converted to RGB by Pillow.
- 16-bit colour TIFF is read with tifffile (a scikit-image dependency) at full precision;
  16-bit colour PNG is read by Pillow, which keeps only the high byte (8-bit precision).
- EXIF orientation is applied, so phone photos come out upright.
- Multi-frame files (GIF, multipage TIFF): the first frame.
Any decoding failure raises `SrlabError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from srlab.errors import SrlabError
from srlab.ops.files import atomic_path

_GRAY_8 = {"1", "L"}
_GRAY_16 = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA = {"LA", "La", "RGBA", "RGBa", "PA"}


def _composite_white(arr: np.ndarray) -> np.ndarray:
    """[H,W,C+1] float in [0,1] with alpha last -> [H,W,C] over a white background."""
    alpha = arr[..., -1:]
    return arr[..., :-1] * alpha + (1.0 - alpha)


def _is_16bit_colour(im: Image.Image) -> bool:
    # Pillow decodes 48/64-bit colour into 8-bit modes; the (not yet loaded) tile's raw mode
    # still says ";16".
    return im.mode in ("RGB", "RGBA") and any(";16" in str(t[3]) for t in (im.tile or []))


def _read_tiff_16(path: Path) -> np.ndarray:
    import tifffile

    arr = tifffile.TiffFile(path).pages[0].asarray()
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = arr.transpose(1, 2, 0)  # planar (separate) layout -> HWC
    arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    return _composite_white(arr) if arr.shape[-1] == 4 else arr


def _to_array(im: Image.Image) -> tuple[np.ndarray, bool]:
    """Decoded PIL image -> (float32 array [H,W,1 or 3] in [0,1], gray)."""
    mode = im.mode
    if mode in _GRAY_8:
        return np.asarray(im.convert("L"), dtype=np.float32)[..., None] / 255.0, True
    if mode in _GRAY_16:
        arr = np.asarray(im.convert("I"), dtype=np.float32) / 65535.0
        return np.clip(arr, 0.0, 1.0)[..., None], True
    if mode == "F":
        return np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)[..., None], True
    if mode == "P":
        has_alpha = "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        arr = np.asarray(im, dtype=np.float32) / 255.0
        arr = _composite_white(arr) if has_alpha else arr
        rgb = np.asarray(im)[..., :3]
        gray = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
        return (arr[..., :1] if gray else arr), gray
    if mode in _ALPHA:
        gray = mode in ("LA", "La")
        im = im.convert("LA" if gray else "RGBA")
        return _composite_white(np.asarray(im, dtype=np.float32) / 255.0), gray
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0, False


def _unreadable(path, e: Exception) -> SrlabError:
    reason = " ".join(str(e).split()) or type(e).__name__  # one line, whatever the decoder said
    return SrlabError(f"cannot read image {path}: {reason}; replace or delete this file")


def read_image(path: str | Path) -> tuple[torch.Tensor, bool]:
    """Read an image file -> (float32 tensor [3,H,W] in [0,1], gray: bool).

    Gray sources are repeated to 3 channels; `gray` remembers it. Raises `SrlabError` naming
    the file when it is missing or cannot be decoded.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            if path.suffix.lower() in (".tif", ".tiff") and _is_16bit_colour(im):
                arr, gray = _read_tiff_16(path), False  # must be checked before load()
            else:
                im.load()
                arr, gray = _to_array(ImageOps.exif_transpose(im) or im)
    except SrlabError:
        raise
    except Exception as e:  # any decoder error: truncated file, unknown format, bad header...
        raise _unreadable(path, e) from None
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1)
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return t.contiguous(), gray


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) from the file header only (cheap); `SrlabError` naming an unreadable file."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception as e:
        raise _unreadable(path, e) from None
    return h, w


def save_image(img: torch.Tensor, path: str | Path, gray: bool = False) -> None:
    """Write a [3,H,W] / [1,H,W] / [H,W] (or [1,C,H,W]) float image in [0,1] to `path`.

    Values are clamped to [0,1], scaled to 0..255 and rounded (as the paper metrics assume).
    `gray=True` writes a single-channel file (channel mean). The format follows the suffix
    (PNG when there is none); parent folders are created.
    """
    x = img.detach().to("cpu", torch.float32)
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"save_image expects [3,H,W] or [1,H,W], got {tuple(img.shape)}")
    if gray:
        x = x.mean(0, keepdim=True)
    arr = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise SrlabError(f"cannot write {path}: unknown image suffix {path.suffix}; use .png")
    with atomic_path(path) as tmp:  # never through a symlink standing at `path`, never a half file
        Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(tmp, format=image_format)
