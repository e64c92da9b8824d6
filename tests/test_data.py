"""Data pipeline: image reading, degradations, sources/splits, data modules and their batches.

Everything runs on tiny images made in tmp_path (plus the scikit-image sample photos, read
once per module), so the file stays fast.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from srlab.data.datamodule import (
    FolderDataModule,
    SamplesDataModule,
    UnpaddedDistributedSampler,
)
from srlab.data.degrade import BicubicDegradation, Crapify, downscale
from srlab.data.images import read_image, save_image
from srlab.data.sources import SAMPLES, folder_split
from srlab.errors import SrlabError
from srlab.ops.imresize import imresize

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Per-image ops on tiny tensors only lose from intra-op threads (badly so on a busy 2-core
    # box); data workers run single-threaded too. Restored afterwards for other test files.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _rand_rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def hr_folder(tmp_path):
    """7 small images: colour and gray, nested folder, upper-case extension, a jpeg."""
    root = tmp_path / "hr"
    (root / "sub").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(_rand_rgb(40 + 4 * i, 52, i)).save(root / f"img{i}.png")
    Image.fromarray(_rand_rgb(48, 36, 9)[..., 0]).save(root / "sub" / "gray.PNG")
    Image.fromarray(_rand_rgb(44, 44, 5)).save(root / "sub" / "photo.jpg", quality=95)
    Image.fromarray(_rand_rgb(37, 41, 6)).save(root / "odd.bmp")
    (root / "notes.txt").write_text("not an image")
    return root


def _train_batch(dm, i=0):
    """The i-th training batch as the LightningModule sees it (after the transfer hooks)."""
    for k, b in enumerate(dm.train_dataloader()):
        if k == i:
            return dm.on_after_batch_transfer(dm.transfer_batch_to_device(b, torch.device("cpu"), 0), 0)


def _folder_dm(root, scale=2, degradation=None, **kw):
    kw = {"patch_size": 12 if scale != 3 else 18, "batch_size": 4, "num_workers": 0, **kw}
    deg = degradation or BicubicDegradation(scale)
    return FolderDataModule(train_dir=str(root), degradation=deg, scale=scale, **kw)


# ---------------------------------------------------------------- images
def test_read_image_modes_and_values(tmp_path):
    gray = np.array([[0, 128], [255, 7]], dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "l.png")
    t, g = read_image(tmp_path / "l.png")
    assert g and t.shape == (3, 2, 2) and t.dtype == torch.float32
    assert torch.equal(t[0], t[2]) and t[0, 0, 1].item() == pytest.approx(128 / 255)

    g16 = np.array([[0, 1000], [65535, 30000]], dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    t, g = read_image(tmp_path / "g16.png")
    assert g and t[1, 0, 1].item() == pytest.approx(1000 / 65535) and t.max().item() == 1.0

    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = [200, 100, 0, 255]  # opaque pixel keeps its colour
    rgba[0, 1] = [0, 0, 0, 0]  # transparent pixel becomes white (composited over white)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    t, g = read_image(tmp_path / "rgba.png")
    assert not g
    assert torch.allclose(t[:, 0, 0], torch.tensor([200, 100, 0]) / 255.0)
    assert torch.allclose(t[:, 0, 1], torch.ones(3))

    la = np.array([[[100, 255], [0, 128]]], np.uint8)  # half-transparent black -> ~mid gray
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    t, g = read_image(tmp_path / "la.png")
    assert g and t[0, 0, 0].item() == pytest.approx(100 / 255)
    assert t[0, 0, 1].item() == pytest.approx(1 - 128 / 255, abs=1e-6)

    Image.fromarray(_rand_rgb(4, 4)).convert("CMYK").save(tmp_path / "cmyk.tif")
    t, g = read_image(tmp_path / "cmyk.tif")
    assert not g and t.shape == (3, 4, 4) and 0 <= t.min() and t.max() <= 1

    pal = Image.fromarray(gray).convert("P")  # palette of grays -> flagged gray
    pal.save(tmp_path / "p.png")
    t, g = read_image(tmp_path / "p.png")
    assert g and t[0, 1, 0].item() == pytest.approx(1.0)


def test_read_16bit_colour_tiff(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    a = np.array([[[291, 40000, 65535]]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "c16.tif", a)
    t, g = read_image(tmp_path / "c16.tif")
    assert not g and torch.allclose(t[:, 0, 0], torch.tensor([291, 40000, 65535]) / 65535.0)


def test_corrupt_image_names_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(SrlabError, match="broken.png") as e:
        read_image(bad)
    assert "\n" not in str(e.value)


def test_save_image_roundtrip(tmp_path):
    x = torch.rand(3, 5, 6)
    save_image(x, tmp_path / "out" / "x.png")
    y, g = read_image(tmp_path / "out" / "x.png")
    assert not g and torch.equal(y, (x * 255).round() / 255)
    save_image(torch.full((3, 2, 2), 1.7), tmp_path / "g", gray=True)  # clamps; adds .png
    y, g = read_image(tmp_path / "g.png")
    assert g and torch.equal(y, torch.ones(3, 2, 2))


# ---------------------------------------------------------------- degradations
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_degradation_sizes(scale):
    hr = torch.rand(3, 12 * scale, 8 * scale)
    lr = BicubicDegradation(scale)(hr)
    assert lr.shape == (3, 12, 8)
    assert torch.equal(lr, imresize(hr, scale=1 / scale).clamp(0, 1))
    for k in ["cubic", "linear", "box", "lanczos3", "area", "bilinear", "nearest"]:
        out = Crapify(scale, kernel=k)(hr)
        assert out.shape == (3, 12, 8) and out.min() >= 0 and out.max() <= 1
    block_mean = hr[0, :scale, :scale].mean().item()
    assert downscale(hr, scale, "area")[0, 0, 0].item() == pytest.approx(block_mean)


def test_crapify_changes_lr_and_is_seeded():
    hr = torch.rand(3, 64, 64) * 0.6 + 0.2
    c = Crapify(4, kernel="cubic", blur_prob=1, noise_prob=1, jpeg_prob=1)
    a = c(hr, torch.Generator().manual_seed(3))
    b = c(hr, torch.Generator().manual_seed(3))
    other = c(hr, torch.Generator().manual_seed(4))
    bic = BicubicDegradation(4)(hr)
    assert torch.equal(a, b) and not torch.equal(a, other)
    assert (a - bic).abs().mean() > 0.01 and a.min() >= 0 and a.max() <= 1
    # With every step off it is exactly the bicubic degradation.
    assert torch.equal(Crapify(4, "cubic", blur_prob=0, noise_prob=0, jpeg_prob=0)(hr), bic)
    gray = torch.rand(1, 32, 32).expand(3, -1, -1)
    out = c(gray)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])  # gray stays gray


def test_crapify_bad_config():
    with pytest.raises(SrlabError, match="kernel"):
        Crapify(2, kernel="bogus")
    with pytest.raises(SrlabError, match="jpeg_quality"):
        Crapify(2, jpeg_quality=[50, 120])


# ---------------------------------------------------------------- sources and splits
def test_missing_and_empty_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(SrlabError) as e:
        _folder_dm(missing).setup("fit")
    assert str(missing) in str(e.value) and "\n" not in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(SrlabError) as e:
        _folder_dm(empty).setup("fit")
    msg = str(e.value)
    assert str(empty) in msg and ".png" in msg and ".webp" in msg and "\n" not in msg


def test_folder_split_deterministic_and_disjoint(hr_folder, tmp_path):
    train, val = folder_split(hr_folder, val_fraction=0.3)
    assert len(val) == 3 and len(train) == 4  # ceil(0.3 * 7) = 3
    assert {p for _, p in train}.isdisjoint({p for _, p in val})
    assert len({p for _, p in train + val}) == 7  # txt ignored; .PNG/.jpg/.bmp/nested found
    assert folder_split(hr_folder, val_fraction=0.3) == (train, val)
    assert len(folder_split(hr_folder, val_fraction=0.01)[1]) == 1  # at least one val image
    vdir = tmp_path / "val"
    vdir.mkdir()
    Image.fromarray(_rand_rgb(20, 20)).save(vdir / "v.webp")
    train2, val2 = folder_split(hr_folder, vdir)
    assert len(train2) == 7 and [n for n, _ in val2] == ["v"]


def test_samples_split_holds_out_val():
    dm = SamplesDataModule(val_names=["chelsea", "camera", "coins"],
                           degradation=BicubicDegradation(4), scale=4, num_workers=0)
    dm.setup("fit")
    train, val = dm.train_set.store.names, dm.val_set.store.names
    assert val == ["chelsea", "camera", "coins"] and not set(train) & set(val)
    assert sorted(train + val) == sorted(SAMPLES)
    b = _train_batch(dm)
    assert b["hr"].shape == (16, 3, 128, 128) and b["lr"].shape == (16, 3, 32, 32)
    assert not set(b["name"]) & set(val)
    vb = next(iter(dm.val_dataloader()))  # chelsea 451x300 -> 448x300, top-left crop
    assert vb["hr"].shape == (1, 3, 300, 448) and vb["lr"].shape == (1, 3, 75, 112)
    assert torch.equal(vb["hr"][0], read_image(dm.val_set.store.paths[0])[0][:, :300, :448])
    with pytest.raises(SrlabError, match="nonexistent"):
        SamplesDataModule(val_names=["nonexistent"], degradation=None, scale=2).setup("fit")


def test_train_downscales_add_smaller_copies_in_ram(hr_folder):
    dm = SamplesDataModule(val_names=["chelsea", "camera", "coins"], degradation=BicubicDegradation(4),
                           scale=4, num_workers=0, train_downscales=[0.8, 0.75])
    dm.setup("fit")
    store = dm.train_set.store
    n = len(SAMPLES) - 3
    assert len(store) == 3 * n and store.names[n] == "astronaut@0.8" and store.names[2 * n] == "astronaut@0.75"
    big, gray = store.get(0)
    small, small_gray = store.get(2 * n)
    assert small.dtype == torch.uint8 and small_gray == gray and small.shape[-2:] == (384, 384)  # 512 px
    # the copy is MATLAB bicubic of the photo, not a crop or a re-read
    want = imresize(big.float()[None] / 255, scale=0.75)[0].clamp(0, 1).mul(255).round()
    assert torch.equal(small.float(), want)
    assert len(dm.train_set) == 3 * n * dm.train_repeats
    with pytest.raises(SrlabError, match=r"in \(0, 1\)"):
        SamplesDataModule(val_names=["chelsea"], degradation=None, scale=4, train_downscales=[1.5])
    lazy = _folder_dm(hr_folder, 2, train_downscales=[0.8])  # lazily read files: no copies to keep
    with pytest.raises(SrlabError, match="data.cache=true"):
        lazy.setup("fit")
    cached = _folder_dm(hr_folder, 2, train_downscales=[0.8], cache=True)
    cached.setup("fit")
    assert len(cached.train_set.store) == 2 * len(lazy._stores()[0])


# ---------------------------------------------------------------- data modules
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_batch_format(hr_folder, scale):
    dm = _folder_dm(hr_folder, scale, train_repeats=3, val_fraction=0.3)
    dm.setup("fit")
    assert len(dm.train_set) == 4 * 3  # n_train_images * train_repeats
    b = _train_batch(dm)
    p = dm.patch_size
    assert b["hr"].shape == (4, 3, p, p) and b["lr"].shape == (4, 3, p // scale, p // scale)
    assert b["hr"].dtype == b["lr"].dtype == torch.float32 and b["gray"].dtype == torch.bool
    assert isinstance(b["name"], list) and isinstance(b["name"][0], str)
    assert 0 <= b["lr"].min() and b["lr"].max() <= 1
    for vb in dm.val_dataloader():
        _, _, h, w = vb["hr"].shape
        assert h % scale == 0 and w % scale == 0
        assert vb["lr"].shape == (1, 3, h // scale, w // scale)
        assert vb["gray"].shape == (1,) and len(vb["name"]) == 1


def test_val_deterministic_and_gray_flag(hr_folder):
    deg = Crapify(2, blur_prob=1, noise_prob=1)
    dm = _folder_dm(hr_folder, 2, degradation=deg, val_fraction=0.5)
    dm.setup("fit")
    first = [b["lr"] for b in dm.val_dataloader()]
    second = [b["lr"] for b in dm.val_dataloader()]
    assert len(first) == 4 and all(torch.equal(a, b) for a, b in zip(first, second))
    bicubic = [BicubicDegradation(2)(b["hr"][0]) for b in dm.val_dataloader()]
    assert all((a[0] - c).abs().mean() > 0.005 for a, c in zip(first, bicubic))
    flags = {n: bool(g) for b in dm.train_dataloader() for n, g in zip(b["name"], b["gray"])}
    flags |= {b["name"][0]: bool(b["gray"]) for b in dm.val_dataloader()}
    assert len(flags) == 7 and flags["sub/gray"] and not flags["img0"] and not flags["odd"]


def test_small_images_skipped(hr_folder, caplog):
    with caplog.at_level(logging.WARNING):
        dm = _folder_dm(hr_folder, 2, patch_size=40, val_fraction=0.01)
        dm.setup("fit")
    # train: img0..3 (40-52 x 52), gray 48x36, photo 44, odd 37x41 minus 1 val; < 40 skipped.
    names = dm.train_set.store.names
    assert "odd" not in names and "sub/gray" not in names and "skipped" in caplog.text
    assert len(names) == 4 and _train_batch(dm)["hr"].shape[-1] == 40
    with pytest.raises(SrlabError, match="patch_size"):
        _folder_dm(hr_folder, 2, patch_size=200).setup("fit")
    with pytest.raises(SrlabError, match="multiple of scale"):
        _folder_dm(hr_folder, 3, patch_size=20)


def test_unreadable_files_are_skipped_at_setup_with_one_warning_each(hr_folder, caplog):
    (hr_folder / "zz_bad.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 64)
    (hr_folder / "zz_empty.png").write_bytes(b"")
    (hr_folder / "zz_text.png").write_text("not a png")
    with caplog.at_level(logging.WARNING):
        dm = _folder_dm(hr_folder, 2, val_dir=str(hr_folder / "sub"))
        dm.setup("fit")
    names = dm.train_set.store.names
    assert not any(n.startswith("zz_") for n in names) and "img0" in names
    for bad in ("zz_bad.jpg", "zz_empty.png", "zz_text.png"):
        assert sum(bad in r.getMessage() for r in caplog.records) == 1, bad
    assert _train_batch(dm)["hr"].shape[0] == 4


def test_nothing_usable_is_one_line(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "a.png").write_bytes(b"")
    (root / "b.jpg").write_text("text")
    with pytest.raises(SrlabError, match="none of the 2 training image") as e:
        _folder_dm(root, 2, val_dir=str(root)).setup("fit")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("workers", [0, 1])
def test_image_broken_during_training_is_skipped(hr_folder, workers, caplog):
    # Valid header, truncated pixel data: only decoding (in the loader worker) finds it.
    good = (hr_folder / "img3.png").read_bytes()
    (hr_folder / "zz_bad.png").write_bytes(good[: len(good) // 2])
    dm = _folder_dm(hr_folder, 2, num_workers=workers, val_dir=str(hr_folder / "sub"), train_repeats=4)
    dm.setup("fit")
    assert "zz_bad" in dm.train_set.store.names  # its header reads fine at setup
    with caplog.at_level(logging.WARNING):
        batches = list(dm.train_dataloader())  # every item of zz_bad is replaced, no crash
    assert len(batches) == len(dm.train_set) // 4
    names = {n for b in batches for n in b["name"]}
    assert "zz_bad" not in names and "img0" in names
    if workers == 0:  # worker processes log to their own stderr
        assert sum("zz_bad.png" in r.getMessage() for r in caplog.records) == 1


def test_cache_matches_lazy(hr_folder):
    lazy, cached = _folder_dm(hr_folder, 2), _folder_dm(hr_folder, 2, cache=True)
    lazy.setup("fit")
    cached.setup("fit")
    a = [b["hr"] for b in lazy.val_dataloader()]
    b = [b["hr"] for b in cached.val_dataloader()]
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and cached.val_set.store.data


def test_ddp_val_sampler_no_padding(hr_folder):
    seen = []
    for rank in range(2):
        dm = _folder_dm(hr_folder, 2, val_fraction=0.7)  # 5 val images
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank, num_devices=2)
        loader = dm.val_dataloader()
        assert isinstance(loader.sampler, UnpaddedDistributedSampler)
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
        names = [b["name"][0] for b in loader]
        assert len(names) == len(loader.sampler) == (3 if rank == 0 else 2)
        seen += names
    assert sorted(seen) == sorted(dm.val_set.store.names)  # each image exactly once
    single = _folder_dm(hr_folder, 2).val_dataloader().sampler
    assert isinstance(single, torch.utils.data.SequentialSampler)


def test_configs_instantiate(hr_folder):
    for name in ["bicubic", "crapify"]:
        node = OmegaConf.load(CONFIGS / "degradation" / f"{name}.yaml")
        cfg = OmegaConf.merge({"scale": 3}, {"d": node})
        deg = instantiate(cfg.d)
        assert deg.scale == 3 and deg(torch.rand(3, 9, 6)).shape == (3, 3, 2)
    for name, extra in [("samples", {}), ("folder", {"train_dir": str(hr_folder)})]:
        data = OmegaConf.merge(OmegaConf.load(CONFIGS / "data" / f"{name}.yaml"), extra)
        cfg = OmegaConf.create({"scale": 2, "degradation": {
            "_target_": "srlab.data.degrade.BicubicDegradation", "scale": "${scale}"}})
        cfg.data = data
        dm = instantiate(cfg.data)
        assert dm.scale == 2 and dm.batch_size == 16 and dm.patch_size == 128
        assert isinstance(dm.degradation, BicubicDegradation) and dm.num_workers is None
