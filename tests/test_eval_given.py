"""srlab-eval sr_dirs=[...]: SR images made elsewhere, measured as srlab's own are."""
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srlab.cli.eval import evaluate
from srlab.ops.imresize import imresize
from tests.conftest import write_images


def test_given_sr_images_equal_bicubic_numbers_and_no_reference_runs_alone(tmp_path, make_cfg):
    hr_dir = tmp_path / "Set" / "HR"
    write_images(hr_dir, 2, size=(200, 196))
    method = tmp_path / "bicubic_elsewhere"
    method.mkdir()
    for path in sorted(hr_dir.iterdir()):  # what another tool would write: the MATLAB bicubic x2 of the LR
        hr = torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1).double()[None] / 255
        lr = torch.round(imresize(hr, scale=0.5).clamp(0, 1) * 255) / 255
        sr = torch.round(imresize(lr, scale=2).clamp(0, 1) * 255)[0].permute(1, 2, 0).byte().numpy()
        Image.fromarray(sr).save(method / f"{path.stem}_x2_SR.png")
    cfg = make_cfg([f"sr_dirs=[{method}]", f"eval.sets=[{hr_dir}]", "scale=2", "eval.metrics=[psnr,ssim,niqe]"],
                   config_name="eval")
    metrics = evaluate(cfg)
    key = "bicubic_elsewhere/Set"
    assert metrics[f"{key}/n_images"] == 2
    assert metrics[f"{key}/psnr_y"] == pytest.approx(metrics[f"{key}/bicubic_psnr_y"], abs=1e-3)  # float32 vs 64 LR
    assert metrics[f"{key}/niqe"] == pytest.approx(metrics[f"{key}/bicubic_niqe"], rel=1e-3)
    with open(Path(cfg.paths.output_dir) / "per_image.csv") as f:
        assert {r["method"] for r in csv.DictReader(f)} == {"bicubic_elsewhere"}
    alone = evaluate(make_cfg([f"sr_dirs=[{method}]", "scale=2", "eval.metrics=[niqe]"], config_name="eval",
                              run_dir=tmp_path / "alone"))
    assert alone["bicubic_elsewhere/niqe"] == pytest.approx(metrics[f"{key}/niqe"], abs=1e-5)
