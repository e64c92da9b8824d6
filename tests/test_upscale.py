"""srlab-upscale / srlab-export / checkpoint loading, on a tiny net and tiny images."""

import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from srlab.cli.export import export
from srlab.cli.upscale import pick_device, plan, upscale, write_png16
from srlab.errors import SrlabError
from srlab.inference.checkpoint import load_net
from srlab.ops.imresize import imresize

NET_MODULE = textwrap.dedent('''
    """A class no safe loader knows: pickled into a checkpoint, it is a code payload."""

    class Marker:
        pass
''')
# srlab's ESPCN, small: a file's config may name only srlab's own nets (srlab/inference/file_configs.py).
# Receptive field 4 LR px, so tiles overlapping by 8 change nothing.
NET_CONFIG = {"_target_": "srlab.nets.espcn.ESPCN", "scale": 2, "channels": 8, "mid_channels": 8, "residual": False}


def tiny_net() -> torch.nn.Module:
    from srlab.nets.espcn import ESPCN

    return ESPCN(scale=2, channels=8, mid_channels=8, residual=False).eval()


@pytest.fixture(scope="module")
def net_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("netmodule")
    (folder / "srlab_test_tinynet.py").write_text(NET_MODULE)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


def make_ckpt(path: Path, extra: dict | None = None, seed: int = 0) -> torch.nn.Module:
    """A checkpoint shaped like srlab-train's (Lightning keys, "net." prefix, srlab_config)."""
    torch.manual_seed(seed)
    net = tiny_net()
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    state["loss.dummy"] = torch.zeros(1)
    ckpt = {"epoch": 3, "global_step": 12, "pytorch-lightning_version": "2.6.6", "state_dict": state,
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-3}]}],
            "srlab_config": {"scale": 2, "seed": 42, "net": dict(NET_CONFIG)}, **(extra or {})}
    torch.save(ckpt, path)
    return net


def sr(net, rgb: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(rgb[None])[0].clamp(0, 1)


def read_png16(path: Path) -> np.ndarray:
    """Decode the 16-bit PNGs srlab writes (filter None or Sub; Pillow keeps only 8 bits of colour)."""
    data, pos, idat = path.read_bytes(), 8, b""
    while pos < len(data):
        length, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if tag == b"IHDR":
            w, h, depth, color = struct.unpack(">IIBB", body[:10])
        idat += body if tag == b"IDAT" else b""
        pos += 12 + length
    c = {0: 1, 4: 2, 2: 3, 6: 4}[color]
    assert depth == 16
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * c * 2)
    assert set(raw[:, 0]) <= {0, 1}
    rows = raw[:, 1:].reshape(h, w, c * 2)
    rows = np.where(raw[:, :1, None] == 1, np.cumsum(rows, axis=1, dtype=np.uint8), rows)  # undo Sub
    return rows.reshape(h, -1).copy().view(">u2").reshape(h, w, c).astype(np.uint16)


def test_cli_folder_of_mixed_images(net_dir, tmp_path):
    net = make_ckpt(tmp_path / "run.ckpt")
    src, rng = tmp_path / "photos", np.random.default_rng(0)
    (src / "sub").mkdir(parents=True)
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(src / "rgb.png")
    Image.fromarray(rgb).save(src / "photo.jpg", quality=90)
    Image.fromarray(rgb[..., 0]).save(src / "sub" / "gray.png")
    rgba = np.concatenate([rgb, rng.integers(0, 256, (40, 50, 1), dtype=np.uint8)], axis=-1)
    Image.fromarray(rgba).save(src / "sub" / "rgba.png")
    g16 = rng.integers(0, 65536, (40, 50), dtype=np.uint16)
    Image.fromarray(g16).save(src / "gray16.png")
    c16 = rng.integers(0, 65536, (40, 50, 3), dtype=np.uint16)
    write_png16(c16, src / "rgb16.png")
    (src / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    exe = Path(sys.executable).with_name("srlab-upscale")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "srlab.cli.upscale"]
    run = subprocess.run(cmd + [f"ckpt_path={tmp_path / 'run.ckpt'}", f"input={src}", f"output={out}",
                                "tile=49", "overlap=16", "progress=false"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(net_dir)})
    # one unreadable file: exit 1 with one line, after writing all the others
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("error: 1 of 7 images failed (first: cannot read image")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "gray16.png", "photo.png", "rgb.png", "rgb16.png", "sub/gray.png", "sub/rgba.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "photos", "run.ckpt"]  # no Hydra files

    x = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    expected = sr(net, x) * 255  # receptive field 4 px <= overlap / 4: tiles change nothing
    got = torch.from_numpy(np.array(Image.open(out / "rgb.png"))).permute(2, 0, 1).float()
    assert got.shape == (3, 80, 100) and (got - expected).abs().max() <= 1
    with Image.open(out / "photo.png") as im:
        assert im.mode == "RGB" and im.size == (100, 80)
    with Image.open(out / "sub" / "gray.png") as im:  # gray in, gray out: mean of the RGB output
        assert im.mode == "L"
        gray_in = x[:1].expand(3, -1, -1)
        with torch.no_grad():  # channels averaged before the output is clamped
            gray_out = net(gray_in[None])[0].mean(0).clamp(0, 1)
        assert (torch.from_numpy(np.array(im)).float() - gray_out * 255).abs().max() <= 1
    with Image.open(out / "sub" / "rgba.png") as im:  # colour from the net, alpha bicubic
        assert im.mode == "RGBA"
        a = torch.from_numpy(np.array(im)).permute(2, 0, 1).float()
    assert (a[:3] - expected).abs().max() <= 1
    alpha = torch.from_numpy(rgba[..., 3]).float()[None] / 255
    assert (a[3] - imresize(alpha, scale=2)[0].clamp(0, 1) * 255).abs().max() <= 1
    with Image.open(out / "gray16.png") as im:
        assert im.mode == "I;16"
        g = torch.from_numpy(np.array(im).astype(np.float32))
    g_in = torch.from_numpy(g16.astype(np.float32))[None].expand(3, -1, -1) / 65535
    with torch.no_grad():
        g_out = net(g_in[None])[0].mean(0).clamp(0, 1)
    assert (g - g_out * 65535).abs().max() <= 3
    c = torch.from_numpy(read_png16(out / "rgb16.png").astype(np.float32)).permute(2, 0, 1)
    c_in = torch.from_numpy((c16 >> 8).astype(np.float32)).permute(2, 0, 1) / 255  # Pillow's 8 bits
    assert c.shape == (3, 80, 100) and (c - sr(net, c_in) * 65535).abs().max() <= 3


def test_single_file_defaults_and_user_errors(net_dir, tmp_path, make_cfg):
    def compose_upscale(*overrides):
        return make_cfg(list(overrides), config_name="upscale")

    make_ckpt(tmp_path / "m.ckpt")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.jpg")
    written = upscale(compose_upscale(f"ckpt_path={tmp_path / 'm.ckpt'}", f"input={tmp_path / 'a.jpg'}",
                                      "progress=false"))
    assert written == [tmp_path / "a_x2.png"] and Image.open(written[0]).size == (60, 40)
    with pytest.raises(SrlabError, match=r"^input .*nope.png not found: pass input="):
        upscale(compose_upscale(f"ckpt_path={tmp_path / 'm.ckpt'}", f"input={tmp_path / 'nope.png'}"))
    with pytest.raises(SrlabError, match=r"^checkpoint .*missing.ckpt not found"):
        upscale(compose_upscale(f"ckpt_path={tmp_path / 'missing.ckpt'}", f"input={tmp_path / 'a.jpg'}"))
    with pytest.raises(SrlabError, match=r"tile >= 97 \(3 x overlap \+ 1\)"):
        upscale(compose_upscale(f"ckpt_path={tmp_path / 'm.ckpt'}", f"input={tmp_path / 'a.jpg'}", "tile=64"))


def test_plan_never_overwrites_or_merges(tmp_path):
    (tmp_path / "in").mkdir()
    for name in ("a.png", "a.jpg"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "in" / name)
    with pytest.raises(SrlabError, match=r"would both be written to .*a.png: rename one"):
        plan(str(tmp_path / "in"), None, 4)
    with pytest.raises(SrlabError, match=r"is the input folder"):
        plan(str(tmp_path / "in"), str(tmp_path / "in"), 4)
    with pytest.raises(SrlabError, match=r"would overwrite its input"):
        plan(str(tmp_path / "in" / "a.png"), str(tmp_path / "in" / "a.png"), 4)
    pairs, target = plan(str(tmp_path / "in" / "a.jpg"), str(tmp_path / "in"), 4)
    assert pairs == [(tmp_path / "in" / "a.jpg", tmp_path / "in" / "a.png")] and target == pairs[0][1]


def test_half_on_cpu_falls_back_to_float32(caplog):
    assert pick_device("cpu", half=True) == (torch.device("cpu"), torch.float32)
    assert "half=true needs a CUDA device" in caplog.text


def test_unsafe_checkpoint_needs_trust(net_dir, tmp_path):
    import srlab_test_tinynet

    net = make_ckpt(tmp_path / "evil.ckpt", extra={"callback_state": srlab_test_tinynet.Marker()})
    with pytest.raises(SrlabError) as err:
        load_net(tmp_path / "evil.ckpt")
    assert str(err.value) == (f"checkpoint {tmp_path / 'evil.ckpt'} holds a code payload (pickle asks to run "
                              "srlab_test_tinynet.Marker); if you trust its source, pass trust_checkpoint=true "
                              "(that runs whatever code the file holds)")
    loaded, info = load_net(tmp_path / "evil.ckpt", trust_checkpoint=True)
    x = torch.rand(3, 9, 11)
    assert torch.equal(sr(loaded, x), sr(net, x)) and info["source"] == "checkpoint" and info["scale"] == 2


def test_bad_checkpoints_are_one_line(net_dir, tmp_path):
    (tmp_path / "text.ckpt").write_text("hello")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    torch.save({"state_dict": {"model.w": torch.zeros(1)}, "srlab_config": {"scale": 2, "net": NET_CONFIG}},
               tmp_path / "noweights.ckpt")
    make_ckpt(tmp_path / "wrong.ckpt")
    bad = torch.load(tmp_path / "wrong.ckpt", weights_only=True)
    bad["srlab_config"]["net"]["channels"] = 4
    torch.save(bad, tmp_path / "wrong.ckpt")
    for name, message in [("text.ckpt", "is damaged or not a PyTorch file"), ("foreign.ckpt", "not written by srlab-train"),
                          ("noweights.ckpt", "holds no weights for the net"), ("wrong.ckpt", "do not fit the net")]:
        with pytest.raises(SrlabError, match=message) as err:
            load_net(tmp_path / name)
        assert "\n" not in str(err.value)


def test_export_reloads_without_hydra_or_lightning(net_dir, tmp_path, monkeypatch, capsys):
    net = make_ckpt(tmp_path / "best.ckpt", seed=5)
    from srlab.cli.export import main

    monkeypatch.setattr(sys, "argv", ["srlab-export", f"ckpt_path={tmp_path / 'best.ckpt'}"])
    try:
        main()
    finally:
        GlobalHydra.instance().clear()
    exported, twin = tmp_path / "best.srlab.pt", tmp_path / "best.srlab.safetensors"
    assert capsys.readouterr().out.strip().splitlines()[-2:] == [str(exported), str(twin)]
    assert load_net(twin)[1]["net_config"] == NET_CONFIG  # the safetensors twin, config in its metadata
    payload = torch.load(exported, weights_only=True)
    assert set(payload) == {"format", "net_config", "scale", "state_dict"} and payload["format"] == "srlab-net/1"
    assert payload["net_config"] == NET_CONFIG and payload["scale"] == 2
    assert export(tmp_path / "best.ckpt", tmp_path / "other.pt", safetensors=False) == [tmp_path / "other.pt"]

    x = torch.rand(1, 3, 13, 17)
    torch.save(x, tmp_path / "x.pt")
    code = textwrap.dedent(f"""
        import sys, torch
        from srlab.inference.checkpoint import load_net
        net, info = load_net({str(exported)!r})
        heavy = [m for m in ("hydra", "omegaconf", "pytorch_lightning", "lightning") if m in sys.modules]
        assert not heavy, heavy
        assert info["source"] == "export" and info["scale"] == 2
        with torch.no_grad():
            torch.save(net(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(net_dir)})
    assert run.returncode == 0, run.stderr
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "y.pt"), net(x))
