"""What input sizes a network accepts, asked of the network itself: one no-grad forward of a zero patch.

Networks fail on small inputs for reasons their weights do not tell (SAFMN's pyramid pools the input down by
2**levels, window-attention networks partition it), so the smallest accepted patch is found by running it."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def runs_on(model: nn.Module, scale: int, size: int) -> bool:
    """True if the model maps a 1x3x`size`x`size` input to 1x3x(scale*size)x(scale*size) without an error."""
    if size < 1:
        return False
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        out = model(torch.zeros(1, 3, size, size, device=device))
        return tuple(out.shape) == (1, 3, scale * size, scale * size)
    except Exception:  # noqa: BLE001 - any failure means "not this size"
        return False
    finally:
        model.train(was_training)


def smallest_patch(model: nn.Module, scale: int, upto: int = 512) -> int | None:
    """The smallest square patch size (1..upto) the model runs on, None if none does; probes small sizes first."""
    return next((s for s in range(1, upto + 1) if runs_on(model, scale, s)), None)
