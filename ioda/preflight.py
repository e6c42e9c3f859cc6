"""`ioda preflight --config CONFIG`: what a run needs before its first long job, checked up front.

- inputs: no stand-in file (ioda standins) unless `run.standins: true` (ioda.standins.guard);
- disk: free space where results and prepared data go >= what the run will write (prepared datasets, source
  models with their training checkpoints, adapted models, kept SR images), estimated from the raw files in place
  and the networks' sizes; parts that cannot be estimated yet (a dataset not downloaded) are listed;
- device memory: a CUDA device has at least the peak memory of the largest adaptation job (the backbone with the
  highest figure at the config's batch and LR patch, from a timings file measured on a GPU,
  benchmarks/out/timings-cuda.json). CPU runs are not checked (no CPU figure); a missing figure is said.
Anything missing: one line naming it, exit 2. Writes a JSON report with --out."""

from __future__ import annotations

import argparse
import math
import os
import shutil
from pathlib import Path

from ioda.config import load_config
from ioda.errors import IodaError
from ioda.files import read_json, write_json
from ioda.plan import Plan

GIB = 1024**3
DEFAULT_TIMINGS = Path(__file__).resolve().parents[1] / "benchmarks" / "out" / "timings-cuda.json"


def _existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def model_bytes(preset: str) -> int:
    from ioda.archs.loading import _shapes

    return 4 * sum(math.prod(s) for s in _shapes(preset).values())


def input_files(cfg: dict) -> list[Path]:
    """The weight files the config names (backbones, Alpha-CLIP, SAM, the open_clip cache entry of its tag)."""
    files = [bb.get("weights") for bb in cfg["backbones"].values()]
    files += [cfg["encoder"].get("alpha_weights"), cfg["masks"].get("sam_checkpoint")]
    out = [Path(f) for f in files if f and Path(f).is_file()]
    tag = cfg["encoder"].get("weights")
    if tag and not Path(tag).is_file():
        import open_clip.pretrained as ocp

        from ioda.clip.loading import _cached_weights

        pcfg = ocp.get_pretrained_cfg(cfg["encoder"]["name"], tag)
        cached = _cached_weights(pcfg) if pcfg else None
        if cached:
            out.append(Path(cached))
    elif tag:
        out.append(Path(tag))
    return out


def disk_need(plan: Plan) -> tuple[int, list[str]]:
    """(bytes the run writes, what could not be estimated)."""
    from ioda.data.registry import get_entry, split_files

    cfg, unknown, total = plan.cfg, [], 0
    raw = Path(cfg["run"]["raw_dir"])
    test_bytes: dict[str, int] = {}
    for name in cfg["datasets"]:
        entry = get_entry(name)
        if plan.manifest(name).is_file() or entry.kind in ("demo", "paired"):
            continue  # already prepared, or small and built offline
        try:
            found = split_files(entry, raw) if entry.kind in ("manual", "download") else {}
        except IodaError:
            found = {}
        sizes = {s: sum(p.stat().st_size + (lr.stat().st_size if lr else 0) for _, p, lr in items)
                 for s, items in found.items()}
        if not any(sizes.values()):
            unknown.append(f"dataset {name} (not in {raw / entry.folder} yet)")
            continue
        total += int(sum(sizes.values()) * 1.1)  # HR copy + LR (1/16 of the pixels)
        test_bytes[name] = max(sizes.get("test", 0), sizes.get("val", 0))
    presets = {b: bb.get("preset") for b, bb in cfg["backbones"].items()}
    for b, src in plan.pretrained():
        if presets[b]:
            # the source model, and while pre-training its checkpoint (model + two Adam moments)
            total += model_bytes(presets[b]) * (1 if plan.uses_official(b, src) else 4)
    for r in plan.adapt_runs():
        if presets[r.backbone]:
            total += model_bytes(presets[r.backbone])
    for r in plan.runs():
        if plan.keeps_images(r):
            total += test_bytes.get(plan.tasks[r.task]["target"], 0)
    return total, unknown


def memory_need(plan: Plan, timings: dict) -> tuple[float | None, str]:
    """(MiB the largest adaptation job needs on the timings' device, which job), or (None, why)."""
    a = plan.cfg["adapt"]
    figs = (timings.get("figures") or {}).get("adapt_step") or {}
    best, label, missing = None, "", []
    for b, bb in plan.cfg["backbones"].items():
        preset = bb.get("preset") or b
        f = figs.get(preset)
        if not f or f.get("peak_mem_mib") is None or (f.get("batch"), f.get("lr_patch")) != (a["batch_size"],
                                                                                              a["lr_patch"]):
            missing.append(preset)
            continue
        if best is None or f["peak_mem_mib"] > best:
            best, label = f["peak_mem_mib"], f"{b} adaptation at batch {a['batch_size']}, LR patch {a['lr_patch']}"
    if missing:
        return best, (f"{label}; " if label else "") + (f"no GPU memory figure for {', '.join(missing)} at batch "
                                                        f"{a['batch_size']}, LR patch {a['lr_patch']}")
    return best, label


def check(cfg: dict, timings: dict | None, device: str | None = None) -> dict:
    """The preflight report; IodaError (one line) listing whatever is missing."""
    from ioda.standins.guard import refuse_standins

    plan = Plan(cfg)
    refuse_standins(input_files(cfg), cfg["run"]["standins"])
    report: dict = {"standins": cfg["run"]["standins"]}
    problems = []
    need, unknown = disk_need(plan)
    where = _existing_parent(plan.results)
    free = shutil.disk_usage(where).free
    report["disk"] = {"path": str(where), "free_gib": free / GIB, "need_gib": need / GIB, "not_estimated": unknown}
    if need > free:
        problems.append(f"disk: {where} has {free / GIB:.1f} GiB free, the run writes about {need / GIB:.1f} GiB")
    device = device or cfg["run"]["device"]
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    mem: dict = {"device": device}
    if device.startswith("cuda"):
        if not torch.cuda.is_available():  # e.g. a login node: the jobs themselves stop on a missing device
            mem["note"] = "not checked: no CUDA device visible here"
        else:
            idx = torch.device(device).index or 0
            total = torch.cuda.get_device_properties(idx).total_memory / 2**20
            need_mib, what = memory_need(plan, timings or {})
            mem.update(total_mib=total, need_mib=need_mib, job=what)
            if need_mib is not None and need_mib > total:
                problems.append(f"device memory: {torch.cuda.get_device_name(idx)} has {total / 1024:.1f} GiB, "
                                f"{what} needs {need_mib / 1024:.1f} GiB (measured on {timings.get('hardware')})")
    else:
        mem["note"] = "not checked: no memory figure for CPU runs"
    report["device_memory"] = mem
    if problems:
        raise IodaError("preflight: " + "; ".join(problems))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ioda preflight", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--timings", default=str(DEFAULT_TIMINGS),
                   help="GPU timings with peak memory per backbone (default: benchmarks/out/timings-cuda.json)")
    p.add_argument("--device", help="override run.device")
    p.add_argument("--out", help="write the report (JSON) here")
    args = p.parse_args(argv)
    timings = read_json(args.timings) if args.timings and os.path.isfile(args.timings) else None
    report = check(load_config(args.config), timings, args.device)
    if args.out:
        write_json(args.out, report)
    print(summary_line(report))
    return 0


def summary_line(report: dict) -> str:
    d, m = report["disk"], report["device_memory"]
    return (f"preflight ok: {d['path']} {d['free_gib']:.1f} GiB free, the run writes about {d['need_gib']:.1f} GiB"
          + (f" (not estimated: {', '.join(d['not_estimated'])})" if d["not_estimated"] else "")
          + f"; {m['device']}: " + (m.get("note") or f"{m['total_mib'] / 1024:.1f} GiB, {m.get('job') or '?'} needs "
                                    + (f"{m['need_mib'] / 1024:.1f} GiB" if m.get("need_mib") else "unknown")))
