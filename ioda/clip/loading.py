"""Building ImageEncoders: architecture (open_clip name or our JSON config), CLIP weights, Alpha-CLIP weights.

- `model`: an open_clip model name (e.g. ViT-B-16-quickgelu) or a config in ioda/clip/configs/ (e.g. tiny).
- `pretrained`: None (seeded random init, flagged untrained), an open_clip tag such as 'openai' (downloaded
  through open_clip, fails fast with an IodaError when offline), or a local open_clip/OpenAI state-dict file.
- `alpha_weights`: a released Alpha-CLIP visual checkpoint, loaded strictly (see load_alpha_weights).
All checkpoints are read with torch.load(weights_only=True) (or safetensors): no pickled code runs.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

from ioda.clip.alpha_clip import AlphaVisionTransformer
from ioda.clip.encoder import ImageEncoder
from ioda.clip.preprocess import DEFAULT_ANTIALIAS, INPUT_RANGES
from ioda.errors import IodaError

LOG = logging.getLogger("ioda.clip")
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DOWNLOAD_TIMEOUT_S = 20.0  # per socket operation: an offline machine must fail, not hang
_registered = False


def local_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def _register_configs() -> None:
    """Make our JSON configs visible to open_clip (so create_model and get_tokenizer accept them)."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def _one_line(err: BaseException, limit: int = 400) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def _format_keys(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _host_reachable(host: str, timeout: float = 3.0) -> bool:
    """A TCP connection to host:443 within `timeout`: tells "offline" apart in seconds, not minutes of retries."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _cached_weights(cfg: dict) -> str | None:
    """The local copy open_clip would use for this tag, if it was downloaded before."""
    import open_clip.pretrained as ocp

    if cfg.get("hf_hub") and ocp.has_hf_hub():
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(cfg["hf_hub"])  # 'org/model/' means open_clip's default file name
        filename = filename or ocp.HF_WEIGHTS_NAME
        safe = getattr(ocp, "_get_safe_alternatives", lambda name: [])  # private helper: tolerate its absence
        for name in [*safe(filename), filename]:
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str) and os.path.isfile(found):
                return found
    if cfg.get("url"):
        local = Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
        if local.is_file():
            return str(local)
    return None


def download_weights(model: str, tag: str) -> str:
    """Fetch (or find in open_clip's cache) the weights of an open_clip pretrained tag; IodaError if offline."""
    import open_clip.pretrained as ocp

    cfg = ocp.get_pretrained_cfg(model, tag)
    use_hub = bool(cfg.get("hf_hub")) and ocp.has_hf_hub()
    source = cfg["hf_hub"] if use_hub else cfg.get("url", "?")
    host = (urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname if use_hub
            else urlparse(cfg.get("url", "")).hostname)
    hint = "without internet, download them elsewhere and pass the local file path as pretrained"
    if _cached_weights(cfg) is None and (not host or not _host_reachable(host)):
        raise IodaError(f"clip pretrained={tag!r} for {model}: not in the local cache and {host} is unreachable "
                        f"(offline?); {hint}")
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        path = ocp.download_pretrained(cfg)
    except Exception as err:  # network, DNS, HTTP, hub errors: all mean "not available here"
        raise IodaError(f"clip pretrained={tag!r} for {model}: could not download the weights from {source} "
                        f"({_one_line(err, 200)}); {hint}") from None
    finally:
        socket.setdefaulttimeout(old)
    if not path or not os.path.isfile(path):
        raise IodaError(f"clip pretrained={tag!r} for {model}: download from {source} gave no file")
    return path


def released_to_open_clip_key(key: str) -> str:
    """Alpha-CLIP's released naming -> open_clip's (optional 'module.' prefix, attn.in_proj.* split)."""
    if key.startswith("module."):
        key = key[len("module."):]
    return key.replace(".attn.in_proj.weight", ".attn.in_proj_weight").replace(".attn.in_proj.bias", ".attn.in_proj_bias")


def open_clip_to_released_key(key: str) -> str:
    return key.replace(".attn.in_proj_weight", ".attn.in_proj.weight").replace(".attn.in_proj_bias", ".attn.in_proj.bias")


def load_alpha_weights(visual: AlphaVisionTransformer, path: str | os.PathLike) -> None:
    """Load a released Alpha-CLIP visual checkpoint STRICTLY: every key present, none extra, same shapes."""
    path = Path(path)
    if not path.is_file():
        raise IodaError(f"{path}: Alpha-CLIP weights file not found (expected a visual-tower state dict, "
                        f"e.g. clip_b16_grit+mim_fultune_4xe.pth from github.com/SunzeY/AlphaCLIP)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(str(path), device="cpu")
        else:
            from ioda.safeload import torch_load

            raw = torch_load(path)
    except IodaError:
        raise
    except Exception as err:
        raise IodaError(f"{path}: cannot be read as a weights-only checkpoint ({_one_line(err, 200)})") from None
    if isinstance(raw, dict) and set(raw) == {"state_dict"}:
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not raw or not all(torch.is_tensor(v) for v in raw.values()):
        raise IodaError(f"{path}: expected a state dict (name -> tensor) of the Alpha-CLIP visual tower")
    state = {}
    for k, v in raw.items():
        new = released_to_open_clip_key(k)
        if new in state:
            raise IodaError(f"{path}: key {k!r} duplicates {new!r} after removing the 'module.' prefix")
        state[new] = v
    expected = visual.state_dict()
    missing = sorted(open_clip_to_released_key(k) for k in set(expected) - set(state))
    unexpected = sorted(open_clip_to_released_key(k) for k in set(state) - set(expected))
    if missing or unexpected:
        parts = ([f"missing key(s) {_format_keys(missing)}"] if missing else []) + (
            [f"unexpected key(s) {_format_keys(unexpected)}"] if unexpected else [])
        raise IodaError(f"{path}: does not match the Alpha-CLIP visual tower of this model: {'; '.join(parts)}")
    for k, want in expected.items():
        if tuple(state[k].shape) != tuple(want.shape):
            raise IodaError(f"{path}: key {open_clip_to_released_key(k)!r} has shape {tuple(state[k].shape)}, "
                            f"expected {tuple(want.shape)} for this model")
    visual.load_state_dict(state, strict=True)


def half_like_openai_clip(clip: torch.nn.Module) -> None:
    """fp16 as OpenAI's clip.load on CUDA (what the authors' Alpha-CLIP used): conv/linear/attention weights in
    fp16, LayerNorms kept in fp32 and computing in fp32 (open_clip's LayerNormFp32), embeddings cast per use."""
    import open_clip
    from open_clip.transformer import LayerNorm, LayerNormFp32

    open_clip.model.convert_weights_to_lp(clip, dtype=torch.float16)
    for m in clip.modules():
        if type(m) is LayerNorm:
            m.__class__ = LayerNormFp32


def build_encoder(model: str = "tiny", pretrained: str | None = None, alpha_weights: str | None = None,
                  device: str | torch.device = "cpu", seed: int = 0, input_range: str | None = None,
                  alpha_init: str = "zero", protocol: str = "paper", antialias: bool = DEFAULT_ANTIALIAS,
                  half: bool | None = None) -> ImageEncoder:
    """Build a frozen Alpha-CLIP ImageEncoder (see the module doc for the arguments).

    protocol ('paper' or 'authors', ioda.protocol) sets the preprocessing of `ImageEncoder.prepare`
    (input range, resize/crop, alpha mode) and the tower's precision: fp16 on CUDA under 'authors' (`half`
    overrides; fp32 on CPU unless half=True). input_range overrides the protocol's image range. antialias:
    tensor-resize antialiasing (torchvision's default since 0.17; see ioda.clip.preprocess)."""
    import open_clip
    import open_clip.pretrained as ocp

    from ioda.protocol import get_protocol

    proto = get_protocol(protocol)
    input_range = input_range or proto.clip_input
    if input_range not in INPUT_RANGES:
        raise ValueError(f"input_range must be one of {INPUT_RANGES}, got {input_range!r}")

    _register_configs()
    if model not in open_clip.list_models():
        raise IodaError(f"clip model {model!r}: unknown (expected one of our configs {local_configs()} "
                        f"or an open_clip model name such as ViT-B-16-quickgelu)")
    weights_path = None
    mean = std = None
    if pretrained:
        pretrained = str(pretrained)
        if ocp.get_pretrained_cfg(model, pretrained):
            tag_cfg = ocp.get_pretrained_cfg(model, pretrained)
            weights_path = download_weights(model, pretrained)
            mean, std = tag_cfg.get("mean"), tag_cfg.get("std")
        elif os.path.isfile(pretrained):
            weights_path = pretrained
        else:
            tags = ocp.list_pretrained_tags_by_model(model)
            raise IodaError(f"clip pretrained {pretrained!r}: neither an existing file nor an open_clip tag of "
                            f"{model} (known tags: {', '.join(tags) if tags else 'none'})")

    # Seeded init without disturbing the caller's global RNG streams.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = open_clip.create_model(model, pretrained=None, device="cpu")
    if weights_path is not None:
        try:
            open_clip.load_checkpoint(clip, weights_path, strict=True, weights_only=True)
        except pickle.UnpicklingError as err:
            from ioda.safeload import refusal

            raise refusal(weights_path, err) from None
        except Exception as err:
            raise IodaError(f"{weights_path}: not usable as open_clip/OpenAI weights for {model} "
                            f"({_one_line(err)}); OpenAI TorchScript .pt archives must be converted to a "
                            f"state dict first") from None
    preprocess = open_clip.get_model_preprocess_cfg(clip)
    mean = mean or preprocess.get("mean") or open_clip.OPENAI_DATASET_MEAN
    std = std or preprocess.get("std") or open_clip.OPENAI_DATASET_STD
    try:
        AlphaVisionTransformer.from_open_clip(clip.visual)
    except TypeError as err:
        raise IodaError(f"clip model {model!r}: no plain open_clip ViT image tower ({err})") from None
    if alpha_init not in ("zero", "random"):
        raise IodaError(f"clip alpha_init {alpha_init!r}: expected 'zero' or 'random'")
    if alpha_weights:
        load_alpha_weights(clip.visual, alpha_weights)
    elif alpha_init == "random":
        # Zero keeps CLIP's features exactly (right for real CLIP weights); for an untrained encoder a seeded
        # random alpha conv lets region masks change the features, as trained Alpha-CLIP weights would.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            clip.visual.conv1_alpha.reset_parameters()

    # Released Alpha-CLIP checkpoints hold the whole image tower: image features are then trained
    # even without CLIP weights (only the text tower stays random, which the description says).
    untrained = weights_path is None and not alpha_weights
    if untrained:
        weights = f"UNTRAINED (seeded random init, seed {seed})"
    elif weights_path is None:
        weights = "image tower from the Alpha-CLIP weights, text tower UNTRAINED"
    elif weights_path == pretrained:
        weights = f"weights {Path(weights_path).name}"
    else:
        weights = f"open_clip weights {pretrained!r}"
    alpha = (f"alpha conv {Path(alpha_weights).name}" if alpha_weights
             else "alpha conv random (untrained)" if alpha_init == "random" else "alpha conv zero (= plain CLIP)")
    if half is None:
        half = proto.clip_fp16 and torch.device(device).type == "cuda"
    if half:
        half_like_openai_clip(clip)
    size = clip.visual.image_size
    description = (f"Alpha-CLIP {model}, {weights}, {alpha}, {size[0]} px, dim {clip.visual.output_dim}, "
                   f"{input_range} input, {proto.clip_fit}, {proto.alpha} alpha, antialias {bool(antialias)}, "
                   f"{'fp16' if half else 'fp32'} ({proto.name} protocol)")
    if untrained:
        LOG.warning("clip encoder %s has no pretrained weights: features are from a random network "
                    "(fine for tests and smoke runs, meaningless for results)", model)
    enc = ImageEncoder(clip, model_name=model, mean=mean, std=std, untrained=untrained,
                       description=description, input_range=input_range, fit=proto.clip_fit,
                       alpha_mode=proto.alpha, antialias=antialias, protocol=proto.name)
    return enc.to(device)
