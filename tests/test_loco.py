"""MVTec LOCO's defect regions (one per ground-truth file, with its saturation area) and the sPRO that
`evaluate_scores` and `iadtutor evaluate` report, on a tiny LOCO-layout category written into tmp_path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iadtutor.data import DEFECTS_CONFIG, DatasetError, find_category, load_mask, load_split, read_defects_config
from iadtutor.pipeline import evaluate_scores
from test_spro import slow_spro  # the threshold-by-threshold definition of sPRO

W, H = 20, 16  # PIL (width, height) of every original image

DEFECTS = [
    {"defect_name": "missing_pin", "pixel_value": 255, "saturation_threshold": 1.0, "relative_saturation": True},
    {"defect_name": "extra_pin", "pixel_value": 100, "saturation_threshold": 12, "relative_saturation": False},
    {"defect_name": "scratch", "pixel_value": 50, "saturation_threshold": 0.5, "relative_saturation": True},
    {"defect_name": "big_stain", "pixel_value": 30, "saturation_threshold": 1000, "relative_saturation": False},
]
# test image -> its ground-truth files 000.png, 001.png, ...: (pixel value, box (x0, y0, x1, y1))
GROUND_TRUTH = {
    "logical_anomalies/000": [(255, (0, 0, 6, 4)), (100, (10, 6, 16, 11))],
    "structural_anomalies/000": [(50, (4, 8, 12, 16))],
    "structural_anomalies/001": [(30, (14, 0, 20, 5)), (50, (12, 2, 18, 8))],  # the two overlap
}
N_GOOD_TEST = 2  # the test split, sorted by path: good/000, good/001, logical/000, structural/000, structural/001


def write_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def box(xyxy, value=1) -> np.ndarray:
    """(H, W) uint8: ``value`` inside the box, 0 elsewhere."""
    x0, y0, x1, y1 = xyxy
    array = np.zeros((H, W), np.uint8)
    array[y0:y1, x0:x1] = value
    return array


def write_loco(root: Path, category="pushpins", ground_truth=GROUND_TRUTH, defects=DEFECTS, n_train=4) -> Path:
    """A LOCO-layout category: train/good, validation/good, test/good, the two anomaly folders, ground truth."""
    cat = root / category
    for i in range(n_train):
        write_image(cat / f"train/good/{i:03d}.png", seed=i)
    write_image(cat / "validation/good/000.png", seed=10)
    for i in range(N_GOOD_TEST):
        write_image(cat / f"test/good/{i:03d}.png", seed=20 + i)
    for n, (image, files) in enumerate(ground_truth.items()):
        write_image(cat / f"test/{image}.png", seed=30 + n)
        for i, (value, xyxy) in enumerate(files):
            (cat / "ground_truth" / image).mkdir(parents=True, exist_ok=True)
            Image.fromarray(box(xyxy, value)).save(cat / "ground_truth" / image / f"{i:03d}.png")
    (cat / DEFECTS_CONFIG).write_text(json.dumps(defects))
    return cat


def nearest(mask: np.ndarray, shape) -> np.ndarray:
    """Nearest-neighbour resize by hand: output pixel (i, j) takes the input pixel under its centre."""
    rows = np.floor((np.arange(shape[0]) + 0.5) * mask.shape[0] / shape[0]).astype(int)
    cols = np.floor((np.arange(shape[1]) + 0.5) * mask.shape[1] / shape[1]).astype(int)
    return mask[rows][:, cols]


def expected_regions(shape):
    """(image index, pixel value, defect name, mask, saturation area) per ground-truth file, from the config."""
    config = {d["pixel_value"]: d for d in DEFECTS}
    scale = shape[0] * shape[1] / (H * W)
    found = []
    for index, files in enumerate(GROUND_TRUTH.values(), start=N_GOOD_TEST):
        for value, xyxy in files:
            mask = nearest(box(xyxy) > 0, shape)
            defect = config[value]
            if defect["relative_saturation"]:
                saturation = defect["saturation_threshold"] * mask.sum()
            else:
                saturation = min(defect["saturation_threshold"] * scale, mask.sum())
            found.append((index, value, defect["defect_name"], mask, saturation))
    return found


def load_test(cat: Path, **load):
    return load_split(find_category(cat.parent, cat.name).test, progress=False, **load)


# ----------------------------------------------------------------------------- the reader

SHAPES = {  # load_split arguments -> the loaded (H, W)
    "original": ({"output_shape": (H, W)}, (H, W)),
    "square": ({"image_size": 8}, (8, 8)),
    "keep_aspect": ({"image_size": 8, "keep_aspect": True}, (8, 10)),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_regions_are_the_ground_truth_files_with_their_saturation_areas(tmp_path, name):
    load, shape = SHAPES[name]
    test = load_test(write_loco(tmp_path), **load)
    regions, expected = test.regions, expected_regions(shape)
    assert len(regions) == len(expected) == 5
    assert regions.masks.dtype == torch.bool and regions.masks.shape == (5, *shape)
    assert regions.images.tolist() == [e[0] for e in expected] == [2, 2, 3, 4, 4]
    assert regions.pixel_values.tolist() == [e[1] for e in expected]
    assert regions.defect_names == [e[2] for e in expected]
    assert [Path(p).name for p in regions.paths] == ["000.png", "001.png", "000.png", "000.png", "001.png"]
    for mask, (*_, expected_mask, _) in zip(regions.masks, expected):
        assert np.array_equal(mask.numpy(), expected_mask)
    assert regions.saturation.dtype == torch.float64
    np.testing.assert_allclose(regions.saturation.numpy(), [e[4] for e in expected])
    # the union mask is still the one load_mask reads, for every image
    splits = find_category(tmp_path, "pushpins")
    for sample, mask in zip(splits.test, test.masks):
        assert torch.equal(mask, load_mask(sample, shape))


def test_saturation_by_hand_for_relative_and_absolute_thresholds(tmp_path):
    test = load_test(write_loco(tmp_path), output_shape=(H, W))
    # original size: relative 1.0 of 24 px, absolute 12 px (< 30 px), 0.5 of 64 px, absolute 1000 capped at 30 px
    assert test.regions.saturation.tolist() == [24.0, 12.0, 32.0, 30.0, 18.0]
    small = load_test(tmp_path / "pushpins", image_size=8)
    # 8x8 is 0.2 of the 16x20 pixels: the 6x5-px box keeps 2x2 px; 12 px -> 2.4 px; 1000 px -> capped at 4 px
    assert small.regions.saturation[1].item() == pytest.approx(2.4)
    assert small.regions.masks[3].sum() == 4 and small.regions.saturation[3].item() == 4.0


def test_other_splits_and_layouts(tmp_path):
    cat = write_loco(tmp_path)
    splits = find_category(tmp_path, "pushpins")
    assert all(s.defects_config == cat / DEFECTS_CONFIG for s in splits.train + splits.validation + splits.test)
    train = load_split(splits.train, image_size=8, progress=False)
    assert len(train.regions) == 0 and train.regions.masks.shape == (0, 8, 8)
    plain = [replace(s, defects_config=None) for s in splits.test]  # what every other layout reads
    assert load_split(plain, image_size=8, progress=False).regions is None


def test_a_region_thinner_than_a_loaded_pixel_is_left_out(tmp_path):
    ground_truth = {**GROUND_TRUTH, "structural_anomalies/000": [(50, (4, 8, 12, 16)), (50, (0, 0, 1, 1))]}
    cat = write_loco(tmp_path, ground_truth=ground_truth)
    assert len(load_test(cat, output_shape=(H, W)).regions) == 6
    small = load_test(cat, image_size=8)  # the 8x8 grid samples rows / columns 1, 3, ...: pixel (0, 0) is lost
    assert len(small.regions) == 5 and small.regions.images.tolist() == [2, 2, 3, 4, 4]


def test_read_defects_config(tmp_path):
    cat = write_loco(tmp_path)
    defects = read_defects_config(cat / DEFECTS_CONFIG)
    assert sorted(defects) == [30, 50, 100, 255]
    assert defects[100].defect_name == "extra_pin" and defects[100].saturation_threshold == 12.0
    assert defects[100].relative_saturation is False and defects[255].relative_saturation is True


# ----------------------------------------------------------------------------- bad input, one sentence each


def broken_config(tmp_path, text: str) -> Path:
    cat = write_loco(tmp_path)
    (cat / DEFECTS_CONFIG).write_text(text)
    return cat


def config_error(tmp_path, text: str) -> str:
    cat = broken_config(tmp_path, text)
    with pytest.raises(DatasetError) as error:
        load_test(cat, image_size=8)
    assert str(cat / DEFECTS_CONFIG) in str(error.value)
    return str(error.value)


def test_missing_defects_config_is_named(tmp_path):
    cat = write_loco(tmp_path)
    (cat / DEFECTS_CONFIG).unlink()
    splits = find_category(tmp_path, "pushpins")  # finding files does not need it
    with pytest.raises(DatasetError, match=f"defects file {cat / DEFECTS_CONFIG} does not exist"):
        load_split(splits.test, image_size=8, progress=False)
    assert len(load_split(splits.train, image_size=8, progress=False).regions) == 0  # no defect, no config


@pytest.mark.parametrize("entries, message", [
    ([{k: v for k, v in DEFECTS[0].items() if k != "saturation_threshold"}], "Entry 0 of .* lacks the key.s. "
     "saturation_threshold: expected a JSON list of objects with the keys defect_name, pixel_value"),
    ([DEFECTS[0], {"defect_name": "x"}], "Entry 1 of .* lacks the key.s. pixel_value, saturation_threshold, "
     "relative_saturation"),
    ([{**DEFECTS[0], "relative_saturation": "yes"}], "Entry 0 of .* must have a pixel_value from 1 to 255"),
    ([{**DEFECTS[0], "saturation_threshold": 0}], "Entry 0 of .* a saturation_threshold above 0"),
    ([DEFECTS[0], DEFECTS[0]], "Entry 1 of .* that no other entry has"),
    ({"defects": DEFECTS}, "must hold a JSON list of objects"),
])
def test_bad_defects_config_is_one_sentence(tmp_path, entries, message):
    text = config_error(tmp_path, json.dumps(entries))
    assert re.search(message, text) and text.count(". ") == 0 and text.endswith(".")


def test_unreadable_json_is_named(tmp_path):
    assert "Cannot read" in config_error(tmp_path, "[{not json")


def test_pixel_value_missing_from_the_config_is_named(tmp_path):
    cat = write_loco(tmp_path)
    gt = cat / "ground_truth/structural_anomalies/000/000.png"
    Image.fromarray(box((4, 8, 12, 16), 77)).save(gt)
    with pytest.raises(DatasetError, match=f"Ground-truth file {gt} has pixel value 77, which "
                       f"{cat / DEFECTS_CONFIG} does not list .it lists \\[30, 50, 100, 255\\]"):
        load_test(cat, image_size=8)


def test_ground_truth_file_with_two_values_is_named(tmp_path):
    cat = write_loco(tmp_path)
    gt = cat / "ground_truth/structural_anomalies/000/000.png"
    Image.fromarray(box((4, 8, 12, 16), 50) + box((0, 0, 2, 2), 100)).save(gt)
    with pytest.raises(DatasetError, match=f"Ground-truth file {gt} holds the non-zero pixel values \\[50, 100\\]"):
        load_test(cat, image_size=8)


# ----------------------------------------------------------------------------- sPRO in evaluate_scores


@pytest.mark.parametrize("name, seed", [("original", 0), ("square", 1), ("keep_aspect", 2)])
def test_evaluate_scores_reports_spro_as_defined(tmp_path, name, seed):
    load, shape = SHAPES[name]
    test = load_test(write_loco(tmp_path), **load)
    rng = np.random.default_rng(seed)
    maps = rng.random((len(test), *shape)).round(2)  # rounding makes ties, as real maps have
    maps += 0.3 * test.masks.numpy()  # defects score higher, so the curve is not trivial
    scores = maps.reshape(len(test), -1).max(1)
    result = evaluate_scores(test, scores, maps)
    regions = test.regions
    expected = slow_spro(regions.masks.numpy(), regions.images.numpy(), regions.saturation.numpy(), maps, 0.05)
    assert 0.05 < expected < 0.95
    assert result["spro"] == pytest.approx(expected, abs=1e-12)
    # nothing else changes: the same record without regions, minus spro
    plain = evaluate_scores(replace(test, regions=None), scores, maps)
    assert "spro" not in plain and {k: v for k, v in result.items() if k != "spro"} == plain


def half_covered(tmp_path, called_pixels: int) -> float:
    """sPRO of one 4x2 region (saturation 0.5 of its area: 4 px) whose first ``called_pixels`` score 1."""
    defects = [{"defect_name": "half", "pixel_value": 200, "saturation_threshold": 0.5, "relative_saturation": True}]
    cat = write_loco(tmp_path, "half", {"logical_anomalies/000": [(200, (8, 6, 12, 8))]}, defects)
    test = load_test(cat, output_shape=(H, W))
    assert test.regions.saturation.tolist() == [4.0]
    maps = np.zeros((len(test), H, W))
    region = np.argwhere(test.regions.masks[0].numpy())
    for y, x in region[:called_pixels]:
        maps[test.regions.images[0], y, x] = 1.0
    return evaluate_scores(test, maps.reshape(len(test), -1).max(1), maps)["spro"]


def test_spro_by_hand_half_covered_region(tmp_path):
    # Half the region called at threshold 1 with no false positive: saturated, sPRO 1 from FPR 0 on.
    assert half_covered(tmp_path, 4) == pytest.approx(1.0)
    # Three of its four saturating pixels: 0.75 at FPR 0, then the straight line to (1, 1) at threshold 0,
    # which is 0.75 + 0.05 * 0.25 at FPR 0.05: the mean height (0.75 + 0.7625) / 2.
    assert half_covered(tmp_path / "b", 3) == pytest.approx(0.75625)


def test_no_spro_without_defect_regions(tmp_path):
    write_loco(tmp_path)
    splits = find_category(tmp_path, "pushpins")
    test = load_split(splits.test, image_size=8, progress=False)
    no_regions = load_split(splits.train, image_size=8, progress=False).regions  # LOCO, but R = 0
    maps = np.random.default_rng(0).random((len(test), 8, 8))
    assert "spro" in evaluate_scores(test, maps.max((1, 2)), maps)
    assert "spro" not in evaluate_scores(replace(test, regions=no_regions), maps.max((1, 2)), maps)


# ----------------------------------------------------------------------------- iadtutor evaluate


def test_cli_evaluate_reports_spro_on_loco(tmp_path):
    write_loco(tmp_path)
    run = subprocess.run([sys.executable, "-m", "iadtutor.tools.cli", "evaluate", "--data-root", str(tmp_path),
                          "--category", "pushpins", "--method", "spade", "--backbone", "efficientnet_lite0",
                          "--image-size", "64", "--device", "cpu", "--bootstrap", "0", "--quiet"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["layout"] == "mvtec_loco" and result["n_test"] == N_GOOD_TEST + len(GROUND_TRUTH)
    assert 0.0 <= result["spro"] <= 1.0
    assert 0.0 <= result["aupro"] <= 1.0
