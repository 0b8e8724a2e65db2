"""Tests for iadtutor.ulsad: losses and attention against hand / brute-force computations, shapes of every
branch, quantile normalisation against numpy, training, determinism and save / load.

Everything runs on CPU with 64 px images and tiny channel counts (a few seconds in all)."""

import math

import numpy as np
import pytest
import torch

from iadtutor.backbones import load_backbone
from iadtutor.ulsad import (
    PAPER_TEXT,
    ULSAD,
    FeatureReconstructionNetwork,
    GlobalAutoencoder,
    ULSADConfig,
    ULSADModel,
    aggregate_features,
    attend,
    consistency_loss,
    cross_attention_weights,
    direction_distance,
    distance_map,
    evaluate_ulsad,
    fit_quantiles,
    local_global_loss,
    local_loss,
    magnitude_distance,
    normalize_map,
    self_attention_weights,
    training_batches,
    upsample_sizes,
)
from torch import nn

SIZE = 64


def tiny_config(**changes) -> ULSADConfig:
    settings = dict(image_size=SIZE, feature_channels=32, frn_encoder_channels=(16, 32, 32),
                    frn_decoder_channels=(16, 16), ae_encoder_channels=(8, 8, 8, 8, 8, 8), ae_decoder_channels=8,
                    blur_sigma=1.0, batch_size=4, epochs=2, seed=0)
    settings.update(changes)
    return ULSADConfig(**settings)


def disk_images(n: int, seed: int, size: int = SIZE) -> torch.Tensor:
    """Noisy images of a coloured disk at a jittered position, floats in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = []
    for _ in range(n):
        cy, cx = (size // 2 + torch.randint(-3, 4, (2,), generator=generator)).tolist()
        disk = (((yy - cy) ** 2 + (xx - cx) ** 2) < (size // 5) ** 2).float()
        image = torch.stack([0.2 + 0.6 * disk, 0.3 + 0.2 * disk, 0.5 - 0.3 * disk])
        images.append((image + 0.03 * torch.randn(3, size, size, generator=generator)).clamp(0, 1))
    return torch.stack(images)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the tiny tensors here gain nothing from more, and shared cores lose a lot."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("efficientnet_lite0", device="cpu", verbose=False)


@pytest.fixture(scope="module")
def data():
    return {"train": disk_images(12, seed=0), "val": disk_images(4, seed=1), "test": disk_images(3, seed=2)}


@pytest.fixture(scope="module")
def fitted(backbone, data):
    model = ULSAD(tiny_config(epochs=3), backbone=backbone, device="cpu")
    model.fit(data["train"], data["val"], progress=False)
    return model


# -- distances and losses by hand ----------------------------------------------------------------------------
# Two channels on a 2 x 2 map; location (i, j) holds the vectors below.
PREDICTED = {(0, 0): (1.0, 0.0), (0, 1): (0.0, 2.0), (1, 0): (3.0, 4.0), (1, 1): (1.0, 1.0)}
TARGET = {(0, 0): (1.0, 0.0), (0, 1): (0.0, -1.0), (1, 0): (6.0, 8.0), (1, 1): (1.0, -1.0)}
# ||p - t||^2: 0, 9, 9 + 16, 4;  1 - cos: 0 (same direction), 2 (opposite), 0 (parallel), 1 (orthogonal).
HAND_LV = [[0.0, 9.0], [25.0, 4.0]]
HAND_LD = [[0.0, 2.0], [0.0, 1.0]]


def as_map(vectors: dict) -> torch.Tensor:
    out = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    for (i, j), vector in vectors.items():
        out[0, :, i, j] = torch.tensor(vector)
    return out


def test_distances_match_hand_computation():
    p, t = as_map(PREDICTED), as_map(TARGET)
    # eq. 2 sums over the channels; the authors' code (our default) takes the mean over the c = 2 channels.
    assert torch.allclose(magnitude_distance(p, t, "sum"), torch.tensor([HAND_LV], dtype=torch.float64))
    assert torch.allclose(magnitude_distance(p, t), torch.tensor([HAND_LV], dtype=torch.float64) / 2)
    assert torch.allclose(direction_distance(p, t), torch.tensor([HAND_LD], dtype=torch.float64))
    expected_map = torch.tensor([[[0.0, 9.0 + 0.5 * 2], [25.0, 4.0 + 0.5]]], dtype=torch.float64)
    assert torch.allclose(distance_map(p, t, 0.5, "sum"), expected_map)
    expected_mean = torch.tensor([[[0.0, 4.5 + 0.5 * 2], [12.5, 2.0 + 0.5]]], dtype=torch.float64)
    assert torch.allclose(distance_map(p, t, 0.5), expected_mean)


def test_local_loss_eq1_by_hand():
    p, t = as_map(PREDICTED), as_map(TARGET)
    # (1/k*) sum_k l_v + lambda l_d with k* = 4 and lambda_l = 0.5: (0 + 10 + 25 + 4.5) / 4.
    assert local_loss(p, t, 0.5, "sum").item() == pytest.approx(39.5 / 4)
    # lambda_l = 0 leaves the squared distances only; "mean" (the default) divides l_v by c* = 2.
    assert local_loss(p, t, 0.0, "sum").item() == pytest.approx(38.0 / 4)
    assert local_loss(p, t, 0.5).item() == pytest.approx((0 + 5.5 + 12.5 + 2.5) / 4)
    # eq. 6 is the same formula between U~'' and U^.
    assert local_global_loss(p, t, 0.5, "sum").item() == pytest.approx(39.5 / 4)
    assert local_global_loss(p, t, 0.5).item() == pytest.approx((0 + 5.5 + 12.5 + 2.5) / 4)


def brute_force_attention(keys: torch.Tensor, queries: torch.Tensor) -> list[list[float]]:
    """W[p][q] of eqs. 3/4 for one image, with Python loops and math.exp."""
    c, h, w = keys.shape
    z = [[float(keys[ch].flatten()[k]) for ch in range(c)] for k in range(h * w)]
    zq = [[float(queries[ch].flatten()[k]) for ch in range(c)] for k in range(h * w)]
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    weights = [[0.0] * (h * w) for _ in range(h * w)]
    for q in range(h * w):
        denominator = sum(math.exp(dot(z[k], zq[q]) / math.sqrt(c)) for k in range(h * w))
        for p in range(h * w):
            weights[p][q] = math.exp(dot(z[p], zq[q]) / math.sqrt(c)) / denominator
    return weights


def test_attention_weights_match_eqs_3_and_4():
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(2, 3, 2, 3, generator=generator, dtype=torch.float64)
    global_output = torch.randn(2, 3, 2, 3, generator=generator, dtype=torch.float64)
    w_self = self_attention_weights(features)
    w_cross = cross_attention_weights(features, global_output)
    assert w_self.shape == w_cross.shape == (2, 6, 6)
    for image in range(2):
        assert np.allclose(w_self[image].numpy(), brute_force_attention(features[image], features[image]))
        assert np.allclose(w_cross[image].numpy(), brute_force_attention(features[image], global_output[image]))
    # Softmax over the keys p: every query column sums to 1.
    assert torch.allclose(w_self.sum(dim=1), torch.ones(2, 6, dtype=torch.float64))
    assert torch.allclose(w_cross.sum(dim=1), torch.ones(2, 6, dtype=torch.float64))
    # A = Z W: column q of A is sum_p W[p, q] z_p.
    attended = attend(features, w_self)
    q = 4
    expected = sum(w_self[0, p, q] * features[0].flatten(1)[:, p] for p in range(6))
    assert torch.allclose(attended[0].flatten(1)[:, q], expected)


def test_consistency_loss_eq5_brute_force():
    generator = torch.Generator().manual_seed(4)
    features = torch.randn(1, 3, 2, 2, generator=generator, dtype=torch.float64)
    global_output = torch.randn(1, 3, 2, 2, generator=generator, dtype=torch.float64)
    w = brute_force_attention(features[0], features[0])
    wc = brute_force_attention(features[0], global_output[0])
    z = features[0].flatten(1).numpy()  # (c, k)
    a, a_hat = z @ np.array(w), z @ np.array(wc)
    terms, text_terms = [], []
    for k in range(4):
        lv = float(np.sum((a_hat[:, k] - a[:, k]) ** 2))
        cos = float(a_hat[:, k] @ a[:, k] / np.linalg.norm(a_hat[:, k]) / np.linalg.norm(a[:, k]))
        terms.append(lv / 3 + 0.5 * (1 - cos))  # the code's l_v: mean over the c = 3 channels
        text_terms.append(lv + 0.5 * (1 - cos))  # eq. 2: sum
    assert consistency_loss(features, global_output, 0.5).item() == pytest.approx(np.mean(terms))
    assert consistency_loss(features, global_output, 0.5, "sum").item() == pytest.approx(np.mean(text_terms))
    # The self-attention target is reached exactly when U^ = U.
    assert consistency_loss(features, features, 0.5).item() == pytest.approx(0.0, abs=1e-12)


# -- shapes of every branch ----------------------------------------------------------------------------------
def test_feature_aggregation_shapes_and_channel_pooling():
    taps = [torch.randn(2, 4, 16, 16), torch.randn(2, 6, 8, 8), torch.randn(2, 2, 4, 4)]
    all_channels = aggregate_features(taps)
    assert all_channels.shape == (2, 8, 8, 8)
    assert torch.equal(all_channels[:, :6], taps[1])  # the stride-8 tap is kept as it is
    pooled = aggregate_features(taps, feature_channels=4)
    assert pooled.shape == (2, 4, 8, 8)
    assert torch.allclose(pooled, all_channels.reshape(2, 4, 2, 8, 8).mean(dim=2))  # neighbours averaged
    assert aggregate_features(taps, feature_channels=100).shape == (2, 8, 8, 8)  # never more channels


@pytest.mark.parametrize("image_size", [64, 96, 128])
def test_branch_output_shapes(image_size):
    c, h = 12, image_size // 8
    frn = FeatureReconstructionNetwork(c, (8, 16, 16), (8, 8))
    local, local_global = frn(torch.randn(2, c, h, h))
    assert local.shape == local_global.shape == (2, c, h, h)
    for code_size in (1, 3):  # the authors' code: a 1 x 1 code; table 6: 3 x 3
        ae = GlobalAutoencoder(c, image_size, (4, 4, 8, 8, 8, 8), 8, code_size=code_size)
        code = ae.encoder(torch.randn(2, 3, image_size, image_size))
        assert code.shape == (2, 8, code_size, code_size)
        assert ae(torch.randn(2, 3, image_size, image_size), (h, h)).shape == (2, c, h, h)
    model = ULSADModel(c, tiny_config(image_size=image_size, frn_encoder_channels=(8, 16, 16),
                                      frn_decoder_channels=(8, 8)))
    outputs = model(torch.randn(2, c, h, h), torch.randn(2, 3, image_size, image_size))
    assert {name: tuple(t.shape) for name, t in outputs.items()} == {
        "local": (2, c, h, h), "local_global": (2, c, h, h), "global": (2, c, h, h)}
    losses = model.losses(torch.randn(2, c, h, h), outputs)
    assert set(losses) == {"loss", "local", "consistency", "local_global"}
    assert losses["loss"].item() == pytest.approx(
        sum(losses[k].item() for k in ("local", "consistency", "local_global")), rel=1e-6)
    local_map, global_map = model.anomaly_maps(torch.randn(2, c, h, h), outputs)
    assert local_map.shape == global_map.shape == (2, h, h)


def layer_kinds(module: nn.Module) -> list[str]:
    """The leaf layers of ``module`` in order, as short names: conv, bn, relu."""
    names = {nn.Conv2d: "conv", nn.ConvTranspose2d: "conv", nn.BatchNorm2d: "bn", nn.ReLU: "relu"}
    return [names[type(m)] for m in module.modules() if type(m) in names]


def test_frn_layers_as_in_the_authors_code_and_as_in_table_5():
    code = FeatureReconstructionNetwork(12, (8, 16, 16), (8, 8))
    # code: conv -> BN -> ReLU; no ReLU after the bottleneck's BN; a ReLU after the last BN.
    assert layer_kinds(code.encoder) == ["conv", "bn", "relu", "conv", "bn", "relu", "conv", "bn"]
    assert layer_kinds(code.decoder) == ["conv", "bn", "relu"] * 3
    local, local_global = code(torch.randn(2, 12, 8, 8))
    assert local.min() >= 0 and local_global.min() >= 0 and (local > 0).any()
    table = FeatureReconstructionNetwork(12, (8, 16, 16), (8, 8), layer_order="conv-relu-bn", bottleneck_relu=True)
    assert layer_kinds(table) == ["conv", "relu", "bn"] * 6  # every row of table 5: conv, ReLU, BatchNorm
    assert table(torch.randn(2, 12, 8, 8))[0].min() < 0  # ends with BatchNorm-6
    linear = FeatureReconstructionNetwork(12, (8, 16, 16), (8, 8), output_relu=False)
    assert layer_kinds(linear.decoder)[-3:] == ["relu", "conv", "bn"]


def test_frn_initialisation_xavier_uniform_with_leaky_relu_gain():
    torch.manual_seed(0)
    frn = FeatureReconstructionNetwork(32, (64, 64, 64), (64, 64))
    conv = frn.encoder[1][0]  # 64 -> 64, 3 x 3: fan_in = fan_out = 576
    bound = nn.init.calculate_gain("leaky_relu") * math.sqrt(6 / (576 + 576))
    weights = conv.weight.detach()
    assert weights.abs().max() <= bound and weights.abs().max() > 0.99 * bound
    assert weights.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)  # uniform on [-bound, bound]
    torch.manual_seed(0)
    default = FeatureReconstructionNetwork(32, (64, 64, 64), (64, 64), init="default").encoder[1][0].weight
    assert default.abs().max() < 0.5 * bound  # PyTorch's default (kaiming, a = sqrt(5)) is narrower


def test_global_autoencoder_as_in_the_authors_code_and_as_in_table_6():
    assert upsample_sizes(256) == (3, 8, 15, 31, 63)
    assert upsample_sizes(256, "table") == (3, 8, 16, 32, 64)
    sizes = []
    ae = GlobalAutoencoder(12, 256, (4, 4, 4, 4, 4, 4), 4)
    for layer in ae.decoder:
        layer.register_forward_hook(lambda module, inputs, output: sizes.append(output.shape[-1]))
    out = ae(torch.rand(2, 3, 256, 256), (32, 32))
    assert out.shape == (2, 12, 32, 32) and out.min() < 0  # linear output (table 6 lists a ReLU)
    assert sizes == [4, 9, 16, 32, 64]  # each 4x4 conv with padding 2 adds one pixel
    norms = [m for m in ae.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 12 and all(not m.affine and m.eps == 1e-4 for m in norms)
    assert layer_kinds(ae.encoder)[:3] == ["conv", "bn", "relu"]
    table = GlobalAutoencoder(12, 256, (4, 4, 4, 4, 4, 4), 4, layer_order="conv-relu-bn", code_size=3,
                              sizes="table", affine_batchnorm=True, output_relu=True)
    assert table.encoder(torch.rand(2, 3, 256, 256)).shape == (2, 4, 3, 3)
    assert all(m.affine for m in table.modules() if isinstance(m, nn.BatchNorm2d))
    assert layer_kinds(table.encoder)[:3] == ["conv", "relu", "bn"]
    assert table(torch.rand(2, 3, 256, 256), (32, 32)).min() >= 0


def test_config_defaults_follow_the_code_and_paper_text_switches_every_difference():
    code, text = ULSADConfig(), ULSADConfig(**PAPER_TEXT)
    assert (code.magnitude, code.layer_order, code.ae_code_size, code.frn_init) == ("mean", "conv-bn-relu", 1, "xavier")
    assert all(getattr(code, name) != value for name, value in PAPER_TEXT.items())
    assert all(getattr(text, name) == value for name, value in PAPER_TEXT.items())
    model = ULSADModel(12, tiny_config(**PAPER_TEXT, frn_encoder_channels=(8, 16, 16), frn_decoder_channels=(8, 8)))
    assert layer_kinds(model.frn)[:3] == ["conv", "relu", "bn"]
    assert model.global_ae.encoder(torch.rand(2, 3, SIZE, SIZE)).shape[-2:] == (3, 3)
    with pytest.raises(ValueError, match="layer_order"):
        ULSADConfig(layer_order="bn-conv")
    with pytest.raises(ValueError, match="ae_code_size"):
        ULSADConfig(ae_code_size=2)


def test_training_batches_never_leave_one_image_alone():
    assert [len(b) for b in training_batches(torch.arange(9), 4)] == [4, 5]
    assert [len(b) for b in training_batches(torch.arange(8), 4)] == [4, 4]
    assert [len(b) for b in training_batches(torch.arange(7), 4)] == [4, 3]
    assert torch.equal(torch.cat(training_batches(torch.arange(9), 4)), torch.arange(9))


def test_branch_outputs_are_the_models_tensors(fitted, data):
    out = fitted.branch_outputs(data["test"], batch_size=2)
    net = fitted.model
    with torch.no_grad():
        prepared = fitted._prepare(data["test"])
        features = net.standardize(aggregate_features(fitted.backbone(prepared), fitted.config.feature_channels))
        outputs = net(features, prepared)
    assert torch.allclose(out["features"], features, atol=1e-5)
    assert torch.allclose(out["global"], outputs["global"], atol=1e-5)
    assert torch.allclose(out["reconstruction"], outputs["local"], atol=1e-5)
    local_map, global_map = net.anomaly_maps(features, outputs)
    assert torch.allclose(out["local_map"], local_map, atol=1e-5)
    assert torch.allclose(out["global_map"], global_map, atol=1e-5)


def test_predict_shapes_at_image_resolution(fitted, data, backbone):
    out = fitted.predict(data["test"])
    assert set(out) == {"local", "global", "combined", "image_scores"}
    for name in ("local", "global", "combined"):
        assert out[name].shape == (3, SIZE, SIZE) and out[name].dtype == torch.float32
    assert torch.allclose(out["combined"], (out["local"] + out["global"]) / 2)
    assert torch.equal(out["image_scores"], out["combined"].amax(dim=(1, 2)))
    # Other input sizes are resized for the networks and the maps come back at the input's size.
    bigger = torch.nn.functional.interpolate(data["test"], size=(80, 96), mode="bilinear")
    assert fitted.predict(bigger)["combined"].shape == (3, 80, 96)
    assert fitted.feature_channels == 32  # 40 + 112 EfficientNet-Lite0 channels pooled to 32


def test_attention_maps_for_any_query(fitted, data):
    image = data["test"][0]
    result = fitted.attention_maps(image, (0, 0))
    assert result["query_cell"] == (0, 0)
    for name in ("self_attention", "cross_attention"):
        assert result[name].shape == (SIZE // 8, SIZE // 8)
        assert result[name].sum().item() == pytest.approx(1.0, abs=1e-5)
        assert (result[name] >= 0).all()
    assert fitted.attention_maps(image, (SIZE - 1, 17.5))["query_cell"] == (7, 2)
    with pytest.raises(ValueError, match="outside"):
        fitted.attention_maps(image, (SIZE, 0))


# -- quantile normalisation ----------------------------------------------------------------------------------
def test_fit_quantiles_matches_numpy_and_normalize_maps_them_to_0_and_0_1():
    maps = torch.rand(5, 7, 9, generator=torch.Generator().manual_seed(5)) ** 3
    q_alpha, q_beta = fit_quantiles(maps, 0.9, 0.995)
    assert q_alpha == pytest.approx(np.quantile(maps.numpy().astype(np.float64), 0.9))
    assert q_beta == pytest.approx(np.quantile(maps.numpy().astype(np.float64), 0.995))
    normalized = normalize_map(torch.tensor([q_alpha, q_beta, 2 * q_beta - q_alpha]), q_alpha, q_beta)
    assert torch.allclose(normalized, torch.tensor([0.0, 0.1, 0.2]))


def test_fitted_maps_of_validation_images_have_quantiles_0_and_0_1(fitted, data):
    out = fitted.predict(data["val"])
    for name in ("local", "global"):
        values = out[name].numpy().astype(np.float64)
        assert np.quantile(values, 0.9) == pytest.approx(0.0, abs=1e-5)
        assert np.quantile(values, 0.995) == pytest.approx(0.1, abs=1e-5)
    assert fitted.model.quantiles[0] < fitted.model.quantiles[1]


# -- training ------------------------------------------------------------------------------------------------
def test_training_decreases_loss_and_records_every_term(fitted):
    history = fitted.history
    assert set(history) == {"loss", "local", "consistency", "local_global", "seconds"}
    assert all(len(values) == 3 for values in history.values())
    assert history["loss"][-1] < history["loss"][0]
    for epoch in range(3):
        total = history["local"][epoch] + history["consistency"][epoch] + history["local_global"][epoch]
        assert history["loss"][epoch] == pytest.approx(total, rel=1e-6)


def test_same_seed_gives_identical_runs_and_another_seed_does_not(backbone, data):
    def run(seed, cache=True):
        model = ULSAD(tiny_config(seed=seed), backbone=backbone, device="cpu")
        history = model.fit(data["train"], data["val"], progress=False, cache_features=cache)
        return history, model.predict(data["test"])

    first, second, other = run(0), run(0), run(1)
    for name in ("loss", "local", "consistency", "local_global"):
        assert first[0][name] == second[0][name]
    for name in ("local", "global", "combined", "image_scores"):
        assert torch.equal(first[1][name], second[1][name])
    assert first[0]["loss"] != other[0]["loss"]
    # Caching the frozen backbone's features changes nothing but the speed.
    uncached = run(0, cache=False)
    assert np.allclose(first[0]["loss"], uncached[0]["loss"], rtol=1e-4)


def test_holds_out_validation_images_when_none_are_given(backbone, data):
    model = ULSAD(tiny_config(epochs=5), backbone=backbone, device="cpu")
    history = model.fit(data["train"], progress=False, val_fraction=0.25, epochs=1)
    assert len(history["loss"]) == 1 and model.config.epochs == 1  # the override is what gets saved
    q = model.model.quantiles
    assert q[0] < q[1] and q[2] < q[3]  # fitted on the 3 held-out images, not the defaults (0, 1)
    assert model.predict(data["test"])["image_scores"].shape == (3,)


# -- persistence and errors ----------------------------------------------------------------------------------
def test_save_load_round_trip(fitted, data, backbone, tmp_path):
    path = tmp_path / "models" / "ulsad.pt"
    fitted.save(path)
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["ulsad.pt"]  # no temp file left
    loaded = ULSAD.load(path, backbone=backbone, device="cpu")
    assert loaded.config == fitted.config
    assert loaded.history == fitted.history
    before, after = fitted.predict(data["test"]), loaded.predict(data["test"])
    for name in before:
        assert torch.equal(before[name], after[name])
    query = (20, 40)
    for name in ("self_attention", "cross_attention"):
        assert torch.equal(fitted.attention_maps(data["test"][1], query)[name],
                           loaded.attention_maps(data["test"][1], query)[name])
    # The checkpoint holds plain types and tensors only.
    state = torch.load(path, weights_only=True)
    assert state["config"]["backbone"] == "efficientnet_lite0"


def test_clear_errors(backbone, data, tmp_path):
    model = ULSAD(tiny_config(), backbone=backbone, device="cpu")
    with pytest.raises(RuntimeError, match="not trained"):
        model.predict(data["test"])
    with pytest.raises(ValueError, match=r"train_images must have values in \[0, 1\]"):
        model.fit(data["train"] * 255, data["val"])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model.fit(data["train"][:, :1], data["val"])
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny_config(image_size=100)
    with pytest.raises(ValueError, match="magnitude"):
        tiny_config(magnitude="l1")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ULSAD.load(tmp_path / "missing.pt", backbone=backbone)
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a ULSAD checkpoint"):
        ULSAD.load(tmp_path / "other.pt", backbone=backbone)


def test_presets():
    paper, small = ULSADConfig.paper(), ULSADConfig.small()
    assert (paper.image_size, paper.feature_channels, paper.epochs) == (256, 384, 200)
    assert paper.frn_encoder_channels == (768, 1536, 1536) and paper.ae_encoder_channels[-1] == 64
    assert (paper.learning_rate, paper.weight_decay, paper.alpha, paper.beta) == (2e-4, 2e-5, 0.9, 0.995)
    assert (small.image_size, small.blur_sigma) == (256, 4.0) and ULSADConfig.small(epochs=5).epochs == 5
    assert ULSADConfig.small(image_size=128).blur_sigma == 2.0  # the paper's 4 px at 256 px, scaled
    assert ULSADConfig.small(image_size=128, blur_sigma=0).blur_sigma == 0


def test_evaluate_ulsad_reports_metrics_and_times(backbone, data):
    from iadtutor.data import LoadedSplit
    from iadtutor.pipeline import Category

    good, bad = data["test"][:2], data["test"][2:].clone()
    bad[:, :, 20:28, 10:50] = 0.0  # a dark bar across the disk
    masks = torch.zeros(3, SIZE, SIZE, dtype=torch.bool)
    masks[2, 20:28, 10:50] = True

    def split(images, masks, labels):
        return LoadedSplit(images, masks, torch.tensor(labels), ["good"] * len(images), [""] * len(images))

    category = Category("disk", "mvtec", split(data["train"], torch.zeros(12, SIZE, SIZE, dtype=torch.bool),
                                               [0] * 12),
                        split(torch.cat([good, bad]), masks, [0, 0, 1]), validation=None)
    result = evaluate_ulsad(category, backbone, epochs=1, device="cpu", progress=False, config=tiny_config())
    assert {"image_auroc", "pixel_auroc", "aupro", "train_seconds", "test_seconds_per_image"} <= set(result)
    assert all(0.0 <= result[key] <= 1.0 for key in ("image_auroc", "pixel_auroc", "aupro"))
    assert result["config"]["epochs"] == 1 and result["n_validation"] == 1
