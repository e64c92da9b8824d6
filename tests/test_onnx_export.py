"""srlab-export format=onnx: every net in configs/net (new ones too, by globbing) exports with
dynamic height/width and onnxruntime matches PyTorch within 1e-3 on [0, 1] images."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from srlab.cli.export import export
from srlab.config.compose import CONFIG_DIR
from srlab.errors import SrlabError
from srlab.inference.checkpoint import EXPORT_FORMAT
from srlab.inference.file_configs import NETS as SRLAB_NETS, build
from srlab.inference.onnx_export import check_onnx

ort = pytest.importorskip("onnxruntime")
# srlab's own nets; spandrel's architectures have their own ONNX table (test_spandrel_onnx.py)
# (resshift_unet samples in steps with noise: export refuses it, tests/test_diffusion.py)
NETS = sorted(p.stem for p in (Path(CONFIG_DIR) / "net").glob("*.yaml")
              if "srlab.nets.spandrel_arch" not in p.read_text() and p.stem != "resshift_unet")
SMALL = {"channels": 8, "n_blocks": 2, "depth": 2, "mid_channels": 8,  # only keys a net's config has
         "n_groups": 1, "reduction": 4, "growth": 4, "embed_dim": 12, "depths": [2], "heads": [2],
         "upsample_channels": 8}


def load_net_yaml(name: str):
    """A net config with its `defaults` (swinir_light extends swinir) merged in, as Hydra would."""
    node = OmegaConf.load(Path(CONFIG_DIR) / "net" / f"{name}.yaml")
    defaults = node.pop("defaults", [])
    merged = OmegaConf.create()
    for item in defaults:
        merged = OmegaConf.merge(merged, node if item == "_self_" else load_net_yaml(item))
    return merged if "_self_" in defaults else OmegaConf.merge(merged, node)


def small_net_config(name: str, scale: int) -> dict:
    net = load_net_yaml(name)
    cfg = OmegaConf.to_container(OmegaConf.merge({"scale": scale}, {"net": net}), resolve=True)["net"]
    return {k: SMALL.get(k, v) if k in SMALL else v for k, v in cfg.items()}


@pytest.mark.parametrize("name", NETS)
def test_onnx_matches_pytorch(name, tmp_path):
    torch.manual_seed(0)
    cfg = small_net_config(name, scale=2)
    net = build(cfg, SRLAB_NETS, 'test').eval()
    with torch.no_grad():  # random weights everywhere: residual heads start at zero (net = bicubic)
        for p in net.parameters():
            p.normal_(0, 0.05)
    path = tmp_path / "net.srlab.pt"
    torch.save({"format": EXPORT_FORMAT, "net_config": cfg, "scale": 2, "state_dict": net.state_dict()}, path)
    written = export(path, format="onnx")
    assert written == [tmp_path / "net.onnx"]
    for size in [(23, 31), (40, 17)]:  # neither is the 64x64 the graph was traced with
        diff = check_onnx(written[0], net, size=size, batch=1, seed=1)
        assert diff <= 1e-3, (name, size, diff)
    with torch.no_grad():
        assert (net(torch.rand(1, 3, 23, 31)) - torch.nn.functional.interpolate(
            torch.rand(1, 3, 23, 31), scale_factor=2)).abs().max() > 0.01  # not a trivial net


def test_onnx_export_keeps_srlab_default(tmp_path):
    cfg = small_net_config("espcn", scale=3)
    torch.save({"format": EXPORT_FORMAT, "net_config": cfg, "scale": 3,
                "state_dict": build(cfg, SRLAB_NETS, 'test').state_dict()}, tmp_path / "m.ckpt")
    assert export(tmp_path / "m.ckpt", safetensors=False) == [tmp_path / "m.srlab.pt"]
    with pytest.raises(SrlabError, match="format=tflite is not one of srlab, onnx, safetensors, pth"):
        export(tmp_path / "m.ckpt", format="tflite")
