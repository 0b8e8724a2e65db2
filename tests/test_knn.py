"""Each scorer against a brute-force loop written independently of iadtutor.knn."""

import math

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from iadtutor import knn, pipeline


def random_embeddings(n, c=6, h=5, w=7, seed=0):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def brute_force_window(train, test, window):
    """Eq. 2 literally: for each test patch, loop over train images and window positions."""
    n, _, h, w = test.shape
    lo, hi = window // 2, window - window // 2  # a in [h - lo, h + hi)
    out = torch.empty(n, h, w, dtype=torch.float64)
    for i in range(n):
        for y in range(h):
            for x in range(w):
                best = math.inf
                for m in range(len(train)):
                    for a in range(max(0, y - lo), min(h, y + hi)):
                        for b in range(max(0, x - lo), min(w, x + hi)):
                            d = torch.linalg.vector_norm(test[i, :, y, x].double() - train[m, :, a, b].double())
                            best = min(best, float(d))
                out[i, y, x] = best
    return out


@pytest.mark.parametrize("window", [1, 2, 3, 4, 5])
def test_local_window_matches_brute_force(window):
    train, test = random_embeddings(4, seed=1), random_embeddings(3, seed=2)
    scores = knn.LocalWindowNN(window=window).fit(train).score(test)
    assert scores.shape == (3, 5, 7)
    torch.testing.assert_close(scores.double(), brute_force_window(train, test, window), atol=1e-5, rtol=1e-5)


def test_small_chunks_give_identical_scores():
    train, test = random_embeddings(5, seed=3), random_embeddings(7, seed=4)
    whole = knn.LocalWindowNN(window=3).fit(train).score(test)
    chunked = knn.LocalWindowNN(window=3, chunk_bytes=1).fit(train).score(test)
    assert chunked.shape == whole.shape
    torch.testing.assert_close(whole, chunked, atol=1e-5, rtol=1e-6)


def test_window_covering_everything_equals_global_search_without_coreset():
    train, test = random_embeddings(4, seed=5), random_embeddings(2, seed=6)
    full_window = knn.LocalWindowNN(window=2 * 7 + 1).fit(train).score(test)
    global_all = knn.GlobalNN(coreset=1.0).fit(train).score(test)
    torch.testing.assert_close(full_window, global_all, atol=1e-5, rtol=1e-5)


def test_fixed_position_is_spade_eq1():
    train, test = random_embeddings(4, seed=7), random_embeddings(2, seed=8)
    scores = knn.FixedPositionNN().fit(train).score(test)
    expected = torch.linalg.vector_norm(test[:, None].double() - train[None].double(), dim=2).amin(1)
    torch.testing.assert_close(scores.double(), expected, atol=1e-5, rtol=1e-5)


def test_nearest_reports_where_the_match_is():
    train = torch.zeros(3, 2, 6, 6)
    test = torch.zeros(1, 2, 6, 6)
    test[0, :, 2, 3] = torch.tensor([5.0, -1.0])
    train[2, :, 3, 2] = torch.tensor([5.0, -1.0])  # the exact match: image 2, offset (+1, -1)
    distance, train_index, offset_index = knn.LocalWindowNN(window=3).fit(train).nearest(test)
    offsets = list(knn.window_offsets(3))
    pairs = [(dy, dx) for dy in offsets for dx in offsets]
    assert float(distance[0, 2, 3]) == pytest.approx(0.0, abs=1e-6)
    assert int(train_index[0, 2, 3]) == 2
    assert pairs[int(offset_index[0, 2, 3])] == (1, -1)


def test_window_offsets_even_and_odd():
    assert list(knn.window_offsets(1)) == [0]
    assert list(knn.window_offsets(4)) == [-2, -1, 0, 1]
    assert list(knn.window_offsets(7)) == [-3, -2, -1, 0, 1, 2, 3]
    with pytest.raises(ValueError, match="window"):
        knn.window_offsets(0)


def test_global_nn_matches_sklearn_with_full_bank():
    train, test = random_embeddings(3, seed=9), random_embeddings(2, seed=10)
    bank = train.permute(0, 2, 3, 1).reshape(-1, 6).numpy()
    queries = test.permute(0, 2, 3, 1).reshape(-1, 6).numpy()
    dist, _ = NearestNeighbors(n_neighbors=3).fit(bank).kneighbors(queries)
    scores = knn.GlobalNN(coreset=1.0, k=3).fit(train).score(test)
    np.testing.assert_allclose(scores.numpy().ravel(), dist.mean(1), atol=1e-5)


def brute_force_coreset(points, n_select, first):
    selected = [first]
    for _ in range(n_select - 1):
        d = np.min(((points[:, None] - points[selected][None]) ** 2).sum(-1), axis=1)
        selected.append(int(np.argmax(d)))
    return selected


def test_greedy_coreset_matches_brute_force_farthest_point():
    points = torch.randn(200, 5, generator=torch.Generator().manual_seed(11))
    chosen = knn.greedy_coreset(points, 0.05, projection_dim=None, seed=3)
    assert len(chosen) == 10
    assert chosen.tolist() == brute_force_coreset(points.numpy().astype(np.float64), 10, int(chosen[0]))


def test_coreset_covers_clusters():
    # Four tight clusters: a 4-point coreset must take one point from each.
    centres = torch.tensor([[0.0, 0], [10, 0], [0, 10], [10, 10]])
    points = (centres[:, None] + 0.01 * torch.randn(4, 25, 2)).reshape(-1, 2)
    chosen = knn.greedy_coreset(points, 4 / 100, projection_dim=None)
    assert sorted((chosen // 25).tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("squared", [False, True])
def test_ldknn_matches_brute_force(squared):
    train, test = random_embeddings(2, c=4, h=4, w=4, seed=12), random_embeddings(2, c=4, h=4, w=4, seed=13)
    k, alpha = 3, 0.7
    bank = train.permute(0, 2, 3, 1).reshape(-1, 4).double()
    queries = test.permute(0, 2, 3, 1).reshape(-1, 4).double()

    def dist(a, b):
        d = float(torch.linalg.vector_norm(a - b))
        return d * d if squared else d

    density = []
    for i in range(len(bank)):
        others = sorted(dist(bank[i], bank[j]) for j in range(len(bank)) if j != i)
        density.append(sum(others[:k]) / k)
    expected = []
    for q in queries:
        distances = [dist(q, b) for b in bank]
        j = int(np.argmin(distances))
        expected.append(distances[j] - alpha * density[j])
    scorer = knn.LDKNN(k=k, alpha=alpha, squared=squared).fit(train)
    np.testing.assert_allclose(scorer.local_density.numpy(), density, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(scorer.score(test).numpy().ravel(), expected, atol=1e-5, rtol=1e-5)


def test_ldknn_with_alpha_zero_is_global_1nn():
    train, test = random_embeddings(3, seed=14), random_embeddings(2, seed=15)
    ld = knn.LDKNN(k=4, alpha=0.0).fit(train).score(test)
    nn1 = knn.GlobalNN(coreset=1.0).fit(train).score(test)
    torch.testing.assert_close(ld, nn1)


def test_image_scores_and_anomaly_maps():
    scores = torch.zeros(2, 4, 4)
    scores[1, 2, 1] = 3.0
    assert knn.image_scores(scores).tolist() == [0.0, 3.0]
    maps = knn.anomaly_maps(scores, (16, 16), sigma=4)
    assert maps.shape == (2, 16, 16) and maps.dtype == np.float32
    assert np.all(maps[0] == 0)
    peak = np.unravel_index(np.argmax(maps[1]), maps[1].shape)
    assert abs(peak[0] - 10) <= 2 and abs(peak[1] - 6) <= 2  # patch (2, 1) covers pixels 8–11 × 4–7
    # Blurring keeps the mass (reflecting borders) but spreads it.
    unblurred = knn.anomaly_maps(scores, (16, 16), sigma=0)
    assert maps[1].max() < unblurred[1].max()


def test_block_image_scores_are_reb_code_block_means():
    scores = torch.zeros(2, 7, 7)
    scores[0, 1, 1] = 9.0           # alone in the top-left 3×3 block: mean 1
    scores[1, 3:6, 3:6] = 2.0       # fills the middle block: mean 2
    scores[1, 6, 6] = 50.0          # row and column 6 do not fill a block: dropped, as avg_pool2d(·, 3) does
    assert knn.image_scores(scores, "blocks").tolist() == [1.0, 2.0]
    assert knn.image_scores(scores, "max").tolist() == [9.0, 50.0]
    with pytest.raises(ValueError, match="rule"):
        knn.image_scores(scores, "mean")


def test_reweighted_image_scores_follow_patchcore_eq7_by_hand():
    train, test = random_embeddings(3, seed=21), random_embeddings(2, seed=22)
    scorer = knn.GlobalNN(coreset=1.0, image_score="reweighted").fit(train)
    patch_scores = scorer.score(test)
    got = scorer.image_scores(patch_scores, test)
    bank = train.permute(0, 2, 3, 1).reshape(-1, 6).double()
    for i in range(len(test)):
        y, x = divmod(int(patch_scores[i].argmax()), test.shape[-1])
        f = test[i, :, y, x].double()
        nearest = int((bank - f).norm(dim=1).argmin())
        support = (bank - bank[nearest]).norm(dim=1).argsort()[:9]        # m* and its 8 nearest
        distance = (bank[support] - f).norm(dim=1)
        weight = 1 - distance[0].exp() / distance.exp().sum()
        assert float(support[0]) == nearest
        assert got[i].item() == pytest.approx(float(weight * patch_scores[i].max()), rel=1e-5)
    assert torch.equal(knn.GlobalNN(coreset=1.0).fit(train).image_scores(patch_scores, test),
                       patch_scores.flatten(1).amax(1))
    with pytest.raises(ValueError, match="image_score must be one of max, blocks for LocalWindowNN"):
        knn.LocalWindowNN(image_score="reweighted")


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="train embeddings"):
        knn.LocalWindowNN().fit(torch.zeros(3, 4))
    scorer = knn.LocalWindowNN(window=3).fit(random_embeddings(2))
    with pytest.raises(ValueError, match="channels"):
        scorer.score(torch.zeros(1, 5, 5, 7))
    with pytest.raises(ValueError, match="patches"):
        scorer.score(torch.zeros(1, 6, 4, 7))
    with pytest.raises(ValueError, match="method"):
        pipeline.make_scorer("lof")
    with pytest.raises(ValueError, match="coreset"):
        knn.GlobalNN(coreset=0)


def test_make_scorer_builds_each_method():
    assert isinstance(pipeline.make_scorer("spade"), knn.FixedPositionNN)
    assert pipeline.make_scorer("lwinnn", window=5).window == 5
    assert pipeline.make_scorer("patchcore").coreset == 0.01
    assert pipeline.make_scorer("patchcore", image_score="reweighted").image_score == "reweighted"
    assert pipeline.make_scorer("global").coreset == 0.01
    vanilla = pipeline.make_scorer("knn", k=3)
    assert (vanilla.k, vanilla.coreset, vanilla.image_score) == (3, 1.0, "blocks")
    with pytest.raises(ValueError, match="'patchcore' has no parameter 'k'; its parameters: coreset, image_score"):
        pipeline.make_scorer("patchcore", k=9)
    ld = pipeline.make_scorer("ldknn", k=7, alpha=0.5)
    assert (ld.density_k, ld.alpha, ld.coreset) == (7, 0.5, 1.0)


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("chunk_bytes", [512 * 2**20, 100_000])  # one block, or 257 queries × 97 bank rows
def test_knn_distances_match_sklearn_in_blocks(k, chunk_bytes):
    generator = torch.Generator().manual_seed(16)
    bank, queries = torch.randn(900, 12, generator=generator), torch.randn(300, 12, generator=generator)
    distance, index = knn.knn_distances(queries, bank, k, chunk_bytes=chunk_bytes)
    expected_distance, expected_index = NearestNeighbors(n_neighbors=k).fit(bank.numpy()).kneighbors(queries.numpy())
    np.testing.assert_allclose(distance.numpy(), expected_distance, atol=1e-5)
    assert (index.numpy() == expected_index).all()  # random data: no exact ties


@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("chunk_bytes", [512 * 2**20, 8 * 200**2])  # one block, or 15 pairs of 200-row blocks
def test_bank_self_neighbours_match_sklearn(k, chunk_bytes):
    bank = torch.randn(900, 12, generator=torch.Generator().manual_seed(17))
    distance, index = knn.knn_distances(bank, bank, k, exclude_self=True, chunk_bytes=chunk_bytes)
    expected_distance, expected_index = NearestNeighbors(n_neighbors=k + 1).fit(bank.numpy()).kneighbors(bank.numpy())
    np.testing.assert_allclose(distance.numpy(), expected_distance[:, 1:], atol=1e-5)
    assert (index.numpy() == expected_index[:, 1:]).all()
    squared, _ = knn.knn_distances(bank, bank, k, squared=True, exclude_self=True, chunk_bytes=chunk_bytes)
    np.testing.assert_allclose(squared.numpy(), expected_distance[:, 1:] ** 2, atol=1e-4)
    with pytest.raises(ValueError, match="exclude_self"):
        knn.knn_distances(bank[:10], bank, k, exclude_self=True)


@pytest.mark.parametrize("scorer", [knn.FixedPositionNN(), knn.LocalWindowNN(window=3), knn.GlobalNN(), knn.LDKNN()],
                         ids=lambda s: type(s).__name__)
def test_scoring_before_fitting_is_one_clear_sentence(scorer):
    with pytest.raises(ValueError, match=rf"^this {type(scorer).__name__} is not fitted yet: call fit"):
        scorer.score(torch.zeros(1, 4, 5, 5))
