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
# globals torch's own checkpoints name (tensor rebuilds, storages, OrderedDict): not code of the file's making
_TORCH_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode")


def pickled_globals(path: str | os.PathLike) -> list[str]:
    """module.name of every global (callable or class) a plain pickle file names, in order. Read with
    pickletools, which only parses opcodes: nothing is imported or executed. Stops quietly where the stream ends
    or stops parsing (a zip checkpoint is no plain pickle: torch's unpickler names its globals itself)."""
    import pickletools

    names: list[str] = []
    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name in ("GLOBAL", "INST"):
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # noqa: BLE001 - truncated or not a pickle: what was parsed so far
        pass
    return names


def refusal(path: str | os.PathLike, err: BaseException) -> IodaError:
    """The IodaError for a file torch's weights-only unpickler rejected (or could not read)."""
    text = " ".join(str(err).split())
    m = _GLOBAL.search(text)
    # torch's unpickler stops at the first opcode it does not know (FRAME, DICT...) before it reaches a
    # non-torch pickle's globals, so those are read from the stream itself
    code = m.group(1) if m else next((g for g in pickled_globals(path) if not g.startswith(_TORCH_GLOBALS)), None)
    if code:
        return IodaError(f"refused: {path} contains code ({code}), not only tensors")
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
