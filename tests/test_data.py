"""Tests for iadtutor.data on tiny datasets written into tmp_path in each of the six layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iadtutor.data import (
    LAYOUTS,
    AnomalyDataset,
    DatasetError,
    Sample,
    binarize_mask,
    detect_layout,
    find_category,
    list_categories,
    load_image,
    load_mask,
    load_split,
    resize_shape,
)

W, H = 12, 10  # size of every fixture image, in PIL's (width, height) order


def write_image(path: Path, size=(W, H), mode="RGB", seed=0) -> Path:
    """A small random image (random so that resizing is a real test)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = {"RGB": (3,), "L": ()}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], *channels), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def box_array(box, size=(W, H), on=255, dtype=np.uint8) -> np.ndarray:
    """(H, W) array, ``on`` inside box = (x0, y0, x1, y1), 0 elsewhere."""
    array = np.zeros((size[1], size[0]), dtype=dtype)
    x0, y0, x1, y1 = box
    array[y0:y1, x0:x1] = on
    return array


def write_mask(path: Path, box=(2, 3, 6, 7), size=(W, H), on=255) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(box_array(box, size, on)).save(path)
    return path


# ----------------------------------------------------------------------------- fixture datasets

# Each builder writes one category and returns what find_category should report:
# (category, detected layout, n_train, n_validation, [(file name, defect type, n mask files)] of the test set).


def build_mvtec_ad(root: Path, category="bottle"):
    cat = root / category
    write_image(cat / "train/good/000.png")
    write_image(cat / "train/good/001.png", seed=1)
    write_image(cat / "test/good/000.png")
    for defect in ("broken", "crack"):
        write_image(cat / f"test/{defect}/000.png")
        write_mask(cat / f"ground_truth/{defect}/000_mask.png")
    write_image(cat / "test/broken/001.png")
    write_mask(cat / "ground_truth/broken/001_mask.png", box=(0, 0, 3, 3))
    # a macOS resource fork next to the real images must be skipped, not read
    (cat / "train/good/._000.png").write_bytes(b"\x00\x05\x16\x07 not an image")
    expected_test = [
        ("000.png", "broken", 1), ("001.png", "broken", 1), ("000.png", "crack", 1), ("000.png", "good", 0)
    ]
    return category, "mvtec_ad", 2, 0, expected_test


def build_mpdd(root: Path):
    category, _, n_train, n_val, expected_test = build_mvtec_ad(root, "bracket_black")
    return category, "mvtec_ad", n_train, n_val, expected_test  # MPDD is detected as mvtec_ad


def build_mvtec_loco(root: Path):
    cat = root / "juice_bottle"
    write_image(cat / "train/good/000.png")
    write_image(cat / "validation/good/000.png")
    write_image(cat / "validation/good/001.png")
    write_image(cat / "test/good/000.png")
    write_image(cat / "test/logical_anomalies/000.png")
    write_mask(cat / "ground_truth/logical_anomalies/000/000.png", box=(0, 0, 3, 2))
    write_mask(cat / "ground_truth/logical_anomalies/000/001.png", box=(8, 6, 12, 10))
    write_image(cat / "test/structural_anomalies/000.png")
    write_mask(cat / "ground_truth/structural_anomalies/000/000.png")
    (cat / "defects_config.json").write_text(json.dumps([{"defect_name": "any", "pixel_value": 255,
                                                          "saturation_threshold": 1.0, "relative_saturation": True}]))
    expected_test = [
        ("000.png", "good", 0), ("000.png", "logical_anomalies", 2), ("000.png", "structural_anomalies", 1)
    ]
    return "juice_bottle", "mvtec_loco", 1, 2, expected_test


def build_visa(root: Path):
    cat = root / "candle"
    write_image(cat / "train/good/0000.JPG")
    write_image(cat / "train/good/0001.JPG")
    write_image(cat / "test/good/0002.JPG")
    write_image(cat / "test/bad/000.JPG")
    write_mask(cat / "ground_truth/bad/000.png")
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    (root / "split_csv/1cls.csv").write_text("object,split,label,image,mask\n")
    return "candle", "visa", 2, 0, [("000.JPG", "bad", 1), ("0002.JPG", "good", 0)]


def build_btad(root: Path):
    cat = root / "01"
    write_image(cat / "train/ok/0000.bmp")
    write_image(cat / "test/ok/0000.bmp")
    write_image(cat / "test/ko/0000.bmp")
    write_mask(cat / "ground_truth/ko/0000.png")
    write_image(cat / "test/ko/0001.bmp")
    write_mask(cat / "ground_truth/ko/0001.bmp")  # BTAD class 03 stores its masks as .bmp
    return "01", "btad", 1, 0, [("0000.bmp", "ko", 1), ("0001.bmp", "ko", 1), ("0000.bmp", "good", 0)]


BUILDERS = {
    "mvtec_ad": build_mvtec_ad,
    "mpdd": build_mpdd,
    "mvtec_loco": build_mvtec_loco,
    "visa": build_visa,
    "btad": build_btad,
}


def test_every_layout_has_a_fixture():
    assert set(BUILDERS) | {"kolektor"} == set(LAYOUTS)  # KolektorSDD has no train/test folders: tested below


@pytest.mark.parametrize("layout", sorted(BUILDERS))
def test_find_category_reads_splits_labels_defects_and_masks(tmp_path, layout):
    category, detected, n_train, n_val, expected_test = BUILDERS[layout](tmp_path)
    assert detect_layout(tmp_path / category) == detected

    for requested, reported in (("auto", detected), (layout, layout)):
        splits = find_category(tmp_path, category, layout=requested)
        assert splits.layout == reported
        assert splits.root == tmp_path and splits.category == category
        assert splits.category_dir == tmp_path / category
        assert len(splits.train) == n_train and len(splits.validation) == n_val
        for sample in splits.train + splits.validation:
            assert sample.label == 0 and sample.defect_type == "good" and sample.mask_paths == ()
        for split in (splits.train, splits.validation, splits.test):
            assert [s.image_path for s in split] == sorted(s.image_path for s in split)

        found = sorted((s.image_path.name, s.defect_type, len(s.mask_paths)) for s in splits.test)
        assert found == sorted(expected_test)
        for sample in splits.test:
            assert sample.label == int(sample.defect_type != "good")
            assert all(p.exists() and "ground_truth" in p.parts for p in sample.mask_paths)
            assert sample.image_path.parent.parent == tmp_path / category / "test"


@pytest.mark.parametrize("layout", sorted(BUILDERS))
def test_only_loco_splits_have_defect_regions(tmp_path, layout):
    category, *_ = BUILDERS[layout](tmp_path)
    splits = find_category(tmp_path, category)
    test = load_split(splits.test, image_size=6, progress=False)
    if layout != "mvtec_loco":
        assert test.regions is None and all(s.defects_config is None for s in splits.test)
        return
    assert all(s.defects_config == tmp_path / category / "defects_config.json" for s in splits.test)
    assert len(test.regions) == 3  # one per ground-truth file: two of the logical image, one structural
    defect_images = [i for i, label in enumerate(test.labels.tolist()) if label == 1]
    assert test.regions.images.tolist() == [defect_images[0]] * 2 + [defect_images[1]]
    assert torch.equal(test.regions.masks[:2].any(0), test.masks[defect_images[0]])


def test_mvtec_mask_files_are_matched_by_name(tmp_path):
    build_mvtec_ad(tmp_path)
    splits = find_category(tmp_path, "bottle")
    pairs = {(s.image_path.parent.name, s.image_path.name): s.mask_paths for s in splits.test}
    gt = tmp_path / "bottle/ground_truth"
    assert pairs[("broken", "001.png")] == (gt / "broken/001_mask.png",)
    assert pairs[("crack", "000.png")] == (gt / "crack/000_mask.png",)


def test_loco_mask_is_the_union_of_its_files(tmp_path):
    build_mvtec_loco(tmp_path)
    splits = find_category(tmp_path, "juice_bottle")
    (sample,) = [s for s in splits.test if s.defect_type == "logical_anomalies"]
    expected = (box_array((0, 0, 3, 2)) > 0) | (box_array((8, 6, 12, 10)) > 0)
    mask = load_mask(sample, (H, W))
    assert mask.dtype == torch.bool and mask.shape == (H, W)
    assert np.array_equal(mask.numpy(), expected)


def test_btad_masks_in_png_and_bmp(tmp_path):
    build_btad(tmp_path)
    splits = find_category(tmp_path, "01")
    defects = [s for s in splits.test if s.label == 1]
    assert {s.mask_paths[0].suffix for s in defects} == {".png", ".bmp"}
    for sample in defects:
        assert np.array_equal(load_mask(sample, (H, W)).numpy(), box_array((2, 3, 6, 7)) > 0)


def test_list_categories_skips_other_folders_and_filters_by_layout(tmp_path):
    build_mvtec_ad(tmp_path, "bottle")
    build_mvtec_ad(tmp_path, "cable")
    build_btad(tmp_path)
    build_visa(tmp_path)  # also writes split_csv/, which is not a category
    (tmp_path / "license.txt").write_text("CC BY-NC-SA 4.0")
    assert list_categories(tmp_path) == ["01", "bottle", "cable", "candle"]
    assert list_categories(tmp_path, layout="btad") == ["01"]
    assert list_categories(tmp_path, layout="mpdd") == ["bottle", "cable"]
    assert list_categories(tmp_path, layout="mvtec_loco") == []


# ----------------------------------------------------------------------------- errors name the file


def test_unknown_layout_is_rejected(tmp_path):
    build_mvtec_ad(tmp_path)
    with pytest.raises(DatasetError, match="Unknown layout 'mvtec'.*mvtec_ad, mvtec_loco, visa, btad, mpdd"):
        find_category(tmp_path, "bottle", layout="mvtec")
    with pytest.raises(DatasetError, match="Unknown layout"):
        list_categories(tmp_path, layout="dagm")


def test_explicit_layout_that_does_not_match_the_folders(tmp_path):
    build_btad(tmp_path)
    build_mvtec_ad(tmp_path)
    message = r"train[/\\]good of layout 'mvtec_ad' does not exist; .* looks like layout 'btad'"
    with pytest.raises(DatasetError, match=message):
        find_category(tmp_path, "01", layout="mvtec_ad")
    with pytest.raises(DatasetError, match=r"bottle looks like layout 'mvtec_ad', not 'mvtec_loco'"):
        find_category(tmp_path, "bottle", layout="mvtec_loco")
    with pytest.raises(DatasetError, match=r"train[/\\]ok"):
        find_category(tmp_path, "bottle", layout="btad")


def test_missing_category_lists_the_existing_ones(tmp_path):
    build_mvtec_ad(tmp_path, "bottle")
    build_mvtec_ad(tmp_path, "cable")
    with pytest.raises(DatasetError) as info:
        find_category(tmp_path, "screw")
    assert str(tmp_path / "screw") in str(info.value)
    assert "bottle, cable" in str(info.value)
    with pytest.raises(DatasetError, match="Data root .* does not exist"):
        find_category(tmp_path / "nowhere", "bottle")


def test_empty_train_folder_is_named(tmp_path):
    build_mvtec_ad(tmp_path)
    for path in (tmp_path / "bottle/train/good").iterdir():
        path.unlink()
    with pytest.raises(DatasetError) as info:
        find_category(tmp_path, "bottle")
    assert str(tmp_path / "bottle/train/good") in str(info.value)
    assert "holds no images" in str(info.value)


def test_missing_train_folder_is_named(tmp_path):
    write_image(tmp_path / "bottle/test/good/000.png")
    with pytest.raises(DatasetError) as info:
        find_category(tmp_path, "bottle")
    assert str(tmp_path / "bottle/train/good") in str(info.value)


def test_missing_test_folder_is_named(tmp_path):
    write_image(tmp_path / "bottle/train/good/000.png")
    with pytest.raises(DatasetError) as info:
        find_category(tmp_path, "bottle")
    assert str(tmp_path / "bottle/test") in str(info.value)


@pytest.mark.parametrize(
    "builder, missing_mask, image",
    [
        (build_mvtec_ad, "bottle/ground_truth/crack/000_mask.png", "bottle/test/crack/000.png"),
        (build_visa, "candle/ground_truth/bad/000.png", "candle/test/bad/000.JPG"),
        (build_btad, "01/ground_truth/ko/0001.bmp", "01/test/ko/0001.bmp"),
    ],
)
def test_defect_image_without_mask_is_named(tmp_path, builder, missing_mask, image):
    category = builder(tmp_path)[0]
    (tmp_path / missing_mask).unlink()
    with pytest.raises(DatasetError) as info:
        find_category(tmp_path, category)
    assert f"Defect image {tmp_path / image} has no mask" in str(info.value)


def test_loco_defect_image_without_mask_folder_is_named(tmp_path):
    build_mvtec_loco(tmp_path)
    folder = tmp_path / "juice_bottle/ground_truth/structural_anomalies/000"
    (folder / "000.png").unlink()
    with pytest.raises(DatasetError) as info:
        find_category(tmp_path, "juice_bottle")
    assert str(tmp_path / "juice_bottle/test/structural_anomalies/000.png") in str(info.value)
    assert str(folder) in str(info.value)


def test_corrupt_images_are_named(tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not a png file at all")
    truncated = write_image(tmp_path / "truncated.png", size=(64, 64))
    truncated.write_bytes(truncated.read_bytes()[:200])
    for path in (garbage, truncated, tmp_path / "missing.png"):
        with pytest.raises(DatasetError, match=f"Cannot read image {path}"):
            load_image(path, 8)
    with pytest.raises(ValueError, match=f"Cannot read image {truncated}"):  # DatasetError is a ValueError
        load_split([Sample(truncated, 0, "good")], image_size=8, progress=False)


def test_corrupt_mask_is_named(tmp_path):
    image = write_image(tmp_path / "000.png")
    mask = tmp_path / "000_mask.png"
    mask.write_bytes(b"not a mask")
    with pytest.raises(DatasetError, match=f"Cannot read mask {mask}"):
        load_mask(Sample(image, 1, "crack", (mask,)), (H, W))


def test_mask_of_another_size_than_its_image_is_named(tmp_path):
    build_mvtec_ad(tmp_path)
    mask_path = tmp_path / "bottle/ground_truth/crack/000_mask.png"
    write_mask(mask_path, size=(W + 2, H))
    splits = find_category(tmp_path, "bottle")
    (sample,) = [s for s in splits.test if s.defect_type == "crack"]
    with pytest.raises(DatasetError) as info:
        load_mask(sample, (8, 8))
    assert f"Mask {mask_path} is {W + 2}x{H} pixels" in str(info.value)
    assert str(sample.image_path) in str(info.value)
    with pytest.raises(DatasetError, match=str(mask_path)):
        load_split(splits.test, image_size=8, progress=False)


# ----------------------------------------------------------------------------- masks


BOX = box_array((2, 3, 6, 7)) > 0


@pytest.mark.parametrize(
    "array",
    [
        box_array((2, 3, 6, 7), on=255),
        box_array((2, 3, 6, 7), on=254),
        box_array((2, 3, 6, 7), on=1),
        box_array((2, 3, 6, 7), on=True, dtype=bool),
        box_array((2, 3, 6, 7), on=65535, dtype=np.uint16),
        box_array((2, 3, 6, 7), on=0.7, dtype=np.float32),
        np.stack([box_array((2, 3, 6, 7)), np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8)], axis=2),
    ],
    ids=["0/255", "0/254", "0/1", "bool", "0/65535", "float", "HxWx3"],
)
def test_binarize_mask_value_conventions(array):
    result = binarize_mask(array)
    assert result.dtype == np.bool_
    assert np.array_equal(result, BOX)


def test_binarize_mask_antialiased_edges_and_empty():
    soft = box_array((2, 3, 6, 7), on=255)
    soft[3:7, 1] = 100  # faint edge: below half of the maximum, off
    soft[3:7, 6] = 200  # strong edge: above half of the maximum, on
    expected = BOX.copy()
    expected[3:7, 6] = True
    assert np.array_equal(binarize_mask(soft), expected)
    assert not binarize_mask(np.zeros((H, W), np.uint8)).any()
    with pytest.raises(ValueError, match="shape"):
        binarize_mask(np.zeros(5))


def _save_mask_variant(path: Path, variant: str) -> Path:
    box = box_array((2, 3, 6, 7))
    if variant == "L 0/255":
        image = Image.fromarray(box)
    elif variant == "L 0/1":
        image = Image.fromarray(box // 255)
    elif variant == "L 0/254":
        image = Image.fromarray(box // 255 * 254)
    elif variant == "bilevel":
        image = Image.fromarray(box > 0)
    elif variant == "16 bit":
        image = Image.fromarray(box.astype(np.uint16) * 257)
    elif variant == "RGB red":
        rgb = np.zeros((H, W, 3), np.uint8)
        rgb[..., 0] = box
        image = Image.fromarray(rgb)
    elif variant == "paletted":
        image = Image.fromarray(box // 255).convert("P")
        image.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)  # index 1 is a dark red
    elif variant == "all zero":
        image = Image.fromarray(np.zeros((H, W), np.uint8))
    image.save(path)
    return path


@pytest.mark.parametrize(
    "variant", ["L 0/255", "L 0/1", "L 0/254", "bilevel", "16 bit", "RGB red", "paletted", "all zero"]
)
def test_mask_files_of_every_kind_are_binarised(tmp_path, variant):
    image = write_image(tmp_path / "000.png")
    mask_path = _save_mask_variant(tmp_path / "000_mask.png", variant)
    mask = load_mask(Sample(image, 1, "crack", (mask_path,)), (H, W))
    expected = np.zeros((H, W), bool) if variant == "all zero" else BOX
    assert np.array_equal(mask.numpy(), expected)


def test_normal_sample_has_an_all_false_mask(tmp_path):
    mask = load_mask(Sample(tmp_path / "never_read.png", 0, "good"), (5, 7))
    assert mask.dtype == torch.bool and mask.shape == (5, 7) and not mask.any()


def test_mask_resize_is_nearest_neighbour(tmp_path):
    rng = np.random.default_rng(3)
    small = rng.integers(0, 2, size=(H, W)).astype(bool)
    image = write_image(tmp_path / "000.png")
    mask_path = tmp_path / "000_mask.png"
    Image.fromarray(small).save(mask_path)
    sample = Sample(image, 1, "crack", (mask_path,))
    # Doubling repeats every pixel 2x2; halving keeps the pixels at odd rows / columns (the centres).
    assert np.array_equal(load_mask(sample, (2 * H, 2 * W)).numpy(), np.kron(small, np.ones((2, 2), bool)))
    assert np.array_equal(load_mask(sample, (H // 2, W // 2)).numpy(), small[1::2, 1::2])


# ----------------------------------------------------------------------------- images and resizing


def test_resize_shape_square_and_keep_aspect():
    assert resize_shape((200, 300), 100, keep_aspect=False) == (100, 100)
    assert resize_shape((200, 300), 100, keep_aspect=True) == (100, 150)
    assert resize_shape((300, 200), 100, keep_aspect=True) == (150, 100)
    assert resize_shape((4, 7), 2, keep_aspect=True) == (2, 3)  # 3.5 rounds down, as in torchvision
    assert resize_shape((2, 5), 2, keep_aspect=True) == (2, 5)  # exactly 5
    assert resize_shape((5, 5), 7, keep_aspect=True) == (7, 7)
    for bad in (0, -1, 2.5, True, "256"):
        with pytest.raises(ValueError, match="image_size must be a positive integer"):
            resize_shape((10, 10), bad, keep_aspect=False)


def test_load_image_300x200_in_both_modes(tmp_path):
    path = write_image(tmp_path / "wide.png", size=(300, 200))
    square = load_image(path, 100)
    kept = load_image(path, 100, keep_aspect=True)
    assert square.shape == (3, 100, 100) and kept.shape == (3, 100, 150)
    for image in (square, kept):
        assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1


def test_load_image_without_resize_is_exact(tmp_path):
    path = write_image(tmp_path / "000.png")
    expected = np.asarray(Image.open(path), dtype=np.float32).transpose(2, 0, 1) / 255
    image = load_image(path, 10, keep_aspect=True)  # H = 10 is already the shortest side
    assert image.shape == (3, H, W)
    assert torch.equal(image, torch.from_numpy(expected))


def test_load_image_resize_matches_pil_bilinear(tmp_path):
    path = write_image(tmp_path / "big.png", size=(64, 48), seed=5)
    ours = load_image(path, 16).numpy().transpose(1, 2, 0) * 255
    pil = np.asarray(Image.open(path).resize((16, 16), Image.BILINEAR), dtype=np.float32)
    assert np.abs(ours - pil).max() <= 1.5  # PIL rounds to whole grey levels; otherwise the same filter


def test_grayscale_bmp_tif_and_jpg_images_become_rgb(tmp_path):
    gray = write_image(tmp_path / "gray.png", mode="L")
    others = [write_image(tmp_path / name) for name in ("colour.bmp", "colour.tif", "colour.JPG")]
    image = load_image(gray, 10, keep_aspect=True)
    assert image.shape == (3, H, W)
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    expected = np.asarray(Image.open(gray), dtype=np.float32) / 255
    assert torch.equal(image[0], torch.from_numpy(expected))
    for path in others:
        assert load_image(path, 10, keep_aspect=True).shape == (3, H, W)


# ----------------------------------------------------------------------------- datasets in memory


def test_load_split_stacks_images_masks_and_labels(tmp_path):
    build_mvtec_ad(tmp_path)
    splits = find_category(tmp_path, "bottle")
    loaded = load_split(splits.test, image_size=8, progress=False)
    n = len(splits.test)
    assert len(loaded) == n
    assert loaded.images.shape == (n, 3, 8, 8) and loaded.images.dtype == torch.float32
    assert loaded.masks.shape == (n, 8, 8) and loaded.masks.dtype == torch.bool
    assert loaded.labels.dtype == torch.long
    assert loaded.labels.tolist() == [s.label for s in splits.test]
    assert loaded.defect_types == [s.defect_type for s in splits.test]
    assert loaded.paths == [str(s.image_path) for s in splits.test]
    for index, sample in enumerate(splits.test):
        assert torch.equal(loaded.images[index], load_image(sample.image_path, 8))
        assert torch.equal(loaded.masks[index], load_mask(sample, (8, 8)))
        assert loaded.masks[index].any() == bool(sample.label)


def test_load_split_max_images_keeps_the_first(tmp_path):
    build_mvtec_ad(tmp_path)
    splits = find_category(tmp_path, "bottle")
    loaded = load_split(splits.test, image_size=4, progress=False, max_images=2)
    assert loaded.paths == [str(s.image_path) for s in splits.test[:2]]
    assert loaded.images.shape == (2, 3, 4, 4)
    for bad in (0, -3, 1.5):
        with pytest.raises(ValueError, match="max_images"):
            load_split(splits.test, image_size=4, progress=False, max_images=bad)
    with pytest.raises(ValueError, match="no samples"):
        load_split([], image_size=4, progress=False)


def test_keep_aspect_gives_one_shape_per_category_and_masks_follow(tmp_path):
    cat = tmp_path / "wide"
    for name in ("000", "001"):
        write_image(cat / f"train/good/{name}.png", size=(30, 20))
    write_image(cat / "test/crack/000.png", size=(30, 20))
    write_mask(cat / "ground_truth/crack/000_mask.png", box=(0, 0, 15, 20), size=(30, 20))
    splits = find_category(tmp_path, "wide")
    train = load_split(splits.train, image_size=10, keep_aspect=True, progress=False)
    test = load_split(splits.test, image_size=10, keep_aspect=True, progress=False)
    assert train.images.shape == (2, 3, 10, 15)
    assert test.images.shape == (1, 3, 10, 15) and test.masks.shape == (1, 10, 15)
    expected = np.zeros((10, 15), bool)
    expected[:, :7] = True  # output column j samples input column floor((j + 0.5) * 2): j <= 6 is in the left half
    assert np.array_equal(test.masks[0].numpy(), expected)


def test_keep_aspect_with_mixed_original_shapes_is_named(tmp_path):
    first = write_image(tmp_path / "a.png", size=(30, 20))
    odd = write_image(tmp_path / "b.png", size=(20, 20))
    samples = [Sample(first, 0, "good"), Sample(odd, 0, "good")]
    with pytest.raises(DatasetError, match=f"Image {odd} comes out"):
        load_split(samples, image_size=10, keep_aspect=True, progress=False)
    assert load_split(samples, image_size=10, progress=False).images.shape == (2, 3, 10, 10)


def test_anomaly_dataset_items_and_batches(tmp_path):
    build_mvtec_loco(tmp_path)
    splits = find_category(tmp_path, "juice_bottle")
    dataset = AnomalyDataset(splits.test, image_size=6)
    assert len(dataset) == len(splits.test)
    item = dataset[1]
    assert set(item) == {"image", "mask", "label", "defect_type", "path"}
    assert item["image"].shape == (3, 6, 6) and item["mask"].shape == (6, 6)
    assert item["path"] == str(splits.test[1].image_path)
    assert item["label"] == splits.test[1].label and item["defect_type"] == splits.test[1].defect_type
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=len(dataset))))
    assert batch["image"].shape == (len(dataset), 3, 6, 6)
    assert batch["label"].tolist() == [s.label for s in splits.test]


# ----------------------------------------------------------------------------- KolektorSDD


KW, KH = 10, 50  # KolektorSDD parts are tall: 500 x 1235..1285 pixels


def build_kolektor(root: Path, n_items=4, parts=4, defective=(("kos02", 1), ("kos03", 3)), category="kolektorsdd"):
    """kosNN/PartN.jpg (grayscale) + PartN_label.bmp with 0 / 1 labels like the real ones; returns the part paths."""
    normal, bad = [], []
    for item in range(1, n_items + 1):
        for part in range(parts):
            folder = root / category / f"kos{item:02d}"
            image = write_image(folder / f"Part{part}.jpg", size=(KW, KH + part % 2), mode="L", seed=item * 10 + part)
            on = 1 if (folder.name, part) in defective else 0
            write_mask(folder / f"Part{part}_label.bmp", box=(2, 4, 5, 12), size=(KW, KH + part % 2), on=on)
            (bad if on else normal).append(image)
    return normal, bad


def test_kolektor_is_detected_and_defective_parts_are_those_with_a_non_empty_label(tmp_path):
    normal, bad = build_kolektor(tmp_path)
    assert detect_layout(tmp_path / "kolektorsdd") == "kolektor"
    assert list_categories(tmp_path) == ["kolektorsdd"] == list_categories(tmp_path, layout="kolektor")
    for layout in ("auto", "kolektor"):
        splits = find_category(tmp_path, "kolektorsdd", layout=layout)
        assert splits.layout == "kolektor" and splits.validation == []
        assert all(s.label == 0 and s.defect_type == "good" and s.mask_paths == () for s in splits.train)
        test_bad = [s for s in splits.test if s.label == 1]
        assert [s.image_path for s in test_bad] == sorted(bad)
        assert all(s.defect_type == "defect" and s.mask_paths == (s.image_path.with_name(
            s.image_path.stem + "_label.bmp"),) for s in test_bad)
        test_normal = [s.image_path for s in splits.test if s.label == 0]
        train = [s.image_path for s in splits.train]
        assert sorted(train + test_normal) == sorted(normal) and not set(train) & set(test_normal)
        for split in (splits.train, splits.test):
            assert [s.image_path for s in split] == sorted(s.image_path for s in split)


def test_kolektor_normals_are_split_like_anomalib(tmp_path):
    normal, _ = build_kolektor(tmp_path, n_items=6)  # 22 normal parts
    splits = find_category(tmp_path, "kolektorsdd")
    # anomalib: train_test_split(normals ordered by path, train_size=0.8, random_state=42), i.e. sklearn's
    # ShuffleSplit: test = the first ceil(0.2 n) of RandomState(42).permutation(n), train = the rest.
    ordered = sorted(normal, key=str)
    n_test = int(np.ceil(0.2 * len(ordered)))
    permutation = np.random.RandomState(42).permutation(len(ordered))
    assert [s.image_path for s in splits.train] == sorted(ordered[i] for i in permutation[n_test:])
    assert [s.image_path for s in splits.test if s.label == 0] == sorted(ordered[i] for i in permutation[:n_test])
    assert len(splits.train) == int(0.8 * len(ordered))
    other = find_category(tmp_path, "kolektorsdd", split_seed=0)
    assert [s.image_path for s in other.train] != [s.image_path for s in splits.train]
    assert len(find_category(tmp_path, "kolektorsdd", train_fraction=0.5).train) == len(ordered) // 2
    with pytest.raises(ValueError, match="train_fraction"):
        find_category(tmp_path, "kolektorsdd", train_fraction=1.0)


def test_kolektor_part_without_label_and_wrong_layouts_are_named(tmp_path):
    build_kolektor(tmp_path)
    build_mvtec_ad(tmp_path)
    with pytest.raises(DatasetError, match="looks like layout 'mvtec_ad', not 'kolektor'"):
        find_category(tmp_path, "bottle", layout="kolektor")
    with pytest.raises(DatasetError, match="looks like layout 'kolektor'"):
        find_category(tmp_path, "kolektorsdd", layout="mvtec_ad")
    label = tmp_path / "kolektorsdd/kos02/Part2_label.bmp"
    label.unlink()
    with pytest.raises(DatasetError) as info:
        find_category(tmp_path, "kolektorsdd")
    assert str(tmp_path / "kolektorsdd/kos02/Part2.jpg") in str(info.value) and str(label) in str(info.value)


def test_kolektor_tall_parts_keep_their_aspect_and_masks_follow(tmp_path):
    build_kolektor(tmp_path)
    splits = find_category(tmp_path, "kolektorsdd")
    # heights 50 and 51 (2 % apart, like the real 1235..1285 around 1263) come out in the first part's shape
    train = load_split(splits.train, image_size=5, keep_aspect=True, progress=False)
    assert train.images.shape[-2:] == (25, 5)  # first train part: 10 x 50 (or 51) -> 5 x 25
    test = load_split(splits.test, image_size=5, keep_aspect=True, progress=False, output_shape=(25, 5))
    assert test.images.shape == (len(splits.test), 3, 25, 5) and test.masks.shape == (len(splits.test), 25, 5)
    assert test.masks[test.labels == 1].flatten(1).any(1).all() and not test.masks[test.labels == 0].any()
    # the label marks columns 2..4 of 10, rows 4..11: nearest-exact samples at pixel centres
    index = int(np.flatnonzero(test.labels.numpy())[0])
    full = np.zeros((KH + 1, KW), bool) if test.paths[index].endswith(("Part1.jpg", "Part3.jpg")) else np.zeros(
        (KH, KW), bool)
    full[4:12, 2:5] = True
    rows = np.minimum(((np.arange(25) + 0.5) * full.shape[0] / 25).astype(int), full.shape[0] - 1)
    cols = ((np.arange(5) + 0.5) * KW / 5).astype(int)
    assert np.array_equal(test.masks[index].numpy(), full[np.ix_(rows, cols)])
    square = load_split(splits.test, image_size=8, progress=False)
    assert square.images.shape[-2:] == (8, 8)


def test_keep_aspect_tolerates_small_aspect_differences_only(tmp_path):
    first = write_image(tmp_path / "a.png", size=(100, 250))
    close = write_image(tmp_path / "b.png", size=(100, 257))  # 2.8 % taller
    far = write_image(tmp_path / "c.png", size=(100, 260))  # 4 % taller
    samples = [Sample(first, 0, "good"), Sample(close, 0, "good")]
    assert load_split(samples, image_size=10, keep_aspect=True, progress=False).images.shape == (2, 3, 25, 10)
    with pytest.raises(DatasetError, match=f"Image {far} comes out"):
        load_split(samples + [Sample(far, 0, "good")], image_size=10, keep_aspect=True, progress=False)


def test_load_category_gives_train_and_test_one_shape_with_keep_aspect(tmp_path):
    from iadtutor.pipeline import load_category

    build_kolektor(tmp_path, n_items=3)
    splits = find_category(tmp_path, "kolektorsdd")
    # parts are 50 or 51 high: at 10 px wide the splits' first images would give different shapes
    first_train = load_split(splits.train[:1], image_size=10, keep_aspect=True, progress=False)
    first_test = load_split(splits.test[:1], image_size=10, keep_aspect=True, progress=False)
    assert first_train.images.shape[-2:] != first_test.images.shape[-2:]
    category = load_category(tmp_path, "kolektorsdd", image_size=10, keep_aspect=True, progress=False)
    assert category.layout == "kolektor"
    assert category.train.images.shape[-2:] == category.test.images.shape[-2:] == first_train.images.shape[-2:]
    assert category.test.masks.shape[-2:] == first_train.images.shape[-2:]
    assert int(category.test.labels.sum()) == 2
