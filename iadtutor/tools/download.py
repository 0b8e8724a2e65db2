"""Getting the benchmark datasets onto disk, and checking that what is there is complete (``iadtutor data
download|verify|hold-out|prepare-visa``, ``data_scripts/*.py``; README "Datasets", book "Datasets and their
licences").

:data:`DATASETS` says where each dataset comes from, its licence, its archive's sha256 and how many image
files a complete copy holds (read from ``tables/datasets.json`` and ``tables/dataset_counts.csv``;
``tables/README.md`` says where each number comes from). Three promises, because these archives are
gigabytes: **resumable** (``NAME.part`` is continued with an HTTP ``Range`` request by the next attempt or
call), **nothing half-done** (the archive gets its final name only once complete with a matching sha256; a
404 or a wrong sha256 removes the ``.part``; every folder is built in a temporary folder beside its
destination and moved into place with one ``os.replace``) and **checked** (:func:`verify_dataset` counts
the images of every category, checks every defect image has its mask and reports what it could not check).
"""

from __future__ import annotations

import argparse
import csv
import glob
import http.client
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from iadtutor import data
from iadtutor.data import IMAGE_SUFFIXES
from iadtutor.files import sha256_of

CHUNK_BYTES = 1 << 20
HOLDOUT_FILE = "holdout.json"
REGISTRY_FILE, COUNTS_FILE = "datasets.json", "dataset_counts.csv"  # in iadtutor/tools/tables/


class DownloadError(RuntimeError):
    """A download failed: HTTP error, too many interrupted attempts, or a wrong sha256 (``iadtutor data download``)."""


class ManualDownloadRequired(RuntimeError):
    """The dataset has no direct download link; the message says what to do (``iadtutor data download``)."""


@dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset comes from and what a complete copy holds (an entry of :data:`DATASETS`; ``iadtutor
    data download|verify``). ``counts``: ``{category: {folder prefix: image files}}``; a prefix counts every
    image below it (``"test"`` all test images, ``"test/good"`` the good ones); ``None``: not known, only
    reported."""

    name: str
    title: str
    homepage: str
    licence: str
    urls: tuple[str, ...] = ()
    archive_name: str | None = None
    sha256: str | None = None
    counts: dict = field(default_factory=dict)
    manual_steps: str = ""
    notes: str = ""

    @property
    def categories(self) -> tuple[str, ...]:
        """The categories a complete copy holds (the keys of ``counts``)."""
        return tuple(self.counts)

    def licence_line(self, where: Path | str | None = None) -> str:
        """The line every ``iadtutor data`` command ends with: where the data is, its licence and terms."""
        place = f"{self.title} is in {where}." if where is not None else f"{self.title}:"
        return f"{place} Licence: {self.licence}. Terms and citation: {self.homepage}"


def read_datasets() -> dict[str, DatasetInfo]:
    """:data:`DATASETS` from ``tables/datasets.json`` (a ``comment`` is for the reader of the file only) and
    ``tables/dataset_counts.csv`` (images per category and folder prefix, checked in file order)."""
    tables = resources.files("iadtutor.tools") / "tables"
    counts: dict = {}
    with (tables / COUNTS_FILE).open("r", encoding="utf-8", newline="") as file:
        for line, row in enumerate(csv.DictReader(file), start=2):
            try:
                per_category = counts.setdefault(row["dataset"], {}).setdefault(row["category"], {})
                if row["folder"]:  # a row without folder only names a category (the toy factory's)
                    per_category[row["folder"]] = int(row["images"]) if row["images"] else None
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{COUNTS_FILE} line {line}: expected dataset, category, folder and a whole "
                                 f"number of images (or nothing), got {row}.") from None
    entries = json.loads((tables / REGISTRY_FILE).read_text(encoding="utf-8"))
    try:
        return {entry["name"]: DatasetInfo(**{key: tuple(value) if key == "urls" else value
                                              for key, value in entry.items() if key != "comment"},
                                           counts=counts.get(entry["name"], {})) for entry in entries}
    except (KeyError, TypeError) as error:
        raise ValueError(f"{REGISTRY_FILE}: every entry needs a name, title, homepage and licence and only the "
                         f"fields of DatasetInfo ({error}).") from None


DATASETS: dict[str, DatasetInfo] = read_datasets()


def dataset_info(name_or_info: str | DatasetInfo) -> DatasetInfo:
    """The :class:`DatasetInfo` of a dataset name (or the info itself); the ``--dataset`` of ``iadtutor data``."""
    if isinstance(name_or_info, DatasetInfo):
        return name_or_info
    if name_or_info not in DATASETS:
        raise ValueError(f"Unknown dataset {name_or_info!r}; expected one of {sorted(DATASETS)}.")
    return DATASETS[name_or_info]


# --- downloading -------------------------------------------------------------------------------------------

class _Interrupted(Exception):
    """One attempt ended before the whole file arrived; the next attempt resumes."""


def _total_from_content_range(value: str | None) -> int | None:
    match = re.match(r"bytes (?:\d+-\d+|\*)/(\d+)", value or "")
    return int(match.group(1)) if match else None


def _fetch_once(url: str, part: Path, progress: bool, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "iadtutor", **({"Range": f"bytes={have}-"} if have else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left to send: complete, or longer than the file
            if _total_from_content_range(error.headers.get("Content-Range")) == have:
                return
            part.unlink()
            raise _Interrupted("the partial file does not fit the server's file; starting over") from error
        raise
    with response:
        if have and response.status == 206:
            mode, start = "ab", have
            total = _total_from_content_range(response.headers.get("Content-Range"))
        else:  # the server ignored the Range header: start from the beginning
            mode, start = "wb", 0
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
        with open(part, mode) as file, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                            unit_divisor=1024, desc=part.name[:-5], disable=not progress) as bar:
            while chunk := response.read(CHUNK_BYTES):
                file.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Interrupted(f"received {size} of {total} bytes")


def fetch(url: str, dest: Path | str, sha256: str | None = None, *, retries: int = 5, progress: bool = True,
          timeout: float = 60.0, retry_wait: float = 2.0) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``) and check its sha256 (``iadtutor data download``).
    Interrupted attempts are resumed up to ``retries`` more times; HTTP 4xx or a wrong sha256 remove the
    ``.part`` and raise :class:`DownloadError`; after too many interruptions it is kept for a later call."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_problem = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(retry_wait * attempt)
        try:
            _fetch_once(url, part, progress, timeout)
            break
        except urllib.error.HTTPError as error:
            if 400 <= error.code < 500:
                part.unlink(missing_ok=True)
                raise DownloadError(f"{url} answered HTTP {error.code} {error.reason}.") from error
            last_problem = f"HTTP {error.code} {error.reason}"
        except (_Interrupted, http.client.HTTPException, OSError) as problem:  # OSError: resets, timeouts
            last_problem = str(problem) or type(problem).__name__
    else:
        raise DownloadError(f"Downloading {url} was interrupted {retries + 1} times (last: {last_problem}); "
                            f"run again to resume from {part}.")
    if sha256 is not None:
        found = sha256_of(part, progress=progress)
        if found != sha256.lower():
            part.unlink()
            raise DownloadError(f"{url} has sha256 {found}, expected {sha256.lower()}; the download was removed.")
    os.replace(part, dest)
    return dest


# --- extracting, and VisA from its own layout to MVTec layout -----------------------------------------------

def _refuse_non_empty(folder: Path) -> None:
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} already exists and is not empty; remove it or choose another folder.")


def _build_then_move(dest: Path, verb: str, build) -> Path:
    """All or nothing: ``build(scratch)`` fills a temporary folder beside ``dest`` and returns the folder
    that becomes ``dest`` (the scratch folder or one inside it); it is moved into place at the end."""
    _refuse_non_empty(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{verb}-", dir=dest.parent))
    try:
        content = build(scratch)
        if dest.exists():
            dest.rmdir()
        os.replace(content, dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dest


def extract_archive(archive: Path | str, dest: Path | str, *, top_level_names: tuple[str, ...] = (),
                    progress: bool = True) -> Path:
    """Extract a .zip / .tar / .tar.gz / .tar.xz archive so that its content becomes ``dest``, all or nothing
    (``iadtutor data download``). A single wrapping folder is stripped unless its name is in
    ``top_level_names`` (e.g. the dataset's categories). ``dest`` must not exist or be empty."""
    archive = Path(archive)

    def build(scratch: Path) -> Path:
        members = f"extract {archive.name}"
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zip_file:
                for member in tqdm(zip_file.infolist(), desc=members, unit="file", disable=not progress):
                    if not (scratch / member.filename).resolve().is_relative_to(scratch.resolve()):
                        raise ValueError(f"{archive}: member {member.filename!r} would land outside the folder.")
                    zip_file.extract(member, scratch)
        else:
            with tarfile.open(archive, "r:*") as tar:
                for member in tqdm(tar, desc=members, unit="file", disable=not progress):
                    tar.extract(member, scratch, filter="data")  # "data" refuses links and paths outside
        entries = [e for e in scratch.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
        wrapped = len(entries) == 1 and entries[0].is_dir() and entries[0].name not in top_level_names
        return entries[0] if wrapped else scratch

    return _build_then_move(Path(dest), "extracting", build)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # no second copy of 2 GB of images where the file system allows it
    except OSError:
        shutil.copyfile(source, target)


def prepare_visa(raw_root: Path | str, out_dir: Path | str, split_csv: Path | str | None = None, *,
                 progress: bool = True) -> Path:
    """Split VisA into MVTec layout with its official 1-class split ``split_csv/1cls.csv`` (``iadtutor data
    prepare-visa``, ``data_scripts/prepare_visa.py``; ``download`` does it for VisA): ``CATEGORY/train/good``,
    ``test/good``, ``test/bad``, ``ground_truth/bad/NAME.png`` (0 / 255), the tree of VisA's own
    ``prepare_data.py`` (layout ``visa`` of :mod:`iadtutor.data`). Images hard-linked where possible; all or
    nothing."""
    raw_root, out_dir = Path(raw_root), Path(out_dir)
    split_csv = Path(split_csv) if split_csv else raw_root / "split_csv" / "1cls.csv"
    if not split_csv.is_file():
        raise FileNotFoundError(f"{split_csv} not found; expected VisA's split file (split_csv/1cls.csv).")
    _refuse_non_empty(out_dir)
    with open(split_csv, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    expected_columns = {"object", "split", "label", "image", "mask"}
    if not rows or not expected_columns <= set(rows[0]):
        raise ValueError(f"{split_csv}: expected the columns {sorted(expected_columns)}.")

    def build(scratch: Path) -> Path:
        for line, row in enumerate(tqdm(rows, desc="VisA to MVTec layout", unit="image", disable=not progress),
                                   start=2):
            label = "good" if row["label"] == "normal" else "bad"
            image = raw_root / row["image"]
            if not image.is_file():
                raise FileNotFoundError(f"{split_csv} line {line}: image {image} not found.")
            folder = scratch / row["object"] / row["split"] / label
            folder.mkdir(parents=True, exist_ok=True)
            _link_or_copy(image, folder / image.name)
            if row["split"] == "test" and label == "bad":
                mask_path = raw_root / row["mask"]
                if not row["mask"] or not mask_path.is_file():
                    raise FileNotFoundError(f"{split_csv} line {line}: mask {mask_path} not found.")
                mask_folder = scratch / row["object"] / "ground_truth" / "bad"
                mask_folder.mkdir(parents=True, exist_ok=True)
                with Image.open(mask_path) as mask:
                    binary = mask.convert("L").point(lambda value: 255 if value else 0)
                binary.save(mask_folder / f"{image.stem}.png")
        return scratch

    return _build_then_move(out_dir, "preparing", build)


# --- verifying ---------------------------------------------------------------------------------------------

def count_images(folder: Path | str) -> Counter:
    """Number of image files directly inside every sub-folder of ``folder``, keyed by relative posix path
    (the counts of ``iadtutor data verify``)."""
    folder = Path(folder)
    return Counter(path.parent.relative_to(folder).as_posix() for path in folder.rglob("*")
                   if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


def _count_below(counts: Counter, prefix: str) -> int:
    return sum(n for folder, n in counts.items() if folder == prefix or folder.startswith(prefix + "/"))


def _has_mask(ground_truth: Path, stem: str) -> bool:
    # MVTec AD / MPDD / toy: NAME_mask.png; VisA, BTAD: NAME.png; MVTec LOCO: a folder NAME/ of masks.
    return (ground_truth / stem).is_dir() or any(ground_truth.glob(f"{glob.escape(stem)}_mask.*")) or any(
        path.suffix.lower() in IMAGE_SUFFIXES for path in ground_truth.glob(f"{glob.escape(stem)}.*"))


def _images_without_mask(category_dir: Path) -> list[str]:
    test = category_dir / "test"
    if not test.is_dir():
        return []
    return [f"{defect_dir.name}/{image.name}"
            for defect_dir in sorted(p for p in test.iterdir() if p.is_dir() and p.name not in ("good", "ok"))
            for image in sorted(defect_dir.iterdir())
            if image.suffix.lower() in IMAGE_SUFFIXES
            and not _has_mask(category_dir / "ground_truth" / defect_dir.name, image.stem)]


@dataclass
class VerifyReport:
    """What :func:`verify_dataset` found (printed by ``iadtutor data verify``); ``ok`` is False when any checked
    number is off. A row's ``ok``: True / False (checked), None (number unknown, only reported: ``unchecked``
    counts them) or ``"info"`` (a fact such as the mask sizes). ``notes`` say what is missing and what to do."""

    dataset: str
    root: Path
    rows: list[dict]
    archive_sha256_ok: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(row["ok"] is not False for row in self.rows) and self.archive_sha256_ok is not False

    @property
    def unchecked(self) -> int:
        return sum(row["ok"] is None for row in self.rows)

    def format(self) -> str:
        """The table ``iadtutor data verify`` prints: one line per row, the notes, then the verdict."""
        lines = [f"{'category':<20} {'what':<34} {'expected':>9} {'found':>9}  result"]
        for row in self.rows:
            result = {True: "ok", False: "MISMATCH", None: "not checked", "info": ""}[row["ok"]]
            expected = "" if row["expected"] is None else str(row["expected"])
            lines.append(f"{row['category']:<20} {row['what']:<34} {expected:>9} {str(row['found']):>9}  {result}"
                         .rstrip())
        if self.archive_sha256_ok is not None:
            lines.append(f"archive sha256: {'ok' if self.archive_sha256_ok else 'MISMATCH'}")
        lines += [f"note: {note}" for note in self.notes]
        verdict = "complete" if self.ok else "NOT complete"
        lines.append(f"{self.dataset} in {self.root}: {verdict}"
                     + (f" ({self.unchecked} numbers unknown, only reported)" if self.unchecked else ""))
        return "\n".join(lines)


def _row(category: str, what: str, expected, found, ok) -> dict:
    return {"category": category, "what": what, "expected": expected, "found": found, "ok": ok}


def _checked_row(category: str, what: str, expected, found) -> dict:
    return _row(category, what, expected, found, None if expected is None else found == expected)


def _mask_rows(category: str, samples: list, notes: list[str]) -> list[dict]:
    """Rows (and ``notes``) on the masks of the defective samples: their sizes, whether each fits its image,
    empty ones, and the defect area (percent of the image: smallest, median, largest)."""
    sizes: Counter = Counter()
    wrong_size, empty, areas = [], [], []
    for sample in samples:
        if not sample.mask_paths:
            continue
        with Image.open(sample.image_path) as image:
            image_size = image.size
        union = None
        for path in sample.mask_paths:
            on = data.read_mask(Path(path))  # (H, W) bool, the way the course reads masks
            sizes[f"{on.shape[1]}x{on.shape[0]}"] += 1
            if on.shape != (image_size[1], image_size[0]):
                wrong_size.append(f"{path} is {on.shape[1]}x{on.shape[0]}, its image {image_size[0]}x{image_size[1]}")
                continue
            union = on if union is None else union | on
        if union is not None:
            if not union.any():
                empty.append(str(sample.image_path))
            areas.append(100.0 * union.mean())
    notes += [f"{category}: mask of another size than its image: {text}" for text in wrong_size[:5]]
    notes += [f"{category}: defect image with an empty mask: {path}" for path in empty[:5]]
    size_text = ", ".join(f"{size} ({n})" if len(sizes) > 1 else size for size, n in sizes.most_common(2))
    if len(sizes) > 2:
        size_text = f"{len(sizes)} sizes: {size_text}, ..."
    rows = [_row(category, "mask sizes (W x H)", None, size_text or "none", "info"),
            _row(category, "masks of another size than image", 0, len(wrong_size), not wrong_size),
            _row(category, "defect images with an empty mask", 0, len(empty), not empty)]
    if areas:
        low, median, high = (float(np.percentile(areas, q)) for q in (0, 50, 100))
        rows.append(_row(category, "defect area % (min/median/max)", None,
                         f"{low:.2g}/{median:.2g}/{high:.2g}", "info"))
    return rows


def _identical_rows(category: str, category_dir: Path, splits, notes: list[str]) -> list[dict]:
    """Image files that repeat another byte for byte, and how many such pairs lie across train and test."""
    train = {s.image_path for s in splits.train + splits.validation}
    first_of: dict[str, Path] = {}
    copies = []  # (copy, the earlier file with the same bytes)
    for path in sorted(train | {s.image_path for s in splits.test}):
        digest = sha256_of(path)
        if digest in first_of:
            copies.append((path, first_of[digest]))
        else:
            first_of[digest] = path
    shown = ", ".join(f"{copy.relative_to(category_dir)} = {first.relative_to(category_dir)}"
                      for copy, first in copies[:6])
    across = sum((copy in train) != (first in train) for copy, first in copies)
    if copies:
        notes.append(f"{category}: {len(copies)} image files repeat an earlier one byte for byte ({across} of these "
                     f"pairs have one image in train and one in test): {shown}" + (", ..." if len(copies) > 6 else ""))
    return [_row(category, "images identical to another", 0, len(copies), not copies),
            _row(category, "identical pairs across train/test", 0, across, not across)]


def _expected_after_holdout(expected: dict, holdout: dict) -> dict:
    """Published counts changed by a hold-out: ``n`` training normals moved to test/good."""
    n, adjusted = int(holdout["n_held_out"]), dict(expected)
    test_good = int(holdout.get("source_test_good", 0)) + n
    if adjusted.get("train/good") is not None:
        adjusted["train/good"] -= n
    if "test/good" in adjusted:
        adjusted["test/good"] = test_good
    if adjusted.get("test") is not None and expected.get("test/good") is not None:
        adjusted["test"] += test_good - expected["test/good"]
    return adjusted


def _category_rows(info: DatasetInfo, category: str, category_dir: Path, details: bool) -> tuple[list, list]:
    """Rows and notes for one category in a train / test layout (MVTec AD and its relatives)."""
    counts = count_images(category_dir)
    expected_counts = info.counts.get(category) or {"train": None, "test": None}
    notes = []
    if (category_dir / HOLDOUT_FILE).is_file():
        holdout = json.loads((category_dir / HOLDOUT_FILE).read_text(encoding="utf-8"))
        expected_counts = _expected_after_holdout(expected_counts, holdout)
        notes.append(f"{category}: {holdout['n_held_out']} of the training normals were held out into test/good "
                     f"with seed {holdout['seed']} ({HOLDOUT_FILE}, from {holdout['source']}); expected counts "
                     "adjusted.")
    if details:  # every defect folder on disk gets its own row
        normal = "ok" if (category_dir / "train" / "ok").is_dir() else "good"
        on_disk = sorted({folder.split("/")[1] for folder in counts if folder.startswith("test/")} - {normal})
        expected_counts = {**expected_counts,
                           **{f"test/{name}": None for name in on_disk if f"test/{name}" not in expected_counts}}
    rows = []
    for prefix, expected in expected_counts.items():
        found = _count_below(counts, prefix)
        rows.append(_checked_row(category, f"{prefix} images", expected, found))
        if expected is None and found == 0:
            rows[-1]["ok"] = False  # an empty folder is wrong whatever the count should be
    missing = _images_without_mask(category_dir)
    rows.append(_row(category, "defect images without mask", 0, len(missing), not missing))
    notes += [f"{category}: defect image without mask: test/{name}" for name in missing[:5]]

    has_train = (category_dir / "train").is_dir()
    if not has_train:
        notes.append(f"{category}: no train/ folder in {category_dir}: not in a train / test layout (MVTec AD "
                     "layout: train/good, test/DEFECT, ground_truth/DEFECT/NAME_mask.png).")
    if has_train and not any(_count_below(counts, folder) for folder in ("test/good", "test/ok")):
        n = expected_counts.get("test/good")
        notes.append(f"{category}: no test/good folder: the test set has no normal image, so no AUROC can be "
                     "computed. Hold out normals from train/good into a new folder (the source stays as it is): "
                     f"iadtutor data hold-out --source {category_dir} --out NEW_ROOT/{category} "
                     f"--n {n if n else 'N'} --seed 0")
    if details and has_train:
        try:
            splits = data.find_category(category_dir.parent, category)
        except data.DatasetError as error:
            notes.append(f"{category}: iadtutor.data cannot read it: {error}")
        else:
            rows += _mask_rows(category, splits.test, notes) + _identical_rows(category, category_dir, splits, notes)
    return rows, notes


def _kolektor_rows(info: DatasetInfo, category: str, category_dir: Path, details: bool) -> tuple[list, list]:
    """Rows for KolektorSDD: parts, defective parts (non-empty label), the train / test split."""
    expected = info.counts.get(category, {})
    try:
        splits = data.find_category(category_dir.parent, category, layout="kolektor")
    except data.DatasetError as error:
        return [_row(category, "parts with a label image", expected.get("parts"), "unreadable", False)], [
            f"{category}: {error}"]
    samples = splits.train + splits.test
    n_parts, n_bad = len(samples), sum(s.label for s in samples)
    rows = [_checked_row(category, "parts", expected.get("parts"), n_parts),
            _checked_row(category, "defective parts (non-empty label)", expected.get("defective parts"), n_bad),
            _row(category, "train / test normal parts", None,
                 f"{len(splits.train)}/{n_parts - n_bad - len(splits.train)}", "info")]
    notes = [f"{category}: split like anomalib: every defective part is a test image; the normal parts go "
             f"80 % to train and 20 % to test (seed {data.KOLEKTOR_SPLIT_SEED})."]
    if details:
        rows += _mask_rows(category, samples, notes) + _identical_rows(category, category_dir, splits, notes)
    return rows, notes


def verify_dataset(dataset: str | DatasetInfo, root: Path | str, *, categories: list[str] | None = None,
                   archive: Path | str | None = None, progress: bool = True, details: bool = False) -> VerifyReport:
    """Count the image files of every category under ``root`` against the known counts (``iadtutor data
    verify``, ``data_scripts/verify.py``, book "Checking a copy"), check that every defect image has a mask
    and the ``archive``'s sha256 where known. ``details`` adds one row per defect type, the mask sizes (each
    must match its image), empty masks, defect areas and byte-identical images (reads every file)."""
    info = dataset_info(dataset)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; expected the {info.title} root with one folder per category.")
    if categories is None and not info.categories:
        categories = data.list_categories(root)
        if not categories:
            raise FileNotFoundError(f"{root} holds no category folder in a layout that iadtutor.data reads.")
    rows, notes = [], []
    for category in categories or info.categories:
        category_dir = root / category
        if not category_dir.is_dir():
            rows.append(_row(category, "folder", "present", "missing", False))
            continue
        try:
            layout = data.detect_layout(category_dir)
        except data.DatasetError:
            layout = None
        rows_of = _kolektor_rows if info.name == "kolektor" or layout == "kolektor" else _category_rows
        category_rows, category_notes = rows_of(info, category, category_dir, details)
        rows += category_rows
        notes += category_notes
    sha_ok = None
    if archive is not None and info.sha256:
        sha_ok = sha256_of(archive, progress=progress) == info.sha256
    return VerifyReport(info.name, root, rows, sha_ok, notes)


def hold_out_normals(source: Path | str, out: Path | str, n: int | None = None, *, fraction: float | None = None,
                     seed: int = 0) -> Path:
    """Copy the category folder ``source`` to ``out``, moving ``n`` (or ``fraction``) training normals drawn
    with ``numpy.random.default_rng(seed)`` to ``test/good`` (``iadtutor data hold-out``,
    ``data_scripts/hold_out.py``, book "A copy without normal test images": without normal test images no
    AUROC). Hard links where possible; ``out/holdout.json`` records the draw and :func:`verify_dataset`
    adjusts the expected counts by it. ``source`` is never changed; all or nothing."""
    source, out = Path(source), Path(out)
    normal = "ok" if (source / "train" / "ok").is_dir() else "good"
    train_dir = source / "train" / normal
    if not train_dir.is_dir():
        raise FileNotFoundError(f"{train_dir} not found; expected a category folder with train/good (or train/ok).")
    _refuse_non_empty(out)
    if out.resolve().is_relative_to(source.resolve()):
        raise ValueError(f"--out {out} lies inside the source {source}; choose a folder outside it.")
    names = sorted(p.name for p in train_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith("."))
    if (n is None) == (fraction is None):
        raise ValueError("Give either n (how many normals to hold out) or fraction, not both or neither.")
    if n is None:
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be between 0 and 1, got {fraction!r}.")
        n = max(1, round(fraction * len(names)))
    if not 1 <= n < len(names):
        raise ValueError(f"n must be between 1 and {len(names) - 1} (train/{normal} holds {len(names)} images), "
                         f"got {n}.")
    chosen = sorted(names[i] for i in np.random.default_rng(seed).choice(len(names), size=n, replace=False))
    test_dir = source / "test" / normal
    source_test_good = len([p for p in test_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]) \
        if test_dir.is_dir() else 0

    def build(scratch: Path) -> Path:
        shutil.copytree(source, scratch, dirs_exist_ok=True, copy_function=_link_or_copy)
        (scratch / "test" / normal).mkdir(parents=True, exist_ok=True)
        moved = {}
        for name in chosen:
            target = name if not (scratch / "test" / normal / name).exists() else f"train_{name}"
            os.replace(scratch / "train" / normal / name, scratch / "test" / normal / target)
            moved[name] = target
        record = {"source": str(source.resolve()), "seed": seed, "n_held_out": n,
                  "n_train_before": len(names), "source_test_good": source_test_good,
                  "held_out": moved, "rule": "numpy.random.default_rng(seed).choice(len(train), n, replace=False) "
                                             "over the sorted file names of train/good"}
        (scratch / HOLDOUT_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        return scratch

    return _build_then_move(out, "holding-out", build)


# --- the whole job -----------------------------------------------------------------------------------------

def download_dataset(dataset: str | DatasetInfo, out_dir: Path | str, *, archive_dir: Path | str | None = None,
                     url: str | None = None, sha256: str | None = "known", retries: int = 5,
                     progress: bool = True, retry_wait: float = 2.0, timeout: float = 60.0,
                     toy_options: dict | None = None) -> Path:
    """Download, extract (VisA: and split) a dataset so that ``out_dir/CATEGORY/...`` holds it (``iadtutor data
    download``, ``data_scripts/download.py``, README "Datasets"). The archive is kept in ``archive_dir``
    (default ``archives`` beside ``out_dir``); ``url`` / ``sha256`` replace the stored ones (``None``: no
    check). A complete copy is left as it is; VisA's raw content goes to ``OUT_raw``. The toy factory is
    made by :func:`iadtutor.tools.toy.make_toy` (``toy_options``: ``categories``, ``seed``, ...)."""
    info = dataset_info(dataset)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if info.name != "toy" and verify_dataset(info, out_dir, progress=progress).ok:
            print(f"{out_dir} already holds a complete {info.title}; nothing to do.")
            return out_dir
        raise FileExistsError(f"{out_dir} exists but does not hold a complete {info.title}; "
                              "remove it or choose another --out.")
    if info.name == "toy":
        from iadtutor.tools.toy import make_toy

        options = dict(toy_options or {})
        return make_toy(out_dir, seed=options.pop("seed", 0), categories=options.pop("categories", None),
                        progress=progress, **options)
    urls = (url,) if url else info.urls
    if not urls:
        raise ManualDownloadRequired(info.manual_steps.replace("OUT", str(out_dir)))
    expected_sha = info.sha256 if sha256 == "known" else sha256
    archive = (Path(archive_dir) if archive_dir else out_dir.parent / "archives") / (
        info.archive_name or urls[0].rsplit("/", 1)[-1])
    if archive.exists():
        if expected_sha and sha256_of(archive, progress=progress) != expected_sha.lower():
            raise DownloadError(f"{archive} exists but its sha256 is not {expected_sha}; remove it and run again.")
        print(f"Using the archive already in {archive}.")
    else:
        problems = []
        for candidate in urls:
            try:
                fetch(candidate, archive, expected_sha, retries=retries, progress=progress, timeout=timeout,
                      retry_wait=retry_wait)
                break
            except DownloadError as error:
                problems.append(str(error))
        else:
            raise DownloadError(" ".join(problems) + f" Dataset page: {info.homepage}")
    if info.name == "visa":
        raw_dir = out_dir.with_name(out_dir.name + "_raw")
        if not (raw_dir / "split_csv" / "1cls.csv").is_file():
            extract_archive(archive, raw_dir, top_level_names=("split_csv", *info.categories), progress=progress)
        prepare_visa(raw_dir, out_dir, progress=progress)
    else:
        extract_archive(archive, out_dir, top_level_names=info.categories, progress=progress)
    return out_dir


# --- command line: iadtutor data ... (cli.py) and data_scripts/*.py ----------------------------------------

def split_list(text: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; empty -> None (the ``--categories`` of ``iadtutor data`` and data_scripts)."""
    return [item.strip() for item in text.split(",") if item.strip()] if text else None


def _error(error: Exception) -> int:
    print(f"error: {error}", file=sys.stderr)
    return 1


def _print_report(report: VerifyReport, last_line: str) -> int:
    print(report.format())
    print(last_line)
    return 0 if report.ok else 1


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iadtutor data download`` and ``data_scripts/download.py``."""
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="which dataset")
    parser.add_argument("--out", required=True, type=Path,
                        help="folder that will hold one folder per category (what evaluate's --data-root takes)")
    parser.add_argument("--archive-dir", type=Path, help="where the archive is kept (default: OUT/../archives)")
    parser.add_argument("--url", help="download from this URL instead of the stored one (a mirror)")
    parser.add_argument("--sha256", default="known",
                        help="expected sha256 of the archive; 'none' skips the check (default: the stored one)")
    parser.add_argument("--retries", type=int, default=5, help="attempts to resume an interrupted download")
    parser.add_argument("--categories", help="toy only: comma-separated categories (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="toy only: random seed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def download_command(args: argparse.Namespace) -> int:
    """``iadtutor data download``: download, extract, verify; print where the data went and its licence."""
    info = dataset_info(args.dataset)
    sha256 = None if str(args.sha256).lower() == "none" else args.sha256
    toy_options = {"categories": split_list(args.categories), "seed": args.seed}
    try:
        out = download_dataset(info, args.out, archive_dir=args.archive_dir, url=args.url, sha256=sha256,
                               retries=args.retries, progress=not args.no_progress, toy_options=toy_options)
        report = verify_dataset(info, out, categories=split_list(args.categories) if info.name == "toy" else None,
                                progress=not args.no_progress)
    except ManualDownloadRequired as error:
        print(f"{error}\n{info.licence_line()}", file=sys.stderr)
        return 2
    except (DownloadError, FileExistsError, FileNotFoundError, ValueError, OSError) as error:
        return _error(error)
    return _print_report(report, info.licence_line(out))


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iadtutor data verify`` and ``data_scripts/verify.py``."""
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="which dataset")
    parser.add_argument("--root", required=True, type=Path, help="folder with one folder per category")
    parser.add_argument("--archive", type=Path, help="also check this archive's sha256 (where it is known)")
    parser.add_argument("--categories", help="check only these (comma-separated)")
    parser.add_argument("--quick", action="store_true",
                        help="only count files (skip the per-defect rows, mask sizes and identical files)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def verify_command(args: argparse.Namespace) -> int:
    """``iadtutor data verify``: print the count table; exit status 0 only when nothing is off."""
    info = dataset_info(args.dataset)
    try:
        report = verify_dataset(info, args.root, categories=split_list(args.categories), archive=args.archive,
                                progress=not args.no_progress, details=not getattr(args, "quick", False))
    except (FileNotFoundError, ValueError) as error:
        return _error(error)
    return _print_report(report, info.licence_line(args.root))


def add_hold_out_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iadtutor data hold-out`` and ``data_scripts/hold_out.py``."""
    parser.add_argument("--source", required=True, type=Path, help="category folder with train/good (not changed)")
    parser.add_argument("--out", required=True, type=Path, help="new category folder (must not exist)")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--n", type=int, help="how many training normals go to test/good")
    size.add_argument("--fraction", type=float, help="or which fraction of them")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the draw (default 0)")


def hold_out_command(args: argparse.Namespace) -> int:
    """``iadtutor data hold-out``: a copy of a category with some training normals moved to test/good."""
    try:
        out = hold_out_normals(args.source, args.out, args.n, fraction=args.fraction, seed=args.seed)
        report = verify_dataset("folder", out.parent, categories=[out.name], progress=False)
    except (ValueError, OSError) as error:
        return _error(error)
    return _print_report(report, f"Held out into {out}; the draw is recorded in {out / HOLDOUT_FILE}. "
                                 f"{args.source} is unchanged.")


def add_prepare_visa_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iadtutor data prepare-visa`` and ``data_scripts/prepare_visa.py``."""
    parser.add_argument("--raw", required=True, type=Path, help="the extracted VisA archive (holds split_csv/)")
    parser.add_argument("--out", required=True, type=Path, help="where the MVTec-layout copy goes")
    parser.add_argument("--split-csv", type=Path, help="split file (default: RAW/split_csv/1cls.csv)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def prepare_visa_command(args: argparse.Namespace) -> int:
    """``iadtutor data prepare-visa``: split an extracted VisA into MVTec layout and verify it."""
    try:
        out = prepare_visa(args.raw, args.out, args.split_csv, progress=not args.no_progress)
        report = verify_dataset("visa", out, progress=not args.no_progress)
    except (ValueError, OSError) as error:
        return _error(error)
    return _print_report(report, DATASETS["visa"].licence_line(out))
