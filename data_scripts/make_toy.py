#!/usr/bin/env python
"""Generate the toy factory (a small synthetic dataset in MVTec AD layout) and verify it.

    python data_scripts/make_toy.py --out data/toy [--categories weave,bracket] [--seed 0]

A thin wrapper over :mod:`iadtutor.tools.download` (also: ``iadtutor data ...``). It prints where the data went
and which licence applies.
"""

import argparse
import sys

from iadtutor.tools.download import add_make_toy_arguments, make_toy_command


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_make_toy_arguments(parser)
    return make_toy_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
