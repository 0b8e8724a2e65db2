"""Figures and tables for notebook 06 (DefectMaker and REB, ``shared/papers/002_*.txt``).

* :func:`gallery_figure` — every DefectMaker shape x fill x fusion on one image (the entries of
  :func:`iadtutor.defectmaker.gallery`), one row per shape: first the shape alone with the foreground it
  must stay in, then the four fill / fusion combinations with the changed pixels outlined;
* :func:`task_figure` — one item of each of the 7 classes of the self-supervised task;
* :func:`training_curve_figure` — loss and accuracy per epoch of
  :func:`iadtutor.defectmaker.finetune_backbone`, with the chance level of a 7-class guess;
* :func:`comparison_table` / :func:`comparison_figure` — KNN vs LDKNN on ImageNet vs fine-tuned features
  (the table of :func:`iadtutor.defectmaker.compare_representations`, laid out like REB's table 5).

Generic pieces (the renderer, images with outlines) come from :mod:`iadtutor.viz`.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from iadtutor.defectmaker import CLASS_NAMES, FILLS, FUSIONS, SHAPES
from iadtutor.metrics import METRIC_TITLES, METRICS
from iadtutor.viz import core

FOREGROUND_COLOUR = "#ffd400"  # yellow: the region defects may go; defects themselves are outlined in cyan
REPRESENTATION_COLOURS = ("#7f7f7f", "#d62728", "#1f77b4", "#2ca02c")


def _shape_preview(image, mask) -> np.ndarray:
    """The image darkened to a third, with the shape's pixels white: ``(H, W, 3)`` uint8."""
    rgb = core.to_rgb_uint8(image).astype(np.float32) / 3
    rgb[core.to_numpy(mask).astype(bool)] = 255
    return rgb.astype(np.uint8)


def gallery_figure(entries: Sequence[Mapping], foreground=None, cell: int = 170,
                   title: str | None = "DefectMaker: every shape × fill × fusion") -> go.Figure:
    """A grid of :func:`iadtutor.defectmaker.gallery` entries: one row per shape (in :data:`SHAPES` order),
    columns "shape" (the image dimmed, the defect's pixels white, the ``foreground`` ``(H, W)`` outlined
    in yellow) then one column per fill x fusion with the changed pixels outlined in cyan.

    ``entries``: dicts with ``shape``, ``fill``, ``fusion``, ``image`` ``(3, H, W)`` and ``mask`` ``(H, W)``.
    ``cell``: the height of a row in pixels.
    """
    by_key = {(e["shape"], e["fill"], e["fusion"]): e for e in entries}
    shapes = [s for s in SHAPES if any(key[0] == s for key in by_key)]
    combos = [(fill, fusion) for fill in FILLS for fusion in FUSIONS]
    if not shapes:
        raise ValueError("entries is empty: pass the list returned by iadtutor.defectmaker.gallery.")
    missing = [(s, f, u) for s in shapes for f, u in combos if (s, f, u) not in by_key]
    if missing:
        raise ValueError(f"entries lack these shape/fill/fusion combinations: {missing}.")
    titles = [t for shape in shapes for t in [f"<b>{shape}</b>"] + [f"{fill} · {fusion}" for fill, fusion in combos]]
    fig = make_subplots(rows=len(shapes), cols=1 + len(combos), subplot_titles=titles,
                        horizontal_spacing=0.015, vertical_spacing=0.04)
    for r, shape in enumerate(shapes, start=1):
        first = by_key[shape, combos[0][0], combos[0][1]]
        fig.add_trace(core.image_trace(_shape_preview(first["image"], first["mask"]), f"{shape} shape"),
                      row=r, col=1)
        if foreground is not None and core.to_numpy(foreground).astype(bool).any():
            outline = core.mask_trace(foreground, "foreground", colour=FOREGROUND_COLOUR, width=1.5)
            fig.add_trace(outline, row=r, col=1)
        for c, (fill, fusion) in enumerate(combos, start=2):
            entry = by_key[shape, fill, fusion]
            core.add_image(fig, entry["image"], mask=entry["mask"], row=r, col=c,
                          image_name=f"{shape}, {fill}, {fusion}")
    core.image_axes(fig)
    fig.update_annotations(font_size=11)
    fig.update_layout(title=title, height=len(shapes) * (cell + 25) + (60 if title else 30),
                      margin=dict(l=10, r=10, t=60 if title else 30, b=10), showlegend=False)
    return fig


def task_figure(dataset, image_index: int = 0, cell: int = 190,
                title: str | None = "The 7-class self-supervised task: one normal image, six defect classes") -> go.Figure:
    """Item ``image_index`` of every class of a :class:`iadtutor.defectmaker.DefectMakerDataset` (the same
    normal image, flipped the way the dataset flips it), the changed pixels outlined, titled with the label."""
    n_classes = dataset.n_classes
    if not 0 <= image_index < len(dataset.images):
        raise ValueError(f"image_index must be in [0, {len(dataset.images)}); got {image_index}.")
    items = [dataset.sample(image_index * n_classes + label) for label in range(n_classes)]
    names = CLASS_NAMES if n_classes == len(CLASS_NAMES) else [str(i) for i in range(n_classes)]
    return core.image_grid([image for image, _, _ in items], masks=[mask for _, _, mask in items],
                          titles=[f"{label}: {names[label]}" for _, label, _ in items],
                          cols=4, cell=cell, title=title)


def training_curve_figure(history: Mapping[str, Sequence[float]], n_classes: int = len(CLASS_NAMES),
                          title: str | None = "DefectMaker fine-tuning: loss and accuracy per epoch") -> go.Figure:
    """Mean cross-entropy (left axis) and training accuracy (right axis) per epoch of ``history``
    (from :func:`iadtutor.defectmaker.finetune_backbone`), with dotted chance levels: loss ``ln(n_classes)``
    and accuracy ``1 / n_classes`` (what guessing gives)."""
    for key in ("loss", "accuracy"):
        if key not in history or not len(history[key]):
            raise ValueError(f"history has no {key!r} values; pass the history returned by finetune_backbone.")
    epochs = list(range(1, len(history["loss"]) + 1))
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=epochs, y=[float(v) for v in history["loss"]], name="loss (cross-entropy)",
                             mode="lines+markers", line=dict(color="#d62728"),
                             hovertemplate="epoch %{x}<br>loss %{y:.3f}<extra></extra>"), secondary_y=False)
    fig.add_trace(go.Scatter(x=epochs, y=[float(v) for v in history["accuracy"]], name="training accuracy",
                             mode="lines+markers", line=dict(color="#1f77b4"),
                             hovertemplate="epoch %{x}<br>accuracy %{y:.3f}<extra></extra>"), secondary_y=True)
    fig.add_hline(y=math.log(n_classes), line=dict(color="#d62728", dash="dot", width=1),
                  annotation_text=f"chance loss ln {n_classes}", annotation_position="top left",
                  secondary_y=False)
    fig.add_hline(y=1 / n_classes, line=dict(color="#1f77b4", dash="dot", width=1),
                  annotation_text=f"chance accuracy 1/{n_classes}", annotation_position="bottom right",
                  secondary_y=True)
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(title_text="loss", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="accuracy", range=[0, 1], secondary_y=True)
    fig.update_layout(title=title, height=380, hovermode="x unified", margin=dict(l=60, r=60, t=50 if title else 20, b=50),
                      legend=dict(orientation="h", y=-0.2))
    return fig


def comparison_table(table: pd.DataFrame, metrics: Sequence[str] = METRICS, digits: int = 3) -> pd.DataFrame:
    """The table of :func:`iadtutor.defectmaker.compare_representations` laid out like REB's table 5: one row per
    representation, columns ``(metric, scorer)``, values rounded to ``digits`` decimals."""
    missing = [m for m in ("representation", "scorer", *metrics) if m not in table.columns]
    if missing:
        raise ValueError(f"table lacks the columns {missing}; pass the result of compare_representations.")
    representations, scorers = list(dict.fromkeys(table["representation"])), list(dict.fromkeys(table["scorer"]))
    parts = {METRIC_TITLES.get(m, m): table.pivot(index="representation", columns="scorer", values=m)
             .loc[representations, scorers] for m in metrics}
    wide = pd.concat(parts, axis=1)
    wide.columns.names = ["metric", "scorer"]
    return wide.astype(float).round(digits)


def comparison_figure(table: pd.DataFrame, metrics: Sequence[str] = METRICS,
                      title: str | None = "KNN vs LDKNN on ImageNet vs DefectMaker features",
                      yrange: Sequence[float] | None = None) -> go.Figure:
    """Grouped bars, one panel per metric: scorers on the x axis, one bar colour per representation."""
    comparison_table(table, metrics)  # checks the columns
    representations, scorers = list(dict.fromkeys(table["representation"])), list(dict.fromkeys(table["scorer"]))
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[METRIC_TITLES.get(m, m) for m in metrics],
                        shared_yaxes=True, horizontal_spacing=0.04)
    for i, representation in enumerate(representations):
        rows = table[table["representation"] == representation].set_index("scorer").loc[scorers]
        for c, metric in enumerate(metrics, start=1):
            fig.add_trace(go.Bar(x=scorers, y=rows[metric].astype(float).tolist(), name=representation,
                                 legendgroup=representation, showlegend=c == 1,
                                 marker_color=REPRESENTATION_COLOURS[i % len(REPRESENTATION_COLOURS)],
                                 texttemplate="%{y:.3f}", textposition="outside",
                                 hovertemplate=f"{representation} + %{{x}}<br>{METRIC_TITLES.get(metric, metric)} "
                                               "%{y:.3f}<extra></extra>"),
                          row=1, col=c)
    values = table[list(metrics)].astype(float).to_numpy()
    if yrange is None:
        low = float(np.nanmin(values)) if np.isfinite(values).any() else 0.0
        yrange = (max(0.0, math.floor(low * 10) / 10 - 0.05), 1.04)
    fig.update_yaxes(range=list(yrange))
    fig.update_annotations(font_size=12)
    fig.update_layout(title=title, barmode="group", height=400, margin=dict(l=50, r=20, t=70 if title else 30, b=40),
                      legend=dict(orientation="h", y=-0.12), uniformtext_minsize=8)
    return fig


def maps_figure(images, masks, maps_by_method: Mapping[str, object], indices: Sequence[int],
                names: Sequence[str] | None = None, cell: int = 190, opacity: float = 0.55,
                title: str | None = None) -> go.Figure:
    """Anomaly maps of several methods (one row each) on the test images ``indices`` (columns).

    ``images`` ``(N, 3, H, W)``, ``masks`` ``(N, H, W)`` (outlined in cyan), ``maps_by_method``
    ``{row label: (N, H, W) maps}``. Each row gets its own colour range (that method's minimum and
    maximum over the shown images): scores of different methods are on different scales (LDKNN's can be
    negative), so compare where a row is bright, not its colours across rows. ``names``: per test image
    a label for the column titles (e.g. defect types).
    """
    if not maps_by_method:
        raise ValueError("maps_by_method is empty: give at least one {label: (N, H, W) maps}.")
    indices = [int(i) for i in indices]
    rows, cols = len(maps_by_method), len(indices)
    titles = [f"{label}: {names[i] if names is not None else i}" for label in maps_by_method for i in indices]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.07)
    for r, (label, maps) in enumerate(maps_by_method.items(), start=1):
        shown = [core.to_numpy(maps[i]) for i in indices]
        zmin, zmax = float(min(m.min() for m in shown)), float(max(m.max() for m in shown))
        for c, (i, values) in enumerate(zip(indices, shown), start=1):
            core.add_image(fig, images[i], values, masks[i], row=r, col=c, overlay_name=f"{label} score",
                          opacity=opacity, zmin=zmin, zmax=zmax, max_overlay_side=32)
    core.image_axes(fig)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=title, height=rows * (cell + 25) + (60 if title else 30),
                      margin=dict(l=10, r=10, t=60 if title else 30, b=10), showlegend=False)
    return fig
