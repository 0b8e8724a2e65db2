"""Figures of the translation stress study (notebook 08): a metric against one pose knob of the toy factory."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from iadtutor.metrics import METRIC_TITLES

KNOBS = {"translation": "translation jitter (fraction of the image side)", "rotation": "rotation jitter (degrees)"}
_COLOURS = {"spade": "#d62728", "global": "#1f77b4", "patchcore": "#17becf", "ldknn": "#9467bd"}
_WINDOW_GREENS = ("#98df8a", "#2ca02c", "#17622a", "#0b3d17")


def knob_figure(table: pd.DataFrame, knob: str = "translation", metric: str = "image_auroc",
                title: str | None = None, height: int = 400) -> go.Figure:
    """``metric`` against one pose ``knob`` (the other held at 0), a line per method / δ: fixed position red, local
    windows green (darker = larger δ), global blue, chance dotted (notebook 08). With several toy seeds a point is
    their mean and its bar spans their lowest to highest value."""
    if knob not in KNOBS:
        raise ValueError(f"knob must be one of {', '.join(KNOBS)}; got {knob!r}.")
    other = "rotation" if knob == "translation" else "translation"
    part = table[(table[other] == 0) & (table["status"] == "ok")].sort_values(knob, kind="stable")
    if part.empty:
        raise ValueError(f"the table has no finished runs with {other} = 0 to plot against {knob}.")
    windows = sorted(part.loc[part["method"] == "lwinnn", "window"].dropna().unique())
    fig = go.Figure()
    labels = list(dict.fromkeys(part["label"]))
    # SPADE last, so that its dashed line stays visible on top of LWinNN δ=1 (the same numbers)
    for rank, label in sorted(enumerate(labels), key=lambda item: part.loc[part["label"] == item[1], "method"]
                              .iloc[0] == "spade"):
        rows = part[part["label"] == label]
        method = rows["method"].iloc[0]
        colour = (_WINDOW_GREENS[min(windows.index(rows["window"].iloc[0]), len(_WINDOW_GREENS) - 1)]
                  if method == "lwinnn" else _COLOURS.get(method, "#7f7f7f"))
        spread = rows.groupby(knob)[metric].agg(["mean", "min", "max"])  # over the toy seeds, if several
        bars = None if rows.groupby(knob).size().max() == 1 else dict(
            type="data", symmetric=False, array=(spread["max"] - spread["mean"]).round(4).tolist(),
            arrayminus=(spread["mean"] - spread["min"]).round(4).tolist(), thickness=1.2)
        fig.add_trace(go.Scatter(x=spread.index.tolist(), y=spread["mean"].round(4).tolist(), name=label,
                                 mode="lines+markers", legendrank=rank + 1, error_y=bars,
                                 line=dict(color=colour, dash="dash" if method == "spade" else "solid", width=2.5)))
    fig.add_hline(y=0.5, line=dict(color="#999", dash="dot", width=1), annotation_text="chance",
                  annotation_position="bottom right")
    fig.update_layout(title=title or f"{METRIC_TITLES.get(metric, metric)} vs {knob}", height=height,
                      xaxis_title=KNOBS[knob], yaxis_title=METRIC_TITLES.get(metric, metric),
                      yaxis_range=[0.3, 1.02], hovermode="x unified", legend_title_text="search",
                      margin=dict(l=60, r=20, t=50, b=50))
    return fig.update_xaxes(tickvals=sorted(part[knob].unique()))

