"""The SLURM profile, live: a single-node cluster (tests/slurm_cluster.py) runs the CI config through
`workflow/profiles/slurm` with snakemake-executor-plugin-slurm. Every job goes through sbatch and is accounted
for by sacct, the outputs equal the local run's (the shared end-to-end run), and a rerun has nothing to do.

Needs root and Debian's slurmctld, slurmd, slurmdbd, munge and mariadb-server (`.ci/run` installs them and sets
IODA_REQUIRE_SLURM=1, which turns the skip into a failure)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from slurm_cluster import SYSTEM_CONF, ClusterError, LocalSlurm, foreign_system_conf, missing_programs

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, IODA_PROGRESS="0", PYTHONDONTWRITEBYTECODE="1")


def planned_jobs(output: str) -> dict[str, int]:
    """The 'Job stats' table Snakemake prints when it starts -> {rule: count}."""
    m = re.search(r"Job stats:\n.*?\n-+ +-+\n(.*?)\ntotal", output, re.S)
    assert m, output[-2000:]
    return {name: int(n) for name, n in (line.split() for line in m.group(1).strip().splitlines())}

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _why_not() -> str | None:
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')"
    missing = missing_programs()
    if missing:
        return f"SLURM/munge/MariaDB programs missing: {', '.join(missing)} (apt-get install slurmctld slurmd " \
               "slurmdbd munge mariadb-server)"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs"
    if foreign_system_conf():
        return f"{SYSTEM_CONF} exists: this machine has its own SLURM configuration, which the test would shadow"
    return None


@pytest.fixture
def cluster(tmp_path_factory):
    reason = _why_not()
    if reason:
        if os.environ.get("IODA_REQUIRE_SLURM") == "1":
            pytest.fail(f"IODA_REQUIRE_SLURM=1 but the cluster cannot be brought up: {reason}")
        pytest.skip(reason)
    c = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        with c:
            yield c
    except ClusterError as err:  # the message carries the daemons' log tails
        pytest.fail(f"local SLURM cluster: {err}")
    assert not any(c.alive().values()), f"daemons still running: {c.alive()}"
    assert not SYSTEM_CONF.is_symlink(), f"{SYSTEM_CONF} left behind"
    for name, proc in c.procs.items():
        with pytest.raises(ProcessLookupError):  # reaped: the pid is gone, not a zombie
            os.kill(proc.pid, 0)


def _point_profile_at(proj: Path, cluster: LocalSlurm) -> None:
    """What a user does (workflow/README.md): fill in partition and account in the SLURM profile."""
    path = proj / "workflow" / "profiles" / "slurm" / "config.yaml"
    prof = yaml.safe_load(path.read_text())
    prof["default-resources"].update(slurm_partition=cluster.partition, slurm_account=cluster.account)
    path.write_text(yaml.safe_dump(prof, sort_keys=False))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _comparable_files(run: Path) -> dict[str, str]:
    """Files a rerun of the same config must reproduce byte for byte (timings and logs apart)."""
    globs = ["data/**/*.png", "data/**/manifest.json", "results/pretrain/**/*.safetensors",
             "results/masks/**/*.npz", "results/adapt/**/model.safetensors", "results/adapt/**/train_log.csv",
             "results/adapt/**/curve.csv", "results/eval/**/per_image.csv", "results/tables/*.csv"]
    return {str(p.relative_to(run)): _digest(p) for g in globs for p in sorted(run.glob(g))}


def test_ci_config_runs_through_the_slurm_profile(cluster, e2e, tmp_path, copy_project):  # e2e: the local run (conftest.py)
    proj = copy_project(ROOT, tmp_path / "ioda")
    shutil.copy(proj / ".test" / "config.yaml", proj / "params.yaml")
    _point_profile_at(proj, cluster)
    env = dict(ENV, **{k: v for k, v in cluster.env.items() if k.startswith("SLURM")})
    # Poll job states every few seconds instead of the plugin's 40 s default (its only test-specific setting).
    cmd = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/slurm",
           "--slurm-init-seconds-before-status-checks", "2"]
    proc = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{out[-4000:]}\n{cluster.log_tails()}"

    # every job went through sbatch, and SLURM's accounting saw each one complete
    planned = planned_jobs(out)
    n_jobs = sum(n for rule, n in planned.items() if rule != "all")
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert n_jobs > 10 and len(submitted) == n_jobs, out[-3000:]
    acct = cluster.run(["sacct", "-X", "-n", "-P", "-a", "-o", "JobID,State,Account,Partition", "-S", "now-1days"])
    rows = {line.split("|")[0]: line.split("|")[1:] for line in acct.stdout.split()}
    for jobid in submitted:
        assert rows[jobid] == ["COMPLETED", cluster.account, cluster.partition], (jobid, rows.get(jobid))

    # same outputs as the local run of the same config
    ours, local = _comparable_files(proj), _comparable_files(e2e)
    assert len(local) > 20 and ours.keys() == local.keys()
    assert [k for k in ours if ours[k] != local[k]] == []
    cells = ["task", "backbone", "variant", "n", "psnr_mean", "ssim_mean", "oracle_psnr_mean"]
    pd.testing.assert_frame_equal(pd.read_csv(proj / "results/metrics/aggregate.csv")[cells],
                                  pd.read_csv(e2e / "results/metrics/aggregate.csv")[cells])

    # a rerun (still through the profile) has nothing to do
    again = subprocess.run(cmd + ["-n"], cwd=proj, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stderr[-2000:]
