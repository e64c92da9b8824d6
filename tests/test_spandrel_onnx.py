"""srlab-export format=onnx for spandrel's architectures (srlab/inference/onnx_export.py), one
status each, measured on the tiny test nets of test_spandrel_nets.py: "dynamic" (height and
width free, checked at two odd sizes), "fixed" (the window padding freezes the traced size:
the dynamic export refuses in one line naming size=HxW, and size=32x32 works), "no" (one line
either way). A spandrel or torch update that changes a status fails here; docs/architectures.md
carries the same table. Three representatives run in make test, the rest in make test-full."""
import pytest
import torch

from srlab.errors import SrlabError
from srlab.inference.onnx_export import check_onnx, export_onnx

pytest.importorskip("onnxruntime")
pytest.importorskip("spandrel")
from tests.test_spandrel_nets import build  # noqa: E402

STATUS = {
    "compact": "dynamic", "span": "dynamic", "plksr": "dynamic", "realplksr": "dynamic", "mosr": "dynamic",
    "moesr": "dynamic", "swiftsrgan": "dynamic", "mmrealsr": "dynamic", "dat_light": "dynamic", "dat": "dynamic",
    "hat_s": "fixed", "hat": "fixed", "drct": "fixed", "fdat": "fixed", "omnisr": "fixed", "realcugan": "fixed",
    "rgt": "fixed", "rgt_s": "fixed", "craft": "fixed", "swin2sr": "fixed", "safmn": "fixed", "seemore": "fixed",
    "dctlsa": "fixed", "ditn": "fixed",
    "atd": "no", "atd_light": "no", "grl": "refused",
}
# Wider than test_spandrel_nets' TINY where a width of 12 leaves a zero-channel position-bias
# MLP (dim // 4 // 4 == 0), which onnxruntime's LayerNorm rejects; the real presets export.
WIDE = {"dat": dict(embed_dim=64, num_heads=[2], depth=[1], img_size=16),
        "rgt": dict(embed_dim=64, num_heads=[2], depth=[1], img_size=16),
        "rgt_s": dict(embed_dim=64, num_heads=[2], depth=[1], img_size=16),
        "craft": dict(embed_dim=48, num_heads=[2], depths=[1])}
FAST = {"span", "hat_s", "safmn", "grl"}


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in STATUS])
def test_onnx_status(name, tmp_path):
    torch.manual_seed(0)
    net, path, status = build(name, **WIDE.get(name, {})).eval(), tmp_path / f"{name}.onnx", STATUS[name]
    if status == "refused":  # the exporter would take the process down
        with pytest.raises(SrlabError, match=f"{net.arch_id} cannot be exported to ONNX: .*format=safetensors"):
            export_onnx(net, path)
        return
    if status == "dynamic":
        export_onnx(net, path)
        for size in [(23, 31), (40, 17)]:
            assert check_onnx(path, net, size=size, batch=1) <= 1e-3
        return
    with pytest.raises(SrlabError, match="does not export with dynamic height and width .*size=HxW"):
        export_onnx(net, path)
    if status == "fixed":
        assert export_onnx(net, path, size=(32, 32)) <= 1e-3
    else:
        with pytest.raises(SrlabError, match=f"{net.arch} does not export to ONNX even at size 32x32|differs from PyTorch"):
            export_onnx(net, path, size=(32, 32))
