"""The effect study's verdict, computed from its results by the criteria README states before the study ran.

A Canon cell is a credible gain when, at the validated step (chosen on Nikon's curves): the mean paired gain is
at least +0.10 dB, both the bootstrap and the Student-t 95% intervals are above 0, at least 4 of the 5 images
gain, and it is at least 0.05 dB above the untrained-encoder control. |mean| below 0.05 dB is noise; above 1 dB:
check colour and brightness shifts first. Cells without a validated step (the supervised baselines) are judged at
their final step.

    python benchmarks/effect_verdict.py --results results/effect --task canon --backbone craft --control ioda_untrained
Writes <results>/verdict.json and <results>/verdict.md.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from ioda.report.stats import RESOLUTION_DB

GAIN_DB, NOISE_DB, ABOVE_CONTROL_DB, SUSPECT_DB, MIN_POSITIVE = 0.10, 0.05, 0.05, 1.0, 4


def _stat(row: pd.Series, validated: bool) -> dict:
    p = "validated_" if validated else ""
    d = "validated_diff_mean" if validated else "diff_psnr_mean"
    return {"statistic": "validated step" if validated else "final step", "diff": row[d],
            "boot": (row[f"{p}diff_ci_low"], row[f"{p}diff_ci_high"]),
            "t": (row[f"{p}diff_t_low"], row[f"{p}diff_t_high"]), "p": row[f"{p}sign_flip_p"]}


def judge(cells: pd.DataFrame, runs: pd.DataFrame, task: str, backbone: str, control: str) -> list[dict]:
    cells = cells[(cells.task == task) & (cells.backbone == backbone)]
    runs = runs[(runs.task == task) & (runs.backbone == backbone)]
    source = float(cells[cells.variant == "baseline"].psnr_mean.iloc[0])
    out = []
    control_diff = math.nan
    for _, row in cells.iterrows():
        if row.variant == "baseline":
            continue
        validated = row.get("validated_n", 0) > 0 and math.isfinite(row.get("validated_diff_mean", math.nan))
        s = _stat(row, validated)
        per_run = runs[runs.variant == row.variant]
        psnr = per_run["validated_psnr"] if validated else per_run["psnr"]
        positive = int((psnr - source > RESOLUTION_DB).sum())  # a gain beyond the evaluations' agreement
        entry = {"variant": row.variant, "n": int(row.n), **s, "positive": positive,
                 "validated_step": row.get("validated_step") if validated else None}
        if row.variant == control:
            control_diff = s["diff"]
        out.append(entry)
        if validated:  # the fixed step budget too, for reference; the verdict is the validated step's
            f = _stat(row, False)
            out.append({"variant": row.variant, "n": int(row.n), **f, "validated_step": None, "reference": True,
                        "positive": int((per_run["psnr"] - source > RESOLUTION_DB).sum())})
    for e in out:
        if e.get("reference"):
            e["verdict"] = "(final step, for reference)"
            continue
        lo_b, lo_t = e["boot"][0], e["t"][0]
        above = e["variant"] == control or not math.isfinite(control_diff) or e["diff"] - control_diff >= ABOVE_CONTROL_DB
        if e["n"] < 2:
            verdict = "one run: no interval, no verdict"
        elif abs(e["diff"]) > SUSPECT_DB:
            verdict = "above 1 dB: check colour and brightness shifts first"
        elif abs(e["diff"]) < NOISE_DB:
            verdict = "noise (|mean| < 0.05 dB)"
        elif (e["diff"] >= GAIN_DB and lo_b > 0 and lo_t > 0 and e["positive"] >= MIN_POSITIVE and above):
            verdict = "credible gain"
        elif e["diff"] < 0 and e["boot"][1] < 0 and e["t"][1] < 0:
            verdict = "credible loss"
        else:
            verdict = "no credible effect"
        e["above_control"] = bool(above)
        e["verdict"] = verdict
    return out


def markdown(rows: list[dict], task: str, source: float) -> str:
    lines = [f"Source model (CRAFT) on {task}: {source:.3f} dB.", "",
             "| cell | statistic | N | Δ dB | bootstrap 95% | t 95% | sign-flip p | images up | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in rows:
        f = lambda x: f"{x:+.3f}" if isinstance(x, float) and math.isfinite(x) else "-"  # noqa: E731
        step = f" ({e['validated_step']:.0f})" if e["validated_step"] is not None else ""
        lines.append(f"| {e['variant']} | {e['statistic']}{step} | {e['n']} | {f(e['diff'])} | "
                     f"[{f(e['boot'][0])}, {f(e['boot'][1])}] | [{f(e['t'][0])}, {f(e['t'][1])}] | "
                     f"{e['p']:.3g} | {e['positive']}/{e['n']} | {e['verdict']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results/effect")
    ap.add_argument("--task", default="canon")
    ap.add_argument("--backbone", default="craft")
    ap.add_argument("--control", default="ioda_untrained")
    args = ap.parse_args(argv)
    res = Path(args.results)
    cells = pd.read_csv(res / "metrics" / "aggregate.csv")
    runs = pd.read_csv(res / "metrics" / "runs.csv")
    rows = judge(cells, runs, args.task, args.backbone, args.control)
    source = float(cells[(cells.task == args.task) & (cells.backbone == args.backbone)
                         & (cells.variant == "baseline")].psnr_mean.iloc[0])
    clean = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in r.items()} for r in rows]
    (res / "verdict.json").write_text(json.dumps({"task": args.task, "source_psnr": source, "cells": clean},
                                                 indent=2, default=float) + "\n")
    text = markdown(rows, args.task, source)
    (res / "verdict.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
