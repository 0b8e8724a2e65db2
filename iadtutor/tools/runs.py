"""Reproduction sweeps, ``iadtutor reproduce`` (README "Reproduction runs"): ``iadtutor evaluate`` or a notebook over a
grid of datasets x categories x methods x parameters. Each point is a *run* with a stable id
(``toy-weave-lwinnn-window3-1f2e3d4c``), run as a subprocess (``--jobs N`` at once, or on a Dask cluster:
``--scheduler tcp://host:8786`` or ``local:N``) into ``OUT/runs/RUN_ID/``: ``run.json``, ``result.json`` once finished
(else ``error.json``, the reason in one line), stdout, stderr, the executed notebook. ``OUT/results.csv``,
``comparison.csv`` (beside the papers', :mod:`iadtutor.tools.papers`) and ``summary.md`` / ``.html`` sum them up. A
second sweep skips finished runs and retries failed ones; a run whose Dask worker died goes once more. A grid comes
from a YAML/JSON file, a preset of :data:`PRESETS` and/or flags::

    iadtutor reproduce --dataset toy --data-root data/toy --categories weave,bracket \\
        --methods spade,lwinnn --param window=3,7 --param backbone=efficientnet_lite0 --out runs/toy --jobs 2
    # grid.yaml (runner: notebook + notebook: notebooks/07_ulsad.ipynb would run a notebook)
    datasets: {toy: {data_root: data/toy, categories: [weave, bracket]}, mvtec_ad: {categories: all}}
    methods: [spade, lwinnn]
    params: {window: [3, 7], backbone: resnet18}

Categories: a list, ``"a,b"`` or ``all`` (the dataset's own, else the folders of its data root, default
``data/DATASET``). A parameter becomes ``--NAME VALUE`` of ``iadtutor evaluate`` (``true``: a bare switch); one that
only some methods read (:data:`METHOD_PARAMS`; grid key ``method_params:`` overrides it) reaches only those
(``--methods spade,lwinnn --param window=3,7``: three runs). A notebook run gets ``dataset``, ``data_root``,
``category``, ``method``, the parameters and ``result_path`` from papermill and ends with :func:`record_result`
(evaluate's metric names); one that records nothing has failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import ctypes
import dataclasses
import functools
import hashlib
import html
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pandas as pd

from iadtutor import files
from iadtutor.metrics import KIND_METRICS, METRIC_TITLES, METRICS
from iadtutor.pipeline import METHODS
from iadtutor.tools.papers import (CATEGORY_GROUPS, DATASET_CATEGORIES, DATASET_TITLES, METHOD_TITLES, group_of,
                                   level_of, paper_results)

RESULT_PATH_ENV = "IADTUTOR_RESULT_PATH"
# Parameter -> the kNN methods that read it; a parameter not listed (backbone, image_size, ...) goes to all.
METHOD_PARAMS = {name: [method for method, entry in METHODS.items() if name in entry.params]
                 for name in dict.fromkeys(p for entry in METHODS.values() for p in entry.params)}
# Evaluate in a fresh interpreter; works whether or not the console script is on PATH.
DEFAULT_EVALUATE_COMMAND = (sys.executable, "-c", "import sys; from iadtutor.tools.cli import main; sys.exit(main())",
                            "evaluate")
# Grids of the papers' tables (--preset; tables/presets.json); data roots default to data/DATASET (--data-root).
PRESETS = json.loads((resources.files("iadtutor.tools") / "tables" / "presets.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------- files
def write_json_atomic(path: Path | str, data) -> Path:
    """:func:`iadtutor.files.write_json_atomic` that also takes numpy / torch values and paths (run records)."""
    def builtin(value):
        if hasattr(value, "tolist") or isinstance(value, Path):  # numpy arrays and scalars, torch tensors
            return value.tolist() if hasattr(value, "tolist") else str(value)
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")
    return files.write_json_atomic(path, data, default=builtin)


def read_json(path: Path) -> dict | None:
    """The JSON in ``path``, or None when missing or half written (a finished run has a readable result.json)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def record_result(metrics: dict, result_path: str | os.PathLike | None = None) -> Path | None:
    """The last cell of notebooks 03-08: ``metrics`` as JSON in ``result_path`` or ``$IADTUTOR_RESULT_PATH`` for
    ``iadtutor reproduce``; None (nothing written) when neither is set."""
    if not isinstance(metrics, dict):
        raise TypeError(f"record_result expects a dict of metrics, got {type(metrics).__name__}.")
    path = result_path or os.environ.get(RESULT_PATH_ENV)
    return write_json_atomic(path, metrics) if path else None


# ------------------------------------------------------------------------------------------- runs, grids
@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One point of a grid (``iadtutor reproduce``, notebook 08). ``params``: sorted (name, value) pairs."""

    dataset: str
    category: str
    method: str
    params: tuple = ()
    data_root: str = ""
    runner: str = "evaluate"
    notebook: str = ""

    @property
    def run_id(self) -> str:
        """``dataset-category-method-params-hash``, the run's folder; ``data_root`` (where, not what) is not hashed."""
        identity = {"runner": self.runner, "notebook": Path(self.notebook).name, "dataset": self.dataset,
                    "category": self.category, "method": self.method, "params": dict(self.params)}
        digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
        words = [self.dataset, self.category, self.method or Path(self.notebook).stem]
        words += [f"{name}{value}" for name, value in self.params]
        return "-".join(re.sub(r"[^A-Za-z0-9_.=]+", "_", str(word)) for word in words)[:90] + f"-{digest}"

    def to_dict(self) -> dict:
        """The content of a run's ``run.json``."""
        return {"run_id": self.run_id, **dataclasses.asdict(self), "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: dict) -> "RunSpec":
        """The run of a ``run.json``."""
        return cls(data["dataset"], data["category"], data.get("method", ""),
                   tuple(sorted(data.get("params", {}).items())), data.get("data_root", ""),
                   data.get("runner", "evaluate"), data.get("notebook", ""))


def parse_value(text: str):
    """A ``--param`` value: ``"3"`` -> 3, ``"0.01"`` -> 0.01, ``"true"`` -> True, ``"none"`` -> None, else text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false", "none", "null"):
        return {"true": True, "false": False}.get(lowered)
    for convert in (int, float):
        with contextlib.suppress(ValueError):
            return convert(text)
    return text.strip()


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _datasets_of(grid: dict) -> dict:
    datasets = grid.get("datasets") or {}  # a mapping, a list or one name
    return {name: dict(options or {}) for name, options in
            (datasets if isinstance(datasets, dict) else dict.fromkeys(_as_list(datasets))).items()}


def load_grid(path: Path | str) -> dict:
    """Read a grid file, YAML or JSON (``iadtutor reproduce --grid``; notebook 08's ``grid.json``)."""
    import yaml

    try:
        grid = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"Could not read the grid file {path}: {error}") from error
    if not isinstance(grid, dict):
        raise ValueError(f"{path}: expected a mapping with keys such as datasets, methods, params.")
    return grid


def expand_grid(grid: dict) -> list[RunSpec]:
    """All runs of a grid, in a stable order, without duplicates (``iadtutor reproduce``, notebook 08)."""
    notebook = str(grid.get("notebook") or "")
    runner = grid.get("runner", "notebook" if notebook else "evaluate")
    methods = [m for m in _as_list(grid.get("methods") or []) if m]
    if runner not in ("evaluate", "notebook"):
        raise ValueError(f"runner must be 'evaluate' or 'notebook', got {runner!r}.")
    if runner == "notebook" and not notebook:
        raise ValueError("runner 'notebook' needs a notebook path (grid key 'notebook' or --notebook).")
    if not grid.get("datasets"):
        raise ValueError("The grid names no dataset (grid key 'datasets' or --dataset).")
    if not methods and runner == "evaluate":
        raise ValueError("The grid names no method (grid key 'methods' or --methods).")
    params = {name: _as_list(values) for name, values in (grid.get("params") or {}).items()}
    readers, specs = grid.get("method_params", METHOD_PARAMS), {}
    for dataset, options in _datasets_of(grid).items():
        data_root = str(options.get("data_root") or Path("data") / dataset)
        categories = options.get("categories", grid.get("categories", "all"))
        if isinstance(categories, str) and categories != "all":
            categories = [c.strip() for c in categories.split(",") if c.strip()]
        elif categories not in (None, "all", ["all"]):
            categories = list(categories)
        elif dataset in DATASET_CATEGORIES:
            categories = list(DATASET_CATEGORIES[dataset])
        elif Path(data_root).is_dir():
            categories = sorted(p.name for p in Path(data_root).iterdir() if p.is_dir() and not p.name.startswith("."))
        else:
            raise ValueError(f"Cannot list the categories of {dataset!r}: {data_root} is not a folder; name them.")
        for category, method in itertools.product(categories, methods or [""]):
            relevant = {name: values for name, values in params.items()
                        if not method or name not in readers or method in readers[name]}
            for values in itertools.product(*relevant.values()):
                spec = RunSpec(dataset, category, method, tuple(sorted(zip(relevant, values))), data_root,
                               runner, notebook)
                specs.setdefault(spec.run_id, spec)
    return list(specs.values())


# --------------------------------------------------------------------------------------- executing runs
def one_line_error(stderr: str, returncode: int | None = None) -> str:
    """The line of a failed run's stderr that says what went wrong, at most 300 characters (``error.json``)."""
    lines = [re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line).strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line and not set(line) <= set("-=^~ ")]
    for line in reversed(lines):
        if re.search(r"^[\w.]*(Error|Exception|Interrupt)\b|^error\b|\berror: ", line, flags=re.IGNORECASE):
            return line[:300]
    return lines[-1][:300] if lines else f"exited with status {returncode} and printed no error"


def command_for(spec: RunSpec, run_dir: Path, evaluate_command, base_dir: Path | None = None
                ) -> tuple[list[str], dict]:
    """The subprocess command of a run and its extra environment; relative paths from ``base_dir`` (default: here)."""
    base_dir = Path(base_dir or Path.cwd())
    data_root = str((base_dir / spec.data_root).resolve())
    if spec.runner == "evaluate":
        command = [*evaluate_command, "--data-root", data_root, "--category", spec.category, "--method", spec.method]
        for name, value in spec.params:
            flag = "--" + name.replace("_", "-")
            if value is True:
                command.append(flag)
            elif value is not False and value is not None:  # 0 is a real value (0 == False)
                command += [flag, str(value)]
        return command, {}
    notebook = (base_dir / spec.notebook).resolve()
    result_path = str((run_dir / "recorded.json").resolve())  # the kernel runs in the notebook's folder
    parameters = {"dataset": spec.dataset, "data_root": data_root, "category": spec.category,
                  **({"method": spec.method} if spec.method else {}), **dict(spec.params), "result_path": result_path}
    command = [sys.executable, "-m", "papermill", str(notebook), str(run_dir / "notebook.ipynb"), "-k", "python3",
               "--cwd", str(notebook.parent), "-y", json.dumps(parameters), "--no-progress-bar"]
    return command, {RESULT_PATH_ENV: result_path}


def start_run(spec: RunSpec, out_dir: Path | str) -> Path:
    """The run's folder, emptied of an old result or error, with its ``run.json`` (every runner, notebook 08's too)."""
    run_dir = Path(out_dir) / "runs" / spec.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("result.json", "error.json", "recorded.json"):
        (run_dir / stale).unlink(missing_ok=True)
    write_json_atomic(run_dir / "run.json", spec.to_dict())
    return run_dir


def finish_run(run_dir: Path, record: dict, seconds: float, metrics: dict | None = None, error: str | None = None,
               returncode: int | None = None) -> dict:
    """Write ``result.json`` (``metrics``) or, given an ``error``, ``error.json``; return it (every runner)."""
    record = {**record, "seconds": round(seconds, 3)}
    if error is None:
        record.update(status="ok", metrics=metrics)
    else:
        record.update(status="failed", error=error[:300], returncode=returncode)
    write_json_atomic(run_dir / ("result.json" if error is None else "error.json"), record)
    return record


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the run and its children (a notebook's kernel)
        os.killpg(process.pid, signal.SIGKILL)


def _run_metrics(spec: RunSpec, run_dir: Path, stdout: str) -> dict:
    """What a finished run measured: the notebook's ``recorded.json``, or evaluate's last line of stdout."""
    if spec.runner == "notebook":
        if not isinstance(recorded := read_json(run_dir / "recorded.json"), dict):
            raise ValueError("the notebook ran but recorded no result; end it with "
                             "iadtutor.tools.runs.record_result(metrics, result_path)")
        return recorded
    last = next((line for line in reversed(stdout.splitlines()) if line.strip()), "")
    with contextlib.suppress(ValueError):
        if isinstance(metrics := json.loads(last), dict):
            return metrics
    raise ValueError(f"the last line of standard output is not one JSON object: {last[:120]!r}")


def execute_run(spec: RunSpec, out_dir: Path | str, *, evaluate_command=DEFAULT_EVALUATE_COMMAND,
                timeout: float | None = None, threads: int | None = None, running: set | None = None,
                base_dir: Path | str | None = None, die_with_parent: bool = False) -> dict:
    """Run one point as a subprocess (``threads`` OMP/MKL threads, in the set ``running`` meanwhile; killed with this
    process if ``die_with_parent``, Linux) and write its record."""
    run_dir = start_run(spec, out_dir)
    command, extra_env = command_for(spec, run_dir, list(evaluate_command), base_dir)
    threads_env = dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS"), str(threads)) if threads else {}
    record, start = {**spec.to_dict(), "command": shlex.join(command)}, time.perf_counter()
    preexec = (functools.partial(ctypes.CDLL(None).prctl, 1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
               if die_with_parent and sys.platform.startswith("linux") else None)
    try:  # --jobs N: N runs must not each use every core
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**threads_env, **os.environ, **extra_env}, start_new_session=True,
                                   preexec_fn=preexec)
    except OSError as error:
        return finish_run(run_dir, record, 0.0, error=f"could not start {command[0]}: {error}")
    running = set() if running is None else running
    running.add(process)
    error, returncode, metrics = None, None, None
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        returncode = process.returncode
    except subprocess.TimeoutExpired:
        _kill_group(process)
        stdout, stderr = process.communicate()
        error = f"timed out after {timeout:g} s"
    finally:
        running.discard(process)
        if process.poll() is None:  # interrupted while waiting
            _kill_group(process)
    (run_dir / "stdout.txt").write_text(stdout, encoding="utf-8")
    (run_dir / "stderr.txt").write_text(stderr, encoding="utf-8")
    if error is None and returncode != 0:
        error = one_line_error(stderr, returncode)
    elif error is None:
        try:
            metrics = _run_metrics(spec, run_dir, stdout)
        except ValueError as failure:
            error = str(failure)
    return finish_run(run_dir, record, time.perf_counter() - start, metrics, error, returncode)


def run_sweep(specs: list[RunSpec], out_dir: Path | str, *, jobs: int = 1, evaluate_command=DEFAULT_EVALUATE_COMMAND,
              timeout: float | None = None, rerun: bool = False, echo=print, scheduler: str | None = None,
              execute=None) -> list[dict]:
    """Run every run without a ``result.json`` (all with ``rerun``): ``jobs`` subprocesses at a time, on the Dask
    cluster ``scheduler`` or through ``execute(todo, out_dir, report)`` (notebook 08); one record per run, ``status``
    ok / failed / skipped. Ctrl-C kills the running subprocesses; finished runs keep their results."""
    out_dir = Path(out_dir)
    write_json_atomic(out_dir / "sweep.json", {"runs": [spec.to_dict() for spec in specs]})
    done = {spec.run_id: None if rerun else read_json(out_dir / "runs" / spec.run_id / "result.json") for spec in specs}
    records = [{**done[spec.run_id], "status": "skipped"} for spec in specs if done[spec.run_id]]
    todo, skipped = [spec for spec in specs if not done[spec.run_id]], len(records)
    if skipped:
        echo(f"{skipped} of {len(specs)} runs finished before; skipping them.")

    def report(record: dict) -> None:
        records.append(record)
        auroc = record["metrics"].get("image_auroc") if record["status"] == "ok" else None
        detail = f"image AUROC {auroc:.3f}" if isinstance(auroc, (int, float)) else record.get("error", "done")
        echo(f"[{len(records) - skipped}/{len(todo)}] {record['status']:<6} {record['run_id']}: {detail} "
             f"({record['seconds']:.1f} s)")

    if execute is not None:
        execute(todo, out_dir, report)
        return records
    running, futures = set(), {}
    with contextlib.ExitStack() as stack:  # on leaving: the pool waits for its runs, then the Dask client closes
        if scheduler:
            client = stack.enter_context(dask_client(scheduler))
            echo(f"Dask cluster {client.scheduler.address}: {len(client.scheduler_info()['workers'])} workers.")
            pool = stack.enter_context(client.get_executor(pure=False))
            # The default command names this interpreter; on a worker, its own one is used instead.
            command = None if tuple(evaluate_command) == DEFAULT_EVALUATE_COMMAND else list(evaluate_command)
            task = functools.partial(execute_on_worker, out_dir=str(out_dir.resolve()), evaluate_command=command,
                                     timeout=timeout, base_dir=str(Path.cwd()))
        else:
            pool = stack.enter_context(concurrent.futures.ThreadPoolExecutor(max_workers=max(1, int(jobs))))
            task = functools.partial(execute_run, out_dir=out_dir, evaluate_command=evaluate_command, timeout=timeout,
                                     threads=max(1, (os.cpu_count() or 1) // max(1, int(jobs))), running=running)
        try:
            futures.update({pool.submit(task, spec): (spec, 1, time.perf_counter()) for spec in todo})
            while futures:
                finished, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    spec, attempt, started = futures.pop(future)
                    try:
                        report(future.result())
                        continue
                    except Exception as error:  # a Dask worker died (KilledWorker); here a bug or a full disk
                        reason = f"{type(error).__name__}: {error}"
                    if scheduler and attempt == 1:
                        echo(f"retrying {spec.run_id}: {reason}")
                        futures[pool.submit(task, spec)] = (spec, 2, time.perf_counter())
                    else:
                        report(finish_run(out_dir / "runs" / spec.run_id, spec.to_dict(), time.perf_counter() - started,
                                          error=f"failed twice on the Dask cluster: {reason}" if scheduler else reason))
        except BaseException:
            for future in futures:
                future.cancel()
            for process in list(running):
                _kill_group(process)
            raise
    return records


@contextlib.contextmanager
def dask_client(scheduler: str):
    """The Dask client of ``--scheduler`` (README "Sweeps on a Dask cluster"), closed on leaving: an address, or
    ``local:N`` workers on 127.0.0.1 that give up a task whose worker died (the retry is :func:`run_sweep`'s)."""
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError as error:
        raise ValueError("--scheduler needs Dask: pip install 'dask[distributed]'.") from error
    cluster, workers = None, scheduler.removeprefix("local:")
    if scheduler.startswith("local:"):
        if not workers.isdigit() or int(workers) < 1:
            raise ValueError(f"--scheduler local:N needs a positive number of workers N; got {scheduler!r}.")
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None)
    try:
        client = Client(scheduler if cluster is None else cluster, timeout=30)
    except (OSError, TimeoutError) as error:
        raise ValueError(f"--scheduler {scheduler}: could not reach a Dask scheduler there ({error}).") from error
    with contextlib.nullcontext() if cluster is None else cluster, client:  # the client closes first, then the cluster
        yield client


def execute_on_worker(spec: RunSpec, out_dir: str, evaluate_command, timeout, base_dir: str) -> dict:
    """The Dask task of a run (``iadtutor reproduce --scheduler``): :func:`execute_run` with the worker's cores."""
    from dask.distributed import get_worker

    threads = max(1, (os.cpu_count() or 1) // max(1, get_worker().state.nthreads))
    return execute_run(spec, out_dir, evaluate_command=evaluate_command or DEFAULT_EVALUATE_COMMAND, timeout=timeout,
                       threads=threads, base_dir=base_dir, die_with_parent=True)


# -------------------------------------------------------------------------------- collecting, comparing
def collect_results(out_dir: Path | str, run_ids: list[str] | None = None) -> pd.DataFrame:
    """``results.csv`` (notebook 08 too): a row per run folder (of ``run_ids``): status ok / failed / not run,
    ``param_NAME``, metrics (``*_ci`` as ``_low``, ``_high``), error, ``config``: ``method (varying params)``."""
    runs_dir, rows = Path(out_dir) / "runs", []
    if run_ids is None:
        run_ids = sorted(p.name for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    for run_id in run_ids:
        if (spec_data := read_json(runs_dir / run_id / "run.json")) is None:
            continue
        spec = RunSpec.from_dict(spec_data)
        row = {"run_id": run_id, "status": "not run", "dataset": spec.dataset, "category": spec.category,
               "group": group_of(spec.dataset, spec.category), "method": spec.method, "runner": spec.runner,
               **{f"param_{name}": value for name, value in spec.params}}
        if (result := read_json(runs_dir / run_id / "result.json")) is not None:
            row.update(status="ok", seconds=result.get("seconds"))
            for name, value in result.get("metrics", {}).items():
                if name == "method":
                    row["method"] = row["method"] or value
                elif name.endswith("_ci") and isinstance(value, (list, tuple)) and len(value) == 2:
                    row[f"{name}_low"], row[f"{name}_high"] = value
                elif name not in ("dataset", "category") and (value is None or isinstance(value, (int, float, str))):
                    row[name] = value
        elif (failure := read_json(runs_dir / run_id / "error.json")) is not None:
            row.update(status="failed", error=failure.get("error", ""), seconds=failure.get("seconds"))
        rows.append(row)
    if (table := pd.DataFrame(rows)).empty:
        return table
    params = sorted(c for c in table.columns if c.startswith("param_"))
    for column in params:
        values = [row[column] for row in rows if row.get(column) is not None]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            table[column] = table[column].astype("Int64")  # keep window=3 from becoming 3.0 next to blanks
    varying = [c for c in table.columns if c.startswith("param_") and table[c].dropna().astype(str).nunique() > 1]

    def config(row) -> str:
        parts = ", ".join(f"{c.removeprefix('param_')}={row[c]}" for c in varying if pd.notna(row[c]))
        return (row["method"] or "notebook") + (f" ({parts})" if parts else "")

    table["config"] = table.apply(config, axis=1)
    first = ["run_id", "status", "dataset", "category", "group", "method", "config"]
    last = [c for c in ("error", "seconds") if c in table.columns]
    table = table[first + params + [c for c in table.columns if c not in first + params + last] + last]
    return table.sort_values(["dataset", "category", "config"], kind="stable").reset_index(drop=True)


def group_averages(results: pd.DataFrame) -> pd.DataFrame:
    """Metrics per (dataset, config, papers' group or ``mean``), ``n_categories`` of ``n_expected`` finished."""
    if results.empty or "status" not in results:
        return pd.DataFrame()
    rows = []
    for (dataset, config), part in results[results["status"] == "ok"].groupby(["dataset", "config"], sort=True):
        everything = DATASET_CATEGORIES.get(dataset) or tuple(results.loc[results.dataset == dataset, "category"])
        for group, members in {**CATEGORY_GROUPS.get(dataset, {}), "mean": tuple(dict.fromkeys(everything))}.items():
            if (sub := part[part["category"].isin(members)]).empty:
                continue
            row = {"dataset": dataset, "category": group, "level": level_of(dataset, group),
                   "method": sub["method"].iloc[0], "config": config, "n_categories": len(sub),
                   "n_expected": len(members)}
            if "backbone" in sub:
                row["backbone"] = ", ".join(sorted(set(sub["backbone"].dropna().astype(str))))
            row.update({metric: float(sub[metric].dropna().astype(float).mean()) for metric in METRICS + KIND_METRICS
                        if metric in sub and sub[metric].notna().any()})
            if all(pd.notna(row.get(metric)) for metric in KIND_METRICS):
                row["image_auroc_mean_of_kinds"] = (row[KIND_METRICS[0]] + row[KIND_METRICS[1]]) / 2
            rows.append(row)
    return pd.DataFrame(rows)


COMPARISON_COLUMNS = ["dataset", "category", "level", "method", "config", "backbone", "metric", "ours", "ci_low",
                      "ci_high", "paper", "difference", "paper_in_ci", "source", "table", "paper_backbone",
                      "paper_variant", "paper_std", "coverage", "paper_note"]


def compare_with_papers(results: pd.DataFrame, groups: pd.DataFrame | None = None,
                        papers: pd.DataFrame | None = None) -> pd.DataFrame:
    """``comparison.csv`` (and ``book/real_runs/make_tables.py``): ours beside the papers' numbers in %;
    ``paper_in_ci``: the paper's number lies in our bootstrap 95 % interval (None: no interval)."""
    papers = paper_results() if papers is None else papers
    groups = group_averages(results) if groups is None else groups
    finished = results[results["status"] == "ok"] if not results.empty else results
    ours, keys = [], ("dataset", "category", "method", "config", "backbone")
    for level, table in (("category", finished), ("group", groups)):
        for _, row in table.iterrows():
            for metric in METRICS + KIND_METRICS + (("image_auroc_mean_of_kinds",) if level == "group" else ()):
                if metric not in row or pd.isna(row[metric]):
                    continue
                low, high = (100 * float(v) if pd.notna(v) else float("nan")
                             for v in (row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")))
                coverage = f"{row['n_categories']}/{row['n_expected']}" if level == "group" else ""
                ours.append({**{key: row.get(key) for key in keys}, "level": row.get("level", level), "metric": metric,
                             "ours": 100 * float(row[metric]), "ci_low": low, "ci_high": high, "coverage": coverage})
    if not ours:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    theirs = papers.drop(columns=["level"]).rename(columns={
        "value": "paper", "backbone": "paper_backbone", "variant": "paper_variant", "std": "paper_std",
        "note": "paper_note"})
    merged = pd.DataFrame(ours).merge(theirs, on=["dataset", "category", "method", "metric"], how="inner")
    inside = (merged["ci_low"] <= merged["paper"]) & (merged["paper"] <= merged["ci_high"])
    has_ci = merged["ci_low"].notna() & merged["ci_high"].notna()
    merged = merged.assign(difference=merged["ours"] - merged["paper"],
                           order=merged["level"].map({"category": 0, "group": 1, "dataset": 2}),
                           paper_in_ci=pd.Series([bool(i) if h else None for i, h in zip(inside, has_ci)],
                                                 index=merged.index, dtype=object))
    merged = merged.sort_values(["dataset", "order", "category", "config", "metric", "source", "table",
                                 "paper_backbone", "paper_variant"], kind="stable")
    return merged[COMPARISON_COLUMNS].reset_index(drop=True)


# ------------------------------------------------------------------------------------------- the summary
def _percent(value, scale: float = 1.0, sign: str = "") -> str:
    """A table cell such as ``87.5`` (``scale=100`` for fractions, ``sign="+"`` for differences); blank if missing."""
    return f"{scale * float(value):{sign}.1f}" if pd.notna(value) else ""


def _markdown_table(table: pd.DataFrame) -> str:
    """A pipe table for ``summary.md``, cells as they are (pandas' ``to_markdown`` would pad them)."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(map(cell, table.columns)) + " |", "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n" if len(table) else "(nothing)\n"


def _category_view(part: pd.DataFrame) -> pd.DataFrame:
    """One dataset's summary table: categories (in the papers' order) x configs, image AUROC % [95 % CI] or failed."""
    def cell(row) -> str:
        if row["status"] != "ok":
            return "failed" if row["status"] == "failed" else ""
        low, high = row.get("image_auroc_ci_low"), row.get("image_auroc_ci_high")
        interval = f" [{_percent(low, 100)}, {_percent(high, 100)}]" if pd.notna(low) and pd.notna(high) else ""
        return _percent(row.get("image_auroc"), 100) + interval
    dataset = part["dataset"].iloc[0]
    groups = {g: i for i, g in enumerate(CATEGORY_GROUPS.get(dataset, {}))}
    categories = {c: i for i, c in enumerate(DATASET_CATEGORIES.get(dataset, ()))}
    view = part.assign(cell=part.apply(cell, axis=1)).pivot_table(
        index="category", columns="config", values="cell", aggfunc="first", fill_value="")
    view = view.loc[sorted(view.index, key=lambda c: (groups.get(group_of(dataset, c), len(groups)),
                                                      categories.get(c, len(categories)), c))]
    view = view.reset_index().rename_axis(columns=None)
    view.insert(0, "group", [group_of(dataset, c) for c in view["category"]])
    return view


def _groups_view(groups: pd.DataFrame) -> pd.DataFrame:
    """The summary table of :func:`group_averages`, in percent."""
    view = pd.DataFrame({"group": groups["category"], "config": groups["config"]})
    for metric in METRICS + KIND_METRICS + ("image_auroc_mean_of_kinds",):
        if metric in groups and groups[metric].notna().any():
            view[METRIC_TITLES[metric]] = groups[metric].map(lambda v: _percent(v, 100))
    view["categories"] = groups["n_categories"].astype(str) + "/" + groups["n_expected"].astype(str)
    return view


def _comparison_view(comparison: pd.DataFrame) -> pd.DataFrame:
    """The summary table of :func:`compare_with_papers`, in percent."""
    setting = comparison.fillna("").apply(lambda row: ", ".join(part for part in (
        f"{row['source']} {row['table']}", row["paper_backbone"], row["paper_variant"]) if part), axis=1)
    return pd.DataFrame({
        "category": comparison["category"] + comparison["coverage"].map(lambda c: f" ({c})" if c else ""),
        "ours": comparison["config"], "our backbone": comparison["backbone"].fillna(""),
        "metric": comparison["metric"].map(METRIC_TITLES), "ours %": comparison["ours"].map(_percent),
        "95 % CI": [f"[{_percent(low)}, {_percent(high)}]" if pd.notna(low) else ""
                    for low, high in zip(comparison["ci_low"], comparison["ci_high"])],
        "paper %": comparison["paper"].map(_percent),
        "ours − paper": comparison["difference"].map(lambda v: _percent(v, sign="+")),
        "paper in CI": comparison["paper_in_ci"].map(lambda v: {True: "yes", False: "no"}.get(v, "")),
        "paper's setting": setting})


def summary_sections(results: pd.DataFrame, groups: pd.DataFrame, comparison: pd.DataFrame) -> list:
    """The summary of ``iadtutor reproduce`` as (heading level, title, text or table) triples."""
    counts = results["status"].value_counts() if not results.empty else pd.Series(dtype=int)
    intro = (f"{len(results)} runs: {counts.get('ok', 0)} finished, {counts.get('failed', 0)} failed, "
             f"{counts.get('not run', 0)} not run. Values are percentages. [low, high] is the bootstrap 95 % "
             "interval of our number where `iadtutor evaluate` reported one (image and pixel AUROC); a paper's "
             "number inside it is within the noise of the test set. Group rows show how many of the group's "
             "categories finished.")
    sections: list = [(1, "Reproduction summary", intro)]
    datasets = sorted(set(results["dataset"]) if not results.empty else set(),
                      key=lambda d: (list(DATASET_TITLES).index(d) if d in DATASET_TITLES else 99, d))
    for dataset in datasets:
        sections += [(2, DATASET_TITLES.get(dataset, dataset), None),
                     (3, "Image AUROC per category", _category_view(results[results["dataset"] == dataset]))]
        if not groups.empty and (groups["dataset"] == dataset).any():
            sections.append((3, "Averages in the papers' groupings", _groups_view(groups[groups.dataset == dataset])))
        if not comparison.empty and (comparison["dataset"] == dataset).any():
            sections.append((3, "Beside the papers", _comparison_view(comparison[comparison["dataset"] == dataset])))
    failed = results[results["status"] == "failed"] if not results.empty else results
    if not failed.empty:
        sections.append((2, "Failed runs", failed[["run_id", "dataset", "category", "config", "error"]]))
    if not comparison.empty:
        methods = ", ".join(METHOD_TITLES.get(m, m) for m in sorted(set(comparison["method"])))
        sections.append((2, "Notes", f"Methods compared: {methods}. The papers' numbers and how they were "
                                     "transcribed: `iadtutor.tools.papers`."))
    return sections


HTML_HEAD = ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Reproduction summary</title>\n<style>"
             "body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;margin-bottom:1.5em}"
             "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}td:first-child,th:first-child"
             "{text-align:left}</style></head><body>")


def write_summary(out_dir: Path | str, results: pd.DataFrame, papers: pd.DataFrame | None = None) -> dict:
    """Write ``results.csv``, ``comparison.csv``, ``summary.md`` and ``summary.html`` atomically; their paths."""
    out_dir, groups = Path(out_dir), group_averages(results)
    comparison = compare_with_papers(results, groups, papers) if not results.empty else pd.DataFrame()
    markdown, page = [], [HTML_HEAD]
    for level, title, body in summary_sections(results, groups, comparison):
        markdown.append("#" * level + " " + title + "\n")
        page.append(f"<h{level}>{html.escape(title)}</h{level}>")
        if isinstance(body, pd.DataFrame):
            markdown.append(_markdown_table(body))
            page.append(body.to_html(index=False, na_rep="", escape=True, border=0))
        elif body:
            markdown.append(body + "\n")
            page.append(f"<p>{html.escape(body)}</p>")
    write = files.write_text_atomic
    return {"results": write(out_dir / "results.csv", results.to_csv(index=False)),
            "comparison": write(out_dir / "comparison.csv", comparison.to_csv(index=False)),
            "summary_md": write(out_dir / "summary.md", "\n".join(markdown)),
            "summary_html": write(out_dir / "summary.html", "\n".join(page + ["</body></html>"]) + "\n")}


# ------------------------------------------------------------------------------------------ command line
def add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``iadtutor reproduce`` (README "Reproduction runs")."""
    add = parser.add_argument
    add("--grid", type=Path, help="YAML or JSON grid file (see iadtutor.tools.runs)")
    add("--preset", choices=sorted(PRESETS), help="a stored grid for one of the papers' tables")
    add("--dataset", help="dataset name(s), comma-separated (replaces the grid's datasets)")
    add("--data-root", action="append", default=[], metavar="[NAME=]DIR",
        help="data root of the dataset (default: data/NAME); repeat as NAME=DIR for several")
    add("--categories", help="comma-separated categories, or 'all' (default: all)")
    add("--methods", help="comma-separated methods")
    add("--param", action="append", default=[], metavar="NAME=V1,V2",
        help="a parameter and its values; repeat for several (e.g. --param window=3,7)")
    add("--notebook", type=Path, help="run this notebook with papermill instead of evaluate")
    add("--out", type=Path, default=Path("runs") / "reproduce", help="output folder")
    add("--jobs", type=int, default=1, help="runs at the same time (default 1)")
    add("--scheduler", metavar="ADDRESS", help="run on a Dask cluster: its scheduler address (tcp://host:8786), "
                                               "or local:N for N workers on this machine (instead of --jobs)")
    add("--timeout", type=float, help="seconds after which a run is stopped and counted failed")
    add("--rerun", action="store_true", help="run again even the runs that finished before")
    add("--evaluate-cmd", help="command to use instead of 'iadtutor evaluate' (quoted)")
    add("--collect-only", action="store_true", help="only rebuild results.csv and the summary from OUT/runs")
    add("--dry-run", action="store_true", help="list the runs without running them")


def grid_from_args(args: argparse.Namespace) -> dict:
    """The grid of ``iadtutor reproduce``: a preset and / or grid file, changed by the flags."""
    grid: dict = json.loads(json.dumps(PRESETS[args.preset])) if args.preset else {}
    grid.update(load_grid(args.grid) if args.grid else {})
    if args.dataset:
        grid["datasets"] = [name.strip() for name in args.dataset.split(",") if name.strip()]
    grid["datasets"] = _datasets_of(grid)
    for item in args.data_root:
        name, _, folder = item.rpartition("=")
        if not name and len(grid["datasets"]) != 1:
            raise ValueError(f"--data-root {item}: with several datasets write NAME=DIR.")
        for target in [name] if name else list(grid["datasets"]):
            if target not in grid["datasets"]:
                raise ValueError(f"--data-root {item}: {target!r} is not a dataset of this grid.")
            grid["datasets"][target]["data_root"] = folder
    if args.categories:
        for options in grid["datasets"].values():
            options["categories"] = args.categories
    if args.methods:
        grid["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    grid["params"] = dict(grid.get("params") or {})
    for item in args.param:
        name, separator, values = item.partition("=")
        if not separator or not name.strip():
            raise ValueError(f"--param {item!r}: expected NAME=VALUE[,VALUE...].")
        grid["params"][name.strip()] = [parse_value(v) for v in values.split(",")]
    if args.notebook:
        grid.update(runner="notebook", notebook=str(args.notebook))
    return grid


def with_available_backbone(grid: dict, echo=print) -> dict:
    """A preset's paper backbone (ResNet18, WRN50) when its verified ImageNet weights are in the torch hub
    cache; otherwise EfficientNet-Lite0, said in one line, so that a preset neither fails every run nor
    switches silently. A neck length a preset sets for the paper's backbone is dropped with it."""
    from iadtutor.backbones import hub_checkpoint_dir, weights_cached

    params = grid.get("params") or {}
    wanted = params.get("backbone")
    if wanted not in ("resnet18", "wide_resnet50_2"):
        return grid
    if weights_cached(wanted):
        echo(f"backbone {wanted}: verified ImageNet weights found in {hub_checkpoint_dir()} (the paper's backbone).")
        return grid
    echo(f"backbone {wanted}: its ImageNet weights are not in {hub_checkpoint_dir()}; these runs use "
         "efficientnet_lite0 instead, so their numbers are not the paper's backbone's (put the torchvision "
         "checkpoint there to run the paper's).")
    params = {name: value for name, value in params.items() if name != "dimension"}
    return {**grid, "params": {**params, "backbone": "efficientnet_lite0"}}


def reproduce_command(args: argparse.Namespace) -> int:
    """``iadtutor reproduce``: run the grid, then write results.csv and the summary. Exit 1 if a run failed."""
    out_dir = Path(args.out)
    try:
        if args.collect_only:
            sweep = read_json(out_dir / "sweep.json")
            run_ids = [run["run_id"] for run in sweep["runs"]] if sweep else None
        else:
            grid = grid_from_args(args)
            specs = expand_grid(with_available_backbone(grid) if args.preset else grid)
            if args.dry_run:
                print("\n".join([spec.run_id for spec in specs] + [f"{len(specs)} runs."]))
                return 0
            where = f"on the Dask cluster {args.scheduler}" if args.scheduler else f"{args.jobs} at a time"
            print(f"{len(specs)} runs into {out_dir} ({where}).")
            command = shlex.split(args.evaluate_cmd) if args.evaluate_cmd else DEFAULT_EVALUATE_COMMAND
            run_sweep(specs, out_dir, jobs=args.jobs, evaluate_command=command, timeout=args.timeout, rerun=args.rerun,
                      scheduler=args.scheduler)
            run_ids = [spec.run_id for spec in specs]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    results = collect_results(out_dir, run_ids)
    paths = write_summary(out_dir, results)
    failed = int((results["status"] != "ok").sum()) if not results.empty else 0
    print(f"Results: {paths['results']}  Summary: {paths['summary_md']} and {paths['summary_html']}"
          + (f"  ({failed} runs did not finish)" if failed else ""))
    return 1 if failed else 0
