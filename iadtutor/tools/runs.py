"""Reproduction sweeps: run ``iadtutor evaluate`` (or a notebook) over a grid and put the results in one table.

A sweep is a grid of datasets x categories x methods x parameters. Every point of the grid is one *run* with a
stable id derived from what it runs (``toy-weave-lwinnn-window3-1f2e3d4c``), executed in its own subprocess
(``--jobs N`` of them at once) and kept in its own folder::

    OUT/runs/RUN_ID/run.json        what the run is: dataset, category, method, params, data_root, runner
                    result.json     its metrics; present only once the run finished (written atomically)
                    error.json      why it failed, in one line (a failed run does not stop the sweep)
                    stdout.txt, stderr.txt
                    notebook.ipynb  the executed notebook (runner "notebook")
    OUT/sweep.json                  the runs of the last sweep
    OUT/results.csv                 one row per run: parameters, metrics, status, error
    OUT/comparison.csv              our numbers beside the papers' (iadtutor.tools.papers), with the difference
    OUT/summary.md, summary.html    per-dataset tables, averages in the papers' groupings, the comparison

Running the same sweep again skips the runs that have a ``result.json`` and retries the failed ones.

``--scheduler ADDRESS`` sends the runs to an existing Dask distributed cluster instead of the local process
pool (``--scheduler local:N`` starts a LocalCluster of N one-thread workers on this machine). Each run still
executes ``iadtutor evaluate`` (or papermill) in a subprocess, now on a worker, and writes the same folder;
the workers must see the same file system paths as this process and have iadtutor installed. A run whose
worker dies is submitted once more; if that fails too it is recorded as failed with the reason.

The grid comes from a YAML/JSON file, a preset, and/or flags::

    iadtutor reproduce --dataset toy --data-root data/toy --categories weave,bracket \\
        --methods spade,lwinnn --param window=3,7 --param backbone=efficientnet_lite0 --out runs/toy --jobs 2

    # grid.yaml
    runner: evaluate              # or: notebook (then also  notebook: notebooks/05_lwinnn.ipynb)
    datasets:
      toy: {data_root: data/toy, categories: [weave, bracket]}
      mvtec_ad: {data_root: data/mvtec_ad, categories: all}
    methods: [spade, lwinnn]
    params: {window: [3, 7], backbone: resnet18}

``--preset NAME`` starts from one of :data:`PRESETS` (grids for the papers' tables: ``lwinnn-table2``,
``reb-table3``, ...); flags then change it.

A parameter is passed as ``--NAME VALUE`` to ``iadtutor evaluate`` (underscores become dashes). Parameters
that only some methods read (``window``: lwinnn; ``k``, ``alpha``: ldknn; ``coreset``: patchcore, ldknn; see
:data:`METHOD_PARAMS`, overridable with ``method_params:`` in the grid file) are dropped for the other
methods, so ``--methods spade,lwinnn --param window=3,7`` makes three runs, not four.

**Notebook result convention.** With ``runner: notebook`` every run executes the notebook with papermill
(``-k python3``), injecting ``dataset``, ``data_root``, ``category``, ``method`` (if the grid has methods),
the grid's parameters and ``result_path``. A notebook that wants its numbers collected declares
``result_path = None`` in its ``parameters`` cell and ends with::

    iadtutor.tools.runs.record_result({"image_auroc": ..., "pixel_auroc": ..., "aupro": ...}, result_path)

:func:`record_result` writes the dict as JSON to ``result_path`` (or to the path in the environment variable
``IADTUTOR_RESULT_PATH``, which the sweep also sets) and does nothing when neither is set, so the same cell is
harmless in JupyterLab. Use the metric names of ``iadtutor evaluate``'s JSON (fractions in [0, 1]); a
notebook that finishes without recording a result counts as failed.

Optional keys of a result that the summary understands: ``image_auroc_ci`` ([low, high], bootstrap 95 %),
``image_auroc_structural`` / ``image_auroc_logical`` (MVTec LOCO and the toy ``box``: AUROC on the good test
images plus only that kind of anomaly).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import functools
import hashlib
import html
import itertools
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from iadtutor import files
from iadtutor.files import write_text_atomic  # noqa: F401  (re-exported: reproduce writes its tables with it)
from iadtutor.metrics import METRIC_TITLES, METRICS
from iadtutor.pipeline import METHODS
from iadtutor.tools.papers import (CATEGORY_GROUPS, DATASET_CATEGORIES, DATASET_TITLES, KIND_METRICS, METHOD_TITLES,
                             group_of, level_of, paper_results)

RESULT_PATH_ENV = "IADTUTOR_RESULT_PATH"

# Parameter -> the kNN methods that read it (from iadtutor.pipeline.METHODS). A parameter not listed here
# (backbone, image_size, ...) goes to every method.
METHOD_PARAMS = {name: [method for method, entry in METHODS.items() if name in entry.params]
                 for name in dict.fromkeys(p for entry in METHODS.values() for p in entry.params)}

# Evaluate in a fresh interpreter; works whether or not the console script is on PATH.
DEFAULT_EVALUATE_COMMAND = (sys.executable, "-c", "import sys; from iadtutor.tools.cli import main; sys.exit(main())",
                            "evaluate")

# Grids for the papers' tables. Data roots default to data/DATASET; change them with --data-root.
PRESETS = {
    "toy": {
        "datasets": {"toy": {"categories": "all"}},
        "methods": ["spade", "lwinnn", "patchcore", "ldknn"],
        "params": {"backbone": "efficientnet_lite0", "window": 7, "k": 5},
    },
    "lwinnn-table2": {  # LWinNN table 2: everything with ResNet18, window 7, PatchCore coreset 1 %
        "datasets": {"mvtec_ad": {"categories": "all"}, "visa": {"categories": "all"}},
        "methods": ["spade", "patchcore", "lwinnn"],
        "params": {"backbone": "resnet18", "window": 7, "coreset": 0.01},
    },
    "lwinnn-table4": {
        "datasets": {"visa": {"categories": ["candle", "capsules", "macaroni1", "macaroni2"]}},
        "methods": ["spade", "patchcore", "lwinnn"],
        "params": {"backbone": "resnet18", "window": 7, "coreset": 0.01},
    },
    "reb-table2": {  # REB table 2, ImageNet features (no DefectMaker): PatchCore and LDKNN K=5
        "datasets": {"mvtec_ad": {"categories": "all"}},
        "methods": ["patchcore", "ldknn"],
        "params": {"backbone": "resnet18", "k": 5, "alpha": 1.0},
    },
    "reb-table3": {
        "datasets": {"mvtec_loco": {"categories": "all"}},
        "methods": ["patchcore", "ldknn"],
        "params": {"backbone": "resnet18", "k": 45, "alpha": 1.0},
    },
    "ulsad-appendix": {
        "datasets": {name: {"categories": "all"} for name in ("mvtec_ad", "mvtec_loco", "visa", "btad", "mpdd")},
        "methods": ["patchcore", "ulsad"],
        "params": {"backbone": "wide_resnet50_2"},
    },
}


# ---------------------------------------------------------------------------------------------------------
# Small file helpers
# ---------------------------------------------------------------------------------------------------------

def _to_builtin(value):
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_json_atomic(path: Path | str, data) -> Path:
    return files.write_json_atomic(path, data, default=_to_builtin)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def record_result(metrics: dict, result_path: str | os.PathLike | None = None) -> Path | None:
    """Record a notebook's metrics for ``iadtutor reproduce`` (see the module docstring).

    Writes ``metrics`` (numbers, strings, lists; numpy / torch scalars are converted) as JSON to
    ``result_path``, or to ``$IADTUTOR_RESULT_PATH`` when ``result_path`` is None. Returns the path
    written, or None when neither is set (an interactive session).
    """
    if not isinstance(metrics, dict):
        raise TypeError(f"record_result expects a dict of metrics, got {type(metrics).__name__}.")
    path = result_path or os.environ.get(RESULT_PATH_ENV)
    if not path:
        return None
    return write_json_atomic(path, metrics)


# ---------------------------------------------------------------------------------------------------------
# Runs and grids
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunSpec:
    """One point of the grid. ``params`` is a sorted tuple of (name, value) pairs."""

    dataset: str
    category: str
    method: str
    params: tuple = ()
    data_root: str = ""
    runner: str = "evaluate"
    notebook: str = ""

    def identity(self) -> dict:
        """What the run computes; its hash is the run id. ``data_root`` is where the data is, not what."""
        return {"runner": self.runner, "notebook": Path(self.notebook).name, "dataset": self.dataset,
                "category": self.category, "method": self.method, "params": dict(self.params)}

    @property
    def run_id(self) -> str:
        digest = hashlib.sha1(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]
        words = [self.dataset, self.category, self.method or Path(self.notebook).stem]
        words += [f"{name}{value}" for name, value in self.params]
        slug = "-".join(re.sub(r"[^A-Za-z0-9_.=]+", "_", str(word)) for word in words)[:90]
        return f"{slug}-{digest}"

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "dataset": self.dataset, "category": self.category, "method": self.method,
                "params": dict(self.params), "data_root": self.data_root, "runner": self.runner,
                "notebook": self.notebook}

    @classmethod
    def from_dict(cls, data: dict) -> "RunSpec":
        return cls(data["dataset"], data["category"], data.get("method", ""),
                   tuple(sorted(data.get("params", {}).items())), data.get("data_root", ""),
                   data.get("runner", "evaluate"), data.get("notebook", ""))


def parse_value(text: str):
    """``"3"`` -> 3, ``"0.01"`` -> 0.01, ``"true"`` -> True, ``"none"`` -> None, anything else stays text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text.strip()


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def load_grid(path: Path | str) -> dict:
    """Read a grid file (YAML or JSON; see the module docstring)."""
    import yaml  # comes with papermill

    path = Path(path)
    try:
        grid = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"Could not read the grid file {path}: {error}") from error
    if not isinstance(grid, dict):
        raise ValueError(f"{path}: expected a mapping with keys such as datasets, methods, params.")
    return grid


def _categories_of(dataset: str, wanted, data_root: Path) -> list[str]:
    if wanted in (None, "all", ["all"]):
        if dataset in DATASET_CATEGORIES:
            return list(DATASET_CATEGORIES[dataset])
        if data_root.is_dir():
            return sorted(p.name for p in data_root.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise ValueError(f"Cannot list the categories of {dataset!r}: {data_root} is not a folder; "
                         "name the categories.")
    if isinstance(wanted, str):
        wanted = [item.strip() for item in wanted.split(",") if item.strip()]
    return list(wanted)


def expand_grid(grid: dict) -> list[RunSpec]:
    """All runs of a grid, in a stable order, without duplicates."""
    runner = grid.get("runner", "notebook" if grid.get("notebook") else "evaluate")
    if runner not in ("evaluate", "notebook"):
        raise ValueError(f"runner must be 'evaluate' or 'notebook', got {runner!r}.")
    notebook = str(grid.get("notebook") or "")
    if runner == "notebook" and not notebook:
        raise ValueError("runner 'notebook' needs a notebook path (grid key 'notebook' or --notebook).")
    datasets = grid.get("datasets")
    if not datasets:
        raise ValueError("The grid names no dataset (grid key 'datasets' or --dataset).")
    if not isinstance(datasets, dict):
        datasets = {name: {} for name in _as_list(datasets)}
    methods = [m for m in _as_list(grid.get("methods") or []) if m]
    if not methods:
        if runner == "evaluate":
            raise ValueError("The grid names no method (grid key 'methods' or --methods).")
        methods = [""]
    params = {name: _as_list(values) for name, values in (grid.get("params") or {}).items()}
    method_params = grid.get("method_params", METHOD_PARAMS)
    specs: dict[str, RunSpec] = {}
    for dataset, options in datasets.items():
        options = options or {}
        data_root = str(options.get("data_root") or Path("data") / dataset)
        categories = _categories_of(dataset, options.get("categories", grid.get("categories", "all")),
                                    Path(data_root))
        for category, method in itertools.product(categories, methods):
            relevant = {name: values for name, values in params.items()
                        if not method or name not in method_params or method in method_params[name]}
            for values in itertools.product(*relevant.values()):
                spec = RunSpec(dataset, category, method, tuple(sorted(zip(relevant, values))), data_root,
                               runner, notebook)
                specs.setdefault(spec.run_id, spec)
    return list(specs.values())


# ---------------------------------------------------------------------------------------------------------
# Executing runs
# ---------------------------------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def one_line_error(stderr: str, returncode: int | None = None) -> str:
    """The line of a failed command's standard error that says what went wrong (at most 300 characters)."""
    lines = [_ANSI.sub("", line).strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line and not set(line) <= set("-=^~ ")]
    for line in reversed(lines):
        if re.search(r"^[\w.]*(Error|Exception|Interrupt)\b|^error\b|\berror: ", line, flags=re.IGNORECASE):
            return line[:300]
    if lines:
        return lines[-1][:300]
    return f"exited with status {returncode} and printed no error"


class _Processes:
    """The subprocesses running now, so that an interrupted sweep can stop them all."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running: set[subprocess.Popen] = set()

    def kill_all(self) -> None:
        with self.lock:
            for process in self.running:
                _kill_group(process)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the run and its children (a notebook's kernel)
    except (ProcessLookupError, PermissionError):
        pass


def command_for(spec: RunSpec, run_dir: Path, evaluate_command, base_dir: Path | None = None
                 ) -> tuple[list[str], dict]:
    """The command of one run and its extra environment; relative paths are taken from ``base_dir`` (or cwd)."""
    base_dir = Path(base_dir or Path.cwd())
    data_root = str((base_dir / spec.data_root).resolve())
    extra_env = {}
    if spec.runner == "evaluate":
        command = [*evaluate_command, "--data-root", data_root, "--category", spec.category,
                   "--method", spec.method]
        for name, value in spec.params:
            flag = "--" + name.replace("_", "-")
            if value is True:
                command.append(flag)
            elif value is not False and value is not None:  # 0 is a real value (0 == False)
                command += [flag, str(value)]
        return command, extra_env
    notebook = (base_dir / spec.notebook).resolve()
    result_path = (run_dir / "recorded.json").resolve()  # the kernel runs in the notebook's folder
    parameters = {"dataset": spec.dataset, "data_root": data_root, "category": spec.category,
                  **({"method": spec.method} if spec.method else {}), **dict(spec.params),
                  "result_path": str(result_path)}
    extra_env[RESULT_PATH_ENV] = str(result_path)
    command = [sys.executable, "-m", "papermill", str(notebook), str(run_dir / "notebook.ipynb"), "-k", "python3",
               "--cwd", str(notebook.parent), "-y", json.dumps(parameters), "--no-progress-bar"]
    return command, extra_env


def _metrics_from(spec: RunSpec, run_dir: Path, stdout: str) -> dict:
    if spec.runner == "notebook":
        recorded = read_json(run_dir / "recorded.json")
        if not isinstance(recorded, dict):
            raise ValueError("the notebook ran but recorded no result; end it with "
                             "iadtutor.tools.runs.record_result(metrics, result_path)")
        return recorded
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        metrics = json.loads(lines[-1])
    except (IndexError, ValueError):
        metrics = None
    if not isinstance(metrics, dict):
        last = lines[-1][:120] if lines else ""
        raise ValueError(f"the last line of standard output is not one JSON object: {last!r}")
    return metrics


def execute_run(spec: RunSpec, out_dir: Path | str, *, evaluate_command=DEFAULT_EVALUATE_COMMAND,
                timeout: float | None = None, threads: int | None = None,
                processes: _Processes | None = None, base_dir: Path | str | None = None,
                die_with_parent: bool = False) -> dict:
    """Run one point of the grid in a subprocess; write ``result.json`` or ``error.json``; return that record.

    ``base_dir``: where relative data roots and notebooks are (default: the current folder).
    ``die_with_parent``: the subprocess is killed if this process dies (Linux; used on Dask workers).
    """
    run_dir = Path(out_dir) / "runs" / spec.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("result.json", "error.json", "recorded.json"):
        (run_dir / stale).unlink(missing_ok=True)
    write_json_atomic(run_dir / "run.json", spec.to_dict())
    command, extra_env = command_for(spec, run_dir, list(evaluate_command), base_dir)
    env = {**os.environ, **extra_env}
    if threads:  # --jobs N on a small machine: N runs must not each use every core
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, str(threads))
    record = {**spec.to_dict(), "command": shlex.join(command)}
    start = time.perf_counter()
    try:
        preexec = None
        if die_with_parent and sys.platform.startswith("linux"):  # prctl(PR_SET_PDEATHSIG, SIGKILL) in the child
            preexec = functools.partial(ctypes.CDLL(None).prctl, 1, int(signal.SIGKILL))
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                   start_new_session=True, preexec_fn=preexec)
    except OSError as error:
        return _write_failure(run_dir, record, f"could not start {command[0]}: {error}", None, start)
    if processes:
        with processes.lock:
            processes.running.add(process)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        stdout, stderr = process.communicate()
        (run_dir / "stdout.txt").write_text(stdout, encoding="utf-8")
        (run_dir / "stderr.txt").write_text(stderr, encoding="utf-8")
        return _write_failure(run_dir, record, f"timed out after {timeout:g} s", None, start)
    finally:
        if processes:
            with processes.lock:
                processes.running.discard(process)
        if process.poll() is None:  # interrupted while waiting
            _kill_group(process)
    (run_dir / "stdout.txt").write_text(stdout, encoding="utf-8")
    (run_dir / "stderr.txt").write_text(stderr, encoding="utf-8")
    if process.returncode != 0:
        return _write_failure(run_dir, record, one_line_error(stderr, process.returncode), process.returncode,
                              start)
    try:
        metrics = _metrics_from(spec, run_dir, stdout)
    except ValueError as error:
        return _write_failure(run_dir, record, str(error), process.returncode, start)
    record.update(status="ok", metrics=metrics, seconds=round(time.perf_counter() - start, 3))
    write_json_atomic(run_dir / "result.json", record)
    return record


def _write_failure(run_dir: Path, record: dict, error: str, returncode, start: float) -> dict:
    record = {**record, "status": "failed", "error": error, "returncode": returncode,
              "seconds": round(time.perf_counter() - start, 3)}
    write_json_atomic(run_dir / "error.json", record)
    return record


def run_sweep(specs: list[RunSpec], out_dir: Path | str, *, jobs: int = 1,
              evaluate_command=DEFAULT_EVALUATE_COMMAND, timeout: float | None = None, rerun: bool = False,
              echo=print, scheduler: str | None = None) -> list[dict]:
    """Execute every run that has no ``result.json`` yet (all of them with ``rerun``), ``jobs`` at a time.

    ``scheduler``: a Dask scheduler address (``tcp://host:8786``) or ``local:N`` to run on a Dask cluster
    instead of ``jobs`` local threads (see the module docstring). Returns one record per run (``status``
    ``ok``, ``failed`` or ``skipped``). Ctrl-C stops the running subprocesses; finished runs keep their results.
    """
    out_dir = Path(out_dir)
    write_json_atomic(out_dir / "sweep.json", {"runs": [spec.to_dict() for spec in specs]})
    records, todo = [], []
    for spec in specs:
        done = read_json(out_dir / "runs" / spec.run_id / "result.json")
        if done and not rerun:
            records.append({**done, "status": "skipped"})
        else:
            todo.append(spec)
    if records:
        echo(f"{len(records)} of {len(specs)} runs finished before; skipping them.")

    def report(record: dict) -> None:
        records.append(record)
        if record["status"] == "ok":
            auroc = record["metrics"].get("image_auroc")
            detail = f"image AUROC {auroc:.3f}" if isinstance(auroc, (int, float)) else "done"
        else:
            detail = record["error"]
        echo(f"[{len(records) - (len(specs) - len(todo))}/{len(todo)}] {record['status']:<6} {record['run_id']}: "
             f"{detail} ({record['seconds']:.1f} s)")

    if scheduler:
        _run_on_dask(todo, out_dir, scheduler, evaluate_command, timeout, report, echo)
        return records
    jobs = max(1, int(jobs))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    processes = _Processes()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(execute_run, spec, out_dir, evaluate_command=evaluate_command, timeout=timeout,
                               threads=threads, processes=processes): spec for spec in todo}
        try:
            for future in concurrent.futures.as_completed(futures):
                try:
                    record = future.result()
                except Exception as error:  # a bug or a full disk here must not lose the other runs
                    spec = futures[future]
                    record = _write_failure(out_dir / "runs" / spec.run_id, spec.to_dict(),
                                            f"{type(error).__name__}: {error}", None, time.perf_counter())
                report(record)
        except BaseException:
            for future in futures:
                future.cancel()
            processes.kill_all()
            raise
    return records


def dask_client(scheduler: str):
    """``(Client, LocalCluster or None)`` for ``--scheduler``: an address, or ``local:N`` (N workers here).

    The LocalCluster listens on 127.0.0.1 only and its scheduler gives up on a task as soon as one worker
    died running it (``allowed-failures: 0``), so that :func:`run_sweep` decides about the one retry.
    """
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError as error:
        raise ValueError("--scheduler needs Dask: pip install 'dask[distributed]'.") from error
    if scheduler.startswith("local:"):
        workers = scheduler.partition(":")[2]
        if not workers.isdigit() or int(workers) < 1:
            raise ValueError(f"--scheduler local:N needs a positive number of workers N; got {scheduler!r}.")
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout=30), None
    except (OSError, TimeoutError) as error:
        raise ValueError(f"--scheduler {scheduler}: could not reach a Dask scheduler there ({error}).") from error


def _execute_on_worker(spec: RunSpec, out_dir: str, evaluate_command, timeout, base_dir: str) -> dict:
    """A Dask task: :func:`execute_run` with this worker's share of the machine's cores."""
    from dask.distributed import get_worker

    threads = max(1, (os.cpu_count() or 1) // max(1, get_worker().state.nthreads))
    command = evaluate_command if evaluate_command is not None else DEFAULT_EVALUATE_COMMAND
    return execute_run(spec, out_dir, evaluate_command=command, timeout=timeout, threads=threads,
                       base_dir=base_dir, die_with_parent=True)


def _run_on_dask(todo: list[RunSpec], out_dir: Path, scheduler: str, evaluate_command, timeout, report,
                 echo) -> None:
    """Submit every run to the cluster; a run whose task failed (its worker died) is submitted once more."""
    from dask.distributed import as_completed

    client, cluster = dask_client(scheduler)
    # The default command names this interpreter; on a worker, its own one is used instead.
    command = None if tuple(evaluate_command) == DEFAULT_EVALUATE_COMMAND else list(evaluate_command)
    out_dir, base_dir = str(out_dir.resolve()), str(Path.cwd())
    started = {}

    def submit(spec: RunSpec, attempt: int):
        started[spec.run_id] = time.perf_counter()
        return client.submit(_execute_on_worker, spec, out_dir, command, timeout, base_dir,
                             key=f"{spec.run_id}-attempt{attempt}", pure=False)

    try:
        echo(f"Dask cluster {client.scheduler.address}: {len(client.scheduler_info()['workers'])} workers.")
        futures = {submit(spec, 1): (spec, 1) for spec in todo}
        pending = as_completed(list(futures))
        for future in pending:
            spec, attempt = futures.pop(future)
            try:
                report(future.result())
                continue
            except Exception as error:  # the worker died (KilledWorker) or the task could not run there
                reason = f"{type(error).__name__}: {error}"
            if attempt == 1:
                echo(f"retrying {spec.run_id}: {reason}")
                retry = submit(spec, 2)
                futures[retry] = (spec, 2)
                pending.add(retry)
            else:
                report(_write_failure(Path(out_dir) / "runs" / spec.run_id, spec.to_dict(),
                                      f"failed twice on the Dask cluster: {reason}"[:300], None,
                                      started[spec.run_id]))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ---------------------------------------------------------------------------------------------------------
# Collecting and summarising
# ---------------------------------------------------------------------------------------------------------

def collect_results(out_dir: Path | str, run_ids: list[str] | None = None) -> pd.DataFrame:
    """One row per run folder (only ``run_ids`` if given): parameters as ``param_NAME``, metrics, status, error.

    ``status`` is ``ok``, ``failed`` or ``not run``. An ``image_auroc_ci = [low, high]`` becomes
    ``image_auroc_ci_low`` / ``image_auroc_ci_high``.
    """
    runs_dir = Path(out_dir) / "runs"
    if run_ids is None:
        run_ids = sorted(p.name for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    rows = []
    for run_id in run_ids:
        run_dir = runs_dir / run_id
        spec_data = read_json(run_dir / "run.json")
        if spec_data is None:
            continue
        spec = RunSpec.from_dict(spec_data)
        row = {"run_id": run_id, "status": "not run", "dataset": spec.dataset, "category": spec.category,
               "group": group_of(spec.dataset, spec.category), "method": spec.method, "runner": spec.runner}
        row.update({f"param_{name}": value for name, value in spec.params})
        result, failure = read_json(run_dir / "result.json"), read_json(run_dir / "error.json")
        if result is not None:
            row.update(status="ok", seconds=result.get("seconds"))
            for name, value in result.get("metrics", {}).items():
                if name in ("dataset", "category"):
                    continue
                if name == "method":
                    row["method"] = row["method"] or value
                elif name.endswith("_ci") and isinstance(value, (list, tuple)) and len(value) == 2:
                    row[f"{name}_low"], row[f"{name}_high"] = value
                elif value is None or isinstance(value, (int, float, str, bool)):
                    row[name] = value
        elif failure is not None:
            row.update(status="failed", error=failure.get("error", ""), seconds=failure.get("seconds"))
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for column in [c for c in table.columns if c.startswith("param_")]:
        values = [row[column] for row in rows if row.get(column) is not None]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            table[column] = table[column].astype("Int64")  # keep window=3 from becoming 3.0 next to blanks
    table["config"] = config_labels(table)
    first = ["run_id", "status", "dataset", "category", "group", "method", "config"]
    params = sorted(c for c in table.columns if c.startswith("param_"))
    last = [c for c in ("error", "seconds") if c in table.columns]
    middle = [c for c in table.columns if c not in first + params + last]
    table = table[first + params + middle + last]
    return table.sort_values(["dataset", "category", "config"], kind="stable").reset_index(drop=True)


def config_labels(table: pd.DataFrame) -> pd.Series:
    """``method (name=value, ...)`` with only the parameters that differ between runs of the table."""
    params = [c for c in table.columns if c.startswith("param_")]
    varying = [c for c in params if table[c].dropna().astype(str).nunique() > 1]

    def label(row) -> str:
        parts = [f"{c[len('param_'):]}={row[c]}" for c in varying if _present(row[c])]
        name = row["method"] or "notebook"
        return f"{name} ({', '.join(parts)})" if parts else name

    return table.apply(label, axis=1) if len(table) else pd.Series(dtype=str)


def _present(value) -> bool:
    """False for None, NaN and pd.NA."""
    return value is not None and not (pd.api.types.is_scalar(value) and pd.isna(value))


def group_averages(results: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric over the categories of each of the papers' groups, and over the whole dataset.

    One row per (dataset, config, group); ``category`` holds the group name or ``mean``. ``n_categories``
    says how many of the group's categories finished (``n_expected``): read a partial mean with care.
    """
    if results.empty or "status" not in results:
        return pd.DataFrame()
    finished = results[results["status"] == "ok"]
    rows = []
    for (dataset, config), part in finished.groupby(["dataset", "config"], sort=True):
        groups = dict(CATEGORY_GROUPS.get(dataset, {}))
        everything = DATASET_CATEGORIES.get(dataset) or tuple(results.loc[results.dataset == dataset, "category"])
        groups["mean"] = tuple(dict.fromkeys(everything))
        for group, members in groups.items():
            sub = part[part["category"].isin(members)]
            if sub.empty:
                continue
            row = {"dataset": dataset, "category": group, "level": level_of(dataset, group),
                   "method": sub["method"].iloc[0], "config": config, "n_categories": len(sub),
                   "n_expected": len(members)}
            if "backbone" in sub:
                row["backbone"] = ", ".join(sorted(set(sub["backbone"].dropna().astype(str))))
            for metric in METRICS + KIND_METRICS:
                if metric in sub and sub[metric].notna().any():
                    row[metric] = float(sub[metric].dropna().astype(float).mean())
            if all(_present(row.get(metric)) for metric in KIND_METRICS):
                row["image_auroc_mean_of_kinds"] = (row[KIND_METRICS[0]] + row[KIND_METRICS[1]]) / 2
            rows.append(row)
    return pd.DataFrame(rows)


def compare_with_papers(results: pd.DataFrame, groups: pd.DataFrame | None = None,
                        papers: pd.DataFrame | None = None) -> pd.DataFrame:
    """Our numbers beside the papers' (all in percent), matched on dataset, category / group, method, metric.

    ``difference`` is ours minus theirs; ``paper_in_ci`` says whether the paper's number lies inside our
    bootstrap 95 % interval (blank without an interval).
    """
    papers = paper_results() if papers is None else papers
    groups = group_averages(results) if groups is None else groups
    ours = []
    finished = results[results["status"] == "ok"] if not results.empty else results
    for _, row in finished.iterrows():
        for metric in METRICS + KIND_METRICS:
            if metric in row and _present(row[metric]):
                entry = {"dataset": row["dataset"], "category": row["category"], "level": "category",
                         "method": row["method"], "config": row["config"], "backbone": row.get("backbone"),
                         "metric": metric, "ours": 100 * float(row[metric]), "coverage": ""}
                low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
                if _present(low) and _present(high):
                    entry.update(ci_low=100 * float(low), ci_high=100 * float(high))
                ours.append(entry)
    for _, row in groups.iterrows():
        for metric in METRICS + KIND_METRICS + ("image_auroc_mean_of_kinds",):
            if metric in row and _present(row[metric]):
                ours.append({"dataset": row["dataset"], "category": row["category"], "level": row["level"],
                             "method": row["method"], "config": row["config"], "backbone": row.get("backbone"),
                             "metric": metric, "ours": 100 * float(row[metric]),
                             "coverage": f"{row['n_categories']}/{row['n_expected']}"})
    columns = ["dataset", "category", "level", "method", "config", "backbone", "metric", "ours", "ci_low",
               "ci_high", "paper", "difference", "paper_in_ci", "source", "table", "paper_backbone",
               "paper_variant", "paper_std", "coverage", "paper_note"]
    if not ours:
        return pd.DataFrame(columns=columns)
    ours_table = pd.DataFrame(ours)
    for column in ("ci_low", "ci_high"):
        if column not in ours_table:
            ours_table[column] = float("nan")
    theirs = papers.drop(columns=["level"]).rename(columns={
        "value": "paper", "backbone": "paper_backbone", "variant": "paper_variant", "std": "paper_std",
        "note": "paper_note"})
    merged = ours_table.merge(theirs, on=["dataset", "category", "method", "metric"], how="inner")
    merged["difference"] = merged["ours"] - merged["paper"]
    has_ci = merged["ci_low"].notna() & merged["ci_high"].notna()
    inside = (merged["ci_low"] <= merged["paper"]) & (merged["paper"] <= merged["ci_high"])
    merged["paper_in_ci"] = pd.Series([bool(i) if h else None for i, h in zip(inside, has_ci)],
                                      index=merged.index, dtype=object)
    order = {"category": 0, "group": 1, "dataset": 2}
    merged["_order"] = merged["level"].map(order)
    merged = merged.sort_values(["dataset", "_order", "category", "config", "metric", "source", "table",
                                 "paper_backbone", "paper_variant"], kind="stable")
    return merged[columns].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------
# Writing the summary
# ---------------------------------------------------------------------------------------------------------

def _pct(value) -> str:
    return f"{value:.1f}" if _present(value) else ""


def _fraction_pct(value) -> str:
    return f"{100 * float(value):.1f}" if _present(value) else ""


def _signed(value) -> str:
    return f"{value:+.1f}" if _present(value) else ""


def _markdown_table(table: pd.DataFrame) -> str:
    if table.empty:
        return "(nothing)\n"
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(cell(c) for c in table.columns) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _category_order(dataset: str, category: str) -> tuple:
    group = group_of(dataset, category)
    groups = list(CATEGORY_GROUPS.get(dataset, {}))
    categories = list(DATASET_CATEGORIES.get(dataset, ()))
    return (groups.index(group) if group in groups else len(groups),
            categories.index(category) if category in categories else len(categories), category)


def _per_category_view(part: pd.DataFrame) -> pd.DataFrame:
    """Rows: categories (in their groups); columns: configs; cells: image AUROC % [95 % interval] or failed."""
    def cell(row) -> str:
        if row["status"] == "failed":
            return "failed"
        if row["status"] != "ok":
            return ""
        text = _fraction_pct(row.get("image_auroc"))
        low, high = row.get("image_auroc_ci_low"), row.get("image_auroc_ci_high")
        if _present(low) and _present(high):
            text += f" [{_fraction_pct(low)}, {_fraction_pct(high)}]"
        return text

    dataset = part["dataset"].iloc[0]
    cells = part.assign(cell=part.apply(cell, axis=1))
    view = cells.pivot_table(index="category", columns="config", values="cell", aggfunc="first", fill_value="")
    view = view.loc[sorted(view.index, key=lambda c: _category_order(dataset, c))]
    view = view.reset_index().rename_axis(columns=None)
    view.insert(0, "group", [group_of(dataset, c) for c in view["category"]])
    return view


def _groups_view(groups: pd.DataFrame) -> pd.DataFrame:
    view = pd.DataFrame({"group": groups["category"], "config": groups["config"]})
    for metric in METRICS + KIND_METRICS + ("image_auroc_mean_of_kinds",):
        if metric in groups and groups[metric].notna().any():
            view[METRIC_TITLES[metric]] = groups[metric].map(_fraction_pct)
    view["categories"] = groups["n_categories"].astype(str) + "/" + groups["n_expected"].astype(str)
    return view


def _comparison_view(comparison: pd.DataFrame) -> pd.DataFrame:
    def source(row) -> str:
        parts = [f"{row['source']} {row['table']}", row["paper_backbone"] or "", row["paper_variant"] or ""]
        return ", ".join(p for p in parts if p)

    def interval(row) -> str:
        return f"[{_pct(row['ci_low'])}, {_pct(row['ci_high'])}]" if _present(row["ci_low"]) else ""

    def inside(value) -> str:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else (
            "yes" if value else "no")

    return pd.DataFrame({
        "category": comparison["category"] + comparison["coverage"].map(lambda c: f" ({c})" if c else ""),
        "ours": comparison["config"],
        "our backbone": comparison["backbone"].fillna(""),
        "metric": comparison["metric"].map(METRIC_TITLES),
        "ours %": comparison["ours"].map(_pct),
        "95 % CI": comparison.apply(interval, axis=1),
        "paper %": comparison["paper"].map(_pct),
        "ours − paper": comparison["difference"].map(_signed),
        "paper in CI": comparison["paper_in_ci"].map(inside),
        "paper's setting": comparison.apply(source, axis=1),
    })


def summary_sections(results: pd.DataFrame, groups: pd.DataFrame, comparison: pd.DataFrame) -> list:
    """The summary as a list of (heading level, title, text or table)."""
    counts = results["status"].value_counts() if not results.empty else pd.Series(dtype=int)
    intro = (f"{len(results)} runs: {counts.get('ok', 0)} finished, {counts.get('failed', 0)} failed, "
             f"{counts.get('not run', 0)} not run. Values are percentages. [low, high] is the bootstrap 95 % "
             "interval of our number where `iadtutor evaluate` reported one (image and pixel AUROC); a paper's "
             "number inside it is within the noise of the test set. Group rows show how many of the group's categories finished.")
    sections: list = [(1, "Reproduction summary", intro)]
    datasets = sorted(set(results["dataset"]) if not results.empty else set(),
                      key=lambda d: (list(DATASET_TITLES).index(d) if d in DATASET_TITLES else 99, d))
    for dataset in datasets:
        part = results[results["dataset"] == dataset]
        sections.append((2, DATASET_TITLES.get(dataset, dataset), None))
        sections.append((3, "Image AUROC per category", _per_category_view(part)))
        dataset_groups = groups[groups["dataset"] == dataset] if not groups.empty else groups
        if not dataset_groups.empty:
            sections.append((3, "Averages in the papers' groupings", _groups_view(dataset_groups)))
        dataset_comparison = comparison[comparison["dataset"] == dataset] if not comparison.empty else comparison
        if not dataset_comparison.empty:
            sections.append((3, "Beside the papers", _comparison_view(dataset_comparison)))
    failed = results[results["status"] == "failed"] if not results.empty else results
    if not failed.empty:
        sections.append((2, "Failed runs", failed[["run_id", "dataset", "category", "config", "error"]]))
    methods = sorted(set(comparison["method"])) if not comparison.empty else []
    if methods:
        sections.append((2, "Notes", "Methods compared: " + ", ".join(METHOD_TITLES.get(m, m) for m in methods)
                         + ". The papers' numbers and how they were transcribed: `iadtutor.tools.papers`."))
    return sections


def _render_markdown(sections) -> str:
    parts = []
    for level, title, body in sections:
        parts.append("#" * level + " " + title + "\n")
        if isinstance(body, pd.DataFrame):
            parts.append(_markdown_table(body))
        elif body:
            parts.append(body + "\n")
    return "\n".join(parts)


def _render_html(sections) -> str:
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'><title>Reproduction summary</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;"
             "margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}"
             "td:first-child,th:first-child{text-align:left}</style></head><body>"]
    for level, title, body in sections:
        parts.append(f"<h{level}>{html.escape(title)}</h{level}>")
        if isinstance(body, pd.DataFrame):
            parts.append(body.to_html(index=False, na_rep="", escape=True, border=0))
        elif body:
            parts.append(f"<p>{html.escape(body)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_summary(out_dir: Path | str, results: pd.DataFrame, papers: pd.DataFrame | None = None) -> dict:
    """Write ``results.csv``, ``comparison.csv``, ``summary.md`` and ``summary.html`` (each atomically)."""
    out_dir = Path(out_dir)
    groups = group_averages(results)
    comparison = compare_with_papers(results, groups, papers) if not results.empty else pd.DataFrame()
    sections = summary_sections(results, groups, comparison)
    paths = {
        "results": write_text_atomic(out_dir / "results.csv", results.to_csv(index=False)),
        "comparison": write_text_atomic(out_dir / "comparison.csv", comparison.to_csv(index=False)),
        "summary_md": write_text_atomic(out_dir / "summary.md", _render_markdown(sections)),
        "summary_html": write_text_atomic(out_dir / "summary.html", _render_html(sections)),
    }
    return paths


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------

def add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iadtutor reproduce``."""
    parser.add_argument("--grid", type=Path, help="YAML or JSON grid file (see iadtutor.tools.runs)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a stored grid for one of the papers' tables")
    parser.add_argument("--dataset", help="dataset name(s), comma-separated (replaces the grid's datasets)")
    parser.add_argument("--data-root", action="append", default=[], metavar="[NAME=]DIR",
                        help="data root of the dataset (default: data/NAME); repeat as NAME=DIR for several")
    parser.add_argument("--categories", help="comma-separated categories, or 'all' (default: all)")
    parser.add_argument("--methods", help="comma-separated methods")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=V1,V2",
                        help="a parameter and its values; repeat for several (e.g. --param window=3,7)")
    parser.add_argument("--notebook", type=Path, help="run this notebook with papermill instead of evaluate")
    parser.add_argument("--out", type=Path, default=Path("runs") / "reproduce", help="output folder")
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time (default 1)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on a Dask cluster: its scheduler address (tcp://host:8786), or local:N "
                             "for N workers on this machine (instead of --jobs)")
    parser.add_argument("--timeout", type=float, help="seconds after which a run is stopped and counted failed")
    parser.add_argument("--rerun", action="store_true", help="run again even the runs that finished before")
    parser.add_argument("--evaluate-cmd", help="command to use instead of 'iadtutor evaluate' (quoted)")
    parser.add_argument("--collect-only", action="store_true",
                        help="only rebuild results.csv and the summary from OUT/runs")
    parser.add_argument("--dry-run", action="store_true", help="list the runs without running them")


def grid_from_args(args: argparse.Namespace) -> dict:
    """The grid described by a grid file / preset, changed by the flags."""
    grid: dict = {}
    if args.preset:
        grid = json.loads(json.dumps(PRESETS[args.preset]))
    if args.grid:
        grid.update(load_grid(args.grid))
    if args.dataset:
        grid["datasets"] = {name.strip(): {} for name in args.dataset.split(",") if name.strip()}
    datasets = grid.get("datasets") or {}
    if not isinstance(datasets, dict):
        datasets = {name: {} for name in _as_list(datasets)}
    grid["datasets"] = {name: dict(options or {}) for name, options in datasets.items()}
    for item in args.data_root:
        name, _, folder = item.rpartition("=")
        targets = [name] if name else list(grid["datasets"])
        if not name and len(targets) != 1:
            raise ValueError(f"--data-root {item}: with several datasets write NAME=DIR.")
        for target in targets:
            if target not in grid["datasets"]:
                raise ValueError(f"--data-root {item}: {target!r} is not a dataset of this grid.")
            grid["datasets"][target]["data_root"] = folder
    if args.categories:
        for options in grid["datasets"].values():
            options["categories"] = args.categories
    if args.methods:
        grid["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    params = dict(grid.get("params") or {})
    for item in args.param:
        name, separator, values = item.partition("=")
        if not separator or not name.strip():
            raise ValueError(f"--param {item!r}: expected NAME=VALUE[,VALUE...].")
        params[name.strip()] = [parse_value(v) for v in values.split(",")]
    grid["params"] = params
    if args.notebook:
        grid.update(runner="notebook", notebook=str(args.notebook))
    return grid


def reproduce_command(args: argparse.Namespace) -> int:
    """``iadtutor reproduce``: run the grid, then write results.csv and the summary. Exit 1 if a run failed."""
    out_dir = Path(args.out)
    try:
        if args.collect_only:
            sweep = read_json(out_dir / "sweep.json")
            run_ids = [run["run_id"] for run in sweep["runs"]] if sweep else None
        else:
            specs = expand_grid(grid_from_args(args))
            if args.dry_run:
                for spec in specs:
                    print(spec.run_id)
                print(f"{len(specs)} runs.")
                return 0
            evaluate_command = shlex.split(args.evaluate_cmd) if args.evaluate_cmd else DEFAULT_EVALUATE_COMMAND
            where = f"on the Dask cluster {args.scheduler}" if args.scheduler else f"{args.jobs} at a time"
            print(f"{len(specs)} runs into {out_dir} ({where}).")
            run_sweep(specs, out_dir, jobs=args.jobs, evaluate_command=evaluate_command, timeout=args.timeout,
                      rerun=args.rerun, scheduler=args.scheduler)
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


def main(argv: list[str] | None = None) -> int:
    """``python -m iadtutor.tools.runs ...``: the same as ``iadtutor reproduce ...``."""
    parser = argparse.ArgumentParser(prog="python -m iadtutor.tools.runs", description=__doc__.splitlines()[0])
    add_reproduce_arguments(parser)
    return reproduce_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
