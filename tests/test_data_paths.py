"""The fast data paths of issue 8 give the same pixels as the simple ones.

- LR made on the device after transfer (`data.degrade_on=device`, the default) equals LR made
  patch by patch in the loader (`degrade_on=loader`), to 1e-5.
- HR patches travel as uint8 when every source is 8-bit, as float otherwise.
"""

from __future__ import annotations

import pytest
import torch

from srlab.data.datamodule import FolderDataModule, SamplesDataModule
from srlab.data.degrade import BicubicDegradation, Crapify
from srlab.errors import SrlabError


def _batch(dm, seed=0):
    """First training batch after the transfer hooks, with the crop/flip draws seeded."""
    torch.manual_seed(seed)
    b = next(iter(dm.train_dataloader()))
    raw_dtype = b["hr"].dtype
    b = dm.transfer_batch_to_device(b, torch.device("cpu"), 0)
    return dm.on_after_batch_transfer(b, 0), raw_dtype


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_device_lr_equals_loader_lr(image_folder, scale):
    folder = image_folder(n=5, size=(60, 54))
    kw = dict(train_dir=str(folder), degradation=BicubicDegradation(scale), scale=scale,
              patch_size=12 * scale if scale < 4 else 48, batch_size=4, num_workers=0)
    dev, dev_dtype = _batch(FolderDataModule(degrade_on="device", **kw))
    ldr, ldr_dtype = _batch(FolderDataModule(degrade_on="loader", **kw))
    assert torch.equal(dev["hr"], ldr["hr"]) and dev["lr"].shape == ldr["lr"].shape
    assert (dev["lr"] - ldr["lr"]).abs().max() < 1e-5
    assert dev["lr"].dtype == torch.float32 and "gray_cpu" not in dev
    assert dev_dtype == ldr_dtype == torch.float32  # lazy folder: decoded floats travel


def test_uint8_transfer_when_sources_are_8bit(image_folder):
    folder = image_folder(n=4, size=(40, 40))
    kw = dict(train_dir=str(folder), degradation=BicubicDegradation(2), scale=2,
              patch_size=16, batch_size=4, num_workers=0)
    cached, dtype = _batch(FolderDataModule(cache=True, **kw))
    lazy, _ = _batch(FolderDataModule(**kw))
    assert dtype == torch.uint8 and cached["hr"].dtype == torch.float32
    assert torch.equal(cached["hr"], lazy["hr"])  # same seed, same patches, same values
    assert (cached["lr"] - lazy["lr"]).abs().max() < 1e-5


def test_samples_default_is_uint8_on_the_device_path():
    dm = SamplesDataModule(degradation=BicubicDegradation(4), scale=4, num_workers=0)
    b, dtype = _batch(dm)
    assert dtype == torch.uint8 and b["hr"].shape == (16, 3, 128, 128)
    assert b["lr"].shape == (16, 3, 32, 32) and 0 <= b["lr"].min() and b["lr"].max() <= 1
    gray = b["gray"].tolist()
    assert any(gray) and not all(gray)  # the samples mix gray and colour photos
    for g, lr in zip(gray, b["lr"]):
        assert g == bool(torch.equal(lr[0], lr[1]) and torch.equal(lr[1], lr[2]))


def test_crapify_batch_equals_per_image_calls():
    deg = Crapify(2, blur_prob=0.5, noise_prob=0.7, jpeg_prob=0.8)
    hr = torch.rand(6, 3, 24, 24)
    hr[1] = hr[1, :1].expand(3, -1, -1)  # a gray patch stays gray
    gray = [bool(torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])) for x in hr]
    batched = deg.batch(hr, gray=gray, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    single = torch.stack([deg(x, generator=g) for x in hr])
    assert batched.shape == (6, 3, 12, 12) and (batched - single).abs().max() < 1e-5
    assert torch.equal(batched[1, 0], batched[1, 2]) and not torch.equal(batched[0, 0], batched[0, 2])
    again = deg.batch(hr, gray=gray, generator=torch.Generator().manual_seed(5))
    assert torch.equal(batched, again)


def test_bad_degrade_on_is_one_line(image_folder):
    with pytest.raises(SrlabError, match="data.degrade_on='gpu'"):
        FolderDataModule(train_dir=str(image_folder()), degradation=BicubicDegradation(2),
                         scale=2, degrade_on="gpu")


def test_store_batches_equal_folder_batches(image_folder, tmp_path):
    """data=store trains on exactly the pixels data=folder decodes (same split, same patches)."""
    from srlab.data.datamodule import StoreDataModule
    from srlab.data.prepared import prepare_store

    folder = image_folder(n=6, size=(50, 44))
    prepare_store(folder, tmp_path / "store", progress=False)
    kw = dict(degradation=BicubicDegradation(2), scale=2, patch_size=16, batch_size=4,
              num_workers=0, val_fraction=0.3)
    lazy = FolderDataModule(train_dir=str(folder), **kw)
    store = StoreDataModule(train_dir=str(tmp_path / "store"), **kw)
    (a, _), (b, dtype) = _batch(lazy, seed=3), _batch(store, seed=3)
    assert dtype == torch.uint8 and a["name"] == b["name"]
    assert torch.equal(a["hr"], b["hr"]) and (a["lr"] - b["lr"]).abs().max() < 1e-5
    assert lazy.val_set.store.names == store.val_set.store.names
    for va, vb in zip(lazy.val_dataloader(), store.val_dataloader()):
        assert torch.equal(va["hr"], vb["hr"]) and torch.equal(va["lr"], vb["lr"])
    # val from a separate folder of images
    val = StoreDataModule(train_dir=str(tmp_path / "store"), val_dir=str(folder), **kw)
    val.setup("fit")
    assert len(val.train_set.store) == 6 and len(val.val_set.store) == 6


def test_store_data_config_trains(image_folder, tmp_path, make_cfg):
    """`srlab-train data=store data.train_dir=<store>` runs end to end (fast_dev_run)."""
    from srlab.cli.train import train
    from srlab.data.prepared import prepare_store

    prepare_store(image_folder(n=5, size=(48, 48)), tmp_path / "store", progress=False)
    cfg = make_cfg(["data=store", f"data.train_dir={tmp_path / 'store'}", "debug=fdr", "scale=2"])
    metrics = train(cfg)
    assert metrics["train/steps"] == 1 and "val/psnr_y" in metrics


def test_missing_store_is_one_line(tmp_path, make_cfg):
    from srlab.cli.train import train

    cfg = make_cfg(["data=store", f"data.train_dir={tmp_path / 'nowhere'}"])
    with pytest.raises(SrlabError, match="srlab-prepare") as e:
        train(cfg)
    assert "\n" not in str(e.value)


def test_crapify_tiny_patches_and_gray_batches():
    """Blur on patches smaller than the widest kernel; all-gray batches stay gray."""
    deg = Crapify(2, blur_prob=1.0, blur_sigma=(2.0, 2.0), noise_prob=1.0, jpeg_prob=1.0)
    tiny = deg(torch.rand(3, 6, 6), generator=torch.Generator().manual_seed(0))
    assert tiny.shape == (3, 3, 3) and torch.isfinite(tiny).all()
    gray = torch.rand(4, 1, 16, 16).expand(4, 3, 16, 16)
    out = deg.batch(gray, gray=[True] * 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    assert (out - deg.batch(gray, generator=torch.Generator().manual_seed(1))).abs().max() == 0
