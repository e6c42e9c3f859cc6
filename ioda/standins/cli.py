"""`ioda standins --config CONFIG --root DIR`: stand-in inputs for every dataset and weight file CONFIG names.

Relative paths of CONFIG resolve against DIR, as when the workflow runs in DIR: raw datasets go to
DIR/<run.raw_dir>/<official folder>, weights to DIR/<the config's path> (backbones.*.weights,
encoder.alpha_weights, masks.sam_checkpoint), the open_clip weights (encoder.weights, a tag such as `openai`)
into open_clip's Hugging Face cache layout under DIR/standins/hf-hub (point HF_HUB_CACHE there, with
HF_HUB_OFFLINE=1). DIR/standins/record.json lists every file written with its SHA-256: a run without
`run.standins: true` refuses any of them (ioda.standins.guard)."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import shutil
from pathlib import Path

from ioda.config import load_config
from ioda.data.assets import WEIGHTS
from ioda.data.registry import get_entry
from ioda.errors import IodaError
from ioda.files import sha256_file, write_json
from ioda.runtime import setup_logging
from ioda.standins import datasets as ds
from ioda.standins import weights as ws
from ioda.standins.guard import record_path, recorded_files

LOG = logging.getLogger("ioda")
HF_CACHE = "standins/hf-hub"


def write_all(cfg: dict, root: Path, seed: int = 0, n_train: int = 3, n_test: int = 2,
              skip_existing: bool = True) -> dict:
    """Write every stand-in the validated config `cfg` needs under `root`; returns the record."""
    files: list[Path] = []
    raw = root / cfg["run"]["raw_dir"]
    for name in cfg["datasets"]:
        if get_entry(name).kind not in ("manual", "download"):
            LOG.info("%s: %s dataset, no stand-in needed", name, get_entry(name).kind)
            continue
        LOG.info("stand-in dataset %s -> %s", name, raw / get_entry(name).folder)
        files += ds.write_dataset(name, raw, seed, n_train, n_test)

    known = _known(root) if skip_existing else set()  # recorded by an earlier call: not written again

    def weight(rel: str | None, writer, *args) -> None:
        if not rel:
            return
        path = root / rel
        if not (skip_existing and path.is_file() and str(path) in known):
            LOG.info("stand-in weights %s", path)
            writer(*args, path, seed)
        files.append(path)

    for bb in cfg["backbones"].values():  # registered weights (craft_x4, ...) are real pinned files: none needed
        if bb.get("preset") and bb.get("weights") and bb["weights"] not in WEIGHTS:
            weight(bb["weights"], ws.write_backbone, bb["preset"])
    enc = cfg["encoder"]
    weight(enc.get("alpha_weights"), ws.write_alpha_clip, enc["name"])
    masks = cfg["masks"]
    if masks["source"] == "sam":
        weight(masks.get("sam_checkpoint"), ws.write_sam, masks["sam_model"])
    if enc.get("weights") and not Path(root / enc["weights"]).is_file():
        target = ws.open_clip_cache_file(enc["name"], enc["weights"], root / HF_CACHE)
        if target is None:
            raise IodaError(f"encoder.weights {enc['weights']!r}: no open_clip Hugging Face cache entry for "
                            f"{enc['name']} (expected a tag such as openai)")
        if not (skip_existing and target.is_file() and str(target) in known):
            LOG.info("stand-in open_clip weights %s", target)
            ws.write_open_clip(enc["name"], enc["weights"], root / HF_CACHE, seed)
        files.append(target)
    record = {
        "note": "STAND-INS: synthetic images and random weights in the official layouts; numbers made with them "
                "mean nothing",
        "seed": seed,
        "hf_hub_cache": str(root / HF_CACHE),
        "files": {str(p): sha256_file(p) for p in files},
    }
    write_json(record_path(root), record)
    return record


def _known(root: Path) -> set[str]:
    path = record_path(root)
    return set(recorded_files(path)) if path.is_file() else set()


def write_error(err: BaseException, root: Path) -> str | None:
    """The one line for a write that failed for want of space or permission under `root`; None for other errors.
    Each file is written atomically, so a failed write leaves no partial file."""
    code, text = getattr(err, "errno", None), str(err)
    if code == errno.ENOSPC or "No space left" in text or "file write failed" in text:
        try:
            free = f"{shutil.disk_usage(root).free / 1024**3:.1f} GiB free"
        except OSError:
            free = "free space unknown"
        return (f"--root {root}: no space left on the device while writing stand-ins ({free}; a paper config's "
                f"stand-ins take about 3.5 GB); free some space or choose another --root")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        where = getattr(err, "filename", None) or root
        return f"--root {root}: cannot write {where} ({os.strerror(code)}); choose a writable folder"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ioda standins", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the configuration whose inputs to stand in for (config/paper.yaml)")
    p.add_argument("--root", default=".", help="folder the config's relative paths resolve against (default: .)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=int, default=3, help="images per training split (default 3)")
    p.add_argument("--test", type=int, default=2, help="images per test split (default 2)")
    p.add_argument("--force", action="store_true", help="rewrite weight files already recorded")
    p.add_argument("--log", help="also log to this file")
    args = p.parse_args(argv)
    setup_logging(args.log)
    if args.train < 1 or args.test < 1:
        raise IodaError("--train/--test: expected at least 1 image per split")
    root = Path(args.root)
    if root.exists() and not root.is_dir():
        raise IodaError(f"--root {root}: exists and is not a folder (expected the folder to write stand-ins under)")
    cfg = load_config(args.config)
    try:
        record = write_all(cfg, root, args.seed, args.train, args.test, not args.force)
    except (OSError, RuntimeError) as err:  # torch.save reports a failed write as a RuntimeError
        line = write_error(err, root)
        if line is None:
            raise
        raise IodaError(line) from None
    print(f"stand-ins: {len(record['files'])} files under {root} (record: {record_path(root)}); run with "
          f"run.standins: true and HF_HUB_CACHE={record['hf_hub_cache']} HF_HUB_OFFLINE=1")
    return 0
