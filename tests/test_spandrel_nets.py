"""Every SR architecture of spandrel's registry trains in srlab and exports a file spandrel
detects as the same architecture and scale, with the same output (srlab/nets/spandrel_arch.py).

Each config of configs/net/ that builds spandrel's class is built tiny here (TINY), takes two
optimizer steps, and its bare state dict goes through safetensors into spandrel's own loader.
A registry entry that no config covers (a future spandrel's new SR architecture) fails."""
import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from srlab.config.compose import CONFIG_DIR
from srlab.errors import SrlabError

spandrel = pytest.importorskip("spandrel")
from srlab.inference.interchange import interchange_state_dict  # noqa: E402
from srlab.nets.spandrel_arch import SpandrelNet  # noqa: E402

NET_DIR = CONFIG_DIR / "net"
CONFIGS = {p.stem: yaml.safe_load(p.read_text()) for p in sorted(NET_DIR.glob("*.yaml"))}
SPANDREL = {name: cfg for name, cfg in CONFIGS.items() if str(cfg.get("_target_", "")).endswith("SpandrelNet")}
# registry ids srlab trains with its own module (their export mapping is issue 21's item 3)
OWN_NETS = {"ESRGAN": "rrdbnet", "SwinIR": "swinir", "RCAN": "rcan"}
# spandrel's non-SR architectures: restoration at scale 1, faces, inpainting
NOT_SR = {"GFPGAN", "RestoreFormer", "LaMa", "SCUNet", "FBCNN", "Uformer", "KBNet", "SAFMNBCIE", "FFTformer",
          "NAFNet", "MixDehazeNet", "DRUNet", "DnCNN", "IPT", "RetinexFormer", "HVICIDNet"}
# tiny hyper-parameters per config (the architecture stays; widths and depths shrink)
WIN = dict(embed_dim=12, num_heads=[2], img_size=16)
TINY = {
    "compact": dict(num_feat=8, num_conv=2), "span": dict(feature_channels=8),
    "realplksr": dict(dim=16, n_blocks=2, kernel_size=7), "plksr": dict(dim=16, n_blocks=2, kernel_size=7),
    "omnisr": dict(num_feat=16, res_num=1), "safmn": dict(dim=8, n_blocks=1),
    "hat_s": dict(WIN, depths=[1], window_size=4, compress_ratio=3, squeeze_factor=3, num_feat=8),
    "hat": dict(WIN, depths=[1], window_size=4, compress_ratio=3, squeeze_factor=3, num_feat=8),
    "dat_light": dict(depth=[2], img_size=16), "dat": dict(embed_dim=24, depth=[1], num_heads=[2], img_size=16),
    # ATD is detected only at its presets: the ATD class is tested at the light preset's size
    "atd_light": {}, "atd": {k: v for k, v in yaml.safe_load((NET_DIR / "atd_light.yaml").read_text()).items()
                              if k not in ("_target_", "scale", "arch")},
    "swin2sr": dict(WIN, depths=[1], window_size=4),
    "rgt_s": dict(WIN, depth=[1], split_size=[2, 4]), "rgt": dict(WIN, depth=[1], split_size=[2, 4]),
    "drct": dict(WIN, depths=[1], window_size=4),
    "craft": dict(embed_dim=12, num_heads=[2], depths=[1]),
    "ditn": dict(dim=12, ITL_blocks=1, SAL_blocks=1), "dctlsa": {},
    "seemore": dict(embedding_dim=8, num_layers=1, num_experts=2), "mosr": dict(n_block=1, dim=16),
    "moesr": dict(dim=16, n_blocks=1, n_block=1, upsample_dim=16),
    "fdat": dict(embed_dim=12, num_groups=1, depth_per_group=1, num_heads=2, window_size=4),
    "grl": dict(embed_dim=24, depths=[1], num_heads_window=[2], num_heads_stripe=[2]),
    "swiftsrgan": dict(num_channels=8, num_blocks=1), "realcugan": {},
    "mmrealsr": dict(num_feat=8, num_block=1),
    "aurasr": dict(dim=8, style_network={"dim_in": 16, "dim_out": 64, "depth": 1}, attn_depths=[1] * 5,
                   mid_attn_depth=1, self_attn_dim_head=8),  # spandrel reads its scale as dim_out // dim_in
}
SLOW = {"aurasr"}  # 8.9 M parameters even shrunk (about 600 M at its preset): make test-full


def test_every_sr_architecture_of_the_registry_has_a_config():
    covered = {cfg["arch"].partition(".")[0] for cfg in SPANDREL.values()} | set(OWN_NETS)
    registry = {support.architecture.id for support in spandrel.MAIN_REGISTRY}
    missing = sorted(registry - covered - NOT_SR)
    assert not missing, f"spandrel SR architectures without a configs/net/*.yaml: {missing}"
    assert set(TINY) | SLOW == set(SPANDREL), "every spandrel config needs a tiny test preset"


def build(name: str, scale: int = 4, **overrides) -> SpandrelNet:
    cfg = {k: v for k, v in SPANDREL[name].items() if k not in ("_target_", "scale")}
    cfg.update(TINY[name], **overrides)
    return SpandrelNet(scale=scale, **cfg)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in SPANDREL])
def test_trains_and_exports_what_spandrel_detects(name, tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = build(name)
    side = max(16, net.minimum)
    lr = torch.rand(2, 3, side, side)
    kept = lr.clone()
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    before = [p.detach().clone() for p in net.parameters() if p.requires_grad]
    net.train()
    for _ in range(2):
        loss = (net(lr) - torch.rand(2, 3, side * 4, side * 4)).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss) and torch.equal(lr, kept), "the caller's LR must stay as it was"
    assert any(not torch.equal(b, p) for b, p in zip(before, (p for p in net.parameters() if p.requires_grad)))

    net.eval()
    path = tmp_path / f"{name}.safetensors"
    state_dict, _, dropped = interchange_state_dict(net, 4)  # srlab-export format=safetensors
    assert set(state_dict) | set(dropped) == set(net.model.state_dict())
    save_file(state_dict, str(path))
    descriptor = spandrel.ModelLoader().load_from_file(path)
    assert descriptor.architecture.id == SPANDREL[name]["arch"].partition(".")[0]
    assert descriptor.scale == 4
    x = torch.rand(1, 3, side, side + 4 if net.multiple == 1 else side)
    with torch.no_grad(), torch.random.fork_rng():  # AuraSR injects noise: one draw for both
        torch.manual_seed(1)
        ours = net(x)
        torch.manual_seed(1)
        theirs = descriptor.model.eval()(x)
    theirs = theirs[0] if isinstance(theirs, tuple) else theirs
    assert ours.shape == theirs.shape == (1, 3, x.shape[-2] * 4, x.shape[-1] * 4)
    assert (ours - theirs).abs().max() <= 1e-5


def test_pads_to_the_size_the_net_needs():
    net = build("realcugan").eval()  # needs >= 32 px
    with torch.no_grad():
        out = net(torch.rand(1, 3, 10, 13))
    assert out.shape == (1, 3, 40, 52)


def test_batch_of_one_is_one_line_for_batchnorm_nets():
    net = build("dat_light").train()
    with pytest.raises(SrlabError, match="cannot train on batches of 1: use data.batch_size >= 2"):
        net(torch.rand(1, 3, 16, 16))


def test_unknown_hyperparameter_and_architecture_are_one_line():
    with pytest.raises(SrlabError, match="net.arch=SPAN: .*unexpected keyword argument 'colour'"):
        SpandrelNet("SPAN", scale=4, num_in_ch=3, num_out_ch=3, colour=3)
    with pytest.raises(SrlabError, match="net.arch=NoSuchNet: spandrel has no such architecture class"):
        SpandrelNet("NoSuchNet")


def test_schema_checks_spandrel_keys_before_building(make_cfg, tmp_path):
    from srlab.config.compose import validate_train_config

    with pytest.raises(SrlabError, match=r"net.feature_chanels: SpandrelNet \(SPAN\) has no parameter "
                                         r"'feature_chanels'; did you mean feature_channels\?"):
        validate_train_config(make_cfg(["net=span", "+net.feature_chanels=8"], fast=False))


def test_spandrel_net_trains_as_gan_generator_with_ema_in_bf16(make_cfg, tmp_path):
    """The real srlab-train path: GAN approach, EMA, bf16 autocast, a spandrel generator."""
    from srlab.cli.train import train
    from srlab.inference.checkpoint import load_net
    from tests.conftest import FAST, write_images

    write_images(tmp_path / "hr", 4)
    cfg = make_cfg(FAST[:6] + ["experiment=gan", "net=span", "net.feature_channels=8", "approach.ema.decay=0.9",
                               "trainer.precision=bf16-mixed", "data=folder", f"data.train_dir={tmp_path / 'hr'}",
                               "trainer.max_steps=4", "trainer.val_check_interval=2", "data.batch_size=2",
                               "data.patch_size=32", "scale=2"], fast=False, run_dir=tmp_path / "run")
    metrics = train(cfg)
    assert metrics["train/steps"] == 4 and np.isfinite(metrics["val/psnr_y"])
    net, info = load_net(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert info["scale"] == 2 and type(net.model).__name__ == "SPAN"


@pytest.mark.slow  # two DDP processes on the CPU: ~20 s
def test_ddp_trains_span_without_find_unused_parameters(tmp_path):
    """SPAN's 40 inference-only convs never get a gradient; frozen at build, plain DDP trains
    it (with net.freeze_unused=false DDP stops: 'parameters that were not used')."""
    import subprocess
    import sys

    from tests.conftest import write_images

    write_images(tmp_path / "hr", 4)
    args = ["experiment=unet", "net=span", "net.feature_channels=8", "trainer=ddp_sim", "trainer.max_steps=4",
            "trainer.val_check_interval=2", "trainer.max_time=null", "logger=none", "data=folder",
            f"data.train_dir={tmp_path / 'hr'}", "data.val_fraction=0.5", "data.batch_size=2", "data.patch_size=32",
            "data.num_workers=0", "scale=2", f"hydra.run.dir={tmp_path / 'run'}"]
    res = subprocess.run([sys.executable, "-m", "srlab.cli.train", *args], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
