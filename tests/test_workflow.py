"""The Snakemake workflow: lint, dry runs of the three configs, and the end-to-end tests on the shared real run
of the CI config (.test/; fixture `e2e` in conftest.py)."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ioda.adapt.variants import VARIANTS
from ioda.config import load_config
from ioda.plan import Plan

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, IODA_PROGRESS="0", PYTHONDONTWRITEBYTECODE="1")


def snakemake(cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake (dry) run -> {rule: count}."""
    m = re.search(r"Job stats:\n.*?\n-+ +-+\n(.*?)\ntotal", output, re.S)
    if not m:
        return {}
    return {name: int(n) for name, n in (line.split() for line in m.group(1).strip().splitlines())}


def adapt_jobs(jobs: dict[str, int]) -> int:
    """Adaptation jobs: one per backbone x task x variant cell (rules adapt_<n>_images and adapt_finetune)."""
    return sum(n for rule, n in jobs.items() if rule.startswith("adapt"))


def eval_jobs(jobs: dict[str, int]) -> int:
    """Evaluation jobs: one per cell too (rules evaluate_<n>_images, evaluate_baseline, evaluate_finetune)."""
    return sum(n for rule, n in jobs.items() if rule.startswith("evaluate"))


def n_cells(runs) -> int:
    return len({(r.backbone, r.task, r.variant) for r in runs})


# (the shared end-to-end run, fixture `e2e`, lives in conftest.py)
def clone_run(src: Path, dst: Path) -> Path:
    """Copy a finished run, keeping modification times and Snakemake's metadata (.snakemake/)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


# ---- static checks ----------------------------------------------------------------------------------------------
def test_lint_reports_nothing():
    proc = snakemake(ROOT, "--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def test_snakefmt_reports_nothing():
    """The Snakefile and rules are formatted as snakefmt (settings: [tool.snakefmt] in pyproject.toml) wants."""
    proc = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "would be changed" not in proc.stdout + proc.stderr


def test_schema_symlink_is_the_package_schema():
    link = ROOT / "workflow" / "schemas" / "config.schema.yaml"
    assert link.is_symlink() and link.resolve() == (ROOT / "ioda" / "schemas" / "params.schema.yaml").resolve()


@pytest.mark.parametrize("configfile", [None, "config/paper.yaml", ".test/config.yaml", "config/realsr.yaml",
                                        "config/realsr_gpu.yaml"])
def test_dry_run_plans_exactly_the_configured_runs(configfile):
    # --forceall: plan every job, as on a fresh clone, even where this checkout already holds outputs (the demo's)
    args = ["-n", "-p", "--forceall"] + (["--configfile", configfile] if configfile else [])
    proc = snakemake(ROOT, *args)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    plan = Plan(load_config(configfile or "params.yaml"))
    jobs = job_counts(out)
    assert jobs["prepare"] == len(plan.cfg["datasets"])
    assert jobs.get("pretrain", 0) == sum(not plan.weights_only(b) for b, _ in plan.pretrained())
    assert jobs.get("fetch_weights", 0) == len({plan.registered_weights(b) for b, _ in plan.pretrained()
                                                if plan.weights_only(b)} - {None})
    assert jobs["masks"] == len(plan.masks_needed())
    # one job per cell, however many target images it has
    assert adapt_jobs(jobs) == n_cells(plan.adapt_runs()) <= len(plan.adapt_runs())
    assert eval_jobs(jobs) == n_cells(plan.runs()) <= len(plan.runs())


def test_paper_dry_run_uses_the_authors_settings():
    proc = snakemake(ROOT, "-n", "-p", "--configfile", "config/paper.yaml")
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]
    adapt = [line for line in out.splitlines() if "ioda adapt" in line and "--variant ioda" in line]
    # Table 4's seven tasks + HAT and SRFormer on Canon, and on Nikon (Canon's validation task): one job per cell ...
    assert len(adapt) == 7 + 2 + 2
    for line in adapt:
        assert "--index 0 1 2 3 4 " in line  # ... adapting its N = 5 target images
        settings = json.loads(shlex.split(line.split("--settings-json ", 1)[1])[0])
        assert settings["steps"] == 1500 and settings["batch_size"] == 2 and settings["lr_patch"] == 128
        assert settings["lr"] == 1e-05 and settings["betas"] == [0.0, 0.9919919678228579]
        assert settings["protocol"] == "authors" and settings["eval_every"] == 10
        assert "--encoder ViT-B-16-quickgelu --encoder-weights openai" in line
        assert "--alpha-weights weights/clip_b16_grit+mim_fultune_4xe.pth" in line
    assert "ioda pretrain --preset safmn_l" in out and "--weights weights/SAFMN_L_DF2K_x4.pth" in out
    # GTA5 and Cityscapes pre-train from their packed patch stores, each packed once
    assert re.search(r"ioda pretrain --preset safmn_l .*--store data/GTA5/train_store_x4 --workers 4", out)
    assert len(re.findall(r"ioda pack data/GTA5/train --scale 4 --out data/GTA5/train_store_x4", out)) == 1
    assert "--source sam --sam-model vit_h --device cuda --sam-checkpoint weights/sam_vit_h_4b8939.pth" in out
    assert "--points-per-side 32" in out  # masks.points_per_side: SAM's point grid, 32 x 32 as the paper


def test_realsr_dry_run_uses_the_real_networks_without_pretraining():
    """config/realsr.yaml: registered weights fetched (no pre-training stage), pinned real datasets, N = 3."""
    proc = snakemake(ROOT, "-n", "-p", "--configfile", "config/realsr.yaml")
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ioda pretrain" not in out
    for name in ("craft_x4", "ditn_real_x4"):
        assert f"ioda prepare {name} --out results/realsr/weights/{name}.pth" in out
    assert re.search(r"ioda prepare realsr_canon_crops .*--spec .*splits", out)
    assert "ioda prepare bsd100_urban100" in out and "ioda prepare realsr_nikon_crops" in out
    adapt = [line for line in out.splitlines() if "ioda adapt" in line]
    ioda_runs = [line for line in adapt if "--variant ioda" in line]
    # one job per cell: craft on Canon and Nikon, ditn on Canon and on Nikon (Canon's validation task) ...
    assert len(ioda_runs) == 4
    assert all("--index 0 1 2 --" in line for line in ioda_runs)  # ... adapting its 3 target images
    evaluated = [line for line in adapt if "--variant ioda" in line or "image_guided" in line]
    assert evaluated and all('"eval_every": 3' in line for line in evaluated)  # in the cell's --settings-json
    assert all("--source-data data/bsd100_urban100/train" in line for line in adapt)
    assert any("--model results/realsr/weights/craft_x4.pth" in line for line in ioda_runs)
    assert any("--model results/realsr/weights/ditn_real_x4.pth" in line for line in ioda_runs)
    assert re.search(r"ioda evaluate --model results/realsr/weights/craft_x4.pth --data data/realsr_nikon_crops/test", out)


def test_stack_runs_steps_each_direction_cells_images_together(tmp_path):
    """run.stack_runs: direction-loss cells with several images get --stack; baselines and the default do not."""
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg["run"]["stack_runs"] = True
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump(cfg))
    lines = {}
    for name, extra in (("default", []), ("stacked", ["--configfile", str(tmp_path / "stack.yaml")])):
        proc = snakemake(ROOT, "-n", "-p", "--forceall", *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines[name] = [line for line in proc.stdout.splitlines() if "python -m ioda adapt" in line]
    assert not any("--stack" in line for line in lines["default"])
    stacked = [line for line in lines["stacked"] if "--stack" in line]
    assert stacked and all("--index 0 1 2 " in line for line in stacked)
    for line in lines["stacked"]:
        variant = re.search(r"--variant (\w+)", line).group(1)
        assert ("--stack" in line) == (VARIANTS[variant].method == "direction"), line


def test_paper_run_fails_early_naming_the_manual_files(tmp_path, copy_project):
    """A real run of the paper config stops in its first jobs (dataset preparation) with instructions."""
    proj = copy_project(ROOT, tmp_path / "ioda")
    proc = snakemake(proj, "--configfile", "config/paper.yaml", "--cores", "1", "data/RealSR_Canon/manifest.json")
    assert proc.returncode != 0
    log = (proj / "logs" / "prepare" / "RealSR_Canon.log").read_text()
    assert "RealSR" in log and "raw" in log  # names what to place where (under run.raw_dir)
    assert not (proj / "data" / "RealSR_Canon" / "manifest.json").exists()


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c["adapt"].update(stpes=3), "stpes"),
        (lambda c: c["experiments"]["tables"]["table1"].update(tasks=["nope"]), "experiments.tables.table1.tasks"),
    ],
)
def test_malformed_config_stops_the_workflow_naming_the_key(tmp_path, edit, expected):
    cfg = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    edit(cfg)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = snakemake(ROOT, "-n", "--configfile", str(bad))
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr


# ---- the real run -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_full_run_writes_tables_figures_and_summary(e2e):
    plan = Plan(load_config(e2e / "params.yaml"))
    cells = pd.read_csv(e2e / "results" / "metrics" / "aggregate.csv")
    assert len(cells) == len(plan.cells())
    assert all(math.isfinite(v) and 0 < v < 100 for v in cells["psnr_mean"])
    assert all(0 < v <= 1 for v in cells["ssim_mean"])
    assert (cells.loc[cells.variant == "ioda", "n"] == plan.tasks["canon"]["n_images"]).all()
    # the curve cell has oracle numbers, kept in their own columns
    assert cells.loc[cells.variant == "ioda", "oracle_psnr_mean"].notna().all()
    for name in plan.tables:
        t = pd.read_csv(e2e / "results" / "tables" / f"{name}.csv")
        assert len(t) and t.select_dtypes("number").notna().any().any()
        assert (e2e / "results" / "tables" / f"{name}.tex").read_text().startswith(r"\begin{table}")
    # the paired differences to the source model, with their intervals (N = 2 target images)
    ioda = cells[cells.variant == "ioda"].iloc[0]
    assert math.isfinite(ioda.diff_psnr_mean) and ioda.diff_ci_low <= ioda.diff_psnr_mean <= ioda.diff_ci_high
    assert "## Effects" in (e2e / "results" / "summary.md").read_text()
    for fig in ("fig1_bars", "fig4_tsne", "fig8_visuals", "curves", "paired"):
        assert (e2e / "results" / "figures" / f"{fig}.png").stat().st_size > 1000
        assert (e2e / "results" / "figures" / f"{fig}.pdf").stat().st_size > 1000
    text = (e2e / "results" / "summary.md").read_text()
    assert "untrained" in text and "not** the paper's numbers" in text
    metrics = json.loads((e2e / "results" / "metrics" / "metrics.json").read_text())
    assert metrics["canon"]["safmn_tiny"]["ioda"]["n"] == plan.tasks["canon"]["n_images"]
    # every rule wrote its log, heavy rules their benchmark
    assert (e2e / "logs" / "adapt" / "safmn_tiny" / "canon" / "ioda.log").stat().st_size > 0
    assert list((e2e / "logs" / "benchmarks" / "adapt").rglob("*.tsv"))


@pytest.mark.slow
def test_rerun_does_nothing(e2e):
    proc = snakemake(e2e, "-n", "--profile", "workflow/profiles/default")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_report_html_builds(e2e, tmp_path):
    # written outside the shared run's results/, which other tests compare file by file (test_dvc)
    proc = snakemake(e2e, "--report", str(tmp_path / "report.html"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = (tmp_path / "report.html").read_text(errors="replace")
    assert len(html) > 10_000 and "fig1_bars.png" in html and "summary.md" in html
    # every report item is labelled: the workflow description, a category and a caption per kind of output
    assert "Not the paper's numbers" in html  # workflow/report/workflow.rst, rendered for a non-paper config
    for category in ("Summary", "Tables", "Metrics", "Figures"):
        assert f'"{category}"' in html, category
    for caption in ("the page to read first", "Table 5, across backbones", "One row per table cell",
                    "One row per evaluated run", "Fig. 1: PSNR of the source model", "Fig. 4: t-SNE",
                    "Figs. 8-9: a crop", "never picks the reported model"):
        assert caption in html, caption


@pytest.mark.slow
def test_changing_an_adapt_param_reruns_only_adaptation_onward(e2e, tmp_path):
    proj = clone_run(e2e, tmp_path / "ioda")
    cfg = yaml.safe_load((proj / "params.yaml").read_text())
    cfg["adapt"]["steps"] += 1
    (proj / "params.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(proj, "-n", "--profile", "workflow/profiles/default")
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = job_counts(proc.stdout + proc.stderr)
    plan = Plan(load_config(proj / "params.yaml"))
    uses_steps = [r for r in plan.adapt_runs() if VARIANTS[r.variant].steps_key == "steps"]
    assert adapt_jobs(jobs) == n_cells(uses_steps)
    assert eval_jobs(jobs) == n_cells(uses_steps)  # the baseline and fine-tune evaluations stay
    assert not {"prepare", "pretrain", "masks"} & set(jobs)
    assert {"aggregate", "tables", "summary"} <= set(jobs)
    assert "Params have changed since last execution" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_changing_the_encoder_reruns_the_guided_adaptations(e2e, tmp_path):
    # The encoder reaches `ioda adapt` through the variant-specific flags: they must be a tracked param too.
    proj = clone_run(e2e, tmp_path / "ioda")
    cfg = yaml.safe_load((proj / "params.yaml").read_text())
    cfg["encoder"]["alpha_init"] = "zero" if cfg["encoder"].get("alpha_init") == "random" else "random"
    (proj / "params.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(proj, "-n", "--profile", "workflow/profiles/default")
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = job_counts(proc.stdout + proc.stderr)
    plan = Plan(load_config(proj / "params.yaml"))
    assert adapt_jobs(jobs) == n_cells(plan.adapt_runs())
    assert not {"prepare", "pretrain", "masks"} & set(jobs)


@pytest.mark.slow
def test_changing_one_cells_setting_reruns_only_that_cell(e2e, tmp_path):
    proj = clone_run(e2e, tmp_path / "ioda")
    cfg = yaml.safe_load((proj / "params.yaml").read_text())
    cfg["adapt"]["finetune_steps"] += 1  # steers the fine-tune cell only
    (proj / "params.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(proj, "-n", "-p", "--profile", "workflow/profiles/default")
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = job_counts(proc.stdout + proc.stderr)
    assert adapt_jobs(jobs) == jobs["adapt_finetune"] == 1 and eval_jobs(jobs) == jobs["evaluate_finetune"] == 1
    assert "--variant finetune" in proc.stdout and "--variant ioda" not in proc.stdout


@pytest.mark.slow
def test_interrupted_run_resumes(e2e, e2e_interrupt):
    info = e2e_interrupt
    assert info["rc"] != 0 and info["interrupted_runs"], "the first run was not interrupted during adaptation"
    assert not info["summary_after_interrupt"]
    assert not info["left_models"]  # the interrupted jobs left no half-written model behind
    for d in info["interrupted_runs"]:  # ... and the resumed run redid them
        assert (d / "model.safetensors").is_file() and (d / "adapt.json").is_file()
    assert (e2e / "results" / "summary.md").is_file()


@pytest.mark.slow
def test_readme_command_resumes_a_run_interrupted_while_a_job_writes(tmp_path, copy_project, ctrl_c):
    """Ctrl-C while a job's output is on disk but not finished: Snakemake marks it incomplete. README's plain
    command, run again, must redo that job (not stop with IncompleteFilesException) and finish."""
    interrupt_when, incomplete_outputs, readme_command = ctrl_c
    proj = copy_project(ROOT, tmp_path / "ioda")
    shutil.copy(proj / ".test" / "config.yaml", proj / "params.yaml")
    rc = interrupt_when(proj, tmp_path / "first.out", lambda: bool(incomplete_outputs(proj)))
    left = incomplete_outputs(proj)
    assert rc != 0 and left, "the run was not interrupted while a job's output was on disk"
    proc = subprocess.run(readme_command, cwd=proj, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proj / "results" / "summary.md").is_file() and not incomplete_outputs(proj)
