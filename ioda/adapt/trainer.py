"""The adaptation loop for the direction-loss variants.

M_S is frozen; M_T starts as a copy of it and is the only thing trained. Per step only E(M_T(LR_T)) needs
autograd: E(LR_S), E(LR_T) and E(M_S(LR_S)) (or E(HR_S)) are computed under no_grad, in one batched
tower forward. A fixed step budget decides when to stop; the optional PSNR-vs-step curve on target HR (step 0
included) gives the oracle best step reported beside the final one, and never picks the saved model.
The protocol (ioda.adapt.protocol) decides whether SR outputs are clamped and occlusion-masked before CLIP and
the precision (bf16 autocast on CUDA, or the authors' fp32 SR + fp16 CLIP). Seconds: adaptation only; the
evaluations are timed apart (eval_seconds).
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ioda.adapt.batches import DirectionSampler
from ioda.adapt.losses import get_loss
from ioda.adapt.protocol import get_protocol
from ioda.adapt.variants import Variant
from ioda.config import defaults
from ioda.errors import IodaError
from ioda.files import atomic_path
from ioda.runtime import progress_enabled

LOG = logging.getLogger("ioda.adapt")

# Every default that steers a run comes from the params schema, its one home (tests/test_defaults.py checks).
_ADAPT, _RUN = defaults("adapt"), defaults("run")
AUTHORS_BETAS = tuple(_ADAPT["betas"])  # (0, 0.99**0.8)
FALLBACK_WARN = 0.5  # warn when more than this share of instance draws fell back to a full mask


@dataclass
class AdaptSettings:
    steps: int = _ADAPT["steps"]
    batch_size: int = _ADAPT["batch_size"]
    lr_patch: int = _ADAPT["lr_patch"]
    lr: float = _ADAPT["lr"]  # this run's Adam lr: adapt.lr (direction loss) or adapt.baseline_lr.<method>
    betas: tuple[float, float] = AUTHORS_BETAS
    loss: str | None = _ADAPT["loss"]  # None: the protocol's (authors direction_lrsim, paper direction)
    clip_input: str | None = _ADAPT["clip_input"]  # read by the encoder (None: the protocol's); recorded
    seed: int = _RUN["seed"]
    ckpt_every: int = 100
    log_every: int = 10  # losses reach the host (and are checked for NaN/inf) only this often
    eval_every: int = _ADAPT["eval_every"]
    amp: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; "off" forces fp32
    channels_last: bool = False
    region_opts: dict = field(default_factory=dict)
    occlusion_p: float = _ADAPT["occlusion"]["p"]
    occlusion_cell: int = _ADAPT["occlusion"]["cell"]
    occlusion_cell_p: float = _ADAPT["occlusion"]["cell_p"]
    protocol: str = _ADAPT["protocol"]
    clip_antialias: bool = _ADAPT["clip_antialias"]  # read by the encoder; kept here so adapt.json records it
    eval_batch: int = _ADAPT["eval_batch"]  # read by the evaluator

    def to_dict(self) -> dict:
        return asdict(self)


def use_autocast(device: torch.device, amp: str, protocol) -> bool:
    """bf16 autocast over SR and CLIP on CUDA (protocol paper, amp auto); the authors' SR networks run in fp32
    (their CLIP in fp16: ioda.clip.loading.build_encoder), so never under `authors`."""
    return device.type == "cuda" and amp == "auto" and not get_protocol(protocol).clip_fp16


def _write_log(path: Path, rows: list[tuple[int, float]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss"])
        w.writerows((s, f"{v:.8g}") for s, v in rows)


def _write_curve(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["step", "psnr", "ssim"])
        w.writeheader()
        w.writerows(rows)


class DirectionTrainer:
    """Trains M_T with the direction loss; checkpoints and resumes bit-exactly on CPU."""

    def __init__(
        self,
        model_s: torch.nn.Module,
        encoder,
        sampler: DirectionSampler,
        variant: Variant,
        settings: AdaptSettings,
        device: torch.device,
        work_dir: Path,
        eval_fn: Callable[[torch.nn.Module], dict] | None = None,
        inputs: dict[str, str | None] | None = None,
    ):
        self.variant, self.settings, self.device, self.sampler = variant, settings, device, sampler
        self.encoder = encoder
        self.protocol = get_protocol(settings.protocol)
        self.loss_fn = get_loss(settings.loss or self.protocol.loss)
        self.model_s = model_s.to(device).eval().requires_grad_(False)
        self.model_t = copy.deepcopy(self.model_s).requires_grad_(True).train()
        if settings.channels_last:
            self.model_s.to(memory_format=torch.channels_last)
            self.model_t.to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.model_t.parameters(), lr=settings.lr, betas=tuple(settings.betas))
        self.work_dir = Path(work_dir)
        self.ckpt_path = self.work_dir / "checkpoint.pt"
        self.eval_fn = eval_fn
        # sha256 of the photo, source model and label map: a resume must continue the run on the same inputs
        self.inputs = dict(inputs or {})
        self.step = 0
        self.loss_rows: list[tuple[int, float]] = []
        self.curve: list[dict] = []
        self.fallbacks = 0
        self.samples = 0
        self.amp = use_autocast(device, settings.amp, self.protocol)
        self.eval_seconds = 0.0
        self.adapt_seconds = 0.0
        self.text_dir: torch.Tensor | None = None
        if variant.guidance == "text":
            src, tgt = variant.prompts
            with torch.no_grad():
                e = encoder.encode_text([src, tgt]).to(device)
            self.text_dir = e  # rows: source prompt, target prompt

    # -- checkpointing -------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "model_t": self.model_t.state_dict(),
            "optimizer": self.opt.state_dict(),
            "sampler": self.sampler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "loss_rows": [[s, v] for s, v in self.loss_rows],
            "curve": self.curve,
            "fallbacks": self.fallbacks,
            "samples": self.samples,
            "seconds": [self.adapt_seconds, self.eval_seconds],
            "variant": self.variant.name,
            "settings": self._resume_keys(),
            "inputs": self.inputs,
        }

    def _resume_keys(self) -> dict:
        """Settings a resumed run must share with the run it continues (steps may grow)."""
        s = self.settings
        return {"batch_size": s.batch_size, "lr_patch": s.lr_patch, "lr": s.lr, "betas": list(s.betas),
                "loss": s.loss, "seed": s.seed, "protocol": s.protocol}

    def save_checkpoint(self) -> None:
        with atomic_path(self.ckpt_path) as tmp:
            torch.save(self.state_dict(), tmp)

    def load_checkpoint(self) -> None:
        from ioda.safeload import torch_load

        state = torch_load(self.ckpt_path, map_location=self.device)
        need = ("step", "model_t", "optimizer", "sampler", "torch_rng", "loss_rows", "curve", "fallbacks", "samples")
        if not isinstance(state, dict) or any(k not in state for k in need):
            raise IodaError(f"{self.ckpt_path}: not an ioda adaptation checkpoint (expected a dict with keys "
                            f"{', '.join(need)}); remove it or use a new --out-dir")
        if state.get("variant") != self.variant.name:
            raise IodaError(
                f"{self.ckpt_path}: checkpoint is for variant {state.get('variant')!r}, not {self.variant.name!r}"
            )
        for key, want in self._resume_keys().items():
            had = state.get("settings", {}).get(key)
            if had != want:
                raise IodaError(f"{self.ckpt_path}: cannot resume with {key}={want!r}; the checkpoint was made "
                                f"with {key}={had!r} (use the same setting or a new --out-dir)")
        had_inputs = state.get("inputs") or {}
        for key, want in self.inputs.items():
            if had_inputs.get(key) != want:
                raise IodaError(f"{self.ckpt_path}: cannot resume: this run's {key} (sha256 {str(want)[:12]}) is not "
                                f"the one the checkpoint was made from (sha256 {str(had_inputs.get(key))[:12]}); "
                                f"use the same {key} or a new --out-dir")
        try:
            self.model_t.load_state_dict(state["model_t"])
        except (RuntimeError, TypeError, KeyError) as err:
            first = " ".join(str(err).split())[:160]
            raise IodaError(f"{self.ckpt_path}: the checkpoint's weights do not fit this model (another "
                            f"architecture or size? {first}...); use the same --model or a new --out-dir") from None
        self.opt.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.step = int(state["step"])
        self.loss_rows = [(int(s), float(v)) for s, v in state["loss_rows"]]
        self.curve = list(state["curve"])
        self.fallbacks, self.samples = int(state["fallbacks"]), int(state["samples"])
        self.adapt_seconds, self.eval_seconds = (float(x) for x in state.get("seconds", (0.0, 0.0)))

    # -- one step --------------------------------------------------------------------------------------------
    def _encode(self, img: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
        return self._features(self.encoder.encode_image(img, alpha))

    def _features(self, e: torch.Tensor) -> torch.Tensor:
        # authors: the loss is computed on CLIP's own (fp16 on CUDA) features, as their loss file does
        return e if self.protocol.clip_fp16 else e.float()

    def _sr_view(self, sr: torch.Tensor, keep_hr: torch.Tensor) -> torch.Tensor:
        """What of an SR output enters CLIP: clamped and occlusion-masked (paper) or raw (authors)."""
        if self.protocol.clamp_sr:
            sr = sr.clamp(0, 1)
        return sr * keep_hr if self.protocol.mask_sr else sr

    def train_step(self) -> torch.Tensor:
        b = self.sampler.sample().to(self.device)
        n = b.lr_t.shape[0]
        self.fallbacks += b.fallbacks
        self.samples += n
        cl = torch.channels_last if self.settings.channels_last else torch.contiguous_format
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            with torch.no_grad():
                if self.variant.reference == "hr":
                    ref = b.hr_s
                else:
                    ref = self._sr_view(self.model_s(b.lr_s.contiguous(memory_format=cl)), b.keep_s_hr)
                if self.text_dir is not None:
                    e_lr_s = self.text_dir[0:1].expand(n, -1)
                    e_lr_t = self.text_dir[1:2].expand(n, -1)
                    e_sr_s = self._encode(ref, None)
                else:
                    # E(LR_S), E(LR_T) and E(M_S(LR_S)) in one tower forward.
                    e_lr_s, e_lr_t, e_sr_s = (self._features(e) for e in self.encoder.encode_images(
                        [(b.lr_s, None), (b.lr_t, b.alpha_t), (ref, None)]))
            sr_t = self._sr_view(self.model_t(b.lr_t.contiguous(memory_format=cl)), b.keep_t_hr)
            e_sr_t = self._encode(sr_t, b.alpha_t_hr)
            loss = self.loss_fn(e_lr_s, e_lr_t, e_sr_s, e_sr_t)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def _tick(self) -> None:
        """Add the wall time since the last mark, minus the evaluations in it, to the adaptation seconds."""
        self._sync()
        now, (t0, e0) = time.perf_counter(), self._mark
        self.adapt_seconds += now - t0 - (self.eval_seconds - e0)
        self._mark = (now, self.eval_seconds)

    def _sync(self) -> None:
        if self.device.type == "cuda":  # queued training kernels belong to the adaptation time, not the evaluation's
            torch.cuda.synchronize(self.device)

    def _evaluate(self) -> None:
        self._sync()
        start = time.perf_counter()
        self.model_t.eval()
        summary = self.eval_fn(self.model_t)
        self.model_t.train()
        self.curve.append({"step": self.step, "psnr": summary["mean_psnr"], "ssim": summary["mean_ssim"]})
        self.eval_seconds += time.perf_counter() - start

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict:
        s = self.settings
        if resume and self.ckpt_path.exists():
            self.load_checkpoint()
            LOG.info("resumed from %s at step %d", self.ckpt_path, self.step)
        pending: list[tuple[int, torch.Tensor]] = []
        evaluate = bool(s.eval_every and self.eval_fn)
        if evaluate and self.step == 0 and not self.curve:
            self._evaluate()  # step 0: the source model, as the authors' initial test
        self._mark = (time.perf_counter(), self.eval_seconds)
        bar = tqdm(total=s.steps, initial=self.step, desc=f"adapt[{self.variant.name}]", disable=not progress_enabled())
        while self.step < s.steps:
            loss = self.train_step()
            self.step += 1
            pending.append((self.step, loss))
            bar.update(1)
            due_log = self.step % s.log_every == 0 or self.step == s.steps
            due_ckpt = s.ckpt_every and (self.step % s.ckpt_every == 0 or self.step == s.steps)
            if due_log or due_ckpt:
                values = torch.stack([v for _, v in pending]).float().cpu().tolist()  # the only sync point
                bad = [st for (st, _), v in zip(pending, values) if not math.isfinite(v)]
                if bad:
                    kept = f"last good checkpoint {self.ckpt_path}" if self.ckpt_path.exists() else "no checkpoint yet"
                    raise IodaError(f"loss became {values[-1]} at step {bad[0]} (try a lower --lr); {kept}")
                self.loss_rows += [(st, v) for (st, _), v in zip(pending, values)]
                pending.clear()
                bar.set_postfix(loss=f"{values[-1]:.4f}")
            if evaluate and (self.step % s.eval_every == 0 or self.step == s.steps):
                self._evaluate()
            if due_ckpt:
                self._tick()
                self.save_checkpoint()
        bar.close()
        self._tick()
        _write_log(self.work_dir / "train_log.csv", self.loss_rows)
        if self.curve:
            _write_curve(self.work_dir / "curve.csv", self.curve)
        if self.variant.region == "instance" and self.samples and self.fallbacks > FALLBACK_WARN * self.samples:
            LOG.warning("%d of %d instance-mask draws found no usable instance and fell back to the full mask: "
                        "the label map has few or tiny instances (check it, or use another --mask-source)",
                        self.fallbacks, self.samples)
        best = max((c for c in self.curve if c["psnr"] is not None and math.isfinite(c["psnr"])),
                   key=lambda c: c["psnr"], default=None)
        return {
            "seconds": self.adapt_seconds,  # adaptation only (Table 6); evaluations are in eval_seconds
            "eval_seconds": self.eval_seconds,
            "evaluations": len(self.curve),
            "seconds_with_eval": self.adapt_seconds + self.eval_seconds,  # what the authors' wall clock measured
            "final": ({"step": self.curve[-1]["step"], "psnr": self.curve[-1]["psnr"], "ssim": self.curve[-1]["ssim"]}
                      if self.curve else None),
            "best": best,  # oracle: picked on target HR, the authors' statistic
            "steps": self.step,
            "final_loss": self.loss_rows[-1][1] if self.loss_rows else None,
            "first_loss": self.loss_rows[0][1] if self.loss_rows else None,
            "instance_fallbacks": self.fallbacks,
            "instance_samples": self.samples,
        }
