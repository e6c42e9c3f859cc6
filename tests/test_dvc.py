"""DVC view of the pipeline. Static: dvc.yaml agrees with the params files, the tree and the committed dvc.lock,
and no file is tracked by both git and DVC. Live, in a real `git clone` of this repository running the CI config:
`dvc repro` records the run and leaves `dvc status` clean; a DVC remote carries data/ and results/ to a second
fresh clone, where Snakemake then has nothing to do; changing adapt.steps reruns adaptation onward only."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
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


@pytest.mark.parametrize("params_file", ["params.yaml", ".test/config.yaml", "config/paper.yaml"])
def test_every_dvc_param_is_spelled_out_in_the_params_file(params_file):
    """DVC reads params.yaml literally (no schema defaults): every key a stage lists must be there."""
    cfg = yaml.safe_load((ROOT / params_file).read_text())
    for name, stage in dvc_stages().items():
        for key in stage.get("params", []):
            assert _has_key(cfg, key), f"dvc.yaml stage {name}: param {key!r} missing from {params_file}"


def test_stages_call_snakemake_targets_and_keep_their_outputs():
    stages = dvc_stages()
    assert list(stages) == ["data", "pretrain", "encoder", "adapt", "evaluate", "report"]
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
    # git-tracked metrics and plots persist too: DVC would delete them before the stage, and Snakemake, finding its
    # jobs done, would not write them again
    assert report["metrics"] == [{"results/metrics/metrics.json": {"cache": False, "persist": True}}]
    assert report["plots"][0]["results/metrics/curves.csv"]["persist"] is True


def test_dvc_lock_is_committed_and_matches_dvc_yaml():
    """dvc.lock (written by `dvc commit` after the demo run) has the stages, commands and outputs of dvc.yaml.
    Code hashes, dependency lists and param values are not compared: every code or params change makes the lock
    stale until the next demo run + `dvc commit`, which `dvc status` then reports (the real-clone test below
    checks that this cycle ends clean)."""
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    stages = dvc_stages()
    assert list(lock) == list(stages)
    for name, stage in stages.items():
        assert lock[name]["cmd"] == stage["cmd"], name
        outs = [next(iter(o)) for o in stage["outs"] + stage.get("metrics", []) + stage.get("plots", [])]
        assert sorted(o["path"] for o in lock[name]["outs"]) == sorted(outs), name
        assert sorted(lock[name]["params"]["params.yaml"]) == sorted(stage["params"]), name


def _git_tracked(path: str) -> list[str]:
    proc = subprocess.run(["git", "ls-files", "--", path], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_no_file_is_tracked_by_both_git_and_dvc():
    for name, stage in dvc_stages().items():
        for out in stage["outs"] + stage.get("metrics", []) + stage.get("plots", []):
            (path, opts), = out.items()
            tracked = _git_tracked(path)
            if opts.get("cache", True):  # in DVC's cache: git must not hold it
                assert tracked == [], f"stage {name}: {path} is a cached DVC output and tracked by git: {tracked}"
            else:  # cache: false: git holds it, so it must be committed (dvc metrics diff compares commits)
                assert tracked == [path], f"stage {name}: {path} has cache: false but is not tracked by git"


def run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=ENV_PATH, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


BIN = Path(sys.executable).parent
DVC = [str(BIN / "dvc")]
# dvc.yaml's commands call `snakemake`: the one of this environment
ENV_PATH = dict(ENV, PATH=f"{BIN}{os.pathsep}{ENV.get('PATH', '')}")
UP_TO_DATE = "Data and pipelines are up to date."


def real_clone(src: Path, dst: Path) -> Path:
    """`git clone` of src, with src's working tree (tracked and untracked, not ignored, files) committed on top,
    so that uncommitted changes are tested too. On a clean checkout (CI) this is exactly a fresh clone."""
    run(GIT + ["clone", "-q", str(src), str(dst)], src.parent)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=src,
                            capture_output=True, text=True, check=True).stdout
    for rel in filter(None, listed.split("\0")):
        source, target = src / rel, dst / rel
        if target.is_symlink() or target.exists():
            if target.is_dir() and not target.is_symlink():
                continue  # a submodule or nested repository: leave the clone's
            target.unlink()
        if source.is_symlink() or source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)
    run(GIT + ["add", "-A"], dst)
    run(GIT + ["commit", "-q", "--allow-empty", "-m", "working tree"], dst)
    return dst


@pytest.fixture(scope="module")
def repro_clone(e2e, tmp_path_factory):  # e2e: the shared end-to-end run (conftest.py)
    """A real clone running the CI config: the shared end-to-end run's outputs and Snakemake records are put in
    place (as after `snakemake --cores 2` there), then `dvc repro` runs every stage (params.yaml changed), each
    stage's Snakemake call finds its jobs done, and DVC hashes, caches and records everything."""
    repo = real_clone(ROOT, tmp_path_factory.mktemp("clone") / "ioda")
    shutil.copy(repo / ".test" / "config.yaml", repo / "params.yaml")
    for name in ("data", "results", ".snakemake"):
        shutil.copytree(e2e / name, repo / name, symlinks=True, dirs_exist_ok=True)  # copy2: keeps mtimes
    out = run(DVC + ["repro"], repo).stdout
    status = run(DVC + ["status"], repo).stdout
    changed = run(["git", "status", "--porcelain", "--untracked-files=all"], repo).stdout.splitlines()
    run(GIT + ["commit", "-q", "-am", "CI-config run"], repo)  # dvc.lock and the metrics, as a user would
    return {"repo": repo, "repro": out, "status": status, "changed": changed}


@pytest.mark.slow
def test_dvc_repro_in_a_real_clone_records_the_run(repro_clone):
    for stage in dvc_stages():
        assert f"Running stage '{stage}'" in repro_clone["repro"], repro_clone["repro"][-2000:]
    assert UP_TO_DATE in repro_clone["status"]
    # Every output is either git's (the metrics, changed by the run) or DVC's (git-ignored): nothing else shows.
    changed = repro_clone["changed"]
    assert sorted(line[3:] for line in changed) == sorted(
        ["dvc.lock", "params.yaml", "results/metrics/aggregate.csv", "results/metrics/curves.csv",
         "results/metrics/metrics.json", "results/metrics/runs.csv"]), changed
    assert all(line.startswith(" M") for line in changed), changed


def _digests(repo: Path, paths: list[str]) -> dict[str, str]:
    return {p: hashlib.sha256((repo / p).read_bytes()).hexdigest() for p in paths}


@pytest.mark.slow
def test_results_travel_through_a_dvc_remote_to_a_fresh_clone(repro_clone, tmp_path):
    """README "Share results": push data/ and results/, pull them in a fresh clone; nothing left to do there."""
    repo = repro_clone["repo"]
    store = tmp_path / "dvc-store"
    run(DVC + ["remote", "add", "-d", "store", str(store)], repo)
    run(GIT + ["commit", "-q", "-am", "DVC remote"], repo)
    pushed = run(DVC + ["push"], repo).stdout
    assert "pushed" in pushed and any(store.rglob("*")), pushed

    other = tmp_path / "other"
    run(GIT + ["clone", "-q", str(repo), str(other)], tmp_path)
    assert not (other / "data").exists() and not (other / "results" / "adapt").exists()
    run(DVC + ["pull"], other)
    run([sys.executable, "-m", "snakemake", "--touch", "--forceall", "--cores", "1"], other)
    dry = run([sys.executable, "-m", "snakemake", "-n"], other)
    assert "Nothing to be done" in dry.stdout + dry.stderr, (dry.stdout + dry.stderr)[-3000:]
    assert UP_TO_DATE in run(DVC + ["status"], other).stdout
    files = [str(p.relative_to(repo)) for d in ("data", "results") for p in sorted((repo / d).rglob("*"))
             if p.is_file()]
    assert len(files) > 100 and _digests(other, files) == _digests(repo, files)


@pytest.mark.slow
def test_dvc_exp_run_reruns_only_adaptation_onward(repro_clone, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(repro_clone["repo"], repo, symlinks=True)  # keeps mtimes, .snakemake/ and the DVC cache
    watched = {
        "masks": repo / "results" / "masks" / "demo_canon" / "img0.npz",
        "pretrain": repo / "results" / "pretrain" / "safmn_tiny" / "demo_source.safetensors",
        "data": repo / "data" / "demo_canon" / "manifest.json",
        "finetune": repo / "results" / "adapt" / "safmn_tiny" / "canon" / "finetune" / "all" / "model.safetensors",
        "ioda": repo / "results" / "adapt" / "safmn_tiny" / "canon" / "ioda" / "img0" / "model.safetensors",
        "summary": repo / "results" / "summary.md",
    }
    before = {k: p.stat().st_mtime_ns for k, p in watched.items()}

    status = run(DVC + ["status"], repo)
    out = run(DVC + ["exp", "run", "-S", "adapt.steps=5"], repo).stdout
    assert UP_TO_DATE in status.stdout
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

    diff = run(DVC + ["metrics", "diff"], repo).stdout
    assert "canon.safmn_tiny.ioda.psnr" in diff
    assert UP_TO_DATE in run(DVC + ["status"], repo).stdout


@pytest.mark.slow
def test_readme_sequence_dvc_exp_run_right_after_the_main_command_keeps_upstream_outputs(e2e, tmp_path):
    """README, on a fresh clone: `snakemake --cores 2`, then `dvc exp run -S adapt.steps=13`. The experiment
    reruns adaptation and what follows; data, pre-training and masks are neither deleted nor recomputed (on the
    paper's configuration they are days of pre-training). The shared end-to-end run is that fresh clone (a git
    repository of the tree, the CI config as params.yaml) after README's plain command; copied with its mtimes."""
    repo = tmp_path / "ioda"
    shutil.copytree(e2e, repo, symlinks=True)
    assert (repo / ".git").is_dir()
    upstream = {p: p.stat().st_mtime_ns for d in ("data", "results/pretrain", "results/masks")
                for p in sorted((repo / d).rglob("*")) if p.is_file()}
    ioda_model = repo / "results" / "adapt" / "safmn_tiny" / "canon" / "ioda" / "img0" / "model.safetensors"
    before = ioda_model.stat().st_mtime_ns
    assert UP_TO_DATE in run(DVC + ["status"], repo).stdout  # the plain run recorded itself in DVC
    out = run(DVC + ["exp", "run", "-S", "adapt.steps=13"], repo).stdout
    for stage in ("data", "pretrain"):
        assert f"Stage '{stage}' didn't change, skipping" in out, out[-3000:]
    assert "Running stage 'adapt'" in out, out[-3000:]
    assert len(upstream) > 20
    redone = [str(p.relative_to(repo)) for p, t in upstream.items() if not p.exists() or p.stat().st_mtime_ns != t]
    assert not redone, f"deleted or recomputed: {redone[:10]}"
    assert ioda_model.stat().st_mtime_ns > before
