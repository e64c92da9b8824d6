"""LR/HR pairs given as files (issue 22): matching by name, aligned patches, the paired store,
srlab-eval on given LR, and their equivalence with the synthetic path (LR made on the fly)."""
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import compose_cfg, write_images
from PIL import Image

from srlab.data.datasets import ImageStore, ValImages
from srlab.data.degrade import BicubicDegradation, Crapify
from srlab.data.images import read_image, save_image
from srlab.data.pairs import match_pairs
from srlab.data.paired import PairedDataModule, PairedImages, PairedTrainPatches, PairedValImages
from srlab.data.prepared import prepare_store
from srlab.errors import SrlabError
from srlab.evaluation.metrics import quantize
from srlab.ops.imresize import imresize


def make_pairs(root, n=3, size=(96, 80), scale=4, lr_name="{}x4", ext=".png", seed=0):
    """HR photos and their MATLAB-bicubic LR (8-bit, as DIV2K's LR_bicubic track ships)."""
    hr_paths = write_images(root / "hr", n, size=size, seed=seed)
    for p in hr_paths:
        hr, _ = read_image(p)
        hr = hr[:, : hr.shape[1] // scale * scale, : hr.shape[2] // scale * scale]  # as DIV2K made its LR
        lr = quantize(imresize(hr[None], scale=1 / scale))[0] / 255
        save_image(lr, root / "lr" / (lr_name.format(p.stem) + ext))
    return root / "hr", root / "lr"


@pytest.mark.parametrize("hr_name, lr_name", [
    ("0001", "0001x4"), ("Canon_001_HR", "Canon_001_LR4"), ("DSC_1454_x1", "DSC_1454_x4"),
    ("frame_01", "frame_01"), ("a_hr", "a_lr"), ("shot-HR2", "shot-LR")])
def test_pairs_match_by_the_usual_naming_conventions(tmp_path, hr_name, lr_name):
    for side, name in (("hr", hr_name), ("lr", lr_name)):
        (tmp_path / side / "sub").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / side / "sub" / f"{name}.png")
    [(key, hr, lr)] = match_pairs(tmp_path / "hr", tmp_path / "lr")
    assert (hr.stem, lr.stem) == (hr_name, lr_name) and key.startswith("sub/")


def test_one_folder_holding_both_halves_and_a_custom_pattern(tmp_path):
    for name in ("Canon_001_HR", "Canon_001_LR4", "Nikon_7_HR", "Nikon_7_LR4"):
        write_images(tmp_path / "realsr", 1)[0].rename(tmp_path / "realsr" / f"{name}.png")
    pairs = match_pairs(tmp_path / "realsr", tmp_path / "realsr")
    assert [(k, h.stem, low.stem) for k, h, low in pairs] == [
        ("Canon_001", "Canon_001_HR", "Canon_001_LR4"), ("Nikon_7", "Nikon_7_HR", "Nikon_7_LR4")]
    for side, name in (("big", "x_big"), ("small", "x_small")):
        (tmp_path / side).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / side / f"{name}.png")
    [(key, _, _)] = match_pairs(tmp_path / "big", tmp_path / "small", r"^(?P<key>.+)_(small|big)$")
    assert key == "x"
    with pytest.raises(SrlabError, match="both pair as '0001'"):
        for name in ("0001x2", "0001x4"):
            Image.new("RGB", (8, 8)).save(tmp_path / "small" / f"{name}.png")
        match_pairs(tmp_path / "big", tmp_path / "small")


def test_paired_patches_are_the_synthetic_patches_of_the_same_window(tmp_path):
    """LR files made with MATLAB bicubic: each paired item is HR[window] and LR[window / 4]
    with one flip/rotation; the HR patch is exactly the synthetic HR, the LR patch exactly the
    whole-image bicubic (8-bit) there, and away from the patch border equals the bicubic of the
    HR patch alone (what degrade_on=loader makes) within that 8-bit rounding."""
    hr_dir, lr_dir = make_pairs(tmp_path)
    pairs = PairedImages(match_pairs(hr_dir, lr_dir), 4)
    ds = PairedTrainPatches(pairs, None, 4, 32, length=24, seed=3)
    found = 0
    for i in range(24):
        item = ds[i]
        hr_full, _ = read_image(hr_dir / f"{item['name']}.png")
        lr_full = quantize(imresize(hr_full[None], scale=0.25))[0] / 255
        for k in range(8):  # which window and flip gave this patch
            for top in range(0, hr_full.shape[1] - 31, 4):
                for left in range(0, hr_full.shape[2] - 31, 4):
                    hr_w = hr_full[:, top:top + 32, left:left + 32]
                    cand = [hr_w.flip(-1) if k & 1 else hr_w]
                    cand[0] = cand[0].flip(-2) if k & 2 else cand[0]
                    cand[0] = cand[0].rot90(1, (-2, -1)) if k & 4 else cand[0]
                    if torch.equal(cand[0], item["hr"]):
                        lr_w = lr_full[:, top // 4:top // 4 + 8, left // 4:left // 4 + 8]
                        lr_w = lr_w.flip(-1) if k & 1 else lr_w
                        lr_w = lr_w.flip(-2) if k & 2 else lr_w
                        lr_w = lr_w.rot90(1, (-2, -1)) if k & 4 else lr_w
                        assert (item["lr"] - lr_w).abs().max() <= 1e-6
                        synthetic = BicubicDegradation(4)(item["hr"])
                        assert (item["lr"] - synthetic)[:, 2:-2, 2:-2].abs().max() <= 0.5 / 255 + 1e-6
                        found += 1
    assert found >= 24  # every item is an aligned window of its pair


def test_paired_validation_equals_the_synthetic_path_to_1e6(tmp_path):
    """Float LR files (32-bit TIFF, gray) hold the bicubic LR exactly: the paired val items and
    training patches then equal today's synthetic ones bit for bit."""
    hr_dir, lr_dir = tmp_path / "hr", tmp_path / "lr"
    hr_dir.mkdir(), lr_dir.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        hr = (rng.random((64, 48)) * 255).round().astype(np.uint8)
        Image.fromarray(hr).save(hr_dir / f"g{i}.png")
        x, _ = read_image(hr_dir / f"g{i}.png")
        lr = BicubicDegradation(4)(x)[0].numpy().astype(np.float32)
        Image.fromarray(lr, mode="F").save(lr_dir / f"g{i}x4.tif")
    pairs = PairedImages(match_pairs(hr_dir, lr_dir), 4)
    synthetic = ValImages(ImageStore([(n, hr_dir / f"{n}.png") for n in pairs.names]), BicubicDegradation(4), 4)
    paired = PairedValImages(pairs, None, 4)
    for i in range(2):
        a, b = paired[i], synthetic[i]
        assert a["name"] == b["name"] and bool(a["gray"]) == bool(b["gray"]) is True
        assert torch.equal(a["hr"], b["hr"]) and (a["lr"] - b["lr"]).abs().max() <= 1e-6


def test_mismatched_missing_and_tiny_pairs_are_skipped_with_one_warning_each(tmp_path, caplog):
    hr_dir, lr_dir = make_pairs(tmp_path, n=5)
    (lr_dir / "img00x4.png").unlink()                                          # no LR partner
    Image.new("RGB", (10, 10)).save(lr_dir / "img01x4.png")                   # not HR / 4
    Image.new("RGB", (5, 5)).save(lr_dir / "orphanx4.png")                    # no HR partner
    Image.new("RGB", (8, 12)).save(hr_dir / "tiny.png")                        # LR 2x3 < 8 px patch
    Image.new("RGB", (2, 3)).save(lr_dir / "tiny_LR.png")
    (lr_dir / "img02x4.png").write_bytes(b"not an image")                      # unreadable
    dm = PairedDataModule(train_dir=str(hr_dir), train_lr_dir=str(lr_dir), val_dir=str(hr_dir),
                          val_lr_dir=str(lr_dir), degradation=None, scale=4, patch_size=32, batch_size=2)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert dm.train_set.store.names == ["img03", "img04"]
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in ("img00.png", "img01.png", "orphanx4.png", "img02x4.png"):
        assert sum(name in line for line in lines) == 2  # once for train, once for val (same folders)
    assert sum("tiny.png" in line for line in lines) == 1  # too small to train on, not to validate
    assert all("\n" not in line for line in lines)


def test_a_degradation_on_top_and_the_wrong_degradation(tmp_path):
    hr_dir, lr_dir = make_pairs(tmp_path)
    with pytest.raises(SrlabError, match="degradation=none"):
        PairedDataModule(train_dir=str(hr_dir), train_lr_dir=str(lr_dir), degradation=BicubicDegradation(4), scale=4)
    jpeg = Crapify(1, kernel="cubic", blur_prob=0, noise_prob=0, jpeg_prob=1, jpeg_quality=[20, 20])
    dm = PairedDataModule(train_dir=str(hr_dir), train_lr_dir=str(lr_dir), degradation=jpeg, scale=4,
                          patch_size=32, batch_size=2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    given = batch["lr"].float() / (255 if batch["lr"].dtype == torch.uint8 else 1)
    out = dm.on_after_batch_transfer(dm.transfer_batch_to_device(batch, torch.device("cpu"), 0), 0)
    assert out["lr"].shape == given.shape and out["hr"].shape == (2, 3, 32, 32)
    assert 1 / 255 < (out["lr"] - given).abs().mean() < 0.1  # JPEG q20 on the given LR, same size
    from srlab.data.datamodule import SamplesDataModule
    from srlab.data.degrade import NoDegradation

    with pytest.raises(SrlabError, match="degradation=none needs LR files"):
        SamplesDataModule(degradation=NoDegradation(), scale=4)


def test_gray_16bit_and_alpha_pairs_read_as_folders_do(tmp_path):
    hr_dir, lr_dir = tmp_path / "hr", tmp_path / "lr"
    hr_dir.mkdir(), lr_dir.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((32, 32)) * 65535).astype(np.uint16)).save(hr_dir / "g16.png")
    Image.fromarray((rng.random((8, 8)) * 65535).astype(np.uint16)).save(lr_dir / "g16x4.png")
    Image.fromarray((rng.random((32, 32, 4)) * 255).astype(np.uint8), "RGBA").save(hr_dir / "rgba.png")
    Image.fromarray((rng.random((8, 8, 4)) * 255).astype(np.uint8), "RGBA").save(lr_dir / "rgbax4.png")
    pairs = PairedImages(match_pairs(hr_dir, lr_dir), 4)
    for i, name in enumerate(pairs.names):
        hr, lr, gray = pairs.get(i)
        assert torch.equal(hr, read_image(hr_dir / f"{name}.png")[0]) and gray == (name == "g16")
        assert torch.equal(lr, read_image(lr_dir / f"{name}x4.png")[0])
    assert pairs.get(0)[0].unique().numel() > 256  # 16 bits kept


def test_paired_store_round_trip_gives_the_folder_patches(tmp_path, capsys):
    hr_dir, lr_dir = make_pairs(tmp_path, n=3, size=(99, 81))  # HR 3 px / 1 px over 4 x LR
    store = tmp_path / "store"
    counts = prepare_store(hr_dir, store, progress=False, lr_input=lr_dir, scale=4)
    assert counts["added"] == 0 and counts["skipped"] == 3  # strict: no pair fits
    counts = prepare_store(hr_dir, tmp_path / "store2", progress=False, lr_input=lr_dir, scale=4, modcrop=True)
    assert counts == {"added": 3, "updated": 0, "unchanged": 0, "skipped": 0}
    again = prepare_store(hr_dir, tmp_path / "store2", progress=False, lr_input=lr_dir, scale=4, modcrop=True)
    assert again["unchanged"] == 3
    index = json.loads((tmp_path / "store2" / "index.json").read_text())
    assert index["scale"] == 4 and index["images"][0]["height"] == 96 and index["images"][0]["lr"]["height"] == 24
    common = dict(degradation=None, scale=4, patch_size=32, batch_size=2, seed=5, val_fraction=0.34)
    from_store = PairedDataModule(train_dir=str(tmp_path / "store2"), **common)
    from_folders = PairedDataModule(train_dir=str(hr_dir), train_lr_dir=str(lr_dir), modcrop=True, cache=True, **common)
    for dm in (from_store, from_folders):
        dm.setup("fit")
    assert from_store.train_set.store.names == from_folders.train_set.store.names
    for i in range(6):
        a, b = from_store.train_set[i], from_folders.train_set[i]
        assert torch.equal(a["hr"], b["hr"]) and torch.equal(a["lr"], b["lr"]) and a["hr"].dtype == torch.uint8
    a, b = from_store.val_set[0], from_folders.val_set[0]
    assert torch.equal(a["hr"], b["hr"]) and torch.equal(a["lr"], b["lr"])
    with pytest.raises(SrlabError, match="not scale=2"):
        PairedDataModule(train_dir=str(tmp_path / "store2"), **{**common, "scale": 2, "patch_size": 32}).setup("fit")


def test_a_paired_run_trains_and_validates(tmp_path, make_cfg):
    from srlab.cli.train import train

    hr_dir, lr_dir = make_pairs(tmp_path, n=4)
    cfg = make_cfg(["data=paired", f"data.train_dir={hr_dir}", f"data.train_lr_dir={lr_dir}", "data.patch_size=32",
                    "trainer.max_steps=4", "trainer.val_check_interval=2"])
    assert cfg.degradation._target_.endswith("NoDegradation")
    metrics = train(cfg)
    assert metrics["train/steps"] == 4 and np.isfinite(metrics["val/psnr_y"])


def test_eval_on_given_lr_equals_eval_on_made_lr(tmp_path, caplog):
    """srlab-eval eval.lr_dirs=[...] with the MATLAB-bicubic 8-bit LR files gives the default
    path's numbers to 1e-6; the CSV names both files; a misfit pair is skipped, warned once."""
    ckpt = Path(__file__).parent / "fixtures" / "legacy_v0_1" / "run" / "checkpoints" / "last.ckpt"
    hr_dir, lr_dir = make_pairs(tmp_path / "set", n=2, size=(51, 43), scale=2, lr_name="{}x2")  # the checkpoint is x2
    Image.new("RGB", (7, 7)).save(lr_dir / "extrax2.png")
    Image.new("RGB", (40, 40)).save(hr_dir / "extra.png")
    from srlab.cli.eval import evaluate

    outs = {}
    for key, extra in (("made", []), ("given", [f"eval.lr_dirs=[{lr_dir}]"])):
        out = tmp_path / key  # in-process: the CLI's own function (a CLI start costs ~5 s)
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            evaluate(compose_cfg("eval", [f"ckpt_path={ckpt}", f"eval.sets=[{hr_dir}]"] + extra, out))
            warned = " ".join(r.getMessage() for r in caplog.records)
        outs[key] = (json.loads((out / "metrics.json").read_text()), (out / "per_image.csv").read_text(), warned)
    made, given = outs["made"][0], outs["given"][0]
    assert given["set/n_images"] == 2 and made["set/n_images"] == 3
    assert outs["given"][1].splitlines()[0].startswith("set,image,lr_image,")
    assert "img00.png,img00x2.png" in outs["given"][1]
    assert outs["given"][2].count("extra.png") == 1
    made_rows = {r.split(",")[1]: r for r in outs["made"][1].splitlines()[1:]}
    for row in outs["given"][1].splitlines()[1:]:
        cells = row.split(",")
        ref = made_rows[cells[1]].split(",")
        assert all(abs(float(a) - float(b)) <= 1e-6 for a, b in zip(cells[3:], ref[2:]))
