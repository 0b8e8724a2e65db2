"""Sweeps for the notebooks on local vs global search and on LDKNN: one table row per setting.

* :func:`compare_methods` — several scorers on the same embeddings (fit once each, embed once).
* :func:`window_sweep` — LWinNN over window sizes δ (LWinNN paper, fig. 5): quality and time vs δ.
* :func:`window_vs_global` — how often the best match inside a δ×δ window is as good as the best match
  anywhere in the memory bank (a patch-level view of "how large must the window be?").
* :func:`translation_study` — the toy factory's translation knob turned up: write a toy category with
  more pose jitter into its own folder, embed it, score it with each method.
* :func:`k_alpha_sweep` — KNN (mean distance to the K nearest) and LDKNN (REB eq. 3) over K and α
  (REB fig. 5), from one neighbour search of the test patches and one of the memory bank.

Every function returns a ``pandas.DataFrame`` with the metric columns of ``iadtutor evaluate``
(``image_auroc``, ``pixel_auroc``, ``aupro``; fractions) and times in seconds.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
import torch

from . import experiment, toy
from .density import NeighbourSearch, neighbour_search
from .knn import GlobalNN, LocalWindowNN, anomaly_maps, image_scores

METRICS = ("image_auroc", "pixel_auroc", "aupro")


def standard_methods(window: int = 7, coreset: float = 0.01) -> dict[str, tuple[str, dict]]:
    """The three families of nearest-neighbour search of the course, ``{label: (method, params)}`` as
    :func:`iadtutor.knn.make_scorer` takes them: fixed position, local window δ, global with a coreset."""
    return {
        "SPADE (fixed position)": ("spade", {}),
        f"LWinNN (δ = {window})": ("lwinnn", {"window": int(window)}),
        f"PatchCore (global, {coreset:.0%} coreset)": ("patchcore", {"coreset": float(coreset)}),
    }


DEFAULT_METHODS = standard_methods()


def _metric_row(result: experiment.ScoreResult) -> dict:
    return {name: result.metrics[name] for name in METRICS}


def search_seconds_per_image(scorer, test_embeddings: torch.Tensor, repeats: int = 3) -> float:
    """Seconds per test image of ``scorer.score(test_embeddings)`` (the nearest-neighbour search alone),
    the fastest of ``repeats`` runs: on a busy machine the fastest run is the least disturbed one."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1; got {repeats}.")
    fastest = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        scorer.score(test_embeddings)
        fastest = min(fastest, time.perf_counter() - start)
    return fastest / len(test_embeddings)


def compare_methods(embedded: experiment.EmbeddedCategory, methods: Mapping[str, tuple[str, dict]] = DEFAULT_METHODS,
                    device: str = "cpu", sigma: float = 4.0, seed: int = 0, timing_repeats: int = 3
                    ) -> tuple[pd.DataFrame, dict[str, experiment.ScoreResult]]:
    """Score the same embeddings with each of ``methods`` (``{label: (method, params)}``).

    Returns a table indexed by label with the three metrics, ``fit_seconds`` (fitting the scorer, e.g.
    building the coreset), ``search_seconds_per_image`` (:func:`search_seconds_per_image`) and
    ``test_seconds_per_image`` (embedding, search and anomaly map, as ``iadtutor evaluate`` reports it),
    and the :class:`~iadtutor.experiment.ScoreResult` of each method (patch scores, maps, image scores).
    """
    if not methods:
        raise ValueError("methods must name at least one scorer, e.g. {'SPADE': ('spade', {})}.")
    rows, results = [], {}
    for label, (method, params) in methods.items():
        result = experiment.score_category(embedded, method, device=device, sigma=sigma, seed=seed, **params)
        results[label] = result
        rows.append({"method": label, **_metric_row(result),
                     "fit_seconds": result.train_seconds - embedded.embed_train_seconds,
                     "search_seconds_per_image": search_seconds_per_image(result.scorer, embedded.test, timing_repeats),
                     "test_seconds_per_image": result.test_seconds_per_image})
    return pd.DataFrame(rows).set_index("method"), results


def window_sweep(embedded: experiment.EmbeddedCategory, windows: Sequence[int] = (1, 3, 5, 7, 9),
                 device: str = "cpu", sigma: float = 4.0, timing_repeats: int = 3) -> pd.DataFrame:
    """LWinNN (eq. 2) for each window size δ in ``windows``: one row per δ, in the order given.

    Columns: ``window``, the three metrics, ``search_seconds_per_image`` (the part δ changes; fastest of
    ``timing_repeats`` runs) and ``test_seconds_per_image`` (with embedding and map). δ = 1 is SPADE's
    fixed position (eq. 1).
    """
    windows = [int(w) for w in windows]
    if not windows or any(w < 1 for w in windows):
        raise ValueError(f"windows must be a non-empty list of positive integers; got {windows}.")
    rows = []
    for window in windows:
        result = experiment.score_category(embedded, "lwinnn", device=device, sigma=sigma, window=window)
        rows.append({"window": window, **_metric_row(result),
                     "search_seconds_per_image": search_seconds_per_image(result.scorer, embedded.test, timing_repeats),
                     "test_seconds_per_image": result.test_seconds_per_image})
    return pd.DataFrame(rows)


def window_vs_global(train_embeddings: torch.Tensor, test_embeddings: torch.Tensor,
                     windows: Sequence[int] = (1, 3, 5, 7, 9, 15, 31), tolerance: float = 0.05,
                     device: str = "cpu") -> pd.DataFrame:
    """How large must the window be to find a match as good as a search of the whole memory bank?

    For each test patch ``(N, C, h, w)`` (use normal images), compare its LWinNN distance with window δ,
    ``d_δ``, to its global nearest-neighbour distance over all train patches, ``d_global`` (≤ ``d_δ``).
    Returns one row per δ: ``window``, ``share_found`` — the fraction of patches with
    ``d_δ ≤ (1 + tolerance)·d_global`` (the window holds a match about as good as the global one) —
    and ``mean_ratio`` (mean of ``d_δ / d_global``; 1 = the window loses nothing).
    """
    windows = [int(w) for w in windows]
    if not windows or any(w < 1 for w in windows):
        raise ValueError(f"windows must be a non-empty list of positive integers; got {windows}.")
    global_distance = GlobalNN(coreset=1.0, device=device).fit(train_embeddings).score(test_embeddings)
    floor = global_distance.clamp_min(1e-12)  # a test patch identical to a train patch has distance 0
    rows = []
    for window in windows:
        local = LocalWindowNN(window=window, device=device).fit(train_embeddings).score(test_embeddings)
        ratio = torch.where(global_distance > 0, local / floor, torch.where(local > 0, torch.inf, 1.0))
        rows.append({"window": window, "share_found": float((ratio <= 1 + tolerance).float().mean()),
                     "mean_ratio": float(ratio.mean())})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ translation study
def translated_toy_root(data_root, translation: float) -> Path:
    """Where the toy set with pose jitter ``translation`` lives: ``data_root/../toy_translation_<t>``.

    A sibling of the default toy folder, so the default set is never touched.
    """
    return Path(data_root).parent / f"toy_translation_{float(translation):g}"


def make_translated_toy(data_root, translation: float, category: str = "bracket", rotation: float | None = None,
                        seed: int = 0, image_size: int = 128, n_train: int = 16, n_test_good: int = 8,
                        n_test_per_defect: int = 3) -> Path:
    """Write ``category`` of the toy factory with translation jitter ``translation`` (fraction of the image
    side) into :func:`translated_toy_root` and return that root; a folder already written with the same
    settings (its ``toy_factory.json``) is reused, one with other settings is rewritten."""
    root = translated_toy_root(data_root, translation)
    if root.resolve() == Path(data_root).resolve():
        raise ValueError(f"the translated toy set would overwrite data_root {data_root}; pick another data_root.")
    resolved_rotation = toy.DEFAULT_JITTER[category][1] if rotation is None else float(rotation)
    wanted = dict(seed=seed, image_size=image_size, translation=float(translation), rotation=resolved_rotation,
                  n_train=n_train, n_validation=0, n_test_good=n_test_good, n_test_per_defect=n_test_per_defect)
    info_path = root / category / "toy_factory.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if all(info.get(key) == value for key, value in wanted.items()):
            return root
    toy.make_toy_category(root, category, seed=seed, image_size=image_size, translation=float(translation),
                          rotation=resolved_rotation, n_train=n_train, n_validation=0, n_test_good=n_test_good,
                          n_test_per_defect=n_test_per_defect, progress=False)
    return root


def translation_study(data_root, translations: Sequence[float], embedder,
                      methods: Mapping[str, tuple[str, dict]] = DEFAULT_METHODS, category: str = "bracket",
                      rotation: float | None = None, seed: int = 0, image_size: int = 128, n_train: int = 16,
                      n_test_good: int = 8, n_test_per_defect: int = 3, coverage_windows: Sequence[int] = (),
                      coverage_images: int = 4, device: str = "cpu", sigma: float = 4.0
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For each translation jitter: write (or reuse) a toy set, embed it once, score it with each method.

    ``embedder``: a :class:`~iadtutor.embed.PatchEmbedder`. Returns two tables:

    * one row per (translation, method): ``translation``, ``method`` (the label), the three metrics and
      ``search_seconds_per_image``;
    * one row per (translation, window) of ``coverage_windows``: :func:`window_vs_global` on the first
      ``coverage_images`` normal test images (empty when ``coverage_windows`` is empty).
    """
    if not translations:
        raise ValueError("translations must hold at least one value, e.g. [0.0, 0.1, 0.2].")
    rows, coverage = [], []
    for translation in translations:
        root = make_translated_toy(data_root, translation, category, rotation, seed, image_size, n_train,
                                   n_test_good, n_test_per_defect)
        loaded = experiment.load_category(root, category, image_size=image_size, progress=False)
        embedded = experiment.embed_category(loaded, embedder, progress=False)
        table, _ = compare_methods(embedded, methods, device=device, sigma=sigma, seed=seed, timing_repeats=1)
        for label, row in table.iterrows():
            rows.append({"translation": float(translation), "method": label,
                         **{name: row[name] for name in METRICS},
                         "search_seconds_per_image": row["search_seconds_per_image"]})
        if coverage_windows:
            normal = embedded.test[loaded.test.labels == 0][:coverage_images]
            found = window_vs_global(embedded.train, normal, coverage_windows, device=device)
            coverage.append(found.assign(translation=float(translation)))
    coverage_table = (pd.concat(coverage, ignore_index=True)[["translation", "window", "share_found", "mean_ratio"]]
                      if coverage else pd.DataFrame(columns=["translation", "window", "share_found", "mean_ratio"]))
    return pd.DataFrame(rows), coverage_table


# ---------------------------------------------------------------------------------------- K / α sweep
def k_alpha_sweep(embedded: experiment.EmbeddedCategory, ks: Sequence[int] = (1, 3, 5, 10),
                  alphas: Sequence[float] = (0.5, 1.0, 2.0), squared: bool = False, sigma: float = 4.0,
                  search: NeighbourSearch | None = None) -> pd.DataFrame:
    """KNN and LDKNN on the whole memory bank for every ``K`` (and every ``α`` for LDKNN).

    KNN (REB's "vanilla KNN", ``GlobalNN(coreset=1.0, k=K)``): mean distance to the ``K`` nearest bank
    patches. LDKNN (``LDKNN(k=K, alpha=α)``): distance to the nearest bank patch minus α × its local
    density, the mean distance to its ``K`` nearest bank neighbours. Both need only two searches, done
    once for the largest K (:func:`iadtutor.density.neighbour_search`; pass ``search`` if you already
    have one for these embeddings with at least ``max(ks)`` neighbours).

    Returns rows ``method`` (``"KNN"`` / ``"LDKNN"``), ``k``, ``alpha`` (NaN for KNN) and the metrics.
    """
    ks = sorted({int(k) for k in ks})
    alphas = [float(a) for a in alphas]
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be a non-empty list of positive integers; got {ks}.")
    if search is None:
        search = neighbour_search(embedded.train, embedded.test, ks[-1], squared)
    elif search.k_max < ks[-1] or search.test_shape != tuple(embedded.test.shape) or search.squared != squared:
        raise ValueError(f"search must come from these embeddings with squared={squared} and at least "
                         f"{ks[-1]} neighbours; it has {search.k_max}.")

    category = embedded.category
    image_hw = tuple(category.test.masks.shape[-2:])

    def evaluate(patch_scores: torch.Tensor) -> dict:
        maps = anomaly_maps(patch_scores, image_hw, sigma=sigma)
        return experiment.evaluate_scores(category.test, image_scores(patch_scores).numpy(), maps)

    rows = []
    for k in ks:
        metrics = evaluate(search.knn_scores(k))
        rows.append({"method": "KNN", "k": k, "alpha": float("nan"), **{m: metrics[m] for m in METRICS}})
    for k in ks:
        for alpha in alphas:
            metrics = evaluate(search.ldknn_scores(k, alpha))
            rows.append({"method": "LDKNN", "k": k, "alpha": alpha, **{m: metrics[m] for m in METRICS}})
    return pd.DataFrame(rows)
