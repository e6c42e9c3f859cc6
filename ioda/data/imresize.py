"""MATLAB-compatible `imresize` (bicubic, antialiased), written from MATLAB's documented algorithm.

SR papers (and BasicSR's `matlab_functions.imresize`) make LR images with MATLAB's
`imresize(hr, 1/4, 'bicubic')`; OpenCV/PIL bicubic differ from it by several grey levels, which shows
up in PSNR. The algorithm, per axis:

- output length = ceil(in * scale) when a scale is given (MATLAB rounds up, not to nearest);
- output pixel x (1-based) samples input position u = x / scale + 0.5 * (1 - 1 / scale),
  i.e. 0.5 + (x - 0.5) / scale: pixel centres are aligned, not corners;
- cubic kernel with a = -0.5 and support 4; when shrinking (scale < 1) the kernel is stretched by
  1/scale and scaled by `scale` (antialiasing), so it averages over all input pixels under the output;
- taps are left = floor(u - width / 2) + 0..ceil(width) + 1; weights are normalised to sum to 1,
  out-of-range taps are mirrored (symmetric padding: ..., 2, 1, 1, 2, ...) and all-zero taps dropped;
- the axis with the smaller scale is resized first (MATLAB sorts the scales; ties keep H then W).

Here each axis becomes one dense (out x in) weight matrix, so a pass is one tensordot.

uint8 input: like MATLAB, each pass is rounded (half away from zero) and clipped to 0..255 before the
next one. BasicSR instead keeps the intermediate in float and rounds once at the end; the two differ by
at most one grey level on a few pixels (`round_each_pass=False` gives the BasicSR behaviour).
Float input: computed in float64, returned unclipped.
"""

from __future__ import annotations

import math

import numpy as np


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def weight_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """Dense (out_len x in_len) matrix M with out = M @ in along one axis (MATLAB's contributions)."""
    kernel_width = 4.0
    shrink = antialias and scale < 1
    if shrink:
        kernel_width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based input indices, may be out of range
    dist = u[:, None] - idx
    w = scale * cubic(scale * dist) if shrink else cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    # symmetric padding: 1-based index i maps into [1, in_len, in_len, ..., 1] periodically
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    src = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(out_len), taps)
    np.add.at(mat, (rows, src.ravel()), w.ravel())
    return mat


def _round_uint8(a: np.ndarray) -> np.ndarray:
    # MATLAB's double -> uint8: saturate, then round half away from zero (values are >= 0 here)
    return np.floor(np.clip(a, 0.0, 255.0) + 0.5)


def _output_size(shape: tuple[int, int], scale, output_shape) -> tuple[tuple[int, int], tuple[float, float]]:
    if (scale is None) == (output_shape is None):
        raise ValueError("imresize: give exactly one of scale or output_shape")
    if scale is not None:
        scales = (float(scale), float(scale)) if np.isscalar(scale) else tuple(float(s) for s in scale)
        if len(scales) != 2 or min(scales) <= 0:
            raise ValueError(f"imresize: scale must be positive (one number or a pair), got {scale}")
        size = (int(math.ceil(shape[0] * scales[0])), int(math.ceil(shape[1] * scales[1])))
    else:
        size = (int(output_shape[0]), int(output_shape[1]))
        if min(size) <= 0:
            raise ValueError(f"imresize: output_shape must be positive, got {output_shape}")
        scales = (size[0] / shape[0], size[1] / shape[1])
    return size, scales


def imresize(
    img: np.ndarray,
    scale: float | tuple[float, float] | None = None,
    output_shape: tuple[int, int] | None = None,
    antialias: bool = True,
    round_each_pass: bool = True,
) -> np.ndarray:
    """Resize an HxW or HxWxC array like MATLAB's imresize(img, scale, 'bicubic').

    uint8 in -> uint8 out (rounded and clipped); any float/int other than uint8 -> float64 out, unclipped."""
    img = np.asarray(img)
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"imresize expects a non-empty HxW or HxWxC array, got shape {img.shape}")
    is_uint8 = img.dtype == np.uint8
    size, scales = _output_size(img.shape[:2], scale, output_shape)
    out = img.astype(np.float64)
    order = sorted(range(2), key=lambda d: scales[d])  # stable: ties keep H before W
    for dim in order:
        if size[dim] == out.shape[dim] and scales[dim] == 1.0:
            continue  # MATLAB skips an axis whose scale is exactly 1
        mat = weight_matrix(out.shape[dim], size[dim], scales[dim], antialias)
        out = np.moveaxis(np.tensordot(mat, out, axes=([1], [dim])), 0, dim)
        if is_uint8 and round_each_pass:
            out = _round_uint8(out)
    if is_uint8:
        return _round_uint8(out).astype(np.uint8)
    return out
