"""ImageEncoder: a frozen (Alpha-)CLIP used as the feature extractor of IODA's direction loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ioda.clip.alpha_clip import AlphaVisionTransformer
from ioda.clip.preprocess import ALPHA_MODES, DEFAULT_ANTIALIAS, FITS, INPUT_RANGES, prepare_alpha, prepare_image


class ImageEncoder(nn.Module):
    """Frozen Alpha-CLIP (image tower + the model's text tower). Features are L2-normalised.

    Attributes: image_size, embed_dim, untrained, description (one line for reports), model_name, and the
    preprocessing knobs (input_range, fit, alpha_mode, antialias; see ioda.clip.preprocess and the protocols in
    ioda.protocol). The module stays in eval mode even if a parent calls .train()."""

    def __init__(self, clip: nn.Module, *, model_name: str, mean, std, untrained: bool, description: str,
                 input_range: str = "unit", fit: str = "stretch", alpha_mode: str = "binary",
                 antialias: bool = DEFAULT_ANTIALIAS, protocol: str | None = None):
        super().__init__()
        if not isinstance(clip.visual, AlphaVisionTransformer):
            raise TypeError("ImageEncoder needs a CLIP model whose visual tower is an AlphaVisionTransformer")
        for key, value, allowed in (("input_range", input_range, INPUT_RANGES), ("fit", fit, FITS),
                                    ("alpha_mode", alpha_mode, ALPHA_MODES)):
            if value not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {value!r}")
        self.clip = clip
        self.model_name = model_name
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.input_range, self.fit, self.alpha_mode = input_range, fit, alpha_mode
        self.antialias = bool(antialias)
        self.protocol = protocol
        self.untrained = bool(untrained)
        self.description = description
        size = clip.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.embed_dim = int(clip.visual.output_dim)
        self._tokenizer = None
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "ImageEncoder":
        return super().train(False)

    @property
    def visual(self) -> AlphaVisionTransformer:
        return self.clip.visual

    @property
    def device(self) -> torch.device:
        return self.visual.conv1.weight.device

    @property
    def regions_inert(self) -> bool:
        """A zero alpha conv (no Alpha-CLIP checkpoint) reproduces CLIP exactly: region masks change nothing."""
        return not bool(self.visual.conv1_alpha.weight.detach().abs().sum())

    @property
    def has_text(self) -> bool:
        return hasattr(self.clip, "transformer") or hasattr(self.clip, "text")

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def prepare(self, img: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        """The exact tensor the tower receives: Bx4xSxS (CLIP-normalised RGB + normalised alpha) in the
        tower's dtype. img: Bx3xHxW RGB in [0,1] (gradients flow back to it); alpha: Bx1xHxW in {0,1} or
        None (full mask). The image is preprocessed in its own dtype (fp32), the alpha in float64 under the
        soft (authors') mode, and both cast to the tower's dtype at the end, as the authors' code does."""
        img = img.to(device=self.device)
        if not img.is_floating_point():
            raise ValueError(f"expected a floating-point image in [0,1], got {img.dtype}")
        x = prepare_image(img, self.image_size, self.mean, self.std, self.input_range, fit=self.fit,
                          antialias=self.antialias)
        a = prepare_alpha(alpha, x.shape[0], self.image_size, self.device, x.dtype, mode=self.alpha_mode,
                          antialias=self.antialias)
        return torch.cat([x, a], dim=1).to(self.dtype)

    def encode_images(self, batches: list[tuple[torch.Tensor, torch.Tensor | None]]) -> list[torch.Tensor]:
        """Several (img, alpha) batches of any sizes through ONE tower forward (fewer kernel launches than
        one call each); returns their features in the same order."""
        x = torch.cat([self.prepare(img, alpha) for img, alpha in batches])
        feats = self._features(x)
        return list(feats.split([img.shape[0] for img, _ in batches]))

    def encode_image(self, img: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        """img: Bx3xHxW RGB in [0,1] (any size; gradients flow back to it); alpha: Bx1xHxW in {0,1}
        or None (full mask). Returns BxD, L2-normalised."""
        return self._features(self.prepare(img, alpha))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.visual(x)
        if isinstance(feats, tuple):  # output_tokens models return (pooled, tokens)
            feats = feats[0]
        return F.normalize(feats, dim=-1)

    forward = encode_image

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """N strings -> NxD, L2-normalised (open_clip's tokenizer for this model; offline for our configs)."""
        if not self.has_text:
            raise ValueError(f"{self.model_name}: this encoder has no text tower")
        if isinstance(texts, str):
            texts = [texts]
        if self._tokenizer is None:
            import open_clip

            self._tokenizer = open_clip.get_tokenizer(self.model_name)
        tokens = self._tokenizer(list(texts)).to(self.device)
        return F.normalize(self.clip.encode_text(tokens), dim=-1)
