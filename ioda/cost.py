"""`ioda plan --config CONFIG --timings FILE`: projected device-hours of a configuration, per rule and in total,
and its critical path when the jobs spread over N devices.

Every projection is (work the config asks for) x (a measured time per unit of work) from the timings file
(benchmarks/out/timings-*.json, written by benchmarks/paper_timings.py or assembled from other benchmark
files). A unit the file has no figure for is shown as missing and left out of the totals, which then say
how many jobs they leave out: no figure is derived from another device's numbers.

Timings file: {"device", "hardware", "conditions", "figures": {
    "pretrain_step": {preset: {"s", "batch", "lr_patch"}},         one supervised step (pretrain)
    "adapt_step": {preset: {"s", "batch", "lr_patch", "peak_mem_mib"}},  one direction-loss step (ioda)
    "finetune_step" / "zssr_step": {preset: {"s", ...}},           one step of the supervised baselines
    "eval_mpix": {preset: {"s"}},                                   one SR forward + metrics per LR megapixel
    "masks_image": {sam_model: {"s"}}}}                             SAM automatic masks of one target image
A figure measured at another batch or patch than the config's is not used (shown as missing, with why)."""

from __future__ import annotations

import argparse
import heapq
import logging
import math

from dataclasses import dataclass, field

from ioda.config import get_dotted, load_config
from ioda.errors import IodaError
from ioda.files import read_json
from ioda.adapt.variants import VARIANTS
from ioda.plan import Plan, Run

LOG = logging.getLogger("ioda")

# Nominal LR size of each paper target's test split (published image sizes / 4, times the image count);
# RealSR's image sizes vary and are not published per camera, so they are missing until the data is prepared.
TEST_SET_LR_MPIX = {
    "Cityscapes": 500 * 512 * 256 / 1e6,  # val: 500 x 2048x1024
    "ACDC_rain": 100 * 480 * 270 / 1e6,  # val: 100 x 1920x1080
    "ACDC_snow": 100 * 480 * 270 / 1e6,
}


@dataclass
class Job:
    rule: str
    name: str
    seconds: float | None  # the parts with a figure; None: no part has one
    deps: list[str] = field(default_factory=list)
    why: str = ""  # the first part without a figure ("" if every part has one)


def _figure(timings: dict, kind: str, key: str, want: dict | None = None) -> tuple[float | None, str]:
    fig = (timings.get("figures", {}).get(kind) or {}).get(key)
    if not fig or fig.get("s") is None:
        return None, f"no {kind} figure for {key} on {timings.get('device', '?')}"
    for k, v in (want or {}).items():
        if k in fig and fig[k] != v:
            return None, f"{kind} of {key} measured at {k} {fig[k]}, the config uses {v}"
    return float(fig["s"]), ""


def test_mpix(plan: Plan, dataset: str) -> float | None:
    """LR megapixels of a target's test split: from its prepared manifest if there, else the nominal size."""
    manifest = plan.manifest(dataset)
    if manifest.is_file():
        from PIL import Image

        m = read_json(manifest)
        test = [t for t in plan.tasks.values() if t["target"] == dataset][0]["test_split"]
        rows = m["splits"].get(test, {}).get("files", [])
        total = 0
        for r in rows:
            with Image.open(plan.data / dataset / r["lr"]) as im:
                total += im.width * im.height
        return total / 1e6
    return TEST_SET_LR_MPIX.get(dataset)


def jobs_of(plan: Plan, timings: dict) -> list[Job]:
    cfg, a, p = plan.cfg, plan.cfg["adapt"], plan.cfg["pretrain"]
    presets = {b: bb.get("preset") or b for b, bb in cfg["backbones"].items()}
    jobs: list[Job] = []
    for b, src in plan.pretrained():
        name = f"pretrain/{b}/{src}"
        if plan.uses_official(b, src) or plan.weights_only(b):
            jobs.append(Job("pretrain (import)", name, 0.0))
            continue
        s, why = _figure(timings, "pretrain_step", presets[b], {"batch": p["batch_size"], "lr_patch": p["lr_patch"]})
        jobs.append(Job("pretrain", name, None if s is None else s * p["steps"], why=why))
    mask_names = []
    if cfg["masks"]["source"] == "sam":
        s, why = _figure(timings, "masks_image", cfg["masks"]["sam_model"])
        for d, i in plan.masks_needed():
            mask_names.append(f"masks/{d}/img{i}")
            jobs.append(Job("masks", mask_names[-1], s, why=why))
    eval_cache: dict[tuple[str, str], tuple[float | None, str]] = {}

    def eval_pass(backbone: str, target: str):
        if (backbone, target) not in eval_cache:
            s, why = _figure(timings, "eval_mpix", presets[backbone])
            mp = test_mpix(plan, target)
            if mp is None and s is not None:
                s, why = None, f"test-set size of {target} unknown (prepare it first)"
            eval_cache[(backbone, target)] = (None if s is None else s * mp, why)
        return eval_cache[(backbone, target)]

    for task, b, v in plan.cells():
        t = plan.tasks[task]
        pre = f"pretrain/{b}/{t['source']}"
        runs = plan.run_ids(task, v)
        ev, ev_why = eval_pass(b, t["target"])
        cell = f"{b}/{task}/{v}"
        variant = VARIANTS[v]
        if variant.trains:
            # the supervised baselines have a step figure of their own (finetune_step, zssr_step)
            kind = f"{variant.method}_step" if variant.supervised else "adapt_step"
            steps = get_dotted(a, variant.steps_key)
            s, why = _figure(timings, kind, presets[b], {"batch": a["batch_size"], "lr_patch": a["lr_patch"]})
            total = None if s is None else s * steps * len(runs)
            if plan.evaluates(Run(task, b, v, runs[0])):  # the test set every eval_every steps, step 0 included
                passes = steps // a["eval_every"] + 1
                if ev is not None:
                    total = (total or 0.0) + ev * passes * len(runs)
                why = why or (f"evaluations along the way: {ev_why}" if ev is None else "")
            deps = [pre] + [f"masks/{t['target']}/img{i}" for i in range(len(runs))
                            if f"masks/{t['target']}/img{i}" in mask_names and variant.needs_labels]
            rule = f"adapt ({variant.method})" if variant.supervised else "adapt"
            jobs.append(Job(rule, f"adapt/{cell}", total, deps, why))
            eval_deps = [f"adapt/{cell}"]
        else:
            eval_deps = [pre]
        jobs.append(Job("evaluate", f"evaluate/{cell}", None if ev is None else ev * len(runs), eval_deps, ev_why))
    return jobs



def makespan(jobs: list[Job], devices: int) -> float:
    """List scheduling on `devices`: a job starts when its inputs are done and a device is free, longest
    remaining path first. Jobs without a figure count as 0 s."""
    dur = {j.name: j.seconds or 0.0 for j in jobs}
    deps = {j.name: [d for d in j.deps if d in dur] for j in jobs}
    tail: dict[str, float] = {}

    def longest(n: str) -> float:  # longest path from n to the end
        if n not in tail:
            users = [m for m, ds in deps.items() if n in ds]
            tail[n] = dur[n] + max((longest(u) for u in users), default=0.0)
        return tail[n]

    done: dict[str, float] = {}
    free = [0.0] * devices
    pending = set(dur)
    while pending:
        ready = [n for n in pending if all(d in done for d in deps[n])]
        n = max(ready, key=lambda x: (longest(x), x))
        start = max(heapq.heappop(free), max((done[d] for d in deps[n]), default=0.0))
        done[n] = start + dur[n]
        heapq.heappush(free, done[n])
        pending.remove(n)
    return max(done.values(), default=0.0)


def critical_path(jobs: list[Job]) -> float:
    return makespan(jobs, devices=len(jobs) or 1)


def render(plan: Plan, timings: dict, devices: list[int], timings_path: str) -> str:
    jobs = jobs_of(plan, timings)
    rules: dict[str, list[Job]] = {}
    for j in jobs:
        rules.setdefault(j.rule, []).append(j)
    lines = [f"Cost plan of '{plan.cfg['run']['name']}' from {timings_path}: {timings.get('device', '?')}, "
             f"{timings.get('hardware', '?')} ({timings.get('conditions', 'conditions not recorded')})", "",
             f"{'rule':<22} {'jobs':>5} {'device-hours':>13}  missing"]
    total, missing = 0.0, 0
    for rule, js in rules.items():
        known = [j.seconds for j in js if j.seconds is not None]
        miss = [j for j in js if j.why]
        total += sum(known)
        missing += len(miss)
        hours = f"{sum(known) / 3600:.2f}" if known else "missing"
        why = f"{len(miss)} ({miss[0].why})" if miss else ""
        lines.append(f"{rule:<22} {len(js):>5} {hours:>13}  {why}")
    lines.append(f"{'total':<22} {len(jobs):>5} {total / 3600:>13.2f}  "
                 + (f"{missing} jobs lack a figure for all or part of their work (left out)" if missing else ""))
    lines += ["", "one adaptation run (steps only; the paper reports 15.3 / 9.0 / 11.2 min for SAFMN, HAT, SRFormer "
              "on 2080Ti, V100, 2080Ti):"]
    a = plan.cfg["adapt"]
    for b, bb in plan.cfg["backbones"].items():
        s, why = _figure(timings, "adapt_step", bb.get("preset") or b, {"batch": a["batch_size"],
                                                                           "lr_patch": a["lr_patch"]})
        lines.append(f"  {b:<12} " + (f"{s * a['steps'] / 60:.1f} min ({a['steps']} x {s:.3f} s)" if s else why))
    lines.append("")
    for n in devices:
        lines.append(f"wall time on {n} device{'s' if n > 1 else ''}: {makespan(jobs, n) / 3600:.2f} h")
    lines.append(f"critical path (unlimited devices): {critical_path(jobs) / 3600:.2f} h"
                 + (" (jobs without a figure count as 0)" if missing else ""))
    return "\n".join(lines) + "\n"


def _positive(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value > 0)


def check_timings(timings, path: str) -> dict:
    """The timings file, checked: every figure a mapping whose seconds (and peak memory, when given) are finite
    positive numbers; IodaError naming the first key that is not."""
    if not isinstance(timings, dict) or not isinstance(timings.get("figures"), dict):
        raise IodaError(f"{path}: expected a timings file with a 'figures' mapping")
    for kind, figs in timings["figures"].items():
        if not isinstance(figs, dict):
            raise IodaError(f"{path}: figures.{kind}: expected a mapping of name to figure, got "
                            f"{type(figs).__name__}")
        for key, fig in figs.items():
            if not isinstance(fig, dict):
                raise IodaError(f"{path}: figures.{kind}.{key}: expected a mapping with 's', got {type(fig).__name__}")
            for field_ in ("s", "peak_mem_mib"):
                if fig.get(field_) is not None and not _positive(fig[field_]):
                    raise IodaError(f"{path}: figures.{kind}.{key}.{field_}: expected a finite positive number, got "
                                    f"{fig[field_]!r}")
    return timings


def device_mismatch(cfg: dict, timings: dict) -> str | None:
    """A warning when the timings were measured on another kind of device than the config runs on."""
    want, have = str(cfg["run"]["device"]).split(":")[0], str(timings.get("device", "?")).split(":")[0]
    if want != "auto" and have != want:
        return (f"the timings were measured on {have}, the config runs on {cfg['run']['device']}: the projection "
                f"is for {have}")
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ioda plan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--timings", required=True, help="measured timings (benchmarks/out/timings-*.json)")
    p.add_argument("--devices", type=int, nargs="+", default=[1, 4, 8], help="N devices (SLURM GPUs) to plan for")
    args = p.parse_args(argv)
    if any(n < 1 for n in args.devices):
        raise IodaError(f"--devices: expected numbers >= 1, got {args.devices}")
    timings = check_timings(read_json(args.timings), args.timings)
    cfg = load_config(args.config)
    mismatch = device_mismatch(cfg, timings)
    if mismatch:
        LOG.warning("%s", mismatch)
    print(render(Plan(cfg), timings, args.devices, args.timings), end="")
    return 0
