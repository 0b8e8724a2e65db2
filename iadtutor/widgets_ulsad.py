"""Explore ULSAD's attention (eqs. 3-4): pick a query location, see which regions it attends to.

:class:`AttentionExplorer` shows, for one test image and one query cell ``q`` of the ``h* x w*`` feature
grid, the self-attention weights ``W[:, q]`` of the pretrained features ``U`` (eq. 3, the target the
global branch learns) beside the cross-attention weights ``W^c[:, q]`` of the global autoencoder's output
``U^`` over ``U`` (eq. 4, what it learned), and the global anomaly map (eq. 8) of the image.

Like the apps of :mod:`iadtutor.widgets`, the figure is written into an ``ipywidgets.Output`` when the
app is built, so a notebook run without a browser (papermill, nbval, the website) still shows the
default figure; in JupyterLab the controls redraw it.

>>> explorer = AttentionExplorer(model, images, names=defect_types)    # doctest: +SKIP
>>> explorer                                                            # doctest: +SKIP
"""

from __future__ import annotations

from typing import Sequence

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import display
from plotly.subplots import make_subplots

from . import viz
from .viz_ulsad import add_overlay_panel, attention_trace, cell_centre, query_marker


def attention_difference(self_attention, cross_attention) -> float:
    """Total-variation distance ``0.5 * sum_p |W[p, q] - W^c[p, q]|`` between two attention maps of one
    query: 0 when the global branch attends exactly like the features, 1 when they share no key."""
    a, b = viz.to_numpy(self_attention).astype(np.float64), viz.to_numpy(cross_attention).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"the two attention maps must have one shape; got {a.shape} and {b.shape}.")
    return float(0.5 * np.abs(a - b).sum())


class AttentionExplorer:
    """Self- vs cross-attention of a trained ULSAD for a query location you pick.

    ``model``: a fitted :class:`iadtutor.ulsad.ULSAD`; ``images (N, 3, H, W)`` in [0, 1]; ``masks (N, H, W)``
    (optional, outlined); ``names``: a label per image. Controls: the image, the query cell's ``row``
    / ``col`` on the ``h* x w*`` grid (default: the cell where the global map, eq. 8, of image ``index``
    is highest), and whether the attention weights are shown on a log scale
    (:func:`iadtutor.viz_ulsad.attention_trace`; both maps share one colour range). Panels: the image
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
        viz.add_image(fig, image, mask=mask, row=1, col=1)
        # Both attention maps share one colour range, so heights compare as well as patterns.
        log_scale = self.log_scale.value
        both = torch.stack([found["self_attention"], found["cross_attention"]])
        low, top = (float(both.min()) if log_scale else 0.0), float(both.max())
        for c, name in ((2, "self_attention"), (3, "cross_attention")):
            trace = attention_trace(found[name], self.image_hw, log_scale, zmin=low, zmax=top, showscale=(c == 3))
            add_overlay_panel(fig, image, trace, None, row=1, col=c)
        global_map = viz.to_numpy(found["global_map"])[::4, ::4]
        height, width = self.image_hw
        zmax = max(0.1, float(viz.to_numpy(self._global_maps).max()))
        add_overlay_panel(fig, image, viz.map_trace(global_map, "global score", opacity=0.65, zmin=0.0, zmax=zmax,
                                                     showscale=False, dx=width / global_map.shape[1],
                                                     dy=height / global_map.shape[0]), mask, row=1, col=4)
        for c in range(1, 5):
            fig.add_trace(query_marker(y, x), row=1, col=c)
        fig.update_traces(zsmooth="best", selector=dict(type="heatmap", name="global score"))
        viz._image_axes(fig)
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
        # browser ran it (see iadtutor.widgets).
        bundle = self.figure._repr_mimebundle_()
        self.output.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)

    def _ipython_display_(self):
        display(self.app)
