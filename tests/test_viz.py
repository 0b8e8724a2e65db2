"""The plotly layer: the renderer contract (plotly JSON, then a PNG from ``clean``), and what each figure function
puts in a figure."""

import base64
import io
import json

import numpy as np
import pandas as pd
import plotly.io as pio
import pytest
import torch
from PIL import Image

from iadtutor.viz import core as viz


@pytest.fixture(autouse=True)
def course_renderer():
    previous = pio.renderers.default
    viz.setup_notebook(seed=None)
    yield
    pio.renderers.default = previous


def small_image(seed=0, size=16):
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))


def decode_png(uri, kind="png"):
    assert uri.startswith(f"data:image/{kind};base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


# ------------------------------------------------------------------------------------------ renderer
def test_setup_notebook_selects_a_renderer_giving_the_plotly_json_only():
    assert pio.renderers.default == viz.RENDERER_NAME and pio.templates.default == viz.TEMPLATE
    fig = viz.line_plot([0, 1, 2], {"a": [1.0, 2.0, 3.0]})
    bundle = fig._repr_mimebundle_()  # what Jupyter calls to display a figure
    assert set(bundle) == {viz.PLOTLY_MIME_TYPE}  # the PNG comes from `clean`, the HTML from the book
    assert bundle[viz.PLOTLY_MIME_TYPE]["data"][0]["y"] == [1.0, 2.0, 3.0]
    assert bundle[viz.PLOTLY_MIME_TYPE]["config"]["displaylogo"] is False  # the book's HTML keeps the config


@pytest.mark.browser
def test_clean_adds_a_png_of_the_figure_size_to_a_rendered_figure(tmp_path, monkeypatch):
    """``make execute``: the renderer's output, then ``tools.notebooks clean`` (kaleido in a real Chromium)."""
    import nbformat
    from conftest import chromium_executable

    from iadtutor.tools import notebooks

    monkeypatch.setenv("IADTUTOR_CHROMIUM", chromium_executable())
    fig = viz.image_figure(small_image(), overlay=np.ones((16, 16)))
    fig.update_layout(height=240)
    cell = nbformat.v4.new_code_cell("fig", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("execute_result", data=fig._repr_mimebundle_(), execution_count=1)]
    path = tmp_path / "02_made_up.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    notebooks.clean_file(path)
    (data,) = notebooks.plotly_outputs(nbformat.read(path, as_version=4))
    assert set(data) == {viz.PLOTLY_MIME_TYPE, "image/png"}
    png = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
    assert png.format == "PNG" and png.size == (notebooks.PNG_SIZE[0], 240)
    assert len(np.unique(np.asarray(png.convert("RGB")).reshape(-1, 3), axis=0)) > 10  # drawn, not blank
    text = path.read_text()
    notebooks.clean_file(path)
    assert path.read_text() == text  # idempotent


# -------------------------------------------------------------------------------------------- inputs
def test_to_rgb_uint8_accepts_the_usual_layouts():
    chw = small_image()
    expected = np.clip(np.round(chw.permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(viz.to_rgb_uint8(chw), expected)
    np.testing.assert_array_equal(viz.to_rgb_uint8(expected), expected)
    grey = viz.to_rgb_uint8(np.full((4, 5), 0.5))
    assert grey.shape == (4, 5, 3) and (grey == 128).all()
    with pytest.raises(ValueError, match="image must have shape"):
        viz.to_rgb_uint8(np.zeros((2, 4, 4, 3)))


def test_png_image_trace_round_trips_the_pixels():
    rgb = viz.to_rgb_uint8(small_image(1))
    np.testing.assert_array_equal(decode_png(viz.image_trace(rgb, format="png").source), rgb)


def test_jpeg_image_trace_is_close_to_the_pixels():
    ramp = np.linspace(0, 1, 64)
    image = np.stack([np.add.outer(ramp, ramp) / 2, np.outer(ramp, ramp), np.full((64, 64), 0.3)])
    rgb = viz.to_rgb_uint8(image)
    jpeg, png = viz.image_trace(image).source, viz.image_trace(image, format="png").source  # JPEG by default
    assert np.abs(decode_png(jpeg, "jpeg").astype(int) - rgb).mean() < 2
    np.testing.assert_array_equal(decode_png(png), rgb)
    with pytest.raises(ValueError, match="format must be"):
        viz.image_trace(image, format="gif")


def test_downsample_map_averages_blocks():
    values = np.arange(30.0).reshape(5, 6)
    small, factor = viz.downsample_map(values, max_side=3)
    assert factor == 2 and small.shape == (3, 3)
    assert small[0, 0] == values[:2, :2].mean() and small[2, 2] == values[4, 4:6].mean()  # partial last block
    same, factor = viz.downsample_map(values, max_side=6)
    assert factor == 1 and same is values


# ------------------------------------------------------------------------------------------- figures
def test_overlay_figure_has_image_heatmap_with_the_values_and_mask_outline():
    image = small_image()
    overlay = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    mask = np.zeros((16, 16), bool)
    mask[3:7, 4:9] = True
    fig = viz.image_figure(image, overlay=overlay, mask=mask, title="x")
    assert [trace.type for trace in fig.data] == ["image", "heatmap", "contour"]
    assert decode_png(fig.data[0].source, "jpeg").shape == (16, 16, 3)
    np.testing.assert_array_equal(np.asarray(fig.data[1].z), overlay)
    assert "%{z" in fig.data[1].hovertemplate  # hover shows the value
    # the outline is stored as the mask's bounding box with a border of zeros, placed at its pixels
    contour = fig.data[2]
    assert (contour.x0, contour.y0, contour.dx, contour.dy) == (3, 2, 1, 1)
    np.testing.assert_array_equal(np.asarray(contour.z), np.pad(mask[3:7, 4:9], 1).astype(np.uint8))
    assert contour.contours.start == 0.5 == contour.contours.end
    assert fig.layout.yaxis.autorange == "reversed"  # image rows go down


def test_mask_outline_reaches_the_image_border():
    mask = np.zeros((8, 8), bool)
    mask[0:3, 5:8] = True
    trace = viz.mask_trace(mask)
    z = np.asarray(trace.z)
    assert (trace.x0, trace.y0) == (4, -1) and z.shape == (5, 5) and z[1:4, 1:4].all() and z.sum() == 9


def test_large_overlays_are_shown_block_averaged():
    image = torch.rand(3, 64, 64)
    overlay = np.random.default_rng(1).random((64, 64))
    heatmap = viz.image_figure(image, overlay=overlay).data[1]
    assert np.asarray(heatmap.z).shape == (64, 64)
    fig = viz.go.Figure()
    viz.add_image(fig, image, overlay=overlay, max_overlay_side=32)
    small = fig.data[1]
    assert np.asarray(small.z).shape == (32, 32) and small.dx == 2 and small.x0 == 0.5
    assert np.asarray(small.z)[0, 0] == pytest.approx(overlay[:2, :2].mean(), rel=1e-6)


def test_coarse_overlay_is_stretched_over_the_image():
    fig = viz.image_figure(small_image(), overlay=np.arange(16.0).reshape(4, 4))
    heatmap = fig.data[1]
    assert heatmap.dx == 4 and heatmap.dy == 4
    assert heatmap.x0 == 1.5  # centre of the first 4-pixel cell, pixels 0..3
    # the last cell's right edge is the image's right edge (pixel 15 ends at 15.5)
    assert heatmap.x0 + 3 * heatmap.dx + heatmap.dx / 2 == 15.5


def test_empty_mask_draws_no_outline_and_wrong_mask_shape_is_refused():
    fig = viz.image_figure(small_image(), mask=np.zeros((16, 16), bool))
    assert [trace.type for trace in fig.data] == ["image"]
    with pytest.raises(ValueError, match="mask has shape"):
        viz.image_figure(small_image(), mask=np.zeros((8, 8), bool))


def test_image_grid_places_each_image_and_shares_the_overlay_scale():
    images = torch.stack([small_image(i) for i in range(5)])
    overlays = [np.full((16, 16), float(i)) for i in range(5)]
    masks = [np.eye(16, dtype=bool)] * 5
    boxes = [[(0.5, 3.5, 0.5, 3.5)], None, [], [(1, 2, 3, 4), (5, 6, 7, 8)], None]
    fig = viz.image_grid(images, titles=list("abcde"), cols=3, masks=masks, overlays=overlays, boxes=boxes)
    assert [(s.xref, s.x0, s.x1, s.y0, s.y1) for s in fig.layout.shapes] == [
        ("x", 0.5, 3.5, 0.5, 3.5), ("x4", 1, 2, 3, 4), ("x4", 5, 6, 7, 8)]
    kinds = [trace.type for trace in fig.data]
    assert kinds.count("image") == 5 and kinds.count("heatmap") == 5 and kinds.count("contour") == 5
    heatmaps = [trace for trace in fig.data if trace.type == "heatmap"]
    assert np.asarray(heatmaps[0].z).shape == (16, 16)  # small enough to keep
    coarse = viz.image_grid(images[:1], overlays=overlays[:1], max_overlay_side=8).data[1]
    assert np.asarray(coarse.z).shape == (8, 8) and coarse.dx == 2
    assert {(h.zmin, h.zmax) for h in heatmaps} == {(0.0, 4.0)}
    assert sum(bool(h.showscale) for h in heatmaps) == 1
    images_axes = [trace.xaxis for trace in fig.data if trace.type == "image"]
    assert images_axes == ["x", "x2", "x3", "x4", "x5"]
    assert [a.text for a in fig.layout.annotations] == list("abcde")
    with pytest.raises(ValueError, match="titles has 2 entries"):
        viz.image_grid(images, titles=["a", "b"])


def test_heatmap_grid_values_and_scales():
    maps = [np.arange(6.0).reshape(2, 3), -np.ones((2, 3))]
    separate = viz.heatmap_grid(maps, titles=["a", "b"])
    np.testing.assert_array_equal(np.asarray(separate.data[0].z), maps[0])
    assert separate.data[0].zmin is None
    shared = viz.heatmap_grid(maps, shared_scale=True)
    assert (shared.data[0].zmin, shared.data[0].zmax) == (-1.0, 5.0) == (shared.data[1].zmin, shared.data[1].zmax)


def test_line_and_bar_plots():
    fig = viz.line_plot([1, 3, 5], {"image AUROC": [0.5, 0.7, 0.9], "AUPRO": np.array([0.1, 0.2, 0.3])})
    assert [t.name for t in fig.data] == ["image AUROC", "AUPRO"]
    assert list(fig.data[1].y) == [0.1, 0.2, 0.3] and list(fig.data[0].x) == [1, 3, 5]
    bars = viz.bar_plot(["on", "off"], {"image AUROC": [0.9, 0.8], "AUPRO": [0.7, 0.6]}, yrange=(0, 1))
    assert [t.type for t in bars.data] == ["bar", "bar"] and bars.layout.barmode == "group"
    assert list(bars.data[0].x) == ["on", "off"] and list(bars.data[1].y) == [0.7, 0.6]
    with pytest.raises(ValueError, match="has 1 values"):
        viz.line_plot([1, 2], {"a": [1.0]})


def test_results_table_writes_intervals_into_their_metric():
    table = viz.results_table([{"m": "a", "auroc": 0.81234, "auroc_ci": [0.7, 0.91], "n": 1},
                               {"m": "b", "auroc": 0.5, "auroc_ci": None, "n": 2}], index="m")
    assert list(table.columns) == ["auroc", "n"]
    assert list(table["auroc"]) == ["0.812 [0.700, 0.910]", "0.500"]
    assert viz.with_interval(0.5, (float("nan"), 0.6), digits=2) == "0.50"


def test_interval_table_pivots_values_with_their_intervals():
    long = pd.DataFrame({"t": [0.2, 0.2, 0.0, 0.0], "m": ["b", "a", "b", "a"], "auroc": [0.5, 0.61234, 0.9, 0.8],
                         "auroc_ci": [(0.4, 0.6), (0.5, 0.7), (0.8, 1.0), None]})
    wide = viz.interval_table(long, "t", "m", "auroc")
    assert list(wide.index) == [0.2, 0.0] and list(wide.columns) == ["b", "a"]
    assert wide.loc[0.2, "a"] == "0.612 [0.500, 0.700]" and wide.loc[0.0, "a"] == "0.800"
    assert viz.interval_table(long.drop(columns="auroc_ci"), "t", "m", "auroc").loc[0.2, "a"] == 0.612


def test_results_table_rounds_floats_only():
    table = viz.results_table([{"name": "a", "auroc": 0.123456, "n": 3}, {"name": "b", "auroc": 0.98765, "n": 4}],
                              index="name")
    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "auroc"] == 0.123 and table.loc["b", "auroc"] == 0.988 and table.loc["b", "n"] == 4
    two_levels = viz.results_table([{"a": "x", "b": "y", "v": 1.0}], index=["a", "b"])
    assert two_levels.loc[("x", "y"), "v"] == 1.0
    with pytest.raises(ValueError, match=r"missing \['c'\]"):
        viz.results_table([{"a": 1}], index=["a", "c"])
    frame = pd.DataFrame({"x": [1.23456]})
    assert viz.results_table(frame, digits=1)["x"][0] == 1.2 and frame["x"][0] == 1.23456  # input untouched


def test_pick_examples():
    kinds = ["hole", "good", "good", "scratch", "hole", "crack", "scratch"]
    assert viz.pick_examples(kinds) == [1, 0, 3, 5]
    assert viz.pick_examples(kinds, per_type=2) == [1, 2, 0, 4, 3, 6, 5]
    assert viz.pick_examples(kinds, max_types=1) == [1, 0]
    assert viz.pick_examples(["a", "b"], normal=None) == [0, 1]


def test_strongest_channels_by_spatial_spread():
    rng = np.random.default_rng(0)
    feature_map = rng.normal(size=(6, 5, 5)) * np.array([1, 5, 0, 3, 2, 4])[:, None, None]
    expected = sorted(range(6), key=lambda c: -feature_map[c].std())[:3]
    assert viz.strongest_channels(torch.from_numpy(feature_map), k=3) == expected == [1, 5, 3]


def test_figures_serialise_to_json():
    fig = viz.image_grid([small_image()], overlays=[np.ones((16, 16))])
    assert json.loads(pio.to_json(fig))["data"][0]["type"] == "image"


def test_category_summary_counts_from_the_samples():
    from pathlib import Path

    from iadtutor.data import CategorySplits, Sample

    def sample(kind):
        return Sample(Path(f"{kind}.png"), int(kind != "good"), kind, ())

    splits = CategorySplits(Path("root"), "cat", "mvtec_ad", [sample("good")] * 3,
                            [sample("good"), sample("hole"), sample("crack"), sample("hole")])
    assert viz.category_summary(splits) == {"category": "cat", "layout": "mvtec_ad", "train": 3, "validation": 0,
                                            "test good": 1, "test defective": 3, "defect types": "hole, crack"}


def test_setup_notebook_fixes_the_cpu_threads_and_reports_them():
    previous = torch.get_num_threads()
    try:
        assert viz.setup_notebook(seed=None, threads=1) == 1 == torch.get_num_threads()
        assert viz.setup_notebook(seed=None) == 1  # None leaves the count alone
        for bad in (0, True, 1.5):
            with pytest.raises(ValueError, match="positive integer"):
                viz.setup_notebook(seed=None, threads=bad)
    finally:
        torch.set_num_threads(previous)


def test_value_range_is_the_percentiles_of_all_values():
    maps = [np.arange(10.0).reshape(2, 5), torch.tensor([[-1.0, 100.0]])]
    assert viz.value_range(maps) == (-1.0, 100.0)
    everything = np.array([*range(10), -1, 100], dtype=float)
    assert viz.value_range(maps, 10, 90) == (np.percentile(everything, 10), np.percentile(everything, 90))


def test_thinned_image_keeps_the_original_pixel_coordinates():
    image, mask = small_image(size=16), np.zeros((16, 16), bool)
    mask[4:8, 6:10] = True
    fig = viz.add_image(viz.go.Figure(), image, overlay=np.ones((4, 4)), mask=mask, step=2)
    picture, heatmap, outline = fig.data
    assert decode_png(picture.source, "jpeg").shape == (8, 8, 3)
    assert (picture.x0, picture.dx) == (0.5, 2)  # thinned pixel j covers pixels 2j, 2j + 1: centre 2j + 0.5
    assert (heatmap.x0, heatmap.dx) == (1.5, 4)  # a 4 x 4 map over 16 pixels, as without thinning
    # the thinned mask's rows 2..3 / columns 3..4, one pixel of border: starts at thinned (1, 2)
    assert (outline.x0, outline.y0, outline.dx) == (2 * 2 + 0.5, 1 * 2 + 0.5, 2)


def test_figure_app_draws_the_default_and_redraws_on_change():
    import ipywidgets as widgets

    calls = []

    def draw(index, alpha):
        calls.append((index, alpha))
        return viz.go.Figure(viz.go.Scatter(x=[index], y=[alpha]))

    app = viz.FigureApp(draw, {"index": widgets.Dropdown(options=[0, 1], value=0),
                               "alpha": widgets.FloatSlider(value=1.0, min=0, max=2)},
                        describe=lambda index, alpha: f"α = {alpha}")
    assert calls == [(0, 1.0)] and len(app.output.outputs) == 1  # the default figure is already there
    data = app.output.outputs[0]["data"]
    assert data[viz.PLOTLY_MIME_TYPE]["data"][0]["y"] == [1.0] and set(data) == {viz.PLOTLY_MIME_TYPE}
    assert app.status.value == "<code>α = 1.0</code>" and app.status in app.app.children
    app.controls["alpha"].value = 0.5
    assert calls[-1] == (0, 0.5) and list(app.figure.data[0].y) == [0.5] and len(app.output.outputs) == 1
    assert app.output.outputs[0]["data"][viz.PLOTLY_MIME_TYPE]["data"][0]["y"] == [0.5]
    assert app.status.value == "<code>α = 0.5</code>"
    plain = viz.FigureApp(lambda index: draw(index, 0.0), {"index": widgets.Dropdown(options=[0, 1], value=1)})
    assert [type(w).__name__ for w in plain.app.children] == ["HBox", "Output"]  # no description line
    with pytest.raises(ValueError, match="at least one control"):
        viz.FigureApp(draw, {})


def test_knob_figure_one_line_per_search_and_spade_drawn_last():
    from iadtutor.viz import study

    rows = [("spade", None, "SPADE"), ("lwinnn", 1, "LWinNN δ=1"), ("lwinnn", 5, "LWinNN δ=5"),
            ("patchcore", None, "PatchCore")]
    table = pd.DataFrame([{"method": m, "window": w, "label": label, "translation": t, "rotation": r, "status": "ok",
                           "image_auroc": 0.9 - t - r / 100 + i / 100}
                          for i, (m, w, label) in enumerate(rows) for t, r in ((0.0, 0), (0.1, 0), (0.0, 10))])
    fig = study.knob_figure(table, "translation")
    assert [t.name for t in fig.data] == ["LWinNN δ=1", "LWinNN δ=5", "PatchCore", "SPADE"]
    assert [t.legendrank for t in fig.data] == [2, 3, 4, 1]  # the legend keeps the table's order
    assert list(fig.data[3].x) == [0.0, 0.1] and list(fig.data[3].y) == [0.9, 0.8]
    assert fig.data[3].line.dash == "dash" and fig.data[0].line.color != fig.data[1].line.color
    rotation = study.knob_figure(table, "rotation")
    assert list(rotation.data[0].x) == [0, 10] and list(rotation.data[0].y) == pytest.approx([0.91, 0.81])
    assert fig.data[0].error_y.array is None  # one seed: no bars
    seeds = pd.concat([table.assign(seed=0), table.assign(seed=1, image_auroc=table["image_auroc"] - 0.2)])
    spread = study.knob_figure(seeds, "translation").data[3]  # SPADE: the mean of 0.9 and 0.7, bars to both
    assert list(spread.y) == pytest.approx([0.8, 0.7])
    assert list(spread.error_y.array) == pytest.approx([0.1, 0.1]) and list(spread.error_y.arrayminus) == pytest.approx([0.1, 0.1])
    with pytest.raises(ValueError, match="knob must be"):
        study.knob_figure(table, "scale")
