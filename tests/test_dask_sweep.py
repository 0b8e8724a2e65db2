"""``iadtutor reproduce --scheduler``: a sweep on a two-worker Dask LocalCluster, one worker killed mid-sweep.

The runs use a fake, fast ``evaluate`` command (as in test_runs.py) that takes a second per run; the
run of category ``bracket`` kills its own worker the first time it starts (its parent process is the
worker), and the run of category ``doomed`` does so every time.
"""

from __future__ import annotations

import os
import sys
import textwrap

import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

import dask  # noqa: E402
from dask.distributed import LocalCluster  # noqa: E402

from iadtutor.tools import cli  # noqa: E402
from iadtutor.tools.runs import collect_results, expand_grid, run_sweep  # noqa: E402

FAKE_EVALUATE = textwrap.dedent('''
    import argparse, json, os, signal, sys, time
    from pathlib import Path

    parser = argparse.ArgumentParser()
    for name in ("--data-root", "--category", "--method", "--window"):
        parser.add_argument(name)
    args, _ = parser.parse_known_args()
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(f"{args.category}\\n")
    marker = Path(os.environ["FAKE_LOG"]).with_name(f"killed-{args.category}")
    mine = os.getppid() != int(os.environ["FAKE_PROTECTED_PID"])  # never kill the test itself
    if mine and (args.category == "doomed" or (args.category == "bracket" and not marker.exists())):
        marker.touch()
        time.sleep(0.5)
        os.kill(os.getppid(), signal.SIGKILL)  # the Dask worker that runs us dies mid-run
        time.sleep(30)  # we die with it (PR_SET_PDEATHSIG)
    time.sleep(float(os.environ.get("FAKE_SECONDS", "0")))
    auroc = {"weave": 0.75, "bracket": 0.5, "pills": 0.625, "box": 0.875}.get(args.category, 0.1)
    print(json.dumps({"method": args.method, "backbone": "efficientnet_lite0", "category": args.category,
                      "n_train": 3, "n_test": 4, "image_auroc": auroc, "pixel_auroc": 0.9, "aupro": 0.8,
                      "window": args.window}))
''')

METRIC_COLUMNS = ["run_id", "status", "dataset", "category", "method", "config", "param_window", "image_auroc",
                  "pixel_auroc", "aupro"]


@pytest.fixture()
def fake(tmp_path, monkeypatch):
    script = tmp_path / "fake_evaluate.py"
    script.write_text(FAKE_EVALUATE)
    log = tmp_path / "calls.log"
    log.touch()
    monkeypatch.setenv("FAKE_LOG", str(log))  # set before the cluster starts: its workers inherit it
    monkeypatch.setenv("FAKE_SECONDS", "1")
    monkeypatch.setenv("FAKE_PROTECTED_PID", str(os.getpid()))
    return {"command": [sys.executable, str(script)], "log": log}


@pytest.fixture()
def cluster():
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
    yield cluster
    cluster.close()


def grid(categories) -> dict:
    return {"datasets": {"toy": {"data_root": "nowhere", "categories": list(categories)}},
            "methods": ["spade", "lwinnn"], "params": {"window": [3]}}


def quiet(*_):
    pass


def test_a_killed_worker_loses_no_run(tmp_path, fake, cluster):
    specs = expand_grid(grid(["weave", "bracket", "pills"]))
    local = run_sweep(specs, tmp_path / "local", jobs=2, evaluate_command=fake["command"], echo=quiet)
    assert [r["status"] for r in local] == ["ok"] * 6
    log_before = len(fake["log"].read_text().splitlines())

    messages = []
    records = run_sweep(specs, tmp_path / "dask", evaluate_command=fake["command"], echo=messages.append,
                        scheduler=cluster.scheduler_address)
    assert sorted(r["status"] for r in records) == ["ok"] * 6
    retried = [m for m in messages if m.startswith("retrying")]
    # The run that kills its worker is retried; a run the scheduler had already queued on that worker is
    # lost with it and retried too (how many depends on timing). Each is retried once and none is lost.
    assert any("bracket" in m and "KilledWorker" in m for m in retried)
    assert len(retried) == len(set(retried)) and 1 <= len(retried) <= 6
    assert 6 + 1 <= len(fake["log"].read_text().splitlines()) - log_before <= 6 + len(retried)

    ours = collect_results(tmp_path / "dask", [s.run_id for s in specs])[METRIC_COLUMNS]
    theirs = collect_results(tmp_path / "local", [s.run_id for s in specs])[METRIC_COLUMNS]
    pd.testing.assert_frame_equal(ours, theirs)
    for spec in specs:  # the same files in each run's folder
        assert (sorted(p.name for p in (tmp_path / "dask" / "runs" / spec.run_id).iterdir())
                == sorted(p.name for p in (tmp_path / "local" / "runs" / spec.run_id).iterdir()))

    again = run_sweep(specs, tmp_path / "dask", evaluate_command=fake["command"], echo=quiet,
                      scheduler=cluster.scheduler_address)
    assert [r["status"] for r in again] == ["skipped"] * 6


def test_a_run_that_kills_its_worker_twice_is_recorded_as_failed(tmp_path, fake, cluster):
    specs = expand_grid({"datasets": {"toy": {"data_root": "nowhere", "categories": ["doomed", "weave"]}},
                         "methods": ["spade"]})
    records = {r["category"]: r for r in run_sweep(specs, tmp_path / "out", evaluate_command=fake["command"],
                                                   echo=quiet, scheduler=cluster.scheduler_address)}
    assert records["weave"]["status"] == "ok"
    assert records["doomed"]["status"] == "failed"
    assert records["doomed"]["error"].startswith("failed twice on the Dask cluster: KilledWorker")
    assert fake["log"].read_text().splitlines().count("doomed") == 2
    results = collect_results(tmp_path / "out", [s.run_id for s in specs]).set_index("category")
    assert results.loc["doomed", "status"] == "failed" and "KilledWorker" in results.loc["doomed", "error"]


def test_reproduce_on_a_local_cluster(tmp_path, fake, capsys):
    command = " ".join(fake["command"])
    args = ["--dataset", "toy", "--data-root", str(tmp_path), "--categories", "weave,box", "--methods", "spade",
            "--out", str(tmp_path / "out"), "--evaluate-cmd", command, "--scheduler", "local:2"]
    assert cli.main(["reproduce", *args]) == 0
    assert "on the Dask cluster local:2" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert dict(zip(table["category"], table["image_auroc"])) == {"weave": 0.75, "box": 0.875}
    assert cli.main(["reproduce", *args[:-1], "local:zero"]) == 2
    assert "local:N needs a positive number" in capsys.readouterr().err
