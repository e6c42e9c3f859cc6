"""`ioda report`: results/summary.md — what ran, on what, how long, the tables, links to the figures."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ioda.adapt.variants import VARIANTS
from ioda.config import load_config
from ioda.encoders import get_encoder_spec
from ioda.errors import IodaError
from ioda.files import read_json, write_text
from ioda.report.aggregate import STATISTICS
from ioda.report.figures import FIGURES
from ioda.report.stats import (BOOTSTRAP_RESAMPLES, CONFIDENCE, RESOLUTION_DB, SIGN_FLIP_EXACT_MAX,
                               SIGN_FLIP_RESAMPLES, shows_effect_both)
from ioda.report.tables import STAT_LABEL
from ioda.report.cli import report_parser
from ioda.plan import Plan
from ioda.runtime import setup_logging
from ioda.standins.guard import BANNER

FIGURE_CAPTIONS = {
    "fig1_bars": "Fig. 1 — PSNR of the source model vs + IODA per backbone",
    "fig4_tsne": "Fig. 4 — t-SNE of encoder features of one target image under three sampling schemes",
    "fig8_visuals": "Figs. 8-9 — visual comparison on a crop of the first test image",
    "curves": "PSNR vs adaptation step, with the final, validated and oracle steps marked",
    "paired": "Per target image: source model vs adapted PSNR (final, validated, oracle step), one line each",
}


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise IodaError(f"{path}: file not found (expected {what})")
    return pd.read_csv(path)


def what_is_real(cfg: dict, untrained: bool) -> list[str]:
    """One line each for data, backbones, encoder and masks: real, or a stand-in."""
    from ioda.data.registry import REGISTRY

    kinds = {d: REGISTRY[d].kind if d in REGISTRY else "unknown" for d in cfg["datasets"]}
    real = [d for d, k in kinds.items() if k in ("pinned", "download", "manual", "paired")]
    synth = [d for d, k in kinds.items() if k == "demo"]
    lines = [f"- Data: real photos / camera pairs: {', '.join(real) or 'none'}"
             + (f"; synthetic degradations of scikit-image photos: {', '.join(synth)}" if synth else "")]
    trained = [b for b, bb in cfg["backbones"].items() if bb.get("weights")]
    here = [b for b, bb in cfg["backbones"].items() if not bb.get("weights")]
    lines.append(f"- Backbones: trained weights: {', '.join(trained) or 'none'}"
                 + (f"; pre-trained here ({cfg['pretrain']['steps']} steps): {', '.join(here)}" if here else ""))
    enc = cfg["encoder"]
    lines.append("- Encoder: " + ("**untrained** (random weights): the adaptation direction is not meaningful"
                                  if untrained or (enc["name"] == "tiny" and not enc["weights"]) else
                                  f"`{enc['name']}` trained here ({get_encoder_spec(enc['name']).description})"
                                  if get_encoder_spec(enc["name"]).trained_here and not enc["weights"] else
                                  f"pretrained `{enc['name']}`" + (" with Alpha-CLIP weights" if enc["alpha_weights"] else "")))
    m = cfg["masks"]
    lines.append("- Instance masks: " + (f"SAM {m['sam_model']}" if m["source"] == "sam" else
                                         "superpixels (a stand-in for SAM instances, whose weights are not at hand)"))
    return lines


def _cell_name(r) -> str:
    return f"{r.task}/{r.backbone}/{r.variant}"


def effects(plan: Plan, cells: pd.DataFrame) -> list[str]:
    """In words, per statistic: how many of the tables' adapted cells show an effect, i.e. both the 95%
    bootstrap and the 95% Student-t interval of the paired difference to the source model exclude 0, and which."""
    shown = set(plan.table_cells())
    rows = [r for r in cells.itertuples(index=False) if (r.task, r.backbone, r.variant) in shown]
    lines = []
    for s in STATISTICS:
        if s.diff not in cells:
            continue
        if s.t_low not in cells:
            raise IodaError(f"aggregate.csv: no {s.t_low!r} column (written by an older `ioda aggregate`: rerun it)")
        verdict = {id(r): shows_effect_both(getattr(r, s.low), getattr(r, s.high), getattr(r, s.t_low),
                                            getattr(r, s.t_high)) for r in rows}
        rated = [r for r in rows if verdict[id(r)] is not None]
        if not rated:
            continue
        effect = [r for r in rated if verdict[id(r)]]
        gains = [r for r in effect if getattr(r, s.diff) > 0]
        losses = [r for r in effect if getattr(r, s.diff) < 0]
        unrated = len([r for r in rows if r.variant != "baseline" and np.isfinite(getattr(r, s.diff))]) - len(rated)
        line = (f"- {STAT_LABEL[s.name].capitalize()}: {len(gains) + len(losses)} of {len(rated)} adapted cells "
                f"show an effect (both the {CONFIDENCE:.0%} bootstrap and t intervals of the difference to the "
                f"source model exclude 0 by more than {RESOLUTION_DB} dB): "
                f"{len(gains)} gain{'s' if len(gains) != 1 else ''}, {len(losses)} loss{'es' if len(losses) != 1 else ''}; "
                f"the other {len(rated) - len(gains) - len(losses)} are within the spread between target images")
        line += f"; {unrated} with one run have no interval" if unrated else ""
        if s.name == "oracle":
            line += " (the oracle picks its step on target HR: optimistic by construction)"
        for label, group in (("gains", gains), ("losses", losses)):
            if group:
                line += f". {label.capitalize()}: " + ", ".join(
                    f"{_cell_name(r)} {getattr(r, s.diff):+.3f} dB [{getattr(r, s.low):+.3f}, {getattr(r, s.high):+.3f}]"
                    f", t [{getattr(r, s.t_low):+.3f}, {getattr(r, s.t_high):+.3f}], sign-flip p = {getattr(r, s.sign_p):.3g}"
                    for r in group)
        lines.append(line)
    if not lines:
        lines.append("- No cell has an interval (every adapted cell has one run).")
    ns = sorted({t["n_images"] for t in plan.tasks.values()})
    n_text = ns[0] if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    lines.append(f"- Intervals: percentile bootstrap over the N target images, {BOOTSTRAP_RESAMPLES} resamples, "
                 f"seed {plan.cfg['run']['seed']}, and paired Student-t (df = N - 1); sign-flip p-values exact over "
                 f"all 2^N sign patterns (N <= {SIGN_FLIP_EXACT_MAX}; above, {SIGN_FLIP_RESAMPLES} seeded random "
                 f"ones). With N = {n_text} target images per cell a small effect can stay undetected"
                 + (f"; at N = {ns[0]} the smallest two-sided sign-flip p is 1/{2 ** (ns[0] - 1)}"
                    if 1 <= ns[0] <= SIGN_FLIP_EXACT_MAX else "") + ".")
    return lines


def _split_notes(md: str) -> tuple[str, list[str]]:
    """A table's Markdown (ioda tables) as (title and rows, its note bullets)."""
    lines = md.rstrip().splitlines()
    last_row = max((i for i, ln in enumerate(lines) if ln.startswith("|")), default=len(lines) - 1)
    return "\n".join(lines[:last_row + 1]), [ln for ln in lines[last_row + 1:] if ln.startswith("- ")]


def render(plan: Plan, out: Path) -> str:
    cfg = plan.cfg
    runs = _read_csv(plan.metrics_dir() / "runs.csv", "runs.csv from `ioda aggregate`")
    configured = runs[[VARIANTS[v].encoder == "configured" for v in runs["variant"]]] if len(runs) else runs
    untrained = bool(configured["untrained_encoder"].astype(bool).any()) if len(configured) else False
    encoders = sorted({str(e) for e in configured.get("encoder", pd.Series(dtype=str)).dropna() if str(e)})
    controls = sorted({v for v in runs["variant"] if VARIANTS[v].encoder == "untrained"}) if len(runs) else []
    lines = [f"# IODA reproduction — {cfg['run']['name']}", ""]
    if cfg["run"]["standins"]:
        lines = [f"> **{BANNER}**", ""] + lines
    if not cfg["run"]["paper"] or untrained:
        lines += [
            "> **This is not the paper's experiment.** "
            + ("The encoder was **untrained** in these runs, so adaptation follows a meaningless "
               "direction: the numbers below test the pipeline end to end and are **not** the paper's numbers. "
               if untrained else "")
            + ("The configuration is not the paper's (see *What is real* below for its data, backbones and step "
               "budget); for the reproduction run `snakemake --configfile config/paper.yaml`."
               if not cfg["run"]["paper"] else ""),
            "",
        ]
    # What ran, on what.
    lines += ["## What ran", ""]
    lines.append(f"- Datasets: {', '.join(cfg['datasets'])}")
    for name, bb in cfg["backbones"].items():
        how = f"official weights `{bb['weights']}`" if bb.get("weights") else "pre-trained here"
        lines.append(f"- Backbone `{name}`: " + (f"preset {bb['preset']}, {how}" if bb.get("preset") else
                                                 f"trained weights `{bb['weights']}` used as they are (no pre-training)"))
    for name, t in plan.tasks.items():
        lines.append(f"- Task `{name}`: {t['source']} → {t['target']}, N = {t['n_images']} target images "
                     f"(first {t['n_images']} of `{t['pool_split']}`, sorted), test split `{t['test_split']}`")
    a, enc = cfg["adapt"], cfg["encoder"]
    from ioda.protocol import get_protocol

    proto = get_protocol(a["protocol"])
    from ioda.report.tables import PROTOCOL_TEXT

    lines.append(f"- Protocol: `{proto.name}`, {PROTOCOL_TEXT[proto.name]} (docs/method.md lists every item)")
    lines.append(f"- Adaptation: {a['steps']} steps, batch {a['batch_size']}, LR patch {a['lr_patch']}, Adam lr {a['lr']}, "
                 f"betas {tuple(a['betas'])}, loss `{a['loss'] or proto.loss}`, CLIP input "
                 f"`{a['clip_input'] or proto.clip_input}`, resize antialias {a['clip_antialias']}; fixed step budget, "
                 "the final model is the one saved and scored in the PSNR (final step) columns")
    if a["eval_every"]:
        lines.append(f"- Evaluation along the way: the target test set every {a['eval_every']} steps, step 0 included; "
                     "the tables' PSNR (best step, oracle) is picked on target HR, the authors' statistic")
    lines.append(f"- Encoder: `{enc['name']}`" + (f", weights `{enc['weights']}`" if enc["weights"] else "")
                 + (f", Alpha-CLIP `{enc['alpha_weights']}`" if enc["alpha_weights"] else "")
                 + (" — **untrained**" if untrained else ""))
    lines += [f"  - used: {e}" for e in encoders]
    card_path = plan.results / "encoder" / "card.json"
    if card_path.is_file():
        training = read_json(card_path).get("training") or {}
        probes = training.get("probes") or {}
        if training:
            lines.append(f"  - trained here (`encoder/card.json`): {training.get('steps')} steps on "
                         f"{', '.join(training.get('datasets', []))} in {training.get('seconds')} s; held-out probes: "
                         f"kNN {probes.get('knn_acc', float('nan')):.3f} (chance {probes.get('knn_chance', float('nan')):.3f}), "
                         f"splice {probes.get('splice_acc', float('nan')):.3f}, blur rank "
                         f"{probes.get('blur_rank_corr', float('nan')):.2f}, noise rank "
                         f"{probes.get('noise_rank_corr', float('nan')):.2f}")
    if controls:
        lines.append(f"  - control cell(s) {', '.join(f'`{v}`' for v in controls)}: the same architecture "
                     "UNTRAINED (seeded random weights), by design")
    lines.append(f"- Masks: `{cfg['masks']['source']}`" + (f" ({cfg['masks']['sam_model']})" if cfg["masks"]["source"] == "sam" else ""))
    lines.append(f"- Runs: {len(runs)} evaluations in {runs.groupby(['task', 'backbone', 'variant']).ngroups} cells; "
                 f"seed {cfg['run']['seed']}")
    lines += ["", "## What is real", ""] + what_is_real(cfg, untrained)
    # How long.
    secs = runs["seconds"].dropna() if "seconds" in runs else pd.Series(dtype=float)
    lines += ["", "## How long", ""]
    if len(secs):
        hw = sorted({h for h in runs["hardware"].dropna().astype(str) if h})
        lines.append(f"- Adaptation: {secs.sum() / 60:.2f} min in total over {len(secs)} runs "
                     f"(mean {secs.mean():.1f} s, max {secs.max():.1f} s per run) on {', '.join(hw) or 'unknown hardware'}")
        ev = runs["eval_seconds"].dropna() if "eval_seconds" in runs else pd.Series(dtype=float)
        if len(ev) and (runs.get("evaluations", pd.Series(dtype=float)).fillna(0) > 0).any():
            lines.append(f"- Evaluations during adaptation (not in the adaptation time): {ev.sum() / 60:.2f} min in "
                         f"total, {ev.sum() / max(secs.sum(), 1e-9):.2f}x the adaptation time")
    bench = Path("logs/benchmarks")
    if bench.is_dir():
        total = 0.0
        for tsv in bench.rglob("*.tsv"):
            try:
                total += float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])
            except Exception:  # a malformed benchmark file must not break the report
                continue
        lines.append(f"- Wall time of all benchmarked jobs (Snakemake `benchmark:` files, summed): {total / 60:.2f} min")
    lines += ["", "## Effects", ""] + effects(plan, _read_csv(plan.metrics_dir() / "aggregate.csv",
                                                              "aggregate.csv from `ioda aggregate`"))
    # Tables.
    lines += ["", "## Tables", ""]
    parts = {}
    for name in sorted(plan.tables):
        md = plan.tables_dir() / f"{name}.md"
        if not md.is_file():
            raise IodaError(f"{md}: file not found (expected the output of `ioda tables`)")
        parts[name] = _split_notes(md.read_text())
    # the notes every table carries are said once, after the tables; each table keeps its own
    shared = [n for n in next(iter(parts.values()))[1] if all(n in notes for _, notes in parts.values())]
    shared = shared if len(parts) > 1 else []
    rel = os.path.relpath(plan.tables_dir(), out.parent)
    for name, (body, notes) in parts.items():
        own = [n for n in notes if n not in shared]
        lines += [body, ""] + ([*own, ""] if own else []) + [f"({rel}/{name}.csv, .md, .tex)", ""]
    if shared:
        lines += ["Notes to every table above:", "", *shared, ""]
    # Figures.
    lines += ["## Figures", ""]
    for name in FIGURES:
        png = plan.figures_dir() / f"{name}.png"
        if png.is_file():
            rel = os.path.relpath(png, out.parent)
            lines.append(f"- [{FIGURE_CAPTIONS[name]}]({rel}) ([PDF]({rel[:-4]}.pdf))")
    lines.append("")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = report_parser("ioda report", __doc__)
    p.add_argument("--out", help="default: <results_dir>/summary.md")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = setup_logging(args.log)
    plan = Plan(load_config(args.config))
    out = Path(args.out) if args.out else plan.results / "summary.md"
    write_text(out, render(plan, out))
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
