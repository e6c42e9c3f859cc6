"""`ioda evaluate`: run a model (or MATLAB-bicubic upsampling) on a split; per-image CSV + summary JSON.

Protocol (the paper's, via BasicSR): SR output rounded to uint8 (as BasicSR's tensor2img), PSNR/SSIM on
the Y channel (BT.601) with `scale` border pixels cropped, float64. Images whose PSNR is inf (SR equal to
HR after cropping) are counted in `n_inf` and left out of the PSNR mean, which is over finite values.
Nothing is written unless every image succeeded.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ioda.archs import load_model, preset_names, upscale
from ioda.archs.tiling import upscale_image
from ioda.tiles import AUTO_TILE, AUTO_TILE_PIXELS, MIN_TILE, auto_tile
from ioda.data.assets import resolve_checkpoint
from ioda.data.pairs import check_pair_sizes, list_pairs
from ioda.errors import IodaError
from ioda.files import removed_on_failure, sha256_file, write_json, write_text
from ioda.imageio import read_image, write_image
from ioda.metrics import calculate_psnr, calculate_ssim
from ioda.metrics_torch import psnr_batch, quantize, ssim_batch
from ioda.runtime import progress_enabled, resolve_device, setup_logging

BICUBIC = "bicubic"
# Tiled scores agree with one-pass scores within these (tests: safmn_tiny, and CRAFT on a real RealSR crop with
# 48 px tiles): a tile's network sees the tile, not the photo (SAFMN's pooling branch, attention near tile edges).
TILED_PSNR_DB, TILED_SSIM = 0.01, 2e-4
CSV_FIELDS = ["image", "psnr", "ssim", "lr_width", "lr_height", "hr_width", "hr_height"]


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB imresize(lr, scale, 'bicubic') (the data package's MATLAB-compatible implementation)."""
    from ioda.data.imresize import imresize

    return imresize(lr, scale)


def fit_hr(lr: np.ndarray, hr: np.ndarray, scale: int, pair, crop_hr: bool) -> np.ndarray:
    """HR as scored: cropped to LR x scale from the top-left when crop_hr (BasicSR val/test), then size-checked."""
    if crop_hr:
        hr = hr[: lr.shape[0] * scale, : lr.shape[1] * scale]
    check_pair_sizes(lr, hr, scale, pair)
    return hr


def super_resolve(model: nn.Module | str, lr: np.ndarray, scale: int, device: torch.device,
                  tile: int | None) -> np.ndarray:
    """HxWx3 uint8 LR -> HxWx3 uint8 SR, written tile by tile into one uint8 buffer (`upscale_image`: the pixels
    of the float path). tile None: one pass up to AUTO_TILE_PIXELS LR px, tiles of AUTO_TILE above."""
    if isinstance(model, str):
        if model != BICUBIC:
            raise IodaError(f"model: {model!r} is not a module or 'bicubic'")
        return bicubic_upscale(lr, scale)
    tile = auto_tile(*lr.shape[:2]) if tile is None else tile
    return upscale_image(model, lr, scale, tile=tile, device=device)


def evaluate_model(
    model: nn.Module | str,
    split_dir: str | os.PathLike,
    scale: int,
    *,
    device: str | torch.device = "cpu",
    tile: int | None = 0,
    crop_border: int | None = None,
    test_y_channel: bool = True,
    save_dir: str | os.PathLike | None = None,
    crop_hr: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-image rows and a summary for every LR/HR pair in `split_dir` (model may be 'bicubic').

    Saved SR images (if `save_dir`) are removed again if any image fails."""
    device = torch.device(device)
    crop = scale if crop_border is None else crop_border
    pairs = list_pairs(split_dir, scale)
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model = model.to(device).eval()
    try:
        rows, summary = _evaluate_pairs(model, pairs, scale, device, tile, crop, test_y_channel, save_dir, crop_hr)
    finally:
        if was_training:  # callers evaluate mid-training (adaptation curves): hand the module back as it came
            model.train()  # type: ignore[union-attr]
    summary["dataset"] = str(split_dir)
    return rows, summary


def _evaluate_pairs(model, pairs, scale, device, tile, crop, test_y_channel, save_dir, crop_hr=False):
    rows: list[dict[str, Any]] = []
    save = Path(save_dir) if save_dir else None
    created = save is not None and not save.exists()
    guard = removed_on_failure(save) if created else removed_on_failure()
    with guard:
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
        for pair in tqdm(pairs, desc="evaluate", disable=not progress_enabled()):
            lr, hr = read_image(pair.lr), read_image(pair.hr)
            hr = fit_hr(lr, hr, scale, pair, crop_hr)
            sr = super_resolve(model, lr, scale, device, tile)
            if sr.shape != hr.shape:
                raise IodaError(f"{pair.lr}: model output {sr.shape[1]}x{sr.shape[0]} differs from HR {pair.hr} "
                                f"{hr.shape[1]}x{hr.shape[0]} (is the model x{scale}?)")
            try:
                psnr = calculate_psnr(sr, hr, crop, test_y_channel=test_y_channel)
                ssim = calculate_ssim(sr, hr, crop, test_y_channel=test_y_channel)
            except ValueError as err:
                raise IodaError(f"{pair.hr}: cannot score ({err})") from None
            if save is not None:
                write_image(save / f"{pair.stem}.png", sr)
            rows.append({"image": pair.stem, "psnr": psnr, "ssim": ssim, "lr_width": lr.shape[1],
                         "lr_height": lr.shape[0], "hr_width": hr.shape[1], "hr_height": hr.shape[0]})
    summary = _summary(rows, scale, crop, test_y_channel, device, tile)
    summary["crop_hr"] = crop_hr
    return rows, summary


def _summary(rows, scale, crop, test_y_channel, device, tile) -> dict[str, Any]:
    finite = [r["psnr"] for r in rows if math.isfinite(r["psnr"])]
    return {
        "n": len(rows),
        "mean_psnr": float(np.mean(finite)) if finite else None,  # None: every image was inf
        "mean_ssim": float(np.mean([r["ssim"] for r in rows])),
        "n_inf": len(rows) - len(finite),
        "psnr_mean_over": "finite values only",
        "scale": scale,
        "crop_border": crop,
        "test_y_channel": test_y_channel,
        "device": str(device),
        "tile": "auto" if tile is None else tile,
    }


class DeviceEvaluator:
    """`evaluate_model` for repeated passes (the oracle curve): same numbers, no per-image host round-trip.

    The split's pairs are read once, grouped by LR size and kept on `device` as uint8; a pass super-resolves each
    group in batches of `batch_size`, rounds as tensor2img, scores on the device in float64 and brings the
    per-image PSNR/SSIM to the host once. `__call__(model)` returns the summary (mean_psnr, mean_ssim, n, ...)."""

    def __init__(self, split_dir: str | os.PathLike, scale: int, *, device: str | torch.device = "cpu",
                 crop_border: int | None = None, test_y_channel: bool = True, crop_hr: bool = False,
                 batch_size: int = 8, tile: int = 0):
        if batch_size < 1:
            raise IodaError(f"evaluation batch size must be at least 1, got {batch_size}")
        self.device, self.scale, self.tile = torch.device(device), scale, tile
        self.crop = scale if crop_border is None else crop_border
        self.test_y_channel, self.crop_hr, self.batch_size = test_y_channel, crop_hr, batch_size
        self.split_dir = str(split_dir)
        groups: dict[tuple[int, int], list] = {}
        for pair in list_pairs(split_dir, scale):
            lr, hr = read_image(pair.lr), read_image(pair.hr)
            hr = fit_hr(lr, hr, scale, pair, crop_hr)
            groups.setdefault(lr.shape[:2], []).append((pair.stem, lr, hr))
        self.groups = []  # (names, LR uint8 Nx3xhxw, HR uint8 Nx3xHxW), on the device
        for items in groups.values():
            to = lambda arrs: torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous().to(self.device)  # noqa: E731
            self.groups.append(([n for n, _, _ in items], to([lr for _, lr, _ in items]), to([hr for _, _, hr in items])))
        self.names = [n for names, _, _ in self.groups for n in names]
        self._first: tuple[list[torch.Tensor], dict] | None = None  # (weights, summary) of the first model

    @torch.no_grad()
    def scores(self, model: nn.Module) -> tuple[list[float], list[float]]:
        was_training = model.training
        model.eval()
        psnr, ssim = [], []
        try:
            for _, lrs, hrs in self.groups:
                for i in range(0, lrs.shape[0], self.batch_size):
                    lr = lrs[i:i + self.batch_size].float().div_(255.0)
                    sr = quantize(upscale(model, lr, self.scale, tile=self.tile))
                    hr = hrs[i:i + self.batch_size]
                    if sr.shape != hr.shape:
                        raise IodaError(f"{self.split_dir}: model output {tuple(sr.shape[-2:])} differs from HR "
                                        f"{tuple(hr.shape[-2:])} (is the model x{self.scale}?)")
                    psnr.append(psnr_batch(sr, hr, self.crop, self.test_y_channel))
                    ssim.append(ssim_batch(sr, hr, self.crop, self.test_y_channel))
        finally:
            model.train(was_training)
        both = torch.stack([torch.cat(psnr), torch.cat(ssim)]).cpu().tolist()  # the one host sync of a pass
        return both[0], both[1]

    def __call__(self, model: nn.Module) -> dict[str, Any]:
        # Every run of a cell starts from the same source model: its step-0 pass is computed once per process.
        # The first model evaluated is remembered and a model with equal weights gets its summary back.
        state = [t.detach() for t in model.state_dict().values()]
        if self._first is not None and _same_weights(self._first[0], state):
            return copy.deepcopy(self._first[1])
        psnr, ssim = self.scores(model)
        rows = [{"image": n, "psnr": p, "ssim": s} for n, p, s in zip(self.names, psnr, ssim)]
        summary = _summary(rows, self.scale, self.crop, self.test_y_channel, self.device, self.tile)
        summary.update(crop_hr=self.crop_hr, dataset=self.split_dir)
        if self._first is None:
            self._first = ([t.clone() for t in state], copy.deepcopy(summary))
        return summary


def _same_weights(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and x.dtype == y.dtype and x.device == y.device
                                    and torch.equal(x, y) for x, y in zip(a, b))


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "psnr": f"{r['psnr']:.6f}" if math.isfinite(r["psnr"]) else "inf",
                    "ssim": f"{r['ssim']:.6f}"})
    return buf.getvalue()


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ioda evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, nargs="+",
                    help="checkpoint (.safetensors/.pth), registered weights (craft_x4, ditn_real_x4) or 'bicubic'; "
                    "several: each scored in turn in this one process (one --out-csv/--out-json each)")
    ap.add_argument("--preset", choices=preset_names(), help="expected preset (checked against the checkpoint)")
    ap.add_argument("--scale", type=int, help="needed with --model bicubic (default 4); else checked")
    ap.add_argument("--data", required=True, help="split folder with HR/ and LR_x<scale>/")
    ap.add_argument("--out-csv", required=True, nargs="+", help="per-image scores, one per --model")
    ap.add_argument("--out-json", required=True, nargs="+", help="summary, one per --model")
    ap.add_argument("--save-images", nargs="+",
                    help="folder for the SR images (PNG), one per --model ('-': not saved for that model)")
    ap.add_argument("--tile", type=int, help="LR tile size for tiled inference (0: whole image in one pass); "
                    f"default: one pass up to {AUTO_TILE_PIXELS} LR px, tiles of {AUTO_TILE} px above (working "
                    "memory flat in the photo size)")
    ap.add_argument("--crop-border", type=int, help="default: the scale")
    ap.add_argument("--rgb", action="store_true", help="score on RGB instead of the Y channel")
    ap.add_argument("--crop-hr", action="store_true",
                    help="crop an HR larger than scale x LR to it (BasicSR validation; protocol authors) "
                    "instead of refusing the pair")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--label", help="free-text label stored in the summary (e.g. run name)")
    ap.add_argument("--log", help="log file")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log = setup_logging(args.log)
    if args.tile is not None and args.tile < 0:
        raise IodaError(f"--tile must be 0 (whole image) or a positive tile size in LR px, got {args.tile}")
    n = len(args.model)
    for flag, values in (("--out-csv", args.out_csv), ("--out-json", args.out_json),
                         ("--save-images", args.save_images)):
        if values is not None and len(values) != n:
            raise IodaError(f"{flag}: expected one value per --model ({n}), got {len(values)}")
    saves = [None if s == "-" else s for s in (args.save_images or [None] * n)]
    device = resolve_device(args.device)
    loaded = [_load(m, args, device) for m in args.model]  # every checkpoint checked before any work
    _check_tile(args.tile, loaded, args.model)
    done: list[str] = []
    try:
        for (model, scale, ident), name, out_csv, out_json, save in zip(loaded, args.model, args.out_csv,
                                                                        args.out_json, saves):
            log.info("evaluating %s on %s (x%d, device %s, tile %s)", name, args.data, scale, device,
                     "auto" if args.tile is None else args.tile)
            rows, summary = evaluate_model(model, args.data, scale, device=device, tile=args.tile,
                                           crop_border=args.crop_border, test_y_channel=not args.rgb,
                                           save_dir=save, crop_hr=args.crop_hr)
            summary = {**ident, **summary, "label": args.label}
            # both files or neither: the JSON is written only after the CSV, and the CSV removed if the JSON fails
            write_text(out_csv, rows_to_csv(rows))
            with removed_on_failure(out_csv):
                write_json(out_json, summary)
            done += [out_csv, out_json]
            log.info("%s: PSNR %s dB, SSIM %.4f over %d images (%d inf)", args.data, summary["mean_psnr"],
                     summary["mean_ssim"], summary["n"], summary["n_inf"])
    except BaseException:
        for f in done:  # one invocation, one result: no model's scores are left behind when a later one fails
            Path(f).unlink(missing_ok=True)
        raise
    return 0


def _check_tile(tile: int | None, loaded, names) -> None:
    """A tile of at least MIN_TILE LR px that every network runs on (the probe --lr-patch uses), or none."""
    if not tile:
        return
    if tile < MIN_TILE:
        raise IodaError(f"--tile {tile}: tiles below {MIN_TILE} LR px change the scores; use at least {MIN_TILE}, "
                        f"or 0 for the whole image")
    from ioda.archs.probe import runs_on, smallest_patch

    for (model, scale, _), name in zip(loaded, names):
        if isinstance(model, nn.Module) and not runs_on(model, scale, tile):
            smallest = smallest_patch(model, scale)
            raise IodaError(f"--tile {tile}: {name} cannot super-resolve a {tile}x{tile} LR tile; "
                            + (f"use at least {smallest}" if smallest else "it runs on no tile up to 512 px"))


def _load(name: str, args, device) -> tuple[nn.Module | str, int, dict[str, Any]]:
    if name == BICUBIC:
        if args.preset:
            raise IodaError("--preset: not meaningful with --model bicubic")
        return BICUBIC, args.scale or 4, {"model": BICUBIC, "model_sha256": None, "preset": None,
                                          "arch": "bicubic (MATLAB imresize)"}
    path = resolve_checkpoint(name)  # a registered name (craft_x4 ...) -> its verified cached file
    loaded = load_model(path, preset=args.preset, scale=args.scale, device=device)
    return loaded.module, loaded.scale, {"model": str(name), "model_sha256": sha256_file(path),
                                         "preset": loaded.preset, "arch": loaded.arch}
