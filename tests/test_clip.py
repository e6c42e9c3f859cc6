"""Alpha-CLIP encoder on open_clip: equivalence with plain CLIP, strict Alpha-CLIP weight loading, gradients,
alpha sensitivity, offline text, offline failure of pretrained tags."""

import pathlib
import time

import open_clip
import pytest
import torch

from ioda.clip import build_encoder
from ioda.clip.preprocess import prepare_alpha, prepare_image
from ioda.errors import IodaError
from ioda.standins.weights import released_alpha_layout


@pytest.fixture(scope="module")
def tiny():
    return build_encoder("tiny", seed=0)


def _reference(enc, name):
    """open_clip's own model with the encoder's weights (everything but conv1_alpha)."""
    ref = open_clip.create_model(name, pretrained=None)
    state = {k: v for k, v in enc.clip.state_dict().items() if k != "visual.conv1_alpha.weight"}
    ref.load_state_dict(state, strict=True)
    return ref.eval().requires_grad_(False)


_released_layout = released_alpha_layout  # Alpha-CLIP's release layout (module. prefix, attn.in_proj.*)


def test_tiny_zero_alpha_equals_open_clip(tiny):
    ref = _reference(tiny, "tiny")
    img = torch.rand(3, 3, 80, 100, generator=torch.Generator().manual_seed(1))
    mask = (torch.rand(3, 1, 80, 100, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    x = prepare_image(img, tiny.image_size, tiny.mean, tiny.std)
    expected = ref.encode_image(x, normalize=True)
    assert torch.equal(tiny.encode_image(img), expected)
    assert torch.equal(tiny.encode_image(img, mask), expected)  # zero conv1_alpha: the mask cannot matter
    assert tiny.embed_dim == 64 and tiny.image_size == 64 and tiny.untrained
    assert "UNTRAINED" in tiny.description and "\n" not in tiny.description


def test_vit_b16_zero_alpha_equals_open_clip():
    enc = build_encoder("ViT-B-16-quickgelu", seed=0)
    ref = _reference(enc, "ViT-B-16-quickgelu")
    img = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    x = prepare_image(img, 224, enc.mean, enc.std)
    assert torch.equal(enc.encode_image(img), ref.encode_image(x, normalize=True))
    assert enc.embed_dim == 512 and enc.mean == tuple(open_clip.OPENAI_DATASET_MEAN)


def test_released_alpha_checkpoint_loads_and_reproduces(tmp_path, tiny):
    src = build_encoder("tiny", seed=7)  # other weights, so loading must really replace them
    torch.nn.init.normal_(src.visual.conv1_alpha.weight, std=0.05)
    path = tmp_path / "alpha_tiny.pth"
    torch.save(_released_layout(src.visual.state_dict()), path)
    enc = build_encoder("tiny", seed=0, alpha_weights=str(path))
    img = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 16:48, 8:40] = 1
    assert torch.equal(enc.encode_image(img, mask), src.encode_image(img, mask))
    assert not torch.allclose(enc.encode_image(img, mask), tiny.encode_image(img, mask))
    assert "alpha_tiny.pth" in enc.description and "text tower UNTRAINED" in enc.description
    assert not enc.untrained  # the whole image tower came from the checkpoint


def test_released_checkpoint_key_and_shape_errors(tmp_path, tiny):
    good = _released_layout(tiny.visual.state_dict())
    assert "module.transformer.resblocks.0.attn.in_proj.weight" in good

    missing = dict(good)
    del missing["module.conv1_alpha.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(IodaError, match=r"missing\.pth.*missing key\(s\) conv1_alpha\.weight"):
        build_encoder("tiny", alpha_weights=str(tmp_path / "missing.pth"))

    extra = dict(good, **{"module.text_projection": torch.zeros(3)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(IodaError, match=r"extra\.pth.*unexpected key\(s\) text_projection"):
        build_encoder("tiny", alpha_weights=str(tmp_path / "extra.pth"))

    # open_clip naming instead of the released one: both sides of the difference are named
    renamed = {k.replace("attn.in_proj.weight", "attn.in_proj_w"): v for k, v in good.items()}
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(IodaError, match=r"missing key\(s\) transformer\.resblocks\.0\.attn\.in_proj\.weight.*unexpected"):
        build_encoder("tiny", alpha_weights=str(tmp_path / "renamed.pth"))

    shape = dict(good, **{"module.proj": good["module.proj"].t().contiguous()[:, :32]})
    torch.save(shape, tmp_path / "shape.pth")
    with pytest.raises(IodaError, match=r"shape\.pth: key 'proj' has shape \(64, 32\), expected \(64, 64\)"):
        build_encoder("tiny", alpha_weights=str(tmp_path / "shape.pth"))

    with pytest.raises(IodaError, match="nowhere.pth: Alpha-CLIP weights file not found"):
        build_encoder("tiny", alpha_weights=str(tmp_path / "nowhere.pth"))

    # a pickle referencing an arbitrary global: weights_only refuses it, and so must we
    torch.save({"x": pathlib.PurePosixPath("a")}, tmp_path / "pickle.pth")
    with pytest.raises(IodaError, match=r"refused: .*pickle.pth contains code \(pathlib.PurePosixPath\), not only tensors"):
        build_encoder("tiny", alpha_weights=str(tmp_path / "pickle.pth"))


def test_gradients_reach_the_input(tiny):
    for input_range in ("unit", "gan_quirk"):
        enc = tiny if input_range == "unit" else build_encoder("tiny", input_range="gan_quirk")
        img = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(5)).requires_grad_(True)
        mask = torch.ones(2, 1, 128, 128)
        mask[:, :, :64] = 0
        target = enc.encode_image(torch.rand(2, 3, 32, 32)).detach()
        loss = (1 - torch.nn.functional.cosine_similarity(enc.encode_image(img, mask), target)).sum()
        loss.backward()
        assert img.grad is not None and torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in tiny.parameters())


def test_nonzero_alpha_conv_makes_features_depend_on_mask():
    enc = build_encoder("tiny", seed=0)
    with torch.no_grad():
        torch.nn.init.normal_(enc.visual.conv1_alpha.weight, std=0.05, generator=torch.Generator().manual_seed(0))
    img = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    left, right = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
    left[..., :32], right[..., 32:] = 1, 1
    f_left, f_right = enc.encode_image(img, left), enc.encode_image(img, right)
    assert (f_left - f_right).abs().max() > 1e-3
    assert torch.equal(enc.encode_image(img, None), enc.encode_image(img, torch.ones(1, 1, 64, 64)))
    assert torch.allclose(f_left.norm(dim=-1), torch.ones(1))


def test_alpha_preprocessing_and_gan_quirk(tiny):
    mask = torch.zeros(1, 1, 128, 128)
    mask[..., :, :50] = 1  # 50 of 128 columns -> 25 of 64 columns after the majority vote
    a = prepare_alpha(mask, 1, 64, "cpu", torch.float32)
    assert torch.allclose(a.abs(), torch.full_like(a, 0.5 / 0.26))  # only +-1.92: binary after resizing
    assert int((a[0, 0, 0] > 0).sum()) == 25
    quirk = build_encoder("tiny", input_range="gan_quirk")
    img = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    assert torch.allclose(quirk.encode_image(img), tiny.encode_image((img + 1) / 2), atol=1e-6)
    with pytest.raises(ValueError, match="input_range"):
        build_encoder("tiny", input_range="minus_one")


def test_text_encoding_offline(tiny):
    t = tiny.encode_text(["driving", "driving in a game"])
    assert t.shape == (2, 64)
    assert torch.allclose(t.norm(dim=-1), torch.ones(2))
    assert (t[0] - t[1]).abs().max() > 1e-4
    assert torch.equal(t, tiny.encode_text(["driving", "driving in a game"]))


def test_seed_and_frozen_eval():
    a, b, c = build_encoder("tiny", seed=3), build_encoder("tiny", seed=3), build_encoder("tiny", seed=4)
    img = torch.rand(1, 3, 64, 64)
    assert torch.equal(a.encode_image(img), b.encode_image(img))
    assert not torch.equal(a.encode_image(img), c.encode_image(img))
    parent = torch.nn.Sequential(a)
    parent.train()
    assert not a.training and not any(m.training for m in a.modules())


def test_openai_tag_offline_fails_fast(monkeypatch):
    """No network at all: refused at once, before any download attempt (never touches the net)."""
    from ioda.clip import loading

    monkeypatch.setattr(loading, "_cached_weights", lambda cfg: None)
    monkeypatch.setattr(loading, "_host_reachable", lambda host, timeout=3.0: False)
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained",
                        lambda *a, **k: pytest.fail("download attempted while offline"))
    start = time.perf_counter()
    with pytest.raises(IodaError, match=r"pretrained='openai'.*not in the local cache.*unreachable.*local file path"):
        build_encoder("ViT-B-16-quickgelu", pretrained="openai")
    assert time.perf_counter() - start < 5


def test_openai_tag_download_error_is_one_clear_line(monkeypatch):
    """The host answers but the download fails (proxy, HTTP error): IodaError, not a traceback."""
    from ioda.clip import loading

    calls = []

    def failing(cfg, *args, **kwargs):
        calls.append(cfg)
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(loading, "_cached_weights", lambda cfg: None)
    monkeypatch.setattr(loading, "_host_reachable", lambda host, timeout=3.0: True)
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", failing)
    with pytest.raises(IodaError, match=r"pretrained='openai'.*could not download.*name resolution") as err:
        build_encoder("ViT-B-16-quickgelu", pretrained="openai")
    assert calls and "\n" not in str(err.value)


def test_pretrained_file_and_bad_inputs(tmp_path):
    src = build_encoder("tiny", seed=11)
    state = {k: v for k, v in src.clip.state_dict().items() if k != "visual.conv1_alpha.weight"}
    torch.save(state, tmp_path / "tiny_clip.pt")
    enc = build_encoder("tiny", pretrained=str(tmp_path / "tiny_clip.pt"), seed=0)
    img = torch.rand(1, 3, 64, 64)
    assert not enc.untrained and "tiny_clip.pt" in enc.description
    assert torch.equal(enc.encode_image(img), src.encode_image(img))

    torch.save({"visual.proj": torch.zeros(2)}, tmp_path / "wrong.pt")
    with pytest.raises(IodaError, match="wrong.pt: not usable as open_clip/OpenAI weights for tiny"):
        build_encoder("tiny", pretrained=str(tmp_path / "wrong.pt"))
    with pytest.raises(IodaError, match="neither an existing file nor an open_clip tag"):
        build_encoder("tiny", pretrained="laion_nonexistent")
    with pytest.raises(IodaError, match="clip model 'ViT-Q-99': unknown"):
        build_encoder("ViT-Q-99")
    with pytest.raises(IodaError, match="no plain open_clip ViT image tower"):
        build_encoder("RN50")


def test_cached_weights_are_found_without_network(tmp_path, monkeypatch):
    import huggingface_hub

    from ioda.clip import loading

    monkeypatch.setenv("HOME", str(tmp_path))
    url_cfg = {"url": "https://openaipublic.azureedge.net/clip/models/abc/ViT-B-16.pt"}
    assert loading._cached_weights(url_cfg) is None
    (tmp_path / ".cache" / "clip").mkdir(parents=True)
    (tmp_path / ".cache" / "clip" / "ViT-B-16.pt").write_bytes(b"x")
    assert loading._cached_weights(url_cfg) == str(tmp_path / ".cache" / "clip" / "ViT-B-16.pt")

    hub_file = tmp_path / "open_clip_model.safetensors"
    hub_file.write_bytes(b"x")
    seen = []

    def fake_cache(repo, name, *a, **k):
        seen.append((repo, name))
        return str(hub_file) if name == "open_clip_model.safetensors" else None

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", fake_cache)
    assert loading._cached_weights({"hf_hub": "timm/vit_base_patch16_clip_224.openai/"}) == str(hub_file)
    assert seen[0] == ("timm/vit_base_patch16_clip_224.openai", "open_clip_model.safetensors")


def test_encode_images_batches_equal_separate_calls():
    from ioda.clip import build_encoder

    enc = build_encoder("tiny", seed=0)
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 32, 32, generator=g)
    m = (torch.rand(2, 1, 32, 32, generator=g) > 0.5).float()
    b = torch.rand(2, 3, 128, 128, generator=g)
    with torch.no_grad():
        together = enc.encode_images([(a, None), (a, m), (b, None)])
        apart = [enc.encode_image(a), enc.encode_image(a, m), enc.encode_image(b)]
    assert [t.shape for t in together] == [(2, enc.embed_dim)] * 3
    for x, y in zip(together, apart):
        assert torch.allclose(x, y, atol=1e-5)
    assert not torch.allclose(together[0], together[2], atol=1e-3)


def test_random_alpha_init_makes_untrained_features_depend_on_the_mask():
    from ioda.clip import build_encoder

    zero, rand = build_encoder("tiny", seed=0), build_encoder("tiny", seed=0, alpha_init="random")
    assert not zero.visual.conv1_alpha.weight.any() and rand.visual.conv1_alpha.weight.abs().sum() > 0
    again = build_encoder("tiny", seed=0, alpha_init="random")
    assert torch.equal(rand.visual.conv1_alpha.weight, again.visual.conv1_alpha.weight)  # seeded
    img = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    half = torch.zeros(1, 1, 64, 64)
    half[..., :32] = 1
    with torch.no_grad():
        assert torch.equal(zero.encode_image(img, half), zero.encode_image(img))
        assert not torch.allclose(rand.encode_image(img, half), rand.encode_image(img), atol=1e-4)
    assert "alpha conv random" in rand.description
    with pytest.raises(IodaError, match="alpha_init 'ones'"):
        build_encoder("tiny", alpha_init="ones")
