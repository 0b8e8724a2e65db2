"""The ablations of LWinNN: the window size δ (paper sec. 4.3, fig. 5) and the embedding (sec. 4.4, table 3).

:func:`window_sweep` scores one embedded category with several window sizes.

The embedding ablation (paper sec. 4.4, table 3): four preprocessing switches.

=================  =========================================  ====================================
switch             the paper's choice                         the alternative
=================  =========================================  ====================================
normalisation      ImageNet shift-scale normalisation         raw [0, 1] pixels
aspect ratio       shortest side to ``image_size``            square resize (ignores the aspect)
pooling            3×3 stride-1 average pooling of each tap   no pooling
interpolation      bilinear resize of the taps                nearest-neighbour resize
=================  =========================================  ====================================

:func:`embedding_ablation` runs the paper's choice and each switch flipped on its own (``design=
"one_at_a_time"``), or all 16 combinations (``design="full"``, what the paper did; :func:`table3`
then averages them per choice like table 3).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace

import pandas as pd
import torch

from .embed import EmbeddingConfig, PatchEmbedder
from .experiment import EmbeddedCategory, load_category, score_category

# switch name -> (EmbeddingConfig field, the paper's choice, the alternative, how to say each)
SWITCHES = {
    "normalisation": ("normalize", True, False, ("ImageNet mean/std", "none")),
    "aspect ratio": ("keep_aspect", True, False, ("kept", "square resize")),
    "pooling": ("pool", True, False, ("3×3 average", "none")),
    "interpolation": ("interpolation", "bilinear", "nearest", ("bilinear", "nearest")),
}
METRICS = ("image_auroc", "pixel_auroc", "aupro")


def paper_config(image_size: int = 256) -> EmbeddingConfig:
    """The LWinNN paper's preprocessing: normalised, aspect kept, pooled, bilinear."""
    return EmbeddingConfig(image_size=image_size, **{field: on for field, on, _, _ in SWITCHES.values()})


def switch_configs(base: EmbeddingConfig, design: str = "one_at_a_time") -> list[tuple[str, EmbeddingConfig]]:
    """``(label, config)`` pairs to run.

    ``"one_at_a_time"``: ``base`` first (label ``"paper's choice"``), then ``base`` with one switch flipped
    (label ``"<switch>: <alternative>"``). ``"full"``: all 16 combinations of the four switches, labelled
    by the switches that differ from the paper's choice (``"paper's choice"`` when none).
    """
    if design == "one_at_a_time":
        runs = [("paper's choice", base)]
        for name, (field, on, off, (_, off_text)) in SWITCHES.items():
            current = getattr(base, field)
            runs.append((f"{name}: {off_text if current == on else SWITCHES[name][3][0]}",
                         replace(base, **{field: off if current == on else on})))
        return runs
    if design == "full":
        runs = []
        for choices in itertools.product((True, False), repeat=len(SWITCHES)):
            settings = {field: (on if keep else off) for keep, (field, on, off, _) in zip(choices, SWITCHES.values())}
            flipped = [f"{name}: {texts[1]}" for keep, (name, (_, _, _, texts)) in zip(choices, SWITCHES.items())
                       if not keep]
            runs.append((", ".join(flipped) or "paper's choice", replace(base, **settings)))
        return runs
    raise ValueError(f"design must be 'one_at_a_time' or 'full'; got {design!r}.")


def _raw_taps(embedder: PatchEmbedder, images: torch.Tensor, batch_size: int = 16) -> list[torch.Tensor]:
    """The backbone's taps (before pooling) of ``(N, 3, H, W)`` images, on the CPU, in batches."""
    chunks = [embedder.steps(images[i:i + batch_size])["taps"] for i in range(0, len(images), batch_size)]
    return [torch.cat([chunk[t].cpu() for chunk in chunks]) for t in range(len(chunks[0]))]


def embed_from_taps(embedder: PatchEmbedder, taps: list[torch.Tensor]) -> torch.Tensor:
    """Finish :meth:`PatchEmbedder.embed` from raw taps: pool, resize to the first tap, concatenate.

    The backbone pass is the expensive part and depends only on the normalisation and the images, so
    the ablation runs it once and reuses the taps for the pooling and interpolation switches.
    """
    pooled = [embedder.pool(tap) for tap in taps]
    size = tuple(pooled[0].shape[-2:])
    return torch.cat([embedder.resize(p, size) for p in pooled], dim=1)


def embedding_ablation(data_root, category: str, backbone, image_size: int = 256, window: int = 5,
                       max_train: int | None = 750, design: str = "one_at_a_time", device: str = "cpu",
                       base: EmbeddingConfig | None = None, progress: bool = False) -> pd.DataFrame:
    """Run LWinNN (window ``δ``) on one category under each config of :func:`switch_configs`.

    ``backbone``: a :class:`iadtutor.backbones.FeatureExtractor`. The category is read once per aspect
    setting, and the backbone runs once per distinct (images, normalisation) pair. Returns one row per
    config: ``setting``, the four switch values, ``image_auroc``, ``pixel_auroc``, ``aupro`` (fractions)
    and ``seconds`` (embedding + scoring; a reused backbone pass counts for the first config only).
    """
    base = base or paper_config(image_size)
    if base.image_size != image_size:
        base = replace(base, image_size=image_size)
    loaded, taps, rows = {}, {}, []
    for label, config in switch_configs(base, design):
        start = time.perf_counter()
        if config.keep_aspect not in loaded:
            loaded[config.keep_aspect] = load_category(data_root, category, image_size=image_size,
                                                       keep_aspect=config.keep_aspect, max_train=max_train,
                                                       progress=progress)
            other = loaded.get(not config.keep_aspect)
            if other is not None and _same_images(other, loaded[config.keep_aspect]):
                loaded[config.keep_aspect] = other  # square images: keeping the aspect changes nothing
        images = loaded[config.keep_aspect]
        embedder = PatchEmbedder(backbone, config)
        key = (id(images), config.normalize, config.layers)
        if key not in taps:
            taps[key] = (_raw_taps(embedder, images.train.images), _raw_taps(embedder, images.test.images))
        train_taps, test_taps = taps[key]
        embedded = EmbeddedCategory(images, embed_from_taps(embedder, train_taps), embed_from_taps(embedder, test_taps),
                                    0.0, 0.0)
        result = score_category(embedded, "lwinnn", device=device, window=window)
        row = {"setting": label}
        row.update({name: getattr(config, field) for name, (field, *_rest) in SWITCHES.items()})
        row.update({metric: result.metrics[metric] for metric in METRICS})
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
    return pd.DataFrame(rows)


def _same_images(a, b) -> bool:
    return all(x.images.shape == y.images.shape and torch.equal(x.images, y.images)
               for x, y in ((a.train, b.train), (a.test, b.test)))


def table3(results: pd.DataFrame) -> pd.DataFrame:
    """Average the runs of a ``design="full"`` ablation per switch and choice, like the paper's table 3:
    one row per (switch, choice) with the mean and standard deviation of each metric over the runs."""
    rows = []
    for name, (_, on, off, texts) in SWITCHES.items():
        for value, text in ((on, texts[0]), (off, texts[1])):
            subset = results[results[name] == value]
            if subset.empty:
                continue
            row = {"switch": name, "choice": text, "runs": len(subset)}
            for metric in METRICS:
                row[metric] = subset[metric].mean()
                row[f"{metric}_std"] = subset[metric].std(ddof=0)
            rows.append(row)
    return pd.DataFrame(rows)


def window_sweep(embedded, windows=(1, 3, 5, 7, 9), device: str = "cpu") -> pd.DataFrame:
    """LWinNN on an :class:`iadtutor.experiment.EmbeddedCategory` for each window size δ (δ = 1 is SPADE's
    fixed position). One row per δ: ``window``, ``image_auroc``, ``pixel_auroc``, ``aupro`` and
    ``test_seconds_per_image``."""
    rows = []
    for window in windows:
        result = score_category(embedded, "lwinnn", device=device, window=int(window))
        row = {"window": int(window)}
        row.update({metric: result.metrics[metric] for metric in METRICS})
        row["test_seconds_per_image"] = result.test_seconds_per_image
        rows.append(row)
    return pd.DataFrame(rows)
