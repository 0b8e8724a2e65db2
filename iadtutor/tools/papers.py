"""The papers' reported numbers, stored as data, and the papers' groupings of categories.

``iadtutor reproduce`` puts our numbers beside these (README "Reproduction runs", book "The papers").
Every number is transcribed from the text versions of the three papers (LWinNN, REB, ULSAD; see
``shared/papers/README.md``) as a percentage, exactly as printed, into one tidy table,
``iadtutor/tools/tables/paper_results.csv``: one row per printed number, in the order of the printed
rows. ``tables/README.md`` says which table of which paper each block comes from and what was
noticed while transcribing it (read it before trusting a gap)::

    >>> from iadtutor.tools.papers import paper_results
    >>> table = paper_results()
    >>> row = table.query("source == 'LWinNN' and category == 'capsules' and method == 'lwinnn'")
    >>> row[["metric", "value"]].to_dict("records")
    [{'metric': 'image_auroc', 'value': 81.0}, {'metric': 'aupro', 'value': 87.5}]

Columns: :data:`COLUMNS` (see ``tables/README.md``); ``category`` is a category, a group name such as
``textures``, or ``mean`` (the dataset average); ``level`` comes from :func:`level_of`. Metric names:
``image_auroc``, ``pixel_auroc``, ``aupro`` (LWinNN's "segmentation" column), ``image_auroc_structural`` /
``image_auroc_logical`` (MVTec LOCO: the good test images plus only that kind of anomaly) and
``image_auroc_mean_of_kinds`` (REB's LOCO "Total": the mean of those two columns). REB's table 3 (MVTec LOCO) is
read in alphabetical column order: see ``tables/README.md`` before quoting it.
"""

from __future__ import annotations

import functools
from importlib import resources

import pandas as pd

DATASET_TITLES = {"mvtec_ad": "MVTec AD", "mvtec_loco": "MVTec LOCO AD", "visa": "VisA", "btad": "BTAD", "mpdd": "MPDD",
                  "toy": "toy factory"}

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
    "mvtec_ad": {"textures": ("carpet", "grid", "leather", "tile", "wood"),
                 "objects": ("bottle", "cable", "capsule", "hazelnut", "metal_nut", "pill", "screw", "toothbrush",
                             "transistor", "zipper")},
    "visa": {"complex_structure": ("pcb1", "pcb2", "pcb3", "pcb4"),
             "multiple_instances": ("candle", "capsules", "macaroni1", "macaroni2"),
             "single_instance": ("cashew", "chewinggum", "fryum", "pipe_fryum")},
    "toy": {"texture": ("weave",), "object": ("bracket",), "multi_instance": ("pills",), "logical": ("box",)},
}

METHOD_TITLES = {"spade": "SPADE", "padim": "PaDiM", "patchcore": "PatchCore", "efficientad": "EfficientAD",
                 "lwinnn": "LWinNN", "ldknn": "LDKNN", "reb": "REB", "defectmaker": "DefectMaker", "ulsad": "ULSAD",
                 "cflow": "CFLOW", "draem": "DRÆM", "fastflow": "FastFlow", "rd": "Reverse Distillation", "dfr": "DFR",
                 "vt_adl": "VT-ADL", "pyramidflow": "PyramidFlow", "rd++": "RD++", "reconpatch": "ReConPatch"}

COLUMNS = ("source", "table", "dataset", "category", "level", "method", "backbone", "variant", "metric", "value",
           "std", "note")
RESULTS_FILE = "paper_results.csv"  # in iadtutor/tools/tables/, every column of COLUMNS except level


def group_of(dataset: str, category: str) -> str:
    """The papers' group of ``category`` in ``dataset`` (e.g. ``"textures"``), or ``""`` when it has none
    (used by ``iadtutor reproduce`` for its group averages, README "Reproduction runs")."""
    return next((group for group, members in CATEGORY_GROUPS.get(dataset, {}).items() if category in members), "")


def level_of(dataset: str, category: str) -> str:
    """``"dataset"`` for ``mean``, ``"group"`` for a group name, otherwise ``"category"`` (the ``level``
    column of :func:`paper_results` and of ``iadtutor reproduce``'s tables)."""
    return "dataset" if category == "mean" else "group" if category in CATEGORY_GROUPS.get(dataset, {}) else "category"


@functools.lru_cache(maxsize=1)
def _read_results() -> pd.DataFrame:
    path = resources.files("iadtutor.tools") / "tables" / RESULTS_FILE
    with path.open("r", encoding="utf-8") as file:
        # Every column is text ("01" is a BTAD category), except the two numbers; an empty std is "not printed".
        table = pd.read_csv(file, dtype=str, keep_default_na=False, na_values={"std": [""]})
    expected = [column for column in COLUMNS if column != "level"]
    if list(table.columns) != expected:
        raise ValueError(f"{RESULTS_FILE}: columns {list(table.columns)}, expected {expected}.")
    try:
        table[["value", "std"]] = table[["value", "std"]].astype(float)
    except ValueError as error:
        raise ValueError(f"{RESULTS_FILE}: the value and std columns must hold numbers ({error}).") from None
    table.insert(COLUMNS.index("level"), "level", [level_of(d, c) for d, c in zip(table["dataset"], table["category"])])
    return table


def paper_results() -> pd.DataFrame:
    """All transcribed numbers as one tidy table (a fresh copy; values in percent; see the module docstring).
    Used by ``iadtutor reproduce`` (``comparison.csv``) and ``book/real_runs/make_tables.py``."""
    return _read_results().copy()
