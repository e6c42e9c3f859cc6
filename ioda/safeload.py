"""The one place pickled checkpoints are read: torch.load(weights_only=True), with refusals said plainly.

torch's own refusal message starts with advice to re-run with weights_only=False, which would execute the
file's code; we never give that advice. A file whose pickle names a callable (os.system, a class) is
refused as "contains code"; any other unreadable file as corrupt, in one line naming the file."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ioda.errors import IodaError

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def refusal(path: str | os.PathLike, err: BaseException) -> IodaError:
    """The IodaError for a file torch's weights-only unpickler rejected (or could not read)."""
    text = " ".join(str(err).split())
    m = _GLOBAL.search(text)
    if m:
        return IodaError(f"refused: {path} contains code ({m.group(1)}), not only tensors")
    if isinstance(err, pickle.UnpicklingError):
        reason = text.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in text else ""
        reason = reason.split(" Check the documentation", 1)[0].split(" Please ", 1)[0].strip()[:120]
        return IodaError(f"refused: {path} is not a plain-tensor checkpoint (corrupt, or pickled objects other "
                         f"than tensors{': ' + reason if reason else ''})")
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return IodaError(f"{path}: corrupt or unreadable checkpoint ({first[:200]})")


def torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """torch.load(path, weights_only=True); every failure becomes one IodaError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise IodaError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - every unreadable file is the same user error
        raise refusal(path, err) from None
