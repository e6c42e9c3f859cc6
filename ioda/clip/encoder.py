"""ImageEncoder: a frozen (Alpha-)CLIP used as the feature extractor of IODA's direction loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ioda.clip.alpha_clip import AlphaVisionTransformer
from ioda.clip.preprocess import INPUT_RANGES, prepare_alpha, prepare_image


class ImageEncoder(nn.Module):
    """Frozen Alpha-CLIP (image tower + the model's text tower). Features are L2-normalised.

    Attributes: image_size, embed_dim, untrained, description (one line for reports), model_name.
    The module stays in eval mode even if a parent calls .train() (its statistics must not change)."""

    def __init__(self, clip: nn.Module, *, model_name: str, mean, std, untrained: bool, description: str,
                 input_range: str = "unit"):
        super().__init__()
        if not isinstance(clip.visual, AlphaVisionTransformer):
            raise TypeError("ImageEncoder needs a CLIP model whose visual tower is an AlphaVisionTransformer")
        if input_range not in INPUT_RANGES:
            raise ValueError(f"input_range must be one of {INPUT_RANGES}, got {input_range!r}")
        self.clip = clip
        self.model_name = model_name
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.input_range = input_range
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
    def has_text(self) -> bool:
        return hasattr(self.clip, "transformer") or hasattr(self.clip, "text")

    def _prepare(self, img: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
        dtype = self.visual.conv1.weight.dtype
        img = img.to(device=self.device, dtype=dtype)
        x = prepare_image(img, self.image_size, self.mean, self.std, self.input_range)
        a = prepare_alpha(alpha, x.shape[0], self.image_size, self.device, dtype)
        return torch.cat([x, a], dim=1)

    def encode_images(self, batches: list[tuple[torch.Tensor, torch.Tensor | None]]) -> list[torch.Tensor]:
        """Several (img, alpha) batches of any sizes through ONE tower forward (fewer kernel launches than
        one call each); returns their features in the same order."""
        x = torch.cat([self._prepare(img, alpha) for img, alpha in batches])
        feats = self._features(x)
        return list(feats.split([img.shape[0] for img, _ in batches]))

    def encode_image(self, img: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        """img: Bx3xHxW RGB in [0,1] (any size; gradients flow back to it); alpha: Bx1xHxW in {0,1}
        or None (full mask). Returns BxD, L2-normalised."""
        return self._features(self._prepare(img, alpha))

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
