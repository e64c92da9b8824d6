"""Loggers write where promised; DDP (2 CPU processes, gloo) gives exactly the 1-process metrics."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from srlab.cli.train import train
from tests.conftest import write_images

BICUBIC_RUN = ["net=bicubic", "logger=none", "trainer.accelerator=cpu", "data=folder", "data.num_workers=0",
               "data.patch_size=32", "callbacks.progress_bar=null"]


def cli(args, tmp_path, name, timeout=300):
    out = tmp_path / name
    res = subprocess.run([sys.executable, "-m", "srlab.cli.train", *args, f"hydra.run.dir={out}"],
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text()), out


def test_wandb_is_offline_without_credentials_and_lives_in_the_run_dir(image_folder, make_cfg, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent")
    folder = image_folder(n=4)
    cfg = make_cfg(["debug=fdr", "logger=wandb", "data=folder", f"data.train_dir={folder}"])
    assert cfg.logger.wandb.offline is True
    train(cfg)
    runs = list(Path(cfg.paths.output_dir).glob("wandb/offline-run-*"))
    assert runs, "an offline W&B run directory should be inside the run directory"


def test_csv_logger_records_every_loss_term_and_the_bicubic_metrics(image_folder, make_cfg):
    folder = image_folder(n=4)
    cfg = make_cfg(["logger=csv", "loss=mse_ssim", "data=folder", f"data.train_dir={folder}",
                    "trainer.max_steps=4", "trainer.val_check_interval=4", "trainer.log_every_n_steps=1"])
    train(cfg)
    header = (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").read_text().splitlines()[0]
    for key in ("train/loss", "train/loss/mse", "train/loss/ssim", "train/loss/weighted/ssim", "val/loss/ssim",
                "val/psnr_y", "val/bicubic_psnr_y", "val/bicubic_ssim_y", "lr-Adam"):
        assert key in header.split(","), key


@pytest.mark.slow  # 10-21 s of subprocesses: make test-full (make test stays under 6 min)
def test_ddp_validation_equals_single_process_with_an_odd_number_of_images(tmp_path):
    write_images(tmp_path / "train", 2, size=(48, 48), seed=0)
    write_images(tmp_path / "val", 3, size=(52, 44), seed=1)  # 3 images on 2 ranks: no padding allowed
    data = [f"data.train_dir={tmp_path / 'train'}", f"data.val_dir={tmp_path / 'val'}", "scale=2"]
    single, _ = cli(BICUBIC_RUN + data, tmp_path, "single")
    ddp, _ = cli(BICUBIC_RUN + data + ["trainer=ddp_sim", "trainer.max_time=null"], tmp_path, "ddp")
    for key in ("val/bicubic_psnr_y", "val/bicubic_ssim_y", "val/psnr_rgb"):
        assert ddp[key] == pytest.approx(single[key], abs=1e-4), key


@pytest.mark.slow
def test_ddp_training_runs_and_writes_the_run_dir(tmp_path):
    write_images(tmp_path / "train", 4, size=(64, 64), seed=0)
    metrics, out = cli(["trainer=ddp_sim", "trainer.max_time=null", "logger=none", "data=folder",
                        f"data.train_dir={tmp_path / 'train'}", "data.num_workers=0", "data.patch_size=32",
                        "data.batch_size=4", "net.channels=8", "trainer.max_steps=6", "trainer.val_check_interval=6",
                        "data.val_fraction=0.5", "callbacks.progress_bar=null"], tmp_path, "ddp_fit")
    assert metrics["train/steps"] == 6
    assert (out / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_ddp_with_fewer_val_images_than_processes_is_one_line(tmp_path):
    write_images(tmp_path / "train", 4, size=(64, 64), seed=0)  # val_fraction 0.1 -> 1 val image, 2 ranks
    res = subprocess.run([sys.executable, "-m", "srlab.cli.train", "trainer=ddp_sim", "trainer.max_time=null",
                          "logger=none", "data=folder", f"data.train_dir={tmp_path / 'train'}", "data.num_workers=0",
                          "data.patch_size=32", "net.channels=8", "trainer.max_steps=2",
                          f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=240)
    assert res.returncode != 0
    assert "error: 1 val image(s) for 2 processes" in res.stderr, res.stderr[-2000:]
