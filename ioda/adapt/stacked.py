"""K adaptation runs stepped together: one forward of the K target models (torch.func.stack_module_state + vmap),
one frozen source-model forward and one CLIP forward for all K batches.

Why: a small SR network on a GPU is launch-bound; K runs in one step keep it busy with the same number of kernel
launches as one. On a CPU it pays too (benchmarks/adapt_step.py, demo preset: 4 runs 1.74-1.81x faster). Each
run keeps its own weights, optimiser state (Adam is elementwise, so one Adam over the
stacked parameters is K independent Adams) and sampler, so run k sees exactly the batches of a run of its own;
its losses and weights match that run up to floating-point reassociation of the batched kernels. Adam divides
each gradient by its own running RMS, so a weight whose gradient is at rounding level can move by up to one step
(lr) of either sign: the bound on weights is about lr, on outputs far less. Measured after 3 steps (CPU): at the
authors' lr 1e-5, CRAFT's weights within 1.1e-5 and its SR output within 2.4e-6 (one 8-bit level is 3.9e-3),
safmn_tiny's within 1.5e-8 and 4.8e-7; at lr 1e-3, safmn_tiny's weights within 3e-6, losses 1e-6, curve PSNR
1e-3 dB (the tests' bounds: tests/test_stacked.py, tests/test_adapt.py).

Networks torch.vmap cannot run (DITN reads `x.data`; any layer drawing random numbers in training mode) are
found by one trial forward before any training and refused with NotStackable; `ioda adapt --stack` then adapts
the images one after another instead. The runs must share the source model, the encoder, the variant and
the settings (their photos, labels and seeds differ).

The K runs are stepped by the one training loop (ioda.train.loop.TrainLoop); each run keeps its own
bookkeeping (loss log, NaN guard, evaluations every eval_every steps, summary) in its DirectionTrainer's
TrainLoop. Not here: checkpoints and resume (one run per process has both).
`benchmarks/adapt_step.py --runs K` measures whether stacking pays on a machine; `ioda adapt --pool DIR --index
0 1 2 --stack` uses it.
"""

from __future__ import annotations

import copy
import time

import torch
from torch.func import functional_call, stack_module_state

from ioda.adapt.batches import Batch
from ioda.adapt.trainer import DirectionTrainer
from ioda.errors import IodaError
from ioda.train.loop import TrainLoop


class NotStackable(IodaError):
    """This network cannot be stepped under torch.vmap; run the images one after another."""


def _same(a, b) -> bool:
    d1, d2 = a.settings.to_dict(), b.settings.to_dict()
    d1.pop("seed"), d2.pop("seed")
    return d1 == d2 and a.variant == b.variant and a.encoder is b.encoder and a.model_s is b.model_s


class StackedTrainers:
    """Steps the target models of K DirectionTrainers together; `write_back()` copies the weights into them."""

    def __init__(self, trainers: list[DirectionTrainer]):
        if not trainers:
            raise IodaError("stacked adaptation: no runs given")
        first = trainers[0]
        for t in trainers[1:]:
            if not _same(first, t):
                raise IodaError("stacked adaptation: the runs must share the source model, encoder, variant and "
                                "settings (only photo, labels and seed may differ)")
        if first.settings.channels_last:
            raise IodaError("stacked adaptation: channels_last is not supported (vmap over stacked weights)")
        self.trainers, self.lead, self.k = trainers, first, len(trainers)
        self.params, self.buffers = stack_module_state([t.model_t for t in trainers])
        self.base = copy.deepcopy(first.model_t).to("meta")  # the architecture only; weights come from params
        self._check_vmap()
        self._step_forward = first.numerics.compile_function(self._forward)  # the run's numerics: compiled or not
        self.opt = torch.optim.Adam(self.params.values(), lr=first.settings.lr, betas=tuple(first.settings.betas))
        self.step = 0

    def _check_vmap(self) -> None:
        """One small forward under vmap, without gradients and with the RNG state restored: fails before any
        training for networks vmap cannot run."""
        p = self.lead.settings.lr_patch
        x = torch.zeros(self.k, 3, p, p, device=self.lead.device)
        devices = [self.lead.device] if self.lead.device.type == "cuda" else []
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                self._forward(x)
        except RuntimeError as err:
            arch = type(self.lead.model_t).__name__
            msg = " ".join(str(err).split())[:160]
            raise NotStackable(f"stacked adaptation: {arch} cannot be stepped under torch.vmap ({msg})") from None

    def _forward(self, lr_t: torch.Tensor) -> torch.Tensor:
        def one(params, buffers, x):
            return functional_call(self.base, (params, buffers), (x,))

        x = lr_t.unflatten(0, (self.k, -1))
        return torch.vmap(one)(self.params, self.buffers, x).flatten(0, 1)

    def train_step(self) -> torch.Tensor:
        """One step of every run; returns the K losses (detached, on the device)."""
        batches = [t.sampler.sample() for t in self.trainers]
        for t, b in zip(self.trainers, batches):
            t.fallbacks += b.fallbacks
            t.samples += b.lr_t.shape[0]
        b = Batch.cat(batches).to(self.lead.device)
        losses = self.lead.step_loss(b, self._step_forward, runs=self.k)
        self.opt.zero_grad(set_to_none=True)
        losses.sum().backward()  # run k's weights only reach loss k: the sum's gradient is each run's own
        self.opt.step()
        self.step += 1
        return losses.detach()

    def run(self) -> list[dict]:
        """Train every run to the settings' steps with each run's own bookkeeping (its TrainLoop: loss log, NaN
        guard, evaluations at step 0 and every eval_every steps into its curve, seconds); the weights are written
        back into each trainer's model_t. Returns each run's summary, as DirectionTrainer.run does."""
        s = self.lead.settings
        loops = [t.loop for t in self.trainers]
        with self.lead.numerics.precision():
            return self._run(s, loops)

    def _run(self, s, loops) -> list[dict]:
        if any(lp.step for lp in loops) or self.step:
            raise IodaError("stacked adaptation: runs start from step 0 (no resume; use one run per process)")
        evaluate = bool(s.eval_every and any(t.eval_fn for t in self.trainers))
        loop = _StackedLoop(self, evaluate)
        loop.run()
        self.write_back()
        for lp in loops:
            lp.step = self.step
            lp.train_seconds = loop.train_seconds / self.k  # the K runs shared every step: each is charged its share
            lp.write_logs()
        return [t.summary() for t in self.trainers]

    def _evaluate_all(self) -> None:
        self.write_back()
        for t in self.trainers:
            if t.eval_fn is not None:
                t.loop.step = self.step
                t.loop.evaluate()

    @torch.no_grad()
    def write_back(self) -> None:
        for k, t in enumerate(self.trainers):
            for name, p in t.model_t.named_parameters():
                p.copy_(self.params[name][k])
            for name, b in t.model_t.named_buffers():
                if name in self.buffers:
                    b.copy_(self.buffers[name][k])


class _StackedLoop(TrainLoop):
    """The one training loop, stepping K runs at once: each step's K losses go to the runs' own loops (their loss
    logs and NaN guards), an evaluation evaluates every run. No checkpoints (stacked runs do not resume)."""

    def __init__(self, stack: StackedTrainers, evaluate: bool):
        s, lead = stack.lead.settings, stack.lead
        # eval_fn only switches the evaluations on: evaluate() below evaluates every run with its own eval_fn
        super().__init__(lead.model_t, stack.opt, lambda step: stack.train_step(), steps=s.steps, config={},
                         log_every=s.log_every, eval_fn=(lambda model: {}) if evaluate else None,
                         eval_every=s.eval_every if evaluate else 0, eval_at_start=True,
                         desc=f"adapt[{lead.variant.name}] x{stack.k}")
        self.stack = stack

    def _sync(self, pending: list) -> None:
        """Losses reach the host here, once per log_every steps: each run's NaN guard and loss log."""
        # one row of K losses per step (a single run's loss is a scalar: reshaped to a row of one)
        values = torch.stack([v for _, v, _ in pending]).float().reshape(len(pending), -1).cpu().tolist()
        for k, t in enumerate(self.stack.trainers):
            rows = [(st, row[k]) for (st, _, _), row in zip(pending, values)]
            t.loop.check_finite(rows)
            t.loop.loss_rows += rows
        self.loss_rows += [(st, sum(row) / len(row)) for (st, _, _), row in zip(pending, values)]
        pending.clear()

    def evaluate(self) -> None:
        self.device_sync()
        start = time.perf_counter()
        self.stack._evaluate_all()
        self.eval_seconds += time.perf_counter() - start
