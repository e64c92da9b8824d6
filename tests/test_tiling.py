"""Tiled upscaling: same pixels as whole-image inference, and memory that does not grow with it."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from srlab.errors import SrlabError
from srlab.inference.tile_size import lr_alignment, min_tile
from srlab.inference.tiling import spans, upscale_tiled
from srlab.ops.imresize import imresize


class LocalNet(nn.Module):
    """Post-upsampling net whose receptive field reaches `depth` LR px (depth 3x3 convs)."""

    def __init__(self, scale: int = 2, depth: int = 3, width: int = 8):
        super().__init__()
        self.scale = scale
        layers, c = [], 3
        for _ in range(depth - 1):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
            c = width
        layers += [nn.Conv2d(c, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


class StridedPreNet(nn.Module):
    """Pre-upsampling net with a stride-4 encoder: not shift-invariant, so tiles must align."""

    upsampling, multiple = "pre", 4

    def __init__(self, scale: int = 2):
        super().__init__()
        self.scale = scale
        self.down = nn.Conv2d(3, 8, 4, stride=4)
        self.up = nn.ConvTranspose2d(8, 3, 4, stride=4)

    def forward(self, lr):
        up = imresize(lr, scale=self.scale)
        h, w = up.shape[-2:]
        pad = torch.nn.functional.pad(up, (0, (-w) % 4, 0, (-h) % 4), mode="replicate")
        return torch.sigmoid(up + self.up(torch.relu(self.down(pad)))[..., :h, :w])


def whole(net, x):
    with torch.no_grad():
        return net(x[None])[0].clamp(0, 1)


@pytest.mark.parametrize("h, w, tile, overlap", [
    (61, 83, 40, 12),    # odd sizes, several tiles each way
    (50, 50, 37, 12),    # odd tile
    (33, 97, 37, 12),    # smallest tile allowed for this overlap (3 x 12 + 1)
    (40, 30, 512, 32),   # tile larger than the image: one tile
    (70, 45, 64, 16),
])
def test_tiled_equals_whole_image(h, w, tile, overlap):
    torch.manual_seed(0)
    net, x = LocalNet(scale=2, depth=3).eval(), torch.rand(3, h, w)
    ref = whole(net, x)  # receptive field 3 LR px: exact once overlap >= 4 * 3
    for tile_batch in (1, 3):  # several tiles per forward: the same pixels
        tiled = upscale_tiled(net, x, 2, tile=tile, overlap=overlap, out_dtype=torch.float32, tile_batch=tile_batch)
        assert tiled.shape == ref.shape
        assert (tiled - ref).abs().max().item() < 1e-5
    as_uint8 = upscale_tiled(net, x[None], 2, tile=tile, overlap=overlap)
    assert as_uint8.dtype == torch.uint8 and as_uint8.shape == (1, *ref.shape)
    assert (as_uint8[0].float() - ref * 255).abs().max().item() <= 0.5 + 1e-3  # only rounding


def test_blending_hides_seams_when_overlap_is_short_of_the_receptive_field():
    torch.manual_seed(1)
    net, x = LocalNet(scale=3, depth=6).eval(), torch.rand(3, 64, 64)  # field 6 px > overlap/4 = 2
    ref = whole(net, x)
    blended = upscale_tiled(net, x, 3, tile=32, overlap=8, out_dtype=torch.float32)
    no_overlap = upscale_tiled(net, x, 3, tile=32, overlap=0, out_dtype=torch.float32)
    assert (blended - ref).abs().max() < (no_overlap - ref).abs().max()
    assert (blended - ref).abs().max() < 1 / 255


def test_strided_net_tiles_are_aligned_to_its_grid():
    torch.manual_seed(2)
    net = StridedPreNet(scale=2).eval()
    assert lr_alignment(net, 2) == 2 and lr_alignment(LocalNet(), 2) == 1
    x = torch.rand(3, 57, 71)
    tiled = upscale_tiled(net, x, 2, tile=40, overlap=12, out_dtype=torch.float32)
    assert (tiled - whole(net, x)).abs().max().item() < 1e-5


def test_16bit_output():
    torch.manual_seed(3)
    net, x = LocalNet().eval(), torch.rand(3, 50, 40)
    out = upscale_tiled(net, x, 2, tile=37, overlap=12, out_dtype=torch.uint16)
    assert out.dtype == torch.uint16
    assert (out.float() - whole(net, x) * 65535).abs().max().item() <= 0.5 + 0.05


def test_spans_cover_aligned_and_never_triple_overlap():
    for overlap in (0, 3, 8, 13):
        for align in (1, 2, 8):
            for tile in range(min_tile(overlap, align), min_tile(overlap, align) + 25, 4):
                for length in range(1, 300, 7):
                    s = spans(length, tile, overlap, align)
                    assert s[0][0] == 0 and s[-1][1] == length
                    for i, (a, b) in enumerate(s):
                        assert b - a <= tile and a % align == 0
                        if i + 1 < len(s):
                            assert b - s[i + 1][0] >= overlap
                        if i + 2 < len(s):
                            assert s[i + 2][0] >= b  # a pixel is in at most two tiles per axis


def test_tile_too_small_for_overlap_is_one_line():
    with pytest.raises(SrlabError, match=r"tile=20 is too small for overlap=8: use tile >= 25"):
        upscale_tiled(LocalNet(), torch.rand(3, 50, 50), 2, tile=20, overlap=8)


class LargestFloatTensor(TorchDispatchMode):
    """Records the size of the largest floating-point tensor any torch op returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):  # views of an input (slices of the LR image) allocate nothing
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.untyped_storage().data_ptr() not in inputs:
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out


def test_no_float_tensor_near_the_output_size():
    net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2)).eval()
    net.scale = 2
    x = torch.rand(3, 1000, 1000)
    with LargestFloatTensor() as mode:
        out = upscale_tiled(net, x, 2, tile=128, overlap=16)
    full_float = 3 * 2000 * 2000 * 4  # 48 MB: what an untiled float output would take
    assert out.shape == (3, 2000, 2000) and out.dtype == torch.uint8
    # the largest is the float canvas of one tile row: 3 x 256 x 2000 (6.1 MB, 1/7.8 of the image),
    # the same for any image height
    assert mode.largest <= 3 * 256 * 2000 * 4 < full_float / 7, mode.largest


MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, torch
    from torch import nn
    from srlab.inference.tiling import upscale_tiled
    torch.set_num_threads(1)
    net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2)).eval()
    net.scale = 2
    x = torch.rand(3, 1500, 1500)
    upscale_tiled(net, x[:, :300, :300], 2, tile=256, overlap=16)  # warm up allocator and kernels
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = upscale_tiled(net, x, 2, tile=256, overlap=16)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"grown_kib": after - before, "out_bytes": out.numel()}))
""")


def test_peak_rss_grows_by_little_more_than_the_uint8_output():
    run = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    grown, out_bytes = result["grown_kib"] * 1024, result["out_bytes"]  # out: 27 MB uint8
    # An untiled run would hold a 108 MB float output plus 12-channel activations (108 MB).
    assert grown < out_bytes + 30e6, (grown, out_bytes)


def test_tile_height_shrinks_for_wide_images_and_rectangular_tiles_stay_exact():
    from srlab.inference.tile_size import auto_tile_height

    budget = 512 << 20
    narrow, wide = (auto_tile_height(w, 4, 3, 1024, 32, budget=budget) for w in (1000, 4000))
    assert narrow == 1024 and wide == 336  # 512 MiB / (8 * 16 * 4000 * 3) = 349 rows -> 336
    assert auto_tile_height(10**6, 4, 3, 1024, 32, budget=budget) == min_tile(32)  # never below the minimum
    torch.manual_seed(4)
    net, x = LocalNet(scale=2, depth=3).eval(), torch.rand(3, 70, 90)
    from srlab.inference.tiling import tile_bands

    bands = list(tile_bands(net, x[None], 2, 64, 12, torch.device("cpu"), tile_height=37, out_dtype=torch.float32))
    assert len(bands) == 3  # 37-px tile rows over 70 px, 64-px columns
    out = torch.cat([b for _, b in bands]).permute(2, 0, 1)
    assert (out - whole(net, x)).abs().max().item() < 1e-5
