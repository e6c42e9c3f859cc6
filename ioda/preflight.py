"""`ioda preflight --config CONFIG`: what a run needs before its first long job, checked up front.

- inputs: no stand-in file (ioda standins) unless `run.standins: true` (ioda.standins.guard);
- disk: free space on each disk the results and prepared data go to >= what the run will write (prepared datasets, source
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
import re
import shutil
from pathlib import Path

from ioda.config import load_config
from ioda.errors import IodaError
from ioda.files import read_json, write_json
from ioda.plan import Plan

GIB = 1024**3
DEVICE = r"auto|cpu|cuda(:[0-9]+)?|mps"  # run.device's pattern in the params schema
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


def disk_need(plan: Plan) -> tuple[dict[Path, int], list[str]]:
    """({folder: bytes the run writes there} for the prepared data and the results, what could not be estimated)."""
    from ioda.data.registry import get_entry, split_files

    cfg, unknown, total, data = plan.cfg, [], 0, 0
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
        data += int(sum(sizes.values()) * 1.1)  # HR copy + LR (1/16 of the pixels)
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
    return {plan.data: data, plan.results: total}, unknown


def disk_problems(needs: dict[Path, int]) -> tuple[dict, list[str]]:
    """(the results disk's report entry, a line per folder whose disk has less free space than the run writes
    to that disk: folders on one filesystem share its free space)."""
    where = {folder: _existing_parent(folder) for folder in needs}
    dev = {folder: os.stat(w).st_dev for folder, w in where.items()}
    problems, entries = [], []
    for folder, w in where.items():
        need = sum(n for f, n in needs.items() if dev[f] == dev[folder])
        free = shutil.disk_usage(w).free
        entries.append({"path": str(w), "free_gib": free / GIB, "need_gib": need / GIB})
        if need > free and not any(str(w) in p for p in problems):
            problems.append(f"disk: {w} has {free / GIB:.1f} GiB free, the run writes about {need / GIB:.1f} GiB")
    return entries[-1], problems


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
    needs, unknown = disk_need(plan)
    report["disk"], problems = disk_problems(needs)  # the results disk (the last) is the one the summary names
    report["disk"]["not_estimated"] = unknown
    device = device or cfg["run"]["device"]
    if not re.fullmatch(DEVICE, device):
        raise IodaError(f"--device {device!r}: expected auto, cpu, cuda, cuda:N or mps")
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
    if args.timings != str(DEFAULT_TIMINGS) and not os.path.isfile(args.timings):
        raise IodaError(f"--timings {args.timings}: no such file (expected a timings JSON such as {DEFAULT_TIMINGS})")
    timings = read_json(args.timings) if os.path.isfile(args.timings) else None
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
