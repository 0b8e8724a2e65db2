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

from iadtutor import download
from iadtutor.download import (DatasetInfo, DownloadError, count_images, download_dataset, extract_archive, fetch,
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
    status = download.main(["download", "--dataset", "btad", "--out", str(tmp_path / "btad"),
                            "--url", server.url + "/btad.zip", "--sha256", "none", "--no-progress"])
    output = capsys.readouterr().out
    assert status == 1  # three images instead of BTAD's 400: reported, not hidden
    assert "NOT complete" in output
    assert f"is in {tmp_path / 'btad'}. Licence: CC BY-NC-SA 4.0 as listed by anomalib; check the dataset page" \
        in output
    status = download.main(["download", "--dataset", "mpdd", "--out", str(tmp_path / "mpdd")])
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


def test_every_dataset_names_its_licence_and_a_way_to_get_it():
    for info in download.DATASETS.values():
        assert info.licence and info.homepage
        assert info.urls or info.manual_steps or info.name == "toy"
        assert info.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", info.sha256)


def test_make_toy_writes_a_complete_toy_factory(tmp_path, capsys):
    pytest.importorskip("iadtutor.toy")
    status = download.main(["make-toy", "--out", str(tmp_path / "toy"), "--categories", "weave", "--image-size",
                            "64", "--n-train", "3", "--n-test-good", "2", "--n-test-per-defect", "1",
                            "--no-progress"])
    output = capsys.readouterr().out
    assert status == 0, output
    assert "weave                train/good images                    3         3  ok" in output
    assert f"The toy factory is in {tmp_path / 'toy'}" in output
    assert leftovers(tmp_path) == []
    assert download.main(["make-toy", "--out", str(tmp_path / "toy"), "--no-progress"]) == 1  # not over it
