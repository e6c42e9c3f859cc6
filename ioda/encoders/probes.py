"""Probes that decide whether an encoder can drive IODA's direction loss (any Encoder: trained or not, CNN or CLIP).

Synthetic, on held-out images under held-out degradation draws (ioda.encoders.corruptions, a seed the training
never uses):
- knn_acc: 1-nearest-neighbour retrieval of the degradation across content: each (image, degradation) query
  against every crop of the OTHER images; a hit when the neighbour carries the same degradation (chance 1/M);
- blur_rank_corr, noise_rank_corr: a ridge probe fitted on half the degradation draws predicts the blur / noise
  strength of the other half (other parameters); Spearman correlation of prediction and truth;
- splice_acc: two degradations of one crop spliced under a random mask; the embedding pooled under the mask must
  be closer to its own degradation's crop than to the other's (and the complement's likewise).
On real camera pairs (ioda.encoders.probes.real_*): the consistency of per-image camera directions, and whether the
direction loss prefers the real HR to the source network's output.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats as sps

from ioda.encoders import corruptions
from ioda.encoders.bank import random_crop, random_masks

PROBE_SEED = 10_007  # held-out degradation draws: a seed no training run uses


@torch.no_grad()
def _embed(encoder, imgs: torch.Tensor, alpha: torch.Tensor | None = None, chunk: int = 64) -> torch.Tensor:
    out = []
    for i in range(0, len(imgs), chunk):
        out.append(encoder.encode_image(imgs[i:i + chunk], None if alpha is None else alpha[i:i + chunk]).float())
    return torch.cat(out)


def _held_out(images: list[np.ndarray], n_deg: int, lr_size: int, scale: int, seed: int):
    """Every held-out image under every held-out degradation: (crops NxMx3xLxL, params)."""
    rng = np.random.default_rng(seed)
    hrs = [random_crop(img, lr_size * scale, rng) for img in images]
    params = [corruptions.sample(rng) for _ in range(n_deg)]
    lrs = torch.stack([torch.cat([corruptions.apply(hr, p, scale, rng) for p in params]) for hr in hrs])
    return lrs, params


def synthetic_probes(encoder, images: list[np.ndarray], *, n_deg: int = 16, lr_size: int = 48, scale: int = 4,
                     seed: int = PROBE_SEED) -> dict:
    """knn_acc, blur_rank_corr, noise_rank_corr and splice_acc on `images` (held out from training)."""
    from sklearn.linear_model import RidgeCV

    lr_size = min(lr_size, min(min(img.shape[:2]) for img in images) // scale)  # small held-out images: smaller crops
    lrs, params = _held_out(images, n_deg, lr_size, scale, seed)  # K x M x 3 x L x L
    k, m = lrs.shape[:2]
    e = _embed(encoder, lrs.flatten(0, 1)).view(k, m, -1)
    flat = F.normalize(e.flatten(0, 1), dim=-1)
    sim = flat @ flat.t()
    img_id = torch.arange(k).repeat_interleave(m)
    deg_id = torch.arange(m).repeat(k)
    sim[img_id[:, None] == img_id[None, :]] = -2.0  # retrieve across content only
    knn = float((deg_id[sim.argmax(1)] == deg_id).float().mean())

    # linear probe of blur and noise strength: fit on the first half of the degradation draws, test on the others
    targets = np.array([corruptions.probe_targets(p) for p in params])  # M x 2
    x, y = e.numpy(), np.broadcast_to(targets, (k, m, targets.shape[1]))
    half = max(1, m // 2)
    probe = RidgeCV(alphas=np.logspace(-3, 2, 12)).fit(x[:, :half].reshape(-1, x.shape[-1]),
                                                        y[:, :half].reshape(-1, 2))
    pred = probe.predict(x[:, half:].reshape(-1, x.shape[-1]))
    truth = y[:, half:].reshape(-1, 2)
    ranks = {}
    for j, key in enumerate(corruptions.PROBE_KEYS):
        ranks[f"{key}_rank_corr"] = float(sps.spearmanr(pred[:, j], truth[:, j]).statistic)

    # splice: image i under degradations (j, j+1) spliced under a random mask
    gen = torch.Generator().manual_seed(seed)
    a, b = lrs[:, :-1].flatten(0, 1), lrs[:, 1:].flatten(0, 1)
    masks = random_masks(len(a), a.shape[-1], gen)
    spliced = a * masks + b * (1 - masks)
    qa, qb = _embed(encoder, spliced, masks), _embed(encoder, spliced, 1 - masks)
    ea, eb = _embed(encoder, a), _embed(encoder, b)
    cos = lambda u, v: F.cosine_similarity(u, v, dim=-1)  # noqa: E731
    hits = torch.cat([cos(qa, ea) > cos(qa, eb), cos(qb, eb) > cos(qb, ea)]).float()
    return {"knn_acc": knn, "knn_chance": 1.0 / m, **ranks, "splice_acc": float(hits.mean()),
            "probe_images": k, "probe_degradations": m}


def mean_pairwise_cos(directions: torch.Tensor) -> float:
    d = F.normalize(directions.float(), dim=-1)
    sim = d @ d.t()
    n = len(d)
    return float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


@torch.no_grad()
def direction_consistency(encoder, target_lr: torch.Tensor, source_lr: torch.Tensor) -> float:
    """Mean pairwise cosine of the per-image camera directions E(target LR_i) - mean E(source LR)."""
    e_s = _embed(encoder, source_lr).mean(0, keepdim=True)
    return mean_pairwise_cos(_embed(encoder, target_lr) - e_s)


def hr_vs_sr(encoder, loss_fn, lr_t: torch.Tensor, hr_t: torch.Tensor, sr_t: torch.Tensor, lr_s: torch.Tensor,
             sr_s: torch.Tensor) -> dict:
    """The direction loss with SR_T = the real HR vs SR_T = the source network's output, per target crop
    (the source side averaged over the source crops); and the cosine between the loss's descent direction at the
    source network's output and (HR - SR). Returns per-crop arrays and their summaries."""
    with torch.no_grad():
        e_lr_s = _embed(encoder, lr_s).mean(0, keepdim=True)
        e_sr_s = _embed(encoder, sr_s).mean(0, keepdim=True)
        e_lr_t = _embed(encoder, lr_t)
        d_lr = e_lr_t - e_lr_s
        loss_hr = 1 - F.cosine_similarity(d_lr, _embed(encoder, hr_t) - e_sr_s, dim=-1)
    wins, grad_cos, loss_sr = [], [], []
    for i in range(len(lr_t)):
        x = sr_t[i:i + 1].clone().requires_grad_(True)
        loss = loss_fn(d_lr[i:i + 1], encoder.encode_image(x).float() - e_sr_s)
        (g,) = torch.autograd.grad(loss, x)
        loss_sr.append(float(loss.detach()))
        descent = -g.flatten()
        toward_hr = (hr_t[i:i + 1] - sr_t[i:i + 1]).flatten()
        grad_cos.append(float(F.cosine_similarity(descent, toward_hr, dim=0)))
        wins.append(float(loss_hr[i]) < loss_sr[-1])
    return {"hr_wins": float(np.mean(wins)), "grad_cos": float(np.mean(grad_cos)),
            "loss_hr": [float(v) for v in loss_hr], "loss_sr": loss_sr, "grad_cos_per_crop": grad_cos}
