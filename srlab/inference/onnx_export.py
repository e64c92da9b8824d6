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
        raise SrlabError(f"{path}: onnxruntime gave {tuple(got.shape)} for a {tuple(x.shape)} input, PyTorch "
                         f"{tuple(want.shape)}: the graph froze a size; please report this net")
    return float((got - want).abs().max())


def export_onnx(net: nn.Module, path: Path, opset: int = 17) -> float:
    """Write `net` (CPU, float32, eval) to `path`; returns the max abs difference of the check."""
    _require("onnx")
    net = net.to("cpu", torch.float32).eval()
    example = torch.rand(1, 3, *TRACE_SIZE, generator=torch.Generator().manual_seed(0))
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # TracerWarnings about sizes (handled above), deprecation notes
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["lr"], output_names=["sr"],
                          dynamic_axes={"lr": {0: "batch", 2: "height", 3: "width"},
                                        "sr": {0: "batch", 2: "out_height", 3: "out_width"}})
    diff = check_onnx(path, net)
    if not diff <= TOLERANCE:
        raise SrlabError(f"{path}: onnxruntime differs from PyTorch by {diff:.2g} (> {TOLERANCE}) "
                         "on a random image; please report this net")
    return diff
