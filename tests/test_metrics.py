"""Tests for iadtutor.metrics: hand-made cases with known answers, a slow threshold-by-threshold PRO
computation written independently here, scikit-learn and brute-force pair counts for AUROC."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from iadtutor.metrics import (
    aupro,
    aupro_ci,
    bootstrap_ci,
    evaluate_maps,
    image_auroc,
    image_auroc_ci,
    label_regions,
    pixel_auroc,
    pixel_auroc_ci,
    pro_curve,
)


# ----------------------------------------------------------------------------------------------------
# Independent slow reference: one threshold at a time, straight from the definition
# ----------------------------------------------------------------------------------------------------
def slow_pro_points(masks, maps):
    """(fpr, pro) for a threshold above every score and then for every distinct score, high to low."""
    region_masks = []  # (image index, boolean mask of one 8-connected region)
    for i, mask in enumerate(masks):
        labelled, n = ndimage.label(mask, structure=np.ones((3, 3)))
        region_masks += [(i, labelled == k) for k in range(1, n + 1)]
    normal = ~masks
    fprs, pros = [0.0], [0.0]
    for threshold in np.unique(maps)[::-1]:
        called = maps >= threshold
        fprs.append((called & normal).sum() / normal.sum())
        pros.append(np.mean([called[i][region].mean() for i, region in region_masks]))
    return np.array(fprs), np.array(pros)


def slow_aupro(masks, maps, fpr_limit):
    """Trapezoids one by one up to fpr_limit, the last one ending at fpr_limit by linear interpolation."""
    fprs, pros = slow_pro_points(masks, maps)
    area = 0.0
    for k in range(1, len(fprs)):
        x0, x1, y0, y1 = fprs[k - 1], fprs[k], pros[k - 1], pros[k]
        if x1 <= fpr_limit:
            area += (x1 - x0) * (y0 + y1) / 2
        else:
            y_at_limit = y0 + (fpr_limit - x0) / (x1 - x0) * (y1 - y0)
            area += (fpr_limit - x0) * (y0 + y_at_limit) / 2
            break
    return area / fpr_limit


def random_case(seed, n_images=4, size=12, n_rects=3, decimals=None):
    """Masks of random (often touching) rectangles and random maps, loosely correlated with the masks."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_images, size, size), bool)
    for i in range(1, n_images):  # image 0 stays normal
        for _ in range(rng.integers(1, n_rects + 1)):
            y, x = rng.integers(0, size - 2, 2)
            h, w = rng.integers(1, 5, 2)
            masks[i, y : y + h, x : x + w] = True
    maps = rng.random(masks.shape) + 0.5 * masks * rng.random(masks.shape)
    if decimals is not None:  # create many ties
        maps = np.round(maps, decimals)
    return masks, maps


# ----------------------------------------------------------------------------------------------------
# Hand-made cases with known answers
# ----------------------------------------------------------------------------------------------------
def hand_case():
    """Two 4x4 images; region R1 (2x2 block, 4 px) in image A, region R2 (2 diagonal px) in image B.

    Image A               Image B
    .9 .9 .1 .1           .9 .1 .1 .1      R1 = A[0:2, 0:2] scores .9 .9 .5 .5
    .5 .5 .7 .1           .1 .3 .1 .5      R2 = B[0,0], B[1,1] scores .9 .3 (diagonal: one region
    .1 .1 .1 .1           .1 .1 .1 .1           with 8-connectivity)
    .1 .1 .1 .1           .1 .1 .1 .1      normal pixels: 12 + 14 = 26; .7 in A, .5 in B, rest .1

    threshold  called normals  FPR    R1 overlap  R2 overlap  PRO
       .9           0          0        2/4         1/2       0.5
       .7           1          1/26     2/4         1/2       0.5
       .5           2          2/26     4/4         1/2       0.75
       .3           2          2/26     4/4         2/2       1.0
       .1          26          1        1           1         1.0
    AUPRO@0.3 = [0.5 * 1/26 + (0.5 + 0.75)/2 * 1/26 + 1.0 * (0.3 - 2/26)] / 0.3
    (the last segment runs from (2/26, 1) to (1, 1), so the curve at 0.3 is 1).
    """
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 0:2, 0:2] = True
    masks[1, 0, 0] = masks[1, 1, 1] = True
    maps = np.full((2, 4, 4), 0.1)
    maps[0, 0, 0:2] = 0.9
    maps[0, 1, 0:2] = 0.5
    maps[0, 1, 2] = 0.7
    maps[1, 0, 0] = 0.9
    maps[1, 1, 1] = 0.3
    maps[1, 1, 3] = 0.5
    return masks, maps


def test_hand_case_pro_curve_and_aupro():
    masks, maps = hand_case()
    fpr, pro = pro_curve(masks, maps, fpr_limit=1.0)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 26, 2 / 26, 2 / 26, 1], atol=1e-12)
    np.testing.assert_allclose(pro, [0, 0.5, 0.5, 0.75, 1.0, 1.0], atol=1e-12)

    fpr, pro = pro_curve(masks, maps, fpr_limit=0.3)
    assert fpr[-1] == 0.3 and pro[-1] == pytest.approx(1.0)
    expected = (0.5 / 26 + 0.625 / 26 + (0.3 - 2 / 26)) / 0.3
    assert aupro(masks, maps) == pytest.approx(expected, abs=1e-12)
    assert aupro(masks, maps) == pytest.approx(slow_aupro(masks, maps, 0.3), abs=1e-12)


def test_hand_case_interpolates_inside_a_segment():
    # At fpr_limit = 1.5/26 the curve lies halfway along the segment (1/26, .5) -> (2/26, .75).
    masks, maps = hand_case()
    limit = 1.5 / 26
    fpr, pro = pro_curve(masks, maps, fpr_limit=limit)
    assert fpr[-1] == limit and pro[-1] == pytest.approx(0.625)
    expected = (0.5 / 26 + (0.5 + 0.625) / 2 * (0.5 / 26)) / limit
    assert aupro(masks, maps, fpr_limit=limit) == pytest.approx(expected, abs=1e-12)


def test_regions_are_eight_connected_and_per_image():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 0, 0] = masks[0, 1, 1] = True  # diagonal neighbours: one region
    masks[0, 3, 3] = True  # a second region
    masks[1, 0, 0] = True  # same place in the next image: its own region
    regions, n_regions = label_regions(masks)
    assert n_regions == 3
    assert regions[0, 0, 0] == regions[0, 1, 1] != regions[0, 3, 3]
    assert regions[1, 0, 0] not in (0, regions[0, 0, 0], regions[0, 3, 3])


def test_every_region_counts_the_same_whatever_its_size():
    # A found 30-pixel region and a missed 1-pixel region: PRO 0.5 at FPR 0 (pixel recall would be 30/31).
    masks = np.zeros((1, 10, 10), bool)
    masks[0, :3, :] = True
    masks[0, 9, 9] = True
    maps = masks * 1.0
    maps[0, 9, 9] = 0.0
    fpr, pro = pro_curve(masks, maps, fpr_limit=1.0)
    np.testing.assert_allclose(fpr, [0, 0, 1])
    np.testing.assert_allclose(pro, [0, 0.5, 1])


def perfect_case():
    masks, _ = random_case(seed=1, n_images=6, size=16)
    labels = masks.reshape(len(masks), -1).any(axis=1).astype(int)
    return labels, masks


def test_perfect_map_scores_one():
    labels, masks = perfect_case()
    maps = masks.astype(np.float32)
    assert image_auroc(labels, maps.reshape(len(maps), -1).max(axis=1)) == 1.0
    assert pixel_auroc(masks, maps) == 1.0
    assert aupro(masks, maps) == pytest.approx(1.0)


def test_inverted_map_scores_zero():
    labels, masks = perfect_case()
    maps = 1.0 - masks
    assert image_auroc(labels, -labels) == 0.0
    assert pixel_auroc(masks, maps) == 0.0
    # PRO stays 0 until every normal pixel is called (FPR 1), so it is 0 on [0, 0.3].
    assert aupro(masks, maps) == 0.0


def test_constant_map_is_the_diagonal():
    # One threshold calls everything: the curve is (0, 0) -> (1, 1), PRO = FPR, area 0.3**2 / 2 / 0.3.
    _, masks = perfect_case()
    maps = np.zeros(masks.shape)
    assert pixel_auroc(masks, maps) == 0.5
    assert aupro(masks, maps) == pytest.approx(0.15, abs=1e-12)


def test_random_uniform_scores_give_about_0_15():
    # About 140 regions: the spread of AUPRO over seeds is about 0.004, so +-0.02 is a safe margin.
    rng = np.random.default_rng(7)
    masks = np.zeros((40, 64, 64), bool)
    for i in range(10, 40):
        for _ in range(5):
            y, x = rng.integers(0, 54, 2)
            masks[i, y : y + rng.integers(4, 10), x : x + rng.integers(4, 10)] = True
    maps = rng.random(masks.shape).astype(np.float32)
    assert aupro(masks, maps) == pytest.approx(0.15, abs=0.02)
    assert pixel_auroc(masks, maps) == pytest.approx(0.5, abs=0.02)


# ----------------------------------------------------------------------------------------------------
# Fast PRO against the slow reference
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [None, 1])
def test_fast_pro_curve_matches_slow_loop(seed, decimals):
    masks, maps = random_case(seed, decimals=decimals)
    _, n_regions = label_regions(masks)
    assert n_regions >= 2
    slow_fpr, slow_pro = slow_pro_points(masks, maps)
    fpr, pro = pro_curve(masks, maps, fpr_limit=1.0)
    np.testing.assert_allclose(fpr, slow_fpr, atol=1e-12)
    np.testing.assert_allclose(pro, slow_pro, atol=1e-12)
    for limit in (0.3, 0.05, 1.0):
        assert aupro(masks, maps, fpr_limit=limit) == pytest.approx(slow_aupro(masks, maps, limit), abs=1e-6)


def test_threshold_grid_points_lie_on_the_exact_curve():
    masks, maps = random_case(3, size=16)
    exact = set(zip(*pro_curve(masks, maps, fpr_limit=1.0)))
    fpr, pro = pro_curve(masks, maps, fpr_limit=1.0, n_thresholds=20)
    assert len(fpr) == 21  # the start (0, 0) plus one point per threshold
    assert all(point in exact for point in zip(fpr, pro))
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= 0)
    # A fine grid approaches the exact area.
    assert aupro(masks, maps, n_thresholds=20000) == pytest.approx(aupro(masks, maps), abs=2e-3)


def test_curve_is_cut_at_the_limit_and_normalised_by_it():
    masks, maps = random_case(4)
    fpr, pro = pro_curve(masks, maps, fpr_limit=0.3)
    assert fpr[0] == 0 and pro[0] == 0 and fpr[-1] == 0.3 and np.all(fpr <= 0.3)
    area = np.sum(np.diff(fpr) * (pro[1:] + pro[:-1]) / 2)
    assert aupro(masks, maps) == pytest.approx(area / 0.3, abs=1e-12)


# ----------------------------------------------------------------------------------------------------
# AUROC
# ----------------------------------------------------------------------------------------------------
def brute_force_auroc(truth, scores):
    """Fraction of (anomalous, normal) pairs ranked correctly, ties counting half."""
    anomalous, normal = scores[truth][:, None], scores[~truth][None, :]
    return ((anomalous > normal) + 0.5 * (anomalous == normal)).mean()


@pytest.mark.parametrize("decimals", [None, 1])
def test_pixel_auroc_matches_sklearn_and_pair_counting(decimals):
    masks, maps = random_case(5, decimals=decimals)
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)
    assert pixel_auroc(masks, maps) == pytest.approx(brute_force_auroc(masks, maps), abs=1e-12)
    # torch tensors work too
    assert pixel_auroc(torch.from_numpy(masks), torch.from_numpy(maps)) == pytest.approx(expected, abs=1e-12)


def test_image_auroc_matches_pair_counting():
    rng = np.random.default_rng(0)
    labels = rng.random(40) < 0.4
    scores = np.round(rng.random(40) + 0.3 * labels, 1)
    assert image_auroc(labels, scores) == pytest.approx(brute_force_auroc(labels, scores), abs=1e-12)
    assert image_auroc(torch.tensor(labels.astype(int)), torch.tensor(scores)) == pytest.approx(
        brute_force_auroc(labels, scores), abs=1e-12
    )


# ----------------------------------------------------------------------------------------------------
# Undefined cases and bad input
# ----------------------------------------------------------------------------------------------------
def test_single_class_labels_raise_a_clear_error():
    with pytest.raises(ValueError, match="needs both normal"):
        image_auroc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="needs both normal"):
        image_auroc_ci([1, 1], [0.1, 0.2])


def test_only_normal_images_give_nan_with_a_warning():
    masks = np.zeros((3, 8, 8), bool)
    maps = np.random.default_rng(0).random(masks.shape)
    with pytest.warns(RuntimeWarning, match="no anomalous pixels"):
        assert np.isnan(pixel_auroc(masks, maps))
    with pytest.warns(RuntimeWarning, match="no anomalous pixels"):
        assert np.isnan(aupro(masks, maps))
    with pytest.warns(RuntimeWarning, match="no anomalous pixels"):
        assert all(np.isnan(pixel_auroc_ci(masks, maps, n_boot=10)))
    with pytest.warns(RuntimeWarning, match="no normal pixels"):
        assert np.isnan(aupro(~masks, maps))
    with pytest.raises(ValueError, match="both anomalous and normal"):
        pro_curve(masks, maps)


def test_bad_input_is_named():
    masks, maps = hand_case()
    with pytest.raises(ValueError, match=r"shape \(N, H, W\)"):
        aupro(masks, maps[:, :3])
    with pytest.raises(ValueError, match=r"shape \(N, H, W\)"):
        pixel_auroc(masks[0], maps[0])
    with pytest.raises(ValueError, match="masks must be binary"):
        aupro(masks * 255, maps)
    with pytest.raises(ValueError, match="maps contains NaN or infinite"):
        aupro(masks, np.where(masks, np.nan, maps))
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(masks, maps, fpr_limit=0)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        image_auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="same N images"):
        evaluate_maps([0, 1, 1], [0.1, 0.2, 0.3], masks, maps)


# ----------------------------------------------------------------------------------------------------
# Bootstrap
# ----------------------------------------------------------------------------------------------------
def image_data(n_images, seed=0):
    rng = np.random.default_rng(seed)
    labels = (np.arange(n_images) % 3 == 0).astype(int)
    scores = rng.normal(size=n_images) + labels
    return labels, scores


def test_bootstrap_interval_contains_estimate_and_is_deterministic():
    labels, scores = image_data(60)
    estimate = image_auroc(labels, scores)
    low, high = bootstrap_ci(image_auroc, labels, scores, n_boot=200, seed=1)
    assert low < estimate < high
    assert bootstrap_ci(image_auroc, labels, scores, n_boot=200, seed=1) == (low, high)
    assert bootstrap_ci(image_auroc, labels, scores, n_boot=200, seed=2) != (low, high)


def test_bootstrap_interval_shrinks_with_more_data():
    small = image_auroc_ci(*image_data(30), n_boot=500)
    large = image_auroc_ci(*image_data(600), n_boot=500)
    assert large[1] - large[0] < 0.6 * (small[1] - small[0])


def test_wider_confidence_gives_a_wider_interval():
    labels, scores = image_data(60)
    narrow = image_auroc_ci(labels, scores, n_boot=400, confidence=0.5)
    wide = image_auroc_ci(labels, scores, n_boot=400, confidence=0.99)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_fast_image_interval_equals_generic_bootstrap():
    labels, scores = image_data(25)
    scores = np.round(scores, 1)  # ties
    fast = image_auroc_ci(labels, scores, n_boot=200, seed=3)
    generic = bootstrap_ci(image_auroc, labels, scores, n_boot=200, seed=3)
    np.testing.assert_allclose(fast, generic, atol=1e-12)


def test_fast_pixel_interval_equals_generic_bootstrap():
    masks, maps = random_case(6, n_images=8, decimals=1)
    estimate = pixel_auroc(masks, maps)
    fast = pixel_auroc_ci(torch.from_numpy(masks), torch.from_numpy(maps), n_boot=100, seed=4)
    generic = bootstrap_ci(pixel_auroc, masks, maps, n_boot=100, seed=4)
    np.testing.assert_allclose(fast, generic, atol=1e-12)
    assert fast[0] <= estimate <= fast[1]


def test_bootstrap_skips_single_class_resamples():
    # Two images, one of each class: about half of all resamples draw a single class and are skipped;
    # every kept resample holds both images, ranked correctly.
    calls = []

    def counting_auroc(labels, scores):
        calls.append(len(set(labels.tolist())))
        return image_auroc(labels, scores)

    with pytest.warns(RuntimeWarning, match="were skipped"):
        interval = bootstrap_ci(counting_auroc, [0, 1], [0.2, 0.8], n_boot=100)
    assert interval == (1.0, 1.0)
    assert 20 < len(calls) < 80 and set(calls) == {2}
    with pytest.warns(RuntimeWarning, match="were skipped"):
        assert image_auroc_ci([0, 1], [0.2, 0.8], n_boot=100) == (1.0, 1.0)


@pytest.mark.parametrize("seed, decimals, fpr_limit", [(5, None, 0.3), (6, 1, 0.3), (7, 2, 1.0), (8, None, 0.05)])
def test_fast_aupro_interval_equals_generic_bootstrap(seed, decimals, fpr_limit):
    # Many ties (decimals) and a normal image: the counts per threshold must add up like the resampled stack.
    masks, maps = random_case(seed, n_images=7, decimals=decimals)
    fast = aupro_ci(masks, maps, fpr_limit=fpr_limit, n_boot=60, seed=seed, n_thresholds=None)
    generic = bootstrap_ci(lambda m, s: aupro(m, s, fpr_limit=fpr_limit), masks, maps, n_boot=60, seed=seed)
    np.testing.assert_allclose(fast, generic, rtol=0, atol=1e-12)
    assert fast[0] <= aupro(masks, maps, fpr_limit=fpr_limit) <= fast[1]


def test_aupro_interval_on_a_threshold_grid_is_close_to_the_exact_one():
    masks, maps = random_case(9, n_images=12, size=40, n_rects=4)
    exact = aupro_ci(masks, maps, n_boot=200, seed=1, n_thresholds=None)
    grid = aupro_ci(masks, maps, n_boot=200, seed=1, n_thresholds=500)
    np.testing.assert_allclose(grid, exact, atol=2e-3)
    assert grid != exact  # the grid is coarser than the 19,200 distinct scores


def test_aupro_interval_undefined_without_anomalies():
    masks = np.zeros((3, 4, 4), bool)
    with pytest.warns(RuntimeWarning):
        assert all(np.isnan(aupro_ci(masks, np.random.default_rng(0).random(masks.shape), n_boot=10)))


def test_bootstrap_of_aupro_runs_on_masks():
    masks, maps = random_case(2, n_images=6)
    low, high = bootstrap_ci(aupro, masks, maps, n_boot=30)
    assert 0 <= low <= aupro(masks, maps) <= high <= 1


# ----------------------------------------------------------------------------------------------------
# Everything at once
# ----------------------------------------------------------------------------------------------------
def test_evaluate_maps_gathers_the_three_numbers():
    masks, maps = random_case(0, n_images=5)
    labels = masks.reshape(5, -1).any(axis=1).astype(int)
    image_scores = maps.reshape(5, -1).max(axis=1)
    result = evaluate_maps(labels, image_scores, masks, maps)
    assert result == {
        "image_auroc": image_auroc(labels, image_scores),
        "pixel_auroc": pixel_auroc(masks, maps),
        "aupro": aupro(masks, maps),
    }
    strict = evaluate_maps(labels, image_scores, masks, maps, fpr_limit=0.05)
    assert strict["aupro"] == aupro(masks, maps, fpr_limit=0.05)
