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

    densities = LDKNN(k=5).fit(train_emb).density_maps()      # (M, h, w), iadtutor.knn
    points = project_patches(flatten_patches(train_emb))      # (M·h·w, 2) for a scatter plot
    search = neighbour_search(train_emb, test_emb, k_max=20)  # one search serves every K and α
    search.ldknn_scores(k=5, alpha=1.0)                       # (N, h, w), = LDKNN(k=5, alpha=1).score
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from iadtutor.knn import CHUNK_BYTES, flatten_patches, knn_distances


def patch_positions(shape: tuple[int, int, int]) -> pd.DataFrame:
    """Where each flattened patch of ``shape (M, h, w)`` comes from: columns image, row, col (notebook 05)."""
    m, h, w = shape
    image, row, col = np.unravel_index(np.arange(m * h * w), (m, h, w))
    return pd.DataFrame({"image": image, "row": row, "col": col})


def density_table(densities: torch.Tensor, paths=None) -> pd.DataFrame:
    """One row per bank patch of ``densities (M, h, w)``: ``image``, ``row``, ``col``, ``density`` (and ``path``
    if ``paths`` is given). Sort it to find the densest and sparsest patches and where they are (notebook 05)."""
    if densities.ndim != 3:
        raise ValueError(f"densities must have shape (M, h, w); got {tuple(densities.shape)}.")
    table = patch_positions(tuple(densities.shape))
    table["density"] = densities.reshape(-1).double().numpy()
    if paths is not None:
        if len(paths) != densities.shape[0]:
            raise ValueError(f"paths has {len(paths)} entries but densities hold {densities.shape[0]} images.")
        table["path"] = np.asarray([str(p) for p in paths])[table["image"].to_numpy()]
    return table


def sample_patches(n_patches: int, n: int, seed: int = 0) -> np.ndarray:
    """``min(n, n_patches)`` distinct patch indices, drawn with a seeded generator and sorted (notebook 05)."""
    if n < 1:
        raise ValueError(f"n must be at least 1; got {n}.")
    if n >= n_patches:
        return np.arange(n_patches)
    return np.sort(np.random.default_rng(seed).choice(n_patches, size=n, replace=False))


def project_patches(features, seed: int = 0) -> np.ndarray:
    """Patch features ``(P, C)`` -> ``(P, 2)``: their first two principal components, for a scatter plot (notebook 05).

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


# ------------------------------------------------------------------------------------ one search, every K
@dataclass
class NeighbourSearch:
    """The two nearest-neighbour searches behind KNN and LDKNN, done once for the largest K (notebook 05).

    ``bank_distances`` ``(B, k_max)``: each bank patch's distances to its nearest other bank patches;
    ``test_distances`` / ``test_index`` ``(P, k_max)``: each test patch's nearest bank patches. Bank and
    test patches are flattened as in :func:`flatten_patches`; ``train_shape`` / ``test_shape`` are the
    ``(M, C, h, w)`` / ``(N, C, h, w)`` embedding shapes. Every K ≤ ``k_max`` and every α then cost only
    a mean and a subtraction (what :func:`iadtutor.pipeline.k_alpha_sweep` relies on).
    """

    bank_distances: torch.Tensor
    test_distances: torch.Tensor
    test_index: torch.Tensor
    train_shape: tuple
    test_shape: tuple
    squared: bool = False

    @property
    def k_max(self) -> int:
        return self.bank_distances.shape[1]

    def _check_k(self, k: int) -> int:
        if not 1 <= int(k) <= self.k_max:
            raise ValueError(f"k must be between 1 and {self.k_max} (the neighbours searched); got {k}.")
        return int(k)

    def densities(self, k: int) -> torch.Tensor:
        """REB eq. 2 for every train patch: ``(M, h, w)``."""
        m, _, h, w = self.train_shape
        return self.bank_distances[:, :self._check_k(k)].mean(1).view(m, h, w)

    def knn_scores(self, k: int) -> torch.Tensor:
        """KNN (``GlobalNN(coreset=1.0, k=K)``): mean distance to the K nearest bank patches, ``(N, h, w)``."""
        n, _, h, w = self.test_shape
        return self.test_distances[:, :self._check_k(k)].mean(1).view(n, h, w)

    def ldknn_terms(self, k: int, alpha: float) -> dict[str, torch.Tensor]:
        """Like :meth:`iadtutor.knn.LDKNN.terms` (``distance``, ``density``, ``score``, ``neighbour``), for every
        test patch."""
        n, _, h, w = self.test_shape
        bank_density = self.bank_distances[:, :self._check_k(k)].mean(1)
        distance, neighbour = self.test_distances[:, 0].view(n, h, w), self.test_index[:, 0].view(n, h, w)
        density = bank_density[neighbour]
        return {"distance": distance, "density": density, "score": distance - alpha * density,
                "neighbour": neighbour}

    def ldknn_scores(self, k: int, alpha: float) -> torch.Tensor:
        """LDKNN (``LDKNN(k=K, alpha=α)``, REB eq. 3): ``(N, h, w)`` patch scores."""
        return self.ldknn_terms(k, alpha)["score"]


def neighbour_search(train_embeddings: torch.Tensor, test_embeddings: torch.Tensor, k_max: int,
                     squared: bool = False, chunk_bytes: int = CHUNK_BYTES) -> NeighbourSearch:
    """Search once: the bank against itself (``k_max`` nearest others) and the test patches against the bank
    (notebook 05)."""
    bank, test = flatten_patches(train_embeddings), flatten_patches(test_embeddings)
    if test_embeddings.shape[1:] != train_embeddings.shape[1:]:
        raise ValueError(f"test embeddings {tuple(test_embeddings.shape)} and train embeddings "
                         f"{tuple(train_embeddings.shape)} must share (C, h, w).")
    bank_distances, _ = knn_distances(bank, bank, k_max, squared=squared, exclude_self=True, chunk_bytes=chunk_bytes)
    test_distances, test_index = knn_distances(test, bank, k_max, squared=squared, chunk_bytes=chunk_bytes)
    return NeighbourSearch(bank_distances, test_distances, test_index, tuple(train_embeddings.shape),
                           tuple(test_embeddings.shape), squared)


def patch_masks(masks: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """``(N, H, W)`` pixel masks -> ``(N, h, w)`` bool: a patch is True when any of its pixels is (notebook 05)."""
    return F.adaptive_max_pool2d(masks[:, None].float(), tuple(grid_hw))[:, 0] > 0


def neighbour_density_summary(terms: dict[str, torch.Tensor], masks: torch.Tensor, labels: torch.Tensor
                              ) -> pd.DataFrame:
    """Who gets forgiven by LDKNN? Mean 1-NN distance and mean density of that neighbour, per kind of patch
    (notebook 05).

    ``terms``: :meth:`NeighbourSearch.ldknn_terms` (or :meth:`iadtutor.knn.LDKNN.terms`) for all test images;
    ``masks`` ``(N, H, W)``, ``labels`` ``(N,)``. Rows: ``patches of normal images``, ``normal patches of
    anomalous images`` and ``defect patches`` (patches touching the mask); columns ``patches``,
    ``distance`` (mean |f − m_j|) and ``neighbour_density`` (mean d_j).
    """
    distance, neighbour_density = terms["distance"], terms["density"]
    defect = patch_masks(masks, tuple(distance.shape[-2:]))
    anomalous = (labels > 0)[:, None, None].expand_as(defect)
    groups = {"patches of normal images": ~anomalous, "normal patches of anomalous images": anomalous & ~defect,
              "defect patches": defect}
    rows = [{"patches": name, "count": int(where.sum()), "distance": float(distance[where].mean()),
             "neighbour_density": float(neighbour_density[where].mean())} for name, where in groups.items()
            if where.any()]
    return pd.DataFrame(rows).set_index("patches")
