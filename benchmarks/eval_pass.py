"""Seconds per evaluation pass of the target test set, as adaptation repeats it (the authors: every 10 steps,
step 0 included: 151 passes for 1500 steps), two ways on the same model and pairs:

- naive: `ioda.evaluate.evaluate_model`, the authors' way: read each pair, one SR forward per image, back to the
         host, PSNR/SSIM in numpy (ioda.metrics);
- ours:  `ioda.evaluate.DeviceEvaluator`: pairs read once and kept on the device, batched SR, PSNR/SSIM on the
         device (ioda.metrics_torch), one host sync per pass.

Model: CRAFT x4 (NTIRE 2024 ESR, team34_craft.pth); pairs: the RealSR V3 centre crops (LR 128, HR 512) of the
offline asset mirror (../shared/assets, read by path; see its README.md), Canon by default. Also times a few
adaptation steps of the `authors` protocol with this model and an untrained ViT-B/16 Alpha-CLIP (speed does not
depend on the weights) to give the ratio of evaluation time to adaptation time over the authors' schedule.
Prints a table and writes benchmarks/out/eval_pass.json (or --out). Usage:
    PYTHONPATH=. python benchmarks/eval_pass.py [--assets ../shared/assets] [--camera Canon] [--limit 50]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from ioda.archs import load_model
from ioda.evaluate import DeviceEvaluator, evaluate_model
from ioda.runtime import resolve_device

OUT = Path(__file__).parent / "out"
CRAFT = "raw/Amazingren/NTIRE2024_ESR/6404fa48dde4a4adbf241a51debdc661aef20449/model_zoo/team34_craft.pth"
REALSR = "raw/cswry/OSEDiff/fcc4f09c7ed66a9bc0ba9433940d76b343142426/preset/datasets/benchmark_realsr"
SET14 = "raw/jbhuang0604/SelfExSR"  # clean bicubic pairs: the source crops of the adaptation steps


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _split(assets: Path, camera: str, limit: int, tmp: Path) -> Path:
    """A split folder (HR/, LR_x4/) of symlinks to the mirrored RealSR crops (same file name in both folders)."""
    src = assets / REALSR
    names = sorted(p.name for p in (src / "test_LR").glob(f"{camera}_*.png"))[:limit]
    if not names:
        raise SystemExit(f"{src}/test_LR: no {camera}_*.png (is the asset mirror at {assets}?)")
    for sub, folder in (("HR", "test_HR"), ("LR_x4", "test_LR")):
        (tmp / sub).mkdir(parents=True)
        for n in names:
            (tmp / sub / n).symlink_to((src / folder / n).resolve())
    return tmp


def _adapt_step_seconds(model, split: Path, assets: Path, device, steps: int) -> float:
    """Median seconds of one `authors`-protocol adaptation step (batch 2, LR patch 128, ViT-B/16 Alpha-CLIP)."""
    from ioda.adapt.batches import DirectionSampler, SourcePool
    from ioda.protocol import get_protocol
    from ioda.adapt.trainer import AdaptSettings, DirectionTrainer
    from ioda.adapt.variants import get_variant
    from ioda.clip import build_encoder
    from ioda.data.pairs import Pair
    from ioda.imageio import read_image

    p = get_protocol("authors")
    srcs = sorted((assets / SET14).glob("*/data/Urban100/image_SRF_4/*_LR.png"))[:4]
    pairs = [Pair(stem=s.stem, lr=s, hr=None) for s in srcs]
    photo = read_image(sorted((split / "LR_x4").iterdir())[0])
    sampler = DirectionSampler(photo, None, SourcePool(pairs, 4, need_hr=False), scale=4, lr_patch=128,
                               batch_size=2, region="full", occlusion=True, seed=0, hr_mask=p.hr_mask,
                               occlusion_partial_cells=False)
    enc = build_encoder("ViT-B-16-quickgelu", device=device, protocol="authors")
    settings = AdaptSettings(steps=steps, batch_size=2, lr_patch=128, loss=p.loss, protocol="authors")
    with tempfile.TemporaryDirectory() as work:
        trainer = DirectionTrainer(model, enc, sampler, get_variant("occlusion"), settings, device, Path(work))
        times = []
        for _ in range(steps + 1):  # the first is a warm-up
            start = time.perf_counter()
            trainer.train_step()
            _sync(device)
            times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "assets"))
    ap.add_argument("--camera", default="Canon", choices=["Canon", "Nikon"])
    ap.add_argument("--limit", type=int, default=50, help="test pairs (the mirror has 50 per camera)")
    ap.add_argument("--batch", type=int, default=8, help="images per SR forward (ours)")
    ap.add_argument("--repeats", type=int, default=2, help="passes timed per method (median)")
    ap.add_argument("--adapt-steps", type=int, default=3, help="adaptation steps timed (0: skip)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", help="result JSON (default: benchmarks/out/eval_pass.json)")
    args = ap.parse_args(argv)
    assets, device = Path(args.assets), resolve_device(args.device)
    model = load_model(assets / CRAFT, device=device).module.eval()
    res: dict = {"device": str(device), "hardware": torch.cuda.get_device_name(device) if device.type == "cuda"
                 else f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)",
                 "model": "craft_x4 (team34_craft.pth)", "pairs": f"RealSR V3 {args.camera} crops, LR 128 / HR 512"}
    with tempfile.TemporaryDirectory() as tmp:
        split = _split(assets, args.camera, args.limit, Path(tmp))
        res["n_images"] = len(list((split / "HR").iterdir()))
        res["batch"] = args.batch
        naive, ours = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            rows, ref = evaluate_model(model, split, 4, device=device)
            naive.append(time.perf_counter() - start)
        start = time.perf_counter()
        ev = DeviceEvaluator(split, 4, device=device, batch_size=args.batch)
        res["ours_load_seconds"] = time.perf_counter() - start  # once per adaptation
        for _ in range(args.repeats):
            _sync(device)
            start = time.perf_counter()
            got = ev(model)
            ours.append(time.perf_counter() - start)
        psnr, ssim = ev.scores(model)
        res["max_abs_psnr_diff_db"] = max(abs(a - r["psnr"]) for a, r in zip(psnr, rows))
        res["max_abs_ssim_diff"] = max(abs(a - r["ssim"]) for a, r in zip(ssim, rows))
        res["mean_psnr"] = {"naive": ref["mean_psnr"], "ours": got["mean_psnr"]}
        res["naive_seconds_per_pass"] = sorted(naive)[len(naive) // 2]
        res["ours_seconds_per_pass"] = sorted(ours)[len(ours) // 2]
        res["speedup"] = res["naive_seconds_per_pass"] / res["ours_seconds_per_pass"]
        if args.adapt_steps:
            step = _adapt_step_seconds(model, split, assets, device, args.adapt_steps)
            res["authors_adapt_seconds_per_step"] = step
            # the authors' schedule: 1500 steps, 151 evaluations (every 10 steps and step 0)
            res["eval_to_adapt_ratio_authors_schedule"] = {
                "naive": 151 * res["naive_seconds_per_pass"] / (1500 * step),
                "ours": 151 * res["ours_seconds_per_pass"] / (1500 * step)}
    out = Path(args.out) if args.out else OUT / "eval_pass.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"{res['n_images']} {res['pairs']}, {res['model']}, {res['device']} ({res['hardware']})")
    print(f"  naive (evaluate_model, per image, numpy metrics): {res['naive_seconds_per_pass']:.2f} s / pass")
    print(f"  ours (DeviceEvaluator, batch {args.batch}, metrics on device): {res['ours_seconds_per_pass']:.2f} s / pass "
          f"(x{res['speedup']:.2f}; one-time load {res['ours_load_seconds']:.2f} s)")
    print(f"  agreement: max |dPSNR| {res['max_abs_psnr_diff_db']:.2e} dB, max |dSSIM| {res['max_abs_ssim_diff']:.2e}")
    if args.adapt_steps:
        r = res["eval_to_adapt_ratio_authors_schedule"]
        print(f"  authors adaptation step: {res['authors_adapt_seconds_per_step']:.2f} s; evaluation / adaptation time "
              f"over 1500 steps with 151 evaluations: naive {r['naive']:.2f}, ours {r['ours']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
