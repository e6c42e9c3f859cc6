"""Contrastive training of the degradation encoder on source-domain HR images (the loop the rest of ioda uses).

Each step draws B bank entries (ioda.encoders.bank) and makes four views of each: crop A under degradation d1
(LR scale), crop B of another image under d1 (LR scale and SR scale), and A under d2. Loss = supervised InfoNCE
over the views: the three d1 views of an entry are positives (they share the degradation, not the content, and
span both scales); A under d2 is a negative that shares A's content, so matching content cannot solve the task;
every other entry is a negative too. Plus `region_weight` x the region term: A under d1 and d2 spliced under a
random mask; the embedding pooled under the mask must pick d1's view of B (other content) over d2's view of A (the
same content), and the one pooled under the complement d2's, among all the batch's views.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ioda.encoders.bank import Bank, build_bank, crops, random_masks
from ioda.encoders.degradation import DegradationHead, DegradationNet
from ioda.train.loop import TrainLoop


@dataclass(frozen=True)
class Recipe:
    steps: int = 1500
    batch_size: int = 24
    lr: float = 1e-3
    lr_decay_at: float = 0.8  # x0.1 from this share of the steps on
    weight_decay: float = 1e-4
    temperature: float = 0.1
    region_weight: float = 0.5
    bank_size: int = 3000
    lr_size: int = 40  # bank LR crops (HR crops are scale x this)
    lr_crop: int = 32  # LR-scale views
    sr_size: int = 96  # bank SR-scale crops
    sr_crop: int = 64  # SR-scale views
    scale: int = 4
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def supcon(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised InfoNCE: each row's positives are the other rows with its label."""
    sim = z @ z.t() / temperature
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    pos = (labels[:, None] == labels[None, :]) & ~eye
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    return -(logp.masked_fill(~pos, 0).sum(1) / pos.sum(1).clamp(min=1)).mean()


class Sampler:
    """The steps' randomness (crops, flips, entries, masks): one torch generator, saved in the checkpoint."""

    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])


class EncoderTrainer:
    def __init__(self, bank: Bank, recipe: Recipe, work: Path, log_csv: Path | None = None,
                 config_name: str = "degradation", net_config: dict | None = None):
        from ioda.encoders.degradation import default_config

        self.bank, self.recipe = bank, recipe
        cfg = net_config or default_config(config_name)
        torch.manual_seed(recipe.seed)
        self.net = DegradationNet(cfg)
        self.head = DegradationHead(cfg["embed_dim"], cfg["head_dim"])
        self.model = torch.nn.ModuleDict({"net": self.net, "head": self.head})
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        self.sampler = Sampler(recipe.seed + 1)
        decay_at = int(recipe.steps * recipe.lr_decay_at)
        self.loop = TrainLoop(self.model, self.opt, self.step, steps=recipe.steps, config=recipe.to_dict(),
                              resume_keys=[k for k in recipe.to_dict() if k != "steps"],
                              ckpt_path=Path(str(work) + ".ckpt"), ckpt_every=max(50, recipe.steps // 10),
                              log_every=10, log_csv=log_csv, extra={"sampler": self.sampler},
                              lr_fn=lambda s: recipe.lr * (0.1 if s >= decay_at else 1.0), desc="pretrain-encoder")

    def step(self, step: int) -> torch.Tensor:
        r, g = self.recipe, self.sampler.gen
        idx = torch.randperm(len(self.bank), generator=g)[: r.batch_size]
        f = lambda t: t[idx].float() / 255.0  # noqa: E731
        lr1, lr2, lr1b, sr1 = f(self.bank.lr1), f(self.bank.lr2), f(self.bank.lr1b), f(self.bank.sr1)
        b = len(idx)
        # LR views: A under d1, B under d1, A under d2; SR view: B under d1
        lr_views = torch.cat([crops(lr1, r.lr_crop, g), crops(lr1b, r.lr_crop, g), crops(lr2, r.lr_crop, g)])
        z_lr = self.head(self.net(lr_views))
        z_sr = self.head(self.net(crops(sr1, r.sr_crop, g)))
        ids = torch.arange(b)
        z = torch.cat([z_lr, z_sr])
        loss = supcon(z, torch.cat([ids, ids, ids + b, ids]), r.temperature)
        if r.region_weight > 0:
            # splice: A under d1 inside the mask and under d2 outside it
            masks = random_masks(b, lr1.shape[-1], g)
            spliced = lr1 * masks + lr2 * (1 - masks)
            q = self.head(self.net(torch.cat([spliced, spliced]), torch.cat([masks, 1 - masks])))
            keys = torch.cat([z_lr[b:2 * b], z_lr[2 * b:]])  # d1 views of B (other content), d2 views of A
            logits = q @ keys.t() / r.temperature
            target = torch.cat([ids, ids + b])
            loss = loss + r.region_weight * F.cross_entropy(logits, target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()


def train_encoder(images: list[np.ndarray], recipe: Recipe, out_base: Path, *, resume: bool = False,
                  log_csv: Path | None = None) -> tuple[DegradationNet, dict]:
    """Build the bank, train (resumable from `<out_base>.ckpt`), return the net and run facts."""
    t0 = time.perf_counter()
    bank = build_bank(images, recipe.bank_size, recipe.lr_size, recipe.sr_size, recipe.scale, recipe.seed)
    bank_s = time.perf_counter() - t0
    trainer = EncoderTrainer(bank, recipe, out_base, log_csv=log_csv)
    if resume:
        trainer.loop.resume()
    trainer.loop.run()
    rows = trainer.loop.loss_rows
    tail = [row[1] for row in rows[-10:]]
    facts = {"bank_seconds": round(bank_s, 2), "train_seconds": round(trainer.loop.train_seconds, 2),
             "seconds_per_step": round(trainer.loop.train_seconds / max(1, recipe.steps - (trainer.loop.resumed_from
                                                                                           or 0)), 4),
             "final_loss": float(np.mean(tail)) if tail else math.nan,
             "first_loss": float(rows[0][1]) if rows else math.nan}
    return trainer.net.eval(), facts
