"""The LWinNN embedding with real pretrained EfficientNet-Lite0 weights, checked step by step."""

import pytest
import torch
import torch.nn.functional as F

from iadtutor.backbones import load_backbone
from iadtutor.embed import EmbeddingConfig, PatchEmbedder, neighbourhood_features

PADDED = dict(image_size=64, pool_padding=True)  # the course's former default: maps keep their size


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return load_backbone("efficientnet_lite0", verbose=False)


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_default_embedding_shape_and_channels(backbone, images):
    embedder = PatchEmbedder(backbone, EmbeddingConfig(image_size=64))
    embedding = embedder.embed(images, batch_size=2, progress=False)
    assert embedding.shape == (3, 24 + 40 + 112, 14, 14)  # unpadded pooling: 16 - 2, as LWinNN's code
    assert embedder.channels == 176 and embedding.dtype == torch.float32
    assert EmbeddingConfig().keep_aspect and not EmbeddingConfig().pool_padding


def test_embedding_equals_hand_made_pipeline(backbone, images):
    """Normalise, taps, 3×3 padded average pool, bilinear resize, concatenate — done by hand."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        taps = backbone((images - mean) / std)
    pooled = [F.avg_pool2d(t, 3, 1, 1, count_include_pad=False) for t in taps]
    resized = [F.interpolate(p, size=(16, 16), mode="bilinear", align_corners=False) for p in pooled]
    expected = torch.cat(resized, 1)
    got = PatchEmbedder(backbone, EmbeddingConfig(**PADDED)).embed(images, progress=False)
    torch.testing.assert_close(got, expected)
    unpadded = [F.interpolate(F.avg_pool2d(t, 3, 1), size=(14, 14), mode="bilinear", align_corners=False)
                for t in taps]
    got = PatchEmbedder(backbone, EmbeddingConfig(image_size=64)).embed(images, progress=False)
    torch.testing.assert_close(got, torch.cat(unpadded, 1))


def test_batching_does_not_change_embeddings(backbone, images):
    embedder = PatchEmbedder(backbone, EmbeddingConfig(image_size=64))
    torch.testing.assert_close(embedder.embed(images, batch_size=1, progress=False),
                               embedder.embed(images, batch_size=3, progress=False), atol=1e-5, rtol=1e-5)


def test_unpadded_pooling_shrinks_the_map_like_the_reference_code(backbone, images):
    embedder = PatchEmbedder(backbone, EmbeddingConfig(**PADDED))
    assert embedder.embed(images, progress=False).shape[-2:] == (16, 16)
    embedder = PatchEmbedder(backbone, EmbeddingConfig(image_size=64, pool_padding=False))
    assert embedder.embed(images, progress=False).shape[-2:] == (14, 14)  # 16 - 2


def test_switches_change_what_they_should(backbone, images):
    base = PatchEmbedder(backbone, EmbeddingConfig(**PADDED)).steps(images)
    no_pool = PatchEmbedder(backbone, EmbeddingConfig(**PADDED, pool=False)).steps(images)
    torch.testing.assert_close(no_pool["taps"][0], base["taps"][0])
    torch.testing.assert_close(no_pool["embedding"][:, :24], base["taps"][0])  # first tap is never resized
    nearest = PatchEmbedder(backbone, EmbeddingConfig(**PADDED, interpolation="nearest")).steps(images)
    # Nearest upsampling by 4 repeats each stride-16 value in a 4×4 block.
    third = nearest["resized"][2]
    assert torch.equal(third[..., 0:4, 0:4], third[..., 0:1, 0:1].expand_as(third[..., 0:4, 0:4]))
    raw = PatchEmbedder(backbone, EmbeddingConfig(**PADDED, normalize=False)).steps(images)
    assert not torch.allclose(raw["taps"][0], base["taps"][0])


def test_layer_subset(backbone, images):
    embedder = PatchEmbedder(backbone, EmbeddingConfig(image_size=64, layers=(1, 2)))
    assert embedder.embed(images, progress=False).shape == (3, 40 + 112, 6, 6)


def adaptive_average(row, length):
    """adaptive_avg_pool1d by its definition: output i averages input[floor(i·L/D) : ceil((i+1)·L/D)]."""
    n, out = len(row), []
    for i in range(length):
        start, stop = (i * n) // length, -(-((i + 1) * n) // length)
        out.append(sum(row[start:stop]) / (stop - start))
    return out


def neighbourhood_by_loops(taps, dimension):
    """PatchCore's embedding position by position: zero-padded 3×3 neighbourhoods, (c, 3, 3) order."""
    size = taps[0].shape[-2:]
    layers = []
    for tap in taps:
        n, c, h, w = tap.shape
        padded = F.pad(tap, (1, 1, 1, 1))
        grid = torch.zeros(n, c * 9, h, w)
        for y in range(h):
            for x in range(w):
                grid[:, :, y, x] = padded[:, :, y:y + 3, x:x + 3].reshape(n, -1)
        if (h, w) != size:
            grid = F.interpolate(grid, size=size, mode="bilinear", align_corners=False)
        layers.append(grid)
    out = torch.zeros(len(taps[0]), dimension, *size)
    for i in range(len(taps[0])):
        for y in range(size[0]):
            for x in range(size[1]):
                per_layer = [v for grid in layers for v in adaptive_average(grid[i, :, y, x].tolist(), dimension)]
                out[i, :, y, x] = torch.tensor(adaptive_average(per_layer, dimension))
    return out


@pytest.mark.parametrize("dimension", [7, 20, 64])  # fewer and more numbers than a neighbourhood holds
def test_neighbourhood_features_equal_a_loop_over_positions(dimension):
    generator = torch.Generator().manual_seed(3)
    taps = [torch.randn(2, 3, 6, 6, generator=generator), torch.randn(2, 5, 3, 3, generator=generator)]
    torch.testing.assert_close(neighbourhood_features(taps, dimension), neighbourhood_by_loops(taps, dimension),
                               atol=1e-5, rtol=1e-5)


def test_patchcore_embedding_through_the_embedder(backbone, images):
    config = EmbeddingConfig(image_size=64, layers=(1, 2), aggregation="neighbourhood", dimension=96)
    embedder = PatchEmbedder(backbone, config)
    embedding = embedder.embed(images, progress=False)
    assert embedding.shape == (3, 96, 8, 8) and embedder.channels == 96
    taps = embedder.taps(images)
    torch.testing.assert_close(embedder.finish(taps), embedding)
    torch.testing.assert_close(embedding, neighbourhood_features(taps, 96))


def test_bad_inputs_are_named(backbone):
    with pytest.raises(ValueError, match="interpolation"):
        EmbeddingConfig(interpolation="bicubic")
    with pytest.raises(ValueError, match="aggregation"):
        EmbeddingConfig(aggregation="max")
    with pytest.raises(ValueError, match="dimension"):
        EmbeddingConfig(dimension=0)
    with pytest.raises(ValueError, match="images"):
        PatchEmbedder(backbone).embed(torch.rand(2, 1, 64, 64), progress=False)
