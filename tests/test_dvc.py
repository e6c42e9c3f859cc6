"""DVC view of the pipeline: dvc.yaml is consistent with the params files and the tree, and in a temporary
git repository (made from the shared end-to-end run) changing adapt.steps reruns adaptation onward only."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, IODA_PROGRESS="0", PYTHONDONTWRITEBYTECODE="1")

GIT = ["git", "-c", "user.name=ioda-test", "-c", "user.email=ioda-test@example.invalid", "-c", "init.defaultBranch=main",
       "-c", "commit.gpgsign=false"]


def dvc_stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _has_key(cfg: dict, dotted: str) -> bool:
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize("params_file", ["params.yaml", ".test/config.yaml"])
def test_every_dvc_param_is_spelled_out_in_the_params_file(params_file):
    """DVC reads params.yaml literally (no schema defaults): every key a stage lists must be there."""
    cfg = yaml.safe_load((ROOT / params_file).read_text())
    for name, stage in dvc_stages().items():
        for key in stage.get("params", []):
            assert _has_key(cfg, key), f"dvc.yaml stage {name}: param {key!r} missing from {params_file}"


def test_stages_call_snakemake_targets_and_keep_their_outputs():
    stages = dvc_stages()
    assert list(stages) == ["data", "pretrain", "adapt", "evaluate", "report"]
    snakefile = (ROOT / "Snakefile").read_text()
    outs_of = {}
    for name, stage in stages.items():
        target = stage["cmd"].split()[-1]
        assert stage["cmd"].startswith("snakemake --profile workflow/profiles/default ")
        assert f"rule {target}:" in snakefile, f"stage {name}: no Snakemake rule {target!r}"
        for out in stage["outs"]:
            (path, opts), = out.items()
            assert opts.get("persist") is True, f"stage {name}: {path} must persist (Snakemake reuses it)"
            outs_of[path] = name
        for dep in stage["deps"]:
            assert dep in outs_of or (ROOT / dep).exists(), f"stage {name}: dependency {dep} does not exist"
    # params: adaptation settings feed the adapt stage only, not data or pre-training
    assert "adapt" in stages["adapt"]["params"]
    assert not any(p.startswith("adapt") for s in ("data", "pretrain") for p in stages[s]["params"])
    report = stages["report"]
    assert report["metrics"] == [{"results/metrics/metrics.json": {"cache": False}}]
    assert "results/metrics/curves.csv" in report["plots"][0]


def run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


@pytest.mark.slow
def test_dvc_exp_run_reruns_only_adaptation_onward(e2e, tmp_path):  # e2e: the shared end-to-end run (conftest.py)
    repo = tmp_path / "repo"
    shutil.copytree(e2e, repo, symlinks=True)  # keeps mtimes and .snakemake/ metadata
    (repo / ".gitignore").write_text("__pycache__/\n/logs/\n/.snakemake/\n")
    dvc = [str(Path(os.sys.executable).parent / "dvc")]
    run(GIT + ["init", "-q"], repo)
    run(dvc + ["init", "-q"], repo)
    run(dvc + ["config", "core.analytics", "false"], repo)
    # Record the finished run as DVC's baseline (as if `dvc repro` had produced it), and commit it.
    run(dvc + ["commit", "-f", "-q"], repo)
    assert "up to date" in run(dvc + ["status"], repo).stdout
    run(GIT + ["add", "-A"], repo)
    run(GIT + ["commit", "-q", "-m", "baseline"], repo)

    watched = {
        "masks": repo / "results" / "masks" / "demo_canon" / "img0.npz",
        "pretrain": repo / "results" / "pretrain" / "safmn_tiny" / "demo_source.safetensors",
        "data": repo / "data" / "demo_canon" / "manifest.json",
        "finetune": repo / "results" / "adapt" / "safmn_tiny" / "canon" / "finetune" / "all" / "model.safetensors",
        "ioda": repo / "results" / "adapt" / "safmn_tiny" / "canon" / "ioda" / "img0" / "model.safetensors",
        "summary": repo / "results" / "summary.md",
    }
    before = {k: p.stat().st_mtime_ns for k, p in watched.items()}

    status = run(dvc + ["status"], repo)
    out = run(dvc + ["exp", "run", "-S", "adapt.steps=5"], repo).stdout
    assert "up to date" in status.stdout
    assert "Stage 'data' didn't change, skipping" in out
    assert "Stage 'pretrain' didn't change, skipping" in out
    for stage in ("adapt", "evaluate", "report"):
        assert f"Running stage '{stage}'" in out
    after = {k: p.stat().st_mtime_ns for k, p in watched.items()}
    for k in ("masks", "pretrain", "data", "finetune"):  # upstream, or not using adapt.steps: untouched
        assert after[k] == before[k], f"{k} was redone"
    for k in ("ioda", "summary"):
        assert after[k] > before[k], f"{k} was not redone"
    assert yaml.safe_load((repo / "params.yaml").read_text())["adapt"]["steps"] == 5

    diff = run(dvc + ["metrics", "diff"], repo).stdout
    assert "canon.safmn_tiny.ioda.psnr" in diff
    assert "up to date" in run(dvc + ["status"], repo).stdout
