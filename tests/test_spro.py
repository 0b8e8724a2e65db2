"""sPRO (MVTec LOCO AD) against a threshold-by-threshold loop, hand-made cases and AUPRO."""

import numpy as np
import pytest
from scipy.integrate import trapezoid

from iadtutor.metrics import aupro, label_regions, saturation_area, spro, spro_curve


def slow_spro(region_masks, region_images, saturation, maps, fpr_limit, good_images_only=False):
    """The definition, one threshold at a time (as the official evaluation code does it)."""
    defect_free = np.ones(maps.shape, bool)
    for mask, image in zip(region_masks, region_images):
        defect_free[image] &= ~mask
    if good_images_only:
        defect_free[np.unique(region_images)] = False
    fprs, spros = [0.0], [0.0]
    for threshold in np.unique(maps)[::-1]:
        called = maps >= threshold
        fprs.append((called & defect_free).sum() / defect_free.sum())
        spros.append(np.mean([min((called[image] & mask).sum() / sat, 1.0)
                              for mask, image, sat in zip(region_masks, region_images, saturation)]))
    fprs, spros = np.array(fprs), np.array(spros)
    keep = fprs <= fpr_limit
    f, p = list(fprs[keep]), list(spros[keep])
    if f[-1] < fpr_limit:  # interpolate the curve at exactly the limit
        after = np.flatnonzero(~keep)[0]
        f0, f1, p0, p1 = fprs[after - 1], fprs[after], spros[after - 1], spros[after]
        f.append(fpr_limit)
        p.append(p0 + (fpr_limit - f0) / (f1 - f0) * (p1 - p0))
    return trapezoid(p, f) / fpr_limit


def random_case(seed, n_images=6, size=16):
    rng = np.random.default_rng(seed)
    maps = rng.random((n_images, size, size)).round(2)  # rounding makes ties, as real maps have
    region_masks, region_images = [], []
    for image in range(n_images // 2):  # the other half of the images are good
        for _ in range(rng.integers(1, 3)):  # one or two defects (ground-truth files), possibly overlapping
            mask = np.zeros((size, size), bool)
            y, x = rng.integers(0, size - 5, 2)
            mask[y:y + rng.integers(2, 6), x:x + rng.integers(2, 6)] = True
            maps[image][mask] += rng.random() * 0.5
            region_masks.append(mask)
            region_images.append(image)
    areas = np.array([m.sum() for m in region_masks])
    saturation = np.where(rng.random(len(areas)) < 0.5, saturation_area(areas, 0.4, True),
                          saturation_area(areas, 7, False))
    return np.array(region_masks), np.array(region_images), saturation, maps


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("fpr_limit", [0.05, 0.3, 1.0])
@pytest.mark.parametrize("good_images_only", [False, True])
def test_spro_matches_the_threshold_loop(seed, fpr_limit, good_images_only):
    case = random_case(seed)
    expected = slow_spro(*case, fpr_limit, good_images_only)
    assert spro(*case, fpr_limit=fpr_limit, good_images_only=good_images_only) == pytest.approx(expected, abs=1e-12)


def test_half_covered_region_with_saturation_at_half_its_area_scores_one():
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 2:6, 2:6] = True  # a 16-pixel defect in image 0; image 1 is good
    maps = np.zeros((2, 8, 8))
    maps[0, 2:4, 2:6] = 1.0  # the top half of the defect is called first, nothing else
    saturation = saturation_area([16], 0.5, relative_saturation=True)
    assert saturation.tolist() == [8.0]
    assert spro(masks[:1], [0], saturation, maps) == pytest.approx(1.0)
    # Without saturation (all 16 pixels needed) the same map finds half the region at FPR 0; the next
    # threshold calls everything (FPR 1, sPRO 1), so at the limit 0.05 the curve is at 0.5 + 0.05 · 0.5.
    assert spro(masks[:1], [0], [16.0], maps) == pytest.approx((0.5 + 0.525) / 2)


def test_absolute_saturation_is_capped_at_the_region_area():
    assert saturation_area([10, 500], 100, relative_saturation=False).tolist() == [10.0, 100.0]
    assert saturation_area([10, 500], 0.5, relative_saturation=True).tolist() == [5.0, 250.0]


def test_without_saturation_on_connected_regions_spro_equals_aupro():
    rng = np.random.default_rng(3)
    masks = np.zeros((4, 20, 20), bool)
    masks[0, 2:7, 3:9] = True
    masks[1, 10:12, 4:15] = True
    masks[1, 1:4, 1:4] = True
    maps = rng.random(masks.shape) + 0.7 * masks
    regions, n_regions = label_regions(masks)
    region_masks = np.array([(regions == r).any(0) for r in range(1, n_regions + 1)])
    region_images = np.array([np.flatnonzero((regions == r).any((1, 2)))[0] for r in range(1, n_regions + 1)])
    areas = region_masks.reshape(n_regions, -1).sum(1)
    for limit in (0.05, 0.3):
        assert spro(region_masks, region_images, areas, maps, fpr_limit=limit) == pytest.approx(
            aupro(masks, maps, fpr_limit=limit), abs=1e-12)


def test_curve_starts_at_zero_and_ends_at_the_limit():
    fpr, overlap = spro_curve(*random_case(0), fpr_limit=0.05)
    assert fpr[0] == 0 and overlap[0] == 0 and fpr[-1] == pytest.approx(0.05)
    assert (np.diff(fpr) >= 0).all() and (np.diff(overlap) >= -1e-12).all()


def test_bad_input_is_named():
    masks, images, saturation, maps = random_case(0)
    with pytest.raises(ValueError, match="saturation"):
        spro(masks, images, saturation[:-1], maps)
    with pytest.raises(ValueError, match="region_images"):
        spro(masks, images + 100, saturation, maps)
    with pytest.raises(ValueError, match="positive saturation"):
        spro(masks, images, np.zeros_like(saturation), maps)
    with pytest.raises(ValueError, match="fpr_limit"):
        spro(masks, images, saturation, maps, fpr_limit=0)
