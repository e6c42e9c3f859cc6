"""The options every report command shares (ioda aggregate / tables / figures / report)."""

from __future__ import annotations

import argparse


def report_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="params file (params.yaml or the workflow's results/config.json)")
    p.add_argument("--log", help="also log to this file")
    return p
