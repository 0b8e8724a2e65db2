"""iadtutor.viz.reb: notebook 06's figures hold what they claim (one panel per shape x fill x fusion,
outlines where the defect pixels are, the history's numbers, the comparison table's values)."""

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from iadtutor import defectmaker
from iadtutor.viz import core, reb as viz_reb

SIZE = 64


@pytest.fixture(scope="module")
def disk():
    """A bright disk on a dark background, (3, H, W) in [0, 1], and its exact foreground."""
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    inside = (yy - 32) ** 2 + (xx - 32) ** 2 < 20 ** 2
    generator = torch.Generator().manual_seed(0)
    image = torch.stack([0.1 + 0.7 * inside.float()] * 3) + 0.02 * torch.rand(3, SIZE, SIZE, generator=generator)
    return image.clamp(0, 1), inside


def test_gallery_figure_has_every_combination_and_outlines(disk):
    image, foreground = disk
    entries = defectmaker.gallery(image, rng=0, foreground=foreground)
    fig = viz_reb.gallery_figure(entries, foreground)
    n_shapes, n_combos = len(defectmaker.SHAPES), len(defectmaker.FILLS) * len(defectmaker.FUSIONS)
    images = [t for t in fig.data if isinstance(t, go.Image)]
    contours = [t for t in fig.data if isinstance(t, go.Contour)]
    assert len(images) == n_shapes * (1 + n_combos)
    # one foreground outline per row, one defect outline per fill x fusion panel
    assert sum(t.line.color == core.REGION_COLOUR for t in contours) == n_shapes
    assert len(contours) == n_shapes * (1 + n_combos)
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:1 + n_combos] == ["<b>rectangle</b>", "noise · paste", "noise · blend", "cutpaste · paste", "cutpaste · blend"]
    # every defect outline lies inside the foreground's bounding box (the foreground constraint)
    rows, cols = np.nonzero(foreground.numpy())
    for trace in contours:
        if trace.line.color != core.REGION_COLOUR:
            assert trace.x0 + 1 >= cols.min() and trace.y0 + 1 >= rows.min()


def test_gallery_figure_rejects_incomplete_entries(disk):
    image, foreground = disk
    entries = defectmaker.gallery(image, rng=0, foreground=foreground)
    with pytest.raises(ValueError, match="lack"):
        viz_reb.gallery_figure(entries[1:])
    with pytest.raises(ValueError, match="empty"):
        viz_reb.gallery_figure([])


def test_task_figure_shows_one_item_per_class(disk):
    image, foreground = disk
    dataset = defectmaker.DefectMakerDataset(image[None], foregrounds=foreground[None], seed=0)
    fig = viz_reb.task_figure(dataset)
    titles = [a.text for a in fig.layout.annotations if a.text and a.text[0].isdigit()]
    assert titles == [f"{i}: {name}" for i, name in enumerate(defectmaker.CLASS_NAMES)]
    assert sum(isinstance(t, go.Image) for t in fig.data) == 7
    assert sum(isinstance(t, go.Contour) for t in fig.data) == 6  # the normal image has no outline


def test_chance_losses_by_hand():
    assert viz_reb.chance_loss(7, "ce") == pytest.approx(math.log(7))
    # sigmoid BCE with every output at 1/7: one target 1 and six targets 0, averaged over the 7 outputs
    by_hand = -(math.log(1 / 7) + 6 * math.log(6 / 7)) / 7
    assert viz_reb.chance_loss(7, "bce") == pytest.approx(by_hand)


def test_training_curve_carries_the_history_and_chance_levels():
    history = {"loss": [0.45, 0.4, 0.3, 0.2], "accuracy": [0.2, 0.3, 0.45, 0.6], "lr": [0.03] * 4,
               "loss_kind": "bce", "heldout_curve": [(0, 0.14), (2, 0.4), (4, 0.7)]}
    fig = viz_reb.training_curve_figure(history)
    loss, heldout = fig.data
    assert list(loss.y) == history["loss"] and list(loss.x) == [1, 2, 3, 4]
    assert list(heldout.x) == [0, 2, 4] and list(heldout.y) == [0.14, 0.4, 0.7]
    levels = sorted(shape.y0 for shape in fig.layout.shapes)
    assert levels == pytest.approx(sorted([1 / 7, viz_reb.chance_loss(7, "bce")]))
    with pytest.raises(ValueError, match="heldout_curve"):
        viz_reb.training_curve_figure({"loss": [1.0], "heldout_curve": []})


def test_confusion_table_names_classes_and_recalls():
    counts = np.eye(7, dtype=int) * 3
    counts[2, 0], counts[2, 2] = 2, 1  # two of class 2 taken for normal
    table = viz_reb.confusion_table(counts.tolist())
    assert list(table.index) == list(defectmaker.CLASS_NAMES) and table.loc["normal", "normal"] == 3
    assert table.loc[defectmaker.CLASS_NAMES[2], "normal"] == 2
    assert table["recall"].tolist() == [1.0, 1.0, 0.33, 1.0, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="7 x 7"):
        viz_reb.confusion_table([[1, 0], [0, 1]])


@pytest.fixture
def table():
    return pd.DataFrame([
        {"representation": "ImageNet", "scorer": "KNN", "image_auroc": 0.81234, "pixel_auroc": 0.9, "aupro": 0.6},
        {"representation": "ImageNet", "scorer": "LDKNN", "image_auroc": 0.83, "pixel_auroc": 0.91, "aupro": 0.62},
        {"representation": "DefectMaker", "scorer": "KNN", "image_auroc": 0.85, "pixel_auroc": 0.92, "aupro": 0.64},
        {"representation": "DefectMaker", "scorer": "LDKNN", "image_auroc": 0.88, "pixel_auroc": 0.93, "aupro": 0.66},
    ])


def test_comparison_table_is_laid_out_like_table_5(table):
    wide = viz_reb.comparison_table(table)
    assert list(wide.index) == ["ImageNet", "DefectMaker"]
    assert wide.loc["ImageNet", ("image AUROC", "KNN")] == 0.812
    assert wide.loc["DefectMaker", ("AUPRO", "LDKNN")] == 0.66
    assert wide.shape == (2, 6)
    with pytest.raises(ValueError, match="missing"):
        viz_reb.comparison_table(table.drop(columns="aupro"))


def test_comparison_table_writes_intervals_in_brackets(table):
    with_ci = table.assign(**{f"{m}_{end}": table[m] + (-0.1 if end == "low" else 0.05)
                              for m in ("image_auroc", "pixel_auroc", "aupro") for end in ("low", "high")})
    wide = viz_reb.comparison_table(with_ci)
    assert wide.loc["ImageNet", ("image AUROC", "KNN")] == "0.812 [0.712, 0.862]"
    assert wide.loc["DefectMaker", ("AUPRO", "LDKNN")] == "0.660 [0.560, 0.710]"


def test_comparison_figure_bars_hold_the_table_values(table):
    fig = viz_reb.comparison_figure(table)
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert len(bars) == 2 * 3  # representations x metrics
    first = bars[0]  # ImageNet, image AUROC
    assert first.name == "ImageNet" and list(first.x) == ["KNN", "LDKNN"]
    assert list(first.y) == pytest.approx([0.81234, 0.83])
    last = bars[-1]  # DefectMaker, AUPRO
    assert last.name == "DefectMaker" and list(last.y) == pytest.approx([0.64, 0.66])
    assert sum(bool(t.showlegend) for t in bars) == 2
