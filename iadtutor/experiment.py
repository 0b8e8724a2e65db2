"""One evaluation, start to finish: load a category, embed it, score it, measure it.

Used by ``iadtutor evaluate`` and by the notebooks, so both report the same numbers::

    category = load_category(data_root, "bracket", image_size=128)
    embedded = embed_category(category, PatchEmbedder(load_backbone("auto"), config))
    result = score_category(embedded, "lwinnn", window=7)
    result.metrics   # {'image_auroc': ..., 'pixel_auroc': ..., 'aupro': ...}
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import data, metrics
from .embed import PatchEmbedder
from .knn import anomaly_maps, image_scores, make_scorer


@dataclass
class Category:
    """A category's images in memory: ``train`` / ``test`` are :class:`iadtutor.data.LoadedSplit`."""

    name: str
    layout: str
    train: "data.LoadedSplit"
    test: "data.LoadedSplit"
    validation: "data.LoadedSplit | None" = None


def load_category(data_root, category: str, image_size: int = 256, keep_aspect: bool = False,
                  layout: str = "auto", max_train: int | None = 750, max_test: int | None = None,
                  with_validation: bool = False, progress: bool = True) -> Category:
    """Read one category from disk (``max_train`` keeps the first 750 like the LWinNN paper)."""
    splits = data.find_category(data_root, category, layout=layout)
    load = dict(image_size=image_size, keep_aspect=keep_aspect, progress=progress)
    train = data.load_split(splits.train, max_images=max_train, **load)
    load["output_shape"] = tuple(train.images.shape[-2:])  # one shape for every split (keep_aspect, KolektorSDD)
    test = data.load_split(splits.test, max_images=max_test, **load)
    validation = None
    if with_validation and splits.validation:
        validation = data.load_split(splits.validation, **load)
    return Category(category, splits.layout, train, test, validation)


@dataclass
class EmbeddedCategory:
    """Patch embeddings of a category: ``train`` ``(M, C, h, w)``, ``test`` ``(N, C, h, w)``."""

    category: Category
    train: torch.Tensor
    test: torch.Tensor
    embed_train_seconds: float
    embed_test_seconds: float


def embed_category(category: Category, embedder: PatchEmbedder, batch_size: int = 16,
                   progress: bool = True) -> EmbeddedCategory:
    """Embed the train and test images of ``category``; times each split (seconds)."""
    start = time.perf_counter()
    train = embedder.embed(category.train.images, batch_size, progress, description="embed train")
    middle = time.perf_counter()
    test = embedder.embed(category.test.images, batch_size, progress, description="embed test")
    end = time.perf_counter()
    return EmbeddedCategory(category, train, test, middle - start, end - middle)


@dataclass
class ScoreResult:
    """What one method produced on one category."""

    method: str
    params: dict
    patch_scores: torch.Tensor          # (N, h, w)
    maps: np.ndarray                    # (N, H, W) pixel anomaly maps
    image_scores: np.ndarray            # (N,)
    metrics: dict
    train_seconds: float
    test_seconds_per_image: float
    scorer: object = field(repr=False, default=None)


def evaluate_scores(test: "data.LoadedSplit", scores: np.ndarray, maps: np.ndarray,
                    bootstrap: int = 0, seed: int = 0) -> dict:
    """Image AUROC, pixel AUROC and AUPRO (fractions) — plus 95 % bootstrap intervals if ``bootstrap``."""
    labels, masks = test.labels.numpy(), test.masks.numpy()
    result = metrics.evaluate_maps(labels, scores, masks, maps)
    result.update(auroc_by_anomaly_kind(test.defect_types, labels, scores))
    if bootstrap:
        result["image_auroc_ci"] = list(metrics.image_auroc_ci(labels, scores, n_boot=bootstrap, seed=seed))
        result["pixel_auroc_ci"] = list(metrics.pixel_auroc_ci(masks, maps, n_boot=bootstrap, seed=seed))
    return {key: (float(value) if np.isscalar(value) else value) for key, value in result.items()}


def auroc_by_anomaly_kind(defect_types: list[str], labels: np.ndarray, scores: np.ndarray) -> dict:
    """``image_auroc_logical`` / ``image_auroc_structural``: good images vs only that kind of defect.

    Empty unless the test set has both kinds (MVTec LOCO, the toy ``box``).
    """
    kinds = np.array([data.anomaly_kind(t) for t in defect_types])
    if not {"logical", "structural"} <= set(kinds):
        return {}
    result = {}
    for kind in ("logical", "structural"):
        keep = (kinds == "good") | (kinds == kind)
        result[f"image_auroc_{kind}"] = metrics.image_auroc(labels[keep], scores[keep])
    return result


def score_category(embedded: EmbeddedCategory, method: str, device: str = "cpu", sigma: float = 4.0,
                   bootstrap: int = 0, seed: int = 0, progress: bool = False, **params) -> ScoreResult:
    """Fit ``method`` (see :func:`iadtutor.knn.make_scorer`) on the train embeddings and score the test set.

    ``train_seconds`` counts embedding the train images plus fitting; ``test_seconds_per_image`` counts
    embedding, scoring and building the anomaly maps of the test images, divided by their number.
    """
    scorer = make_scorer(method, device=device, seed=seed, progress=progress, **params)
    start = time.perf_counter()
    scorer.fit(embedded.train)
    fitted = time.perf_counter()
    patch_scores = scorer.score(embedded.test)
    test_shape = tuple(embedded.category.test.masks.shape[-2:])
    maps = anomaly_maps(patch_scores, test_shape, sigma=sigma)
    scored = time.perf_counter()
    scores = image_scores(patch_scores).numpy()
    n_test = len(embedded.test)
    return ScoreResult(
        method=method, params=params, patch_scores=patch_scores, maps=maps, image_scores=scores,
        metrics=evaluate_scores(embedded.category.test, scores, maps, bootstrap=bootstrap, seed=seed),
        train_seconds=embedded.embed_train_seconds + (fitted - start),
        test_seconds_per_image=(embedded.embed_test_seconds + scored - fitted) / n_test,
        scorer=scorer,
    )


def prepare_data_root(dataset: str, data_root, seed: int = 0):
    """Return the data folder to read; for ``dataset="toy"`` write the toy factory there if it is missing.

    Any other dataset must already be on disk (see ``data_scripts/``); a missing folder is an error
    that names it.
    """
    from pathlib import Path

    root = Path(data_root)
    if dataset == "toy":
        from .toy import TOY_CATEGORIES, make_toy_dataset

        missing = [c for c in TOY_CATEGORIES if not (root / c / "train").is_dir()]
        if missing:
            make_toy_dataset(root, categories=missing, seed=seed, progress=False)
        return root
    if not root.is_dir():
        raise FileNotFoundError(f"data_root {root} does not exist: download {dataset} first "
                                f"(python data_scripts/download.py --dataset {dataset} --out {root}).")
    return root
