"""Figures and tables of notebook 06 (DefectMaker and REB, ``shared/papers/002_*.txt``): the defect gallery, the
7-class self-supervised task, the fine-tuning curve, KNN vs LDKNN (REB's table 5), and anomaly maps by method."""

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

REPRESENTATION_COLOURS = ("#7f7f7f", "#d62728", "#1f77b4", "#2ca02c")


def gallery_figure(entries: Sequence[Mapping], foreground=None, cell: int = 170,
                   title: str | None = "DefectMaker: every shape × fill × fusion") -> go.Figure:
    """:func:`iadtutor.defectmaker.gallery` entries, a row per shape (notebook 06): the dimmed image with the shape
    white and the ``foreground`` outlined, then a column per fill x fusion with the changed pixels outlined."""
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
        preview = core.to_rgb_uint8(first["image"]).astype(np.float32) / 3  # dimmed, the shape's pixels white
        preview[core.to_numpy(first["mask"]).astype(bool)] = 255
        fig.add_trace(core.image_trace(preview.astype(np.uint8), f"{shape} shape"), row=r, col=1)
        if foreground is not None and core.to_numpy(foreground).astype(bool).any():
            fig.add_trace(core.mask_trace(foreground, "foreground", colour=core.REGION_COLOUR), row=r, col=1)
        for c, (fill, fusion) in enumerate(combos, start=2):
            entry = by_key[shape, fill, fusion]
            core.add_image(fig, entry["image"], mask=entry["mask"], row=r, col=c,
                           image_name=f"{shape}, {fill}, {fusion}")
    return core.finish_panels(fig, title, height=len(shapes) * (cell + 25) + (60 if title else 30), top=(60, 30))


def task_figure(dataset, image_index: int = 0, cell: int = 190,
                title: str | None = "The 7-class self-supervised task: one normal image, six defect classes"
                ) -> go.Figure:
    """Item ``image_index`` of every class of a ``DefectMakerDataset``, changed pixels outlined (notebook 06)."""
    n_classes = dataset.n_classes
    if not 0 <= image_index < len(dataset.images):
        raise ValueError(f"image_index must be in [0, {len(dataset.images)}); got {image_index}.")
    items = [dataset.sample(image_index * n_classes + label) for label in range(n_classes)]
    names = CLASS_NAMES if n_classes == len(CLASS_NAMES) else [str(i) for i in range(n_classes)]
    return core.image_grid([image for image, _, _ in items], masks=[mask for _, _, mask in items],
                           titles=[f"{label}: {names[label]}" for _, label, _ in items], cols=4, cell=cell, title=title)


def chance_loss(n_classes: int, kind: str = "bce") -> float:
    """The loss of a network that always predicts the class frequencies ``1 / n_classes`` (notebook 06): ``ln n``
    for softmax cross-entropy (``"ce"``), the binary entropy of ``1 / n`` for the authors' sigmoid BCE (``"bce"``)."""
    p = 1 / n_classes
    return math.log(n_classes) if kind == "ce" else -(p * math.log(p) + (1 - p) * math.log(1 - p))


def training_curve_figure(history: Mapping, n_classes: int = len(CLASS_NAMES),
                          title: str | None = "DefectMaker fine-tuning: loss per update, held-out accuracy"
                          ) -> go.Figure:
    """``finetune_backbone``'s ``history`` (notebook 06): the loss of every update (left axis) and the held-out
    accuracy of ``heldout_curve`` (right), with dotted chance levels (:func:`chance_loss` of ``loss_kind``,
    ``1 / n_classes``)."""
    if not len(history.get("loss", [])):
        raise ValueError("history has no 'loss' values; pass the history returned by finetune_backbone.")
    if not len(history.get("heldout_curve") or []):
        raise ValueError("history has no 'heldout_curve'; fine-tune with heldout_images (and heldout_every).")
    kind = history.get("loss_kind", "bce")
    updates, accuracies = zip(*history["heldout_curve"])
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for x, y, name, colour, chance, text, where, right in (
            (list(range(1, len(history["loss"]) + 1)), history["loss"], f"training loss ({kind})", "#d62728",
             chance_loss(n_classes, kind), "chance loss", "top left", False),
            (list(updates), accuracies, "held-out accuracy", "#1f77b4", 1 / n_classes, f"chance accuracy 1/{n_classes}",
             "bottom right", True)):
        fig.add_trace(go.Scatter(x=x, y=[float(v) for v in y], name=name, line=dict(color=colour),
                                 mode="lines+markers" if right else "lines",
                                 hovertemplate=f"update %{{x}}<br>{name} %{{y:.3f}}<extra></extra>"), secondary_y=right)
        fig.add_hline(y=chance, line=dict(color=colour, dash="dot", width=1), annotation_text=text,
                      annotation_position=where, secondary_y=right)
    fig.update_xaxes(title_text="update")
    fig.update_yaxes(title_text="loss", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="held-out accuracy", range=[0, 1], secondary_y=True)
    return fig.update_layout(title=title, height=380, hovermode="x unified", legend=dict(orientation="h", y=-0.2),
                             margin=dict(l=60, r=60, t=50 if title else 20, b=50))


def confusion_table(confusion, class_names: Sequence[str] = CLASS_NAMES) -> pd.DataFrame:
    """``history["heldout_confusion"]`` as a table (notebook 06): a row per true class, a column per predicted class,
    and the fraction of each true class labelled right (``recall``)."""
    counts = np.asarray(confusion, dtype=int)
    if counts.ndim != 2 or counts.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion must be {len(class_names)} x {len(class_names)} counts; got shape {counts.shape}.")
    table = pd.DataFrame(counts, index=pd.Index(class_names, name="true"), columns=pd.Index(class_names, name="predicted"))
    return table.assign(recall=(np.diag(counts) / np.maximum(counts.sum(axis=1), 1)).round(2))


def comparison_table(table: pd.DataFrame, metrics: Sequence[str] = METRICS, digits: int = 3) -> pd.DataFrame:
    """``compare_representations``'s table as REB's table 5: a row per representation, columns ``(metric, scorer)``
    (notebook 06); values as text ``"0.812 [0.700, 0.900]"`` when the table has the intervals ``METRIC_low`` /
    ``METRIC_high`` (``compare_representations(..., n_boot=...)``)."""
    core.require_columns(table, ["representation", "scorer", *metrics], "comparison_table")
    order = dict(index=list(dict.fromkeys(table["representation"])), columns=list(dict.fromkeys(table["scorer"])))
    with_intervals = all(f"{m}_{end}" in table.columns for m in metrics for end in ("low", "high"))
    cells = table.copy()
    for m in metrics:
        if with_intervals:
            cells[m] = [f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
                        for v, lo, hi in zip(table[m], table[f"{m}_low"], table[f"{m}_high"])]
        else:
            cells[m] = table[m].astype(float).round(digits)
    wide = pd.concat({METRIC_TITLES.get(m, m): cells.pivot(index="representation", columns="scorer", values=m)
                      .reindex(**order) for m in metrics}, axis=1)
    wide.columns.names = ["metric", "scorer"]
    return wide


def comparison_figure(table: pd.DataFrame, metrics: Sequence[str] = METRICS,
                      title: str | None = "KNN vs LDKNN on ImageNet vs DefectMaker features",
                      yrange: Sequence[float] | None = None) -> go.Figure:
    """Grouped bars, a panel per metric: scorers on the x axis, a colour per representation (notebook 06)."""
    core.require_columns(table, ["representation", "scorer", *metrics], "comparison_figure")
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
                                               "%{y:.3f}<extra></extra>"), row=1, col=c)
    values = table[list(metrics)].astype(float).to_numpy()
    if yrange is None:
        low = float(np.nanmin(values)) if np.isfinite(values).any() else 0.0
        yrange = (max(0.0, math.floor(low * 10) / 10 - 0.05), 1.04)
    fig.update_yaxes(range=list(yrange))
    fig.update_annotations(font_size=12)
    return fig.update_layout(title=title, barmode="group", height=400,
                             margin=dict(l=50, r=20, t=70 if title else 30, b=40),
                             legend=dict(orientation="h", y=-0.12), uniformtext_minsize=8)


def maps_figure(images, masks, maps_by_method: Mapping[str, object], indices: Sequence[int],
                names: Sequence[str] | None = None, cell: int = 190, opacity: float = 0.55,
                title: str | None = None) -> go.Figure:
    """Anomaly maps ``{row label: (N, H, W)}`` of several methods (rows) on the test images ``indices`` (columns), a
    colour range per row: scores have different scales (LDKNN's can be negative) (notebook 06)."""
    if not maps_by_method:
        raise ValueError("maps_by_method is empty: give at least one {label: (N, H, W) maps}.")
    indices = [int(i) for i in indices]
    titles = [f"{label}: {names[i] if names is not None else i}" for label in maps_by_method for i in indices]
    fig = make_subplots(rows=len(maps_by_method), cols=len(indices), subplot_titles=titles, horizontal_spacing=0.02,
                        vertical_spacing=0.07)
    for r, (label, maps) in enumerate(maps_by_method.items(), start=1):
        shown = [core.to_numpy(maps[i]) for i in indices]
        zmin, zmax = core.value_range(shown)
        for c, (i, values) in enumerate(zip(indices, shown), start=1):
            core.add_image(fig, images[i], values, masks[i], row=r, col=c, overlay_name=f"{label} score",
                           opacity=opacity, zmin=zmin, zmax=zmax, max_overlay_side=32)
    return core.finish_panels(fig, title, height=len(maps_by_method) * (cell + 25) + (60 if title else 30),
                              top=(60, 30), font_size=10)
