"""SAM automatic instance masks (segment-anything) -> one label map.

Checkpoints are pickles: we read them with torch.load(weights_only=True) and call load_state_dict
ourselves instead of letting segment-anything unpickle them. checkpoint=None builds an untrained model
(seeded), allowed only with allow_untrained=True: it exercises the real code path in tests and CI, its
masks are meaningless. Overlapping masks: larger painted first, smaller on top, or (paint="sam_order", the authors'
protocol) in SAM's output order, later on top (see labels.masks_to_label_map).
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ioda.errors import IodaError
from ioda.masks.labelmap import DEFAULT_MIN_AREA, masks_to_label_map

if TYPE_CHECKING:  # torch and segment_anything are imported when SAM runs
    import torch

LOG = logging.getLogger("ioda.masks")
SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
SAM_CHECKPOINTS = {"vit_h": "sam_vit_h_4b8939.pth", "vit_l": "sam_vit_l_0b3195.pth", "vit_b": "sam_vit_b_01ec64.pth"}


def _generator_options() -> set[str]:
    from segment_anything import SamAutomaticMaskGenerator

    names = set(inspect.signature(SamAutomaticMaskGenerator.__init__).parameters)
    return names - {"self", "model", "output_mode"}


def build_sam(model_type: str = "vit_b", checkpoint: str | os.PathLike | None = None, *,
              allow_untrained: bool = False, device: str | torch.device = "cpu", seed: int = 0):
    import torch
    from segment_anything import sam_model_registry

    if model_type not in SAM_CHECKPOINTS:
        raise IodaError(f"sam model_type {model_type!r}: unknown (expected one of {', '.join(SAM_CHECKPOINTS)})")
    official = SAM_URL + SAM_CHECKPOINTS[model_type]
    if checkpoint is None:
        if not allow_untrained:
            raise IodaError(f"sam checkpoint: none given for {model_type} (download {official} and pass its path, "
                            f"or allow an untrained model for tests only)")
        LOG.warning("SAM %s is UNTRAINED (seeded random weights): its masks are meaningless", model_type)
    else:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise IodaError(f"{checkpoint}: SAM checkpoint not found (expected {SAM_CHECKPOINTS[model_type]} "
                            f"from {official})")
    state = None
    if checkpoint is not None:  # read (and refuse) the file before spending time building the network
        from ioda.safeload import torch_load

        state = torch_load(checkpoint)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = sam_model_registry[model_type](checkpoint=None)
    if state is not None:
        try:
            sam.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, AttributeError) as err:
            first = " ".join(str(err).split())[:300]
            raise IodaError(f"{checkpoint}: not a SAM {model_type} state dict ({first})") from None
    return sam.to(device).eval()


def sam_label_map(image: np.ndarray, model_type: str = "vit_b", checkpoint: str | os.PathLike | None = None, *,
                  allow_untrained: bool = False, min_area: int = DEFAULT_MIN_AREA, device: str = "cpu",
                  seed: int = 0, paint: str = "largest_first", **generator_opts) -> np.ndarray:
    """HxWx3 uint8 RGB -> int32 HxW label map of SAM's automatic masks (instances < min_area px dropped).

    generator_opts go to SamAutomaticMaskGenerator (points_per_side, pred_iou_thresh, ...)."""
    import torch
    from segment_anything import SamAutomaticMaskGenerator

    unknown = sorted(set(generator_opts) - _generator_options())
    if unknown:
        raise IodaError(f"sam options {unknown}: unknown (expected any of {sorted(_generator_options())})")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {image.shape} {image.dtype}")
    sam = build_sam(model_type, checkpoint, allow_untrained=allow_untrained, device=device, seed=seed)
    generator = SamAutomaticMaskGenerator(sam, output_mode="binary_mask", **generator_opts)
    with torch.inference_mode():
        records = generator.generate(image)
    masks = [r["segmentation"] for r in records]
    LOG.info("SAM %s: %d raw masks on a %dx%d image", model_type, len(masks), image.shape[0], image.shape[1])
    return masks_to_label_map(masks, image.shape[:2], min_area=min_area, paint=paint)
