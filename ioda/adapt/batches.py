"""Training samples for the direction loss: target crops of the one LR photo with their region and occlusion
masks, and source crops (LR, and HR for the real-HR reference).

All randomness comes from one numpy Generator owned by the sampler, whose state is checkpointed, so a resumed
run draws exactly the batches an uninterrupted run would have drawn."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from ioda.config import defaults
from ioda.data.pairs import Pair, augment, check_pair_sizes, random_crop_box
from ioda.errors import IodaError
from ioda.imageio import read_image
from ioda.masks.occlusion import occlusion_keep_mask
from ioda.masks.regions import sample_region, upsample_mask


@dataclass
class Batch:
    lr_t: torch.Tensor  # Bx3xPxP target LR crops in [0,1] (occluded cells zeroed)
    alpha_t: torch.Tensor  # Bx1xPxP region masks of the target crops (1 = inside)
    alpha_t_hr: torch.Tensor  # Bx1x(sP)x(sP) the same masks, upsampled (nearest, or the authors' eroding bilinear)
    keep_t_hr: torch.Tensor  # Bx1x(sP)x(sP) occlusion keep mask for the target SR (ones when not occluded)
    lr_s: torch.Tensor  # Bx3xPxP source LR crops
    keep_s_hr: torch.Tensor  # Bx1x(sP)x(sP) occlusion keep mask for the source SR/HR
    hr_s: torch.Tensor | None  # Bx3x(sP)x(sP) source HR crops (real-HR reference only)
    fallbacks: int  # instance masks that fell back to a full mask in this batch

    def to(self, device: torch.device) -> "Batch":
        moved = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return Batch(**moved)

    @staticmethod
    def cat(batches: list["Batch"]) -> "Batch":
        """The batches of several runs one after another along dim 0 (ioda.adapt.stacked)."""
        fields = {}
        for k, v in vars(batches[0]).items():
            if isinstance(v, torch.Tensor):
                fields[k] = torch.cat([getattr(b, k) for b in batches])
            elif v is None:
                fields[k] = None
            else:
                fields[k] = sum(getattr(b, k) for b in batches)
        return Batch(**fields)


class SourcePool:
    """Source pairs read lazily with a small LRU cache: DF2K does not fit in memory, the demo set does."""

    def __init__(self, pairs: list[Pair], scale: int, need_hr: bool, cache_size: int = 64):
        if not pairs:
            raise IodaError("source data: no LR images found (expected a split folder with LR_x<scale>/)")
        self.pairs, self.scale, self.need_hr, self.cache_size = pairs, scale, need_hr, cache_size
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.pairs)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        pair = self.pairs[i]
        lr = read_image(pair.lr)
        hr = None
        if self.need_hr:
            if pair.hr is None:
                raise IodaError(f"{pair.lr}: the real-HR reference needs source HR images (no HR/ folder found)")
            hr = read_image(pair.hr)
            check_pair_sizes(lr, hr, self.scale, pair)
        self._cache[i] = (lr, hr)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return lr, hr


def _to_tensor(arrs: list[np.ndarray]) -> torch.Tensor:
    """List of HxWxC uint8 (or HxW bool) arrays -> BxCxHxW float32."""
    stacked = np.stack([a if a.ndim == 3 else a[:, :, None] for a in arrs])
    t = torch.from_numpy(np.ascontiguousarray(stacked)).permute(0, 3, 1, 2)
    return t.float().div_(255.0) if stacked.dtype == np.uint8 else t.float()


_OCCLUSION = defaults("adapt")["occlusion"]  # the schema is the one home of these defaults


class DirectionSampler:
    def __init__(
        self,
        target_lr: np.ndarray,
        labels: np.ndarray | None,
        source: SourcePool,
        *,
        scale: int,
        lr_patch: int,
        batch_size: int,
        region: str = "full",
        occlusion: bool = False,
        occlusion_p: float = _OCCLUSION["p"],
        occlusion_cell: int = _OCCLUSION["cell"],
        occlusion_cell_p: float = _OCCLUSION["cell_p"],
        region_opts: dict | None = None,
        seed: int = 0,
        occlusion_partial_cells: bool = True,
        hr_mask: str = "nearest",
    ):
        h, w = target_lr.shape[:2]
        if h < lr_patch or w < lr_patch:
            raise IodaError(f"target photo {w}x{h} is smaller than the LR patch size {lr_patch}")
        if region == "instance":
            if labels is None:
                raise IodaError("the instance region mask needs a label map of the target photo (--labels)")
            if labels.shape != (h, w):
                raise IodaError(f"label map size {labels.shape[1]}x{labels.shape[0]} differs from the photo's {w}x{h}")
        self.target_lr, self.labels, self.source = target_lr, labels, source
        self.scale, self.lr_patch, self.batch_size = scale, lr_patch, batch_size
        self.region, self.occlusion = region, occlusion
        self.occlusion_p, self.occlusion_cell, self.occlusion_cell_p = occlusion_p, occlusion_cell, occlusion_cell_p
        self.region_opts = dict(region_opts or {})
        self.occlusion_partial_cells, self.hr_mask = occlusion_partial_cells, hr_mask
        self.rng = np.random.default_rng(seed)

    # The generator state is plain ints/strings: safe to store in a weights_only checkpoint.
    def state_dict(self) -> dict:
        return self.rng.bit_generator.state

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def _keep(self) -> np.ndarray:
        p = self.lr_patch
        if self.occlusion and self.rng.random() < self.occlusion_p:
            return occlusion_keep_mask(p, p, self.rng, cell=self.occlusion_cell, cell_p=self.occlusion_cell_p,
                                       partial_cells=self.occlusion_partial_cells)
        return np.ones((p, p), dtype=bool)

    def _target(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        p, rng = self.lr_patch, self.rng
        y, x = random_crop_box(*self.target_lr.shape[:2], p, rng)
        crop = self.target_lr[y : y + p, x : x + p]
        flip, rot = int(rng.integers(2)), int(rng.integers(4))
        if self.region == "instance":
            lab = self.labels[y : y + p, x : x + p]
            crop, lab = augment([crop, lab], flip, rot)
            alpha, fell_back = sample_region("instance", lab, rng, **self.region_opts)
        else:
            (crop,) = augment([crop], flip, rot)
            alpha, fell_back = sample_region(self.region, (p, p), rng, **self.region_opts)
        return crop, alpha, self._keep(), fell_back

    def _source(self, need_hr: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        p, s, rng = self.lr_patch, self.scale, self.rng
        lr, hr = self.source.get(int(rng.integers(len(self.source))))
        if lr.shape[0] < p or lr.shape[1] < p:
            raise IodaError(f"a source LR image ({lr.shape[1]}x{lr.shape[0]}) is smaller than the LR patch size {p}")
        y, x = random_crop_box(lr.shape[0], lr.shape[1], p, rng)
        flip, rot = int(rng.integers(2)), int(rng.integers(4))
        arrays = [lr[y : y + p, x : x + p]]
        if need_hr:
            arrays.append(hr[y * s : (y + p) * s, x * s : (x + p) * s])
        arrays = augment(arrays, flip, rot)
        return arrays[0], (arrays[1] if need_hr else None), self._keep()

    def sample(self) -> Batch:
        s = self.scale
        targets = [self._target() for _ in range(self.batch_size)]
        sources = [self._source(self.source.need_hr) for _ in range(self.batch_size)]
        keep_t = [k for *_, k, _ in targets]
        keep_s = [k for *_, k in sources]
        # Occlusion zeroes the LR cells; keep_*_hr lets the trainer mask the SR side too (protocol paper).
        lr_t = [c * k[:, :, None] for c, _, k, _ in targets]
        lr_s = [c * k[:, :, None] for c, _, k in sources]
        alpha = [a for _, a, _, _ in targets]
        return Batch(
            lr_t=_to_tensor(lr_t),
            alpha_t=_to_tensor(alpha),
            alpha_t_hr=_to_tensor([upsample_mask(a, s, self.hr_mask) for a in alpha]),
            keep_t_hr=_to_tensor([upsample_mask(k, s) for k in keep_t]),
            lr_s=_to_tensor(lr_s),
            keep_s_hr=_to_tensor([upsample_mask(k, s) for k in keep_s]),
            hr_s=_to_tensor([h * upsample_mask(k, s)[:, :, None] for (_, h, k) in sources])
            if self.source.need_hr
            else None,
            fallbacks=sum(int(fb) for *_, fb in targets),
        )
