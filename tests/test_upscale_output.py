"""srlab-upscale's output side: PNG levels and TIFF hold the same pixels, a profile line, and a
folder with corrupt files that is finished anyway (one warning line per bad file)."""

import re

import numpy as np
import pytest
import tifffile
from PIL import Image

from srlab.cli.upscale import upscale
from srlab.inference.image_writers import PngStream
from tests.test_upscale import make_ckpt, net_dir, read_png16  # noqa: F401 - net_dir is a fixture


def run(make_cfg, ckpt, *overrides):
    return upscale(make_cfg([f"ckpt_path={ckpt}", "tile=40", "overlap=8", *overrides], config_name="upscale"))


def test_formats_hold_the_same_pixels(net_dir, tmp_path, make_cfg):
    make_ckpt(tmp_path / "m.ckpt")
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (50, 70, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    g16 = rng.integers(0, 65536, (50, 70), dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g.png")
    for name in ("a", "g"):
        src = tmp_path / f"{name}.png"
        level0, = run(make_cfg, tmp_path / "m.ckpt", f"input={src}", f"output={tmp_path / name}_0.png",
                      "png_compression=0", "progress=false")
        level9, = run(make_cfg, tmp_path / "m.ckpt", f"input={src}", f"output={tmp_path / name}_9.png",
                      "png_compression=9", "progress=false")
        tiff, = run(make_cfg, tmp_path / "m.ckpt", f"input={src}", "format=tiff", "progress=false")
        assert tiff == tmp_path / f"{name}_x2.tif"
        as_tiff = tifffile.imread(tiff)
        if name == "a":
            assert as_tiff.shape == (100, 140, 4) and as_tiff.dtype == np.uint8
            for png in (level0, level9):
                assert np.array_equal(np.array(Image.open(png)), as_tiff)
            with Image.open(tiff) as im:  # Pillow reads the hand-written TIFF too
                assert im.mode == "RGBA" and np.array_equal(np.array(im), as_tiff)
        else:
            assert as_tiff.shape == (100, 140) and as_tiff.dtype == np.uint16
            for png in (level0, level9):
                assert np.array_equal(read_png16(png)[..., 0], as_tiff)
        assert level9.stat().st_size < level0.stat().st_size


def test_png_sub_filter_round_trips_and_compresses_smooth_images(tmp_path):
    yy, xx = np.mgrid[0:64, 0:96]
    smooth = np.stack([xx * 2, yy * 3, xx + yy], axis=-1).astype(np.uint8)
    sizes = {}
    for level in (0, 1):
        stream = PngStream(tmp_path / f"s{level}.png", 96, 64, 3, 8, level)
        stream.write(smooth[:40])
        stream.write(smooth[40:])
        stream.close()
        assert np.array_equal(np.array(Image.open(tmp_path / f"s{level}.png")), smooth)
        sizes[level] = (tmp_path / f"s{level}.png").stat().st_size
    assert sizes[1] < sizes[0] / 20  # ramps: Sub-filtered bytes are nearly constant


def test_png_pieces_deflated_in_parallel_make_one_valid_zlib_stream(tmp_path, monkeypatch):
    monkeypatch.setattr(PngStream, "PIECE", 1000)  # 2.8 rows of 16-bit RGBA per piece: many pieces
    image = np.random.default_rng(2).integers(0, 65536, (50, 90, 4), dtype=np.uint16)
    stream = PngStream(tmp_path / "p.png", 90, 50, 4, 16, level=6, workers=3)
    for r in range(0, 50, 7):
        stream.write(image[r:r + 7])
    stream.close()
    assert np.array_equal(read_png16(tmp_path / "p.png"), image)  # zlib.decompress checks the Adler-32
    data = (tmp_path / "p.png").read_bytes()
    assert data.count(b"IDAT") > 20  # one per piece, written in order


def test_folder_with_corrupt_files_finishes(net_dir, tmp_path, make_cfg, capsys):
    make_ckpt(tmp_path / "m.ckpt")
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(src / f"ok{i}.png")
    good = (src / "ok0.png").read_bytes()
    (src / "truncated.png").write_bytes(good[:len(good) // 2])
    (src / "text.jpg").write_text("not an image")
    with pytest.raises(Exception, match=r"^2 of 5 images failed \(first: cannot read image"):
        run(make_cfg, tmp_path / "m.ckpt", f"input={src}", f"output={tmp_path / 'out'}", "profile=true")
    err = capsys.readouterr().err
    skipped = [line for line in err.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 2 and any("truncated.png" in s for s in skipped) and any("text.jpg" in s for s in skipped)
    assert "img/s" in err or "s/img" in err  # one bar over images, with its rate
    assert "tiles" not in err  # ... and no bar per image
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok0.png", "ok1.png", "ok2.png"]
    for i in range(3):
        assert Image.open(tmp_path / "out" / f"ok{i}.png").size == (80, 60)


def test_profile_prints_the_split(net_dir, tmp_path, make_cfg, capsys):
    make_ckpt(tmp_path / "m.ckpt")
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "a.png")
    run(make_cfg, tmp_path / "m.ckpt", f"input={tmp_path / 'a.png'}", "profile=true", "progress=false")
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("profile a.png:"))
    seconds = {stage: float(t) for stage, t in re.findall(r"(read|net|blend|write|wall) ([0-9.]+)s", line)}
    assert set(seconds) == {"read", "net", "blend", "write", "wall"}, line
    assert min(seconds.values()) >= 0 and seconds["wall"] >= seconds["net"]


def test_a_failure_mid_image_leaves_no_file_and_no_thread(tmp_path):
    import threading

    import torch
    from torch import nn

    from srlab.cli.upscale import upscale_file
    from srlab.errors import SrlabError

    class FailsOnThirdCall(nn.Module):
        scale, calls = 2, 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 3:
                raise SrlabError("out of luck")
            return nn.functional.interpolate(x, scale_factor=2)

    before = threading.active_count()
    loaded = (torch.rand(3, 60, 30), False, None, 8)
    with pytest.raises(SrlabError, match="out of luck"):  # tile 25: 3 rows of tiles, one band written
        upscale_file(FailsOnThirdCall(), loaded, tmp_path / "x.png", 2, 25, 8, torch.device("cpu"), torch.float32)
    assert not (tmp_path / "x.png").exists() and threading.active_count() == before
