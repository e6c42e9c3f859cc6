"""The paper's networks at full speed on one GPU: every figure of the speed goals in one run, one JSON.

Per backbone (SAFMN-L, HAT, SRFormer; the paper's batch 2, LR patch 128, ViT-B/16 Alpha-CLIP untrained: speed
does not depend on weights): fp32 eager vs `--numerics fast`, each `--steps` steps from the same start
(benchmarks/adapt_step.py bench_numerics): seconds per step (median over the steps after `--warmup`), per
1500-step run, compile time apart, peak memory, PSNR delta and weight drift after those steps on the same test
images. Then pre-training images/s, plain vs the patch store with workers and fast numerics (SAFMN's recipe: batch
64, LR patch 64, GTA5-sized frames; benchmarks/pretrain_throughput.py), and K = 5 runs of SAFMN-L one after another
vs stacked (benchmarks/adapt_step.py bench_runs). Every part is timed against `--budget` seconds: a part that
would start past it is recorded as skipped, a part that fails records its error, and the JSON is always written.

    bash benchmarks/gpu_paper.sh                      # on a fresh GPU machine: install, then this script
    python benchmarks/gpu_paper.py --smoke --device cpu --out /tmp/smoke.json   # tiny presets: checks the code path

Writes benchmarks/out/gpu-paper.json (smoke: benchmarks/out/gpu-paper-smoke.json), and a copy into $OUT when set.
A smoke run's figures are CPU numbers of tiny networks (device "cpu", smoke true): never GPU figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import adapt_step  # noqa: E402
import pretrain_throughput  # noqa: E402

from ioda.config import paper_config  # noqa: E402
from ioda.runtime import resolve_device  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
BACKBONES = ("safmn_l", "hat", "srformer")
# issue goals on one H100/H200: seconds per 1500-step run; pre-training fast/plain; HAT's peak memory
GOAL_S_PER_RUN = {"safmn_l": 60.0, "hat": 4.5 * 60, "srformer": 5.6 * 60}
GOAL_PRETRAIN_SPEEDUP = 2.0
GOAL_HAT_PEAK_MIB = 24 * 1024
PARTS = (*BACKBONES, "pretrain", "k_runs")


def plan(smoke: bool) -> dict:
    """Sizes of every measurement: the paper's, or tiny ones that only check the code path."""
    if smoke:
        return {"presets": {b: f"{b.split('_')[0]}_tiny" for b in BACKBONES}, "encoder": "tiny", "lr_patch": 16,
                "batch": 2, "steps": 4, "warmup": 1, "pretrain": ["--preset", "safmn_tiny", "--batch", "4",
                "--lr-patch", "16", "--images", "2", "--hr-size", "96", "128", "--steps", "2", "--warmup", "1",
                "--repeats", "1", "--workers", "1"], "k": 2, "k_steps": 2}
    a, p = paper_config()["adapt"], paper_config()["pretrain"]
    return {"presets": {b: b for b in BACKBONES}, "encoder": "ViT-B-16-quickgelu", "lr_patch": a["lr_patch"],
            "batch": a["batch_size"], "steps": 100, "warmup": 10,
            "pretrain": ["--preset", "safmn_l", "--batch", str(p["batch_size"]), "--lr-patch", str(p["lr_patch"]),
                         "--images", "8", "--steps", "20", "--warmup", "5", "--repeats", "1", "--workers", "8"],
            "k": 5, "k_steps": 10}


def hardware(device: torch.device) -> dict:
    info = {"device": device.type, "name": adapt_step.hardware(device), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(memory_mib=props.total_memory / 2**20, capability=f"{props.major}.{props.minor}",
                    cuda=torch.version.cuda)
    return info


class Parts:
    """Runs each part within the time budget; failures and skips are recorded, never fatal."""

    def __init__(self, budget: float):
        self.t0, self.budget, self.log = time.perf_counter(), budget, {}

    def __call__(self, name: str, fn):
        elapsed = time.perf_counter() - self.t0
        if elapsed > self.budget:
            self.log[name] = {"skipped": f"time budget spent ({elapsed:.0f} of {self.budget:.0f} s)"}
            print(f"[{name}] skipped: {self.log[name]['skipped']}", flush=True)
            return None
        print(f"[{name}] starting at {elapsed:.0f} s", flush=True)
        t = time.perf_counter()
        try:
            out = fn()
        except Exception as err:  # noqa: BLE001 - the JSON keeps what the other parts measured
            self.log[name] = {"error": f"{type(err).__name__}: {' '.join(str(err).split())[:400]}",
                              "seconds": time.perf_counter() - t}
            traceback.print_exc()
            return None
        self.log[name] = {"seconds": time.perf_counter() - t}
        return out


def adapt_part(backbone: str, pl: dict, device: torch.device) -> dict:
    preset = pl["presets"][backbone]
    with tempfile.TemporaryDirectory() as tmp:
        nr = adapt_step.bench_numerics(preset, pl["encoder"], pl["lr_patch"], pl["batch"], pl["steps"], pl["warmup"],
                                       device, Path(tmp))
    fp32, fast = nr["fp32"], nr["fast"]
    row = {"preset": preset, "fp32_s_per_run": fp32["s_per_run"], "fast_s_per_run": fast["s_per_run"],
           "fp32_s_per_step": fp32["s_per_step"], "fast_s_per_step": fast["s_per_step"],
           "fast_compile_s": fast["compile_s"], "fp32_peak_mib": fp32["peak_mem_mib"],
           "fast_peak_mib": fast["peak_mem_mib"], "psnr_delta_db": nr["psnr_delta_db"],
           "weights_max_abs_diff": nr["weights_max_abs_diff"], "weights_rel_l2": nr["weights_rel_l2"],
           "speedup": nr["speedup"], "goal_s_per_run": GOAL_S_PER_RUN[backbone], "detail": nr}
    print(f"  {backbone}: fp32 {row['fp32_s_per_run']:.1f} s/run, fast {row['fast_s_per_run']:.1f} s/run "
          f"(compile {row['fast_compile_s']:.1f} s), PSNR delta {row['psnr_delta_db']:+.4f} dB", flush=True)
    return row


def pretrain_part(pl: dict, device: torch.device) -> dict:
    args = pretrain_throughput.parser().parse_args(pl["pretrain"] + ["--device", str(device)])
    return pretrain_throughput.run(args, device)


def k_runs_part(pl: dict, device: torch.device) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return adapt_step.bench_runs(pl["k"], pl["presets"]["safmn_l"], pl["encoder"], pl["lr_patch"], pl["batch"],
                                     pl["k_steps"], 1, device, Path(tmp))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny presets, few steps: checks the code path (CPU fine)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, help="torch CPU threads (a smoke run on a shared machine: 1)")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds; parts that would start later are skipped")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                    help="measure only these (e.g. to finish what a first run's budget skipped)")
    ap.add_argument("--out", help="result JSON (default: benchmarks/out/gpu-paper.json, smoke: gpu-paper-smoke.json)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    pl = plan(args.smoke)
    parts = Parts(args.budget)
    result: dict = {"hardware": hardware(device), "torch": torch.__version__, "device": device.type,
                    "smoke": args.smoke, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "command": "python benchmarks/gpu_paper.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "goals": {"s_per_run": GOAL_S_PER_RUN, "pretrain_fast_vs_plain": GOAL_PRETRAIN_SPEEDUP,
                              "hat_peak_mib": GOAL_HAT_PEAK_MIB},
                    "plan": {k: v for k, v in pl.items() if k != "pretrain"} | {"pretrain_args": pl["pretrain"]}}
    if args.smoke or device.type != "cuda":
        result["note"] = (f"{'smoke run on tiny presets' if args.smoke else 'not on a GPU'}, device {device.type}: "
                          "these are NOT GPU figures")
    for backbone in BACKBONES:
        if backbone in args.parts:
            result[backbone] = parts(f"adapt {backbone}", lambda b=backbone: adapt_part(b, pl, device))
    pre = parts("pretrain", lambda: pretrain_part(pl, device)) if "pretrain" in args.parts else None
    result["pretrain_plain_img_s"] = pre["plain"]["img_s"] if pre else None
    result["pretrain_fast_img_s"] = pre["fast"]["img_s"] if pre else None
    result["pretrain"] = pre
    result["k_runs"] = parts("k runs", lambda: k_runs_part(pl, device)) if "k_runs" in args.parts else None
    gpu = device.type == "cuda" and not args.smoke  # goals are for the paper's networks on a GPU
    rows = {b: result.get(b) or {} for b in BACKBONES}
    result["goals_met"] = {
        **{b: rows[b].get("fast_s_per_run", 1e30) <= GOAL_S_PER_RUN[b] if gpu and rows[b] else None
           for b in BACKBONES},
        "pretrain": pre["fast_vs_plain"] >= GOAL_PRETRAIN_SPEEDUP if gpu and pre else None,
        "hat_fits_24gb": rows["hat"]["fast_peak_mib"] <= GOAL_HAT_PEAK_MIB if gpu and rows["hat"] else None}
    result["parts"] = parts.log
    result["seconds"] = time.perf_counter() - parts.t0
    out = Path(args.out) if args.out else OUT / ("gpu-paper-smoke.json" if args.smoke else "gpu-paper.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} ({result['seconds']:.0f} s)")
    if os.environ.get("OUT"):
        shutil.copy(out, Path(os.environ["OUT"]) / out.name)
        print(f"copied to {os.environ['OUT']}/{out.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
