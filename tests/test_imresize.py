"""Checks that srlab.ops.imresize is MATLAB's imresize: against an independent loop reference,
hand-derived values, invariants, gradients, and the published bicubic PSNR on Set5/Set14."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srlab.errors import SrlabError
from srlab.ops.imresize import imresize

BENCH = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


# ---------- independent loop reference of MATLAB's imresize.m (one output pixel at a time) ----------
def _ref_kernel(name, t):
    a = abs(t)
    if name == "cubic":
        if a <= 1:
            return 1.5 * a**3 - 2.5 * a**2 + 1
        return -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2 if a <= 2 else 0.0
    if name == "triangle":
        return max(0.0, 1 - a)
    if name == "box":
        return 1.0 if -0.5 <= t < 0.5 else 0.0
    n = {"lanczos2": 2, "lanczos3": 3}[name]
    eps = np.finfo(float).eps
    return ((math.sin(math.pi * t) * math.sin(math.pi * t / n) + eps) / (math.pi**2 * t * t / n + eps)) * (a < n)


_WIDTH = {"cubic": 4, "triangle": 2, "box": 1, "lanczos2": 4, "lanczos3": 6}


def _reflect(i, n):
    # Half-sample symmetric extension, 0-based: -1 -> 0, -2 -> 1, n -> n-1, n+1 -> n-2.
    while i < 0 or i >= n:
        i = -i - 1 if i < 0 else 2 * n - 1 - i
    return i


def _ref_resize_1d(v, out_len, scale, kernel, antialias):
    n = len(v)
    stretch = scale < 1 and antialias
    width = _WIDTH[kernel] / scale if stretch else _WIDTH[kernel]
    out = np.zeros(out_len)
    for j in range(1, out_len + 1):
        u = j / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = [left + k for k in range(math.ceil(width) + 2)]
        ws = [scale * _ref_kernel(kernel, scale * (u - i)) if stretch else _ref_kernel(kernel, u - i) for i in taps]
        total = sum(ws)
        out[j - 1] = sum(w / total * v[_reflect(i - 1, n)] for w, i in zip(ws, taps))
    return out


def _ref_imresize(img, out_hw, scales, kernel="cubic", antialias=True):
    """img: numpy [H, W]. Rows first, then columns."""
    tmp = np.stack([_ref_resize_1d(img[:, c], out_hw[0], scales[0], kernel, antialias) for c in range(img.shape[1])], 1)
    return np.stack([_ref_resize_1d(tmp[r], out_hw[1], scales[1], kernel, antialias) for r in range(out_hw[0])], 0)


# ---------- agreement with the reference ----------
@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2, 3, 4])
def test_matches_loop_reference(scale, antialias):
    rng = np.random.default_rng(0)
    shape = (25, 19) if scale < 1 else (7, 6)  # odd sizes on purpose
    img = rng.random(shape)
    out_hw = (math.ceil(shape[0] * scale), math.ceil(shape[1] * scale))
    want = _ref_imresize(img, out_hw, (scale, scale), "cubic", antialias)
    got = imresize(torch.tensor(img, dtype=torch.float32)[None], scale, antialias=antialias)[0]
    assert got.shape == out_hw
    assert np.abs(got.numpy() - want).max() < 1e-5


@pytest.mark.parametrize("kernel", ["triangle", "box", "lanczos2", "lanczos3"])
@pytest.mark.parametrize("scale", [1 / 3, 2])
def test_other_kernels_match_reference(kernel, scale):
    img = np.random.default_rng(1).random((12, 9))
    out_hw = (math.ceil(12 * scale), math.ceil(9 * scale))
    want = _ref_imresize(img, out_hw, (scale, scale), kernel)
    got = imresize(torch.tensor(img)[None], scale, kernel=kernel)[0]
    assert np.abs(got.numpy() - want).max() < 1e-10


def test_size_argument_uses_per_axis_scale():
    img = np.random.default_rng(2).random((10, 15))
    want = _ref_imresize(img, (4, 21), (4 / 10, 21 / 15))
    got = imresize(torch.tensor(img), size=(4, 21))
    assert got.shape == (4, 21)
    assert np.abs(got.numpy() - want).max() < 1e-10


# ---------- hand-derived values ----------
def test_impulse_x2_gives_keys_cubic_weights():
    # x2 samples the a=-0.5 cubic at offsets 0.25, 0.75, 1.25, 1.75: k = 0.8671875, 0.2265625,
    # -0.0703125, -0.0234375 (computed by hand from the polynomial; they sum to 1).
    v = torch.zeros(1, 11, dtype=torch.float64)
    v[0, 5] = 1
    out = imresize(v, size=(1, 22))[0]
    taps = [-0.0234375, -0.0703125, 0.2265625, 0.8671875, 0.8671875, 0.2265625, -0.0703125, -0.0234375]
    assert out[7:15].tolist() == pytest.approx(taps, abs=1e-12)
    assert out[:7].abs().max() < 1e-12 and out[15:].abs().max() < 1e-12


@pytest.mark.parametrize("scale", [2, 3, 4, 1 / 2, 1 / 3, 1 / 4])
def test_ramp_is_preserved_in_interior(scale):
    # Cubic convolution with a=-0.5 reproduces linear functions, and for 1/int the stretched
    # taps sit symmetrically around u, so output = ramp evaluated at MATLAB's u = j/s + (1-1/s)/2.
    n = 48
    ramp = torch.arange(1, n + 1, dtype=torch.float64)[None]
    out = imresize(ramp, size=(1, round(n * scale)))[0]
    j = torch.arange(1, out.numel() + 1, dtype=torch.float64)
    u = j / scale + 0.5 * (1 - 1 / scale)
    half = 2 / scale if scale < 1 else 2  # half kernel support, in input pixels
    inner = (u - half - 1 >= 1) & (u + half + 1 <= n)  # taps stay clear of the mirrored border
    assert inner.sum() >= out.numel() // 2
    assert torch.allclose(out[inner], u[inner], atol=1e-10)
    assert not torch.allclose(out[:1], u[:1], atol=1e-3)  # the border really is mirrored


# ---------- invariants, shapes, errors, gradients ----------
@pytest.mark.parametrize("kernel", ["cubic", "linear", "box", "lanczos2", "lanczos3", "nearest"])
@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 2, 3])
def test_constant_stays_constant(kernel, scale):
    x = torch.full((2, 3, 13, 10), 0.37)
    assert torch.allclose(imresize(x, scale, kernel=kernel), torch.tensor(0.37), atol=1e-6)


def test_output_sizes_and_leading_dims():
    x = torch.rand(2, 3, 13, 17)
    assert imresize(x, 0.5).shape == (2, 3, 7, 9)
    assert imresize(x, 1 / 3).shape == (2, 3, 5, 6)
    assert imresize(x, 3).shape == (2, 3, 39, 51)
    assert imresize(x, size=(10, 4)).shape == (2, 3, 10, 4)
    assert imresize(x[0, 0], 0.25).shape == (4, 5)
    assert imresize(torch.rand(1, 3, 30, 30), 0.1).shape == (1, 3, 3, 3)  # round-off guard
    # Batched result equals per-image result, and dtype is kept.
    assert torch.allclose(imresize(x, 0.5)[1], imresize(x[1], 0.5), atol=1e-6)
    assert imresize(x.double(), 2).dtype == torch.float64
    assert imresize(x, 1.0).equal(x)


def test_banded_blocks_match_dense_reference_on_large_input():
    # 300 -> 1200 spans many 64-row blocks; compare one row/column against the loop reference.
    img = np.random.default_rng(3).random((3, 300))
    got = imresize(torch.tensor(img), size=(3, 1200))
    want = _ref_resize_1d(img[1], 1200, 4.0, "cubic", True)
    assert np.abs(got[1].numpy() - want).max() < 1e-10


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(SrlabError, match="floating"):
        imresize(torch.zeros(3, 8, 8, dtype=torch.uint8), 0.5)
    with pytest.raises(SrlabError, match="exactly one"):
        imresize(torch.zeros(3, 8, 8), 0.5, size=(4, 4))
    with pytest.raises(SrlabError, match="exactly one"):
        imresize(torch.zeros(3, 8, 8))
    with pytest.raises(SrlabError, match="unknown kernel"):
        imresize(torch.zeros(3, 8, 8), 0.5, kernel="gaussian")


def test_gradcheck():
    x = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: imresize(t, 0.5), (x,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda t: imresize(t, size=(7, 3), kernel="lanczos3"), (x,), fast_mode=True)
    y = torch.rand(40, 2, dtype=torch.float64, requires_grad=True)  # 80 output rows: 2 blocks
    assert torch.autograd.gradcheck(lambda t: imresize(t, 2), (y,), fast_mode=True)


# ---------- published bicubic baselines ----------
PUBLISHED = {"Set5": {2: 33.66, 3: 30.39, 4: 28.42}, "Set14": {2: 30.24, 3: 27.55, 4: 26.00}}


def _y(a):
    a = a.astype(np.float64)  # MATLAB rgb2ycbcr on [0, 255]; gray images keep their values
    return a if a.ndim == 2 else 16 + (65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255


def _psnr(a, b, border):
    d = (a - b)[border:-border, border:-border]
    return 10 * np.log10(255**2 / np.mean(d**2))


def _bicubic_psnr(path, s, y_first):
    hr = np.asarray(Image.open(path))
    hr = hr[: hr.shape[0] - hr.shape[0] % s, : hr.shape[1] - hr.shape[1] % s]
    if y_first:  # SRCNN-era MATLAB pipeline: uint8 Y, resize Y only in float
        gt = np.round(_y(hr))
        t = torch.from_numpy(gt) / 255
    else:  # REFERENCE.md convention: resize RGB, measure Y
        gt = _y(hr)
        t = torch.from_numpy(hr.astype(np.float64) / 255)
        t = t.permute(2, 0, 1) if t.ndim == 3 else t
    sr = (imresize(imresize(t, 1 / s), s).clamp(0, 1) * 255).round()
    sr = sr.permute(1, 2, 0).numpy() if sr.ndim == 3 else sr.numpy()
    return _psnr(sr if y_first else _y(sr), gt, s)


@pytest.mark.slow  # ~6 s each on 2 cores
@pytest.mark.skipif(not BENCH.is_dir(), reason="benchmark images not present")
@pytest.mark.parametrize("y_first,tol", [(True, 0.01), (False, 0.03)])
def test_published_bicubic_psnr(y_first, tol):
    # The published numbers come from the Y-only pipeline (within 0.01 dB here). The RGB
    # convention of REFERENCE.md gives up to +0.03 dB (Set5 x2: 33.687), a convention effect.
    for name, per_scale in PUBLISHED.items():
        files = sorted((BENCH / name / "HR").glob("*.png"))
        for s, want in per_scale.items():
            got = float(np.mean([_bicubic_psnr(f, s, y_first) for f in files]))
            assert abs(got - want) <= tol, (name, s, got, want)
