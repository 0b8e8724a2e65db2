"""`iadtutor evaluate` end to end on a small toy category: the DESIGN.md contract, real weights."""

import json
import subprocess
import sys

import pytest

from toyfactory import make_toy_dataset

CONTRACT_KEYS = {"method", "backbone", "category", "n_train", "n_test", "image_auroc", "pixel_auroc", "aupro",
                 "train_seconds", "test_seconds_per_image"}


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    make_toy_dataset(root, categories=["bracket"], image_size=64, n_train=6, n_test_good=3, n_test_per_defect=1,
                     progress=False)
    return root


def evaluate(*args):
    return subprocess.run([sys.executable, "-m", "iadtutor.tools.cli", "evaluate", *args], capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("method", ["spade", "lwinnn", "patchcore", "ldknn"])
def test_evaluate_prints_contract_json_last(toy_root, tmp_path, method):
    out = tmp_path / "result.json"
    run = evaluate("--data-root", str(toy_root), "--category", "bracket", "--method", method,
                   "--backbone", "efficientnet_lite0", "--image-size", "64", "--window", "3", "--k", "2",
                   "--device", "cpu", "--bootstrap", "50", "--json", str(out), "--quiet")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert CONTRACT_KEYS <= result.keys()
    assert result["method"] == method and result["backbone"] == "efficientnet_lite0"
    assert result["n_train"] == 6 and result["n_test"] == 3 + 4  # 4 bracket defect types, one each
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert 0.0 <= result[key] <= 1.0
    low, high = result["image_auroc_ci"]
    assert low <= result["image_auroc"] <= high
    assert json.loads(out.read_text()) == result


def test_evaluate_is_deterministic(toy_root):
    args = ("--data-root", str(toy_root), "--category", "bracket", "--method", "patchcore", "--backbone",
            "efficientnet_lite0", "--image-size", "64", "--coreset", "0.1", "--bootstrap", "0", "--quiet")
    first, second = (json.loads(evaluate(*args).stdout.strip().splitlines()[-1]) for _ in range(2))
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert first[key] == second[key]


def test_missing_category_is_one_clear_error(toy_root):
    run = evaluate("--data-root", str(toy_root), "--category", "nope", "--method", "spade", "--quiet")
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope" in lines[0] and "bracket" in lines[0]


def test_make_toy_command(tmp_path):
    run = subprocess.run([sys.executable, "-m", "iadtutor.tools.cli", "data", "make-toy", "--out", str(tmp_path / "t"),
                          "--categories", "weave", "--image-size", "64", "--quiet"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "t" / "weave" / "train" / "good").is_dir()
