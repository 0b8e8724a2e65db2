#!/usr/bin/env python
"""Put the public copies of real categories (``shared/DATA_SOURCES.md``) into folders iadtutor reads.

    python data_scripts/real_data.py --clones CLONES --out data/real [--only bottle,grid]

``CLONES`` holds one git clone per source repository, named ``OWNER+NAME`` (a bare clone in
``OWNER+NAME/repo`` works too); each source is read at its fixed commit with ``git archive``, so the
clone may be at any later commit. What lands where::

    OUT/mvtec_ad/bottle            MVTec AD bottle, complete (MVTec AD layout as published)
    OUT/grid_copy/grid             MVTec AD grid re-arranged from the copy's Normal/ and Anomalous/{IMG,GT}/
                                   into MVTec AD layout: train/good (264), test/DEFECT, ground_truth/DEFECT.
                                   No test/good: `iadtutor data verify` says so; then hold out normals:
                                       iadtutor data hold-out --source OUT/grid_copy/grid --out OUT/mvtec_ad/grid --n 21 --seed 0
    OUT/kolektor/kolektorsdd       KolektorSDD (kosNN/PartN.jpg + PartN_label.bmp), without the copy's nested kos13/kos08
    OUT/wood/wood                  a real wood set in MVTec AD layout (not MVTec AD's wood)

Every folder is written into a temporary folder first and moved into place at the end; an existing
folder is left alone. Never commit these images (``data/`` is git-ignored); licences: see the table in
``book/datasets.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# name: (repository, commit, path in the repository, folders to strip, destination below OUT, excluded paths)
SOURCES = {
    "bottle": ("doanthai161/Bottle-Anomaly-Detection", "ff4e8f31ed4dfbdb522fa9e50f32787510054c74",
               "data/bottle/bottle", 3, "mvtec_ad/bottle", ()),
    "grid": ("AndreaBiondaPolimi/Anomaly-Detection-Autoencoders-using-CW-SSIM",
             "9a547157fc67bb2f9a967feb9834352570bb2577", "Dataset/MVTec_Data", 2, "grid_copy/grid", ()),
    "kolektor": ("songpeixuan22/Unet-Defect-Detection-in-kolektorSSD", "50cf572a15d12bcd951dd2bdcbcf5356cc52d6bd",
                 "data", 1, "kolektor/kolektorsdd", ("kos13/kos08",)),
    "wood": ("cemlevent54/wood-anomaly-detection", "8810261464af703206237fb08bfb4978a236506a",
             "simplenet_model/SimpleNet/datasets/mvtec/wood", 5, "wood/wood", ()),
}

# The grid copy numbers its defect images by type: 0xx bent, 1xx broken, 2xx glue, 3xx metal_contamination,
# 4xx thread (MVTec AD's five grid defect types in alphabetical order; their counts 12, 12, 11, 11, 11 match).
GRID_DEFECTS = ("bent", "broken", "glue", "metal_contamination", "thread")


def git_dir(clones: Path, repository: str) -> Path:
    """The git directory of ``repository``'s clone in ``clones`` (``OWNER+NAME`` or ``OWNER+NAME/repo``)."""
    folder = clones / repository.replace("/", "+")
    for candidate in (folder / "repo", folder):
        if (candidate / "HEAD").is_file() or (candidate / ".git").exists():
            return candidate
    raise FileNotFoundError(f"No clone of {repository} in {folder} (expected a git clone there).")


def extract(clones: Path, name: str, into: Path) -> None:
    """``git archive COMMIT PATH | tar -x --strip-components=N`` into ``into``."""
    repository, commit, path, strip, _, excluded = SOURCES[name]
    archive = subprocess.Popen(["git", "-C", str(git_dir(clones, repository)), "archive", commit, path],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    command = ["tar", "-x", "-C", str(into), f"--strip-components={strip}"]
    command += [f"--exclude={pattern}" for pattern in excluded]
    subprocess.run(command, stdin=archive.stdout, check=True)
    archive.wait()  # "invalid object" errors for unrelated files that the snapshot dropped are harmless


def arrange_grid(raw: Path, out: Path) -> None:
    """Normal/NNN.png -> train/good; Anomalous/IMG/TNN.png -> test/DEFECT/0NN.png (+ its GT mask)."""
    for image in sorted((raw / "Normal").glob("*.png")):
        (out / "train" / "good").mkdir(parents=True, exist_ok=True)
        os.replace(image, out / "train" / "good" / image.name)
    for image in sorted((raw / "Anomalous" / "IMG").glob("*.png")):
        if not re.fullmatch(r"\d{3}", image.stem) or int(image.stem[0]) >= len(GRID_DEFECTS):
            raise ValueError(f"Unexpected grid defect image {image}: expected 000.png .. 4NN.png.")
        defect, number = GRID_DEFECTS[int(image.stem[0])], f"{int(image.stem[1:]):03d}"
        mask = raw / "Anomalous" / "GT" / f"{image.stem}_mask.png"
        for folder in ("test", "ground_truth"):
            (out / folder / defect).mkdir(parents=True, exist_ok=True)
        os.replace(image, out / "test" / defect / f"{number}.png")
        if mask.is_file():  # a missing mask is left for `iadtutor data verify` to report
            os.replace(mask, out / "ground_truth" / defect / f"{number}_mask.png")


def prepare(clones: Path, out_root: Path, name: str) -> Path:
    """Write source ``name`` of :data:`SOURCES` below ``out_root`` (all or nothing; an existing folder stays)."""
    dest = out_root / SOURCES[name][4]
    if dest.exists() and any(dest.iterdir()):
        print(f"{dest} exists; left as it is.")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.preparing-", dir=dest.parent))
    try:
        raw = scratch / "raw"
        raw.mkdir()
        extract(clones, name, raw)
        if name == "grid":
            arranged = scratch / "arranged"
            arrange_grid(raw, arranged)
            raw = arranged
        if dest.exists():
            dest.rmdir()
        os.replace(raw, dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{name}: {dest}")
    return dest


def main(argv=None) -> int:
    """``python data_scripts/real_data.py`` (book "Public copies of real categories for development")."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clones", required=True, type=Path, help="folder with one clone per repository, OWNER+NAME")
    parser.add_argument("--out", required=True, type=Path, help="where the categories go (e.g. data/real)")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(SOURCES)}")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(SOURCES)
    unknown = sorted(set(names) - set(SOURCES))
    if unknown:
        parser.error(f"unknown source(s) {', '.join(unknown)}; expected {', '.join(SOURCES)}.")
    try:
        for name in names:
            prepare(args.clones, args.out, name)
    except (FileNotFoundError, ValueError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
