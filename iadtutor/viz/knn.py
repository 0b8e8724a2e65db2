"""Figures and apps of notebooks 02, 03 and 05: local window search (LWinNN) against fixed-position and global
search, anomaly maps side by side, and the memory bank's local densities (LDKNN, REB eq. 3)."""

from __future__ import annotations

from typing import Mapping, Sequence

import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from iadtutor.knn import DEFAULT_SIGMA, LocalWindowNN, anomaly_maps, window_offsets
from iadtutor.metrics import METRIC_TITLES
from iadtutor.patches import offset_of, patch_pixels, window_distances, window_pixels
from iadtutor.viz import core

COLOURS = qualitative.Plotly


def window_sweep_figure(table: pd.DataFrame, title: str | None = "LWinNN over window sizes δ",
                        metrics: Sequence[str] = ("image_auroc", "pixel_auroc", "aupro")) -> go.Figure:
    """Each metric (left) and search milliseconds per test image (right) against δ of a window sweep (notebook 03)."""
    core.require_columns(table, ["window", *metrics, "search_seconds_per_image"], "window_sweep_figure")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("detection and segmentation", "search time per test image"),
                        horizontal_spacing=0.12)
    windows = table["window"].tolist()
    for i, metric in enumerate(metrics):
        name = METRIC_TITLES.get(metric, metric)
        fig.add_trace(go.Scatter(x=windows, y=table[metric].tolist(), name=name, mode="lines+markers",
                                 line_color=COLOURS[i % len(COLOURS)],
                                 hovertemplate=f"δ = %{{x}}<br>{name} %{{y:.3f}}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=windows, y=(table["search_seconds_per_image"] * 1000).tolist(), name="search time",
                             mode="lines+markers", line_color="#444",
                             hovertemplate="δ = %{x}<br>%{y:.1f} ms per image<extra></extra>"), row=1, col=2)
    fig.update_xaxes(title_text="window size δ (patches)", tickvals=windows)
    fig.update_yaxes(title_text="metric", row=1, col=1)
    fig.update_yaxes(title_text="ms per test image", rangemode="tozero", row=1, col=2)
    return fig.update_layout(title=title, width=900, height=380, margin=dict(l=60, r=20, t=70 if title else 40, b=50))


def _metric_panels(lines, metrics: Sequence[str], x: str, x_hover: str, title, extra_width: int, bottom: int,
                   **layout) -> go.Figure:
    """A panel per metric, a line per ``(name, rows, line style)`` of ``lines`` (its legend entry once)."""
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[METRIC_TITLES.get(m, m) for m in metrics],
                        horizontal_spacing=0.1)
    for name, part, line in lines:
        for j, metric in enumerate(metrics):
            fig.add_trace(go.Scatter(x=part[x].tolist(), y=part[metric].tolist(), name=name, legendgroup=name,
                                     showlegend=j == 0, mode="lines+markers", line=line,
                                     hovertemplate=f"{name}<br>{x_hover}<br>{METRIC_TITLES.get(metric, metric)} "
                                                   "%{y:.3f}<extra></extra>"), row=1, col=j + 1)
    fig.update_layout(title=title, width=450 * len(metrics) + extra_width, height=400, **layout,
                      margin=dict(l=50, r=20, t=70 if title else 40, b=bottom))
    return fig


def translation_figure(table: pd.DataFrame, metrics: Sequence[str] = ("image_auroc", "aupro"),
                       title: str | None = "Where each search breaks: more translation jitter") -> go.Figure:
    """Each metric against the translation jitter, a line per method (notebook 03)."""
    core.require_columns(table, ["translation", "method", *metrics], "translation_figure")
    lines = [(str(method), part, dict(color=COLOURS[i % len(COLOURS)]))
             for i, (method, part) in enumerate(table.groupby("method", sort=False))]
    fig = _metric_panels(lines, metrics, "translation", "translation ±%{x}", title, 120, 90,
                         legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(title_text="max. translation (fraction of image side)")
    return fig.update_yaxes(range=[0, 1.02])


def coverage_figure(table: pd.DataFrame, x: str = "window", group: str = "category",
                    title: str | None = "Does the window hold the best match?", xlabel: str | None = None
                    ) -> go.Figure:
    """``share_found`` of :func:`iadtutor.pipeline.window_vs_global` against column ``x``, a line per value
    of column ``group`` (notebook 03): ``x="window"`` shows how large δ must be."""
    core.require_columns(table, [x, group, "share_found", "mean_ratio"], "coverage_figure")
    fig = go.Figure()
    for i, (name, part) in enumerate(table.groupby(group, sort=False)):
        label = f"{group} {name}" if group == "translation" else (f"δ = {name}" if group == "window" else str(name))
        fig.add_trace(go.Scatter(x=part[x].tolist(), y=part["share_found"].tolist(), name=label, mode="lines+markers",
                                 line_color=COLOURS[i % len(COLOURS)], customdata=part["mean_ratio"].to_numpy(),
                                 hovertemplate=f"{label}<br>{x} %{{x}}<br>share found %{{y:.3f}}"
                                               "<br>mean d_δ / d_global %{customdata:.3f}<extra></extra>"))
    fig.update_xaxes(title_text=xlabel or ("window size δ (patches)" if x == "window" else x),
                     tickvals=sorted(table[x].unique().tolist()))
    fig.update_yaxes(title_text="share of patches with d_δ ≤ 1.05 · d_global", range=[0, 1.02])
    return fig.update_layout(title=title, width=680, height=400, margin=dict(l=60, r=20, t=60 if title else 20, b=50))


def k_alpha_figure(table: pd.DataFrame, metrics: Sequence[str] = ("image_auroc", "aupro"),
                   title: str | None = "KNN vs LDKNN over K") -> go.Figure:
    """Each metric against K: KNN dashed black, LDKNN a line per α (REB fig. 5) (notebook 05)."""
    core.require_columns(table, ["method", "k", "alpha", *metrics], "k_alpha_figure")
    lines = [("KNN (mean of K nearest)", table[table["method"] == "KNN"], dict(color="black", dash="dash"))]
    for i, (alpha, part) in enumerate(table[table["method"] == "LDKNN"].groupby("alpha", sort=True)):
        lines.append((f"LDKNN α = {alpha:g}", part, dict(color=COLOURS[i % len(COLOURS)])))
    fig = _metric_panels(lines, metrics, "k", "K = %{x}", title, 160, 50)
    return fig.update_xaxes(title_text="K (neighbours)", tickvals=sorted(table["k"].unique().tolist()))


def k_alpha_table(table: pd.DataFrame, metric: str = "image_auroc") -> pd.DataFrame:
    """One metric of :func:`iadtutor.pipeline.k_alpha_sweep` as K × (``KNN``, ``LDKNN α=…``), with its interval
    (``"0.704 [0.520, 0.860]"``) when the sweep measured them (notebook 05)."""
    core.require_columns(table, ["method", "k", "alpha", metric], "k_alpha_table")
    columns = table["method"].where(table["method"] == "KNN", "LDKNN α=" + table["alpha"].map("{:g}".format))
    if f"{metric}_ci" in table:
        table = table.assign(**{metric: [core.with_interval(value, interval)
                                         for value, interval in zip(table[metric], table[f"{metric}_ci"])]})
    wide = table.assign(column=columns).pivot(index="k", columns="column", values=metric)
    order = ["KNN"] + [c for c in dict.fromkeys(columns) if c != "KNN"]
    wide = wide[[c for c in order if c in wide.columns]]
    wide.columns.name = METRIC_TITLES.get(metric, metric)
    return wide.rename_axis(index="K")


def with_seconds(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """``table`` with its ``seconds`` columns as ``"0.012 s"``, which the test sanitizer masks (notebook 03)."""
    return table.assign(**{column: [f"{value:.{digits}f} s" for value in table[column]]
                           for column in table.columns if "seconds" in str(column)})


def maps_grid(images, masks, maps: Mapping[str, np.ndarray], indices: Sequence[int],
              row_titles: Sequence[str] | None = None, image_scores: Mapping[str, Sequence[float]] | None = None,
              cell: int = 200, display_size: int = 128, opacity: float = 0.6, title: str | None = None) -> go.Figure:
    """Rows: test images ``indices``; columns: the image, then each method's map ``{method: (N, H, W)}`` over it in one
    colour range per method (notebook 03). Images are thinned to about ``display_size`` pixels (under a map: half)."""
    if not maps:
        raise ValueError("maps must hold at least one method's anomaly maps.")
    names, indices = list(maps), [int(i) for i in indices]
    ranges = {name: core.value_range([maps[name]], 1, 99.9) for name in names}
    step = max(1, int(images.shape[-1]) // display_size)
    map_side = -(-max(images.shape[-2:]) // (4 * step))
    titles = []
    for r, index in enumerate(indices):
        titles.append(row_titles[r] if row_titles is not None else f"test {index}")
        titles += [name + ("" if image_scores is None else
                           f"<br>score {float(core.to_numpy(image_scores[name])[index]):.2f}") for name in names]
    cols = 1 + len(names)
    fig = make_subplots(rows=len(indices), cols=cols, subplot_titles=titles, horizontal_spacing=0.015,
                        vertical_spacing=0.3 / max(1, len(indices)))
    for r, index in enumerate(indices, start=1):
        core.add_image(fig, images[index], mask=masks[index], row=r, col=1, step=step)
        for c, name in enumerate(names, start=2):
            zmin, zmax = ranges[name]
            core.add_image(fig, images[index], maps[name][index], masks[index], row=r, col=c, overlay_name=name,
                           opacity=opacity, zmin=zmin, zmax=zmax, max_overlay_side=map_side, step=2 * step)
    fig.update_traces(zsmooth="best", selector=dict(type="heatmap"))
    return core.finish_panels(fig, title, width=cols * cell + 40, top=(70, 45),
                              height=len(indices) * (cell + 45) + (70 if title else 40))


def maps_browser(images, masks, maps: Mapping[str, np.ndarray], names: Sequence[str] | None = None,
                 image_scores: Mapping[str, Sequence[float]] | None = None, index: int = 0,
                 **grid_options) -> core.FigureApp:
    """:func:`maps_grid` of one test image at a time, picked from a dropdown (notebook 03)."""
    names = list(names) if names is not None else [f"test {i}" for i in range(len(images))]

    def draw(index):
        return maps_grid(images, masks, maps, [index], row_titles=[names[index]], image_scores=image_scores,
                         **grid_options)

    return core.FigureApp(draw, {"index": core.index_picker(names, index)})


def density_histogram_figure(densities: Mapping[str, Sequence[float]], nbins: int = 60,
                             title: str | None = "Local density of the memory bank's patches",
                             xlabel: str = "local density d (mean distance to the K nearest bank patches)"
                             ) -> go.Figure:
    """Overlaid histograms of ``{name: local densities}`` in one set of ``nbins`` bins (notebook 05)."""
    if not densities:
        raise ValueError("densities must hold at least one set of values.")
    arrays = {str(name): core.to_numpy(values).ravel().astype(np.float64) for name, values in densities.items()}
    edges = np.histogram_bin_edges(np.concatenate(list(arrays.values())), bins=nbins)
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    fig = go.Figure()
    for i, (name, values) in enumerate(arrays.items()):
        counts, _ = np.histogram(values, bins=edges)
        fig.add_trace(go.Bar(x=centres.tolist(), y=counts.tolist(), width=width, name=name, opacity=0.6,
                             marker_color=COLOURS[i % len(COLOURS)], customdata=np.stack([edges[:-1], edges[1:]], 1),
                             hovertemplate=f"{name}<br>d %{{customdata[0]:.2f}} – %{{customdata[1]:.2f}}"
                                           "<br>%{y} patches<extra></extra>"))
    return fig.update_layout(title=title, barmode="overlay", bargap=0, xaxis_title=xlabel, yaxis_title="patches",
                             width=760, height=380, margin=dict(l=60, r=20, t=60 if title else 20, b=50))


def projection_figure(points, values, positions: pd.DataFrame, value_name: str = "local density",
                      title: str | None = "Memory-bank patches, projected to 2-D", size: int = 560,
                      colorscale: str = "Viridis", axis_names: Sequence[str] = ("PC 1", "PC 2")) -> go.Figure:
    """Projected patch features ``points (P, 2)`` coloured by ``values (P,)``; hover shows the ``image``,
    ``row``, ``col`` of ``positions`` (:func:`iadtutor.density.patch_positions`) (notebook 05)."""
    points, values = core.to_numpy(points), core.to_numpy(values).ravel()
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(values) or len(positions) != len(values):
        raise ValueError(f"points must be (P, 2) with one value and one position per point; got points "
                         f"{points.shape}, {len(values)} values, {len(positions)} positions.")
    custom = np.stack([positions["image"].to_numpy(), positions["row"].to_numpy(), positions["col"].to_numpy(),
                       values], axis=1).astype(np.float32)
    fig = go.Figure(go.Scatter(
        x=points[:, 0].astype(np.float32), y=points[:, 1].astype(np.float32), mode="markers", customdata=custom,
        marker=dict(size=4, color=values.astype(np.float32), colorscale=colorscale, showscale=True,
                    colorbar=dict(title=value_name), opacity=0.8),
        hovertemplate="train image %{customdata[0]}, patch (%{customdata[1]}, %{customdata[2]})"
                      f"<br>{value_name} %{{customdata[3]:.3f}}<extra></extra>"))
    return fig.update_layout(title=title, xaxis_title=axis_names[0], yaxis_title=axis_names[1], width=size + 100,
                             height=size, margin=dict(l=60, r=20, t=60 if title else 20, b=50))


def ldknn_terms_figure(image, mask, terms: Mapping[str, np.ndarray], alpha: float, knn_map=None,
                       title: str | None = None, cell: int = 230) -> go.Figure:
    """A test image and its ``(h, w)`` LDKNN terms (REB eq. 3) over it: ``distance``, α·``density`` of the neighbour
    and ``score``, after an optional ``knn_map`` (notebook 05)."""
    panels = [("image and ground truth", None)]
    if knn_map is not None:
        panels.append(("KNN score", core.to_numpy(knn_map)))
    panels += [("distance |f − m_j| (KNN, K = 1)", core.to_numpy(terms["distance"])),
               (f"α·d_j, density of the neighbour (α = {alpha:g})", alpha * core.to_numpy(terms["density"])),
               ("LDKNN score = distance − α·d_j", core.to_numpy(terms["score"]))]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.01)
    for c, (name, values) in enumerate(panels, start=1):  # under a patch map, half the image's pixels are plenty
        core.add_image(fig, image, values, mask, row=1, col=c, overlay_name=name.split(" (")[0], opacity=0.65,
                       step=1 if values is None else 2)
    return core.finish_panels(fig, title, width=len(panels) * cell + 40, height=cell + (80 if title else 50),
                              top=(70, 40), font_size=10)


def ldknn_explorer(images, masks, terms: Mapping[str, object], names: Sequence[str], alpha: float = 1.0,
                   knn_maps=None, index: int = 0, alphas: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
                   ) -> core.FigureApp:
    """:func:`ldknn_terms_figure` with a test-image dropdown and an α slider (notebook 05); ``terms``: ``(n, h, w)``
    ``distance`` and ``density``."""
    def draw(index, alpha):
        distance, density = terms["distance"][index], terms["density"][index]
        one = {"distance": distance, "density": density, "score": distance - alpha * density}
        return ldknn_terms_figure(images[index], masks[index], one, alpha,
                                  knn_map=None if knn_maps is None else knn_maps[index])

    slider = widgets.SelectionSlider(options=sorted(set(float(a) for a in alphas) | {float(alpha)}),
                                     value=float(alpha), description="α", continuous_update=False)
    return core.FigureApp(draw, {"index": core.index_picker(names, index), "alpha": slider})


class WindowExplorer(core.FigureApp):
    """LWinNN's window search (eq. 2) for a test patch you pick (default: the highest score) (notebooks 02, 03). Top:
    the test image with the patch (green) and its δ×δ window (yellow), the mask, the anomaly map, the distance per
    window offset; bottom: the train image with the nearest neighbour (red) and runners-up."""

    def __init__(self, train_images: torch.Tensor, test_images: torch.Tensor, test_masks: torch.Tensor,
                 train_embeddings: torch.Tensor, test_embeddings: torch.Tensor, window: int = 7,
                 test_index: int = 0, row: int | None = None, col: int | None = None,
                 test_names: Sequence[str] | None = None, windows: Sequence[int] = (1, 3, 5, 7, 9, 11, 13, 15),
                 n_train_shown: int = 4, sigma: float = DEFAULT_SIGMA, device: str = "cpu"):
        if len(train_images) != len(train_embeddings) or len(test_images) != len(test_embeddings):
            raise ValueError("train_images / test_images must have one embedding each in train_embeddings / "
                             "test_embeddings.")
        if len(test_masks) != len(test_images):
            raise ValueError(f"test_masks has {len(test_masks)} masks for {len(test_images)} test images.")
        self.train_images, self.test_images, self.test_masks = train_images, test_images, test_masks
        self.train_embeddings, self.test_embeddings = train_embeddings, test_embeddings
        self.grid_hw, self.image_hw = tuple(test_embeddings.shape[-2:]), tuple(test_images.shape[-2:])
        self.sigma, self.device, self.n_train_shown = sigma, device, max(1, min(n_train_shown, len(train_images)))
        self._scorers, self._results = {}, {}  # LocalWindowNN per δ; nearest() per (test image, δ)
        if row is None or col is None:
            row, col = divmod(int(torch.argmax(self.nearest(test_index, window)[0])), self.grid_hw[1])
        names = list(test_names) if test_names is not None else [f"test {i}" for i in range(len(test_images))]
        self.image_picker = core.index_picker(names, test_index)
        self.row, self.col = core.cell_sliders(self.grid_hw, row, col, "patch")
        self.window = widgets.SelectionSlider(options=sorted(set(windows) | {int(window)}), value=window,
                                              description="δ (window)", continuous_update=False)
        super().__init__(self.figure_for, {"test_index": self.image_picker, "row": self.row, "col": self.col,
                                           "window": self.window},
                         describe=self.describe, rows=[["test_index", "window"], ["row", "col"]])

    def nearest(self, test_index: int, window: int):
        """:meth:`LocalWindowNN.nearest`'s ``(h, w)`` maps for test image ``test_index`` and its anomaly map."""
        key = (test_index, window)
        if key not in self._results:
            if window not in self._scorers:  # one LWinNN fitted on the train embeddings per δ
                self._scorers[window] = LocalWindowNN(window=window, device=self.device).fit(self.train_embeddings)
            distance, train_index, offset_index = self._scorers[window].nearest(
                self.test_embeddings[test_index:test_index + 1])
            amap = anomaly_maps(distance, self.image_hw, sigma=self.sigma)[0]
            self._results[key] = (distance[0], train_index[0], offset_index[0], amap)
        return self._results[key]

    def match(self, test_index: int, row: int, col: int, window: int) -> dict:
        """The figure's numbers for one patch: its nearest neighbour, ``per_offset (M, δ, δ)`` distances and more."""
        distance, train_index, offset_index, amap = self.nearest(test_index, window)
        dy, dx = offset_of(int(offset_index[row, col]), window)
        per_offset = window_distances(self.test_embeddings[test_index], self.train_embeddings, row, col, window)
        per_image = per_offset.flatten(1).min(1).values  # best distance inside the window, per train image
        return dict(distance=float(distance[row, col]), train_index=int(train_index[row, col]), dy=dy, dx=dx,
                    match_cell=(row + dy, col + dx), per_offset=per_offset, per_image=per_image,
                    ranking=[int(i) for i in torch.argsort(per_image, stable=True)], anomaly_map=amap)

    def figure_for(self, test_index: int, row: int, col: int, window: int) -> go.Figure:
        """The explorer's figure for one state (no widgets involved); :attr:`last_match` holds its :meth:`match`."""
        found = self.last_match = self.match(test_index, row, col, window)
        best, per_image = found["train_index"], found["per_image"]
        shown = [best] + [i for i in found["ranking"] if i != best][: self.n_train_shown - 1]
        cols = max(4, len(shown))
        titles = ["test image", "ground truth", f"anomaly map (δ = {window})", "distance per window offset"]
        titles += [""] * (cols - 4) + [f"train {i}: {'nearest, ' if i == best else ''}d = {per_image[i]:.2f}"
                                       for i in shown] + [""] * (cols - len(shown))
        fig = make_subplots(rows=2, cols=cols, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.08)
        image, mask = self.test_images[test_index], self.test_masks[test_index]
        core.add_image(fig, image, mask=mask, row=1, col=1)
        core.add_image(fig, mask.float(), row=1, col=2, image_name="ground truth")
        core.add_image(fig, image, overlay=found["anomaly_map"], mask=mask, row=1, col=3, opacity=0.6)
        offsets, per_offset = list(window_offsets(window)), found["per_offset"].min(0)
        values = per_offset.values.numpy().astype(np.float32)
        values[~np.isfinite(values)] = np.nan  # outside the image: left blank
        fig.add_trace(go.Heatmap(z=values, x=offsets, y=offsets, colorscale="Viridis_r", showscale=True,
                                 colorbar=dict(title=dict(text="distance", side="right"), len=0.42, y=0.77,
                                               thickness=12, x=1.0),
                                 customdata=per_offset.indices.numpy(), name="distance",
                                 hovertemplate="dy %{y}, dx %{x}<br>distance %{z:.3f}"
                                               "<br>best train image %{customdata}<extra></extra>"), row=1, col=4)
        fig.add_trace(go.Scatter(x=[found["dx"]], y=[found["dy"]], mode="markers", name="nearest neighbour",
                                 marker=dict(symbol="square-open", size=14, color=core.MATCH_COLOUR, line_width=3),
                                 hoverinfo="skip"), row=1, col=4)
        patch = patch_pixels(row, col, self.grid_hw, self.image_hw)
        window_box = core.box_shape(*window_pixels(row, col, window, self.grid_hw, self.image_hw),
                                    colour=core.REGION_COLOUR, dash="dash")
        for c in (1, 2, 3):
            fig.add_shape(**core.box_shape(*patch, colour=core.SELECTED_COLOUR), row=1, col=c)
        fig.add_shape(**window_box, row=1, col=1)
        for position, train_index in enumerate(shown, start=1):
            core.add_image(fig, self.train_images[train_index], row=2, col=position)
            fig.add_shape(**window_box, row=2, col=position)
            dy, dx = offset_of(int(torch.argmin(found["per_offset"][train_index])), window)
            colour = core.MATCH_COLOUR if train_index == best else "white"
            fig.add_shape(**core.box_shape(*patch_pixels(row + dy, col + dx, self.grid_hw, self.image_hw),
                                           colour=colour), row=2, col=position)
        core.finish_panels(fig, height=500, top=(40, 40)).update_xaxes(showticklabels=True, dtick=1, row=1, col=4)
        return fig.update_yaxes(showticklabels=True, dtick=1, row=1, col=4)  # the δ×δ grid: offsets on the axes

    def describe(self, test_index: int, row: int, col: int, window: int) -> str:
        """One line about the nearest neighbour of the patch (shown above the figure)."""
        found = self.match(test_index, row, col, window)
        r, c = found["match_cell"]
        return (f"patch ({row}, {col}), δ = {window}: nearest neighbour in train image {found['train_index']} at "
                f"patch ({r}, {c}), offset (dy, dx) = ({found['dy']}, {found['dx']}), distance {found['distance']:.3f}")
