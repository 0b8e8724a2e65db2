"""Getting the benchmark datasets onto disk and checking that a copy is complete (``iadtutor data
download|verify|hold-out|prepare-visa``, ``data_scripts/*.py``; README "Datasets", book "Datasets and their licences").

:data:`DATASETS` (``tables/datasets.json`` and ``tables/dataset_counts.csv``; ``tables/README.md`` gives the sources)
says where each dataset comes from, its licence, its archive's sha256 and how many image files a complete copy holds.
Three promises, because these archives are gigabytes: **resumable** (``NAME.part`` is continued with an HTTP
``Range`` request by the next attempt or call), **nothing half-done** (the archive gets its final name only once
complete with a matching sha256, a 404 or a wrong sha256 removes the ``.part``; every folder is built in a temporary
folder beside its destination and moved into place with one ``os.replace``) and **checked** (:func:`verify_dataset`
counts the images of every category, checks every defect image has its mask and reports what it could not check).
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
    """An entry of :data:`DATASETS`. ``counts``: ``{category: {folder prefix: image files}}``; a prefix counts every
    image below it (``"test"`` all test images, ``"test/good"`` the good ones); ``None``: not known, only reported."""

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
    """:data:`DATASETS` from ``tables/datasets.json`` and ``tables/dataset_counts.csv`` (checked in file order)."""
    tables, counts = resources.files("iadtutor.tools") / "tables", {}
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
def _fetch_once(url: str, part: Path, progress: bool, timeout: float) -> None:
    """One attempt; ConnectionError when it ended before the whole file arrived (the next attempt resumes)."""
    def total_of(content_range: str | None) -> int | None:
        match = re.match(r"bytes (?:\d+-\d+|\*)/(\d+)", content_range or "")
        return int(match.group(1)) if match else None

    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "iadtutor", **({"Range": f"bytes={have}-"} if have else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left to send: complete, or longer than the file
            if total_of(error.headers.get("Content-Range")) == have:
                return
            part.unlink()
            raise ConnectionError("the partial file does not fit the server's file; starting over") from error
        raise
    with response:
        resumed = bool(have) and response.status == 206  # else the server ignored the Range header: start over
        length = response.headers.get("Content-Length")
        total = total_of(response.headers.get("Content-Range")) if resumed else int(length) if length else None
        with open(part, "ab" if resumed else "wb") as file, tqdm.wrapattr(
                file, "write", total=total, initial=have if resumed else 0, unit="B", unit_scale=True,
                unit_divisor=1024, desc=part.name[:-5], disable=not progress) as counted:
            shutil.copyfileobj(response, counted, CHUNK_BYTES)
    if total is not None and (size := part.stat().st_size) < total:
        raise ConnectionError(f"received {size} of {total} bytes")


def fetch(url: str, dest: Path | str, sha256: str | None = None, *, retries: int = 5, progress: bool = True,
          timeout: float = 60.0, retry_wait: float = 2.0) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``, up to ``retries`` more times) and check its sha256; HTTP
    4xx or a wrong sha256 remove the ``.part`` (:class:`DownloadError`), too many interruptions keep it for later."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part, last_problem = dest.with_name(dest.name + ".part"), None
    for attempt in range(retries + 1):
        time.sleep(retry_wait * attempt)
        try:
            _fetch_once(url, part, progress, timeout)
            break
        except urllib.error.HTTPError as error:
            if 400 <= error.code < 500:
                part.unlink(missing_ok=True)
                raise DownloadError(f"{url} answered HTTP {error.code} {error.reason}.") from error
            last_problem = f"HTTP {error.code} {error.reason}"
        except (http.client.HTTPException, OSError) as problem:  # OSError: resets, timeouts, cut-off transfers
            last_problem = str(problem) or type(problem).__name__
    else:
        raise DownloadError(f"Downloading {url} was interrupted {retries + 1} times (last: {last_problem}); "
                            f"run again to resume from {part}.")
    if sha256 is not None and (found := sha256_of(part, progress=progress)) != sha256.lower():
        part.unlink()
        raise DownloadError(f"{url} has sha256 {found}, expected {sha256.lower()}; the download was removed.")
    os.replace(part, dest)
    return dest


# --- extracting, and VisA from its own layout to MVTec layout -----------------------------------------------
def _build_then_move(dest: Path, verb: str, build) -> Path:
    """All or nothing: ``build(scratch)`` fills a folder beside ``dest`` and returns what becomes ``dest``."""
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} already exists and is not empty; remove it or choose another folder.")
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
    """Extract a .zip / .tar / .tar.gz / .tar.xz archive so that its content becomes ``dest`` (not there or empty),
    all or nothing; a single wrapping folder is stripped unless its name is in ``top_level_names`` (categories)."""
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
    prepare-visa``; ``download`` does it for VisA): ``CATEGORY/train/good``, ``test/good``, ``test/bad``,
    ``ground_truth/bad/NAME.png`` (0 / 255), the tree of VisA's own ``prepare_data.py`` (layout ``visa``).
    Images hard-linked where possible; all or nothing."""
    raw_root, out_dir = Path(raw_root), Path(out_dir)
    split_csv = Path(split_csv) if split_csv else raw_root / "split_csv" / "1cls.csv"
    if not split_csv.is_file():
        raise FileNotFoundError(f"{split_csv} not found; expected VisA's split file (split_csv/1cls.csv).")
    with open(split_csv, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    expected_columns = {"object", "split", "label", "image", "mask"}
    if not rows or not expected_columns <= set(rows[0]):
        raise ValueError(f"{split_csv}: expected the columns {sorted(expected_columns)}.")

    def build(scratch: Path) -> Path:
        for line, row in enumerate(tqdm(rows, desc="VisA to MVTec layout", unit="image", disable=not progress),
                                   start=2):
            label = "good" if row["label"] == "normal" else "bad"
            image, folder = raw_root / row["image"], scratch / row["object"] / row["split"] / label
            if not image.is_file():
                raise FileNotFoundError(f"{split_csv} line {line}: image {image} not found.")
            folder.mkdir(parents=True, exist_ok=True)
            _link_or_copy(image, folder / image.name)
            if row["split"] == "test" and label == "bad":
                mask_path, mask_folder = raw_root / row["mask"], scratch / row["object"] / "ground_truth" / "bad"
                if not row["mask"] or not mask_path.is_file():
                    raise FileNotFoundError(f"{split_csv} line {line}: mask {mask_path} not found.")
                mask_folder.mkdir(parents=True, exist_ok=True)
                with Image.open(mask_path) as mask:
                    mask.convert("L").point(lambda value: 255 if value else 0).save(mask_folder / f"{image.stem}.png")
        return scratch

    return _build_then_move(out_dir, "preparing", build)


# --- verifying ---------------------------------------------------------------------------------------------
def count_images(folder: Path | str) -> Counter:
    """Number of image files directly inside every sub-folder of ``folder``, by relative posix path (verify)."""
    folder = Path(folder)
    return Counter(path.parent.relative_to(folder).as_posix() for path in folder.rglob("*")
                   if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


def _count_below(counts: Counter, prefix: str) -> int:
    return sum(n for folder, n in counts.items() if folder == prefix or folder.startswith(prefix + "/"))


def _images_without_mask(category_dir: Path) -> list[str]:
    def has_mask(ground_truth: Path, stem: str) -> bool:
        return (ground_truth / stem).is_dir() or any(ground_truth.glob(f"{glob.escape(stem)}_mask.*")) or any(
            path.suffix.lower() in IMAGE_SUFFIXES for path in ground_truth.glob(f"{glob.escape(stem)}.*"))

    # masks: MVTec AD / MPDD / toy NAME_mask.png, VisA / BTAD NAME.png, MVTec LOCO a folder NAME/
    defect_dirs = sorted(p for p in (category_dir / "test").glob("*") if p.is_dir() and p.name not in ("good", "ok"))
    return [f"{folder.name}/{image.name}" for folder in defect_dirs for image in sorted(folder.iterdir())
            if image.suffix.lower() in IMAGE_SUFFIXES and not has_mask(category_dir / "ground_truth" / folder.name,
                                                                       image.stem)]


@dataclass
class VerifyReport:
    """What :func:`verify_dataset` found. A row's ``ok``: True / False (checked), None (number unknown, only
    reported: ``unchecked``) or ``"info"`` (a fact such as the mask sizes); ``notes`` say what is missing and why."""

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
        lines.append(f"{self.dataset} in {self.root}: {'complete' if self.ok else 'NOT complete'}"
                     + (f" ({self.unchecked} numbers unknown, only reported)" if self.unchecked else ""))
        return "\n".join(lines)


def _row(category: str, what: str, expected, found, ok="compare") -> dict:
    """A row of :class:`VerifyReport`; ``ok="compare"``: whether ``found == expected`` (None when not known)."""
    if ok == "compare":
        ok = None if expected is None else found == expected
    return {"category": category, "what": what, "expected": expected, "found": found, "ok": ok}


def _detail_rows(category: str, category_dir: Path, splits, samples: list, notes: list[str]) -> list[dict]:
    """Rows and ``notes`` on the masks of ``samples`` (sizes, fit, empty ones, defect area %) and identical files."""
    sizes: Counter = Counter()
    wrong_size, empty, areas = [], [], []
    for sample in (s for s in samples if s.mask_paths):
        with Image.open(sample.image_path) as image:
            width, height = image.size
        union = None
        for path in sample.mask_paths:
            on = data.read_mask(Path(path))  # (H, W) bool, the way the course reads masks
            sizes[f"{on.shape[1]}x{on.shape[0]}"] += 1
            if on.shape != (height, width):
                wrong_size.append(f"{path} is {on.shape[1]}x{on.shape[0]}, its image {width}x{height}")
            else:
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
        rows.append(_row(category, "defect area % (min/median/max)", None, f"{low:.2g}/{median:.2g}/{high:.2g}",
                         "info"))
    train, first_of, copies = {s.image_path for s in splits.train + splits.validation}, {}, []
    for path in sorted(train | {s.image_path for s in splits.test}):  # copies: (copy, the earlier identical file)
        if (digest := sha256_of(path)) in first_of:
            copies.append((path, first_of[digest]))
        else:
            first_of[digest] = path
    across = sum((copy in train) != (first in train) for copy, first in copies)
    if copies:
        shown = ", ".join(f"{copy.relative_to(category_dir)} = {first.relative_to(category_dir)}"
                          for copy, first in copies[:6])
        notes.append(f"{category}: {len(copies)} image files repeat an earlier one byte for byte ({across} of these "
                     f"pairs have one image in train and one in test): {shown}" + (", ..." if len(copies) > 6 else ""))
    return rows + [_row(category, "images identical to another", 0, len(copies), not copies),
                   _row(category, "identical pairs across train/test", 0, across, not across)]


def _category_rows(info: DatasetInfo, category: str, category_dir: Path, details: bool) -> tuple[list, list]:
    """Rows and notes for one category in a train / test layout (MVTec AD and its relatives)."""
    counts, notes = count_images(category_dir), []
    expected_counts = dict(info.counts.get(category) or {"train": None, "test": None})
    if (category_dir / HOLDOUT_FILE).is_file():  # n training normals moved to test/good: adjust the counts
        holdout = json.loads((category_dir / HOLDOUT_FILE).read_text(encoding="utf-8"))
        n, published = int(holdout["n_held_out"]), dict(expected_counts)
        test_good = int(holdout.get("source_test_good", 0)) + n
        if expected_counts.get("train/good") is not None:
            expected_counts["train/good"] -= n
        if "test/good" in expected_counts:
            expected_counts["test/good"] = test_good
        if expected_counts.get("test") is not None and published.get("test/good") is not None:
            expected_counts["test"] += test_good - published["test/good"]
        notes.append(f"{category}: {holdout['n_held_out']} of the training normals were held out into test/good "
                     f"with seed {holdout['seed']} ({HOLDOUT_FILE}, from {holdout['source']}); expected counts "
                     "adjusted.")
    if details:  # every defect folder on disk gets its own row
        normal = "ok" if (category_dir / "train" / "ok").is_dir() else "good"
        on_disk = sorted({folder.split("/")[1] for folder in counts if folder.startswith("test/")} - {normal})
        expected_counts.update({f"test/{name}": None for name in on_disk if f"test/{name}" not in expected_counts})
    rows = []
    for prefix, expected in expected_counts.items():
        found = _count_below(counts, prefix)
        empty = expected is None and found == 0  # an empty folder is wrong whatever the count should be
        rows.append(_row(category, f"{prefix} images", expected, found, False if empty else "compare"))
    missing = _images_without_mask(category_dir)
    rows.append(_row(category, "defect images without mask", 0, len(missing), not missing))
    notes += [f"{category}: defect image without mask: test/{name}" for name in missing[:5]]
    if not (has_train := (category_dir / "train").is_dir()):
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
            rows += _detail_rows(category, category_dir, splits, splits.test, notes)
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
    rows = [_row(category, "parts", expected.get("parts"), n_parts),
            _row(category, "defective parts (non-empty label)", expected.get("defective parts"), n_bad),
            _row(category, "train / test normal parts", None,
                 f"{len(splits.train)}/{n_parts - n_bad - len(splits.train)}", "info")]
    notes = [f"{category}: split like anomalib: every defective part is a test image; the normal parts go "
             f"80 % to train and 20 % to test (seed {data.KOLEKTOR_SPLIT_SEED})."]
    return rows + (_detail_rows(category, category_dir, splits, samples, notes) if details else []), notes


def verify_dataset(dataset: str | DatasetInfo, root: Path | str, *, categories: list[str] | None = None,
                   archive: Path | str | None = None, progress: bool = True, details: bool = False) -> VerifyReport:
    """Count the image files of every category under ``root`` against the known counts, check every defect image has
    a mask and the ``archive``'s sha256 where known (book "Checking a copy"); ``details`` adds a row per defect type,
    the masks' sizes, empty masks, defect areas and byte-identical images (reads every file)."""
    info, root = dataset_info(dataset), Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; expected the {info.title} root with one folder per category.")
    if categories is None and not info.categories:
        if not (categories := data.list_categories(root)):
            raise FileNotFoundError(f"{root} holds no category folder in a layout that iadtutor.data reads.")
    rows, notes = [], []
    for category in categories or info.categories:
        if not (category_dir := root / category).is_dir():
            rows.append(_row(category, "folder", "present", "missing", False))
            continue
        try:
            layout = data.detect_layout(category_dir)
        except data.DatasetError:
            layout = None
        rows_of = _kolektor_rows if info.name == "kolektor" or layout == "kolektor" else _category_rows
        category_rows, category_notes = rows_of(info, category, category_dir, details)
        rows, notes = rows + category_rows, notes + category_notes
    sha_ok = sha256_of(archive, progress=progress) == info.sha256 if archive is not None and info.sha256 else None
    return VerifyReport(info.name, root, rows, sha_ok, notes)


def hold_out_normals(source: Path | str, out: Path | str, n: int | None = None, *, fraction: float | None = None,
                     seed: int = 0) -> Path:
    """Copy the category folder ``source`` to ``out`` (hard links where possible, all or nothing), moving ``n`` (or
    ``fraction``) training normals drawn with ``numpy.random.default_rng(seed)`` to ``test/good``; ``out/holdout.json``
    records the draw (book "A copy without normal test images")."""
    source, out = Path(source), Path(out)
    normal = "ok" if (source / "train" / "ok").is_dir() else "good"
    if not (train_dir := source / "train" / normal).is_dir():
        raise FileNotFoundError(f"{train_dir} not found; expected a category folder with train/good (or train/ok).")
    if out.resolve().is_relative_to(source.resolve()):
        raise ValueError(f"--out {out} lies inside the source {source}; choose a folder outside it.")
    names = sorted(p.name for p in train_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith("."))
    if (n is None) == (fraction is None):
        raise ValueError("Give either n (how many normals to hold out) or fraction, not both or neither.")
    if n is None and not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction!r}.")
    n = max(1, round(fraction * len(names))) if n is None else n
    if not 1 <= n < len(names):
        raise ValueError(f"n must be between 1 and {len(names) - 1} (train/{normal} holds {len(names)} images), "
                         f"got {n}.")
    chosen = sorted(names[i] for i in np.random.default_rng(seed).choice(len(names), size=n, replace=False))
    source_test_good = len([p for p in (source / "test" / normal).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES])

    def build(scratch: Path) -> Path:
        shutil.copytree(source, scratch, dirs_exist_ok=True, copy_function=_link_or_copy)
        (scratch / "test" / normal).mkdir(parents=True, exist_ok=True)
        moved = {}
        for name in chosen:
            moved[name] = name if not (scratch / "test" / normal / name).exists() else f"train_{name}"
            os.replace(scratch / "train" / normal / name, scratch / "test" / normal / moved[name])
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
    """Download, extract (VisA: and split, raw content in ``OUT_raw``) a dataset into ``out_dir/CATEGORY/...``; the
    archive is kept in ``archive_dir`` (default ``OUT/../archives``), ``url`` / ``sha256`` (``None``: no check)
    replace the stored ones, a complete copy is left as it is; the toy factory: :func:`iadtutor.tools.toy.make_toy`."""
    info, out_dir = dataset_info(dataset), Path(out_dir)
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
    if not (urls := (url,) if url else info.urls):
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
    if info.name != "visa":
        return extract_archive(archive, out_dir, top_level_names=info.categories, progress=progress)
    raw_dir = out_dir.with_name(out_dir.name + "_raw")
    if not (raw_dir / "split_csv" / "1cls.csv").is_file():
        extract_archive(archive, raw_dir, top_level_names=("split_csv", *info.categories), progress=progress)
    return prepare_visa(raw_dir, out_dir, progress=progress)


# --- command line: iadtutor data ... (cli.py) and data_scripts/*.py ----------------------------------------
def split_list(text: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; empty -> None (the ``--categories`` of ``iadtutor data`` and data_scripts)."""
    return [item.strip() for item in text.split(",") if item.strip()] if text else None


def _add(parser: argparse.ArgumentParser, options: dict) -> None:
    for flag, keywords in options.items():
        parser.add_argument(flag, **keywords)


DATASET = {"--dataset": dict(required=True, choices=sorted(DATASETS), help="which dataset")}
NO_PROGRESS = {"--no-progress": dict(action="store_true", help="no progress bars")}


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iadtutor data download`` and ``data_scripts/download.py``."""
    _add(parser, {**DATASET, "--out": dict(required=True, type=Path, help="folder that will hold one folder "
                                                                         "per category (what evaluate's --data-root "
                                                                         "takes)"),
                  "--archive-dir": dict(type=Path, help="where the archive is kept (default: OUT/../archives)"),
                  "--url": dict(help="download from this URL instead of the stored one (a mirror)"),
                  "--sha256": dict(default="known", help="expected sha256 of the archive; 'none' skips the check "
                                                         "(default: the stored one)"),
                  "--retries": dict(type=int, default=5, help="attempts to resume an interrupted download"),
                  "--categories": dict(help="toy only: comma-separated categories (default: all)"),
                  "--seed": dict(type=int, default=0, help="toy only: random seed"), **NO_PROGRESS})


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iadtutor data verify`` and ``data_scripts/verify.py``."""
    _add(parser, {**DATASET, "--root": dict(required=True, type=Path, help="folder with one folder per category"),
                  "--archive": dict(type=Path, help="also check this archive's sha256 (where it is known)"),
                  "--categories": dict(help="check only these (comma-separated)"),
                  "--quick": dict(action="store_true", help="only count files (skip the per-defect rows, mask "
                                                            "sizes and identical files)"), **NO_PROGRESS})


def add_hold_out_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iadtutor data hold-out`` and ``data_scripts/hold_out.py``."""
    _add(parser, {"--source": dict(required=True, type=Path, help="category folder with train/good (not changed)"),
                  "--out": dict(required=True, type=Path, help="new category folder (must not exist)")})
    size = parser.add_mutually_exclusive_group(required=True)
    _add(size, {"--n": dict(type=int, help="how many training normals go to test/good"),
                "--fraction": dict(type=float, help="or which fraction of them")})
    _add(parser, {"--seed": dict(type=int, default=0, help="random seed of the draw (default 0)")})


def add_prepare_visa_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iadtutor data prepare-visa`` and ``data_scripts/prepare_visa.py``."""
    _add(parser, {"--raw": dict(required=True, type=Path, help="the extracted VisA archive (holds split_csv/)"),
                  "--out": dict(required=True, type=Path, help="where the MVTec-layout copy goes"),
                  "--split-csv": dict(type=Path, help="split file (default: RAW/split_csv/1cls.csv)"), **NO_PROGRESS})


def _verified(make_report, last_line, errors=(ValueError, OSError)) -> int:
    """Print ``make_report()``'s table and ``last_line(report)``; 0 only when complete, 1 (one line) for ``errors``."""
    try:
        report = make_report()
    except errors as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(report.format())
    print(last_line(report))
    return 0 if report.ok else 1


def download_command(args: argparse.Namespace) -> int:
    """``iadtutor data download``: download, extract, verify; print where the data went and its licence."""
    info, progress, toy = dataset_info(args.dataset), not args.no_progress, args.dataset == "toy"

    def make_report() -> VerifyReport:
        out = download_dataset(info, args.out, archive_dir=args.archive_dir, url=args.url, progress=progress,
                               sha256=None if str(args.sha256).lower() == "none" else args.sha256, retries=args.retries,
                               toy_options={"categories": split_list(args.categories), "seed": args.seed})
        return verify_dataset(info, out, categories=split_list(args.categories) if toy else None, progress=progress)
    try:
        return _verified(make_report, lambda report: info.licence_line(report.root),
                         (DownloadError, FileExistsError, FileNotFoundError, ValueError, OSError))
    except ManualDownloadRequired as error:
        print(f"{error}\n{info.licence_line()}", file=sys.stderr)
        return 2


def verify_command(args: argparse.Namespace) -> int:
    """``iadtutor data verify``: print the count table; exit status 0 only when nothing is off."""
    info = dataset_info(args.dataset)
    return _verified(lambda: verify_dataset(info, args.root, categories=split_list(args.categories),
                                            archive=args.archive, progress=not args.no_progress,
                                            details=not getattr(args, "quick", False)),
                     lambda report: info.licence_line(args.root), (FileNotFoundError, ValueError))


def hold_out_command(args: argparse.Namespace) -> int:
    """``iadtutor data hold-out``: a copy of a category with some training normals moved to test/good."""
    def make_report() -> VerifyReport:
        out = hold_out_normals(args.source, args.out, args.n, fraction=args.fraction, seed=args.seed)
        return verify_dataset("folder", out.parent, categories=[out.name], progress=False)
    return _verified(make_report, lambda report: f"Held out into {args.out}; the draw is recorded in "
                                                 f"{Path(args.out) / HOLDOUT_FILE}. {args.source} is unchanged.")


def prepare_visa_command(args: argparse.Namespace) -> int:
    """``iadtutor data prepare-visa``: split an extracted VisA into MVTec layout and verify it."""
    return _verified(lambda: verify_dataset("visa", prepare_visa(args.raw, args.out, args.split_csv,
                                                                 progress=not args.no_progress),
                                            progress=not args.no_progress),
                     lambda report: DATASETS["visa"].licence_line(report.root))
