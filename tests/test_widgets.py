"""Patch geometry (windows, receptive fields) and the local-window explorer app."""

import math

import numpy as np
import plotly.io as pio
import pytest
import torch
from torch import nn

from iadtutor import knn, patches
from iadtutor.viz import core as viz
from iadtutor.viz import knn as viz_knn
from iadtutor.backbones import FeatureExtractor
from iadtutor.embed import EmbeddingConfig, PatchEmbedder


def random_embeddings(n, c=5, h=8, w=8, seed=0):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ geometry
def test_patch_pixels_on_a_stride_4_grid():
    # a 32×32 grid over 128×128 pixels: patch (2, 3) holds pixel columns 12..15 and rows 8..11
    assert patches.patch_pixels(2, 3, (32, 32), (128, 128)) == (11.5, 15.5, 7.5, 11.5)
    with pytest.raises(ValueError, match="outside the 32×32 patch grid"):
        patches.patch_pixels(32, 0, (32, 32), (128, 128))


@pytest.mark.parametrize("window", [1, 2, 3, 4, 7])
def test_window_cells_match_eq2_offsets(window):
    grid = (10, 12)
    for row, col in [(5, 6), (0, 0), (9, 11), (1, 10)]:
        r0, r1, c0, c1 = patches.window_cells(row, col, window, grid)
        rows = [row + d for d in knn.window_offsets(window) if 0 <= row + d < grid[0]]
        cols = [col + d for d in knn.window_offsets(window) if 0 <= col + d < grid[1]]
        assert (r0, r1, c0, c1) == (min(rows), max(rows), min(cols), max(cols))


def test_offset_of_is_the_order_of_nearest():
    offsets = knn.window_offsets(5)
    pairs = [(dy, dx) for dy in offsets for dx in offsets]
    assert [patches.offset_of(i, 5) for i in range(25)] == pairs
    with pytest.raises(ValueError):
        patches.offset_of(25, 5)


def test_window_distances_against_a_loop_and_lwinnn():
    train, test = random_embeddings(4, seed=1), random_embeddings(2, seed=2)
    window = 5
    scorer = knn.LocalWindowNN(window=window).fit(train)
    distance, train_index, offset_index = scorer.nearest(test)
    offsets = knn.window_offsets(window)
    for row, col in [(0, 0), (3, 4), (7, 6)]:
        table = patches.window_distances(test[1], train, row, col, window)
        assert table.shape == (4, window, window)
        for m in range(4):
            for i, dy in enumerate(offsets):
                for j, dx in enumerate(offsets):
                    a, b = row + dy, col + dx
                    if 0 <= a < 8 and 0 <= b < 8:
                        expected = float(torch.linalg.vector_norm(test[1, :, row, col] - train[m, :, a, b]))
                        assert table[m, i, j].item() == pytest.approx(expected, rel=1e-5)
                    else:
                        assert math.isinf(table[m, i, j])
        best = int(torch.argmin(table))
        assert table.min().item() == pytest.approx(distance[1, row, col].item(), rel=1e-4)
        assert best // window**2 == train_index[1, row, col]
        assert best % window**2 == offset_index[1, row, col]


def test_cell_at():
    assert patches.cell_at(0, 0, (32, 32), (128, 128)) == (0, 0)
    assert patches.cell_at(127, 64, (32, 32), (128, 128)) == (31, 16)


def linear_backbone():
    """Three 3×3 convolutions with positive weights and no non-linearity: receptive fields 3, 5 and 9
    pixels (the second one has stride 2)."""
    convs = [nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(2, 2, 3, stride=2, padding=1), nn.Conv2d(2, 2, 3, padding=1)]
    for conv in convs:
        nn.init.constant_(conv.weight, 0.1)
        nn.init.zeros_(conv.bias)
    return FeatureExtractor("linear", nn.Identity(), convs, (2, 2, 2)).eval()


@pytest.mark.parametrize("tap, pooled, cell, box, padded", [
    (0, False, (10, 12), (11 - 0.5, 13 + 0.5, 9 - 0.5, 11 + 0.5), True),        # 3×3 around pixel (10, 12)
    (0, True, (10, 12), (10 - 0.5, 14 + 0.5, 8 - 0.5, 12 + 0.5), True),         # + 3×3 pooling: 5×5
    (0, True, (10, 12), (11 - 0.5, 15 + 0.5, 9 - 0.5, 13 + 0.5), False),        # unpadded: cell i pools i..i+2
    (1, False, (5, 6), (10 - 0.5, 14 + 0.5, 8 - 0.5, 12 + 0.5), True),          # stride 2: centre (10, 12), 5×5
    (2, False, (5, 6), (8 - 0.5, 16 + 0.5, 6 - 0.5, 14 + 0.5), True),           # 9×9
])
def test_receptive_field_of_a_known_network(tap, pooled, cell, box, padded):
    embedder = PatchEmbedder(linear_backbone(), EmbeddingConfig(image_size=32, pool_padding=padded))
    gradient = patches.receptive_field(embedder, torch.rand(3, 24, 24), tap, *cell, pooled=pooled)
    assert gradient.shape == (24, 24)
    assert patches.support_box(gradient) == box


def test_receptive_fields_pick_the_cell_of_a_pixel_on_each_tap():
    embedder = PatchEmbedder(linear_backbone(), EmbeddingConfig(image_size=32))
    fields = patches.receptive_fields(embedder, torch.rand(3, 24, 24), y=10, x=12)
    boxes = [patches.support_box(field) for field in fields]
    # pixel (10, 12) is cell (10, 12) of tap 0, (5, 6) of taps 1 and 2: the boxes of the test above
    assert boxes == [(10.5, 13.5, 8.5, 11.5), (9.5, 14.5, 7.5, 12.5), (7.5, 16.5, 5.5, 14.5)]


# ------------------------------------------------------------------------------------------- explorer
@pytest.fixture
def explorer():
    generator = torch.Generator().manual_seed(0)
    train_images, test_images = torch.rand(5, 3, 32, 32, generator=generator), torch.rand(3, 3, 32, 32, generator=generator)
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[1, 8:16, 8:20] = True
    previous = pio.renderers.default
    viz.setup_notebook(seed=None)
    app = viz_knn.WindowExplorer(train_images, test_images, masks, random_embeddings(5, seed=3),
                                 random_embeddings(3, seed=4), window=3, test_index=1, windows=(1, 3, 5),
                                 n_train_shown=3, test_names=["good", "hole", "good"])
    yield app
    pio.renderers.default = previous


def shapes_of(fig, colour, xref):
    return [s for s in fig.layout.shapes if s.line.color == colour and s.xref == xref]


def test_default_patch_is_the_highest_scoring_one(explorer):
    distance = knn.LocalWindowNN(window=3).fit(explorer.train_embeddings).score(explorer.test_embeddings[1:2])[0]
    assert (explorer.row.value, explorer.col.value) == divmod(int(torch.argmax(distance)), 8)


def test_window_rectangle_covers_exactly_the_window_patches(explorer):
    explorer.row.value, explorer.col.value = 4, 3
    for window in (1, 3, 5):
        explorer.window.value = window
        (box,) = shapes_of(explorer.figure, viz.REGION_COLOUR, "x")
        half = window // 2
        # 4 pixels per patch; patches col-half .. col+half, rows row-half .. row+half (all inside the grid)
        assert (box.x0, box.x1) == ((3 - half) * 4 - 0.5, (3 + half + 1) * 4 - 0.5)
        assert (box.y0, box.y1) == ((4 - half) * 4 - 0.5, (4 + half + 1) * 4 - 0.5)
        assert (box.x1 - box.x0, box.y1 - box.y0) == (4 * window, 4 * window)
        (patch,) = shapes_of(explorer.figure, viz.SELECTED_COLOUR, "x")
        assert (patch.x0, patch.x1, patch.y0, patch.y1) == (11.5, 15.5, 15.5, 19.5)


def test_window_is_clipped_at_the_border(explorer):
    explorer.row.value, explorer.col.value = 0, 7
    explorer.window.value = 5
    (box,) = shapes_of(explorer.figure, viz.REGION_COLOUR, "x")
    assert (box.x0, box.x1, box.y0, box.y1) == (5 * 4 - 0.5, 32 - 0.5, -0.5, 3 * 4 - 0.5)


def test_nearest_neighbour_box_and_title_match_a_brute_force_search(explorer):
    explorer.row.value, explorer.col.value = 2, 5
    explorer.window.value = 3
    query, train = explorer.test_embeddings[1, :, 2, 5], explorer.train_embeddings
    candidates = [(float(torch.linalg.vector_norm(query - train[m, :, a, b])), m, a, b)
                  for m in range(5) for a in range(1, 4) for b in range(4, 7)]
    distance, m, a, b = min(candidates)
    found = explorer.last_match
    assert found["train_index"] == m and found["match_cell"] == (a, b)
    assert found["distance"] == pytest.approx(distance, rel=1e-4)
    # the first train panel (x5: second row, first column) is that image, with the red box on the match
    (match_box,) = shapes_of(explorer.figure, viz.MATCH_COLOUR, "x5")
    assert (match_box.x0, match_box.y0) == (b * 4 - 0.5, a * 4 - 0.5)
    titles = [annotation.text for annotation in explorer.figure.layout.annotations]
    assert f"train {m}: nearest, d = {distance:.2f}" in titles
    assert f"distance {distance:.3f}" in explorer.status.value


def test_controls_redraw_the_figure_and_the_output(explorer):
    def anomaly_map(fig):
        (trace,) = [t for t in fig.data if t.type == "heatmap" and t.name == "anomaly score"]
        return np.asarray(trace.z)

    before = explorer.figure
    explorer.window.value = 1
    after = explorer.figure
    assert after is not before
    assert "δ = 1" in after.layout.annotations[2].text
    assert not np.array_equal(anomaly_map(after), anomaly_map(before))
    explorer.image_picker.value = 0
    assert explorer.figure.data[0].source != after.data[0].source
    assert [t.type for t in explorer.figure.data[:2]] == ["image", "image"]  # good image: no mask outline
    # the widget: picker and δ, the patch sliders, the description line, then the Output holding the figure
    rows = [list(box.children) for box in explorer.app.children[:2]]
    assert rows == [[explorer.image_picker, explorer.window], [explorer.row, explorer.col]]
    assert list(explorer.app.children[2:]) == [explorer.status, explorer.output]
    (output,) = explorer.output.outputs
    assert set(output["data"]) == {viz.PLOTLY_MIME_TYPE}  # the PNG comes with `notebooks clean`, the HTML with the book


def test_explorer_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="test_masks has 2 masks"):
        viz_knn.WindowExplorer(torch.rand(2, 3, 16, 16), torch.rand(3, 3, 16, 16),
                               torch.zeros(2, 16, 16, dtype=torch.bool), random_embeddings(2, h=4, w=4),
                               random_embeddings(3, h=4, w=4))
