"""The translation study: its table, skipping finished runs, and equality with `iadtutor evaluate`."""

import json

import pandas as pd
import pytest
import torch

import toyfactory as toy
from iadtutor import pipeline
from iadtutor.backbones import load_backbone
from iadtutor.embed import EmbeddingConfig, PatchEmbedder
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
    assert list(table.columns) == ["translation", "rotation", "seed", "method", "window", "label", "image_auroc",
                                   "pixel_auroc", "aupro", "status"]
    assert set(table["seed"]) == {0}
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


def test_a_run_equals_iadtutor_evaluate_in_a_subprocess(studied, tmp_path):
    """An in-process run is one pipeline.evaluate call of its options: the `iadtutor evaluate` subprocess
    that `iadtutor reproduce` would start for the same run prints the same record, timings aside."""
    root, result, _ = studied
    spec = next(s for s in runs.expand_grid(runs.load_grid(result.grid_path))
                if s.method == "lwinnn" and s.dataset == "toy_t0.2_r0")
    theirs = runs.execute_run(spec, tmp_path, threads=1)
    assert theirs["status"] == "ok", theirs.get("error")
    ours = runs.read_json(root / "runs" / spec.run_id / "result.json")
    assert ours["runner_mode"] == "in-process" and "--window 3" in ours["command"]
    timings = ("train_seconds", "test_seconds_per_image")
    assert {k: v for k, v in ours["metrics"].items() if k not in timings} == \
        {k: v for k, v in theirs["metrics"].items() if k not in timings}
    assert theirs["metrics"]["params"] == {"window": 3} and theirs["metrics"]["embedding"]["layers"] == [0, 1, 2]


def test_a_run_equals_iadtutor_evaluate_called_here(studied, capsys):
    root, result, _ = studied
    capsys.readouterr()
    argv = ["evaluate", "--data-root", str(study.variant_root(root, 0.2, 0.0)), "--category", "bracket",
            "--method", "spade", "--backbone", "efficientnet_lite0", "--image-size", "64", "--bootstrap", "0",
            "--device", "cpu", "--quiet"]
    assert cli.main(argv) == 0
    direct = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    row = result.table[(result.table["translation"] == 0.2) & (result.table["method"] == "spade")].iloc[0]
    for metric in study.METRICS:
        assert row[metric] == direct[metric], metric


def test_both_studies_write_the_same_images(studied, tmp_path):
    """Notebook 03's variant (beside a toy set) and notebook 08's (in the study folder) come from one writer:
    with the same settings they hold the same files, byte for byte."""
    root, _, _ = studied
    options = {name: SETTINGS[name] for name in ("image_size", "n_train", "n_test_good", "n_test_per_defect", "seed")}
    beside = study.make_translated_toy(tmp_path / "toy", 0.2, rotation=0.0, **options) / "bracket"
    inside = study.variant_root(root, 0.2, 0.0) / "bracket"
    names = sorted(p.relative_to(inside) for p in inside.rglob("*.png"))
    assert len(names) == 3 + 2 + 4 * 1 * 2  # train, test/good, test/defects with their masks
    assert names == sorted(p.relative_to(beside) for p in beside.rglob("*.png"))
    assert all((inside / name).read_bytes() == (beside / name).read_bytes() for name in names)


def test_a_run_with_an_option_evaluate_lacks_fails_alone(tmp_path):
    bad = runs.RunSpec("toy", "bracket", "spade", (("colour", "red"),), str(tmp_path))
    records = study.run_in_process([bad], tmp_path / "out", echo=lambda message: None)
    assert records[0]["status"] == "failed" and "no option --colour" in records[0]["error"]
    with pytest.raises(ValueError, match="in-process"):
        study.run_in_process([runs.RunSpec("toy", "bracket", "ulsad")], tmp_path / "out", echo=print)


def test_variants_and_bad_input():
    assert study.study_variants([0, 0.1], [0, 30]) == [(0.0, 0.0), (0.1, 0.0), (0.0, 30.0)]
    with pytest.raises(ValueError, match="translations"):
        study.study_variants([0.7], [])
    with pytest.raises(ValueError, match="methods"):
        study.study_grid({}, methods=["ulsad"])


# ----------------------------------------------------------------------------- rankings across toy seeds
def test_across_seeds_repeats_the_comparison_on_each_seed(tmp_path):
    toy.make_toy_category(tmp_path / "toy", "bracket", seed=0, image_size=64, n_train=3, n_validation=0,
                          n_test_good=2, n_test_per_defect=1, progress=False)
    embedder = PatchEmbedder(load_backbone("efficientnet_lite0", verbose=False), EmbeddingConfig(image_size=64))
    methods = {"fixed": ("spade", {}), "window 3": ("lwinnn", {"window": 3})}
    table = study.across_seeds(tmp_path / "toy", "bracket", [0, 1], embedder, methods, max_train=3, bootstrap=20)
    assert list(table["seed"]) == [0, 0, 1, 1] and list(table["method"]) == ["fixed", "window 3"] * 2
    assert (tmp_path / "toy_seed_1" / "bracket" / "train").is_dir()  # written beside, seed 0 untouched
    seed_1 = pipeline.load_category(tmp_path / "toy_seed_1", "bracket", image_size=64, max_train=3, progress=False)
    expected, _ = pipeline.compare_methods(pipeline.embed_category(seed_1, embedder, progress=False), methods,
                                           seed=1, bootstrap=20)
    for label in methods:
        row = table[(table.seed == 1) & (table.method == label)].iloc[0]
        assert row["image_auroc"] == expected.loc[label, "image_auroc"]
        assert row["aupro_ci"] == expected.loc[label, "aupro_ci"]
    with pytest.raises(ValueError, match="seeds and methods"):
        study.across_seeds(tmp_path / "toy", "bracket", [], embedder, methods)


def test_a_study_over_toy_seeds_ranks_every_knob_setting(tmp_path):
    settings = {**SETTINGS, "translations": [0.2], "seeds": [0, 1], "bootstrap": 20}
    result = study.run_study(tmp_path, echo=lambda message: None, **settings)
    table = result.table
    assert list(table["seed"]) == [0, 1, 0, 1] and list(table["label"]) == ["SPADE (fixed)"] * 2 + ["LWinNN δ=3"] * 2
    assert (tmp_path / "variants" / "seed_1" / "rotation_0" / "toy_translation_0.2" / "bracket").is_dir()
    for _, row in table.iterrows():  # every run carries its own interval
        assert row["image_auroc_ci"][0] <= row["image_auroc"] <= row["image_auroc_ci"][1]
    means = study.auroc_table(table)
    lwinnn = table[table["label"] == "LWinNN δ=3"]["image_auroc"]
    assert means.loc[(0.2, 0.0), "LWinNN δ=3"] == round(lwinnn.mean(), 3)
    spread = study.auroc_table(table, spread=True)
    low, high = lwinnn.min(), lwinnn.max()
    assert spread.loc[(0.2, 0.0), "LWinNN δ=3"] == f"{lwinnn.mean():.3f} [{low:.3f}, {high:.3f}]"
    ranks = study.rank_table(table)
    expected = study.seed_ranking(table.drop(columns="method").rename(columns={"label": "method"}))
    assert ranks.loc[(0.2, 0.0), "SPADE (fixed)"] == expected.loc["SPADE (fixed)", "ranks"]
    assert ranks.loc[(0.2, 0.0), "same order"] == bool(expected["same rank"].all())
    with pytest.raises(ValueError, match="seeds must hold"):
        study.run_study(tmp_path, echo=lambda message: None, **{**settings, "seeds": []})


def test_seed_ranking_orders_methods_and_says_whether_the_order_holds():
    table = pd.DataFrame({"seed": [0, 0, 1, 1, 2, 2], "method": ["a", "b"] * 3,
                          "image_auroc": [0.9, 0.7, 0.8, 0.6, 0.75, 0.5]})
    ranking = study.seed_ranking(table)
    assert list(ranking.index) == ["a", "b"] and list(ranking["ranks"]) == ["1, 1, 1", "2, 2, 2"]
    assert list(ranking["seed 1"]) == [0.8, 0.6] and ranking.loc["b", "mean"] == pytest.approx(0.6)
    assert ranking["same rank"].all()
    table.loc[5, "image_auroc"] = 0.8
    changed = study.seed_ranking(table)
    assert list(changed["ranks"]) == ["1, 1, 2", "2, 2, 1"] and not changed["same rank"].any()
    table.loc[5, "image_auroc"] = 0.75  # a tie shares the better rank
    assert list(study.seed_ranking(table)["ranks"]) == ["1, 1, 1", "2, 2, 1"]
