"""Plotly figures for the notebooks: images with anomaly-map and mask overlays, heatmap grids, line and
bar plots, and result tables.

Call :func:`setup_notebook` once at the top of a notebook. It selects the ``iadtutor`` plotly renderer,
whose output carries two representations of every figure:

* ``application/vnd.plotly.v1+json`` — drawn live by JupyterLab (zoom, hover);
* ``text/html`` — a ``<div>`` plus a ``Plotly.newPlot`` call that does **not** embed plotly.js (and
  loads nothing from a CDN): the website serves its own ``plotly.min.js`` and draws this one.

Every figure function takes arrays in the shapes the rest of the package uses and returns a
``plotly.graph_objects.Figure``; nothing is drawn until the figure is displayed (or ``.show()``).
Figures set a height but no width: they fill the notebook's output area or the book's text column,
whichever is showing them (images keep square pixels and shrink to fit).

>>> fig = image_figure(images[0], overlay=maps[0], mask=masks[0])   # doctest: +SKIP
>>> fig                                                             # doctest: +SKIP
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import random
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.io._base_renderers import MimetypeRenderer, PlotlyRenderer
from plotly.subplots import make_subplots

RENDERER_NAME = "iadtutor"
PLOTLY_MIME_TYPE = "application/vnd.plotly.v1+json"
TEMPLATE = "plotly_white"
MASK_COLOUR = "#00e5ff"  # cyan: visible on both the image and the inferno colour scale
MAP_COLOURSCALE = "Inferno"
BOX_COLOUR = "#39ff14"


# ------------------------------------------------------------------------------------------- renderer
_figure_counter = itertools.count(1)  # module level: plotly copies a renderer before each use


class CourseRenderer(MimetypeRenderer):
    """Both representations of a figure in one output: the plotly JSON (for JupyterLab) and a
    ``text/html`` div + ``Plotly.newPlot`` call with no plotly.js, no MathJax and no CDN (for the book).

    The div id is derived from the figure's JSON and a per-kernel counter, so re-running a notebook gives
    the same HTML for the same figure, and two identical figures on one page still get different ids.
    """

    def __init__(self, config: Mapping | None = None):
        self.config = dict(config) if config else {}

    def to_mimebundle(self, fig_dict) -> dict:
        bundle = PlotlyRenderer(config=self.config).to_mimebundle(dict(fig_dict))
        figure_json = pio.to_json(fig_dict, validate=False)
        div_id = f"iadtutor-fig-{hashlib.sha1(figure_json.encode()).hexdigest()[:12]}-{next(_figure_counter)}"
        bundle["text/html"] = pio.to_html(fig_dict, config=self.config, include_plotlyjs=False,
                                          include_mathjax=False, full_html=False, div_id=div_id,
                                          default_width="100%", default_height=525, validate=False)
        return bundle


def register_renderer() -> str:
    """Register the :class:`CourseRenderer` as ``"iadtutor"`` in ``plotly.io.renderers``; return the name."""
    pio.renderers[RENDERER_NAME] = CourseRenderer(config={"displaylogo": False})
    return RENDERER_NAME


def setup_notebook(seed: int | None = 0, template: str = TEMPLATE) -> None:
    """Select the renderer of the course (both mime types, see the module docstring), a plain figure
    template, and seed ``random`` / ``numpy`` / ``torch`` (``seed=None`` leaves them alone)."""
    pio.renderers.default = register_renderer()
    pio.templates.default = template
    if seed is not None:
        import torch

        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)


def mime_bundle(fig: go.Figure) -> dict:
    """What the current default renderer emits for ``fig``: ``{mime type: data}`` (for tests)."""
    return pio.renderers._build_mime_bundle(fig.to_dict(), pio.renderers.default)


def save_png(fig: go.Figure, path, width: int | None = None, height: int | None = None, scale: float = 1.0) -> None:
    """Write ``fig`` as a PNG at its layout size unless told otherwise (needs kaleido 1.x and Chromium).
    Figures of this module fill the width of the page (no layout width); they are saved 1000 pixels wide."""
    width = width or fig.layout.width or 1000
    height = height or fig.layout.height
    fig.write_image(str(path), format="png", width=width, height=height, scale=scale)


# --------------------------------------------------------------------------------------- array inputs
def to_numpy(array) -> np.ndarray:
    """A torch tensor or array-like as a numpy array (on the CPU)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def to_rgb_uint8(image) -> np.ndarray:
    """An image as ``(H, W, 3)`` uint8: accepts ``(3, H, W)`` or ``(H, W, 3)`` floats in [0, 1] or uint8,
    and ``(H, W)`` grey."""
    array = to_numpy(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"image must have shape (3, H, W), (H, W, 3) or (H, W); got {array.shape}.")
    if array.dtype != np.uint8:
        array = np.clip(np.round(array.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    return array


def image_data_uri(image, format: str = "png", quality: int = 90) -> str:
    """An image (any shape :func:`to_rgb_uint8` accepts) as a ``data:image/...;base64,`` string.

    ``format="png"`` keeps every pixel exactly; ``"jpeg"`` (``quality`` 1-100) is about five times
    smaller for photos and noisy renders, which keeps notebooks with many figures small.
    """
    from PIL import Image

    if format not in ("png", "jpeg"):
        raise ValueError(f"format must be 'png' or 'jpeg'; got {format!r}.")
    buffer = io.BytesIO()
    options = {"quality": quality} if format == "jpeg" else {}
    Image.fromarray(to_rgb_uint8(image)).save(buffer, format=format.upper(), **options)
    return f"data:image/{format};base64," + base64.b64encode(buffer.getvalue()).decode()


def png_data_uri(image) -> str:
    """An image as a lossless ``data:image/png;base64,...`` string (see :func:`image_data_uri`)."""
    return image_data_uri(image, "png")


def downsample_map(values: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """Average ``k × k`` blocks of a ``(H, W)`` map so that its longer side is at most ``max_side``;
    returns the smaller map and ``k`` (1 when it already fits). The last blocks may be partial."""
    factor = max(1, -(-max(values.shape) // max_side))
    if factor == 1:
        return values, 1
    height, width = values.shape
    padded_h, padded_w = -(-height // factor) * factor, -(-width // factor) * factor
    sums = np.zeros((padded_h, padded_w)); counts = np.zeros((padded_h, padded_w))
    sums[:height, :width], counts[:height, :width] = values, 1
    shape = (padded_h // factor, factor, padded_w // factor, factor)
    return (sums.reshape(shape).sum((1, 3)) / counts.reshape(shape).sum((1, 3))).astype(values.dtype), factor


def _as_map(array, name: str) -> np.ndarray:
    array = to_numpy(array)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array; got shape {array.shape}.")
    return array


# -------------------------------------------------------------------------------------------- traces
def image_trace(image, name: str = "image", format: str = "jpeg") -> go.Image:
    """An RGB image as a ``go.Image`` trace holding a compressed copy (JPEG by default, see
    :func:`image_data_uri`); hover shows x, y."""
    return go.Image(source=image_data_uri(image, format), name=name, hovertemplate="x %{x}, y %{y}<extra></extra>")


def map_trace(values, name: str = "anomaly score", colorscale: str = MAP_COLOURSCALE, opacity: float = 1.0,
              zmin: float | None = None, zmax: float | None = None, showscale: bool = True,
              colorbar: Mapping | None = None, dx: float = 1.0, dy: float = 1.0) -> go.Heatmap:
    """A ``(H, W)`` map as a heatmap whose hover shows the value. ``dx``/``dy``: the size of one cell in
    pixels, so that a coarse map (e.g. 32×32 patch scores) can lie over a 128×128 image."""
    values = _as_map(values, name).astype(np.float32)
    x0, y0 = (dx - 1) / 2, (dy - 1) / 2  # cell centres, with pixel i spanning i - 0.5 … i + 0.5
    return go.Heatmap(z=values, x0=x0, dx=dx, y0=y0, dy=dy, name=name, colorscale=colorscale, opacity=opacity,
                      zmin=zmin, zmax=zmax, showscale=showscale, colorbar=dict(colorbar or {}),
                      hovertemplate=f"x %{{x}}, y %{{y}}<br>{name} %{{z:.3f}}<extra></extra>")


def mask_trace(mask, name: str = "ground truth", colour: str = MASK_COLOUR, width: float = 1.5) -> go.Contour:
    """The outline of a ``(H, W)`` boolean mask: a contour line at 0.5 (no fill, no colour bar).

    Only the mask's bounding box (plus a one-pixel border of zeros, so outlines close at the image edge)
    is stored, as uint8, placed with ``x0`` / ``y0``: a small defect costs a few bytes, not a full image.
    """
    mask = _as_map(mask, name).astype(bool)
    if not mask.any():
        raise ValueError(f"{name} has no pixel set: there is no outline to draw.")
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    crop = np.pad(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], 1).astype(np.uint8)
    return go.Contour(z=crop, x0=int(cols[0]) - 1, dx=1, y0=int(rows[0]) - 1, dy=1, name=name, showscale=False,
                      hoverinfo="skip", contours=dict(start=0.5, end=0.5, size=1, coloring="none"),
                      line=dict(color=colour, width=width), showlegend=False)


def box_shape(x0: float, x1: float, y0: float, y1: float, colour: str = BOX_COLOUR, width: float = 2,
              dash: str | None = None) -> dict:
    """A rectangle (layout shape) from pixel coordinates; pass it to ``fig.add_shape(**shape, row=, col=)``."""
    return dict(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, line=dict(color=colour, width=width, dash=dash),
                fillcolor="rgba(0,0,0,0)")


# ------------------------------------------------------------------------------------------- figures
def image_axes(fig: go.Figure) -> None:
    """Pixel axes on every subplot: y pointing down, square pixels, no grid or tick clutter."""
    fig.update_xaxes(showgrid=False, zeroline=False, showticklabels=False)
    fig.update_yaxes(showgrid=False, zeroline=False, showticklabels=False, autorange="reversed", constrain="domain")
    fig.for_each_yaxis(lambda axis: axis.update(scaleanchor=axis.anchor or "x"))


def add_image(fig: go.Figure, image, overlay=None, mask=None, row: int | None = None, col: int | None = None,
              overlay_name: str = "anomaly score", opacity: float = 0.5, colorscale: str = MAP_COLOURSCALE,
              zmin: float | None = None, zmax: float | None = None, showscale: bool = False,
              image_name: str = "image", max_overlay_side: int = 160) -> go.Figure:
    """Add an image, optionally a heatmap overlay of the same size (or a coarser grid that divides it)
    and a mask outline, to subplot ``(row, col)`` of ``fig``. Overlays larger than ``max_overlay_side``
    are block-averaged for display (a 256-pixel anomaly map is shown at 128 × 128)."""
    where = {} if row is None else dict(row=row, col=col)
    rgb = to_rgb_uint8(image)
    fig.add_trace(image_trace(rgb, image_name), **where)
    height, width = rgb.shape[:2]
    if overlay is not None:
        values, factor = downsample_map(_as_map(overlay, overlay_name), max_overlay_side)
        fig.add_trace(map_trace(values, overlay_name, colorscale, opacity, zmin, zmax, showscale,
                                dx=factor * width / overlay.shape[-1], dy=factor * height / overlay.shape[-2]),
                      **where)
    if mask is not None:
        mask = _as_map(mask, "mask")
        if mask.shape != (height, width):
            raise ValueError(f"mask has shape {mask.shape} but the image is {(height, width)}.")
        if mask.any():
            fig.add_trace(mask_trace(mask), **where)
    return fig


def image_figure(image, overlay=None, mask=None, title: str | None = None, overlay_name: str = "anomaly score",
                 opacity: float = 0.5, colorscale: str = MAP_COLOURSCALE, zmin: float | None = None,
                 zmax: float | None = None, size: int = 420) -> go.Figure:
    """One image, with an optional ``(H, W)`` heatmap ``overlay`` (hover shows its values) and the
    outline of an optional ``(H, W)`` boolean ``mask``.

    Traces, in order: ``go.Image``, then ``go.Heatmap`` (if ``overlay``), then ``go.Contour`` (if ``mask``
    has any pixel set). ``size``: the image's height in pixels.
    """
    fig = go.Figure()
    add_image(fig, image, overlay, mask, overlay_name=overlay_name, opacity=opacity, colorscale=colorscale,
              zmin=zmin, zmax=zmax, showscale=overlay is not None)
    image_axes(fig)
    fig.update_layout(title=title, height=size + 40,
                      margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


def _grid_shape(n: int, cols: int) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return -(-n // cols), cols


def image_grid(images: Sequence, titles: Sequence[str] | None = None, cols: int = 4, masks: Sequence | None = None,
               overlays: Sequence | None = None, overlay_name: str = "anomaly score", opacity: float = 0.5,
               zmin: float | None = None, zmax: float | None = None, cell: int = 200,
               title: str | None = None, boxes: Sequence | None = None,
               colorscale: str = MAP_COLOURSCALE, max_overlay_side: int = 64) -> go.Figure:
    """Images in a grid (``cols`` per row), each with an optional mask outline, heatmap overlay and boxes.

    ``images``: a sequence (or ``(N, 3, H, W)`` tensor) of images; ``masks`` / ``overlays``: ``(H, W)``
    per image or ``None`` entries. Overlays share one colour range (``zmin``/``zmax``, default: all
    overlays' min and max) so that colours compare across images. ``boxes``: per image a list of pixel
    boxes ``(x0, x1, y0, y1)`` drawn as rectangles (see :func:`iadtutor.patches.patch_pixels`).
    Overlays are block-averaged to at most ``max_overlay_side`` cells a side (small panels do not show
    more, and the notebook stays small); raise it for maps with fine detail. ``cell``: the height of a
    row of images in pixels (the width follows the page).
    """
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image.")
    for name, extra in (("titles", titles), ("masks", masks), ("overlays", overlays), ("boxes", boxes)):
        if extra is not None and len(extra) != n:
            raise ValueError(f"{name} has {len(extra)} entries but there are {n} images.")
    if overlays is not None:
        values = [to_numpy(o) for o in overlays if o is not None]
        zmin = float(min(v.min() for v in values)) if zmin is None and values else zmin
        zmax = float(max(v.max() for v in values)) if zmax is None and values else zmax
    rows, cols = _grid_shape(n, cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles) if titles else None,
                        horizontal_spacing=0.02, vertical_spacing=0.06 if titles else 0.02)
    for i in range(n):
        row, col = i // cols + 1, i % cols + 1
        add_image(fig, images[i], None if overlays is None else overlays[i],
                  None if masks is None else masks[i], row=row, col=col, overlay_name=overlay_name,
                  opacity=opacity, zmin=zmin, zmax=zmax, showscale=overlays is not None and i == 0,
                  colorscale=colorscale, max_overlay_side=max_overlay_side)
        for box in (boxes[i] or []) if boxes is not None else []:
            fig.add_shape(**box_shape(*box), row=row, col=col)
    image_axes(fig)
    _small_titles(fig)
    fig.update_layout(title=title, height=rows * (cell + 25) + (50 if title else 20), margin=dict(l=10, r=10, t=50 if title else 30, b=10))
    return fig


def heatmap_grid(maps: Sequence, titles: Sequence[str] | None = None, cols: int = 4,
                 colorscale: str = "Viridis", shared_scale: bool = False, cell: int = 180,
                 value_name: str = "value", title: str | None = None) -> go.Figure:
    """``(h, w)`` maps (feature maps, score maps) side by side, hover showing the values.

    ``shared_scale=True`` gives all maps one colour range and one colour bar (to compare magnitudes);
    otherwise each map uses its own range (to compare patterns). ``cell``: row height in pixels.
    """
    n = len(maps)
    if n == 0:
        raise ValueError("heatmap_grid needs at least one map.")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles has {len(titles)} entries but there are {n} maps.")
    arrays = [_as_map(m, "each map") for m in maps]
    zmin = float(min(a.min() for a in arrays)) if shared_scale else None
    zmax = float(max(a.max() for a in arrays)) if shared_scale else None
    rows, cols = _grid_shape(n, cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles) if titles else None,
                        horizontal_spacing=0.03, vertical_spacing=0.08 if titles else 0.03)
    for i, array in enumerate(arrays):
        fig.add_trace(map_trace(array, value_name, colorscale, zmin=zmin, zmax=zmax,
                                showscale=shared_scale and i == 0), row=i // cols + 1, col=i % cols + 1)
    image_axes(fig)
    _small_titles(fig)
    fig.update_layout(title=title, height=rows * (cell + 25) + (50 if title else 20), margin=dict(l=10, r=10, t=50 if title else 30, b=10))
    return fig


def feature_map_grid(taps: Sequence, k: int = 4, image_index: int = 0, strides: Sequence[int] | None = None,
                     cell: int = 150) -> go.Figure:
    """The ``k`` most varying channels (:func:`strongest_channels`) of each tap, one row per tap.

    ``taps``: the list of ``(N, C_i, h_i, w_i)`` feature maps of :meth:`iadtutor.embed.PatchEmbedder.steps`;
    ``strides`` only label the rows.
    """
    maps, titles = [], []
    for t, tap in enumerate(taps):
        feature_map = to_numpy(tap[image_index])
        label = f"tap {t}" + (f" (stride {strides[t]})" if strides else "")
        for channel in strongest_channels(feature_map, k):
            maps.append(feature_map[channel])
            titles.append(f"{label}, channel {channel}")
    return heatmap_grid(maps, titles, cols=k, cell=cell, value_name="activation")


def steps_table(steps: Mapping[str, object], image_index: int = 0) -> pd.DataFrame:
    """Shapes of the intermediates of :meth:`iadtutor.embed.PatchEmbedder.steps` for one image: one row
    per step and tap, ``(C, h, w)``."""
    rows = []
    for step, value in steps.items():
        tensors = value if isinstance(value, (list, tuple)) else [value]
        for t, tensor in enumerate(tensors):
            rows.append({"step": step, "tap": t if len(tensors) > 1 else "all",
                         "shape (C, h, w)": tuple(int(d) for d in tensor[image_index].shape)})
    return pd.DataFrame(rows)


def _small_titles(fig: go.Figure, size: int = 11) -> None:
    fig.update_annotations(font_size=size)


def line_plot(x: Sequence, ys: Mapping[str, Sequence], title: str | None = None, xlabel: str = "",
              ylabel: str = "", markers: bool = True, width: int | None = None, height: int = 380) -> go.Figure:
    """One line per entry of ``ys`` (``{name: values}``), against ``x``; hover shows the values."""
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
    """Grouped bars: one group per entry of ``categories``, one bar colour per entry of ``values``
    (``{series name: one value per category}``); each bar is labelled with its value."""
    fig = go.Figure()
    labels = [str(c) for c in categories]
    for name, series in values.items():
        series = to_numpy(series).astype(float)
        if len(series) != len(labels):
            raise ValueError(f"series {name!r} has {len(series)} values but there are {len(labels)} categories.")
        fig.add_trace(go.Bar(x=labels, y=series.tolist(), name=str(name), texttemplate=f"%{{y:{text_format}}}",
                             textposition="outside", hovertemplate=f"%{{x}}<br>{name} %{{y:{text_format}}}<extra></extra>"))
    fig.update_layout(title=title, yaxis_title=ylabel, barmode="group", width=width, height=height,
                      margin=dict(l=60, r=20, t=50 if title else 20, b=60), uniformtext_minsize=8)
    if yrange is not None:
        fig.update_yaxes(range=list(yrange))
    return fig


# -------------------------------------------------------------------------------------------- tables
def results_table(rows: Sequence[Mapping] | pd.DataFrame, digits: int = 3,
                  index: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of results (dicts or a DataFrame) as a DataFrame with floats rounded to ``digits`` decimals,
    so a notebook's printed numbers stay stable; ``index`` names the column(s) to use as row labels."""
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if index is not None:
        columns = [index] if isinstance(index, str) else list(index)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"index column(s) {missing} are not among the columns {list(frame.columns)}.")
        frame = frame.set_index(columns[0] if isinstance(index, str) else columns)
    float_columns = frame.select_dtypes(include="floating").columns
    frame[float_columns] = frame[float_columns].round(digits)
    return frame


# ---------------------------------------------------------------------------------- picking examples
def pick_examples(defect_types: Sequence[str], per_type: int = 1, max_types: int | None = None,
                  normal: str | None = "good") -> list[int]:
    """Indices of example images: the first ``per_type`` of each defect type, in order of first
    appearance, normal images (``normal``) first. ``max_types`` caps the number of defect types shown.

    >>> pick_examples(["good", "good", "hole", "scratch", "hole"])
    [0, 2, 3]
    """
    if per_type < 1:
        raise ValueError(f"per_type must be at least 1; got {per_type}.")
    order = list(dict.fromkeys(defect_types))
    if normal in order:
        order.remove(normal)
        order.insert(0, normal)
    kinds = [k for k in order if k != normal]
    if max_types is not None:
        kinds = kinds[:max_types]
    chosen = ([normal] if normal in order else []) + kinds
    picked = []
    for kind in chosen:
        picked += [i for i, t in enumerate(defect_types) if t == kind][:per_type]
    return picked


def category_summary(splits) -> dict:
    """One row about a category on disk (an :class:`iadtutor.data.CategorySplits`): its layout, how many
    images each split holds, and its defect types (from the folder names)."""
    defects = [sample.defect_type for sample in splits.test if sample.label == 1]
    return {"category": splits.category, "layout": splits.layout, "train": len(splits.train),
            "validation": len(splits.validation), "test good": len(splits.test) - len(defects),
            "test defective": len(defects), "defect types": ", ".join(dict.fromkeys(defects))}


def strongest_channels(feature_map, k: int = 4) -> list[int]:
    """Indices of the ``k`` channels of a ``(C, h, w)`` feature map with the largest spatial standard
    deviation (the ones that show a pattern rather than a flat field), strongest first."""
    array = to_numpy(feature_map)
    if array.ndim != 3:
        raise ValueError(f"feature_map must have shape (C, h, w); got {array.shape}.")
    spread = array.reshape(array.shape[0], -1).std(axis=1)
    return [int(i) for i in np.argsort(-spread, kind="stable")[:k]]
