"""Speed and memory of ULSAD: training seconds per epoch (median over epochs), inference images/s at
batch 32 and peak memory.

Trains on synthetic images (a coloured disk on a plain background, jittered, with noise) so it needs no
dataset. Prints one JSON line; ``--results FILE`` also appends that line to FILE (rewritten atomically).

    python benchmarks/bench_ulsad.py --preset small --device cpu --image-size 128 --epochs 3
    python benchmarks/bench_ulsad.py --preset paper --device cuda --backbone wide_resnet50_2

Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU (tensors only, as in the paper's table 4);
on CPU the process's peak resident set size (``resource.getrusage``), which includes Python and the
torch libraries themselves (tracemalloc cannot see torch's allocations).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from iadtutor.backbones import resolve_device
from iadtutor.ulsad import ULSAD, ULSADConfig


def synthetic_images(n: int, size: int, seed: int) -> torch.Tensor:
    """``(n, 3, size, size)`` floats in [0, 1]: a disk at a jittered position plus Gaussian noise."""
    generator = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = torch.empty(n, 3, size, size)
    for i in range(n):
        cy, cx = (size // 2 + torch.randint(-size // 16, size // 16 + 1, (2,), generator=generator)).tolist()
        disk = (((yy - cy) ** 2 + (xx - cx) ** 2) < (size // 5) ** 2).float()
        image = torch.stack([0.2 + 0.6 * disk, 0.3 + 0.2 * disk, 0.5 - 0.3 * disk])
        images[i] = (image + 0.03 * torch.randn(3, size, size, generator=generator)).clamp(0, 1)
    return images


def append_json_line_atomically(path: Path, record: dict) -> None:
    """Append ``record`` as one JSON line: old content + new line into a temporary file, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(old + json.dumps(record) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=("paper", "small"), default="small")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--backbone", default="auto", help="auto, resnet18, wide_resnet50_2, efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=None, help="pixels (default: the preset's)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=40)
    parser.add_argument("--n-inference", type=int, default=64, help="images pushed through predict()")
    parser.add_argument("--batch-size", type=int, default=32, help="inference batch size")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=None, help="append the JSON line to this file")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    preset = ULSADConfig.paper if args.preset == "paper" else ULSADConfig.small
    changes = {"epochs": args.epochs, "seed": args.seed, "backbone": args.backbone}
    if args.image_size:
        changes["image_size"] = args.image_size
    config = preset(**changes)

    train = synthetic_images(args.n_train, config.image_size, seed=args.seed)
    val = synthetic_images(max(4, args.n_train // 10), config.image_size, seed=args.seed + 1)
    test = synthetic_images(args.n_inference, config.image_size, seed=args.seed + 2)

    model = ULSAD(config, backbone=args.backbone, device=device, verbose=False)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    history = model.fit(train, val, progress=False)
    synchronize(device)
    fit_seconds = time.perf_counter() - started
    train_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None

    model.predict(test[: args.batch_size], batch_size=args.batch_size)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    started = time.perf_counter()
    model.predict(test, batch_size=args.batch_size)
    synchronize(device)
    inference_seconds = time.perf_counter() - started

    epoch_seconds = sorted(history["seconds"])
    record = {
        "benchmark": "ulsad",
        "preset": args.preset,
        "backbone": model.backbone.name,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "image_size": config.image_size,
        "feature_channels": model.feature_channels,
        "trainable_parameters": sum(p.numel() for p in model.model.parameters()),
        "n_train": args.n_train,
        "epochs": args.epochs,
        "train_seconds_per_epoch": round(epoch_seconds[len(epoch_seconds) // 2], 4) if epoch_seconds else None,
        "fit_seconds": round(fit_seconds, 3),
        "first_loss": round(history["loss"][0], 4) if history["loss"] else None,
        "last_loss": round(history["loss"][-1], 4) if history["loss"] else None,
        "inference_batch_size": args.batch_size,
        "inference_images_per_second": round(args.n_inference / inference_seconds, 2),
    }
    if device.type == "cuda":
        record["peak_memory_mib_train"] = round(train_peak / 2**20, 1)
        record["peak_memory_mib_inference"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        record["memory_kind"] = "torch.cuda.max_memory_allocated"
    else:
        record["peak_memory_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        record["memory_kind"] = "process peak RSS (ru_maxrss)"
    print(json.dumps(record))
    if args.results:
        append_json_line_atomically(args.results, record)
    return record


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
