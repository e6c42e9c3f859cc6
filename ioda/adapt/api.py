"""`ioda.adapt.adapt`: adapt a pretrained SR model to the domain of one low-resolution photo, from Python.

This is the whole method choice (the source model as is, a supervised baseline, or the direction loss); the
`ioda adapt` command only builds its inputs from flags and writes files around it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ioda.adapt.settings import AdaptSettings
from ioda.adapt.variants import IODA, Variant, get_variant
from ioda.errors import IodaError
from ioda.runtime import seed_everything


@dataclass
class AdaptJob:
    """One adaptation run with everything resolved: what `adapt` hands the method it runs."""

    module: nn.Module
    photo: np.ndarray
    variant: Variant
    settings: AdaptSettings
    scale: int
    device: torch.device
    work_dir: Path
    encoder: object = None
    source: object = None
    labels: np.ndarray | None = None
    eval_fn: Callable[[nn.Module], dict] | None = None
    target_train: str | os.PathLike | None = None
    resume: bool = False
    inputs: dict[str, str | None] | None = None


@dataclass
class AdaptResult:
    """The adapted model (in eval mode, on the run's device) and the run's facts (steps, seconds, losses...)."""

    model: nn.Module
    stats: dict = field(default_factory=dict)


def _scale(model, scale: int | None, source) -> int:
    for s in (scale, getattr(model, "scale", None), getattr(source, "scale", None)):
        if s:
            return int(s)
    raise IodaError("adapt: the model's scale is unknown (pass scale=, a LoadedModel from ioda.archs.load_model, "
                    "or a SourcePool)")


def adapt(
    model: nn.Module,
    photo: np.ndarray | str | os.PathLike,
    *,
    variant: str | Variant = IODA,
    settings: AdaptSettings | None = None,
    encoder=None,
    source=None,
    labels: np.ndarray | None = None,
    eval_fn: Callable[[nn.Module], dict] | None = None,
    work_dir: str | os.PathLike | None = None,
    scale: int | None = None,
    device: str | torch.device | None = None,
    target_train: str | os.PathLike | None = None,
    resume: bool = False,
    inputs: dict[str, str | None] | None = None,
) -> AdaptResult:
    """Adapt `model` (an nn.Module, or the LoadedModel of ioda.archs.load_model) to `photo` (HxWx3 uint8 array or
    an image file). The source model is never changed; the result is a new module (the same one for `none`).

    - variant: a name from ioda.adapt.variants.VARIANTS (or a Variant, e.g. the text-guided one with prompts);
    - settings: AdaptSettings (default: the params schema's defaults); settings.seed seeds everything here, so
      the same inputs give the same weights whatever ran before in the process;
    - encoder: a CLIP encoder from ioda.clip.build_encoder (direction-loss variants only);
    - source: a SourcePool or a source split folder (default: the bundled scikit-image source set);
    - labels: the photo's instance label map (variants with instance regions; default: SLIC superpixels);
    - eval_fn: model -> {mean_psnr, mean_ssim}, called every settings.eval_every steps for the oracle curve;
    - work_dir: where checkpoint.pt, train_log.csv and curve.csv go (default: a temporary folder, removed);
    - target_train: the target split with HR for the `finetune` baseline; resume: continue from work_dir;
    - inputs: name -> sha256 of the files this run adapts on (photo, model, labels), kept in the checkpoint: a
      resume from a checkpoint made from other inputs is refused.
    """
    module, (photo,), variant, settings, scale, device = _resolve(model, [photo], variant, settings, scale, source,
                                                                  device)
    job = dict(module=module, photo=photo, variant=variant, settings=settings, scale=scale, device=device,
               encoder=encoder, source=source, labels=labels, eval_fn=eval_fn, target_train=target_train,
               resume=resume, inputs=inputs)
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="ioda-adapt-") as tmp:
            return _adapt(AdaptJob(work_dir=Path(tmp), **job))
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    return _adapt(AdaptJob(work_dir=work_dir, **job))


def _resolve(model, photos, variant, settings, scale, source, device):
    """What adapt and adapt_stacked accept in several forms, in one: the module, the photos as arrays, the
    Variant, the settings (default: the schema's), the scale and the device (default: the model's)."""
    from ioda.imageio import read_image

    module = getattr(model, "module", model)
    photos = [p if isinstance(p, np.ndarray) else read_image(p) for p in photos]
    variant = get_variant(variant) if isinstance(variant, str) else variant
    if device is None:
        device = next(iter(module.parameters()), torch.zeros(0)).device
    return (module, photos, variant, settings or AdaptSettings(), _scale(model, scale, source),
            torch.device(device))


def _adapt(job: AdaptJob) -> AdaptResult:
    s, variant = job.settings, job.variant
    seed_everything(s.seed)
    if not variant.trains:
        return AdaptResult(job.module.to(job.device).eval(), {"seconds": 0.0, "steps": 0})
    if variant.supervised:
        from ioda.adapt.baselines import run_supervised_baseline

        model_t, stats = run_supervised_baseline(
            variant.spec, job.module, scale=job.scale, target_lr=job.photo, target_train=job.target_train,
            steps=s.steps, batch_size=s.batch_size, lr_patch=s.lr_patch, lr=s.lr, seed=s.seed, device=job.device,
            work_dir=job.work_dir, resume=job.resume, inputs=job.inputs)
        return AdaptResult(model_t.eval(), stats)
    trainer = _direction_trainer(job)
    stats = trainer.run(resume=job.resume)
    return AdaptResult(trainer.model_t.eval(), stats)


def _direction_trainer(job: AdaptJob):
    from ioda.adapt.batches import DirectionSampler, SourcePool
    from ioda.adapt.trainer import DirectionTrainer
    from ioda.protocol import get_protocol

    variant, s, labels, source = job.variant, job.settings, job.labels, job.source
    if job.encoder is None:
        raise IodaError(f"adapt: variant {variant.name!r} needs an image encoder (ioda.encoders.build_encoder)")
    if variant.guidance == "text" and not getattr(job.encoder, "has_text", False):
        raise IodaError(f"adapt: variant {variant.name!r} needs an encoder with a text tower; "
                        f"{getattr(job.encoder, 'description', 'this encoder')} has none")
    if not isinstance(source, SourcePool):
        source = source_pool(source, job.scale, variant)
    if variant.needs_labels and labels is None:
        from ioda.masks import compute_label_map

        labels = compute_label_map(job.photo, source="superpixel")
    protocol = get_protocol(s.protocol)
    sampler = DirectionSampler(
        job.photo, labels if variant.needs_labels else None, source, scale=job.scale, lr_patch=s.lr_patch,
        batch_size=s.batch_size, region=variant.region, occlusion=variant.occlusion, occlusion_p=s.occlusion_p,
        occlusion_cell=s.occlusion_cell, occlusion_cell_p=s.occlusion_cell_p, region_opts=s.region_opts,
        seed=s.seed, occlusion_partial_cells=protocol.occlusion_cells == "partial", hr_mask=protocol.hr_mask)
    return DirectionTrainer(job.module, job.encoder, sampler, variant, s, job.device, job.work_dir, job.eval_fn,
                            inputs=job.inputs)


def adapt_stacked(
    model: nn.Module,
    photos: list[np.ndarray | str | os.PathLike],
    *,
    variant: str | Variant = IODA,
    settings: AdaptSettings | None = None,
    encoder=None,
    source=None,
    labels: list[np.ndarray | None] | None = None,
    eval_fn: Callable[[nn.Module], dict] | None = None,
    work_dirs: list[str | os.PathLike],
    scale: int | None = None,
    device: str | torch.device | None = None,
    inputs: list[dict[str, str | None]] | None = None,
) -> list[AdaptResult]:
    """`adapt` for several photos at once, their steps taken together (ioda.adapt.stacked: one vmap'd forward of
    the K target models, one CLIP forward). Direction-loss variants only; no resume. Each result equals the
    photo's own `adapt` run up to floating-point reassociation (tests/test_stacked.py states the tolerance)."""
    module, photos, variant, settings, scale, device = _resolve(model, photos, variant, settings, scale, source,
                                                                device)
    if not variant.direction:
        raise IodaError(f"adapt: stacking runs is for the direction-loss variants, not {variant.name!r}")
    if len(work_dirs) != len(photos):
        raise IodaError(f"adapt: {len(photos)} photos but {len(work_dirs)} work folders")
    from ioda.adapt.batches import SourcePool
    from ioda.adapt.stacked import StackedTrainers

    if not isinstance(source, SourcePool):
        source = source_pool(source, scale, variant)
    trainers = []
    for k, photo in enumerate(photos):
        seed_everything(settings.seed)
        Path(work_dirs[k]).mkdir(parents=True, exist_ok=True)
        trainers.append(_direction_trainer(AdaptJob(
            module=module, photo=photo, variant=variant, settings=settings, scale=scale, device=device,
            work_dir=Path(work_dirs[k]), encoder=encoder, source=source, labels=labels[k] if labels else None,
            eval_fn=eval_fn, inputs=inputs[k] if inputs else None)))
    stats = StackedTrainers(trainers).run()
    return [AdaptResult(t.model_t.eval(), st) for t, st in zip(trainers, stats)]


def source_pool(folder: str | os.PathLike | None, scale: int, variant: Variant):
    """The SourcePool a variant samples from: `folder` (a split with LR_x<scale>/, and HR/ for real_hr), or the
    clean MATLAB-bicubic LR of the photos bundled with scikit-image."""
    from ioda.adapt.batches import SourcePool
    from ioda.data.pairs import list_pairs

    if folder is None:
        from ioda.data.prepare import ensure_builtin_source

        folder = ensure_builtin_source(scale)
    need_hr = variant.reference == "hr"
    return SourcePool(list_pairs(Path(folder), scale, require_hr=need_hr), scale, need_hr=need_hr)
