"""MATLAB imresize: checked against a per-pixel loop written here from the algorithm's definition."""

import math

import numpy as np
import pytest
import skimage.data

from ioda.data import imresize
from ioda.data.imresize import cubic


def _kernel(t):
    # MATLAB's cubic, written out piecewise (independent of the vectorised one)
    t = abs(t)
    if t <= 1:
        return 1.5 * t**3 - 2.5 * t**2 + 1
    if t <= 2:
        return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2
    return 0.0


def _resize_axis_loop(a, out_len, scale):
    """Resize axis 0 of a float 2-D array, one output pixel at a time."""
    n = a.shape[0]
    out = np.zeros((out_len,) + a.shape[1:])
    width = 4.0 / scale if scale < 1 else 4.0
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        ws, srcs = [], []
        for k in range(math.ceil(width) + 2):
            j = left + k  # 1-based
            d = u - j
            w = scale * _kernel(scale * d) if scale < 1 else _kernel(d)
            # symmetric padding: 0 -> 1, -1 -> 2, n+1 -> n, n+2 -> n-1
            jj = j
            while jj < 1 or jj > n:
                jj = 1 - jj if jj < 1 else 2 * n + 1 - jj
            ws.append(w)
            srcs.append(jj - 1)
        total = sum(ws)
        for w, s in zip(ws, srcs):
            out[x - 1] += (w / total) * a[s]
    return out


def _reference(img, scale):
    a = img.astype(np.float64)
    h, w = a.shape[:2]
    a = _resize_axis_loop(a, math.ceil(h * scale), scale)
    a = np.swapaxes(_resize_axis_loop(np.swapaxes(a, 0, 1), math.ceil(w * scale), scale), 0, 1)
    return a


def test_kernel_values():
    assert cubic(np.array([0.0]))[0] == 1.0
    assert cubic(np.array([1.0, 2.0, 2.5, -1.0]))[:].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert cubic(np.array([0.5]))[0] == pytest.approx(0.5625)
    assert cubic(np.array([1.5]))[0] == pytest.approx(-0.0625)


@pytest.mark.parametrize("scale", [0.25, 0.5, 1 / 3, 2.0, 3.0])
@pytest.mark.parametrize("shape", [(9, 13), (8, 8, 3), (17, 6, 2)])
def test_float_matches_loop_reference(scale, shape):
    rng = np.random.default_rng(1)
    img = rng.random(shape) * 255
    got = imresize(img, scale)
    want = _reference(img, scale)
    assert got.dtype == np.float64
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_float_is_unclipped():
    img = np.zeros((8, 8))
    img[:, 4:] = 1.0
    out = imresize(img, 2.0)
    assert out.max() > 1.0 and out.min() < 0.0  # cubic overshoot next to the step


def test_output_shape_rounds_up_like_matlab():
    img = np.zeros((10, 7, 3), np.uint8)
    assert imresize(img, 0.25).shape == (3, 2, 3)  # ceil(2.5), ceil(1.75)
    assert imresize(img, 1 / 3).shape == (4, 3, 3)
    assert imresize(img, output_shape=(5, 9)).shape == (5, 9, 3)


def test_constant_image_stays_constant():
    for value in (0, 17, 255):
        img = np.full((33, 21, 3), value, np.uint8)
        for s in (0.25, 0.5, 3.0):
            out = imresize(img, s)
            assert out.dtype == np.uint8
            assert (out == value).all()


def test_x4_down_of_block_constant_image():
    # Output pixel i samples HR position 4i + 1.5 (0-based), the centre of block i, with the kernel
    # stretched to 16 HR pixels: so it is a fixed 5-tap filter over blocks whose taps are the kernel
    # summed over each block's 4 HR pixels.
    offsets = np.arange(-10, 10) + 0.5  # HR pixel centres relative to the block centre, 0-based
    k = np.array([0.25 * _kernel(0.25 * d) for d in offsets])
    k /= k.sum()
    taps = {b: k[(np.floor(offsets / 4 + 0.5) == b)].sum() for b in (-2, -1, 0, 1, 2)}
    assert taps[0] > 0.5 and taps[2] < 0  # own block dominates; the cubic's negative lobe two blocks out
    rng = np.random.default_rng(3)
    blocks = rng.random((9, 8))
    hr = np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)
    lr = imresize(hr, 0.25)
    assert lr.shape == blocks.shape
    for i in range(2, 7):
        for j in range(2, 6):
            want = sum(taps[a] * taps[b] * blocks[i + a, j + b] for a in taps for b in taps)
            assert lr[i, j] == pytest.approx(want, abs=1e-12)
    # a single constant block in a constant surround comes back exactly as that constant
    flat = np.full((24, 24, 3), 100, np.uint8)
    assert (imresize(flat, 0.25) == 100).all()


def test_uint8_rounds_like_float_within_one_level():
    # a natural photo crop (random noise would overshoot 0..255 in the first pass, where MATLAB clips)
    img = skimage.data.astronaut()[100:164, 180:240]
    for s in (0.25, 0.5, 2.0):
        u8 = imresize(img, s)
        f = imresize(img.astype(np.float64), s)
        assert u8.dtype == np.uint8
        rounded = np.floor(np.clip(f, 0, 255) + 0.5)
        assert np.abs(u8.astype(np.float64) - rounded).max() <= 1.0
        once = imresize(img, s, round_each_pass=False)
        assert np.array_equal(once, rounded.astype(np.uint8))


def test_hw_and_hwc_agree():
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (20, 28, 3)).astype(np.uint8)
    full = imresize(img, 0.25)
    for c in range(3):
        assert np.array_equal(imresize(img[:, :, c], 0.25), full[:, :, c])


def test_smaller_scale_axis_goes_first():
    # with different scales per axis MATLAB shrinks the more-shrunk axis first; only the order of
    # rounding differs, so compare with the float path
    rng = np.random.default_rng(9)
    img = rng.random((16, 24))
    out = imresize(img, (0.5, 0.25))
    want = _resize_axis_loop(img.T, 6, 0.25).T
    want = _resize_axis_loop(want, 8, 0.5)
    np.testing.assert_allclose(out, want, atol=1e-9)


def test_bad_arguments():
    img = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError):
        imresize(img)
    with pytest.raises(ValueError):
        imresize(img, 0.5, output_shape=(2, 2))
    with pytest.raises(ValueError):
        imresize(img, -1)
    with pytest.raises(ValueError):
        imresize(np.zeros((0, 4)), 0.5)


def _half_away(a: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(a, 0, 255) + 0.5)


def _per_pass(img: np.ndarray, size: tuple[int, int], rounding) -> np.ndarray:
    """MATLAB's uint8 imresize from float passes: one axis at a time (H first: equal scales keep H before W),
    each pass computed in float64 and rounded with `rounding` before the next."""
    h = rounding(imresize(img.astype(np.float64), output_shape=(size[0], img.shape[1])))
    return rounding(imresize(h, output_shape=size)).astype(np.uint8)


@pytest.mark.parametrize("scale", [2, 0.5])
def test_uint8_rounds_half_away_from_zero_after_each_pass(scale):
    """Pinned against an independent per-pass computation on an image with exact .5 ties in its passes;
    the same computation with numpy's round-half-to-even gives other pixels, so substituting it would fail."""
    img = np.random.default_rng(3).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    size = (int(64 * scale), int(64 * scale))
    first = imresize(img.astype(np.float64), output_shape=(size[0], 64))
    assert np.count_nonzero(np.abs(first - np.floor(first) - 0.5) < 1e-12) > 10  # ties exist
    want = _per_pass(img, size, _half_away)
    assert np.array_equal(imresize(img, scale), want)
    assert not np.array_equal(_per_pass(img, size, lambda a: np.round(np.clip(a, 0, 255))), want)
