"""The translation stress study: how far may the part move (or turn) before each search breaks?

The LWinNN paper (sec. 2 and 5) bets that industrial images need only *minor* translation invariance and
leaves open whether real lines show more. This module turns the toy factory's pose knobs up on purpose
and measures what each kind of nearest-neighbour search makes of it:

* fixed position (SPADE), local window (LWinNN, a few window sizes δ), global search (PatchCore);
* a **translation sweep** (rotation 0) and a **rotation sweep** (translation 0) of the ``bracket``.

Everything runs through the reproduction machinery of :mod:`iadtutor.tools.runs`: each toy variant is a
dataset of a grid, each (variant, method, δ) a run with its own folder, ``result.json`` and run id, and
a second call skips what finished. On disk, under the study root::

    ROOT/variants/rotation_0/toy_translation_0.1/bracket/...   one toy category per knob setting
    ROOT/grid.json                       the grid: ``iadtutor reproduce --grid ROOT/grid.json --out ROOT``
    ROOT/runs/RUN_ID/result.json ...     as written by iadtutor.tools.runs, plus results.csv and summary.md

:func:`run_in_process` is what ``iadtutor reproduce`` does, minus the subprocesses: the runs of one
variant share one loading and one embedding of the images (a fresh interpreter per run costs far more
than the run itself at toy size). Every run is still parsed from its ``iadtutor evaluate`` command line,
so its numbers are the ones ``iadtutor evaluate`` prints. ``run_study(..., in_process=False)`` calls
:func:`iadtutor.tools.runs.run_sweep` instead.

>>> study = run_study("data/study", translations=[0, 0.1, 0.2], rotations=[0, 30])  # doctest: +SKIP
>>> print(study.command)         # the same sweep from a shell                       # doctest: +SKIP
>>> translation_figure(study.table)                                                 # doctest: +SKIP
"""

from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

import json
from typing import Mapping

import torch  # noqa: F401

from iadtutor import pipeline
from iadtutor.metrics import METRICS, METRIC_TITLES
import toyfactory as toy
from iadtutor.tools import runs
from iadtutor.tools.cli import embedding_config

STUDY_METHODS = ("spade", "lwinnn", "patchcore", "ldknn")  # what run_in_process can run


# ------------------------------------------------------------------------------------ translation study
def translated_toy_root(data_root, translation: float) -> Path:
    """Where the toy set with pose jitter ``translation`` lives: ``data_root/../toy_translation_<t>``.

    A sibling of the default toy folder, so the default set is never touched.
    """
    return Path(data_root).parent / f"toy_translation_{float(translation):g}"


def make_translated_toy(data_root, translation: float, category: str = "bracket", rotation: float | None = None,
                        seed: int = 0, image_size: int = 128, n_train: int = 16, n_test_good: int = 8,
                        n_test_per_defect: int = 3) -> Path:
    """Write ``category`` of the toy factory with translation jitter ``translation`` (fraction of the image
    side) into :func:`translated_toy_root` and return that root; a folder already written with the same
    settings (its ``toy_factory.json``) is reused, one with other settings is rewritten."""
    root = translated_toy_root(data_root, translation)
    if root.resolve() == Path(data_root).resolve():
        raise ValueError(f"the translated toy set would overwrite data_root {data_root}; pick another data_root.")
    resolved_rotation = toy.DEFAULT_JITTER[category][1] if rotation is None else float(rotation)
    wanted = dict(seed=seed, image_size=image_size, translation=float(translation), rotation=resolved_rotation,
                  n_train=n_train, n_validation=0, n_test_good=n_test_good, n_test_per_defect=n_test_per_defect)
    info_path = root / category / "toy_factory.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if all(info.get(key) == value for key, value in wanted.items()):
            return root
    toy.make_toy_category(root, category, seed=seed, image_size=image_size, translation=float(translation),
                          rotation=resolved_rotation, n_train=n_train, n_validation=0, n_test_good=n_test_good,
                          n_test_per_defect=n_test_per_defect, progress=False)
    return root


def translation_study(data_root, translations: Sequence[float], embedder,
                      methods: Mapping[str, tuple[str, dict]] | None = None, category: str = "bracket",
                      rotation: float | None = None, seed: int = 0, image_size: int = 128, n_train: int = 16,
                      n_test_good: int = 8, n_test_per_defect: int = 3, coverage_windows: Sequence[int] = (),
                      coverage_images: int = 4, device: str = "cpu", sigma: float = 4.0
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For each translation jitter: write (or reuse) a toy set, embed it once, score it with each method.

    ``embedder``: a :class:`~iadtutor.embed.PatchEmbedder`. Returns two tables:

    * one row per (translation, method): ``translation``, ``method`` (the label), the three metrics and
      ``search_seconds_per_image``;
    * one row per (translation, window) of ``coverage_windows``: :func:`window_vs_global` on the first
      ``coverage_images`` normal test images (empty when ``coverage_windows`` is empty).
    """
    if not translations:
        raise ValueError("translations must hold at least one value, e.g. [0.0, 0.1, 0.2].")
    rows, coverage = [], []
    for translation in translations:
        root = make_translated_toy(data_root, translation, category, rotation, seed, image_size, n_train,
                                   n_test_good, n_test_per_defect)
        loaded = pipeline.load_category(root, category, image_size=image_size, progress=False)
        embedded = pipeline.embed_category(loaded, embedder, progress=False)
        table, _ = pipeline.compare_methods(embedded, methods, device=device, sigma=sigma, seed=seed, timing_repeats=1)
        for label, row in table.iterrows():
            rows.append({"translation": float(translation), "method": label,
                         **{name: row[name] for name in METRICS},
                         "search_seconds_per_image": row["search_seconds_per_image"]})
        if coverage_windows:
            normal = embedded.test[loaded.test.labels == 0][:coverage_images]
            found = pipeline.window_vs_global(embedded.train, normal, coverage_windows, device=device)
            coverage.append(found.assign(translation=float(translation)))
    coverage_table = (pd.concat(coverage, ignore_index=True)[["translation", "window", "share_found", "mean_ratio"]]
                      if coverage else pd.DataFrame(columns=["translation", "window", "share_found", "mean_ratio"]))
    return pd.DataFrame(rows), coverage_table


# ------------------------------------------------------------------------------------------ the variants
def variant_name(translation: float, rotation: float) -> str:
    """``t0.1_r0``: the folder and (after ``toy_``) the dataset name of one knob setting."""
    return f"t{float(translation):g}_r{float(rotation):g}"


def study_variants(translations: Sequence[float], rotations: Sequence[float]) -> list[tuple[float, float]]:
    """The knob settings ``(translation, rotation)``: every translation at rotation 0, then every rotation
    at translation 0 (one knob at a time; ``(0, 0)`` appears once)."""
    translations, rotations = [float(t) for t in translations], [float(r) for r in rotations]
    if not translations and not rotations:
        raise ValueError("translations and rotations are both empty; give at least one knob value.")
    for t in translations:
        if not 0 <= t <= 0.5:
            raise ValueError(f"translations must lie in [0, 0.5] (fractions of the image side); got {t}.")
    for r in rotations:
        if not 0 <= r <= 180:
            raise ValueError(f"rotations must lie in [0, 180] degrees; got {r}.")
    settings = [(t, 0.0) for t in translations] + [(0.0, r) for r in rotations]
    return list(dict.fromkeys(settings))


def variant_root(study_root, translation: float, rotation: float) -> Path:
    """Where the variant ``(translation, rotation)`` lives: ``study_root/variants/rotation_R/toy_translation_T``
    (the folder name of :func:`iadtutor.translated_toy_root`, one folder per rotation)."""
    return translated_toy_root(Path(study_root) / "variants" / f"rotation_{float(rotation):g}" / "toy",
                                      translation)


def make_variant(study_root, translation: float, rotation: float, category: str = "bracket", seed: int = 0,
                 image_size: int = 128, n_train: int = 16, n_test_good: int = 8,
                 n_test_per_defect: int = 4) -> tuple[Path, bool]:
    """Write the toy ``category`` with pose jitter ``(translation, rotation)`` into :func:`variant_root`
    with :func:`iadtutor.make_translated_toy` (which reuses a folder written with the same settings).

    Returns ``(data_root, written)``; ``written`` is True when the images were (re)generated.
    """
    root = variant_root(study_root, translation, rotation)
    info_path = root / category / "toy_factory.json"
    before = info_path.stat().st_mtime_ns if info_path.is_file() else None
    make_translated_toy(root.parent / "toy", translation, category, rotation=float(rotation), seed=seed,
                               image_size=image_size, n_train=n_train, n_test_good=n_test_good,
                               n_test_per_defect=n_test_per_defect)
    return root, info_path.stat().st_mtime_ns != before


# ------------------------------------------------------------------------------------------------ grid
def study_grid(variant_roots: dict[tuple[float, float], Path], category: str = "bracket",
               methods: Sequence[str] = ("spade", "lwinnn", "patchcore"), windows: Sequence[int] = (1, 3, 7),
               backbone: str = "auto", image_size: int = 128, seed: int = 0, coreset: float | None = None) -> dict:
    """The :mod:`iadtutor.tools.runs` grid of the study: one dataset ``toy_NAME`` per variant, the methods,
    and the ``iadtutor evaluate`` parameters (``window`` reaches only lwinnn, ``coreset`` only patchcore).

    Bootstrap intervals are switched off (``bootstrap=0``): the study compares curves, and 1000
    resamples per run would cost more than the run.
    """
    methods = [m for m in methods]
    unknown = [m for m in methods if m not in STUDY_METHODS]
    if not methods or unknown:
        raise ValueError(f"methods must be a non-empty subset of {', '.join(STUDY_METHODS)}; got {methods}.")
    windows = [int(w) for w in windows]
    if "lwinnn" in methods and (not windows or min(windows) < 1):
        raise ValueError(f"windows must be a non-empty list of positive integers for lwinnn; got {windows}.")
    # bootstrap as text: iadtutor.tools.runs drops a parameter whose value is False or None, and 0 == False
    params = {"backbone": backbone, "image_size": int(image_size), "seed": int(seed), "bootstrap": "0"}
    if "lwinnn" in methods:
        params["window"] = windows
    if coreset is not None:
        params["coreset"] = float(coreset)
    datasets = {f"toy_{variant_name(*knobs)}": {"data_root": str(Path(root).resolve()), "categories": [category]}
                for knobs, root in variant_roots.items()}
    return {"runner": "evaluate", "datasets": datasets, "methods": methods, "params": params}


def reproduce_command(grid_path, out_dir, jobs: int = 1) -> str:
    """The shell command that runs (or, once finished, just re-collects) the study."""
    return shlex.join(["iadtutor", "reproduce", "--grid", str(grid_path), "--out", str(out_dir),
                       "--jobs", str(int(jobs))])


# ------------------------------------------------------------------------------------ running in-process
def evaluate_arguments(spec: runs.RunSpec):
    """The ``argparse.Namespace`` that ``iadtutor evaluate`` would see for ``spec`` (defaults included)."""
    from iadtutor.tools.cli import build_parser  # the cli imports this module's neighbours

    if spec.runner != "evaluate":
        raise ValueError(f"run {spec.run_id} uses the {spec.runner!r} runner; only 'evaluate' runs in-process.")
    command, _ = runs.command_for(spec, Path("."), ["evaluate"])  # the exact flags the sweep would pass
    return build_parser().parse_args(command)


def _embedding_key(args) -> tuple:
    """Runs with the same key read and embed the same images the same way."""
    return (str(Path(args.data_root).resolve()), args.category, args.layout, args.backbone, args.weights,
            args.max_train, args.batch_size, args.device, embedding_config(args))


def _run_group(specs_args, device_override, backbones: dict) -> list[tuple[runs.RunSpec, dict]]:
    """Load and embed once, then score every run of the group with :func:`iadtutor.pipeline.evaluate`."""
    from iadtutor.backbones import load_backbone, resolve_device
    from iadtutor.embed import PatchEmbedder

    args = specs_args[0][1]
    device = resolve_device(device_override or args.device)
    category = pipeline.load_category(args.data_root, args.category, image_size=args.image_size,
                                      keep_aspect=args.keep_aspect, layout=args.layout, max_train=args.max_train,
                                      progress=False)
    backbone_key = (args.backbone, args.weights, str(device))
    if backbone_key not in backbones:
        backbones[backbone_key] = load_backbone(args.backbone, device=device, weights_path=args.weights,
                                                verbose=False)
    backbone = backbones[backbone_key]
    config = embedding_config(args)
    embedded = pipeline.embed_category(category, PatchEmbedder(backbone, config), batch_size=args.batch_size,
                                       progress=False)
    results = []
    for spec, args in specs_args:
        params = {name: getattr(args, name) for name in pipeline.METHODS[args.method].params}
        results.append((spec, pipeline.evaluate(category, args.method, backbone, config, embedded=embedded,
                                                device=device, seed=args.seed, bootstrap=args.bootstrap,
                                                **params)))
    return results


def run_in_process(specs: Sequence[runs.RunSpec], out_dir, *, device: str | None = None, rerun: bool = False,
                   threads: int | None = 1, echo=print) -> list[dict]:
    """Like :func:`iadtutor.tools.runs.run_sweep` (same folders, ``result.json`` records and skipping of
    finished runs), but in this interpreter, embedding each variant once for all its runs.

    ``device`` overrides the runs' ``--device`` (a run's identity does not include it). ``threads``: CPU
    threads for torch while the runs go (None: leave as is). On a small machine shared with other work,
    one thread can be many times faster than two that wait for each other. Returns one record per run
    with ``status`` ``ok``, ``failed`` or ``skipped``.
    """
    import torch

    threads_before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _run_in_process(specs, Path(out_dir), device, rerun, echo)
    finally:
        torch.set_num_threads(threads_before)


def _run_in_process(specs, out_dir: Path, device, rerun: bool, echo) -> list[dict]:
    runs.write_json_atomic(out_dir / "sweep.json", {"runs": [spec.to_dict() for spec in specs]})
    records, groups = [], {}
    for spec in specs:
        done = runs.read_json(out_dir / "runs" / spec.run_id / "result.json")
        if done and not rerun:
            records.append({**done, "status": "skipped"})
            continue
        args = evaluate_arguments(spec)
        if args.method not in STUDY_METHODS:
            raise ValueError(f"run {spec.run_id}: method {args.method!r} cannot run in-process; "
                             "use iadtutor.tools.runs.run_sweep.")
        groups.setdefault(_embedding_key(args), []).append((spec, args))
    if records:
        echo(f"{len(records)} of {len(specs)} runs finished before; skipping them.")
    todo = sum(len(group) for group in groups.values())
    backbones: dict = {}
    number = 0
    for group in groups.values():
        start = time.perf_counter()
        try:
            outcomes = [(spec, result, None) for spec, result in _run_group(group, device, backbones)]
        except Exception as error:  # one broken variant must not lose the others
            outcomes = [(spec, None, f"{type(error).__name__}: {error}") for spec, _ in group]
        seconds = round((time.perf_counter() - start) / len(group), 3)  # the group's time, shared out
        for spec, result, error in outcomes:
            run_dir = out_dir / "runs" / spec.run_id
            run_dir.mkdir(parents=True, exist_ok=True)
            for stale in ("result.json", "error.json"):
                (run_dir / stale).unlink(missing_ok=True)
            runs.write_json_atomic(run_dir / "run.json", spec.to_dict())
            command, _ = runs.command_for(spec, run_dir, ["iadtutor", "evaluate"])
            record = {**spec.to_dict(), "command": shlex.join(command), "runner_mode": "in-process",
                      "seconds": seconds}
            if error is None:
                record.update(status="ok", metrics=result)
                runs.write_json_atomic(run_dir / "result.json", record)
                detail = f"image AUROC {result['image_auroc']:.3f}"
            else:
                record.update(status="failed", error=error[:300], returncode=None)
                runs.write_json_atomic(run_dir / "error.json", record)
                detail = record["error"]
            records.append(record)
            number += 1
            echo(f"[{number}/{todo}] {record['status']:<6} {spec.run_id}: {detail} ({seconds:.1f} s)")
    return records


# ---------------------------------------------------------------------------------------------- the study
@dataclass
class Study:
    """What :func:`run_study` made: the tidy ``table`` (one row per run), the raw ``results`` of
    :func:`iadtutor.tools.runs.collect_results`, the grid file, the output folder and the shell ``command``."""

    table: pd.DataFrame
    results: pd.DataFrame
    grid_path: Path
    out_dir: Path
    command: str
    records: list


def method_label(method: str, window=None) -> str:
    """``SPADE (fixed)``, ``LWinNN δ=3``, ``PatchCore (global)``: how the figures and tables name a run."""
    if method == "lwinnn":
        return f"LWinNN δ={int(window)}"
    return {"spade": "SPADE (fixed)", "patchcore": "PatchCore (global)", "ldknn": "LDKNN (global)"}.get(method,
                                                                                                        method)


def tidy_table(results: pd.DataFrame, variants: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """``results`` of :func:`iadtutor.tools.runs.collect_results` -> one row per run with columns
    ``translation``, ``rotation``, ``method``, ``window``, ``label``, the three metrics, ``status``,
    sorted by knob and then fixed -> local -> global."""
    columns = ["translation", "rotation", "method", "window", "label", *METRICS, "status"]
    if results.empty:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame({
        "translation": [variants[d][0] for d in results["dataset"]],
        "rotation": [variants[d][1] for d in results["dataset"]],
        "method": results["method"],
        "window": (results["param_window"] if "param_window" in results else pd.Series(pd.NA, index=results.index)
                   ).astype("Int64"),
    })
    table["label"] = [method_label(m, w) for m, w in zip(table["method"], table["window"])]
    for metric in METRICS:
        table[metric] = results[metric].astype(float) if metric in results else float("nan")
    table["status"] = results["status"]
    order = {"spade": 0, "lwinnn": 1, "patchcore": 2, "ldknn": 3}
    table["_order"] = table["method"].map(order).fillna(9)
    table = table.sort_values(["rotation", "translation", "_order", "window"], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)[columns]


def run_study(study_root, translations: Sequence[float] = (0, 0.05, 0.1, 0.2), rotations: Sequence[float] = (0, 15, 45),
              methods: Sequence[str] = ("spade", "lwinnn", "patchcore"), windows: Sequence[int] = (1, 3, 7),
              category: str = "bracket", backbone: str = "auto", image_size: int = 128, n_train: int = 16,
              n_test_good: int = 8, n_test_per_defect: int = 4, seed: int = 0, coreset: float | None = None,
              device: str | None = None, jobs: int = 1, in_process: bool = True, threads: int | None = 1,
              echo=print) -> Study:
    """Write the toy variants, the grid, run every (variant, method, δ) through :mod:`iadtutor.tools.runs`,
    write ``results.csv`` / ``summary.md`` and return the :class:`Study`.

    Runs that finished before are skipped, unless the variant's images were written after them (other
    settings such as ``n_train``, which are not part of a run's identity): those are redone.
    ``in_process=False`` runs each point as its own ``iadtutor evaluate`` subprocess (``jobs`` at a
    time), exactly as the printed command does; ``threads`` applies in-process.
    """
    if category not in toy.TOY_CATEGORIES:
        raise ValueError(f"category must be a toy category ({', '.join(toy.TOY_CATEGORIES)}); got {category!r}.")
    study_root = Path(study_root)
    knob_settings = study_variants(translations, rotations)
    roots = {}
    for knobs in knob_settings:
        roots[knobs], _ = make_variant(study_root, *knobs, category=category, seed=seed, image_size=image_size,
                                       n_train=n_train, n_test_good=n_test_good, n_test_per_defect=n_test_per_defect)
    grid = study_grid(roots, category, methods, windows, backbone, image_size, seed, coreset)
    grid_path = runs.write_json_atomic(study_root / "grid.json", grid)
    specs = runs.expand_grid(grid)
    written = {f"toy_{variant_name(*knobs)}": (root / category / "toy_factory.json").stat().st_mtime_ns
               for knobs, root in roots.items()}
    for spec in specs:  # images newer than a result (other settings): that result says nothing about them
        result = study_root / "runs" / spec.run_id / "result.json"
        if result.is_file() and result.stat().st_mtime_ns < written[spec.dataset]:
            shutil.rmtree(result.parent)
    if in_process:
        records = run_in_process(specs, study_root, device=device, threads=threads, echo=echo)
    else:
        records = runs.run_sweep(specs, study_root, jobs=jobs, echo=echo)
    results = runs.collect_results(study_root, [spec.run_id for spec in specs])
    runs.write_summary(study_root, results)
    variants = {f"toy_{variant_name(*knobs)}": knobs for knobs in knob_settings}
    return Study(tidy_table(results, variants), results, grid_path, study_root,
                 reproduce_command(grid_path, study_root, jobs), records)


def auroc_table(table: pd.DataFrame, metric: str = "image_auroc", digits: int = 3) -> pd.DataFrame:
    """Rows: knob settings ``(translation, rotation)``; columns: methods in the table's order; cells:
    ``metric`` rounded to ``digits``."""
    if metric not in table:
        raise ValueError(f"metric {metric!r} is not a column of the table; pick one of {', '.join(METRICS)}.")
    labels = list(dict.fromkeys(table["label"]))
    view = table.pivot_table(index=["translation", "rotation"], columns="label", values=metric, aggfunc="first")
    return view[labels].round(digits).rename_axis(columns=None)
