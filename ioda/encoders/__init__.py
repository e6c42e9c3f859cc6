"""Image encoders of the direction loss, behind one registry (`encoder.name` in the config, `--encoder` in
`ioda adapt`): Alpha-CLIP on open_clip towers, and the degradation encoder trained by `ioda pretrain-encoder`.
Callers ask an entry what it offers (`has_text`, `clip_options`), never branch on its name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ioda.errors import IodaError


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    description: str
    has_text: bool  # a text tower: text-guided variants need one
    clip_options: bool  # takes Alpha-CLIP's options (alpha weights/init, CLIP input range, protocol, antialias)
    builder: Callable[..., object]
    weights_help: str
    trained_here: bool = False  # without weights, the workflow trains it (`ioda pretrain-encoder`, rule pretrain_encoder)


def _build_clip(name: str, weights, *, device, seed, **clip_opts):
    from ioda.clip import build_encoder

    return build_encoder(name, pretrained=weights, seed=seed, device=device, **clip_opts)


def _build_degradation(name: str, weights, *, device, seed, **_):
    from ioda.encoders.degradation import build_degradation_encoder

    return build_degradation_encoder(weights, seed=seed, device=device)


ENCODERS: dict[str, EncoderSpec] = {
    e.name: e
    for e in (
        EncoderSpec("tiny", "a small (Alpha-)CLIP ViT (ioda/clip/configs/tiny.json); untrained without weights",
                    has_text=True, clip_options=True, builder=_build_clip, weights_help="open_clip weights file"),
        EncoderSpec("ViT-B-16-quickgelu", "the paper's Alpha-CLIP ViT-B/16 (open_clip)", has_text=True,
                    clip_options=True, builder=_build_clip, weights_help="'openai' or an open_clip weights file"),
        EncoderSpec("degradation", "a small CNN trained by `ioda pretrain-encoder` to tell cameras apart, with "
                    "alpha-weighted region pooling; no text tower", has_text=False, clip_options=False,
                    builder=_build_degradation, weights_help="a .safetensors file of `ioda pretrain-encoder`",
                    trained_here=True),
    )
}


def get_encoder_spec(name: str) -> EncoderSpec:
    if name not in ENCODERS:
        raise IodaError(f"encoder {name!r} is not known (expected one of {', '.join(ENCODERS)})")
    return ENCODERS[name]


def build_encoder(name: str, weights: str | None = None, *, device="cpu", seed: int = 0, **clip_opts):
    """An Encoder (ioda.encoders.base) by registry name; clip_opts reach Alpha-CLIP entries only."""
    spec = get_encoder_spec(name)
    return spec.builder(name, weights, device=device, seed=seed, **(clip_opts if spec.clip_options else {}))


__all__ = ["ENCODERS", "EncoderSpec", "build_encoder", "get_encoder_spec"]
