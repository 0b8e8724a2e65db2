"""What each comparison / density figure puts in the figure, checked on small hand-made tables."""

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from iadtutor import density
from iadtutor.viz import knn as viz_knn


def window_table():
    return pd.DataFrame({"window": [1, 3, 5], "image_auroc": [0.8, 0.9, 0.95], "pixel_auroc": [0.9, 0.95, 0.96],
                         "aupro": [0.6, 0.7, 0.75], "search_seconds_per_image": [0.01, 0.02, 0.04]})


def test_window_sweep_figure_has_metrics_and_time_against_window():
    fig = viz_knn.window_sweep_figure(window_table())
    names = [trace.name for trace in fig.data]
    assert names == ["image AUROC", "pixel AUROC", "AUPRO", "search time"]
    assert list(fig.data[0].x) == [1, 3, 5] and list(fig.data[2].y) == [0.6, 0.7, 0.75]
    assert list(fig.data[3].y) == pytest.approx([10, 20, 40])  # milliseconds
    assert fig.data[3].xaxis == "x2"  # time in its own panel
    with pytest.raises(ValueError, match="missing \\['search_seconds_per_image'\\]"):
        viz_knn.window_sweep_figure(window_table().drop(columns="search_seconds_per_image"))


def test_translation_figure_one_line_per_method_and_metric():
    table = pd.DataFrame({"translation": [0.0, 0.1, 0.0, 0.1], "method": ["A", "A", "B", "B"],
                          "image_auroc": [1.0, 0.9, 0.95, 0.94], "aupro": [0.8, 0.5, 0.7, 0.69]})
    fig = viz_knn.translation_figure(table)
    assert len(fig.data) == 4
    a_auroc, a_aupro, b_auroc, _ = fig.data
    assert (a_auroc.name, list(a_auroc.x), list(a_auroc.y)) == ("A", [0.0, 0.1], [1.0, 0.9])
    assert a_aupro.showlegend is False and a_aupro.xaxis == "x2" and list(a_aupro.y) == [0.8, 0.5]
    assert list(b_auroc.y) == [0.95, 0.94] and a_auroc.line.color == a_aupro.line.color != b_auroc.line.color


def test_coverage_figure_lines_per_group():
    table = pd.DataFrame({"category": ["a", "a", "b", "b"], "window": [1, 7, 1, 7], "share_found": [0.5, 1.0, 0.2, 0.6],
                          "mean_ratio": [1.1, 1.0, 1.3, 1.05]})
    fig = viz_knn.coverage_figure(table)
    assert [t.name for t in fig.data] == ["a", "b"] and list(fig.data[1].y) == [0.2, 0.6]
    by_translation = viz_knn.coverage_figure(table.rename(columns={"category": "translation"}).assign(
        translation=[0.0, 0.0, 0.1, 0.1]), x="window", group="translation")
    assert [t.name for t in by_translation.data] == ["translation 0.0", "translation 0.1"]


def test_with_seconds_masks_only_time_columns():
    table = pd.DataFrame({"aupro": [0.71234], "search_seconds_per_image": [0.0123], "fit_seconds": [2.5]})
    shown = viz_knn.with_seconds(table)
    assert shown["search_seconds_per_image"].tolist() == ["0.012 s"] and shown["fit_seconds"].tolist() == ["2.500 s"]
    assert shown["aupro"].tolist() == [0.71234] and table["fit_seconds"].tolist() == [2.5]


def test_k_alpha_figure_knn_baseline_and_one_line_per_alpha():
    table = pd.DataFrame({"method": ["KNN", "KNN", "LDKNN", "LDKNN", "LDKNN", "LDKNN"], "k": [1, 5, 1, 5, 1, 5],
                          "alpha": [math.nan, math.nan, 0.5, 0.5, 1.0, 1.0],
                          "image_auroc": [0.8, 0.7, 0.81, 0.85, 0.82, 0.9], "aupro": [0.5] * 6})
    fig = viz_knn.k_alpha_figure(table, metrics=("image_auroc",))
    assert [t.name for t in fig.data] == ["KNN (mean of K nearest)", "LDKNN α = 0.5", "LDKNN α = 1"]
    assert fig.data[0].line.dash == "dash" and list(fig.data[0].y) == [0.8, 0.7]
    assert list(fig.data[2].x) == [1, 5] and list(fig.data[2].y) == [0.82, 0.9]


def test_k_alpha_table_is_k_by_method():
    table = pd.DataFrame({"method": ["KNN", "KNN", "LDKNN", "LDKNN", "LDKNN", "LDKNN"], "k": [1, 5, 1, 5, 1, 5],
                          "alpha": [math.nan, math.nan, 0.5, 0.5, 1.0, 1.0],
                          "image_auroc": [0.8, 0.7, 0.81, 0.85, 0.82, 0.9]})
    wide = viz_knn.k_alpha_table(table)
    assert list(wide.columns) == ["KNN", "LDKNN α=0.5", "LDKNN α=1"] and list(wide.index) == [1, 5]
    assert wide.loc[5, "LDKNN α=1"] == 0.9 and wide.loc[1, "KNN"] == 0.8
    with_ci = viz_knn.k_alpha_table(table.assign(image_auroc_ci=[(0.6, 0.9)] * 5 + [(0.8, 0.95)]))
    assert with_ci.loc[5, "LDKNN α=1"] == "0.900 [0.800, 0.950]" and with_ci.loc[1, "KNN"] == "0.800 [0.600, 0.900]"


def test_maps_browser_shows_the_picked_image():
    images = torch.rand(3, 3, 16, 16)
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    app = viz_knn.maps_browser(images, masks, {"A": np.random.rand(3, 16, 16)}, names=["good", "hole", "scratch"],
                               index=1)
    assert [a.text for a in app.figure.layout.annotations] == ["hole", "A"]
    app.controls["index"].value = 2
    assert app.figure.layout.annotations[0].text == "scratch"


def test_maps_grid_layout_and_per_method_colour_range():
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[1, 4:8, 4:8] = True
    maps = {"A": np.linspace(0, 1, 3 * 256).reshape(3, 16, 16), "B": 100 + np.zeros((3, 16, 16))}
    fig = viz_knn.maps_grid(images, masks, maps, indices=[1, 2], image_scores={"A": [0.1, 0.2, 0.3], "B": [1, 2, 3]})
    heatmaps = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heatmaps) == 4  # 2 images × 2 methods
    # maps: means of 4×4 blocks, drawn at the original pixel coordinates (the image under them: every 2nd pixel)
    assert heatmaps[0].z.shape == (4, 4) and (heatmaps[0].dx, heatmaps[0].x0) == (4, 1.5)
    np.testing.assert_allclose(heatmaps[0].z[0, 0], maps["A"][1, :4, :4].mean(), rtol=1e-6)
    images_drawn = [t for t in fig.data if isinstance(t, go.Image)]
    assert len(images_drawn) == 6 and (images_drawn[0].dx or 1) == 1 and images_drawn[1].dx == 2
    contours = [t for t in fig.data if isinstance(t, go.Contour)]  # the mask's outline, cropped by viz
    assert (contours[0].x0, contours[0].dx) == (3, 1)  # full size: pixels 4..7, one pixel of border
    assert (contours[1].x0, contours[1].dx) == (2.5, 2)  # thinned: pixels 2..3 of 8 -> centred at 4.5 and 6.5
    big = viz_knn.maps_grid(torch.rand(3, 3, 32, 32), torch.zeros(3, 32, 32, dtype=torch.bool),
                            {"A": np.random.rand(3, 32, 32)}, indices=[0], display_size=16)
    assert [t.z.shape for t in big.data if isinstance(t, go.Heatmap)] == [(4, 4)]  # image 16 px, map 4
    assert heatmaps[0].zmin == heatmaps[2].zmin and heatmaps[1].zmin == 100  # one range per method
    assert sum(isinstance(t, go.Contour) for t in fig.data) == 3  # the mask of test 1 in its three panels
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["test 1", "A<br>score 0.20", "B<br>score 2.00", "test 2", "A<br>score 0.30", "B<br>score 3.00"]


def test_density_histogram_and_projection():
    fig = viz_knn.density_histogram_figure({"K = 1": np.array([1.0, 2.0]), "K = 5": np.array([2.0, 3.0, 4.0])},
                                           nbins=3)
    assert [t.name for t in fig.data] == ["K = 1", "K = 5"]
    assert list(fig.data[0].x) == pytest.approx([1.5, 2.5, 3.5])  # one set of bins over all values: [1, 4]
    assert list(fig.data[0].y) == [1, 1, 0] and list(fig.data[1].y) == [0, 1, 2]

    positions = density.patch_positions((2, 2, 3))
    points = np.arange(24, dtype=np.float32).reshape(12, 2)
    values = np.arange(12, dtype=np.float32)
    fig = viz_knn.projection_figure(points, values, positions)
    scatter = fig.data[0]
    assert list(scatter.x) == list(points[:, 0]) and list(scatter.marker.color) == list(values)
    assert list(scatter.customdata[7]) == [1, 0, 1, 7]  # patch 7 = image 1, row 0, col 1
    assert "train image %{customdata[0]}" in scatter.hovertemplate
    with pytest.raises(ValueError, match="one value and one position per point"):
        viz_knn.projection_figure(points, values[:5], positions)


def test_ldknn_terms_figure_panels():
    image = torch.rand(3, 16, 16)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    terms = {"distance": torch.full((4, 4), 2.0), "density": torch.full((4, 4), 0.5), "score": torch.full((4, 4), 1.0)}
    fig = viz_knn.ldknn_terms_figure(image, mask, terms, alpha=2.0, knn_map=torch.ones(4, 4))
    heatmaps = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heatmaps) == 4
    assert float(np.unique(heatmaps[2].z)[0]) == 1.0  # α·d = 2 × 0.5
    assert len(fig.layout.annotations) == 5


def test_ldknn_explorer_recomputes_the_score_for_alpha():
    images, masks = torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.bool)
    terms = {"distance": torch.full((2, 2, 2), 3.0), "density": torch.full((2, 2, 2), 1.0)}
    app = viz_knn.ldknn_explorer(images, masks, terms, names=["a", "b"], alpha=1.0)
    last = [t for t in app.figure.data if isinstance(t, go.Heatmap)][-1]
    assert float(np.unique(last.z)[0]) == 2.0  # 3 - 1·1
    app.controls["alpha"].value = 2.0
    last = [t for t in app.figure.data if isinstance(t, go.Heatmap)][-1]
    assert float(np.unique(last.z)[0]) == 1.0  # 3 - 2·1
