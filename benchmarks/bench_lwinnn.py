"""LWinNN scorer speed and memory, as ratios against baselines measured in the same run.

Compares :class:`iadtutor.knn.LocalWindowNN` with a straightforward shifted-slice loop (one
``(n, m, h, w)`` distance tensor per window offset) on identical random embeddings, and with the
machine's own matrix-multiply throughput (a large square float32 ``matmul``).

    python benchmarks/bench_lwinnn.py                      # small default, CPU
    python benchmarks/bench_lwinnn.py --device cuda --n-train 200 --size 64 --channels 448 --window 7
    python benchmarks/bench_lwinnn.py --memory-check       # 750 × 448 × 64 × 64 bank, δ = 15

Prints one JSON line; ``--out FILE`` also writes it atomically.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from iadtutor.files import write_json_atomic  # noqa: E402
from iadtutor.knn import LocalWindowNN, window_offsets  # noqa: E402


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device, n=2048, repeats=5) -> float:
    """Best-of throughput of a square float32 matmul (GFLOP/s)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def window_flops(n_test, n_train, channels, height, width, window) -> int:
    """Multiply-adds ×2 of the dot products LWinNN needs: every test patch × every train patch in its window."""
    offsets = window_offsets(window)
    pairs = sum((height - abs(dy)) * (width - abs(dx)) for dy in offsets for dx in offsets)
    return 2 * n_test * n_train * channels * pairs


def shifted_slice_loop(train, test, window):
    """Baseline: for each offset, one (n, m, h', w') distance tensor by broadcasting; running minimum."""
    n, _, h, w = test.shape
    best = torch.full((n, h, w), float("inf"), device=test.device)
    offsets = window_offsets(window)
    for dy in offsets:
        for dx in offsets:
            ys, xs = slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx))
            ty, tx = slice(ys.start + dy, ys.stop + dy), slice(xs.start + dx, xs.stop + dx)
            for i in range(n):  # one test image at a time keeps the (m, C, h', w') difference in memory
                distance = (test[i, None, :, ys, xs] - train[:, :, ty, tx]).pow(2).sum(1)  # (m, h', w')
                best[i, ys, xs] = torch.minimum(best[i, ys, xs], distance.amin(0))
    return best.sqrt()


def timed(fn, device):
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak_extra_bytes(fn, device) -> int:
    """Extra peak memory while ``fn`` runs: CUDA allocator peak, or the process's resident-set peak.

    On Linux the RSS high-water mark (VmHWM) is reset first (``echo 5 > /proc/self/clear_refs``), so
    the peak is the one reached *during* ``fn``, measured against the resident size just before it.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        return torch.cuda.max_memory_allocated() - before
    before = _proc_status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    fn()
    return max(0, _proc_status_bytes("VmHWM") - before)


def _memory_worker(args, queue):
    """Runs in a fresh process so the RSS high-water mark starts at the memory bank."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(args.n_train, args.channels, args.size, args.size, generator=generator)
    scorer = LocalWindowNN(window=args.window, device=device).fit(train)
    del train  # the scorer keeps its own (h, w, C, M) copy: that *is* the memory bank
    test = torch.randn(args.n_test, args.channels, args.size, args.size, generator=generator)
    bank_bytes = scorer.bank.numel() * 4
    start = time.perf_counter()
    extra = peak_extra_bytes(lambda: scorer.score(test), device)
    seconds = time.perf_counter() - start
    flops = window_flops(args.n_test, args.n_train, args.channels, args.size, args.size, args.window)
    queue.put({"bank_gib": bank_bytes / 2**30, "extra_peak_gib": extra / 2**30, "score_seconds": seconds,
               "gflops": flops / seconds / 1e9})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-train", type=int, default=40)
    parser.add_argument("--n-test", type=int, default=8)
    parser.add_argument("--channels", type=int, default=176, help="176 = EfficientNet-Lite0 taps, 448 = ResNet18")
    parser.add_argument("--size", type=int, default=32, help="patch grid side h = w")
    parser.add_argument("--window", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--memory-check", action="store_true",
                        help="also score with the paper-sized bank (750 × 448 × 64 × 64, δ = 15) and report peak memory")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    generator = torch.Generator().manual_seed(0)
    train = torch.randn(args.n_train, args.channels, args.size, args.size, generator=generator).to(device)
    test = torch.randn(args.n_test, args.channels, args.size, args.size, generator=generator).to(device)
    flops = window_flops(args.n_test, args.n_train, args.channels, args.size, args.size, args.window)

    peak_matmul = matmul_gflops(device)
    scorer = LocalWindowNN(window=args.window, device=device).fit(train)
    extra_peak = peak_extra_bytes(lambda: scorer.score(test), device)  # first, before the loop's big temporaries
    runs = [timed(lambda: scorer.score(test), device) for _ in range(3)]  # best of 3, like the matmul
    ours, ours_seconds = min(runs, key=lambda run: run[1])
    loop, loop_seconds = timed(lambda: shifted_slice_loop(train, test, args.window), device)
    result = {
        "device": str(device), "threads": args.threads, "n_train": args.n_train, "n_test": args.n_test,
        "channels": args.channels, "size": args.size, "window": args.window,
        "matmul_gflops": round(peak_matmul, 1),
        "lwinnn_seconds": round(ours_seconds, 4), "lwinnn_gflops": round(flops / ours_seconds / 1e9, 1),
        "loop_seconds": round(loop_seconds, 4),
        "speedup_vs_loop": round(loop_seconds / ours_seconds, 2),
        "fraction_of_matmul_throughput": round(flops / ours_seconds / 1e9 / peak_matmul, 3),
        "max_abs_score_difference": float((ours.to(device) - loop).abs().max()),
        "lwinnn_extra_peak_mib": round(extra_peak / 2**20, 1),
    }
    if args.memory_check:
        memory_args = argparse.Namespace(n_train=750, n_test=16, channels=448, size=64, window=15,
                                         device=args.device, threads=args.threads)
        context = mp.get_context("spawn")
        queue = context.Queue()
        worker = context.Process(target=_memory_worker, args=(memory_args, queue))
        worker.start()
        result["memory_check"] = {k: round(v, 2) for k, v in queue.get().items()}
        worker.join()
    print(json.dumps(result))
    if args.out:
        write_json_atomic(args.out, result)


if __name__ == "__main__":
    main()
