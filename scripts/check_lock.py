"""Check that requirements.lock agrees with pyproject.toml (and, with --installed, with the venv).

    python scripts/check_lock.py              # every dependency of pyproject.toml is pinned in the lock
    python scripts/check_lock.py --installed  # ... and this interpreter has exactly the locked versions

Exits 1 with one line per disagreement; `make setup` runs it with --installed, tests/test_environment.py
runs both checks. Refresh the lock with `make lock`.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def read_lock(path: Path) -> dict[str, str]:
    """``name==version`` lines of ``path`` -> {canonical name: version}; comments and blanks skipped."""
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not version:
            raise ValueError(f"{path}:{number}: expected 'name==version', got {line!r}.")
        pins[canonicalize_name(name)] = version.strip()
    return pins


def project_requirements(pyproject: Path, extras: tuple[str, ...] = ("dev",)) -> list[Requirement]:
    """The ``dependencies`` of ``pyproject`` plus those of the named optional extras."""
    project = tomllib.loads(pyproject.read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project.get("optional-dependencies", {}).get(extra, [])
    return [Requirement(line) for line in lines]


def lock_problems(requirements: list[Requirement], pins: dict[str, str]) -> list[str]:
    """Each requirement that the lock does not pin, or pins to a version outside its range."""
    problems = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement.name} is required by pyproject.toml but not pinned in requirements.lock.")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"requirements.lock pins {requirement.name}=={pins[name]}, outside pyproject.toml's "
                            f"'{requirement}'.")
    return problems


def installed_problems(pins: dict[str, str]) -> list[str]:
    """Each locked package missing or at another version here, and each installed package not in the lock."""
    installed = {canonicalize_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}
    installed.pop("iadtutor", None)
    problems = [f"{name} is locked at {version} but {'not installed' if name not in installed else 'installed at ' + installed[name]}."
                for name, version in sorted(pins.items()) if installed.get(name) != version]
    problems += [f"{name}=={version} is installed but not in requirements.lock."
                 for name, version in sorted(installed.items()) if name not in pins]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--installed", action="store_true", help="also compare the lock with this interpreter")
    args = parser.parse_args(argv)
    pins = read_lock(ROOT / "requirements.lock")
    problems = lock_problems(project_requirements(ROOT / "pyproject.toml"), pins)
    if args.installed:
        problems += installed_problems(pins)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("Refresh the lock with `make lock` (or reinstall with `make setup`).", file=sys.stderr)
        return 1
    print(f"requirements.lock: {len(pins)} pins agree with pyproject.toml" + (" and this environment" if args.installed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
