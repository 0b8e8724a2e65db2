"""The environment is the locked one: requirements.lock agrees with pyproject.toml and with this venv."""

import importlib.util
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def load_check_lock():
    spec = importlib.util.spec_from_file_location("check_lock", ROOT / "scripts" / "check_lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lock_pins_every_dependency_of_pyproject():
    check_lock = load_check_lock()
    pins = check_lock.read_lock(ROOT / "requirements.lock")
    assert check_lock.lock_problems(check_lock.project_requirements(ROOT / "pyproject.toml"), pins) == []
    assert {"torch", "torchvision", "numpy", "pip"} <= pins.keys()


def test_this_environment_has_exactly_the_locked_versions():
    check_lock = load_check_lock()
    assert check_lock.installed_problems(check_lock.read_lock(ROOT / "requirements.lock")) == []


def test_lock_check_finds_a_missing_pin_and_a_pin_outside_the_range(tmp_path):
    check_lock = load_check_lock()
    lock = tmp_path / "requirements.lock"
    lock.write_text("# header\nTorch==2.13.0\nnumpy==2.4.6  # comment\n")
    pins = check_lock.read_lock(lock)
    assert pins == {"torch": "2.13.0", "numpy": "2.4.6"}
    problems = check_lock.lock_problems([Requirement("torch>=2.14"), Requirement("numpy"),
                                         Requirement("dask[distributed]>=2024.1")], pins)
    assert len(problems) == 2
    assert "torch==2.13.0" in problems[0] and "dask" in problems[1]


def test_lock_check_reports_installed_drift():
    check_lock = load_check_lock()
    pins = check_lock.read_lock(ROOT / "requirements.lock")
    pins["numpy"] = "0.0.1"
    pins["not-a-real-package"] = "1.0"
    problems = check_lock.installed_problems(pins)
    assert any(p.startswith("numpy is locked at 0.0.1 but installed at") for p in problems)
    assert any(p.startswith("not-a-real-package is locked at 1.0 but not installed") for p in problems)
