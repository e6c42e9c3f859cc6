"""Fixtures shared by several test modules (so test modules never import each other).

`e2e`: one real run of the CI config (.test/config.yaml) in a fresh copy of the project (a git repository), started, interrupted
(Ctrl-C) during adaptation, then resumed to completion, both with README's plain `snakemake --cores 2`; the expensive part of the suite (about a minute on
2 cores), so it runs once per session and test_workflow.py and test_dvc.py share it."""

from __future__ import annotations

import base64
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ioda.config import load_config
from ioda.plan import Plan, Run

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, IODA_PROGRESS="0", PYTHONDONTWRITEBYTECODE="1")


def _copy_project(src: Path, dst: Path) -> Path:
    """What a fresh clone of src holds, copied to dst (no data/, results/, caches)."""
    # benchmarks/pipeline.py owns "what a fresh clone holds"; load it by path (benchmarks/ is not a package).
    spec = importlib.util.spec_from_file_location("ioda_pipeline_benchmark", ROOT / "benchmarks" / "pipeline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.copy_project(src, dst)


# README's own command: resuming after an interruption must need nothing more (the workflow profile in
# profiles/default, which Snakemake applies by itself, sets rerun-incomplete)
README_COMMAND = [sys.executable, "-m", "snakemake", "--cores", "2"]


def incomplete_outputs(proj: Path) -> list[str]:
    """Outputs Snakemake has marked incomplete (its markers under .snakemake/incomplete) that exist on disk."""
    markers = proj / ".snakemake" / "incomplete"
    names = [base64.urlsafe_b64decode(m.name).decode() for m in markers.iterdir()] if markers.is_dir() else []
    return sorted(n for n in names if (proj / n).exists())


def interrupt_when(proj: Path, out_file: Path, ready, cmd=README_COMMAND, timeout: float = 300) -> int:
    """Start `cmd` in proj, press Ctrl-C (SIGINT to its process group) once ready() is true; its exit status."""
    with open(out_file, "w") as out:
        proc = subprocess.Popen(cmd, cwd=proj, env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + timeout
            while time.time() < deadline and proc.poll() is None and not ready():
                time.sleep(0.1)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
            return proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _run_interrupted(proj: Path, out_file: Path) -> dict:
    """Start the workflow, press Ctrl-C once the first adaptation job runs."""
    adapt_logs = proj / "logs" / "adapt"
    started: list[Path] = []

    def adapting() -> bool:
        if not started and adapt_logs.is_dir():
            started.extend(sorted(adapt_logs.rglob("*.log")))
            if started:
                time.sleep(1.0)  # inside `ioda adapt` by now
        return bool(started)

    rc = interrupt_when(proj, out_file, adapting)
    # one log per backbone/task/variant cell; the cell's job adapts all its runs
    plan = Plan(load_config(proj / "params.yaml"))
    cells = [p.relative_to(adapt_logs).with_suffix("").parts for p in started]
    run_dirs = [proj / plan.adapt_dir(Run(task, backbone, variant, r))
                for backbone, task, variant in cells for r in plan.run_ids(task, variant)]
    return {"rc": rc, "interrupted_runs": run_dirs,
            "left_models": [d for d in run_dirs if (d / "model.safetensors").exists()],
            "summary_after_interrupt": (proj / "results" / "summary.md").exists()}


@pytest.fixture(scope="session")
def e2e_run(tmp_path_factory) -> dict:
    """{dir, proc, seconds, interrupt}: the shared end-to-end run (see the module docstring)."""
    base = tmp_path_factory.mktemp("e2e")
    proj = base / "ioda"
    _copy_project(ROOT, proj)
    shutil.copy(proj / ".test" / "config.yaml", proj / "params.yaml")
    (proj / ".dvc").mkdir()
    shutil.copy(ROOT / ".dvc" / "config", proj / ".dvc" / "config")  # .dvc/config is tracked; its cache is not
    # a fresh clone is a git repository: the workflow then records its run in DVC (dvc commit) as README says
    git = ["git", "-c", "user.name=ioda-test", "-c", "user.email=ioda-test@example.invalid", "-c", "commit.gpgsign=false"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "fresh clone, CI config as params.yaml"]):
        subprocess.run(git + cmd, cwd=proj, check=True, capture_output=True)
    start = time.perf_counter()
    interrupt = _run_interrupted(proj, base / "interrupted.out")
    proc = subprocess.run(README_COMMAND, cwd=proj, env=ENV, capture_output=True, text=True, timeout=600)
    return {"dir": proj, "proc": proc, "seconds": time.perf_counter() - start, "interrupt": interrupt}


@pytest.fixture(scope="session")
def copy_project():
    """_copy_project(src, dst) for tests that need a project of their own."""
    return _copy_project


@pytest.fixture(scope="session")
def e2e(e2e_run) -> Path:
    """The finished end-to-end project folder (fails here, with Snakemake's stderr, if the run failed)."""
    assert e2e_run["proc"].returncode == 0, e2e_run["proc"].stderr[-3000:]
    return e2e_run["dir"]


@pytest.fixture(scope="session")
def e2e_interrupt(e2e_run, e2e) -> dict:
    """What the interrupted first attempt of the end-to-end run left behind (the resumed run succeeded)."""
    return e2e_run["interrupt"]


@pytest.fixture(scope="session")
def ctrl_c():
    """(interrupt_when, incomplete_outputs, README_COMMAND) for tests that interrupt a run of their own."""
    return interrupt_when, incomplete_outputs, README_COMMAND
