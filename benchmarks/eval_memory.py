"""Peak memory of `ioda evaluate` on one full-size pair vs its size: ours (tiles + row strips) vs the whole-image
pass, with a real network (CRAFT, registered as craft_x4; IODA_MIRROR=../shared/assets/raw reads it offline).

naive: the former evaluate path: one forward of the whole LR (whole-size float32 activations and output), then
       tensor_to_image, then PSNR/SSIM on whole-size float64 images.
ours:  ioda.evaluate.super_resolve with tiles (each window float only while processed, each core quantised into
       one uint8 buffer) and ioda.metrics' strips of STRIP_ROWS rows.

Each case runs in a fresh subprocess. "extra" = peak RSS minus the RSS before the call (Python, torch, the model,
the LR and HR images) minus the uint8 SR output (3 x scale^2 bytes per LR pixel, which any method holds): the
working memory. For ours it should stay flat as the pair grows. The scores of both are printed side by side.
Prints a table and writes benchmarks/out/eval_memory.json. Usage:

    python benchmarks/eval_memory.py [--model craft_x4] [--sizes 128 256 384] [--tile 128]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from sr_image import rss_mib, run_child, write_cases  # benchmarks/ is on sys.path: the scripts run from it

OUT = Path(__file__).resolve().parent / "out" / "eval_memory.json"
MIRROR = Path(__file__).resolve().parents[2] / "shared" / "assets" / "raw"


def _pair(size: int):
    """A natural-looking HR of 4*size px square (scikit-image photos, tiled) and its MATLAB-bicubic x4 LR."""
    import numpy as np
    from skimage import data as skdata

    from ioda.data.imresize import imresize

    tile = np.concatenate([skdata.astronaut(), skdata.coffee()[:, :512]], axis=0)  # 912 x 512
    reps = (4 * size // tile.shape[0] + 1, 4 * size // tile.shape[1] + 1, 1)
    hr = np.ascontiguousarray(np.tile(tile, reps)[: 4 * size, : 4 * size])
    return imresize(hr, 1 / 4), hr


def run_case(method: str, model: str, size: int, tile: int) -> dict:
    """Executed inside the child process."""
    import torch

    import ioda.metrics as metrics
    from ioda.archs import load_model, upscale
    from ioda.data.assets import resolve_checkpoint
    from ioda.evaluate import super_resolve
    from ioda.imageio import image_to_tensor, tensor_to_image

    torch.set_num_threads(1)
    loaded = load_model(resolve_checkpoint(model))
    net, scale = loaded.module.eval(), loaded.scale
    lr, hr = _pair(size)
    with torch.no_grad():  # warm-up on a small crop: allocator pools and kernels are not the pair's cost
        super_resolve(net, lr[:48, :48], scale, torch.device("cpu"), 0)
    base = rss_mib()
    t0 = time.perf_counter()
    with torch.no_grad():
        if method == "naive":
            metrics.STRIP_ROWS = 1 << 30  # one strip: whole-image metrics
            sr = tensor_to_image(upscale(net, image_to_tensor(lr), scale, tile=0, out_device="cpu"))
        else:
            sr = super_resolve(net, lr, scale, torch.device("cpu"), tile)
    psnr = metrics.calculate_psnr(sr, hr, scale)
    ssim = metrics.calculate_ssim(sr, hr, scale)
    seconds = time.perf_counter() - t0
    out_mib = sr.nbytes / 2**20
    peak = rss_mib()
    return {"method": method, "model": model, "arch": loaded.arch, "lr_size": f"{size}x{size}",
            "hr_megapixels": round((4 * size) ** 2 / 1e6, 2), "tile": 0 if method == "naive" else tile,
            "seconds": round(seconds, 2), "psnr": round(psnr, 4), "ssim": round(ssim, 5),
            "output_mib": round(out_mib, 1), "peak_rss_mib": round(peak, 1), "rss_before_mib": round(base, 1),
            "extra_rss_mib": round(max(peak - base - out_mib, 0.0), 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="craft_x4")
    ap.add_argument("--sizes", nargs="+", type=int, default=[128, 256, 384], help="LR sizes (square), px")
    ap.add_argument("--tile", type=int, default=128, help="ours: LR tile size (ioda evaluate's default tiles "
                    "above 512x512 LR px; small sizes here need a small tile to show the effect)")
    ap.add_argument("--note", default="", help="recorded with the numbers (e.g. 'measured under load')")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--child", nargs=3, metavar=("METHOD", "SIZE", "TILE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        method, size, tile = args.child
        print(json.dumps(run_case(method, args.model, int(size), int(tile))))
        return 0
    env = dict(os.environ)
    if "IODA_MIRROR" not in env and MIRROR.is_dir():
        env["IODA_MIRROR"] = str(MIRROR)
    rows = []
    for size in args.sizes:
        for method in ("naive", "ours"):
            cmd = [sys.executable, __file__, "--model", args.model, "--child", method, str(size), str(args.tile)]
            rows.append(run_child(cmd, env))
            r = rows[-1]
            print(f"{r['method']:5s} LR {r['lr_size']:>9s} (HR {r['hr_megapixels']:5.2f} MP) tile {r['tile']:4d}: "
                  f"{r['seconds']:7.2f} s  PSNR {r['psnr']:.4f} SSIM {r['ssim']:.5f}  extra RSS "
                  f"{r['extra_rss_mib']:8.1f} MiB", flush=True)
    write_cases(args.out, "eval_memory", rows, threads=1, note=args.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
