"""K adaptation runs stepped together: one forward of the K target models (torch.func.stack_module_state + vmap),
one frozen source-model forward and one CLIP forward for all K batches.

Why: a small SR network on a GPU is launch-bound; K runs in one step keep it busy with the same number of kernel
launches as one. Each run keeps its own weights, optimiser state (Adam is elementwise, so one Adam over the
stacked parameters is K independent Adams) and sampler, so run k sees exactly the batches of a run of its own;
its losses and weights match that run up to floating-point reassociation of the batched kernels (tested:
tests/test_stacked.py states the tolerance). The runs must share the source model, the encoder, the variant and
the settings (their photos, labels and seeds differ).

Not here: checkpoint/resume and mid-run evaluation (the sequential path, DirectionTrainer, has both);
`benchmarks/adapt_step.py --runs K` measures whether stacking pays on a machine.
"""

from __future__ import annotations

import copy
import math
import time

import torch
from torch.func import functional_call, stack_module_state

from ioda.adapt.batches import Batch
from ioda.adapt.trainer import DirectionTrainer
from ioda.errors import IodaError


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
        self.opt = torch.optim.Adam(self.params.values(), lr=first.settings.lr, betas=tuple(first.settings.betas))
        self.step = 0

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
        losses = self.lead.step_loss(b, self._forward, runs=self.k)
        self.opt.zero_grad(set_to_none=True)
        losses.sum().backward()  # run k's weights only reach loss k: the sum's gradient is each run's own
        self.opt.step()
        self.step += 1
        return losses.detach()

    def run(self, steps: int | None = None) -> list[dict]:
        """Train `steps` (default: the settings' steps) and write the weights back; per run: its losses."""
        steps = self.lead.settings.steps if steps is None else steps
        t0 = time.perf_counter()
        losses = torch.stack([self.train_step() for _ in range(steps)]) if steps else torch.zeros(0, self.k)
        rows = losses.float().cpu().tolist()
        for i, row in enumerate(rows, start=self.step - steps + 1):
            bad = [k for k, v in enumerate(row) if not math.isfinite(v)]
            if bad:
                raise IodaError(f"stacked adaptation: loss is {row[bad[0]]} at step {i} of run {bad[0]} "
                                "(NaN/inf; try a lower learning rate)")
        self.write_back()
        seconds = time.perf_counter() - t0
        return [{"steps": self.step, "seconds": seconds / self.k, "seconds_all_runs": seconds,
                 "losses": [r[k] for r in rows], "final_loss": rows[-1][k] if rows else None}
                for k in range(self.k)]

    @torch.no_grad()
    def write_back(self) -> None:
        for k, t in enumerate(self.trainers):
            for name, p in t.model_t.named_parameters():
                p.copy_(self.params[name][k])
            for name, b in t.model_t.named_buffers():
                if name in self.buffers:
                    b.copy_(self.buffers[name][k])
