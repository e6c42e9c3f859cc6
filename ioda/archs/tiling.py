"""Tiled inference: bounded memory for large images, same result as whole-image inference where possible.

Method: the LR image is cut into a grid of `tile` x `tile` core regions. Each core is run inside a window
that extends it by `overlap` LR pixels on every side (shifted inwards at the image border, so every window
has the same size and tiles can be batched); only the core's part of the output is kept (center crop,
no blending). What to expect:
- conv-only networks: the result equals untiled inference (up to float summation order, ~1e-6) as soon as
  `overlap` covers the network's receptive-field radius in LR pixels;
- SAFMN: its multi-scale branch max-pools on a grid anchored at the window origin and sees context up
  to the whole window, so tiles differ slightly from whole-image inference (small, shrinking with overlap);
- HAT / SRFormer: attention windows (and shifted windows) are laid from the window origin, so partitions
  differ from the untiled run unless a window starts on the whole image's window grid: the overlap is rounded
  up to a multiple of the attention window (and a tile size that is one, e.g. 256, keeps the grid), so only the
  border windows, shifted inwards, are off the grid; with overlap >= one attention window the differences are
  small but not zero.
  Windows are rounded up to a multiple of the attention window so the network does not reflect-pad tiles
  (the nets pad internally to that multiple otherwise; spandrel's HAT/SRFormer crop the padding back off).
Memory: one batch of `batch` windows of activations at a time; only the output image is whole-size.
`upscale_image` goes further for photos: uint8 in, uint8 out, each window converted to float only while it
is processed and each core quantised straight into one uint8 buffer, so beyond the input and output
images (3 and 3 x scale^2 bytes per LR pixel) the peak memory depends on the tile size, not the photo.
"""

from __future__ import annotations

import math

import numpy as np

import torch
from torch import nn



def _window_multiple(model: nn.Module) -> int:
    ws = getattr(model, "window_size", 1)
    if isinstance(ws, (tuple, list)):
        ws = max(ws)
    return int(ws) if isinstance(ws, int) and ws > 0 else 1


def _starts(length: int, tile: int) -> list[int]:
    return list(range(0, length, tile))


def _window(core: int, core_len: int, overlap: int, win: int, length: int) -> int:
    """Start of the fixed-size window holding [core, core+core_len) with `overlap` context where possible."""
    return max(0, min(core - overlap, length - win))


def tile_plan(h: int, w: int, tile: int, overlap: int, multiple: int = 1) -> tuple[int, int, list[tuple[int, int, int, int, int, int]]]:
    """(win_h, win_w, [(core_y, core_x, core_h, core_w, win_y, win_x), ...]) for an h x w image.

    The overlap is rounded up to a multiple of `multiple` (the attention window): with a tile size that is one
    too, every window not shifted inwards at the border starts on the whole image's window grid, so attention
    windows partition a tile as they partition the whole image (instead of all shifted by the overlap)."""
    overlap = math.ceil(overlap / multiple) * multiple
    def win_len(length: int) -> int:
        n = tile + 2 * overlap
        n = math.ceil(n / multiple) * multiple
        return min(n, length)

    wh, ww = win_len(h), win_len(w)
    plan = []
    for cy in _starts(h, tile):
        ch = min(tile, h - cy)
        wy = _window(cy, ch, overlap, wh, h)
        for cx in _starts(w, tile):
            cw = min(tile, w - cx)
            wx = _window(cx, cw, overlap, ww, w)
            plan.append((cy, cx, ch, cw, wy, wx))
    return wh, ww, plan


@torch.no_grad()
def upscale(
    model: nn.Module, lr: torch.Tensor, scale: int, tile: int = 0, overlap: int = 8, batch: int = 4,
    out_device: str | torch.device | None = None,
) -> torch.Tensor:
    """Super-resolve `lr` (Bx3xHxW float in [0,1], on the model's device) -> Bx3x(sH)x(sW), not clamped.

    tile=0 runs each whole image in one forward pass. Output lands on `out_device` (default: lr's
    device; pass "cpu" to keep a big output off the GPU)."""
    if lr.dim() != 4 or lr.shape[1] != 3:
        raise ValueError(f"upscale expects a Bx3xHxW tensor, got shape {tuple(lr.shape)}")
    if tile < 0 or overlap < 0 or batch < 1:
        raise ValueError(f"upscale: tile ({tile}) and overlap ({overlap}) must be >= 0, batch ({batch}) >= 1")
    out_device = lr.device if out_device is None else torch.device(out_device)
    b, _, h, w = lr.shape
    if tile == 0 or (tile >= h and tile >= w):
        return model(lr).to(out_device)
    wh, ww, plan = tile_plan(h, w, tile, overlap, _window_multiple(model))
    out = None
    for i in range(b):
        img = lr[i : i + 1]
        for j in range(0, len(plan), batch):
            chunk = plan[j : j + batch]
            windows = torch.cat([img[:, :, wy : wy + wh, wx : wx + ww] for (_, _, _, _, wy, wx) in chunk])
            sr = model(windows).to(out_device)
            if out is None:
                out = torch.empty((b, sr.shape[1], h * scale, w * scale), dtype=sr.dtype, device=out_device)
            if sr.shape[-2:] != (wh * scale, ww * scale):
                raise ValueError(f"upscale: model returned {tuple(sr.shape[-2:])} for a {wh}x{ww} tile at scale {scale}")
            for k, (cy, cx, ch, cw, wy, wx) in enumerate(chunk):
                oy, ox = (cy - wy) * scale, (cx - wx) * scale
                out[i, :, cy * scale : (cy + ch) * scale, cx * scale : (cx + cw) * scale] = sr[
                    k, :, oy : oy + ch * scale, ox : ox + cw * scale
                ]
    assert out is not None
    return out


@torch.no_grad()
def upscale_image(
    model: nn.Module, img: np.ndarray, scale: int, tile: int = 0, overlap: int = 8, batch: int = 4,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Super-resolve an HxWx3 uint8 photo -> (sH)x(sW)x3 uint8, rounded as `tensor_to_image` does.

    Same pixels as `tensor_to_image(upscale(model, image_to_tensor(img), scale, tile, overlap, batch))`, but
    written tile by tile into one uint8 buffer (no whole-size float copies)."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"upscale_image expects HxWx3 uint8, got {img.shape} {img.dtype}")
    if tile < 0 or overlap < 0 or batch < 1:
        raise ValueError(f"upscale_image: tile ({tile}) and overlap ({overlap}) must be >= 0, batch ({batch}) >= 1")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    h, w = img.shape[:2]
    to_float = lambda a: torch.from_numpy(np.array(a, copy=True)).to(device).permute(2, 0, 1).float().div_(255.0)  # noqa: E731
    to_uint8 = lambda t: t.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()  # noqa: E731
    if tile == 0 or (tile >= h and tile >= w):
        return np.ascontiguousarray(to_uint8(model(to_float(img)[None])[0].float()))
    wh, ww, plan = tile_plan(h, w, tile, overlap, _window_multiple(model))
    out = np.empty((h * scale, w * scale, 3), dtype=np.uint8)
    for j in range(0, len(plan), batch):
        chunk = plan[j : j + batch]
        windows = torch.stack([to_float(img[wy : wy + wh, wx : wx + ww]) for (_, _, _, _, wy, wx) in chunk])
        sr = model(windows)
        if sr.shape[-2:] != (wh * scale, ww * scale):
            raise ValueError(f"upscale_image: model returned {tuple(sr.shape[-2:])} for a {wh}x{ww} tile at scale {scale}")
        for k, (cy, cx, ch, cw, wy, wx) in enumerate(chunk):
            oy, ox = (cy - wy) * scale, (cx - wx) * scale
            core = sr[k, :, oy : oy + ch * scale, ox : ox + cw * scale].float()
            out[cy * scale : (cy + ch) * scale, cx * scale : (cx + cw) * scale] = to_uint8(core)
        del windows, sr
    return out
