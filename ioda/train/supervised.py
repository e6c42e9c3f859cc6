"""Generic supervised L1 training of an SR nn.Module, resumable bit for bit.

Determinism: the data order is a permutation per epoch drawn from numpy's generator seeded with
(seed, epoch), so the batch at any step is a pure function of (seed, step) and resuming needs no data
RNG state. Datasets must therefore be index-deterministic (PairedPatches is: item i depends only on its
seed and i). The learning rate is a pure function of the step too (no scheduler object to restore).
What does carry state -- model, Adam moments, torch's RNG (drop-path in HAT/SRFormer uses it) -- travels in the
checkpoint of the one training loop (ioda.train.loop), which this module only gives an L1 step function.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ioda.errors import IodaError
from ioda.train.loop import TrainLoop
from ioda.train.numerics import Numerics

LOG = logging.getLogger("ioda")

SCHEDULERS = ("cosine", "constant", "multistep")
# multistep: the SwinIR/HAT/SRFormer recipe (milestones at 50/80/90/95 % of training, halving each time)
MULTISTEP_FRACTIONS = (0.5, 0.8, 0.9, 0.95)
MULTISTEP_GAMMA = 0.5
COSINE_ETA_MIN = 1e-7  # BasicSR's CosineAnnealingRestartLR default floor
# keys that must agree between a checkpoint and the run resuming it
_RESUME_KEYS = ("batch_size", "lr", "betas", "scheduler", "seed")


def lr_at(step: int, *, base_lr: float, steps: int, scheduler: str) -> float:
    """Learning rate used for the update that takes the weights from `step` to `step + 1`."""
    if scheduler == "constant":
        return base_lr
    if scheduler == "cosine":
        return COSINE_ETA_MIN + (base_lr - COSINE_ETA_MIN) * 0.5 * (1.0 + math.cos(math.pi * step / max(steps, 1)))
    if scheduler == "multistep":
        passed = sum(step >= int(f * steps) for f in MULTISTEP_FRACTIONS)
        return base_lr * MULTISTEP_GAMMA**passed
    raise IodaError(f"scheduler: unknown {scheduler!r} (expected one of {', '.join(SCHEDULERS)})")


class _Order:
    """Index stream: epoch e is np.random.default_rng([seed, e]).permutation(len(dataset))."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def batch(self, step: int, batch_size: int) -> list[int]:
        out = []
        for pos in range(step * batch_size, (step + 1) * batch_size):
            epoch, i = divmod(pos, self.n)
            if epoch != self._epoch:
                self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
            out.append(int(self._perm[i]))
        return out


def _collate(dataset: Dataset, idx: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[i] for i in idx]
    lr = torch.stack([it[0] for it in items]).to(device)
    hr = torch.stack([it[1] for it in items]).to(device)
    return lr, hr


class _StepIndices(Sampler):
    """The index lists of steps start..end-1, in order: a DataLoader's batch_sampler."""

    def __init__(self, order: _Order, batch_size: int, start: int, end: int):
        self.order, self.batch_size, self.start, self.end = order, batch_size, start, end

    def __len__(self) -> int:
        return self.end - self.start

    def __iter__(self):
        return (self.order.batch(step, self.batch_size) for step in range(self.start, self.end))


class _Batches:
    """The (lr, hr) batch of any step, on the device: assembled in process (workers 0) or by DataLoader workers
    that run ahead in step order (opened at the first step asked, so a resumed run starts where it stopped)."""

    def __init__(self, dataset: Dataset, order: _Order, batch_size: int, steps: int, workers: int,
                 device: torch.device):
        self.dataset, self.order, self.batch_size, self.steps = dataset, order, batch_size, steps
        self.workers, self.device = workers, device
        self._it, self._next = None, -1

    def at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.workers:
            return _collate(self.dataset, self.order.batch(step, self.batch_size), self.device)
        if self._it is None or step != self._next:
            sampler = _StepIndices(_Order(self.order.n, self.order.seed), self.batch_size, step, self.steps)
            self._it = iter(DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.workers,
                                       pin_memory=self.device.type == "cuda", persistent_workers=False))
        self._next = step + 1
        lr, hr = next(self._it)
        return lr.to(self.device, non_blocking=True), hr.to(self.device, non_blocking=True)


def l1_step_fn(model: nn.Module, opt: torch.optim.Optimizer, dataset: Dataset, *, batch_size: int, steps: int,
               seed: int, device: torch.device, numerics: Numerics, workers: int = 0) -> Callable[[int], torch.Tensor]:
    """step -> loss: one L1 update of `model` on the batch of that step (the pure function of (seed, step) above),
    under `numerics`; the step function train_supervised runs (and benchmarks/pretrain_throughput.py times)."""
    forward = numerics.sr_forward(model)
    batches = _Batches(dataset, _Order(len(dataset), seed), batch_size, steps, workers, device)  # type: ignore[arg-type]

    def l1_step(step: int) -> torch.Tensor:
        lr_b, hr_b = batches.at(step)
        with numerics.autocast():
            sr = forward(numerics.input(lr_b))
        loss = torch.nn.functional.l1_loss(sr.float(), hr_b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return l1_step


def train_supervised(
    model: nn.Module,
    dataset: Dataset,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.99),
    scheduler: str = "cosine",
    seed: int = 0,
    device: str | torch.device = "cpu",
    ckpt_path: str | os.PathLike | None = None,
    resume: bool = False,
    log_csv: str | os.PathLike | None = None,
    ckpt_every: int = 1000,
    stop_at: int | None = None,
    desc: str = "train",
    inputs: dict[str, Any] | None = None,
    numerics: Numerics | None = None,
    workers: int = 0,
) -> dict[str, Any]:
    """L1-train `model` in place on (lr, hr) pairs from `dataset` for `steps` Adam updates.

    Saves a training checkpoint every `ckpt_every` steps and at the end (if `ckpt_path`); `resume`
    continues from it (or starts fresh, logging so, if it does not exist yet). `stop_at` ends this call early after that step (checkpoint written), as if
    the job were interrupted. `inputs` (name -> sha256 of an input file) must match on resume. `numerics`
    (ioda.train.numerics; default fp32 eager): autocast, channels_last and compile of the forward. `workers` > 0:
    batches are assembled by that many DataLoader worker processes (the same batches, bit for bit, as in
    process). Returns {steps_done, final_loss, mean_loss, seconds, resumed_from}."""
    if steps < 1 or batch_size < 1 or ckpt_every < 1:
        raise IodaError(f"training: steps ({steps}), batch_size ({batch_size}) and ckpt_every ({ckpt_every}) must be >= 1")
    if lr <= 0:
        raise IodaError(f"training: lr must be > 0, got {lr}")
    lr_at(0, base_lr=lr, steps=steps, scheduler=scheduler)  # validates the scheduler name
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise IodaError("training: the dataset is empty")
    device = torch.device(device)
    config = {"steps": steps, "batch_size": batch_size, "lr": lr, "betas": list(betas), "scheduler": scheduler,
              "seed": seed}
    if inputs:
        config["inputs"] = dict(inputs)
    model.to(device).train()
    numerics = numerics or Numerics(device_type=device.type)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(betas))
    l1_step = l1_step_fn(model, opt, dataset, batch_size=batch_size, steps=steps, seed=seed, device=device,
                         numerics=numerics, workers=workers)
    keys = list(_RESUME_KEYS) + (["steps"] if scheduler != "constant" else [])
    loop = TrainLoop(model, opt, l1_step, steps=steps, config=config, resume_keys=keys, ckpt_path=ckpt_path,
                     ckpt_every=ckpt_every, log_every=1, log_csv=log_csv,
                     lr_fn=lambda step: lr_at(step, base_lr=lr, steps=steps, scheduler=scheduler), desc=desc,
                     numerics=numerics)
    if not (resume and loop.resume()):
        torch.manual_seed(seed)  # drop-path / dropout draws
    result = loop.run(stop_at=stop_at)
    LOG.info("trained steps %d..%d in %.1fs, last loss %.5f", loop.resumed_from or 0, result["steps_done"],
             result["seconds"], result["final_loss"])
    return {k: result[k] for k in ("steps_done", "final_loss", "mean_loss", "seconds", "resumed_from")}
