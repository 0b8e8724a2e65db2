"""Backbones: real packaged weights, the auto policy, sha256 checks, no silent fallback."""

import hashlib

import pytest
import torch

from iadtutor import backbones


def test_efficientnet_lite0_taps_have_documented_strides_and_channels():
    model = backbones.load_backbone("efficientnet_lite0", verbose=False)
    with torch.no_grad():
        taps = model(torch.zeros(1, 3, 128, 128))
    assert [tuple(t.shape[1:]) for t in taps] == [(24, 32, 32), (40, 16, 16), (112, 8, 8)]
    assert model.channels == (24, 40, 112)


def test_efficientnet_weights_are_pretrained_not_random():
    """A pretrained net separates a smooth image from noise in its features far more than random init."""
    model = backbones.load_backbone("efficientnet_lite0", verbose=False)
    conv = model.stem[0].weight
    # Trained first-layer filters are far from the init distribution: strongly correlated across RGB.
    per_filter = conv.flatten(2)  # (out, 3, k*k)
    correlation = torch.nn.functional.cosine_similarity(per_filter[:, 0], per_filter[:, 1], dim=1).mean()
    assert correlation > 0.3


def test_auto_policy_prints_choice_and_uses_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    name, reason = backbones.resolve_backbone_name("auto", download=False)
    assert name == "efficientnet_lite0"
    assert "auto -> efficientnet_lite0" in capsys.readouterr().out


def test_explicit_backbone_never_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(backbones.WeightsUnavailableError, match="resnet18-f37072fd.pth"):
        backbones.load_backbone("resnet18", download=False, verbose=False)


def test_user_weights_file_is_checked_by_sha256(tmp_path):
    fake = tmp_path / "resnet18-f37072fd.pth"
    fake.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bytes"):
        backbones.load_backbone("resnet18", weights_path=str(fake), verbose=False)
    expected = backbones.WeightsFile("x/file.pth", hashlib.sha256(b"abc").hexdigest(), 3)
    ok = tmp_path / "file.pth"
    ok.write_bytes(b"abc")
    backbones.verify_weights_file(ok, expected)
    ok.write_bytes(b"abd")
    with pytest.raises(ValueError, match="sha256"):
        backbones.verify_weights_file(ok, expected)


def test_unknown_backbone_and_missing_gpu_are_clear():
    with pytest.raises(ValueError, match="backbone"):
        backbones.resolve_backbone_name("vgg11")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            backbones.resolve_device("cuda")


def test_trainings_run_without_onednn_and_restore_it():
    seen = []

    @backbones.same_numbers_on_every_cpu
    def train(value):
        seen.append(torch.backends.mkldnn.enabled)
        return value

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would land in the notebooks' outputs
        assert train(3) == 3 and seen == [False] and torch.backends.mkldnn.enabled


TRAIN_TWICE = """
import torch
torch.set_num_threads(1)
from iadtutor import ulsad
images = torch.rand(6, 3, 128, 128, generator=torch.Generator().manual_seed(0))
config = ulsad.ULSADConfig.small(backbone="efficientnet_lite0", image_size=128, epochs=2, seed=0)
print(repr(ulsad.ULSAD(config, device="cpu").fit(images, images[:2], progress=False)["loss"]))
"""


def test_a_seeded_training_does_not_depend_on_onednns_kernels():
    # oneDNN's kernels differ by instruction set (and by cache size); the trainings must not use them.
    # Without the decorator these two losses differ in the fourth digit (4.24102 vs 4.24082 after one epoch).
    import os
    import subprocess
    import sys

    losses = {isa: subprocess.run([sys.executable, "-c", TRAIN_TWICE], capture_output=True, text=True, check=True,
                                  env={**os.environ, "ONEDNN_MAX_CPU_ISA": isa}).stdout
              for isa in ("SSE41", "AVX2")}
    assert losses["SSE41"] == losses["AVX2"] and "[" in losses["AVX2"]


def test_every_training_of_the_course_is_wrapped():
    from iadtutor import defectmaker, ulsad

    for train in (ulsad.ULSAD.fit, defectmaker.finetune_backbone):
        assert train.__wrapped__.__name__ == train.__name__  # functools.wraps of same_numbers_on_every_cpu


def test_torch_threads_sets_the_count_for_the_block_and_restores_it_even_after_an_error():
    before = torch.get_num_threads()
    with backbones.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with backbones.torch_threads(1):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with backbones.torch_threads(None):  # None: left as it is
        assert torch.get_num_threads() == before
