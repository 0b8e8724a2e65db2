"""One category at real size (213 train / 100 test images, 256 px): every stage timed against a plain version.

Writes the toy category (``bracket``, MVTec AD's bottle-sized split) if it is missing, then times, each
beside a straightforward implementation measured in the same run (``ratio`` = plain seconds / ours):

* embedding (EfficientNet-Lite0; LWinNN's taps 0,1,2, PatchCore's and REB's neighbourhood features of taps 1,2)
  — plain: one image at a time;
* SPADE and LWinNN scoring — plain: the shifted-slice loop of ``bench_lwinnn.py`` (on a few test images);
* the greedy coreset on the LWinNN embedding (method ``global``) and on PatchCore's — plain: the textbook
  greedy loop (a few hundred iterations, scaled to all);
* kNN scoring and LDKNN's bank kNN (full bank of taps 1,2) — plain: ``torch.cdist`` + ``topk`` on a slice
  of the queries; also the fraction of a plain matrix product's throughput of the same shape;
* ULSAD inference (small preset) — plain: batch size 1.

Plain versions that would take an hour run on a slice and are scaled linearly (``baseline_scaled``).
Peak memory is the extra resident set size of the stage (CPU, ``VmHWM`` after a reset) or
``torch.cuda.max_memory_allocated`` (GPU).

    python benchmarks/bench_realsize.py                         # CPU, writes benchmarks/results/realsize_cpu.json
    python benchmarks/bench_realsize.py --device cuda --out benchmarks/results/realsize_cuda.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lwinnn import peak_extra_bytes, shifted_slice_loop, synchronize  # noqa: E402
from iadtutor import knn  # noqa: E402
from iadtutor.backbones import load_backbone  # noqa: E402
from iadtutor.embed import PatchEmbedder  # noqa: E402
from iadtutor.pipeline import load_category, method_config  # noqa: E402
from iadtutor.files import write_json_atomic  # noqa: E402
from toyfactory import make_toy_dataset  # noqa: E402

REAL_SIZE = {"n_train": 213, "n_test_good": 28, "n_test_per_defect": 18}  # 28 + 4 defect types × 18 = 100


def timed(fn, device):
    """``(result, seconds, extra peak bytes)`` of one call."""
    box = {}
    synchronize(device)
    start = time.perf_counter()
    extra = peak_extra_bytes(lambda: box.setdefault("out", fn()), device)
    synchronize(device)
    return box["out"], time.perf_counter() - start, extra


def plain_coreset_seconds_per_iteration(features: torch.Tensor, iterations: int, seed: int = 0):
    """The textbook greedy loop (a new (P, 128) tensor per iteration): seconds per iteration, first indices."""
    generator = torch.Generator().manual_seed(seed)
    points = features.float() @ (torch.randn(features.shape[1], 128, generator=generator) / math.sqrt(128)).to(
        features.device)
    selected = [int(torch.randint(len(points), (1,), generator=generator))]
    min_distance = (points - points[selected[0]]).pow(2).sum(1)
    start = time.perf_counter()
    for _ in range(iterations):
        selected.append(int(torch.argmax(min_distance)))
        min_distance = torch.minimum(min_distance, (points - points[selected[-1]]).pow(2).sum(1))
    synchronize(features.device)
    return (time.perf_counter() - start) / iterations, selected


def cdist_knn(queries: torch.Tensor, bank: torch.Tensor, k: int, rows: int = 1024):
    """Plain exact kNN: ``torch.cdist`` of a chunk of queries to the whole bank, then ``topk``."""
    parts = [torch.cdist(chunk, bank).topk(k, dim=1, largest=False) for chunk in queries.split(rows)]
    return torch.cat([p.values for p in parts]), torch.cat([p.indices for p in parts])


def matmul_gflops(m: int, n: int, c: int, device) -> float:
    """Throughput of a plain ``(m, c) @ (c, n)`` float32 product, best of 3 (GFLOP/s)."""
    a, b = torch.randn(m, c, device=device), torch.randn(n, c, device=device)
    best = math.inf
    for _ in range(3):
        _, seconds, _ = timed(lambda: a @ b.T, device)
        best = min(best, seconds)
    return 2 * m * n * c / best / 1e9


def row(stage, seconds, extra, baseline=None, baseline_seconds=None, scaled=False, **more):
    entry = {"stage": stage, "seconds": round(seconds, 2), "extra_peak_mib": round(extra / 2**20, 1)}
    if baseline:
        entry.update(baseline=baseline, baseline_seconds=round(baseline_seconds, 2), baseline_scaled=scaled,
                     ratio=round(baseline_seconds / seconds, 1))
    entry.update(more)
    print(json.dumps(entry), flush=True)
    return entry


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-root", type=Path, default=Path("data/realsize"))
    parser.add_argument("--category", default="bracket")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--plain-coreset-iterations", type=int, default=100)
    parser.add_argument("--plain-queries", type=int, default=4096, help="query patches for the cdist baseline")
    parser.add_argument("--plain-test-images", type=int, default=2, help="test images for the shifted-slice loop")
    parser.add_argument("--skip-ulsad", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/realsize_DEVICE.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = args.out or Path(__file__).parent / "results" / f"realsize_{device.type}.json"
    if not (args.data_root / args.category / "train").is_dir():
        make_toy_dataset(args.data_root, [args.category], image_size=args.image_size, progress=False, **REAL_SIZE)
    category = load_category(args.data_root, args.category, image_size=args.image_size, progress=False)
    backbone = load_backbone("efficientnet_lite0", device=device, verbose=False)
    images = torch.cat([category.train.images, category.test.images])
    n_train, n_test = len(category.train.images), len(category.test.images)
    stages, started = [], time.perf_counter()

    # Embedding, each method's (pipeline.METHODS): batches of 16 against one image at a time (16 images, scaled).
    embedded = {}
    for method in ("lwinnn", "patchcore", "ldknn"):
        config = method_config(method, image_size=args.image_size)
        embedder = PatchEmbedder(backbone, config)
        emb, seconds, extra = timed(lambda: embedder.embed(images, batch_size=16, progress=False), device)
        _, one_by_one, _ = timed(lambda: [embedder.embed(images[i:i + 1], progress=False) for i in range(16)],
                                 device)
        embedded[method] = (emb[:n_train], emb[n_train:])
        stages.append(row(f"embedding for {method}: taps {','.join(map(str, config.layers))}, {config.aggregation} "
                          f"({len(images)} images)", seconds, extra, "batch size 1", one_by_one * len(images) / 16,
                          True, patches=f"{emb.shape[0]}×{emb.shape[2]}×{emb.shape[3]}, C = {emb.shape[1]}"))

    train, test = embedded["lwinnn"]
    # SPADE and LWinNN: fit + score against the shifted-slice loop on a few test images.
    few = test[:args.plain_test_images]
    for name, window in (("SPADE", 1), ("LWinNN δ=7", 7)):
        scorer = knn.LocalWindowNN(window=window, device=device)
        scores, seconds, extra = timed(lambda: scorer.fit(train).score(test), device)
        plain, plain_seconds, _ = timed(lambda: shifted_slice_loop(train.to(device), few.to(device), window), device)
        stages.append(row(f"{name}: fit + score", seconds, extra, "shifted-slice loop",
                          plain_seconds * n_test / len(few), True,
                          max_abs_difference=float((scores[:len(few)].to(device) - plain).abs().max())))

    # Greedy coreset on the LWinNN embedding (method global) and on PatchCore's: against the plain greedy loop;
    # PatchCore's scoring against cdist.
    for method, (train, test) in (("global", embedded["lwinnn"]), ("patchcore", embedded["patchcore"])):
        patches = knn.flatten_patches(train).contiguous().to(device)
        coreset, seconds, extra = timed(lambda: knn.greedy_coreset(patches, 0.01), device)
        per_iteration, plain_selected = plain_coreset_seconds_per_iteration(patches, args.plain_coreset_iterations)
        stages.append(row(f"{method}: coreset 1 % of {len(patches)} patches, C = {patches.shape[1]}", seconds, extra,
                          "plain greedy loop", per_iteration * (len(coreset) - 1), True,
                          identical_first_indices=plain_selected == coreset[:len(plain_selected)].tolist()))
        bank = patches[coreset.to(device)]
        queries = knn.flatten_patches(test).contiguous().to(device)
        stages.append(knn_row(f"{method}: scoring", queries, bank, 1, args, device))
        del patches

    # REB's full bank (taps 1,2 through its neck): vanilla kNN scoring, LDKNN's bank kNN.
    train, test = embedded["ldknn"]
    bank = knn.flatten_patches(train).contiguous().to(device)
    queries = knn.flatten_patches(test).contiguous().to(device)
    stages.append(knn_row("kNN k=5 scoring, full bank", queries, bank, 5, args, device))
    stages.append(knn_row("LDKNN fit: bank kNN k=5", bank, bank, 5, args, device, exclude_self=True))
    stages.append(knn_row("LDKNN scoring", queries, bank, 1, args, device))

    if not args.skip_ulsad:
        stages.append(ulsad_row(category, device))
    result = {"benchmark": "realsize", "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
              or "cpu", "threads": args.threads, "torch": torch.__version__, "category": args.category,
              "n_train": n_train, "n_test": n_test, "image_size": args.image_size,
              "matmul_gflops_square_2048": round(matmul_gflops(2048, 2048, 2048, device), 1),
              "total_seconds": round(time.perf_counter() - started, 1), "stages": stages}
    write_json_atomic(out, result)
    print(markdown_table(result))
    return result


def knn_row(stage, queries, bank, k, args, device, exclude_self=False):
    """Our blocked kNN over all queries against cdist on a slice; throughput against a plain matmul."""
    (distance, index), seconds, extra = timed(
        lambda: knn.knn_distances(queries, bank, k, exclude_self=exclude_self), device)
    part = queries[:args.plain_queries]
    if exclude_self:  # cdist sees the point itself first: ask for one more and drop it
        (plain_d, plain_i), plain_seconds, _ = timed(lambda: cdist_knn(part, bank, k + 1), device)
        plain_d, plain_i = plain_d[:, 1:], plain_i[:, 1:]
    else:
        (plain_d, plain_i), plain_seconds, _ = timed(lambda: cdist_knn(part, bank, k), device)
    flops = 2 * len(queries) * len(bank) * bank.shape[1] / (2 if exclude_self else 1)
    reference = matmul_gflops(2048, min(len(bank), 16384), bank.shape[1], device)
    return row(f"{stage} ({len(queries)} × {len(bank)}, C = {bank.shape[1]})", seconds, extra,
               "torch.cdist + topk", plain_seconds * len(queries) / len(part), True,
               gflops=round(flops / seconds / 1e9, 1), matmul_gflops_same_shape=round(reference, 1),
               fraction_of_matmul=round(flops / seconds / 1e9 / reference, 2),
               max_abs_difference=float((distance[:len(part)] - plain_d).abs().max()),
               same_indices=float((index[:len(part)] == plain_i).float().mean()))


def ulsad_row(category, device):
    """ULSAD inference (small preset, one short epoch of training first): batch 32 against batch 1."""
    from iadtutor.ulsad import ULSAD, ULSADConfig

    size = category.test.images.shape[-1]
    model = ULSAD(ULSADConfig.small(image_size=size, epochs=1), backbone="efficientnet_lite0", device=device,
                  verbose=False)
    model.fit(category.train.images[:32], category.train.images[-8:], progress=False)
    test = category.test.images
    _, seconds, extra = timed(lambda: model.predict(test, batch_size=32), device)
    few = min(8, len(test))
    _, one_by_one, _ = timed(lambda: [model.predict(test[i:i + 1], batch_size=1) for i in range(few)], device)
    return row(f"ULSAD inference ({len(test)} images, small preset)", seconds, extra, "batch size 1",
               one_by_one * len(test) / few, True)


def markdown_table(result: dict) -> str:
    lines = ["| stage | ours (s) | plain (s) | ratio | extra peak memory (MiB) | notes |", "|---|---|---|---|---|---|"]
    for s in result["stages"]:
        notes = [f"plain: {s.get('baseline', '')}" + (" (scaled from a slice)" if s.get("baseline_scaled") else "")]
        if "fraction_of_matmul" in s:
            notes.append(f"{s['gflops']} GFLOP/s = {100 * s['fraction_of_matmul']:.0f} % of a plain matmul")
        if "identical_first_indices" in s:
            notes.append(f"identical indices: {s['identical_first_indices']}")
        lines.append(f"| {s['stage']} | {s['seconds']:.1f} | {s.get('baseline_seconds', float('nan')):.1f} | "
                     f"{s.get('ratio', '')}× | {s['extra_peak_mib']:.0f} | {'; '.join(notes)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
