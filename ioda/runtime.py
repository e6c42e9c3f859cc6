"""Run-time plumbing shared by every command: seeds, device choice, per-step log files."""

from __future__ import annotations

import logging
import os
import random
import sys
from pathlib import Path

import numpy as np
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from ioda.errors import IodaError

LOG = logging.getLogger("ioda")


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator for code that takes one explicitly."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise IodaError(f"device {name!r} requested but CUDA is not available (use 'cpu' or 'auto')")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise IodaError(f"device {name!r} requested but MPS (Apple GPU) is not available (use 'cpu' or 'auto')")
    try:
        return torch.device(name)
    except RuntimeError:
        raise IodaError(f"device: {name!r} is not a device (expected auto, cpu, cuda, cuda:N or mps)") from None


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> logging.Logger:
    """Log to stderr and, if given, to `log_file` (one file per pipeline step)."""
    LOG.setLevel(level)
    for h in list(LOG.handlers):
        LOG.removeHandler(h)
        h.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(fmt)
    LOG.addHandler(stream)
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, mode="a")
        fh.setFormatter(fmt)
        LOG.addHandler(fh)
    LOG.propagate = False
    return LOG


def progress_enabled() -> bool:
    """tqdm bars only on a terminal or when forced (IODA_PROGRESS=1); log files stay readable."""
    flag = os.environ.get("IODA_PROGRESS")
    return flag == "1" if flag is not None else sys.stderr.isatty()
