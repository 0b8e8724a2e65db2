#!/usr/bin/env python
"""Generate the toy factory (a small synthetic dataset in MVTec AD layout) and verify it.

    python data_scripts/make_toy.py --out data/toy [--categories weave,bracket] [--seed 0] [--n-train 40]

Writes with :func:`iadtutor.tools.toy.make_toy`, the one make-toy front-end (also ``iadtutor data make-toy``,
README "Two commands"), then checks the counts with :func:`iadtutor.tools.download.verify_dataset` and
prints them with the licence.
"""

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from iadtutor.tools.download import DATASETS, split_list, verify_dataset
from iadtutor.tools.toy import make_toy


def main(argv=None) -> int:
    """``python data_scripts/make_toy.py``: make the toy factory, verify it; exit status 0 when complete."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="where the toy factory goes (must not exist)")
    parser.add_argument("--categories", help="comma-separated (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--n-train", type=int, default=40)
    parser.add_argument("--n-test-good", type=int, default=10)
    parser.add_argument("--n-test-per-defect", type=int, default=6)
    parser.add_argument("--translation", type=float, default=None, help="max shift, fraction of the image side")
    parser.add_argument("--rotation", type=float, default=None, help="max rotation in degrees")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    categories = split_list(args.categories)
    try:
        out = make_toy(args.out, seed=args.seed, categories=categories, image_size=args.image_size,
                       progress=not args.no_progress, n_train=args.n_train, n_test_good=args.n_test_good,
                       n_test_per_defect=args.n_test_per_defect, translation=args.translation,
                       rotation=args.rotation)
        expected = {"train/good": args.n_train, "test/good": args.n_test_good}
        info = replace(DATASETS["toy"], counts={c: expected for c in categories or DATASETS["toy"].categories})
        report = verify_dataset(info, out, progress=not args.no_progress)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(report.format())
    print(DATASETS["toy"].licence_line(out))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
