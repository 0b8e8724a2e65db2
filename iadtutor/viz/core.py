"""What the figures of every notebook share: the renderer, image / map / mask traces and panels, grids, line and
bar plots, tables, and :class:`FigureApp` (controls that redraw a figure). Figures take arrays in the package's
shapes and set a height but no width (they fill the output area or the book's column)."""

from __future__ import annotations

import base64
import io
import random
from typing import Callable, Mapping, Sequence

import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import torch
from IPython.display import display
from PIL import Image
from plotly.io.base_renderers import PlotlyRenderer
from plotly.subplots import make_subplots

RENDERER_NAME = "iadtutor"
PLOTLY_MIME_TYPE = "application/vnd.plotly.v1+json"
TEMPLATE = "plotly_white"
MAP_COLOURSCALE = "Inferno"
MASK_COLOUR = "#00e5ff"  # cyan: visible on both the image and the inferno colour scale
SELECTED_COLOUR = "#39ff14"  # green: a chosen patch or query, boxes
REGION_COLOUR = "#ffd400"  # yellow: a search window, the foreground defects must stay in
MATCH_COLOUR = "#ff2d55"  # red: the nearest neighbour found


def setup_notebook(seed: int | None = 0, threads: int | None = None, template: str = TEMPLATE) -> int:
    """Every notebook's first call: the course renderer, ``template``, seeds for ``random``, ``numpy`` and ``torch``
    (unless ``seed=None``) and torch's CPU ``threads`` (seeded training repeats only with fixed threads, notebook 07);
    returns the threads in use. The renderer gives a figure's plotly JSON only (JupyterLab draws it): ``make execute``
    adds a static PNG (GitHub, nbviewer; :mod:`iadtutor.tools.notebooks`), the book its interactive HTML."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None; got {threads!r}.")
    pio.renderers[RENDERER_NAME] = PlotlyRenderer(config={"displaylogo": False})
    pio.renderers.default = RENDERER_NAME
    pio.templates.default = template
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def to_numpy(array) -> np.ndarray:
    """A torch tensor or array-like as a numpy array on the CPU (notebooks 00-08)."""
    return np.asarray(array.detach().cpu().numpy() if hasattr(array, "detach") else array)


def to_rgb_uint8(image) -> np.ndarray:
    """An image as ``(H, W, 3)`` uint8 from ``(3, H, W)`` / ``(H, W, 3)`` floats in [0, 1] or uint8, or
    ``(H, W)`` grey (image figures, notebooks 00-08)."""
    array = to_numpy(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 1):  # grey
        array = np.repeat(array.reshape(*array.shape[:2], 1), 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"image must have shape (3, H, W), (H, W, 3) or (H, W); got {array.shape}.")
    if array.dtype != np.uint8:
        array = np.clip(np.round(array.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    return array


def downsample_map(values: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """Average ``k × k`` blocks (the last may be partial) of a ``(H, W)`` map so its longer side is at most
    ``max_side``; returns the map and ``k`` (1: it already fits) (map overlays, notebooks 01-06)."""
    factor = max(1, -(-max(values.shape) // max_side))
    if factor == 1:
        return values, 1
    height, width = values.shape
    padded_h, padded_w = -(-height // factor) * factor, -(-width // factor) * factor
    sums = np.zeros((padded_h, padded_w)); counts = np.zeros((padded_h, padded_w))
    sums[:height, :width], counts[:height, :width] = values, 1
    shape = (padded_h // factor, factor, padded_w // factor, factor)
    return (sums.reshape(shape).sum((1, 3)) / counts.reshape(shape).sum((1, 3))).astype(values.dtype), factor


def value_range(arrays: Sequence, low: float = 0, high: float = 100) -> tuple[float, float]:
    """One colour range for several maps: the ``low``-th and ``high``-th percentiles (notebooks 02-06)."""
    values = np.concatenate([to_numpy(a).ravel() for a in arrays])
    return float(np.percentile(values, low)), float(np.percentile(values, high))


def _as_map(array, name: str) -> np.ndarray:
    array = to_numpy(array)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array; got shape {array.shape}.")
    return array


def require_columns(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    """Raise unless ``table`` has ``columns`` (the table figures of notebooks 03, 05, 06)."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} needs the columns {list(columns)}; missing {missing}.")


def image_trace(image, name: str = "image", format: str = "jpeg", quality: int = 90) -> go.Image:
    """An image as a ``go.Image`` holding a ``data:`` URI (notebooks 00-08): ``"png"`` keeps every pixel, ``"jpeg"``
    (``quality`` 1-100) is about five times smaller."""
    if format not in ("png", "jpeg"):
        raise ValueError(f"format must be 'png' or 'jpeg'; got {format!r}.")
    buffer, options = io.BytesIO(), {"quality": quality} if format == "jpeg" else {}
    Image.fromarray(to_rgb_uint8(image)).save(buffer, format=format.upper(), **options)
    source = f"data:image/{format};base64," + base64.b64encode(buffer.getvalue()).decode()
    return go.Image(source=source, name=name, hovertemplate="x %{x}, y %{y}<extra></extra>")


def map_trace(values, name: str = "anomaly score", colorscale: str = MAP_COLOURSCALE, opacity: float = 1.0,
              zmin: float | None = None, zmax: float | None = None, showscale: bool = True, dx: float = 1.0,
              dy: float = 1.0) -> go.Heatmap:
    """A ``(h, w)`` map as a heatmap (notebooks 01-06); ``dx`` / ``dy``: one cell's size in pixels (over an image)."""
    values = _as_map(values, name).astype(np.float32)  # x0, y0: cell centres, pixel i spans i - 0.5 … i + 0.5
    return go.Heatmap(z=values, x0=(dx - 1) / 2, dx=dx, y0=(dy - 1) / 2, dy=dy, name=name, colorscale=colorscale,
                      opacity=opacity, zmin=zmin, zmax=zmax, showscale=showscale,
                      hovertemplate=f"x %{{x}}, y %{{y}}<br>{name} %{{z:.3f}}<extra></extra>")


def mask_trace(mask, name: str = "ground truth", colour: str = MASK_COLOUR, width: float = 1.5) -> go.Contour:
    """The outline of a ``(H, W)`` boolean mask (notebooks 00-06): a contour at 0.5 of its bounding box plus a border
    of zeros (so outlines close at the edge), as uint8."""
    mask = _as_map(mask, name).astype(bool)
    if not mask.any():
        raise ValueError(f"{name} has no pixel set: there is no outline to draw.")
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    crop = np.pad(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], 1).astype(np.uint8)
    return go.Contour(z=crop, x0=int(cols[0]) - 1, dx=1, y0=int(rows[0]) - 1, dy=1, name=name, showscale=False,
                      hoverinfo="skip", contours=dict(start=0.5, end=0.5, size=1, coloring="none"),
                      line=dict(color=colour, width=width), showlegend=False)


def box_shape(x0: float, x1: float, y0: float, y1: float, colour: str = SELECTED_COLOUR, width: float = 2,
              dash: str | None = None) -> dict:
    """A rectangle from pixel coordinates for ``fig.add_shape(**shape, row=, col=)`` (notebooks 01-03)."""
    return dict(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, line=dict(color=colour, width=width, dash=dash),
                fillcolor="rgba(0,0,0,0)")


def finish_panels(fig: go.Figure, title: str | None = None, height: int | None = None, width: int | None = None,
                  top: tuple[int, int] = (50, 30), font_size: int | None = 11, showlegend: bool | None = False
                  ) -> go.Figure:
    """Pixel axes on every panel (y down, square pixels, no grid or ticks), ``font_size`` panel titles, tight margins;
    ``top``: the top margin with and without a ``title`` (image figures, notebooks 00-08)."""
    fig.update_xaxes(showgrid=False, zeroline=False, showticklabels=False)
    fig.update_yaxes(showgrid=False, zeroline=False, showticklabels=False, autorange="reversed", constrain="domain")
    fig.for_each_yaxis(lambda axis: axis.update(scaleanchor=axis.anchor or "x"))
    if font_size:
        fig.update_annotations(font_size=font_size)
    return fig.update_layout(title=title, width=width, height=height, showlegend=showlegend,
                             margin=dict(l=10, r=10, t=top[0] if title else top[1], b=10))


def add_image(fig: go.Figure, image, overlay=None, mask=None, row: int | None = None, col: int | None = None,
              overlay_name: str = "anomaly score", opacity: float = 0.5, colorscale: str = MAP_COLOURSCALE,
              zmin: float | None = None, zmax: float | None = None, showscale: bool = False,
              image_name: str = "image", max_overlay_side: int = 160, step: int = 1) -> go.Figure:
    """Add an image, an optional overlay and a mask outline to subplot ``(row, col)`` (notebooks 00-08). ``overlay``: a
    ``go.Heatmap``, or a ``(h, w)`` map over the image (its size or a coarser grid dividing it) block-averaged to
    ``max_overlay_side`` cells a side. ``step > 1``: every ``step``-th pixel of image and mask, at their coordinates."""
    where = {} if row is None else dict(row=row, col=col)
    rgb = to_rgb_uint8(image)[::step, ::step]
    first = len(fig.data)
    fig.add_trace(image_trace(rgb, image_name), **where)
    height, width = rgb.shape[:2]
    if isinstance(overlay, go.Heatmap):
        fig.add_trace(overlay, **where)
    elif overlay is not None:
        values, factor = downsample_map(_as_map(overlay, overlay_name), max_overlay_side)
        fig.add_trace(map_trace(values, overlay_name, colorscale, opacity, zmin, zmax, showscale,
                                dx=factor * width / overlay.shape[-1], dy=factor * height / overlay.shape[-2]),
                      **where)
    if mask is not None:
        mask = _as_map(mask, "mask")[::step, ::step]
        if mask.shape != (height, width):
            raise ValueError(f"mask has shape {mask.shape} but the image is {(height, width)}.")
        if mask.any():
            fig.add_trace(mask_trace(mask), **where)
    for trace in fig.data[first:] if step > 1 else ():  # thinned pixel j: pixels j·step … j·step + step - 1
        trace.update(x0=(trace.x0 or 0) * step + (step - 1) / 2, dx=(trace.dx or 1) * step,
                     y0=(trace.y0 or 0) * step + (step - 1) / 2, dy=(trace.dy or 1) * step)
    return fig


def image_figure(image, overlay=None, mask=None, title: str | None = None, size: int = 420, **options) -> go.Figure:
    """:func:`add_image` (``options``: its keywords) alone in a figure ``size`` pixels high (notebook 01)."""
    fig = add_image(go.Figure(), image, overlay, mask, showscale=overlay is not None, **options)
    return finish_panels(fig, title, height=size + 40, top=(40, 10), font_size=None, showlegend=None)


def _grid(n: int, cols: int, titles, spacing: tuple[float, float], what: str) -> tuple[go.Figure, int, int]:
    if n == 0:
        raise ValueError(f"a grid needs at least one of the {what}.")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles has {len(titles)} entries but there are {n} {what}.")
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles) if titles else None,
                        horizontal_spacing=spacing[0], vertical_spacing=spacing[1] if titles else spacing[0])
    return fig, rows, cols


def image_grid(images: Sequence, titles: Sequence[str] | None = None, cols: int = 4, masks: Sequence | None = None,
               overlays: Sequence | None = None, overlay_name: str = "anomaly score", opacity: float = 0.5,
               zmin: float | None = None, zmax: float | None = None, cell: int = 200,
               title: str | None = None, boxes: Sequence | None = None,
               colorscale: str = MAP_COLOURSCALE, max_overlay_side: int = 64) -> go.Figure:
    """Images, ``cols`` per row (every notebook); ``masks`` / ``overlays``: ``(H, W)`` or ``None`` per image, overlays
    in one colour range (default: their min and max); ``boxes``: per image pixel boxes ``(x0, x1, y0, y1)``."""
    n = len(images)
    for name, extra in (("masks", masks), ("overlays", overlays), ("boxes", boxes)):
        if extra is not None and len(extra) != n:
            raise ValueError(f"{name} has {len(extra)} entries but there are {n} images.")
    shown = [o for o in (overlays if overlays is not None else []) if o is not None]
    if shown:
        low, high = value_range(shown)
        zmin, zmax = low if zmin is None else zmin, high if zmax is None else zmax
    fig, rows, cols = _grid(n, cols, titles, (0.02, 0.06), "images")
    for i in range(n):
        row, col = i // cols + 1, i % cols + 1
        add_image(fig, images[i], None if overlays is None else overlays[i], None if masks is None else masks[i],
                  row=row, col=col, overlay_name=overlay_name, opacity=opacity, zmin=zmin, zmax=zmax,
                  showscale=overlays is not None and i == 0, colorscale=colorscale, max_overlay_side=max_overlay_side)
        for box in (boxes[i] or []) if boxes is not None else []:
            fig.add_shape(**box_shape(*box), row=row, col=col)
    return finish_panels(fig, title, height=rows * (cell + 25) + (50 if title else 20), showlegend=None)


def heatmap_grid(maps: Sequence, titles: Sequence[str] | None = None, cols: int = 4,
                 colorscale: str = "Viridis", shared_scale: bool = False, cell: int = 180,
                 value_name: str = "value", title: str | None = None) -> go.Figure:
    """``(h, w)`` maps side by side (notebook 01); ``shared_scale=True``: one colour range and bar for all."""
    fig, rows, cols = _grid(len(maps), cols, titles, (0.03, 0.08), "maps")
    arrays = [_as_map(m, "each map") for m in maps]
    zmin, zmax = value_range(arrays) if shared_scale else (None, None)
    for i, array in enumerate(arrays):
        fig.add_trace(map_trace(array, value_name, colorscale, zmin=zmin, zmax=zmax,
                                showscale=shared_scale and i == 0), row=i // cols + 1, col=i % cols + 1)
    return finish_panels(fig, title, height=rows * (cell + 25) + (50 if title else 20), showlegend=None)


def strongest_channels(feature_map, k: int = 4) -> list[int]:
    """The ``k`` channels of a ``(C, h, w)`` map with the largest spatial standard deviation, largest first
    (notebooks 01, 07)."""
    array = to_numpy(feature_map)
    if array.ndim != 3:
        raise ValueError(f"feature_map must have shape (C, h, w); got {array.shape}.")
    spread = array.reshape(array.shape[0], -1).std(axis=1)
    return [int(i) for i in np.argsort(-spread, kind="stable")[:k]]


def feature_map_grid(taps: Sequence, k: int = 4, image_index: int = 0, strides: Sequence[int] | None = None,
                     cell: int = 150) -> go.Figure:
    """The ``k`` :func:`strongest_channels` of each ``(N, C_i, h_i, w_i)`` tap, a row per tap (notebook 01)."""
    maps, titles = [], []
    for t, tap in enumerate(taps):
        feature_map = to_numpy(tap[image_index])
        label = f"tap {t}" + (f" (stride {strides[t]})" if strides else "")
        for channel in strongest_channels(feature_map, k):
            maps.append(feature_map[channel])
            titles.append(f"{label}, channel {channel}")
    return heatmap_grid(maps, titles, cols=k, cell=cell, value_name="activation")


def line_plot(x: Sequence, ys: Mapping[str, Sequence], title: str | None = None, xlabel: str = "",
              ylabel: str = "", markers: bool = True, width: int | None = None, height: int = 380) -> go.Figure:
    """One line per entry of ``ys`` (``{name: values}``) against ``x`` (notebooks 02, 07)."""
    fig = go.Figure()
    for name, values in ys.items():
        values = to_numpy(values)
        if len(values) != len(x):
            raise ValueError(f"line {name!r} has {len(values)} values but x has {len(x)}.")
        fig.add_trace(go.Scatter(x=list(x), y=values.tolist(), name=str(name),
                                 mode="lines+markers" if markers else "lines"))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, width=width, height=height,
                      margin=dict(l=60, r=20, t=50 if title else 20, b=50), hovermode="x unified")
    return fig


def bar_plot(categories: Sequence[str], values: Mapping[str, Sequence], title: str | None = None,
             ylabel: str = "", yrange: Sequence[float] | None = None, width: int | None = None, height: int = 380,
             text_format: str = ".3f") -> go.Figure:
    """Grouped bars labelled with their values, a colour per ``{series: one value per category}`` (notebook 01)."""
    fig = go.Figure()
    labels = [str(c) for c in categories]
    for name, series in values.items():
        series = to_numpy(series).astype(float)
        if len(series) != len(labels):
            raise ValueError(f"series {name!r} has {len(series)} values but there are {len(labels)} categories.")
        fig.add_trace(go.Bar(x=labels, y=series.tolist(), name=str(name), texttemplate=f"%{{y:{text_format}}}",
                             textposition="outside",
                             hovertemplate=f"%{{x}}<br>{name} %{{y:{text_format}}}<extra></extra>"))
    fig.update_layout(title=title, yaxis_title=ylabel, barmode="group", width=width, height=height,
                      margin=dict(l=60, r=20, t=50 if title else 20, b=60), uniformtext_minsize=8)
    return fig if yrange is None else fig.update_yaxes(range=list(yrange))


def results_table(rows: Sequence[Mapping] | pd.DataFrame, digits: int = 3,
                  index: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of results (dicts or a DataFrame): floats rounded to ``digits``, ``index`` as labels (notebooks 00-08).

    A column ``<name>_ci`` of ``(low, high)`` pairs (bootstrap 95 % intervals, ``pipeline.score_category``)
    is written into column ``<name>`` as ``"0.817 [0.655, 0.946]"``."""
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if index is not None:
        require_columns(frame, [index] if isinstance(index, str) else list(index), "results_table's index")
        frame = frame.set_index(index if isinstance(index, str) else list(index))
    for column in [c for c in frame.columns if isinstance(c, str) and c.endswith("_ci") and c[:-3] in frame]:
        frame[column[:-3]] = [with_interval(value, interval, digits)
                              for value, interval in zip(frame[column[:-3]], frame[column])]
        frame = frame.drop(columns=column)
    return frame.round({column: digits for column in frame.select_dtypes(include="floating").columns})


def with_interval(value: float, interval, digits: int = 3) -> str:
    """``"0.817 [0.655, 0.946]"``: a value and its ``(low, high)`` interval (``None``/NaN: the value alone) as
    one table cell (notebooks 02-08)."""
    if interval is None or not np.all(np.isfinite(np.asarray(interval, dtype=float))) or len(interval) != 2:
        return f"{value:.{digits}f}"
    low, high = interval
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def interval_table(table: pd.DataFrame, index: str, columns: str, metric: str, digits: int = 3) -> pd.DataFrame:
    """``metric`` of a long table as ``index`` × ``columns``, each cell ``"0.817 [0.655, 0.946]"`` when the table
    holds its interval ``<metric>_ci`` (notebooks 03, 08); rows and columns in the table's order."""
    require_columns(table, [index, columns, metric], "interval_table")
    cells = ([with_interval(v, ci, digits) for v, ci in zip(table[metric], table[f"{metric}_ci"])]
             if f"{metric}_ci" in table else table[metric].round(digits))
    wide = table.assign(**{metric: cells}).pivot(index=index, columns=columns, values=metric)
    return wide.loc[list(dict.fromkeys(table[index])), list(dict.fromkeys(table[columns]))]


def steps_table(steps: Mapping[str, object], image_index: int = 0) -> pd.DataFrame:
    """Shapes ``(C, h, w)`` of ``PatchEmbedder.steps`` of one image, per step and tap (notebook 01)."""
    rows = []
    for step, value in steps.items():
        tensors = value if isinstance(value, (list, tuple)) else [value]
        rows += [{"step": step, "tap": t if len(tensors) > 1 else "all", "shape (C, h, w)":
                  tuple(int(d) for d in tensor[image_index].shape)} for t, tensor in enumerate(tensors)]
    return pd.DataFrame(rows)


def pick_examples(defect_types: Sequence[str], per_type: int = 1, max_types: int | None = None,
                  normal: str | None = "good") -> list[int]:
    """Indices of the first ``per_type`` images of each defect type, normal ones first, at most ``max_types``
    defect types (notebooks 00, 02-06): ``pick_examples(["good", "good", "hole", "scratch"]) == [0, 2, 3]``."""
    if per_type < 1:
        raise ValueError(f"per_type must be at least 1; got {per_type}.")
    kinds = [k for k in dict.fromkeys(defect_types) if k != normal][:max_types]
    chosen = ([normal] if normal in defect_types else []) + kinds
    return [i for kind in chosen for i in [i for i, t in enumerate(defect_types) if t == kind][:per_type]]


def category_summary(splits) -> dict:
    """One row about an :class:`iadtutor.data.CategorySplits`: layout, images per split, defect types (notebook 00)."""
    defects = [sample.defect_type for sample in splits.test if sample.label == 1]
    return {"category": splits.category, "layout": splits.layout, "train": len(splits.train),
            "validation": len(splits.validation), "test good": len(splits.test) - len(defects),
            "test defective": len(defects), "defect types": ", ".join(dict.fromkeys(defects))}


def index_picker(names: Sequence[str], value: int = 0, description: str = "test image") -> widgets.Dropdown:
    """A dropdown of ``"i: name"`` whose value is the index ``i`` (the apps of notebooks 02-08)."""
    return widgets.Dropdown(options=[(f"{i}: {name}", i) for i, name in enumerate(names)], value=value,
                            description=description)


def cell_sliders(grid_hw: Sequence[int], row: int, col: int, what: str = "patch") -> tuple:
    """Sliders ``(row, col)`` for a cell of an ``h × w`` grid (the explorers of notebooks 02, 03, 07)."""
    return tuple(widgets.IntSlider(value=value, min=0, max=size - 1, description=f"{what} {axis}",
                                   continuous_update=False)
                 for value, size, axis in ((row, grid_hw[0], "row"), (col, grid_hw[1], "col")))


class FigureApp:
    """Controls that redraw a figure (notebooks 02-08): ``draw(**values)`` returns the :attr:`figure` for the values of
    ``controls`` (``{argument name: ipywidgets control}``), ``describe(**values)`` an optional line above it; ``rows``:
    the controls' names row by row. The figure goes into an ``Output``'s state: a run without a browser keeps it."""

    def __init__(self, draw: Callable[..., go.Figure], controls: Mapping[str, widgets.Widget],
                 describe: Callable[..., str] | None = None, rows: Sequence[Sequence[str]] | None = None):
        if not controls:
            raise ValueError("a FigureApp needs at least one control, e.g. index=ipywidgets.Dropdown(...).")
        self.draw, self.describe, self.controls = draw, describe, dict(controls)
        self.status, self.output = widgets.HTML(), widgets.Output()
        boxes = [widgets.HBox([self.controls[name] for name in row]) for row in rows or [list(self.controls)]]
        self.app = widgets.VBox(boxes + ([self.status] if describe else []) + [self.output])
        for control in self.controls.values():
            control.observe(self.update, names="value")
        self.update()  # sets self.figure

    def update(self, change=None) -> None:
        """Redraw :attr:`figure` (and the description) from the controls' values (called by every control)."""
        values = {name: control.value for name, control in self.controls.items()}
        self.figure = self.draw(**values)
        if self.describe is not None:
            self.status.value = f"<code>{self.describe(**values)}</code>"
        # Written into the Output's state (append_display_data would show the figure in the cell itself).
        self.output.outputs = ({"output_type": "display_data", "data": self.figure._repr_mimebundle_(),
                                "metadata": {}},)

    def _ipython_display_(self):
        display(self.app)
