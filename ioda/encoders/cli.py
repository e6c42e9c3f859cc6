"""`ioda pretrain-encoder`: train the degradation encoder on source-domain HR images; write its weights
(safetensors, the card in the metadata) and its card (JSON: recipe, data hashes, run facts, probe scores).

Only source-domain data is accepted: a split of a dataset that is a task's target (`--targets`, which the workflow
fills with every task's target) or that the registry marks as a camera / non-bicubic domain is refused. A share of
the images (`--holdout`, the last ones by name) is kept out of training for the card's probes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import time
from dataclasses import fields
from pathlib import Path

from ioda.errors import IodaError

LOG = logging.getLogger("ioda")


def _parser() -> argparse.ArgumentParser:
    from ioda.encoders.train import Recipe

    ap = argparse.ArgumentParser(prog="ioda pretrain-encoder", description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", required=True, help="source split folder(s) with HR/ (ioda prepare)")
    ap.add_argument("--out", required=True, help="output weights, .safetensors")
    ap.add_argument("--card", help="output card JSON (default: the weights' path with .json)")
    ap.add_argument("--targets", nargs="*", default=[], help="dataset names that are targets of a task: refused")
    ap.add_argument("--holdout", type=float, default=0.1, help="share of images kept for the card's probes")
    for f in fields(Recipe):
        ap.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=None,
                        help=f"recipe: {f.name} (default {f.default})")
    ap.add_argument("--resume", action="store_true", help="continue from <out>.ckpt")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--log", help="also log to this file")
    ap.add_argument("--log-csv", help="per-step CSV (step, loss, lr)")
    return ap


def check_source_split(split: Path, targets: set[str]) -> str:
    """The split's dataset name; an IodaError when it is a target of a task or not a source domain."""
    from ioda.data.registry import REGISTRY
    from ioda.files import read_json

    manifest = split.parent / "manifest.json"
    if not (split / "HR").is_dir() or not manifest.is_file():
        raise IodaError(f"{split}: expected a split folder of `ioda prepare` (HR/ and ../manifest.json)")
    name = read_json(manifest).get("name")
    if name in targets:
        raise IodaError(f"{split}: dataset {name!r} is the target of a task; the encoder trains on source-domain "
                        f"data only (a target's images would leak into the adaptation's judge)")
    entry = REGISTRY.get(name)
    if entry is None or not entry.source_domain:
        raise IodaError(f"{split}: dataset {name!r} is not a registered clean bicubic source domain; the encoder "
                        f"trains on source-domain HR only")
    return name


def load_images(splits: list[Path], min_side: int) -> tuple[list[Path], list]:
    from ioda.imageio import list_images, read_image

    paths = [p for s in splits for p in list_images(s / "HR")]
    if not paths:
        raise IodaError(f"{', '.join(map(str, splits))}: no HR images")
    images = []
    for p in paths:
        img = read_image(p)
        if min(img.shape[:2]) < min_side:
            raise IodaError(f"{p}: {img.shape[1]}x{img.shape[0]} px is smaller than the encoder's HR crop "
                            f"({min_side} px a side)")
        images.append(img)
    return paths, images


def data_digest(splits: list[Path], paths: list[Path]) -> dict:
    from ioda.files import sha256_file

    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + sha256_file(p).encode())
    return {"manifests": {str(s.parent.name): sha256_file(s.parent / "manifest.json") for s in splits},
            "hr_images_sha256": h.hexdigest(), "images": len(paths)}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch

    from ioda.encoders.degradation import save_weights
    from ioda.encoders.train import Recipe, train_encoder
    from ioda.files import ensure_writable_dir, removed_on_failure, write_json
    from ioda.runtime import setup_logging

    setup_logging(args.log)
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise IodaError(f"--out {out}: expected a .safetensors path")
    card_path = Path(args.card) if args.card else out.with_suffix(".json")
    recipe = Recipe(**{f.name: getattr(args, f.name) for f in fields(Recipe) if getattr(args, f.name) is not None})
    for key in ("steps", "batch_size", "bank_size", "lr_crop", "sr_crop"):
        if getattr(recipe, key) < 1:
            raise IodaError(f"--{key.replace('_', '-')}: must be at least 1, got {getattr(recipe, key)}")
    if recipe.lr_crop > recipe.lr_size or recipe.sr_crop > recipe.sr_size or recipe.sr_size > recipe.lr_size * recipe.scale:
        raise IodaError("recipe: crops must fit their bank images (lr_crop <= lr_size, sr_crop <= sr_size <= "
                        "lr_size * scale)")
    if not 0 <= args.holdout < 1:
        raise IodaError(f"--holdout: a share in [0, 1), got {args.holdout}")
    splits = [Path(s) for s in args.data]
    names = [check_source_split(s, set(args.targets)) for s in splits]
    paths, images = load_images(splits, recipe.lr_size * recipe.scale)
    n_hold = int(round(len(images) * args.holdout)) if len(images) > 1 else 0
    train_imgs, held = images[: len(images) - n_hold], images[len(images) - n_hold:]
    ensure_writable_dir(out.parent, "--out")
    if args.threads:
        torch.set_num_threads(args.threads)
    LOG.info("encoder training on %d images of %s (%d held out), recipe %s", len(train_imgs), ", ".join(names),
             n_hold, recipe.to_dict())
    t0 = time.perf_counter()
    with removed_on_failure(out, card_path):
        net, facts = train_encoder(train_imgs, recipe, out, resume=args.resume,
                                   log_csv=Path(args.log_csv) if args.log_csv else None)
        card = {"format": "ioda-degradation-encoder card 1", "recipe": recipe.to_dict(), "config": net.cfg,
                "datasets": names, "data": data_digest(splits, paths),
                "holdout": [p.name for p in paths[len(paths) - n_hold:]], "steps": recipe.steps, **facts,
                "torch": torch.__version__, "machine": platform.machine(), "threads": torch.get_num_threads()}
        if held:
            from ioda.encoders.degradation import DegradationEncoder
            from ioda.encoders.probes import synthetic_probes

            enc = DegradationEncoder(net, untrained=False, description="probe")
            card["probes"] = synthetic_probes(enc, held)
            LOG.info("probes on %d held-out images: %s", len(held), card["probes"])
        card["seconds"] = round(time.perf_counter() - t0, 1)
        save_weights(net, out, card)
        write_json(card_path, card)
    LOG.info("wrote %s and %s (%.0f s)", out, card_path, card["seconds"])
    return 0


def card_main(argv: list[str] | None = None) -> int:
    """`ioda encoder-card`: what encoder a configuration's runs use, as JSON (name, registry description, weights
    file and its SHA-256, and the training card of a degradation-encoder file); reads no weights into a model."""
    from ioda.encoders import get_encoder_spec
    from ioda.files import sha256_file, write_json

    ap = argparse.ArgumentParser(prog="ioda encoder-card", description=card_main.__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="encoder registry name (encoder.name)")
    ap.add_argument("--weights", help="its weights file or open_clip tag (encoder.weights), if any")
    ap.add_argument("--out", required=True, help="output JSON")
    args = ap.parse_args(argv)
    spec = get_encoder_spec(args.name)
    card: dict = {"name": spec.name, "description": spec.description, "has_text": spec.has_text,
                  "weights": args.weights, "untrained": not args.weights}
    if args.weights and Path(args.weights).is_file():
        card["weights_sha256"] = sha256_file(args.weights)
        if spec.trained_here:
            from safetensors import safe_open

            try:
                with safe_open(args.weights, framework="numpy") as f:
                    meta = f.metadata() or {}
                card["training"] = json.loads(meta.get("card", "{}"))
            except Exception as err:
                raise IodaError(f"{args.weights}: not a readable degradation-encoder file ({type(err).__name__})") \
                    from None
    write_json(args.out, card)
    return 0
