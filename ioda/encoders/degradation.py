"""The degradation encoder: a small CNN whose embedding moves when the camera (degradation) changes and stays put
when the content changes, with a region input like Alpha-CLIP's.

- No BatchNorm (IODA encodes batches of 1-2), LeakyReLU(0.1); three stages of two 3x3 convs, the first at full
  resolution (blur and noise live in the finest scales), the next two at stride 2.
- Region input: the feature map is pooled with the alpha mask as weights (alpha area-resized to the feature grid);
  a full mask is plain average pooling, as Alpha-CLIP with a zero alpha conv is plain CLIP. Pixels under alpha 0
  reach the embedding only through the receptive field (`receptive_field` px) of features inside the mask.
- A linear map of the pooled features is the embedding (L2-normalised); the projection head (`DegradationHead`)
  is used only by the contrastive training (ioda.encoders.pretrain), never by the loss.
- Images of any size (at least 8 px) are encoded as they are: no resize, so the LR and the SR scale both reach it;
  the training shows it both.

Weights: safetensors with the tower's config in the metadata (`ioda_encoder`, `config`); loaded strictly, naming a
tensor of the wrong shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ioda.errors import IodaError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
FORMAT = "ioda-degradation-encoder-1"
MEAN, STD = 0.5, 0.25  # the input's affine normalisation


def default_config(name: str = "degradation") -> dict:
    path = CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
        raise IodaError(f"degradation encoder config {name!r}: not found (expected one of {', '.join(known)})")
    cfg = json.loads(path.read_text())
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def _check_config(cfg: dict, where: str) -> dict:
    widths = cfg.get("widths")
    if (not isinstance(widths, (list, tuple)) or len(widths) != 3
            or not all(isinstance(w, int) and w > 0 for w in widths)):
        raise IodaError(f"{where}: 'widths' must be three positive integers, got {widths!r}")
    for key in ("embed_dim", "head_dim"):
        if not isinstance(cfg.get(key), int) or cfg[key] < 1:
            raise IodaError(f"{where}: {key!r} must be a positive integer, got {cfg.get(key)!r}")
    return {"widths": [int(w) for w in widths], "embed_dim": int(cfg["embed_dim"]), "head_dim": int(cfg["head_dim"])}


class DegradationTower(nn.Module):
    """RGB in [0,1] -> feature map (C = widths[2]) at 1/4 resolution."""

    def __init__(self, widths=(16, 32, 64)):
        super().__init__()
        c1, c2, c3 = widths
        layers, cin = [], 3
        for cout, stride in ((c1, 1), (c1, 1), (c2, 2), (c2, 1), (c3, 2), (c3, 1)):
            layers += [nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.1, inplace=True)]
            cin = cout
        self.body = nn.Sequential(*layers)
        self.channels = c3

    # six 3x3 convs, the fifth and sixth after strides 2 and 4: 1 + 2 * (1 + 1 + 1 + 2 + 2 + 4) = 23 px
    receptive_field = 23
    stride = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - MEAN) / STD)


def alpha_pool(feats: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    """BxCxhxw features, Bx1xHxW alpha in [0,1] (None: the whole image) -> BxC: the alpha-weighted mean of the
    feature map, alpha area-resized to the grid. A mask that leaves no weight on the grid is refused."""
    if alpha is None:
        return feats.mean(dim=(2, 3))
    if alpha.dim() != 4 or alpha.shape[1] != 1 or alpha.shape[0] != feats.shape[0]:
        raise IodaError(f"alpha: expected Bx1xHxW with B={feats.shape[0]}, got {tuple(alpha.shape)}")
    w = F.adaptive_avg_pool2d(alpha.to(feats.dtype), feats.shape[-2:])
    area = w.sum(dim=(2, 3))
    if bool((area <= 0).any()):
        raise IodaError("alpha: a region mask is empty (all zero): nothing to pool")
    return (feats * w).sum(dim=(2, 3)) / area


class DegradationHead(nn.Module):
    """The projection head of the contrastive training (embedding -> head_dim); not part of the encoder."""

    def __init__(self, embed_dim: int, head_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.LeakyReLU(0.1, inplace=True),
                                 nn.Linear(embed_dim, head_dim))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(e), dim=-1)


class DegradationNet(nn.Module):
    """Tower + pooling + linear embedding (trainable; DegradationEncoder wraps it frozen)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = _check_config(cfg, "degradation encoder config")
        self.visual = DegradationTower(self.cfg["widths"])
        self.embed = nn.Linear(self.visual.channels, self.cfg["embed_dim"])

    def forward(self, img: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        if img.dim() != 4 or img.shape[1] != 3:
            raise IodaError(f"encoder input: expected Bx3xHxW RGB, got {tuple(img.shape)}")
        if min(img.shape[-2:]) < 8:
            raise IodaError(f"encoder input: at least 8x8 px, got {img.shape[-2]}x{img.shape[-1]}")
        return F.normalize(self.embed(alpha_pool(self.visual(img), alpha)), dim=-1)


class DegradationEncoder(nn.Module):
    """The frozen degradation encoder, with the interface of ioda.encoders.base.Encoder (no text tower)."""

    has_text = False
    regions_inert = False  # the mask weights the pooling

    def __init__(self, net: DegradationNet, *, untrained: bool, description: str, card: dict | None = None):
        super().__init__()
        self.net = net
        self.untrained = bool(untrained)
        self.description = description
        self.card = card or {}
        self.embed_dim = int(net.cfg["embed_dim"])
        self.receptive_field = net.visual.receptive_field
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "DegradationEncoder":
        return super().train(False)

    @property
    def visual(self) -> DegradationTower:  # what ioda.train.numerics compiles
        return self.net.visual

    @property
    def device(self) -> torch.device:
        return self.net.embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.net.embed.weight.dtype

    def encode_image(self, img: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        if not img.is_floating_point():
            raise IodaError(f"encoder input: expected a floating-point image in [0,1], got {img.dtype}")
        img = img.to(self.device)
        return self.net(img.to(self.dtype), None if alpha is None else alpha.to(self.device))

    forward = encode_image

    def encode_images(self, batches: list[tuple[torch.Tensor, torch.Tensor | None]]) -> list[torch.Tensor]:
        """Batches of one size share a forward; sizes differ between LR and SR inputs, so those run apart."""
        out: list[torch.Tensor | None] = [None] * len(batches)
        groups: dict[tuple, list[int]] = {}
        for i, (img, alpha) in enumerate(batches):
            groups.setdefault((tuple(img.shape[1:]), alpha is None), []).append(i)
        for (_, no_alpha), idx in groups.items():
            imgs = torch.cat([batches[i][0] for i in idx])
            alphas = None if no_alpha else torch.cat([batches[i][1] for i in idx])
            feats = self.encode_image(imgs, alphas).split([batches[i][0].shape[0] for i in idx])
            for i, f in zip(idx, feats):
                out[i] = f
        return out  # type: ignore[return-value]

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        raise IodaError("the degradation encoder has no text tower (text-guided variants need a CLIP encoder)")


def state_for_file(net: DegradationNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}


def save_weights(net: DegradationNet, path: str | Path, card: dict) -> None:
    """The tower + embedding as safetensors; the config and the card (recipe, data, probe scores) in its metadata."""
    from safetensors.torch import save_file

    from ioda.files import atomic_path

    meta = {"ioda_encoder": FORMAT, "config": json.dumps(net.cfg), "card": json.dumps(card, sort_keys=True)}
    with atomic_path(Path(path)) as tmp:
        save_file(state_for_file(net), str(tmp), metadata=meta)


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(state, config, card) of a degradation-encoder file; a one-line IodaError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise IodaError(f"{path}: degradation encoder weights not found (made by `ioda pretrain-encoder`)")
    if path.suffix != ".safetensors":
        raise IodaError(f"{path}: expected a .safetensors file made by `ioda pretrain-encoder`")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # truncated or not safetensors at all
        raise IodaError(f"{path}: not a readable safetensors file ({type(err).__name__}: "
                        f"{' '.join(str(err).split())[:160]})") from None
    if meta.get("ioda_encoder") != FORMAT:
        raise IodaError(f"{path}: not a degradation encoder (metadata ioda_encoder={meta.get('ioda_encoder')!r}, "
                        f"expected {FORMAT!r}); CLIP weights go to --encoder ViT-B-16-quickgelu")
    try:
        cfg = json.loads(meta.get("config", ""))
        card = json.loads(meta.get("card", "{}"))
    except json.JSONDecodeError:
        raise IodaError(f"{path}: its metadata 'config' or 'card' is not JSON") from None
    return state, _check_config(cfg, f"{path} config"), card


def load_state_strict(net: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    expected = net.state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        raise IodaError(f"{where}: tensors do not match the degradation encoder "
                        f"(missing {missing[:4]}, unexpected {extra[:4]})")
    for k, want in expected.items():
        if tuple(state[k].shape) != tuple(want.shape):
            raise IodaError(f"{where}: tensor {k!r} has shape {tuple(state[k].shape)}, expected {tuple(want.shape)}")
    net.load_state_dict(state, strict=True)


def build_degradation_encoder(weights: str | None = None, *, config: str = "degradation", seed: int = 0,
                              device: str | torch.device = "cpu") -> DegradationEncoder:
    """The trained encoder from `weights` (a file of `ioda pretrain-encoder`), or without weights a seeded random
    one of the same architecture, flagged untrained (the control of the effect study)."""
    if weights:
        state, cfg, card = read_weights(weights)
        net = DegradationNet(cfg)
        load_state_strict(net, state, str(weights))
        probes = card.get("probes", {})
        score = f", probe kNN {probes['knn_acc']:.2f}" if isinstance(probes.get("knn_acc"), (int, float)) else ""
        desc = (f"degradation encoder (trained by ioda pretrain-encoder, {card.get('steps', '?')} steps on "
                f"{', '.join(card.get('datasets', [])) or '?'}{score}), {Path(weights).name}, "
                f"widths {cfg['widths']}, dim {cfg['embed_dim']}")
        untrained = False
    else:
        cfg, card = default_config(config), {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = DegradationNet(cfg)
        desc = f"degradation encoder, UNTRAINED (seeded random init, seed {seed}), widths {cfg['widths']}"
        untrained = True
    return DegradationEncoder(net, untrained=untrained, description=desc, card=card).to(device)
