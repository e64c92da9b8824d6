"""srlab-prepare's store: exact pixels (same as read_image), incremental re-runs, clear errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srlab.data import prepared
from srlab.data.images import read_image
from srlab.data.prepared import (
    is_store,
    load_image,
    open_store,
    prepare_store,
    to_float,
)
from srlab.errors import SrlabError

H, W = 20, 28


def _rgb(seed=0, h=H, w=W):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_all_kinds(folder: Path) -> dict[str, str]:
    """One file per decoding path of read_image -> {name: expected stored dtype}."""
    import tifffile

    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray(_rgb(0)).save(folder / "rgb.png")
    Image.fromarray(_rgb(1)[..., 0]).save(folder / "gray8.png")
    Image.fromarray(rng.integers(0, 65536, (H, W), dtype=np.uint16)).save(folder / "gray16.png")
    tifffile.imwrite(folder / "rgb16.tif", rng.integers(0, 65536, (H, W, 3), dtype=np.uint16),
                     photometric="rgb")
    rgba = np.dstack([_rgb(2), np.where(rng.random((H, W)) < 0.5, 0, 255).astype(np.uint8)])
    Image.fromarray(rgba).save(folder / "rgba.png")
    rgba[..., 3] = rng.integers(0, 256, (H, W))  # soft alpha: composite is not k/255 -> float32
    Image.fromarray(rgba).save(folder / "rgba_soft.png")
    Image.fromarray(_rgb(3)).quantize(16).save(folder / "palette.png")
    Image.fromarray(_rgb(4)).save(folder / "photo.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    Image.fromarray(_rgb(5)).save(folder / "rotated.jpg", exif=exif)
    return {"rgb": "uint8", "gray8": "uint8", "gray16": "uint16", "rgb16": "uint16",
            "rgba": "uint8", "rgba_soft": "float32", "palette": "uint8", "photo": "uint8", "rotated": "uint8"}


def test_store_patches_equal_read_image(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "store"
    expected = _write_all_kinds(src)
    assert prepare_store(src, dst, progress=False) == {"added": 9, "updated": 0, "unchanged": 0}
    assert is_store(dst) and not is_store(src)
    entries = {e["name"]: e for e in open_store(dst)}
    assert set(entries) == set(expected)
    for name, dtype in expected.items():
        e = entries[name]
        ref, ref_gray = read_image(src / Path(e["source"]).name)
        t, gray = load_image(dst, e)
        assert str(t.dtype) == f"torch.{dtype}" == f"torch.{e['dtype']}", name
        assert gray == ref_gray == e["gray"] == (name in ("gray8", "gray16")), name
        assert t.shape == (1 if gray else 3, *ref.shape[1:]) == (e["channels"], e["height"], e["width"])
        assert torch.equal(to_float(t), ref), name
        for top, left, p in [(0, 0, 8), (5, 3, 11), (ref.shape[1] - 7, ref.shape[2] - 7, 7)]:
            patch = to_float(t[:, top:top + p, left:left + p].contiguous())
            assert patch.shape == (3, p, p) and patch.is_contiguous()
            assert torch.equal(patch, ref[:, top:top + p, left:left + p]), name
    assert entries["rotated"]["height"] == W  # EXIF orientation applied before storing


def test_to_float_matches_read_image_division():
    # every 8- and 16-bit value converts exactly as read_image's numpy float32 division does
    for dtype, scale in [(np.uint8, 255.0), (np.uint16, 65535.0)]:
        v = np.arange(int(scale) + 1, dtype=dtype).reshape(1, 1, -1)
        want = torch.from_numpy(v.astype(np.float32) / scale).expand(3, -1, -1)
        assert torch.equal(to_float(torch.from_numpy(v)), want)


def test_load_image_is_a_memory_mapped_view(tmp_path, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "store"
    src.mkdir()
    Image.fromarray(_rgb(0, 64, 48)).save(src / "a.png")
    prepare_store(src, dst, progress=False)
    loaded = []
    real_load = np.load
    monkeypatch.setattr(prepared.np, "load", lambda *a, **k: loaded.append(real_load(*a, **k)) or loaded[-1])
    t, _ = load_image(dst, open_store(dst)[0])
    assert isinstance(loaded[-1], np.memmap) and loaded[-1].mode == "c"
    assert not t.is_contiguous()  # HWC file seen as CHW: a view, no copy
    assert t.data_ptr() == loaded[-1].ctypes.data  # the tensor's memory is the mapped file
    assert np.shares_memory(t.numpy(), loaded[-1])


def test_rerun_adds_updates_and_skips(tmp_path, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "store"
    src.mkdir()
    for i in range(3):
        Image.fromarray(_rgb(i)).save(src / f"img{i}.png")
    assert prepare_store(src, dst, progress=False)["added"] == 3
    files = {e["name"]: e["file"] for e in open_store(dst)}

    calls = []
    monkeypatch.setattr(prepared, "read_image", lambda p: calls.append(Path(p).name) or read_image(p))
    Image.fromarray(_rgb(9)).save(src / "img3.png")
    assert prepare_store(src, dst, progress=False) == {"added": 1, "updated": 0, "unchanged": 3}
    assert calls == ["img3.png"]  # unchanged files are not decoded again

    calls.clear()
    Image.fromarray(_rgb(7)).save(src / "img1.png")
    st = os.stat(src / "img1.png")
    os.utime(src / "img1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    (src / "img2.png").unlink()  # removed from the input: stays in the store
    assert prepare_store(src, dst, progress=False) == {"added": 0, "updated": 1, "unchanged": 2}
    assert calls == ["img1.png"]
    entries = {e["name"]: e for e in open_store(dst)}
    assert set(entries) == {"img0", "img1", "img2", "img3"}
    assert entries["img1"]["file"] not in files.values()  # a new number, never reused
    assert not (dst / files["img1"]).exists()  # the old file is gone
    assert torch.equal(to_float(load_image(dst, entries["img1"])[0]), read_image(src / "img1.png")[0])
    assert sorted(p.name for p in (dst / "images").iterdir()) == sorted(
        Path(e["file"]).name for e in entries.values())


def test_unreadable_input_keeps_converted_images(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "store"
    src.mkdir()
    for i in range(2):
        Image.fromarray(_rgb(i)).save(src / f"a{i}.png")
    (src / "b_bad.png").write_text("not an image")
    Image.fromarray(_rgb(3)).save(src / "c.png")
    with pytest.raises(SrlabError, match=r"b_bad\.png") as err:
        prepare_store(src, dst, progress=False)
    assert "\n" not in str(err.value)
    assert [e["name"] for e in open_store(dst)] == ["a0", "a1"]
    assert not list(dst.rglob("*.tmp"))
    (src / "b_bad.png").unlink()  # fixed: the re-run continues where it stopped
    assert prepare_store(src, dst, progress=False) == {"added": 1, "updated": 0, "unchanged": 2}


def test_ctrl_c_leaves_a_valid_index(tmp_path, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "store"
    src.mkdir()
    for i in range(3):
        Image.fromarray(_rgb(i)).save(src / f"img{i}.png")
    calls = []

    def interrupted(path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return read_image(path)

    monkeypatch.setattr(prepared, "read_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_store(src, dst, progress=False)
    assert [e["name"] for e in open_store(dst)] == ["img0"]
    monkeypatch.setattr(prepared, "read_image", read_image)
    assert prepare_store(src, dst, progress=False) == {"added": 2, "updated": 0, "unchanged": 1}


def test_store_errors(tmp_path):
    with pytest.raises(SrlabError, match="srlab-prepare input=") as err:
        open_store(tmp_path)  # no index.json
    assert str(tmp_path) in str(err.value)
    (tmp_path / "other.txt").write_text("x")
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(_rgb(0)).save(src / "a.png")
    with pytest.raises(SrlabError, match="not a store"):
        prepare_store(src, tmp_path, progress=False)  # a non-empty folder that is not a store
    dst = tmp_path / "store"
    prepare_store(src, dst, progress=False)
    (dst / open_store(dst)[0]["file"]).unlink()
    with pytest.raises(SrlabError, match="missing.*srlab-prepare"):
        open_store(dst)
    index = json.loads((dst / "index.json").read_text())
    (dst / "index.json").write_text(json.dumps({**index, "version": 99}))
    with pytest.raises(SrlabError, match="version 99"):
        open_store(dst)
    Image.fromarray(_rgb(1)).save(src / "a.jpg")
    with pytest.raises(SrlabError, match="both give the image name 'a'"):
        prepare_store(src, tmp_path / "store2", progress=False)


def test_cli(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "out" / "store"
    src.mkdir()
    for i in range(2):
        Image.fromarray(_rgb(i)).save(src / f"img{i}.png")
    cmd = [sys.executable, "-m", "srlab.cli.prepare"]
    run = subprocess.run(cmd + [f"input={src}", f"output={dst}"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert len(open_store(dst)) == 2 and "2 added" in run.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # nothing else in the cwd
    run = subprocess.run(cmd + [f"input={tmp_path / 'nope'}", f"output={dst}"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: input: folder") and "nope" in lines[0]
