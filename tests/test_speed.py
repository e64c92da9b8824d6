"""Per-step costs that vanish on a CPU but dominate on a GPU: checked by behaviour here.

- training values are logged only on the steps that reach a logger (no per-step Python, no
  per-step read-back from the GPU);
- the progress bar updates at most every `min_interval_s`;
- the speed switches (channels_last, compile) keep outputs and checkpoint keys unchanged.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from srlab.approaches.base import SRApproach
from srlab.cli.train import build
from srlab.errors import SrlabError
from srlab.nets.unet import UNet
from srlab.training.callbacks import ProgressBar
from srlab.training.speed import apply_speed_switches, resolve


def test_train_terms_logged_only_on_logging_steps(make_cfg, monkeypatch):
    logged = []
    original = SRApproach.log

    def spy(self, name, value, *a, **kw):
        if name.startswith("train/"):
            logged.append((self.global_step, name))
        return original(self, name, value, *a, **kw)

    monkeypatch.setattr(SRApproach, "log", spy)
    cfg = make_cfg(["trainer.max_steps=10", "trainer.log_every_n_steps=5", "logger=csv",
                    "trainer.val_check_interval=10", "loss=mse_ssim"])
    datamodule, model, trainer, _ = build(cfg)
    trainer.fit(model, datamodule=datamodule)
    steps = sorted({s for s, _ in logged})
    assert steps == [4, 9]  # Lightning writes steps 5 and 10 (1-based): nothing logged in between
    assert len(logged) == 2 * (1 + 2 * 2)  # total + (value, weighted) per term, mse and ssim
    csv = (cfg.paths.output_dir + "/csv/metrics.csv")
    header = open(csv).readline()
    assert "train/loss/ssim" in header and "train/loss/weighted/mse" in header


def test_progress_bar_updates_at_most_every_interval(monkeypatch):
    bar = ProgressBar(min_interval_s=0.5)
    calls, clock = [], [100.0]
    monkeypatch.setattr("pytorch_lightning.callbacks.RichProgressBar.on_train_batch_end",
                        lambda self, *a: calls.append(a[-1]))
    monkeypatch.setattr("srlab.training.callbacks.time.monotonic", lambda: clock[0])
    monkeypatch.setattr(ProgressBar, "total_train_batches", property(lambda self: 1000))
    for i in range(40):  # 40 batches of 1/16 s (exact in binary): one update per 8, the first at once
        bar.on_train_batch_end(None, None, None, None, i)
        clock[0] += 0.0625
    assert calls == [0, 8, 16, 24, 32]
    bar.on_train_batch_end(None, None, None, None, 999)  # the epoch's last batch always shows
    assert calls[-1] == 999


def test_channels_last_keeps_outputs_and_keys():
    torch.manual_seed(0)
    a = UNet(scale=2, channels=8, depth=2, space_to_depth=1)
    b = UNet(scale=2, channels=8, depth=2, space_to_depth=1)
    b.load_state_dict(a.state_dict())
    apply_speed_switches(b, channels_last=True)
    seen = []  # hooks run in registration order: this one sees what the net's forward gets
    b.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    conv = next(m for m in b.modules() if isinstance(m, nn.Conv2d))
    x = torch.rand(2, 3, 12, 10)
    assert torch.allclose(a(x), b(x), atol=1e-5) and seen == [True]
    assert list(a.state_dict()) == list(b.state_dict())
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_compile_switch_keeps_checkpoint_keys(make_cfg, monkeypatch):
    compiled = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, *a, **kw: compiled.append(type(self).__name__))
    _, model, _, _ = build(make_cfg(["speed.compile=true", "speed.channels_last=false"]))
    assert compiled == ["UNet"]
    assert all(k.startswith("net.") and "_orig_mod" not in k for k in model.state_dict() if k.startswith("net"))
    _, _, _, _ = build(make_cfg(["speed.compile=gpu"]))  # CPU run: "gpu" means off
    assert compiled == ["UNet"]


def test_speed_switch_values():
    assert resolve(True, False) and not resolve(False, True)
    assert resolve("gpu", True) and not resolve("gpu", False)
    with pytest.raises(SrlabError, match="true, false or gpu"):
        resolve("yes", True)
