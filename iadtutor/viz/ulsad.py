"""Figures, tables and the attention explorer of notebook 07 (ULSAD, ``shared/papers/003_*.txt``): the local
reconstruction, a query's attention, both branches' maps, the loss terms and the metrics per kind of anomaly."""

from __future__ import annotations

from typing import Mapping, Sequence

import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from iadtutor import metrics
from iadtutor.data import anomaly_kind
from iadtutor.knn import greedy_coreset
from iadtutor.patches import patch_pixels
from iadtutor.viz import core

BRANCHES = ("local", "global", "combined")
BRANCH_TITLES = {"local": "local (eq. 7)", "global": "global (eq. 8)", "combined": "combined"}
LOSS_TITLES = {"loss": "total loss", "local": "local L_pl (eq. 1)", "consistency": "consistency L_pg (eq. 5)",
               "local_global": "local-global L_lg (eq. 6)"}
KINDS = ("structural", "logical", "other")


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
    """The local branch on one image (notebook 07): ``k`` channels of ``U (c*, h*, w*)`` above the same channels of the
    reconstruction ``U~'``, then the image with its mask and the ``(h*, w*)`` local map (eq. 7)."""
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
            fig.add_trace(core.map_trace(pair[row - 1], "standardised activation", "RdBu_r",
                                         zmin=-limit, zmax=limit, showscale=False), row=row, col=col)
    core.add_image(fig, image, mask=mask, row=1, col=cols)
    core.add_image(fig, image, overlay=core.to_numpy(local_map), mask=mask, row=2, col=cols,
                   overlay_name="local distance", opacity=0.7)
    return core.finish_panels(fig, title, width=cols * cell + 40, height=2 * (cell + 30) + (50 if title else 20),
                              top=(60, 30), font_size=10)


def query_marker(y: float, x: float, label: str = "query", size: int = 13) -> go.Scatter:
    """An open circle with a cross at pixel ``(y, x)``: the query of an attention map (notebook 07)."""
    return go.Scatter(x=[x], y=[y], mode="markers", name=label, hovertemplate=f"{label}<extra></extra>",
                      marker=dict(symbol="circle-x-open", size=size, color=core.SELECTED_COLOUR, line_width=2.5))


def diverse_query_cells(features, k: int = 4, border: int = 2) -> list[tuple[int, int]]:
    """``(row, col)`` of ``k`` cells of ``U (c*, h*, w*)`` that show different things (notebook 07): the cell farthest
    from the mean feature, then :func:`iadtutor.knn.greedy_coreset`'s k-center; cells within ``border`` of the edge
    are skipped (zero padding makes them odd ones out)."""
    array = core.to_numpy(features).astype(np.float64)
    if array.ndim != 3:
        raise ValueError(f"features must be (c*, h*, w*); got {array.shape}.")
    c, h, w = array.shape
    if border < 0 or 2 * border >= min(h, w):
        raise ValueError(f"border must leave some of the {h} x {w} cells; got {border}.")
    vectors = array[:, border:h - border, border:w - border].reshape(c, -1).T
    if not 1 <= k <= len(vectors):
        raise ValueError(f"k must be between 1 and the {len(vectors)} cells inside the border; got {k}.")
    start = int(np.argmax(np.linalg.norm(vectors - vectors.mean(axis=0), axis=1)))
    chosen = greedy_coreset(torch.from_numpy(vectors), k / len(vectors), projection_dim=None, first=start).tolist()
    return [(i // (w - 2 * border) + border, i % (w - 2 * border) + border) for i in chosen]


def attention_trace(weights, image_hw: Sequence[int], log_scale: bool = True, zmin: float | None = None,
                    zmax: float | None = None, showscale: bool = False, opacity: float = 0.75) -> go.Heatmap:
    """An ``(h*, w*)`` attention map as a heatmap over an ``H x W`` image (notebook 07); ``log_scale``: colours show
    ``log10`` of the weights (the query's own cell takes most weight); ``zmin`` … ``zmax``: weights."""
    weights = core.to_numpy(weights).astype(np.float64)
    low = (float(weights.min()) if log_scale else 0.0) if zmin is None else float(zmin)
    high = float(weights.max()) if zmax is None else float(zmax)
    values = np.log10(np.maximum(weights, 1e-30)) if log_scale else weights
    low, high = (np.log10(max(low, 1e-30)), np.log10(max(high, 1e-30))) if log_scale else (low, high)
    dy, dx = image_hw[0] / weights.shape[0], image_hw[1] / weights.shape[1]
    return go.Heatmap(z=values.astype(np.float32), x0=(dx - 1) / 2, dx=dx, y0=(dy - 1) / 2, dy=dy,
                      customdata=weights.astype(np.float32), name="attention weight", colorscale="Viridis",
                      zmin=low, zmax=high, opacity=opacity, showscale=showscale,
                      colorbar=dict(title="log10 weight" if log_scale else "weight"),
                      hovertemplate="x %{x}, y %{y}<br>attention weight %{customdata:.2e}<extra></extra>")


def cell_centre(cell: Sequence[int], grid_hw: Sequence[int], image_hw: Sequence[int]) -> tuple[float, float]:
    """Pixel ``(y, x)`` centre of cell ``(row, col)`` of an ``h x w`` grid over an ``H x W`` image (notebook 07)."""
    x0, x1, y0, y1 = patch_pixels(int(cell[0]), int(cell[1]), tuple(grid_hw), tuple(image_hw))
    return (y0 + y1) / 2, (x0 + x1) / 2


def attention_figure(image, attentions: Sequence, query_cells: Sequence[Sequence[int]],
                     titles: Sequence[str] | None = None, mask=None, log_scale: bool = True, cell: int = 210,
                     opacity: float = 0.75, title: str | None = None) -> go.Figure:
    """The image with every query marked, then each query's ``(h*, w*)`` attention map over it (notebook 07)."""
    if len(attentions) != len(query_cells) or not attentions:
        raise ValueError(f"need one query cell per attention map; got {len(attentions)} maps and "
                         f"{len(query_cells)} cells.")
    rgb = core.to_rgb_uint8(image)
    image_hw, grid_hw = rgb.shape[:2], core.to_numpy(attentions[0]).shape
    names = list(titles) if titles is not None else [f"query {i + 1}" for i in range(len(attentions))]
    fig = make_subplots(rows=1, cols=len(attentions) + 1, subplot_titles=["image and queries", *names],
                        horizontal_spacing=0.01)
    core.add_image(fig, rgb, mask=mask, row=1, col=1)
    for i, (attention, query) in enumerate(zip(attentions, query_cells), start=1):
        y, x = cell_centre(query, grid_hw, image_hw)
        fig.add_trace(query_marker(y, x, names[i - 1]), row=1, col=1)
        fig.add_annotation(x=x, y=y, text=str(i), showarrow=False, xshift=11, yshift=-11, row=1, col=1,
                           font=dict(color=core.SELECTED_COLOUR, size=13))
        core.add_image(fig, rgb, attention_trace(attention, image_hw, log_scale, opacity=opacity), row=1, col=i + 1)
        fig.add_trace(query_marker(y, x, names[i - 1]), row=1, col=i + 1)
    return core.finish_panels(fig, title, width=(len(attentions) + 1) * cell + 40,
                              height=cell + (80 if title else 50), top=(70, 40), font_size=None)


def branch_maps_figure(images, masks, maps: Mapping[str, object], indices: Sequence[int],
                       row_titles: Sequence[str] | None = None, zmax: float | None = None, cell: int = 180,
                       display_stride: int = 4, opacity: float = 0.65, title: str | None = None) -> go.Figure:
    """Rows: the test images ``indices``; columns: the image, then each branch's map ``{branch: (N, H, W)}`` over it,
    titled with its maximum, in one range ``0 … zmax`` (default: 99.9th percentile, at least 0.1) (notebook 07)."""
    arrays = _check_maps(maps, len(images))
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError("indices must name at least one test image.")
    if zmax is None:
        zmax = max(0.1, core.value_range([arrays[b][indices] for b in BRANCHES], high=99.9)[1])
    titles = []
    for r, index in enumerate(indices):
        titles.append(row_titles[r] if row_titles is not None else f"test {index}")
        titles += [f"{BRANCH_TITLES[b]}: {float(arrays[b][index].max()):.3f}" for b in BRANCHES]
    fig = make_subplots(rows=len(indices), cols=1 + len(BRANCHES), subplot_titles=titles,
                        horizontal_spacing=0.01, vertical_spacing=0.2 / max(1, len(indices)))
    for r, index in enumerate(indices, start=1):
        mask = core.to_numpy(masks[index])
        core.add_image(fig, images[index], mask=mask, row=r, col=1)
        for c, branch in enumerate(BRANCHES, start=2):
            values = arrays[branch][index][::display_stride, ::display_stride]
            trace = core.map_trace(values, branch, core.MAP_COLOURSCALE, opacity, 0.0, zmax,
                                   showscale=(r == 1 and c == 2), dx=mask.shape[1] / values.shape[1],
                                   dy=mask.shape[0] / values.shape[0])
            core.add_image(fig, images[index], trace, mask, row=r, col=c)
    fig.update_traces(zsmooth="best", selector=dict(type="heatmap")).update_traces(
        colorbar=dict(title="score", len=0.3, y=1, yanchor="top"), selector=dict(type="heatmap", showscale=True))
    return core.finish_panels(fig, title, width=(1 + len(BRANCHES)) * cell + 110, top=(60, 30), font_size=10,
                              height=len(indices) * (cell + 25) + (60 if title else 30))


def loss_curve_figure(history: Mapping[str, Sequence[float]], log_y: bool = True,
                      title: str | None = "ULSAD training: loss terms per epoch") -> go.Figure:
    """The mean training loss and its three terms per epoch of ``ULSAD.fit``'s ``history`` (notebook 07)."""
    names = [name for name in LOSS_TITLES if name in history]
    if not names or not len(history[names[0]]):
        raise ValueError(f"history holds no loss values; expected the keys {list(LOSS_TITLES)}.")
    epochs = list(range(1, len(history[names[0]]) + 1))
    fig = core.line_plot(epochs, {LOSS_TITLES[name]: history[name] for name in names}, title=title,
                         xlabel="epoch", ylabel="mean loss over the training images", markers=False, width=700)
    fig.update_traces(selector=dict(name=LOSS_TITLES["loss"]), line=dict(width=3, color="#222"))
    return fig.update_yaxes(type="log") if log_y else fig


def kind_counts(defect_types: Sequence[str]) -> dict[str, int]:
    """How many test images of each :func:`iadtutor.data.anomaly_kind` there are (notebook 07)."""
    kinds = [anomaly_kind(t) for t in defect_types]
    return {kind: kinds.count(kind) for kind in ("good", *KINDS) if kind in kinds}


def branch_metrics_table(labels, masks, defect_types: Sequence[str], maps: Mapping[str, object],
                         fpr_limit: float = 0.3, digits: int = 3,
                         baselines: Mapping[str, tuple[object, object]] | None = None,
                         n_boot: int = 0, seed: int = 0) -> pd.DataFrame:
    """Image AUROC, pixel AUROC and AUPRO of every branch (image score: the map's maximum) per kind of anomaly: rows
    ``(all | kind, branch)``; ``baselines``: ``{name: (maps (N, H, W), image_scores (N,))}`` rows too (notebook 07).
    ``n_boot > 0`` adds ``image_auroc_ci``, the bootstrap 95 % interval ``(low, high)`` of
    :func:`iadtutor.metrics.image_auroc_ci` (``core.results_table`` writes it into the image AUROC column)."""
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
    kinds = np.array([anomaly_kind(t) for t in defect_types])
    present = [k for k in KINDS if k in set(kinds)]
    groups = {"all": np.ones(len(labels), dtype=bool)}
    if len(present) > 1:
        groups.update({kind: (kinds == "good") | (kinds == kind) for kind in present})
    rows = []
    for group, keep in groups.items():
        for branch, (branch_maps, scores) in scored.items():
            row = metrics.evaluate_maps(labels[keep], scores[keep], masks[keep], branch_maps[keep], fpr_limit)
            rows.append({"anomalies": group, "branch": branch, **{k: round(float(v), digits) for k, v in row.items()}})
            if n_boot:
                low, high = metrics.image_auroc_ci(labels[keep], scores[keep], n_boot=n_boot, seed=seed)
                rows[-1]["image_auroc_ci"] = (round(float(low), digits), round(float(high), digits))
    return pd.DataFrame(rows).set_index(["anomalies", "branch"])


class AttentionExplorer(core.FigureApp):
    """Self- vs cross-attention (eqs. 3, 4) of a fitted ULSAD ``model`` and the global map for a query cell you pick
    (default: where the global map is highest) (notebook 07); :meth:`state`: the numbers."""

    def __init__(self, model, images: torch.Tensor, masks: torch.Tensor | None = None,
                 names: Sequence[str] | None = None, index: int = 0, row: int | None = None,
                 col: int | None = None, log_scale: bool = True, cell: int = 250):
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError(f"images must be a tensor (N, 3, H, W); got {getattr(images, 'shape', type(images))}.")
        for what, extra in (("masks", masks), ("names", names)):
            if extra is not None and len(extra) != len(images):
                raise ValueError(f"{what} has {len(extra)} entries for {len(images)} images.")
        if not 0 <= index < len(images):
            raise ValueError(f"index {index} is outside the {len(images)} images.")
        self.model, self.images, self.masks, self.cell = model, images, masks, cell
        self.image_hw, self.global_maps = tuple(images.shape[-2:]), model.predict(images)["global"]
        self.grid_hw = tuple(model.attention_maps(images[index], (0, 0))["self_attention"].shape)
        self._cache: dict[tuple[int, int, int], dict] = {}
        if row is None or col is None:
            row, col = self.strongest_cell(index)
        names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
        self.image_picker = core.index_picker(names, index, "image")
        self.row, self.col = core.cell_sliders(self.grid_hw, row, col, "query")
        self.log_scale = widgets.Checkbox(value=log_scale, description="log scale (attention)")
        super().__init__(self.figure_for, {"index": self.image_picker, "row": self.row, "col": self.col,
                                           "log_scale": self.log_scale},
                         describe=self.describe, rows=[["index", "log_scale"], ["row", "col"]])

    def strongest_cell(self, index: int) -> tuple[int, int]:
        """The ``(row, col)`` cell with the highest mean of image ``index``'s global map."""
        cells = torch.nn.functional.adaptive_avg_pool2d(self.global_maps[index][None, None], self.grid_hw)[0, 0]
        return divmod(int(torch.argmax(cells)), self.grid_hw[1])

    def state(self, index: int, row: int, col: int) -> dict:
        """``self_attention`` / ``cross_attention`` ``(h*, w*)`` of query ``(row, col)`` of image ``index``, their
        ``difference`` ``½Σ_p |W[p, q] − W^c[p, q]|`` (0: same, 1: no key shared), ``query_yx``, ``global_map``."""
        key = (index, row, col)
        if key not in self._cache:
            query_yx = cell_centre((row, col), self.grid_hw, self.image_hw)
            maps = self.model.attention_maps(self.images[index], query_yx)
            if tuple(maps["query_cell"]) != (row, col):
                raise RuntimeError(f"query cell {(row, col)} mapped to {maps['query_cell']}.")
            a, b = maps["self_attention"], maps["cross_attention"]
            self._cache[key] = dict(self_attention=a, cross_attention=b, query_yx=query_yx,
                                    difference=0.5 * float((a.double() - b.double()).abs().sum()),
                                    global_map=self.global_maps[index])
        return self._cache[key]

    def figure_for(self, index: int, row: int, col: int, log_scale: bool = True) -> go.Figure:
        """The explorer's figure for one state (no widgets involved)."""
        found = self.state(index, row, col)
        titles = ["image and query", "self-attention W[:, q] (eq. 3)", "cross-attention W^c[:, q] (eq. 4)",
                  "global anomaly map (eq. 8)"]
        fig = make_subplots(rows=1, cols=4, subplot_titles=titles, horizontal_spacing=0.012)
        image, mask = self.images[index], None if self.masks is None else self.masks[index]
        core.add_image(fig, image, mask=mask, row=1, col=1)
        both = torch.stack([found["self_attention"], found["cross_attention"]])  # one range: heights compare
        low, top = (float(both.min()) if log_scale else 0.0), float(both.max())
        for c, name in ((2, "self_attention"), (3, "cross_attention")):
            trace = attention_trace(found[name], self.image_hw, log_scale, zmin=low, zmax=top, showscale=(c == 3))
            core.add_image(fig, image, trace, row=1, col=c)
        global_map = core.to_numpy(found["global_map"])[::4, ::4]
        zmax = max(0.1, float(core.to_numpy(self.global_maps).max()))
        trace = core.map_trace(global_map, "global score", opacity=0.65, zmin=0.0, zmax=zmax, showscale=False,
                               dx=self.image_hw[1] / global_map.shape[1], dy=self.image_hw[0] / global_map.shape[0])
        core.add_image(fig, image, trace.update(zsmooth="best"), mask, row=1, col=4)
        for c in range(1, 5):
            fig.add_trace(query_marker(*found["query_yx"]), row=1, col=c)
        fig.update_traces(colorbar=dict(len=0.8, x=1.0), selector=dict(type="heatmap", showscale=True))
        return core.finish_panels(fig, width=4 * self.cell + 120, height=self.cell + 60, top=(40, 40))

    def describe(self, index: int, row: int, col: int, log_scale: bool = True) -> str:
        """One line about the query: where each attention peaks and their difference (``log_scale``: unused)."""
        found, (h, w) = self.state(index, row, col), self.grid_hw
        peaks = [f"{name.replace('_', '-')} peaks at cell {divmod(int(torch.argmax(found[name])), w)} "
                 f"({float(found[name].max()):.3f})" for name in ("self_attention", "cross_attention")]
        return (f"query cell ({row}, {col}) of {h}×{w}: " + "; ".join(peaks)
                + f"; difference ½Σ|W − W^c| = {found['difference']:.3f}")
