#!/usr/bin/env python
"""Copy a category that has no normal test images, holding out training normals as test/good (seeded).

    python data_scripts/hold_out.py --source data/real/grid_copy/grid --out data/real/mvtec_ad/grid --n 21 --seed 0

A thin wrapper over :func:`iadtutor.tools.download.hold_out_normals` (also: ``iadtutor data hold-out``). The
source folder is never changed; the new folder records the draw in ``holdout.json``. See the datasets
page of the book ("A copy without normal test images").
"""

import argparse
import sys

from iadtutor.tools.download import add_hold_out_arguments, hold_out_command


def main(argv=None) -> int:
    """``python data_scripts/hold_out.py``: the same as ``iadtutor data hold-out`` (README "Datasets")."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_hold_out_arguments(parser)
    return hold_out_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
