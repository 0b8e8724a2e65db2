#!/usr/bin/env python
"""Split an extracted VisA archive into MVTec layout with VisA's official 1-class split (split_csv/1cls.csv).

    python data_scripts/prepare_visa.py --raw data/visa_raw --out data/visa

A thin wrapper over :mod:`iadtutor.tools.download` (also: ``iadtutor data ...``). It prints where the data went
and which licence applies.
"""

import argparse
import sys

from iadtutor.tools.download import add_prepare_visa_arguments, prepare_visa_command


def main(argv=None) -> int:
    """``python data_scripts/prepare_visa.py``: the same as ``iadtutor data prepare-visa`` (README "Datasets")."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_prepare_visa_arguments(parser)
    return prepare_visa_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
