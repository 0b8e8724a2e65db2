"""Sweep mechanics of iadtutor.tools.runs, driven by a fake, instant ``evaluate`` command (no model, no data)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from iadtutor import pipeline
from iadtutor.files import write_text_atomic
from iadtutor.tools import cli, runs
from iadtutor.tools.runs import (RunSpec, collect_results, command_for, compare_with_papers, execute_run, expand_grid,
                                 group_averages, grid_from_args, one_line_error, record_result, run_sweep,
                                 write_summary)

FAKE_EVALUATE = textwrap.dedent('''
    """Stands in for `iadtutor evaluate`: prints a few lines and then one JSON object, or fails."""
    import argparse, json, os, sys, time
    from pathlib import Path

    parser = argparse.ArgumentParser()
    for name in ("--data-root", "--category", "--method", "--backbone", "--window", "--k", "--alpha", "--coreset"):
        parser.add_argument(name)
    args, _ = parser.parse_known_args()
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(f"{args.category} {args.method} {args.window}\\n")
    if args.category == "bad" and not os.environ.get("FAKE_FIXED"):
        print("Traceback (most recent call last):", file=sys.stderr)
        print("ValueError: category bad has no test images.", file=sys.stderr)
        sys.exit(1)
    if args.category == "slow":
        time.sleep(60)
    if os.environ.get("FAKE_BARRIER"):  # wait until FAKE_PARTIES runs have started, or give up
        folder = Path(os.environ["FAKE_BARRIER"])
        (folder / args.category).touch()
        deadline = time.monotonic() + float(os.environ["FAKE_WAIT"])
        while len(list(folder.iterdir())) < int(os.environ["FAKE_PARTIES"]):
            if time.monotonic() > deadline:
                print("RuntimeError: ran alone", file=sys.stderr)
                sys.exit(3)
            time.sleep(0.02)
    scores = json.loads(os.environ.get("FAKE_SCORES", "{}"))
    metrics = scores.get(f"{args.category}/{args.method}", scores.get(args.category, {"image_auroc": 0.5}))
    print("embedding 100%")
    print(json.dumps({"method": args.method, "backbone": args.backbone or "efficientnet_lite0",
                      "category": args.category, "n_train": 3, "n_test": 4, "pixel_auroc": 0.9, "aupro": 0.8,
                      "train_seconds": 0.1, "test_seconds_per_image": 0.01, **metrics}))
''')


@pytest.fixture()
def fake(tmp_path, monkeypatch):
    """The fake evaluate command and its call log (one line per call)."""
    script = tmp_path / "fake_evaluate.py"
    script.write_text(FAKE_EVALUATE)
    log = tmp_path / "calls.log"
    log.touch()
    monkeypatch.setenv("FAKE_LOG", str(log))
    for name in ("FAKE_FIXED", "FAKE_BARRIER", "FAKE_SCORES"):
        monkeypatch.delenv(name, raising=False)
    return {"command": [sys.executable, str(script)], "log": log}


def calls(fake) -> list[str]:
    return fake["log"].read_text().splitlines()


def toy_grid(categories, methods=("lwinnn",), **params) -> dict:
    return {"datasets": {"toy": {"data_root": "nowhere", "categories": list(categories)}},
            "methods": list(methods), "params": params}


def quiet(*_):
    pass


# --- grids ------------------------------------------------------------------------------------------------

def test_expand_grid_drops_parameters_a_method_does_not_read():
    specs = expand_grid(toy_grid(["weave", "bracket"], methods=["spade", "lwinnn"], window=[3, 7],
                                 backbone="efficientnet_lite0"))
    described = [(s.category, s.method, dict(s.params).get("window")) for s in specs]
    assert described == [("weave", "spade", None), ("weave", "lwinnn", 3), ("weave", "lwinnn", 7),
                         ("bracket", "spade", None), ("bracket", "lwinnn", 3), ("bracket", "lwinnn", 7)]
    assert all(dict(s.params)["backbone"] == "efficientnet_lite0" for s in specs)


def test_method_params_follow_the_methods_table():
    assert runs.METHOD_PARAMS == {"window": ["lwinnn"], "coreset": ["global", "patchcore", "knn", "ldknn"],
                                  "image_score": ["patchcore", "knn", "ldknn"], "k": ["knn", "ldknn"],
                                  "squared": ["knn", "ldknn"], "alpha": ["ldknn"]}
    for name, readers in runs.METHOD_PARAMS.items():  # the same, read from the table itself
        assert readers == [m for m in pipeline.METHODS if name in pipeline.METHODS[m].params]


def flags_of(spec) -> dict:
    """``{--flag: value}`` of the evaluate command of a run (beyond --data-root, --category, --method)."""
    command, _ = command_for(spec, Path("."), ["evaluate"])
    rest = command[7:]
    return dict(zip(rest[::2], rest[1::2]))


def test_reproduce_passes_each_method_only_its_parameters():
    parser = argparse.ArgumentParser()
    runs.add_reproduce_arguments(parser)
    args = parser.parse_args(["--dataset", "toy", "--data-root", "nowhere", "--categories", "weave",
                              "--methods", "knn", "--param", "k=3"])
    (spec,) = expand_grid(grid_from_args(args))
    assert spec.method == "knn" and flags_of(spec) == {"--k": "3"}

    grid = toy_grid(["weave"], methods=list(pipeline.METHODS), window=5, coreset=0.1, k=3, alpha=2.0,
                    image_size=64)
    flags = {spec.method: flags_of(spec) for spec in expand_grid(grid)}
    assert flags == {
        "spade": {"--image-size": "64"},
        "lwinnn": {"--image-size": "64", "--window": "5"},
        "global": {"--coreset": "0.1", "--image-size": "64"},
        "patchcore": {"--coreset": "0.1", "--image-size": "64"},
        "knn": {"--coreset": "0.1", "--image-size": "64", "--k": "3"},
        "ldknn": {"--alpha": "2.0", "--coreset": "0.1", "--image-size": "64", "--k": "3"},
    }


@pytest.mark.parametrize("params", [
    {},
    {"window": 3, "image_size": 64, "bootstrap": "0", "seed": 0, "backbone": "efficientnet_lite0"},
    {"k": 2, "squared": True, "coreset": 0.5, "layers": "0,1", "square": True, "no_pool": False, "dimension": 64},
    {"padded_pool": True, "interpolation": "nearest", "max_train": 5, "device": "cpu", "layers": 2},
])
def test_evaluate_options_are_what_the_evaluate_parser_makes_of_the_command(params):
    """The in-process runs (iadtutor.tools.study) build their options without a command line: they must be
    what `iadtutor evaluate` parses from the command a subprocess run gets."""
    spec = RunSpec("toy", "weave", "ldknn" if "k" in params else "lwinnn", tuple(sorted(params.items())), "/data")
    command, _ = command_for(spec, Path("."), ["evaluate"])
    parsed = vars(cli.build_parser().parse_args(command))
    parsed.pop("command"), parsed.pop("handler")
    built = vars(cli.evaluate_options(spec.data_root, spec.category, spec.method, **params))
    assert built == parsed
    assert cli.embedding_config(argparse.Namespace(**built)) == cli.embedding_config(argparse.Namespace(**parsed))


def test_evaluate_options_refuse_what_evaluate_would_refuse():
    with pytest.raises(ValueError, match="no option --colour"):
        cli.evaluate_options("/data", "weave", "spade", colour="red")
    with pytest.raises(ValueError, match="--interpolation must be one of"):
        cli.evaluate_options("/data", "weave", "spade", interpolation="cubic")
    with pytest.raises(ValueError, match="--square is a switch"):
        cli.evaluate_options("/data", "weave", "spade", square=1)
    with pytest.raises(ValueError, match="--window needs a value"):
        cli.evaluate_options("/data", "weave", "lwinnn", window=True)
    assert cli.embedding_config(cli.evaluate_options("/data", "weave", "knn")).layers == (1, 2)  # METHODS' taps
    config = cli.embedding_config(cli.evaluate_options("/data", "weave", "patchcore"))
    assert (config.aggregation, config.dimension, config.keep_aspect) == ("neighbourhood", 1024, True)
    assert cli.max_train(cli.evaluate_options("/data", "weave", "lwinnn")) == 750  # LWinNN's cap only
    assert cli.max_train(cli.evaluate_options("/data", "weave", "patchcore")) is None
    assert cli.max_train(cli.evaluate_options("/data", "weave", "patchcore", max_train=9)) == 9


def test_run_id_is_stable_and_ignores_where_the_data_is():
    spec = RunSpec("toy", "weave", "lwinnn", (("backbone", "efficientnet_lite0"), ("window", 3)), "data/toy")
    # A fixed literal: run ids must not change between versions, or re-runs stop skipping finished work.
    assert spec.run_id == "toy-weave-lwinnn-backboneefficientnet_lite0-window3-1151d377"
    moved = RunSpec("toy", "weave", "lwinnn", spec.params, "/elsewhere/toy")
    assert moved.run_id == spec.run_id
    other = RunSpec("toy", "weave", "lwinnn", (("backbone", "efficientnet_lite0"), ("window", 5)), "data/toy")
    assert other.run_id != spec.run_id


def test_grid_from_file_and_flags(tmp_path):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(textwrap.dedent("""
        datasets:
          toy: {data_root: data/toy, categories: [weave]}
          mvtec_ad: {categories: [bottle, carpet]}
        methods: [spade]
        params: {backbone: resnet18}
    """))
    parser = argparse.ArgumentParser()
    runs.add_reproduce_arguments(parser)
    args = parser.parse_args(["--grid", str(grid_file), "--methods", "spade,ldknn", "--param", "k=3,5",
                              "--data-root", "mvtec_ad=/data/mvtec"])
    specs = expand_grid(grid_from_args(args))
    described = {(s.dataset, s.category, s.method, dict(s.params).get("k"), s.data_root) for s in specs}
    assert described == {
        ("toy", "weave", "spade", None, "data/toy"), ("toy", "weave", "ldknn", 3, "data/toy"),
        ("toy", "weave", "ldknn", 5, "data/toy"),
        ("mvtec_ad", "bottle", "spade", None, "/data/mvtec"), ("mvtec_ad", "bottle", "ldknn", 3, "/data/mvtec"),
        ("mvtec_ad", "bottle", "ldknn", 5, "/data/mvtec"),
        ("mvtec_ad", "carpet", "spade", None, "/data/mvtec"), ("mvtec_ad", "carpet", "ldknn", 3, "/data/mvtec"),
        ("mvtec_ad", "carpet", "ldknn", 5, "/data/mvtec"),
    }
    args = parser.parse_args(["--dataset", "mvtec_ad", "--methods", "lwinnn"])
    assert len(expand_grid(grid_from_args(args))) == 15  # "all" categories of MVTec AD


def test_bad_grids_say_what_is_missing():
    with pytest.raises(ValueError, match="no method"):
        expand_grid({"datasets": ["toy"]})
    with pytest.raises(ValueError, match="no dataset"):
        expand_grid({"methods": ["spade"]})


# --- sweeps ----------------------------------------------------------------------------------------------

def test_a_failed_run_is_recorded_and_the_sweep_goes_on(tmp_path, fake):
    specs = expand_grid(toy_grid(["weave", "bad", "bracket"]))
    records = run_sweep(specs, tmp_path / "out", evaluate_command=fake["command"], echo=quiet)
    assert sorted(r["status"] for r in records) == ["failed", "ok", "ok"]
    results = collect_results(tmp_path / "out", [s.run_id for s in specs])
    by_category = results.set_index("category")
    assert by_category.loc["bad", "status"] == "failed"
    assert by_category.loc["bad", "error"] == "ValueError: category bad has no test images."
    assert by_category.loc["weave", "image_auroc"] == 0.5
    bad_dir = tmp_path / "out" / "runs" / by_category.loc["bad", "run_id"]
    assert not (bad_dir / "result.json").exists()
    assert "ValueError" in (bad_dir / "stderr.txt").read_text()


def test_rerunning_skips_finished_runs_and_retries_failed_ones(tmp_path, fake, monkeypatch):
    specs = expand_grid(toy_grid(["weave", "bad"]))
    run_sweep(specs, tmp_path / "out", evaluate_command=fake["command"], echo=quiet)
    assert sorted(calls(fake)) == ["bad lwinnn None", "weave lwinnn None"]
    records = run_sweep(specs, tmp_path / "out", evaluate_command=fake["command"], echo=quiet)
    assert sorted(calls(fake)) == ["bad lwinnn None", "bad lwinnn None", "weave lwinnn None"]
    assert sorted(r["status"] for r in records) == ["failed", "skipped"]
    monkeypatch.setenv("FAKE_FIXED", "1")
    run_sweep(specs, tmp_path / "out", evaluate_command=fake["command"], echo=quiet)
    results = collect_results(tmp_path / "out", [s.run_id for s in specs])
    assert list(results["status"]) == ["ok", "ok"]
    assert not list((tmp_path / "out" / "runs").glob("*/error.json"))
    run_sweep(specs, tmp_path / "out", evaluate_command=fake["command"], echo=quiet, rerun=True)
    assert len(calls(fake)) == 3 + 1 + 2


def test_jobs_run_at_the_same_time(tmp_path, fake, monkeypatch):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    monkeypatch.setenv("FAKE_BARRIER", str(barrier))
    monkeypatch.setenv("FAKE_PARTIES", "2")
    monkeypatch.setenv("FAKE_WAIT", "60")
    specs = expand_grid(toy_grid(["weave", "bracket"]))
    records = run_sweep(specs, tmp_path / "out", jobs=2, evaluate_command=fake["command"], echo=quiet)
    assert [r["status"] for r in records] == ["ok", "ok"]


def test_one_job_runs_one_at_a_time(tmp_path, fake, monkeypatch):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    monkeypatch.setenv("FAKE_BARRIER", str(barrier))
    monkeypatch.setenv("FAKE_PARTIES", "2")
    monkeypatch.setenv("FAKE_WAIT", "0.5")
    specs = expand_grid(toy_grid(["weave", "bracket"]))
    records = run_sweep(specs, tmp_path / "out", jobs=1, evaluate_command=fake["command"], echo=quiet)
    first = next(r for r in records if r["category"] == "weave")
    assert first["status"] == "failed" and first["error"] == "RuntimeError: ran alone"


def test_a_run_that_times_out_is_stopped_and_recorded(tmp_path, fake):
    spec = expand_grid(toy_grid(["slow"]))[0]
    record = execute_run(spec, tmp_path / "out", evaluate_command=fake["command"], timeout=0.5)
    assert record["status"] == "failed"
    assert record["error"] == "timed out after 0.5 s"


def test_output_that_is_not_json_is_a_failure(tmp_path):
    spec = expand_grid(toy_grid(["weave"]))[0]
    record = execute_run(spec, tmp_path / "out", evaluate_command=[sys.executable, "-c", "print('done')"])
    assert record["status"] == "failed"
    assert "not one JSON object: 'done'" in record["error"]


# --- files -----------------------------------------------------------------------------------------------

class _Boom(Exception):
    pass


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "results.csv"
    target.write_text("old\n")

    def failing_replace(source, destination):
        raise _Boom()

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(_Boom):
        write_text_atomic(target, "new\n" * 1000)
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n"


def test_a_half_written_result_is_not_mistaken_for_a_finished_run(tmp_path, fake):
    specs = expand_grid(toy_grid(["weave"]))
    run_dir = tmp_path / "out" / "runs" / specs[0].run_id
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(specs[0].to_dict()))
    (run_dir / "result.json").write_text('{"status": "ok", "metr')  # a crash in the middle of a write
    records = run_sweep(specs, tmp_path / "out", evaluate_command=fake["command"], echo=quiet)
    assert [r["status"] for r in records] == ["ok"]
    assert calls(fake) == ["weave lwinnn None"]


def test_record_result_writes_only_when_told_where(tmp_path, monkeypatch):
    np = pytest.importorskip("numpy")
    monkeypatch.delenv(runs.RESULT_PATH_ENV, raising=False)
    assert record_result({"image_auroc": 0.9}) is None
    path = record_result({"image_auroc": np.float32(0.75), "ci": np.array([0.5, 1.0])}, tmp_path / "r.json")
    assert json.loads(path.read_text()) == {"image_auroc": 0.75, "ci": [0.5, 1.0]}
    monkeypatch.setenv(runs.RESULT_PATH_ENV, str(tmp_path / "env.json"))
    assert record_result({"aupro": 0.5}) == tmp_path / "env.json"
    with pytest.raises(TypeError, match="dict"):
        record_result([0.5], tmp_path / "x.json")


def test_one_line_error_prefers_the_error_line():
    stderr = "Traceback (most recent call last):\n  File x\nValueError: bad input\n\x1b[0m----------\n\n"
    assert one_line_error(stderr) == "ValueError: bad input"
    assert one_line_error("loading\nsomething odd happened\n") == "something odd happened"
    cli_error = "iadtutor evaluate: error: Category folder x does not exist."
    assert one_line_error(f"{cli_error}\nembedding: 100%|##########| 3/3\n") == cli_error
    assert one_line_error("", 137) == "exited with status 137 and printed no error"


# --- tables ----------------------------------------------------------------------------------------------

def _sweep(tmp_path, fake, monkeypatch, grid, scores) -> pd.DataFrame:
    monkeypatch.setenv("FAKE_SCORES", json.dumps(scores))
    specs = expand_grid(grid)
    run_sweep(specs, tmp_path / "out", evaluate_command=fake["command"], echo=quiet)
    return collect_results(tmp_path / "out", [s.run_id for s in specs])


def test_averages_follow_the_papers_groupings(tmp_path, fake, monkeypatch):
    grid = {"datasets": {"mvtec_ad": {"data_root": "x", "categories": ["carpet", "grid", "bottle", "bad"]}},
            "methods": ["spade"]}
    scores = {"carpet": {"image_auroc": 0.9}, "grid": {"image_auroc": 0.8}, "bottle": {"image_auroc": 0.7}}
    results = _sweep(tmp_path, fake, monkeypatch, grid, scores)
    groups = group_averages(results).set_index("category")
    assert groups.loc["textures", "image_auroc"] == pytest.approx((0.9 + 0.8) / 2)
    assert (groups.loc["textures", "n_categories"], groups.loc["textures", "n_expected"]) == (2, 5)
    assert groups.loc["objects", "image_auroc"] == pytest.approx(0.7)
    assert groups.loc["mean", "image_auroc"] == pytest.approx((0.9 + 0.8 + 0.7) / 3)
    assert (groups.loc["mean", "n_categories"], groups.loc["mean", "n_expected"]) == (3, 15)
    assert list(results.set_index("category").loc[["carpet", "bottle"], "group"]) == ["textures", "objects"]


def test_ours_beside_the_papers(tmp_path, fake, monkeypatch):
    grid = {"datasets": {"visa": {"data_root": "x", "categories": ["capsules", "candle"]},
                         "mvtec_ad": {"data_root": "y", "categories": ["bottle"]}},
            "methods": ["lwinnn", "patchcore"]}
    scores = {"capsules/lwinnn": {"image_auroc": 0.85, "image_auroc_ci": [0.80, 0.90]},
              "candle/lwinnn": {"image_auroc": 0.90, "image_auroc_ci": [0.88, 0.95]},
              "bottle/patchcore": {"image_auroc": 0.99}}
    results = _sweep(tmp_path, fake, monkeypatch, grid, scores)
    comparison = compare_with_papers(results)
    auroc = comparison[comparison["metric"] == "image_auroc"]

    capsules = auroc[(auroc["category"] == "capsules") & (auroc["method"] == "lwinnn")]
    assert capsules[["paper", "source", "table"]].values.tolist() == [[81.0, "LWinNN", "Table 4"]]
    assert capsules["difference"].iloc[0] == pytest.approx(85.0 - 81.0)
    assert capsules["paper_in_ci"].iloc[0] is True
    candle = auroc[(auroc["category"] == "candle") & (auroc["method"] == "lwinnn")]
    assert candle["paper"].iloc[0] == 96.0 and candle["paper_in_ci"].iloc[0] is False

    # Two of the four multi-instance categories: compared with LWinNN's group mean, marked 2/4.
    group = auroc[(auroc["category"] == "multiple_instances") & (auroc["method"] == "lwinnn")]
    assert group["paper"].tolist() == [89.4]
    assert group["ours"].iloc[0] == pytest.approx((85.0 + 90.0) / 2)
    assert group["coverage"].iloc[0] == "2/4" and group["paper_in_ci"].iloc[0] is None

    bottle = auroc[(auroc["category"] == "bottle") & (auroc["method"] == "patchcore")]
    assert sorted(bottle[["source", "table", "paper_backbone"]].itertuples(index=False, name=None)) == [
        ("REB", "Table 2", "resnet18"), ("REB", "Table 2", "wide_resnet50_2"), ("ULSAD", "Table 7", "")]
    assert (bottle["difference"] == 99.0 - 100.0).all()
    assert pd.isna(bottle["ci_low"]).all() and bottle["paper_in_ci"].isna().all()
    # PatchCore on capsules appears twice: LWinNN table 4 (75.0) and ULSAD table 19 (69.92).
    capsules_patchcore = auroc[(auroc["category"] == "capsules") & (auroc["method"] == "patchcore")]
    assert sorted(capsules_patchcore["paper"]) == [69.92, 75.0]


def test_loco_kinds_are_averaged_and_compared(tmp_path, fake, monkeypatch):
    grid = {"datasets": {"mvtec_loco": {"data_root": "x", "categories": "all"}}, "methods": ["ldknn"],
            "params": {"k": 45}}
    scores = {category: {"image_auroc": 0.8, "image_auroc_structural": 0.9, "image_auroc_logical": 0.7}
              for category in ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors")}
    results = _sweep(tmp_path, fake, monkeypatch, grid, scores)
    mean = group_averages(results).set_index("category").loc["mean"]
    assert mean["image_auroc_mean_of_kinds"] == pytest.approx(0.8)
    comparison = compare_with_papers(results)
    kinds = comparison[(comparison["category"] == "mean") & (comparison["paper_backbone"] == "resnet18")
                       & (comparison["paper_variant"] == "K=45")].set_index("metric")
    assert kinds.loc["image_auroc_structural", "paper"] == 90.1
    assert kinds.loc["image_auroc_logical", "paper"] == 80.7
    assert kinds.loc["image_auroc_mean_of_kinds", "difference"] == pytest.approx(80.0 - 85.4)


def test_summary_files(tmp_path, fake, monkeypatch):
    grid = toy_grid(["weave", "box", "bad"], methods=["spade", "lwinnn"], window=[3, 7])
    results = _sweep(tmp_path, fake, monkeypatch, grid, {"weave": {"image_auroc": 0.875}})
    paths = write_summary(tmp_path / "out", results)
    table = pd.read_csv(paths["results"])
    assert len(table) == 9 and set(table["status"]) == {"ok", "failed"}
    assert set(table["config"]) == {"spade", "lwinnn (window=3)", "lwinnn (window=7)"}
    markdown = paths["summary_md"].read_text()
    assert "## toy factory" in markdown and "## Failed runs" in markdown
    assert "| texture | weave | 87.5 |" in markdown  # group, category, then one column per config
    assert "ValueError: category bad has no test images." in markdown
    assert "<h2>toy factory</h2>" in paths["summary_html"].read_text()


def test_reproduce_command_end_to_end(tmp_path, fake, monkeypatch, capsys):
    command = " ".join(fake["command"])
    base = ["--dataset", "toy", "--data-root", str(tmp_path), "--categories", "weave,bad",
            "--methods", "spade", "--out", str(tmp_path / "out"), "--evaluate-cmd", command]
    assert cli.main(["reproduce", *base, "--dry-run"]) == 0
    assert "2 runs." in capsys.readouterr().out
    assert cli.main(["reproduce", *base, "--jobs", "2"]) == 1  # one run failed
    assert (tmp_path / "out" / "summary.md").exists()
    monkeypatch.setenv("FAKE_FIXED", "1")
    assert cli.main(["reproduce", *base]) == 0
    assert cli.main(["reproduce", "--out", str(tmp_path / "out"), "--collect-only"]) == 0
    assert len(pd.read_csv(tmp_path / "out" / "results.csv")) == 2


# --- notebooks -------------------------------------------------------------------------------------------

def test_notebook_runs_record_their_result(tmp_path):
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell("category = 'weave'\nresult_path = None\nscale = 1")
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [
        parameters,
        nbformat.v4.new_code_cell("if category == 'bad':\n    raise ValueError('no good images in bad')"),
        nbformat.v4.new_code_cell("import iadtutor.tools.runs\n"
                                  "iadtutor.tools.runs.record_result({'image_auroc': 0.25 * scale}, result_path)"),
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "lesson.ipynb"
    nbformat.write(notebook, path)
    grid = {"notebook": str(path), "datasets": {"toy": {"data_root": str(tmp_path), "categories": ["weave", "bad"]}},
            "params": {"scale": 2}}
    specs = expand_grid(grid)
    records = {r["category"]: r for r in run_sweep(specs, tmp_path / "out", jobs=2, echo=quiet)}
    assert records["weave"]["status"] == "ok"
    assert records["weave"]["metrics"] == {"image_auroc": 0.5}
    assert records["bad"]["status"] == "failed"
    assert records["bad"]["error"] == "ValueError: no good images in bad"
    executed = nbformat.read(tmp_path / "out" / "runs" / records["weave"]["run_id"] / "notebook.ipynb", 4)
    assert "injected-parameters" in executed.cells[1].metadata["tags"]


def test_notebook_runs_with_a_relative_out_folder(tmp_path, monkeypatch):
    """The kernel runs in the notebook's folder: a relative --out must still receive the result."""
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell("category = 'weave'\nresult_path = None")
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell(
        "import iadtutor.tools.runs\niadtutor.tools.runs.record_result({'image_auroc': 0.5}, result_path)")]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "lessons").mkdir()
    nbformat.write(notebook, tmp_path / "lessons" / "lesson.ipynb")
    monkeypatch.chdir(tmp_path)
    grid = {"notebook": "lessons/lesson.ipynb", "datasets": {"toy": {"data_root": ".", "categories": ["weave"]}}}
    (record,) = run_sweep(expand_grid(grid), Path("out"), echo=quiet)
    assert record["status"] == "ok" and record["metrics"] == {"image_auroc": 0.5}
    assert not (tmp_path / "lessons" / "out").exists()


def test_zero_valued_parameters_reach_the_command(tmp_path):
    """0 == False in Python: a parameter of 0 (bootstrap=0, seed=0) must still be passed on."""
    spec = RunSpec(dataset="toy", data_root=str(tmp_path), category="weave", method="spade",
                   params=(("bootstrap", 0), ("seed", 0), ("square", False)), runner="evaluate")
    command, _ = command_for(spec, tmp_path, ["iadtutor", "evaluate"])
    assert command[-4:] == ["--bootstrap", "0", "--seed", "0"]


def test_presets_fall_back_to_efficientnet_lite0_and_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache: no ResNet18 / WRN50 weights
    said = []
    grid = runs.with_available_backbone(json.loads(json.dumps(runs.PRESETS["reb-table2"])), echo=said.append)
    assert grid["params"]["backbone"] == "efficientnet_lite0" and "dimension" not in grid["params"]
    assert runs.PRESETS["reb-table2"]["params"] == {"backbone": "resnet18", "alpha": 1.0, "k": 5, "dimension": 512}
    assert len(said) == 1 and "not the paper's backbone's" in said[0] and str(tmp_path) in said[0]
    toy = runs.PRESETS["toy"]
    assert runs.with_available_backbone(toy, echo=said.append) is toy and len(said) == 1  # nothing to say
