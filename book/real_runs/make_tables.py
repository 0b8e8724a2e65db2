#!/usr/bin/env python
"""Collect the real-data sweeps into ``book/real_runs/results.csv`` and the tables + figure of the results page.

    python book/real_runs/make_tables.py [--runs runs/real]

Reads ``RUNS/*/results.csv`` (one per grid file of this folder, written by ``iadtutor reproduce``), keeps
the finished runs, and writes (atomically):

* ``book/real_runs/results.csv``  one row per run: dataset, category, method and its setting, metrics with
  their bootstrap 95 % intervals, fit and score seconds, the wall-clock seconds of the whole run;
* ``book/real_runs/comparison.csv``  our numbers beside the papers' (``iadtutor.tools.runs.compare_with_papers``);
* ``book/real_runs/tables.md``  the markdown tables and one plotly figure that ``book/real_results.md``
  includes. The figure calls ``Plotly.newPlot`` on the book's own plotly.js (``include_plotlyjs=False``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from iadtutor.files import write_text_atomic
from iadtutor.tools.runs import compare_with_papers

HERE = Path(__file__).resolve().parent
CATEGORIES = [("mvtec_ad", "bottle"), ("mvtec_ad", "grid"), ("kolektor", "kolektorsdd"), ("wood_real", "wood")]
TITLES = {("mvtec_ad", "bottle"): "MVTec AD bottle", ("mvtec_ad", "grid"): "MVTec AD grid (21 normals held out)",
          ("kolektor", "kolektorsdd"): "KolektorSDD", ("wood_real", "wood"): "real wood (not MVTec AD's)"}
METHOD_ORDER = ["spade", "lwinnn (window=3)", "lwinnn (window=5)", "lwinnn (window=7)", "patchcore", "knn",
                "ldknn", "ulsad", "reb"]
COLUMNS = ["dataset", "category", "method", "setting", "backbone", "taps", "image_size", "n_train", "n_test",
           "image_auroc", "image_auroc_ci_low", "image_auroc_ci_high", "pixel_auroc", "pixel_auroc_ci_low",
           "pixel_auroc_ci_high", "aupro", "train_seconds", "test_seconds_per_image", "seconds", "run_id"]


def setting_of(row) -> str:
    method = row["method"]
    if method == "lwinnn":
        return f"lwinnn (window={int(row['param_window'])})"
    return method


def load(runs_root: Path) -> pd.DataFrame:
    tables = [pd.read_csv(path) for path in sorted(runs_root.glob("*/results.csv"))]
    if not tables:
        raise SystemExit(f"No results.csv under {runs_root}: run the sweeps of {HERE} first.")
    results = pd.concat(tables, ignore_index=True)
    results = results[results["status"] == "ok"].copy()
    results["setting"] = results.apply(setting_of, axis=1)
    # Backbone taps embedded (0, 1, 2 = strides 4, 8, 16), as each run's result.json records them: `iadtutor
    # evaluate --layers auto` gives KNN and LDKNN REB's phi_2 + phi_3, notebook 06 uses the same for REB.
    results["taps"] = results["method"].map({"knn": "1,2", "ldknn": "1,2", "reb": "1,2", "ulsad": "ULSAD's own"}
                                            ).fillna("0,1,2")
    if "backbone" not in results:
        results["backbone"] = "efficientnet_lite0"
    results["backbone"] = results["backbone"].fillna("efficientnet_lite0")
    if "image_size" not in results or results["image_size"].isna().any():
        results["image_size"] = results.get("image_size", pd.Series(index=results.index)).fillna(
            results.get("param_image_size"))
    return results


def pct(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def with_ci(row, metric) -> str:
    text = pct(row.get(metric))
    low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    if text and isinstance(low, float) and not math.isnan(low):
        text += f" [{pct(low)}, {pct(high)}]"
    return text


def seconds(value, digits=0) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def ordered(part: pd.DataFrame) -> pd.DataFrame:
    rank = {name: i for i, name in enumerate(METHOD_ORDER)}
    return part.sort_values("setting", key=lambda s: s.map(lambda v: rank.get(v, 99)), kind="stable")


def category_table(part: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "method": part["setting"],
        "image AUROC % [95 % CI]": part.apply(lambda r: with_ci(r, "image_auroc"), axis=1),
        "pixel AUROC % [95 % CI]": part.apply(lambda r: with_ci(r, "pixel_auroc"), axis=1),
        "AUPRO %": part["aupro"].map(pct),
        "fit s": part["train_seconds"].map(seconds),
        "score s / image": part["test_seconds_per_image"].map(lambda v: seconds(v, 2)),
        "whole run s": part["seconds"].map(seconds),
    })


def papers_table(comparison: pd.DataFrame) -> pd.DataFrame:
    metric_titles = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "aupro": "AUPRO"}
    rows = comparison[comparison["level"] == "category"]
    # ResNet18 rows (the papers' main backbone), ULSAD's baselines (backbone not stated) and ULSAD itself (WR50)
    keep = (rows["paper_backbone"].fillna("") != "wide_resnet50_2") | (rows["method"] == "ulsad")
    rows = rows[keep]
    return pd.DataFrame({
        "category": rows["category"],
        "method": rows["config"],
        "metric": rows["metric"].map(metric_titles),
        "ours % (EfficientNet-Lite0)": rows["ours"].map(lambda v: f"{v:.1f}"),
        "paper %": rows["paper"].map(lambda v: f"{v:.1f}"),
        "ours − paper": rows["difference"].map(lambda v: f"{v:+.1f}"),
        "paper in our 95 % CI": rows["paper_in_ci"].map(lambda v: "" if v is None or v != v else
                                                        ("yes" if v else "no")),
        "paper's source, backbone": rows["source"] + " " + rows["table"] + ", " + rows["paper_backbone"].fillna(
            "not stated").replace("", "not stated") + rows["paper_variant"].fillna("").map(
            lambda v: f", {v}" if v else ""),
    })


def group_table(results: pd.DataFrame) -> pd.DataFrame:
    """LWinNN's table 2 prints MVTec AD only as group averages (ResNet18): put our single category of each
    group beside them (grid is one of 5 textures, bottle one of 10 objects), for the methods it reproduces."""
    from iadtutor.tools.papers import paper_results

    papers = paper_results().query("source == 'LWinNN' and dataset == 'mvtec_ad' and level == 'group'")
    rows = []
    for category, group in (("bottle", "objects"), ("grid", "textures")):
        for setting, method in (("spade", "spade"), ("lwinnn (window=7)", "lwinnn"), ("patchcore", "patchcore")):
            ours = results[(results["dataset"] == "mvtec_ad") & (results["category"] == category)
                           & (results["setting"] == setting)]
            theirs = papers[(papers["category"] == group) & (papers["method"] == method)].set_index("metric")
            if ours.empty or theirs.empty:
                continue
            row = ours.iloc[0]
            rows.append({"our category": category, "paper's group": group, "method": setting,
                         "image AUROC %: ours": pct(row["image_auroc"]),
                         "paper (group mean)": f"{theirs.loc['image_auroc', 'value']:.1f}",
                         "AUPRO %: ours": pct(row["aupro"]),
                         "paper (group mean) ": f"{theirs.loc['aupro', 'value']:.1f}"})
    return pd.DataFrame(rows)


def figure_html(results: pd.DataFrame) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=("image AUROC", "pixel AUROC"), shared_yaxes=False)
    import plotly.express as px

    labels = ["bottle", "grid", "KolektorSDD", "wood"]
    colours = dict(zip(METHOD_ORDER, px.colors.qualitative.Plotly))  # one colour per method, both panels
    for setting in [s for s in METHOD_ORDER if s in set(results["setting"])]:
        part = results[results["setting"] == setting].set_index(["dataset", "category"])
        for column, metric in enumerate(("image_auroc", "pixel_auroc"), start=1):
            values, plus, minus = [], [], []
            for key in CATEGORIES:
                row = part.loc[key] if key in part.index else None
                value = None if row is None else row.get(metric)
                low = None if row is None else row.get(f"{metric}_ci_low")
                high = None if row is None else row.get(f"{metric}_ci_high")
                values.append(None if value is None or value != value else 100 * value)
                ok = low is not None and low == low
                plus.append(100 * (high - value) if ok else 0)
                minus.append(100 * (value - low) if ok else 0)
            figure.add_trace(go.Bar(name=setting, x=labels, y=values, legendgroup=setting, showlegend=column == 1,
                                    marker_color=colours[setting],
                                    error_y=dict(type="data", array=plus, arrayminus=minus, thickness=1)),
                             row=1, col=column)
    figure.update_yaxes(range=[30, 100.5], title_text="% (bootstrap 95 % interval)", row=1, col=1)
    figure.update_yaxes(range=[30, 100.5], row=1, col=2)
    figure.update_xaxes(tickangle=0)
    figure.update_layout(barmode="group", height=460, margin=dict(l=60, r=20, t=40, b=40),
                         legend=dict(orientation="h", y=-0.15), template="plotly_white")
    return figure.to_html(include_plotlyjs=False, full_html=False, div_id="real-results-figure",
                          config={"displaylogo": False})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/real"), help="folder holding one sweep per grid")
    args = parser.parse_args(argv)
    results = load(args.runs)
    kept = ordered(results)
    write_text_atomic(HERE / "results.csv", kept[[c for c in COLUMNS if c in kept]].to_csv(index=False))
    comparison = compare_with_papers(results)
    write_text_atomic(HERE / "comparison.csv", comparison.to_csv(index=False))

    parts = []
    for key in CATEGORIES:
        part = ordered(results[(results["dataset"] == key[0]) & (results["category"] == key[1])])
        if part.empty:
            continue
        n_train, n_test = int(part["n_train"].dropna().max()), int(part["n_test"].dropna().max())
        parts.append(f"### {TITLES[key]}\n\n{n_train} training images, {n_test} test images.\n\n"
                     + markdown(category_table(part)))
    per_category = papers_table(comparison) if not comparison.empty else pd.DataFrame()
    if not per_category.empty:
        parts.append("### Beside the papers: the same category\n\nREB table 2 (image AUROC per MVTec AD category, "
                     "ResNet18 rows; its Wide-ResNet50-2 rows are in `comparison.csv`) and ULSAD tables 7-9 (per "
                     "category; ULSAD ran its baselines through anomalib and does not state their backbone). Our "
                     "numbers all use EfficientNet-Lite0, and our REB used 30 training images.\n\n"
                     + markdown(per_category))
    groups = group_table(results)
    if not groups.empty:
        parts.append("### Beside the papers: group averages\n\nLWinNN table 2 prints MVTec AD only as means over "
                     "its 5 textures and 10 objects (ResNet18, δ = 7, PatchCore with a 1 % coreset); one category "
                     "is not its group's mean, so read these as orientation only.\n\n" + markdown(groups))
    parts.append("### Figure\n\n```{raw} html\n" + figure_html(results) + "\n```\n")
    write_text_atomic(HERE / "tables.md", "<!-- written by book/real_runs/make_tables.py; do not edit -->\n\n"
                      + "\n".join(parts))
    print(f"{len(results)} runs -> {HERE / 'results.csv'}, {HERE / 'tables.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
