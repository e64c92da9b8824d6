"""Model files of the field, both ways: community files (spandrel-built modules saved in each
wrapper layout) load in srlab-upscale / -eval / -export and fine-tune with net=pretrained; srlab
exports bare state dicts that spandrel detects with the same output; bad files are one line."""
import numpy as np
import pytest
import torch
from PIL import Image

from srlab.cli.eval import evaluate
from srlab.cli.export import export
from srlab.cli.train import train
from srlab.cli.upscale import upscale
from srlab.errors import SrlabError
from srlab.inference.checkpoint import load_net
from tests.conftest import FAST, write_images

spandrel = pytest.importorskip("spandrel")
from safetensors.torch import save_file  # noqa: E402
from spandrel.architectures.Compact import Compact  # noqa: E402

LAYOUTS = ["bare.pth", "params.pth", "params_ema.pth", "state_dict.ckpt", "model.pt", "module.pth", "bare.safetensors"]


def community_model(scale: int = 4) -> torch.nn.Module:
    """What OpenModelDB is full of: a Real-ESRGAN Compact, as spandrel builds it."""
    torch.manual_seed(0)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=scale).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model


def save_layout(model: torch.nn.Module, path, layout: str | None = None):
    sd = model.state_dict()
    layout = layout or path.name.split(".")[0]
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
        return path
    wrapped = {"bare": sd, "params": {"params": sd}, "params_ema": {"params_ema": sd, "params": sd},
               "state_dict": {"state_dict": sd}, "model": {"model": sd},
               "module": {f"module.{k}": v for k, v in sd.items()}}[layout]
    torch.save(wrapped, path)
    return path


@pytest.mark.parametrize("layout", LAYOUTS)
def test_community_files_load_in_every_layout(layout, tmp_path):
    model = community_model()
    net, info = load_net(save_layout(model, tmp_path / layout))
    assert info["source"] == "spandrel" and info["scale"] == 4
    assert info["net_config"]["arch"] == "Compact" and info["net_config"]["num_feat"] == 8
    x = torch.rand(1, 3, 11, 9)
    with torch.no_grad():
        assert torch.allclose(net(x), model(x), atol=1e-6)


def test_community_file_upscales_evaluates_and_exports(make_cfg, tmp_path):
    path = save_layout(community_model(), tmp_path / "4x_compact.pth", "bare")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (14, 10, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    written = upscale(make_cfg([f"ckpt_path={path}", f"input={tmp_path / 'in.png'}", f"output={tmp_path / 'out.png'}",
                                "device=cpu"], config_name="upscale"))
    assert Image.open(written[0]).size == (40, 56)
    hr = tmp_path / "Set" / "HR"
    write_images(hr, 1, size=(32, 32))
    metrics = evaluate(make_cfg([f"ckpt_path={path}", f"eval.sets=[{hr}]"], config_name="eval"))
    assert metrics["Set/n_images"] == 1 and np.isfinite(metrics["Set/psnr_y"])
    again = export(path, tmp_path / "again.safetensors", format="safetensors")[0]
    assert spandrel.ModelLoader().load_from_file(again).architecture.id == "Compact"


def test_fine_tune_a_community_file_then_forget_it(make_cfg, tmp_path):
    path = save_layout(community_model(scale=2), tmp_path / "2x_model.pth", "params")
    write_images(tmp_path / "hr", 4)
    cfg = make_cfg(FAST[:6] + ["net=pretrained", f"net.weights={path}", "scale=2", "data=folder", f"data.train_dir={tmp_path / 'hr'}",
                    "trainer.max_steps=4", "trainer.val_check_interval=2", "data.batch_size=2", "data.patch_size=16"], fast=False, run_dir=tmp_path / "run")
    metrics = train(cfg)
    assert metrics["train/steps"] == 4
    path.unlink()  # the run's checkpoint holds the architecture, not a pointer to the file
    net, info = load_net(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert info["net_config"]["_target_"].endswith("SpandrelNet") and info["net_config"]["arch"] == "Compact"
    assert info["scale"] == 2 and "weights" not in info["net_config"]


def test_pretrained_with_the_wrong_scale_is_one_line(make_cfg, tmp_path):
    from srlab.nets.spandrel_arch import pretrained

    path = save_layout(community_model(scale=2), tmp_path / "2x.pth", "bare")
    with pytest.raises(SrlabError, match=r"is a x2 Compact model but scale=4: pass scale=2"):
        pretrained(str(path), scale=4)


def test_bad_model_files_are_one_line(tmp_path):
    torch.save({"encoder.weight": torch.zeros(3, 3)}, tmp_path / "unknown.pth")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(SrlabError, match=r"spandrel .* recognises no architecture in its 1 tensors \(first key "
                                         r"'encoder.weight'\)"):
        load_net(tmp_path / "unknown.pth")
    with pytest.raises(SrlabError, match="broken.safetensors"):
        load_net(tmp_path / "broken.safetensors")


def srlab_checkpoint(net_cfg: dict, tmp_path, scale: int = 4):
    tmp_path.mkdir(parents=True, exist_ok=True)
    from srlab.inference.file_configs import NETS, build

    torch.manual_seed(0)
    net = build(net_cfg, NETS, "test")
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "srlab_config": {"scale": scale, "net": net_cfg}}, path)
    return net.eval(), path


@pytest.mark.parametrize("format", ["safetensors", "pth"])
def test_exports_of_spandrel_nets_and_rrdbnet_load_in_spandrel(format, tmp_path):
    cases = {"SPAN": {"_target_": "srlab.nets.spandrel_arch.SpandrelNet", "arch": "SPAN", "scale": 4, "num_in_ch": 3,
                      "num_out_ch": 3, "feature_channels": 8},
             "ESRGAN": {"_target_": "srlab.nets.rrdbnet.RRDBNet", "scale": 4, "channels": 8, "n_blocks": 1},
             # srlab's own modules, renamed into spandrel's classes (RCAN: its [0, 255] range unfolded)
             "SwinIR": {"_target_": "srlab.nets.swinir.SwinIR", "scale": 4, "embed_dim": 12, "depths": [2],
                        "heads": [2], "window": 4, "upsampler": "pixelshuffledirect"},
             "RCAN": {"_target_": "srlab.nets.rcan.RCAN", "scale": 4, "n_groups": 1, "n_blocks": 2, "channels": 16,
                      "reduction": 4}}
    for arch, cfg in cases.items():
        net, ckpt = srlab_checkpoint(cfg, tmp_path / arch)
        with torch.no_grad():  # away from init (RCAN's tail, SwinIR's heads), so a wrong map shows
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                    "srlab_config": {"scale": 4, "net": cfg}}, ckpt)
        out = export(ckpt, format=format)[0]
        assert out == ckpt.with_name(f"best.{format}")
        descriptor = spandrel.ModelLoader().load_from_file(out)
        assert descriptor.architecture.id == arch and descriptor.scale == 4
        x = torch.rand(1, 3, 12, 10)
        with torch.no_grad():
            assert (net(x) - descriptor.model.eval()(x)).abs().max() <= 1e-5


def test_nets_without_a_spandrel_counterpart_refuse_in_one_line(tmp_path):
    _, ckpt = srlab_checkpoint({"_target_": "srlab.nets.edsr.EDSR", "scale": 4, "n_blocks": 1, "channels": 8}, tmp_path)
    with pytest.raises(SrlabError, match="EDSR has no spandrel counterpart.*format=srlab .* or format=onnx"):
        export(ckpt, format="safetensors")
    # spandrel's SwinIR has 64 channels before its upsampler: other widths have no counterpart
    _, ckpt = srlab_checkpoint({"_target_": "srlab.nets.swinir.SwinIR", "scale": 2, "embed_dim": 12, "depths": [2],
                                "heads": [2], "window": 4, "upsample_channels": 16}, tmp_path / "swinir")
    with pytest.raises(SrlabError, match="SwinIR with these options has no spandrel counterpart .*format=srlab"):
        export(ckpt, format="pth")


def test_a_community_rcan_leaves_the_callers_image_alone(tmp_path):
    """spandrel's RCAN multiplies its input in place (x *= rgb_range); srlab clones it first."""
    from spandrel.architectures.RCAN import RCAN

    torch.manual_seed(0)
    model = RCAN(scale=2, n_resgroups=1, n_resblocks=1, n_feats=16, reduction=4, rgb_range=255).eval()
    torch.save({"params": model.state_dict()}, tmp_path / "rcan.pth")
    net, info = load_net(tmp_path / "rcan.pth")
    x = torch.rand(1, 3, 12, 12)
    kept = x.clone()
    with torch.no_grad():
        out = net(x)
    assert torch.equal(x, kept) and out.shape == (1, 3, 24, 24) and info["scale"] == 2
