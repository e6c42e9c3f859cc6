"""Synthetic camera degradations: registry, parameter checks, determinism, and that each does what it says."""

import numpy as np
import pytest
import skimage.data

from ioda.data import imresize
from ioda.data.degradations import DEGRADATIONS, degrade, gaussian_kernel, resolve_spec
from ioda.errors import IodaError

HR = skimage.data.astronaut()[64:192, 160:288]  # 128x128 face + flag: edges and flat areas


def _psnr(a, b):
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return 10 * np.log10(255.0**2 / mse)


def test_registry_has_the_documented_domains():
    assert {"bicubic", "canon_like", "low_light", "sensor_halo"} <= set(DEGRADATIONS)
    for deg in DEGRADATIONS.values():
        assert deg.defaults["scale"] == 4
        assert "Params" in deg.doc or "Defaults" in deg.doc  # docstring documents its parameters


def test_bicubic_is_matlab_imresize():
    assert np.array_equal(degrade(HR, {"type": "bicubic"}, seed=0), imresize(HR, 0.25))


@pytest.mark.parametrize("name", ["canon_like", "low_light", "sensor_halo"])
def test_deterministic_under_seed_and_seed_matters(name):
    a = degrade(HR, {"type": name}, seed=3)
    b = degrade(HR, {"type": name}, seed=3)
    c = degrade(HR, {"type": name}, seed=4)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", ["canon_like", "low_light", "sensor_halo"])
def test_target_domains_differ_from_source_but_keep_content(name):
    clean = imresize(HR, 0.25)
    lr = degrade(HR, {"type": name}, seed=0)
    psnr = _psnr(lr, clean)
    assert 12 < psnr < 35, psnr  # visibly degraded, yet the same picture
    assert abs(lr.astype(float).mean() - clean.astype(float).mean()) < 12  # no gross exposure change


def test_canon_like_blur_removes_detail_and_noise_is_signal_dependent():
    flat_dark = np.full((64, 64, 3), 30, np.uint8)
    flat_bright = np.full((64, 64, 3), 200, np.uint8)
    spec = {"type": "canon_like", "jpeg_quality": 95, "read_sigma": 0.0}
    dark = degrade(flat_dark, spec, 0).astype(float)
    bright = degrade(flat_bright, spec, 0).astype(float)
    assert bright.std() > 1.5 * dark.std()  # shot noise grows with the signal
    no_noise = {"type": "canon_like", "photons": 1e7, "read_sigma": 0.0, "jpeg_quality": 95}
    blurred = degrade(HR, no_noise, 0).astype(float)
    clean = imresize(HR, 0.25).astype(float)
    grad = lambda im: np.abs(np.diff(im, axis=1)).mean()  # noqa: E731
    assert grad(blurred) < 0.9 * grad(clean)


def test_low_light_noise_strongest_in_shadows():
    ramp = np.repeat(np.linspace(10, 245, 64)[None, :, None], 64, axis=0).repeat(3, axis=2).astype(np.uint8)
    lr = degrade(np.ascontiguousarray(ramp), {"type": "low_light"}, 0).astype(float)
    clean = imresize(np.ascontiguousarray(ramp), 0.25).astype(float)
    err = lr - clean
    # relative noise (noise / signal) is larger in the dark half: shot noise on a re-brightened signal
    dark, bright = slice(0, 6), slice(10, 16)
    rel_dark = err[:, dark].std() / clean[:, dark].mean()
    rel_bright = err[:, bright].std() / clean[:, bright].mean()
    assert rel_dark > 1.5 * rel_bright


def test_sensor_halo_adds_chroma_noise_and_overshoot():
    gray = np.full((64, 64, 3), 128, np.uint8)
    lr = degrade(gray, {"type": "sensor_halo", "luma_sigma": 0.0, "jpeg_quality": 95}, 0).astype(float)
    spread = lr.max(axis=2) - lr.min(axis=2)
    assert spread.mean() > 3  # a gray card comes out coloured
    step = np.zeros((64, 64, 3), np.uint8)
    step[:, 32:] = 200
    step[:, :32] = 60
    spec = {"type": "sensor_halo", "chroma_sigma": 0.0, "luma_sigma": 0.0, "jpeg_quality": 95}
    out = degrade(step, spec, 0).astype(float)
    clean = imresize(step, 0.25).astype(float)
    assert out.max() > clean.max() + 10 and out.min() < clean.min() - 10  # halos on both sides


def test_anisotropic_kernel_is_normalised_and_rotated():
    k = gaussian_kernel(3.0, 1.0, 0.0)
    assert k.sum() == pytest.approx(1.0)
    assert k[k.shape[0] // 2].sum() > k[:, k.shape[1] // 2].sum()  # wider along x
    k90 = gaussian_kernel(3.0, 1.0, 90.0)
    np.testing.assert_allclose(k90, k.T, atol=1e-12)


def test_params_override_and_errors_name_the_key():
    _, params = resolve_spec({"type": "canon_like", "jpeg_quality": 90})
    assert params["jpeg_quality"] == 90 and params["photons"] == 800.0
    with pytest.raises(IodaError, match="unknown degradation 'fisheye'"):
        degrade(HR, {"type": "fisheye"}, 0)
    with pytest.raises(IodaError, match=r"degradation\.blurr: unknown parameter"):
        degrade(HR, {"type": "canon_like", "blurr": 1.0}, 0)
    with pytest.raises(IodaError, match="jpeg_quality: 500 is outside"):
        degrade(HR, {"type": "canon_like", "jpeg_quality": 500}, 0)
    with pytest.raises(IodaError, match="expected a number"):
        degrade(HR, {"type": "low_light", "gamma": "2.2"}, 0)
    with pytest.raises(IodaError, match="'type' key"):
        degrade(HR, {"photons": 3}, 0)
    with pytest.raises(IodaError, match="not divisible by scale 4"):
        degrade(HR[:126], {"type": "bicubic"}, 0)


def test_scale_parameter():
    lr = degrade(HR, {"type": "canon_like", "scale": 2}, 0)
    assert lr.shape == (64, 64, 3)
