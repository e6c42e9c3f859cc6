"""Stand-in weight files: the official file's key layout and architecture size, seeded random values.

- SR backbones (SAFMN-L, HAT, SRFormer DF2K x4): BasicSR `.pth` pickles, the state dict under `params`
  (SAFMN, SRFormer) or `params_ema` (HAT), as the authors release them; spandrel recognises them.
- Alpha-CLIP ViT-B/16 (`clip_b16_grit+mim_fultune_4xe.pth`): the visual tower with `conv1_alpha`, keys in
  the release's naming (`module.` prefix, `attn.in_proj.weight`).
- OpenAI CLIP ViT-B/16: the whole model's open_clip state dict where open_clip's Hugging Face cache keeps it
  (`models--timm--vit_base_patch16_clip_224.openai/snapshots/<rev>/open_clip_model.safetensors`).
- SAM vit_h (`sam_vit_h_4b8939.pth`): segment-anything's flat state dict.
All float32."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ioda.files import atomic_path
from ioda.standin_mark import KEY, TEXT, mark_torch_archive

# how each preset's official file wraps its state dict (BasicSR checkpoints)
OFFICIAL_WRAPPER = {"safmn_l": "params", "safmn": "params", "hat": "params_ema", "srformer": "params"}
HF_REVISION = "0" * 40  # the snapshot folder name of the stand-in (a real cache holds the commit hash)


def released_alpha_layout(visual_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An open_clip visual state dict renamed to the Alpha-CLIP release layout (module. prefix, attn.in_proj.*)."""
    from ioda.clip.loading import open_clip_to_released_key

    return {"module." + open_clip_to_released_key(k): v.detach().clone() for k, v in visual_state.items()}


def _save(obj, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
        mark_torch_archive(tmp)  # recognised as a stand-in wherever it is copied; the key layout is unchanged
    return path


def write_backbone(preset: str, path: str | os.PathLike, seed: int = 0) -> Path:
    from ioda.archs.loading import build_model

    sd = build_model(preset, seed=seed).state_dict()
    return _save({OFFICIAL_WRAPPER.get(preset, "params"): sd}, Path(path))


def write_alpha_clip(model: str, path: str | os.PathLike, seed: int = 0) -> Path:
    from ioda.clip.loading import build_encoder

    enc = build_encoder(model, seed=seed, alpha_init="random")
    return _save(released_alpha_layout(enc.clip.visual.state_dict()), Path(path))


def open_clip_cache_file(model: str, tag: str, hf_cache: str | os.PathLike) -> Path | None:
    """Where open_clip's Hugging Face cache keeps the weights of (model, tag); None if the tag is not on the hub."""
    import open_clip.pretrained as ocp

    cfg = ocp.get_pretrained_cfg(model, tag)
    if not cfg or not cfg.get("hf_hub"):
        return None
    repo, filename = os.path.split(cfg["hf_hub"])
    if filename and not filename.endswith(".safetensors"):
        filename = None  # open_clip looks for the .safetensors alternative first
    folder = Path(hf_cache) / ("models--" + repo.replace("/", "--"))
    return folder / "snapshots" / HF_REVISION / (filename or ocp.HF_SAFE_WEIGHTS_NAME)


def write_open_clip(model: str, tag: str, hf_cache: str | os.PathLike, seed: int = 0) -> Path:
    """The (model, tag) weights in open_clip's Hugging Face cache layout under `hf_cache` (HF_HUB_CACHE)."""
    import open_clip
    from safetensors.torch import save_file

    path = open_clip_cache_file(model, tag, hf_cache)
    if path is None:
        raise ValueError(f"open_clip {model} {tag}: no Hugging Face hub entry")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = open_clip.create_model(model, pretrained=None, device="cpu")
    state = {k: v.detach().contiguous() for k, v in clip.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={KEY: TEXT})  # the stand-in mark
    refs = path.parents[2] / "refs" / "main"
    refs.parent.mkdir(parents=True, exist_ok=True)
    refs.write_text(HF_REVISION)
    return path


def write_sam(model_type: str, path: str | os.PathLike, seed: int = 0) -> Path:
    from segment_anything import sam_model_registry

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = sam_model_registry[model_type](checkpoint=None)
    return _save(sam.state_dict(), Path(path))
