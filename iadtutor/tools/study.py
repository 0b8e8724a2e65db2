"""The translation stress study (notebooks 03, 08): how far may the part move or turn before each search breaks?
(The LWinNN paper, sec. 2 and 5, bets on *minor* translation invariance.) One variant writer (:func:`write_variant`)
and one scoring loop (:func:`evaluate_methods`: embed once, :func:`iadtutor.pipeline.evaluate` per method, the
numbers ``iadtutor evaluate`` prints) with two front-ends: :func:`translation_study` (notebook 03, one table) and
:func:`run_study` (notebook 08: a grid of :mod:`iadtutor.tools.runs` in a study folder, run by
:func:`run_in_process` or as the ``iadtutor evaluate`` subprocesses of ``study.command``).
"""

from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

import toyfactory as toy
from iadtutor import pipeline
from iadtutor.backbones import load_backbone, resolve_device, torch_threads
from iadtutor.embed import PatchEmbedder
from iadtutor.metrics import METRICS
from iadtutor.tools import cli, runs
from iadtutor.tools.toy import toy_variant
from iadtutor.viz.core import require_columns, with_interval

STUDY_METHODS = tuple(pipeline.METHODS)  # what run_in_process can run: the kNN methods, fixed -> local -> global
LABELS = {"spade": "SPADE (fixed)", "global": "global search", "patchcore": "PatchCore (own embedding)", "knn": "KNN (global)",
          "ldknn": "LDKNN (global)"}


# ------------------------------------------------------------------------------------------ the variants
def translated_toy_root(data_root, translation: float) -> Path:
    """``data_root/../toy_translation_<t>``: notebook 03's toy set with translation jitter t, beside the default."""
    return Path(data_root).parent / f"toy_translation_{float(translation):g}"


def variant_root(study_root, translation: float, rotation: float, seed: int = 0) -> Path:
    """``study_root/variants/rotation_R/toy_translation_T``: notebook 08's variant ``(T, R)``; a toy ``seed`` other
    than 0 goes under ``variants/seed_S/``."""
    variants = Path(study_root) / "variants" / (f"seed_{int(seed)}" if int(seed) else "")
    return translated_toy_root(variants / f"rotation_{float(rotation):g}" / "toy", translation)


def write_variant(root, translation: float, rotation: float | None = None, category: str = "bracket", seed: int = 0,
                  image_size: int = 128, n_train: int = 16, n_test_good: int = 8, n_test_per_defect: int = 4) -> Path:
    """The variant writer of notebooks 03 and 08: toy ``category`` with pose jitter ``translation`` (fraction of the
    image side) and ``rotation`` (degrees) into ``root``, unless its ``toy_factory.json`` has these settings."""
    rotation = toy.DEFAULT_JITTER[category][1] if rotation is None else float(rotation)
    return toy_variant(root, category, seed=seed, image_size=image_size, translation=float(translation),
                       rotation=rotation, n_train=n_train, n_validation=0, n_test_good=n_test_good,
                       n_test_per_defect=n_test_per_defect)


def make_translated_toy(data_root, translation: float, category: str = "bracket", rotation: float | None = None,
                        seed: int = 0, image_size: int = 128, n_train: int = 16, n_test_good: int = 8,
                        n_test_per_defect: int = 3) -> Path:
    """Notebook 03's variant: :func:`write_variant` into :func:`translated_toy_root`; returns that root."""
    root = translated_toy_root(data_root, translation)
    if root.resolve() == Path(data_root).resolve():
        raise ValueError(f"the translated toy set would overwrite data_root {data_root}; pick another data_root.")
    return write_variant(root, translation, rotation, category, seed, image_size, n_train, n_test_good,
                         n_test_per_defect)


# -------------------------------------------------------------------------------------- the scoring loop
def evaluate_methods(category: pipeline.Category, embedder: PatchEmbedder, methods: Sequence[tuple[str, dict]],
                     batch_size: int = 16, **options) -> tuple[pipeline.EmbeddedCategory, list[dict]]:
    """The scoring loop of notebooks 03 and 08: embed ``category`` once, then :func:`iadtutor.pipeline.evaluate`
    each ``(method, its options)`` of ``methods`` (plus ``options``) on it; the embeddings and evaluate records."""
    embedded = pipeline.embed_category(category, embedder, batch_size, progress=False)
    return embedded, [pipeline.evaluate(category, method, embedder.backbone, embedder.config, embedded=embedded,
                                        **{**options, **own}) for method, own in methods]


def translation_study(data_root, translations: Sequence[float], embedder: PatchEmbedder,
                      methods: Mapping[str, tuple[str, dict]] | None = None, category: str = "bracket",
                      rotation: float | None = None, seed: int = 0, image_size: int = 128, n_train: int = 16,
                      n_test_good: int = 8, n_test_per_defect: int = 3, coverage_windows: Sequence[int] = (),
                      coverage_images: int = 4, device="cpu", bootstrap: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Notebook 03: per translation jitter, write (or reuse) :func:`make_translated_toy`, embed it once, score it
    with each of ``methods`` (``{label: (method, params)}``, default :func:`iadtutor.pipeline.standard_methods`).
    Returns a row per (translation, label) (metrics, their intervals ``<metric>_ci`` with ``bootstrap`` resamples,
    seconds) and per (translation, window of ``coverage_windows``)
    (:func:`iadtutor.pipeline.window_vs_global` on the first ``coverage_images`` normal test images)."""
    methods = pipeline.standard_methods() if methods is None else methods
    if not translations or not methods:
        raise ValueError("translations and methods must each hold at least one entry, e.g. [0.0, 0.1, 0.2].")
    rows, coverage = [], []
    for translation in translations:
        root = make_translated_toy(data_root, translation, category, rotation, seed, image_size, n_train,
                                   n_test_good, n_test_per_defect)
        loaded = pipeline.load_category(root, category, image_size=image_size, progress=False)
        embedded, records = evaluate_methods(loaded, embedder, list(methods.values()), device=device, seed=seed,
                                             bootstrap=bootstrap)
        rows += [{"translation": float(translation), "method": label, **pipeline.metric_columns(record),
                  "train_seconds": record["train_seconds"], "test_seconds_per_image": record["test_seconds_per_image"]}
                 for label, record in zip(methods, records)]
        if coverage_windows:
            normal = embedded.test[loaded.test.labels == 0][:coverage_images]
            found = pipeline.window_vs_global(embedded.train, normal, coverage_windows, device=device)
            coverage.append(found.assign(translation=float(translation)))
    columns = ["translation", "window", "share_found", "mean_ratio"]
    return pd.DataFrame(rows), pd.concat(coverage)[columns].reset_index(drop=True) if coverage else pd.DataFrame(
        columns=columns)


# ------------------------------------------------------------------------- rankings across toy seeds
def seed_root(data_root, seed: int) -> Path:
    """``data_root/../toy_seed_<seed>``: the toy factory written with another seed, beside the default (seed 0)
    set, which it never touches (notebooks 02, 03, 05)."""
    return Path(data_root).parent / f"toy_seed_{int(seed)}"


def toy_seed_data(data_root, category: str, seed: int) -> Path:
    """The data folder of toy ``category`` drawn with ``seed``: ``data_root`` itself for seed 0 (the course's
    set), else :func:`seed_root`, written on first use with the factory's defaults (notebooks 02, 03, 05)."""
    return Path(data_root) if int(seed) == 0 else toy_variant(seed_root(data_root, seed), category, seed=int(seed))


def across_seeds(data_root, category: str, seeds: Sequence[int], embedder: PatchEmbedder,
                 methods: Mapping[str, tuple[str, dict]], max_train: int | None = None, bootstrap: int = 0,
                 device="cpu") -> pd.DataFrame:
    """The same comparison on toy ``category`` drawn with each of ``seeds`` (:func:`toy_seed_data`): a row per
    (seed, label of ``methods``) with the metrics (and intervals with ``bootstrap``) of
    :func:`iadtutor.pipeline.compare_methods` (notebooks 02, 03, 05)."""
    if not seeds or not methods:
        raise ValueError("seeds and methods must each hold at least one entry, e.g. seeds=[0, 1, 2].")
    tables = []
    for seed in seeds:
        loaded = pipeline.load_category(toy_seed_data(data_root, category, seed), category,
                                        image_size=embedder.config.image_size, max_train=max_train, progress=False)
        table, _ = pipeline.compare_methods(pipeline.embed_category(loaded, embedder, progress=False), methods,
                                            device=device, seed=int(seed), timing_repeats=1, bootstrap=bootstrap)
        tables.append(table.reset_index().assign(seed=int(seed)))
    keep = ["seed", "method"] + [c for c in tables[0].columns if c.split("_ci")[0] in METRICS]
    return pd.concat(tables, ignore_index=True)[keep]


def seed_ranking(table: pd.DataFrame, metric: str = "image_auroc") -> pd.DataFrame:
    """One row per method of an :func:`across_seeds` table: ``metric`` on each seed (``seed 0``, ...), their
    ``mean``, the method's ``ranks`` on the seeds (``"1, 2, 1"``; 1 = best, ties share the better rank) and
    whether it held the ``same rank`` on every seed (notebooks 02, 03, 05)."""
    require_columns(table, ["seed", "method", metric], "seed_ranking's table")
    wide = table.pivot(index="method", columns="seed", values=metric)
    wide = wide.loc[list(dict.fromkeys(table["method"]))]
    ranks = wide.rank(ascending=False, method="min").astype(int)
    wide.columns = [f"seed {seed}" for seed in wide.columns]
    wide["mean"] = wide.mean(axis=1)
    wide["ranks"] = [", ".join(str(r) for r in row) for row in ranks.to_numpy()]
    wide["same rank"] = ranks.nunique(axis=1) == 1
    return wide


# ------------------------------------------------------------------------------- notebook 08: the grid
def variant_name(translation: float, rotation: float, seed: int = 0) -> str:
    """``t0.1_r0`` (``t0.1_r0_seed2`` for toy seed 2): notebook 08's name of a knob setting (its dataset is
    ``toy_t0.1_r0``)."""
    return f"t{float(translation):g}_r{float(rotation):g}" + (f"_seed{int(seed)}" if int(seed) else "")


def study_variants(translations: Sequence[float], rotations: Sequence[float]) -> list[tuple[float, float]]:
    """Notebook 08's knob settings: every translation at rotation 0, then every rotation at translation 0."""
    translations, rotations = [float(t) for t in translations], [float(r) for r in rotations]
    if not translations and not rotations:
        raise ValueError("translations and rotations are both empty; give at least one knob value.")
    if any(not 0 <= t <= 0.5 for t in translations) or any(not 0 <= r <= 180 for r in rotations):
        raise ValueError("translations must lie in [0, 0.5] (fractions of the image side) and rotations in "
                         f"[0, 180] degrees; got {translations} and {rotations}.")
    return list(dict.fromkeys([(t, 0.0) for t in translations] + [(0.0, r) for r in rotations]))


def study_grid(variant_roots: dict[tuple, Path], category: str = "bracket",
               methods: Sequence[str] = ("spade", "lwinnn", "global"), windows: Sequence[int] = (1, 3, 7),
               backbone: str = "auto", image_size: int = 128, seed: int = 0, coreset: float | None = None,
               bootstrap: int = 0) -> dict:
    """Notebook 08's grid for :mod:`iadtutor.tools.runs`: a dataset ``toy_NAME`` per variant ``(T, R)`` or
    ``(T, R, toy seed)``, the methods and the ``iadtutor evaluate`` parameters (``window`` reaches only lwinnn;
    ``bootstrap`` resamples for the intervals)."""
    methods, windows = list(methods), [int(w) for w in windows]
    if not methods or any(m not in STUDY_METHODS for m in methods):
        raise ValueError(f"methods must be a non-empty subset of {', '.join(STUDY_METHODS)}; got {methods}.")
    if "lwinnn" in methods and (not windows or min(windows) < 1):
        raise ValueError(f"windows must be a non-empty list of positive integers for lwinnn; got {windows}.")
    # bootstrap as the text "0", as it always was: a run's id hashes its parameters, and finished runs are kept
    params = {"backbone": backbone, "image_size": int(image_size), "seed": int(seed),
              "bootstrap": int(bootstrap) if bootstrap else "0",
              **({"window": windows} if "lwinnn" in methods else {}),
              **({"coreset": float(coreset)} if coreset is not None else {})}
    datasets = {f"toy_{variant_name(*knobs)}": {"data_root": str(Path(root).resolve()), "categories": [category]}
                for knobs, root in variant_roots.items()}
    return {"runner": "evaluate", "datasets": datasets, "methods": methods, "params": params}


# ------------------------------------------------------------------------------------ running in-process
def run_in_process(specs: Sequence[runs.RunSpec], out_dir, *, device: str | None = None, rerun: bool = False,
                   threads: int | None = 1, echo=print) -> list[dict]:
    """:func:`iadtutor.tools.runs.run_sweep` in this interpreter via :func:`execute_in_process` (notebook 08; same
    folders, records, skipping); ``device`` overrides the runs'; ``threads``: torch threads meanwhile (None: as is)."""
    with torch_threads(threads):
        return runs.run_sweep(list(specs), out_dir, rerun=rerun, echo=echo,
                              execute=lambda todo, out, report: execute_in_process(todo, out, report, device))


def execute_in_process(todo: Sequence[runs.RunSpec], out_dir: Path, report, device: str | None = None) -> None:
    """Notebook 08's in-process runner (:func:`run_in_process`): runs that load and embed the same images share one
    embedding; each run's options (:func:`iadtutor.tools.cli.evaluate_options`) become one
    :func:`iadtutor.pipeline.evaluate` call; a failed group, or a run with a bad option, is recorded failed."""
    def finish(spec: runs.RunSpec, seconds: float, result: dict | None = None, error: str | None = None) -> None:
        run_dir = runs.start_run(spec, out_dir)
        command, _ = runs.command_for(spec, run_dir, ["iadtutor", "evaluate"])
        record = {**spec.to_dict(), "command": shlex.join(command), "runner_mode": "in-process"}
        report(runs.finish_run(run_dir, record, seconds, result, error))

    groups, backbones = {}, {}
    for spec in todo:
        if spec.runner != "evaluate" or spec.method not in STUDY_METHODS:
            raise ValueError(f"run {spec.run_id}: only evaluate runs of {', '.join(STUDY_METHODS)} run in-process; "
                             "use iadtutor.tools.runs.run_sweep.")
        try:
            args = cli.evaluate_options(spec.data_root, spec.category, spec.method, **dict(spec.params))
            args.device = resolve_device(device or args.device)
        except ValueError as error:
            finish(spec, 0.0, error=f"ValueError: {error}")
            continue
        key = (str(Path(args.data_root).resolve()), args.category, args.layout, args.backbone, args.weights,
               cli.max_train(args), args.batch_size, args.device, cli.embedding_config(args))
        groups.setdefault(key, []).append((spec, args))
    for group in groups.values():
        start, first = time.perf_counter(), group[0][1]
        try:
            if (backbone_key := (first.backbone, first.weights, first.device)) not in backbones:
                backbones[backbone_key] = load_backbone(first.backbone, device=first.device, weights_path=first.weights,
                                                        verbose=False)
            category = pipeline.load_category(first.data_root, first.category, image_size=first.image_size,
                                              keep_aspect=not first.square, layout=first.layout,
                                              max_train=cli.max_train(first), progress=False)
            embedder = PatchEmbedder(backbones[backbone_key], cli.embedding_config(first))
            methods = [(args.method, {"device": args.device, "seed": args.seed, "bootstrap": args.bootstrap,
                                      **cli.method_arguments(args)}) for _, args in group]
            outcomes = [(result, None) for result in evaluate_methods(category, embedder, methods, first.batch_size)[1]]
        except Exception as error:  # one broken variant must not lose the others
            outcomes = [(None, f"{type(error).__name__}: {error}")] * len(group)
        seconds = (time.perf_counter() - start) / len(group)  # the group's time, shared out
        for (spec, _), (result, error) in zip(group, outcomes):
            finish(spec, seconds, result, error)


# ------------------------------------------------------------------------------------- notebook 08: tables
@dataclass
class Study:
    """What :func:`run_study` made (notebook 08): the tidy ``table``, ``collect_results``, grid, folder, command."""

    table: pd.DataFrame
    results: pd.DataFrame
    grid_path: Path
    out_dir: Path
    command: str
    records: list


def method_label(method: str, window=None) -> str:
    """``SPADE (fixed)``, ``LWinNN δ=3``, ``global search``: a run's name in notebook 08's tables and figures."""
    return f"LWinNN δ={int(window)}" if method == "lwinnn" else LABELS.get(method, method)


def tidy_table(results: pd.DataFrame, variants: dict[str, tuple]) -> pd.DataFrame:
    """Notebook 08's table of :func:`iadtutor.tools.runs.collect_results` (``variants``: dataset name ->
    ``(T, R)`` or ``(T, R, toy seed)``), sorted by knob, then fixed -> global, then seed; ``<metric>_ci`` holds
    ``(low, high)`` where the runs measured intervals."""
    columns = ["translation", "rotation", "seed", "method", "window", "label", *METRICS, "status"]
    if results.empty:
        return pd.DataFrame(columns=columns)
    window = results["param_window"] if "param_window" in results else pd.Series(pd.NA, index=results.index)
    knobs = [tuple(variants[d]) + (0,) * (3 - len(variants[d])) for d in results["dataset"]]
    table = pd.DataFrame({"translation": [k[0] for k in knobs], "rotation": [k[1] for k in knobs],
                          "seed": [int(k[2]) for k in knobs], "method": results["method"],
                          "window": window.astype("Int64")})
    table["label"] = [method_label(m, w) for m, w in zip(table["method"], table["window"])]
    intervals = []
    for metric in METRICS:
        table[metric] = results[metric].astype(float) if metric in results else float("nan")
        if f"{metric}_ci_low" in results:
            table[f"{metric}_ci"] = list(zip(results[f"{metric}_ci_low"].astype(float),
                                             results[f"{metric}_ci_high"].astype(float)))
            intervals.append(f"{metric}_ci")
    table["status"] = results["status"]
    table["order"] = table["method"].map({m: i for i, m in enumerate(STUDY_METHODS)}).fillna(9)
    table = table.sort_values(["rotation", "translation", "order", "window", "seed"], kind="stable", ignore_index=True)
    return table[columns + intervals]


def run_study(study_root, translations: Sequence[float] = (0, 0.05, 0.1, 0.2), rotations: Sequence[float] = (0, 15, 45),
              methods: Sequence[str] = ("spade", "lwinnn", "global"), windows: Sequence[int] = (1, 3, 7),
              category: str = "bracket", backbone: str = "auto", image_size: int = 128, n_train: int = 16,
              n_test_good: int = 8, n_test_per_defect: int = 4, seed: int = 0, coreset: float | None = None,
              device: str | None = None, jobs: int = 1, in_process: bool = True, threads: int | None = 1,
              seeds: Sequence[int] = (0,), bootstrap: int = 0, echo=print) -> Study:
    """Notebook 08: write the variants (each knob setting drawn with every toy seed of ``seeds``) and the grid, run
    every (variant, method, δ) (:func:`run_in_process`, or ``jobs`` subprocesses with ``in_process=False``), write
    ``results.csv`` / ``summary.md``. ``seed`` is the runs' own (the coreset's draws), ``bootstrap`` their
    interval resamples. Finished runs are skipped unless their images are newer (settings such as ``n_train``
    are not part of a run's id)."""
    if category not in toy.TOY_CATEGORIES:
        raise ValueError(f"category must be a toy category ({', '.join(toy.TOY_CATEGORIES)}); got {category!r}.")
    study_root, seeds = Path(study_root), [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one toy seed, e.g. [0, 1, 2].")
    knob_settings = [(*knobs, s) for s in seeds for knobs in study_variants(translations, rotations)]
    roots = {knobs: write_variant(variant_root(study_root, *knobs), *knobs[:2], category, knobs[2], image_size,
                                  n_train, n_test_good, n_test_per_defect) for knobs in knob_settings}
    grid = study_grid(roots, category, methods, windows, backbone, image_size, seed, coreset, bootstrap)
    grid_path = runs.write_json_atomic(study_root / "grid.json", grid)
    specs = runs.expand_grid(grid)
    for spec in specs:  # images newer than a result (other settings): that result says nothing about them
        result, images = study_root / "runs" / spec.run_id / "result.json", Path(spec.data_root) / category
        if result.is_file() and result.stat().st_mtime_ns < (images / "toy_factory.json").stat().st_mtime_ns:
            shutil.rmtree(result.parent)
    records = (run_in_process(specs, study_root, device=device, threads=threads, echo=echo) if in_process
               else runs.run_sweep(specs, study_root, jobs=jobs, echo=echo))
    results = runs.collect_results(study_root, [spec.run_id for spec in specs])
    runs.write_summary(study_root, results)
    command = shlex.join(["iadtutor", "reproduce", "--grid", str(grid_path), "--out", str(study_root),
                          "--jobs", str(int(jobs))])
    return Study(tidy_table(results, {f"toy_{variant_name(*knobs)}": knobs for knobs in knob_settings}), results,
                 grid_path, study_root, command, records)


def auroc_table(table: pd.DataFrame, metric: str = "image_auroc", digits: int = 3, spread: bool = False) -> pd.DataFrame:
    """Notebook 08's summary: rows ``(translation, rotation)``, a column per method label, ``metric`` rounded (its
    mean over the toy seeds when the study has several). ``spread=True``: cells ``"mean [lowest, highest]"``, the
    range over the seeds (not a confidence interval: each run's bootstrap interval is its ``<metric>_ci``)."""
    if metric not in table:
        raise ValueError(f"metric {metric!r} is not a column of the table; pick one of {', '.join(METRICS)}.")
    labels = list(dict.fromkeys(table["label"]))
    stats = table.pivot_table(index=["translation", "rotation"], columns="label", values=metric,
                              aggfunc=["mean", "min", "max"])
    mean = stats["mean"][labels]
    if not spread:
        return mean.round(digits).rename_axis(columns=None)
    return pd.DataFrame({label: [with_interval(value, (low, high), digits) for value, low, high
                                 in zip(mean[label], stats["min"][label], stats["max"][label])] for label in labels},
                        index=mean.index)


def rank_table(table: pd.DataFrame, metric: str = "image_auroc") -> pd.DataFrame:
    """Notebook 08: rows ``(translation, rotation)``, a column per method label with its ranks on the toy seeds
    (``"1, 1, 2"``; 1 = best, :func:`seed_ranking`), and ``same order``: every method kept its rank on every seed."""
    rows = {}
    for knobs, group in table.groupby(["translation", "rotation"], sort=False):
        ranking = seed_ranking(group.drop(columns="method").rename(columns={"label": "method"}), metric)
        rows[knobs] = {**ranking["ranks"].to_dict(), "same order": bool(ranking["same rank"].all())}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["translation", "rotation"])
    return frame
