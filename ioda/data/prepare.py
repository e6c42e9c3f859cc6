"""`ioda prepare`: build a demo dataset, fetch/verify a paper or pinned dataset, or pair your own folders,
into the on-disk pair layout.

    DIR/<split>/HR/<stem>.png
    DIR/<split>/LR_x<scale>/<stem>.png
    DIR/manifest.json   (name, kind, seed, degradation, source photos/files, per-file sha256)

Everything is built in a temporary folder next to DIR and renamed onto DIR at the end, so a failure
leaves no partial dataset (an existing DIR is only replaced by a complete new one). Same name, seed
and spec give byte-identical files.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from ioda.data import demo as demo_mod
from ioda.data.degradations import degrade, resolve_spec
from ioda.data.download import download, safe_extract, verify_manual
from ioda.data.assets import WEIGHTS, fetch_pinned, fetch_weights, pinned_files, weights_listing
from ioda.data.imresize import imresize
from ioda.data.paired import match_folders, parse_paired_spec
from ioda.data.registry import REGISTRY, DatasetEntry, get_entry, relaxed_entry, split_files
from ioda.errors import IodaError
from ioda.files import make_temp_dir, read_yaml, removed_on_failure, sha256_file, write_json
from ioda.imageio import read_image, write_image
from ioda.runtime import progress_enabled, setup_logging
from ioda.standin_mark import is_marked

LOG = logging.getLogger("ioda")
_DEMO_KEYS = {"degradation", "tile", "min_std", "splits"}


# ------------------------------------------------------------------------------------------ --spec


def parse_spec(text: str | None) -> dict:
    """--spec: a path to a YAML/JSON file, or an inline YAML/JSON mapping."""
    if not text:
        return {}
    if os.path.isfile(text):
        data = read_yaml(text)
        where = text
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise IodaError(f"--spec: not valid YAML/JSON ({getattr(err, 'problem', err)})") from None
        where = "--spec"
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise IodaError(f"{where}: expected a mapping (e.g. {{degradation: {{jpeg_quality: 90}}}})")
    return data


def apply_spec(entry: DatasetEntry, spec: dict) -> DatasetEntry:
    """Override an entry's parameters: `degradation` (merged; a new `type` replaces it), and for demo
    datasets `tile`, `min_std` and `splits` ({split: [photos]})."""
    if entry.kind == "paired":
        paired = parse_paired_spec(spec)
        return dataclasses.replace(entry, paired=paired, scale=paired["scale"])
    if entry.kind == "pinned":
        return _resplit(entry, spec)
    allowed = _DEMO_KEYS if entry.kind == "demo" else {"degradation"}
    for key in spec:
        if key not in allowed:
            raise IodaError(f"--spec.{key}: not a parameter of {entry.name!r} (expected {', '.join(sorted(allowed))})")
    changes: dict[str, Any] = {}
    if "degradation" in spec:
        over = spec["degradation"]
        if entry.degradation is None:
            raise IodaError(f"--spec.degradation: {entry.name!r} ships its own LR images; nothing to degrade")
        if not isinstance(over, dict):
            raise IodaError("--spec.degradation: expected a mapping of degradation parameters")
        if "type" in over and over["type"] != entry.degradation.get("type"):
            changes["degradation"] = dict(over)
        else:
            changes["degradation"] = {**entry.degradation, **over}
    if entry.kind == "demo" and _DEMO_KEYS & (set(spec) - {"degradation"}):
        recipe = dict(entry.demo)
        for key in ("tile", "min_std", "splits"):
            if key in spec:
                recipe[key] = spec[key]
        if not isinstance(recipe["splits"], dict) or not all(
            isinstance(v, list) and all(isinstance(p, str) for p in v) for v in recipe["splits"].values()
        ):
            raise IodaError("--spec.splits: expected a mapping {split: [photo names]}")
        if isinstance(recipe["min_std"], bool) or not isinstance(recipe["min_std"], (int, float)):
            raise IodaError(f"--spec.min_std: expected a number, got {recipe['min_std']!r}")
        changes["demo"] = recipe
    return dataclasses.replace(entry, **changes) if changes else entry


def _resplit(entry: DatasetEntry, spec: dict) -> DatasetEntry:
    """Pinned sets publish one split; --spec '{splits: {train: 10, test: 5}}' cuts it, in name order, into
    the first 10 pairs (train), the next 5 (test), ... (what is left over is not written)."""
    for key in spec:
        if key != "splits":
            raise IodaError(f"--spec.{key}: not a parameter of {entry.name!r} (expected splits)")
    if "splits" not in spec:
        return entry
    cut = spec["splits"]
    if not isinstance(cut, dict) or not cut or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 1 for k, v in cut.items()
    ):
        raise IodaError("--spec.splits: expected a mapping {split: number of pairs >= 1}, e.g. {train: 10, test: 5}")
    (only, src), = entry.splits.items()
    total = src.count
    if total is not None and sum(cut.values()) > total:
        raise IodaError(f"--spec.splits: asks for {sum(cut.values())} pairs, {entry.name!r} has {total}")
    return dataclasses.replace(entry, resplit=dict(cut))


# ------------------------------------------------------------------------------------------ builders


def _write_pair(root: Path, split: str, stem: str, hr: np.ndarray, lr: np.ndarray, scale: int) -> dict:
    hr_path = root / split / "HR" / f"{stem}.png"
    lr_path = root / split / f"LR_x{scale}" / f"{stem}.png"
    write_image(hr_path, hr)
    write_image(lr_path, lr)
    return {
        "stem": stem,
        "hr": hr_path.relative_to(root).as_posix(),
        "lr": lr_path.relative_to(root).as_posix(),
        "hr_sha256": sha256_file(hr_path),
        "lr_sha256": sha256_file(lr_path),
    }


def build_demo(entry: DatasetEntry, seed: int, tmp: Path) -> dict:
    deg, params = resolve_spec(entry.degradation, "--spec.degradation")
    scale = params["scale"]
    tiles = demo_mod.demo_tiles(entry.demo, scale)
    splits = {}
    total = sum(map(len, tiles.values()))
    with tqdm(total=total, desc=f"prepare {entry.name}", disable=not progress_enabled()) as bar:
        for split, items in tiles.items():
            rows = []
            for t in items:
                lr = degrade(t.hr, entry.degradation, demo_mod.tile_seed(seed, entry.name, split, t.stem))
                row = _write_pair(tmp, split, t.stem, t.hr, lr, scale)
                row.update(photo=t.photo, box=list(t.box))
                rows.append(row)
                bar.update()
            splits[split] = {"count": len(rows), "files": rows}
            LOG.info("%s/%s: %d tiles from %s", entry.name, split, len(rows), ", ".join(entry.demo["splits"][split]))
    return {
        "degradation": {"type": deg.name, **params},
        "scale": scale,
        "tile": entry.demo["tile"],
        "min_std": entry.demo["min_std"],
        "source_photos": entry.demo["splits"],
        "splits": splits,
    }


def fetch(entry: DatasetEntry, root: Path) -> None:
    """Download and unpack a `download` entry's files under root/folder (skipped when already done)."""
    base = root / entry.folder
    for f in entry.files:
        archive = download(f.url, base / "downloads" / f.filename, f.sha256, f.size)
        marker = base / "downloads" / f".{f.filename}.extracted"
        if f.extract and not marker.exists():
            LOG.info("unpacking %s into %s", archive, base)
            safe_extract(archive, base)
            marker.write_text(f"{archive.stat().st_size}\n")


def fetch_pinned_set(entry: DatasetEntry, root: Path) -> None:
    """Every file of a pinned entry under root/folder, from the mirror or the network, each verified."""
    base = root / entry.folder
    files = pinned_files(entry)
    for rel, f in tqdm(files, desc=f"fetch {entry.name}", disable=not progress_enabled()):
        fetch_pinned(f, base / rel)
    LOG.info("%s: %d pinned files verified in %s", entry.name, len(files), base)


def build_paired(entry: DatasetEntry, pairs: list, tmp: Path) -> dict:
    """The test split of `pairs` ((stem, HR file, LR file) from match_folders, every problem already found)."""
    spec = entry.paired
    scale = spec["scale"]
    rows = []
    at_hr_size = spec["lr_size"] == "hr_size"
    for stem, hr_path, lr_path in tqdm(pairs, desc="paired_folders", disable=not progress_enabled()):
        hr, lr = read_image(hr_path), read_image(lr_path)
        if at_hr_size:  # LR stored at HR size: both cropped to a multiple of the scale, LR to its true size
            h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
            hr, lr = hr[:h, :w], imresize(lr[:h, :w], 1 / scale)
        row = _write_pair(tmp, "test", stem, hr, lr, scale)
        row.update(source_hr=str(hr_path), source_lr=str(lr_path))
        rows.append(row)
    resized = {"lr_resized": "MATLAB bicubic imresize(LR, 1/scale) after cropping to a multiple of the scale"}
    return {"degradation": None, "scale": scale, "hr_dir": str(spec["hr"]), "lr_dir": str(spec["lr"]),
            "lr_size": spec["lr_size"], **(resized if at_hr_size else {}),
            "splits": {"test": {"count": len(rows), "files": rows}}}


def _cut(entry: DatasetEntry, found: dict) -> dict:
    if not entry.resplit:
        return found
    (items,) = found.values()
    out, start = {}, 0
    for split, n in entry.resplit.items():
        out[split], start = items[start:start + n], start + n
    return out


def refuse_marked(found: dict, standins: bool) -> None:
    """IodaError naming the first stand-in image (ioda standins marks each one) unless stand-ins are accepted:
    the published image counts alone do not tell a stand-in from the real dataset. Reads each PNG's header."""
    if standins:
        return
    for items in found.values():
        for _, hr_path, lr_path in items:
            for p in (hr_path, lr_path):
                if p is not None and is_marked(p):
                    raise IodaError(f"{p}: a stand-in image (written by ioda standins: synthetic); prepare with "
                                    f"--standins (run.standins: true) to use stand-ins, or put the real dataset there")


def build_from_files(entry: DatasetEntry, root: Path, seed: int, tmp: Path, standins: bool = False) -> dict:
    verify_manual(entry, root)  # counts (and checksums where known) before any work
    refuse_marked(split_files(entry, root), standins)
    scale = entry.scale
    params = None
    if entry.degradation is not None:
        deg, params = resolve_spec(entry.degradation, "--spec.degradation")
        params = {"type": deg.name, **params}
        scale = params["scale"]
    splits = {}
    for split, items in _cut(entry, split_files(entry, root)).items():
        rows = []
        for stem, hr_path, lr_path in tqdm(items, desc=f"{entry.name}/{split}", disable=not progress_enabled()):
            hr = read_image(hr_path)
            if lr_path is not None:
                lr = read_image(lr_path)
                if hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
                    raise IodaError(
                        f"{hr_path}: HR {hr.shape[1]}x{hr.shape[0]} is not {scale}x its LR {lr_path} "
                        f"({lr.shape[1]}x{lr.shape[0]})"
                    )
            else:
                # mod-crop: keep the top-left part whose size divides by the scale (BasicSR convention)
                hr = np.ascontiguousarray(hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale])
                lr = degrade(hr, entry.degradation, demo_mod.tile_seed(seed, entry.name, split, stem))
            row = _write_pair(tmp, split, stem, hr, lr, scale)
            row["source_hr"] = hr_path.relative_to(root).as_posix()
            if lr_path is not None:
                row["source_lr"] = lr_path.relative_to(root).as_posix()
            rows.append(row)
        splits[split] = {"count": len(rows), "files": rows}
        LOG.info("%s/%s: %d pairs", entry.name, split, len(rows))
    return {"degradation": params, "scale": scale, "splits": splits}


# ------------------------------------------------------------------------------------------ prepare


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def prepare(name: str, out: str | os.PathLike, root: str | os.PathLike = "data", seed: int = 0,
            spec: dict | None = None, standins: bool = False) -> Path:
    """Build dataset `name` into `out`; returns the manifest path. standins: accept stand-in raw files
    (`ioda standins`: any number of images instead of the published counts; the manifest says so)."""
    entry = apply_spec(get_entry(name), spec or {})
    if standins:
        entry = relaxed_entry(entry)
    out, root = Path(out), Path(root)
    if out.exists() and not out.is_dir():
        raise IodaError(f"{out}: exists and is not a folder (expected the dataset output folder)")
    if entry.kind == "manual":
        verify_manual(entry, root)  # fail early, before creating anything
    if entry.kind == "paired" and entry.paired is None:
        raise IodaError("paired_folders: --spec '{hr: HR_DIR, lr: LR_DIR, scale: 4}' is required")
    if entry.kind == "paired":
        pairs = match_folders(entry.paired["hr"], entry.paired["lr"], entry.scale,
                              entry.paired["lr_size"])  # every problem before any work
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out.parent, prefix=f".{out.name}.tmp-")  # umask-respecting, unlike mkdtemp
    with removed_on_failure(tmp):
        if entry.kind == "demo":
            body = build_demo(entry, seed, tmp)
        elif entry.kind == "paired":
            body = build_paired(entry, pairs, tmp)
        else:
            if entry.kind == "download":
                fetch(entry, root)
            elif entry.kind == "pinned":
                fetch_pinned_set(entry, root)
            body = build_from_files(entry, root, seed, tmp, standins)
        manifest = {
            "name": entry.name,
            "kind": entry.kind,
            "description": entry.description,
            "seed": seed,
            "spec_override": spec or {},
            "license": entry.license,
            **body,
        }
        if standins:
            manifest["standins"] = True
        if entry.kind in ("download", "manual", "pinned"):
            manifest["source_root"] = str(root / entry.folder)
        if entry.kind == "pinned":
            manifest["pinned"] = {"manifests": [f"ioda/data/pinned/{m}.json" for m in entry.pinned],
                                  "resplit": entry.resplit}
        write_json(tmp / "manifest.json", manifest)
        _swap_into_place(tmp, out)
    LOG.info("%s: %s", out, ", ".join(f"{s} {v['count']}" for s, v in body["splits"].items()))
    return out / "manifest.json"


def ensure_builtin_source(scale: int = 4, cache: str | os.PathLike | None = None) -> Path:
    """The offline source-domain split for commands run without source data: `demo_source/train` (clean
    MATLAB bicubic x`scale`, seed 0), built once into `cache` (default $IODA_CACHE, else ~/.cache/ioda)
    and reused while its manifest matches. Returns the split folder (HR/ and LR_x<scale>/)."""
    from ioda.data.assets import cache_dir

    cache = Path(cache) if cache else cache_dir()
    out = cache / f"demo_source_x{scale}"
    manifest = out / "manifest.json"
    if manifest.is_file():
        try:
            m = json.loads(manifest.read_text())
            if m.get("scale") == scale and m.get("seed") == 0 and (out / "train" / f"LR_x{scale}").is_dir():
                return out / "train"
        except json.JSONDecodeError:
            pass  # a damaged cache is rebuilt below
    LOG.info("building the built-in source domain (demo_source, x%d) into %s", scale, out)
    spec = {"degradation": {"scale": scale}} if scale != 4 else {}
    prepare("demo_source", out, seed=0, spec=spec)
    return out / "train"


def _listing() -> str:
    width = max(map(len, REGISTRY))
    return "\n".join(f"{n.ljust(width)}  {e.kind:8s}  {e.description}" for n, e in REGISTRY.items()) + (
        "\n\nweights (a name works wherever a checkpoint path does; fetched into the cache on first use):\n"
        + weights_listing())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="ioda prepare",
        description="Build a demo dataset (offline) or download/verify a paper dataset into DIR/<split>/HR and "
        "DIR/<split>/LR_x4 with DIR/manifest.json.",
        epilog="datasets:\n" + _listing(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("name", nargs="?", help="dataset name from the registry, or registered weights (see --list)")
    ap.add_argument("--out", help="output folder DIR (for weights: the output file)")
    ap.add_argument("--root", default="data", help="where downloaded / hand-placed raw datasets live (default: data)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic degradations (default: 0)")
    ap.add_argument("--spec", help="override entry parameters: YAML/JSON mapping or a file, "
                    "e.g. '{degradation: {jpeg_quality: 90}, tile: 128}'")
    ap.add_argument("--standins", action="store_true",
                    help="accept stand-in raw files (ioda standins): image counts not checked; the manifest says so")
    ap.add_argument("--log", help="also log to this file")
    ap.add_argument("--list", action="store_true", help="list the registered datasets and weights and exit")
    args = ap.parse_args(argv)
    if args.list:
        print(_listing())
        return 0
    if not args.name or not args.out:
        ap.error("NAME and --out are required (or use --list)")
    setup_logging(args.log)
    if args.name in WEIGHTS:  # registered weights: the verified file itself at --out (no pre-training stage)
        if args.spec:
            raise IodaError(f"--spec: not meaningful for the weights {args.name!r}")
        path = fetch_weights(args.name, args.out)
        print(f"{args.name}: wrote {path} (sha256 {WEIGHTS[args.name].file.sha256})")
        return 0
    manifest = prepare(args.name, args.out, args.root, args.seed, parse_spec(args.spec), args.standins)
    counts = {s: v["count"] for s, v in json.loads(manifest.read_text())["splits"].items()}
    print(f"{args.name}: wrote {manifest.parent} ({', '.join(f'{s}: {n}' for s, n in counts.items())})")
    return 0
