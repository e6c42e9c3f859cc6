"""Generic supervised L1 training of an SR nn.Module, resumable bit for bit.

Determinism: the data order is a permutation per epoch drawn from numpy's generator seeded with
(seed, epoch), so the batch at any step is a pure function of (seed, step) and resuming needs no data
RNG state. Datasets must therefore be index-deterministic (PairedPatches is: item i depends only on its
seed and i). The learning rate is a pure function of the step too (no scheduler object to restore).
What does carry state -- model, Adam moments, torch's RNG (drop-path in HAT/SRFormer uses it) -- is
saved in the training checkpoint as plain tensors and dicts, loadable with torch.load(weights_only=True).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from ioda.errors import IodaError
from ioda.files import atomic_path
from ioda.runtime import progress_enabled

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


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_checkpoint(path: str | os.PathLike, model: nn.Module, opt: torch.optim.Optimizer,
                             step: int, config: dict[str, Any], last_loss: float) -> None:
    state = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "scheduler": {"name": config["scheduler"], "step": step},
        "step": step,
        "rng": _rng_state(),
        "config": config,
        "last_loss": last_loss,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    from ioda.safeload import torch_load

    state = torch_load(path)
    for key in ("model", "optimizer", "step", "rng", "config"):
        if not isinstance(state, dict) or key not in state:
            raise IodaError(f"{path}: not an ioda training checkpoint (key {key!r} missing)")
    return state


def _check_resumable(path: Path, saved: dict[str, Any], config: dict[str, Any]) -> None:
    keys = list(_RESUME_KEYS) + (["steps"] if config["scheduler"] != "constant" else [])
    for k in keys:
        a, b = saved.get(k), config[k]
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            a, b = list(a), list(b)
        if a != b:
            raise IodaError(f"{path}: cannot resume: checkpoint has {k}={saved.get(k)!r}, this run asks {k}={config[k]!r}")
    had = saved.get("inputs") or {}
    for k, want in (config.get("inputs") or {}).items():
        if had.get(k) != want:
            raise IodaError(f"{path}: cannot resume: this run's {k} (sha256 {str(want)[:12]}) is not the one the "
                            f"checkpoint was made from (sha256 {str(had.get(k))[:12]}); use the same {k} or a new "
                            f"output folder")


def _rewrite_csv_up_to(path: Path, step: int) -> None:
    """On resume, drop log rows written after the checkpoint (they will be recomputed)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step] if rows else []
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept)


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
) -> dict[str, Any]:
    """L1-train `model` in place on (lr, hr) pairs from `dataset` for `steps` Adam updates.

    Saves a training checkpoint every `ckpt_every` steps and at the end (if `ckpt_path`); `resume`
    continues from it (or starts fresh, logging so, if it does not exist yet). `stop_at` ends this call early after that step (checkpoint written), as if
    the job were interrupted. `inputs` (name -> sha256 of an input file) must match on resume. Returns {steps_done, final_loss, mean_loss, seconds, resumed_from}."""
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
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(betas))
    start, resumed_from = 0, None
    ckpt = Path(ckpt_path) if ckpt_path else None
    if resume:
        if ckpt is None:
            raise IodaError("training: resume requested but no checkpoint path was given")
    if resume and not ckpt.is_file():  # type: ignore[union-attr]
        # a first run launched with --resume (e.g. by a workflow that always passes it) starts fresh
        LOG.info("resume: no checkpoint %s yet, starting from scratch", ckpt)
        resume = False
    if resume:
        state = load_training_checkpoint(ckpt)  # type: ignore[arg-type]
        _check_resumable(ckpt, state["config"], config)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise IodaError(f"{ckpt}: checkpoint weights do not fit this model ({str(err).splitlines()[0]})") from None
        opt.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"])
        start = resumed_from = int(state["step"])
        LOG.info("resuming from %s at step %d", ckpt, start)
    else:
        torch.manual_seed(seed)  # drop-path / dropout draws

    csv_path = Path(log_csv) if log_csv else None
    if csv_path:
        if resume:
            _rewrite_csv_up_to(csv_path, start)
        if not resume or not csv_path.is_file():
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            with open(csv_path, "w", newline="") as f:
                csv.writer(f).writerow(["step", "loss", "lr"])

    order = _Order(len(dataset), seed)  # type: ignore[arg-type]
    end = steps if stop_at is None else min(steps, stop_at)
    losses: list[float] = []
    last_loss = float("nan")
    t0 = time.time()
    csv_file = open(csv_path, "a", newline="") if csv_path else None
    try:
        writer = csv.writer(csv_file) if csv_file else None
        bar = tqdm(range(start, end), desc=desc, disable=not progress_enabled(), initial=start, total=end)
        for step in bar:
            cur_lr = lr_at(step, base_lr=lr, steps=steps, scheduler=scheduler)
            for g in opt.param_groups:
                g["lr"] = cur_lr
            lr_b, hr_b = _collate(dataset, order.batch(step, batch_size), device)
            loss = torch.nn.functional.l1_loss(model(lr_b), hr_b)
            value = float(loss.detach())
            if not math.isfinite(value):
                where = f"last good checkpoint {ckpt} is kept" if ckpt and ckpt.is_file() else "no checkpoint written"
                raise IodaError(f"training: loss is {value} at step {step + 1} (NaN/inf); stopped, {where}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            last_loss = value
            losses.append(value)
            if writer:
                writer.writerow([step + 1, f"{value:.8g}", f"{cur_lr:.8g}"])
            bar.set_postfix(loss=f"{value:.4f}")
            done = step + 1
            if ckpt and (done % ckpt_every == 0 or done == end):
                if csv_file:
                    csv_file.flush()
                save_training_checkpoint(ckpt, model, opt, done, config, value)
    finally:
        if csv_file:
            csv_file.close()
    seconds = time.time() - t0
    LOG.info("trained steps %d..%d in %.1fs, last loss %.5f", start, end, seconds, last_loss)
    return {"steps_done": end, "final_loss": last_loss,
            "mean_loss": float(np.mean(losses)) if losses else float("nan"),
            "seconds": seconds, "resumed_from": resumed_from}
