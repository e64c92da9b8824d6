"""Files written before the by-role layout (tests/fixtures/legacy_v0_1, made by commit fa24a24)
still work: the checkpoint and the export give the same net as then, srlab-eval, -upscale,
-export and -compare read them, a run resumes from the old last.ckpt, and an old saved config
that names a moved module gets one line with the new path."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from PIL import Image

from srlab.cli.compare import compare
from srlab.cli.eval import evaluate
from srlab.cli.export import export
from srlab.cli.train import train
from srlab.cli.upscale import upscale
from srlab.config.schema import check_config
from srlab.errors import SrlabError
from srlab.inference.checkpoint import load_net
from tests.conftest import write_images

LEGACY = Path(__file__).parent / "fixtures" / "legacy_v0_1"
CKPT = LEGACY / "run" / "checkpoints" / "last.ckpt"
EXPORT = LEGACY / "last.srlab.pt"
# what the code before the move computed (fixtures README): mean and std of net(x)
REFERENCE = (0.4957405056, 0.2425103957)


def reference_output(net: torch.nn.Module) -> torch.Tensor:
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return net(x).double()


@pytest.mark.parametrize("path", [CKPT, EXPORT], ids=["ckpt", "export"])
def test_old_files_load_to_the_same_net(path):
    net, info = load_net(path)
    y = reference_output(net)
    assert info["scale"] == 2 and y.shape == (1, 3, 24, 24)
    assert (y.mean().item(), y.std().item()) == pytest.approx(REFERENCE, abs=1e-7)


def test_old_checkpoint_exports_eval_and_upscales(make_cfg, tmp_path):
    # export: the new file holds the same net as the old export
    new_export = export(CKPT, tmp_path / "again.srlab.pt")[0]
    assert torch.equal(reference_output(load_net(new_export)[0]), reference_output(load_net(EXPORT)[0]))

    hr = tmp_path / "Set" / "HR"
    write_images(hr, 2, size=(40, 36), seed=3)
    metrics = evaluate(make_cfg([f"ckpt_path={CKPT}", f"eval.sets=[{hr}]"], config_name="eval"))
    assert metrics["Set/n_images"] == 2 and 15 < metrics["Set/psnr_y"] < 60

    rgb = np.random.default_rng(0).integers(0, 256, (20, 18, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    cfg = make_cfg([f"ckpt_path={EXPORT}", f"input={tmp_path / 'photo.png'}", f"output={tmp_path / 'sr.png'}",
                    "device=cpu"], config_name="upscale")
    written = upscale(cfg)
    assert Image.open(written[0]).size == (36, 40)


def test_old_run_directory_compares(tmp_path):
    run = shutil.copytree(LEGACY / "run", tmp_path / "runs" / "old")
    runs, header, _ = compare([run], out=tmp_path / "cmp")
    assert len(runs) == 1 and runs[0].status == "ok"
    assert runs[0].metrics["val/psnr_y"] == pytest.approx(26.2188015)


def test_old_last_ckpt_resumes(make_cfg, tmp_path):
    """Resume with the overrides the fixture was trained with: the step count carries on."""
    overrides = yaml.safe_load((LEGACY / "run" / ".hydra" / "overrides.yaml").read_text())
    write_images(tmp_path / "hr", 6)
    write_images(tmp_path / "val", 2, seed=1)
    swap = {"data.train_dir": tmp_path / "hr", "data.val_dir": tmp_path / "val", "logger": "none",
            "trainer.max_steps": 6}
    overrides = [f"{k}={swap.get(k, v)}" for k, v in (o.split("=", 1) for o in overrides)]
    metrics = train(make_cfg(overrides + [f"ckpt_path={CKPT}"], fast=False, run_dir=tmp_path / "resumed"))
    assert metrics["train/steps"] == 6
    assert np.isfinite(metrics["val/psnr_y"])


def test_old_saved_config_names_the_new_module(tmp_path):
    cfg = OmegaConf.load(LEGACY / "run" / ".hydra" / "config.yaml")
    cfg.paths.output_dir = str(tmp_path)  # ${hydra:runtime.output_dir}: Hydra sets it in a real run
    cfg.data.train_dir, cfg.data.val_dir = str(tmp_path), None  # the folders it trained on are gone
    with pytest.raises(SrlabError, match=r"_target_=srlab\.(faults|callbacks)\.(\w+): this module moved .*; "
                                         r"use srlab\.training\.\1\.\2$"):
        check_config(cfg)
