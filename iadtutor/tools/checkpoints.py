"""`make checkpoints`: trainings too long for a chapter, run once by this script and committed (notebook 06).

Notebook 06 compares three DefectMaker fine-tunings (seeds 0, 1, 2) of :meth:`FinetuneConfig.small` with an
untrained control; on one CPU thread each takes 20-27 minutes, far over the course's budget. This script
runs them with the package's own :func:`iadtutor.defectmaker.finetune_backbone` and writes, per seed, the
fine-tuned weights (:func:`iadtutor.defectmaker.save_finetuned`) and a JSON record: the recipe, a fingerprint
of the images, the training history (loss, held-out accuracy curve, confusion table), the seconds it took
and the versions it ran with. The chapter loads a checkpoint only when recipe, seed and images match, and
re-runs the first updates live to check that its losses equal the recorded ones.

    python -m iadtutor.tools.checkpoints --data data/toy --out checkpoints --seeds 0 1 2
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

from iadtutor import backbones, defectmaker, pipeline
from iadtutor.files import write_json_atomic

CATEGORY = "bracket"
IMAGE_SIZE = 128     # pixels, as notebook 06
HELDOUT_EVERY = 30   # updates between two held-out checks


def fingerprint(images: torch.Tensor) -> str:
    """A short SHA-256 of ``images`` (any shape, float32 bytes): the same images give the same string."""
    return hashlib.sha256(images.float().contiguous().numpy().tobytes()).hexdigest()[:16]


def checkpoint_paths(out_dir, seed: int, category: str = CATEGORY) -> tuple[Path, Path]:
    """``(weights .pt, record .json)`` of one fine-tuning in ``out_dir``."""
    stem = Path(out_dir) / f"defectmaker_{category}_seed{seed}"
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


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
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)  # convolution sums depend on the thread count
    try:
        finetuned, history = defectmaker.finetune_backbone(
            backbone, finetune_images, config=config, seed=seed, progress=progress,
            heldout_images=heldout_images, heldout_every=HELDOUT_EVERY)
    finally:
        torch.set_num_threads(threads_before)
    record = {"category": category, "image_size": image_size, "seed": seed, "backbone": backbone.name,
              "config": dataclasses.asdict(config), "heldout_every": HELDOUT_EVERY,
              "finetune_images": fingerprint(finetune_images), "heldout_images": fingerprint(heldout_images),
              "n_finetune_images": len(finetune_images), "n_heldout_images": len(heldout_images),
              "history": history, "torch_threads": 1,
              "versions": {"torch": torch.__version__, "python": platform.python_version()}}
    weights, record_path = checkpoint_paths(out_dir, seed, category)
    defectmaker.save_finetuned(finetuned, weights)
    write_json_atomic(record_path, record)
    return record


def find_defectmaker(out_dir, seed: int, config: defectmaker.FinetuneConfig, finetune_images: torch.Tensor,
                     heldout_images: torch.Tensor, backbone=None, device="cpu", category: str = CATEGORY):
    """``(fine-tuned FeatureExtractor on device, record)`` of :func:`train_defectmaker` in ``out_dir`` for this seed,
    recipe and these images (fingerprints), else ``None``: the caller then fine-tunes itself (notebook 06)."""
    weights, record_path = checkpoint_paths(out_dir, seed, category)
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    wanted = {"seed": seed, "config": json.loads(json.dumps(dataclasses.asdict(config))),
              "finetune_images": fingerprint(finetune_images), "heldout_images": fingerprint(heldout_images)}
    if any(record.get(key) != value for key, value in wanted.items()):
        return None
    return defectmaker.load_finetuned(weights, device=device, backbone=backbone), record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iadtutor.tools.checkpoints", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/toy", help="toy factory root (default: data/toy)")
    parser.add_argument("--out", default="checkpoints", help="folder for the files (default: checkpoints)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fine-tuning seeds (default: 0 1 2)")
    args = parser.parse_args(argv)
    if not (Path(args.data) / CATEGORY).is_dir():
        parser.error(f"--data {args.data}: no {CATEGORY} folder there; make the toy factory first (make toy).")
    for seed in args.seeds:
        history = train_defectmaker(args.data, args.out, seed)["history"]
        print(f"seed {seed}: {history['seconds']:.0f} s, held-out accuracy {history['heldout_accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
