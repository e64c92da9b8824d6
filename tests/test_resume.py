"""Exact resume: a run interrupted at step 8 and resumed to 16 ends where the uninterrupted
16-step run ends (same val PSNR_Y to 1e-4 dB): weights, optimizer, LR schedule, EMA, RNG
states, the device-path degradation's generator and the position in the epoch all restored.
With loader workers it is exact too: every patch draws from its own (seed, epoch, index)."""
from pathlib import Path

import pytest
import pytorch_lightning as pl

from srlab.cli.train import build, train


class CrashAt(pl.Callback):
    """Kills training (an exception) as step `step` is about to start."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


CASES = [  # two in the fast suite; the others (~3 s each on a quiet machine) in make test-full
    pytest.param(["approach.ema.decay=0.9"], id="unet-ema-cosine"),
    pytest.param(["data.num_workers=1", "degradation=crapify", "data.degrade_on=loader"], id="loader-workers"),
    # speed.cuda_graph's step (manual optimization; eager on the CPU) resumes exactly too (issue 23)
    pytest.param(["approach.ema.decay=0.9", "speed.cuda_graph=true"], id="graphed-step"),
    pytest.param(["degradation=crapify"], id="crapify-on-device", marks=pytest.mark.slow),
    pytest.param(["degradation=crapify", "data.degrade_on=loader"], id="crapify-in-loader", marks=pytest.mark.slow),
    pytest.param(["experiment=vae", "net.channels=8", "net.depth=2", "net.space_to_depth=1"], id="vae",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("extra", CASES)
def test_resume_mid_epoch_is_exact(extra, make_cfg, tmp_path):
    # val on 64 px crops: the check is the equality, not the value
    common = ["trainer.max_steps=16", "trainer.val_check_interval=8", "data.val_crop=64", *extra]
    straight = train(make_cfg(common, run_dir=tmp_path / "straight"))

    cfg = make_cfg(common, run_dir=tmp_path / "crashed")
    datamodule, model, trainer, _ = build(cfg, extra_callbacks=(CrashAt(8),))
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.fit(model, datamodule=datamodule)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"

    # resumed in its own run directory (as a requeued job is): best.ckpt keeps its history
    resumed = train(make_cfg(common + [f"ckpt_path={last}"], run_dir=tmp_path / "crashed"))
    assert resumed["train/steps"] == straight["train/steps"] == 16
    assert abs(resumed["val/psnr_y"] - straight["val/psnr_y"]) <= 1e-4, (resumed["val/psnr_y"], straight["val/psnr_y"])
    assert resumed["val/loss"] == pytest.approx(straight["val/loss"], rel=1e-5)
