"""What `ioda adapt` checks before any work: the numbers that are no setting, the LR patch against the network,
and a checkpoint to resume from against this run's inputs."""

from __future__ import annotations

from pathlib import Path

from ioda.errors import IodaError


def _check_numbers(args) -> None:
    """The options that are no setting (the settings are checked by the params schema, in adapt_settings)."""
    if args.tile is not None and args.tile < 0:
        raise IodaError(f"--tile must be 0 (whole photo) or a positive tile size in LR px, got {args.tile}")


def _check_patch(loaded, variant, lr_patch: int) -> None:
    """Before any training: the network runs on the LR patches the run will crop (asked of the network)."""
    from ioda.archs.probe import runs_on, smallest_patch

    if not variant.trains or runs_on(loaded.module, loaded.scale, lr_patch):
        return
    smallest = smallest_patch(loaded.module, loaded.scale)
    accepts = f"the smallest patch it accepts is {smallest}" if smallest else "it runs on no patch up to 512 px"
    raise IodaError(f"--lr-patch {lr_patch}: {loaded.path} cannot super-resolve a {lr_patch}x{lr_patch} LR patch; "
                    f"{accepts}")


def _check_resume(ckpt: Path, inputs: dict[str, str]) -> None:
    """Before any work: the checkpoint a --resume continues is readable, ours, and made from this photo and
    model (the trainers check the settings and the label map again when they load it)."""
    if not ckpt.exists():
        return
    from ioda.safeload import torch_load

    state = torch_load(ckpt)
    if not isinstance(state, dict) or "model" not in state:
        raise IodaError(f"{ckpt}: not an ioda adaptation checkpoint (holds a {type(state).__name__} without "
                        f"weights); remove it or use a new --out-dir")
    had = (state.get("config") or {}).get("inputs") or {}
    for key, want in inputs.items():
        if had.get(key) != want:
            raise IodaError(f"{ckpt}: cannot resume: this run's {key} (sha256 {want[:12]}) is not the one the "
                            f"checkpoint was made from (sha256 {str(had.get(key))[:12]}); use the same {key} or a "
                            f"new --out-dir")
