"""Interactive apps for the notebooks (ipywidgets controls around plotly figures).

Each app keeps its figure in :attr:`figure` (a ``plotly.graph_objects.Figure``) and draws it into an
``ipywidgets.Output`` below its controls. Displaying an app shows controls + output; the output already
holds the default figure when the app is created, so a notebook run without a live kernel (papermill,
nbval, the website) still shows a real figure. In JupyterLab every control redraws the figure.

>>> explorer = WindowExplorer(train_images, test_images, test_masks, train_emb, test_emb)   # doctest: +SKIP
>>> explorer            # the app                                                           # doctest: +SKIP
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
from .knn import LocalWindowNN, anomaly_maps, window_offsets
from .patches import cells_to_pixels, offset_of, patch_pixels, window_cells, window_distances

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
        viz.add_image(fig, self.test_images[test_index], mask=mask, row=1, col=1)
        viz.add_image(fig, mask.float(), row=1, col=2, image_name="ground truth")
        amap = found["anomaly_map"]
        viz.add_image(fig, self.test_images[test_index], overlay=amap, mask=mask, row=1, col=3, opacity=0.6,
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
            fig.add_shape(**viz.box_shape(*patch, colour=SELECTED_COLOUR), row=1, col=c)
        fig.add_shape(**viz.box_shape(*window_box, colour=WINDOW_COLOUR, dash="dash"), row=1, col=1)

        for position, train_index in enumerate(shown, start=1):
            viz.add_image(fig, self.train_images[train_index], row=2, col=position)
            fig.add_shape(**viz.box_shape(*window_box, colour=WINDOW_COLOUR, dash="dash"), row=2, col=position)
            flat = int(torch.argmin(found["per_offset"][train_index]))
            dy, dx = offsets[flat // len(offsets)], offsets[flat % len(offsets)]
            colour = MATCH_COLOUR if train_index == best else "white"
            fig.add_shape(**viz.box_shape(*patch_pixels(row + dy, col + dx, self.grid_hw, self.image_hw),
                                          colour=colour), row=2, col=position)
        viz._image_axes(fig)
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
        bundle = self.figure._repr_mimebundle_()  # the notebook renderer's mime types (see viz.setup_notebook)
        self.output.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)

    def _ipython_display_(self):
        display(self.app)
