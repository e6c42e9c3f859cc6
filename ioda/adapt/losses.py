"""The image-guided direction loss (method.md, Stage 2) and its registered variants.

dLR = E(LR_T) - E(LR_S);  dSR = E(M_T(LR_T)) - E(M_S(LR_S));  L = 1 - cos(dLR, dSR), averaged over the batch.
Collinear directions give 0, opposite ones 2. The authors' code also multiplies each sample's loss by
cos(E(LR_S), E(LR_T)) (not in the paper): registered as "direction_lrsim"; the paper's form is the default.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ioda.errors import IodaError


def direction_terms(d_lr: torch.Tensor, d_sr: torch.Tensor) -> torch.Tensor:
    """Per-sample 1 - cos(dLR, dSR). The eps keeps a zero direction (identical crops) finite."""
    return 1.0 - F.cosine_similarity(d_lr, d_sr, dim=-1, eps=1e-8)


def direction_loss(e_lr_s, e_lr_t, e_sr_s, e_sr_t) -> torch.Tensor:
    return direction_terms(e_lr_t - e_lr_s, e_sr_t - e_sr_s).mean()


def direction_loss_lrsim(e_lr_s, e_lr_t, e_sr_s, e_sr_t) -> torch.Tensor:
    # The weight only rescales each sample's term; it carries no gradient (its inputs are constants).
    weight = F.cosine_similarity(e_lr_s, e_lr_t, dim=-1).detach()
    return (direction_terms(e_lr_t - e_lr_s, e_sr_t - e_sr_s) * weight).mean()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "direction": direction_loss,
    "direction_lrsim": direction_loss_lrsim,
}


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    if name not in LOSSES:
        raise IodaError(f"loss {name!r} is not known (expected one of {', '.join(LOSSES)})")
    return LOSSES[name]
