"""`ioda adapt`: adapt a pretrained SR model to the domain of ONE low-resolution photo.

Writes, in --out-dir: model.safetensors (the adapted weights), sr.png (the photo super-resolved by them),
adapt.json (protocol, settings, timing, hardware, encoder, fallbacks), train_log.csv (step, loss) and, with
--eval-data, curve.csv (PSNR/SSIM on a held-out target test set every --eval-every steps, step 0 included: the
best step is the ORACLE statistic the authors reported, picked on target HR; the saved model is the final one).
--protocol authors|paper: the authors' released code exactly, or the paper's text (ioda/adapt/protocol.py).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import platform
import shutil
from pathlib import Path

import numpy as np
import torch

from ioda.adapt.protocol import PROTOCOLS, get_protocol
from ioda.adapt.variants import VARIANTS, get_variant
from ioda.archs.tiling import AUTO_TILE, AUTO_TILE_PIXELS  # sr.png above that many LR px: tiles (bounded memory)
from ioda.config import defaults, paper_config
from ioda.errors import IodaError
from ioda.files import ensure_writable_dir, sha256_file, write_json
from ioda.imageio import image_arg, read_image, write_image
from ioda.runtime import resolve_device, seed_everything, setup_logging

LOG = logging.getLogger("ioda.adapt")
# outputs of a run: on failure only those this run created or replaced are removed
FINAL_OUTPUTS = ("model.safetensors", "sr.png", "adapt.json", "curve.csv", "train_log.csv", "labels.npz",
                 "labels.json")


def settings_preset(name: str) -> dict:
    """The `adapt` section behind --settings: `paper` is config/paper.yaml's, `cpu` the params schema's defaults
    (a CPU-sized budget for trying things out on a laptop). No default is repeated in this module."""
    return paper_config()["adapt"] if name == "paper" else defaults("adapt")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ioda adapt",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("photo", nargs="?", help="the ONE low-resolution target photo (PNG/JPEG/...); its HR is never needed")
    p.add_argument("--pool", help="instead of PHOTO: take the photo from this folder of images, the --index-th "
                   "by sorted name (how the workflow names a run's target image)")
    p.add_argument("--index", type=int, nargs="+",
                   help="with --pool: which image, from 0 (default 0); several: each adapted in turn, with the "
                   "model, encoder and source pool loaded once, into --out-dir/img<I>/ (each equal to a run of its own)")
    p.add_argument("--model", required=True, help="pretrained SR checkpoint (.pth/.safetensors, any spandrel arch) "
                   "or registered weights (craft_x4, ditn_real_x4; see ioda prepare --list)")
    p.add_argument("--preset", help="expected backbone preset (e.g. safmn_l); a mismatching checkpoint is refused")
    p.add_argument("--out-dir", required=True, help="folder for the adapted weights, sr.png and logs")
    p.add_argument("--variant", default="ioda", choices=sorted(VARIANTS), help="method / ablation row (default: ioda)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS),
                   help="authors: their released code exactly (loss weight, CLIP input, soft alpha, label-0 "
                   "instances, eroded HR masks, unmasked SR, fp16 CLIP, eval every 10 steps); paper: the paper's "
                   "text and our documented choices (default from --settings: authors for paper, paper for cpu; "
                   "see docs/method.md)")
    p.add_argument("--loss", choices=["direction", "direction_lrsim"],
                   help="override the protocol's loss: the paper's direction loss, or the authors' code's "
                   "LR-similarity-weighted form")
    p.add_argument("--prompts", nargs=2, metavar=("SOURCE", "TARGET"), help="text-guided variant: the two prompts")
    p.add_argument("--source-data", help="source-domain split folder (LR_x<scale>/, and HR/ for real_hr); "
                   "default: clean MATLAB-bicubic LR of the photos bundled with scikit-image")
    p.add_argument("--labels", nargs="+", help="instance label map of the photo (.npz from `ioda masks`); computed with "
                   "--mask-source when the variant needs one and none is given")
    p.add_argument("--mask-source", default="superpixel", choices=["superpixel", "sam"],
                   help="instance source when --labels is not given: SLIC superpixels (offline) or SAM")
    p.add_argument("--sam-model", default="vit_h", choices=["vit_b", "vit_l", "vit_h"],
                   help="SAM size for --mask-source sam (the paper: vit_h)")
    p.add_argument("--sam-checkpoint", help="SAM checkpoint file for --mask-source sam (e.g. sam_vit_h_4b8939.pth)")
    p.add_argument("--target-train", help="finetune variant only: a target split with HR/ and LR_x<scale>/")
    p.add_argument("--encoder", default="auto", help="CLIP image encoder: an open_clip model name "
                   "(ViT-B-16-quickgelu), 'tiny' (untrained, offline), or 'auto' (ViT-B-16 with OpenAI weights "
                   "if they are in the local cache, else tiny, with a warning)")
    p.add_argument("--encoder-weights", help="CLIP weights: 'openai' or a local state-dict file")
    p.add_argument("--alpha-weights", help="released Alpha-CLIP visual checkpoint (e.g. clip_b16_grit+mim_fultune_4xe.pth)")
    p.add_argument("--alpha-init", default="zero", choices=["zero", "random"],
                   help="alpha conv without --alpha-weights: zero (= plain CLIP, default) or seeded random "
                   "(only sensible for an untrained encoder)")
    p.add_argument("--clip-input", choices=["unit", "gan_quirk"],
                   help="override the protocol's CLIP image range: unit ([0,1]; paper) or gan_quirk (the authors' "
                   "[-1,1] un-normalisation)")
    p.add_argument("--clip-antialias", action=argparse.BooleanOptionalAction, default=None,
                   help="antialias the tensor resizes into CLIP (torchvision's default since 0.17, off before; the "
                   "authors' version is unknown; default from --settings: on)")
    p.add_argument("--settings", default="auto", choices=["auto", "paper", "cpu"],
                   help="where unset flags come from: paper (config/paper.yaml: 1500 steps, batch 2, LR patch 128) or "
                   "cpu (the params schema's defaults: 200 steps, LR patch 48); auto = paper on CUDA")
    p.add_argument("--steps", type=int, help="number of Adam steps (fixed budget; default from --settings, "
                   "adapt.steps, or adapt.finetune_steps / adapt.zssr_steps for those baselines)")
    p.add_argument("--batch-size", type=int, help="samples per step (default from --settings; the paper: 2)")
    p.add_argument("--lr-patch", type=int, help="LR crop size (HR crop = scale x this)")
    p.add_argument("--lr", type=float, help="learning rate (Adam)")
    p.add_argument("--baseline-lr", type=float,
                   help="learning rate of the finetune / zssr baselines (default from --settings: adapt.baseline_lr)")
    p.add_argument("--betas", type=float, nargs=2, help="Adam betas (default from --settings: the authors' 0, 0.99**0.8)")
    p.add_argument("--occlusion-p", type=float, help="occlusion variants: probability of masking a sample")
    p.add_argument("--occlusion-cell", type=int, help="occlusion variants: cell size in LR px")
    p.add_argument("--occlusion-cell-p", type=float, help="occlusion variants: probability of zeroing a cell "
                   "(the three default from --settings: adapt.occlusion)")
    p.add_argument("--seed", type=int, default=0, help="seed of crops, masks and init (same seed, same result)")
    p.add_argument("--eval-data", help="target test split for the oracle PSNR-vs-step curve")
    p.add_argument("--eval-every", type=int, help="evaluate on --eval-data every N steps, step 0 included "
                   "(0: never; default from --settings: 10 for paper, as the authors)")
    p.add_argument("--eval-batch", type=int, help="test images per SR forward when evaluating (default from --settings)")
    p.add_argument("--tile", type=int, help="tile size (LR px) for super-resolving the photo; 0 = whole photo in one "
                   f"pass; default: whole up to {AUTO_TILE_PIXELS} px, tiles of {AUTO_TILE} px above (bounded memory)")
    p.add_argument("--no-sr", action="store_true", help="do not write sr.png")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format (can help on CUDA)")
    p.add_argument("--resume", action="store_true", help="continue from --out-dir/checkpoint.pt")
    p.add_argument("--stack", action="store_true",
                   help="with several --index: step the images' runs together (one vmap'd forward of their models "
                   "and one CLIP forward per step; direction-loss variants, no --resume); each result equals its "
                   "own run up to float reassociation (~1e-6), not bit for bit")
    p.add_argument("--keep-checkpoint", action="store_true", help="keep checkpoint.pt after success")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    p.add_argument("--log", help="also log to this file")
    return p


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} ({torch.get_num_threads()} threads)"


def _encoder(args, device: torch.device, clip_input: str, protocol: str):
    from ioda.clip import build_encoder

    name, weights = args.encoder, args.encoder_weights
    opts = {"device": device, "input_range": clip_input, "protocol": protocol, "antialias": args.clip_antialias,
            "alpha_weights": args.alpha_weights, "alpha_init": args.alpha_init}
    if args.plain_clip:
        # protocol paper, a row without region masks: plain CLIP (the paper's Sec. 2.3), no Alpha-CLIP weights
        opts.update(alpha_weights=None, alpha_init="zero")
    if name == "auto":
        try:
            return build_encoder("ViT-B-16-quickgelu", pretrained=weights or "openai", **opts)
        except IodaError as err:
            LOG.warning("no pretrained CLIP available offline (%s); falling back to the UNTRAINED tiny encoder: "
                        "adaptation will run but is not meaningful", err)
            name, weights = "tiny", None
    return build_encoder(name, pretrained=weights, seed=args.seed, **opts)


def _labels(args, labels_path: str | None, photo_path: Path, photo, out_dir: Path):
    from ioda.masks import cached_label_map, load_label_map

    if labels_path:
        return load_label_map(labels_path, expected_hw=photo.shape[:2])
    LOG.info("computing instance labels of the photo with %s", args.mask_source)
    params = ({"model_type": args.sam_model, "checkpoint": args.sam_checkpoint,
               "paint": get_protocol(args.protocol).paint} if args.mask_source == "sam" else {})
    labels, _ = cached_label_map(photo_path, out_dir / "labels.npz", source=args.mask_source, params=params)
    return labels


def adapt_settings(args, variant, device: torch.device):
    """This run's AdaptSettings: each flag given, else the --settings preset (see settings_preset)."""
    from ioda.adapt.trainer import AdaptSettings

    preset = settings_preset("paper" if args.settings == "paper" or (args.settings == "auto" and device.type == "cuda")
                             else "cpu")
    baseline = variant.method in ("finetune", "zssr")  # supervised: own step budget and learning rate

    def pick(flag, default):
        return default if flag is None else flag

    protocol = get_protocol(pick(args.protocol, preset["protocol"]))
    # the options that are no AdaptSettings field, resolved here once for _run and the report
    args.protocol = protocol.name
    args.clip_antialias = pick(args.clip_antialias, preset["clip_antialias"])
    args.plain_clip = protocol.plain_clip_full and variant.region == "full"

    return AdaptSettings(
        steps=pick(args.steps, preset[f"{variant.method}_steps" if baseline else "steps"]),
        batch_size=pick(args.batch_size, preset["batch_size"]),
        lr_patch=pick(args.lr_patch, preset["lr_patch"]),
        lr=pick(args.baseline_lr, preset["baseline_lr"][variant.method]) if baseline else pick(args.lr, preset["lr"]),
        betas=tuple(pick(args.betas, preset["betas"])),
        loss=pick(args.loss, preset["loss"]),  # None: the protocol's
        clip_input=pick(args.clip_input, preset["clip_input"]),
        seed=args.seed,
        eval_every=pick(args.eval_every, preset["eval_every"]) if args.eval_data else 0,
        channels_last=args.channels_last,
        occlusion_p=pick(args.occlusion_p, preset["occlusion"]["p"]),
        occlusion_cell=pick(args.occlusion_cell, preset["occlusion"]["cell"]),
        occlusion_cell_p=pick(args.occlusion_cell_p, preset["occlusion"]["cell_p"]),
        region_opts=protocol.region_opts(variant.region),
        protocol=protocol.name,
        clip_antialias=args.clip_antialias,
        eval_batch=pick(args.eval_batch, preset["eval_batch"]),
    )


def _check_numbers(args) -> None:
    """Every numeric option is checked before any work; 0 is a value, never "not given"."""
    for key in ("steps", "batch_size", "lr_patch", "occlusion_cell", "eval_batch"):
        v = getattr(args, key)
        if v is not None and v < 1:
            raise IodaError(f"--{key.replace('_', '-')} must be at least 1, got {v}")
    for key in ("lr", "baseline_lr"):
        v = getattr(args, key)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise IodaError(f"--{key.replace('_', '-')} must be a positive number, got {v}")
    for key in ("occlusion_p", "occlusion_cell_p"):
        v = getattr(args, key)
        if v is not None and not 0 <= v <= 1:
            raise IodaError(f"--{key.replace('_', '-')} must lie in [0, 1], got {v}")
    if args.betas is not None and not all(0 <= b < 1 for b in args.betas):
        raise IodaError(f"--betas must both lie in [0, 1), got {args.betas[0]} {args.betas[1]}")
    if args.tile is not None and args.tile < 0:
        raise IodaError(f"--tile must be 0 (whole photo) or a positive tile size in LR px, got {args.tile}")
    if args.eval_every is not None and args.eval_every < 0:
        raise IodaError(f"--eval-every must be 0 (never) or a positive number of steps, got {args.eval_every}")


def _check_patch(loaded, variant, lr_patch: int) -> None:
    """Before any training: the network runs on the LR patches the run will crop (asked of the network)."""
    from ioda.archs.probe import runs_on, smallest_patch

    if variant.method == "none" or runs_on(loaded.module, loaded.scale, lr_patch):
        return
    smallest = smallest_patch(loaded.module, loaded.scale)
    accepts = f"the smallest patch it accepts is {smallest}" if smallest else "it runs on no patch up to 512 px"
    raise IodaError(f"--lr-patch {lr_patch}: {loaded.path} cannot super-resolve a {lr_patch}x{lr_patch} LR patch; "
                    f"{accepts}")


def portable_ref(path) -> str:
    """A file as adapt.json names it, meaningful on another machine: a registered name (craft_x4) or relative path
    as given, a path inside the working directory relative to it, else the file name (its sha256 is recorded
    next to it); never this machine's absolute path."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.name


def _identity(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class _KeptOutputs(IodaError):
    """A failure after some outputs were completed that must be kept (e.g. the weights when sr.png fails)."""

    def __init__(self, message: str, keep: tuple[str, ...]):
        super().__init__(message)
        self.keep = keep


def _check_resume(ckpt: Path, inputs: dict[str, str]) -> None:
    """Before any work: the checkpoint a --resume continues is readable, ours, and made from this photo and
    model (the trainers check the settings and the label map again when they load it)."""
    if not ckpt.exists():
        return
    from ioda.safeload import torch_load

    state = torch_load(ckpt)
    if not isinstance(state, dict) or not ({"model_t", "model"} & set(state)):
        raise IodaError(f"{ckpt}: not an ioda adaptation checkpoint (holds a {type(state).__name__} without "
                        f"weights); remove it or use a new --out-dir")
    had = state.get("inputs") or (state.get("config") or {}).get("inputs") or {}
    for key, want in inputs.items():
        if had.get(key) != want:
            raise IodaError(f"{ckpt}: cannot resume: this run's {key} (sha256 {want[:12]}) is not the one the "
                            f"checkpoint was made from (sha256 {str(had.get(key))[:12]}); use the same {key} or a "
                            f"new --out-dir")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    _check_numbers(args)
    from ioda.archs import load_model

    device = resolve_device(args.device)
    prompts = tuple(args.prompts) if args.prompts else None
    variant = get_variant(args.variant, prompts=prompts)
    if args.stack and variant.method != "direction":
        raise IodaError(f"--stack: stacking runs is for the direction-loss variants, not --variant {variant.name}")
    if args.stack and args.resume:
        raise IodaError("--stack: stacked runs do not checkpoint; drop --resume (or --stack)")
    jobs = _jobs(args)
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
        if variant.method == "direction" and min(photo.shape[:2]) < settings.lr_patch:
            raise IodaError(f"{photo_path}: photo {photo.shape[1]}x{photo.shape[0]} is smaller than the LR patch "
                            f"size {settings.lr_patch} (use a larger photo or --lr-patch)")
    model_sha = sha256_file(args.model)
    created = {}
    for photo_path, _, out_dir in jobs:
        created[out_dir] = ensure_writable_dir(out_dir, "--out-dir")
        if args.resume and variant.method != "none":
            _check_resume(out_dir / "checkpoint.pt", {"photo": sha256_file(photo_path), "model": model_sha})
    try:
        shared = _Shared(args, device, variant, scale, settings)
    except BaseException:
        for out_dir, new in created.items():
            if new:
                shutil.rmtree(out_dir, ignore_errors=True)
        raise
    before = {out_dir: {n: _identity(out_dir / n) for n in FINAL_OUTPUTS} for _, _, out_dir in jobs}
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
                _clean_failed(out_dir, before[out_dir], created[out_dir], getattr(err, "keep", ()))
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
                _clean_failed(out_dir, before[out_dir], created[out_dir], getattr(err, "keep", ()))
                raise
            LOG.info("wrote %s (%.1f s of adaptation)", out_dir / "model.safetensors", stats.get("seconds") or 0.0)
    if shared.untrained:
        LOG.warning("the CLIP encoder was UNTRAINED: these adapted weights are a smoke test, not a real adaptation")
    return 0


def _clean_failed(out_dir: Path, before: dict, created: bool, keep=()) -> None:
    """No partial results, and nothing of an earlier run lost: remove only the outputs this run created or replaced
    (outputs it completed and must keep aside); keep checkpoint.pt (the last good state) for --resume, and drop a
    folder this run created if nothing worth keeping is in it."""
    for name, ident in before.items():
        f = out_dir / name
        if name not in keep and _identity(f) != ident and f.exists():
            f.unlink()
    if created and not (out_dir / "checkpoint.pt").exists():
        shutil.rmtree(out_dir, ignore_errors=True)


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
        seed_everything(args.seed)
        protocol = get_protocol(settings.protocol)
        if settings.eval_every and variant.method == "direction":  # the baselines train without evaluations
            from ioda.evaluate import DeviceEvaluator

            self.eval_fn = DeviceEvaluator(args.eval_data, scale, device=device, crop_hr=protocol.eval_crop_hr,
                                           batch_size=settings.eval_batch)
        if variant.method == "direction":
            from ioda.adapt.api import source_pool

            self.encoder = _encoder(args, device, settings.clip_input or protocol.clip_input, protocol.name)
            self.untrained = bool(self.encoder.untrained)
            self.source = source_pool(args.source_data, scale, variant)


def _labels_digest(labels) -> str | None:
    if labels is None:
        return None
    arr = np.ascontiguousarray(labels, dtype=np.int32)
    return hashlib.sha256(repr(arr.shape).encode() + arr.tobytes()).hexdigest()


def _tile_for(args, photo) -> int:
    if args.tile is not None:
        return args.tile
    return AUTO_TILE if photo.shape[0] * photo.shape[1] > AUTO_TILE_PIXELS else 0


def _run(args, shared, photo_path, photo, labels_path, loaded, model_sha, out_dir):
    from ioda.adapt.api import adapt

    labels, inputs = _run_inputs(args, shared, photo_path, photo, labels_path, model_sha, out_dir)
    # adapt() seeds everything from settings.seed: each image gets what a run of its own would.
    result = adapt(loaded.module, photo, variant=shared.variant, settings=shared.settings, encoder=shared.encoder,
                   source=shared.source, labels=labels, eval_fn=shared.eval_fn, work_dir=out_dir, scale=shared.scale,
                   device=shared.device, target_train=args.target_train, resume=args.resume, inputs=inputs)
    return _write_outputs(args, shared, photo_path, photo, loaded, out_dir, result, inputs)


def _run_stacked(args, shared, jobs, photos, loaded, model_sha) -> list[dict]:
    from ioda.adapt.api import adapt_stacked

    prepared = [_run_inputs(args, shared, photo_path, photo, labels_path, model_sha, out_dir)
                for (photo_path, labels_path, out_dir), photo in zip(jobs, photos)]
    results = adapt_stacked(loaded.module, photos, variant=shared.variant, settings=shared.settings,
                            encoder=shared.encoder, source=shared.source, labels=[lab for lab, _ in prepared],
                            eval_fn=shared.eval_fn, work_dirs=[out_dir for _, _, out_dir in jobs], scale=shared.scale,
                            device=shared.device, inputs=[inp for _, inp in prepared])
    return [_write_outputs(args, shared, photo_path, photo, loaded, out_dir, result, inputs)
            for (photo_path, _, out_dir), photo, result, (_, inputs) in zip(jobs, photos, results, prepared)]


def _run_inputs(args, shared, photo_path, photo, labels_path, model_sha, out_dir):
    """The run's label map (variants with instance regions) and what a --resume must continue on: the same photo
    and source model (and label map)."""
    variant = shared.variant
    inputs = {"photo": sha256_file(photo_path), "model": model_sha}
    labels = _labels(args, labels_path, photo_path, photo, out_dir) if variant.needs_labels else None
    if variant.method == "direction":
        inputs["labels"] = _labels_digest(labels)
    return labels, inputs


def _write_outputs(args, shared, photo_path, photo, loaded, out_dir, result, inputs) -> dict:
    """model.safetensors, sr.png and adapt.json of one run."""
    from ioda.archs import save_model
    from ioda.archs.tiling import upscale_image

    variant, settings, device, scale, encoder = (shared.variant, shared.settings, shared.device, shared.scale,
                                                 shared.encoder)
    protocol = get_protocol(settings.protocol)
    model_t, stats = result.model, result.stats
    encoder_desc = encoder.description if encoder is not None else None
    untrained = bool(encoder.untrained) if encoder is not None else False
    model_t.eval()
    model_path = out_dir / "model.safetensors"
    save_model(model_t, model_path, preset=loaded.preset, arch=loaded.arch, scale=scale,
               meta={"ioda_variant": variant.name, "adapted_on": photo_path.name})
    sr_error = None
    if not args.no_sr:
        tile = _tile_for(args, photo)
        try:
            write_image(out_dir / "sr.png", upscale_image(model_t, photo, scale, tile=tile, device=device))
        except Exception as err:  # noqa: BLE001 - out of memory, disk full...: the weights are still good
            sr_error = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
            (out_dir / "sr.png").unlink(missing_ok=True)  # an earlier run's sr.png is not of these weights
    report = {
        "protocol": protocol.name,
        "protocol_settings": protocol.to_dict() | {"clip_input": settings.clip_input or protocol.clip_input,
                                                   "loss": settings.loss or protocol.loss,
                                                   "clip_antialias": args.clip_antialias, "plain_clip": args.plain_clip},
        "variant": variant.to_dict(),
        "settings": settings.to_dict() | {"steps_preset": args.settings, "stacked_runs": args.stack},
        "model": {"path": args.model_ref, "sha256": inputs["model"], "arch": loaded.arch, "preset": loaded.preset,
                  "scale": scale},
        "photo": {"path": portable_ref(photo_path), "sha256": inputs["photo"],
                  "width": photo.shape[1], "height": photo.shape[0]},
        "encoder": {"description": encoder_desc, "untrained": untrained},
        "seconds": stats.get("seconds"),  # adaptation only; evaluations in eval_seconds
        "eval_seconds": stats.get("eval_seconds"),
        "final": stats.get("final"),
        "best": stats.get("best"),
        "stats": stats,
        "device": str(device),
        "hardware": _hardware(device),
        "torch": torch.__version__,
        "oracle_note": "best = the oracle statistic (picked on target HR, the authors'); the saved model is the final step",
    }
    if sr_error:
        report["sr_error"] = sr_error
    write_json(out_dir / "adapt.json", report)
    if sr_error:
        raise _KeptOutputs(
            f"{out_dir / 'sr.png'}: not written ({sr_error}); the adapted weights are kept in {model_path} "
            f"(sr.png later: ioda adapt {photo_path} --model {model_path} --variant baseline --tile 128 --out-dir DIR)",
            keep=("model.safetensors", "adapt.json", "labels.npz", "labels.json", "curve.csv"))
    ckpt = out_dir / "checkpoint.pt"
    if ckpt.exists() and not args.keep_checkpoint:
        ckpt.unlink()
    return stats


if __name__ == "__main__":
    raise SystemExit(main())
