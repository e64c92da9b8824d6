"""ONNX export of an SR net: dynamic batch, height and width, checked against PyTorch on export.

torch's TorchScript-based exporter (`dynamo=False`) traces the net once on a 64x64 LR image.
Tracing records what the code does with *that* image's sizes, so code that computes from
sizes must keep doing so in the graph: MATLAB bicubic (`imresize`) is built from per-size
matrices, so while exporting it switches to `upsample_int` (convolutions, same numbers);
`pad_to_multiple` and the CVAE's zero latent avoid Python branches on sizes. The exporter
then runs the file in onnxruntime on an image of another, odd size (and a batch of two) and
compares with PyTorch: a graph that froze a size fails there, not in a user's pipeline.
Why not the dynamo exporter: it needs onnxscript, takes ~10x longer (8 s vs 0.7 s for a small
EDSR) and gives the same graph for these convolution-only nets.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from srlab.errors import SrlabError

# architectures whose export does not end in a usable file or a clean error (measured with
# torch 2.14 and onnxruntime 1.2x): refused before the exporter starts
NOT_EXPORTABLE = {"GRL": "its stripe attention crashes the process in the exporter or onnxruntime",
                  "AuraSR": "its convolutions of traced kernel shape are not exportable"}
TRACE_SIZE, CHECK_SIZE = (64, 64), (37, 53)  # LR h, w; the check size is odd and not a multiple of 2^k
TOLERANCE = 1e-3


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise SrlabError(f"format=onnx needs the {module} package: pip install 'srlab[onnx]' "
                         "(make install adds it)") from None


def check_onnx(path: Path, net: nn.Module, size: tuple[int, int] = CHECK_SIZE, batch: int = 2, seed: int = 0) -> float:
    """Max |onnxruntime - PyTorch| on a random [batch, 3, *size] image in [0, 1]."""
    ort = _require("onnxruntime")
    x = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(seed))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"lr": x.numpy()})[0])
    with torch.no_grad():
        want = net(x)
    if got.shape != want.shape:
        raise RuntimeError(f"onnxruntime gave {tuple(got.shape)} for a {tuple(x.shape)} input, PyTorch "
                           f"{tuple(want.shape)}: the graph froze a size")
    return float((got - want).abs().max())


def parse_size(size: str | None) -> tuple[int, int] | None:
    """"256x192" -> (256, 192) (LR height, width); None stays None."""
    if size in (None, "", "null"):
        return None
    try:
        h, w = (int(v) for v in str(size).lower().split("x"))
        assert h > 0 and w > 0
    except (ValueError, AssertionError):
        raise SrlabError(f"size={size}: use HxW in LR pixels, e.g. size=256x256") from None
    return h, w


def _export(net: nn.Module, path: Path, size: tuple[int, int], dims: dict, opset: int) -> None:
    example = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    out_dims = {k: {2: "out_height", 3: "out_width"}.get(k, v) for k, v in dims.items()}
    with warnings.catch_warnings():  # TracerWarnings about sizes (handled above), deprecation notes
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["lr"], output_names=["sr"], dynamic_axes={"lr": dims, "sr": out_dims})


def export_onnx(net: nn.Module, path: Path, opset: int = 17, size: tuple[int, int] | None = None) -> float:
    """Write `net` (CPU, float32, eval) to `path`; returns the max abs difference of the check."""
    return export_onnx_graph(net, path, opset, size)[0]


def export_onnx_graph(net: nn.Module, path: Path, opset: int = 17,
                      size: tuple[int, int] | None = None) -> tuple[float, str]:
    """`export_onnx`, returning also which graph it wrote ("dynamic height and width", ...).

    Without `size`: dynamic batch, height and width, checked at an odd size the trace never saw.
    With `size`: a graph for that LR size only, for nets whose window padding freezes the traced
    size (most window-attention nets); dynamic batch where the net allows, else batch 1 (nets
    that write the batch into their reshapes)."""
    _require("onnx")
    arch_id = getattr(net, "arch_id", None)
    if getattr(net, "stepwise", False):
        raise SrlabError(f"{type(net).__name__} samples in several denoising steps with fresh noise: an ONNX graph "
                         "of one forward would not be it; export format=srlab and sample with srlab-upscale")
    if arch_id in NOT_EXPORTABLE:
        raise SrlabError(f"{arch_id} cannot be exported to ONNX: {NOT_EXPORTABLE[arch_id]}; "
                         "use format=safetensors (spandrel, chaiNNer) or format=srlab")
    net = net.to("cpu", torch.float32).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    name = getattr(net, "arch", type(net).__name__)
    attempts = ([("dynamic height and width", TRACE_SIZE, {0: "batch", 2: "height", 3: "width"}, CHECK_SIZE, 2)]
                if size is None else
                [(f"fixed LR size {size[0]}x{size[1]}", size, {0: "batch"}, size, 2),
                 (f"fixed LR size {size[0]}x{size[1]}, batch 1", size, {}, size, 1)])
    reason = ""
    for shape, trace_size, dims, check_size, batch in attempts:
        try:
            _export(net, path, trace_size, dims, opset)
            diff = check_onnx(path, net, size=check_size, batch=batch)
        except SrlabError:
            raise
        except Exception as e:  # noqa: BLE001 - exporter or onnxruntime: either way this graph is unusable
            reason = " ".join(str(e).split())[:140]
            continue
        if diff <= TOLERANCE:
            return diff, shape
        reason = f"onnxruntime differs from PyTorch by {diff:.2g} (> {TOLERANCE}) on a random image"
    path.unlink(missing_ok=True)
    if size is None:
        raise SrlabError(f"{name} does not export with dynamic height and width ({reason}); export it for "
                         "one LR size with size=HxW, e.g. size=256x256")
    raise SrlabError(f"{name} does not export to ONNX even at size {size[0]}x{size[1]} ({reason})")

