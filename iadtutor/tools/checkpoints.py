"""`make checkpoints`: trainings too long for a chapter, run once by this script and committed (notebooks 06, 07).

Notebook 06 compares three DefectMaker fine-tunings (seeds 0, 1, 2) of :meth:`FinetuneConfig.small` with an
untrained control; on one CPU thread each takes 20-27 minutes, far over the course's budget. This script
runs them with the package's own :func:`iadtutor.defectmaker.finetune_backbone` and writes, per seed, the
fine-tuned weights (:func:`iadtutor.defectmaker.save_finetuned`) and a JSON record: the recipe, a fingerprint
of the images, the training history (loss, held-out accuracy curve, confusion table), the seconds it took
and the versions it ran with. The chapter loads a checkpoint only when recipe, seed and images match, and
re-runs the first updates live to check that its losses equal the recorded ones.

Notebook 07 does the same with three ULSAD trainings (:meth:`iadtutor.ulsad.ULSADConfig.small`, 100 epochs at
256 pixels on the toy box drawn in the ``choice`` layout): per seed the model (:meth:`iadtutor.ulsad.ULSAD.save`)
and a JSON record (config, image fingerprints, loss history, seconds, versions).

    python -m iadtutor.tools.checkpoints --data data/toy --out checkpoints --seeds 0 1 2 --what defectmaker ulsad
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import platform
import sys
from pathlib import Path

import torch

from iadtutor import backbones, defectmaker, pipeline, ulsad
from iadtutor.files import write_json_atomic
from iadtutor.tools import toy

CATEGORY = "bracket"
IMAGE_SIZE = 128     # pixels, as notebook 06
HELDOUT_EVERY = 30   # updates between two held-out checks
ULSAD_CATEGORY, ULSAD_LAYOUT = "box", "choice"  # notebook 07's toy set (toy.layout_variant)
ULSAD_IMAGE_SIZE = 256                          # pixels, as notebook 07 (the paper's size)


def fingerprint(images: torch.Tensor) -> str:
    """A short SHA-256 of ``images`` (any shape, float32 bytes): the same images give the same string."""
    return hashlib.sha256(images.float().contiguous().numpy().tobytes()).hexdigest()[:16]


def checkpoint_paths(out_dir, seed: int, category: str = CATEGORY, method: str = "defectmaker") -> tuple[Path, Path]:
    """``(weights .pt, record .json)`` of one training in ``out_dir``: ``METHOD_CATEGORY_seedN``."""
    stem = Path(out_dir) / f"{method}_{category}_seed{seed}"
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def versions() -> dict:
    return {"torch": torch.__version__, "python": platform.python_version()}


def matches(record_path: Path, wanted: dict) -> dict | None:
    """The JSON record at ``record_path`` if it exists and holds every ``wanted`` key with that value, else None."""
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    wanted = json.loads(json.dumps(wanted))  # tuples as lists, as in the file
    return record if all(record.get(key) == value for key, value in wanted.items()) else None


def training_images(data_root, category: str = CATEGORY, image_size: int = IMAGE_SIZE):
    """``(fine-tuning images, held-out images)``: every normal training image, and the validation split."""
    images = pipeline.load_category(data_root, category, image_size=image_size, with_validation=True, progress=False)
    if images.validation is None:
        raise ValueError(f"{data_root}/{category}: no validation split, which the held-out accuracy needs.")
    return images.train.images, images.validation.images


def train_defectmaker(data_root, out_dir, seed: int, category: str = CATEGORY, image_size: int = IMAGE_SIZE,
                      config: defectmaker.FinetuneConfig | None = None, progress: bool = True) -> dict:
    """One fine-tuning of ``config`` (default :meth:`FinetuneConfig.small`) on ``category``, on one torch thread
    as notebook 06 (the caller's thread count is restored after); writes its two files (atomically) and returns
    the record."""
    finetune_images, heldout_images = training_images(data_root, category, image_size)
    backbone = backbones.load_backbone("efficientnet_lite0", download=False, verbose=False)
    config = config or defectmaker.FinetuneConfig.small()
    with backbones.torch_threads(1):
        finetuned, history = defectmaker.finetune_backbone(backbone, finetune_images, config=config, seed=seed,
                                                           progress=progress, heldout_images=heldout_images,
                                                           heldout_every=HELDOUT_EVERY)
    record = {"category": category, "image_size": image_size, "seed": seed, "backbone": backbone.name,
              "config": dataclasses.asdict(config), "heldout_every": HELDOUT_EVERY,
              "finetune_images": fingerprint(finetune_images), "heldout_images": fingerprint(heldout_images),
              "n_finetune_images": len(finetune_images), "n_heldout_images": len(heldout_images),
              "history": history, "torch_threads": 1, "versions": versions()}
    weights, record_path = checkpoint_paths(out_dir, seed, category)
    defectmaker.save_finetuned(finetuned, weights)
    write_json_atomic(record_path, record)
    return record


def find_defectmaker(out_dir, seed: int, config: defectmaker.FinetuneConfig, finetune_images: torch.Tensor,
                     heldout_images: torch.Tensor, backbone=None, device="cpu", category: str = CATEGORY):
    """``(fine-tuned FeatureExtractor on device, record)`` of :func:`train_defectmaker` in ``out_dir`` for this seed,
    recipe and these images (fingerprints), else ``None``: the caller then fine-tunes itself (notebook 06)."""
    weights, record_path = checkpoint_paths(out_dir, seed, category)
    record = matches(record_path, {"seed": seed, "config": dataclasses.asdict(config),
                                   "finetune_images": fingerprint(finetune_images),
                                   "heldout_images": fingerprint(heldout_images)})
    if record is None:
        return None
    return defectmaker.load_finetuned(weights, device=device, backbone=backbone), record


def ulsad_config(seed: int) -> ulsad.ULSADConfig:
    """Notebook 07's default training: the small preset at ``ULSAD_IMAGE_SIZE`` on EfficientNet-Lite0."""
    return ulsad.ULSADConfig.small(backbone="efficientnet_lite0", image_size=ULSAD_IMAGE_SIZE, seed=seed)


def ulsad_paths(out_dir, seed: int) -> tuple[Path, Path]:
    """``(model .pt, record .json)`` of one ULSAD training in ``out_dir``."""
    return checkpoint_paths(out_dir, seed, f"{ULSAD_CATEGORY}_{ULSAD_LAYOUT}", "ulsad")


def ulsad_root(data_root) -> Path:
    """The root of notebook 07's toy box (``ULSAD_LAYOUT``), written beside ``data_root`` by
    :func:`iadtutor.tools.toy.layout_variant` if missing."""
    return toy.layout_variant(data_root, ULSAD_CATEGORY, ULSAD_LAYOUT, n_test_good=30, n_test_per_defect=10)


def ulsad_images(data_root, image_size: int = ULSAD_IMAGE_SIZE):
    """``(training images, validation images)`` of notebook 07's toy box (:func:`ulsad_root`)."""
    images = pipeline.load_category(ulsad_root(data_root), ULSAD_CATEGORY, image_size=image_size,
                                    with_validation=True, progress=False)
    return images.train.images, images.validation.images


def train_ulsad(data_root, out_dir, seed: int, config: ulsad.ULSADConfig | None = None, progress: bool = True) -> dict:
    """One ULSAD training of ``config`` (default :func:`ulsad_config`) on notebook 07's toy box, on one torch
    thread; writes the model and its record (atomically) and returns the record."""
    config = config or ulsad_config(seed)
    train_images, val_images = ulsad_images(data_root, config.image_size)
    model = ulsad.ULSAD(config, device="cpu", verbose=False)
    with backbones.torch_threads(1):
        history = model.fit(train_images, val_images, progress=progress)
    record = {"category": ULSAD_CATEGORY, "layout": ULSAD_LAYOUT, "seed": config.seed,
              "config": dataclasses.asdict(config), "train_images": fingerprint(train_images),
              "val_images": fingerprint(val_images), "n_train_images": len(train_images),
              "n_val_images": len(val_images), "history": history, "seconds": sum(history["seconds"]),
              "torch_threads": 1, "versions": versions()}
    weights, record_path = ulsad_paths(out_dir, config.seed)
    model.save(weights)
    write_json_atomic(record_path, record)
    return record


def find_ulsad(out_dir, config: ulsad.ULSADConfig, train_images: torch.Tensor, val_images: torch.Tensor,
               backbone=None, device="cpu"):
    """``(trained ULSAD, record)`` of :func:`train_ulsad` in ``out_dir`` for this config (seed included) and
    these images (fingerprints), else ``None``: the caller then trains itself (notebook 07)."""
    weights, record_path = ulsad_paths(out_dir, config.seed)
    record = matches(record_path, {"config": dataclasses.asdict(config), "train_images": fingerprint(train_images),
                                   "val_images": fingerprint(val_images)})
    if record is None:
        return None
    return ulsad.ULSAD.load(weights, backbone=backbone, device=device, verbose=False), record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iadtutor.tools.checkpoints", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/toy", help="toy factory root (default: data/toy)")
    parser.add_argument("--out", default="checkpoints", help="folder for the files (default: checkpoints)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    parser.add_argument("--what", nargs="+", choices=("defectmaker", "ulsad"), default=["defectmaker", "ulsad"],
                        help="which trainings (default: both)")
    args = parser.parse_args(argv)
    if not (Path(args.data) / CATEGORY).is_dir():
        parser.error(f"--data {args.data}: no {CATEGORY} folder there; make the toy factory first (make toy).")
    for seed in args.seeds:
        if "defectmaker" in args.what:
            history = train_defectmaker(args.data, args.out, seed)["history"]
            print(f"DefectMaker seed {seed}: {history['seconds']:.0f} s, held-out accuracy "
                  f"{history['heldout_accuracy']:.3f}")
        if "ulsad" in args.what:
            record = train_ulsad(args.data, args.out, seed)
            print(f"ULSAD seed {seed}: {record['seconds']:.0f} s, last loss {record['history']['loss'][-1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
