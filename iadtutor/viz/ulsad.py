"""Figures and tables for notebook 05 (ULSAD, ``shared/papers/003_*.txt``): what each branch computes.

* :func:`branch_outputs` — the intermediate tensors of a trained :class:`~iadtutor.ulsad.ULSAD` for some
  images: the features ``U``, the local reconstruction ``U~'``, ``U~''``, the global output ``U^`` and
  the raw maps of eqs. 7 and 8, all at feature resolution;
* :func:`reconstruction_figure` — the local branch: channels of ``U`` above the same channels of its
  reconstruction ``U~'``, and the local distance map (eq. 7);
* :func:`diverse_query_cells` and :func:`attention_figure` — attention maps of a few query locations
  that show different things, over the image, like the paper's figure 5, each query marked;
* :func:`branch_maps_figure` — test images (rows) with their local, global and combined maps and masks;
* :func:`loss_curve_figure` — the loss terms of Algorithm 1 per epoch;
* :func:`branch_metrics_table` — image AUROC / pixel AUROC / AUPRO per branch, for all anomalies and
  separately for structural and logical ones (each against the good test images).

Generic pieces (the renderer, images with overlays) come from :mod:`iadtutor.viz`.
:func:`fix_cpu_threads` makes a CPU training run repeat exactly (ULSAD's sums depend on the thread count).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

import ipywidgets as widgets
from IPython.display import display

from iadtutor import metrics
from iadtutor.data import anomaly_kind
from iadtutor.viz import core

BRANCHES = ("local", "global", "combined")
BRANCH_TITLES = {"local": "local (eq. 7)", "global": "global (eq. 8)", "combined": "combined"}
LOSS_TITLES = {"loss": "total loss", "local": "local L_pl (eq. 1)", "consistency": "consistency L_pg (eq. 5)",
               "local_global": "local-global L_lg (eq. 6)"}
QUERY_COLOUR = "#39ff14"
ATTENTION_COLOURSCALE = "Viridis"
FEATURE_COLOURSCALE = "RdBu_r"
KINDS = ("structural", "logical", "other")


# ------------------------------------------------------------------------------------ reproducibility
def fix_cpu_threads(threads: int | None = 1) -> int:
    """Fix the number of CPU threads torch uses (``None`` leaves torch's default); return the number in use.

    Convolutions split their sums over the threads, so the same seeded training gives different numbers
    with 1, 2 or 8 threads (on the toy ``box``, image scores already differ by a few per cent after two
    ULSAD epochs); with the thread count fixed it repeats exactly. On a shared or busy machine one
    thread is often also the fastest.
    """
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer or None; got {threads!r}.")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


# ------------------------------------------------------------------------------------ model internals
def branch_outputs(model, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Intermediate tensors of a trained ULSAD ``model`` for ``images (N, 3, H, W)`` in [0, 1], on the CPU:
    :meth:`iadtutor.ulsad.ULSAD.branch_outputs` (``features`` = standardised ``U``, ``reconstruction`` =
    ``U~'``, ``local_global`` = ``U~''``, ``global`` = ``U^``, raw maps ``local_map`` (eq. 7) and
    ``global_map`` (eq. 8), all at feature resolution ``h* x w*``)."""
    return model.branch_outputs(images)


# --------------------------------------------------------------------------------------------- figures
def add_overlay_panel(fig: go.Figure, image, overlay_trace: go.Heatmap, mask, row: int, col: int) -> None:
    """The image, ``overlay_trace`` (any heatmap) over it and the outline of ``mask`` (if any pixel is set)."""
    fig.add_trace(core.image_trace(image), row=row, col=col)
    fig.add_trace(overlay_trace, row=row, col=col)
    if mask is not None and core.to_numpy(mask).any():
        fig.add_trace(core.mask_trace(core.to_numpy(mask)), row=row, col=col)


def _check_maps(maps: Mapping[str, object], n: int) -> dict[str, np.ndarray]:
    missing = [b for b in BRANCHES if b not in maps]
    if missing:
        raise ValueError(f"maps needs the branches {list(BRANCHES)}; missing {missing}.")
    arrays = {b: core.to_numpy(maps[b]) for b in BRANCHES}
    for name, array in arrays.items():
        if array.ndim != 3 or len(array) != n:
            raise ValueError(f"maps[{name!r}] must be (N, H, W) with one map per image ({n}); got {array.shape}.")
    return arrays


def reconstruction_figure(image, features, reconstruction, local_map, mask=None, channels: Sequence[int] | None = None,
                          k: int = 4, cell: int = 170, title: str | None = None) -> go.Figure:
    """The local branch on one image: ``k`` channels of ``U`` (top row) above the same channels of the
    FRN's reconstruction ``U~'`` (bottom row), then the image (top) and the local map of eq. 7 (bottom).

    ``features`` / ``reconstruction``: ``(c*, h*, w*)``; ``local_map``: ``(h*, w*)``; ``mask``: ``(H, W)``.
    ``channels`` default to the ``k`` channels of ``U`` with the largest spatial spread
    (:func:`iadtutor.core.strongest_channels`). A channel's two panels share one colour range.
    """
    features, reconstruction = core.to_numpy(features), core.to_numpy(reconstruction)
    if features.ndim != 3 or features.shape != reconstruction.shape:
        raise ValueError(f"features and reconstruction must both be (c*, h*, w*); got {features.shape} and "
                         f"{reconstruction.shape}.")
    channels = list(channels) if channels is not None else core.strongest_channels(features, k)
    titles = [f"U, channel {c}" for c in channels] + ["image"]
    titles += [f"U~' (reconstruction), channel {c}" for c in channels] + ["local map (eq. 7)"]
    cols = len(channels) + 1
    fig = make_subplots(rows=2, cols=cols, subplot_titles=titles, horizontal_spacing=0.015, vertical_spacing=0.1)
    for col, channel in enumerate(channels, start=1):
        pair = np.stack([features[channel], reconstruction[channel]])
        limit = float(np.abs(pair).max()) or 1.0
        for row in (1, 2):
            fig.add_trace(core.map_trace(pair[row - 1], "standardised activation", FEATURE_COLOURSCALE,
                                        zmin=-limit, zmax=limit, showscale=False), row=row, col=col)
    core.add_image(fig, image, mask=mask, row=1, col=cols)
    core.add_image(fig, image, overlay=core.to_numpy(local_map), mask=mask, row=2, col=cols,
                  overlay_name="local distance", opacity=0.7)
    core.image_axes(fig)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=title, width=cols * cell + 40, height=2 * (cell + 30) + (50 if title else 20),
                      margin=dict(l=10, r=10, t=60 if title else 30, b=10), showlegend=False)
    return fig


def query_marker(y: float, x: float, label: str = "query", size: int = 13) -> go.Scatter:
    """A marker (open circle with a cross) at pixel ``(y, x)``, the query location of an attention map."""
    return go.Scatter(x=[x], y=[y], mode="markers", name=label, hovertemplate=f"{label}<extra></extra>",
                      marker=dict(symbol="circle-x-open", size=size, color=QUERY_COLOUR, line_width=2.5))


def diverse_query_cells(features, k: int = 4, border: int = 2) -> list[tuple[int, int]]:
    """``k`` feature cells that show different things: farthest-point sampling on ``U (c*, h*, w*)``.

    The first cell is the one farthest from the mean feature of the image; each next one is the cell
    whose nearest already-chosen cell is farthest away (Euclidean distance in feature space). Cells
    within ``border`` cells of the edge are skipped (zero padding makes them odd ones out). On the toy
    ``box`` the queries land on different parts (a washer, a nut, the bolt, a wall), like the queries of
    the paper's figure 5. Returns ``(row, col)`` pairs on the full grid.
    """
    array = core.to_numpy(features).astype(np.float64)
    if array.ndim != 3:
        raise ValueError(f"features must be (c*, h*, w*); got {array.shape}.")
    c, h, w = array.shape
    if border < 0 or 2 * border >= min(h, w):
        raise ValueError(f"border must leave some of the {h} x {w} cells; got {border}.")
    inner = array[:, border:h - border, border:w - border]
    inner_w = w - 2 * border
    vectors = inner.reshape(c, -1).T
    if not 1 <= k <= len(vectors):
        raise ValueError(f"k must be between 1 and the {len(vectors)} cells inside the border; got {k}.")
    chosen = [int(np.argmax(np.linalg.norm(vectors - vectors.mean(axis=0), axis=1)))]
    nearest = np.linalg.norm(vectors - vectors[chosen[0]], axis=1)
    while len(chosen) < k:
        chosen.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, np.linalg.norm(vectors - vectors[chosen[-1]], axis=1))
    return [(index // inner_w + border, index % inner_w + border) for index in chosen]


def attention_trace(weights, image_hw: Sequence[int], log_scale: bool = True, zmin: float | None = None,
                    zmax: float | None = None, showscale: bool = False, opacity: float = 0.75) -> go.Heatmap:
    """An ``(h*, w*)`` attention map as a heatmap over an ``H x W`` image; hover shows the weight.

    With ``log_scale`` the colours show ``log10`` of the weights: the query's own cell takes most of the
    weight, and only a log scale shows which *other* cells get more than the rest. The colour range
    runs from ``zmin`` to ``zmax`` (weights; default: the map's smallest to its largest weight, or 0 to
    the largest on the linear scale).
    """
    weights = core.to_numpy(weights).astype(np.float64)
    high = float(weights.max()) if zmax is None else float(zmax)
    h, w = weights.shape
    dy, dx = image_hw[0] / h, image_hw[1] / w
    if log_scale:
        low = float(weights.min()) if zmin is None else float(zmin)
        values = np.log10(np.maximum(weights, 1e-30))
        low, high = np.log10(max(low, 1e-30)), np.log10(max(high, 1e-30))
        colorbar = dict(title="log10 weight")
    else:
        low = 0.0 if zmin is None else float(zmin)
        values, colorbar = weights, dict(title="weight")
    return go.Heatmap(z=values.astype(np.float32), x0=(dx - 1) / 2, dx=dx, y0=(dy - 1) / 2, dy=dy,
                      customdata=weights.astype(np.float32), name="attention weight",
                      colorscale=ATTENTION_COLOURSCALE, zmin=low, zmax=high, opacity=opacity, showscale=showscale,
                      colorbar=colorbar, hovertemplate="x %{x}, y %{y}<br>attention weight %{customdata:.2e}"
                                                       "<extra></extra>")


def cell_centre(cell: Sequence[int], grid_hw: Sequence[int], image_hw: Sequence[int]) -> tuple[float, float]:
    """Pixel coordinates ``(y, x)`` of the centre of feature cell ``(row, col)`` of an ``h x w`` grid over
    an ``H x W`` image (pixel ``i`` spans ``i - 0.5 … i + 0.5``)."""
    (row, col), (h, w), (height, width) = cell, grid_hw, image_hw
    return (row + 0.5) * height / h - 0.5, (col + 0.5) * width / w - 0.5


def attention_figure(image, attentions: Sequence, query_cells: Sequence[Sequence[int]],
                     titles: Sequence[str] | None = None, mask=None, log_scale: bool = True, cell: int = 210,
                     opacity: float = 0.75, title: str | None = None) -> go.Figure:
    """The image with every query marked, then one attention map per query over the image (paper, fig. 5).

    ``attentions``: ``(h*, w*)`` maps, e.g. ``ULSAD.attention_maps(...)["self_attention"]`` (weights over
    the keys ``p`` for one query ``q``, summing to 1); ``query_cells``: the ``(row, col)`` of each query on
    the ``h* x w*`` grid (``attention_maps(...)["query_cell"]``). Each map has its own colour range, on
    a log scale by default (:func:`attention_trace`); hover shows the weights.
    """
    if len(attentions) != len(query_cells) or not attentions:
        raise ValueError(f"need one query cell per attention map; got {len(attentions)} maps and "
                         f"{len(query_cells)} cells.")
    rgb = core.to_rgb_uint8(image)
    image_hw = rgb.shape[:2]
    grid_hw = core.to_numpy(attentions[0]).shape
    names = list(titles) if titles is not None else [f"query {i + 1}" for i in range(len(attentions))]
    fig = make_subplots(rows=1, cols=len(attentions) + 1, subplot_titles=["image and queries", *names],
                        horizontal_spacing=0.01)
    core.add_image(fig, rgb, mask=mask, row=1, col=1)
    for i, (attention, query) in enumerate(zip(attentions, query_cells), start=1):
        y, x = cell_centre(query, grid_hw, image_hw)
        fig.add_trace(query_marker(y, x, names[i - 1]), row=1, col=1)
        fig.add_annotation(x=x, y=y, text=str(i), showarrow=False, xshift=11, yshift=-11, row=1, col=1,
                           font=dict(color=QUERY_COLOUR, size=13))
        add_overlay_panel(fig, rgb, attention_trace(attention, image_hw, log_scale, opacity=opacity), None,
                           row=1, col=i + 1)
        fig.add_trace(query_marker(y, x, names[i - 1]), row=1, col=i + 1)
    core.image_axes(fig)
    fig.update_layout(title=title, width=(len(attentions) + 1) * cell + 40, height=cell + (80 if title else 50),
                      margin=dict(l=10, r=10, t=70 if title else 40, b=10), showlegend=False)
    return fig


def branch_maps_figure(images, masks, maps: Mapping[str, object], indices: Sequence[int],
                       row_titles: Sequence[str] | None = None, zmax: float | None = None, cell: int = 180,
                       display_stride: int = 4, opacity: float = 0.65, title: str | None = None) -> go.Figure:
    """Rows: the test images ``indices``; columns: the image with its mask outline, then the ``local``,
    ``global`` and ``combined`` maps of :meth:`iadtutor.ulsad.ULSAD.predict` over it.

    ``images (N, 3, H, W)``, ``masks (N, H, W)``, ``maps``: ``{branch: (N, H, W)}``. The maps are
    quantile-normalised (0 at the validation ``alpha`` quantile, 0.1 at ``beta``), so all panels share
    one colour range ``0 … zmax`` (default: the 99.9th percentile of the maps shown, at least 0.1).
    Panel titles show each map's image score (its maximum). ``display_stride`` thins the maps shown
    (they are upsampled from ``h* x w*`` and blurred, so every 4th pixel loses little; plotly smooths
    them for display), which keeps a saved notebook small.
    """
    arrays = _check_maps(maps, len(images))
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError("indices must name at least one test image.")
    if zmax is None:
        shown = np.concatenate([arrays[b][indices].ravel() for b in BRANCHES])
        zmax = max(0.1, float(np.percentile(shown, 99.9)))
    titles = []
    for r, index in enumerate(indices):
        titles.append(row_titles[r] if row_titles is not None else f"test {index}")
        titles += [f"{BRANCH_TITLES[b]}: {float(arrays[b][index].max()):.3f}" for b in BRANCHES]
    fig = make_subplots(rows=len(indices), cols=1 + len(BRANCHES), subplot_titles=titles,
                        horizontal_spacing=0.01, vertical_spacing=0.2 / max(1, len(indices)))
    for r, index in enumerate(indices, start=1):
        mask = core.to_numpy(masks[index])
        height, width = mask.shape
        core.add_image(fig, images[index], mask=mask, row=r, col=1)
        for c, branch in enumerate(BRANCHES, start=2):
            values = arrays[branch][index][::display_stride, ::display_stride]
            trace = core.map_trace(values, branch, core.MAP_COLOURSCALE, opacity, 0.0, zmax,
                                  showscale=(r == 1 and c == 2), dx=width / values.shape[1],
                                  dy=height / values.shape[0])
            add_overlay_panel(fig, images[index], trace, mask, row=r, col=c)
    core.image_axes(fig)
    fig.update_traces(zsmooth="best", selector=dict(type="heatmap"))
    fig.update_traces(colorbar=dict(title="score", len=0.3, y=1, yanchor="top"), selector=dict(type="heatmap",
                                                                                                showscale=True))
    fig.update_annotations(font_size=10)
    cols = 1 + len(BRANCHES)
    fig.update_layout(title=title, width=cols * cell + 110, height=len(indices) * (cell + 25) + (60 if title else 30),
                      margin=dict(l=10, r=10, t=60 if title else 30, b=10), showlegend=False)
    return fig


def loss_curve_figure(history: Mapping[str, Sequence[float]], log_y: bool = True,
                      title: str | None = "ULSAD training: loss terms per epoch") -> go.Figure:
    """The mean training loss and its three terms per epoch (``ULSAD.fit``'s ``history``)."""
    names = [name for name in LOSS_TITLES if name in history]
    if not names or not len(history[names[0]]):
        raise ValueError(f"history holds no loss values; expected the keys {list(LOSS_TITLES)}.")
    epochs = list(range(1, len(history[names[0]]) + 1))
    fig = core.line_plot(epochs, {LOSS_TITLES[name]: history[name] for name in names}, title=title,
                        xlabel="epoch", ylabel="mean loss over the training images", markers=False, width=700)
    fig.update_traces(selector=dict(name=LOSS_TITLES["loss"]), line=dict(width=3, color="#222"))
    if log_y:
        fig.update_yaxes(type="log")
    return fig


# ---------------------------------------------------------------------------------------------- tables
def kinds_of(defect_types: Sequence[str]) -> np.ndarray:
    """:func:`iadtutor.data.anomaly_kind` of every defect type: ``good`` / ``structural`` / ``logical`` / ``other``."""
    return np.array([anomaly_kind(t) for t in defect_types])


def branch_metrics_table(labels, masks, defect_types: Sequence[str], maps: Mapping[str, object],
                         fpr_limit: float = 0.3, digits: int = 3,
                         baselines: Mapping[str, tuple[object, object]] | None = None) -> pd.DataFrame:
    """Image AUROC, pixel AUROC and AUPRO of every branch, for each kind of anomaly.

    ``labels (N,)``, ``masks (N, H, W)``, ``defect_types`` (N names), ``maps``: ``{branch: (N, H, W)}``
    for ``local`` / ``global`` / ``combined``. A branch's image score is the maximum of its map (as for the
    combined map in sec. 3.5). Rows ``(anomalies, branch)``: ``all`` uses every test image; each kind
    present (``structural``, ``logical``; :func:`iadtutor.data.anomaly_kind`) uses the good images plus
    only that kind. Values are fractions rounded to ``digits``.

    ``baselines``: ``{name: (maps (N, H, W), image_scores (N,))}`` of other methods on the same test images
    (e.g. a kNN scorer's :class:`~iadtutor.pipeline.ScoreResult` ``.maps`` and ``.image_scores``); each
    adds a row ``name`` to every group, scored with its own image scores.
    """
    labels, masks = core.to_numpy(labels).astype(int), core.to_numpy(masks).astype(bool)
    arrays = _check_maps(maps, len(labels))
    if len(defect_types) != len(labels) or len(masks) != len(labels):
        raise ValueError(f"need one label, mask and defect type per map; got {len(labels)} labels, "
                         f"{len(masks)} masks, {len(defect_types)} defect types.")
    scored = {branch: (arrays[branch], arrays[branch].max(axis=(1, 2))) for branch in BRANCHES}
    for name, (other_maps, other_scores) in (baselines or {}).items():
        other_maps, other_scores = core.to_numpy(other_maps), core.to_numpy(other_scores).ravel()
        if other_maps.shape != arrays["combined"].shape or len(other_scores) != len(labels):
            raise ValueError(f"baseline {name!r} needs maps {arrays['combined'].shape} and {len(labels)} image "
                             f"scores; got {other_maps.shape} and {len(other_scores)}.")
        scored[name] = (other_maps, other_scores)
    kinds = kinds_of(defect_types)
    present = [k for k in KINDS if k in set(kinds)]
    groups = {"all": np.ones(len(labels), dtype=bool)}
    if len(present) > 1:
        groups.update({kind: (kinds == "good") | (kinds == kind) for kind in present})
    rows = []
    for group, keep in groups.items():
        for branch, (branch_maps, scores) in scored.items():
            values = branch_maps[keep]
            rows.append({"anomalies": group, "branch": branch,
                         "image_auroc": metrics.image_auroc(labels[keep], scores[keep]),
                         "pixel_auroc": metrics.pixel_auroc(masks[keep], values),
                         "aupro": metrics.aupro(masks[keep], values, fpr_limit=fpr_limit)})
    table = pd.DataFrame(rows).set_index(["anomalies", "branch"])
    return table.astype(float).round(digits)


def kind_counts(defect_types: Sequence[str]) -> dict[str, int]:
    """How many test images of each kind (``good``, ``structural``, ``logical``, ``other``) there are."""
    kinds = list(kinds_of(defect_types))
    return {kind: kinds.count(kind) for kind in ("good", *KINDS) if kind in kinds}


# ------------------------------------------------------------------------------------------ interactive
def attention_difference(self_attention, cross_attention) -> float:
    """Total-variation distance ``0.5 * sum_p |W[p, q] - W^c[p, q]|`` between two attention maps of one
    query: 0 when the global branch attends exactly like the features, 1 when they share no key."""
    a, b = core.to_numpy(self_attention).astype(np.float64), core.to_numpy(cross_attention).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"the two attention maps must have one shape; got {a.shape} and {b.shape}.")
    return float(0.5 * np.abs(a - b).sum())


class AttentionExplorer:
    """Self- vs cross-attention of a trained ULSAD for a query location you pick.

    ``model``: a fitted :class:`iadtutor.ulsad.ULSAD`; ``images (N, 3, H, W)`` in [0, 1]; ``masks (N, H, W)``
    (optional, outlined); ``names``: a label per image. Controls: the image, the query cell's ``row``
    / ``col`` on the ``h* x w*`` grid (default: the cell where the global map, eq. 8, of image ``index``
    is highest), and whether the attention weights are shown on a log scale
    (:func:`iadtutor.viz.ulsad.attention_trace`; both maps share one colour range). Panels: the image
    with the query marked, the self-attention (eq. 3), the cross-attention (eq. 4), the global anomaly
    map. :meth:`state` gives the numbers behind the figure.
    """

    def __init__(self, model, images: torch.Tensor, masks: torch.Tensor | None = None,
                 names: Sequence[str] | None = None, index: int = 0, row: int | None = None,
                 col: int | None = None, log_scale: bool = True, cell: int = 250):
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError(f"images must be a tensor (N, 3, H, W); got {getattr(images, 'shape', type(images))}.")
        if masks is not None and len(masks) != len(images):
            raise ValueError(f"masks has {len(masks)} masks for {len(images)} images.")
        if names is not None and len(names) != len(images):
            raise ValueError(f"names has {len(names)} entries for {len(images)} images.")
        if not 0 <= index < len(images):
            raise ValueError(f"index {index} is outside the {len(images)} images.")
        self.model, self.images, self.masks, self.cell = model, images, masks, cell
        self.image_hw = tuple(images.shape[-2:])
        self._global_maps = model.predict(images)["global"]
        first = model.attention_maps(images[index], (0, 0))
        self.grid_hw = tuple(first["self_attention"].shape)
        self._cache: dict[tuple[int, int, int], dict] = {}

        names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
        self.image_picker = widgets.Dropdown(options=[(f"{i}: {n}", i) for i, n in enumerate(names)], value=index,
                                             description="image")
        if row is None or col is None:
            row, col = self.strongest_cell(index)
        self.row = widgets.IntSlider(value=row, min=0, max=self.grid_hw[0] - 1, description="query row",
                                     continuous_update=False)
        self.col = widgets.IntSlider(value=col, min=0, max=self.grid_hw[1] - 1, description="query col",
                                     continuous_update=False)
        self.log_scale = widgets.Checkbox(value=log_scale, description="log scale (attention)")
        self.status = widgets.HTML()
        self.output = widgets.Output()
        for control in (self.image_picker, self.row, self.col, self.log_scale):
            control.observe(self.update, names="value")
        self.app = widgets.VBox([widgets.HBox([self.image_picker, self.log_scale]), widgets.HBox([self.row, self.col]),
                                 self.status, self.output])
        self.figure: go.Figure | None = None
        self.update()

    # ------------------------------------------------------------------------------------ computing
    def strongest_cell(self, index: int) -> tuple[int, int]:
        """The ``(row, col)`` feature cell holding the highest value of image ``index``'s global map."""
        h, w = self.grid_hw
        cells = torch.nn.functional.adaptive_avg_pool2d(self._global_maps[index][None, None], (h, w))[0, 0]
        row, col = divmod(int(torch.argmax(cells)), w)
        return row, col

    def state(self, index: int, row: int, col: int) -> dict:
        """``self_attention`` / ``cross_attention`` ``(h*, w*)`` for query cell ``(row, col)`` of image
        ``index``, their ``difference`` (:func:`attention_difference`), the query's pixel centre ``query_yx``
        and the ``global_map`` ``(H, W)`` of the image (cached)."""
        key = (index, row, col)
        if key not in self._cache:
            query_yx = cell_centre((row, col), self.grid_hw, self.image_hw)
            maps = self.model.attention_maps(self.images[index], query_yx)
            if tuple(maps["query_cell"]) != (row, col):
                raise RuntimeError(f"query cell {(row, col)} mapped to {maps['query_cell']}.")
            self._cache[key] = dict(self_attention=maps["self_attention"], cross_attention=maps["cross_attention"],
                                    difference=attention_difference(maps["self_attention"], maps["cross_attention"]),
                                    query_yx=query_yx, global_map=self._global_maps[index])
        return self._cache[key]

    # -------------------------------------------------------------------------------------- drawing
    def figure_for(self, index: int, row: int, col: int) -> go.Figure:
        """The explorer's figure for one state (no widgets involved)."""
        found = self.state(index, row, col)
        titles = ["image and query", "self-attention W[:, q] (eq. 3)", "cross-attention W^c[:, q] (eq. 4)",
                  "global anomaly map (eq. 8)"]
        fig = make_subplots(rows=1, cols=4, subplot_titles=titles, horizontal_spacing=0.012)
        image = self.images[index]
        mask = None if self.masks is None else self.masks[index]
        y, x = found["query_yx"]
        core.add_image(fig, image, mask=mask, row=1, col=1)
        # Both attention maps share one colour range, so heights compare as well as patterns.
        log_scale = self.log_scale.value
        both = torch.stack([found["self_attention"], found["cross_attention"]])
        low, top = (float(both.min()) if log_scale else 0.0), float(both.max())
        for c, name in ((2, "self_attention"), (3, "cross_attention")):
            trace = attention_trace(found[name], self.image_hw, log_scale, zmin=low, zmax=top, showscale=(c == 3))
            add_overlay_panel(fig, image, trace, None, row=1, col=c)
        global_map = core.to_numpy(found["global_map"])[::4, ::4]
        height, width = self.image_hw
        zmax = max(0.1, float(core.to_numpy(self._global_maps).max()))
        add_overlay_panel(fig, image, core.map_trace(global_map, "global score", opacity=0.65, zmin=0.0, zmax=zmax,
                                                     showscale=False, dx=width / global_map.shape[1],
                                                     dy=height / global_map.shape[0]), mask, row=1, col=4)
        for c in range(1, 5):
            fig.add_trace(query_marker(y, x), row=1, col=c)
        fig.update_traces(zsmooth="best", selector=dict(type="heatmap", name="global score"))
        core.image_axes(fig)
        fig.update_traces(colorbar=dict(len=0.8, x=1.0), selector=dict(type="heatmap", showscale=True))
        fig.update_annotations(font_size=11)
        fig.update_layout(width=4 * self.cell + 120, height=self.cell + 60, margin=dict(l=10, r=10, t=40, b=10),
                          showlegend=False)
        return fig

    def describe(self, index: int, row: int, col: int) -> str:
        found = self.state(index, row, col)
        h, w = self.grid_hw
        peaks = []
        for name in ("self_attention", "cross_attention"):
            flat = int(torch.argmax(found[name]))
            peaks.append(f"{name.replace('_', '-')} peaks at cell {divmod(flat, w)} ({float(found[name].max()):.3f})")
        return (f"query cell ({row}, {col}) of {h}×{w}: " + "; ".join(peaks)
                + f"; difference ½Σ|W − W^c| = {found['difference']:.3f}")

    def update(self, change=None) -> None:
        """Redraw :attr:`figure` from the controls' values (called by every control)."""
        state = (self.image_picker.value, self.row.value, self.col.value)
        self.figure = self.figure_for(*state)
        self.status.value = f"<code>{self.describe(*state)}</code>"
        # Written into the Output widget's state, so that a saved notebook holds the figure even when no
        # browser ran it (see iadtutor.viz.knn).
        bundle = self.figure._repr_mimebundle_()
        self.output.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)

    def _ipython_display_(self):
        display(self.app)
