"""Tests for iadtutor.defectmaker: shapes, fills, fusion, foreground, the 7-class task, fine-tuning."""

import dataclasses
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage


from iadtutor import defectmaker as dm
from iadtutor.backbones import FeatureExtractor, load_backbone, load_final_stage


def smooth_image(size=64, seed=0):
    """A smooth random colour image (3, size, size) in [0, 1]: no two patches are identical."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 6, 6, generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def object_on_plain_background(size=96, seed=0):
    """A textured blue ellipse on a plain light-grey background; returns (image, true object mask)."""
    generator = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(size) / size, torch.arange(size) / size, indexing="ij")
    obj = ((rows - 0.5) ** 2 / 0.08 + (cols - 0.45) ** 2 / 0.04) < 1
    image = torch.full((3, size, size), 0.8) + 0.005 * torch.randn(3, size, size, generator=generator)
    texture = smooth_image(size, seed + 1)
    blue = torch.tensor([0.2, 0.3, 0.6])[:, None, None] * (0.7 + 0.6 * texture)
    image = torch.where(obj, blue, image)
    return image.clamp(0, 1), obj


# ---------------------------------------------------------------------------------------------- Bézier

def de_casteljau(control_points, t):
    """Independent evaluation: repeated linear interpolation of the control polygon."""
    points = [np.asarray(p, dtype=float) for p in control_points]
    while len(points) > 1:
        points = [(1 - t) * a + t * b for a, b in zip(points[:-1], points[1:])]
    return points[0]


def test_bezier_curve_matches_de_casteljau():
    control = [(0.0, 0.0), (1.0, 2.0), (3.0, 3.0), (4.0, 0.0)]
    curve = dm.bezier_curve(control, n_points=11)
    # By hand at t = 1/2: (0.5, 1), (2, 2.5), (3.5, 1.5) -> (1.25, 1.75), (2.75, 2) -> (2, 1.875).
    np.testing.assert_allclose(curve[5], [2.0, 1.875])
    for index, t in enumerate(np.linspace(0, 1, 11)):
        np.testing.assert_allclose(curve[index], de_casteljau(control, t), atol=1e-12)
    np.testing.assert_allclose(curve[0], control[0])
    np.testing.assert_allclose(curve[-1], control[-1])
    five = [(0, 0), (2, 5), (4, -3), (7, 4), (9, 1)]
    for t, point in zip(np.linspace(0, 1, 7), dm.bezier_curve(five, n_points=7)):
        np.testing.assert_allclose(point, de_casteljau(five, t), atol=1e-12)


def test_closed_contour_passes_through_its_points_and_closes():
    points = np.array([[0.0, 0.0], [1.0, 3.0], [4.0, 4.0], [5.0, 1.0], [2.0, -2.0]])
    n = 20
    contour = dm.closed_bezier_contour(points, k=0.3, n_per_segment=n)
    assert contour.shape == (len(points) * (n - 1), 2)
    np.testing.assert_allclose(contour[:: n - 1], points, atol=1e-12)
    # the last segment ends where the first starts: its final sample is one step before points[0]
    assert np.linalg.norm(contour[-1] - points[0]) < np.linalg.norm(points[-1] - points[0])


# ------------------------------------------------------------------------------------- shapes and fills

@pytest.mark.parametrize("shape, fill, fusion", list(itertools.product(dm.SHAPES, dm.FILLS, dm.FUSIONS)))
def test_every_combination_changes_exactly_its_mask(shape, fill, fusion):
    image = smooth_image(64, seed=3)
    original = image.clone()
    defect, mask = dm.make_defect(image, shape, fill, fusion, rng=7)
    assert torch.equal(image, original), "the input image must not be modified"
    assert defect.shape == image.shape and defect.dtype == torch.float32
    assert mask.shape == (64, 64) and mask.dtype == torch.bool
    assert mask.any()
    assert float(defect.min()) >= 0.0 and float(defect.max()) <= 1.0
    changed = (defect != image).any(dim=0)
    assert torch.equal(changed, mask), "the mask must be exactly the pixels that changed"
    assert torch.equal(defect[:, ~mask], image[:, ~mask])


def test_rectangle_is_a_solid_axis_aligned_rectangle():
    image = smooth_image(128, seed=1)
    for seed in range(5):
        _, mask = dm.make_defect(image, "rectangle", "noise", "paste", rng=seed)
        rows, cols = np.nonzero(mask.numpy())
        box = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert bool(box.all())
        assert mask.sum() <= 0.15 * 128 * 128 + 2 * 128


def test_bezier_scar_is_a_small_filled_region_in_a_thin_box():
    image = smooth_image(128, seed=2)
    for seed in range(8):
        mask = dm.make_defect(image, "bezier_scar", "noise", "paste", rng=seed)[1].numpy()
        assert np.array_equal(ndimage.binary_fill_holes(mask), mask)  # a region, not an outline
        rows, cols = np.nonzero(mask)
        # box 3.5-10.5 x 7.5-15 px at 128 px: the region fits in its turned box's diagonal
        assert max(np.ptp(rows), np.ptp(cols)) <= np.hypot(10.5, 15) + 2
        assert mask.sum() <= 10.5 * 15 + 10


def test_bezier_stroke_is_a_thin_long_stroke():
    image = smooth_image(128, seed=2)
    for seed in range(8):
        _, mask = dm.make_defect(image, "bezier_stroke", "noise", "paste", rng=seed)
        # nothing survives an erosion by a 5 x 5 square: the stroke is at most 4 px thick
        assert not ndimage.binary_erosion(mask.numpy(), structure=np.ones((5, 5))).any()
        rows, cols = np.nonzero(mask.numpy())
        assert np.hypot(np.ptp(rows), np.ptp(cols)) >= 10  # 25-100 px at 256 px -> >= 12 px at 128


def test_bezier_clump_is_usually_several_blobs():
    image = smooth_image(128, seed=4)
    n_blobs = [ndimage.label(dm.make_defect(image, "bezier_clump", "noise", "paste", rng=s)[1].numpy())[1]
               for s in range(10)]
    assert sum(n >= 2 for n in n_blobs) >= 5, n_blobs


def test_fuse_by_hand():
    image = torch.zeros(3, 2, 2)
    fill = torch.ones(3, 2, 2)
    region = torch.tensor([[True, False], [False, False]])
    out = dm.fuse(image, fill, region, alpha=0.25)
    assert torch.allclose(out[:, 0, 0], torch.full((3,), 0.25))
    assert torch.equal(out[:, 1, 1], torch.zeros(3)) and torch.equal(out[:, 0, 1], torch.zeros(3))


@pytest.mark.parametrize("fill", dm.FILLS)
def test_blend_factor_is_respected(fill):
    image = smooth_image(64, seed=5)
    pasted, paste_mask = dm.make_defect(image, "bezier_blob", fill, "paste", rng=11)
    blended, blend_mask = dm.make_defect(image, "bezier_blob", fill, "blend", rng=11, alpha=0.3)
    assert torch.equal(paste_mask, blend_mask)
    row, col = [int(v[0]) for v in np.nonzero(paste_mask.numpy())]
    for channel in range(3):  # one pixel by hand: 0.3 * what paste put there + 0.7 * the original
        expected = 0.3 * float(pasted[channel, row, col]) + 0.7 * float(image[channel, row, col])
        assert abs(float(blended[channel, row, col]) - expected) < 1e-6
    assert torch.allclose(blended[:, paste_mask], 0.3 * pasted[:, paste_mask] + 0.7 * image[:, paste_mask], atol=1e-6)


def test_random_blend_factor_lies_in_its_range():
    image = smooth_image(64, seed=6)
    for seed in range(5):
        pasted, mask = dm.make_defect(image, "rectangle", "noise", "paste", rng=seed)
        blended, _ = dm.make_defect(image, "rectangle", "noise", "blend", rng=seed)
        difference = (pasted - image)[:, mask]
        alpha = ((blended - image)[:, mask] * difference).sum() / (difference**2).sum()
        assert dm.BLEND_ALPHA_RANGE[0] - 1e-4 <= float(alpha) <= dm.BLEND_ALPHA_RANGE[1] + 1e-4


def test_make_defect_is_deterministic_for_a_seed():
    image = smooth_image(64, seed=8)
    for shape, fill in itertools.product(dm.SHAPES, dm.FILLS):
        first = dm.make_defect(image, shape, fill, "blend", rng=np.random.default_rng(42))
        second = dm.make_defect(image, shape, fill, "blend", rng=42)
        assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    other = dm.make_defect(image, "bezier_scar", "noise", "paste", rng=43)
    assert not torch.equal(other[1], dm.make_defect(image, "bezier_scar", "noise", "paste", rng=42)[1])


def test_bad_inputs_raise_clear_errors():
    image = smooth_image(32)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        dm.make_defect(np.zeros((32, 32, 3), np.uint8), "rectangle", "noise", "paste", rng=0)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        dm.make_defect(image * 255, "rectangle", "noise", "paste", rng=0)
    with pytest.raises(ValueError, match="shape must be one of"):
        dm.make_defect(image, "circle", "noise", "paste", rng=0)
    with pytest.raises(ValueError, match="fusion must be one of"):
        dm.make_defect(image, "rectangle", "noise", "poisson", rng=0)
    with pytest.raises(ValueError, match="foreground must be a bool mask of shape"):
        dm.make_defect(image, "rectangle", "noise", "paste", rng=0, foreground=torch.ones(16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="empty"):
        dm.make_defect(image, "rectangle", "noise", "paste", rng=0, foreground=torch.zeros(32, 32, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="no pixel changed"):
        dm.make_defect(torch.zeros(3, 32, 32), "rectangle", "cutpaste", "paste", rng=0)  # black stays black


# ------------------------------------------------------------------------------------------ foreground

def test_otsu_threshold_matches_brute_force():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.2, 0.03, 300), rng.normal(0.7, 0.05, 100)])
    best_split, best_between = None, -1.0
    for cut in np.sort(values)[1:]:  # brute force over every split of the sorted values
        low, high = values[values < cut], values[values >= cut]
        between = len(low) * len(high) * (low.mean() - high.mean()) ** 2
        if between > best_between:
            best_split, best_between = values >= cut, between
    np.testing.assert_array_equal(values >= dm.otsu_threshold(values), best_split)


def test_foreground_mask_finds_the_object_and_defects_stay_on_it():
    image, obj = object_on_plain_background(96)
    foreground = dm.foreground_mask(image)
    iou = (foreground & obj).sum() / (foreground | obj).sum()
    assert iou > 0.9
    assert dm.foreground_mask(image, is_texture=True).all()
    near_object = torch.from_numpy(ndimage.binary_dilation(obj.numpy()))
    for shape, fill in itertools.product(dm.SHAPES, dm.FILLS):
        for seed in range(3):
            _, mask = dm.make_defect(image, shape, fill, "paste", rng=seed, foreground=foreground)
            assert not (mask & ~near_object).any(), (shape, fill, seed)


def test_cutpaste_fill_comes_from_the_fill_image():
    image, grey = smooth_image(64, seed=3), torch.full((3, 64, 64), 0.5)
    defect, mask = dm.make_defect(image, "bezier_blob", "cutpaste", "paste", rng=0, fill_image=grey)
    pixels = defect[:, mask]  # a jittered grey stays grey: equal channels, brightness 0.5 +- 10 %
    assert torch.allclose(pixels, pixels[:1].expand_as(pixels), atol=1e-5)
    assert 0.45 - 1e-5 <= float(pixels.min()) <= float(pixels.max()) <= 0.55 + 1e-5


def test_foreground_of_a_flat_image_is_everything():
    assert dm.foreground_mask(torch.full((3, 40, 40), 0.3)).all()


def test_gallery_covers_every_combination():
    image, _ = object_on_plain_background(64)
    entries = dm.gallery(image, rng=0)
    combos = {(e["shape"], e["fill"], e["fusion"]) for e in entries}
    assert combos == set(itertools.product(dm.SHAPES, dm.FILLS, dm.FUSIONS))
    assert all(e["mask"].any() and e["image"].shape == image.shape for e in entries)


# --------------------------------------------------------------------------------------- the 7 classes

def test_dataset_produces_all_seven_labels_deterministically():
    images = torch.stack([smooth_image(64, seed=s) for s in range(3)])
    dataset = dm.DefectMakerDataset(images, is_texture=True, seed=1, augment=False, jitter=False)
    assert len(dataset) == 3 * 7 and dataset.n_classes == 7 and len(dm.CLASS_NAMES) == 7
    labels = set()
    for index in range(len(dataset)):
        image, label, mask = dataset.sample(index)
        original = images[index // 7]
        labels.add(label)
        if label == 0:
            assert torch.equal(image, original) and not mask.any()
        else:
            assert mask.any() and torch.equal(image[:, ~mask], original[:, ~mask])
            assert (image != original).any(dim=0)[mask].all()
    assert labels == set(range(7))
    again = dm.DefectMakerDataset(images, is_texture=True, seed=1, augment=False, jitter=False)
    assert all(torch.equal(dataset[i][0], again[i][0]) for i in range(len(dataset)))
    again.set_epoch(1)
    assert not all(torch.equal(dataset[i][0], again[i][0]) for i in range(1, 7))


# ------------------------------------------------------------------------------------------ fine-tuning

@pytest.fixture(scope="module")
def backbone():
    torch.set_num_threads(1)
    return load_backbone("efficientnet_lite0", verbose=False, download=False)


TINY = dm.FinetuneConfig(updates=4, images_per_batch=2, freeze_updates=2, cosine_period=5)


@pytest.fixture(scope="module")
def finetuned_twice(backbone):
    images = torch.stack([object_on_plain_background(64, seed=s)[0] for s in range(4)])
    runs = [dm.finetune_backbone(backbone, images, config=TINY, seed=0, progress=False) for _ in range(2)]
    return images, runs


def test_task_loss_is_the_mean_sigmoid_bce_over_one_hot_targets():
    logits, labels = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]]), torch.tensor([0, 2])
    sigmoid = 1 / (1 + np.exp(-logits.numpy()))
    one_hot = np.array([[1, 0, 0], [0, 0, 1]])
    by_hand = -(one_hot * np.log(sigmoid) + (1 - one_hot) * np.log(1 - sigmoid)).mean()
    assert float(dm.task_loss(logits, labels)) == pytest.approx(by_hand, rel=1e-6)
    assert float(dm.task_loss(logits, labels, "ce")) == pytest.approx(float(F.cross_entropy(logits, labels)))


def test_head_sits_on_the_final_stride_32_stage(backbone):
    stage = load_final_stage("efficientnet_lite0")
    classifier = dm.DefectClassifier(backbone, stage, n_classes=7).eval()
    seen = []
    classifier.head[0].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape))
    with torch.no_grad():
        tap16 = backbone(torch.zeros(2, 3, 64, 64))[-1]
        assert stage(tap16).shape == (2, 320, 2, 2)  # stride 32
        assert classifier(torch.rand(2, 3, 64, 64)).shape == (2, 7)
    assert seen == [(2, 320)]
    assert [layer.out_features for layer in classifier.head if isinstance(layer, torch.nn.Linear)] == [512, 256, 7]


def test_presets():
    paper, small = dm.FinetuneConfig.paper(), dm.FinetuneConfig.small()
    assert (paper.updates, paper.freeze_updates, paper.lr, paper.momentum, paper.weight_decay) == (300, 40, 0.03, 0.9, 3e-5)
    assert paper.images_per_batch * paper.accumulate * 7 == 1008 and paper.cosine_period == 330
    assert paper.head_layers == (512, 256) and paper.loss == "bce" and paper.head_on == "final_stage"
    # the CPU recipe sees a thirtieth of the paper's images (1,440 against 43,200 image passes)
    assert small.updates * small.images_per_batch * small.accumulate * 25 < paper.updates * 144
    assert 0 < small.freeze_updates < small.updates


def test_frozen_updates_leave_the_backbone_unchanged_and_later_ones_change_it(backbone, finetuned_twice):
    images, ((changed, _), _) = finetuned_twice
    frozen, _ = dm.finetune_backbone(backbone, images, config=dataclasses.replace(TINY, updates=2), progress=False)
    state_0, state_frozen, state_changed = backbone.state_dict(), frozen.state_dict(), changed.state_dict()
    assert all(torch.equal(state_frozen[key], state_0[key]) for key in state_0)
    conv_weights = [key for key in state_0 if key.endswith("weight") and state_0[key].ndim == 4]
    assert any(not torch.equal(state_changed[key], state_0[key]) for key in conv_weights)
    running = [key for key in state_0 if key.endswith("running_mean")]  # BatchNorm trained in train mode
    assert any(not torch.equal(state_changed[key], state_0[key]) for key in running)
    fresh = load_backbone("efficientnet_lite0", verbose=False, download=False).state_dict()
    assert all(torch.equal(fresh[key], state_0[key]) for key in state_0)  # the backbone passed in is untouched


def test_finetune_is_deterministic_and_records_its_history(finetuned_twice):
    _, ((model_a, history_a), (model_b, history_b)) = finetuned_twice
    assert isinstance(model_a, FeatureExtractor) and not model_a.training
    history_a, history_b = dict(history_a), dict(history_b)
    history_a.pop("seconds"), history_b.pop("seconds")
    assert history_a == history_b and history_a["heldout_accuracy"] is None
    assert len(history_a["loss"]) == len(history_a["accuracy"]) == len(history_a["lr"]) == TINY.updates
    assert all(np.isfinite(history_a["loss"])) and 0 <= history_a["train_accuracy"] <= 1
    assert history_a["lr"][0] == TINY.lr and history_a["lr"][-1] < history_a["lr"][1] < TINY.lr  # cosine
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert all(torch.equal(state_a[key], state_b[key]) for key in state_a)


def test_old_arguments_still_size_the_run(backbone, finetuned_twice):
    images, _ = finetuned_twice
    _, history = dm.finetune_backbone(backbone, images, epochs=1, batch_size=14, lr=0.01, progress=False,
                                      config=dataclasses.replace(TINY, accumulate=1))
    assert len(history["loss"]) == 2 and history["lr"][0] == 0.01  # 4 images, 2 per update


def test_finetune_learns_an_easy_task_and_reports_the_heldout_curve(backbone):
    """Normal vs a large noise blob: held-out accuracy on new images and new defects is high; the held-out curve,
    the accuracy and the confusion matrix agree with each other."""
    images = torch.stack([object_on_plain_background(64, seed=s)[0] for s in range(6)])
    heldout = torch.stack([object_on_plain_background(64, seed=s)[0] for s in range(10, 20)])
    config = dm.FinetuneConfig(updates=30, images_per_batch=4, freeze_updates=10, cosine_period=33,
                               batchnorm_train=False)
    _, history = dm.finetune_backbone(backbone, images, config=config, seed=0, progress=False,
                                      classes=(("bezier_blob", "noise"),), heldout_images=heldout, heldout_every=10)
    assert np.mean(history["loss"][-5:]) < 0.7 * np.mean(history["loss"][:5])
    assert history["heldout_accuracy"] >= 0.9
    assert [update for update, _ in history["heldout_curve"]] == [0, 10, 20, 30]
    assert history["heldout_curve"][-1][1] == history["heldout_accuracy"]
    confusion = np.array(history["heldout_confusion"])
    assert confusion.shape == (2, 2) and list(confusion.sum(axis=1)) == [10, 10]  # each held-out image once per class
    assert np.trace(confusion) / confusion.sum() == pytest.approx(history["heldout_accuracy"])


def test_finetuned_backbone_still_extracts_three_taps(backbone, finetuned_twice):
    images, ((model, _), _) = finetuned_twice
    with torch.no_grad():
        taps = model(images[:2])
    assert [tap.shape[1] for tap in taps] == list(backbone.channels)
    assert [64 // tap.shape[-1] for tap in taps] == list(backbone.strides)


def test_finetuned_backbone_works_with_patch_embedder(finetuned_twice):
    embed = pytest.importorskip("iadtutor.embed")
    images, ((model, _), _) = finetuned_twice
    embedder = embed.PatchEmbedder(model, embed.EmbeddingConfig(image_size=64))
    embedding = embedder.embed(images[:2], progress=False)
    assert embedding.ndim == 4 and embedding.shape[0] == 2 and torch.isfinite(embedding).all()


def test_save_and_load_finetuned_weights(tmp_path, backbone, finetuned_twice):
    _, ((model, _), _) = finetuned_twice
    path = dm.save_finetuned(model, tmp_path / "weights" / "reb_efficientnet.pt")
    assert [p.name for p in path.parent.iterdir()] == ["reb_efficientnet.pt"]  # no temp file left
    for loaded in (dm.load_finetuned(path, backbone=backbone), dm.load_finetuned(path)):
        assert isinstance(loaded, FeatureExtractor) and not loaded.training
        expected = model.state_dict()
        assert all(torch.equal(value, expected[key]) for key, value in loaded.state_dict().items())
    with pytest.raises(FileNotFoundError, match="no fine-tuned weights"):
        dm.load_finetuned(tmp_path / "missing.pt")
