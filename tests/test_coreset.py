"""The pruned greedy coreset against the plain k-center loop: identical indices, on realistic data."""

import math

import pytest
import torch

from iadtutor import knn
from iadtutor.backbones import load_backbone
from iadtutor.embed import EmbeddingConfig, PatchEmbedder
from toyfactory import render_sample


def plain_greedy_coreset(features, ratio, projection_dim=128, seed=0):
    """The textbook loop: every iteration measures every point's distance to the newest centre."""
    n_points = len(features)
    n_select = max(1, int(round(ratio * n_points)))
    generator = torch.Generator().manual_seed(seed)
    points = features.float()
    if projection_dim is not None and projection_dim < points.shape[1]:
        projection = torch.randn(points.shape[1], projection_dim, generator=generator) / math.sqrt(projection_dim)
        points = points @ projection
    selected = [int(torch.randint(n_points, (1,), generator=generator))]
    min_distance = (points - points[selected[0]]).pow(2).sum(1)  # the package's definition of distance
    while len(selected) < n_select:
        selected.append(int(torch.argmax(min_distance)))
        min_distance = torch.minimum(min_distance, (points - points[selected[-1]]).pow(2).sum(1))
    return selected


@pytest.fixture(autouse=True)
def one_thread():
    """Many tiny tensor operations: one thread is faster than two on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy_patches():
    """Real EfficientNet-Lite0 patch embeddings of toy images: (12 · 24 · 24, 176)."""
    images = torch.stack([torch.from_numpy(render_sample(category, rng=i, image_size=96).image).permute(2, 0, 1)
                          for category in ("bracket", "weave", "pills") for i in range(4)]).float() / 255
    embedder = PatchEmbedder(load_backbone("efficientnet_lite0", verbose=False, download=False),
                             EmbeddingConfig(image_size=96))
    return knn.flatten_patches(embedder.embed(images, progress=False)).contiguous()


@pytest.mark.parametrize("ratio, seed", [(0.02, 0), (0.1, 1)])
def test_identical_indices_on_real_embeddings(toy_patches, ratio, seed):
    chosen = knn.greedy_coreset(toy_patches, ratio, seed=seed, chunk_rows=1000)
    assert chosen.tolist() == plain_greedy_coreset(toy_patches, ratio, seed=seed)


def test_identical_indices_on_clustered_points_without_projection():
    generator = torch.Generator().manual_seed(5)
    centres = 4 * torch.randn(40, 24, generator=generator)
    spread = torch.rand(8000, 1, generator=generator)  # tight and loose clusters
    points = centres[torch.randint(40, (8000,), generator=generator)]
    points = points + spread * torch.randn(8000, 24, generator=generator)
    chosen = knn.greedy_coreset(points, 0.05, projection_dim=None, seed=2, chunk_rows=512)
    assert chosen.tolist() == plain_greedy_coreset(points, 0.05, projection_dim=None, seed=2)


def test_duplicates_and_ties_pick_the_first_farthest_point():
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]).repeat(3, 1)
    chosen = knn.greedy_coreset(points, 7 / 15, projection_dim=None, seed=0)
    assert chosen.tolist() == plain_greedy_coreset(points, 7 / 15, projection_dim=None, seed=0)
    assert sorted(map(tuple, points[chosen[:5]].tolist())) == sorted(map(tuple, points[:5].tolist()))
