"""Figures that compare nearest-neighbour scorers and show the memory bank's local densities.

Generic pieces (images with overlays, the renderer, tables) come from :mod:`iadtutor.viz`; this module
adds the plots of notebooks 03 (local vs global search) and 04 (LDKNN):

* :func:`window_sweep_figure` — quality and search time against the window size δ (LWinNN fig. 5),
* :func:`translation_figure` — a metric against the toy factory's translation jitter, a line per method,
* :func:`coverage_figure` — how often a δ×δ window holds a match as good as the global one,
* :func:`maps_grid` — test images (rows) × methods (columns): anomaly maps over the images,
* :func:`density_histogram_figure`, :func:`projection_figure` — local densities of the memory bank,
* :func:`ldknn_terms_figure` — the two terms of an LDKNN score (REB eq. 3) over a test image,
* :func:`k_alpha_figure` — KNN and LDKNN against K, a line per α (REB fig. 5),
* :func:`figure_app` — any figure function behind ipywidgets controls,
* :func:`with_seconds` — a results table with its time columns written as ``"0.012 s"``.

Every function returns a ``plotly.graph_objects.Figure`` (or an app holding one).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

import ipywidgets as widgets
import torch
from IPython.display import display

from iadtutor.knn import LocalWindowNN, anomaly_maps, window_offsets
from iadtutor.metrics import METRIC_TITLES
from iadtutor.patches import cells_to_pixels, offset_of, patch_pixels, window_cells, window_distances
from iadtutor.viz import core

COLOURS = qualitative.Plotly
DENSITY_COLOURSCALE = "Viridis"


def _check_columns(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} needs the columns {list(columns)}; missing {missing}.")


# -------------------------------------------------------------------------------------------- sweeps
def window_sweep_figure(table: pd.DataFrame, title: str | None = "LWinNN over window sizes δ",
                        metrics: Sequence[str] = ("image_auroc", "pixel_auroc", "aupro")) -> go.Figure:
    """Left: each metric against δ; right: search milliseconds per test image against δ.

    ``table``: the output of :func:`iadtutor.pipeline.window_sweep` (columns ``window``, the metrics,
    ``search_seconds_per_image``).
    """
    _check_columns(table, ["window", *metrics, "search_seconds_per_image"], "window_sweep_figure")
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
    fig.update_layout(title=title, width=900, height=380, margin=dict(l=60, r=20, t=70 if title else 40, b=50))
    return fig


def translation_figure(table: pd.DataFrame, metrics: Sequence[str] = ("image_auroc", "aupro"),
                       title: str | None = "Where each search breaks: more translation jitter") -> go.Figure:
    """Each metric against the translation jitter (fraction of the image side), one line per method.

    ``table``: the output of :func:`iadtutor.pipeline.translation_study`.
    """
    _check_columns(table, ["translation", "method", *metrics], "translation_figure")
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[METRIC_TITLES.get(m, m) for m in metrics],
                        horizontal_spacing=0.1)
    for i, (method, part) in enumerate(table.groupby("method", sort=False)):
        colour = COLOURS[i % len(COLOURS)]
        for j, metric in enumerate(metrics):
            name = METRIC_TITLES.get(metric, metric)
            fig.add_trace(go.Scatter(x=part["translation"].tolist(), y=part[metric].tolist(), name=str(method),
                                     legendgroup=str(method), showlegend=j == 0, mode="lines+markers",
                                     line_color=colour,
                                     hovertemplate=f"{method}<br>translation ±%{{x}}<br>{name} %{{y:.3f}}"
                                                   "<extra></extra>"), row=1, col=j + 1)
    fig.update_xaxes(title_text="max. translation (fraction of image side)")
    fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(title=title, width=450 * len(metrics) + 120, height=400,
                      legend=dict(orientation="h", y=-0.25), margin=dict(l=50, r=20, t=70 if title else 40, b=90))
    return fig


def coverage_figure(table: pd.DataFrame, x: str = "window", group: str = "category",
                    title: str | None = "Does the window hold the best match?", xlabel: str | None = None
                    ) -> go.Figure:
    """``share_found`` (see :func:`iadtutor.pipeline.window_vs_global`) against column ``x``, a line per
    value of column ``group``. ``x="window"``: how large δ must be; ``x="translation"``: where δ breaks."""
    _check_columns(table, [x, group, "share_found", "mean_ratio"], "coverage_figure")
    fig = go.Figure()
    for i, (name, part) in enumerate(table.groupby(group, sort=False)):
        label = f"{group} {name}" if group == "translation" else (f"δ = {name}" if group == "window" else str(name))
        fig.add_trace(go.Scatter(x=part[x].tolist(), y=part["share_found"].tolist(), name=label, mode="lines+markers",
                                 line_color=COLOURS[i % len(COLOURS)], customdata=part["mean_ratio"].to_numpy(),
                                 hovertemplate=f"{label}<br>{x} %{{x}}<br>share found %{{y:.3f}}"
                                               "<br>mean d_δ / d_global %{customdata:.3f}<extra></extra>"))
    xlabel = xlabel or ("window size δ (patches)" if x == "window" else x)
    fig.update_xaxes(title_text=xlabel, tickvals=sorted(table[x].unique().tolist()))
    fig.update_yaxes(title_text="share of patches with d_δ ≤ 1.05 · d_global", range=[0, 1.02])
    fig.update_layout(title=title, width=680, height=400, margin=dict(l=60, r=20, t=60 if title else 20, b=50))
    return fig


def k_alpha_figure(table: pd.DataFrame, metrics: Sequence[str] = ("image_auroc", "aupro"),
                   title: str | None = "KNN vs LDKNN over K") -> go.Figure:
    """Each metric against K: KNN as a dashed black line, LDKNN as one line per α (REB fig. 5).

    ``table``: the output of :func:`iadtutor.pipeline.k_alpha_sweep`.
    """
    _check_columns(table, ["method", "k", "alpha", *metrics], "k_alpha_figure")
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[METRIC_TITLES.get(m, m) for m in metrics],
                        horizontal_spacing=0.1)
    knn = table[table["method"] == "KNN"]
    lines = [("KNN (mean of K nearest)", knn, dict(color="black", dash="dash"))]
    ldknn = table[table["method"] == "LDKNN"]
    for i, (alpha, part) in enumerate(ldknn.groupby("alpha", sort=True)):
        lines.append((f"LDKNN α = {alpha:g}", part, dict(color=COLOURS[i % len(COLOURS)])))
    for name, part, line in lines:
        for j, metric in enumerate(metrics):
            label = METRIC_TITLES.get(metric, metric)
            fig.add_trace(go.Scatter(x=part["k"].tolist(), y=part[metric].tolist(), name=name, legendgroup=name,
                                     showlegend=j == 0, mode="lines+markers", line=line,
                                     hovertemplate=f"{name}<br>K = %{{x}}<br>{label} %{{y:.3f}}<extra></extra>"),
                          row=1, col=j + 1)
    fig.update_xaxes(title_text="K (neighbours)", tickvals=sorted(table["k"].unique().tolist()))
    fig.update_layout(title=title, width=450 * len(metrics) + 160, height=400,
                      margin=dict(l=50, r=20, t=70 if title else 40, b=50))
    return fig


def k_alpha_table(table: pd.DataFrame, metric: str = "image_auroc") -> pd.DataFrame:
    """One metric of :func:`iadtutor.pipeline.k_alpha_sweep` as a K × method table: a ``KNN`` column and one
    ``LDKNN α=…`` column per α."""
    _check_columns(table, ["method", "k", "alpha", metric], "k_alpha_table")
    columns = table["method"].where(table["method"] == "KNN", "LDKNN α=" + table["alpha"].map("{:g}".format))
    wide = table.assign(column=columns).pivot(index="k", columns="column", values=metric)
    order = ["KNN"] + [c for c in dict.fromkeys(columns) if c != "KNN"]
    wide = wide[[c for c in order if c in wide.columns]]
    wide.columns.name = METRIC_TITLES.get(metric, metric)
    return wide.rename_axis(index="K")


def with_seconds(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A copy of ``table`` whose columns with ``seconds`` in their name read ``"0.012 s"`` (strings).

    Notebooks print tables with times this way: the test sanitizer masks ``<number> s``, so the metric
    columns are still compared while the times, which change from run to run, are not.
    """
    table = table.copy()
    for column in table.columns:
        if "seconds" in str(column):
            table[column] = [f"{value:.{digits}f} s" for value in table[column]]
    return table


# --------------------------------------------------------------------------------------- score maps
def _block_mean(array: np.ndarray, block: int) -> np.ndarray:
    """``(H, W)`` -> ``(H // block, W // block)``: the mean of each ``block × block`` square."""
    h, w = array.shape[0] // block, array.shape[1] // block
    return array[:h * block, :w * block].reshape(h, block, w, block).mean((1, 3)).astype(np.float32)


def _add_thinned(fig: go.Figure, image, step: int, row: int, col: int, mask=None, overlay=None, **options) -> None:
    """:func:`iadtutor.core.add_image` of every ``step``-th pixel of ``image`` (and ``mask``), drawn at the
    original pixel coordinates, so that hovering shows the same x, y as the full-size panels."""
    image = core.to_numpy(image)[:, ::step, ::step]
    mask = None if mask is None else core.to_numpy(mask)[::step, ::step]
    first = len(fig.data)
    core.add_image(fig, image, overlay=overlay, mask=mask, row=row, col=col, **options)
    if step == 1:
        return
    for trace in fig.data[first:]:  # thinned pixel j stands for original pixels j·step … j·step + step - 1
        trace.update(x0=(trace.x0 or 0) * step + (step - 1) / 2, dx=(trace.dx or 1) * step,
                     y0=(trace.y0 or 0) * step + (step - 1) / 2, dy=(trace.dy or 1) * step)


def _range_of(maps: np.ndarray) -> tuple[float, float]:
    """Colour range of one method's maps: its 1st to 99.9th percentile over all given maps."""
    return float(np.percentile(maps, 1)), float(np.percentile(maps, 99.9))


def maps_grid(images, masks, maps: Mapping[str, np.ndarray], indices: Sequence[int],
              row_titles: Sequence[str] | None = None, image_scores: Mapping[str, Sequence[float]] | None = None,
              cell: int = 200, display_size: int = 128, opacity: float = 0.6,
              title: str | None = None) -> go.Figure:
    """Rows: the test images ``indices``; first column the image with its mask outline, then one column per
    method with its anomaly map over the image (hover shows the map's value).

    ``images`` ``(N, 3, H, W)``, ``masks`` ``(N, H, W)``, ``maps``: ``{method: (N, H, W)}``. Each method keeps
    one colour range over all its maps (1st–99.9th percentile), so colours compare down a column but not
    across columns (the methods' scores have different scales). To keep notebooks small the figure thins
    the first column's image and mask to about ``display_size`` pixels (every s-th pixel), the image
    under each map to half that and the (smooth) maps to a quarter, drawn interpolated; the values shown
    are the maps' own. ``image_scores``: ``{method: (N,)}`` shown in the panel titles.
    """
    if not maps:
        raise ValueError("maps must hold at least one method's anomaly maps.")
    names = list(maps)
    indices = [int(i) for i in indices]
    ranges = {name: _range_of(core.to_numpy(maps[name])) for name in names}
    step = max(1, int(images.shape[-1]) // display_size)
    titles = []
    for r, index in enumerate(indices):
        titles.append(row_titles[r] if row_titles is not None else f"test {index}")
        for name in names:
            score = "" if image_scores is None else f"<br>score {float(core.to_numpy(image_scores[name])[index]):.2f}"
            titles.append(f"{name}{score}")
    cols = 1 + len(names)
    fig = make_subplots(rows=len(indices), cols=cols, subplot_titles=titles, horizontal_spacing=0.015,
                        vertical_spacing=0.3 / max(1, len(indices)))
    for r, index in enumerate(indices, start=1):
        _add_thinned(fig, images[index], step, r, 1, mask=masks[index])
        for c, name in enumerate(names, start=2):
            # the maps are smooth (Gaussian σ = 4 px): a quarter of the resolution, drawn interpolated, keeps
            # their look at a sixteenth of the bytes; the image under them only gives context
            values = _block_mean(core.to_numpy(maps[name][index]), 4 * step)
            zmin, zmax = ranges[name]
            first = len(fig.data)
            _add_thinned(fig, images[index], 2 * step, r, c, mask=masks[index], overlay=values, overlay_name=name,
                         opacity=opacity, zmin=zmin, zmax=zmax)
            for trace in fig.data[first:]:
                if isinstance(trace, go.Heatmap):
                    trace.zsmooth = "best"
    core.image_axes(fig)
    fig.update_annotations(font_size=11)
    fig.update_layout(title=title, width=cols * cell + 40, height=len(indices) * (cell + 45) + (70 if title else 40),
                      margin=dict(l=10, r=10, t=70 if title else 45, b=10), showlegend=False)
    return fig


def maps_browser(images, masks, maps: Mapping[str, np.ndarray], names: Sequence[str] | None = None,
                 image_scores: Mapping[str, Sequence[float]] | None = None, index: int = 0, **grid_options):
    """:func:`maps_grid` for one test image at a time, picked from a dropdown (an :class:`FigureApp`)."""
    import ipywidgets as widgets

    names = list(names) if names is not None else [f"test {i}" for i in range(len(images))]
    picker = widgets.Dropdown(options=[(f"{i}: {name}", i) for i, name in enumerate(names)], value=index,
                              description="test image")

    def draw(index):
        return maps_grid(images, masks, maps, [index], row_titles=[names[index]], image_scores=image_scores,
                         **grid_options)

    return FigureApp(draw, {"index": picker})


# ---------------------------------------------------------------------------------------- densities
def density_histogram_figure(densities: Mapping[str, Sequence[float]], nbins: int = 60,
                             title: str | None = "Local density of the memory bank's patches",
                             xlabel: str = "local density d (mean distance to the K nearest bank patches)"
                             ) -> go.Figure:
    """Overlaid histograms of local densities, one per entry of ``densities`` (``{name: values}``).

    The counts are computed here (``numpy.histogram``, ``nbins`` bins over all values) and drawn as bars,
    so the figure holds ``nbins`` numbers per histogram instead of every patch's value.
    """
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
    fig.update_layout(title=title, barmode="overlay", bargap=0, xaxis_title=xlabel, yaxis_title="patches",
                      width=760, height=380, margin=dict(l=60, r=20, t=60 if title else 20, b=50))
    return fig


def projection_figure(points, values, positions: pd.DataFrame, value_name: str = "local density",
                      title: str | None = "Memory-bank patches, projected to 2-D", size: int = 560,
                      colorscale: str = DENSITY_COLOURSCALE, axis_names: Sequence[str] = ("PC 1", "PC 2")
                      ) -> go.Figure:
    """A scatter of projected patch features ``points`` ``(P, 2)`` coloured by ``values`` ``(P,)``.

    ``positions``: a table with ``image``, ``row``, ``col`` per point (see
    :func:`iadtutor.density.patch_positions`), shown on hover with the value.
    """
    points = core.to_numpy(points)
    values = core.to_numpy(values).ravel()
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
    fig.update_layout(title=title, xaxis_title=axis_names[0], yaxis_title=axis_names[1], width=size + 100,
                      height=size, margin=dict(l=60, r=20, t=60 if title else 20, b=50))
    return fig


def ldknn_terms_figure(image, mask, terms: Mapping[str, np.ndarray], alpha: float, knn_map=None,
                       title: str | None = None, cell: int = 230) -> go.Figure:
    """One test image and the patch maps of an LDKNN score (REB eq. 3), each over the image:
    ``distance`` |f − m_j|, ``α·density`` α·d_j of the neighbour found, and the ``score`` (their difference).

    ``terms``: one image's ``(h, w)`` maps from :func:`iadtutor.density.ldknn_terms` (index them first).
    ``knn_map``: an optional ``(h, w)`` KNN map (mean distance to the K nearest) shown first for contrast.
    """
    panels = [("image and ground truth", None)]
    if knn_map is not None:
        panels.append(("KNN score", core.to_numpy(knn_map)))
    panels += [("distance |f − m_j| (KNN, K = 1)", core.to_numpy(terms["distance"])),
               (f"α·d_j, density of the neighbour (α = {alpha:g})", alpha * core.to_numpy(terms["density"])),
               ("LDKNN score = distance − α·d_j", core.to_numpy(terms["score"]))]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.01)
    for c, (name, values) in enumerate(panels, start=1):
        if values is None:
            core.add_image(fig, image, mask=mask, row=1, col=c)
        else:  # under a patch map the image only gives context: half its resolution is plenty
            _add_thinned(fig, image, 2, 1, c, mask=mask, overlay=values, overlay_name=name.split(" (")[0],
                         opacity=0.65)
    core.image_axes(fig)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=title, width=len(panels) * cell + 40, height=cell + (80 if title else 50),
                      margin=dict(l=10, r=10, t=70 if title else 40, b=10), showlegend=False)
    return fig


def ldknn_explorer(images, masks, terms: Mapping[str, object], names: Sequence[str], alpha: float = 1.0,
                   knn_maps=None, index: int = 0, alphas: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
                   ) -> "FigureApp":
    """:func:`ldknn_terms_figure` with a test-image dropdown and an α slider (the score is recomputed as
    ``distance - α·density``, REB eq. 3). ``terms``: ``(n, h, w)`` ``distance`` and ``density`` maps of the
    ``n`` images in ``images`` / ``masks``; ``knn_maps``: optional ``(n, h, w)`` KNN maps."""
    import ipywidgets as widgets

    picker = widgets.Dropdown(options=[(f"{i}: {name}", i) for i, name in enumerate(names)], value=index,
                              description="test image")
    options = sorted(set(float(a) for a in alphas) | {float(alpha)})
    slider = widgets.SelectionSlider(options=options, value=float(alpha), description="α",
                                     continuous_update=False)

    def draw(index, alpha):
        distance, density = terms["distance"][index], terms["density"][index]
        one = {"distance": distance, "density": density, "score": distance - alpha * density}
        return ldknn_terms_figure(images[index], masks[index], one, alpha,
                                  knn_map=None if knn_maps is None else knn_maps[index])

    return FigureApp(draw, {"index": picker, "alpha": slider})


# ------------------------------------------------------------------------------------------- widgets
class FigureApp:
    """Controls that redraw a figure: ``draw(**values)`` is called with the controls' current values.

    The figure is written into the state of an ``ipywidgets.Output`` when the app is built,
    so a notebook run without a browser (papermill, nbval, the website) still holds the default figure.
    ``controls``: ``{argument name: widget}``; :attr:`figure` is the last figure drawn.
    """

    def __init__(self, draw: Callable[..., go.Figure], controls: Mapping[str, object]):
        import ipywidgets as widgets

        self.draw, self.controls = draw, dict(controls)
        self.output = widgets.Output()
        for control in self.controls.values():
            control.observe(self.update, names="value")
        self.app = widgets.VBox([widgets.HBox(list(self.controls.values())), self.output])
        self.figure: go.Figure | None = None
        self.update()

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def update(self, change=None) -> None:
        self.figure = self.draw(**self.values())
        # Written into the Output widget's state (Output.append_display_data would show a plotly figure
        # in the cell itself), so a saved notebook holds the figure even when no browser ran it.
        bundle = self.figure._repr_mimebundle_()  # the renderer's mime types (see core.setup_notebook)
        self.output.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.app)


def figure_app(draw: Callable[..., go.Figure], **controls) -> FigureApp:
    """:class:`FigureApp` with keyword controls: ``figure_app(draw, index=Dropdown(...), alpha=FloatSlider(...))``."""
    if not controls:
        raise ValueError("figure_app needs at least one control, e.g. index=ipywidgets.Dropdown(...).")
    return FigureApp(draw, controls)


# ------------------------------------------------------------------------------------------ interactive
SELECTED_COLOUR = "#39ff14"  # the chosen test patch
WINDOW_COLOUR = "#ffd400"  # its δ×δ window
MATCH_COLOUR = "#ff2d55"  # the nearest neighbour found


class WindowExplorer:
    """Explore LWinNN's local window search (eq. 2) for one test patch.

    Pick a test image and a patch (``row`` / ``col`` sliders, on the ``h × w`` patch grid) and a window size
    δ. The figure shows, top row: the test image with the patch (green) and its window (yellow), the
    ground-truth mask, the LWinNN anomaly map for this δ, and the δ×δ grid of distances from the patch to
    its best match at each offset of the window; bottom row: the train image holding the nearest
    neighbour (red box) and the runners-up, each with the window drawn where the search looked.

    ``train_images`` ``(M, 3, H, W)`` and ``test_images`` ``(N, 3, H, W)`` in [0, 1]; ``test_masks``
    ``(N, H, W)`` bool; ``train_embeddings`` ``(M, C, h, w)`` and ``test_embeddings`` ``(N, C, h, w)``.
    ``row`` / ``col`` default to the patch with the highest score of the default test image.
    """

    def __init__(self, train_images: torch.Tensor, test_images: torch.Tensor, test_masks: torch.Tensor,
                 train_embeddings: torch.Tensor, test_embeddings: torch.Tensor, window: int = 7,
                 test_index: int = 0, row: int | None = None, col: int | None = None,
                 test_names: Sequence[str] | None = None, windows: Sequence[int] = (1, 3, 5, 7, 9, 11, 13, 15),
                 n_train_shown: int = 4, sigma: float = 4.0, device: str = "cpu"):
        self.train_images, self.test_images, self.test_masks = train_images, test_images, test_masks
        self.train_embeddings, self.test_embeddings = train_embeddings, test_embeddings
        if len(train_images) != len(train_embeddings) or len(test_images) != len(test_embeddings):
            raise ValueError("train_images / test_images must have one embedding each in train_embeddings / "
                             "test_embeddings.")
        if len(test_masks) != len(test_images):
            raise ValueError(f"test_masks has {len(test_masks)} masks for {len(test_images)} test images.")
        windows = sorted(set(windows) | {int(window)})
        self.grid_hw = tuple(test_embeddings.shape[-2:])
        self.image_hw = tuple(test_images.shape[-2:])
        self.sigma, self.device = sigma, device
        self.n_train_shown = max(1, min(n_train_shown, len(train_images)))
        self._scorers: dict[int, LocalWindowNN] = {}
        self._results: dict[tuple[int, int], tuple] = {}

        names = list(test_names) if test_names is not None else [f"test {i}" for i in range(len(test_images))]
        self.image_picker = widgets.Dropdown(options=[(f"{i}: {n}", i) for i, n in enumerate(names)],
                                             value=test_index, description="test image")
        if row is None or col is None:
            distance = self.nearest(test_index, window)[0]
            flat = int(torch.argmax(distance))
            row, col = divmod(flat, self.grid_hw[1])
        self.row = widgets.IntSlider(value=row, min=0, max=self.grid_hw[0] - 1, description="patch row",
                                     continuous_update=False)
        self.col = widgets.IntSlider(value=col, min=0, max=self.grid_hw[1] - 1, description="patch col",
                                     continuous_update=False)
        self.window = widgets.SelectionSlider(options=list(windows), value=window, description="δ (window)",
                                              continuous_update=False)
        self.status = widgets.HTML()
        self.output = widgets.Output()
        for control in (self.image_picker, self.row, self.col, self.window):
            control.observe(self.update, names="value")
        self.app = widgets.VBox([widgets.HBox([self.image_picker, self.window]), widgets.HBox([self.row, self.col]),
                                 self.status, self.output])
        self.figure: go.Figure | None = None
        self.update()

    # ------------------------------------------------------------------------------------ computing
    def scorer(self, window: int) -> LocalWindowNN:
        """The LWinNN scorer for window ``δ`` fitted on the train embeddings (cached)."""
        if window not in self._scorers:
            self._scorers[window] = LocalWindowNN(window=window, device=self.device).fit(self.train_embeddings)
        return self._scorers[window]

    def nearest(self, test_index: int, window: int):
        """``(distance, train_index, offset_index, anomaly_map)`` of test image ``test_index`` for ``δ``:
        the three ``(h, w)`` outputs of :meth:`LocalWindowNN.nearest` and the ``(H, W)`` anomaly map."""
        key = (test_index, window)
        if key not in self._results:
            one = self.test_embeddings[test_index:test_index + 1]
            distance, train_index, offset_index = self.scorer(window).nearest(one)
            amap = anomaly_maps(distance, self.image_hw, sigma=self.sigma)[0]
            self._results[key] = (distance[0], train_index[0], offset_index[0], amap)
        return self._results[key]

    def match(self, test_index: int, row: int, col: int, window: int) -> dict:
        """Everything the figure shows about one test patch, as plain numbers (see the class docstring)."""
        distance, train_index, offset_index, amap = self.nearest(test_index, window)
        dy, dx = offset_of(int(offset_index[row, col]), window)
        per_offset = window_distances(self.test_embeddings[test_index], self.train_embeddings, row, col, window)
        per_image = per_offset.flatten(1).min(1).values  # best distance inside the window, per train image
        ranking = torch.argsort(per_image, stable=True)
        return dict(distance=float(distance[row, col]), train_index=int(train_index[row, col]), dy=dy, dx=dx,
                    match_cell=(row + dy, col + dx), per_offset=per_offset, per_image=per_image,
                    ranking=[int(i) for i in ranking], anomaly_map=amap)

    # -------------------------------------------------------------------------------------- drawing
    def figure_for(self, test_index: int, row: int, col: int, window: int) -> go.Figure:
        """The explorer's figure for one state (no widgets involved)."""
        found = self.match(test_index, row, col, window)
        best = found["train_index"]
        shown = [best] + [i for i in found["ranking"] if i != best][: self.n_train_shown - 1]
        cols = max(4, len(shown))
        per_image = found["per_image"]
        titles = ["test image", "ground truth", f"anomaly map (δ = {window})", "distance per window offset"]
        titles += [""] * (cols - 4)
        titles += [f"train {i}: nearest, d = {per_image[i]:.2f}" if i == best
                   else f"train {i}: d = {per_image[i]:.2f}" for i in shown]
        titles += [""] * (cols - len(shown))
        fig = make_subplots(rows=2, cols=cols, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.08)

        mask = self.test_masks[test_index]
        core.add_image(fig, self.test_images[test_index], mask=mask, row=1, col=1)
        core.add_image(fig, mask.float(), row=1, col=2, image_name="ground truth")
        amap = found["anomaly_map"]
        core.add_image(fig, self.test_images[test_index], overlay=amap, mask=mask, row=1, col=3, opacity=0.6,
                      showscale=False)
        offsets = list(window_offsets(window))
        per_offset = found["per_offset"].min(0)
        values = per_offset.values.numpy().astype(np.float32)
        values[~np.isfinite(values)] = np.nan  # outside the image: left blank
        fig.add_trace(go.Heatmap(z=values, x=offsets, y=offsets, colorscale="Viridis_r", showscale=True,
                                 colorbar=dict(title=dict(text="distance", side="right"), len=0.42, y=0.77,
                                               thickness=12, x=1.0),
                                 customdata=per_offset.indices.numpy(), name="distance",
                                 hovertemplate="dy %{y}, dx %{x}<br>distance %{z:.3f}"
                                               "<br>best train image %{customdata}<extra></extra>"),
                      row=1, col=4)
        fig.add_trace(go.Scatter(x=[found["dx"]], y=[found["dy"]], mode="markers", name="nearest neighbour",
                                 marker=dict(symbol="square-open", size=14, color=MATCH_COLOUR, line_width=3),
                                 hoverinfo="skip"), row=1, col=4)

        patch = patch_pixels(row, col, self.grid_hw, self.image_hw)
        window_box = cells_to_pixels(*window_cells(row, col, window, self.grid_hw), self.grid_hw, self.image_hw)
        for c in (1, 2, 3):
            fig.add_shape(**core.box_shape(*patch, colour=SELECTED_COLOUR), row=1, col=c)
        fig.add_shape(**core.box_shape(*window_box, colour=WINDOW_COLOUR, dash="dash"), row=1, col=1)

        for position, train_index in enumerate(shown, start=1):
            core.add_image(fig, self.train_images[train_index], row=2, col=position)
            fig.add_shape(**core.box_shape(*window_box, colour=WINDOW_COLOUR, dash="dash"), row=2, col=position)
            flat = int(torch.argmin(found["per_offset"][train_index]))
            dy, dx = offsets[flat // len(offsets)], offsets[flat % len(offsets)]
            colour = MATCH_COLOUR if train_index == best else "white"
            fig.add_shape(**core.box_shape(*patch_pixels(row + dy, col + dx, self.grid_hw, self.image_hw),
                                          colour=colour), row=2, col=position)
        core.image_axes(fig)
        fig.update_xaxes(showticklabels=True, dtick=1, row=1, col=4)  # the δ×δ grid: offsets on the axes
        fig.update_yaxes(showticklabels=True, dtick=1, row=1, col=4)
        fig.update_annotations(font_size=11)
        fig.update_layout(height=500, margin=dict(l=10, r=10, t=40, b=10), showlegend=False)
        self.last_match = found
        return fig

    def describe(self, test_index: int, row: int, col: int, window: int) -> str:
        found = self.match(test_index, row, col, window)
        r, c = found["match_cell"]
        return (f"patch ({row}, {col}), δ = {window}: nearest neighbour in train image {found['train_index']} at "
                f"patch ({r}, {c}), offset (dy, dx) = ({found['dy']}, {found['dx']}), distance {found['distance']:.3f}")

    def update(self, change=None) -> None:
        """Redraw :attr:`figure` from the controls' values (called by every control)."""
        state = (self.image_picker.value, self.row.value, self.col.value, self.window.value)
        self.figure = self.figure_for(*state)
        self.status.value = f"<code>{self.describe(*state)}</code>"
        # Written into the Output widget's state (not captured from the frontend), so that a saved
        # notebook holds the figure in its widget state even when no browser ran it.
        bundle = self.figure._repr_mimebundle_()  # the notebook renderer's mime types (see core.setup_notebook)
        self.output.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)

    def _ipython_display_(self):
        display(self.app)
