"""Tests of the toy factory: layout on disk, exact masks, determinism, pose knobs, bad input."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import toyfactory as toy
from iadtutor.tools.toy import layout_variant, make_toy
from toyfactory import (
    DEFECT_TYPES,
    DIFF_THRESHOLD,
    TOY_CATEGORIES,
    contact_sheet,
    make_toy_category,
    make_toy_dataset,
    render_defect,
    render_normal,
    render_sample,
    sample_rng,
)

SIZE = 128
SMALL = dict(image_size=SIZE, n_train=2, n_validation=1, n_test_good=1, n_test_per_defect=1, progress=False)


def read(path):
    return np.asarray(Image.open(path))


def all_files(root):
    return sorted(p.relative_to(root) for p in Path(root).rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), **SMALL)


def test_layout_is_mvtec_with_validation_split(small_dataset):
    assert sorted(p.name for p in small_dataset.iterdir()) == sorted(TOY_CATEGORIES)  # no temp folders left
    for category in TOY_CATEGORIES:
        root = small_dataset / category
        expected = {Path("toy_factory.json"), Path("train/good/000.png"), Path("train/good/001.png")}
        expected |= {Path("validation/good/000.png"), Path("test/good/000.png")}
        for defect in DEFECT_TYPES[category]:
            expected |= {Path(f"test/{defect}/000.png"), Path(f"ground_truth/{defect}/000_mask.png")}
        assert set(all_files(root)) == expected
        for png in root.rglob("*.png"):
            with Image.open(png) as image:
                assert image.size == (SIZE, SIZE)
                assert image.mode == ("L" if png.name.endswith("_mask.png") else "RGB")


def test_masks_on_disk_are_binary_and_exactly_where_pixels_changed(small_dataset):
    for category in TOY_CATEGORIES:
        for defect in DEFECT_TYPES[category]:
            image = read(small_dataset / category / "test" / defect / "000.png")
            mask = read(small_dataset / category / "ground_truth" / defect / "000_mask.png")
            assert set(np.unique(mask)) == {0, 255}, (category, defect)
            # render the defect-free twin of the file again, independently of the writer
            rng = sample_rng(0, category, "test", defect, 0)
            reference = render_sample(category, defect, rng, SIZE).reference
            changed = (image != reference).any(axis=2)
            np.testing.assert_array_equal(mask == 255, changed, err_msg=f"{category}/{defect}")


@pytest.mark.parametrize("category", TOY_CATEGORIES)
def test_every_defect_has_a_visible_exact_mask(category):
    for defect in DEFECT_TYPES[category]:
        for seed in range(3):
            sample = render_sample(category, defect, seed, SIZE)
            assert sample.mask.dtype == bool and sample.mask.sum() >= 6, (defect, seed)
            change = np.abs(sample.image.astype(int) - sample.reference.astype(int)).max(axis=2)
            np.testing.assert_array_equal(sample.mask, change > 0)
            assert change[sample.mask].min() > DIFF_THRESHOLD  # every masked pixel changed visibly


@pytest.mark.parametrize("category", TOY_CATEGORIES)
def test_normal_images_have_no_mask(category):
    sample = render_sample(category, "good", 5, SIZE)
    assert not sample.mask.any()
    np.testing.assert_array_equal(sample.image, sample.reference)
    assert sample.image.shape == (SIZE, SIZE, 3) and sample.image.dtype == np.uint8


def test_same_seed_gives_byte_identical_files(tmp_path):
    options = dict(SMALL, categories=["weave", "box"])
    first, second = make_toy_dataset(tmp_path / "a", **options), make_toy_dataset(tmp_path / "b", **options)
    files = all_files(first)
    assert files == all_files(second) and len(files) > 20
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_different_seeds_give_different_images(tmp_path):
    options = dict(SMALL, categories=["pills"])
    first = make_toy_dataset(tmp_path / "a", seed=0, **options)
    second = make_toy_dataset(tmp_path / "b", seed=1, **options)
    for name in all_files(first):
        if name.suffix == ".png" and "ground_truth" not in name.parts:
            assert not np.array_equal(read(first / name), read(second / name)), name


def test_more_training_images_leave_the_test_images_unchanged(tmp_path):
    options = dict(SMALL, categories=["bracket"])
    few = make_toy_dataset(tmp_path / "few", **dict(options, n_train=1))
    many = make_toy_dataset(tmp_path / "many", **dict(options, n_train=3))
    tests = [n for n in all_files(few) if n.parts[1] in ("test", "ground_truth", "validation")]
    assert tests
    for name in tests:
        assert (few / name).read_bytes() == (many / name).read_bytes(), name
    first_train = Path("bracket/train/good/000.png")
    assert (few / first_train).read_bytes() == (many / first_train).read_bytes()


def centroid(mask):
    rows, cols = np.nonzero(mask)
    return np.array([cols.mean(), rows.mean()])


def orientation(mask):
    """Angle (degrees, counter-clockwise on screen) of the principal axis of a binary shape."""
    rows, cols = np.nonzero(mask)
    x, y = cols - cols.mean(), rows - rows.mean()
    return -np.degrees(0.5 * np.arctan2(2 * (x * y).mean(), (x * x).mean() - (y * y).mean()))


def test_translation_knob_moves_the_bracket_by_its_pose():
    still = render_sample("bracket", "good", 0, SIZE, translation=0, rotation=0)
    assert still.pose == (0.0, 0.0, 0.0)
    shifts = []
    for seed in range(8):
        moved = render_sample("bracket", "good", seed, SIZE, translation=0.1, rotation=0)
        dx, dy, angle = moved.pose
        assert angle == 0 and max(abs(dx), abs(dy)) <= 0.1 * SIZE
        shift = centroid(moved.foreground) - centroid(still.foreground)
        np.testing.assert_allclose(shift, [dx, dy], atol=0.75)
        shifts.append(np.hypot(dx, dy))
    assert max(shifts) > 0.05 * SIZE  # the knob really moves it
    # without jitter every bracket sits at the same place
    for seed in range(3):
        again = render_sample("bracket", "good", seed, SIZE, translation=0, rotation=0)
        np.testing.assert_array_equal(again.foreground, still.foreground)


def test_rotation_knob_turns_the_bracket_by_its_pose():
    upright = orientation(render_sample("bracket", "good", 0, SIZE, translation=0, rotation=0).foreground)
    angles = []
    for seed in range(6):
        turned = render_sample("bracket", "good", seed, SIZE, translation=0, rotation=30)
        angle = turned.pose[2]
        assert abs(angle) <= 30 and turned.pose[:2] == (0.0, 0.0)
        assert orientation(turned.foreground) - upright == pytest.approx(angle, abs=1.0)
        angles.append(abs(angle))
    assert max(angles) > 10


def test_default_jitter_of_the_bracket_is_small():
    for seed in range(5):
        dx, dy, angle = render_sample("bracket", "good", seed, SIZE).pose
        assert max(abs(dx), abs(dy)) <= 0.03 * SIZE and abs(angle) <= 4


def count_box_parts(sample):
    """Blobs of grey or brass pixels inside the blue box: nuts, washers and the bolt."""
    rgb = sample.image.astype(int)
    metal = sample.foreground & (rgb[..., 2] - rgb[..., 0] < 40) & (rgb[..., 0] > 90)
    labels, n = ndimage.label(metal)
    sizes = ndimage.sum(metal, labels, range(1, n + 1))
    return int((sizes > 15).sum())


@pytest.mark.parametrize(
    "defect, change", [("good", 0), ("logical_missing", -1), ("logical_extra", 1), ("logical_swapped", 0)]
)
def test_box_logical_anomalies_change_the_number_of_parts(defect, change):
    for seed in range(3):
        sample = render_sample("box", defect, seed, SIZE)
        assert count_box_parts(sample) == 5 + change, seed


@pytest.mark.parametrize("translation, rotation", [(0.5, 180.0), (0.0, 0.0)])
def test_extreme_knobs_still_give_visible_defects(translation, rotation):
    for category in TOY_CATEGORIES:
        for defect in DEFECT_TYPES[category]:
            sample = render_sample(category, defect, 1, 64, translation, rotation)
            assert sample.mask.sum() >= 6


def test_render_helpers_return_images_and_masks():
    image = render_normal("weave", np.random.default_rng(0), 96)
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    image, mask = render_defect("pills", "broken", 3, 96)
    assert image.shape == (96, 96, 3) and mask.shape == (96, 96) and mask.dtype == bool and mask.any()
    again, _ = render_defect("pills", "broken", 3, 96)
    np.testing.assert_array_equal(image, again)


def test_existing_category_is_replaced(tmp_path):
    stale = tmp_path / "weave" / "train" / "good" / "999.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    folder = make_toy_category(tmp_path, "weave", **SMALL)
    assert folder == tmp_path / "weave"
    assert not stale.exists() and (folder / "train/good/001.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["weave"]


def test_interrupted_run_leaves_nothing_half_written(tmp_path, monkeypatch):
    make_toy_category(tmp_path, "box", **SMALL)
    before = {name: (tmp_path / name).read_bytes() for name in all_files(tmp_path)}
    calls = []

    def failing_save(path, array):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        Image.fromarray(array).save(path, format="PNG", compress_level=1)

    monkeypatch.setattr(toy, "_save_png", failing_save)
    with pytest.raises(KeyboardInterrupt):
        make_toy_dataset(tmp_path, categories=["box", "pills"], seed=7, **SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["box"]  # no temp folder, no half-written pills
    assert {name: (tmp_path / name).read_bytes() for name in all_files(tmp_path)} == before


def test_make_toy_accepts_comma_separated_categories(tmp_path, capsys):
    counts = dict(n_train=1, n_validation=0, n_test_good=0, n_test_per_defect=0)
    root = make_toy(tmp_path / "out", 0, "pills, weave", image_size=64, progress=False, **counts)
    assert root == tmp_path / "out"
    assert sorted(p.name for p in root.iterdir()) == ["pills", "weave"]
    assert (root / "pills" / "validation" / "good").is_dir()  # empty splits still have their folder
    assert "pills, weave" in capsys.readouterr().out


def test_contact_sheet_has_a_cell_per_defect():
    sheet = contact_sheet(["pills"], image_size=64)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3
    assert sheet.shape[1] >= (1 + len(DEFECT_TYPES["pills"])) * 64


@pytest.mark.parametrize(
    "options, parameter",
    [
        (dict(categories=["weave", "gears"]), "category"),
        (dict(categories=[]), "categories"),
        (dict(image_size=32), "image_size"),
        (dict(image_size=100.5), "image_size"),
        (dict(n_train=-1), "n_train"),
        (dict(n_test_good=-2), "n_test_good"),
        (dict(n_test_per_defect=-1), "n_test_per_defect"),
        (dict(n_validation=-1), "n_validation"),
        (dict(translation=0.6), "translation"),
        (dict(translation=-0.1), "translation"),
        (dict(rotation=-5), "rotation"),
        (dict(rotation=181), "rotation"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_input_is_refused_with_the_parameter_named(tmp_path, options, parameter):
    with pytest.raises(ValueError, match=parameter):
        make_toy_dataset(tmp_path, progress=False, **options)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bad_render_input_is_refused():
    with pytest.raises(ValueError, match="defect_type"):
        render_sample("weave", "broken")
    with pytest.raises(ValueError, match="category"):
        render_sample("carpet")
    with pytest.raises(ValueError, match="image_size"):
        render_normal("box", 0, image_size=63)


def box_part_blobs(sample):
    """A boolean mask per part in the box: grey or brass pixels, also the dark facets of a nut facing away."""
    rgb = sample.image.astype(int)
    metal = sample.foreground & (rgb[..., 2] - rgb[..., 0] < 30) & (rgb[..., 0] > 60)
    labels, n = ndimage.label(metal)
    return [labels == index for index in range(1, n + 1) if (labels == index).sum() > 15]


def box_round_parts(sample):
    """(kind, x, y) of every nut and washer of an unjittered box, in units of the image side from its centre."""
    rgb = sample.image.astype(int)
    size = rgb.shape[0]
    parts = []
    for blob in box_part_blobs(sample):
        rows, cols = np.nonzero(blob)
        if rows.max() - rows.min() > 0.2 * size:  # the long bolt
            continue
        brass = np.median(rgb[blob, 0] - rgb[blob, 2]) > 60
        parts.append(("washer" if brass else "nut", cols.mean() / size - 0.5, rows.mean() / size - 0.5))
    return parts


def slots_of(kind):
    return np.array([(x, y) for part, x, y in toy.BOX_SLOTS if part == kind])


def distance_to_slots(x, y, kind):
    return float(np.hypot(*(slots_of(kind) - [x, y]).T).min())


TOLERANCE = 2 / SIZE  # a centroid of anti-aliased pixels is within about a pixel of the part's centre


def test_box_slots_layout_keeps_every_normal_part_in_its_slot():
    jitter = toy.BOX_SLOT_JITTER[0] * np.sqrt(2)
    free = []
    for seed in range(4):
        sample = render_sample("box", "good", seed, SIZE, translation=0, rotation=0, layout="slots")
        parts = box_round_parts(sample)
        assert sorted(kind for kind, _, _ in parts) == ["nut", "nut", "washer", "washer"], seed
        for kind, x, y in parts:
            assert distance_to_slots(x, y, kind) <= jitter + TOLERANCE, (seed, kind, x, y)
        default = render_sample("box", "good", seed, SIZE, translation=0, rotation=0)
        free += [distance_to_slots(x, y, kind) for kind, x, y in box_round_parts(default)]
    assert max(free) > 3 * jitter  # the default layout does not keep to the slots


@pytest.mark.parametrize("defect", ["logical_missing", "logical_extra", "logical_swapped", "logical_misplaced"])
def test_box_slots_layout_breaks_the_arrangement_by_the_defect_rule(defect):
    near = toy.BOX_SLOT_JITTER[0] * np.sqrt(2) + TOLERANCE
    for seed in range(3):
        sample = render_sample("box", defect, seed, SIZE, translation=0, rotation=0, layout="slots")
        parts = box_round_parts(sample)
        in_slot = [distance_to_slots(x, y, kind) <= near for kind, x, y in parts]
        in_wrong_slot = [distance_to_slots(x, y, "washer" if kind == "nut" else "nut") <= near
                         for kind, x, y in parts]
        if defect == "logical_missing":  # one part fewer (the bolt counts too), the rest in their slots
            assert len(box_part_blobs(sample)) == 4 and all(in_slot), seed
        elif defect == "logical_extra":  # a sixth part, outside every slot
            assert len(box_part_blobs(sample)) == 6 and len(parts) == 5 and sum(in_slot) == 4, seed
        elif defect == "logical_swapped":  # a nut in a washer's slot and a washer in a nut's
            assert len(parts) == 4 and sum(in_wrong_slot) == 2 and sum(in_slot) == 2, seed
        else:  # one nut or washer away from the slots of its kind, not in a slot of the other kind
            assert len(box_part_blobs(sample)) == 5 and sum(in_slot) == len(parts) - 1 and not any(in_wrong_slot), seed
        assert sample.mask.any()


def nearest_choice_slot(kind, x, y):
    """(index, distance) of the ``"choice"`` slot of ``kind`` nearest to (x, y)."""
    distances = np.hypot(*(np.array(toy.BOX_CHOICE_SLOTS[kind]) - [x, y]).T)
    return int(distances.argmin()), float(distances.min())


def test_box_choice_layout_fills_two_of_three_slots_per_kind_and_every_slot_varies():
    near = toy.BOX_SLOT_JITTER[0] * np.sqrt(2) + TOLERANCE
    filled = {"nut": set(), "washer": set()}
    for seed in range(6):
        sample = render_sample("box", "good", seed, SIZE, translation=0, rotation=0, layout="choice")
        parts = box_round_parts(sample)
        assert sorted(kind for kind, _, _ in parts) == ["nut", "nut", "washer", "washer"], seed
        for kind in filled:
            slots = [nearest_choice_slot(kind, x, y) for k, x, y in parts if k == kind]
            assert all(d <= near for _, d in slots) and len({i for i, _ in slots}) == 2, (seed, kind, slots)
            filled[kind].add(frozenset(i for i, _ in slots))
    assert all(len(patterns) >= 2 for patterns in filled.values())  # which slots are empty changes


def test_box_choice_layout_extra_part_fills_the_empty_slot():
    near = toy.BOX_SLOT_JITTER[0] * np.sqrt(2) + TOLERANCE
    for seed in range(3):
        sample = render_sample("box", "logical_extra", seed, SIZE, translation=0, rotation=0, layout="choice")
        parts = box_round_parts(sample)
        kinds = [kind for kind, _, _ in parts]
        assert len(parts) == 5 and sorted({kinds.count("nut"), kinds.count("washer")}) == [2, 3], seed
        assert all(nearest_choice_slot(kind, x, y)[1] <= near for kind, x, y in parts), seed  # every part in a slot
        assert sample.mask.any()


def test_box_slots_layout_is_written_and_recorded(tmp_path):
    root = make_toy_dataset(tmp_path, categories=["box"], layout="slots", **SMALL)
    info = (root / "box" / "toy_factory.json").read_text()
    assert '"layout": "slots"' in info
    rng = sample_rng(0, "box", "train", "good", 0)
    np.testing.assert_array_equal(read(root / "box/train/good/000.png"),
                                  render_sample("box", "good", rng, SIZE, layout="slots").image)
    default = make_toy_dataset(tmp_path / "default", categories=["box"], **SMALL)
    assert "layout" not in (default / "box" / "toy_factory.json").read_text()  # the default's file is unchanged


def test_bad_layout_is_refused(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        render_sample("weave", layout="slots")
    with pytest.raises(ValueError, match="layout"):
        make_toy_dataset(tmp_path, categories=["box", "pills"], layout="slots", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_layout_variant_is_written_beside_the_data_root_once(tmp_path):
    counts = dict(n_train=2, n_validation=1, n_test_good=3, n_test_per_defect=1)
    root = layout_variant(tmp_path / "toy", "box", "slots", seed=3, **counts)
    assert root == tmp_path / "toy_box_slots" and not (tmp_path / "toy").exists()
    assert len(list((root / "box" / "test" / "good").iterdir())) == 3
    first = root / "box" / "train" / "good" / "000.png"
    np.testing.assert_array_equal(read(first), render_sample("box", "good", sample_rng(3, "box", "train", "good", 0),
                                                             256, layout="slots").image)
    stamp = first.stat().st_mtime_ns
    assert layout_variant(tmp_path / "toy", "box", "slots", seed=3, **counts) == root
    assert first.stat().st_mtime_ns == stamp  # the same settings: not written again
    layout_variant(tmp_path / "toy", "box", "slots", seed=3, **dict(counts, n_test_good=4))
    assert len(list((root / "box" / "test" / "good").iterdir())) == 4  # other settings: written again
    with pytest.raises(ValueError, match="data_root"):
        layout_variant(tmp_path / "toy_box_slots", "box", "slots")
