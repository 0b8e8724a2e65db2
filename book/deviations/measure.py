#!/usr/bin/env python
"""Measure, on the toy factory, what each choice of ``book/deviations.md`` changes: our default against the
other reading (paper text or public code), everything else equal.

    python book/deviations/measure.py [--data-root data/toy] [--skip-ulsad]

Writes ``book/deviations/effects.csv`` (one row per (choice, setting, category)) and
``book/deviations/effects.md`` (the table the page includes), atomically. Seeded, one CPU thread, the
kernels of the Makefile (run it through ``make deviations`` or with the same environment variables).
kNN choices: EfficientNet-Lite0 at 128 px on all four toy categories; ULSAD choices: the small preset, 100
epochs, 128 px on ``data/toy``'s ``box`` (notebook 07's setting before it moved to 256 px and the ``choice``
box), one training per setting.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from iadtutor import pipeline, ulsad
from iadtutor.backbones import load_backbone
from iadtutor.embed import PatchEmbedder
from iadtutor.files import write_text_atomic
from iadtutor.tools.toy import prepare_data_root

HERE = Path(__file__).resolve().parent
SIZE = 128
# choice -> ((method, params, EmbeddingConfig changes) of our default, the same of the other reading)
DEFAULT = {"patchcore": ("patchcore", {}, {}), "ldknn": ("ldknn", {}, {})}
KNN_CHOICES = {
    "LWinNN pooling": (("lwinnn", {}, {}), ("lwinnn", {}, {"pool_padding": True})),
    "PatchCore embedding": (DEFAULT["patchcore"], ("global", {}, {})),
    "PatchCore image score": (DEFAULT["patchcore"], ("patchcore", {"image_score": "reweighted"}, {})),
    "REB neck": (DEFAULT["ldknn"], ("ldknn", {}, {"aggregation": "average"})),
    "REB neck length": (DEFAULT["ldknn"], ("ldknn", {}, {"dimension": 512})),
    "REB image score": (DEFAULT["ldknn"], ("ldknn", {"image_score": "max"}, {})),
    "LDKNN distance": (DEFAULT["ldknn"], ("ldknn", {"squared": True}, {})),
    "LDKNN taps": (DEFAULT["ldknn"], ("ldknn", {}, {"layers": (0, 1, 2)})),
}


def knn_rows(data_root: Path, backbone) -> list[dict]:
    rows = []
    for category in ("weave", "bracket", "pills", "box"):
        loaded = pipeline.load_category(data_root, category, image_size=SIZE, progress=False)
        embedded = {}  # one embedding per config
        for choice, settings in KNN_CHOICES.items():
            for setting, (method, params, changes) in zip(("ours", "other"), settings):
                embedding_method = "lwinnn" if method == "global" else method
                config = pipeline.method_config(embedding_method, image_size=SIZE, **changes)
                if config not in embedded:
                    embedded[config] = pipeline.embed_category(loaded, PatchEmbedder(backbone, config), progress=False)
                # a scorer object, not the method's name: "REB neck" scores embeddings the method would refuse
                result = pipeline.score_category(embedded[config], pipeline.make_scorer(method, **params))
                rows.append({"choice": choice, "setting": setting, "category": category,
                             **{m: result.metrics[m] for m in ("image_auroc", "aupro")}})
    return rows


def ulsad_rows(data_root: Path) -> list[dict]:
    rows = []
    loaded = pipeline.load_category(data_root, "box", image_size=SIZE, with_validation=True, progress=False)
    variants = {"defaults (code)": {}, **{f"{name}={value!r}": {name: value} for name, value in ulsad.PAPER_TEXT.items()}}
    for label, change in variants.items():
        start = time.perf_counter()
        model = ulsad.ULSAD(ulsad.ULSADConfig.small(image_size=SIZE, epochs=100, seed=0, **change),
                            backbone="efficientnet_lite0", device="cpu", verbose=False)
        model.fit(loaded.train.images, loaded.validation.images, progress=False)
        maps = model.predict(loaded.test.images)
        found = pipeline.evaluate_scores(loaded.test, maps["image_scores"].numpy(), maps["combined"].numpy())
        rows.append({"choice": "ULSAD", "setting": label, "category": "box", "image_auroc": found["image_auroc"],
                     "image_auroc_logical": found.get("image_auroc_logical"),
                     "image_auroc_structural": found.get("image_auroc_structural"), "aupro": found["aupro"],
                     "seconds": round(time.perf_counter() - start, 1)})
        print(rows[-1], flush=True)
    return rows


def markdown(table: pd.DataFrame) -> str:
    """The kNN effects as one row per (choice, category), the ULSAD ones as one row per setting."""
    lines = []
    knn = table[table["choice"] != "ULSAD"]
    if not knn.empty:
        wide = knn.pivot_table(index=["choice", "category"], columns="setting", values=["image_auroc", "aupro"])
        lines += ["| choice | category | image AUROC ours → other | AUPRO ours → other |", "|---|---|---|---|"]
        for (choice, category), row in wide.iterrows():
            lines.append(f"| {choice} | {category} | {row[('image_auroc', 'ours')]:.3f} → {row[('image_auroc', 'other')]:.3f}"
                         f" | {row[('aupro', 'ours')]:.3f} → {row[('aupro', 'other')]:.3f} |")
    ulsad_part = table[table["choice"] == "ULSAD"]
    if not ulsad_part.empty:
        lines += ["", "| ULSAD setting (toy box) | image AUROC | logical | structural | AUPRO |", "|---|---|---|---|---|"]
        for _, row in ulsad_part.iterrows():
            lines.append(f"| `{row['setting']}` | {row['image_auroc']:.3f} | {row['image_auroc_logical']:.3f} | "
                         f"{row['image_auroc_structural']:.3f} | {row['aupro']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path("data/toy"))
    parser.add_argument("--skip-ulsad", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data_root = prepare_data_root("toy", args.data_root)
    rows = knn_rows(data_root, load_backbone("efficientnet_lite0", verbose=False))
    if not args.skip_ulsad:
        rows += ulsad_rows(data_root)
    elif (HERE / "effects.csv").is_file():  # keep the ULSAD rows measured before
        old = pd.read_csv(HERE / "effects.csv")
        rows += old[old["choice"] == "ULSAD"].to_dict("records")
    table = pd.DataFrame(rows)
    write_text_atomic(HERE / "effects.csv", table.to_csv(index=False))
    write_text_atomic(HERE / "effects.md", markdown(table))
    print(markdown(table))


if __name__ == "__main__":
    main()
