"""End to end: srlab-train fills the run directory, beats bicubic, resumes, srlab-eval measures it."""
import json
import subprocess
import sys

import pytest
import torch

from srlab.cli.train import train
from tests.conftest import FAST, compose_cfg, write_images

REAL_RUN = FAST + [
    "scale=2", "data.patch_size=32", "data.batch_size=8", "net.channels=16", "net.depth=2",
    "trainer.max_steps=150", "trainer.val_check_interval=50", "approach.optimizer.lr=2e-3",
    "callbacks.sample_panels.n_images=2", "callbacks.progress_bar=null",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short real training on tiny synthetic data, shared by the tests below."""
    root = tmp_path_factory.mktemp("trained")
    write_images(root / "train", 8, size=(64, 64), seed=0)
    write_images(root / "val", 3, size=(64, 48), seed=1)
    run_dir = root / "run"
    cfg = compose_cfg("train", REAL_RUN + ["data=folder", f"data.train_dir={root / 'train'}",
                                           f"data.val_dir={root / 'val'}"], run_dir)
    metrics = train(cfg)
    return run_dir, metrics, root


def test_short_training_beats_bicubic(trained):
    _, metrics, _ = trained
    assert metrics["train/steps"] == 150
    assert metrics["val/psnr_y"] > metrics["val/bicubic_psnr_y"] + 0.3, metrics
    assert metrics["val/ssim_y"] > metrics["val/bicubic_ssim_y"], metrics


def test_run_directory_contract(trained):
    run_dir, metrics, _ = trained
    saved = json.loads((run_dir / "metrics.json").read_text())
    for key in ("val/psnr_y", "val/ssim_y", "val/psnr_rgb", "val/bicubic_psnr_y", "val/bicubic_ssim_y",
                "train/steps", "train/seconds"):
        assert isinstance(saved[key], (int, float)), key
    assert saved["val/psnr_y"] == pytest.approx(metrics["val/psnr_y"])
    assert (run_dir / "checkpoints" / "best.ckpt").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    panels = sorted((run_dir / "samples").glob("*.png"))
    assert len(panels) >= 2
    from PIL import Image

    assert Image.open(panels[0]).size == (4 * 48, 64)  # LR (nearest) | bicubic | SR | HR of a 48 x 64 val image
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["srlab_config"]["net"]["_target_"] == "srlab.nets.unet.UNet"
    assert ckpt["srlab_config"]["scale"] == 2
    assert any(k.startswith("net.") for k in ckpt["state_dict"])


def test_resume_continues_at_the_same_step(trained, tmp_path):
    run_dir, _, root = trained
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 150
    cfg = compose_cfg("train", REAL_RUN + ["data=folder", f"data.train_dir={root / 'train'}",
                                           f"data.val_dir={root / 'val'}", "trainer.max_steps=160",
                                           f"ckpt_path={last}"], tmp_path / "resumed")
    metrics = train(cfg)
    assert metrics["train/steps"] == 160


def test_eval_cli_writes_the_promised_keys(trained, tmp_path):
    run_dir, metrics, root = trained
    out = tmp_path / "eval"
    res = subprocess.run(
        [sys.executable, "-m", "srlab.cli.eval", f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
         f"eval.sets=[{root / 'val'}]", "scale=2", f"hydra.run.dir={out}"],
        capture_output=True, text=True, timeout=180,
    )
    assert res.returncode == 0, res.stderr
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y", "n_images"):
        assert f"val/{key}" in saved, key
    assert saved["val/n_images"] == 3
    assert saved["val/psnr_y"] > saved["val/bicubic_psnr_y"]
    rows = (out / "per_image.csv").read_text().strip().splitlines()
    assert len(rows) == 4 and rows[0].startswith("set,image,psnr_y")


@pytest.mark.parametrize("net", ["unet", "autoencoder", "bicubic", "srcnn", "espcn", "edsr"])
def test_fast_dev_run_of_each_net(net, image_folder, make_cfg):
    folder = image_folder(n=4)
    overrides = [f"net={net}", "debug=fdr", "data=folder", f"data.train_dir={folder}"]
    # FAST's net.* part (channels, depth, space_to_depth) fits only the U-Net and the
    # auto-encoder: take FAST without it and give each net small widths of its own.
    small = {"bicubic": [], "srcnn": ["net.channels=8", "net.mid_channels=8"],
             "espcn": ["net.channels=8", "net.mid_channels=8"], "edsr": ["net.channels=8", "net.n_blocks=2"]}
    overrides += [o for o in FAST if not o.startswith("net.")]
    overrides += small.get(net, [o for o in FAST if o.startswith("net.")])
    cfg = make_cfg(overrides, fast=False)
    metrics = train(cfg)
    assert metrics["val/psnr_y"] > 10
    if net == "bicubic":
        assert metrics["val/psnr_y"] == pytest.approx(metrics["val/bicubic_psnr_y"])


def test_empty_data_folder_fails_with_one_line_naming_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = subprocess.run([sys.executable, "-m", "srlab.cli.train", "data=folder", f"data.train_dir={empty}",
                          "logger=none", f"hydra.run.dir={tmp_path / 'run'}"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert str(empty) in res.stderr.strip().splitlines()[-1] and "Traceback" not in res.stderr


def test_last_checkpoint_is_the_latest_state_not_the_best(make_cfg):
    """last.ckpt follows every validation; best.ckpt only improvements. With lr=0 every
    validation scores the same, so best stays at the first one while last moves on."""
    from pathlib import Path

    from srlab.cli.train import train as run

    cfg = make_cfg(["trainer.max_steps=6", "trainer.val_check_interval=2", "approach.optimizer.lr=0.0",
                    "lr_schedule=constant"])
    run(cfg)
    ckpts = Path(cfg.paths.output_dir) / "checkpoints"
    steps = {f: torch.load(ckpts / f"{f}.ckpt", map_location="cpu", weights_only=False)["global_step"]
             for f in ("best", "last")}
    assert steps == {"best": 2, "last": 6}


def test_a_run_that_ends_between_validations_leaves_its_final_state(make_cfg, tmp_path):
    """Issue 22: `trainer.max_steps=20` of a recipe validating every 600 steps left no
    checkpoints/ at all; 6 steps validated every 4 left last.ckpt at step 4."""
    from pathlib import Path

    from srlab.cli.train import train as run

    for steps, every in ((3, 100), (6, 4)):
        cfg = make_cfg([f"trainer.max_steps={steps}", f"trainer.val_check_interval={every}", "data.val_crop=64"],
                       run_dir=tmp_path / f"run{steps}")
        run(cfg)
        ckpts = Path(cfg.paths.output_dir) / "checkpoints"
        assert torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == steps
        # best.ckpt: the validation at step 4 inside fit, or else the final state the last validation measured
        best = torch.load(ckpts / "best.ckpt", map_location="cpu", weights_only=False)["global_step"]
        assert best == (4 if every == 4 else steps)


def test_a_quick_try_of_the_default_recipe_leaves_a_checkpoint_to_upscale_with(tmp_path):
    """Issue 22, as a new user meets it: `srlab-train trainer.max_steps=20` (the default recipe
    validates every 600 steps) then `srlab-upscale ckpt_path=<run>/checkpoints/best.ckpt`."""
    from srlab.cli.upscale import upscale

    run_dir = tmp_path / "run"  # in-process: the CLIs' own functions on the default recipe
    train(compose_cfg("train", ["trainer.max_steps=20", "logger=csv", "data.batch_size=4"], run_dir))
    best = run_dir / "checkpoints" / "best.ckpt"
    assert torch.load(best, map_location="cpu", weights_only=False)["global_step"] == 20
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    write_images(tmp_path / "in", 1, size=(24, 20))
    upscale(compose_cfg("upscale", [f"ckpt_path={best}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}",
                                    "progress=false"], tmp_path / "up_run"))
    from PIL import Image

    assert Image.open(tmp_path / "out" / "img00.png").size == (80, 96)


@pytest.mark.parametrize("content", [None, b"garbage", "truncated"])
def test_bad_resume_checkpoint_is_one_line(trained, tmp_path, content):
    """A missing, foreign or truncated ckpt_path stops before anything is built, in one line."""
    bad = tmp_path / "bad.ckpt"
    if content == "truncated":
        whole = (trained[0] / "checkpoints" / "last.ckpt").read_bytes()
        bad.write_bytes(whole[: len(whole) // 2])
    elif content is not None:
        bad.write_bytes(content)
    run_dir = tmp_path / "run"
    if content is None:  # once through the console script: one line, no run directory
        res = subprocess.run([sys.executable, "-m", "srlab.cli.train", *FAST, f"ckpt_path={bad}",
                              f"hydra.run.dir={run_dir}"], capture_output=True, text=True, timeout=120)
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert res.returncode == 1 and lines == [lines[-1]] and lines[-1].startswith("error: ckpt_path=")
        assert not run_dir.exists()
        return
    from srlab.errors import SrlabError

    with pytest.raises(SrlabError) as err:  # the same check, in-process (a CLI start costs ~5 s)
        train(compose_cfg("train", FAST + [f"ckpt_path={bad}"], run_dir))
    assert str(err.value).startswith(f"ckpt_path={bad} is not a readable checkpoint") and "\n" not in str(err.value)
    assert not run_dir.exists()
