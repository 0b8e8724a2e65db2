"""ULSAD figures, tables and the attention explorer (iadtutor.viz.ulsad).

A tiny ULSAD (64 px, few channels, 2 epochs) is trained once per module on noisy disk images; the
numbers in the figures are checked against independent computations (eqs. 7-8 by hand, the model's own
attention maps, scikit-learn's AUROC on hand-picked subsets)."""

import numpy as np
import plotly.io as pio
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torchvision.transforms.v2.functional import gaussian_blur

from iadtutor import metrics
from iadtutor.viz import core as viz
from iadtutor.viz import ulsad as viz_ulsad
from iadtutor.backbones import load_backbone
from iadtutor.ulsad import ULSAD, ULSADConfig, normalize_map

SIZE = 64


def disk_images(n: int, seed: int) -> torch.Tensor:
    """Noisy images of a coloured disk at a jittered position, floats in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    images = []
    for _ in range(n):
        cy, cx = (SIZE // 2 + torch.randint(-3, 4, (2,), generator=generator)).tolist()
        disk = (((yy - cy) ** 2 + (xx - cx) ** 2) < (SIZE // 5) ** 2).float()
        image = torch.stack([0.2 + 0.6 * disk, 0.3 + 0.2 * disk, 0.5 - 0.3 * disk])
        images.append((image + 0.03 * torch.randn(3, SIZE, SIZE, generator=generator)).clamp(0, 1))
    return torch.stack(images)


@pytest.fixture(scope="module", autouse=True)
def one_thread_and_renderer():
    previous_threads, previous_renderer = torch.get_num_threads(), pio.renderers.default
    torch.set_num_threads(1)
    viz.setup_notebook(seed=None)
    yield
    torch.set_num_threads(previous_threads)
    pio.renderers.default = previous_renderer


@pytest.fixture(scope="module")
def model():
    config = ULSADConfig(image_size=SIZE, feature_channels=32, frn_encoder_channels=(16, 32, 32),
                         frn_decoder_channels=(16, 16), ae_encoder_channels=(8, 8, 8, 8, 8, 8),
                         ae_decoder_channels=8, blur_sigma=1.0, batch_size=4, epochs=2, seed=0)
    fitted = ULSAD(config, backbone=load_backbone("efficientnet_lite0", device="cpu", verbose=False),
                   device="cpu", verbose=False)
    fitted.fit(disk_images(8, seed=0), disk_images(3, seed=1), progress=False)
    return fitted


@pytest.fixture(scope="module")
def test_images():
    images = disk_images(3, seed=2)
    images[1, :, 10:18, 40:50] = torch.tensor([0.9, 0.9, 0.1]).view(3, 1, 1)  # a yellow blot
    return images


# ------------------------------------------------------------------------------------ branch outputs
def test_branch_outputs_give_eqs_7_and_8_and_the_maps_of_predict(model, test_images):
    out = model.branch_outputs(test_images)
    c, h = model.feature_channels, SIZE // 8
    for name in ("features", "reconstruction", "local_global", "global"):
        assert out[name].shape == (3, c, h, h)
    u, rec = out["features"], out["reconstruction"]
    lam = model.config.lambda_local
    # l_v as in the authors' code (the default): the mean of the squared differences over the channels
    by_hand = ((rec - u) ** 2).mean(1) + lam * (1 - (rec * u).sum(1) / (rec.norm(dim=1) * u.norm(dim=1)))
    assert torch.allclose(out["local_map"], by_hand, rtol=1e-4, atol=1e-4)
    a, b = out["local_global"], out["global"]
    by_hand = ((a - b) ** 2).mean(1) + model.config.lambda_global * (1 - F.cosine_similarity(a, b, dim=1))
    assert torch.allclose(out["global_map"], by_hand, rtol=1e-4, atol=1e-4)
    # upsampled, blurred and quantile-normalised, they are the maps predict() returns
    predicted = model.predict(test_images)
    q = model.model.quantiles.tolist()
    for raw, name, (qa, qb) in ((out["local_map"], "local", q[:2]), (out["global_map"], "global", q[2:])):
        up = F.interpolate(raw[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        blurred = gaussian_blur(up, kernel_size=[9, 9], sigma=[1.0, 1.0])[:, 0]
        assert torch.allclose(normalize_map(blurred, qa, qb), predicted[name], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------- figures
def test_reconstruction_figure_pairs_each_channel_with_its_reconstruction(model, test_images):
    out = model.branch_outputs(test_images)
    features, rec = out["features"][1], out["reconstruction"][1]
    fig = viz_ulsad.reconstruction_figure(test_images[1], features, rec, out["local_map"][1], k=3)
    expected = viz.strongest_channels(features, 3)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 2 * 3 + 1  # U and U~' per channel, then the local map
    for i, channel in enumerate(expected):
        top, bottom = heatmaps[2 * i], heatmaps[2 * i + 1]
        assert np.allclose(np.asarray(top.z), features[channel].numpy())
        assert np.allclose(np.asarray(bottom.z), rec[channel].numpy())
        limit = max(features[channel].abs().max(), rec[channel].abs().max()).item()
        assert top.zmax == bottom.zmax == pytest.approx(limit) and top.zmin == -top.zmax
        assert f"channel {channel}" in fig.layout.annotations[i].text
    assert np.allclose(np.asarray(heatmaps[-1].z), out["local_map"][1].numpy())
    assert heatmaps[-1].dx == SIZE / (SIZE // 8)  # the 8 x 8 map spans the 64 px image
    with pytest.raises(ValueError, match="both be"):
        viz_ulsad.reconstruction_figure(test_images[1], features, rec[:2], out["local_map"][1])


def test_cell_centre_is_the_cell_that_attention_maps_picks(model, test_images):
    grid, image = (SIZE // 8, SIZE // 8), (SIZE, SIZE)
    assert viz_ulsad.cell_centre((2, 3), grid, image) == (2.5 * 8 - 0.5, 3.5 * 8 - 0.5)
    for row in range(grid[0]):
        for col in (0, 5, grid[1] - 1):
            y, x = viz_ulsad.cell_centre((row, col), grid, image)
            assert model.attention_maps(test_images[0], (y, x))["query_cell"] == (row, col)


def test_attention_figure_marks_every_query_over_its_map(model, test_images):
    cells = [(1, 1), (4, 6)]
    maps = [model.attention_maps(test_images[0], viz_ulsad.cell_centre(c, (8, 8), (SIZE, SIZE))) for c in cells]
    fig = viz_ulsad.attention_figure(test_images[0], [m["self_attention"] for m in maps],
                                     [m["query_cell"] for m in maps], titles=["a", "b"])
    assert [a.text for a in fig.layout.annotations][:3] == ["image and queries", "a", "b"]
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 2
    for heatmap, found in zip(heatmaps, maps):
        weights = found["self_attention"].numpy()
        assert np.allclose(np.asarray(heatmap.customdata), weights)  # hover: the weights themselves
        assert np.allclose(np.asarray(heatmap.z), np.log10(weights), atol=1e-4)  # colour: log10 of the weights
        assert heatmap.zmax == pytest.approx(np.log10(weights.max()))
        assert heatmap.zmin == pytest.approx(np.log10(weights.min()))
        assert heatmap.dx == heatmap.dy == 8
    linear = viz_ulsad.attention_figure(test_images[0], [maps[0]["self_attention"]], [cells[0]], log_scale=False)
    (heatmap,) = [t for t in linear.data if t.type == "heatmap"]
    assert np.allclose(np.asarray(heatmap.z), maps[0]["self_attention"].numpy())
    assert np.asarray(heatmap.z).sum() == pytest.approx(1.0, abs=1e-4) and heatmap.zmin == 0
    markers = [t for t in fig.data if t.type == "scatter"]
    # both queries on the image (x1), then each on its own map (x2, x3)
    assert [(t.xaxis, t.y[0], t.x[0]) for t in markers] == [
        ("x", 11.5, 11.5), ("x2", 11.5, 11.5), ("x", 35.5, 51.5), ("x3", 35.5, 51.5)]
    with pytest.raises(ValueError, match="one query cell per attention map"):
        viz_ulsad.attention_figure(test_images[0], [maps[0]["self_attention"]], cells)


def test_branch_maps_figure_shares_one_colour_range_and_titles_the_maxima():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 16, 16, generator=generator)
    maps = {b: torch.rand(4, 16, 16, generator=generator) * s for b, s in (("local", 1), ("global", 2),
                                                                          ("combined", 0.5))}
    masks = torch.zeros(4, 16, 16, dtype=torch.bool)
    masks[2, 4:8, 4:8] = True
    fig = viz_ulsad.branch_maps_figure(images, masks, maps, [0, 2], row_titles=["good", "bad"], display_stride=1)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 6 and {(t.zmin, t.zmax) for t in heatmaps} == {(0.0, heatmaps[0].zmax)}
    shown = np.concatenate([maps[b][[0, 2]].numpy().ravel() for b in viz_ulsad.BRANCHES])
    assert heatmaps[0].zmax == pytest.approx(np.percentile(shown, 99.9))
    assert np.allclose(np.asarray(heatmaps[4].z), maps["global"][2].numpy())  # row 2, column "global"
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0] == "good" and titles[4] == "bad"
    assert titles[7] == f"combined: {maps['combined'][2].max().item():.3f}"
    assert sum(t.type == "contour" for t in fig.data) == 4  # the mask outline on each panel of the bad row
    assert sum(bool(t.showscale) for t in heatmaps) == 1
    with pytest.raises(ValueError, match="missing"):
        viz_ulsad.branch_maps_figure(images, masks, {"local": maps["local"]}, [0])


def test_loss_curve_has_every_term_per_epoch(model):
    fig = viz_ulsad.loss_curve_figure(model.history)
    assert [t.name for t in fig.data] == [viz_ulsad.LOSS_TITLES[k] for k in ("loss", "local", "consistency",
                                                                             "local_global")]
    assert list(fig.data[0].x) == [1, 2] and np.allclose(fig.data[0].y, model.history["loss"])
    assert fig.layout.yaxis.type == "log"
    with pytest.raises(ValueError, match="no loss values"):
        viz_ulsad.loss_curve_figure({"loss": []})


# ------------------------------------------------------------------------------------------ table
TYPES = ["good", "good", "good", "logical_missing", "logical_extra", "structural_scratch", "structural_stain"]


def hand_case():
    generator = torch.Generator().manual_seed(3)
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    masks = np.zeros((7, 6, 6), dtype=bool)
    for i in range(3, 7):
        masks[i, i - 3:i - 1, 1:4] = True
    maps = {b: torch.rand(7, 6, 6, generator=generator).numpy() for b in viz_ulsad.BRANCHES}
    return labels, masks, maps


def test_branch_metrics_table_compares_good_with_one_kind_at_a_time():
    labels, masks, maps = hand_case()
    table = viz_ulsad.branch_metrics_table(labels, masks, TYPES, maps, digits=10)
    assert list(table.index.get_level_values(0).unique()) == ["all", "structural", "logical"]
    assert list(table.columns) == ["image_auroc", "pixel_auroc", "aupro"]
    for group, keep in (("all", range(7)), ("structural", [0, 1, 2, 5, 6]), ("logical", [0, 1, 2, 3, 4])):
        keep = list(keep)
        for branch in viz_ulsad.BRANCHES:
            values = maps[branch][keep]
            row = table.loc[(group, branch)]
            assert row["image_auroc"] == pytest.approx(roc_auc_score(labels[keep], values.max(axis=(1, 2))))
            assert row["pixel_auroc"] == pytest.approx(roc_auc_score(masks[keep].ravel(), values.ravel()))
            assert row["aupro"] == pytest.approx(metrics.aupro(masks[keep], values))


def test_branch_metrics_table_adds_baselines_scored_with_their_own_image_scores():
    labels, masks, maps = hand_case()
    other_maps = maps["local"][::-1].copy()
    other_scores = np.arange(7.0)  # ranks the images 0..6, whatever the maps say
    table = viz_ulsad.branch_metrics_table(labels, masks, TYPES, maps, digits=10,
                                           baselines={"knn": (other_maps, other_scores)})
    assert list(table.loc["all"].index) == [*viz_ulsad.BRANCHES, "knn"]
    for group, keep in (("all", range(7)), ("logical", [0, 1, 2, 3, 4])):
        keep = list(keep)
        row = table.loc[(group, "knn")]
        assert row["image_auroc"] == pytest.approx(roc_auc_score(labels[keep], other_scores[keep]))
        assert row["pixel_auroc"] == pytest.approx(roc_auc_score(masks[keep].ravel(), other_maps[keep].ravel()))
    plain = viz_ulsad.branch_metrics_table(labels, masks, TYPES, maps, digits=10)
    assert table.drop(index="knn", level=1).equals(plain)
    with pytest.raises(ValueError, match="baseline 'knn'"):
        viz_ulsad.branch_metrics_table(labels, masks, TYPES, maps, baselines={"knn": (other_maps, other_scores[:3])})


def test_branch_metrics_table_adds_bootstrap_intervals_of_the_image_auroc():
    labels, masks, maps = hand_case()
    table = viz_ulsad.branch_metrics_table(labels, masks, TYPES, maps, digits=10, n_boot=200, seed=3)
    plain = viz_ulsad.branch_metrics_table(labels, masks, TYPES, maps, digits=10)
    assert table.drop(columns="image_auroc_ci").equals(plain)
    for group, keep in (("all", range(7)), ("logical", [0, 1, 2, 3, 4])):
        keep = list(keep)
        for branch in viz_ulsad.BRANCHES:
            scores = maps[branch][keep].max(axis=(1, 2))
            expected = metrics.bootstrap_ci(metrics.image_auroc, labels[keep], scores, n_boot=200, seed=3)
            assert table.loc[(group, branch), "image_auroc_ci"] == pytest.approx(expected)
    shown = viz.results_table(table)
    assert list(shown.columns) == ["image_auroc", "pixel_auroc", "aupro"]
    assert shown.loc[("all", "local"), "image_auroc"].count("[") == 1


def test_branch_metrics_table_without_kinds_and_with_loco_names():
    labels, masks, maps = hand_case()
    plain = viz_ulsad.branch_metrics_table(labels, masks, ["good"] * 3 + ["scratch"] * 4, maps)
    assert list(plain.index) == [("all", b) for b in viz_ulsad.BRANCHES]
    loco = ["good"] * 3 + ["logical_anomalies"] * 2 + ["structural_anomalies"] * 2
    assert viz_ulsad.branch_metrics_table(labels, masks, loco, maps).equals(
        viz_ulsad.branch_metrics_table(labels, masks, TYPES, maps))
    assert viz_ulsad.kind_counts(TYPES) == {"good": 3, "structural": 2, "logical": 2}
    with pytest.raises(ValueError, match="one label, mask and defect type"):
        viz_ulsad.branch_metrics_table(labels, masks, TYPES[:-1], maps)


# --------------------------------------------------------------------------------------- explorer
@pytest.fixture(scope="module")
def explorer(model, test_images):
    masks = torch.zeros(3, SIZE, SIZE, dtype=torch.bool)
    masks[1, 10:18, 40:50] = True
    return viz_ulsad.AttentionExplorer(model, test_images, masks, names=["good", "blot", "good"], index=1)


def test_explorer_starts_at_the_highest_global_score(explorer, model, test_images):
    global_map = model.predict(test_images)["global"][1]
    cells = global_map.reshape(8, 8, 8, 8).mean(dim=(1, 3))  # mean over each 8 x 8 pixel cell
    assert (explorer.row.value, explorer.col.value) == divmod(int(torch.argmax(cells)), 8)


def test_explorer_figure_shows_the_models_attention_for_the_chosen_query(explorer, model, test_images):
    explorer.row.value, explorer.col.value = 2, 5
    y, x = 2.5 * 8 - 0.5, 5.5 * 8 - 0.5
    expected = model.attention_maps(test_images[1], (y, x))
    heatmaps = [t for t in explorer.figure.data if t.type == "heatmap"]
    assert np.allclose(np.asarray(heatmaps[0].customdata), expected["self_attention"].numpy())
    assert np.allclose(np.asarray(heatmaps[1].customdata), expected["cross_attention"].numpy())
    top = max(expected["self_attention"].max(), expected["cross_attention"].max()).item()
    low = min(expected["self_attention"].min(), expected["cross_attention"].min()).item()
    assert heatmaps[0].zmax == heatmaps[1].zmax == pytest.approx(np.log10(top))
    assert heatmaps[0].zmin == heatmaps[1].zmin == pytest.approx(np.log10(low))
    explorer.log_scale.value = False
    heatmaps = [t for t in explorer.figure.data if t.type == "heatmap"]
    assert np.allclose(np.asarray(heatmaps[1].z), expected["cross_attention"].numpy())
    assert heatmaps[0].zmax == heatmaps[1].zmax == pytest.approx(top) and heatmaps[0].zmin == 0
    explorer.log_scale.value = True
    markers = [t for t in explorer.figure.data if t.type == "scatter"]
    assert len(markers) == 4 and all((t.y[0], t.x[0]) == (y, x) for t in markers)
    tv = 0.5 * (expected["self_attention"] - expected["cross_attention"]).abs().sum().item()
    assert f"{tv:.3f}" in explorer.status.value
    explorer.image_picker.value = 0
    assert explorer.figure.data[0].source != viz.image_trace(test_images[1]).source
    assert not any(t.type == "contour" for t in explorer.figure.data)  # good image: no mask outline


def test_explorer_output_holds_the_figure_for_a_static_page(explorer):
    (output,) = explorer.output.outputs
    assert set(output["data"]) == {viz.PLOTLY_MIME_TYPE}  # the PNG comes with `notebooks clean`, the HTML with the book
    # the widget: the image picker and log-scale box, the two sliders, the description, the figure
    first, second, status, output = explorer.app.children
    assert list(first.children) == [explorer.image_picker, explorer.log_scale]
    assert list(second.children) == [explorer.row, explorer.col] and status is explorer.status


def test_explorer_difference_is_the_total_variation_of_the_two_maps(explorer, model, test_images):
    for cell in ((0, 0), (3, 4)):
        state = explorer.state(1, *cell)
        a, b = state["self_attention"].double().numpy(), state["cross_attention"].double().numpy()
        assert a.sum() == pytest.approx(1.0) and b.sum() == pytest.approx(1.0)  # weights over the keys
        assert state["difference"] == pytest.approx(0.5 * sum(abs(x - y) for x, y in zip(a.ravel(), b.ravel())))
        assert 0.0 <= state["difference"] <= 1.0


def test_explorer_refuses_bad_inputs(model, test_images):
    with pytest.raises(ValueError, match="names has 1 entries"):
        viz_ulsad.AttentionExplorer(model, test_images, names=["a"])
    with pytest.raises(ValueError, match="index 5"):
        viz_ulsad.AttentionExplorer(model, test_images, index=5)


# ------------------------------------------------------------------------------------------ query choice
def test_diverse_query_cells_against_a_brute_force_farthest_point_search():
    generator = torch.Generator().manual_seed(4)
    features = torch.randn(5, 4, 6, generator=generator)
    cells = viz_ulsad.diverse_query_cells(features, k=4, border=0)
    vectors = {(r, c): features[:, r, c].double() for r in range(4) for c in range(6)}
    mean = features.double().mean(dim=(1, 2))
    expected = [max(vectors, key=lambda cell: float((vectors[cell] - mean).norm()))]
    while len(expected) < 4:
        expected.append(max(vectors, key=lambda cell: min(float((vectors[cell] - vectors[e]).norm())
                                                          for e in expected)))
    assert cells == expected
    assert len(set(cells)) == 4
    # with a border of 1 only the 2 x 4 inner cells compete, on their own mean
    inner = viz_ulsad.diverse_query_cells(features, k=3, border=1)
    shifted = [(r + 1, c + 1) for r, c in viz_ulsad.diverse_query_cells(features[:, 1:3, 1:5], k=3, border=0)]
    assert inner == shifted and all(1 <= r <= 2 and 1 <= c <= 4 for r, c in inner)
    # two groups of identical cells: two queries take one from each group
    two_groups = torch.zeros(3, 2, 2)
    two_groups[:, 1, :] = 1.0
    assert {r for r, _ in viz_ulsad.diverse_query_cells(two_groups, k=2, border=0)} == {0, 1}
    with pytest.raises(ValueError, match="k must be"):
        viz_ulsad.diverse_query_cells(features, k=9, border=1)
    with pytest.raises(ValueError, match="border"):
        viz_ulsad.diverse_query_cells(features, border=2)


