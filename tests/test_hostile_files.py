"""A model file is data: hostile files built by hand, each refused in one line with no effect.

Each test builds its file in a temp folder the way an attacker would and asserts the outcome:
the marker file a payload would create does not appear, the victim file is unchanged, the
error is one line, the refusal comes before memory is spent. Classes (issue 28):
code named in a config (.srlab.pt, .safetensors metadata, .ckpt, eval.degradation=train),
TorchScript and pickle payloads, writes through symlinks, memory bombs (declared nets, zip
records, image sizes), silent garbage (NaN / integer weights), and the one-line cases.
"""
import io
import json
import os
import time
import zipfile

import pytest
import torch

from srlab.cli.eval import eval_degradation
from srlab.cli.export import export
from srlab.cli.upscale import plan, upscale
from srlab.config.compose import check_resume_checkpoint
from srlab.errors import SrlabError
from srlab.inference.checkpoint import load_net
from srlab.nets.spandrel_arch import pretrained
from tests.test_upscale import NET_CONFIG, make_ckpt, tiny_net

EXPORT = "srlab-net/1"


def one_line(err) -> str:
    message = str(err.value)
    assert message and "\n" not in message and "Traceback" not in message
    return message


def export_file(path, net_config, state_dict=None, scale=2):
    torch.save({"format": EXPORT, "net_config": net_config, "scale": scale,
                "state_dict": state_dict if state_dict is not None else tiny_net().state_dict()}, path)
    return path


# ---- 1. nothing named in a file is imported or called ----

def payload(marker) -> dict:
    return {"_target_": "subprocess.getoutput", "cmd": f"touch {marker}; echo 2"}


def test_export_config_naming_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    nested = {**NET_CONFIG, "scale": payload(marker)}  # the case: a nested argument
    top = {**payload(marker)}  # the target itself
    spandrel_nested = {"_target_": "srlab.nets.spandrel_arch.SpandrelNet", "arch": "SPAN", "scale": payload(marker)}
    for i, cfg in enumerate([nested, top, spandrel_nested]):
        with pytest.raises(SrlabError) as err:
            load_net(export_file(tmp_path / f"evil{i}.srlab.pt", cfg))
        assert "subprocess.getoutput" in one_line(err) and f"evil{i}.srlab.pt" in str(err.value)
    assert not marker.exists()


def test_checkpoint_and_safetensors_configs_naming_code_are_refused(tmp_path):
    from safetensors.torch import save_file

    marker = tmp_path / "pwned"
    make_ckpt(tmp_path / "run.ckpt")
    ckpt = torch.load(tmp_path / "run.ckpt", weights_only=True)
    ckpt["srlab_config"]["net"] = {**NET_CONFIG, "channels": payload(marker)}
    torch.save(ckpt, tmp_path / "evil.ckpt")
    meta = {"format": EXPORT, "net_config": json.dumps({**NET_CONFIG, "_target_": "os.system",
                                                        "command": f"touch {marker}"}), "scale": "2"}
    save_file(tiny_net().state_dict(), str(tmp_path / "evil.srlab.safetensors"), metadata=meta)
    for name in ("evil.ckpt", "evil.srlab.safetensors"):
        with pytest.raises(SrlabError) as err:
            load_net(tmp_path / name)
        assert name in one_line(err)
    # srlab-export copies nothing of it: no file is written
    with pytest.raises(SrlabError):
        export(tmp_path / "evil.ckpt", tmp_path / "out.srlab.pt")
    assert not marker.exists() and not (tmp_path / "out.srlab.pt").exists()


def test_gan_init_from_refuses_before_running_anything(tmp_path):
    from srlab.approaches.gan import GanSR

    marker = tmp_path / "pwned"
    export_file(tmp_path / "evil.srlab.pt", {**NET_CONFIG, "scale": payload(marker)})
    gan = GanSR.__new__(GanSR)
    with pytest.raises(SrlabError) as err:
        GanSR.init_generator(gan, str(tmp_path / "evil.srlab.pt"))
    assert "subprocess.getoutput" in one_line(err) and not marker.exists()


def test_eval_degradation_train_builds_only_srlab_degradations(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    cfg = {"degradation": {"_target_": "shutil.copyfile", "src": "/etc/hostname", "dst": str(victim)}}
    with pytest.raises(SrlabError) as err:
        eval_degradation("train", 2, cfg)
    assert "shutil.copyfile" in one_line(err) and victim.read_text() == "precious"
    bicubic = eval_degradation("train", 2, {"degradation": {"_target_": "srlab.data.degrade.BicubicDegradation",
                                                             "scale": 2}})
    assert type(bicubic).__name__ == "BicubicDegradation"


def test_plain_srlab_configs_still_load(tmp_path):
    net = make_ckpt(tmp_path / "run.ckpt")
    loaded, info = load_net(tmp_path / "run.ckpt")
    x = torch.rand(1, 3, 9, 11)
    assert torch.equal(loaded(x), net(x)) and info["net_config"] == NET_CONFIG


# ---- 2. no TorchScript or pickle code without trust_checkpoint=true ----

class Scripted(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3)

    def forward(self, x):
        return self.conv(x)


def test_torchscript_is_refused_without_trust(tmp_path):
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(Scripted()), str(path))
    for load in (lambda: load_net(path), lambda: pretrained(str(path))):
        with pytest.raises(SrlabError) as err:
            load()
        assert "TorchScript" in one_line(err) and "trust_checkpoint=true" in str(err.value)
    with pytest.raises(SrlabError) as err:  # trusted: read, then judged as weights (no SR architecture)
        pretrained(str(path), trust_checkpoint=True)
    assert "recognises no architecture" in one_line(err)


def test_pickle_payload_is_named_as_code_and_runs_only_when_trusted(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    make_ckpt(tmp_path / "run.ckpt")
    ckpt = torch.load(tmp_path / "run.ckpt", weights_only=True)
    torch.save({**ckpt, "extra": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(SrlabError) as err:
        load_net(tmp_path / "evil.ckpt")
    assert "code payload" in one_line(err) and "system" in str(err.value) and not marker.exists()
    with pytest.raises(SrlabError) as err:  # resume: one line too, before Lightning sees it
        check_resume_checkpoint(tmp_path / "evil.ckpt")
    assert "code payload" in one_line(err) and not marker.exists()
    load_net(tmp_path / "evil.ckpt", trust_checkpoint=True)  # the user's explicit choice
    assert marker.exists()


# ---- 3. writes stay where the user asked ----

def test_upscale_replaces_a_symlink_at_its_output_name_and_never_writes_through_it(tmp_path, make_cfg):
    import numpy as np
    from PIL import Image

    make_ckpt(tmp_path / "m.ckpt")
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(tmp_path / "photo.png")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "photo_x2.png").symlink_to(victim)
    upscale(make_cfg([f"ckpt_path={tmp_path / 'm.ckpt'}", f"input={tmp_path / 'photo.png'}", "progress=false"],
                     config_name="upscale"))
    assert victim.read_text() == "precious"
    assert not (tmp_path / "photo_x2.png").is_symlink() and Image.open(tmp_path / "photo_x2.png").size == (20, 24)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left

    # a folder input: a planted default output folder, or a symlinked sub-folder inside it, is refused
    (tmp_path / "in" / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(tmp_path / "in" / "sub" / "a.png")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "in_x2").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(SrlabError) as err:
        plan(str(tmp_path / "in"), None, 2)
    assert "symlink" in one_line(err)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(SrlabError) as err:
        upscale(make_cfg([f"ckpt_path={tmp_path / 'm.ckpt'}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}",
                          "progress=false"], config_name="upscale"))
    assert "symlink" in one_line(err) and list((tmp_path / "elsewhere").iterdir()) == []


def test_export_replaces_a_symlink_at_its_output(tmp_path):
    make_ckpt(tmp_path / "best.ckpt")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "best.srlab.pt").symlink_to(victim)
    export(tmp_path / "best.ckpt", safetensors=False)
    assert victim.read_text() == "precious" and not (tmp_path / "best.srlab.pt").is_symlink()


# ---- 4. bounded memory ----

def test_declared_net_far_beyond_the_file_is_refused_in_seconds(tmp_path):
    """spandrel's Compact reads its width off the first conv and its depth off the key count:
    one number expanded (stride 0) makes a 2000-conv, 2048-channel net (~150 GB) of a tiny file."""
    one = torch.zeros(1)
    bomb = {"body.0.weight": one.expand(2048, 3, 3, 3), "body.0.bias": one.expand(2048)}
    for i in range(1, 4000, 2):
        bomb[f"body.{i}.weight"] = one.expand(2048)
        bomb[f"body.{i + 1}.weight"] = one.expand(2048, 2048, 3, 3)
        bomb[f"body.{i + 1}.bias"] = one.expand(2048)
    bomb["body.4000.weight"], bomb["body.4000.bias"] = one.expand(48, 2048, 3, 3), one.expand(48)
    torch.save(bomb, tmp_path / "compact.pth")
    assert (tmp_path / "compact.pth").stat().st_size < 2 << 20
    start = time.perf_counter()
    for load in (lambda: load_net(tmp_path / "compact.pth"), lambda: pretrained(str(tmp_path / "compact.pth"))):
        with pytest.raises(SrlabError) as err:
            load()
        assert "refused" in one_line(err) and "GiB" in str(err.value)
    assert time.perf_counter() - start < 20


def test_srlab_config_declaring_a_huge_net_is_refused(tmp_path):
    cfg = {"_target_": "srlab.nets.edsr.EDSR", "scale": 2, "channels": 4096, "n_blocks": 64}
    with pytest.raises(SrlabError) as err:
        load_net(export_file(tmp_path / "huge.srlab.pt", cfg, {"head.weight": torch.zeros(1)}))
    assert "refused" in one_line(err)


def test_zip_record_inflating_far_beyond_the_file_is_refused(tmp_path):
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buffer)
    src = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(tmp_path / "bomb.pth", "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_STORED)
        dst.writestr("archive/data/9", b"\0" * (64 << 20), compress_type=zipfile.ZIP_DEFLATED)
    assert (tmp_path / "bomb.pth").stat().st_size < 1 << 20
    with pytest.raises(SrlabError) as err:
        load_net(tmp_path / "bomb.pth")
    assert "zip bomb" in one_line(err)


def png_header_only(path, width, height):
    """A PNG that declares width x height and holds no pixels: what Image.open sees first."""
    import struct
    import zlib

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))


def test_upscale_refuses_an_input_over_the_pixel_limit_before_decoding(tmp_path, make_cfg):
    make_ckpt(tmp_path / "m.ckpt")
    png_header_only(tmp_path / "huge.png", 13000, 13000)
    base = [f"ckpt_path={tmp_path / 'm.ckpt'}", f"input={tmp_path / 'huge.png'}", "progress=false"]
    start = time.perf_counter()
    with pytest.raises(SrlabError) as err:  # x2 of 13000^2 is 676 megapixels
        upscale(make_cfg(base + ["max_output_megapixels=500"], config_name="upscale"))
    assert "max_output_megapixels=500" in one_line(err) and "13000x13000" in str(err.value)
    assert time.perf_counter() - start < 10 and not (tmp_path / "huge_x2.png").exists()


# ---- 5. weights are checked at load ----

@pytest.mark.parametrize("bad, word", [(float("nan"), "NaN"), (float("inf"), "Inf"), ("int64", "int64"),
                                       ("bool", "bool")])
def test_garbage_weights_are_refused_naming_the_tensor(tmp_path, bad, word):
    state = tiny_net().state_dict()
    name = "head.weight"
    if isinstance(bad, float):
        state[name] = state[name].clone()
        state[name][0, 0, 0, 0] = bad
    else:
        state[name] = state[name].to(getattr(torch, bad))
    with pytest.raises(SrlabError) as err:
        load_net(export_file(tmp_path / "garbage.srlab.pt", NET_CONFIG, state))
    assert f"'{name}'" in one_line(err) and word in str(err.value)


def test_garbage_weights_in_a_community_file_are_refused(tmp_path):
    from spandrel.architectures.SPAN import SPAN

    state = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2).state_dict()
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = torch.full_like(state[first], float("nan"))
    torch.save(state, tmp_path / "span.pth")
    with pytest.raises(SrlabError) as err:
        load_net(tmp_path / "span.pth")
    assert first in one_line(err) and "NaN" in str(err.value)


# ---- 6. one line, never a traceback ----

def test_odd_files_and_inputs_are_one_line(tmp_path, make_cfg, capsys):
    from safetensors.torch import save_file

    from srlab.cli.entry import check_parsable

    state = tiny_net().state_dict()
    save_file(state, str(tmp_path / "notjson.safetensors"), metadata={"format": EXPORT, "net_config": "{oops",
                                                                      "scale": "2"})
    save_file(state, str(tmp_path / "noscale.safetensors"), metadata={"format": EXPORT,
                                                                     "net_config": json.dumps(NET_CONFIG)})
    (tmp_path / "folder.pth").mkdir()
    os.mkfifo(tmp_path / "fifo.ckpt")
    os.mkfifo(tmp_path / "fifo.png")
    for name, words in [("notjson.safetensors", "JSON net_config"), ("noscale.safetensors", "integer scale"),
                        ("folder.pth", "is a folder"), ("fifo.ckpt", "not a regular file")]:
        with pytest.raises(SrlabError) as err:
            load_net(tmp_path / name)
        assert words in one_line(err)
    with pytest.raises(SrlabError) as err:  # would hang in Image.open
        plan(str(tmp_path / "fifo.png"), None, 2)
    assert "not a regular file" in one_line(err)
    with pytest.raises(SystemExit):
        check_parsable(["input=photos/photo (1).png"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "input='photos/photo (1).png'" in lines[0]
    check_parsable(["input='photos/photo (1).png'"])  # quoted: parses
