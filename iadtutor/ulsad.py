"""ULSAD: deep feature reconstruction for logical and structural anomalies.

Patra & Ben Taieb, "Revisiting Deep Feature Reconstruction for Logical and Structural Industrial Anomaly
Detection", TMLR 2024 (``shared/papers/003_*.txt``). Equation numbers below are the paper's.

The pieces, in the order of the paper:

* **Feature aggregator** (sec. 3.1): the stride-8 and stride-16 taps of a frozen pretrained backbone,
  the coarser one bilinearly rescaled to the finer one and concatenated into ``U`` ``(N, c*, h*, w*)``,
  standardised channel-wise with the mean / std of the training set (Algorithm 1, line 4).
* **Local branch** (sec. 3.2): :class:`FeatureReconstructionNetwork` (table 5) reconstructs ``U``. Its
  decoder has ``2 c*`` output channels: the first half ``U~'`` is the reconstruction of ``U`` (loss eq. 1,
  map eq. 7), the second half ``U~''`` learns to predict the global branch's output (loss eq. 6, map eq. 8).
* **Global branch** (sec. 3.3): :class:`GlobalAutoencoder` (table 6) maps the *image* to ``U^`` in the
  feature space. It is trained so that the cross-attention of ``U^`` over ``U`` (eq. 4) reproduces the
  self-attention of ``U`` (eq. 3) (loss eq. 5).
* **Inference** (sec. 3.5): local map eq. 7, global map eq. 8, each mapped linearly so that the
  ``alpha`` / ``beta`` quantiles of the maps of held-out normal images go to 0 / 0.1, averaged; the
  image score is the maximum of the combined map.

The pure-torch model (:class:`ULSADModel`, the loss and attention functions) is separate from the training
wrapper :class:`ULSAD` (``fit`` / ``predict`` / ``attention_maps`` / ``save`` / ``load``), as in anomalib.

Where the paper's text and the authors' code (github.com/sukanyapatra1997/ULSAD-2024) differ, the defaults
follow the code, which produced the paper's numbers; :data:`PAPER_TEXT` gives the text's reading. The book's
page ``book/deviations.md`` lists every difference, and what is deliberately not followed.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from iadtutor.backbones import FeatureExtractor, load_backbone, resolve_device, same_numbers_on_every_cpu
from iadtutor.files import atomic_path
from iadtutor.knn import DEFAULT_SIGMA, blur_maps

#: The backbone taps ULSAD uses: indices into ``FeatureExtractor.forward``'s list (strides 8 and 16).
TAPS = (1, 2)
CHECKPOINT_FORMAT = "iadtutor.ulsad/1"
MAGNITUDES = ("mean", "sum")
LAYER_ORDERS = ("conv-bn-relu", "conv-relu-bn")
INITS = ("xavier", "default")
UPSAMPLE_SIZES = ("code", "table")

#: Where the paper's text and the authors' code differ, ``ULSADConfig`` follows the code; these settings
#: give the text's reading instead (each one on its own, or all: ``ULSADConfig.small(**PAPER_TEXT)``).
PAPER_TEXT = {
    "magnitude": "sum",               # eq. 2: squared L2 norm over channels (code: mean over channels)
    "layer_order": "conv-relu-bn",    # tables 5-6: ReLU, then a BatchNorm row (code: conv -> BN -> ReLU)
    "frn_bottleneck_relu": True,      # table 5: Conv-3 has a ReLU (code: BN only)
    "frn_init": "default",            # no initialisation in the paper (code: Xavier-uniform, leaky-ReLU gain)
    "ae_code_size": 3,                # table 6: Conv-6 8x8, padding 1 -> 3 x 3 code (code: padding 0 -> 1 x 1)
    "ae_upsample_sizes": "table",     # table 6: 3, 8, 16, 32, 64 (code: 3, 8, 15, 31, 63)
    "ae_affine_batchnorm": True,      # plain BatchNorm rows (code: affine=False, eps=1e-4)
    "ae_output_relu": True,           # table 6: Conv-7 has a ReLU (code: linear)
}


# ----------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------
@dataclass
class ULSADConfig:
    """Everything that defines a ULSAD model and its training (notebook 07). Defaults are the paper's (sec. 4.1,
    app. A) where its text and the authors' code agree, else the code's (:data:`PAPER_TEXT` gives the text's).

    ``feature_channels`` is ``c*`` (None keeps all backbone channels); ``frn_*_channels`` / ``ae_*_channels``
    are the kernels of tables 5 / 6; ``image_size`` (pixels, a multiple of 32, at least 64) is the square size
    images are resized to. ``lambda_local`` (eqs. 1, 7) and ``lambda_global`` (eqs. 5, 6, 8) weight the cosine
    term; quantiles ``alpha`` / ``beta``; ``blur_sigma`` in pixels at ``image_size``; Adam with
    ``learning_rate`` and ``weight_decay``; ``seed`` seeds initialisation, the hold-out split and batch order.
    """

    backbone: str = "auto"
    image_size: int = 256
    feature_channels: int | None = 384
    frn_encoder_channels: tuple[int, int, int] = (768, 1536, 1536)
    frn_decoder_channels: tuple[int, int] = (768, 384)
    ae_encoder_channels: tuple[int, int, int, int, int, int] = (32, 32, 64, 64, 64, 64)
    ae_decoder_channels: int = 64
    layer_order: str = "conv-bn-relu"
    frn_bottleneck_relu: bool = False
    frn_output_relu: bool = True
    frn_init: str = "xavier"
    ae_code_size: int = 1
    ae_upsample_sizes: str = "code"
    ae_affine_batchnorm: bool = False
    ae_output_relu: bool = False
    lambda_local: float = 0.5
    lambda_global: float = 0.5
    magnitude: str = "mean"
    alpha: float = 0.9
    beta: float = 0.995
    blur_sigma: float = DEFAULT_SIGMA
    epochs: int = 200
    batch_size: int = 8
    learning_rate: float = 2e-4
    weight_decay: float = 2e-5
    seed: int = 0

    def __post_init__(self):
        # Tuples survive torch.save / weights_only loading as lists; normalise them back.
        for name in ("frn_encoder_channels", "frn_decoder_channels", "ae_encoder_channels"):
            setattr(self, name, tuple(getattr(self, name)))
        if self.image_size < 64 or self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 and at least 64 pixels; got {self.image_size}.")
        if len(self.frn_encoder_channels) != 3 or len(self.frn_decoder_channels) != 2:
            raise ValueError("frn_encoder_channels needs 3 sizes and frn_decoder_channels 2 (table 5).")
        if len(self.ae_encoder_channels) != 6:
            raise ValueError("ae_encoder_channels needs 6 sizes, one per encoder convolution (table 6).")
        for name, allowed in (("magnitude", MAGNITUDES), ("layer_order", LAYER_ORDERS), ("frn_init", INITS),
                              ("ae_upsample_sizes", UPSAMPLE_SIZES), ("ae_code_size", (1, 3))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}.")
        if not 0.0 <= self.alpha < self.beta <= 1.0:
            raise ValueError(f"quantiles need 0 <= alpha < beta <= 1; got alpha={self.alpha}, beta={self.beta}.")
        if self.blur_sigma < 0 or int(4 * self.blur_sigma + 0.5) >= self.image_size:
            raise ValueError(f"blur_sigma must be >= 0 and 4*blur_sigma below image_size; got {self.blur_sigma}.")
        if self.epochs < 0 or self.batch_size < 1:
            raise ValueError(f"epochs must be >= 0 and batch_size >= 1; got {self.epochs}, {self.batch_size}.")

    @classmethod
    def paper(cls, **changes) -> "ULSADConfig":
        """The paper's settings (256 px, c* = 384, 200 epochs). The paper's backbone is
        ``wide_resnet50_2``; pass ``backbone=`` to choose it (the default ``auto`` follows DESIGN.md)."""
        return cls(**changes)

    @classmethod
    def small(cls, **changes) -> "ULSADConfig":
        """A CPU-sized variant for the toy factory (notebook 07's defaults): the paper's 256 px, all backbone
        channels (no pooling), narrow networks, and 100 epochs in batches of 4 with learning rate 3e-3, since 40
        training images give far fewer steps per epoch than the paper's few hundred. ``blur_sigma`` is the
        paper's 4 px at 256 px, scaled with ``image_size`` unless given. Everything else as in the authors' code."""
        settings = dict(image_size=256, feature_channels=None, frn_encoder_channels=(64, 128, 128),
                        frn_decoder_channels=(64, 32), ae_encoder_channels=(16, 16, 32, 32, 32, 32),
                        ae_decoder_channels=32, epochs=100, batch_size=4, learning_rate=3e-3)
        settings["blur_sigma"] = 4.0 * changes.get("image_size", settings["image_size"]) / 256
        return cls(**{**settings, **changes})


# ----------------------------------------------------------------------------------------------------------
# Distances, losses and attention (eqs. 1-8), on tensors shaped (N, C, h, w)
# ----------------------------------------------------------------------------------------------------------
def magnitude_distance(a: Tensor, b: Tensor, magnitude: str = "mean") -> Tensor:
    """``l_v`` of eq. 2 at every location, ``(N, C, h, w)`` -> ``(N, h, w)`` (notebook 07): the mean of
    ``(a - b)^2`` over channels (the authors' code); ``magnitude="sum"``: eq. 2's ``||a - b||^2``."""
    squared = (a - b).pow(2)
    return squared.sum(dim=1) if magnitude == "sum" else squared.mean(dim=1)


def direction_distance(a: Tensor, b: Tensor) -> Tensor:
    """``l_d`` of eq. 2: ``1 - cos(a, b)`` over channels, ``(N, C, h, w)`` -> ``(N, h, w)`` (notebook 07)."""
    return 1.0 - F.cosine_similarity(a, b, dim=1, eps=1e-8)


def distance_map(predicted: Tensor, target: Tensor, lam: float, magnitude: str = "mean") -> Tensor:
    """``l_v + lam * l_d``, ``(N, C, h, w)`` -> ``(N, h, w)``: the summand of eqs. 1, 5, 6, the maps of eqs. 7, 8
    (notebook 07)."""
    return magnitude_distance(predicted, target, magnitude) + lam * direction_distance(predicted, target)


def local_loss(reconstruction: Tensor, features: Tensor, lambda_local: float, magnitude: str = "mean") -> Tensor:
    """``L_pl`` of eq. 1: mean of ``l_v + lambda_l l_d`` between ``U~'`` and ``U`` (notebook 07)."""
    return distance_map(reconstruction, features, lambda_local, magnitude).mean()


def attention_weights(keys: Tensor, queries: Tensor) -> Tensor:
    """Attention weights of eqs. 3-4: ``W[p, q] = softmax_p(k_p . q_q / sqrt(c))`` (notebook 07).

    ``keys``, ``queries`` ``(N, c, h, w)`` -> ``(N, k, k)``, ``k = h * w``, indexed ``[image, key p, query q]``;
    every column sums to 1 over the keys ``p``.
    """
    return (keys.flatten(2).transpose(1, 2) @ queries.flatten(2) / math.sqrt(keys.shape[1])).softmax(dim=1)


def self_attention_weights(features: Tensor) -> Tensor:
    """``W`` of eq. 3: keys and queries are both the standardised features ``U``. ``(N, k, k)`` (notebook 07)."""
    return attention_weights(features, features)


def cross_attention_weights(features: Tensor, global_output: Tensor) -> Tensor:
    """``W^c`` of eq. 4: keys are ``U``, queries the global autoencoder's output ``U^``. ``(N, k, k)`` (notebook 07)."""
    return attention_weights(features, global_output)


def attend(features: Tensor, weights: Tensor) -> Tensor:
    """``A = Z W``: location ``q`` becomes the ``W[:, q]``-weighted mean of the features (notebook 07).
    ``features (N, c, h, w)``, ``weights (N, k, k)`` -> ``(N, c, h, w)``."""
    n, c, h, w = features.shape
    return (features.flatten(2) @ weights).reshape(n, c, h, w)


def consistency_loss(features: Tensor, global_output: Tensor, lambda_global: float, magnitude: str = "mean") -> Tensor:
    """``L_pg`` of eq. 5 between the cross-attention map ``A^`` (eq. 4) and the self-attention map ``A`` (eq. 3)
    (notebook 07). ``features`` = ``U`` (fixed target), ``global_output`` = ``U^``, both ``(N, c, h, w)``."""
    self_map = attend(features, self_attention_weights(features))
    cross_map = attend(features, cross_attention_weights(features, global_output))
    return distance_map(cross_map, self_map, lambda_global, magnitude).mean()


def local_global_loss(local_global: Tensor, global_output: Tensor, lambda_global: float,
                      magnitude: str = "mean") -> Tensor:
    """``L_lg`` of eq. 6 between the FRN's second half ``U~''`` and the global output ``U^`` (notebook 07)."""
    return distance_map(local_global, global_output, lambda_global, magnitude).mean()


# ----------------------------------------------------------------------------------------------------------
# Quantile normalisation (sec. 3.5)
# ----------------------------------------------------------------------------------------------------------
def fit_quantiles(maps: Tensor | np.ndarray, alpha: float = 0.9, beta: float = 0.995) -> tuple[float, float]:
    """Empirical ``alpha`` and ``beta`` quantiles of all pixel values of ``maps`` pooled together (notebook 07).
    numpy (linear interpolation), since ``torch.quantile`` refuses more than 2**24 values."""
    values = maps.detach().cpu().numpy() if isinstance(maps, Tensor) else np.asarray(maps)
    q_alpha, q_beta = np.quantile(values.astype(np.float64).ravel(), [alpha, beta])
    return float(q_alpha), float(q_beta)


def normalize_map(maps: Tensor, q_alpha: float, q_beta: float) -> Tensor:
    """``t(M) = 0.1 (M - q_alpha) / (q_beta - q_alpha)``: ``q_alpha`` -> 0, ``q_beta`` -> 0.1 (notebook 07)."""
    return 0.1 * (maps - q_alpha) / max(q_beta - q_alpha, 1e-12)


# ----------------------------------------------------------------------------------------------------------
# Feature aggregation (sec. 3.1)
# ----------------------------------------------------------------------------------------------------------
def aggregate_features(taps: list[Tensor], feature_channels: int | None = None) -> Tensor:
    """The feature aggregator: taps ``TAPS``, the coarser bilinearly upsampled to the finer, concatenated ->
    ``U (N, c*, h*, w*)`` (notebook 07). Neighbouring channels are averaged down to ``feature_channels`` when
    there are more (the authors' code, to reach ``c* = 384``)."""
    fine, coarse = (taps[i] for i in TAPS)
    features = torch.cat([fine, F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)], 1)
    n, c, h, w = features.shape
    if feature_channels is not None and feature_channels < c:
        pooled = F.adaptive_avg_pool1d(features.flatten(2).transpose(1, 2), feature_channels)
        features = pooled.transpose(1, 2).reshape(n, feature_channels, h, w)
    return features


def feature_channels_for(backbone_channels: tuple[int, ...], feature_channels: int | None) -> int:
    """``c*`` for a backbone: the concatenated tap channels, capped at ``feature_channels`` (notebook 07)."""
    total = sum(backbone_channels[i] for i in TAPS)
    return total if feature_channels is None else min(total, feature_channels)


# ----------------------------------------------------------------------------------------------------------
# The two networks (appendix A)
# ----------------------------------------------------------------------------------------------------------
def conv_block(conv: nn.Module, layer_order: str = "conv-bn-relu", relu: bool = True,
               batchnorm: dict | None = None) -> nn.Sequential:
    """One convolution row of tables 5-6 with its BatchNorm row: ``conv -> BN -> ReLU`` (the authors' code)
    or ``conv -> ReLU -> BN`` (the tables' order). ``relu=False`` leaves the ReLU out; ``batchnorm``:
    keyword arguments of :class:`torch.nn.BatchNorm2d` (notebook 07)."""
    norm = nn.BatchNorm2d(conv.out_channels, **(batchnorm or {}))
    if not relu:
        return nn.Sequential(conv, norm)
    if layer_order == "conv-bn-relu":
        return nn.Sequential(conv, norm, nn.ReLU(inplace=True))
    return nn.Sequential(conv, nn.ReLU(inplace=True), norm)


class FeatureReconstructionNetwork(nn.Module):
    """FRN of the local branch (table 5): ``U (N, c*, h*, w*)`` -> ``(U~', U~'')``, each ``(N, c*, h*, w*)``
    (notebook 07).

    Encoder: 3x3 convs, strides 2, 2, 1 (``h*`` divisible by 4). Decoder: 4x4 transposed convs with stride 2,
    then a 5x5 one with ``2 c*`` kernels and padding 2 (keeps the size); ``U~'`` is the first half of its
    output channels, ``U~''`` the second. Defaults follow the authors' code (``output_relu``: a ReLU after the
    last BatchNorm); the table's reading is in :data:`PAPER_TEXT`.
    """

    def __init__(self, feature_channels: int, encoder_channels=(768, 1536, 1536), decoder_channels=(768, 384),
                 layer_order: str = "conv-bn-relu", bottleneck_relu: bool = False, output_relu: bool = True,
                 init: str = "xavier"):
        super().__init__()
        e1, e2, e3 = encoder_channels
        d1, d2 = decoder_channels
        self.feature_channels = feature_channels
        self.encoder = nn.Sequential(
            conv_block(nn.Conv2d(feature_channels, e1, 3, stride=2, padding=1), layer_order),
            conv_block(nn.Conv2d(e1, e2, 3, stride=2, padding=1), layer_order),
            conv_block(nn.Conv2d(e2, e3, 3, stride=1, padding=1), layer_order, relu=bottleneck_relu),
        )
        self.decoder = nn.Sequential(
            conv_block(nn.ConvTranspose2d(e3, d1, 4, stride=2, padding=1), layer_order),
            conv_block(nn.ConvTranspose2d(d1, d2, 4, stride=2, padding=1), layer_order),
            conv_block(nn.ConvTranspose2d(d2, 2 * feature_channels, 5, stride=1, padding=2), layer_order,
                       relu=output_relu),
        )
        if init == "xavier":
            gain = nn.init.calculate_gain("leaky_relu")
            for layer in self.modules():
                if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                    nn.init.xavier_uniform_(layer.weight, gain=gain)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        output = self.decoder(self.encoder(features))
        return output[:, : self.feature_channels], output[:, self.feature_channels:]


def upsample_sizes(image_size: int, sizes: str = "code") -> tuple[int, ...]:
    """The five sizes the global decoder interpolates to before its 4x4 convs (padding 2: each adds a pixel)
    (notebook 07). ``"code"``: ``S/64 - 1, S/32, S/16 - 1, S/8 - 1, S/4 - 1``; ``"table"`` (table 6):
    ``3, S/32, S/16, S/8, S/4``."""
    s = image_size
    if sizes == "code":
        return (max(1, s // 64 - 1), s // 32, s // 16 - 1, s // 8 - 1, s // 4 - 1)
    return (3, s // 32, s // 16, s // 8, s // 4)


class GlobalAutoencoder(nn.Module):
    """The global branch's autoencoder-like network (table 6): image ``(N, 3, S, S)`` -> ``U^ (N, c*, h*, w*)``
    (notebook 07).

    Encoder: five 4x4 convs with stride 2 (``S`` -> ``S/32``), then a bottleneck conv with an ``S/32`` kernel
    leaving a ``code_size x code_size`` code. Decoder: five times bilinear upsampling (:func:`upsample_sizes`)
    and a 4x4 conv with padding 2; then upsampling to ``h* x w*``, a 3x3 conv, and a 3x3 conv to ``c*``
    channels. Defaults follow the authors' code; the table's reading is in :data:`PAPER_TEXT`.
    """

    def __init__(self, feature_channels: int, image_size: int,
                 encoder_channels=(32, 32, 64, 64, 64, 64), decoder_channels: int = 64,
                 layer_order: str = "conv-bn-relu", code_size: int = 1, sizes: str = "code",
                 affine_batchnorm: bool = False, output_relu: bool = False):
        super().__init__()
        if image_size < 64 or image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 and at least 64; got {image_size}.")
        if code_size not in (1, 3):
            raise ValueError(f"code_size must be 1 (the authors' code) or 3 (table 6); got {code_size}.")
        norm = {} if affine_batchnorm else {"eps": 1e-4, "affine": False}
        layers, previous = [], 3
        for channels in encoder_channels[:5]:
            layers.append(conv_block(nn.Conv2d(previous, channels, 4, stride=2, padding=1), layer_order,
                                     batchnorm=norm))
            previous = channels
        bottleneck = nn.Conv2d(previous, encoder_channels[5], image_size // 32, stride=1, padding=(code_size - 1) // 2)
        layers.append(conv_block(bottleneck, layer_order, batchnorm=norm))
        self.encoder = nn.Sequential(*layers)
        self.upsample_sizes = upsample_sizes(image_size, sizes)
        self.decoder = nn.ModuleList()
        previous = encoder_channels[5]
        for _ in self.upsample_sizes:
            self.decoder.append(conv_block(nn.Conv2d(previous, decoder_channels, 4, stride=1, padding=2),
                                           layer_order, batchnorm=norm))
            previous = decoder_channels
        self.refine = conv_block(nn.Conv2d(decoder_channels, decoder_channels, 3, stride=1, padding=1), layer_order,
                                 batchnorm=norm)
        head = nn.Conv2d(decoder_channels, feature_channels, 3, stride=1, padding=1)
        self.head = nn.Sequential(head, nn.ReLU()) if output_relu else head

    def forward(self, images: Tensor, output_size: tuple[int, int]) -> Tensor:
        x = self.encoder(images)
        for size, layer in zip(self.upsample_sizes, self.decoder):
            x = layer(F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False))
        x = F.interpolate(x, size=tuple(output_size), mode="bilinear", align_corners=False)
        return self.head(self.refine(x))


class ULSADModel(nn.Module):
    """The trainable part of ULSAD in pure torch: FRN + global autoencoder + statistics buffers (notebook 07).

    Buffers: ``feature_mean`` / ``feature_std`` ``(1, c*, 1, 1)`` (channel statistics of the training
    features, Algorithm 1 line 4) and ``quantiles`` ``(4,)`` = ``(q_alpha_local, q_beta_local,
    q_alpha_global, q_beta_global)``. The frozen backbone is not part of it (nor of its state dict).
    """

    def __init__(self, feature_channels: int, config: ULSADConfig):
        super().__init__()
        self.config = config
        self.frn = FeatureReconstructionNetwork(
            feature_channels, config.frn_encoder_channels, config.frn_decoder_channels, config.layer_order,
            config.frn_bottleneck_relu, config.frn_output_relu, config.frn_init)
        self.global_ae = GlobalAutoencoder(
            feature_channels, config.image_size, config.ae_encoder_channels, config.ae_decoder_channels,
            config.layer_order, config.ae_code_size, config.ae_upsample_sizes, config.ae_affine_batchnorm,
            config.ae_output_relu)
        self.register_buffer("feature_mean", torch.zeros(1, feature_channels, 1, 1))
        self.register_buffer("feature_std", torch.ones(1, feature_channels, 1, 1))
        self.register_buffer("quantiles", torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64))

    def standardize(self, features: Tensor) -> Tensor:
        """``(U - mu) / sigma`` with the training-set channel statistics."""
        return (features - self.feature_mean) / self.feature_std

    def forward(self, features: Tensor, images: Tensor) -> dict[str, Tensor]:
        """``features``: standardised ``U (N, c*, h*, w*)``; ``images``: normalised ``(N, 3, S, S)``.

        Returns ``local`` = ``U~'``, ``local_global`` = ``U~''`` and ``global`` = ``U^``, all ``(N, c*, h*, w*)``.
        """
        local, local_global = self.frn(features)
        global_output = self.global_ae(images, features.shape[-2:])
        return {"local": local, "local_global": local_global, "global": global_output}

    def losses(self, features: Tensor, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """The three terms of Algorithm 1 and their sum ``loss`` (line 19)."""
        c = self.config
        terms = {
            "local": local_loss(outputs["local"], features, c.lambda_local, c.magnitude),
            "consistency": consistency_loss(features, outputs["global"], c.lambda_global, c.magnitude),
            "local_global": local_global_loss(outputs["local_global"], outputs["global"], c.lambda_global,
                                              c.magnitude),
        }
        terms["loss"] = terms["local"] + terms["consistency"] + terms["local_global"]
        return terms

    def anomaly_maps(self, features: Tensor, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Raw local (eq. 7) and global (eq. 8) maps at feature resolution, each ``(N, h*, w*)``."""
        c = self.config
        local = distance_map(outputs["local"], features, c.lambda_local, c.magnitude)
        global_ = distance_map(outputs["local_global"], outputs["global"], c.lambda_global, c.magnitude)
        return local, global_


# ----------------------------------------------------------------------------------------------------------
# Training / inference wrapper
# ----------------------------------------------------------------------------------------------------------
def check_images(images: Tensor, name: str = "images") -> Tensor:
    """Raise ``ValueError`` unless ``images`` is a float tensor ``(N, 3, H, W)`` with values in [0, 1] (notebook 07)."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a tensor (N, 3, H, W); got {shape}.")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be a float tensor with values in [0, 1]; got dtype {images.dtype}.")
    if images.numel() and (images.min() < -1e-4 or images.max() > 1 + 1e-4):
        raise ValueError(f"{name} must have values in [0, 1]; got [{images.min():.3g}, {images.max():.3g}].")
    if len(images) == 0:
        raise ValueError(f"{name} is empty.")
    return images


def training_batches(order: Tensor, batch_size: int) -> list[Tensor]:
    """``order`` cut into batches of ``batch_size``; a last batch of one image joins the one before it, since
    BatchNorm cannot normalise the global autoencoder's 1 x 1 code over a single image (notebook 07)."""
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


class ULSAD:
    """ULSAD with a frozen pretrained backbone: ``fit`` on normal images, then ``predict`` anomaly maps (notebook 07).

    ``backbone`` is a name for :func:`iadtutor.backbones.load_backbone` (default ``config.backbone``) or an
    already loaded :class:`~iadtutor.backbones.FeatureExtractor`. ``device``: ``auto`` / ``cpu`` / ``cuda``.

    Example::

        model = ULSAD(ULSADConfig.small(epochs=20), backbone="efficientnet_lite0", device="cpu")
        history = model.fit(train_images, val_images)     # (N, 3, H, W) floats in [0, 1]
        out = model.predict(test_images)                  # local / global / combined (N, H, W), image_scores (N,)
    """

    def __init__(self, config: ULSADConfig | None = None, backbone: str | FeatureExtractor | None = None,
                 device: str | torch.device = "auto", verbose: bool = True):
        self.device = resolve_device(device)
        config = config or ULSADConfig()
        if isinstance(backbone, nn.Module):
            self.backbone = backbone.to(self.device).eval()
        else:
            self.backbone = load_backbone(backbone or config.backbone, self.device, verbose=verbose)
        self.backbone.requires_grad_(False)
        self.config = replace(config, backbone=self.backbone.name)
        self.feature_channels = feature_channels_for(self.backbone.channels, self.config.feature_channels)
        self.model: ULSADModel | None = None
        self.history: dict[str, list[float]] = {}

    # -- building blocks ---------------------------------------------------------------------------------
    def _new_model(self) -> ULSADModel:
        return ULSADModel(self.feature_channels, self.config).to(self.device)

    def _require_fitted(self) -> ULSADModel:
        if self.model is None:
            raise RuntimeError("This ULSAD model is not trained yet: call fit() or load() first.")
        return self.model

    def _prepare(self, images: Tensor) -> Tensor:
        """Resize to ``image_size`` and normalise with the backbone's mean / std, on the model's device."""
        images = images.to(self.device, torch.float32)
        size = self.config.image_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return self.backbone.normalize(images)

    @torch.no_grad()
    def _raw_features(self, prepared: Tensor) -> Tensor:
        """``U`` before standardisation for normalised images ``(N, 3, S, S)`` -> ``(N, c*, h*, w*)``."""
        return aggregate_features(self.backbone(prepared), self.config.feature_channels)

    def _batches(self, n: int, batch_size: int, desc: str, progress: bool):
        starts = range(0, n, batch_size)
        return tqdm(starts, desc=desc, leave=False) if progress else starts

    # -- training ----------------------------------------------------------------------------------------
    @same_numbers_on_every_cpu
    def fit(self, train_images: Tensor, val_images: Tensor | None = None, epochs: int | None = None,
            val_fraction: float = 0.1, cache_features: bool = True, progress: bool = True) -> dict[str, list[float]]:
        """Train on normal ``train_images`` and fit the map quantiles on normal ``val_images``.

        Images: ``(N, 3, H, W)`` floats in [0, 1]. Without ``val_images``, a seeded ``val_fraction`` of the
        training images is held out for the quantiles (sec. 3.5 uses a separate validation set of normal
        images). ``epochs`` overrides ``config.epochs``. ``cache_features`` computes the frozen backbone's
        features once instead of every epoch (same result, as there is no augmentation).

        Returns (and keeps in ``self.history``) per-epoch means over the training images of ``loss`` and its
        terms ``local`` (eq. 1), ``consistency`` (eq. 5), ``local_global`` (eq. 6), plus ``seconds``.
        """
        if epochs is not None:
            self.config = replace(self.config, epochs=int(epochs))  # the checkpoint records what was run
        config = self.config
        epochs = config.epochs
        check_images(train_images, "train_images")
        generator = torch.Generator().manual_seed(config.seed)
        if val_images is None:
            if len(train_images) < 2:
                raise ValueError("train_images needs at least 2 images when val_images is not given.")
            order = torch.randperm(len(train_images), generator=generator)
            n_val = min(max(1, round(val_fraction * len(train_images))), len(train_images) - 1)
            val_images, train_images = train_images[order[:n_val]], train_images[order[n_val:]]
        check_images(val_images, "val_images")

        torch.manual_seed(config.seed)
        model = self.model = self._new_model()
        batch_size = config.batch_size

        # Channel statistics of the training features (Algorithm 1, line 4), accumulated in float64.
        n = len(train_images)
        cache_images, cache_features_list = [], []
        total = total_sq = count = 0
        for start in self._batches(n, batch_size, "ULSAD features", progress):
            prepared = self._prepare(train_images[start:start + batch_size])
            features = self._raw_features(prepared)
            total = total + features.double().sum(dim=(0, 2, 3))
            total_sq = total_sq + features.double().pow(2).sum(dim=(0, 2, 3))
            count += features[:, 0].numel()
            if cache_features:
                cache_images.append(prepared.cpu())
                cache_features_list.append(features.cpu())
        mean = total / count
        std = (total_sq / count - mean.pow(2)).clamp_min(0).sqrt().clamp_min(1e-6)
        model.feature_mean.copy_(mean.float().view(1, -1, 1, 1))
        model.feature_std.copy_(std.float().view(1, -1, 1, 1))
        if cache_features:
            cache_images = torch.cat(cache_images)
            # Standardised on the CPU: the cache stays there and only batches go to the device.
            cache_features_tensor = ((torch.cat(cache_features_list) - model.feature_mean.cpu())
                                     / model.feature_std.cpu())
            del cache_features_list

        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        names = ("loss", "local", "consistency", "local_global")
        self.history = {name: [] for name in (*names, "seconds")}
        epoch_bar = tqdm(range(epochs), desc="ULSAD training", disable=not progress)
        for _ in epoch_bar:
            started = time.perf_counter()
            model.train()
            sums = dict.fromkeys(names, 0.0)
            order = torch.randperm(n, generator=generator)
            for index in training_batches(order, batch_size):
                if cache_features:
                    prepared = cache_images[index].to(self.device)
                    features = cache_features_tensor[index].to(self.device)
                else:
                    prepared = self._prepare(train_images[index])
                    features = model.standardize(self._raw_features(prepared))
                terms = model.losses(features, model(features, prepared))
                optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                optimizer.step()
                for name in names:
                    sums[name] += terms[name].item() * len(index)
            for name in names:
                self.history[name].append(sums[name] / n)
            self.history["seconds"].append(time.perf_counter() - started)
            epoch_bar.set_postfix(loss=f"{self.history['loss'][-1]:.4g}")

        model.eval()
        local, global_ = self._raw_maps(val_images, batch_size=max(batch_size, 16), progress=progress)
        model.quantiles.copy_(torch.tensor([*fit_quantiles(local, config.alpha, config.beta),
                                            *fit_quantiles(global_, config.alpha, config.beta)], dtype=torch.float64))
        return self.history

    # -- inference ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def _forward(self, images: Tensor) -> dict[str, Tensor]:
        """Every tensor of one batch at feature resolution, on the model's device (see :meth:`branch_outputs`)."""
        model = self._require_fitted()
        model.eval()
        prepared = self._prepare(images)
        features = model.standardize(self._raw_features(prepared))
        outputs = model(features, prepared)
        local_map, global_map = model.anomaly_maps(features, outputs)
        return {"features": features, "reconstruction": outputs["local"], "local_global": outputs["local_global"],
                "global": outputs["global"], "local_map": local_map, "global_map": global_map}

    @torch.no_grad()
    def branch_outputs(self, images: Tensor, batch_size: int = 32) -> dict[str, Tensor]:
        """What both branches compute for ``images (N, 3, H, W)`` in [0, 1], at feature resolution, on the CPU.

        ``features`` = standardised ``U``, ``reconstruction`` = ``U~'``, ``local_global`` = ``U~''``,
        ``global`` = ``U^`` (each ``(N, c*, h*, w*)``), and the raw maps (not upsampled, blurred or
        quantile-normalised) ``local_map`` (eq. 7) and ``global_map`` (eq. 8), each ``(N, h*, w*)``.
        """
        check_images(images)
        parts = [self._forward(images[start:start + batch_size]) for start in range(0, len(images), batch_size)]
        return {name: torch.cat([part[name].float().cpu() for part in parts]) for name in parts[0]}

    @torch.no_grad()
    def _raw_maps(self, images: Tensor, batch_size: int = 32, progress: bool = False) -> tuple[Tensor, Tensor]:
        """Un-normalised local and global maps ``(N, H, W)`` (CPU) at the resolution of ``images``.

        Eqs. 7 and 8 at ``h* x w*``, bilinearly upsampled to ``image_size``, blurred (``blur_sigma``), and
        resized to ``H x W`` when that differs.
        """
        self._require_fitted()
        check_images(images)
        size = self.config.image_size
        locals_, globals_ = [], []
        for start in self._batches(len(images), batch_size, "ULSAD maps", progress):
            outputs = self._forward(images[start:start + batch_size])
            maps = torch.stack([outputs["local_map"], outputs["global_map"]], dim=1)  # (n, 2, h*, w*)
            maps = F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)
            maps = blur_maps(maps.flatten(0, 1), self.config.blur_sigma).view(maps.shape)
            if tuple(images.shape[-2:]) != (size, size):
                maps = F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)
            locals_.append(maps[:, 0].float().cpu())
            globals_.append(maps[:, 1].float().cpu())
        return torch.cat(locals_), torch.cat(globals_)

    def predict(self, images: Tensor, batch_size: int = 32, progress: bool = False) -> dict[str, Tensor]:
        """Anomaly maps and scores for ``images (N, 3, H, W)`` in [0, 1]; all outputs are CPU float32.

        ``local`` / ``global``: the quantile-normalised maps of eqs. 7 / 8, ``(N, H, W)`` (0 at the
        validation ``alpha`` quantile, 0.1 at the ``beta`` quantile); ``combined``: their mean;
        ``image_scores (N,)``: the maximum of ``combined`` over each image.
        """
        model = self._require_fitted()
        local, global_ = self._raw_maps(images, batch_size, progress)
        q = model.quantiles.tolist()
        local, global_ = normalize_map(local, q[0], q[1]), normalize_map(global_, q[2], q[3])
        combined = (local + global_) / 2
        return {"local": local, "global": global_, "combined": combined, "image_scores": combined.amax(dim=(1, 2))}

    @torch.no_grad()
    def attention_maps(self, image: Tensor, query_yx: tuple[float, float]) -> dict:
        """Self-attention (eq. 3) and cross-attention (eq. 4) weights of one query location.

        ``image (3, H, W)`` in [0, 1]; ``query_yx`` = (row, column) in pixels of that image. The query is
        the feature cell containing that pixel. Returns ``self_attention`` = ``W[:, q]`` and
        ``cross_attention`` = ``W^c[:, q]``, each ``(h*, w*)`` summing to 1 over the keys, plus
        ``query_cell`` (row, column) in the ``h* x w*`` grid.
        """
        model = self._require_fitted()
        model.eval()
        if not isinstance(image, Tensor) or image.ndim != 3:
            raise ValueError(f"image must be a tensor (3, H, W); got {getattr(image, 'shape', type(image))}.")
        check_images(image[None], "image")
        height, width = image.shape[-2:]
        y, x = query_yx
        if not (0 <= y < height and 0 <= x < width):
            raise ValueError(f"query_yx {tuple(query_yx)} lies outside the {height} x {width} image.")
        outputs = self._forward(image[None])
        features, global_output = outputs["features"], outputs["global"]
        h, w = features.shape[-2:]
        row, col = min(int(y * h / height), h - 1), min(int(x * w / width), w - 1)
        query = row * w + col
        self_w = self_attention_weights(features)[0, :, query].reshape(h, w)
        cross_w = cross_attention_weights(features, global_output)[0, :, query].reshape(h, w)
        return {"self_attention": self_w.cpu(), "cross_attention": cross_w.cpu(), "query_cell": (row, col)}

    # -- persistence -------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to rebuild the trained model (not the backbone weights): plain types and tensors."""
        model = self._require_fitted()
        return {
            "format": CHECKPOINT_FORMAT,
            "config": asdict(self.config),
            "feature_channels": self.feature_channels,
            "model": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
            "history": {name: list(values) for name, values in self.history.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; its backbone must be the one this instance holds."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a ULSAD checkpoint (format {state.get('format')!r}, expected {CHECKPOINT_FORMAT}).")
        config = ULSADConfig(**state["config"])
        if config.backbone != self.backbone.name:
            raise ValueError(f"checkpoint was trained with backbone {config.backbone}, not {self.backbone.name}.")
        self.config = config
        self.feature_channels = feature_channels_for(self.backbone.channels, config.feature_channels)
        if self.feature_channels != state["feature_channels"]:
            raise ValueError(f"checkpoint has c* = {state['feature_channels']}, this backbone gives "
                             f"{self.feature_channels}.")
        self.model = self._new_model()
        self.model.load_state_dict(state["model"])
        self.model.eval()
        self.history = {name: list(values) for name, values in state.get("history", {}).items()}

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (temporary file + rename)."""
        with atomic_path(path) as temporary:
            torch.save(self.state_dict(), temporary)

    @classmethod
    def load(cls, path: str | os.PathLike, backbone: FeatureExtractor | None = None,
             device: str | torch.device = "auto", verbose: bool = True) -> "ULSAD":
        """Rebuild a saved model; the backbone named in the checkpoint is loaded unless one is passed."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ULSAD checkpoint {path} does not exist.")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a ULSAD checkpoint written by iadtutor.ulsad.")
        config = ULSADConfig(**state["config"])
        instance = cls(config, backbone=backbone, device=device, verbose=verbose)
        instance.load_state_dict(state)
        return instance


# ----------------------------------------------------------------------------------------------------------
# One evaluation (used by ``iadtutor evaluate --method ulsad``)
# ----------------------------------------------------------------------------------------------------------
def evaluate_ulsad(category, backbone: FeatureExtractor, epochs: int | None = None,
                   device: str | torch.device = "auto", seed: int = 0, bootstrap: int = 0, progress: bool = True,
                   config: ULSADConfig | None = None) -> dict:
    """Train ULSAD on ``category.train`` (a :class:`iadtutor.pipeline.Category`) and measure it on ``.test``
    (notebook 07). Quantiles are fitted on ``category.validation`` when there is one, else on a seeded 10 % of
    the training images; ``config`` defaults to the paper's at the images' size (a multiple of 32). Returns
    :func:`iadtutor.pipeline.evaluate_scores`'s metrics plus ``train_seconds``, ``test_seconds_per_image``
    (seconds), ``n_validation``, ``config`` and the final ``loss``.
    """
    from iadtutor.pipeline import evaluate_scores

    if config is None:
        size = max(64, 32 * round(max(category.train.images.shape[-2:]) / 32))
        config = ULSADConfig.paper(image_size=size)
    config = replace(config, seed=seed, **({} if epochs is None else {"epochs": int(epochs)}))
    model = ULSAD(config, backbone=backbone, device=device, verbose=False)
    validation = category.validation.images if category.validation is not None else None

    start = time.perf_counter()
    history = model.fit(category.train.images, validation, progress=progress)
    trained = time.perf_counter()
    out = model.predict(category.test.images, progress=progress)
    tested = time.perf_counter()

    n_validation = len(validation) if validation is not None else max(1, round(0.1 * len(category.train.images)))
    result = evaluate_scores(category.test, out["image_scores"].numpy(), out["combined"].numpy(),
                             bootstrap=bootstrap, seed=seed)
    result.update({
        "train_seconds": round(trained - start, 4),
        "test_seconds_per_image": round((tested - trained) / len(category.test.images), 5),
        "n_validation": n_validation,
        "loss": round(history["loss"][-1], 6) if history["loss"] else None,
        "config": asdict(model.config),
    })
    return result
