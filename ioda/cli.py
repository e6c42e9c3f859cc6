"""The single `ioda` entry point. Each subcommand lives in its own module exposing `main(argv) -> int`,
imported lazily so `ioda --help` stays fast and a broken optional part cannot break the others."""

from __future__ import annotations

import importlib
import sys
import warnings

from ioda.errors import IodaError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("ioda.data.prepare", "build a demo dataset or download/verify a paper dataset"),
    "pack": ("ioda.data.patch_store", "pack a source split into a patch store (memory-mapped) for pre-training"),
    "pretrain": ("ioda.train.pretrain", "supervised L1 pre-training on a source dataset (or import official weights)"),
    "pretrain-encoder": ("ioda.encoders.cli", "train the degradation encoder (contrastive) on source-domain HR images"),
    "encoder-card": ("ioda.encoders.card", "describe the encoder a configuration uses (JSON; no model is built)"),
    "evaluate": ("ioda.evaluate", "run a model on a dataset split; per-image CSV + summary JSON (PSNR/SSIM)"),
    "masks": ("ioda.masks.cli", "instance label map of one target LR image (SAM or superpixels), cached"),
    "adapt": ("ioda.adapt.cli", "one-shot adaptation of an SR model to the domain of one LR photo"),
    "aggregate": ("ioda.report.aggregate", "collect evaluation results into mean/variance tables"),
    "tables": ("ioda.report.tables", "write the paper's tables as CSV, Markdown and LaTeX"),
    "figures": ("ioda.report.figures", "draw the paper's figures (PNG and PDF)"),
    "report": ("ioda.report.summary", "write results/summary.md"),
    "standins": ("ioda.standins.cli", "stand-in datasets and weights (official layouts, synthetic/random) for a config"),
    "plan": ("ioda.cost", "projected device-hours of a config from measured timings, and its critical path"),
    "preflight": ("ioda.preflight", "check free disk and device memory before a config's long jobs"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: ioda <command> [options]   (ioda <command> --help for details)", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from ioda import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ioda: error: unknown command {name!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    # Warnings (most from libraries: torch, torchvision, spandrel) are held back while the command runs: a bad
    # input then ends in its one error line alone; otherwise they are shown once the command ends. They are
    # shown only after the recording context has closed: inside it, showing a warning records it again.
    with warnings.catch_warnings(record=True) as held:
        try:
            module = importlib.import_module(COMMANDS[name][0])
            rc, crash = int(module.main(rest) or 0), None
        except IodaError as err:
            print(f"ioda {name}: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"ioda {name}: interrupted", file=sys.stderr)
            return 130
        except BaseException as err:  # noqa: BLE001 - re-raised below, after the held warnings
            rc, crash = 1, err
    _show(held)
    if crash is not None:
        raise crash
    return rc

def _show(held: list[warnings.WarningMessage]) -> None:
    for w in held:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)


if __name__ == "__main__":
    sys.exit(main())
