"""The measures: LPIPS and DISTS equal their reference packages given one random backbone
(offline), NIQE equal to MATLAB's published value, directions, offline and optional loading."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import models

from srlab.errors import SrlabError
from srlab.evaluation import backbones
from srlab.evaluation.measures import MeasureMeans, build_measures, direction
from srlab.losses import vgg

SET14 = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "Set14" / "HR"
DEFINITIONS = {
    "psnr": {"_target_": "srlab.evaluation.psnr.PSNR"}, "ssim": {"_target_": "srlab.evaluation.ssim.SSIM"},
    "lpips": {"_target_": "srlab.evaluation.lpips.LPIPS", "backbone": "alex"},
    "lpips_vgg": {"_target_": "srlab.evaluation.lpips.LPIPS", "backbone": "vgg"},
    "dists": {"_target_": "srlab.evaluation.dists.DISTS"}, "niqe": {"_target_": "srlab.evaluation.niqe.NIQE"},
}


@pytest.fixture(scope="module")
def random_nets():
    """One random AlexNet and VGG16 (torchvision's init), shared by srlab and the references."""
    torch.manual_seed(0)
    return {"alex": models.alexnet().eval(), "vgg": models.vgg16().eval()}


@pytest.fixture
def hub(tmp_path, monkeypatch, random_nets):
    """The random nets saved where torchvision keeps ImageNet weights (features only: the
    classifier is never read), so srlab goes through its real loading path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name, net in random_nets.items():
        path = vgg.hub_file(backbones.BACKBONES[name][1])
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({f"features.{k}": v for k, v in net.features.state_dict().items()}, path)
    return random_nets


def images(n=2, h=64, w=72, seed=1):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(n, 3, h, w, generator=g)
    sr = (hr + 0.15 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)
    return (torch.round(sr * 255) / 255, torch.round(hr * 255) / 255)  # already 8-bit: no rounding differences


@pytest.mark.parametrize("backbone,name", [("alex", "lpips"), ("vgg", "lpips_vgg")])
def test_lpips_equals_the_lpips_package_given_the_same_backbone(hub, monkeypatch, backbone, name):
    lpips = pytest.importorskip("lpips")
    monkeypatch.setattr(lpips.pretrained_networks.tv, {"alex": "alexnet", "vgg": "vgg16"}[backbone],
                        lambda **kw: hub[backbone])
    reference = lpips.LPIPS(net=backbone, pnet_rand=True, verbose=False).eval()
    ours = build_measures([name], DEFINITIONS)[name]
    sr, hr = images()
    with torch.no_grad():
        expected = reference(sr, hr, normalize=True).reshape(-1)
    got = ours(sr, hr)[name]
    assert float(expected.min()) > 0.01  # not trivially zero
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got, expected)
    assert float((got - expected).abs().max()) < 1e-5


def test_dists_equals_the_dists_package_given_the_same_backbone(hub, monkeypatch):
    dists_pt = pytest.importorskip("DISTS_pytorch.DISTS_pt")
    monkeypatch.setattr(dists_pt.models, "vgg16", lambda **kw: hub["vgg"])
    reference = dists_pt.DISTS(load_weights=False)
    learned = torch.load(Path(dists_pt.__file__).with_name("weights.pt"), map_location="cpu", weights_only=True)
    reference.alpha.data, reference.beta.data = learned["alpha"], learned["beta"]
    ours = build_measures(["dists"], DEFINITIONS)["dists"]
    sr, hr = images()
    expected = reference(sr, hr).reshape(-1).detach()
    got = ours(sr, hr)["dists"]
    assert float(expected.min()) > 0.005
    assert float((got - expected).abs().max()) < 1e-5, (got, expected)
    assert float(ours(hr, hr)["dists"].abs().max()) < 1e-5  # identical images: 0


@pytest.mark.skipif(not SET14.is_dir(), reason="benchmark images (../shared) not present")
def test_niqe_equals_matlab_on_baboon():
    """MATLAB R2021a's niqe on Set14's baboon: 5.72957338 (as published with basicsr 1.4.2)."""
    niqe = build_measures(["niqe"], DEFINITIONS)["niqe"]
    img = torch.from_numpy(np.array(Image.open(SET14 / "baboon.png").convert("RGB"))).permute(2, 0, 1)[None] / 255.0
    assert float(niqe(img, None, 0)["niqe"]) == pytest.approx(5.72957338, abs=1e-4)


def test_niqe_ranks_noise_and_blur_worse_and_skips_tiny_images():
    niqe = build_measures(["niqe"], DEFINITIONS)["niqe"]
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(192.0), torch.arange(288.0), indexing="ij")
    clean = (0.5 + 0.25 * torch.sin(xx / 7) * torch.cos(yy / 11) + 0.1 * ((xx // 24 + yy // 24) % 2))
    clean = clean.expand(1, 3, -1, -1)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    a, b = float(niqe(clean, None)["niqe"]), float(niqe(noisy, None)["niqe"])
    assert np.isfinite(a) and b > a
    with pytest.warns(UserWarning, match="fewer than two 96x96 blocks"):
        assert torch.isnan(niqe(torch.rand(1, 3, 100, 100), None)["niqe"]).all()


def test_directions_come_from_the_measures():
    built = build_measures(["psnr", "ssim", "niqe"], DEFINITIONS)
    assert direction("val/psnr_y", built) == "max" and direction("val/bicubic_ssim_y", built) == "max"
    assert direction("val/niqe", built) == "min" and direction("val/sample_niqe", built) == "min"
    assert direction("val/gain_psnr_y", built) == "max" and direction("val/loss", built) == "min"
    assert direction("val/something", built) is None


def test_offline_without_a_backbone_is_one_line_unless_optional(offline_hub, caplog):
    with pytest.raises(SrlabError) as err:
        build_measures(["psnr", "lpips"], DEFINITIONS)
    msg = str(err.value)
    assert "\n" not in msg and f"put alexnet-owt-7be5be79.pth in {offline_hub}/" in msg
    built = build_measures(["psnr", "lpips", "dists"], DEFINITIONS, optional=["lpips", "dists"])
    assert list(built) == ["psnr"] and "lpips left out" in caplog.text and "dists left out" in caplog.text
    with pytest.raises(SrlabError, match="val.metrics: topiq is not a measure: use psnr, ssim"):
        build_measures(["topiq"], DEFINITIONS)


def test_means_skip_nan_and_sum_per_key():
    means = MeasureMeans(["psnr_y", "niqe", "dists"])
    means.update({"psnr_y": torch.tensor([30.0, 32.0]), "niqe": torch.tensor([4.0, float("nan")])})
    means.update({"psnr_y": torch.tensor([34.0]), "niqe": torch.tensor([6.0])})
    out = means.compute()
    assert float(out["psnr_y"]) == pytest.approx(32.0) and float(out["niqe"]) == pytest.approx(5.0)
    assert torch.isnan(out["dists"])  # nothing measured: NaN, never a best checkpoint
