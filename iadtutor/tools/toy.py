"""The toy factory's front-end: the one ``make-toy`` (``iadtutor data make-toy``, ``data_scripts/make_toy.py``)
and the data folder of a notebook's first cell. The generator itself is the package :mod:`toyfactory`."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from toyfactory import LAYOUTS, TOY_CATEGORIES, make_toy_category, make_toy_dataset


def make_toy(out, seed: int = 0, categories=None, image_size: int = 256, progress: bool = True,
             overwrite: bool = False, **options) -> Path:
    """Write the toy factory to ``out`` (all or nothing) and print where it went. ``categories``: None (all), a
    list, or a comma-separated string such as ``"weave,box"``; ``options`` as :func:`toyfactory.make_toy_dataset`
    takes them. A non-empty ``out`` is refused unless ``overwrite`` (``make toy``): then the new folder replaces it."""
    if isinstance(categories, str):
        categories = [c.strip() for c in categories.split(",") if c.strip()]
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; remove it, choose another folder "
                              "or pass --overwrite.")
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.making-", dir=out.parent))
    try:
        make_toy_dataset(scratch, categories, seed=seed, image_size=image_size, progress=progress, **options)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(scratch, out)
            shutil.rmtree(old)
        else:
            os.replace(scratch, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    names = categories or list(TOY_CATEGORIES)
    print(f"toy factory: wrote {', '.join(names)} ({image_size}x{image_size} px, seed {seed}) to {out}")
    return out


def prepare_data_root(dataset: str, data_root, seed: int = 0) -> Path:
    """The data folder a notebook reads (its first cell): for ``dataset="toy"`` write the toy factory
    there if a category is missing. Any other dataset must already be on disk (see ``data_scripts/``);
    a missing folder is an error that names it."""
    root = Path(data_root)
    if dataset == "toy":
        if missing := [c for c in TOY_CATEGORIES if not (root / c / "train").is_dir()]:
            make_toy_dataset(root, categories=missing, seed=seed, progress=False)
        return root
    if not root.is_dir():
        raise FileNotFoundError(f"data_root {root} does not exist: download {dataset} first "
                                f"(python data_scripts/download.py --dataset {dataset} --out {root}).")
    return root


def toy_variant(root, category: str, **settings) -> Path:
    """``root`` holding toy ``category`` drawn with ``settings`` (:func:`toyfactory.make_toy_category`'s keywords,
    the rest its defaults), written unless its ``toy_factory.json`` already records these settings: the one
    writer of the notebooks' toy variants (other seeds, poses, layouts). Returns ``root``."""
    info = Path(root) / category / "toy_factory.json"
    written = json.loads(info.read_text()) if info.is_file() else {}
    if any(written.get(key) != value for key, value in settings.items()):
        make_toy_category(root, category, progress=False, **settings)
    return Path(root)


def layout_variant(data_root, category: str = "box", layout: str = "slots", seed: int = 0, **counts) -> Path:
    """Notebook 07's toy set: ``category`` drawn in ``layout`` (see :data:`toyfactory.LAYOUTS`) at the default size,
    with ``counts`` (``n_train=``, ``n_test_good=``, ... as :func:`toyfactory.make_toy_dataset` takes them; the rest
    its defaults), in ``data_root/../toy_<category>_<layout>`` beside the default set (:func:`toy_variant`).
    Returns that root (it holds the one category)."""
    root = Path(data_root).parent / f"toy_{category}_{layout}"
    if root.resolve() == Path(data_root).resolve():
        raise ValueError(f"the {layout} variant would overwrite data_root {data_root}; pick another data_root.")
    chosen = {} if layout == LAYOUTS[category][0] else {"layout": layout}  # the json names a layout not the default
    return toy_variant(root, category, seed=seed, **chosen, **counts)
