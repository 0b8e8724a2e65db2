"""The LWinNN embedding with real pretrained EfficientNet-Lite0 weights, checked step by step."""

import pytest
import torch
import torch.nn.functional as F

from iadtutor.backbones import load_backbone
from iadtutor.embed import EmbeddingConfig, PatchEmbedder


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
    assert embedding.shape == (3, 24 + 40 + 112, 16, 16)
    assert embedder.channels == 176 and embedding.dtype == torch.float32


def test_embedding_equals_hand_made_pipeline(backbone, images):
    """Normalise, taps, 3×3 padded average pool, bilinear resize, concatenate — done by hand."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        taps = backbone((images - mean) / std)
    pooled = [F.avg_pool2d(t, 3, 1, 1, count_include_pad=False) for t in taps]
    resized = [F.interpolate(p, size=(16, 16), mode="bilinear", align_corners=False) for p in pooled]
    expected = torch.cat(resized, 1)
    got = PatchEmbedder(backbone, EmbeddingConfig(image_size=64)).embed(images, progress=False)
    torch.testing.assert_close(got, expected)


def test_batching_does_not_change_embeddings(backbone, images):
    embedder = PatchEmbedder(backbone, EmbeddingConfig(image_size=64))
    torch.testing.assert_close(embedder.embed(images, batch_size=1, progress=False),
                               embedder.embed(images, batch_size=3, progress=False), atol=1e-5, rtol=1e-5)


def test_unpadded_pooling_shrinks_the_map_like_the_reference_code(backbone, images):
    embedder = PatchEmbedder(backbone, EmbeddingConfig(image_size=64, pool_padding=False))
    assert embedder.embed(images, progress=False).shape[-2:] == (14, 14)  # 16 - 2


def test_switches_change_what_they_should(backbone, images):
    base = PatchEmbedder(backbone, EmbeddingConfig(image_size=64)).steps(images)
    no_pool = PatchEmbedder(backbone, EmbeddingConfig(image_size=64, pool=False)).steps(images)
    torch.testing.assert_close(no_pool["taps"][0], base["taps"][0])
    torch.testing.assert_close(no_pool["embedding"][:, :24], base["taps"][0])  # first tap is never resized
    nearest = PatchEmbedder(backbone, EmbeddingConfig(image_size=64, interpolation="nearest")).steps(images)
    # Nearest upsampling by 4 repeats each stride-16 value in a 4×4 block.
    third = nearest["resized"][2]
    assert torch.equal(third[..., 0:4, 0:4], third[..., 0:1, 0:1].expand_as(third[..., 0:4, 0:4]))
    raw = PatchEmbedder(backbone, EmbeddingConfig(image_size=64, normalize=False)).steps(images)
    assert not torch.allclose(raw["taps"][0], base["taps"][0])


def test_layer_subset(backbone, images):
    embedder = PatchEmbedder(backbone, EmbeddingConfig(image_size=64, layers=(1, 2)))
    assert embedder.embed(images, progress=False).shape == (3, 40 + 112, 8, 8)


def test_bad_inputs_are_named(backbone):
    with pytest.raises(ValueError, match="interpolation"):
        EmbeddingConfig(interpolation="bicubic")
    with pytest.raises(ValueError, match="images"):
        PatchEmbedder(backbone).embed(torch.rand(2, 1, 64, 64), progress=False)
