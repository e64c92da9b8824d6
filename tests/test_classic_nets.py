"""Classical baselines (SRCNN, ESPCN, EDSR): shapes, bicubic at init, EDSR's size and mean
shift, shift-equivariance and exact tiling of the post-upsampling nets, they train, configs."""
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from srlab.data.images import read_image
from srlab.inference.tiling import spans, upscale_tiled
from srlab.nets.bicubic import Bicubic
from srlab.nets.edsr import DIV2K_MEAN, EDSR
from srlab.nets.espcn import ESPCN
from srlab.nets.srcnn import SRCNN
from srlab.ops.imresize import imresize
from tests.conftest import write_images

SMALL = {  # widths that keep every test here fast
    "srcnn": lambda s, **kw: SRCNN(s, channels=8, mid_channels=8, **kw),
    "espcn": lambda s, **kw: ESPCN(s, channels=8, mid_channels=8, **kw),
    "edsr": lambda s, **kw: EDSR(s, channels=8, n_blocks=2, **kw),
    "edsr_direct": lambda s, **kw: EDSR(s, channels=8, n_blocks=2, upsampler="direct", **kw),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # These nets are tiny: a second OpenMP thread saves nothing, and when the 2 cores are busy
    # with other work its spin-waits made the training tests ~100x slower (measured).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomize_(conv: nn.Conv2d, std: float = 0.05) -> None:
    """Give a zero-initialised last conv weights, so a test sees the net and not just bicubic."""
    nn.init.normal_(conv.weight, std=std)
    nn.init.normal_(conv.bias, std=std)


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_output_shape_at_every_scale_and_odd_sizes(name, scale):
    lr = torch.rand(2, 3, 13, 11)
    assert SMALL[name](scale)(lr).shape == (2, 3, 13 * scale, 11 * scale)
    if name == "srcnn":  # pre-upsampling: space_to_depth must not change the output size
        assert SMALL[name](scale, space_to_depth=scale)(lr).shape == (2, 3, 13 * scale, 11 * scale)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("make", [
    lambda s: SRCNN(s),
    lambda s: SRCNN(s, space_to_depth=s),
    lambda s: ESPCN(s),
    lambda s: EDSR(s, channels=8, n_blocks=2, residual=True),
    lambda s: EDSR(s, channels=8, n_blocks=2, residual=True, upsampler="direct"),
], ids=["srcnn", "srcnn_s2d", "espcn", "edsr_residual", "edsr_direct_residual"])
def test_untrained_residual_net_is_bicubic(make, scale):
    lr = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert (make(scale)(lr) - Bicubic(scale)(lr)).abs().max().item() < 1e-5


def test_non_residual_edsr_is_not_bicubic():
    lr = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert (SMALL["edsr"](2)(lr) - Bicubic(2)(lr)).abs().max().item() > 1e-2


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_edsr_baseline_has_the_papers_parameter_count():
    # conv(3->64) 1,792 + 16 blocks x 2 x conv(64->64) 1,181,696 + conv(64->64) 36,928
    # + tail conv(64->3) 1,731 = 1,222,147, plus the upsampler: one conv(64->256) 147,712 per
    # x2 stage, one conv(64->576) 332,352 for x3. EDSR's release lists 1.37M / 1.55M / 1.52M.
    body = 1_792 + 16 * 2 * 36_928 + 36_928 + 1_731
    for scale, upsampler, published in [(2, 147_712, 1.37e6), (3, 332_352, 1.55e6), (4, 2 * 147_712, 1.52e6)]:
        n = n_params(EDSR(scale))
        assert n == body + upsampler
        assert abs(n - published) / published < 0.02
    assert n_params(EDSR(2)) == 1_369_859 and n_params(EDSR(4)) == 1_517_571
    assert not any("mean" in k for k in EDSR(2).state_dict())  # a constant, not checkpointed


def test_default_recipe_net_is_a_light_edsr(make_cfg):
    """net=edsr_light (experiment=photo_x4, the default): 48 x 8 blocks, one sub-pixel conv.
    stem 1,344 + 16 convs(48->48) 332,544 + body conv 20,784 + conv(48->3*16) 20,784."""
    cfg = make_cfg(["experiment=photo_x4"], fast=False)
    net = instantiate(cfg.net)
    assert isinstance(net, EDSR) and net.residual and n_params(net) == 375_456
    # the direct tail is what makes it cheap: EDSR's two x2 stages at the same width
    stages = EDSR(4, n_blocks=8, channels=48, residual=True)
    assert n_params(stages) - n_params(net) == 2 * (48 * 192 * 9 + 192) + (48 * 3 * 9 + 3) - 20_784


def test_edsr_subtracts_the_div2k_mean_and_adds_it_back():
    torch.manual_seed(0)
    net = SMALL["edsr"](2)
    mean = torch.tensor(DIV2K_MEAN).view(1, 3, 1, 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.zeros_(m.bias)
        # input == mean -> every feature is exactly 0 (no biases) -> output == mean, exactly
        assert torch.equal(net(mean.expand(1, 3, 9, 7)), mean.expand(1, 3, 18, 14))
        # any other input does reach the output, so the check above is not vacuous
        assert (net(torch.full((1, 3, 9, 7), 0.1)) - mean).abs().max().item() > 1e-3
        nn.init.zeros_(net.tail.weight)  # a zero tail predicts "the average image"
        assert torch.equal(net(torch.rand(1, 3, 9, 7)), mean.expand(1, 3, 18, 14))


def espcn_randomized(scale):
    net = SMALL["espcn"](scale)  # residual: the bicubic path and the net path both count
    randomize_(net.head)
    return net


POST = {"espcn": espcn_randomized, "edsr": SMALL["edsr"]}


@pytest.mark.parametrize("name", list(POST))
@pytest.mark.parametrize("scale", [2, 3])
def test_post_upsampling_nets_are_shift_equivariant(name, scale):
    # A 1 LR px shift of the input shifts the output by `scale` HR px away from the borders
    # (field of view < 10 LR px): what makes tiled inference exact for these nets.
    torch.manual_seed(0)
    net, lr, m = POST[name](scale), torch.rand(1, 3, 32, 32), 10 * scale
    with torch.no_grad():
        ref = net(lr)
        right, down = net(lr[..., :, 1:]), net(lr[..., 1:, :])
    W, H = ref.shape[-1], ref.shape[-2]
    assert (right[..., m:-m, m:W - m - scale] - ref[..., m:-m, m + scale:W - m]).abs().max().item() < 1e-5
    assert (down[..., m:H - m - scale, m:-m] - ref[..., m + scale:H - m, m:-m]).abs().max().item() < 1e-5
    assert (right[..., m:-m, m:W - m - scale] - ref[..., m:-m, m:W - m - scale]).abs().max().item() > 1e-2


@pytest.mark.parametrize("name,make,tile,overlap", [
    # ESPCN sees 4 LR px (+2 for bicubic): exact once overlap / 4 >= 4
    ("espcn", espcn_randomized, 49, 16),
    # EDSR with one block sees 5 LR px + 1 HR px for the tail: overlap / 4 >= 6
    ("edsr", lambda s: EDSR(s, channels=8, n_blocks=1), 73, 24),
])
@pytest.mark.parametrize("h,w", [(70, 90), (90, 70)])
def test_tiled_equals_whole_image(name, make, tile, overlap, h, w):
    torch.manual_seed(0)
    net, lr, scale = make(2), torch.rand(1, 3, h, w), 2
    assert len(spans(max(h, w), tile, overlap)) > 1  # there is a seam to get wrong
    with torch.no_grad():
        ref = net(lr).clamp(0, 1)
    tiled = upscale_tiled(net, lr, scale, tile=tile, overlap=overlap, out_dtype=torch.float32)
    assert tiled.shape == ref.shape
    assert (tiled - ref).abs().max().item() < 1 / 255
    assert (tiled - ref).abs().max().item() < 1e-5  # in fact exact, up to float round-off


@pytest.fixture(scope="module")
def hr_lr(tmp_path_factory):
    hr = read_image(write_images(tmp_path_factory.mktemp("hr"), 1, size=(48, 48))[0])[0][None]
    return hr, imresize(hr, scale=1 / 2)


@pytest.mark.parametrize("make", [
    SMALL["srcnn"], SRCNN,  # full width: at lr 1e-3 it used to kill its ReLUs and stall
    SMALL["espcn"], SMALL["edsr"],
    lambda s: EDSR(s, channels=8, n_blocks=2, residual=True),
], ids=["srcnn", "srcnn_full", "espcn", "edsr", "edsr_residual"])
def test_each_net_trains(make, hr_lr):
    # Measured final/initial after 30 steps (seed 0): srcnn 0.64, srcnn_full 0.66, espcn 0.33,
    # edsr 0.22, edsr_residual 0.38. For the residual nets the initial loss is bicubic's.
    hr, lr = hr_lr
    torch.manual_seed(0)
    net = make(2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    with torch.no_grad():
        initial = F.mse_loss(net(lr), hr).item()
    for _ in range(30):
        loss = F.mse_loss(net(lr), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = F.mse_loss(net(lr), hr).item()
    assert final < 0.9 * initial, (initial, final)


@pytest.mark.parametrize("experiment,cls,extra,loss", [
    ("srcnn", SRCNN, ["net.channels=8", "net.mid_channels=8"], "mse"),
    ("espcn", ESPCN, ["net.channels=8", "net.mid_channels=8"], "mse"),
    ("edsr", EDSR, ["net.channels=8", "net.n_blocks=2"], "l1"),
])
@pytest.mark.parametrize("scale", [4, 3])
def test_experiment_configs_build_the_net(experiment, cls, extra, loss, scale, make_cfg):
    # fast=False: conftest's FAST sets net.depth, which these nets do not have
    cfg = make_cfg([f"experiment={experiment}", f"scale={scale}", "logger=none"] + extra, fast=False)
    net = instantiate(cfg.net)
    assert type(net) is cls and net.scale == cfg.scale == scale
    assert list(cfg.loss.terms) == [loss]
    assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8 * scale, 8 * scale)
    if experiment == "edsr":
        assert net.residual is False and len(net.blocks) == 2 + 1  # blocks + the closing conv
