"""Can an encoder drive IODA's direction loss? The trained degradation encoder and the same architecture untrained,
side by side, on the same probes (ioda.encoders.probes):

- synthetic, on held-out source images (the card's held-out list) under held-out degradation draws: knn_acc,
  blur_rank_corr, noise_rank_corr, splice_acc;
- real RealSR crops: canon_direction_cos / nikon_direction_cos, the mean pairwise cosine of the per-image camera
  directions E(target LR_i) - mean E(source LR) (consistent camera directions across content: near 1);
- the decisive one, on Nikon only (the validation camera; Canon, the study's target, is never looked at here):
  the direction loss with SR_T = the real HR vs SR_T = CRAFT's output on the same LR crop (nikon_hr_wins: the
  share of crops where the HR scores lower), and nikon_grad_cos: the mean cosine between the loss's descent
  direction at CRAFT's output and (HR - SR). Source side: CRAFT on clean bicubic LR crops of the source domain.

    python benchmarks/encoder_probe.py --weights results/effect/encoder/degradation.safetensors \\
        --source data/bsd100_urban100/train --canon data/realsr_canon_crops --nikon data/realsr_nikon_crops \\
        --model results/effect/weights/craft_x4.pth
Writes benchmarks/out/encoder_probe.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from adapt_step import write_result  # benchmarks/ is on sys.path: the scripts run from it
from ioda.adapt.losses import direction_terms
from ioda.encoders.degradation import build_degradation_encoder, read_weights
from ioda.encoders.probes import direction_consistency, hr_vs_sr, synthetic_probes
from ioda.imageio import image_to_tensor, list_images, read_image

OUT = Path(__file__).resolve().parent / "out" / "encoder_probe.json"


def lr_crops(folder: Path, size: int, limit: int | None = None) -> torch.Tensor:
    """Centre crops (size x size) of the LR images of a split folder, as one Nx3xSxS tensor."""
    out = []
    for p in list_images(folder)[:limit]:
        img = read_image(p)
        h, w = img.shape[:2]
        y, x = (h - size) // 2, (w - size) // 2
        out.append(image_to_tensor(img[y:y + size, x:x + size]))
    return torch.cat(out)


def camera_lr(root: Path, size: int) -> torch.Tensor:
    return torch.cat([lr_crops(root / split / "LR_x4", size) for split in ("train", "test")])


def nikon_pairs(root: Path, size: int, scale: int, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    lrs, hrs = [], []
    for split in ("train", "test"):
        for lp, hp in zip(list_images(root / split / "LR_x4"), list_images(root / split / "HR")):
            lr, hr = read_image(lp), read_image(hp)
            y, x = (lr.shape[0] - size) // 2, (lr.shape[1] - size) // 2
            lrs.append(image_to_tensor(lr[y:y + size, x:x + size]))
            hrs.append(image_to_tensor(hr[y * scale:(y + size) * scale, x * scale:(x + size) * scale]))
    return torch.cat(lrs[:limit]), torch.cat(hrs[:limit])


@torch.no_grad()
def super_resolve(model, lr: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(lr[i:i + 1]).clamp(0, 1) for i in range(len(lr))])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help="trained degradation encoder (.safetensors)")
    ap.add_argument("--source", required=True, help="source split (HR/ and LR_x4/): held-out HR and clean LR")
    ap.add_argument("--canon", required=True, help="prepared realsr_canon_crops folder")
    ap.add_argument("--nikon", required=True, help="prepared realsr_nikon_crops folder")
    ap.add_argument("--model", required=True, help="the source SR network (CRAFT x4)")
    ap.add_argument("--crop", type=int, default=64, help="LR crop size of the real-crop probes")
    ap.add_argument("--nikon-crops", type=int, default=20)
    ap.add_argument("--source-crops", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    from ioda.archs import load_model

    t0 = time.perf_counter()
    _, _, card = read_weights(args.weights)
    held_names = set(card.get("holdout", []))
    source = Path(args.source)
    held = [read_image(p) for p in list_images(source / "HR") if p.name in held_names]
    if not held:
        sys.exit(f"{args.weights}: its card lists no held-out images found in {source / 'HR'}")
    encoders = {"trained": build_degradation_encoder(args.weights),
                "untrained": build_degradation_encoder(None, seed=args.seed)}
    model = load_model(args.model).module.eval()
    src_lr = lr_crops(source / "LR_x4", args.crop)[: args.source_crops]
    src_sr = super_resolve(model, src_lr)
    canon_lr, nikon_lr = camera_lr(Path(args.canon), args.crop), camera_lr(Path(args.nikon), args.crop)
    lr_t, hr_t = nikon_pairs(Path(args.nikon), args.crop, 4, args.nikon_crops)
    sr_t = super_resolve(model, lr_t)
    loss_fn = lambda d_lr, d_sr: direction_terms(d_lr, d_sr).mean()  # noqa: E731  the paper's 1 - cos
    result: dict = {"settings": {k: v for k, v in vars(args).items() if k != "out"}, "held_out_images": len(held),
                    "source_crops": len(src_lr), "canon_crops": len(canon_lr), "nikon_crops": len(nikon_lr),
                    "nikon_pairs": len(lr_t)}
    for name, enc in encoders.items():
        row = synthetic_probes(enc, held, seed=10_007)
        row["canon_direction_cos"] = direction_consistency(enc, canon_lr, src_lr)
        row["nikon_direction_cos"] = direction_consistency(enc, nikon_lr, src_lr)
        hs = hr_vs_sr(enc, loss_fn, lr_t, hr_t, sr_t, src_lr, src_sr)
        row.update(nikon_hr_wins=hs["hr_wins"], nikon_grad_cos=hs["grad_cos"],
                   nikon_loss_hr_mean=float(np.mean(hs["loss_hr"])), nikon_loss_sr_mean=float(np.mean(hs["loss_sr"])),
                   description=enc.description)
        result[name] = row
        print(name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    result["seconds"] = round(time.perf_counter() - t0, 1)
    write_result(Path(args.out), "encoder_probe.py", argv, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
