"""DefectMaker: synthetic defects for self-supervised fine-tuning (REB, Lyu et al. 2023, section 3.1).

A synthetic defect is a **shape** (which pixels) filled with a **fill** (what goes there), mixed into a
normal image by a **fusion** (how):

============  ================================================================================
shapes        ``rectangle`` (CutPaste patch), ``rect_scar`` (CutPaste scar: a long thin rotated
              rectangle), ``bezier_scar`` (a closed-Bézier region in a thin rotated box, as in the
              authors' code), ``bezier_stroke`` (a thin curved stroke along a Bézier curve, the
              package's earlier scar), ``bezier_clump`` (a region outlined by a
              closed Bézier curve, broken up and eroded into a clump of small blobs) and
              ``bezier_blob`` (a region outlined by a closed Bézier curve, the size of a CutPaste
              patch: the reference code's plain "Bézier" shape)
fills         ``noise`` (random colour noise with random mean, spread and grain) and ``cutpaste``
              (a colour-jittered patch cut from a training image: another one in the 7-class task)
fusions       ``paste`` (replace the pixels) and ``blend`` (``alpha * fill + (1 - alpha) * image``
              with ``alpha`` drawn from :data:`BLEND_ALPHA_RANGE`)
============  ================================================================================

Defects are placed on the object: :func:`foreground_mask` is a simple unsupervised foreground estimate
(colour distance from the image border, Otsu threshold) standing in for the paper's saliency network;
for textures the whole image counts as foreground.

Images are torch tensors ``(3, H, W)`` float in ``[0, 1]`` (the format of ``iadtutor.data.load_split``);
masks are ``(H, W)`` bool tensors. All randomness comes from a ``numpy.random.Generator`` (or an int
seed), so a seed gives the same defect every time.

The self-supervised task (section 3.1.2 and 4.2 of the paper, ``dm_com6`` in the authors' code) is a
7-class classification: class 0 = normal image, classes 1-6 = :data:`DEFECT_CLASSES`, the three Bézier
shapes × the two fills. :func:`finetune_backbone` trains a backbone on it with the authors' recipe
(:class:`FinetuneConfig`); the result is still a ``FeatureExtractor`` for ``iadtutor.embed.PatchEmbedder``
(REB = these weights + ``iadtutor.knn.LDKNN``).
Where the fine-tuning differs from the authors' code: ``book/deviations.md``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd
import sklearn.metrics
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from scipy import ndimage
from scipy.special import comb
from torch import nn
from tqdm.auto import tqdm

from iadtutor import metrics, pipeline
from iadtutor.backbones import (FeatureExtractor, load_backbone, load_final_stage, resolve_device,
                                same_numbers_on_every_cpu)
from iadtutor.embed import EmbeddingConfig, PatchEmbedder
from iadtutor.files import atomic_path
from iadtutor.knn import PatchScorer
from iadtutor.metrics import METRICS

SHAPES = ("rectangle", "rect_scar", "bezier_scar", "bezier_stroke", "bezier_clump", "bezier_blob")
FILLS = ("noise", "cutpaste")
FUSIONS = ("paste", "blend")

# Labels 1..6 of the self-supervised task (label 0 is "normal"); order as in the authors' dm_com6.
DEFECT_CLASSES = (("bezier_blob", "cutpaste"), ("bezier_scar", "cutpaste"), ("bezier_clump", "cutpaste"),
                  ("bezier_blob", "noise"), ("bezier_scar", "noise"), ("bezier_clump", "noise"))
CLASS_NAMES = ("normal",) + tuple(f"{shape}+{fill}" for shape, fill in DEFECT_CLASSES)
# The package's earlier task: the scar drawn as a stroke.
STROKE_CLASSES = tuple(("bezier_stroke" if shape == "bezier_scar" else shape, fill) for shape, fill in DEFECT_CLASSES)

BLEND_ALPHA_RANGE = (0.4, 0.9)  # make_defect's random blend factor
# The authors' dm_com6 pastes blobs and scars and blends clumps with a weight in CODE_BLEND_RANGE.
CODE_FUSION = {"bezier_blob": "paste", "bezier_scar": "paste", "bezier_clump": "blend"}
CODE_BLEND_RANGE = (0.5, 1.0)
# Shape sizes below are given in pixels of a 256 x 256 image (the paper's input size) and scaled.
REFERENCE_SIZE = 256


# ---------------------------------------------------------------------------------------------- Bézier curves

def bezier_curve(control_points, n_points: int = 100) -> np.ndarray:
    """Points ``(n_points, 2)`` of the Bézier curve with ``control_points`` ``(K, 2)`` (notebook 06).

    Bernstein form: ``B(t) = sum_i C(K-1, i) t^i (1-t)^(K-1-i) P_i`` at ``n_points`` equally spaced
    ``t`` in ``[0, 1]``. The curve starts at the first control point, ends at the last and stays inside
    the convex hull of all of them.
    """
    control_points = np.asarray(control_points, dtype=np.float64)
    if control_points.ndim != 2 or len(control_points) < 2:
        raise ValueError(f"control_points must have shape (K, D) with K >= 2; got {control_points.shape}.")
    degree = len(control_points) - 1
    t = np.linspace(0.0, 1.0, n_points)[:, None]
    i = np.arange(degree + 1)[None, :]
    weights = comb(degree, i) * t**i * (1.0 - t) ** (degree - i)
    return weights @ control_points


def closed_bezier_contour(points, k: float = 0.3, n_per_segment: int = 50) -> np.ndarray:
    """A smooth closed curve ``(M * (n_per_segment - 1), 2)`` through ``points`` ``(M, 2)`` (notebook 06).

    One cubic Bézier per pair of neighbours; its two inner control points follow the chord of the
    neighbours' neighbours (Catmull-Rom tangents), scaled by ``k``: small ``k`` gives corners,
    ``k`` near 0.5 gives round bulges.
    """
    points = np.asarray(points, dtype=np.float64)
    m = len(points)
    segments = []
    for i in range(m):
        before, start, end, after = points[i - 1], points[i], points[(i + 1) % m], points[(i + 2) % m]
        control = np.stack([start, start + k * (end - before), end - k * (after - start), end])
        segments.append(bezier_curve(control, n_per_segment)[:-1])
    return np.concatenate(segments)


# ----------------------------------------------------------------------------------------------------- Shapes
# Each maker returns a small boolean array (its own canvas); _place puts it into the image.

def _scale(height: int, width: int) -> float:
    return min(height, width) / REFERENCE_SIZE


def _rasterise(points: np.ndarray, canvas_shape: tuple[int, int]) -> np.ndarray:
    """Boolean canvas with the pixels nearest to ``points`` ``(n, 2)`` given as ``(row, col)``."""
    canvas = np.zeros(canvas_shape, dtype=bool)
    rows = np.clip(np.round(points[:, 0]).astype(int), 0, canvas_shape[0] - 1)
    cols = np.clip(np.round(points[:, 1]).astype(int), 0, canvas_shape[1] - 1)
    canvas[rows, cols] = True
    return canvas


def _densify(points: np.ndarray, spacing: float = 0.5) -> np.ndarray:
    """Resample a polyline ``(n, 2)`` linearly so that neighbours are at most ``spacing`` px apart
    (then its rasterised pixels touch and a closed outline has no gaps)."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    samples = np.linspace(0.0, arc[-1], max(2, int(np.ceil(arc[-1] / spacing)) + 1))
    return np.stack([np.interp(samples, arc, points[:, j]) for j in range(points.shape[1])], axis=1)


def _rectangle_size(height: int, width: int, rng: np.random.Generator,
                    area_range=(0.02, 0.15), max_aspect: float = 3.3) -> tuple[int, int]:
    """CutPaste patch size: area a fraction of the image, aspect ratio log-uniform up to ``max_aspect``."""
    area = rng.uniform(*area_range) * height * width
    aspect = np.exp(rng.uniform(-np.log(max_aspect), np.log(max_aspect)))
    rect_h = int(np.clip(round(np.sqrt(area / aspect)), 1, height))
    rect_w = int(np.clip(round(np.sqrt(area * aspect)), 1, width))
    return rect_h, rect_w


def _rotated_rectangle(length: float, thickness: float, angle: float) -> np.ndarray:
    """Pixels whose centres lie in a ``length`` x ``thickness`` rectangle turned by ``angle`` (radians)
    from the vertical, on an odd-sized canvas centred on it (so the centre pixel is always inside)."""
    radius = int(np.ceil(0.5 * np.hypot(length, thickness)))  # half the diagonal: room for any angle
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    rows, cols = np.meshgrid(offsets, offsets, indexing="ij")
    along = rows * np.cos(angle) + cols * np.sin(angle)
    across = -rows * np.sin(angle) + cols * np.cos(angle)
    return (np.abs(along) <= length / 2) & (np.abs(across) <= thickness / 2)


def _rect_scar(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """CutPaste scar: 2-16 px wide, 10-25 px long (at 256 px), turned by -45..45 degrees."""
    scale = _scale(height, width)
    thickness, length = max(rng.uniform(2, 16) * scale, 1.0), max(rng.uniform(10, 25) * scale, 2.0)
    return _rotated_rectangle(length, thickness, np.deg2rad(rng.uniform(-45, 45)))


def _bezier_scar(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """The authors' Bézier scar: a closed-Bézier region filling a 7-21 px wide, 15-30 px long box (at 256 px),
    turned by -45..45 degrees."""
    scale = _scale(height, width)
    box_h, box_w = max(round(rng.uniform(15, 30) * scale), 3), max(round(rng.uniform(7, 21) * scale), 2)
    region = _closed_bezier_region(box_h, box_w, rng)
    return ndimage.rotate(region, rng.uniform(-45, 45), order=0, reshape=True)


def _bezier_stroke(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A scratch: a stroke 1.5-4.5 px thick (at 256 px) along a Bézier curve whose 3-5 control points
    march along a 25-100 px long, 4-24 px wide rectangle at a random angle. The curve stays inside that
    rectangle (convex hull property); the stroke adds half its thickness around it."""
    scale = _scale(height, width)
    length = max(rng.uniform(25, 100) * scale, 4.0)
    box_width = rng.uniform(4, 24) * scale
    thickness = max(rng.uniform(1.5, 4.5) * scale, 1.0)
    n_control = int(rng.integers(3, 6))
    along = np.linspace(-length / 2, length / 2, n_control) + rng.uniform(-0.1, 0.1, n_control) * length / n_control
    across = rng.uniform(-box_width / 2, box_width / 2, n_control)
    angle = rng.uniform(0, np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    control = np.stack([along, across], axis=1) @ rotation.T
    return _stroke(_densify(bezier_curve(control, n_points=100)), thickness)


def _stroke(curve: np.ndarray, thickness: float) -> np.ndarray:
    """Pixels within ``thickness / 2`` of the rasterised ``curve`` ``(n, 2)``, on a tight canvas."""
    pad = int(np.ceil(thickness / 2)) + 1
    curve = curve - curve.min(axis=0) + pad
    canvas_shape = tuple(int(np.ceil(extent)) + pad + 1 for extent in curve.max(axis=0))
    line = _rasterise(curve, canvas_shape)
    return ndimage.distance_transform_edt(~line) <= thickness / 2


def _closed_bezier_region(rect_h: int, rect_w: int, rng: np.random.Generator) -> np.ndarray:
    """Region ``(rect_h + 2, rect_w + 2)`` inside a closed Bézier curve through 5-7 random points sorted
    by angle around their mean (as in the authors' code), stretched to fill a ``rect_h`` x ``rect_w`` box."""
    n_points = int(rng.integers(5, 8))
    points = rng.uniform(0, 1, size=(n_points, 2))
    centre = points.mean(axis=0)
    points = points[np.argsort(np.arctan2(points[:, 0] - centre[0], points[:, 1] - centre[1]))]
    contour = closed_bezier_contour(points, k=rng.uniform(0.15, 0.35))
    contour = (contour - contour.min(axis=0)) / np.maximum(np.ptp(contour, axis=0), 1e-9)
    contour = contour * [rect_h - 1, rect_w - 1] + 1  # one pixel of empty border around the region
    outline = _rasterise(_densify(np.concatenate([contour, contour[:1]])), (rect_h + 2, rect_w + 2))
    return ndimage.binary_fill_holes(outline)


def _bezier_clump(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A closed-Bézier region (2-12 % of the image) cut by thresholded smooth noise into blobs of about
    4-10 px (at 256 px), then eroded by one pixel so the blobs come apart: a clump of small defects."""
    region = _closed_bezier_region(*_rectangle_size(height, width, rng, area_range=(0.02, 0.12)), rng)
    blob_size = max(rng.uniform(4, 10) * _scale(height, width), 2.0)
    grid = (max(2, round(region.shape[0] / blob_size)), max(2, round(region.shape[1] / blob_size)))
    coarse = torch.from_numpy(rng.uniform(0, 1, size=grid)).float()[None, None]
    noise = F.interpolate(coarse, size=region.shape, mode="bicubic", align_corners=False)[0, 0].numpy()
    blobs = region & (noise > np.quantile(noise[region], rng.uniform(0.5, 0.7)))
    clump = ndimage.binary_erosion(blobs)
    return next((candidate for candidate in (clump, blobs) if candidate.any()), region)  # tiny ones erode away


# rectangle: a solid CutPaste patch; bezier_blob: a closed-Bézier region of the same size.
_SHAPE_MAKERS = {"rectangle": lambda h, w, rng: np.ones(_rectangle_size(h, w, rng), dtype=bool),
                 "rect_scar": _rect_scar, "bezier_scar": _bezier_scar, "bezier_stroke": _bezier_stroke,
                 "bezier_clump": _bezier_clump,
                 "bezier_blob": lambda h, w, rng: _closed_bezier_region(*_rectangle_size(h, w, rng), rng)}


def _place(shape: np.ndarray, foreground: np.ndarray, rng: np.random.Generator, n_tries: int = 10):
    """Put ``shape`` into the image so that one of its pixels (random) lands on a random foreground
    pixel, and crop it to the image and the foreground. Of up to ``n_tries`` such placements the first
    that keeps the whole shape is taken, else the one that keeps most of it. Returns the ``(H, W)``
    mask and its tight box ``(top, bottom, left, right)``; the anchor pixel makes it non-empty."""
    height, width = foreground.shape
    fg_rows, fg_cols = np.nonzero(foreground)
    sh_rows, sh_cols = np.nonzero(shape)
    best, best_kept = None, -1
    for _ in range(n_tries):
        anchor, pick = int(rng.integers(len(fg_rows))), int(rng.integers(len(sh_rows)))
        top, left = fg_rows[anchor] - sh_rows[pick], fg_cols[anchor] - sh_cols[pick]
        y0, y1 = max(top, 0), min(top + shape.shape[0], height)
        x0, x1 = max(left, 0), min(left + shape.shape[1], width)
        placed = np.zeros((height, width), dtype=bool)
        placed[y0:y1, x0:x1] = shape[y0 - top:y1 - top, x0 - left:x1 - left]
        placed &= foreground
        kept = int(placed.sum())
        if kept > best_kept:
            best, best_kept = placed, kept
        if kept == len(sh_rows):
            break
    rows, cols = np.nonzero(best)
    return best, (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1)


# ------------------------------------------------------------------------------------------- Fills and fusion

def _noise_fill(patch_h: int, patch_w: int, rng: np.random.Generator) -> torch.Tensor:
    """Colour noise ``(3, h, w)``: uniform in ``mean +- spread`` (mean 50-200, spread 0-50 grey levels,
    as in the authors' code), drawn on a grid of cells 1-4 px large and stretched up to 2:1, then
    resized bilinearly (fine speckle to coarse grain)."""
    mean, spread = rng.uniform(50, 200) / 255, rng.uniform(0, 50) / 255
    cell, stretch = rng.choice([1.0, 2.0, 4.0]), rng.choice([0.5, 1.0, 2.0])
    grid = (max(1, round(patch_h / (cell * stretch))), max(1, round(patch_w * stretch / cell)))
    coarse = torch.from_numpy(rng.uniform(mean - spread, mean + spread, size=(3, *grid))).float()
    fill = F.interpolate(coarse[None], size=(patch_h, patch_w), mode="bilinear", align_corners=False)[0]
    return fill.clamp(0.0, 1.0)


def _cutpaste_fill(image: torch.Tensor, patch_h: int, patch_w: int, foreground: np.ndarray,
                   rng: np.random.Generator) -> torch.Tensor:
    """A ``(3, h, w)`` patch of ``image`` centred (as far as it fits) on a random foreground pixel,
    colour-jittered (as in the authors' code)."""
    height, width = image.shape[1:]
    rows, cols = np.nonzero(foreground)
    centre = int(rng.integers(len(rows)))
    top = int(np.clip(rows[centre] - patch_h // 2, 0, height - patch_h))
    left = int(np.clip(cols[centre] - patch_w // 2, 0, width - patch_w))
    return _colour_jitter(image[:, top:top + patch_h, left:left + patch_w], rng)


def _colour_jitter(image: torch.Tensor, rng: np.random.Generator, strength: float = 0.1) -> torch.Tensor:
    """Brightness, contrast and saturation times ``1 +- strength``, hue shifted by ``+- strength`` (torchvision's
    ``ColorJitter(0.1, 0.1, 0.1, 0.1)`` of the authors' code, drawn from ``rng``)."""
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, size=3)
    hue = rng.uniform(-strength, strength)
    image = TF.adjust_contrast(TF.adjust_brightness(image, float(brightness)), float(contrast))
    return TF.adjust_hue(TF.adjust_saturation(image, float(saturation)), float(hue)).clamp(0.0, 1.0)


def fuse(image: torch.Tensor, fill: torch.Tensor, region: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Mix ``fill`` into ``image`` (both ``(3, H, W)``) where ``region`` ``(H, W)`` is True:
    ``alpha * fill + (1 - alpha) * image`` there (``alpha = 1`` pastes), ``image`` unchanged elsewhere (notebook 06)."""
    return torch.where(region, alpha * fill + (1.0 - alpha) * image, image)


# ------------------------------------------------------------------------------------------------- Foreground

def otsu_threshold(values, bins: int = 256) -> float:
    """Otsu's threshold of ``values``: the cut between histogram bins that maximises the between-class
    variance. The upper class is ``values >= threshold`` (notebook 06)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    counts, edges = np.histogram(values, bins=bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    weight_low = np.cumsum(counts)[:-1].astype(np.float64)
    weight_high = counts.sum() - weight_low
    sum_low = np.cumsum(counts * centres)[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = sum_low / weight_low
        mean_high = ((counts * centres).sum() - sum_low) / weight_high
        between = weight_low * weight_high * (mean_low - mean_high) ** 2
    between = np.nan_to_num(between, nan=-1.0)
    return float(edges[int(np.argmax(between)) + 1])


def foreground_mask(image: torch.Tensor, is_texture: bool = False, min_fraction: float = 0.01) -> torch.Tensor:
    """Unsupervised foreground ``(H, W)`` bool of an image ``(3, H, W)`` in ``[0, 1]`` (notebook 06).

    The border (a frame 1/16 of the image wide) is taken as background: each pixel's colour distance
    from the border's mean, in units of the border's per-channel spread (at least 0.02), is smoothed
    and thresholded with Otsu; small specks are opened away and small holes (under 0.5 % of the
    image) filled. A stand-in for the paper's saliency network (EDN) that works for objects on a plain
    background. Textures (``is_texture=True``), images where no pixel is 3 spreads away from the border
    colour and images where less than ``min_fraction`` stands out get the whole image.
    """
    image = _check_image(image)
    height, width = image.shape[1:]
    everything = torch.ones(height, width, dtype=torch.bool)
    if is_texture:
        return everything
    pixels = image.double().numpy()
    frame = max(1, round(min(height, width) / 16))
    border = np.ones((height, width), dtype=bool)
    border[frame:-frame, frame:-frame] = False
    border_pixels = pixels[:, border]
    mean = border_pixels.mean(axis=1)[:, None, None]
    spread = np.maximum(border_pixels.std(axis=1), 0.02)[:, None, None]
    distance = np.sqrt((((pixels - mean) / spread) ** 2).sum(axis=0))
    distance = ndimage.gaussian_filter(distance, sigma=max(1.0, min(height, width) / 128))
    if distance.max() < 3.0:  # nothing stands out from the border: no object to find
        return everything
    foreground = distance >= otsu_threshold(distance)
    foreground = ndimage.binary_opening(foreground, iterations=max(1, round(min(height, width) / 128)))
    holes = ndimage.binary_fill_holes(foreground) & ~foreground
    hole_labels, _ = ndimage.label(holes)
    hole_sizes = np.bincount(hole_labels.ravel())
    small_holes = (hole_sizes < 0.005 * height * width)[hole_labels] & holes
    foreground |= small_holes  # specks inside the object; big holes (a ring's centre) stay background
    if foreground.sum() < min_fraction * height * width:
        return everything
    return torch.from_numpy(foreground)


# --------------------------------------------------------------------------------------------- Making defects

def _check_image(image, name: str = "image") -> torch.Tensor:
    """A CPU float32 copy of ``image`` ``(3, H, W)`` (or of ``images`` ``(N, 3, H, W)``) in [0, 1], else ValueError."""
    ndim, layout = (3, "(3, H, W)") if name == "image" else (4, "(N, 3, H, W)")
    if not (isinstance(image, torch.Tensor) and image.ndim == ndim and image.shape[-3] == 3
            and image.is_floating_point()):
        description = f"{type(image).__name__} {tuple(getattr(image, 'shape', ()))} {getattr(image, 'dtype', '')}"
        raise ValueError(f"{name} must be a float torch tensor {layout} with values in [0, 1]; got {description}.")
    if len(image) == 0:
        raise ValueError(f"{name} is empty: fine-tuning needs at least one normal image.")
    low, high = float(image.min()), float(image.max())
    if low < -1e-4 or high > 1 + 1e-4:
        raise ValueError(f"{name} must hold values in [0, 1] (not ImageNet-normalised, not 0-255); "
                         f"got values from {low:.3g} to {high:.3g}.")
    return image.detach().cpu().float()


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise ValueError(f"rng must be a numpy Generator, an int seed or None; got {type(rng).__name__}.")


def _as_mask(mask, height: int, width: int, name: str = "foreground") -> np.ndarray:
    mask = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask).astype(bool)
    if mask.shape != (height, width):
        raise ValueError(f"{name} must be a bool mask of shape {(height, width)}; got {mask.shape}.")
    if not mask.any():
        raise ValueError(f"{name} mask is empty: there is nowhere to put a defect.")
    return mask


def _check_choice(value: str, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")


def make_defect(image: torch.Tensor, shape: str, fill: str, fusion: str, rng=None, foreground=None,
                alpha: float | None = None, max_tries: int = 10, fill_image=None,
                fill_foreground=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One synthetic defect in a copy of ``image`` (notebook 06).

    ``image``: ``(3, H, W)`` float tensor in ``[0, 1]``; ``shape`` in :data:`SHAPES`, ``fill`` in
    :data:`FILLS`, ``fusion`` in :data:`FUSIONS`; ``rng``: numpy Generator or int seed;
    ``foreground``: ``(H, W)`` bool mask the defect must stay inside (``None``: whole image; see
    :func:`foreground_mask`); ``alpha``: blend factor (``None``: random in :data:`BLEND_ALPHA_RANGE`,
    ignored for ``paste``); ``fill_image`` ``(3, H, W)``: where ``cutpaste`` cuts its patch, at a pixel of
    ``fill_foreground`` (default: ``image`` and ``foreground`` themselves).

    Returns ``(defect_image (3, H, W) float32 in [0, 1], mask (H, W) bool)`` on the CPU; ``mask`` is
    exactly the set of pixels that changed. Shape, placement and fill are drawn from ``rng`` before the
    blend factor, so the same seed with ``paste`` and ``blend`` gives the same defect at two strengths.
    A draw that changes nothing (a cut-paste patch identical to what it covers) is drawn again.
    """
    image = _check_image(image)
    for value, choices, name in ((shape, SHAPES, "shape"), (fill, FILLS, "fill"), (fusion, FUSIONS, "fusion")):
        _check_choice(value, choices, name)
    if alpha is not None and not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1]; got {alpha}.")
    rng = _as_rng(rng)
    height, width = image.shape[1:]
    allowed = np.ones((height, width), bool) if foreground is None else _as_mask(foreground, height, width)
    source, source_allowed = image, allowed
    if fill_image is not None:
        source = _check_image(fill_image, "image")
        source_allowed = (np.ones(source.shape[1:], bool) if fill_foreground is None
                          else _as_mask(fill_foreground, *source.shape[1:], name="fill_foreground"))
    for _ in range(max_tries):
        placed, (top, bottom, left, right) = _place(_SHAPE_MAKERS[shape](height, width, rng), allowed, rng)
        patch_h, patch_w = bottom - top, right - left
        if fill == "noise":
            patch = _noise_fill(patch_h, patch_w, rng)
        else:
            patch = _cutpaste_fill(source, patch_h, patch_w, source_allowed, rng)
        weight = 1.0 if fusion == "paste" else float(rng.uniform(*BLEND_ALPHA_RANGE) if alpha is None else alpha)
        region = torch.from_numpy(placed)
        canvas = image.clone()
        canvas[:, top:bottom, left:right] = patch
        defect = fuse(image, canvas, region, weight)
        mask = region & (defect != image).any(dim=0)
        if mask.any():
            return defect, mask
    raise RuntimeError(f"make_defect: no pixel changed in {max_tries} tries with fill {fill!r}; "
                       "is the image (or its foreground) a single flat colour?")


def gallery(image: torch.Tensor, rng=None, foreground="auto", is_texture: bool = False) -> list[dict]:
    """Every shape x fill x fusion on ``image`` ``(3, H, W)``: a list of dicts with keys ``shape``,
    ``fill``, ``fusion``, ``image`` ``(3, H, W)`` and ``mask`` ``(H, W)`` (notebook 06).

    One seed per shape, so each shape appears at the same place with both fills and both fusions.
    ``foreground="auto"`` uses :func:`foreground_mask` (``is_texture`` passed on); ``None`` = whole image.
    """
    image = _check_image(image)
    rng = _as_rng(rng)
    if isinstance(foreground, str) and foreground == "auto":
        foreground = foreground_mask(image, is_texture=is_texture)
    entries = []
    for shape in SHAPES:
        shape_seed = int(rng.integers(2**31))
        for fill in FILLS:
            for fusion in FUSIONS:
                defect, mask = make_defect(image, shape, fill, fusion, shape_seed, foreground)
                entries.append({"shape": shape, "fill": fill, "fusion": fusion, "image": defect, "mask": mask})
    return entries


# --------------------------------------------------------------------------- The 7-class self-supervised task

class DefectMakerDataset(torch.utils.data.Dataset):
    """Normal images and their synthetic-defect versions, labelled for the 7-class task (notebook 06).

    Item ``i`` is ``(image (3, H, W) float in [0, 1], label)`` with ``label = i % n_classes`` (7 by
    default; 0 = normal, ``k`` = ``classes[k - 1]``, by default :data:`DEFECT_CLASSES`) made from normal
    image ``i // n_classes``: every image appears once per class, so classes are balanced. Defects are
    drawn from a generator seeded by ``(seed, epoch, i)`` — call :meth:`set_epoch` for fresh defects.

    The defaults follow the authors' ``dm_com6``: the normal image is flipped / transposed (``augment``)
    and colour-jittered (``jitter``) first; ``fusion="code"`` pastes or blends per shape
    (:data:`CODE_FUSION`), ``"random"`` draws paste or blend per item; ``fill_source="other"`` cuts the
    cut-paste fill from a random (augmented) training image, ``"same"`` from the image itself.
    ``foregrounds``: ``(N, H, W)`` bool masks, or ``None`` to estimate them with :func:`foreground_mask`
    (whole images when ``is_texture``).
    """

    def __init__(self, images: torch.Tensor, classes=DEFECT_CLASSES, foregrounds=None, is_texture: bool = False,
                 seed: int = 0, augment: bool = True, jitter: bool = True, fusion: str = "code",
                 fill_source: str = "other"):
        self.images = _check_image(images, "images")
        for shape, fill in classes:
            _check_choice(shape, SHAPES, "shape")
            _check_choice(fill, FILLS, "fill")
        _check_choice(fusion, ("code", "random"), "fusion")
        _check_choice(fill_source, ("other", "same"), "fill_source")
        self.classes = tuple(classes)
        n_images, _, height, width = self.images.shape
        if foregrounds is None:
            foregrounds = torch.stack([foreground_mask(image, is_texture) for image in self.images])
        if isinstance(foregrounds, torch.Tensor):
            foregrounds = foregrounds.cpu()
        self.foregrounds = torch.as_tensor(np.asarray(foregrounds, dtype=bool))
        if self.foregrounds.shape != (n_images, height, width):
            raise ValueError(f"foregrounds must have shape {(n_images, height, width)}; "
                             f"got {tuple(self.foregrounds.shape)}.")
        self.seed, self.augment, self.jitter, self.fusion, self.fill_source = seed, augment, jitter, fusion, fill_source
        self.epoch = 0

    @property
    def n_classes(self) -> int:
        return 1 + len(self.classes)

    def __len__(self) -> int:
        return len(self.images) * self.n_classes

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _normal(self, image_index: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        image, foreground = self.images[image_index], self.foregrounds[image_index]
        if self.augment:
            image, foreground = _random_flip(image, foreground, rng)
        return (_colour_jitter(image, rng) if self.jitter else image), foreground

    def sample(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        """``(image, label, mask)``: like ``dataset[index]`` plus the defect mask (empty for normal)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items.")
        label = index % self.n_classes
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, foreground = self._normal(index // self.n_classes, rng)
        if label == 0:
            return image, 0, torch.zeros_like(foreground)
        shape, fill = self.classes[label - 1]
        fusion, alpha = FUSIONS[int(rng.integers(len(FUSIONS)))], None
        if self.fusion == "code":
            fusion = CODE_FUSION.get(shape, "paste")
            alpha = float(rng.uniform(*CODE_BLEND_RANGE)) if fusion == "blend" else None
        source, source_foreground = image, foreground
        if fill == "cutpaste" and self.fill_source == "other":
            source, source_foreground = self._normal(int(rng.integers(len(self.images))), rng)
        defect, mask = make_defect(image, shape, fill, fusion, rng, foreground, alpha=alpha,
                                   fill_image=source, fill_foreground=source_foreground)
        return defect, label, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label, _ = self.sample(index)
        return image, label


def _random_flip(image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator):
    """The same random flip / transpose (one of the 8 symmetries of a square) of image and mask."""
    if rng.random() < 0.5:
        image, mask = image.flip(-1), mask.flip(-1)
    if rng.random() < 0.5:
        image, mask = image.flip(-2), mask.flip(-2)
    if image.shape[-1] == image.shape[-2] and rng.random() < 0.5:
        image, mask = image.transpose(-1, -2), mask.transpose(-1, -2)
    return image.contiguous(), mask.contiguous()


# ------------------------------------------------------------------------------------------------ Fine-tuning

@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """How :func:`finetune_backbone` trains (notebook 06). The defaults are the authors' code
    (``res18_dm_com6_bs1024_epo300``): 300 SGD updates of 48 normal images x 7 classes x 3 accumulated forward
    passes (1008 items), the backbone frozen for the first 40, lr 0.03 with momentum 0.9 and weight decay
    3e-5 on a cosine of period 330 updates down to 1e-5; head: the final stage -> average pool -> MLP
    (512, 256) -> logits, sigmoid BCE. ``head_on="last_tap"``, ``head_layers=()`` and ``loss="ce"`` give the
    package's earlier head and loss, for comparison."""

    updates: int = 300
    images_per_batch: int = 48  # normal images per forward pass, each with one item per class
    accumulate: int = 3         # forward passes whose gradients make one update
    freeze_updates: int = 40    # first updates: backbone frozen (eval mode), only the head learns
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 3e-5
    cosine_period: int = 330    # updates per cosine cycle (CosineAnnealingWarmRestarts' T_0)
    min_lr: float = 1e-5
    head_layers: tuple[int, ...] = (512, 256)
    head_on: str = "final_stage"
    loss: str = "bce"
    batchnorm_train: bool = True  # after the freeze: backbone BatchNorm on batch statistics (False: ImageNet's)

    @classmethod
    def paper(cls) -> "FinetuneConfig":
        """The authors' recipe (a GPU job: about 300 000 items)."""
        return cls()

    @classmethod
    def small(cls) -> "FinetuneConfig":
        """The recipe sized for a CPU (notebook 06: toy bracket, its 40 training images, 128 px, EfficientNet-Lite0;
        20-27 min a seed on one thread of a busy 2-core machine, so ``make checkpoints`` runs it and the chapter loads it).
        Changed from :meth:`paper`: 360 updates of 4 images x 7 classes (28 items, no accumulation); 10 frozen
        updates; BatchNorm keeps ImageNet statistics. Unchanged: lr 0.03, momentum, weight decay, the cosine's
        period of 1.1 x updates, the head on the stride-32 stage, sigmoid BCE.

        Measured on the way (held-out accuracy, 7 classes, chance 0.14, fresh defects, one run each, 10 training
        images, 180 updates): 0.29 / 0.32 / 0.48 / 0.51 / 0.70 / 0.80 after 30 / ... / 180 updates on 18 normal
        images not trained on (30 training images: 0.77 at 180). A linear probe on the frozen ImageNet features
        reaches 0.43, so the backbone has to learn; lr 0.1 collapses to chance, softmax CE at lr 0.03 diverges
        (NaN); BatchNorm on batch statistics: 0.14 against 0.44 (60 updates); 14 items per update: chance."""
        return cls(updates=360, images_per_batch=4, accumulate=1, freeze_updates=10, cosine_period=396,
                   batchnorm_train=False)


class DefectClassifier(nn.Module):
    """DefectMaker's proxy network (notebook 06): ``(N, 3, H, W)`` images in [0, 1] -> the backbone's taps ->
    its ``final_stage`` (stride 32; ``None``: stop at the last tap) -> global average pool ``(N, C)`` -> MLP
    (each of ``head_layers``: linear, BatchNorm, ReLU) -> linear -> ``(N, n_classes)`` logits. The authors'
    ``DenseHead`` on ``layer4``."""

    def __init__(self, backbone: FeatureExtractor, final_stage: nn.Module | None, n_classes: int,
                 head_layers=(512, 256)):
        super().__init__()
        self.backbone, self.final_stage = backbone, final_stage
        width = backbone.channels[-1] if final_stage is None else final_stage.out_channels
        layers = []
        for n_units in head_layers:
            layers += [nn.Linear(width, n_units), nn.BatchNorm1d(n_units), nn.ReLU()]
            width = n_units
        self.head = nn.Sequential(*layers, nn.Linear(width, n_classes))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.backbone(self.backbone.normalize(images))[-1]
        return (x if self.final_stage is None else self.final_stage(x)).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def task_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """``"bce"``: the authors' sigmoid binary cross-entropy against one-hot ``labels``, averaged over all
    ``N x n_classes`` entries; ``"ce"``: softmax cross-entropy. ``logits (N, n_classes)``, ``labels (N,)`` (notebook 06)."""
    _check_choice(kind, ("bce", "ce"), "loss")
    if kind == "ce":
        return F.cross_entropy(logits, labels)
    return F.binary_cross_entropy_with_logits(logits, F.one_hot(labels, logits.shape[1]).to(logits.dtype))


@torch.no_grad()
def task_predictions(classifier: DefectClassifier, images: torch.Tensor, seed: int = 1, batch_size: int = 28,
                     **dataset_options) -> tuple[np.ndarray, np.ndarray]:
    """``(labels (M,), predicted (M,))`` of ``classifier`` in eval mode on a fresh DefectMaker set: each of ``images``
    ``(N, 3, H, W)`` once per class (``M = N x n_classes``), defects drawn with ``seed`` (notebook 06).
    ``dataset_options`` go to :class:`DefectMakerDataset`."""
    dataset = DefectMakerDataset(images, seed=seed, **dataset_options)
    device, was_training = next(classifier.parameters()).device, classifier.training
    classifier.eval()
    predicted = []
    for start in range(0, len(dataset), batch_size):
        batch = torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))])
        predicted.append(classifier(batch.to(device)).argmax(dim=1).cpu())
    classifier.train(was_training)
    return np.arange(len(dataset)) % dataset.n_classes, torch.cat(predicted).numpy()


def task_accuracy(classifier: DefectClassifier, images: torch.Tensor, seed: int = 1, batch_size: int = 28,
                  **dataset_options) -> float:
    """Fraction of :func:`task_predictions` that are right (notebook 06). Held-out accuracy: normal images not used
    in training and a new seed."""
    labels, predicted = task_predictions(classifier, images, seed, batch_size, **dataset_options)
    return float((labels == predicted).mean())


def _batches(dataset: DefectMakerDataset, images_per_batch: int, seed: int):
    """Endless ``(items (B, 3, H, W), labels (B,))`` with every class of ``images_per_batch`` images; the images
    go round in reshuffled passes, each pass with fresh defects."""
    rng, order, n_passes, n = np.random.default_rng(seed), [], 0, dataset.n_classes
    while True:
        items = []
        while len(items) < images_per_batch * n:
            if not order:
                order, n_passes = list(rng.permutation(len(dataset.images))), n_passes + 1
                dataset.set_epoch(n_passes)
            image_index = int(order.pop())
            items += [dataset[image_index * n + label] for label in range(n)]
        yield torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items])


@same_numbers_on_every_cpu
def finetune_backbone(backbone: FeatureExtractor, images: torch.Tensor, epochs: int | None = None,
                      batch_size: int | None = None, lr: float | None = None, device="cpu", seed: int = 0,
                      progress: bool = True, is_texture: bool = False, foregrounds=None, classes=DEFECT_CLASSES,
                      config: FinetuneConfig | None = None, heldout_images: torch.Tensor | None = None,
                      heldout_every: int = 0, **dataset_options) -> tuple[FeatureExtractor, dict]:
    """Fine-tune a copy of ``backbone`` on the DefectMaker task, leaving ``backbone`` unchanged (notebook 06).

    ``images``: ``(N, 3, H, W)`` normal images in ``[0, 1]``. ``config``: the recipe (default
    :meth:`FinetuneConfig.small`; :meth:`FinetuneConfig.paper` on a GPU). A :class:`DefectClassifier` on
    the backbone and a fresh ImageNet copy of its final stage learns ``1 + len(classes)`` classes: for
    ``freeze_updates`` updates only the head (backbone in eval mode), then everything with BatchNorm in train
    mode, as the authors do. ``epochs`` (passes over ``images``), ``batch_size`` (items per forward pass) and
    ``lr`` override ``config``. ``dataset_options`` go to :class:`DefectMakerDataset`. Deterministic on the CPU.

    Returns ``(fine-tuned FeatureExtractor in eval mode on device, history)``: per update ``loss`` (of
    ``config.loss``, also in ``loss_kind``), ``accuracy`` (of the training batch) and ``lr``; at the end
    ``train_accuracy`` (fresh defects on ``images``) and ``seconds`` (held-out checks included). With
    ``heldout_images`` (normal images not in ``images``; defects drawn with ``seed + 2``): ``heldout_accuracy``,
    ``heldout_confusion`` (``n_classes`` lists of ``n_classes`` counts, true class x predicted) and ``heldout_curve``,
    ``[(update, accuracy)]`` before training, every ``heldout_every`` updates (0: only at the end) and at the end;
    without them these are ``None`` / ``[]``.
    """
    if not isinstance(backbone, FeatureExtractor):
        raise ValueError(f"backbone must be an iadtutor.backbones.FeatureExtractor; got {type(backbone).__name__}.")
    config = config or FinetuneConfig.small()
    n_classes = 1 + len(classes)
    if batch_size is not None:
        config = dataclasses.replace(config, images_per_batch=max(1, batch_size // n_classes))
    if epochs is not None:
        updates = math.ceil(epochs * len(images) / (config.images_per_batch * config.accumulate))
        config = dataclasses.replace(config, updates=updates, freeze_updates=min(config.freeze_updates, updates // 4))
    config = config if lr is None else dataclasses.replace(config, lr=lr)
    if min(config.updates, config.images_per_batch, config.accumulate) < 1:
        raise ValueError(f"updates, images_per_batch and accumulate must be at least 1; got {config}.")
    device, started = resolve_device(device), time.perf_counter()
    options = dict(classes=classes, is_texture=is_texture, **dataset_options)
    dataset = DefectMakerDataset(images, foregrounds=foregrounds, seed=seed, **options)
    history = {"loss": [], "accuracy": [], "lr": [], "loss_kind": config.loss, "heldout_curve": []}
    heldout = dict(seed=seed + 2, **options)
    rng_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(seed)  # head initialisation and EfficientNet's drop-connect
        final_stage = load_final_stage(backbone.name) if config.head_on == "final_stage" else None
        model = DefectClassifier(copy.deepcopy(backbone), final_stage, n_classes, config.head_layers).to(device)
        body = [module for module in (model.backbone, model.final_stage) if module is not None]
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=config.cosine_period,
                                                                         eta_min=config.min_lr)
        batches = _batches(dataset, config.images_per_batch, seed)
        for update in tqdm(range(config.updates), desc="DefectMaker fine-tuning", disable=not progress):
            if heldout_images is not None and heldout_every > 0 and update % heldout_every == 0:
                history["heldout_curve"].append((update, task_accuracy(model, heldout_images, **heldout)))
            frozen = update < config.freeze_updates
            model.train()
            for module in body:  # frozen: no gradients (SGD skips them) and ImageNet BatchNorm statistics
                module.train(not frozen and config.batchnorm_train).requires_grad_(not frozen)
            optimizer.zero_grad()
            total_loss, n_correct, n_seen = 0.0, 0, 0
            for _ in range(config.accumulate):
                batch, labels = (tensor.to(device) for tensor in next(batches))
                logits = model(batch)
                loss = task_loss(logits, labels, config.loss)
                (loss / config.accumulate).backward()
                total_loss += loss.item() / config.accumulate
                n_correct, n_seen = n_correct + int((logits.argmax(dim=1) == labels).sum()), n_seen + len(labels)
            optimizer.step()
            history["lr"].append(optimizer.param_groups[0]["lr"])
            scheduler.step()
            history["loss"].append(total_loss)
            history["accuracy"].append(n_correct / n_seen)
        model.requires_grad_(True)
        history["train_accuracy"] = task_accuracy(model, images, seed=seed + 1, foregrounds=foregrounds, **options)
        history["heldout_accuracy"] = history["heldout_confusion"] = None
        if heldout_images is not None:
            labels, predicted = task_predictions(model, heldout_images, **heldout)
            history["heldout_accuracy"] = float((labels == predicted).mean())
            history["heldout_confusion"] = sklearn.metrics.confusion_matrix(labels, predicted, labels=range(n_classes)).tolist()
            history["heldout_curve"].append((config.updates, history["heldout_accuracy"]))
    history["seconds"] = time.perf_counter() - started
    return model.backbone.eval(), history


# ---------------------------------------------------------------------- Saving and loading fine-tuned weights

def save_finetuned(backbone: FeatureExtractor, path) -> Path:
    """Write ``{"backbone": name, "state_dict": ...}`` to ``path`` atomically (temp file + rename) (notebook 06)."""
    path = Path(path)
    payload = {"backbone": backbone.name,
               "state_dict": {key: value.detach().cpu() for key, value in backbone.state_dict().items()}}
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)
    return path


def load_finetuned(path, device="cpu", backbone: FeatureExtractor | None = None) -> FeatureExtractor:
    """Load weights written by :func:`save_finetuned` (``torch.load(weights_only=True)``) (notebook 06).

    They go into a copy of ``backbone`` when given (its name must match), otherwise into a fresh
    ``load_backbone(name)``. Returns a ``FeatureExtractor`` in eval mode on ``device``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no fine-tuned weights file there.")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or not {"backbone", "state_dict"} <= payload.keys():
        raise ValueError(f"{path}: expected a file written by save_finetuned with keys 'backbone' and 'state_dict'.")
    if backbone is not None and backbone.name != payload["backbone"]:
        raise ValueError(f"{path} holds {payload['backbone']} weights, but the backbone given is {backbone.name}.")
    backbone = (load_backbone(payload["backbone"], device="cpu", download=False, verbose=False) if backbone is None
                else copy.deepcopy(backbone).cpu())
    backbone.load_state_dict(payload["state_dict"])
    return backbone.eval().to(resolve_device(device))


# ------------------------------------------------------------------------------------------------ REB
# REB = DefectMaker fine-tuned features + LDKNN; table 5 puts both scorers on both representations.
# REB's embedding is the one of pipeline.METHODS["ldknn"]: the second and third ResNet stages, "phi_2 + phi_3"
# (sec. 3.2), through its neck (3x3 neighbourhoods averaged to a fixed length, embed.neighbourhood_features).
REB_LAYERS = pipeline.METHODS["ldknn"].layers


def reb_scorers(k: int = 5, alpha: float = 1.0, device="cpu") -> dict[str, Callable[[], PatchScorer]]:
    """The two scorers of REB's table 5 as ``{name: factory}`` (notebook 06): ``"KNN"`` (methods ``knn``: mean
    distance to ``k`` neighbours, no coreset) and ``"LDKNN"`` (nearest distance minus ``alpha`` times its local
    density), with :data:`iadtutor.pipeline.METHODS`' other defaults (REB's image score)."""
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}.")
    return {"KNN": lambda: pipeline.make_scorer("knn", device=device, k=k),
            "LDKNN": lambda: pipeline.make_scorer("ldknn", device=device, k=k, alpha=alpha)}


def compare_representations(category: "pipeline.Category", backbones: Mapping[str, FeatureExtractor],
                            scorers: Mapping[str, Callable[[], PatchScorer]] | None = None,
                            config: EmbeddingConfig | None = None, batch_size: int = 16,
                            progress: bool = False, keep_results: bool = False, n_boot: int = 0):
    """Every scorer on every representation of ``category``: REB's table 5 for one category (notebook 06).

    ``backbones``: ``{representation name: FeatureExtractor}`` (e.g. ImageNet and DefectMaker weights);
    ``scorers``: ``{scorer name: function returning a fresh PatchScorer}`` (default :func:`reb_scorers`);
    ``config``: how images become patch embeddings (default: REB's, ``pipeline.method_config("ldknn")``,
    at the category's image size).

    Returns a DataFrame with one row per (representation, scorer): columns ``representation``,
    ``scorer``, ``image_auroc``, ``pixel_auroc``, ``aupro`` (fractions) and ``seconds`` (fit + score,
    embedding excluded); with ``n_boot > 0`` also ``METRIC_low`` / ``METRIC_high``, the bootstrap 95 % intervals
    of ``iadtutor.metrics`` (``n_boot`` resamples of the test images, the same ones for every row). With
    ``keep_results=True`` returns ``(table, {(representation, scorer):
    pipeline.ScoreResult})`` so that maps can be shown.
    """
    if not backbones:
        raise ValueError("backbones is empty: give at least one {name: FeatureExtractor}.")
    scorers = reb_scorers() if scorers is None else scorers
    if config is None:
        config = pipeline.method_config("ldknn", image_size=int(min(category.train.images.shape[-2:])))
    rows, results = [], {}
    for representation, backbone in backbones.items():
        if not isinstance(backbone, FeatureExtractor):
            raise ValueError(f"backbones[{representation!r}] must be a FeatureExtractor; "
                             f"got {type(backbone).__name__}.")
        embedded = pipeline.embed_category(category, PatchEmbedder(backbone, config), batch_size, progress)
        for name, make in scorers.items():
            start = time.perf_counter()
            result = pipeline.score_category(embedded, make())
            rows.append({"representation": representation, "scorer": name,
                         **{metric: result.metrics[metric] for metric in METRICS},
                         "seconds": time.perf_counter() - start})
            if n_boot > 0:
                test = category.test
                for metric, arrays in (("image_auroc", (test.labels, result.image_scores)),
                                       ("pixel_auroc", (test.masks, result.maps)), ("aupro", (test.masks, result.maps))):
                    interval = getattr(metrics, f"{metric}_ci")(*arrays, n_boot=n_boot)
                    rows[-1].update({f"{metric}_low": interval[0], f"{metric}_high": interval[1]})
            results[representation, name] = result
    table = pd.DataFrame(rows)
    return (table, results) if keep_results else table


def results_grid(table: pd.DataFrame, metric: str = "image_auroc") -> pd.DataFrame:
    """One metric of :func:`compare_representations` as a representation x scorer grid (table 5, notebook 06)."""
    if metric not in table.columns:
        raise ValueError(f"metric must be one of the table's columns {list(table.columns)}; got {metric!r}.")
    return table.pivot(index="representation", columns="scorer", values=metric).loc[
        table["representation"].unique(), table["scorer"].unique()]
