"""PSNR/SSIM: hand-computed values, and agreement with an independent transcription of BasicSR's
published formulas (BGR input, bgr2ycbcr(y_only=True) in float32, _ssim with an 11x11 window and
the 'valid' region of cv2.filter2D)."""

import math

import numpy as np
import pytest

from ioda.metrics import calculate_psnr, calculate_ssim, gaussian_kernel_1d, rgb2ycbcr_y


# ---- reference: BasicSR's definitions written out directly (2-D window, no separability) ----
def _ref_to_y_channel(img_bgr):
    img = img_bgr.astype(np.float32) / 255.0
    y = np.dot(img, np.array([24.966, 128.553, 65.481], dtype=np.float32)) + 16.0  # bgr2ycbcr y_only
    y = y / 255.0
    return (y * 255.0)[..., None]


def _ref_crop(img, b):
    return img[b:-b, b:-b, ...] if b else img


def _ref_psnr(bgr1, bgr2, b, y=True):
    a, c = _ref_crop(bgr1, b), _ref_crop(bgr2, b)
    if y:
        a, c = _ref_to_y_channel(a), _ref_to_y_channel(c)
    a, c = a.astype(np.float64), c.astype(np.float64)
    mse = np.mean((a - c) ** 2)
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 * 255.0 / mse)


def _ref_window():
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / (2 * 1.5**2))
    g = g / g.sum()
    return np.outer(g, g)


def _ref_filter_valid(img, win):
    v = np.lib.stride_tricks.sliding_window_view(img, win.shape)
    return np.einsum("ijkl,kl->ij", v, win)


def _ref_ssim_1(a, c):
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    w = _ref_window()
    mu1, mu2 = _ref_filter_valid(a, w), _ref_filter_valid(c, w)
    s1 = _ref_filter_valid(a**2, w) - mu1**2
    s2 = _ref_filter_valid(c**2, w) - mu2**2
    s12 = _ref_filter_valid(a * c, w) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))
    return m.mean()


def _ref_ssim(bgr1, bgr2, b, y=True):
    a, c = _ref_crop(bgr1, b), _ref_crop(bgr2, b)
    if y:
        a, c = _ref_to_y_channel(a), _ref_to_y_channel(c)
    a, c = a.astype(np.float64), c.astype(np.float64)
    return float(np.mean([_ref_ssim_1(a[..., i], c[..., i]) for i in range(a.shape[2])]))


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (40, 36, 3)).astype(np.uint8)
    noisy = np.clip(base.astype(int) + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
    return base, noisy


# ---- hand-computed values ----
def test_y_of_primaries_matches_bt601():
    img = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    y = rgb2ycbcr_y(img)[0]
    assert np.allclose(y, [16 + 65.481, 16 + 128.553, 16 + 24.966, 16.0, 235.0], atol=1e-9)


def test_psnr_hand_computed_gray_and_rgb():
    black = np.zeros((4, 4, 3), np.uint8)
    white = np.full((4, 4, 3), 255, np.uint8)
    # Y: 16 vs 235, difference 219 everywhere
    assert calculate_psnr(black, white, 0) == pytest.approx(20 * math.log10(255 / 219), abs=1e-12)
    # RGB: difference 255 everywhere -> 0 dB
    assert calculate_psnr(black, white, 0, test_y_channel=False) == pytest.approx(0.0, abs=1e-12)
    # one pixel of 16 differs by 10 in one channel: MSE = 100 / (16*3)
    a = np.full((4, 4, 3), 100, np.uint8)
    b = a.copy()
    b[1, 2, 0] = 110
    assert calculate_psnr(a, b, 0, test_y_channel=False) == pytest.approx(10 * math.log10(255**2 * 48 / 100), abs=1e-12)


def test_ssim_hand_computed_constant_images():
    a = np.full((16, 16, 3), 50, np.uint8)
    b = np.full((16, 16, 3), 150, np.uint8)
    c1 = (0.01 * 255) ** 2
    ya, yb = 16 + 219 * 50 / 255, 16 + 219 * 150 / 255
    want = (2 * ya * yb + c1) / (ya**2 + yb**2 + c1)  # sigmas are 0, the c2 terms cancel
    assert calculate_ssim(a, b, 0) == pytest.approx(want, abs=1e-12)
    assert calculate_ssim(a, a, 0) == pytest.approx(1.0, abs=1e-12)


def test_gaussian_kernel_matches_cv2_definition():
    k = gaussian_kernel_1d(11, 1.5)
    assert k.sum() == pytest.approx(1.0, abs=1e-15)
    assert k[5] == k.max() and np.allclose(k, k[::-1])
    assert k[0] / k[5] == pytest.approx(math.exp(-25 / 4.5), rel=1e-12)


# ---- agreement with BasicSR's formulas ----
@pytest.mark.parametrize("crop", [0, 4])
@pytest.mark.parametrize("y", [True, False])
def test_matches_basicsr_reference(pair, crop, y):
    a, b = pair
    ref_p = _ref_psnr(a[..., ::-1], b[..., ::-1], crop, y)
    ref_s = _ref_ssim(a[..., ::-1], b[..., ::-1], crop, y)
    assert calculate_psnr(a, b, crop, test_y_channel=y) == pytest.approx(ref_p, abs=1e-6)
    assert calculate_ssim(a, b, crop, test_y_channel=y) == pytest.approx(ref_s, abs=1e-6)
    assert 10 < ref_p < 40 and 0 < ref_s < 1  # the comparison is not between degenerate values


def test_rgb_order_matters_for_y(pair):
    a, b = pair
    # swapping R and B changes Y: a BGR/RGB mix-up would be caught by the reference test above
    assert calculate_psnr(a[..., ::-1], b[..., ::-1], 0) != pytest.approx(calculate_psnr(a, b, 0), abs=1e-3)


def test_float_input_on_255_scale_and_chw(pair):
    a, b = pair
    p = calculate_psnr(a, b, 2)
    assert calculate_psnr(a.astype(np.float32), b.astype(np.float64), 2) == pytest.approx(p, abs=1e-9)
    assert calculate_psnr(a.transpose(2, 0, 1), b.transpose(2, 0, 1), 2, input_order="CHW") == pytest.approx(p)
    s = calculate_ssim(a, b, 2)
    assert calculate_ssim(a.transpose(2, 0, 1), b.transpose(2, 0, 1), 2, input_order="CHW") == pytest.approx(s)


def test_crop_border_ignores_border_differences():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (30, 30, 3)).astype(np.uint8)
    b = a.copy()
    b[:3] = 0
    b[:, -3:] = 255
    assert calculate_psnr(a, b, 3) == float("inf")
    assert math.isfinite(calculate_psnr(a, b, 2))
    assert calculate_ssim(a, b, 3) == pytest.approx(1.0, abs=1e-12)
    assert calculate_ssim(a, b, 2) < 1 - 1e-4


def test_identical_images_give_inf_psnr(pair):
    a, _ = pair
    assert calculate_psnr(a, a.copy(), 4) == float("inf")
    assert calculate_psnr(a, a.copy(), 0, test_y_channel=False) == float("inf")


def test_shape_mismatch_names_both_shapes(pair):
    a, _ = pair
    with pytest.raises(ValueError, match=r"\(40, 36, 3\) vs \(40, 35, 3\)"):
        calculate_psnr(a, a[:, :35], 0)
    with pytest.raises(ValueError, match="shapes differ"):
        calculate_ssim(a, a[:39], 0)


def test_too_small_for_ssim_and_overcrop():
    a = np.zeros((12, 12, 3), np.uint8)
    with pytest.raises(ValueError, match="11x11"):
        calculate_ssim(a, a, 1)
    with pytest.raises(ValueError, match="nothing left"):
        calculate_psnr(a, a, 6)


@pytest.mark.parametrize("y", [True, False])
def test_strips_give_the_one_pass_values(monkeypatch, y):
    """Metrics go through the images a strip of rows at a time (flat memory); the result is the one-pass one
    up to the order of the final sums."""
    import ioda.metrics as metrics

    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (700, 40, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    strips = (calculate_psnr(a, b, 4, test_y_channel=y), calculate_ssim(a, b, 4, test_y_channel=y))
    monkeypatch.setattr(metrics, "STRIP_ROWS", 10_000)
    whole = (calculate_psnr(a, b, 4, test_y_channel=y), calculate_ssim(a, b, 4, test_y_channel=y))
    assert metrics.STRIP_ROWS > 700 and np.allclose(strips, whole, rtol=1e-12, atol=0)
