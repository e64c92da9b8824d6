"""A NaN/Inf loss names its term and step, skips its update, and stops training after too
many in a row with the last good weights saved (srlab/training/nonfinite.py)."""
import logging
import math
from pathlib import Path

import pytest
import torch

from srlab.cli.train import build
from srlab.errors import SrlabError


def poison(model, bad_calls):
    """Make the loss mix return NaN (its first term) on the given calls (0-based)."""
    original, calls = model.loss.forward, {"n": 0}

    def forward(sr, hr):
        total, terms = original(sr, hr)
        n, calls["n"] = calls["n"], calls["n"] + 1
        if bad_calls(n):
            name = next(iter(terms))
            terms = {**terms, name: terms[name] * math.nan}
            total = total * math.nan
        return total, terms

    model.loss.forward = forward


def weights(model):
    return torch.cat([p.detach().flatten().clone() for p in model.net.parameters()])


def test_nan_loss_skips_the_update_and_names_term_and_step(make_cfg, caplog):
    cfg = make_cfg(["trainer.max_steps=6", "trainer.val_check_interval=100", "approach.max_nonfinite_skips=3"])
    datamodule, model, trainer, _ = build(cfg)
    poison(model, lambda n: n in (2, 3))  # training calls 2 and 3 (no validation before step 6)
    with caplog.at_level(logging.WARNING, logger="srlab.training.nonfinite"):
        trainer.fit(model, datamodule=datamodule)
    messages = [r.getMessage() for r in caplog.records if r.name == "srlab.training.nonfinite"]
    assert len(messages) == 2
    assert messages[0].startswith("non-finite loss at step 2 (mse=nan)") and "update skipped (1 in a row" in messages[0]
    assert messages[1].startswith("non-finite loss at step 3 (mse=nan)") and "(2 in a row" in messages[1]
    assert trainer.global_step == 6  # a skipped update still counts as a step (Adam saw no gradient)
    assert model.nonfinite.skipped == 2
    assert torch.isfinite(weights(model)).all()


def test_too_many_in_a_row_stops_with_one_line_and_keeps_last_good_weights(make_cfg):
    cfg = make_cfg(["trainer.max_steps=20", "trainer.val_check_interval=100", "approach.max_nonfinite_skips=2"])
    datamodule, model, trainer, _ = build(cfg)
    poison(model, lambda n: n >= 4)
    good = {}  # the weights after the last good step
    original_step = model.on_train_batch_end

    def on_train_batch_end(*a, **k):
        good["w"] = weights(model)
        return original_step(*a, **k)

    model.on_train_batch_end = on_train_batch_end
    with pytest.raises(SrlabError) as err:
        trainer.fit(model, datamodule=datamodule)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("non-finite loss at step 6 (mse=nan) for 3 steps in a row: training stopped")
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] == 6  # two skipped steps counted; the third one stopped
    saved = torch.cat([v.flatten() for k, v in state["state_dict"].items() if k.startswith("net.")])
    assert torch.isfinite(saved).all() and torch.equal(saved, good["w"])


def test_gan_skips_a_nan_critic_update_only(make_cfg, caplog):
    cfg = make_cfg(["experiment=gan", "trainer.max_steps=6", "trainer.val_check_interval=100",
                    "approach.critic.channels=8", "approach.critic.n_layers=1"])
    datamodule, model, trainer, _ = build(cfg)
    original, calls = model.adversarial.critic, {"n": 0}

    def critic_loss(real, fake):
        calls["n"] += 1
        loss = original(real, fake)
        return loss * math.nan if calls["n"] == 2 else loss

    model.adversarial.critic = critic_loss
    with caplog.at_level(logging.WARNING, logger="srlab.training.nonfinite"):
        trainer.fit(model, datamodule=datamodule)
    messages = [r.getMessage() for r in caplog.records if r.name == "srlab.training.nonfinite"]
    assert len(messages) == 1 and messages[0].startswith("non-finite critic loss at step") and "critic=nan" in messages[0]
    assert all(torch.isfinite(p).all() for p in model.critic.parameters())
