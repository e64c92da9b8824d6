"""speed.cuda_graph on CUDA (issue 29): what `trainer=gpu` users run, captured for real. Skipped
without a GPU; `bash scripts/gpu_check.sh` runs them (and tests/test_cuda_graph.py's CPU side)."""
import inspect
import logging
import math

import pytest
import torch

from srlab.cli.train import build
from srlab.errors import SrlabError
from srlab.training.cuda_graph import GraphedStep
from tests.conftest import compose_cfg
from tests.test_cuda_graph import finite_state, poison_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

GPU = ["experiment=unet", "trainer=gpu", "trainer.max_time=null", "logger=none", "data.batch_size=8",
       "data.patch_size=64", "data.val_crop=64", "trainer.log_every_n_steps=5", "trainer.val_check_interval=10"]


def gpu_fit(tmp_path, name, *overrides, ckpt=None):
    """Build and fit as srlab-train does; -> (model, trainer) for a look inside."""
    cfg = compose_cfg("train", [*GPU, *overrides], tmp_path / name)
    datamodule, model, trainer, _ = build(cfg)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
    return model, trainer


def captured(model) -> bool:
    return model.graphed is not None and model.graphed.graph is not None


def close(a: dict, b: dict, rel: float) -> None:
    for k in a:
        if torch.is_tensor(a[k]) and a[k].is_floating_point():
            assert (a[k].float() - b[k].float()).norm() <= rel * a[k].float().norm() + 1e-6, k


@pytest.mark.parametrize("recipe,rel", [(["trainer.precision=32-true", "trainer.deterministic=false"], 1e-4),
                                        (["approach.ema.decay=0.9"], 2e-2)], ids=["fp32", "bf16-ema-val"])
def test_captured_and_eager_training_agree_on_cuda(tmp_path, recipe, rel):
    """30 steps captured and 30 eager from the same seed (bf16: with EMA and validation every
    10 steps inside the run): weights, EMA and the validation loss agree."""
    out = {}
    for switch in ("false", "true"):
        model, trainer = gpu_fit(tmp_path, switch, "trainer.max_steps=30", *recipe, f"speed.cuda_graph={switch}")
        out[switch] = (model, {k: v.detach().cpu() for k, v in model.state_dict().items()},
                       float(trainer.callback_metrics["val/loss"]))
    assert captured(out["true"][0]) and not captured(out["false"][0])
    close(out["false"][1], out["true"][1], rel)
    assert out["false"][2] == pytest.approx(out["true"][2], rel=max(rel, 1e-4))


def test_capture_beside_four_pinning_loader_workers_three_times_on_cuda(tmp_path):
    """thread_local capture: the pin-memory thread allocating meanwhile cannot invalidate it."""
    for run in range(3):
        model, trainer = gpu_fit(tmp_path, f"run{run}", "trainer.max_steps=12", "data.num_workers=4",
                                 "data.pin_memory=true")
        assert captured(model) and trainer.global_step == 12


def test_a_net_that_copies_from_the_host_falls_back_on_cuda(tmp_path, monkeypatch, caplog):
    """A forward with a host copy fails its real capture: training goes on eager, leaving float
    learning rates and a non-capturable optimizer; spandrel's HAT is not even tried."""
    from srlab.nets.unet import UNet

    original = UNet.forward
    monkeypatch.setattr(UNet, "forward", lambda self, x: original(self, x) + torch.zeros(1).to(x.device))
    with caplog.at_level(logging.WARNING, logger="srlab.training.cuda_graph"):
        model, trainer = gpu_fit(tmp_path, "unet", "trainer.max_steps=12", "speed.cuda_graph=true")
        monkeypatch.setattr(UNet, "forward", original)
        hat = ["net=hat", "net.embed_dim=12", "net.depths=[1]", "net.num_heads=[1]", "net.window_size=4",
               "net.img_size=16", "net.compress_ratio=3", "net.squeeze_factor=2", "data.patch_size=32"]
        hat_model, hat_trainer = gpu_fit(tmp_path, "hat", "trainer.max_steps=6", "speed.cuda_graph=true", *hat)
    lines = [r.getMessage() for r in caplog.records if r.name == "srlab.training.cuda_graph"]
    assert len(lines) == 2 and "the capture failed" in lines[0] and "net HAT copies a mask" in lines[1]
    assert trainer.global_step == 12 and hat_trainer.global_step == 6 and not captured(model)
    groups = trainer.optimizers[0].param_groups
    assert all(type(g["lr"]) is float and g["capturable"] is False for g in groups)
    assert math.isfinite(float(trainer.callback_metrics["val/loss"]))


def test_resume_across_the_switch_on_cuda(tmp_path):
    _, trainer = gpu_fit(tmp_path, "eager", "trainer.max_steps=10", "speed.cuda_graph=false")
    eager_ckpt = str(tmp_path / "eager" / "checkpoints" / "last.ckpt")
    model, trainer = gpu_fit(tmp_path, "graph", "trainer.max_steps=20", "speed.cuda_graph=true", ckpt=eager_ckpt)
    assert captured(model) and trainer.optimizers[0].param_groups[0]["capturable"] is True
    graph_ckpt = str(tmp_path / "graph" / "checkpoints" / "last.ckpt")
    model, trainer = gpu_fit(tmp_path, "back", "trainer.max_steps=30", "speed.cuda_graph=false", ckpt=graph_ckpt)
    optimizer = trainer.optimizers[0]
    assert trainer.global_step == 30 and optimizer.param_groups[0]["capturable"] is False
    assert all(s["step"].device.type == "cpu" for s in optimizer.state.values())


def test_compile_with_the_capture_on_cuda(tmp_path):
    model, trainer = gpu_fit(tmp_path, "compiled", "trainer.max_steps=10", "speed.cuda_graph=true",
                             "speed.compile=true")
    assert captured(model) and math.isfinite(float(trainer.callback_metrics["val/loss"]))


def test_graph_inputs_stay_alive_through_validation_on_cuda(tmp_path, monkeypatch):
    """check_input_liveness (where torch has it) raises at a replay whose inputs were freed."""
    if "check_input_liveness" not in inspect.signature(torch.cuda.graph).parameters:
        pytest.skip("this torch has no check_input_liveness")
    monkeypatch.setattr(GraphedStep, "check_liveness", True)
    model, trainer = gpu_fit(tmp_path, "live", "trainer.max_steps=20", "trainer.val_check_interval=5",
                             "speed.cuda_graph=true", "approach.ema.decay=0.9")
    assert captured(model) and trainer.global_step == 20


def test_a_nan_under_the_real_graph_keeps_last_ckpt_finite_on_cuda(tmp_path):
    cfg = compose_cfg("train", [*GPU, "trainer.max_steps=8", "trainer.val_check_interval=4",
                                "trainer.log_every_n_steps=4", "speed.cuda_graph=true"], tmp_path / "nan")
    datamodule, model, trainer, _ = build(cfg)
    poison_step(model, 5)
    with pytest.raises(SrlabError, match=r"between steps 5 and 8.*last\.ckpt \(step 4\)"):
        trainer.fit(model, datamodule=datamodule)
    state = torch.load(tmp_path / "nan" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert captured(model) and state["global_step"] == 4 and finite_state(state)
