"""Anomaly-detection datasets on disk: find the images, read them, check them.

Five public datasets share one idea: a folder per category with normal training images, a test set
of normal and defective images, and a pixel mask for every defective test image. Their folders differ
in the details:

===========  ==========================  =================================  ========================================
layout       normal images               defect images                      mask of ``test/DEFECT/NAME.png``
===========  ==========================  =================================  ========================================
mvtec_ad     ``train/good``,             ``test/DEFECT``                    ``ground_truth/DEFECT/NAME_mask.png``
             ``test/good``
mpdd         as mvtec_ad                 as mvtec_ad                        as mvtec_ad
mvtec_loco   ``train/good``,             ``test/logical_anomalies``,        every file in ``ground_truth/DEFECT/NAME/``
             ``validation/good``,        ``test/structural_anomalies``      (``000.png``, ``001.png``...; the mask is
             ``test/good``                                                  their union)
visa         ``train/good``,             ``test/bad``                       ``ground_truth/bad/NAME.png``
             ``test/good``
btad         ``train/ok``, ``test/ok``   ``test/ko``                        ``ground_truth/ko/NAME.png`` (or ``.bmp``)
kolektor     ``kosNN/PartN.jpg`` with    ``kosNN/PartN.jpg`` with a         ``kosNN/PartN_label.bmp``
             an empty label              non-empty label
===========  ==========================  =================================  ========================================

KolektorSDD (``kolektor``) has no train / test folders: the category folder holds one folder per commutator
(``kos01`` ... ``kos50``), each with its surfaces ``PartN.jpg`` and a label image ``PartN_label.bmp`` for every
one of them. A part is defective when its label has a non-zero pixel. Like anomalib, every defective part is
a test image and the normal parts are split at random (a seeded ``train_test_split``, 80 % train, seed 42)
into train and test: see :func:`split_normals`.

VisA is read after the usual reorganisation into this layout (the ``1cls`` split of its
``prepare_data.py`` script). Images may be ``.png``, ``.jpg``, ``.bmp`` or ``.tif`` in any letter case;
a mask may have any of these extensions. A ``validation/<normal>`` folder is read for every layout that
has one (only MVTec LOCO does).

:func:`find_category` lists the files of one category as :class:`Sample` s, sorted by path;
:func:`load_split` reads them into tensors; :class:`AnomalyDataset` does the same lazily for a
``DataLoader``. Anything wrong on disk raises :class:`DatasetError` with one sentence naming the file.

MVTec LOCO's official metric, sPRO, scores every ground-truth *file* (a defect region) on its own, up to a
saturation area read from the category's ``defects_config.json`` (:func:`read_defects_config`): for
that layout :func:`load_split` also returns the split's :class:`Regions` (notebook 07).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from iadtutor import metrics

LAYOUTS = ("mvtec_ad", "mvtec_loco", "visa", "btad", "mpdd", "kolektor")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# Name of the folder holding normal images, per layout.
NORMAL_FOLDER = {"mvtec_ad": "good", "mvtec_loco": "good", "visa": "good", "btad": "ok", "mpdd": "good"}
# MPDD is stored exactly like MVTec AD, so its folders cannot tell the two apart.
_SAME_ON_DISK = {"mpdd": "mvtec_ad"}
_LOCO_DEFECT_FOLDERS = {"logical_anomalies", "structural_anomalies"}
# KolektorSDD: kosNN/PartN.jpg beside its label image kosNN/PartN_label.bmp.
KOLEKTOR_LABEL_SUFFIX = "_label"
# anomalib's split of KolektorSDD's normal parts: sklearn's train_test_split(train_size=0.8, random_state=42).
KOLEKTOR_TRAIN_FRACTION = 0.8
KOLEKTOR_SPLIT_SEED = 42
# MVTec LOCO: the category folder's list of defects (pixel value, saturation threshold) for sPRO.
DEFECTS_CONFIG = "defects_config.json"


class DatasetError(ValueError):
    """A dataset on disk is missing a file, has an unreadable file, or does not match its layout (notebook 00)."""


@dataclass(frozen=True)
class Sample:
    """One image of a dataset: where it is, whether it is anomalous, and where its mask files are (notebook 00)."""

    image_path: Path
    label: int  # 0 normal, 1 anomalous
    defect_type: str  # "good" for normal images, else the defect folder's name
    mask_paths: tuple[Path, ...] = ()  # empty for normal images; several for MVTec LOCO
    defects_config: Path | None = None  # MVTec LOCO only: the category's defects_config.json


@dataclass
class CategorySplits:
    """The samples of one category. ``root`` is the data root; the category is ``root / category`` (notebook 00)."""

    root: Path
    category: str
    layout: str
    train: list[Sample]
    test: list[Sample]
    validation: list[Sample] = field(default_factory=list)

    @property
    def category_dir(self) -> Path:
        return self.root / self.category


# --------------------------------------------------------------------------- finding files


def _subfolders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted; hidden files (``._x.png`` from macOS) are skipped."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _check_layout_name(layout: str) -> None:
    if layout != "auto" and layout not in LAYOUTS:
        raise DatasetError(f"Unknown layout {layout!r}: expected 'auto' or one of {', '.join(LAYOUTS)}.")


def detect_layout(category_dir: str | os.PathLike) -> str:
    """Guess the layout of a category folder from the folders and files in it (notebook 00).

    ``train/ok`` means BTAD; a ``test/logical_anomalies`` or ``test/structural_anomalies`` folder means
    MVTec LOCO; a ``test/bad`` folder whose masks have no ``_mask`` suffix means VisA; anything else
    with ``train/good`` is MVTec AD. MPDD folders are identical to MVTec AD ones and come out as
    ``"mvtec_ad"`` (pass ``layout="mpdd"`` to name them). A folder without ``train/`` whose sub-folders
    hold ``*_label`` images is KolektorSDD.
    """
    category_dir = Path(category_dir)
    if not category_dir.is_dir():
        raise DatasetError(f"Category folder {category_dir} does not exist.")
    if (category_dir / "train" / "ok").is_dir():
        return "btad"
    if not (category_dir / "train").is_dir() and _kolektor_label_files(category_dir):
        return "kolektor"
    if not (category_dir / "train" / "good").is_dir():
        raise DatasetError(
            f"Category folder {category_dir} has no training folder: expected {category_dir / 'train' / 'good'} "
            "(MVTec AD, MVTec LOCO, VisA, MPDD), train/ok (BTAD) or kosNN/PartN_label.bmp files (KolektorSDD)."
        )
    test_folders = {p.name for p in _subfolders(category_dir / "test")}
    if test_folders & _LOCO_DEFECT_FOLDERS:
        return "mvtec_loco"
    if "bad" in test_folders:
        masks = _image_files(category_dir / "ground_truth" / "bad")
        if not any(p.stem.endswith("_mask") for p in masks):
            return "visa"
    return "mvtec_ad"


def list_categories(data_root: str | os.PathLike, layout: str = "auto") -> list[str]:
    """Names of the sub-folders of ``data_root`` that are categories (of ``layout`` unless ``"auto"``), sorted.
    (Notebook 00.)"""
    _check_layout_name(layout)
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise DatasetError(f"Data root {data_root} does not exist or is not a folder.")
    wanted = _SAME_ON_DISK.get(layout, layout)
    names = []
    for folder in _subfolders(data_root):
        try:
            detected = detect_layout(folder)
        except DatasetError:
            continue  # not a category (e.g. VisA's split_csv folder)
        if layout == "auto" or detected == wanted:
            names.append(folder.name)
    return names


def _normal_samples(folder: Path) -> list[Sample]:
    return [Sample(path, 0, "good", ()) for path in _image_files(folder)]


def _masks_of(image_path: Path, mask_folder: Path, layout: str, masks_by_stem: dict[str, Path]) -> tuple[Path, ...]:
    """The mask files of a defect image; ``masks_by_stem`` indexes the files of ``mask_folder``."""
    if layout == "mvtec_loco":
        per_image_folder = mask_folder / image_path.stem
        masks = tuple(_image_files(per_image_folder))
        expected = f"mask files (000.png, 001.png, ...) in {per_image_folder}"
    else:
        stem = image_path.stem + ("_mask" if layout in ("mvtec_ad", "mpdd") else "")
        masks = (masks_by_stem[stem],) if stem in masks_by_stem else ()
        expected = str(mask_folder / f"{stem}.png")
    if not masks:
        raise DatasetError(f"Defect image {image_path} has no mask: expected {expected}.")
    return masks


def _test_samples(category_dir: Path, layout: str) -> list[Sample]:
    test_dir = category_dir / "test"
    normal = NORMAL_FOLDER[layout]
    samples = []
    for folder in _subfolders(test_dir):
        if folder.name == normal:
            samples += _normal_samples(folder)
            continue
        mask_folder = category_dir / "ground_truth" / folder.name
        masks_by_stem = {}
        for path in reversed(_image_files(mask_folder)):  # reversed: the first in sorted order wins
            masks_by_stem[path.stem] = path
        for image_path in _image_files(folder):
            masks = _masks_of(image_path, mask_folder, layout, masks_by_stem)
            samples.append(Sample(image_path, 1, folder.name, masks))
    if not samples:
        raise DatasetError(f"Test folder {test_dir} is missing or holds no images.")
    return sorted(samples, key=lambda s: s.image_path)


def find_category(data_root: str | os.PathLike, category: str, layout: str = "auto", *,
                  split_seed: int = KOLEKTOR_SPLIT_SEED,
                  train_fraction: float = KOLEKTOR_TRAIN_FRACTION) -> CategorySplits:
    """List the train / test / validation samples of ``data_root / category``, each sorted by path (notebook 00).

    ``layout="auto"`` detects it with :func:`detect_layout`; an explicit layout must match what is on
    disk (``"mpdd"`` and ``"mvtec_ad"`` are interchangeable). Raises :class:`DatasetError` for a missing
    category (listing the ones that exist), an empty training folder, or a defect image without a mask.
    ``split_seed`` and ``train_fraction`` only matter for KolektorSDD, whose normal parts are split into
    train and test here (defaults: anomalib's split, see :func:`split_normals`).
    """
    _check_layout_name(layout)
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise DatasetError(f"Data root {data_root} does not exist or is not a folder.")
    category_dir = data_root / category
    if not category_dir.is_dir():
        existing = list_categories(data_root)
        found = ", ".join(existing) if existing else "none (no sub-folder has train/good or train/ok)"
        raise DatasetError(f"Category folder {category_dir} does not exist; categories in {data_root}: {found}.")

    if layout in ("auto", "kolektor"):
        detected = detect_layout(category_dir)
        if detected == "kolektor":
            return _find_kolektor(data_root, category, split_seed, train_fraction)
        if layout == "kolektor":
            raise DatasetError(f"Category folder {category_dir} looks like layout {detected!r}, not 'kolektor' "
                               "(expected kosNN/PartN.jpg with kosNN/PartN_label.bmp).")
    if layout != "auto":
        train_dir = category_dir / "train" / NORMAL_FOLDER[layout]
        if not train_dir.is_dir():
            try:
                hint = f"; the folder looks like layout {detect_layout(category_dir)!r}"
            except DatasetError:
                hint = ""
            raise DatasetError(f"Training folder {train_dir} of layout {layout!r} does not exist{hint}.")
    detected = detect_layout(category_dir)
    if layout == "auto":
        layout = detected
    elif _SAME_ON_DISK.get(layout, layout) != detected:
        raise DatasetError(f"Category folder {category_dir} looks like layout {detected!r}, not {layout!r}.")

    normal = NORMAL_FOLDER[layout]
    train_dir = category_dir / "train" / normal
    train = _normal_samples(train_dir)
    if not train:
        raise DatasetError(f"Training folder {train_dir} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    validation = _normal_samples(category_dir / "validation" / normal)
    test = _test_samples(category_dir, layout)
    if layout == "mvtec_loco":  # load_split reads it for the regions of sPRO
        config = category_dir / DEFECTS_CONFIG
        train, validation, test = ([replace(s, defects_config=config) for s in split]
                                   for split in (train, validation, test))
    return CategorySplits(data_root, category, layout, train, test, validation)


def _kolektor_label_files(category_dir: Path) -> list[Path]:
    return [p for folder in _subfolders(category_dir) for p in _image_files(folder)
            if p.stem.endswith(KOLEKTOR_LABEL_SUFFIX)]


def split_normals(samples: Sequence[Sample], train_fraction: float = KOLEKTOR_TRAIN_FRACTION,
                  seed: int = KOLEKTOR_SPLIT_SEED) -> tuple[list[Sample], list[Sample]]:
    """Split normal samples at random into ``(train, test)``, both sorted by path (notebook 00).

    The samples are ordered by their path as text and split with scikit-learn's
    ``train_test_split(train_size=train_fraction, random_state=seed)``: with the defaults that is
    anomalib's split of KolektorSDD (its ``make_kolektor_dataset``), 277 train and 70 test of 347 parts.
    """
    from sklearn.model_selection import train_test_split

    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be between 0 and 1 (exclusive), got {train_fraction!r}.")
    ordered = sorted(samples, key=lambda s: str(s.image_path))
    if len(ordered) < 2:
        raise DatasetError(f"Cannot split {len(ordered)} normal image(s) into train and test: need at least 2.")
    train, test = train_test_split(ordered, train_size=train_fraction, random_state=seed)
    return sorted(train, key=lambda s: s.image_path), sorted(test, key=lambda s: s.image_path)


def _find_kolektor(data_root: Path, category: str, seed: int, train_fraction: float) -> CategorySplits:
    category_dir = data_root / category
    normal, defective = [], []
    for folder in _subfolders(category_dir):
        files = _image_files(folder)
        labels = {p.stem[: -len(KOLEKTOR_LABEL_SUFFIX)]: p for p in reversed(files)
                  if p.stem.endswith(KOLEKTOR_LABEL_SUFFIX)}
        for image_path in files:
            if image_path.stem.endswith(KOLEKTOR_LABEL_SUFFIX):
                continue
            label = labels.get(image_path.stem)
            if label is None:
                raise DatasetError(f"KolektorSDD part {image_path} has no label image: expected "
                                   f"{folder / (image_path.stem + KOLEKTOR_LABEL_SUFFIX + '.bmp')}.")
            if not np.asarray(_open_image(label, "label")).any():  # anomalib's rule for a normal part
                normal.append(Sample(image_path, 0, "good", ()))
            else:
                defective.append(Sample(image_path, 1, "defect", (label,)))
    if not normal:
        raise DatasetError(f"KolektorSDD folder {category_dir} holds no normal part (every label is non-empty).")
    train, test_normal = split_normals(normal, train_fraction, seed)
    test = sorted(test_normal + defective, key=lambda s: s.image_path)
    return CategorySplits(data_root, category, "kolektor", train, test, [])


# --------------------------------------------------------------------------- reading pixels


def resize_shape(original_hw: Sequence[int], image_size: int, keep_aspect: bool) -> tuple[int, int]:
    """Output ``(H, W)``: ``(image_size, image_size)``, or with ``keep_aspect`` the shorter side scaled to
    ``image_size`` and the longer one in proportion, rounded down as torchvision's ``Resize(int)`` does (notebook 00).

    >>> resize_shape((200, 300), 100, keep_aspect=True)
    (100, 150)
    """
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}.")
    image_size = int(image_size)
    if not keep_aspect:
        return image_size, image_size
    height, width = (int(v) for v in original_hw)
    if height <= width:
        return image_size, int(image_size * width / height)
    return int(image_size * height / width), image_size


def _open_image(path: Path, mode_for: str) -> Image.Image:
    """Open and fully decode ``path`` with PIL; a corrupt or missing file raises :class:`DatasetError`."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as error:
        raise DatasetError(f"Cannot read {mode_for} {path} ({error}).") from error


def _image_hw(path: Path) -> tuple[int, int]:
    """``(H, W)`` of an image from its header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as error:
        raise DatasetError(f"Cannot read image {path} ({error}).") from error
    return height, width


def load_image(path: str | os.PathLike, image_size: int, keep_aspect: bool = False,
               shape: Sequence[int] | None = None) -> torch.Tensor:
    """Read an image as RGB floats in [0, 1], shape ``(3, H, W)`` with ``(H, W)`` from :func:`resize_shape`
    (or exactly ``shape`` when given) (notebook 00).

    Grayscale images are repeated over the 3 channels. Resizing is bilinear with antialiasing (as PIL's
    and torchvision's resize), so shrinking a large image averages pixels instead of skipping them.
    """
    path = Path(path)
    image = _open_image(path, "image").convert("RGB")
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    if shape is None:
        shape = resize_shape(pixels.shape[-2:], image_size, keep_aspect)
    shape = tuple(int(v) for v in shape)
    if tuple(pixels.shape[-2:]) == shape:
        return pixels
    resized = F.interpolate(pixels[None], size=shape, mode="bilinear", align_corners=False, antialias=True)
    return resized[0].clamp_(0.0, 1.0)


def binarize_mask(array: np.ndarray) -> np.ndarray:
    """Boolean mask: pixels above half the mask's maximum value; all False when the maximum is 0 or less (notebook 00).

    Works for masks stored as 0/255, 0/254, 0/1, booleans and anti-aliased (soft-edged) masks.
    An ``(H, W, C)`` array counts a pixel as on when any channel is on.
    """
    values = np.asarray(array, dtype=np.float32)
    if values.ndim == 3:
        values = values.max(axis=2)
    if values.ndim != 2:
        raise ValueError(f"binarize_mask expects an (H, W) or (H, W, C) array, got shape {values.shape}.")
    peak = float(values.max()) if values.size else 0.0
    if not peak > 0:
        return np.zeros(values.shape, dtype=np.bool_)
    return values > peak / 2


def _mask_pixels(path: Path) -> np.ndarray:
    """The ``(H, W)`` pixel values of a mask file."""
    mask = _open_image(path, "mask")
    # Bilevel, 8/16/32-bit gray and float masks are read as they are; colour and paletted ones via gray.
    if not (mask.mode in ("1", "L", "F") or mask.mode.startswith("I")):
        mask = mask.convert("L")
    return np.asarray(mask)


def _check_mask_shape(mask: np.ndarray, path: Path, sample: Sample, image_hw: tuple[int, int]) -> None:
    if mask.shape != image_hw:
        raise DatasetError(
            f"Mask {path} is {mask.shape[1]}x{mask.shape[0]} pixels but its image {sample.image_path} "
            f"is {image_hw[1]}x{image_hw[0]}."
        )


def read_mask(path: Path) -> np.ndarray:
    """One mask file -> ``(H, W)`` bool, any bit depth or colour mode (notebook 00; ``iadtutor data verify``)."""
    return binarize_mask(_mask_pixels(path))


def load_mask(sample: Sample, shape_hw: Sequence[int]) -> torch.Tensor:
    """The sample's mask as a ``(H, W)`` bool tensor of size ``shape_hw``: the union of its mask files,
    resized with nearest neighbour; all False for a normal sample (notebook 00).

    Each mask file must have the same size as the sample's image (checked from the image header).
    """
    height, width = (int(v) for v in shape_hw)
    if not sample.mask_paths:
        return torch.zeros((height, width), dtype=torch.bool)
    image_hw = _image_hw(Path(sample.image_path))
    union = np.zeros(image_hw, dtype=np.bool_)
    for path in sample.mask_paths:
        mask = read_mask(Path(path))
        _check_mask_shape(mask, path, sample, image_hw)
        union |= mask
    return _resize_mask(union, (height, width))


def _resize_mask(mask: np.ndarray, shape_hw: tuple[int, int]) -> torch.Tensor:
    """``(H, W)`` bool array -> bool tensor of ``shape_hw``, nearest neighbour."""
    tensor = torch.from_numpy(mask)
    if mask.shape == shape_hw:
        return tensor
    # "nearest-exact" samples at pixel centres; plain "nearest" shifts the mask by up to a pixel.
    resized = F.interpolate(tensor[None, None].float(), size=shape_hw, mode="nearest-exact")
    return resized[0, 0] > 0.5


class AnomalyDataset(torch.utils.data.Dataset):
    """Samples read on demand: ``dataset[i]`` is a dict with ``image`` ``(3, H, W)`` float in [0, 1],
    ``mask`` ``(H, W)`` bool, ``label`` int, ``defect_type`` str and ``path`` str (notebook 00).

    With ``keep_aspect=True`` images of different original shapes come out in different shapes and
    cannot be batched together by a ``DataLoader``.
    """

    def __init__(self, samples: Sequence[Sample], image_size: int = 256, keep_aspect: bool = False):
        resize_shape((1, 1), image_size, keep_aspect)  # checks image_size
        self.samples = list(samples)
        self.image_size = image_size
        self.keep_aspect = keep_aspect

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        image = load_image(sample.image_path, self.image_size, self.keep_aspect)
        mask = load_mask(sample, image.shape[-2:])
        return {"image": image, "mask": mask, "label": int(sample.label), "defect_type": sample.defect_type,
                "path": str(sample.image_path)}


# --------------------------------------------------------------------------- MVTec LOCO's regions (sPRO)


@dataclass(frozen=True)
class DefectConfig:
    """One defect of an MVTec LOCO ``defects_config.json`` (notebook 07): its ground-truth pixels hold
    ``pixel_value``; a region of it is fully found once ``saturation_threshold`` of its pixels are called,
    a fraction of its area when ``relative_saturation``, else original-image pixels (capped at its area)."""

    defect_name: str
    pixel_value: int
    saturation_threshold: float
    relative_saturation: bool


def read_defects_config(path: str | os.PathLike) -> dict[int, DefectConfig]:
    """Read an MVTec LOCO ``defects_config.json`` into ``{pixel value: DefectConfig}`` (notebook 07);
    anything but the expected JSON raises :class:`DatasetError` naming the file."""
    path = Path(path)
    keys = ("defect_name", "pixel_value", "saturation_threshold", "relative_saturation")
    expected = f"a JSON list of objects with the keys {', '.join(keys)}"
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"MVTec LOCO defects file {path} does not exist: sPRO needs {expected} "
                           "(it ships with the dataset, beside the category's train/ and test/).") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"Cannot read {path} as JSON ({error}).") from error
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise DatasetError(f"{path} must hold {expected}.")
    defects = {}
    for number, entry in enumerate(entries):
        missing = [key for key in keys if key not in entry]
        if missing:
            raise DatasetError(f"Entry {number} of {path} lacks the key(s) {', '.join(missing)}: expected {expected}.")
        name, value, threshold, relative = (entry[key] for key in keys)
        # JSON values are exactly int, float or bool: type() keeps true from passing as the number 1
        if not (type(value) is int and 1 <= value <= 255 and value not in defects
                and type(threshold) in (int, float) and threshold > 0 and type(relative) is bool):
            raise DatasetError(f"Entry {number} of {path} ({entry}) must have a pixel_value from 1 to 255 that "
                               "no other entry has, a saturation_threshold above 0 and a relative_saturation "
                               "of true or false.")
        defects[value] = DefectConfig(str(name), value, float(threshold), relative)
    return defects


@dataclass
class Regions:
    """MVTec LOCO's defect regions of a loaded split, one per ground-truth file, for sPRO (notebook 07).

    ``masks (R, H, W)`` bool, resized like the split's masks; ``images (R,)`` long: each region's image
    index in the split; ``saturation (R,)`` float64: its :func:`iadtutor.metrics.saturation_area` in
    pixels at the loaded resolution (an absolute threshold is scaled by loaded / original image pixels; the
    official evaluation works at the ground truth's own size, so a smaller one gives a close, not equal,
    sPRO); ``pixel_values (R,)`` long, ``defect_names`` and ``paths``. A region thinner than a loaded pixel
    vanishes in resizing and is left out; ``R`` is 0 for a split without defect images.
    """

    masks: torch.Tensor
    images: torch.Tensor
    saturation: torch.Tensor
    pixel_values: torch.Tensor
    defect_names: list[str]
    paths: list[str]

    def __len__(self) -> int:
        return len(self.paths)


def _read_regions(sample: Sample, shape_hw: tuple[int, int], defects: dict[int, DefectConfig]) -> list[tuple]:
    """``(mask (H, W) bool, saturation area, defect, path)`` per ground-truth file of a LOCO sample."""
    image_hw = _image_hw(Path(sample.image_path))
    area_scale = shape_hw[0] * shape_hw[1] / (image_hw[0] * image_hw[1])  # loaded / original pixels
    regions = []
    for path in sample.mask_paths:
        pixels = _mask_pixels(Path(path))
        _check_mask_shape(pixels, path, sample, image_hw)
        values = np.unique(pixels[pixels > 0]).tolist()
        if len(values) != 1:
            raise DatasetError(f"Ground-truth file {path} holds the non-zero pixel values {values[:5]}: "
                               f"expected exactly one, a pixel_value of {sample.defects_config}.")
        defect = defects.get(int(values[0]))
        if defect is None:
            raise DatasetError(f"Ground-truth file {path} has pixel value {int(values[0])}, which "
                               f"{sample.defects_config} does not list (it lists {sorted(defects)}).")
        mask = _resize_mask(pixels == defect.pixel_value, shape_hw)
        threshold = defect.saturation_threshold * (1.0 if defect.relative_saturation else area_scale)
        saturation = float(metrics.saturation_area(int(mask.sum()), threshold, defect.relative_saturation))
        regions.append((mask, saturation, defect, str(path)))
    return regions


@dataclass
class LoadedSplit:
    """A split read into memory: ``images (N, 3, H, W)`` float32 in [0, 1], ``masks (N, H, W)`` bool,
    ``labels (N,)`` long (1 = anomalous), per image its defect type and file path, and for MVTec LOCO the
    split's :class:`Regions` (None for the other layouts) (notebook 00)."""

    images: torch.Tensor
    masks: torch.Tensor
    labels: torch.Tensor
    defect_types: list[str]
    paths: list[str]
    regions: Regions | None = None

    def __len__(self) -> int:
        return len(self.paths)


# With keep_aspect, originals whose height / width ratio differs from the first image's by at most this
# fraction are resized to the first image's output shape (KolektorSDD: 500 wide, 1235 to 1285 high).
ASPECT_TOLERANCE = 0.03


def load_split(
    samples: Sequence[Sample],
    image_size: int = 256,
    keep_aspect: bool = False,
    progress: bool = True,
    max_images: int | None = None,
    output_shape: Sequence[int] | None = None,
) -> LoadedSplit:
    """Read samples into tensors (see :class:`LoadedSplit`), in the order given (notebook 00).

    ``max_images`` keeps only the first ``max_images`` samples (the LWinNN paper caps training sets at
    750 images this way). Every image comes out in one shape ``(H, W)``: ``output_shape`` when given
    (pass the training split's shape when loading its test split), else the first image's
    :func:`resize_shape`. With ``keep_aspect=True`` an image whose aspect ratio differs from that shape's
    by more than :data:`ASPECT_TOLERANCE` (3 %) raises :class:`DatasetError` naming it; smaller
    differences (KolektorSDD's parts vary in height by 4 %) are resized to the common shape.
    MVTec LOCO samples (``Sample.defects_config`` set) also give the split's :class:`Regions`.
    """
    if max_images is not None:
        if isinstance(max_images, bool) or not isinstance(max_images, (int, np.integer)) or max_images < 1:
            raise ValueError(f"max_images must be a positive integer or None, got {max_images!r}.")
        samples = samples[: int(max_images)]
    resize_shape((1, 1), image_size, keep_aspect)  # checks image_size
    samples = list(samples)
    if len(samples) == 0:
        raise ValueError("load_split got no samples to load.")
    first = Path(samples[0].image_path)
    first_hw = _image_hw(first)
    if output_shape is None:
        output_shape = resize_shape(first_hw, image_size, keep_aspect)
        target_aspect, shape_source = first_hw[0] / first_hw[1], f"its first image {first}"
    else:
        output_shape = tuple(int(v) for v in output_shape)
        target_aspect, shape_source = output_shape[0] / output_shape[1], "output_shape"

    images = torch.empty((len(samples), 3, *output_shape), dtype=torch.float32)
    masks = torch.empty((len(samples), *output_shape), dtype=torch.bool)
    found, defects_by_file = [], {}  # LOCO: (image index, mask, saturation, defect, path); each config read once
    for index, sample in enumerate(tqdm(samples, desc="loading images", disable=not progress)):
        if keep_aspect:
            height, width = _image_hw(Path(sample.image_path))
            shape = resize_shape((height, width), image_size, keep_aspect)
            if shape != output_shape and abs(height / width / target_aspect - 1) > ASPECT_TOLERANCE:
                raise DatasetError(
                    f"Image {sample.image_path} comes out {shape} but the split's shape is {output_shape} "
                    f"(from {shape_source}): with keep_aspect=True all originals must share one aspect ratio "
                    "(within 3 %; use keep_aspect=False to resize them all to a square)."
                )
        images[index] = load_image(sample.image_path, image_size, keep_aspect, shape=output_shape)
        if sample.defects_config is None or not sample.mask_paths:
            masks[index] = load_mask(sample, output_shape)
            continue
        if sample.defects_config not in defects_by_file:
            defects_by_file[sample.defects_config] = read_defects_config(sample.defects_config)
        in_image = _read_regions(sample, output_shape, defects_by_file[sample.defects_config])
        masks[index] = torch.stack([mask for mask, *_ in in_image]).any(0)  # = load_mask: nearest is pixel-wise
        found += [(index, *region) for region in in_image if region[0].any()]
    regions = None
    if any(s.defects_config is not None for s in samples):
        indices, region_masks, saturation, defects, paths = zip(*found) if found else ((),) * 5
        regions = Regions(
            masks=torch.stack(region_masks) if found else torch.zeros((0, *output_shape), dtype=torch.bool),
            images=torch.tensor(indices, dtype=torch.long), saturation=torch.tensor(saturation, dtype=torch.float64),
            pixel_values=torch.tensor([defect.pixel_value for defect in defects], dtype=torch.long),
            defect_names=[defect.defect_name for defect in defects], paths=list(paths))
    return LoadedSplit(images=images, masks=masks, labels=torch.tensor([s.label for s in samples], dtype=torch.long),
                       defect_types=[s.defect_type for s in samples], paths=[str(s.image_path) for s in samples],
                       regions=regions)


def anomaly_kind(defect_type: str) -> str:
    """``"good"``, ``"logical"`` or ``"structural"`` (or ``"other"``) for a defect-type folder name (notebook 07).

    Works for MVTec LOCO (``logical_anomalies``, ``structural_anomalies``) and the toy ``box``
    (``logical_missing``, ``structural_scratch``, ...).
    """
    if defect_type in ("good", "ok"):
        return "good"
    for kind in ("logical", "structural"):
        if defect_type.startswith(kind):
            return kind
    return "other"
