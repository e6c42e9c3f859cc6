"""The one training loop of ioda: pre-training, the fine-tune and ZSSR baselines and the direction loss differ only
in their step function and in what else their checkpoint carries (a sampler's RNG, counters).

One checkpoint format (plain tensors, lists and dicts: loadable with torch.load(weights_only=True)), one resume
check (settings and input hashes), one NaN/inf guard, one loss log (CSV, rows also kept in the checkpoint so a
resumed log is exact), one progress bar. Losses reach the host only every `log_every` steps (the only sync point on a GPU).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ioda.errors import IodaError
from ioda.files import atomic_path
from ioda.train.numerics import Numerics
from ioda.runtime import progress_enabled

LOG = logging.getLogger("ioda")
CHECKPOINT_KEYS = ("step", "model", "optimizer", "rng", "config", "loss_rows", "curve", "extra")


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint, loaded safely (ioda.safeload); a one-line IodaError naming the file otherwise."""
    from ioda.safeload import torch_load

    path = Path(path)
    state = torch_load(path)
    for key in CHECKPOINT_KEYS:
        if not isinstance(state, dict) or key not in state:
            raise IodaError(f"{path}: not an ioda training checkpoint (key {key!r} missing); remove it or use a new "
                            f"output folder")
    return state


def check_resumable(path: Path, saved: dict[str, Any], config: dict[str, Any], keys: Sequence[str]) -> None:
    """A resumed run must share `keys` of its settings, and its input files (config["inputs"]: name -> sha256),
    with the run it continues."""
    for k in keys:
        a, b = saved.get(k), config.get(k)
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            a, b = list(a), list(b)
        if a != b:
            raise IodaError(f"{path}: cannot resume: checkpoint has {k}={saved.get(k)!r}, this run asks "
                            f"{k}={config.get(k)!r} (use the same setting or a new output folder)")
    had = saved.get("inputs") or {}
    for k, want in (config.get("inputs") or {}).items():
        if had.get(k) != want:
            raise IodaError(f"{path}: cannot resume: this run's {k} (sha256 {str(want)[:12]}) is not the one the "
                            f"checkpoint was made from (sha256 {str(had.get(k))[:12]}); use the same {k} or a new "
                            f"output folder")


def _write_csv(path: Path, header: list[str], rows: list) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _fmt(row: Sequence) -> list:
    return [row[0], *(f"{v:.8g}" for v in row[1:])]


class TrainLoop:
    """Runs `step_fn(step) -> loss` (forward, backward and optimizer step of update `step`, from 0) until `steps`.

    - config: this run's settings, saved in the checkpoint; `resume_keys` of them must match on resume;
    - lr_fn: step -> learning rate set on the optimizer before the update (logged as a third CSV column);
    - extra: objects with state_dict()/load_state_dict() that travel in the checkpoint too (a sampler, counters);
    - eval_fn: model -> {mean_psnr, mean_ssim} every `eval_every` steps, written to `curve_csv` (an oracle curve
      for plots; it never picks the model);
    - numerics: the run's ioda.train.numerics.Numerics (its TF32 setting holds while the loop runs; the step
      function applies its autocast and compiled forwards). Default: fp32 eager, PyTorch's settings untouched.
    """

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, step_fn: Callable[[int], torch.Tensor], *,
                 steps: int, config: dict[str, Any], resume_keys: Sequence[str] = (),
                 ckpt_path: str | os.PathLike | None = None, ckpt_every: int = 0, log_every: int = 1,
                 log_csv: str | os.PathLike | None = None, lr_fn: Callable[[int], float] | None = None,
                 eval_fn: Callable[[nn.Module], dict] | None = None, eval_every: int = 0,
                 curve_csv: str | os.PathLike | None = None, extra: dict[str, Any] | None = None,
                 eval_at_start: bool = False, desc: str = "train", numerics: Numerics | None = None):
        self.model, self.opt, self.step_fn, self.steps = model, opt, step_fn, steps
        self.config, self.resume_keys = config, tuple(resume_keys)
        self.ckpt_path = Path(ckpt_path) if ckpt_path else None
        self.ckpt_every, self.log_every = ckpt_every, max(1, log_every)
        self.log_csv = Path(log_csv) if log_csv else None
        self.curve_csv = Path(curve_csv) if curve_csv else None
        self.lr_fn, self.eval_fn, self.eval_every = lr_fn, eval_fn, eval_every
        self.extra = extra or {}
        self.eval_at_start = eval_at_start  # step 0: the source model, as the authors' initial test
        self.desc = desc
        self.numerics = numerics or Numerics()
        # cumulative over resumes: training time with the evaluations taken out, and the evaluations' time
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.step = 0
        self.resumed_from: int | None = None
        self.loss_rows: list[tuple] = []
        self.curve: list[dict] = []

    @property
    def header(self) -> list[str]:
        return ["step", "loss"] + (["lr"] if self.lr_fn else [])

    # -- checkpointing -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.opt.state_dict(),
            "rng": rng_state(),
            "config": self.config,
            "loss_rows": [list(r) for r in self.loss_rows],
            "curve": self.curve,
            "extra": {k: v.state_dict() for k, v in self.extra.items()},
            "seconds": [self.train_seconds, self.eval_seconds],
        }

    def save_checkpoint(self) -> None:
        with atomic_path(self.ckpt_path) as tmp:
            torch.save(self.state_dict(), tmp)

    def resume(self) -> bool:
        """Continue from the checkpoint if there is one (a first run started with resume starts fresh)."""
        if self.ckpt_path is None:
            raise IodaError("training: resume requested but no checkpoint path was given")
        if not self.ckpt_path.is_file():
            LOG.info("resume: no checkpoint %s yet, starting from scratch", self.ckpt_path)
            return False
        state = load_checkpoint(self.ckpt_path)
        check_resumable(self.ckpt_path, state["config"], self.config, self.resume_keys)
        try:
            self.model.load_state_dict(state["model"])
        except (RuntimeError, TypeError, KeyError) as err:
            first = " ".join(str(err).split())[:160]
            raise IodaError(f"{self.ckpt_path}: the checkpoint's weights do not fit this model (another "
                            f"architecture or size? {first}...); use the same model or a new output folder") from None
        self.opt.load_state_dict(state["optimizer"])
        for k, v in self.extra.items():
            v.load_state_dict(state["extra"][k])
        set_rng_state(state["rng"])
        self.step = self.resumed_from = int(state["step"])
        self.loss_rows = [(int(r[0]), *map(float, r[1:])) for r in state["loss_rows"]]
        self.curve = list(state["curve"])
        self.train_seconds, self.eval_seconds = (float(x) for x in state.get("seconds", (0.0, 0.0)))
        LOG.info("resumed from %s at step %d", self.ckpt_path, self.step)
        return True

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train up to `steps` (or `stop_at`, as if the job were interrupted there, checkpoint written)."""
        with self.numerics.precision():
            return self._run(stop_at)

    def _run(self, stop_at: int | None) -> dict[str, Any]:
        end = self.steps if stop_at is None else min(self.steps, stop_at)
        start = self.step
        pending: list[tuple[int, torch.Tensor, float | None]] = []
        t0 = time.perf_counter()
        evaluate = bool(self.eval_every and self.eval_fn)
        if evaluate and self.eval_at_start and self.step == 0 and not self.curve:
            self.evaluate()
        self._mark = (time.perf_counter(), self.eval_seconds)
        bar = tqdm(total=end, initial=self.step, desc=self.desc, disable=not progress_enabled())
        try:
            while self.step < end:
                lr = None
                if self.lr_fn:
                    lr = self.lr_fn(self.step)
                    for g in self.opt.param_groups:
                        g["lr"] = lr
                loss = self.step_fn(self.step)
                self.step += 1
                pending.append((self.step, loss, lr))
                bar.update(1)
                due_ckpt = bool(self.ckpt_path and self.ckpt_every) and (
                    self.step % self.ckpt_every == 0 or self.step == end)
                if due_ckpt or self.step % self.log_every == 0 or self.step == end:
                    self._sync(pending)
                    bar.set_postfix(loss=f"{self.loss_rows[-1][1]:.4f}")
                if evaluate and (self.step % self.eval_every == 0 or self.step == end):
                    self.evaluate()
                if due_ckpt:
                    self._tick()
                    self.save_checkpoint()
        finally:
            bar.close()
        self._tick()
        seconds = time.perf_counter() - t0
        self.write_logs()
        new = [r[1] for r in self.loss_rows if r[0] > start]
        return {"steps_done": self.step, "seconds": seconds, "resumed_from": self.resumed_from,
                "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds,
                "first_loss": self.loss_rows[0][1] if self.loss_rows else None,
                "final_loss": self.loss_rows[-1][1] if self.loss_rows else float("nan"),
                "mean_loss": sum(new) / len(new) if new else float("nan")}

    def write_logs(self) -> None:
        """The loss log and the curve. Written once, at the end (an earlier run's log survives a failed one); the
        rows also travel in the checkpoint, so a resumed log is exact and holds no rows past the checkpoint."""
        if self.log_csv:
            self.log_csv.parent.mkdir(parents=True, exist_ok=True)
            _write_csv(self.log_csv, self.header, [_fmt(r) for r in self.loss_rows])
        if self.curve and self.curve_csv:
            with atomic_path(self.curve_csv) as tmp, open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["step", "psnr", "ssim"])
                w.writeheader()
                w.writerows(self.curve)

    def check_finite(self, rows: list[tuple[int, float]]) -> None:
        """The NaN/inf guard: (step, loss) rows that reached the host."""
        for st, v in rows:
            if not math.isfinite(v):
                where = (f"last good checkpoint {self.ckpt_path} is kept" if self.ckpt_path and self.ckpt_path.is_file()
                         else "no checkpoint written")
                raise IodaError(f"training: loss is {v} at step {st} (NaN/inf; try a lower learning rate); "
                                f"stopped, {where}")

    def device_sync(self) -> None:
        if torch.cuda.is_available() and next(self.model.parameters()).is_cuda:
            torch.cuda.synchronize()  # queued training kernels belong to the training time, not the evaluation's

    def evaluate(self) -> None:
        """One evaluation of the model now (eval mode), appended to the curve; its time goes to eval_seconds."""
        self.device_sync()
        start = time.perf_counter()
        self.model.eval()
        summary = self.eval_fn(self.model)
        self.model.train()
        self.curve.append({"step": self.step, "psnr": summary["mean_psnr"], "ssim": summary["mean_ssim"]})
        self.eval_seconds += time.perf_counter() - start

    def _tick(self) -> None:
        """Add the wall time since the last mark, minus the evaluations in it, to the training seconds."""
        self.device_sync()
        now, (t0, e0) = time.perf_counter(), self._mark
        self.train_seconds += now - t0 - (self.eval_seconds - e0)
        self._mark = (now, self.eval_seconds)

    def _sync(self, pending: list) -> None:
        """The NaN guard and the loss log: the pending losses reach the host here, once."""
        values = torch.stack([v for _, v, _ in pending]).float().cpu().tolist()
        self.check_finite([(st, v) for (st, _, _), v in zip(pending, values)])
        rows = [(st, v) + ((lr,) if self.lr_fn else ()) for (st, _, lr), v in zip(pending, values)]
        self.loss_rows += rows
        pending.clear()
