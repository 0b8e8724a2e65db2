"""How good is an anomaly detector? Image AUROC, pixel AUROC, AUPRO, sPRO and bootstrap intervals.

AUROC is the chance that a randomly picked anomalous example (an image, or a pixel) gets a higher score
than a randomly picked normal one: 1 is perfect, 0.5 is guessing. Pixel AUROC lets large defects
dominate, because they hold most anomalous pixels. AUPRO (area under the per-region-overlap curve)
weighs every defect equally: lower a threshold on the anomaly maps step by step; at each step measure
which fraction of each connected ground-truth region is above the threshold (its "overlap"), average
over all regions (a thin scratch counts as much as a large stain), and plot that average against the
false positive rate on normal pixels. AUPRO is the area under this curve for FPR from 0 to 0.3, divided
by 0.3, so a perfect map scores 1 and random scores about 0.15 (for random scores PRO = FPR).

Normalisation follows Bergmann et al., "The MVTec Anomaly Detection Dataset" (IJCV 2021) and their
evaluation script: regions are 8-connected components of each mask, the curve is interpolated at exactly
FPR = 0.3 and the area is divided by 0.3. Several public implementations divide by the last FPR the
curve reached below 0.3 instead, or integrate up to the first point past 0.3: on a coarse curve the first
lowers the number and the second inflates it (notebook 04 measures both).

MVTec LOCO AD replaces the PRO by the *saturated* PRO (:func:`spro`, Bergmann et al., IJCV 2022): a region
counts as fully found once a given number of its pixels is called (a missing part can be shown anywhere
in the empty place), and each ground-truth file is one region.

All functions take numpy arrays or torch tensors: ``labels (N,)`` with 0 = normal and 1 = anomalous,
``scores (N,)``, ``masks (N, H, W)`` bool and ``maps (N, H, W)`` float (higher = more anomalous).

Example::

    >>> masks = np.zeros((2, 4, 4), bool); masks[0, :2, :2] = True
    >>> aupro(masks, masks.astype(float))
    1.0
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from scipy.integrate import trapezoid
from sklearn.metrics import roc_auc_score

# The numbers every table of the course reports (fractions in [0, 1]), and how figures title them.
METRICS = ("image_auroc", "pixel_auroc", "aupro")
METRIC_TITLES = {
    "image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "aupro": "AUPRO",
    "image_auroc_structural": "image AUROC structural", "image_auroc_logical": "image AUROC logical",
    "image_auroc_mean_of_kinds": "image AUROC (structural + logical) / 2",
}
KIND_METRICS = ("image_auroc_structural", "image_auroc_logical")

# MVTec AD's evaluation groups mask pixels into regions with 8-connectivity (diagonal neighbours touch).
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


# --------------------------------------------------------------------------------------- Input checks
def _as_numpy(array, name: str) -> np.ndarray:
    """A numpy view of a numpy array, torch tensor or nested list."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        if array.dtype in (torch.float16, torch.bfloat16):
            array = array.float()
        array = array.numpy()
    array = np.asarray(array)
    if array.dtype == object:
        raise TypeError(f"{name} must be a numeric numpy array or torch tensor; got {array.dtype}.")
    return array


def _as_binary(array: np.ndarray, name: str) -> np.ndarray:
    """Bool copy of a ground-truth array holding only 0/1 (or False/True)."""
    if array.dtype == bool:
        return array
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must be binary (bool, or 0 = normal and 1 = anomalous); "
                         f"got values such as {np.unique(array)[:5].tolist()}.")
    return array != 0


def _as_scores(array: np.ndarray, name: str) -> np.ndarray:
    """Finite floating-point scores (integer scores are converted to float64)."""
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values; every score must be a finite number.")
    return array


def _check_labels_scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = _as_numpy(labels, "labels"), _as_numpy(scores, "scores")
    if labels.ndim != 1 or scores.shape != labels.shape:
        raise ValueError(f"labels and scores must both have shape (N,); got {labels.shape} and {scores.shape}.")
    if len(labels) == 0:
        raise ValueError("labels and scores are empty; they need one entry per image.")
    return _as_binary(labels, "labels"), _as_scores(scores, "scores")


def _check_masks_maps(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    masks, maps = _as_numpy(masks, "masks"), _as_numpy(maps, "maps")
    if masks.ndim != 3 or maps.shape != masks.shape:
        raise ValueError(f"masks and maps must both have shape (N, H, W); got {masks.shape} and {maps.shape}.")
    if masks.size == 0:
        raise ValueError(f"masks and maps are empty (shape {masks.shape}); they need at least one pixel.")
    return _as_binary(masks, "masks"), _as_scores(maps, "maps")


def _check_fpr_limit(fpr_limit: float) -> None:
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be in (0, 1]; got {fpr_limit}.")


def _pixel_metric_undefined(masks: np.ndarray, metric_name: str) -> bool:
    """Warn and return True when the masks hold only one class of pixels."""
    if masks.any() and not masks.all():
        return False
    missing = "anomalous pixels (only normal images?)" if not masks.any() else "normal pixels"
    warnings.warn(f"{metric_name}: the masks contain no {missing}, so the metric is undefined; returning nan.",
                  RuntimeWarning, stacklevel=3)
    return True


# ---------------------------------------------------------------------------------------------- AUROC
def image_auroc(labels, scores) -> float:
    """Image-level AUROC of ``scores (N,)`` against ``labels (N,)`` (0 = normal; used from notebook 01 on)."""
    labels, scores = _check_labels_scores(labels, scores)
    if labels.all() or not labels.any():
        raise ValueError("image_auroc needs both normal (0) and anomalous (1) images in labels, "
                         f"but all {len(labels)} labels are {int(labels[0])}.")
    return float(roc_auc_score(labels, scores))


def pixel_auroc(masks, maps) -> float:
    """Pixel-level AUROC: all pixels of all images pooled, ``masks (N, H, W)`` vs ``maps (N, H, W)``; nan (with
    a warning) when the masks hold no anomalous or no normal pixels (used from notebook 01 on)."""
    masks, maps = _check_masks_maps(masks, maps)
    if _pixel_metric_undefined(masks, "pixel_auroc"):
        return float("nan")
    return float(roc_auc_score(masks.ravel(), maps.ravel()))


# -------------------------------------------------------------------------------- PRO curve and AUPRO
def label_regions(masks) -> tuple[np.ndarray, int]:
    """Connected defect regions of each mask: ``(N, H, W)`` int labels (0 = normal) and their count (notebook 02).

    Regions are 8-connected inside one image and never span two images; labels run 1..count over
    the whole stack.
    """
    masks = _as_binary(_as_numpy(masks, "masks"), "masks")
    # A 3-D structure whose only non-zero slice is the middle one connects pixels within an image only.
    within_image = np.zeros((3, 3, 3), dtype=bool)
    within_image[1] = EIGHT_CONNECTED
    regions, n_regions = ndimage.label(masks, structure=within_image)
    return regions, int(n_regions)


def _cut_curve_at(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep the points with fpr <= fpr_limit and end the curve at exactly fpr_limit (linear interp.)."""
    n_kept = np.searchsorted(fpr, fpr_limit, side="right")  # fpr is non-decreasing and starts at 0
    fpr_kept, pro_kept = fpr[:n_kept], pro[:n_kept]
    if fpr_kept[-1] < fpr_limit:
        f0, f1, p0, p1 = fpr[n_kept - 1], fpr[n_kept], pro[n_kept - 1], pro[n_kept]
        fpr_kept = np.append(fpr_kept, fpr_limit)
        pro_kept = np.append(pro_kept, p0 + (fpr_limit - f0) / (f1 - f0) * (p1 - p0))
    return fpr_kept, pro_kept


@dataclass(frozen=True)
class _RankedPixels:
    """Every pixel of ``maps`` from the highest score down (pixels ``P = N x H x W``), for the PRO curve."""
    order: np.ndarray            # (P,) flat pixel indices, highest score first
    scores: np.ndarray           # (P,) their scores
    regions: np.ndarray          # (P,) their ground-truth region (0: normal, 1..R: connected regions)
    region_of_pixel: np.ndarray  # (P,) the region of every pixel in the flat order of maps
    region_sizes: np.ndarray     # (R + 1,) pixels per region, index 0 the normal ones
    n_called: np.ndarray         # pixels called at each threshold: 0, then the end of each run of equal scores


def _rank_pixels(masks: np.ndarray, maps: np.ndarray) -> _RankedPixels:
    regions, _ = label_regions(masks)
    region_of_pixel = regions.ravel()
    order = np.argsort(maps.ravel())[::-1]
    scores = maps.ravel()[order]
    return _RankedPixels(order, scores, region_of_pixel[order], region_of_pixel, np.bincount(region_of_pixel),
                         _threshold_stops(scores))


def _threshold_stops(sorted_scores: np.ndarray) -> np.ndarray:
    """Pixels called at each threshold of a curve over ``sorted_scores`` (highest first): 0, then the end of each run
    of equal scores (they are called together), the last being every pixel."""
    run_ends = np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]) + 1
    return np.concatenate([[0], run_ends, [sorted_scores.size]])


def pro_curve(masks, maps, fpr_limit: float = 0.3, n_thresholds: int | None = None):
    """Per-region-overlap curve of anomaly ``maps (N, H, W)`` against ``masks (N, H, W)`` (notebook 02).

    A pixel is called anomalous when its score is >= the threshold. For each threshold,
    ``fpr`` = called normal pixels / all normal pixels (over all images) and ``pro`` = mean over all
    connected ground-truth regions (of all images) of the fraction of the region that is called.

    Thresholds are every distinct score (exact curve, the default) or ``n_thresholds`` evenly spaced
    scores from the highest to the lowest. The curve starts at (0, 0), is cut at ``fpr_limit``
    (1 keeps it whole) and ends at exactly ``fpr_limit``, interpolated linearly.

    Returns ``(fpr (T,), pro (T,))``, both non-decreasing. Raises ValueError when the masks hold no
    anomalous or no normal pixels, because the curve is then undefined.

    Cost: one sort of all N*H*W scores plus cumulative sums; no loop over thresholds.
    """
    masks, maps = _check_masks_maps(masks, maps)
    _check_fpr_limit(fpr_limit)
    if not masks.any() or masks.all():
        raise ValueError("pro_curve needs masks with both anomalous and normal pixels.")
    if n_thresholds is not None and n_thresholds < 2:
        raise ValueError(f"n_thresholds must be None or at least 2; got {n_thresholds}.")

    ranked = _rank_pixels(masks, maps)
    region_sizes = ranked.region_sizes  # index 0 counts the normal pixels
    n_normal, n_regions = region_sizes[0], len(region_sizes) - 1

    # When a pixel of region r gets called, the PRO rises by 1 / (n_regions * size of r);
    # when a normal pixel gets called, the false positive count rises by 1.
    pro_step_of_region = 1.0 / (n_regions * region_sizes)
    pro_step_of_region[0] = 0.0

    # Lowering the threshold calls pixels in order of decreasing score: after the first c pixels of
    # this order are called, false_positives[c] and overlap[c] hold the counts so far.
    sorted_scores, sorted_regions = ranked.scores, ranked.regions
    false_positives = np.concatenate([[0], np.cumsum(sorted_regions == 0)])
    overlap = np.concatenate([[0.0], np.cumsum(pro_step_of_region[sorted_regions])])

    n_pixels = sorted_scores.size
    if n_thresholds is None:
        n_called = ranked.n_called
    else:
        thresholds = np.linspace(sorted_scores[0], sorted_scores[-1], n_thresholds)
        ascending = sorted_scores[::-1]
        n_called = n_pixels - np.searchsorted(ascending, thresholds, side="left")
        n_called = np.concatenate([[0], n_called])  # threshold above every score: the point (0, 0)

    fpr = false_positives[n_called] / n_normal
    pro = np.minimum(overlap[n_called], 1.0)  # the sum of the steps may exceed 1 by rounding
    return _cut_curve_at(fpr, pro, fpr_limit)


def aupro(masks, maps, fpr_limit: float = 0.3, n_thresholds: int | None = None) -> float:
    """Area under the PRO curve (:func:`pro_curve`) for FPR in [0, fpr_limit], divided by ``fpr_limit`` (a value
    in [0, 1]); nan (with a warning) when the masks hold no anomalous or no normal pixels (used from notebook 01 on)."""
    masks, maps = _check_masks_maps(masks, maps)
    _check_fpr_limit(fpr_limit)
    if _pixel_metric_undefined(masks, "aupro"):
        return float("nan")
    fpr, pro = pro_curve(masks, maps, fpr_limit=fpr_limit, n_thresholds=n_thresholds)
    return float(trapezoid(pro, fpr) / fpr_limit)


# ------------------------------------------------------------------------------- sPRO (MVTec LOCO AD)
def saturation_area(region_area, saturation_threshold: float, relative_saturation: bool) -> np.ndarray:
    """Pixels of a defect region that must be called for its overlap to saturate at 1 (MVTec LOCO, notebook 07).

    ``relative_saturation``: ``saturation_threshold`` is a fraction of the region's area; otherwise it is
    a number of pixels, capped at the region's area. Values come from the category's
    ``defects_config.json``, per defect (ground-truth pixel value).
    """
    area = np.asarray(region_area, dtype=float)
    if relative_saturation:
        return saturation_threshold * area
    return np.minimum(float(saturation_threshold), area)


def spro_curve(region_masks, region_images, saturation, maps, fpr_limit: float = 0.05,
               good_images_only: bool = False):
    """Saturated per-region-overlap curve (MVTec LOCO AD's official metric) of ``maps (N, H, W)`` (notebook 07).

    ``region_masks (R, H, W)`` bool: one ground-truth *file* per defect (a LOCO region may consist of
    several blobs, and regions of one image may overlap); ``region_images (R,)``: the index into ``maps``
    of each region's image; ``saturation (R,)``: its saturation area in pixels (:func:`saturation_area`).
    Images that no region points to are the good ones.

    For a threshold ``t`` (pixels with score >= t are called): ``spro = mean over regions of
    min(called pixels of the region / saturation, 1)``; ``fpr = called defect-free pixels / all
    defect-free pixels``, where defect-free means outside every region of its image, over all images (as
    the official evaluation code does); ``good_images_only=True`` counts the good images' pixels only.
    Thresholds are every distinct score, as in :func:`pro_curve`; the curve starts at (0, 0) and ends at
    exactly ``fpr_limit`` (interpolated). Returns ``(fpr (T,), spro (T,))``.
    """
    _check_fpr_limit(fpr_limit)
    maps = _as_scores(_as_numpy(maps, "maps"), "maps")
    region_masks = _as_binary(_as_numpy(region_masks, "region_masks"), "region_masks")
    region_images = _as_numpy(region_images, "region_images").astype(int)
    saturation = _as_numpy(saturation, "saturation").astype(float)
    n_regions = len(region_masks)
    if maps.ndim != 3 or region_masks.ndim != 3 or region_masks.shape[1:] != maps.shape[1:]:
        raise ValueError(f"spro_curve: maps must be (N, H, W) and region_masks (R, H, W) of the same H, W; "
                         f"got {maps.shape} and {region_masks.shape}.")
    if n_regions == 0 or region_images.shape != (n_regions,) or saturation.shape != (n_regions,):
        raise ValueError(f"spro_curve needs at least one region, with one image index and one saturation "
                         f"area each; got {n_regions} masks, {region_images.shape} and {saturation.shape}.")
    if region_images.min() < 0 or region_images.max() >= len(maps):
        raise ValueError(f"region_images must index the {len(maps)} maps; got values up to {region_images.max()}.")
    if (saturation <= 0).any() or not region_masks.reshape(n_regions, -1).any(1).all():
        raise ValueError("spro_curve: every region needs at least one pixel and a positive saturation area.")

    defect_free = np.ones(maps.shape, dtype=bool)
    for mask, image in zip(region_masks, region_images):
        defect_free[image] &= ~mask
    if good_images_only:
        defect_free[np.unique(region_images)] = False
    if not defect_free.any():
        raise ValueError("spro_curve: no defect-free pixel to measure the FPR on (are there good images?).")

    # Events in order of decreasing score: a defect-free pixel adds 1 false positive; the k-th called
    # pixel of region r adds (min(k, s_r) - min(k - 1, s_r)) / (s_r · R) to the sPRO (0 once saturated).
    free_scores = maps[defect_free]
    scores, fp_steps, spro_steps = [free_scores], [np.ones(free_scores.size)], [np.zeros(free_scores.size)]
    for mask, image, sat in zip(region_masks, region_images, saturation):
        region_scores = np.sort(maps[image][mask])[::-1]
        k = np.arange(1, len(region_scores) + 1)
        scores.append(region_scores)
        fp_steps.append(np.zeros(len(region_scores)))
        spro_steps.append((np.minimum(k, sat) - np.minimum(k - 1, sat)) / (sat * n_regions))
    scores = np.concatenate(scores)
    order = np.argsort(scores, kind="stable")[::-1]
    sorted_scores = scores[order]
    false_positives = np.concatenate([[0.0], np.cumsum(np.concatenate(fp_steps)[order])])
    overlap = np.concatenate([[0.0], np.cumsum(np.concatenate(spro_steps)[order])])
    n_called = _threshold_stops(sorted_scores)
    fpr = false_positives[n_called] / free_scores.size
    spro = np.minimum(overlap[n_called], 1.0)
    return _cut_curve_at(fpr, spro, fpr_limit)


def spro(region_masks, region_images, saturation, maps, fpr_limit: float = 0.05,
         good_images_only: bool = False) -> float:
    """Area under the sPRO curve for FPR in [0, ``fpr_limit``], divided by ``fpr_limit`` (MVTec LOCO AD
    reports 0.05; see :func:`spro_curve` for the arguments). 1 is perfect (MVTec LOCO, notebook 07)."""
    fpr, overlap = spro_curve(region_masks, region_images, saturation, maps, fpr_limit, good_images_only)
    return float(trapezoid(overlap, fpr) / fpr_limit)


# --------------------------------------------------------------------- Bootstrap confidence intervals
def _bootstrap_draws(n_items: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n_items)`` indices drawn with replacement; every interval function uses these."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1; got {n_boot}.")
    return np.random.default_rng(seed).integers(0, n_items, size=(n_boot, n_items))


def _percentile_interval(values: np.ndarray, confidence: float, n_boot: int) -> tuple[float, float]:
    if len(values) == 0:
        raise ValueError("bootstrap: every resample held a single class, so no interval can be computed; "
                         "it needs more normal and anomalous images.")
    n_skipped = n_boot - len(values)
    if n_skipped > 0.05 * n_boot:
        warnings.warn(f"bootstrap: {n_skipped} of {n_boot} resamples held a single class and were skipped; "
                      "with so few images of one class the interval is unreliable.", RuntimeWarning, stacklevel=3)
    alpha = 1.0 - confidence
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}.")


def bootstrap_ci(metric, *arrays, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0):
    """Percentile bootstrap interval ``(low, high)`` of ``metric(*arrays)``, resampling images (notebook 03).

    Each of the ``n_boot`` resamples draws N images with replacement (the same images from every
    array, along axis 0) and calls ``metric`` on them as numpy arrays. The first array must hold the
    ground truth (``labels (N,)`` or ``masks (N, H, W)``, 0 = normal): resamples in which it holds
    a single class are skipped, because AUROC and AUPRO are undefined there.

    Example: ``bootstrap_ci(aupro, masks, maps, n_boot=200)``.
    """
    _check_confidence(confidence)
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array to resample.")
    arrays = [_as_numpy(array, f"arrays[{i}]") for i, array in enumerate(arrays)]
    n_items = len(arrays[0])
    if any(len(array) != n_items for array in arrays):
        lengths = [len(array) for array in arrays]
        raise ValueError(f"bootstrap_ci: all arrays must have the same length N; got {lengths}.")

    truth = arrays[0].reshape(n_items, -1) != 0
    has_anomalous, has_normal = truth.any(axis=1), (~truth).any(axis=1)
    values = []
    for draw in _bootstrap_draws(n_items, n_boot, seed):
        if not (has_anomalous[draw].any() and has_normal[draw].any()):
            continue
        values.append(metric(*(array[draw] for array in arrays)))
    return _percentile_interval(np.asarray(values, dtype=float), confidence, n_boot)


def _correct_pair_counts(truth: np.ndarray, scores: np.ndarray):
    """Pairs (anomalous element of image i, normal element of image j) ranked correctly, per (i, j).

    ``truth`` and ``scores`` are ``(N, K)``: K elements (pixels, or 1 for image-level) per image.
    Returns ``wins (N, N)`` (a pair counts 1 when the anomalous score is higher, 0.5 when tied),
    ``n_anomalous (N,)`` and ``n_normal (N,)`` per image.
    """
    n_items = len(truth)
    anomalous_scores = scores[truth]
    anomalous_image = np.nonzero(truth)[0]  # which image each anomalous element comes from
    wins = np.zeros((n_items, n_items))
    for j in range(n_items):
        normal_scores = np.sort(scores[j][~truth[j]])
        if normal_scores.size == 0 or anomalous_scores.size == 0:
            continue
        below = np.searchsorted(normal_scores, anomalous_scores, side="left")
        tied = np.searchsorted(normal_scores, anomalous_scores, side="right") - below
        wins[:, j] = np.bincount(anomalous_image, weights=below + 0.5 * tied, minlength=n_items)
    n_anomalous = truth.sum(axis=1).astype(float)
    return wins, n_anomalous, truth.shape[1] - n_anomalous


def _auroc_interval(truth, scores, n_boot, confidence, seed) -> tuple[float, float]:
    """Bootstrap interval of AUROC without re-sorting for every resample.

    AUROC = correctly ranked (anomalous, normal) pairs / all such pairs. If image i appears c_i times
    in a resample, the pairs between images i and j appear c_i * c_j times, so the resample's AUROC is
    c @ wins @ c / ((c @ n_anomalous) * (c @ n_normal)) with ``wins`` counted once for the whole data.
    Same draws and same skipping rule as :func:`bootstrap_ci`, so both give the same interval.
    """
    n_items = len(truth)
    wins, n_anomalous, n_normal = _correct_pair_counts(truth, scores)
    draws = _bootstrap_draws(n_items, n_boot, seed)
    # times_drawn[b, i]: how often resample b drew image i
    flat_index = (np.arange(n_boot)[:, None] * n_items + draws).ravel()
    times_drawn = np.bincount(flat_index, minlength=n_boot * n_items).reshape(n_boot, n_items)
    times_drawn = times_drawn.astype(float)
    anomalous, normal = times_drawn @ n_anomalous, times_drawn @ n_normal
    valid = (anomalous > 0) & (normal > 0)
    times_drawn = times_drawn[valid]
    correct = ((times_drawn @ wins) * times_drawn).sum(axis=1)
    return _percentile_interval(correct / (anomalous[valid] * normal[valid]), confidence, n_boot)


def image_auroc_ci(labels, scores, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0):
    """Bootstrap interval ``(low, high)`` of :func:`image_auroc`; same numbers as
    ``bootstrap_ci(image_auroc, labels, scores, ...)``, computed without re-sorting per resample (notebook 03)."""
    _check_confidence(confidence)
    labels, scores = _check_labels_scores(labels, scores)
    image_auroc(labels, scores)  # raises the clear error when labels hold a single class
    return _auroc_interval(labels[:, None], scores[:, None], n_boot, confidence, seed)


def pixel_auroc_ci(masks, maps, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0):
    """Bootstrap interval ``(low, high)`` of :func:`pixel_auroc`, resampling whole images; same numbers
    as ``bootstrap_ci(pixel_auroc, masks, maps, ...)``. ``(nan, nan)`` with a warning when undefined (notebook 03)."""
    _check_confidence(confidence)
    masks, maps = _check_masks_maps(masks, maps)
    if _pixel_metric_undefined(masks, "pixel_auroc_ci"):
        return float("nan"), float("nan")
    n_items = len(masks)
    return _auroc_interval(masks.reshape(n_items, -1), maps.reshape(n_items, -1), n_boot, confidence, seed)


def aupro_ci(masks, maps, fpr_limit: float = 0.3, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
             n_thresholds: int | None = 2000):
    """Bootstrap interval ``(low, high)`` of :func:`aupro`, resampling whole images (notebook 04). ``(nan, nan)``
    with a warning when undefined.

    Every image's false positives and region overlap are counted once per threshold, ``(N, T)``; a resample
    that draws image i c_i times then has the curve ``c @ counts``. With ``n_thresholds=None`` the thresholds
    are every distinct score and the interval is exactly ``bootstrap_ci(aupro, masks, maps, ...)`` (a threshold
    between two of a resample's own scores only repeats a point of its curve). By default ``n_thresholds``
    scores, evenly spaced in rank, down to where every image's own FPR has passed ``fpr_limit`` (no resample's
    curve goes further): the ends then differ from the exact ones by about 0.001 and it takes a second.
    """
    _check_confidence(confidence)
    _check_fpr_limit(fpr_limit)
    masks, maps = _check_masks_maps(masks, maps)
    if _pixel_metric_undefined(masks, "aupro_ci"):
        return float("nan"), float("nan")
    n_items, n_pixels = len(masks), masks[0].size
    ranked = _rank_pixels(masks, maps)
    order, sorted_regions, region_sizes, n_called = ranked.order, ranked.regions, ranked.region_sizes, ranked.n_called
    image_of_region = np.zeros(len(region_sizes), dtype=int)
    image_of_region[ranked.region_of_pixel] = np.repeat(np.arange(n_items), n_pixels)
    regions_per_image = np.bincount(image_of_region[1:], minlength=n_items).astype(float)
    normal_per_image = (~masks).reshape(n_items, -1).sum(axis=1).astype(float)

    # rank (in the sorted order) of every pixel, grouped by image, ascending within an image
    ranks = np.argsort(order // n_pixels, kind="stable")
    per_image = np.split(ranks, np.cumsum(np.bincount(order // n_pixels, minlength=n_items))[:-1])
    normal_ranks = [r[sorted_regions[r] == 0] for r in per_image]
    region_ranks = [r[sorted_regions[r] > 0] for r in per_image]
    if n_thresholds is not None:
        if n_thresholds < 2:
            raise ValueError(f"n_thresholds must be None or at least 2; got {n_thresholds}.")
        # a resample's FPR is a weighted mean of the images' FPRs: past the point where every image's own FPR
        # exceeds fpr_limit, no resample's curve goes on
        needed = max(int(r[int(fpr_limit * len(r))]) + 1 if int(fpr_limit * len(r)) < len(r) else n_called[-1]
                     for r in normal_ranks)
        last = int(np.searchsorted(n_called, needed))
        n_called = n_called[np.unique(np.searchsorted(n_called, np.linspace(0, n_called[last], n_thresholds)))]
    false_positives = np.stack([np.searchsorted(r, n_called) for r in normal_ranks]).astype(float)
    overlap = np.zeros((n_items, len(n_called)))
    for i, r in enumerate(region_ranks):  # overlap gained per called pixel: 1 / the size of its region
        gained = np.concatenate([[0.0], np.cumsum(1.0 / region_sizes[sorted_regions[r]])])
        overlap[i] = gained[np.searchsorted(r, n_called)]

    draws = _bootstrap_draws(n_items, n_boot, seed)
    times_drawn = np.stack([np.bincount(draw, minlength=n_items) for draw in draws]).astype(float)
    valid = (times_drawn @ regions_per_image > 0) & (times_drawn @ normal_per_image > 0)
    times_drawn = times_drawn[valid]
    values = []
    chunk = max(1, 2 ** 22 // false_positives.shape[1])  # resamples per chunk: about 32 MiB per curve array
    for start in range(0, len(times_drawn), chunk):
        counts = times_drawn[start:start + chunk]
        fpr = (counts @ false_positives) / (counts @ normal_per_image)[:, None]
        pro = np.minimum((counts @ overlap) / (counts @ regions_per_image)[:, None], 1.0)
        values += [trapezoid(*_cut_curve_at(f, p, fpr_limit)[::-1]) / fpr_limit for f, p in zip(fpr, pro)]
    return _percentile_interval(np.asarray(values), confidence, n_boot)


def auroc_by_kind(kinds, labels, scores) -> dict[str, float]:
    """``image_auroc_logical`` / ``image_auroc_structural``: the good images against only that kind of
    anomaly (``kinds (N,)`` from :func:`iadtutor.data.anomaly_kind`). Empty unless the test set has both
    kinds (MVTec LOCO, the toy ``box``; notebook 07)."""
    kinds = np.asarray(kinds)
    labels, scores = _check_labels_scores(labels, scores)
    if not {"logical", "structural"} <= set(kinds):
        return {}
    result = {}
    for kind in ("logical", "structural"):
        keep = (kinds == "good") | (kinds == kind)
        result[f"image_auroc_{kind}"] = image_auroc(labels[keep], scores[keep])
    return result


# --------------------------------------------------------------------------------- Everything at once
def evaluate_maps(labels, image_scores, masks, maps, fpr_limit: float = 0.3) -> dict[str, float]:
    """The three standard numbers of an IAD paper for one category (used from notebook 01 on).

    ``labels (N,)``, ``image_scores (N,)``, ``masks (N, H, W)``, ``maps (N, H, W)``. Returns
    ``{"image_auroc": ..., "pixel_auroc": ..., "aupro": ...}`` as fractions in [0, 1].
    """
    if len(labels) != len(masks):
        raise ValueError("evaluate_maps: labels and masks must describe the same N images; "
                         f"got {len(labels)} and {len(masks)}.")
    return {
        "image_auroc": image_auroc(labels, image_scores),
        "pixel_auroc": pixel_auroc(masks, maps),
        "aupro": aupro(masks, maps, fpr_limit=fpr_limit),
    }
