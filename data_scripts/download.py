#!/usr/bin/env python
"""Download a public anomaly-detection dataset, extract it (VisA: and split it) and verify it.

    python data_scripts/download.py --dataset mvtec_ad --out data/mvtec_ad

A thin wrapper over :mod:`iadtutor.tools.download` (also: ``iadtutor data ...``). It prints where the data went
and which licence applies.
"""

import argparse
import sys

from iadtutor.tools.download import add_download_arguments, download_command


def main(argv=None) -> int:
    """``python data_scripts/download.py``: the same as ``iadtutor data download`` (README "Datasets")."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_download_arguments(parser)
    return download_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
