"""Where a patch is: its pixels, its local window (LWinNN eq. 2) and its receptive field.

An embedding ``(C, h, w)`` of an ``(H, W)`` image has one feature vector per *patch*; patch ``(row, col)``
sits over the pixels ``row·H/h … (row+1)·H/h`` and ``col·W/w … (col+1)·W/w`` (4×4 pixels for the stride-4
grid of the course). Pixel coordinates here are the ones plotly uses for images: pixel ``i`` is centred
at ``i`` and spans ``i - 0.5 … i + 0.5``, so a box is returned as ``(x0, x1, y0, y1)`` with those edges.

The receptive field of a patch is the set of input pixels its feature vector depends on. It is measured
here, not looked up: back-propagate from the patch to the image and keep the pixels whose gradient is
not zero (the gradient's size inside that box is the *effective* receptive field).
"""

from __future__ import annotations

import torch

from iadtutor.knn import window_offsets


def _check_cell(row: int, col: int, grid_hw: tuple[int, int]) -> None:
    h, w = grid_hw
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"patch (row={row}, col={col}) is outside the {h}×{w} patch grid.")


def cells_to_pixels(r0: int, r1: int, c0: int, c1: int, grid_hw: tuple[int, int],
                    image_hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """Pixel box ``(x0, x1, y0, y1)`` covered by patch rows ``r0 … r1`` and columns ``c0 … c1`` (inclusive)
    (notebook 02)."""
    scale_y, scale_x = image_hw[0] / grid_hw[0], image_hw[1] / grid_hw[1]
    return c0 * scale_x - 0.5, (c1 + 1) * scale_x - 0.5, r0 * scale_y - 0.5, (r1 + 1) * scale_y - 0.5


def patch_pixels(row: int, col: int, grid_hw: tuple[int, int], image_hw: tuple[int, int]):
    """Pixel box ``(x0, x1, y0, y1)`` of patch ``(row, col)`` of an ``h × w`` grid over an ``H × W`` image
    (notebook 01)."""
    _check_cell(row, col, grid_hw)
    return cells_to_pixels(row, row, col, col, grid_hw, image_hw)


def window_cells(row: int, col: int, window: int, grid_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Patch rows ``r0 … r1`` and columns ``c0 … c1`` (inclusive) of the δ×δ window of eq. 2 around
    ``(row, col)``, clipped to the grid (a border patch has a smaller window) (notebook 02)."""
    _check_cell(row, col, grid_hw)
    offsets = window_offsets(window)
    h, w = grid_hw
    return (max(0, row + offsets[0]), min(h - 1, row + offsets[-1]),
            max(0, col + offsets[0]), min(w - 1, col + offsets[-1]))


def window_pixels(row: int, col: int, window: int, grid_hw: tuple[int, int], image_hw: tuple[int, int]):
    """Pixel box ``(x0, x1, y0, y1)`` of the (clipped) δ×δ window around patch ``(row, col)`` (notebook 02)."""
    return cells_to_pixels(*window_cells(row, col, window, grid_hw), grid_hw, image_hw)


def offset_of(offset_index: int, window: int) -> tuple[int, int]:
    """``(dy, dx)`` of an ``offset_index`` as returned by :meth:`iadtutor.knn.LocalWindowNN.nearest` (notebook 02)."""
    offsets = window_offsets(window)
    if not 0 <= offset_index < len(offsets) ** 2:
        raise ValueError(f"offset_index must be in [0, {len(offsets) ** 2}) for δ = {window}; got {offset_index}.")
    return offsets[offset_index // len(offsets)], offsets[offset_index % len(offsets)]


def window_distances(test_embedding: torch.Tensor, train_embeddings: torch.Tensor, row: int, col: int,
                     window: int) -> torch.Tensor:
    """Eq. 2 spelled out for one test patch: the L2 distance from patch ``(row, col)`` of
    ``test_embedding`` ``(C, h, w)`` to every train patch in its δ×δ window (notebook 02).

    Returns ``(M, δ, δ)`` for ``train_embeddings`` ``(M, C, h, w)``: entry ``[m, i, j]`` compares with train
    image ``m`` at ``(row + dy, col + dx)``, ``dy, dx = window_offsets(δ)[i], [j]``; cells that fall outside
    the grid are ``inf``. Its minimum is the LWinNN patch score.
    """
    if test_embedding.ndim != 3 or train_embeddings.ndim != 4 or train_embeddings.shape[1:] != test_embedding.shape:
        raise ValueError(f"test_embedding must be (C, h, w) and train_embeddings (M, C, h, w) with the same "
                         f"C, h, w; got {tuple(test_embedding.shape)} and {tuple(train_embeddings.shape)}.")
    grid = tuple(test_embedding.shape[-2:])
    r0, r1, c0, c1 = window_cells(row, col, window, grid)
    offsets = window_offsets(window)
    query = test_embedding[:, row, col].float()
    block = train_embeddings[:, :, r0:r1 + 1, c0:c1 + 1].float()  # (M, C, rows, cols)
    inside = (block - query[None, :, None, None]).pow(2).sum(1).sqrt()
    result = torch.full((len(train_embeddings), len(offsets), len(offsets)), float("inf"))
    top, left = r0 - (row + offsets[0]), c0 - (col + offsets[0])
    result[:, top:top + inside.shape[1], left:left + inside.shape[2]] = inside.cpu()
    return result


def receptive_field(embedder, image: torch.Tensor, tap: int, row: int, col: int, pooled: bool = False) -> torch.Tensor:
    """How much each input pixel moves the feature vector of cell ``(row, col)`` of tap ``tap`` (notebook 01).

    ``embedder``: a :class:`iadtutor.embed.PatchEmbedder` (its backbone and normalisation are used);
    ``image``: ``(3, H, W)`` in [0, 1]; ``tap``: 0, 1, 2 (strides 4, 8, 16), ``(row, col)`` on that tap's
    own grid; ``pooled=True`` includes the 3×3 average pooling of the embedding. Returns ``(H, W)``: the
    absolute gradient of the sum of the cell's channels w.r.t. the input, summed over colour channels.
    Its non-zero support is the receptive field (see :func:`support_box`).
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must have shape (3, H, W); got {tuple(image.shape)}.")
    pixels = image[None].to(embedder.device).clone().requires_grad_(True)
    with torch.enable_grad():
        feature_map = embedder.backbone(embedder.normalise(pixels))[tap]
        if pooled:
            feature_map = embedder.pool(feature_map)
        _check_cell(row, col, tuple(feature_map.shape[-2:]))
        feature_map[0, :, row, col].sum().backward()
    return pixels.grad[0].abs().sum(0).cpu()


def receptive_fields(embedder, image: torch.Tensor, y: int, x: int, pooled: bool = False) -> list[torch.Tensor]:
    """:func:`receptive_field` of the cell holding pixel ``(y, x)``, for each tap of the embedder's
    config (``(H, W)`` maps, shallowest tap first) (notebook 01)."""
    with torch.no_grad():
        taps = embedder.backbone(embedder.normalise(image[None].to(embedder.device)))
    fields = []
    for tap in embedder.config.layers:
        row, col = cell_at(y, x, tuple(taps[tap].shape[-2:]), tuple(image.shape[-2:]))
        fields.append(receptive_field(embedder, image, tap, row, col, pooled=pooled))
    return fields


def support_box(gradient: torch.Tensor) -> tuple[float, float, float, float]:
    """Pixel box ``(x0, x1, y0, y1)`` around the non-zero entries of an ``(H, W)`` map (notebook 01)."""
    rows = torch.nonzero(gradient.abs().sum(1) > 0).flatten()
    cols = torch.nonzero(gradient.abs().sum(0) > 0).flatten()
    if len(rows) == 0:
        raise ValueError("the gradient is zero everywhere: no receptive field to box.")
    return float(cols[0]) - 0.5, float(cols[-1]) + 0.5, float(rows[0]) - 0.5, float(rows[-1]) + 0.5


def cell_at(y: float, x: float, grid_hw: tuple[int, int], image_hw: tuple[int, int]) -> tuple[int, int]:
    """The cell ``(row, col)`` of an ``h × w`` grid over an ``H × W`` image holding pixel ``(y, x)`` (notebook 01)."""
    row = int(y * grid_hw[0] // image_hw[0])
    col = int(x * grid_hw[1] // image_hw[1])
    _check_cell(row, col, grid_hw)
    return row, col
