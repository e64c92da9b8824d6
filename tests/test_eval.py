"""srlab-eval: the two pipelines (rgb / Y-only), the published bicubic table, LPIPS, loggers."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import models

from srlab.cli.eval import evaluate
from srlab.errors import SrlabError
from srlab.evaluation.report import Crops
from srlab.losses import vgg
from srlab.nets.unet import UNet
from srlab.ops.imresize import imresize
from tests.conftest import write_images

BENCH = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
PUBLISHED = {"Set5": {2: 33.66, 3: 30.39, 4: 28.42}, "Set14": {2: 30.24, 3: 27.55, 4: 26.00}}
NET_CONFIG = {"_target_": "srlab.nets.unet.UNet", "scale": 2, "channels": 4, "depth": 1, "space_to_depth": 1}


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "Set" / "HR"
    write_images(folder, 2, size=(50, 44))
    gray = np.asarray(Image.open(folder / "img00.png").convert("L"))
    Image.fromarray(gray).save(folder / "img02_gray.png")
    return folder


@pytest.fixture
def ckpt(tmp_path):
    """A checkpoint shaped like srlab-train's, holding a small U-Net that is not bicubic."""
    torch.manual_seed(0)
    net = UNet(**{k: v for k, v in NET_CONFIG.items() if k != "_target_"})
    torch.nn.init.normal_(net.head.weight, std=1e-3)
    path = tmp_path / "net.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "srlab_config": {"scale": 2, "net": dict(NET_CONFIG)}}, path)
    return path


def run_eval(make_cfg, sets, *overrides):
    cfg = make_cfg([f"eval.sets=[{','.join(map(str, sets))}]", *overrides], config_name="eval")
    metrics = evaluate(cfg)
    with open(Path(cfg.paths.output_dir) / "per_image.csv") as f:
        return metrics, list(csv.DictReader(f)), Path(cfg.paths.output_dir)


def y_only_bicubic_psnr(path: Path, s: int) -> float:
    """The SRCNN/VDSR MATLAB script in numpy: uint8 Y, bicubic down/up in float, round, PSNR."""
    a = np.asarray(Image.open(path)).astype(np.float64)
    a = a[: a.shape[0] - a.shape[0] % s, : a.shape[1] - a.shape[1] % s]
    y = a if a.ndim == 2 else 16 + (65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255
    gt = np.round(y)
    sr = np.round(imresize(imresize(torch.from_numpy(gt / 255), 1 / s), s).clamp(0, 1).numpy() * 255)
    d = (sr - gt)[s:-s, s:-s]
    return float(10 * np.log10(255**2 / np.mean(d**2)))


def test_bicubic_defaults_to_the_y_only_pipeline_and_matches_the_matlab_script(images, make_cfg):
    metrics, rows, _ = run_eval(make_cfg, [images], "scale=2")
    assert "Set/psnr_rgb" not in metrics and metrics["Set/n_images"] == 3  # named after the set, not "HR"
    for row in rows:
        assert float(row["psnr_y"]) == pytest.approx(y_only_bicubic_psnr(images / row["image"], 2), abs=1e-9)
        assert float(row["psnr_y"]) == pytest.approx(float(row["bicubic_psnr_y"]))


def test_rgb_pipeline_differs_from_y_only_and_reports_psnr_rgb(images, make_cfg):
    y, _, _ = run_eval(make_cfg, [images], "scale=2", "eval.channels=y")
    rgb, _, _ = run_eval(make_cfg, [images], "scale=2", "eval.channels=rgb")
    assert "Set/psnr_rgb" in rgb and 0.0 < abs(rgb["Set/psnr_y"] - y["Set/psnr_y"]) < 0.5


def test_a_checkpoint_defaults_to_rgb_and_also_runs_y_only(images, ckpt, make_cfg):
    rgb, _, _ = run_eval(make_cfg, [images], f"ckpt_path={ckpt}")
    assert "Set/psnr_rgb" in rgb and rgb["Set/psnr_y"] != pytest.approx(rgb["Set/bicubic_psnr_y"], abs=1e-6)
    y, rows, _ = run_eval(make_cfg, [images], f"ckpt_path={ckpt}", "eval.channels=y")
    assert "Set/psnr_rgb" not in y and len(rows) == 3  # the RGB net sees Y as a gray image
    assert abs(y["Set/psnr_y"] - y["Set/bicubic_psnr_y"]) < 1.0


def test_a_bad_channels_value_is_one_clear_error(images, make_cfg):
    with pytest.raises(SrlabError, match="eval.channels=yuv is not one of auto, rgb, y"):
        run_eval(make_cfg, [images], "scale=2", "eval.channels=yuv")


@pytest.mark.skipif(not BENCH.is_dir(), reason="benchmark images (../shared) not present")
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_srlab_eval_reproduces_the_published_bicubic_table(scale, make_cfg):
    sets = [BENCH / name / "HR" for name in PUBLISHED]
    metrics, _, _ = run_eval(make_cfg, sets, "net=bicubic", f"scale={scale}")
    for name, per_scale in PUBLISHED.items():
        assert metrics[f"{name}/psnr_y"] == pytest.approx(per_scale[scale], abs=0.02), name


# ---------- LPIPS ----------
@pytest.fixture
def squeeze_backbone(tmp_path, monkeypatch):
    """A random SqueezeNet 1.1 where torchvision keeps ImageNet weights: the real loading path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = vgg.hub_file(models.SqueezeNet1_1_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(models.squeezenet1_1().state_dict(), path)
    return path


def test_lpips_is_reported_for_sr_and_bicubic(images, squeeze_backbone, make_cfg):
    metrics, rows, _ = run_eval(make_cfg, [images], "scale=2", "eval.metrics=[psnr,ssim,lpips_squeeze]")
    assert metrics["Set/lpips_squeeze"] > 0
    assert metrics["Set/lpips_squeeze"] == pytest.approx(metrics["Set/bicubic_lpips_squeeze"])
    assert all(float(r["lpips_squeeze"]) > 0 for r in rows)


def test_lpips_grows_with_distortion(squeeze_backbone):
    from srlab.evaluation.lpips import LPIPS

    torch.manual_seed(0)
    metric = LPIPS(backbone="squeeze")
    metric.name = "lpips"
    hr = torch.rand(1, 3, 64, 64)
    small, large = (metric((hr + s * torch.randn_like(hr)).clamp(0, 1), hr)["lpips"] for s in (0.02, 0.2))
    assert float(metric(hr, hr)["lpips"]) == 0.0 and 0 < float(small) < float(large)


def test_lpips_offline_without_weights_is_one_line_naming_the_file(images, offline_hub, make_cfg):
    with pytest.raises(SrlabError) as err:
        run_eval(make_cfg, [images], "scale=2", "eval.metrics=[psnr,lpips]")
    msg = str(err.value)
    assert "\n" not in msg and "from val.metrics / eval.metrics" in msg
    assert f"put alexnet-owt-7be5be79.pth in {offline_hub}/" in msg
    with pytest.raises(SrlabError, match="eval.metrics: lpips_resnet is not a measure"):
        run_eval(make_cfg, [images], "scale=2", "eval.metrics=[lpips_resnet]")
    with pytest.raises(SrlabError, match=r"eval.lpips is now a measure: eval.metrics=\[psnr,ssim,lpips_vgg\]"):
        run_eval(make_cfg, [images], "scale=2", "eval.lpips=vgg")
    metrics, _, _ = run_eval(make_cfg, [images], "scale=2", "eval.metrics=[psnr,lpips]", "eval.optional=[lpips]")
    assert "Set/psnr_y" in metrics and not any("lpips" in k for k in metrics)


# ---------- loggers ----------
def test_wandb_gets_the_per_image_table_and_crop_panels_offline(images, make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    _, _, run_dir = run_eval(make_cfg, [images], "scale=2", "logger=wandb", "eval.crop_size=16")
    (run,) = run_dir.glob("wandb/offline-run-*")
    (table_file,) = (run / "files" / "media" / "table" / "eval").glob("images_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"][:3] == ["set", "image", "psnr_y"] and table["columns"][-4:] == ["LR", "bicubic", "SR", "HR"]
    assert len(table["data"]) == 3
    panels = sorted((run / "files" / "media" / "images" / "eval" / "panels").glob("Set_*.png"))
    assert len(panels) == 3
    w, h = Image.open(panels[0]).size
    assert (w, h) == (4 * 16 + 6, 16)  # LR | bicubic | SR | HR with 2-px gaps


def test_csv_logger_gets_the_set_means(images, make_cfg):
    _, _, run_dir = run_eval(make_cfg, [images], "scale=2", "logger=csv")
    header = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "eval/Set/psnr_y" in header and "eval/Set/bicubic_ssim_y" in header


def test_crop_window_is_where_bicubic_is_worst():
    hr = torch.zeros(1, 3, 64, 80)
    bicubic = hr.clone()
    bicubic[..., 40:56, 48:64] = 0.5
    top, left, size = Crops(16).window(hr, bicubic)
    assert (top, left, size) == (40, 48, 16)
    assert Crops(200).window(hr, bicubic)[2] == 64  # never larger than the image



def test_eval_with_a_degradation_is_seeded_and_shows_the_lr(images, ckpt, make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = ["eval.degradation=realesrgan", "eval.save_images=true", "eval.crop_size=16"]
    first, rows, run_dir = run_eval(make_cfg, [images], f"ckpt_path={ckpt}", *args, "logger=wandb")
    again, _, _ = run_eval(make_cfg, [images], f"ckpt_path={ckpt}", *args)
    bicubic, _, _ = run_eval(make_cfg, [images], f"ckpt_path={ckpt}")
    assert first == again  # the same LR in every eval
    assert first["Set/bicubic_psnr_y"] < bicubic["Set/bicubic_psnr_y"] - 1  # realesrgan LR is much worse
    lr = Image.open(run_dir / "images" / "Set" / "img00_lr.png")
    assert lr.size == (44 // 2, 50 // 2)  # the net's input, saved beside its output
    (run,) = run_dir.glob("wandb/offline-run-*")
    (panel,) = sorted((run / "files" / "media" / "images" / "eval" / "panels").glob("Set_*.png"))[:1]
    strip = np.asarray(Image.open(panel).convert("L")).astype(float)
    lr_tile = strip[:, :16]
    assert (lr_tile[::2, ::2] == lr_tile[1::2, 1::2]).all()  # 2 x 2 blocks: nearest-upsampled LR
    with pytest.raises(SrlabError, match="eval.degradation=blurry: use null"):
        run_eval(make_cfg, [images], f"ckpt_path={ckpt}", "eval.degradation=blurry")
    with pytest.raises(SrlabError, match="needs a checkpoint"):
        run_eval(make_cfg, [images], "scale=2", "eval.degradation=train")


def test_tiled_eval_matches_whole_images(images, ckpt, make_cfg):
    """eval runs the net through the upscale tiler: small batched tiles give the same numbers."""
    whole, _, _ = run_eval(make_cfg, [images], f"ckpt_path={ckpt}")
    tiled, _, _ = run_eval(make_cfg, [images], f"ckpt_path={ckpt}",
                           "eval.tile=13", "eval.overlap=4", "eval.tile_batch=2")  # LR 25x22: 3x2 tiles
    assert tiled["Set/bicubic_psnr_y"] == whole["Set/bicubic_psnr_y"]
    assert tiled["Set/psnr_y"] == pytest.approx(whole["Set/psnr_y"], abs=0.02)
    assert tiled["Set/psnr_y"] != whole["Set/psnr_y"]  # the U-Net sees past a 4 px overlap: tiles did run
    assert tiled["Set/ssim_y"] == pytest.approx(whole["Set/ssim_y"], abs=1e-3)
