"""make bench's measurement (scripts/bench_abab.py, issue 23): srlab and the raw loop alternate
in windows inside one fit, and the raw loop does per step what srlab's config does."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench_abab import Alternate, RawLoop  # noqa: E402

from srlab.cli.train import build  # noqa: E402


class FakeRaw:
    """Records when it ran, by Lightning's step count."""

    def __init__(self, trainer_ref):
        self.trainer_ref, self.at, self.ema = trainer_ref, [], None

    def run(self, steps):
        self.at.append(self.trainer_ref[0].global_step)
        return 2.0


def test_windows_alternate_inside_one_fit(make_cfg):
    cfg = make_cfg(["trainer.max_steps=8", "trainer.val_check_interval=100"])
    datamodule, model, trainer, _ = build(cfg)
    ref = [trainer]
    timer = Alternate(FakeRaw(ref), warmup=2, steps=2, windows=3)
    trainer.callbacks.append(timer)
    trainer.fit(model, datamodule=datamodule)
    assert timer.raw.at == [4, 6, 8]  # a raw window after each srlab window: A B A B A B
    summary = timer.summary()
    assert summary["windows"] == 3 and summary["ratio_min"] <= summary["ratio"] <= summary["ratio_max"]


def test_raw_loop_degrades_on_the_device_and_keeps_an_ema_as_srlab_does(make_cfg):
    cfg = make_cfg(["approach.ema.decay=0.5"])
    datamodule, model, _, _ = build(cfg)
    datamodule.setup("fit")
    raw = RawLoop(model, datamodule, next(iter(datamodule.train_dataloader())), cfg, torch.device("cpu"))
    assert raw.on_device and raw.hr.dtype == torch.uint8 and raw.ema is not None
    before = [p.detach().clone() for p in model.net.parameters()]
    raw.run(1)
    after = [p.detach() for p in model.net.parameters()]
    for e, b, a in zip(raw.ema, before, after):
        assert torch.allclose(e, b + 0.5 * (a - b), atol=1e-6)
