"""Image/text encoders for IODA's loss: Alpha-CLIP on top of open_clip's ViT."""

from ioda.clip.alpha_clip import AlphaVisionTransformer
from ioda.clip.encoder import ImageEncoder
from ioda.clip.loading import build_encoder, load_alpha_weights, local_configs

__all__ = ["AlphaVisionTransformer", "ImageEncoder", "build_encoder", "load_alpha_weights", "local_configs"]
