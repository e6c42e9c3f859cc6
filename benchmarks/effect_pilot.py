"""Fix the effect study's learning rate on Nikon alone, before any Canon run (config/effect.yaml).

IODA with the trained degradation encoder adapts CRAFT to Nikon pool images 5 and 6 (not the five the study's
Nikon cells use) at each candidate learning rate, for the study's step budget, evaluating Nikon's test crops at
steps 0, eval_every, ..., steps. Rule, fixed before running: the learning rate with the highest mean PSNR gain at
the final step over the two images; if no rate gains, the smallest (the least harm). The steps and the
evaluation interval are the CPU budget's, not tuned. Writes results/effect/pilot.json.

    python benchmarks/effect_pilot.py --data data --weights results/effect/encoder/degradation.safetensors \\
        --model results/effect/weights/craft_x4.pth
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data", help="folder with the prepared realsr_nikon_crops and bsd100_urban100")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--lrs", type=float, nargs="+", default=[3e-5, 1e-4, 3e-4])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--images", type=int, nargs="+", default=[5, 6])
    ap.add_argument("--work", default="results/effect/pilot")
    ap.add_argument("--out", default="results/effect/pilot.json")
    args = ap.parse_args(argv)
    data, work = Path(args.data), Path(args.work)
    rows = []
    t0 = time.perf_counter()
    for lr in args.lrs:
        out = work / f"lr{lr:g}"
        cmd = [sys.executable, "-m", "ioda", "adapt", "--pool", str(data / "realsr_nikon_crops/train/LR_x4"),
               "--index", *map(str, args.images), "--stack", "--model", args.model, "--source-data",
               str(data / "bsd100_urban100/train"), "--out-dir", str(out), "--variant", "ioda", "--encoder",
               "degradation", "--encoder-weights", args.weights, "--steps", str(args.steps), "--lr", str(lr),
               "--lr-patch", "48", "--batch-size", "2", "--occlusion-cell", "16", "--protocol", "paper",
               "--eval-data", str(data / "realsr_nikon_crops/test"), "--eval-every", str(args.eval_every),
               "--no-sr", "--device", "cpu"]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        for i in args.images:
            with open(out / f"img{i}" / "curve.csv") as f:
                curve = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
            rows.append({"lr": lr, "image": i, "curve": curve,
                         "final_gain": curve[-1]["psnr"] - curve[0]["psnr"]})
    by_lr = {lr: sum(r["final_gain"] for r in rows if r["lr"] == lr) / len(args.images) for lr in args.lrs}
    gaining = {lr: g for lr, g in by_lr.items() if g > 0}
    chosen = max(gaining, key=gaining.get) if gaining else min(args.lrs)
    result = {"rule": __doc__.split("\n\n")[1].replace("\n", " "), "candidates": args.lrs, "steps": args.steps,
              "eval_every": args.eval_every, "nikon_images": args.images, "mean_final_gain_db": by_lr,
              "chosen_lr": chosen, "runs": rows, "seconds": round(time.perf_counter() - t0, 1)}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("mean_final_gain_db", "chosen_lr", "seconds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
