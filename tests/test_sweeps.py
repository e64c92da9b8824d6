"""Sweeps from the shell: Hydra multirun and the Optuna search write one run directory per trial."""
import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import write_images

TINY = ["experiment=unet", "data=folder", "data.num_workers=0", "data.batch_size=4", "data.patch_size=32", "net.depth=1",
        "net.space_to_depth=1", "trainer.max_steps=6", "trainer.val_check_interval=6", "trainer.max_time=null",
        "logger=none"]


def sweep(tmp_path, *overrides):
    write_images(tmp_path / "hr", 4, size=(64, 64))
    out = tmp_path / "sweep"
    res = subprocess.run([sys.executable, "-m", "srlab.cli.train", "-m", *TINY, f"data.train_dir={tmp_path / 'hr'}",
                          f"hydra.sweep.dir={out}", *overrides], capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    trials = sorted(p for p in out.iterdir() if p.is_dir() and p.name.isdigit())
    return out, {int(p.name): json.loads((p / "metrics.json").read_text()) for p in trials}


@pytest.mark.slow  # 10-21 s of subprocesses: make test-full (make test stays under 6 min)
def test_optuna_search_runs_trials_and_reports_the_best(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    out, trials = sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=3",
                        "hydra.sweeper.sampler.n_startup_trials=2")
    assert sorted(trials) == [0, 1, 2]
    best = yaml.safe_load((out / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(m["val/psnr_y"] for m in trials.values()), abs=1e-4)
    assert set(best["best_params"]) == {"approach.optimizer.lr", "net.channels", "loss"}
    assert 1e-4 <= best["best_params"]["approach.optimizer.lr"] <= 3e-3
    # W&B run names of the trials are made of the keys the study varies (srlab/runs/names.py)
    from omegaconf import OmegaConf

    from srlab.runs.names import swept_keys

    job_hydra = OmegaConf.load(out / "0" / ".hydra" / "hydra.yaml").hydra
    assert swept_keys(out, job_hydra) == {"approach.optimizer.lr", "net.channels", "loss"}


def test_multirun_grid_gives_one_run_per_combination(tmp_path):
    _, trials = sweep(tmp_path, "loss=mse,l1", "net.channels=8")
    assert sorted(trials) == [0, 1]
    assert all(m["train/steps"] == 6 for m in trials.values())
