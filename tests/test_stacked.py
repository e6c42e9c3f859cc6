"""K adaptation runs stepped together (ioda.adapt.stacked) against the same K runs one after another."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ioda.adapt.batches import Batch, DirectionSampler, SourcePool
from ioda.adapt.stacked import NotStackable, StackedTrainers
from ioda.adapt.trainer import AdaptSettings, DirectionTrainer
from ioda.adapt.variants import get_variant
from ioda.archs import build_model
from ioda.clip import build_encoder
from ioda.data.pairs import Pair
from ioda.errors import IodaError
from ioda.imageio import write_image

K = 3
# Stacked kernels sum in another order than one run's; Adam divides by sqrt(v), so a near-zero gradient summed
# differently moves its weight differently: weights agree to 1% of one step at lr 1e-3 (they move ~1e-3 in 3 steps).
ATOL_WEIGHTS, ATOL_LOSS = 1e-5, 1e-5


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stacked")
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(3):
        lr = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        write_image(tmp / f"lr{i}.png", lr)
        write_image(tmp / f"hr{i}.png", np.repeat(np.repeat(lr, 4, 0), 4, 1))
        pairs.append(Pair(str(i), tmp / f"lr{i}.png", tmp / f"hr{i}.png"))
    photos = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(K)]
    labels = (np.arange(48 * 48).reshape(48, 48) // 400 + 1).astype(np.int32)
    return tmp, photos, labels, SourcePool(pairs, 4, need_hr=False)


def _trainers(world, model_s, encoder, variant="ioda", seeds=(0, 1, 2), **settings_kw):
    tmp, photos, labels, source = world
    v = get_variant(variant)
    out = []
    for k, seed in enumerate(seeds):
        s = AdaptSettings(steps=3, batch_size=2, lr_patch=16, lr=1e-3, seed=seed, eval_every=0, **settings_kw)
        sampler = DirectionSampler(photos[k], labels if v.needs_labels else None, source, scale=4, lr_patch=16,
                                   batch_size=2, region=v.region, occlusion=v.occlusion, seed=seed)
        out.append(DirectionTrainer(model_s, encoder, sampler, v, s, torch.device("cpu"), tmp / f"run{k}"))
    return out


@pytest.mark.parametrize("variant", ["ioda", "image_guided"])
def test_stacked_runs_match_runs_one_after_another(world, variant):
    model_s = build_model("safmn_tiny", seed=0)
    encoder = build_encoder("tiny", seed=0)
    one_by_one = _trainers(world, model_s, encoder, variant)
    seq_losses = []
    for t in one_by_one:
        seq_losses.append([float(t.train_step()) for _ in range(3)])
    stacked = _trainers(world, model_s, encoder, variant)
    summaries = StackedTrainers(stacked).run()
    rows = [[loss for _, loss in t.loss_rows] for t in stacked]
    assert [r["steps"] for r in summaries] == [3] * K and summaries[0]["final_loss"] == rows[0][-1]
    moved = 0.0
    for k in range(K):
        np.testing.assert_allclose(rows[k], seq_losses[k], rtol=0, atol=ATOL_LOSS)
        for (name, a), b in zip(one_by_one[k].model_t.named_parameters(), stacked[k].model_t.parameters()):
            torch.testing.assert_close(b, a, rtol=0, atol=ATOL_WEIGHTS, msg=f"run {k}, {name}")
        moved = max(moved, max(float((p.detach() - q).abs().max()) for p, q in zip(stacked[k].model_t.parameters(),
                                                                             model_s.parameters())))
        assert stacked[k].samples == one_by_one[k].samples == 6
    assert moved > 50 * ATOL_WEIGHTS  # the runs trained: the tolerance is far below the change
    # the runs differ from each other (own photo, own seed): stacking did not mix them
    assert rows[0] != rows[1]
    # the source model is untouched
    torch.testing.assert_close(next(model_s.parameters()), next(build_model("safmn_tiny", seed=0).parameters()))


def test_stacked_refuses_runs_that_differ(world):
    model_s = build_model("safmn_tiny", seed=0)
    encoder = build_encoder("tiny", seed=0)
    a = _trainers(world, model_s, encoder, seeds=(0,))
    other_encoder = _trainers(world, model_s, build_encoder("tiny", seed=1), seeds=(1,))
    other_lr = _trainers(world, model_s, encoder, seeds=(1,))
    other_lr[0].settings.lr = 2e-3
    for other in (other_encoder, other_lr):
        with pytest.raises(IodaError, match="must share the source model, encoder"):
            StackedTrainers(a + other)
    with pytest.raises(IodaError, match="no runs"):
        StackedTrainers([])
    StackedTrainers(a + _trainers(world, model_s, encoder, seeds=(1,)))  # only the seed differs: accepted

def test_batch_cat_keeps_runs_in_order(world):
    _, photos, labels, source = world
    samplers = [DirectionSampler(photos[k], None, source, scale=4, lr_patch=16, batch_size=2, seed=k)
                for k in range(2)]
    parts = [s.sample() for s in samplers]
    b = Batch.cat(parts)
    assert b.lr_t.shape[0] == 4 and b.hr_s is None and b.fallbacks == sum(p.fallbacks for p in parts)
    torch.testing.assert_close(b.lr_t[2:], parts[1].lr_t, rtol=0, atol=0)


class ReadsData(torch.nn.Module):
    """x4 SR that reads `x.data` in its forward, as spandrel's DITN does: torch.vmap refuses it."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 48, 3, padding=1)
        self.up = torch.nn.PixelShuffle(4)

    def forward(self, x):
        _, _, h, w = x.data.shape
        return self.up(self.conv(x))[..., : 4 * h, : 4 * w]


def test_a_network_vmap_cannot_run_is_refused_before_training(world):
    encoder = build_encoder("tiny", seed=0)
    trainers = _trainers(world, ReadsData(), encoder, seeds=(0, 1))
    before = [t.model_t.conv.weight.detach().clone() for t in trainers]
    rng = torch.get_rng_state()
    with pytest.raises(NotStackable, match=r"ReadsData cannot be stepped under torch.vmap \(.*data"):
        StackedTrainers(trainers)
    assert torch.equal(torch.get_rng_state(), rng)  # the trial forward drew no random numbers
    assert all(torch.equal(t.model_t.conv.weight, w) for t, w in zip(trainers, before))
    assert trainers[0].sampler.sample() is not None  # and the runs can still go one after another
