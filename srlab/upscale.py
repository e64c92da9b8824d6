"""srlab-upscale: super-resolve an image file or a folder of them with a trained net.

    srlab-upscale ckpt_path=<.ckpt or .srlab.pt> input=<file|folder> [output=<file.png|folder>]
                  [tile=null overlap=32 half=false device=auto trust_checkpoint=false]
                  [samples=1 temperature=1.0]

The sequence: load the net (`srlab.checkpoint`, weights_only unless trusted) -> list the
inputs -> for each image: read it, upscale it tile by tile (`srlab.tiling`, memory bounded
for any image size), write a PNG. What the file was is kept:
- alpha: upscaled apart with MATLAB bicubic (`imresize`) and re-attached (RGBA / LA PNG);
  the net only ever sees colour. `read_image` composites alpha away, hence `read_input`.
- grayscale: the net runs on the gray channel repeated to RGB and its output channels are
  averaged back, before quantisation, into a single-channel PNG.
- 16-bit (PNG/TIFF): written as a 16-bit PNG. Pillow decodes 16-bit *colour* PNGs to 8
  bits, so those gain the bit depth but not the precision; 16-bit gray PNG and 16-bit
  colour TIFF (via tifffile, in `read_image`) keep it.
A folder is walked recursively; outputs keep the relative names, with a .png suffix. An
unreadable file is reported and skipped; the run then exits 1 after the others are done.
Hydra parses the command line but writes no run directory or log file (configs/upscale.yaml).
Sampling (a VAE checkpoint, experiment=vae): samples=N > 1 writes N prior draws per input,
<name>_sample<i>.png, with z ~ N(0, temperature^2 I); each image runs as one tile so that one
latent field covers it (independent draws per tile would not match at the seams). samples=1
is the deterministic z = 0 answer. A deterministic net refuses samples > 1.
"""

from __future__ import annotations

import logging
import struct
import sys
import zlib
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image, ImageOps
from torch import nn
from tqdm import tqdm

from srlab.checkpoint import load_net
from srlab.cli import user_errors
from srlab.config import CONFIG_DIR
from srlab.data.images import read_image
from srlab.data.sources import IMAGE_EXTENSIONS, list_images
from srlab.errors import SrlabError
from srlab.imresize import imresize
from srlab.tiling import auto_tile, lr_alignment, min_tile, upscale_tiled

log = logging.getLogger(__name__)
_GRAY_16 = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA = {"LA", "La", "RGBA", "RGBa", "PA"}


class GrayNet(nn.Module):
    """Runs an RGB net on a 1-channel image: gray -> RGB -> net -> channel mean."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.scale = net.scale
        # tiling aligns tiles by these, so they must be the inner net's
        self.multiple, self.upsampling = getattr(net, "multiple", 1), getattr(net, "upsampling", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.expand(-1, 3, -1, -1)).mean(dim=1, keepdim=True)


class PriorDraw(nn.Module):
    """A VAE net that answers with a fresh prior draw, z ~ N(0, temperature^2 I), per call."""

    def __init__(self, net: nn.Module, temperature: float):
        super().__init__()
        self.net, self.temperature = net, temperature
        self.scale, self.multiple, self.upsampling = net.scale, getattr(net, "multiple", 1), getattr(net, "upsampling", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.sample(x, self.temperature)


def sample_jobs(net: nn.Module, pairs: list[tuple[Path, Path]], samples: int, temperature: float, tile: int
                ) -> list[tuple[nn.Module, Path, Path, int]]:
    """-> (net, source, destination, tile) per image to write: one per input, or `samples` draws."""
    if samples < 1:
        raise SrlabError(f"samples={samples}: use samples >= 1 (images written per input)")
    if samples == 1:
        return [(net, src, dst, tile) for src, dst in pairs]
    if not hasattr(net, "sample"):
        raise SrlabError(f"samples={samples}: {type(net).__name__} is deterministic (one answer per image); "
                         f"use samples=1, or a VAE checkpoint (experiment=vae) to sample")
    draw = PriorDraw(net, float(temperature))
    return [(draw, src, dst.with_name(f"{dst.stem}_sample{i}.png"), 1 << 30)
            for src, dst in pairs for i in range(samples)]


class AlphaResize(nn.Module):
    """Bicubic (MATLAB) upscaling of the alpha channel, as a module so it can be tiled too."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return imresize(x, scale=self.scale)


def read_input(path: Path) -> tuple[torch.Tensor, bool, torch.Tensor | None, int]:
    """-> (image float [3,H,W] in [0,1], gray, alpha [1,H,W] or None, bits per sample 8|16)."""
    try:
        with Image.open(path) as im:
            bits = 16 if im.mode in _GRAY_16 or any(";16" in str(t[3]) for t in im.tile or []) else 8
            gray = im.mode in ("LA", "La")
            arr = None
            if im.mode in _ALPHA or (im.mode == "P" and "transparency" in im.info):
                if bits == 16 and path.suffix.lower() in (".tif", ".tiff"):
                    import tifffile

                    arr = tifffile.imread(path).astype(np.float32) / 65535.0
                else:
                    im.load()
                    im = ImageOps.exif_transpose(im) or im
                    arr = np.asarray(im.convert("LA" if gray else "RGBA"), dtype=np.float32) / 255.0
    except Exception as e:  # any decoder error: truncated file, unknown format, bad header...
        reason = " ".join(str(e).split()) or type(e).__name__
        raise SrlabError(f"cannot read image {path}: {reason}; replace or delete this file") from None
    if arr is None:
        image, gray = read_image(path)
        return image, gray, None, bits
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    return t[:-1].expand(3, -1, -1).contiguous(), gray, t[-1:].contiguous(), bits


def write_png16(arr: np.ndarray, path: Path) -> None:
    """uint16 [H,W,C] (C = 1..4: gray, gray+alpha, RGB, RGBA) -> 16-bit PNG (Pillow cannot).

    Rows are compressed in chunks (filter type 0) so no full-size byte copy is made.
    """
    h, w, c = arr.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    compressor = zlib.compressobj(6)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header))
        for r in range(0, h, 256):
            rows = arr[r:r + 256].astype(">u2").reshape(-1, w * c).view(np.uint8)
            raw = np.concatenate([np.zeros((rows.shape[0], 1), np.uint8), rows], axis=1)  # filter byte
            data = compressor.compress(raw.tobytes())
            if data:
                f.write(chunk(b"IDAT", data))
        f.write(chunk(b"IDAT", compressor.flush()) + chunk(b"IEND", b""))


def save_png(buf: torch.Tensor, path: Path) -> None:
    """Channels-last uint8/uint16 [H,W,C] -> PNG (L, LA, RGB or RGBA by C)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = buf.numpy()
    if arr.dtype == np.uint16:
        write_png16(arr, path)
    else:
        Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path, format="PNG")


def upscale_file(net: nn.Module, src: Path, dst: Path, scale: int, tile: int, overlap: int,
                 device: torch.device, dtype: torch.dtype, progress: bool = False) -> None:
    image, gray, alpha, bits = read_input(src)
    colour = 1 if gray else 3
    h, w = image.shape[-2:]
    buf = torch.empty(h * scale, w * scale, colour + (alpha is not None),
                      dtype=torch.uint16 if bits == 16 else torch.uint8)
    planes = buf.permute(2, 0, 1)  # [C,H,W] view: the tiler writes straight into the PNG buffer
    upscale_tiled(GrayNet(net) if gray else net, image[:colour], scale, tile, overlap, device, dtype,
                  progress, out=planes[:colour])
    if alpha is not None:
        upscale_tiled(AlphaResize(scale), alpha, scale, tile, overlap, device, torch.float32, False,
                      out=planes[colour:])
    save_png(buf, dst)


def plan(input: str, output: str | None, scale: int) -> tuple[list[tuple[Path, Path]], Path]:
    """-> ((source, destination) pairs, output file or folder); no input is ever overwritten.

    Defaults: <file stem>_x<scale>.png next to a file, <folder>_x<scale>/ next to a folder.
    """
    src = Path(input).expanduser()
    if not src.exists():
        raise SrlabError(f"input {src} not found: pass input=<image file or folder of images>")
    if src.is_dir():
        out_dir = Path(output).expanduser() if output else src.with_name(f"{src.name}_x{scale}")
        if out_dir.resolve() == src.resolve():
            raise SrlabError(f"output={out_dir} is the input folder: choose another output folder")
        files = [p for p in list_images(src, what="input")
                 if not p.resolve().is_relative_to(out_dir.resolve())]  # skip earlier outputs
        if not files:
            raise SrlabError(f"input {src}: its only images are under output={out_dir}; choose another output")
        pairs = [(p, out_dir / p.relative_to(src).with_suffix(".png")) for p in files]
        target = out_dir
    else:
        if src.suffix.lower() not in IMAGE_EXTENSIONS:
            raise SrlabError(f"input {src} is not an image file ({' '.join(IMAGE_EXTENSIONS)})")
        if output is None:
            dst = src.with_name(f"{src.stem}_x{scale}.png")
        elif Path(output).expanduser().is_dir() or output.endswith(("/", "\\")):
            dst = Path(output).expanduser() / f"{src.stem}.png"
        else:
            dst = Path(output).expanduser()
            if dst.suffix.lower() != ".png":
                raise SrlabError(f"output={output}: outputs are PNG files, name it <name>.png (or a folder)")
        pairs, target = [(src, dst)], dst
    seen: dict[Path, Path] = {}
    for s, d in pairs:
        if d.resolve() == s.resolve():
            raise SrlabError(f"output {d} would overwrite its input: choose another output")
        if d in seen:
            raise SrlabError(f"{seen[d]} and {s} would both be written to {d}: rename one of them")
        seen[d] = s
    return pairs, target


def pick_device(name: str, half: bool) -> tuple[torch.device, torch.dtype]:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SrlabError(f"device={name} but no CUDA GPU is available: use device=auto or device=cpu")
    if half and device.type != "cuda":
        log.warning("half=true needs a CUDA device; running in float32 on %s", device)
        half = False
    return device, torch.float16 if half else torch.float32


def upscale(cfg: DictConfig) -> list[Path]:
    """Run the whole CLI for a composed config; returns the files written."""
    device, dtype = pick_device(str(cfg.device), bool(cfg.half))
    net, info = load_net(cfg.ckpt_path, trust_checkpoint=bool(cfg.trust_checkpoint))
    scale, overlap = info["scale"], int(cfg.overlap)
    pairs, target = plan(str(cfg.input), None if cfg.output is None else str(cfg.output), scale)
    net = net.to(device=device, dtype=dtype)
    align, tile = lr_alignment(net, scale), cfg.tile
    if tile is None:  # decided once, for the colour net, and used for every file
        tile = auto_tile(net, scale, 3, overlap, align, device, dtype)
    if overlap < 0 or int(tile) < min_tile(overlap, align):
        raise SrlabError(f"tile={tile}, overlap={overlap}: need overlap >= 0 and tile >= "
                         f"{min_tile(max(overlap, 0), align)} (3 x overlap + {align})")
    progress = bool(cfg.get("progress", True))
    jobs = sample_jobs(net, pairs, int(cfg.get("samples", 1)), float(cfg.get("temperature", 1.0)), int(tile))
    written, failed = [], []
    for job_net, src, dst, job_tile in tqdm(jobs, desc="images", unit="img", disable=not progress or len(jobs) == 1):
        try:
            upscale_file(job_net, src, dst, scale, job_tile, overlap, device, dtype, progress)
        except SrlabError as e:
            if len(jobs) == 1:
                raise
            tqdm.write(f"skipped: {e}", file=sys.stderr)
            failed.append(str(e))
            continue
        written.append(dst)
    if failed:
        raise SrlabError(f"{len(failed)} of {len(jobs)} images failed (first: {failed[0]}); the others are written")
    folder = Path(str(cfg.input)).expanduser().is_dir()
    print(f"wrote {len(written)} images to {target}" if folder else f"wrote {' '.join(map(str, written))}")
    return written


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="upscale")
def main(cfg: DictConfig) -> None:
    with user_errors():
        upscale(cfg)


if __name__ == "__main__":
    main()
