"""Downloading, resuming, extracting and verifying, against a tiny archive served from 127.0.0.1."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from iadtutor.tools import download
from iadtutor.tools.cli import main as iadtutor_main
from iadtutor.tools.download import (DatasetInfo, DownloadError, count_images, download_dataset, extract_archive, fetch,
                               prepare_visa, verify_dataset)

# --- a small HTTP server that understands Range and can drop a connection half-way -------------------------


class _Handler(BaseHTTPRequestHandler):
    timeout = 10  # seconds a connection may stay silent: keeps a stuck test bounded

    def do_GET(self):  # noqa: N802 (http.server's naming)
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, status = 0, 200
        wanted = self.headers.get("Range")
        if wanted and server.ranges:
            start = int(re.match(r"bytes=(\d+)-$", wanted).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if self.path in server.drop_once:  # send half, then hang up
            server.drop_once.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.drop_once, httpd.ranges = {}, [], set(), True
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


# --- a tiny dataset in MVTec layout ------------------------------------------------------------------------

LAYOUT = {  # relative path -> number of files
    "train/good": 3, "test/good": 1, "test/crack": 2,
}


def _tiny_files(wrapper: str = "tiny") -> dict[str, bytes]:
    files = {}
    for category in ("alpha", "beta"):
        for folder, n in LAYOUT.items():
            for i in range(n):
                files[f"{wrapper}/{category}/{folder}/{i:03d}.png"] = f"{category}{folder}{i}".encode()
                if folder == "test/crack":
                    files[f"{wrapper}/{category}/ground_truth/crack/{i:03d}_mask.png"] = b"mask"
    files[f"{wrapper}/license.txt"] = b"CC BY-NC-SA 4.0"
    files[f"{wrapper}/padding.bin"] = bytes(range(256)) * 400  # more than one read's worth
    return files


def tar_xz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in sorted(files.items()):
            archive.writestr(name, content)
    return buffer.getvalue()


COUNTS = {category: {"train/good": 3, "test/good": 1, "test": 3, "ground_truth": 2} for category in ("alpha", "beta")}


def tiny_info(server, data: bytes, *, sha256: str | None = "right", path: str = "/tiny.tar.xz") -> DatasetInfo:
    server.files[path] = data
    digest = hashlib.sha256(data).hexdigest() if sha256 == "right" else sha256
    return DatasetInfo(name="tiny", title="Tiny", homepage="http://example.invalid", licence="CC0",
                       urls=(server.url + path,), archive_name=Path(path).name, sha256=digest, counts=COUNTS)


def leftovers(folder: Path) -> list[str]:
    """Hidden scratch folders or .part files that a failed step must not leave behind."""
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".part"))


# --- tests -------------------------------------------------------------------------------------------------

def test_download_extract_and_verify(tmp_path, server):
    data = tar_xz(_tiny_files())
    info = tiny_info(server, data)
    out = download_dataset(info, tmp_path / "tiny", progress=False, retry_wait=0)
    assert sorted(p.name for p in out.iterdir()) == ["alpha", "beta", "license.txt", "padding.bin"]
    report = verify_dataset(info, out, progress=False)
    assert report.ok and report.unchecked == 0
    archive = tmp_path / "archives" / "tiny.tar.xz"
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == info.sha256
    assert server.requests == [("/tiny.tar.xz", None)]
    assert leftovers(tmp_path) == []


def test_a_dropped_connection_is_resumed_with_a_range_request(tmp_path, server):
    data = tar_xz(_tiny_files())
    info = tiny_info(server, data)
    server.drop_once.add("/tiny.tar.xz")
    out = download_dataset(info, tmp_path / "tiny", progress=False, retry_wait=0)
    assert server.requests == [("/tiny.tar.xz", None), ("/tiny.tar.xz", f"bytes={len(data) // 2}-")]
    assert hashlib.sha256((tmp_path / "archives" / "tiny.tar.xz").read_bytes()).hexdigest() == info.sha256
    assert verify_dataset(info, out, progress=False).ok


def test_a_part_file_from_an_earlier_run_is_resumed(tmp_path, server):
    data = tar_xz(_tiny_files())
    info = tiny_info(server, data)
    part = tmp_path / "tiny.tar.xz.part"
    part.write_bytes(data[:100])
    fetch(info.urls[0], tmp_path / "tiny.tar.xz", info.sha256, progress=False, retry_wait=0)
    assert server.requests == [("/tiny.tar.xz", "bytes=100-")]
    assert (tmp_path / "tiny.tar.xz").read_bytes() == data and not part.exists()


def test_a_complete_part_file_is_accepted_when_the_server_has_nothing_more(tmp_path, server):
    data = tar_xz(_tiny_files())
    info = tiny_info(server, data)
    (tmp_path / "tiny.tar.xz.part").write_bytes(data)
    fetch(info.urls[0], tmp_path / "tiny.tar.xz", info.sha256, progress=False, retry_wait=0)
    assert server.requests == [("/tiny.tar.xz", f"bytes={len(data)}-")]
    assert (tmp_path / "tiny.tar.xz").read_bytes() == data


def test_a_server_without_ranges_makes_it_start_over(tmp_path, server):
    data = tar_xz(_tiny_files())
    info = tiny_info(server, data)
    server.ranges = False
    (tmp_path / "tiny.tar.xz.part").write_bytes(b"something else entirely")
    fetch(info.urls[0], tmp_path / "tiny.tar.xz", info.sha256, progress=False, retry_wait=0)
    assert (tmp_path / "tiny.tar.xz").read_bytes() == data


def test_http_404_leaves_nothing_behind(tmp_path, server):
    info = tiny_info(server, b"unused")
    info = DatasetInfo(**{**info.__dict__, "urls": (server.url + "/missing.tar.xz",)})
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_dataset(info, tmp_path / "tiny", progress=False, retry_wait=0)
    assert not (tmp_path / "tiny").exists()
    assert not (tmp_path / "archives" / "tiny.tar.xz").exists()
    assert leftovers(tmp_path) == []


def test_a_wrong_sha256_leaves_nothing_behind(tmp_path, server):
    info = tiny_info(server, tar_xz(_tiny_files()), sha256="0" * 64)
    with pytest.raises(DownloadError, match="sha256"):
        download_dataset(info, tmp_path / "tiny", progress=False, retry_wait=0)
    assert not (tmp_path / "tiny").exists()
    assert not (tmp_path / "archives" / "tiny.tar.xz").exists()
    assert leftovers(tmp_path) == []


def test_an_interrupted_extraction_leaves_nothing_and_a_retry_reuses_the_archive(tmp_path, server, monkeypatch):
    info = tiny_info(server, tar_xz(_tiny_files()))
    real_extract = tarfile.TarFile.extract
    extracted = []

    def extract_then_interrupt(self, member, *args, **kwargs):
        if len(extracted) == 4:
            raise KeyboardInterrupt
        extracted.append(member.name)
        return real_extract(self, member, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extract", extract_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        download_dataset(info, tmp_path / "tiny", progress=False, retry_wait=0)
    assert not (tmp_path / "tiny").exists()
    assert leftovers(tmp_path) == []
    assert (tmp_path / "archives" / "tiny.tar.xz").exists()

    monkeypatch.setattr(tarfile.TarFile, "extract", real_extract)
    out = download_dataset(info, tmp_path / "tiny", progress=False, retry_wait=0)
    assert verify_dataset(info, out, progress=False).ok
    assert len(server.requests) == 1  # the archive was not downloaded again


def test_a_corrupt_archive_leaves_no_folder(tmp_path):
    archive = tmp_path / "broken.tar.xz"
    archive.write_bytes(tar_xz(_tiny_files())[:300])
    with pytest.raises((tarfile.TarError, EOFError, OSError)):
        extract_archive(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_zip_archives_lose_their_wrapping_folder(tmp_path):
    archive = tmp_path / "tiny.zip"
    archive.write_bytes(zip_bytes(_tiny_files(wrapper="BTech_Dataset_transformed")))
    out = extract_archive(archive, tmp_path / "btad", progress=False)
    assert (out / "alpha" / "train" / "good" / "000.png").is_file()
    # A single folder that is itself a category is kept.
    archive.write_bytes(zip_bytes({"alpha/train/good/000.png": b"x"}))
    out = extract_archive(archive, tmp_path / "one", top_level_names=("alpha",), progress=False)
    assert (out / "alpha" / "train" / "good" / "000.png").is_file()
    out = extract_archive(archive, tmp_path / "two", progress=False)
    assert (out / "train" / "good" / "000.png").is_file()


def test_verify_reports_missing_images_and_masks(tmp_path, server):
    info = tiny_info(server, tar_xz(_tiny_files()))
    out = download_dataset(info, tmp_path / "tiny", progress=False, retry_wait=0)
    (out / "alpha" / "train" / "good" / "001.png").unlink()
    (out / "beta" / "ground_truth" / "crack" / "000_mask.png").unlink()
    report = verify_dataset(info, out, progress=False)
    assert not report.ok
    bad = [(row["category"], row["what"], row["expected"], row["found"]) for row in report.rows if row["ok"] is False]
    assert bad == [("alpha", "train/good images", 3, 2), ("beta", "ground_truth images", 2, 1),
                   ("beta", "defect images without mask", 0, 1)]
    assert "MISMATCH" in report.format() and "NOT complete" in report.format()
    with pytest.raises(FileExistsError, match="not hold a complete Tiny"):
        download_dataset(info, out, progress=False)


def test_a_complete_copy_is_not_downloaded_again(tmp_path, server, capsys):
    info = tiny_info(server, tar_xz(_tiny_files()))
    download_dataset(info, tmp_path / "tiny", progress=False, retry_wait=0)
    download_dataset(info, tmp_path / "tiny", progress=False, retry_wait=0)
    assert len(server.requests) == 1
    assert "already holds a complete Tiny" in capsys.readouterr().out


def test_download_command_says_where_and_which_licence(tmp_path, server, capsys):
    btad_like = zip_bytes({f"BTech_Dataset_transformed/01/train/ok/{i:03d}.bmp": b"x" for i in range(3)})
    server.files["/btad.zip"] = btad_like
    status = iadtutor_main(["data", "download", "--dataset", "btad", "--out", str(tmp_path / "btad"),
                            "--url", server.url + "/btad.zip", "--sha256", "none", "--no-progress"])
    output = capsys.readouterr().out
    assert status == 1  # three images instead of BTAD's 400: reported, not hidden
    assert "NOT complete" in output
    assert f"is in {tmp_path / 'btad'}. Licence: CC BY-NC-SA 4.0 as listed by anomalib; check the dataset page" \
        in output
    status = iadtutor_main(["data", "download", "--dataset", "mpdd", "--out", str(tmp_path / "mpdd")])
    error = capsys.readouterr().err
    assert status == 2 and "no direct download link" in error and str(tmp_path / "mpdd") in error


def test_prepare_visa_splits_into_mvtec_layout(tmp_path):
    from PIL import Image

    raw = tmp_path / "visa_raw"
    rows = []
    for i in range(3):
        rows.append(("candle", "train" if i < 2 else "test", "normal", f"candle/Data/Images/Normal/{i:04d}.JPG", ""))
    for i in range(2):
        rows.append(("candle", "test", "anomaly", f"candle/Data/Images/Anomaly/{i:03d}.JPG",
                     f"candle/Data/Masks/Anomaly/{i:03d}.png"))
    for _, _, _, image, mask in rows:
        (raw / image).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (10, 20, 30)).save(raw / image, format="JPEG")
        if mask:
            (raw / mask).parent.mkdir(parents=True, exist_ok=True)
            mask_image = Image.new("L", (8, 8), 0)
            mask_image.putpixel((2, 3), 1)  # VisA masks mark defects with small class values
            mask_image.save(raw / mask)
    (raw / "split_csv").mkdir()
    with open(raw / "split_csv" / "1cls.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["object", "split", "label", "image", "mask"])
        writer.writerows(rows)

    out = prepare_visa(raw, tmp_path / "visa", progress=False)
    assert dict(count_images(out / "candle")) == {"train/good": 2, "test/good": 1, "test/bad": 2,
                                                  "ground_truth/bad": 2}
    with Image.open(out / "candle" / "ground_truth" / "bad" / "001.png") as mask:
        assert sorted(set(mask.tobytes())) == [0, 255]
    assert verify_dataset("visa", out, categories=["candle"], progress=False).rows[-1]["found"] == 0
    from iadtutor.data import find_category

    splits = find_category(out, "candle")  # the course's reader takes it as VisA's usual tree
    assert splits.layout == "visa" and (len(splits.train), len(splits.test)) == (2, 3)

    (raw / rows[0][3]).unlink()
    with pytest.raises(FileNotFoundError, match="line 2"):
        prepare_visa(raw, tmp_path / "visa_again", progress=False)
    assert not (tmp_path / "visa_again").exists() and leftovers(tmp_path) == []


def test_stored_counts_add_up_to_the_published_totals():
    def total(dataset, prefix):
        return sum(counts[prefix] or 0 for counts in download.DATASETS[dataset].counts.values())

    # MVTec AD paper: 3629 training and 1725 test images, 467 of them good.
    assert (total("mvtec_ad", "train/good"), total("mvtec_ad", "test"), total("mvtec_ad", "test/good")) == (
        3629, 1725, 467)
    # MVTec LOCO paper: 1772 train, 304 validation, 1568 test (575 good, 561 logical, 432 structural);
    # splicing_connectors' published 354 / 59 are not stored (some archives hold more).
    assert total("mvtec_loco", "train/good") + 354 == 1772
    assert total("mvtec_loco", "validation/good") + 59 == 304
    assert sum(total("mvtec_loco", p) for p in ("test/good", "test/logical_anomalies",
                                                "test/structural_anomalies")) == 1568
    # VisA: 9621 normal and 1200 anomalous images.
    assert total("visa", "train/good") + total("visa", "test/good") == 9621
    assert total("visa", "test/bad") == 1200
    # BTAD (REB sec. 4.1): 1799 training and 741 test images. MPDD (ULSAD sec. 4.1): 888 / 176 / 282.
    assert (total("btad", "train"), total("btad", "test")) == (1799, 741)
    assert (total("mpdd", "train/good"), total("mpdd", "test/good"), total("mpdd", "ground_truth")) == (
        888, 176, 282)


def test_the_tables_are_read_in_file_order_and_a_broken_row_is_named(tmp_path, monkeypatch):
    assert list(download.DATASETS["mvtec_ad"].counts["bottle"]) == [
        "train/good", "test/good", "test", "ground_truth", "test/broken_large", "test/broken_small",
        "test/contamination"]
    assert download.DATASETS["mvtec_loco"].counts["splicing_connectors"]["train/good"] is None
    assert download.DATASETS["toy"].counts == {c: {} for c in ("weave", "bracket", "pills", "box")}
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / download.REGISTRY_FILE).write_text('[{"name": "x", "title": "X", "homepage": "h", "licence": "l"}]')
    (tables / download.COUNTS_FILE).write_text("dataset,category,folder,images\nx,a,train,many\n")
    monkeypatch.setattr(download.resources, "files", lambda package: tmp_path)
    with pytest.raises(ValueError, match="dataset_counts.csv line 2: expected"):
        download.read_datasets()
    (tables / download.COUNTS_FILE).write_text("dataset,category,folder,images\nx,a,train,3\n")
    assert download.read_datasets()["x"].counts == {"a": {"train": 3}}
    (tables / download.REGISTRY_FILE).write_text('[{"name": "x", "title": "X", "homepage": "h", "size": 1}]')
    with pytest.raises(ValueError, match="datasets.json: every entry needs"):
        download.read_datasets()


def test_every_dataset_names_its_licence_and_a_way_to_get_it():
    for info in download.DATASETS.values():
        assert info.licence and info.homepage
        assert info.urls or info.manual_steps or info.name == "toy"
        assert info.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", info.sha256)


def _data_script(name: str):
    """A script of ``data_scripts/`` as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "data_scripts"
                                                  / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_toy_script_writes_and_verifies_a_complete_toy_factory(tmp_path, capsys):
    pytest.importorskip("toyfactory")
    make_toy = _data_script("make_toy")
    status = make_toy.main(["--out", str(tmp_path / "toy"), "--categories", "weave", "--image-size",
                            "64", "--n-train", "3", "--n-test-good", "2", "--n-test-per-defect", "1",
                            "--no-progress"])
    output = capsys.readouterr().out
    assert status == 0, output
    assert f"{'weave':<20} {'train/good images':<34} {3:>9} {3:>9}  ok" in output
    assert f"The toy factory is in {tmp_path / 'toy'}" in output
    assert leftovers(tmp_path) == []
    assert make_toy.main(["--out", str(tmp_path / "toy"), "--no-progress"]) == 1  # not over it
    assert "not empty" in capsys.readouterr().err
    assert not hasattr(download, "make_toy")  # one make-toy front-end: iadtutor.tools.toy.make_toy


# --- verify in detail, and holding out normals --------------------------------------------------------------


def _png(path: Path, size=(8, 6), value=None, seed=0, box=None) -> Path:
    """A real PNG: random pixels (seeded), or a 0/255 mask that is on inside ``box`` = (x0, y0, x1, y1)."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if box is None:
        pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0]), dtype=np.uint8)
    else:
        pixels = np.zeros((size[1], size[0]), np.uint8)
        x0, y0, x1, y1 = box
        pixels[y0:y1, x0:x1] = 255 if value is None else value
    Image.fromarray(pixels).save(path)
    return path


def _copy_without_test_good(root: Path) -> Path:
    """An MVTec-layout category like the grid copy: train/good, two defect types with masks, no test/good."""
    cat = root / "cat"
    for i in range(6):
        _png(cat / f"train/good/{i:03d}.png", seed=i)
    for defect, n in (("crack", 2), ("scratch", 1)):
        for i in range(n):
            _png(cat / f"test/{defect}/{i:03d}.png", seed=100 + i + 10 * n)
            _png(cat / f"ground_truth/{defect}/{i:03d}_mask.png", box=(1, 1, 3, 4))  # 6 of 48 pixels
    return cat


COPY_COUNTS = {"cat": {"train/good": 6, "test/good": 2, "test": 5, "ground_truth": 3, "test/crack": 2}}


def _copy_info() -> DatasetInfo:
    return DatasetInfo(name="copy", title="Copy", homepage="http://example.invalid", licence="CC0",
                       counts=COPY_COUNTS)


def _rows(report) -> dict:
    return {row["what"]: (row["expected"], row["found"], row["ok"]) for row in report.rows}


def test_verify_names_the_missing_test_good_and_reports_defect_types_and_masks(tmp_path):
    cat = _copy_without_test_good(tmp_path)
    report = verify_dataset(_copy_info(), tmp_path, progress=False, details=True)
    rows = _rows(report)
    assert not report.ok
    assert rows["test/good images"] == (2, 0, False) and rows["test images"] == (5, 3, False)
    assert rows["test/crack images"] == (2, 2, True)
    assert rows["test/scratch images"] == (None, 1, None)  # a defect type without a stored count: reported
    assert rows["mask sizes (W x H)"] == (None, "8x6", "info")
    assert rows["defect area % (min/median/max)"] == (None, "12/12/12", "info")  # 6 / 48 pixels
    assert rows["masks of another size than image"][2] and rows["images identical to another"][2]
    note = next(n for n in report.notes if "no test/good" in n)
    assert f"iadtutor data hold-out --source {cat} --out NEW_ROOT/cat --n 2 --seed 0" in note
    text = report.format()
    assert "note: cat: no test/good folder" in text and "NOT complete" in text
    # without details only the stored counts are checked (what download_dataset uses)
    assert "test/scratch images" not in _rows(verify_dataset(_copy_info(), tmp_path, progress=False))


def test_verify_flags_masks_of_another_size_empty_masks_and_identical_files(tmp_path):
    cat = _copy_without_test_good(tmp_path)
    _png(cat / "ground_truth/crack/000_mask.png", size=(5, 5), box=(0, 0, 2, 2))
    _png(cat / "ground_truth/crack/001_mask.png", box=(0, 0, 0, 0))  # nothing on
    (cat / "train/good/005.png").write_bytes((cat / "train/good/001.png").read_bytes())
    _png(cat / "test/good/000.png", seed=2)  # the same pixels as train/good/002.png: identical across train/test
    rows = _rows(verify_dataset(_copy_info(), tmp_path, progress=False, details=True))
    assert rows["masks of another size than image"] == (0, 1, False)
    assert rows["defect images with an empty mask"] == (0, 1, False)
    assert rows["images identical to another"] == (0, 2, False)
    assert rows["identical pairs across train/test"] == (0, 1, False)
    assert rows["mask sizes (W x H)"][1] == "8x6 (2), 5x5 (1)"


def test_hold_out_normals_makes_a_seeded_split_in_a_new_folder_and_leaves_the_source(tmp_path):
    import json

    import numpy as np

    source = _copy_without_test_good(tmp_path / "copy")
    before = {p.relative_to(source): p.read_bytes() for p in source.rglob("*") if p.is_file()}
    out = download.hold_out_normals(source, tmp_path / "held" / "cat", 2, seed=0)
    assert {p.relative_to(source): p.read_bytes() for p in source.rglob("*") if p.is_file()} == before
    names = [f"{i:03d}.png" for i in range(6)]
    drawn = sorted(names[i] for i in np.random.default_rng(0).choice(6, size=2, replace=False))
    assert sorted(p.name for p in (out / "test/good").iterdir()) == drawn
    assert sorted(p.name for p in (out / "train/good").iterdir()) == sorted(set(names) - set(drawn))
    for name in drawn:
        assert (out / "test/good" / name).read_bytes() == before[Path("train/good") / name]
    record = json.loads((out / "holdout.json").read_text())
    assert record["seed"] == 0 and record["n_held_out"] == 2 and sorted(record["held_out"]) == drawn
    assert record["source"] == str(source.resolve()) and record["source_test_good"] == 0
    report = verify_dataset(_copy_info(), out.parent, progress=False, details=True)
    assert report.ok, report.format()
    rows = _rows(report)
    assert rows["train/good images"] == (4, 4, True) and rows["test/good images"] == (2, 2, True)
    assert any("2 of the training normals were held out" in note for note in report.notes)
    from iadtutor.data import find_category

    splits = find_category(out.parent, "cat")
    assert (len(splits.train), sum(s.label == 0 for s in splits.test)) == (4, 2)

    again = download.hold_out_normals(source, tmp_path / "again" / "cat", fraction=1 / 3, seed=0)
    assert sorted(p.name for p in (again / "test/good").iterdir()) == drawn  # fraction 1/3 of 6 = 2, same seed
    other = download.hold_out_normals(source, tmp_path / "other" / "cat", 2, seed=3)
    assert sorted(p.name for p in (other / "test/good").iterdir()) != drawn
    with pytest.raises(FileExistsError, match="not empty"):
        download.hold_out_normals(source, out, 2)
    with pytest.raises(ValueError, match="inside the source"):
        download.hold_out_normals(source, source / "sub", 2)
    with pytest.raises(ValueError, match="between 1 and 5"):
        download.hold_out_normals(source, tmp_path / "x" / "cat", 6)
    with pytest.raises(FileNotFoundError, match="train"):
        download.hold_out_normals(source / "test", tmp_path / "y" / "cat", 1)
    assert leftovers(tmp_path) == [] and not (tmp_path / "x" / "cat").exists()


def test_hold_out_command_line(tmp_path, capsys):
    source = _copy_without_test_good(tmp_path / "copy")
    status = iadtutor_main(["data", "hold-out", "--source", str(source), "--out", str(tmp_path / "held" / "cat"),
                            "--n", "2", "--seed", "0"])
    output = capsys.readouterr().out
    assert status == 0, output
    assert f"{source} is unchanged" in output and "2 of the training normals were held out" in output
    assert iadtutor_main(["data", "hold-out", "--source", str(source), "--out", str(tmp_path / "held" / "cat"),
                         "--n", "2"]) == 1
    assert "not empty" in capsys.readouterr().err


def test_verify_kolektor_counts_parts_defects_and_identical_parts(tmp_path, capsys):
    from dataclasses import replace

    root = tmp_path / "kolektor"
    for item in (1, 2):
        for part in range(4):
            folder = root / "kolektorsdd" / f"kos{item:02d}"
            _png(folder / f"Part{part}.png", size=(6, 15), seed=item * 10 + part).rename(folder / f"Part{part}.jpg")
            box = (1, 1, 4, 6) if (item, part) in ((1, 2), (2, 0)) else (0, 0, 0, 0)  # labels 0 / 1 like the real
            _png(folder / f"Part{part}.bmp", size=(6, 15), box=box, value=1).rename(folder / f"Part{part}_label.bmp")
    kos = root / "kolektorsdd"
    (kos / "kos02/Part3.jpg").write_bytes((kos / "kos02/Part2.jpg").read_bytes())
    info = replace(download.DATASETS["kolektor"], counts={"kolektorsdd": {"parts": 8, "defective parts": 2}})
    report = verify_dataset(info, root, progress=False, details=True)
    rows = _rows(report)
    assert rows["parts"] == (8, 8, True) and rows["defective parts (non-empty label)"] == (2, 2, True)
    assert rows["train / test normal parts"] == (None, "4/2", "info")  # 80 % of 6 normal parts, anomalib's rule
    assert rows["mask sizes (W x H)"] == (None, "6x15", "info")
    assert rows["images identical to another"] == (0, 1, False)
    assert iadtutor_main(["data", "verify", "--dataset", "kolektor", "--root", str(root)]) == 1  # 8 parts, not 399
    output = capsys.readouterr().out
    assert "MISMATCH" in output and "CC BY-NC-SA 4.0" in output and "split like anomalib" in output
    (kos / "kos01/Part1_label.bmp").unlink()
    report = verify_dataset(info, root, progress=False)
    assert not report.ok and any("Part1.jpg has no label image" in note for note in report.notes)


def test_real_data_script_arranges_the_grid_copy_into_mvtec_layout(tmp_path):
    real_data = _data_script("real_data")
    raw = tmp_path / "raw"
    for name in ("000", "001"):
        _png(raw / f"Normal/{name}.png")
    for name in ("000", "001", "100", "402"):  # bent 000, 001; broken 000; thread 002
        _png(raw / f"Anomalous/IMG/{name}.png")
        _png(raw / f"Anomalous/GT/{name}_mask.png", box=(0, 0, 2, 2))
    real_data.arrange_grid(raw, tmp_path / "grid")
    assert dict(count_images(tmp_path / "grid")) == {
        "train/good": 2, "test/bent": 2, "test/broken": 1, "test/thread": 1,
        "ground_truth/bent": 2, "ground_truth/broken": 1, "ground_truth/thread": 1}
    assert (tmp_path / "grid/test/thread/002.png").is_file()
    assert (tmp_path / "grid/ground_truth/thread/002_mask.png").is_file()
    report = verify_dataset("folder", tmp_path, categories=["grid"], progress=False, details=True)
    assert any("no test/good folder" in note for note in report.notes)
