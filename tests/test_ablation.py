"""The embedding ablation (LWinNN table 3): which configs run, and the table they make."""

import pandas as pd
import pytest
import torch
from torch import nn

from iadtutor import pipeline as ablation
from iadtutor.metrics import METRICS
from iadtutor.backbones import FeatureExtractor
from toyfactory import make_toy_dataset


def test_one_at_a_time_flips_each_switch_once():
    base = ablation.paper_config(128)
    runs = ablation.switch_configs(base)
    assert [label for label, _ in runs] == ["paper's choice", "normalisation: none", "aspect ratio: square resize",
                                            "pooling: none", "interpolation: nearest"]
    for (_, config), (field, on, off, _) in zip(runs[1:], ablation.SWITCHES.values()):
        differing = [f for f in ("normalize", "keep_aspect", "pool", "interpolation") if getattr(config, f) != getattr(base, f)]
        assert differing == [field] and getattr(config, field) == off


def test_one_at_a_time_from_a_non_paper_base_flips_back():
    base = ablation.paper_config(128).__class__(image_size=128, normalize=False)
    labels = [label for label, _ in ablation.switch_configs(base)]
    assert "normalisation: ImageNet mean/std" in labels


def test_full_design_has_all_16_combinations():
    runs = ablation.switch_configs(ablation.paper_config(64), design="full")
    settings = {(c.normalize, c.keep_aspect, c.pool, c.interpolation) for _, c in runs}
    assert len(runs) == 16 == len(settings) == len({label for label, _ in runs})
    assert runs[0][0] == "paper's choice"
    with pytest.raises(ValueError, match="design must be"):
        ablation.switch_configs(ablation.paper_config(64), design="half")


def test_table3_averages_per_choice():
    results = pd.DataFrame({
        "normalisation": [True, True, False, False], "aspect ratio": [True] * 4, "pooling": [True, False] * 2,
        "interpolation": ["bilinear"] * 4, "image_auroc": [1.0, 0.8, 0.6, 0.4],
        "pixel_auroc": [0.9] * 4, "aupro": [0.5, 0.5, 0.3, 0.3]})
    table = ablation.table3(results).set_index(["switch", "choice"])
    assert table.loc[("normalisation", "ImageNet mean/std"), "image_auroc"] == pytest.approx(0.9)
    assert table.loc[("normalisation", "none"), "image_auroc"] == pytest.approx(0.5)
    assert table.loc[("normalisation", "none"), "image_auroc_std"] == pytest.approx(0.1)
    assert table.loc[("pooling", "none"), "aupro"] == pytest.approx(0.4)
    assert ("aspect ratio", "square resize") not in table.index  # no run had it
    assert table.loc[("aspect ratio", "kept"), "runs"] == 4


def tiny_backbone():
    torch.manual_seed(0)
    stages = [nn.Sequential(nn.Conv2d(3, 4, 3, stride=4, padding=1), nn.ReLU()),
              nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU()),
              nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU())]
    return FeatureExtractor("tiny", nn.Identity(), stages, (4, 4, 4)).eval()


@pytest.mark.parametrize("design_index", range(16))
def test_embedding_from_cached_taps_equals_the_embedder(design_index):
    from iadtutor.embed import PatchEmbedder

    _, config = ablation.switch_configs(ablation.paper_config(64), design="full")[design_index]
    embedder = PatchEmbedder(tiny_backbone(), config)
    images = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(design_index))
    cached = embedder.finish(embedder.taps(images, batch_size=2))
    torch.testing.assert_close(cached, embedder.embed(images, batch_size=3, progress=False))


def test_embedding_ablation_end_to_end_on_toy_data(tmp_path):
    make_toy_dataset(tmp_path, categories=["weave"], image_size=64, n_train=3, n_validation=0, n_test_good=2,
                     n_test_per_defect=1, progress=False)
    table = ablation.embedding_ablation(tmp_path, "weave", tiny_backbone(), image_size=64, window=3, max_train=3)
    assert len(table) == 5 and table["setting"][0] == "paper's choice"
    for metric in METRICS:
        assert table[metric].between(0, 1).all()
    # The toy images are square: keeping the aspect ratio or not gives the very same images and numbers.
    same = table.set_index("setting").loc[["paper's choice", "aspect ratio: square resize"], list(METRICS)]
    assert same.iloc[0].tolist() == same.iloc[1].tolist()
    # Pooling changes the embedding, hence the anomaly maps.
    pooled = table.set_index("setting").loc[["paper's choice", "pooling: none"], "pixel_auroc"]
    assert pooled.iloc[0] != pooled.iloc[1]
