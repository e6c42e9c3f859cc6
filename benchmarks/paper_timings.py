"""The per-unit timings `ioda plan` projects config/paper.yaml from, measured on this machine, or assembled from
the GPU benchmark files (never one device's figures derived from another's).

    python benchmarks/paper_timings.py --device cpu           # measure here -> benchmarks/out/timings-cpu.json
    python benchmarks/paper_timings.py --assemble-gpu         # from adapt_step-paper-cuda.json -> timings-cuda.json
    python benchmarks/paper_timings.py --device cuda          # measure on a GPU -> timings-cuda.json

Measured (one warm-up unless --no-warmup, then the median of --repeats):
- pretrain_step: one supervised L1 step (SR forward + backward + Adam) of each pre-trained preset at the
  config's pretrain batch and LR patch (data loading not included);
- finetune_step / zssr_step: the same supervised step at the adaptation batch and LR patch (both baselines take
  one such step per iteration);
- adapt_step: the direction-loss step of benchmarks/adapt_step.py ("ours") at the adaptation batch and patch,
  read from benchmarks/out/adapt_step-paper-<device>.json (run that benchmark first);
- eval_mpix: the SR forward of one 128x128 LR tile (no grad), scaled to one LR megapixel (+ metrics, small);
- masks_image: SAM automatic masks of one 48x32 LR image with the stand-in (random) weights: the image encoder
  always runs at 1024 px, but random weights give other mask counts than trained ones, so the post-processing
  part may differ.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ioda.archs.loading import build_model
from ioda.config import paper_config
from ioda.plan import Plan

OUT = Path(__file__).resolve().parent / "out"


WARMUP = True


def _timed(fn, repeats: int, sync) -> float:
    if WARMUP:
        fn()
        sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def supervised_step(preset: str, batch: int, patch: int, device: str, repeats: int, sync) -> float:
    model = build_model(preset, seed=0, device=device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    lr = torch.rand(batch, 3, patch, patch, device=device)
    hr = torch.rand(batch, 3, patch * 4, patch * 4, device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(model(lr), hr).backward()
        opt.step()

    return _timed(step, repeats, sync)


def eval_mpix(preset: str, device: str, repeats: int, sync, tile: int = 128) -> float:
    model = build_model(preset, seed=0, device=device).eval()
    x = torch.rand(1, 3, tile, tile, device=device)

    def fwd():
        with torch.inference_mode():
            model(x)

    return _timed(fwd, repeats, sync) * 1e6 / (tile * tile)


def masks_image(model_type: str, device: str) -> float:
    from ioda.masks.sam import sam_label_map
    from ioda.standins.datasets import synthetic_photo
    from ioda.standins.weights import write_sam

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_sam(model_type, Path(tmp) / "sam.pth")
        img = synthetic_photo(0, (32, 48))
        t = time.perf_counter()
        sam_label_map(img, model_type, ckpt, device=device)
        return time.perf_counter() - t


def adapt_steps(device_type: str) -> tuple[dict, str | None]:
    path = OUT / f"adapt_step-paper-{device_type}.json"
    if not path.is_file():
        return {}, None
    data = json.loads(path.read_text())
    return {r["preset"]: {"s": r["ours"]["s_per_step"], "batch": r["batch"], "lr_patch": r["lr_patch"],
                          "peak_mem_mib": r["ours"].get("peak_mem_mib"), "from": path.name}
            for r in data["results"]}, data.get("hardware") or data["results"][0].get("hardware")


def assemble_gpu() -> dict:
    figures, hardware = adapt_steps("cuda")
    return {
        "device": "cuda", "hardware": hardware,
        "conditions": "adapt_step from benchmarks/out/adapt_step-paper-cuda.json (an earlier session's H100); "
                      "nothing else was measured on a GPU",
        "figures": {"adapt_step": figures, "pretrain_step": {}, "finetune_step": {}, "zssr_step": {},
                    "eval_mpix": {}, "masks_image": {}},
        "missing": "pretrain_step, finetune_step, zssr_step, eval_mpix (eval_pass-cuda.json timed CRAFT, not a "
                   "paper backbone), masks_image: not measured on a GPU",
    }


def measure(device: str, repeats: int, note: str, skip_sam: bool) -> dict:
    cfg = paper_config()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    presets = sorted({bb["preset"] for bb in cfg["backbones"].values()})
    p, a = cfg["pretrain"], cfg["adapt"]
    figures: dict = {"pretrain_step": {}, "finetune_step": {}, "zssr_step": {}, "eval_mpix": {}, "masks_image": {}}
    plan = Plan(cfg)
    pretrained = sorted({b for b, s in plan.pretrained() if not plan.uses_official(b, s)})
    for b in pretrained:
        preset = cfg["backbones"][b]["preset"]
        s = supervised_step(preset, p["batch_size"], p["lr_patch"], device, repeats, sync)
        figures["pretrain_step"][preset] = {"s": s, "batch": p["batch_size"], "lr_patch": p["lr_patch"]}
        print(f"pretrain step {preset}: {s:.3f} s", flush=True)
    for preset in presets:
        s = supervised_step(preset, a["batch_size"], a["lr_patch"], device, repeats, sync)
        for kind in ("finetune_step", "zssr_step"):
            figures[kind][preset] = {"s": s, "batch": a["batch_size"], "lr_patch": a["lr_patch"]}
        print(f"supervised step {preset} at the adaptation batch/patch: {s:.3f} s", flush=True)
        figures["eval_mpix"][preset] = {"s": eval_mpix(preset, device, repeats, sync)}
        print(f"eval {preset}: {figures['eval_mpix'][preset]['s']:.2f} s per LR megapixel", flush=True)
    if not skip_sam:
        sam = cfg["masks"]["sam_model"]
        figures["masks_image"][sam] = {"s": masks_image(sam, device)}
        print(f"SAM {sam}: {figures['masks_image'][sam]['s']:.1f} s per image", flush=True)
    dtype = "cuda" if device.startswith("cuda") else "cpu"
    figures["adapt_step"], _ = adapt_steps(dtype)
    hardware = torch.cuda.get_device_name() if dtype == "cuda" else f"{platform.processor() or platform.machine()}, " \
                                                                       f"{torch.get_num_threads()} threads"
    return {"device": dtype, "hardware": hardware, "torch": torch.__version__,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "conditions": note, "figures": figures,
            "missing": "" if figures["adapt_step"] else f"adapt_step: run benchmarks/adapt_step.py --preset paper "
                                                        f"--device {dtype} first"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--assemble-gpu", action="store_true")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-sam", action="store_true")
    ap.add_argument("--note", default="", help="measurement conditions (machine load, ...)")
    ap.add_argument("--no-warmup", action="store_true", help="time the first call (slow CPUs: steps of seconds)")
    ap.add_argument("--out")
    args = ap.parse_args()
    global WARMUP
    WARMUP = not args.no_warmup
    np.random.seed(0)
    torch.manual_seed(0)
    if args.assemble_gpu:
        data, kind = assemble_gpu(), "cuda"
    else:
        data = measure(args.device, args.repeats, args.note, args.skip_sam)
        kind = data["device"]
    out = Path(args.out or OUT / f"timings-{kind}.json")
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
