"""One evaluation path: image -> patch embedding -> patch scores -> anomaly map -> metrics.

Every kNN number of the course goes through :func:`score_category` (notebooks 02-08, ``iadtutor evaluate``,
``iadtutor reproduce``, the translation study and REB's comparison)::

    category = load_category(data_root, "bracket", image_size=128)            # iadtutor.data
    embedded = embed_category(category, PatchEmbedder(backbone, config))      # iadtutor.embed
    result = score_category(embedded, "lwinnn", window=7)                     # iadtutor.knn + iadtutor.metrics
    result.metrics   # {'image_auroc': ..., 'pixel_auroc': ..., 'aupro': ...}

:data:`METHODS` names every kNN method with its scorer class, its parameters and their defaults, and the
backbone taps it embeds; the CLI, ``reproduce`` and the notebooks read it. :func:`evaluate` is the whole
path from a loaded category to the JSON record ``iadtutor evaluate`` prints.

Each method's defaults follow its paper's public code; every difference, with its measured effect, is listed
in ``book/deviations.md``.

The sweeps of the chapters are loops over that path: :func:`compare_methods` and :func:`window_sweep`
(notebooks 02-03), :func:`window_vs_global` (03), :func:`k_alpha_sweep` (04), :func:`embedding_ablation`
(01, LWinNN table 3).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from iadtutor import data, metrics
from iadtutor.density import NeighbourSearch, neighbour_search
from iadtutor.embed import EmbeddingConfig, PatchEmbedder
from iadtutor.knn import (CORESET_RATIO, DEFAULT_SIGMA, LDKNN, FixedPositionNN, GlobalNN, LocalWindowNN, PatchScorer,
                          anomaly_maps, image_scores)

MAX_TRAIN = 750  # LWinNN's code keeps the first 750 training images of a category (LWinNN only)
PATCHCORE_DIMENSION = 1024  # PatchCore's code: each patch's neighbourhood features averaged to 1024 numbers
REB_DIMENSION = 152  # REB's neck: 512 for ResNet18, 1024 for WRN50 in its code; here the taps' 40 + 112 channels


# ------------------------------------------------------------------------------------------- the methods
@dataclass(frozen=True)
class Method:
    """One kNN method: its scorer class, the parameters it reads (with defaults), its embedding (fields of
    :class:`EmbeddingConfig` that differ from LWinNN's), the training-image cap, the chapter (notebook 03)."""

    title: str
    scorer: type
    params: dict
    embedding: dict = field(default_factory=dict)
    max_train: int | None = None
    chapter: str = ""

    @property
    def layers(self) -> tuple[int, ...]:
        return self.embedding.get("layers", EmbeddingConfig.layers)


# PatchCore's and REB's embedding: taps at strides 8 and 16 ("layer 2 + layer 3", REB's "phi_2 + phi_3"),
# 3x3 neighbourhoods averaged to a fixed length (embed.neighbourhood_features).
NEIGHBOURHOOD = {"layers": (1, 2), "aggregation": "neighbourhood"}

METHODS = {
    "spade": Method("SPADE (fixed position)", FixedPositionNN, {}, chapter="02_local_windows"),
    "lwinnn": Method("LWinNN (local window)", LocalWindowNN, {"window": 7}, max_train=MAX_TRAIN,
                     chapter="02_local_windows"),
    "global": Method("Global search on the LWinNN embedding (coreset)", GlobalNN, {"coreset": CORESET_RATIO},
                     chapter="03_local_vs_global"),
    "patchcore": Method("PatchCore (its embedding, global search, coreset)", GlobalNN,
                        {"coreset": CORESET_RATIO, "image_score": "max"},
                        {**NEIGHBOURHOOD, "dimension": PATCHCORE_DIMENSION}, chapter="03_local_vs_global"),
    "knn": Method("KNN (REB's vanilla kNN)", GlobalNN,
                  {"k": 5, "coreset": 1.0, "squared": False, "image_score": "blocks"},
                  {**NEIGHBOURHOOD, "dimension": REB_DIMENSION}, chapter="05_ldknn_density"),
    "ldknn": Method("LDKNN (REB)", LDKNN, {"k": 5, "alpha": 1.0, "coreset": 1.0, "squared": False,
                                          "image_score": "blocks"},
                    {**NEIGHBOURHOOD, "dimension": REB_DIMENSION}, chapter="05_ldknn_density"),
}


def method_config(method: str, image_size: int = 256, **changes) -> EmbeddingConfig:
    """The :class:`EmbeddingConfig` ``method`` embeds with (:data:`METHODS`), plus ``changes`` (notebook 03)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}.")
    return EmbeddingConfig(image_size=image_size, **{**METHODS[method].embedding, **changes})


def methods_table() -> pd.DataFrame:
    """:data:`METHODS` as a table, one row per method: title, scorer class, parameters with their defaults,
    embedding, training-image cap and the notebook that teaches it (notebook 00; the README and book show it too)."""
    return pd.DataFrame([{"method": name, "title": m.title, "scorer": m.scorer.__name__,
                          "parameters": ", ".join(f"{k}={v}" for k, v in m.params.items()) or "-",
                          "embedding": ", ".join(f"{k}={v}" for k, v in m.embedding.items()) or "LWinNN's",
                          "max_train": m.max_train or "all", "notebook": m.chapter}
                         for name, m in METHODS.items()]).set_index("method")


def method_params(method: str, **params) -> dict:
    """The parameters of ``method`` with its defaults filled in; ``None`` means the default (notebook 03).

    A parameter the method does not read is an error that names the method's parameters.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}.")
    defaults = METHODS[method].params
    unknown = [name for name, value in params.items() if name not in defaults and value is not None]
    if unknown:
        raise ValueError(f"method {method!r} has no parameter {unknown[0]!r}; its parameters: "
                         f"{', '.join(defaults) or 'none'}.")
    return {name: default if params.get(name) is None else type(default)(params[name])
            for name, default in defaults.items()}


def make_scorer(method: str, device="cpu", seed: int = 0, progress: bool = False, **params) -> PatchScorer:
    """A fresh scorer of one of :data:`METHODS` (``params``: see :func:`method_params`) (notebook 03)."""
    resolved = method_params(method, **params)
    extra = {"seed": seed} if issubclass(METHODS[method].scorer, GlobalNN) else {}
    return METHODS[method].scorer(**resolved, **extra, device=device, progress=progress)


# ------------------------------------------------------------------------------------------- the data
@dataclass
class Category:
    """A category's images in memory: ``train`` / ``test`` are :class:`iadtutor.data.LoadedSplit` (notebook 00)."""

    name: str
    layout: str
    train: "data.LoadedSplit"
    test: "data.LoadedSplit"
    validation: "data.LoadedSplit | None" = None


def load_category(data_root, category: str, image_size: int = 256, keep_aspect: bool = True,
                  layout: str = "auto", max_train: int | None = None, max_test: int | None = None,
                  with_validation: bool = False, progress: bool = True) -> Category:
    """Read one category from disk into a :class:`Category` (notebook 00): the shorter side resized to
    ``image_size`` keeping the aspect ratio (LWinNN's choice; ``keep_aspect=False``: a square), the first
    ``max_train`` training images (``None``: all)."""
    splits = data.find_category(data_root, category, layout=layout)
    load = dict(image_size=image_size, keep_aspect=keep_aspect, progress=progress)
    train = data.load_split(splits.train, max_images=max_train, **load)
    load["output_shape"] = tuple(train.images.shape[-2:])  # one shape for every split (keep_aspect, KolektorSDD)
    test = data.load_split(splits.test, max_images=max_test, **load)
    validation = data.load_split(splits.validation, **load) if with_validation and splits.validation else None
    return Category(category, splits.layout, train, test, validation)


@dataclass
class EmbeddedCategory:
    """Patch embeddings of a category: ``train`` ``(M, C, h, w)``, ``test`` ``(N, C, h, w)``; seconds; the
    config they were made with (``None``: not known) (notebook 01)."""

    category: Category
    train: torch.Tensor
    test: torch.Tensor
    embed_train_seconds: float = 0.0
    embed_test_seconds: float = 0.0
    config: EmbeddingConfig | None = None


def embed_category(category: Category, embedder: PatchEmbedder, batch_size: int = 16,
                   progress: bool = True) -> EmbeddedCategory:
    """Embed the train and test images of ``category``; times each split (notebook 01)."""
    start = time.perf_counter()
    train = embedder.embed(category.train.images, batch_size, progress, description="embed train")
    middle = time.perf_counter()
    test = embedder.embed(category.test.images, batch_size, progress, description="embed test")
    end = time.perf_counter()
    return EmbeddedCategory(category, train, test, middle - start, end - middle, embedder.config)


# ------------------------------------------------------------------------------------------- the path
@dataclass
class ScoreResult:
    """What one method produced on one category (:func:`score_category`) (notebook 02)."""

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
    """Image AUROC, pixel AUROC and AUPRO (fractions), the AUROC per anomaly kind where the test set has
    both (MVTec LOCO, the toy ``box``), and if ``bootstrap`` (resamples) their 95 % bootstrap intervals
    ``image_auroc_ci``, ``pixel_auroc_ci`` and ``aupro_ci`` as ``[low, high]`` (notebooks 02, 04).

    On MVTec LOCO data (``test.regions`` holds defect regions) also ``spro``: LOCO's official sPRO up to a
    false-positive rate of 0.05 (the one LOCO AD reports), the FPR over every defect-free pixel as the
    official code counts it (:func:`iadtutor.metrics.spro`, notebook 07).
    """
    labels, masks = test.labels.numpy(), test.masks.numpy()
    result = metrics.evaluate_maps(labels, scores, masks, maps)
    result.update(metrics.auroc_by_kind([data.anomaly_kind(t) for t in test.defect_types], labels, scores))
    if (regions := test.regions) is not None and len(regions):
        result["spro"] = metrics.spro(regions.masks, regions.images, regions.saturation, maps, fpr_limit=0.05)
    if bootstrap:
        result["image_auroc_ci"] = list(metrics.image_auroc_ci(labels, scores, n_boot=bootstrap, seed=seed))
        result["pixel_auroc_ci"] = list(metrics.pixel_auroc_ci(masks, maps, n_boot=bootstrap, seed=seed))
        result["aupro_ci"] = list(metrics.aupro_ci(masks, maps, n_boot=bootstrap, seed=seed))
    return {key: (float(value) if np.isscalar(value) else value) for key, value in result.items()}


def score_category(embedded: EmbeddedCategory, method: str | PatchScorer, device="cpu",
                   sigma: float = DEFAULT_SIGMA, bootstrap: int = 0, seed: int = 0, progress: bool = False,
                   **params) -> ScoreResult:
    """Fit ``method`` (a name of :data:`METHODS` with its ``params``, or an unfitted scorer object) on the
    train embeddings, score the test set, build the anomaly maps (``sigma`` px blur) and measure them (notebook 02).

    ``train_seconds`` counts embedding the train images plus fitting; ``test_seconds_per_image`` counts
    embedding, scoring and building the anomaly maps of the test images, divided by their number.
    """
    if isinstance(method, PatchScorer):
        scorer, name, params = method, type(method).__name__, {}
    else:
        params = method_params(method, **params)
        check_embedding(embedded, method)
        scorer, name = make_scorer(method, device=device, seed=seed, progress=progress, **params), method
    start = time.perf_counter()
    scorer.fit(embedded.train)
    fitted = time.perf_counter()
    patch_scores = scorer.score(embedded.test)
    maps = anomaly_maps(patch_scores, tuple(embedded.category.test.masks.shape[-2:]), sigma=sigma)
    scored = time.perf_counter()
    scores = scorer.image_scores(patch_scores, embedded.test).numpy()
    return ScoreResult(
        method=name, params=params, patch_scores=patch_scores, maps=maps, image_scores=scores,
        metrics=evaluate_scores(embedded.category.test, scores, maps, bootstrap=bootstrap, seed=seed),
        train_seconds=embedded.embed_train_seconds + (fitted - start),
        test_seconds_per_image=(embedded.embed_test_seconds + scored - fitted) / len(embedded.test),
        scorer=scorer,
    )


def check_embedding(embedded: EmbeddedCategory, method: str) -> None:
    """A method that has an embedding of its own (:data:`METHODS`) must not score another one: one clear
    sentence instead of numbers that mean something else (notebook 03)."""
    wanted = METHODS[method].embedding.get("aggregation", "average")
    if embedded.config is not None and embedded.config.aggregation != wanted:
        raise ValueError(f"method {method!r} scores aggregation={wanted!r} embeddings but these were made with "
                         f"aggregation={embedded.config.aggregation!r}; embed with pipeline.method_config("
                         f"{method!r}){' (or score them with method global)' if method == 'patchcore' else ''}.")


def record_header(category: Category, method: str, backbone, image_size: int, device, seed: int) -> dict:
    """The first fields of every ``iadtutor evaluate`` record, kNN or ULSAD (DESIGN.md; notebook 08)."""
    return {"method": method, "backbone": backbone.name, "category": category.name, "layout": category.layout,
            "n_train": len(category.train.labels), "n_test": len(category.test.labels), "image_size": image_size,
            "device": str(device), "seed": seed}


def evaluate(category: Category, method: str, backbone, config: EmbeddingConfig | None = None, *,
             embedded: EmbeddedCategory | None = None, batch_size: int = 16, device="cpu", seed: int = 0,
             bootstrap: int = 0, progress: bool = False, **params) -> dict:
    """The whole path for one kNN method on a loaded category, as the JSON record ``iadtutor evaluate``
    prints: embed (unless ``embedded`` is given, e.g. shared by several runs), fit, score, map, measure.
    (Notebook 08, `iadtutor evaluate`.)

    ``config`` defaults to the method's embedding (:data:`METHODS`) at the category's image size.
    """
    method_params(method, **params)  # bad input fails before any embedding
    if config is None:
        config = method_config(method, image_size=int(min(category.train.images.shape[-2:])))
    if embedded is None:
        torch.manual_seed(seed)
        embedded = embed_category(category, PatchEmbedder(backbone, config), batch_size, progress)
    scored = score_category(embedded, method, device=device, bootstrap=bootstrap, seed=seed, progress=progress,
                            **params)
    return {**record_header(category, method, backbone, config.image_size, device, seed), **scored.metrics,
            "train_seconds": round(scored.train_seconds, 4),
            "test_seconds_per_image": round(scored.test_seconds_per_image, 5),
            "embedding": config.as_dict(), "params": scored.params}


# ------------------------------------------------------------------------------------------- the sweeps
def search_seconds_per_image(scorer, test_embeddings: torch.Tensor, repeats: int = 3) -> float:
    """Seconds per test image of ``scorer.score(test_embeddings)`` (the search alone), the fastest of
    ``repeats`` runs: on a busy machine the fastest run is the least disturbed one (notebook 02)."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1; got {repeats}.")
    fastest = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        scorer.score(test_embeddings)
        fastest = min(fastest, time.perf_counter() - start)
    return fastest / len(test_embeddings)


def standard_methods(window: int = 7, coreset: float = CORESET_RATIO) -> dict[str, tuple[str, dict]]:
    """The three families of search on one embedding, ``{label: (method, params)}``: fixed position, local
    window δ, global with a coreset (PatchCore's search, not its embedding: method ``global``) (notebook 03)."""
    return {
        "SPADE (fixed position)": ("spade", {}),
        f"LWinNN (δ = {window})": ("lwinnn", {"window": int(window)}),
        f"global search ({coreset:.0%} coreset)": ("global", {"coreset": float(coreset)}),
    }


def metric_columns(found: dict) -> dict:
    """The metrics of :data:`iadtutor.metrics.METRICS` of one result and, where measured, their intervals
    ``<metric>_ci`` (a table row; notebooks 02-05)."""
    return {key: found[key] for name in metrics.METRICS for key in (name, f"{name}_ci") if key in found}


def compare_methods(embedded: EmbeddedCategory, methods: Mapping[str, tuple[str, dict]] | None = None,
                    device="cpu", sigma: float = DEFAULT_SIGMA, seed: int = 0, timing_repeats: int = 3,
                    bootstrap: int = 0) -> tuple[pd.DataFrame, dict[str, ScoreResult]]:
    """Score the same embeddings with each of ``methods`` (``{label: (method, params)}``, default
    :func:`standard_methods`) (notebook 03).

    Returns a table indexed by label with the metrics (and their intervals ``<metric>_ci`` with
    ``bootstrap`` resamples), ``fit_seconds`` (e.g. building the coreset),
    ``search_seconds_per_image`` and ``test_seconds_per_image`` (embedding, search and map), and the
    :class:`ScoreResult` of each label.
    """
    methods = standard_methods() if methods is None else methods
    if not methods:
        raise ValueError("methods must name at least one scorer, e.g. {'SPADE': ('spade', {})}.")
    rows, results = [], {}
    for label, (method, params) in methods.items():
        result = score_category(embedded, method, device=device, sigma=sigma, seed=seed, bootstrap=bootstrap,
                                **params)
        results[label] = result
        rows.append({"method": label, **metric_columns(result.metrics),
                     "fit_seconds": result.train_seconds - embedded.embed_train_seconds,
                     "search_seconds_per_image": search_seconds_per_image(result.scorer, embedded.test, timing_repeats),
                     "test_seconds_per_image": result.test_seconds_per_image})
    return pd.DataFrame(rows).set_index("method"), results


def _check_windows(windows: Sequence[int]) -> list[int]:
    windows = [int(w) for w in windows]
    if not windows or any(w < 1 for w in windows):
        raise ValueError(f"windows must be a non-empty list of positive integers; got {windows}.")
    return windows


def window_sweep(embedded: EmbeddedCategory, windows: Sequence[int] = (1, 3, 5, 7, 9), device="cpu",
                 sigma: float = DEFAULT_SIGMA, timing_repeats: int = 3, bootstrap: int = 0) -> pd.DataFrame:
    """LWinNN for each window size δ (LWinNN fig. 5; notebooks 02-03): one row per δ, in the order given.

    Columns: ``window``, the metrics (and ``<metric>_ci`` with ``bootstrap``), ``search_seconds_per_image`` (the part δ changes; fastest of
    ``timing_repeats`` runs) and ``test_seconds_per_image`` (with embedding and map). δ = 1 is SPADE.
    """
    rows = []
    for window in _check_windows(windows):
        result = score_category(embedded, "lwinnn", device=device, sigma=sigma, window=window, bootstrap=bootstrap)
        rows.append({"window": window, **metric_columns(result.metrics),
                     "search_seconds_per_image": search_seconds_per_image(result.scorer, embedded.test, timing_repeats),
                     "test_seconds_per_image": result.test_seconds_per_image})
    return pd.DataFrame(rows)


def window_vs_global(train_embeddings: torch.Tensor, test_embeddings: torch.Tensor,
                     windows: Sequence[int] = (1, 3, 5, 7, 9, 15, 31), tolerance: float = 0.05,
                     device="cpu") -> pd.DataFrame:
    """How large must the window be to find a match as good as a search of the whole memory bank?
    (notebook 03)

    For each test patch ``(N, C, h, w)`` compare its LWinNN distance with window δ, ``d_δ``, with its
    global nearest-neighbour distance ``d_global`` (≤ ``d_δ``). One row per δ: ``window``,
    ``share_found`` (fraction with ``d_δ ≤ (1 + tolerance)·d_global``) and ``mean_ratio`` (mean
    ``d_δ / d_global``; 1 = the window loses nothing).
    """
    windows = _check_windows(windows)
    global_distance = GlobalNN(coreset=1.0, device=device).fit(train_embeddings).score(test_embeddings)
    floor = global_distance.clamp_min(1e-12)  # a test patch identical to a train patch has distance 0
    rows = []
    for window in windows:
        local = LocalWindowNN(window=window, device=device).fit(train_embeddings).score(test_embeddings)
        ratio = torch.where(global_distance > 0, local / floor, torch.where(local > 0, torch.inf, 1.0))
        rows.append({"window": window, "share_found": float((ratio <= 1 + tolerance).float().mean()),
                     "mean_ratio": float(ratio.mean())})
    return pd.DataFrame(rows)


def k_alpha_sweep(embedded: EmbeddedCategory, ks: Sequence[int] = (1, 3, 5, 10),
                  alphas: Sequence[float] = (0.5, 1.0, 2.0), squared: bool = False, sigma: float = DEFAULT_SIGMA,
                  search: NeighbourSearch | None = None,
                  image_score: str = METHODS["ldknn"].params["image_score"], bootstrap: int = 0) -> pd.DataFrame:
    """KNN and LDKNN on the whole memory bank for every ``K`` (and every ``α`` for LDKNN) (REB fig. 5;
    notebook 05), from two neighbour searches done once for the largest K
    (:func:`iadtutor.density.neighbour_search`; pass ``search`` to reuse one).

    Returns rows ``method`` (``"KNN"`` / ``"LDKNN"``), ``k``, ``alpha`` (NaN for KNN) and the metrics (and
    ``<metric>_ci`` with ``bootstrap`` resamples), with
    image scores by REB's rule (``image_score``, :func:`iadtutor.knn.image_scores`).
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
    test = embedded.category.test

    def measure(patch_scores: torch.Tensor) -> dict:
        maps = anomaly_maps(patch_scores, tuple(test.masks.shape[-2:]), sigma=sigma)
        found = evaluate_scores(test, image_scores(patch_scores, image_score).numpy(), maps, bootstrap=bootstrap)
        return metric_columns(found)

    rows = [{"method": "KNN", "k": k, "alpha": float("nan"), **measure(search.knn_scores(k))} for k in ks]
    rows += [{"method": "LDKNN", "k": k, "alpha": alpha, **measure(search.ldknn_scores(k, alpha))}
             for k in ks for alpha in alphas]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------- the embedding ablation (LWinNN table 3)
# switch name -> (EmbeddingConfig field, the paper's choice, the alternative, how to say each)
SWITCHES = {
    "normalisation": ("normalize", True, False, ("ImageNet mean/std", "none")),
    "aspect ratio": ("keep_aspect", True, False, ("kept", "square resize")),
    "pooling": ("pool", True, False, ("3×3 average", "none")),
    "interpolation": ("interpolation", "bilinear", "nearest", ("bilinear", "nearest")),
}


def paper_config(image_size: int = 256) -> EmbeddingConfig:
    """The LWinNN paper's preprocessing of table 3: normalised, aspect kept, pooled, bilinear (notebook 01)."""
    return EmbeddingConfig(image_size=image_size, **{field: on for field, on, _, _ in SWITCHES.values()})


def switch_configs(base: EmbeddingConfig, design: str = "one_at_a_time") -> list[tuple[str, EmbeddingConfig]]:
    """``(label, config)`` pairs to run (notebook 01).

    ``"one_at_a_time"``: ``base`` first (``"paper's choice"``), then ``base`` with one switch flipped
    (``"<switch>: <alternative>"``). ``"full"``: all 16 combinations, labelled by the switches that
    differ from the paper's choice.
    """
    if design == "one_at_a_time":
        runs = [("paper's choice", base)]
        for name, (field_name, on, off, (on_text, off_text)) in SWITCHES.items():
            flipped = getattr(base, field_name) == on
            runs.append((f"{name}: {off_text if flipped else on_text}",
                         replace(base, **{field_name: off if flipped else on})))
        return runs
    if design == "full":
        runs = []
        for choices in itertools.product((True, False), repeat=len(SWITCHES)):
            settings = {f: (on if keep else off) for keep, (f, on, off, _) in zip(choices, SWITCHES.values())}
            flipped = [f"{name}: {texts[1]}" for keep, (name, (_, _, _, texts)) in zip(choices, SWITCHES.items())
                       if not keep]
            runs.append((", ".join(flipped) or "paper's choice", replace(base, **settings)))
        return runs
    raise ValueError(f"design must be 'one_at_a_time' or 'full'; got {design!r}.")


def embedding_ablation(data_root, category: str, backbone, image_size: int = 256, window: int = 5,
                       max_train: int | None = MAX_TRAIN, design: str = "one_at_a_time", device="cpu",
                       base: EmbeddingConfig | None = None, progress: bool = False, bootstrap: int = 0) -> pd.DataFrame:
    """LWinNN (window ``δ``) on one category under each config of :func:`switch_configs` (notebook 01).

    The category is read once per aspect setting and the backbone runs once per distinct (images,
    normalisation, taps): pooling and interpolation reuse its taps (:meth:`PatchEmbedder.finish`). One row
    per config: ``setting``, the four switch values, the metrics (and ``<metric>_ci`` with ``bootstrap``
    resamples) and ``seconds`` (embedding + scoring; a reused backbone pass counts for the first config only).
    """
    base = replace(base or paper_config(image_size), image_size=image_size)
    loaded, taps, rows = {}, {}, []
    for label, config in switch_configs(base, design):
        start = time.perf_counter()
        if config.keep_aspect not in loaded:
            loaded[config.keep_aspect] = load_category(data_root, category, image_size=image_size,
                                                       keep_aspect=config.keep_aspect, max_train=max_train,
                                                       progress=progress)
            other = loaded.get(not config.keep_aspect)
            if other is not None and _same_images(other, loaded[config.keep_aspect]):
                loaded[config.keep_aspect] = other  # square images: keeping the aspect changes nothing
        images = loaded[config.keep_aspect]
        embedder = PatchEmbedder(backbone, config)
        key = (id(images), config.normalize, config.layers)
        if key not in taps:
            taps[key] = (embedder.taps(images.train.images), embedder.taps(images.test.images))
        embedded = EmbeddedCategory(images, *(embedder.finish(split_taps) for split_taps in taps[key]))
        result = score_category(embedded, "lwinnn", device=device, window=window, bootstrap=bootstrap)
        rows.append({"setting": label, **{name: getattr(config, f) for name, (f, *_rest) in SWITCHES.items()},
                     **metric_columns(result.metrics),
                     "seconds": time.perf_counter() - start})
    return pd.DataFrame(rows)


def _same_images(a: Category, b: Category) -> bool:
    return all(x.images.shape == y.images.shape and torch.equal(x.images, y.images)
               for x, y in ((a.train, b.train), (a.test, b.test)))


def table3(results: pd.DataFrame) -> pd.DataFrame:
    """Average a ``design="full"`` ablation per switch and choice like LWinNN's table 3: one row per
    (switch, choice) with the mean and standard deviation of each metric over the runs (notebook 01)."""
    rows = []
    for name, (_, on, off, texts) in SWITCHES.items():
        for value, text in ((on, texts[0]), (off, texts[1])):
            subset = results[results[name] == value]
            stats = {}
            for metric in metrics.METRICS:
                stats.update({metric: subset[metric].mean(), f"{metric}_std": subset[metric].std(ddof=0)})
            if len(subset):
                rows.append({"switch": name, "choice": text, "runs": len(subset), **stats})
    return pd.DataFrame(rows)
