"""The adaptation loop for the direction-loss variants.

M_S is frozen; M_T starts as a copy of it and is the only thing trained. Per step only E(M_T(LR_T)) needs
autograd: E(LR_S), E(LR_T) and E(M_S(LR_S)) (or E(HR_S)) are computed under no_grad, in one batched
tower forward. A fixed step budget decides when to stop; the optional PSNR-vs-step curve on target HR (step 0
included) gives the oracle best step reported beside the final one, and never picks the saved model.
The protocol (ioda.protocol) decides whether SR outputs are clamped and occlusion-masked before CLIP and
the precision of `auto` numerics (bf16 autocast on CUDA, or the authors' fp32 SR + fp16 CLIP); the numerics
setting (ioda.train.numerics) can ask for fp32 or the fast path instead. Seconds: adaptation only; the
evaluations are timed apart (eval_seconds).
"""

from __future__ import annotations

import copy
import math
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from ioda.adapt.batches import Batch, DirectionSampler
from ioda.adapt.losses import get_loss
from ioda.protocol import get_protocol
from ioda.adapt.settings import AdaptSettings
from ioda.adapt.variants import Variant
from ioda.train.loop import TrainLoop
from ioda.train.numerics import Numerics

LOG = logging.getLogger("ioda.adapt")

FALLBACK_WARN = 0.5  # warn when more than this share of instance draws fell back to a full mask




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
        # the authors' SR networks run in fp32 (their CLIP in fp16: ioda.clip.loading.build_encoder)
        self.numerics = Numerics.resolve(settings.numerics, device, fp32_default=self.protocol.clip_fp16,
                                         channels_last=settings.channels_last)
        self.forward_s, self.forward_t = (self.numerics.sr_forward(m) for m in (self.model_s, self.model_t))
        self.numerics.prepare_encoder(encoder)
        self.opt = torch.optim.Adam(self.model_t.parameters(), lr=settings.lr, betas=tuple(settings.betas))
        self.work_dir = Path(work_dir)
        self.ckpt_path = self.work_dir / "checkpoint.pt"
        self.eval_fn = eval_fn
        # sha256 of the photo, source model and label map: a resume must continue the run on the same inputs
        self.inputs = dict(inputs or {})
        self.fallbacks = 0
        self.samples = 0
        self.text_dir: torch.Tensor | None = None
        if variant.guidance == "text":
            src, tgt = variant.prompts
            with torch.no_grad():
                e = encoder.encode_text([src, tgt]).to(device)
            self.text_dir = e  # rows: source prompt, target prompt
        self.loop = TrainLoop(
            self.model_t, self.opt, lambda step: self.train_step(), steps=settings.steps,
            config={**self._resume_keys(), "inputs": self.inputs}, resume_keys=list(self._resume_keys()),
            ckpt_path=self.ckpt_path, ckpt_every=settings.ckpt_every, log_every=settings.log_every,
            log_csv=self.work_dir / "train_log.csv", eval_fn=eval_fn, eval_every=settings.eval_every,
            curve_csv=self.work_dir / "curve.csv", extra={"sampler": sampler, "trainer": self}, eval_at_start=True,
            desc=f"adapt[{variant.name}]", numerics=self.numerics)

    # -- checkpointing: the training loop's format; the sampler's RNG and the counters travel in it ------------
    def _resume_keys(self) -> dict:
        """Settings a resumed run must share with the run it continues (steps may grow)."""
        s = self.settings
        return {"variant": self.variant.name, "batch_size": s.batch_size, "lr_patch": s.lr_patch, "lr": s.lr,
                "betas": list(s.betas), "loss": s.loss, "seed": s.seed,
                "protocol": s.protocol}

    def state_dict(self) -> dict:
        return {"fallbacks": self.fallbacks, "samples": self.samples}

    def load_state_dict(self, state: dict) -> None:
        self.fallbacks, self.samples = int(state["fallbacks"]), int(state["samples"])

    @property
    def loss_rows(self) -> list[tuple[int, float]]:
        return self.loop.loss_rows

    @property
    def curve(self) -> list[dict]:
        return self.loop.curve

    @property
    def step(self) -> int:
        return self.loop.step

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

    def _sr(self, forward: Callable[[torch.Tensor], torch.Tensor], lr: torch.Tensor) -> torch.Tensor:
        """An SR forward under the run's numerics; its output is fp32 unless the whole step runs under autocast."""
        with self.numerics.autocast():
            out = forward(self.numerics.input(lr))
        return out if self.numerics.autocast_encoder else out.float()

    def train_step(self) -> torch.Tensor:
        b = self.sampler.sample().to(self.device)
        self.fallbacks += b.fallbacks
        self.samples += b.lr_t.shape[0]
        loss = self.step_loss(b, self.forward_t)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def step_loss(self, b: Batch, forward_t: Callable[[torch.Tensor], torch.Tensor], runs: int = 1) -> torch.Tensor:
        """The direction loss of one step. `forward_t` is M_T; with runs > 1, b holds the batches of that many
        runs one after another (same source model and encoder, ioda.adapt.stacked) and one loss per run is
        returned (shape [runs])."""
        n = b.lr_t.shape[0]
        with self.numerics.autocast(whole_step=True):
            with torch.no_grad():
                if self.variant.reference == "hr":
                    ref = b.hr_s
                else:
                    ref = self._sr_view(self._sr(self.forward_s, b.lr_s), b.keep_s_hr)
                if self.text_dir is not None:
                    e_lr_s = self.text_dir[0:1].expand(n, -1)
                    e_lr_t = self.text_dir[1:2].expand(n, -1)
                    e_sr_s = self._encode(ref, None)
                else:
                    # E(LR_S), E(LR_T) and E(M_S(LR_S)) in one tower forward.
                    e_lr_s, e_lr_t, e_sr_s = (self._features(e) for e in self.encoder.encode_images(
                        [(b.lr_s, None), (b.lr_t, b.alpha_t), (ref, None)]))
            sr_t = self._sr_view(self._sr(forward_t, b.lr_t), b.keep_t_hr)
            e_sr_t = self._encode(sr_t, b.alpha_t_hr)
            if runs == 1:
                return self.loss_fn(e_lr_s, e_lr_t, e_sr_s, e_sr_t)
            per_run = zip(*(e.chunk(runs) for e in (e_lr_s, e_lr_t, e_sr_s, e_sr_t)))
            return torch.stack([self.loss_fn(*parts) for parts in per_run])

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict:
        if resume and self.ckpt_path.exists():
            self.loop.resume()
        self.loop.run()
        return self.summary()

    def summary(self) -> dict:
        """The run's facts for adapt.json (after the loop ran, here or stepped with others: ioda.adapt.stacked)."""
        if self.variant.region == "instance" and self.samples and self.fallbacks > FALLBACK_WARN * self.samples:
            LOG.warning("%d of %d instance-mask draws found no usable instance and fell back to the full mask: "
                        "the label map has few or tiny instances (check it, or use another --mask-source)",
                        self.fallbacks, self.samples)
        best = max((c for c in self.curve if c["psnr"] is not None and math.isfinite(c["psnr"])),
                   key=lambda c: c["psnr"], default=None)
        return {
            "seconds": self.loop.train_seconds,  # adaptation only (Table 6); evaluations are in eval_seconds
            "eval_seconds": self.loop.eval_seconds,
            "evaluations": len(self.curve),
            # what the authors' wall clock measured
            "seconds_with_eval": self.loop.train_seconds + self.loop.eval_seconds,
            "final": ({"step": self.curve[-1]["step"], "psnr": self.curve[-1]["psnr"], "ssim": self.curve[-1]["ssim"]}
                      if self.curve else None),
            "best": best,  # oracle: picked on target HR, the authors' statistic
            "steps": self.step,
            "final_loss": self.loss_rows[-1][1] if self.loss_rows else None,
            "first_loss": self.loss_rows[0][1] if self.loss_rows else None,
            "instance_fallbacks": self.fallbacks,
            "instance_samples": self.samples,
        }
