"""What `ioda adapt` writes for one run, and what it removes when a run fails.

model.safetensors (the adapted weights), sr.png (the photo super-resolved by them) and adapt.json (protocol,
settings, timing, hardware, encoder); the trainers write train_log.csv and curve.csv. On failure only the outputs
this run created or replaced are removed (checkpoint.pt stays for --resume), so no partial result is left and
nothing of an earlier run is lost.
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ioda.adapt.variants import BASELINE
from ioda.errors import IodaError
from ioda.files import write_json
from ioda.imageio import write_image
from ioda.protocol import get_protocol
from ioda.tiles import auto_tile

if TYPE_CHECKING:
    import torch

# outputs of a run: on failure only those this run created or replaced are removed
FINAL_OUTPUTS = ("model.safetensors", "sr.png", "adapt.json", "curve.csv", "train_log.csv", "labels.npz",
                 "labels.json")


def hardware(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} ({torch.get_num_threads()} threads)"


def identity(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class KeptOutputs(IodaError):
    """A failure after some outputs were completed that must be kept (e.g. the weights when sr.png fails)."""

    def __init__(self, message: str, keep: tuple[str, ...]):
        super().__init__(message)
        self.keep = keep


def clean_failed(out_dir: Path, before: dict, created: bool, keep=()) -> None:
    """No partial results, and nothing of an earlier run lost: remove only the outputs this run created or replaced
    (outputs it completed and must keep aside); keep checkpoint.pt (the last good state) for --resume, and drop a
    folder this run created if nothing worth keeping is in it."""
    for name, ident in before.items():
        f = out_dir / name
        if name not in keep and identity(f) != ident and f.exists():
            f.unlink()
    if created and not (out_dir / "checkpoint.pt").exists():
        shutil.rmtree(out_dir, ignore_errors=True)


def portable_ref(path) -> str:
    """A file as adapt.json names it, meaningful on another machine: a registered name (craft_x4) or relative path
    as given, a path inside the working directory relative to it, else the file name (its sha256 is recorded
    next to it); never this machine's absolute path."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.name


def tile_for(args, photo) -> int:
    if args.tile is not None:
        return args.tile
    return auto_tile(photo.shape[0], photo.shape[1])


def write_outputs(args, shared, photo_path, photo, loaded, out_dir, result, inputs) -> dict:
    """model.safetensors, sr.png and adapt.json of one run."""
    import torch

    from ioda.adapt.settings import EXECUTION_ONLY, used_fields
    from ioda.archs import save_model
    from ioda.archs.tiling import upscale_image

    variant, settings, device, scale, encoder = (shared.variant, shared.settings, shared.device, shared.scale,
                                                 shared.encoder)
    protocol = get_protocol(settings.protocol)
    model_t, stats = result.model, result.stats
    encoder_desc = encoder.description if encoder is not None else None
    untrained = bool(encoder.untrained) if encoder is not None else False
    model_t.eval()
    model_path = out_dir / "model.safetensors"
    save_model(model_t, model_path, preset=loaded.preset, arch=loaded.arch, scale=scale,
               meta={"ioda_variant": variant.name, "adapted_on": photo_path.name})
    sr_error = None
    if not args.no_sr:
        tile = tile_for(args, photo)
        try:
            write_image(out_dir / "sr.png", upscale_image(model_t, photo, scale, tile=tile, device=device))
        except Exception as err:  # noqa: BLE001 - out of memory, disk full...: the weights are still good
            sr_error = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
            (out_dir / "sr.png").unlink(missing_ok=True)  # an earlier run's sr.png is not of these weights
    # the settings this run read (a baseline reads no protocol, no run evaluates without --eval-data)
    used = set(used_fields(variant, evaluates=bool(settings.eval_every))) | set(EXECUTION_ONLY)
    report = {
        "protocol": protocol.name if variant.direction else None,
        "protocol_settings": protocol.to_dict() | {"clip_input": settings.clip_input or protocol.clip_input,
                                                   "loss": settings.loss or protocol.loss,
                                                   "clip_antialias": args.clip_antialias, "plain_clip": args.plain_clip}
        if variant.direction else None,
        "variant": variant.to_dict(),
        "settings": {k: v for k, v in settings.to_dict().items() if k in used}
        | {"steps_preset": "json" if args.settings_json is not None else args.settings, "stacked_runs": args.stack},
        "model": {"path": args.model_ref, "sha256": inputs["model"], "arch": loaded.arch, "preset": loaded.preset,
                  "scale": scale},
        "photo": {"path": portable_ref(photo_path), "sha256": inputs["photo"],
                  "width": photo.shape[1], "height": photo.shape[0]},
        "encoder": {"description": encoder_desc, "untrained": untrained},
        "seconds": stats.get("seconds"),  # adaptation only; evaluations in eval_seconds
        "eval_seconds": stats.get("eval_seconds"),
        "final": stats.get("final"),
        "best": stats.get("best"),
        "stats": stats,
        "device": str(device),
        "hardware": hardware(device),
        "torch": torch.__version__,
        "oracle_note": "best = the oracle statistic (picked on target HR, the authors'); the saved model is the final step",
    }
    if sr_error:
        report["sr_error"] = sr_error
    write_json(out_dir / "adapt.json", report)
    if sr_error:
        raise KeptOutputs(
            f"{out_dir / 'sr.png'}: not written ({sr_error}); the adapted weights are kept in {model_path} "
            f"(sr.png later: ioda adapt {photo_path} --model {model_path} --variant {BASELINE} --tile 128 --out-dir DIR)",
            keep=("model.safetensors", "adapt.json", "labels.npz", "labels.json", "curve.csv"))
    ckpt = out_dir / "checkpoint.pt"
    if ckpt.exists() and not args.keep_checkpoint:
        ckpt.unlink()
    return stats
