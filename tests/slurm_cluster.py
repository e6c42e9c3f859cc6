"""A throw-away single-node SLURM cluster for the live SLURM test, from Debian's packages (slurmctld, slurmd,
slurmdbd, munge, mariadb-server; `.ci/run` installs them).

Everything (configs, state, logs, sockets, the accounting database) lives in one temporary folder; the daemons
run in the foreground as children of this process and are stopped by their own pids. Clients (sbatch, squeue,
sacct, scontrol, sacctmgr) find the cluster through the SLURM_CONF variable of `LocalSlurm.env` and through
/etc/slurm/slurm.conf, a symbolic link made for the cluster's lifetime (and only where no such file exists):
the plugin's job step (snakemake-executor-plugin-slurm-jobstep) removes SLURM_* variables, SLURM_CONF included,
before its `srun`, so inside a job only the default location works, as on a real cluster.
slurmdbd + MariaDB are there because snakemake-executor-plugin-slurm asks `sacct` for job states by default,
as it does on a real cluster.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MARK = "# ioda test cluster\n"
DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")


def missing_programs() -> list[str]:
    return [p for p in DAEMONS if not shutil.which(p) and not Path("/usr/sbin", p).exists()]


def foreign_system_conf() -> bool:
    """A real SLURM configuration at the default place (not a link left by an earlier test cluster)."""
    if not (SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink()):
        return False
    try:
        return not SYSTEM_CONF.read_text().startswith(MARK)
    except OSError:  # a dangling link from an interrupted run
        return not SYSTEM_CONF.is_symlink()


def _which(prog: str) -> str:
    return shutil.which(prog) or str(Path("/usr/sbin", prog))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class ClusterError(RuntimeError):
    pass


class LocalSlurm:
    """`with LocalSlurm(tmp) as cluster:` brings the cluster up (or raises ClusterError with the log tails),
    and always stops what it started."""

    partition = "debug"
    account = "ioda"
    node = "ioda-node"

    def __init__(self, root: Path):
        self.root = Path(root)
        self.host = socket.gethostname().split(".")[0]
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.conf = self.root / "etc" / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self._linked = False
        self.ports = {k: _free_port() for k in ("ctld", "slurmd", "dbd", "mysql")}

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    def __enter__(self) -> "LocalSlurm":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        for d in ("etc", "munge", "db", "ctld", "spool", "log", "run"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
            os.chmod(self.root / d, 0o755 if d == "munge" else 0o700)  # munge: clients must reach the socket
        self._write_configs()
        if foreign_system_conf():
            raise ClusterError(f"{SYSTEM_CONF} exists (a real cluster's configuration?); not replacing it")
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.unlink(missing_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        self._linked = True
        self._start_munge()
        self._start_mariadb()
        self._spawn("slurmdbd", [_which("slurmdbd"), "-D"])
        self._wait_port("slurmdbd", self.ports["dbd"])
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i"])
        self._wait("slurmctld", lambda: self._ok(["scontrol", "ping"], "UP"))
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", self.node])
        self._wait("slurmd", lambda: self._ok(["sinfo", "-h", "-n", self.node, "-o", "%T"], "idle"))
        # An account with this user in it, as on a real cluster (the plugin validates slurm_account).
        user = getpass.getuser()
        self.run(["sacctmgr", "-i", "add", "account", self.account, "Description=ioda", "Organization=ioda"])
        self.run(["sacctmgr", "-i", "add", "user", user, f"Account={self.account}"])
        self._wait("slurmdbd", lambda: self._ok(["sacctmgr", "-n", "-P", "list", "assoc", f"user={user}",
                                                 "format=account"], self.account))

    def stop(self) -> None:
        """SIGTERM each daemon by its pid (newest first), SIGKILL what is still there after 20 s."""
        for name, proc in reversed(list(self.procs.items())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._linked and SYSTEM_CONF.is_symlink() and SYSTEM_CONF.resolve() == self.conf.resolve():
            SYSTEM_CONF.unlink()
            self._linked = False

    def alive(self) -> dict[str, bool]:
        return {name: proc.poll() is None for name, proc in self.procs.items()}

    # ---- helpers -----------------------------------------------------------------------------------------------
    def run(self, cmd: list[str], timeout: int = 60) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}\n{self.log_tails()}")
        return proc

    def _ok(self, cmd: list[str], expect: str) -> bool:
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=30)
        return proc.returncode == 0 and expect in proc.stdout

    def log_tails(self) -> str:
        return "\n".join(f"---- {name}: {path} (last lines)\n{_tail(path)}" for name, path in self.logs.items())

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = self.root / "log" / f"{name}.log"
        self.logs.setdefault(name, log)
        out = open(self.root / "log" / f"{name}.out", "w")
        self.logs.setdefault(f"{name} (stdout)", Path(out.name))
        # own session: a Ctrl-C of the test run does not reach the daemons first; stop() ends them in order
        self.procs[name] = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        out.close()

    def _wait(self, name: str, ready, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise ClusterError(f"{name} exited with {proc.returncode} while starting\n{self.log_tails()}")
            if ready():
                return
            time.sleep(0.5)
        raise ClusterError(f"{name} not ready after {timeout:.0f} s\n{self.log_tails()}")

    def _wait_port(self, name: str, port: int) -> None:
        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        self._wait(name, listening)

    def _start_munge(self) -> None:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.logs["munged"] = self.root / "log" / "munged.log"
        self._spawn("munged", [_which("munged"), "-F", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={key}", f"--pid-file={self.root / 'run' / 'munged.pid'}",
                               f"--seed-file={self.root / 'munge' / 'seed'}",
                               f"--log-file={self.logs['munged']}"])
        self._wait("munged", self.munge_socket.exists)

    def _start_mariadb(self) -> None:
        data = self.root / "db"
        common = ["--no-defaults", f"--datadir={data}", f"--user={getpass.getuser()}"]
        proc = subprocess.run([_which("mariadb-install-db"), *common, "--auth-root-authentication-method=normal",
                               "--skip-test-db"], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise ClusterError(f"mariadb-install-db failed: {proc.stdout[-1500:]}{proc.stderr[-1500:]}")
        init = self.root / "etc" / "init.sql"
        init.write_text("CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';\n"
                        "GRANT ALL ON *.* TO 'slurm'@'127.0.0.1';\n")
        self.logs["mariadbd"] = self.root / "log" / "mariadbd.log"
        self._spawn("mariadbd", [_which("mariadbd"), *common, f"--socket={self.root / 'run' / 'mysql.sock'}",
                                 f"--port={self.ports['mysql']}", "--bind-address=127.0.0.1", "--skip-name-resolve",
                                 f"--pid-file={self.root / 'run' / 'mariadbd.pid'}", f"--log-error={self.logs['mariadbd']}",
                                 f"--init-file={init}", "--innodb-buffer-pool-size=32M"])
        self._wait_port("mariadbd", self.ports["mysql"])

    def _write_configs(self) -> None:
        r, p, user = self.root, self.ports, getpass.getuser()
        auth = f"AuthType=auth/munge\nAuthInfo=socket={r / 'munge' / 'munge.socket'}\n"
        self.conf.write_text(
            f"{MARK}ClusterName=ioda-test\nSlurmctldHost={self.host}(127.0.0.1)\n"
            f"SlurmctldPort={p['ctld']}\nSlurmdPort={p['slurmd']}\n{auth}CredType=cred/munge\n"
            f"SlurmUser={user}\nSlurmdUser=root\n"
            f"StateSaveLocation={r / 'ctld'}\nSlurmdSpoolDir={r / 'spool'}\n"
            f"SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}\nSlurmdPidFile={r / 'run' / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}\nSlurmdLogFile={r / 'log' / 'slurmd.log'}\n"
            # no cgroups in a container without systemd
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n"
            "MpiDefault=none\nReturnToService=2\nSchedulerType=sched/backfill\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n"
            # keep finished jobs visible to squeue as well (the plugin's alternative to sacct)
            "MinJobAge=600\n"
            f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=127.0.0.1\n"
            f"AccountingStoragePort={p['dbd']}\nAccountingStoragePass={r / 'munge' / 'munge.socket'}\n"
            "JobCompType=jobcomp/none\nMailProg=/bin/true\n"
            # the rules ask for up to 8 GB; the node claims enough, whatever this machine has
            "SlurmdParameters=config_overrides\n"
            f"NodeName={self.node} NodeHostname={self.host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} "
            "RealMemory=64000 State=UNKNOWN\n"
            f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP\n"
        )
        dbd = self.conf.with_name("slurmdbd.conf")
        dbd.write_text(
            f"{auth}DbdHost={self.host}\nDbdAddr=127.0.0.1\nDbdPort={p['dbd']}\nSlurmUser={user}\n"
            f"PidFile={r / 'run' / 'slurmdbd.pid'}\nLogFile={r / 'log' / 'slurmdbd.log'}\n"
            f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={p['mysql']}\n"
            "StorageUser=slurm\nStoragePass=slurm\nStorageLoc=slurm_acct_db\n"
        )
        os.chmod(dbd, 0o600)  # slurmdbd refuses a readable config (it holds the database password)
