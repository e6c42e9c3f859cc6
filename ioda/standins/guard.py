"""Stand-ins are never accepted silently: `ioda standins` records the SHA-256 of every file it writes in
<root>/standins/record.json, and a run that has not said `run.standins: true` refuses any input listed there.
Their datasets are also refused by the prepare step's image counts (a stand-in has a few images, the
registry expects the published numbers), exactly as an incomplete real dataset is."""

from __future__ import annotations

import os
from pathlib import Path

from ioda.errors import IodaError
from ioda.files import read_json, sha256_file

RECORD = "standins/record.json"
BANNER = ("STAND-IN INPUTS: synthetic images and random weights in the official layouts (run.standins: true); "
          "every number below means nothing.")


def banner_first(cfg: dict, text: str, sep: str = " ") -> str:
    """`text` with the stand-in banner in front when the config ran on stand-ins (run.standins)."""
    return f"{BANNER}{sep}{text}" if cfg["run"].get("standins") else text


def mark_figure(cfg: dict, fig) -> None:
    """A stand-in run's figure: the banner as the first line of its title."""
    if cfg["run"].get("standins"):
        old = fig.get_suptitle()
        fig.suptitle(BANNER.replace("; ", ";\n") + (f"\n{old}" if old else ""), fontsize=9, color="darkred",
                     y=1.0, va="bottom")  # above the axes titles (figures are saved with a tight bbox)


def record_path(root: str | os.PathLike) -> Path:
    return Path(root) / RECORD


def find_record(path: str | os.PathLike) -> Path | None:
    """The stand-in record of the folder tree `path` lies in (searched upwards), if any."""
    for folder in Path(path).resolve().parents:
        cand = folder / RECORD
        if cand.is_file():
            return cand
    return None


def is_standin(path: str | os.PathLike) -> bool:
    path = Path(path)
    rec = find_record(path)
    if rec is None or not path.is_file():
        return False
    return sha256_file(path) in set(read_json(rec).get("files", {}).values())


def refuse_standins(paths, allowed: bool) -> None:
    """IodaError naming the first stand-in among `paths` unless `allowed` (run.standins)."""
    if allowed:
        return
    for p in paths:
        if p and Path(p).is_file() and is_standin(p):
            raise IodaError(f"{p}: a stand-in file (listed in {find_record(p)}, random weights or synthetic images); "
                            f"set run.standins: true to run on stand-ins, or put the real file there")
