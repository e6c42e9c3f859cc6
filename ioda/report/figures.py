"""`ioda figures NAME`: the paper's figures as PNG + PDF in <results_dir>/figures (matplotlib, Agg).

  fig1_bars     Fig. 1: PSNR of the source model vs +IODA per backbone (error bars: ± std over N images)
  fig4_tsne     Fig. 4: t-SNE of encoder features of ONE target image under random crops (CLIP, full alpha),
                occlusion (CLIP) and region masks (Alpha-CLIP alpha channel), with each condition's dispersion
                (mean cosine distance of its L2-normalised features to their centroid)
  fig8_visuals  Figs. 8-9: a crop of the first test image: LR (nearest), each variant's SR, ground truth
  curves        PSNR on the target test set vs adaptation step (an ORACLE curve: it looks at target HR), with
                the final step, the validated step (chosen on the validation task's mean curve, drawn dotted)
                and each run's oracle best step marked
  paired        per target image: the source model's PSNR and the adapted run's (final, validated, oracle
                step), one line per image, with each statistic's difference and 95% interval
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ioda.adapt.variants import BASELINE, IODA, VARIANTS  # noqa: E402
from ioda.config import load_config  # noqa: E402
from ioda.errors import IodaError  # noqa: E402
from ioda.files import atomic_path, read_json, removed_on_failure  # noqa: E402
from ioda.imageio import list_images, read_image  # noqa: E402
from ioda.report.cli import report_parser
from ioda.plan import Plan, Run  # noqa: E402
from ioda.report.tables import METHOD, read_cells  # noqa: E402
from ioda.runtime import progress_enabled, resolve_device, seed_everything, setup_logging  # noqa: E402
from ioda.standins.guard import mark_figure  # noqa: E402

LOG = logging.getLogger("ioda.report")
FIGURES = ("fig1_bars", "fig4_tsne", "fig8_visuals", "curves", "paired")
plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9})


def save_figure(fig, out_dir: Path, name: str) -> list[Path]:
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    with removed_on_failure(*paths):
        for p in paths:
            with atomic_path(p) as tmp:
                fig.savefig(tmp, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def untrained_note(plan: Plan) -> str:
    return " (untrained encoder: pipeline demo, not the paper's numbers)" if not plan.cfg["run"]["paper"] else ""


# ---- Fig. 1 ---------------------------------------------------------------------------------------------
def fig1_bars(plan: Plan):
    cells = read_cells(plan.metrics_dir() / "aggregate.csv")
    by = {(r.task, r.backbone, r.variant): r for r in cells.itertuples(index=False)}
    spec = plan.tables.get("table5") or plan.tables.get("table1") or next(iter(plan.tables.values()))
    task = spec["tasks"][0]
    names, base, ioda, base_err, ioda_err = [], [], [], [], []
    for bb in plan.cfg["backbones"]:
        b, i = by.get((task, bb, BASELINE)), by.get((task, bb, IODA))
        if b is None or i is None:
            continue
        names.append(bb)
        base.append(b.psnr_mean)
        ioda.append(i.psnr_mean)
        base_err.append(0.0)
        ioda_err.append(i.psnr_std if i.n > 1 and math.isfinite(i.psnr_std) else 0.0)  # sample std, as the tables
    if not names:
        raise IodaError(f"aggregate.csv: no backbone has both a baseline and an ioda cell for task {task!r} "
                        "(Fig. 1 needs both; add them to a table in experiments.tables)")
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(names), 3.6))
    ax.bar(x - 0.2, base, 0.4, yerr=base_err, label="source model (baseline)", color="#9e9e9e")
    ax.bar(x + 0.2, ioda, 0.4, yerr=ioda_err, capsize=4, label="+ IODA", color="#1f77b4")
    lo = min(base + ioda)
    hi = max(base + ioda)
    ax.set_ylim(lo - max(0.5, 0.3 * (hi - lo)), hi + max(0.5, 0.3 * (hi - lo)))
    ax.set_xticks(x, names)
    ax.set_ylabel("PSNR on target test set (dB, Y)")
    t = plan.tasks[task]
    ax.set_title(f"{t['source']} → {t['target']}{untrained_note(plan)}", fontsize=10)
    ax.legend(loc="upper left")
    ax.text(1.0, -0.18, "error bars: ± std over the N target images", transform=ax.transAxes, ha="right", fontsize=8)
    return fig


# ---- PSNR-vs-step curves -------------------------------------------------------------------------------
def read_runs(plan: Plan) -> pd.DataFrame:
    path = plan.metrics_dir() / "runs.csv"
    if not path.is_file():
        raise IodaError(f"{path}: file not found (expected runs.csv from `ioda aggregate`)")
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def _cell_runs(runs: pd.DataFrame, task: str, backbone: str, variant: str) -> pd.DataFrame:
    return runs[(runs["task"] == task) & (runs["backbone"] == backbone) & (runs["variant"] == variant)]


def curves(plan: Plan):
    from ioda.report.aggregate import read_curve, run_curves

    cell = plan.cfg["report"]["curves"]
    if not cell or plan.cfg["adapt"]["eval_every"] <= 0:
        raise IodaError("config: key 'report.curves': curves need a cell and adapt.eval_every > 0")
    runs = read_runs(plan)
    long = pd.read_csv(plan.metrics_dir() / "curves.csv")
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn, final_steps = 0, set()
    for k, v in enumerate(v for v in cell["variants"] if VARIANTS[v].trains):
        color = colors[k % len(colors)]
        series = []
        for r in (Run(cell["task"], cell["backbone"], v, r) for r in plan.run_ids(cell["task"], v)):
            path = plan.adapt_dir(r) / "curve.csv"
            if not path.is_file():
                raise IodaError(f"{path}: file not found (expected the curve of `ioda adapt --eval-every`)")
            c = pd.DataFrame(read_curve(path))
            if len(c):
                series.append(c.set_index("step")["psnr"])
                ax.plot(c["step"], c["psnr"], color=color, alpha=0.25, lw=0.8)
                best = c.loc[c["psnr"].idxmax()]  # the oracle's pick for this run (earliest of equal maxima)
                ax.plot([best["step"]], [best["psnr"]], marker="*", ms=8, color=color, alpha=0.6, ls="none",
                        label=f"oracle best step per run ({METHOD[v]})" if not series[:-1] else None)
                final_steps.add(int(c["step"].iloc[-1]))
        if not series:
            continue
        mean = pd.concat(series, axis=1).mean(axis=1)
        ax.plot(mean.index, mean.to_numpy(), color=color, lw=2, marker="o", ms=3,
                label=f"{METHOD[v]} (mean of {len(series)})")
        drawn += 1
        mine = _cell_runs(runs, cell["task"], cell["backbone"], v)
        val_task = next((t for t in mine["validation_task"].dropna() if t), None)
        steps = mine["validated_step"].dropna()
        if val_task is not None and len(steps):
            val = run_curves(long, val_task, cell["backbone"], v)
            if val:
                vmean = pd.concat([pd.Series(c) for c in val.values()], axis=1).dropna().mean(axis=1)
                ax.plot(vmean.index, vmean.to_numpy(), color=color, lw=1.2, ls=":",
                        label=f"{METHOD[v]} on {val_task} (mean; chooses the validated step)")
            ax.axvline(float(steps.iloc[0]), color=color, ls="--", lw=1.2,
                       label=f"validated step {int(steps.iloc[0])} ({METHOD[v]}, chosen on {val_task})")
    for s in sorted(final_steps):
        ax.axvline(s, color="0.3", ls="-.", lw=1, label=f"final step {s}")
    base = plan.eval_dir(Run(cell["task"], cell["backbone"], BASELINE, plan.run_ids(cell["task"], BASELINE)[0]))
    base = base / "summary.json"
    if base.is_file():
        ax.axhline(read_json(base)["mean_psnr"], color="k", ls="--", lw=1, label="source model")
    if not drawn:
        raise IodaError("curves: every curve.csv of the report.curves cell is empty")
    ax.set_xlabel("adaptation step")
    ax.set_ylabel("PSNR on target test set (dB, Y)")
    ax.set_title(f"PSNR vs step (target HR; only the oracle picks on it) — {cell['backbone']}, {cell['task']}",
                 fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


# ---- per-image paired plot ------------------------------------------------------------------------------
def paired(plan: Plan):
    from ioda.report.aggregate import STATISTICS
    from ioda.report.stats import shows_effect_both
    from ioda.report.tables import STAT_LABEL

    cell = plan.cfg["report"]["paired"]
    if not cell:
        raise IodaError("config: key 'report.paired': the paired plot needs a cell (task, backbone, variants)")
    task, bb = cell["task"], cell["backbone"]
    runs = read_runs(plan)
    cells = read_cells(plan.metrics_dir() / "aggregate.csv")
    source = _cell_runs(runs, task, bb, BASELINE)["psnr"]
    if not len(source):
        raise IodaError(f"runs.csv: no source-model run for task {task!r}, backbone {bb!r} (rerun `ioda aggregate`)")
    variants = [v for v in cell["variants"] if VARIANTS[v].trains]
    fig, axes = plt.subplots(1, len(variants), figsize=(3.6 * len(variants), 4.4), sharey=True, squeeze=False)
    for ax, v in zip(axes[0], variants):
        mine = _cell_runs(runs, task, bb, v)
        agg = cells[(cells["task"] == task) & (cells["backbone"] == bb) & (cells["variant"] == v)]
        stats = [s for s in STATISTICS if mine[s.run].notna().any()]
        labels = ["source model"] + [STAT_LABEL[s.name] for s in stats]
        for i, r in enumerate(mine.itertuples(index=False)):
            ys = [float(source.iloc[0])] + [getattr(r, s.run) for s in stats]
            ax.plot(range(len(ys)), ys, marker="o", ms=4, lw=1, alpha=0.8, label=f"target image {r.run}")
        text = []
        for s in stats:
            if len(agg) and np.isfinite(agg.iloc[0][s.diff]):
                a = agg.iloc[0]
                effect = shows_effect_both(a[s.low], a[s.high], a.get(s.t_low, np.nan), a.get(s.t_high, np.nan))
                ci = (f" [{a[s.low]:+.3f}, {a[s.high]:+.3f}]" + ("" if effect else " †")
                      if np.isfinite(a[s.low]) else " (N = 1)")
                text.append(f"{STAT_LABEL[s.name]}: {a[s.diff]:+.3f}{ci}")
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
        ax.set_title(f"{METHOD[v]} (N = {len(mine)})", fontsize=9)
        ax.text(0.0, -0.22, "Δ vs source, 95% bootstrap CI (dB; † it or the t interval includes 0):\n" + "\n".join(text), transform=ax.transAxes, fontsize=7,
                va="top")  # under the axis: the lines may be anywhere
    axes[0][0].set_ylabel("PSNR on target test set (dB, Y)")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    t = plan.tasks[task]
    fig.suptitle(f"Per target image, source model vs adapted — {bb}, {t['source']} → {t['target']}"
                 f"{untrained_note(plan)}", fontsize=9)
    return fig


# ---- Figs. 8-9 -----------------------------------------------------------------------------------------
def _crop_box(hr: np.ndarray, size: int, scale: int) -> tuple[int, int, int]:
    """A square HR crop (multiple of scale) where the image has the most detail (largest gradient energy)."""
    h, w = hr.shape[:2]
    size = max(scale, min(size, h, w) // scale * scale)
    gray = hr.astype(np.float64).mean(axis=2)
    energy = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1, :]
    best, where = -1.0, (0, 0)
    step = max(scale, size // 4 // scale * scale)
    for y in range(0, h - size + 1, step):
        for x in range(0, w - size + 1, step):
            e = float(energy[y:y + size - 1, x:x + size - 1].sum())
            if e > best:
                best, where = e, (y, x)
    return where[0], where[1], size


def fig8_visuals(plan: Plan):
    cell = plan.cfg["report"]["visuals"]
    task, bb = cell["task"], cell["backbone"]
    test = plan.split_dir(task, "test")
    scale = plan.scale
    hr_path = list_images(test / "HR")[0]
    stem = hr_path.stem
    hr = read_image(hr_path)
    lr = read_image(next(p for p in list_images(test / f"LR_x{scale}") if p.stem == stem))
    y, x, size = _crop_box(hr, cell.get("crop", 96), scale)
    panels = [("LR (nearest ×%d)" % scale, np.repeat(np.repeat(lr, scale, 0), scale, 1)[y:y + size, x:x + size])]
    for v in cell["variants"]:
        run = Run(task, bb, v, plan.run_ids(task, v)[0])
        sr_path = plan.eval_dir(run) / "images" / f"{stem}.png"
        if not sr_path.is_file():
            raise IodaError(f"{sr_path}: file not found (expected the SR images of `ioda evaluate --save-images`; "
                            "report.save_images must keep them for this run)")
        per_image = pd.read_csv(plan.eval_dir(run) / "per_image.csv")
        psnr = per_image.loc[per_image["image"].astype(str) == stem, "psnr"]
        label = METHOD[v] + (f"\n{float(psnr.iloc[0]):.2f} dB" if len(psnr) else "")
        panels.append((label, read_image(sr_path)[y:y + size, x:x + size]))
    panels.append(("Ground truth (HR)", hr[y:y + size, x:x + size]))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.7))
    for ax, (title, img) in zip(np.atleast_1d(axes), panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{stem}: {size}×{size} HR crop at ({x}, {y}) — {bb}, {task}", fontsize=9)
    return fig


# ---- Fig. 4 --------------------------------------------------------------------------------------------
def tsne_features(plan: Plan, samples: int, seed: int):
    """Features of one target LR image under the three sampling schemes of Fig. 4 -> (dict name -> NxD)."""
    import torch
    from tqdm import tqdm

    from ioda.encoders import build_encoder
    from ioda.imageio import image_to_tensor
    from ioda.masks import load_label_map, occlusion_keep_mask, sample_region

    task = plan.tsne_task()
    target = plan.tasks[task]["target"]
    img_path = list_images(plan.split_dir(task, "pool") / f"LR_x{plan.scale}")[0]
    image = read_image(img_path)
    labels = load_label_map(plan.labels(target, 0), expected_hw=image.shape[:2])
    enc_cfg = plan.cfg["encoder"]
    device = resolve_device(plan.cfg["run"]["device"])
    encoder = build_encoder(enc_cfg["name"], plan.encoder_weights("ioda"), alpha_weights=enc_cfg["alpha_weights"],
                            device=device, seed=seed, input_range=plan.cfg["adapt"]["clip_input"],
                            alpha_init=enc_cfg["alpha_init"], protocol=plan.cfg["adapt"]["protocol"],
                            antialias=plan.cfg["adapt"]["clip_antialias"])
    h, w = image.shape[:2]
    patch = min(plan.cfg["adapt"]["lr_patch"], h, w)
    rng = np.random.default_rng(seed)
    full = np.ones((patch, patch), dtype=bool)
    feats: dict[str, list] = {"random crops (CLIP)": [], "occlusion (CLIP)": [], "region masks (Alpha-CLIP)": []}
    batch = 50
    with torch.no_grad():
        for start in tqdm(range(0, samples, batch), desc="fig4 features", disable=not progress_enabled()):
            n = min(batch, samples - start)
            crops, occluded, alphas = [], [], []
            for _ in range(n):
                y, x = int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))
                crop = image[y:y + patch, x:x + patch]
                crops.append(crop)
                keep = occlusion_keep_mask(patch, patch, rng)
                occluded.append(crop * keep[..., None].astype(crop.dtype))
                mask, _ = sample_region("instance", labels[y:y + patch, x:x + patch], rng)
                alphas.append(mask)
            to = lambda arrs: torch.cat([image_to_tensor(a) for a in arrs])  # noqa: E731
            alpha_t = torch.from_numpy(np.stack(alphas)[:, None].astype(np.float32)).to(device)
            full_t = torch.from_numpy(np.stack([full] * n)[:, None].astype(np.float32)).to(device)
            feats["random crops (CLIP)"].append(encoder.encode_image(to(crops), full_t).cpu().numpy())
            feats["occlusion (CLIP)"].append(encoder.encode_image(to(occluded), full_t).cpu().numpy())
            feats["region masks (Alpha-CLIP)"].append(encoder.encode_image(to(crops), alpha_t).cpu().numpy())
    return {k: np.concatenate(v).astype(np.float64) for k, v in feats.items()}, img_path, encoder


def dispersion(features: np.ndarray) -> float:
    """Mean cosine distance of L2-normalised features to their (normalised) centroid."""
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    c = f.mean(axis=0)
    c /= np.linalg.norm(c)
    return float(np.mean(1.0 - f @ c))


def fig4_tsne(plan: Plan):
    from sklearn.manifold import TSNE

    seed = plan.cfg["run"]["seed"]
    seed_everything(seed)
    feats, img_path, encoder = tsne_features(plan, plan.cfg["report"]["tsne_samples"], seed)
    names = list(feats)
    stacked = np.concatenate([feats[k] for k in names])
    perplexity = float(min(30.0, (len(stacked) - 1) / 3.0))
    emb = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(stacked)
    fig, ax = plt.subplots(figsize=(5.4, 4.6))
    start = 0
    for name in names:
        n = len(feats[name])
        ax.scatter(emb[start:start + n, 0], emb[start:start + n, 1], s=6, alpha=0.7,
                   label=f"{name}: dispersion {dispersion(feats[name]):.4f}")
        start += n
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    enc = f"untrained {plan.cfg['encoder']['name']} encoder" if encoder.untrained else encoder.description
    ax.set_title(f"{img_path.name}: {len(stacked) // len(names)} samples per condition ({enc})", fontsize=9)
    ax.legend(loc="best", markerscale=2)
    note = "dispersion: mean cosine distance to the centroid (feature space)"
    if encoder.regions_inert:
        # zero alpha weights (no Alpha-CLIP checkpoint) reproduce CLIP exactly: masks cannot move the features
        note += "\nalpha weights are zero (no Alpha-CLIP checkpoint): region masks leave the features unchanged"
    ax.text(1.0, -0.16, note, transform=ax.transAxes, ha="right", va="top", fontsize=8)
    return fig


BUILDERS = {"fig1_bars": fig1_bars, "fig4_tsne": fig4_tsne, "fig8_visuals": fig8_visuals, "curves": curves,
            "paired": paired}


def build_parser() -> argparse.ArgumentParser:
    p = report_parser("ioda figures", __doc__)
    p.add_argument("figure", choices=FIGURES)
    p.add_argument("--out-dir", help="default: <results_dir>/figures")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = setup_logging(args.log)
    plan = Plan(load_config(args.config))
    fig = BUILDERS[args.figure](plan)
    mark_figure(plan.cfg, fig)
    paths = save_figure(fig, Path(args.out_dir) if args.out_dir else plan.figures_dir(), args.figure)
    log.info("wrote %s", ", ".join(map(str, paths)))
    return 0
