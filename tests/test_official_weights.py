"""`net.weights=<file>`: state dicts saved by the authors' code (their key names, wrappers and,
for RCAN, their [0, 255] pixel range) load into srlab's nets and give the same outputs."""
import re

import pytest
import torch
from hydra.utils import instantiate

from srlab.errors import SrlabError
from srlab.inference.checkpoint import load_net
from srlab.nets.edsr import DIV2K_MEAN
from tests.test_paper_nets import TINY


def esrgan_names(sd: dict) -> dict:
    """Ours -> the original ESRGAN release (RRDB_ESRGAN_x4.pth)."""
    subs = [(r"^body\.(\d+)\.rdb(\d)\.", r"RRDB_trunk.\1.RDB\2."), (r"^conv_body\.", "trunk_conv."),
            (r"^conv_up(\d)\.", r"upconv\1."), (r"^conv_hr\.", "HRconv.")]
    out = {}
    for k, v in sd.items():
        for pattern, repl in subs:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out


def rcan_names(sd: dict, n_blocks: int) -> dict:
    """Ours -> the RCAN release (RCAN_BIX4.pt), MeanShift convs included; values unchanged."""
    subs = [(r"^stem\.", "head.0."), (r"\.blocks\.(\d+)\.conv1\.", r".body.\1.body.0."),
            (r"\.blocks\.(\d+)\.conv2\.", r".body.\1.body.2."),
            (r"\.blocks\.(\d+)\.attention\.squeeze\.", r".body.\1.body.3.conv_du.0."),
            (r"\.blocks\.(\d+)\.attention\.excite\.", r".body.\1.body.3.conv_du.2."),
            (r"^body\.(\d+)\.conv\.", rf"body.\1.body.{n_blocks}."), (r"^upsampler\.", "tail.0."),
            (r"^tail\.(weight|bias)", r"tail.1.\1")]
    out = {}
    for k, v in sd.items():
        for pattern, repl in subs:
            k = re.sub(pattern, repl, k)
        out[k] = v
    mean = torch.tensor(DIV2K_MEAN) * 255
    out.update({"sub_mean.weight": torch.eye(3).view(3, 3, 1, 1), "sub_mean.bias": -mean,
                "add_mean.weight": torch.eye(3).view(3, 3, 1, 1), "add_mean.bias": mean})
    return out


def swinir_names(sd: dict, net) -> dict:
    """Ours -> the SwinIR release, with the buffers their code saves (index, masks)."""
    out = {}
    for k, v in sd.items():
        k = re.sub(r"^embed_norm\.", "patch_embed.norm.", k)
        out[re.sub(r"^layers\.(\d+)\.blocks\.", r"layers.\1.residual_group.blocks.", k)] = v
    for i, layer in enumerate(net.layers):
        for j, block in enumerate(layer.blocks):
            prefix = f"layers.{i}.residual_group.blocks.{j}."
            out[prefix + "attn.relative_position_index"] = block.attn.relative_position_index
            if block.shift:
                out[prefix + "attn_mask"] = torch.zeros(16, 64, 64)
    return out


def outputs_match(make, official: dict, tmp_path, wrap=lambda sd: sd, scale=2):
    torch.manual_seed(0)
    source = make(scale).eval()
    path = tmp_path / "official.pth"
    torch.save(wrap(official(source)), path)
    torch.manual_seed(1)
    fresh = make(scale).eval()
    loaded = make(scale, weights=str(path)).eval()
    lr = torch.rand(1, 3, 11, 9)
    with torch.no_grad():
        assert (fresh(lr) - source(lr)).abs().max() > 1e-3  # a different init: the load is what matches
        assert (loaded(lr) - source(lr)).abs().max().item() < 1e-5


@pytest.mark.parametrize("wrap", [lambda sd: sd, lambda sd: {"params_ema": sd, "params": {}},
                                  lambda sd: {f"module.{k}": v for k, v in sd.items()}],
                         ids=["bare", "params_ema", "dataparallel"])
def test_esrgan_release_names(wrap, tmp_path):
    outputs_match(TINY["rrdbnet"], lambda net: esrgan_names(net.state_dict()), tmp_path, wrap, scale=4)


def test_basicsr_release_names(tmp_path):
    # BasicSR's RRDBNet names are srlab's; its files wrap them in "params"
    outputs_match(TINY["rrdbnet"], lambda net: net.state_dict(), tmp_path, lambda sd: {"params": sd}, scale=4)


@pytest.mark.parametrize("name", ["swinir", "swinir_light"])
def test_swinir_release_names(name, tmp_path):
    outputs_match(TINY[name], lambda net: swinir_names(net.state_dict(), net), tmp_path,
                  lambda sd: {"params": sd})


def test_rcan_release_in_0_255_gives_the_authors_output_over_255(tmp_path):
    # The authors' net: the same layers, fed 255 x the image, their mean x 255 around it.
    torch.manual_seed(0)
    theirs = TINY["rcan"](2).eval()
    theirs.mean.mul_(255)
    path = tmp_path / "RCAN_BIX2.pt"
    torch.save({"state_dict": rcan_names(theirs.state_dict(), n_blocks=2)}, path)
    ours = TINY["rcan"](2, weights=str(path)).eval()
    lr = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        expected = theirs(lr * 255) / 255
        assert (ours(lr) - expected).abs().max().item() < 1e-5
        assert expected.std() > 0.05  # an output worth comparing


def test_weights_from_the_command_line(tmp_path, make_cfg):
    torch.manual_seed(0)
    path = tmp_path / "x2.pth"
    torch.save({"params": TINY["rrdbnet"](2).state_dict()}, path)
    cfg = make_cfg(["net=rrdbnet", "scale=2", "net.n_blocks=1", "net.channels=8", "net.growth=4",
                    f"net.weights={path}", "logger=none"], fast=False)
    net = instantiate(cfg.net)
    assert torch.equal(net.conv_first.weight, torch.load(path)["params"]["conv_first.weight"])


@pytest.mark.parametrize("content,message", [
    (None, "not found"),
    (b"not a pytorch file", "not a readable PyTorch state dict"),
    ("x2 net", "missing 'conv_up2"),  # an x2 file in an x4 net: the missing stage is named
    ("rcan", "does not fit this RRDBNet"),
])
def test_wrong_files_are_one_line(content, message, tmp_path):
    path = tmp_path / "w.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "x2 net":
        torch.save(TINY["rrdbnet"](2).state_dict(), path)
    elif content == "rcan":
        torch.save(TINY["rcan"](4).state_dict(), path)
    with pytest.raises(SrlabError, match=message) as info:
        TINY["rrdbnet"](4, weights=str(path))
    assert "\n" not in str(info.value)


def test_checkpoint_loads_after_the_weights_file_is_gone(tmp_path):
    # net.weights only seeded training: load_net (eval, upscale, export) must not need the file
    net = TINY["swinir_light"](2)
    cfg = {"_target_": "srlab.nets.swinir.SwinIR", "scale": 2, "embed_dim": 12, "depths": [2, 2],
           "heads": [2, 2], "window": 4, "upsampler": "pixelshuffledirect", "weights": str(tmp_path / "gone.pth")}
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "srlab_config": {"net": cfg, "scale": 2}}, ckpt)
    loaded, info = load_net(ckpt)
    assert "weights" not in info["net_config"]
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(lr), net.eval()(lr))
