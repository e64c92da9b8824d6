"""RRDBNet, RCAN, SwinIR: the papers' sizes, any input size, gradients, the shifted-window mask,
tiled inference, and the authors' released state dicts loading with identical outputs."""
import pytest
import torch
from hydra.utils import instantiate

from srlab.inference.tiling import lr_alignment, spans, upscale_tiled
from srlab.nets.rcan import RCAN
from srlab.nets.rrdbnet import RRDBNet
from srlab.nets.swin_blocks import SwinLayer, shift_mask
from srlab.nets.swinir import SwinIR

TINY = {  # a block or two, narrow: every forward here takes milliseconds
    "rrdbnet": lambda s, **kw: RRDBNet(s, n_blocks=1, channels=8, growth=4, **kw),
    "rcan": lambda s, **kw: RCAN(s, n_groups=2, n_blocks=2, channels=16, reduction=4, **kw),
    "swinir": lambda s, **kw: SwinIR(s, embed_dim=12, depths=[2, 2], heads=[2, 2], window=4,
                                     upsample_channels=8, **kw),
    "swinir_light": lambda s, **kw: SwinIR(s, embed_dim=12, depths=[2, 2], heads=[2, 2], window=4,
                                           upsampler="pixelshuffledirect", **kw),
}


def n_params(net, skip=()):
    return sum(p.numel() for name, p in net.named_parameters() if not any(s in name for s in skip))


@pytest.mark.parametrize("net_name,paper,exact", [
    ("rrdbnet", 16.70e6, 16_697_987),
    ("rcan", 15.59e6, 15_592_355),
    ("swinir", 11.9e6, 11_900_199),
    ("swinir_light", 0.90e6, 929_628),
])
def test_parameter_count_at_x4_matches_the_paper(net_name, paper, exact, make_cfg):
    net = instantiate(make_cfg([f"net={net_name}", "scale=4", "logger=none"], fast=False).net)
    assert n_params(net) == exact
    # SwinIR's paper counts leave out the relative position bias tables ((2w-1)^2 x heads per
    # layer: 32,400 in the light net, whose 897K is then matched to the parameter).
    counted = n_params(net, skip=("relative_position_bias_table",))
    assert abs(counted - paper) / paper < 0.015, counted
    if net_name == "swinir_light":
        assert counted == 897_228


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_any_input_size_gives_scale_times_it(name, scale):
    lr = torch.rand(2, 3, 13, 7)  # neither a multiple of SwinIR's window nor square
    with torch.no_grad():
        assert TINY[name](scale)(lr).shape == (2, 3, 13 * scale, 7 * scale)


@pytest.mark.parametrize("name", list(TINY))
def test_gradient_reaches_every_parameter(name):
    torch.manual_seed(0)
    net = TINY[name](2)
    lr, hr = torch.rand(1, 3, 9, 10), torch.rand(1, 3, 18, 20)
    torch.nn.functional.l1_loss(net(lr), hr).backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead


def test_swinir_runs_under_bf16_autocast():
    # trainer=gpu trains in bf16: the attention bias/mask must follow the activations' dtype
    net, lr = TINY["swinir"](2), torch.rand(1, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(lr)
    ref = net(lr)
    assert (out.float() - ref).abs().max().item() < 0.05


def test_shifted_window_mask_stops_attention_across_the_wrap_around():
    # After rolling by -4 on a 16x16 grid (window 8, shift 4), the window at the bottom-right
    # holds pixels of all four image corners; the mask must keep them apart.
    torch.manual_seed(0)
    layer = SwinLayer(dim=8, heads=2, window=8, shift=4).eval()
    mask = shift_mask(16, 16, 8, 4)
    x = torch.randn(1, 16 * 16, 8)
    y = x.clone()
    y[0, 0] += 5.0 * torch.randn(8)  # change pixel (0, 0) only (not by a constant: LayerNorm removes those)
    with torch.no_grad():
        a, b = layer(x, (16, 16), mask), layer(y, (16, 16), mask)
        unmasked = layer(y, (16, 16), torch.zeros_like(mask))
    far, near = 15 * 16 + 15, 1 * 16 + 1  # pixel (15, 15): same rolled window; (1, 1): a real neighbour
    assert (a[0, far] - b[0, far]).abs().max() == 0
    assert (a[0, near] - b[0, near]).abs().max() > 1e-3
    assert (a[0, far] - unmasked[0, far]).abs().max() > 1e-3  # without the mask it would leak


@pytest.mark.parametrize("name,make,overlap,tolerance", [
    # convs only: exact once overlap / 4 covers the ~19 LR px it sees (17 LR + 3 HR convs)
    ("rrdbnet", lambda: RRDBNet(2, n_blocks=1, channels=8, growth=4), 80, 1e-5),
    # channel attention pools over the whole input: a tile's statistics are not the image's
    # (measured: 0.02 of a grey level at most)
    ("rcan", lambda: RCAN(2, n_groups=1, n_blocks=2, channels=8, reduction=4), 16, 0.5 / 255),
    # shifted windows at a tile edge see the tile's border, not the neighbours; tiles start on
    # the window grid (multiple = window), so all other windows are the whole image's.
    # Measured: 0.07 grey levels at most; with tiles off the grid (multiple = 1) 57 levels.
    ("swinir_light", lambda: SwinIR(2, embed_dim=12, depths=[2, 2], heads=[2, 2], window=8,
                                    upsampler="pixelshuffledirect"), 16, 0.5 / 255),
])
def test_tiled_upscale_matches_the_whole_image(name, make, overlap, tolerance):
    torch.manual_seed(0)
    net = make()
    tile = 3 * overlap + lr_alignment(net, 2) + 8
    h, w = tile + 13, 2 * tile - 11  # two tile columns, two rows, ragged ends
    assert len(spans(h, tile, overlap, lr_alignment(net, 2))) > 1  # there are seams to get wrong
    image = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 10), size=(h, w), mode="bicubic").clamp(0, 1)
    with torch.no_grad():
        ref = net(image).clamp(0, 1)
    tiled = upscale_tiled(net, image, 2, tile=tile, overlap=overlap, out_dtype=torch.float32)
    assert tiled.shape == ref.shape
    error = (tiled - ref).abs()
    assert error.max().item() < tolerance, error.max().item()
