"""Pre-training throughput, images/s, side by side on this machine:

- plain: PairedPatches over the split's files (every image decoded into memory first: `setup_s`, `resident_mb`),
         batches assembled in the training process, the run's `auto` numerics (fp32 for pre-training);
- store: the same patches from a packed patch store (ioda.data.patch_store) with `--workers` DataLoader workers,
         same numerics (the data path alone);
- fast:  the store and workers plus `--numerics fast` (bf16 autocast, TF32, channels_last, torch.compile on CUDA;
         on a CPU fast is fp32 eager, so fast = store there). Compile time is reported apart (`warmup_s`).

The split is synthetic: `--images` random-texture pairs at `--hr-size` (default GTA5's 1914x1052 frames, the
paper's largest source set). Each mode runs `--warmup` steps, then `--steps` timed steps (median of `--repeats`
measurements, modes interleaved). images/s = batch x steps / seconds. Goal (issue): fast >= 2x plain on one
H100/H200 at the paper's pre-training batch and patch.

    python benchmarks/pretrain_throughput.py                                  # CPU: safmn_tiny, small batch
    python benchmarks/pretrain_throughput.py --device cuda --preset safmn_l --batch 64 --lr-patch 64
Writes benchmarks/out/pretrain_throughput-<device type>.json (or --out).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from adapt_step import hardware, write_result  # benchmarks/ is on sys.path: the scripts run from it
from ioda.archs import build_model, get_preset
from ioda.data.pairs import PairedPatches, list_pairs
from ioda.data.patch_store import open_store, pack_split
from ioda.imageio import write_image
from ioda.runtime import resolve_device
from ioda.train.numerics import Numerics
from ioda.train.supervised import l1_step_fn

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
MODES = ("plain", "store", "fast")
GOAL_FAST_VS_PLAIN = 2.0


def make_split(root: Path, n: int, hr_hw: tuple[int, int], scale: int) -> Path:
    """n synthetic pairs (smooth random texture, so PNG decoding costs what a photo's does)."""
    rng = np.random.default_rng(0)
    h, w = (s // scale * scale for s in hr_hw)
    for i in range(n):
        base = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3)).astype(np.uint8)
        hr = np.repeat(np.repeat(base, 16, 0), 16, 1)[:h, :w]
        hr = np.clip(hr.astype(np.int16) + rng.integers(-12, 13, hr.shape), 0, 255).astype(np.uint8)
        lr = hr.reshape(h // scale, scale, w // scale, scale, 3).mean((1, 3)).round().astype(np.uint8)
        write_image(root / "HR" / f"im{i:03d}.png", hr)
        write_image(root / f"LR_x{scale}" / f"im{i:03d}.png", lr)
    return root


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(mode: str, args, split: Path, store: Path, device: torch.device) -> dict:
    """One measurement of a mode: warm-up steps (compile included), then the timed steps."""
    scale, total = get_preset(args.preset).scale, args.warmup + args.steps
    length = total * args.batch
    t0 = time.perf_counter()
    if mode == "plain":
        data = PairedPatches(list_pairs(split, scale), scale, args.lr_patch, seed=0, length=length)
    else:
        data = open_store(store, args.lr_patch, seed=0, length=length, scale=scale)
    setup = time.perf_counter() - t0
    numerics = Numerics.resolve("fast" if mode == "fast" else "auto", device, fp32_default=True)
    model = build_model(args.preset, seed=0).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    step = l1_step_fn(model, opt, data, batch_size=args.batch, steps=total, seed=0, device=device, numerics=numerics,
                      workers=0 if mode == "plain" else args.workers)
    with numerics.precision():
        t0 = time.perf_counter()
        for i in range(args.warmup):
            step(i)
        _sync(device)
        t1 = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for i in range(args.warmup, total):
            step(i)
        _sync(device)
        t2 = time.perf_counter()
    resident = (sum(lr.nbytes + hr.nbytes for lr, hr in data.images) / 1e6 if mode == "plain" else 0.0)
    return {"img_s": args.batch * args.steps / (t2 - t1), "s_per_step": (t2 - t1) / args.steps,
            "warmup_s": t1 - t0, "setup_s": setup, "resident_mb": resident,
            "peak_mem_mib": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
            "numerics": numerics.to_dict()}


def run(args, device: torch.device) -> dict:
    scale = get_preset(args.preset).scale
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        split = make_split(Path(tmp) / "train", args.images, tuple(args.hr_size), scale)
        t1 = time.perf_counter()
        pack_split(split, scale, Path(tmp) / "store")
        pack_s = time.perf_counter() - t1
        runs: dict[str, list[dict]] = {m: [] for m in MODES}
        for _ in range(args.repeats):
            for mode in MODES:  # interleaved: drift on a shared machine hits every mode alike
                runs[mode].append(measure(mode, args, split, Path(tmp) / "store", device))
                print(f"  {mode:5s} {runs[mode][-1]['img_s']:9.1f} img/s", flush=True)
    result = {"preset": args.preset, "batch": args.batch, "lr_patch": args.lr_patch, "images": args.images,
              "hr_size": list(args.hr_size), "workers": args.workers, "steps": args.steps, "warmup": args.warmup,
              "repeats": args.repeats, "make_split_s": t1 - t0, "pack_s": pack_s}
    for mode, rs in runs.items():
        med = statistics.median(r["img_s"] for r in rs)
        result[mode] = {**{k: v for k, v in rs[-1].items() if k != "img_s"}, "img_s": med,
                        "all_img_s": [r["img_s"] for r in rs]}
    result["store_vs_plain"] = result["store"]["img_s"] / result["plain"]["img_s"]
    result["fast_vs_plain"] = result["fast"]["img_s"] / result["plain"]["img_s"]
    return result


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--preset", default="safmn_tiny")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr-patch", type=int, default=32)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--hr-size", type=int, nargs=2, default=[1052, 1914], metavar=("H", "W"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--out", help="result JSON (default: benchmarks/out/pretrain_throughput-<device type>.json)")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"pre-training throughput, {args.preset}, batch {args.batch}, LR patch {args.lr_patch}, on "
          f"{hardware(device)}", flush=True)
    r = run(args, device)
    print(f"  plain {r['plain']['img_s']:.1f} img/s (decoding the split first: {r['plain']['setup_s']:.1f} s, "
          f"{r['plain']['resident_mb']:.0f} MB held); store {r['store']['img_s']:.1f} ({r['store_vs_plain']:.2f}x); "
          f"fast {r['fast']['img_s']:.1f} ({r['fast_vs_plain']:.2f}x, goal >= {GOAL_FAST_VS_PLAIN}x on a GPU)")
    out = Path(args.out) if args.out else OUT / f"pretrain_throughput-{device.type}.json"
    write_result(out, "pretrain_throughput.py", argv, {"device": str(device), "hardware": hardware(device),
                                                       "goal_fast_vs_plain": GOAL_FAST_VS_PLAIN, "result": r})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
