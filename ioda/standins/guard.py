"""Stand-ins are never accepted silently: every file `ioda standins` writes carries a mark inside it
(ioda.standin_mark), so a copy in another clone is still recognised, and <root>/standins/record.json lists
each file's SHA-256 as well; a run that has not said `run.standins: true` refuses either. Their datasets are
refused by the prepare step (marked images; the registry's image counts) unless it runs with --standins."""

from __future__ import annotations

import os
from pathlib import Path

from ioda.errors import IodaError
from ioda.files import read_json, sha256_file
from ioda.standin_mark import is_marked

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


def recorded_files(rec: str | os.PathLike) -> dict[str, str]:
    """{path: sha256} of a stand-in record; IodaError (one line) for a record of another shape."""
    data = read_json(rec)
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise IodaError(f"{rec}: not a stand-in record (expected a JSON object whose 'files' maps each path to its "
                        f"sha256); rerun ioda standins or remove it")
    return files


def is_standin(path: str | os.PathLike) -> bool:
    """Whether `path` is a stand-in: by the mark inside it, or by the record of the tree it lies in."""
    path = Path(path)
    if not path.is_file():
        return False
    if is_marked(path):
        return True
    rec = find_record(path)
    return rec is not None and sha256_file(path) in set(recorded_files(rec).values())


def refuse_standins(paths, allowed: bool) -> None:
    """IodaError naming the first stand-in among `paths` unless `allowed` (run.standins)."""
    if allowed:
        return
    for p in paths:
        if p and Path(p).is_file() and is_standin(p):
            raise IodaError(f"{p}: a stand-in file (written by ioda standins: random weights or synthetic images); "
                            f"set run.standins: true to run on stand-ins, or put the real file there")
