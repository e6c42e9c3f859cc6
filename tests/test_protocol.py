"""adapt.protocol: each row a-l of the authors-vs-paper table against hand-computed values, and the
"done when" check: ImageEncoder.prepare under `authors` equals the authors' torchvision pipelines composed as
in their loss file (My_alpha_clip_loss.py: preprocess = Normalize(-1, 2) + CLIP's Resize(S, bicubic) +
CenterCrop(S) + CLIP Normalize; mask_transform = Normalize([-1], [2]) + Resize((S, S)) + Normalize([0.5], [0.26]))."""


import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from torchvision.transforms import InterpolationMode

from ioda.adapt.losses import get_loss
from ioda.protocol import PROTOCOLS, get_protocol
from ioda.train.numerics import Numerics
from ioda.clip import build_encoder
from ioda.clip.preprocess import prepare_alpha, prepare_image
from ioda.errors import IodaError
from ioda.masks import masks_to_label_map, occlusion_keep_mask, sample_region, upsample_mask

AUTHORS, PAPER = PROTOCOLS["authors"], PROTOCOLS["paper"]
FG = (1.0 - 0.5) / 0.26  # 1.923...
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def test_registry_and_unknown_protocol():
    assert set(PROTOCOLS) == {"authors", "paper"} and get_protocol("authors") is AUTHORS
    with pytest.raises(IodaError, match="protocol 'exact'"):
        get_protocol("exact")


# ---- a: the loss -----------------------------------------------------------------------------------------
def _authors_loss(src_lr, tar_lr, src_sr, tar_sr):
    """My_alpha_clip_loss.my_clip_directional_loss on already-normalised features, transcribed."""
    edit_lr = tar_lr - src_lr
    edit_lr = edit_lr / edit_lr.norm(dim=-1, keepdim=True)
    edit = tar_sr - src_sr
    edit = edit / edit.norm(dim=-1, keepdim=True)
    sim = F.cosine_similarity(src_lr, tar_lr, dim=1, eps=1e-6)
    return (sim * (1.0 - torch.nn.CosineSimilarity()(edit, edit_lr))).mean()


def test_a_weighted_loss_equals_the_authors_and_hand_values():
    loss = get_loss(AUTHORS.loss)
    assert AUTHORS.loss == "direction_lrsim" and PAPER.loss == "direction"
    g = torch.Generator().manual_seed(0)
    feats = [F.normalize(torch.randn(5, 16, generator=g), dim=-1) for _ in range(4)]
    assert loss(*feats).item() == pytest.approx(_authors_loss(*feats).item(), abs=1e-6)
    # by hand: E(LR_S)=(1,0), E(LR_T)=(0.6,0.8): weight 0.6; dSR opposite to dLR: 1 - cos = 2 -> 1.2
    s, t = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.6, 0.8]])
    assert loss(s, t, t, s).item() == pytest.approx(1.2, abs=1e-6)
    assert get_loss(PAPER.loss)(s, t, t, s).item() == pytest.approx(2.0, abs=1e-6)
    # orthogonal LR features: weight 0, the sample contributes nothing
    assert loss(s, torch.tensor([[0.0, 1.0]]), s, t).item() == pytest.approx(0.0, abs=1e-7)


# ---- b, c: what CLIP receives (and the "done when" check) ------------------------------------------------
def _authors_reference(img, mask, size, mean, std, antialias):
    preprocess = T.Compose([T.Normalize(mean=[-1.0, -1.0, -1.0], std=[2.0, 2.0, 2.0]),
                            T.Resize(size, interpolation=InterpolationMode.BICUBIC, antialias=antialias),
                            T.CenterCrop(size), T.Normalize(mean, std)])
    mask_transform = T.Compose([T.Normalize([-1.0], [2.0]), T.Resize((size, size), antialias=antialias),
                                T.Normalize([0.5], [0.26])])
    return torch.cat([preprocess(img), mask_transform(mask.to(float)).unsqueeze(1).float()], dim=1)


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("hw", [(96, 96), (40, 40), (64, 80)])
def test_done_when_prepare_equals_the_authors_torchvision_pipelines(antialias, hw):
    enc = build_encoder("tiny", protocol="authors", antialias=antialias)
    assert enc.dtype == torch.float32  # fp16 only on CUDA
    g = torch.Generator().manual_seed(1)
    img = torch.rand(2, 3, *hw, generator=g)
    mask = torch.rand(2, *hw, generator=g) > 0.5  # their dataloader's batched boolean masks (BxHxW)
    got = enc.prepare(img, mask[:, None].float())
    ref = _authors_reference(img, mask, enc.image_size, enc.mean, enc.std, antialias)
    assert got.shape == (2, 4, enc.image_size, enc.image_size)
    assert (got - ref).abs().max().item() < 1e-4


def test_done_when_at_the_real_sizes_512_and_128_to_224():
    g = torch.Generator().manual_seed(2)
    for side in (512, 128):  # SR crop (downscale) and LR crop (upscale)
        img, mask = torch.rand(1, 3, side, side, generator=g), torch.rand(1, side, side, generator=g) > 0.3
        x = prepare_image(img, 224, CLIP_MEAN, CLIP_STD, "gan_quirk", fit="resize_crop")
        a = prepare_alpha(mask[:, None], 1, 224, "cpu", torch.float32, mode="soft")
        ref = _authors_reference(img, mask, 224, CLIP_MEAN, CLIP_STD, True)
        assert (torch.cat([x, a], 1) - ref).abs().max().item() < 1e-4


def test_b_image_range_and_c_alpha_values_by_hand():
    authors, paper = build_encoder("tiny", protocol="authors"), build_encoder("tiny", protocol="paper")
    s = authors.image_size
    black = torch.zeros(1, 3, s, s)
    mean, std = torch.tensor(authors.mean).view(3, 1, 1), torch.tensor(authors.std).view(3, 1, 1)
    # b: the authors' SR in [0,1] is read as a GAN output: 0 -> 0.5 before CLIP's Normalize
    assert torch.allclose(authors.prepare(black)[0, :3], ((0.5 - mean) / std).expand(3, s, s), atol=1e-6)
    assert torch.allclose(paper.prepare(black)[0, :3], ((0.0 - mean) / std).expand(3, s, s), atol=1e-6)
    # c: a half mask at the tower's size: off 0.0 and on 1.923 (authors), -1.923 / +1.923 (paper)
    mask = torch.zeros(1, 1, s, s)
    mask[..., : s // 2] = 1
    a_auth, a_paper = authors.prepare(black, mask)[0, 3], paper.prepare(black, mask)[0, 3]
    on, off = torch.full((s, s // 2), FG), torch.zeros(s, s // 2)
    assert torch.allclose(a_auth[:, : s // 2], on) and torch.equal(a_auth[:, s // 2:], off)  # exactly 0.0
    assert torch.allclose(a_paper[:, : s // 2], on) and torch.allclose(a_paper[:, s // 2:], -on)
    # full mask (source images, rows without region masks): 1.923 everywhere in both
    assert torch.allclose(authors.prepare(black)[0, 3], torch.full((s, s), FG))
    # the authors' bilinear resize keeps soft edges: a 2x upscale of a step has a value strictly between
    small = torch.zeros(1, 1, s // 2, s // 2)
    small[..., : s // 4] = 1
    soft = authors.prepare(torch.zeros(1, 3, s // 2, s // 2), small)[0, 3]
    assert ((soft > 0.01) & (soft < FG - 0.01)).any()
    hard = paper.prepare(torch.zeros(1, 3, s // 2, s // 2), small)[0, 3]
    assert all(abs(abs(v) - FG) < 1e-5 for v in torch.unique(hard).tolist())


def test_b_authors_feed_the_raw_sr_output_unclamped():
    assert AUTHORS.clamp_sr is False and PAPER.clamp_sr is True
    enc = build_encoder("tiny", protocol="authors")
    over = torch.full((1, 3, enc.image_size, enc.image_size), 1.5)
    # 1.5 -> (1.5 + 1) / 2 = 1.25 reaches CLIP's Normalize untouched (no clamp anywhere in the image path)
    want = (1.25 - torch.tensor(enc.mean).view(3, 1, 1)) / torch.tensor(enc.std).view(3, 1, 1)
    assert torch.allclose(enc.prepare(over)[0, :3], want.expand_as(enc.prepare(over)[0, :3]), atol=1e-6)


# ---- d: instance candidates ------------------------------------------------------------------------------
def test_d_label_zero_is_a_candidate_when_large_and_the_threshold_is_not_scaled():
    crop = np.zeros((128, 128), np.int32)  # label 0: 128*128 - 2000 px, no SAM mask covers it
    crop[:20, :100] = 1  # 2000 px
    rng = np.random.default_rng(0)
    opts = AUTHORS.region_opts("instance")
    drawn_zero = [sample_region("instance", crop, rng, **opts)[0][100, 100] for _ in range(200)]
    assert any(drawn_zero) and not all(drawn_zero)  # label 0 drawn sometimes (k ~ U{1..2}, distinct)
    assert not any(sample_region("instance", crop, rng)[0][100, 100] for _ in range(200))  # paper: never
    # the authors' 1000 px stands for any crop size; ours scales with the area (250 px at 64x64)
    small = np.zeros((64, 64), np.int32)
    small[:, :10] = 1  # 640 px; label 0 has 3456 px
    m, fell = sample_region("instance", small, rng)
    assert not fell and m[:, :10].all() and not m[:, 10:].any()
    for _ in range(20):
        m, fell = sample_region("instance", small, rng, **opts)
        assert not fell and not m[:, :10].any() and m[:, 10:].all()  # only label 0 qualifies
    tiny = np.zeros((30, 30), np.int32)  # 900 px in all: nothing reaches 1000 -> the counted fallback
    m, fell = sample_region("instance", tiny, rng, **opts)
    assert fell and m.all()


# ---- e: SAM label map -------------------------------------------------------------------------------------
def test_e_sam_order_later_masks_on_top_min_area_on_the_raw_mask():
    a = np.zeros((20, 20), bool)
    a[:10, :15] = True  # 150 px
    b = np.zeros((20, 20), bool)
    b[:10, 5:] = True  # 150 px, covers 100 px of a
    sam = masks_to_label_map([a, b], (20, 20), min_area=100, paint="sam_order")
    assert (sam[:10, 5:] == 2).all() and (sam[:10, :5] == 1).all() and (sam[10:] == 0).all()
    # a keeps only 50 visible px: largest-first (ties keep order: a then b on top) drops it, sam_order keeps it
    ours = masks_to_label_map([a, b], (20, 20), min_area=100)
    assert (ours[:10, :5] == 0).all() and (ours[:10, 5:] == 1).all()
    # SAM's order, not area: a big mask listed after a small one hides it
    small = np.zeros((20, 20), bool)
    small[2:12, 2:12] = True
    big = np.ones((20, 20), bool)
    assert set(np.unique(masks_to_label_map([small, big], (20, 20), paint="sam_order"))) == {2}
    assert 2 in set(np.unique(masks_to_label_map([small, big], (20, 20))))


# ---- f: HR region mask --------------------------------------------------------------------------------------
def test_f_bilinear_eq_erodes_two_hr_pixels_at_x4():
    lr = np.zeros((4, 4), bool)
    lr[:, 1:3] = True  # LR columns 1, 2 -> nearest HR columns 4..11
    near, auth = upsample_mask(lr, 4), upsample_mask(lr, 4, "bilinear_eq")
    assert np.flatnonzero(near[0]).tolist() == list(range(4, 12))
    assert np.flatnonzero(auth[0]).tolist() == list(range(6, 10))  # 2 HR px off each side
    border = np.zeros((4, 4), bool)
    border[:, :2] = True  # touching the image border: clamped sampling, no erosion there
    assert np.flatnonzero(upsample_mask(border, 4, "bilinear_eq")[0]).tolist() == list(range(0, 6))
    one = np.zeros((4, 4), bool)
    one[:, 1] = True  # a one-LR-pixel line vanishes
    assert not upsample_mask(one, 4, "bilinear_eq").any()


def test_f_bilinear_eq_is_bilinear_resize_equal_to_255():
    """cv2.resize(INTER_LINEAR) and torch's bilinear (align_corners=False) use the same half-pixel grid."""
    rng = np.random.default_rng(3)
    for shape in [(16, 16), (9, 13)]:
        lr = rng.random(shape) > 0.4
        up = F.interpolate(torch.from_numpy(lr.astype(np.float64) * 255)[None, None], scale_factor=4,
                           mode="bilinear", align_corners=False)[0, 0].numpy()
        assert np.array_equal(upsample_mask(lr, 4, "bilinear_eq"), up == 255)


# ---- g: occlusion --------------------------------------------------------------------------------------------
def test_g_authors_occlude_whole_cells_only():
    rng = np.random.default_rng(0)
    keep = occlusion_keep_mask(80, 80, rng, cell=32, cell_p=1.0, partial_cells=False)
    assert not keep[:64, :64].any() and keep[64:, :].all() and keep[:, 64:].all()
    assert not occlusion_keep_mask(80, 80, rng, cell=32, cell_p=1.0).any()  # ours: edge cells too
    assert AUTHORS.mask_sr is False and PAPER.mask_sr is True


# ---- h: precision --------------------------------------------------------------------------------------------
def test_h_precision_fp32_sr_under_authors_and_fp16_clip():
    cuda = torch.device("cuda")
    paper, authors = (Numerics.resolve("auto", cuda, fp32_default=p.clip_fp16) for p in (PAPER, AUTHORS))
    assert paper.autocast_sr and paper.autocast_encoder and not (authors.autocast_sr or authors.autocast_encoder)
    assert not Numerics.resolve("auto", torch.device("cpu")).autocast_encoder
    enc = build_encoder("tiny", protocol="authors", half=True)  # what CUDA gets under authors
    assert enc.visual.conv1.weight.dtype == torch.float16 and enc.visual.conv1_alpha.weight.dtype == torch.float16
    assert enc.visual.ln_pre.weight.dtype == torch.float32  # LayerNorms stay fp32, as OpenAI CLIP's fp16
    x = enc.prepare(torch.rand(1, 3, 40, 40, requires_grad=True))
    assert x.dtype == torch.float16
    feats = enc.encode_image(torch.rand(2, 3, 40, 40))
    assert feats.dtype == torch.float16 and torch.isfinite(feats).all()
    assert build_encoder("tiny", protocol="authors").dtype == torch.float32  # on CPU: fp32


# ---- i: encoder for rows without region masks ---------------------------------------------------------------
def test_i_plain_clip_for_rows_without_region_masks_only_under_paper():
    assert PAPER.plain_clip_full and not AUTHORS.plain_clip_full


# ---- j, k: evaluation schedule, best step, timing -------------------------------------------------------------
def test_j_authors_evaluate_every_10_steps_and_l_crop_hr():
    from ioda.config import paper_config

    assert paper_config()["adapt"]["eval_every"] == 10  # a setting, not a protocol knob
    assert AUTHORS.eval_crop_hr and not PAPER.eval_crop_hr


def test_configs_paper_uses_authors_and_every_config_evaluates_every_direction_run():
    from ioda.config import load_config
    from ioda.adapt.variants import VARIANTS
    from ioda.plan import Plan

    paper = load_config("config/paper.yaml")
    assert paper["adapt"]["protocol"] == "authors" and paper["adapt"]["eval_every"] == 10
    assert paper["adapt"]["loss"] is None and paper["adapt"]["clip_input"] is None  # the protocol's
    for path in ("config/paper.yaml", "params.yaml", ".test/config.yaml"):
        plan = Plan(load_config(path))
        runs = [r for r in plan.adapt_runs() if VARIANTS[r.variant].direction]
        assert runs and all(plan.evaluates(r) for r in runs)  # final and oracle best step in every table
    assert load_config("params.yaml")["adapt"]["protocol"] == "paper"
