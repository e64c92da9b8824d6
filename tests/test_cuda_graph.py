"""speed.cuda_graph (issue 23): the captured training step. Without CUDA its code path runs
eager and must equal Lightning's automatic step exactly; with CUDA, captured and eager runs
from one seed must agree."""
import pytest
import torch

from srlab.cli.train import train
from tests.conftest import compose_cfg

STEPS = ["trainer.max_steps=6", "trainer.val_check_interval=3", "trainer.log_every_n_steps=2", "approach.ema.decay=0.9", "lr_schedule=cosine"]


def weights(run_dir, name="last"):
    state = torch.load(run_dir / "checkpoints" / f"{name}.ckpt", map_location="cpu", weights_only=False)
    return state["state_dict"], state["global_step"]


def test_the_graphed_step_run_eager_equals_the_automatic_step(make_cfg, tmp_path):
    """Same seed, same batches: weights (net and EMA), step count and logged losses are equal."""
    runs = {}
    for switch in ("false", "true"):
        cfg = make_cfg([*STEPS, f"speed.cuda_graph={switch}", "logger=csv"], run_dir=tmp_path / switch)
        metrics = train(cfg)
        runs[switch] = (weights(tmp_path / switch), metrics,
                        (next((tmp_path / switch).rglob("metrics.csv"))).read_text())
    (eager, step_e), (graphed, step_g) = runs["false"][0], runs["true"][0]
    assert step_e == step_g == 6 and eager.keys() == graphed.keys()
    assert all(torch.equal(eager[k], graphed[k]) if torch.is_tensor(eager[k]) else eager[k] == graphed[k] for k in eager)
    assert runs["false"][1]["val/psnr_y"] == runs["true"][1]["val/psnr_y"]
    losses = [[line.split(",") for line in text.splitlines()] for _, _, text in (runs["false"], runs["true"])]
    col = [losses[0][0].index("train/loss"), losses[1][0].index("train/loss")]
    logged = [[row[c] for row in rows[1:] if row[c]] for rows, c in zip(losses, col)]
    assert logged[0] and logged[0] == logged[1]


def test_approaches_that_cannot_be_captured_run_eager_with_one_line(make_cfg, caplog):
    import logging

    from srlab.cli.train import build

    with caplog.at_level(logging.INFO):
        _, model, _, _ = build(make_cfg(["approach=vae", "net=cvae_unet", "speed.cuda_graph=true", "logger=none"],
                                         fast=False))
    assert model.graphed is None and model.automatic_optimization
    assert any("speed.cuda_graph: runs eager" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_captured_and_eager_training_agree_on_cuda(tmp_path):
    """30 steps captured and 30 eager from the same seed: weights within 1e-4 relative, and the
    logged loss too."""
    common = ["experiment=unet", "trainer=gpu", "trainer.precision=32-true", "trainer.max_steps=30",
              "trainer.val_check_interval=30", "logger=none", "trainer.max_time=null", "data.batch_size=8",
              "trainer.deterministic=false"]
    out = {}
    for switch in ("false", "true"):
        cfg = compose_cfg("train", common + [f"speed.cuda_graph={switch}"], tmp_path / switch)
        out[switch] = (train(cfg), weights(tmp_path / switch)[0])
    a, b = out["false"][1], out["true"][1]
    for k in a:
        if torch.is_tensor(a[k]) and a[k].is_floating_point():
            assert (a[k] - b[k]).norm() <= 1e-4 * a[k].norm() + 1e-6, k
    assert out["false"][0]["val/loss"] == pytest.approx(out["true"][0]["val/loss"], rel=1e-4)
