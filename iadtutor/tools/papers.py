"""The papers' reported numbers, stored as data, and the papers' groupings of categories.

``iadtutor reproduce`` puts our numbers beside these. Every number is transcribed from the text versions of
the three papers (LWinNN, REB, ULSAD; see ``shared/papers/README.md``) as a percentage, exactly as printed.
The tables below are kept as plain text blocks, one printed row per line, so that a reader can hold them
against the paper; :func:`paper_results` turns them into one tidy table::

    >>> from iadtutor.tools.papers import paper_results
    >>> table = paper_results()
    >>> row = table.query("source == 'LWinNN' and category == 'capsules' and method == 'lwinnn'")
    >>> row[["metric", "value"]].to_dict("records")
    [{'metric': 'image_auroc', 'value': 81.0}, {'metric': 'aupro', 'value': 87.5}]

Columns of the tidy table: ``source`` (paper), ``table``, ``dataset``, ``category`` (a category, a group
name such as ``textures``, or ``mean`` for the dataset average), ``level`` (``category`` / ``group`` /
``dataset``), ``method``, ``backbone``, ``variant`` (a setting that tells two rows of one method apart,
e.g. ``K=5``), ``metric``, ``value`` (percent), ``std`` (percent, where printed), ``note``.

Metric names: ``image_auroc`` (detection), ``pixel_auroc``, ``aupro`` (segmentation; LWinNN's
"segmentation" column is AUPRO), ``image_auroc_structural`` / ``image_auroc_logical`` (MVTec LOCO: AUROC on
the good test images plus only the structural, resp. only the logical anomalies) and
``image_auroc_mean_of_kinds`` (REB's LOCO "Total": the mean of its structural and logical columns, not the
mean over categories).

Transcription notes (read before trusting a gap):

* REB table 2 (MVTec AD): the extracted text carries one extra number at the end of each "(Our)" row and of
  the PatchCore Res18 row; it is dropped. The three averages we keep (5 textures, 10 objects, 15 total)
  agree with the per-category numbers (checked in ``tests/test_papers.py``). Rows of other methods
  (FYD, CFLOW, DifferNet, CutPaste, ...) are not kept: their columns do not line up in the extracted text.
* REB table 3 (MVTec LOCO): the extracted header reads "Breakfast Box, Screw Bag, Pushpins, Splicing
  Connectors, Juice Bottle", but in every row the second column is the highest and the fourth the lowest,
  which is the pattern of juice_bottle and screw_bag in every other LOCO table (e.g. ULSAD table 10). We
  therefore read the five columns in alphabetical order (breakfast_box, juice_bottle, pushpins, screw_bag,
  splicing_connectors). Check against the PDF before quoting a single LOCO category from REB.
  The row printed as "(Our) REB" (WR50, last of its block) has no variant label; it sits where
  "REB (Variable K)" sits in the other blocks and is stored with variant ``K=variable?``.
* LWinNN reproduces every method with ResNet18 (its sec. 4.2); its MVTec / VisA numbers are group averages
  (table 2) plus four VisA categories (table 4).
* ULSAD runs its baselines through anomalib with the hyper-parameters of their papers; only ULSAD's own
  backbone (Wide-ResNet50-2) is stated, so the baselines' ``backbone`` is left blank. ULSAD's numbers are
  means over 5 seeds with the printed standard deviation in ``std``.
* REB table 4 (BTAD) compares methods "based on WR50 backbone"; REB there is K=57.
* Printed as is, although the papers' own numbers disagree: ULSAD table 19 gives DFR a VisA mean of 85.18
  while its twelve categories average 93.31; in REB table 4 the means of PaDiM (image 93.7, pixel 97.3) and
  REB (pixel 97.2) are not the means of their three classes (93.1, 97.0, 96.7).
"""

from __future__ import annotations

import functools
import re

import pandas as pd

from iadtutor.metrics import KIND_METRICS  # noqa: F401  (the tables of runs group by it)

DATASET_TITLES = {
    "mvtec_ad": "MVTec AD",
    "mvtec_loco": "MVTec LOCO AD",
    "visa": "VisA",
    "btad": "BTAD",
    "mpdd": "MPDD",
    "toy": "toy factory",
}

DATASET_CATEGORIES = {
    "mvtec_ad": ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill",
                 "screw", "tile", "toothbrush", "transistor", "wood", "zipper"),
    "mvtec_loco": ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors"),
    "visa": ("candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2", "pcb1", "pcb2",
             "pcb3", "pcb4", "pipe_fryum"),
    "btad": ("01", "02", "03"),
    "mpdd": ("bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes"),
    "toy": ("weave", "bracket", "pills", "box"),
}

# The papers' groupings: LWinNN and REB average MVTec AD over textures / objects, LWinNN and VisA's authors
# split VisA into complex structure / multiple instances / single instance. MVTec LOCO is split by anomaly
# kind instead (structural / logical, see KIND_METRICS). The toy factory gets one group per teaching idea.
CATEGORY_GROUPS = {
    "mvtec_ad": {
        "textures": ("carpet", "grid", "leather", "tile", "wood"),
        "objects": ("bottle", "cable", "capsule", "hazelnut", "metal_nut", "pill", "screw", "toothbrush",
                    "transistor", "zipper"),
    },
    "visa": {
        "complex_structure": ("pcb1", "pcb2", "pcb3", "pcb4"),
        "multiple_instances": ("candle", "capsules", "macaroni1", "macaroni2"),
        "single_instance": ("cashew", "chewinggum", "fryum", "pipe_fryum"),
    },
    "toy": {
        "texture": ("weave",),
        "object": ("bracket",),
        "multi_instance": ("pills",),
        "logical": ("box",),
    },
}

# Optional per-kind metrics an evaluate result may carry (LOCO and the toy "box"): AUROC over the good test
# images plus only the anomalies of that kind.


def group_of(dataset: str, category: str) -> str:
    """The papers' group of ``category`` in ``dataset`` (e.g. ``"textures"``), or ``""`` when it has none."""
    for group, members in CATEGORY_GROUPS.get(dataset, {}).items():
        if category in members:
            return group
    return ""


def level_of(dataset: str, category: str) -> str:
    """``"dataset"`` for ``mean``, ``"group"`` for a group name, otherwise ``"category"``."""
    if category == "mean":
        return "dataset"
    if category in CATEGORY_GROUPS.get(dataset, {}):
        return "group"
    return "category"


# --------------------------------------------------------------------------------------------------------
# The tables. In each block the first line is a header: the key fields of a row, then the labels of the
# value columns. A value is a number, "-" (not reported), "a/b" pairs split into two metrics, or "x ±s".
# A value-column label "metric:category" overrides the table's metric for that column.
# --------------------------------------------------------------------------------------------------------

_LWINNN_T2 = """\
dataset category spade padim patchcore efficientad lwinnn
mvtec_ad objects (86.3/92.9) (85.0/92.2) (96.5/90.8) (98.2/93.9) (98.2/94.6)
mvtec_ad textures (86.8/83.2) (94.8/89.7) (97.2/90.1) (99.6/91.9) (98.3/90.8)
mvtec_ad mean (86.5/89.7) (88.2/91.4) (96.8/90.6) (98.7/93.2) (98.2/93.4)
visa complex_structure (92.9/88.4) (84.1/84.0) (96.1/84.6) (98.7/93.2) (98.0/92.5)
visa multiple_instances (71.5/84.4) (74.0/78.0) (86.4/86.2) (94.8/95.9) (89.4/92.7)
visa single_instance (90.2/77.6) (89.0/83.9) (96.4/85.9) (98.0/88.8) (98.4/89.1)
visa mean (84.9/83.5) (82.4/82.0) (93.0/85.6) (97.2/92.7) (95.3/91.4)
"""

_LWINNN_T4 = """\
category spade padim patchcore efficientad lwinnn
candle (76.9/94.9) (84.8/94.5) (95.3/90.4) (96.3/96.1) (96.0/96.3)
capsules (58.3/76.5) (62.6/56.5) (75.0/77.5) (89.3/92.4) (81.0/87.5)
macaroni1 (83.4/93.0) (81.2/88.3) (94.6/92.4) (98.5/98.5) (97.9/97.6)
macaroni2 (67.6/73.3) (67.2/72.5) (80.8/84.3) (95.0/96.6) (82.6/89.5)
"""

_REB_T2 = """\
method backbone variant pixel_auroc:mean carpet grid leather tile wood bottle cable capsule hazelnut metal_nut pill screw toothbrush transistor zipper textures objects mean
patchcore resnet18 - 97.4 99.4 97.7 100.0 98.9 98.9 100.0 97.7 97.9 100.0 99.6 90.5 98.1 100.0 96.5 97.6 99.0 97.8 98.2
defectmaker resnet18 - 97.7 98.9 99.7 100.0 100.0 99.3 100.0 99.0 95.1 99.3 100.0 97.3 97.5 100.0 95.2 100.0 99.6 98.3 98.7
ldknn resnet18 K=5 97.9 99.5 99.2 100.0 99.8 99.0 100.0 99.8 98.8 100.0 99.8 95.2 97.4 99.4 99.3 99.2 99.5 98.9 99.1
ldknn resnet18 K=variable 98.0 99.6 99.6 100.0 99.9 99.0 100.0 99.9 99.0 100.0 99.9 97.0 98.1 100.0 99.8 99.6 99.6 99.3 99.4
reb resnet18 K=5 98.0 98.9 99.6 100.0 100.0 99.4 100.0 99.5 97.9 99.4 100.0 98.7 98.1 98.9 99.6 100.0 99.6 99.2 99.3
reb resnet18 K=variable 98.0 99.0 99.7 100.0 100.0 99.5 100.0 99.7 98.3 99.5 100.0 99.3 98.3 100.0 99.7 100.0 99.6 99.5 99.5
patchcore wide_resnet50_2 - 98.4 98.4 99.3 100.0 99.8 99.2 100.0 99.5 98.9 100.0 100.0 94.6 97.0 99.7 99.4 99.7 99.4 98.9 99.0
defectmaker wide_resnet50_2 - 98.1 99.8 100.0 100.0 100.0 99.7 100.0 99.9 98.0 99.5 100.0 98.3 96.0 99.2 96.9 100.0 99.9 98.8 99.1
ldknn wide_resnet50_2 K=9 98.4 98.1 99.2 100.0 99.9 99.5 100.0 100.0 99.8 100.0 100.0 97.5 94.6 97.8 100.0 99.9 99.3 99.0 99.0
ldknn wide_resnet50_2 K=variable 98.4 98.4 99.3 100.0 100.0 99.5 100.0 100.0 100.0 100.0 100.0 99.3 97.0 99.7 100.0 100.0 99.4 99.6 99.5
reb wide_resnet50_2 K=9 98.3 99.6 100.0 100.0 100.0 99.7 100.0 100.0 99.3 99.7 100.0 99.0 94.7 96.1 99.9 100.0 99.9 98.9 99.2
reb wide_resnet50_2 K=variable 98.4 99.8 100.0 100.0 100.0 99.7 100.0 100.0 99.3 99.7 100.0 99.5 96.0 99.2 100.0 100.0 99.9 99.4 99.5
"""

_REB_T3 = """\
method backbone variant pixel_auroc:mean breakfast_box juice_bottle pushpins screw_bag splicing_connectors image_auroc_structural:mean image_auroc_logical:mean image_auroc_mean_of_kinds:mean
patchcore resnet18 - 72.4 71.8 93.6 68.1 65.0 77.3 80.5 71.7 76.1
patchcore wide_resnet50_2 - 74.3 74.1 93.4 69.2 66.4 82.2 83.6 72.9 78.3
patchcore wide_resnet101_2 - 76.6 80.6 95.5 71.0 68.5 84.7 85.3 76.5 80.9
defectmaker resnet18 - 70.8 75.4 91.8 72.6 62.4 80.1 83.9 71.1 77.5
ldknn resnet18 K=45 68.5 87.9 96.2 83.4 72.4 82.8 90.1 80.7 85.4
ldknn resnet18 K=variable 70.28 88.2 97.1 84.0 72.4 84.2 90.9 81.3 86.1
reb resnet18 K=45 67.7 89.7 96.9 78.1 75.5 84.0 91.3 80.0 85.7
reb resnet18 K=variable 68.4 89.7 97.3 78.2 75.6 84.3 91.4 80.3 85.9
defectmaker wide_resnet50_2 - 72.8 77.5 92.2 71.2 66.9 80.6 86.9 71.1 79.0
ldknn wide_resnet50_2 K=45 70.0 90.6 96.9 87.0 71.1 88.7 92.6 83.0 87.8
ldknn wide_resnet50_2 K=variable 70.7 90.6 97.6 87.2 71.6 89.0 92.7 83.5 88.1
reb wide_resnet50_2 K=45 68.0 91.0 96.5 79.2 75.0 88.5 93.3 80.9 87.1
reb wide_resnet50_2 K=variable? 68.52 91.1 97.3 79.6 75.3 88.9 93.2 81.6 87.4
ldknn wide_resnet101_2 K=45 74.4 91.0 98.9 88.8 70.1 90.1 91.4 85.8 88.6
ldknn wide_resnet101_2 K=variable 73.5 91.1 98.9 88.9 70.9 90.2 91.5 86.1 88.8
"""

_REB_T4 = """\
method variant 01 02 03 mean
vt_adl - (97.6,99.0) (71.0,94.0) (82.6,77.0) (83.7,90.0)
spade - (91.4,97.3) (71.4,94.4) (99.9,99.1) (87.6,96.9)
padim - (98,97.0) (82.0,96.0) (99.4,98.0) (93.7,97.3)
fastflow - (99.4,97.1) (82.4,93.6) (91.1,98.3) (91.0,96.3)
pyramidflow - (100,97.4) (88.2,97.6) (99.3,98.1) (95.8,97.7)
rd++ - (96.8,96.2) (90.1,96.4) (100,99.7) (95.6,97.4)
patchcore - (98,96.9) (81.6,95.8) (99.8,99.1) (93.1,97.3)
reconpatch - (99.7,96.8) (87.7,96.6) (100,99.0) (95.8,97.5)
reb K=57 (99.6,94.7) (88.5,95.6) (99.8,99.7) (96.0,97.2)
"""

_ULSAD_HEADER = "category cflow draem fastflow padim patchcore rd dfr efficientad ulsad\n"

# ULSAD appendix B: rows copied from the paper, "Mean" renamed "mean".
_ULSAD_TABLES = {
    ("Table 7", "mvtec_ad", "image_auroc"): """\
bottle 100.0 94.6 98.57 99.37 100.0 98.10 94.92 100.0 100.0 ±0.00
cable 93.46 74.29 89.30 86.94 98.54 95.41 79.54 94.61 97.92 ±0.18
capsule 91.74 65.46 86.04 88.43 97.93 81.01 96.01 95.57 94.61 ±0.28
carpet 93.26 57.70 98.76 97.31 97.91 57.95 97.59 99.70 98.50 ±0.17
grid 93.57 76.02 99.08 84.04 97.24 93.07 94.57 100.0 92.67 ±1.20
hazelnut 100.0 84.43 81.57 86.07 100.0 99.82 100.0 93.39 99.93 ±0.05
leather 99.97 79.31 100.0 99.66 100.0 42.39 99.46 99.92 100.0 ±0.00
metal_nut 99.76 45.06 94.53 96.92 99.61 67.20 93.06 99.34 98.88 ±0.07
pill 90.73 44.65 87.53 88.52 94.35 54.66 92.06 99.08 96.17 ±0.39
screw 88.30 89.38 66.00 75.24 98.26 94.57 93.69 98.09 95.20 ±0.15
tile 100.0 90.15 95.42 95.49 98.67 97.37 92.97 99.85 99.99 ±0.02
toothbrush 83.33 80.28 79.44 93.61 100.0 84.72 100.0 100.0 100.0 ±0.00
transistor 91.50 88.37 94.42 92.29 100.0 83.29 80.54 96.57 97.65 ±0.57
wood 98.33 90.96 97.54 98.33 99.30 53.16 98.77 98.13 98.81 ±0.23
zipper 93.07 68.17 92.54 86.48 99.47 92.04 89.97 99.22 94.36 ±0.13
mean 94.47 75.26 90.72 91.25 98.75 79.65 93.54 98.23 97.65 ±0.38
""",
    ("Table 8", "mvtec_ad", "pixel_auroc"): """\
bottle 98.58 76.53 97.8 98.3 97.98 98.31 90.83 98.31 96.21 ±2.21
cable 96.1 66.59 95.71 96.81 98.03 96.37 91.37 98.5 97.71 ±0.06
capsule 98.71 86.96 98.37 98.67 98.77 98.96 98.46 98.33 98.95 ±0.03
carpet 98.57 71.95 98.27 98.68 98.67 99.05 98.46 94.83 99.18 ±0.06
grid 97.49 53.56 98.39 92.82 97.86 99.01 97.41 96.02 95.47 ±1.09
hazelnut 98.64 84.66 94.79 97.85 98.43 98.91 98.53 96.15 98.81 ±0.03
leather 99.42 63.32 99.62 99.30 98.87 99.17 99.33 97.5 98.68 ±0.01
metal_nut 97.97 80.25 97.01 96.71 98.51 97.68 93.02 98.07 97.62 ±0.03
pill 97.83 77.17 96.38 95.03 97.53 96.96 96.86 98.63 96.67 ±0.09
screw 97.64 83.38 89.87 97.89 99.19 99.43 99.07 98.50 99.33 ±0.01
tile 96.68 85.75 93.14 92.42 94.86 95.47 90.82 91.61 95.78 ±0.05
toothbrush 98.16 90.70 97.50 98.83 98.67 98.99 98.49 96.0 98.42 ±0.02
transistor 89.91 63.23 96.45 96.85 96.84 86.77 79.11 94.77 98.89 ±0.05
wood 94.70 71.73 95.71 93.83 93.31 95.06 95.36 90.85 95.20 ±0.31
zipper 97.08 69.31 97.62 97.82 98.06 98.54 96.85 96.21 97.24 ±0.07
mean 97.17 75.01 96.44 96.79 97.71 97.25 94.93 96.29 97.61 ±0.64
""",
    ("Table 9", "mvtec_ad", "aupro"): """\
bottle 94.19 50.05 92.0 95.11 92.28 95.12 83.14 93.84 90.16 ±3.24
cable 85.85 28.58 86.65 89.65 90.77 90.32 83.09 92.53 88.63 ±0.48
capsule 90.47 81.11 90.15 92.62 92.4 93.93 96.33 91.09 93.77 ±0.16
carpet 92.64 48.64 94.63 95.59 92.7 96.41 95.47 90.99 96.39 ±0.24
grid 90.52 17.71 93.95 82.52 89.46 96.39 91.15 93.14 83.3 ±3.96
hazelnut 96.12 76.19 93.92 92.95 94.44 96.92 97.17 83.25 94.87 ±0.3
leather 98.39 52.1 99.06 97.91 96.33 97.97 98.34 97.32 97.44 ±0.01
metal_nut 88.97 35.79 85.89 90.45 91.9 94.4 87.01 92.97 91.58 ±0.19
pill 93.67 64.26 91.0 93.88 93.92 94.76 95.86 95.93 94.5 ±0.08
screw 90.25 53.22 68.6 92.14 95.39 97.05 95.96 96.04 96.45 ±0.1
tile 91.49 58.48 81.01 78.32 79.64 88.4 79.36 83.54 87.82 ±0.15
toothbrush 81.05 54.02 80.62 93.52 86.48 92.23 92.93 88.61 86.28 ±0.46
transistor 78.75 51.37 88.92 89.04 94.06 75.05 64.25 82.82 91.61 ±0.68
wood 90.5 45.29 93.26 91.39 85.08 92.69 92.48 76.16 91.34 ±0.29
zipper 89.3 28.98 92.12 92.48 92.43 95.18 88.74 93.48 90.89 ±0.35
mean 90.14 49.72 88.79 91.17 91.15 93.12 89.42 90.11 91.67 ±1.36
""",
    ("Table 10", "mvtec_loco", "image_auroc"): """\
breakfast_box 71.86 70.26 74.04 63.66 85.24 52.69 65.46 74.80 83.54±0.23
juice_bottle 81.70 62.55 78.03 88.42 92.51 76.28 86.81 98.89 97.12±0.10
pushpins 73.43 51.32 61.20 61.30 75.54 50.72 72.68 80.58 86.85±0.94
screw_bag 65.48 59.39 68.04 60.14 69.90 65.15 63.55 67.42 70.71±1.49
splicing_connectors 75.63 68.25 73.71 68.40 84.24 62.95 75.87 81.39 82.30±0.72
mean 73.62 62.35 71.00 68.38 81.49 61.56 72.87 80.62 84.1±0.86
""",
    ("Table 11", "mvtec_loco", "pixel_auroc"): """\
breakfast_box 89.6 63.61 82.73 87.35 88.53 85.78 76.25 80.76 89.14±0.11
juice_bottle 91.37 80.71 86.33 91.99 90.54 90.41 87.06 88.40 89.07±0.10
pushpins 70.66 54.74 82.94 40.72 67.67 41.42 29.42 59.96 75.64±0.36
screw_bag 69.94 65.23 58.07 65.35 62.40 67.33 59.74 61.64 71.35±0.12
splicing_connectors 63.40 54.16 67.69 71.20 69.71 57.82 56.14 61.02 75.10±0.20
mean 76.99 63.69 75.55 71.32 75.77 68.55 61.72 70.36 80.06±0.20
""",
    ("Table 12", "mvtec_loco", "aupro"): """\
breakfast_box 67.27 36.11 63.8 74.28 73.08 69.67 63.56 58.44 71.36±0.38
juice_bottle 80.75 51.51 77.90 88.78 85.42 84.95 82.88 86.51 87.72±0.09
pushpins 61.09 24.68 50.62 52.71 63.52 53.52 59.12 59.25 68.34±0.55
screw_bag 54.39 31.27 38.1 61.42 56.12 59.66 71.66 62.45 66.52±0.33
splicing_connectors 71.15 56.72 34.77 62.64 67.29 63.62 71.67 68.14 74.70±0.25
mean 66.93 40.06 53.04 67.97 69.09 66.28 69.78 66.96 73.73±0.35
""",
    ("Table 13", "mpdd", "image_auroc"): """\
tubes 99.64 61.28 89.36 56.48 87.50 89.67 94.47 95.28 93.39±0.57
metal_plate 97.42 80.05 86.92 42.69 99.72 91.87 68.31 100.0 93.81±0.28
connector 99.52 83.33 52.38 86.07 100.0 93.10 100.0 50.00 96.00±0.82
bracket_white 79.89 84.00 50.78 80.33 89.67 83.67 54.55 96.48 100.0±0.00
bracket_black 96.48 65.36 62.83 66.69 86.97 50.73 72.63 85.45 93.09±0.32
bracket_brown 49.70 70.81 47.89 78.66 95.78 68.70 88.54 85.32 98.08±0.14
mean 87.11 74.14 65.03 68.48 93.27 79.62 79.75 85.42 95.73±0.45
""",
    ("Table 14", "mpdd", "pixel_auroc"): """\
tubes 99.15 76.87 98.44 91.35 98.45 99.08 98.62 98.98 98.55±0.10
metal_plate 98.56 96.23 92.99 91.67 98.30 97.50 93.59 96.52 96.77±0.09
connector 97.38 90.01 92.69 97.93 99.11 98.55 98.68 99.32 99.40±0.18
bracket_white 96.74 86.64 90.23 97.21 97.90 98.13 96.63 97.71 98.73±0.1
bracket_black 97.68 95.89 94.39 93.79 97.52 96.40 98.42 97.17 97.43±0.21
bracket_brown 95.04 76.11 92.84 95.13 97.15 97.34 98.06 92.46 93.83±2.41
mean 97.42 86.96 93.60 94.51 98.07 97.83 97.33 97.03 97.45±0.99
""",
    ("Table 15", "mpdd", "aupro"): """\
tubes 96.76 44.84 94.85 71.53 93.83 95.98 95.20 96.27 94.33±0.33
metal_plate 91.53 82.83 74.62 75.47 92.50 92.00 83.99 83.59 90.07±0.22
connector 91.32 72.06 76.98 92.74 96.89 95.29 95.60 97.77 97.98±0.60
bracket_white 78.66 69.13 49.65 81.16 83.13 84.71 77.02 93.27 95.33±0.37
bracket_black 89.48 93.12 79.65 83.51 93.65 89.14 95.57 89.98 90.17±0.67
bracket_brown 83.62 58.29 85.62 82.69 85.07 94.04 95.37 81.77 84.24±6.38
mean 88.56 70.04 76.89 81.18 90.84 91.86 90.46 90.44 92.02±2.64
""",
    ("Table 16", "btad", "image_auroc"): """\
01 98.64 80.17 94.46 99.51 98.09 92.23 99.51 94.15 100.0 ±0.00
02 82.12 65.23 84.27 82.17 81.73 61.73 85.68 75.42 88.5 ±0.78
03 99.95 74.87 96.3 97.92 100.0 97.65 98.62 95.22 100.0 ±0.00
mean 93.57 73.42 91.68 93.20 93.27 83.87 94.60 88.26 96.17 ±0.45
""",
    ("Table 17", "btad", "pixel_auroc"): """\
01 95.44 59.11 93.05 96.54 95.94 96.98 96.93 64.59 95.86 ±0.03
02 94.81 69.29 96.16 95.11 95.18 96.83 96.77 85.67 94.76 ±0.88
03 99.55 48.73 99.25 99.56 99.44 99.74 99.12 96.12 99.55 ±0.02
mean 96.60 59.04 96.15 97.07 96.85 97.85 97.62 82.13 96.73 ±0.51
""",
    ("Table 18", "btad", "aupro"): """\
01 66.79 21.57 60.83 75.76 64.34 79.45 83.77 29.75 72.88 ±0.12
02 54.32 27.64 67.98 59.19 52.36 66.05 65.58 44.37 55.16 ±6.83
03 98.21 18.24 96.99 98.45 97.76 98.92 27.83 88.98 98.18 ±0.08
mean 73.11 22.48 75.27 77.80 71.48 81.47 59.06 54.37 75.41 ±3.95
""",
    ("Table 19", "visa", "image_auroc"): """\
candle 94.38 79.43 93.18 86.19 98.59 85.54 89.65 80.52 87.11 ±0.29
capsules 69.9 72.77 81.05 61.72 69.92 87.37 76.75 63.73 79.61 ±0.72
cashew 94.7 95.5 87.78 90.94 96.29 85.38 93.80 96.11 94.72 ±0.16
chewinggum 99.02 83.68 95.18 98.20 99.29 81.92 99.22 98.27 99.49 ±0.12
fryum 92.98 70.46 92.60 85.06 93.5 77.94 96.58 95.70 95.86 ±0.14
macaroni1 92.72 72.8 82.48 78.62 91.50 82.06 95.14 95.23 90.66 ±0.76
macaroni2 63.44 47.85 69.75 70.05 71.36 81.75 86.25 83.82 82.84 ±1.05
pcb1 91.06 72.27 88.07 87.59 95.08 92.60 97.57 93.78 92.92 ±0.11
pcb2 79.95 91.17 86.47 83.20 92.46 87.57 91.55 94.95 93.67 ±0.18
pcb3 82.23 81.29 81.47 72.79 92.46 90.87 97.27 95.92 93.62 ±0.16
pcb4 96.29 90.44 95.68 95.67 99.20 96.17 97.62 97.89 99.43 ±0.03
pipe_fryum 96.54 75.32 96.16 89.28 98.07 85.68 98.36 98.59 99.61 ±0.11
mean 87.77 77.75 87.49 83.28 91.48 86.24 85.18 91.21 92.46 ±0.45
""",
    ("Table 20", "visa", "pixel_auroc"): """\
candle 98.75 83.1 97.24 97.68 98.92 99.11 98.41 89.93 97.77 ±0.03
capsules 96.88 62.39 97.13 90.60 97.62 99.56 99.13 96.93 98.31 ±0.31
cashew 99.25 74.17 98.57 97.45 98.88 97.23 95.63 98.85 99.49 ±0.02
chewinggum 99.02 84.11 98.83 98.82 98.72 99.37 99.16 98.69 98.10 ±0.41
fryum 97.08 85.7 93.20 96.20 94.30 96.33 95.45 96.52 97.38 ±0.19
macaroni1 98.71 63.95 98.60 97.85 98.13 99.48 99.73 99.59 99.00 ±0.13
macaroni2 97.35 79.02 94.65 95.40 96.79 99.33 99.43 98.84 98.20 ±0.28
pcb1 99.05 27.98 99.29 98.67 99.47 99.65 99.30 98.98 99.61 ±0.01
pcb2 96.40 59.49 97.12 98.12 97.72 98.28 96.13 98.37 98.03 ±0.09
pcb3 97.23 76.43 97.04 98.06 98.13 98.98 97.99 98.91 98.45 ±0.05
pcb4 97.97 83.42 97.51 97.00 97.83 98.29 96.58 95.49 95.22 ±0.27
pipe_fryum 98.79 75.99 98.72 99.19 98.68 98.6 97.97 98.99 99.29 ±0.03
mean 98.04 71.31 97.32 97.09 97.93 98.68 97.90 97.51 98.24 ±0.20
""",
    ("Table 21", "visa", "aupro"): """\
candle 92.7 80.29 91.65 92.77 94.08 95.30 95.56 77.31 92.49 ±0.15
capsules 74.64 34.4 81.8 48.42 68.88 92.20 92.09 83.8 82.76 ±1.18
cashew 93.0 48.33 85.54 82.36 88.01 91.81 90.51 91.57 91.85 ±1.15
chewinggum 89.58 62.66 84.69 84.33 83.86 88.57 85.52 74.87 84.34 ±1.0
fryum 85.62 71.94 72.39 75.54 78.25 84.8 92.08 82.93 85.47 ±0.66
macaroni1 89.46 63.37 91.89 88.55 91.74 95.53 97.59 96.06 92.8 ±0.74
macaroni2 78.74 56.69 71.94 75.76 87.49 94.01 94.23 89.74 88.29 ±1.89
pcb1 87.24 27.43 85.89 86.39 89.07 95.0 93.55 90.53 90.22 ±0.28
pcb2 77.83 33.99 77.99 83.68 83.00 89.17 87.26 90.43 84.53 ±0.53
pcb3 75.03 71.9 71.33 81.37 79.69 90.89 92.48 92.08 85.86 ±0.38
pcb4 86.53 73.26 83.41 82.47 84.91 89.17 84.38 75.25 73.37 ±0.81
pipe_fryum 93.14 31.86 81.89 87.99 92.42 94.76 95.46 68.77 93.49 ±0.08
mean 85.29 54.68 81.70 80.80 85.12 91.77 91.72 84.45 87.12 ±0.89
""",
    ("Table 22", "mvtec_loco", "image_auroc_structural"): """\
breakfast_box 62.3 75.37 71.67 64.17 84.3 48.74 58.67 69.04 81.94±0.74
juice_bottle 73.45 52.18 76.52 86.17 96.47 78.29 62.75 99.71 95.53±0.45
pushpins 71.03 66.51 60.17 72.4 77.42 50.17 40.06 92.07 85.17±0.65
screw_bag 78.0 69.78 75.07 67.7 86.79 80.35 57.76 82.2 83.01±1.56
splicing_connectors 74.35 80.33 70.31 66.85 88.67 63.04 55.84 90.2 80.59±0.35
mean 71.83 68.83 70.75 71.46 86.73 64.12 55.02 86.64 85.25±0.86
""",
    ("Table 25", "mvtec_loco", "image_auroc_logical"): """\
breakfast_box 76.86 68.71 75.81 62.0 83.43 55.27 61.55 83.54 83.33±1.63
juice_bottle 80.52 70.09 80.89 92.94 94.61 76.4 77.07 99.12 98.82±0.14
pushpins 71.15 37.9 58.81 50.72 74.53 52.98 60.27 72.0 85.23±0.72
screw_bag 60.72 52.34 64.01 55.29 59.36 55.09 63.64 58.8 66.33±0.9
splicing_connectors 67.5 56.15 74.54 69.43 80.27 61.74 53.10 75.64 86.27±1.33
mean 71.35 57.04 70.81 66.08 78.44 60.3 63.13 77.82 84.0±1.07
""",
}

SOURCES = {
    "LWinNN": "Schönfeld, Meert, Blockeel: Tailored Transformation Invariance for Industrial Anomaly Detection",
    "REB": "Lyu et al.: REB: Reducing Biases in Representation for Industrial Anomaly Detection",
    "ULSAD": "Revisiting Deep Feature Reconstruction for Logical and Structural Industrial Anomaly Detection "
             "(TMLR 2024)",
}

METHOD_TITLES = {
    "spade": "SPADE", "padim": "PaDiM", "patchcore": "PatchCore", "efficientad": "EfficientAD",
    "lwinnn": "LWinNN", "ldknn": "LDKNN", "reb": "REB", "defectmaker": "DefectMaker", "ulsad": "ULSAD",
    "cflow": "CFLOW", "draem": "DRÆM", "fastflow": "FastFlow", "rd": "Reverse Distillation", "dfr": "DFR",
    "vt_adl": "VT-ADL", "pyramidflow": "PyramidFlow", "rd++": "RD++", "reconpatch": "ReConPatch",
}

_REB_LOCO_NOTE = "column order read as alphabetical categories (see iadtutor.tools.papers docstring)"


def _parse_cell(token: str, n_metrics: int, where: str) -> tuple[list[float | None], float | None]:
    """``'97.3'`` -> ([97.3], None); ``'(96.0/96.3)'`` or ``'(98,97.0)'`` -> ([96.0, 96.3], None);
    ``'83.54±0.23'`` -> ([83.54], 0.23); ``'-'`` -> ([None], None)."""
    std = None
    if "±" in token:
        token, std_text = token.split("±")
        std = float(std_text)
    if token == "-":
        values: list[float | None] = [None] * n_metrics
    else:
        values = [float(part) for part in re.split(r"[/,]", token.strip("()"))]
    if len(values) != n_metrics:
        raise ValueError(f"{where}: cell {token!r} holds {len(values)} numbers, expected {n_metrics}.")
    return values, std


def _read_block(block: str, *, keys: tuple[str, ...], across: str, metrics: tuple[str, ...], where: str,
                **fixed) -> list[dict]:
    """Turn one text block into tidy records (see the comment above the tables)."""
    lines = [line.split() for line in block.replace(" ±", "±").strip().splitlines()]
    header, rows = lines[0], lines[1:]
    if tuple(header[:len(keys)]) != keys:
        raise ValueError(f"{where}: header starts with {header[:len(keys)]}, expected {list(keys)}.")
    labels = header[len(keys):]
    records = []
    for tokens in rows:
        if len(tokens) != len(keys) + len(labels):
            raise ValueError(f"{where}: row {' '.join(tokens[:3])}... has {len(tokens) - len(keys)} values, "
                             f"expected {len(labels)}.")
        row_keys = dict(zip(keys, tokens))
        for label, token in zip(labels, tokens[len(keys):]):
            column_metrics = metrics
            if ":" in label:
                metric, label = label.split(":")
                column_metrics = (metric,)
            values, std = _parse_cell(token, len(column_metrics), where)
            for metric, value in zip(column_metrics, values):
                if value is None:
                    continue
                record = {**fixed, **row_keys, across: label, "metric": metric, "value": value, "std": std}
                records.append(record)
    return records


@functools.lru_cache(maxsize=1)
def _paper_records() -> tuple[dict, ...]:
    records: list[dict] = []
    records += _read_block(_LWINNN_T2, keys=("dataset", "category"), across="method",
                           metrics=("image_auroc", "aupro"), where="LWinNN table 2",
                           source="LWinNN", table="Table 2", backbone="resnet18")
    records += _read_block(_LWINNN_T4, keys=("category",), across="method", metrics=("image_auroc", "aupro"),
                           where="LWinNN table 4", source="LWinNN", table="Table 4", dataset="visa",
                           backbone="resnet18")
    records += _read_block(_REB_T2, keys=("method", "backbone", "variant"), across="category",
                           metrics=("image_auroc",), where="REB table 2", source="REB", table="Table 2",
                           dataset="mvtec_ad")
    records += [
        {**record, "note": _REB_LOCO_NOTE if record["category"] != "mean" else ""}
        for record in _read_block(_REB_T3, keys=("method", "backbone", "variant"), across="category",
                                  metrics=("image_auroc",), where="REB table 3", source="REB",
                                  table="Table 3", dataset="mvtec_loco")
    ]
    records += _read_block(_REB_T4, keys=("method", "variant"), across="category",
                           metrics=("image_auroc", "pixel_auroc"), where="REB table 4", source="REB",
                           table="Table 4", dataset="btad", backbone="wide_resnet50_2")
    for (table, dataset, metric), rows in _ULSAD_TABLES.items():
        for record in _read_block(_ULSAD_HEADER + rows, keys=("category",), across="method", metrics=(metric,),
                                  where=f"ULSAD {table}", source="ULSAD", table=table, dataset=dataset):
            record["backbone"] = "wide_resnet50_2" if record["method"] == "ulsad" else ""
            records.append(record)
    for record in records:
        record["variant"] = "" if record.get("variant", "-") == "-" else record["variant"]
        record.setdefault("note", "")
        record["level"] = level_of(record["dataset"], record["category"])
    return tuple(records)


COLUMNS = ("source", "table", "dataset", "category", "level", "method", "backbone", "variant", "metric", "value",
           "std", "note")


def paper_results() -> pd.DataFrame:
    """All transcribed numbers as one tidy table (a fresh copy; values in percent). See the module docstring."""
    return pd.DataFrame(list(_paper_records()), columns=list(COLUMNS))
