"""Local density of the memory bank (REB sec. 3.3–3.4): which normal patches sit in crowded parts of
feature space, which in sparse ones, and where in the training images they come from.

REB measures the local density of every memory-bank patch ``m_i`` as the mean distance to its ``K``
nearest other bank patches (eq. 2)::

    d_i = mean_k |m_i - m_i^k|,   k = 1 … K          (small d_i: a dense region)

and LDKNN scores a test patch ``f`` with its nearest bank patch ``m_j`` as ``|f - m_j| - α·d_j`` (eq. 3):
a patch whose nearest normal neighbour lives in a sparse region is forgiven part of its distance.

The memory bank here is the whole set of train patches (no coreset), in the order of
``embeddings.permute(0, 2, 3, 1).reshape(-1, C)``: patch ``(image, row, col)`` has index
``image·h·w + row·w + col``, so a ``(M·h·w,)`` vector of densities reshapes to ``(M, h, w)`` maps that
can be laid over the train images.

Example::

    densities = local_densities(train_emb, k=5)               # (M, h, w)
    points = project_patches(flat_features)                   # (P, 2) for a scatter plot
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .knn import LDKNN, anomaly_maps, knn_distances


def flatten_patches(embeddings: torch.Tensor) -> torch.Tensor:
    """``(M, C, h, w)`` -> ``(M·h·w, C)``: one row per patch, index ``image·h·w + row·w + col``."""
    if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 4:
        shape = tuple(embeddings.shape) if hasattr(embeddings, "shape") else type(embeddings).__name__
        raise ValueError(f"embeddings must be a tensor of shape (M, C, h, w); got {shape}.")
    return embeddings.permute(0, 2, 3, 1).reshape(-1, embeddings.shape[1]).float()


def patch_positions(shape: tuple[int, int, int]) -> pd.DataFrame:
    """Where each flattened patch comes from: columns ``image``, ``row``, ``col`` for ``shape = (M, h, w)``."""
    m, h, w = shape
    image, row, col = np.unravel_index(np.arange(m * h * w), (m, h, w))
    return pd.DataFrame({"image": image, "row": row, "col": col})


def neighbour_distances(bank: torch.Tensor, k_max: int, squared: bool = False) -> torch.Tensor:
    """Distances ``(B, k_max)`` of every bank row ``(B, C)`` to its ``k_max`` nearest *other* rows, ascending."""
    if k_max < 1 or k_max >= len(bank):
        raise ValueError(f"k_max must be between 1 and the number of bank patches minus one ({len(bank) - 1}); "
                         f"got {k_max}.")
    distances, _ = knn_distances(bank.float(), bank.float(), k_max, squared=squared, exclude_self=True)
    return distances


def densities_for_ks(distances: torch.Tensor, ks) -> dict[int, torch.Tensor]:
    """Local densities for several ``K`` from one ``(B, k_max)`` table of sorted neighbour distances.

    ``d_i(K)`` is the mean of the first ``K`` columns (eq. 2), so one neighbour search serves every K.
    """
    ks = [int(k) for k in ks]
    if any(k < 1 or k > distances.shape[1] for k in ks):
        raise ValueError(f"every K must be between 1 and {distances.shape[1]} (the neighbours computed); got {ks}.")
    running_mean = distances.cumsum(1) / torch.arange(1, distances.shape[1] + 1, dtype=distances.dtype)
    return {k: running_mean[:, k - 1] for k in ks}


def local_densities(train_embeddings: torch.Tensor, k: int = 5, squared: bool = False) -> torch.Tensor:
    """REB eq. 2 for every train patch: ``(M, C, h, w)`` -> ``(M, h, w)`` mean distance to its ``k`` nearest
    other patches of the whole memory bank (all images, all positions). Small = dense."""
    bank = flatten_patches(train_embeddings)
    m, _, h, w = train_embeddings.shape
    return neighbour_distances(bank, k, squared).mean(1).view(m, h, w)


def densities_of(scorer: LDKNN, train_shape) -> torch.Tensor:
    """The local densities a fitted :class:`~iadtutor.knn.LDKNN` holds, as ``(M, h, w)`` maps.

    ``train_shape``: the ``(M, C, h, w)`` shape of the train embeddings it was fitted on. Only a scorer
    whose memory bank is every train patch (``coreset=1.0``) has one density per patch position.
    """
    m, _, h, w = train_shape
    if not hasattr(scorer, "local_density"):
        raise ValueError("scorer must be a fitted iadtutor.knn.LDKNN.")
    if len(scorer.local_density) != m * h * w:
        raise ValueError(f"the scorer's memory bank holds {len(scorer.local_density)} patches, not all {m * h * w} "
                         "train patches: fit it with coreset=1.0 to map densities back to the images.")
    return scorer.local_density.cpu().view(m, h, w)


def density_table(densities: torch.Tensor, paths=None) -> pd.DataFrame:
    """One row per bank patch: ``image``, ``row``, ``col``, ``density`` (and ``path`` if ``paths`` is given).

    ``densities``: ``(M, h, w)``. Sort it to find the densest and sparsest patches and where they are.
    """
    if densities.ndim != 3:
        raise ValueError(f"densities must have shape (M, h, w); got {tuple(densities.shape)}.")
    table = patch_positions(tuple(densities.shape))
    table["density"] = densities.reshape(-1).numpy()
    if paths is not None:
        if len(paths) != densities.shape[0]:
            raise ValueError(f"paths has {len(paths)} entries but densities hold {densities.shape[0]} images.")
        table["path"] = np.asarray([str(p) for p in paths])[table["image"].to_numpy()]
    return table


def density_maps(densities: torch.Tensor, image_hw: tuple[int, int]) -> np.ndarray:
    """``(M, h, w)`` patch densities -> ``(M, H, W)`` maps at image size (bilinear, no blur), for overlays."""
    return anomaly_maps(densities, tuple(image_hw), sigma=0)


def sample_patches(n_patches: int, n: int, seed: int = 0) -> np.ndarray:
    """``min(n, n_patches)`` distinct patch indices, drawn with a seeded generator and sorted."""
    if n < 1:
        raise ValueError(f"n must be at least 1; got {n}.")
    if n >= n_patches:
        return np.arange(n_patches)
    return np.sort(np.random.default_rng(seed).choice(n_patches, size=n, replace=False))


def project_patches(features, seed: int = 0) -> np.ndarray:
    """Patch features ``(P, C)`` -> ``(P, 2)``: their first two principal components, for a scatter plot.

    scikit-learn ``PCA`` with an exact SVD, so the result is deterministic; each axis's sign is fixed so
    that its largest-magnitude loading is positive (the projection does not depend on the points' order).
    ``seed`` is unused by the exact solver and kept for a randomised solver's sake.
    """
    from sklearn.decomposition import PCA

    array = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if array.ndim != 2 or len(array) < 3 or array.shape[1] < 2:
        raise ValueError(f"features must have shape (P, C) with at least 3 patches and 2 channels; got {array.shape}.")
    pca = PCA(n_components=2, svd_solver="full", random_state=seed).fit(array.astype(np.float64))
    signs = np.sign(pca.components_[np.arange(2), np.abs(pca.components_).argmax(1)])
    return (pca.transform(array.astype(np.float64)) * signs).astype(np.float32)


def ldknn_terms(scorer: LDKNN, test_embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
    """The two terms of an LDKNN score (eq. 3) for every test patch, as ``(N, h, w)`` maps.

    ``distance``: ``|f - m_j|`` to the nearest bank patch (= KNN with K = 1); ``density``: ``d_j``, the
    local density of that neighbour; ``score``: ``distance - α·density`` (= ``scorer.score``);
    ``neighbour``: the bank index ``j`` (long).
    """
    if not isinstance(scorer, LDKNN) or not hasattr(scorer, "local_density"):
        raise ValueError("scorer must be a fitted iadtutor.knn.LDKNN.")
    distance, index = scorer.nearest(test_embeddings)
    distance, index = distance[..., 0], index[..., 0]
    density = scorer.local_density.cpu()[index]
    return {"distance": distance, "density": density, "score": distance - scorer.alpha * density,
            "neighbour": index}
