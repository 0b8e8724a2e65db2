"""Image -> patch embedding, the way LWinNN (sec. 3.1) and PatchCore build it (notebook 01).

An image ``(3, H, W)`` goes through a pretrained CNN; the three taps at strides 4, 8 and 16 are
average-pooled (3×3, stride 1), resized to the size of the first tap and concatenated on the channel
axis. The result ``(C, h, w)`` holds one feature vector per patch of the image (``h = H / 4``).

Every switch of the LWinNN ablation (paper table 3) is a field of :class:`EmbeddingConfig`:

* ``normalize`` — ImageNet shift-scale normalisation on / off,
* ``keep_aspect`` — resize the shortest side to ``image_size`` instead of a square resize
  (applied when images are loaded, see :func:`iadtutor.data.load_split`; kept here so a run records it),
* ``pool`` and ``pool_padding`` — 3×3 stride-1 average pooling on / off; padded (maps keep their size,
  border averages use only real pixels) or unpadded like the reference code (``AvgPool2d(3, 1)``:
  64×64 -> 62×62 at 256 px),
* ``interpolation`` — ``"bilinear"`` or ``"nearest"`` when resizing taps to the first tap's size.

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

    Defaults: ImageNet normalisation, padded 3×3 average pooling, bilinear resize, taps 0-2 (strides
    4, 8, 16), square resize to ``image_size``. The LWinNN paper differs in two of them: it keeps the
    aspect ratio (``keep_aspect=True``, :func:`iadtutor.pipeline.paper_config`) and its code pools
    without padding (``pool_padding=False``).
    """

    image_size: int = 256
    keep_aspect: bool = False
    normalize: bool = True
    pool: bool = True
    pool_padding: bool = True
    interpolation: str = "bilinear"
    layers: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self):
        if self.interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"interpolation must be 'bilinear' or 'nearest'; got {self.interpolation!r}.")
        if not self.layers or any(layer not in (0, 1, 2) for layer in self.layers):
            raise ValueError(f"layers must be a non-empty subset of (0, 1, 2); got {self.layers!r}.")
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
