"""srlab-upscale: super-resolve an image file or a folder of them with a trained net.

    srlab-upscale ckpt_path=<.ckpt or .srlab.pt> input=<file|folder> [output=<file.png|.tif|folder>]
                  [tile=null tile_batch=null overlap=32 half=false device=auto format=png
                   png_compression=1 profile=false trust_checkpoint=false]
                  [samples=1 temperature=1.0 seed=0]

The sequence: load the net (`srlab.inference.checkpoint`, weights_only unless trusted) -> list the
inputs -> for each image: read it (the next one is read in a thread meanwhile), upscale it
tile row by tile row (`srlab.inference.tiling`: batched tiles, blended on the device), and stream the
finished rows into the output file from a writer thread (`srlab.inference.image_writers`), so neither
the GPU nor the encoder waits for the other and no full-size output is ever held.
`profile=true` prints the read / net / blend / write split (`srlab.inference.profiling`).
What the file was is kept:
- alpha: upscaled with MATLAB bicubic (`imresize`) in the same tiled pass (`AlphaNet`)
  and re-attached (RGBA / LA); the net only ever sees colour. `read_image` composites
  alpha away, hence `read_input`.
- grayscale: the net runs on the gray channel repeated to RGB and its output channels are
  averaged back, before quantisation, into a single-channel PNG.
- 16-bit (PNG/TIFF): written as a 16-bit PNG. Pillow decodes 16-bit *colour* PNGs to 8
  bits, so those gain the bit depth but not the precision; 16-bit gray PNG and 16-bit
  colour TIFF (via tifffile, in `read_image`) keep it.
A folder is walked recursively; outputs keep the relative names, with the format's suffix.
One progress bar counts images (with images/s); an unreadable file is reported on one line
and skipped; the run then exits 1 after the others are done.
Hydra parses the command line but writes no run directory or log file (configs/upscale.yaml).
Sampling (a VAE or diffusion checkpoint): samples=N > 1 writes N draws per input,
<name>_sample<i>.png, draw i from seed + i (`seed`, default 0: the same seed, the same files);
temperature scales the noise. A VAE image runs as one tile so one latent field covers it, and
samples=1 is its deterministic z = 0 answer; a diffusion net tiles each denoising step with one
noise field for the whole image, and samples=1 is the draw of `seed`
(srlab/inference/prior_samples.py). A deterministic net refuses samples > 1.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image, ImageOps
from torch import nn
from tqdm import tqdm

from srlab.cli.entry import user_errors
from srlab.config.compose import CONFIG_DIR
from srlab.data.images import read_image
from srlab.data.sources import IMAGE_EXTENSIONS, list_images
from srlab.errors import SrlabError
from srlab.inference.checkpoint import load_net
from srlab.inference.image_writers import (
    FORMATS,
    SUFFIXES,
    BackgroundWriter,
    PngStream,
    open_stream,
)
from srlab.inference.prior_samples import sample_jobs
from srlab.inference.profiling import StageTimer
from srlab.inference.tile_size import (
    auto_tile,
    auto_tile_batch,
    auto_tile_height,
    lr_alignment,
    min_tile,
)
from srlab.inference.tiling import bands_to_host, tile_bands
from srlab.ops.files import atomic_path
from srlab.ops.imresize import imresize

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


class AlphaNet(nn.Module):
    """Colour channels through `net`, the last one (alpha) through MATLAB bicubic: one tiled pass.

    Bicubic reaches 2 LR px, so with overlap >= 8 tiling leaves alpha exactly as imresize makes it.
    """

    def __init__(self, net: nn.Module, scale: int):
        super().__init__()
        self.net, self.scale = net, scale
        self.multiple, self.upsampling = getattr(net, "multiple", 1), getattr(net, "upsampling", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        colour = self.net(x[:, :-1])
        alpha = imresize(x[:, -1:].float(), scale=self.scale)  # float32 even for a half net
        return torch.cat([colour, alpha.to(colour.dtype)], dim=1)


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


def write_png16(arr: np.ndarray, path: Path, level: int = 6) -> None:
    """uint16 [H,W,C] (C = 1..4: gray, gray+alpha, RGB, RGBA) -> 16-bit PNG (Pillow cannot)."""
    h, w, c = arr.shape
    stream = PngStream(path, w, h, c, 16, level)
    for r in range(0, h, 256):
        stream.write(arr[r:r + 256])
    stream.close()


def upscale_file(net: nn.Module, loaded: tuple, dst: Path, scale: int, tile: int, overlap: int,
                 device: torch.device, dtype: torch.dtype, tile_batch: int = 1, png_level: int = 1,
                 progress: bool = False, timer: StageTimer | None = None, auto_height: bool = False,
                 root: Path | None = None) -> None:
    """One image (as `read_input` returns it) -> `dst`, streamed band by band; the net is on `device`.
    auto_height: lower the tile height for wide images (`auto_tile_height`), when the tile was automatic.
    root: the output folder; no folder below it on the way to `dst` may be a symlink."""
    image, gray, alpha, bits = loaded
    x, model = (image[:1], GrayNet(net)) if gray else (image, net)
    if alpha is not None:
        x, model = torch.cat([x, alpha]), AlphaNet(model, scale)
    h, w = x.shape[-2:]
    tile_height = tile
    if auto_height:
        tile_height = auto_tile_height(w, scale, x.shape[0], tile, overlap, lr_alignment(model, scale))
    # written under a temporary name and renamed into place: an interrupted run leaves no half file
    # under the output's name, and a symlink standing there is replaced, never written through
    with atomic_path(dst, root) as tmp:
        writer = BackgroundWriter(open_stream(tmp, w * scale, h * scale, x.shape[0], bits, png_level, dst.suffix), timer)
        try:
            bands = tile_bands(model, x[None], scale, tile, overlap, device, dtype, tile_batch,
                               torch.uint16 if bits == 16 else torch.uint8, True, timer, progress, tile_height)
            for _, band in bands_to_host(bands, timer):
                writer.write(band.numpy())
        except BaseException:
            writer.abort()
            raise
        writer.close()


def plan(input: str, output: str | None, scale: int, format: str = "png") -> tuple[list[tuple[Path, Path]], Path]:
    """-> ((source, destination) pairs, output file or folder); no input is ever overwritten.

    Defaults: <file stem>_x<scale>.png (.tif) next to a file, <folder>_x<scale>/ next to a folder.
    An output file's suffix (.png, .tif, .tiff) picks its format; folders get `format`'s.
    """
    if format not in FORMATS:
        raise SrlabError(f"format={format} is not one of {', '.join(FORMATS)}")
    suffix = FORMATS[format]
    src = Path(input).expanduser()
    if not src.exists():
        raise SrlabError(f"input {src} not found: pass input=<image file or folder of images>")
    if src.is_dir():
        out_dir = Path(output).expanduser() if output else src.with_name(f"{src.name}_x{scale}")
        if output is None and out_dir.is_symlink():  # a name srlab chose: a link there is not the user's
            raise SrlabError(f"{out_dir} is a symlink: srlab writes no output through a symlink; "
                             "remove it or pass output=<folder>")
        if out_dir.resolve() == src.resolve():
            raise SrlabError(f"output={out_dir} is the input folder: choose another output folder")
        files = [p for p in list_images(src, what="input")
                 if not p.resolve().is_relative_to(out_dir.resolve())]  # skip earlier outputs
        if not files:
            raise SrlabError(f"input {src}: its only images are under output={out_dir}; choose another output")
        pairs = [(p, out_dir / p.relative_to(src).with_suffix(suffix)) for p in files]
        target = out_dir
    else:
        if not src.is_file():
            raise SrlabError(f"input {src} is not a regular file (a FIFO, socket or device): pass an image file "
                             "or a folder")
        if src.suffix.lower() not in IMAGE_EXTENSIONS:
            raise SrlabError(f"input {src} is not an image file ({' '.join(IMAGE_EXTENSIONS)})")
        if output is None:
            dst = src.with_name(f"{src.stem}_x{scale}{suffix}")
        elif Path(output).expanduser().is_dir() or output.endswith(("/", "\\")):
            dst = Path(output).expanduser() / f"{src.stem}{suffix}"
        else:
            dst = Path(output).expanduser()
            if dst.suffix.lower() not in SUFFIXES:
                raise SrlabError(f"output={output}: outputs are PNG or TIFF files, name it <name>.png or "
                                 "<name>.tif (or a folder)")
        pairs, target = [(src, dst)], dst
    seen: dict[Path, Path] = {}
    for s, d in pairs:
        if d.resolve() == s.resolve():
            raise SrlabError(f"output {d} would overwrite its input: choose another output")
        if d in seen:
            raise SrlabError(f"{seen[d]} and {s} would both be written to {d}: rename one of them")
        seen[d] = s
    return pairs, target


def pick_device(name: str, half: bool, precision: str = "fp16") -> tuple[torch.device, torch.dtype]:
    """-> (device, dtype); half=true gives float16, or bfloat16 with precision=bf16 (CUDA only)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SrlabError(f"device={name} but no CUDA GPU is available: use device=auto or device=cpu")
    if half and device.type != "cuda":
        log.warning("half=true needs a CUDA device; running in float32 on %s", device)
        half = False
    if precision not in ("fp16", "bf16"):
        raise SrlabError(f"precision={precision} is not one of fp16, bf16")
    return device, (torch.bfloat16 if precision == "bf16" else torch.float16) if half else torch.float32


def check_output_size(path: Path, scale: int, max_megapixels: float | None) -> None:
    """One line, before any pixel is decoded, if `path` would upscale to more than the limit
    (`max_output_megapixels`): a small file can declare a huge image (a 164 KB PNG of 13000^2)."""
    if not max_megapixels:
        return
    try:
        with Image.open(path) as im:  # reads the header only
            w, h = im.size
    except Exception:  # noqa: BLE001 - read_input says it better
        return
    out = w * h * scale * scale / 1e6
    if out > float(max_megapixels):
        raise SrlabError(f"input {path} is {w}x{h}: x{scale} makes {out:.0f} megapixels, over "
                         f"max_output_megapixels={max_megapixels:g}; raise it if you mean it, or crop the image")


def _timed_read(path: Path, timer: StageTimer | None, scale: int = 1, max_megapixels: float | None = None):
    """read_input, or the SrlabError it raised (so a prefetch thread hands failures over)."""
    start = time.perf_counter()
    try:
        check_output_size(path, scale, max_megapixels)
        return read_input(path)
    except SrlabError as e:
        return e
    finally:
        if timer is not None:
            timer.add("read", time.perf_counter() - start)


def upscale(cfg: DictConfig) -> list[Path]:
    """Run the whole CLI for a composed config; returns the files written."""
    device, dtype = pick_device(str(cfg.device), bool(cfg.half), str(cfg.get("precision") or "fp16"))
    net, info = load_net(cfg.ckpt_path, trust_checkpoint=bool(cfg.trust_checkpoint))
    scale, overlap = info["scale"], int(cfg.overlap)
    pairs, target = plan(str(cfg.input), None if cfg.output is None else str(cfg.output), scale,
                         str(cfg.get("format") or "png"))
    if dtype != torch.float32 and not getattr(net, "supports_half" if dtype == torch.float16 else "supports_bfloat16", True):
        log.warning("%s does not run in %s (spandrel says so): running in float32", type(net).__name__, dtype)
        dtype = torch.float32
    net = net.to(device=device, dtype=dtype).eval()
    align, tile, tile_batch = lr_alignment(net, scale), cfg.tile, int(cfg.get("tile_batch") or auto_tile_batch(device))
    auto_height = tile is None
    stepwise = getattr(net, "stepwise", False)  # diffusion: its sampler tiles each step itself
    if tile is None and not stepwise:  # decided once, for the colour net, and used for every file
        tile = auto_tile(net, scale, 3, overlap, align, device, dtype, tile_batch)
    if overlap < 0 or (tile is not None and int(tile) < min_tile(overlap, align)):
        raise SrlabError(f"tile={tile}, overlap={overlap}: need overlap >= 0 and tile >= "
                         f"{min_tile(max(overlap, 0), align)} (3 x overlap + {align})")
    progress, profile = bool(cfg.get("progress", True)), bool(cfg.get("profile", False))
    png_level = int(cfg.get("png_compression", 1))
    if not 0 <= png_level <= 9:  # checked here too, or every image of a folder would be "skipped"
        raise SrlabError(f"png_compression={png_level} must be 0 (none, fastest) ... 9 (smallest)")
    jobs = sample_jobs(net, pairs, int(cfg.get("samples", 1)), float(cfg.get("temperature", 1.0)),
                       None if tile is None else int(tile), int(cfg.get("seed", 0)), overlap, tile_batch)
    total, start = StageTimer(), time.perf_counter()
    written, failed = [], []
    bar = tqdm(jobs, desc="images", unit="img", disable=not progress or len(jobs) == 1)
    with ThreadPoolExecutor(1) as reader:  # reads image i+1 while image i is upscaled
        timers = [StageTimer(device if profile else None) for _ in jobs]
        limit = cfg.get("max_output_megapixels")
        pending = reader.submit(_timed_read, jobs[0][1], timers[0], scale, limit)
        for i, (job_net, src, dst, job_tile) in enumerate(bar):
            loaded = pending.result()
            if i + 1 < len(jobs):
                pending = reader.submit(_timed_read, jobs[i + 1][1], timers[i + 1], scale, limit)
            image_start = time.perf_counter() - timers[i].seconds["read"]
            try:
                if isinstance(loaded, SrlabError):
                    raise loaded
                if job_tile is None:  # a prior draw: the whole image as one tile
                    side = -(-max(loaded[0].shape[-2:]) // align) * align
                    job_tile = max(side, min_tile(overlap, align))
                upscale_file(job_net, loaded, dst, scale, int(job_tile), overlap, device, dtype, tile_batch, png_level,
                             progress and len(jobs) == 1, timers[i], auto_height and job_net is net,
                             target if target.is_dir() or len(pairs) > 1 else None)
            except SrlabError as e:
                if len(jobs) == 1:
                    raise
                tqdm.write(f"skipped: {e}", file=sys.stderr)
                failed.append(str(e))
                continue
            written.append(dst)
            total.merge(timers[i])
            if profile:
                tqdm.write(timers[i].line(str(src.name), time.perf_counter() - image_start))
    if profile and len(jobs) > 1:
        print(total.line(f"{len(written)} images", time.perf_counter() - start))
    if failed:
        raise SrlabError(f"{len(failed)} of {len(jobs)} images failed (first: {failed[0]}); the others are written")
    folder = Path(str(cfg.input)).expanduser().is_dir()
    print(f"wrote {len(written)} images to {target}" if folder else f"wrote {' '.join(map(str, written))}")
    return written


def _stop_on_sigterm() -> None:
    """SIGTERM (kill, a job scheduler) unwinds like Ctrl-C, so the file being written is removed
    rather than left half-written (srlab/ops/files.py)."""
    def stop(signum, frame):
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="upscale")
def main(cfg: DictConfig) -> None:
    _stop_on_sigterm()
    with user_errors():
        upscale(cfg)


def cli() -> None:
    """The `srlab-upscale` console script: one line for an unknown key or option, then Hydra."""
    from srlab.cli.entry import hydra_entry

    hydra_entry("upscale", main)


if __name__ == "__main__":
    cli()
