"""Local densities of the memory bank (REB eq. 2) against hand-made point clouds and scipy; projections."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from iadtutor import density, knn


def local_densities(embeddings, k, squared=False):
    """REB eq. 2 for every train patch, ``(M, h, w)``: the densities an LDKNN memory bank holds."""
    return knn.LDKNN(k=k, squared=squared).fit(embeddings).density_maps()


def line_embeddings():
    """Five 1-D points 0, 1, 3, 7, 15 stored as one image of 1×5 patches, shape (1, 1, 1, 5)."""
    return torch.tensor([0.0, 1.0, 3.0, 7.0, 15.0]).view(1, 1, 1, 5)


def test_densities_of_points_on_a_line():
    points = line_embeddings()
    # nearest other point: 0->1 (1), 1->0 (1), 3->1 (2), 7->3 (4), 15->7 (8)
    assert local_densities(points, k=1).flatten().tolist() == [1, 1, 2, 4, 8]
    # two nearest: 0: (1 + 3) / 2, 1: (1 + 2) / 2, 3: (2 + 3) / 2, 7: (4 + 6) / 2, 15: (8 + 12) / 2
    assert local_densities(points, k=2).flatten().tolist() == [2, 1.5, 2.5, 5, 10]
    # squared distances: 0: (1 + 9) / 2, 15: (64 + 144) / 2
    squared = local_densities(points, k=2, squared=True).flatten()
    assert squared[0] == 5 and squared[4] == 104


def test_a_tight_cluster_is_dense_and_an_outlier_sparse():
    cluster = 0.01 * torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    cluster[1, :, 1, 0] += 10.0  # one patch (image 1, row 1, col 0) far from the rest
    d = local_densities(cluster, k=3)
    assert d.shape == (2, 2, 2)
    assert int(d.argmax()) == 1 * 4 + 1 * 2 + 0
    assert d.max() > 9 and torch.sort(d.flatten()).values[-2] < 0.1


def test_local_densities_against_scipy_on_random_patches():
    embeddings = torch.randn(3, 4, 3, 5, generator=torch.Generator().manual_seed(1))
    points = embeddings.permute(0, 2, 3, 1).reshape(-1, 4).double().numpy()
    pairwise = cdist(points, points)
    np.fill_diagonal(pairwise, np.inf)
    expected = np.sort(pairwise, axis=1)[:, :4].mean(1).reshape(3, 3, 5)
    np.testing.assert_allclose(local_densities(embeddings, k=4).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_densities_equal_the_ldknn_memory_bank():
    embeddings = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    scorer = knn.LDKNN(k=3).fit(embeddings)
    points = embeddings.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    pairwise = cdist(points, points)
    np.fill_diagonal(pairwise, np.inf)
    expected = torch.from_numpy(np.sort(pairwise, axis=1)[:, :3].mean(1).reshape(2, 4, 4)).float()
    torch.testing.assert_close(scorer.density_maps(), expected)
    torch.testing.assert_close(scorer.local_density.view(2, 4, 4), expected)
    with pytest.raises(ValueError, match="coreset=1.0"):
        knn.LDKNN(k=3, coreset=0.5).fit(embeddings).density_maps()


def test_density_table_says_where_each_patch_is():
    d = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)
    table = density.density_table(d, paths=["a.png", "b.png"])
    assert list(table.columns) == ["image", "row", "col", "density", "path"]
    row = table.iloc[1 * 12 + 2 * 4 + 3]
    assert (row["image"], row["row"], row["col"], row["density"], row["path"]) == (1, 2, 3, 23.0, "b.png")
    with pytest.raises(ValueError, match="paths has 1 entries"):
        density.density_table(d, paths=["a.png"])


def test_sample_patches_is_seeded_and_distinct():
    first = density.sample_patches(1000, 50, seed=4)
    assert len(set(first.tolist())) == 50 and np.all(np.diff(first) > 0)
    np.testing.assert_array_equal(first, density.sample_patches(1000, 50, seed=4))
    assert not np.array_equal(first, density.sample_patches(1000, 50, seed=5))
    np.testing.assert_array_equal(density.sample_patches(10, 50), np.arange(10))


def test_pca_projection_against_numpy_svd():
    rng = np.random.default_rng(6)
    features = rng.standard_normal((200, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1])
    points = density.project_patches(features)
    assert points.shape == (200, 2) and points.dtype == np.float32
    centred = features - features.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    for axis in range(2):  # same axes up to sign
        np.testing.assert_allclose(np.abs(points[:, axis]), np.abs(expected[:, axis]), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(points, density.project_patches(features))
    # the sign convention makes the projection independent of the order of the points
    order = rng.permutation(200)
    np.testing.assert_allclose(density.project_patches(features[order]), points[order], rtol=1e-4, atol=1e-4)


def test_projection_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape \\(P, C\\)"):
        density.project_patches(np.zeros((2, 5)))


def test_ldknn_terms_add_up_to_the_score():
    train = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(8))
    test = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(9))
    scorer = knn.LDKNN(k=2, alpha=0.7).fit(train)
    terms = scorer.terms(test)
    torch.testing.assert_close(terms["score"], scorer.score(test))
    # the distance term is plain 1-NN over the whole bank; the density is the neighbour's own
    torch.testing.assert_close(terms["distance"], knn.GlobalNN(coreset=1.0).fit(train).score(test))
    densities = local_densities(train, k=2).flatten()
    torch.testing.assert_close(terms["density"], densities[terms["neighbour"]])
    with pytest.raises(ValueError, match="not fitted yet"):
        knn.LDKNN().terms(test)


def test_neighbour_search_equals_the_scorers():
    train = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(10))
    test = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(11))
    search = density.neighbour_search(train, test, k_max=6)
    for k in (1, 3, 6):
        torch.testing.assert_close(search.densities(k), local_densities(train, k=k))
        torch.testing.assert_close(search.knn_scores(k), knn.GlobalNN(coreset=1.0, k=k).fit(train).score(test))
        for alpha in (0.0, 0.5, 2.0):
            torch.testing.assert_close(search.ldknn_scores(k, alpha), knn.LDKNN(k=k, alpha=alpha).fit(train).score(test))
    terms = search.ldknn_terms(3, 1.0)
    expected = knn.LDKNN(k=3, alpha=1.0).fit(train).terms(test)
    for name in ("distance", "density", "score"):
        torch.testing.assert_close(terms[name], expected[name])
    with pytest.raises(ValueError, match="between 1 and 6"):
        search.densities(7)


def test_neighbour_search_squared_matches_reb_code_variant():
    train = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(12))
    test = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(13))
    search = density.neighbour_search(train, test, k_max=3, squared=True)
    torch.testing.assert_close(search.ldknn_scores(3, 1.0),
                               knn.LDKNN(k=3, alpha=1.0, squared=True).fit(train).score(test))


def test_patch_masks_mark_patches_touching_a_defect():
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, 5, 2] = True  # one pixel in patch (2, 1) of a 4×4 grid of 2×2-pixel patches
    expected = torch.zeros(1, 4, 4, dtype=torch.bool)
    expected[0, 2, 1] = True
    assert torch.equal(density.patch_masks(masks, (4, 4)), expected)


def test_neighbour_density_summary_by_hand():
    terms = {"distance": torch.tensor([[[1.0, 2.0]], [[3.0, 5.0]]]), "density": torch.tensor([[[0.5, 0.5]], [[1.0, 4.0]]])}
    masks = torch.zeros(2, 1, 4, dtype=torch.bool)
    masks[1, 0, 3] = True  # image 1, right patch
    summary = density.neighbour_density_summary(terms, masks, torch.tensor([0, 1]))
    assert list(summary.index) == ["patches of normal images", "normal patches of anomalous images", "defect patches"]
    assert summary.loc["patches of normal images"].tolist() == [2, 1.5, 0.5]
    assert summary.loc["normal patches of anomalous images"].tolist() == [1, 3.0, 1.0]
    assert summary.loc["defect patches"].tolist() == [1, 5.0, 4.0]
