"""`ioda adapt`: adapt a pretrained SR model to the domain of ONE low-resolution photo.

Writes, in --out-dir: model.safetensors (the adapted weights), sr.png (the photo super-resolved by them),
adapt.json (protocol, settings, timing, hardware, encoder, fallbacks), train_log.csv (step, loss) and, with
--eval-data, curve.csv (PSNR/SSIM on a held-out target test set every --eval-every steps, step 0 included: the
best step is the ORACLE statistic the authors reported, picked on target HR; the saved model is the final one).
--protocol authors|paper: the authors' released code exactly, or the paper's text (ioda/protocol.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ioda.adapt.outputs import FINAL_OUTPUTS, clean_failed, identity, portable_ref, write_outputs
from ioda.adapt.checks import _check_numbers, _check_patch, _check_resume  # noqa: F401 - tests import _check_patch here
from ioda.adapt.parser import build_parser  # noqa: F401 - tests import build_parser here
from ioda.adapt.variants import get_variant
from ioda.errors import IodaError
from ioda.files import ensure_writable_dir, sha256_file
from ioda.imageio import image_arg, read_image
from ioda.protocol import get_protocol
from ioda.runtime import resolve_device, seed_everything, setup_logging

if TYPE_CHECKING:  # torch, the networks and the encoder are imported by main, when a run starts
    import torch

LOG = logging.getLogger("ioda.adapt")


def _encoder(args, device: torch.device, clip_input: str, protocol: str, seed: int, untrained: bool = False):
    """The loss's encoder; `untrained`: the same architecture without any weights (the control variant)."""
    from ioda.encoders import build_encoder

    name, weights = args.encoder, None if untrained else args.encoder_weights
    opts = {"device": device, "input_range": clip_input, "protocol": protocol, "antialias": args.clip_antialias,
            "alpha_weights": None if untrained else args.alpha_weights, "alpha_init": args.alpha_init}
    if args.plain_clip:
        # protocol paper, a row without region masks: plain CLIP (the paper's Sec. 2.3), no Alpha-CLIP weights
        opts.update(alpha_weights=None, alpha_init="zero")
    if name == "auto":
        try:
            return build_encoder("ViT-B-16-quickgelu", weights or "openai", seed=seed, **opts)
        except IodaError as err:
            LOG.warning("no pretrained CLIP available offline (%s); falling back to the UNTRAINED tiny encoder: "
                        "adaptation will run but is not meaningful", err)
            name, weights = "tiny", None
    return build_encoder(name, weights, seed=seed, **opts)


def _labels(args, labels_path: str | None, photo_path: Path, photo, out_dir: Path):
    from ioda.masks import cached_label_map, load_label_map

    if labels_path:
        return load_label_map(labels_path, expected_hw=photo.shape[:2])
    LOG.info("computing instance labels of the photo with %s", args.mask_source)
    params = ({"model_type": args.sam_model, "checkpoint": args.sam_checkpoint,
               "paint": get_protocol(args.protocol).paint} if args.mask_source == "sam" else {})
    labels, _ = cached_label_map(photo_path, out_dir / "labels.npz", source=args.mask_source, params=params)
    return labels


# flag -> the AdaptSettings field it overrides (--steps and --lr: of the direction loss; --baseline-lr: of a
# supervised baseline; the config key behind each follows from the variant, ioda.adapt.settings.schema_key)
FLAG_FIELDS = {"steps": "steps", "batch_size": "batch_size", "lr_patch": "lr_patch", "lr": "lr",
               "baseline_lr": "lr", "betas": "betas", "loss": "loss", "clip_input": "clip_input", "seed": "seed",
               "eval_every": "eval_every", "eval_batch": "eval_batch", "occlusion_p": "occlusion_p",
               "occlusion_cell": "occlusion_cell", "occlusion_cell_p": "occlusion_cell_p", "protocol": "protocol",
               "clip_antialias": "clip_antialias"}


def adapt_settings(args, variant, device: torch.device):
    """This run's AdaptSettings: --settings-json (the workflow's: the cell's resolved settings) or the --settings
    preset, each flag given overriding it; every value checked against its params-schema entry."""
    from ioda.adapt.settings import build, check_value, config_values, preset

    if args.settings_json is not None:
        try:
            values = json.loads(args.settings_json)
        except json.JSONDecodeError as err:
            raise IodaError(f"--settings-json: not JSON ({err})") from None
        if not isinstance(values, dict):
            raise IodaError(f"--settings-json: expected an object of settings, got {type(values).__name__}")
        names = {k: f"--settings-json {k}" for k in values}
    else:
        name = "paper" if args.settings == "paper" or (args.settings == "auto" and device.type == "cuda") else "cpu"
        values = config_values(preset(name), variant)
        names = {}
    for flag, name in FLAG_FIELDS.items():
        value = getattr(args, flag)
        if flag in ("lr", "baseline_lr") and (flag == "baseline_lr") != variant.supervised:
            if value is not None:  # --lr is the direction loss's, --baseline-lr a baseline's: checked, not used
                check_value(value, "lr", f"--{flag.replace('_', '-')}")
            continue
        if value is not None:
            values[name] = list(value) if isinstance(value, (list, tuple)) else value
            names[name] = f"--{flag.replace('_', '-')}"
    if not args.eval_data:
        values["eval_every"] = 0
    values["channels_last"] = args.channels_last
    values["numerics"] = args.numerics
    settings = build(values, variant, names=names)
    # the options that are no AdaptSettings field, resolved here once for _run and the report
    protocol = get_protocol(settings.protocol)
    args.protocol = protocol.name
    args.clip_antialias = settings.clip_antialias
    args.plain_clip = protocol.plain_clip_full and variant.region == "full"
    return settings


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    _check_numbers(args)
    from ioda.archs import load_model

    device = resolve_device(args.device)
    prompts = tuple(args.prompts) if args.prompts else None
    variant = get_variant(args.variant, prompts=prompts)
    jobs = _jobs(args)
    args.stack = args.stack and len(jobs) > 1  # one run stacked is a plain run
    if args.stack and not variant.direction:
        raise IodaError(f"--stack: stacking runs is for the direction-loss variants, not --variant {variant.name}")
    if args.stack and args.resume:
        raise IodaError("--stack: stacked runs do not checkpoint; drop --resume (or --stack)")
    photos = [read_image(p) for p, _, _ in jobs]  # fails early, naming the file, on corrupt / odd images
    from ioda.data.assets import resolve_checkpoint

    args.model_ref = portable_ref(args.model)  # as adapt.json records it: the registered name, or a portable path
    args.model = resolve_checkpoint(args.model)  # a registered name becomes its verified cached file
    loaded = load_model(args.model, preset=args.preset)  # refuses unrecognised / unsaveable networks before work
    scale = loaded.scale
    settings = adapt_settings(args, variant, device)  # flags checked above, presets by the params schema
    _check_patch(loaded, variant, settings.lr_patch)
    # Only the direction loss crops the photo itself (finetune trains on target pairs, zssr shrinks its patch).
    for (photo_path, _, _), photo in zip(jobs, photos):
        if variant.direction and min(photo.shape[:2]) < settings.lr_patch:
            raise IodaError(f"{photo_path}: photo {photo.shape[1]}x{photo.shape[0]} is smaller than the LR patch "
                            f"size {settings.lr_patch} (use a larger photo or --lr-patch)")
    model_sha = sha256_file(args.model)
    created = {}
    for photo_path, _, out_dir in jobs:
        created[out_dir] = ensure_writable_dir(out_dir, "--out-dir")
        if args.resume and variant.trains:
            _check_resume(out_dir / "checkpoint.pt", {"photo": sha256_file(photo_path), "model": model_sha})
    try:
        shared = _Shared(args, device, variant, scale, settings)
    except BaseException:
        for out_dir, new in created.items():
            if new:
                shutil.rmtree(out_dir, ignore_errors=True)
        raise
    before = {out_dir: {n: identity(out_dir / n) for n in FINAL_OUTPUTS} for _, _, out_dir in jobs}
    stacked = None
    if args.stack:
        from ioda.adapt.stacked import NotStackable

        try:
            stacked = _run_stacked(args, shared, jobs, photos, loaded, model_sha)
        except NotStackable as err:  # found before any training: the runs go one after another instead
            LOG.warning("%s; --stack: adapting the images one after another instead", err)
            args.stack = False
        except BaseException as err:
            for _, _, out_dir in jobs:
                clean_failed(out_dir, before[out_dir], created[out_dir], getattr(err, "keep", ()))
            raise
    if stacked is not None:
        for (_, _, out_dir), stats in zip(jobs, stacked):
            LOG.info("wrote %s (%.1f s of adaptation, its share of the stacked steps)", out_dir / "model.safetensors",
                     stats.get("seconds") or 0.0)
    else:
        for (photo_path, labels_path, out_dir), photo in zip(jobs, photos):
            try:
                stats = _run(args, shared, photo_path, photo, labels_path, loaded, model_sha, out_dir)
            except BaseException as err:
                clean_failed(out_dir, before[out_dir], created[out_dir], getattr(err, "keep", ()))
                raise
            LOG.info("wrote %s (%.1f s of adaptation)", out_dir / "model.safetensors", stats.get("seconds") or 0.0)
    if shared.untrained:
        LOG.warning("the encoder was UNTRAINED: these adapted weights are a smoke test, not a real adaptation")
    return 0


def _jobs(args) -> list[tuple[Path, str | None, Path]]:
    """(photo, labels file, output folder) per run. Several --index values: one subfolder img<I> per image."""
    indices = args.index or [None]  # None: not given (image 0 of --pool)
    if args.photo is not None and len(indices) > 1:
        raise IodaError("--index: several images need --pool DIR instead of a photo path")
    if args.photo is not None or len(indices) == 1:
        if args.labels and len(args.labels) > 1:
            raise IodaError(f"--labels: one label map for one photo, got {len(args.labels)}")
        return [(image_arg(args.photo, args.pool, indices[0]), args.labels and args.labels[0], Path(args.out_dir))]
    if args.labels and len(args.labels) != len(indices):
        raise IodaError(f"--labels: expected one label map per --index ({len(indices)}), got {len(args.labels)}")
    if len(set(indices)) != len(indices):
        raise IodaError(f"--index: each image once, got {' '.join(map(str, indices))}")
    return [(image_arg(None, args.pool, i), args.labels[k] if args.labels else None, Path(args.out_dir) / f"img{i}")
            for k, i in enumerate(indices)]


class _Shared:
    """What every image of one invocation shares, built once: the encoder and the source pool."""

    def __init__(self, args, device, variant, scale, settings):
        self.variant, self.scale, self.settings, self.device = variant, scale, settings, device
        self.encoder = self.source = self.eval_fn = None
        self.untrained = False
        seed_everything(settings.seed)
        protocol = get_protocol(settings.protocol)
        if settings.eval_every and variant.direction:  # the baselines train without evaluations
            from ioda.evaluate import DeviceEvaluator

            self.eval_fn = DeviceEvaluator(args.eval_data, scale, device=device, crop_hr=protocol.eval_crop_hr,
                                           batch_size=settings.eval_batch)
        if variant.direction:
            from ioda.adapt.api import source_pool

            self.encoder = _encoder(args, device, settings.clip_input or protocol.clip_input, protocol.name,
                                    settings.seed, untrained=variant.encoder == "untrained")
            self.untrained = bool(self.encoder.untrained)
            self.source = source_pool(args.source_data, scale, variant)


def _labels_digest(labels) -> str | None:
    if labels is None:
        return None
    arr = np.ascontiguousarray(labels, dtype=np.int32)
    return hashlib.sha256(repr(arr.shape).encode() + arr.tobytes()).hexdigest()


def _run(args, shared, photo_path, photo, labels_path, loaded, model_sha, out_dir):
    from ioda.adapt.api import adapt

    labels, inputs = _run_inputs(args, shared, photo_path, photo, labels_path, model_sha, out_dir)
    # adapt() seeds everything from settings.seed: each image gets what a run of its own would.
    result = adapt(loaded.module, photo, variant=shared.variant, settings=shared.settings, encoder=shared.encoder,
                   source=shared.source, labels=labels, eval_fn=shared.eval_fn, work_dir=out_dir, scale=shared.scale,
                   device=shared.device, target_train=args.target_train, resume=args.resume, inputs=inputs)
    return write_outputs(args, shared, photo_path, photo, loaded, out_dir, result, inputs)


def _run_stacked(args, shared, jobs, photos, loaded, model_sha) -> list[dict]:
    from ioda.adapt.api import adapt_stacked

    prepared = [_run_inputs(args, shared, photo_path, photo, labels_path, model_sha, out_dir)
                for (photo_path, labels_path, out_dir), photo in zip(jobs, photos)]
    results = adapt_stacked(loaded.module, photos, variant=shared.variant, settings=shared.settings,
                            encoder=shared.encoder, source=shared.source, labels=[lab for lab, _ in prepared],
                            eval_fn=shared.eval_fn, work_dirs=[out_dir for _, _, out_dir in jobs], scale=shared.scale,
                            device=shared.device, inputs=[inp for _, inp in prepared])
    return [write_outputs(args, shared, photo_path, photo, loaded, out_dir, result, inputs)
            for (photo_path, _, out_dir), photo, result, (_, inputs) in zip(jobs, photos, results, prepared)]


def _run_inputs(args, shared, photo_path, photo, labels_path, model_sha, out_dir):
    """The run's label map (variants with instance regions) and what a --resume must continue on: the same photo
    and source model (and label map)."""
    variant = shared.variant
    inputs = {"photo": sha256_file(photo_path), "model": model_sha}
    labels = _labels(args, labels_path, photo_path, photo, out_dir) if variant.needs_labels else None
    if variant.direction:
        inputs["labels"] = _labels_digest(labels)
    return labels, inputs


if __name__ == "__main__":
    raise SystemExit(main())
