"""REB (Lyu et al. 2023, ``shared/papers/002_*.txt``) on one category: which representation, which scorer?

REB = DefectMaker fine-tuned features (:func:`iadtutor.defectmaker.finetune_backbone`) + LDKNN
(:class:`iadtutor.knn.LDKNN`). The paper's table 5 separates the two: the same scorers (vanilla KNN and
LDKNN) on different representations (ImageNet weights, weights fine-tuned on synthetic defects).
:func:`compare_representations` builds that table for one category::

    finetuned, history = finetune_backbone(imagenet, category.train.images, epochs=5)
    table = compare_representations(category, {"ImageNet": imagenet, "DefectMaker": finetuned},
                                    reb_scorers(k=5, alpha=1.0), EmbeddingConfig(image_size=128, layers=(1, 2)))

Vanilla KNN is REB's baseline: the mean distance to the ``k`` nearest patches of the whole memory bank,
``GlobalNN(coreset=1.0, k=k)`` (PatchCore with ``k`` neighbours and no coreset).
"""

from __future__ import annotations

import time
from typing import Callable, Mapping

import pandas as pd
import torch

from .backbones import FeatureExtractor
from .embed import EmbeddingConfig, PatchEmbedder
from .experiment import Category, EmbeddedCategory, ScoreResult, embed_category, evaluate_scores
from .knn import LDKNN, GlobalNN, PatchScorer, anomaly_maps, image_scores

METRICS = ("image_auroc", "pixel_auroc", "aupro")
# REB's choice of taps: the second and third ResNet stages (stride 8 and 16), "phi_2 + phi_3" (sec. 3.2).
REB_LAYERS = (1, 2)


def reb_scorers(k: int = 5, alpha: float = 1.0, device="cpu") -> dict[str, Callable[[], PatchScorer]]:
    """The two scorers of REB's table 5 as ``{name: factory}``: ``"KNN"`` (mean distance to the ``k``
    nearest memory-bank patches) and ``"LDKNN"`` (distance to the nearest minus ``alpha`` times its local
    density, the mean distance to its ``k`` nearest bank neighbours)."""
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}.")
    return {"KNN": lambda: GlobalNN(coreset=1.0, k=k, device=device),
            "LDKNN": lambda: LDKNN(k=k, alpha=alpha, device=device)}


def score_with(embedded: EmbeddedCategory, scorer: PatchScorer, sigma: float = 4.0) -> ScoreResult:
    """Like :func:`iadtutor.experiment.score_category`, for a scorer object instead of a method name
    (``make_scorer`` has no vanilla KNN with ``k > 1``): fit on the train embeddings, score the test set,
    build anomaly maps (``sigma`` px blur), measure image AUROC, pixel AUROC and AUPRO."""
    start = time.perf_counter()
    scorer.fit(embedded.train)
    fitted = time.perf_counter()
    patch_scores = scorer.score(embedded.test)
    maps = anomaly_maps(patch_scores, tuple(embedded.category.test.masks.shape[-2:]), sigma=sigma)
    scored = time.perf_counter()
    scores = image_scores(patch_scores).numpy()
    n_test = len(embedded.test)
    return ScoreResult(
        method=type(scorer).__name__, params={}, patch_scores=patch_scores, maps=maps, image_scores=scores,
        metrics=evaluate_scores(embedded.category.test, scores, maps),
        train_seconds=embedded.embed_train_seconds + (fitted - start),
        test_seconds_per_image=(embedded.embed_test_seconds + scored - fitted) / n_test,
        scorer=scorer,
    )


def compare_representations(category: Category, backbones: Mapping[str, FeatureExtractor],
                            scorers: Mapping[str, Callable[[], PatchScorer]] | None = None,
                            config: EmbeddingConfig | None = None, batch_size: int = 16,
                            progress: bool = False, keep_results: bool = False):
    """Every scorer on every representation of ``category``: REB's table 5 for one category.

    ``backbones``: ``{representation name: FeatureExtractor}`` (e.g. ImageNet and DefectMaker weights);
    ``scorers``: ``{scorer name: function returning a fresh PatchScorer}`` (default :func:`reb_scorers`);
    ``config``: how images become patch embeddings (default: REB's taps :data:`REB_LAYERS` at the
    category's image size).

    Returns a DataFrame with one row per (representation, scorer): columns ``representation``,
    ``scorer``, ``image_auroc``, ``pixel_auroc``, ``aupro`` (fractions) and ``seconds`` (fit + score,
    embedding excluded). With ``keep_results=True`` returns ``(table, {(representation, scorer):
    ScoreResult})`` so that maps can be shown.
    """
    if not backbones:
        raise ValueError("backbones is empty: give at least one {name: FeatureExtractor}.")
    scorers = reb_scorers() if scorers is None else scorers
    if config is None:
        config = EmbeddingConfig(image_size=int(category.train.images.shape[-1]), layers=REB_LAYERS)
    rows, results = [], {}
    for representation, backbone in backbones.items():
        if not isinstance(backbone, FeatureExtractor):
            raise ValueError(f"backbones[{representation!r}] must be a FeatureExtractor; got {type(backbone).__name__}.")
        embedded = embed_category(category, PatchEmbedder(backbone, config), batch_size, progress)
        for name, make in scorers.items():
            start = time.perf_counter()
            result = score_with(embedded, make())
            rows.append({"representation": representation, "scorer": name,
                         **{metric: result.metrics[metric] for metric in METRICS},
                         "seconds": time.perf_counter() - start})
            results[representation, name] = result
    table = pd.DataFrame(rows)
    return (table, results) if keep_results else table


def results_grid(table: pd.DataFrame, metric: str = "image_auroc") -> pd.DataFrame:
    """One metric of :func:`compare_representations` as a representation x scorer grid (table 5's layout)."""
    if metric not in table.columns:
        raise ValueError(f"metric must be one of the table's columns {list(table.columns)}; got {metric!r}.")
    return table.pivot(index="representation", columns="scorer", values=metric).loc[
        table["representation"].unique(), table["scorer"].unique()]


def local_density_maps(result: ScoreResult) -> torch.Tensor:
    """LDKNN's local density ``d_i`` (eq. 2) of every memory-bank patch, put back on the training images'
    patch grids: ``(M, h, w)``, from a :class:`ScoreResult` of an :class:`iadtutor.knn.LDKNN` (the grid
    ``(h, w)`` is that of its patch scores). Needs the whole memory bank (``coreset=1.0``), whose
    patches are in (image, row, column) order."""
    density = getattr(result.scorer, "local_density", None)
    if density is None:
        raise ValueError("result.scorer has no local densities: pass the result of a fitted iadtutor.knn.LDKNN.")
    h, w = result.patch_scores.shape[-2:]
    if len(density) % (h * w) or len(result.scorer.bank) != len(density) or result.scorer.coreset != 1.0:
        raise ValueError(f"the memory bank of {len(density)} patches is not whole training images of {h}x{w} "
                         "patches: local densities map back to images only without a coreset.")
    return density.detach().cpu().view(-1, h, w)
