#!/usr/bin/env python
"""Check a dataset folder: image counts per category against the known ones, a mask for every defect image.

    python data_scripts/verify.py --dataset mvtec_ad --root data/mvtec_ad [--archive data/archives/mvtec_anomaly_detection.tar.xz]

A thin wrapper over :mod:`iadtutor.tools.download` (also: ``iadtutor data ...``). It prints where the data went
and which licence applies.
"""

import argparse
import sys

from iadtutor.tools.download import add_verify_arguments, verify_command


def main(argv=None) -> int:
    """``python data_scripts/verify.py``: the same as ``iadtutor data verify`` (README "Datasets")."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_verify_arguments(parser)
    return verify_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
