"""SR backbones (SAFMN, HAT, SRFormer via spandrel): named presets, safe checkpoint I/O, tiled inference."""

from ioda.archs.loading import LoadedModel, build_model, load_model, read_state_dict, save_model
from ioda.archs.presets import PRESETS, Preset, get_preset, preset_info, preset_names
from ioda.archs.tiling import upscale

__all__ = [
    "PRESETS", "LoadedModel", "Preset", "build_model", "get_preset", "load_model", "preset_info",
    "preset_names", "read_state_dict", "save_model", "upscale",
]
