"""The translation study: its table, skipping finished runs, and equality with `iadtutor evaluate`."""

import json

import pytest
import torch

from iadtutor.tools import cli
from iadtutor.tools import runs
from iadtutor.tools import study

SETTINGS = dict(translations=[0.0, 0.2], rotations=[], methods=["spade", "lwinnn"], windows=[3],
                backbone="efficientnet_lite0", image_size=64, n_train=3, n_test_good=2, n_test_per_defect=1,
                seed=0, device="cpu")


@pytest.fixture(scope="module")
def studied(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("study")
    messages = []
    return root, study.run_study(root, echo=messages.append, **SETTINGS), messages


def test_table_has_one_row_per_variant_and_method(studied):
    _, result, messages = studied
    table = result.table
    assert list(table.columns) == ["translation", "rotation", "method", "window", "label", "image_auroc",
                                   "pixel_auroc", "aupro", "status"]
    assert len(table) == 2 * 2  # 2 translations x (spade, lwinnn δ=3)
    assert list(table["translation"]) == [0.0, 0.0, 0.2, 0.2]
    assert set(table["rotation"]) == {0.0}
    assert list(table["label"]) == ["SPADE (fixed)", "LWinNN δ=3"] * 2
    assert (table["status"] == "ok").all()
    assert table[["image_auroc", "pixel_auroc", "aupro"]].apply(lambda c: c.between(0, 1)).all().all()
    assert len(messages) == 4 and all(" ok " in m for m in messages)
    summary = study.auroc_table(table)
    assert summary.shape == (2, 2) and list(summary.columns) == ["SPADE (fixed)", "LWinNN δ=3"]


def test_the_reproduce_machinery_sees_the_same_runs(studied):
    root, result, _ = studied
    assert result.command == f"iadtutor reproduce --grid {root / 'grid.json'} --out {root} --jobs 1"
    specs = runs.expand_grid(runs.load_grid(result.grid_path))
    assert sorted(spec.run_id for spec in specs) == sorted(result.results["run_id"])
    for spec in specs:
        assert (root / "runs" / spec.run_id / "result.json").is_file()
    assert (root / "results.csv").is_file() and (root / "summary.md").is_file()


def test_rerun_skips_finished_runs(studied):
    root, first, _ = studied
    results = sorted((root / "runs").glob("*/result.json"))
    stamps = [path.stat().st_mtime_ns for path in results]
    messages = []
    again = study.run_study(root, echo=messages.append, **SETTINGS)
    assert messages == ["4 of 4 runs finished before; skipping them."]
    assert {record["status"] for record in again.records} == {"skipped"}
    assert [path.stat().st_mtime_ns for path in results] == stamps
    assert again.table.equals(first.table)


def test_new_image_settings_redo_the_runs(tmp_path):
    torch.set_num_threads(1)
    settings = {**SETTINGS, "translations": [0.1], "methods": ["spade"]}
    study.run_study(tmp_path, echo=lambda message: None, **settings)
    messages = []
    study.run_study(tmp_path, echo=messages.append, **{**settings, "n_train": 2})
    assert len(messages) == 1 and " ok " in messages[0]  # rerun, not skipped
    record = json.loads(next((tmp_path / "runs").glob("*/result.json")).read_text())
    assert record["metrics"]["n_train"] == 2


@pytest.mark.parametrize("method, window", [("spade", None), ("lwinnn", 3)])
def test_results_equal_a_direct_iadtutor_evaluate(studied, capsys, method, window):
    root, result, _ = studied
    capsys.readouterr()
    argv = ["evaluate", "--data-root", str(study.variant_root(root, 0.2, 0.0)), "--category", "bracket",
            "--method", method, "--backbone", "efficientnet_lite0", "--image-size", "64", "--bootstrap", "0",
            "--device", "cpu", "--quiet"]
    if window:
        argv += ["--window", str(window)]
    assert cli.main(argv) == 0
    direct = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    row = result.table[(result.table["translation"] == 0.2) & (result.table["method"] == method)].iloc[0]
    for metric in study.METRICS:
        assert row[metric] == direct[metric], metric


def test_variants_and_bad_input():
    assert study.study_variants([0, 0.1], [0, 30]) == [(0.0, 0.0), (0.1, 0.0), (0.0, 30.0)]
    with pytest.raises(ValueError, match="translations"):
        study.study_variants([0.7], [])
    with pytest.raises(ValueError, match="methods"):
        study.study_grid({}, methods=["ulsad"])
