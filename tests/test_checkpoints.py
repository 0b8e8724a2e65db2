"""The committed trainings of `make checkpoints` (DefectMaker for notebook 06, ULSAD for notebook 07): what they
record, that this code makes them, and what the chapter's claims rest on."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from iadtutor import data, defectmaker as dm, metrics, pipeline
from iadtutor.backbones import load_backbone
from iadtutor.tools import checkpoints
from toyfactory import make_toy_category

COMMITTED = Path(__file__).resolve().parent.parent / "checkpoints"
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def bracket(tmp_path_factory):
    """The default toy factory's bracket (what `make toy` writes) and its fine-tuning / held-out images."""
    root = tmp_path_factory.mktemp("toy")
    make_toy_category(root, "bracket", seed=0, progress=False)
    return root, checkpoints.training_images(root)


@pytest.fixture(scope="module")
def imagenet():
    return load_backbone("efficientnet_lite0", verbose=False, download=False)


def test_fingerprint_tells_images_apart():
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert checkpoints.fingerprint(images) == checkpoints.fingerprint(images.clone())
    changed = images.clone()
    changed[1, 2, 7, 7] += 1e-6
    assert checkpoints.fingerprint(changed) != checkpoints.fingerprint(images)


@pytest.mark.parametrize("seed", SEEDS)
def test_committed_fine_tunings_are_of_this_recipe_and_these_images(seed, bracket, imagenet):
    _, (finetune_images, heldout_images) = bracket
    found = checkpoints.find_defectmaker(COMMITTED, seed, dm.FinetuneConfig.small(), finetune_images,
                                         heldout_images, backbone=imagenet)
    assert found is not None, f"checkpoints/ has no seed-{seed} fine-tuning of FinetuneConfig.small(): make checkpoints"
    finetuned, record = found
    history = record["history"]
    assert len(history["loss"]) == record["config"]["updates"] == 360
    assert record["n_finetune_images"] == 40 and record["n_heldout_images"] == 8
    assert history["heldout_curve"][0][0] == 0 and history["heldout_curve"][-1] == [360, history["heldout_accuracy"]]
    assert sum(map(sum, history["heldout_confusion"])) == 8 * 7
    fine, start = finetuned.state_dict(), imagenet.state_dict()
    assert fine.keys() == start.keys()
    assert any(not torch.equal(fine[key], start[key]) for key in start if key.endswith("weight"))


def test_no_checkpoint_for_another_seed_recipe_or_images(bracket):
    _, (finetune_images, heldout_images) = bracket
    small = dm.FinetuneConfig.small()
    assert checkpoints.find_defectmaker(COMMITTED, 7, small, finetune_images, heldout_images) is None
    shorter = dataclasses.replace(small, updates=90)
    assert checkpoints.find_defectmaker(COMMITTED, 0, shorter, finetune_images, heldout_images) is None
    assert checkpoints.find_defectmaker(COMMITTED, 0, small, finetune_images[:-1], heldout_images) is None


def test_the_first_updates_repeat_the_committed_record(bracket, tmp_path):
    """A short run of the same recipe, seed and images gives the record's first losses: the committed file was made
    by this code (torch's own kernels and one thread, so on any CPU)."""
    root, _ = bracket
    first = dataclasses.replace(dm.FinetuneConfig.small(), updates=3)
    threads = torch.get_num_threads()
    record = checkpoints.train_defectmaker(root, tmp_path, 0, config=first, progress=False)
    assert torch.get_num_threads() == threads and record["torch_threads"] == 1  # trained on one, then restored
    committed = json.loads(checkpoints.checkpoint_paths(COMMITTED, 0)[1].read_text())
    torch.testing.assert_close(torch.tensor(record["history"]["loss"]),
                               torch.tensor(committed["history"]["loss"][:3]), rtol=1e-5, atol=1e-6)
    weights, written = checkpoints.checkpoint_paths(tmp_path, 0)
    assert weights.is_file() and json.loads(written.read_text())["config"]["updates"] == 3
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([weights.name, written.name])  # nothing half-written


@pytest.fixture(scope="module")
def box_root(tmp_path_factory):
    """A toy-factory root whose sibling holds notebook 07's box (the `choice` layout), as `make toy` + the chapter write it."""
    root = tmp_path_factory.mktemp("data") / "toy"
    root.mkdir()
    return root


@pytest.mark.parametrize("seed", SEEDS)
def test_committed_ulsad_trainings_are_of_this_config_and_these_images(seed, box_root, imagenet):
    train_images, val_images = checkpoints.ulsad_images(box_root)
    found = checkpoints.find_ulsad(COMMITTED, checkpoints.ulsad_config(seed), train_images, val_images, backbone=imagenet)
    assert found is not None, f"checkpoints/ has no seed-{seed} ULSAD training of ulsad_config({seed}): make checkpoints"
    model, record = found
    assert model.config == checkpoints.ulsad_config(seed) and len(record["history"]["loss"]) == 100
    assert record["n_train_images"] == 40 and record["n_val_images"] == 8
    assert model.history["loss"] == record["history"]["loss"]  # the record and the weights belong together


def test_no_ulsad_checkpoint_for_another_seed_config_or_images(box_root):
    train_images, val_images = checkpoints.ulsad_images(box_root)
    config = checkpoints.ulsad_config(0)
    assert checkpoints.find_ulsad(COMMITTED, checkpoints.ulsad_config(7), train_images, val_images) is None
    assert checkpoints.find_ulsad(COMMITTED, dataclasses.replace(config, epochs=99), train_images, val_images) is None
    assert checkpoints.find_ulsad(COMMITTED, config, train_images[:-1], val_images) is None


def test_the_first_ulsad_epoch_repeats_the_committed_record(box_root, tmp_path):
    config = dataclasses.replace(checkpoints.ulsad_config(0), epochs=1)
    record = checkpoints.train_ulsad(box_root, tmp_path, 0, config=config, progress=False)
    committed = json.loads(checkpoints.ulsad_paths(COMMITTED, 0)[1].read_text())
    for term in ("loss", "local", "consistency", "local_global"):
        torch.testing.assert_close(torch.tensor(record["history"][term]),
                                   torch.tensor(committed["history"][term][:1]), rtol=1e-5, atol=1e-6)


def test_committed_ulsad_global_branch_finds_the_logical_anomalies(box_root, imagenet):
    """Notebook 07's claim on seed 0: on logical anomalies the global branch's image AUROC is at least 0.80 and above
    the local branch's (the box's counts break no local pattern), and the combined score is within 0.02 of the best."""
    train_images, val_images = checkpoints.ulsad_images(box_root)
    model, _ = checkpoints.find_ulsad(COMMITTED, checkpoints.ulsad_config(0), train_images, val_images, backbone=imagenet)
    test = pipeline.load_category(checkpoints.ulsad_root(box_root), "box", image_size=256, progress=False).test
    maps = model.predict(test.images)
    keep = [i for i, t in enumerate(test.defect_types) if data.anomaly_kind(t) in ("good", "logical")]
    labels = test.labels.numpy()[keep]
    auroc = {branch: metrics.image_auroc(labels, maps[branch].amax(dim=(1, 2)).numpy()[keep])
             for branch in ("local", "global", "combined")}
    assert auroc["global"] >= 0.80 and auroc["global"] > auroc["local"], auroc
    assert auroc["combined"] >= max(auroc.values()) - 0.02, auroc


def test_main_names_a_missing_data_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        checkpoints.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    assert "nowhere" in capsys.readouterr().err
