"""What the direction loss, the trainers, the reports and the t-SNE figure ask of an image encoder.

Alpha-CLIP (ioda.clip.ImageEncoder) and the degradation encoder (ioda.encoders.degradation) both satisfy it, so no
caller branches on which one it holds.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Encoder(Protocol):
    """A frozen image encoder with a region input.

    - encode_image(img Bx3xHxW in [0,1], alpha Bx1xHxW in [0,1] or None = the whole image) -> BxD, L2-normalised;
      gradients flow back to `img`;
    - encode_images([(img, alpha), ...]) -> one BxD tensor per batch (as few forwards as the encoder allows);
    - encode_text(list of str) -> NxD, L2-normalised; only where `has_text` (otherwise an IodaError);
    - untrained: features of a random network; description: one line for reports; embed_dim: D."""

    untrained: bool
    description: str
    embed_dim: int

    @property
    def regions_inert(self) -> bool:
        """Whether a region mask leaves the features unchanged (Alpha-CLIP without alpha weights)."""
        ...

    @property
    def has_text(self) -> bool: ...

    @property
    def device(self) -> torch.device: ...

    def encode_image(self, img: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor: ...

    def encode_images(self, batches: list[tuple[torch.Tensor, torch.Tensor | None]]) -> list[torch.Tensor]: ...

    def encode_text(self, texts: list[str]) -> torch.Tensor: ...
