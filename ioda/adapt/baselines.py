"""The baselines the tables compare against, both trained with the generic supervised loop:
- finetune: supervised L1 on ALL target LR/HR pairs (Table 5's upper bound: it sees target HR);
- zssr: the network trained only on the single target LR photo and its own downscaled copies (Table 6), from
  a fresh initialisation, as ZSSR does ("HR fathers" are rescaled crops of the photo, "LR sons" their MATLAB-
  bicubic downscales)."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ioda.adapt.variants import Method
from ioda.data.imresize import imresize
from ioda.data.pairs import PairedPatches, augment, list_pairs, random_crop_box
from ioda.errors import IodaError
from ioda.train.supervised import train_supervised

ZSSR_SCALES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)


class ZSSRPairs(Dataset):
    """(son, father) patches made from one LR photo: father = crop of a rescaled copy, son = father / scale."""

    def __init__(self, lr_image: np.ndarray, scale: int, lr_patch: int, length: int, seed: int = 0):
        h, w = lr_image.shape[:2]
        son = min(lr_patch, min(h, w) // scale)
        if son < 4:
            raise IodaError(f"target photo {w}x{h} is too small for ZSSR at x{scale} (needs at least {4 * scale} px)")
        self.scale, self.son, self.length, self.seed = scale, son, length, seed
        self.fathers = [lr_image] + [
            imresize(lr_image, f) for f in ZSSR_SCALES[1:] if min(h, w) * f >= son * scale
        ]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, idx])
        img = self.fathers[int(rng.integers(len(self.fathers)))]
        p = self.son * self.scale
        y, x = random_crop_box(img.shape[0], img.shape[1], p, rng)
        (father,) = augment([img[y : y + p, x : x + p]], int(rng.integers(2)), int(rng.integers(4)))
        son = imresize(father, 1.0 / self.scale)
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float().div_(255.0)  # noqa: E731
        return to_t(son), to_t(father)


def reinitialise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A fresh copy with every layer's default initialisation (ZSSR trains from scratch)."""
    fresh = copy.deepcopy(model)
    torch.manual_seed(seed)
    for m in fresh.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return fresh


def run_supervised_baseline(
    method: Method,
    model_s: torch.nn.Module,
    *,
    scale: int,
    target_lr: np.ndarray,
    target_train: str | Path | None,
    steps: int,
    batch_size: int,
    lr_patch: int,
    lr: float,
    seed: int,
    device: torch.device,
    work_dir: Path,
    resume: bool,
    inputs: dict[str, str | None] | None = None,
) -> tuple[torch.nn.Module, dict]:
    """Train a supervised baseline (a METHODS entry): on the target's pairs from the source model, or from
    scratch on the photo's own downscaled copies."""
    length = steps * batch_size
    if method.target_train:
        if target_train is None:
            raise IodaError(f"method {method.name} needs --target-train (a target split folder with HR/ and "
                            f"LR_x<scale>/)")
        dataset = PairedPatches(list_pairs(target_train, scale), scale, lr_patch, seed=seed, length=length)
        model = copy.deepcopy(model_s)
    elif method.from_scratch:
        dataset = ZSSRPairs(target_lr, scale, lr_patch, length=length, seed=seed)
        model = reinitialise(model_s, seed)
    else:
        raise IodaError(f"method {method.name!r} is not a supervised baseline")
    model.requires_grad_(True).train()
    t0 = time.perf_counter()
    stats = train_supervised(
        model,
        dataset,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        scheduler="constant",
        seed=seed,
        device=device,
        ckpt_path=work_dir / "checkpoint.pt",
        resume=resume,
        log_csv=work_dir / "train_log.csv",
        inputs=inputs,
    )
    return model, {**stats, "steps": stats["steps_done"], "seconds": time.perf_counter() - t0}
