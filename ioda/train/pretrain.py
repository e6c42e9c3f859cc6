"""`ioda pretrain`: supervised L1 pre-training of a backbone preset on a source split, or import of the
authors' official weights (checksum + architecture/scale/size verified) into our safetensors format.

The final model is written once, atomically, at the end; the resumable training checkpoint lives next
to it as `<out>.ckpt` (kept after success so a longer run can extend it with --resume)."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from ioda.archs import build_model, get_preset, load_model, preset_names, save_model
from ioda.config import defaults
from ioda.data.pairs import PairedPatches, list_pairs
from ioda.data.patch_store import open_store, read_index
from ioda.errors import IodaError
from ioda.files import ensure_writable_dir, sha256_file, write_json
from ioda.runtime import resolve_device, seed_everything, setup_logging
from ioda.train.numerics import MODES, Numerics
from ioda.train.supervised import SCHEDULERS, train_supervised

# PairedPatches draws crop i from (seed, i): one distinct crop per sample up to this many, then repeats
MAX_DISTINCT_SAMPLES = 1 << 24


def checkpoint_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ioda pretrain", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", required=True, choices=preset_names())
    ap.add_argument("--out", required=True, help="output model, .safetensors")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="split folder with HR/ and LR_x<scale>/")
    src.add_argument("--store", help="a packed patch store of the split (`ioda pack`): the same patches as --data, "
                     "read from memory maps instead of decoded images held in memory")
    src.add_argument("--weights", help="official .pth/.safetensors to import instead of training")
    ap.add_argument("--sha256", help="expected SHA-256 of --weights")
    ap.add_argument("--steps", type=int, help="Adam updates (default: the preset's recipe)")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr-patch", type=int, help="LR patch size (HR = patch * scale)")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--beta2", type=float, default=0.99)
    ap.add_argument("--scheduler", choices=SCHEDULERS)
    ap.add_argument("--ckpt-every", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--numerics", choices=MODES, default=defaults("run")["numerics"],
                    help="auto/fp32: fp32 eager; fast: bf16 autocast, TF32, channels_last, torch.compile on CUDA "
                    "(ioda/train/numerics.py)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes assembling the batches "
                    "(0: in this process; the batches are the same either way)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>.ckpt if it exists")
    ap.add_argument("--log", help="log file")
    ap.add_argument("--log-csv", help="per-step CSV (step, loss, lr)")
    ap.add_argument("--summary-json", help="write run facts (steps, loss, seconds) here")
    return ap


def import_weights(weights: str, preset: str, out: str, sha256: str | None, log) -> dict:
    from ioda.data.assets import resolve_checkpoint

    weights = resolve_checkpoint(weights)  # a registered name -> its verified cached file
    if sha256:
        got = sha256_file(weights) if Path(weights).is_file() else None
        if got is None:
            raise IodaError(f"{weights}: file not found (expected the official weights of preset {preset})")
        if got.lower() != sha256.lower():
            raise IodaError(f"{weights}: SHA-256 is {got}, expected {sha256.lower()}")
    loaded = load_model(weights, preset=preset)  # refuses other arch/scale/size
    save_model(loaded.module, out, preset, meta={"source": Path(weights).name, "imported": True})
    log.info("imported %s (%s x%d) as %s", weights, loaded.arch, loaded.scale, out)
    return {"mode": "import", "weights": str(weights), "sha256": sha256_file(weights), "preset": preset}


def _check_numbers(args) -> None:
    """Numbers are checked before any work; 0 is a value, never "not given"."""
    if args.workers < 0:
        raise IodaError(f"--workers must be 0 or more, got {args.workers}")
    for key in ("steps", "batch_size", "lr_patch", "ckpt_every"):
        v = getattr(args, key)
        if v is not None and v < 1:
            raise IodaError(f"--{key.replace('_', '-')} must be at least 1, got {v}")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise IodaError(f"--lr must be a positive number, got {args.lr}")
    if not 0 <= args.beta2 < 1:
        raise IodaError(f"--beta2 must lie in [0, 1), got {args.beta2}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log = setup_logging(args.log)
    p = get_preset(args.preset)
    _check_numbers(args)
    ensure_writable_dir(Path(args.out).parent, "--out")
    if args.weights:
        facts = import_weights(args.weights, args.preset, args.out, args.sha256, log)
    else:
        if args.sha256:
            raise IodaError("--sha256: only meaningful with --weights")
        recipe = p.recipe
        steps, batch, patch, lr = (recipe[k] if v is None else v for k, v in (
            ("steps", args.steps), ("batch_size", args.batch_size), ("lr_patch", args.lr_patch), ("lr", args.lr)))
        sched = args.scheduler or recipe["scheduler"]
        device = resolve_device(args.device)
        seed_everything(args.seed)
        length = min(steps * batch, MAX_DISTINCT_SAMPLES)
        if args.store:
            data = open_store(args.store, patch, seed=args.seed, length=length, scale=p.scale)
            inputs = {"store": read_index(args.store, verify=False)["inputs_sha256"]}  # open_store verified it
        else:
            data = PairedPatches(list_pairs(args.data, p.scale), p.scale, patch, seed=args.seed, length=length)
            inputs = None
        model = build_model(args.preset, seed=args.seed)
        ckpt = checkpoint_path(args.out)
        numerics = Numerics.resolve(args.numerics, device, fp32_default=True)  # auto: fp32, as before
        log.info("pretraining %s on %s (%d images): %d steps, batch %d, LR patch %d, lr %g (%s), device %s, "
                 "numerics %s, %d workers", args.preset, args.store or args.data, len(data.images), steps, batch,
                 patch, lr, sched, device, args.numerics, args.workers)
        result = train_supervised(
            model, data, steps=steps, batch_size=batch, lr=lr, betas=(0.9, args.beta2), scheduler=sched,
            seed=args.seed, device=device, ckpt_path=ckpt, resume=args.resume,
            log_csv=args.log_csv, ckpt_every=args.ckpt_every, desc=f"pretrain {args.preset}", inputs=inputs,
            numerics=numerics, workers=args.workers,
        )
        meta = {"data": str(args.store or args.data), "steps": steps, "batch_size": batch, "lr_patch": patch, "lr": lr,
                "scheduler": sched, "seed": args.seed}
        save_model(model.cpu(), args.out, args.preset, meta=meta)
        facts = {"mode": "train", "preset": args.preset, **meta, **result, "device": str(device),
                 "numerics": numerics.to_dict(), "workers": args.workers}
        log.info("wrote %s (final loss %.5f)", args.out, result["final_loss"])
    if args.summary_json:
        write_json(args.summary_json, facts)
    return 0
