"""SAM path with an untrained vit_b (the real segment-anything code, ~30 s on 2 cores): cached label map."""

import json

import numpy as np
import pytest
import skimage.data
import torch

from ioda.errors import IodaError
from ioda.imageio import write_image
from ioda.masks import cached_label_map, load_label_map
from ioda.masks.sam import build_sam, sam_label_map


@pytest.mark.slow
def test_untrained_sam_produces_cached_label_map(tmp_path):
    img = np.ascontiguousarray(skimage.data.astronaut()[::8, ::8])  # 64x64
    path = tmp_path / "lr.png"
    write_image(path, img)
    out = tmp_path / "labels" / "lr.npz"
    # Thresholds at zero so random weights still yield masks and the painting path runs.
    params = {"model_type": "vit_b", "checkpoint": None, "allow_untrained": True, "points_per_side": 4,
              "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "min_area": 0, "seed": 0}
    labels, meta = cached_label_map(path, out, "sam", params)
    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert on_disk == meta
    assert meta["source"] == "sam" and meta["parameters"] == params
    assert (meta["height"], meta["width"]) == (64, 64) and meta["seconds"] > 0
    stored = load_label_map(out, (64, 64))
    assert np.array_equal(stored, labels) and stored.dtype == np.int32
    assert meta["count"] == labels.max() >= 1
    assert sorted(np.unique(labels[labels > 0]).tolist()) == list(range(1, meta["count"] + 1))


def test_sam_refuses_bad_options_and_checkpoints(tmp_path):
    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(IodaError, match="sam options \\['points_per_edge'\\]: unknown"):
        sam_label_map(img, points_per_edge=4, allow_untrained=True)
    with pytest.raises(IodaError, match="sam checkpoint: none given for vit_b.*sam_vit_b_01ec64.pth"):
        build_sam("vit_b")
    with pytest.raises(IodaError, match="model_type 'vit_x': unknown"):
        build_sam("vit_x")
    torch.save({"image_encoder.pos_embed": torch.zeros(1)}, tmp_path / "fake_sam.pth")
    with pytest.raises(IodaError, match="fake_sam.pth: not a SAM vit_b state dict"):
        build_sam("vit_b", tmp_path / "fake_sam.pth")
