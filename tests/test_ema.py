"""EMA of the weights: the average is what is validated, saved, resumed and loaded."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from srlab.cli.entry import _find_user_error
from srlab.cli.train import build, train
from srlab.errors import SrlabError
from srlab.inference.checkpoint import load_net
from srlab.training.ema import EMA


def test_ema_math():
    net = nn.Linear(2, 1, bias=False)
    ema = EMA(net, decay=0.9)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update(net)  # first update: a copy
    assert torch.equal(ema.module.weight, net.weight) and ema.updates == 1
    with torch.no_grad():
        net.weight.fill_(3.0)
    ema.update(net)  # decay at 1 update: min(0.9, 2/11)
    d = 2 / 11
    assert torch.allclose(ema.module.weight, torch.full_like(net.weight, d * 1 + (1 - d) * 3))
    assert ema.decay_at(10_000) == 0.9 and not ema.module.weight.requires_grad
    state = ema.state_dict()
    other = EMA(net, decay=0.9)
    other.load_state_dict(state)
    assert other.updates == 2 and torch.equal(other.module.weight, ema.module.weight)


def test_ema_run_validates_saves_and_resumes_the_average(make_cfg, tmp_path):
    overrides = ["approach.ema.decay=0.99", "trainer.max_steps=6", "trainer.val_check_interval=3"]
    cfg = make_cfg(overrides, run_dir=tmp_path / "a")
    datamodule, model, trainer, _ = build(cfg)
    trainer.fit(model, datamodule=datamodule)
    assert model.ema.updates == 6
    assert not torch.equal(model.ema.module.head.weight, model.net.head.weight)  # it averages
    assert model.eval_net is model.ema.module
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    net, _ = load_net(last)  # eval, upscale and export load the averaged weights
    ema_sd = {k: v for k, v in model.ema.module.state_dict().items()}
    assert all(torch.equal(net.state_dict()[k], ema_sd[k].cpu()) for k in ema_sd)
    # resume: the average carries on from the checkpoint, not from a fresh copy
    cfg2 = make_cfg(overrides[:1] + ["trainer.max_steps=8", "trainer.val_check_interval=4",
                                     f"ckpt_path={last}"], run_dir=tmp_path / "b")
    datamodule, model2, trainer2, _ = build(cfg2)
    trainer2.fit(model2, datamodule=datamodule, ckpt_path=str(last))
    assert trainer2.global_step == 8 and model2.ema.updates == 8


def test_ema_off_by_default_and_bad_decay(make_cfg):
    _, model, _, _ = build(make_cfg([]))
    assert model.ema is None and model.eval_net is model.net
    with pytest.raises(Exception) as e:  # Hydra wraps it; srlab-train prints the SrlabError line
        train(make_cfg(["approach.ema.decay=1.5"]))
    user = _find_user_error(e.value)
    assert isinstance(user, SrlabError) and "approach.ema.decay=1.5" in str(user)
