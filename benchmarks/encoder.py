"""Time the (Alpha-)CLIP encoder as the IODA loss uses it: forward + backward to the SR output.

    PYTHONPATH=. python benchmarks/encoder.py --model tiny --batch 2 --size 512 --repeats 5 [--device cuda]

Random weights unless --pretrained is given (timings do not depend on the weights). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ioda.clip import build_encoder
from ioda.runtime import resolve_device


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny")
    p.add_argument("--pretrained")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=512, help="side of the (HR) input images")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    enc = build_encoder(args.model, pretrained=args.pretrained, device=device)
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(args.batch, 3, args.size, args.size, generator=gen).to(device).requires_grad_(True)
    mask = (torch.rand(args.batch, 1, args.size, args.size, generator=gen) > 0.5).float().to(device)

    def step():
        img.grad = None
        enc.encode_image(img, mask).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up (allocations, kernel selection)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(json.dumps({"model": args.model, "device": str(device), "batch": args.batch, "size": args.size,
                      "seconds_per_step": sorted(times)[len(times) // 2], "repeats": args.repeats}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
