"""Tiled inference: exact for conv nets when the overlap covers the receptive field, close for the
transformer presets, and bounded in the size of what the network sees."""

import pytest
import torch
from torch import nn

from ioda.archs import build_model, upscale
from ioda.archs.tiling import tile_plan


def _conv_net(scale=2, seed=0):
    """Three 3x3 convs (receptive-field radius 3 LR px) + pixel shuffle."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale),
    ).eval()


class _Recorder(nn.Module):
    """Nearest-neighbour x`scale` that remembers the largest input it was given."""

    def __init__(self, scale=1):
        super().__init__()
        self.scale, self.shapes = scale, []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return x.repeat_interleave(self.scale, 2).repeat_interleave(self.scale, 3)


def test_conv_net_tiled_equals_untiled_when_overlap_covers_receptive_field():
    net = _conv_net()
    x = torch.rand(2, 3, 50, 37)
    with torch.no_grad():
        whole = net(x)
    tiled = upscale(net, x, 2, tile=16, overlap=3, batch=3)
    assert tiled.shape == whole.shape == (2, 3, 100, 74)
    assert torch.allclose(tiled, whole, atol=1e-6, rtol=0)
    # too little context: the seams show
    seams = upscale(net, x, 2, tile=16, overlap=1)
    assert (seams - whole).abs().max() > 1e-3


def test_tile_zero_is_plain_forward():
    net = _conv_net()
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(upscale(net, x, 2, tile=0), net(x))


def test_plan_covers_each_pixel_once_with_fixed_windows():
    h, w, tile, ov = 70, 45, 16, 5
    wh, ww, plan = tile_plan(h, w, tile, ov)
    cover = torch.zeros(h, w, dtype=torch.int32)
    for cy, cx, ch, cw, wy, wx in plan:
        cover[cy : cy + ch, cx : cx + cw] += 1
        assert 0 <= wy and wy + wh <= h and 0 <= wx and wx + ww <= w
        # every core has `ov` px of context on each side, unless that side is the image border
        assert cy - wy >= ov or wy == 0
        assert (wy + wh) - (cy + ch) >= ov or wy + wh == h
        assert cx - wx >= ov or wx == 0
        assert (wx + ww) - (cx + cw) >= ov or wx + ww == w
    assert (cover == 1).all()
    assert (wh, ww) == (26, 26)
    # windows rounded up to the attention window multiple
    wh8, ww8, _ = tile_plan(100, 100, 16, 5, multiple=8)
    assert (wh8, ww8) == (32, 32)


def test_memory_bounded_by_one_tile_batch_on_2000px_input():
    rec = _Recorder(scale=1)
    x = torch.rand(1, 3, 2000, 2000)
    out = upscale(rec, x, 1, tile=128, overlap=8, batch=4)
    assert torch.equal(out, x)  # identity model: tiling must reassemble the image exactly
    assert max(s[0] for s in rec.shapes) <= 4
    assert max(max(s[2], s[3]) for s in rec.shapes) <= 128 + 2 * 8
    assert len(rec.shapes) == (16 * 16 + 3) // 4  # 16x16 tiles in batches of 4


@pytest.mark.parametrize("name", ["safmn_tiny", "hat_tiny", "srformer_tiny"])
def test_tiny_presets_tiled_close_to_untiled(name):
    """Not exact for SAFMN (pooling grid anchored at the window) or windowed attention (documented),
    but context removes most of the seam error: overlap 8 is >10x closer than overlap 0."""
    net = build_model(name, seed=0).eval()
    x = torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        whole = net(x)
    near = (upscale(net, x, 4, tile=16, overlap=8) - whole).abs().mean().item()
    far = (upscale(net, x, 4, tile=16, overlap=0) - whole).abs().mean().item()
    assert near < 0.01 and near < far / 10, (near, far)


def test_bad_arguments():
    net = _conv_net()
    with pytest.raises(ValueError, match="Bx3xHxW"):
        upscale(net, torch.rand(3, 10, 10), 2)
    with pytest.raises(ValueError, match="must be >= 0"):
        upscale(net, torch.rand(1, 3, 10, 10), 2, tile=-1)
