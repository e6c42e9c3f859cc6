import pytest
import torch

from ioda.adapt.losses import LOSSES, direction_loss, direction_loss_lrsim, direction_terms, get_loss
from ioda.adapt.variants import VARIANTS, Variant, get_variant
from ioda.errors import IodaError


def _unit(v):
    return torch.nn.functional.normalize(torch.as_tensor(v, dtype=torch.float64), dim=-1)


def test_collinear_directions_give_zero_and_opposite_give_two():
    e_lr_s, e_lr_t = _unit([[1.0, 0.0, 0.0]]), _unit([[0.0, 1.0, 0.0]])
    # dSR parallel to dLR (scaled by 3): loss 0
    e_sr_s = _unit([[0.0, 0.0, 1.0]])
    e_sr_t = e_sr_s + 3 * (e_lr_t - e_lr_s)
    assert direction_loss(e_lr_s, e_lr_t, e_sr_s, e_sr_t).item() == pytest.approx(0.0, abs=1e-12)
    # dSR opposite: loss 2
    e_sr_t = e_sr_s - 0.5 * (e_lr_t - e_lr_s)
    assert direction_loss(e_lr_s, e_lr_t, e_sr_s, e_sr_t).item() == pytest.approx(2.0, abs=1e-12)
    # orthogonal: loss 1
    d = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)  # dLR = (-1, 1, 0)/.. -> orthogonal to (1,1,0)
    assert direction_loss(e_lr_s, e_lr_t, e_sr_s, e_sr_s + d).item() == pytest.approx(1.0, abs=1e-12)


def test_batch_mean_and_zero_direction_stays_finite():
    a = torch.randn(4, 8, dtype=torch.float64)
    terms = direction_terms(a, a.clone())
    assert torch.allclose(terms, torch.zeros(4, dtype=torch.float64), atol=1e-12)
    zero = torch.zeros(2, 8)
    assert torch.isfinite(direction_terms(zero, torch.randn(2, 8))).all()


def test_lrsim_weights_each_sample_by_source_target_similarity():
    torch.manual_seed(0)
    e = [torch.nn.functional.normalize(torch.randn(3, 16), dim=-1) for _ in range(4)]
    plain = direction_terms(e[1] - e[0], e[3] - e[2])
    weight = torch.nn.functional.cosine_similarity(e[0], e[1], dim=-1)
    assert direction_loss_lrsim(*e).item() == pytest.approx((plain * weight).mean().item(), rel=1e-6)
    assert direction_loss(*e).item() == pytest.approx(plain.mean().item(), rel=1e-6)


def test_gradient_flows_only_through_target_sr():
    e_lr_s, e_lr_t, e_sr_s = (torch.randn(2, 8) for _ in range(3))
    e_sr_t = torch.randn(2, 8, requires_grad=True)
    for name in LOSSES:
        e_sr_t.grad = None
        get_loss(name)(e_lr_s, e_lr_t, e_sr_s, e_sr_t).backward()
        assert e_sr_t.grad is not None and e_sr_t.grad.abs().sum() > 0


def test_unknown_loss_and_variant_names_are_refused():
    with pytest.raises(IodaError, match="loss 'nope'"):
        get_loss("nope")
    with pytest.raises(IodaError, match="variant 'nope'"):
        get_variant("nope")
    with pytest.raises(IodaError, match="region='circle'"):
        Variant("x", region="circle")


def test_variant_registry_covers_every_ablation_row():
    # Tables 1-3, 5, 6 rows, and the effect study's control
    assert set(VARIANTS) == {
        "baseline", "image_guided", "real_hr", "text_guided", "occlusion", "grid", "box", "instance", "ioda",
        "ioda_untrained", "finetune", "zssr",
    }
    ioda = VARIANTS["ioda"]
    control = VARIANTS["ioda_untrained"]
    assert control.encoder == "untrained" and ioda.encoder == "configured"
    assert (control.region, control.occlusion, control.reference, control.guidance) == (
        ioda.region, ioda.occlusion, ioda.reference, ioda.guidance)
    assert ioda.region == "instance" and ioda.occlusion and ioda.reference == "sr" and ioda.guidance == "image"
    assert VARIANTS["real_hr"].reference == "hr"
    assert VARIANTS["text_guided"].guidance == "text"
    assert get_variant("text_guided", prompts=("driving in a game", "driving")).prompts == ("driving in a game", "driving")
