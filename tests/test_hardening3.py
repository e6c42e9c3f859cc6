"""Hardening, third round: a crash that never ended, stand-ins that slipped through, and the newest commands.
Each test is one case a hostile new user tried; each ends in one clear line or a traceback and a non-zero
exit, never a hang."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ioda.errors import IodaError

ROOT = Path(__file__).resolve().parents[1]


def test_crash_after_a_held_warning_prints_its_traceback_and_ends():
    # a command that warns, then fails unexpectedly: the traceback and the warning, exit 1, promptly
    code = textwrap.dedent("""
        import sys, types, warnings
        from ioda import cli
        mod = types.ModuleType("ioda_fake_cmd")
        def main(argv):
            warnings.warn("held warning")
            raise RuntimeError("boom")
        mod.main = main
        sys.modules["ioda_fake_cmd"] = mod
        cli.COMMANDS["fake"] = ("ioda_fake_cmd", "a command that crashes")
        sys.exit(cli.main(["fake"]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert proc.returncode == 1
    assert "RuntimeError: boom" in proc.stderr and "held warning" in proc.stderr
    assert proc.stderr.count("held warning") == 1
