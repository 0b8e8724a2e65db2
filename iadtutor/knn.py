"""Nearest-neighbour patch scoring: where in the training images may a test patch look for its match?

All scorers share one small interface::

    scorer.fit(train_embeddings)            # (M, C, h, w) patch embeddings of normal images
    patch_scores = scorer.score(test_emb)   # (N, C, h, w) -> (N, h, w) patch anomaly scores

* :class:`FixedPositionNN` (SPADE, LWinNN eq. 1): only the patch at the same position ``(h, w)``.
* :class:`LocalWindowNN` (LWinNN eq. 2): any patch inside a δ×δ window around ``(h, w)``.
* :class:`GlobalNN` (PatchCore): any patch anywhere, from a greedy k-center coreset of the memory bank.
* :class:`LDKNN` (REB Algorithm 1): global 1-NN distance minus α × the local density of that neighbour.

Image scores are the maximum of the map (LWinNN eq. 4), or REB's code's 3×3 block means, or PatchCore's
re-weighting (:func:`image_scores`, ``image_score=``); :func:`anomaly_maps` upsamples the patch scores
to image size (bilinear) and blurs them with a Gaussian of σ = 4 pixels.

Distances use ``|x - y|² = |x|² + |y|² - 2 x·y`` so that the heavy part is a matrix multiplication, and
work is cut into chunks so memory stays bounded whatever the number of images. Where the scorers differ
from the papers' code (LDKNN's squared distance, image scores): ``book/deviations.md``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from iadtutor.backbones import resolve_device

CHUNK_BYTES = 512 * 2**20  # memory one block of distance computations may take (bytes)
DEFAULT_SIGMA = 4.0  # Gaussian blur of the anomaly maps, pixels (LWinNN, PatchCore, ULSAD code)
CORESET_RATIO = 0.01  # PatchCore keeps 1 % of the train patches (its code's default for MVTec AD)


def window_offsets(window: int) -> range:
    """Offsets ``a - h`` covered by a window of size δ (eq. 2): ``-⌊δ/2⌋ … ⌈δ/2⌉ - 1``, δ values in all (notebook 02).

    For odd δ this is the symmetric ``-(δ-1)/2 … (δ-1)/2``; δ = 1 is the fixed position of SPADE.
    """
    if window < 1:
        raise ValueError(f"window (δ) must be a positive integer; got {window}.")
    return range(-(window // 2), window - window // 2)


def check_embeddings(embeddings: torch.Tensor, name: str = "embeddings") -> None:
    """Raise one clear sentence unless ``embeddings`` is a non-empty ``(N, C, h, w)`` tensor (notebook 02)."""
    if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 4:
        shape = tuple(embeddings.shape) if hasattr(embeddings, "shape") else type(embeddings).__name__
        raise ValueError(f"{name} must be a tensor of shape (N, C, h, w); got {shape}.")
    if len(embeddings) == 0:
        raise ValueError(f"{name} is empty: at least one image is needed.")


def flatten_patches(embeddings: torch.Tensor) -> torch.Tensor:
    """``(M, C, h, w)`` -> ``(M·h·w, C)`` float32: one row per patch, index ``image·h·w + row·w + col``
    (notebook 05 lays bank values back on the images with this order)."""
    check_embeddings(embeddings)
    return embeddings.permute(0, 2, 3, 1).reshape(-1, embeddings.shape[1]).float()


class PatchScorer:
    """Base class: ``fit`` on train embeddings, ``score`` test embeddings into ``(N, h, w)`` maps (notebook 02).

    Like scikit-learn's estimators, a scorer is fitted by ``fit`` (which sets ``channels``); scoring
    before that raises one clear sentence.
    """

    image_rules = ("max", "blocks")  # what image_score may be (see image_scores)

    def __init__(self, device: str | torch.device = "cpu", chunk_bytes: int = CHUNK_BYTES, progress: bool = False,
                 image_score: str = "max"):
        if image_score not in self.image_rules:
            raise ValueError(f"image_score must be one of {', '.join(self.image_rules)} for "
                             f"{type(self).__name__}; got {image_score!r}.")
        self.device = resolve_device(device)
        self.chunk_bytes = int(chunk_bytes)
        self.progress = progress
        self.image_score = image_score

    def fit(self, train_embeddings: torch.Tensor) -> "PatchScorer":
        raise NotImplementedError

    def score(self, test_embeddings: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def image_scores(self, patch_scores: torch.Tensor, test_embeddings: torch.Tensor) -> torch.Tensor:
        """``(N, h, w)`` patch scores -> ``(N,)`` image scores by this scorer's ``image_score`` rule."""
        return image_scores(patch_scores, self.image_score)

    def _check_test(self, test_embeddings: torch.Tensor) -> None:
        if not hasattr(self, "channels"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet: call fit(train_embeddings) first.")
        check_embeddings(test_embeddings, "test embeddings")
        if test_embeddings.shape[1] != self.channels:
            raise ValueError(f"test embeddings have {test_embeddings.shape[1]} channels but the scorer was "
                             f"fitted on {self.channels}.")


class LocalWindowNN(PatchScorer):
    """LWinNN (eq. 2): distance to the nearest train patch inside a δ×δ window, across all train images (notebook 02).

    The memory bank is kept as ``(h, C, w + δ - 1, M)``: rows, channels, columns padded by the window,
    train images. For one vertical offset ``dy`` and one row of test patches, the candidates of test
    column ``c`` are the ``δ`` bank columns ``c - ⌊δ/2⌋ …`` of all ``M`` train images: a ``(C, δ·M)``
    slab that is a strided *view* of the bank. One ``baddbmm`` over the columns then gives every
    ``(test image, train image, dx)`` dot product of that row, so the heavy work is a matrix
    multiplication on large blocks, without copying the bank. Padding columns have an infinite squared
    norm, so windows are effectively clipped at the border: a border patch has fewer candidates.
    """

    def __init__(self, window: int = 7, **kwargs):
        super().__init__(**kwargs)
        self.window = int(window)
        self.offsets = window_offsets(self.window)  # validates

    def fit(self, train_embeddings: torch.Tensor) -> "LocalWindowNN":
        """Store ``(M, C, h, w)`` train embeddings in the padded bank layout, with squared norms."""
        check_embeddings(train_embeddings, "train embeddings")
        self.n_train, self.channels, self.height, self.width = train_embeddings.shape
        left = -self.offsets.start
        padded_width = self.width + self.window - 1
        self.bank = torch.zeros(self.height, self.channels, padded_width, self.n_train, device=self.device)
        self.bank[:, :, left:left + self.width] = train_embeddings.to(self.device, torch.float32).permute(2, 1, 3, 0)
        self.bank_sq_norms = torch.full((self.height, padded_width, self.n_train), math.inf, device=self.device)
        self.bank_sq_norms[:, left:left + self.width] = self.bank[:, :, left:left + self.width].pow(2).sum(1)
        return self

    @torch.no_grad()
    def nearest(self, test_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Patch scores ``(N, h, w)`` and where the match was: train image index and window offset.

        Returns ``(distance, train_index, offset_index)``; ``offset_index`` indexes
        ``[(dy, dx) for dy in offsets for dx in offsets]`` with ``offsets = window_offsets(δ)``.
        """
        self._check_test(test_embeddings)
        if tuple(test_embeddings.shape[-2:]) != (self.height, self.width):
            raise ValueError(f"test embeddings are {tuple(test_embeddings.shape[-2:])} patches but the train "
                             f"embeddings were {(self.height, self.width)}.")
        n_test = len(test_embeddings)
        # Per test image: its (h, w, C) copy plus the (w, δ·M) block of one row's products (and its min).
        per_image = 4 * (self.height * self.width * self.channels + 2 * self.width * self.window * self.n_train)
        images_per_chunk = max(1, min(n_test, self.chunk_bytes // per_image))
        results = [[], [], []]
        chunks = range(0, n_test, images_per_chunk)
        for start in tqdm(chunks, desc=f"LWinNN δ={self.window}", disable=not self.progress, unit="chunk"):
            for store, part in zip(results, self._nearest_chunk(test_embeddings[start:start + images_per_chunk])):
                store.append(part.cpu())
        distance, train_index, offset_index = (torch.cat(parts) for parts in results)
        return distance, train_index, offset_index

    def _nearest_chunk(self, test_embeddings: torch.Tensor):
        test = test_embeddings.to(self.device, torch.float32).permute(2, 3, 0, 1).contiguous()  # (h, w, n, C)
        h, w, n = test.shape[:3]
        m, window, padded_width = self.n_train, self.window, self.bank.shape[2]
        best = torch.full((h, w, n), math.inf, device=self.device)
        best_index = torch.zeros((h, w, n), dtype=torch.long, device=self.device)  # into the (dy, δ·M) block
        for dy_index, dy in enumerate(self.offsets):
            for row in range(max(0, -dy), h - max(0, dy)):
                bank_row = self.bank[row + dy]  # (C, w + δ - 1, M)
                candidates = bank_row.as_strided((w, self.channels, window * m), (m, padded_width * m, 1))
                norms = self.bank_sq_norms[row + dy].as_strided((w, 1, window * m), (m, window * m, 1))
                # |y|² - 2 x·y for every (column, test image, dx, train image); |x|² is added after the min.
                partial = torch.baddbmm(norms, test[row], candidates, alpha=-2.0)  # (w, n, δ·M)
                value, index = partial.min(dim=2)
                better = value < best[row]
                best[row] = torch.where(better, value, best[row])
                best_index[row] = torch.where(better, index + dy_index * window * m, best_index[row])
        distance = (best + test.pow(2).sum(3)).clamp_min(0).sqrt()
        train_index, offset_index = best_index % m, best_index // m
        return distance.permute(2, 0, 1), train_index.permute(2, 0, 1), offset_index.permute(2, 0, 1)

    def score(self, test_embeddings: torch.Tensor) -> torch.Tensor:
        """``(N, C, h, w)`` -> ``(N, h, w)`` distance to the nearest train patch in the window."""
        return self.nearest(test_embeddings)[0]


class FixedPositionNN(LocalWindowNN):
    """SPADE-style scoring (LWinNN eq. 1): nearest train patch at exactly the same position (δ = 1) (notebook 02)."""

    def __init__(self, **kwargs):
        super().__init__(window=1, **kwargs)


def squared_distances(points: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """``|x - c|²`` of every row of ``points`` ``(P, D)`` to one ``centre`` ``(D,)``: ``(P,)`` (notebook 03).

    This is the coreset's definition of distance, computed as ``(x - c)²`` summed over ``D`` (not with
    the norm trick, whose rounding differs), so that every implementation gives the same bits.
    """
    return (points - centre).pow(2).sum(1)


def greedy_coreset(features: torch.Tensor, ratio: float, projection_dim: int | None = 128, seed: int = 0,
                   progress: bool = False, chunk_rows: int = 16384, first: int | None = None) -> torch.Tensor:
    """Indices of a greedy k-center coreset (PatchCore): repeatedly add the point farthest from the set (notebook 03).

    ``features``: ``(P, C)``. Distances (:func:`squared_distances`) are measured after a seeded Gaussian
    random projection to ``projection_dim`` dimensions (as PatchCore does, for speed); ``None`` keeps the
    full features. Returns ``(round(ratio·P),)`` long indices, starting from a seeded random point (or from
    index ``first``).

    The result is exactly that of the plain loop (``farthest = argmax(min_distance)``, then
    ``min_distance = minimum(min_distance, squared_distances(points, points[farthest]))``), but most
    points are never looked at again: every point ``x`` remembers its nearest selected centre ``a``, and
    a new centre ``c`` can only come closer to ``x`` than ``a`` is if ``|a - c| < 2 |x - a|`` (triangle
    inequality; checked with a 0.1 % margin, far above float rounding). Only those points are computed,
    ``chunk_rows`` at a time into preallocated buffers, with the same arithmetic as the plain loop.
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"coreset ratio must be in (0, 1]; got {ratio}.")
    n_points = len(features)
    n_select = max(1, int(round(ratio * n_points)))
    if n_select >= n_points:
        return torch.arange(n_points)
    generator = torch.Generator().manual_seed(seed)
    points = features.float()
    if projection_dim is not None and projection_dim < points.shape[1]:
        projection = torch.randn(points.shape[1], projection_dim, generator=generator) / math.sqrt(projection_dim)
        points = points @ projection.to(points.device)
    first = int(torch.randint(n_points, (1,), generator=generator)) if first is None else int(first)
    device, dim = points.device, points.shape[1]
    selected = torch.empty(n_select, dtype=torch.long)
    selected[0] = first
    centres = torch.empty(n_select, dim, device=device)
    centres[0] = points[first]
    min_distance = torch.cat([squared_distances(chunk, centres[0]) for chunk in points.split(chunk_rows)])
    # x can come closer to the new centre c than to its own centre a only if |a - c|² < 4 |x - a|².
    limit = 4 * (1 + 1e-3) * min_distance  # with a 0.1 % margin, far above float rounding
    centre_of = torch.zeros(n_points, dtype=torch.int32, device=device)  # position in `selected` of the nearest
    gap_of_point = torch.empty(n_points, device=device)
    may_change = torch.empty(n_points, dtype=torch.bool, device=device)
    rows = torch.empty(min(chunk_rows, n_points), dim, device=device)
    distance = torch.empty(len(rows), device=device)
    for i in tqdm(range(1, n_select), desc="coreset", disable=not progress, unit="pt"):
        farthest = int(torch.argmax(min_distance))  # the first maximum, as in the plain loop
        selected[i] = farthest
        centres[i] = points[farthest]
        gap = squared_distances(centres[:i], centres[i])  # (i,) old centres to the new one, squared
        torch.index_select(gap, 0, centre_of, out=gap_of_point)
        candidates = torch.nonzero(torch.lt(gap_of_point, limit, out=may_change)).squeeze(1)
        for chunk in candidates.split(chunk_rows):
            block = torch.index_select(points, 0, chunk, out=rows[:len(chunk)])
            new = torch.sum(block.sub_(centres[i]).square_(), 1, out=distance[:len(chunk)])
            closer = new < min_distance[chunk]
            moved = chunk[closer]
            centre_of[moved] = i
            min_distance[moved] = new[closer]
            limit[moved] = 4 * (1 + 1e-3) * new[closer]
    return selected


def _topk_smallest(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` smallest of each row of ``values`` ``(R, N)``, ascending, and their column indices."""
    if k == 1:
        return values.min(dim=1, keepdim=True)
    return torch.topk(values, k, dim=1, largest=False)


def _merge_smallest(best: tuple[torch.Tensor, torch.Tensor], block: torch.Tensor, offset: int, k: int):
    """Running ``k`` best ``(values, indices)`` ``(R, k)`` merged with a block of values ``(R, N)`` whose
    column 0 is bank row ``offset``."""
    value, index = _topk_smallest(block, min(k, block.shape[1]))
    value, order = _topk_smallest(torch.cat([best[0], value], 1), k)
    return value, torch.cat([best[1], index + offset], 1).gather(1, order)


def knn_distances(queries: torch.Tensor, bank: torch.Tensor, k: int = 1, squared: bool = False,
                  exclude_self: bool = False, chunk_bytes: int = CHUNK_BYTES, progress: bool = False,
                  description: str = "kNN") -> tuple[torch.Tensor, torch.Tensor]:
    """Distances and indices of the ``k`` nearest rows of ``bank`` ``(B, C)`` for each query ``(Q, C)``.
    (Notebooks 03 and 05.)

    Returns ``(Q, k)`` distances (L2, or squared L2 with ``squared=True``) sorted ascending, and indices.
    ``exclude_self=True`` (``queries`` *is* the bank) skips each point's own row.

    Exact search by blocks, so that memory stays bounded (``chunk_bytes``) and the work is matrix
    products: per block one ``addmm`` gives ``|y|² - 2 x·y`` for up to 2048 queries × 16384 bank rows
    (``|x|²`` does not change the order within a row and is added at the end), and the block's ``k``
    smallest are merged into the running ``k`` best of each query. The bank's own neighbours
    (``exclude_self``) use the symmetry ``|x - y| = |y - x|``: each pair of square blocks is computed
    once and serves the rows of both blocks, half the work of an all-pairs search.
    """
    n_bank = len(bank)
    if k < 1 or k > n_bank - int(exclude_self):
        raise ValueError(f"k must be between 1 and the number of memory-bank patches "
                         f"({n_bank - int(exclude_self)}); got {k}.")
    if exclude_self and queries.shape != bank.shape:
        raise ValueError(f"exclude_self=True needs the bank itself as queries; got queries of shape "
                         f"{tuple(queries.shape)} for a bank of shape {tuple(bank.shape)}.")
    bank_sq = bank.pow(2).sum(1)
    search = _bank_neighbours if exclude_self else _query_neighbours
    value, index = search(queries, bank, bank_sq, k, chunk_bytes, progress, description)
    value = value.clamp_min(0)
    return (value if squared else value.sqrt()), index


def _query_neighbours(queries, bank, bank_sq, k, chunk_bytes, progress, description):
    """Squared distances ``(Q, k)`` and indices of the ``k`` nearest bank rows of each query."""
    columns = max(1, min(len(bank), 16384, chunk_bytes // (4 * 256)))
    rows_per_chunk = max(1, min(2048, chunk_bytes // (4 * columns)))
    block = torch.empty(min(rows_per_chunk, len(queries)), columns, device=bank.device)
    values, indices = [], []
    for start in tqdm(range(0, len(queries), rows_per_chunk), desc=description, disable=not progress,
                      unit="chunk"):
        chunk = queries[start:start + rows_per_chunk]
        best = (torch.full((len(chunk), k), math.inf, device=bank.device),
                torch.zeros((len(chunk), k), dtype=torch.long, device=bank.device))
        for first in range(0, len(bank), columns):
            stop = min(first + columns, len(bank))
            partial = torch.addmm(bank_sq[first:stop], chunk, bank[first:stop].T, alpha=-2.0,
                                  out=block[:len(chunk), :stop - first])
            best = _merge_smallest(best, partial, first, k)
        values.append(best[0] + chunk.pow(2).sum(1, keepdim=True))
        indices.append(best[1])
    return torch.cat(values), torch.cat(indices)


def _bank_neighbours(queries, bank, bank_sq, k, chunk_bytes, progress, description):
    """Squared distances ``(B, k)`` and indices of the ``k`` nearest other bank rows of each bank row."""
    n = len(bank)
    # (size, size) blocks small enough for the cache: the top-k of the transposed block reads across rows
    # (768 was the fastest of 256-4096 for 40k-80k bank patches, C = 152, on 2 cores)
    size = max(1, min(n, 768, math.isqrt(chunk_bytes // 8)))
    best_value = torch.full((n, k), math.inf, device=bank.device)
    best_index = torch.zeros((n, k), dtype=torch.long, device=bank.device)
    block = torch.empty(size, size, device=bank.device)
    starts = range(0, n, size)
    pairs = [(i, j) for i in starts for j in starts if j >= i]
    for i, j in tqdm(pairs, desc=description, disable=not progress, unit="block"):
        rows, columns = slice(i, min(i + size, n)), slice(j, min(j + size, n))
        distance = torch.addmm(bank_sq[columns], bank[rows], bank[columns].T, alpha=-2.0,
                               out=block[:rows.stop - i, :columns.stop - j])
        distance.add_(bank_sq[rows, None])  # |x - y|², the same number for the rows of both blocks
        if i == j:
            distance.fill_diagonal_(math.inf)  # not its own neighbour
        best_value[rows], best_index[rows] = _merge_smallest((best_value[rows], best_index[rows]), distance, j, k)
        if i != j:
            best_value[columns], best_index[columns] = _merge_smallest(
                (best_value[columns], best_index[columns]), distance.T, i, k)
    return best_value, best_index


class GlobalNN(PatchScorer):
    """PatchCore-style scoring: mean distance to the ``k`` nearest patches anywhere in a coreset (notebook 03).

    ``coreset`` is the fraction of all train patches kept by :func:`greedy_coreset` (1.0 keeps all).
    With ``k = 1`` (default) this is PatchCore's patch score; ``k > 1`` is REB's "vanilla KNN".
    ``image_score="reweighted"`` is PatchCore's eq. 7 (:meth:`reweighted_image_scores`).
    """

    image_rules = ("max", "blocks", "reweighted")

    def __init__(self, coreset: float = CORESET_RATIO, k: int = 1, squared: bool = False, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not 0 < coreset <= 1:
            raise ValueError(f"coreset must be a fraction in (0, 1]; got {coreset}.")
        self.coreset, self.k, self.squared, self.seed = coreset, int(k), squared, seed

    def fit(self, train_embeddings: torch.Tensor) -> "GlobalNN":
        check_embeddings(train_embeddings, "train embeddings")
        self.channels = train_embeddings.shape[1]
        self.train_grid = (len(train_embeddings), *train_embeddings.shape[-2:])  # (M, h, w)
        patches = flatten_patches(train_embeddings).to(self.device, torch.float32)
        self.coreset_indices = greedy_coreset(patches, self.coreset, seed=self.seed, progress=self.progress)
        self.bank = patches[self.coreset_indices.to(self.device)].contiguous()
        return self

    @torch.no_grad()
    def nearest(self, test_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, C, h, w)`` -> ``(N, h, w, k)`` distances and memory-bank indices of the k nearest."""
        self._check_test(test_embeddings)
        n, _, h, w = test_embeddings.shape
        queries = flatten_patches(test_embeddings).to(self.device, torch.float32)
        distance, index = knn_distances(queries, self.bank, self.k, self.squared, chunk_bytes=self.chunk_bytes,
                                        progress=self.progress, description="kNN test patches")
        return distance.view(n, h, w, -1).cpu(), index.view(n, h, w, -1).cpu()

    def score(self, test_embeddings: torch.Tensor) -> torch.Tensor:
        return self.nearest(test_embeddings)[0].mean(-1)

    def image_scores(self, patch_scores: torch.Tensor, test_embeddings: torch.Tensor) -> torch.Tensor:
        if self.image_score != "reweighted":
            return super().image_scores(patch_scores, test_embeddings)
        return self.reweighted_image_scores(patch_scores, test_embeddings)

    @torch.no_grad()
    def reweighted_image_scores(self, patch_scores: torch.Tensor, test_embeddings: torch.Tensor,
                                support: int = 9) -> torch.Tensor:
        """PatchCore's eq. 7 (its paper; its public code takes the plain maximum) (notebook 03).

        Per image: ``f*``, the test patch with the highest score ``s*``; ``m*``, its nearest bank patch;
        ``N``, the ``support`` nearest bank patches of ``m*`` (``m*`` first). The image score is
        ``(1 - exp|f* - m*| / Σ_{m ∈ N} exp|f* - m|) · s*``: a patch whose nearest neighbour lies in a
        sparse part of the bank, far from the other candidates, keeps more of its score.
        """
        n = len(patch_scores)
        worst = patch_scores.flatten(1).argmax(1)                                          # (N,)
        queries = flatten_patches(test_embeddings).view(n, -1, self.channels)[torch.arange(n), worst]
        queries = queries.to(self.device, torch.float32)
        _, nearest = knn_distances(queries, self.bank, 1)                                  # m*
        _, neighbourhood = knn_distances(self.bank[nearest[:, 0]], self.bank, min(support, len(self.bank)))
        distance = (queries[:, None] - self.bank[neighbourhood]).norm(dim=2)               # (N, support)
        weight = 1 - torch.softmax(distance, dim=1)[:, 0]
        return (weight.cpu() * patch_scores.flatten(1).amax(1)).float()


class LDKNN(GlobalNN):
    """REB's local-density kNN (Algorithm 1) (notebook 05).

    Fit: for each memory-bank patch ``m_i``, its local density ``d_i`` = mean distance to its ``k``
    nearest other bank patches (eq. 2; small ``d_i`` = dense region). Score: with ``m_j`` the nearest
    bank patch of a test patch ``f``, ``s = |f - m_j| - α·d_j`` (eq. 3). ``squared=True`` uses squared
    L2 for both terms, as REB's public code does; the paper (and default) uses plain L2.
    ``coreset=1.0`` (default) keeps the whole memory bank.
    """

    def __init__(self, k: int = 5, alpha: float = 1.0, coreset: float = 1.0, squared: bool = False, **kwargs):
        super().__init__(coreset=coreset, k=1, squared=squared, **kwargs)
        self.density_k, self.alpha = int(k), float(alpha)

    def fit(self, train_embeddings: torch.Tensor) -> "LDKNN":
        super().fit(train_embeddings)
        neighbour_distances, _ = knn_distances(self.bank, self.bank, self.density_k, self.squared,
                                               exclude_self=True, chunk_bytes=self.chunk_bytes,
                                               progress=self.progress, description="kNN of the bank")
        self.local_density = neighbour_distances.mean(1)  # (B,) mean distance to the k nearest
        return self

    def terms(self, test_embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        """The two terms of the score (eq. 3) for every test patch, as ``(N, h, w)`` maps (notebook 05).

        ``distance``: ``|f - m_j|`` to the nearest bank patch (= KNN with K = 1); ``density``: ``d_j``,
        the local density of that neighbour; ``score``: ``distance - α·density``; ``neighbour``: ``j``.
        """
        distance, index = self.nearest(test_embeddings)
        distance, index = distance[..., 0], index[..., 0]
        density = self.local_density.cpu()[index]
        return {"distance": distance, "density": density, "score": distance - self.alpha * density,
                "neighbour": index}

    def score(self, test_embeddings: torch.Tensor) -> torch.Tensor:
        return self.terms(test_embeddings)["score"]

    def density_maps(self) -> torch.Tensor:
        """The local density ``d_i`` of every bank patch put back on the training images: ``(M, h, w)``.

        Only a whole memory bank (``coreset=1.0``) has one density per train patch position.
        """
        if not hasattr(self, "local_density"):
            raise ValueError("this LDKNN is not fitted yet: call fit(train_embeddings) first.")
        if self.coreset != 1.0:
            raise ValueError(f"the memory bank is a {self.coreset:g} coreset, not every train patch: fit with "
                             "coreset=1.0 to map densities back to the images.")
        m, h, w = self.train_grid
        return self.local_density.detach().cpu().view(m, h, w)


def image_scores(patch_scores: torch.Tensor, rule: str = "max") -> torch.Tensor:
    """Image anomaly scores ``(N,)`` from patch scores ``(N, h, w)`` (notebook 02).

    ``"max"``: the maximum patch score (LWinNN eq. 4, PatchCore's and LWinNN's code). ``"blocks"``: REB's
    code: the maximum over the means of non-overlapping 3×3 blocks (``avg_pool2d(scores, 3)``; a last
    row or column that does not fill a block is dropped), so one outlying patch counts less.
    """
    if rule == "blocks":
        return F.avg_pool2d(patch_scores[:, None].float(), 3).flatten(1).amax(1)
    if rule != "max":
        raise ValueError(f"rule must be 'max' or 'blocks'; got {rule!r}.")
    return patch_scores.flatten(1).amax(1)


def blur_maps(maps: torch.Tensor, sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """Gaussian blur of ``(N, H, W)`` maps, ``sigma`` pixels: the one blur of every anomaly map (kNN
    methods and ULSAD). Kernel radius ``int(4σ + 0.5)`` and mirrored borders (``a b c | c b a``), the
    choices of ``scipy.ndimage.gaussian_filter``, computed in torch as two 1-D convolutions (notebook 02)."""
    if sigma <= 0:
        return maps
    radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(maps.device, torch.float32)
    out = maps.float()[:, None]
    for dim, shape in ((3, (1, 1, 1, -1)), (2, (1, 1, -1, 1))):
        n = out.shape[dim]
        mirrored = torch.arange(-radius, n + radius, device=maps.device) % (2 * n)  # position in a b c c b a
        out = F.conv2d(out.index_select(dim, torch.where(mirrored < n, mirrored, 2 * n - 1 - mirrored)),
                       kernel.view(shape))
    return out[:, 0]


def anomaly_maps(patch_scores: torch.Tensor, size: tuple[int, int], sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """Patch scores ``(N, h, w)`` -> pixel anomaly maps ``(N, H, W)`` float32 (numpy): bilinear upsampling
    to the image size, then :func:`blur_maps` (notebook 02)."""
    upsampled = F.interpolate(patch_scores[:, None].float(), size=tuple(size), mode="bilinear",
                              align_corners=False)[:, 0]
    return blur_maps(upsampled, sigma).numpy()
