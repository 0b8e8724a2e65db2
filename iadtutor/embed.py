"""Image -> patch embedding, the way LWinNN (sec. 3.1) and PatchCore / REB build it (notebook 01).

An image ``(3, H, W)`` goes through a pretrained CNN. LWinNN (``aggregation="average"``): the three taps at
strides 4, 8 and 16 are average-pooled (3×3, stride 1), resized to the size of the first tap and
concatenated on the channel axis. The result ``(C, h, w)`` holds one feature vector per patch of the image
(``h = H / 4``, 2 less without padding). PatchCore and REB's neck (``aggregation="neighbourhood"``): the
taps at strides 8 and 16, each position's 3×3 neighbourhood flattened, resized to the first tap's grid and
averaged down to ``dimension`` numbers (:func:`neighbourhood_features`).

Every switch of the LWinNN ablation (paper table 3) is a field of :class:`EmbeddingConfig`:

* ``normalize`` — ImageNet shift-scale normalisation on / off,
* ``keep_aspect`` — resize the shortest side to ``image_size`` instead of a square resize
  (applied when images are loaded, see :func:`iadtutor.data.load_split`; kept here so a run records it),
* ``pool`` and ``pool_padding`` — 3×3 stride-1 average pooling on / off; padded (maps keep their size,
  border averages use only real pixels) or unpadded like the reference code (``AvgPool2d(3, 1)``:
  64×64 -> 62×62 at 256 px),
* ``interpolation`` — ``"bilinear"`` or ``"nearest"`` when resizing taps to the first tap's size,
* ``aggregation`` and ``dimension`` — LWinNN's pooled concatenation, or PatchCore's neighbourhoods.

Where the defaults differ from the paper or its code, and by how much: ``book/deviations.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from iadtutor.backbones import FeatureExtractor


@dataclass(frozen=True)
class EmbeddingConfig:
    """How images become patch embeddings (notebook 01).

    Defaults: LWinNN's code: ImageNet normalisation, 3×3 average pooling without padding, bilinear
    resize, taps 0-2 (strides 4, 8, 16), shorter side resized to ``image_size`` keeping the aspect ratio.
    PatchCore's embedding: ``layers=(1, 2), aggregation="neighbourhood", dimension=1024``
    (:data:`iadtutor.pipeline.METHODS` holds each method's).
    """

    image_size: int = 256
    keep_aspect: bool = True
    normalize: bool = True
    pool: bool = True
    pool_padding: bool = False
    interpolation: str = "bilinear"
    layers: tuple[int, ...] = (0, 1, 2)
    aggregation: str = "average"
    dimension: int = 1024

    def __post_init__(self):
        if self.interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"interpolation must be 'bilinear' or 'nearest'; got {self.interpolation!r}.")
        if not self.layers or any(layer not in (0, 1, 2) for layer in self.layers):
            raise ValueError(f"layers must be a non-empty subset of (0, 1, 2); got {self.layers!r}.")
        if self.aggregation not in ("average", "neighbourhood"):
            raise ValueError(f"aggregation must be 'average' or 'neighbourhood'; got {self.aggregation!r}.")
        if self.dimension < 1:
            raise ValueError(f"dimension must be at least 1; got {self.dimension}.")
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32 pixels; got {self.image_size}.")

    def as_dict(self) -> dict:
        return asdict(self)


class PatchEmbedder:
    """Turn batches of images into patch embeddings with a frozen :class:`FeatureExtractor` (notebook 01).

    >>> embedder = PatchEmbedder(load_backbone("efficientnet_lite0"), EmbeddingConfig())  # doctest: +SKIP
    >>> embedder.embed(images).shape   # images (N, 3, 256, 256) in [0, 1]          # doctest: +SKIP
    torch.Size([N, 176, 64, 64])
    """

    def __init__(self, backbone: FeatureExtractor, config: EmbeddingConfig = EmbeddingConfig()):
        self.backbone = backbone.eval()
        self.config = config
        self.device = next(backbone.parameters()).device

    @property
    def channels(self) -> int:
        """Number of channels ``C`` of the embedding."""
        if self.config.aggregation == "neighbourhood":
            return self.config.dimension
        return sum(self.backbone.channels[i] for i in self.config.layers)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in [0, 1] -> what the backbone expects (ImageNet mean/std, if enabled)."""
        return self.backbone.normalize(images) if self.config.normalize else images

    def pool(self, feature_map: torch.Tensor) -> torch.Tensor:
        """3×3 stride-1 average pooling, padded (same size) or unpadded (2 pixels smaller)."""
        if not self.config.pool:
            return feature_map
        if self.config.pool_padding:
            return F.avg_pool2d(feature_map, 3, stride=1, padding=1, count_include_pad=False)
        return F.avg_pool2d(feature_map, 3, stride=1)

    def resize(self, feature_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if feature_map.shape[-2:] == size:
            return feature_map
        if self.config.interpolation == "bilinear":
            return F.interpolate(feature_map, size=size, mode="bilinear", align_corners=False)
        return F.interpolate(feature_map, size=size, mode="nearest")

    @torch.no_grad()
    def steps(self, images: torch.Tensor) -> dict[str, list[torch.Tensor] | torch.Tensor]:
        """Every intermediate of one batch, for teaching: ``taps``, ``pooled``, ``resized``, ``embedding``.

        ``images``: ``(N, 3, H, W)`` in [0, 1] on any device. Tensors stay on the backbone's device.
        """
        taps = self.backbone(self.normalise(images.to(self.device)))
        taps = [taps[i] for i in self.config.layers]
        if self.config.aggregation == "neighbourhood":
            return {"taps": taps, "embedding": neighbourhood_features(taps, self.config.dimension)}
        pooled = [self.pool(tap) for tap in taps]
        size = tuple(pooled[0].shape[-2:])
        resized = [self.resize(p, size) for p in pooled]
        return {"taps": taps, "pooled": pooled, "resized": resized, "embedding": torch.cat(resized, dim=1)}

    @torch.no_grad()
    def taps(self, images: torch.Tensor, batch_size: int = 16) -> list[torch.Tensor]:
        """The backbone's chosen taps (before pooling) of ``(N, 3, H, W)`` images, on the CPU."""
        chunks = [self.steps(images[i:i + batch_size])["taps"] for i in range(0, len(images), batch_size)]
        return [torch.cat([chunk[t].cpu() for chunk in chunks]) for t in range(len(chunks[0]))]

    @torch.no_grad()
    def finish(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """The rest of :meth:`embed` from :meth:`taps`: pool, resize to the first tap, concatenate.

        The backbone pass is the expensive part; the LWinNN ablation runs it once and reuses the taps
        for the pooling and interpolation switches.
        """
        if self.config.aggregation == "neighbourhood":
            return neighbourhood_features(taps, self.config.dimension)
        pooled = [self.pool(tap) for tap in taps]
        size = tuple(pooled[0].shape[-2:])
        return torch.cat([self.resize(p, size) for p in pooled], dim=1)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 16, progress: bool = True,
              description: str = "embedding") -> torch.Tensor:
        """``(N, 3, H, W)`` images in [0, 1] -> ``(N, C, h, w)`` float32 embeddings on the CPU."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (N, 3, H, W); got {tuple(images.shape)}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {batch_size}.")
        chunks = []
        for start in tqdm(range(0, len(images), batch_size), desc=description, disable=not progress,
                          unit="batch"):
            batch = images[start:start + batch_size]
            chunks.append(self.steps(batch)["embedding"].float().cpu())
        return torch.cat(chunks) if chunks else torch.empty(0, self.channels, 0, 0)


def neighbourhood_features(taps: list[torch.Tensor], dimension: int = 1024) -> torch.Tensor:
    """PatchCore's locally aware patch features (PatchCore sec. 3.1 and its code; REB's neck) (notebook 03).

    ``taps``: ``(N, C_l, h_l, w_l)`` per layer, the first the finest. Each position's 3×3 neighbourhood
    (zero-padded at the border) is flattened to ``C_l·9`` numbers, resized (bilinear) to the first tap's
    grid, and averaged down to ``dimension`` numbers (``adaptive_avg_pool1d``: runs of consecutive numbers
    are averaged, or repeated when there are fewer than ``dimension``); the layers' vectors are then
    concatenated and averaged down to ``dimension`` once more. Returns ``(N, dimension, h_0, w_0)``.
    """
    size = tuple(taps[0].shape[-2:])
    per_layer = []
    for tap in taps:
        n, c, h, w = tap.shape
        neighbourhoods = F.unfold(tap, kernel_size=3, padding=1).view(n, c * 9, h, w)  # (c, 3, 3) per position
        if (h, w) != size:
            neighbourhoods = F.interpolate(neighbourhoods, size=size, mode="bilinear", align_corners=False)
        rows = neighbourhoods.permute(0, 2, 3, 1).reshape(-1, 1, c * 9)
        per_layer.append(F.adaptive_avg_pool1d(rows, dimension))
    features = F.adaptive_avg_pool1d(torch.cat(per_layer, dim=2), dimension)  # (N·h·w, 1, dimension)
    return features.view(len(taps[0]), *size, dimension).permute(0, 3, 1, 2).contiguous()
