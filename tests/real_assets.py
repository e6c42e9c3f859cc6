"""Where the tests get the real pinned files: the offline mirror (IODA_MIRROR, which .ci/run sets, or
../shared/assets/raw next to the checkout) or, without one, the network. With neither, the tests that need
them skip, saying so."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_MIRROR = ROOT.parent / "shared" / "assets" / "raw"


def find_mirror() -> Path | None:
    env = os.environ.get("IODA_MIRROR")
    if env and Path(env).is_dir():
        return Path(env)
    return SHARED_MIRROR if SHARED_MIRROR.is_dir() else None


def _network() -> bool:
    try:
        socket.create_connection(("raw.githubusercontent.com", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def real_env(tmp_path_factory):
    """{'mirror': Path | None, 'cache': Path, 'raw': Path}: a session-wide cache and raw folder, so each pinned
    file is fetched and verified once per test session."""
    mirror = find_mirror()
    if mirror is None and not _network():
        pytest.skip(f"real assets unavailable: IODA_MIRROR is not set (and {SHARED_MIRROR} does not exist) "
                    "and there is no network (raw.githubusercontent.com unreachable)")
    base = tmp_path_factory.mktemp("real")
    return {"mirror": mirror, "cache": base / "cache", "raw": base / "raw", "data": base / "data"}


@pytest.fixture
def real(real_env, monkeypatch):
    """real_env with IODA_MIRROR / IODA_CACHE set for this test."""
    if real_env["mirror"] is not None:
        monkeypatch.setenv("IODA_MIRROR", str(real_env["mirror"]))
    else:
        monkeypatch.delenv("IODA_MIRROR", raising=False)
    monkeypatch.setenv("IODA_CACHE", str(real_env["cache"]))
    return real_env


def prepared(real_env, name: str, spec: dict | None = None, tag: str = "") -> Path:
    """ioda prepare NAME into the session's data folder (once per name/tag); returns the dataset folder."""
    from ioda.data.prepare import prepare

    out = real_env["data"] / (name + tag)
    if not (out / "manifest.json").is_file():
        prepare(name, out, root=real_env["raw"], spec=spec)
    return out
