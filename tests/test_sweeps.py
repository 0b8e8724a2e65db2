"""Sweeps against the scorers run one by one (knn + metrics directly) and the toy factory's knob."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from iadtutor import knn, metrics
from iadtutor import pipeline as sweeps
from iadtutor.tools import study
import toyfactory as toy
from iadtutor.backbones import load_backbone
from iadtutor.data import LoadedSplit
from iadtutor.embed import EmbeddingConfig, PatchEmbedder
from iadtutor.pipeline import Category, EmbeddedCategory


def synthetic_category(n_train=6, n_good=3, n_bad=4, c=5, h=6, w=6, size=24, seed=0):
    """Random normal embeddings; each anomalous test image gets a feature bump under its mask."""
    g = torch.Generator().manual_seed(seed)
    train = torch.randn(n_train, c, h, w, generator=g)
    test = torch.randn(n_good + n_bad, c, h, w, generator=g)
    masks = torch.zeros(n_good + n_bad, size, size, dtype=torch.bool)
    scale = size // h
    for i in range(n_good, n_good + n_bad):
        r, col = (i * 2) % (h - 1), (i * 3) % (w - 1)
        test[i, :, r:r + 2, col:col + 2] += 0.4 * (i - n_good + 1)
        masks[i, r * scale:(r + 2) * scale, col * scale:(col + 2) * scale] = True
    labels = torch.tensor([0] * n_good + [1] * n_bad)
    split = lambda n, m, lab: LoadedSplit(torch.zeros(n, 3, size, size), m, lab, ["x"] * n, [f"{i}.png" for i in range(n)])
    category = Category("synthetic", "mvtec_ad", split(n_train, torch.zeros(n_train, size, size, dtype=torch.bool),
                                                       torch.zeros(n_train, dtype=torch.long)),
                        split(n_good + n_bad, masks, labels))
    return EmbeddedCategory(category, train, test, embed_train_seconds=0.5, embed_test_seconds=0.7)


@pytest.fixture(scope="module")
def embedded():
    return synthetic_category()


def direct_metrics(embedded, scorer, image_score="max"):
    """What a scorer gives, computed without iadtutor.pipeline."""
    patch_scores = scorer.fit(embedded.train).score(embedded.test)
    maps = knn.anomaly_maps(patch_scores, tuple(embedded.category.test.masks.shape[-2:]), sigma=4)
    test = embedded.category.test
    scores = knn.image_scores(patch_scores, image_score).numpy()
    return metrics.evaluate_maps(test.labels.numpy(), scores, test.masks.numpy(), maps)


def assert_row(row, expected):
    for name in ("image_auroc", "pixel_auroc", "aupro"):
        assert row[name] == pytest.approx(expected[name], abs=1e-9), name


def test_window_sweep_rows_equal_each_scorer_run_alone(embedded):
    table = sweeps.window_sweep(embedded, windows=[1, 3, 13])
    assert list(table["window"]) == [1, 3, 13]
    assert list(table.columns) == ["window", "image_auroc", "pixel_auroc", "aupro", "search_seconds_per_image",
                                   "test_seconds_per_image"]
    assert_row(table.iloc[0], direct_metrics(embedded, knn.FixedPositionNN()))  # δ = 1 is SPADE
    assert_row(table.iloc[1], direct_metrics(embedded, knn.LocalWindowNN(window=3)))
    # a window of 2·6 + 1 patches covers the whole 6×6 grid from anywhere: global search without a coreset
    assert_row(table.iloc[2], direct_metrics(embedded, knn.GlobalNN(coreset=1.0)))
    assert (table["search_seconds_per_image"] > 0).all() and (table["test_seconds_per_image"] > 0.7 / 7).all()
    with pytest.raises(ValueError, match="positive integers"):
        sweeps.window_sweep(embedded, windows=[0])


def test_search_time_is_the_fastest_run_per_image():
    class Scorer:
        calls = 0

        def score(self, test):
            Scorer.calls += 1

    assert sweeps.search_seconds_per_image(Scorer(), torch.zeros(4, 1, 1, 1), repeats=3) >= 0
    assert Scorer.calls == 3
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        sweeps.search_seconds_per_image(Scorer(), torch.zeros(4, 1, 1, 1), repeats=0)


def test_compare_methods_table_and_results(embedded):
    methods = {"fixed": ("spade", {}), "window 3": ("lwinnn", {"window": 3}), "global": ("global", {"coreset": 0.5})}
    table, results = sweeps.compare_methods(embedded, methods)
    assert list(table.index) == ["fixed", "window 3", "global"] and set(results) == set(methods)
    assert_row(table.loc["fixed"], direct_metrics(embedded, knn.FixedPositionNN()))
    assert_row(table.loc["global"], direct_metrics(embedded, knn.GlobalNN(coreset=0.5)))
    assert results["window 3"].maps.shape == (7, 24, 24)
    assert (table["fit_seconds"] >= 0).all() and (table["search_seconds_per_image"] > 0).all()


def test_tables_carry_bootstrap_intervals_of_their_own_scores(embedded):
    table, results = sweeps.compare_methods(embedded, {"fixed": ("spade", {})}, bootstrap=50)
    test, result = embedded.category.test, results["fixed"]
    expected = metrics.aupro_ci(test.masks.numpy(), result.maps, n_boot=50, seed=0)
    assert table.loc["fixed", "aupro_ci"] == list(expected)
    for name in metrics.METRICS:
        low, high = table.loc["fixed", f"{name}_ci"]
        assert low <= table.loc["fixed", name] <= high
    swept = sweeps.window_sweep(embedded, windows=[1], bootstrap=50)
    assert swept.loc[0, "image_auroc_ci"] == table.loc["fixed", "image_auroc_ci"]  # δ = 1 is SPADE
    assert "image_auroc_ci" in sweeps.k_alpha_sweep(embedded, ks=[1], alphas=[1.0], bootstrap=20)
    assert "image_auroc_ci" not in sweeps.window_sweep(embedded, windows=[1])


def test_k_alpha_sweep_equals_knn_and_ldknn_scorers(embedded):
    table = sweeps.k_alpha_sweep(embedded, ks=[3, 1], alphas=[0.5, 2.0])
    assert list(table["method"]) == ["KNN", "KNN", "LDKNN", "LDKNN", "LDKNN", "LDKNN"]
    assert list(table["k"]) == [1, 3, 1, 1, 3, 3] and math.isnan(table["alpha"].iloc[0])
    for _, row in table.iterrows():
        if row["method"] == "KNN":
            expected = direct_metrics(embedded, knn.GlobalNN(coreset=1.0, k=int(row["k"])), "blocks")
        else:
            expected = direct_metrics(embedded, knn.LDKNN(k=int(row["k"]), alpha=row["alpha"]), "blocks")
        assert_row(row, expected)


def test_ldknn_with_alpha_zero_is_knn_with_k_one(embedded):
    table = sweeps.k_alpha_sweep(embedded, ks=[1, 4], alphas=[0.0])
    knn_1 = table[(table["method"] == "KNN") & (table["k"] == 1)].iloc[0]
    for _, row in table[table["method"] == "LDKNN"].iterrows():
        assert_row(row, knn_1)


def test_k_alpha_sweep_reuses_a_search(embedded):
    from iadtutor.density import neighbour_search

    search = neighbour_search(embedded.train, embedded.test, k_max=5)
    reused = sweeps.k_alpha_sweep(embedded, ks=[1, 4], alphas=[1.0], search=search)
    pd.testing.assert_frame_equal(reused, sweeps.k_alpha_sweep(embedded, ks=[1, 4], alphas=[1.0]))
    with pytest.raises(ValueError, match="at least 6 neighbours"):
        sweeps.k_alpha_sweep(embedded, ks=[6], alphas=[1.0], search=search)
    with pytest.raises(ValueError, match="squared=True"):
        sweeps.k_alpha_sweep(embedded, ks=[2], alphas=[1.0], search=search, squared=True)


def test_standard_methods_labels_follow_parameters():
    methods = sweeps.standard_methods(window=5, coreset=0.1)
    assert methods == {"SPADE (fixed position)": ("spade", {}), "LWinNN (δ = 5)": ("lwinnn", {"window": 5}),
                       "global search (10% coreset)": ("global", {"coreset": 0.1})}


def test_squared_distances_follow_reb_code(embedded):
    table = sweeps.k_alpha_sweep(embedded, ks=[2], alphas=[1.0], squared=True)
    assert_row(table.iloc[1], direct_metrics(embedded, knn.LDKNN(k=2, alpha=1.0, squared=True), "blocks"))


def test_window_vs_global_on_a_shifted_copy():
    """The test image is the train image shifted right by 2 columns (wrapping around), plus a little noise:
    columns 2..7 find their match 2 columns to the left, columns 0..1 theirs 6 columns to the right."""
    g = torch.Generator().manual_seed(3)
    train = torch.randn(1, 4, 5, 8, generator=g)
    test = torch.roll(train, shifts=2, dims=3) + 0.01 * torch.randn(1, 4, 5, 8, generator=g)
    table = sweeps.window_vs_global(train, test, windows=[1, 3, 5, 13])
    assert list(table["window"]) == [1, 3, 5, 13]
    assert list(table["share_found"]) == [0.0, 0.0, 6 / 8, 1.0]
    assert table["mean_ratio"].iloc[-1] == pytest.approx(1.0, abs=1e-3) and table["mean_ratio"].iloc[0] > 10


def test_window_vs_global_equals_a_direct_computation():
    train, test = torch.randn(3, 4, 6, 6), torch.randn(2, 4, 6, 6)
    table = sweeps.window_vs_global(train, test, windows=[3], tolerance=0.1)
    ratio = knn.LocalWindowNN(window=3).fit(train).score(test) / knn.GlobalNN(coreset=1.0).fit(train).score(test)
    assert table["share_found"].iloc[0] == pytest.approx(float((ratio <= 1.1).float().mean()))
    assert table["mean_ratio"].iloc[0] == pytest.approx(float(ratio.mean()), rel=1e-6)


# ------------------------------------------------------------------------------------ translation study
def test_translated_toy_root_is_a_sibling_of_the_default_set(tmp_path):
    assert study.translated_toy_root(tmp_path / "toy", 0.15) == tmp_path / "toy_translation_0.15"
    assert study.translated_toy_root("../data/toy", 0) == study.translated_toy_root("../data/toy", 0.0)


@pytest.fixture(scope="module")
def small_embedder():
    torch.manual_seed(0)
    return PatchEmbedder(load_backbone("efficientnet_lite0", verbose=False), EmbeddingConfig(image_size=64))


def test_translation_study_writes_its_own_folders_and_scores_them(tmp_path, small_embedder):
    default = tmp_path / "toy"
    (default / "bracket").mkdir(parents=True)
    (default / "bracket" / "keep.txt").write_text("the default toy set")
    methods = {"fixed": ("spade", {}), "global": ("global", {"coreset": 0.1})}
    options = dict(image_size=64, n_train=3, n_test_good=2, n_test_per_defect=1)
    table, coverage = study.translation_study(default, [0.0, 0.2], small_embedder, methods, coverage_windows=[1, 3],
                                               coverage_images=2, **options)

    assert list(table.columns[:2]) == ["translation", "method"] and len(table) == 4
    assert list(table["translation"]) == [0.0, 0.0, 0.2, 0.2] and list(table["method"]) == ["fixed", "global"] * 2
    assert table[["image_auroc", "pixel_auroc", "aupro"]].apply(lambda s: s.between(0, 1).all()).all()
    assert list(coverage["translation"]) == [0.0, 0.0, 0.2, 0.2] and list(coverage["window"]) == [1, 3, 1, 3]
    assert coverage["share_found"].between(0, 1).all() and (coverage["mean_ratio"] >= 1 - 1e-6).all()
    assert (default / "bracket" / "keep.txt").read_text() == "the default toy set"
    assert [p.name for p in default.rglob("*")] == ["bracket", "keep.txt"]

    # the numbers are pipeline.compare_methods' on the variant's embeddings (what notebook 03 printed before)
    loaded = sweeps.load_category(tmp_path / "toy_translation_0.2", "bracket", image_size=64, progress=False)
    expected, _ = sweeps.compare_methods(sweeps.embed_category(loaded, small_embedder, progress=False), methods,
                                         timing_repeats=1)
    for label, row in table[table["translation"] == 0.2].set_index("method").iterrows():
        for name in ("image_auroc", "pixel_auroc", "aupro"):
            assert row[name] == expected.loc[label, name], (label, name)

    folder = tmp_path / "toy_translation_0.2" / "bracket"
    info = json.loads((folder / "toy_factory.json").read_text())
    assert info["translation"] == 0.2 and info["n_train"] == 3 and info["image_size"] == 64
    # the images are the toy factory's, rendered with the translation knob turned up
    expected = toy.render_sample("bracket", "good", toy.sample_rng(0, "bracket", "train", "good", 1), 64, 0.2, None)
    from PIL import Image
    np.testing.assert_array_equal(np.asarray(Image.open(folder / "train" / "good" / "001.png")), expected.image)
    assert abs(expected.pose[0]) <= 0.2 * 64 and abs(expected.pose[1]) <= 0.2 * 64


def test_translated_toy_is_reused_or_rewritten(tmp_path):
    options = dict(image_size=64, n_train=2, n_test_good=1, n_test_per_defect=1)
    root = study.make_translated_toy(tmp_path / "toy", 0.1, **options)
    image = root / "bracket" / "train" / "good" / "000.png"
    stamp = image.stat().st_mtime_ns
    assert study.make_translated_toy(tmp_path / "toy", 0.1, **options) == root
    assert image.stat().st_mtime_ns == stamp  # same settings: nothing written
    study.make_translated_toy(tmp_path / "toy", 0.1, **dict(options, n_train=3))
    assert (root / "bracket" / "train" / "good" / "002.png").is_file()  # other settings: written again


def test_a_method_with_its_own_embedding_refuses_another(embedded):
    lwinnn_made = EmbeddedCategory(embedded.category, embedded.train, embedded.test, config=EmbeddingConfig())
    with pytest.raises(ValueError, match=r"method 'patchcore' scores aggregation='neighbourhood' embeddings .*"
                                         r"method_config\('patchcore'\) \(or score them with method global\)"):
        sweeps.score_category(lwinnn_made, "patchcore")
    sweeps.score_category(lwinnn_made, "global")  # the search alone, on any embedding
    config = sweeps.method_config("ldknn", image_size=64)
    assert (config.layers, config.aggregation, config.dimension) == ((1, 2), "neighbourhood", sweeps.REB_DIMENSION)
    assert sweeps.method_config("lwinnn") == EmbeddingConfig()
