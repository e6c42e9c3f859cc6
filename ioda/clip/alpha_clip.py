"""Alpha-CLIP's vision tower as a minimal change to open_clip's own VisionTransformer.

Alpha-CLIP adds one convolution over the alpha (region) channel next to the RGB patch embedding:
    x = conv1(image) + conv1_alpha(alpha)
Everything after the patch embedding (class token, positional embedding, ln_pre, transformer, pooling,
ln_post, proj) is open_clip's code and parameters. conv1_alpha starts at zero, so an untouched model
gives exactly the plain CLIP features.
"""

from __future__ import annotations

import torch
from open_clip.transformer import VisionTransformer, _expand_token
from torch import nn


class AlphaVisionTransformer(VisionTransformer):
    """open_clip VisionTransformer whose input is 4 channels: RGB (CLIP-normalised) + alpha (normalised).

    Only `_embeds` (the patch-embedding step) is overridden; `forward` is open_clip's."""

    conv1_alpha: nn.Conv2d

    @classmethod
    def from_open_clip(cls, visual: VisionTransformer) -> "AlphaVisionTransformer":
        """Turn an already built (and possibly pretrained) open_clip tower into an Alpha-CLIP tower in place.

        Re-classing keeps every parameter and the exact configuration open_clip built from its model
        config, which a re-construction from arguments could get subtly wrong."""
        if type(visual) is not VisionTransformer:
            raise TypeError(f"Alpha-CLIP needs open_clip's VisionTransformer, got {type(visual).__name__}")
        if not isinstance(visual.patch_dropout, nn.Identity):
            raise TypeError("Alpha-CLIP tower expects patch dropout to be disabled")
        conv = visual.conv1
        visual.__class__ = cls
        visual.conv1_alpha = nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, bias=False)
        visual.conv1_alpha.to(device=conv.weight.device, dtype=conv.weight.dtype)
        nn.init.zeros_(visual.conv1_alpha.weight)
        return visual

    def _embeds(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 4:
            raise ValueError(f"Alpha-CLIP tower expects Bx4xHxW (RGB + alpha), got {tuple(x.shape)}")
        x = self.conv1(x[:, :3].contiguous()) + self.conv1_alpha(x[:, 3:].contiguous())  # the only Alpha-CLIP change
        # The rest mirrors open_clip 3.3.0 VisionTransformer._embeds (tested against encode_image).
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat([_expand_token(self.class_embedding, x.shape[0]).to(x.dtype), x], dim=1)
        x = x + self.positional_embedding.to(x.dtype)
        x = self.patch_dropout(x)
        return self.ln_pre(x)
