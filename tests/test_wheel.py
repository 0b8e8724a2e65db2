"""The install a user does: build the wheel from the repository, install it into a fresh virtual environment,
run the ``iadtutor`` command from there, far from the source tree.

The fresh environment gets only the wheel (no editable install, no source tree on ``sys.path``); the
dependencies (torch is 5 GB) are borrowed from the test's own environment through a ``.pth`` line that
puts its site-packages *after* the fresh one. Lines of a ``.pth`` file only extend ``sys.path``: the
``.pth`` files inside the borrowed folder (among them the editable install's import hook) are not run,
so ``import iadtutor`` can only find the installed wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(command: list, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(fresh venv's bin folder, environment, a working folder outside the repository, the wheel)``."""
    work = tmp_path_factory.mktemp("wheel")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")

    # Build from a copy of what the repository holds, so that no build/ or egg-info lands in the work tree.
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for package in ("iadtutor", "toyfactory"):
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
          "--wheel-dir", work / "dist", source], cwd=work, env=env)
    wheel = next((work / "dist").glob("iadtutor-*.whl"))

    fresh = work / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", fresh], cwd=work, env=env)
    fresh_python = fresh / "bin" / "python"
    fresh_site = Path(_run([fresh_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           cwd=work, env=env).stdout.strip())
    (fresh_site / "zz_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", fresh_python, "install", "--no-deps", "--quiet", wheel],
         cwd=work, env=env)
    return fresh / "bin", env, work, wheel


def test_the_wheel_holds_every_module_and_file_of_the_package(installed):
    *_, wheel = installed
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = {name for name in archive.namelist() if name.startswith("iadtutor/")}
    # Everything iadtutor/ holds in the repository, data files too (none are read via __file__ today).
    in_repo = {path.relative_to(REPO).as_posix() for path in (REPO / "iadtutor").rglob("*")
               if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}
    assert in_repo <= in_wheel, f"missing from the wheel: {sorted(in_repo - in_wheel)}"
    with zipfile.ZipFile(wheel) as archive:
        entry_points = next(n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt"))
        assert "iadtutor = iadtutor.tools.cli:main" in archive.read(entry_points).decode()


def test_iadtutor_imports_from_the_fresh_environment_not_the_source_tree(installed):
    bin_dir, env, work, _ = installed
    probe = ("import json, iadtutor, iadtutor.tools.papers as p; "
             "print(json.dumps({'file': iadtutor.__file__, 'papers': len(p.paper_results())}))")
    found = json.loads(_run([bin_dir / "python", "-c", probe], cwd=work, env=env).stdout.strip().splitlines()[-1])
    assert Path(found["file"]).is_relative_to(bin_dir.parent), found["file"]
    assert not Path(found["file"]).is_relative_to(REPO)
    assert found["papers"] > 100  # the papers' numbers travel with the wheel


def test_info_and_evaluate_run_from_the_installed_wheel(installed):
    bin_dir, env, work, _ = installed
    info = _run([bin_dir / "iadtutor", "info", "--offline"], cwd=work, env=env)
    assert info.stdout.startswith("torch ") and "device auto -> " in info.stdout
    _run([bin_dir / "iadtutor", "data", "make-toy", "--out", work / "toy", "--categories", "weave",
          "--image-size", "64", "--quiet"], cwd=work, env=env)
    evaluate = _run([bin_dir / "iadtutor", "evaluate", "--data-root", work / "toy", "--category", "weave",
                     "--method", "spade", "--backbone", "efficientnet_lite0", "--image-size", "64",
                     "--max-train", "10", "--bootstrap", "0", "--quiet"], cwd=work, env=env)
    result = json.loads(evaluate.stdout.strip().splitlines()[-1])
    assert result["method"] == "spade" and result["category"] == "weave" and result["n_train"] == 10
    assert result["backbone"] == "efficientnet_lite0"
    for metric in ("image_auroc", "pixel_auroc", "aupro"):
        assert 0.0 <= result[metric] <= 1.0
