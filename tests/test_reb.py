"""iadtutor.defectmaker: the KNN / LDKNN x representation table, checked against direct score_category calls
and a brute-force k-nearest-neighbour score on a tiny synthetic category (64 px, a handful of images)."""

import copy

import pytest
import torch

from iadtutor import knn
from iadtutor import pipeline as experiment
from iadtutor import defectmaker as reb
from iadtutor.backbones import load_backbone
from iadtutor.data import LoadedSplit
from iadtutor.embed import EmbeddingConfig, PatchEmbedder

SIZE = 64


def _split(n_good: int, n_bad: int, seed: int) -> LoadedSplit:
    """Grey noisy squares; defective ones carry a bright 10 x 10 blob with its mask."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.4 + 0.05 * torch.rand(n_good + n_bad, 3, SIZE, SIZE, generator=generator)
    masks = torch.zeros(n_good + n_bad, SIZE, SIZE, dtype=torch.bool)
    for i in range(n_good, n_good + n_bad):
        top, left = (torch.randint(5, SIZE - 15, (2,), generator=generator)).tolist()
        masks[i, top:top + 10, left:left + 10] = True
        images[i][:, masks[i]] = 0.95
    labels = torch.tensor([0] * n_good + [1] * n_bad)
    types = ["good"] * n_good + ["blob"] * n_bad
    return LoadedSplit(images, masks, labels, types, [f"{t}_{i}.png" for i, t in enumerate(types)])


@pytest.fixture(scope="module")
def tiny():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    category = experiment.Category("tiny", "mvtec", _split(4, 0, seed=0), _split(3, 3, seed=1))
    imagenet = load_backbone("efficientnet_lite0", "cpu", verbose=False)
    other = copy.deepcopy(imagenet)
    with torch.no_grad():  # a second "representation": the same network with perturbed first weights
        first = next(other.parameters())
        first.add_(0.2 * torch.randn(first.shape, generator=torch.Generator().manual_seed(0)))
    yield category, {"ImageNet": imagenet, "other": other}
    torch.set_num_threads(previous)


CONFIG = experiment.method_config("ldknn", image_size=SIZE)


def test_table_matches_direct_score_category_calls(tiny):
    category, backbones = tiny
    table = reb.compare_representations(category, backbones, reb.reb_scorers(k=1, alpha=0.5), CONFIG)
    assert list(table["representation"]) == ["ImageNet", "ImageNet", "other", "other"]
    assert list(table["scorer"]) == ["KNN", "LDKNN"] * 2
    for name, backbone in backbones.items():
        embedded = experiment.embed_category(category, PatchEmbedder(backbone, CONFIG), progress=False)
        knn = experiment.score_category(embedded, "knn", k=1)
        ldknn = experiment.score_category(embedded, "ldknn", k=1, alpha=0.5)
        for scorer, direct in (("KNN", knn), ("LDKNN", ldknn)):
            row = table[(table.representation == name) & (table.scorer == scorer)].iloc[0]
            for metric in reb.METRICS:
                assert row[metric] == pytest.approx(direct.metrics[metric], abs=1e-12), (name, scorer, metric)


def test_knn_with_k_neighbours_is_the_mean_of_the_k_smallest_distances(tiny):
    category, backbones = tiny
    embedded = experiment.embed_category(category, PatchEmbedder(backbones["ImageNet"], CONFIG), progress=False)
    result = experiment.score_category(embedded, reb.reb_scorers(k=3)["KNN"]())
    bank = embedded.train.permute(0, 2, 3, 1).reshape(-1, embedded.train.shape[1]).double()
    n, c, h, w = embedded.test.shape
    queries = embedded.test.permute(0, 2, 3, 1).reshape(-1, c).double()
    expected = torch.cdist(queries, bank).topk(3, largest=False).values.mean(1).view(n, h, w)
    torch.testing.assert_close(result.patch_scores.double(), expected, rtol=1e-4, atol=1e-4)
    blocks = torch.nn.functional.avg_pool2d(expected[:, None], 3).flatten(1).amax(1)  # REB's image score
    assert result.image_scores == pytest.approx(blocks.numpy(), rel=1e-4)


def test_keep_results_and_grid(tiny):
    category, backbones = tiny
    table, results = reb.compare_representations(category, {"ImageNet": backbones["ImageNet"]},
                                                 reb.reb_scorers(k=2), CONFIG, keep_results=True)
    assert set(results) == {("ImageNet", "KNN"), ("ImageNet", "LDKNN")}
    assert results["ImageNet", "LDKNN"].maps.shape == (6, SIZE, SIZE)
    grid = reb.results_grid(table, "aupro")
    assert list(grid.index) == ["ImageNet"] and list(grid.columns) == ["KNN", "LDKNN"]
    assert grid.loc["ImageNet", "LDKNN"] == table.iloc[1]["aupro"]


def test_intervals_are_the_metrics_bootstrap_intervals(tiny):
    category, backbones = tiny
    table, results = reb.compare_representations(category, {"ImageNet": backbones["ImageNet"]},
                                                 reb.reb_scorers(k=1), CONFIG, keep_results=True, n_boot=50)
    from iadtutor import metrics
    for _, row in table.iterrows():
        result = results[row.representation, row.scorer]
        assert (row.image_auroc_low, row.image_auroc_high) == metrics.image_auroc_ci(
            category.test.labels, result.image_scores, n_boot=50)
        assert (row.aupro_low, row.aupro_high) == metrics.aupro_ci(category.test.masks, result.maps, n_boot=50)
        for metric in ("image_auroc", "pixel_auroc", "aupro"):
            assert row[f"{metric}_low"] <= row[metric] + 1e-9 and row[metric] <= row[f"{metric}_high"] + 1e-9
    assert "image_auroc_low" not in reb.compare_representations(category, backbones, reb.reb_scorers(k=1), CONFIG)


def test_bad_inputs_are_named(tiny):
    category, _ = tiny
    with pytest.raises(ValueError, match="backbones is empty"):
        reb.compare_representations(category, {})
    with pytest.raises(ValueError, match="FeatureExtractor"):
        reb.compare_representations(category, {"x": torch.nn.Identity()})
    with pytest.raises(ValueError, match="k must be"):
        reb.reb_scorers(k=0)


def test_local_density_maps_put_each_bank_patch_back_in_place(tiny):
    category, backbones = tiny
    embedded = experiment.embed_category(category, PatchEmbedder(backbones["ImageNet"], CONFIG), progress=False)
    result = experiment.score_category(embedded, reb.reb_scorers(k=2)["LDKNN"]())
    maps = result.scorer.density_maps()
    m, c, h, w = embedded.train.shape
    assert maps.shape == (m, h, w)
    # brute force for one patch: mean distance to its 2 nearest other bank patches
    bank = embedded.train.permute(0, 2, 3, 1).reshape(-1, c).double()
    image, row, col = 2, 3, 5
    index = (image * h + row) * w + col
    distances = torch.cdist(bank[index:index + 1], bank)[0]
    distances[index] = float("inf")
    assert float(maps[image, row, col]) == pytest.approx(float(distances.topk(2, largest=False).values.mean()), rel=1e-4)
    with pytest.raises(ValueError, match="coreset=1.0"):
        knn.LDKNN(k=2, coreset=0.5).fit(embedded.train).density_maps()
